/**
 * Running tflens's own WGSL programs on the TensorFlow.js WebGPU backend.
 *
 * tfjs's `runWebGPUProgram` wraps every shader in its own prelude (one output, inputs read-only,
 * no room for `enable` directives), which rules out several outputs, f16 and subgroup matrices.
 * So each kernel here is a complete WGSL module with an explicit bind-group layout, and
 * `runProgram` records its dispatch into the backend's own command encoder exactly as tfjs does
 * for its kernels: same compute pass, same deferred submit, same delayed buffer release
 * (`commandQueueOwnedIds`), same timestamp queries under `tf.profile`/`tf.time`. Outputs are
 * ordinary tfjs tensors, inputs are read where they lie on the GPU: nothing is read back.
 *
 * The public kernels are registered as tfjs kernels (`registerWebGPUKernel`), so they run through
 * `tf.engine().runKernel`: tf.tidy tracks their outputs and tf.profile lists them by name.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError, ValueError, expectedFound } from '../../errors.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
/** The few WebGPU objects used here (typed loosely: the build does not depend on @webgpu/types). */
export type GPUDeviceLike = any;
type GPUBufferLike = any;

/** The parts of tfjs-backend-webgpu's WebGPUBackend that the runtime uses (some are private in its typings). */
export interface TfWebGPUBackend {
  device: GPUDeviceLike;
  queue: any;
  tensorMap: { get(dataId: object): { resource?: GPUBufferLike; dtype: string; shape: number[] } };
  makeTensorInfo(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  uploadToGPU(dataId: object): void;
  disposeData(dataId: object, force?: boolean): boolean;
  makeUniforms(u: Array<{ type: string; data: number[] }>): unknown;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  commandEncoder: any;
  computePassEncoder: any;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers: Array<{ name: string; query: Promise<number> }> | null;
  supportTimestampQuery: boolean;
  querySet: any;
  querySetCount: number;
}

/** A scalar in a program's uniform block: name, WGSL type and value. */
export type Uniform = [name: string, type: 'u32' | 'i32' | 'f32', value: number];

/** One compute program: a complete WGSL module and how to bind and dispatch it. */
export interface Program {
  /** Identity of the WGSL text (pipelines are cached by it). */
  key: string;
  /** Builds the module. Bindings: outputs 0..nOut-1 (read_write), then inputs (read), then `u` (uniform) if any. */
  wgsl: () => string;
  /** Number of workgroups in x, y, z. */
  workgroups: [number, number, number];
  /** Scalars bound as `var<uniform> u : U` at the last binding (the struct U is declared by `uniformStruct`). */
  uniforms?: Uniform[];
  /** Name shown by tf.profile / timestamp queries. */
  name: string;
}

/** An output to allocate: shape and dtype (float32 or int32). */
export interface OutputSpec {
  shape: number[];
  dtype: 'float32' | 'int32';
}

/** The tfjs WebGPU backend if it is the active one, else null. */
export function activeWebGPUBackend(): TfWebGPUBackend | null {
  if (tf.getBackend() !== 'webgpu') return null;
  return tf.backend() as unknown as TfWebGPUBackend;
}

/** The active tfjs WebGPU backend; a BackendError naming `what` when another backend is active. */
export function requireWebGPUBackend(what: string): TfWebGPUBackend {
  const b = activeWebGPUBackend();
  if (!b) throw new BackendError(what, expectedFound('the webgpu backend to be active', tf.getBackend() ?? 'no backend'));
  return b;
}

/** WGSL declaration of the uniform struct for a program's scalars (empty string when none). */
export function uniformStruct(u: Uniform[] | undefined): string {
  if (!u || u.length === 0) return '';
  return `struct U {\n${u.map(([n, t]) => `  ${n} : ${t},`).join('\n')}\n};\n`;
}

/** WGSL binding declarations: outputs (read_write) then inputs (read) then the uniform block. */
export function bindings(outputs: Array<[string, string]>, inputs: Array<[string, string]>, hasUniforms: boolean): string {
  const lines: string[] = [];
  let i = 0;
  for (const [n, t] of outputs) lines.push(`@group(0) @binding(${i++}) var<storage, read_write> ${n} : array<${t}>;`);
  for (const [n, t] of inputs) lines.push(`@group(0) @binding(${i++}) var<storage, read> ${n} : array<${t}>;`);
  if (hasUniforms) lines.push(`@group(0) @binding(${i}) var<uniform> u : U;`);
  return lines.join('\n') + '\n';
}

interface CachedPipeline {
  pipeline: any;
  layout: any;
}

const pipelineCaches = new WeakMap<object, Map<string, CachedPipeline>>();
const runCounts: Record<string, number> = {};
const pendingErrors: Array<Promise<string | null>> = [];

function pipelineFor(backend: TfWebGPUBackend, prog: Program, nOut: number, nIn: number): CachedPipeline {
  const device = backend.device;
  let cache = pipelineCaches.get(device);
  if (!cache) pipelineCaches.set(device, (cache = new Map()));
  const hit = cache.get(prog.key);
  if (hit) return hit;
  const entries: unknown[] = [];
  const STORAGE = 'storage';
  for (let i = 0; i < nOut + nIn; i++) {
    entries.push({ binding: i, visibility: 4 /* COMPUTE */, buffer: { type: i < nOut ? STORAGE : 'read-only-storage' } });
  }
  if (prog.uniforms && prog.uniforms.length) entries.push({ binding: nOut + nIn, visibility: 4, buffer: { type: 'uniform' } });
  device.pushErrorScope('validation');
  const layout = device.createBindGroupLayout({ entries, label: prog.name });
  const module = device.createShaderModule({ code: prog.wgsl(), label: prog.name });
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
    label: prog.name,
  });
  pendingErrors.push(
    device.popErrorScope().then((e: { message?: string } | null) => (e ? `${prog.name} (${prog.key}): ${e.message ?? String(e)}` : null)),
  );
  const entry = { pipeline, layout };
  cache.set(prog.key, entry);
  return entry;
}

/**
 * Validation errors of the pipelines built so far (shader compile errors included), and clears
 * the list. WebGPU reports them asynchronously, so tests and benchmarks await this after a run.
 */
export async function takeKernelErrors(): Promise<string[]> {
  const all = await Promise.all(pendingErrors.splice(0));
  return all.filter((e): e is string => e !== null);
}

function bufferOf(backend: TfWebGPUBackend, t: tf.TensorInfo): GPUBufferLike {
  backend.uploadToGPU(t.dataId);
  const r = backend.tensorMap.get(t.dataId).resource;
  if (!r || typeof (r as { size?: unknown }).size !== 'number') {
    throw new BackendError('webgpu kernel input', expectedFound('a tensor stored in a GPU buffer', 'a texture or external resource'));
  }
  return r;
}

/**
 * Records one dispatch of `prog` reading `inputs` and writing freshly allocated `outputs`
 * (returned as TensorInfos owned by the caller, like a tfjs kernel's result).
 * Inputs must not be empty (WebGPU cannot bind a zero-sized buffer).
 */
export function runProgram(backend: TfWebGPUBackend, prog: Program, inputs: tf.TensorInfo[], outputs: OutputSpec[]): tf.TensorInfo[] {
  const outs = outputs.map((o) => backend.makeTensorInfo(o.shape, o.dtype));
  if (outs.some((o) => tf.util.sizeFromShape(o.shape) === 0) || prog.workgroups.some((w) => w === 0)) return outs;
  for (const i of inputs) {
    if (tf.util.sizeFromShape(i.shape) === 0) throw new ValueError(`${prog.name} input`, expectedFound('a non-empty tensor', i.shape));
  }
  const maxWg = backend.device.limits.maxComputeWorkgroupsPerDimension as number;
  if (prog.workgroups.some((w) => w > maxWg)) {
    throw new ValueError(prog.name, expectedFound(`at most ${maxWg} workgroups per dimension`, prog.workgroups));
  }
  const { pipeline, layout } = pipelineFor(backend, prog, outs.length, inputs.length);
  const entries: unknown[] = [];
  [...outs, ...inputs].forEach((t, i) => entries.push({ binding: i, resource: { buffer: bufferOf(backend, t) } }));
  if (prog.uniforms && prog.uniforms.length) {
    const data = prog.uniforms.map(([, type, value]) => ({ type: type === 'f32' ? 'float32' : type === 'i32' ? 'int32' : 'uint32', data: [value] }));
    entries.push({ binding: outs.length + inputs.length, resource: backend.makeUniforms(data) });
  }
  for (const t of [...inputs, ...outs]) backend.commandQueueOwnedIds.add(t.dataId);
  const bindGroup = backend.device.createBindGroup({ layout, entries });
  record(backend, pipeline, bindGroup, prog);
  runCounts[prog.name] = (runCounts[prog.name] ?? 0) + 1;
  return outs;
}

/** The tail of tfjs's recordAndSubmit: same pass, same batching, same timers. */
function record(backend: TfWebGPUBackend, pipeline: unknown, bindGroup: unknown, prog: Program): void {
  const timing = backend.activeTimers != null;
  backend.ensureCommandEncoderReady();
  if (timing && backend.supportTimestampQuery) {
    backend.endComputePassEncoder();
    if (backend.querySet == null) backend.querySet = backend.device.createQuerySet({ type: 'timestamp', count: backend.querySetCount });
    backend.computePassEncoder = backend.commandEncoder.beginComputePass({
      timestampWrites: { querySet: backend.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
  } else if (!backend.computePassEncoder) {
    backend.computePassEncoder = backend.commandEncoder.beginComputePass({});
  }
  const pass = backend.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(prog.workgroups[0], prog.workgroups[1], prog.workgroups[2]);
  backend.dispatchCountInPass++;
  const batch = tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number;
  if (timing || batch <= backend.dispatchCountInPass) {
    backend.endComputePassEncoder();
    if (timing) backend.activeTimers!.push({ name: prog.name, query: backend.getQueryTime() });
    else backend.submitQueue();
  }
}

/** Frees an intermediate TensorInfo made by runProgram (its buffer is reused once queued work ends). */
export function disposeInfo(backend: TfWebGPUBackend, t: tf.TensorInfo): void {
  backend.disposeData(t.dataId);
}

/** What a registered kernel receives (optional inputs are absent from `inputs`). */
export interface KernelArgs {
  inputs: Record<string, tf.TensorInfo>;
  backend: TfWebGPUBackend;
  attrs: Record<string, unknown>;
}

/** The kernelFunc signature used by registerWebGPUKernel. */
export type WebGPUKernelFunc = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/** Registers a tflens kernel for the webgpu backend once (later calls do nothing). */
export function registerWebGPUKernel(kernelName: string, kernelFunc: WebGPUKernelFunc): void {
  if (tf.getKernel(kernelName, 'webgpu')) return;
  tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

/**
 * How many dispatches each tflens program has recorded in this process (by program name: the kernel
 * names, plus TflensAttentionCombine and TflensAttentionLastArgmax), e.g. to check that a forward went
 * through the fused kernels; `reset` clears the counts after reading them.
 */
export function fusedKernelCounts(reset = false): Record<string, number> {
  const out = { ...runCounts };
  if (reset) for (const k of Object.keys(runCounts)) delete runCounts[k];
  return out;
}

/** Runs a registered tflens kernel through the tfjs engine (tidy-tracked, visible to tf.profile). */
export function runRegistered(kernelName: string, inputs: Record<string, tf.Tensor | undefined | null>, attrs: object): tf.Tensor[] {
  const named: tf.NamedTensorMap = {};
  for (const [k, v] of Object.entries(inputs)) if (v) named[k] = v;
  const out = tf.engine().runKernel(kernelName, named, attrs as tf.NamedAttrMap) as tf.Tensor | tf.Tensor[];
  return Array.isArray(out) ? out : [out];
}

/** Ceil division. */
export function cdiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

/** Spreads a large 1-D workgroup count over x and y (each at most 65535). */
export function grid1d(n: number): [number, number, number] {
  if (n <= 65535) return [n, 1, 1];
  const y = cdiv(n, 65535);
  return [cdiv(n, y), y, 1];
}
