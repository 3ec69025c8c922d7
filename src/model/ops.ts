/**
 * The math the forward is made of, one function per primitive: normalisation, linear maps,
 * activations, rotary embedding, position biases, soft-capping, attention and expert routing.
 * src/model/forward.ts composes them with the hook points; this file is the seam where a backend's
 * fused kernels (src/backend/webgpu) replace the plain TensorFlow.js compositions below. Every
 * function here is synchronous, pure (tensors in, new tensors out) and reads nothing back; signatures
 * are stable (new parameters are optional and appended).
 */
import * as tf from '@tensorflow/tfjs';
import type { ActFn } from './config.js';

export type NormKind = 'LN' | 'RMS';

/** Per-row scale of a norm over the last axis: sqrt(var + eps) (LayerNorm) or sqrt(mean(x^2) + eps) (RMSNorm). */
export function normScale(x: tf.Tensor, kind: NormKind, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const c = kind === 'LN' ? tf.sub(x, tf.mean(x, -1, true)) : x;
    return tf.sqrt(tf.add(tf.mean(tf.square(c), -1, true), eps));
  });
}

/** (x - mean) / scale * w + b (LayerNorm) or x / scale * w (RMSNorm), given the scale. */
export function normApply(x: tf.Tensor, scale: tf.Tensor, kind: NormKind, w?: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    let y = tf.div(kind === 'LN' ? tf.sub(x, tf.mean(x, -1, true)) : x, scale);
    if (w) y = tf.mul(y, w);
    if (b && kind === 'LN') y = tf.add(y, b);
    return y;
  });
}

/** x [N, d_in] @ W [d_in, d_out] (+ b). */
export function linear(x: tf.Tensor2D, W: tf.Tensor, b?: tf.Tensor | null): tf.Tensor2D {
  const y = tf.matMul(x, W as tf.Tensor2D) as tf.Tensor2D;
  if (!b) return y;
  const out = tf.add(y, b) as tf.Tensor2D;
  y.dispose();
  return out;
}

/** x [N, d_in] times per-head weights W [H, d_in, d_h] (+ b [H, d_h]) -> [N, H, d_h]. */
export function linearHeads(x: tf.Tensor2D, W: tf.Tensor, b?: tf.Tensor | null): tf.Tensor3D {
  return tf.tidy(() => {
    const [H, dIn, dh] = W.shape;
    const flat = tf.reshape(tf.transpose(W, [1, 0, 2]), [dIn, H * dh]);
    let y = tf.matMul(x, flat as tf.Tensor2D);
    if (b) y = tf.add(y, tf.reshape(b, [H * dh]));
    return tf.reshape(y, [x.shape[0], H, dh]) as tf.Tensor3D;
  });
}

/** The element-wise activation of an MLP. */
export function activation(fn: ActFn, x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    switch (fn) {
      case 'relu':
        return tf.relu(x);
      case 'silu':
        return tf.mul(x, tf.sigmoid(x));
      case 'gelu':
        return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
      case 'gelu_fast':
      case 'gelu_new': {
        const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
        return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
      }
    }
  });
}

/**
 * Rotary tables: cos/sin [B, T, 1, rotary_dim] for int position ids [B, T] and inverse frequencies
 * [rotary_dim / 2], multiplied by `scale` (YaRN's and LongRoPE's attention factor; 1 otherwise).
 */
export function rotaryTables(pos: tf.Tensor2D, invFreq: Float32Array, style: RotaryStyle, scale = 1): [tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const [B, T] = pos.shape;
    const half = invFreq.length;
    const freqs = tf.mul(tf.cast(pos, 'float32').reshape([B, T, 1]), tf.tensor1d(invFreq).reshape([1, 1, half]));
    // 'half' (NeoX/LLaMA): [f0..f_{n-1}, f0..f_{n-1}]; 'interleaved' (GPT-J): [f0, f0, f1, f1, ...]
    const emb = style === 'half' ? tf.concat([freqs, freqs], -1) : tf.reshape(tf.stack([freqs, freqs], -1), [B, T, 2 * half]);
    const e = emb.reshape([B, T, 1, 2 * half]);
    const [cos, sin] = [tf.cos(e), tf.sin(e)];
    return (scale === 1 ? [cos, sin] : [tf.mul(cos, scale), tf.mul(sin, scale)]) as [tf.Tensor, tf.Tensor];
  }) as unknown as [tf.Tensor, tf.Tensor];
}

/** ALiBi bias [B, H, 1, Tk]: slope_h * position of key k (BLOOM; softmax ignores the per-query constant that -slope * (q - k) adds). */
export function alibiBias(keyPositions: tf.Tensor2D, slopes: Float32Array): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, Tk] = keyPositions.shape;
    const pos = tf.cast(keyPositions, 'float32').reshape([B, 1, 1, Tk]);
    return tf.mul(pos, tf.tensor1d(slopes).reshape([1, slopes.length, 1, 1])) as tf.Tensor4D;
  });
}

/** Soft-capping cap * tanh(x / cap) (Gemma 2's attention logits and final logits). */
export function softcap(x: tf.Tensor, cap: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.tanh(tf.div(x, cap)), cap));
}

/** Clamp to [-c, c] (OLMo's clip_qkv). */
export function clip(x: tf.Tensor, c: number): tf.Tensor {
  return tf.clipByValue(x, -c, c);
}

export type RotaryStyle = 'half' | 'interleaved';

/** Rotary position embedding on the first rotary_dim dims of each head of x [B, T, H, d_head]. */
export function rotary(x: tf.Tensor, [cos, sin]: [tf.Tensor, tf.Tensor], style: RotaryStyle): tf.Tensor {
  return tf.tidy(() => {
    const rd = cos.shape[3] as number;
    const [B, T, H, dh] = x.shape;
    const rot = rd === dh ? x : tf.slice(x, [0, 0, 0, 0], [B, T, H, rd]);
    let turned: tf.Tensor;
    if (style === 'half') {
      const x1 = tf.slice(rot, [0, 0, 0, 0], [B, T, H, rd / 2]);
      const x2 = tf.slice(rot, [0, 0, 0, rd / 2], [B, T, H, rd / 2]);
      turned = tf.concat([tf.neg(x2), x1], -1);
    } else {
      // pairs (x0, x1) -> (-x1, x0)
      const pairs = tf.reshape(rot, [B, T, H, rd / 2, 2]);
      const [a, b] = tf.split(pairs, 2, -1);
      turned = tf.reshape(tf.concat([tf.neg(b), a], -1), [B, T, H, rd]);
    }
    const rotated = tf.add(tf.mul(rot, cos), tf.mul(turned, sin));
    return rd === dh ? rotated : tf.concat([rotated, tf.slice(x, [0, 0, 0, rd], [B, T, H, dh - rd])], -1);
  });
}

/** Which keys a query may see, described without materialising a matrix (fused kernels read this). */
export interface AttnMaskSpec {
  /** [B, Tk] 1 for real keys, 0 for padding. */
  keyMask: tf.Tensor2D;
  /** Cache index of the first query (queries are pastLength .. pastLength + T - 1). */
  pastLength: number;
  /** Keys with q - k >= window are hidden; null = no window. */
  window: number | null;
}

/** The additive mask [B, 1, T, Tk]: 0 where a key is visible, -Infinity where it is not. */
export function additiveMask(spec: AttnMaskSpec, T: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, Tk] = spec.keyMask.shape;
    const qIdx = tf.range(spec.pastLength, spec.pastLength + T, 1, 'int32').reshape([T, 1]);
    const kIdx = tf.range(0, Tk, 1, 'int32').reshape([1, Tk]);
    let allowed = tf.lessEqual(kIdx, qIdx);
    if (spec.window !== null) allowed = tf.logicalAnd(allowed, tf.less(tf.sub(qIdx, kIdx), spec.window));
    const keyOk = tf.cast(spec.keyMask, 'bool').reshape([B, 1, 1, Tk]);
    const ok = tf.logicalAnd(allowed.reshape([1, 1, T, Tk]), keyOk);
    return tf.where(ok, tf.zeros([B, 1, T, Tk]), tf.fill([B, 1, T, Tk], -Infinity)) as tf.Tensor4D;
  });
}

export interface ScoreOptions {
  /** q.k is divided by this. */
  scale: number;
  /** Logit soft-capping: cap * tanh(s / cap) after scaling, before bias and mask (Gemma 2). */
  softcap?: number | null;
  /** Additive bias broadcastable to [B, H, T, Tk], added before masking (ALiBi: alibiBias). */
  bias?: tf.Tensor | null;
}

/**
 * Masked attention scores [B, H, T, Tk] from q [B, T, H, dh] and keys [B, Tk, K, dh] (GQA: H = K * G,
 * query head h reads key head floor(h / G)); masked entries are -Infinity (as TransformerLens).
 */
export function attentionScores(q: tf.Tensor, k: tf.Tensor, mask: tf.Tensor4D, o: ScoreOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, T, H, dh] = q.shape;
    const K = k.shape[2] as number;
    const Tk = k.shape[1] as number;
    const G = H / K;
    const qg = tf.reshape(tf.transpose(tf.reshape(q, [B, T, K, G, dh]), [0, 2, 3, 1, 4]), [B, K, G * T, dh]);
    const kt = tf.transpose(k, [0, 2, 3, 1]); // [B, K, dh, Tk]
    let s = tf.reshape(tf.div(tf.matMul(qg, kt), o.scale), [B, H, T, Tk]);
    if (o.softcap) s = tf.mul(tf.tanh(tf.div(s, o.softcap)), o.softcap);
    if (o.bias) s = tf.add(s, o.bias);
    return tf.add(s, mask) as tf.Tensor4D;
  });
}

/** Softmax over keys; a row with every key masked (a padding query) gives a uniform row instead of NaN. */
export function attentionPattern(scores: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const safe = tf.maximum(scores, -3.0e38); // -Infinity -> a finite floor: masked keys get weight 0 and a fully masked row no NaN
    return tf.softmax(safe, -1) as tf.Tensor4D;
  });
}

/** z [B, T, H, dh] = pattern [B, H, T, Tk] mixing values [B, Tk, K, dh] (GQA as attentionScores). */
export function mixValues(pattern: tf.Tensor, v: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, H, T, Tk] = pattern.shape;
    const K = v.shape[2] as number;
    const dh = v.shape[3] as number;
    const G = H / K;
    const zg = tf.matMul(tf.reshape(pattern, [B, K, G * T, Tk]), tf.transpose(v, [0, 2, 1, 3])); // [B, K, G*T, dh]
    return tf.transpose(tf.reshape(zg, [B, H, T, dh]), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/** What a fused attention call should also return besides z. */
export interface AttentionWants {
  scores?: boolean;
  pattern?: boolean;
}

/**
 * scores -> softmax -> value mix in one call (a backend may run it as one kernel); the scores and
 * the pattern are returned only when asked (for the cache).
 */
export function attention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  spec: AttnMaskSpec,
  o: ScoreOptions,
  wants: AttentionWants = {},
): { z: tf.Tensor4D; scores?: tf.Tensor4D; pattern?: tf.Tensor4D } {
  const mask = additiveMask(spec, q.shape[1] as number);
  const scores = attentionScores(q, k, mask, o);
  mask.dispose();
  const pattern = attentionPattern(scores);
  const z = mixValues(pattern, v);
  const out: { z: tf.Tensor4D; scores?: tf.Tensor4D; pattern?: tf.Tensor4D } = { z };
  if (wants.scores) out.scores = scores;
  else scores.dispose();
  if (wants.pattern) out.pattern = pattern;
  else pattern.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------
// mixture of experts
// ---------------------------------------------------------------------------------------------

/** x [N, d_in] through every expert's weights W [E, d_in, w] -> [N, E, w] (one matmul). */
export function linearExperts(x: tf.Tensor2D, W: tf.Tensor): tf.Tensor3D {
  return tf.tidy(() => {
    const [E, dIn, w] = W.shape;
    const flat = tf.reshape(tf.transpose(W, [1, 0, 2]), [dIn, E * w]) as tf.Tensor2D;
    return tf.reshape(tf.matMul(x, flat), [x.shape[0], E, w]) as tf.Tensor3D;
  });
}

/** Expert outputs [B, T, E, d] from activations [B, T, E, w] and W_out [E, w, d]. */
export function expertsOut(post: tf.Tensor, Wout: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, T, E, w] = post.shape;
    const d = Wout.shape[2] as number;
    const perExpert = tf.transpose(tf.reshape(post, [B * T, E, w]), [1, 0, 2]) as tf.Tensor3D; // [E, N, w]
    const y = tf.matMul(perExpert, Wout as tf.Tensor3D); // [E, N, d]
    return tf.reshape(tf.transpose(y, [1, 0, 2]), [B, T, E, d]) as tf.Tensor4D;
  });
}

/**
 * The top-k experts of router probabilities [B, T, E] (descending, as torch.topk) and their weights,
 * renormalised to sum to 1 when `renormalise` (Mixtral) or the raw probabilities (Qwen2-MoE default).
 */
export function topExperts(probs: tf.Tensor, k: number, renormalise: boolean): { indices: tf.Tensor; weights: tf.Tensor } {
  const { values, indices } = tf.topk(probs, k);
  if (!renormalise) return { indices, weights: values };
  const weights = tf.tidy(() => tf.div(values, tf.sum(values, -1, true)));
  values.dispose();
  return { indices, weights };
}

/** Sum over the chosen experts: outs [B, T, E, d] weighted by weights [B, T, k] at indices [B, T, k] -> [B, T, d]. */
export function combineExperts(outs: tf.Tensor, indices: tf.Tensor, weights: tf.Tensor, nExperts: number): tf.Tensor3D {
  return tf.tidy(() => {
    const route = tf.sum(tf.mul(tf.oneHot(tf.cast(indices, 'int32'), nExperts), tf.expandDims(weights, -1)), 2); // [B, T, E]
    return tf.sum(tf.mul(outs, tf.expandDims(route, -1)), 2) as tf.Tensor3D;
  });
}
