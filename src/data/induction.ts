/**
 * Repeated random sequences: BOS + a random block of R tokens repeated n times. The standard
 * input for induction / previous-token / duplicate-token detectors, and (n = 4) RazorAttention's
 * echo/induction probe (docs/methods/retrieval.md).
 */
import { ValueError, expectedFound } from '../errors.js';
import { rng } from '../util/random.js';

export interface RepeatedOptions {
  /** Number of sequences (default 1). */
  batch?: number;
  /** Block length R (default 50). */
  blockLength?: number;
  /** Times the block appears (default 2). */
  repeats?: number;
  /** Token ids are drawn uniformly from [low, high) (default [0, dVocab)) minus `exclude`. */
  low?: number;
  high?: number;
  /** Vocabulary size, used for the default range. */
  dVocab?: number;
  exclude?: number[];
  /** BOS id put first (omit for no BOS). */
  bosId?: number;
  /** Draw a block without repeated tokens (needs high - low >= blockLength; default false). */
  distinct?: boolean;
  seed?: number;
}

export interface RepeatedBatch {
  /** [batch][offset + R * repeats] token ids. */
  tokens: number[][];
  blockLength: number;
  repeats: number;
  /** 1 with BOS, else 0: position of the first block token. */
  offset: number;
  /** The blocks drawn, one per sequence. */
  blocks: number[][];
}

/** BOS + a random block of R tokens repeated n times (seeded). */
export function repeatedTokens(options: RepeatedOptions = {}): RepeatedBatch {
  const batch = options.batch ?? 1;
  const R = options.blockLength ?? 50;
  const n = options.repeats ?? 2;
  const low = options.low ?? 0;
  const high = options.high ?? options.dVocab;
  if (high === undefined) throw new ValueError('repeatedTokens', 'give dVocab or high (the token range)');
  for (const [k, v] of [['batch', batch], ['blockLength', R], ['repeats', n]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new ValueError(`repeatedTokens ${k}`, expectedFound('a positive integer', v));
  }
  const excl = new Set(options.exclude ?? []);
  if (options.bosId !== undefined) excl.add(options.bosId);
  const pool: number[] = [];
  for (let t = low; t < high; t++) if (!excl.has(t)) pool.push(t);
  if (pool.length < 2) throw new ValueError('repeatedTokens token range', expectedFound('at least 2 usable token ids', pool.length));
  if (options.distinct && pool.length < R) {
    throw new ValueError('repeatedTokens distinct', expectedFound(`at least ${R} usable ids`, pool.length));
  }
  const r = rng(options.seed ?? 0);
  const bos = options.bosId !== undefined ? [options.bosId] : [];
  const tokens: number[][] = [];
  const blocks: number[][] = [];
  for (let b = 0; b < batch; b++) {
    const block = options.distinct ? r.sample(pool, R) : Array.from({ length: R }, () => r.choice(pool));
    blocks.push(block);
    const seq = [...bos];
    for (let i = 0; i < n; i++) seq.push(...block);
    tokens.push(seq);
  }
  return { tokens, blockLength: R, repeats: n, offset: bos.length, blocks };
}

/** The RazorAttention input: BOS + a random block of R tokens repeated 4 times. */
export function razorAttentionInput(options: Omit<RepeatedOptions, 'repeats'> & { bosId: number }): RepeatedBatch {
  return repeatedTokens({ ...options, repeats: 4 });
}

