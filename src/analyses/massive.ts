/**
 * Massive activations and VAR sink tokens (Kang et al., "See What You Are Told", code
 * MICV-yonsei/VisAttnSink; METHODS.md section 4.1-4.2).
 *
 * ratio_d(x) = |x_d| / rms(x),  rms(x) = sqrt(mean(x^2) + 1e-6), x a residual vector of one token.
 * Sink dimensions are those with the largest max ratio over tokens and layers; a token is a sink
 * at layer l >= 2 when phi(x) = max_{d in D} ratio_d(x) > tau (tau = 20).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { firstRealIndex, forEachChunk, maskRows, prepareBatch } from './attention-stats.js';
import type { AnalysisModel, MaskLike, ModelRunOptions, TokensLike } from './attention-stats.js';

const RMS_EPS = 1e-6;

export interface MassiveDim {
  dim: number;
  /** max over tokens and layers of |x_d| / rms(x). */
  score: number;
  /** Where the max was found: layer index in the given list, prompt, relative position (from the first real token). */
  layer: number;
  prompt: number;
  position: number;
}

export interface MassiveDimsResult {
  /** The top dimensions, by score, descending. */
  top: MassiveDim[];
  /** perDim[d]: the max ratio of every dimension. */
  perDim: number[];
}

export interface MassiveDimsOptions {
  /** How many dimensions to return (default 10). */
  top?: number;
  /** Attention mask [batch, pos] (pad tokens are ignored). */
  mask?: MaskLike;
}

/** [batch, pos, d] -> ratio |x_d| / sqrt(mean(x^2) + 1e-6), pads zeroed by maskT [B, N]. */
function ratios(x: tf.Tensor, maskT: tf.Tensor): tf.Tensor3D {
  return tf.tidy(() => {
    const f = x.toFloat();
    const rms = f.square().mean(-1, true).add(RMS_EPS).sqrt();
    return f.abs().div(rms).mul(maskT.expandDims(-1)) as tf.Tensor3D;
  });
}

function checkResid(x: tf.Tensor, where: string, shape?: number[]): void {
  if (x.rank !== 3) throw new ShapeError(where, expectedFound('[batch, pos, d_model]', `[${x.shape}]`));
  if (shape && (x.shape[0] !== shape[0] || x.shape[1] !== shape[1] || x.shape[2] !== shape[2])) {
    throw new ShapeError(where, expectedFound(`[${shape}]`, `[${x.shape}]`));
  }
}

class MaxTracker {
  perDim: number[] = [];
  where: Array<{ layer: number; prompt: number; position: number }> = [];
  add(x: tf.Tensor, layer: number, maskT: tf.Tensor, first: number[], promptOffset: number): void {
    const [B, N, d] = x.shape;
    const r = ratios(x, maskT);
    const flat = r.reshape([B * N, d]);
    const mx = flat.max(0);
    const am = flat.argMax(0);
    const mxA = mx.dataSync();
    const amA = am.dataSync();
    tf.dispose([r, flat, mx, am]);
    if (this.perDim.length === 0) {
      this.perDim = new Array(d).fill(-1);
      this.where = new Array(d).fill(null);
    } else if (this.perDim.length !== d) {
      throw new ShapeError(`residuals[${layer}]`, expectedFound(`d_model ${this.perDim.length}`, d));
    }
    for (let j = 0; j < d; j++) {
      if (mxA[j] > this.perDim[j]) {
        const b = Math.floor(amA[j] / N);
        const p = amA[j] % N;
        this.perDim[j] = mxA[j];
        this.where[j] = { layer, prompt: b + promptOffset, position: p - first[b] };
      }
    }
  }
  result(top: number): MassiveDimsResult {
    const order = this.perDim.map((_, j) => j).sort((a, b) => this.perDim[b] - this.perDim[a] || a - b);
    return {
      top: order.slice(0, top).map((j) => ({ dim: j, score: this.perDim[j], ...this.where[j] })),
      perDim: this.perDim.slice(),
    };
  }
}

function checkTop(top: number): void {
  if (!Number.isInteger(top) || top < 1) throw new ValueError('top', expectedFound('a positive integer', top));
}

/**
 * Rank residual dimensions by max |x_d / rms(x)| over tokens and layers.
 * Either residuals (one [batch, pos, d_model] tensor per layer) with opts.mask, or a model and
 * tokens (uses blocks.L.hook_resid_pre of every layer: the residual input to each layer).
 */
export function massiveDims(residuals: tf.Tensor[], opts?: MassiveDimsOptions): MassiveDimsResult;
export function massiveDims(model: AnalysisModel, tokens: TokensLike, opts?: Omit<MassiveDimsOptions, 'mask'> & ModelRunOptions): MassiveDimsResult;
export function massiveDims(
  a: tf.Tensor[] | AnalysisModel,
  b?: TokensLike | MassiveDimsOptions,
  c?: Omit<MassiveDimsOptions, 'mask'> & ModelRunOptions,
): MassiveDimsResult {
  const tracker = new MaxTracker();
  if (Array.isArray(a)) {
    const opts = (b ?? {}) as MassiveDimsOptions;
    const top = opts.top ?? 10;
    checkTop(top);
    if (a.length === 0) throw new ShapeError('residuals', expectedFound('one [batch, pos, d_model] tensor per layer', 'an empty list'));
    checkResid(a[0], 'residuals[0]');
    const [B, N] = a[0].shape;
    const mask = maskRows(opts.mask, B, N, 'mask');
    const first = firstRealIndex(mask, 'mask');
    const maskT = tf.tensor2d(mask, [B, N], 'float32');
    try {
      a.forEach((x, l) => {
        checkResid(x, `residuals[${l}]`, a[0].shape);
        tracker.add(x, l, maskT, first, 0);
      });
    } finally {
      maskT.dispose();
    }
    return tracker.result(top);
  }
  const model = a;
  const opts = c ?? {};
  const top = opts.top ?? 10;
  checkTop(top);
  const batch = prepareBatch(b as TokensLike, opts.attentionMask);
  const L = model.cfg.n_layers;
  const names = Array.from({ length: L }, (_, l) => actName('resid_pre', l));
  forEachChunk(model, batch, names, opts.batchSize, (get, rows) => {
    const maskT = tf.tensor2d(rows.mask, undefined, 'float32');
    try {
      for (let l = 0; l < L; l++) tracker.add(get(names[l]), l, maskT, rows.first, rows.start);
    } finally {
      maskT.dispose();
    }
  });
  return tracker.result(top);
}

export interface VarSinkOptions {
  /** Threshold on phi (default 20). */
  tau?: number;
  /** Attention mask [batch, pos]; pad tokens get phi = 0 and are never sinks. */
  mask?: MaskLike;
}

export interface VarSinkResult {
  /** phi[prompt][pos] = max_{d in D} |x_d| / rms(x) (absolute positions, pads 0). */
  phi: number[][];
  /** sink[prompt][pos] = phi > tau. */
  sink: boolean[][];
}

function checkDims(dims: number[], d: number): void {
  if (!Array.isArray(dims) || dims.length === 0) throw new ValueError('dims', expectedFound('a non-empty list of residual dimensions', dims));
  dims.forEach((j, i) => {
    if (!Number.isInteger(j) || j < 0 || j >= d) throw new ValueError(`dims[${i}]`, expectedFound(`an integer in [0, ${d})`, j));
  });
}

/**
 * VAR sink tokens of one layer (METHODS.md 4.2): resid = residual input to the layer
 * [batch, pos, d_model]; phi(x) = max_{d in dims} |x_d / sqrt(mean(x^2) + 1e-6)|; sink if phi > tau.
 * VAR applies it at layers >= 2 (see varSinks for the per-layer model version).
 */
export function varSinkTokens(resid: tf.Tensor, dims: number[], opts: VarSinkOptions = {}): VarSinkResult {
  const tau = opts.tau ?? 20;
  if (!Number.isFinite(tau) || tau <= 0) throw new ValueError('tau', expectedFound('a positive number', tau));
  checkResid(resid, 'resid');
  const [B, N, d] = resid.shape;
  checkDims(dims, d);
  const mask = maskRows(opts.mask, B, N, 'mask');
  const phiT = tf.tidy(() => {
    const maskT = tf.tensor2d(mask, [B, N], 'float32');
    const r = ratios(resid, maskT);
    return tf.gather(r, tf.tensor1d(dims, 'int32'), 2).max(-1);
  });
  const phi = phiT.arraySync() as number[][];
  phiT.dispose();
  return { phi, sink: phi.map((row) => row.map((v) => v > tau)) };
}

export interface VarSinksOptions extends ModelRunOptions {
  tau?: number;
  /** First layer checked (default 2, as in VAR: no sinks in layers 0-1). */
  minLayer?: number;
}

/** VAR sink tokens at every layer >= minLayer of a model (x = blocks.L.hook_resid_pre); phi/sink rows start at each prompt's first real token. */
export function varSinks(model: AnalysisModel, tokens: TokensLike, dims: number[], opts: VarSinksOptions = {}): Array<{ layer: number } & VarSinkResult> {
  const L = model.cfg.n_layers;
  const minLayer = opts.minLayer ?? 2;
  if (!Number.isInteger(minLayer) || minLayer < 0 || minLayer >= L) throw new ValueError('minLayer', expectedFound(`an integer in [0, ${L})`, minLayer));
  checkDims(dims, model.cfg.d_model);
  const batch = prepareBatch(tokens, opts.attentionMask);
  const layers = Array.from({ length: L - minLayer }, (_, i) => minLayer + i);
  const out = layers.map((layer) => ({ layer, phi: [] as number[][], sink: [] as boolean[][] }));
  const names = layers.map((l) => actName('resid_pre', l));
  forEachChunk(model, batch, names, opts.batchSize, (get, rows) => {
    names.forEach((name, i) => {
      const r = varSinkTokens(get(name), dims, { tau: opts.tau, mask: rows.mask });
      out[i].phi.push(...r.phi.map((row, b) => row.slice(rows.first[b])));
      out[i].sink.push(...r.sink.map((row, b) => row.slice(rows.first[b])));
    });
  });
  return out;
}
