/**
 * Attention statistics shared by the sink, hidden-sink, dormant-head and detector analyses:
 * the column mean of an attention matrix, normalised row / column entropies, and the one runner
 * that feeds a model's cached activations to them chunk by chunk.
 *
 * Conventions: A is a post-softmax causal attention matrix, rows = queries i, columns = keys j,
 * 0-indexed. Batches are left-padded; the attention mask [batch, pos] (1 = real token, 0 = padding)
 * tells which positions are real. "Relative position" r of a real token = its index minus the index
 * of the first real token of its row (r = 0 is BOS / the first token).
 *
 * Everything that reads a computed tensor is async (`await t.array()`); the host-array functions
 * (columnMean on number[][], rowEntropies, columnEntropies) stay synchronous.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName, type BlockHookName, type HookName } from '../hooks/names.js';
import type { ActivationCache } from '../model/cache.js';
import { firstRealIndex, forEachChunk, readBatch, type Batch, type HostBatch, type ModelView } from '../model/view.js';
import { toMatrix } from '../util/grid.js';

/** A [batch, pos] 0/1 attention mask as host rows or a tensor (read asynchronously). */
export type MaskInput = number[][] | tf.Tensor;

// ---------------------------------------------------------------------------------------------
// reading tensors back
// ---------------------------------------------------------------------------------------------

/** Read a computed tensor to nested arrays and dispose it (works on every backend). */
export async function readOut<T>(t: tf.Tensor): Promise<T> {
  try {
    return (await t.array()) as T;
  } finally {
    t.dispose();
  }
}

/** Read several computed tensors at once (Promise.all) and dispose them. */
export function readAll<T extends unknown[]>(ts: tf.Tensor[]): Promise<T> {
  return Promise.all(ts.map((t) => readOut(t))) as Promise<T>;
}

/**
 * A [batch, pos] mask as host rows of 0/1, validated against the expected shape; all ones when absent.
 * A tensor is read asynchronously.
 */
export async function hostMask(mask: MaskInput | undefined, batch: number, pos: number, where = 'attentionMask'): Promise<number[][]> {
  if (mask === undefined || mask === null) return Array.from({ length: batch }, () => new Array<number>(pos).fill(1));
  const rows = mask instanceof tf.Tensor ? ((await mask.array()) as number[][]) : mask;
  if (!Array.isArray(rows) || rows.length !== batch) throw new ShapeError(where, expectedFound(`${batch} rows [batch, pos]`, Array.isArray(rows) ? rows.length : typeof rows));
  rows.forEach((r, b) => {
    if (!Array.isArray(r) || r.length !== pos) throw new ShapeError(`${where}[${b}]`, expectedFound(`${pos} positions`, Array.isArray(r) ? r.length : typeof r));
    r.forEach((v, p) => {
      if (v !== 0 && v !== 1) throw new ValueError(`${where}[${b}][${p}]`, expectedFound('0 or 1', v));
    });
  });
  return rows.map((r) => r.slice());
}

// ---------------------------------------------------------------------------------------------
// column mean
// ---------------------------------------------------------------------------------------------

export interface ColumnMeanOptions {
  /**
   * Attention mask. For a tensor pattern [batch, ..., q, k]: [batch, k] (host rows or a tensor) or,
   * for a [q, k] tensor, [k]. For a number[][] pattern: [k]. Pad columns get 0; pad rows are not counted.
   */
  attentionMask?: number[] | number[][] | tf.Tensor;
}

/**
 * Column mean of a causal attention matrix:
 *   m_j = sum_{i >= j, i real} A[i, j] / #{i >= j : i real}   for real j, and 0 for pad j.
 * Without padding this is Gu et al.'s importance score, (A / arange(N, 0, -1)).sum(-2)
 * (sail-sg/Attention-Sink, eval_sink_open_source.py lines 46-47), and ACT's column statistic
 * (GATECH-EIC/ACT, models/llama_modelling_aug.py line 27). With left padding it is the same on the
 * real sub-matrix, reported at the absolute column index.
 * Tensor in -> tensor [..., k] out (batched over all leading dims, synchronous, no readback);
 * number[][] in -> number[] out (host arithmetic).
 */
export function columnMean(pattern: tf.Tensor, opts?: ColumnMeanOptions): tf.Tensor;
export function columnMean(pattern: number[][], opts?: ColumnMeanOptions): number[];
export function columnMean(pattern: tf.Tensor | number[][], opts: ColumnMeanOptions = {}): tf.Tensor | number[] {
  if (!(pattern instanceof tf.Tensor)) return columnMeanHost(pattern, opts.attentionMask);
  const shape = pattern.shape;
  if (pattern.rank < 2) throw new ShapeError('pattern', expectedFound('rank >= 2 [..., q, k]', `shape [${shape}]`));
  const n = shape[shape.length - 1];
  if (shape[shape.length - 2] !== n) throw new ShapeError('pattern', expectedFound('a square [..., q, k] attention matrix (q = k)', `shape [${shape}]`));
  return tf.tidy(() => {
    const A = pattern.toFloat();
    const tril = tf.linalg.bandPart(tf.ones([n, n]), -1, 0); // [q, k], 1 where i >= j
    if (opts.attentionMask === undefined) return A.mul(tril).sum(-2).div(tf.range(n, 0, -1, 'float32'));
    const m = maskTensor(opts.attentionMask, pattern.rank >= 3 ? shape[0] : null, n);
    let rowM: tf.Tensor;
    let colM: tf.Tensor;
    if (m.rank === 1) {
      rowM = m.reshape([n, 1]);
      colM = m;
    } else {
      if (pattern.rank < 3) throw new ShapeError('attentionMask', expectedFound(`a [${n}] mask for a [q, k] pattern`, `[${m.shape}]`));
      const ones = new Array(pattern.rank - 3).fill(1);
      rowM = m.reshape([shape[0], ...ones, n, 1]);
      colM = m.reshape([shape[0], ...ones, n]);
    }
    const w = tril.mul(rowM);
    const denom = w.sum(-2);
    const safe = tf.where(denom.greater(0), denom, tf.onesLike(denom));
    return A.mul(w).sum(-2).div(safe).mul(colM).mul(denom.greater(0).toFloat());
  });
}

/** columnMean on a host matrix (mask [k], 1 = real). */
function columnMeanHost(p: number[][], mask: ColumnMeanOptions['attentionMask']): number[] {
  const A = toMatrix(p, 'pattern');
  const n = A.length;
  if (A[0].length !== n) throw new ShapeError('pattern', expectedFound('a square [q, k] matrix', `[${n}, ${A[0].length}]`));
  let m: number[] = new Array(n).fill(1);
  if (mask !== undefined) {
    if (mask instanceof tf.Tensor) throw new ValueError('attentionMask', expectedFound('host numbers [k] for a number[][] pattern', 'a tensor'));
    m = (Array.isArray(mask[0]) && mask.length === 1 ? mask[0] : mask) as number[];
    if (m.length !== n || m.some((v) => v !== 0 && v !== 1)) throw new ShapeError('attentionMask', expectedFound(`${n} entries of 0/1`, `[${m}]`));
  }
  return A[0].map((_, j) => {
    if (!m[j]) return 0;
    let s = 0;
    let c = 0;
    for (let i = j; i < n; i++) {
      if (!m[i]) continue;
      s += A[i][j];
      c++;
    }
    return c > 0 ? s / c : 0;
  });
}

function maskTensor(mask: NonNullable<ColumnMeanOptions['attentionMask']>, lead: number | null, n: number): tf.Tensor {
  if (mask instanceof tf.Tensor) {
    const m = mask.toFloat();
    const ok = m.rank === 1 ? m.shape[0] === n : m.rank === 2 && m.shape[1] === n && (lead === null || m.shape[0] === lead);
    if (!ok) throw new ShapeError('attentionMask', expectedFound(m.rank === 1 ? `${n} positions` : `[${lead ?? 'batch'}, ${n}]`, `[${m.shape}]`));
    return m;
  }
  if (typeof mask[0] === 'number') {
    const r = mask as number[];
    if (r.length !== n) throw new ShapeError('attentionMask', expectedFound(`${n} positions`, r.length));
    return tf.tensor1d(r, 'float32');
  }
  const rows = mask as number[][];
  if ((lead !== null && rows.length !== lead) || rows.some((r) => r.length !== n)) throw new ShapeError('attentionMask', expectedFound(`[${lead ?? 'batch'}, ${n}]`, `[${rows.length}, ${rows[0]?.length}]`));
  return tf.tensor2d(rows, undefined, 'float32');
}

// ---------------------------------------------------------------------------------------------
// normalised entropies (Guo et al., Active-Dormant-Attention, LLM/src/entropy.py)
// ---------------------------------------------------------------------------------------------

/**
 * Normalised row entropy of a causal pattern on its real sub-matrix (rows from `first`):
 *   H_i = -sum_j p_ij log p_ij / log(#visible keys of row i),  p_ij = A[i,j] / sum_j A[i,j],
 * with #visible keys = r + 1 at relative position r (entropy.py lines 4-22,
 * row_tokenwise_normalized_entropy: only positive entries count, log(1) = 0 gives 0).
 */
export function rowEntropies(A: number[][], first = 0): number[] {
  const n = A.length;
  const out = new Array(n).fill(0);
  for (let i = first + 1; i < n; i++) out[i] = normEntropy(A[i].slice(first, i + 1), i - first + 1);
  return out;
}

/**
 * Normalised column entropy: for key j, q_i = A[i,j] / sum_{i' >= j} A[i',j] over the real queries,
 * H_j = -sum q_i log q_i / log(N - j) (N and j counted from `first`; entropy.py lines 29-48,
 * column_tokenwise_normalized_entropy). The last column (log 1 = 0) and columns without mass get 0.
 */
export function columnEntropies(A: number[][], first = 0): number[] {
  const n = A.length;
  const out = new Array(n).fill(0);
  for (let j = first; j < n - 1; j++) out[j] = normEntropy(A.slice(j).map((r) => r[j]), n - j);
  return out;
}

/** Entropy of the positive part of xs (normalised to sum 1) over log(count); 0 when count < 2 or no mass. */
function normEntropy(xs: number[], count: number): number {
  if (count < 2) return 0;
  const s = xs.reduce((a, x) => a + (x > 0 ? x : 0), 0);
  if (!(s > 0)) return 0;
  let h = 0;
  for (const x of xs) if (x > 0) h -= (x / s) * Math.log(x / s);
  return h / Math.log(count);
}

/**
 * Batched head entropies of patterns [batch, head, q, k] on their real tokens (host mask [batch, k],
 * left padding; all real when absent): row = mean over the real rows of rowEntropies
 * (row_headwise_average_normalized_entropy), col = max over the real columns of columnEntropies
 * (column_headwise_maximum_normalized_entropy). Returns two [batch, head] tensors (no readback).
 */
export function headEntropies(pattern: tf.Tensor, attentionMask?: number[][]): { row: tf.Tensor2D; col: tf.Tensor2D } {
  if (pattern.rank !== 4 || pattern.shape[2] !== pattern.shape[3]) throw new ShapeError('pattern', expectedFound('[batch, head, q, k] with q = k', `[${pattern.shape}]`));
  const [B, , N] = pattern.shape as [number, number, number, number];
  const rows = attentionMask ?? Array.from({ length: B }, () => new Array<number>(N).fill(1));
  if (rows.length !== B || rows.some((r) => r.length !== N)) throw new ShapeError('attentionMask', expectedFound(`[${B}, ${N}]`, `[${rows.length}, ${rows[0]?.length}]`));
  firstRealIndex(rows, 'attentionMask');
  return tf.tidy(() => {
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
    const hRow = xlogx(safeDiv(A, A.sum(-1, true))).sum(-1).neg(); // [B, H, N]
    const rowN = tf.where(vis.greaterEqual(2), safeDiv(hRow, vis.log()), tf.zerosLike(hRow)).mul(m.reshape([B, 1, N]));
    const row = rowN.sum(-1).div(m.sum(1).reshape([B, 1]));
    // columns: #real queries that see key j = real tokens at positions >= j
    const cnt = m.sum(1, true).sub(m.cumsum(1)).add(m).reshape([B, 1, N]);
    const hCol = xlogx(safeDiv(A, A.sum(-2, true))).sum(-2).neg(); // [B, H, N]
    const colN = tf.where(cnt.greaterEqual(2), safeDiv(hCol, cnt.log()), tf.zerosLike(hCol)).mul(m.reshape([B, 1, N]));
    return { row: row as tf.Tensor2D, col: colN.max(-1) as tf.Tensor2D };
  });
}

// ---------------------------------------------------------------------------------------------
// running a model on a batch
// ---------------------------------------------------------------------------------------------

/** Options of the model-level analyses. */
export interface RunOptions {
  /** Prompts per forward pass (default: all at once). */
  batchSize?: number;
}

/** One chunk of a batch with its cached activations (owned by the runner: do not dispose them). */
export interface Chunk extends HostBatch {
  /** Index of the first real token of each row. */
  first: number[];
  /** Row offset of the chunk in the batch. */
  start: number;
  cache: ActivationCache;
}

/** The batch as read by runChunks: host rows and the first real index of each. */
export interface ReadBatch extends HostBatch {
  first: number[];
}

/**
 * Run the model on a Batch in chunks of `opts.batchSize` prompts, caching only `names`, and hand
 * each chunk's cache to `visit` (awaited in order); the cache and logits are freed afterwards.
 */
export async function runChunks<R>(
  model: ModelView,
  batch: Batch,
  names: HookName[],
  opts: RunOptions,
  visit: (c: Chunk) => Promise<R>,
): Promise<{ batch: ReadBatch; results: R[] }> {
  const host = await readBatch(batch);
  const first = firstRealIndex(host.mask);
  const results = await forEachChunk(host, opts.batchSize ?? host.ids.length, async (part, start) => {
    const { logits, cache } = await model.runWithCache(part.ids, { attentionMask: part.mask, namesFilter: names });
    logits.dispose();
    try {
      return await visit({ ...part, first: first.slice(start, start + part.ids.length), start, cache });
    } finally {
      cache.dispose();
    }
  });
  return { batch: { ...host, first }, results };
}

/** Hook names of the attention patterns of all layers. */
export function patternNames(nLayers: number): BlockHookName[] {
  return Array.from({ length: nLayers }, (_, l) => actName('pattern', l));
}

/** Check that per-layer patterns are [batch, head, q, q] with one shape; return [batch, head, q]. */
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

/** A rows x cols grid filled by f. */
export function grid<T>(rows: number, cols: number, f: (r: number, c: number) => T): T[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: cols }, (_, c) => f(r, c)));
}

/** The model's name for results (undefined when it has none). */
export function modelName(model: Pick<ModelView, 'name'>): string | undefined {
  return typeof model.name === 'string' && model.name ? model.name : undefined;
}

/** Check a threshold-like number lies in [lo, hi) (or (lo, hi) with openLo). */
export function checkRange(name: string, v: number, lo: number, hi: number, openLo = false): void {
  if (!Number.isFinite(v) || (openLo ? v <= lo : v < lo) || v >= hi) throw new ValueError(name, expectedFound(`a number in ${openLo ? '(' : '['}${lo}, ${hi})`, v));
}
