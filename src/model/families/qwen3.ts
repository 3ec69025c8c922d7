/**
 * Qwen3 (model_type qwen3): LLaMA's layout with an RMSNorm on each head's query and key before rotary
 * (q_norm, k_norm, one [d_head] weight shared by the heads) and no q/k/v biases; optional sliding
 * windows on the layers from max_window_layers on (use_sliding_window).
 */
import { checkConfig } from '../config.js';
import { attnTypes, intOrNull, readLayerTypes, rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const qwen3: Family = {
  modelTypes: ['qwen3'],
  hfClass: 'Qwen3ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, { architecture: 'qwen3', hfClass: 'Qwen3ForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6, qkvBias: bias, outBias: bias });
    const window = r.bool('use_sliding_window', false) ? intOrNull(r, 'sliding_window') : null;
    const from = r.int('max_window_layers', 28, 0);
    const types = readLayerTypes(r, base.n_layers, (l) => (window !== null && l >= from ? 'sliding_attention' : 'full_attention'));
    const qk_norm = { kind: 'RMS', scope: 'head', per_head: false, bias: false } as const;
    return checkConfig({ ...base, qk_norm, sliding_window: window, attn_types: window === null ? null : attnTypes(types) }, r.where);
  },
  ...layoutFamily({ ...LLAMA_LAYOUT, qNorm: 'self_attn.q_norm', kNorm: 'self_attn.k_norm' }, 'model.'),
};
