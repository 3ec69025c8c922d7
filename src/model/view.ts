/**
 * The two types every analysis takes: a model (ModelView, what HookedTransformer offers an analysis)
 * and a Batch of token ids with its attention mask.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookedTransformer } from './hooked.js';

/**
 * The model as analyses see it: HookedTransformer's config, weights, tokenizer, hook names and runs.
 * HookedTransformer is the one implementation; the type names what an analysis may rely on.
 */
export type ModelView = Pick<
  HookedTransformer,
  | 'cfg'
  | 'params'
  | 'halfParams'
  | 'name'
  | 'tokenizer'
  | 'hookNames'
  | 'forward'
  | 'runWithHooks'
  | 'runWithCache'
  | 'run'
  | 'withHooks'
  | 'toTokens'
  | 'encodeBatch'
  | 'toStrTokens'
  | 'bosTokenId'
  | 'weight'
  | 'hasWeight'
  | 'weightFormat'
  | 'invFreq'
  | 'hooks'
  | 'cacheFilter'
>;

/** Token ids [batch, pos] (left-padded) and the attention mask (1 = real token, 0 = padding). */
export interface Batch {
  tokens: tf.Tensor2D | number[][];
  /** Absent = every position is real. */
  attentionMask?: tf.Tensor2D | number[][];
}

/** A batch as plain rows: ids [batch][pos] and mask [batch][pos] (all ones when the batch has none). */
export interface HostBatch {
  ids: number[][];
  mask: number[][];
}

/**
 * Read a Batch into host rows, validating its shape, ids and 0/1 mask (tensors are read asynchronously,
 * so this works for tensors a kernel computed, on every backend).
 */
export async function readBatch(batch: Batch, where = 'batch'): Promise<HostBatch> {
  if (!batch || typeof batch !== 'object' || !('tokens' in batch)) throw new ShapeError(where, expectedFound('a Batch {tokens, attentionMask?}', typeof batch));
  const ids = await rowsOf(batch.tokens, `${where}.tokens`);
  const B = ids.length;
  const T = ids[0].length;
  ids.forEach((r, b) =>
    r.forEach((t, p) => {
      if (!Number.isInteger(t) || t < 0) throw new ValueError(`${where}.tokens[${b}][${p}]`, expectedFound('a non-negative integer token id', t));
    }),
  );
  if (batch.attentionMask === undefined || batch.attentionMask === null) return { ids, mask: ids.map((r) => r.map(() => 1)) };
  const mask = await rowsOf(batch.attentionMask, `${where}.attentionMask`);
  if (mask.length !== B || mask.some((r) => r.length !== T)) {
    throw new ShapeError(`${where}.attentionMask`, expectedFound(`[${B}, ${T}] like the tokens`, `[${mask.length}, ${mask[0]?.length}]`));
  }
  mask.forEach((r, b) =>
    r.forEach((v, p) => {
      if (v !== 0 && v !== 1) throw new ValueError(`${where}.attentionMask[${b}][${p}]`, expectedFound('0 or 1', v));
    }),
  );
  return { ids, mask };
}

async function rowsOf(x: tf.Tensor | number[][], where: string): Promise<number[][]> {
  let rows: number[][];
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2) throw new ShapeError(where, expectedFound('a [batch, pos] tensor', `shape [${x.shape}]`));
    rows = (await x.array()) as number[][];
  } else {
    if (!Array.isArray(x) || !x.every((r) => Array.isArray(r))) throw new ShapeError(where, expectedFound('number[][] [batch, pos]', typeof x));
    rows = x;
  }
  if (rows.length === 0 || rows[0].length === 0) throw new ShapeError(where, expectedFound('at least one row and one position', `[${rows.length}, ${rows[0]?.length ?? 0}]`));
  const T = rows[0].length;
  rows.forEach((r, b) => {
    if (r.length !== T) throw new ShapeError(`${where}[${b}]`, expectedFound(`${T} positions`, r.length));
  });
  return rows;
}

/** Index of the first real token of each row, checking left padding (0s, then 1s to the end). */
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

/** Rows [start, end) of a host batch. */
export function sliceBatch(b: HostBatch, start: number, end: number): HostBatch {
  return { ids: b.ids.slice(start, end), mask: b.mask.slice(start, end) };
}

/**
 * The one chunked runner: run `f` on consecutive row chunks of at most `chunk` rows (bounding memory),
 * in order, and return the per-chunk results.
 */
export async function forEachChunk<R>(b: HostBatch, chunk: number, f: (part: HostBatch, start: number) => Promise<R>): Promise<R[]> {
  if (!Number.isInteger(chunk) || chunk < 1) throw new ValueError('chunk', expectedFound('a positive integer', chunk));
  const out: R[] = [];
  for (let s = 0; s < b.ids.length; s += chunk) out.push(await f(sliceBatch(b, s, Math.min(b.ids.length, s + chunk)), s));
  return out;
}
