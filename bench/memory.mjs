// Peak memory of a full-cache forward, measured through the library's hooks (works on every backend).

/** Peak tensor bytes during one full-cache forward: tf.memory().numBytes sampled at every hook point. */
export function sampledPeak(tf, model, tokens) {
  const before = tf.memory().numBytes;
  let peak = before;
  // every hook point except hook_result (a hook there makes the forward compute per-head results) and
  // hook_attn_scores (a hook there adds the re-masking step): the sampled run computes what a plain one does
  const sampler = [(n) => !n.endsWith('hook_result') && !n.endsWith('hook_attn_scores'), () => {
    const b = tf.memory().numBytes;
    if (b > peak) peak = b;
  }];
  const r = model.withHooks([sampler], () => model.runWithCache(tokens));
  const after = tf.memory().numBytes;
  if (after > peak) peak = after;
  const keys = r.cache.keys();
  let cacheBytes = 0;
  for (const k of keys) {
    const t = r.cache.get(k);
    cacheBytes += t.size * 4;
  }
  const logitsBytes = r.logits.size * 4;
  r.logits.dispose();
  r.cache.dispose();
  return { peak_bytes: peak - before, cache_bytes: cacheBytes, cached_tensors: keys.length, logits_bytes: logitsBytes, names: keys };
}

