import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { rng } from '../src/util/random.js';
import { pca, pcaProject } from '../src/analyses/weights/pca.js';
import { ShapeError, ValueError } from '../src/errors.js';
import { loadModel } from '../src/model/index.js';
import { actName } from '../src/hooks/names.js';
import { tokenGroupBatch } from '../src/data/token-group.js';
import { runPort } from './helpers/port.js';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

function reconstruct(fit: Awaited<ReturnType<typeof pca>>): number[][] {
  return fit.projections.map((p) => fit.mean.map((m, j) => m + p.reduce((s, v, r) => s + v * fit.components[r][j], 0)));
}

/** Sample covariance eigenvalues by brute force (explicit loops), descending. */
function covEigen(X: number[][]): number[] {
  const n = X.length, d = X[0].length;
  const mu = Array.from({ length: d }, (_, j) => X.reduce((s, r) => s + r[j], 0) / n);
  const C = Array.from({ length: d }, (_, a) =>
    Array.from({ length: d }, (_, b) => X.reduce((s, r) => s + (r[a] - mu[a]) * (r[b] - mu[b]), 0) / (n - 1)),
  );
  return new EigenvalueDecomposition(new Matrix(C), { assumeSymmetric: true }).realEigenvalues.sort((a, b) => b - a);
}

describe('pca', () => {
  it('hand case: axis-aligned data gives the axes, variances 2/3 and 1/6, ratios 0.8/0.2', async () => {
    const X = [[1, 0], [-1, 0], [0, 0.5], [0, -0.5]];
    const fit = await pca(X);
    assert.deepEqual(fit.mean, [0, 0]);
    close(fit.explainedVariance[0], 2 / 3, 1e-12, 'var0');
    close(fit.explainedVariance[1], 1 / 6, 1e-12, 'var1');
    close(fit.explainedVarianceRatio[0], 0.8, 1e-12, 'ratio0');
    close(fit.explainedVarianceRatio[1], 0.2, 1e-12, 'ratio1');
    close(fit.totalVariance, 5 / 6, 1e-12, 'total');
    close(fit.components[0][0], 1, 1e-12);
    close(fit.components[0][1], 0, 1e-12);
    close(fit.components[1][1], 1, 1e-12);
    const expectProj = [[1, 0], [-1, 0], [0, 0.5], [0, -0.5]];
    fit.projections.forEach((row, i) => row.forEach((v, r) => close(v, expectProj[i][r], 1e-12)));
    // a shifted copy: same components, mean recovered
    const shifted = await pca(X.map(([a, b]) => [a + 3, b - 2]), { k: 1 });
    close(shifted.mean[0], 3, 1e-12);
    close(shifted.mean[1], -2, 1e-12);
    close(shifted.components[0][0], 1, 1e-12);
    assert.equal(shifted.components.length, 1);
  });

  it('recovers a planted direction (arrays and a rank-3 tensor of cached activations)', async () => {
    const r = rng(7);
    const d = 10, n = 500;
    const u = Array.from({ length: d }, () => r.normal());
    const un = Math.hypot(...u);
    const unit = u.map((v) => v / un);
    const X = Array.from({ length: n }, () => {
      const z = 5 * r.normal();
      return unit.map((v) => 1.5 + z * v + 0.1 * r.normal());
    });
    const fit = await pca(X, { k: 3 });
    const cos = fit.components[0].reduce((s, v, j) => s + v * unit[j], 0);
    assert.ok(Math.abs(cos) > 0.999, `|cos| = ${Math.abs(cos)}`);
    assert.ok(fit.explainedVarianceRatio[0] > 0.95, `ratio ${fit.explainedVarianceRatio[0]}`);
    const ref = covEigen(X);
    for (let i = 0; i < 3; i++) close(fit.explainedVariance[i], ref[i], 1e-9 * ref[0], `eig ${i}`);

    const before = tf.memory().numTensors;
    const t = tf.tensor3d(X.flat(), [5, 100, d]);
    const fitT = await pca(t, { k: 3 });
    t.dispose();
    assert.equal(tf.memory().numTensors, before);
    for (let i = 0; i < 3; i++) close(fitT.explainedVariance[i], ref[i], 1e-4 * ref[0], `tensor eig ${i}`);
    // same sign convention on both paths
    fitT.components[0].forEach((v, j) => close(v, fit.components[0][j], 1e-4));
    close(fitT.projections[123][0], fit.projections[123][0], 1e-3);
  });

  it('full-rank reconstruction is exact, on the covariance path and on the Gram path (N < d)', async () => {
    const r = rng(11);
    for (const [n, d] of [[30, 6], [5, 12]]) {
      const X = Array.from({ length: n }, () => Array.from({ length: d }, () => r.normal() + 2));
      const fit = await pca(X);
      assert.equal(fit.components.length, Math.min(n, d));
      const rec = reconstruct(fit);
      rec.forEach((row, i) => row.forEach((v, j) => close(v, X[i][j], 1e-9, `rec ${n}x${d}`)));
      // unit, orthogonal components (those with nonzero variance)
      for (let a = 0; a < fit.components.length; a++) {
        if (fit.explainedVariance[a] < 1e-12) continue;
        for (let b = 0; b <= a; b++) {
          if (fit.explainedVariance[b] < 1e-12) continue;
          const dot = fit.components[a].reduce((s, v, j) => s + v * fit.components[b][j], 0);
          close(dot, a === b ? 1 : 0, 1e-9, 'orthonormal');
        }
      }
      const ref = covEigen(X);
      fit.explainedVariance.forEach((v, i) => close(v, Math.max(0, ref[i]), 1e-9 * ref[0], `eig ${i}`));
      close(fit.explainedVarianceRatio.reduce((s, v) => s + v, 0), 1, 1e-9, 'ratios sum to 1');
      // projecting the training rows again gives the stored projections
      const again = await pcaProject(fit, X);
      again.forEach((row, i) => row.forEach((v, k) => close(v, fit.projections[i][k], 1e-9)));
      // the Gram path on a tensor too
      const before = tf.memory().numTensors;
      const t = tf.tensor2d(X);
      const fitT = await pca(t);
      t.dispose();
      assert.equal(tf.memory().numTensors, before);
      reconstruct(fitT).forEach((row, i) => row.forEach((v, j) => close(v, X[i][j], 1e-4, 'tensor rec')));
    }
  });

  it('rejects bad input by name', async () => {
    await assert.rejects(() => pca([[1, 2, 3]]), ShapeError);
    await assert.rejects(() => pca([[1, 2], [3, 4]], { k: 3 }), ValueError);
    await assert.rejects(() => pca([[1, 2], [3, NaN]]), ValueError);
    await assert.rejects(() => pca([[1, 2], [3]]), ShapeError);
    const before = tf.memory().numTensors;
    const t = tf.tensor1d([1, 2, 3]);
    await assert.rejects(() => pca(t), ShapeError);
    const t2 = tf.tensor2d([[1, 2], [3, Infinity]]);
    await assert.rejects(() => pca(t2), ValueError);
    t.dispose();
    t2.dispose();
    assert.equal(tf.memory().numTensors, before);
    const fit = await pca([[1, 2], [3, 5], [0, 1]]);
    await assert.rejects(() => pcaProject(fit, [[1, 2, 3]]), ShapeError);
  });
});

describe('pca against the scikit-learn port (test/ports/pca.py)', function () {
  this.timeout(60000);
  it('var-group residual stream (cached on 16 prompts): mean, variances, ratios, components and projections', async () => {
    const model = await loadModel('fixtures/models/var-group');
    const { tokens } = tokenGroupBatch(16, 77);
    const name = actName('resid_post', 1);
    const { logits, cache } = await model.runWithCache(tokens, { namesFilter: [name] });
    logits.dispose();
    const resid = cache.get(name);
    const before = tf.memory().numTensors;
    const fit = await pca(resid, { k: 5 });
    assert.equal(tf.memory().numTensors, before);
    const X = ((await resid.array()) as number[][][]).flat();
    cache.dispose();
    model.dispose();
    const ref = runPort<{ mean: number[]; components: number[][]; explained_variance: number[]; explained_variance_ratio: number[]; projections: number[][] }>('pca', { X, k: 5 });
    const scale = ref.explained_variance[0];
    fit.mean.forEach((v, j) => close(v, ref.mean[j], 1e-4, `mean ${j}`));
    fit.explainedVariance.forEach((v, i) => close(v, ref.explained_variance[i], 1e-4 * scale, `variance ${i}`));
    fit.explainedVarianceRatio.forEach((v, i) => close(v, ref.explained_variance_ratio[i], 1e-5, `ratio ${i}`));
    fit.components.forEach((c, i) => c.forEach((v, j) => close(v, ref.components[i][j], 1e-3, `component ${i}[${j}]`)));
    fit.projections.forEach((row, n) => row.forEach((v, i) => close(v, ref.projections[n][i], 1e-3 * Math.sqrt(scale), `projection ${n}.${i}`)));
  });
});
