/**
 * Rotary position embedding on the first rotary_dim dims of each head of x [B, T, H, dh], in one
 * element-wise kernel, for int32 position ids [B, T] and inverse frequencies [rotary_dim / 2].
 *
 * The angle pos * inv_freq is formed in float32 (as HF transformers does), then reduced exactly
 * to [-pi, pi] (Cody-Waite: 2 pi split into pieces whose products with the period count are
 * exact, for angles up to about 4e5 rad) before the GPU's sin / cos, whose accuracy outside
 * [-pi, pi] is not guaranteed.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { type KernelArgs, type Uniform, bindings, cdiv, grid1d, registerWebGPUKernel, requireWebGPUBackend, runProgram, runRegistered, uniformStruct } from './runtime.js';

/** 'half': NeoX / LLaMA (rotate_half pairs d and d + rd/2); 'interleaved': GPT-J (pairs 2i, 2i+1). */
export type RotaryStyle = 'half' | 'interleaved';

/** Options of `rotary`. */
export interface RotaryOptions {
  style: RotaryStyle;
  /** Number of leading dims of each head that rotate (even, <= dh). Default dh. */
  rotaryDim?: number;
  /** Inverse frequencies [rotaryDim / 2] (rope scaling tables); else computed from theta. */
  invFreq?: tf.Tensor | Float32Array | null;
  /** Base of the default table inv_freq[i] = theta^(-2i / rotaryDim). Default 10000. */
  theta?: number;
  /** cos / sin multiplied by this (YaRN's and LongRoPE's attention factor); the rotated dims only. Default 1. */
  scale?: number;
}

const ROTARY = 'TflensRotary';

/** The default inverse-frequency table theta^(-2i / rd), i < rd/2, rounded to float32. */
export function ropeInvFreq(rotaryDim: number, theta = 10000): Float32Array {
  const out = new Float32Array(rotaryDim / 2);
  for (let i = 0; i < out.length; i++) out[i] = 1 / Math.pow(theta, (2 * i) / rotaryDim);
  return out;
}

/** x rounded down to `bits` significant bits (so that k * piece is exact for small integers k). */
function truncBits(x: number, bits: number): number {
  const m = 2 ** (bits - 1 - Math.floor(Math.log2(x)));
  return Math.floor(x * m) / m;
}

const TWO_PI_PIECES = (() => {
  const pieces: number[] = [];
  let rest = 2 * Math.PI;
  for (let i = 0; i < 3; i++) {
    const p = truncBits(rest, 8);
    pieces.push(p);
    rest -= p;
  }
  pieces.push(Math.fround(rest));
  return pieces;
})();

/** x with rotary embedding applied (same shape). */
export function rotary(x: tf.Tensor, positions: tf.Tensor, o: RotaryOptions): tf.Tensor {
  requireWebGPUBackend('rotary');
  if (x.rank !== 4 || x.dtype !== 'float32') throw new ShapeError('rotary x', expectedFound('float32 [B, T, H, dh]', `${x.dtype} [${x.shape}]`));
  const [B, T, H, dh] = x.shape;
  if (positions.dtype !== 'int32' || !tf.util.arraysEqual(positions.shape, [B, T])) {
    throw new ShapeError('rotary positions', expectedFound(`int32 [${B}, ${T}]`, `${positions.dtype} [${positions.shape}]`));
  }
  if (o.style !== 'half' && o.style !== 'interleaved') throw new ValueError('rotary style', expectedFound("'half' or 'interleaved'", o.style));
  const rd = o.rotaryDim ?? dh;
  if (!Number.isInteger(rd) || rd < 2 || rd > dh || rd % 2 !== 0) throw new ValueError('rotary rotaryDim', expectedFound(`an even integer in [2, ${dh}]`, rd));
  let inv = o.invFreq ?? ropeInvFreq(rd, o.theta ?? 10000);
  const own = !(inv instanceof tf.Tensor);
  if (inv instanceof Float32Array) inv = tf.tensor1d(inv);
  if (inv.size !== rd / 2 || inv.dtype !== 'float32') {
    if (own) inv.dispose();
    throw new ShapeError('rotary invFreq', expectedFound(`float32 with ${rd / 2} values`, `${inv.dtype} [${inv.shape}]`));
  }
  const scale = o.scale ?? 1;
  if (!Number.isFinite(scale)) {
    if (own) inv.dispose();
    throw new ValueError('rotary scale', expectedFound('a finite number', scale));
  }
  registerWebGPUKernel(ROTARY, rotaryKernel);
  const y = runRegistered(ROTARY, { x, positions, inv }, { style: o.style, rd, H, dh, scale })[0];
  if (own) inv.dispose();
  return y;
}

function rotaryKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const { style, rd, H, dh, scale } = attrs as { style: RotaryStyle; rd: number; H: number; dh: number; scale: number };
  const x = inputs.x;
  const n = tf.util.sizeFromShape(x.shape);
  const wg = grid1d(cdiv(n, 256));
  const uniforms: Uniform[] = [
    ['n', 'u32', n],
    ['H', 'u32', H],
    ['dh', 'u32', dh],
    ['rd', 'u32', rd],
    ['stride_x', 'u32', wg[0] * 256],
    ['scale', 'f32', scale],
  ];
  const [c1, c2, c3, c4] = TWO_PI_PIECES.map((p) => p.toPrecision(17));
  const rotate =
    style === 'half'
      ? `let hr = u.rd / 2u;
    var fi = d;
    var partner = 0.0;
    if (d < hr) { partner = -x[i + hr]; } else { fi = d - hr; partner = x[i - hr]; }`
      : `let fi = d / 2u;
    var partner = 0.0;
    if (d % 2u == 0u) { partner = -x[i + 1u]; } else { partner = x[i - 1u]; }`;
  const prog = {
    name: ROTARY,
    key: `${ROTARY}:${style}`,
    workgroups: wg,
    uniforms,
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['y', 'f32']], [['x', 'f32'], ['pos', 'i32'], ['inv', 'f32']], true)}
fn reduce_angle(a : f32) -> f32 {
  let k = round(a * ${(1 / (2 * Math.PI)).toPrecision(17)});
  var r = a - k * ${c1};
  r = r - k * ${c2};
  r = r - k * ${c3};
  return r - k * ${c4};
}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.y * u.stride_x + gid.x;
  if (i >= u.n) { return; }
  let d = i % u.dh;
  if (d >= u.rd) { y[i] = x[i]; return; }
  let bt = i / (u.dh * u.H);
  ${rotate}
  let r = reduce_angle(f32(pos[bt]) * inv[fi]);
  y[i] = (x[i] * cos(r) + partner * sin(r)) * u.scale;
}`,
  };
  return runProgram(backend, prog, [x, inputs.positions, inputs.inv], [{ shape: x.shape, dtype: 'float32' }])[0];
}
