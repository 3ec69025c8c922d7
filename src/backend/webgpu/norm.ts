/**
 * LayerNorm and RMSNorm over the last axis in one kernel: a workgroup per row reduces the mean,
 * then the centred second moment (two passes, as the float32 reference does), and writes
 * y = (x - mean) / scale * w + b (LayerNorm) or x / scale * w (RMSNorm), and optionally the
 * per-row scale sqrt(var + eps) (or sqrt(mean(x^2) + eps)) that TransformerLens's hook_scale shows.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { type KernelArgs, type Uniform, bindings, grid1d, registerWebGPUKernel, requireWebGPUBackend, runProgram, runRegistered, uniformStruct } from './runtime.js';

export type NormKind = 'LN' | 'RMS';

/** Options of `norm`. */
export interface NormOptions {
  kind: NormKind;
  eps: number;
  /** [D] multiplier (weights already folded as the model stores them). */
  weight?: tf.Tensor | null;
  /** [D] offset (LayerNorm only). */
  bias?: tf.Tensor | null;
  /** Also return the per-row scale [..., 1]. */
  wantScale?: boolean;
}

const NORM = 'TflensNorm';
const WG = 256;

interface NormAttrs {
  kind: NormKind;
  eps: number;
  rows: number;
  D: number;
  hasW: boolean;
  hasB: boolean;
  wantScale: boolean;
}

/** y (and the scale when asked) of a LayerNorm / RMSNorm over the last axis of float32 x. */
export function norm(x: tf.Tensor, o: NormOptions): { y: tf.Tensor; scale?: tf.Tensor } {
  requireWebGPUBackend('norm');
  if (x.dtype !== 'float32' || x.rank < 1) throw new ShapeError('norm x', expectedFound('a float32 tensor [..., D]', `${x.dtype} [${x.shape}]`));
  if (o.kind !== 'LN' && o.kind !== 'RMS') throw new ValueError('norm kind', expectedFound("'LN' or 'RMS'", o.kind));
  if (!(o.eps >= 0)) throw new ValueError('norm eps', expectedFound('a number >= 0', o.eps));
  const D = x.shape[x.rank - 1];
  for (const [t, n] of [[o.weight, 'weight'], [o.bias, 'bias']] as const) {
    if (t && (t.size !== D || t.dtype !== 'float32')) throw new ShapeError(`norm ${n}`, expectedFound(`float32 with ${D} values`, `${t.dtype} [${t.shape}]`));
  }
  if (o.bias && o.kind === 'RMS') throw new ValueError('norm bias', expectedFound('no bias for RMSNorm', 'a bias'));
  const attrs: NormAttrs = { kind: o.kind, eps: o.eps, rows: x.size / D, D, hasW: !!o.weight, hasB: !!o.bias, wantScale: !!o.wantScale };
  registerWebGPUKernel(NORM, normKernel);
  const outs = runRegistered(NORM, { x, w: o.weight, b: o.bias }, attrs);
  return o.wantScale ? { y: outs[0], scale: outs[1] } : { y: outs[0] };
}

function normKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const a = attrs as unknown as NormAttrs;
  const x = inputs.x;
  const vec = a.D % 4 === 0;
  const V = vec ? 'vec4<f32>' : 'f32';
  const L = vec ? a.D / 4 : a.D;
  const ins: Array<[string, string]> = [['x', V]];
  if (a.hasW) ins.push(['w', V]);
  if (a.hasB) ins.push(['b', V]);
  const outs: Array<[string, string]> = [['y', V]];
  if (a.wantScale) outs.push(['scale_out', 'f32']);
  const wg = grid1d(a.rows);
  const uniforms: Uniform[] = [
    ['rows', 'u32', a.rows],
    ['L', 'u32', L],
    ['D', 'f32', a.D],
    ['eps', 'f32', a.eps],
    ['gx', 'u32', wg[0]],
  ];
  const sum = vec ? '(v.x + v.y + v.z + v.w)' : 'v';
  const prog = {
    name: NORM,
    key: `${NORM}:${a.kind}:${vec}:${a.hasW}:${a.hasB}:${a.wantScale}`,
    workgroups: wg,
    uniforms,
    wgsl: () => `${uniformStruct(uniforms)}${bindings(outs, ins, true)}
var<workgroup> red : array<f32, ${WG}>;
fn wg_sum(v : f32, tid : u32) -> f32 {
  red[tid] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (tid < s) { red[tid] += red[tid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let row = wid.y * u.gx + wid.x;
  if (row >= u.rows) { return; }
  let base = row * u.L;
  var mean = 0.0;
  ${
    a.kind === 'LN'
      ? `var s1 = 0.0;
  for (var i = tid; i < u.L; i += ${WG}u) { let v = x[base + i]; s1 += ${sum}; }
  mean = wg_sum(s1, tid) / u.D;`
      : ''
  }
  var s2 = 0.0;
  for (var i = tid; i < u.L; i += ${WG}u) { let v = x[base + i] - mean; s2 += ${vec ? 'dot(v, v)' : 'v * v'}; }
  let scale = sqrt(wg_sum(s2, tid) / u.D + u.eps);
  for (var i = tid; i < u.L; i += ${WG}u) {
    var v = (x[base + i] - mean) / scale;
    ${a.hasW ? 'v = v * w[i];' : ''}
    ${a.hasB ? 'v = v + b[i];' : ''}
    y[base + i] = v;
  }
  ${a.wantScale ? 'if (tid == 0u) { scale_out[row] = scale; }' : ''}
}`,
  };
  const outSpecs = [{ shape: x.shape, dtype: 'float32' as const }];
  if (a.wantScale) outSpecs.push({ shape: [...x.shape.slice(0, -1), 1], dtype: 'float32' });
  return runProgram(backend, prog, [x, ...(inputs.w ? [inputs.w] : []), ...(inputs.b ? [inputs.b] : [])], outSpecs);
}
