/**
 * Starcoder2 (model_type starcoder2): LayerNorms with bias, biases on every projection (use_bias), a
 * plain c_fc / c_proj MLP with gelu_pytorch_tanh, and a sliding window on every layer.
 */
import { checkConfig } from '../config.js';
import { intOrNull, rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const starcoder2: Family = {
  modelTypes: ['starcoder2'],
  hfClass: 'Starcoder2ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const bias = r.bool('use_bias', true);
    const base = rotaryDecoder(r, {
      architecture: 'starcoder2', hfClass: 'Starcoder2ForCausalLM', normalization: 'LN', epsKey: 'norm_epsilon', epsDefault: 1e-5,
      act: 'gelu_new', gated: false, qkvBias: bias, outBias: bias, mlpBias: bias, tieDefault: true,
    });
    return checkConfig({ ...base, sliding_window: intOrNull(r, 'sliding_window') }, r.where);
  },
  ...layoutFamily({ ...LLAMA_LAYOUT, mlpIn: 'mlp.c_fc', mlpGate: undefined, mlpOut: 'mlp.c_proj' }, 'model.'),
};
