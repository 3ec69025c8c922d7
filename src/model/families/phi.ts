/**
 * Phi-2 (model_type phi): one LayerNorm per block feeding attention and MLP in parallel, partial rotary
 * (partial_rotary_factor, 0.5 by default), biases on q/k/v/dense/fc1/fc2 and on the head, gelu_new;
 * optional per-head query/key LayerNorms (qk_layernorm, one [d_head] weight and bias shared by the heads).
 */
import { checkConfig } from '../config.js';
import { rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';

export const phi: Family = {
  modelTypes: ['phi'],
  hfClass: 'PhiForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const base = rotaryDecoder(r, {
      architecture: 'phi', hfClass: 'PhiForCausalLM', normalization: 'LN', epsKey: 'layer_norm_eps', epsDefault: 1e-5,
      act: 'gelu_new', gated: false, qkvBias: true, outBias: true, mlpBias: true, defaultPartial: 0.5,
    });
    const qk_norm = r.bool('qk_layernorm', false) ? ({ kind: 'LN', scope: 'head', per_head: false, bias: true } as const) : null;
    return checkConfig({ ...base, parallel_attn_mlp: true, shared_norm: true, unembed_bias: true, qk_norm }, r.where);
  },
  ...layoutFamily({
    embed: 'embed_tokens', layers: 'layers.', ln1: 'input_layernorm', q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj',
    o: 'self_attn.dense', qNorm: 'self_attn.q_layernorm', kNorm: 'self_attn.k_layernorm', mlpIn: 'mlp.fc1', mlpOut: 'mlp.fc2',
    finalNorm: 'final_layernorm', lmHead: 'lm_head',
  }, 'model.'),
};
