/**
 * ActivationCache: the activations a run kept, by hook name, with the TransformerLens helpers
 * (stackHeadResults, decomposeResid, accumulatedResid, applyLnToStack, logitAttrs).
 * Entries live on the backend's device, or in host memory when the run was asked to keep them there
 * (`cacheOn: 'host'`, TransformerLens's device='cpu'): `get` then makes a tensor from the host values on
 * first use, and `values` reads an entry without a device round trip.
 */
import * as tf from '@tensorflow/tfjs';
import { HookError, ShapeError, expectedFound } from '../errors.js';
import type { ModelView } from './view.js';

/** An activation kept in host memory. */
export interface HostTensor {
  values: Float32Array | Int32Array | Uint8Array;
  shape: number[];
  dtype: tf.DataType;
}

export interface Stack {
  /** [components, ...rest] */
  stack: tf.Tensor;
  labels: string[];
}

export class ActivationCache {
  private disposed = false;
  private readonly host: Record<string, HostTensor>;
  constructor(
    readonly tensors: Record<string, tf.Tensor>,
    readonly model: ModelView,
    host?: Record<string, HostTensor>,
  ) {
    this.host = host ?? {};
  }

  /** Cached hook names, in the order the forward passed them. */
  keys(): string[] {
    return [...Object.keys(this.tensors), ...Object.keys(this.host).filter((k) => !(k in this.tensors))];
  }

  has(name: string): boolean {
    return name in this.tensors || name in this.host;
  }

  /** Where an entry lives. */
  device(name: string): 'device' | 'host' {
    this.check(name);
    return name in this.host ? 'host' : 'device';
  }

  /** The cached tensor (owned by the cache: do not dispose it). A host entry becomes a tensor on first use. */
  get(name: string): tf.Tensor {
    this.check(name);
    let t = this.tensors[name];
    if (!t) {
      const h = this.host[name];
      t = this.tensors[name] = tf.tensor(h.values, h.shape, h.dtype);
    }
    return t;
  }

  /** An entry's values on the host (read asynchronously from the device when it lives there). */
  async values(name: string): Promise<{ values: Float32Array | Int32Array | Uint8Array; shape: number[] }> {
    this.check(name);
    const h = this.host[name];
    if (h) return { values: h.values, shape: h.shape };
    const t = this.tensors[name];
    return { values: (await t.data()) as Float32Array, shape: t.shape };
  }

  private check(name: string): void {
    if (this.disposed) throw new HookError(name, 'the ActivationCache was disposed');
    if (!this.has(name)) {
      const k = this.keys();
      throw new HookError(name, `not in the cache (cached: ${k.slice(0, 6).join(', ')}${k.length > 6 ? ', ...' : ''}); widen namesFilter`);
    }
  }

  /** Free every cached tensor. */
  dispose(): void {
    if (!this.disposed) tf.dispose(Object.values(this.tensors));
    this.disposed = true;
  }

  private lastLayer(layer?: number): number {
    const L = this.model.cfg.n_layers;
    const l = layer === undefined ? L : layer < 0 ? L + layer : layer;
    if (!Number.isInteger(l) || l < 0 || l > L) throw new ShapeError('layer', expectedFound(`a layer in [0, ${L}]`, layer));
    return l;
  }

  /**
   * Per-head outputs of layers [0, layer) stacked: [layer*n_heads, batch, pos, d_model] with labels "L{l}H{h}".
   * Uses hook_result when cached, else computes z_h W_O^h from hook_z.
   */
  stackHeadResults(layer?: number, opts: { posSlice?: number } = {}): Stack {
    const L = this.lastLayer(layer);
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      const labels: string[] = [];
      for (let l = 0; l < L; l++) {
        let res: tf.Tensor;
        const rName = `blocks.${l}.attn.hook_result`;
        if (this.has(rName)) {
          res = this.get(rName);
        } else {
          const z = this.get(`blocks.${l}.attn.hook_z`); // [B, T, H, dh]
          const [B, T, H, dh] = z.shape;
          const wo = this.model.weight(`blocks.${l}.attn.W_O`); // [H, dh, d]
          res = tf.transpose(tf.matMul(tf.transpose(tf.reshape(z, [B * T, H, dh]), [1, 0, 2]), wo), [1, 0, 2]).reshape([B, T, H, -1]);
        }
        if (opts.posSlice !== undefined) parts.push(tf.transpose(sliceAxis(res, 1, opts.posSlice), [1, 0, 2])); // [H, B, d]
        else parts.push(tf.transpose(res, [2, 0, 1, 3])); // [H, B, T, d]
        for (let h = 0; h < this.model.cfg.n_heads; h++) labels.push(`L${l}H${h}`);
      }
      if (!parts.length) throw new ShapeError('layer', 'no layers below the requested layer');
      return { stack: tf.concat(parts, 0), labels } as unknown as tf.TensorContainer;
    }) as unknown as Stack;
  }

  /**
   * The residual stream before `layer` (default: the final residual) decomposed into
   * embed, pos_embed, {l}_attn_out, {l}_mlp_out (and the attention output biases folded into attn_out).
   */
  decomposeResid(layer?: number, opts: { mode?: 'all' | 'attn' | 'mlp'; inclEmbeds?: boolean; posSlice?: number } = {}): Stack {
    const L = this.lastLayer(layer);
    const mode = opts.mode ?? 'all';
    return this.stackOf(opts.posSlice, (add) => {
      if (opts.inclEmbeds ?? true) {
        add('hook_embed', 'embed');
        if (this.model.cfg.positional === 'learned') add('hook_pos_embed', 'pos_embed');
      }
      for (let l = 0; l < L; l++) {
        if (mode !== 'mlp') add(`blocks.${l}.hook_attn_out`, `${l}_attn_out`);
        if (mode !== 'attn') add(`blocks.${l}.hook_mlp_out`, `${l}_mlp_out`);
      }
    });
  }

  /** Stack cached activations [batch, pos, d] (or one position of them) along a new first axis, with labels. */
  private stackOf(posSlice: number | undefined, fill: (add: (name: string, label: string) => void) => void): Stack {
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      const labels: string[] = [];
      fill((name, label) => {
        let t = this.get(name);
        if (posSlice !== undefined) t = sliceAxis(t, 1, posSlice);
        parts.push(t.expandDims(0));
        labels.push(label);
      });
      return { stack: tf.concat(parts, 0), labels } as unknown as tf.TensorContainer;
    }) as unknown as Stack;
  }

  /** resid_pre of layers 0..layer-1 and the final residual (when layer = n_layers): [n, batch, pos, d]. */
  accumulatedResid(layer?: number, opts: { inclMid?: boolean; posSlice?: number } = {}): Stack {
    const L = this.lastLayer(layer);
    const N = this.model.cfg.n_layers;
    return this.stackOf(opts.posSlice, (add) => {
      for (let l = 0; l <= Math.min(L, N - 1); l++) {
        if (l < L || L < N) add(`blocks.${l}.hook_resid_pre`, `${l}_pre`);
        if (opts.inclMid && l < L && !this.model.cfg.parallel_attn_mlp) add(`blocks.${l}.hook_resid_mid`, `${l}_mid`);
      }
      if (L === N) add(`blocks.${N - 1}.hook_resid_post`, 'final_post');
      // for L < N the loop added resid_pre of layer L as the last entry
    });
  }

  /**
   * Apply the cached LayerNorm scale of `layer`'s ln1 (or ln_final when layer is undefined / n_layers)
   * to a stack [components, batch, pos?, d]: centre (LayerNorm) and divide by the frozen scale.
   * With `applyWeights`, also multiply by the norm's weight (needed for unfolded models).
   */
  applyLnToStack(stack: tf.Tensor, layer?: number, opts: { posSlice?: number; applyWeights?: boolean } = {}): tf.Tensor {
    const N = this.model.cfg.n_layers;
    const L = layer === undefined ? N : layer;
    const name = L === N ? 'ln_final.hook_scale' : `blocks.${L}.ln1.hook_scale`;
    const wName = L === N ? 'ln_final.w' : `blocks.${L}.ln1.w`;
    return tf.tidy(() => {
      let scale = this.get(name); // [B, T, 1]
      if (opts.posSlice !== undefined) scale = sliceAxis(scale, 1, opts.posSlice); // [B, 1]
      if (scale.rank !== stack.rank - 1) throw new ShapeError('stack', expectedFound(`rank ${scale.rank + 1} (components first)`, stack.rank));
      let x = stack;
      if (this.model.cfg.normalization === 'LN') x = tf.sub(x, tf.mean(x, -1, true));
      x = tf.div(x, scale.expandDims(0));
      if (opts.applyWeights && this.model.params[wName]) x = tf.mul(x, this.model.params[wName]);
      return x;
    });
  }

  /**
   * Direct logit attribution: each component's (already ln-applied) contribution to
   * logit(token) - logit(incorrect) through W_U. stack [C, B, d]; tokens [B]; returns [C, B].
   */
  logitAttrs(stack: tf.Tensor, tokens: number[], incorrectTokens?: number[]): tf.Tensor2D {
    if (stack.rank !== 3) throw new ShapeError('stack', expectedFound('[components, batch, d_model] (slice one position first)', `[${stack.shape}]`));
    const B = stack.shape[1];
    if (tokens.length !== B) throw new ShapeError('tokens', expectedFound(`${B} tokens`, tokens.length));
    if (incorrectTokens && incorrectTokens.length !== B) throw new ShapeError('incorrectTokens', expectedFound(`${B} tokens`, incorrectTokens.length));
    return tf.tidy(() => {
      const WU = this.model.weight('unembed.W_U'); // [d, V]
      let dir = tf.transpose(tf.gather(WU, tokens, 1)); // [B, d]
      if (incorrectTokens) dir = tf.sub(dir, tf.transpose(tf.gather(WU, incorrectTokens, 1)));
      return tf.sum(tf.mul(stack, dir.expandDims(0)), -1) as tf.Tensor2D;
    });
  }
}

/** Take one index (negative counts from the end) of `axis`, dropping the axis. */
function sliceAxis(t: tf.Tensor, axis: number, index: number): tf.Tensor {
  const n = t.shape[axis];
  const i = index < 0 ? index + n : index;
  if (i < 0 || i >= n) throw new ShapeError('posSlice', expectedFound(`a position in [${-n}, ${n})`, index));
  return tf.squeeze(tf.slice(t, t.shape.map((_, a) => (a === axis ? i : 0)), t.shape.map((d, a) => (a === axis ? 1 : d))), [axis]);
}
