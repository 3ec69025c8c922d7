/**
 * y = act(x @ W + b) (+ residual | * other): x [..., K] float32, W [K, M] float32 or packed half
 * (f16 / bf16 words, decoded in registers), float32 accumulation, the epilogue fused.
 *
 * W may also be a stack of G column blocks [G, K, Mg], read as the [K, G * Mg] matrix whose columns
 * g * Mg .. (g + 1) * Mg - 1 are block g (a strided view, nothing copied): the per-head projections
 * W_Q / W_K / W_V [heads, d_model, d_head] of the canonical layout multiply in one product this way.
 *
 * Two code paths:
 * - tiled: portable. A workgroup computes a BM x BN tile of y; each K-step stages a BK-deep slab of
 *   x (transposed) and of W in workgroup memory with 16-byte loads; each invocation keeps a
 *   TM x TN block of accumulators in registers (split into 4-wide groups spread over the tile so
 *   that workgroup-memory reads are conflict-free) and the next slab is fetched into registers
 *   while the current one is multiplied.
 * - subgroup-matrix: tensor cores through `chromium_experimental_subgroup_matrix` (Dawn). x and W are
 *   converted to f16 on the way into workgroup memory, products accumulate in f32 subgroup
 *   matrices; the epilogue runs per fragment through a small f32 staging area.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { webgpuInfo, type SubgroupMatrixConfig } from './device.js';
import { type PackedHalf, checkPacked, isPackedHalf } from './half.js';
import { type KernelArgs, type Program, type Uniform, bindings, cdiv, registerWebGPUKernel, requireWebGPUBackend, runProgram, runRegistered, uniformStruct } from './runtime.js';
import { ACTIVATIONS, type Activation, type HalfFormat, activationWgsl, unpackHalfWgsl } from './wgsl.js';

/** Weight storage format seen by a kernel. */
export type WeightFormat = 'f32' | HalfFormat;

/** Tile shapes of the tiled path: `BMxBN` (rows of x by columns of W per workgroup). */
export type TileName = '128x128' | '128x64' | '64x64' | '32x64' | '16x64';

interface TileConfig {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
}

/** Tile configurations: 256 invocations each (64 for the thin ones), every thread a TM x TN block. */
export const TILES: Record<TileName, TileConfig> = {
  '128x128': { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 },
  '128x64': { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4 },
  '64x64': { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 },
  '32x64': { BM: 32, BN: 64, BK: 32, TM: 4, TN: 4 },
  '16x64': { BM: 16, BN: 64, BK: 32, TM: 4, TN: 4 },
};

/** How the third tensor joins the result: added (residual stream) or multiplied (gated MLP). */
export type Combine = 'none' | 'add' | 'mul';

/** Options of `matmul`. */
export interface MatmulOptions {
  /** [M], added before the activation. */
  bias?: tf.Tensor | null;
  /** Applied to x @ W + b. Default 'none'. */
  activation?: Activation;
  /** [..., M], added after the activation (residual stream update). */
  residual?: tf.Tensor | null;
  /** [..., M], multiplied after the activation (used for gated MLPs on the subgroup-matrix path). */
  multiply?: tf.Tensor | null;
  /**
   * 'tiled' (float32 arithmetic everywhere), 'subgroup-matrix' (tensor cores: x and W rounded to
   * f16, f32 accumulation; needs the device feature), or 'auto' (default): subgroup matrices for
   * half-precision weights when the device has them and the shape fits, tiled otherwise.
   */
  path?: 'auto' | 'tiled' | 'subgroup-matrix';
  /** Tile of the tiled path (default: by shape). */
  tile?: TileName;
}

/** What a matmul kernel is specialised on (exported for shader inspection). */
export interface MatmulAttrs {
  N: number;
  K: number;
  M: number;
  format: WeightFormat;
  act: Activation;
  hasBias: boolean;
  combine: Combine;
  path: 'tiled' | 'subgroup-matrix';
  tile: TileName;
  outShape: number[];
  /** Column blocks of W (1: a plain [K, M] matrix) and the columns of each (M = G * Mg). */
  G: number;
  Mg: number;
}

const MATMUL = 'TflensMatmul';
const GATED = 'TflensGatedMatmul';

/** A checked weight: columns M, storage format, the tensor bound to the kernel, column blocks G of Mg columns. */
interface WeightInfo {
  M: number;
  format: WeightFormat;
  tensor: tf.Tensor;
  G: number;
  Mg: number;
}

/** W as [K, M] or as column blocks [G, K, Mg] (float32 tensor or PackedHalf). */
function checkWeight(w: tf.Tensor | PackedHalf, K: number, where: string): WeightInfo {
  const shape = w.shape;
  const grouped = shape.length === 3;
  if ((shape.length !== 2 && !grouped) || shape[shape.length - 2] !== K) {
    throw new ShapeError(where, expectedFound(`a [${K}, M] matrix or column blocks [G, ${K}, Mg]`, `[${shape}]`));
  }
  const G = grouped ? shape[0] : 1;
  const Mg = shape[shape.length - 1];
  if (isPackedHalf(w)) {
    checkPacked(w, where);
    return { M: G * Mg, format: w.format, tensor: w.words, G, Mg };
  }
  if (w.dtype !== 'float32') throw new ShapeError(where, expectedFound('float32 weights', w.dtype));
  return { M: G * Mg, format: 'f32', tensor: w, G, Mg };
}

function checkVector(t: tf.Tensor | null | undefined, M: number, where: string): void {
  if (t && (t.size !== M || t.dtype !== 'float32')) throw new ShapeError(where, expectedFound(`a float32 tensor of ${M} values`, `${t.dtype} [${t.shape}]`));
}

function checkLike(t: tf.Tensor | null | undefined, shape: number[], where: string): void {
  if (t && (!tf.util.arraysEqual(t.shape, shape) || t.dtype !== 'float32')) {
    throw new ShapeError(where, expectedFound(`float32 [${shape}]`, `${t.dtype} [${t.shape}]`));
  }
}

/**
 * The tile the tiled path uses for an N x M output when none is asked for. On an H100, 128x64 was the
 * fastest (or within 2%) of the large tiles on every large product measured (bench/kernels/README.md);
 * 64x64 wins when 128x64 would leave the GPU's 132 SMs short of workgroups.
 */
export function defaultTile(N: number, M: number): TileName {
  if (N <= 16) return '16x64';
  if (N <= 48) return '32x64';
  if (N >= 256 && cdiv(N, 128) * cdiv(M, 64) >= 132) return '128x64';
  return '64x64';
}

/** The subgroup-matrix tile shape used (f16 inputs, f32 results), or null when the device has none. */
export function subgroupMatrixTile(): SubgroupMatrixConfig | null {
  const info = webgpuInfo();
  if (!info || !info.features.subgroupMatrix || !info.features.shaderF16) return null;
  const ok = info.subgroupMatrixConfigs.filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && 32 % c.M === 0 && 64 % c.N === 0 && 32 % c.K === 0);
  ok.sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K);
  return ok[0] ?? null;
}

function choosePath(path: MatmulOptions['path'], format: WeightFormat, K: number, M: number, G = 1): 'tiled' | 'subgroup-matrix' {
  const fits = subgroupMatrixTile() !== null && K % 4 === 0 && M % 8 === 0 && G === 1;
  if (path === 'subgroup-matrix') {
    if (!fits) throw new ValueError('matmul path', expectedFound('a device with f16 subgroup matrices, K % 4 == 0, M % 8 == 0 and a plain [K, M] weight', `K=${K}, M=${M}, G=${G}, configs ${JSON.stringify(webgpuInfo()?.subgroupMatrixConfigs ?? [])}`));
    return 'subgroup-matrix';
  }
  if (path === 'tiled') return 'tiled';
  return fits && format !== 'f32' ? 'subgroup-matrix' : 'tiled';
}

/**
 * y = act(x @ W + bias) (+ residual) (* multiply), shape [...x.shape[:-1], M].
 * x: float32 [..., K]; W: float32 [K, M] or a PackedHalf [K, M], or column blocks [G, K, Mg]
 * (M = G * Mg; always on the tiled path).
 */
export function matmul(x: tf.Tensor, w: tf.Tensor | PackedHalf, opts: MatmulOptions = {}): tf.Tensor {
  requireWebGPUBackend('matmul');
  const K = x.shape[x.rank - 1];
  if (x.dtype !== 'float32' || x.rank < 1) throw new ShapeError('matmul x', expectedFound('a float32 tensor [..., K]', `${x.dtype} [${x.shape}]`));
  const { M, format, tensor: wt, G, Mg } = checkWeight(w, K, 'matmul W');
  const N = x.size / K;
  const outShape = [...x.shape.slice(0, -1), M];
  checkVector(opts.bias, M, 'matmul bias');
  checkLike(opts.residual, outShape, 'matmul residual');
  checkLike(opts.multiply, outShape, 'matmul multiply');
  if (opts.residual && opts.multiply) throw new ValueError('matmul', expectedFound('at most one of residual and multiply', 'both'));
  const act = opts.activation ?? 'none';
  if (!ACTIVATIONS.includes(act)) throw new ValueError('matmul activation', expectedFound(ACTIVATIONS.join(' | '), act));
  const attrs: MatmulAttrs = {
    N,
    K,
    M,
    format,
    act,
    hasBias: !!opts.bias,
    combine: opts.residual ? 'add' : opts.multiply ? 'mul' : 'none',
    path: choosePath(opts.path, format, K, M, G),
    tile: opts.tile ?? defaultTile(N, M),
    outShape,
    G,
    Mg,
  };
  if (!TILES[attrs.tile]) throw new ValueError('matmul tile', expectedFound(Object.keys(TILES).join(' | '), attrs.tile));
  registerWebGPUKernel(MATMUL, matmulKernel);
  return runRegistered(MATMUL, { x, w: wt, bias: opts.bias, other: opts.residual ?? opts.multiply }, attrs)[0];
}

/** Options of `gatedMatmul`. */
export interface GatedOptions {
  biasGate?: tf.Tensor | null;
  biasUp?: tf.Tensor | null;
  /** Applied to the gate branch (SwiGLU: 'silu', GeGLU: 'gelu'). */
  activation: Activation;
  path?: MatmulOptions['path'];
  tile?: TileName;
}

/**
 * Gated MLP input: act(x @ Wg + bg) * (x @ Wu + bu), shape [..., M]. On the tiled path one kernel
 * computes both products (two accumulator sets, x read once); on the subgroup-matrix path the up
 * product is one dispatch and the gate product multiplies it in its epilogue.
 */
export function gatedMatmul(x: tf.Tensor, wGate: tf.Tensor | PackedHalf, wUp: tf.Tensor | PackedHalf, opts: GatedOptions): tf.Tensor {
  requireWebGPUBackend('gatedMatmul');
  const K = x.shape[x.rank - 1];
  if (x.dtype !== 'float32') throw new ShapeError('gatedMatmul x', expectedFound('a float32 tensor [..., K]', `${x.dtype} [${x.shape}]`));
  const gate = checkWeight(wGate, K, 'gatedMatmul W_gate');
  const up = checkWeight(wUp, K, 'gatedMatmul W_up');
  const { M, format } = gate;
  if (gate.G !== 1 || up.G !== 1 || up.M !== M || up.format !== format) {
    throw new ShapeError('gatedMatmul W_up', expectedFound(`${format} [${K}, ${M}] like W_gate (plain matrices)`, `${up.format} [${K}, ${up.M}]`));
  }
  checkVector(opts.biasGate, M, 'gatedMatmul bias_gate');
  checkVector(opts.biasUp, M, 'gatedMatmul bias_up');
  const path = choosePath(opts.path, format, K, M);
  if (path === 'subgroup-matrix') {
    const up = matmul(x, wUp, { bias: opts.biasUp, path });
    const y = matmul(x, wGate, { bias: opts.biasGate, activation: opts.activation, multiply: up, path });
    up.dispose();
    return y;
  }
  const N = x.size / K;
  const attrs: MatmulAttrs & { hasBiasUp: boolean } = {
    N,
    K,
    M,
    format,
    act: opts.activation,
    hasBias: !!opts.biasGate,
    hasBiasUp: !!opts.biasUp,
    combine: 'none',
    path,
    tile: opts.tile ?? gatedTile(defaultTile(N, M)),
    outShape: [...x.shape.slice(0, -1), M],
    G: 1,
    Mg: M,
  };
  registerWebGPUKernel(GATED, gatedKernel);
  return runRegistered(GATED, { x, w: gate.tensor, w2: up.tensor, bias: opts.biasGate, bias2: opts.biasUp }, attrs)[0];
}

/** Two accumulator sets double the registers: the 8x8 blocks of the big tile are too many. */
function gatedTile(t: TileName): TileName {
  return t === '128x128' ? '128x64' : t;
}

function matmulKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const a = attrs as unknown as MatmulAttrs;
  const ins = [inputs.x, inputs.w, ...(inputs.bias ? [inputs.bias] : []), ...(inputs.other ? [inputs.other] : [])];
  const prog = a.path === 'subgroup-matrix' ? subgroupProgram(a, subgroupMatrixTile()!) : tiledProgram(a, false, false);
  return runProgram(backend, prog, ins, [{ shape: a.outShape, dtype: 'float32' }])[0];
}

function gatedKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const a = attrs as unknown as MatmulAttrs & { hasBiasUp: boolean };
  const ins = [inputs.x, inputs.w, inputs.w2, ...(inputs.bias ? [inputs.bias] : []), ...(inputs.bias2 ? [inputs.bias2] : [])];
  return runProgram(backend, tiledProgram(a, true, a.hasBiasUp), ins, [{ shape: a.outShape, dtype: 'float32' }])[0];
}

function matmulUniforms(a: MatmulAttrs): Uniform[] {
  // wpr: elements (float32) or words (halves) per stored row of W; a row of a column block holds Mg columns
  return [
    ['N', 'u32', a.N],
    ['K', 'u32', a.K],
    ['M', 'u32', a.M],
    ['wpr', 'u32', a.format === 'f32' ? a.Mg : cdiv(a.Mg, 2)],
    ['Mg', 'u32', a.Mg],
  ];
}

/* ------------------------------------------------------------------ tiled path */

/**
 * WGSL for loading one 4-wide group of W (columns col..col+3 of row k) as f32. `grouped`: W is
 * column blocks [G, K, Mg] (column col lies in block col / Mg). Aligned loads need every 4-column
 * group inside one stored row, 16-byte (float32) or 8-byte (two words of halves) aligned.
 */
function weightLoadWgsl(format: WeightFormat, aligned: boolean, grouped: boolean, name: string): string {
  // base: first element (float32) or word (halves) of the stored row holding column col; c: col within it
  const locate = grouped ? 'let g = col / u.Mg; let base = (g * u.K + k) * u.wpr; let c = col - g * u.Mg;' : 'let base = k * u.wpr; let c = col;';
  const one =
    format === 'f32'
      ? `fn ${name}_at(k : u32, col : u32) -> f32 { ${locate} return ${name}[base + c]; }`
      : `fn ${name}_at(k : u32, col : u32) -> f32 { ${locate} let h = unpack_half(${name}[base + c / 2u]); return select(h.x, h.y, (c & 1u) == 1u); }`;
  if (!aligned) {
    return `${one}
fn load_${name}(k : u32, col : u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (k >= u.K) { return v; }
  for (var c = 0u; c < 4u; c++) { if (col + c < u.M) { v[c] = ${name}_at(k, col + c); } }
  return v;
}`;
  }
  const body =
    format === 'f32'
      ? `return ${name}[(base + c) / 4u];`
      : `let ww = ${name}[(base + c / 2u) / 2u];
  return vec4<f32>(unpack_half(ww.x), unpack_half(ww.y));`;
  return `fn load_${name}(k : u32, col : u32) -> vec4<f32> {
  if (k >= u.K || col >= u.M) { return vec4<f32>(0.0); }
  ${locate}
  ${body}
}`;
}

function xLoadWgsl(aligned: boolean): string {
  return aligned
    ? `fn load_x(row : u32, k : u32) -> vec4<f32> {
  if (row >= u.N || k >= u.K) { return vec4<f32>(0.0); }
  return x[(row * u.K + k) / 4u];
}`
    : `fn load_x(row : u32, k : u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  if (row >= u.N) { return v; }
  for (var c = 0u; c < 4u; c++) { if (k + c < u.K) { v[c] = x[row * u.K + k + c]; } }
  return v;
}`;
}

/**
 * The tiled kernel. With `gated`, a second weight (w2) and accumulator set give
 * act(x@W + b) * (x@W2 + b2). Bindings: y; x, w, [w2], [bias], [bias2 | other]; u.
 */
function tiledProgram(a: MatmulAttrs, gated: boolean, hasBias2: boolean): Program {
  const { BM, BN, BK, TM, TN } = TILES[a.tile];
  const TX = BN / TN;
  const TY = BM / TM;
  const NT = TX * TY;
  const GM = TM / 4; // 4-row groups per thread
  const GN = TN / 4; // 4-column groups per thread
  const alignX = a.K % 4 === 0;
  const alignW = a.Mg % 4 === 0; // float32: one vec4 per 4 columns; halves: one vec2 of words
  const alignY = a.M % 4 === 0;
  const weights = gated ? ['w', 'w2'] : ['w'];
  const wType = a.format === 'f32' ? (alignW ? 'vec4<f32>' : 'f32') : alignW ? 'vec2<u32>' : 'u32';
  const inputs: Array<[string, string]> = [['x', alignX ? 'vec4<f32>' : 'f32'], ...weights.map((n): [string, string] => [n, wType])];
  if (a.hasBias) inputs.push(['bias', alignY ? 'vec4<f32>' : 'f32']);
  if (hasBias2) inputs.push(['bias2', alignY ? 'vec4<f32>' : 'f32']);
  if (a.combine !== 'none') inputs.push(['other', alignY ? 'vec4<f32>' : 'f32']);
  const uniforms = matmulUniforms(a);
  const A_BLOCKS = (BM * BK) / 16; // 4 x 4 blocks of x per slab (never more than NT)
  const B_LOADS = (BK * BN) / 4 / NT; // 4-column groups of W per thread per slab
  const grouped = a.G > 1;
  const key = `${MATMUL}:tiled:${a.tile}:${a.format}:${a.act}:${a.hasBias}:${hasBias2}:${a.combine}:${gated}:${grouped}:${alignX}${alignW}${alignY}`;
  const accs = (s: string) => Array.from({ length: GM * 4 * GN }, (_, i) => `var ${s}${i} = vec4<f32>(0.0);`).join('\n  ');

  // x is staged transposed (k-major) in 4 x 4 blocks: one invocation loads four rows' 4-wide
  // pieces and stores four whole k-columns, so no two invocations write parts of one vec4
  const fetch = (tile: string) => {
    const lines: string[] = [];
    lines.push(`if (tid < ${A_BLOCKS}u) { let rb = tid / ${BK / 4}u; let kb = tid % ${BK / 4}u;
      ${[0, 1, 2, 3].map((c) => `ra${c} = load_x(r0 + rb * 4u + ${c}u, ${tile} * ${BK}u + kb * 4u);`).join(' ')} }`);
    for (let i = 0; i < B_LOADS; i++) {
      for (const w of weights) {
        lines.push(`{ let idx = tid + ${i * NT}u; let kr = idx / ${BN / 4}u; let cq = idx % ${BN / 4}u;
      rb_${w}_${i} = load_${w}(${tile} * ${BK}u + kr, c0 + cq * 4u); }`);
      }
    }
    return lines.join('\n    ');
  };
  const stash = () => {
    const lines: string[] = [];
    lines.push(`if (tid < ${A_BLOCKS}u) { let rb = tid / ${BK / 4}u; let kb = tid % ${BK / 4}u;
      ${[0, 1, 2, 3].map((c) => `As[(kb * 4u + ${c}u) * ${BM / 4}u + rb] = vec4<f32>(ra0[${c}], ra1[${c}], ra2[${c}], ra3[${c}]);`).join(' ')} }`);
    for (let i = 0; i < B_LOADS; i++) {
      for (const w of weights) lines.push(`Bs_${w}[tid + ${i * NT}u] = rb_${w}_${i};`);
    }
    return lines.join('\n    ');
  };
  const regDecl = [
    'var ra0 : vec4<f32>; var ra1 : vec4<f32>; var ra2 : vec4<f32>; var ra3 : vec4<f32>;',
    ...weights.flatMap((w) => Array.from({ length: B_LOADS }, (_, i) => `var rb_${w}_${i} : vec4<f32>;`)),
  ].join(' ');
  const multiply = () => {
    const lines: string[] = [];
    for (let gi = 0; gi < GM; gi++) lines.push(`let a${gi} = As[kk * ${BM / 4}u + ${gi * TY}u + ty];`);
    for (const w of weights) for (let gj = 0; gj < GN; gj++) lines.push(`let b_${w}${gj} = Bs_${w}[kk * ${BN / 4}u + ${gj * TX}u + tx];`);
    for (let gi = 0; gi < GM; gi++) {
      for (let r = 0; r < 4; r++) {
        for (let gj = 0; gj < GN; gj++) {
          const i = (gi * 4 + r) * GN + gj;
          lines.push(`acc${i} = fma(vec4<f32>(a${gi}[${r}]), b_w${gj}, acc${i});`);
          if (gated) lines.push(`acd${i} = fma(vec4<f32>(a${gi}[${r}]), b_w2${gj}, acd${i});`);
        }
      }
    }
    return lines.join('\n      ');
  };
  const epilogue = () => {
    const lines: string[] = [];
    for (let gi = 0; gi < GM; gi++) {
      for (let r = 0; r < 4; r++) {
        for (let gj = 0; gj < GN; gj++) {
          const i = (gi * 4 + r) * GN + gj;
          lines.push(`store(r0 + ${gi * TY * 4}u + ty * 4u + ${r}u, c0 + ${gj * TX * 4}u + tx * 4u, acc${i}${gated ? `, acd${i}` : ''});`);
        }
      }
    }
    return lines.join('\n  ');
  };
  const vecAt = (name: string) => (alignY ? `${name}[col / 4u]` : `vec4<f32>(${[0, 1, 2, 3].map((c) => `${name}[min(col + ${c}u, u.M - 1u)]`).join(', ')})`);
  const rowAt = (name: string) => (alignY ? `${name}[(row * u.M + col) / 4u]` : `vec4<f32>(${[0, 1, 2, 3].map((c) => `${name}[row * u.M + min(col + ${c}u, u.M - 1u)]`).join(', ')})`);
  const storeFn = `fn store(row : u32, col : u32, acc : vec4<f32>${gated ? ', acd : vec4<f32>' : ''}) {
  if (row >= u.N || col >= u.M) { return; }
  var v = acc${a.hasBias ? ` + ${vecAt('bias')}` : ''};
  v = vec4<f32>(act(v.x), act(v.y), act(v.z), act(v.w));
  ${gated ? `v = v * (acd${hasBias2 ? ` + ${vecAt('bias2')}` : ''});` : ''}
  ${a.combine === 'add' ? `v = v + ${rowAt('other')};` : a.combine === 'mul' ? `v = v * ${rowAt('other')};` : ''}
  ${alignY ? 'y[(row * u.M + col) / 4u] = v;' : 'for (var c = 0u; c < 4u; c++) { if (col + c < u.M) { y[row * u.M + col + c] = v[c]; } }'}
}`;
  return {
    name: gated ? GATED : MATMUL,
    key,
    uniforms,
    workgroups: [cdiv(a.M, BN), cdiv(a.N, BM), 1],
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['y', alignY ? 'vec4<f32>' : 'f32']], inputs, true)}
${a.format === 'f32' ? '' : unpackHalfWgsl(a.format)}
${activationWgsl(a.act)}
${xLoadWgsl(alignX)}
${weights.map((w) => weightLoadWgsl(a.format, alignW, grouped, w)).join('\n')}
${storeFn}
var<workgroup> As : array<vec4<f32>, ${(BK * BM) / 4}>;
${weights.map((w) => `var<workgroup> Bs_${w} : array<vec4<f32>, ${(BK * BN) / 4}>;`).join('\n')}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let tx = tid % ${TX}u;
  let ty = tid / ${TX}u;
  let r0 = wid.y * ${BM}u;
  let c0 = wid.x * ${BN}u;
  ${accs('acc')}
  ${gated ? accs('acd') : ''}
  ${regDecl}
  let tiles = (u.K + ${BK - 1}u) / ${BK}u;
  ${fetch('0u')}
  ${stash()}
  workgroupBarrier();
  for (var t = 0u; t < tiles; t++) {
    if (t + 1u < tiles) {
    ${fetch('(t + 1u)')}
    }
    for (var kk = 0u; kk < ${BK}u; kk++) {
      ${multiply()}
    }
    workgroupBarrier();
    if (t + 1u < tiles) {
    ${stash()}
    }
    workgroupBarrier();
  }
  ${epilogue()}
}`,
  };
}

/* ------------------------------------------------------------------ subgroup-matrix path */

/**
 * Tensor-core kernel: 4 subgroups in a 2 x 2 grid, each owning a 32 x 64 block of y made of
 * (32/SM) x (64/SN) result fragments; a 64 x 128 tile per workgroup, K consumed 32 at a time.
 * Bindings: y; x (vec4 f32), w (vec4 words or vec4 f32), [bias], [other]; u.
 */
export function subgroupProgram(a: MatmulAttrs, cfg: SubgroupMatrixConfig, SG = webgpuInfo()?.subgroupMaxSize || 32): Program {
  const { M: SM, N: SN, K: SK } = cfg;
  const WM = 2;
  const WN = 2;
  const BM = 64;
  const BN = 128;
  const BK = 32;
  const FM = BM / WM / SM;
  const FN = BN / WN / SN;
  const NT = WM * WN * SG;
  const inputs: Array<[string, string]> = [
    ['x', 'vec4<f32>'],
    ['w', a.format === 'f32' ? 'vec4<f32>' : 'vec4<u32>'],
  ];
  if (a.hasBias) inputs.push(['bias', 'f32']);
  if (a.combine !== 'none') inputs.push(['other', 'f32']);
  const uniforms = matmulUniforms(a);
  const key = `${MATMUL}:sgm:${SM}x${SN}x${SK}:${SG}:${a.format}:${a.act}:${a.hasBias}:${a.combine}`;
  const L = `subgroup_matrix_left<f16, ${SK}, ${SM}>`;
  const R = `subgroup_matrix_right<f16, ${SN}, ${SK}>`;
  const RES = `subgroup_matrix_result<f32, ${SN}, ${SM}>`;
  const frag = (i: number, j: number) => `acc_${i}_${j}`;
  const decl: string[] = [];
  const mma: string[] = [];
  const epi: string[] = [];
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) decl.push(`var ${frag(i, j)} = ${RES}();`);
  for (let i = 0; i < FM; i++) mma.push(`let a${i} = subgroupMatrixLoad<${L}, row_major>(&As, (wr + ${i * SM}u) * ${BK}u + kk, ${BK}u);`);
  for (let j = 0; j < FN; j++) mma.push(`let b${j} = subgroupMatrixLoad<${R}, row_major>(&Bs, kk * ${BN}u + wc + ${j * SN}u, ${BN}u);`);
  for (let i = 0; i < FM; i++) for (let j = 0; j < FN; j++) mma.push(`${frag(i, j)} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, ${frag(i, j)});`);
  for (let i = 0; i < FM; i++) {
    for (let j = 0; j < FN; j++) {
      epi.push(`subgroupMatrixStore<row_major>(&Cs, sg * ${SM * SN}u, ${frag(i, j)}, ${SN}u);
  workgroupBarrier();
  emit(r0 + wr + ${i * SM}u, c0 + wc + ${j * SN}u, sg * ${SM * SN}u, lane);
  workgroupBarrier();`);
    }
  }
  const wLoad =
    a.format === 'f32'
      ? `{ var v = vec4<f32>(0.0); if (k < u.K && col < u.M) { v = w[(k * u.M + col) / 4u]; }
      for (var c = 0u; c < 4u; c++) { Bs[kr * ${BN}u + cq * 4u + c] = f16(v[c]); } }`
      : `{ var v = vec4<u32>(0u); if (k < u.K && col < u.M) { v = w[(k * u.wpr + col / 2u) / 4u]; }
      for (var c = 0u; c < 4u; c++) { let h = ${a.format === 'f16' ? 'bitcast<vec2<f16>>(v[c])' : 'vec2<f16>(unpack_half(v[c]))'}; Bs[kr * ${BN}u + cq * 8u + 2u * c] = h.x; Bs[kr * ${BN}u + cq * 8u + 2u * c + 1u] = h.y; } }`;
  const colsPerLoad = a.format === 'f32' ? 4 : 8;
  return {
    name: MATMUL,
    key,
    uniforms,
    workgroups: [cdiv(a.M, BN), cdiv(a.N, BM), 1],
    wgsl: () => `enable f16;
enable chromium_experimental_subgroup_matrix;
diagnostic(off, chromium.subgroup_matrix_uniformity);
diagnostic(off, subgroup_uniformity);
${uniformStruct(uniforms)}${bindings([['y', 'f32']], inputs, true)}
${a.format === 'bf16' ? unpackHalfWgsl('bf16') : ''}
${activationWgsl(a.act)}
var<workgroup> As : array<f16, ${BM * BK}>;
var<workgroup> Bs : array<f16, ${BK * BN}>;
var<workgroup> Cs : array<f32, ${WM * WN * SM * SN}>;

fn emit(row0 : u32, col0 : u32, base : u32, lane : u32) {
  for (var e = lane; e < ${SM * SN}u; e += ${SG}u) {
    let row = row0 + e / ${SN}u;
    let col = col0 + e % ${SN}u;
    if (row < u.N && col < u.M) {
      var v = Cs[base + e]${a.hasBias ? ' + bias[col]' : ''};
      v = act(v);
      ${a.combine === 'add' ? 'v = v + other[row * u.M + col];' : a.combine === 'mul' ? 'v = v * other[row * u.M + col];' : ''}
      y[row * u.M + col] = v;
    }
  }
}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let sg = tid / ${SG}u;
  let lane = tid % ${SG}u;
  let wr = (sg / ${WN}u) * ${BM / WM}u;
  let wc = (sg % ${WN}u) * ${BN / WN}u;
  let r0 = wid.y * ${BM}u;
  let c0 = wid.x * ${BN}u;
  ${decl.join('\n  ')}
  for (var k0 = 0u; k0 < u.K; k0 += ${BK}u) {
    for (var i = tid; i < ${(BM * BK) / 4}u; i += ${NT}u) {
      let row = i / ${BK / 4}u;
      let kq = i % ${BK / 4}u;
      let k = k0 + kq * 4u;
      var v = vec4<f32>(0.0);
      if (r0 + row < u.N && k < u.K) { v = x[((r0 + row) * u.K + k) / 4u]; }
      for (var c = 0u; c < 4u; c++) { As[row * ${BK}u + kq * 4u + c] = f16(v[c]); }
    }
    for (var i = tid; i < ${(BK * BN) / colsPerLoad}u; i += ${NT}u) {
      let kr = i / ${BN / colsPerLoad}u;
      let cq = i % ${BN / colsPerLoad}u;
      let k = k0 + kr;
      let col = c0 + cq * ${colsPerLoad}u;
      ${wLoad}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk += ${SK}u) {
      ${mma.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${epi.join('\n  ')}
}`,
  };
}
