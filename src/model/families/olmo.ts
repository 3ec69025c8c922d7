/**
 * OLMo (model_type olmo): LLaMA's block with LayerNorms that have no weight or bias (eps fixed at 1e-5
 * as OlmoLayerNorm) and, with clip_qkv, the q, k and v projections clamped to [-clip_qkv, clip_qkv]
 * after their hooks and before rotary.
 */
import { checkConfig } from '../config.js';
import { rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const olmo: Family = {
  modelTypes: ['olmo'],
  hfClass: 'OlmoForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, { architecture: 'olmo', hfClass: 'OlmoForCausalLM', normalization: 'LN', epsKey: 'layer_norm_eps', epsDefault: 1e-5, qkvBias: bias, outBias: bias });
    const clip = r.has('clip_qkv') ? r.num('clip_qkv') : null;
    return checkConfig({ ...base, eps: 1e-5, norm_weights: false, clip_qkv: clip }, r.where);
  },
  ...layoutFamily(LLAMA_LAYOUT, 'model.'),
};
