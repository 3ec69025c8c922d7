/**
 * The shipped model zoo: four small models that tflens builds or trains itself and ships under
 * fixtures/models/<name> as genuine Hugging Face checkpoints (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json), with a task.json of task metadata and a MODEL_CARD.md.
 *
 * - bb: Bigram-Backcopy (METHODS.md section 5), GPT-2 architecture, one head per layer.
 * - recall: needle retrieval (src/tasks/needle.ts), LLaMA architecture.
 * - ioi: indirect object identification over the exact IOI templates and names (src/circuits/ioi.ts).
 * - induction-handmade: a 2-layer attention-only GPT-2 whose weights are set by hand
 *   (previous-token head 0.0, induction head 1.0 by K-composition).
 *
 * Everything here is seeded: the `ZOO` record names each model's task options and seeds, and the
 * helpers regenerate each task's evaluation data from a seed, so notebooks and tests can rebuild
 * exactly the data a number in a model card was measured on.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import { HookedTransformer, randomModel, saveModel } from '../model/index.js';
import { Tokenizer } from '../model/tokenizer.js';
import { rng, deriveSeed } from '../util/random.js';
import { ABBA_TEMPLATES, ABC_TEMPLATES, BABA_TEMPLATES, NAMES, OBJECTS, PLACES, generateIOI, logitDiff, type IOIDataset, type IOITokenizer } from '../data/ioi.js';
import { bbExcessLoss, bbTokenizerFiles, makeBigramBackcopy, sampleBigramBackcopy, type BBBatch, type BBOptions, type BBTask, type ExcessLoss } from '../data/bigram-backcopy.js';
import { makeNeedle, type NeedleExample } from '../data/needle.js';
import { repeatedTokens, type RepeatedBatch } from '../data/induction.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { train, type TrainResult } from './train.js';

export type ZooName = 'bb' | 'recall' | 'ioi' | 'induction-handmade';
export const ZOO_NAMES: readonly ZooName[] = ['bb', 'recall', 'ioi', 'induction-handmade'];

// =============================================================================================
// Shared helpers

/** Per-position negative log-likelihood [B, T] of `targets` [B, T] under `logits` [B, T, V]. */
export function tokenNll(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const V = logits.shape[2];
    const logp = tf.logSoftmax(logits);
    return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets.toInt(), V)), -1)) as tf.Tensor2D;
  });
}

/** Weighted mean NLL: sum(w * nll) / sum(w). */
function weightedNll(logits: tf.Tensor3D, targets: tf.Tensor2D, weights: tf.Tensor2D): tf.Scalar {
  const nll = tokenNll(logits, targets);
  return tf.div(tf.sum(tf.mul(nll, weights)), tf.maximum(tf.sum(weights), 1e-9)) as tf.Scalar;
}

/**
 * Trainable wrapper of a HookedTransformer: the chosen params become tf.Variables; `effective()`
 * maps the variables (plus fixed tensors) to the canonical params dict a forward uses. Call it
 * inside a tidy (the training loss does) and install the result as model.params.
 */
class Trainable {
  readonly vars: Record<string, tf.Variable> = {};
  readonly fixed: Record<string, tf.Tensor> = {};
  constructor(
    readonly model: HookedTransformer,
    trainable: (name: string) => boolean,
    private readonly transform: (p: Record<string, tf.Tensor>) => Record<string, tf.Tensor> = (p) => p,
  ) {
    for (const [name, t] of Object.entries(model.params)) {
      if (trainable(name)) {
        this.vars[name] = tf.variable(t, true);
        t.dispose();
      } else {
        this.fixed[name] = t;
      }
    }
    model.params = {};
  }
  effective(): Record<string, tf.Tensor> {
    return this.transform({ ...this.fixed, ...this.vars });
  }
  private plainCopy(): Record<string, tf.Tensor> {
    return tf.tidy(() => {
      const e = this.effective();
      const out: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(e)) out[k] = v.clone();
      return out as unknown as tf.TensorContainer;
    }) as unknown as Record<string, tf.Tensor>;
  }
  /** Give the model plain (non-variable) params again and free the variables. */
  finish(): HookedTransformer {
    const final = this.plainCopy();
    tf.dispose(Object.values(this.vars));
    tf.dispose(Object.values(this.fixed));
    this.model.params = final;
    this.model.invalidateFused();
    return this.model;
  }
  /** A plain copy of the current model (caller disposes), e.g. for a checkpoint or an eval. */
  snapshot(): HookedTransformer {
    return new HookedTransformer(this.model.cfg, this.plainCopy(), this.model.tokenizer, this.model.name);
  }
}

/** Which canonical params a family really has (the others stay at their zero init). */
function realParam(model: HookedTransformer, name: string): boolean {
  const c = model.cfg;
  if (name === 'unembed.b_U') return false;
  if (name === 'unembed.W_U' && c.tie_word_embeddings) return false;
  if (/attn\.b_[QKV]$/.test(name)) return c.attn_qkv_bias;
  if (/attn\.b_O$/.test(name)) return c.attn_out_bias;
  if (/mlp\.b_(in|out)$/.test(name)) return c.mlp_bias;
  return true;
}

function mean(xs: number[]): number {
  if (xs.length === 0) throw new ValueError('mean', expectedFound('a non-empty list', 'empty'));
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** The config of a model as normalised by the model core (via a throwaway tiny random model). */
function configOf(hf: Record<string, unknown>): HookedTransformer['cfg'] {
  const m = randomModel(hf, { seed: 0 });
  const cfg = m.cfg;
  m.dispose();
  return cfg;
}

export interface TrainRecipeOptions {
  /** Number of optimizer steps (default: the recipe's). */
  steps?: number;
  seed?: number;
  /** Progress display label, or false for none. */
  progressLabel?: string | false;
  /** Called with each eval point (step and values). */
  onEval?: (step: number, values: Record<string, number>) => void;
  /** Batch size (default: the recipe's). */
  batch?: number;
  /** Evaluate every this many steps (default: the recipe's). */
  evalEvery?: number;
  /** Stop early (after the current step); the model trained so far is returned. */
  signal?: AbortSignal;
  /** Measure the headline metrics on fresh data after training (default true; the card's numbers). */
  finalEval?: boolean;
  /** Override numeric recipe fields (e.g. { lr: 1e-3 }); recorded in the returned recipe. */
  overrides?: Record<string, number>;
}

export interface TrainedZooModel {
  model: HookedTransformer;
  result: TrainResult;
  /** Headline numbers measured on fresh seeded data after training. */
  metrics: Record<string, unknown>;
  /** The recipe actually used (for the model card). */
  recipe: Record<string, unknown>;
}

// =============================================================================================
// bb: Bigram-Backcopy

/** The BB task of the shipped model: 65 characters, 3 triggers, length 65 (BOS + 64 characters). */
/** train()'s evalFn: evaluate a detached snapshot of the current weights and report it through onEval. */
function snapshotEval(tr: Trainable, o: TrainRecipeOptions, evaluate: (snap: HookedTransformer) => Record<string, number>) {
  return (step: number): Record<string, number> => {
    const snap = tr.snapshot();
    try {
      const v = evaluate(snap);
      o.onEval?.(step, v);
      return v;
    } finally {
      snap.dispose();
    }
  };
}

/** The train() options every zoo recipe shares (warmup clipped to the run's length). */
function recipeOptions(
  R: { lr: number; warmupSteps: number; weightDecay: number; betas: [number, number]; gradClip: number },
  o: TrainRecipeOptions,
  params: Record<string, tf.Variable>,
  steps: number,
  seed: number,
) {
  return {
    params, steps, lr: R.lr, warmupSteps: Math.min(R.warmupSteps, Math.max(0, steps - 1)), weightDecay: R.weightDecay,
    betas: R.betas, gradClip: R.gradClip, seed, progressLabel: o.progressLabel ?? false, signal: o.signal,
  };
}

export const BB_TASK: BBOptions = { nChars: 65, k: 3, seqLen: 65, seed: 0 };

export function bbConfig(task: BBTask): Record<string, unknown> {
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: task.dVocab,
    n_positions: task.seqLen,
    n_embd: 64,
    n_layer: 3,
    n_head: 1,
    n_inner: 256,
    activation_function: 'relu',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    tie_word_embeddings: false,
    bos_token_id: task.bosId,
    eos_token_id: task.bosId,
    torch_dtype: 'float32',
  };
}

export const BB_RECIPE = {
  steps: 1500, batch: 32, lr: 3e-3, warmupSteps: 30, weightDecay: 1e-4, betas: [0.9, 0.99] as [number, number], gradClip: 1.0, seed: 1,
  evalEvery: 50, checkpoints: [100, 400],
};

export function bbTask(): BBTask {
  return makeBigramBackcopy(BB_TASK);
}

export function bbTokenizer(task: BBTask = bbTask()): Tokenizer {
  const f = bbTokenizerFiles(task);
  return new Tokenizer(f.tokenizer, f.config, 'bb tokenizer.json');
}

/** A fresh evaluation batch of the BB task (seeded). */
export function bbEvalBatch(seed = 12345, batch = 32): BBBatch {
  return sampleBigramBackcopy(bbTask(), batch, seed);
}

export interface BBLayerMeasures {
  /** Mean attention to BOS from non-trigger queries (the attention sink). */
  sinkNonTrigger: number;
  /** Mean attention to BOS from trigger queries. */
  sinkTrigger: number;
  /** Mean attention to the previous token from trigger queries (the backcopy). */
  prevTrigger: number;
  /** Mean attention to the previous token from non-trigger queries. */
  prevNonTrigger: number;
  /** ||v_BOS W_O|| (value-state drain) and the mean of ||v_j W_O|| over the other positions. */
  valueNormBos: number;
  valueNormOthers: number;
  /** ||resid_post at BOS|| (residual peak) and the mean over the other positions. */
  residNormBos: number;
  residNormOthers: number;
}

export interface BBMeasures {
  layers: BBLayerMeasures[];
  excess: ExcessLoss;
  /** The layer with the largest previous-token attention on trigger queries. */
  backcopyLayer: number;
}

/** Sink / drain / peak per layer (averaged over heads) and excess loss of a model on a BB batch. */
export function bbMeasures(model: HookedTransformer, batch: BBBatch): BBMeasures {
  const L = model.cfg.n_layers;
  const names = (n: string) => /hook_pattern$|hook_v$|hook_resid_post$/.test(n);
  const tokens = batch.tokens;
  const B = tokens.length;
  const T = tokens[0].length;
  const { logits, cache } = model.runWithCache(tokens, { namesFilter: names });
  const layers: BBLayerMeasures[] = [];
  let nllRows: number[][];
  try {
    nllRows = tf.tidy(() => {
      const tgt = tf.tensor2d(batch.targets, [B, T - 1], 'int32');
      const lg = tf.slice(logits, [0, 0, 0], [B, T - 1, model.cfg.d_vocab]) as tf.Tensor3D;
      return tokenNll(lg, tgt).arraySync() as number[][];
    });
    for (let l = 0; l < L; l++) {
      const pat = cache.get(`blocks.${l}.attn.hook_pattern` as never) as tf.Tensor; // [B, H, T, T]
      const H = pat.shape[1] as number;
      const A = pat.arraySync() as number[][][][];
      const vnormT = tf.tidy(() => {
        const v = cache.get(`blocks.${l}.attn.hook_v` as never) as tf.Tensor; // [B, T, K, dh]
        const G = H / (v.shape[2] as number);
        const vh = G > 1 ? tf.reshape(tf.tile(tf.expandDims(v, 3), [1, 1, 1, G, 1]), [B, T, H, model.cfg.d_head]) : v;
        const wo = model.params[`blocks.${l}.attn.W_O`]; // [H, dh, d]
        const out = tf.einsum('bthd,hde->bthe', vh, wo);
        return tf.mean(tf.norm(out, 'euclidean', -1), 2); // mean over heads: [B, T]
      });
      const vnorm = vnormT.arraySync() as number[][];
      vnormT.dispose();
      const rnormT = tf.tidy(() => tf.norm(cache.get(`blocks.${l}.hook_resid_post` as never) as tf.Tensor, 'euclidean', -1));
      const rnorm = rnormT.arraySync() as number[][];
      rnormT.dispose();
      const acc = { sn: [] as number[], st: [] as number[], pt: [] as number[], pn: [] as number[], vb: [] as number[], vo: [] as number[], rb: [] as number[], ro: [] as number[] };
      for (let b = 0; b < B; b++) {
        acc.vb.push(vnorm[b][0]);
        acc.rb.push(rnorm[b][0]);
        for (let t = 1; t < T; t++) {
          acc.vo.push(vnorm[b][t]);
          acc.ro.push(rnorm[b][t]);
          for (let h = 0; h < H; h++) {
            const row = A[b][h][t];
            if (batch.triggerMask[b][t]) {
              acc.st.push(row[0]);
              acc.pt.push(row[t - 1]);
            } else if (batch.nonTriggerMask[b][t]) {
              acc.sn.push(row[0]);
              acc.pn.push(row[t - 1]);
            }
          }
        }
      }
      layers.push({
        sinkNonTrigger: mean(acc.sn),
        sinkTrigger: mean(acc.st),
        prevTrigger: mean(acc.pt),
        prevNonTrigger: mean(acc.pn),
        valueNormBos: mean(acc.vb),
        valueNormOthers: mean(acc.vo),
        residNormBos: mean(acc.rb),
        residNormOthers: mean(acc.ro),
      });
    }
  } finally {
    logits.dispose();
    cache.dispose();
  }
  const excess = bbExcessLoss(nllRows, batch);
  let backcopyLayer = 0;
  layers.forEach((m, l) => {
    if (m.prevTrigger > layers[backcopyLayer].prevTrigger) backcopyLayer = l;
  });
  return { layers, excess, backcopyLayer };
}

export interface BBTrainOptions extends TrainRecipeOptions {
  /** Called at step 0 and every evalEvery steps with the per-layer measures (for dynamics.json). */
  onMeasures?: (step: number, m: BBMeasures) => void;
  /** Steps at which to hand out a checkpoint copy (disposed after onCheckpoint returns). */
  checkpointSteps?: number[];
  onCheckpoint?: (step: number, model: HookedTransformer) => Promise<void> | void;
  /** Sequences in the fixed eval batch used during training (default 16). */
  evalBatch?: number;
}

/** Train the BB model from a seeded random init. MLP biases stay at zero (as the paper's MLP). */
export async function trainBB(o: BBTrainOptions = {}): Promise<TrainedZooModel> {
  const task = bbTask();
  const seed = o.seed ?? BB_RECIPE.seed;
  const steps = o.steps ?? BB_RECIPE.steps;
  const batchSize = o.batch ?? BB_RECIPE.batch;
  const evalEvery = o.evalEvery ?? BB_RECIPE.evalEvery;
  const model = randomModel(bbConfig(task), { seed, std: 0.02, tokenizer: bbTokenizer(task), name: 'bb' });
  const tr = new Trainable(model, (n) => realParam(model, n) && !/mlp\.b_(in|out)$/.test(n));
  const evalB = sampleBigramBackcopy(task, o.evalBatch ?? 16, deriveSeed(seed, 999));
  const ckpts = new Set(o.checkpointSteps ?? []);
  const measure = (step: number) => {
    const snap = tr.snapshot();
    try {
      const m = bbMeasures(snap, evalB);
      o.onMeasures?.(step, m);
      return m;
    } finally {
      snap.dispose();
    }
  };
  let result: TrainResult;
  try {
    if (o.onMeasures) measure(0);
    result = await train<{ x: tf.Tensor2D; y: tf.Tensor2D }>({
      ...recipeOptions(BB_RECIPE, o, tr.vars, steps, seed),
      batches: (step) => {
        const b = sampleBigramBackcopy(task, batchSize, deriveSeed(seed, step));
        const T = task.seqLen;
        return {
          x: tf.tensor2d(b.tokens.map((r) => r.slice(0, T - 1)), [batchSize, T - 1], 'int32'),
          y: tf.tensor2d(b.targets, [batchSize, T - 1], 'int32'),
        };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return tf.mean(tokenNll(model.forward(b.x), b.y)) as tf.Scalar;
      },
      evalEvery,
      evalFn: (step) => {
        const m = measure(step);
        const bl = m.layers[m.backcopyLayer];
        const v = { excessTrigger: m.excess.trigger ?? 0, excessNonTrigger: m.excess.nonTrigger ?? 0, sink: bl.sinkNonTrigger, prevTrigger: bl.prevTrigger };
        o.onEval?.(step, v);
        return v;
      },
      checkpointEvery: ckpts.size ? 1 : undefined,
      onCheckpoint: async (step) => {
        if (!ckpts.has(step) || !o.onCheckpoint) return;
        const snap = tr.snapshot();
        try {
          await o.onCheckpoint(step, snap);
        } finally {
          snap.dispose();
        }
      },
    });
  } finally {
    tr.finish();
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) metrics.measures = bbMeasures(model, bbEvalBatch(deriveSeed(seed, 4242), 32));
  return {
    model,
    result,
    metrics,
    recipe: { ...BB_RECIPE, steps, batch: batchSize, seed, evalEvery, task: BB_TASK },
  };
}

// =============================================================================================
// recall: needle retrieval

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
  return {
    model_type: 'llama',
    architectures: ['LlamaForCausalLM'],
    vocab_size: RECALL_VOCAB.length,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 4,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: 'silu',
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: RECALL_FORMAT.bosId,
    eos_token_id: RECALL_FORMAT.periodToken,
    torch_dtype: 'float32',
  };
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

/** Top-1 accuracy of the answer at the last position over a length x depth grid (fresh seeded data). */
export function recallAccuracyGrid(
  model: HookedTransformer,
  o: { lengths?: number[]; depths?: number[]; n?: number; seed?: number } = {},
): RecallGrid {
  const lengths = o.lengths ?? RECALL_FORMAT.evalLengths;
  const depths = o.depths ?? RECALL_FORMAT.evalDepths;
  const n = o.n ?? 20;
  const seed = o.seed ?? 777;
  const accuracy = lengths.map((len, li) =>
    depths.map((d, di) => {
      const ex = recallBatch(n, len, deriveSeed(seed, li, di), d);
      const pred = tf.tidy(() => {
        const logits = model.forward(ex.map((e) => e.tokens), { logitPositions: ex.map(() => len - 1) });
        return tf.argMax(tf.squeeze(logits, [1]), -1);
      });
      const p = pred.dataSync();
      pred.dispose();
      let ok = 0;
      ex.forEach((e, i) => (ok += p[i] === e.answer[0] ? 1 : 0));
      return ok / n;
    }),
  );
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
    result = await train<{ x: tf.Tensor2D; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(RECALL_RECIPE, o, tr.vars, steps, seed),
      batches: (step) => {
        const s = deriveSeed(seed, step);
        const len = lo + rng(s).int(hi - lo + 1);
        const ex = recallBatch(batchSize, len, s);
        // Only the answer (read at the last position) is scored.
        const x = ex.map((e) => e.tokens);
        const y = ex.map((e) => [...e.tokens.slice(1), e.answer[0]]);
        const w = ex.map(() => Array.from({ length: len }, (_, t) => (t === len - 1 ? 1 : 0)));
        return { x: tf.tensor2d(x, undefined, 'int32'), y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(w) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return weightedNll(model.forward(b.x), b.y, b.w);
      },
      evalEvery: o.evalEvery ?? RECALL_RECIPE.evalEvery,
      evalFn: snapshotEval(tr, o, (snap) => ({ accuracy: recallAccuracyGrid(snap, { lengths: [64, 112], depths: [0.1, 0.5, 0.9], n: 8, seed: 99 }).mean })),
    });
  } finally {
    tr.finish();
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) metrics.grid = recallAccuracyGrid(model, { n: 40, seed: 777 });
  return {
    model,
    result,
    metrics,
    recipe: { ...RECALL_RECIPE, steps, batch: batchSize, seed, format: RECALL_FORMAT },
  };
}

// =============================================================================================
// ioi: indirect object identification

/** HF `Whitespace` pre-tokenisation: \w+ | [^\w\s]+ . */
function ioiWords(text: string): string[] {
  return text.match(/\w+|[^\w\s]+/g) ?? [];
}

function ioiVocab(): string[] {
  const words = new Set<string>();
  for (const t of [...BABA_TEMPLATES, ...ABBA_TEMPLATES, ...ABC_TEMPLATES]) {
    for (const w of ioiWords(t.replace(/\[(A|B|C|PLACE|OBJECT)\]/g, ' '))) words.add(w);
  }
  for (const w of [...PLACES, ...OBJECTS]) words.add(w);
  const names = new Set(NAMES);
  const other = [...words].filter((w) => !names.has(w)).sort();
  return ['<bos>', '<unk>', ...other, ...NAMES];
}

/** Word-level IOI vocabulary: <bos>, <unk>, template words and punctuation, places, objects, then the 99 names. */
export const IOI_VOCAB: readonly string[] = ioiVocab();

/** Held-out split: 20 names (seeded draw) and 3 template ids (in both BABA and ABBA order). */
export const IOI_SPLIT = (() => {
  const r = rng(20240);
  const heldOutNames = r.sample(NAMES, 20).sort();
  const heldOutTemplates = [2, 7, 12];
  return {
    heldOutNames,
    trainNames: NAMES.filter((n) => !heldOutNames.includes(n)),
    heldOutTemplates,
    trainTemplates: BABA_TEMPLATES.map((_, i) => i).filter((i) => !heldOutTemplates.includes(i)),
  };
})();

export function ioiConfig(): Record<string, unknown> {
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: IOI_VOCAB.length,
    n_positions: 32,
    n_embd: 64,
    n_layer: 3,
    n_head: 4,
    n_inner: 256,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    tie_word_embeddings: true,
    bos_token_id: 0,
    eos_token_id: 0,
    torch_dtype: 'float32',
  };
}

/** Word-level tokenizer with HF's `Whitespace` pre-tokenizer (so "store." is "store" + "."). */
export function ioiTokenizer(): Tokenizer {
  const json = wordLevelTokenizerJson([...IOI_VOCAB], { specialTokens: ['<bos>'], unkToken: '<unk>' });
  json.pre_tokenizer = { type: 'Whitespace' };
  return new Tokenizer(json, tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: 32 }), 'ioi tokenizer.json');
}

/** The IOI tokenizer interface of src/circuits/ioi.ts for a tflens Tokenizer. */
export function ioiTokenizerAdapter(tk: Tokenizer): IOITokenizer {
  return { encode: (t) => tk.encode(t), decode: (ids) => tk.decode(ids), bosTokenId: tk.tokenToId('<bos>') };
}

/** IOI prompts restricted to a split (its names and template ids), seeded. */
export function ioiSplitDataset(tk: IOITokenizer, split: 'train' | 'heldout', n: number, seed: number): IOIDataset {
  const names = split === 'train' ? IOI_SPLIT.trainNames : IOI_SPLIT.heldOutNames;
  const keep = new Set(split === 'train' ? IOI_SPLIT.trainTemplates : IOI_SPLIT.heldOutTemplates);
  const parts: IOIDataset[] = [];
  let have = 0;
  for (let k = 0; have < n && k < 1000; k++) {
    const ds = generateIOI(tk, { n: Math.max(16, 3 * n), seed: deriveSeed(seed, k), names });
    parts.push(ds);
    have += ds.templateIds.filter((t) => keep.has(t)).length;
  }
  const idx: Array<[number, number]> = [];
  parts.forEach((ds, d) => ds.templateIds.forEach((t, i) => keep.has(t) && idx.push([d, i])));
  return subsetIOI(parts, idx.slice(0, n));
}

function subsetIOI(parts: IOIDataset[], idx: Array<[number, number]>): IOIDataset {
  const first = parts[0];
  const pick = <K extends keyof IOIDataset>(k: K) => idx.map(([d, i]) => (parts[d][k] as unknown as unknown[])[i]);
  const wordIdx = Object.fromEntries(Object.keys(first.wordIdx).map((k) => [k, idx.map(([d, i]) => parts[d].wordIdx[k as keyof IOIDataset['wordIdx']][i])]));
  return {
    ...first,
    prompts: pick('prompts') as string[],
    texts: pick('texts') as string[],
    tokens: pick('tokens') as number[][],
    ioTokens: pick('ioTokens') as number[],
    sTokens: pick('sTokens') as number[],
    ioNames: pick('ioNames') as string[],
    sNames: pick('sNames') as string[],
    s1Names: pick('s1Names') as string[],
    cNames: pick('cNames') as string[],
    places: pick('places') as string[],
    objects: pick('objects') as string[],
    templateIds: pick('templateIds') as number[],
    templateKinds: pick('templateKinds') as IOIDataset['templateKinds'],
    wordIdx: wordIdx as IOIDataset['wordIdx'],
  };
}

export interface IOIEval {
  meanLogitDiff: number;
  /** Fraction of prompts with logit(IO) > logit(S). */
  accuracy: number;
  /** Fraction where IO is the top-1 prediction. */
  top1: number;
  n: number;
  seed: number;
  split: 'train' | 'heldout';
}

/** Mean logit difference and accuracy on a fresh seeded IOI set of a split (left-padded batch). */
export function ioiEvaluate(model: HookedTransformer, o: { split?: 'train' | 'heldout'; n?: number; seed?: number } = {}): IOIEval {
  const split = o.split ?? 'heldout';
  const n = o.n ?? 100;
  const seed = o.seed ?? 31337;
  if (!model.tokenizer) throw new ValueError('ioiEvaluate model', 'the model has no tokenizer');
  const tk = ioiTokenizerAdapter(model.tokenizer);
  const ds = ioiSplitDataset(tk, split, n, seed);
  const T = Math.max(...ds.tokens.map((t) => t.length));
  const ids = ds.tokens.map((t) => [...new Array(T - t.length).fill(0), ...t]);
  const mask = ds.tokens.map((t) => [...new Array(T - t.length).fill(0), ...new Array(t.length).fill(1)]);
  const logits = model.forward(ids, { attentionMask: mask });
  try {
    const ld = logitDiff(logits, ds, { padding: 'left' });
    const topT = tf.tidy(() => tf.argMax(tf.squeeze(tf.slice(logits, [0, T - 1, 0], [ds.tokens.length, 1, model.cfg.d_vocab]), [1]), -1));
    const top = topT.dataSync();
    topT.dispose();
    let t1 = 0;
    ds.ioTokens.forEach((io, i) => (t1 += top[i] === io ? 1 : 0));
    return {
      meanLogitDiff: ld.mean,
      accuracy: ld.perPrompt.filter((x) => x > 0).length / ld.perPrompt.length,
      top1: t1 / ds.tokens.length,
      n: ds.tokens.length,
      seed,
      split,
    };
  } finally {
    logits.dispose();
  }
}

export const IOI_RECIPE = {
  steps: 700, batch: 64, lr: 3e-3, warmupSteps: 30, weightDecay: 0.01, betas: [0.9, 0.99] as [number, number], gradClip: 1.0, seed: 3, evalEvery: 50,
  ioWeight: 10, nameEmbedStd: 0.15,
};

/**
 * Train the IOI model. Name embeddings are fixed random vectors (not trained; tied unembedding), so
 * the model has to learn a name-agnostic copy/suppression mechanism that transfers to held-out
 * names. Loss: next-token loss on every position, with the final IO prediction weighted ioWeight.
 */
export async function trainIOI(o: TrainRecipeOptions = {}): Promise<TrainedZooModel> {
  const R = { ...IOI_RECIPE, ...(o.overrides ?? {}) };
  const seed = o.seed ?? R.seed;
  const steps = o.steps ?? R.steps;
  const batchSize = o.batch ?? R.batch;
  const tok = ioiTokenizer();
  const model = randomModel(ioiConfig(), { seed, std: 0.02, tokenizer: tok, name: 'ioi' });
  const V = IOI_VOCAB.length;
  const isName = new Array(V).fill(0);
  NAMES.forEach((n) => (isName[IOI_VOCAB.indexOf(n)] = 1));
  const nameMask = tf.tensor2d(isName, [V, 1]);
  const nameEmb = tf.tidy(() => tf.mul(tf.randomNormal([V, model.cfg.d_model], 0, R.nameEmbedStd, 'float32', deriveSeed(seed, 77)), nameMask));
  const tr = new Trainable(model, (n) => realParam(model, n), (p) => {
    // W_E = trainable rows for non-names, fixed random rows for names; W_U tied.
    p['embed.W_E'] = tf.add(tf.mul(p['embed.W_E'], tf.sub(1, nameMask)), nameEmb);
    p['unembed.W_U'] = tf.transpose(p['embed.W_E']);
    return p;
  });
  const atk = ioiTokenizerAdapter(tok);
  const T = ioiConfig().n_positions as number;
  let pool: IOIDataset | null = null;
  let poolPos = 0;
  let refills = 0;
  const nextPrompts = (k: number) => {
    const rows: { tokens: number[]; io: number }[] = [];
    while (rows.length < k) {
      if (!pool || poolPos >= pool.tokens.length) {
        pool = ioiSplitDataset(atk, 'train', 512, deriveSeed(seed, 5000, refills++));
        poolPos = 0;
      }
      rows.push({ tokens: pool.tokens[poolPos], io: pool.ioTokens[poolPos] });
      poolPos++;
    }
    return rows;
  };
  let result: TrainResult;
  try {
    result = await train<{ x: tf.Tensor2D; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(R, o, tr.vars, steps, seed),
      batches: () => {
        const rows = nextPrompts(batchSize);
        // Full sentence = prompt + IO; right-padded (weight 0; causal, so pads are never attended).
        const x: number[][] = [];
        const y: number[][] = [];
        const w: number[][] = [];
        const Tb = Math.max(...rows.map((r) => r.tokens.length));
        for (const r of rows) {
          const full = [...r.tokens, r.io];
          if (full.length > T + 1) throw new ValueError('trainIOI prompt', expectedFound(`<= ${T + 1} tokens`, full.length));
          const xi = full.slice(0, -1);
          const yi = full.slice(1);
          const wi = yi.map((_, t) => (t === yi.length - 1 ? R.ioWeight : 1));
          const L = xi.length;
          x.push([...xi, ...new Array(Tb - L).fill(0)]);
          y.push([...yi, ...new Array(Tb - L).fill(0)]);
          w.push([...wi, ...new Array(Tb - L).fill(0)]);
        }
        return { x: tf.tensor2d(x, undefined, 'int32'), y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(w) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return weightedNll(model.forward(b.x), b.y, b.w);
      },
      evalEvery: o.evalEvery ?? R.evalEvery,
      evalFn: snapshotEval(tr, o, (snap) => {
        const h = ioiEvaluate(snap, { split: 'heldout', n: 64, seed: 11 });
        return { heldoutLogitDiff: h.meanLogitDiff, heldoutAccuracy: h.accuracy };
      }),
    });
  } finally {
    tr.finish();
    tf.dispose([nameMask, nameEmb]);
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) {
    metrics.heldout = ioiEvaluate(model, { split: 'heldout', n: 200, seed: 31337 });
    metrics.train = ioiEvaluate(model, { split: 'train', n: 200, seed: 31337 });
  }
  return {
    model,
    result,
    metrics,
    recipe: { ...R, steps, batch: batchSize, seed, split: IOI_SPLIT },
  };
}

// =============================================================================================
// induction-handmade

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
  return {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    vocab_size: D.vocab,
    n_positions: D.nCtx,
    n_embd: D.dModel,
    n_layer: 2,
    n_head: D.nHeads,
    n_inner: 4,
    activation_function: 'relu',
    layer_norm_epsilon: 1e-5,
    resid_pdrop: 0,
    embd_pdrop: 0,
    attn_pdrop: 0,
    tie_word_embeddings: true,
    bos_token_id: 0,
    eos_token_id: 0,
    torch_dtype: 'float32',
  };
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

/** Accuracy on the repeated half and the attention of the two circuit heads ([layer, head]). */
export function inductionEvaluate(
  model: HookedTransformer,
  data: RepeatedBatch,
  heads: { prev: [number, number]; induction: [number, number] } = { prev: INDUCTION_DESIGN.prevHead, induction: INDUCTION_DESIGN.inductionHead },
): InductionEval {
  const R = data.blockLength;
  const off = data.offset;
  const B = data.tokens.length;
  const [pl, ph] = heads.prev;
  const [il, ih] = heads.induction;
  const { logits, cache } = model.runWithCache(data.tokens, { namesFilter: [`blocks.${pl}.attn.hook_pattern`, `blocks.${il}.attn.hook_pattern`] as never });
  try {
    const headPattern = (l: number, h: number) => {
      const t = tf.tidy(() => tf.squeeze(tf.slice(cache.get(`blocks.${l}.attn.hook_pattern` as never) as tf.Tensor, [0, h, 0, 0], [-1, 1, -1, -1]), [1]));
      const a = t.arraySync() as number[][][];
      t.dispose();
      return a;
    };
    const predT = tf.tidy(() => tf.argMax(logits, -1));
    const pred = predT.arraySync() as number[][];
    predT.dispose();
    const P0 = headPattern(pl, ph);
    const P1 = headPattern(il, ih);
    let ok = 0;
    let n = 0;
    const prevA: number[] = [];
    const indA: number[] = [];
    for (let b = 0; b < B; b++) {
      const x = data.tokens[b];
      for (let i = 1; i < x.length; i++) prevA.push(P0[b][i][i - 1]);
      // queries i in the second repeat whose next token is also in it: i = off + R + k, k = 0..R-2
      for (let k = 0; k < R - 1; k++) {
        const i = off + R + k;
        ok += pred[b][i] === x[i + 1] ? 1 : 0;
        n++;
        indA.push(P1[b][i][i - R + 1]);
      }
    }
    return { accuracy: ok / n, prevTokenAttention: mean(prevA), inductionAttention: mean(indA) };
  } finally {
    logits.dispose();
    cache.dispose();
  }
}

// =============================================================================================
// The zoo record and saving

export interface ZooEntry {
  name: ZooName;
  /** Folder relative to the repository root. */
  dir: string;
  architecture: 'gpt2' | 'llama';
  description: string;
  /** Task metadata (also written to task.json). */
  task: () => Record<string, unknown>;
}

export const ZOO: Record<ZooName, ZooEntry> = {
  bb: {
    name: 'bb',
    dir: 'fixtures/models/bb',
    architecture: 'gpt2',
    description: 'Bigram-Backcopy (Guo et al.): 3-layer GPT-2, one head per layer, ReLU MLP with zero biases',
    task: () => {
      const t = bbTask();
      return {
        task: 'bigram-backcopy', options: BB_TASK, triggers: t.triggers, triggerChars: t.triggers.map((i) => t.chars[i]), bosId: t.bosId, unkId: t.unkId,
        dVocab: t.dVocab, seqLen: t.seqLen, evalSeed: 12345, regenerate: 'bbEvalBatch(seed, batch) in src/tasks/model-zoo.ts',
      };
    },
  },
  recall: {
    name: 'recall',
    dir: 'fixtures/models/recall',
    architecture: 'llama',
    description: 'Needle retrieval: 2-layer, 4-head LLaMA (rotary, RMSNorm, gated SiLU MLP)',
    task: () => ({ task: 'needle', format: RECALL_FORMAT, vocab: RECALL_VOCAB, evalSeed: 777, regenerate: 'recallExample(length, depth, seed) / recallAccuracyGrid in src/tasks/model-zoo.ts' }),
  },
  ioi: {
    name: 'ioi',
    dir: 'fixtures/models/ioi',
    architecture: 'gpt2',
    description: 'Synthetic IOI over the exact templates and names: 3-layer, 4-head GPT-2 with a word-level tokenizer',
    task: () => ({ task: 'ioi', split: IOI_SPLIT, evalSeed: 31337, regenerate: "ioiSplitDataset(tokenizer, 'heldout', n, seed) / ioiEvaluate in src/tasks/model-zoo.ts" }),
  },
  'induction-handmade': {
    name: 'induction-handmade',
    dir: 'fixtures/models/induction-handmade',
    architecture: 'gpt2',
    description: 'Hand-built 2-layer attention-only GPT-2: previous-token head 0.0, induction head 1.0 (K-composition)',
    task: () => ({ task: 'induction', design: INDUCTION_DESIGN, heads: ['0.0', '1.0'], evalSeed: 2024, regenerate: 'inductionEvalBatch(seed, batch, blockLength) in src/tasks/model-zoo.ts' }),
  },
};

/** Save a zoo model as an HF folder plus task.json. */
export async function saveZooModel(name: ZooName, model: HookedTransformer, dir: string, extra: Record<string, unknown> = {}): Promise<void> {
  const { promises: fsp } = await import('node:fs');
  const path = await import('node:path');
  await saveModel(model, dir);
  await fsp.writeFile(path.join(dir, 'task.json'), JSON.stringify({ ...ZOO[name].task(), ...extra }, null, 2) + '\n');
}

/** Fixed small token rows per zoo model, for the HF logits check (scripts/zoo-logits.ts). */
export function zooProbeTokens(name: ZooName): number[][] {
  switch (name) {
    case 'bb':
      return bbEvalBatch(5, 2).tokens.map((r) => r.slice(0, 33));
    case 'recall':
      return [recallExample(48, 0.5, 5).tokens, recallExample(48, 0.2, 6).tokens];
    case 'ioi': {
      const tk = ioiTokenizerAdapter(ioiTokenizer());
      const ds = ioiSplitDataset(tk, 'heldout', 2, 5);
      const T = Math.min(...ds.tokens.map((t) => t.length));
      return ds.tokens.map((t) => t.slice(0, T));
    }
    case 'induction-handmade':
      return inductionEvalBatch(5, 2, 12).tokens;
  }
}
