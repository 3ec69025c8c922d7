/**
 * SAE quality metrics (MSE, explained variance, L0, dead features) and the evaluation metrics of
 * the discrete-SAE circuit method: exact ROC AUC (ties by average ranks), ROC curve points, and
 * the authors' "F1" = 2*TPR*TNR/(TPR+TNR) (named tprTnrF1; it is not precision/recall F1).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
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

/** Metrics of an SAE on data [n, d_in], computed in batches (default 1024 rows). */
export function saeMetrics(sae: SparseAutoencoder, x: tf.Tensor2D, opts: { batchSize?: number } = {}): SAEMetrics {
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
    const [sx, sx2, sr, sr2, act] = tf.tidy(() => {
      const xb = tf.slice(x, [start, 0], [size, d]);
      const { features, recon } = sae.forward(xb);
      const r = tf.sub(xb, recon);
      const on = tf.cast(tf.greater(features, 0), 'float32');
      return [tf.sum(xb, 0), tf.sum(tf.square(xb), 0), tf.sum(r, 0), tf.sum(tf.square(r), 0), tf.sum(on, 0)];
    });
    const arrs = [sx, sx2, sr, sr2, act].map((t) => {
      const a = t.dataSync();
      t.dispose();
      return a;
    });
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

/**
 * Exact ROC AUC = P(score of a random positive > score of a random negative) + 0.5 P(tie),
 * computed from average ranks (Mann-Whitney U). Needs both classes.
 */
export function rocAuc(scores: readonly number[], labels: readonly Label[]): number {
  const { s, y } = checkScoresLabels(scores, labels, 'rocAuc');
  const nPos = y.filter(Boolean).length;
  const nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) {
    throw new ValueError('rocAuc: labels', expectedFound('at least one positive and one negative', `${nPos} positive, ${nNeg} negative`));
  }
  const idx = s.map((_, i) => i).sort((a, b) => s[a] - s[b]);
  const ranks = new Array<number>(s.length);
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && s[idx[j + 1]] === s[idx[i]]) j++;
    const avg = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) ranks[idx[k]] = avg;
    i = j + 1;
  }
  let rankSum = 0;
  for (let i = 0; i < s.length; i++) if (y[i]) rankSum += ranks[i];
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface RocCurve {
  /** False-positive rates, from 0 to 1. */
  fpr: number[];
  /** True-positive rates, from 0 to 1. */
  tpr: number[];
  /** Threshold of each point (predict positive when score >= threshold); the first is +Infinity. */
  thresholds: number[];
}

/** ROC curve points at every distinct score (no point dropped). */
export function rocCurve(scores: readonly number[], labels: readonly Label[]): RocCurve {
  const { s, y } = checkScoresLabels(scores, labels, 'rocCurve');
  const nPos = y.filter(Boolean).length;
  const nNeg = y.length - nPos;
  if (nPos === 0 || nNeg === 0) {
    throw new ValueError('rocCurve: labels', expectedFound('at least one positive and one negative', `${nPos} positive, ${nNeg} negative`));
  }
  const idx = s.map((_, i) => i).sort((a, b) => s[b] - s[a]);
  const fpr = [0];
  const tpr = [0];
  const thresholds = [Infinity];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < idx.length; ) {
    const t = s[idx[i]];
    while (i < idx.length && s[idx[i]] === t) {
      if (y[idx[i]]) tp++;
      else fp++;
      i++;
    }
    fpr.push(fp / nNeg);
    tpr.push(tp / nPos);
    thresholds.push(t);
  }
  return { fpr, tpr, thresholds };
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

/** The best tprTnrF1 over the ROC curve's thresholds (the number the authors report). */
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

/** Parse a ground-truth head list ("L.H" strings or [layer, head] pairs) into a 0/1 grid. */
export function groundTruthGrid(nLayers: number, nHeads: number, heads: ReadonlyArray<string | readonly [number, number]>): number[][] {
  const grid = Array.from({ length: nLayers }, () => new Array<number>(nHeads).fill(0));
  heads.forEach((h, i) => {
    let l: number;
    let hh: number;
    if (typeof h === 'string') {
      const m = /^L?(\d+)[.H](\d+)$/.exec(h.trim());
      if (!m) throw new ValueError(`groundTruth[${i}]`, expectedFound('"L.H" (e.g. "9.6") or "L9H6"', h));
      l = Number(m[1]);
      hh = Number(m[2]);
    } else {
      [l, hh] = h;
    }
    if (!(Number.isInteger(l) && l >= 0 && l < nLayers && Number.isInteger(hh) && hh >= 0 && hh < nHeads)) {
      throw new ValueError(`groundTruth[${i}]`, expectedFound(`a head inside ${nLayers} layers x ${nHeads} heads`, h));
    }
    grid[l][hh] = 1;
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
