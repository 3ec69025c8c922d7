/**
 * Choosing and reporting the TensorFlow.js backend.
 * Order: tfjs-node-gpu, WebGPU (npm `webgpu` Dawn bindings + tfjs-backend-webgpu) when an adapter
 * exists, tfjs-node, wasm, cpu. TFLENS_BACKEND forces one ("node-gpu" | "webgpu" | "node" | "wasm" | "cpu").
 */
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync } from 'node:fs';
import { BackendError } from '../errors.js';
import { registerMissingKernels } from './kernels.js';
import { applyReadbackPolicyFromEnv } from './readback.js';

export type BackendName = 'node-gpu' | 'webgpu' | 'node' | 'wasm' | 'cpu';
export const BACKEND_ORDER: BackendName[] = ['node-gpu', 'webgpu', 'node', 'wasm', 'cpu'];

export interface BackendAttempt {
  name: BackendName;
  ok: boolean;
  reason: string;
}

export interface BackendReport {
  /** The backend tflens runs on (tfjs name, e.g. "wasm", "webgpu", "tensorflow"). */
  active: BackendName;
  tfjsBackend: string;
  forced: boolean;
  attempts: BackendAttempt[];
  /** For wasm: XNNPACK threads; for webgpu: the adapter description where known. */
  details: Record<string, string | number | boolean>;
}

let report: BackendReport | null = null;
let forcedNow = false;
let initPromise: Promise<BackendReport> | null = null;

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function importOptional(name: string): Promise<any> {
  // Optional packages are resolved at run time so that tflens installs and works without them.
  return await import(name);
}

async function tryBackend(name: BackendName, details: Record<string, string | number | boolean>): Promise<string | null> {
  switch (name) {
    case 'node-gpu': {
      if (!isNode) return 'not running in Node.js';
      try {
        await importOptional('@tensorflow/tfjs-node-gpu');
      } catch (e) {
        return notLoaded('@tensorflow/tfjs-node-gpu', e);
      }
      return (await tf.setBackend('tensorflow')) ? null : 'tensorflow backend failed to initialise';
    }
    case 'node': {
      if (!isNode) return 'not running in Node.js';
      try {
        await importOptional('@tensorflow/tfjs-node');
      } catch (e) {
        return notLoaded('@tensorflow/tfjs-node', e);
      }
      return (await tf.setBackend('tensorflow')) ? null : 'tensorflow backend failed to initialise';
    }
    case 'webgpu': {
      if (isNode) {
        // a forced WebGPU may run on a software Vulkan driver (Mesa lavapipe) that has no device node
        if (process.platform === 'linux' && !forcedNow && !gpuDeviceNodePresent()) return 'no GPU device node (/dev/nvidia*, /dev/dri/renderD*)';
        if (process.platform === 'linux' && !vulkanLoaderPresent()) return 'no Vulkan loader (libvulkan.so.1 not found), so Dawn has no GPU adapter';
      }
      // tflens's own GPUDevice (f16, subgroups, subgroup matrices; adapter from TFLENS_WEBGPU_ADAPTER)
      try {
        const { setupWebGPU } = await import('./webgpu/device.js');
        const info = await setupWebGPU();
        details.adapter = [info.adapter.vendor, info.adapter.architecture, info.adapter.device, info.adapter.description].filter(Boolean).join(' ');
        details.features = Object.entries(info.features).filter(([, on]) => on).map(([f]) => f).join(' ') || 'none';
        return null;
      } catch (e) {
        return short(e);
      }
    }
    case 'wasm': {
      try {
        const before = isNode ? listenerSnapshot() : null;
        const wasm = await importOptional('@tensorflow/tfjs-backend-wasm');
        const ok = await tf.setBackend('wasm');
        if (before) dropNewListeners(before);
        if (!ok) return 'wasm backend failed to initialise';
        try {
          details.threads = wasm.getThreadsCount();
        } catch {
          /* older versions */
        }
        return null;
      } catch (e) {
        return `wasm backend unavailable (${short(e)})`;
      }
    }
    case 'cpu':
      return (await tf.setBackend('cpu')) ? null : 'cpu backend failed to initialise';
  }
}

type Listeners = Record<'uncaughtException' | 'unhandledRejection', Function[]>;
function listenerSnapshot(): Listeners {
  return { uncaughtException: process.listeners('uncaughtException'), unhandledRejection: process.listeners('unhandledRejection') };
}
/**
 * The wasm backend's Emscripten module installs process handlers that rethrow every uncaught error
 * from inside its one-line bundle, so Node prints the whole minified bundle as the error's source line.
 * Removing them restores Node's own report (the error and its stack).
 */
function dropNewListeners(before: Listeners): void {
  for (const ev of ['uncaughtException', 'unhandledRejection'] as const) {
    const emitter: NodeJS.EventEmitter = process; // one removeListener for both events (process's overloads are per event)
    for (const l of emitter.listeners(ev)) if (!before[ev].includes(l)) emitter.removeListener(ev, l as (...a: unknown[]) => void);
  }
}

/** A GPU shows up as a device node; looking first keeps Dawn (and its warnings on stderr) away from GPU-less machines. */
function gpuDeviceNodePresent(): boolean {
  try {
    if (readdirSync('/dev').some((f) => /^nvidia\d+$/.test(f))) return true;
  } catch {
    return true; // cannot tell: let Dawn decide
  }
  try {
    return readdirSync('/dev/dri').some((f) => f.startsWith('renderD'));
  } catch {
    return false;
  }
}

/** Dawn (npm webgpu) needs libvulkan.so.1 on Linux; looking first avoids its noisy warning on machines without one. */
function vulkanLoaderPresent(): boolean {
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/usr/local/lib',
  ];
  return dirs.some((d) => existsSync(`${d}/libvulkan.so.1`));
}

/** Why an optional package did not load: absent (the usual case, said briefly) or present but failing. */
function notLoaded(pkg: string, e: unknown): string {
  const missing = (e as { code?: string })?.code === 'ERR_MODULE_NOT_FOUND' && short(e).includes(pkg);
  return missing ? `${pkg} not installed` : `${pkg} failed to load (${short(e)})`;
}

function short(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0].slice(0, 160);
}

/**
 * Initialise the best available backend (once; later calls return the same one) and return its name;
 * `backendReport()` / `formatBackendReport()` / `backendLine()` tell why the others were skipped.
 * `prefer` or the TFLENS_BACKEND environment variable forces one backend; forcing a backend
 * that cannot start throws a BackendError listing why.
 */
export async function initBackend(prefer?: BackendName): Promise<BackendName> {
  return (await startBackend(prefer)).active;
}

async function startBackend(prefer?: BackendName): Promise<BackendReport> {
  const forced = (prefer ?? (isNode ? (process.env.TFLENS_BACKEND as BackendName | undefined) : undefined)) || undefined;
  applyReadbackPolicyFromEnv();
  if (report && (!forced || report.active === forced)) return report;
  if (initPromise && !forced) return initPromise;
  const run = async (): Promise<BackendReport> => {
    forcedNow = !!forced;
    if (forced && !BACKEND_ORDER.includes(forced)) {
      throw new BackendError('TFLENS_BACKEND', `unknown backend "${forced}"; expected one of ${BACKEND_ORDER.join(', ')}`);
    }
    const order = forced ? [forced] : BACKEND_ORDER;
    const attempts: BackendAttempt[] = [];
    const details: Record<string, string | number | boolean> = {};
    for (const name of order) {
      const why = await tryBackend(name, details);
      attempts.push({ name, ok: why === null, reason: why ?? 'selected' });
      if (why === null) {
        await tf.ready();
        registerMissingKernels(tf.getBackend());
        report = { active: name, tfjsBackend: tf.getBackend(), forced: !!forced, attempts, details };
        return report;
      }
    }
    throw new BackendError(
      forced ? 'TFLENS_BACKEND' : 'backend',
      `no backend could start: ${attempts.map((a) => `${a.name}: ${a.reason}`).join('; ')}`,
    );
  };
  initPromise = run();
  try {
    return await initPromise;
  } finally {
    if (forced) initPromise = null;
  }
}

/** The report of the backend in use, or null before initBackend. */
export function backendReport(): BackendReport | null {
  return report;
}

/** One line: the backend in use and why (the first reason a better one was skipped). */
export function backendLine(r: BackendReport | null = report): string {
  if (!r) return 'backend not initialised (call initBackend())';
  const skipped = r.attempts.filter((a) => !a.ok).map((a) => `${a.name}: ${a.reason}`);
  const extra = Object.entries(r.details).map(([k, v]) => `${k} ${v}`).join(', ');
  const why = r.forced ? 'forced by TFLENS_BACKEND' : skipped.length ? `skipped ${skipped.join('; ')}` : 'the first choice';
  return `tflens runs on ${r.active}${extra ? ` (${extra})` : ''}; ${why}`;
}

/** One-line-per-backend text report (used by `tflens info`). */
export function formatBackendReport(r: BackendReport | null = report): string {
  if (!r) return 'backend not initialised (call initBackend())';
  const lines = [`backend: ${r.active} (tfjs "${r.tfjsBackend}")${r.forced ? ', forced by TFLENS_BACKEND' : ''}`];
  for (const d of Object.entries(r.details)) lines.push(`  ${d[0]}: ${d[1]}`);
  for (const a of r.attempts) lines.push(`  ${a.ok ? '+' : '-'} ${a.name}: ${a.reason}`);
  if (!r.forced) {
    const tried = new Set(r.attempts.map((a) => a.name));
    for (const n of BACKEND_ORDER) if (!tried.has(n)) lines.push(`  . ${n}: not tried (a better backend started)`);
  }
  return lines.join('\n');
}

export { tf };
