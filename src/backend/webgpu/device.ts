/**
 * Creating tflens's own GPUDevice (with the features the fused kernels use) and registering the
 * TensorFlow.js WebGPU backend on it.
 *
 * tfjs-backend-webgpu's default factory asks for a device with only 'timestamp-query', so f16
 * shaders, subgroups and subgroup matrices (tensor cores) stay off. `setupWebGPU` requests the
 * adapter itself, asks for every feature the kernels can use, and registers a 'webgpu' backend
 * factory that wraps that device (`new WebGPUBackend(device, adapterInfo)`).
 *
 * Under Node the device comes from the npm `webgpu` package (Dawn). Its `create(flags)` takes
 * Dawn toggles (`enable-dawn-features=...`) and `adapter=NAME` (the first adapter whose name
 * contains NAME); docs/gpu.md explains adapter choice per process.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError, ConfigError, expectedFound } from '../../errors.js';
import type { GPUDeviceLike } from './runtime.js';

/* eslint-disable @typescript-eslint/no-explicit-any */

/** One supported subgroup-matrix shape (tensor-core tile) of the adapter. */
export interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

/** What `setupWebGPU` found and enabled. */
export interface WebGPUInfo {
  /** Adapter identity as Dawn reports it. */
  adapter: { vendor: string; architecture: string; device: string; description: string };
  /** The `adapter=` flag given to Dawn (null: Dawn's default choice). */
  adapterFlag: string | null;
  /** Features enabled on the device. */
  features: { shaderF16: boolean; subgroups: boolean; subgroupMatrix: boolean; timestampQuery: boolean };
  /** Tensor-core tiles usable from WGSL (empty when the adapter has none). */
  subgroupMatrixConfigs: SubgroupMatrixConfig[];
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /** Device limits the kernels size themselves by. */
  limits: { maxComputeWorkgroupStorageSize: number; maxStorageBufferBindingSize: number; maxBufferSize: number; maxComputeInvocationsPerWorkgroup: number };
  /** Dawn toggles enabled for this process. */
  toggles: string[];
}

/** Options of `setupWebGPU`. */
export interface WebGPUSetupOptions {
  /**
   * Which adapter: an index into Dawn's adapter list or a substring of an adapter's name.
   * Default: the environment variable TFLENS_WEBGPU_ADAPTER, else Dawn's first adapter.
   */
  adapter?: string | number;
  /**
   * Turn off Dawn's bounds clamping of every storage access (faster; every tflens kernel checks
   * its own bounds, tfjs's kernels do too). Default: TFLENS_WEBGPU_FAST=1.
   */
  disableRobustness?: boolean;
  /** Extra Dawn toggles to enable. */
  toggles?: string[];
  powerPreference?: 'high-performance' | 'low-power';
}

/** Dawn toggles always asked for: subgroup matrices are an experimental ("unsafe") API, need the
 * Vulkan memory model, and Dawn hides shader-f16 on NVIDIA Vulkan unless told otherwise. */
const BASE_TOGGLES = ['allow_unsafe_apis', 'use_vulkan_memory_model', 'vulkan_enable_f16_on_nvidia'];
const WANTED_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'];

let current: { info: WebGPUInfo; device: GPUDeviceLike } | null = null;

/** The device info of the last `setupWebGPU` (null before, or when WebGPU was set up elsewhere). */
export function webgpuInfo(): WebGPUInfo | null {
  return current && tf.getBackend() === 'webgpu' && sameDevice(current.device) ? current.info : null;
}

function sameDevice(device: GPUDeviceLike): boolean {
  return (tf.backend() as unknown as { device?: unknown }).device === device;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

function envAdapter(): string | undefined {
  const v = typeof process !== 'undefined' ? process.env.TFLENS_WEBGPU_ADAPTER : undefined;
  return v && v.trim() ? v.trim() : undefined;
}

async function loadDawn(): Promise<{ create: (flags: string[]) => any; globals: Record<string, unknown> }> {
  try {
    return (await import('webgpu' as string)) as any;
  } catch (e) {
    throw new BackendError('webgpu', `the npm package "webgpu" (Dawn for Node) is not installed (${(e as Error).message.split('\n')[0]})`);
  }
}

/**
 * Lists the adapters Dawn can open, in its order (index 0 is Dawn's default), as
 * `{ backend, name }`. dawn.node has no enumeration call; asking for an adapter name that cannot
 * exist makes it reject with the list, which is parsed here.
 */
export async function listWebGPUAdapters(powerPreference: 'high-performance' | 'low-power' = 'high-performance'): Promise<Array<{ backend: string; name: string }>> {
  const dawn = await loadDawn();
  const gpu = dawn.create([`adapter=\u0001no adapter has this name\u0001`]);
  try {
    const a = await gpu.requestAdapter({ powerPreference });
    if (a) return [];
  } catch (e) {
    return parseAdapterList(String((e as Error).message ?? e));
  }
  return [];
}

/** Parses dawn.node's "Available adapters:" lines (` * backend: 'vulkan', name: 'NVIDIA H100'`). */
export function parseAdapterList(message: string): Array<{ backend: string; name: string }> {
  const out: Array<{ backend: string; name: string }> = [];
  for (const m of message.matchAll(/\* backend: '([^']*)', name: '(.*)'\s*$/gm)) out.push({ backend: m[1], name: m[2] });
  return out;
}

/**
 * Turns an adapter choice (index or name substring) into Dawn's `adapter=` flag value. Dawn picks
 * the first adapter whose name contains the value, so an index can be honoured only when no
 * earlier adapter's name contains the chosen one's (identical GPUs cannot be told apart).
 */
export function adapterFlagFor(choice: string | number, adapters: Array<{ name: string }>): string {
  const asIndex = typeof choice === 'number' ? choice : /^\d+$/.test(choice) ? Number(choice) : null;
  if (asIndex === null) {
    const name = String(choice);
    if (adapters.length && !adapters.some((a) => a.name.includes(name))) {
      throw new ConfigError('TFLENS_WEBGPU_ADAPTER', expectedFound(`a substring of one of ${JSON.stringify(adapters.map((a) => a.name))}`, name));
    }
    return name;
  }
  if (asIndex < 0 || asIndex >= adapters.length) {
    throw new ConfigError('TFLENS_WEBGPU_ADAPTER', expectedFound(`an adapter index in [0, ${adapters.length})`, asIndex));
  }
  const name = adapters[asIndex].name;
  const first = adapters.findIndex((a) => a.name.includes(name));
  if (first !== asIndex) {
    throw new ConfigError(
      'TFLENS_WEBGPU_ADAPTER',
      `adapter ${asIndex} ("${name}") has the same name as adapter ${first}; Dawn (npm webgpu) selects adapters by name only, ` +
        'so identical GPUs cannot be chosen by index in one process: limit the GPUs the process sees instead (docs/gpu.md)',
    );
  }
  return name;
}

/**
 * Creates a GPUDevice with shader-f16, subgroups and subgroup matrices (where the adapter has them)
 * and makes it the device of tfjs's 'webgpu' backend, which becomes the active backend.
 * Call before any tensor lives on WebGPU: a webgpu backend made elsewhere is replaced (and its
 * tensors lost). Calling again returns the same info.
 */
export async function setupWebGPU(opts: WebGPUSetupOptions = {}): Promise<WebGPUInfo> {
  const live = webgpuInfo();
  if (live) return live;
  const powerPreference = opts.powerPreference ?? 'high-performance';
  const found = isNode ? await dawnAdapter(opts, powerPreference) : await browserAdapter(powerPreference);
  const device = await requestDevice(found.adapter);
  const info = describe(found.adapter, device, found.adapterFlag, found.toggles);
  await useDevice(device, found.adapter.info);
  current = { info, device };
  return info;
}

interface FoundAdapter {
  adapter: any;
  adapterFlag: string | null;
  toggles: string[];
}

/**
 * Dawn's adapter with tflens's toggles; if Dawn finds none that way, once more without the extra
 * toggles (the features that need them are then reported as missing, not silently assumed).
 */
async function dawnAdapter(opts: WebGPUSetupOptions, powerPreference: string): Promise<FoundAdapter> {
  const dawn = await loadDawn();
  Object.assign(globalThis, dawn.globals ?? {});
  const choice = opts.adapter ?? envAdapter();
  const adapterFlag = choice === undefined ? null : adapterFlagFor(choice, await listWebGPUAdapters(powerPreference as 'high-performance'));
  const fast = opts.disableRobustness ?? process.env.TFLENS_WEBGPU_FAST === '1';
  const wanted = [...BASE_TOGGLES, ...(fast ? ['disable_robustness'] : []), ...(opts.toggles ?? [])];
  const errors: string[] = [];
  for (const toggles of [wanted, []]) {
    const gpu = dawn.create([...(toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : []), ...(adapterFlag ? [`adapter=${adapterFlag}`] : [])]);
    try {
      const adapter = await gpu.requestAdapter({ powerPreference });
      if (adapter) {
        installNavigatorGpu(gpu);
        return { adapter, adapterFlag, toggles };
      }
      errors.push(`toggles [${toggles.join(', ')}]: no adapter`);
    } catch (e) {
      errors.push(`toggles [${toggles.join(', ')}]: ${String((e as Error).message ?? e).split('\n')[0]}`);
    }
  }
  throw new BackendError('webgpu adapter', `Dawn found no WebGPU adapter (no GPU or no Vulkan driver): ${errors.join('; ')}`);
}

async function browserAdapter(powerPreference: string): Promise<FoundAdapter> {
  const gpu = (globalThis as any).navigator?.gpu;
  if (!gpu) throw new BackendError('webgpu', 'this browser has no navigator.gpu');
  const adapter = await gpu.requestAdapter({ powerPreference });
  if (!adapter) throw new BackendError('webgpu adapter', 'the browser found no WebGPU adapter');
  return { adapter, adapterFlag: null, toggles: [] };
}

function installNavigatorGpu(gpu: unknown): void {
  const g = globalThis as any;
  if (!g.navigator) g.navigator = {};
  Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
}

async function requestDevice(adapter: any): Promise<GPUDeviceLike> {
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  const l = adapter.limits;
  const requiredLimits: Record<string, number> = {};
  for (const k of [
    'maxComputeWorkgroupStorageSize',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY',
    'maxComputeInvocationsPerWorkgroup',
    'maxStorageBuffersPerShaderStage',
  ]) {
    if (typeof l[k] === 'number') requiredLimits[k] = l[k];
  }
  try {
    return await adapter.requestDevice({ requiredFeatures, requiredLimits });
  } catch (e) {
    throw new BackendError('webgpu device', `requestDevice(${requiredFeatures.join(', ')}) failed: ${(e as Error).message}`);
  }
}

function describe(adapter: any, device: any, adapterFlag: string | null, toggles: string[]): WebGPUInfo {
  const ai = adapter.info ?? {};
  const has = (f: string) => device.features.has(f) as boolean;
  const configs: SubgroupMatrixConfig[] = has('chromium-experimental-subgroup-matrix')
    ? [...(ai.subgroupMatrixConfigs ?? [])].map((c: any) => ({
        componentType: String(c.componentType),
        resultComponentType: String(c.resultComponentType),
        M: Number(c.M),
        N: Number(c.N),
        K: Number(c.K),
      }))
    : [];
  const dl = device.limits;
  return {
    adapter: { vendor: String(ai.vendor ?? ''), architecture: String(ai.architecture ?? ''), device: String(ai.device ?? ''), description: String(ai.description ?? '') },
    adapterFlag,
    features: { shaderF16: has('shader-f16'), subgroups: has('subgroups'), subgroupMatrix: configs.length > 0, timestampQuery: has('timestamp-query') },
    subgroupMatrixConfigs: configs,
    subgroupMinSize: Number(ai.subgroupMinSize ?? 0),
    subgroupMaxSize: Number(ai.subgroupMaxSize ?? 0),
    limits: {
      maxComputeWorkgroupStorageSize: dl.maxComputeWorkgroupStorageSize,
      maxStorageBufferBindingSize: dl.maxStorageBufferBindingSize,
      maxBufferSize: dl.maxBufferSize,
      maxComputeInvocationsPerWorkgroup: dl.maxComputeInvocationsPerWorkgroup,
    },
    toggles,
  };
}

/** Registers (or re-registers) tfjs's 'webgpu' backend on `device` and makes it active. */
async function useDevice(device: GPUDeviceLike, adapterInfo: unknown): Promise<void> {
  let mod: any;
  try {
    mod = await import('@tensorflow/tfjs-backend-webgpu' as string);
  } catch (e) {
    throw new BackendError('webgpu', `@tensorflow/tfjs-backend-webgpu is not installed (${(e as Error).message.split('\n')[0]})`);
  }
  const WebGPUBackend = mod.WebGPUBackend ?? mod.default?.WebGPUBackend;
  if (!WebGPUBackend) throw new BackendError('@tensorflow/tfjs-backend-webgpu', expectedFound('an export WebGPUBackend', Object.keys(mod)));
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new WebGPUBackend(device, adapterInfo), 3);
  if (!(await tf.setBackend('webgpu'))) throw new BackendError('webgpu', 'tf.setBackend("webgpu") failed on the tflens device');
  await tf.ready();
}

/** The device features of the active webgpu backend (whoever created it). */
export function activeDeviceFeatures(): { shaderF16: boolean; subgroups: boolean; subgroupMatrix: boolean } {
  if (tf.getBackend() !== 'webgpu') return { shaderF16: false, subgroups: false, subgroupMatrix: false };
  const device = (tf.backend() as unknown as { device: any }).device;
  const info = webgpuInfo();
  return {
    shaderF16: device.features.has('shader-f16'),
    subgroups: device.features.has('subgroups'),
    subgroupMatrix: !!info && info.features.subgroupMatrix,
  };
}
