import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { sinkRates, sinkScores, hiddenSinks, hiddenSinksFromPatterns, hiddenSinkScores, residualNorms, keyValueNorms } from '../src/analyses/sinks.js';
import { massiveDims, massiveDimsFromResiduals, activationMagnitudes, varSinkTokens, varSinks } from '../src/analyses/massive.js';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { loadReference } from './helpers/reference.js';
import { runPort } from './helpers/port.js';
import { bbData, cachedArrays as cached, paddedPrompts } from './helpers/attention.js';
import { ShapeError, ValueError } from '../src/errors.js';

// 3x3 patterns with hand-computed column means m = [m0, m1, m2]
const M1 = [[1, 0, 0], [0.9, 0.1, 0], [0.8, 0.1, 0.1]]; // m = [0.9, 0.1, 0.1]
const M2 = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]; // m = [1/3, 1/2, 1]
const M3 = [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]; // m = [11/18, 5/12, 1/3]
const M4 = [[1, 0, 0], [1, 0, 0], [0, 1, 0]]; // m = [2/3, 1/2, 0]
const m0 = { M1: 0.9, M2: 1 / 3, M3: 11 / 18, M4: 2 / 3 };

function leftPad(A: number[][], N: number): number[][] {
  const off = N - A.length;
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
const closeGrid = (a: number[][], b: number[][], tol: number, what: string) => a.forEach((row, i) => row.forEach((v, j) => near(v, b[i][j], tol, `${what}[${i}][${j}]`)));

/** [layer][batch][head]... -> [batch][layer][head]... */
const byPrompt = <T>(perLayer: T[][]): T[][] => perLayer[0].map((_, b) => perLayer.map((l) => l[b]));

const bbBatch = (n: number, seed: number) => bbData(n, seed).tokens;

describe('sinks: sinkRates on constructed patterns', () => {
  it('gives the hand-counted Sink_k curve and per-head alpha_1', async () => {
    const before = tf.memory().numTensors;
    const pats = [tf.tensor4d(L0), tf.tensor4d(L1)];
    const r = await sinkRates(pats, { eps: 0.45 });
    // k=1: alpha > 0.45 for M1, M3, M4 (not M2): layer0 3/4, layer1 2/4 -> 5/8
    // k=2: M2 (0.5) and M4 (0.5): layer0 2/4, layer1 2/4 -> 4/8; k=3: only M2 (1): 1/4 + 2/4 -> 3/8
    assert.deepEqual(r.ks, [1, 2, 3]);
    [62.5, 50, 37.5].forEach((v, i) => near(r.rates[i], v, 1e-9, `rate k=${i + 1}`));
    assert.deepEqual(r.counts, [8, 8, 8]);
    assert.equal(r.scores.method, 'sink');
    const expect = [
      [(m0.M1 + m0.M3) / 2, (m0.M2 + m0.M4) / 2],
      [(m0.M2 + m0.M1) / 2, (m0.M2 + m0.M3) / 2],
    ];
    closeGrid(r.scores.scores, expect, 1e-6, 'alpha1');
    assert.deepEqual(r.scores.extra!.sinkRate, [[100, 50], [50, 50]]);
    near(r.alpha[0][1][1], 0.5);
    near(r.alpha[1][0][2], (1 + 0.1) / 2);
    tf.dispose(pats);
    assert.equal(tf.memory().numTensors, before);
  });

  it('is identical when prompts are left-padded inside a longer batch (mask as rows or a tensor)', async () => {
    const N = 5;
    const pad = (layer: number[][][][]) => tf.tensor4d(layer.map((p) => p.map((A) => leftPad(A, N))));
    const padded = [pad(L0), pad(L1)];
    const plain = [tf.tensor4d(L0), tf.tensor4d(L1)];
    const mask = [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]];
    const maskT = tf.tensor2d(mask);
    const a = await sinkRates(plain, { eps: 0.45 });
    for (const attentionMask of [mask, maskT]) {
      const b = await sinkRates(padded, { eps: 0.45, attentionMask });
      assert.deepEqual(b.ks, a.ks);
      b.rates.forEach((v, i) => near(v, a.rates[i]));
      closeGrid(b.scores.scores, a.scores.scores, 1e-6, 'padded');
    }
    tf.dispose([...padded, ...plain, maskT]);
  });

  it('leaves out prompts shorter than k and counts the rest; typed errors', async () => {
    const short = [[1, 0], [0.25, 0.75]]; // m = [0.625, 0.75]
    const layer = tf.tensor4d([[M2], [leftPad(short, 3)]]);
    const r = await sinkRates([layer], { eps: 0.6, attentionMask: [[1, 1, 1], [0, 1, 1]] });
    assert.deepEqual(r.counts, [2, 2, 1]);
    near(r.rates[0], 50);
    near(r.rates[1], 50);
    near(r.rates[2], 100);
    await assert.rejects(sinkRates([layer], { ks: [4], attentionMask: [[1, 1, 1], [0, 1, 1]] }), ValueError);
    await assert.rejects(sinkRates([layer], { eps: 1.5 }), ValueError);
    const a = tf.zeros([1, 2, 3, 3]);
    const b = tf.zeros([1, 3, 3, 3]);
    await assert.rejects(sinkRates([a, b]), ShapeError);
    await assert.rejects(sinkRates([]), ShapeError);
    tf.dispose([layer, a, b]);
  });
});

describe('sinks: hidden sinks (ACT rule) on constructed patterns', () => {
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
    assert.deepEqual(hiddenSinks(leftPad(A, 7), { attentionMask: [0, 0, 1, 1, 1, 1, 1] }), [3, 4, 6]);
    assert.throws(() => hiddenSinks(A, { threshold: 0 }), ValueError);
  });

  it('per head over a padded batch: relative positions, mass and counts', async () => {
    const before = tf.memory().numTensors;
    const uni = Array.from({ length: 5 }, (_, i) => Array.from({ length: 5 }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));
    const pats = [tf.tensor4d([[leftPad(A, 7), leftPad(uni, 7)], [leftPad(A, 7), leftPad(uni, 7)]])];
    const r = await hiddenSinksFromPatterns(pats, { attentionMask: [[0, 0, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]] });
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

describe('massive activations and VAR sink tokens on constructed residuals', () => {
  const rms = (x: number[]) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length + 1e-6);

  it('varSinkTokens: phi = max_{d in D} |x_d| / rms(x), sink if phi > tau', async () => {
    const t0 = [0, 0, 100, 0, 0, 0, 0, 0];
    const t1 = [1, 1, 1, 1, 1, 1, 1, 1];
    const t2 = [1, 0, -3, 0, 0, 0, 0, 0];
    const x = tf.tensor3d([[t0, t1, t2]]);
    const phi = [100 / rms(t0), 1 / rms(t1), 3 / rms(t2)];
    const a = await varSinkTokens(x, [2, 0], { tau: 2.7 });
    a.phi[0].forEach((v, i) => near(v, phi[i], 1e-4, `phi ${i}`));
    assert.deepEqual(a.sink, [[true, false, false]]);
    assert.deepEqual((await varSinkTokens(x, [2, 0], { tau: 2.5 })).sink, [[true, false, true]]);
    assert.deepEqual((await varSinkTokens(x, [2], { tau: 2.5, attentionMask: [[0, 1, 1]] })).sink, [[false, false, true]]);
    await assert.rejects(varSinkTokens(x, [8]), ValueError);
    x.dispose();
  });

  it('massiveDimsFromResiduals ranks dimensions by max ratio over tokens and layers, ignoring pads', async () => {
    const before = tf.memory().numTensors;
    const l0 = tf.tensor3d([
      [[1, 2, 1, 1], [1, 1, 1, 1]],
      [[999, 0, 0, 0], [1, 1, 1, 1]], // first token of prompt 1 is a pad
    ]);
    const l1 = tf.tensor3d([
      [[1, 1, 1, 1], [0, 0, 0, 6]],
      [[0, 0, 0, 0], [3, 0, 1, 0]],
    ]);
    const r = await massiveDimsFromResiduals([l0, l1], { top: 2, attentionMask: [[1, 1], [0, 1]] });
    assert.equal(r.top[0].dim, 3);
    near(r.top[0].score, 6 / rms([0, 0, 0, 6]), 1e-4);
    assert.deepEqual([r.top[0].layer, r.top[0].prompt, r.top[0].position], [1, 0, 1]);
    assert.equal(r.top[1].dim, 0);
    near(r.top[1].score, 3 / rms([3, 0, 1, 0]), 1e-4);
    assert.deepEqual([r.top[1].layer, r.top[1].prompt, r.top[1].position], [1, 1, 0]);
    near(r.perDim[1], 2 / rms([1, 2, 1, 1]), 1e-4);
    tf.dispose([l0, l1]);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('sinks and massive activations on a model: padding and chunking (gpt2-tiny fixture)', function () {
  this.timeout(300000);
  let model: HookedTransformer;
  const { prompts, padded, mask } = paddedPrompts();
  const batch = { tokens: padded, attentionMask: mask };
  before(async () => {
    model = await loadModel('fixtures/reference/gpt2-tiny');
  });
  after(() => model?.dispose());

  it('sinkScores: a padded batch gives the per-prompt numbers of prompts run alone; chunks agree', async () => {
    const before = tf.memory().numTensors;
    const batched = await sinkScores(model, batch, { eps: 0.3 });
    assert.equal(tf.memory().numTensors, before);
    const alone = await Promise.all(prompts.map((p) => sinkScores(model, { tokens: [p] }, { eps: 0.3, ks: [1, 2, 3, 4, 5, 6] })));
    for (let l = 0; l < 3; l++) {
      for (let h = 0; h < 4; h++) {
        near(batched.scores.scores[l][h], alone.reduce((s, r) => s + r.scores.scores[l][h], 0) / 3, 1e-6, `alpha1 ${l}.${h}`);
        near(batched.alpha[l][h][3], alone.reduce((s, r) => s + r.alpha[l][h][3], 0) / 3, 1e-6, `alpha4 ${l}.${h}`);
      }
    }
    const hits = alone.reduce((s, r) => s + (r.rates[0] / 100) * r.counts[0], 0);
    near(batched.rates[0], (100 * hits) / 36, 1e-9, 'rate k=1');
    assert.deepEqual(batched.counts.slice(7), [12, 12, 12]);
    assert.deepEqual(batched.ks, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    const chunked = await sinkScores(model, batch, { eps: 0.3, batchSize: 2 });
    closeGrid(chunked.scores.scores, batched.scores.scores, 1e-6, 'chunked');
    const tokT = tf.tensor2d(padded, undefined, 'int32');
    const maskT = tf.tensor2d(mask, undefined, 'int32');
    const fromTensors = await sinkScores(model, { tokens: tokT, attentionMask: maskT }, { eps: 0.3 });
    closeGrid(fromTensors.scores.scores, batched.scores.scores, 1e-7, 'tensor batch');
    tf.dispose([tokT, maskT]);
  });

  it('hiddenSinkScores: padded batch = prompts alone', async () => {
    const before = tf.memory().numTensors;
    const batched = await hiddenSinkScores(model, batch, { threshold: 0.1 });
    assert.equal(tf.memory().numTensors, before);
    for (const [b, p] of prompts.entries()) assert.deepEqual(batched.perPrompt[b], (await hiddenSinkScores(model, { tokens: [p] }, { threshold: 0.1 })).perPrompt[0]);
    assert.ok(batched.perPrompt.some((p) => p.some((l) => l.some((h) => h.length > 0))), 'some head has hidden sinks on this model');
  });

  it('massiveDims(model) = massiveDimsFromResiduals(cached residuals); varSinks padded = alone', async () => {
    const before = tf.memory().numTensors;
    const fromModel = await massiveDims(model, batch, { top: 5, batchSize: 2 });
    assert.equal(tf.memory().numTensors, before);
    const { logits, cache } = await model.runWithCache(padded, { attentionMask: mask, namesFilter: (n) => n.endsWith('hook_resid_pre') });
    const fromRes = await massiveDimsFromResiduals([0, 1, 2].map((l) => cache.get(`blocks.${l}.hook_resid_pre`)), { attentionMask: mask, top: 5 });
    logits.dispose();
    cache.dispose();
    assert.deepEqual(fromModel.top, fromRes.top);
    const dims = fromModel.top.slice(0, 2).map((d) => d.dim);
    const probe = await varSinks(model, batch, dims);
    const tau = 0.9 * Math.max(...probe[0].phi.flat());
    const vs = await varSinks(model, batch, dims, { tau });
    assert.equal(tf.memory().numTensors, before);
    const flags = vs[0].sink.flat();
    assert.ok(flags.includes(true) && flags.includes(false), 'tau splits the tokens');
    assert.deepEqual(vs.map((x) => x.layer), [2]);
    for (const [b, p] of prompts.entries()) {
      const alone = await varSinks(model, { tokens: [p] }, dims, { tau });
      vs[0].phi[b].forEach((x, i) => near(x, alone[0].phi[0][i], 1e-4, `phi ${b},${i}`));
      assert.deepEqual(vs[0].sink[b], alone[0].sink[0]);
    }
    await assert.rejects(varSinks(model, batch, [32]), ValueError);
  });
});

describe('sinks against HF transformers (gpt2-tiny reference fixture)', function () {
  this.timeout(300000);
  it('sink rates and hidden sinks on the model = on the HF attentions; residual norms = norms of HF hidden_states (last after ln_f)', async () => {
    const ref = await loadReference('gpt2-tiny');
    const model = await loadModel('fixtures/reference/gpt2-tiny');
    try {
      const ids = (await ref.input_ids.array()) as number[][];
      const mask = (await ref.attention_mask.array()) as number[][];
      const hf = [0, 1, 2].map((l) => ref[`attentions.${l}`]);
      const batch = { tokens: ids, attentionMask: mask };
      const mine = await sinkScores(model, batch, { eps: 0.3 });
      const theirs = await sinkRates(hf, { eps: 0.3, attentionMask: mask });
      closeGrid(mine.scores.scores, theirs.scores.scores, 1e-5, 'alpha1');
      mine.alpha.forEach((layer, l) => closeGrid(layer, theirs.alpha[l], 1e-5, `alpha layer ${l}`));
      assert.deepEqual(mine.rates, theirs.rates);
      assert.deepEqual((await hiddenSinkScores(model, batch)).perPrompt, (await hiddenSinksFromPatterns(hf, { attentionMask: mask })).perPrompt);
      // Gu et al.'s residual norms: HF's L + 1 hidden states, averaged per relative position
      const rn = await residualNorms(model, batch);
      assert.deepEqual(rn.names, ['blocks.0.hook_resid_pre', 'blocks.1.hook_resid_pre', 'blocks.2.hook_resid_pre', 'ln_final.hook_normalized']);
      const first = mask.map((r) => r.indexOf(1));
      for (let s = 0; s <= 3; s++) {
        const hs = (await ref[`hidden_states.${s}`].array()) as number[][][];
        for (let r = 0; r < rn.counts.length; r++) {
          const rows = hs.flatMap((x, b) => (first[b] + r < mask[b].length ? [Math.hypot(...x[first[b] + r])] : []));
          near(rn.norms[s][r], rows.reduce((a, x) => a + x, 0) / rows.length, 1e-4 * Math.max(1, rn.norms[s][r]), `state ${s} r ${r}`);
        }
      }
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});

describe('fidelity: ports of the authors\' code on shipped models', function () {
  this.timeout(600000);

  it("Gu et al.'s sink metric (eval_sink_open_source.py) and its first-10 curve on the bb model", async () => {
    const model = await loadModel('fixtures/models/bb');
    try {
      const tokens = bbBatch(8, 4242);
      const N = tokens[0].length;
      const L = model.cfg.n_layers;
      const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_pattern`);
      const acts = await cached(model, tokens, names);
      const port = runPort<{ metric: number[]; importance: number[][][][]; first10: number[] }>('gu_sink', { attentions: byPrompt(names.map((n) => acts[n])), eps: 0.3 });
      const all = await sinkScores(model, { tokens }, { ks: Array.from({ length: N }, (_, i) => i + 1) });
      assert.deepEqual(all.rates.map((x) => Math.round(x * 1e9)), port.metric.map((x) => Math.round(x * 1e9)));
      const dflt = await sinkScores(model, { tokens });
      assert.deepEqual(dflt.ks, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      dflt.rates.forEach((v, i) => near(v, port.first10[i], 1e-9, `first10 ${i}`));
      const mean = (l: number, h: number, k: number) => port.importance.reduce((s, p) => s + p[l][h][k], 0) / tokens.length;
      all.alpha.forEach((layer, l) => layer.forEach((curve, h) => curve.forEach((v, k) => near(v, mean(l, h, k), 1e-6, `alpha ${l}.${h} k=${k + 1}`))));
      assert.ok(all.rates[0] > 30 && all.rates[0] > all.rates[5], `bb has sinks on the first token (rate ${all.rates[0]})`);
    } finally {
      model.dispose();
    }
  });

  it("Gu et al.'s residual, key and value norms (eval_activations_open_source.py) on the recall model (llama, rotary keys)", async () => {
    const model = await loadModel('fixtures/models/recall');
    try {
      const tokens = Array.from({ length: 4 }, (_, b) => Array.from({ length: 20 }, (_, t) => (t === 0 ? 1 : 3 + ((b * 7 + t * 5) % 60))));
      const L = model.cfg.n_layers;
      const hidden = [...Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`), 'ln_final.hook_normalized'];
      const kNames = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_rot_k`);
      const vNames = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_v`);
      const acts = await cached(model, tokens, [...hidden, ...kNames, ...vNames, 'blocks.0.attn.hook_pattern']);
      // past_key_values layout [sample][layer][head][pos][dh] (keys after rotary, as HF caches them)
      const kv = (names: string[]) => tokens.map((_, b) => names.map((n) => (acts[n][b] as number[][][])[0].map((_, h) => acts[n][b].map((pos: number[][]) => pos[h]))));
      const port = runPort<{ norms: number[][]; key_norms: number[][]; value_norms: number[][] }>('gu_sink', {
        attentions: tokens.map((_, b) => [acts['blocks.0.attn.hook_pattern'][b]]),
        eps: 0.3,
        hidden_states: tokens.map((_, b) => hidden.map((n) => acts[n][b])),
        keys: kv(kNames),
        values: kv(vNames),
      });
      const rn = await residualNorms(model, { tokens });
      assert.deepEqual(rn.names, hidden);
      closeGrid(rn.norms, port.norms, 1e-4, 'residual norms');
      const kvn = await keyValueNorms(model, { tokens }, { batchSize: 3 });
      closeGrid(kvn.keys, port.key_norms, 1e-4, 'key norms (pre-rotary hook_k vs post-rotary port)');
      closeGrid(kvn.values, port.value_norms, 1e-4, 'value norms');
      const pre = await residualNorms(model, { tokens }, { states: 'resid-pre' });
      closeGrid(pre.norms, port.norms.slice(0, L), 1e-4, 'resid-pre variant');
    } finally {
      model.dispose();
    }
  });

  it("ACT's hidden-sink rule (llama_modelling_aug.py) on the ioi and recall models", async () => {
    for (const [dir, vocab] of [['fixtures/models/ioi', 150], ['fixtures/models/recall', 75]] as const) {
      const model = await loadModel(dir);
      try {
        const tokens = Array.from({ length: 5 }, (_, b) => Array.from({ length: 16 }, (_, t) => (t === 0 ? (model.bosTokenId() ?? 0) : 2 + ((b * 11 + t * 7 + t * t) % (vocab - 2)))));
        const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
        const acts = await cached(model, tokens, names);
        const r0 = await hiddenSinkScores(model, { tokens });
        const port = runPort<{ sinks: number[][][][]; means: number[][][][] }>('act_hidden_sinks', { attentions: byPrompt(names.map((n) => acts[n])), thres: 0.1 });
        // a column mean that is the threshold itself (a one-hot column over 10 queries gives exactly 0.1) is
        // decided by the last float bit of the sum, which differs between numpy's and tfjs's order: leave
        // those heads out of the exact comparison (none of the others is within 1e-6 of it)
        const atThreshold = (b: number, l: number, h: number) => port.means[b][l][h].some((m) => Math.abs(m - 0.1) < 1e-6);
        for (const [b, row] of port.sinks.entries()) row.forEach((heads, l) => heads.forEach((_, h) => {
          if (atThreshold(b, l, h)) port.sinks[b][l][h] = r0.perPrompt[b][l][h];
        }));
        assert.deepEqual(r0.perPrompt, port.sinks, dir);
        const r = r0;
        const mass = r.scores.scores.map((row, l) => row.map((_, h) => port.sinks.reduce((s, p, b) => s + p[l][h].reduce((t, j) => t + port.means[b][l][h][j], 0), 0) / tokens.length));
        closeGrid(r.scores.scores, mass, 1e-6, `${dir} hidden-sink mass`);
        assert.ok(port.sinks.flat(2).some((s) => s.length > 0), `${dir}: some head has hidden sinks`);
      } finally {
        model.dispose();
      }
    }
  });

  it("VAR's sink tokens (DimProspector) and the sink-dimension ranking on the var-group model", async () => {
    const model = await loadModel('fixtures/models/var-group');
    try {
      const tokens = Array.from({ length: 4 }, (_, b) => Array.from({ length: 24 }, (_, t) => (t === 0 ? (model.bosTokenId() ?? 0) : 1 + ((b * 5 + t * 3) % 37))));
      const L = model.cfg.n_layers;
      const names = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`);
      const acts = await cached(model, tokens, names);
      const md = await massiveDims(model, { tokens }, { top: 2 });
      const dims = md.top.map((d) => d.dim);
      const tau = 0.5 * md.top[0].score;
      const port = runPort<{ phi: number[][][]; indices: number[][][]; per_dim: number[] }>('var_dims', { hidden: names.map((n) => acts[n]), dims, tau });
      md.perDim.forEach((v, d) => near(v, port.per_dim[d], 1e-4 * Math.max(1, v), `per-dim ${d}`));
      const vs = await varSinks(model, { tokens }, dims, { tau });
      assert.deepEqual(vs.map((x) => x.layer), Array.from({ length: L - 2 }, (_, i) => i + 2));
      for (const { layer, phi, sink } of vs) {
        closeGrid(phi, port.phi[layer], 1e-4 * tau, `phi layer ${layer}`);
        const idx = sink.flatMap((row, b) => row.flatMap((s, t) => (s ? [[b, t]] : [])));
        assert.deepEqual(idx, port.indices[layer], `sink tokens layer ${layer}`);
      }
      assert.ok(vs.some((x) => x.sink.flat().includes(true)), 'some token is a sink');
      for (const x of await varSinks(model, { tokens }, dims)) assert.deepEqual(x.sink, x.phi.map((row) => row.map((v) => v > 20)), 'default tau = 20');
    } finally {
      model.dispose();
    }
  });

  it("Sun et al.'s layer-wise top-3 and median magnitudes (main_llm.py exp2) on the bb and var-group models", async () => {
    for (const dir of ['fixtures/models/bb', 'fixtures/models/var-group']) {
      const model = await loadModel(dir);
      try {
        const tokens = dir.endsWith('bb') ? bbBatch(4, 99) : Array.from({ length: 3 }, (_, b) => Array.from({ length: 17 }, (_, t) => 1 + ((b + 3 * t) % 37)));
        const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.hook_resid_post`);
        const acts = await cached(model, tokens, names);
        const port = runPort<{ mean: number[][] }>('sun_massive', { feats: tokens.map((_, b) => names.map((n) => acts[n][b])) });
        const mine = await activationMagnitudes(model, { tokens }, { batchSize: 2 });
        mine.top.forEach((t, l) => t.forEach((v, i) => near(v, port.mean[i][l], 1e-5 * Math.max(1, v), `${dir} top${i + 1} layer ${l}`)));
        mine.median.forEach((v, l) => near(v, port.mean[3][l], 1e-6, `${dir} median layer ${l}`));
      } finally {
        model.dispose();
      }
    }
  });
});
