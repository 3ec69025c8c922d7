/**
 * SAE training: Adam, seeded shuffling, batched or full-batch, unit-norm constraints re-imposed after
 * every step, no tensor kept between steps. The loop stays on the device: the logged losses are kept
 * there as scalars and read back together (one await) at the end, or at each log step only when
 * `onProgress` asks for them, so training many small SAEs (the discrete-SAE study) costs one readback
 * per SAE.
 *
 * Against the authors' loop (sae-circuits src/train.py lines 47-55: zero_grad, forward, loss, backward
 * with the unit-norm gradient hook, Adam step; the forward re-normalises the weights first, src/sae.py
 * line 290): the same steps, with the re-normalisation done after each step instead of before the next
 * forward (the same weights at every use). Adam uses torch's defaults (betas 0.9/0.999, eps 1e-8).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { rng as makeRng } from '../util/random.js';
import { SparseAutoencoder, type SAELoss } from './models.js';
import { saeMetrics, type SAEMetrics } from './metrics.js';
import { progress as progressBar } from '../progress.js';

export interface TrainProgress {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  mse: number;
  l1: number;
}

export interface TrainSAEOptions {
  /** Passes over a tensor dataset. Give epochs or steps (steps wins when both are given). */
  epochs?: number;
  /** Optimiser steps in total (required when data is a function). */
  steps?: number;
  /** Rows per step; default min(n, 1024). Use n for full-batch training. */
  batchSize?: number;
  /** Adam learning rate, default 1e-3. */
  lr?: number;
  /** Adam epsilon, default 1e-8 (torch's; tf.train.adam's own default is 1e-7). */
  epsilon?: number;
  /** Seed of the shuffling (the SAE's own seed sets its initialisation). Default 0. */
  seed?: number;
  /** Shuffle rows each epoch (default true; irrelevant for full batch). */
  shuffle?: boolean;
  /** Remove the gradient component parallel to unit-norm feature vectors before the step (default: true for 'paper'). */
  projectGradients?: boolean;
  /** Called at every log step with the losses (reading them back then; without it they are read once at the end). */
  onProgress?: (p: TrainProgress) => void;
  /** Record loss / mse / l1 every this many steps and at the last step (default max(1, floor(totalSteps / 100))). */
  logEvery?: number;
  /** Progress display (src/progress.ts): true (default), false, or a label. TFLENS_QUIET=1 silences it. */
  progress?: boolean | string;
  /** Compute final metrics on the tensor dataset (default true). */
  finalMetrics?: boolean;
  /** Stop after the current step when aborted; the SAE keeps what it learned (result.aborted = true). */
  signal?: AbortSignal;
}

export interface TrainSAEResult {
  /** Steps actually taken. */
  steps: number;
  /** True when opts.signal stopped the training early. */
  aborted: boolean;
  epochs: number;
  /** Losses at the log steps (loss = mse + lambda * l1, each on that step's batch, before its update). */
  history: { step: number[]; loss: number[]; mse: number[]; l1: number[] };
  /** Metrics of the trained SAE on the whole tensor dataset (absent for a batch function). */
  metrics?: SAEMetrics;
}

/** A batch source: called with the step index and a seeded uniform [0,1) generator; the returned tensor is disposed after use. */
export type BatchFn = (step: number, random: () => number) => tf.Tensor2D;

function posInt(where: string, v: unknown): number {
  if (!(typeof v === 'number' && Number.isInteger(v) && v > 0)) throw new ConfigError(where, expectedFound('a positive integer', v));
  return v;
}

function posNumber(where: string, v: unknown): number {
  if (!(typeof v === 'number' && Number.isFinite(v) && v > 0)) throw new ConfigError(where, expectedFound('a positive number', v));
  return v;
}

/** Rows, batch size and step counts of a training run, checked. */
function plan(sae: SparseAutoencoder, data: tf.Tensor2D | BatchFn, opts: TrainSAEOptions) {
  if (typeof data === 'function') {
    if (opts.steps === undefined) throw new ConfigError('steps', 'required when data is a batch function');
    if (opts.batchSize !== undefined) posInt('batchSize', opts.batchSize);
    return { n: 0, batchSize: 0, stepsPerEpoch: 1, totalSteps: posInt('steps', opts.steps) };
  }
  if (!(data instanceof tf.Tensor) || data.rank !== 2 || data.shape[1] !== sae.dIn) {
    throw new ShapeError('data', expectedFound(`a [n, ${sae.dIn}] tensor`, data instanceof tf.Tensor ? data.shape : typeof data));
  }
  const n = data.shape[0];
  if (n === 0) throw new ShapeError('data', expectedFound('at least one row', 0));
  const batchSize = opts.batchSize === undefined ? Math.min(n, 1024) : posInt('batchSize', opts.batchSize);
  if (batchSize > n) throw new ConfigError('batchSize', expectedFound(`at most n = ${n}`, batchSize));
  const stepsPerEpoch = Math.ceil(n / batchSize);
  let totalSteps: number;
  if (opts.steps !== undefined) totalSteps = posInt('steps', opts.steps);
  else if (opts.epochs !== undefined) totalSteps = posInt('epochs', opts.epochs) * stepsPerEpoch;
  else throw new ConfigError('epochs', 'give epochs or steps');
  return { n, batchSize, stepsPerEpoch, totalSteps };
}

/**
 * Losses of the log steps, kept on the device as [loss, mse, l1] triples until `read` moves them to the
 * history with one await (and checks them for NaN/Inf).
 */
class LossLog {
  readonly history = { step: [] as number[], loss: [] as number[], mse: [] as number[], l1: [] as number[] };
  private pending: Array<{ step: number; t: tf.Tensor1D }> = [];

  keep(step: number, l: SAELoss): void {
    this.pending.push({ step, t: tf.keep(tf.stack([l.loss, l.mse, l.l1]) as tf.Tensor1D) }); // kept past the step's tidy
  }

  get size(): number {
    return this.pending.length;
  }

  /** Read the pending losses into the history; returns the entries read, in step order. */
  async read(lr: number): Promise<Array<{ step: number; loss: number; mse: number; l1: number }>> {
    if (this.pending.length === 0) return [];
    const batch = this.pending;
    this.pending = [];
    const all = tf.concat(batch.map((e) => e.t));
    tf.dispose(batch.map((e) => e.t));
    const v = await all.data();
    all.dispose();
    return batch.map(({ step }, i) => {
      const [loss, mse, l1] = [v[3 * i], v[3 * i + 1], v[3 * i + 2]];
      if (!Number.isFinite(loss)) throw new ValueError('trainSAE', `loss became ${loss} at step ${step}; lower lr (${lr}) or check the data for NaN/Inf`);
      this.history.step.push(step);
      this.history.loss.push(loss);
      this.history.mse.push(mse);
      this.history.l1.push(l1);
      return { step, loss, mse, l1 };
    });
  }

  dispose(): void {
    tf.dispose(this.pending.map((e) => e.t));
    this.pending = [];
  }
}

/** Pending log entries read together at most this many at a time (bounds the scalars kept on the device). */
const MAX_PENDING = 256;

/**
 * One optimiser step on `batch`: gradients of the loss, projected for the unit-norm weights when asked,
 * Adam, re-normalisation. Keeps the step's losses in `log` when given.
 */
function step(sae: SparseAutoencoder, optimizer: tf.Optimizer, batch: tf.Tensor2D, project: boolean, log: LossLog | null, stepIndex: number): void {
  const vars = sae.variables();
  const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;
  tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const l = sae.loss(batch);
      log?.keep(stepIndex, l);
      return l.loss;
    }, vars);
    const named: Record<string, tf.Tensor> = {};
    vars.forEach((v, i) => (named[names[i]] = grads[v.name]));
    const use = project ? sae.projectGradients(named) : named;
    optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: use[names[i]] })));
    value.dispose();
  });
  sae.normalize();
}

/**
 * Train an SAE in place. data is a [n, d_in] tensor (batched with a seeded shuffle each epoch) or a
 * function returning batches. Returns the loss history (read back once at the end unless onProgress
 * asks for it at each log step) and final metrics.
 */
export async function trainSAE(sae: SparseAutoencoder, data: tf.Tensor2D | BatchFn, opts: TrainSAEOptions = {}): Promise<TrainSAEResult> {
  const lr = posNumber('lr', opts.lr ?? 1e-3);
  const epsilon = posNumber('epsilon', opts.epsilon ?? 1e-8);
  const { n, batchSize, stepsPerEpoch, totalSteps } = plan(sae, data, opts);
  const isFn = typeof data === 'function';
  const r = makeRng(opts.seed ?? 0);
  const logEvery = opts.logEvery === undefined ? Math.max(1, Math.floor(totalSteps / 100)) : posInt('logEvery', opts.logEvery);
  const project = opts.projectGradients ?? sae.architecture === 'paper';
  const shuffle = opts.shuffle ?? true;
  const fullBatch = !isFn && batchSize === n;
  const optimizer = tf.train.adam(lr, 0.9, 0.999, epsilon);
  const log = new LossLog();
  let orderTensor: tf.Tensor1D | null = null;
  let done = 0;
  let aborted = false;
  const bar = opts.progress === false ? null : progressBar(totalSteps, { label: typeof opts.progress === 'string' ? opts.progress : `train ${sae.architecture} SAE` });
  try {
    for (let s = 0; s < totalSteps; s++) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      const inEpoch = s % stepsPerEpoch;
      if (!isFn && !fullBatch && inEpoch === 0) {
        const order = Array.from({ length: n }, (_, i) => i);
        if (shuffle) r.shuffle(order);
        orderTensor?.dispose();
        orderTensor = tf.tensor1d(order, 'int32');
      }
      const batch = isFn ? callBatchFn(data as BatchFn, s, r.next, sae.dIn) : fullBatch ? (data as tf.Tensor2D) : sliceBatch(data as tf.Tensor2D, orderTensor!, inEpoch * batchSize, batchSize);
      const logIt = s % logEvery === 0 || s === totalSteps - 1;
      try {
        step(sae, optimizer, batch, project, logIt ? log : null, s);
      } finally {
        if (batch !== data) batch.dispose();
      }
      done = s + 1;
      if (opts.onProgress && logIt) {
        for (const e of await log.read(lr)) opts.onProgress({ ...e, totalSteps, epoch: isFn ? 0 : Math.floor(e.step / stepsPerEpoch) });
      } else if (log.size >= MAX_PENDING) await log.read(lr);
      bar?.tick(1, log.history.loss.length ? { loss: log.history.loss[log.history.loss.length - 1] } : undefined);
      if (s % 50 === 49) await tf.nextFrame();
    }
    await log.read(lr);
  } finally {
    bar?.done();
    orderTensor?.dispose();
    optimizer.dispose();
    log.dispose();
  }
  const result: TrainSAEResult = { steps: done, aborted, epochs: isFn ? 0 : done / stepsPerEpoch, history: log.history };
  if (!isFn && (opts.finalMetrics ?? true)) result.metrics = await saeMetrics(sae, data as tf.Tensor2D);
  return result;
}

/** Rows [start, start + size) of the epoch's order, gathered from the data. */
function sliceBatch(x: tf.Tensor2D, order: tf.Tensor1D, start: number, size: number): tf.Tensor2D {
  const rows = Math.min(size, x.shape[0] - start);
  return tf.tidy(() => tf.gather(x, tf.slice(order, [start], [rows])) as tf.Tensor2D);
}

/** The batch function's tensor for step s, checked. */
function callBatchFn(f: BatchFn, s: number, random: () => number, dIn: number): tf.Tensor2D {
  const batch = f(s, random);
  if (!(batch instanceof tf.Tensor) || batch.rank !== 2 || batch.shape[1] !== dIn) {
    const shape = batch instanceof tf.Tensor ? batch.shape : typeof batch;
    if (batch instanceof tf.Tensor) batch.dispose();
    throw new ShapeError(`data(step ${s})`, expectedFound(`a [batch, ${dIn}] tensor`, shape));
  }
  return batch;
}
