/**
 * The shipped recall model (fixtures/models/recall): a 4-layer LLaMA with 16 query heads per layer
 * (64 heads, grouped-query attention with 4 key/value heads) trained to retrieve the needle's value
 * after the question that names its key (src/data/needle.ts), then to emit the newline stop token; its
 * word-level vocabulary and needle format, the recipe, an accuracy grid over context lengths and needle
 * depths, and the model card's headline numbers (NIAH grid, retrieval heads, masking). The format and
 * the training rows support distractor key/value pairs (RECALL_FORMAT.distractors); the shipped model
 * is trained and evaluated without them. RECALL_BINDING is the recipe meant to make a 64-head model
 * bind the value to its key among distractors (not yet achieved in tflens: docs/zoo.md).
 */
import * as tf from '@tensorflow/tfjs';
import { randomModel, Tokenizer, type ModelView } from '../model/index.js';
import { rng, deriveSeed } from '../util/random.js';
import { makeNeedle, type NeedleExample } from '../data/needle.js';
import { repeatedTokens } from '../data/induction.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { train, type Schedule, type TrainResult } from './train.js';
import { maskingExperiment, niahGrid, syntheticSamples } from '../analyses/niah.js';
import { newlineTokens, randomControlHeads, headMaskHooks, retrievalHeads } from '../analyses/retrieval.js';
import { Trainable, llamaConfig, starcoder2Config, mean, predictAt, realParam, recipeOptions, snapshotEval, trainingLogits, weightedNll, type TrainRecipeOptions, type TrainedZooModel } from './common.js';

const RECALL_SPECIAL = ['<bos>', '<unk>', '.', 'key', 'value', 'is', 'what', '<0x0A>'];
const RECALL_FILLER = Array.from({ length: 40 }, (_, i) => `w${i}`);
const RECALL_KEYS = Array.from({ length: 16 }, (_, i) => `k${i}`);
const RECALL_VALUES = Array.from({ length: 16 }, (_, i) => `v${i}`);
export const RECALL_VOCAB: readonly string[] = [...RECALL_SPECIAL, ...RECALL_FILLER, ...RECALL_KEYS, ...RECALL_VALUES];
const rid = (w: string) => RECALL_VOCAB.indexOf(w);

/**
 * The needle format of the recall model (ids into RECALL_VOCAB): context sentences of filler words
 * ending in "."; the needle sentence (key marker, K, separator, value marker, V, "."; here "key is K V .")
 * at a depth and `distractors` more sentences of the same form with other keys and values at random
 * sentence boundaries; the question (question marker, K, value marker; here "what key is K"); the answer
 * is V, and the model then
 * emits the newline token "<0x0A>" (the stop of the retrieval-head protocol). Keys and values come
 * from their own token sets (k0..k15, v0..v15), filler from w0..w39. recallFormatText() spells it.
 */
export const RECALL_FORMAT = {
  bosId: rid('<bos>'),
  periodToken: rid('.'),
  keyMarker: [rid('key'), rid('is')],
  /** Between the separator and V in a needle, and after K in the question. */
  valueMarker: [rid('value'), rid('is')] as number[],
  /** Between K and the value marker in a needle. */
  separator: [rid('.')] as number[],
  questionMarker: [rid('what'), rid('key'), rid('is')],
  fillerTokens: RECALL_FILLER.map(rid),
  keyTokens: RECALL_KEYS.map(rid),
  valueTokens: RECALL_VALUES.map(rid),
  sentenceLength: [4, 12] as [number, number],
  /**
   * Distractor key/value pairs in every evaluation prompt (makeNeedle's `distractors`): with 3, a model
   * that picks any value present scores 1/4, so accuracy measures binding the value to its key. 0 in the
   * shipped model, which was trained without them (see RECALL_BINDING and docs/zoo.md).
   */
  distractors: 0,
  /** The token after the answer (the newline, where NIAH decoding stops). */
  stopToken: rid('<0x0A>'),
  /** Training lengths are drawn uniformly from this range (inclusive). */
  trainLengths: [24, 96] as [number, number],
  /**
   * Questions per pair in a training row: after the prompt and its answer, every pair of the context
   * (needle and distractors) is asked about this many times in all, in seeded order (1: each distractor
   * once, as the shipped model was trained).
   */
  trainRepeats: 1,
  /** Training distractor counts are drawn uniformly from this range (inclusive); see `distractors`. */
  trainDistractors: [0, 0] as [number, number],
  /**
   * Share of each training batch made of induction rows instead (recallTrainBatch): BOS, a random
   * filler sequence and the same sequence again, the loss on the second copy. A stand-in for the
   * repeated text of pretraining, where induction heads form; the needle's answer is an induction
   * step ("K V" in the needle, the question ends in K), and without these rows the model stays longer
   * on the plateau where it answers any value present (docs/zoo.md).
   */
  trainInduction: 0,
  /** The evaluation grid of the model card. */
  evalLengths: [48, 72, 96],
  /** The grid of the accuracy evaluated during training. */
  trainEvalLengths: [56, 96],
  trainEvalDepths: [0.1, 0.5, 0.9],
  evalDepths: [0, 0.25, 0.5, 0.75, 1],
};

/** The needle sentence and the question of RECALL_FORMAT as text, with K and V for the key and the value. */
export function recallFormatText(): { needle: string; question: string } {
  const f = RECALL_FORMAT;
  const w = (ids: number[]) => ids.map((i) => RECALL_VOCAB[i]);
  const dot = RECALL_VOCAB[f.periodToken];
  return {
    needle: [...w(f.keyMarker), 'K', ...w(f.separator), ...w(f.valueMarker), 'V', dot].join(' '),
    question: [...w(f.questionMarker), 'K', ...w(f.valueMarker)].join(' '),
  };
}

/** The architecture: 4 layers x 16 query heads (GQA, 4 key/value heads) of d_head 8 on d_model 64; shipped as F16. */
export const RECALL_ARCH = {
  family: 'llama' as 'llama' | 'starcoder2', init: 'normal' as 'normal' | 'torch',
  dModel: 64, dMlp: 128, layers: 4, heads: 16, kvHeads: 4, headDim: 8, maxPos: 256, dtype: 'float16' as const,
};

export function recallConfig(): Record<string, unknown> {
  const { family, init: _init, ...shape } = RECALL_ARCH;
  const o = { vocab: RECALL_VOCAB.length, ...shape, bos: RECALL_FORMAT.bosId, eos: RECALL_FORMAT.stopToken };
  return family === 'starcoder2' ? starcoder2Config(o) : llamaConfig(o);
}

export function recallTokenizer(): Tokenizer {
  return new Tokenizer(
    wordLevelTokenizerJson([...RECALL_VOCAB], { specialTokens: ['<bos>', '<0x0A>'], unkToken: '<unk>' }),
    tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', eosToken: '<0x0A>', modelMaxLength: 256 }),
    'recall tokenizer.json',
  );
}

/** One recall example (seeded); `distractors` defaults to the format's. */
export function recallExample(length: number, depth: number, seed: number, distractors = RECALL_FORMAT.distractors): NeedleExample {
  const f = RECALL_FORMAT;
  return makeNeedle({
    length, depth, seed, bosId: f.bosId, periodToken: f.periodToken, keyMarker: f.keyMarker, valueMarker: f.valueMarker, separator: f.separator,
    questionMarker: f.questionMarker, fillerTokens: f.fillerTokens, keyTokens: f.keyTokens, valueTokens: f.valueTokens,
    sentenceLength: f.sentenceLength, distractors,
  });
}

/** n examples of one length, at one depth or (depth omitted) at uniform random depths; seeded. */
export function recallBatch(n: number, length: number, seed: number, depth?: number, distractors = RECALL_FORMAT.distractors): NeedleExample[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => recallExample(length, depth ?? r.next(), deriveSeed(seed, i), distractors));
}

/** task.json of the recall model (saveZooModel adds the step counts). */
export function recallTaskJson(): Record<string, unknown> {
  return { task: 'needle', format: RECALL_FORMAT, vocab: RECALL_VOCAB, evalSeed: 777, regenerate: 'recallExample(length, depth, seed) / recallAccuracyGrid in src/zoo/recall.ts' };
}

/**
 * The recipe: AdamW at a constant learning rate after a linear warmup (so a run stopped after N steps
 * is the run of N steps), batches of 8 rows, seed 2.
 */
export const RECALL_RECIPE = { steps: 800, batch: 8, lr: 3e-3, warmupSteps: 50, schedule: 'constant' as Schedule, weightDecay: 0.01, betas: [0.9, 0.99] as [number, number], gradClip: 1.0, seed: 2, evalEvery: 100 };

/**
 * The binding recipe (`npx tsx scripts/train-zoo.ts recall --variant binding`), merged into RECALL_ARCH,
 * RECALL_FORMAT and RECALL_RECIPE: StarCoder2's block (LayerNorm, biases, rotary, GQA) at PyTorch's
 * initial scale, the needle "key is K V ." and question "what key is K" with 2-5 distractor pairs in
 * training and 3 in evaluation, a quarter of each batch induction rows, batches of 32 at lr 1e-3.
 * Each choice made the PyTorch check (scripts/recall-binding-check.py) bind sooner; a tflens 64-head
 * run of it had not left the "any value" plateau after 3,000 steps on the CPU (docs/zoo.md).
 */
export const RECALL_BINDING = {
  arch: { family: 'starcoder2' as const, init: 'torch' as const },
  format: { valueMarker: [] as number[], separator: [] as number[], distractors: 3, trainLengths: [16, 48] as [number, number], trainDistractors: [2, 5] as [number, number], trainInduction: 0.25, evalLengths: [32, 40, 48], trainEvalLengths: [32, 48], trainEvalDepths: [0.1, 0.5, 0.9, 1] },
  recipe: { steps: 3000, batch: 32, lr: 1e-3, evalEvery: 250 },
};

export interface RecallGrid {
  lengths: number[];
  depths: number[];
  /** accuracy[li][di] over n examples. */
  accuracy: number[][];
  n: number;
  seed: number;
  mean: number;
  min: number;
}

export interface RecallGridOptions {
  lengths?: number[];
  depths?: number[];
  /** Examples per cell (default 20). */
  n?: number;
  seed?: number;
  /** Distractor pairs per prompt (default the format's, 3). */
  distractors?: number;
}

/** Top-1 accuracy of the answer at the last position over a length x depth grid (fresh seeded data). */
export async function recallAccuracyGrid(model: ModelView, o: RecallGridOptions = {}): Promise<RecallGrid> {
  const lengths = o.lengths ?? RECALL_FORMAT.evalLengths;
  const depths = o.depths ?? RECALL_FORMAT.evalDepths;
  const n = o.n ?? 20;
  const seed = o.seed ?? 777;
  const accuracy: number[][] = [];
  for (const [li, len] of lengths.entries()) {
    const row: number[] = [];
    for (const [di, d] of depths.entries()) {
      const ex = recallBatch(n, len, deriveSeed(seed, li, di), d, o.distractors);
      const pred = await predictAt(model, ex.map((e) => e.tokens));
      row.push(ex.filter((e, i) => pred[i] === e.answer[0]).length / n);
    }
    accuracy.push(row);
  }
  const flat = accuracy.flat();
  return { lengths, depths, accuracy, n, seed, mean: mean(flat), min: Math.min(...flat) };
}

/**
 * One training batch (seeded by `s`): one prompt length and one distractor count for the whole batch,
 * drawn from the format's training ranges (the count capped by what fits). Each row is the prompt, the
 * answer and the stop token, then one more question about each distractor pair (in seeded order)
 * with its answer and stop token, so every pair of the context is asked about once; the evaluation
 * prompt is the row's first part. The loss reads every answer and every stop token (weights `w`).
 */
export function recallTrainBatch(batchSize: number, s: number): { x: number[][]; y: number[][]; w: number[][] } {
  const f = RECALL_FORMAT;
  const r = rng(s);
  const len = r.range(f.trainLengths[0], f.trainLengths[1]);
  const sentence = f.keyMarker.length + f.separator.length + f.valueMarker.length + 3; // marker K separator marker V .
  const question = f.questionMarker.length + 1 + f.valueMarker.length;
  const fits = Math.floor((len - 1 - question - sentence - 1) / sentence); // BOS, question, needle, >= 1 filler token
  const nd = Math.min(r.range(f.trainDistractors[0], f.trainDistractors[1]), fits);
  const rows = recallBatch(batchSize, len, deriveSeed(s, 1), undefined, nd).map((e, i) => {
    const seq = [...e.tokens, e.answer[0], f.stopToken];
    const scored = [len - 1, len];
    const pairs = [...(e.distractors ?? [])];
    const asked = Array.from({ length: f.trainRepeats }, () => [{ key: e.key, value: e.answer }, ...pairs]).flat().slice(1);
    for (const d of rng(deriveSeed(s, 2, i)).shuffle(asked)) {
      seq.push(...f.questionMarker, ...d.key, ...f.valueMarker);
      scored.push(seq.length - 1, seq.length);
      seq.push(d.value[0], f.stopToken);
    }
    const w = new Array(seq.length - 1).fill(0);
    for (const t of scored) w[t] = 1;
    return { x: seq.slice(0, -1), y: seq.slice(1), w };
  });
  const induction = Math.round(f.trainInduction * batchSize);
  for (let i = 0; i < induction; i++) rows[i] = inductionRow(rows[i].x.length + 1, deriveSeed(s, 3, i));
  return { x: rows.map((q) => q.x), y: rows.map((q) => q.y), w: rows.map((q) => q.w) };
}

/**
 * An induction row of `length` tokens (seeded): BOS and a random block of filler tokens repeated twice
 * (repeatedTokens, block h = (length - 1) / 2 rounded down), one more filler token for an even length
 * (it is only ever the last target, unscored). Scored: the second copy from its second token on (the
 * first follows the end of the first copy, which nothing predicts).
 */
function inductionRow(length: number, seed: number): { x: number[]; y: number[]; w: number[] } {
  const f = RECALL_FORMAT;
  const h = Math.floor((length - 1) / 2);
  const low = Math.min(...f.fillerTokens);
  const high = Math.max(...f.fillerTokens) + 1;
  const exclude = Array.from({ length: high - low }, (_, i) => low + i).filter((t) => !f.fillerTokens.includes(t));
  const [seq] = repeatedTokens({ blockLength: h, low, high, exclude, bosId: f.bosId, seed }).tokens;
  if (seq.length < length) seq.push(f.fillerTokens[0]);
  const w = seq.slice(1).map((_, t) => (t >= h + 1 && t <= 2 * h - 1 ? 1 : 0));
  return { x: seq.slice(0, -1), y: seq.slice(1), w };
}

export async function trainRecall(o: TrainRecipeOptions = {}): Promise<TrainedZooModel> {
  const R = { ...RECALL_RECIPE, ...o.overrides };
  const seed = o.seed ?? R.seed;
  const steps = o.steps ?? R.steps;
  const batchSize = o.batch ?? R.batch;
  const model = randomModel(recallConfig(), { seed, std: 0.02, init: RECALL_ARCH.init, tokenizer: recallTokenizer(), name: 'recall' });
  const tr = new Trainable(model, (n) => realParam(model, n));
  let result: TrainResult;
  try {
    result = await train<{ x: number[][]; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(R, o, tr.vars, steps, seed),
      schedule: R.schedule,
      batches: (step) => {
        const b = recallTrainBatch(batchSize, deriveSeed(seed, step));
        return { x: b.x, y: tf.tensor2d(b.y, undefined, 'int32'), w: tf.tensor2d(b.w) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return weightedNll(trainingLogits(model, b.x), b.y, b.w);
      },
      evalEvery: o.evalEvery ?? R.evalEvery,
      evalFn: snapshotEval(tr, o, async (snap) => ({ accuracy: (await recallAccuracyGrid(snap, { lengths: RECALL_FORMAT.trainEvalLengths, depths: RECALL_FORMAT.trainEvalDepths, n: 8, seed: 99 })).mean })),
    });
  } finally {
    tr.finish();
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) metrics.grid = await recallAccuracyGrid(model, { n: 40, seed: 777 });
  return { model, result, metrics, recipe: { ...R, steps, batch: batchSize, seed, arch: { ...RECALL_ARCH }, format: { ...RECALL_FORMAT } } };
}

/** Random control heads are drawn from outside the top N: the authors' 100 of LLaMA-2-7B's 1,024 heads as a share of this model's heads (at least K). */
export function recallMaskingN(totalHeads: number, K: number): number {
  return Math.max(K, Math.round((totalHeads * 100) / 1024));
}

export interface RecallHeadline {
  /** Top-1 accuracy of the answer over the card's grid, with the format's distractors. */
  accuracy: RecallGrid;
  /** NIAH decodes (the authors' protocol: up to 50 tokens, newline stop) over the card's grid. */
  niah: { rouge: number[][]; exact: number[][]; meanRouge: number; meanExact: number; minExact: number; stopRate: number; prompts: number; counted: number };
  /** Retrieval scores of the same decodes; heads above 0.1 and their share of all heads. */
  retrieval: { scores: number[][]; heads: Array<[number, number, number]>; share: number };
  /** Top-K vs random-K masking on the same grid (K = the retrieval heads, N = recallMaskingN). */
  masking: { K: number; N: number; topHeads: Array<[number, number]>; randomSets: Array<Array<[number, number]>>; unmasked: number; topMasked: number; randomMasked: number[] };
}

/**
 * The model card's headline numbers on fresh seeded data: answer accuracy, the NIAH grid decoded as
 * the authors do, retrieval scores from those decodes, and the masking experiment (top-K vs
 * `randomSets` random sets of K heads from outside the top N).
 */
export async function recallHeadline(model: ModelView, o: { n?: number; perCell?: number; seed?: number; randomSets?: number; lengths?: number[]; depths?: number[] } = {}): Promise<RecallHeadline> {
  const f = RECALL_FORMAT;
  const seed = o.seed ?? 2024;
  const lengths = o.lengths ?? f.evalLengths;
  const depths = o.depths ?? f.evalDepths;
  const accuracy = await recallAccuracyGrid(model, { n: o.n ?? 40, seed: deriveSeed(seed, 1), lengths, depths });
  const grid = { lengths, depths, makeSample: syntheticSamples(f), samplesPerCell: o.perCell ?? 8, seed, onProgress: false as const };
  const g = await niahGrid(model, { ...grid, scorer: true });
  const decodes = g.samples.flat(2);
  const stop = newlineTokens(model);
  const scores = g.scores!;
  const heads = retrievalHeads(scores, { threshold: 0.1 });
  const total = model.cfg.n_layers * model.cfg.n_heads;
  const K = Math.max(1, heads.length);
  const N = recallMaskingN(total, K);
  const m = await maskingExperiment(model, scores, { K, N, seed: deriveSeed(seed, 2), grid });
  const randomSets = [m.randomHeads];
  const randomMasked = [m.summary.randomMasked.rouge];
  for (let i = 1; i < (o.randomSets ?? 5); i++) {
    const hs = randomControlHeads(scores, K, { exclude: N, seed: deriveSeed(seed, 3, i) });
    randomSets.push(hs);
    randomMasked.push((await niahGrid(model, { ...grid, fwdHooks: headMaskHooks(hs) })).mean.rouge);
  }
  return {
    accuracy,
    niah: {
      rouge: g.rouge,
      exact: g.exact,
      meanRouge: g.mean.rouge,
      meanExact: g.mean.exact,
      minExact: Math.min(...g.exact.flat()),
      stopRate: decodes.filter((s) => s.generated.length === 2 && stop.includes(s.generated[1])).length / decodes.length,
      prompts: decodes.length,
      counted: scores.data!.counted as number,
    },
    retrieval: { scores: scores.scores, heads, share: heads.length / total },
    masking: { K, N, topHeads: m.topHeads, randomSets, unmasked: m.summary.unmasked.rouge, topMasked: m.summary.topMasked.rouge, randomMasked },
  };
}
