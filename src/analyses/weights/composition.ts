/**
 * Composition scores between attention heads (Elhage et al. 2021), as TransformerLens computes them:
 * `HookedTransformer.all_composition_scores` (transformer_lens/HookedTransformer.py lines 2672-2705: left = model.OV,
 * right = model.QK / model.QK.T / model.OV, zero unless the right head's layer is later) and
 * `composition_scores` (transformer_lens/utilities/matrix.py lines 16-41: ||collapse_l(L) collapse_r(R)||_F /
 * (||collapse_l(L)||_F ||collapse_r(R)||_F)); docs/methods/weights.md. Weights are read asynchronously (every backend).
 *
 * For an earlier head (srcLayer, srcHead) writing into the residual stream through its OV circuit
 * W_OV = W_V W_O and a later head (layer, head) reading it:
 *   score = ||W_left W_right||_F / (||W_left||_F ||W_right||_F), W_left = OV of the earlier head, and
 *   Q-composition: W_right = W_QK of the later head         (the earlier output feeds its queries),
 *   K-composition: W_right = W_QK^T of the later head       (feeds its keys),
 *   V-composition: W_right = W_OV of the later head         (feeds its values),
 * with W_QK = W_Q W_K^T, row-vector convention (x -> x W). All norms are computed factored: each
 * d_model x d_model circuit is reduced to a d_head x d_model (left) or d_model x d_head (right)
 * factor with the same products' norms (thin QR), so the largest matrix formed per head pair is
 * d_head x d_head. Weights are used as they are in params (fold LN first if you want it included).
 * Heads whose circuit is exactly zero get score 0 (not NaN).
 */
import * as tf from '@tensorflow/tfjs';
import { Matrix } from 'ml-matrix';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { rng } from '../../util/random.js';
import { FactoredMatrix, WeightReader, fromFlat, headCounts, leftFactor, raw, rightFactor, toFlat32, type Params } from './factored.js';
import { withWeights, type WeightsSource } from './circuits.js';

export type CompositionMode = 'Q' | 'K' | 'V';

function frob(m: Matrix): number {
  let s = 0;
  for (const row of raw(m)) for (let j = 0; j < row.length; j++) s += row[j] * row[j];
  return Math.sqrt(s);
}

/**
 * ||L R||_F / (||L||_F ||R||_F) for two factored matrices with L.rdim == R.ldim (TransformerLens
 * `composition_scores` for one pair). 0 when either factor is zero.
 */
export function compositionScore(left: FactoredMatrix, right: FactoredMatrix): number {
  if (left.rdim !== right.ldim) {
    throw new ShapeError('compositionScore(left, right)', expectedFound(`right with ${left.rdim} rows (left.rdim)`, right.ldim));
  }
  const lf = leftFactor(left);
  const rf = rightFactor(right);
  const ln = frob(lf);
  const rn = frob(rf);
  if (ln === 0 || rn === 0) return 0;
  return frob(lf.mmul(rf)) / (ln * rn);
}

/** The circuit of a later head that composition of a given mode reads through (see file header). */
export async function receivingCircuit(params: Params | WeightReader, layer: number, head: number, mode: CompositionMode): Promise<FactoredMatrix> {
  const r = params instanceof WeightReader ? params : new WeightReader(params);
  if (mode === 'Q') return r.QK(layer, head);
  if (mode === 'K') return (await r.QK(layer, head)).T;
  if (mode === 'V') return r.OV(layer, head);
  throw new ValueError('mode', expectedFound("'Q', 'K' or 'V'", mode));
}

/** Composition score of one pair: earlier head (srcLayer, srcHead) into later head (layer, head). */
export async function headCompositionScore(
  src: WeightsSource,
  mode: CompositionMode,
  srcLayer: number,
  srcHead: number,
  layer: number,
  head: number,
): Promise<number> {
  return withWeights(src, async ({ params }) => {
    const reader = new WeightReader(params);
    const [left, right] = await Promise.all([reader.OV(srcLayer, srcHead), receivingCircuit(reader, layer, head, mode)]);
    return compositionScore(left, right);
  });
}

export interface CompositionRow {
  /** Receiving (later) head. */
  layer: number;
  head: number;
  /** Sending (earlier) head. */
  srcLayer: number;
  srcHead: number;
  score: number;
  /** score - baseline, when a baseline was asked for. */
  corrected?: number;
}

export interface CompositionResult {
  mode: CompositionMode;
  nLayers: number;
  nHeads: number;
  /**
   * scores[srcLayer][srcHead][layer][head], the TransformerLens order (left = earlier head first);
   * 0 wherever layer <= srcLayer.
   */
  scores: number[][][][];
  /**
   * Heatmap-ready: matrix[layer * nHeads + head][srcLayer * nHeads + srcHead], rows = receiving
   * (later) head, columns = sending (earlier) head; 0 where the column's layer is not earlier.
   */
  matrix: number[][];
  /** "L.H" labels of the rows/columns of `matrix`. */
  labels: string[];
  /** Every pair with srcLayer < layer, sorted by score descending (ties: lower indices first). */
  rows: CompositionRow[];
  /** Mean score of random Gaussian heads of the same shapes (only when opts.baseline). */
  baseline?: number;
  params: Record<string, unknown>;
  model?: string;
}

export interface CompositionOptions {
  /** Also compute the random-weights baseline and `corrected = score - baseline` (default false). */
  baseline?: boolean;
  /** Random pairs averaged for the baseline (default 200). */
  baselineSamples?: number;
  /** Seed of the baseline (default 0). */
  seed?: number;
  /**
   * Where the pairwise d_head x d_model x d_head products run: 'ml-matrix' (float64), 'tf' (float32,
   * the active backend, fast for large models) or 'auto' (default: ml-matrix below ~3e7 multiply-adds
   * per layer pair).
   */
  engine?: 'auto' | 'ml-matrix' | 'tf';
  /** Model name for the result. */
  model?: string;
}

interface LayerFactors {
  /** Stacked factors: left [sum k, d_model] (sending side) or right [d_model, sum k] (receiving side). */
  stacked: Matrix;
  /** Offsets of each head's block in the stacked axis (length nHeads + 1). */
  offsets: number[];
  norms: number[];
}

function stackLeft(factors: Matrix[]): LayerFactors {
  const offsets = [0];
  for (const f of factors) offsets.push(offsets[offsets.length - 1] + f.rows);
  const cols = factors[0].columns;
  const stacked = new Matrix(offsets[offsets.length - 1], cols);
  factors.forEach((f, h) => {
    for (let i = 0; i < f.rows; i++) raw(stacked)[offsets[h] + i].set(raw(f)[i]);
  });
  return { stacked, offsets, norms: factors.map(frob) };
}

function stackRight(factors: Matrix[]): LayerFactors {
  const offsets = [0];
  for (const f of factors) offsets.push(offsets[offsets.length - 1] + f.columns);
  const rows = factors[0].rows;
  const stacked = new Matrix(rows, offsets[offsets.length - 1]);
  factors.forEach((f, h) => {
    for (let i = 0; i < rows; i++) raw(stacked)[i].set(raw(f)[i], offsets[h]);
  });
  return { stacked, offsets, norms: factors.map(frob) };
}

/** Dense row-major squares of the product of two stacks, as a flat array [left rows x right cols]. */
type PairProduct = (l1: number, l2: number) => Promise<ArrayLike<number>>;

function blockNormsSq(left: LayerFactors, right: LayerFactors, prod: ArrayLike<number>): number[][] {
  const n1 = left.offsets.length - 1;
  const n2 = right.offsets.length - 1;
  const cols = right.stacked.columns;
  const out = Array.from({ length: n1 }, () => new Array<number>(n2).fill(0));
  for (let h1 = 0; h1 < n1; h1++) {
    for (let i = left.offsets[h1]; i < left.offsets[h1 + 1]; i++) {
      const base = i * cols;
      for (let h2 = 0; h2 < n2; h2++) {
        let s = 0;
        for (let j = right.offsets[h2]; j < right.offsets[h2 + 1]; j++) s += prod[base + j];
        out[h1][h2] += s;
      }
    }
  }
  return out;
}

const EMPTY: LayerFactors = { stacked: new Matrix(0, 0), offsets: [0], norms: [] };

/** Sending-side factors (OV of every head) for layers 0..n-2. */
async function sendingFactors(reader: WeightReader, nLayers: number, nHeads: number): Promise<LayerFactors[]> {
  const out: LayerFactors[] = [];
  for (let l = 0; l < nLayers - 1; l++) {
    const lf: Matrix[] = [];
    for (let h = 0; h < nHeads; h++) lf.push(leftFactor(await reader.OV(l, h)));
    out.push(stackLeft(lf));
  }
  out.push(EMPTY);
  return out;
}

/** Receiving-side factors of one mode for layers 1..n-1. */
async function receivingFactors(reader: WeightReader, nLayers: number, nHeads: number, mode: CompositionMode): Promise<LayerFactors[]> {
  const out: LayerFactors[] = [EMPTY];
  for (let l = 1; l < nLayers; l++) {
    const rf: Matrix[] = [];
    for (let h = 0; h < nHeads; h++) rf.push(rightFactor(await receivingCircuit(reader, l, h, mode)));
    out.push(stackRight(rf));
  }
  return out;
}

/** scores[l1][h1][l2][h2] from the stacked factors; the products run on ml-matrix or tf. */
async function pairScores(lefts: LayerFactors[], rights: LayerFactors[], nLayers: number, nHeads: number, useTf: boolean): Promise<number[][][][]> {
  const scores = Array.from({ length: nLayers }, () =>
    Array.from({ length: nHeads }, () => Array.from({ length: nLayers }, () => new Array<number>(nHeads).fill(0))),
  );
  const tensors: tf.Tensor2D[] = [];
  try {
    let product: PairProduct;
    if (useTf) {
      const lt = lefts.map((f) => (f.stacked.rows ? tf.tensor2d(toFlat32(f.stacked), [f.stacked.rows, f.stacked.columns]) : null));
      const rt = rights.map((f) => (f.stacked.rows ? tf.tensor2d(toFlat32(f.stacked), [f.stacked.rows, f.stacked.columns]) : null));
      for (const t of [...lt, ...rt]) if (t) tensors.push(t);
      product = async (l1, l2) => {
        const t = tf.tidy(() => tf.square(tf.matMul(lt[l1]!, rt[l2]!)));
        try {
          return await t.data();
        } finally {
          t.dispose();
        }
      };
    } else {
      product = async (l1, l2) => {
        const p = lefts[l1].stacked.mmul(rights[l2].stacked);
        const cols = p.columns;
        const flat = new Float64Array(p.rows * cols);
        raw(p).forEach((row, i) => {
          for (let j = 0; j < cols; j++) flat[i * cols + j] = row[j] * row[j];
        });
        return flat;
      };
    }
    for (let l1 = 0; l1 < nLayers - 1; l1++) {
      for (let l2 = l1 + 1; l2 < nLayers; l2++) {
        const sq = blockNormsSq(lefts[l1], rights[l2], await product(l1, l2));
        for (let h1 = 0; h1 < nHeads; h1++) {
          for (let h2 = 0; h2 < nHeads; h2++) {
            const denom = lefts[l1].norms[h1] * rights[l2].norms[h2];
            scores[l1][h1][l2][h2] = denom === 0 ? 0 : Math.sqrt(Math.max(0, sq[h1][h2])) / denom;
          }
        }
      }
    }
  } finally {
    for (const t of tensors) t.dispose();
  }
  return scores;
}

function buildResult(
  mode: CompositionMode,
  scores: number[][][][],
  nLayers: number,
  nHeads: number,
  useTf: boolean,
  baseline: number | undefined,
  opts: CompositionOptions,
  modelName: string | undefined,
): CompositionResult {
  const labels: string[] = [];
  for (let l = 0; l < nLayers; l++) for (let h = 0; h < nHeads; h++) labels.push(`${l}.${h}`);
  const matrix = labels.map(() => new Array<number>(labels.length).fill(0));
  const rows: CompositionRow[] = [];
  for (let l1 = 0; l1 < nLayers; l1++) {
    for (let h1 = 0; h1 < nHeads; h1++) {
      for (let l2 = l1 + 1; l2 < nLayers; l2++) {
        for (let h2 = 0; h2 < nHeads; h2++) {
          const s = scores[l1][h1][l2][h2];
          matrix[l2 * nHeads + h2][l1 * nHeads + h1] = s;
          const row: CompositionRow = { layer: l2, head: h2, srcLayer: l1, srcHead: h1, score: s };
          if (baseline !== undefined) row.corrected = s - baseline;
          rows.push(row);
        }
      }
    }
  }
  rows.sort(
    (a, b) => b.score - a.score || a.layer - b.layer || a.head - b.head || a.srcLayer - b.srcLayer || a.srcHead - b.srcHead,
  );
  return {
    mode,
    nLayers,
    nHeads,
    scores,
    matrix,
    labels,
    rows,
    baseline,
    params: {
      mode,
      definition: mode === 'Q' ? '||OV_src QK|| / (||OV_src|| ||QK||)' : mode === 'K' ? '||OV_src QK^T|| / (||OV_src|| ||QK^T||)' : '||OV_src OV|| / (||OV_src|| ||OV||)',
      engine: useTf ? 'tf' : 'ml-matrix',
      ...(opts.baseline ? { baselineSamples: opts.baselineSamples ?? 200, seed: opts.seed ?? 0 } : {}),
    },
    model: opts.model ?? modelName,
  };
}

async function computeModes(src: WeightsSource, modes: CompositionMode[], opts: CompositionOptions): Promise<CompositionResult[]> {
  for (const mode of modes) {
    if (mode !== 'Q' && mode !== 'K' && mode !== 'V') throw new ValueError('mode', expectedFound("'Q', 'K' or 'V'", mode));
  }
  const engine = opts.engine ?? 'auto';
  if (!['auto', 'ml-matrix', 'tf'].includes(engine)) throw new ValueError('opts.engine', expectedFound("'auto', 'ml-matrix' or 'tf'", engine));
  return withWeights(src, async ({ params, nLayers, nHeads, modelName }) => {
    const { dModel, dHead } = headCounts(params, 0);
    const work = nHeads * dHead * dModel * nHeads * dHead;
    const useTf = engine === 'tf' || (engine === 'auto' && work > 3e7);
    const baseline = opts.baseline ? compositionBaseline(dModel, dHead, { samples: opts.baselineSamples, seed: opts.seed }) : undefined;
    const reader = new WeightReader(params);
    const lefts = await sendingFactors(reader, nLayers, nHeads);
    const out: CompositionResult[] = [];
    for (const mode of modes) {
      const rights = await receivingFactors(reader, nLayers, nHeads, mode);
      const scores = await pairScores(lefts, rights, nLayers, nHeads, useTf);
      out.push(buildResult(mode, scores, nLayers, nHeads, useTf, baseline, opts, modelName));
    }
    return out;
  });
}

/**
 * Composition scores of one mode between every earlier head and every later head.
 */
export async function compositionScores(src: WeightsSource, mode: CompositionMode, opts: CompositionOptions = {}): Promise<CompositionResult> {
  return (await computeModes(src, [mode], opts))[0];
}

/** Q-, K- and V-composition scores at once (the sending-side factors are computed once). */
export async function allCompositionScores(src: WeightsSource, opts: CompositionOptions = {}): Promise<Record<CompositionMode, CompositionResult>> {
  const [Q, K, V] = await computeModes(src, ['Q', 'K', 'V'], opts);
  return { Q, K, V };
}

/**
 * Baseline composition score: the mean score of `samples` pairs of random factored matrices with
 * the shapes of two heads' circuits ([d_model x d_head][d_head x d_model] each), entries i.i.d.
 * standard normal (the score is invariant to their scale). Seeded. The same for Q, K and V since
 * all three circuits have these shapes.
 */
export function compositionBaseline(dModel: number, dHead: number, opts: { samples?: number; seed?: number } = {}): number {
  const samples = opts.samples ?? 200;
  if (!(Number.isInteger(samples) && samples > 0)) throw new ValueError('opts.baselineSamples', expectedFound('a positive integer', samples));
  if (!(Number.isInteger(dModel) && dModel > 0 && Number.isInteger(dHead) && dHead > 0)) {
    throw new ValueError('compositionBaseline(dModel, dHead)', expectedFound('positive integers', [dModel, dHead]));
  }
  const r = rng(opts.seed ?? 0);
  const randn = (rows: number, cols: number) => {
    const data = new Float64Array(rows * cols);
    for (let i = 0; i < data.length; i++) data[i] = r.normal();
    return fromFlat(data, rows, cols);
  };
  let sum = 0;
  for (let s = 0; s < samples; s++) {
    const left = new FactoredMatrix(randn(dModel, dHead), randn(dHead, dModel));
    const right = new FactoredMatrix(randn(dModel, dHead), randn(dHead, dModel));
    sum += compositionScore(left, right);
  }
  return sum / samples;
}
