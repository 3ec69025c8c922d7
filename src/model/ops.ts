/**
 * The math the forward is made of, one function per primitive: normalisation, linear maps,
 * activations, rotary embedding, position biases, soft-capping, attention and expert routing.
 * src/model/forward.ts composes them with the hook points; this file is the seam where a backend's
 * fused kernels (src/backend/webgpu) replace the plain TensorFlow.js compositions below. Every
 * function here is synchronous, pure (tensors in, new tensors out) and reads nothing back; signatures
 * are stable (new parameters are optional and appended).
 *
 * Dispatch: when `fusedKernels()` is true (the webgpu backend is active, no gradient is being
 * recorded, TFLENS_FUSED is not 0) `norm`, `linear`, `linearHeads`, `gatedLinear`, `rotary` (given
 * positions) and `attention` run tflens's WGSL kernels; otherwise, and wherever a kernel's
 * preconditions do not hold (e.g. a head size not divisible by 4), the compositions below. Weights
 * may be packed 16-bit words (`PackedHalf`, half-precision checkpoints on WebGPU); the compositions
 * decode them to float32 first.
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError, ShapeError, expectedFound } from '../errors.js';
import * as gpu from '../backend/webgpu/index.js';
import type { PackedHalf } from '../backend/webgpu/half.js';
import type { ActFn } from './config.js';

export type NormKind = 'LN' | 'RMS';

/** A weight as the forward holds it: a float32 tensor, or packed F16 / BF16 words on the GPU. */
export type Weight = tf.Tensor | PackedHalf;

/**
 * Whether the fused WebGPU kernels run now: the webgpu backend is active, no gradient tape is
 * recording (the kernels have no gradients; tf.grad gets the compositions) and TFLENS_FUSED is not '0'.
 */
export function fusedKernels(): boolean {
  if (tf.getBackend() !== 'webgpu') return false;
  if (typeof process !== 'undefined' && process.env?.TFLENS_FUSED === '0') return false;
  return !(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/** A weight as float32: the tensor itself, or packed halves decoded on the GPU (a new tensor, freed by the caller's tidy). */
export function asFloat(W: Weight): tf.Tensor {
  if (!gpu.isPackedHalf(W)) return W;
  if (tf.getBackend() !== 'webgpu') throw new BackendError('half-precision weight', expectedFound('the webgpu backend (packed F16/BF16 weights live on the GPU)', tf.getBackend()));
  return gpu.unpackHalf(W);
}

/**
 * A weight viewed with another shape of the same last axis (e.g. W_O [H, d_head, d] as [H d_head, d]):
 * a tfjs reshape, which shares the storage (packed words keep their rows).
 */
export function reshapeWeight(W: Weight, shape: number[]): Weight {
  if (!gpu.isPackedHalf(W)) return tf.reshape(W, shape);
  if (shape[shape.length - 1] !== W.shape[W.shape.length - 1]) throw new ShapeError('reshapeWeight', expectedFound(`a shape ending in ${W.shape[W.shape.length - 1]}`, shape));
  const words = tf.reshape(W.words, [...shape.slice(0, -1), W.words.shape[W.words.rank - 1]]);
  return { words, format: W.format, shape: [...shape] };
}

/** The kernel name of an MLP activation ('gelu_fast' is the tanh form, as 'gelu_new'). */
function kernelAct(fn: ActFn | undefined): gpu.Activation {
  if (!fn) return 'none';
  return fn === 'gelu_fast' ? 'gelu_new' : fn;
}

/**
 * LayerNorm / RMSNorm over the last axis: the normalised x (times w, plus b for LayerNorm) and, when
 * asked, the per-row scale (hook_scale). One kernel on WebGPU.
 */
export function norm(x: tf.Tensor, kind: NormKind, eps: number, w?: tf.Tensor, b?: tf.Tensor, o: { wantScale?: boolean } = {}): { y: tf.Tensor; scale?: tf.Tensor } {
  const D = x.shape[x.rank - 1];
  // the kernel takes one [D] weight and bias; per-head weights [heads, D] (StableLM's q/k norms) broadcast in the composition
  if (fusedKernels() && x.dtype === 'float32' && (!w || w.size === D) && (!b || b.size === D)) {
    return gpu.norm(x, { kind, eps, weight: w, bias: kind === 'LN' ? b : undefined, wantScale: o.wantScale });
  }
  return tf.tidy(() => {
    const scale = normScale(x, kind, eps);
    const y = normApply(x, scale, kind, w, b);
    return (o.wantScale ? { y, scale } : { y }) as unknown as tf.TensorContainer;
  }) as unknown as { y: tf.Tensor; scale?: tf.Tensor };
}

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

/** What a linear map may add after the product (fused into the matmul kernel on WebGPU). */
export interface LinearEpilogue {
  /** Applied to x W + b. */
  activation?: ActFn;
  /** Added after the activation (a residual stream update), shaped like the output. */
  residual?: tf.Tensor | null;
}

/** act(x [N, d_in] @ W [d_in, d_out] (+ b)) (+ residual); W float32 or packed halves. */
export function linear(x: tf.Tensor2D, W: Weight, b?: tf.Tensor | null, e: LinearEpilogue = {}): tf.Tensor2D {
  if (fusedKernels()) {
    return gpu.matmul(x, W, { bias: b, activation: kernelAct(e.activation), residual: e.residual }) as tf.Tensor2D;
  }
  return tf.tidy(() => {
    let y: tf.Tensor = tf.matMul(x, asFloat(W) as tf.Tensor2D);
    if (b) y = tf.add(y, b);
    if (e.activation) y = activation(e.activation, y);
    if (e.residual) y = tf.add(y, e.residual);
    return y as tf.Tensor2D;
  });
}

/**
 * x [N, d_in] times per-head weights W [H, d_in, d_h] (+ b [H, d_h]) -> [N, H, d_h]. On WebGPU one
 * matmul reads W in this canonical layout (column blocks): no [d_in, H d_h] copy of W is made.
 */
export function linearHeads(x: tf.Tensor2D, W: Weight, b?: tf.Tensor | null): tf.Tensor3D {
  const [H, , dh] = W.shape as [number, number, number];
  if (fusedKernels()) {
    const y = gpu.matmul(x, W, { bias: b ? tf.reshape(b, [H * dh]) : null });
    return tf.tidy(() => tf.reshape(y, [x.shape[0], H, dh]) as tf.Tensor3D);
  }
  return tf.tidy(() => {
    // W moved to [d_in, H d_h] for this product (a transient copy: on wasm it costs a few percent of
    // the product, and a batched product over heads is ten times slower there)
    const dIn = W.shape[1] as number;
    let y = tf.matMul(x, tf.reshape(tf.transpose(asFloat(W), [1, 0, 2]), [dIn, H * dh]) as tf.Tensor2D);
    if (b) y = tf.add(y, tf.reshape(b, [H * dh]));
    return tf.reshape(y, [x.shape[0], H, dh]) as tf.Tensor3D;
  });
}

/**
 * Gated MLP input act(x Wg + bg) * (x Wu + bu): SwiGLU / GeGLU. One kernel on WebGPU (x read once,
 * both products in registers).
 */
export function gatedLinear(x: tf.Tensor2D, Wg: Weight, Wu: Weight, fn: ActFn, bg?: tf.Tensor | null, bu?: tf.Tensor | null): tf.Tensor2D {
  if (fusedKernels() && gpu.isPackedHalf(Wg) === gpu.isPackedHalf(Wu)) {
    return gpu.gatedMatmul(x, Wg, Wu, { activation: kernelAct(fn), biasGate: bg, biasUp: bu }) as tf.Tensor2D;
  }
  return tf.tidy(() => tf.mul(linear(x, Wg, bg, { activation: fn }), linear(x, Wu, bu)) as tf.Tensor2D);
}

/** Rows `ids` of an embedding matrix W [V, d] (float32, or packed halves: only the rows read are decoded). */
export function embedRows(W: Weight, ids: tf.Tensor): tf.Tensor {
  return gpu.isPackedHalf(W) ? gpu.gatherHalf(W, ids) : tf.gather(W, ids);
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

/** What the fused rotary kernel reads instead of cos/sin tables: position ids, inverse frequencies, cos/sin scale. */
export interface RotaryAngles {
  /** int32 [B, T] position ids of x's tokens. */
  positions: tf.Tensor2D;
  /** float32 [rotary_dim / 2] inverse frequencies (rope scaling applied). */
  invFreq: tf.Tensor1D;
  /** cos/sin multiplier (YaRN / LongRoPE attention factor; 1 otherwise). */
  scale: number;
}

/**
 * Rotary position embedding on the first rotary_dim dims of each head of x [B, T, H, d_head]. With
 * `angles`, WebGPU runs one kernel from the position ids (the tables are not read).
 */
export function rotary(x: tf.Tensor, [cos, sin]: [tf.Tensor, tf.Tensor], style: RotaryStyle, angles?: RotaryAngles): tf.Tensor {
  if (angles && fusedKernels()) {
    return gpu.rotary(x, angles.positions, { style, rotaryDim: cos.shape[3], invFreq: angles.invFreq, scale: angles.scale });
  }
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
  /**
   * The same ALiBi bias as per-head slopes [H] and key positions [B, Tk] (slope_h * position of
   * key k): what the fused attention kernel reads instead of the [B, H, 1, Tk] tensor.
   */
  alibi?: { slopes: tf.Tensor1D; keyPositions: tf.Tensor2D } | null;
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

/**
 * Softmax over keys; a row with every key masked (a padding query) gives zeros instead of NaN, as
 * TransformerLens (it replaces the NaN of such rows by 0) and the fused kernel do. Which rows see no key
 * is read from the additive `mask` [B, 1, T, Tk] when given, else from the scores themselves (through a
 * step with a zero gradient, so the function stays differentiable under tf.grad).
 */
export function attentionPattern(scores: tf.Tensor, mask?: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const safe = tf.maximum(scores, -3.0e38); // -Infinity -> a finite floor: masked keys get weight 0 and a fully masked row no NaN
    // 0 for a row with no visible key: step() of (row max + 3e38) is 0 only where the max is -Infinity,
    // and step has a zero gradient (greater has none, which would break tf.grad through the scores)
    const seen = tf.step(tf.add(tf.max(mask ?? scores, -1, true), 3.0e38));
    return tf.mul(tf.softmax(safe, -1), seen) as tf.Tensor4D;
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
  /** The argmax key of every head's last query row, int32 [B, H] (retrieval scoring; see lastRowArgmax). */
  lastArgmax?: boolean;
}

/** What attention returns: z and what was asked for. */
export interface AttentionOut {
  z: tf.Tensor4D;
  scores?: tf.Tensor4D;
  pattern?: tf.Tensor4D;
  lastArgmax?: tf.Tensor2D;
}

/**
 * scores -> softmax -> value mix in one call; the scores, the pattern and the last row's argmax are
 * returned only when asked (for the cache or a reader). On WebGPU one fused kernel (online softmax:
 * no [T, Tk] matrix unless the scores or the pattern are asked for).
 */
export function attention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, spec: AttnMaskSpec, o: ScoreOptions, wants: AttentionWants = {}): AttentionOut {
  const dh = q.shape[3] as number;
  if (fusedKernels() && dh % 4 === 0 && (!o.bias || o.alibi)) {
    const r = gpu.attention(q, k, v, {
      scale: o.scale,
      softcap: o.softcap ?? null,
      keyMask: spec.keyMask,
      pastLength: spec.pastLength,
      window: spec.window,
      alibiSlopes: o.alibi?.slopes ?? null,
      alibiKeyPositions: o.alibi?.keyPositions ?? null,
      wantPattern: !!wants.pattern,
      wantScores: !!wants.scores,
      wantLastArgmax: !!wants.lastArgmax,
    });
    return r as AttentionOut;
  }
  return tf.tidy(() => {
    const mask = additiveMask(spec, q.shape[1] as number);
    const scores = attentionScores(q, k, mask, o);
    const pattern = attentionPattern(scores, mask);
    const out: AttentionOut = { z: mixValues(pattern, v) };
    if (wants.scores) out.scores = scores;
    if (wants.pattern) out.pattern = pattern;
    if (wants.lastArgmax) out.lastArgmax = lastRowArgmax(pattern);
    return out as unknown as tf.TensorContainer;
  }) as unknown as AttentionOut;
}

/**
 * The argmax key of the last query row of a pattern (or scores) [batch, head, q, k] -> int32
 * [batch, head], the lowest position on ties (tf.argMax leaves the tie order to the backend).
 */
export function lastRowArgmax(pattern: tf.Tensor): tf.Tensor2D {
  if (pattern.rank !== 4) throw new ShapeError('hook_pattern', expectedFound('[batch, head, q, k]', `[${pattern.shape}]`));
  const [B, H, Q, K] = pattern.shape;
  return tf.tidy(() => {
    const row = tf.reshape(tf.slice(pattern, [0, 0, Q - 1, 0], [B, H, 1, K]), [B * H, K]);
    const isMax = tf.equal(row, tf.max(row, 1, true));
    const pos = tf.broadcastTo(tf.range(0, K, 1, 'int32').reshape([1, K]), [B * H, K]);
    return tf.reshape(tf.min(tf.where(isMax, pos, tf.fill([B * H, K], K, 'int32')), 1), [B, H]) as tf.Tensor2D;
  });
}

// ---------------------------------------------------------------------------------------------
// mixture of experts
// ---------------------------------------------------------------------------------------------

/** x [N, d_in] through every expert's weights W [E, d_in, w] -> [N, E, w] (one matmul; column blocks on WebGPU). */
export function linearExperts(x: tf.Tensor2D, W: Weight): tf.Tensor3D {
  return linearHeads(x, W);
}

/** Expert outputs [B, T, E, d] from activations [B, T, E, w] and W_out [E, w, d]. */
export function expertsOut(post: tf.Tensor, Wout: Weight): tf.Tensor4D {
  return tf.tidy(() => {
    const [B, T, E, w] = post.shape;
    const d = Wout.shape[2] as number;
    const perExpert = tf.transpose(tf.reshape(post, [B * T, E, w]), [1, 0, 2]) as tf.Tensor3D; // [E, N, w]
    const y = tf.matMul(perExpert, asFloat(Wout) as tf.Tensor3D); // [E, N, d]
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
