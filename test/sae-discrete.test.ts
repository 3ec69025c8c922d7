import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  argmaxCodes,
  edgeScores,
  HeadSAEs,
  nodeScores,
  saeCircuitScores,
  uniqueCodeCounts,
  uniquePairCounts,
} from '../src/sae/discrete.js';
import { bestTprTnrF1, headScoresAuc, rocAuc, rocCurve, tprTnrF1, trapezoidAuc } from '../src/sae/metrics.js';
import { paperSAE } from '../src/sae/models.js';
import { trainSAE } from '../src/sae/train.js';
import type { ActivationModel } from '../src/sae/collect.js';
import { makeHeadScores } from '../src/results.js';
import { ShapeError, ValueError } from '../src/errors.js';
import { rng } from '../src/util/random.js';
import { existsSync, readFileSync } from 'node:fs';
import { loadModel, randomModel } from '../src/model/index.js';
import { repeatedTokens } from '../src/data/induction.js';

const close = (a: number, b: number, tol = 1e-9, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);
const softmax = (x: number[]) => {
  const e = x.map((v) => Math.exp(v));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
};

describe('sae/discrete: codes and scores on hand-built tables', () => {
  it('argmaxCodes takes the first maximum (an all-zero row gives code 0)', () => {
    assert.deepEqual(argmaxCodes([[0, 0, 0], [0.1, 0.5, 0.5], [3, 1, 2]]), [0, 1, 0]);
    const t = tf.tensor2d([[0, 0], [0, 2]]);
    assert.deepEqual(argmaxCodes(t), [0, 1]);
    t.dispose();
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
    close(hs.scores[0][0], sm[0], 1e-12);
    close(hs.scores[0][1], sm[1], 1e-12);
    close(hs.scores[1][0], sm[2], 1e-12);
    close(hs.scores[1][1], sm[3], 1e-12);
    assert.deepEqual(hs.extra!.raw, [[1, 1], [2, 0]]);
    const hn = nodeScores(pos, neg, { nLayers: 2, nHeads: 2 }, { normalise: true });
    const smn = softmax([1 / 3, 1 / 2, 2 / 3, 0]);
    close(hn.scores[1][0], smn[2], 1e-12);
    close(hn.scores[0][1], smn[1], 1e-12);
    // a subset of heads: columns map to the listed heads, others score 0 and are not "included"
    const sub = nodeScores([[5, 1], [6, 1]], [[5, 2]], { nLayers: 2, nHeads: 2, heads: ['1.1', '0.0'] });
    // columns sorted layer-major: col0 = 0.0 (P={5,6}, N={5} -> 1), col1 = 1.1 (P={1}, N={2} -> 1)
    assert.deepEqual(sub.extra!.raw, [[1, 0], [0, 1]]);
    assert.deepEqual(sub.extra!.included, [[1, 0], [0, 1]]);
    close(sub.scores[0][0], 0.5, 1e-12);
    assert.equal(sub.scores[0][1], 0);
    assert.throws(() => nodeScores(pos, [[1, 2, 3]], { nLayers: 2, nHeads: 2 }), ShapeError);
    assert.throws(() => nodeScores([[1, 2, 3, -1]], neg, { nLayers: 2, nHeads: 2 }), ValueError);
  });

  it('edge: code pairs seen on positives and never on negatives, per ordered head pair', () => {
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
    // one layer of 3 heads: default k = floor(9/2) = 4 head entries.
    // Sorted pairs (ties: later flat index first): (2,1), (2,0), (1,2), (0,2), (1,0), (0,1)
    // first 4 entries: 2,1,2,0 -> appearances [1, 1, 2]
    const e = edgeScores(p, n, { nLayers: 1, nHeads: 3 });
    assert.equal(e.method, 'sae-edge');
    assert.deepEqual(e.extra!.appearances, [[1, 1, 2]]);
    const sm = softmax([1, 1, 2]);
    e.scores[0].forEach((v, i) => close(v, sm[i], 1e-12));
    assert.equal(e.params.k, 4);
    // k = 3: last-first -> 2,1,2 ; first-first -> (0,2),(1,2) -> 0,2,1
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 3 }).extra!.appearances, [[0, 1, 2]]);
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 3, tieOrder: 'first-first' }).extra!.appearances, [[1, 1, 1]]);
    // normalised: (0,2)=(2,0)=0.5 first, then (1,2)=(2,1)=0.4: k=4 -> 2,0,2,1 -> [1,1,2]; k=2 -> [1,0,1]
    assert.deepEqual(edgeScores(p, n, { nLayers: 1, nHeads: 3 }, { k: 2, normalise: true }).extra!.appearances, [[1, 0, 1]]);
  });
});

describe('sae/metrics: ROC', () => {
  const scores = [0.9, 0.8, 0.8, 0.5, 0.3, 0.8];
  const labels = [1, 1, 0, 1, 0, 0];

  it('rocAuc is exact with ties (hand-computed 6/9) and equals the trapezoid area of rocCurve', () => {
    // pairs (pos, neg): 0.9 beats all 3; 0.8 ties two 0.8s (0.5 each) and beats 0.3; 0.5 beats 0.3 only -> 6 / 9
    close(rocAuc(scores, labels), 6 / 9, 1e-12);
    const c = rocCurve(scores, labels);
    assert.deepEqual(c.thresholds, [Infinity, 0.9, 0.8, 0.5, 0.3]);
    c.tpr.forEach((v, i) => close(v, [0, 1 / 3, 2 / 3, 1, 1][i], 1e-12));
    c.fpr.forEach((v, i) => close(v, [0, 0, 2 / 3, 2 / 3, 1][i], 1e-12));
    close(trapezoidAuc(c.fpr, c.tpr), 6 / 9, 1e-12);
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
      const c = rocCurve(s, y);
      close(trapezoidAuc(c.fpr, c.tpr), num / den, 1e-12);
    }
  });

  it('tprTnrF1 is 2*TPR*TNR/(TPR+TNR), not precision/recall F1', () => {
    const m = tprTnrF1(scores, labels, 0.8);
    // predicted positive: 0.9, 0.8, 0.8, 0.8 -> TP 2 of 3, TN 1 of 3
    close(m.tpr, 2 / 3, 1e-12);
    close(m.tnr, 1 / 3, 1e-12);
    close(m.f1, (2 * (2 / 3) * (1 / 3)) / (2 / 3 + 1 / 3), 1e-12);
    // precision/recall F1 would be 2 * 0.5 * (2/3) / (0.5 + 2/3) = 0.5714...
    assert.ok(Math.abs(m.f1 - 4 / 7) > 0.1);
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
    // included subset: heads 0.1, 1.1, 1.2 -> scores 0.9 (neg), 0.3 (pos), 0.3 (neg): the positive loses once and ties once
    close(headScoresAuc(hs, ['1.1'], { included: [[0, 1, 0], [0, 1, 1]] }), (0 + 0.5) / 2, 1e-12);
    assert.throws(() => headScoresAuc(hs, ['2.0']), ValueError);
  });
});

describe('sae/discrete: per-head SAEs', () => {
  it('HeadSAEs: head h is paperSAE(seed = headSeed(seed, h)) trained full batch on x[h]; codes are argmax features', async () => {
    const H = 2;
    const d = 5;
    const F = 6;
    const n = 4;
    const x = tf.randomNormal([H, n, d], 0, 1, 'float32', 9) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    const saes = new HeadSAEs(H, d, F, { seed: 7, lambda: 0.02 });
    const losses = await saes.train(x, { epochs: 40, lr: 1e-2, progress: false });
    const codes = saes.codes(x);
    for (let h = 0; h < H; h++) {
      const single = paperSAE(d, F, { seed: HeadSAEs.headSeed(7, h), lambda: 0.02 });
      const xh = tf.tidy(() => tf.reshape(tf.slice(x, [h, 0, 0], [1, n, d]), [n, d]) as tf.Tensor2D);
      const res = await trainSAE(single, xh, { epochs: 40, batchSize: n, lr: 1e-2, logEvery: 1, progress: false });
      const batched = saes.sae(h);
      const a = single.params.W_enc.dataSync();
      const b = batched.params.W_enc.dataSync();
      let maxDiff = 0;
      for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      assert.ok(maxDiff < 1e-3, `head ${h}: W_enc differs by ${maxDiff}`);
      const ld = batched.params.W_dec.dataSync();
      const sd = single.params.W_dec.dataSync();
      for (let i = 0; i < ld.length; i++) close(ld[i], sd[i], 1e-3, 'W_dec');
      // final loss of the batched head equals the single SAE's loss on the same data
      const l = single.loss(xh);
      close(losses[h], l.loss.dataSync()[0], 1e-3, 'loss');
      assert.ok(res.history.loss[39] < res.history.loss[0]);
      const f = single.encode(xh);
      assert.deepEqual(codes[h], argmaxCodes(f));
      tf.dispose([xh, l.loss, l.mse, l.l1, f]);
      single.dispose();
    }
    saes.dispose();
    assert.equal(tf.memory().numTensors, before);
    x.dispose();
  });
});

/**
 * A fake 2-layer, 3-head model: prompts are [marker, t]; marker 100 = positive, 101 = negative.
 * Circuit heads (0.1 and 1.2) write a marker-dependent direction; the other heads' outputs depend
 * only on t, which has the same distribution in both sets.
 */
function circuitModel(): ActivationModel {
  const L = 2;
  const H = 3;
  const dh = 4;
  const D = 8;
  const circuit = new Set(['0.1', '1.2']);
  const r = rng(123);
  const params: Record<string, tf.Tensor> = {};
  for (let l = 0; l < L; l++) {
    params[`blocks.${l}.attn.W_O`] = tf.tensor3d(Array.from({ length: H }, () => Array.from({ length: dh }, () => Array.from({ length: D }, () => r.normal()))));
  }
  const g = (seed: number) => {
    const q = rng(seed);
    return Array.from({ length: dh }, () => q.normal());
  };
  return {
    cfg: { n_layers: L, n_heads: H, d_model: D, d_head: dh },
    params,
    runWithCache(tokens, opts) {
      const ids = tokens instanceof tf.Tensor ? (tokens.arraySync() as number[][]) : tokens;
      const store = new Map<string, tf.Tensor>();
      for (const name of (opts?.namesFilter ?? []) as string[]) {
        const l = Number(/^blocks\.(\d+)\./.exec(name)![1]);
        const z = ids.map((row) => {
          const [marker, t] = row;
          const heads = Array.from({ length: H }, (_, h) => {
            const base = g(1000 * l + 100 * h + t).map((v) => 0.3 * v);
            if (!circuit.has(`${l}.${h}`)) return base;
            const dir = g(50000 + 1000 * l + 100 * h + marker);
            return base.map((v, k) => v + 3 * dir[k]);
          });
          return row.map(() => heads);
        });
        store.set(name, tf.tensor4d(z));
      }
      return {
        logits: tf.zeros([ids.length, ids[0].length, 2]),
        cache: { get: (n: string) => store.get(n)!, dispose: () => store.forEach((t) => t.dispose()) },
      };
    },
  };
}

describe('sae/discrete: saeCircuitScores pipeline', () => {
  it('finds the heads whose outputs separate positives from negatives (mean node AUC >= 0.9 over 10 seeds on a planted circuit), no leaks', async function () {
    this.timeout(60000);
    const model = circuitModel();
    const positive = Array.from({ length: 12 }, (_, t) => [100, t % 6]);
    const negative = Array.from({ length: 12 }, (_, t) => [101, t % 6]);
    const truth = ['0.1', '1.2'];
    const before = tf.memory().numTensors;
    const aucs: number[] = [];
    for (const seed of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]) {
      const res = await saeCircuitScores(model, { positive, negative, nFeatures: 20, epochs: 100, lr: 1e-2, seed, batchSize: 5, progress: false });
      assert.equal(res.node.method, 'sae-node');
      assert.equal(res.edge.method, 'sae-edge');
      assert.equal(res.codes.positive.length, 12);
      assert.equal(res.codes.negative[0].length, 6);
      assert.equal(res.trainIndices.length, 10);
      // non-circuit heads see the same t values on both sets: codes are a function of t, so nothing is unique
      for (const [l, h] of [[0, 0], [0, 2], [1, 0], [1, 1]]) assert.equal(res.node.extra!.uniquePositive[l][h], 0);
      aucs.push(headScoresAuc(res.node, truth));
      // edge: pairs of non-circuit heads (columns 0, 2, 3, 4) have no positive-only code pairs
      const pc = uniquePairCounts(res.codes.positive, res.codes.negative);
      for (const a of [0, 2, 3, 4]) for (const b of [0, 2, 3, 4]) assert.equal(pc[a][b], 0);
      assert.ok(pc[1][5] > 0 || pc[1][0] > 0);
      // same seed, same result
      if (seed === 0) {
        const again = await saeCircuitScores(model, { positive, negative, nFeatures: 20, epochs: 100, lr: 1e-2, seed, batchSize: 5, progress: false });
        assert.deepEqual(again.codes, res.codes);
      }
    }
    const mean = aucs.reduce((a, b) => a + b, 0) / aucs.length;
    assert.ok(mean >= 0.9 && Math.min(...aucs) >= 0.5, `node AUCs ${aucs}`);
    const shared = await saeCircuitScores(model, { positive: { tokens: positive }, negative, nFeatures: 20, epochs: 100, lr: 1e-2, sharing: 'shared', decoderNorm: 'input', heads: ['0.0', '0.1', '1.2'], progress: false });
    assert.equal(shared.finalLoss.length, 1);
    assert.equal(shared.aborted, false);
    assert.equal(shared.node.params.decoderNorm, 'input');
    assert.equal(shared.node.params.sharing, 'shared');
    // in the authors' code mode too, the non-circuit head 0.0 has no positive-only code
    assert.equal(shared.node.extra!.uniquePositive[0][0], 0);
    // abort after the second head: the finished heads are scored, the rest left out
    const ac = new AbortController();
    const part = await saeCircuitScores(model, {
      positive,
      negative,
      nFeatures: 20,
      epochs: 50,
      progress: false,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.stage === 'train' && p.step === 1) ac.abort();
      },
    });
    assert.equal(part.aborted, true);
    assert.deepEqual(part.heads, [[0, 0], [0, 1]]);
    assert.deepEqual(part.node.extra!.included, [[1, 1, 0], [0, 0, 0]]);
    assert.equal(part.codes.positive[0].length, 2);
    assert.equal(part.node.data!.aborted, true);
    assert.deepEqual(shared.node.extra!.included, [[1, 1, 0], [0, 0, 1]]);
    assert.equal(tf.memory().numTensors, before);
    Object.values(model.params).forEach((t) => t.dispose());
  });
});

describe('sae/discrete: saeCircuitScores on the real HookedTransformer', () => {
  it('runs end to end on a random GPT-2-style model with left-padded prompts: full grids, seeded, no leaks', async function () {
    this.timeout(60000);
    const cfg = JSON.parse(readFileSync('fixtures/reference/gpt2/config.json', 'utf8'));
    const model = randomModel(cfg, { seed: 1, std: 0.3 });
    const r = rng(5);
    const positive = Array.from({ length: 8 }, () => [0, 0, ...Array.from({ length: 4 }, () => 1 + r.int(40))]);
    const posMask = positive.map((row) => row.map((_, j) => (j < 2 ? 0 : 1)));
    const negative = Array.from({ length: 8 }, () => Array.from({ length: 6 }, () => 1 + r.int(40)));
    const before = tf.memory().numTensors;
    const opts = { positive: { tokens: positive, attentionMask: posMask }, negative, nFeatures: 16, epochs: 30, seed: 3, progress: false, model: 'random-gpt2' };
    const a = await saeCircuitScores(model, opts);
    const b = await saeCircuitScores(model, opts);
    assert.equal(tf.memory().numTensors, before);
    const { n_layers: L, n_heads: H } = model.cfg;
    for (const hs of [a.node, a.edge]) {
      assert.equal(hs.nLayers, L);
      assert.equal(hs.nHeads, H);
      const total = hs.scores.flat().reduce((s, v) => s + v, 0);
      close(total, 1, 1e-9); // softmax over all heads
      assert.equal(hs.model, 'random-gpt2');
      assert.equal(hs.params.nFeatures, 16);
    }
    assert.deepEqual(a.codes, b.codes);
    assert.deepEqual(a.node.scores, b.node.scores);
    assert.ok(a.codes.positive.flat().every((c) => Number.isInteger(c) && c >= 0 && c < 16));
    model.dispose();
  });
});

describe('sae/discrete: the shipped induction-handmade model', () => {
  const DIR = 'fixtures/models/induction-handmade';
  it('node and edge AUC >= 0.9 against circuit.json over 10 seeds (repeated vs non-repeated prompts)', async function () {
    this.timeout(120000);
    if (!existsSync(`${DIR}/model.safetensors`)) this.skip();
    const model = await loadModel(DIR);
    const truth = (JSON.parse(readFileSync(`${DIR}/circuit.json`, 'utf8')) as { heads: string[] }).heads;
    assert.deepEqual(truth, ['0.0', '1.0']);
    // positives: BOS + 10 syllables repeated twice (induction applies); negatives: BOS + 20 distinct syllables
    const positive = repeatedTokens({ batch: 30, blockLength: 10, repeats: 2, low: 2, high: 32, bosId: 0, seed: 1 }).tokens;
    const negative = repeatedTokens({ batch: 30, blockLength: 20, repeats: 1, low: 2, high: 32, bosId: 0, seed: 2, distinct: true }).tokens;
    const before = tf.memory().numTensors;
    const node: number[] = [];
    const edge: number[] = [];
    for (let seed = 0; seed < 10; seed++) {
      // paper settings (200 features, lambda 0.02, Adam 1e-3, 10 training examples) with 100 epochs instead of 500 to keep the test short
      const r = await saeCircuitScores(model, { positive, negative, epochs: 100, seed, progress: false, model: DIR });
      node.push(headScoresAuc(r.node, truth));
      edge.push(headScoresAuc(r.edge, truth));
      // heads 0.1 and 1.1 are zero: one constant code on every prompt, nothing unique
      assert.equal(r.node.extra!.uniquePositive[0][1], 0);
      assert.equal(r.node.extra!.uniquePositive[1][1], 0);
    }
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    assert.ok(mean(node) >= 0.9, `node AUCs ${node}`);
    assert.ok(mean(edge) >= 0.9, `edge AUCs ${edge}`);
    assert.equal(tf.memory().numTensors, before);
    model.dispose();
  });
});
