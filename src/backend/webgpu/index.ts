/**
 * tflens's WebGPU engine: a device with the features the kernels use (f16, subgroups, subgroup
 * matrices), and fused WGSL kernels that run on the TensorFlow.js WebGPU backend as registered
 * tfjs kernels (outputs are ordinary tensors, inputs are read where they lie, nothing is read back):
 *
 * - `matmul` / `gatedMatmul`: x @ W with float32 or packed f16/bf16 weights, fused bias,
 *   activation, residual add or gate product; a portable tiled path and a tensor-core path.
 * - `norm`: LayerNorm / RMSNorm over the last axis, with the per-row scale (hook_scale).
 * - `rotary`: rotary position embedding (NeoX 'half' or GPT-J 'interleaved').
 * - `attention`: fused causal attention (GQA, padding mask, sliding window, ALiBi, soft-capping),
 *   writing the pattern / scores only when asked, and the last-row argmax for retrieval scoring.
 * - half-precision packing on the host (`packHalfBytes`, `packedHalfFromBytes`, `packFloat32`...)
 *   and on the GPU (`packHalf`, `unpackHalf`).
 *
 * Every kernel function needs the webgpu backend to be active (BackendError otherwise); the
 * model's op seam (src/model/ops.ts) decides when to call them. docs/gpu.md describes the device
 * setup, adapter choice and numerics.
 */
export { setupWebGPU, webgpuInfo, listWebGPUAdapters, parseAdapterList, adapterFlagFor } from './device.js';
export type { WebGPUInfo, WebGPUSetupOptions, SubgroupMatrixConfig } from './device.js';
export { matmul, gatedMatmul, defaultTile, subgroupMatrixTile, TILES } from './matmul.js';
export type { MatmulOptions, GatedOptions, TileName, WeightFormat, Combine } from './matmul.js';
export { norm } from './norm.js';
export type { NormOptions, NormKind } from './norm.js';
export { rotary, ropeInvFreq } from './rotary.js';
export type { RotaryOptions, RotaryStyle } from './rotary.js';
export { attention } from './attention.js';
export type { AttentionOptions, AttentionMask, AttentionResult } from './attention.js';
export {
  isPackedHalf,
  packHalfBytes,
  packedHalfFromBytes,
  packFloat32,
  packedHalfFromFloat32,
  unpackHalfHost,
  unpackHalf,
  packHalf,
  gatherHalf,
  halfToFloat32,
  f32ToF16Bits,
  f16BitsToF32,
  f32ToBf16Bits,
  bf16BitsToF32,
} from './half.js';
export type { PackedHalf } from './half.js';
export type { Activation, HalfFormat } from './wgsl.js';
export { ACTIVATIONS } from './wgsl.js';
export { takeKernelErrors, activeWebGPUBackend, fusedKernelCounts } from './runtime.js';
