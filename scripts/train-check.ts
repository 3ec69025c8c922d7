// Trains a random Bigram-Backcopy GPT-2 for 60 steps with the AdamW loop on whatever backend runs
// (TFLENS_BACKEND=webgpu on the accelerator): `npx tsx scripts/train-check.ts`. The loss curve is the same on every backend.
import * as tfl from '../src/index.js';

const { tf } = tfl;
await tfl.initBackend();
console.log(tfl.backendLine());
const task = tfl.zoo.bbTask();
const model = tfl.model.randomModel(tfl.zoo.bbConfig(task), { seed: 1, std: 0.05 });
const params: Record<string, tfl.tf.Variable> = {};
for (const k of Object.keys(model.params)) {
  params[k] = tf.variable(model.params[k], true, k);
  model.params[k].dispose();
}
model.params = params;
model.invalidateFused();
const t0 = performance.now();
const res = await tfl.zoo.train<tfl.data.BBBatch>({
  params,
  // the differentiable forward (model.run) on host token rows: no readback inside the gradient
  lossFn: (b) => {
    const x = b.tokens.map((row) => row.slice(0, -1));
    const y = tf.tensor2d(b.targets, undefined, 'int32');
    return tf.mean(tfl.zoo.tokenNll(model.run(x, {}, null).logits, y)) as tfl.tf.Scalar;
  },
  batches: (step) => tfl.data.sampleBigramBackcopy(task, 32, 1000 + step),
  steps: 60,
  lr: 3e-3,
  warmupSteps: 5,
  gradClip: 1,
  seed: 0,
  progressLabel: 'train-check',
});
console.log(`${tf.getBackend()} training: loss ${res.loss[0].toFixed(3)} -> ${res.loss[res.loss.length - 1].toFixed(3)} in ${((performance.now() - t0) / 1000).toFixed(1)} s for 60 steps`);
model.dispose();
