/**
 * Weight processing, TransformerLens semantics, explicit and off by default. Each step changes
 * the parameters but not the model's log-probabilities (tests check 1e-4).
 *   foldLn: norm weights (and LayerNorm biases) folded into the next linear maps; with LayerNorm,
 *           the reading weights are also centred along d_model (exact, the normalised input has mean 0).
 *   centerWritingWeights: everything written to the residual stream gets mean 0 along d_model (LayerNorm models).
 *   centerUnembed: W_U and b_U centred over the vocabulary (logits shift by a constant per position).
 *   foldValueBiases: b_V moved into b_O (pattern rows sum to 1).
 * Which steps a family allows follows from its feature flags (processingSupport); a refused step is a
 * ConfigError naming the reason.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../errors.js';
import type { ModelConfig } from './config.js';
import type { HookedTransformer } from './hooked.js';

type P = Record<string, tf.Tensor>;

function replace(model: HookedTransformer, updates: P, remove: string[] = []): void {
  for (const [k, v] of Object.entries(updates)) {
    const old = model.params[k];
    model.params[k] = tf.keep(v);
    if (old && old !== v && !Object.values(updates).includes(old)) old.dispose();
  }
  for (const k of remove) {
    model.params[k]?.dispose();
    delete model.params[k];
  }
  model.invalidateFused();
}

/** Fold a norm (weight w [d], bias b [d] or none) into reading matrices W [..., d, n] with biases [..., n]. */
function foldInto(W: tf.Tensor, bias: tf.Tensor | undefined, w: tf.Tensor, b: tf.Tensor | undefined, center: boolean): [tf.Tensor, tf.Tensor | undefined] {
  // W: [heads, d, n] or [d, n]
  const rank = W.rank;
  const wShape = rank === 3 ? [1, w.shape[0], 1] : [w.shape[0], 1];
  let newBias = bias;
  if (b) {
    const contrib = rank === 3 ? tf.sum(tf.mul(W, b.reshape(wShape)), 1) : tf.sum(tf.mul(W, b.reshape(wShape)), 0);
    newBias = bias ? tf.add(bias, contrib) : contrib;
  }
  let Wn = tf.mul(W, w.reshape(wShape));
  if (center) Wn = tf.sub(Wn, tf.mean(Wn, rank === 3 ? 1 : 0, true));
  return [Wn, newBias];
}

/** The weight processing steps, in TransformerLens's order. */
export const PROCESSING_STEPS = ['foldLn', 'centerWritingWeights', 'centerUnembed', 'foldValueBiases'] as const;
export type ProcessingStep = (typeof PROCESSING_STEPS)[number];

/**
 * Which steps keep a model with this config exact (null) and why the others do not (the reason), from
 * its feature flags: TransformerLens's rules (RMSNorm does not remove the mean; OLMo 2's post-norms cannot
 * be folded; soft-capped logits are not shift-invariant) plus OLMo's clip_qkv, which clamps v with its bias.
 */
export function processingSupport(c: ModelConfig): Record<ProcessingStep, string | null> {
  return {
    foldLn: c.block_norms === 'post' ? 'the block has no norms before attention and MLP (post-norms only), so there is nothing to fold into the reading weights' : null,
    centerWritingWeights:
      c.normalization !== 'LN' ? 'only valid for LayerNorm models (RMSNorm does not remove the mean)'
        : c.block_norms !== 'pre' ? 'post-norms read what the block writes, so centring it would change them' : null,
    centerUnembed: c.final_softcap ? 'the final logits are soft-capped, and tanh is not invariant to adding a constant' : null,
    foldValueBiases: c.clip_qkv ? 'v is clamped (clip_qkv) after its bias, so the bias cannot move past the clamp' : null,
  };
}

function requireSupport(model: HookedTransformer, step: ProcessingStep): void {
  const why = processingSupport(model.cfg)[step];
  if (why) throw new ConfigError(step, `not valid for ${model.cfg.architecture}: ${why}`);
  if (Object.keys(model.halfParams).length) {
    throw new ConfigError(step, `${model.name} keeps its weights in half precision on the GPU; load it with halfWeights: 'float32' to process its weights`);
  }
}

/** The matrices that read a norm's output: [weight, bias] names (bias null = none, made when the norm has one). */
function readersOf(c: ModelConfig, l: number, which: 'ln1' | 'ln2'): [string, string][] {
  const b = `blocks.${l}.`;
  if (which === 'ln1') return ['Q', 'K', 'V'].map((n) => [`${b}attn.W_${n}`, `${b}attn.b_${n}`]);
  if (c.moe?.layers[l]) {
    const list: [string, string][] = [[`${b}mlp.W_router`, ''], [`${b}mlp.experts.W_gate`, ''], [`${b}mlp.experts.W_in`, '']];
    if (c.moe.d_shared > 0) list.push([`${b}mlp.shared_expert.W_gate`, ''], [`${b}mlp.shared_expert.W_in`, ''], [`${b}mlp.W_shared_gate`, '']);
    return list;
  }
  const list: [string, string][] = [[`${b}mlp.W_in`, `${b}mlp.b_in`]];
  if (c.gated_mlp) list.push([`${b}mlp.W_gate`, `${b}mlp.b_gate`]);
  return list;
}

export function foldLn(model: HookedTransformer): void {
  requireSupport(model, 'foldLn');
  const c = model.cfg;
  const P = model.params;
  const center = c.normalization === 'LN';
  const upd: P = {};
  const remove: string[] = [];
  const fold = (norm: string, readers: [string, string][]) => {
    const w = P[`${norm}.w`];
    const nb = P[`${norm}.b`];
    if (!w) return;
    for (const [W, bias] of readers) {
      if (nb && !bias) throw new ConfigError('foldLn', `${W} reads a norm with a bias but has no bias to fold it into`);
      const [Wn, bn] = foldInto(P[W], P[bias], w, nb, center);
      upd[W] = Wn;
      if (bn) upd[bias] = bn;
    }
    remove.push(`${norm}.w`, `${norm}.b`);
  };
  tf.tidy(() => {
    for (let l = 0; l < c.n_layers; l++) {
      fold(`blocks.${l}.ln1`, readersOf(c, l, 'ln1'));
      fold(`blocks.${l}.ln2`, readersOf(c, l, 'ln2'));
    }
    fold('ln_final', [['unembed.W_U', 'unembed.b_U']]);
    Object.values(upd).forEach((t) => tf.keep(t));
  });
  replace(model, upd, remove.filter((k) => k in P));
}

export function centerWritingWeights(model: HookedTransformer): void {
  requireSupport(model, 'centerWritingWeights');
  const c = model.cfg;
  const P = model.params;
  const writers = ['embed.W_E', 'pos_embed.W_pos'];
  for (let l = 0; l < c.n_layers; l++) {
    const b = `blocks.${l}.`;
    writers.push(`${b}attn.W_O`, `${b}attn.b_O`, `${b}mlp.W_out`, `${b}mlp.b_out`, `${b}mlp.experts.W_out`, `${b}mlp.shared_expert.W_out`);
  }
  const upd: P = {};
  tf.tidy(() => {
    for (const n of writers) if (P[n]) upd[n] = tf.keep(tf.sub(P[n], tf.mean(P[n], -1, true)));
  });
  replace(model, upd);
}

export function centerUnembed(model: HookedTransformer): void {
  requireSupport(model, 'centerUnembed');
  const P = model.params;
  const upd: P = tf.tidy(() => ({
    'unembed.W_U': tf.keep(tf.sub(P['unembed.W_U'], tf.mean(P['unembed.W_U'], -1, true))),
    'unembed.b_U': tf.keep(tf.sub(P['unembed.b_U'], tf.mean(P['unembed.b_U']))),
  }));
  replace(model, upd);
}

export function foldValueBiases(model: HookedTransformer): void {
  requireSupport(model, 'foldValueBiases');
  const c = model.cfg;
  const P = model.params;
  const upd: P = {};
  tf.tidy(() => {
    for (let l = 0; l < c.n_layers; l++) {
      const b = `blocks.${l}.attn.`;
      const bV = P[b + 'b_V'];
      if (!bV) continue;
      const G = c.n_heads / c.n_kv_heads;
      // per query head h the value bias of its KV head
      const bVq = tf.reshape(tf.tile(tf.expandDims(bV, 1), [1, G, 1]), [c.n_heads, 1, c.d_head]);
      const contrib = tf.sum(tf.matMul(bVq, P[b + 'W_O']), [0, 1]); // [d]
      upd[b + 'b_O'] = tf.keep(P[b + 'b_O'] ? tf.add(P[b + 'b_O'], contrib) : contrib);
      upd[b + 'b_V'] = tf.keep(tf.zerosLike(bV));
    }
  });
  replace(model, upd);
}

export interface ProcessOptions {
  foldLn?: boolean;
  centerWritingWeights?: boolean;
  centerUnembed?: boolean;
  foldValueBiases?: boolean;
}

/**
 * Apply the chosen steps in TransformerLens order (fold LN, centre writing weights, centre unembed, fold
 * value biases). A step the model's family does not allow (processingSupport) is a ConfigError, raised
 * before any weight changes.
 */
export function processWeights(model: HookedTransformer, opts: ProcessOptions): void {
  for (const step of PROCESSING_STEPS) if (opts[step]) requireSupport(model, step);
  if (opts.foldLn) foldLn(model);
  if (opts.centerWritingWeights) centerWritingWeights(model);
  if (opts.centerUnembed) centerUnembed(model);
  if (opts.foldValueBiases) foldValueBiases(model);
}
