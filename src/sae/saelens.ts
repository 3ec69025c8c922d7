/**
 * SAELens folders: cfg.json + sae_weights.safetensors, read and written as SAELens 6 does.
 *
 * Reading follows SAELens 6's disk loader: a cfg.json without `sae_lens_version` >= 6 (at the top
 * or in `metadata`) goes through SAELens's pre-6 conversion (hook_point -> hook_name,
 * activation_fn_str + activation_fn_kwargs.k -> a topk SAE, normalize_activations true/false ->
 * "expected_average_only_in"/"none", defaults such as apply_b_dec_to_input = true), then the
 * architecture's fields and defaults apply. Architectures: standard, gated, jumprelu, topk (with
 * rescale_acts_by_decoder_norm), and SAELens's batchtopk / matryoshka_batchtopk training
 * checkpoints, which run as the jumprelu SAE that SAELens saves for inference (decoder norms
 * folded when rescaled, threshold = topk_threshold). The weights must be exactly the
 * architecture's tensors, as torch's strict load_state_dict requires.
 *
 * Normalisation at run time is SAELens's: constant_norm_rescale scales each input to norm
 * sqrt(d_in) and the output back; layer_norm standardises each input (unbiased std, eps 1e-5) and
 * undoes it on the output; expected_average_only_in is the identity (SAELens folds its factor only
 * when loading a named release, never from a folder). Arithmetic is float32 whatever `dtype` says.
 *
 * Writing produces SAELens 6's layout (the fields of the architecture's config class, `metadata`
 * with sae_lens_version "6.0.0", `architecture`), so SAELens reads it without its pre-6 path. A
 * top-level "tflens" object, which SAELens drops, records the tflens variant ('paper' with its
 * lambda and decoder normalisation) so that tflens gets its own SAE back.
 */
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, FormatError, ResolveError, ShapeError, UnsupportedModelError, ValueError, expectedFound } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { pathExists } from '../io/files.js';
import { isPlainObject, readJsonFile } from '../io/json.js';
import { readSafetensorsArrays, writeSafetensors, type SafetensorsArray } from '../io/safetensors.js';
import { SparseAutoencoder, type SAEArchitecture } from './models.js';
import { topKMaskExact } from './topk.js';

export const SAE_CFG_FILE = 'cfg.json';
export const SAE_WEIGHTS_FILE = 'sae_weights.safetensors';
/** The SAELens layout version tflens writes (SAELens reads >= 6.0.0 files without conversion). */
export const SAELENS_FORMAT_VERSION = '6.0.0';

export type SAELensArchitecture = 'standard' | 'gated' | 'jumprelu' | 'topk';
export type SAELensNormalization = 'none' | 'expected_average_only_in' | 'constant_norm_rescale' | 'layer_norm';

const NORMALIZATIONS: readonly SAELensNormalization[] = ['none', 'expected_average_only_in', 'constant_norm_rescale', 'layer_norm'];
const DTYPES = ['float32', 'float64', 'float16', 'bfloat16', 'torch.float32', 'torch.float64', 'torch.float16', 'torch.bfloat16'];
/** Top-level keys SAELens's pre-6 conversion moves into `metadata`. */
const METADATA_KEYS = [
  'model_name', 'hook_name', 'model_class_name', 'hook_head_index', 'model_from_pretrained_kwargs', 'prepend_bos', 'exclude_special_tokens',
  'neuronpedia_id', 'context_size', 'seqpos_slice', 'dataset_path', 'sae_lens_version', 'sae_lens_training_version', 'hook_name_out', 'hook_head_index_out',
];
/** SAELens training checkpoints that run as a jumprelu SAE (what SAELens's save_inference_model writes). */
const BATCHTOPK = ['batchtopk', 'matryoshka_batchtopk'];
const TRANSCODERS = ['transcoder', 'skip_transcoder', 'jumprelu_transcoder'];

/** The tensors of each architecture, as in the weights file (W_enc [d_in, d_sae] ...). */
const TENSORS: Record<SAELensArchitecture | 'batchtopk', string[]> = {
  standard: ['W_enc', 'b_enc', 'W_dec', 'b_dec'],
  topk: ['W_enc', 'b_enc', 'W_dec', 'b_dec'],
  jumprelu: ['W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold'],
  gated: ['W_enc', 'b_gate', 'b_mag', 'r_mag', 'W_dec', 'b_dec'],
  batchtopk: ['W_enc', 'b_enc', 'W_dec', 'b_dec', 'topk_threshold'],
};

export interface SAELensConfig {
  /** The SAE as it runs (a batchtopk checkpoint runs as 'jumprelu'). */
  architecture: SAELensArchitecture;
  /** The architecture the file names, after SAELens's pre-6 defaulting. */
  fileArchitecture: string;
  d_in: number;
  d_sae: number;
  dtype: string;
  device: string;
  apply_b_dec_to_input: boolean;
  normalize_activations: SAELensNormalization;
  reshape_activations: 'none' | 'hook_z';
  /** topk only. */
  k?: number;
  /** topk only: scale pre-activations by decoder norms before the top-k (and divide them out in decode). */
  rescale_acts_by_decoder_norm?: boolean;
  /** SAELens's metadata (model, hook, context...), from `metadata` or, for pre-6 files, the top level. */
  metadata: Record<string, unknown>;
  /** The file's sae_lens_version, null when absent (read through the pre-6 conversion). */
  sae_lens_version: string | null;
  hook_name: string | null;
  /** The layer in hook_name ("blocks.5.hook_resid_pre" -> 5), else a pre-6 hook_layer / hook_point_layer field. */
  hook_layer: number | null;
  hook_head_index: number | null;
  model_name: string | null;
  context_size: number | null;
  prepend_bos: boolean | null;
  /** The whole parsed cfg.json. */
  raw: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// cfg.json

/** [major, minor, patch, pre-release rank, pre-release number]; a release ranks above its pre-releases. */
function versionKey(v: string, where: string): number[] {
  const m = /^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-._]?(a|alpha|b|beta|c|rc|pre|preview)[-._]?(\d*))?(?:[-+.].*)?$/i.exec(v.trim());
  if (!m) throw new ConfigError(`${where}: sae_lens_version`, expectedFound('a version such as "6.18.0"', v));
  const pre = m[4] ? { a: 0, alpha: 0, b: 1, beta: 1, c: 2, rc: 2, pre: 2, preview: 2 }[m[4].toLowerCase()]! : 3;
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0), pre, Number(m[5] || 0)];
}

function isSAELens6(version: string, where: string): boolean {
  const a = versionKey(version, where);
  const b = [6, 0, 0, 2, 0]; // 6.0.0-rc.0
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
}

/** SAELens's conversion of a pre-6 cfg.json into the 6.0 layout (its handle_pre_6_0_config). */
function convertPre6(raw: Record<string, unknown>, where: string): Record<string, unknown> {
  const renames: Record<string, string> = { hook_point: 'hook_name', hook_point_head_index: 'hook_head_index', activation_fn_str: 'activation_fn' };
  const c: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) c[renames[k] ?? k] = v;
  const defaults: Record<string, unknown> = {
    prepend_bos: true, apply_b_dec_to_input: true, finetuning_scaling_factor: false, sae_lens_training_version: null, activation_fn: 'relu',
    architecture: 'standard', neuronpedia_id: null,
    reshape_activations: typeof c.hook_name === 'string' && c.hook_name.includes('hook_z') ? 'hook_z' : 'none',
  };
  for (const [k, v] of Object.entries(defaults)) if (!(k in c)) c[k] = v;
  const kwargs = c.activation_fn_kwargs;
  if (kwargs !== undefined && kwargs !== null && !isPlainObject(kwargs)) throw new ConfigError(`${where}: activation_fn_kwargs`, expectedFound('an object', kwargs));
  if (c.activation_fn === 'topk' && isPlainObject(kwargs) && kwargs.k !== undefined && kwargs.k !== null) c.architecture = 'topk';
  if (c.architecture === 'topk' && isPlainObject(kwargs)) c.k = kwargs.k;
  if (typeof c.normalize_activations === 'boolean') c.normalize_activations = c.normalize_activations ? 'expected_average_only_in' : 'none';
  if (c.normalize_activations === undefined || c.normalize_activations === null) c.normalize_activations = 'none';
  if (!['standard', 'gated', 'jumprelu', 'topk'].includes(c.architecture as string)) {
    // SAELens converts pre-6 files through its inference registry only (batchtopk came with 6.0)
    throw new UnsupportedModelError(`${where}: architecture`, `${JSON.stringify(c.architecture)} in a pre-6 cfg.json (no sae_lens_version >= 6); expected standard, gated, jumprelu or topk`);
  }
  const metadata: Record<string, unknown> = {};
  for (const k of METADATA_KEYS) if (k in c) metadata[k] = c[k];
  return { ...c, metadata };
}

function positiveInt(c: Record<string, unknown>, key: string, where: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (v === undefined) throw new ConfigError(`${where}: ${key}`, 'required field is missing');
  if (!(typeof v === 'number' && Number.isInteger(v) && v > 0)) throw new ConfigError(`${where}: ${key}`, expectedFound('a positive integer', v));
  return v;
}

function flag(c: Record<string, unknown>, key: string, where: string, fallback: boolean): boolean {
  const v = c[key] === undefined ? fallback : c[key];
  if (typeof v !== 'boolean') throw new ConfigError(`${where}: ${key}`, expectedFound('true or false', v));
  return v;
}

function oneOf<T extends string>(c: Record<string, unknown>, key: string, allowed: readonly T[], where: string, fallback: T): T {
  const v = c[key] === undefined ? fallback : c[key];
  if (!allowed.includes(v as T)) throw new ConfigError(`${where}: ${key}`, expectedFound(`one of ${allowed.join(', ')}`, v));
  return v as T;
}

/** The architecture a file names, checked; batchtopk checkpoints are returned as such. */
function fileArchitecture(c: Record<string, unknown>, where: string): SAELensArchitecture | 'batchtopk' {
  const a = c.architecture;
  if (a === undefined) throw new ConfigError(`${where}: architecture`, 'required field is missing (SAELens 6 files name their architecture)');
  if (typeof a === 'string' && BATCHTOPK.includes(a)) return 'batchtopk';
  if (typeof a === 'string' && TRANSCODERS.includes(a)) {
    throw new UnsupportedModelError(`${where}: architecture`, `"${a}" is a transcoder (reads one hook, writes another); tflens loads SAEs only`);
  }
  if (a !== 'standard' && a !== 'gated' && a !== 'jumprelu' && a !== 'topk') {
    throw new UnsupportedModelError(`${where}: architecture`, expectedFound('standard, gated, jumprelu, topk, batchtopk or matryoshka_batchtopk', a));
  }
  return a;
}

function metaValue<T>(meta: Record<string, unknown>, key: string, ok: (v: unknown) => v is T): T | null {
  const v = meta[key];
  return ok(v) ? v : null;
}
const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number';
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';

/**
 * A cfg.json object as SAELens 6 reads it (see the file comment); typed errors name `where` and
 * the field. Pure: reads no weights.
 */
export function parseSAELensConfig(rawIn: unknown, where: string): SAELensConfig {
  if (!isPlainObject(rawIn)) throw new FormatError(where, expectedFound('a JSON object', Array.isArray(rawIn) ? 'an array' : typeof rawIn));
  const raw = rawIn;
  if (raw.metadata !== undefined && !isPlainObject(raw.metadata)) throw new ConfigError(`${where}: metadata`, expectedFound('an object', raw.metadata));
  const fileMeta = (raw.metadata ?? {}) as Record<string, unknown>;
  const version = [raw.sae_lens_version, fileMeta.sae_lens_version].find((v) => typeof v === 'string' && v.length > 0) as string | undefined;
  const c = version !== undefined && isSAELens6(version, where) ? { ...raw, metadata: { ...fileMeta } } : convertPre6(raw, where);
  const meta = c.metadata as Record<string, unknown>;
  const arch = fileArchitecture(c, where);
  const dIn = positiveInt(c, 'd_in', where);
  const dSae = positiveInt(c, 'd_sae', where);
  const k = arch === 'topk' ? positiveInt(c, 'k', where, 100) : undefined;
  if (k !== undefined && k > dSae) throw new ConfigError(`${where}: k`, expectedFound(`at most d_sae = ${dSae} features`, k));
  const reshape = oneOf(c, 'reshape_activations', ['none', 'hook_z'] as const, where, 'none');
  const hookName = metaValue(meta, 'hook_name', isStr);
  if (reshape === 'hook_z' && hookName !== null && !hookName.endsWith('_z')) {
    throw new ConfigError(`${where}: reshape_activations`, `"hook_z" needs a hook_z hook, found hook_name "${hookName}"`);
  }
  if (typeof c.dtype === 'string' && !DTYPES.includes(c.dtype)) throw new ConfigError(`${where}: dtype`, expectedFound(`one of ${DTYPES.join(', ')}`, c.dtype));
  const layerField = raw.hook_layer ?? raw.hook_point_layer;
  const layerInName = hookName !== null ? /\.(\d+)\./.exec(hookName) : null;
  return {
    architecture: arch === 'batchtopk' ? 'jumprelu' : arch,
    fileArchitecture: c.architecture as string,
    d_in: dIn,
    d_sae: dSae,
    dtype: typeof c.dtype === 'string' ? c.dtype : 'float32',
    device: typeof c.device === 'string' ? c.device : 'cpu',
    apply_b_dec_to_input: flag(c, 'apply_b_dec_to_input', where, true),
    normalize_activations: oneOf(c, 'normalize_activations', NORMALIZATIONS, where, 'none'),
    reshape_activations: reshape,
    ...(arch === 'topk' ? { k, rescale_acts_by_decoder_norm: flag(c, 'rescale_acts_by_decoder_norm', where, false) } : {}),
    // batchtopk: its training config's default (true) decides whether decoder norms are folded
    ...(arch === 'batchtopk' ? { rescale_acts_by_decoder_norm: flag(c, 'rescale_acts_by_decoder_norm', where, true) } : {}),
    metadata: meta,
    sae_lens_version: version ?? null,
    hook_name: hookName,
    hook_layer: layerInName ? Number(layerInName[1]) : isNum(layerField) ? layerField : null,
    hook_head_index: metaValue(meta, 'hook_head_index', isNum),
    model_name: metaValue(meta, 'model_name', isStr),
    context_size: metaValue(meta, 'context_size', isNum),
    prepend_bos: metaValue(meta, 'prepend_bos', isBool),
    raw,
  };
}

// ---------------------------------------------------------------------------------------------
// weights

type HostWeights = Record<string, { data: Float32Array; shape: number[] }>;

function expectedShapes(cfg: SAELensConfig): Record<string, number[]> {
  const { d_in: i, d_sae: s } = cfg;
  return { W_enc: [i, s], W_dec: [s, i], b_dec: [i], b_enc: [s], threshold: [s], b_gate: [s], b_mag: [s], r_mag: [s], topk_threshold: [] };
}

/** Fold decoder norms into the encoder (SAELens's TopK fold): W_dec rows unit norm, W_enc columns and b_enc scaled. */
function foldDecoderNorms(w: HostWeights, dIn: number, dSae: number): void {
  const { W_enc, W_dec, b_enc } = { W_enc: w.W_enc.data, W_dec: w.W_dec.data, b_enc: w.b_enc.data };
  for (let j = 0; j < dSae; j++) {
    let s = 0;
    for (let i = 0; i < dIn; i++) s += W_dec[j * dIn + i] ** 2;
    const norm = Math.sqrt(s);
    b_enc[j] *= norm;
    for (let i = 0; i < dIn; i++) {
      W_dec[j * dIn + i] /= norm;
      W_enc[i * dSae + j] *= norm;
    }
  }
}

/**
 * The file's tensors checked against the architecture (names exactly, shapes; an all-ones
 * `scaling_factor`, which SAELens drops, is allowed), as float32 host arrays; batchtopk
 * checkpoints converted to their jumprelu form.
 */
function prepareWeights(arrays: Record<string, SafetensorsArray>, cfg: SAELensConfig, where: string): HostWeights {
  const names = TENSORS[BATCHTOPK.includes(cfg.fileArchitecture) ? 'batchtopk' : cfg.architecture];
  const sf = arrays.scaling_factor;
  if (sf && !Array.from(sf.data).every((v) => v === 1)) {
    throw new UnsupportedModelError(`${where}: scaling_factor`, 'a fine-tuning scaling factor other than 1 (SAELens 6 does not load it either)');
  }
  const extra = Object.keys(arrays).filter((n) => !names.includes(n) && n !== 'scaling_factor');
  if (extra.length) throw new FormatError(where, `tensors ${extra.join(', ')} are not part of a ${cfg.fileArchitecture} SAE (expected ${names.join(', ')})`);
  const shapes = expectedShapes(cfg);
  const w: HostWeights = {};
  for (const n of names) {
    const a = arrays[n];
    if (!a) throw new FormatError(`${where}: ${n}`, expectedFound(`a tensor of shape [${shapes[n]}] (${cfg.fileArchitecture} SAE)`, 'missing'));
    if (a.shape.join() !== shapes[n].join()) {
      throw new FormatError(`${where}: ${n}`, `${expectedFound(`shape [${shapes[n]}]`, `[${a.shape}]`)} (cfg.json: d_in=${cfg.d_in}, d_sae=${cfg.d_sae})`);
    }
    w[n] = { data: Float32Array.from(a.data), shape: a.shape };
  }
  if (w.topk_threshold) {
    if (cfg.rescale_acts_by_decoder_norm) foldDecoderNorms(w, cfg.d_in, cfg.d_sae);
    w.threshold = { data: new Float32Array(cfg.d_sae).fill(w.topk_threshold.data[0]), shape: [cfg.d_sae] };
    delete w.topk_threshold;
  }
  return w;
}

// ---------------------------------------------------------------------------------------------
// the SAE

export interface SAELensForward {
  /** Feature activations [..., d_sae]. */
  features: tf.Tensor;
  /** Reconstruction, shaped like the input. */
  recon: tf.Tensor;
}

/**
 * An SAE as SAELens 6 runs it (inference only): encode, decode and forward over inputs of shape
 * [..., d_in] (for reshape_activations "hook_z" also [..., n_heads, d_head]). Holds its weights as
 * tensors under SAELens's names; dispose() frees them.
 */
export class SAELensSAE {
  readonly params: Readonly<Record<string, tf.Tensor>>;
  private disposed = false;
  /** Decoder row norms [d_sae] (topk with rescale_acts_by_decoder_norm only). */
  private readonly decNorm: tf.Tensor | null;

  constructor(
    readonly cfg: SAELensConfig,
    weights: Record<string, tf.Tensor>,
  ) {
    this.params = { ...weights };
    this.decNorm = cfg.architecture === 'topk' && cfg.rescale_acts_by_decoder_norm ? tf.tidy(() => tf.norm(weights.W_dec, 'euclidean', 1)) : null;
  }

  get architecture(): SAELensArchitecture {
    return this.cfg.architecture;
  }
  get dIn(): number {
    return this.cfg.d_in;
  }
  get dSae(): number {
    return this.cfg.d_sae;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** [..., d_in] (or [..., H, d_head] for hook_z SAEs) -> [n, d_in] and the leading dims. */
  private flatten(x: tf.Tensor, what: string): { flat: tf.Tensor2D; lead: number[] } {
    if (this.disposed) throw new ValueError('sae', 'this SAE has been disposed');
    if (x.dtype !== 'float32') throw new ValueError(what, expectedFound('a float32 tensor', x.dtype));
    const s = x.shape;
    const hookZ = this.cfg.reshape_activations === 'hook_z' && s.length >= 3 && s[s.length - 2] * s[s.length - 1] === this.dIn && s[s.length - 1] !== this.dIn;
    const lead = s.slice(0, hookZ ? -2 : -1);
    if (s.length < 1 || (!hookZ && s[s.length - 1] !== this.dIn)) {
      throw new ShapeError(what, expectedFound(`[..., ${this.dIn}]${this.cfg.reshape_activations === 'hook_z' ? ' or [..., n_heads, d_head]' : ''}`, s));
    }
    return { flat: tf.reshape(x, [lead.reduce((a, b) => a * b, 1), this.dIn]) as tf.Tensor2D, lead };
  }

  /** SAELens's run-time input normalisation (identity for none / expected_average_only_in). */
  private normIn(x: tf.Tensor2D): tf.Tensor2D {
    const n = this.cfg.normalize_activations;
    if (n === 'constant_norm_rescale') return tf.mul(x, tf.div(Math.sqrt(this.dIn), tf.norm(x, 'euclidean', 1, true)));
    if (n === 'layer_norm') {
      const { mu, std } = this.lnStats(x);
      return tf.div(tf.sub(x, mu), tf.add(std, 1e-5));
    }
    return x;
  }

  /** Undo normIn on a reconstruction, given the original (flattened) input. */
  private normOut(y: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor2D {
    const n = this.cfg.normalize_activations;
    if (n === 'constant_norm_rescale') return tf.div(y, tf.div(Math.sqrt(this.dIn), tf.norm(x, 'euclidean', 1, true)));
    if (n === 'layer_norm') {
      const { mu, std } = this.lnStats(x);
      return tf.add(tf.mul(y, std), mu);
    }
    return y;
  }

  /** Row mean and unbiased standard deviation (torch's Tensor.std). */
  private lnStats(x: tf.Tensor2D): { mu: tf.Tensor; std: tf.Tensor } {
    const mu = tf.mean(x, 1, true);
    const ss = tf.sum(tf.square(tf.sub(x, mu)), 1, true);
    return { mu, std: tf.sqrt(tf.div(ss, Math.max(this.dIn - 1, 1))) };
  }

  /** Feature activations of SAE inputs [n, d_in] (after normalisation). */
  private activate(x: tf.Tensor2D): tf.Tensor2D {
    const p = this.params;
    const sin = this.cfg.apply_b_dec_to_input ? tf.sub(x, p.b_dec) : x;
    const lin = (w: tf.Tensor, b: tf.Tensor) => tf.add(tf.matMul(sin as tf.Tensor2D, w as tf.Tensor2D), b) as tf.Tensor2D;
    switch (this.cfg.architecture) {
      case 'standard':
        return tf.relu(lin(p.W_enc, p.b_enc));
      case 'jumprelu': {
        const pre = lin(p.W_enc, p.b_enc);
        return tf.mul(tf.relu(pre), tf.cast(tf.greater(pre, p.threshold), 'float32'));
      }
      case 'gated': {
        const gate = tf.cast(tf.greater(lin(p.W_enc, p.b_gate), 0), 'float32');
        return tf.mul(gate, tf.relu(lin(tf.mul(p.W_enc, tf.exp(p.r_mag)), p.b_mag)));
      }
      case 'topk': {
        let pre = lin(p.W_enc, p.b_enc);
        if (this.decNorm) pre = tf.mul(pre, this.decNorm);
        return tf.mul(tf.relu(pre), topKMaskExact(pre, this.cfg.k!));
      }
    }
  }

  /** Feature activations [..., d_sae]. */
  encode(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const { flat, lead } = this.flatten(x, 'x');
      return tf.reshape(this.activate(this.normIn(flat)), [...lead, this.dSae]);
    });
  }

  /**
   * Reconstruction from features [..., d_sae]: f W_dec + b_dec (topk with rescaling divides f by
   * the decoder norms first), with the input normalisation undone. constant_norm_rescale and
   * layer_norm undo statistics of the input, so they need `input` (the x that was encoded).
   */
  decode(features: tf.Tensor, input?: tf.Tensor): tf.Tensor {
    if (this.disposed) throw new ValueError('sae', 'this SAE has been disposed');
    const f = features.shape;
    if (f[f.length - 1] !== this.dSae) throw new ShapeError('features', expectedFound(`[..., ${this.dSae}]`, f));
    const needsInput = this.cfg.normalize_activations === 'constant_norm_rescale' || this.cfg.normalize_activations === 'layer_norm';
    if (needsInput && !input) throw new ValueError('input', `normalize_activations "${this.cfg.normalize_activations}" undoes the input's statistics: pass the encoded input`);
    return tf.tidy(() => {
      const lead = f.slice(0, -1);
      let g = tf.reshape(features, [lead.reduce((a, b) => a * b, 1), this.dSae]) as tf.Tensor2D;
      if (this.decNorm) g = tf.div(g, this.decNorm);
      let y = tf.add(tf.matMul(g, this.params.W_dec as tf.Tensor2D), this.params.b_dec) as tf.Tensor2D;
      if (needsInput) y = this.normOut(y, this.flatten(input!, 'input').flat);
      return tf.reshape(y, input ? input.shape : [...lead, this.dIn]);
    });
  }

  forward(x: tf.Tensor): SAELensForward {
    return tf.tidy(() => {
      const features = this.encode(x);
      return { features, recon: this.decode(features, x) };
    });
  }

  /**
   * The tflens training class with these weights (a copy), for a standard or topk SAE without
   * run-time normalisation or rescaling; a file tflens wrote gets its own variant back ('paper'
   * with its lambda and decoder normalisation).
   */
  toSparseAutoencoder(): SparseAutoencoder {
    const c = this.cfg;
    const plain = (c.architecture === 'standard' || (c.architecture === 'topk' && !c.rescale_acts_by_decoder_norm)) && ['none', 'expected_average_only_in'].includes(c.normalize_activations);
    if (!plain) {
      throw new UnsupportedModelError(
        'sae',
        `a ${c.fileArchitecture} SAE${c.normalize_activations !== 'none' ? ` with normalize_activations "${c.normalize_activations}"` : ''}${c.rescale_acts_by_decoder_norm ? ' with rescaled top-k' : ''} has no SparseAutoencoder equivalent; use this SAELensSAE`,
      );
    }
    const tfl = isPlainObject(c.raw.tflens) ? c.raw.tflens : {};
    const paper = tfl.architecture === 'paper' && c.architecture === 'standard' && c.apply_b_dec_to_input;
    const arch: SAEArchitecture = paper ? 'paper' : c.architecture === 'topk' ? 'topk' : 'standard';
    const lambda = typeof tfl.lambda === 'number' && Number.isFinite(tfl.lambda) && tfl.lambda >= 0 ? tfl.lambda : undefined;
    const { W_enc, b_enc, W_dec, b_dec } = this.params;
    return new SparseAutoencoder(
      { architecture: arch, dIn: c.d_in, dSae: c.d_sae, k: c.k, lambda, applyBDecToInput: c.apply_b_dec_to_input, decoderNorm: paper && tfl.decoderNorm === 'input' ? 'input' : undefined },
      { W_enc, b_enc, W_dec, b_dec },
    );
  }

  dispose(): void {
    if (this.disposed) return;
    tf.dispose([...Object.values(this.params), ...(this.decNorm ? [this.decNorm] : [])]);
    this.disposed = true;
  }
}

/**
 * Read a SAELens folder (written by SAELens 6 or earlier, or by tflens). Reading the weights
 * involves no readback of computed tensors.
 */
export async function loadSAELens(dir: string): Promise<{ sae: SAELensSAE; cfg: SAELensConfig }> {
  const cfgPath = path.join(dir, SAE_CFG_FILE);
  const weightsPath = path.join(dir, SAE_WEIGHTS_FILE);
  const cfg = parseSAELensConfig(await readJsonFile(cfgPath, 'SAE config'), cfgPath);
  if (!(await pathExists(weightsPath))) throw new ResolveError(weightsPath, 'file not found (the SAE weights)');
  const w = prepareWeights(await readSafetensorsArrays(weightsPath), cfg, weightsPath);
  const tensors = Object.fromEntries(Object.entries(w).map(([n, a]) => [n, tf.tensor(a.data, a.shape, 'float32')]));
  return { sae: new SAELensSAE(cfg, tensors), cfg };
}

// ---------------------------------------------------------------------------------------------
// writing

export interface SAELensSaveConfig {
  /** Hook the SAE reads, e.g. "blocks.5.hook_resid_pre"; required for a SparseAutoencoder, default the loaded SAE's. */
  hookName?: string;
  hookHeadIndex?: number | null;
  modelName?: string;
  contextSize?: number;
  prependBos?: boolean;
  datasetPath?: string;
  /** More `metadata` entries (e.g. neuronpedia_id, model_from_pretrained_kwargs). */
  metadata?: Record<string, unknown>;
  /** Extra top-level cfg.json fields (SAELens ignores them; must not collide with written ones). */
  extra?: Record<string, unknown>;
}

/** cfg.json fields and tensors of an SAE, in SAELens's field order (metadata added by the caller). */
function describeForSAELens(sae: SparseAutoencoder | SAELensSAE): { fields: Record<string, unknown>; tensors: Record<string, tf.Tensor>; tflens: Record<string, unknown> } {
  if (sae instanceof SAELensSAE) {
    const c = sae.cfg;
    const fields: Record<string, unknown> = {
      d_in: c.d_in, d_sae: c.d_sae, dtype: 'float32', device: 'cpu', apply_b_dec_to_input: c.apply_b_dec_to_input,
      normalize_activations: c.normalize_activations, reshape_activations: c.reshape_activations,
    };
    if (c.architecture === 'topk') Object.assign(fields, { k: c.k, rescale_acts_by_decoder_norm: c.rescale_acts_by_decoder_norm ?? false });
    const tflens = isPlainObject(c.raw.tflens) ? { ...c.raw.tflens } : {};
    return { fields: { ...fields, architecture: c.architecture }, tensors: { ...sae.params }, tflens };
  }
  const topk = sae.architecture === 'topk';
  const fields: Record<string, unknown> = {
    d_in: sae.dIn, d_sae: sae.dSae, dtype: 'float32', device: 'cpu', apply_b_dec_to_input: sae.applyBDecToInput,
    normalize_activations: 'none', reshape_activations: 'none',
    ...(topk ? { k: sae.k, rescale_acts_by_decoder_norm: false } : {}),
    architecture: topk ? 'topk' : 'standard',
  };
  const { W_enc, b_enc, W_dec, b_dec } = sae.params;
  return { fields, tensors: { W_enc, b_enc, W_dec, b_dec }, tflens: { architecture: sae.architecture, lambda: sae.lambda, decoderNorm: sae.decoderNorm } };
}

/**
 * Write an SAE as a SAELens 6 folder (both files atomic; the weights first, then cfg.json): a
 * tflens SparseAutoencoder (paper/standard -> 'standard', topk -> 'topk') or a loaded SAELensSAE
 * (any architecture, written back as SAELens would save it).
 */
export async function saveSAELens(
  sae: SparseAutoencoder | SAELensSAE,
  dir: string,
  cfg: SAELensSaveConfig = {},
): Promise<{ cfgPath: string; weightsPath: string; cfg: Record<string, unknown> }> {
  if (sae.isDisposed) throw new ValueError('sae', 'this SAE has been disposed');
  if (typeof dir !== 'string' || dir.length === 0) throw new ValueError('dir', expectedFound('a folder path', dir));
  const loaded = sae instanceof SAELensSAE ? sae.cfg.metadata : {};
  const hookName = cfg.hookName ?? (typeof loaded.hook_name === 'string' ? loaded.hook_name : undefined);
  if (typeof hookName !== 'string' || hookName.length === 0) {
    throw new ConfigError('cfg.hookName', expectedFound('the hook name the SAE reads (e.g. "blocks.5.hook_resid_pre")', cfg?.hookName));
  }
  const given: Record<string, unknown> = {
    model_name: cfg.modelName, hook_name: hookName, hook_head_index: cfg.hookHeadIndex, context_size: cfg.contextSize,
    prepend_bos: cfg.prependBos, dataset_path: cfg.datasetPath, ...cfg.metadata,
  };
  const metadata: Record<string, unknown> = { model_name: null, hook_head_index: null, prepend_bos: true, context_size: null, dataset_path: null, ...loaded };
  for (const [k, v] of Object.entries(given)) if (v !== undefined) metadata[k] = v;
  Object.assign(metadata, { sae_lens_version: SAELENS_FORMAT_VERSION, sae_lens_training_version: null });
  const { fields, tensors, tflens } = describeForSAELens(sae);
  const { architecture, ...rest } = fields;
  const out: Record<string, unknown> = { ...rest, metadata, architecture, tflens: { ...tflens, written_by: 'tflens' } };
  for (const [k, v] of Object.entries(cfg.extra ?? {})) {
    if (k in out) throw new ConfigError(`cfg.extra.${k}`, 'collides with a field tflens writes');
    out[k] = v;
  }
  const weightsPath = path.join(dir, SAE_WEIGHTS_FILE);
  const cfgPath = path.join(dir, SAE_CFG_FILE);
  await writeSafetensors(weightsPath, tensors);
  await writeFileAtomic(cfgPath, JSON.stringify(out, null, 2) + '\n');
  return { cfgPath, weightsPath, cfg: out };
}
