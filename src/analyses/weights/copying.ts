/**
 * OV copying scores (Elhage et al. 2021). A head "copies" when its token-space OV circuit
 * W_E W_V W_O W_U maps each token mostly back onto itself, i.e. the circuit has mostly positive
 * eigenvalues. The eigenvalues come from the d_head x d_head matrix W_O (W_U W_E) W_V (same nonzero
 * eigenvalues as the d_vocab x d_vocab circuit), so the vocabulary size costs one d_model x d_model
 * product, shared by all heads.
 *
 * Two measures:
 * - 'elhage' (default): Re(sum lambda) / sum |lambda|, in [-1, 1] (1 = pure copying, -1 = pure
 *   anti-copying): the score of Elhage et al. as TransformerLens computes it
 *   (TransformerLensOrg/TransformerLens demos/Main_Demo.ipynb, "Eigenvalue Copying Scores":
 *   `eig.sum(-1).real / eig.abs().sum(-1)` on the eigenvalues of `W_E @ model.OV @ W_U`).
 * - 'positive-share' (a tflens variant): sum_{Re lambda > 0} |lambda| / sum |lambda|, the share of
 *   the eigenvalue mass with positive real part, in [0, 1].
 * A head whose circuit is zero (no eigenvalue mass) scores 0 under both, not NaN (TransformerLens: 0/0).
 */
import * as tf from '@tensorflow/tfjs';
import type { Matrix } from 'ml-matrix';
import { ValueError, expectedFound } from '../../errors.js';
import { makeHeadScores, type HeadScores } from '../../results.js';
import { FactoredMatrix, eigenvaluesOf, fromFlat, getParam, headCounts, kvHead, type Eigenvalues, type Params } from './factored.js';
import { embedUnembed, withWeights, type WeightsSource } from './circuits.js';

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
 * measure 'elhage' (default, TransformerLens) or 'positive-share'; see the file header.
 */
export function copyingScore(x: FactoredMatrix | Eigenvalues, opts: { measure?: CopyingMeasure } = {}): number {
  const measure = opts.measure ?? 'elhage';
  const ev = x instanceof FactoredMatrix ? x.eigenvalues() : x;
  const p = copyingParts(ev);
  if (measure === 'positive-share') return p.positiveShare;
  if (measure === 'elhage') return p.elhageRatio;
  throw new ValueError('opts.measure', expectedFound("'positive-share' or 'elhage'", measure));
}

/**
 * The d_head x d_head matrices W_O[h] (W_U W_E) W_V[kv(h)] of every head of layers 0..nLayers-1
 * (float32 math on the backend, read asynchronously). Their eigenvalues are those of B A for
 * TransformerLens's factored W_E W_V W_O W_U, i.e. its `FactoredMatrix.eigenvalues`.
 */
async function ovTokenCores(params: Params, nLayers: number): Promise<Matrix[][]> {
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
      let data: ArrayLike<number>;
      try {
        data = await core.data();
      } finally {
        core.dispose();
      }
      out.push(Array.from({ length: nHeads }, (_, h) => fromFlat(data, dHead, dHead, h * dHead * dHead)));
    }
    return out;
  } finally {
    G.dispose();
  }
}

/** Eigenvalues of the token-space OV circuit W_E W_V W_O W_U of one head (via the d_head x d_head core). */
export async function ovTokenEigenvalues(src: WeightsSource, layer: number, head: number): Promise<Eigenvalues> {
  const cores = await withWeights(src, ({ params, nLayers }) => {
    if (!(Number.isInteger(layer) && layer >= 0 && layer < nLayers)) throw new ValueError('layer', expectedFound(`an integer in [0, ${nLayers})`, layer));
    return ovTokenCores(params, layer + 1);
  });
  const row = cores[layer];
  if (!(Number.isInteger(head) && head >= 0 && head < row.length)) throw new ValueError('head', expectedFound(`an integer in [0, ${row.length})`, head));
  return eigenvaluesOf(row[head]);
}

/** Copying score of one head of a model (or params): measure 'elhage' (default) or 'positive-share'. */
export async function headCopyingScore(src: WeightsSource, layer: number, head: number, opts: { measure?: CopyingMeasure } = {}): Promise<number> {
  return copyingScore(await ovTokenEigenvalues(src, layer, head), opts);
}

export interface CopyingScoresOptions {
  /** Which measure goes into `scores` (both are in `extra`). Default 'elhage' (TransformerLens). */
  measure?: CopyingMeasure;
  /** Model name for the result (default cfg.model_name when present). */
  model?: string;
}

/**
 * Copying score of every head -> HeadScores (method "copying"). scores = the chosen measure;
 * extra.positiveShare, extra.elhageRatio and extra.eigenvalueMass hold all three per head.
 */
export async function copyingScores(src: WeightsSource, opts: CopyingScoresOptions = {}): Promise<HeadScores> {
  const measure = opts.measure ?? 'elhage';
  if (measure !== 'positive-share' && measure !== 'elhage') {
    throw new ValueError('opts.measure', expectedFound("'positive-share' or 'elhage'", measure));
  }
  const { cores, modelName } = await withWeights(src, async ({ params, nLayers, modelName }) => ({ cores: await ovTokenCores(params, nLayers), modelName }));
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
