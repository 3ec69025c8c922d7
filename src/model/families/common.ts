/**
 * What every architecture family provides, and the reshaping helpers they share.
 * A family converts between an HF state dict and the canonical (TransformerLens) layout.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, FormatError, UnsupportedModelError, expectedFound } from '../../errors.js';
import { PLAIN, type ActFn, type ConfigReader, type ModelConfig, type NormKind, type RopeScaling, type RopeSpec } from '../config.js';

export type StateDict = Record<string, tf.Tensor>;

export interface Family {
  /** HF model_type values handled by this family. */
  modelTypes: string[];
  /** The HF class written into config.json "architectures" when saving. */
  hfClass: string;
  /** Prefixes of the checkpoint's tensor names, tried in order (the first is written when saving). */
  prefixes: string[];
  /** Checkpoint buffers HF itself ignores on load for this family (masks saved by old versions); matched on full names. */
  extraTensors?: RegExp[];
  normalize(r: ConfigReader): ModelConfig;
  /** HF state dict -> canonical params (new tensors; the caller disposes the HF ones). */
  toCanonical(sd: WeightSource, cfg: ModelConfig): StateDict;
  /** Canonical params -> HF state dict (new tensors). */
  fromCanonical(params: StateDict, cfg: ModelConfig): StateDict;
}

/**
 * Reads HF tensors by name, trying prefixes, and checks shapes; errors name the file and tensor.
 * Every name found through find/get/getOr is recorded, so the loader can tell which tensors of
 * the checkpoint a family never used (unread()): families need no bookkeeping of their own.
 */
export class WeightSource {
  private readonly used = new Set<string>();
  /**
   * Set by the loader: receives each layer's canonical tensors when convertLayer ends the layer, and
   * returns the tensor to keep in the state dict, or null to take it out (the loader keeps it packed
   * in half precision elsewhere).
   */
  finish?: (name: string, t: tf.Tensor) => tf.Tensor | null;
  /** Tensors convertLayer kept beyond its scope (the loader frees them if the conversion fails). */
  readonly kept: tf.Tensor[] = [];
  constructor(
    readonly sd: StateDict,
    readonly where: string,
    readonly prefixes: string[] = [''],
  ) {}
  find(name: string): tf.Tensor | undefined {
    for (const p of this.prefixes) {
      const t = this.sd[p + name];
      if (t) {
        this.used.add(p + name);
        return t;
      }
    }
    return undefined;
  }
  get(name: string, shape: number[]): tf.Tensor {
    const t = this.find(name);
    if (!t) throw new FormatError(`${this.where}: ${this.prefixes[0]}${name}`, 'tensor is missing from the checkpoint');
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new FormatError(`${this.where}: ${name}`, expectedFound(`shape [${shape}]`, `[${t.shape}]`));
    }
    return t;
  }
  /** Optional tensor: zeros of `shape` when absent. */
  getOr(name: string, shape: number[]): tf.Tensor {
    return this.find(name) ? this.get(name, shape) : tf.zeros(shape);
  }
  /** Full names (prefix included) of the state dict's tensors that find/get/getOr never returned, in dict order. */
  unread(): string[] {
    return Object.keys(this.sd).filter((k) => !this.used.has(k));
  }
}

/**
 * One layer of a converter: `body` writes the layer's canonical tensors into `p`. It runs in its own
 * tf.tidy, so the checkpoint tensors it read and its intermediates are freed when the layer ends
 * (a checkpoint converts layer by layer, never all in float32 at once); then `src.finish` sees the
 * layer's new tensors.
 */
export function convertLayer(src: WeightSource, p: StateDict, body: () => void): void {
  const before = new Set(Object.keys(p));
  const fresh = () => Object.keys(p).filter((k) => !before.has(k));
  tf.tidy(() => {
    body();
    for (const k of fresh()) src.kept.push(tf.keep(p[k]));
  });
  if (!src.finish) return;
  for (const k of fresh()) {
    const t = src.finish(k, p[k]);
    if (t) p[k] = t;
    else delete p[k];
  }
}

/** [d_in, H*dh] (x @ W convention) -> [H, d_in, dh]. */
export function splitHeadsIn(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  const [dIn, hd] = w.shape as [number, number];
  return tf.transpose(tf.reshape(w, [dIn, nHeads, hd / nHeads]), [1, 0, 2]) as tf.Tensor3D;
}
/** [H, d_in, dh] -> [d_in, H*dh]. */
export function mergeHeadsIn(w: tf.Tensor): tf.Tensor2D {
  const [h, dIn, dh] = w.shape as [number, number, number];
  return tf.reshape(tf.transpose(w, [1, 0, 2]), [dIn, h * dh]) as tf.Tensor2D;
}
/** nn.Linear weight [out, in] -> x @ W form [in, out]. */
export function linT(w: tf.Tensor): tf.Tensor2D {
  return tf.transpose(w) as tf.Tensor2D;
}
/** Linear weight [H*dh, d] (q/k/v proj) -> [H, d, dh]. */
export function projToHeads(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  return splitHeadsIn(linT(w), nHeads);
}
/** [H, d, dh] -> Linear weight [H*dh, d]. */
export function headsToProj(w: tf.Tensor): tf.Tensor2D {
  return linT(mergeHeadsIn(w));
}
/** o_proj Linear weight [d, H*dh] -> W_O [H, dh, d]. */
export function oProjToWO(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  const [d, hd] = w.shape as [number, number];
  return tf.reshape(tf.transpose(w), [nHeads, hd / nHeads, d]) as tf.Tensor3D;
}
/** W_O [H, dh, d] -> o_proj Linear weight [d, H*dh]. */
export function wOToOProj(w: tf.Tensor): tf.Tensor2D {
  const [h, dh, d] = w.shape as [number, number, number];
  return tf.transpose(tf.reshape(w, [h * dh, d])) as tf.Tensor2D;
}
/** Bias [H*dh] -> [H, dh]. */
export function biasToHeads(b: tf.Tensor, nHeads: number): tf.Tensor2D {
  return tf.reshape(b, [nHeads, b.shape[0] / nHeads]) as tf.Tensor2D;
}

const ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'];

export interface RopeOptions {
  /** Top-level key of the base in older configs (rope_theta, rotary_emb_base) and its default. */
  thetaKey: string;
  defaultTheta: number;
  headDim: number;
  /** The family's default rotary fraction when the config names none (Phi: 0.5, StableLM: 0.25). */
  defaultPartial?: number;
  /** Per-layer types, for rope parameters nested by layer type. */
  layerTypes?: string[] | null;
  /** Legacy rope type names (Phi-3: su -> longrope). */
  rename?: Record<string, string>;
}

export interface RopeRead {
  theta: number;
  /** Fraction of d_head that rotates. */
  partial: number;
  scaling: RopeScaling;
  /** Per layer settings when `rope_parameters` is nested by layer type (Gemma 3); null otherwise. */
  layerRope: RopeSpec[] | null;
}

/**
 * Rotary settings from an HF config in either syntax: `rope_parameters` (transformers >= 5, possibly
 * nested per layer type) or the older top-level `rope_theta` / `rope_scaling` / `partial_rotary_factor`.
 * As HF's standardisation, a `rope_scaling` entry wins over `rope_parameters`, and a top-level
 * `original_max_position_embeddings` over the one inside the entry. An unknown rope type is a ConfigError.
 */
export function readRope(r: ConfigReader, o: RopeOptions): RopeRead {
  const rp = r.json.rope_parameters as Record<string, unknown> | undefined | null;
  const rs = r.json.rope_scaling as Record<string, unknown> | undefined | null;
  const types = o.layerTypes ? [...new Set(o.layerTypes)] : null;
  const nested = rp && types && !rs && Object.keys(rp).length > 0 && Object.keys(rp).every((k) => types.includes(k));
  if (nested) {
    const byType: Record<string, { spec: RopeSpec; partial: number }> = {};
    for (const t of types) {
      const entry = rp[t] as Record<string, unknown> | undefined;
      if (!entry || typeof entry !== 'object') throw new ConfigError(`${r.where}: rope_parameters.${t}`, 'missing: every layer type needs its rotary settings');
      byType[t] = ropeEntry(r, entry, `rope_parameters.${t}`, o);
    }
    const first = byType[o.layerTypes![0]];
    return { theta: first.spec.theta, partial: first.partial, scaling: first.spec.scaling, layerRope: o.layerTypes!.map((t) => byType[t].spec) };
  }
  const entry = { ...(rp ?? {}), ...(rs ?? {}) };
  const e = ropeEntry(r, entry, rs ? 'rope_scaling' : 'rope_parameters', o);
  return { theta: e.spec.theta, partial: e.partial, scaling: e.spec.scaling, layerRope: null };
}

function ropeEntry(r: ConfigReader, d: Record<string, unknown>, field: string, o: RopeOptions): { spec: RopeSpec; partial: number } {
  const where = `${r.where}: ${field}`;
  const num = (k: string, fallback?: number): number => {
    const v = d[k];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`${where}.${k}`, 'required field is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${where}.${k}`, expectedFound('a finite number', JSON.stringify(v)));
    return v;
  };
  const theta = typeof d.rope_theta === 'number' ? d.rope_theta : r.num(o.thetaKey, o.defaultTheta);
  const partial = typeof d.partial_rotary_factor === 'number' ? d.partial_rotary_factor : r.num('partial_rotary_factor', o.defaultPartial ?? 1);
  let type = String(d.rope_type ?? d.type ?? 'default');
  type = o.rename?.[type] ?? type;
  if (!ROPE_TYPES.includes(type)) {
    throw new ConfigError(`${where}.rope_type`, `rope type ${JSON.stringify(type)} is not supported; supported: ${ROPE_TYPES.join(', ')}`);
  }
  const maxPos = r.int('max_position_embeddings', 2048);
  const original = () => (r.has('original_max_position_embeddings') ? r.int('original_max_position_embeddings') : num('original_max_position_embeddings', maxPos));
  const dim = Math.floor(o.headDim * partial);
  let scaling: RopeScaling;
  switch (type) {
    case 'linear':
      scaling = { rope_type: 'linear', factor: num('factor') };
      break;
    case 'dynamic':
      scaling = { rope_type: 'dynamic', factor: num('factor'), max_position_embeddings: maxPos };
      break;
    case 'yarn': {
      const orig = original();
      const factor = num('factor', maxPos / orig);
      const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
      const ms = d.mscale as number | undefined;
      const msAll = d.mscale_all_dim as number | undefined;
      const attn = num('attention_factor', ms && msAll ? mscale(factor, ms) / mscale(factor, msAll) : mscale(factor));
      scaling = { rope_type: 'yarn', factor, original_max_position_embeddings: orig, beta_fast: num('beta_fast', 32) || 32, beta_slow: num('beta_slow', 1) || 1, attention_factor: attn, truncate: d.truncate !== false };
      break;
    }
    case 'longrope': {
      const orig = original();
      const factor = num('factor', maxPos / orig);
      const attn = num('attention_factor', factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(orig)));
      const list = (k: string) => {
        const v = d[k];
        if (!Array.isArray(v) || v.length !== dim / 2 || v.some((x) => typeof x !== 'number')) throw new ConfigError(`${where}.${k}`, expectedFound(`${dim / 2} numbers (rotary dims / 2)`, JSON.stringify(v)));
        return v as number[];
      };
      scaling = { rope_type: 'longrope', short_factor: list('short_factor'), long_factor: list('long_factor'), original_max_position_embeddings: orig, attention_factor: attn };
      break;
    }
    case 'llama3':
      scaling = { rope_type: 'llama3', factor: num('factor'), low_freq_factor: num('low_freq_factor'), high_freq_factor: num('high_freq_factor'), original_max_position_embeddings: original() };
      break;
    default:
      scaling = { rope_type: 'default' };
  }
  return { spec: { theta, scaling }, partial };
}

/**
 * Per-layer attention types from `layer_types` ('sliding_attention' / 'full_attention'), or from
 * `fallback` when the config has none; null when no layer is windowed.
 */
export function readLayerTypes(r: ConfigReader, nLayers: number, fallback: (l: number) => 'sliding_attention' | 'full_attention'): string[] {
  const v = r.json.layer_types;
  if (v === undefined || v === null) return Array.from({ length: nLayers }, (_, l) => fallback(l));
  if (!Array.isArray(v) || v.length !== nLayers || v.some((t) => t !== 'sliding_attention' && t !== 'full_attention')) {
    throw new ConfigError(`${r.where}: layer_types`, expectedFound(`${nLayers} entries of "sliding_attention" or "full_attention"`, JSON.stringify(v)));
  }
  return v as string[];
}

/** 'local' for sliding layers, 'global' otherwise (TransformerLens's attn_types). */
export function attnTypes(layerTypes: string[]): ('global' | 'local')[] {
  return layerTypes.map((t) => (t === 'sliding_attention' ? 'local' : 'global'));
}

/** The token ids every family reads. */
export function tokenIds(r: ConfigReader): Pick<ModelConfig, 'bos_token_id' | 'eos_token_id' | 'pad_token_id' | 'hf'> {
  return { bos_token_id: r.tokenId('bos_token_id'), eos_token_id: r.tokenId('eos_token_id'), pad_token_id: r.tokenId('pad_token_id'), hf: r.json };
}

/** A norm's canonical entries (`name.w`, `name.b` when LayerNorm with bias) from HF `hf.weight` / `hf.bias`. */
export function readNorm(src: WeightSource, p: StateDict, hf: string, name: string, d: number, bias: boolean, offset = 0): void {
  const w = src.get(`${hf}.weight`, [d]);
  p[`${name}.w`] = offset ? tf.add(w, offset) : w.clone();
  if (bias) p[`${name}.b`] = src.get(`${hf}.bias`, [d]).clone();
}

/** The inverse of readNorm (subtracting the offset of (1 + w) norms). */
export function writeNorm(p: StateDict, sd: StateDict, name: string, hf: string, offset = 0): void {
  if (!p[`${name}.w`]) return;
  sd[`${hf}.weight`] = offset ? tf.sub(p[`${name}.w`], offset) : p[`${name}.w`].clone();
  if (p[`${name}.b`]) sd[`${hf}.bias`] = p[`${name}.b`].clone();
}

/** How a rotary decoder in HF's LLaMA style reads its config (fields not named here take the LLaMA keys). */
export interface DecoderOptions {
  architecture: string;
  hfClass: string;
  normalization: NormKind;
  epsKey: string;
  epsDefault: number;
  /** Activation key and default ('hidden_act', silu). */
  actKey?: string;
  act?: ActFn;
  gated?: boolean;
  qkvBias?: boolean;
  outBias?: boolean;
  mlpBias?: boolean;
  tieDefault?: boolean;
  defaultTheta?: number;
  /** Per layer types (for nested rope parameters). */
  layerTypes?: string[] | null;
  /** Legacy rope type names (Phi-3: su / yarn -> longrope). */
  ropeRename?: Record<string, string>;
  defaultPartial?: number;
}

/**
 * The ModelConfig of a rotary decoder with LLaMA's config keys (hidden_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, head_dim, intermediate_size, max_position_embeddings,
 * rope settings); families override what differs.
 */
export function rotaryDecoder(r: ConfigReader, o: DecoderOptions): ModelConfig {
  const d = r.int('hidden_size');
  const h = r.int('num_attention_heads');
  const dh = r.has('head_dim') ? r.int('head_dim') : d / h;
  if (!Number.isInteger(dh)) throw new ConfigError(`${r.where}: num_attention_heads`, `hidden_size ${d} is not a multiple of ${h}`);
  const rope = readRope(r, { thetaKey: 'rope_theta', defaultTheta: o.defaultTheta ?? 10000, headDim: dh, layerTypes: o.layerTypes, rename: o.ropeRename, defaultPartial: o.defaultPartial });
  return {
    ...PLAIN, ...tokenIds(r),
    architecture: o.architecture, hfArchitecture: o.hfClass,
    n_layers: r.int('num_hidden_layers'), d_model: d, n_heads: h, n_kv_heads: r.int('num_key_value_heads', h), d_head: dh,
    d_mlp: r.int('intermediate_size'), d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048),
    normalization: o.normalization, eps: r.num(o.epsKey, o.epsDefault), positional: 'rotary', rotary_dim: Math.floor(dh * rope.partial),
    rope_theta: rope.theta, rope_scaling: rope.scaling, layer_rope: rope.layerRope,
    act_fn: r.actFn(o.actKey ?? 'hidden_act', o.act ?? 'silu'), gated_mlp: o.gated ?? true, parallel_attn_mlp: false,
    attn_qkv_bias: o.qkvBias ?? false, attn_out_bias: o.outBias ?? false, mlp_bias: o.mlpBias ?? false,
    tie_word_embeddings: r.bool('tie_word_embeddings', o.tieDefault ?? false), attn_scale: Math.sqrt(dh),
  };
}

/** An integer option that may be null (sliding_window: null or absent = none). */
export function intOrNull(r: ConfigReader, key: string): number | null {
  return r.has(key) ? r.int(key) : null;
}

/** Refuse a config option this family does not implement (UnsupportedModelError naming the field and why). */
export function refuse(r: ConfigReader, key: string, when: boolean, why: string): void {
  if (when) throw new UnsupportedModelError(`${r.where}: ${key}`, why);
}
