/**
 * SAE training: Adam (tf.train.adam), seeded shuffling, batched or full-batch, unit-norm
 * constraints re-imposed after every step, no tensor kept between steps.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { rng as makeRng } from '../util/random.js';
import { SparseAutoencoder } from './models.js';
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
  /** Seed of the shuffling (the SAE's own seed sets its initialisation). Default 0. */
  seed?: number;
  /** Shuffle rows each epoch (default true; irrelevant for full batch). */
  shuffle?: boolean;
  /** Remove the gradient component parallel to unit-norm feature vectors before the step (default: true for 'paper'). */
  projectGradients?: boolean;
  /** Called every logEvery steps and on the last step. */
  onProgress?: (p: TrainProgress) => void;
  /** Record loss / mse / l1 every this many steps (default max(1, floor(totalSteps / 100))). */
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

/**
 * Train an SAE in place. data is a [n, d_in] tensor (batched with a seeded shuffle each epoch)
 * or a function returning batches. Returns the loss history and final metrics.
 */
export async function trainSAE(
  sae: SparseAutoencoder,
  data: tf.Tensor2D | BatchFn,
  opts: TrainSAEOptions = {},
): Promise<TrainSAEResult> {
  const lr = opts.lr ?? 1e-3;
  if (!(typeof lr === 'number' && lr > 0 && Number.isFinite(lr))) throw new ConfigError('lr', expectedFound('a positive number', lr));
  const seed = opts.seed ?? 0;
  const r = makeRng(seed);
  const isFn = typeof data === 'function';
  let n = 0;
  let batchSize = 0;
  let totalSteps: number;
  let stepsPerEpoch = 1;
  if (!isFn) {
    const x = data as tf.Tensor2D;
    if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== sae.dIn) {
      throw new ShapeError('data', expectedFound(`a [n, ${sae.dIn}] tensor`, x instanceof tf.Tensor ? x.shape : typeof x));
    }
    n = x.shape[0];
    if (n === 0) throw new ShapeError('data', expectedFound('at least one row', 0));
    batchSize = opts.batchSize === undefined ? Math.min(n, 1024) : posInt('batchSize', opts.batchSize);
    if (batchSize > n) throw new ConfigError('batchSize', expectedFound(`at most n = ${n}`, batchSize));
    stepsPerEpoch = Math.ceil(n / batchSize);
    if (opts.steps !== undefined) totalSteps = posInt('steps', opts.steps);
    else if (opts.epochs !== undefined) totalSteps = posInt('epochs', opts.epochs) * stepsPerEpoch;
    else throw new ConfigError('epochs', 'give epochs or steps');
  } else {
    if (opts.steps === undefined) throw new ConfigError('steps', 'required when data is a batch function');
    totalSteps = posInt('steps', opts.steps);
    if (opts.batchSize !== undefined) posInt('batchSize', opts.batchSize);
  }
  const logEvery = opts.logEvery === undefined ? Math.max(1, Math.floor(totalSteps / 100)) : posInt('logEvery', opts.logEvery);
  const project = opts.projectGradients ?? sae.architecture === 'paper';
  const shuffle = opts.shuffle ?? true;

  const vars = sae.variables();
  const names = ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const;
  const optimizer = tf.train.adam(lr);
  const history = { step: [] as number[], loss: [] as number[], mse: [] as number[], l1: [] as number[] };
  let order: number[] = [];
  let orderTensor: tf.Tensor1D | null = null;
  const fullBatch = !isFn && batchSize === n;
  let done = 0;
  let aborted = false;
  const bar = opts.progress === false ? null : progressBar(totalSteps, { label: typeof opts.progress === 'string' ? opts.progress : `train ${sae.architecture} SAE` });
  try {
    for (let step = 0; step < totalSteps; step++) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      done = step + 1;
      const epoch = isFn ? 0 : Math.floor(step / stepsPerEpoch);
      const inEpoch = step % stepsPerEpoch;
      if (!isFn && !fullBatch && inEpoch === 0) {
        order = Array.from({ length: n }, (_, i) => i);
        if (shuffle) r.shuffle(order);
        orderTensor?.dispose();
        orderTensor = tf.tensor1d(order, 'int32');
      }
      let batch: tf.Tensor2D;
      let ownBatch = true;
      if (isFn) {
        batch = (data as BatchFn)(step, r.next);
        if (!(batch instanceof tf.Tensor) || batch.rank !== 2 || batch.shape[1] !== sae.dIn) {
          const shape = batch instanceof tf.Tensor ? batch.shape : typeof batch;
          if (batch instanceof tf.Tensor) batch.dispose();
          throw new ShapeError(`data(step ${step})`, expectedFound(`a [batch, ${sae.dIn}] tensor`, shape));
        }
      } else if (fullBatch) {
        batch = data as tf.Tensor2D;
        ownBatch = false;
      } else {
        const start = inEpoch * batchSize;
        const size = Math.min(batchSize, n - start);
        batch = tf.tidy(() => tf.gather(data as tf.Tensor2D, tf.slice(orderTensor!, [start], [size])) as tf.Tensor2D);
      }
      const log = step % logEvery === 0 || step === totalSteps - 1;
      let parts: { mse: tf.Scalar; l1: tf.Scalar } | null = null;
      try {
        const { value, grads } = tf.variableGrads(() => {
          const l = sae.loss(batch);
          if (log) parts = { mse: tf.keep(l.mse), l1: tf.keep(l.l1) };
          return l.loss;
        }, vars);
        const named: Record<string, tf.Tensor> = {};
        vars.forEach((v, i) => (named[names[i]] = grads[v.name]));
        const use = project ? sae.projectGradients(named) : named;
        optimizer.applyGradients(vars.map((v, i) => ({ name: v.name, tensor: use[names[i]] })));
        for (const t of new Set([...Object.values(named), ...Object.values(use)])) t.dispose();
        sae.normalize();
        if (log) {
          const p = parts as { mse: tf.Scalar; l1: tf.Scalar } | null;
          const [lv, mv, l1v] = [value.dataSync()[0], p!.mse.dataSync()[0], p!.l1.dataSync()[0]];
          if (!Number.isFinite(lv)) {
            throw new ValueError('trainSAE', `loss became ${lv} at step ${step}; lower lr (${lr}) or check the data for NaN/Inf`);
          }
          history.step.push(step);
          history.loss.push(lv);
          history.mse.push(mv);
          history.l1.push(l1v);
          opts.onProgress?.({ step, totalSteps, epoch, loss: lv, mse: mv, l1: l1v });
          bar?.tick(1, { loss: lv, mse: mv });
        } else bar?.tick(1);
        value.dispose();
      } finally {
        if (parts) {
          (parts as { mse: tf.Scalar; l1: tf.Scalar }).mse.dispose();
          (parts as { mse: tf.Scalar; l1: tf.Scalar }).l1.dispose();
        }
        if (ownBatch) batch.dispose();
      }
      if (step % 50 === 49) await tf.nextFrame();
    }
  } finally {
    bar?.done();
    orderTensor?.dispose();
    optimizer.dispose();
  }
  const result: TrainSAEResult = {
    steps: done,
    aborted,
    epochs: isFn ? 0 : done / stepsPerEpoch,
    history,
  };
  if (!isFn && (opts.finalMetrics ?? true)) result.metrics = saeMetrics(sae, data as tf.Tensor2D);
  return result;
}
