/**
 * The patching rankings and their shards.
 *
 * head-patching: the batched sweep (circuits/patching patchSweep) runs, per layer, a fixed sequence
 * of patched forwards of floor(maxBatch / prompts) patch indices each. A shard is a block of those
 * forwards of one layer (`patchSweep`'s `forwards` option), so it runs exactly the forwards the whole
 * sweep runs; the rows combine by concatenation in forward order, then the normalisation (a host
 * division with the same baselines) is the whole sweep's.
 *
 * path: one shard per block of sender layers (`senderLayers`); the per-layer chunks of senders are
 * the whole run's, so the rows of those layers are placed as computed.
 */
import { ValueError, expectedFound } from '../errors.js';
import type { ModelView } from '../model/view.js';
import type { HeadScores } from '../results.js';
import {
  headPatchingScores,
  headPatchingScoresOf,
  patchForwardsPerLayer,
  patchResultFromRows,
  patchSweep,
  type PatchBy,
  type PatchResult,
} from '../circuits/patching.js';
import { pathPatchingScores } from '../circuits/path.js';
import type { PatchingProblem } from '../circuits/problem.js';
import { taskProblem, type TaskOptions } from './task.js';
import { blocks, fromScores, placeHeadScores, sameAcrossShards, type RankMethod, type RankOutput, type ShardValue } from './types.js';

export interface HeadPatchingOptions extends TaskOptions {
  /** 'all' (default): one score per head, its output patched at every position; 'each': per head and position. */
  positions?: 'all' | 'each';
  /** Largest batch (prompts x patch indices) per forward (default 256). */
  maxBatch?: number;
}

function byOf(opts: HeadPatchingOptions): PatchBy {
  const positions = opts.positions ?? 'all';
  if (positions !== 'all' && positions !== 'each') throw new ValueError('positions', expectedFound('all or each', positions));
  return positions === 'all' ? 'head' : 'head_pos';
}

/** Rows {layer, pos, head, score} of a by-position sweep, largest normalised effect first (NaN last; ties in layer, pos, head order). */
function byPositionRows(r: PatchResult): Record<string, number>[] {
  const rows: Record<string, number>[] = [];
  (r.normalised as number[][][]).forEach((perPos, layer) => perPos.forEach((perHead, pos) => perHead.forEach((score, head) => rows.push({ layer, pos, head, score }))));
  const key = (x: number) => (Number.isNaN(x) ? -Infinity : x);
  return rows.sort((a, b) => Number(Number.isNaN(a.score)) - Number(Number.isNaN(b.score)) || key(b.score) - key(a.score));
}

function headPatchingOutput(m: Pick<ModelView, 'name'>, p: PatchingProblem, r: PatchResult): RankOutput {
  if (r.by === 'head') return fromScores(headPatchingScoresOf(m, p, r));
  const params = { act: 'z', positions: 'each', metric: r.metricName, clean: r.clean, corrupted: r.corrupted };
  return { rows: byPositionRows(r), columns: ['layer', 'pos', 'head', 'score'], method: 'head-patching', params };
}

interface PatchShard {
  layer: number;
  forwards: [number, number];
}

interface PatchShardResult {
  values: number[];
  clean: number;
  corrupted: number;
  metricName: string;
}

export const headPatching: RankMethod<HeadPatchingOptions> = {
  help: 'normalised effect of patching each head output, --positions all (default) | each (per head and position); --task ioi|induction --n --seed --corruption redwood|distinct --max-batch',
  needsTokens: false,
  async run(model, _batch, opts) {
    const by = byOf(opts);
    const p = taskProblem(model, opts);
    if (by === 'head') return fromScores(await headPatchingScores(model, p, { maxBatch: opts.maxBatch }));
    return headPatchingOutput(model, p, await patchSweep(model, p, 'z', by, { maxBatch: opts.maxBatch }));
  },
  /** Units: the patched forwards of a layer; default 4 per shard (each shard also repeats the 2 baseline runs). */
  shards(model, _batch, opts, size = 4) {
    const F = patchForwardsPerLayer(model, taskProblem(model, opts), 'z', byOf(opts), { maxBatch: opts.maxBatch });
    const out: ShardValue[] = [];
    for (let layer = 0; layer < model.cfg.n_layers; layer++) for (const forwards of blocks(F, size)) out.push({ layer, forwards });
    return out;
  },
  async runShard(model, _batch, opts, shard) {
    const { layer, forwards } = shard as unknown as PatchShard;
    const r = await patchSweep(model, taskProblem(model, opts), 'z', byOf(opts), { maxBatch: opts.maxBatch, layers: [layer], forwards });
    return { values: r.values[0] as number[], clean: r.clean, corrupted: r.corrupted, metricName: r.metricName };
  },
  combine(model, _batch, opts, shards, results) {
    const parts = results as unknown as PatchShardResult[];
    sameAcrossShards(parts.map(({ clean, corrupted, metricName }) => ({ clean, corrupted, metricName })), 'baselines');
    const rows: number[][] = Array.from({ length: model.cfg.n_layers }, () => []);
    (shards as unknown as PatchShard[]).forEach((s, i) => rows[s.layer].push(...parts[i].values));
    const p = taskProblem(model, opts);
    const { clean, corrupted, metricName } = parts[0];
    const r = patchResultFromRows('z', byOf(opts), rows, clean, corrupted, metricName, 0, p.clean[0].length, model.cfg.n_heads);
    return headPatchingOutput(model, p, r);
  },
};

export interface PathRankOptions extends TaskOptions {
  /** 'percentChange' (default, Wang et al.'s % change) or 'normalised'. */
  score?: 'percentChange' | 'normalised';
}

function pathScores(model: ModelView, opts: PathRankOptions, senderLayers?: number[]): Promise<HeadScores> {
  const score = opts.score ?? 'percentChange';
  if (score !== 'percentChange' && score !== 'normalised') throw new ValueError('score', expectedFound('percentChange or normalised', score));
  return pathPatchingScores(model, taskProblem(model, opts), { score, senderLayers });
}

export const pathRank: RankMethod<PathRankOptions> = {
  help: 'path patching from each head to the logits, scored as Wang et al.: 100 * (patched - clean) / clean (negative = the path carries the behaviour); --score normalised for (patched - corrupted) / (clean - corrupted); --task ioi|induction',
  needsTokens: false,
  async run(model, _batch, opts) {
    return fromScores(await pathScores(model, opts));
  },
  /** Units: sender layers; default 1 per shard. */
  shards(model, _batch, _opts, size = 1) {
    return blocks(model.cfg.n_layers, size).map(([a, b]) => ({ layers: Array.from({ length: b - a }, (_, i) => a + i) }));
  },
  async runShard(model, _batch, opts, shard) {
    return (await pathScores(model, opts, (shard as { layers: number[] }).layers)) as unknown as ShardValue;
  },
  combine(_model, _batch, _opts, shards, results) {
    const owner = new Map<number, number>();
    (shards as Array<{ layers: number[] }>).forEach((s, i) => s.layers.forEach((l) => owner.set(l, i)));
    return fromScores(placeHeadScores(results as unknown as HeadScores[], (l) => owner.get(l) ?? -1));
  },
};
