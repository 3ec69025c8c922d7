/**
 * A sweep: one rank method on one model, split into shards. What is submitted (SweepSpec), what is
 * stored in Redis (StoredSweep: self-contained, so a worker needs only the model), its stable id,
 * and how a worker or a collector gets the model back.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, FormatError, ValueError, expectedFound } from '../errors.js';
import { encodeSweepValue, decodeSweepValue } from '../io/checkpoint.js';
import { pathExists } from '../io/files.js';
import { loadModel } from '../model/load.js';
import type { HookedTransformer } from '../model/hooked.js';
import type { HostBatch } from '../model/view.js';
import { rankMethod, type RankMethod, type RankMethodName, type RankMethodOptions, type ShardValue } from '../rank/index.js';
import { modelIdentity, portableIdentity, type ModelIdentity } from './identity.js';

/** What to sweep: `tflens rank`'s inputs. */
export interface SweepSpec<K extends RankMethodName = RankMethodName> {
  /** Model folder or hub id. Workers load it by this name: use a path every worker machine has (or a hub id). */
  model: string;
  method: K;
  /** The method's options (its defaults where absent). */
  options?: RankMethodOptions[K];
  /** Token rows (left-padded ids and mask) for methods that read activations. */
  batch?: HostBatch;
  /** Units per shard (each method's default when absent; see src/rank). */
  shardSize?: number;
}

/** The sweep as stored in Redis. */
export interface StoredSweep {
  v: 1;
  /** The tflens version that planned it (workers must run the same). */
  tflens: string;
  model: ModelIdentity;
  method: RankMethodName;
  /** Options made self-contained by the method's `prepare`. */
  options: unknown;
  batch: HostBatch | null;
  shardSize: number | null;
  shards: ShardValue[];
  /** Where it was submitted (a relative model path is also tried against this folder). */
  submitted: { host: string; cwd: string };
}

export const TFLENS_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** A JSON value with every object's keys sorted (so the id does not depend on the order options were written in). */
function sortedKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortedKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortedKeys((v as Record<string, unknown>)[k])]));
  return v;
}

/** The stable id: a SHA-256 over everything that determines the shards' numbers (model identity, method, options, batch, shard plan). */
export function sweepId(s: StoredSweep): string {
  const { submitted: _, ...what } = s;
  return createHash('sha256').update(encodeSweepValue(sortedKeys(what))).digest('hex').slice(0, 24);
}

export function parseStoredSweep(text: string, id: string): StoredSweep {
  const s = decodeSweepValue(text) as StoredSweep;
  if (!s || s.v !== 1 || !Array.isArray(s.shards)) throw new FormatError(`sweep ${id}`, expectedFound('a stored sweep (v 1)', typeof s === 'object' ? `v ${(s as { v?: unknown })?.v}` : typeof s));
  return s;
}

export function methodOf(s: Pick<StoredSweep, 'method'>): RankMethod<unknown> {
  return rankMethod(s.method, 'sweep method');
}

/** Where this machine has the sweep's model: the name as given, else a relative name against the submit folder. */
async function localModelPath(s: StoredSweep): Promise<string> {
  const name = s.model.name;
  if (path.isAbsolute(name) || (await pathExists(name))) return name;
  const there = path.join(s.submitted.cwd, name);
  return (await pathExists(there)) ? there : name;
}

/**
 * The sweep's model on this machine, checked against the submitted identity (config, tokenizer and
 * weight headers and sizes), named as submitted (results carry that name). `weights: false` for planning
 * and combining.
 */
export async function sweepModel(s: StoredSweep, weights: boolean): Promise<HookedTransformer> {
  const local = await localModelPath(s);
  const here = portableIdentity(await modelIdentity(local));
  const want = portableIdentity(s.model);
  if (encodeSweepValue(here) !== encodeSweepValue(want)) {
    const differ = want.filter((f) => encodeSweepValue(f) !== encodeSweepValue(here.find((g) => g.file === f.file) ?? null)).map((f) => f.file);
    throw new ConfigError(`sweep model ${s.model.name} (${local} on ${os.hostname()})`, `differs from the submitted model in ${differ.join(', ') || 'its file list'}`);
  }
  const model = await loadModel(local, { weights });
  model.name = s.model.name;
  return model;
}

/** Plan a sweep: the method's options made self-contained, then its shards (on the weightless model). */
export async function planSweep(spec: SweepSpec): Promise<StoredSweep> {
  const method = methodOf(spec);
  if (method.needsTokens && !spec.batch) throw new ValueError('batch', `method ${spec.method} reads activations: give the batch (prompts or tokens)`);
  if (spec.shardSize !== undefined && !(Number.isInteger(spec.shardSize) && spec.shardSize > 0)) throw new ValueError('shardSize', expectedFound('a positive integer', spec.shardSize));
  const identity = await modelIdentity(spec.model);
  const model = await loadModel(spec.model, { weights: false });
  const batch = spec.batch ?? null;
  const options = method.prepare ? await method.prepare(model, spec.options ?? {}) : spec.options ?? {};
  const shards = method.shards(model, batch, options, spec.shardSize);
  return {
    v: 1,
    tflens: TFLENS_VERSION,
    model: identity,
    method: spec.method,
    options: decodeSweepValue(encodeSweepValue(options)),
    batch,
    shardSize: spec.shardSize ?? null,
    shards,
    submitted: { host: os.hostname(), cwd: process.cwd() },
  };
}
