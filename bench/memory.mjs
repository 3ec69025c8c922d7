// Peak memory of a full-cache forward and time per kernel class, measured with tf.profile: the engine
// records the bytes held after every kernel (the fused WebGPU kernels included, which are registered
// tfjs kernels) and each kernel's time.

/** Bytes of every cached activation (device or host entries), from their shapes. */
async function cacheBytes(cache) {
  let bytes = 0;
  for (const k of cache.keys()) bytes += 4 * (cache.device(k) === 'device' ? cache.get(k).size : (await cache.values(k)).values.length);
  return bytes;
}

/**
 * One `runWithCache(tokens, opts)` under tf.profile: the peak of tf.memory().numBytes during the run
 * minus the bytes held before it (the weights), the cached bytes (the requested cache: every hook point
 * of the default filter) and the logits.
 */
export async function forwardPeak(tf, model, tokens, opts = {}) {
  const before = tf.memory().numBytes;
  const n0 = tf.memory().numTensors;
  let cache_bytes = 0;
  let cached_tensors = 0;
  let logits_bytes = 0;
  const prof = await tf.profile(async () => {
    const r = await model.runWithCache(tokens, opts);
    logits_bytes = r.logits.size * 4;
    cached_tensors = r.cache.keys().length;
    cache_bytes = await cacheBytes(r.cache);
    r.logits.dispose();
    r.cache.dispose();
  });
  return {
    peak_bytes: prof.peakBytes - before,
    weights_bytes: before,
    cache_bytes,
    cached_tensors,
    logits_bytes,
    cache_on: opts.cacheOn ?? 'device',
    // (weights + peak during the run) / (weights + requested cache + logits): the goal is <= 1.3
    ratio_to_weights_plus_cache: (before + prof.peakBytes - before) / (before + cache_bytes + logits_bytes),
    tensors_leaked: tf.memory().numTensors - n0,
  };
}

/** Kernel class of a tfjs / tflens kernel name (for the time-per-class table). */
export function kernelClass(name) {
  if (/^Tflens(Matmul|GatedMatmul)$/.test(name) || /MatMul|Conv/.test(name)) return 'matmul';
  if (name.startsWith('TflensAttention') || /Softmax/.test(name)) return 'attention';
  if (name === 'TflensNorm') return 'norm';
  if (name === 'TflensRotary' || /^(Sin|Cos)$/.test(name)) return 'rotary';
  if (/Half$/.test(name)) return 'half-precision';
  if (/^(Reshape|Transpose|Concat|Slice|StridedSlice|GatherV2|Tile|Pad|Cast|Identity|Fill|Range|OneHot|Unpack|Pack|SplitV|ExpandDims|Squeeze|BroadcastTo|Select|Where|Clone)$/.test(name)) return 'data movement';
  if (/^(Sum|Mean|Max|Min|Prod|ArgMax|ArgMin|All|Any|TopK)$/.test(name)) return 'reduction';
  return 'element-wise';
}

/**
 * Time per kernel class of one run of `fn` (an async function running the model) under tf.profile:
 * kernels, summed milliseconds and the share of each class, and the three slowest kernels by name.
 * On WebGPU the times come from timestamp queries (every kernel in its own pass while profiling, so the
 * sum exceeds an unprofiled run); on wasm / cpu from the host clock around each kernel.
 */
export async function kernelProfile(tf, fn) {
  const prof = await tf.profile(fn);
  const classes = {};
  const byName = {};
  let total = 0;
  for (const k of prof.kernels) {
    const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0; // {error} where the backend cannot time kernels
    const c = kernelClass(k.name);
    classes[c] ??= { kernels: 0, ms: 0 };
    classes[c].kernels++;
    classes[c].ms += ms;
    byName[k.name] = (byName[k.name] ?? 0) + ms;
    total += ms;
  }
  for (const c of Object.values(classes)) c.share = total > 0 ? c.ms / total : null;
  const slowest = Object.entries(byName).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([name, ms]) => ({ name, ms }));
  return { kernels: prof.kernels.length, total_ms: total, classes, slowest };
}
