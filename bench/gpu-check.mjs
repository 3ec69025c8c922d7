// First, short accelerator check: does tflens start on WebGPU, how fast is a 4096^3 matmul,
// and can one buffer hold a [1,14,4096,4096] float32 attention pattern (940 MB)?
import { lib } from './lib.mjs';
const { tf, initBackend, formatBackendReport } = lib;

const rep = await initBackend(process.env.TFLENS_BACKEND || undefined);
console.log(formatBackendReport(rep));
const n = Number(process.env.MM_N || 4096);
const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
const sync = async (t) => { const s = tf.tidy(() => tf.slice(t.reshape([-1]), [0], [1])); await s.data(); s.dispose(); };
for (let i = 0; i < 2; i++) { const c = tf.matMul(a, b); await sync(c); c.dispose(); }
const reps = 10;
const t0 = performance.now();
let c = null;
for (let i = 0; i < reps; i++) { c?.dispose(); c = tf.matMul(a, b); }
await sync(c);
const dt = (performance.now() - t0) / 1000 / reps;
console.log(`matmul ${n}^3: ${(dt * 1e3).toFixed(2)} ms, ${(2 * n ** 3 / dt / 1e12).toFixed(2)} TFLOP/s`);
c.dispose();
try {
  const big = tf.randomNormal([1, 14, 4096, 4096], 0, 1, 'float32', 3);
  const sm = tf.softmax(big, -1);
  const am = tf.argMax(tf.slice(sm, [0, 0, 4095, 0], [1, 14, 1, 4096]), -1);
  console.log('big softmax ok, argmax', Array.from(await am.data()).slice(0, 4));
  tf.dispose([big, sm, am]);
} catch (e) {
  console.log('big softmax failed:', e?.message ?? e);
}
console.log('tensors left', tf.memory().numTensors);
