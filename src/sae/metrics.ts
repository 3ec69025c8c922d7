/**
 * SAE quality metrics (MSE, explained variance, L0, dead features) and the evaluation of the
 * discrete-SAE circuit method as the authors run it (sae-circuits src/common_utils.py lines 97-107:
 * scikit-learn's roc_curve, its trapezoid auc, and "F1" = 2*TPR*TNR/(TPR+TNR) at each curve point, named
 * tprTnrF1 here because it is not precision/recall F1). This file holds the one ROC computation of
 * tflens; plots take its points as data.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
import { parseHead } from '../util/grid.js';
import type { SparseAutoencoder } from './models.js';

export interface SAEMetrics {
  /** Mean squared error over all elements. */
  mse: number;
  /** 1 - var(x - x_hat) / var(x), variances summed over dimensions; null when var(x) = 0. */
  explainedVariance: number | null;
  /** Mean number of active (> 0) features per example. */
  l0: number;
  /** Features never active on the data. */
  deadFeatures: number;
  /** Fraction of examples on which each feature is active. */
  featureFrequency: number[];
  /** Number of examples. */
  n: number;
}

/** Metrics of an SAE on data [n, d_in], computed in batches (default 1024 rows), each batch's sums read with one await. */
export async function saeMetrics(sae: SparseAutoencoder, x: tf.Tensor2D, opts: { batchSize?: number } = {}): Promise<SAEMetrics> {
  if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[1] !== sae.dIn) {
    throw new ShapeError('x', expectedFound(`a [n, ${sae.dIn}] tensor`, x instanceof tf.Tensor ? x.shape : typeof x));
  }
  const n = x.shape[0];
  if (n === 0) throw new ShapeError('x', expectedFound('at least one row', 0));
  const bs = opts.batchSize ?? 1024;
  const d = sae.dIn;
  const sumX = new Float64Array(d);
  const sumX2 = new Float64Array(d);
  const sumR = new Float64Array(d);
  const sumR2 = new Float64Array(d);
  const active = new Float64Array(sae.dSae);
  let l0 = 0;
  for (let start = 0; start < n; start += bs) {
    const size = Math.min(bs, n - start);
    const sums = tf.tidy(() => {
      const xb = tf.slice(x, [start, 0], [size, d]);
      const { features, recon } = sae.forward(xb);
      const r = tf.sub(xb, recon);
      const on = tf.cast(tf.greater(features, 0), 'float32');
      return tf.concat([tf.sum(xb, 0), tf.sum(tf.square(xb), 0), tf.sum(r, 0), tf.sum(tf.square(r), 0), tf.sum(on, 0)]);
    });
    const v = await sums.data();
    sums.dispose();
    const arrs = [0, 1, 2, 3].map((k) => v.subarray(k * d, (k + 1) * d));
    arrs.push(v.subarray(4 * d));
    for (let j = 0; j < d; j++) {
      sumX[j] += arrs[0][j];
      sumX2[j] += arrs[1][j];
      sumR[j] += arrs[2][j];
      sumR2[j] += arrs[3][j];
    }
    for (let j = 0; j < sae.dSae; j++) {
      active[j] += arrs[4][j];
      l0 += arrs[4][j];
    }
  }
  let sse = 0;
  let varX = 0;
  let varR = 0;
  for (let j = 0; j < d; j++) {
    sse += sumR2[j];
    varX += sumX2[j] / n - (sumX[j] / n) ** 2;
    varR += sumR2[j] / n - (sumR[j] / n) ** 2;
  }
  const mse = sse / (n * d);
  if (!Number.isFinite(mse)) throw new ValueError('x', `reconstruction error is ${mse}; the data or the SAE weights hold NaN/Inf`);
  return {
    mse,
    explainedVariance: varX > 0 ? 1 - Math.max(varR, 0) / varX : null,
    l0: l0 / n,
    deadFeatures: Array.from(active).filter((c) => c === 0).length,
    featureFrequency: Array.from(active, (c) => c / n),
    n,
  };
}

// ---------------------------------------------------------------- ROC

type Label = number | boolean;

function checkScoresLabels(scores: readonly number[], labels: readonly Label[], where: string): { s: number[]; y: boolean[] } {
  if (!Array.isArray(scores) || !Array.isArray(labels)) throw new ShapeError(where, 'scores and labels must be arrays');
  if (scores.length !== labels.length) {
    throw new ShapeError(`${where}: labels`, expectedFound(`${scores.length} labels (one per score)`, labels.length));
  }
  const y = labels.map((l, i) => {
    if (l === true || l === 1) return true;
    if (l === false || l === 0) return false;
    throw new ValueError(`${where}: labels[${i}]`, expectedFound('0, 1, true or false', l));
  });
  scores.forEach((s, i) => {
    if (typeof s !== 'number' || !Number.isFinite(s)) throw new ValueError(`${where}: scores[${i}]`, expectedFound('a finite number', s));
  });
  return { s: scores.slice(), y };
}

export interface RocCurve {
  /** False-positive rates, from 0 to 1. */
  fpr: number[];
  /** True-positive rates, from 0 to 1. */
  tpr: number[];
  /** Threshold of each point (predict positive when score >= threshold); the first is +Infinity. */
  thresholds: number[];
  /** Area under the curve (trapezoids; a tie between a positive and a negative counts one half). */
  auc: number;
}

export interface RocOptions {
  /**
   * Drop the points lying inside a straight stretch of the curve (scikit-learn's drop_intermediate,
   * default true as in its roc_curve, which the authors call). The area does not change; the best
   * tprTnrF1 is taken over the points kept, as theirs.
   */
  dropIntermediate?: boolean;
}

/**
 * The ROC curve of scores against 0/1 labels as scikit-learn's roc_curve builds it: one point per
 * distinct score (highest first), collinear middle points dropped unless asked not to, and (0, 0) in
 * front; `auc` is its trapezoid area (sklearn.metrics.auc).
 */
export function rocCurve(scores: readonly number[], labels: readonly Label[], opts: RocOptions = {}): RocCurve {
  const { s, y } = checkScoresLabels(scores, labels, 'rocCurve');
  const nPos = y.filter(Boolean).length;
  const nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) {
    throw new ValueError('rocCurve: labels', expectedFound('at least one positive and one negative', `${nPos} positive, ${nNeg} negative`));
  }
  const idx = s.map((_, i) => i).sort((a, b) => s[b] - s[a]);
  let tps: number[] = [];
  let fps: number[] = [];
  let thr: number[] = [];
  for (let i = 0, tp = 0, fp = 0; i < idx.length; ) {
    const t = s[idx[i]];
    for (; i < idx.length && s[idx[i]] === t; i++) y[idx[i]] ? tp++ : fp++;
    tps.push(tp);
    fps.push(fp);
    thr.push(t);
  }
  if ((opts.dropIntermediate ?? true) && tps.length > 2) {
    const keep = tps.map((_, i) => i === 0 || i === tps.length - 1 || fps[i + 1] - 2 * fps[i] + fps[i - 1] !== 0 || tps[i + 1] - 2 * tps[i] + tps[i - 1] !== 0);
    [tps, fps, thr] = [tps, fps, thr].map((a) => a.filter((_, i) => keep[i]));
  }
  const fpr = [0, ...fps.map((v) => v / nNeg)];
  const tpr = [0, ...tps.map((v) => v / nPos)];
  return { fpr, tpr, thresholds: [Infinity, ...thr], auc: trapezoidAuc(fpr, tpr) };
}

/** ROC AUC (the trapezoid area of rocCurve): P(positive outscores negative) + half P(tie). Needs both classes. */
export function rocAuc(scores: readonly number[], labels: readonly Label[]): number {
  return rocCurve(scores, labels).auc;
}

/** Area under a curve by the trapezoid rule (x ascending). */
export function trapezoidAuc(x: readonly number[], y: readonly number[]): number {
  if (x.length !== y.length) throw new ShapeError('trapezoidAuc: y', expectedFound(`${x.length} points`, y.length));
  let a = 0;
  for (let i = 1; i < x.length; i++) a += ((x[i] - x[i - 1]) * (y[i] + y[i - 1])) / 2;
  return a;
}

export interface TprTnr {
  tpr: number;
  tnr: number;
  /** 2*TPR*TNR/(TPR+TNR) (0 when both are 0): the authors' "F1", not precision/recall F1. */
  f1: number;
  threshold: number;
}

/** TPR, TNR and the authors' F1 = 2*TPR*TNR/(TPR+TNR) when predicting positive for score >= threshold. */
export function tprTnrF1(scores: readonly number[], labels: readonly Label[], threshold: number): TprTnr {
  const { s, y } = checkScoresLabels(scores, labels, 'tprTnrF1');
  if (typeof threshold !== 'number' || Number.isNaN(threshold)) throw new ValueError('tprTnrF1: threshold', expectedFound('a number', threshold));
  const nPos = y.filter(Boolean).length;
  const nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) {
    throw new ValueError('tprTnrF1: labels', expectedFound('at least one positive and one negative', `${nPos} positive, ${nNeg} negative`));
  }
  let tp = 0;
  let tn = 0;
  for (let i = 0; i < s.length; i++) {
    const pred = s[i] >= threshold;
    if (pred && y[i]) tp++;
    if (!pred && !y[i]) tn++;
  }
  const tpr = tp / nPos;
  const tnr = tn / nNeg;
  return { tpr, tnr, f1: tpr + tnr > 0 ? (2 * tpr * tnr) / (tpr + tnr) : 0, threshold };
}

/**
 * The best tprTnrF1 over the points of rocCurve (collinear points dropped, as scikit-learn's default),
 * the first one on ties: the number and threshold the authors report (sae-circuits src/main.py lines
 * 164-165). Where TPR + TNR = 0 the F1 is 0 here (numpy gives NaN there).
 */
export function bestTprTnrF1(scores: readonly number[], labels: readonly Label[]): TprTnr {
  const curve = rocCurve(scores, labels);
  let best: TprTnr | null = null;
  for (let i = 0; i < curve.fpr.length; i++) {
    const tpr = curve.tpr[i];
    const tnr = 1 - curve.fpr[i];
    const f1 = tpr + tnr > 0 ? (2 * tpr * tnr) / (tpr + tnr) : 0;
    if (!best || f1 > best.f1) best = { tpr, tnr, f1, threshold: curve.thresholds[i] };
  }
  return best!;
}

/** Parse a ground-truth head list ("L.H", "L9H6" or [layer, head]) into a 0/1 grid. */
export function groundTruthGrid(nLayers: number, nHeads: number, heads: ReadonlyArray<string | readonly [number, number]>): number[][] {
  const grid = Array.from({ length: nLayers }, () => new Array<number>(nHeads).fill(0));
  heads.forEach((ref, i) => {
    const [l, h] = parseHead(ref, { n_layers: nLayers, n_heads: nHeads }, `groundTruth[${i}]`);
    grid[l][h] = 1;
  });
  return grid;
}

/**
 * ROC AUC of a HeadScores grid against a ground-truth head list. With `included` (a 0/1 grid,
 * e.g. HeadScores.extra.included of a run on a subset of heads) only those heads count.
 */
export function headScoresAuc(
  hs: HeadScores,
  groundTruth: ReadonlyArray<string | readonly [number, number]>,
  opts: { included?: number[][] } = {},
): number {
  const gt = groundTruthGrid(hs.nLayers, hs.nHeads, groundTruth);
  const inc = opts.included ?? hs.extra?.included;
  const s: number[] = [];
  const y: number[] = [];
  for (let l = 0; l < hs.nLayers; l++) {
    for (let h = 0; h < hs.nHeads; h++) {
      if (inc && !inc[l][h]) continue;
      s.push(hs.scores[l][h]);
      y.push(gt[l][h]);
    }
  }
  return rocAuc(s, y);
}
