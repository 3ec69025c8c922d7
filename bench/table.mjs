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

export function renderRun(r) {
  const b = r.baseline && !r.baseline.error ? r.baseline : null;
  const L = [];
  const gpu = r.backend.details?.adapter ? `, adapter ${r.backend.details.adapter}` : '';
  L.push(`### ${r.tag}`);
  L.push('');
  L.push(`- date: ${r.date} (finished ${r.finished ?? '?'}); command: \`${r.command}\` (preset \`${r.preset}\`)`);
  L.push(`- machine: ${r.machine.cpus} x ${r.machine.cpu_model ?? '?'}, ${mib(r.machine.total_mem)} RAM, ${r.machine.platform}/${r.machine.arch}, node ${r.machine.node}; load average at start ${r.machine.loadavg_start.map((x) => x.toFixed(1)).join(' ')}, at end ${(r.machine.loadavg_end ?? []).map((x) => x.toFixed(1)).join(' ')}`);
  L.push(`- tflens backend: ${r.backend.active} (tfjs ${r.backend.tfjs_version}${r.backend.details?.threads ? `, ${r.backend.details.threads} thread(s)` : ''}${gpu})`);
  if (r.torch) L.push(`- baseline: PyTorch ${b?.torch ?? r.torch.version} on ${b?.device ?? r.torch.device}${b?.gpu ? ` (${b.gpu})` : ''}${b?.threads ? `, ${b.threads} thread(s)` : ''}, float32${b?.tf32_matmul === false ? ', TF32 off' : ''}`);
  else L.push('- baseline: not run (no python with torch)');
  if (r.baseline?.error) L.push(`- baseline error: ${r.baseline.error}`);
  L.push('');
  const s = r.summary ?? {};
  if (r.matmul) {
    L.push(`Matmul peak (float32 ${r.matmul.n}^3, same process): tflens backend ${f(s.matmul_peak_gflops, 1)} GFLOP/s; PyTorch ${f(s.torch_matmul_peak_gflops, 1)} GFLOP/s.`);
    L.push('');
  }
  if (s.forward) {
    L.push('Forward with the full activation cache (GPT-2-small shape, random init; median time of the timed runs):');
    L.push('');
    L.push('| B x T | tflens | PyTorch | tflens / PyTorch | tflens GFLOP/s | share of backend matmul peak | goal >= 70% | PyTorch share of its peak |');
    L.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
    s.forward.forEach((c, i) => {
      const fc = r.forward.cases[i];
      L.push(`| ${c.B} x ${c.T} | ${ms(c.tflens_s)} | ${ms(c.torch_s)} | ${f(c.time_ratio_tflens_over_torch)} | ${f(fc.flops_per_s / 1e9, 1)} | ${pct(c.share_of_matmul_peak)} | ${yes(c.goal_70pct_of_peak)} | ${pct(c.torch_share_of_its_matmul_peak)} |`);
    });
    L.push('');
    L.push('Memory of one full-cache forward (' + (r.forward.cases[0]?.memory.cached_tensors ?? '?') + ' cached activations, the TransformerLens default set: every hook point except hook_result):');
    L.push('');
    L.push('| B x T | tflens cache bytes | PyTorch cache bytes | tflens peak (hook sampling) | tflens peak (tf.profile) | PyTorch peak | PyTorch peak measured as |');
    L.push('| --- | --- | --- | --- | --- | --- | --- |');
    s.forward.forEach((c, i) => {
      const tb = b?.forward?.[i];
      L.push(`| ${c.B} x ${c.T} | ${mib(c.tflens_cache_bytes)} | ${mib(c.torch_cache_bytes)} | ${mib(c.tflens_peak_bytes)} | ${mib(c.tflens_peak_bytes_profile)} | ${mib(c.torch_peak_bytes)} | ${tb?.memory.peak_kind ?? '–'} |`);
    });
    L.push('');
  }
  if (s.sweeps) {
    L.push('Head patching sweeps of hook_z (GPT-2-small shape; induction prompts: BOS + R random tokens + the first R-1 repeated; logit-difference metric):');
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
    const rt = r.retrieval;
    L.push(`Retrieval scoring (Qwen2-0.5B shape, random init; context ${rt.context}, ${rt.new_tokens} greedy tokens, argmax key of every layer's last query row at each step): tflens ${ms(s.retrieval.tflens_s_per_sample)} per sample (${rt.note}); PyTorch (HF eager attention, output_attentions, KV cache) ${ms(s.retrieval.torch_s_per_sample)} per sample${b?.retrieval ? ` (${b.retrieval.note}; transformers ${b.retrieval.transformers}, attention ${b.retrieval.attn_implementation})` : ''}.`);
    L.push('');
  }
  return L.join('\n');
}

export function writeTable(resultsDir, outPath) {
  const files = existsSync(resultsDir) ? readdirSync(resultsDir).filter((n) => n.endsWith('.json')).sort() : [];
  const runs = files.map((n) => JSON.parse(readFileSync(join(resultsDir, n), 'utf8'))).filter((r) => r.preset !== 'quick');
  const parts = [
    '# tflens benchmarks',
    '',
    'Generated by `node bench/table.mjs` from the JSON files in bench/results (one per run of `bench/run.mjs`); do not edit the numbers by hand.',
    'Sizes, definitions and the reasons behind unmet goals are in the notes at the end.',
    '',
  ];
  if (!runs.length) parts.push('_No runs yet._', '');
  for (const r of runs) parts.push(renderRun(r), '');
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
