import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix, QrDecomposition, SingularValueDecomposition } from 'ml-matrix';
import { rng } from '../src/util/random.js';
import { FactoredMatrix, OV, QK, leftFactor, qrR, readMatrix, rightFactor, thinQR } from '../src/analyses/weights/factored.js';
import { ShapeError, ValueError } from '../src/errors.js';
import { ovCircuit, ovFullCircuit, qkCircuit, qkFullCircuit } from '../src/analyses/weights/circuits.js';
import { copyingScore, copyingScores, headCopyingScore, ovTokenEigenvalues } from '../src/analyses/weights/copying.js';

function randMat(rows: number, cols: number, seed: number): Matrix {
  const r = rng(seed);
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, r.normal());
  return m;
}

function relClose(a: number, b: number, tol = 1e-6, what = ''): void {
  const d = Math.abs(a - b) / Math.max(1e-12, Math.abs(b));
  assert.ok(d < tol, `${what}: ${a} vs ${b} (rel ${d})`);
}

function maxAbsDiff(a: Matrix, b: Matrix): number {
  assert.equal(a.rows, b.rows);
  assert.equal(a.columns, b.columns);
  let m = 0;
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.columns; j++) m = Math.max(m, Math.abs(a.get(i, j) - b.get(i, j)));
  return m;
}

function denseFrob(m: Matrix): number {
  let s = 0;
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < m.columns; j++) s += m.get(i, j) ** 2;
  return Math.sqrt(s);
}

describe('FactoredMatrix', () => {
  const cases: Array<[number, number, number, number]> = [
    [9, 3, 7, 1], // thin inner dim (d_head-like)
    [5, 8, 6, 2], // inner dim larger than both sides: compressed first
    [12, 4, 4, 3],
    [3, 5, 10, 4],
  ];
  for (const [m, r, n, seed] of cases) {
    it(`SVD and Frobenius norm of a ${m}x${r} @ ${r}x${n} product equal the dense computation`, () => {
      const A = randMat(m, r, seed);
      const B = randMat(r, n, seed + 100);
      const fm = new FactoredMatrix(A, B);
      const dense = A.mmul(B);
      const ref = new SingularValueDecomposition(dense, { autoTranspose: true }).diagonal;
      const { U, S, V } = fm.svd();
      const k = Math.min(m, r, n);
      assert.equal(S.length, k);
      for (let i = 0; i < k; i++) relClose(S[i], ref[i], 1e-6, `sigma_${i}`);
      for (let i = k; i < ref.length; i++) assert.ok(ref[i] < 1e-9 * ref[0], 'dense has only k nonzero singular values');
      // reconstruction U diag(S) V^T == AB, and orthonormal columns
      const rec = fm.collapseR().mmul(V.transpose());
      assert.ok(maxAbsDiff(rec, dense) < 1e-9 * denseFrob(dense));
      assert.ok(maxAbsDiff(U.transpose().mmul(U), Matrix.eye(k)) < 1e-10);
      assert.ok(maxAbsDiff(V.transpose().mmul(V), Matrix.eye(k)) < 1e-10);
      relClose(fm.norm(), denseFrob(dense), 1e-6, 'norm');
      // collapsed forms keep the norm
      relClose(denseFrob(fm.collapseL()), denseFrob(dense), 1e-9, 'collapseL');
      relClose(denseFrob(fm.collapseR()), denseFrob(dense), 1e-9, 'collapseR');
    });
  }

  it('eigenvalues of AB computed through BA equal the dense eigenvalues (real and complex)', () => {
    // A [6 x 3], B [3 x 6]: AB has 3 nonzero eigenvalues + 3 zeros. Make BA have a complex pair.
    const A = randMat(6, 3, 7);
    // choose B so that BA = C (a prescribed matrix with a rotation block): B = C A^+ (A^+ = pseudo-inverse)
    const C = new Matrix([
      [0.5, -2, 0],
      [2, 0.5, 0],
      [0, 0, -1.5],
    ]);
    const Apinv = new SingularValueDecomposition(A).inverse();
    const B = C.mmul(Apinv);
    const fm = new FactoredMatrix(A, B);
    const ev = fm.eigenvalues();
    const dense = new EigenvalueDecomposition(A.mmul(B));
    const denseList = dense.realEigenvalues
      .map((re, i) => ({ re, im: dense.imaginaryEigenvalues[i] }))
      .filter((z) => Math.hypot(z.re, z.im) > 1e-8)
      .sort((a, b) => a.re - b.re || a.im - b.im);
    const ours = ev.re.map((re, i) => ({ re, im: ev.im[i] })).sort((a, b) => a.re - b.re || a.im - b.im);
    assert.equal(denseList.length, 3);
    assert.equal(ours.length, 3);
    for (let i = 0; i < 3; i++) {
      assert.ok(Math.abs(ours[i].re - denseList[i].re) < 1e-8, `re ${ours[i].re} vs ${denseList[i].re}`);
      assert.ok(Math.abs(ours[i].im - denseList[i].im) < 1e-8, `im ${ours[i].im} vs ${denseList[i].im}`);
    }
    // hand values: 0.5 +- 2i and -1.5, sorted by modulus
    relClose(Math.hypot(ev.re[0], ev.im[0]), Math.hypot(0.5, 2), 1e-9, '|lambda_0|');
    relClose(ev.re[2], -1.5, 1e-9, 'lambda_2');
  });

  it('T, matmul and rmatmul agree with dense products', () => {
    const A = randMat(7, 2, 11);
    const B = randMat(2, 5, 12);
    const fm = new FactoredMatrix(A, B);
    const dense = A.mmul(B);
    assert.ok(maxAbsDiff(fm.T.AB, dense.transpose()) < 1e-12);
    const M = randMat(5, 4, 13);
    const p = fm.matmul(M);
    assert.deepEqual(p.shape, [7, 4]);
    assert.equal(p.mdim, 2);
    assert.ok(maxAbsDiff(p.AB, dense.mmul(M)) < 1e-10);
    const L = randMat(3, 7, 14);
    const q = fm.rmatmul(L);
    assert.deepEqual(q.shape, [3, 5]);
    assert.ok(maxAbsDiff(q.AB, L.mmul(dense)) < 1e-10);
    const other = new FactoredMatrix(randMat(5, 3, 15), randMat(3, 6, 16));
    const r = fm.matmul(other);
    assert.ok(maxAbsDiff(r.AB, dense.mmul(other.AB)) < 1e-10);
    assert.ok(r.mdim <= 3);
    // norm-preserving QR factors
    const X = randMat(5, 3, 17);
    relClose(denseFrob(leftFactor(fm).mmul(X)), denseFrob(dense.mmul(X)), 1e-9, 'leftFactor');
    const Y = randMat(4, 7, 18);
    relClose(denseFrob(Y.mmul(rightFactor(fm))), denseFrob(Y.mmul(dense)), 1e-9, 'rightFactor');
    const c = fm.corner(3);
    assert.equal(c.length, 3);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) assert.ok(Math.abs(c[i][j] - dense.get(i, j)) < 1e-12);
    assert.deepEqual(new FactoredMatrix([[1], [2]], [[3, 4, 5]]).corner(5), [[3, 4, 5], [6, 8, 10]]);
    assert.throws(() => fm.matmul(randMat(4, 4, 1)), ShapeError);
    assert.throws(() => fm.BA, ShapeError);
  });

  it('accepts number[][], {data, shape} and tensors read with readMatrix, and rejects bad input by name', async () => {
    const before = tf.memory().numTensors;
    const a = tf.tidy(() => tf.mul(tf.tensor2d([[1, 2], [3, 4], [5, 6]]), 1)); // computed: read asynchronously
    const fm = new FactoredMatrix(await readMatrix(a), { data: new Float32Array([1, 0, 2, 0, 1, 3]), shape: [2, 3] });
    assert.throws(() => new FactoredMatrix(a as never, [[1, 2, 3]]), ValueError);
    a.dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(fm.toArray(), [
      [1, 2, 8],
      [3, 4, 18],
      [5, 6, 28],
    ]);
    assert.throws(() => new FactoredMatrix([[1, 2]], [[1, 2]]), ShapeError);
    assert.throws(() => new FactoredMatrix([[1, NaN]], [[1], [2]]), ValueError);
    assert.throws(() => new FactoredMatrix({ data: [1, 2, 3], shape: [2, 2] }, [[1], [2]]), ShapeError);
    assert.throws(() => new FactoredMatrix([[1, 2], [3]], [[1], [2]]), ShapeError);
  });

  it('QK and OV read the canonical per-head layout, with GQA head mapping', async () => {
    const nHeads = 4, nKv = 2, dModel = 5, dHead = 3;
    const r = rng(5);
    const arr = (n: number) => Array.from({ length: n }, () => r.normal());
    const host = {
      W_Q: Array.from({ length: nHeads }, () => Array.from({ length: dModel }, () => arr(dHead))),
      W_K: Array.from({ length: nKv }, () => Array.from({ length: dModel }, () => arr(dHead))),
      W_V: Array.from({ length: nKv }, () => Array.from({ length: dModel }, () => arr(dHead))),
      W_O: Array.from({ length: nHeads }, () => Array.from({ length: dHead }, () => arr(dModel))),
    };
    const params = Object.fromEntries(Object.entries(host).map(([k, v]) => [`blocks.0.attn.${k}`, tf.tensor3d(v)]));
    const before = tf.memory().numTensors;
    for (let h = 0; h < nHeads; h++) {
      const kv = Math.floor((h * nKv) / nHeads);
      const qk = await QK(params, 0, h);
      const refQK = new Matrix(host.W_Q[h]).mmul(new Matrix(host.W_K[kv]).transpose());
      assert.ok(maxAbsDiff(qk.AB, refQK) < 1e-6);
      const ov = await OV(params, 0, h);
      const refOV = new Matrix(host.W_V[kv]).mmul(new Matrix(host.W_O[h]));
      assert.ok(maxAbsDiff(ov.AB, refOV) < 1e-6);
    }
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(() => QK(params, 0, 4), ValueError);
    await assert.rejects(() => QK(params, 1, 0), ValueError);
    Object.values(params).forEach((t) => t.dispose());
  });
});

describe('token-space circuits and OV copying scores', () => {
  /** One-layer params with the given per-head W_V [d_model x d_head] and W_O [d_head x d_model]. */
  function oneLayer(WE: number[][], WU: number[][], heads: Array<{ WV: number[][]; WO: number[][] }>, seed = 1) {
    const r = rng(seed);
    const dModel = WE[0].length;
    const dHead = heads[0].WV[0].length;
    const rand = () => Array.from({ length: dModel }, () => Array.from({ length: dHead }, () => r.normal()));
    return {
      'embed.W_E': tf.tensor2d(WE),
      'unembed.W_U': tf.tensor2d(WU),
      'blocks.0.attn.W_Q': tf.tensor3d(heads.map(() => rand())),
      'blocks.0.attn.W_K': tf.tensor3d(heads.map(() => rand())),
      'blocks.0.attn.W_V': tf.tensor3d(heads.map((h) => h.WV)),
      'blocks.0.attn.W_O': tf.tensor3d(heads.map((h) => h.WO)),
    } as Record<string, tf.Tensor>;
  }
  const disposeAll = (p: Record<string, tf.Tensor>) => Object.values(p).forEach((t) => t.dispose());

  it('a model keeping some weights in half precision (halfParams, as on WebGPU): the analyses decode them on first read and free the copies', async () => {
    const dVocab = 10, dModel = 6, dHead = 3;
    const WE = randMat(dVocab, dModel, 41);
    const heads = [0, 1].map((h) => ({ WV: randMat(dModel, dHead, 42 + h).to2DArray(), WO: randMat(dHead, dModel, 44 + h).to2DArray() }));
    const full = oneLayer(WE.to2DArray(), randMat(dModel, dVocab, 46).to2DArray(), heads);
    const packed = new Set(['embed.W_E', 'blocks.0.attn.W_V', 'blocks.0.attn.W_O']);
    const decoded: string[] = [];
    // stands in for HookedTransformer: the packed weights are absent from params, weight(name) decodes a new float32 tensor
    const model = {
      cfg: { n_layers: 1, model_name: 'half' },
      params: Object.fromEntries(Object.entries(full).filter(([k]) => !packed.has(k))),
      halfParams: Object.fromEntries([...packed].map((k) => [k, { shape: full[k].shape }])),
      weight: (name: string) => (decoded.push(name), full[name].clone()),
    };
    const before = tf.memory().numTensors;
    const viaHalf = await copyingScores(model);
    const ov = await ovCircuit(model, 0, 1);
    assert.equal(tf.memory().numTensors, before, 'the decoded copies are freed');
    assert.deepEqual([...new Set(decoded)].sort(), [...packed].sort());
    const direct = await copyingScores(full);
    const ovDirect = await ovCircuit(full, 0, 1);
    assert.deepEqual(viaHalf.scores, direct.scores);
    assert.deepEqual(ov.AB.to2DArray(), ovDirect.AB.to2DArray());
    disposeAll(full);
  });

  it('a built copying head scores > 0.9, a built anti-copying head < 0.1, a random head in between', async () => {
    const dVocab = 12, dModel = 8, dHead = 4;
    const WE = randMat(dVocab, dModel, 31);
    // P: d_model x d_head with orthonormal columns; W_V W_O = c P P^T, W_U = W_E^T  =>  circuit = c W_E P P^T W_E^T
    const P = new QrLike(randMat(dModel, dHead, 32)).Q;
    const copy = { WV: P.to2DArray(), WO: P.transpose().mul(2).to2DArray() };
    const anti = { WV: P.to2DArray(), WO: P.transpose().mul(-0.5).to2DArray() };
    const rand = { WV: randMat(dModel, dHead, 33).to2DArray(), WO: randMat(dHead, dModel, 34).to2DArray() };
    const params = oneLayer(WE.to2DArray(), WE.transpose().to2DArray(), [copy, anti, rand]);
    const before = tf.memory().numTensors;
    const hs = await copyingScores({ params, cfg: { n_layers: 1, model_name: 'built' } }, { measure: 'positive-share' });
    const hsE = await copyingScores(params);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(hs.method, 'copying');
    assert.equal(hs.model, 'built');
    assert.deepEqual([hs.nLayers, hs.nHeads], [1, 3]);
    assert.ok(hs.scores[0][0] > 0.9, `copier ${hs.scores[0][0]}`);
    assert.ok(hs.scores[0][1] < 0.1, `anti-copier ${hs.scores[0][1]}`);
    assert.ok(hsE.scores[0][0] > 0.9 && hsE.scores[0][1] < -0.9, 'Elhage ratio is +1 / -1');
    assert.ok(hs.scores[0][2] > 0.05 && hs.scores[0][2] < 0.95, `random head ${hs.scores[0][2]}`);
    assert.deepEqual(hsE.scores, hs.extra!.elhageRatio);
    // independent check: dense 12x12 circuit W_E W_V W_O W_U and its full eigendecomposition
    for (let h = 0; h < 3; h++) {
      const dense = await ovFullCircuit(params, 0, h);
      const ref = WE.mmul(new Matrix([copy, anti, rand][h].WV)).mmul(new Matrix([copy, anti, rand][h].WO)).mmul(WE.transpose());
      assert.ok(maxAbsDiff(dense, ref) < 1e-4 * denseFrob(ref));
      const e = new EigenvalueDecomposition(ref);
      let mass = 0, pos = 0, sumRe = 0;
      e.realEigenvalues.forEach((re, i) => {
        const m = Math.hypot(re, e.imaginaryEigenvalues[i]);
        mass += m;
        sumRe += re;
        if (re > 1e-9 * denseFrob(ref)) pos += m;
      });
      assert.ok(Math.abs(hs.scores[0][h] - pos / mass) < 1e-4, `head ${h}: ${hs.scores[0][h]} vs dense ${pos / mass}`);
      assert.ok(Math.abs(hsE.scores[0][h] - sumRe / mass) < 1e-4);
      assert.ok(Math.abs(hs.extra!.eigenvalueMass[0][h] - mass) < 1e-4 * mass);
      // the factored token circuit gives the same numbers
      assert.ok(Math.abs(copyingScore(await ovCircuit(params, 0, h), { measure: 'positive-share' }) - pos / mass) < 1e-4);
      assert.ok(Math.abs(copyingScore(await ovCircuit(params, 0, h)) - sumRe / mass) < 1e-4);
    }
    disposeAll(params);
  });

  it('hand case: circuit diag(3, -1, 0, 0) gives positive share 3/4 and Elhage ratio 1/2', async () => {
    // W_E = I, W_U = I (d_vocab = d_model = 4), W_V W_O = diag(3, -1, 0, 0) with d_head = 2
    const I = Matrix.eye(4).to2DArray();
    const WV = [[3, 0], [0, -1], [0, 0], [0, 0]];
    const WO = [[1, 0, 0, 0], [0, 1, 0, 0]];
    const params = oneLayer(I, I, [{ WV, WO }, { WV: WV.map(() => [0, 0]), WO }]);
    const hs = await copyingScores(params, { measure: 'positive-share' });
    assert.ok(Math.abs(hs.scores[0][0] - 0.75) < 1e-6);
    assert.ok(Math.abs(hs.extra!.elhageRatio[0][0] - 0.5) < 1e-6);
    assert.ok(Math.abs((await copyingScores(params)).scores[0][0] - 0.5) < 1e-6, 'default: the TransformerLens ratio');
    assert.equal(hs.scores[0][1], 0, 'a zero head scores 0, not NaN');
    assert.equal(hs.extra!.eigenvalueMass[0][1], 0);
    assert.ok(Math.abs((await headCopyingScore(params, 0, 0, { measure: 'positive-share' })) - 0.75) < 1e-6);
    assert.ok(Math.abs((await headCopyingScore({ params }, 0, 0)) - 0.5) < 1e-6);
    const ev = await ovTokenEigenvalues(params, 0, 0);
    assert.ok(Math.abs(ev.re[0] - 3) < 1e-6 && Math.abs(ev.re[1] + 1) < 1e-6);
    assert.equal(copyingScore({ re: [3, -1], im: [0, 0] }, { measure: 'elhage' }), 0.5);
    assert.throws(() => copyingScore({ re: [1], im: [0] }, { measure: 'bogus' as 'elhage' }), ValueError);
    disposeAll(params);
  });

  it('dense QK full circuit equals brute force; the size guard refuses large vocabularies', async () => {
    const WE = randMat(6, 4, 41);
    const params = oneLayer(WE.to2DArray(), WE.transpose().to2DArray(), [
      { WV: randMat(4, 2, 42).to2DArray(), WO: randMat(2, 4, 43).to2DArray() },
    ]);
    const [wq, wk] = (await Promise.all([params['blocks.0.attn.W_Q'].array(), params['blocks.0.attn.W_K'].array()])) as number[][][][];
    const ref = WE.mmul(new Matrix(wq[0])).mmul(new Matrix(wk[0]).transpose()).mmul(WE.transpose());
    const got = await qkFullCircuit(params, 0, 0);
    assert.ok(maxAbsDiff(got, ref) < 1e-4 * denseFrob(ref));
    assert.ok(maxAbsDiff((await qkCircuit(params, 0, 0)).AB, ref) < 1e-4 * denseFrob(ref));
    await assert.rejects(() => qkFullCircuit(params, 0, 0, { maxVocab: 5 }), /d_vocab <= maxVocab/);
    await assert.rejects(() => ovFullCircuit(params, 0, 0, { maxVocab: 5 }), ValueError);
    await assert.rejects(() => ovFullCircuit(params, 0, 1), ValueError);
    const bad = { ...params, 'unembed.W_U': tf.zeros([4, 5]) };
    await assert.rejects(() => copyingScores(bad), ShapeError);
    bad['unembed.W_U'].dispose();
    disposeAll(params);
  });
});

/** Orthonormal basis of a tall matrix's columns (thin QR). */
class QrLike {
  Q: Matrix;
  constructor(m: Matrix) {
    this.Q = new QrDecomposition(m).orthogonalMatrix;
  }
}

describe('qrR', () => {
  it('R^T R equals M^T M (full rank, rank-deficient, zero columns)', () => {
    const M1 = randMat(9, 4, 51);
    const M2 = M1.clone();
    for (let i = 0; i < 9; i++) M2.set(i, 2, M2.get(i, 0) * 2 - M2.get(i, 1)); // rank 3
    const M3 = M1.clone();
    for (let i = 0; i < 9; i++) M3.set(i, 0, 0); // zero first column
    for (const M of [M1, M2, M3]) {
      const R = qrR(M);
      assert.ok(maxAbsDiff(R.transpose().mmul(R), M.transpose().mmul(M)) < 1e-10);
      for (let i = 0; i < 4; i++) for (let j = 0; j < i; j++) assert.equal(R.get(i, j), 0);
    }
  });
});

describe('thinQR', () => {
  it('Q has orthonormal columns and Q R = M (full rank, rank-deficient, zero column)', () => {
    const M1 = randMat(11, 5, 61);
    const M2 = M1.clone();
    for (let i = 0; i < 11; i++) M2.set(i, 3, M2.get(i, 0) - 3 * M2.get(i, 2));
    const M3 = M1.clone();
    for (let i = 0; i < 11; i++) M3.set(i, 1, 0);
    for (const M of [M1, M2, M3, randMat(5, 5, 62)]) {
      const { Q, R } = thinQR(M);
      assert.deepEqual([Q.rows, Q.columns, R.rows, R.columns], [M.rows, M.columns, M.columns, M.columns]);
      assert.ok(maxAbsDiff(Q.mmul(R), M) < 1e-12);
      assert.ok(maxAbsDiff(Q.transpose().mmul(Q), Matrix.eye(M.columns)) < 1e-12);
    }
    assert.throws(() => thinQR(randMat(3, 4, 1)), ShapeError);
  });
});
