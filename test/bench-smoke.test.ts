// Smoke tests of the bench code (no timing assertions): the PyTorch baseline computes what tflens
// computes (same weights: logits, cached activations and a head-patching sweep), the bench's async
// drivers give the library's results, the FLOP count matches a hand count, and the table says
// "not met" where a goal is missed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import * as model from '../src/model/index.js';
import { randomModel } from '../src/model/index.js';
import { patchSweep } from '../src/circuits/patching.js';
import { inductionProblem } from '../src/circuits/problem.js';
import { RetrievalScorer, scoreRetrievalSample } from '../src/analyses/retrieval.js';
import { mulberry32 } from '../src/util/random.js';

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

function maxRel(a: number[], b: number[]): number {
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
      for (const [k, t] of Object.entries(m.params)) weights[k] = { shape: t.shape, data: Array.from(t.dataSync()) };
      writeFileSync(join(dir, 'w.json'), JSON.stringify(weights));
      const rand = mulberry32(9);
      const p = inductionProblem(m, { n: 2, R: 3, low: 1, high: 63 }, rand);
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
      const { logits, cache } = m.runWithCache(tokens, { namesFilter: names as never });
      assert.ok(maxRel(Array.from(logits.dataSync()), (out.check.logits as number[][][]).flat(2)) < 1e-4, 'logits');
      for (const n of names) assert.ok(maxRel(Array.from(cache.get(n).dataSync()), out.check.cache[n]) < 1e-4, n);
      logits.dispose();
      cache.dispose();
      assert.equal(tf.memory().numTensors, before);

      // the same sweep: the torch loop's values are tflens's batched values
      const ours = patchSweep(m, p, 'z', 'head');
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

describe('bench: async drivers (WebGPU under Node) give the library results', function () {
  this.timeout(60000);
  it('patchSweepAsync and patchLoopAsync equal patchSweep (all positions and by position)', async () => {
    const { patchSweepAsync, patchLoopAsync } = await load('webgpu-node.mjs');
    const m = randomModel(TINY, { seed: 2 });
    const p = inductionProblem(m, { n: 2, R: 3, low: 1, high: 63 }, mulberry32(1));
    const before = tf.memory().numTensors;
    for (const kind of ['head', 'head_pos'] as const) {
      const lib = patchSweep(m, p, 'z', kind, { maxBatch: 8 });
      const asy = await patchSweepAsync(tf, m, p, kind, { maxBatch: 8 });
      const loop = await patchLoopAsync(tf, m, p, kind);
      assert.ok(maxRel(asy.values.flat(2), (lib.values as number[][]).flat(2)) < 1e-5, `${kind} batched`);
      assert.ok(maxRel(loop.values.flat(2), (lib.values as number[][]).flat(2)) < 1e-4, `${kind} loop`);
      assert.equal(asy.clean, lib.clean);
      // not all zero: the patches move the metric
      assert.ok(lib.values.flat(2).some((v: number) => Math.abs(v - lib.corrupted) > 1e-6));
    }
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  });

  it('retrievalSampleAsync gives the tokens and per-head scores of scoreRetrievalSample', async () => {
    const { retrievalSampleAsync } = await load('webgpu-node.mjs');
    const m = randomModel({ model_type: 'qwen2', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 64, vocab_size: 48, max_position_embeddings: 64 }, { seed: 3 });
    const rand = mulberry32(5);
    const prompt = Array.from({ length: 20 }, () => Math.floor(rand() * 48));
    const span = { start: 6, end: 10 };
    const a = new RetrievalScorer({ nLayers: 2, nHeads: 4 });
    const b = new RetrievalScorer({ nLayers: 2, nHeads: 4 });
    const ref = await scoreRetrievalSample(m, a, prompt, prompt.slice(6, 10), { maxNewTokens: 6, span, stopTokens: [] });
    const before = tf.memory().numTensors;
    const toks = await retrievalSampleAsync(tf, model, m, b, prompt, span, 6);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(toks, ref.tokens);
    const sb = b.endSample({ answer: prompt.slice(6, 10), response: toks });
    assert.deepEqual(sb.scores, a.samples[0].scores);
    assert.equal(sb.steps, 6);
    m.dispose();
  });
});

describe('bench: memory of a full-cache forward', function () {
  this.timeout(60000);
  it('the hook-sampled peak lies between the cache bytes and the tf.profile peak; the cache bytes are the sum of the cached shapes', async () => {
    const { sampledPeak } = await load('memory.mjs');
    const m = randomModel(TINY, { seed: 6 });
    const tokens = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]];
    const before = tf.memory().numTensors;
    const mem = sampledPeak(tf, m, tokens);
    assert.equal(tf.memory().numTensors, before);
    // independent count: 4 bytes x elements of every hook point's TransformerLens shape (B=2, T=8, d=32, H=4, dh=8, m=128, V=64)
    const [B, T, d, H, dh, mlp] = [2, 8, 32, 4, 8, 128];
    const perLayer = B * T * (d /* resid_pre */ + 1 + d /* ln1 scale, normalized */ + 4 * H * dh /* q k v z */ + d /* attn_out */ + d /* resid_mid */ + 1 + d /* ln2 */ + 2 * mlp /* pre post */ + d /* mlp_out */ + d /* resid_post */) + 2 * B * H * T * T /* scores, pattern */;
    const global = B * T * (d /* embed */ + d /* pos_embed */ + 1 + d /* ln_final */ + d /* unembed in */ + 64 /* unembed out */);
    assert.equal(mem.cache_bytes, 4 * (2 * perLayer + global));
    assert.equal(mem.cached_tensors, m.hookNames().filter((n) => !n.endsWith('hook_result')).length);
    const prof = await tf.profile(() => {
      const r = m.runWithCache(tokens);
      r.logits.dispose();
      r.cache.dispose();
    });
    const start = tf.memory().numBytes - prof.newBytes;
    assert.ok(mem.peak_bytes >= mem.cache_bytes, `${mem.peak_bytes} >= ${mem.cache_bytes}`);
    assert.ok(mem.peak_bytes <= prof.peakBytes - start, `${mem.peak_bytes} <= ${prof.peakBytes - start}`);
    m.dispose();
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

  it('the table marks unmet goals and takes every number from the JSON', async () => {
    const { writeTable } = await load('table.mjs');
    const dir = mkdtempSync(join(tmpdir(), 'bench-table-'));
    try {
      mkdirSync(join(dir, 'results'));
      const run = {
        tag: 't1', preset: 'cpu', date: '2026-01-01T00:00:00Z', finished: '2026-01-01T00:01:00Z', command: 'node bench/run.mjs',
        machine: { cpus: 2, cpu_model: 'X', total_mem: 2 ** 30, platform: 'linux', arch: 'x64', node: 'v20', loadavg_start: [1, 1, 1], loadavg_end: [2, 2, 2] },
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
});
