/**
 * Model configuration in TransformerLens terms, normalised from an HF config.json by the
 * architecture's family adapter (src/model/families).
 */
import { ConfigError, expectedFound } from '../errors.js';

/** The HF model_type of the family that read the config (a family is data: see src/model/families). */
export type Architecture = string;
export type ActFn = 'gelu_new' | 'gelu' | 'gelu_fast' | 'relu' | 'silu';
export type NormKind = 'LN' | 'RMS';

/**
 * Rotary scaling, resolved from an HF `rope_scaling` / `rope_parameters` entry (every default filled in,
 * so the inverse frequencies depend on this object, the rotary dimension and the sequence length only).
 * See src/model/rope.ts for the formulas.
 */
export type RopeScaling =
  | { rope_type: 'default' }
  | { rope_type: 'linear'; factor: number }
  | { rope_type: 'dynamic'; factor: number; max_position_embeddings: number }
  | { rope_type: 'yarn'; factor: number; original_max_position_embeddings: number; beta_fast: number; beta_slow: number; attention_factor: number; truncate: boolean }
  | { rope_type: 'longrope'; short_factor: number[]; long_factor: number[]; original_max_position_embeddings: number; attention_factor: number }
  | { rope_type: 'llama3'; factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number };

/** One rotary setting: base and scaling (per layer when layers differ, as Gemma 3's local and global layers). */
export interface RopeSpec {
  theta: number;
  scaling: RopeScaling;
}

/** Normalisation of queries and keys before rotary (Qwen3, Gemma 3, OLMo 2, StableLM qk_layernorm, Phi qk_layernorm). */
export interface QKNorm {
  kind: NormKind;
  /** 'head': over each head's d_head values; 'all': over all heads of a token at once (OLMo 2). */
  scope: 'head' | 'all';
  /** One weight row per head ([heads, d_head]) instead of one [d_head] vector shared by the heads. */
  per_head: boolean;
  /** The norms have a bias (LayerNorm only). */
  bias: boolean;
}

/** Mixture-of-experts MLP (Mixtral, Qwen2-MoE): a router picks top_k of n_experts gated MLPs per token. */
export interface MoEConfig {
  n_experts: number;
  top_k: number;
  /** Width of each expert. */
  d_expert: number;
  /** Renormalise the top-k router probabilities to sum to 1 (Mixtral) or keep them (Qwen2-MoE default). */
  norm_topk_prob: boolean;
  /** Per layer: true = experts, false = the dense gated MLP of width d_mlp. */
  layers: boolean[];
  /** Width of the shared expert added to every token, gated by sigmoid(x W_shared_gate) (Qwen2-MoE); 0 = none. */
  d_shared: number;
}

/**
 * The model in TransformerLens terms plus the feature flags the forward reads. Families fill every field
 * from an HF config.json; the forward never asks which family a model is.
 */
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
  normalization: NormKind;
  eps: number;
  /** false: the norms have no weight or bias (OLMo's non-parametric LayerNorm). */
  norm_weights: boolean;
  /** Where the block's norms sit: before attention and MLP ('pre'), before and after (Gemma 2/3: 'pre_post'), after only (OLMo 2: 'post'). */
  block_norms: 'pre' | 'pre_post' | 'post';
  /** learned: W_pos; rotary: rotary embedding of q and k; alibi: per-head linear key-position bias (BLOOM). */
  positional: 'learned' | 'rotary' | 'alibi';
  /** Number of dimensions per head that are rotated (rotary only). */
  rotary_dim: number;
  /** Which dimensions rotate together: 'half' (i with i + rotary_dim/2; NeoX, LLaMA; the default) or 'interleaved' (2i with 2i+1; GPT-J). */
  rotary_style?: 'half' | 'interleaved';
  rope_theta: number;
  /** Rotary scaling of every layer (unless layer_rope says otherwise). */
  rope_scaling: RopeScaling;
  /** Per layer rotary settings when layers differ (Gemma 3); null = rope_theta and rope_scaling everywhere. */
  layer_rope: RopeSpec[] | null;
  act_fn: ActFn;
  gated_mlp: boolean;
  /** Attention and MLP both read resid_pre (GPT-NeoX, GPT-J, Phi-2, Falcon, StableLM use_parallel_residual). */
  parallel_attn_mlp: boolean;
  /** A parallel block with a single norm: ln2 is a copy of ln1 (TransformerLens's layout), saved back as one norm. */
  shared_norm: boolean;
  attn_qkv_bias: boolean;
  attn_out_bias: boolean;
  mlp_bias: boolean;
  /** The unembedding has a bias (Phi-2, GPT-J lm_head). */
  unembed_bias: boolean;
  tie_word_embeddings: boolean;
  /** Keys j with i - j >= sliding_window are masked (on the layers attn_types marks 'local'); null = none. */
  sliding_window: number | null;
  /** Per layer 'global' or 'local' (sliding window); null = every layer uses sliding_window. */
  attn_types: ('global' | 'local')[] | null;
  /** Divisor of q.k (sqrt(d_head) for most families; sqrt(query_pre_attn_scalar) for Gemma 2/3; 1 for GPT-Neo). */
  attn_scale: number;
  /** Attention-logit soft-capping cap * tanh(s / cap) after scaling (Gemma 2); null = none. */
  attn_softcap: number | null;
  /** Final-logit soft-capping (Gemma 2); applied to the returned logits, after unembed.hook_out. */
  final_softcap: number | null;
  /** Query/key norms before rotary; null = none. */
  qk_norm: QKNorm | null;
  /** q, k and v are clamped to [-clip_qkv, clip_qkv] after their hooks (OLMo); null = none. */
  clip_qkv: number | null;
  /** Multiplier of the token embedding (Gemma: sqrt(d_model)); null = 1. */
  embed_scale: number | null;
  /** A LayerNorm right after the embedding (BLOOM's word_embeddings_layernorm). */
  embed_norm: boolean;
  /** Mixture-of-experts MLPs; null = dense MLPs. */
  moe: MoEConfig | null;
  bos_token_id: number | null;
  eos_token_id: number | null;
  pad_token_id: number | null;
  /** The original config.json, for saving back. */
  hf: Record<string, unknown>;
};

/** Feature flags of a plain pre-norm decoder: families spread these and override what differs. */
export const PLAIN: Pick<
  ModelConfig,
  | 'norm_weights' | 'block_norms' | 'rope_scaling' | 'layer_rope' | 'shared_norm' | 'unembed_bias' | 'attn_types' | 'attn_softcap'
  | 'final_softcap' | 'qk_norm' | 'clip_qkv' | 'embed_scale' | 'embed_norm' | 'moe' | 'sliding_window'
> = {
  norm_weights: true, block_norms: 'pre', rope_scaling: { rope_type: 'default' }, layer_rope: null, shared_norm: false, unembed_bias: false,
  attn_types: null, attn_softcap: null, final_softcap: null, qk_norm: null, clip_qkv: null, embed_scale: null, embed_norm: false, moe: null,
  sliding_window: null,
};

/** What a canonical parameter is, for random initialisation and checks. */
export type ParamRole = 'embed' | 'weight' | 'bias' | 'norm_w' | 'norm_b';

/** One canonical parameter: name, shape, role, and whether the HF model really has it (absent biases are zeros). */
export interface ParamSpec {
  name: string;
  shape: number[];
  role: ParamRole;
  /** The HF checkpoint holds it (false: kept as zeros in the canonical layout, as TransformerLens does). */
  real: boolean;
}

/** Every canonical parameter of a model with this config (TransformerLens names and shapes). */
export function canonicalParams(c: ModelConfig): ParamSpec[] {
  const { d_model: d, n_heads: H, n_kv_heads: K, d_head: dh, d_mlp: m, d_vocab: V } = c;
  const out: ParamSpec[] = [];
  const add = (name: string, shape: number[], role: ParamRole, real = true) => out.push({ name, shape, role, real });
  const norm = (name: string, width: number[] = [d], bias = c.normalization === 'LN') => {
    if (!c.norm_weights) return;
    add(`${name}.w`, width, 'norm_w');
    if (bias) add(`${name}.b`, width, 'norm_b');
  };
  add('embed.W_E', [V, d], 'embed');
  if (c.embed_norm) norm('embed.ln');
  if (c.positional === 'learned') add('pos_embed.W_pos', [c.n_ctx, d], 'embed');
  for (let l = 0; l < c.n_layers; l++) {
    const b = `blocks.${l}.`;
    // the order is the random-initialisation order of randomModel (kept stable for the original families)
    if (c.block_norms !== 'post') norm(b + 'ln1');
    if (c.block_norms !== 'post') norm(b + 'ln2');
    if (c.block_norms !== 'pre') norm(b + 'ln1_post');
    if (c.block_norms !== 'pre') norm(b + 'ln2_post');
    add(b + 'attn.W_Q', [H, d, dh], 'weight');
    add(b + 'attn.W_K', [K, d, dh], 'weight');
    add(b + 'attn.W_V', [K, d, dh], 'weight');
    add(b + 'attn.W_O', [H, dh, d], 'weight');
    for (const [n, heads] of [['Q', H], ['K', K], ['V', K]] as const) add(b + `attn.b_${n}`, [heads, dh], 'bias', c.attn_qkv_bias);
    add(b + 'attn.b_O', [d], 'bias', c.attn_out_bias);
    if (c.qk_norm) {
      const q = c.qk_norm;
      for (const [n, heads] of [['q_norm', H], ['k_norm', K]] as const) {
        const shape = q.per_head || q.scope === 'all' ? [heads, dh] : [dh];
        if (c.norm_weights) add(b + `attn.${n}.w`, shape, 'norm_w');
        if (q.bias) add(b + `attn.${n}.b`, shape, 'norm_b');
      }
    }
    if (c.moe && c.moe.layers[l]) moeParams(c, c.moe, b, add);
    else {
      add(b + 'mlp.W_in', [d, m], 'weight');
      if (c.gated_mlp) add(b + 'mlp.W_gate', [d, m], 'weight');
      add(b + 'mlp.b_in', [m], 'bias', c.mlp_bias);
      add(b + 'mlp.W_out', [m, d], 'weight');
      add(b + 'mlp.b_out', [d], 'bias', c.mlp_bias);
    }
  }
  norm('ln_final');
  add('unembed.W_U', [d, V], 'weight');
  add('unembed.b_U', [V], 'bias', c.unembed_bias);
  return out;
}

function moeParams(c: ModelConfig, e: MoEConfig, b: string, add: (n: string, s: number[], r: ParamRole) => void): void {
  const d = c.d_model;
  add(b + 'mlp.W_router', [d, e.n_experts], 'weight');
  add(b + 'mlp.experts.W_gate', [e.n_experts, d, e.d_expert], 'weight');
  add(b + 'mlp.experts.W_in', [e.n_experts, d, e.d_expert], 'weight');
  add(b + 'mlp.experts.W_out', [e.n_experts, e.d_expert, d], 'weight');
  if (e.d_shared > 0) {
    add(b + 'mlp.shared_expert.W_gate', [d, e.d_shared], 'weight');
    add(b + 'mlp.shared_expert.W_in', [d, e.d_shared], 'weight');
    add(b + 'mlp.shared_expert.W_out', [e.d_shared, d], 'weight');
    add(b + 'mlp.W_shared_gate', [d, 1], 'weight');
  }
}

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
  const perLayer: [string, unknown[] | null][] = [['layer_types', cfg.attn_types], ['rope_parameters', cfg.layer_rope], ['mlp_only_layers', cfg.moe?.layers ?? null]];
  for (const [field, list] of perLayer) {
    if (list && list.length !== cfg.n_layers) throw new ConfigError(`${where}: ${field}`, expectedFound(`one entry per layer (${cfg.n_layers})`, list.length));
  }
  for (const [field, v] of [['attn_logit_softcapping', cfg.attn_softcap], ['final_logit_softcapping', cfg.final_softcap], ['clip_qkv', cfg.clip_qkv]] as const) {
    if (v !== null && !(v > 0 && Number.isFinite(v))) throw new ConfigError(`${where}: ${field}`, expectedFound('a positive number or null', v));
  }
  if (cfg.moe && !(cfg.moe.top_k >= 1 && cfg.moe.top_k <= cfg.moe.n_experts)) {
    throw new ConfigError(`${where}: num_experts_per_tok`, expectedFound(`an integer in [1, ${cfg.moe.n_experts}] (the number of experts)`, cfg.moe.top_k));
  }
  return cfg;
}
