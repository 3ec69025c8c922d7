/**
 * Falcon (model_type falcon): fused query_key_value in three layouts (multi_query: [H q | 1 k | 1 v]
 * heads, Falcon-7B; new_decoder_architecture: per key/value group [q x H/K, k, v], Falcon-40B; otherwise
 * [q, k, v] per head), attention and MLP in parallel off one LayerNorm (or ln_attn / ln_mlp in the new
 * architecture), rotary on every head dimension, optional biases. ALiBi Falcons (falcon-rw) are refused:
 * HF scales their bias by d_head^-0.5 and rounds the slopes to bfloat16.
 */
import { PLAIN, checkConfig, type ConfigReader, type ModelConfig } from '../config.js';
import { readRope, refuse, tokenIds, type Family } from './common.js';
import { blockQKV, groupedQKV, layoutFamily, type Layout } from './layout.js';

function heads(r: ConfigReader): { H: number; K: number; newArch: boolean } {
  const H = r.has('num_attention_heads') ? r.int('num_attention_heads') : r.int('n_head');
  const newArch = r.bool('new_decoder_architecture', false);
  const K = newArch ? r.int('num_kv_heads', H) : r.bool('multi_query', true) ? 1 : H;
  return { H, K, newArch };
}

/** Two norms per block (ln_attn, ln_mlp) in the new architecture unless num_ln_in_parallel_attn says 1. */
function twoNorms(c: ModelConfig): boolean {
  const hf = c.hf;
  return hf.new_decoder_architecture === true && (hf.num_ln_in_parallel_attn ?? 2) === 2;
}

function layout(c: ModelConfig): Layout {
  const hf = c.hf;
  const qkv = !hf.new_decoder_architecture && hf.multi_query !== false ? blockQKV('self_attention.query_key_value') : groupedQKV('self_attention.query_key_value');
  const norms = twoNorms(c) ? { ln1: 'ln_attn', ln2: 'ln_mlp' } : { ln1: 'input_layernorm', ln2: c.parallel_attn_mlp ? undefined : 'post_attention_layernorm' };
  return {
    embed: 'word_embeddings', layers: 'h.', ...norms, qkv, o: 'self_attention.dense',
    mlpIn: 'mlp.dense_h_to_4h', mlpOut: 'mlp.dense_4h_to_h', finalNorm: 'ln_f', lmHead: 'lm_head',
  };
}

export const falcon: Family = {
  modelTypes: ['falcon'],
  hfClass: 'FalconForCausalLM',
  prefixes: ['transformer.', ''],
  normalize(r) {
    refuse(r, 'alibi', r.bool('alibi', false), 'ALiBi Falcons are not supported (HF scales the ALiBi bias by 1/sqrt(d_head) and rounds the slopes to bfloat16)');
    const d = r.has('hidden_size') ? r.int('hidden_size') : r.int('n_embed');
    const { H, K, newArch } = heads(r);
    const parallel = newArch || r.bool('parallel_attn', true);
    refuse(r, 'num_ln_in_parallel_attn', !newArch && parallel && r.int('num_ln_in_parallel_attn', 1) === 2, 'two norms in a parallel block outside new_decoder_architecture (HF does not run this layout)');
    const bias = r.bool('bias', false);
    const rope = readRope(r, { thetaKey: 'rope_theta', defaultTheta: 10000, headDim: d / H });
    const cfg: ModelConfig = {
      ...PLAIN, ...tokenIds(r), architecture: 'falcon', hfArchitecture: 'FalconForCausalLM',
      n_layers: r.has('num_hidden_layers') ? r.int('num_hidden_layers') : r.int('n_layer'), d_model: d, n_heads: H, n_kv_heads: K, d_head: d / H,
      d_mlp: r.has('ffn_hidden_size') ? r.int('ffn_hidden_size') : 4 * d, d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048),
      normalization: 'LN', eps: r.num('layer_norm_epsilon', 1e-5), positional: 'rotary', rotary_dim: Math.floor((d / H) * rope.partial),
      rope_theta: rope.theta, rope_scaling: rope.scaling, act_fn: r.actFn('activation', 'gelu'), gated_mlp: false, parallel_attn_mlp: parallel,
      attn_qkv_bias: bias, attn_out_bias: bias, mlp_bias: bias, tie_word_embeddings: r.bool('tie_word_embeddings', true), attn_scale: Math.sqrt(d / H),
    };
    return checkConfig({ ...cfg, shared_norm: parallel && !twoNorms(cfg) }, r.where);
  },
  ...layoutFamily(layout, 'transformer.'),
};
