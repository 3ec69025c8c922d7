/**
 * Where a sweep lives in Redis, beside the BullMQ queue that carries its shard jobs.
 *
 *   tflens:sweep:<id>:spec     the sweep (JSON): model identity, method, options, batch, shard plan
 *   tflens:sweep:<id>:results  hash shard -> the shard's result (JSON, numbers kept exactly); written
 *                              with HSETNX, so a shard's result is stored once whatever retries happen
 *   tflens:sweep:<id>:stored   hash shard -> how many times a write stored it (1; the test checks)
 *   tflens:sweep:<id>:runs     hash shard -> how many times a worker started it (a killed run counts)
 *   tflens:sweep:<id>:info     hash shard -> {worker, backend, ms, bytes} of the run that stored it
 *   tflens:sweeps              set of sweep ids
 *
 * The shard jobs are BullMQ jobs (queue `tflens-shards` unless named otherwise) with the job id
 * `<id>-<shard>`, so submitting a sweep again adds no job that is still queued.
 */
import type { Redis } from 'ioredis';
import { ValueError, expectedFound } from '../errors.js';

export const DEFAULT_QUEUE_NAME = 'tflens-shards';

/** Where the queue is: a Redis URL (redis://host:port/db), and the BullMQ queue name. */
export interface QueueRef {
  /** redis://[user:password@]host:port/db or rediss://... */
  url: string;
  /** BullMQ queue name (default `tflens-shards`). */
  name?: string;
}

/** A queue given as a URL or a QueueRef, checked. */
export function queueRef(q: string | QueueRef, where = 'queue'): Required<QueueRef> {
  const ref = typeof q === 'string' ? { url: q } : q;
  let u: URL;
  try {
    u = new URL(ref?.url);
  } catch {
    throw new ValueError(where, expectedFound('a Redis URL redis://host:port/db', ref?.url));
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ValueError(where, expectedFound('a redis:// or rediss:// URL', ref.url));
  if (u.pathname && u.pathname !== '/' && !/^\/\d+$/.test(u.pathname)) throw new ValueError(where, expectedFound('a database number after the port (redis://host:port/0)', u.pathname));
  return { url: ref.url, name: ref.name ?? DEFAULT_QUEUE_NAME };
}

/**
 * A Redis connection for BullMQ (which needs maxRetriesPerRequest: null: commands wait through a
 * reconnect). ioredis and BullMQ are loaded when a sweep function first runs, not with `tflens`.
 */
export async function redisConnection(url: string): Promise<Redis> {
  const { Redis: Client } = await import('ioredis');
  return new Client(url, { maxRetriesPerRequest: null, lazyConnect: false });
}

const key = (id: string, part: string) => `tflens:sweep:${id}:${part}`;

/** HSETNX results; when it stored: count the store and record the info (KEYS results, stored, info; ARGV shard, text, info). */
const PUT_ONCE = `if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
  return 1
end
return 0`;

/** Per-shard info of the run that stored the result. */
export interface ShardInfo {
  worker: string;
  backend: string;
  /** Milliseconds the shard's computation took. */
  ms: number;
  /** Bytes of the stored result. */
  bytes: number;
}

/** The Redis side of sweeps (spec, results, counters); one connection. */
export class SweepStore {
  constructor(readonly redis: Redis) {}

  /** Store the spec unless one is there; returns the stored text (the existing one on a resubmit). */
  async putSpec(id: string, text: string): Promise<string> {
    await this.redis.set(key(id, 'spec'), text, 'NX');
    await this.redis.sadd('tflens:sweeps', id);
    return (await this.redis.get(key(id, 'spec')))!;
  }

  async spec(id: string): Promise<string | null> {
    return this.redis.get(key(id, 'spec'));
  }

  async hasResult(id: string, shard: number): Promise<boolean> {
    return (await this.redis.hexists(key(id, 'results'), String(shard))) === 1;
  }

  /** The shards (of 0..n-1) that have no result yet. */
  async missing(id: string, n: number): Promise<number[]> {
    const have = new Set((await this.redis.hkeys(key(id, 'results'))).map(Number));
    return Array.from({ length: n }, (_, i) => i).filter((i) => !have.has(i));
  }

  async doneCount(id: string): Promise<number> {
    return this.redis.hlen(key(id, 'results'));
  }

  /** Count a started run of a shard. */
  async started(id: string, shard: number): Promise<void> {
    await this.redis.hincrby(key(id, 'runs'), String(shard), 1);
  }

  /**
   * Store a result once: true when this call stored it, false when a result was already there. The
   * result, its store count and its info are written in one script (atomic), so a write whose reply a
   * Redis restart lost, and which ioredis sends again, neither stores twice nor loses the count.
   */
  async putResult(id: string, shard: number, text: string, info: ShardInfo): Promise<boolean> {
    const keys = [key(id, 'results'), key(id, 'stored'), key(id, 'info')];
    return (await this.redis.eval(PUT_ONCE, 3, ...keys, String(shard), text, JSON.stringify(info))) === 1;
  }

  async result(id: string, shard: number): Promise<string | null> {
    return this.redis.hget(key(id, 'results'), String(shard));
  }

  /** Every stored result, by shard. */
  async results(id: string): Promise<Map<number, string>> {
    const all = await this.redis.hgetall(key(id, 'results'));
    return new Map(Object.entries(all).map(([k, v]) => [Number(k), v]));
  }

  /** Counters of a sweep: starts and stores per shard. */
  async counters(id: string): Promise<{ runs: Map<number, number>; stored: Map<number, number> }> {
    const asMap = (h: Record<string, string>) => new Map(Object.entries(h).map(([k, v]) => [Number(k), Number(v)]));
    return { runs: asMap(await this.redis.hgetall(key(id, 'runs'))), stored: asMap(await this.redis.hgetall(key(id, 'stored'))) };
  }

  async infos(id: string): Promise<ShardInfo[]> {
    return Object.values(await this.redis.hgetall(key(id, 'info'))).map((s) => JSON.parse(s) as ShardInfo);
  }

  /** Bytes Redis holds for the results hash (MEMORY USAGE; null where the server refuses the command). */
  async resultBytes(id: string): Promise<number | null> {
    try {
      return (await this.redis.call('MEMORY', 'USAGE', key(id, 'results'), 'SAMPLES', '0')) as number | null;
    } catch {
      return null;
    }
  }
}
