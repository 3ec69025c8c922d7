/**
 * LLaMA-style decoders: RMSNorm, rotary (every HF rope type, Llama 3.x's included), gated SiLU MLP, GQA.
 * Qwen2 (q/k/v biases) and Mistral (sliding window) are the same layout with other defaults, so they are
 * here too. LLAMA_LAYOUT names the HF modules; other families start from it.
 */
import { checkConfig, type ConfigReader, type ModelConfig } from '../config.js';
import { intOrNull, refuse, rotaryDecoder, type Family } from './common.js';
import { layoutFamily, type Layout } from './layout.js';

export const LLAMA_LAYOUT: Layout = {
  embed: 'embed_tokens', layers: 'layers.', ln1: 'input_layernorm', ln2: 'post_attention_layernorm',
  q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj',
  mlpIn: 'mlp.up_proj', mlpGate: 'mlp.gate_proj', mlpOut: 'mlp.down_proj', finalNorm: 'norm', lmHead: 'lm_head',
};

/** A LLaMA-layout family: model_type, HF class and how its config differs from LLaMA's. */
function llamaLike(modelType: string, hfClass: string, differ: (r: ConfigReader) => Partial<ModelConfig>): Family {
  return {
    modelTypes: [modelType],
    hfClass,
    prefixes: ['model.', ''],
    normalize(r) {
      const base = rotaryDecoder(r, { architecture: modelType, hfClass, normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6 });
      return checkConfig({ ...base, ...differ(r) }, r.where);
    },
    ...layoutFamily(LLAMA_LAYOUT, 'model.'),
  };
}

export const llama = llamaLike('llama', 'LlamaForCausalLM', (r) => ({
  attn_qkv_bias: r.bool('attention_bias', false), attn_out_bias: r.bool('attention_bias', false), mlp_bias: r.bool('mlp_bias', false),
}));

export const qwen2 = llamaLike('qwen2', 'Qwen2ForCausalLM', (r) => {
  refuse(r, 'use_sliding_window', r.bool('use_sliding_window', false), 'Qwen2 per-layer sliding windows are not supported');
  return { attn_qkv_bias: true };
});

export const mistral = llamaLike('mistral', 'MistralForCausalLM', (r) => ({ sliding_window: intOrNull(r, 'sliding_window') }));
