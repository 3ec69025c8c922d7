/**
 * Weight processing, TransformerLens semantics, explicit and off by default. Each step changes
 * the parameters but not the model's log-probabilities (tests check 1e-4).
 *   foldLn: norm weights (and LayerNorm biases) folded into the next linear maps; with LayerNorm,
 *           the reading weights are also centred along d_model (exact, the normalised input has mean 0).
 *   centerWritingWeights: everything written to the residual stream gets mean 0 along d_model (LayerNorm models).
 *   centerUnembed: W_U and b_U centred over the vocabulary (logits shift by a constant per position).
 *   foldValueBiases: b_V moved into b_O (pattern rows sum to 1).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../errors.js';
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

export function foldLn(model: HookedTransformer): void {
  const c = model.cfg;
  const P = model.params;
  const center = c.normalization === 'LN';
  const upd: P = {};
  const remove: string[] = [];
  tf.tidy(() => {
    for (let l = 0; l < c.n_layers; l++) {
      const b = `blocks.${l}.`;
      const w1 = P[b + 'ln1.w'];
      const b1 = P[b + 'ln1.b'];
      if (w1) {
        for (const n of ['Q', 'K', 'V']) {
          const [W, bias] = foldInto(P[b + `attn.W_${n}`], P[b + `attn.b_${n}`], w1, b1, center);
          upd[b + `attn.W_${n}`] = W;
          if (bias) upd[b + `attn.b_${n}`] = bias;
        }
        remove.push(b + 'ln1.w', b + 'ln1.b');
      }
      const w2 = P[b + 'ln2.w'];
      const b2 = P[b + 'ln2.b'];
      if (w2) {
        const [Win, bin] = foldInto(P[b + 'mlp.W_in'], P[b + 'mlp.b_in'], w2, b2, center);
        upd[b + 'mlp.W_in'] = Win;
        if (bin) upd[b + 'mlp.b_in'] = bin;
        if (c.gated_mlp) {
          if (b2) throw new ConfigError('foldLn', 'a gated MLP behind a LayerNorm with bias has no gate bias to fold into');
          upd[b + 'mlp.W_gate'] = foldInto(P[b + 'mlp.W_gate'], undefined, w2, undefined, center)[0];
        }
        remove.push(b + 'ln2.w', b + 'ln2.b');
      }
    }
    const wf = P['ln_final.w'];
    if (wf) {
      const [WU, bU] = foldInto(P['unembed.W_U'], P['unembed.b_U'], wf, P['ln_final.b'], center);
      upd['unembed.W_U'] = WU;
      if (bU) upd['unembed.b_U'] = bU;
      remove.push('ln_final.w', 'ln_final.b');
    }
    Object.values(upd).forEach((t) => tf.keep(t));
  });
  replace(model, upd, remove.filter((k) => k in P));
}

export function centerWritingWeights(model: HookedTransformer): void {
  const c = model.cfg;
  if (c.normalization !== 'LN') throw new ConfigError('centerWritingWeights', 'only valid for LayerNorm models (RMSNorm does not remove the mean)');
  const P = model.params;
  const upd: P = {};
  tf.tidy(() => {
    const cen = (t: tf.Tensor) => tf.keep(tf.sub(t, tf.mean(t, -1, true)));
    upd['embed.W_E'] = cen(P['embed.W_E']);
    if (P['pos_embed.W_pos']) upd['pos_embed.W_pos'] = cen(P['pos_embed.W_pos']);
    for (let l = 0; l < c.n_layers; l++) {
      const b = `blocks.${l}.`;
      upd[b + 'attn.W_O'] = cen(P[b + 'attn.W_O']);
      if (P[b + 'attn.b_O']) upd[b + 'attn.b_O'] = cen(P[b + 'attn.b_O']);
      upd[b + 'mlp.W_out'] = cen(P[b + 'mlp.W_out']);
      if (P[b + 'mlp.b_out']) upd[b + 'mlp.b_out'] = cen(P[b + 'mlp.b_out']);
    }
  });
  replace(model, upd);
}

export function centerUnembed(model: HookedTransformer): void {
  const P = model.params;
  const upd: P = tf.tidy(() => ({
    'unembed.W_U': tf.keep(tf.sub(P['unembed.W_U'], tf.mean(P['unembed.W_U'], -1, true))),
    'unembed.b_U': tf.keep(tf.sub(P['unembed.b_U'], tf.mean(P['unembed.b_U']))),
  }));
  replace(model, upd);
}

export function foldValueBiases(model: HookedTransformer): void {
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

/** Apply the chosen steps in TransformerLens order (fold LN, centre writing weights, centre unembed, fold value biases). */
export function processWeights(model: HookedTransformer, opts: ProcessOptions): void {
  if (opts.foldLn) foldLn(model);
  if (opts.centerWritingWeights) centerWritingWeights(model);
  if (opts.centerUnembed) centerUnembed(model);
  if (opts.foldValueBiases) foldValueBiases(model);
}
