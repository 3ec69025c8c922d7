/**
 * Submitting a sweep: plan it, store it under its stable id, and queue one BullMQ job per shard
 * that has no result yet. Submitting the same sweep again is harmless: the id is the same, the stored
 * sweep is kept, shards with results get no job, queued shards keep their one job (same job id), and
 * shards whose job failed for good are retried.
 */
import type { JobsOptions, Queue } from 'bullmq';
import { ConfigError } from '../errors.js';
import { queueRef, redisConnection, SweepStore, type QueueRef } from './store.js';
import { parseStoredSweep, planSweep, sweepId, type SweepSpec } from './spec.js';
import { encodeSweepValue } from '../io/checkpoint.js';

/** Retries and retention of shard jobs (docs/sweeps.md). */
export const SHARD_JOB_OPTIONS: JobsOptions = {
  /** A shard that throws (a lost GPU, an out-of-memory) runs up to 3 times, 2 s then 4 s apart. */
  attempts: 3,
  backoff: { type: 'exponential', delay: 2000 },
  /** Results live in the sweep's hash, not in the job: finished jobs are dropped. */
  removeOnComplete: true,
  /** Failed jobs are kept a week, for `sweep status` to show why. */
  removeOnFail: { age: 7 * 24 * 3600 },
};

export const shardJobId = (id: string, shard: number) => `${id}-${shard}`;

/** Open a queue and the store on one Redis, run f, close both. */
export async function withQueue<R>(q: string | QueueRef, f: (store: SweepStore, queue: Queue) => Promise<R>): Promise<R> {
  const ref = queueRef(q);
  const conn = await redisConnection(ref.url);
  const bull = await import('bullmq');
  const queue = new bull.Queue(ref.name, { connection: conn });
  try {
    return await f(new SweepStore(conn), queue);
  } finally {
    await queue.close();
    conn.disconnect();
  }
}

export interface SubmitOptions {
  /** The Redis URL (redis://host:port/db) or {url, name}. */
  queue: string | QueueRef;
}

/** Plan, store and queue a sweep; returns its stable id (the same for the same model, method, options, batch and shard size). */
export async function submitSweep(spec: SweepSpec, opts: SubmitOptions): Promise<string> {
  const stored = await planSweep(spec);
  const id = sweepId(stored);
  await withQueue(opts.queue, async (store, queue) => {
    const text = encodeSweepValue(stored);
    const kept = await store.putSpec(id, text);
    if (kept !== text && sweepId(parseStoredSweep(kept, id)) !== id) throw new ConfigError(`sweep ${id}`, 'Redis holds another sweep under this id');
    const missing = await store.missing(id, stored.shards.length);
    const failed = new Set<number>();
    for (const job of await queue.getJobs(['failed'])) {
      const d = job?.data as { sweep?: string; shard?: number } | undefined;
      if (d?.sweep === id && missing.includes(d.shard!)) (await job.retry(), failed.add(d.shard!));
    }
    const fresh = missing.filter((s) => !failed.has(s));
    await queue.addBulk(fresh.map((shard) => ({ name: 'shard', data: { sweep: id, shard }, opts: { ...SHARD_JOB_OPTIONS, jobId: shardJobId(id, shard) } })));
  });
  return id;
}
