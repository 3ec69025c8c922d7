// Trains a random Bigram-Backcopy GPT-2 for 60 steps with the AdamW loop on whatever backend runs
// (TFLENS_BACKEND=webgpu on the accelerator): `npx tsx scripts/train-check.ts`. The loss curve is the same on every backend.
import * as tf from '@tensorflow/tfjs';
import * as tfl from '../src/index.js';
const r = await tfl.initBackend();
console.log(tfl.formatBackendReport(r));
const task = tfl.bbTask();
const model = tfl.randomModel(tfl.bbConfig(task), { seed: 1, std: 0.05 });
for (const k of Object.keys(model.params)) { const v = tf.variable(model.params[k], true, k); model.params[k].dispose(); model.params[k] = v; }
model.invalidateFused();
const t0 = performance.now();
const res = await tfl.train({
  params: model.params as Record<string, tf.Variable>,
  lossFn: (b: tfl.BBBatch) => tf.tidy(() => {
    const lg = model.forward(b.tokens);
    const T = b.tokens[0].length;
    const V = model.cfg.d_vocab;
    const pred = tf.reshape(tf.slice(lg, [0, 0, 0], [-1, T - 1, -1]), [-1, V]);
    return tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d(b.targets.flat(), 'int32'), V), pred) as tf.Scalar;
  }),
  batches: (step: number) => tfl.sampleBigramBackcopy(task, 32, 1000 + step),
  steps: 60, lr: 3e-3, warmupSteps: 5, gradClip: 1, seed: 0,
} as any);
console.log('webgpu training: loss', res.loss[0].toFixed(3), '->', res.loss[res.loss.length - 1].toFixed(3), 'in', ((performance.now() - t0) / 1000).toFixed(1), 's for 60 steps');
