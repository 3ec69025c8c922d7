/**
 * Phi-3 (model_type phi3): LLaMA's block with fused projections: qkv_proj ([q | k | v] rows) and
 * gate_up_proj (gate rows first); LongRoPE scaling (rope_type longrope, legacy su / yarn); optional
 * sliding window on every layer.
 */
import { checkConfig } from '../config.js';
import { intOrNull, rotaryDecoder, type Family } from './common.js';
import { blockQKV, layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const phi3: Family = {
  modelTypes: ['phi3'],
  hfClass: 'Phi3ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const base = rotaryDecoder(r, {
      architecture: 'phi3', hfClass: 'Phi3ForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-5,
      ropeRename: { su: 'longrope', yarn: 'longrope' },
    });
    return checkConfig({ ...base, sliding_window: intOrNull(r, 'sliding_window') }, r.where);
  },
  ...layoutFamily({ ...LLAMA_LAYOUT, q: undefined, k: undefined, v: undefined, qkv: blockQKV('self_attn.qkv_proj'), mlpIn: undefined, mlpGate: undefined, mlpGateUp: 'mlp.gate_up_proj' }, 'model.'),
};
