/**
 * StableLM (model_type stablelm): LayerNorms with bias, partial rotary (0.25 by default), gated SiLU MLP,
 * optional q/k/v biases (use_qkv_bias), per-head query/key LayerNorms with their own weights
 * (qk_layernorm: q_layernorm.norms.{h}) and the parallel residual (use_parallel_residual: one norm).
 */
import { checkConfig } from '../config.js';
import { rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const stablelm: Family = {
  modelTypes: ['stablelm'],
  hfClass: 'StableLmForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const base = rotaryDecoder(r, {
      architecture: 'stablelm', hfClass: 'StableLmForCausalLM', normalization: 'LN', epsKey: 'layer_norm_eps', epsDefault: 1e-5,
      qkvBias: r.bool('use_qkv_bias', false), defaultPartial: 0.25,
    });
    const parallel = r.bool('use_parallel_residual', false);
    const qk_norm = r.bool('qk_layernorm', false) ? ({ kind: 'LN', scope: 'head', per_head: true, bias: false } as const) : null;
    return checkConfig({ ...base, parallel_attn_mlp: parallel, shared_norm: parallel, qk_norm }, r.where);
  },
  ...layoutFamily({ ...LLAMA_LAYOUT, qNorm: 'self_attn.q_layernorm.norms.{h}', kNorm: 'self_attn.k_layernorm.norms.{h}' }, 'model.'),
};
