/**
 * The shipped induction-handmade model (fixtures/models/induction-handmade): a 2-layer attention-only
 * GPT-2 whose weights are set by hand (previous-token head 0.0, induction head 1.0 by K-composition),
 * its vocabulary, its construction, fresh repeated-token data and its evaluation.
 */
import * as tf from '@tensorflow/tfjs';
import { HookedTransformer, Tokenizer, type ModelView } from '../model/index.js';
import type { HookName } from '../hooks/names.js';
import { repeatedTokens, type RepeatedBatch } from '../data/induction.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { configOf, gpt2Config, mean } from './common.js';

const SYL_C = ['b', 'd', 'f', 'g', 'k', 'l'];
const SYL_V = ['a', 'e', 'i', 'o', 'u'];
/** 32 tokens: <bos>, <unk> and 30 syllables (ba, be, ..., lu). */
export const INDUCTION_VOCAB: readonly string[] = ['<bos>', '<unk>', ...SYL_C.flatMap((c) => SYL_V.map((v) => c + v))];

/**
 * Geometry of the hand-made model (d_model 80): token block [0, 32) holds e_t = onehot(t) - 1/32;
 * previous-token block [32, 64) is written by head 0.0; position block [64, 80) holds, for each of
 * 4 frequencies w_f = 2 pi k_f / 64, (cos, sin, -cos, -sin)(w_f i) / sqrt(8). Every vector sums to
 * zero, so LayerNorm is a pure rescaling.
 */
export const INDUCTION_DESIGN = {
  vocab: 32,
  dModel: 80,
  nCtx: 64,
  nHeads: 2,
  /** k_f of the position frequencies; max_{d != 0} sum_f cos(2 pi k_f d / 64) = 1.775, a gap of 2.225 below the peak 4. */
  freqs: [2, 3, 11, 23],
  /** Attention-logit scale of the prev-token head (per unit of sum cos) and the induction head (per unit match). */
  prevSharpness: 12,
  inductionSharpness: 25,
  /** Gain of the induction head's output onto the token block (the predicted token). */
  outputGain: 4,
  prevHead: [0, 0] as [number, number],
  inductionHead: [1, 0] as [number, number],
};

export function inductionConfig(): Record<string, unknown> {
  const D = INDUCTION_DESIGN;
  return gpt2Config({ vocab: D.vocab, nCtx: D.nCtx, dModel: D.dModel, layers: 2, heads: D.nHeads, dMlp: 4, act: 'relu', tied: true, bos: 0 });
}

export function inductionTokenizer(): Tokenizer {
  return new Tokenizer(
    wordLevelTokenizerJson([...INDUCTION_VOCAB], { specialTokens: ['<bos>'], unkToken: '<unk>' }),
    tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: INDUCTION_DESIGN.nCtx }),
    'induction tokenizer.json',
  );
}

/** Build the hand-made induction model (deterministic; MLPs and heads 0.1 / 1.1 are zero). */
export function buildInductionHandmade(): HookedTransformer {
  const D = INDUCTION_DESIGN;
  const V = D.vocab;
  const d = D.dModel;
  const H = D.nHeads;
  const dh = d / H;
  const F = D.freqs.length;
  const TOK = 0;
  const PREV = V;
  const POS = 2 * V;
  const eps = 1e-5;
  const zeros2 = (r: number, c: number) => Array.from({ length: r }, () => new Array<number>(c).fill(0));
  const WE = zeros2(V, d);
  for (let t = 0; t < V; t++) for (let k = 0; k < V; k++) WE[t][TOK + k] = (k === t ? 1 : 0) - 1 / V;
  const pb = 1 / Math.sqrt(2 * F);
  const Wpos = zeros2(D.nCtx, d);
  for (let i = 0; i < D.nCtx; i++) {
    D.freqs.forEach((k, f) => {
      const w = (2 * Math.PI * k) / D.nCtx;
      const o = POS + 4 * f;
      Wpos[i][o] = pb * Math.cos(w * i);
      Wpos[i][o + 1] = pb * Math.sin(w * i);
      Wpos[i][o + 2] = -pb * Math.cos(w * i);
      Wpos[i][o + 3] = -pb * Math.sin(w * i);
    });
  }
  const eNorm2 = 1 - 1 / V;
  const pNorm2 = 1; // 4F entries: 2F * pb^2 * (cos^2 + sin^2) = 1
  // LayerNorm of a zero-sum x is x / sqrt(|x|^2 / d + eps).
  const sigma0 = Math.sqrt((eNorm2 + pNorm2) / d + eps);
  const sigma1 = Math.sqrt((2 * eNorm2 + pNorm2) / d + eps);
  const WQ = [0, 1].map(() => Array.from({ length: H }, () => zeros2(d, dh)));
  const WK = [0, 1].map(() => Array.from({ length: H }, () => zeros2(d, dh)));
  const WV = [0, 1].map(() => Array.from({ length: H }, () => zeros2(d, dh)));
  const WO = [0, 1].map(() => Array.from({ length: H }, () => zeros2(dh, d)));
  // Head 0.0, previous token: q_i = R(-w) p_i, k_j = p_j -> score = S0 * sum_f cos(w_f (i - 1 - j)).
  const g0 = Math.sqrt((D.prevSharpness * Math.sqrt(dh)) / (pb / sigma0) ** 2);
  D.freqs.forEach((k, f) => {
    const w = (2 * Math.PI * k) / D.nCtx;
    const c = POS + 4 * f;
    const s = c + 1;
    WQ[0][0][c][2 * f] = g0 * Math.cos(w);
    WQ[0][0][s][2 * f] = g0 * Math.sin(w);
    WQ[0][0][c][2 * f + 1] = -g0 * Math.sin(w);
    WQ[0][0][s][2 * f + 1] = g0 * Math.cos(w);
    WK[0][0][c][2 * f] = g0;
    WK[0][0][s][2 * f + 1] = g0;
  });
  // OV of head 0.0: token block -> previous-token block, undoing the LN scale.
  for (let k = 0; k < V; k++) {
    WV[0][0][TOK + k][k] = sigma0;
    WO[0][0][k][PREV + k] = 1;
  }
  // Head 1.0, induction: q = current token, k = previous-token block; score = S1 (e_cur . e_prev_j).
  const g1 = Math.sqrt(D.inductionSharpness * Math.sqrt(dh)) * sigma1;
  for (let k = 0; k < V; k++) {
    WQ[1][0][TOK + k][k] = g1;
    WK[1][0][PREV + k][k] = g1;
    WV[1][0][TOK + k][k] = sigma1;
    WO[1][0][k][TOK + k] = D.outputGain;
  }
  const p: Record<string, tf.Tensor> = {};
  p['embed.W_E'] = tf.tensor2d(WE);
  p['pos_embed.W_pos'] = tf.tensor2d(Wpos);
  for (let l = 0; l < 2; l++) {
    const b = `blocks.${l}.`;
    p[b + 'ln1.w'] = tf.ones([d]);
    p[b + 'ln1.b'] = tf.zeros([d]);
    p[b + 'ln2.w'] = tf.ones([d]);
    p[b + 'ln2.b'] = tf.zeros([d]);
    p[b + 'attn.W_Q'] = tf.tensor3d(WQ[l]);
    p[b + 'attn.W_K'] = tf.tensor3d(WK[l]);
    p[b + 'attn.W_V'] = tf.tensor3d(WV[l]);
    p[b + 'attn.W_O'] = tf.tensor3d(WO[l]);
    p[b + 'attn.b_Q'] = tf.zeros([H, dh]);
    p[b + 'attn.b_K'] = tf.zeros([H, dh]);
    p[b + 'attn.b_V'] = tf.zeros([H, dh]);
    p[b + 'attn.b_O'] = tf.zeros([d]);
    p[b + 'mlp.W_in'] = tf.zeros([d, 4]);
    p[b + 'mlp.b_in'] = tf.zeros([4]);
    p[b + 'mlp.W_out'] = tf.zeros([4, d]);
    p[b + 'mlp.b_out'] = tf.zeros([d]);
  }
  p['ln_final.w'] = tf.ones([d]);
  p['ln_final.b'] = tf.zeros([d]);
  p['unembed.W_U'] = tf.transpose(p['embed.W_E']);
  p['unembed.b_U'] = tf.zeros([V]);
  return new HookedTransformer(configOf(inductionConfig()), p, inductionTokenizer(), 'induction-handmade');
}

/**
 * Fresh repeated random sequences for the induction model: BOS + a block of distinct syllables,
 * twice (a block with repeated tokens would make induction ambiguous).
 */
export function inductionEvalBatch(seed = 2024, batch = 16, blockLength = 20): RepeatedBatch {
  return repeatedTokens({ batch, blockLength, repeats: 2, low: 2, high: INDUCTION_DESIGN.vocab, bosId: 0, seed, distinct: true });
}

export interface InductionEval {
  /** Top-1 accuracy predicting the second repeat where induction applies (its tokens 2..R). */
  accuracy: number;
  /** Mean attention of the previous-token head from each query i >= 1 to i - 1. */
  prevTokenAttention: number;
  /** Mean attention of the induction head from second-repeat queries to the token after the earlier occurrence. */
  inductionAttention: number;
}

/** task.json of the induction-handmade model. */
export function inductionTaskJson(): Record<string, unknown> {
  return { task: 'induction', design: INDUCTION_DESIGN, heads: ['0.0', '1.0'], evalSeed: 2024, regenerate: 'inductionEvalBatch(seed, batch, blockLength) in src/zoo/induction-handmade.ts' };
}

/** The pattern [B, q, k] of head (l, h), read asynchronously from a cache. */
async function headPattern(cache: { get(name: string): tf.Tensor }, l: number, h: number): Promise<number[][][]> {
  const t = tf.tidy(() => tf.squeeze(tf.slice(cache.get(`blocks.${l}.attn.hook_pattern`), [0, h, 0, 0], [-1, 1, -1, -1]), [1]));
  try {
    return (await t.array()) as number[][][];
  } finally {
    t.dispose();
  }
}

/** Accuracy on the repeated half and the attention of the two circuit heads ([layer, head]). */
export async function inductionEvaluate(
  model: ModelView,
  data: RepeatedBatch,
  heads: { prev: [number, number]; induction: [number, number] } = { prev: INDUCTION_DESIGN.prevHead, induction: INDUCTION_DESIGN.inductionHead },
): Promise<InductionEval> {
  const R = data.blockLength;
  const off = data.offset;
  const [pl, ph] = heads.prev;
  const [il, ih] = heads.induction;
  const names = [...new Set([pl, il])].map((l) => `blocks.${l}.attn.hook_pattern` as HookName);
  const { logits, cache } = await model.runWithCache(data.tokens, { namesFilter: names });
  let pred: number[][];
  let P0: number[][][];
  let P1: number[][][];
  try {
    const predT = tf.tidy(() => tf.argMax(logits, -1));
    [pred, P0, P1] = await Promise.all([
      (predT.array() as Promise<number[][]>).finally(() => predT.dispose()),
      headPattern(cache, pl, ph),
      headPattern(cache, il, ih),
    ]);
  } finally {
    logits.dispose();
    cache.dispose();
  }
  let ok = 0;
  let n = 0;
  const prevA: number[] = [];
  const indA: number[] = [];
  data.tokens.forEach((x, b) => {
    for (let i = 1; i < x.length; i++) prevA.push(P0[b][i][i - 1]);
    // queries i in the second repeat whose next token is also in it: i = off + R + k, k = 0..R-2
    for (let k = 0; k < R - 1; k++) {
      const i = off + R + k;
      ok += pred[b][i] === x[i + 1] ? 1 : 0;
      n++;
      indA.push(P1[b][i][i - R + 1]);
    }
  });
  return { accuracy: ok / n, prevTokenAttention: mean(prevA), inductionAttention: mean(indA) };
}
