/** GPT-2 (GPT2LMHeadModel): learned positions, LayerNorm, Conv1D weights stored as x @ W. */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, UnsupportedModelError } from '../../errors.js';
import { PLAIN, checkConfig, type ModelConfig } from '../config.js';
import { convertLayer, mergeHeadsIn, splitHeadsIn, type Family, type StateDict } from './common.js';

export const gpt2: Family = {
  modelTypes: ['gpt2'],
  hfClass: 'GPT2LMHeadModel',
  prefixes: ['transformer.', ''],
  normalize(r) {
    const d = r.int('n_embd');
    const h = r.int('n_head');
    if (r.bool('scale_attn_by_inverse_layer_idx', false)) {
      throw new UnsupportedModelError(`${r.where}: scale_attn_by_inverse_layer_idx`, 'layer-scaled attention is not supported');
    }
    const cfg: ModelConfig = {
      ...PLAIN,
      architecture: 'gpt2', hfArchitecture: 'GPT2LMHeadModel',
      n_layers: r.int('n_layer'), d_model: d, n_heads: h, n_kv_heads: h, d_head: d / h,
      d_mlp: r.has('n_inner') ? r.int('n_inner') : 4 * d, d_vocab: r.int('vocab_size'), n_ctx: r.int('n_positions', r.has('n_ctx') ? r.int('n_ctx') : 1024),
      normalization: 'LN', eps: r.num('layer_norm_epsilon', 1e-5), positional: 'learned', rotary_dim: 0, rope_theta: 0,
      act_fn: r.actFn('activation_function', 'gelu_new'), gated_mlp: false, parallel_attn_mlp: false,
      attn_qkv_bias: true, attn_out_bias: true, mlp_bias: true, tie_word_embeddings: r.bool('tie_word_embeddings', true),
      sliding_window: null, attn_scale: r.bool('scale_attn_weights', true) ? Math.sqrt(d / h) : 1,
      bos_token_id: r.tokenId('bos_token_id'), eos_token_id: r.tokenId('eos_token_id'), pad_token_id: r.tokenId('pad_token_id'), hf: r.json,
    };
    if (d % h !== 0) throw new ConfigError(`${r.where}: n_head`, `n_embd ${d} is not a multiple of n_head ${h}`);
    return checkConfig(cfg, r.where);
  },
  toCanonical(src, cfg) {
    const { d_model: d, n_heads: H, d_mlp: m, d_vocab: V } = cfg;
    const p: StateDict = {};
    p['embed.W_E'] = src.get('wte.weight', [V, d]).clone();
    p['pos_embed.W_pos'] = src.get('wpe.weight', [cfg.n_ctx, d]).clone();
    for (let l = 0; l < cfg.n_layers; l++) {
      const b = `h.${l}.`;
      const o = `blocks.${l}.`;
      convertLayer(src, p, () => {
        p[o + 'ln1.w'] = src.get(b + 'ln_1.weight', [d]).clone();
        p[o + 'ln1.b'] = src.get(b + 'ln_1.bias', [d]).clone();
        const [wq, wk, wv] = tf.split(src.get(b + 'attn.c_attn.weight', [d, 3 * d]), 3, 1);
        const [bq, bk, bv] = tf.split(src.get(b + 'attn.c_attn.bias', [3 * d]), 3, 0);
        p[o + 'attn.W_Q'] = splitHeadsIn(wq, H);
        p[o + 'attn.W_K'] = splitHeadsIn(wk, H);
        p[o + 'attn.W_V'] = splitHeadsIn(wv, H);
        p[o + 'attn.b_Q'] = tf.reshape(bq, [H, d / H]);
        p[o + 'attn.b_K'] = tf.reshape(bk, [H, d / H]);
        p[o + 'attn.b_V'] = tf.reshape(bv, [H, d / H]);
        tf.dispose([wq, wk, wv, bq, bk, bv]);
        p[o + 'attn.W_O'] = tf.reshape(src.get(b + 'attn.c_proj.weight', [d, d]), [H, d / H, d]);
        p[o + 'attn.b_O'] = src.get(b + 'attn.c_proj.bias', [d]).clone();
        p[o + 'ln2.w'] = src.get(b + 'ln_2.weight', [d]).clone();
        p[o + 'ln2.b'] = src.get(b + 'ln_2.bias', [d]).clone();
        p[o + 'mlp.W_in'] = src.get(b + 'mlp.c_fc.weight', [d, m]).clone();
        p[o + 'mlp.b_in'] = src.get(b + 'mlp.c_fc.bias', [m]).clone();
        p[o + 'mlp.W_out'] = src.get(b + 'mlp.c_proj.weight', [m, d]).clone();
        p[o + 'mlp.b_out'] = src.get(b + 'mlp.c_proj.bias', [d]).clone();
      });
    }
    p['ln_final.w'] = src.get('ln_f.weight', [d]).clone();
    p['ln_final.b'] = src.get('ln_f.bias', [d]).clone();
    const head = cfg.tie_word_embeddings ? undefined : src.sd['lm_head.weight'];
    p['unembed.W_U'] = head ? tf.transpose(src.get('lm_head.weight', [V, d])) : tf.transpose(p['embed.W_E']);
    p['unembed.b_U'] = tf.zeros([V]);
    return p;
  },
  fromCanonical(p, cfg) {
    const sd: StateDict = {};
    const pre = 'transformer.';
    sd[pre + 'wte.weight'] = p['embed.W_E'].clone();
    sd[pre + 'wpe.weight'] = p['pos_embed.W_pos'].clone();
    for (let l = 0; l < cfg.n_layers; l++) {
      const b = `${pre}h.${l}.`;
      const o = `blocks.${l}.`;
      sd[b + 'ln_1.weight'] = p[o + 'ln1.w'].clone();
      sd[b + 'ln_1.bias'] = p[o + 'ln1.b'].clone();
      sd[b + 'attn.c_attn.weight'] = tf.concat([mergeHeadsIn(p[o + 'attn.W_Q']), mergeHeadsIn(p[o + 'attn.W_K']), mergeHeadsIn(p[o + 'attn.W_V'])], 1);
      sd[b + 'attn.c_attn.bias'] = tf.concat([p[o + 'attn.b_Q'].flatten(), p[o + 'attn.b_K'].flatten(), p[o + 'attn.b_V'].flatten()], 0);
      sd[b + 'attn.c_proj.weight'] = tf.reshape(p[o + 'attn.W_O'], [cfg.d_model, cfg.d_model]);
      sd[b + 'attn.c_proj.bias'] = p[o + 'attn.b_O'].clone();
      sd[b + 'ln_2.weight'] = p[o + 'ln2.w'].clone();
      sd[b + 'ln_2.bias'] = p[o + 'ln2.b'].clone();
      sd[b + 'mlp.c_fc.weight'] = p[o + 'mlp.W_in'].clone();
      sd[b + 'mlp.c_fc.bias'] = p[o + 'mlp.b_in'].clone();
      sd[b + 'mlp.c_proj.weight'] = p[o + 'mlp.W_out'].clone();
      sd[b + 'mlp.c_proj.bias'] = p[o + 'mlp.b_out'].clone();
    }
    sd[pre + 'ln_f.weight'] = p['ln_final.w'].clone();
    sd[pre + 'ln_f.bias'] = p['ln_final.b'].clone();
    if (!cfg.tie_word_embeddings) sd['lm_head.weight'] = tf.transpose(p['unembed.W_U']);
    return sd;
  },
};
