/** GPT-NeoX / Pythia: partial rotary (rotary_pct), fused per-head qkv, optional parallel residual. */
import * as tf from '@tensorflow/tfjs';
import { PLAIN, checkConfig, type ModelConfig } from '../config.js';
import { convertLayer, linT, readRope, type Family, type StateDict } from './common.js';

export const gptNeox: Family = {
  modelTypes: ['gpt_neox'],
  hfClass: 'GPTNeoXForCausalLM',
  prefixes: ['gpt_neox.', ''],
  normalize(r) {
    const d = r.int('hidden_size');
    const h = r.int('num_attention_heads');
    const dh = d / h;
    const rope = readRope(r, { thetaKey: 'rotary_emb_base', defaultTheta: 10000, headDim: dh });
    const pct = r.has('rotary_pct') ? r.num('rotary_pct') : rope.partial;
    const cfg: ModelConfig = {
      ...PLAIN,
      rope_scaling: rope.scaling,
      architecture: 'gpt_neox', hfArchitecture: 'GPTNeoXForCausalLM',
      n_layers: r.int('num_hidden_layers'), d_model: d, n_heads: h, n_kv_heads: h, d_head: dh,
      d_mlp: r.int('intermediate_size'), d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048),
      normalization: 'LN', eps: r.num('layer_norm_eps', 1e-5), positional: 'rotary', rotary_dim: Math.floor(dh * pct),
      rope_theta: r.has('rope_theta') ? r.num('rope_theta') : rope.theta, act_fn: r.actFn('hidden_act', 'gelu'), gated_mlp: false,
      parallel_attn_mlp: r.bool('use_parallel_residual', true), attn_qkv_bias: r.bool('attention_bias', true),
      attn_out_bias: r.bool('attention_bias', true), mlp_bias: true, tie_word_embeddings: r.bool('tie_word_embeddings', false),
      sliding_window: null, attn_scale: Math.sqrt(dh),
      bos_token_id: r.tokenId('bos_token_id'), eos_token_id: r.tokenId('eos_token_id'), pad_token_id: r.tokenId('pad_token_id'), hf: r.json,
    };
    return checkConfig(cfg, r.where);
  },
  toCanonical(src, cfg) {
    const { d_model: d, n_heads: H, d_head: dh, d_mlp: m, d_vocab: V } = cfg;
    const p: StateDict = {};
    p['embed.W_E'] = src.get('embed_in.weight', [V, d]).clone();
    for (let l = 0; l < cfg.n_layers; l++) {
      const b = `layers.${l}.`;
      const o = `blocks.${l}.`;
      convertLayer(src, p, () => {
        p[o + 'ln1.w'] = src.get(b + 'input_layernorm.weight', [d]).clone();
        p[o + 'ln1.b'] = src.get(b + 'input_layernorm.bias', [d]).clone();
        // query_key_value rows are laid out [head, (q|k|v), d_head]
        const w = tf.reshape(src.get(b + 'attention.query_key_value.weight', [3 * d, d]), [H, 3, dh, d]);
        const bias = tf.reshape(src.getOr(b + 'attention.query_key_value.bias', [3 * d]), [H, 3, dh]);
        const names = ['Q', 'K', 'V'];
        for (let c = 0; c < 3; c++) {
          const wc = tf.squeeze(tf.slice(w, [0, c, 0, 0], [H, 1, dh, d]), [1]); // [H, dh, d]
          p[o + `attn.W_${names[c]}`] = tf.transpose(wc, [0, 2, 1]);
          p[o + `attn.b_${names[c]}`] = tf.squeeze(tf.slice(bias, [0, c, 0], [H, 1, dh]), [1]);
          wc.dispose();
        }
        tf.dispose([w, bias]);
        const dense = linT(src.get(b + 'attention.dense.weight', [d, d]));
        p[o + 'attn.W_O'] = tf.reshape(dense, [H, dh, d]);
        dense.dispose();
        p[o + 'attn.b_O'] = src.getOr(b + 'attention.dense.bias', [d]).clone();
        p[o + 'ln2.w'] = src.get(b + 'post_attention_layernorm.weight', [d]).clone();
        p[o + 'ln2.b'] = src.get(b + 'post_attention_layernorm.bias', [d]).clone();
        p[o + 'mlp.W_in'] = linT(src.get(b + 'mlp.dense_h_to_4h.weight', [m, d]));
        p[o + 'mlp.b_in'] = src.get(b + 'mlp.dense_h_to_4h.bias', [m]).clone();
        p[o + 'mlp.W_out'] = linT(src.get(b + 'mlp.dense_4h_to_h.weight', [d, m]));
        p[o + 'mlp.b_out'] = src.get(b + 'mlp.dense_4h_to_h.bias', [d]).clone();
      });
    }
    p['ln_final.w'] = src.get('final_layer_norm.weight', [d]).clone();
    p['ln_final.b'] = src.get('final_layer_norm.bias', [d]).clone();
    p['unembed.W_U'] = cfg.tie_word_embeddings ? tf.transpose(p['embed.W_E']) : linT(src.get('embed_out.weight', [V, d]));
    p['unembed.b_U'] = tf.zeros([V]);
    return p;
  },
  fromCanonical(p, cfg) {
    const { d_model: d, n_heads: H, d_head: dh } = cfg;
    const sd: StateDict = {};
    const pre = 'gpt_neox.';
    sd[pre + 'embed_in.weight'] = p['embed.W_E'].clone();
    for (let l = 0; l < cfg.n_layers; l++) {
      const b = `${pre}layers.${l}.`;
      const o = `blocks.${l}.`;
      sd[b + 'input_layernorm.weight'] = p[o + 'ln1.w'].clone();
      sd[b + 'input_layernorm.bias'] = p[o + 'ln1.b'].clone();
      const ws = ['Q', 'K', 'V'].map((n) => tf.transpose(p[o + `attn.W_${n}`], [0, 2, 1]).expandDims(1)); // [H,1,dh,d]
      sd[b + 'attention.query_key_value.weight'] = tf.reshape(tf.concat(ws, 1), [3 * d, d]);
      const bs = ['Q', 'K', 'V'].map((n) => p[o + `attn.b_${n}`].expandDims(1));
      sd[b + 'attention.query_key_value.bias'] = tf.reshape(tf.concat(bs, 1), [3 * d]);
      tf.dispose([...ws, ...bs]);
      sd[b + 'attention.dense.weight'] = linT(tf.reshape(p[o + 'attn.W_O'], [H * dh, d]));
      sd[b + 'attention.dense.bias'] = p[o + 'attn.b_O'].clone();
      sd[b + 'post_attention_layernorm.weight'] = p[o + 'ln2.w'].clone();
      sd[b + 'post_attention_layernorm.bias'] = p[o + 'ln2.b'].clone();
      sd[b + 'mlp.dense_h_to_4h.weight'] = linT(p[o + 'mlp.W_in']);
      sd[b + 'mlp.dense_h_to_4h.bias'] = p[o + 'mlp.b_in'].clone();
      sd[b + 'mlp.dense_4h_to_h.weight'] = linT(p[o + 'mlp.W_out']);
      sd[b + 'mlp.dense_4h_to_h.bias'] = p[o + 'mlp.b_out'].clone();
    }
    sd[pre + 'final_layer_norm.weight'] = p['ln_final.w'].clone();
    sd[pre + 'final_layer_norm.bias'] = p['ln_final.b'].clone();
    sd['embed_out.weight'] = linT(p['unembed.W_U']);
    return sd;
  },
};
