/**
 * Massive activations (Sun et al., "Massive Activations in Large Language Models", code
 * locuslab/massive-activations) and VAR sink dimensions / sink tokens (Kang et al., "See What You Are
 * Told", code MICV-yonsei/VisAttnSink; read through its public forks: benmagnifico/VisAttnSink
 * src/logic/logic.py and bxqm803/VisAttnSink src/model/llava.py). Detection only: the redistribution lives
 * with the calibration analyses.
 *
 * ratio_d(x) = |x_d| / rms(x),  rms(x) = sqrt(mean(x^2) + 1e-6), x a residual vector of one token.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { firstRealIndex, type Batch, type ModelView } from '../model/view.js';
import { hostMask, readAll, readOut, runChunks, type MaskInput, type RunOptions } from './attention-stats.js';

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
}

/** [batch, pos, d] -> |x_d| / sqrt(mean(x^2) + 1e-6) (DimProspector.rmsnorm, logic.py lines 100-103), pads zeroed by maskT [B, N]. */
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

/** Running max of the ratio per dimension, with where it was found. */
class MaxTracker {
  perDim: number[] = [];
  where: Array<{ layer: number; prompt: number; position: number }> = [];
  async add(x: tf.Tensor, layer: number, mask: number[][], first: number[], promptOffset: number): Promise<void> {
    const [B, N, d] = x.shape;
    const [mx, am] = tf.tidy(() => {
      const flat = ratios(x, tf.tensor2d(mask, [B, N], 'float32')).reshape([B * N, d]);
      return [flat.max(0), flat.argMax(0)];
    });
    const [mxA, amA] = await readAll<[number[], number[]]>([mx, am]);
    if (this.perDim.length === 0) {
      this.perDim = new Array(d).fill(-1);
      this.where = new Array(d).fill(null);
    } else if (this.perDim.length !== d) {
      throw new ShapeError(`residuals[${layer}]`, expectedFound(`d_model ${this.perDim.length}`, d));
    }
    for (let j = 0; j < d; j++) {
      if (mxA[j] > this.perDim[j]) {
        const b = Math.floor(amA[j] / N);
        this.perDim[j] = mxA[j];
        this.where[j] = { layer, prompt: b + promptOffset, position: (amA[j] % N) - first[b] };
      }
    }
  }
  result(top: number): MassiveDimsResult {
    const order = this.perDim.map((_, j) => j).sort((a, b) => this.perDim[b] - this.perDim[a] || a - b);
    return { top: order.slice(0, top).map((j) => ({ dim: j, score: this.perDim[j], ...this.where[j] })), perDim: this.perDim.slice() };
  }
}

function checkTop(top: number): void {
  if (!Number.isInteger(top) || top < 1) throw new ValueError('top', expectedFound('a positive integer', top));
}

/**
 * Sink dimensions from residual tensors (one [batch, pos, d_model] per layer, e.g. cached
 * hook_resid_pre): rank dimensions by max |x_d / rms(x)| over real tokens and layers. The VAR authors
 * ship these dimensions as fixed per-model constants (DIM_SINK); this ranking is tflens's way of
 * finding them for a model without one.
 */
export async function massiveDimsFromResiduals(residuals: tf.Tensor[], opts: MassiveDimsOptions & { attentionMask?: MaskInput } = {}): Promise<MassiveDimsResult> {
  const top = opts.top ?? 10;
  checkTop(top);
  if (!Array.isArray(residuals) || residuals.length === 0) throw new ShapeError('residuals', expectedFound('one [batch, pos, d_model] tensor per layer', 'an empty list'));
  checkResid(residuals[0], 'residuals[0]');
  const [B, N] = residuals[0].shape;
  const mask = await hostMask(opts.attentionMask, B, N);
  const first = firstRealIndex(mask);
  const tracker = new MaxTracker();
  for (const [l, x] of residuals.entries()) {
    checkResid(x, `residuals[${l}]`, residuals[0].shape);
    await tracker.add(x, l, mask, first, 0);
  }
  return tracker.result(top);
}

/** Sink dimensions of a model on a batch: massiveDimsFromResiduals over blocks.l.hook_resid_pre of every layer. */
export async function massiveDims(model: ModelView, batch: Batch, opts: MassiveDimsOptions & RunOptions = {}): Promise<MassiveDimsResult> {
  const top = opts.top ?? 10;
  checkTop(top);
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => actName('resid_pre', l));
  const tracker = new MaxTracker();
  await runChunks(model, batch, names, opts, async (c) => {
    for (const [l, n] of names.entries()) await tracker.add(c.cache.get(n), l, c.mask, c.first, c.start);
  });
  return tracker.result(top);
}

// ---------------------------------------------------------------------------------------------
// Sun et al.: layer-wise top activation magnitudes
// ---------------------------------------------------------------------------------------------

export interface ActivationMagnitudes {
  /** top[layer] = the 3 largest |x| of the layer's output over all tokens and dimensions, mean over prompts. */
  top: number[][];
  /** median[layer] = median |x| of the layer's output (torch.median: the lower middle value), mean over prompts. */
  median: number[];
}

/** The 3 largest values and the lower median of a list of magnitudes. */
function topAndMedian(a: Float64Array): number[] {
  const s = a.sort();
  const n = s.length;
  return [s[n - 1], s[n - 2], s[n - 3], s[Math.floor((n - 1) / 2)]];
}

/**
 * Sun et al.'s layer-wise analysis (main_llm.py lines 83-100, exp2): for each prompt and each layer
 * output (blocks.l.hook_resid_post, the decoder layer's output: monkey_patch/modify_llama.py line 52),
 * the top-3 magnitudes |x| over all real tokens and dimensions and the median |x|; then the mean over
 * prompts (lib/plot_utils_llm.py line 98). A prompt needs at least one real token (3 values).
 */
export async function activationMagnitudes(model: ModelView, batch: Batch, opts: RunOptions = {}): Promise<ActivationMagnitudes> {
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => actName('resid_post', l));
  const { results } = await runChunks(model, batch, names, opts, async (c) => {
    const layers = await Promise.all(names.map((n) => readOut<number[][][]>(c.cache.get(n).abs())));
    return c.mask.map((_, b) => layers.map((x) => topAndMedian(Float64Array.from(x[b].slice(c.first[b]).flat()))));
  });
  const per = results.flat(); // [prompt][layer][4]
  const mean = (l: number, i: number) => per.reduce((s, p) => s + p[l][i], 0) / per.length;
  return { top: names.map((_, l) => [0, 1, 2].map((i) => mean(l, i))), median: names.map((_, l) => mean(l, 3)) };
}

// ---------------------------------------------------------------------------------------------
// VAR sink tokens
// ---------------------------------------------------------------------------------------------

export interface VarSinkOptions {
  /** Threshold on phi (default 20: LogicEngine.activate, logic.py line 34). */
  tau?: number;
  /** Attention mask [batch, pos]; pad tokens get phi = 0 and are never sinks. */
  attentionMask?: MaskInput;
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
 * VAR sink tokens of one layer (DimProspector.run_logic, logic.py lines 106-110): resid = residual input to the
 * layer [batch, pos, d_model]; phi(x) = max_{d in dims} |x_d / sqrt(mean(x^2) + 1e-6)|; sink if
 * phi > tau (strict).
 */
export async function varSinkTokens(resid: tf.Tensor, dims: number[], opts: VarSinkOptions = {}): Promise<VarSinkResult> {
  const tau = opts.tau ?? 20;
  if (!Number.isFinite(tau) || tau <= 0) throw new ValueError('tau', expectedFound('a positive number', tau));
  checkResid(resid, 'resid');
  const [B, N, d] = resid.shape;
  checkDims(dims, d);
  const mask = await hostMask(opts.attentionMask, B, N);
  const phi = await readOut<number[][]>(tf.tidy(() => tf.gather(ratios(resid, tf.tensor2d(mask, [B, N], 'float32')), tf.tensor1d(dims, 'int32'), 2).max(-1)));
  return { phi, sink: phi.map((row) => row.map((v) => v > tau)) };
}

export interface VarSinksOptions extends RunOptions {
  tau?: number;
  /** First layer checked (default 2: sink_select_layers = layers[2:], LogicEngine.set_sink_select_layers, logic.py line 52). */
  minLayer?: number;
}

/**
 * VAR sink tokens at every layer >= minLayer of a model (x = blocks.l.hook_resid_pre, the hidden state
 * entering decoder layer l, read during prefill only: llava.py TunedLlamaModel.forward calls DimProspector
 * when get_output_token_count() < 0); phi/sink rows start at each
 * prompt's first real token.
 */
export async function varSinks(model: ModelView, batch: Batch, dims: number[], opts: VarSinksOptions = {}): Promise<Array<{ layer: number } & VarSinkResult>> {
  const L = model.cfg.n_layers;
  const minLayer = opts.minLayer ?? 2;
  if (!Number.isInteger(minLayer) || minLayer < 0 || minLayer >= L) throw new ValueError('minLayer', expectedFound(`an integer in [0, ${L})`, minLayer));
  checkDims(dims, model.cfg.d_model);
  const layers = Array.from({ length: L - minLayer }, (_, i) => minLayer + i);
  const names = layers.map((l) => actName('resid_pre', l));
  const { results } = await runChunks(model, batch, names, opts, async (c) => {
    const per = await Promise.all(names.map((n) => varSinkTokens(c.cache.get(n), dims, { tau: opts.tau, attentionMask: c.mask })));
    return per.map((r) => ({ phi: r.phi.map((row, b) => row.slice(c.first[b])), sink: r.sink.map((row, b) => row.slice(c.first[b])) }));
  });
  return layers.map((layer, i) => ({ layer, phi: results.flatMap((r) => r[i].phi), sink: results.flatMap((r) => r[i].sink) }));
}
