/**
 * Qwen2-MoE (model_type qwen2_moe): Qwen2's attention (q/k/v biases) with mixture-of-experts blocks
 * (every decoder_sparse_step-th layer not in mlp_only_layers): top-k of num_experts experts with their raw
 * softmax probabilities (norm_topk_prob false by default), plus a shared expert added to every token and
 * gated by sigmoid(shared_expert_gate(x)); the other layers keep a dense MLP of width intermediate_size.
 */
import { checkConfig } from '../config.js';
import { refuse, rotaryDecoder, type Family } from './common.js';
import { layoutFamily } from './layout.js';
import { LLAMA_LAYOUT } from './llama.js';

export const qwen2Moe: Family = {
  modelTypes: ['qwen2_moe'],
  hfClass: 'Qwen2MoeForCausalLM',
  prefixes: ['model.', ''],
  normalize(r) {
    refuse(r, 'use_sliding_window', r.bool('use_sliding_window', false), 'Qwen2-MoE sliding windows are not supported');
    const base = rotaryDecoder(r, { architecture: 'qwen2_moe', hfClass: 'Qwen2MoeForCausalLM', normalization: 'RMS', epsKey: 'rms_norm_eps', epsDefault: 1e-6, qkvBias: r.bool('qkv_bias', true) });
    const dense = (r.json.mlp_only_layers ?? []) as number[];
    const step = r.int('decoder_sparse_step', 1);
    const E = r.int('num_experts', 60, 0);
    const moe = {
      n_experts: E, top_k: r.int('num_experts_per_tok', 4), d_expert: r.int('moe_intermediate_size', 1408), norm_topk_prob: r.bool('norm_topk_prob', false),
      layers: Array.from({ length: base.n_layers }, (_, l) => !dense.includes(l) && E > 0 && (l + 1) % step === 0), d_shared: r.int('shared_expert_intermediate_size', 0, 0),
    };
    return checkConfig({ ...base, moe }, r.where);
  },
  ...layoutFamily({
    ...LLAMA_LAYOUT,
    moe: { router: 'mlp.gate', experts: 'mlp.experts', legacy: ['mlp.experts.{e}.gate_proj', 'mlp.experts.{e}.up_proj', 'mlp.experts.{e}.down_proj'], shared: { mlp: 'mlp.shared_expert', gate: 'mlp.shared_expert_gate' } },
  }, 'model.'),
};
