// Builds bench/RESULTS.md from the JSON files in bench/results (every number comes from a run's
// JSON; the prose in bench/notes.md is appended as is).   node bench/table.mjs
import { readdirSync, readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const ms = (s) => (s === null || s === undefined ? '–' : s < 1 ? `${(s * 1e3).toFixed(1)} ms` : `${s.toFixed(2)} s`);
const mib = (b) => (b === null || b === undefined ? '–' : `${(b / 2 ** 20).toFixed(1)} MiB`);
const pct = (x) => (x === null || x === undefined ? '–' : `${(100 * x).toFixed(1)}%`);
const yes = (ok) => (ok === null || ok === undefined ? '–' : ok ? 'met' : '**not met**');

/**
 * Ratios and goal checks, computed from a run's measured numbers only (the table recomputes them, so a
 * run whose tflens part failed still shows the baseline's numbers). Runs of the issue-16 bench (they
 * have `goals: 'issue16'`) are summarised against that issue's goals (summarise16).
 */
export function summarise(r) {
  if (r.goals === 'issue16') return summarise16(r);
  const s = {};
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const gpu = r.backend.active === 'webgpu' || r.backend.active === 'node-gpu';
  if (r.matmul) s.matmul_peak_gflops = r.matmul.flops_per_s / 1e9;
  if (b?.matmul) s.torch_matmul_peak_gflops = b.matmul.flops_per_s / 1e9;
  const fcases = (r.forward?.cases ?? (b?.forward ?? []).map((t) => ({ B: t.B, T: t.T }))).map((c) => ({ ...c, missing: c.seconds === undefined }));
  if (fcases.length) {
    s.forward = fcases.map((c) => {
      const t = b?.forward?.find((x) => x.B === c.B && x.T === c.T);
      const flops = c.flops ?? (r.model ? forwardFlopsOf(r.model.cfg, c.B, c.T) : null);
      const share = !c.missing && r.matmul ? c.flops_per_s / r.matmul.flops_per_s : null;
      return {
        B: c.B, T: c.T, tflens_s: c.missing ? null : c.seconds, torch_s: t?.seconds ?? null,
        time_ratio_tflens_over_torch: t && !c.missing ? c.seconds / t.seconds : null,
        tflens_gflops: c.missing ? null : c.flops_per_s / 1e9,
        share_of_matmul_peak: share, goal_70pct_of_peak: share === null ? null : share >= 0.7,
        torch_share_of_its_matmul_peak: t && b.matmul && flops ? flops / t.seconds / b.matmul.flops_per_s : null,
        tflens_cache_bytes: c.memory?.cache_bytes ?? null, torch_cache_bytes: t?.memory.cache_bytes ?? null,
        cached_tensors: c.memory?.cached_tensors ?? t?.memory.cached_tensors ?? null,
        tflens_peak_bytes: c.memory?.peak_bytes ?? null, tflens_peak_bytes_profile: c.memory?.peak_bytes_profile ?? null, torch_peak_bytes: t?.memory.peak_bytes ?? null,
        torch_peak_kind: t?.memory.peak_kind ?? null,
      };
    });
  }
  const kinds = r.sweeps?.kinds ?? Object.fromEntries(Object.entries(b?.sweeps ?? {}).map(([k, t]) => [k, { N: t.N, T: t.T, missing: true }]));
  if (Object.keys(kinds).length) {
    const need = gpu ? 2 : 1;
    s.sweeps = Object.entries(kinds).map(([kind, k]) => {
      const t = b?.sweeps?.[kind];
      const speedup = t && !k.missing ? t.seconds / k.batched_seconds : null;
      return {
        kind, N: k.N, T: k.T, tflens_batched_s: k.batched_seconds ?? null, tflens_loop_s: k.loop_seconds ?? null, torch_loop_s: t?.seconds ?? null,
        speedup_vs_torch_loop: speedup, goal: `${need}x`, goal_met: speedup === null ? null : speedup >= need,
      };
    });
  }
  if (r.retrieval || b?.retrieval) {
    s.retrieval = {
      context: r.retrieval?.context ?? b.retrieval.context, new_tokens: r.retrieval?.new_tokens ?? b.retrieval.new_tokens,
      tflens_s_per_sample: r.retrieval?.seconds_per_sample ?? null, torch_s_per_sample: b?.retrieval ? afterWarmup(b.retrieval.samples.map((x) => x.seconds)) : null,
    };
  }
  return s;
}

/** Median of the samples after the first (the warm-up) when there are several, else the only one. */
function afterWarmup(xs) {
  const t = xs.length > 1 ? xs.slice(1) : xs;
  return [...t].sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

/** Same count as bench/presets.mjs forwardFlops (kept here so the table needs no other module). */
function forwardFlopsOf(c, B, T) {
  const lin = 2 * c.d_model * (c.n_heads + 2 * c.n_kv_heads) * c.d_head + 2 * c.n_heads * c.d_head * c.d_model + 2 * c.d_model * c.d_mlp * (c.gated_mlp ? 2 : 1) + 2 * c.d_mlp * c.d_model;
  return B * T * (c.n_layers * lin + 2 * c.d_model * c.d_vocab) + c.n_layers * 4 * B * c.n_heads * T * T * c.d_head;
}

const gib = (b) => (b === null || b === undefined ? '–' : `${(b / 2 ** 30).toFixed(2)} GiB`);
const ratio = (a, b) => (a === null || a === undefined || !b ? null : a / b);
const isGpu = (r) => r.backend.active === 'webgpu' || r.backend.active === 'node-gpu';

/** The issue-16 goals of a run: forward times, memory, retrieval, sweeps and the 7B rows, each with its goal. */
export function summarise16(r) {
  const s = {};
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const gpu = isGpu(r);
  const torchFwd = (list, c) => list?.find((x) => x.B === c.B && x.T === c.T) ?? null;
  const row = (c, t, goal) => {
    const q = ratio(c.seconds ?? null, t?.seconds);
    return { B: c.B, T: c.T, cache_on: c.cache_on ?? 'device', tflens_s: c.seconds ?? null, torch_s: t?.seconds ?? null, ratio: q, goal, met: q === null ? null : q <= goal, error: c.error ?? null };
  };
  s.forward = (r.forward?.cases ?? []).map((c) => row(c, torchFwd(b?.forward, c), gpu ? 1.25 : 3));
  s.nocache = (r.nocache?.cases ?? []).map((c) => ({ ...row(c, torchFwd(b?.nocache, c), gpu ? 1.25 : 3), cache_on: 'none' }));
  s.memory = (r.memory?.cases ?? []).map((m) => ({
    B: m.B, T: m.T, cache_on: m.cache_on, weights: m.weights_bytes ?? null, cache: m.cache_bytes ?? null, logits: m.logits_bytes ?? null, peak: m.peak_bytes ?? null,
    ratio: m.ratio_to_weights_plus_cache ?? null, goal: 1.3, met: m.ratio_to_weights_plus_cache === undefined ? null : m.ratio_to_weights_plus_cache <= 1.3,
    torch_peak: torchFwd(b?.forward, m)?.memory?.peak_bytes ?? null, torch_peak_kind: torchFwd(b?.forward, m)?.memory?.peak_kind ?? null, error: m.error ?? null,
  }));
  const need = { head: gpu ? 2 : 1, head_pos: gpu ? 5 : 1 };
  s.sweeps = Object.entries(r.sweeps?.kinds ?? {}).map(([kind, k]) => {
    const t = b?.sweeps?.[kind];
    const sp = t && k.batched_seconds ? t.seconds / k.batched_seconds : null;
    return { kind, N: k.N, T: k.T, tflens_batched_s: k.batched_seconds ?? null, tflens_loop_s: k.loop_seconds ?? null, torch_loop_s: t?.seconds ?? null, speedup: sp, goal: need[kind], met: sp === null ? null : sp >= need[kind] };
  });
  if (r.retrieval || b?.retrieval) {
    const q = ratio(r.retrieval?.seconds_per_sample, b?.retrieval?.seconds_per_sample);
    s.retrieval = { context: r.retrieval?.context ?? b.retrieval.context, new_tokens: r.retrieval?.new_tokens ?? b.retrieval.new_tokens, tflens_s: r.retrieval?.seconds_per_sample ?? null, torch_s: b?.retrieval?.seconds_per_sample ?? null, ratio: q, goal: 1.5, met: q === null ? null : q <= 1.5 };
  }
  if (r.llama7b || b?.llama7b) {
    const t = r.llama7b;
    const q = ratio(t?.seconds_per_sample, b?.llama7b?.seconds_per_sample);
    s.llama7b = {
      context: t?.context ?? b.llama7b.context, weights: t?.weights_bytes ?? null, format: t?.weight_format ?? null, load_s: t?.load_seconds ?? null, torch_load_s: b?.llama7b?.load_seconds ?? null,
      forward_s: t?.forward_seconds ?? null, torch_forward_s: b?.llama7b?.forward_seconds ?? null, peak: t?.memory?.peak_bytes ?? null, torch_peak: b?.llama7b?.forward_peak_bytes ?? null,
      tflens_s: t?.seconds_per_sample ?? null, torch_s: b?.llama7b?.seconds_per_sample ?? null, ratio: q, goal: 2, met: q === null ? null : q <= 2,
    };
  }
  if (r.profile) s.profile = r.profile;
  return s;
}

/** Goal rows of an issue-16 run for the "goals at a glance" table. */
function goalRows16(r) {
  const s = summarise16(r);
  const gpu = isGpu(r);
  const rows = [];
  const res = (met, err) => (err ? '**not met** (did not run)' : yes(met));
  const failed = (e) => `failed: \`${e}\``;
  for (const c of s.forward) {
    const where = `B=${c.B} T=${c.T}${c.cache_on === 'host' ? ', cache on the host' : ''}`;
    rows.push([`forward with full cache <= ${c.goal}x PyTorch ${gpu ? 'CUDA' : 'CPU (same threads)'}, ${where}`, c.error ? failed(c.error) : c.ratio === null ? `${ms(c.tflens_s)} (no baseline)` : `${f(c.ratio)}x`, res(c.met, c.error)]);
    if (!gpu && c.T >= 1024) rows.push([`GPT-2-small full cache at ${c.T} tokens completes on ${r.backend.active}`, c.error ? failed(c.error) : ms(c.tflens_s), c.error ? '**not met**' : 'met']);
  }
  for (const c of s.nocache) rows.push([`forward without cache <= ${c.goal}x PyTorch ${gpu ? 'CUDA' : 'CPU'}, B=${c.B} T=${c.T}`, c.error ? failed(c.error) : c.ratio === null ? ms(c.tflens_s) : `${f(c.ratio)}x`, res(c.met, c.error)]);
  for (const m of s.memory) rows.push([`peak memory <= 1.3 x (weights + cache), B=${m.B} T=${m.T}${m.cache_on === 'host' ? ' (cache on the host)' : ''}`, m.error ? failed(m.error) : `${f(m.ratio)}x`, res(m.met, m.error)]);
  if (s.retrieval) rows.push([`retrieval scoring <= 1.5x HF eager, context ${s.retrieval.context}`, s.retrieval.ratio === null ? `${ms(s.retrieval.tflens_s)} vs ${ms(s.retrieval.torch_s)}` : `${f(s.retrieval.ratio)}x`, yes(s.retrieval.met)]);
  for (const w of s.sweeps) rows.push([`${w.kind === 'head' ? 'all-positions' : 'by-position'} head sweep >= ${w.goal}x the PyTorch loop's speed`, w.speedup === null ? 'not measured' : `${f(w.speedup)}x`, yes(w.met)]);
  if (s.llama7b) rows.push([`7B shape at ${s.llama7b.context} tokens runs; retrieval within 2x HF bf16 eager`, s.llama7b.tflens_s === null ? 'did not run' : s.llama7b.ratio === null ? `${ms(s.llama7b.tflens_s)} per sample` : `${f(s.llama7b.ratio)}x`, s.llama7b.tflens_s === null ? '**not met**' : yes(s.llama7b.met)]);
  return rows.map((x) => `| ${x[0]} | ${r.tag} | ${x[1]} | ${x[2]} |`);
}

/** One forward table (with or without the cache). */
function forwardTable(title, rows) {
  if (!rows.length) return [];
  const L = [title, '', '| B x T | cache | tflens | PyTorch | tflens / PyTorch | goal | |', '| --- | --- | --- | --- | --- | --- | --- |'];
  for (const c of rows) L.push(`| ${c.B} x ${c.T} | ${c.cache_on} | ${c.error ? `failed: \`${c.error}\`` : ms(c.tflens_s)} | ${ms(c.torch_s)} | ${f(c.ratio)} | <= ${c.goal} | ${c.error ? '**not met**' : yes(c.met)} |`);
  return [...L, ''];
}

/** Time per kernel class of the profiled forwards (full cache and none). */
function profileTable(p, gpu) {
  const cls = [...new Set([...Object.keys(p.full_cache.classes), ...Object.keys(p.no_cache.classes)])].sort((x, y) => (p.full_cache.classes[y]?.ms ?? 0) - (p.full_cache.classes[x]?.ms ?? 0));
  const L = [`Time per kernel class (tf.profile of one forward, B=${p.B} T=${p.T}; ${gpu ? 'GPU timestamps, each kernel in its own pass while profiling' : 'host clock around each kernel'}):`, ''];
  L.push('| kernel class | full cache: kernels | ms | share | no cache: kernels | ms | share |', '| --- | --- | --- | --- | --- | --- | --- |');
  for (const k of cls) {
    const a = p.full_cache.classes[k] ?? {};
    const z = p.no_cache.classes[k] ?? {};
    L.push(`| ${k} | ${a.kernels ?? 0} | ${f(a.ms, 1)} | ${pct(a.share)} | ${z.kernels ?? 0} | ${f(z.ms, 1)} | ${pct(z.share)} |`);
  }
  L.push(`| all | ${p.full_cache.kernels} | ${f(p.full_cache.total_ms, 1)} | | ${p.no_cache.kernels} | ${f(p.no_cache.total_ms, 1)} | |`, '');
  L.push(`Slowest kernels (full cache): ${p.full_cache.slowest.map((k) => `${k.name} ${f(k.ms, 1)} ms`).join(', ')}.`, '');
  return L;
}

/** An issue-16 run as markdown: header, forward (with / without cache), memory, kernel classes, sweeps, retrieval, 7B. */
export function renderRun16(r) {
  const s = summarise16(r);
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const L = renderHeader(r);
  if (b?.llama7b_error) L.push(`- PyTorch 7B failed: \`${b.llama7b_error}\``, '');
  if (r.matmul) L.push(`Matmul peak (float32 ${r.matmul.n}^3, same process): tflens backend ${f(r.matmul.flops_per_s / 1e9, 1)} GFLOP/s; PyTorch ${f(b?.matmul ? b.matmul.flops_per_s / 1e9 : null, 1)} GFLOP/s.`, '');
  L.push(...forwardTable(`Forward with the full activation cache (GPT-2-small shape, random init, ${r.forward?.cases?.find((c) => c.cached_tensors)?.cached_tensors ?? '?'} cached activations: every hook point but hook_result; median of the timed runs):`, s.forward));
  L.push(...forwardTable('Forward without a cache (logits only):', s.nocache));
  if (s.memory.length) {
    L.push('Memory of one full-cache forward (tf.profile: bytes held after every kernel; the weights are held before the run):', '');
    L.push('| B x T | cache | weights | cache + logits | tflens peak during the run | (weights + peak) / (weights + cache + logits) | goal | | PyTorch peak |', '| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const m of s.memory) L.push(`| ${m.B} x ${m.T} | ${m.cache_on} | ${mib(m.weights)} | ${mib(m.cache === null ? null : m.cache + m.logits)} | ${m.error ? `failed: \`${m.error}\`` : mib(m.peak)} | ${f(m.ratio)} | <= ${m.goal} | ${m.error ? '**not met**' : yes(m.met)} | ${mib(m.torch_peak)} |`);
    L.push('');
  }
  if (s.profile) L.push(...profileTable(s.profile, isGpu(r)));
  if (s.sweeps.length) {
    L.push('Head patching sweeps of hook_z (GPT-2-small shape; induction prompts: R random tokens, then the first R-1 again; logit-difference metric at the last position):', '');
    L.push('| sweep | prompts x T | tflens batched | tflens loop | PyTorch loop (TransformerLens-style) | speedup vs PyTorch loop | goal | |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const w of s.sweeps) L.push(`| ${w.kind === 'head' ? 'all positions, per (layer, head)' : 'by position, per (layer, pos, head)'} | ${w.N} x ${w.T} | ${ms(w.tflens_batched_s)} | ${ms(w.tflens_loop_s)} | ${ms(w.torch_loop_s)} | ${f(w.speedup)}x | ${w.goal}x | ${yes(w.met)} |`);
    L.push('');
  }
  if (s.retrieval) {
    const rt = s.retrieval;
    L.push(`Retrieval scoring (Qwen2-0.5B shape, random init; context ${rt.context}, ${rt.new_tokens} greedy tokens, argmax key of every layer's last query row at each step): tflens ${ms(rt.tflens_s)} per sample; PyTorch (HF eager attention, output_attentions, KV cache) ${ms(rt.torch_s)}; ratio ${f(rt.ratio)} (goal <= 1.5: ${yes(rt.met)}).`, '');
  }
  if (s.llama7b) {
    const q = s.llama7b;
    L.push(`7B shape (Llama-2-7B, random bf16 checkpoint from bench/device/make_7b.py; context ${q.context}):`, '');
    L.push('| | tflens | PyTorch (HF, bf16, eager) |', '| --- | --- | --- |');
    L.push(`| weights resident | ${gib(q.weights)} (${q.format ?? '–'}) | – |`);
    L.push(`| load | ${ms(q.load_s)} | ${ms(q.torch_load_s)} |`);
    L.push(`| forward at ${q.context} tokens (tflens: selected hooks cached; HF: hidden states) | ${ms(q.forward_s)} | ${ms(q.torch_forward_s)} |`);
    L.push(`| peak memory of that forward | ${gib(q.peak)} above the weights | ${gib(q.torch_peak)} (max allocated, weights included) |`);
    L.push(`| retrieval scoring per sample | ${ms(q.tflens_s)} | ${ms(q.torch_s)} |`);
    L.push(`| ratio (goal <= 2) | ${f(q.ratio)} ${yes(q.met)} | |`, '');
  }
  return L.join('\n');
}

/** The lines every run starts with: tag, command, machine, backend, baseline, failures. */
function renderHeader(r) {
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const L = [];
  const gpu = r.backend.details?.adapter ? `, adapter ${r.backend.details.adapter}` : '';
  L.push(`### ${r.tag}`);
  L.push('');
  const envs = Object.entries(r.env ?? {}).filter(([, v]) => v).map(([k, v]) => `${k}=${v} `).join('');
  L.push(`- date: ${r.date} (finished ${r.finished ?? '?'}); command: \`${envs}${r.command}\` (preset \`${r.preset}\`)`);
  L.push(`- machine: ${r.machine.cpus} x ${r.machine.cpu_model ?? '?'}, ${mib(r.machine.total_mem)} RAM, ${r.machine.platform}/${r.machine.arch}, node ${r.machine.node}; load average at start ${r.machine.loadavg_start.map((x) => x.toFixed(1)).join(' ')}, at end ${(r.machine.loadavg_end ?? []).map((x) => x.toFixed(1)).join(' ')}`);
  L.push(`- tflens backend: ${r.backend.active} (tfjs ${r.backend.tfjs_version}${r.backend.details?.threads ? `, ${r.backend.details.threads} thread(s)` : ''}${gpu})${r.fused_kernels === undefined ? '' : r.fused_kernels ? ', fused WebGPU kernels' : ', TensorFlow.js ops'}`);
  if (r.torch) L.push(`- baseline: PyTorch ${b?.torch ?? r.torch.version} on ${b?.device ?? r.torch.device}${b?.gpu ? ` (${b.gpu})` : ''}${b?.threads ? `, ${b.threads} thread(s)` : ''}, float32${b?.tf32_matmul === false ? ', TF32 off' : ''}`);
  else L.push('- baseline: not run (no python with torch)');
  if (r.baseline?.error) L.push(`- baseline error: ${r.baseline.error}`);
  L.push('');
  const errs = Object.entries(r.errors ?? {});
  if (!r.finished) L.push('- **this run did not finish** (the JSON is a checkpoint written after its last completed part)');
  if (errs.length) L.push(`- tflens parts that failed in this run: ${errs.map(([k, v]) => `${k}: \`${v}\``).join('; ')}`);
  for (const c of r.forward?.cases ?? []) if (c.error) L.push(`- tflens forward B=${c.B} T=${c.T} failed: \`${c.error}\``);
  if (b?.retrieval_error) L.push(`- PyTorch retrieval failed: \`${b.retrieval_error}\``);
  return L;
}

export function renderRun(r) {
  if (r.goals === 'issue16') return renderRun16(r);
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const L = renderHeader(r);
  const s = r.backend && r.machine ? summarise(r) : r.summary ?? {};
  if (r.drivers_async) {
    const k0 = r.sweeps ? Object.values(r.sweeps.kinds)[0] : null;
    const sweepDriver = k0?.driver ?? (r.sweeps ? 'bench async driver (bench/webgpu-node.mjs)' : null);
    const parts = [];
    if (sweepDriver) parts.push(`batched sweeps: ${sweepDriver}`);
    if (r.sweeps && Object.values(r.sweeps.kinds).some((k) => k.loop_seconds !== undefined)) parts.push(`tflens loop: ${k0?.loop_driver ?? 'bench async loop (bench/webgpu-node.mjs)'}`);
    if (r.retrieval || r.errors?.retrieval) parts.push(`retrieval: ${r.retrieval?.driver ?? 'bench async driver (bench/webgpu-node.mjs)'}`);
    if (k0?.library_error) parts.push(`the synchronous patchSweep here: \`${k0.library_error}\``);
    if (r.retrieval?.library_error) parts.push(`scoreRetrievalSample here: \`${r.retrieval.library_error}\``);
    if (r.webgpu_node?.cpu_forwarded_int_kernels) parts.push('int32 kernels forwarded to the CPU backend (bench/webgpu-node.mjs; see the notes)');
    L.push(`- async drivers (no synchronous readback on this backend): ${parts.join('; ')}`);
  }
  L.push('');
  if (r.matmul) {
    L.push(`Matmul peak (float32 ${r.matmul.n}^3, same process): tflens backend ${f(s.matmul_peak_gflops, 1)} GFLOP/s; PyTorch ${f(s.torch_matmul_peak_gflops, 1)} GFLOP/s.`);
    L.push('');
  }
  if (s.forward) {
    L.push('Forward with the full activation cache (GPT-2-small shape, random init; median time of the timed runs):');
    L.push('');
    L.push('| B x T | tflens | PyTorch | tflens / PyTorch | tflens GFLOP/s | share of backend matmul peak | goal >= 70% | PyTorch share of its peak |');
    L.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
    s.forward.forEach((c) => {
      L.push(`| ${c.B} x ${c.T} | ${ms(c.tflens_s)} | ${ms(c.torch_s)} | ${f(c.time_ratio_tflens_over_torch)} | ${f(c.tflens_gflops, 1)} | ${pct(c.share_of_matmul_peak)} | ${yes(c.goal_70pct_of_peak)} | ${pct(c.torch_share_of_its_matmul_peak)} |`);
    });
    L.push('');
    L.push('Memory of one full-cache forward (' + (s.forward[0]?.cached_tensors ?? '?') + ' cached activations, the TransformerLens default set: every hook point except hook_result):');
    L.push('');
    L.push('| B x T | tflens cache bytes | PyTorch cache bytes | tflens peak (hook sampling) | tflens peak (tf.profile) | PyTorch peak | PyTorch peak measured as |');
    L.push('| --- | --- | --- | --- | --- | --- | --- |');
    s.forward.forEach((c) => {
      L.push(`| ${c.B} x ${c.T} | ${mib(c.tflens_cache_bytes)} | ${mib(c.torch_cache_bytes)} | ${mib(c.tflens_peak_bytes)} | ${mib(c.tflens_peak_bytes_profile)} | ${mib(c.torch_peak_bytes)} | ${c.torch_peak_kind ?? '–'} |`);
    });
    L.push('');
  }
  if (s.sweeps) {
    L.push('Head patching sweeps of hook_z (GPT-2-small shape; induction prompts: R random tokens, then the first R-1 again; logit-difference metric at the last position):');
    L.push('');
    L.push('| sweep | prompts x T | tflens batched | tflens loop | PyTorch loop (TransformerLens-style) | speedup vs PyTorch loop | goal | |');
    L.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const w of s.sweeps) {
      const name = w.kind === 'head' ? 'all positions, per (layer, head)' : 'by position, per (layer, pos, head)';
      L.push(`| ${name} | ${w.N} x ${w.T} | ${ms(w.tflens_batched_s)} | ${ms(w.tflens_loop_s)} | ${ms(w.torch_loop_s)} | ${f(w.speedup_vs_torch_loop)}x | ${w.goal} | ${yes(w.goal_met)} |`);
    }
    L.push('');
  }
  if (s.retrieval) {
    const rt = s.retrieval;
    L.push(`Retrieval scoring (Qwen2-0.5B shape, random init; context ${rt.context}, ${rt.new_tokens} greedy tokens, argmax key of every layer's last query row at each step): tflens ${ms(s.retrieval.tflens_s_per_sample)} per sample${r.retrieval ? ` (${r.retrieval.note})` : ''}; PyTorch (HF eager attention, output_attentions, KV cache) ${ms(s.retrieval.torch_s_per_sample)} per sample${b?.retrieval ? ` (${b.retrieval.samples.length > 1 ? 'median of the samples after the first, the warm-up' : 'one sample, with warm-up'}; transformers ${b.retrieval.transformers}, attention ${b.retrieval.attn_implementation})` : ''}.`);
    L.push('');
  }
  return L.join('\n');
}

/** Sharded sweeps (bench/sweep-bench.mjs): the same shards by one process, one worker and two workers, one row per run. */
function renderSweepRuns(rs) {
  const lines = [
    '## Sharded sweeps: workers on one machine (bench/sweep-bench.mjs)',
    '',
    'The same head-patching-by-position sweep: `tflens rank` in one process, then 1 and 2 `tflens worker` processes on a local Redis, alternating (medians; times from submit to the last stored shard, workers started beforehand).',
    '',
    '"2 processes" is what a second core gave this workload at the time (the machine is shared): 2 x (one `tflens rank`) / (two `tflens rank` at once); 2.00x on two idle cores.',
    '',
    '| run | backend | model | shards | 1 process | 1 worker | 2 workers | 2 vs 1 | efficiency | 2 processes | median shard (1 worker) | result bytes / shard | equal to `tflens rank` |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of rs) {
    const one = r.phases[0];
    const med = r.median_seconds ?? { 1: one.seconds, 2: r.phases[1].seconds };
    const ones = r.phases.filter((p) => p.workers === 1).map((p) => p.shard_ms_median).sort((a, b) => a - b);
    const load = r.machine.loadavg_start?.[0];
    const model = `${r.sizes.layers}L d${r.sizes.d_model} ${r.sizes.heads}H, induction R=${r.sizes.R}, n=${r.sizes.n}`;
    const equal = r.phases.every((p) => p.equal_to_single_process) ? 'yes' : '**no**';
    lines.push(`| ${r.tag} (${r.date.slice(0, 10)}, ${r.machine.cpus} CPUs) | ${(r.backends ?? []).join(' ')} | ${model} | ${one.shards} | ${ms(r.single_process_s)} | ${ms(med[1])} | ${ms(med[2])} | ${f(r.speedup_2_vs_1)}x | ${pct(r.efficiency_2)} | ${f(r.cpu_check?.parallel_capacity)}x (load ${f(load, 1)}) | ${ones[Math.floor(ones.length / 2)]} ms | ${f(one.result_bytes_per_shard, 0)} | ${equal} |`);
  }
  return lines.join('\n');
}

export function writeTable(resultsDir, outPath) {
  const files = existsSync(resultsDir) ? readdirSync(resultsDir).filter((n) => n.endsWith('.json')).sort() : [];
  const all = files.map((n) => JSON.parse(readFileSync(join(resultsDir, n), 'utf8')));
  const runs = all.filter((r) => r.preset !== 'quick' && !r.kind);
  const sweepRuns = all.filter((r) => r.kind === 'sweep-workers');
  const parts = [
    '# tflens benchmarks',
    '',
    'Generated by `node bench/table.mjs` from the JSON files in bench/results (one per run of `bench/run.mjs`); do not edit the numbers by hand.',
    'Sizes, definitions and the reasons behind unmet goals are in the notes at the end.',
    '',
  ];
  if (!runs.length) parts.push('_No runs yet._', '');
  else {
    parts.push('Goals at a glance (each row from one run below):', '', '| goal | run | measured | result |', '| --- | --- | --- | --- |');
    for (const r of runs) {
      if (r.goals === 'issue16') {
        parts.push(...goalRows16(r));
        continue;
      }
      const s = summarise(r);
      for (const c of s.forward ?? []) {
        const failed = r.forward?.cases?.find((x) => x.B === c.B && x.T === c.T)?.error ?? (r.errors?.forward ? r.errors.forward : null);
        const measured = c.share_of_matmul_peak !== null ? pct(c.share_of_matmul_peak) : failed ? `tflens forward failed: \`${failed}\`` : 'not measured';
        parts.push(`| forward with full cache >= 70% of the backend's matmul peak, B=${c.B} T=${c.T} | ${r.tag} | ${measured} | ${c.share_of_matmul_peak === null && failed ? '**not met** (did not run)' : yes(c.goal_70pct_of_peak)} |`);
      }
      for (const w of s.sweeps ?? []) {
        parts.push(`| ${w.kind === 'head' ? 'all-positions' : 'by-position'} head sweep >= ${w.goal} the PyTorch loop's speed | ${r.tag} | ${w.speedup_vs_torch_loop === null ? 'not measured' : `${f(w.speedup_vs_torch_loop)}x`} | ${yes(w.goal_met)} |`);
      }
    }
    parts.push('');
  }
  for (const r of runs) parts.push(renderRun(r), '');
  if (sweepRuns.length) parts.push(renderSweepRuns(sweepRuns), '');
  const notes = join(dirname(fileURLToPath(import.meta.url)), 'notes.md');
  if (existsSync(notes)) parts.push(readFileSync(notes, 'utf8'));
  writeFileSync(outPath + '.tmp', parts.join('\n'));
  renameSync(outPath + '.tmp', outPath);
  return outPath;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
  console.log(writeTable(join(root, 'bench', 'results'), join(root, 'bench', 'RESULTS.md')));
}
