/**
 * Attention calibration at inference time: ACT (Yu et al., "Unveiling and Harnessing Hidden
 * Attention Sinks", ICML 2024, code GATECH-EIC/ACT) and VAR (Kang et al., "See What You Are Told",
 * ICLR 2025, code MICV-yonsei/VisAttnSink). docs/methods/calibration.md gives each default with the
 * file and line of the authors' code it follows, and names every variant.
 *
 * One implementation of each method, in tf ops on attention patterns (no read-back):
 *  - `calibrateACT`, `actHiddenSinks`, `actColumnMeans`; `redistributeVAR`, `imageCentricMask`,
 *    `sinkTokenMask` take a [q, k] matrix or a [batch, head, q, k] pattern (left padding allowed)
 *    and return tensors;
 *  - `actHook` / `varHook` return fwdHooks (`CalibHooks`: a HookSpec[] with `dispose()`) that apply
 *    them inside any run (runWithHooks, generate, an evaluation function);
 *  - `selectACTHeads`, `evaluateACT`, `imageCentricHeads`, `sinkDimensions` read numbers and are async.
 *
 * Conventions. A pattern with q rows and k keys, q <= k, holds the queries at absolute positions
 * k-q .. k-1 (q = k in prefill, q = 1 in KV-cache decoding). Left padding: key columns before the
 * first real token are padding; positions in options (groups) are counted from the first real token.
 * When no attention mask is given, padding is inferred from the pattern: the leading key columns that
 * receive exactly zero attention from the last query row in every head are padding.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, HookError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import type { HookContext, HookFn, HookSpec } from '../hooks/registry.js';
import type { ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { parseHead } from '../util/grid.js';
import { massiveDimsFromResiduals } from './massive.js';

// ---------------------------------------------------------------------------------------------
// Shared types and helpers
// ---------------------------------------------------------------------------------------------

/**
 * fwdHooks of a calibration method. Use it as any HookSpec[]; call `dispose()` when done with it:
 * hook sets that remember prefill results for decoding steps (VAR's sink tokens, ACT's
 * `decodeSinks: 'prefill'`) keep one tensor per layer on the device until then (each prefill
 * replaces the previous one). Disposing a stateless set is a no-op.
 */
export type CalibHooks = HookSpec[] & { dispose(): void };

/** A 0/1 mask over keys or rows: [k] (every batch row) or [batch, k]; a tensor or host arrays. */
export type KeyMask = tf.Tensor | number[][] | number[];

/** A (layer, head) reference: [layer, head], "L.H" or "L9H6". */
export type HeadRef = [number, number] | string;

/** ACT's calibrated layers, 2..L-2 (GATECH-EIC/ACT scripts/calibration.sh and the `range(2, 31)` of models/llama_modelling_aug.py for L = 32). */
export function defaultCalibLayers(nLayers: number): number[] {
  return range(2, nLayers - 1);
}

/** VAR layer rules (see varLayers). */
export type VARLayerRule = 'authors-code' | 'except-last';

/**
 * VAR's layers. 'authors-code' (default): 2..L-1. The authors' sink search runs on layers [2:]
 * (MICV-yonsei/VisAttnSink src/logic/logic.py line 52), so layers 0 and 1 never have sinks and are left
 * untouched, and the last layer is redistributed too: the `except_last_layer` flag that the config
 * sets (A_exps/lv1.5_7b.yml) is stored on LogicEngine (logic.py line 46) but VARProcessor's own class
 * attribute `except_last_layer = False` (line 148) shadows it, so the check at line 169 never fires.
 * 'except-last': 2..L-2, what the flag asks for (tflens's earlier default; the fork
 * Bostoncake/VisAttnSink var_logic.py honours it).
 */
export function varLayers(nLayers: number, rule: VARLayerRule = 'authors-code'): number[] {
  if (!Number.isInteger(nLayers) || nLayers < 1) throw new ConfigError('nLayers', expectedFound('a positive integer', nLayers));
  if (rule === 'authors-code') return range(2, nLayers);
  if (rule === 'except-last') return range(2, nLayers - 1);
  throw new ConfigError('layers', expectedFound("a list of layers, 'authors-code' or 'except-last'", rule));
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let l = from; l < to; l++) out.push(l);
  return out;
}

function checkUnit(where: string, v: number, lo = 0, hi = 1): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
    throw new ConfigError(where, expectedFound(`a number in [${lo}, ${hi}]`, v));
  }
}

/** A pattern as [batch, head, q, k] (a [q, k] matrix becomes [1, 1, q, k]); checks q <= k. */
function toPattern4(where: string, pattern: tf.Tensor): tf.Tensor4D {
  if (!(pattern instanceof tf.Tensor) || (pattern.rank !== 2 && pattern.rank !== 4)) {
    throw new ShapeError(where, expectedFound('a [q, k] or [batch, head, q, k] tensor (read host arrays with tf.tensor)', pattern instanceof tf.Tensor ? `shape [${pattern.shape}]` : typeof pattern));
  }
  const [q, k] = pattern.shape.slice(-2);
  if (q > k) throw new ShapeError(where, expectedFound('q <= k (queries are the last q positions)', `q=${q}, k=${k}`));
  return (pattern.rank === 2 ? pattern.reshape([1, 1, q, k]) : pattern).toFloat() as tf.Tensor4D;
}

/** A tensor computed on a [b, h, q, ...] pattern, shaped back for a rank-2 input (drops b and h). */
function asInput(t: tf.Tensor, pattern: tf.Tensor): tf.Tensor {
  return pattern.rank === 2 ? t.reshape(t.shape.slice(2)) : t;
}

/** A 0/1 mask [k] or [batch, k] as a float [batch | 1, n] tensor (inside the caller's tidy). */
function maskRows(where: string, m: KeyMask, b: number, n: number): tf.Tensor2D {
  const t = (m instanceof tf.Tensor ? m : tf.tensor(m as number[] | number[][])).toFloat();
  if (t.rank === 1 && t.shape[0] === n) return t.reshape([1, n]);
  if (t.rank === 2 && (t.shape[0] === b || t.shape[0] === 1) && t.shape[1] === n) return t as tf.Tensor2D;
  throw new ShapeError(where, expectedFound(`[${b}, ${n}] or [${n}]`, `[${t.shape}]`));
}

/**
 * Real-key mask [batch, k] (1 = real token, 0 = left padding) from an attention mask of any width
 * (columns past it are generated tokens, hence real; a wider one is cut to k), or inferred from the
 * pattern (see the module comment). Inside the caller's tidy; no read-back.
 */
function realKeyMask(A: tf.Tensor4D, attentionMask?: KeyMask): tf.Tensor2D {
  const [b, , q, k] = A.shape;
  if (attentionMask !== undefined && attentionMask !== null) {
    let m = (attentionMask instanceof tf.Tensor ? attentionMask : tf.tensor(attentionMask as number[] | number[][])).toFloat();
    if (m.rank === 1) m = m.reshape([1, m.shape[0]]);
    if (m.rank !== 2 || m.shape[0] !== b) throw new ShapeError('attentionMask', expectedFound(`[${b}, width]`, `[${m.shape}]`));
    const w = m.shape[1] as number;
    if (w >= k) return m.slice([0, 0], [b, k]) as tf.Tensor2D;
    return tf.concat([m, tf.ones([b, k - w])], 1) as tf.Tensor2D;
  }
  const last = A.slice([0, 0, q - 1, 0], [b, -1, 1, k]).sum([1, 2]) as tf.Tensor2D; // [b, k]
  return tf.cumsum(tf.greater(last, 0).toFloat(), 1).greater(0).toFloat() as tf.Tensor2D;
}

interface PosInfo {
  /** [b, 1, q, k]: real query, real key, key visible (causal). */
  valid: tf.Tensor4D;
  /** [b, 1, q, 1] real query rows. */
  realQ: tf.Tensor4D;
  /** [b, k] real keys. */
  realK: tf.Tensor2D;
  /** [b, 1, 1, k] key position relative to the first real token (negative for padding). */
  relK: tf.Tensor4D;
  /** [b, 1, q, 1] query position relative to the first real token. */
  relQ: tf.Tensor4D;
  /** [1, 1, q, k] causal visibility. */
  causal: tf.Tensor4D;
}

function positions(A: tf.Tensor4D, attentionMask?: KeyMask): PosInfo {
  const [b, , q, k] = A.shape;
  const off = k - q;
  const realK = realKeyMask(A, attentionMask);
  const realQ = realK.slice([0, off], [b, q]).reshape([b, 1, q, 1]) as tf.Tensor4D;
  const kpos = tf.range(0, k, 1, 'float32');
  const qpos = tf.range(off, k, 1, 'float32');
  const causal = tf.lessEqual(kpos.reshape([1, k]), qpos.reshape([q, 1])).toFloat().reshape([1, 1, q, k]) as tf.Tensor4D;
  const valid = tf.mul(tf.mul(realQ, realK.reshape([b, 1, 1, k])), causal) as tf.Tensor4D;
  const nPad = tf.sub(k, realK.sum(1, true)).reshape([b, 1, 1, 1]); // left padding
  const relK = tf.sub(kpos.reshape([1, 1, 1, k]), nPad) as tf.Tensor4D;
  const relQ = tf.sub(qpos.reshape([1, 1, q, 1]), nPad) as tf.Tensor4D;
  return { valid, realQ, realK, relK, relQ, causal };
}

/** a / b where b > 0, else 0 (no NaN). */
function safeDiv(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const pos = tf.greater(b, 0);
  return tf.where(pos, tf.div(a, tf.where(pos, b, tf.onesLike(b))), tf.zerosLike(a));
}

/** Whether a hook call is a KV-cache decoding step (queries fewer than keys, or the run says so). */
function isDecoding(ctx: HookContext | undefined, q: number, k: number): boolean {
  return !!ctx?.decoding || q !== k;
}

/**
 * Tensors a hook set keeps across runs, one per layer: kept (tf.keep) so that the forward's tidy does
 * not free them, replaced (the old one freed) when a layer's value is set again, freed by dispose().
 */
class LayerState {
  private readonly kept = new Map<number, tf.Tensor>();
  get(layer: number): tf.Tensor | undefined {
    return this.kept.get(layer);
  }
  set(layer: number, t: tf.Tensor): void {
    const old = this.kept.get(layer);
    this.kept.set(layer, tf.keep(t));
    if (old && old !== t) old.dispose();
  }
  dispose(): void {
    for (const t of this.kept.values()) t.dispose();
    this.kept.clear();
  }
}

function hookSet(entries: HookSpec[], state?: LayerState): CalibHooks {
  return Object.assign(entries, { dispose: () => state?.dispose() });
}

// ---------------------------------------------------------------------------------------------
// ACT
// ---------------------------------------------------------------------------------------------

export interface ACTOptions {
  /** Column-mean threshold for a sink (the authors' THRES, scripts/calibration.sh). Default 0.1. */
  threshold?: number;
  /** Fraction of a hidden sink's attention that is kept (the authors' BETA). Default 0.4. */
  beta?: number;
  /** Set the first query row to attend only to the first token, A[0,0] = 1, as the authors do. Default true. */
  keepFirstRow?: boolean;
}

export interface ACTTensorOptions extends ACTOptions {
  /** [batch, <=k] (or [<=k] for a matrix) 1 = real token; columns past its width count as real (generated tokens). */
  attentionMask?: KeyMask;
  /** Use these hidden sinks instead of computing them: 0/1 [batch, head, <=k] ([<=k] for a matrix), e.g. remembered from prefill. */
  hiddenSinks?: tf.Tensor | number[][][] | number[];
}

interface ACTCore {
  out: tf.Tensor4D;
  /** Hidden sinks S' [b, h, k]. */
  sPrime: tf.Tensor3D;
  /** Column means m [b, h, k]. */
  means: tf.Tensor3D;
}

/** Column means over the rows present: m_j = sum_{i >= j} A[i,j] / #{real rows i >= j}. */
function columnMeans(Am: tf.Tensor4D, P: PosInfo): tf.Tensor3D {
  const count = tf.mul(P.realQ, P.causal).sum(2); // [b, 1, k]
  return safeDiv(Am.sum(2), count) as tf.Tensor3D;
}

/** S = {j : m_j > threshold} over real keys, S' = S without its lowest index. */
function hiddenSinkMask(means: tf.Tensor3D, P: PosInfo, threshold: number): tf.Tensor3D {
  const [b, , k] = means.shape;
  const S = tf.mul(tf.greater(means, threshold).toFloat(), P.realK.reshape([b, 1, k]));
  const kpos = tf.range(0, k, 1, 'float32').reshape([1, 1, k]);
  const first = tf.sub(k, tf.mul(S, tf.sub(k, kpos)).max(2, true)); // lowest index of S (k when empty)
  return tf.mul(S, tf.greater(kpos, first).toFloat()) as tf.Tensor3D;
}

function givenSinks(s: NonNullable<ACTTensorOptions['hiddenSinks']>, b: number, h: number, k: number, realK: tf.Tensor2D): tf.Tensor3D {
  let t = (s instanceof tf.Tensor ? s : tf.tensor(s as number[])).toFloat();
  if (t.rank === 1) t = t.reshape([1, 1, t.shape[0]]);
  const sk = t.shape[2] as number;
  if (t.rank !== 3 || t.shape[0] !== b || t.shape[1] !== h || sk > k) throw new ShapeError('hiddenSinks', expectedFound(`[${b}, ${h}, <=${k}]`, `[${t.shape}]`));
  const full = sk === k ? t : tf.concat([t, tf.zeros([b, h, k - sk])], 2);
  return tf.mul(full, realK.reshape([b, 1, k])) as tf.Tensor3D;
}

/**
 * ACT on [b, h, q, k], following atten_process_eval (GATECH-EIC/ACT models/llama_modelling_aug.py):
 * S' = hidden sinks; r_i = (1 - beta) sum_{j in S'} A[i,j]; A[i,j] *= beta on S'; the visible
 * non-sinks gain r_i in proportion to their attention; A[0,0] = 1. Padded rows and entries outside
 * the real, causal region are returned unchanged, as is a row whose visible mass is all on S' (where
 * the authors' code divides 0 by 0).
 */
function actCore(pattern: tf.Tensor, opts: ACTTensorOptions): ACTCore {
  const { threshold = 0.1, beta = 0.4, keepFirstRow = true } = opts;
  checkUnit('threshold', threshold);
  checkUnit('beta', beta);
  const A = toPattern4('pattern', pattern);
  const [b, h, q, k] = A.shape;
  const P = positions(A, opts.attentionMask);
  const Am = tf.mul(A, P.valid) as tf.Tensor4D;
  const means = columnMeans(Am, P);
  const sPrime = opts.hiddenSinks !== undefined ? givenSinks(opts.hiddenSinks, b, h, k, P.realK) : hiddenSinkMask(means, P, threshold);
  const sp = sPrime.reshape([b, h, 1, k]);
  const notSp = tf.sub(1, sp);
  const sinkMass = tf.mul(Am, sp).sum(3, true); // [b, h, q, 1]
  const nonMass = tf.mul(Am, notSp).sum(3, true);
  const gain = safeDiv(tf.mul(1 - beta, sinkMass), nonMass);
  const calibrated = tf.add(tf.mul(tf.mul(Am, sp), beta), tf.mul(tf.mul(Am, notSp), tf.add(1, gain)));
  const newA = tf.add(calibrated, tf.mul(A, tf.sub(1, P.valid)));
  const apply = tf.logicalAnd(tf.greater(nonMass, 0), tf.greater(P.realQ, 0));
  let out = tf.where(tf.broadcastTo(apply, [b, h, q, 1]), newA, A) as tf.Tensor4D;
  if (keepFirstRow) {
    const firstRow = tf.broadcastTo(tf.equal(P.relQ, 0), [b, h, q, k]);
    out = tf.where(firstRow, tf.broadcastTo(tf.equal(P.relK, 0).toFloat(), [b, h, q, k]), out) as tf.Tensor4D;
  }
  return { out, sPrime, means };
}

/**
 * ACT column means m_j = sum_{i >= j} A[i,j] / (number of real rows i >= j): [batch, head, k] for a
 * [batch, head, q, k] pattern, [k] for a [q, k] matrix. For a prefill matrix this is the authors'
 * `sum(dim=0) / arange(N, 0, -1)`; for one decoding row it is the row itself.
 */
export function actColumnMeans(pattern: tf.Tensor, opts: { attentionMask?: KeyMask } = {}): tf.Tensor {
  return tf.tidy(() => asInput(actCore(pattern, opts).means, pattern));
}

/** The hidden sinks S' ACT uses (0/1): {j : m_j > threshold} without its lowest index; [batch, head, k] or [k]. */
export function actHiddenSinks(pattern: tf.Tensor, opts: { threshold?: number; attentionMask?: KeyMask } = {}): tf.Tensor {
  return tf.tidy(() => asInput(actCore(pattern, opts).sPrime, pattern));
}

/**
 * ACT on an attention pattern ([q, k] or [batch, head, q, k], causal, rows summing to 1; q = k in
 * prefill). Returns a new tensor of the same shape; see actCore for the rule and its source.
 */
export function calibrateACT(pattern: tf.Tensor, opts: ACTTensorOptions = {}): tf.Tensor {
  return tf.tidy(() => asInput(actCore(pattern, opts).out, pattern).cast(pattern.dtype));
}

export interface ACTHookOptions extends ACTOptions {
  /** Heads to calibrate: [layer, head] pairs or "L.H" strings. */
  heads: HeadRef[];
  /**
   * Hidden sinks of a KV-cache decoding step (pattern [batch, head, 1, k]). 'row' (default, the
   * authors' code: atten_process_eval computes the column means of the rows present, so for one
   * decoding row m_j is the row itself): S is recomputed each step. 'prefill': S' of the prefill is
   * remembered per layer (until dispose()) and reused at every step (new tokens are never sinks);
   * 'row' is used when no prefill was seen or the KV cache was cut below the prefill length.
   * (The authors' decoding step would also leave sink columns in its ratio map and set A[0,0] = 1 of
   * the decoding row; their evaluations decode one token from the prefill, and tflens keeps the
   * prefill rule in decoding.)
   */
  decodeSinks?: 'row' | 'prefill';
  /** Attention mask of the prompt batch (else padding is inferred from the pattern). */
  attentionMask?: KeyMask;
}

/** Heads by layer, each list sorted, from head references (validated). */
function headsByLayer(heads: HeadRef[]): Map<number, number[]> {
  if (!Array.isArray(heads)) throw new ConfigError('heads', expectedFound('an array of [layer, head] pairs or "L.H" strings', typeof heads));
  const byLayer = new Map<number, number[]>();
  heads.forEach((ref, i) => {
    const [l, h] = parseHead(ref, undefined, `heads[${i}]`);
    const list = byLayer.get(l) ?? [];
    if (!list.includes(h)) list.push(h);
    byLayer.set(l, list.sort((a, b) => a - b));
  });
  return byLayer;
}

/**
 * fwdHooks on blocks.L.attn.hook_pattern applying ACT to the given heads only (the other heads pass
 * through). Works in prefill ([batch, head, q, q]) and decoding ([batch, head, 1, k]).
 */
export function actHook(opts: ACTHookOptions): CalibHooks {
  const { decodeSinks = 'row' } = opts;
  if (decodeSinks !== 'row' && decodeSinks !== 'prefill') throw new ConfigError('decodeSinks', expectedFound("'row' or 'prefill'", decodeSinks));
  checkUnit('threshold', opts.threshold ?? 0.1);
  checkUnit('beta', opts.beta ?? 0.4);
  const state = new LayerState(); // layer -> S' of the prefill [b, selected heads, T]
  const entries: HookSpec[] = [...headsByLayer(opts.heads).entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([layer, sel]): HookSpec => [actName('pattern', layer), actLayerHook(layer, sel, opts, decodeSinks, state)]);
  return hookSet(entries, state);
}

function actLayerHook(layer: number, sel: number[], opts: ACTHookOptions, decodeSinks: 'row' | 'prefill', state: LayerState): HookFn {
  return (act, ctx) =>
    tf.tidy(() => {
      const A = toPattern4(actName('pattern', layer), act);
      const [b, nh, q, k] = A.shape;
      for (const hh of sel) if (hh >= nh) throw new HookError(`actHook: ${actName('pattern', layer)}`, expectedFound(`head < ${nh}`, hh));
      const decoding = isDecoding(ctx, q, k);
      const prev = state.get(layer);
      // a cache cut below the prefill length (StreamingLLM) no longer lines up: use 'row'
      const reuse = decoding && decodeSinks === 'prefill' && prev && prev.shape[0] === b && (prev.shape[2] as number) <= k;
      const core = actCore(tf.gather(A, tf.tensor1d(sel, 'int32'), 1), {
        threshold: opts.threshold,
        beta: opts.beta,
        keepFirstRow: opts.keepFirstRow,
        attentionMask: opts.attentionMask ?? realKeyMask(A), // padding inferred from all heads
        hiddenSinks: reuse ? prev : undefined,
      });
      if (!decoding && decodeSinks === 'prefill') state.set(layer, core.sPrime);
      const parts = range(0, nh).map((hh) => {
        const s = sel.indexOf(hh);
        return s >= 0 ? core.out.slice([0, s, 0, 0], [b, 1, q, k]) : A.slice([0, hh, 0, 0], [b, 1, q, k]);
      });
      return tf.concat(parts, 1).cast(act.dtype);
    });
}

/** Task metric with the given fwdHooks active (an empty list = the baseline), e.g. accuracy. */
export type CalibEvaluate<D> = (hooks: HookSpec[], data: D) => Promise<number> | number;

export interface SelectACTOptions extends ACTOptions {
  /** Layers to try; default 2..L-2 (defaultCalibLayers). */
  layers?: number[];
  /** Heads to try per layer; default all. */
  heads?: number[];
  /**
   * 'independent' (default, the authors' scripts/calibration.sh): calibrate each head alone, keep
   * those whose metric beats the uncalibrated baseline by more than minGain; `final` is measured with
   * all kept heads. 'greedy' (a tflens variant): walk the candidates in (layer, head) order, keep a
   * head when the metric with all kept heads plus it beats the best so far by more than minGain.
   */
  mode?: 'independent' | 'greedy';
  /** Required improvement. Default 0 (strictly better). */
  minGain?: number;
  /** Called after each candidate. */
  onStep?: (step: ACTSelectionStep) => void;
  hookOptions?: Omit<ACTHookOptions, 'heads' | 'threshold' | 'beta' | 'keepFirstRow'>;
}

export interface ACTSelectionStep {
  layer: number;
  head: number;
  accuracy: number;
  kept: boolean;
}

export interface ACTSelection {
  kept: Array<[number, number]>;
  baseline: number;
  /** Metric with all kept heads calibrated. */
  final: number;
  trace: ACTSelectionStep[];
  params: Record<string, unknown>;
}

/** Run `evaluate` with ACT on `heads` (none: the baseline), freeing the hook set afterwards. */
async function scoreHeads<D>(heads: Array<[number, number]>, data: D, evaluate: CalibEvaluate<D>, opts: ACTOptions & { hookOptions?: SelectACTOptions['hookOptions'] }): Promise<number> {
  const hooks = heads.length ? actHook({ ...opts.hookOptions, threshold: opts.threshold, beta: opts.beta, keepFirstRow: opts.keepFirstRow, heads }) : hookSet([]);
  try {
    const v = await evaluate(hooks, data);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ValueError('evaluate()', expectedFound('a finite number', v));
    return v;
  } finally {
    hooks.dispose();
  }
}

/**
 * ACT head selection on a calibration set: `evaluate(hooks, calibSet)` returns the task metric
 * (higher is better) with the given fwdHooks active. Default: the authors' independent search.
 */
export async function selectACTHeads<D>(model: ModelView, calibSet: D, evaluate: CalibEvaluate<D>, opts: SelectACTOptions = {}): Promise<ACTSelection> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const layers = opts.layers ?? defaultCalibLayers(L);
  const headList = opts.heads ?? range(0, H);
  for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= L) throw new ConfigError('layers', expectedFound(`layers in [0, ${L})`, l));
  for (const h of headList) if (!Number.isInteger(h) || h < 0 || h >= H) throw new ConfigError('heads', expectedFound(`heads in [0, ${H})`, h));
  const mode = opts.mode ?? 'independent';
  if (mode !== 'independent' && mode !== 'greedy') throw new ConfigError('mode', expectedFound("'independent' or 'greedy'", mode));
  const minGain = opts.minGain ?? 0;
  const score = (hs: Array<[number, number]>) => scoreHeads(hs, calibSet, evaluate, opts);
  const baseline = await score([]);
  const kept: Array<[number, number]> = [];
  const trace: ACTSelectionStep[] = [];
  let best = baseline;
  for (const l of layers) {
    for (const h of headList) {
      const accuracy = await score(mode === 'greedy' ? [...kept, [l, h]] : [[l, h]]);
      const keep = accuracy > (mode === 'greedy' ? best : baseline) + minGain;
      if (keep) {
        kept.push([l, h]);
        if (mode === 'greedy') best = accuracy;
      }
      const step = { layer: l, head: h, accuracy, kept: keep };
      trace.push(step);
      opts.onStep?.(step);
    }
  }
  const final = mode === 'greedy' ? best : kept.length ? await score(kept) : baseline;
  return { kept, baseline, final, trace, params: { mode, minGain, layers, threshold: opts.threshold ?? 0.1, beta: opts.beta ?? 0.4 } };
}

/** The metric before and after ACT on held-out data with the given heads. */
export async function evaluateACT<D>(
  heads: HeadRef[],
  heldOut: D,
  evaluate: CalibEvaluate<D>,
  opts: ACTOptions & { hookOptions?: SelectACTOptions['hookOptions'] } = {},
): Promise<{ before: number; after: number; delta: number; heads: Array<[number, number]> }> {
  const parsed = heads.map((r, i) => parseHead(r, undefined, `heads[${i}]`));
  const before = await scoreHeads([], heldOut, evaluate, opts);
  const after = await scoreHeads(parsed, heldOut, evaluate, opts);
  return { before, after, delta: after - before, heads: parsed };
}

// ---------------------------------------------------------------------------------------------
// VAR
// ---------------------------------------------------------------------------------------------

/** A token group (the image span, a document, a system prompt...): positions, or a half-open span [start, end). */
export type TokenGroup = number[] | { start: number; end: number };

function groupPositions(where: string, group: TokenGroup, k?: number): number[] {
  let pos: number[];
  if (Array.isArray(group)) pos = group.slice();
  else if (group && typeof group === 'object' && Number.isInteger(group.start) && Number.isInteger(group.end)) {
    if (group.end < group.start) throw new ConfigError(where, expectedFound('start <= end', group));
    pos = range(group.start, group.end);
  } else throw new ConfigError(where, expectedFound('number[] or {start, end}', group));
  for (const j of pos) {
    if (!Number.isInteger(j) || j < 0 || (k !== undefined && j >= k)) {
      throw new ConfigError(where, expectedFound(k !== undefined ? `positions in [0, ${k})` : 'non-negative integer positions', j));
    }
  }
  return [...new Set(pos)].sort((a, b) => a - b);
}

/** A token group as a 0/1 mask over k positions. */
export function tokenGroupMask(group: TokenGroup, k: number): number[] {
  const m = new Array<number>(k).fill(0);
  for (const j of groupPositions('group', group, k)) m[j] = 1;
  return m;
}

export interface ImageCentricOptions {
  /** Sink keys S (0/1 over absolute key positions; visual and text sinks). */
  sinkMask: KeyMask;
  /** Group keys I (0/1 over absolute key positions: the image span). */
  groupMask: KeyMask;
  /** 0/1 query rows allowed to be image-centric ([q] or [batch, q]; e.g. the queries after the group in prefill). */
  rowMask?: KeyMask;
  /** Minimum attention on the group. Default 0.2 (the authors' summ). */
  summ?: number;
  /** Maximum share of the group attention on its sinks. Default 0.5 (the authors' rho). */
  rho?: number;
  /**
   * A batch row none of whose sinks lies inside the group: 'skip' (default, the authors' HeadFork,
   * MICV-yonsei/VisAttnSink src/logic/logic.py lines 123-141: no head is forked, the layer is left
   * untouched) or 'redistribute' (tflens's earlier rule: such rows pass the test with share 0, so
   * text-sink mass moves into the group).
   */
  noVisualSink?: 'skip' | 'redistribute';
}

/** Image-centric flags [b, h, q] (0/1) of a [b, h, q, k] pattern: HeadFork's test (logic.py lines 127-138). */
function imageCentric4(A: tf.Tensor4D, opts: ImageCentricOptions): tf.Tensor3D {
  const [b, h, q, k] = A.shape;
  const noVis = opts.noVisualSink ?? 'skip';
  if (noVis !== 'skip' && noVis !== 'redistribute') throw new ConfigError('noVisualSink', expectedFound("'skip' or 'redistribute'", noVis));
  const S = maskRows('sinkMask', opts.sinkMask, b, k);
  const G = maskRows('groupMask', opts.groupMask, b, k);
  const G4 = G.reshape([G.shape[0], 1, 1, k]);
  const g = tf.mul(A, G4).sum(3); // [b, h, q]
  const gs = tf.mul(tf.mul(A, G4), S.reshape([S.shape[0], 1, 1, k])).sum(3);
  // the authors add 1e-6 to every group entry before summing: sum(image_attn + 1e-6)
  const share = tf.div(gs, tf.add(g, tf.mul(G.sum(1).reshape([G.shape[0], 1, 1]), 1e-6)));
  let ok = tf.logicalAnd(tf.greaterEqual(g, opts.summ ?? 0.2), tf.lessEqual(share, opts.rho ?? 0.5)).toFloat();
  if (opts.rowMask !== undefined) {
    const R = maskRows('rowMask', opts.rowMask, b, q);
    ok = tf.mul(ok, R.reshape([R.shape[0], 1, q]));
  }
  if (noVis === 'skip') ok = tf.mul(ok, tf.mul(S, G).max(1).reshape([-1, 1, 1]));
  return tf.broadcastTo(ok, [b, h, q]) as tf.Tensor3D;
}

/**
 * Image-centric mask ([batch, head, q], or [q] for a matrix; 0/1): query rows with
 * sum_{j in I} a_ij >= summ and sum_{j in I and S} a_ij / sum_{j in I} (a_ij + 1e-6) <= rho.
 */
export function imageCentricMask(pattern: tf.Tensor, opts: ImageCentricOptions): tf.Tensor {
  return tf.tidy(() => asInput(imageCentric4(toPattern4('pattern', pattern), opts), pattern));
}

export interface VAROptions extends ImageCentricOptions {
  /** Fraction of sink attention kept. Default 0.6 (the authors' p). */
  p?: number;
  /** Skip the image-centric test: redistribute every row allowed by rowMask (all when absent). Default false. */
  allRows?: boolean;
}

/**
 * VAR redistribution (VARProcessor.attn_redist, MICV-yonsei/VisAttnSink src/logic/logic.py lines
 * 163-212) on the image-centric rows of a [q, k] or [batch, head, q, k] pattern: every sink (in or out
 * of the group) keeps p of its attention; Omega_i = (1 - p) sum_{j in S} a_ij moves to the group's
 * non-sinks I\S in proportion to their attention. A row with no attention on I\S is left unchanged
 * (the authors' code would divide by 0; with rho < 1 such a row is never image-centric).
 */
export function redistributeVAR(pattern: tf.Tensor, opts: VAROptions): tf.Tensor {
  const p = opts.p ?? 0.6;
  checkUnit('p', p);
  return tf.tidy(() => {
    const A = toPattern4('pattern', pattern);
    const [b, h, q, k] = A.shape;
    const S4 = maskRows('sinkMask', opts.sinkMask, b, k).reshape([-1, 1, 1, k]);
    const G = maskRows('groupMask', opts.groupMask, b, k);
    const GnS = tf.mul(G.reshape([-1, 1, 1, k]), tf.sub(1, S4));
    const sinkMass = tf.mul(A, S4).sum(3, true);
    const den = tf.mul(A, GnS).sum(3, true);
    const gain = safeDiv(tf.mul(1 - p, sinkMass), den);
    const other = tf.sub(1, tf.maximum(S4, GnS));
    const newA = tf.addN([tf.mul(tf.mul(A, S4), p), tf.mul(tf.mul(A, GnS), tf.add(1, gain)), tf.mul(A, other)]);
    let rows: tf.Tensor;
    if (opts.allRows) rows = opts.rowMask !== undefined ? maskRows('rowMask', opts.rowMask, b, q).reshape([-1, 1, q, 1]) : tf.ones([1, 1, q, 1]);
    else rows = imageCentric4(A, opts).reshape([b, h, q, 1]);
    const apply = tf.logicalAnd(tf.greater(rows, 0), tf.greater(den, 0));
    return asInput(tf.where(tf.broadcastTo(apply, [b, h, q, k]), newA, A), pattern).cast(pattern.dtype);
  });
}

export interface ImageCentricHeadsOptions extends Omit<ImageCentricOptions, 'sinkMask' | 'groupMask' | 'rowMask'> {
  /** Token group I (absolute positions). */
  group: TokenGroup;
  /** Sink keys of every layer (or give sinkMasks). */
  sinkMask?: KeyMask;
  /** Sink keys per pattern (sinks differ by layer: sinkTokenMask of each layer's resid_pre). */
  sinkMasks?: KeyMask[];
  /** 'prefill' (default): only queries after the group qualify (logic.py line 179); 'decode': every query. */
  phase?: 'prefill' | 'decode';
  /** Layer index of each pattern (default 0, 1, ...). */
  layers?: number[];
}

/**
 * Image-centric flags per (layer, batch, head, query) of cached patterns (one [batch, head, q, k]
 * tensor per layer) and, per (layer, head), the fraction of qualifying queries that pass.
 */
export async function imageCentricHeads(
  patterns: tf.Tensor[],
  opts: ImageCentricHeadsOptions,
): Promise<{ flags: number[][][][]; fraction: number[][]; layers: number[]; scores: HeadScores }> {
  const layers = opts.layers ?? patterns.map((_, i) => i);
  if (layers.length !== patterns.length) throw new ShapeError('layers', expectedFound(`${patterns.length} layer indices`, layers.length));
  if (opts.sinkMasks ? opts.sinkMasks.length !== patterns.length : opts.sinkMask === undefined) {
    throw new ConfigError('sinkMasks', expectedFound(`sinkMask, or sinkMasks with ${patterns.length} masks (one per pattern)`, opts.sinkMasks?.length ?? 'neither'));
  }
  const flags: number[][][][] = [];
  const fraction: number[][] = [];
  for (const [li, pat] of patterns.entries()) {
    if (!(pat instanceof tf.Tensor) || pat.rank !== 4) throw new ShapeError(`patterns[${li}]`, expectedFound('a [batch, head, q, k] tensor', pat instanceof tf.Tensor ? `[${pat.shape}]` : typeof pat));
    const [b, h, q, k] = pat.shape;
    const I = groupPositions('group', opts.group, k);
    const after = I.length ? I[I.length - 1] + 1 : 0;
    const rowMask = range(0, q).map((i): number => ((opts.phase ?? 'prefill') === 'decode' || k - q + i >= after ? 1 : 0));
    const sinkMask = (opts.sinkMasks ? opts.sinkMasks[li] : opts.sinkMask) as KeyMask;
    const m = imageCentricMask(pat, { ...opts, sinkMask, groupMask: tokenGroupMask(I, k), rowMask });
    const arr = (await m.array().finally(() => m.dispose())) as number[][][];
    flags.push(arr);
    const sum = (xs: number[]) => xs.reduce((x, y) => x + y, 0);
    const nq = sum(rowMask) * b;
    fraction.push(range(0, h).map((hh) => (nq ? sum(arr.map((row) => sum(row[hh]))) / nq : 0)));
  }
  const scores = makeHeadScores('var-image-centric', fraction, { summ: opts.summ ?? 0.2, rho: opts.rho ?? 0.5, phase: opts.phase ?? 'prefill', group: opts.group, noVisualSink: opts.noVisualSink ?? 'skip' }, {
    data: { layers, description: 'fraction of qualifying queries that are image-centric (rows = the given layers)' },
  });
  return { flags, fraction, layers, scores };
}

/**
 * Sink dimensions: residual dimensions ranked by max over tokens (and the given layers) of
 * |x_d / sqrt(mean(x^2) + 1e-6)| (`massiveDimsFromResiduals`); `resids` are [batch, pos, d_model] residual inputs,
 * e.g. blocks.l.hook_resid_pre for l >= 2. The authors fix these per model (src/logic/constants.py:
 * LLaMA-2-7B [2533, 1415]).
 */
export async function sinkDimensions(resids: tf.Tensor[], opts: { topK?: number; attentionMask?: tf.Tensor | number[][] } = {}): Promise<{ dims: number[]; scores: number[] }> {
  if (!Array.isArray(resids) || resids.length === 0) throw new ConfigError('resids', expectedFound('a non-empty tensor list', resids));
  const r = await massiveDimsFromResiduals(resids, { top: opts.topK ?? 2, attentionMask: opts.attentionMask });
  return { dims: r.top.map((t) => t.dim), scores: r.top.map((t) => t.score) };
}

/**
 * Sink-token mask [batch, pos] (0/1) of a residual input [batch, pos, d_model]: DimProspector
 * (logic.py lines 98-110), phi(x) = max_{d in D} |x_d / sqrt(mean(x^2) + 1e-6)| > tau.
 */
export function sinkTokenMask(resid: tf.Tensor, sinkDims: number[], tau = 20): tf.Tensor2D {
  if (!(resid instanceof tf.Tensor) || resid.rank !== 3) throw new ShapeError('resid', expectedFound('[batch, pos, d_model]', resid instanceof tf.Tensor ? `[${resid.shape}]` : typeof resid));
  const dm = resid.shape[2] as number;
  if (!Array.isArray(sinkDims) || !sinkDims.length) throw new ConfigError('sinkDims', expectedFound('at least one dimension', sinkDims));
  for (const x of sinkDims) if (!Number.isInteger(x) || x < 0 || x >= dm) throw new ConfigError('sinkDims', expectedFound(`dims in [0, ${dm})`, x));
  return tf.tidy(() => {
    const x = resid.toFloat();
    const rms = tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6));
    const phi = tf.abs(tf.div(tf.gather(x, tf.tensor1d(sinkDims, 'int32'), 2), rms)).max(-1);
    return tf.greater(phi, tau).toFloat() as tf.Tensor2D;
  });
}

export interface VARHookOptions {
  /** Layers to calibrate, or a rule (see varLayers); default 'authors-code' (2..L-1, needs nLayers). */
  layers?: number[] | VARLayerRule;
  nLayers?: number;
  /** Token group I (the image span), positions counted from the first real token. */
  group: TokenGroup;
  /** Sink dimensions D (e.g. from sinkDimensions; LLaMA-2-7B: [2533, 1415]). */
  sinkDims: number[];
  /** Sink threshold on phi. Default 20. */
  tau?: number;
  p?: number;
  summ?: number;
  rho?: number;
  noVisualSink?: ImageCentricOptions['noVisualSink'];
  /**
   * Sink tokens during decoding: 'prefill' (default, the authors: DimProspector runs only while
   * output_token_count < 0, src/model/llava.py line 314, so the prefill's sinks serve every step and
   * generated tokens are never sinks) or 'every-step' (tflens's earlier rule: each new token is tested too).
   */
  decodeSinks?: 'prefill' | 'every-step';
  /** Attention mask of the prompt batch (else padding is inferred from the pattern). */
  attentionMask?: KeyMask;
}

function resolveVARLayers(opts: VARHookOptions): number[] {
  if (Array.isArray(opts.layers)) {
    for (const l of opts.layers) if (!Number.isInteger(l) || l < 0) throw new ConfigError('layers', expectedFound('non-negative integer layers', l));
    return opts.layers;
  }
  if (!Number.isInteger(opts.nLayers)) throw new ConfigError('varHook', expectedFound('layers (a list) or nLayers', { layers: opts.layers, nLayers: opts.nLayers }));
  return varLayers(opts.nLayers as number, opts.layers ?? 'authors-code');
}

/**
 * fwdHooks for VAR. At each layer, blocks.l.hook_resid_pre marks the sink tokens (on the device;
 * remembered for decoding steps until dispose()) and blocks.l.attn.hook_pattern redistributes on the
 * image-centric (head, query) rows: in prefill only queries after the group qualify, in decoding every
 * query does (logic.py line 179). One hook set serves one prompt batch at a time (a new prefill
 * replaces the remembered sinks); it does not follow StreamingLLM eviction (a HookError says so).
 */
export function varHook(opts: VARHookOptions): CalibHooks {
  const layers = resolveVARLayers(opts);
  const v = { tau: opts.tau ?? 20, p: opts.p ?? 0.6, decodeSinks: opts.decodeSinks ?? 'prefill', group: groupPositions('group', opts.group) };
  checkUnit('p', v.p);
  if (v.decodeSinks !== 'prefill' && v.decodeSinks !== 'every-step') throw new ConfigError('decodeSinks', expectedFound("'prefill' or 'every-step'", v.decodeSinks));
  if (!Array.isArray(opts.sinkDims) || !opts.sinkDims.length) throw new ConfigError('sinkDims', expectedFound('at least one dimension', opts.sinkDims));
  const state = new LayerState(); // layer -> sink flags [b, positions seen]
  const entries = layers.flatMap((layer): HookSpec[] => [
    [actName('resid_pre', layer), varSinkHook(layer, opts, v, state)],
    [actName('pattern', layer), varPatternHook(layer, opts, v, state)],
  ]);
  return hookSet(entries, state);
}

type VARSettings = { tau: number; p: number; decodeSinks: 'prefill' | 'every-step'; group: number[] };

function varSinkHook(layer: number, opts: VARHookOptions, v: VARSettings, state: LayerState): HookFn {
  return (act, ctx) => {
    const decoding = !!ctx?.decoding;
    if (decoding && v.decodeSinks === 'prefill') return;
    tf.tidy(() => {
      const fresh = sinkTokenMask(act, opts.sinkDims, v.tau);
      const prev = state.get(layer);
      if (decoding && !prev) throw new HookError(`varHook: ${actName('resid_pre', layer)}`, expectedFound('a prefill through this hook set before decoding', 'decoding without prefill'));
      state.set(layer, decoding ? tf.concat([prev!, fresh], 1) : fresh);
    });
  };
}

function varPatternHook(layer: number, opts: VARHookOptions, v: VARSettings, state: LayerState): HookFn {
  const where = `varHook: ${actName('pattern', layer)}`;
  return (act, ctx) => {
    const [b, , q, k] = act.shape;
    const sinks = state.get(layer);
    if (!sinks) throw new HookError(where, `no sink tokens: ${actName('resid_pre', layer)} did not run before the pattern`);
    const seen = sinks.shape[1] as number;
    if (sinks.shape[0] !== b || seen > k || (v.decodeSinks === 'every-step' && seen !== k)) {
      throw new HookError(where, expectedFound(`sink flags for [${b}, ${k}] keys`, `[${sinks.shape}] (a KV cache that evicts positions is not supported)`));
    }
    const decoding = isDecoding(ctx, q, k);
    return tf.tidy(() => {
      const A = toPattern4(actName('pattern', layer), act);
      const P = positions(A, opts.attentionMask);
      const rel = P.relK.reshape([b, k]);
      // the group, by position relative to the first real token (padding maps past the table)
      const lut = tf.tensor1d([...tokenGroupMask(v.group.filter((j) => j < k), k), 0]);
      const G = tf.gather(lut, tf.where(tf.less(rel, 0), tf.fill([b, k], k), rel).toInt());
      const groupEnd = v.group.length ? v.group[v.group.length - 1] + 1 : 0;
      const realQ = P.realQ.reshape([b, q]);
      const rowMask = decoding ? realQ : tf.mul(tf.greaterEqual(P.relQ.reshape([b, q]), groupEnd).toFloat(), realQ);
      const S = tf.mul(seen === k ? sinks : tf.concat([sinks, tf.zeros([b, k - seen])], 1), P.realK);
      return redistributeVAR(A, { sinkMask: S, groupMask: G, rowMask, p: v.p, summ: opts.summ, rho: opts.rho, noVisualSink: opts.noVisualSink }).cast(act.dtype);
    });
  };
}
