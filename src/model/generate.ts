/**
 * Generation with a KV cache: greedy or seeded sampling, hooks applied at every step, stop tokens,
 * a token limit, and an optional StreamingLLM cache policy (keep `startSize` sink tokens and the
 * `recentSize` most recent; evict the middle; with position shift, keys are re-rotated by cache index).
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import { rng } from '../util/random.js';
import { disposeKV, readHost, type KVCache, type Mask, type Tokens } from './hooked.js';
import type { ModelView } from './view.js';

export interface StreamingOptions {
  /** Sink tokens kept at the start of the cache (StreamingLLM default 4). */
  startSize?: number;
  /** Most recent tokens kept (StreamingLLM default 512). */
  recentSize?: number;
  /** Positions by index in the cache (default true, as StreamingLLM). */
  shiftPositions?: boolean;
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** 0 (default) = greedy. */
  temperature?: number;
  topK?: number;
  seed?: number;
  stopTokens?: number[];
  attentionMask?: Mask;
  fwdHooks?: HookSpec[];
  streaming?: StreamingOptions;
  /** Called after each step with the chosen token of each row (before the next forward). */
  onStep?: (info: { step: number; tokens: number[]; finished: boolean[] }) => void;
}

export interface GenerateResult {
  /** New tokens per row (a row stops after its stop token, which is included). */
  tokens: number[][];
  /** Prompt length (columns of the padded prompt). */
  promptLength: number;
}

/**
 * Generate up to maxNewTokens tokens per row. Each step reads back only the chosen ids (greedy) or the
 * sampling probabilities; `fwdHooks` apply to the prompt and to every decoding step.
 */
export async function generate(model: ModelView, prompt: Tokens, opts: GenerateOptions): Promise<GenerateResult> {
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) throw new ValueError('maxNewTokens', expectedFound('a non-negative integer', opts.maxNewTokens));
  const temp = opts.temperature ?? 0;
  if (!(temp >= 0)) throw new ValueError('temperature', expectedFound('a number >= 0', temp));
  const rand = rng(opts.seed ?? 0);
  const stop = new Set(opts.stopTokens ?? []);
  const streaming = opts.streaming ? { startSize: 4, recentSize: 512, shiftPositions: true, ...opts.streaming } : null;
  const fwdHooks = opts.fwdHooks;
  let kv: KVCache | undefined;
  let last: tf.Tensor | null = null;
  try {
    // prompts are left-padded, so every row ends at T - 1: unembed only that position (as HF's logits_to_keep=1;
    // [T, vocab] logits of a long prompt would not fit one WebGPU buffer)
    const [B, T] = promptShape(prompt);
    await readHost(prompt);
    await readHost(opts.attentionMask);
    const first = model.run(prompt, { attentionMask: opts.attentionMask, useCache: true, logitPositions: new Array(B).fill(T - 1), fwdHooks }, null);
    const out: number[][] = Array.from({ length: B }, () => []);
    const finished = new Array(B).fill(false);
    last = tf.tidy(() => tf.squeeze(first.logits, [1]));
    first.logits.dispose();
    kv = first.kv;
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const V = last.shape[1] as number;
      const choice = pickInput(last, temp);
      last.dispose();
      last = null;
      let values: ArrayLike<number>;
      try {
        values = await choice.data();
      } finally {
        choice.dispose();
      }
      const next = pick(values, temp, opts.topK, rand, V);
      for (let b = 0; b < B; b++) {
        if (finished[b]) continue;
        out[b].push(next[b]);
        if (stop.has(next[b])) finished[b] = true;
      }
      opts.onStep?.({ step, tokens: next, finished: [...finished] });
      if (finished.every(Boolean) || step === opts.maxNewTokens - 1) break;
      if (streaming) kv = evict(kv!, streaming.startSize, streaming.recentSize);
      const r = model.run(next.map((t) => [t]), { past: kv, shiftPositions: streaming?.shiftPositions ?? false, fwdHooks }, null);
      disposeKV(kv!);
      kv = r.kv;
      last = tf.tidy(() => tf.squeeze(r.logits, [1]));
      r.logits.dispose();
    }
    return { tokens: out, promptLength: T };
  } finally {
    if (kv) disposeKV(kv);
    if (last) last.dispose();
  }
}

function promptShape(prompt: Tokens): [number, number] {
  if (prompt instanceof tf.Tensor) return prompt.rank === 1 ? [1, prompt.shape[0]] : [prompt.shape[0], prompt.shape[1] as number];
  if (Array.isArray(prompt) && Array.isArray(prompt[0])) return [prompt.length, (prompt[0] as number[]).length];
  return [1, (prompt as number[]).length];
}

/** What a step reads back: the argmax ids (greedy) or the sampling probabilities. */
function pickInput(logits: tf.Tensor, temp: number): tf.Tensor {
  return tf.tidy(() => (temp === 0 ? tf.argMax(logits, -1) : tf.softmax(tf.div(logits, temp), -1)));
}

function pick(values: ArrayLike<number>, temp: number, topK: number | undefined, rand: ReturnType<typeof rng>, V: number): number[] {
  if (temp === 0) return Array.from(values);
  const B = values.length / V;
  const all = Array.from(values);
  return Array.from({ length: B }, (_, b) => {
    const p = all.slice(b * V, (b + 1) * V);
    let probs = p;
    if (topK && topK < p.length) {
      const cut = [...p].sort((a, b2) => b2 - a)[topK - 1];
      probs = p.map((x) => (x >= cut ? x : 0));
    }
    const total = probs.reduce((a, x) => a + x, 0);
    let u = rand.next() * total;
    for (let i = 0; i < probs.length; i++) {
      u -= probs[i];
      if (u <= 0) return i;
    }
    return probs.length - 1;
  });
}

/** Keep the first `start` and last `recent` cached positions (StreamingLLM). */
export function evict(kv: KVCache, start: number, recent: number): KVCache {
  const n = kv.mask.shape[1];
  if (n <= start + recent) return kv;
  const keep = (t: tf.Tensor) => tf.concat([tf.slice(t, t.shape.map(() => 0), sliceShape(t, start)), sliceTail(t, recent)], 1);
  const out: KVCache = tf.tidy(() => ({
    k: kv.k.map((t) => keep(t) as tf.Tensor4D),
    v: kv.v.map((t) => keep(t) as tf.Tensor4D),
    mask: keep(kv.mask) as tf.Tensor2D,
    positions: keep(kv.positions) as tf.Tensor2D,
    seen: kv.seen,
  }) as unknown as tf.TensorContainer) as unknown as KVCache;
  out.seen = kv.seen;
  disposeKV(kv);
  return out;
}

function sliceShape(t: tf.Tensor, n: number): number[] {
  return t.shape.map((d, i) => (i === 1 ? n : d));
}

function sliceTail(t: tf.Tensor, n: number): tf.Tensor {
  const begin = t.shape.map((d, i) => (i === 1 ? d - n : 0));
  return tf.slice(t, begin, sliceShape(t, n));
}

