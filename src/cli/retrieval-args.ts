/**
 * The arguments of `tflens rank <model> --method retrieval`, turned into a NIAH grid (niahGrid).
 * Samples: --needle-format <file.json> (makeNeedle options; synthetic needles, --samples per cell), or
 * --haystack <file.txt> with --needles <file.json> [{needle, question, answer}] or --needle/--question/
 * --answer; with neither, the model folder's own task.json (a shipped model: its needle format and
 * its evaluation grid). Grid: --lengths a,b,.. or --min-length/--max-length/--n-lengths (20, as the
 * authors); --depths f,.. (fractions) or --n-depths (10). Decoding: --max-new-tokens (50),
 * --stop-tokens ids (default: the newline token). Scoring: --variant code|set, --min-rouge (0.5),
 * --span answer|needle (default answer), --seed (0).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ResolveError, ValueError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
import type { ModelView } from '../model/index.js';
import { linspace, type NeedleOptions } from '../data/needle.js';
import { needleTask, niahGrid, syntheticSamples, type NiahGridOptions, type NiahNeedle } from '../analyses/niah.js';
import type { RetrievalVariant } from '../analyses/retrieval.js';
import { readJsonFile } from '../io/json.js';
import { describeErrno, pathExists } from '../io/files.js';

type CliArgs = Record<string, string | boolean>;

function listArg(args: CliArgs, name: string): number[] | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  const bad = () => new ValueError(`--${name}`, expectedFound('a comma-separated list of numbers', v));
  if (typeof v !== 'string' || !v.trim()) throw bad();
  return v.split(',').map((s) => {
    const n = Number(s.trim());
    if (!s.trim() || !Number.isFinite(n)) throw bad();
    return n;
  });
}

function numOf(args: CliArgs, name: string, fallback: number): number {
  const v = args[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n)) throw new ValueError(`--${name}`, expectedFound('a number', v));
  return n;
}

function strOf(args: CliArgs, name: string): string | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ValueError(`--${name}`, 'needs a value');
  return v;
}

function oneOf<T extends string>(args: CliArgs, name: string, allowed: readonly T[], fallback: T): T {
  const v = strOf(args, name) ?? fallback;
  if (!allowed.includes(v as T)) throw new ValueError(`--${name}`, expectedFound(allowed.join(' or '), v));
  return v as T;
}

/** What the files named by the arguments (or the model's task.json) hold. */
export interface RetrievalFiles {
  needleFormat?: unknown;
  haystack?: string;
  needles?: unknown;
  /** The model folder's task.json, used when no sample source is given. */
  task?: unknown;
}

function lengthsOf(args: CliArgs, fallback: number[] | undefined): number[] {
  const given = listArg(args, 'lengths');
  if (given) return given;
  if (args['min-length'] !== undefined || args['max-length'] !== undefined) {
    if (args['min-length'] === undefined || args['max-length'] === undefined) throw new ValueError('--min-length/--max-length', 'give both');
    return linspace(numOf(args, 'min-length', 0), numOf(args, 'max-length', 0), numOf(args, 'n-lengths', 20)).map((x) => Math.round(x));
  }
  if (fallback) return fallback;
  throw new ValueError('--lengths', 'give --lengths a,b,... or --min-length and --max-length');
}

function textNeedles(args: CliArgs, needles: unknown): Array<NiahNeedle<string>> {
  if (needles !== undefined) {
    if (!Array.isArray(needles)) throw new ValueError('--needles', expectedFound('a JSON list of {needle, question, answer}', typeof needles));
    return needles as Array<NiahNeedle<string>>;
  }
  const [needle, question, answer] = ['needle', 'question', 'answer'].map((k) => strOf(args, k));
  if (!needle || !question || !answer) throw new ValueError('--needle/--question/--answer', 'give all three, or --needles <file.json>');
  return [{ needle, question, answer }];
}

/** Where the samples come from: --needle-format, --haystack with the needles, or the model's needle task.json. */
function sampleSource(args: CliArgs, files: RetrievalFiles): Pick<NiahGridOptions, 'makeSample' | 'source' | 'samplesPerCell'> & { task?: ReturnType<typeof needleTask> } {
  if (files.needleFormat !== undefined) {
    const f = files.needleFormat;
    if (!f || typeof f !== 'object' || Array.isArray(f)) throw new ValueError('--needle-format', expectedFound('a JSON object of makeNeedle options', Array.isArray(f) ? 'an array' : typeof f));
    return { makeSample: syntheticSamples(f as NeedleOptions), samplesPerCell: numOf(args, 'samples', 1) };
  }
  if (files.haystack !== undefined) return { source: { haystack: files.haystack, needles: textNeedles(args, files.needles) } };
  if ((files.task as { task?: unknown } | undefined)?.task === 'needle') {
    const task = needleTask(files.task);
    return { makeSample: syntheticSamples(task.format), samplesPerCell: numOf(args, 'samples', 1), task };
  }
  throw new ValueError('--needle-format/--haystack', 'give --needle-format <file.json> (synthetic needles) or --haystack <file.txt> with the needles (the model folder has no needle task.json to default to)');
}

/** The grid options of `tflens rank --method retrieval` from its arguments and the files they name (see the file comment). */
export function retrievalGridFromArgs(args: CliArgs, files: RetrievalFiles): NiahGridOptions {
  const { task, ...samples } = sampleSource(args, files);
  return {
    ...samples,
    lengths: lengthsOf(args, task?.lengths),
    depths: listArg(args, 'depths') ?? (args['n-depths'] === undefined && task ? task.depths : linspace(0, 1, numOf(args, 'n-depths', 10))),
    seed: numOf(args, 'seed', 0),
    maxNewTokens: numOf(args, 'max-new-tokens', 50),
    stopTokens: listArg(args, 'stop-tokens'),
    scorer: { variant: oneOf<RetrievalVariant>(args, 'variant', ['code', 'set'], 'code'), minRouge: numOf(args, 'min-rouge', 0.5) },
    spanOf: oneOf(args, 'span', ['answer', 'needle'] as const, 'answer'),
    onProgress: 'retrieval',
  };
}

async function readText(file: string, name: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new ResolveError(file, `--${name}: cannot read (${describeErrno(e)})`);
  }
}

/** Read the files the arguments name; without a sample source, the model folder's task.json when it has one. */
export async function retrievalFiles(model: Pick<ModelView, 'name'>, args: CliArgs): Promise<RetrievalFiles> {
  const json = async (name: string) => {
    const file = strOf(args, name);
    return file === undefined ? undefined : readJsonFile(file, `--${name}`);
  };
  const hayFile = strOf(args, 'haystack');
  const files: RetrievalFiles = { needleFormat: await json('needle-format'), needles: await json('needles'), haystack: hayFile === undefined ? undefined : await readText(hayFile, 'haystack') };
  const taskFile = path.join(model.name, 'task.json');
  if (files.needleFormat === undefined && files.haystack === undefined && (await pathExists(taskFile))) files.task = await readJsonFile(taskFile, 'task.json');
  return files;
}

/** Run `tflens rank --method retrieval`: the grid from the arguments, decoded with retrieval scoring. */
export async function rankRetrieval(model: ModelView, args: CliArgs): Promise<{ scores: HeadScores; authorJson: Record<string, number[]>; params: Record<string, unknown> }> {
  const g = await niahGrid(model, retrievalGridFromArgs(args, await retrievalFiles(model, args)));
  return { scores: g.scores!, authorJson: g.authorJson!, params: { ...g.scores!.params, ...g.params, lengths: g.lengths, depths: g.depths } };
}
