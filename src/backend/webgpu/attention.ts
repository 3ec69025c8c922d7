/**
 * Fused causal attention (FlashAttention-style): scores, mask, softmax and the value mix in one
 * kernel with an online softmax, so no [T, Tk] matrix exists unless the pattern or the scores are
 * asked for.
 *
 * Layout: q [B, T, H, dh], k / v [B, Tk, KV, dh] (GQA: query head h reads key head
 * floor(h / (H / KV))). A workgroup takes BQ query rows of one (batch, key head) — the G = H / KV
 * heads that share that key head are rows of the same workgroup, so each K/V tile is loaded once
 * for all of them — and walks the keys in tiles of BKV through workgroup memory. Each row is
 * split over TPR invocations (DPT dims each; partial dot products meet in workgroup memory),
 * which keeps the per-invocation registers small for dh up to 256.
 *
 * Masking (as TransformerLens and src/model/ops.ts): key j is visible to query t when the key
 * padding mask keeps it, j <= past + t (causal) and past + t - j < window (sliding window).
 * Score transform order: q.k / scale, then soft-capping cap * tanh(s / cap), then the ALiBi bias
 * slope_h * (j - (past + t)) (or slope_h * keyPosition[b, j] when key positions are given: HF's
 * BLOOM form, positions counted over real tokens), then the mask. Masked entries are -Infinity in the returned scores
 * and 0 in the pattern; a row with every key masked has a zero pattern and z = 0 (TransformerLens
 * replaces the NaN of such rows by zeros).
 *
 * When there are few rows per key head (decoding) the keys are split into chunks handled by
 * separate workgroups (flash-decoding) and a second kernel merges the partial softmax states.
 * Asking for the pattern or the scores adds a second sweep over the keys that recomputes the
 * scores with the final row maximum and sum and writes them (coalesced, through workgroup memory).
 * `wantLastArgmax` adds a small kernel: argmax over keys of the last query row of every head
 * (what retrieval-head scoring reads), without any pattern.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { type KernelArgs, type Program, type Uniform, bindings, cdiv, disposeInfo, registerWebGPUKernel, requireWebGPUBackend, runProgram, runRegistered, uniformStruct } from './runtime.js';
import { NEG_BIG, NEG_INF, NEG_INF_DECL } from './wgsl.js';

/** Which keys each query sees. */
export interface AttentionMask {
  /** int32 (or bool) [B, Tk]: nonzero for real keys, 0 for padding. */
  keyMask?: tf.Tensor | null;
  /** Cache index of the first query (queries are past .. past + T - 1). Default Tk - T. */
  pastLength?: number;
  /** Causal masking (default true). */
  causal?: boolean;
  /** Sliding window: keys with (past + t) - j >= window are hidden; null/0 = none. */
  window?: number | null;
}

/** Options of `attention`. */
export interface AttentionOptions extends AttentionMask {
  /** Scores are q.k divided by this (sqrt(dh) usually, as TransformerLens's attn_scale). */
  scale: number;
  /** Logit soft-capping cap * tanh(s / cap) (Gemma 2); null = none. */
  softcap?: number | null;
  /** ALiBi slopes, float32 [H]: adds slope_h * (j - (past + t)) before masking. */
  alibiSlopes?: tf.Tensor | null;
  /**
   * int32 [B, Tk] position ids of the keys: with alibiSlopes, the bias is slope_h * keyPositions[b, j]
   * instead (HF BLOOM: positions from the padding mask; softmax ignores the per-query constant).
   */
  alibiKeyPositions?: tf.Tensor | null;
  /** Also return the pattern [B, H, T, Tk] (softmax; masked entries 0). */
  wantPattern?: boolean;
  /** Also return the masked scores [B, H, T, Tk] (masked entries -Infinity). */
  wantScores?: boolean;
  /** Also return, for every head, the argmax over keys of the last query row: int32 [B, H]. */
  wantLastArgmax?: boolean;
  /** Number of key chunks (default: chosen by shape; 1 when a pattern or scores are wanted). */
  keyChunks?: number;
}

/** What `attention` returns. */
export interface AttentionResult {
  z: tf.Tensor;
  pattern?: tf.Tensor;
  scores?: tf.Tensor;
  lastArgmax?: tf.Tensor;
}

const FLASH = 'TflensAttention';

interface Shape {
  B: number;
  T: number;
  H: number;
  KV: number;
  dh: number;
  Tk: number;
}

interface AttnAttrs extends Shape {
  past: number;
  causal: boolean;
  window: number;
  invScale: number;
  softcap: number;
  hasMask: boolean;
  hasAlibi: boolean;
  hasKeyPos: boolean;
  wantPattern: boolean;
  wantScores: boolean;
  wantLastArgmax: boolean;
  chunks: number;
}

function checkShapes(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): Shape {
  if (q.rank !== 4 || q.dtype !== 'float32') throw new ShapeError('attention q', expectedFound('float32 [B, T, H, dh]', `${q.dtype} [${q.shape}]`));
  const [B, T, H, dh] = q.shape;
  if (k.rank !== 4 || k.dtype !== 'float32' || k.shape[0] !== B || k.shape[3] !== dh) {
    throw new ShapeError('attention k', expectedFound(`float32 [${B}, Tk, KV, ${dh}]`, `${k.dtype} [${k.shape}]`));
  }
  const [, Tk, KV] = k.shape;
  if (!tf.util.arraysEqual(v.shape, k.shape) || v.dtype !== 'float32') throw new ShapeError('attention v', expectedFound(`float32 [${k.shape}] like k`, `${v.dtype} [${v.shape}]`));
  if (H % KV !== 0) throw new ShapeError('attention k', expectedFound(`a number of key heads dividing ${H}`, KV));
  if (dh % 4 !== 0) throw new ShapeError('attention q', expectedFound('a head size divisible by 4', dh));
  return { B, T, H, KV, dh, Tk };
}

/**
 * z [B, T, H, dh] of causal multi-head / grouped-query attention, plus the pattern, the scores or
 * the last-row argmax when asked (see the file comment for the exact semantics).
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, o: AttentionOptions): AttentionResult {
  requireWebGPUBackend('attention');
  const s = checkShapes(q, k, v);
  const past = o.pastLength ?? s.Tk - s.T;
  if (!Number.isInteger(past) || past < 0) throw new ValueError('attention pastLength', expectedFound('an integer >= 0', past));
  if (!(o.scale > 0)) throw new ValueError('attention scale', expectedFound('a positive number', o.scale));
  if (o.softcap != null && !(o.softcap > 0)) throw new ValueError('attention softcap', expectedFound('a positive number or null', o.softcap));
  const window = o.window ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new ValueError('attention window', expectedFound('a positive integer or null', window));
  if (o.keyMask && (!tf.util.arraysEqual(o.keyMask.shape, [s.B, s.Tk]) || (o.keyMask.dtype !== 'int32' && o.keyMask.dtype !== 'bool'))) {
    throw new ShapeError('attention keyMask', expectedFound(`int32 [${s.B}, ${s.Tk}]`, `${o.keyMask.dtype} [${o.keyMask.shape}]`));
  }
  if (o.alibiSlopes && (o.alibiSlopes.size !== s.H || o.alibiSlopes.dtype !== 'float32')) {
    throw new ShapeError('attention alibiSlopes', expectedFound(`float32 with ${s.H} values`, `${o.alibiSlopes.dtype} [${o.alibiSlopes.shape}]`));
  }
  if (o.alibiKeyPositions && (!o.alibiSlopes || !tf.util.arraysEqual(o.alibiKeyPositions.shape, [s.B, s.Tk]) || o.alibiKeyPositions.dtype !== 'int32')) {
    throw new ShapeError('attention alibiKeyPositions', expectedFound(`int32 [${s.B}, ${s.Tk}] with alibiSlopes`, `${o.alibiKeyPositions.dtype} [${o.alibiKeyPositions.shape}]${o.alibiSlopes ? '' : ' without slopes'}`));
  }
  const wantsMatrix = !!(o.wantPattern || o.wantScores);
  if (o.keyChunks !== undefined && (!Number.isInteger(o.keyChunks) || o.keyChunks < 1 || (wantsMatrix && o.keyChunks > 1))) {
    throw new ValueError('attention keyChunks', expectedFound(wantsMatrix ? '1 (a pattern or scores is asked for)' : 'a positive integer', o.keyChunks));
  }
  const attrs: AttnAttrs = {
    ...s,
    past,
    causal: o.causal ?? true,
    window,
    invScale: 1 / o.scale,
    softcap: o.softcap ?? 0,
    hasMask: !!o.keyMask,
    hasAlibi: !!o.alibiSlopes,
    hasKeyPos: !!o.alibiKeyPositions,
    wantPattern: !!o.wantPattern,
    wantScores: !!o.wantScores,
    wantLastArgmax: !!o.wantLastArgmax,
    chunks: wantsMatrix ? 1 : (o.keyChunks ?? defaultChunks(s)),
  };
  registerWebGPUKernel(FLASH, attentionKernel);
  const outs = runRegistered(FLASH, { q, k, v, keyMask: o.keyMask, alibi: o.alibiSlopes, kpos: o.alibiKeyPositions }, attrs);
  const res: AttentionResult = { z: outs[0] };
  let i = 1;
  if (attrs.wantPattern) res.pattern = outs[i++];
  if (attrs.wantScores) res.scores = outs[i++];
  if (attrs.wantLastArgmax) res.lastArgmax = outs[i++];
  return res;
}

/** Enough workgroups to fill a large GPU (about 264) without chunks shorter than 256 keys. */
function defaultChunks(s: Shape): number {
  const g = tiling(s.dh, false, false);
  const blocks = s.B * s.KV * cdiv(s.T * (s.H / s.KV), g.BQ);
  return Math.max(1, Math.min(cdiv(264, blocks), Math.floor(s.Tk / 256)));
}

interface Tiling {
  DPT: number;
  TPR: number;
  BQ: number;
  BKV: number;
}

/** Dims per invocation, invocations per row, rows and keys per tile for a head size. */
function tiling(dh: number, pattern: boolean, scores: boolean): Tiling {
  const DPT = [64, 32, 16, 8, 4].find((d) => dh % d === 0)!;
  const TPR = dh / DPT;
  const BQ = Math.min(64, Math.floor(256 / TPR));
  const bytes = (bkv: number) => 4 * (2 * bkv * dh + (TPR > 1 ? BQ * TPR * bkv : 0) + ((pattern ? 1 : 0) + (scores ? 1 : 0)) * BQ * (bkv + 1));
  const BKV = [32, 16, 8, 4].find((b) => bytes(b) <= 28 * 1024) ?? 4;
  return { DPT, TPR, BQ, BKV };
}

function attentionKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const a = attrs as unknown as AttnAttrs;
  const ins = [inputs.q, inputs.k, inputs.v, ...[inputs.keyMask, inputs.alibi, inputs.kpos].filter((t): t is tf.TensorInfo => !!t)];
  const G = a.H / a.KV;
  const rows = a.T * G;
  const tl = tiling(a.dh, a.wantPattern, a.wantScores);
  const nrb = cdiv(rows, tl.BQ);
  const chunkLen = a.chunks > 1 ? cdiv(cdiv(a.Tk, a.chunks), tl.BKV) * tl.BKV : a.Tk;
  const chunks = a.chunks > 1 ? cdiv(a.Tk, chunkLen) : 1;
  const uniforms: Uniform[] = [
    ['T', 'u32', a.T],
    ['H', 'u32', a.H],
    ['KV', 'u32', a.KV],
    ['G', 'u32', G],
    ['Tk', 'u32', a.Tk],
    ['past', 'u32', a.past],
    ['rows', 'u32', rows],
    ['nrb', 'u32', nrb],
    ['chunk', 'u32', chunkLen],
    ['nch', 'u32', chunks],
    ['window', 'u32', a.window],
    ['inv_scale', 'f32', a.invScale],
    ['softcap', 'f32', a.softcap],
  ];
  const outs: tf.TensorInfo[] = [];
  const flash = flashProgram(a, tl, chunks, uniforms, nrb);
  const zShape = [a.B, a.T, a.H, a.dh];
  const matShape = [a.B, a.H, a.T, a.Tk];
  const specs =
    chunks > 1
      ? [
          { shape: [a.B, a.KV, chunks, rows, a.dh], dtype: 'float32' as const },
          { shape: [a.B, a.KV, chunks, rows, 2], dtype: 'float32' as const },
        ]
      : [
          { shape: zShape, dtype: 'float32' as const },
          ...(a.wantPattern ? [{ shape: matShape, dtype: 'float32' as const }] : []),
          ...(a.wantScores ? [{ shape: matShape, dtype: 'float32' as const }] : []),
        ];
  const res = runProgram(backend, flash, ins, specs);
  if (chunks > 1) {
    const z = runProgram(backend, combineProgram(a, uniforms), res, [{ shape: zShape, dtype: 'float32' }])[0];
    res.forEach((t) => disposeInfo(backend, t));
    outs.push(z);
  } else {
    outs.push(...res);
  }
  if (a.wantLastArgmax) outs.push(runProgram(backend, argmaxProgram(a, uniforms), ins, [{ shape: [a.B, a.H], dtype: 'int32' }])[0]);
  return outs;
}

/** Bindings of the optional inputs, in the order attentionKernel passes them: key mask, ALiBi slopes, key positions. */
function optionalInputs(a: AttnAttrs): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (a.hasMask) out.push(['km', 'i32']);
  if (a.hasAlibi) out.push(['slopes', 'f32']);
  if (a.hasKeyPos) out.push(['kp', 'i32']);
  return out;
}

/** WGSL: the mask / transform of one score `sv` of key j for the row (b, h, qpos). */
function transformWgsl(a: AttnAttrs, kEnd: string): string {
  return `${a.softcap > 0 ? 'sv = u.softcap * tanh(clamp(sv / u.softcap, -15.0, 15.0));' : ''}
    ${a.hasAlibi ? (a.hasKeyPos ? 'sv = sv + slope * f32(kp[b * u.Tk + j]);' : 'sv = sv + slope * f32(i32(j) - qpos);') : ''}
    let ok = valid && j < ${kEnd}${a.causal ? ' && i32(j) <= qpos' : ''}${a.window > 0 ? ' && qpos - i32(j) < i32(u.window)' : ''}${a.hasMask ? ' && km[b * u.Tk + j] != 0' : ''};`;
}

function flashProgram(a: AttnAttrs, tl: Tiling, chunks: number, uniforms: Uniform[], nrb: number): Program {
  const { DPT, TPR, BQ, BKV } = tl;
  const NT = BQ * TPR;
  const D4 = a.dh / 4;
  const P4 = DPT / 4;
  const ins: Array<[string, string]> = [['q', 'vec4<f32>'], ['k', 'vec4<f32>'], ['v', 'vec4<f32>']];
  ins.push(...optionalInputs(a));
  const outs: Array<[string, string]> =
    chunks > 1
      ? [['opart', 'vec4<f32>'], ['ml', 'f32']]
      : [['z', 'vec4<f32>'], ...(a.wantPattern ? [['pattern', 'f32'] as [string, string]] : []), ...(a.wantScores ? [['scores', 'f32'] as [string, string]] : [])];
  const stride = BKV + 1;
  const mats = a.wantPattern || a.wantScores;
  const each = (f: (i: number) => string, sep = ' ') => Array.from({ length: P4 }, (_, i) => f(i)).join(sep);
  const dot = (kIdx: string) => each((i) => `dot(q${i}, Ks[${kIdx} + ${i}u])`, ' + ');
  // the score of key jj of the tile for this invocation's row (partials meet in Sp when TPR > 1)
  const partials =
    TPR > 1
      ? `for (var jj = 0u; jj < nk; jj++) { Sp[jj * ${NT}u + tid] = ${dot('jj * D4 + kd')}; }
    workgroupBarrier();`
      : '';
  const score = TPR > 1 ? `${Array.from({ length: TPR }, (_, p) => `Sp[jj * ${NT}u + rl * ${TPR}u + ${p}u]`).join(' + ')}` : dot('jj * D4 + kd');
  const key = `${FLASH}:${a.dh}:${DPT}:${BQ}:${BKV}:${chunks > 1}:${a.causal}:${a.window > 0}:${a.softcap > 0}:${a.hasMask}:${a.hasAlibi}:${a.hasKeyPos}:${a.wantPattern}:${a.wantScores}`;
  return {
    name: FLASH,
    key,
    uniforms,
    workgroups: [nrb * chunks, a.KV, a.B],
    wgsl: () => `${uniformStruct(uniforms)}${bindings(outs, ins, true)}
${a.wantScores ? NEG_INF_DECL : ''}
const BKV = ${BKV}u;
const D4 = ${D4}u;
var<workgroup> Ks : array<vec4<f32>, ${BKV * D4}>;
var<workgroup> Vs : array<vec4<f32>, ${BKV * D4}>;
${TPR > 1 ? `var<workgroup> Sp : array<f32, ${BKV * NT}>;` : ''}
${a.wantPattern ? `var<workgroup> Ps : array<f32, ${BQ * stride}>;` : ''}
${a.wantScores ? `var<workgroup> Ss : array<f32, ${BQ * stride}>;` : ''}

// K (and V) rows j0 .. j0 + BKV of key head kvh into workgroup memory; zeros from kend on
fn load_tile(b : u32, kvh : u32, j0 : u32, kend : u32, tid : u32, with_v : bool) {
  for (var i = tid; i < BKV * D4; i += ${NT}u) {
    let j = j0 + i / D4;
    var kv = vec4<f32>(0.0);
    var vv = vec4<f32>(0.0);
    if (j < kend) {
      let gi = ((b * u.Tk + j) * u.KV + kvh) * D4 + i % D4;
      kv = k[gi];
      if (with_v) { vv = v[gi]; }
    }
    Ks[i] = kv;
    if (with_v) { Vs[i] = vv; }
  }
}

@compute @workgroup_size(${NT})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let b = wid.z;
  let kvh = wid.y;
  let rb = wid.x % u.nrb;
  let ch = wid.x / u.nrb;
  let rl = tid / ${TPR}u;
  let tp = tid % ${TPR}u;
  let kd = tp * ${P4}u;
  let r = rb * ${BQ}u + rl;
  let valid = r < u.rows;
  let rr = min(r, u.rows - 1u);
  let t = rr / u.G;
  let h = kvh * u.G + rr % u.G;
  let qpos = i32(u.past + t);
  ${a.hasAlibi ? 'let slope = slopes[h];' : ''}
  let qi = ((b * u.T + t) * u.H + h) * D4 + kd;
  ${each((i) => `let q${i} = q[qi + ${i}u] * u.inv_scale;`)}
  ${each((i) => `var o${i} = vec4<f32>(0.0);`)}
  var m = ${NEG_BIG};
  var l = 0.0;
  // keys that some row of this workgroup may see, within this chunk
  let t_lo = (rb * ${BQ}u) / u.G;
  let t_hi = min(rb * ${BQ}u + ${BQ - 1}u, u.rows - 1u) / u.G;
  var kbeg = ch * u.chunk;
  var kend = min(u.Tk, kbeg + u.chunk);
  ${a.causal ? 'kend = min(kend, u.past + t_hi + 1u);' : ''}
  ${a.window > 0 ? 'kbeg = max(kbeg, u.past + t_lo + 1u - min(u.window, u.past + t_lo + 1u));' : ''}
  for (var j0 = kbeg; j0 < kend; j0 += BKV) {
    load_tile(b, kvh, j0, kend, tid, true);
    workgroupBarrier();
    // a run-time trip count: the loop stays a loop (no unrolled copies to compile)
    let nk = min(BKV, kend - j0);
    ${partials}
    for (var jj = 0u; jj < nk; jj++) {
      let j = j0 + jj;
      var sv = ${score};
      ${transformWgsl(a, 'kend')}
      if (ok) {
        // online softmax; the running sums are rescaled only when the maximum grows
        if (sv > m) {
          let corr = exp(m - sv);
          l = l * corr;
          ${each((i) => `o${i} = o${i} * corr;`)}
          m = sv;
        }
        let p = exp(sv - m);
        l = l + p;
        ${each((i) => `o${i} = fma(vec4<f32>(p), Vs[jj * D4 + kd + ${i}u], o${i});`)}
      }
    }
    workgroupBarrier();
  }
  let inv_l = select(0.0, 1.0 / l, l > 0.0);
  ${
    mats
      ? `// second sweep: every key again, scores recomputed against the final maximum and sum
  for (var j0 = 0u; j0 < u.Tk; j0 += BKV) {
    load_tile(b, kvh, j0, u.Tk, tid, false);
    workgroupBarrier();
    let nk = min(BKV, u.Tk - j0);
    ${partials}
    if (tp == 0u) {
      for (var jj = 0u; jj < nk; jj++) {
        let j = j0 + jj;
        var sv = ${score};
        ${transformWgsl(a, 'u.Tk')}
        ${a.wantPattern ? `Ps[rl * ${stride}u + jj] = select(0.0, exp(sv - m) * inv_l, ok);` : ''}
        ${a.wantScores ? `Ss[rl * ${stride}u + jj] = select(${NEG_INF}, sv, ok);` : ''}
      }
    }
    workgroupBarrier();
    for (var e = tid; e < ${BQ}u * BKV; e += ${NT}u) {
      let rl2 = e / BKV;
      let r2 = rb * ${BQ}u + rl2;
      let j = j0 + e % BKV;
      if (r2 < u.rows && j < u.Tk) {
        let h2 = kvh * u.G + r2 % u.G;
        let mi = ((b * u.H + h2) * u.T + r2 / u.G) * u.Tk + j;
        ${a.wantPattern ? `pattern[mi] = Ps[rl2 * ${stride}u + e % BKV];` : ''}
        ${a.wantScores ? `scores[mi] = Ss[rl2 * ${stride}u + e % BKV];` : ''}
      }
    }
    workgroupBarrier();
  }`
      : ''
  }
  if (valid) {
    ${
      chunks > 1
        ? `let pi = ((b * u.KV + kvh) * u.nch + ch) * u.rows + r;
    ${each((i) => `opart[pi * D4 + kd + ${i}u] = o${i};`)}
    if (tp == 0u) { ml[pi * 2u] = m; ml[pi * 2u + 1u] = l; }`
        : `let zi = ((b * u.T + t) * u.H + h) * D4 + kd;
    ${each((i) => `z[zi + ${i}u] = o${i} * inv_l;`)}`
    }
  }
}`,
  };
}

/** Merges the chunks' (max, sum, unnormalised output) into z. Bindings: z; opart, ml; u. */
function combineProgram(a: AttnAttrs, uniforms: Uniform[]): Program {
  const D4 = a.dh / 4;
  const n = a.B * a.T * a.H * D4;
  return {
    name: `${FLASH}Combine`,
    key: `${FLASH}Combine:${D4}`,
    uniforms,
    workgroups: [cdiv(n, 256), 1, 1],
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['z', 'vec4<f32>']], [['opart', 'vec4<f32>'], ['ml', 'f32']], true)}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x;
  if (i >= ${n}u) { return; }
  let d = i % ${D4}u;
  let row = i / ${D4}u;
  let h = row % u.H;
  let bt = row / u.H;
  let t = bt % u.T;
  let b = bt / u.T;
  let kvh = h / u.G;
  let r = t * u.G + h % u.G;
  let base = (b * u.KV + kvh) * u.nch * u.rows + r;
  var mx = ${NEG_BIG};
  for (var c = 0u; c < u.nch; c++) { mx = max(mx, ml[(base + c * u.rows) * 2u]); }
  var l = 0.0;
  var o = vec4<f32>(0.0);
  for (var c = 0u; c < u.nch; c++) {
    let pi = base + c * u.rows;
    let w = exp(ml[pi * 2u] - mx);
    l = l + w * ml[pi * 2u + 1u];
    o = o + w * opart[pi * ${D4}u + d];
  }
  z[i] = select(vec4<f32>(0.0), o / l, l > 0.0);
}`,
  };
}

/** argmax over keys of the last query row, per (b, h). Bindings: out; q, k, v, [km], [slopes], [kp]; u. */
function argmaxProgram(a: AttnAttrs, uniforms: Uniform[]): Program {
  const D4 = a.dh / 4;
  const WG = 256;
  const ins: Array<[string, string]> = [['q', 'vec4<f32>'], ['k', 'vec4<f32>'], ['v', 'vec4<f32>'], ...optionalInputs(a)];
  return {
    name: `${FLASH}LastArgmax`,
    key: `${FLASH}LastArgmax:${D4}:${a.causal}:${a.window > 0}:${a.softcap > 0}:${a.hasMask}:${a.hasAlibi}:${a.hasKeyPos}`,
    uniforms,
    workgroups: [a.H, a.B, 1],
    wgsl: () => `${uniformStruct(uniforms)}${bindings([['out', 'i32']], ins, true)}
var<workgroup> qs : array<vec4<f32>, ${D4}>;
var<workgroup> bv : array<f32, ${WG}>;
var<workgroup> bj : array<i32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid : vec3<u32>, @builtin(local_invocation_index) tid : u32) {
  let h = wid.x;
  let b = wid.y;
  let t = u.T - 1u;
  let kvh = h / u.G;
  let qpos = i32(u.past + t);
  let valid = true;
  ${a.hasAlibi ? 'let slope = slopes[h];' : ''}
  for (var i = tid; i < ${D4}u; i += ${WG}u) { qs[i] = q[((b * u.T + t) * u.H + h) * ${D4}u + i] * u.inv_scale; }
  workgroupBarrier();
  var best = ${NEG_BIG};
  var bestj = -1;
  for (var j = tid; j < u.Tk; j += ${WG}u) {
    let kb = ((b * u.Tk + j) * u.KV + kvh) * ${D4}u;
    var sv = 0.0;
    for (var d = 0u; d < ${D4}u; d++) { sv += dot(qs[d], k[kb + d]); }
    ${transformWgsl(a, 'u.Tk')}
    if (ok && (bestj < 0 || sv > best)) { best = sv; bestj = i32(j); }
  }
  bv[tid] = best;
  bj[tid] = bestj;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (tid < s) {
      let oj = bj[tid + s];
      let ov = bv[tid + s];
      let mj = bj[tid];
      if (oj >= 0 && (mj < 0 || ov > bv[tid] || (ov == bv[tid] && oj < mj))) { bv[tid] = ov; bj[tid] = oj; }
    }
    workgroupBarrier();
  }
  if (tid == 0u) { out[b * u.H + h] = max(bj[0], 0); }
}`,
  };
}
