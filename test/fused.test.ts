// The forward through the fused WebGPU kernels keeps hook semantics: a hook on an intermediate that a
// fused kernel would hide (hook_attn_scores, hook_pattern, a norm's hook_scale, the MLP's hook_pre /
// hook_pre_linear, a module output added to the residual in-kernel) reads the real tensor and may
// replace it, with the numbers the plain TensorFlow.js compositions give on wasm; the kernel counts
// show that the split happens there and only there. Each case builds the same seeded model on wasm,
// runs it there, then runs it on WebGPU (the weights move to the GPU), and compares host values.
// Skipped, with the reason, where WebGPU cannot start.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { fusedKernelCounts } from '../src/backend/webgpu/index.js';
import { webgpuOrSkip } from './helpers/webgpu.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { generate, lastRowArgmaxHook, randomModel, type HookedTransformer } from '../src/model/index.js';
import { decodeWithKeys } from '../src/analyses/retrieval.js';

const LLAMA = { model_type: 'llama', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 96, vocab_size: 70, max_position_embeddings: 64 };
const GPT2 = { model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 70, n_positions: 32 };
const TOKENS = [[3, 17, 4, 9, 60, 2, 33, 8, 12], [0, 0, 0, 5, 6, 41, 7, 29, 1]];
const MASK = [[1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 1, 1]];

type Host = Record<string, Float32Array | Int32Array | Uint8Array>;

/** Runs `body` on a fresh seeded model on `backend`; returns what it read back. */
async function on(backend: 'wasm' | 'webgpu', cfg: Record<string, unknown>, body: (m: HookedTransformer) => Promise<Host>): Promise<{ host: Host; kernels: Record<string, number> }> {
  await tf.setBackend('wasm'); // made on wasm (host values), then moved to the GPU by its first kernel there
  const m = randomModel(cfg, { seed: 7, std: 0.25, randomNorms: true });
  try {
    if (backend === 'webgpu') await tf.setBackend('webgpu');
    fusedKernelCounts(true);
    const host = await body(m);
    return { host, kernels: fusedKernelCounts(true) };
  } finally {
    m.dispose();
  }
}

/** Relative max difference of two host arrays (over their largest magnitude), -Infinity entries equal. */
function rel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / Math.max(s, 1e-6);
}

function sameHost(gpu: Host, cpu: Host, tol: number, what: string): void {
  assert.deepEqual(Object.keys(gpu).sort(), Object.keys(cpu).sort(), `${what}: keys`);
  for (const k of Object.keys(cpu)) {
    const e = rel(gpu[k], cpu[k]);
    assert.ok(e <= tol, `${what}: ${k} differs by ${e.toExponential(2)} (relative)`);
  }
}

/** Reads (clones kept) of the activations at `names`, read back after the run. */
async function readingRun(m: HookedTransformer, names: string[], extra: HookSpec[] = []): Promise<Host> {
  const seen: Record<string, tf.Tensor> = {};
  const hooks: HookSpec[] = names.map((n) => [n as never, (act: tf.Tensor) => void (seen[n] = tf.keep(act.clone()))]);
  const logits = await m.runWithHooks(TOKENS, { attentionMask: MASK, fwdHooks: [...extra, ...hooks] });
  const out: Host = { logits: (await logits.data()) as Float32Array };
  for (const [n, t] of Object.entries(seen)) out[n] = (await t.data()) as Float32Array;
  tf.dispose([logits, ...Object.values(seen)]);
  return out;
}

describe('fused WebGPU forward: hooks read and replace intermediates as on wasm', function () {
  this.timeout(600000);
  let prev = '';

  before(async function () {
    prev = tf.getBackend();
    await webgpuOrSkip(this);
  });

  after(async () => {
    if (prev) await tf.setBackend(prev);
  });

  for (const [fam, cfg] of [['gpt2', GPT2], ['llama', LLAMA]] as const) {
    it(`${fam}: the full cache through the fused kernels equals wasm`, async () => {
      const body = async (m: HookedTransformer): Promise<Host> => {
        const { logits, cache } = await m.runWithCache(TOKENS, { attentionMask: MASK });
        const out: Host = { logits: (await logits.data()) as Float32Array };
        // real positions of the padded row only: the pad rows' values are arbitrary on both sides
        for (const n of cache.keys()) out[n] = (await cache.get(n as never).data()) as Float32Array;
        logits.dispose();
        cache.dispose();
        return out;
      };
      const cpu = await on('wasm', cfg, body);
      const gpu = await on('webgpu', cfg, body);
      for (const k of ['TflensNorm', 'TflensMatmul', 'TflensAttention']) assert.ok((gpu.kernels[k] ?? 0) > 0, `${k} ran`);
      sameHost(gpu.host, cpu.host, 2e-5, fam);
    });

    it(`${fam}: hooks reading hook_attn_scores, hook_pattern, ln1.hook_scale and mlp.hook_pre see the values the cache stores`, async () => {
      const names = ['blocks.0.attn.hook_attn_scores', 'blocks.1.attn.hook_pattern', 'blocks.0.ln1.hook_scale', 'blocks.1.mlp.hook_pre'];
      const cpu = await on('wasm', cfg, (m) => readingRun(m, names));
      const gpu = await on('webgpu', cfg, (m) => readingRun(m, names));
      sameHost(gpu.host, cpu.host, 2e-5, `${fam} reads`);
      // and what the fused kernels put in the cache (no hooks) is what the hooks read on the split path
      const cached = await on('webgpu', cfg, async (m) => {
        const { logits, cache } = await m.runWithCache(TOKENS, { attentionMask: MASK, namesFilter: names as never });
        const out: Host = { logits: (await logits.data()) as Float32Array };
        for (const n of names) out[n] = (await cache.get(n as never).data()) as Float32Array;
        logits.dispose();
        cache.dispose();
        return out;
      });
      assert.ok((cached.kernels.TflensAttention ?? 0) === 2, 'no attention split when only the cache reads scores and pattern');
      sameHost(cached.host, gpu.host, 2e-5, `${fam} cache vs hooks`);
    });
  }

  it('llama: hooks replacing scores, pattern, a norm scale, hook_pre / hook_pre_linear and hook_attn_out change the output as on wasm, split only where hooked', async () => {
    const visibleUniform = (p: tf.Tensor) => tf.tidy(() => {
      const vis = tf.cast(tf.greater(p, 0), 'float32');
      return tf.div(vis, tf.maximum(tf.sum(vis, -1, true), 1));
    });
    const hooks: HookSpec[] = [
      ['blocks.0.attn.hook_attn_scores', (s) => tf.tidy(() => tf.mul(s, tf.tensor([1, 0.2, 1, 0.5]).reshape([1, 4, 1, 1])))],
      ['blocks.1.attn.hook_pattern', (p) => visibleUniform(p)],
      ['blocks.0.ln2.hook_scale', (s) => tf.mul(s, 2)],
      ['blocks.1.mlp.hook_pre', (g) => tf.mul(g, 0.5)],
      ['blocks.0.mlp.hook_pre_linear', (u) => tf.neg(u)],
      ['blocks.1.hook_attn_out', (a) => tf.mul(a, 0.25)],
    ];
    const run = async (m: HookedTransformer) => ({ logits: (await (await m.runWithHooks(TOKENS, { attentionMask: MASK, fwdHooks: hooks })).data()) as Float32Array });
    const plain = async (m: HookedTransformer) => ({ logits: (await (await m.forward(TOKENS, { attentionMask: MASK })).data()) as Float32Array });
    const cpu = await on('wasm', LLAMA, run);
    const gpu = await on('webgpu', LLAMA, run);
    const base = await on('webgpu', LLAMA, plain);
    sameHost(gpu.host, cpu.host, 2e-5, 'replaced');
    assert.ok(rel(gpu.host.logits, base.host.logits) > 1e-2, 'the replacements changed the logits');
    // no hooks: 2 layers x (ln1, ln2) + ln_final norms, 2 attentions, 2 gated MLP inputs
    assert.equal(base.kernels.TflensNorm, 5);
    assert.equal(base.kernels.TflensAttention, 2);
    assert.equal(base.kernels.TflensGatedMatmul, 2);
    // hooked: ln2 of layer 0 split (its scale replaced), layer 0's scores and layer 1's pattern split, both gated inputs split
    assert.equal(gpu.kernels.TflensNorm, 4);
    assert.equal(gpu.kernels.TflensAttention ?? 0, 0);
    assert.equal(gpu.kernels.TflensGatedMatmul ?? 0, 0);
  });

  it('gpt2: a replaced hook_pre and hook_scale, and a replaced hook_mlp_out (residual add outside the kernel), as on wasm', async () => {
    const hooks: HookSpec[] = [
      ['blocks.0.mlp.hook_pre', (h) => tf.add(h, 0.3)],
      ['blocks.1.ln1.hook_scale', (s) => tf.div(s, 3)],
      ['blocks.0.hook_mlp_out', (o) => tf.mul(o, -1)],
    ];
    const run = async (m: HookedTransformer) => ({ logits: (await (await m.runWithHooks(TOKENS, { attentionMask: MASK, fwdHooks: hooks })).data()) as Float32Array });
    const cpu = await on('wasm', GPT2, run);
    const gpu = await on('webgpu', GPT2, run);
    sameHost(gpu.host, cpu.host, 2e-5, 'gpt2 replaced');
  });

  it('lastRowArgmaxHook: on WebGPU the attention kernel gives the argmax (no pattern made), equal to the argmax of the wasm pattern; greedy decoding with the KV cache agrees', async () => {
    const body = async (m: HookedTransformer): Promise<Host> => {
      const got: tf.Tensor[] = [];
      const reader = lastRowArgmaxHook((am) => void got.push(tf.keep(am.clone())));
      const logits = await m.runWithHooks(TOKENS, { attentionMask: MASK, fwdHooks: [[(n: string) => n.endsWith('hook_pattern'), reader]] });
      const out: Host = { logits: (await logits.data()) as Float32Array, argmax: Int32Array.from(await tf.concat(got).data()) };
      tf.dispose([logits, ...got]);
      const keys = await decodeWithKeys(m, [TOKENS[0]], { maxNewTokens: 4 });
      out.tokens = Int32Array.from(keys.tokens.flat());
      out.keys = Int32Array.from(keys.keys!.flat(3));
      const gen = await generate(m, TOKENS, { maxNewTokens: 3, attentionMask: MASK });
      out.generated = Int32Array.from(gen.tokens.flat());
      return out;
    };
    const cpu = await on('wasm', LLAMA, body);
    const gpu = await on('webgpu', LLAMA, body);
    // the readers' forwards: the hooked run and decodeWithKeys' prefill + 3 decoding steps, 2 layers each;
    // generate's 3 forwards have no readers (2 + 3 x 2 more attention dispatches, no argmax)
    assert.equal(gpu.kernels.TflensAttentionLastArgmax, 2 + 4 * 2, 'every attention with readers answered them from the kernel');
    assert.equal(gpu.kernels.TflensAttention, 2 + 4 * 2 + 3 * 2);
    assert.deepEqual(Array.from(gpu.host.argmax), Array.from(cpu.host.argmax));
    assert.deepEqual(Array.from(gpu.host.tokens), Array.from(cpu.host.tokens));
    assert.deepEqual(Array.from(gpu.host.keys), Array.from(cpu.host.keys));
    assert.deepEqual(Array.from(gpu.host.generated), Array.from(cpu.host.generated));
    assert.ok(rel(gpu.host.logits, cpu.host.logits) < 2e-5);
  });
});
