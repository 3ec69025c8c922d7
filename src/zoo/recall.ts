/**
 * The shipped recall model (fixtures/models/recall): a 2-layer, 4-head LLaMA trained to retrieve a
 * needle's value (src/data/needle.ts), its word-level vocabulary and needle format, the recipe and an
 * accuracy grid over context lengths and needle depths.
 */
import * as tf from '@tensorflow/tfjs';
import { randomModel, Tokenizer, type ModelView } from '../model/index.js';
import { rng, deriveSeed } from '../util/random.js';
import { makeNeedle, type NeedleExample } from '../data/needle.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { train, type TrainResult } from './train.js';
import { Trainable, llamaConfig, mean, predictAt, realParam, recipeOptions, snapshotEval, trainingLogits, weightedNll, type TrainRecipeOptions, type TrainedZooModel } from './common.js';

const RECALL_SPECIAL = ['<bos>', '<unk>', '.', 'key', 'value', 'is', 'what'];
const RECALL_FILLER = Array.from({ length: 40 }, (_, i) => `w${i}`);
const RECALL_KEYS = Array.from({ length: 16 }, (_, i) => `k${i}`);
const RECALL_VALUES = Array.from({ length: 16 }, (_, i) => `v${i}`);
export const RECALL_VOCAB: readonly string[] = [...RECALL_SPECIAL, ...RECALL_FILLER, ...RECALL_KEYS, ...RECALL_VALUES];
const rid = (w: string) => RECALL_VOCAB.indexOf(w);

/**
 * The needle format of the recall model (ids into RECALL_VOCAB): context sentences of filler words
 * ending in "."; needle "key is K . value is V ." at a depth; question "what key is K value is";
 * the answer is V. Keys and values come from their own token sets (k0..k15, v0..v15), filler from
 * w0..w39.
 */
export const RECALL_FORMAT = {
  bosId: rid('<bos>'),
  periodToken: rid('.'),
  keyMarker: [rid('key'), rid('is')],
  valueMarker: [rid('value'), rid('is')],
  questionMarker: [rid('what'), rid('key'), rid('is')],
  fillerTokens: RECALL_FILLER.map(rid),
  keyTokens: RECALL_KEYS.map(rid),
  valueTokens: RECALL_VALUES.map(rid),
  sentenceLength: [4, 12] as [number, number],
  /** Training lengths are drawn uniformly from this range (inclusive). */
  trainLengths: [32, 128] as [number, number],
  /** The evaluation grid of the model card. */
  evalLengths: [48, 96, 128],
  evalDepths: [0, 0.25, 0.5, 0.75, 1],
};

export function recallConfig(): Record<string, unknown> {
  return llamaConfig({ vocab: RECALL_VOCAB.length, dModel: 64, dMlp: 128, layers: 2, heads: 4, maxPos: 256, bos: RECALL_FORMAT.bosId, eos: RECALL_FORMAT.periodToken });
}

export function recallTokenizer(): Tokenizer {
  return new Tokenizer(
    wordLevelTokenizerJson([...RECALL_VOCAB], { specialTokens: ['<bos>'], unkToken: '<unk>' }),
    tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: 256 }),
    'recall tokenizer.json',
  );
}

/** One recall example (seeded). */
export function recallExample(length: number, depth: number, seed: number): NeedleExample {
  const f = RECALL_FORMAT;
  return makeNeedle({
    length, depth, seed, bosId: f.bosId, periodToken: f.periodToken, keyMarker: f.keyMarker, valueMarker: f.valueMarker,
    questionMarker: f.questionMarker, fillerTokens: f.fillerTokens, keyTokens: f.keyTokens, valueTokens: f.valueTokens,
    sentenceLength: f.sentenceLength,
  });
}

/** n examples of one length, at one depth or (depth omitted) at uniform random depths; seeded. */
export function recallBatch(n: number, length: number, seed: number, depth?: number): NeedleExample[] {
  const r = rng(seed);
  return Array.from({ length: n }, (_, i) => recallExample(length, depth ?? r.next(), deriveSeed(seed, i)));
}

/** task.json of the recall model (saveZooModel adds the step counts). */
export function recallTaskJson(): Record<string, unknown> {
  return { task: 'needle', format: RECALL_FORMAT, vocab: RECALL_VOCAB, evalSeed: 777, regenerate: 'recallExample(length, depth, seed) / recallAccuracyGrid in src/zoo/recall.ts' };
}

export const RECALL_RECIPE = { steps: 300, batch: 16, lr: 3e-3, warmupSteps: 30, weightDecay: 0.01, betas: [0.9, 0.99] as [number, number], gradClip: 1.0, seed: 2, evalEvery: 50 };

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
      const ex = recallBatch(n, len, deriveSeed(seed, li, di), d);
      const pred = await predictAt(model, ex.map((e) => e.tokens));
      row.push(ex.filter((e, i) => pred[i] === e.answer[0]).length / n);
    }
    accuracy.push(row);
  }
  const flat = accuracy.flat();
  return { lengths, depths, accuracy, n, seed, mean: mean(flat), min: Math.min(...flat) };
}

export async function trainRecall(o: TrainRecipeOptions = {}): Promise<TrainedZooModel> {
  const seed = o.seed ?? RECALL_RECIPE.seed;
  const steps = o.steps ?? RECALL_RECIPE.steps;
  const batchSize = o.batch ?? RECALL_RECIPE.batch;
  const model = randomModel(recallConfig(), { seed, std: 0.02, tokenizer: recallTokenizer(), name: 'recall' });
  const tr = new Trainable(model, (n) => realParam(model, n));
  const [lo, hi] = RECALL_FORMAT.trainLengths;
  let result: TrainResult;
  try {
    result = await train<{ x: number[][]; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(RECALL_RECIPE, o, tr.vars, steps, seed),
      batches: (step) => {
        const s = deriveSeed(seed, step);
        const len = lo + rng(s).int(hi - lo + 1);
        const ex = recallBatch(batchSize, len, s);
        // Only the answer (read at the last position) is scored.
        const y = ex.map((e) => [...e.tokens.slice(1), e.answer[0]]);
        const w = ex.map(() => Array.from({ length: len }, (_, t) => (t === len - 1 ? 1 : 0)));
        return { x: ex.map((e) => e.tokens), y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(w) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return weightedNll(trainingLogits(model, b.x), b.y, b.w);
      },
      evalEvery: o.evalEvery ?? RECALL_RECIPE.evalEvery,
      evalFn: snapshotEval(tr, o, async (snap) => ({ accuracy: (await recallAccuracyGrid(snap, { lengths: [64, 112], depths: [0.1, 0.5, 0.9], n: 8, seed: 99 })).mean })),
    });
  } finally {
    tr.finish();
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) metrics.grid = await recallAccuracyGrid(model, { n: 40, seed: 777 });
  return { model, result, metrics, recipe: { ...RECALL_RECIPE, steps, batch: batchSize, seed, format: RECALL_FORMAT } };
}
