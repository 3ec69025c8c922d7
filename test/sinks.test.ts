import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { sinkRates, hiddenSinks, hiddenSinksFromPatterns } from '../src/analyses/sinks.js';
import { massiveDims, varSinkTokens } from '../src/analyses/massive.js';
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
