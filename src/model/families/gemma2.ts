/**
 * Gemma 2 (model_type gemma2): Gemma's (1 + w) RMSNorms and embedding scale, plus norms after attention
 * and MLP (ln1_post, ln2_post), attention-logit and final-logit soft-capping, scores scaled by
 * query_pre_attn_scalar^-0.5, and sliding-window layers alternating with global ones (layer_types).
 */
import { checkConfig, type ConfigReader, type ModelConfig } from '../config.js';
import { attnTypes, readLayerTypes, refuse, rotaryDecoder, type Family } from './common.js';
import { layoutFamily, type Layout } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const GEMMA2_LAYOUT: Layout = {
  ...LLAMA_LAYOUT, ln2: 'pre_feedforward_layernorm', ln1Post: 'post_attention_layernorm', ln2Post: 'post_feedforward_layernorm', normOffset: 1,
};

/** A soft-cap: the config's value, HF's default when the key is absent, none when it is null. */
export function softcapOf(r: ConfigReader, key: string, fallback: number | null): number | null {
  if (!(key in r.json)) return fallback;
  return r.has(key) ? r.num(key) : null;
}

/** What Gemma 2 and Gemma 3 share on top of the LLaMA-style config. */
export function gemma2Features(r: ConfigReader, base: ModelConfig, layerTypes: string[], caps: [number | null, number | null]): Partial<ModelConfig> {
  refuse(r, 'use_bidirectional_attention', r.bool('use_bidirectional_attention', false), 'bidirectional (non-causal) attention is not supported');
  return {
    embed_scale: Math.sqrt(base.d_model), block_norms: 'pre_post', attn_scale: Math.sqrt(r.num('query_pre_attn_scalar', 256)),
    attn_softcap: softcapOf(r, 'attn_logit_softcapping', caps[0]), final_softcap: softcapOf(r, 'final_logit_softcapping', caps[1]),
    sliding_window: r.has('sliding_window') ? r.int('sliding_window') : null, attn_types: attnTypes(layerTypes),
  };
}

export const gemma2: Family = {
  modelTypes: ['gemma2'],
  hfClass: 'Gemma2ForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const bias = r.bool('attention_bias', false);
    const base = rotaryDecoder(r, {
      architecture: 'gemma2', hfClass: 'Gemma2ForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6,
      actKey: 'hidden_activation', act: 'gelu_new', tieDefault: true, qkvBias: bias, outBias: bias,
    });
    const types = readLayerTypes(r, base.n_layers, (l) => ((l + 1) % 2 ? 'sliding_attention' : 'full_attention'));
    return checkConfig({ ...base, ...gemma2Features(r, base, types, [50, 30]) }, r.where);
  },
  ...layoutFamily(GEMMA2_LAYOUT, 'model.'),
};
