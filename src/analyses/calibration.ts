/**
 * Attention calibration at inference time: ACT (Yu et al., "Unveiling and Harnessing Hidden
 * Attention Sinks", code GATECH-EIC/ACT) and VAR (Kang et al., "See What You Are Told", visual
 * attention redistribution, code MICV-yonsei/VisAttnSink). METHODS.md sections 3 and 4.
 *
 * Each method comes in three forms:
 *  - a pure function on one attention matrix (number[][], rows = queries, columns = keys), the
 *    readable reference (`calibrateACT`, `redistributeVAR`);
 *  - a batched tensor function on a [batch, head, q, k] pattern with left padding
 *    (`calibrateACTBatched`, `redistributeVARBatched`), written in tf ops (no read-back);
 *  - a hook factory returning plain fwdHooks entries (`actHook`, `varHook`) that compose with any
 *    other hook in runWithHooks / withHooks / generate.
 *
 * Conventions. A pattern with q rows and k keys, q <= k, holds the queries at absolute positions
 * k-q .. k-1 (q = k in prefill, q = 1 in KV-cache decoding). Left padding: key columns before the
 * first real token are padding; positions in options (groups, sinks) are counted from the first
 * real token. When no attention mask is given, padding is inferred from the pattern: the leading
 * key columns that receive exactly zero attention from the last query row (a real token under left
 * padding) in every head are padding. Masks are assumed to be left padding (zeros first).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, HookError, ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookName } from '../hooks/names.js';
import type { HookFn, HookSpec } from '../hooks/registry.js';
import { massiveDims } from './massive.js';
import { makeHeadScores, type HeadScores } from '../results.js';

// ---------------------------------------------------------------------------------------------
// Shared types and helpers
// ---------------------------------------------------------------------------------------------

/** The hook function contract of the model core (HookedTransformer.runWithHooks / generate). */
export type CalibHookFn = HookFn;
/** One fwdHooks entry: [hook name or name predicate, hook function]. */
export type CalibFwdHook = HookSpec;

/** Default calibrated layers of both papers: 2 .. L-2 inclusive (2..30 of 32). */
export function defaultCalibLayers(nLayers: number): number[] {
  const out: number[] = [];
  for (let l = 2; l <= nLayers - 2; l++) out.push(l);
  return out;
}

function toMatrix(where: string, pattern: tf.Tensor | number[][]): number[][] {
  let m: number[][];
  if (pattern instanceof tf.Tensor) {
    if (pattern.rank !== 2) throw new ShapeError(where, expectedFound('a rank-2 [q, k] matrix', `rank ${pattern.rank}`));
    m = pattern.arraySync() as number[][];
  } else {
    if (!Array.isArray(pattern) || pattern.length === 0 || !Array.isArray(pattern[0])) {
      throw new ShapeError(where, expectedFound('a non-empty number[][] (q x k)', typeof pattern));
    }
    m = pattern.map((r) => r.slice());
  }
  const q = m.length;
  const k = m[0].length;
  if (q > k) throw new ShapeError(where, expectedFound(`q <= k (queries are the last q positions)`, `q=${q}, k=${k}`));
  for (let i = 0; i < q; i++) {
    if (m[i].length !== k) throw new ShapeError(`${where}[${i}]`, expectedFound(`${k} columns`, m[i].length));
    for (let j = 0; j < k; j++) {
      const v = m[i][j];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < -1e-6) {
        throw new ValueError(`${where}[${i}][${j}]`, expectedFound('a finite attention weight >= 0', v));
      }
    }
  }
  return m;
}

function checkUnit(where: string, v: number, lo = 0, hi = 1): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < lo || v > hi) {
    throw new ConfigError(where, expectedFound(`a number in [${lo}, ${hi}]`, v));
  }
}

function toPattern4(where: string, pattern: tf.Tensor): tf.Tensor4D {
  if (pattern.rank !== 4) throw new ShapeError(where, expectedFound('a [batch, head, q, k] tensor', `shape [${pattern.shape}]`));
  const [, , q, k] = pattern.shape;
  if (q > k) throw new ShapeError(where, expectedFound('q <= k', `q=${q}, k=${k}`));
  return pattern as tf.Tensor4D;
}

/**
 * Real-key mask [batch, k] (1 = real token, 0 = left padding) from an attention mask whose width
 * may be shorter than k (columns beyond it are generated tokens, hence real), or inferred from the
 * pattern (see the module comment). Returned inside the caller's tidy.
 */
function realKeyMask(pattern: tf.Tensor4D, attentionMask?: tf.Tensor | number[][]): tf.Tensor2D {
  const [b, , q, k] = pattern.shape;
  if (attentionMask !== undefined) {
    const m = (attentionMask instanceof tf.Tensor ? attentionMask : tf.tensor2d(attentionMask)).toFloat() as tf.Tensor2D;
    if (m.rank !== 2 || m.shape[0] !== b) {
      throw new ShapeError('attentionMask', expectedFound(`[${b}, <=${k}]`, `[${m.shape}]`));
    }
    if (m.shape[1] > k) throw new ShapeError('attentionMask', expectedFound(`at most ${k} columns`, m.shape[1]));
    if (m.shape[1] === k) return m;
    return tf.concat([m, tf.ones([b, k - m.shape[1]])], 1) as tf.Tensor2D;
  }
  const last = pattern.slice([0, 0, q - 1, 0], [b, -1, 1, k]).sum([1, 2]) as tf.Tensor2D; // [b, k]
  return tf.cumsum(tf.greater(last, 0).toFloat(), 1).greater(0).toFloat() as tf.Tensor2D;
}

interface PosInfo {
  /** [b, 1, q, k]: real query, real key, key visible (causal). */
  valid: tf.Tensor4D;
  /** [b, 1, q, 1] real query rows. */
  realQ: tf.Tensor4D;
  /** [b, k] real keys. */
  realK: tf.Tensor2D;
  /** [b, 1] absolute index of the first real token. */
  firstReal: tf.Tensor2D;
  /** [b, 1, 1, k] key position relative to the first real token (negative for padding). */
  relK: tf.Tensor4D;
  /** [b, 1, q, 1] query position relative to the first real token. */
  relQ: tf.Tensor4D;
  /** [1, 1, q, k] causal visibility. */
  causal: tf.Tensor4D;
}

function positions(pattern: tf.Tensor4D, attentionMask?: tf.Tensor | number[][]): PosInfo {
  const [b, , q, k] = pattern.shape;
  const off = k - q;
  const realK = realKeyMask(pattern, attentionMask);
  const realQ = realK.slice([0, off], [b, q]).reshape([b, 1, q, 1]) as tf.Tensor4D;
  const kpos = tf.range(0, k, 1, 'float32');
  const qpos = tf.range(off, k, 1, 'float32');
  const causal = tf.lessEqual(kpos.reshape([1, k]), qpos.reshape([q, 1])).toFloat().reshape([1, 1, q, k]) as tf.Tensor4D;
  const valid = tf.mul(tf.mul(realQ, realK.reshape([b, 1, 1, k])), causal) as tf.Tensor4D;
  const nPad = tf.sub(k, realK.sum(1, true)) as tf.Tensor2D; // [b,1] (left padding)
  const relK = tf.sub(kpos.reshape([1, 1, 1, k]), nPad.reshape([b, 1, 1, 1])) as tf.Tensor4D;
  const relQ = tf.sub(qpos.reshape([1, 1, q, 1]), nPad.reshape([b, 1, 1, 1])) as tf.Tensor4D;
  return { valid, realQ, realK, firstReal: nPad, relK, relQ, causal };
}

/** a / b where b > 0, else 0 (no NaN). */
function safeDiv(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const pos = tf.greater(b, 0);
  return tf.where(pos, tf.div(a, tf.where(pos, b, tf.onesLike(b))), tf.zerosLike(a));
}

// ---------------------------------------------------------------------------------------------
// ACT
// ---------------------------------------------------------------------------------------------

export interface ACTOptions {
  /** Column-mean threshold for a sink (authors' THRES). Default 0.1. */
  threshold?: number;
  /** Fraction of a hidden sink's attention that is kept (authors' BETA). Default 0.4. */
  beta?: number;
  /** Set A[0,0] = 1 (the authors do; a no-op on a valid causal prefill matrix). Default true. */
  keepFirstRow?: boolean;
}

/**
 * Column means m_j = sum_{i >= j} A[i,j] / (number of rows i >= j), over the rows present
 * (queries at positions k-q..k-1). For a full prefill matrix this is METHODS.md section 1,
 * sum_{i>=j} A[i,j] / (N - j); for one decoding row it is the row itself (the authors' code).
 */
export function actColumnMeans(pattern: tf.Tensor2D | number[][]): number[] {
  const A = toMatrix('pattern', pattern);
  return colMeans(A);
}

function colMeans(A: number[][]): number[] {
  const q = A.length;
  const k = A[0].length;
  const off = k - q;
  const m = new Array<number>(k).fill(0);
  for (let j = 0; j < k; j++) {
    let s = 0;
    let c = 0;
    for (let i = 0; i < q; i++) {
      if (off + i >= j) {
        s += A[i][j];
        c++;
      }
    }
    m[j] = c > 0 ? s / c : 0;
  }
  return m;
}

/** The hidden sinks S' of one matrix: {j : m_j > threshold} without its lowest index. */
export function actHiddenSinks(pattern: tf.Tensor2D | number[][], threshold = 0.1): number[] {
  const A = toMatrix('pattern', pattern);
  checkUnit('threshold', threshold);
  const m = colMeans(A);
  const S: number[] = [];
  m.forEach((v, j) => {
    if (v > threshold) S.push(j);
  });
  return S.slice(1);
}

function actOnMatrix(A: number[][], sPrime: Set<number>, beta: number, keepFirstRow: boolean): number[][] {
  const q = A.length;
  const k = A[0].length;
  const off = k - q;
  const out = A.map((r) => r.slice());
  for (let i = 0; i < q; i++) {
    const vis = off + i; // keys 0..vis are visible
    let sink = 0;
    let non = 0;
    for (let j = 0; j <= vis; j++) {
      if (sPrime.has(j)) sink += A[i][j];
      else non += A[i][j];
    }
    if (non <= 0) continue; // all visible mass on hidden sinks (or none): leave the row unchanged
    const r = (1 - beta) * sink;
    for (let j = 0; j <= vis; j++) {
      if (sPrime.has(j)) out[i][j] = beta * A[i][j];
      else out[i][j] = A[i][j] + (r * A[i][j]) / non;
    }
  }
  if (keepFirstRow && off === 0) {
    for (let j = 0; j < k; j++) out[0][j] = j === 0 ? 1 : 0;
  }
  return out;
}

/**
 * ACT on one attention matrix (q x k, causal, rows sum to 1; q = k in prefill). Returns a new
 * matrix; the input is not modified.
 * 1. S = {j : m_j > threshold}, S' = S minus its lowest index;
 * 2. r_i = (1 - beta) sum_{j in S'} A[i,j];  3. A[i,j] *= beta on S';
 * 4. A[i,j] += r_i A[i,j] / sum_{k not in S', k <= i} A[i,k] on the visible non-sinks;
 * a row whose visible mass is all on S' is left unchanged; 5. A[0,0] = 1 (keepFirstRow, when
 * row 0 is present).
 */
export function calibrateACT(pattern: tf.Tensor2D | number[][], opts: ACTOptions = {}): number[][] {
  const { threshold = 0.1, beta = 0.4, keepFirstRow = true } = opts;
  checkUnit('threshold', threshold);
  checkUnit('beta', beta);
  const A = toMatrix('pattern', pattern);
  const m = colMeans(A);
  const S: number[] = [];
  m.forEach((v, j) => {
    if (v > threshold) S.push(j);
  });
  return actOnMatrix(A, new Set(S.slice(1)), beta, keepFirstRow);
}

export interface ACTBatchedOptions extends ACTOptions {
  /** [batch, <=k] 1 = real token; columns past its width count as real (generated tokens). */
  attentionMask?: tf.Tensor | number[][];
  /** Use these hidden sinks instead of computing them: [batch, head, k] 0/1 (e.g. cached from prefill). */
  hiddenSinks?: tf.Tensor | number[][][];
}

/**
 * ACT over a [batch, head, q, k] pattern with left padding. Column means, the sink set and the
 * "lowest index" are taken over real tokens only; padded rows are returned unchanged. Equals
 * `calibrateACT` on each (batch, head) matrix with its padding removed.
 */
export function calibrateACTBatched(pattern: tf.Tensor, opts: ACTBatchedOptions = {}): tf.Tensor4D {
  return tf.tidy(() => actBatchedCore(pattern, opts).out);
}

/** The hidden-sink mask [batch, head, k] (0/1) ACT would use on this pattern. */
export function actHiddenSinksBatched(pattern: tf.Tensor, opts: { threshold?: number; attentionMask?: tf.Tensor | number[][] } = {}): tf.Tensor3D {
  return tf.tidy(() => actBatchedCore(pattern, { ...opts }).sPrime);
}

function actBatchedCore(pattern: tf.Tensor, opts: ACTBatchedOptions): { out: tf.Tensor4D; sPrime: tf.Tensor3D } {
  const { threshold = 0.1, beta = 0.4, keepFirstRow = true } = opts;
  checkUnit('threshold', threshold);
  checkUnit('beta', beta);
  const A = toPattern4('pattern', pattern).toFloat();
  const [b, h, q, k] = A.shape;
  const P = positions(A, opts.attentionMask);
  const Am = tf.mul(A, P.valid); // [b,h,q,k]
  let sPrime: tf.Tensor3D;
  if (opts.hiddenSinks !== undefined) {
    const s = opts.hiddenSinks instanceof tf.Tensor ? opts.hiddenSinks.toFloat() : tf.tensor3d(opts.hiddenSinks);
    const sk = s.shape[2] as number;
    if (s.rank !== 3 || s.shape[0] !== b || s.shape[1] !== h || sk > k) {
      throw new ShapeError('hiddenSinks', expectedFound(`[${b}, ${h}, <=${k}]`, `[${s.shape}]`));
    }
    sPrime = (sk === k ? s : tf.concat([s, tf.zeros([b, h, k - sk])], 2)) as tf.Tensor3D;
    sPrime = tf.mul(sPrime, P.realK.reshape([b, 1, k])) as tf.Tensor3D;
  } else {
    const colSum = Am.sum(2); // [b,h,k]
    const count = tf.mul(P.realQ, P.causal).sum(2); // [b,1,k] rows i >= j that are real
    const m = safeDiv(colSum, count);
    const S = tf.mul(tf.greater(m, threshold).toFloat(), P.realK.reshape([b, 1, k])); // [b,h,k]
    const kpos = tf.range(0, k, 1, 'float32').reshape([1, 1, k]);
    // lowest index of S: k - max(S * (k - j)); k when S is empty
    const first = tf.sub(k, tf.mul(S, tf.sub(k, kpos)).max(2, true)); // [b,h,1]
    sPrime = tf.mul(S, tf.greater(kpos, first).toFloat()) as tf.Tensor3D;
  }
  const sp = sPrime.reshape([b, h, 1, k]);
  const notSp = tf.sub(1, sp);
  const sinkMass = tf.mul(Am, sp).sum(3, true); // [b,h,q,1]
  const nonMass = tf.mul(Am, notSp).sum(3, true);
  const r = tf.mul(1 - beta, sinkMass);
  const factor = safeDiv(r, nonMass);
  const calibrated = tf.add(tf.mul(tf.mul(Am, sp), beta), tf.mul(tf.mul(Am, notSp), tf.add(1, factor)));
  // keep entries outside the valid region as they were
  const newA = tf.add(calibrated, tf.mul(A, tf.sub(1, P.valid)));
  const apply = tf.logicalAnd(tf.greater(nonMass, 0), tf.greater(P.realQ, 0)); // [b,h|1,q,1]
  let out = tf.where(tf.broadcastTo(apply, [b, h, q, 1]), newA, A) as tf.Tensor4D;
  if (keepFirstRow) {
    // the first real query row attends only to the first real key
    const firstRow = tf.equal(P.relQ, 0); // [b,1,q,1]
    const onehot = tf.equal(P.relK, 0).toFloat(); // [b,1,1,k]
    out = tf.where(tf.broadcastTo(firstRow, [b, h, q, k]), tf.broadcastTo(onehot, [b, h, q, k]), out) as tf.Tensor4D;
  }
  return { out, sPrime };
}

export interface ACTHookOptions extends ACTOptions {
  /** [layer, head] pairs to calibrate. */
  heads: Array<[number, number]>;
  /**
   * Sinks during KV-cache decoding (pattern [batch, head, 1, k]). 'row' (default, the authors'
   * code): the column means are computed from the rows present, so for one decoding row m_j is the
   * row itself and S is recomputed each step. (The authors' code then also zeroes nothing in its
   * ratio map for that row and sets its [0, 0] entry to 1 — artefacts of prefill-only code that
   * break the row sum; tflens keeps the rule of section 3 and leaves A[0,0] alone in decoding.) 'prefill': S' found on the prefill pattern is cached
   * per (layer, batch, head) in this hook set's closure and reused for every later step (new
   * tokens are never sinks); falls back to 'row' when no prefill was seen or when the KV cache was
   * evicted below the prefill length (StreamingLLM).
   */
  decodeSinks?: 'row' | 'prefill';
  /** Attention mask of the prompt batch (else padding is inferred from the pattern). */
  attentionMask?: tf.Tensor | number[][];
}

/**
 * fwdHooks entries on blocks.L.attn.hook_pattern applying ACT to the given heads only. Works in
 * prefill ([batch, head, q, q]) and decoding ([batch, head, 1, k]).
 */
export function actHook(opts: ACTHookOptions): CalibFwdHook[] {
  const { heads, decodeSinks = 'row' } = opts;
  if (!Array.isArray(heads)) throw new ConfigError('heads', expectedFound('an array of [layer, head] pairs', typeof heads));
  const byLayer = new Map<number, number[]>();
  heads.forEach((lh, idx) => {
    if (!Array.isArray(lh) || lh.length !== 2 || !lh.every((x) => Number.isInteger(x) && x >= 0)) {
      throw new ConfigError(`heads[${idx}]`, expectedFound('[layer, head] with non-negative integers', lh));
    }
    const list = byLayer.get(lh[0]) ?? [];
    if (!list.includes(lh[1])) list.push(lh[1]);
    byLayer.set(lh[0], list);
  });
  checkUnit('threshold', opts.threshold ?? 0.1);
  checkUnit('beta', opts.beta ?? 0.4);
  const cached = new Map<number, number[][][]>(); // layer -> [batch][selected head][k]
  const entries: CalibFwdHook[] = [];
  for (const [layer, hs] of [...byLayer.entries()].sort((a, b) => a[0] - b[0])) {
    const sel = hs.slice().sort((a, b) => a - b);
    const fn: CalibHookFn = (act) => {
      const A = toPattern4(`blocks.${layer}.attn.hook_pattern`, act);
      const [b, nh, q, k] = A.shape;
      for (const hh of sel) {
        if (hh >= nh) throw new HookError(`actHook: blocks.${layer}.attn.hook_pattern`, expectedFound(`head < ${nh}`, hh));
      }
      const isPrefill = q === k;
      const mask = opts.attentionMask !== undefined ? widthLimited(opts.attentionMask, k) : undefined;
      let hidden: number[][][] | undefined;
      if (!isPrefill && decodeSinks === 'prefill' && cached.has(layer)) {
        const c = cached.get(layer) as number[][][];
        // a cache evicted below the prefill length (StreamingLLM) no longer lines up: use 'row'
        if (c.length === b && c[0][0].length <= k) hidden = c;
      }
      const [out, sp] = tf.tidy((): tf.Tensor[] => {
        const idx = tf.tensor1d(sel, 'int32');
        const sub = tf.gather(A, idx, 1);
        const core = actBatchedCore(sub, {
          threshold: opts.threshold,
          beta: opts.beta,
          keepFirstRow: opts.keepFirstRow,
          // padding inferred from all heads (more robust than the calibrated heads alone)
          attentionMask: mask ?? realKeyMask(A),
          hiddenSinks: hidden && hidden.length === b ? hidden : undefined,
        });
        const parts: tf.Tensor[] = [];
        for (let hh = 0; hh < nh; hh++) {
          const s = sel.indexOf(hh);
          parts.push(s >= 0 ? core.out.slice([0, s, 0, 0], [b, 1, q, k]) : A.slice([0, hh, 0, 0], [b, 1, q, k]));
        }
        return [tf.concat(parts, 1).cast(A.dtype), core.sPrime];
      });
      if (isPrefill && decodeSinks === 'prefill') cached.set(layer, sp.arraySync() as number[][][]);
      sp.dispose();
      return out;
    };
    entries.push([`blocks.${layer}.attn.hook_pattern` as HookName, fn]);
  }
  return entries;
}

function widthLimited(mask: tf.Tensor | number[][], k: number): number[][] {
  const m = mask instanceof tf.Tensor ? (mask.arraySync() as number[][]) : mask;
  return m.map((r) => r.slice(0, k));
}

/** Minimal model view used by head selection (HookedTransformer satisfies it). */
export interface CalibModelLike {
  cfg: { n_layers: number; n_heads: number };
}

export interface SelectACTOptions extends ACTOptions {
  /** Layers to try; default 2..L-2. */
  layers?: number[];
  /** Heads to try per layer; default all. */
  heads?: number[];
  /**
   * 'greedy' (default): walk the candidates in (layer, head) order; add a head when the accuracy
   * with all kept heads plus it beats the best accuracy so far by more than minGain.
   * 'independent' (the authors' calibration script): try each head alone against the baseline and
   * keep those that beat it by more than minGain; the final accuracy is measured with all kept.
   */
  mode?: 'greedy' | 'independent';
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
  /** Accuracy with all kept heads calibrated. */
  final: number;
  trace: ACTSelectionStep[];
  params: Record<string, unknown>;
}

/**
 * Head selection for ACT: evaluate(hooks, calibSet) returns task accuracy on the calibration set
 * with the given fwdHooks active (an empty list = baseline).
 */
export async function selectACTHeads<D>(
  model: CalibModelLike,
  calibSet: D,
  evaluate: (hooks: CalibFwdHook[], data: D) => Promise<number> | number,
  opts: SelectACTOptions = {},
): Promise<ACTSelection> {
  const L = model?.cfg?.n_layers;
  const H = model?.cfg?.n_heads;
  if (!Number.isInteger(L) || !Number.isInteger(H)) {
    throw new ConfigError('model.cfg', expectedFound('n_layers and n_heads integers', { n_layers: L, n_heads: H }));
  }
  const layers = opts.layers ?? defaultCalibLayers(L);
  const headList = opts.heads ?? Array.from({ length: H }, (_, i) => i);
  for (const l of layers) if (!Number.isInteger(l) || l < 0 || l >= L) throw new ConfigError('layers', expectedFound(`layers in [0, ${L})`, l));
  for (const h of headList) if (!Number.isInteger(h) || h < 0 || h >= H) throw new ConfigError('heads', expectedFound(`heads in [0, ${H})`, h));
  const mode = opts.mode ?? 'greedy';
  const minGain = opts.minGain ?? 0;
  const act = { threshold: opts.threshold, beta: opts.beta, keepFirstRow: opts.keepFirstRow };
  const hooksFor = (hs: Array<[number, number]>) => (hs.length ? actHook({ ...opts.hookOptions, ...act, heads: hs }) : []);
  const score = async (hs: Array<[number, number]>) => {
    const v = await evaluate(hooksFor(hs), calibSet);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ValueError('evaluate()', expectedFound('a finite accuracy', v));
    return v;
  };
  const baseline = await score([]);
  const kept: Array<[number, number]> = [];
  const trace: ACTSelectionStep[] = [];
  let best = baseline;
  for (const l of layers) {
    for (const h of headList) {
      const cand: Array<[number, number]> = mode === 'greedy' ? [...kept, [l, h]] : [[l, h]];
      const acc = await score(cand);
      const ref = mode === 'greedy' ? best : baseline;
      const keep = acc > ref + minGain;
      if (keep) {
        kept.push([l, h]);
        if (mode === 'greedy') best = acc;
      }
      const step = { layer: l, head: h, accuracy: acc, kept: keep };
      trace.push(step);
      opts.onStep?.(step);
    }
  }
  const final = mode === 'greedy' ? best : kept.length ? await score(kept) : baseline;
  return { kept, baseline, final, trace, params: { mode, minGain, layers, threshold: act.threshold ?? 0.1, beta: act.beta ?? 0.4 } };
}

/** Accuracy before and after ACT on held-out data with the given heads. */
export async function evaluateACT<D>(
  heads: Array<[number, number]>,
  heldOut: D,
  evaluate: (hooks: CalibFwdHook[], data: D) => Promise<number> | number,
  opts: ACTOptions & { hookOptions?: SelectACTOptions['hookOptions'] } = {},
): Promise<{ before: number; after: number; delta: number; heads: Array<[number, number]> }> {
  const before = await evaluate([], heldOut);
  const after = await evaluate(
    heads.length ? actHook({ ...opts.hookOptions, threshold: opts.threshold, beta: opts.beta, keepFirstRow: opts.keepFirstRow, heads }) : [],
    heldOut,
  );
  return { before, after, delta: after - before, heads };
}

// ---------------------------------------------------------------------------------------------
// VAR
// ---------------------------------------------------------------------------------------------

/** A token group: explicit positions, or a half-open span [start, end). */
export type TokenGroup = number[] | { start: number; end: number };

function groupPositions(where: string, group: TokenGroup, k?: number): number[] {
  let pos: number[];
  if (Array.isArray(group)) pos = group.slice();
  else if (group && typeof group === 'object' && Number.isInteger(group.start) && Number.isInteger(group.end)) {
    if (group.end < group.start) throw new ConfigError(where, expectedFound('start <= end', group));
    pos = [];
    for (let j = group.start; j < group.end; j++) pos.push(j);
  } else throw new ConfigError(where, expectedFound('number[] or {start, end}', group));
  for (const j of pos) {
    if (!Number.isInteger(j) || j < 0 || (k !== undefined && j >= k)) {
      throw new ConfigError(where, expectedFound(k !== undefined ? `positions in [0, ${k})` : 'non-negative integer positions', j));
    }
  }
  return [...new Set(pos)].sort((a, b) => a - b);
}

export interface VAROptions {
  /** Sink key positions S (visual and text). */
  sinks: number[];
  /** The token group I (image span, document, system prompt...). */
  group: TokenGroup;
  /** Fraction of sink attention kept. Default 0.6. */
  p?: number;
  /** Only these query rows are redistributed (default: all rows). */
  rows?: number[];
}

/**
 * VAR redistribution on one matrix (q x k): a_ij <- p a_ij for every sink j (in or out of the
 * group); Omega_i = (1-p) sum_{j in S} a_ij (original values); a_ij += Omega_i a_ij /
 * sum_{k in I\S} a_ik for j in I\S. Rows with no non-sink group mass are left unchanged.
 */
export function redistributeVAR(pattern: tf.Tensor2D | number[][], opts: VAROptions): number[][] {
  const A = toMatrix('pattern', pattern);
  const k = A[0].length;
  const p = opts.p ?? 0.6;
  checkUnit('p', p);
  const S = new Set(groupPositions('sinks', opts.sinks, k));
  const I = groupPositions('group', opts.group, k);
  const IminusS = I.filter((j) => !S.has(j));
  const rows = opts.rows ?? A.map((_, i) => i);
  const out = A.map((r) => r.slice());
  for (const i of rows) {
    if (!Number.isInteger(i) || i < 0 || i >= A.length) throw new ConfigError('rows', expectedFound(`rows in [0, ${A.length})`, i));
    let den = 0;
    for (const j of IminusS) den += A[i][j];
    if (den <= 0) continue;
    let sinkMass = 0;
    for (const j of S) sinkMass += A[i][j];
    const omega = (1 - p) * sinkMass;
    for (const j of S) out[i][j] = p * A[i][j];
    for (const j of IminusS) out[i][j] = A[i][j] + (omega * A[i][j]) / den;
  }
  return out;
}

export interface ImageCentricOptions {
  /** Token group I. */
  group: TokenGroup;
  /** Sink positions S. */
  sinks: number[];
  /** Minimum attention on the group. Default 0.2. */
  summ?: number;
  /** Maximum share of the group attention that goes to its sinks. Default 0.5. */
  rho?: number;
  /** 'prefill': only queries after the group qualify; 'decode': all queries. Default 'prefill'. */
  phase?: 'prefill' | 'decode';
}

/**
 * Image-centric test on one matrix: row i qualifies when sum_{j in I} a_ij >= summ and
 * sum_{j in I and S} a_ij / sum_{j in I} (a_ij + 1e-6) <= rho (the 1e-6 is added per group token,
 * as written). In prefill only queries at positions >= max(I)+1 qualify.
 */
export function imageCentricRows(pattern: tf.Tensor2D | number[][], opts: ImageCentricOptions): boolean[] {
  const A = toMatrix('pattern', pattern);
  const q = A.length;
  const k = A[0].length;
  const off = k - q;
  const I = groupPositions('group', opts.group, k);
  const S = new Set(groupPositions('sinks', opts.sinks, k));
  const summ = opts.summ ?? 0.2;
  const rho = opts.rho ?? 0.5;
  const after = I.length ? Math.max(...I) + 1 : 0;
  return A.map((row, i) => {
    if ((opts.phase ?? 'prefill') === 'prefill' && off + i < after) return false;
    let g = 0;
    let gs = 0;
    for (const j of I) {
      g += row[j];
      if (S.has(j)) gs += row[j];
    }
    return g >= summ && gs / (g + I.length * 1e-6) <= rho;
  });
}

export interface VARBatchedOptions {
  /** [batch, k] or [k] 0/1 sink keys (absolute key positions). */
  sinkMask: tf.Tensor | number[][] | number[];
  /** [batch, k] or [k] 0/1 group keys (absolute key positions). */
  groupMask: tf.Tensor | number[][] | number[];
  p?: number;
  summ?: number;
  rho?: number;
  /** [batch, q] or [q] 0/1 rows allowed to be image-centric (e.g. queries after the group). */
  rowMask?: tf.Tensor | number[][] | number[];
  /** Skip the image-centric test and redistribute every (allowed) row. Default false. */
  allRows?: boolean;
}

function keyMask(where: string, m: tf.Tensor | number[][] | number[], b: number, n: number): tf.Tensor {
  const t = m instanceof tf.Tensor ? m.toFloat() : tf.tensor(m as number[] | number[][]).toFloat();
  if (t.rank === 1 && t.shape[0] === n) return t.reshape([1, n]);
  if (t.rank === 2 && (t.shape[0] === b || t.shape[0] === 1) && t.shape[1] === n) return t;
  throw new ShapeError(where, expectedFound(`[${b}, ${n}] or [${n}]`, `[${t.shape}]`));
}

/** The image-centric mask [batch, head, q] (0/1) of a [batch, head, q, k] pattern. */
export function imageCentricMask(pattern: tf.Tensor, opts: Omit<VARBatchedOptions, 'p' | 'allRows'>): tf.Tensor3D {
  return tf.tidy(() => {
    const A = toPattern4('pattern', pattern).toFloat();
    const [b, , q, k] = A.shape;
    const S = keyMask('sinkMask', opts.sinkMask, b, k);
    const G = keyMask('groupMask', opts.groupMask, b, k);
    const S4 = S.reshape([S.shape[0], 1, 1, k]);
    const G4 = G.reshape([G.shape[0], 1, 1, k]);
    const g = tf.mul(A, G4).sum(3); // [b,h,q]
    const gs = tf.mul(tf.mul(A, G4), S4).sum(3);
    const nG = G.sum(1).reshape([G.shape[0], 1, 1]);
    const ratio = tf.div(gs, tf.add(g, tf.mul(nG, 1e-6)));
    let ok = tf.logicalAnd(tf.greaterEqual(g, opts.summ ?? 0.2), tf.lessEqual(ratio, opts.rho ?? 0.5)).toFloat();
    if (opts.rowMask !== undefined) {
      const R = keyMask('rowMask', opts.rowMask, b, q);
      ok = tf.mul(ok, R.reshape([R.shape[0], 1, q]));
    }
    return ok as tf.Tensor3D;
  });
}

/** VAR over a [batch, head, q, k] pattern: redistribution on image-centric rows only. */
export function redistributeVARBatched(pattern: tf.Tensor, opts: VARBatchedOptions): tf.Tensor4D {
  const p = opts.p ?? 0.6;
  checkUnit('p', p);
  return tf.tidy(() => {
    const A = toPattern4('pattern', pattern).toFloat();
    const [b, h, q, k] = A.shape;
    const S = keyMask('sinkMask', opts.sinkMask, b, k);
    const G = keyMask('groupMask', opts.groupMask, b, k);
    const S4 = S.reshape([S.shape[0], 1, 1, k]);
    const GnS = tf.mul(G, tf.sub(1, S)).reshape([G.shape[0], 1, 1, k]);
    const sinkMass = tf.mul(A, S4).sum(3, true);
    const den = tf.mul(A, GnS).sum(3, true);
    const omega = tf.mul(1 - p, sinkMass);
    const factor = safeDiv(omega, den);
    const other = tf.sub(1, tf.maximum(S4, GnS));
    const newA = tf.add(tf.add(tf.mul(tf.mul(A, S4), p), tf.mul(tf.mul(A, GnS), tf.add(1, factor))), tf.mul(A, other));
    let rows: tf.Tensor;
    if (opts.allRows) {
      rows = tf.ones([1, 1, q, 1]);
      if (opts.rowMask !== undefined) {
        const R = keyMask('rowMask', opts.rowMask, b, q);
        rows = R.reshape([R.shape[0], 1, q, 1]);
      }
    } else {
      rows = imageCentricMask(A, opts).reshape([b, h, q, 1]);
    }
    const apply = tf.logicalAnd(tf.greater(rows, 0), tf.greater(den, 0));
    return tf.where(tf.broadcastTo(apply, [b, h, q, k]), newA, A).cast(pattern.dtype) as tf.Tensor4D;
  });
}

/**
 * Per (layer, batch, head, query) image-centric flags for cached patterns (one [batch, head, q, k]
 * tensor per layer) plus the fraction of qualifying queries that pass, per (layer, head).
 */
export function imageCentricHeads(
  patterns: tf.Tensor[],
  opts: ImageCentricOptions & { layers?: number[] },
): { flags: number[][][][]; fraction: number[][]; layers: number[]; scores: HeadScores } {
  const layers = opts.layers ?? patterns.map((_, i) => i);
  if (layers.length !== patterns.length) throw new ShapeError('layers', expectedFound(`${patterns.length} layer indices`, layers.length));
  const flags: number[][][][] = [];
  const fraction: number[][] = [];
  patterns.forEach((pat, li) => {
    const A = toPattern4(`patterns[${li}]`, pat);
    const [b, h, q, k] = A.shape;
    const I = groupPositions('group', opts.group, k);
    const S = groupPositions('sinks', opts.sinks, k);
    const gm = new Array(k).fill(0);
    I.forEach((j) => (gm[j] = 1));
    const sm = new Array(k).fill(0);
    S.forEach((j) => (sm[j] = 1));
    const after = I.length ? Math.max(...I) + 1 : 0;
    const off = k - q;
    const rm = Array.from({ length: q }, (_, i) => ((opts.phase ?? 'prefill') === 'decode' || off + i >= after ? 1 : 0));
    const mask = imageCentricMask(A, { groupMask: gm, sinkMask: sm, rowMask: rm, summ: opts.summ, rho: opts.rho });
    const arr = mask.arraySync() as number[][][];
    mask.dispose();
    flags.push(arr);
    const nq = rm.reduce((a: number, v: number) => a + v, 0) * b;
    const fr: number[] = [];
    for (let hh = 0; hh < h; hh++) {
      let c = 0;
      for (let bb = 0; bb < b; bb++) for (let i = 0; i < q; i++) c += arr[bb][hh][i];
      fr.push(nq ? c / nq : 0);
    }
    fraction.push(fr);
  });
  const scores = makeHeadScores('var-image-centric', fraction, { summ: opts.summ ?? 0.2, rho: opts.rho ?? 0.5, phase: opts.phase ?? 'prefill', group: opts.group, sinks: opts.sinks }, {
    data: { layers, description: 'fraction of qualifying queries that are image-centric (rows = the given layers)' },
  });
  return { flags, fraction, layers, scores };
}

/**
 * Sink dimensions: rank residual dimensions by max over tokens (and over the given layers) of
 * |x_d / sqrt(mean(x^2) + 1e-6)|. `resids` are [batch, pos, d_model] residual tensors, e.g.
 * blocks.l.hook_resid_pre for l >= 2; an optional mask [batch, pos] excludes padding. A thin
 * wrapper over `massiveDims` (src/analyses/massive.ts) returning just the dimensions and scores.
 */
export function sinkDimensions(
  resids: tf.Tensor[],
  opts: { topK?: number; attentionMask?: tf.Tensor | number[][] } = {},
): { dims: number[]; scores: number[] } {
  if (!Array.isArray(resids) || resids.length === 0) throw new ConfigError('resids', expectedFound('a non-empty tensor list', resids));
  const r = massiveDims(resids, { top: opts.topK ?? 2, mask: opts.attentionMask });
  return { dims: r.top.map((t) => t.dim), scores: r.top.map((t) => t.score) };
}

/**
 * Sink-token mask [batch, pos] (0/1) from a residual input [batch, pos, d_model]:
 * phi(x) = max_{d in D} |x_d / sqrt(mean(x^2) + 1e-6)| > tau.
 */
export function sinkTokenMask(resid: tf.Tensor, sinkDims: number[], tau = 20): tf.Tensor2D {
  if (resid.rank !== 3) throw new ShapeError('resid', expectedFound('[batch, pos, d_model]', `[${resid.shape}]`));
  const dm = resid.shape[2] as number;
  if (!sinkDims.length) throw new ConfigError('sinkDims', expectedFound('at least one dimension', sinkDims));
  for (const x of sinkDims) if (!Number.isInteger(x) || x < 0 || x >= dm) throw new ConfigError('sinkDims', expectedFound(`dims in [0, ${dm})`, x));
  return tf.tidy(() => {
    const x = resid.toFloat();
    const rms = tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6));
    const sel = tf.gather(x, tf.tensor1d(sinkDims, 'int32'), 2);
    const phi = tf.abs(tf.div(sel, rms)).max(-1);
    return tf.greater(phi, tau).toFloat() as tf.Tensor2D;
  });
}

export interface VARHookOptions {
  /** Layers to calibrate; default 2..nLayers-2 (needs nLayers). */
  layers?: number[];
  nLayers?: number;
  /** Token group I, positions counted from the first real token. */
  group: TokenGroup;
  /** Sink dimensions D (e.g. from sinkDimensions; LLaMA-2-7B: [2533, 1415]). */
  sinkDims: number[];
  tau?: number;
  p?: number;
  summ?: number;
  rho?: number;
  /** Attention mask of the prompt batch (else padding is inferred from the pattern). */
  attentionMask?: tf.Tensor | number[][];
}

/**
 * fwdHooks for VAR: at each layer l, blocks.l.hook_resid_pre marks sink tokens
 * (phi > tau on the sink dimensions; remembered across decoding steps in this hook set's closure)
 * and blocks.l.attn.hook_pattern redistributes on image-centric (head, query) rows. Prefill
 * (q = k): only queries after the group qualify; decoding: every query does. Sink flags of past
 * tokens are kept per layer in the closure, so one hook set serves one generation at a time; it
 * does not follow StreamingLLM eviction (a HookError names the mismatch).
 */
export function varHook(opts: VARHookOptions): CalibFwdHook[] {
  let layers = opts.layers;
  if (!layers) {
    if (!Number.isInteger(opts.nLayers)) throw new ConfigError('varHook', 'give layers or nLayers');
    layers = defaultCalibLayers(opts.nLayers as number);
  }
  const tau = opts.tau ?? 20;
  const p = opts.p ?? 0.6;
  checkUnit('p', p);
  const I = groupPositions('group', opts.group);
  if (!opts.sinkDims?.length) throw new ConfigError('sinkDims', expectedFound('at least one dimension', opts.sinkDims));
  const groupEnd = I.length ? Math.max(...I) + 1 : 0;
  const pending = new Map<number, number[][]>(); // layer -> [batch][new positions]
  const history = new Map<number, number[][]>(); // layer -> [batch][all positions so far]
  const entries: CalibFwdHook[] = [];
  for (const layer of layers) {
    entries.push([
      `blocks.${layer}.hook_resid_pre` as HookName,
      (act) => {
        const m = sinkTokenMask(act, opts.sinkDims, tau);
        pending.set(layer, m.arraySync() as number[][]);
        m.dispose();
      },
    ]);
    entries.push([
      `blocks.${layer}.attn.hook_pattern` as HookName,
      (act) => {
        const A = toPattern4(`blocks.${layer}.attn.hook_pattern`, act);
        const [b, , q, k] = A.shape;
        const fresh = pending.get(layer);
        if (!fresh) throw new HookError(`varHook: blocks.${layer}.attn.hook_pattern`, 'no sink tokens: blocks.' + layer + '.hook_resid_pre did not run before the pattern');
        pending.delete(layer);
        let all: number[][];
        if (q === k) all = fresh;
        else {
          const prev = history.get(layer);
          if (!prev || prev.length !== b) {
            throw new HookError(`varHook: blocks.${layer}.attn.hook_pattern`, expectedFound('a prefill through this hook set before decoding', 'decoding without prefill'));
          }
          all = prev.map((r, bb) => r.concat(fresh[bb]));
        }
        if (all[0].length !== k) {
          throw new HookError(`varHook: blocks.${layer}.attn.hook_pattern`, expectedFound(`${k} sink flags`, all[0].length));
        }
        history.set(layer, all);
        const mask = opts.attentionMask !== undefined ? widthLimited(opts.attentionMask, k) : undefined;
        return tf.tidy(() => {
          const P = positions(A, mask);
          // group / row masks relative to the first real token
          const rel = P.relK.reshape([b, k]);
          // G[b, j] = 1 when key j's position relative to the first real token is in the group
          const lut = new Array<number>(k + 1).fill(0); // lut[k] = 0 for padding (rel < 0)
          for (const j of I) if (j < k) lut[j] = 1;
          const idx = tf.where(tf.less(rel, 0), tf.fill([b, k], k), rel).toInt();
          const G = tf.gather(tf.tensor1d(lut), idx);
          const relQ = P.relQ.reshape([b, q]);
          const rowMask = q === k ? tf.mul(tf.greaterEqual(relQ, groupEnd).toFloat(), P.realQ.reshape([b, q])) : P.realQ.reshape([b, q]);
          const S = tf.mul(tf.tensor2d(all), P.realK);
          return redistributeVARBatched(A, { sinkMask: S, groupMask: G, rowMask, p, summ: opts.summ, rho: opts.rho });
        });
      },
    ]);
  }
  return entries;
}
