/**
 * What a head-ranking method is: a computation over a model (and, for some, a token batch) that
 * returns a RankOutput, plus how that computation splits into shards and how the shards' results
 * combine into the very RankOutput the whole computation returns.
 *
 * The rule every method keeps: a shard computes exactly the numbers the whole run computes for its
 * part (same batches, same order of floating-point operations), and `combine` assembles them by
 * placement (or, for a mean over samples, sums them in the whole run's order). So a sweep run by any
 * number of workers gives the single-process ranking bit for bit. Methods whose numbers come from one
 * batched reduction (means over prompts taken on the device) have one shard.
 */
import type { HeadScores } from '../results.js';
import type { HostBatch, ModelView } from '../model/view.js';
import { ValueError } from '../errors.js';
import { encodeSweepValue, type SweepValue } from '../io/checkpoint.js';

export interface RankOutput {
  /** Head-level result (most methods). */
  scores?: HeadScores;
  /** Row results (composition pairs, head-patching by position), in ranking order. */
  rows?: Record<string, number>[];
  /** The CSV columns of `rows` (default: layer, head, srcLayer, srcHead, score). */
  columns?: string[];
  /** The retrieval-head authors' JSON {"layer-head": [per-sample scores]}. */
  authorJson?: Record<string, number[]>;
  method: string;
  params: Record<string, unknown>;
}

/** A shard's description (what runShard reads) or its result: plain JSON, numbers kept exactly. */
export type ShardValue = SweepValue;

/**
 * One head-ranking method with typed options `O`.
 *
 * `shards` and `combine` may be given a model without weights (loadModel(path, {weights: false})):
 * they read only its config, tokenizer and name. `runShard` runs the model.
 */
export interface RankMethod<O> {
  /** One line for --help. */
  help: string;
  /** Reads activations on a token batch (else the method makes its own inputs or reads weights). */
  needsTokens: boolean;
  /**
   * The options made self-contained before a sweep is planned (e.g. a file the default reads, read
   * into the options), so workers on other machines need nothing but the model. Default: as given.
   */
  prepare?(model: ModelView, opts: O): Promise<O>;
  /** The whole computation in one process. */
  run(model: ModelView, batch: HostBatch | null, opts: O): Promise<RankOutput>;
  /** The work split into shards, in combine order; `size` = units per shard (method default when absent). */
  shards(model: ModelView, batch: HostBatch | null, opts: O, size?: number): ShardValue[];
  /** Compute one shard (one element of `shards`). */
  runShard(model: ModelView, batch: HostBatch | null, opts: O, shard: ShardValue): Promise<ShardValue>;
  /** Assemble every shard's result (in `shards` order) into what `run` returns. */
  combine(model: ModelView, batch: HostBatch | null, opts: O, shards: ShardValue[], results: ShardValue[]): RankOutput;
}

export function fromScores(scores: HeadScores): RankOutput {
  return { scores, method: scores.method, params: scores.params };
}

/** A method that is one shard: its result is its whole RankOutput. */
export function wholeMethod<O>(help: string, needsTokens: boolean, run: RankMethod<O>['run']): RankMethod<O> {
  return {
    help,
    needsTokens,
    run,
    shards: () => [{ part: 'all' }],
    runShard: async (model, batch, opts) => (await run(model, batch, opts)) as unknown as ShardValue,
    combine: (_m, _b, _o, _s, results) => results[0] as unknown as RankOutput,
  };
}

/** [from, to) ranges of `n` units in blocks of `size` (a positive integer). */
export function blocks(n: number, size: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let a = 0; a < n; a += size) out.push([a, Math.min(n, a + size)]);
  return out;
}

/** Throw when what every shard must share (baselines, parameters) differs: the shards were computed on different inputs. */
export function sameAcrossShards(values: unknown[], what: string): void {
  const first = encodeSweepValue(values[0]);
  values.forEach((v, i) => {
    if (encodeSweepValue(v) !== first) throw new ValueError(`shard ${i}: ${what}`, `differs from shard 0 (${encodeSweepValue(v).slice(0, 200)} vs ${first.slice(0, 200)}): the shards were computed on different inputs or code`);
  });
}

/** A deep copy of a JSON value (shard results are templates for the combined output). */
function copyJson<T>(v: T): T {
  return structuredClone(v);
}

/**
 * HeadScores assembled by placement: the first shard's scores as the template (method, params,
 * data, model: equal in every shard), then each cell of the score grid and of every extra grid
 * taken from the shard that owns it (`owner(layer, head)` -> shard index, or -1 for the template's).
 */
export function placeHeadScores(parts: HeadScores[], owner: (layer: number, head: number) => number): HeadScores {
  sameAcrossShards(parts.map(({ method, params, data, model, nLayers, nHeads }) => ({ method, params, data, model, nLayers, nHeads })), 'scores');
  const out = copyJson(parts[0]);
  for (let l = 0; l < out.nLayers; l++) {
    for (let h = 0; h < out.nHeads; h++) {
      const k = owner(l, h);
      if (k < 0) continue;
      out.scores[l][h] = parts[k].scores[l][h];
      for (const name of Object.keys(out.extra ?? {})) out.extra![name][l][h] = parts[k].extra![name][l][h];
    }
  }
  return out;
}
