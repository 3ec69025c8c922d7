/**
 * A sweep's progress and its collected result. `collectSweep` combines the stored shard results
 * with the rank method's `combine` (on the model's config and tokenizer only) into the RankOutput
 * `tflens rank` computes in one process.
 */
import { ValueError } from '../errors.js';
import { decodeSweepValue } from '../io/checkpoint.js';
import { progress as makeProgress } from '../progress.js';
import type { RankOutput } from '../rank/index.js';
import { methodOf, parseStoredSweep, sweepModel, type StoredSweep } from './spec.js';
import { withQueue } from './submit.js';
import type { QueueRef, SweepStore } from './store.js';
import type { Queue } from 'bullmq';

export interface SweepStatus {
  id: string;
  /** The model as submitted (results carry this name). */
  model: string;
  method: string;
  shards: number;
  /** Shards with a stored result. */
  done: number;
  /** Shards a worker holds now (BullMQ active jobs, a dead worker's included until its lock expires). */
  running: number;
  /** Shards whose job failed for good (after its retries), with BullMQ's reason. */
  failed: Array<{ shard: number; reason: string }>;
  /** Shards neither done, running nor failed. */
  waiting: number;
  /** Shard runs started (more than `done` when runs were killed or retried). */
  runs: number;
  /** Workers connected to the queue now. */
  workers: string[];
  /** Backends the stored shards were computed on. */
  backends: string[];
  /** Bytes of the stored results (their JSON) and what Redis reports for the results hash. */
  bytes: { results: number; redis: number | null };
}

async function storedSweep(store: SweepStore, id: string): Promise<StoredSweep> {
  const text = await store.spec(id);
  if (text === null) throw new ValueError(`sweep ${id}`, 'no such sweep on this queue (check the id and the Redis URL and database)');
  return parseStoredSweep(text, id);
}

async function statusOf(store: SweepStore, queue: Queue, id: string): Promise<SweepStatus> {
  const s = await storedSweep(store, id);
  const results = await store.results(id);
  const done = new Set(results.keys());
  const mine = (j: unknown) => (j as { data?: { sweep?: string } } | undefined)?.data?.sweep === id;
  const active = (await queue.getJobs(['active'])).filter(mine).map((j) => j.data.shard as number).filter((k) => !done.has(k));
  const failed = (await queue.getJobs(['failed'])).filter(mine).filter((j) => !done.has(j.data.shard)).map((j) => ({ shard: j.data.shard as number, reason: j.failedReason ?? '' }));
  const { runs } = await store.counters(id);
  const infos = await store.infos(id);
  const workers = (await queue.getWorkers()).map((w) => w.name ?? w.addr ?? '?');
  return {
    id,
    model: s.model.name,
    method: s.method,
    shards: s.shards.length,
    done: done.size,
    running: new Set(active).size,
    failed,
    waiting: s.shards.length - done.size - new Set(active).size - failed.length,
    runs: [...runs.values()].reduce((a, b) => a + b, 0),
    workers,
    backends: [...new Set(infos.map((i) => i.backend))],
    bytes: { results: [...results.values()].reduce((a, t) => a + Buffer.byteLength(t), 0), redis: await store.resultBytes(id) },
  };
}

/** Where a sweep stands. */
export function sweepStatus(id: string, opts: { queue: string | QueueRef }): Promise<SweepStatus> {
  return withQueue(opts.queue, (store, queue) => statusOf(store, queue, id));
}

export interface CollectOptions {
  queue: string | QueueRef;
  /** Wait for the missing shards (default false: a sweep that is not finished is an error). */
  wait?: boolean;
  /** Milliseconds between checks while waiting (default 1000). */
  pollMs?: number;
  /** Give up waiting after this many milliseconds (default: never). */
  timeoutMs?: number;
  /** Show a progress display of the shards while waiting (default true). */
  progress?: boolean;
  signal?: AbortSignal;
}

async function waitFor(store: SweepStore, queue: Queue, id: string, opts: CollectOptions): Promise<void> {
  const t0 = Date.now();
  let st = await statusOf(store, queue, id);
  const bar = opts.progress === false ? null : makeProgress(st.shards, { label: `sweep ${id.slice(0, 8)} ${st.method}` });
  bar?.tick(st.done);
  try {
    while (st.done < st.shards) {
      if (st.failed.length && st.running === 0 && st.waiting === 0) {
        throw new ValueError(`sweep ${id}`, `${st.failed.length} shard(s) failed for good: ${st.failed.slice(0, 3).map((f) => `#${f.shard}: ${f.reason}`).join('; ')} (fix the cause and submit again to retry them)`);
      }
      if (opts.timeoutMs !== undefined && Date.now() - t0 > opts.timeoutMs) throw new ValueError(`sweep ${id}`, `not finished after ${opts.timeoutMs} ms (${st.done}/${st.shards} shards)`);
      if (opts.signal?.aborted) throw new ValueError(`sweep ${id}`, `collect aborted (${st.done}/${st.shards} shards)`);
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
      const before = st.done;
      st = await statusOf(store, queue, id);
      bar?.tick(st.done - before, { running: st.running, workers: st.workers.length });
    }
  } finally {
    bar?.done();
  }
}

/** The sweep's ranking, combined from its shards: what `tflens rank` returns for the same inputs. */
export function collectSweep(id: string, opts: CollectOptions): Promise<RankOutput> {
  return withQueue(opts.queue, async (store, queue) => {
    const s = await storedSweep(store, id);
    if (opts.wait) await waitFor(store, queue, id, opts);
    const results = await store.results(id);
    const missing = s.shards.map((_, i) => i).filter((i) => !results.has(i));
    if (missing.length) throw new ValueError(`sweep ${id}`, `${s.shards.length - missing.length}/${s.shards.length} shards done (missing ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}); wait for them with --wait (wait: true)`);
    const model = await sweepModel(s, false);
    const parts = s.shards.map((_, i) => decodeSweepValue(results.get(i)!) as never);
    return methodOf(s).combine(model, s.batch, s.options, s.shards, parts);
  });
}
