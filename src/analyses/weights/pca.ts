/**
 * PCA of cached activations (or any data matrix). Rows are samples: a tensor [..., d] is flattened
 * to [N, d] (e.g. a cached residual stream [batch, pos, d_model] -> N = batch * pos).
 *
 * The covariance (d x d, or the N x N Gram matrix when N < d) is formed on the TensorFlow.js
 * backend for tensors (float32) or with ml-matrix for number[][] (float64), and its symmetric
 * eigendecomposition is done with ml-matrix in float64; tensors are read asynchronously (every
 * backend). Explained variances use the sample convention (divide by N - 1), as scikit-learn's PCA
 * does. Each component's sign is fixed so that its
 * entry of largest magnitude is positive, so results are deterministic.
 */
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { fromFlat, raw, toFlat32 } from './factored.js';

export interface PCAOptions {
  /** Number of components (default min(N, d)). */
  k?: number;
  /** Subtract the per-feature mean first (default true). With center = false the "variance" is the raw second moment. */
  center?: boolean;
  /** Also return the projections of the input rows (default true). */
  project?: boolean;
}

export interface PCAResult {
  /** components[i] is the i-th principal direction, a unit vector of length d; [k x d]. */
  components: number[][];
  /** Variance along each component (eigenvalue of the sample covariance), descending. */
  explainedVariance: number[];
  /** explainedVariance / total variance (sum over all d directions). */
  explainedVarianceRatio: number[];
  /** Total variance (trace of the sample covariance). */
  totalVariance: number;
  /** Per-feature mean that was subtracted (zeros when center = false). */
  mean: number[];
  /** Rows projected onto the components, [N x k] (empty when project = false). */
  projections: number[][];
  /** Number of samples N and features d. */
  nSamples: number;
  nFeatures: number;
  center: boolean;
}

function flatten(X: tf.Tensor | number[][]): { data: ArrayLike<number>; n: number; d: number; tensor?: tf.Tensor2D } {
  if (X instanceof tf.Tensor) {
    if (X.rank < 2) throw new ShapeError('pca(X)', expectedFound('a tensor of rank >= 2 ([..., d])', `shape [${X.shape.join(', ')}]`));
    const d = X.shape[X.rank - 1];
    const n = X.size / d;
    return { data: [], n, d, tensor: X.reshape([n, d]) as tf.Tensor2D };
  }
  if (!Array.isArray(X) || X.length === 0 || !Array.isArray(X[0])) {
    throw new ShapeError('pca(X)', expectedFound('a non-empty number[][] or a tensor', Array.isArray(X) ? 'an empty or 1D array' : typeof X));
  }
  const d = X[0].length;
  const flat = new Float64Array(X.length * d);
  X.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== d) {
      throw new ShapeError(`pca(X)[${i}]`, expectedFound(`${d} numbers`, Array.isArray(row) ? row.length : typeof row));
    }
    for (let j = 0; j < d; j++) flat[i * d + j] = row[j];
  });
  return { data: flat, n: X.length, d };
}

function checkFinite(data: ArrayLike<number>, where: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) throw new ValueError(`${where} (flat index ${i})`, expectedFound('finite values', data[i]));
  }
}

/** Principal component analysis of X [..., d] (rows are samples). */
export async function pca(X: tf.Tensor | number[][], opts: PCAOptions = {}): Promise<PCAResult> {
  const center = opts.center ?? true;
  const project = opts.project ?? true;
  const { data: arrData, n, d, tensor } = flatten(X);
  if (d < 1) throw new ShapeError('pca(X)', expectedFound('at least one feature', d));
  if (n < 2) throw new ShapeError('pca(X)', expectedFound('at least 2 samples (rows)', n));
  const kMax = Math.min(n, d);
  const k = opts.k ?? kMax;
  if (!(Number.isInteger(k) && k >= 1 && k <= kMax)) throw new ValueError('opts.k', expectedFound(`an integer in [1, ${kMax}]`, k));
  const useGram = n < d;

  // Centered data Xc as an ml-matrix (number input) or a float32 tensor (tensor input), and the
  // small symmetric matrix S = Xc^T Xc (d x d) or Xc Xc^T (N x N).
  let mean: number[];
  let S: Matrix;
  let Xc: Matrix | undefined;
  let Xt: tf.Tensor2D | undefined;
  try {
    if (tensor) {
      checkFinite(await tensor.data(), 'pca(X)');
      const [m, s, xc] = tf.tidy(() => {
        const x = tensor.toFloat();
        const mu = center ? x.mean(0) : tf.zeros([d]);
        const xc = center ? x.sub(mu) : x;
        const s = useGram ? tf.matMul(xc, xc, false, true) : tf.matMul(xc, xc, true, false);
        return [mu, s, xc] as [tf.Tensor, tf.Tensor2D, tf.Tensor2D];
      });
      Xt = xc;
      const [mv, sv] = await Promise.all([m.data(), s.data()]).finally(() => tf.dispose([m, s]));
      mean = Array.from(mv);
      const sz = useGram ? n : d;
      S = fromFlat(sv, sz, sz);
    } else {
      checkFinite(arrData, 'pca(X)');
      Xc = fromFlat(arrData, n, d);
      mean = new Array<number>(d).fill(0);
      if (center) {
        for (const row of raw(Xc)) for (let j = 0; j < d; j++) mean[j] += row[j] / n;
        for (const row of raw(Xc)) for (let j = 0; j < d; j++) row[j] -= mean[j];
      }
      S = useGram ? Xc.mmulByTranspose() : Xc.transposeMultiply(Xc);
    }
    // symmetrise against round-off
    const sRows = raw(S);
    for (let i = 0; i < S.rows; i++) for (let j = 0; j < i; j++) sRows[i][j] = sRows[j][i] = (sRows[i][j] + sRows[j][i]) / 2;

    let total = 0;
    for (let i = 0; i < S.rows; i++) total += sRows[i][i];
    const evd = new EigenvalueDecomposition(S, { assumeSymmetric: true });
    const vals = evd.realEigenvalues;
    const vecs = evd.eigenvectorMatrix;
    const order = vals.map((_, i) => i).sort((a, b) => vals[b] - vals[a]).slice(0, k);
    const eig = order.map((i) => Math.max(0, vals[i]));

    // components [k x d]
    const comps = new Matrix(k, d);
    if (!useGram) {
      order.forEach((col, r) => {
        for (let j = 0; j < d; j++) comps.set(r, j, vecs.get(j, col));
      });
    } else {
      // v = Xc^T u / ||Xc^T u|| for each eigenvector u of Xc Xc^T
      const U = new Matrix(n, k);
      order.forEach((col, r) => {
        for (let i = 0; i < n; i++) U.set(i, r, vecs.get(i, col));
      });
      let XtU: Matrix;
      if (Xt) {
        const t = tf.tidy(() => tf.matMul(Xt!, tf.tensor2d(toFlat32(U), [n, k]), true, false));
        XtU = fromFlat(await t.data().finally(() => t.dispose()), d, k);
      } else {
        XtU = Xc!.transposeMultiply(U);
      }
      // Gram-Schmidt against earlier components; a direction with (numerically) zero variance is
      // not determined by the data, so it is completed with the first standard basis vector that is
      // independent of the earlier ones (any orthonormal completion is a valid PCA).
      const cRows = raw(comps);
      const norm = (v: Float64Array) => {
        let t = 0;
        for (let j = 0; j < v.length; j++) t += v[j] * v[j];
        return Math.sqrt(t);
      };
      const orthoNormalise = (v: Float64Array, upto: number): boolean => {
        const n0 = norm(v);
        for (let pass = 0; pass < 2; pass++) {
          for (let q = 0; q < upto; q++) {
            let dot = 0;
            for (let j = 0; j < d; j++) dot += v[j] * cRows[q][j];
            for (let j = 0; j < d; j++) v[j] -= dot * cRows[q][j];
          }
        }
        const n1 = norm(v);
        if (!(n1 > 1e-6 * n0) || n1 === 0) return false;
        for (let j = 0; j < d; j++) v[j] /= n1;
        return true;
      };
      for (let r = 0; r < k; r++) {
        const v = new Float64Array(d);
        let ok = false;
        if (eig[r] > 1e-10 * Math.max(eig[0], 1e-300)) {
          for (let j = 0; j < d; j++) v[j] = XtU.get(j, r);
          ok = orthoNormalise(v, r);
        }
        for (let e = 0; !ok && e < d; e++) {
          v.fill(0);
          v[e] = 1;
          ok = orthoNormalise(v, r);
        }
        cRows[r].set(v);
      }
    }
    // deterministic signs: largest-magnitude entry positive
    for (const row of raw(comps)) {
      let best = 0;
      for (let j = 1; j < d; j++) if (Math.abs(row[j]) > Math.abs(row[best])) best = j;
      if (row[best] < 0) for (let j = 0; j < d; j++) row[j] = -row[j];
    }

    let projections: number[][] = [];
    if (project) {
      if (Xt) {
        const t = tf.tidy(() => tf.matMul(Xt!, tf.tensor2d(toFlat32(comps), [k, d]), false, true));
        projections = (await t.array().finally(() => t.dispose())) as number[][];
      } else {
        projections = Xc!.mmul(comps.transpose()).to2DArray();
      }
    }
    const denom = n - 1;
    const totalVariance = total / denom;
    return {
      components: comps.to2DArray(),
      explainedVariance: eig.map((v) => v / denom),
      explainedVarianceRatio: eig.map((v) => (total > 0 ? v / total : 0)),
      totalVariance,
      mean,
      projections,
      nSamples: n,
      nFeatures: d,
      center,
    };
  } finally {
    if (tensor && tensor !== X) tensor.dispose();
    if (Xt && Xt !== tensor) Xt.dispose();
  }
}

/** Project new rows X [..., d] onto a fitted PCA (subtracting its mean): [N x k]. */
export async function pcaProject(fit: PCAResult, X: tf.Tensor | number[][]): Promise<number[][]> {
  const { data, n, d, tensor } = flatten(X);
  try {
    if (d !== fit.nFeatures) throw new ShapeError('pcaProject(X)', expectedFound(`${fit.nFeatures} features`, d));
    const flat = tensor ? await tensor.data() : data;
    checkFinite(flat, 'pcaProject(X)');
    const k = fit.components.length;
    const out: number[][] = [];
    for (let i = 0; i < n; i++) {
      const row = new Array<number>(k).fill(0);
      for (let r = 0; r < k; r++) {
        const c = fit.components[r];
        let s = 0;
        for (let j = 0; j < d; j++) s += (flat[i * d + j] - fit.mean[j]) * c[j];
        row[r] = s;
      }
      out.push(row);
    }
    return out;
  } finally {
    if (tensor && tensor !== X) tensor.dispose();
  }
}
