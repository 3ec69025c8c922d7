/**
 * OV copying scores (Elhage et al. 2021). A head "copies" when its token-space OV circuit
 * W_E W_V W_O W_U maps each token mostly back onto itself, i.e. the circuit has mostly positive
 * eigenvalues. The eigenvalues come from the d_head x d_head matrix W_O (W_U W_E) W_V (same nonzero
 * eigenvalues as the d_vocab x d_vocab circuit), so the vocabulary size costs one d_model x d_model
 * product, shared by all heads.
 *
 * Two measures, both in [-1, 1] / [0, 1]:
 * - 'positive-share' (default): sum_{Re lambda > 0} |lambda| / sum |lambda|, the share of the
 *   eigenvalue mass with positive real part (in [0, 1]).
 * - 'elhage': Re(sum lambda) / sum |lambda|, the ratio used by Elhage et al. and the
 *   TransformerLens demos (in [-1, 1]; 1 = pure copying, -1 = pure anti-copying).
 * A head whose circuit is zero (no eigenvalue mass) scores 0 under both, not NaN.
 */
import * as tf from '@tensorflow/tfjs';
import { Matrix } from 'ml-matrix';
import { ValueError, expectedFound } from '../../errors.js';
import { HeadScores, makeHeadScores } from '../../results.js';
import { Eigenvalues, FactoredMatrix, eigenvaluesOf, fromFlat, getParam, headCounts, kvHead, Params } from './factored.js';
import { WeightsSource, embedUnembed, resolveWeights } from './circuits.js';

export type CopyingMeasure = 'positive-share' | 'elhage';

export interface CopyingParts {
  /** sum_{Re>0} |lambda| / sum |lambda|. */
  positiveShare: number;
  /** Re(sum lambda) / sum |lambda|. */
  elhageRatio: number;
  /** sum |lambda| (0 for a head that writes nothing token-wise). */
  mass: number;
}

/** Both copying measures from a list of eigenvalues. */
export function copyingParts(ev: Eigenvalues): CopyingParts {
  let mass = 0;
  let pos = 0;
  let sumRe = 0;
  for (let i = 0; i < ev.re.length; i++) {
    const m = Math.hypot(ev.re[i], ev.im[i]);
    if (!Number.isFinite(m)) throw new ValueError(`eigenvalue ${i}`, expectedFound('a finite number', m));
    mass += m;
    sumRe += ev.re[i];
    if (ev.re[i] > 0) pos += m;
  }
  if (mass === 0) return { positiveShare: 0, elhageRatio: 0, mass: 0 };
  return { positiveShare: pos / mass, elhageRatio: sumRe / mass, mass };
}

/**
 * Copying score of a square circuit (a FactoredMatrix such as ovCircuit(...), or its eigenvalues).
 * measure 'positive-share' (default) or 'elhage'; see the file header.
 */
export function copyingScore(x: FactoredMatrix | Eigenvalues, opts: { measure?: CopyingMeasure } = {}): number {
  const measure = opts.measure ?? 'positive-share';
  const ev = x instanceof FactoredMatrix ? x.eigenvalues() : x;
  const p = copyingParts(ev);
  if (measure === 'positive-share') return p.positiveShare;
  if (measure === 'elhage') return p.elhageRatio;
  throw new ValueError('opts.measure', expectedFound("'positive-share' or 'elhage'", measure));
}

/** The d_head x d_head matrices W_O[h] (W_U W_E) W_V[kv(h)] for every head of every layer (float32 math on tf). */
function ovTokenCores(params: Params, nLayers: number): Matrix[][] {
  const { WE, WU } = embedUnembed(params);
  const G = tf.tidy(() => tf.matMul(WU, WE)); // [d_model, d_model]
  try {
    const out: Matrix[][] = [];
    for (let l = 0; l < nLayers; l++) {
      const { nHeads, nKvHeads, dHead } = headCounts(params, l);
      const WV = getParam(params, `blocks.${l}.attn.W_V`, 3);
      const WO = getParam(params, `blocks.${l}.attn.W_O`, 3);
      const kvIdx = Array.from({ length: nHeads }, (_, h) => kvHead(h, nHeads, nKvHeads));
      const core = tf.tidy(() => {
        const wv = tf.gather(WV, tf.tensor1d(kvIdx, 'int32')) as tf.Tensor3D; // [H, d_model, d_head]
        const dModel = G.shape[0];
        const og = tf.matMul(WO.reshape([nHeads * dHead, dModel]) as tf.Tensor2D, G).reshape([nHeads, dHead, dModel]) as tf.Tensor3D;
        return tf.matMul(og, wv); // [H, d_head, d_head]
      });
      const data = core.dataSync();
      core.dispose();
      out.push(Array.from({ length: nHeads }, (_, h) => fromFlat(data, dHead, dHead, h * dHead * dHead)));
    }
    return out;
  } finally {
    G.dispose();
  }
}

/** Eigenvalues of the token-space OV circuit W_E W_V W_O W_U of one head (via the d_head x d_head core). */
export function ovTokenEigenvalues(src: WeightsSource, layer: number, head: number): Eigenvalues {
  const { params, nLayers } = resolveWeights(src);
  if (!(Number.isInteger(layer) && layer >= 0 && layer < nLayers)) throw new ValueError('layer', expectedFound(`an integer in [0, ${nLayers})`, layer));
  const cores = ovTokenCores(params, layer + 1);
  const row = cores[layer];
  if (!(Number.isInteger(head) && head >= 0 && head < row.length)) throw new ValueError('head', expectedFound(`an integer in [0, ${row.length})`, head));
  return eigenvaluesOf(row[head]);
}

/** Copying score of one head of a model (or params): measure 'positive-share' (default) or 'elhage'. */
export function headCopyingScore(src: WeightsSource, layer: number, head: number, opts: { measure?: CopyingMeasure } = {}): number {
  return copyingScore(ovTokenEigenvalues(src, layer, head), opts);
}

export interface CopyingScoresOptions {
  /** Which measure goes into `scores` (both are in `extra`). Default 'positive-share'. */
  measure?: CopyingMeasure;
  /** Model name for the result (default cfg.model_name when present). */
  model?: string;
}

/**
 * Copying score of every head -> HeadScores (method "copying"). scores = the chosen measure;
 * extra.positiveShare, extra.elhageRatio and extra.eigenvalueMass hold all three per head.
 */
export function copyingScores(src: WeightsSource, opts: CopyingScoresOptions = {}): HeadScores {
  const measure = opts.measure ?? 'positive-share';
  if (measure !== 'positive-share' && measure !== 'elhage') {
    throw new ValueError('opts.measure', expectedFound("'positive-share' or 'elhage'", measure));
  }
  const { params, nLayers, modelName } = resolveWeights(src);
  const cores = ovTokenCores(params, nLayers);
  const positiveShare: number[][] = [];
  const elhageRatio: number[][] = [];
  const eigenvalueMass: number[][] = [];
  for (const row of cores) {
    const parts = row.map((m) => copyingParts(eigenvaluesOf(m)));
    positiveShare.push(parts.map((p) => p.positiveShare));
    elhageRatio.push(parts.map((p) => p.elhageRatio));
    eigenvalueMass.push(parts.map((p) => p.mass));
  }
  const scores = (measure === 'positive-share' ? positiveShare : elhageRatio).map((r) => r.slice());
  return makeHeadScores(
    'copying',
    scores,
    { measure, circuit: 'W_E W_V W_O W_U (no layer norm, no positions)' },
    { model: opts.model ?? modelName, extra: { positiveShare, elhageRatio, eigenvalueMass } },
  );
}
