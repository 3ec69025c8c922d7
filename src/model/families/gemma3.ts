/**
 * Gemma 3 text (model_type gemma3_text): Gemma 2's block without soft-capping by default, (1 + w)
 * RMSNorms on each head's query and key before rotary (q_norm, k_norm), and rotary settings per layer
 * type: local layers rope_local_base_freq (1e4), global layers rope_theta (1e6) with the config's
 * scaling (`rope_parameters` nested by layer type in transformers 5, or the older flat keys).
 */
import { ConfigReader, checkConfig } from '../config.js';
import { readLayerTypes, rotaryDecoder, type Family } from './common.js';
import { gemma2Features, GEMMA2_LAYOUT } from './gemma2.js';
import { layoutFamily } from './layout.js';

/** `rope_parameters` nested by layer type, built from either config syntax as Gemma3TextConfig does. */
function nestedRope(r: ConfigReader): Record<string, unknown> {
  const rp = (r.json.rope_parameters ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const scaling = (r.json.rope_scaling ?? {}) as Record<string, unknown>;
  const full = { rope_type: 'default', ...(rp.full_attention ?? {}), ...scaling };
  const local = { rope_type: 'default', ...(rp.sliding_attention ?? {}) };
  return {
    full_attention: { rope_theta: r.num('rope_theta', 1e6), ...full },
    sliding_attention: { rope_theta: r.num('rope_local_base_freq', 1e4), ...local },
  };
}

export const gemma3: Family = {
  modelTypes: ['gemma3_text'],
  hfClass: 'Gemma3ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r0) {
    const r = new ConfigReader({ ...r0.json, rope_parameters: nestedRope(r0), rope_scaling: null }, r0.where);
    const n = r.int('num_hidden_layers');
    const pattern = r.int('sliding_window_pattern', 6);
    const types = readLayerTypes(r, n, (l) => ((l + 1) % pattern ? 'sliding_attention' : 'full_attention'));
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, {
      architecture: 'gemma3_text', hfClass: 'Gemma3ForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6,
      actKey: 'hidden_activation', act: 'gelu_new', tieDefault: true, qkvBias: bias, outBias: bias, layerTypes: types,
    });
    const qk_norm = { kind: 'RMS', scope: 'head', per_head: false, bias: false } as const;
    return checkConfig({ ...base, ...gemma2Features(r, base, types, [null, null]), qk_norm, hf: r0.json }, r.where);
  },
  ...layoutFamily({ ...GEMMA2_LAYOUT, qNorm: 'self_attn.q_norm', kNorm: 'self_attn.k_norm' }, 'model.'),
};
