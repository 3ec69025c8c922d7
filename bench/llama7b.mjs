// The 7B path of bench/run.mjs: a half-precision (bf16) checkpoint streamed onto the GPU (the matrices
// stay 16-bit), a forward with selected hooks cached at a long context, and retrieval-head scoring with
// the KV cache (the attention kernel answers the argmax readers; no [T, T] pattern is made). The bench
// smoke test runs the same function on a tiny Llama-shaped bf16 checkpoint.
import { forwardPeak } from './memory.mjs';

const now = () => performance.now() / 1000;

/** Random prompt ids in [1, V) of length n (seeded). */
function prompt(lib, V, n, seed) {
  const rand = lib.util.mulberry32(seed);
  return Array.from({ length: n }, () => 1 + Math.floor(rand() * (V - 1)));
}

/**
 * Loads the checkpoint in `dir`, then: a forward at `o.context` tokens keeping `o.hooks` (the first run
 * measured by tf.profile for the peak memory, the second timed), and `o.samples` retrieval samples
 * (a needle of 8 prompt tokens in the middle, `o.newTokens` greedy tokens; the first sample is the
 * warm-up). Returns the numbers; frees the model.
 */
export async function run7b(lib, dir, o, log = () => {}) {
  const { tf } = lib;
  const bytes0 = tf.memory().numBytes;
  let t = now();
  const model = await lib.loadModel(dir);
  const out = { dir, load_seconds: now() - t, weights_bytes: tf.memory().numBytes - bytes0, context: o.context, hooks: o.hooks };
  try {
    const c = model.cfg;
    out.shape = { n_layers: c.n_layers, d_model: c.d_model, n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, d_mlp: c.d_mlp, d_vocab: c.d_vocab };
    out.parameters = model.parameterCount();
    out.half_weights = Object.keys(model.halfParams).length;
    out.weight_format = model.weightFormat('blocks.0.mlp.W_in');
    log(`7B path: loaded ${out.parameters} parameters in ${out.load_seconds.toFixed(1)} s, ${(out.weights_bytes / 2 ** 30).toFixed(2)} GiB resident, weights ${out.weight_format}`);
    const ids = [prompt(lib, c.d_vocab, o.context, 17)];
    const n0 = tf.memory().numTensors;
    out.memory = await forwardPeak(tf, model, ids, { namesFilter: o.hooks });
    t = now();
    const r = await model.runWithCache(ids, { namesFilter: o.hooks });
    await r.logits.data();
    out.forward_seconds = now() - t;
    out.cached = r.cache.keys();
    r.logits.dispose();
    r.cache.dispose();
    log(`7B path: forward at ${o.context} tokens with ${o.hooks.length} hooks cached: ${out.forward_seconds.toFixed(2)} s, peak ${(out.memory.peak_bytes / 2 ** 30).toFixed(2)} GiB above the weights`);
    const scorer = new lib.retrieval.RetrievalScorer({ nLayers: c.n_layers, nHeads: c.n_heads });
    out.samples = [];
    for (let s = 0; s < o.samples; s++) {
      const p = prompt(lib, c.d_vocab, o.context, 100 + s);
      const span = { start: o.context >> 1, end: (o.context >> 1) + 8 };
      t = now();
      const res = await lib.retrieval.scoreRetrievalSample(model, scorer, p, p.slice(span.start, span.end), { maxNewTokens: o.newTokens, span, stopTokens: [] });
      out.samples.push({ seconds: now() - t, steps: res.sample.steps });
      log(`7B path: retrieval sample ${s}: ${out.samples[s].seconds.toFixed(2)} s for ${res.sample.steps} steps`);
    }
    const timed = out.samples.length > 1 ? out.samples.slice(1) : out.samples;
    out.seconds_per_sample = timed.map((x) => x.seconds).sort((a, b) => a - b)[timed.length >> 1];
    out.tensors_leaked = tf.memory().numTensors - n0;
    return out;
  } finally {
    model.dispose();
  }
}
