/**
 * The retrieval-head ranking (Wu et al.) from a NIAH grid, with typed options, and its shards.
 *
 * Shards are blocks of grid cells (niahGrid's `cells`): a cell decodes the same samples with the same
 * seeds and batches wherever it runs. The ranking is the mean over counted samples of each head's
 * per-sample score, so the shards' per-sample lists are concatenated in cell order (the whole grid's
 * order) and the means taken over them as the whole grid takes them.
 */
import path from 'node:path';
import { ConfigError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
import type { ModelView } from '../model/view.js';
import { readJsonFile } from '../io/json.js';
import { pathExists } from '../io/files.js';
import { linspace, type NeedleOptions } from '../data/needle.js';
import { needleTask, niahGrid, syntheticSamples, type NiahGridOptions, type NiahNeedle } from '../analyses/niah.js';
import { retrievalHeadScores, type RetrievalVariant } from '../analyses/retrieval.js';
import { blocks, sameAcrossShards, type RankMethod, type RankOutput, type ShardValue } from './types.js';

/** A makeNeedle token format (everything but length, depth and seed). */
export type NeedleFormat = Omit<NeedleOptions, 'length' | 'depth' | 'seed'>;

/** Where the NIAH samples come from. */
export type RetrievalSamples =
  /** Synthetic needles (makeNeedle) in this format. */
  | { needleFormat: NeedleFormat }
  /** A haystack text with needles (tokenized by the model); one sample per needle per cell. */
  | { haystack: string; needles: Array<NiahNeedle<string>> }
  /** A shipped model's needle task (its task.json): its format and its evaluation grid as defaults. */
  | { task: unknown };

export interface RetrievalRankOptions {
  /** Default: the model folder's task.json (a shipped needle model). */
  samples?: RetrievalSamples;
  /** Samples per grid cell with synthetic needles (needleFormat or the task; default 1). */
  perCell?: number;
  /** Context lengths (default: the task's evaluation lengths; required otherwise). */
  lengths?: number[];
  /** Needle depths in [0, 1] (default: the task's, else 10 evenly spaced from 0 to 1, as the authors). */
  depths?: number[];
  seed?: number;
  /** Default 50 (the authors'). */
  maxNewTokens?: number;
  /** Default: the model's newline token. */
  stopTokens?: number[];
  variant?: RetrievalVariant;
  /** Samples count when ROUGE-1 recall > minRouge (default 0.5). */
  minRouge?: number;
  /** The retrieval span: 'answer' (default, the authors' code) or 'needle'. */
  span?: 'answer' | 'needle';
}

/** The samples of `opts`, or the model folder's task.json when none are given. */
async function samplesOf(model: Pick<ModelView, 'name'>, opts: RetrievalRankOptions): Promise<RetrievalSamples> {
  if (opts.samples) return opts.samples;
  const taskFile = path.join(model.name, 'task.json');
  const task = (await pathExists(taskFile)) ? await readJsonFile(taskFile, 'task.json') : undefined;
  if ((task as { task?: unknown } | undefined)?.task === 'needle') return { task };
  throw new ConfigError('samples', 'give needleFormat (--needle-format: synthetic needles) or a haystack with needles: the model folder has no needle task.json to default to');
}

/** The niahGrid options of a retrieval ranking (progress shown under `label`, none when false). */
export async function retrievalGrid(model: Pick<ModelView, 'name'>, opts: RetrievalRankOptions, label: string | false = 'retrieval'): Promise<NiahGridOptions> {
  const samples = await samplesOf(model, opts);
  let task: ReturnType<typeof needleTask> | undefined;
  let source: Pick<NiahGridOptions, 'makeSample' | 'source' | 'samplesPerCell'>;
  if ('needleFormat' in samples) {
    const f = samples.needleFormat;
    if (!f || typeof f !== 'object' || Array.isArray(f)) throw new ConfigError('samples.needleFormat', expectedFound('an object of makeNeedle options', Array.isArray(f) ? 'an array' : typeof f));
    source = { makeSample: syntheticSamples(f), samplesPerCell: opts.perCell ?? 1 };
  } else if ('haystack' in samples) {
    source = { source: { haystack: samples.haystack, needles: samples.needles } };
  } else {
    task = needleTask(samples.task);
    source = { makeSample: syntheticSamples(task.format), samplesPerCell: opts.perCell ?? 1 };
  }
  const lengths = opts.lengths ?? task?.lengths;
  if (!lengths) throw new ConfigError('lengths', 'give the context lengths (no needle task to take them from)');
  return {
    ...source,
    lengths,
    depths: opts.depths ?? task?.depths ?? linspace(0, 1, 10),
    seed: opts.seed ?? 0,
    maxNewTokens: opts.maxNewTokens ?? 50,
    stopTokens: opts.stopTokens,
    scorer: { variant: opts.variant ?? 'code', minRouge: opts.minRouge ?? 0.5 },
    spanOf: opts.span ?? 'answer',
    onProgress: label,
  };
}

async function retrievalOutput(model: ModelView, grid: NiahGridOptions): Promise<RankOutput> {
  const g = await niahGrid(model, grid);
  return { scores: g.scores!, authorJson: g.authorJson!, method: 'retrieval', params: { ...g.scores!.params, ...g.params, lengths: g.lengths, depths: g.depths } };
}

/** Concatenate the shards' per-sample lists in shard order and take the whole grid's means over them. */
function combineRetrieval(parts: RankOutput[]): RankOutput {
  sameAcrossShards(parts.map((r) => r.params), 'params');
  sameAcrossShards(parts.map((r) => r.scores!.params), 'score params');
  const authorJson: Record<string, number[]> = {};
  for (const r of parts) for (const [k, xs] of Object.entries(r.authorJson!)) (authorJson[k] ??= []).push(...xs);
  const t = parts[0].scores!;
  const perSample = Array.from({ length: t.nLayers }, (_, l) => Array.from({ length: t.nHeads }, (_, h) => authorJson[`${l}-${h}`]));
  const scores: HeadScores = structuredClone(t);
  scores.scores = retrievalHeadScores(perSample).scores;
  const data = scores.data as { counted: number; samples: number };
  data.counted = perSample[0]?.[0]?.length ?? 0;
  data.samples = parts.reduce((n, r) => n + (r.scores!.data as { samples: number }).samples, 0);
  return { scores, authorJson, method: 'retrieval', params: parts[0].params };
}

export const retrievalRank: RankMethod<RetrievalRankOptions> = {
  help: "retrieval score (Wu et al.) from NIAH decoding, on the answer span (--span needle), stopping at the newline token; samples from the model's task.json, or --needle-format <json> | --haystack <txt> --needles <json>; --lengths --depths --max-new-tokens --stop-tokens; --format retrieval-head",
  needsTokens: false,
  async prepare(model, opts) {
    return { ...opts, samples: await samplesOf(model, opts) };
  },
  async run(model, _batch, opts) {
    return retrievalOutput(model, await retrievalGrid(model, opts));
  },
  /** Units: grid cells (length-major); default 1 per shard. The grid's axes come from the options (or the task). */
  shards(_model, _batch, opts, size = 1) {
    const samples = opts.samples as { task?: unknown } | undefined;
    const task = samples && 'task' in samples ? needleTask(samples.task) : undefined;
    const nL = (opts.lengths ?? task?.lengths)?.length;
    if (!nL) throw new ConfigError('lengths', 'a sharded retrieval sweep needs the lengths, or samples.task to take them from');
    const nD = (opts.depths ?? task?.depths ?? linspace(0, 1, 10)).length;
    return blocks(nL * nD, size).map(([a, b]) => ({ cells: Array.from({ length: b - a }, (_, i) => a + i) }));
  },
  async runShard(model, _batch, opts, shard) {
    const grid = await retrievalGrid(model, opts, false);
    return (await retrievalOutput(model, { ...grid, cells: (shard as { cells: number[] }).cells })) as unknown as ShardValue;
  },
  combine(_model, _batch, _opts, _shards, results) {
    return combineRetrieval(results as unknown as RankOutput[]);
  },
};
