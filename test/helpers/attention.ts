// Shared inputs of the attention-statistics tests: three prompts left-padded into one batch, cached
// activations read to host arrays, and Bigram-Backcopy batches for the shipped bb model.
import { readFileSync } from 'node:fs';
import type { HookedTransformer } from '../../src/model/index.js';
import { makeBigramBackcopy, sampleBigramBackcopy } from '../../src/data/bigram-backcopy.js';

/** Three prompts of lengths 10, 6 and 7, left-padded to 10 with their mask and first real index. */
export function paddedPrompts(): { prompts: number[][]; padded: number[][]; mask: number[][]; first: number[] } {
  const prompts = [
    [0, 11, 12, 13, 14, 11, 12, 13, 14, 20],
    [0, 40, 41, 42, 43, 44],
    [0, 7, 8, 9, 7, 8, 9],
  ];
  const N = 10;
  return {
    prompts,
    padded: prompts.map((p) => [...new Array(N - p.length).fill(0), ...p]),
    mask: prompts.map((p) => [...new Array(N - p.length).fill(0), ...new Array(p.length).fill(1)]),
    first: prompts.map((p) => N - p.length),
  };
}

/** The activations a run caches, read to host arrays (asynchronously). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function cachedArrays(model: HookedTransformer, tokens: number[][], names: string[], attentionMask?: number[][]): Promise<Record<string, any>> {
  const { logits, cache } = await model.runWithCache(tokens, { namesFilter: names, attentionMask });
  logits.dispose();
  try {
    const out: Record<string, unknown> = {};
    for (const n of names) out[n] = await cache.get(n).array();
    return out;
  } finally {
    cache.dispose();
  }
}

/** A seeded Bigram-Backcopy batch of the shipped bb model's task, with its trigger positions (0/1). */
export function bbData(n: number, seed: number): { tokens: number[][]; triggers: number[][] } {
  const spec = JSON.parse(readFileSync('fixtures/models/bb/task.json', 'utf8'));
  const tokens = sampleBigramBackcopy(makeBigramBackcopy(spec.options), n, seed).tokens;
  return { tokens, triggers: tokens.map((row) => row.map((t) => (spec.triggers.includes(t) ? 1 : 0))) };
}
