/**
 * LLaMA-style decoders: RMSNorm, rotary, gated SiLU MLP, GQA. Qwen2 (q/k/v biases) and Mistral
 * (sliding window) are the same layout with different defaults, so they are built here too.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, UnsupportedModelError } from '../../errors.js';
import { checkConfig, type Architecture, type ConfigReader, type ModelConfig } from '../config.js';
import {
  biasToHeads, headsToProj, linT, oProjToWO, projToHeads, ropeSettings, wOToOProj, type Family, type StateDict,
} from './common.js';

interface Variant {
  architecture: Architecture;
  hfClass: string;
  qkvBias: (r: ConfigReader) => boolean;
  oBias: (r: ConfigReader) => boolean;
  slidingWindow: (r: ConfigReader) => number | null;
  tieDefault: boolean;
}

function llamaLike(v: Variant): Family {
  return {
    modelTypes: [v.architecture],
    hfClass: v.hfClass,
    normalize(r) {
      const d = r.int('hidden_size');
      const h = r.int('num_attention_heads');
      const dh = r.has('head_dim') ? r.int('head_dim') : d / h;
      if (!Number.isInteger(dh)) throw new ConfigError(`${r.where}: num_attention_heads`, `hidden_size ${d} is not a multiple of ${h}`);
      const { theta, partial } = ropeSettings(r, 'rope_theta', 10000);
      if (r.bool('mlp_bias', false)) throw new UnsupportedModelError(`${r.where}: mlp_bias`, 'MLP biases are not supported');
      const cfg: ModelConfig = {
        architecture: v.architecture, hfArchitecture: v.hfClass,
        n_layers: r.int('num_hidden_layers'), d_model: d, n_heads: h, n_kv_heads: r.int('num_key_value_heads', h), d_head: dh,
        d_mlp: r.int('intermediate_size'), d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048),
        normalization: 'RMS', eps: r.num('rms_norm_eps', 1e-6), positional: 'rotary', rotary_dim: Math.floor(dh * partial),
        rope_theta: theta, act_fn: r.actFn('hidden_act', 'silu'), gated_mlp: true, parallel_attn_mlp: false,
        attn_qkv_bias: v.qkvBias(r), attn_out_bias: v.oBias(r), mlp_bias: false,
        tie_word_embeddings: r.bool('tie_word_embeddings', v.tieDefault), sliding_window: v.slidingWindow(r), attn_scale: Math.sqrt(dh),
        bos_token_id: r.tokenId('bos_token_id'), eos_token_id: r.tokenId('eos_token_id'), pad_token_id: r.tokenId('pad_token_id'), hf: r.json,
      };
      return checkConfig(cfg, r.where);
    },
    toCanonical(src, cfg) {
      const { d_model: d, n_heads: H, n_kv_heads: K, d_head: dh, d_mlp: m, d_vocab: V } = cfg;
      const p: StateDict = {};
      p['embed.W_E'] = src.get('embed_tokens.weight', [V, d]).clone();
      for (let l = 0; l < cfg.n_layers; l++) {
        const b = `layers.${l}.`;
        const o = `blocks.${l}.`;
        p[o + 'ln1.w'] = src.get(b + 'input_layernorm.weight', [d]).clone();
        p[o + 'attn.W_Q'] = projToHeads(src.get(b + 'self_attn.q_proj.weight', [H * dh, d]), H);
        p[o + 'attn.W_K'] = projToHeads(src.get(b + 'self_attn.k_proj.weight', [K * dh, d]), K);
        p[o + 'attn.W_V'] = projToHeads(src.get(b + 'self_attn.v_proj.weight', [K * dh, d]), K);
        p[o + 'attn.b_Q'] = biasToHeads(src.getOr(b + 'self_attn.q_proj.bias', [H * dh]), H);
        p[o + 'attn.b_K'] = biasToHeads(src.getOr(b + 'self_attn.k_proj.bias', [K * dh]), K);
        p[o + 'attn.b_V'] = biasToHeads(src.getOr(b + 'self_attn.v_proj.bias', [K * dh]), K);
        p[o + 'attn.W_O'] = oProjToWO(src.get(b + 'self_attn.o_proj.weight', [d, H * dh]), H);
        p[o + 'attn.b_O'] = src.getOr(b + 'self_attn.o_proj.bias', [d]).clone();
        p[o + 'ln2.w'] = src.get(b + 'post_attention_layernorm.weight', [d]).clone();
        p[o + 'mlp.W_gate'] = linT(src.get(b + 'mlp.gate_proj.weight', [m, d]));
        p[o + 'mlp.W_in'] = linT(src.get(b + 'mlp.up_proj.weight', [m, d]));
        p[o + 'mlp.b_in'] = tf.zeros([m]);
        p[o + 'mlp.W_out'] = linT(src.get(b + 'mlp.down_proj.weight', [d, m]));
        p[o + 'mlp.b_out'] = tf.zeros([d]);
      }
      p['ln_final.w'] = src.get('norm.weight', [d]).clone();
      const head = src.sd['lm_head.weight'];
      p['unembed.W_U'] = head && !cfg.tie_word_embeddings ? linT(src.get('lm_head.weight', [V, d])) : tf.transpose(p['embed.W_E']);
      p['unembed.b_U'] = tf.zeros([V]);
      return p;
    },
    fromCanonical(p, cfg) {
      const sd: StateDict = {};
      const pre = 'model.';
      sd[pre + 'embed_tokens.weight'] = p['embed.W_E'].clone();
      for (let l = 0; l < cfg.n_layers; l++) {
        const b = `${pre}layers.${l}.`;
        const o = `blocks.${l}.`;
        sd[b + 'input_layernorm.weight'] = p[o + 'ln1.w'].clone();
        for (const [n, hf] of [['Q', 'q'], ['K', 'k'], ['V', 'v']]) {
          sd[b + `self_attn.${hf}_proj.weight`] = headsToProj(p[o + `attn.W_${n}`]);
          if (cfg.attn_qkv_bias) sd[b + `self_attn.${hf}_proj.bias`] = p[o + `attn.b_${n}`].flatten();
        }
        sd[b + 'self_attn.o_proj.weight'] = wOToOProj(p[o + 'attn.W_O']);
        if (cfg.attn_out_bias) sd[b + 'self_attn.o_proj.bias'] = p[o + 'attn.b_O'].clone();
        sd[b + 'post_attention_layernorm.weight'] = p[o + 'ln2.w'].clone();
        sd[b + 'mlp.gate_proj.weight'] = linT(p[o + 'mlp.W_gate']);
        sd[b + 'mlp.up_proj.weight'] = linT(p[o + 'mlp.W_in']);
        sd[b + 'mlp.down_proj.weight'] = linT(p[o + 'mlp.W_out']);
      }
      sd[pre + 'norm.weight'] = p['ln_final.w'].clone();
      if (!cfg.tie_word_embeddings) sd['lm_head.weight'] = linT(p['unembed.W_U']);
      return sd;
    },
  };
}

export const llama = llamaLike({
  architecture: 'llama', hfClass: 'LlamaForCausalLM', tieDefault: false,
  qkvBias: (r) => r.bool('attention_bias', false), oBias: (r) => r.bool('attention_bias', false), slidingWindow: () => null,
});

export const qwen2 = llamaLike({
  architecture: 'qwen2', hfClass: 'Qwen2ForCausalLM', tieDefault: false,
  qkvBias: () => true, oBias: () => false,
  slidingWindow: (r) => {
    if (r.bool('use_sliding_window', false)) {
      throw new UnsupportedModelError(`${r.where}: use_sliding_window`, 'Qwen2 per-layer sliding windows are not supported');
    }
    return null;
  },
});

export const mistral = llamaLike({
  architecture: 'mistral', hfClass: 'MistralForCausalLM', tieDefault: false,
  qkvBias: () => false, oBias: () => false,
  slidingWindow: (r) => (r.has('sliding_window') ? r.int('sliding_window') : null),
});
