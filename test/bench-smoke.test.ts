// Smoke tests of the bench code (no timing assertions): the PyTorch baseline computes what tflens
// computes (same weights: logits, cached activations and a head-patching sweep), the memory and kernel
// profile helpers count what they say, the 7B path runs on a tiny Llama-shaped bf16 checkpoint written by
// bench/device/make_7b.py, the FLOP count matches a hand count, and the table says "not met" where a
// goal is missed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import * as tfl from '../src/index.js';
import { randomModel } from '../src/model/index.js';
import { patchSweep } from '../src/circuits/patching.js';
import { inductionProblem } from '../src/circuits/problem.js';

const ROOT = resolve(import.meta.dirname ?? '.', '..');
// the bench is plain JavaScript (.mjs); loaded by URL so the type-check does not need declarations
const load = async (p: string): Promise<any> => import(pathToFileURL(join(ROOT, 'bench', p)).href);

const TINY = { model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 64, n_positions: 32 };

function findPython(): string | null {
  for (const c of [process.env.TFLENS_BENCH_PYTHON, 'python3', '/usr/bin/python3'].filter(Boolean) as string[]) {
    const r = spawnSync(c, ['-c', 'import torch'], { encoding: 'utf8' });
    if (r.status === 0) return c;
  }
  return null;
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / Math.max(s, 1e-12);
}

describe('bench: PyTorch baseline against tflens (same weights)', function () {
  this.timeout(120000);
  it('the hooked GPT-2 baseline reproduces tflens logits, cached activations and a hook_z head sweep', async function () {
    const py = findPython();
    if (!py) this.skip(); // no python with torch on this machine
    const m = randomModel(TINY, { seed: 4, randomNorms: true });
    const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
    try {
      const weights: Record<string, { shape: number[]; data: number[] }> = {};
      for (const [k, t] of Object.entries(m.params)) weights[k] = { shape: t.shape, data: Array.from(await t.data()) };
      writeFileSync(join(dir, 'w.json'), JSON.stringify(weights));
      const p = inductionProblem(m, { n: 2, R: 3, low: 1, high: 63, seed: 9 });
      const off = m.bosTokenId() === null ? 0 : 1;
      const problem = {
        clean: p.clean, corrupted: p.corrupted, readPositions: p.readPositions,
        correct: p.clean.map((r) => r[off + 2]), wrong: p.corrupted.map((r) => r[off + 2]),
      };
      const tokens = [[1, 5, 9, 13, 2, 7], [3, 3, 8, 60, 1, 0]];
      const names = ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_z', 'blocks.1.ln2.hook_normalized', 'blocks.1.mlp.hook_post', 'ln_final.hook_scale'];
      const spec = { device: 'cpu', threads: 1, model: m.cfg, weights_json: join(dir, 'w.json'), check: { tokens, names }, sweeps: { runs: [{ kind: 'head', problem }] } };
      writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
      const r = spawnSync(py, [join(ROOT, 'bench', 'baseline', 'torch_bench.py'), join(dir, 'spec.json'), join(dir, 'out.json')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(readFileSync(join(dir, 'out.json'), 'utf8'));

      const before = tf.memory().numTensors;
      const { logits, cache } = await m.runWithCache(tokens, { namesFilter: names as never });
      assert.ok(maxRel(await logits.data(), (out.check.logits as number[][][]).flat(2)) < 1e-4, 'logits');
      for (const n of names) assert.ok(maxRel((await cache.values(n)).values, out.check.cache[n]) < 1e-4, n);
      logits.dispose();
      cache.dispose();
      assert.equal(tf.memory().numTensors, before);

      // the same sweep: the torch loop's values are tflens's batched values
      const ours = await patchSweep(m, p, 'z', 'head');
      const theirs = out.sweeps.head;
      assert.ok(Math.abs(ours.clean - theirs.clean) < 1e-4 * Math.max(1, Math.abs(ours.clean)));
      assert.ok(Math.abs(ours.corrupted - theirs.corrupted) < 1e-4 * Math.max(1, Math.abs(ours.corrupted)));
      assert.ok(maxRel((ours.values as number[][]).flat(), (theirs.values as number[][]).flat()) < 1e-4, 'sweep values');
      assert.equal(theirs.forwards, 2 * 4 + 3);
    } finally {
      m.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bench: memory and kernel profile of a full-cache forward', function () {
  this.timeout(60000);
  it('forwardPeak: the cache bytes are the sum of the cached shapes; the peak lies between the cache and everything the forward made', async () => {
    const { forwardPeak } = await load('memory.mjs');
    const m = randomModel(TINY, { seed: 6 });
    const tokens = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]];
    const before = tf.memory().numTensors;
    const weights = tf.memory().numBytes;
    const peaks: Record<string, number> = {};
    for (const cacheOn of ['device', 'host'] as const) {
      const mem = await forwardPeak(tf, m, tokens, { cacheOn });
      peaks[cacheOn] = mem.peak_bytes;
      assert.equal(tf.memory().numTensors, before);
      // independent count: 4 bytes x elements of every hook point's TransformerLens shape (B=2, T=8, d=32, H=4, dh=8, m=128, V=64)
      const [B, T, d, H, dh, mlp] = [2, 8, 32, 4, 8, 128];
      const perLayer = B * T * (d /* resid_pre */ + 1 + d /* ln1 scale, normalized */ + 4 * H * dh /* q k v z */ + d /* attn_out */ + d /* resid_mid */ + d /* mlp_in */ + 1 + d /* ln2 */ + 2 * mlp /* pre post */ + d /* mlp_out */ + d /* resid_post */) + 2 * B * H * T * T /* scores, pattern */;
      const global = B * T * (1 /* tokens (int32) */ + d /* embed */ + d /* pos_embed */ + 1 + d /* ln_final */ + d /* unembed in */ + 64 /* unembed out */);
      assert.equal(mem.cache_bytes, 4 * (2 * perLayer + global));
      assert.equal(mem.logits_bytes, 4 * B * T * 64);
      assert.equal(mem.weights_bytes, weights);
      assert.equal(mem.cached_tensors, m.hookNames().filter(m.cacheFilter(undefined)).length);
      // on the device the whole cache is held at the end
      if (cacheOn === 'device') assert.ok(mem.peak_bytes >= mem.cache_bytes + mem.logits_bytes, `${mem.peak_bytes} >= cache + logits`);
      const ratio = (mem.weights_bytes + mem.peak_bytes) / (mem.weights_bytes + mem.cache_bytes + mem.logits_bytes);
      assert.ok(Math.abs(mem.ratio_to_weights_plus_cache - ratio) < 1e-12);
    }
    // with the cache on the host the device holds one layer's activations at a time
    assert.ok(peaks.host < peaks.device, JSON.stringify(peaks));
    m.dispose();
  });

  it('kernelProfile groups every kernel of a forward into classes whose counts add up', async () => {
    const { kernelProfile, kernelClass } = await load('memory.mjs');
    assert.equal(kernelClass('TflensMatmul'), 'matmul');
    assert.equal(kernelClass('BatchMatMul'), 'matmul');
    assert.equal(kernelClass('TflensAttention'), 'attention');
    assert.equal(kernelClass('TflensNorm'), 'norm');
    assert.equal(kernelClass('Transpose'), 'data movement');
    assert.equal(kernelClass('Sum'), 'reduction');
    assert.equal(kernelClass('Tanh'), 'element-wise');
    const m = randomModel(TINY, { seed: 6 });
    const p = await kernelProfile(tf, async () => {
      const lg = await m.forward([[1, 2, 3, 4]]);
      lg.dispose();
    });
    const counted = Object.values(p.classes as Record<string, { kernels: number }>).reduce((a, c) => a + c.kernels, 0);
    assert.equal(counted, p.kernels);
    assert.ok(p.kernels > 20 && (p.classes.matmul?.kernels ?? 0) >= 2 * 4 + 1, JSON.stringify(p.classes));
    m.dispose();
  });
});

describe('bench: the 7B path on a tiny Llama-shaped bf16 checkpoint (bench/device/make_7b.py)', function () {
  this.timeout(300000);
  it('make_7b.py writes a sharded bf16 checkpoint that loads; run7b caches the hooks asked for, scores retrieval and leaves nothing behind', async function () {
    const py = findPython();
    if (!py) this.skip(); // the checkpoint is written by PyTorch
    const { run7b } = await load('llama7b.mjs');
    const dir = mkdtempSync(join(tmpdir(), 'bench-7b-'));
    try {
      const r = spawnSync(py, [join(ROOT, 'bench', 'device', 'make_7b.py'), dir, '--layers', '3', '--hidden', '64', '--heads', '4', '--kv-heads', '2', '--mlp', '96', '--vocab', '90', '--max-positions', '64', '--layers-per-shard', '2'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8'));
      assert.equal(new Set(Object.values(index.weight_map)).size, 4, 'embedding, two layer shards, head');
      const info = await tfl.io.safetensorsInfo(join(dir, 'model-00002-of-00004.safetensors'));
      assert.ok(info.tensors.every((t) => t.dtype === 'BF16'));
      const hooks = ['blocks.0.hook_resid_post', 'blocks.2.attn.hook_z'];
      const before = tf.memory().numTensors;
      const out = await run7b(tfl, dir, { context: 40, newTokens: 4, samples: 2, hooks });
      assert.equal(tf.memory().numTensors, before, 'tensors left behind');
      assert.deepEqual(out.cached, hooks);
      assert.equal(out.shape.n_kv_heads, 2);
      assert.deepEqual(out.samples.map((s: { steps: number }) => s.steps), [4, 4]);
      assert.equal(out.tensors_leaked, 0);
      if (tf.getBackend() === 'webgpu') {
        // the matrices stay bf16 on the GPU: about half the float32 bytes
        assert.equal(out.weight_format, 'bf16');
        assert.ok(out.weights_bytes < 0.56 * 4 * out.parameters, `${out.weights_bytes} bytes for ${out.parameters} parameters`);
      } else {
        assert.equal(out.weight_format, 'f32');
        assert.equal(out.weights_bytes, 4 * out.parameters);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bench: FLOP count and table', () => {
  it('forwardFlops matches a hand count for a 1-layer model', async () => {
    const { forwardFlops, decodeFlops } = await load('presets.mjs');
    // d=4, H=2, K=2, dh=2, m=8, V=10, L=1, B=1, T=3, not gated
    const c = { d_model: 4, n_heads: 2, n_kv_heads: 2, d_head: 2, d_mlp: 8, d_vocab: 10, n_layers: 1, gated_mlp: false };
    // per token: QKV 2*4*6*2=96, O 2*2*2*4=32, MLP 2*4*8 + 2*8*4 = 128, unembed 2*4*10=80 -> 336; x3 tokens = 1008
    // attention: QK^T and PV, 2 * (2*H*T*T*dh) = 2 * 2*2*9*2 = 144
    assert.equal(forwardFlops(c, 1, 3), 1008 + 144);
    // one decode step with 5 cached keys: 256 + 4*2*5*2 = 336, + unembed 80
    assert.equal(decodeFlops(c, 5), 256 + 80 + 80);
  });

  const machine = { cpus: 2, cpu_model: 'X', total_mem: 2 ** 30, platform: 'linux', arch: 'x64', node: 'v20', loadavg_start: [1, 1, 1], loadavg_end: [2, 2, 2] };

  it('the table marks unmet goals and takes every number from the JSON (runs of the earlier bench)', async () => {
    const { writeTable } = await load('table.mjs');
    const dir = mkdtempSync(join(tmpdir(), 'bench-table-'));
    try {
      mkdirSync(join(dir, 'results'));
      const run = {
        tag: 't1', preset: 'cpu', date: '2026-01-01T00:00:00Z', finished: '2026-01-01T00:01:00Z', command: 'node bench/run.mjs', machine,
        backend: { active: 'wasm', tfjs_version: '4.22.0', details: { threads: 1 } },
        torch: { version: '1.13', device: 'cpu' },
        baseline: {
          torch: '1.13', device: 'cpu', threads: 1,
          forward: [{ B: 1, T: 4, seconds: 0.25, memory: { cache_bytes: 2 ** 20, peak_bytes: 0, peak_kind: 'rss' } }],
          sweeps: { head: { seconds: 6, N: 2, T: 8 } },
        },
        matmul: { n: 8, flops_per_s: 2e10 },
        forward: { cases: [{ B: 1, T: 4, seconds: 0.5, flops: 6.17e9, flops_per_s: 1.234e10, memory: { cached_tensors: 7, cache_bytes: 2 ** 20, peak_bytes: 2 ** 21 } }] },
        sweeps: { kinds: { head: { N: 2, T: 8, batched_seconds: 3 } } },
        errors: {},
      };
      writeFileSync(join(dir, 'results', 't1.json'), JSON.stringify(run));
      const md = readFileSync(writeTable(join(dir, 'results'), join(dir, 'R.md')), 'utf8');
      assert.match(md, /\| 1 x 4 \| 500\.0 ms \| 250\.0 ms \| 2\.00 \| 12\.3 \| 61\.7% \| \*\*not met\*\* \|/);
      assert.match(md, /all positions, per \(layer, head\) \| 2 x 8 \| 3\.00 s \| – \| 6\.00 s \| 2\.00x \| 1x \| met \|/);
      assert.match(md, /7 cached activations/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('issue-16 runs: forward / memory / retrieval / sweep / 7B goals against the GPU targets, and the kernel classes', async () => {
    const { writeTable } = await load('table.mjs');
    const dir = mkdtempSync(join(tmpdir(), 'bench-table-'));
    try {
      mkdirSync(join(dir, 'results'));
      const run = {
        tag: 'g1', goals: 'issue16', preset: 'device', date: '2026-01-01T00:00:00Z', finished: '2026-01-01T00:05:00Z', command: 'node bench/run.mjs --device', machine,
        backend: { active: 'webgpu', tfjs_version: '4.22.0', details: { adapter: 'nvidia h100' } }, fused_kernels: true,
        torch: { version: '2.11', device: 'cuda' },
        baseline: {
          torch: '2.11', device: 'cuda', gpu: 'NVIDIA H100',
          forward: [{ B: 8, T: 128, seconds: 0.01, memory: { peak_bytes: 2 ** 30 } }],
          nocache: [{ B: 8, T: 128, seconds: 0.004 }],
          sweeps: { head: { seconds: 1, N: 8, T: 15 }, head_pos: { seconds: 20, N: 8, T: 15 } },
          retrieval: { context: 4096, new_tokens: 20, seconds_per_sample: 0.5 },
          llama7b: { context: 4096, seconds_per_sample: 4, forward_seconds: 1, load_seconds: 9 },
        },
        forward: { cases: [{ B: 8, T: 128, seconds: 0.012, cached_tensors: 210 }, { B: 1, T: 1024, error: 'BackendError: lost' }] },
        nocache: { cases: [{ B: 8, T: 128, seconds: 0.006 }] },
        memory: { cases: [{ B: 8, T: 128, cache_on: 'device', weights_bytes: 2 ** 29, cache_bytes: 2 ** 28, logits_bytes: 2 ** 27, peak_bytes: 2 ** 29, ratio_to_weights_plus_cache: 1.4545 }] },
        profile: { B: 8, T: 128, full_cache: { kernels: 3, total_ms: 4, classes: { matmul: { kernels: 2, ms: 3, share: 0.75 }, norm: { kernels: 1, ms: 1, share: 0.25 } }, slowest: [{ name: 'TflensMatmul', ms: 3 }] }, no_cache: { kernels: 2, total_ms: 2, classes: { matmul: { kernels: 2, ms: 2, share: 1 } }, slowest: [] } },
        sweeps: { kinds: { head: { N: 8, T: 15, batched_seconds: 0.4 }, head_pos: { N: 8, T: 15, batched_seconds: 5 } } },
        retrieval: { context: 4096, new_tokens: 20, seconds_per_sample: 0.6 },
        llama7b: { context: 4096, seconds_per_sample: 10, forward_seconds: 2, load_seconds: 20, weights_bytes: 13.5 * 2 ** 30, weight_format: 'bf16', memory: { peak_bytes: 2 ** 31 } },
        errors: {},
      };
      writeFileSync(join(dir, 'results', 'g1.json'), JSON.stringify(run));
      const md = readFileSync(writeTable(join(dir, 'results'), join(dir, 'R.md')), 'utf8');
      assert.match(md, /\| forward with full cache <= 1\.25x PyTorch CUDA, B=8 T=128 \| g1 \| 1\.20x \| met \|/);
      assert.match(md, /\| forward with full cache <= 1\.25x PyTorch CUDA, B=1 T=1024 \| g1 \| failed: `BackendError: lost` \| \*\*not met\*\* \(did not run\) \|/);
      assert.match(md, /\| forward without cache <= 1\.25x PyTorch CUDA, B=8 T=128 \| g1 \| 1\.50x \| \*\*not met\*\* \|/);
      assert.match(md, /\| peak memory <= 1\.3 x \(weights \+ cache\), B=8 T=128 \| g1 \| 1\.45x \| \*\*not met\*\* \|/);
      assert.match(md, /\| retrieval scoring <= 1\.5x HF eager, context 4096 \| g1 \| 1\.20x \| met \|/);
      assert.match(md, /\| all-positions head sweep >= 2x the PyTorch loop's speed \| g1 \| 2\.50x \| met \|/);
      assert.match(md, /\| by-position head sweep >= 5x the PyTorch loop's speed \| g1 \| 4\.00x \| \*\*not met\*\* \|/);
      assert.match(md, /\| 7B shape at 4096 tokens runs; retrieval within 2x HF bf16 eager \| g1 \| 2\.50x \| \*\*not met\*\* \|/);
      assert.match(md, /\| matmul \| 2 \| 3\.0 \| 75\.0% \| 2 \| 2\.0 \| 100\.0% \|/);
      assert.match(md, /\| weights resident \| 13\.50 GiB \(bf16\) \|/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
