/**
 * A sweep worker: a BullMQ worker that runs shard jobs of any sweep on the queue.
 *
 * Per job: skip if the shard's result is stored; else load the sweep (cached) and its model (one
 * model is kept loaded; a job of another model replaces it), count the start, compute the shard,
 * store its result with HSETNX (stored once, whoever finishes first). A worker killed mid-shard
 * stops renewing its job lock; after `lockDuration` the job is stalled, and the next stalled check
 * of any live worker (every `stalledInterval`) puts it back in the wait list for another worker
 * (up to `maxStalledCount` times, then it fails; `tflens sweep submit` again retries it).
 *
 * The backend is chosen by initBackend as everywhere in tflens (TFLENS_BACKEND; on WebGPU the adapter
 * by TFLENS_WEBGPU_ADAPTER), so each worker process takes the GPU its environment names.
 */
import os from 'node:os';
import type { Job } from 'bullmq';
import { TflensError } from '../errors.js';
import { backendReport, initBackend } from '../backend/index.js';
import { encodeSweepValue } from '../io/checkpoint.js';
import type { HookedTransformer } from '../model/hooked.js';
import { queueRef, redisConnection, SweepStore, type QueueRef } from './store.js';
import { methodOf, parseStoredSweep, sweepModel, TFLENS_VERSION, type StoredSweep } from './spec.js';

/** Lock and stalled-job settings (docs/sweeps.md): a killed worker's shard goes back to the queue within lockDuration + stalledInterval. */
export const WORKER_DEFAULTS = { lockDuration: 120_000, stalledInterval: 30_000, maxStalledCount: 2 } as const;

export interface WorkerOptions {
  /** The Redis URL (redis://host:port/db) or {url, name}. */
  queue: string | QueueRef;
  /** Shards run at a time by this process (default 1: one model run at a time per GPU). */
  concurrency?: number;
  /** Aborting stops taking jobs; running shards finish, then runWorker returns. */
  signal?: AbortSignal;
  /** Return after this many milliseconds without a job (default: run until aborted). */
  idleExitMs?: number;
  /** Milliseconds a job's lock lasts without renewal (default 120000); renewed every half of it while the worker lives. */
  lockDuration?: number;
  /** Milliseconds between this worker's checks for stalled jobs of dead workers (default 30000). */
  stalledInterval?: number;
  /** Times a job may be recovered from a stall before it fails (default 2). */
  maxStalledCount?: number;
  /** Called after each shard job (e.g. to show what a worker in a notebook does). */
  onShard?: (e: ShardEvent) => void;
}

export interface ShardEvent {
  sweep: string;
  shard: number;
  /** 'stored': computed and stored; 'present': a result was there (skipped, or another run stored first); 'failed': threw. */
  outcome: 'stored' | 'present' | 'failed';
  ms: number;
  error?: string;
}

export interface WorkerStats {
  worker: string;
  backend: string;
  computed: number;
  stored: number;
  present: number;
  failed: number;
}

interface Loaded {
  sweep: StoredSweep;
  model: HookedTransformer;
}

/** The sweeps a worker has seen, and the one model it keeps loaded. */
class Contexts {
  private sweeps = new Map<string, StoredSweep>();
  private model: { key: string; model: Promise<HookedTransformer> } | null = null;

  constructor(private store: SweepStore) {}

  async get(id: string): Promise<Loaded> {
    let sweep = this.sweeps.get(id);
    if (!sweep) {
      const text = await this.store.spec(id);
      if (text === null) throw new NoRetry(`sweep ${id}: no such sweep in this Redis`);
      sweep = parseStoredSweep(text, id);
      if (sweep.tflens !== TFLENS_VERSION) throw new NoRetry(`sweep ${id} was planned by tflens ${sweep.tflens}; this worker runs ${TFLENS_VERSION}`);
      this.sweeps.set(id, sweep);
    }
    const key = encodeSweepValue(sweep.model);
    if (this.model?.key !== key) {
      const old = this.model;
      // a model missing or different here may be right on another worker: a plain Error, so the job is retried
      const load = sweepModel(sweep, true).catch((e: unknown) => Promise.reject(new Error(`this worker cannot load the sweep's model: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`)));
      this.model = { key, model: load };
      this.model.model.catch(() => (this.model = null));
      if (old) (await old.model.catch(() => null))?.dispose();
    }
    return { sweep, model: await this.model.model };
  }

  async dispose(): Promise<void> {
    (await this.model?.model.catch(() => null))?.dispose();
  }
}

/** A job error no retry can cure (no such sweep here, another tflens version). */
class NoRetry extends Error {}

/** The error BullMQ should see: input errors (typed tflens errors, NoRetry) fail the job without retries. */
function jobError(e: unknown, Unrecoverable: new (message: string) => Error): Error {
  if (e instanceof TflensError) return new Unrecoverable(`${e.name}: ${e.message}`);
  if (e instanceof NoRetry) return new Unrecoverable(e.message);
  return e instanceof Error ? e : new Error(String(e));
}

/** Run shard jobs until `signal` aborts (or `idleExitMs` passes without a job). */
export async function runWorker(opts: WorkerOptions): Promise<WorkerStats> {
  const ref = queueRef(opts.queue);
  await initBackend();
  const report = backendReport();
  const backend = [report?.active ?? 'unknown', ...Object.entries(report?.details ?? {}).filter(([k]) => /adapter|device|threads/i.test(k)).map(([k, v]) => `${k} ${v}`)].join(', ');
  const name = `${os.hostname()}:${process.pid}`;
  const stats: WorkerStats = { worker: name, backend, computed: 0, stored: 0, present: 0, failed: 0 };
  const bull = await import('bullmq');
  const storeConn = await redisConnection(ref.url);
  const store = new SweepStore(storeConn);
  const contexts = new Contexts(store);
  let lastActive = Date.now();
  let running = 0;

  const processor = async (job: Job): Promise<string> => {
    const { sweep: id, shard } = job.data as { sweep: string; shard: number };
    const t0 = Date.now();
    const finish = (outcome: 'stored' | 'present'): string => {
      stats[outcome]++;
      opts.onShard?.({ sweep: id, shard, outcome, ms: Date.now() - t0 });
      return outcome;
    };
    running++;
    try {
      if (await store.hasResult(id, shard)) return finish('present');
      const { sweep, model } = await contexts.get(id);
      await store.started(id, shard);
      const value = await methodOf(sweep).runShard(model, sweep.batch, sweep.options, sweep.shards[shard]);
      stats.computed++;
      const text = encodeSweepValue(value);
      const info = { worker: name, backend, ms: Date.now() - t0, bytes: Buffer.byteLength(text) };
      return finish((await store.putResult(id, shard, text, info)) ? 'stored' : 'present');
    } catch (e) {
      stats.failed++;
      opts.onShard?.({ sweep: id, shard, outcome: 'failed', ms: Date.now() - t0, error: e instanceof Error ? e.message : String(e) });
      throw jobError(e, bull.UnrecoverableError);
    } finally {
      running--;
      lastActive = Date.now();
    }
  };

  const workerConn = await redisConnection(ref.url);
  const worker = new bull.Worker(ref.name, processor, {
    connection: workerConn,
    concurrency: opts.concurrency ?? 1,
    lockDuration: opts.lockDuration ?? WORKER_DEFAULTS.lockDuration,
    stalledInterval: opts.stalledInterval ?? WORKER_DEFAULTS.stalledInterval,
    maxStalledCount: opts.maxStalledCount ?? WORKER_DEFAULTS.maxStalledCount,
    name,
  });
  worker.on('error', () => {}); // connection trouble: ioredis reconnects and BullMQ resumes; errors of jobs go to their job
  try {
    await new Promise<void>((resolve) => {
      if (opts.signal?.aborted) return resolve();
      opts.signal?.addEventListener('abort', () => resolve(), { once: true });
      if (opts.idleExitMs !== undefined) {
        const t = setInterval(() => {
          if (running === 0 && Date.now() - lastActive > opts.idleExitMs!) (clearInterval(t), resolve());
        }, Math.min(500, opts.idleExitMs));
        opts.signal?.addEventListener('abort', () => clearInterval(t), { once: true });
      }
    });
  } finally {
    await worker.close();
    await contexts.dispose();
    workerConn.disconnect();
    storeConn.disconnect();
  }
  return stats;
}
