/**
 * OLMo 2 (model_type olmo2): no norms before attention and MLP; RMSNorms after them (ln1_post, ln2_post)
 * and RMSNorms over all query and all key dimensions of a token (q_norm over H * d_head, k_norm over
 * K * d_head) before rotary.
 */
import { checkConfig } from '../config.js';
import { rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const olmo2: Family = {
  modelTypes: ['olmo2'],
  hfClass: 'Olmo2ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, { architecture: 'olmo2', hfClass: 'Olmo2ForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-5, qkvBias: bias, outBias: bias });
    const qk_norm = { kind: 'RMS', scope: 'all', per_head: true, bias: false } as const;
    return checkConfig({ ...base, block_norms: 'post', qk_norm }, r.where);
  },
  ...layoutFamily({
    ...LLAMA_LAYOUT, ln1: undefined, ln2: undefined, ln1Post: 'post_attention_layernorm', ln2Post: 'post_feedforward_layernorm',
    qNorm: 'self_attn.q_norm', kNorm: 'self_attn.k_norm',
  }, 'model.'),
};
