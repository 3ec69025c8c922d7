#!/usr/bin/env node
// Sharded sweeps (issue 21): one `tflens worker` against two on this machine, in one run.
//
//   npm run build && node bench/sweep-bench.mjs [--tag NAME] [--layers 4] [--d-model 128] [--R 12] [--n 8] [--max-batch 64] [--shard-size 3]
//
// A random GPT-2-shaped model is written to a temporary folder; a redis-server is started on a free
// loopback port; the same head-patching-by-position sweep (induction task) is then run
//   1. by `tflens rank` in one process (no queue), then by two `tflens rank` at once (what a second core gives now),
//   2. by 1 worker, 3. by 2 workers, alternating --repeats times (the sweep's results deleted in between, so
//      every phase does the same shards); the ratio is of the medians.
// Workers are started and connected before the sweep is submitted, so the worker times are queue +
// compute (process start and model load are reported apart). The collected ranking of each phase must
// equal the single-process file byte for byte. Writes bench/results/<tag>.json (kind "sweep-workers")
// and regenerates bench/RESULTS.md.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, renameSync, rmSync, existsSync } from 'node:fs';
import { cpus, loadavg, hostname, tmpdir } from 'node:os';
import net from 'node:net';
import { join } from 'node:path';
import { lib, ROOT } from './lib.mjs';
import { writeTable } from './table.mjs';

const argv = process.argv.slice(2);
const opt = (n, d) => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
const sizes = {
  layers: Number(opt('--layers', 4)),
  d_model: Number(opt('--d-model', 128)),
  heads: Number(opt('--heads', 4)),
  vocab: 512,
  R: Number(opt('--R', 12)),
  n: Number(opt('--n', 8)),
  maxBatch: Number(opt('--max-batch', 64)),
  shardSize: Number(opt('--shard-size', 3)),
  /** 1-worker and 2-worker phases alternate this many times (the machine is shared: alternation spreads drift over both). */
  repeats: Number(opt('--repeats', 3)),
};
const tag = opt('--tag', 'sweep-workers-cpu-wasm-here');
const log = (...a) => console.error('[sweep-bench]', ...a);
const now = () => performance.now() / 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLI = join(ROOT, 'bin', 'tflens.js');
const env = { ...process.env, TFLENS_QUIET: '1' };

function tflens(args) {
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`tflens ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** `tflens <args>` in k processes at once; seconds until all have exited. */
async function concurrently(k, args) {
  const t = now();
  await Promise.all(Array.from({ length: k }, () => new Promise((res, rej) => spawn(process.execPath, [CLI, ...args], { env, stdio: 'ignore' }).once('exit', (c) => (c === 0 ? res() : rej(new Error(`tflens ${args.join(' ')} exited ${c}`)))))));
  return now() - t;
}

async function main() {
  const { Redis } = await import('ioredis');
  const tmp = mkdtempSync(join(tmpdir(), 'tflens-sweep-bench-'));
  const modelDir = join(tmp, 'model');
  const hf = { model_type: 'gpt2', n_layer: sizes.layers, n_embd: sizes.d_model, n_head: sizes.heads, n_inner: 4 * sizes.d_model, vocab_size: sizes.vocab, n_positions: 64, activation_function: 'gelu_new', bos_token_id: 0, eos_token_id: 0, tie_word_embeddings: true };
  await lib.initBackend();
  const m = lib.model.randomModel(hf, { seed: 1 });
  await lib.model.saveModel(m, modelDir);
  m.dispose();

  const port = await freePort();
  const url = `redis://127.0.0.1:${port}/0`;
  const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp], { stdio: 'ignore' });
  const r = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
  r.on('error', () => {});
  await r.ping();
  const q = ['--queue', url];
  const method = ['--method', 'head-patching', '--task', 'induction', '--R', String(sizes.R), '--n', String(sizes.n), '--positions', 'each', '--max-batch', String(sizes.maxBatch)];
  const result = { tag, kind: 'sweep-workers', date: new Date().toISOString(), command: `node bench/sweep-bench.mjs ${argv.join(' ')}`.trim(), machine: { hostname: hostname(), cpus: cpus().length, cpu_model: cpus()[0]?.model, node: process.version, loadavg_start: loadavg() }, sizes, hf_config: hf, phases: [] };
  try {
    // 1. one process, no queue
    let t = now();
    tflens(['rank', modelDir, ...method, '--format', 'json', '--out', join(tmp, 'rank.json')]);
    result.single_process_s = now() - t;
    log(`tflens rank: ${result.single_process_s.toFixed(2)} s`);
    const reference = readFileSync(join(tmp, 'rank.json'), 'utf8');

    // what a second core gives this very workload now (other processes share the machine): two `tflens rank` at once vs one
    const both = await concurrently(2, ['rank', modelDir, ...method, '--format', 'json', '--out', join(tmp, 'rank-again.json')]);
    result.cpu_check = { one_rank_s: result.single_process_s, two_ranks_at_once_s: both, parallel_capacity: (2 * result.single_process_s) / both };
    log(`two tflens rank at once: ${both.toFixed(2)} s: the machine gives ${result.cpu_check.parallel_capacity.toFixed(2)}x of one process`);
    for (const workers of Array.from({ length: sizes.repeats }, () => [1, 2]).flat()) {
      const t0 = now();
      const procs = Array.from({ length: workers }, () => spawn(process.execPath, [CLI, 'worker', ...q], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
      const outs = procs.map((p) => {
        let s = '';
        p.stdout.on('data', (d) => (s += d));
        p.stderr.on('data', (d) => (s += d));
        return () => s;
      });
      // connected: BullMQ names each worker's connection
      while (((await r.client('LIST')).match(/name=\S*:w:/g) ?? []).length < workers) await sleep(50);
      const startup = now() - t0;
      const keys = await r.keys('tflens:sweep*');
      if (keys.length) await r.del(...keys);
      t = now();
      const id = tflens(['sweep', 'submit', modelDir, ...method, '--shard-size', String(sizes.shardSize), ...q]).trim().split('\n').pop();
      const shards = JSON.parse(tflens(['sweep', 'status', id, ...q, '--format', 'json'])).shards;
      while ((await r.hlen(`tflens:sweep:${id}:results`)) < shards) await sleep(20);
      const seconds = now() - t;
      tflens(['sweep', 'collect', id, ...q, '--format', 'json', '--out', join(tmp, `sweep-${workers}.json`)]);
      const equal = readFileSync(join(tmp, `sweep-${workers}.json`), 'utf8') === reference;
      const status = JSON.parse(tflens(['sweep', 'status', id, ...q, '--format', 'json']));
      const infos = Object.values(await r.hgetall(`tflens:sweep:${id}:info`)).map((s) => JSON.parse(s));
      const shardMs = infos.map((i) => i.ms).sort((a, b) => a - b);
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => new Promise((res) => p.once('exit', res))));
      result.backends = status.backends;
      const phase = {
        workers,
        shards,
        seconds,
        worker_startup_s: startup,
        equal_to_single_process: equal,
        shard_ms_median: shardMs[Math.floor(shardMs.length / 2)],
        shard_ms_mean: shardMs.reduce((a, b) => a + b, 0) / shardMs.length,
        result_bytes_json: status.bytes.results,
        result_bytes_per_shard: status.bytes.results / shards,
        redis_bytes_results_hash: status.bytes.redis,
        worker_lines: outs.map((o) => o().trim().split('\n').pop()),
      };
      result.phases.push(phase);
      log(`${workers} worker(s): ${shards} shards in ${seconds.toFixed(2)} s (startup ${startup.toFixed(2)} s), median shard ${phase.shard_ms_median} ms, ${phase.result_bytes_per_shard.toFixed(0)} B/shard, equal ${equal}`);
    }
    const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const secondsOf = (w) => result.phases.filter((p) => p.workers === w).map((p) => p.seconds);
    result.median_seconds = { 1: median(secondsOf(1)), 2: median(secondsOf(2)) };
    result.speedup_2_vs_1 = result.median_seconds[1] / result.median_seconds[2];
    result.efficiency_2 = result.speedup_2_vs_1 / 2;
    result.queue_overhead_1_worker = result.median_seconds[1] / result.single_process_s;
    result.machine.loadavg_end = loadavg();
    log(`speedup 2 vs 1 worker: ${result.speedup_2_vs_1.toFixed(2)}x (efficiency ${(100 * result.efficiency_2).toFixed(0)}%)`);
  } finally {
    r.disconnect();
    redis.kill('SIGTERM');
    await new Promise((res) => redis.once('exit', res));
    rmSync(tmp, { recursive: true, force: true });
  }
  const outFile = join(ROOT, 'bench', 'results', `${tag}.json`);
  writeFileSync(outFile + '.tmp', JSON.stringify(result, null, 1) + '\n');
  renameSync(outFile + '.tmp', outFile);
  console.log(outFile);
  console.log(writeTable(join(ROOT, 'bench', 'results'), join(ROOT, 'bench', 'RESULTS.md')));
}

if (!existsSync(join(ROOT, 'dist', 'index.js')) && !process.env.TFLENS_DIST) throw new Error('build first: npm run build');
await main();
