// node --import ./bench/device/webgpu-preload.mjs ...: applies the bench's int32 CPU forwarding
// (bench/webgpu-node.mjs) to the webgpu kernels before a program (e.g. the parity test) starts, to see
// whether the library's synchronous reads are the only thing between it and WebGPU under Node.
// navigator.gpu is set first (as tflens's initBackend does): tfjs-backend-webgpu registers its
// backend at import only when navigator.gpu exists.
import * as tf from '@tensorflow/tfjs';
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
if (!globalThis.navigator) globalThis.navigator = {};
if (!globalThis.navigator.gpu) Object.defineProperty(globalThis.navigator, 'gpu', { value: create([]), configurable: true });
await import('@tensorflow/tfjs-backend-webgpu');
const { cpuForwardIntKernels } = await import('../webgpu-node.mjs');
console.error('[webgpu-preload] int32 kernels forwarded to the CPU backend:', cpuForwardIntKernels(tf).join(' '));
