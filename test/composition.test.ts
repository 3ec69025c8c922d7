import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { rng } from '../src/util/random.js';
import { FactoredMatrix } from '../src/analyses/weights/factored.js';
import {
  allCompositionScores,
  compositionBaseline,
  compositionScore,
  compositionScores,
  headCompositionScore,
} from '../src/analyses/weights/composition.js';
import { ShapeError, ValueError } from '../src/errors.js';

type P = Record<string, tf.Tensor>;

/** Dense brute force: ||L R||_F / (||L||_F ||R||_F) with plain loops over number[][]. */
function bruteScore(L: number[][], R: number[][]): number {
  const n = L.length, m = R.length, k = R[0].length;
  let num = 0, ln = 0, rn = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) ln += L[i][j] ** 2;
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) rn += R[i][j] ** 2;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let t = 0; t < m; t++) s += L[i][t] * R[t][j];
      num += s * s;
    }
  }
  return Math.sqrt(num) / Math.sqrt(ln * rn);
}
const mm = (a: number[][], b: number[][]) => new Matrix(a).mmul(new Matrix(b)).to2DArray();
const T = (a: number[][]) => new Matrix(a).transpose().to2DArray();

function randomParams(nLayers: number, nHeads: number, nKv: number, dModel: number, dHead: number, seed: number): P {
  const r = rng(seed);
  const arr = (n: number) => Array.from({ length: n }, () => r.normal());
  const p: P = {};
  for (let l = 0; l < nLayers; l++) {
    p[`blocks.${l}.attn.W_Q`] = tf.tensor3d(arr(nHeads * dModel * dHead), [nHeads, dModel, dHead]);
    p[`blocks.${l}.attn.W_K`] = tf.tensor3d(arr(nKv * dModel * dHead), [nKv, dModel, dHead]);
    p[`blocks.${l}.attn.W_V`] = tf.tensor3d(arr(nKv * dModel * dHead), [nKv, dModel, dHead]);
    p[`blocks.${l}.attn.W_O`] = tf.tensor3d(arr(nHeads * dHead * dModel), [nHeads, dHead, dModel]);
  }
  return p;
}
const headOf = (p: P, name: string, i: number) => (p[name].arraySync() as number[][][])[i];
const dispose = (p: P) => Object.values(p).forEach((t) => t.dispose());

/** Unit vectors e_i of R^d as columns selecting `dims`: a d x dims.length matrix. */
function selector(d: number, dims: number[]): number[][] {
  return Array.from({ length: d }, (_, i) => dims.map((k) => (i === k ? 1 : 0)));
}

describe('composition scores', () => {
  it('hand-checked 2x2 cases: aligned = 1, orthogonal = 0, partial = 1/sqrt(2)', () => {
    const L = new FactoredMatrix([[1], [0]], [[1, 1]]); // [[1,1],[0,0]]
    const Raligned = new FactoredMatrix([[1], [1]], [[1, 0]]); // [[1,0],[1,0]] -> LR = [[2,0],[0,0]]
    const Rorth = new FactoredMatrix([[1], [-1]], [[1, 0]]); // LR = 0
    const Rhalf = new FactoredMatrix([[1], [0]], [[1, 0]]); // [[1,0],[0,0]] -> LR = [[1,0],[0,0]]: 1 / (sqrt2 * 1)
    assert.ok(Math.abs(compositionScore(L, Raligned) - 1) < 1e-12);
    assert.ok(Math.abs(compositionScore(L, Rorth)) < 1e-12);
    assert.ok(Math.abs(compositionScore(L, Rhalf) - Math.SQRT1_2) < 1e-12);
    assert.equal(compositionScore(new FactoredMatrix([[0], [0]], [[1, 1]]), Rhalf), 0);
    assert.throws(() => compositionScore(L, new FactoredMatrix([[1], [0], [0]], [[1, 0]])), ShapeError);
  });

  it('factored score equals the dense brute force on random circuits', () => {
    const r = rng(3);
    const rand = (a: number, b: number) => Array.from({ length: a }, () => Array.from({ length: b }, () => r.normal()));
    for (let t = 0; t < 5; t++) {
      const A1 = rand(7, 3), B1 = rand(3, 7), A2 = rand(7, 2), B2 = rand(2, 7);
      const got = compositionScore(new FactoredMatrix(A1, B1), new FactoredMatrix(A2, B2));
      const ref = bruteScore(mm(A1, B1), mm(A2, B2));
      assert.ok(Math.abs(got - ref) / ref < 1e-9, `${got} vs ${ref}`);
    }
  });

  // Earlier head 0.0 writes only into residual dims {4,5}. The later head 1.0 reads queries from
  // `qDims`, keys from `kDims`, values from `vDims`: the mode whose input is {4,5} must win, the
  // other two must be exactly 0.
  const d = 6, dh = 2;
  function orientationParams(qDims: number[], kDims: number[], vDims: number[]): P {
    const r = rng(9);
    const rand = (a: number, b: number) => Array.from({ length: a }, () => Array.from({ length: b }, () => r.normal()));
    const mix = rand(2, 2);
    const wv0 = rand(d, dh);
    const wo0 = mm(mix, T(selector(d, [4, 5]))); // [dh x d], rows live in span(e4, e5)
    const read = (dims: number[]) => mm(selector(d, dims), rand(2, 2)); // [d x dh], reads only dims
    return {
      'blocks.0.attn.W_Q': tf.tensor3d([rand(d, dh)]),
      'blocks.0.attn.W_K': tf.tensor3d([rand(d, dh)]),
      'blocks.0.attn.W_V': tf.tensor3d([wv0]),
      'blocks.0.attn.W_O': tf.tensor3d([wo0]),
      'blocks.1.attn.W_Q': tf.tensor3d([read(qDims)]),
      'blocks.1.attn.W_K': tf.tensor3d([read(kDims)]),
      'blocks.1.attn.W_V': tf.tensor3d([read(vDims)]),
      'blocks.1.attn.W_O': tf.tensor3d([rand(dh, d)]),
    };
  }
  const cases: Array<[string, number[], number[], number[]]> = [
    ['K', [0, 1], [4, 5], [2, 3]],
    ['Q', [4, 5], [0, 1], [2, 3]],
    ['V', [0, 1], [2, 3], [4, 5]],
  ];
  for (const [winner, q, k, v] of cases) {
    it(`orientation: a later head whose ${winner === 'Q' ? 'query' : winner === 'K' ? 'key' : 'value'} reads the earlier OV output has ${winner}-composition largest`, () => {
      const p = orientationParams(q, k, v);
      const before = tf.memory().numTensors;
      const all = allCompositionScores({ params: p });
      assert.equal(tf.memory().numTensors, before);
      const s = { Q: all.Q.scores[0][0][1][0], K: all.K.scores[0][0][1][0], V: all.V.scores[0][0][1][0] };
      for (const m of ['Q', 'K', 'V'] as const) {
        if (m === winner) assert.ok(s[m] > 0.3, `${m} = ${s[m]}`);
        else assert.ok(Math.abs(s[m]) < 1e-6, `${m} should be 0, got ${s[m]}`);
      }
      // TransformerLens definition, densely: Q: OV0 @ QK1, K: OV0 @ QK1^T, V: OV0 @ OV1
      const OV0 = mm(headOf(p, 'blocks.0.attn.W_V', 0), headOf(p, 'blocks.0.attn.W_O', 0));
      const QK1 = mm(headOf(p, 'blocks.1.attn.W_Q', 0), T(headOf(p, 'blocks.1.attn.W_K', 0)));
      const OV1 = mm(headOf(p, 'blocks.1.attn.W_V', 0), headOf(p, 'blocks.1.attn.W_O', 0));
      const ref = { Q: bruteScore(OV0, QK1), K: bruteScore(OV0, T(QK1)), V: bruteScore(OV0, OV1) };
      for (const m of ['Q', 'K', 'V'] as const) assert.ok(Math.abs(s[m] - ref[m]) < 1e-6, `${m}: ${s[m]} vs ${ref[m]}`);
      dispose(p);
    });
  }

  it('all pairs (GQA, 3 layers) equal per-pair brute force, in every layout, on both engines', () => {
    const nL = 3, nH = 4, nKv = 2, dm = 8, dhd = 3;
    const p = randomParams(nL, nH, nKv, dm, dhd, 21);
    const before = tf.memory().numTensors;
    const res = compositionScores({ params: p, cfg: { n_layers: nL } }, 'K');
    const resTf = compositionScores(p, 'K', { engine: 'tf' });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(res.params.engine, 'ml-matrix');
    assert.equal(resTf.params.engine, 'tf');
    assert.equal(res.labels.length, nL * nH);
    assert.equal(res.rows.length, nH * nH * 3); // pairs (0,1), (0,2), (1,2)
    for (let i = 1; i < res.rows.length; i++) assert.ok(res.rows[i - 1].score >= res.rows[i].score);
    for (let l1 = 0; l1 < nL; l1++) {
      for (let h1 = 0; h1 < nH; h1++) {
        const OV0 = mm(headOf(p, `blocks.${l1}.attn.W_V`, Math.floor((h1 * nKv) / nH)), headOf(p, `blocks.${l1}.attn.W_O`, h1));
        for (let l2 = 0; l2 < nL; l2++) {
          for (let h2 = 0; h2 < nH; h2++) {
            const got = res.scores[l1][h1][l2][h2];
            const cell = res.matrix[l2 * nH + h2][l1 * nH + h1];
            assert.equal(cell, got);
            if (l2 <= l1) {
              assert.equal(got, 0);
              continue;
            }
            const KQ = mm(headOf(p, `blocks.${l2}.attn.W_K`, Math.floor((h2 * nKv) / nH)), T(headOf(p, `blocks.${l2}.attn.W_Q`, h2)));
            const ref = bruteScore(OV0, KQ);
            assert.ok(Math.abs(got - ref) < 1e-6 * ref, `${l1}.${h1} -> ${l2}.${h2}: ${got} vs ${ref}`);
            assert.ok(Math.abs(resTf.scores[l1][h1][l2][h2] - ref) < 1e-4 * ref, 'tf engine');
            assert.ok(Math.abs(headCompositionScore(p, 'K', l1, h1, l2, h2) - ref) < 1e-6 * ref);
          }
        }
      }
    }
    const top = res.rows[0];
    assert.equal(res.scores[top.srcLayer][top.srcHead][top.layer][top.head], top.score);
    dispose(p);
  });

  it('baseline: seeded, reproducible, close to 1/sqrt(d_model) for random Gaussian heads', () => {
    const b1 = compositionBaseline(64, 8, { samples: 40, seed: 1 });
    const b2 = compositionBaseline(64, 8, { samples: 40, seed: 1 });
    const b3 = compositionBaseline(64, 8, { samples: 40, seed: 2 });
    assert.equal(b1, b2);
    assert.notEqual(b1, b3);
    // ||A1 B1 A2 B2||^2 ~ k^2 d^3 and ||A B||^2 ~ k d^2 for i.i.d. N(0,1) factors: score ~ 1/sqrt(d)
    assert.ok(Math.abs(b1 - 1 / 8) < 0.25 / 8, `baseline ${b1}`);
    const p = randomParams(2, 2, 2, 6, 2, 4);
    const res = compositionScores(p, 'V', { baseline: true, baselineSamples: 20, seed: 3 });
    assert.equal(res.baseline, compositionBaseline(6, 2, { samples: 20, seed: 3 }));
    for (const row of res.rows) assert.equal(row.corrected, row.score - res.baseline!);
    assert.throws(() => compositionScores(p, 'X' as 'Q'), ValueError);
    dispose(p);
  });
});

describe('weight analyses on a loaded HookedTransformer', () => {
  it('llama fixture (GQA 4/2 heads): composition and copying scores equal dense brute force from model.params', async () => {
    const { loadModel } = await import('../src/model/index.js');
    const { copyingScores } = await import('../src/analyses/weights/copying.js');
    const model = await loadModel('fixtures/reference/llama');
    const before = tf.memory().numTensors;
    const { n_layers: nL, n_heads: nH, n_kv_heads: nKv } = model.cfg;
    assert.equal(nKv, 2);
    const all = allCompositionScores(model);
    const cs = copyingScores(model);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(cs.model, model.name);
    const p = model.params;
    const WE = p['embed.W_E'].arraySync() as number[][];
    const WU = p['unembed.W_U'].arraySync() as number[][];
    for (let l = 0; l < nL; l++) {
      for (let h = 0; h < nH; h++) {
        const kv = Math.floor((h * nKv) / nH);
        const OV = mm(headOf(p, `blocks.${l}.attn.W_V`, kv), headOf(p, `blocks.${l}.attn.W_O`, h));
        // copying: eigenvalues of the dense d_vocab x d_vocab token circuit
        const dense = new Matrix(mm(mm(WE, OV), WU));
        const e = new EigenvalueDecomposition(dense);
        let mass = 0, sumRe = 0;
        e.realEigenvalues.forEach((re, i) => {
          mass += Math.hypot(re, e.imaginaryEigenvalues[i]);
          sumRe += re;
        });
        assert.ok(Math.abs(cs.extra!.elhageRatio[l][h] - sumRe / mass) < 1e-3, `copying ${l}.${h}: ${cs.extra!.elhageRatio[l][h]} vs ${sumRe / mass}`);
        if (l === 0) {
          for (let h2 = 0; h2 < nH; h2++) {
            const kv2 = Math.floor((h2 * nKv) / nH);
            const QK = mm(headOf(p, 'blocks.1.attn.W_Q', h2), T(headOf(p, 'blocks.1.attn.W_K', kv2)));
            const OV2 = mm(headOf(p, 'blocks.1.attn.W_V', kv2), headOf(p, 'blocks.1.attn.W_O', h2));
            const ref = { Q: bruteScore(OV, QK), K: bruteScore(OV, T(QK)), V: bruteScore(OV, OV2) };
            for (const m of ['Q', 'K', 'V'] as const) {
              const got = all[m].scores[0][h][1][h2];
              assert.ok(Math.abs(got - ref[m]) < 1e-5 * ref[m], `${m} 0.${h} -> 1.${h2}: ${got} vs ${ref[m]}`);
            }
          }
        }
      }
    }
    model.dispose();
  });
});
