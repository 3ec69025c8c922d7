import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import {
  argmaxCodes,
  collectCircuitActivations,
  edgeScores,
  nodeScores,
  saeCircuitScores,
  saeCodes,
  scoreCircuitActivations,
  uniqueCodeCounts,
  uniquePairCounts,
  type CircuitActivations,
  type SAECircuitResult,
} from '../src/sae/discrete.js';
import { heapArgsort, introArgsort, numpyArgsort } from '../src/sae/argsort.js';
import { bestTprTnrF1, headScoresAuc, rocAuc, rocCurve, tprTnrF1, trapezoidAuc } from '../src/sae/metrics.js';
import { paperSAE } from '../src/sae/models.js';
import { trainSAE } from '../src/sae/train.js';
import { makeHeadScores, type HeadScores } from '../src/results.js';
import { ConfigError, ShapeError, ValueError } from '../src/errors.js';
import { deriveSeed, rng } from '../src/util/random.js';
import { loadModel, randomModel } from '../src/model/index.js';
import { repeatedTokens } from '../src/data/induction.js';
import { generateIOI, ioiCorrupted } from '../src/data/ioi.js';
import { ioiTokenizerOf, leftPad } from '../src/circuits/problem.js';
import { runPort } from './helpers/port.js';

const close = (a: number, b: number, tol = 1e-9, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);
const softmax = (x: number[]) => {
  const e = x.map((v) => Math.exp(v));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('sae/discrete: codes and scores on hand-built tables', () => {
  it('argmaxCodes and saeCodes take the first maximum (an all-zero row gives code 0)', async () => {
    assert.deepEqual(argmaxCodes([[0, 0, 0], [0.1, 0.5, 0.5], [3, 1, 2]]), [0, 1, 0]);
    // an identity-like SAE: features = relu(x), so ties and zero rows reach the argmax unchanged
    const sae = paperSAE(3, 3, { seed: 0 });
    sae.params.W_enc.assign(tf.eye(3));
    sae.params.b_enc.assign(tf.zeros([3]));
    const x = tf.tensor2d([[0, 0, 0], [0.1, 0.5, 0.5], [3, 1, 2], [-1, -2, 0.5]]);
    const before = tf.memory().numTensors;
    assert.deepEqual(await saeCodes(sae, x), [0, 1, 0, 2]);
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
    sae.dispose();
  });

  // columns = heads 0.0, 0.1, 1.0, 1.1
  const pos = [
    [1, 2, 3, 4],
    [1, 5, 6, 4],
    [2, 2, 3, 4],
  ];
  const neg = [
    [1, 2, 0, 4],
    [3, 2, 0, 4],
  ];

  it('node: |P \\ N| per head, optional / |P ∪ N|, softmax over heads', () => {
    const u = uniqueCodeCounts(pos, neg);
    // col0 P={1,2} N={1,3}; col1 P={2,5} N={2}; col2 P={3,6} N={0}; col3 P={4} N={4}
    assert.deepEqual(u.uniquePositive, [1, 1, 2, 0]);
    assert.deepEqual(u.uniqueNegative, [1, 0, 1, 0]);
    assert.deepEqual(u.union, [3, 2, 3, 1]);
    const hs = nodeScores(pos, neg, { nLayers: 2, nHeads: 2 });
    assert.equal(hs.method, 'sae-node');
    const sm = softmax([1, 1, 2, 0]);
    hs.scores.flat().forEach((v, i) => close(v, sm[i], 1e-12));
    assert.deepEqual(hs.extra!.raw, [[1, 1], [2, 0]]);
    const hn = nodeScores(pos, neg, { nLayers: 2, nHeads: 2 }, { normalise: true });
    const smn = softmax([1 / 3, 1 / 2, 2 / 3, 0]);
    hn.scores.flat().forEach((v, i) => close(v, smn[i], 1e-12));
    // a subset of heads: columns map to the listed heads, others score 0 and are not "included"
    const sub = nodeScores([[5, 1], [6, 1]], [[5, 2]], { nLayers: 2, nHeads: 2, heads: ['1.1', '0.0'] });
    assert.deepEqual(sub.extra!.raw, [[1, 0], [0, 1]]);
    assert.deepEqual(sub.extra!.included, [[1, 0], [0, 1]]);
    close(sub.scores[0][0], 0.5, 1e-12);
    assert.equal(sub.scores[0][1], 0);
    assert.throws(() => nodeScores(pos, [[1, 2, 3]], { nLayers: 2, nHeads: 2 }), ShapeError);
    assert.throws(() => nodeScores([[1, 2, 3, -1]], neg, { nLayers: 2, nHeads: 2 }), ValueError);
  });

  it('edge: code pairs seen on positives and never on negatives; k = H^2 // 2 of the ranked entries', () => {
    const p = [
      [0, 0, 1],
      [0, 1, 1],
      [1, 1, 0],
    ];
    const n = [
      [0, 0, 0],
      [1, 1, 1],
    ];
    // (0,1): P={00,01,11} N={00,11} -> 1 (norm 1/5); (0,2): P={01,10} N={00,11} -> 2 (2/4); (1,2): P={01,11,10} N={00,11} -> 2 (2/5)
    assert.deepEqual(uniquePairCounts(p, n), [
      [0, 1, 2],
      [1, 0, 2],
      [2, 2, 0],
    ]);
    const un = uniquePairCounts(p, n, { normalise: true });
    close(un[0][1], 0.2);
    close(un[2][0], 0.5);
    close(un[1][2], 0.4);
    // 3 heads: k = 9 // 2 = 4. numpy's argsort of [0,1,2,1,0,2,2,2,0] (9 entries: insertion sort, stable),
    // reversed: flat 7, 6, 5, 2, ... = pairs (2,1), (2,0), (1,2), (0,2): entries 2,1,2,0 -> [1, 1, 2]
    const e = edgeScores(p, n, { nLayers: 1, nHeads: 3 });
    assert.equal(e.method, 'sae-edge');
    assert.deepEqual(e.extra!.appearances, [[1, 1, 2]]);
    const sm = softmax([1, 1, 2]);
    e.scores[0].forEach((v, i) => close(v, sm[i], 1e-12));
    assert.equal(e.params.k, 4);
    assert.equal(e.params.tieOrder, 'numpy');
    // k = 3: 2,1,2 ; first-first -> (0,2),(1,2) -> 0,2,1
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 3 }).extra!.appearances, [[0, 1, 2]]);
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 3, tieOrder: 'first-first' }).extra!.appearances, [[1, 1, 1]]);
    // normalised: (0,2)=(2,0)=0.5 first, then (1,2)=(2,1)=0.4: k=2 -> 2,0 -> [1,0,1]
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 2, normalise: true }).extra!.appearances, [[1, 0, 1]]);
    assert.throws(() => edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: -1 }), ConfigError);
  });

  it('edge k counts all heads scored: on 2 layers x 2 heads k = 16 // 2 = 8 (not heads per layer: 2)', () => {
    const p = [
      [0, 0, 1, 1],
      [1, 0, 0, 1],
    ];
    const n = [[0, 0, 0, 0]];
    const e = edgeScores(p, n, { nLayers: 2, nHeads: 2 });
    assert.equal(e.params.k, 8);
    assert.equal((e.extra!.appearances as number[][]).flat().reduce((a, b) => a + b, 0), 8);
  });
});

/** McIlroy's adversary against `introArgsort`: values that drive it into its heapsort fallback. */
function adversary(n: number): number[] {
  const gas = n;
  const val = new Array<number>(n).fill(gas);
  let solid = 0;
  let candidate = -1;
  introArgsort(n, (a, b) => {
    if (val[a] === gas && val[b] === gas) val[a === candidate ? a : b] = solid++;
    if (val[a] === gas) candidate = a;
    else if (val[b] === gas) candidate = b;
    return val[a] < val[b];
  });
  return val;
}

describe("sae/argsort: numpy's default argsort, ties included (against Debian's numpy)", () => {
  it('equals np.argsort on tie-heavy arrays of every size regime (insertion sort, partitions, 144^2 pair counts)', function () {
    this.timeout(60000);
    const r = rng(11);
    const arrays: number[][] = [];
    for (const n of [1, 2, 5, 9, 16, 17, 18, 31, 64, 100, 144, 400, 1000, 4096, 20736]) {
      for (const levels of [1, 2, 3, 9]) arrays.push(Array.from({ length: n }, () => r.int(levels)));
      arrays.push(Array.from({ length: n }, () => r.int(50) / 7)); // non-integer values, fewer ties
    }
    // McIlroy's adversary, values halved into pairs of ties: numpy's introsort gives up on quicksort
    // and heapsorts a partition (checked when this test was written)
    for (const n of [200, 1000]) arrays.push(adversary(n).map((v) => Math.floor(v / 2)));
    const np = runPort<{ numpy: string; orders: number[][] }>('sae_circuits', { op: 'argsort', arrays });
    let identical = 0;
    arrays.forEach((a, i) => {
      assert.deepEqual(Array.from(numpyArgsort(a)), np.orders[i], `array ${i} (n = ${a.length}, numpy ${np.numpy})`);
      identical++;
    });
    assert.equal(identical, arrays.length);
    // a stable order differs from numpy's on these inputs (the reason the tie order is a named option)
    const stable = arrays.map((a) => a.map((_, i) => i).sort((x, y) => a[x] - a[y] || x - y));
    assert.ok(stable.some((s, i) => s.join() !== np.orders[i].join()));
  });

  it("the heapsort fallback equals np.argsort(kind='heapsort') with ties", () => {
    const r = rng(12);
    const arrays = [7, 40, 333].map((n) => Array.from({ length: n }, () => r.int(4)));
    const np = runPort<{ orders: number[][] }>('sae_circuits', { op: 'argsort', kind: 'heapsort', arrays });
    arrays.forEach((a, i) => {
      const idx = Int32Array.from(a.keys());
      heapArgsort(idx, 0, a.length, (x, y) => a[x] < a[y]);
      assert.deepEqual(Array.from(idx), np.orders[i]);
    });
  });
});

describe('sae/metrics: ROC', () => {
  const scores = [0.9, 0.8, 0.8, 0.5, 0.3, 0.8];
  const labels = [1, 1, 0, 1, 0, 0];

  it('rocCurve: one point per distinct score, collinear points dropped, AUC with ties one half (hand-computed 6/9)', () => {
    close(rocAuc(scores, labels), 6 / 9, 1e-12);
    const c = rocCurve(scores, labels);
    assert.deepEqual(c.thresholds, [Infinity, 0.9, 0.8, 0.5, 0.3]);
    c.tpr.forEach((v, i) => close(v, [0, 1 / 3, 2 / 3, 1, 1][i], 1e-12));
    c.fpr.forEach((v, i) => close(v, [0, 0, 2 / 3, 2 / 3, 1][i], 1e-12));
    close(c.auc, 6 / 9, 1e-12);
    // a straight stretch: 4 positives in a row -> the middle points go unless asked to stay
    const s2 = [5, 4, 3, 2, 1, 0];
    const y2 = [1, 1, 1, 0, 0, 1];
    assert.deepEqual(rocCurve(s2, y2).thresholds, [Infinity, 5, 3, 1, 0]);
    assert.deepEqual(rocCurve(s2, y2, { dropIntermediate: false }).thresholds, [Infinity, 5, 4, 3, 2, 1, 0]);
    close(rocCurve(s2, y2, { dropIntermediate: false }).auc, rocCurve(s2, y2).auc, 1e-15);
    close(rocAuc([1, 2, 3, 4], [0, 0, 1, 1]), 1, 1e-12);
    close(rocAuc([1, 2, 3, 4], [1, 1, 0, 0]), 0, 1e-12);
    close(rocAuc([5, 5, 5], [1, 0, 0]), 0.5, 1e-12);
    assert.throws(() => rocAuc([1, 2], [1, 1]), ValueError);
    assert.throws(() => rocAuc([1, NaN], [1, 0]), ValueError);
    assert.throws(() => rocAuc([1, 2], [1, 0, 1]), ShapeError);
    assert.throws(() => rocAuc([1, 2], [1, 2]), ValueError);
  });

  it('rocAuc equals brute-force pair counting on random tied data', () => {
    const r = rng(42);
    for (let trial = 0; trial < 20; trial++) {
      const n = 5 + r.int(30);
      const s = Array.from({ length: n }, () => r.int(6));
      const y = Array.from({ length: n }, (_, i) => (i < 2 ? i : r.int(2)));
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (y[i] === 1 && y[j] === 0) {
            den++;
            num += s[i] > s[j] ? 1 : s[i] === s[j] ? 0.5 : 0;
          }
        }
      }
      close(rocAuc(s, y), num / den, 1e-12);
      const c = rocCurve(s, y, { dropIntermediate: false });
      close(trapezoidAuc(c.fpr, c.tpr), num / den, 1e-12);
    }
  });

  it('tprTnrF1 is 2*TPR*TNR/(TPR+TNR), not precision/recall F1', () => {
    const m = tprTnrF1(scores, labels, 0.8);
    // predicted positive: 0.9, 0.8, 0.8, 0.8 -> TP 2 of 3, TN 1 of 3
    close(m.tpr, 2 / 3, 1e-12);
    close(m.tnr, 1 / 3, 1e-12);
    close(m.f1, (2 * (2 / 3) * (1 / 3)) / (2 / 3 + 1 / 3), 1e-12);
    assert.ok(Math.abs(m.f1 - 4 / 7) > 0.1); // precision/recall F1 would be 4/7
    const best = bestTprTnrF1(scores, labels);
    close(best.f1, 0.5, 1e-12);
    assert.equal(best.threshold, 0.9);
  });

  it('headScoresAuc ranks a HeadScores grid against a ground-truth head list', () => {
    const hs = makeHeadScores('x', [
      [0.1, 0.9, 0.2],
      [0.8, 0.3, 0.3],
    ]);
    close(headScoresAuc(hs, ['0.1', [1, 0]]), 1, 1e-12);
    close(headScoresAuc(hs, ['L1H1'], { included: [[0, 1, 0], [0, 1, 1]] }), (0 + 0.5) / 2, 1e-12);
    assert.throws(() => headScoresAuc(hs, ['2.0']), ValueError);
  });
});

// ------------------------------------------------------------------ the SAE part on planted activations

/**
 * Head outputs with a planted circuit: 2 layers x 3 heads, d_model 8; prompt i of either set carries a
 * nuisance t = i % 6 that every head writes; heads 0.1 and 1.2 also write a direction that depends on
 * whether the prompt is positive or negative.
 */
function plantedActivations(n = 12): CircuitActivations {
  const heads: Array<[number, number]> = [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]];
  const circuit = new Set(['0.1', '1.2']);
  const vec = (seed: number, scale: number) => {
    const q = rng(seed);
    return Array.from({ length: 8 }, () => scale * q.normal());
  };
  const rows = (marker: number) =>
    Array.from({ length: n }, (_, i) =>
      heads.map(([l, h], c) => {
        const base = vec(1000 + 100 * c + (i % 6), 0.3);
        return circuit.has(`${l}.${h}`) ? base.map((v, k) => v + vec(5000 + 10 * c + marker, 3)[k]) : base;
      }),
    );
  return { positive: tf.tensor3d(rows(0)), negative: tf.tensor3d(rows(1)), heads, nLayers: 2, nHeads: 3 };
}

describe('sae/discrete: scoreCircuitActivations (the SAE part of the method)', () => {
  it("default set-up = the authors' code: one shared SAE (decoder normalised per input dimension) trained on the 10 sampled examples' head outputs", async function () {
    this.timeout(60000);
    const acts = plantedActivations();
    const before = tf.memory().numTensors;
    const res = await scoreCircuitActivations(acts, { nFeatures: 20, epochs: 60, lr: 1e-2, seed: 4, progress: false });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(res.node.params.setup, 'authors-code');
    assert.equal(res.node.params.sharing, 'shared');
    assert.equal(res.node.params.decoderNorm, 'input');
    assert.equal(res.finalLoss.length, 1);
    // the same computation by hand: paperSAE(seed), trainSAE full batch on the gathered [10 * 6, 8] rows, codes of every row
    const all = tf.concat([acts.positive, acts.negative]) as tf.Tensor3D;
    const xTrain = tf.tidy(() => tf.reshape(tf.gather(all, tf.tensor1d(res.trainIndices, 'int32')), [60, 8]) as tf.Tensor2D);
    const sae = paperSAE(8, 20, { seed: 4, lambda: 0.02, decoderNorm: 'input' });
    const tr = await trainSAE(sae, xTrain, { epochs: 60, batchSize: 60, lr: 1e-2, progress: false, finalMetrics: false });
    close(res.finalLoss[0], tr.history.loss[tr.history.loss.length - 1], 1e-6, 'final loss');
    const flat = tf.reshape(all, [24 * 6, 8]) as tf.Tensor2D;
    const codes = await saeCodes(sae, flat);
    const table = Array.from({ length: 24 }, (_, e) => codes.slice(e * 6, e * 6 + 6));
    assert.deepEqual(res.codes.positive, table.slice(0, 12));
    assert.deepEqual(res.codes.negative, table.slice(12));
    // nuisance-only heads code the same t to the same code in both sets: nothing is positive-only
    for (const [l, h] of [[0, 0], [0, 2], [1, 0], [1, 1]]) assert.equal(res.node.extra!.uniquePositive[l][h], 0);
    close(headScoresAuc(res.node, ['0.1', '1.2']), 1, 1e-12);
    tf.dispose([all, xTrain, flat, acts.positive, acts.negative]);
    sae.dispose();
  });

  it("setup 'paper-text': one SAE per head (seed deriveSeed(seed, h), unit-norm feature vectors); an abort scores the heads finished", async function () {
    this.timeout(60000);
    const acts = plantedActivations();
    const before = tf.memory().numTensors;
    const res = await scoreCircuitActivations(acts, { setup: 'paper-text', nFeatures: 12, epochs: 40, lr: 1e-2, seed: 2, progress: false });
    assert.equal(res.node.params.sharing, 'per-head');
    assert.equal(res.node.params.decoderNorm, 'feature');
    assert.equal(res.finalLoss.length, 6);
    const all = tf.concat([acts.positive, acts.negative]) as tf.Tensor3D;
    for (const h of [1, 4]) {
      const xh = tf.tidy(() => tf.reshape(tf.slice(all, [0, h, 0], [24, 1, 8]), [24, 8]) as tf.Tensor2D);
      const xTrain = tf.tidy(() => tf.gather(xh, tf.tensor1d(res.trainIndices, 'int32')) as tf.Tensor2D);
      const sae = paperSAE(8, 12, { seed: deriveSeed(2, h), decoderNorm: 'feature' });
      const tr = await trainSAE(sae, xTrain, { epochs: 40, batchSize: 10, lr: 1e-2, progress: false, finalMetrics: false });
      close(res.finalLoss[h], tr.history.loss[tr.history.loss.length - 1], 1e-6, `head ${h} loss`);
      const codes = await saeCodes(sae, xh);
      assert.deepEqual([...res.codes.positive, ...res.codes.negative].map((r) => r[h]), codes);
      tf.dispose([xh, xTrain]);
      sae.dispose();
    }
    all.dispose();
    const ac = new AbortController();
    const part = await scoreCircuitActivations(acts, {
      setup: 'paper-text',
      nFeatures: 12,
      epochs: 20,
      progress: false,
      signal: ac.signal,
      onProgress: (p) => p.stage === 'train' && p.step === 1 && ac.abort(),
    });
    assert.equal(part.aborted, true);
    assert.deepEqual(part.heads, [[0, 0], [0, 1]]);
    assert.deepEqual(part.node.extra!.included, [[1, 1, 0], [0, 0, 0]]);
    assert.equal(part.codes.positive[0].length, 2);
    assert.equal(part.node.data!.aborted, true);
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(scoreCircuitActivations(acts, { setup: 'paper' as never }), ConfigError);
    await assert.rejects(scoreCircuitActivations(acts, { nTrain: 25 }), ConfigError);
    tf.dispose([acts.positive, acts.negative]);
  });
});

// ------------------------------------------------------------------ against the port, on codes of shipped models

interface PortScores {
  node: number[];
  edge: number[];
  pairCounts: number[][];
  appearances: number[][];
  k: number;
  nodeRoc: PortRoc;
  edgeRoc: PortRoc;
}
interface PortRoc {
  fpr: number[];
  tpr: number[];
  thresholds: Array<number | null>;
  auc: number;
  bestF1: number;
  bestThreshold: number | null;
}

const headLabel = ([l, h]: [number, number]) => `L${l}H${h}`;

/** tflens's node/edge scores, pair counts and their ROC evaluation equal the numpy port's, to float precision. */
function assertMatchesPort(res: SAECircuitResult, truth: Array<[number, number]>, normalise: boolean, nFeatures: number, what: string): { node: number; edge: number } {
  const { positive, negative } = res.codes;
  const layout = { nLayers: res.node.nLayers, nHeads: res.node.nHeads };
  const port = runPort<PortScores>('sae_circuits', { op: 'scores', positive, negative, labels: res.heads.map(headLabel), groundTruth: truth, normalise, nFeatures });
  const node = nodeScores(positive, negative, layout, { normalise });
  const edge = edgeScores(positive, negative, layout, { normalise });
  node.scores.flat().forEach((v, i) => close(v, port.node[i], 1e-12, `${what} node[${i}]`));
  edge.scores.flat().forEach((v, i) => close(v, port.edge[i], 1e-12, `${what} edge[${i}]`));
  assert.deepEqual(uniquePairCounts(positive, negative, { normalise }), port.pairCounts, `${what} pair counts`);
  assert.deepEqual(edge.extra!.appearances, port.appearances, `${what} appearances (k = ${port.k}, numpy's tie order)`);
  assert.equal(edge.params.k, port.k);
  const labels = node.scores.flat().map((_, i) => (truth.some(([l, h]) => l * layout.nHeads + h === i) ? 1 : 0));
  for (const [hs, roc] of [
    [node, port.nodeRoc],
    [edge, port.edgeRoc],
  ] as Array<[HeadScores, PortRoc]>) {
    const c = rocCurve(hs.scores.flat(), labels);
    assert.equal(c.fpr.length, roc.fpr.length, `${what} ${hs.method}: ROC points`);
    c.fpr.forEach((v, i) => close(v, roc.fpr[i], 1e-12));
    c.tpr.forEach((v, i) => close(v, roc.tpr[i], 1e-12));
    close(c.auc, roc.auc, 1e-12, `${what} ${hs.method} AUC`);
    close(headScoresAuc(hs, truth), roc.auc, 1e-12);
    const best = bestTprTnrF1(hs.scores.flat(), labels);
    if (roc.bestF1 === null) {
      // numpy's F1 is NaN (0/0) at a point with TPR = 0 and TNR = 0, and np.max reports NaN; tflens scores that point 0
      assert.ok(c.fpr.some((f, i) => f === 1 && c.tpr[i] === 0), `${what} ${hs.method}: NaN F1 without a (1, 0) point`);
      continue;
    }
    close(best.f1, roc.bestF1, 1e-12, `${what} ${hs.method} best F1`);
    if (roc.bestThreshold === null) assert.equal(best.threshold, Infinity);
    else close(best.threshold, roc.bestThreshold, 1e-12);
  }
  return { node: port.nodeRoc.auc, edge: port.edgeRoc.auc };
}

const IND = 'fixtures/models/induction-handmade';
const IOI = 'fixtures/models/ioi';

describe("sae/discrete against a numpy port of the authors' scoring (codes of the shipped models)", () => {
  it('induction-handmade: node, edge (k = 8), pair counts, ROC and best F1 equal the port; AUC against circuit.json', async function () {
    this.timeout(120000);
    if (!existsSync(`${IND}/model.safetensors`)) this.skip();
    const model = await loadModel(IND);
    const truth = (JSON.parse(readFileSync(`${IND}/circuit.json`, 'utf8')) as { heads: string[] }).heads.map((s) => s.split('.').map(Number) as [number, number]);
    const positive = { tokens: repeatedTokens({ batch: 20, blockLength: 10, repeats: 2, low: 2, high: 32, bosId: 0, seed: 1 }).tokens };
    const negative = { tokens: repeatedTokens({ batch: 20, blockLength: 20, repeats: 1, low: 2, high: 32, bosId: 0, seed: 2, distinct: true }).tokens };
    const acts = await collectCircuitActivations(model, positive, negative);
    for (const seed of [0, 1]) {
      const res = await scoreCircuitActivations(acts, { epochs: 100, seed, progress: false });
      for (const normalise of [false, true]) assertMatchesPort(res, truth, normalise, 200, `induction seed ${seed} normalise ${normalise}`);
    }
    tf.dispose([acts.positive, acts.negative]);
    model.dispose();
  });

  it('ioi: the same on 12 heads (k = 72, many tied pair counts) with IOI positives and corrupted negatives', async function () {
    this.timeout(180000);
    if (!existsSync(`${IOI}/model.safetensors`)) this.skip();
    const model = await loadModel(IOI);
    const tk = ioiTokenizerOf(model);
    const pos = generateIOI(tk, { n: 40, seed: 51 });
    const neg = ioiCorrupted(pos, tk, { seed: 52 });
    const p = leftPad(pos.tokens, 0);
    const n = leftPad(neg.tokens, 0);
    const acts = await collectCircuitActivations(model, { tokens: p.ids, attentionMask: p.attentionMask }, { tokens: n.ids, attentionMask: n.attentionMask });
    // a fixed reference set (the port test checks the computation, not the circuit)
    const truth: Array<[number, number]> = [[1, 2], [2, 0], [2, 3]];
    let ties = 0;
    for (const seed of [0, 1]) {
      const res = await scoreCircuitActivations(acts, { epochs: 100, seed, progress: false });
      const counts = uniquePairCounts(res.codes.positive, res.codes.negative).flat();
      ties += counts.length - new Set(counts).size;
      for (const normalise of [false, true]) assertMatchesPort(res, truth, normalise, 200, `ioi seed ${seed} normalise ${normalise}`);
    }
    assert.ok(ties > 100, `the ranking sees ties (${ties})`);
    tf.dispose([acts.positive, acts.negative]);
    model.dispose();
  });
});

describe('sae/discrete: saeCircuitScores end to end', () => {
  it('a random GPT-2-style model with left-padded prompts: full grids, seeded, no tensors left', async function () {
    this.timeout(60000);
    const cfg = JSON.parse(readFileSync('fixtures/reference/gpt2/config.json', 'utf8'));
    const model = randomModel(cfg, { seed: 1, std: 0.3 });
    const r = rng(5);
    const positive = Array.from({ length: 8 }, () => [0, 0, ...Array.from({ length: 4 }, () => 1 + r.int(40))]);
    const posMask = positive.map((row) => row.map((_, j) => (j < 2 ? 0 : 1)));
    const negative = Array.from({ length: 8 }, () => Array.from({ length: 6 }, () => 1 + r.int(40)));
    const before = tf.memory().numTensors;
    const opts = { nFeatures: 16, epochs: 30, seed: 3, progress: false, model: 'random-gpt2' };
    const a = await saeCircuitScores(model, { tokens: positive, attentionMask: posMask }, { tokens: negative }, opts);
    const b = await saeCircuitScores(model, { tokens: positive, attentionMask: posMask }, { tokens: negative }, opts);
    assert.equal(tf.memory().numTensors, before);
    const { n_layers: L, n_heads: H } = model.cfg;
    for (const hs of [a.node, a.edge]) {
      assert.equal(hs.nLayers, L);
      assert.equal(hs.nHeads, H);
      close(hs.scores.flat().reduce((s, v) => s + v, 0), 1, 1e-9); // softmax over all heads
      assert.equal(hs.model, 'random-gpt2');
      assert.equal(hs.params.nFeatures, 16);
      assert.equal(hs.data!.position, 'mean');
    }
    assert.equal(a.edge.params.k, Math.floor((L * H) ** 2 / 2));
    assert.deepEqual(a.codes, b.codes);
    assert.deepEqual(a.node.scores, b.node.scores);
    assert.ok(a.codes.positive.flat().every((c) => Number.isInteger(c) && c >= 0 && c < 16));
    await assert.rejects(saeCircuitScores(model, { tokens: positive }, { tokens: negative }, { sharing: 'both' as never }), ConfigError);
    model.dispose();
  });

  it('induction-handmade: node AUC 1 and edge AUC >= 0.875 against circuit.json on each of 10 seeds, in both set-ups', async function () {
    this.timeout(300000);
    if (!existsSync(`${IND}/model.safetensors`)) this.skip();
    const model = await loadModel(IND);
    const truth = (JSON.parse(readFileSync(`${IND}/circuit.json`, 'utf8')) as { heads: string[] }).heads;
    assert.deepEqual(truth, ['0.0', '1.0']);
    // positives: BOS + 10 syllables repeated twice (induction applies); negatives: BOS + 20 distinct syllables
    const positive = { tokens: repeatedTokens({ batch: 30, blockLength: 10, repeats: 2, low: 2, high: 32, bosId: 0, seed: 1 }).tokens };
    const negative = { tokens: repeatedTokens({ batch: 30, blockLength: 20, repeats: 1, low: 2, high: 32, bosId: 0, seed: 2, distinct: true }).tokens };
    const acts = await collectCircuitActivations(model, positive, negative);
    const before = tf.memory().numTensors;
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    for (const setup of ['authors-code', 'paper-text'] as const) {
      const node: number[] = [];
      const edge: number[] = [];
      for (let seed = 0; seed < 10; seed++) {
        // the authors' settings (200 features, lambda 0.02, Adam 1e-3, 10 training examples), 100 epochs instead of 500
        const r = await scoreCircuitActivations(acts, { setup, epochs: 100, seed, progress: false });
        node.push(headScoresAuc(r.node, truth));
        edge.push(headScoresAuc(r.edge, truth));
        // heads 0.1 and 1.1 are zero: one constant code on every prompt, nothing unique
        assert.equal(r.node.extra!.uniquePositive[0][1], 0);
        assert.equal(r.node.extra!.uniquePositive[1][1], 0);
      }
      // measured: node 1 on every seed; edge 0.875 or 1 (two or three seeds of ten at 1)
      assert.ok(Math.min(...node) >= 0.95, `${setup}: node AUCs ${node}`);
      assert.ok(Math.min(...edge) >= 0.85 && mean(edge) >= 0.88, `${setup}: edge AUCs ${edge}`);
    }
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([acts.positive, acts.negative]);
    model.dispose();
  });
});


/**
 * The SAE study of notebook 05 on the shipped ioi model's circuit.json (the ground truth found by the
 * IOI experiments), in the authors' configuration: the headline numbers pinned with tolerances, so a
 * change of the model, its circuit or the method that moves them fails here. The notebook (20 seeds)
 * measured node AUC 0.543 [0.482, 0.605], edge 0.544 [0.509, 0.578] (published on GPT-2 small: 0.868 /
 * 0.840); the first 10 of its seeds are rerun here.
 */
describe('sae/discrete: the notebook-05 study on the shipped ioi circuit (pinned)', function () {
  this.timeout(300000);
  it('node and edge AUC over 10 seeds stay at the measured level, below the published one', async () => {
    const before = tf.memory().numTensors;
    const model = await loadModel('fixtures/models/ioi');
    const truth: string[] = JSON.parse(readFileSync('fixtures/models/ioi/circuit.json', 'utf8')).heads;
    const tk = ioiTokenizerOf(model);
    const pos = generateIOI(tk, { n: 250, seed: 51, prependBos: model.bosTokenId() !== null });
    const neg = ioiCorrupted(pos, tk, { seed: 52, flips: [['IO', 'RAND'], ['S1', 'RAND']], rule: 'distinct' });
    const pad = model.cfg.pad_token_id ?? model.bosTokenId() ?? 0;
    const [p, n] = [leftPad(pos.tokens, pad), leftPad(neg.tokens, pad)];
    const acts = await collectCircuitActivations(model, { tokens: p.ids, attentionMask: p.attentionMask }, { tokens: n.ids, attentionMask: n.attentionMask });
    const node: number[] = [];
    const edge: number[] = [];
    try {
      for (let seed = 0; seed < 10; seed++) {
        const r = await scoreCircuitActivations(acts, { seed, progress: false, model: 'ioi' });
        node.push(headScoresAuc(r.node, truth));
        edge.push(headScoresAuc(r.edge, truth));
      }
    } finally {
      tf.dispose([acts.positive, acts.negative]);
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, before);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    assert.deepEqual(truth, ['0.2', '0.3', '2.3', '2.1', '2.0']);
    assert.ok(mean(node) > 0.4 && mean(node) < 0.7, `node AUC ${mean(node)} (${node.map((x) => x.toFixed(3))})`);
    assert.ok(mean(edge) > 0.45 && mean(edge) < 0.65, `edge AUC ${mean(edge)} (${edge.map((x) => x.toFixed(3))})`);
    assert.ok(mean(node) < 0.868 && mean(edge) < 0.84, 'below the published AUCs');
  });
});
