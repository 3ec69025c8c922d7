/**
 * Mixtral (model_type mixtral): LLaMA's attention with a sparse mixture of experts in every block: a
 * router (mlp.gate) picks num_experts_per_tok of num_local_experts SiLU-gated experts per token, weighted
 * by their softmax probabilities renormalised over the chosen ones. Experts are read from transformers 5's
 * fused tensors (mlp.experts.gate_up_proj / down_proj) or the older block_sparse_moe.experts.{e}.w1/w3/w2.
 */
import { checkConfig } from '../config.js';
import { intOrNull, rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const mixtral: Family = {
  modelTypes: ['mixtral'],
  hfClass: 'MixtralForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    const base = rotaryDecoder(r, { architecture: 'mixtral', hfClass: 'MixtralForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-5, defaultTheta: 1e6 });
    const moe = {
      n_experts: r.int('num_local_experts', 8), top_k: r.int('num_experts_per_tok', 2), d_expert: base.d_mlp, norm_topk_prob: true,
      layers: new Array<boolean>(base.n_layers).fill(true), d_shared: 0,
    };
    return checkConfig({ ...base, moe, sliding_window: intOrNull(r, 'sliding_window') }, r.where);
  },
  ...layoutFamily({
    ...LLAMA_LAYOUT,
    moe: { router: 'mlp.gate', experts: 'mlp.experts', legacyRouter: 'block_sparse_moe.gate', legacy: ['block_sparse_moe.experts.{e}.w1', 'block_sparse_moe.experts.{e}.w3', 'block_sparse_moe.experts.{e}.w2'] },
  }, 'model.'),
};
