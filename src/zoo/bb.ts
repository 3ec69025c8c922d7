/**
 * The shipped bb model (fixtures/models/bb): a 3-layer, one-head-per-layer GPT-2 trained on the
 * Bigram-Backcopy task of Guo et al. ("Active-Dormant Attention Heads"), its recipe, and the
 * measures of its training dynamics: the attention sink, the value-state drain, the residual-state
 * peak and the backcopy / bigram risks. The measures follow the authors' code
 * (GuoTianYu2000/Active-Dormant-Attention, BBM/probe_utils.py get_dynamic_summary and get_risk);
 * tflens's earlier definitions stay as named variants. docs/methods/bigram-backcopy.md has the table.
 */
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { promises as fsp } from 'node:fs';
import { FormatError, ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookName } from '../hooks/names.js';
import { readJsonFile } from '../io/json.js';
import { loadModel, randomModel, Tokenizer, type HookedTransformer, type ModelView } from '../model/index.js';
import { deriveSeed } from '../util/random.js';
import { bbExcessLoss, bbTokenizerFiles, makeBigramBackcopy, oracleNext, sampleBigramBackcopy, type BBBatch, type BBOptions, type BBTask, type ExcessLoss } from '../data/bigram-backcopy.js';
import { bosStats } from '../analyses/dormant.js';
import type { ResidualStates } from '../analyses/sinks.js';
import { train, type TrainResult } from './train.js';
import { Trainable, gpt2Config, mean, realParam, recipeOptions, tokenNll, trainingLogits, type TrainRecipeOptions, type TrainedZooModel } from './common.js';

// ---------------------------------------------------------------------------------------------
// Task, config, recipe

/** The BB task of the shipped model: 65 characters, 3 triggers, length 65 (BOS + 64 characters). */
export const BB_TASK: BBOptions = { nChars: 65, k: 3, seqLen: 65, seed: 0 };

export function bbConfig(task: BBTask): Record<string, unknown> {
  return gpt2Config({ vocab: task.dVocab, nCtx: task.seqLen, dModel: 64, layers: 3, heads: 1, dMlp: 256, act: 'relu', tied: false, bos: task.bosId });
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

/** task.json of the bb model (saveZooModel adds the step counts). */
export function bbTaskJson(): Record<string, unknown> {
  const t = bbTask();
  return {
    task: 'bigram-backcopy', options: BB_TASK, triggers: t.triggers, triggerChars: t.triggers.map((i) => t.chars[i]), bosId: t.bosId, unkId: t.unkId,
    dVocab: t.dVocab, seqLen: t.seqLen, evalSeed: 12345, regenerate: 'bbEvalBatch(seed, batch) in src/zoo/bb.ts',
  };
}

// ---------------------------------------------------------------------------------------------
// Measures

export interface BBMeasureOptions {
  /**
   * Queries of the attention sink on non-trigger positions: 'all' (default, the authors'
   * `attn_weights[:, h, :, 0][~triggers_pos].mean()`, BBM/probe_utils.py line 288: query 0, BOS
   * itself, is a non-trigger position and counts) or 'after-bos' (tflens's earlier rule: t >= 1).
   */
  sinkQueries?: 'all' | 'after-bos';
  /**
   * Residual states of the residual-peak norms: 'hidden-states' (default: the L + 1 hidden states,
   * the inputs of the layers and, last, the stream after the final norm), 'resid-post' (the L layer
   * outputs: BBM/probe_utils.py line 290 `output[0, 0, :]`, tflens's earlier rule) or 'resid-pre'.
   */
  residual?: ResidualStates;
  /** The BB task the batch comes from (its oracle gives the risks); default the shipped task (bbTask()). */
  task?: BBTask;
}

export interface BBLayerMeasures {
  /** Mean attention to BOS from non-trigger queries (the attention sink; see BBMeasureOptions.sinkQueries). */
  sinkNonTrigger: number;
  /** Mean attention to BOS from trigger queries. */
  sinkTrigger: number;
  /** Mean attention to the previous token from trigger queries (the backcopy). */
  prevTrigger: number;
  /** Mean attention to the previous token from non-trigger queries t >= 1 (query 0 has no previous token). */
  prevNonTrigger: number;
  /** Raw ||v|| of the value state at BOS (the value-state drain, BBM/probe_utils.py line 292), mean over heads. */
  valueNormBos: number;
  /** Raw ||v_j|| over the other positions, mean over heads. */
  valueNormOthers: number;
  /** Variant: ||v_BOS W_O|| (the head's output at BOS; BBM/final-plots.ipynb, tflens's earlier valueNormBos). */
  valueOutNormBos: number;
  /** Variant: ||v_j W_O|| over the other positions. */
  valueOutNormOthers: number;
}

/** Norms of the residual states at BOS (the residual-state peak) and elsewhere. */
export interface BBResidualNorms {
  /** The hook point of each state (default: blocks.l.hook_resid_pre for every l, then ln_final.hook_normalized). */
  names: HookName[];
  /** normBos[s]: ||state s at BOS||. */
  normBos: number[];
  /** normOthers[s]: mean ||state s|| over the other positions. */
  normOthers: number[];
}

/**
 * The authors' risks (BBM/probe_utils.py get_risk, lines 240-248): per input position the cross
 * entropy of the model's prediction under the true next-token distribution, averaged over trigger
 * positions (backcopy risk) and non-trigger positions including position 0 (bigram risk); the
 * oracle's own risk (its entropy) is what a perfect model reaches, and the excess is the difference
 * (the authors plot the bigram risk minus the oracle's, BBM/final-plots.ipynb).
 */
export interface BBRisk {
  trigger: number;
  nonTrigger: number;
  oracleTrigger: number;
  oracleNonTrigger: number;
  excessTrigger: number;
  excessNonTrigger: number;
  nTrigger: number;
  nNonTrigger: number;
}

export interface BBMeasures {
  layers: BBLayerMeasures[];
  residual: BBResidualNorms;
  /** The authors' backcopy / bigram risks (the default excess-loss measure). */
  risk: BBRisk;
  /** Variant: the model's NLL of the sampled next token minus the oracle's (bbExcessLoss; non-trigger positions t >= 1). */
  excess: ExcessLoss;
  /** The layer with the largest attention to the previous token from trigger queries. */
  backcopyLayer: number;
  params: { sinkQueries: 'all' | 'after-bos'; residual: ResidualStates; positions: 'inputs' };
}

/** The input rows of a BB batch (every position that has a target), checked. */
function bbInputs(batch: BBBatch): number[][] {
  const rows = batch?.tokens;
  if (!Array.isArray(rows) || rows.length === 0 || !Array.isArray(rows[0]) || rows[0].length < 3) {
    throw new ShapeError('bbMeasures batch.tokens', expectedFound('a non-empty BB batch of sequences of length >= 3', Array.isArray(rows) ? `${rows.length} rows` : typeof rows));
  }
  const T = rows[0].length;
  for (const k of ['triggerMask', 'nonTriggerMask', 'targets'] as const) {
    const m = batch[k];
    const want = k === 'targets' ? T - 1 : T;
    if (!Array.isArray(m) || m.length !== rows.length || m.some((r) => !Array.isArray(r) || r.length < want)) {
      throw new ShapeError(`bbMeasures batch.${k}`, expectedFound(`${rows.length} rows of ${want}`, Array.isArray(m) ? `${m.length} rows` : typeof m));
    }
  }
  return rows.map((r, b) => {
    if (r.length !== T) throw new ShapeError(`bbMeasures batch.tokens[${b}]`, expectedFound(`${T} tokens`, r.length));
    return r.slice(0, T - 1);
  });
}

/** Attention to BOS and to the previous token, [B, H, N] per layer, and the log-probabilities [B, N, V]. */
async function attentionAndLogp(model: ModelView, x: number[][]): Promise<{ bos: number[][][][]; prev: number[][][][]; logp: tf.Tensor3D }> {
  const L = model.cfg.n_layers;
  const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_pattern` as HookName);
  const { logits, cache } = await model.runWithCache(x, { namesFilter: names });
  let parts: tf.Tensor[] = [];
  try {
    const N = x[0].length;
    parts = tf.tidy(() => {
      const shift = tf.tensor2d(Array.from({ length: N }, (_, i) => Array.from({ length: N }, (_, j) => (j === i - 1 ? 1 : 0)))); // [q, k]
      return names.flatMap((n) => {
        const pat = cache.get(n) as tf.Tensor4D; // [B, H, N, N]
        return [tf.squeeze(tf.slice(pat, [0, 0, 0, 0], [-1, -1, -1, 1]), [3]), tf.sum(tf.mul(pat, shift), -1)];
      });
    });
    const read = (await Promise.all(parts.map((t) => t.array()))) as number[][][][];
    return { bos: read.filter((_, i) => i % 2 === 0), prev: read.filter((_, i) => i % 2 === 1), logp: tf.tidy(() => tf.logSoftmax(logits)) };
  } finally {
    tf.dispose(parts);
    logits.dispose();
    cache.dispose();
  }
}

/** Sink and previous-token attention of one layer, split by trigger / non-trigger queries. */
function attentionSplit(bos: number[][][], prev: number[][][], batch: BBBatch, sinkQueries: 'all' | 'after-bos') {
  const acc = { sn: [] as number[], st: [] as number[], pt: [] as number[], pn: [] as number[] };
  bos.forEach((heads, b) =>
    heads.forEach((row, h) =>
      row.forEach((a, t) => {
        if (batch.triggerMask[b][t]) {
          acc.st.push(a);
          acc.pt.push(prev[b][h][t]);
        } else if (t === 0) {
          if (sinkQueries === 'all') acc.sn.push(a);
        } else {
          acc.sn.push(a);
          acc.pn.push(prev[b][h][t]);
        }
      }),
    ),
  );
  return { sinkNonTrigger: mean(acc.sn), sinkTrigger: mean(acc.st), prevTrigger: mean(acc.pt), prevNonTrigger: mean(acc.pn) };
}

/** The authors' risks (see BBRisk) and tflens's sampled excess loss, from the log-probabilities. */
async function risks(logp: tf.Tensor3D, batch: BBBatch, x: number[][], task: BBTask): Promise<{ risk: BBRisk; excess: ExcessLoss }> {
  const oracle = x.map((row) => row.map((_, t) => oracleNext(task, row, t)));
  const [ce, nll] = tf.tidy(() => {
    const p = tf.tensor3d(oracle);
    const ce = tf.neg(tf.sum(tf.where(tf.greater(p, 0), tf.mul(p, logp), tf.zerosLike(p)), -1));
    const tgt = tf.tensor2d(batch.targets.map((r) => r.slice(0, x[0].length)), undefined, 'int32');
    return [ce, tf.neg(tf.sum(tf.mul(logp, tf.oneHot(tgt, logp.shape[2])), -1))];
  });
  const [ceRows, nllRows] = (await Promise.all([ce.array(), nll.array()]).finally(() => tf.dispose([ce, nll]))) as number[][][];
  const g = { t: [] as number[], n: [] as number[], ot: [] as number[], on: [] as number[] };
  x.forEach((row, b) =>
    row.forEach((_, t) => {
      const h = oracle[b][t].reduce((s, q) => (q > 0 ? s - q * Math.log(q) : s), 0);
      const trig = batch.triggerMask[b][t];
      (trig ? g.t : g.n).push(ceRows[b][t]);
      (trig ? g.ot : g.on).push(h);
    }),
  );
  const risk: BBRisk = {
    trigger: mean(g.t), nonTrigger: mean(g.n), oracleTrigger: mean(g.ot), oracleNonTrigger: mean(g.on),
    excessTrigger: mean(g.t) - mean(g.ot), excessNonTrigger: mean(g.n) - mean(g.on), nTrigger: g.t.length, nNonTrigger: g.n.length,
  };
  return { risk, excess: bbExcessLoss(nllRows, batch) };
}

let shipped: BBTask | null = null;

/** The BB task behind a batch (default the shipped task), checked against the model's vocabulary and the batch's BOS. */
function bbTaskOf(batch: BBBatch, dVocab: number, given?: BBTask): BBTask {
  const task = given ?? (shipped ??= bbTask());
  if (task.dVocab !== dVocab) throw new ValueError('bbMeasures model', expectedFound(`the BB vocabulary (${task.dVocab} tokens)`, `${dVocab} logits`));
  if (batch.tokens.some((r) => r[0] !== task.bosId)) throw new ValueError('bbMeasures batch.tokens', expectedFound(`BOS (${task.bosId}) first in every row`, 'another token'));
  return task;
}

/**
 * Per-layer sink / drain, the residual peak and the risks of a model on a BB batch (bbEvalBatch),
 * with the authors' definitions by default. Like the authors (BBM/probe_utils.py lines 158-162),
 * the model reads the input positions (every token but the last; each has a target). Averages over
 * heads; BOS norms are means over sequences (every sequence has the same BOS state).
 */
export async function bbMeasures(model: ModelView, batch: BBBatch, opts: BBMeasureOptions = {}): Promise<BBMeasures> {
  const sinkQueries = opts.sinkQueries ?? 'all';
  if (sinkQueries !== 'all' && sinkQueries !== 'after-bos') throw new ValueError('bbMeasures sinkQueries', expectedFound("'all' | 'after-bos'", sinkQueries));
  const residual = opts.residual ?? 'hidden-states';
  const x = bbInputs(batch);
  const task = bbTaskOf(batch, model.cfg.d_vocab, opts.task);
  const norms = await bosStats(model, { tokens: x }, { residual });
  const { bos, prev, logp } = await attentionAndLogp(model, x);
  const { risk, excess } = await risks(logp, batch, x, task).finally(() => logp.dispose());
  const avg = (g: number[][], l: number) => mean(g[l]);
  const layers = bos.map((b, l) => ({
    ...attentionSplit(b, prev[l], batch, sinkQueries),
    valueNormBos: avg(norms.valueNormBos, l),
    valueNormOthers: avg(norms.valueNormOther, l),
    valueOutNormBos: avg(norms.valueOutNormBos, l),
    valueOutNormOthers: avg(norms.valueOutNormOther, l),
  }));
  let backcopyLayer = 0;
  layers.forEach((m, l) => {
    if (m.prevTrigger > layers[backcopyLayer].prevTrigger) backcopyLayer = l;
  });
  return {
    layers,
    residual: { names: norms.residNames, normBos: norms.residNormBos, normOthers: norms.residNormOther },
    risk,
    excess,
    backcopyLayer,
    params: { sinkQueries, residual, positions: 'inputs' },
  };
}

// ---------------------------------------------------------------------------------------------
// Training

export interface BBTrainOptions extends TrainRecipeOptions {
  /** Called at step 0 and every evalEvery steps with the per-layer measures (for dynamics.json). */
  onMeasures?: (step: number, m: BBMeasures) => void;
  /** Steps at which to hand out a checkpoint copy (disposed after onCheckpoint returns). */
  checkpointSteps?: number[];
  onCheckpoint?: (step: number, model: HookedTransformer) => Promise<void> | void;
  /** Sequences in the fixed eval batch used during training (default 16). */
  evalBatch?: number;
}

/** The eval values train() records for bb: the authors' excess risks and the backcopy layer's attention. */
function evalValues(m: BBMeasures): Record<string, number> {
  const bl = m.layers[m.backcopyLayer];
  return { excessTrigger: m.risk.excessTrigger, excessNonTrigger: m.risk.excessNonTrigger, sink: bl.sinkNonTrigger, prevTrigger: bl.prevTrigger };
}

/** The seeded random init every bb training run starts from (weights normal, std 0.02). */
export function bbInitModel(seed: number = BB_RECIPE.seed, task: BBTask = bbTask()): HookedTransformer {
  return randomModel(bbConfig(task), { seed, std: 0.02, tokenizer: bbTokenizer(task), name: 'bb' });
}

/**
 * Train the BB model from a seeded random init. MLP biases stay at zero (as the paper's MLP).
 * `overrides` replaces numeric fields of BB_RECIPE (e.g. { weightDecay: 0.1 }; recorded in the recipe).
 */
export async function trainBB(o: BBTrainOptions = {}): Promise<TrainedZooModel> {
  const task = bbTask();
  const R = { ...BB_RECIPE, ...(o.overrides ?? {}) };
  const seed = o.seed ?? R.seed;
  const steps = o.steps ?? R.steps;
  const batchSize = o.batch ?? R.batch;
  const evalEvery = o.evalEvery ?? R.evalEvery;
  const model = bbInitModel(seed, task);
  const tr = new Trainable(model, (n) => realParam(model, n) && !/mlp\.b_(in|out)$/.test(n));
  const evalB = sampleBigramBackcopy(task, o.evalBatch ?? 16, deriveSeed(seed, 999));
  const ckpts = new Set(o.checkpointSteps ?? []);
  const withSnapshot = async <R>(f: (snap: HookedTransformer) => Promise<R>): Promise<R> => {
    const snap = tr.snapshot();
    try {
      return await f(snap);
    } finally {
      snap.dispose();
    }
  };
  const measure = (step: number) =>
    withSnapshot(async (snap) => {
      const m = await bbMeasures(snap, evalB, { task });
      o.onMeasures?.(step, m);
      return m;
    });
  let result: TrainResult;
  try {
    if (o.onMeasures) await measure(0);
    result = await train<{ x: number[][]; y: tf.Tensor2D }>({
      ...recipeOptions(R, o, tr.vars, steps, seed),
      batches: (step) => {
        const b = sampleBigramBackcopy(task, batchSize, deriveSeed(seed, step));
        return { x: b.tokens.map((r) => r.slice(0, task.seqLen - 1)), y: tf.tensor2d(b.targets, [batchSize, task.seqLen - 1], 'int32') };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return tf.mean(tokenNll(trainingLogits(model, b.x), b.y)) as tf.Scalar;
      },
      evalEvery,
      evalFn: async (step) => {
        const v = evalValues(await measure(step));
        o.onEval?.(step, v);
        return v;
      },
      checkpointEvery: ckpts.size ? 1 : undefined,
      onCheckpoint: async (step) => {
        if (ckpts.has(step) && o.onCheckpoint) await withSnapshot(async (snap) => o.onCheckpoint!(step, snap));
      },
    });
  } finally {
    tr.finish();
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) metrics.measures = await bbMeasures(model, bbEvalBatch(deriveSeed(seed, 4242), 32));
  return { model, result, metrics, recipe: { ...R, steps, batch: batchSize, seed, evalEvery, task: BB_TASK } };
}

// ---------------------------------------------------------------------------------------------
// The shipped training record: checkpoints and dynamics.json

/** The training steps a zoo model folder records in its task.json: `step` (this checkpoint) and `steps` (the run's length). */
export async function zooSteps(dir: string): Promise<{ step: number; steps: number }> {
  const file = path.join(dir, 'task.json');
  const t = (await readJsonFile(file, 'task.json')) as Record<string, unknown>;
  const int = (v: unknown) => (Number.isInteger(v) && (v as number) >= 0 ? (v as number) : undefined);
  const steps = int(t?.steps);
  const step = int(t?.step) ?? steps;
  if (step === undefined || steps === undefined) {
    throw new FormatError(file, expectedFound('"steps" (the training run\'s length) and "step" (this checkpoint\'s) as non-negative integers', JSON.stringify({ step: t?.step, steps: t?.steps })));
  }
  return { step, steps };
}

export interface BBSeriesPoint {
  /** Training step of the weights (the final model: the run's `steps` from its task.json). */
  step: number;
  source: 'checkpoint' | 'final';
  measures: BBMeasures;
}

/** One model of a checkpoint series: its training step (from its task.json), where it lies, and what was measured. */
export interface CheckpointPoint<T> {
  step: number;
  source: 'checkpoint' | 'final';
  dir: string;
  value: T;
}

/**
 * `measure` applied to the checkpoints under `dir`/checkpoints/step-N and to the final model in `dir`,
 * each placed at the step its task.json records (zooSteps: the final model at the run's step count),
 * sorted by step. Each model is loaded, measured and disposed in turn.
 */
export async function checkpointSeries<T>(dir: string, measure: (model: HookedTransformer) => Promise<T>): Promise<CheckpointPoint<T>[]> {
  const ckDir = path.join(dir, 'checkpoints');
  const subdirs = (await fsp.readdir(ckDir).catch(() => [] as string[])).filter((d) => /^step-\d+$/.test(d)).map((d) => path.join(ckDir, d));
  const points: CheckpointPoint<T>[] = [];
  for (const [d, source] of [...subdirs.map((s) => [s, 'checkpoint'] as const), [dir, 'final'] as const]) {
    const { step } = await zooSteps(d);
    const m = await loadModel(d);
    try {
      points.push({ step, source, dir: d, value: await measure(m) });
    } finally {
      m.dispose();
    }
  }
  return points.sort((a, b) => a.step - b.step);
}

/**
 * bbMeasures of the checkpoints under `dir`/checkpoints/step-N and of the final model in `dir`, each
 * at the step its task.json records (the final model at the run's step count), sorted by step.
 */
export async function bbCheckpointSeries(dir: string, batch: BBBatch, opts: BBMeasureOptions = {}): Promise<BBSeriesPoint[]> {
  const series = await checkpointSeries(dir, (m) => bbMeasures(m, batch, opts));
  return series.map(({ step, source, value }) => ({ step, source, measures: value }));
}

/** How the measures of a dynamics.json were defined (the file states it: older logs used tflens's earlier variants). */
export interface BBDynamicsDefinitions {
  /** 'all' (the authors') or 'after-bos' (see BBMeasureOptions.sinkQueries). */
  sinkQueries: string;
  /** Which value norms the points hold. */
  value: string;
  /** The residual states behind `residual.names`. */
  residual: string;
  /** 'inputs' (the positions with a target, the authors') or every token. */
  positions: string;
  /** Which excess measure the points hold: the authors' risk (`risk`) and/or the sampled excess loss (`excess`). */
  excess: string;
}

/** One point of dynamics.json: the measures on the fixed training eval batch at a step. */
export interface BBDynamicsPoint {
  step: number;
  /** Attention measures and ||v W_O|| always; the raw ||v|| in logs written with the authors' definitions. */
  layers: Array<Omit<BBLayerMeasures, 'valueNormBos' | 'valueNormOthers'> & Partial<Pick<BBLayerMeasures, 'valueNormBos' | 'valueNormOthers'>>>;
  residual: BBResidualNorms;
  /** The authors' risks (logs written with the authors' definitions). */
  risk?: BBRisk;
  /** The sampled excess loss. */
  excess?: { trigger: number | null; nonTrigger: number | null };
}

export interface BBDynamics {
  definitions: BBDynamicsDefinitions;
  points: BBDynamicsPoint[];
}

/** The definitions dynamics.json records when scripts/train-zoo.ts writes it with the defaults of bbMeasures. */
export const BB_DYNAMICS_DEFINITIONS: BBDynamicsDefinitions = {
  sinkQueries: 'all',
  value: 'raw ||v|| (valueNormBos/Others) and ||v W_O|| (valueOutNormBos/Others)',
  residual: 'hidden-states',
  positions: 'inputs',
  excess: "the authors' risk (risk) and the sampled excess loss (excess)",
};

/** The training log `dir`/dynamics.json (written by scripts/train-zoo.ts bb), checked, with the definitions it states. */
export async function readBBDynamics(dir: string): Promise<BBDynamics> {
  const file = path.join(dir, 'dynamics.json');
  const d = (await readJsonFile(file, 'dynamics.json')) as { definitions?: unknown; points?: unknown };
  const pts = d?.points;
  const defs = d?.definitions as Record<string, unknown> | undefined;
  const okPoint = (p: BBDynamicsPoint) => Number.isInteger(p?.step) && Array.isArray(p?.layers) && Array.isArray(p?.residual?.names) && (p.risk !== undefined || p.excess !== undefined);
  if (!Array.isArray(pts) || !pts.every(okPoint)) {
    throw new FormatError(file, expectedFound('points: [{step, layers, residual, risk and/or excess}] (the format of scripts/train-zoo.ts)', Array.isArray(pts) ? 'points of another format' : typeof pts));
  }
  const keys = Object.keys(BB_DYNAMICS_DEFINITIONS);
  if (!defs || keys.some((k) => typeof defs[k] !== 'string')) throw new FormatError(file, expectedFound(`definitions {${keys.join(', ')}}`, JSON.stringify(defs)));
  return { definitions: defs as unknown as BBDynamicsDefinitions, points: pts as BBDynamicsPoint[] };
}
