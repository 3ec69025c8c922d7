// Half-precision checkpoints (F16 / BF16): loaded packed on the GPU (WebGPU) or upcast to float32 at load
// (wasm / cpu, the documented fallback), against the model's float32 twin (the same rounded values saved as
// F32) and the float32 model they were rounded from. Runs on whichever backend the suite runs on
// (`npm test`: wasm; `npm run test:webgpu`: WebGPU on lavapipe).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../src/errors.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/backend/webgpu/half.js';
import { fusedKernelCounts } from '../src/backend/webgpu/index.js';
import { subgroupMatrixTile } from '../src/backend/webgpu/matmul.js';
import { loadModel, processWeights, randomModel, saveModel, type HookedTransformer } from '../src/model/index.js';

const LLAMA = { model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 96, vocab_size: 80, max_position_embeddings: 64 };
const GPT2 = { model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 50, n_positions: 32 };
const TOKENS = [[1, 7, 3, 22, 9, 14, 5, 40], [0, 0, 8, 2, 19, 33, 11, 6]];
const MASK = [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]];
/** Real positions of TOKENS (the padded ones hold nothing to compare). */
const REAL = MASK.flatMap((r) => r);

const onGpu = () => tf.getBackend() === 'webgpu';

/** Largest |a - b| over real positions, and the largest |b| there. */
async function diff(a: tf.Tensor, b: tf.Tensor): Promise<{ abs: number; ref: number }> {
  const [x, y] = await Promise.all([a.data(), b.data()]);
  const per = x.length / REAL.length;
  let abs = 0;
  let ref = 0;
  for (let i = 0; i < x.length; i++) {
    if (!REAL[Math.floor(i / per)]) continue;
    abs = Math.max(abs, Math.abs(x[i] - y[i]));
    ref = Math.max(ref, Math.abs(y[i]));
  }
  return { abs, ref };
}

/** tf.memory().numBytes held by a model loaded from `dir` (measured around the load). */
async function loadMeasured(dir: string, opts: Parameters<typeof loadModel>[1] = {}): Promise<{ model: HookedTransformer; bytes: number }> {
  const before = tf.memory().numBytes;
  const model = await loadModel(dir, opts);
  return { model, bytes: tf.memory().numBytes - before };
}

describe('half-precision checkpoints (F16 / BF16)', function () {
  this.timeout(300000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'tflens-half-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [fam, cfg] of [['llama', LLAMA], ['gpt2', GPT2]] as const) {
    for (const dtype of ['F16', 'BF16'] as const) {
      it(`${fam} saved as ${dtype}: loads and matches its float32 twin, and the float32 model within ${dtype} rounding`, async () => {
        const orig = randomModel(cfg, { seed: 11, std: 0.2, randomNorms: true });
        const halfDir = path.join(dir, `${fam}-${dtype}`);
        const twinDir = path.join(dir, `${fam}-${dtype}-twin`);
        await saveModel(orig, halfDir, {}, { dtype });
        const before = tf.memory().numTensors;
        // the twin: the same rounded values, float32 on every backend
        const twin = await loadMeasured(halfDir, { halfWeights: 'float32' });
        await saveModel(twin.model, twinDir);
        const half = await loadMeasured(halfDir);
        try {
          const halfStored = Object.keys(half.model.halfParams);
          if (onGpu()) {
            // every weight matrix packed (two halves per int32 word), norms and biases float32
            assert.ok(halfStored.includes('blocks.0.attn.W_Q') && halfStored.includes('blocks.1.mlp.W_out') && halfStored.includes('embed.W_E'), halfStored.join(' '));
            assert.equal(half.model.weightFormat('blocks.0.attn.W_O'), dtype.toLowerCase());
            assert.equal(half.model.weightFormat('blocks.0.ln1.w'), 'f32');
            assert.equal(half.model.params['blocks.0.attn.W_Q'], undefined);
            // resident bytes: the matrices at 2 bytes a value; the float32 norms and biases are a few percent
            assert.ok(half.bytes < 0.56 * twin.bytes, `resident ${half.bytes} vs float32 ${twin.bytes}`);
            assert.ok(half.bytes > 0.5 * twin.bytes * 0.99, `resident ${half.bytes} vs float32 ${twin.bytes}`);
          } else {
            // wasm / cpu: upcast at load, the same bytes as the twin
            assert.deepEqual(halfStored, []);
            assert.equal(half.bytes, twin.bytes);
          }
          assert.equal(half.model.parameterCount(), orig.parameterCount());
          // weight(): a float32 view owned by the caller, equal to the twin's weight
          for (const name of ['blocks.1.attn.W_O', 'unembed.W_U', 'blocks.0.ln2.w']) {
            const w = half.model.weight(name);
            assert.deepEqual(Array.from(await w.data()), Array.from(await twin.model.params[name].data()), name);
            w.dispose();
          }
          fusedKernelCounts(true);
          const [lh, lt, lo] = await Promise.all([half.model, twin.model, orig].map((m) => m.forward(TOKENS, { attentionMask: MASK })));
          if (onGpu()) assert.ok((fusedKernelCounts().TflensMatmul ?? 0) > 0, 'the packed weights went through the matmul kernel');
          // the same weights: in float32 arithmetic only the summation order may differ; where the device
          // has f16 subgroup matrices (tensor cores), the half weights' products take them and round the
          // activations to f16 too (relative 2^-11 each, as PyTorch's f16 matmul does; docs/gpu.md)
          const exact = await diff(lh, lt);
          const tensorCores = onGpu() && subgroupMatrixTile() !== null;
          assert.ok(exact.abs <= (tensorCores ? 5e-3 : 2e-5) * Math.max(1, exact.ref), `${fam} ${dtype}: half vs twin ${exact.abs} (max ${exact.ref}; tensor cores ${tensorCores})`);
          if (tensorCores) assert.ok(exact.abs > 0, 'the tensor-core path rounded the activations');
          // against the unrounded model: each weight off by at most 2^-11 (F16) or 2^-8 (BF16) relative
          const round = await diff(lh, lo);
          const tol = dtype === 'F16' ? 5e-3 : 4e-2;
          assert.ok(round.abs <= tol * round.ref, `${fam} ${dtype}: half vs float32 model ${round.abs} (max ${round.ref})`);
          assert.ok(round.abs > 0, 'rounding to half precision changed something');
          tf.dispose([lh, lt, lo]);
        } finally {
          half.model.dispose();
          twin.model.dispose();
        }
        assert.equal(tf.memory().numTensors, before, 'tensors left behind');
        orig.dispose();
      });
    }
  }

  it('the saved bytes are the float32 weights rounded to nearest even (F16 and BF16 bit patterns)', async () => {
    const m = randomModel(GPT2, { seed: 3, std: 1 });
    for (const [dtype, toBits, fromBits] of [['F16', f32ToF16Bits, f16BitsToF32], ['BF16', f32ToBf16Bits, bf16BitsToF32]] as const) {
      const d = path.join(dir, `bits-${dtype}`);
      await saveModel(m, d, {}, { dtype });
      const back = await loadModel(d, { halfWeights: 'float32' });
      const [got, want] = await Promise.all([back.params['blocks.0.mlp.W_in'].data(), m.params['blocks.0.mlp.W_in'].data()]);
      for (let i = 0; i < want.length; i++) assert.equal(got[i], Math.fround(fromBits(toBits(want[i]))), `${dtype} element ${i}`);
      back.dispose();
    }
    m.dispose();
  });

  it('weight processing refuses a model kept in half precision (and works on its float32 load)', async function () {
    if (!onGpu()) this.skip(); // only WebGPU keeps weights in half precision
    const m = randomModel(LLAMA, { seed: 2 });
    const d = path.join(dir, 'proc');
    await saveModel(m, d, {}, { dtype: 'BF16' });
    const half = await loadModel(d);
    assert.throws(() => processWeights(half, { foldLn: true }), (e: unknown) => e instanceof ConfigError && /half precision/.test((e as Error).message));
    half.dispose();
    const full = await loadModel(d, { halfWeights: 'float32' });
    processWeights(full, { foldLn: true });
    full.dispose();
    m.dispose();
  });
});
