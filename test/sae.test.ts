import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { SparseAutoencoder, mm, paperSAE, reluSAE, topKSAE } from '../src/sae/models.js';
import { trainSAE } from '../src/sae/train.js';
import { saeMetrics } from '../src/sae/metrics.js';
import { collectActivations, collectHeadOutputs } from '../src/sae/collect.js';
import { saeCodes } from '../src/sae/discrete.js';
import { ConfigError, ShapeError, ValueError } from '../src/errors.js';
import { rng } from '../src/util/random.js';
import { existsSync, readFileSync } from 'node:fs';
import { loadModel, randomModel } from '../src/model/index.js';
import type { HookName } from '../src/hooks/names.js';
import { generateIOI } from '../src/data/ioi.js';
import { ioiTokenizerOf, leftPad } from '../src/circuits/problem.js';
import { runPort } from './helpers/port.js';

const close = (a: number, b: number, tol = 1e-5, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);

/** A tensor's values (read asynchronously), disposing it. */
async function take(t: tf.Tensor): Promise<number[]> {
  const a = Array.from(await t.data());
  t.dispose();
  return a;
}

async function arr2(t: tf.Tensor): Promise<number[][]> {
  return (await t.array()) as number[][];
}

/** A rank-2 tensor's rows, disposing it. */
async function rows(t: tf.Tensor): Promise<number[][]> {
  const a = (await t.array()) as number[][];
  t.dispose();
  return a;
}

async function scalar(t: tf.Tensor): Promise<number> {
  return (await t.data())[0];
}

/** Tiny weights: d_in 2, d_sae 3. */
function tinyWeights() {
  return {
    W_enc: [
      [1, 0, 0.6],
      [0, 1, 0.8],
    ],
    b_enc: [0.1, -0.2, 0],
    W_dec: [
      [1, 0],
      [0, 1],
      [0.6, 0.8],
    ],
    b_dec: [0.5, -0.5],
  };
}

describe('sae/models', () => {
  it('paper SAE: f = ReLU(W_e (x - b) + b_e), x_hat = W_d f + b, loss = MSE + lambda mean ||f||_1 (hand-computed)', async () => {
    const before = tf.memory().numTensors;
    const sae = new SparseAutoencoder({ architecture: 'paper', dIn: 2, dSae: 3, lambda: 0.02 }, tinyWeights());
    const x = tf.tensor2d([
      [1.5, 0.5],
      [0.5, -1.5],
    ]);
    // x - b: [1, 1], [0, -1]
    // pre: [1+0.1, 1-0.2, 0.6+0.8] = [1.1, 0.8, 1.4]; [0+0.1, -1-0.2, -0.8] = [0.1, -1.2, -0.8]
    const f = [
      [1.1, 0.8, 1.4],
      [0.1, 0, 0],
    ];
    // recon = f W_dec + b: row0 = [1.1 + 0.84, 0.8 + 1.12] + [0.5, -0.5] = [2.44, 1.42]; row1 = [0.1, 0] + b = [0.6, -0.5]
    const recon = [
      [2.44, 1.42],
      [0.6, -0.5],
    ];
    const { features, recon: r } = sae.forward(x);
    (await arr2(features)).forEach((row, i) => row.forEach((v, j) => close(v, f[i][j], 1e-6)));
    (await arr2(r)).forEach((row, i) => row.forEach((v, j) => close(v, recon[i][j], 1e-6)));
    const diffs = [2.44 - 1.5, 1.42 - 0.5, 0.6 - 0.5, -0.5 + 1.5];
    const mse = diffs.reduce((s, v) => s + v * v, 0) / 4;
    const l1 = (1.1 + 0.8 + 1.4 + 0.1) / 2;
    const l = sae.loss(x);
    close(await scalar(l.mse), mse, 1e-6);
    close(await scalar(l.l1), l1, 1e-6);
    close(await scalar(l.loss), mse + 0.02 * l1, 1e-6);
    tf.dispose([features, r, l.loss, l.mse, l.l1, x]);
    sae.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('standard SAE does not subtract b_dec from the input', async () => {
    const sae = new SparseAutoencoder({ architecture: 'standard', dIn: 2, dSae: 3 }, tinyWeights());
    assert.equal(sae.applyBDecToInput, false);
    assert.equal(sae.lambda, 0.01);
    const x = tf.tensor2d([[1.5, 0.5]]);
    const f = sae.encode(x);
    // pre = [1.5+0.1, 0.5-0.2, 0.9+0.4] = [1.6, 0.3, 1.3]
    (await arr2(f))[0].forEach((v, j) => close(v, [1.6, 0.3, 1.3][j], 1e-6));
    tf.dispose([x, f]);
    sae.dispose();
  });

  it('TopK keeps exactly the k largest pre-activations (fewer only when some of them are <= 0)', async () => {
    const w = {
      W_enc: tf.eye(4),
      b_enc: tf.zeros([4]),
      W_dec: tf.eye(4),
      b_dec: tf.zeros([4]),
    };
    const sae = new SparseAutoencoder({ architecture: 'topk', dIn: 4, dSae: 4, k: 2, lambda: 0.1 }, w);
    tf.dispose(Object.values(w));
    const x = tf.tensor2d([
      [0.3, 2, 1, 0.5],
      [4, 3, 2, 1],
      [-1, 0.5, -2, -3],
    ]);
    const f = await arr2(sae.encode(x));
    assert.deepEqual(f[0].map((v) => v > 0), [false, true, true, false]);
    close(f[0][1], 2);
    close(f[0][2], 1);
    assert.deepEqual(f[1].map((v) => v > 0), [true, true, false, false]);
    assert.deepEqual(f[2].map((v) => v > 0), [false, true, false, false]); // 2nd largest is -1 -> ReLU 0
    // on random data every row has exactly k active (pre-activations positive by a large bias)
    const big = topKSAE(8, 16, 3, { seed: 4 });
    big.params.b_enc.assign(tf.fill([16], 10));
    const xr = tf.randomNormal([20, 8], 0, 1, 'float32', 7) as tf.Tensor2D;
    const fr = await arr2(big.encode(xr));
    for (const row of fr) assert.equal(row.filter((v) => v > 0).length, 3);
    // gradients flow only through the selected features
    const { grads, value } = tf.variableGrads(() => sae.loss(x).loss, sae.variables());
    const gb = await grads[sae.params.b_enc.name].data();
    // feature 3 is never selected: no gradient on its encoder bias
    assert.equal(gb[3], 0);
    assert.ok(Math.abs(gb[1]) > 0);
    tf.dispose([x, xr, value, ...Object.values(grads)]);
    sae.dispose();
    big.dispose();
  });

  it('initialisation is seeded and unit norm; bad options raise typed errors', async () => {
    const a = paperSAE(6, 10, { seed: 1 });
    const b = paperSAE(6, 10, { seed: 1 });
    const c = paperSAE(6, 10, { seed: 2 });
    const [wa, wb, wc] = await Promise.all([a, b, c].map((s) => s.toArrays()));
    assert.deepEqual(wa.W_enc, wb.W_enc);
    assert.notDeepEqual(wa.W_enc, wc.W_enc);
    for (const v of await take(tf.norm(a.params.W_enc, 'euclidean', 0))) close(v, 1, 1e-5);
    [a, b, c].forEach((s) => s.dispose());
    assert.throws(() => topKSAE(4, 4, 5), ConfigError);
    assert.throws(() => reluSAE(4, 0), ConfigError);
    assert.throws(() => new SparseAutoencoder({ architecture: 'paper', dIn: 2, dSae: 2, lambda: -1 }), ConfigError);
    assert.throws(() => new SparseAutoencoder({ architecture: 'paper', dIn: 2, dSae: 2, applyBDecToInput: false }), ConfigError);
    const s = reluSAE(4, 3);
    const bad = tf.zeros([2, 5]) as tf.Tensor2D;
    assert.throws(() => s.encode(bad), ShapeError);
    const ints = tf.zeros([2, 4], 'int32') as tf.Tensor2D;
    assert.throws(() => s.encode(ints), ValueError);
    tf.dispose([bad, ints]);
    s.dispose();
    assert.throws(() => new SparseAutoencoder({ architecture: 'standard', dIn: 2, dSae: 3 }, { ...tinyWeights(), W_dec: [[1, 0]] }), ShapeError);
  });

  it('mm has the gradient of tf.matMul (computed without transpose flags)', async () => {
    const before = tf.memory().numTensors;
    const a = tf.tidy(() => tf.variable(tf.randomNormal([3, 5], 0, 1, 'float32', 1)));
    const b = tf.tidy(() => tf.variable(tf.randomNormal([5, 4], 0, 1, 'float32', 2)));
    const w = tf.randomNormal([3, 4], 0, 1, 'float32', 3);
    const f1 = () => tf.sum(tf.mul(tf.matMul(a, b), w)) as tf.Scalar;
    const f2 = () => tf.sum(tf.mul(mm(a as tf.Tensor2D, b as tf.Tensor2D), w)) as tf.Scalar;
    const g1 = tf.variableGrads(f1, [a, b]);
    const g2 = tf.variableGrads(f2, [a, b]);
    close(await scalar(g1.value), await scalar(g2.value), 1e-5);
    for (const v of [a, b]) {
      const x1 = await g1.grads[v.name].data();
      const x2 = await g2.grads[v.name].data();
      assert.equal(x1.length, x2.length);
      for (let i = 0; i < x1.length; i++) close(x1[i], x2[i], 1e-5);
    }
    tf.dispose([a, b, w, g1.value, g2.value, ...Object.values(g1.grads), ...Object.values(g2.grads)]);
    assert.equal(tf.memory().numTensors, before);
  });

  it('projectGradients removes the component parallel to each feature vector', async () => {
    const sae = paperSAE(5, 7, { seed: 3 });
    const x = tf.randomNormal([9, 5], 0, 1, 'float32', 1) as tf.Tensor2D;
    const { grads, value } = tf.variableGrads(() => sae.loss(x).loss, sae.variables());
    const named = { W_enc: grads[sae.params.W_enc.name], W_dec: grads[sae.params.W_dec.name] };
    const proj = sae.projectGradients(named);
    const dotEnc = await take(tf.sum(tf.mul(proj.W_enc, sae.params.W_enc), 0));
    const dotDec = await take(tf.sum(tf.mul(proj.W_dec, sae.params.W_dec), 1));
    for (const v of [...dotEnc, ...dotDec]) close(v, 0, 1e-5);
    tf.dispose([x, value, ...Object.values(grads), proj.W_enc, proj.W_dec]);
    sae.dispose();
  });
});

describe('sae/train', () => {
  it('keeps unit norms after every step, does not leak tensors, and is reproducible', async () => {
    const x = tf.randomNormal([40, 6], 0, 1, 'float32', 11) as tf.Tensor2D;
    const run = async (arch: 'paper' | 'standard' | 'topk', steps: number, seed: number) => {
      const sae = new SparseAutoencoder({ architecture: arch, dIn: 6, dSae: 12, k: arch === 'topk' ? 3 : undefined, seed: 2 });
      const before = tf.memory().numTensors;
      const normTensors: tf.Tensor[] = [];
      const res = await trainSAE(sae, x, {
        steps,
        batchSize: 16,
        lr: 0.01,
        seed,
        logEvery: 1,
        onProgress: () => {
          normTensors.push(tf.norm(sae.params.W_dec, 'euclidean', 1));
          if (arch === 'paper') normTensors.push(tf.norm(sae.params.W_enc, 'euclidean', 0));
        },
      });
      const normsSeen = (await Promise.all(normTensors.map(take))).flat();
      assert.equal(tf.memory().numTensors, before, `${arch}: tensors leaked over ${steps} steps`);
      return { sae, res, normsSeen };
    };
    for (const arch of ['paper', 'standard', 'topk'] as const) {
      const a = await run(arch, 12, 5);
      assert.equal(a.res.history.loss.length, 12);
      assert.ok(a.normsSeen.length > 0);
      for (const v of a.normsSeen) close(v, 1, 1e-5, `${arch} norm`);
      const b = await run(arch, 12, 5);
      assert.deepEqual((await a.sae.toArrays()).W_enc, (await b.sae.toArrays()).W_enc);
      const c = await run(arch, 12, 6); // other shuffle seed
      assert.notDeepEqual((await a.sae.toArrays()).W_enc, (await c.sae.toArrays()).W_enc);
      [a, b, c].forEach((r) => r.sae.dispose());
    }
    // a batch function: disposed after use, no leaks
    const sae = reluSAE(6, 12, { seed: 1 });
    const before = tf.memory().numTensors;
    const res = await trainSAE(sae, (step) => tf.randomNormal([8, 6], 0, 1, 'float32', step) as tf.Tensor2D, { steps: 15 });
    assert.equal(res.metrics, undefined);
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(trainSAE(sae, x, {}), ConfigError);
    await assert.rejects(trainSAE(sae, tf.zeros([3, 5]) as tf.Tensor2D, { steps: 1 }), ShapeError);
    sae.dispose();
    x.dispose();
  });

  it("decoderNorm 'input' (the authors' code) keeps each input dimension's decoder weights unit norm", async () => {
    const x = tf.randomNormal([20, 5], 0, 1, 'float32', 4) as tf.Tensor2D;
    const sae = paperSAE(5, 8, { seed: 1, decoderNorm: 'input' });
    for (const v of await take(tf.norm(sae.params.W_dec, 'euclidean', 0))) close(v, 1, 1e-5, 'init');
    await trainSAE(sae, x, { steps: 10, batchSize: 20, lr: 0.05, progress: false });
    for (const v of await take(tf.norm(sae.params.W_dec, 'euclidean', 0))) close(v, 1, 1e-5, 'trained');
    for (const v of await take(tf.norm(sae.params.W_enc, 'euclidean', 0))) close(v, 1, 1e-5, 'encoder');
    // feature rows are not normalised in this variant (8 features over 5 dims: row norms average sqrt(5/8))
    const rows = await take(tf.norm(sae.params.W_dec, 'euclidean', 1));
    assert.ok(rows.some((v) => Math.abs(v - 1) > 0.05));
    assert.throws(() => new SparseAutoencoder({ architecture: 'standard', dIn: 2, dSae: 2, decoderNorm: 'input' }), ConfigError);
    sae.dispose();
    x.dispose();
  });

  it('an AbortSignal stops training after the current step, keeping what was learned, without leaks', async () => {
    const x = tf.randomNormal([20, 4], 0, 1, 'float32', 3) as tf.Tensor2D;
    const sae = paperSAE(4, 8, { seed: 0 });
    const before = tf.memory().numTensors;
    const ac = new AbortController();
    const res = await trainSAE(sae, x, {
      steps: 100,
      batchSize: 5,
      logEvery: 1,
      progress: false,
      signal: ac.signal,
      onProgress: (p) => {
        if (p.step === 4) ac.abort();
      },
    });
    assert.equal(res.aborted, true);
    assert.equal(res.steps, 5);
    assert.equal(res.history.step.length, 5);
    assert.ok(res.metrics);
    assert.equal(tf.memory().numTensors, before);
    sae.dispose();
    x.dispose();
  });

  it('full batch: loss decreases and epochs count passes', async () => {
    const x = tf.randomNormal([30, 4], 0, 1, 'float32', 3) as tf.Tensor2D;
    const sae = paperSAE(4, 8, { seed: 0 });
    const res = await trainSAE(sae, x, { epochs: 200, batchSize: 30, lr: 0.01, logEvery: 1 });
    assert.equal(res.steps, 200);
    assert.equal(res.epochs, 200);
    assert.ok(res.history.loss[199] < 0.5 * res.history.loss[0], `${res.history.loss[0]} -> ${res.history.loss[199]}`);
    sae.dispose();
    x.dispose();
  });

  it('recovers planted features from sparse nonnegative combinations (mean max-cosine > 0.9)', async function () {
    this.timeout(60000);
    const d = 16;
    const F = 32;
    const n = 2048;
    const r = rng(1);
    const dict: number[][] = [];
    for (let i = 0; i < F; i++) {
      const v = Array.from({ length: d }, () => r.normal());
      const nn = Math.hypot(...v);
      dict.push(v.map((a) => a / nn));
    }
    const X = new Float32Array(n * d);
    for (let e = 0; e < n; e++) {
      for (let i = 0; i < F; i++) {
        if (r.next() < 3 / F) {
          const a = 0.5 + r.next();
          for (let j = 0; j < d; j++) X[e * d + j] += a * dict[i][j];
        }
      }
    }
    const x = tf.tensor2d(X, [n, d]);
    for (const arch of ['paper', 'standard'] as const) {
      const sae = new SparseAutoencoder({ architecture: arch, dIn: d, dSae: 64, lambda: 0.03, seed: 3 });
      const res = await trainSAE(sae, x, { steps: 1000, batchSize: 128, lr: 5e-3, seed: 5, progress: false });
      const W = (await sae.params.W_dec.array()) as number[][];
      let total = 0;
      for (const v of dict) {
        let best = -1;
        for (const w of W) best = Math.max(best, v.reduce((s, a, j) => s + a * w[j], 0) / Math.hypot(...w));
        total += best;
      }
      const meanMaxCos = total / F;
      assert.ok(meanMaxCos > 0.9, `${arch}: mean max-cosine ${meanMaxCos}`);
      assert.ok(res.metrics!.explainedVariance! > 0.8, `${arch}: explained variance ${res.metrics!.explainedVariance}`);
      sae.dispose();
    }
    x.dispose();
  });
});

describe('sae/metrics', () => {
  it('MSE, explained variance, L0 and dead features by hand', async () => {
    // identity-like SAE on 2-d data with 3 features; feature 2 never fires
    const sae = new SparseAutoencoder(
      { architecture: 'standard', dIn: 2, dSae: 3 },
      { W_enc: [[1, 0, -1], [0, 1, -1]], b_enc: [0, 0, -10], W_dec: [[1, 0], [0, 0.5], [1, 1]], b_dec: [0, 0] },
    );
    const x = tf.tensor2d([
      [1, 2],
      [3, 0],
      [0, 4],
    ]);
    // f = relu(x W_enc + b): [1,2,0], [3,0,0], [0,4,0]; recon = [1,1], [3,0], [0,2]; residual = [0,1], [0,0], [0,2]
    const m = await saeMetrics(sae, x, { batchSize: 2 });
    close(m.mse, (1 + 4) / 6, 1e-6);
    // var(x): dim0 values 1,3,0 mean 4/3 -> var = (1+9+0)/3 - 16/9 = 14/9; dim1 values 2,0,4 mean 2 -> var = 20/3 - 4 = 8/3
    // var(r): dim0 0; dim1 values 1,0,2 mean 1 -> var = 5/3 - 1 = 2/3
    close(m.explainedVariance!, 1 - (2 / 3) / (14 / 9 + 8 / 3), 1e-6);
    close(m.l0, (2 + 1 + 1) / 3, 1e-6);
    assert.equal(m.deadFeatures, 1);
    assert.deepEqual(m.featureFrequency.map((v) => Math.round(v * 3)), [2, 2, 0]);
    assert.equal(m.n, 3);
    const c = tf.ones([2, 2]) as tf.Tensor2D;
    assert.equal((await saeMetrics(sae, c)).explainedVariance, null);
    tf.dispose([x, c]);
    sae.dispose();
  });
});


// ------------------------------------------------------------------ collection

const IOI = 'fixtures/models/ioi';

/** Left-padded IOI prompts of the shipped ioi model. */
function ioiBatch(model: Awaited<ReturnType<typeof loadModel>>, n: number, seed: number): { tokens: number[][]; attentionMask: number[][] } {
  const p = leftPad(generateIOI(ioiTokenizerOf(model), { n, seed }).tokens, 0);
  return { tokens: p.ids, attentionMask: p.attentionMask };
}

describe('sae/collect', () => {
  it('ioi model: head outputs equal a plain-JS port of the authors\' collection (hook_z W_O^h per position, mean over real positions, or the last)', async function () {
    this.timeout(60000);
    if (!existsSync(`${IOI}/model.safetensors`)) this.skip();
    const model = await loadModel(IOI);
    const batch = ioiBatch(model, 6, 3);
    const { n_layers: L, n_heads: H, d_model: D, d_head: dh } = model.cfg;
    const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z` as HookName);
    const { logits, cache } = await model.runWithCache(batch.tokens, { attentionMask: batch.attentionMask, namesFilter: names });
    const z = await Promise.all(names.map(async (n) => (await cache.values(n)).values)); // [b, p, H, dh] flat per layer
    const wo = await Promise.all(Array.from({ length: L }, (_, l) => model.params[`blocks.${l}.attn.W_O`].data())); // [H, dh, D]
    logits.dispose();
    cache.dispose();
    const T = batch.tokens[0].length;
    /** TransformerLens's head result at (b, p): z[b, p, h] @ W_O[h], then the mean over the chosen positions. */
    const port = (b: number, l: number, h: number, positions: number[]) =>
      Array.from({ length: D }, (_, m) => {
        let s = 0;
        for (const p of positions) for (let k = 0; k < dh; k++) s += z[l][((b * T + p) * H + h) * dh + k] * wo[l][(h * dh + k) * D + m];
        return s / positions.length;
      });
    const before = tf.memory().numTensors;
    for (const position of ['mean', 'last'] as const) {
      const out = await collectHeadOutputs(model, batch, { position, batchSize: 4 });
      assert.deepEqual(out.shape, [6, L * H, D]);
      const o = (await out.array()) as number[][][];
      out.dispose();
      batch.attentionMask.forEach((row, b) => {
        const real = row.map((v, p) => (v ? p : -1)).filter((p) => p >= 0);
        const positions = position === 'mean' ? real : [real[real.length - 1]];
        for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) port(b, l, h, positions).forEach((v, m) => close(o[b][l * H + h][m], v, 1e-4, `${position} b${b} ${l}.${h}[${m}]`));
      });
    }
    // a subset of heads comes back layer-major, whatever order it was asked in
    const sub = await collectHeadOutputs(model, batch, { heads: ['2.1', [0, 3], 'L1H0'] });
    const s = (await sub.array()) as number[][][];
    sub.dispose();
    const real0 = batch.attentionMask[0].map((v, p) => (v ? p : -1)).filter((p) => p >= 0);
    [[0, 3], [1, 0], [2, 1]].forEach(([l, h], i) => port(0, l, h, real0).forEach((v, m) => close(s[0][i][m], v, 1e-4)));
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(collectHeadOutputs(model, batch, { heads: ['3.0'] }), ValueError);
    await assert.rejects(collectHeadOutputs(model, batch, { heads: [] }), ValueError);
    await assert.rejects(collectHeadOutputs(model, { tokens: batch.tokens, attentionMask: [[1]] }), ShapeError);
    await assert.rejects(collectHeadOutputs(model, { tokens: [[1, 2]], attentionMask: [[0, 0]] }), ValueError);
    await assert.rejects(collectHeadOutputs(model, batch, { position: 'first' as never }), ValueError);
    model.dispose();
  });

  it('collectActivations: one row per real position, or the per-prompt mean / last, of the cached hook (rank 4 flattened)', async () => {
    const cfg = JSON.parse(readFileSync('fixtures/reference/gpt2/config.json', 'utf8'));
    const model = randomModel(cfg, { seed: 2, std: 0.3 });
    const tokens = [
      [0, 4, 7],
      [2, 3, 5],
    ];
    const mask = [
      [0, 1, 1],
      [1, 1, 1],
    ];
    const hook = 'blocks.1.hook_resid_pre' as HookName;
    const { logits, cache } = await model.runWithCache(tokens, { attentionMask: mask, namesFilter: [hook, 'blocks.0.attn.hook_z'] });
    const a = (await cache.get(hook).array()) as number[][][];
    const zz = (await cache.get('blocks.0.attn.hook_z').array()) as number[][][][];
    logits.dispose();
    cache.dispose();
    const before = tf.memory().numTensors;
    const all = await rows(await collectActivations(model, { tokens, attentionMask: mask }, hook, { batchSize: 1 }));
    const want = [a[0][1], a[0][2], a[1][0], a[1][1], a[1][2]];
    assert.equal(all.length, 5);
    all.forEach((row, i) => row.forEach((v, j) => close(v, want[i][j], 1e-5)));
    const mean = await rows(await collectActivations(model, { tokens, attentionMask: mask }, hook, { position: 'mean' }));
    mean[0].forEach((v, j) => close(v, (a[0][1][j] + a[0][2][j]) / 2, 1e-5));
    const last = await rows(await collectActivations(model, { tokens, attentionMask: mask }, 'blocks.0.attn.hook_z', { position: 'last' }));
    assert.equal(last[1].length, model.cfg.n_heads * model.cfg.d_head);
    last[1].forEach((v, j) => close(v, zz[1][2][Math.floor(j / model.cfg.d_head)][j % model.cfg.d_head], 1e-5));
    assert.equal(tf.memory().numTensors, before);
    model.dispose();
  });
});

describe('sae/collect on random models', () => {
  for (const fam of ['gpt2', 'llama'] as const) {
    it(`${fam}: a left-padded prompt gives the head outputs of the prompt alone; chunking changes nothing`, async () => {
      const cfg = JSON.parse(readFileSync(`fixtures/reference/${fam}/config.json`, 'utf8'));
      const model = randomModel(cfg, { seed: 3, std: 0.3 });
      const tokens = [
        [0, 0, 5, 6, 7],
        [1, 2, 3, 4, 5],
      ];
      const mask = [
        [0, 0, 1, 1, 1],
        [1, 1, 1, 1, 1],
      ];
      const before = tf.memory().numTensors;
      const head = [`${model.cfg.n_layers - 1}.${model.cfg.n_heads - 1}`];
      const one = await collectHeadOutputs(model, { tokens: [[5, 6, 7]] }, { heads: head });
      const alone = await rows(tf.squeeze(one, [1]));
      one.dispose();
      const padded = await collectHeadOutputs(model, { tokens, attentionMask: mask }, { batchSize: 1 });
      const tokT = tf.tensor2d(tokens, undefined, 'int32');
      const whole = await collectHeadOutputs(model, { tokens: tokT, attentionMask: mask });
      tokT.dispose();
      const [p, w] = (await Promise.all([padded.array(), whole.array()])) as number[][][][];
      tf.dispose([padded, whole]);
      const last = p[0].length - 1;
      alone[0].forEach((v, d) => close(v, p[0][last][d], 1e-4, 'padding'));
      p.forEach((r, b) => r.forEach((vec, i) => vec.forEach((v, d) => close(v, w[b][i][d], 1e-6, 'chunking'))));
      assert.equal(tf.memory().numTensors, before);
      model.dispose();
    });
  }
});

// ------------------------------------------------------------------ the authors' SAE and training loop, ported

interface PortSae {
  losses: number[][];
  weights: { enc_w: number[][]; enc_b: number[]; dec_w: number[][]; bias: number[] };
  codes: number[];
  final: number[];
}

const transpose = (m: number[][]) => m[0].map((_, j) => m.map((r) => r[j]));

describe("sae: the authors' SAE and loop against a numpy port (head outputs of the shipped ioi model)", () => {
  for (const decoderNorm of ['input', 'feature'] as const) {
    it(`decoderNorm '${decoderNorm}': loss at every step, trained weights and codes equal the port's`, async function () {
      this.timeout(60000);
      if (!existsSync(`${IOI}/model.safetensors`)) this.skip();
      const model = await loadModel(IOI);
      const acts = await collectHeadOutputs(model, ioiBatch(model, 8, 5));
      const D = model.cfg.d_model;
      const x = tf.reshape(acts, [-1, D]) as tf.Tensor2D; // [8 * 12, 64]: one row per prompt and head, as the shared SAE sees them
      acts.dispose();
      const sae = paperSAE(D, 48, { seed: 7, lambda: 0.02, decoderNorm });
      const w0 = await sae.toArrays();
      const toRows = (a: Float32Array, r: number, c: number) => Array.from({ length: r }, (_, i) => Array.from(a.subarray(i * c, (i + 1) * c)));
      const steps = 40;
      const port = runPort<PortSae>('sae_circuits', {
        op: 'sae',
        x: await x.array(),
        weights: { enc_w: transpose(toRows(w0.W_enc, D, 48)), enc_b: Array.from(w0.b_enc), dec_w: transpose(toRows(w0.W_dec, 48, D)), bias: Array.from(w0.b_dec) },
        lambda: 0.02,
        lr: 1e-3,
        steps,
        decoderNorm,
      });
      const before = tf.memory().numTensors;
      const res = await trainSAE(sae, x, { steps, batchSize: x.shape[0], lr: 1e-3, logEvery: 1, progress: false, finalMetrics: false });
      assert.equal(tf.memory().numTensors, before);
      // float32 against float64: relative differences grow to about 1e-5 over the 40 Adam steps
      res.history.loss.forEach((v, i) => close(v, port.losses[i][0], 3e-5 * port.losses[i][0], `loss at step ${i}`));
      res.history.mse.forEach((v, i) => close(v, port.losses[i][1], 3e-5 * port.losses[i][1], `mse at step ${i}`));
      close(res.history.loss[0], port.losses[0][0], 1e-6 * port.losses[0][0], 'loss before training');
      assert.ok(port.losses[steps - 1][0] < 0.9 * port.losses[0][0], 'the loss falls');
      const w = await sae.toArrays();
      // float32 against float64: most weights agree to ~1e-7; but pre-activations come within 2e-7 of 0
      // (seen in the port), where rounding gates a row differently, and Adam carries the difference
      // (up to 2e-4 on one feature's weights, 1.4e-5 on the shared bias, with decoderNorm 'input')
      const diffs = (a: Float32Array, b: number[][] | number[]) => Array.from(a, (v, i) => Math.abs(v - (b.flat() as number[])[i])).sort((p, q) => p - q);
      for (const [name, a, b] of [
        ['W_enc', w.W_enc, transpose(port.weights.enc_w)],
        ['W_dec', w.W_dec, transpose(port.weights.dec_w)],
        ['b_enc', w.b_enc, port.weights.enc_b],
        ['b_dec', w.b_dec, port.weights.bias],
      ] as Array<[string, Float32Array, number[][] | number[]]>) {
        const d = diffs(a, b);
        assert.ok(d[Math.floor(d.length / 2)] < 1e-5 && d[d.length - 1] < 1e-3, `${name}: median ${d[Math.floor(d.length / 2)]}, max ${d[d.length - 1]}`);
      }
      assert.deepEqual(await saeCodes(sae, x), port.codes);
      x.dispose();
      sae.dispose();
      model.dispose();
    });
  }
});
