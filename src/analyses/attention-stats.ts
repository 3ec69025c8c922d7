/**
 * Attention statistics shared by the sink, hidden-sink, dormant-head and detector analyses:
 * the column mean of an attention matrix (METHODS.md section 1), normalised row / column
 * entropies (section 5), and the helpers that turn token batches and attention masks into
 * plain arrays and read per-layer patterns from a model.
 *
 * Conventions: A is a post-softmax causal attention matrix, rows = queries i, columns = keys j,
 * 0-indexed. Batches are left-padded; an attention mask [batch, pos] (1 = real token, 0 = pad)
 * tells which positions are real. "Relative position" r of a real token = its index minus the
 * index of the first real token of its row (so r = 0 is BOS / the first token).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import type { HookName } from '../hooks/names.js';

/** Token ids [batch, pos] as a tensor or nested arrays. */
export type TokensLike = tf.Tensor | number[][];
/** Attention mask [batch, pos] (1 = real token, 0 = padding) as a tensor or nested arrays. */
export type MaskLike = tf.Tensor | number[][] | number[];

/**
 * The part of HookedTransformer (src/model) the analyses use. The real model satisfies it; tests
 * may also pass a small stand-in. Kept structural so that this folder does not need the model's
 * concrete class.
 */
export interface AnalysisModel {
  cfg: {
    n_layers: number;
    n_heads: number;
    n_kv_heads?: number;
    d_head: number;
    d_model: number;
    d_vocab: number;
  };
  params: Record<string, tf.Tensor>;
  /** Name or path the model was loaded from (recorded in results). */
  name?: string;
  runWithCache(
    tokens: any,
    opts?: { attentionMask?: any; namesFilter?: any },
  ): { logits: tf.Tensor; cache: { get(name: any): tf.Tensor; dispose(): void } };
  runWithHooks(tokens: any, opts: { fwdHooks: Array<[any, any]>; attentionMask?: any }): tf.Tensor;
}

// ---------------------------------------------------------------------------------------------
// tokens and masks
// ---------------------------------------------------------------------------------------------

/** Token ids as number[][] (reads a tensor synchronously). Validates a rectangular batch. */
export function tokenRows(tokens: TokensLike, where = 'tokens'): number[][] {
  let rows: number[][];
  if (tokens instanceof tf.Tensor) {
    if (tokens.rank !== 2) throw new ShapeError(where, expectedFound('a [batch, pos] tensor', `shape [${tokens.shape}]`));
    rows = tokens.arraySync() as number[][];
  } else {
    if (!Array.isArray(tokens) || tokens.length === 0 || !tokens.every((r) => Array.isArray(r))) {
      throw new ShapeError(where, expectedFound('a non-empty number[][] [batch, pos]', typeof tokens));
    }
    rows = tokens;
  }
  if (rows.length === 0) throw new ShapeError(where, expectedFound('at least one row', 'an empty batch'));
  const n = rows[0].length;
  rows.forEach((r, b) => {
    if (r.length !== n) throw new ShapeError(`${where}[${b}]`, expectedFound(`${n} positions`, r.length));
    r.forEach((t, p) => {
      if (!Number.isInteger(t) || t < 0) throw new ValueError(`${where}[${b}][${p}]`, expectedFound('a non-negative integer token id', t));
    });
  });
  return rows;
}

/**
 * Attention mask as number[][] [batch, pos] of 0/1; all ones when absent.
 * A 1-D mask is accepted when batch = 1.
 */
export function maskRows(mask: MaskLike | undefined, batch: number, pos: number, where = 'attentionMask'): number[][] {
  if (mask === undefined || mask === null) return Array.from({ length: batch }, () => new Array(pos).fill(1));
  let rows: number[][];
  if (mask instanceof tf.Tensor) {
    if (mask.rank === 1) rows = [mask.arraySync() as number[]];
    else if (mask.rank === 2) rows = mask.arraySync() as number[][];
    else throw new ShapeError(where, expectedFound('a [batch, pos] mask', `shape [${mask.shape}]`));
  } else if (Array.isArray(mask) && mask.length > 0 && typeof mask[0] === 'number') {
    rows = [mask as number[]];
  } else {
    rows = mask as number[][];
  }
  if (rows.length !== batch) throw new ShapeError(where, expectedFound(`${batch} rows`, rows.length));
  rows.forEach((r, b) => {
    if (!Array.isArray(r) || r.length !== pos) throw new ShapeError(`${where}[${b}]`, expectedFound(`${pos} positions`, Array.isArray(r) ? r.length : typeof r));
    r.forEach((v, p) => {
      if (v !== 0 && v !== 1) throw new ValueError(`${where}[${b}][${p}]`, expectedFound('0 or 1', v));
    });
  });
  return rows.map((r) => r.slice());
}

/**
 * Index of the first real token of each row, checking the rows are left-padded
 * (zeros, then ones to the end) and hold at least one real token.
 */
export function firstRealIndex(mask: number[][], where = 'attentionMask'): number[] {
  return mask.map((r, b) => {
    const first = r.indexOf(1);
    if (first < 0) throw new ValueError(`${where}[${b}]`, 'expected at least one real token (a 1), found only padding');
    for (let p = first; p < r.length; p++) {
      if (r[p] !== 1) throw new ValueError(`${where}[${b}]`, expectedFound('left padding (0s then 1s to the end)', `a 0 at position ${p} after the first real token ${first}`));
    }
    return first;
  });
}

function maskTensor(mask: MaskLike, lead: number | null, n: number, where: string): tf.Tensor {
  if (mask instanceof tf.Tensor) {
    const m = mask.toFloat();
    if (m.rank === 1) {
      if (m.shape[0] !== n) throw new ShapeError(where, expectedFound(`${n} positions`, m.shape[0]));
      return m;
    }
    if (m.rank !== 2 || m.shape[1] !== n || (lead !== null && m.shape[0] !== lead)) {
      throw new ShapeError(where, expectedFound(`[${lead ?? 'batch'}, ${n}]`, `[${m.shape}]`));
    }
    return m;
  }
  if (Array.isArray(mask) && typeof mask[0] === 'number') {
    const r = mask as number[];
    if (r.length !== n) throw new ShapeError(where, expectedFound(`${n} positions`, r.length));
    return tf.tensor1d(r, 'float32');
  }
  const rows = mask as number[][];
  if (lead !== null && rows.length !== lead) throw new ShapeError(where, expectedFound(`${lead} rows`, rows.length));
  return tf.tensor2d(maskRows(rows, rows.length, n, where), undefined, 'float32');
}

// ---------------------------------------------------------------------------------------------
// column mean
// ---------------------------------------------------------------------------------------------

export interface ColumnMeanOptions {
  /**
   * Attention mask. For a pattern [batch, ..., q, k]: [batch, k]. For a [q, k] pattern: [k]
   * (or [[...k]]). Pad columns get 0; pad rows are not counted.
   */
  mask?: MaskLike;
}

/**
 * Column mean of a causal attention matrix (METHODS.md section 1):
 *   m_j = sum_{i >= j, i real} A[i, j] / #{i >= j : i real}   for real j, and 0 for pad j.
 * With left padding this is exactly m_j = sum_{i>=j} A[i,j] / (N - j) on the real sub-matrix
 * (N and j counted from the first real token), reported at the absolute column index.
 * Tensor in -> tensor [..., k] out (batched over all leading dims); number[][] in -> number[] out.
 */
export function columnMean(pattern: tf.Tensor, opts?: ColumnMeanOptions): tf.Tensor;
export function columnMean(pattern: number[][], opts?: ColumnMeanOptions): number[];
export function columnMean(pattern: tf.Tensor | number[][], opts: ColumnMeanOptions = {}): tf.Tensor | number[] {
  if (!(pattern instanceof tf.Tensor)) {
    const t = patternTensor(pattern, 'pattern');
    try {
      const mask = opts.mask;
      const m = columnMean(t, { mask: Array.isArray(mask) && Array.isArray(mask[0]) && (mask as number[][]).length === 1 ? (mask as number[][])[0] : mask });
      const out = m.arraySync() as number[];
      m.dispose();
      return out;
    } finally {
      t.dispose();
    }
  }
  const shape = pattern.shape;
  if (pattern.rank < 2) throw new ShapeError('pattern', expectedFound('rank >= 2 [..., q, k]', `shape [${shape}]`));
  const n = shape[shape.length - 1];
  if (shape[shape.length - 2] !== n) throw new ShapeError('pattern', expectedFound('a square [..., q, k] attention matrix (q = k)', `shape [${shape}]`));
  return tf.tidy(() => {
    const A = pattern.toFloat();
    const tril = tf.linalg.bandPart(tf.ones([n, n]), -1, 0); // [q, k], 1 where i >= j
    if (opts.mask === undefined) {
      const denom = tf.range(n, 0, -1, 'float32'); // N - j
      return A.mul(tril).sum(-2).div(denom);
    }
    const lead = pattern.rank >= 3 ? shape[0] : null;
    const m = maskTensor(opts.mask, lead, n, 'mask');
    let rowM: tf.Tensor;
    let colM: tf.Tensor;
    if (m.rank === 1) {
      rowM = m.reshape([n, 1]);
      colM = m;
    } else {
      if (pattern.rank < 3) throw new ShapeError('mask', expectedFound(`a [${n}] mask for a [q, k] pattern`, `[${m.shape}]`));
      const ones = new Array(pattern.rank - 3).fill(1);
      rowM = m.reshape([shape[0], ...ones, n, 1]);
      colM = m.reshape([shape[0], ...ones, n]);
    }
    const w = tril.mul(rowM); // [(B, 1..,) q, k]
    const numer = A.mul(w).sum(-2);
    const denom = w.sum(-2);
    const safe = tf.where(denom.greater(0), denom, tf.onesLike(denom));
    return numer.div(safe).mul(colM).mul(denom.greater(0).toFloat());
  });
}

/** number[][] -> float tensor [q, k], validating a rectangular matrix of finite numbers. */
export function patternTensor(p: number[][], where: string): tf.Tensor2D {
  if (!Array.isArray(p) || p.length === 0 || !p.every((r) => Array.isArray(r))) {
    throw new ShapeError(where, expectedFound('a non-empty number[][] [q, k]', typeof p));
  }
  const k = p[0].length;
  p.forEach((r, i) => {
    if (r.length !== k) throw new ShapeError(`${where}[${i}]`, expectedFound(`${k} columns`, r.length));
    r.forEach((v, j) => {
      if (!Number.isFinite(v)) throw new ValueError(`${where}[${i}][${j}]`, expectedFound('a finite number', v));
    });
  });
  return tf.tensor2d(p, [p.length, k], 'float32');
}

// ---------------------------------------------------------------------------------------------
// normalised entropies (Guo et al., Active-Dormant-Attention, LLM/src/entropy.py)
// ---------------------------------------------------------------------------------------------

/**
 * Normalised row entropy of a causal pattern on the real sub-matrix:
 *   H_i = -sum_j p_ij log p_ij / log(#visible keys of row i),  p_ij = A[i,j] / sum_j A[i,j],
 * #visible keys = r + 1 for the row at relative position r. The first real row (one visible
 * key) has log(1) = 0 and gets 0, as in the authors' code. Returns [q] per row (pad rows 0).
 */
export function rowEntropies(A: number[][], first = 0): number[] {
  const n = A.length;
  const out = new Array(n).fill(0);
  for (let i = first; i < n; i++) {
    const vis = i - first + 1;
    if (vis < 2) continue;
    let s = 0;
    for (let j = first; j <= i; j++) s += Math.max(A[i][j], 0);
    if (!(s > 0)) continue;
    let h = 0;
    for (let j = first; j <= i; j++) {
      const p = Math.max(A[i][j], 0) / s;
      if (p > 0) h -= p * Math.log(p);
    }
    out[i] = h / Math.log(vis);
  }
  return out;
}

/**
 * Normalised column entropy: for key j, q_i = A[i,j] / sum_{i'>=j} A[i',j] over the real queries
 * i >= j, H_j = -sum q_i log q_i / log(#queries seeing j) with #queries = N - j (real N, j
 * relative). The last column (one query) and columns with no mass get 0, as in the authors' code.
 */
export function columnEntropies(A: number[][], first = 0): number[] {
  const n = A.length;
  const out = new Array(n).fill(0);
  for (let j = first; j < n; j++) {
    const cnt = n - j;
    if (cnt < 2) continue;
    let s = 0;
    for (let i = j; i < n; i++) s += Math.max(A[i][j], 0);
    if (!(s > 0)) continue;
    let h = 0;
    for (let i = j; i < n; i++) {
      const q = Math.max(A[i][j], 0) / s;
      if (q > 0) h -= q * Math.log(q);
    }
    out[j] = h / Math.log(cnt);
  }
  return out;
}

/**
 * Batched head entropies of patterns [batch, head, q, k] on their real tokens (mask [batch, k],
 * left padding; all real when absent): row = mean over the real rows of rowEntropies,
 * col = max over the real columns of columnEntropies. Returns two [batch, head] tensors; the same
 * definitions as the array functions above (which serve as the reference in tests).
 */
export function headEntropies(pattern: tf.Tensor, mask?: MaskLike): { row: tf.Tensor2D; col: tf.Tensor2D } {
  if (pattern.rank !== 4 || pattern.shape[2] !== pattern.shape[3]) throw new ShapeError('pattern', expectedFound('[batch, head, q, k] with q = k', `[${pattern.shape}]`));
  const [B, , N] = pattern.shape as [number, number, number, number];
  const rows = maskRows(mask, B, N, 'mask');
  firstRealIndex(rows, 'mask');
  const out = tf.tidy(() => {
    const m = tf.tensor2d(rows, [B, N], 'float32');
    const tril = tf.linalg.bandPart(tf.ones([N, N]), -1, 0);
    const A = pattern.toFloat().relu().mul(tril).mul(m.reshape([B, 1, N, 1])).mul(m.reshape([B, 1, 1, N]));
    const xlogx = (p: tf.Tensor) => {
      const pos = p.greater(0);
      return tf.where(pos, p.mul(tf.where(pos, p, tf.onesLike(p)).log()), tf.zerosLike(p));
    };
    const safeDiv = (a: tf.Tensor, s: tf.Tensor) => a.div(tf.where(s.greater(0), s, tf.onesLike(s)));
    // rows: #visible keys of a real row = cumulative count of real tokens (r + 1)
    const vis = m.cumsum(1).reshape([B, 1, N]);
    const P = safeDiv(A, A.sum(-1, true));
    const hRow = xlogx(P).sum(-1).neg(); // [B, H, N]
    const rowN = tf.where(vis.greaterEqual(2), safeDiv(hRow, vis.log()), tf.zerosLike(hRow)).mul(m.reshape([B, 1, N]));
    const row = rowN.sum(-1).div(m.sum(1).reshape([B, 1]));
    // columns: #real queries that see key j = real tokens at positions >= j
    const cnt = m.sum(1, true).sub(m.cumsum(1)).add(m).reshape([B, 1, N]);
    const Q = safeDiv(A, A.sum(-2, true));
    const hCol = xlogx(Q).sum(-2).neg(); // [B, H, N]
    const colN = tf.where(cnt.greaterEqual(2), safeDiv(hCol, cnt.log()), tf.zerosLike(hCol)).mul(m.reshape([B, 1, N]));
    return { row: row as tf.Tensor2D, col: colN.max(-1) as tf.Tensor2D };
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// reading patterns from a model
// ---------------------------------------------------------------------------------------------

/** Options shared by the model-level analyses. */
export interface ModelRunOptions {
  attentionMask?: MaskLike;
  /** Prompts per forward pass (default: all at once). */
  batchSize?: number;
}

/** Token rows + mask rows + first real index, validated. */
export interface PreparedBatch {
  tokens: number[][];
  mask: number[][];
  first: number[];
}

export function prepareBatch(tokens: TokensLike, attentionMask?: MaskLike): PreparedBatch {
  const rows = tokenRows(tokens);
  const mask = maskRows(attentionMask, rows.length, rows[0].length);
  const first = firstRealIndex(mask);
  return { tokens: rows, mask, first };
}

/**
 * Run the model on a prepared batch in chunks, caching the given hook names, and hand each
 * chunk's cache to `visit` (with the chunk's row offset). The cache is disposed afterwards.
 */
export function forEachChunk(
  model: AnalysisModel,
  batch: PreparedBatch,
  names: string[],
  batchSize: number | undefined,
  visit: (get: (name: string) => tf.Tensor, rows: { start: number; tokens: number[][]; mask: number[][]; first: number[] }) => void,
): void {
  const total = batch.tokens.length;
  const size = batchSize ?? total;
  if (!Number.isInteger(size) || size < 1) throw new ValueError('batchSize', expectedFound('a positive integer', batchSize));
  const wanted = new Set(names);
  for (let start = 0; start < total; start += size) {
    const toks = batch.tokens.slice(start, start + size);
    const mask = batch.mask.slice(start, start + size);
    const first = batch.first.slice(start, start + size);
    const tokT = tf.tensor2d(toks, undefined, 'int32');
    const maskT = tf.tensor2d(mask, undefined, 'int32');
    let res: ReturnType<AnalysisModel['runWithCache']> | null = null;
    try {
      res = model.runWithCache(tokT, { attentionMask: maskT, namesFilter: (name: string) => wanted.has(name) });
      res.logits.dispose();
      const cache = res.cache;
      visit((name) => cache.get(name as HookName), { start, tokens: toks, mask, first });
    } finally {
      res?.cache.dispose();
      tokT.dispose();
      maskT.dispose();
    }
  }
}

/** Hook names of the attention patterns of all layers. */
export function patternNames(nLayers: number): string[] {
  return Array.from({ length: nLayers }, (_, l) => actName('pattern', l));
}

/** Check that per-layer patterns are [batch, head, q, q] with one shape; return it. */
export function checkPatterns(patterns: tf.Tensor[], where = 'patterns'): [number, number, number] {
  if (!Array.isArray(patterns) || patterns.length === 0) throw new ShapeError(where, expectedFound('one [batch, head, q, k] tensor per layer', 'an empty list'));
  const s0 = patterns[0].shape;
  patterns.forEach((p, l) => {
    const s = p.shape;
    if (p.rank !== 4 || s[2] !== s[3]) throw new ShapeError(`${where}[${l}]`, expectedFound('[batch, head, q, k] with q = k', `[${s}]`));
    if (s[0] !== s0[0] || s[1] !== s0[1] || s[2] !== s0[2]) throw new ShapeError(`${where}[${l}]`, expectedFound(`[${s0}]`, `[${s}]`));
  });
  return [s0[0] as number, s0[1] as number, s0[2] as number];
}

/** Mean of a list; throws ValueError (never NaN) when empty. */
export function meanOf(xs: number[], where: string): number {
  if (xs.length === 0) throw new ValueError(where, 'nothing to average: no prompt has this position');
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

export function grid<T>(rows: number, cols: number, f: (r: number, c: number) => T): T[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => f(r, c)));
}

export function modelName(model: AnalysisModel): string | undefined {
  const n = model.name;
  return typeof n === 'string' && n ? n : undefined;
}
