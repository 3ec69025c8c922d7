/**
 * OPT (model_type opt): pre-LN blocks (do_layer_norm_before), learned positions stored with 2 leading
 * rows (position p is row p + 2; canonical W_pos drops them), a ReLU fc1 / fc2 MLP in the block, biases
 * everywhere (enable_bias), and q pre-scaled by d_head^-0.5 in HF (the same scores as dividing q.k).
 */
import { PLAIN, checkConfig } from '../config.js';
import { refuse, tokenIds, type Family } from './common.js';
import { layoutFamily } from './layout.js';

export const opt: Family = {
  modelTypes: ['opt'],
  hfClass: 'OPTForCausalLM',
  prefixes: ['model.decoder.', 'decoder.', ''],
  normalize(r) {
    const d = r.int('hidden_size');
    const h = r.int('num_attention_heads');
    refuse(r, 'do_layer_norm_before', !r.bool('do_layer_norm_before', true), 'post-LN OPT (opt-350m) is not supported');
    refuse(r, 'word_embed_proj_dim', r.has('word_embed_proj_dim') && r.int('word_embed_proj_dim') !== d, 'embedding projections (word_embed_proj_dim != hidden_size) are not supported');
    refuse(r, '_remove_final_layer_norm', r.bool('_remove_final_layer_norm', false), 'a decoder without its final LayerNorm is not supported');
    const bias = r.bool('enable_bias', true);
    return checkConfig({
      ...PLAIN, ...tokenIds(r), architecture: 'opt', hfArchitecture: 'OPTForCausalLM',
      n_layers: r.int('num_hidden_layers'), d_model: d, n_heads: h, n_kv_heads: h, d_head: d / h, d_mlp: r.int('ffn_dim'),
      d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048), normalization: 'LN', eps: 1e-5,
      norm_weights: r.bool('layer_norm_elementwise_affine', true), positional: 'learned', rotary_dim: 0, rope_theta: 0,
      act_fn: r.actFn('activation_function', 'relu'), gated_mlp: false, parallel_attn_mlp: false,
      attn_qkv_bias: bias, attn_out_bias: bias, mlp_bias: bias, tie_word_embeddings: r.bool('tie_word_embeddings', true), attn_scale: Math.sqrt(d / h),
    }, r.where);
  },
  ...layoutFamily({
    embed: 'embed_tokens', pos: { name: 'embed_positions', offset: 2 }, layers: 'layers.', ln1: 'self_attn_layer_norm', ln2: 'final_layer_norm',
    q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.out_proj', mlpIn: 'fc1', mlpOut: 'fc2',
    finalNorm: 'final_layer_norm', lmHead: 'lm_head',
  }, 'model.decoder.'),
};
