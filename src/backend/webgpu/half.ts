/**
 * Half-precision weights on the GPU: two 16-bit values per 32-bit word, stored in an int32 tfjs
 * tensor (tfjs has no 16-bit dtype). Word j of a row holds columns 2j (low 16 bits) and 2j+1
 * (high 16 bits), so a row of little-endian F16/BF16 safetensors bytes IS that row of words: an
 * even-width tensor is used in place (no host float32 copy, no copy at all when the bytes are
 * 4-byte aligned). Kernels decode words in registers and accumulate in float32.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { type KernelArgs, bindings, cdiv, grid1d, registerWebGPUKernel, requireWebGPUBackend, runProgram, runRegistered, uniformStruct } from './runtime.js';
import { type HalfFormat, unpackHalfWgsl } from './wgsl.js';

/** A half-precision matrix (or stack of matrices) as packed words on a tfjs backend. */
export interface PackedHalf {
  /** int32 tensor [...lead, ceil(cols / 2)] of packed words. */
  words: tf.Tensor;
  /** 'f16' (IEEE binary16) or 'bf16' (bfloat16). */
  format: HalfFormat;
  /** Logical shape [...lead, cols]. */
  shape: number[];
}

/** True for a PackedHalf (as opposed to a float32 tensor). */
export function isPackedHalf(w: unknown): w is PackedHalf {
  return typeof w === 'object' && w !== null && 'words' in w && 'format' in w && 'shape' in w;
}

function rowsCols(shape: number[], where: string): [number, number] {
  if (shape.length < 1 || shape.some((d) => !Number.isInteger(d) || d < 1)) throw new ShapeError(where, expectedFound('a shape of positive integers', shape));
  const cols = shape[shape.length - 1];
  return [shape.slice(0, -1).reduce((a, b) => a * b, 1), cols];
}

/**
 * Packed words from the raw bytes of an F16 or BF16 tensor (safetensors layout, little-endian,
 * row-major `shape`). Even widths give a view of `bytes` when its offset is 4-byte aligned (a
 * memory-mapped file stays the only copy); odd widths are padded by one zero half per row.
 */
export function packHalfBytes(bytes: Uint8Array, shape: number[], where = 'packHalfBytes'): Int32Array {
  const [rows, cols] = rowsCols(shape, where);
  if (bytes.byteLength !== rows * cols * 2) throw new ShapeError(where, expectedFound(`${rows * cols * 2} bytes for shape [${shape}]`, bytes.byteLength));
  const wpr = cdiv(cols, 2);
  if (cols % 2 === 0 && bytes.byteOffset % 4 === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, rows * wpr);
  const src = new Uint16Array(bytes.byteOffset % 2 === 0 ? bytes.buffer : bytes.slice().buffer, bytes.byteOffset % 2 === 0 ? bytes.byteOffset : 0, rows * cols);
  const out = new Uint16Array(rows * wpr * 2);
  for (let r = 0; r < rows; r++) out.set(src.subarray(r * cols, (r + 1) * cols), r * wpr * 2);
  return new Int32Array(out.buffer);
}

/** A PackedHalf tensor from F16/BF16 bytes (see packHalfBytes). */
export function packedHalfFromBytes(bytes: Uint8Array, format: HalfFormat, shape: number[]): PackedHalf {
  const words = packHalfBytes(bytes, shape);
  return { words: tf.tensor(words, [...shape.slice(0, -1), cdiv(shape[shape.length - 1], 2)], 'int32'), format, shape: [...shape] };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE binary16 bits of x, rounded to nearest even (overflow to Infinity, NaN kept). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  let shift = 13;
  let base = e << 10;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    shift = 14 - e;
    base = 0;
  }
  let h = base | (mant >>> shift);
  const rem = mant & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rem > halfway || (rem === halfway && (h & 1))) h++; // a carry may step into the exponent: still correct
  return sign | h;
}

/** The float value of IEEE binary16 bits. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bits of x, rounded to nearest even (NaN kept). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The float value of bfloat16 bits. */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

/** Packs float32 values (row-major `shape`) into half words, rounding to nearest even. */
export function packFloat32(values: Float32Array, format: HalfFormat, shape: number[]): Int32Array {
  const [rows, cols] = rowsCols(shape, 'packFloat32');
  if (values.length !== rows * cols) throw new ShapeError('packFloat32', expectedFound(`${rows * cols} values for shape [${shape}]`, values.length));
  const conv = format === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
  const wpr = cdiv(cols, 2);
  const halves = new Uint16Array(rows * wpr * 2);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) halves[r * wpr * 2 + c] = conv(values[r * cols + c]);
  return new Int32Array(halves.buffer);
}

/** A PackedHalf tensor from float32 values (rounded to the format). */
export function packedHalfFromFloat32(values: Float32Array, format: HalfFormat, shape: number[]): PackedHalf {
  const words = packFloat32(values, format, shape);
  return { words: tf.tensor(words, [...shape.slice(0, -1), cdiv(shape[shape.length - 1], 2)], 'int32'), format, shape: [...shape] };
}

let F16_TABLE: Float32Array | null = null;

/**
 * float32 values of 16-bit F16 / BF16 values (a host upcast, e.g. of a safetensors tensor's bytes
 * on backends without the half kernels). F16 goes through a 65536-entry table built once.
 */
export function halfToFloat32(halves: Uint16Array, format: HalfFormat): Float32Array {
  const out = new Float32Array(halves.length);
  if (format === 'bf16') {
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16;
    return out;
  }
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16BitsToF32(h);
  }
  for (let i = 0; i < halves.length; i++) out[i] = F16_TABLE[halves[i]];
  return out;
}

/** Host decoding of packed words to float32 (row-major `shape`): the exact values the kernels use. */
export function unpackHalfHost(words: Int32Array, format: HalfFormat, shape: number[]): Float32Array {
  const [rows, cols] = rowsCols(shape, 'unpackHalfHost');
  const wpr = cdiv(cols, 2);
  if (words.length !== rows * wpr) throw new ShapeError('unpackHalfHost', expectedFound(`${rows * wpr} words`, words.length));
  const halves = new Uint16Array(words.buffer, words.byteOffset, rows * wpr * 2);
  const conv = format === 'f16' ? f16BitsToF32 : bf16BitsToF32;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = conv(halves[r * wpr * 2 + c]);
  return out;
}

/** Checks a PackedHalf's words tensor against its logical shape; returns [rows, cols]. */
export function checkPacked(p: PackedHalf, where: string): [number, number] {
  const [rows, cols] = rowsCols(p.shape, where);
  const want = [...p.shape.slice(0, -1), cdiv(cols, 2)];
  if (p.words.dtype !== 'int32' || !tf.util.arraysEqual(p.words.shape, want)) {
    throw new ShapeError(where, expectedFound(`int32 words of shape [${want}]`, `${p.words.dtype} [${p.words.shape}]`));
  }
  if (p.format !== 'f16' && p.format !== 'bf16') throw new ValueError(where, expectedFound("format 'f16' or 'bf16'", p.format));
  return [rows, cols];
}

const UNPACK = 'TflensUnpackHalf';

/** The entry point's start in pack and unpack: invocation i handles row r, columns c and c + 1. */
const PAIR_MAIN = `@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.y * u.stride_x + gid.x;
  if (i >= u.n) { return; }
  let r = i / u.wpr;
  let c = (i - r * u.wpr) * 2u;`;

/** One invocation per pair of columns (one u32 of two halves): the grid and the uniforms of pack and unpack. */
function pairGrid(shape: number[], where: string): { wpr: number; wg: [number, number, number]; uniforms: Array<[string, 'u32', number]> } {
  const [rows, cols] = rowsCols(shape, where);
  const wpr = cdiv(cols, 2);
  const n = rows * wpr;
  const wg = grid1d(cdiv(n, 256));
  const uniforms: Array<[string, 'u32', number]> = [
    ['n', 'u32', n],
    ['wpr', 'u32', wpr],
    ['cols', 'u32', cols],
    ['stride_x', 'u32', wg[0] * 256],
  ];
  return { wpr, wg, uniforms };
}

function unpackKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const format = attrs.format as HalfFormat;
  const shape = attrs.shape as number[];
  const { wg, uniforms } = pairGrid(shape, UNPACK);
  const prog = {
    name: UNPACK,
    key: `${UNPACK}:${format}`,
    workgroups: wg,
    uniforms,
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['y', 'f32']], [['w', 'u32']], true)}
${unpackHalfWgsl(format)}
${PAIR_MAIN}
  let v = unpack_half(w[i]);
  y[r * u.cols + c] = v.x;
  if (c + 1u < u.cols) { y[r * u.cols + c + 1u] = v.y; }
}`,
  };
  return runProgram(backend, prog, [inputs.words], [{ shape, dtype: 'float32' }])[0];
}

/** The float32 tensor [...shape] of a PackedHalf, decoded on the GPU (for code that needs float32 weights). */
export function unpackHalf(p: PackedHalf): tf.Tensor {
  requireWebGPUBackend('unpackHalf');
  checkPacked(p, 'unpackHalf');
  registerWebGPUKernel(UNPACK, unpackKernel);
  return runRegistered(UNPACK, { words: p.words }, { format: p.format, shape: p.shape })[0];
}

const PACK = 'TflensPackHalf';

/** WGSL `fn half_bits(u : u32) -> u32`: the 16 bits of the float32 with bits u, rounded to nearest even (as f32ToF16Bits / f32ToBf16Bits). */
function halfBitsWgsl(format: HalfFormat): string {
  if (format === 'bf16') {
    return `fn half_bits(u : u32) -> u32 {
  if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u >> 16u) | 0x40u) & 0xffffu; }
  return ((u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u) & 0xffffu;
}`;
  }
  return `fn half_bits(u : u32) -> u32 {
  let sign = (u >> 16u) & 0x8000u;
  let ex = (u >> 23u) & 0xffu;
  var mant = u & 0x7fffffu;
  if (ex == 0xffu) { return sign | 0x7c00u | select(0u, 0x200u, mant != 0u); }
  let e = i32(ex) - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  var shift = 13u;
  var base = u32(max(e, 0)) << 10u;
  if (e <= 0) {
    if (e < -10) { return sign; }
    mant = mant | 0x800000u;
    shift = u32(14 - e);
    base = 0u;
  }
  var h = base | (mant >> shift);
  let rem = mant & ((1u << shift) - 1u);
  let halfway = 1u << (shift - 1u);
  if (rem > halfway || (rem == halfway && (h & 1u) == 1u)) { h = h + 1u; }
  return sign | h;
}`;
}

function packKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const format = attrs.format as HalfFormat;
  const shape = attrs.shape as number[];
  const { wpr, wg, uniforms } = pairGrid(shape, PACK);
  const prog = {
    name: PACK,
    key: `${PACK}:${format}`,
    workgroups: wg,
    uniforms,
    // x is bound as raw bits (u32): no float arithmetic touches the values (subnormals included)
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['w', 'u32']], [['x', 'u32']], true)}
${halfBitsWgsl(format)}
${PAIR_MAIN}
  let lo = half_bits(x[r * u.cols + c]);
  var hi = 0u;
  if (c + 1u < u.cols) { hi = half_bits(x[r * u.cols + c + 1u]); }
  w[i] = lo | (hi << 16u);
}`,
  };
  return runProgram(backend, prog, [inputs.x], [{ shape: [...shape.slice(0, -1), wpr], dtype: 'int32' }])[0];
}

/**
 * A float32 tensor rounded to F16 / BF16 (nearest even) and packed into words on the GPU; the
 * inverse of unpackHalf for values the format holds exactly. The caller owns the words.
 */
export function packHalf(x: tf.Tensor, format: HalfFormat): PackedHalf {
  requireWebGPUBackend('packHalf');
  if (x.dtype !== 'float32') throw new ShapeError('packHalf x', expectedFound('a float32 tensor', x.dtype));
  if (format !== 'f16' && format !== 'bf16') throw new ValueError('packHalf format', expectedFound("'f16' or 'bf16'", format));
  rowsCols(x.shape, 'packHalf x');
  registerWebGPUKernel(PACK, packKernel);
  return { words: runRegistered(PACK, { x }, { format, shape: x.shape })[0], format, shape: [...x.shape] };
}

const GATHER = 'TflensGatherHalf';

function gatherKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { format, cols, rows } = attrs as { format: HalfFormat; cols: number; rows: number };
  const n = tf.util.sizeFromShape(inputs.ids.shape) * cols;
  const wg = grid1d(cdiv(n, 256));
  const uniforms: Array<[string, 'u32', number]> = [
    ['n', 'u32', n],
    ['wpr', 'u32', cdiv(cols, 2)],
    ['cols', 'u32', cols],
    ['rows', 'u32', rows],
    ['stride_x', 'u32', wg[0] * 256],
  ];
  const prog = {
    name: GATHER,
    key: `${GATHER}:${format}`,
    workgroups: wg,
    uniforms,
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['y', 'f32']], [['w', 'u32'], ['ids', 'i32']], true)}
${unpackHalfWgsl(format)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.y * u.stride_x + gid.x;
  if (i >= u.n) { return; }
  let r = i / u.cols;
  let c = i - r * u.cols;
  let id = min(u32(max(ids[r], 0)), u.rows - 1u);
  let h = unpack_half(w[id * u.wpr + c / 2u]);
  y[i] = select(h.x, h.y, (c & 1u) == 1u);
}`,
  };
  return runProgram(backend, prog, [inputs.words, inputs.ids], [{ shape: [...inputs.ids.shape, cols], dtype: 'float32' }])[0];
}

/**
 * Rows `ids` (int32, any shape) of a packed [rows, cols] matrix as float32 [...ids.shape, cols]: an
 * embedding lookup that decodes only the rows it reads (tfjs's own gather moves int32 values through
 * float32, which would corrupt packed words). Ids outside [0, rows) are clamped.
 */
export function gatherHalf(p: PackedHalf, ids: tf.Tensor): tf.Tensor {
  requireWebGPUBackend('gatherHalf');
  const [rows, cols] = checkPacked(p, 'gatherHalf');
  if (p.shape.length !== 2) throw new ShapeError('gatherHalf', expectedFound('a packed [rows, cols] matrix', p.shape));
  if (ids.dtype !== 'int32') throw new ShapeError('gatherHalf ids', expectedFound('int32 ids', ids.dtype));
  registerWebGPUKernel(GATHER, gatherKernel);
  return runRegistered(GATHER, { words: p.words, ids }, { format: p.format, cols, rows })[0];
}
