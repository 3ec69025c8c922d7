#!/usr/bin/env node
// tflens benchmarks against a PyTorch baseline (issue 10; the bench parts of issues 6 and 7).
//
//   npm run bench                                   # CPU preset, here (wasm vs torch CPU)
//   node bench/run.mjs --device                     # accelerator preset (WebGPU vs torch CUDA)
//   node bench/run.mjs --quick                      # tiny sizes (smoke run; timings meaningless)
//   options: --parts matmul,forward,sweeps,retrieval   --out DIR (default bench/results)
//            --no-torch   --python PATH   --tag NAME   --no-table
//   env: TFLENS_BACKEND (forces the backend), TFLENS_DIST (library build to use, default dist/),
//        TFLENS_BENCH_PYTHON (python with torch)
//
// Each run writes <out>/<tag>.json (every number of the run, with machine, backend, date, command)
// and regenerates bench/RESULTS.md from all JSON files in bench/results (bench/table.mjs).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync, renameSync, readFileSync, existsSync } from 'node:fs';
import { cpus, loadavg, totalmem, hostname, platform, arch, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { lib, ROOT, DIST } from './lib.mjs';
import { PRESETS, GPT2_SMALL, QWEN2_05B, forwardFlops, decodeFlops } from './presets.mjs';
import { writeTable, summarise } from './table.mjs';
import { sampledPeak as sampledPeakOf } from './memory.mjs';
import { cpuForwardIntKernels, patchSweepAsync, patchLoopAsync, retrievalSampleAsync } from './webgpu-node.mjs';

const { tf, initBackend, formatBackendReport, randomModel, patchSweep, patchSweepLoop, inductionProblem, mulberry32, RetrievalScorer, scoreRetrievalSample } = lib;

// ------------------------------------------------------------------ arguments
const argv = process.argv.slice(2);
const flag = (n) => argv.includes(n);
const opt = (n, d) => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
const presetName = flag('--quick') ? 'quick' : flag('--device') ? 'device' : 'cpu';
const P = PRESETS[presetName];
const parts = new Set((opt('--parts', 'matmul,forward,sweeps,retrieval')).split(',').filter(Boolean));
const outDir = resolve(opt('--out', join(ROOT, 'bench', 'results')));
const useTorch = !flag('--no-torch');
const log = (...a) => console.error('[bench]', ...a);
// async drivers (bench/webgpu-node.mjs) instead of the library's synchronous patchSweep / scoreRetrievalSample
let useAsync = flag('--async');
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

function hfGpt2() {
  return { ...GPT2_SMALL };
}

// ------------------------------------------------------------------ parts
async function benchMatmul(n, reps) {
  const [a, b] = [tf.randomNormal([n, n], 0, 1, 'float32', 1), tf.randomNormal([n, n], 0, 1, 'float32', 2)];
  for (let i = 0; i < 2; i++) {
    const c = tf.matMul(a, b);
    await sync(c);
    c.dispose();
  }
  const t0 = now();
  let c = null;
  for (let i = 0; i < reps; i++) {
    c?.dispose();
    c = tf.matMul(a, b);
  }
  await sync(c);
  const dt = (now() - t0) / reps;
  tf.dispose([a, b, c]);
  return { n, reps, seconds: dt, flops: 2 * n ** 3, flops_per_s: (2 * n ** 3) / dt };
}

async function benchForward(model, cases) {
  const out = [];
  let names = null;
  for (const cs of cases) {
    const { B, T } = cs;
    try {
      const rand = mulberry32(7);
      const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(rand() * model.cfg.d_vocab)));
      // plain arrays, not a reused tensor: on WebGPU a tensor that has been used lives on the GPU, and the
      // forward reads its token ids synchronously (which WebGPU under Node cannot do)
      const tokens = ids;
      const n0 = tf.memory().numTensors;
      // memory: a run of its own
      const mem = sampledPeakOf(tf, model, tokens);
      mem.peak_kind = 'tf.memory().numBytes sampled at every hook point (but hook_result, hook_attn_scores) during one runWithCache, minus the bytes before it';
      if (tf.getBackend() !== 'webgpu' && cs.profile !== false) {
        const prof = await tf.profile(() => {
          const r = model.runWithCache(tokens);
          r.logits.dispose();
          r.cache.dispose();
        });
        mem.peak_bytes_profile = prof.peakBytes - (tf.memory().numBytes - prof.newBytes);
        mem.peak_kind_profile = 'tf.profile peakBytes (after every kernel) minus the bytes before the run';
      }
      names = mem.names;
      delete mem.names;
      for (let i = 0; i < (cs.warmup ?? 1); i++) {
        const r = model.runWithCache(tokens);
        await sync(r.logits);
        r.logits.dispose();
        r.cache.dispose();
      }
      const times = [];
      for (let i = 0; i < cs.reps; i++) {
        const t0 = now();
        const r = model.runWithCache(tokens);
        await sync(r.logits);
        times.push(now() - t0);
        r.logits.dispose();
        r.cache.dispose();
      }
      const leaked = tf.memory().numTensors - n0;
      const flops = forwardFlops(model.cfg, B, T);
      out.push({ B, T, reps: cs.reps, seconds: median(times), all_seconds: times, flops, flops_per_s: flops / median(times), memory: mem, tensors_leaked: leaked });
      log(`forward B=${B} T=${T}: ${median(times).toFixed(4)} s, ${(flops / median(times) / 1e9).toFixed(1)} GFLOP/s`);
    } catch (e) {
      // one size failing (e.g. the wasm heap cannot hold the full cache) keeps the other sizes' numbers
      out.push({ B, T, error: errMsg(e) });
      log(`forward B=${B} T=${T} failed: ${errMsg(e)}`);
    }
  }
  return { cases: out, cache_names: names };
}

function problemFor(model, sw) {
  const rand = mulberry32(sw.seed ?? 3);
  const V = model.cfg.d_vocab;
  const p = inductionProblem(model, { n: sw.N, R: sw.R, low: V > 30000 ? 1000 : 1, high: V > 30000 ? 20000 : V - 1 }, rand);
  // the correct / wrong tokens, recovered from the problem's construction (A[R-1], B[R-1])
  const R = sw.R;
  const off = model.bosTokenId() === null ? 0 : 1;
  const correct = p.clean.map((r) => r[off + R - 1]);
  const wrong = p.corrupted.map((r) => r[off + R - 1]);
  return { p, json: { clean: p.clean, corrupted: p.corrupted, readPositions: p.readPositions, correct, wrong } };
}

async function benchSweeps(model, sw, problems) {
  const out = { maxBatch: sw.maxBatch, driver: useAsync ? 'bench async driver (bench/webgpu-node.mjs) over the library forward' : 'library patchSweep / patchSweepLoop', kinds: {} };
  for (const kind of sw.kinds) {
    const size = { N: sw.N, R: sw.R, ...(sw.sizes?.[kind] ?? {}) };
    const { p, json } = problems[kind];
    const n0 = tf.memory().numTensors;
    const rec = { N: size.N, T: p.clean[0].length, problem: json };
    // on WebGPU: the library's own patchSweepAsync where it has one, else the bench's driver
    const libAsync = useAsync && typeof lib.patchSweepAsync === 'function';
    const sweepAsync = libAsync
      ? (pp, k, o) => lib.patchSweepAsync(model, pp, 'z', k, o)
      : (pp, k, o) => patchSweepAsync(tf, model, pp, k, o);
    rec.driver = !useAsync ? 'library patchSweep' : libAsync ? 'library patchSweepAsync' : 'bench async driver (bench/webgpu-node.mjs)';
    rec.loop_driver = useAsync ? 'bench async loop (bench/webgpu-node.mjs patchLoopAsync)' : 'library patchSweepLoop';
    if (useAsync) {
      // the synchronous library function first: does it run on this backend?
      try {
        patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch, layers: [model.cfg.n_layers - 1] });
        rec.library_runs = true;
      } catch (e) {
        rec.library_error = errMsg(e);
        log(`library patchSweep failed here: ${rec.library_error}`);
      }
      await sweepAsync(p, kind, { maxBatch: sw.maxBatch, layers: [model.cfg.n_layers - 1] }); // warm-up (shader compilation)
    } else {
      patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch, layers: [model.cfg.n_layers - 1] }); // warm-up
    }
    let t0 = now();
    const res = useAsync ? await sweepAsync(p, kind, { maxBatch: sw.maxBatch }) : patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch });
    rec.batched_seconds = now() - t0;
    Object.assign(rec, { forwards: res.forwards, clean: res.clean, corrupted: res.corrupted, values: res.values });
    log(`sweep ${kind} (N=${rec.N}, T=${rec.T}) batched: ${rec.batched_seconds.toFixed(2)} s (${res.forwards} forwards)`);
    if (sw.tflensLoop?.includes(kind)) {
      t0 = now();
      const loop = useAsync ? await patchLoopAsync(tf, model, p, kind) : patchSweepLoop(model, p, 'z', kind);
      rec.loop_seconds = now() - t0;
      rec.loop_forwards = loop.forwards;
      rec.loop_max_abs_diff = maxAbsDiff(loop.values, res.values);
      log(`sweep ${kind} tflens loop: ${rec.loop_seconds.toFixed(2)} s (max |loop - batched| ${rec.loop_max_abs_diff.toExponential(2)})`);
    }
    if (flag('--check-drivers')) {
      // the async driver against the library function on this backend (both must agree)
      const lib1 = patchSweep(model, p, 'z', kind, { maxBatch: sw.maxBatch });
      const asy = await patchSweepAsync(tf, model, p, kind, { maxBatch: sw.maxBatch });
      rec.driver_check_max_abs_diff = maxAbsDiff(lib1.values, asy.values);
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
  const loadSeconds = now() - t0;
  const scorer = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads });
  const rand = mulberry32(11);
  const samples = [];
  let libraryError = null;
  if (useAsync) {
    try {
      const pr = Array.from({ length: 16 }, (_, i) => i + 1);
      scoreRetrievalSample(model, new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads }), pr, pr.slice(4, 8), { maxNewTokens: 2, span: { start: 4, end: 8 } });
    } catch (e) {
      libraryError = errMsg(e);
      log(`library scoreRetrievalSample failed here: ${libraryError}`);
    }
  }
  if (flag('--check-drivers')) {
    // async driver and library give the same per-head scores on one short sample
    const pr = Array.from({ length: 24 }, () => Math.floor(rand() * model.cfg.d_vocab));
    const a = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads });
    const b = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads });
    const libTokens = scoreRetrievalSample(model, a, pr, pr.slice(8, 12), { maxNewTokens: 4, span: { start: 8, end: 12 } }).tokens;
    const asyTokens = await retrievalSampleAsync(tf, lib, model, b, pr, { start: 8, end: 12 }, 4);
    const sb = b.endSample({ answer: pr.slice(8, 12), response: asyTokens });
    var driverCheck = { same_tokens: JSON.stringify(libTokens) === JSON.stringify(asyTokens), max_abs_score_diff: maxAbsDiff(a.samples[0].scores, sb.scores) };
  }
  for (let s = 0; s < rt.samples; s++) {
    const prompt = Array.from({ length: rt.context }, () => Math.floor(rand() * model.cfg.d_vocab));
    const needle = prompt.slice(rt.context / 2, rt.context / 2 + 8);
    const n0 = tf.memory().numTensors;
    const t = now();
    const span = { start: rt.context / 2, end: rt.context / 2 + 8 };
    let steps;
    if (useAsync) {
      const toks = await retrievalSampleAsync(tf, lib, model, scorer, prompt, span, rt.newTokens);
      steps = scorer.endSample({ answer: needle, response: toks }).steps;
    } else {
      steps = scoreRetrievalSample(model, scorer, prompt, needle, { maxNewTokens: rt.newTokens, span }).sample.steps;
    }
    const dt = now() - t;
    samples.push({ seconds: dt, steps, tensors_leaked: tf.memory().numTensors - n0 });
    log(`retrieval sample ${s}: ${dt.toFixed(2)} s for ${steps} steps at context ${rt.context}`);
  }
  model.dispose?.();
  const timed = samples.length > 1 ? samples.slice(1) : samples;
  return {
    context: rt.context, new_tokens: rt.newTokens, model_shape: cfg, init_seconds: loadSeconds, samples,
    driver: useAsync ? 'bench async driver (bench/webgpu-node.mjs) over the library forward with KV cache' : 'library scoreRetrievalSample', library_error: libraryError,
    driver_check: typeof driverCheck === 'undefined' ? null : driverCheck,
    seconds_per_sample: median(timed.map((s) => s.seconds)),
    note: samples.length > 1 ? 'median of samples after the first (the first is the warm-up)' : 'single sample, includes warm-up',
    flops_prefill: forwardFlops(model.cfg, 1, rt.context), flops_decode_step: decodeFlops(model.cfg, rt.context),
  };
}

// ------------------------------------------------------------------ main
let webgpuPatch = null;

/** Does the library forward run here without synchronous reads of GPU tensors? (a tiny model, a token tensor used twice) */
async function probeForward() {
  try {
    const m = randomModel({ model_type: 'gpt2', n_embd: 16, n_layer: 1, n_head: 2, vocab_size: 32, n_positions: 16 }, { seed: 1 });
    const tok = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
    try {
      for (let i = 0; i < 2; i++) {
        const r = m.runWithCache(tok);
        await r.logits.data();
        r.logits.dispose();
        r.cache.dispose();
      }
    } finally {
      tok.dispose();
      m.dispose();
    }
    return 'ok';
  } catch (e) {
    return errMsg(e);
  }
}

async function main() {
  const started = new Date();
  const rep = await initBackend(process.env.TFLENS_BACKEND || undefined);
  log(formatBackendReport(rep));
  if (rep.active === 'webgpu') {
    useAsync = true;
    webgpuPatch = { forward_probe: await probeForward() };
    if (webgpuPatch.forward_probe !== 'ok' || flag('--int-cpu-forward')) {
      try {
        webgpuPatch.cpu_forwarded_int_kernels = cpuForwardIntKernels(tf);
        webgpuPatch.forward_probe_after_patch = await probeForward();
      } catch (e) {
        webgpuPatch.error = errMsg(e);
      }
    }
    log(`webgpu under Node: ${JSON.stringify(webgpuPatch)}`);
  }
  const py = useTorch ? pythonWithTorch() : null;
  if (useTorch && !py) log('no python with torch found: the PyTorch baseline is skipped (install python3-torch or set TFLENS_BENCH_PYTHON)');
  const torchDevice = rep.active === 'webgpu' || rep.active === 'node-gpu' ? 'cuda' : 'cpu';
  const tag = opt('--tag', `${presetName}-${rep.active}-${started.toISOString().slice(0, 19).replace(/[:T]/g, '-')}`);
  const result = {
    tag,
    preset: presetName,
    date: started.toISOString(),
    command: `node bench/run.mjs ${argv.join(' ')}`.trim(),
    env: { TFLENS_BACKEND: process.env.TFLENS_BACKEND ?? null, TFLENS_DIST: process.env.TFLENS_DIST ?? null },
    machine: { hostname: hostname(), platform: platform(), arch: arch(), cpus: cpus().length, cpu_model: cpus()[0]?.model, total_mem: totalmem(), loadavg_start: loadavg(), node: process.version },
    backend: { active: rep.active, tfjs: tf.getBackend(), details: rep.details, tfjs_version: tf.version.tfjs },
    library: DIST,
    webgpu_node: webgpuPatch,
    drivers_async: useAsync,
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
  // the model and the sweep problems first: the PyTorch baseline runs before tflens (in its own
  // process, so a slow or failing tflens part cannot cost the baseline numbers) and needs both
  let gpt2 = null;
  let cacheNames = null;
  const problems = {};
  if (parts.has('forward') || parts.has('sweeps')) {
    await part('model', async () => {
      const cfg = { ...hfGpt2(), ...(P.modelOverride ?? {}) };
      gpt2 = randomModel(cfg, { seed: 0 });
      result.model = { hf_config: cfg, cfg: gpt2.cfg };
      // the full cache of runWithCache: every hook point but hook_result (TransformerLens default)
      cacheNames = gpt2.hookNames().filter((n) => !n.endsWith('hook_result'));
      for (const kind of P.sweeps.kinds) problems[kind] = problemFor(gpt2, { ...P.sweeps, ...(P.sweeps.sizes?.[kind] ?? {}) });
    });
  }
  if (py) {
    const spec = { ...torchSpec, seed: 0 };
    if (parts.has('matmul')) spec.matmul = { n: P.matmul.n, reps: P.matmul.reps };
    if (gpt2) spec.model = result.model.cfg;
    if (gpt2 && parts.has('forward')) {
      spec.forward = { cases: P.forward };
      spec.cache_names = cacheNames;
    }
    if (gpt2 && parts.has('sweeps')) spec.sweeps = { runs: P.sweeps.kinds.map((kind) => ({ kind, problem: problems[kind].json })) };
    if (parts.has('retrieval') && P.retrieval) {
      spec.retrieval = { hf_config: hfQwen({ ...QWEN2_05B, ...(P.retrieval.configOverride ?? {}) }), context: P.retrieval.context, new_tokens: P.retrieval.newTokens, samples: P.retrieval.samples };
    }
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
  if (gpt2 && parts.has('forward')) {
    await part('forward', async () => {
      result.forward = await benchForward(gpt2, P.forward);
      if (result.forward.cache_names) {
        const got = new Set(result.forward.cache_names);
        result.forward.names_not_in_tflens_cache = cacheNames.filter((n) => !got.has(n));
        result.forward.tflens_names_not_expected = result.forward.cache_names.filter((n) => !cacheNames.includes(n));
      }
    });
  }
  gpt2?.dispose?.();
  if (parts.has('retrieval') && P.retrieval) await part('retrieval', async () => (result.retrieval = await benchRetrieval(P.retrieval)));

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
