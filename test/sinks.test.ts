import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { sinkRates, sinkScores, hiddenSinks, hiddenSinksFromPatterns, hiddenSinkScores, residualNorms, keyValueNorms } from '../src/analyses/sinks.js';
import { massiveDims, varSinkTokens, varSinks } from '../src/analyses/massive.js';
import { loadModel, HookedTransformer } from '../src/model/index.js';
import { loadReference } from './helpers/reference.js';
import { ShapeError, ValueError } from '../src/errors.js';

// 3x3 patterns with hand-computed column means m = [m0, m1, m2]
const M1 = [[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.1, 0.1]]; // m = [0.9, 0.1, 0.1]
const M2 = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]; // m = [1/3, 1/2, 1]
const M3 = [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]; // m = [11/18, 5/12, 1/3]
const M4 = [[1, 0, 0], [1, 0, 0], [0, 1, 0]]; // m = [2/3, 1/2, 0]
const m0 = { M1: 0.9, M2: 1 / 3, M3: 11 / 18, M4: 2 / 3 };

function leftPad(A: number[][], N: number): number[][] {
  const n = A.length;
  const off = N - n;
  return Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => (i < off ? (j <= i ? 1 / (i + 1) : 0) : j < off ? 0 : A[i - off][j - off])),
  );
}

// layer 0: prompt 0 heads [M1, M2], prompt 1 [M3, M4]; layer 1: prompt 0 [M2, M2], prompt 1 [M1, M3]
const L0 = [[M1, M2], [M3, M4]];
const L1 = [[M2, M2], [M1, M3]];

function near(a: number, b: number, tol = 1e-6, what = ''): void {
  assert.ok(Math.abs(a - b) <= tol, `${what} ${a} vs ${b}`);
}

describe('sinks: sinkRates on constructed patterns', () => {
  it('gives the hand-counted Sink_k curve and per-head alpha_1', () => {
    const before = tf.memory().numTensors;
    const pats = [tf.tensor4d(L0), tf.tensor4d(L1)];
    const r = sinkRates(pats, { eps: 0.45 });
    // k=1: alpha > 0.45 for M1, M3, M4 (not M2): layer0 3/4, layer1 2/4 -> 5/8
    // k=2: M2 (0.5) and M4 (0.5): layer0 2/4 (M2, M4), layer1 2/4 (M2, M2) -> 4/8
    // k=3: only M2 (1): layer0 1/4, layer1 2/4 -> 3/8
    assert.deepEqual(r.ks, [1, 2, 3]);
    [62.5, 50, 37.5].forEach((v, i) => near(r.rates[i], v, 1e-9, `rate k=${i + 1}`));
    assert.deepEqual(r.counts, [8, 8, 8]);
    assert.equal(r.scores.method, 'sink');
    const expect = [
      [(m0.M1 + m0.M3) / 2, (m0.M2 + m0.M4) / 2],
      [(m0.M2 + m0.M1) / 2, (m0.M2 + m0.M3) / 2],
    ];
    expect.forEach((row, l) => row.forEach((v, h) => near(r.scores.scores[l][h], v, 1e-6, `alpha1 ${l}.${h}`)));
    assert.deepEqual(r.scores.extra!.sinkRate, [[100, 50], [50, 50]]);
    // alpha curve: layer 0 head 1 at k=2: mean of M2 (1/2) and M4 (1/2)
    near(r.alpha[0][1][1], 0.5);
    near(r.alpha[1][0][2], (1 + 0.1) / 2);
    tf.dispose(pats);
    assert.equal(tf.memory().numTensors, before);
  });

  it('is identical when prompts are left-padded inside a longer batch', () => {
    const N = 5;
    const pad = (layer: number[][][][]) => tf.tensor4d(layer.map((p, b) => p.map((A) => (b === 1 ? leftPad(A, N) : leftPad(A, N)))));
    const padded = [pad(L0), pad(L1)];
    const plain = [tf.tensor4d(L0), tf.tensor4d(L1)];
    const mask = [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]];
    const a = sinkRates(plain, { eps: 0.45 });
    const b = sinkRates(padded, { eps: 0.45, mask });
    assert.deepEqual(b.ks, a.ks);
    b.rates.forEach((v, i) => near(v, a.rates[i]));
    b.scores.scores.forEach((row, l) => row.forEach((v, h) => near(v, a.scores.scores[l][h])));
    tf.dispose([...padded, ...plain]);
  });

  it('leaves out prompts shorter than k and counts the rest', () => {
    // prompt 0 has 3 real tokens, prompt 1 only 2 (padded by one)
    const short = [[1, 0], [0.25, 0.75]]; // m = [0.625, 0.75]
    const layer = tf.tensor4d([[M2], [leftPad(short, 3)]]);
    const r = sinkRates([layer], { eps: 0.6, mask: [[1, 1, 1], [0, 1, 1]] });
    assert.deepEqual(r.counts, [2, 2, 1]);
    near(r.rates[0], 50); // M2 1/3 no, short 0.625 yes
    near(r.rates[1], 50); // M2 1/2 no, short 0.75 yes
    near(r.rates[2], 100); // M2 1 yes
    assert.throws(() => sinkRates([layer], { ks: [4], mask: [[1, 1, 1], [0, 1, 1]] }), ValueError);
    assert.throws(() => sinkRates([layer], { eps: 1.5 }), ValueError);
    layer.dispose();
  });

  it('rejects malformed per-layer patterns', () => {
    const a = tf.zeros([1, 2, 3, 3]);
    const b = tf.zeros([1, 3, 3, 3]);
    assert.throws(() => sinkRates([a, b]), ShapeError);
    assert.throws(() => sinkRates([]), ShapeError);
    tf.dispose([a, b]);
  });
});

describe('sinks: hidden sinks (ACT rule)', () => {
  const A = [
    [1, 0, 0, 0, 0],
    [0.6, 0.4, 0, 0, 0],
    [0.5, 0.1, 0.4, 0, 0],
    [0.4, 0.05, 0.5, 0.05, 0],
    [0.3, 0.05, 0.4, 0.05, 0.2],
  ];
  // m = [2.8/5, 0.6/4, 1.3/3, 0.1/2, 0.2] = [0.56, 0.15, 0.4333, 0.05, 0.2]

  it('drops the lowest index of {j : m_j > threshold}', () => {
    assert.deepEqual(hiddenSinks(A), [1, 2, 4]);
    assert.deepEqual(hiddenSinks(A, { threshold: 0.3 }), [2]);
    assert.deepEqual(hiddenSinks(A, { threshold: 0.5 }), []);
    const t = tf.tensor2d(A);
    assert.deepEqual(hiddenSinks(t, { threshold: 0.14 }), [1, 2, 4]);
    t.dispose();
    assert.throws(() => hiddenSinks(A, { threshold: 0 }), ValueError);
  });

  it('per head over a padded batch: relative positions, mass and counts', () => {
    const before = tf.memory().numTensors;
    const uni = Array.from({ length: 5 }, (_, i) => Array.from({ length: 5 }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));
    // both prompts: the 5-token patterns inside 7 positions (2 pads)
    const pats = [tf.tensor4d([[leftPad(A, 7), leftPad(uni, 7)], [leftPad(A, 7), leftPad(uni, 7)]])];
    const mask = [[0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]];
    const r = hiddenSinksFromPatterns(pats, { mask });
    assert.deepEqual(r.perPrompt[0][0][0], [1, 2, 4]);
    assert.deepEqual(r.perPrompt[1][0][0], [1, 2, 4]);
    // uniform causal on 5 tokens: m = [137/300, 77/240, 47/180, 9/40, 1/5]: all > 0.1 -> [1, 2, 3, 4]
    assert.deepEqual(r.perPrompt[0][0][1], [1, 2, 3, 4]);
    assert.deepEqual(r.positions[0][0], [1, 2, 4]);
    near(r.scores.scores[0][0], 0.15 + 1.3 / 3 + 0.2);
    near(r.scores.scores[0][1], 77 / 240 + 47 / 180 + 9 / 40 + 1 / 5);
    assert.deepEqual(r.scores.extra!.count, [[3, 4]]);
    assert.deepEqual(r.scores.extra!.frequency, [[1, 1]]);
    assert.equal(r.scores.method, 'hidden-sink');
    tf.dispose(pats);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('massive activations and VAR sink tokens', () => {
  const rms = (x: number[]) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-6);

  it('varSinkTokens: phi = max_{d in D} |x_d| / rms(x), sink if phi > tau', () => {
    const t0 = [0, 0, 100, 0, 0, 0, 0, 0];
    const t1 = [1, 1, 1, 1, 1, 1, 1, 1];
    const t2 = [1, 0, -3, 0, 0, 0, 0, 0];
    const x = tf.tensor3d([[t0, t1, t2]]);
    const phi = [100 / rms(t0), 1 / rms(t1), 3 / rms(t2)];
    const a = varSinkTokens(x, [2, 0], { tau: 2.7 });
    a.phi[0].forEach((v, i) => near(v, phi[i], 1e-4, `phi ${i}`));
    assert.deepEqual(a.sink, [[true, false, false]]);
    assert.deepEqual(varSinkTokens(x, [2, 0], { tau: 2.5 }).sink, [[true, false, true]]);
    // pads never count
    assert.deepEqual(varSinkTokens(x, [2], { tau: 2.5, mask: [[0, 1, 1]] }).sink, [[false, false, true]]);
    assert.throws(() => varSinkTokens(x, [8]), ValueError);
    x.dispose();
  });

  it('massiveDims ranks dimensions by max ratio over tokens and layers, ignoring pads', () => {
    const before = tf.memory().numTensors;
    const l0 = tf.tensor3d([
      [[1, 2, 1, 1], [1, 1, 1, 1]],
      [[999, 0, 0, 0], [1, 1, 1, 1]], // first token of prompt 1 is a pad
    ]);
    const l1 = tf.tensor3d([
      [[1, 1, 1, 1], [0, 0, 0, 6]],
      [[0, 0, 0, 0], [3, 0, 1, 0]],
    ]);
    const r = massiveDims([l0, l1], { top: 2, mask: [[1, 1], [0, 1]] });
    // dim 3: 6 / rms([0,0,0,6]) = 2 (layer 1, prompt 0, pos 1); dim 0: 3 / rms([3,0,1,0]) (layer 1, prompt 1, rel pos 0)
    const d0 = 3 / rms([3, 0, 1, 0]);
    const d1 = 2 / rms([1, 2, 1, 1]);
    assert.equal(r.top[0].dim, 3);
    near(r.top[0].score, 6 / rms([0, 0, 0, 6]), 1e-4);
    assert.deepEqual([r.top[0].layer, r.top[0].prompt, r.top[0].position], [1, 0, 1]);
    assert.equal(r.top[1].dim, 0);
    near(r.top[1].score, d0, 1e-4);
    assert.deepEqual([r.top[1].layer, r.top[1].prompt, r.top[1].position], [1, 1, 0]);
    near(r.perDim[1], d1, 1e-4);
    tf.dispose([l0, l1]);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('sinks and massive activations on a model (gpt2-tiny fixture)', function () {
  this.timeout(300000);
  let model: HookedTransformer;
  const prompts = [
    [0, 11, 12, 13, 14, 11, 12, 13, 14, 20],
    [0, 40, 41, 42, 43, 44],
    [0, 7, 8, 9, 7, 8, 9],
  ];
  const N = 10;
  const padded = prompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
  const mask = prompts.map((p) => [...new Array(N - p.length).fill(0), ...new Array(p.length).fill(1)]);
  before(async () => {
    model = await loadModel('fixtures/reference/gpt2-tiny');
  });
  after(() => model?.dispose());

  const closeGrid = (a: number[][], b: number[][], tol: number, what: string) =>
    a.forEach((row, i) => row.forEach((v, j) => near(v, b[i][j], tol, `${what}[${i}][${j}]`)));

  it('sinkScores: a padded batch gives the per-prompt numbers of prompts run alone (1e-6)', () => {
    const before = tf.memory().numTensors;
    const batched = sinkScores(model, padded, { attentionMask: mask, eps: 0.3 });
    assert.equal(tf.memory().numTensors, before);
    // alone: each prompt its own batch of one, then combined by hand
    const alone = prompts.map((p) => sinkScores(model, [p], { eps: 0.3, ks: [1, 2, 3, 4, 5, 6] }));
    const L = 3;
    const Hh = 4;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < Hh; h++) {
        near(batched.scores.scores[l][h], alone.reduce((s, r) => s + r.scores.scores[l][h], 0) / prompts.length, 1e-6, `alpha1 ${l}.${h}`);
        // k = 4: every prompt has it
        near(batched.alpha[l][h][3], alone.reduce((s, r) => s + r.alpha[l][h][3], 0) / prompts.length, 1e-6, `alpha4 ${l}.${h}`);
      }
    }
    // the rate for k = 1: hits counted over (prompt, layer, head)
    const hits = alone.reduce((s, r) => s + (r.rates[0] / 100) * r.counts[0], 0);
    near(batched.rates[0], (100 * hits) / (prompts.length * L * Hh), 1e-9, 'rate k=1');
    // k = 8..10 exist only in prompt 0
    assert.deepEqual(batched.counts.slice(7), [12, 12, 12]);
    assert.deepEqual(batched.ks, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // same as sinkRates on the cached patterns
    const { logits, cache } = model.runWithCache(padded, { attentionMask: mask, namesFilter: (n) => n.endsWith('hook_pattern') });
    const direct = sinkRates([0, 1, 2].map((l) => cache.get(`blocks.${l}.attn.hook_pattern`)), { eps: 0.3, mask });
    logits.dispose();
    cache.dispose();
    closeGrid(batched.scores.scores, direct.scores.scores, 1e-7, 'direct');
    // chunked forward passes give the same
    const chunked = sinkScores(model, padded, { attentionMask: mask, eps: 0.3, batchSize: 2 });
    closeGrid(chunked.scores.scores, batched.scores.scores, 1e-6, 'chunked');
  });

  it('hiddenSinkScores: padded batch = prompts alone', () => {
    const before = tf.memory().numTensors;
    const batched = hiddenSinkScores(model, padded, { attentionMask: mask, threshold: 0.1 });
    assert.equal(tf.memory().numTensors, before);
    prompts.forEach((p, b) => {
      const alone = hiddenSinkScores(model, [p], { threshold: 0.1 });
      assert.deepEqual(batched.perPrompt[b], alone.perPrompt[0]);
    });
    assert.ok(batched.perPrompt.some((p) => p.some((l) => l.some((h) => h.length > 0))), 'some head has hidden sinks on this model');
  });

  it('residualNorms and keyValueNorms equal brute force from the cache, padded or alone', () => {
    const before = tf.memory().numTensors;
    const rn = residualNorms(model, padded, { attentionMask: mask });
    const kv = keyValueNorms(model, padded, { attentionMask: mask });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(rn.counts, [3, 3, 3, 3, 3, 3, 2, 1, 1, 1]);
    // brute force at layer 2, relative position 5 (all three prompts have it)
    let r = 0;
    let k = 0;
    let v = 0;
    for (const p of prompts) {
      const { logits, cache } = model.runWithCache([p], { namesFilter: ['blocks.2.hook_resid_pre', 'blocks.2.attn.hook_k', 'blocks.2.attn.hook_v'] });
      r += Math.hypot(...(cache.get('blocks.2.hook_resid_pre').arraySync() as number[][][])[0][5]) / 3;
      const kk = (cache.get('blocks.2.attn.hook_k').arraySync() as number[][][][])[0][5];
      const vv = (cache.get('blocks.2.attn.hook_v').arraySync() as number[][][][])[0][5];
      k += kk.reduce((s, x) => s + Math.hypot(...x), 0) / kk.length / 3;
      v += vv.reduce((s, x) => s + Math.hypot(...x), 0) / vv.length / 3;
      logits.dispose();
      cache.dispose();
    }
    near(rn.norms[2][5], r, 1e-5, 'resid');
    near(kv.keys[2][5], k, 1e-5, 'keys');
    near(kv.values[2][5], v, 1e-5, 'values');
  });

  it('massiveDims(model) = massiveDims(cached residuals); varSinks padded = alone', () => {
    const before = tf.memory().numTensors;
    const fromModel = massiveDims(model, padded, { attentionMask: mask, top: 5 });
    assert.equal(tf.memory().numTensors, before);
    const { logits, cache } = model.runWithCache(padded, { attentionMask: mask, namesFilter: (n) => n.endsWith('hook_resid_pre') });
    const fromRes = massiveDims([0, 1, 2].map((l) => cache.get(`blocks.${l}.hook_resid_pre`)), { mask, top: 5 });
    logits.dispose();
    cache.dispose();
    assert.deepEqual(fromModel.top.map((d) => d.dim), fromRes.top.map((d) => d.dim));
    fromModel.perDim.forEach((x, i) => near(x, fromRes.perDim[i], 1e-6, `dim ${i}`));
    const dims = fromModel.top.slice(0, 2).map((d) => d.dim);
    const probe = varSinks(model, padded, dims, { attentionMask: mask });
    const tau = 0.9 * Math.max(...probe[0].phi.flat());
    const vs = varSinks(model, padded, dims, { attentionMask: mask, tau });
    assert.equal(tf.memory().numTensors, before);
    const flags = vs[0].sink.flat();
    assert.ok(flags.includes(true) && flags.includes(false), 'tau splits the tokens');
    assert.deepEqual(vs.map((x) => x.layer), [2]);
    prompts.forEach((p, b) => {
      const alone = varSinks(model, [p], dims, { tau });
      vs[0].phi[b].forEach((x, i) => near(x, alone[0].phi[0][i], 1e-4, `phi ${b},${i}`));
      assert.deepEqual(vs[0].sink[b], alone[0].sink[0]);
    });
    assert.throws(() => varSinks(model, padded, [32], { attentionMask: mask }), ValueError);
  });
});

describe('sinks against HF transformers attentions (gpt2-tiny reference fixture)', function () {
  this.timeout(300000);
  it('sinkScores / hiddenSinkScores on the model = sinkRates / hiddenSinksFromPatterns on the HF attentions', async () => {
    const ref = await loadReference('gpt2-tiny');
    const model = await loadModel('fixtures/reference/gpt2-tiny');
    try {
      const ids = ref.input_ids.arraySync() as number[][];
      const mask = ref.attention_mask.arraySync() as number[][];
      const hf = [0, 1, 2].map((l) => ref[`attentions.${l}`]);
      const mine = sinkScores(model, ids, { attentionMask: mask, eps: 0.3 });
      const theirs = sinkRates(hf, { eps: 0.3, mask });
      mine.scores.scores.forEach((row, l) => row.forEach((v, h) => near(v, theirs.scores.scores[l][h], 1e-5, `alpha1 ${l}.${h}`)));
      mine.alpha.forEach((layer, l) => layer.forEach((curve, h) => curve.forEach((v, k) => near(v, theirs.alpha[l][h][k], 1e-5, `alpha ${l}.${h} k=${k + 1}`))));
      assert.deepEqual(mine.rates, theirs.rates);
      const hm = hiddenSinkScores(model, ids, { attentionMask: mask, threshold: 0.1 });
      const ht = hiddenSinksFromPatterns(hf, { mask, threshold: 0.1 });
      assert.deepEqual(hm.perPrompt, ht.perPrompt);
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});
