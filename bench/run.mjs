#!/usr/bin/env node
// tflens benchmarks against a PyTorch baseline (issue 16; the earlier rows of issues 6, 7 and 10 kept).
//
//   npm run bench                                   # CPU preset, here (wasm vs torch CPU, same threads)
//   node bench/run.mjs --device                     # accelerator preset (WebGPU vs torch CUDA), see bench/notes.md
//   node bench/run.mjs --quick                      # tiny sizes (smoke run; timings meaningless)
//   options: --parts matmul,forward,nocache,memory,profile,sweeps,retrieval,llama7b   --out DIR (default bench/results)
//            --no-torch   --python PATH   --tag NAME   --no-table
//   env: TFLENS_BACKEND (forces the backend), TFLENS_DIST (library build to use, default dist/),
//        TFLENS_BENCH_PYTHON (python with torch), TFLENS_7B_DIR (checkpoint of the llama7b part)
//
// Each run writes <out>/<tag>.json (every number of the run, with machine, backend, date, command)
// and regenerates bench/RESULTS.md from all JSON files in bench/results (bench/table.mjs). The PyTorch
// baseline runs first, in its own process (bench/baseline/torch_bench.py), so that a failing tflens part
// cannot cost its numbers.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, renameSync, readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem, hostname, platform, arch, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { lib, ROOT, DIST } from './lib.mjs';
import { PRESETS, GPT2_SMALL, QWEN2_05B, forwardFlops, decodeFlops } from './presets.mjs';
import { writeTable, summarise } from './table.mjs';
import { forwardPeak, kernelProfile } from './memory.mjs';
import { run7b } from './llama7b.mjs';

const { tf, initBackend, backendLine } = lib;
const { randomModel } = lib.model;
const { patchSweep, patchLoop, inductionProblem } = lib.patching;
const { RetrievalScorer, scoreRetrievalSample } = lib.retrieval;

// ------------------------------------------------------------------ arguments
const argv = process.argv.slice(2);
const flag = (n) => argv.includes(n);
const opt = (n, d) => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
const presetName = flag('--quick') ? 'quick' : flag('--device') ? 'device' : 'cpu';
const P = PRESETS[presetName];
const parts = new Set(opt('--parts', 'matmul,forward,nocache,memory,profile,sweeps,retrieval,llama7b').split(',').filter(Boolean));
const outDir = resolve(opt('--out', join(ROOT, 'bench', 'results')));
const useTorch = !flag('--no-torch');
const log = (...a) => console.error('[bench]', ...a);
const errMsg = (e) => `${e?.name ?? 'Error'}: ${String(e?.message ?? e).split('\n')[0]}`;

// ------------------------------------------------------------------ helpers
const now = () => performance.now() / 1000;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Wait until every queued kernel up to t has run (reads one element back). */
async function sync(t) {
  const s = tf.tidy(() => tf.slice(tf.reshape(t, [-1]), [0], [1]));
  await s.data();
  s.dispose();
}

function pythonWithTorch() {
  const cands = [opt('--python'), process.env.TFLENS_BENCH_PYTHON, 'python3', '/usr/bin/python3', 'python'].filter(Boolean);
  for (const c of cands) {
    const r = spawnSync(c, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
    if (r.status === 0) return { python: c, torch: r.stdout.trim() };
  }
  return null;
}

function runTorch(py, spec, name) {
  const dir = join(tmpdir(), `tflens-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const specPath = join(dir, `${name}.spec.json`);
  const outPath = join(dir, `${name}.out.json`);
  writeFileSync(specPath, JSON.stringify(spec));
  log(`torch: ${name} (${py})`);
  const r = spawnSync(py, [join(ROOT, 'bench', 'baseline', 'torch_bench.py'), specPath, outPath], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, PYTHONUNBUFFERED: '1' } });
  if (r.status !== 0) return { error: `torch_bench.py exited with ${r.status ?? r.signal}` };
  return JSON.parse(readFileSync(outPath, 'utf8'));
}

/** Random token ids [B][T] (seeded; plain arrays). */
function randomIds(B, T, V, seed = 7) {
  const rand = lib.util.mulberry32(seed);
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(rand() * V)));
}

/** Median seconds of `reps` runs of `run` (after `warmup` runs); run returns the tensor to wait for and a cleanup. */
async function timed(run, reps, warmup) {
  for (let i = 0; i < warmup; i++) {
    const r = await run();
    await sync(r.wait);
    r.done();
  }
  const times = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    const r = await run();
    await sync(r.wait);
    times.push(now() - t0);
    r.done();
  }
  return { seconds: median(times), all_seconds: times };
}

// ------------------------------------------------------------------ parts
async function benchMatmul(n, reps) {
  const [a, b] = [tf.randomNormal([n, n], 0, 1, 'float32', 1), tf.randomNormal([n, n], 0, 1, 'float32', 2)];
  const r = await timed(() => {
    const c = tf.matMul(a, b);
    return { wait: c, done: () => c.dispose() };
  }, reps, 2);
  tf.dispose([a, b]);
  return { n, reps, seconds: r.seconds, flops: 2 * n ** 3, flops_per_s: (2 * n ** 3) / r.seconds };
}

/** Forward with the full activation cache (TransformerLens's run_with_cache default set), per case. */
/** Forward timings per case: with the full cache (`withCache`, TransformerLens's run_with_cache) or logits only. */
async function benchForward(model, cases, withCache = true) {
  const out = [];
  const what = (cs) => (withCache ? `full cache${cs.cacheOn === 'host' ? ' on the host' : ''}` : 'no cache');
  for (const cs of cases) {
    const { B, T } = cs;
    const tags = withCache ? { cache_on: cs.cacheOn ?? 'device' } : {};
    try {
      const ids = randomIds(B, T, model.cfg.d_vocab);
      const n0 = tf.memory().numTensors;
      let names = null;
      const r = await timed(async () => {
        if (!withCache) {
          const logits = await model.forward(ids);
          return { wait: logits, done: () => logits.dispose() };
        }
        const { logits, cache } = await model.runWithCache(ids, { cacheOn: cs.cacheOn });
        names ??= cache.keys();
        return {
          wait: logits,
          done: () => {
            logits.dispose();
            cache.dispose();
          },
        };
      }, cs.reps, cs.warmup ?? 1);
      const flops = forwardFlops(model.cfg, B, T);
      const extra = withCache ? { cached_tensors: names.length, tensors_leaked: tf.memory().numTensors - n0 } : {};
      out.push({ B, T, ...tags, reps: cs.reps, ...r, flops, flops_per_s: flops / r.seconds, ...extra });
      log(`forward (${what(cs)}) B=${B} T=${T}: ${r.seconds.toFixed(4)} s, ${(flops / r.seconds / 1e9).toFixed(1)} GFLOP/s`);
    } catch (e) {
      // one size failing (e.g. the wasm heap) keeps the other sizes' numbers
      out.push({ B, T, ...tags, error: errMsg(e) });
      log(`forward (${what(cs)}) B=${B} T=${T} failed: ${errMsg(e)}`);
    }
  }
  return out;
}

async function benchMemory(model, cases) {
  const out = [];
  for (const cs of cases) {
    try {
      const m = await forwardPeak(tf, model, randomIds(cs.B, cs.T, model.cfg.d_vocab), { cacheOn: cs.cacheOn });
      out.push({ B: cs.B, T: cs.T, ...m });
      log(`memory B=${cs.B} T=${cs.T} (cache on ${m.cache_on}): peak ${(m.peak_bytes / 2 ** 20).toFixed(1)} MiB above the weights (${(m.weights_bytes / 2 ** 20).toFixed(1)} MiB), cache ${(m.cache_bytes / 2 ** 20).toFixed(1)} MiB, ratio ${m.ratio_to_weights_plus_cache.toFixed(2)}`);
    } catch (e) {
      out.push({ B: cs.B, T: cs.T, cache_on: cs.cacheOn ?? 'device', error: errMsg(e) });
      log(`memory B=${cs.B} T=${cs.T} failed: ${errMsg(e)}`);
    }
  }
  return out;
}

async function benchProfile(model, cs) {
  const ids = randomIds(cs.B, cs.T, model.cfg.d_vocab);
  const run = (o) => async () => {
    const { logits, cache } = await model.runWithCache(ids, o);
    await sync(logits);
    logits.dispose();
    cache.dispose();
  };
  await run({})(); // warm-up (shader compilation)
  const full = await kernelProfile(tf, run({}));
  const none = await kernelProfile(tf, async () => {
    const logits = await model.forward(ids);
    await sync(logits);
    logits.dispose();
  });
  log(`profile B=${cs.B} T=${cs.T}: ${full.kernels} kernels with the full cache, ${none.kernels} without`);
  return { B: cs.B, T: cs.T, full_cache: full, no_cache: none };
}

function problemFor(model, sw) {
  const V = model.cfg.d_vocab;
  const p = inductionProblem(model, { n: sw.N, R: sw.R, seed: sw.seed ?? 3, low: V > 30000 ? 1000 : 1, high: V > 30000 ? 20000 : V - 1 });
  // the correct / wrong tokens, from the problem's construction (A[R-1], B[R-1])
  const off = model.bosTokenId() === null ? 0 : 1;
  const correct = p.clean.map((r) => r[off + sw.R - 1]);
  const wrong = p.corrupted.map((r) => r[off + sw.R - 1]);
  return { p, json: { clean: p.clean, corrupted: p.corrupted, readPositions: p.readPositions, correct, wrong } };
}

async function benchSweeps(model, sw, problems) {
  const out = { maxBatch: sw.maxBatch, driver: 'library patchSweep (batched) / patchLoop (one forward per index)', kinds: {} };
  for (const kind of sw.kinds) {
    const { p, json } = problems[kind];
    const n0 = tf.memory().numTensors;
    const rec = { N: p.clean.length, T: p.clean[0].length, problem: json, driver: 'library patchSweep', loop_driver: 'library patchLoop' };
    await patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch, layers: [model.cfg.n_layers - 1] }); // warm-up (shader compilation)
    let t0 = now();
    const res = await patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch });
    rec.batched_seconds = now() - t0;
    Object.assign(rec, { forwards: res.forwards, clean: res.clean, corrupted: res.corrupted, values: res.values });
    log(`sweep ${kind} (N=${rec.N}, T=${rec.T}) batched: ${rec.batched_seconds.toFixed(2)} s (${res.forwards} forwards)`);
    if (sw.tflensLoop?.includes(kind)) {
      t0 = now();
      const loop = await patchLoop(model, p, 'z', kind);
      rec.loop_seconds = now() - t0;
      rec.loop_forwards = loop.forwards;
      rec.loop_max_abs_diff = maxAbsDiff(loop.values, res.values);
      log(`sweep ${kind} tflens loop: ${rec.loop_seconds.toFixed(2)} s (max |loop - batched| ${rec.loop_max_abs_diff.toExponential(2)})`);
    }
    rec.tensors_leaked = tf.memory().numTensors - n0;
    out.kinds[kind] = rec;
  }
  return out;
}

function maxAbsDiff(a, b) {
  const fa = a.flat(3);
  const fb = b.flat(3);
  let m = 0;
  for (let i = 0; i < fa.length; i++) m = Math.max(m, Math.abs(fa[i] - fb[i]));
  return m;
}

async function benchRetrieval(rt) {
  const cfg = { ...QWEN2_05B, ...(rt.configOverride ?? {}) };
  const t0 = now();
  const model = randomModel(cfg, { seed: 5 });
  const initSeconds = now() - t0;
  const scorer = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads });
  const rand = lib.util.mulberry32(11);
  const samples = [];
  try {
    for (let s = 0; s < rt.samples; s++) {
      const prompt = Array.from({ length: rt.context }, () => Math.floor(rand() * model.cfg.d_vocab));
      const span = { start: rt.context / 2, end: rt.context / 2 + 8 };
      const n0 = tf.memory().numTensors;
      const t = now();
      const res = await scoreRetrievalSample(model, scorer, prompt, prompt.slice(span.start, span.end), { maxNewTokens: rt.newTokens, span, stopTokens: [] });
      const dt = now() - t;
      samples.push({ seconds: dt, steps: res.sample.steps, tensors_leaked: tf.memory().numTensors - n0 });
      log(`retrieval sample ${s}: ${dt.toFixed(2)} s for ${res.sample.steps} steps at context ${rt.context}`);
    }
  } finally {
    model.dispose();
  }
  const rest = samples.length > 1 ? samples.slice(1) : samples;
  return {
    context: rt.context, new_tokens: rt.newTokens, model_shape: cfg, init_seconds: initSeconds, samples,
    driver: 'library scoreRetrievalSample (decodeWithKeys: generate with the KV cache, lastRowArgmaxHook readers)',
    seconds_per_sample: median(rest.map((s) => s.seconds)),
    note: samples.length > 1 ? 'median of samples after the first (the first is the warm-up)' : 'single sample, includes warm-up',
    flops_prefill: forwardFlops(model.cfg, 1, rt.context), flops_decode_step: decodeFlops(model.cfg, rt.context),
  };
}

// ------------------------------------------------------------------ main
async function main() {
  const started = new Date();
  await initBackend(process.env.TFLENS_BACKEND || undefined);
  const rep = lib.backend.backendReport();
  log(backendLine());
  const py = useTorch ? pythonWithTorch() : null;
  if (useTorch && !py) log('no python with torch found: the PyTorch baseline is skipped (install python3-torch or set TFLENS_BENCH_PYTHON)');
  const gpu = rep.active === 'webgpu' || rep.active === 'node-gpu';
  const torchDevice = gpu ? 'cuda' : 'cpu';
  const tag = opt('--tag', `${presetName}-${rep.active}-${started.toISOString().slice(0, 19).replace(/[:T]/g, '-')}`);
  const dir7b = process.env.TFLENS_7B_DIR || null;
  const result = {
    tag,
    goals: 'issue16',
    preset: presetName,
    date: started.toISOString(),
    command: `node bench/run.mjs ${argv.join(' ')}`.trim(),
    env: { TFLENS_BACKEND: process.env.TFLENS_BACKEND ?? null, TFLENS_DIST: process.env.TFLENS_DIST ?? null, TFLENS_7B_DIR: dir7b, TFLENS_WEBGPU_FAST: process.env.TFLENS_WEBGPU_FAST ?? null },
    machine: { hostname: hostname(), platform: platform(), arch: arch(), cpus: cpus().length, cpu_model: cpus()[0]?.model, total_mem: totalmem(), loadavg_start: loadavg(), node: process.version },
    backend: { active: rep.active, tfjs: tf.getBackend(), details: rep.details, tfjs_version: tf.version.tfjs },
    library: DIST,
    fused_kernels: lib.model.ops.fusedKernels(),
    torch: py ? { python: py.python, version: py.torch, device: torchDevice } : null,
    sizes: P,
  };
  const torchSpec = { device: torchDevice, threads: P.torchThreads ?? (rep.details.threads || undefined) };

  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${tag}.json`);
  const save = () => {
    writeFileSync(file + '.tmp', JSON.stringify(result, null, 1));
    renameSync(file + '.tmp', file);
  };
  result.errors = {};
  const part = async (name, fn) => {
    try {
      await fn();
    } catch (e) {
      result.errors[name] = errMsg(e);
      log(`${name} failed: ${result.errors[name]}`);
      if (process.env.TFLENS_BENCH_DEBUG) console.error(e);
    }
    save(); // a checkpoint after each part: an interrupted run keeps what it finished
  };
  // the model and the sweep problems first: the PyTorch baseline runs before tflens and needs both
  let gpt2 = null;
  const problems = {};
  const gpt2Parts = ['forward', 'nocache', 'memory', 'profile', 'sweeps'].some((p) => parts.has(p));
  if (gpt2Parts) {
    await part('model', async () => {
      const cfg = { ...GPT2_SMALL, ...(P.modelOverride ?? {}) };
      const b0 = tf.memory().numBytes;
      gpt2 = randomModel(cfg, { seed: 0 });
      result.model = { hf_config: cfg, cfg: gpt2.cfg, weights_bytes: tf.memory().numBytes - b0 };
      result.cache_names = gpt2.hookNames().filter((n) => gpt2.cacheFilter(undefined)(n));
      for (const kind of P.sweeps.kinds) problems[kind] = problemFor(gpt2, { ...P.sweeps, ...(P.sweeps.sizes?.[kind] ?? {}) });
    });
  }
  if (py) {
    const spec = { ...torchSpec, seed: 0 };
    if (parts.has('matmul')) spec.matmul = { n: P.matmul.n, reps: P.matmul.reps };
    if (gpt2) spec.model = result.model.cfg;
    if (gpt2 && parts.has('forward')) {
      spec.forward = { cases: P.forward };
      spec.cache_names = result.cache_names;
    }
    if (gpt2 && parts.has('nocache')) spec.nocache = { cases: P.nocache };
    if (gpt2 && parts.has('sweeps')) spec.sweeps = { runs: P.sweeps.kinds.map((kind) => ({ kind, problem: problems[kind].json })) };
    if (parts.has('retrieval') && P.retrieval) {
      spec.retrieval = { hf_config: hfQwen({ ...QWEN2_05B, ...(P.retrieval.configOverride ?? {}) }), context: P.retrieval.context, new_tokens: P.retrieval.newTokens, samples: P.retrieval.samples };
    }
    if (parts.has('llama7b') && P.llama7b && dir7b) spec.llama7b = { dir: dir7b, context: P.llama7b.context, new_tokens: P.llama7b.newTokens, samples: P.llama7b.samples };
    result.baseline = runTorch(py.python, spec, tag);
    save();
  }
  if (parts.has('matmul')) {
    await part('matmul', async () => {
      result.matmul = await benchMatmul(P.matmul.n, P.matmul.reps);
      log(`matmul ${P.matmul.n}: ${(result.matmul.flops_per_s / 1e9).toFixed(1)} GFLOP/s`);
    });
  }
  if (gpt2 && parts.has('sweeps')) await part('sweeps', async () => (result.sweeps = await benchSweeps(gpt2, P.sweeps, problems)));
  if (gpt2 && parts.has('forward')) await part('forward', async () => (result.forward = { cases: await benchForward(gpt2, P.forward) }));
  if (gpt2 && parts.has('nocache')) await part('nocache', async () => (result.nocache = { cases: await benchForward(gpt2, P.nocache, false) }));
  if (gpt2 && parts.has('memory')) await part('memory', async () => (result.memory = { cases: await benchMemory(gpt2, P.memory) }));
  if (gpt2 && parts.has('profile')) await part('profile', async () => (result.profile = await benchProfile(gpt2, P.profile)));
  gpt2?.dispose();
  if (parts.has('retrieval') && P.retrieval) await part('retrieval', async () => (result.retrieval = await benchRetrieval(P.retrieval)));
  if (parts.has('llama7b') && P.llama7b) {
    if (!dir7b) log('llama7b: no TFLENS_7B_DIR (bench/device/make_7b.py writes the checkpoint): skipped');
    else await part('llama7b', async () => (result.llama7b = await run7b(lib, dir7b, P.llama7b, log)));
  }

  result.machine.loadavg_end = loadavg();
  result.finished = new Date().toISOString();
  result.summary = summarise(result);
  save();
  log(`wrote ${file}`);
  if (!flag('--no-table')) log(`wrote ${writeTable(join(ROOT, 'bench', 'results'), join(ROOT, 'bench', 'RESULTS.md'))}`);
  console.log(JSON.stringify(result.summary, null, 1));
}

function hfQwen(shape) {
  return {
    hidden_size: shape.hidden_size, num_hidden_layers: shape.num_hidden_layers, num_attention_heads: shape.num_attention_heads,
    num_key_value_heads: shape.num_key_value_heads, intermediate_size: shape.intermediate_size, vocab_size: shape.vocab_size,
    max_position_embeddings: shape.max_position_embeddings, tie_word_embeddings: shape.tie_word_embeddings,
  };
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
