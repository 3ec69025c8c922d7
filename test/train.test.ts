import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { lrAt, train, defaultDecay } from '../src/zoo/train.js';
import { tokenNll } from '../src/zoo/common.js';
import { randomModel } from '../src/model/index.js';
import { makeBigramBackcopy, sampleBigramBackcopy } from '../src/data/bigram-backcopy.js';
import { ConfigError, ValueError } from '../src/errors.js';
import { rng } from '../src/util/random.js';

const near = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

describe('training loop', () => {
  let prevBackend = '';
  before(async () => {
    prevBackend = tf.getBackend();
    try {
      await import('@tensorflow/tfjs-backend-wasm');
      await tf.setBackend('wasm');
    } catch {
      /* stay on the current backend */
    }
    const { registerMissingKernels } = await import('../src/backend/kernels.js');
    registerMissingKernels(tf.getBackend());
  });
  after(async () => {
    await tf.setBackend(prevBackend);
  });

  it('learning-rate schedule: linear warmup then cosine (hand values)', () => {
    const o = { lr: 1, steps: 10, warmupSteps: 2, minLrRatio: 0.1 };
    near(lrAt(0, o), 0.5, 1e-12, 'warmup 0');
    near(lrAt(1, o), 1.0, 1e-12, 'warmup 1');
    near(lrAt(2, o), 1.0, 1e-12, 'first cosine step');
    // (5 - 2) / 7 of the way: 0.1 + 0.9 * 0.5 * (1 + cos(3 pi / 7)), cos(3 pi / 7) = 0.2225209340
    near(lrAt(5, o), 0.1 + 0.45 * 1.222520934, 1e-9, 'mid cosine');
    near(lrAt(9, o), 0.1, 1e-12, 'last step');
    near(lrAt(5, { ...o, schedule: 'constant' }), 1, 0, 'constant');
    near(lrAt(0, { lr: 3e-4, steps: 100 }), 3e-4, 1e-15, 'no warmup starts at lr');
    // midpoint of a 0-warmup, 0-floor cosine is lr / 2
    near(lrAt(50, { lr: 2, steps: 101, minLrRatio: 0 }), 1, 1e-12, 'cosine midpoint');
  });

  it('AdamW matches a hand-computed update for one scalar', async () => {
    const p = tf.variable(tf.scalar(1.0), true, 'adamw_p');
    const before = tf.memory().numTensors;
    const res = await train({
      params: { p },
      lossFn: () => tf.square(tf.sub(p, 3)) as tf.Scalar,
      batches: () => null,
      steps: 1,
      lr: 0.1,
      schedule: 'constant',
      weightDecay: 0.5,
      betas: [0.9, 0.999],
      eps: 1e-8,
      decay: () => true,
      progressLabel: false,
    });
    // g = 2 (1 - 3) = -4; m = -0.4, v = 0.016; mhat = -4, vhat = 16; step = -4 / (4 + 1e-8)
    // p = 1 * (1 - 0.1 * 0.5) - 0.1 * (-1) = 1.05
    near((await p.data())[0], 1.05, 1e-6, 'p after 1 step');
    near(res.loss[0], 4, 1e-6, 'loss at p = 1');
    near(res.gradNorm[0], 4, 1e-6, 'grad norm');
    assert.equal(tf.memory().numTensors, before);
    // Two more steps against a plain-number AdamW reference.
    await train({
      params: { p },
      lossFn: () => tf.square(tf.sub(p, 3)) as tf.Scalar,
      batches: () => null,
      steps: 3,
      lr: 0.1,
      schedule: 'constant',
      weightDecay: 0.5,
      decay: () => true,
      progressLabel: false,
      betas: [0.9, 0.999],
    });
    let x = 1.05;
    let m = 0;
    let v = 0;
    for (let t = 1; t <= 3; t++) {
      const g = 2 * (x - 3);
      m = 0.9 * m + 0.1 * g;
      v = 0.999 * v + 0.001 * g * g;
      const upd = m / (1 - 0.9 ** t) / (Math.sqrt(v / (1 - 0.999 ** t)) + 1e-8);
      x = x * (1 - 0.1 * 0.5) - 0.1 * upd;
    }
    near((await p.data())[0], x, 1e-5, 'p after 3 more steps');
    p.dispose();
  });

  it('no decay on biases/norm weights by default', () => {
    const v2 = tf.variable(tf.zeros([2, 2]));
    const v1 = tf.variable(tf.zeros([2]));
    assert.equal(defaultDecay('blocks.0.attn.W_Q', v2), true);
    assert.equal(defaultDecay('blocks.0.attn.b_Q', v2), false);
    assert.equal(defaultDecay('blocks.0.ln1.w', v1), false);
    assert.equal(defaultDecay('unembed.b_U', v1), false);
    tf.dispose([v1, v2]);
  });

  it('fits XOR with a 2-layer MLP to loss < 0.05, tensor count stable across steps', async () => {
    const r = rng(1);
    const init = (shape: number[], scale: number) => tf.tensor(Array.from({ length: shape.reduce((a, b) => a * b) }, () => scale * r.normal()), shape);
    const params = {
      W1: tf.variable(init([2, 8], 1)),
      b1: tf.variable(tf.zeros([8])),
      W2: tf.variable(init([8, 1], 0.5)),
      b2: tf.variable(tf.zeros([1])),
    };
    const X = tf.tensor2d([[0, 0], [0, 1], [1, 0], [1, 1]]);
    const Y = tf.tensor2d([[0], [1], [1], [0]]);
    const counts: number[] = [];
    const before = tf.memory().numTensors;
    const res = await train({
      params,
      lossFn: () => {
        const h = tf.tanh(tf.add(tf.matMul(X, params.W1), params.b1));
        const logit = tf.add(tf.matMul(h, params.W2), params.b2);
        return tf.losses.sigmoidCrossEntropy(Y, logit) as tf.Scalar;
      },
      batches: () => null,
      steps: 400,
      lr: 0.05,
      warmupSteps: 10,
      minLrRatio: 0.1,
      weightDecay: 1e-4,
      progressLabel: false,
      onProgress: () => counts.push(tf.memory().numTensors),
    });
    const last = res.loss[res.loss.length - 1];
    assert.ok(last < 0.05, `final XOR loss ${last}`);
    assert.ok(res.loss[0] > 0.5, `initial loss ${res.loss[0]}`);
    assert.equal(res.steps.length, 400);
    assert.ok(counts.every((c) => c === counts[0]), `tensor counts vary: ${[...new Set(counts)]}`);
    assert.equal(tf.memory().numTensors, before);
    tf.dispose([X, Y, ...Object.values(params)]);
  });

  it('trains an embedding (gather gradient) on Bigram-Backcopy data to near the oracle on non-trigger positions', async () => {
    const task = makeBigramBackcopy({ nChars: 12, k: 2, seqLen: 33, seed: 3 });
    const V = task.dVocab;
    const W = tf.variable(tf.zeros([V, V]), true, 'bb_bigram_table');
    const evalBatch = sampleBigramBackcopy(task, 64, 999);
    const nll = (b: ReturnType<typeof sampleBigramBackcopy>) =>
      tf.tidy(() => {
        const x = tf.tensor2d(b.tokens.map((r) => r.slice(0, -1)), undefined, 'int32');
        const y = tf.tensor2d(b.targets, undefined, 'int32');
        const logits = tf.gather(W, x); // [B, T, V]
        const logp = tf.logSoftmax(logits);
        return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(y, V)), -1)); // [B, T]
      });
    const res = await train({
      params: { W },
      batches: (step) => sampleBigramBackcopy(task, 32, 1000 + step),
      lossFn: (b) => tf.mean(nll(b)) as tf.Scalar,
      steps: 250,
      lr: 0.1,
      warmupSteps: 5,
      progressLabel: false,
      evalEvery: 125,
      evalFn: async () => {
        const l = nll(evalBatch);
        const arr = (await l.array()) as number[][];
        l.dispose();
        let s = 0;
        let o = 0;
        let n = 0;
        evalBatch.nonTriggerMask.forEach((row, b) =>
          row.forEach((on, t) => {
            if (on && t < arr[b].length) {
              s += arr[b][t];
              o += evalBatch.oracleLoss[b][t];
              n++;
            }
          }),
        );
        return { excessNonTrigger: (s - o) / n };
      },
    });
    assert.equal(res.evals.length, 2);
    assert.equal(res.evals[1].step, 250);
    const ex = res.evals[1].values.excessNonTrigger;
    assert.ok(ex < 0.25, `excess loss on non-trigger positions ${ex}`);
    assert.ok(res.loss[res.loss.length - 1] < res.loss[0] - 0.5, 'loss went down');
    W.dispose();
  });

  it('checkpoints, abort and logEvery', async () => {
    const p = tf.variable(tf.scalar(0));
    const ck: number[] = [];
    const ac = new AbortController();
    const res = await train({
      params: { p },
      lossFn: () => tf.square(tf.sub(p, 1)) as tf.Scalar,
      batches: () => null,
      steps: 20,
      lr: 0.01,
      logEvery: 3,
      checkpointEvery: 4,
      onCheckpoint: (step) => {
        ck.push(step);
        if (step === 8) ac.abort();
      },
      signal: ac.signal,
      progressLabel: false,
    });
    assert.deepEqual(ck, [4, 8]);
    assert.equal(res.completed, 8);
    assert.equal(res.stopped, true);
    assert.deepEqual(res.steps, [1, 4, 7]);
    p.dispose();
  });

  it('yields to the event loop every step: a timer can abort a long run (and progress reaches the display as it goes)', async () => {
    const p = tf.variable(tf.scalar(0));
    const ac = new AbortController();
    const lines: string[] = [];
    const timer = setTimeout(() => ac.abort(), 0);
    const t0 = Date.now();
    const res = await train({
      params: { p },
      lossFn: () => tf.square(tf.sub(p, 1)) as tf.Scalar,
      batches: () => null,
      steps: 100000,
      lr: 0.01,
      signal: ac.signal,
      onProgress: (i) => lines.push(`${i.step}`),
    });
    clearTimeout(timer);
    assert.equal(res.stopped, true);
    assert.ok(res.completed >= 1 && res.completed < 100000, `completed ${res.completed}`);
    assert.equal(lines.length, res.completed);
    assert.ok(Date.now() - t0 < 60000);
    p.dispose();
  });

  it('trains a HookedTransformer through its differentiable run (no readback inside the gradient; forbidden sync reads would throw)', async () => {
    const task = makeBigramBackcopy({ nChars: 8, k: 1, seqLen: 9, seed: 2 });
    const model = randomModel(
      { model_type: 'gpt2', vocab_size: task.dVocab, n_positions: 9, n_embd: 16, n_layer: 1, n_head: 2, n_inner: 32, activation_function: 'relu', layer_norm_epsilon: 1e-5 },
      { seed: 4 },
    );
    const params: Record<string, tf.Variable> = {};
    for (const [k, v] of Object.entries(model.params)) {
      params[k] = tf.variable(v, true);
      v.dispose();
    }
    model.params = params;
    const before = tf.memory().numTensors;
    const res = await train<ReturnType<typeof sampleBigramBackcopy>>({
      params,
      batches: (step) => sampleBigramBackcopy(task, 8, 50 + step),
      lossFn: (b) => {
        const logits = model.run(b.tokens.map((r) => r.slice(0, -1)), {}, null).logits;
        return tf.mean(tokenNll(logits, tf.tensor2d(b.targets, undefined, 'int32'))) as tf.Scalar;
      },
      steps: 30,
      lr: 0.01,
      progressLabel: false,
    });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(res.loss[29] < res.loss[0] - 0.3, `loss ${res.loss[0]} -> ${res.loss[29]}`);
    model.dispose();
  });

  it('rejects bad options and a diverging loss with typed errors', async () => {
    const p = tf.variable(tf.scalar(1));
    const q = tf.variable(tf.scalar(1));
    const base = { params: { p }, batches: () => null, steps: 2, lr: 0.1, progressLabel: false as const };
    await assert.rejects(train({ ...base, lossFn: () => tf.square(p) as tf.Scalar, lr: -1 }), ConfigError);
    await assert.rejects(train({ ...base, lossFn: () => tf.square(p) as tf.Scalar, steps: 0 }), ConfigError);
    await assert.rejects(train({ ...base, lossFn: () => tf.log(tf.sub(p, 1)) as tf.Scalar }), ValueError);
    await assert.rejects(train({ ...base, params: { p, q }, lossFn: () => tf.square(p) as tf.Scalar }), /no gradient/);
    tf.dispose([p, q]);
  });
});
