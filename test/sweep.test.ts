// Sharded sweeps on a BullMQ queue over Redis: worker processes (one killed with SIGKILL mid-shard, or
// a Redis restart mid-sweep) and the collected ranking equals a single-process `tflens rank` byte for byte,
// with every shard stored exactly once.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { main } from '../src/cli/main.js';
import { collectSweep, planSweep, runWorker, submitSweep, sweepId, sweepStatus, type ShardEvent, type SweepSpec } from '../src/sweep/index.js';
import { renderRank, runRank } from '../src/rank/index.js';
import { loadModel } from '../src/model/load.js';
import { sweepModel } from '../src/sweep/spec.js';
import { portableIdentity } from '../src/sweep/identity.js';
import { startRedis, testRedis, type TestRedis } from './helpers/redis.js';

const TFLENS = ['--import', 'tsx', path.join('test', 'helpers', 'tflens-process.ts')];
const MODEL = path.join('fixtures', 'models', 'ioi');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `tflens <args>` in this process (stdout captured). */
async function cli(args: string[]): Promise<string> {
  let out = '';
  let err = '';
  const write = process.stderr.write.bind(process.stderr);
  (process.stderr as unknown as { write: (s: string) => boolean }).write = (s: string) => ((err += s), true);
  try {
    const code = await main(args, (s) => (out += s));
    assert.equal(code, 0, `tflens ${args.join(' ')}: ${err}`);
    return out;
  } finally {
    (process.stderr as unknown as { write: typeof write }).write = write;
  }
}

interface Child {
  proc: ChildProcess;
  out: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `tflens <args>` as a child process. */
function tflensProcess(args: string[]): Child {
  const proc = spawn(process.execPath, [...TFLENS, ...args], { env: { ...process.env, TFLENS_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.once('exit', (code, signal) => r({ code, signal })));
  return { proc, out: () => out, exit };
}

/** Delete what earlier runs left under tflens:sweep* (sweep ids are content hashes, so a rerun would find its results). */
async function clearSweeps(url: string): Promise<void> {
  const r = new Redis(url);
  const keys = await r.keys('tflens:sweep*');
  if (keys.length) await r.del(...keys);
  r.disconnect();
}

async function counters(r: Redis, id: string) {
  const num = (h: Record<string, string>) => new Map(Object.entries(h).map(([k, v]) => [Number(k), Number(v)]));
  return {
    results: await r.hlen(`tflens:sweep:${id}:results`),
    runs: num(await r.hgetall(`tflens:sweep:${id}:runs`)),
    stored: num(await r.hgetall(`tflens:sweep:${id}:stored`)),
    info: new Map(Object.entries(await r.hgetall(`tflens:sweep:${id}:info`)).map(([k, v]) => [Number(k), JSON.parse(v) as { worker: string }])),
  };
}

describe('sweeps on a Redis job queue (BullMQ): workers, SIGKILL, Redis restart', function () {
  this.timeout(240_000);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tflens-sweep-'));
  const fast = ['--lock-duration', '3000', '--stalled-interval', '1000'];

  it('the sweep id is a hash of model identity, method, options, batch and shard plan; workers refuse a model that differs', async () => {
    const copy = path.join(tmp, 'ioi');
    cpSync(MODEL, copy, { recursive: true });
    const spec: SweepSpec<'head-patching'> = { model: copy, method: 'head-patching', options: { task: 'ioi', n: 4 } };
    const a = await planSweep(spec);
    assert.equal(a.shards.length, 3);
    assert.equal(sweepId(await planSweep(spec)), sweepId(a), 'stable');
    assert.equal(sweepId(await planSweep({ ...spec, options: { n: 4, task: 'ioi' } })), sweepId(a), 'key order does not matter');
    const others = [
      await planSweep({ ...spec, options: { task: 'ioi', n: 5 } }),
      await planSweep({ ...spec, shardSize: 2, options: { task: 'ioi', n: 4, positions: 'each' } }),
      await planSweep({ ...spec, method: 'path' } as SweepSpec),
    ];
    for (const o of others) assert.notEqual(sweepId(o), sweepId(a));
    // rewriting the weights (same bytes, new modification time) makes another sweep; a worker's copy with other times is the same model
    const w = path.join(copy, 'model.safetensors');
    utimesSync(w, new Date(), new Date(Date.now() + 5000));
    const touched = await planSweep(spec);
    assert.notEqual(sweepId(touched), sweepId(a));
    assert.deepEqual(portableIdentity(touched.model), portableIdentity(a.model));
    (await sweepModel(a, false)).dispose();
    // a worker whose config differs refuses the shards
    const cfg = JSON.parse(readFileSync(path.join(copy, 'config.json'), 'utf8'));
    writeFileSync(path.join(copy, 'config.json'), JSON.stringify({ ...cfg, layer_norm_epsilon: 1e-6 }));
    await assert.rejects(sweepModel(a, true), /differs from the submitted model in config\.json/);
  });

  it('3 workers, one killed with SIGKILL mid-shard: the shard reruns elsewhere, each shard is stored once, and collect equals tflens rank byte for byte', async () => {
    const redis = await testRedis();
    const queueName = `tflens-test-${process.pid}-kill`;
    const q = ['--queue', redis.url, '--queue-name', queueName];
    const method = ['--method', 'head-patching', '--task', 'ioi', '--n', '4', '--positions', 'each', '--max-batch', '8'];
    const workers: Child[] = [];
    const r = new Redis(redis.url);
    const queueConn = new Redis(redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(queueName, { connection: queueConn });
    try {
      await clearSweeps(redis.url);
      const single = tflensProcess(['rank', MODEL, ...method, '--format', 'json', '--out', path.join(tmp, 'rank.json')]);
      const id = (await cli(['sweep', 'submit', MODEL, ...method, '--shard-size', '1', ...q])).trim().split('\n').pop()!;
      assert.match(id, /^[0-9a-f]{24}$/);
      // submitting again is idempotent: the same id, no second job per shard
      assert.equal((await cli(['sweep', 'submit', MODEL, ...method, '--shard-size', '1', ...q])).trim().split('\n').pop(), id);
      const shards = (await queue.getJobCounts('wait')).wait;
      assert.equal(shards, 3 * 21 * 4 / 2, 'ioi: 3 layers x (21 positions x 4 heads) / 2 patches per forward, one forward per shard');
      for (let i = 0; i < 3; i++) workers.push(tflensProcess(['worker', ...q, ...fast]));

      // catch worker 0 inside a shard: frozen (SIGSTOP) after its start was counted and before its result is stored, then SIGKILL
      const victim = workers[0].proc.pid!;
      let killed = -1;
      while (killed < 0) {
        const job = (await queue.getJobs(['active'])).find((j) => j?.processedBy?.endsWith(`:${victim}`));
        if (job) {
          process.kill(victim, 'SIGSTOP');
          const k = job.data.shard as number;
          const started = Number(await r.hget(`tflens:sweep:${id}:runs`, String(k)));
          if (started === 1 && !(await r.hexists(`tflens:sweep:${id}:results`, String(k)))) {
            process.kill(victim, 'SIGKILL');
            killed = k;
          } else process.kill(victim, 'SIGCONT');
        }
        await sleep(5);
      }
      assert.equal((await workers[0].exit).signal, 'SIGKILL');

      await cli(['sweep', 'collect', id, ...q, '--wait', '--timeout', '120', '--format', 'json', '--out', path.join(tmp, 'sweep.json')]);
      const status = await cli(['sweep', 'status', id, ...q]);
      assert.match(status, new RegExp(`shards ${shards}/${shards} done, 0 running, 0 waiting, 0 failed; ${shards + 1} runs started`));
      assert.equal((await single.exit).code, 0, single.out());
      assert.equal(readFileSync(path.join(tmp, 'sweep.json'), 'utf8'), readFileSync(path.join(tmp, 'rank.json'), 'utf8'));

      // nothing lost, nothing counted twice: one stored result per shard; one run per shard but the killed one (two)
      const c = await counters(r, id);
      assert.equal(c.results, shards);
      assert.deepEqual([...c.stored.values()].filter((v) => v !== 1), []);
      assert.equal(c.stored.size, shards);
      assert.equal(c.runs.get(killed), 2);
      assert.deepEqual([...c.runs.entries()].filter(([k, v]) => k !== killed && v !== 1), []);
      assert.ok(!c.info.get(killed)!.worker.endsWith(`:${victim}`), 'the killed shard was stored by another worker');
      for (const w of workers.slice(1)) w.proc.kill('SIGTERM');
      for (const w of workers.slice(1)) {
        assert.equal((await w.exit).code, 0, w.out());
        // a worker picks the backend as the test process does: TFLENS_BACKEND, else the best available (wasm here)
        assert.match(w.out(), new RegExp(`worker .* on ${process.env.TFLENS_BACKEND ?? 'wasm'}.*: \\d+ shards computed, \\d+ stored`));
      }
    } finally {
      for (const w of workers) w.proc.kill('SIGKILL');
      await queue.obliterate({ force: true }).catch(() => {});
      await clearSweeps(redis.url).catch(() => {});
      await queue.close();
      queueConn.disconnect();
      r.disconnect();
      await redis.stop();
    }
  });

  it('library API: a worker without the right model fails the shards after 3 attempts; submitting again retries them, and collect equals runRank', async () => {
    const redis = await testRedis();
    const copy = path.join(tmp, 'ioi-retry');
    cpSync(MODEL, copy, { recursive: true });
    const queue = { url: redis.url, name: `tflens-test-${process.pid}-retry` };
    const spec: SweepSpec<'path'> = { model: copy, method: 'path', options: { task: 'ioi', n: 4 } };
    const ac = new AbortController();
    const events: ShardEvent[] = [];
    const cfgFile = path.join(copy, 'config.json');
    const cfg = readFileSync(cfgFile, 'utf8');
    try {
      await clearSweeps(redis.url);
      const id = await submitSweep(spec, { queue });
      writeFileSync(cfgFile, cfg.replace('"layer_norm_epsilon": 0.00001', '"layer_norm_epsilon": 0.000011')); // this machine's copy now differs
      const worker = runWorker({ queue, signal: ac.signal, onShard: (e) => events.push(e) });
      await assert.rejects(collectSweep(id, { queue, wait: true, pollMs: 200, progress: false }), /3 shard\(s\) failed for good: #\d: this worker cannot load the sweep's model: ConfigError/);
      assert.equal(events.filter((e) => e.outcome === 'failed').length, 9, '3 shards x 3 attempts');
      writeFileSync(cfgFile, cfg);
      assert.equal(await submitSweep(spec, { queue }), id);
      const got = await collectSweep(id, { queue, wait: true, pollMs: 200, progress: false });
      const st = await sweepStatus(id, { queue });
      assert.deepEqual([st.done, st.failed.length, st.runs], [3, 0, 3]);
      ac.abort();
      const stats = await worker;
      assert.deepEqual([stats.computed, stats.stored, stats.failed], [3, 3, 9]);
      const m = await loadModel(copy);
      const want = await runRank(m, null, 'path', { task: 'ioi', n: 4 });
      m.dispose();
      assert.equal(renderRank(got, 'json', copy), renderRank(want, 'json', copy));
    } finally {
      ac.abort();
      await clearSweeps(redis.url).catch(() => {});
      await redis.stop();
    }
  });

  it('load: 252 shards, 4 workers, Redis SIGKILLed and restarted mid-sweep (append-only file): every shard stored once, collect equals tflens rank', async () => {
    // this test owns its server (it restarts it), also where CI provides TFLENS_TEST_REDIS
    const redis: TestRedis = await startRedis({ persist: true });
    const queueName = `tflens-test-${process.pid}-load`;
    const q = ['--queue', redis.url, '--queue-name', queueName];
    const method = ['--method', 'head-patching', '--task', 'ioi', '--n', '2', '--positions', 'each', '--max-batch', '2'];
    const workers: Child[] = [];
    const r = new Redis(redis.url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
    r.on('error', () => {}); // refused while the server restarts
    try {
      const single = tflensProcess(['rank', MODEL, ...method, '--format', 'csv', '--out', path.join(tmp, 'rank.csv')]);
      const id = (await cli(['sweep', 'submit', MODEL, ...method, '--shard-size', '1', ...q])).trim().split('\n').pop()!;
      for (let i = 0; i < 4; i++) workers.push(tflensProcess(['worker', ...q, ...fast]));
      const shards = 3 * 21 * 4;
      while ((await r.hlen(`tflens:sweep:${id}:results`)) < shards / 4) await sleep(50);
      await redis.restart(1000);
      const before = await r.hlen(`tflens:sweep:${id}:results`);
      assert.ok(before >= shards / 4 && before < shards, `results survive the restart (${before})`);
      await cli(['sweep', 'collect', id, ...q, '--wait', '--timeout', '150', '--format', 'csv', '--out', path.join(tmp, 'sweep.csv')]);
      assert.equal((await single.exit).code, 0, single.out());
      assert.equal(readFileSync(path.join(tmp, 'sweep.csv'), 'utf8'), readFileSync(path.join(tmp, 'rank.csv'), 'utf8'));
      const c = await counters(r, id);
      assert.equal(c.results, shards);
      assert.equal(c.stored.size, shards);
      assert.deepEqual([...c.stored.values()].filter((v) => v !== 1), []);
      const runs = [...c.runs.values()].reduce((a, b) => a + b, 0);
      assert.ok(runs >= shards && runs <= shards + 8, `runs ${runs}: at most the shards in flight during the outage run twice`);
      for (const w of workers) w.proc.kill('SIGTERM');
      for (const w of workers) assert.equal((await w.exit).code, 0, w.out());
    } finally {
      for (const w of workers) w.proc.kill('SIGKILL');
      r.disconnect();
      await redis.stop();
    }
  });
});
