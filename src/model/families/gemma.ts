/**
 * Gemma (model_type gemma): LLaMA's layout with (1 + w) RMSNorms (stored w, canonical w + 1), the token
 * embedding scaled by sqrt(d_model), GeGLU (gelu_pytorch_tanh) and tied embeddings.
 */
import { checkConfig } from '../config.js';
import { refuse, rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const gemma: Family = {
  modelTypes: ['gemma'],
  hfClass: 'GemmaForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    refuse(r, 'use_bidirectional_attention', r.bool('use_bidirectional_attention', false), 'bidirectional (non-causal) attention is not supported');
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, {
      architecture: 'gemma', hfClass: 'GemmaForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6,
      act: 'gelu_new', tieDefault: true, qkvBias: bias, outBias: bias,
    });
    return checkConfig({ ...base, embed_scale: Math.sqrt(base.d_model) }, r.where);
  },
  ...layoutFamily({ ...LLAMA_LAYOUT, normOffset: 1 }, 'model.'),
};
