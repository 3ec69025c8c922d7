/**
 * The var-group model (fixtures/models/var-group): a tiny LLaMA-style model trained on the token-group
 * task (src/data/token-group.ts) for the VAR study, its config, tokenizer, training recipe and an
 * accuracy evaluation that takes fwdHooks (for ACT / VAR before/after comparisons).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import { randomModel, Tokenizer, type HookedTransformer, type ModelView } from '../model/index.js';
import { deriveSeed } from '../util/random.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { TOKEN_GROUP_IDS, TOKEN_GROUP_VOCAB, resolveTokenGroupOptions, tokenGroupBatch, tokenGroupLayout, type TokenGroupBatch, type TokenGroupExample, type TokenGroupOptions } from '../data/token-group.js';
import { train, type TrainResult } from './train.js';
import { Trainable, llamaConfig, realParam, recipeOptions, snapshotEval, tokenNll, trainingLogits, type TrainRecipeOptions } from './common.js';
// ---------------------------------------------------------------------------------------------
// Evaluation

export interface TokenGroupEval {
  /** Fraction of prompts whose top-1 prediction at "?" is the answer. */
  accuracy: number;
  /** Mean NLL of the answer (nats). */
  loss: number;
  /** Fraction of prompts that predict the text distractor colour. */
  distractorRate: number;
  /** Mean probability of the answer. */
  answerProb: number;
  predictions: number[];
  n: number;
}

/**
 * Accuracy, answer loss and distractor rate of a model at the "?" position, with optional fwdHooks
 * (an ACT or VAR hook set). Runs in chunks of `batchSize` prompts (default 64); no tensors left.
 */
export async function tokenGroupEvaluate(
  model: ModelView,
  batch: Pick<TokenGroupBatch, 'tokens' | 'answers'> & { examples?: TokenGroupExample[] },
  opts: { fwdHooks?: HookSpec[]; batchSize?: number } = {},
): Promise<TokenGroupEval> {
  const n = batch.tokens.length;
  if (n === 0 || batch.answers.length !== n) {
    throw new ValueError('tokenGroupEvaluate batch', expectedFound(`as many answers as prompts (${n} > 0)`, batch.answers.length));
  }
  const bs = opts.batchSize ?? 64;
  const predictions: number[] = [];
  let nll = 0;
  let prob = 0;
  for (let s = 0; s < n; s += bs) {
    const rows = batch.tokens.slice(s, s + bs);
    const ans = batch.answers.slice(s, s + bs);
    const T = rows[0].length;
    const logits = await model.forward(rows, { fwdHooks: opts.fwdHooks, logitPositions: rows.map(() => T - 1) });
    let pred: tf.Tensor, lp: tf.Tensor;
    try {
      [pred, lp] = tf.tidy(() => {
        const last = tf.squeeze(logits, [1]) as tf.Tensor2D;
        const a = tf.sum(tf.mul(tf.logSoftmax(last, -1), tf.oneHot(tf.tensor1d(ans, 'int32'), last.shape[1])), -1);
        return [tf.argMax(last, -1), a];
      });
    } finally {
      logits.dispose();
    }
    const [p, l] = await Promise.all([pred.data(), lp.data()]).finally(() => tf.dispose([pred, lp]));
    for (let i = 0; i < ans.length; i++) {
      predictions.push(p[i]);
      if (!Number.isFinite(l[i])) throw new ValueError('tokenGroupEvaluate', expectedFound('a finite answer log-probability', l[i]));
      nll -= l[i];
      prob += Math.exp(l[i]);
    }
  }
  let ok = 0;
  let fooled = 0;
  predictions.forEach((p, i) => {
    if (p === batch.answers[i]) ok++;
    if (batch.examples && p === batch.examples[i].distractor) fooled++;
  });
  return { accuracy: ok / n, loss: nll / n, distractorRate: fooled / n, answerProb: prob / n, predictions, n };
}

// ---------------------------------------------------------------------------------------------
// The shipped tiny model (fixtures/models/var-group)

/** Task options the shipped model was trained and evaluated on (the defaults). */
export const VAR_GROUP_TASK: Required<TokenGroupOptions> = resolveTokenGroupOptions({});

/** A 4-layer LLaMA-style model (RMSNorm, rotary, gated SiLU MLP): d_model 64, 4 heads. */
export function tokenGroupConfig(): Record<string, unknown> {
  return llamaConfig({ vocab: TOKEN_GROUP_VOCAB.length, dModel: 64, dMlp: 128, layers: 4, heads: 4, maxPos: 64, bos: TOKEN_GROUP_IDS.bos, eos: TOKEN_GROUP_IDS.question });
}

export function tokenGroupTokenizer(): Tokenizer {
  return new Tokenizer(
    wordLevelTokenizerJson([...TOKEN_GROUP_VOCAB], { specialTokens: ['<bos>', '<img>', '</img>'], unkToken: '<unk>' }),
    tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: 64 }),
    'var-group tokenizer.json',
  );
}

export const VAR_GROUP_RECIPE = {
  steps: 300,
  batch: 32,
  lr: 3e-3,
  warmupSteps: 40,
  weightDecay: 0.01,
  betas: [0.9, 0.99] as [number, number],
  gradClip: 1.0,
  seed: 5,
  evalEvery: 100,
  /** Weight of the next-token loss on the other positions (the answer has weight 1). */
  lmWeight: 0.05,
};

export interface TokenGroupTrainOptions extends Pick<TrainRecipeOptions, 'steps' | 'batch' | 'seed' | 'evalEvery' | 'onEval' | 'progressLabel' | 'signal'> {
  /** Weight of the next-token loss on the prompt positions (default VAR_GROUP_RECIPE.lmWeight). */
  lmWeight?: number;
}

/** task.json of the var-group model (scripts/train-var-group.ts adds the held-out numbers and the step counts). */
export function varGroupTaskJson(): Record<string, unknown> {
  return {
    task: 'token-group',
    description: 'majority colour of a span of image patches, with a distractor colour in the text (src/data/token-group.ts)',
    options: VAR_GROUP_TASK,
    layout: tokenGroupLayout(),
    vocab: TOKEN_GROUP_VOCAB,
  };
}

/**
 * Train the tiny token-group model from a seeded random init with AdamW (src/zoo/train.ts).
 * Loss: NLL of the answer at "?" plus lmWeight x mean next-token NLL on the prompt (so every
 * position gets a gradient, as in language-model pretraining). Returns the model (plain params).
 */
export async function trainTokenGroupModel(o: TokenGroupTrainOptions = {}): Promise<{ model: HookedTransformer; result: TrainResult; recipe: Record<string, unknown> }> {
  const R = VAR_GROUP_RECIPE;
  const seed = o.seed ?? R.seed;
  const steps = o.steps ?? R.steps;
  const bsz = o.batch ?? R.batch;
  const lmWeight = o.lmWeight ?? R.lmWeight;
  if (!Number.isFinite(lmWeight) || lmWeight < 0) throw new ConfigError('trainTokenGroupModel lmWeight', expectedFound('a number >= 0', lmWeight));
  const model = randomModel(tokenGroupConfig(), { seed, std: 0.02, tokenizer: tokenGroupTokenizer(), name: 'var-group' });
  // LLaMA has no biases and no b_U: those stay fixed zeros
  const tr = new Trainable(model, (name) => realParam(model, name));
  const T = tokenGroupLayout().length;
  let result: TrainResult;
  try {
    result = await train<{ x: number[][]; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(R, o, tr.vars, steps, seed),
      batches: (step) => {
        const b = tokenGroupBatch(bsz, deriveSeed(seed, 1000 + step));
        const y = b.tokens.map((t, i) => [...t.slice(1), b.answers[i]]);
        const wRow = Array.from({ length: T }, (_, t) => (t === T - 1 ? 1 : lmWeight / (T - 1)));
        return { x: b.tokens, y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(b.tokens.map(() => wRow)) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return tf.div(tf.sum(tf.mul(tokenNll(trainingLogits(model, b.x), b.y), b.w)), b.x.length) as tf.Scalar;
      },
      evalEvery: o.evalEvery ?? R.evalEvery,
      evalFn: snapshotEval(tr, o, async (snap) => {
        const e = await tokenGroupEvaluate(snap, tokenGroupBatch(128, 4242));
        return { accuracy: e.accuracy, loss: e.loss };
      }),
    });
  } finally {
    tr.finish();
  }
  return { model, result, recipe: { ...R, steps, batch: bsz, seed, lmWeight, task: VAR_GROUP_TASK } };
}
