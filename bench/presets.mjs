// Model shapes, bench sizes and the analytic FLOP counts used by bench/run.mjs.

/** GPT-2-small shape (random init; HF config fields). */
export const GPT2_SMALL = { model_type: 'gpt2', n_embd: 768, n_layer: 12, n_head: 12, vocab_size: 50257, n_positions: 1024 };
/** Qwen2-0.5B shape (random init; HF config fields). */
export const QWEN2_05B = {
  model_type: 'qwen2', hidden_size: 896, num_hidden_layers: 24, num_attention_heads: 14, num_key_value_heads: 2,
  intermediate_size: 4864, vocab_size: 151936, max_position_embeddings: 32768, tie_word_embeddings: true,
};
/** Llama-2-7B shape (bench/device/make_7b.py writes a random bf16 checkpoint of it). */
export const LLAMA2_7B = {
  model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 32,
  intermediate_size: 11008, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false,
};

export const PRESETS = {
  // here: 2 shared cores, wasm backend (one XNNPACK thread), PyTorch CPU on the same thread count
  cpu: {
    matmul: { n: 1024, reps: 3 },
    // B=1 T=1024 with the whole cache: it lives on the host between layers (cacheOn 'host'), so the wasm heap holds one layer
    forward: [{ B: 8, T: 16, reps: 3, warmup: 1 }, { B: 8, T: 128, reps: 1, warmup: 1 }, { B: 1, T: 1024, reps: 1, warmup: 0, cacheOn: 'host' }],
    nocache: [{ B: 8, T: 128, reps: 2, warmup: 1 }, { B: 1, T: 1024, reps: 1, warmup: 0 }],
    memory: [{ B: 8, T: 16 }, { B: 8, T: 128 }, { B: 1, T: 1024, cacheOn: 'host' }],
    profile: { B: 8, T: 16 },
    // all positions: 2 prompts x 7 tokens (144 forwards in the PyTorch loop); by position: 1 prompt x 5 tokens (720)
    sweeps: { N: 2, R: 4, maxBatch: 256, kinds: ['head', 'head_pos'], sizes: { head_pos: { N: 1, R: 3 } }, tflensLoop: [] },
    retrieval: null,
    llama7b: null,
  },
  // accelerator: WebGPU vs torch CUDA in one run (bench/device/session.sh)
  device: {
    matmul: { n: 4096, reps: 10 },
    forward: [{ B: 8, T: 16, reps: 10, warmup: 2 }, { B: 8, T: 128, reps: 10, warmup: 2 }, { B: 1, T: 1024, reps: 5, warmup: 2 }],
    nocache: [{ B: 8, T: 128, reps: 10, warmup: 2 }, { B: 1, T: 1024, reps: 5, warmup: 2 }],
    memory: [{ B: 8, T: 128 }, { B: 1, T: 1024 }],
    profile: { B: 8, T: 128 },
    sweeps: { N: 8, R: 8, maxBatch: 256, kinds: ['head', 'head_pos'], tflensLoop: ['head'] },
    retrieval: { context: 4096, newTokens: 20, samples: 2 },
    // the checkpoint bench/device/make_7b.py wrote (TFLENS_7B_DIR); hooks: a few per layer kind, cached
    llama7b: { context: 4096, newTokens: 10, samples: 2, hooks: ['blocks.0.hook_resid_post', 'blocks.15.attn.hook_z', 'blocks.31.hook_resid_post', 'blocks.31.ln2.hook_scale'] },
  },
  // smoke: tiny models, tiny sizes (checks the code paths, not speed)
  quick: {
    modelOverride: { n_embd: 64, n_layer: 2, n_head: 4, vocab_size: 512, n_positions: 64 },
    matmul: { n: 64, reps: 2 },
    forward: [{ B: 2, T: 8, reps: 1, warmup: 0 }, { B: 1, T: 16, reps: 1, warmup: 0, cacheOn: 'host' }],
    nocache: [{ B: 2, T: 8, reps: 1, warmup: 0 }],
    memory: [{ B: 2, T: 8 }, { B: 1, T: 16, cacheOn: 'host' }],
    profile: { B: 2, T: 8 },
    sweeps: { N: 2, R: 3, maxBatch: 64, kinds: ['head', 'head_pos'], tflensLoop: ['head', 'head_pos'] },
    retrieval: { context: 32, newTokens: 3, samples: 1, configOverride: { hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128, vocab_size: 256, max_position_embeddings: 128 } },
    llama7b: { context: 24, newTokens: 3, samples: 1, hooks: ['blocks.0.hook_resid_post', 'blocks.1.attn.hook_z'] },
  },
};

/** Dense linear-layer FLOPs per token (multiply-add = 2) of one layer. */
function layerLinearFlops(c) {
  const { d_model: d, n_heads: H, n_kv_heads: K, d_head: dh, d_mlp: m } = c;
  return 2 * d * (H + 2 * K) * dh + 2 * H * dh * d + 2 * d * m * (c.gated_mlp ? 2 : 1) + 2 * m * d;
}

/**
 * Forward FLOPs of a [B, T] batch: linear layers, attention QK^T and pattern.V over the full T x T
 * square (what the dense kernels compute; causal masking does not skip work), and the unembedding of
 * every position. Layer norms, softmax, activations and adds are not counted (a few percent).
 */
export function forwardFlops(c, B, T) {
  const attn = 2 * 2 * B * c.n_heads * T * T * c.d_head;
  return B * T * (c.n_layers * layerLinearFlops(c) + 2 * c.d_model * c.d_vocab) + c.n_layers * attn;
}

/** FLOPs of one decoding step (one new token, ctx keys in the cache). */
export function decodeFlops(c, ctx) {
  return c.n_layers * (layerLinearFlops(c) + 4 * c.n_heads * ctx * c.d_head) + 2 * c.d_model * c.d_vocab;
}
