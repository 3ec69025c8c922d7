/**
 * Sparse autoencoders on TensorFlow.js. Weights are tf.Variables in the SAELens layout:
 *   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in].
 * Row i of W_dec is feature i's decoder vector; column i of W_enc is its encoder vector.
 *
 * Three variants share one class:
 * - 'paper'    the discrete-SAE authors' SAE (O'Neill & Bui, charlieoneill11/sae-circuits src/sae.py):
 *              f = ReLU(W_e (x - b) + b_e), x_hat = W_d f + b, with b one tied bias subtracted before the
 *              encoder and added after the decoder (lines 57-74, 361-370; initialised to 0, as their
 *              main.py line 132 passes no geometric median); encoder vectors unit norm (torch weight rows,
 *              lines 183-187), b_e ~ U(-1/sqrt(d_in), 1/sqrt(d_in)) (lines 191-194); the gradient
 *              component along each unit-norm vector removed (backward hook, lines 196-248); loss = MSE
 *              (mean over all elements) + lambda * mean over rows of ||f||_1 (src/train.py lines 7-29),
 *              lambda 0.02. decoderNorm picks the decoder's unit-norm vectors: 'input' as their code (rows
 *              of the torch decoder weight [d_in, d_sae], i.e. each input dimension's weights across
 *              features) or 'feature' (each feature's decoder vector, the paper's text and SAELens; the
 *              class default, kept for SAELens files). The discrete-SAE pipeline defaults to 'input'.
 *              In SAELens terms: 'standard' with apply_b_dec_to_input = true.
 * - 'standard' ReLU SAE: f = ReLU(x W_enc + b_enc), x_hat = f W_dec + b_dec (b_dec not subtracted
 *              from the input unless applyBDecToInput), decoder vectors unit norm, L1 penalty.
 * - 'topk'     keeps the k largest pre-activations of each example (then ReLU), decoder vectors unit
 *              norm, loss = MSE (lambda 0 unless given).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { rng as makeRng, type Rng } from '../util/random.js';
import { topKMaskExact } from './topk.js';

export type SAEArchitecture = 'paper' | 'standard' | 'topk';

export interface SAEOptions {
  architecture: SAEArchitecture;
  dIn: number;
  dSae: number;
  /** TopK only: number of active features per example. */
  k?: number;
  /** Sparsity coefficient; default 0.02 for 'paper', 0.01 for 'standard', 0 for 'topk'. */
  lambda?: number;
  /** Subtract b_dec from the input before encoding; default true for 'paper' and 'topk', false for 'standard'. */
  applyBDecToInput?: boolean;
  /** Seed of the initialisation (default 0). */
  seed?: number;
  /**
   * 'paper' only. 'feature' (default): each feature's decoder vector (row of W_dec) is unit norm.
   * 'input': as the authors' code, which normalises the rows of the torch decoder weight
   * [d_in, d_sae], i.e. each input dimension's weights across features (columns of W_dec here).
   */
  decoderNorm?: 'feature' | 'input';
}

export interface SAEWeights {
  W_enc: tf.Tensor | Float32Array | number[][];
  b_enc: tf.Tensor | Float32Array | number[];
  W_dec: tf.Tensor | Float32Array | number[][];
  b_dec: tf.Tensor | Float32Array | number[];
}

export interface SAEForward {
  /** Feature activations [n, d_sae]. */
  features: tf.Tensor2D;
  /** Reconstruction [n, d_in]. */
  recon: tf.Tensor2D;
}

export interface SAELoss {
  loss: tf.Scalar;
  mse: tf.Scalar;
  /** mean over the batch of ||f||_1. */
  l1: tf.Scalar;
}

const EPS = 1e-12;

/** Euclidean norm along an axis, kept (tf.norm goes through pow, which is slow on wasm). */
function l2(w: tf.Tensor, axis: number): tf.Tensor {
  return tf.sqrt(tf.sum(tf.square(w), axis, true));
}

function checkPositiveInt(where: string, v: unknown): number {
  if (!(typeof v === 'number' && Number.isInteger(v) && v > 0)) {
    throw new ConfigError(where, expectedFound('a positive integer', v));
  }
  return v;
}

/** Float32 numbers of a standard normal, seeded. */
function normalArray(r: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r.normal();
  return a;
}

/** Normalise rows (axis 1) of a row-major [rows, cols] array in place. */
function normaliseRows(a: Float32Array, rows: number, cols: number): void {
  for (let i = 0; i < rows; i++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += a[i * cols + j] ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), EPS);
    for (let j = 0; j < cols; j++) a[i * cols + j] *= inv;
  }
}

/** Transpose a row-major [rows, cols] array. */
function transposeArray(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/**
 * Initial weights as plain arrays (row-major), deterministic in the seed.
 * paper: encoder and decoder vectors drawn independently from N(0, 1) and normalised; b_enc ~
 * U(-1/sqrt(d_in), 1/sqrt(d_in)) (torch Linear default, as the authors' code); b_dec = 0.
 * standard / topk: decoder vectors N(0, 1) normalised, W_enc = W_dec^T, b_enc = b_dec = 0.
 */
export function initSAEArrays(
  architecture: SAEArchitecture,
  dIn: number,
  dSae: number,
  seed = 0,
  decoderNorm: 'feature' | 'input' = 'feature',
): { W_enc: Float32Array; b_enc: Float32Array; W_dec: Float32Array; b_dec: Float32Array } {
  const r = makeRng(seed);
  const b_dec = new Float32Array(dIn);
  if (architecture === 'paper') {
    // encoder vectors: dSae rows of length dIn, then transposed to W_enc [dIn, dSae]
    const enc = normalArray(r, dSae * dIn);
    normaliseRows(enc, dSae, dIn);
    const W_enc = transposeArray(enc, dSae, dIn);
    let W_dec = normalArray(r, dSae * dIn);
    if (decoderNorm === 'feature') normaliseRows(W_dec, dSae, dIn);
    else {
      // torch layout [dIn, dSae], rows normalised, then transposed to W_dec [dSae, dIn]
      normaliseRows(W_dec, dIn, dSae);
      W_dec = transposeArray(W_dec, dIn, dSae);
    }
    const bound = 1 / Math.sqrt(dIn);
    const b_enc = new Float32Array(dSae);
    for (let i = 0; i < dSae; i++) b_enc[i] = (2 * r.next() - 1) * bound;
    return { W_enc, b_enc, W_dec, b_dec };
  }
  const W_dec = normalArray(r, dSae * dIn);
  normaliseRows(W_dec, dSae, dIn);
  return { W_enc: transposeArray(W_dec, dSae, dIn), b_enc: new Float32Array(dSae), W_dec, b_dec };
}

/**
 * a @ b for 2-D tensors with a gradient that avoids matMul's transpose flags: on the wasm backend a
 * transposed operand is 10-40x slower than a plain product, and the default gradient of a @ b
 * uses dy @ b^T and a^T @ dy. Here da = (b @ dy^T)^T and db = (a^T) @ dy, transposing only the
 * batch-sized matrices. Same numbers, same shapes.
 */
export const mm = tf.customGrad(((a: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
  save([a, b]);
  return {
    value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [sa, sb] = saved as [tf.Tensor2D, tf.Tensor2D];
      const d = dy as tf.Tensor2D;
      const da = tf.transpose(tf.matMul(sb, tf.transpose(d)));
      const db = tf.matMul(tf.transpose(sa), d);
      return [da, db];
    },
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/**
 * Zero gradient through a mask: the top-k threshold is not differentiated (TopK has no gradient
 * in tfjs, and the selection is piecewise constant anyway).
 */
const topKMask = (k: number): ((pre: tf.Tensor) => tf.Tensor) =>
  tf.customGrad(((pre: tf.Tensor) => {
    // exactly k per row, as SAELens (a >= k-th-largest test keeps more on ties)
    return { value: topKMaskExact(pre as tf.Tensor2D, k), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (pre: tf.Tensor) => tf.Tensor;

export class SparseAutoencoder {
  readonly architecture: SAEArchitecture;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number | undefined;
  lambda: number;
  readonly applyBDecToInput: boolean;
  readonly decoderNorm: 'feature' | 'input';
  /** W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]. */
  readonly params: Record<'W_enc' | 'b_enc' | 'W_dec' | 'b_dec', tf.Variable>;
  private disposed = false;
  private maskFn: ((pre: tf.Tensor) => tf.Tensor) | null = null;

  constructor(opts: SAEOptions, weights?: SAEWeights) {
    const arch = opts.architecture;
    if (arch !== 'paper' && arch !== 'standard' && arch !== 'topk') {
      throw new ConfigError('architecture', expectedFound("'paper' | 'standard' | 'topk'", arch));
    }
    this.architecture = arch;
    this.dIn = checkPositiveInt('dIn', opts.dIn);
    this.dSae = checkPositiveInt('dSae', opts.dSae);
    if (arch === 'topk') {
      this.k = checkPositiveInt('k', opts.k);
      if (this.k > this.dSae) throw new ConfigError('k', expectedFound(`an integer <= dSae (${this.dSae})`, this.k));
      this.maskFn = topKMask(this.k);
    } else {
      if (opts.k !== undefined) throw new ConfigError('k', `only used by the 'topk' architecture, found k=${opts.k} for '${arch}'`);
      this.k = undefined;
    }
    const lambda = opts.lambda ?? (arch === 'paper' ? 0.02 : arch === 'standard' ? 0.01 : 0);
    if (!(typeof lambda === 'number' && Number.isFinite(lambda) && lambda >= 0)) {
      throw new ConfigError('lambda', expectedFound('a finite number >= 0', lambda));
    }
    this.lambda = lambda;
    this.applyBDecToInput = opts.applyBDecToInput ?? arch !== 'standard';
    if (arch === 'paper' && !this.applyBDecToInput) {
      throw new ConfigError('applyBDecToInput', "the 'paper' SAE subtracts its shared pre-bias from the input; found false");
    }
    const dn = opts.decoderNorm ?? 'feature';
    if (dn !== 'feature' && dn !== 'input') throw new ConfigError('decoderNorm', expectedFound("'feature' or 'input'", dn));
    if (dn === 'input' && arch !== 'paper') throw new ConfigError('decoderNorm', `'input' is the authors' variant of the 'paper' SAE; found architecture '${arch}'`);
    this.decoderNorm = dn;
    const seed = opts.seed ?? 0;
    const w = weights ?? initSAEArrays(arch, this.dIn, this.dSae, seed, dn);
    const shapes = { W_enc: [this.dIn, this.dSae], b_enc: [this.dSae], W_dec: [this.dSae, this.dIn], b_dec: [this.dIn] } as const;
    const vars: Partial<Record<keyof typeof shapes, tf.Variable>> = {};
    try {
      for (const name of Object.keys(shapes) as (keyof typeof shapes)[]) {
        const t = toTensor(`weights.${name}`, w[name], shapes[name] as unknown as number[]);
        vars[name] = tf.variable(t, true, undefined, 'float32');
        t.dispose();
      }
    } catch (e) {
      for (const v of Object.values(vars)) v?.dispose();
      throw e;
    }
    this.params = vars as Record<keyof typeof shapes, tf.Variable>;
  }

  /** Variables in a fixed order (for optimisers). */
  variables(): tf.Variable[] {
    return [this.params.W_enc, this.params.b_enc, this.params.W_dec, this.params.b_dec];
  }

  private check(x: tf.Tensor, width: number, what: string): void {
    if (this.disposed) throw new ValueError('sae', 'this SAE has been disposed');
    if (x.rank !== 2 || x.shape[1] !== width) {
      throw new ShapeError(what, expectedFound(`[n, ${width}]`, x.shape));
    }
    if (x.dtype !== 'float32') throw new ValueError(what, expectedFound('a float32 tensor', x.dtype));
  }

  /** Pre-activations (x - b_dec?) W_enc + b_enc, [n, d_sae]. */
  preActivations(x: tf.Tensor2D): tf.Tensor2D {
    this.check(x, this.dIn, 'x');
    return tf.tidy(() => {
      const xin = this.applyBDecToInput ? tf.sub(x, this.params.b_dec) : x;
      return tf.add(mm(xin as tf.Tensor2D, this.params.W_enc as tf.Tensor2D), this.params.b_enc) as tf.Tensor2D;
    });
  }

  /** Feature activations [n, d_sae]. */
  encode(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const pre = this.preActivations(x);
      const f = tf.relu(pre);
      if (this.maskFn) return tf.mul(f, this.maskFn(pre)) as tf.Tensor2D;
      return f;
    });
  }

  /** Reconstruction f W_dec + b_dec, [n, d_in]. */
  decode(f: tf.Tensor2D): tf.Tensor2D {
    this.check(f, this.dSae, 'features');
    return tf.tidy(() => tf.add(mm(f, this.params.W_dec as tf.Tensor2D), this.params.b_dec) as tf.Tensor2D);
  }

  forward(x: tf.Tensor2D): SAEForward {
    return tf.tidy(() => {
      const features = this.encode(x);
      const recon = this.decode(features);
      return { features, recon };
    });
  }

  /** loss = MSE (mean over all elements) + lambda * mean over the batch of ||f||_1. */
  loss(x: tf.Tensor2D): SAELoss {
    return tf.tidy(() => {
      const { features, recon } = this.forward(x);
      const mse = tf.mean(tf.squaredDifference(recon, x)) as tf.Scalar;
      const l1 = tf.mean(tf.sum(features, 1)) as tf.Scalar; // features are >= 0 in every variant
      const loss = this.lambda > 0 ? (tf.add(mse, tf.mul(l1, this.lambda)) as tf.Scalar) : (tf.add(mse, 0) as tf.Scalar);
      return { loss, mse, l1 };
    });
  }

  /** Which weights carry a unit-norm constraint and along which axis their feature vectors lie. */
  constrained(): Array<{ name: 'W_enc' | 'W_dec'; axis: 0 | 1 }> {
    const c: Array<{ name: 'W_enc' | 'W_dec'; axis: 0 | 1 }> = [{ name: 'W_dec', axis: this.decoderNorm === 'feature' ? 1 : 0 }];
    if (this.architecture === 'paper') c.unshift({ name: 'W_enc', axis: 0 });
    return c;
  }

  /** Re-impose the unit-norm constraints in place (called after every optimiser step). */
  normalize(): void {
    tf.tidy(() => {
      for (const { name, axis } of this.constrained()) {
        const v = this.params[name];
        const n = tf.maximum(l2(v, axis), EPS);
        v.assign(tf.div(v, n));
      }
    });
  }

  /**
   * Remove from each constrained weight's gradient the part parallel to the feature vector (the
   * authors' backward hook), so a plain gradient step moves along the unit sphere. Returns new
   * tensors for the constrained names; others are passed through unchanged.
   */
  projectGradients(grads: Record<string, tf.Tensor>): Record<string, tf.Tensor> {
    const out: Record<string, tf.Tensor> = { ...grads };
    for (const { name, axis } of this.constrained()) {
      const g = grads[name];
      if (!g) continue;
      out[name] = tf.tidy(() => {
        const w = this.params[name];
        const wn = tf.div(w, tf.maximum(l2(w, axis), EPS));
        const dot = tf.sum(tf.mul(g, w), axis, true);
        return tf.sub(g, tf.mul(dot, wn));
      });
    }
    return out;
  }

  /** Weights as plain arrays (copies, read asynchronously: works on every backend). */
  async toArrays(): Promise<{ W_enc: Float32Array; b_enc: Float32Array; W_dec: Float32Array; b_dec: Float32Array }> {
    const p = this.params;
    const [W_enc, b_enc, W_dec, b_dec] = (await Promise.all([p.W_enc.data(), p.b_enc.data(), p.W_dec.data(), p.b_dec.data()])) as Float32Array[];
    return { W_enc, b_enc, W_dec, b_dec };
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  dispose(): void {
    if (this.disposed) return;
    for (const v of Object.values(this.params)) v.dispose();
    this.disposed = true;
  }
}

function toTensor(where: string, v: tf.Tensor | Float32Array | number[] | number[][], shape: number[]): tf.Tensor {
  if (v instanceof tf.Tensor) {
    if (v.shape.length !== shape.length || v.shape.some((s, i) => s !== shape[i])) {
      throw new ShapeError(where, expectedFound(shape, v.shape));
    }
    return tf.tidy(() => tf.cast(v, 'float32'));
  }
  const flat = v instanceof Float32Array ? v : Float32Array.from((v as Array<number | number[]>).flat() as number[]);
  const size = shape.reduce((a, b) => a * b, 1);
  if (flat.length !== size) throw new ShapeError(where, expectedFound(`${size} numbers (shape ${JSON.stringify(shape)})`, flat.length));
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isFinite(flat[i])) throw new ValueError(where, expectedFound('finite numbers', `${flat[i]} at index ${i}`));
  }
  return tf.tensor(flat, shape, 'float32');
}

/** The paper's SAE (O'Neill & Bui): shared pre-bias, unit-norm encoder and decoder vectors, lambda 0.02. */
export function paperSAE(
  dIn: number,
  dSae: number,
  opts: { seed?: number; lambda?: number; decoderNorm?: 'feature' | 'input' } = {},
): SparseAutoencoder {
  return new SparseAutoencoder({ architecture: 'paper', dIn, dSae, ...opts });
}

/** Standard ReLU SAE with a separate decoder bias and an L1 penalty (default lambda 0.01). */
export function reluSAE(
  dIn: number,
  dSae: number,
  opts: { seed?: number; lambda?: number; applyBDecToInput?: boolean } = {},
): SparseAutoencoder {
  return new SparseAutoencoder({ architecture: 'standard', dIn, dSae, ...opts });
}

/** TopK SAE: keeps the k largest pre-activations per example (then ReLU). */
export function topKSAE(
  dIn: number,
  dSae: number,
  k: number,
  opts: { seed?: number; lambda?: number; applyBDecToInput?: boolean } = {},
): SparseAutoencoder {
  return new SparseAutoencoder({ architecture: 'topk', dIn, dSae, k, ...opts });
}
