/**
 * Attention-sink emergence (Gu et al., "When Attention Sink Emerges in Language Models", code
 * sail-sg/Attention-Sink) on the bb recipe: Sink_1^eps of a model measured over training, with one of
 * the paper's factors varied (the weight-decay ratio, scripts/loss_function/run_decay.sh in the
 * authors' repository). The metric is tfl.sinks.sinkRates (the authors' compute_attention_sink,
 * eps 0.3) on a fixed seeded batch of BB sequences, read from the attention patterns of every layer.
 *
 * The recipe (BB_EMERGENCE) and scripts/sink-emergence.ts reproduce fixtures/models/bb/emergence.json
 * by seed: every run starts from bbInitModel(seed) and draws the same batches; only the varied factor
 * differs between runs. docs/methods/sinks.md ("Emergence during training") describes the log.
 */
import path from 'node:path';
import { FormatError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { readJsonFile } from '../io/json.js';
import type { HookedTransformer, ModelView } from '../model/index.js';
import { sinkRates } from '../analyses/sinks.js';
import { BB_RECIPE, bbEvalBatch, bbInitModel, checkpointSeries, trainBB, type CheckpointPoint } from './bb.js';
import { mean } from './common.js';

/** The recipe factors an emergence run may vary (numeric fields of BB_RECIPE). */
export type EmergenceFactor = 'weightDecay' | 'lr';

/** The shipped emergence study: the bb recipe with the weight-decay ratio varied. */
export const BB_EMERGENCE = {
  factor: 'weightDecay' as EmergenceFactor,
  /**
   * The ratios compared: the bb recipe's own (1e-4, no decay to speak of), the authors' default 0.1,
   * then 0.3, 0.5 (the paper's strongest sink), 1, 2 and 4 (the paper's collapse is at 2 and 5).
   */
  values: [1e-4, 0.1, 0.3, 0.5, 1, 2, 4],
  /**
   * Updates per run: 600 of the recipe's 1500 (warmup 30, then the cosine over 600 steps), to keep the
   * runs within a CPU budget; the shipped model's sink is in place by step 400 (its checkpoints).
   */
  steps: 600,
  /** Sink_1 is measured at step 0, at the early steps and every `every` steps. */
  early: [10, 25],
  every: 50,
  /** eps of Sink_k^eps (the authors' 0.3). */
  eps: 0.3,
  /** The measurement batch: bbEvalBatch(evalSeed, evalSequences), its 64 input positions (the paper samples 100 sequences of T = 64). */
  evalSeed: 2026,
  evalSequences: 100,
  seed: BB_RECIPE.seed,
};

/** The steps at which an emergence run measures Sink_1: 0, the early steps, then every `every` steps and the last. */
export function emergenceSteps(steps: number, every: number = BB_EMERGENCE.every, early: readonly number[] = BB_EMERGENCE.early): number[] {
  const s = new Set<number>([0, ...early.filter((e) => e < steps)]);
  for (let t = every; t < steps; t += every) s.add(t);
  s.add(steps);
  return [...s].sort((a, b) => a - b);
}

/** The input rows of the measurement batch: BOS + 63 characters (the positions the model reads in training). */
export function emergenceTokens(seed: number = BB_EMERGENCE.evalSeed, n: number = BB_EMERGENCE.evalSequences): number[][] {
  const b = bbEvalBatch(seed, n);
  return b.tokens.map((r) => r.slice(0, r.length - 1));
}

/** Sink_1^eps of a model and the first-token column mean alpha_1 of each layer (mean over its heads). */
export interface SinkPoint {
  /** Sink_1^eps in percent (100 x share of (prompt, layer, head) with alpha_1 > eps). */
  sink1: number;
  /** alpha1[layer]: alpha_1 averaged over the prompts and the layer's heads. */
  alpha1: number[];
}

/**
 * Sink_1^eps of `model` on host token rows (unpadded, one length), through tfl.sinks.sinkRates on the
 * attention patterns of every layer. Leaves no tensors behind.
 */
export async function sinkPoint(model: ModelView, tokens: number[][], eps: number = BB_EMERGENCE.eps): Promise<SinkPoint> {
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => actName('pattern', l));
  const { logits, cache } = await model.runWithCache(tokens, { namesFilter: names });
  try {
    const r = await sinkRates(
      names.map((n) => cache.get(n)),
      { eps, ks: [1] },
    );
    return { sink1: r.rates[0], alpha1: r.alpha.map((heads) => mean(heads.map((a) => a[0]))) };
  } finally {
    logits.dispose();
    cache.dispose();
  }
}

/** One run of the emergence study: the factor's value, Sink_1 per measured step, and how training ended. */
export interface EmergenceRun {
  value: number;
  points: Array<{ step: number } & SinkPoint>;
  /** Last training loss, and the backcopy / bigram excess risks (bbMeasures) at the last step. */
  final: { trainLoss: number; excessTrigger: number; excessNonTrigger: number };
  timeS: number;
}

export interface EmergenceRunOptions {
  factor?: EmergenceFactor;
  value: number;
  steps?: number;
  seed?: number;
  eps?: number;
  /** Measurement rows (default emergenceTokens()). */
  tokens?: number[][];
  /** Measurement steps (default emergenceSteps(steps)). */
  at?: number[];
  /** Called with each point as it is measured. */
  onPoint?: (p: { step: number } & SinkPoint) => void;
  /** Called with a plain copy of the weights at these steps (e.g. to save a checkpoint). */
  saveSteps?: number[];
  onSave?: (step: number, model: HookedTransformer) => Promise<void> | void;
  progressLabel?: string | false;
  signal?: AbortSignal;
}

/**
 * Train the bb recipe with one factor set to `value` and measure Sink_1^eps at the given steps (the
 * init at step 0, then snapshots of the weights during training). Returns the run and the trained model
 * (the caller disposes it).
 */
export async function trainSinkEmergence(o: EmergenceRunOptions): Promise<{ run: EmergenceRun; model: HookedTransformer }> {
  const factor = o.factor ?? BB_EMERGENCE.factor;
  if (factor !== 'weightDecay' && factor !== 'lr') throw new ValueError('trainSinkEmergence factor', expectedFound("'weightDecay' | 'lr'", factor));
  if (!(Number.isFinite(o.value) && o.value >= 0)) throw new ValueError('trainSinkEmergence value', expectedFound('a finite number >= 0', o.value));
  const steps = o.steps ?? BB_EMERGENCE.steps;
  const seed = o.seed ?? BB_EMERGENCE.seed;
  const eps = o.eps ?? BB_EMERGENCE.eps;
  const tokens = o.tokens ?? emergenceTokens();
  const at = new Set(o.at ?? emergenceSteps(steps));
  const saves = new Set(o.saveSteps ?? []);
  const points: EmergenceRun['points'] = [];
  const record = (step: number, p: SinkPoint) => {
    points.push({ step, ...p });
    o.onPoint?.({ step, ...p });
  };
  const t0 = Date.now();
  if (at.has(0)) {
    const init = bbInitModel(seed);
    try {
      record(0, await sinkPoint(init, tokens, eps));
    } finally {
      init.dispose();
    }
  }
  const t = await trainBB({
    steps,
    seed,
    overrides: { [factor]: o.value },
    evalEvery: steps,
    finalEval: false,
    progressLabel: o.progressLabel ?? false,
    signal: o.signal,
    checkpointSteps: [...new Set([...at, ...saves])].filter((s) => s > 0),
    onCheckpoint: async (step, snap) => {
      if (at.has(step)) record(step, await sinkPoint(snap, tokens, eps));
      if (saves.has(step)) await o.onSave?.(step, snap);
    },
  });
  const last = t.result.evals[t.result.evals.length - 1]?.values ?? {};
  const run: EmergenceRun = {
    value: o.value,
    points,
    final: { trainLoss: t.result.loss[t.result.loss.length - 1], excessTrigger: last.excessTrigger ?? NaN, excessNonTrigger: last.excessNonTrigger ?? NaN },
    timeS: (Date.now() - t0) / 1000,
  };
  return { run, model: t.model };
}

/** A shipped F16 checkpoint of one run of the log, which a reader re-measures against the logged point. */
export interface EmergenceCheckpoint {
  value: number;
  step: number;
  /** Folder relative to the log's folder. */
  dir: string;
}

/** fixtures/models/bb/emergence.json: the study's recipe, definitions and runs (scripts/sink-emergence.ts). */
export interface EmergenceLog {
  description: string;
  /** What the paper claims for the varied factor, in words, with its source. */
  paper: { claim: string; source: string; values: number[]; sink1?: number[] };
  definitions: { metric: string; eps: number; tokens: string; function: string };
  recipe: Record<string, unknown>;
  factor: EmergenceFactor;
  runs: EmergenceRun[];
  checkpoints: EmergenceCheckpoint[];
  environment: string;
}

/** Read and check an emergence log (emergence.json). */
export async function readSinkEmergence(file: string): Promise<EmergenceLog> {
  const d = (await readJsonFile(file, 'emergence.json')) as EmergenceLog;
  const okPoint = (p: EmergenceRun['points'][number]) => Number.isInteger(p?.step) && Number.isFinite(p?.sink1) && Array.isArray(p?.alpha1);
  const okRun = (r: EmergenceRun) => Number.isFinite(r?.value) && Array.isArray(r?.points) && r.points.length > 0 && r.points.every(okPoint) && typeof r.final === 'object';
  if (!Array.isArray(d?.runs) || d.runs.length === 0 || !d.runs.every(okRun)) {
    throw new FormatError(file, expectedFound('runs: [{value, points: [{step, sink1, alpha1}], final}] (the format of scripts/sink-emergence.ts)', Array.isArray(d?.runs) ? 'runs of another format' : typeof d?.runs));
  }
  if (d.factor !== 'weightDecay' && d.factor !== 'lr') throw new FormatError(file, expectedFound('factor "weightDecay" | "lr"', JSON.stringify(d.factor)));
  if (!Array.isArray(d.checkpoints) || !d.checkpoints.every((c) => Number.isFinite(c?.value) && Number.isInteger(c?.step) && typeof c?.dir === 'string')) {
    throw new FormatError(file, expectedFound('checkpoints: [{value, step, dir}]', JSON.stringify(d.checkpoints)));
  }
  return d;
}

/** The folder of a logged checkpoint (its `dir` is relative to the log's folder). */
export function emergenceCheckpointDir(logFile: string, c: EmergenceCheckpoint): string {
  return path.join(path.dirname(logFile), c.dir);
}

/** Sink_1^eps of the shipped checkpoints of a zoo folder and of its final model, each at the step its task.json records. */
export function sinkCheckpointSeries(dir: string, tokens: number[][] = emergenceTokens(), eps: number = BB_EMERGENCE.eps): Promise<CheckpointPoint<SinkPoint>[]> {
  return checkpointSeries(dir, (m) => sinkPoint(m, tokens, eps));
}
