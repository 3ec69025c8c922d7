/**
 * GPT-Neo (model_type gpt_neo): GPT-2's block with learned positions, layers alternating global and
 * local attention (attention_types; local = the window_size keys up to the query), q.k not scaled, no
 * q/k/v biases, and old checkpoints' mask buffers ignored as HF ignores them.
 */
import { ConfigError, expectedFound } from '../../errors.js';
import { PLAIN, checkConfig, type ConfigReader } from '../config.js';
import { tokenIds, type Family } from './common.js';
import { layoutFamily } from './layout.js';

/** attention_types [[["global", "local"], n], ...] expanded to one type per layer (GPTNeoConfig's rule). */
function attentionLayers(r: ConfigReader, nLayers: number): ('global' | 'local')[] {
  const spec = (r.json.attention_types ?? [[['global', 'local'], nLayers / 2]]) as unknown;
  const out: string[] = [];
  if (Array.isArray(spec)) for (const item of spec) if (Array.isArray(item) && Array.isArray(item[0])) for (let i = 0; i < item[1]; i++) out.push(...item[0]);
  if (out.length !== nLayers || out.some((t) => t !== 'global' && t !== 'local')) {
    throw new ConfigError(`${r.where}: attention_types`, expectedFound(`${nLayers} layer types of "global" / "local"`, JSON.stringify(spec)));
  }
  return out as ('global' | 'local')[];
}

export const gptNeo: Family = {
  modelTypes: ['gpt_neo'],
  hfClass: 'GPTNeoForCausalLM',
  prefixes: ['transformer.', ''],
  extraTensors: [/(^|\.)h\.\d+\.attn\.attention\.(bias|masked_bias)$/],
  normalize(r) {
    const d = r.int('hidden_size');
    const h = r.int('num_heads');
    const n = r.int('num_layers');
    return checkConfig({
      ...PLAIN, ...tokenIds(r), architecture: 'gpt_neo', hfArchitecture: 'GPTNeoForCausalLM',
      n_layers: n, d_model: d, n_heads: h, n_kv_heads: h, d_head: d / h, d_mlp: r.has('intermediate_size') ? r.int('intermediate_size') : 4 * d,
      d_vocab: r.int('vocab_size'), n_ctx: r.int('max_position_embeddings', 2048), normalization: 'LN', eps: r.num('layer_norm_epsilon', 1e-5),
      positional: 'learned', rotary_dim: 0, rope_theta: 0, act_fn: r.actFn('activation_function', 'gelu_new'), gated_mlp: false,
      parallel_attn_mlp: false, attn_qkv_bias: false, attn_out_bias: true, mlp_bias: true, tie_word_embeddings: r.bool('tie_word_embeddings', true),
      sliding_window: r.int('window_size', 256), attn_types: attentionLayers(r, n), attn_scale: 1,
    }, r.where);
  },
  ...layoutFamily({
    embed: 'wte', pos: { name: 'wpe', offset: 0 }, layers: 'h.', ln1: 'ln_1', ln2: 'ln_2',
    q: 'attn.attention.q_proj', k: 'attn.attention.k_proj', v: 'attn.attention.v_proj', o: 'attn.attention.out_proj',
    mlpIn: 'mlp.c_fc', mlpOut: 'mlp.c_proj', finalNorm: 'ln_f', lmHead: 'lm_head',
  }, 'transformer.'),
};
