/**
 * Model configuration in TransformerLens terms, normalised from an HF config.json by the
 * architecture's family adapter (src/model/families).
 */
import { ConfigError, expectedFound } from '../errors.js';

export type Architecture = 'gpt2' | 'gpt_neox' | 'llama' | 'qwen2' | 'mistral';
export type ActFn = 'gelu_new' | 'gelu' | 'gelu_fast' | 'relu' | 'silu';

export type ModelConfig = {
  architecture: Architecture;
  /** HF class name, e.g. "GPT2LMHeadModel". */
  hfArchitecture: string;
  n_layers: number;
  d_model: number;
  n_heads: number;
  n_kv_heads: number;
  d_head: number;
  d_mlp: number;
  d_vocab: number;
  n_ctx: number;
  normalization: 'LN' | 'RMS';
  eps: number;
  positional: 'learned' | 'rotary';
  /** Number of dimensions per head that are rotated (rotary only). */
  rotary_dim: number;
  /** Which dimensions rotate together: 'half' (i with i + rotary_dim/2; NeoX, LLaMA; the default) or 'interleaved' (2i with 2i+1; GPT-J). */
  rotary_style?: 'half' | 'interleaved';
  rope_theta: number;
  act_fn: ActFn;
  gated_mlp: boolean;
  /** GPT-NeoX parallel residual: attention and MLP both read resid_pre. */
  parallel_attn_mlp: boolean;
  attn_qkv_bias: boolean;
  attn_out_bias: boolean;
  mlp_bias: boolean;
  tie_word_embeddings: boolean;
  /** Keys j with i - j >= sliding_window are masked (mistral); null = none. */
  sliding_window: number | null;
  /** Divisor of q.k (sqrt(d_head) for every supported family). */
  attn_scale: number;
  bos_token_id: number | null;
  eos_token_id: number | null;
  pad_token_id: number | null;
  /** The original config.json, for saving back. */
  hf: Record<string, unknown>;
};

/** A JSON value as it appears in the file (strings keep their quotes). */
function jv(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/** Field readers that name the file and field in their errors. */
export class ConfigReader {
  constructor(
    readonly json: Record<string, unknown>,
    readonly where: string,
  ) {
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new ConfigError(where, expectedFound('a JSON object', Array.isArray(json) ? 'an array' : typeof json));
    }
  }
  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }
  int(key: string, fallback?: number, min = 1): number {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`${this.where}: ${key}`, 'required field is missing');
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new ConfigError(`${this.where}: ${key}`, expectedFound('an integer', jv(v)));
    if (v < min) throw new ConfigError(`${this.where}: ${key}`, expectedFound(`an integer >= ${min}`, jv(v)));
    return v;
  }
  num(key: string, fallback?: number): number {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`${this.where}: ${key}`, 'required field is missing');
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${this.where}: ${key}`, expectedFound('a finite number', jv(v)));
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.json[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new ConfigError(`${this.where}: ${key}`, expectedFound('true or false', jv(v)));
    return v;
  }
  str(key: string, fallback?: string): string {
    const v = this.json[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ConfigError(`${this.where}: ${key}`, 'required field is missing');
    }
    if (typeof v !== 'string') throw new ConfigError(`${this.where}: ${key}`, expectedFound('a string', jv(v)));
    return v;
  }
  /** Integer token id, or null; arrays (several eos ids) give their first element. */
  tokenId(key: string): number | null {
    let v = this.json[key];
    if (Array.isArray(v)) v = v[0];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new ConfigError(`${this.where}: ${key}`, expectedFound('a token id', jv(v)));
    return v;
  }
  actFn(key: string, fallback: ActFn): ActFn {
    const v = this.str(key, fallback);
    const map: Record<string, ActFn> = {
      gelu_new: 'gelu_new', gelu_pytorch_tanh: 'gelu_new', gelu: 'gelu', gelu_fast: 'gelu_fast', relu: 'relu', silu: 'silu', swish: 'silu',
    };
    const a = map[v];
    if (!a) throw new ConfigError(`${this.where}: ${key}`, expectedFound(`one of ${Object.keys(map).join(', ')}`, jv(v)));
    return a;
  }
}

/** Checks shared by every family once its fields are read. */
export function checkConfig(cfg: ModelConfig, where: string): ModelConfig {
  if (!Number.isInteger(cfg.d_head) || cfg.d_head < 1) {
    throw new ConfigError(`${where}: num_attention_heads`, `d_model ${cfg.d_model} is not a multiple of ${cfg.n_heads} heads (d_head would be ${cfg.d_head})`);
  }
  if (!(cfg.eps > 0) || !Number.isFinite(cfg.eps)) throw new ConfigError(`${where}: eps`, expectedFound('a positive normalisation epsilon', jv(cfg.eps)));
  if (cfg.positional === 'rotary' && !(cfg.rope_theta > 0 && Number.isFinite(cfg.rope_theta))) {
    throw new ConfigError(`${where}: rope_theta`, expectedFound('a positive rotary base', jv(cfg.rope_theta)));
  }
  if (!(cfg.attn_scale > 0)) throw new ConfigError(`${where}: attention scale`, expectedFound('a positive scale', jv(cfg.attn_scale)));
  if (cfg.n_heads % cfg.n_kv_heads !== 0) {
    throw new ConfigError(`${where}: num_key_value_heads`, `n_heads (${cfg.n_heads}) must be a multiple of n_kv_heads (${cfg.n_kv_heads})`);
  }
  if (cfg.positional === 'rotary' && (cfg.rotary_dim % 2 !== 0 || cfg.rotary_dim > cfg.d_head || cfg.rotary_dim < 2)) {
    throw new ConfigError(`${where}: rotary`, expectedFound(`an even rotary dimension in [2, ${cfg.d_head}]`, cfg.rotary_dim));
  }
  if (cfg.sliding_window !== null && cfg.sliding_window < 1) {
    throw new ConfigError(`${where}: sliding_window`, expectedFound('a positive integer or null', cfg.sliding_window));
  }
  return cfg;
}
