/**
 * GPT-J (model_type gptj): a parallel block with one LayerNorm (ln_1 feeds attention and MLP), rotary on
 * the first rotary_dim dims of each head with interleaved pairs (2i, 2i+1) and base 10000, no attention
 * biases, fc_in / fc_out with biases, and a head with a bias.
 */
import { PLAIN, checkConfig } from '../config.js';
import { refuse, tokenIds, type Family } from './common.js';
import { layoutFamily } from './layout.js';

export const gptj: Family = {
  modelTypes: ['gptj'],
  hfClass: 'GPTJForCausalLM',
  prefixes: ['transformer.', ''],
  normalize(r) {
    const d = r.int('n_embd');
    const h = r.int('n_head');
    refuse(r, 'rotary_dim', !r.has('rotary_dim'), 'rotary_dim null (rotary over the whole embedding) is not supported');
    return checkConfig({
      ...PLAIN, ...tokenIds(r), architecture: 'gptj', hfArchitecture: 'GPTJForCausalLM',
      n_layers: r.int('n_layer'), d_model: d, n_heads: h, n_kv_heads: h, d_head: d / h, d_mlp: r.has('n_inner') ? r.int('n_inner') : 4 * d,
      d_vocab: r.int('vocab_size'), n_ctx: r.int('n_positions', 2048), normalization: 'LN', eps: r.num('layer_norm_epsilon', 1e-5),
      positional: 'rotary', rotary_dim: r.int('rotary_dim'), rotary_style: 'interleaved', rope_theta: 10000,
      act_fn: r.actFn('activation_function', 'gelu_new'), gated_mlp: false, parallel_attn_mlp: true, shared_norm: true,
      attn_qkv_bias: false, attn_out_bias: false, mlp_bias: true, unembed_bias: true, tie_word_embeddings: r.bool('tie_word_embeddings', false),
      attn_scale: Math.sqrt(d / h),
    }, r.where);
  },
  ...layoutFamily({
    embed: 'wte', layers: 'h.', ln1: 'ln_1', q: 'attn.q_proj', k: 'attn.k_proj', v: 'attn.v_proj', o: 'attn.out_proj',
    mlpIn: 'mlp.fc_in', mlpOut: 'mlp.fc_out', finalNorm: 'ln_f', lmHead: 'lm_head',
  }, 'transformer.'),
};
