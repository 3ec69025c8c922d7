/**
 * A token-group task for VAR (visual attention redistribution, METHODS.md section 4): a span of
 * "visual" patch tokens carries the answer, the surrounding text carries distractors.
 *
 *   <bos> text... <img> patch x G </img> text... color ?   ->   answer
 *
 * The image is G patches: mostly the background token `bg`, the majority colour 2-3 times and one
 * other (minority) colour once. The text before and after the image mentions a third colour, the
 * distractor, more often than the majority colour appears in the image, among filler words. The
 * answer is the majority colour of the image: a model that spreads its attention over every colour
 * token in the prompt is drawn to the distractor, so the task needs attention on the token group.
 * Colours are the same token ids in the image and in the text, and the layout is fixed, so the
 * group is one span `{ start, end }` (positions from <bos>) for a whole batch, as `varHook` takes it.
 *
 * Also here: the vocabulary and tokenizer, a LLaMA-style config for the tiny model shipped in
 * fixtures/models/var-group, its training recipe (AdamW, src/tasks/train.ts) and an accuracy
 * evaluation that takes fwdHooks (for ACT / VAR before/after comparisons).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import type { HookedTransformer } from '../model/hooked.js';
import { randomModel } from '../model/load.js';
import { Tokenizer } from '../model/tokenizer.js';
import { deriveSeed, rng } from '../util/random.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from './tokenizer.js';
import { train, type TrainResult } from './train.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary and layout

export const TOKEN_GROUP_COLORS: readonly string[] = ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'black', 'white'];
const SPECIAL = ['<bos>', '<unk>', '<img>', '</img>', 'color', '?', 'bg'];
const FILLER = Array.from({ length: 24 }, (_, i) => `w${i}`);
/** <bos> <unk> <img> </img> color ? bg, 8 colours, 24 filler words (39 tokens). */
export const TOKEN_GROUP_VOCAB: readonly string[] = [...SPECIAL, ...TOKEN_GROUP_COLORS, ...FILLER];
const tid = (w: string) => TOKEN_GROUP_VOCAB.indexOf(w);

export const TOKEN_GROUP_IDS = {
  bos: tid('<bos>'),
  imgOpen: tid('<img>'),
  imgClose: tid('</img>'),
  color: tid('color'),
  question: tid('?'),
  background: tid('bg'),
  colors: TOKEN_GROUP_COLORS.map(tid),
  filler: FILLER.map(tid),
} as const;

export interface TokenGroupOptions {
  /** Text tokens between <bos> and <img> (default 10). */
  textBefore?: number;
  /** Patch tokens in the image, the token group (default 16). */
  groupSize?: number;
  /** Text tokens between </img> and "color ?" (default 6). */
  textAfter?: number;
  /** Occurrences of the majority colour in the image, inclusive range (default [2, 3]). */
  majority?: [number, number];
  /** Occurrences of the one minority colour in the image (default 1; 0 for none). */
  minority?: number;
  /** Occurrences of the distractor colour in the text (default 4). */
  textDistractors?: number;
}

export interface TokenGroupLayout {
  textBefore: number;
  groupSize: number;
  textAfter: number;
  /** Total prompt length (answer excluded). */
  length: number;
  /** Position of <img>. */
  imgOpen: number;
  /** The patch span [start, end), positions from <bos>: the VAR token group. */
  group: { start: number; end: number };
  /** Position of </img>. */
  imgClose: number;
  /** The last position (the "?" query that predicts the answer). */
  query: number;
}

function resolve(o: TokenGroupOptions): Required<TokenGroupOptions> {
  const r = {
    textBefore: o.textBefore ?? 10,
    groupSize: o.groupSize ?? 16,
    textAfter: o.textAfter ?? 6,
    majority: o.majority ?? ([2, 3] as [number, number]),
    minority: o.minority ?? 1,
    textDistractors: o.textDistractors ?? 4,
  };
  const int = (k: string, v: number, lo: number) => {
    if (!Number.isInteger(v) || v < lo) throw new ConfigError(`tokenGroup ${k}`, expectedFound(`an integer >= ${lo}`, v));
  };
  int('textBefore', r.textBefore, 0);
  int('groupSize', r.groupSize, 1);
  int('textAfter', r.textAfter, 0);
  int('minority', r.minority, 0);
  int('textDistractors', r.textDistractors, 0);
  if (!Array.isArray(r.majority) || r.majority.length !== 2) throw new ConfigError('tokenGroup majority', expectedFound('[min, max]', r.majority));
  int('majority[0]', r.majority[0], 1);
  int('majority[1]', r.majority[1], r.majority[0]);
  if (r.majority[0] <= r.minority) {
    throw new ConfigError('tokenGroup majority', expectedFound(`more than minority (${r.minority}) occurrences`, r.majority[0]));
  }
  if (r.majority[1] + r.minority > r.groupSize) {
    throw new ConfigError('tokenGroup groupSize', expectedFound(`room for ${r.majority[1]} + ${r.minority} coloured patches`, r.groupSize));
  }
  if (r.textDistractors > r.textBefore + r.textAfter) {
    throw new ConfigError('tokenGroup textDistractors', expectedFound(`at most textBefore + textAfter = ${r.textBefore + r.textAfter}`, r.textDistractors));
  }
  return r;
}

/** Positions of the parts of a prompt (fixed for given options). */
export function tokenGroupLayout(opts: TokenGroupOptions = {}): TokenGroupLayout {
  const o = resolve(opts);
  const imgOpen = 1 + o.textBefore;
  const start = imgOpen + 1;
  const end = start + o.groupSize;
  const imgClose = end;
  const length = imgClose + 1 + o.textAfter + 2;
  return { textBefore: o.textBefore, groupSize: o.groupSize, textAfter: o.textAfter, length, imgOpen, group: { start, end }, imgClose, query: length - 1 };
}

export interface TokenGroupExample {
  /** Prompt token ids (length layout.length), ending in "color ?". */
  tokens: number[];
  /** Answer token id: the majority colour of the image. */
  answer: number;
  /** Colour token ids: majority (the answer), minority (image, once) and distractor (text). */
  majority: number;
  minority: number | null;
  distractor: number | null;
  /** How often the majority colour is in the image. */
  majorityCount: number;
  /** Absolute positions of the coloured patches and of the distractor mentions. */
  majorityPositions: number[];
  minorityPositions: number[];
  distractorPositions: number[];
}

/** One seeded example. */
export function tokenGroupExample(seed: number, opts: TokenGroupOptions = {}): TokenGroupExample {
  const o = resolve(opts);
  const L = tokenGroupLayout(o);
  const r = rng(seed);
  const ids = TOKEN_GROUP_IDS;
  const cols = r.sample(ids.colors, 3);
  const [majority, minority, distractor] = cols;
  const tokens: number[] = new Array(L.length);
  tokens[0] = ids.bos;
  const textPos: number[] = [];
  for (let i = 1; i < L.imgOpen; i++) textPos.push(i);
  for (let i = L.imgClose + 1; i < L.length - 2; i++) textPos.push(i);
  for (const i of textPos) tokens[i] = r.choice(ids.filler);
  tokens[L.imgOpen] = ids.imgOpen;
  tokens[L.imgClose] = ids.imgClose;
  tokens[L.length - 2] = ids.color;
  tokens[L.length - 1] = ids.question;
  const patchPos: number[] = [];
  for (let j = L.group.start; j < L.group.end; j++) {
    tokens[j] = ids.background;
    patchPos.push(j);
  }
  const majorityCount = r.range(o.majority[0], o.majority[1]);
  const coloured = r.sample(patchPos, majorityCount + o.minority);
  const majorityPositions = coloured.slice(0, majorityCount).sort((a, b) => a - b);
  const minorityPositions = coloured.slice(majorityCount).sort((a, b) => a - b);
  for (const j of majorityPositions) tokens[j] = majority;
  for (const j of minorityPositions) tokens[j] = minority;
  const distractorPositions = r.sample(textPos, o.textDistractors).sort((a, b) => a - b);
  for (const j of distractorPositions) tokens[j] = distractor;
  return {
    tokens,
    answer: majority,
    majority,
    minority: o.minority > 0 ? minority : null,
    distractor: o.textDistractors > 0 ? distractor : null,
    majorityCount,
    majorityPositions,
    minorityPositions,
    distractorPositions,
  };
}

export interface TokenGroupBatch {
  tokens: number[][];
  answers: number[];
  examples: TokenGroupExample[];
  layout: TokenGroupLayout;
  seed: number;
}

/** n seeded examples (example i uses deriveSeed(seed, i)). */
export function tokenGroupBatch(n: number, seed: number, opts: TokenGroupOptions = {}): TokenGroupBatch {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('tokenGroupBatch n', expectedFound('a positive integer', n));
  if (!Number.isFinite(seed)) throw new ConfigError('tokenGroupBatch seed', expectedFound('a finite number', seed));
  const examples = Array.from({ length: n }, (_, i) => tokenGroupExample(deriveSeed(seed, i), opts));
  return { tokens: examples.map((e) => e.tokens), answers: examples.map((e) => e.answer), examples, layout: tokenGroupLayout(opts), seed };
}

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
export function tokenGroupEvaluate(
  model: HookedTransformer,
  batch: Pick<TokenGroupBatch, 'tokens' | 'answers'> & { examples?: TokenGroupExample[] },
  opts: { fwdHooks?: HookSpec[]; batchSize?: number } = {},
): TokenGroupEval {
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
    const [pred, lp] = tf.tidy(() => {
      const logits = model.forward(rows, { fwdHooks: opts.fwdHooks, logitPositions: rows.map(() => T - 1) }) as tf.Tensor3D;
      const last = tf.squeeze(logits, [1]) as tf.Tensor2D;
      const logp = tf.logSoftmax(last, -1);
      const a = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(ans, 'int32'), last.shape[1])), -1);
      return [tf.argMax(last, -1), a];
    });
    const p = pred.dataSync();
    const l = lp.dataSync();
    tf.dispose([pred, lp]);
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
export const VAR_GROUP_TASK: Required<TokenGroupOptions> = resolve({});

/** A 4-layer LLaMA-style model (RMSNorm, rotary, gated SiLU MLP): d_model 64, 4 heads. */
export function tokenGroupConfig(): Record<string, unknown> {
  return {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: TOKEN_GROUP_VOCAB.length,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: TOKEN_GROUP_IDS.bos,
    eos_token_id: TOKEN_GROUP_IDS.question,
    torch_dtype: 'float32',
  };
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

export interface TokenGroupTrainOptions {
  steps?: number;
  batch?: number;
  seed?: number;
  evalEvery?: number;
  onEval?: (step: number, values: Record<string, number>) => void;
  progressLabel?: string | false;
  /** Weight of the next-token loss on the prompt positions (default VAR_GROUP_RECIPE.lmWeight). */
  lmWeight?: number;
}

/**
 * Train the tiny token-group model from a seeded random init with AdamW (src/tasks/train.ts).
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
  const vars: Record<string, tf.Variable> = {};
  const fixed: Record<string, tf.Tensor> = {};
  for (const [name, t] of Object.entries(model.params)) {
    // LLaMA has no biases and no b_U: those stay fixed zeros
    if (/\.b_[A-Za-z]+$/.test(name) || name === 'unembed.b_U') fixed[name] = t;
    else {
      vars[name] = tf.variable(t, true, `vargroup/${name}`);
      t.dispose();
    }
  }
  const L = tokenGroupLayout();
  const T = L.length;
  let result: TrainResult;
  try {
    result = await train<{ x: tf.Tensor2D; y: tf.Tensor2D; w: tf.Tensor2D }>({
      params: vars,
      steps,
      lr: R.lr,
      warmupSteps: Math.min(R.warmupSteps, steps - 1),
      weightDecay: R.weightDecay,
      betas: R.betas,
      gradClip: R.gradClip,
      seed,
      progressLabel: o.progressLabel ?? false,
      batches: (step) => {
        const b = tokenGroupBatch(bsz, deriveSeed(seed, 1000 + step));
        const y = b.tokens.map((t, i) => [...t.slice(1), b.answers[i]]);
        const wRow = Array.from({ length: T }, (_, t) => (t === T - 1 ? 1 : lmWeight / (T - 1)));
        return { x: tf.tensor2d(b.tokens, undefined, 'int32'), y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(b.tokens.map(() => wRow)) };
      },
      lossFn: (b) => {
        model.params = { ...fixed, ...vars };
        const logits = model.forward(b.x) as tf.Tensor3D;
        const logp = tf.logSoftmax(logits);
        const nll = tf.neg(tf.sum(tf.mul(logp, tf.oneHot(b.y, logits.shape[2])), -1));
        return tf.div(tf.sum(tf.mul(nll, b.w)), b.x.shape[0]) as tf.Scalar;
      },
      evalEvery: o.evalEvery ?? R.evalEvery,
      evalFn: (step) => {
        model.params = { ...fixed, ...vars };
        const e = tokenGroupEvaluate(model, tokenGroupBatch(128, 4242));
        const v = { accuracy: e.accuracy, loss: e.loss };
        o.onEval?.(step, v);
        return v;
      },
    });
  } catch (err) {
    tf.dispose(Object.values(vars));
    tf.dispose(Object.values(fixed));
    model.params = {};
    throw err;
  }
  const plain: Record<string, tf.Tensor> = { ...fixed };
  for (const [name, v] of Object.entries(vars)) {
    plain[name] = v.clone();
    v.dispose();
  }
  model.params = plain;
  model.invalidateFused();
  return { model, result, recipe: { ...R, steps, batch: bsz, seed, lmWeight, task: VAR_GROUP_TASK } };
}
