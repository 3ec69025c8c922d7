/**
 * The training loop that makes tflens's shipped toy models: AdamW (decoupled weight decay, no decay
 * on biases and norm weights), linear warmup then cosine decay, optional global-norm gradient
 * clipping, loss and eval curves, checkpoints and a progress display. Backend-independent (wasm, cpu,
 * WebGPU): only tf ops, one asynchronous read (loss and gradient norm) per recorded step, never a
 * synchronous readback, no tensors left behind per step. Losses that run a HookedTransformer use its
 * synchronous, differentiable `run` (inside tf.variableGrads).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ValueError, expectedFound } from '../errors.js';
import { progress } from '../progress.js';

export type Schedule = 'cosine' | 'constant';

export interface ScheduleOptions {
  lr: number;
  steps: number;
  warmupSteps?: number;
  schedule?: Schedule;
  /** Final learning rate as a fraction of lr for the cosine schedule (default 0.1). */
  minLrRatio?: number;
}

/**
 * Learning rate of update number `step` (0-based): linear warmup lr * (step + 1) / warmupSteps,
 * then either constant or cosine from lr (first step after warmup) down to lr * minLrRatio (last
 * step, steps - 1).
 */
export function lrAt(step: number, o: ScheduleOptions): number {
  const warm = o.warmupSteps ?? 0;
  const schedule = o.schedule ?? 'cosine';
  const minLr = o.lr * (o.minLrRatio ?? 0.1);
  if (step < warm) return (o.lr * (step + 1)) / warm;
  if (schedule === 'constant') return o.lr;
  const span = o.steps - warm - 1;
  const progressFrac = span > 0 ? Math.min(1, (step - warm) / span) : 1;
  return minLr + (o.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progressFrac));
}

/** Default decay rule: decay matrices (rank >= 2), not biases, norm weights or other vectors. */
export function defaultDecay(name: string, v: tf.Variable): boolean {
  if (v.rank < 2) return false;
  return !/(^|\.)(b|b_[A-Za-z]+|bias|ln\w*\.w|norm\w*\.weight)$/.test(name);
}

export interface TrainEvalPoint {
  step: number;
  values: Record<string, number>;
}

export interface TrainResult {
  /** Step numbers (1-based count of updates done) where the loss was recorded. */
  steps: number[];
  loss: number[];
  lr: number[];
  /** Global gradient norm before clipping, per recorded step. */
  gradNorm: number[];
  evals: TrainEvalPoint[];
  /** Updates completed (less than `steps` when stopped by the abort signal). */
  completed: number;
  stopped: boolean;
  timeMs: number;
}

export interface ProgressInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  gradNorm: number;
  elapsedMs: number;
}

export interface TrainOptions<B> extends ScheduleOptions {
  /** Trainable parameters by name (the names drive the decay rule and checkpoints). */
  params: Record<string, tf.Variable>;
  /** Scalar loss of one batch; called inside a tidy with gradients recorded (a model's forward here is `model.run`). */
  lossFn: (batch: B, step: number) => tf.Scalar;
  /** Batch for a step (0-based). Tensors created here are disposed after the step. */
  batches: (step: number) => B;
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  /** Clip the global gradient norm to this value. */
  gradClip?: number;
  /** Which parameters get weight decay (default: rank >= 2 and not a bias/norm weight). */
  decay?: (name: string, v: tf.Variable) => boolean;
  /** Recorded for reproducibility; randomness lives in `batches` (pass it a seed derived from this). */
  seed?: number;
  /** Evaluate every this many steps (and after the last step). */
  evalEvery?: number;
  evalFn?: (step: number) => number | Record<string, number> | Promise<number | Record<string, number>>;
  checkpointEvery?: number;
  onCheckpoint?: (step: number, params: Record<string, tf.Variable>) => void | Promise<void>;
  onProgress?: (info: ProgressInfo) => void;
  /** Record (and read back) the loss every this many steps (default 1). */
  logEvery?: number;
  /** Label of the progress display (default "train"); false for none. */
  progressLabel?: string | false;
  /** Stop after the current step when aborted; finished results are returned. */
  signal?: AbortSignal;
}

function check(cond: boolean, where: string, expected: string, found: unknown): void {
  if (!cond) throw new ConfigError(where, expectedFound(expected, found));
}

/** Train `params` with AdamW. Resolves with the loss/eval curves. */
export async function train<B>(o: TrainOptions<B>): Promise<TrainResult> {
  const names = Object.keys(o.params);
  check(names.length > 0, 'train params', 'at least one variable', 0);
  check(Number.isInteger(o.steps) && o.steps >= 1, 'train steps', 'a positive integer', o.steps);
  check(Number.isFinite(o.lr) && o.lr > 0, 'train lr', 'a positive number', o.lr);
  const warm = o.warmupSteps ?? 0;
  check(Number.isInteger(warm) && warm >= 0, 'train warmupSteps', 'a non-negative integer', warm);
  check(o.schedule === undefined || o.schedule === 'cosine' || o.schedule === 'constant', 'train schedule', 'cosine | constant', o.schedule);
  const [b1, b2] = o.betas ?? [0.9, 0.999];
  check(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1, 'train betas', 'two numbers in [0, 1)', o.betas);
  const eps = o.eps ?? 1e-8;
  const wd = o.weightDecay ?? 0;
  check(wd >= 0, 'train weightDecay', '>= 0', wd);
  check(o.gradClip === undefined || o.gradClip > 0, 'train gradClip', '> 0', o.gradClip);
  const logEvery = o.logEvery ?? 1;
  check(Number.isInteger(logEvery) && logEvery >= 1, 'train logEvery', 'a positive integer', logEvery);
  const decayRule = o.decay ?? defaultDecay;
  for (const n of names) {
    const v = o.params[n];
    check(v instanceof tf.Variable, `train params["${n}"]`, 'a tf.Variable', v?.constructor?.name);
    check(v.trainable, `train params["${n}"]`, 'a trainable variable', 'trainable = false');
    check(v.dtype === 'float32', `train params["${n}"]`, 'float32', v.dtype);
  }
  const vars = names.map((n) => o.params[n]);
  const decays = names.map((n) => wd > 0 && decayRule(n, o.params[n]));
  const m = vars.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
  const s = vars.map((v) => tf.tidy(() => tf.variable(tf.zerosLike(v), false)));
  const result: TrainResult = { steps: [], loss: [], lr: [], gradNorm: [], evals: [], completed: 0, stopped: false, timeMs: 0 };
  const t0 = Date.now();
  const bar = o.progressLabel === false ? null : progress(o.steps, { label: o.progressLabel ?? 'train' });
  const doEval = async (step: number) => {
    if (!o.evalFn) return;
    const r = await o.evalFn(step);
    const values = typeof r === 'number' ? { eval: r } : r;
    for (const [k, v] of Object.entries(values)) {
      if (!Number.isFinite(v)) throw new ValueError(`train evalFn at step ${step}: ${k}`, expectedFound('a finite number', v));
    }
    result.evals.push({ step, values });
  };
  try {
    for (let step = 0; step < o.steps; step++) {
      if (o.signal?.aborted) {
        result.stopped = true;
        break;
      }
      const lr = lrAt(step, o);
      const t = step + 1;
      const record = step % logEvery === 0 || step === o.steps - 1;
      const [lossT, normT] = tf.tidy(() => {
        const batch = o.batches(step);
        const { value, grads } = tf.variableGrads(() => o.lossFn(batch, step), vars);
        const gs = vars.map((v) => grads[v.name]);
        gs.forEach((g, i) => {
          if (!g) throw new ValueError(`train params["${names[i]}"]`, 'no gradient (the loss does not depend on it)');
        });
        // a chain of adds, not tf.addN: WebGPU's AddN binds one storage buffer per input (at most 8 per stage)
        const norm = tf.sqrt(gs.reduce((acc: tf.Tensor, g) => tf.add(acc, tf.sum(tf.square(g))), tf.scalar(0)));
        let scale: tf.Scalar | null = null;
        if (o.gradClip !== undefined) scale = tf.minimum(1, tf.div(o.gradClip, tf.add(norm, 1e-6))) as tf.Scalar;
        const c1 = 1 - Math.pow(b1, t);
        const c2 = 1 - Math.pow(b2, t);
        vars.forEach((v, i) => {
          const g = scale ? tf.mul(gs[i], scale) : gs[i];
          const mi = tf.add(tf.mul(m[i], b1), tf.mul(g, 1 - b1));
          const si = tf.add(tf.mul(s[i], b2), tf.mul(tf.square(g), 1 - b2));
          m[i].assign(mi);
          s[i].assign(si);
          const upd = tf.div(tf.div(mi, c1), tf.add(tf.sqrt(tf.div(si, c2)), eps));
          const base = decays[i] ? tf.mul(v, 1 - lr * wd) : v;
          v.assign(tf.sub(base, tf.mul(upd, lr)));
        });
        return [tf.keep(value), tf.keep(norm)];
      });
      // the step's only readback (asynchronous, on every backend), on the steps that are recorded
      let lossV = NaN;
      let normV = NaN;
      try {
        if (record) [lossV, normV] = (await Promise.all([lossT.data(), normT.data()])).map((d) => d[0]);
      } finally {
        tf.dispose([lossT, normT]);
      }
      result.completed = t;
      // let timers, I/O and the notebook's progress messages through (a wasm read may never leave the microtask queue)
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (record) {
        if (!Number.isFinite(lossV)) {
          throw new ValueError(`train step ${t}`, expectedFound('a finite loss', lossV) + ' (lower lr or add gradClip)');
        }
        result.steps.push(t);
        result.loss.push(lossV);
        result.lr.push(lr);
        result.gradNorm.push(normV);
        o.onProgress?.({ step: t, steps: o.steps, loss: lossV, lr, gradNorm: normV, elapsedMs: Date.now() - t0 });
        if (bar) bar.tick(t - bar.count, { loss: lossV, lr });
      }
      if (o.evalEvery && (t % o.evalEvery === 0 || t === o.steps)) await doEval(t);
      if (o.checkpointEvery && o.onCheckpoint && (t % o.checkpointEvery === 0 || t === o.steps)) await o.onCheckpoint(t, o.params);
    }
  } finally {
    bar?.done();
    tf.dispose([...m, ...s]);
    result.timeMs = Date.now() - t0;
  }
  return result;
}
