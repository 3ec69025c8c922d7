/**
 * BLOOM (model_type bloom): ALiBi instead of positions (slope_h times the key's position, both slope
 * series when the head count is not a power of two), a LayerNorm right after the embedding, the fused
 * per-head query_key_value ([q, k, v] of d_head rows per head), GELU (tanh form) MLP of width 4 d, biases
 * everywhere, tied embeddings.
 */
import { PLAIN, checkConfig } from '../config.js';
import { refuse, tokenIds, type Family } from './common.js';
import { groupedQKV, layoutFamily } from './layout.js';

export const bloom: Family = {
  modelTypes: ['bloom'],
  hfClass: 'BloomForCausalLM',
  prefixes: ['transformer.', ''],
  normalize(r) {
    const d = r.has('n_embed') ? r.int('n_embed') : r.int('hidden_size');
    const h = r.int('n_head');
    refuse(r, 'apply_residual_connection_post_layernorm', r.bool('apply_residual_connection_post_layernorm', false), 'residuals taken after the LayerNorm are not supported');
    return checkConfig({
      ...PLAIN, ...tokenIds(r), architecture: 'bloom', hfArchitecture: 'BloomForCausalLM',
      n_layers: r.int('n_layer'), d_model: d, n_heads: h, n_kv_heads: h, d_head: d / h, d_mlp: 4 * d,
      d_vocab: r.int('vocab_size'), n_ctx: r.int('seq_length', 2048), normalization: 'LN', eps: r.num('layer_norm_epsilon', 1e-5),
      positional: 'alibi', rotary_dim: 0, rope_theta: 0, act_fn: 'gelu_new', gated_mlp: false, parallel_attn_mlp: false, embed_norm: true,
      attn_qkv_bias: true, attn_out_bias: true, mlp_bias: true, tie_word_embeddings: r.bool('tie_word_embeddings', true), attn_scale: Math.sqrt(d / h),
    }, r.where);
  },
  ...layoutFamily({
    embed: 'word_embeddings', embedNorm: 'word_embeddings_layernorm', layers: 'h.', ln1: 'input_layernorm', ln2: 'post_attention_layernorm',
    qkv: groupedQKV('self_attention.query_key_value'), o: 'self_attention.dense', mlpIn: 'mlp.dense_h_to_4h', mlpOut: 'mlp.dense_4h_to_h',
    finalNorm: 'ln_f', lmHead: 'lm_head',
  }, 'transformer.'),
};
