/**
 * Command-line arguments -> each rank method's typed options (src/rank). Shared by `tflens rank` and
 * `tflens sweep submit`, so a sweep computes what `tflens rank` with the same arguments computes.
 * Absent flags stay absent (the method's defaults apply), so the options, and with them a sweep's id,
 * do not depend on how they were given. Files named by flags are read here, into the options.
 */
import { readFile } from 'node:fs/promises';
import { ResolveError, ValueError, expectedFound } from '../errors.js';
import { readJsonFile } from '../io/json.js';
import { describeErrno } from '../io/files.js';
import { linspace } from '../data/needle.js';
import type { NiahNeedle } from '../analyses/niah.js';
import type { HookedTransformer } from '../model/hooked.js';
import type { HostBatch } from '../model/view.js';
import { readPromptsFile, readTokensFile } from './inputs.js';
import type { RankMethodName, RankMethodOptions, RetrievalRankOptions, RetrievalSamples, NeedleFormat, TaskOptions } from '../rank/index.js';

export type Args = Record<string, string | boolean>;

/** The value of --name, or undefined; a flag given without a value is an error. */
export function strArg(args: Args, name: string): string | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ValueError(`--${name}`, 'needs a value');
  return v;
}

export function numArg(args: Args, name: string): number | undefined {
  const v = strArg(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!v.trim() || !Number.isFinite(n)) throw new ValueError(`--${name}`, expectedFound('a number', v));
  return n;
}

export function oneOf<T extends string>(args: Args, name: string, allowed: readonly T[]): T | undefined {
  const v = strArg(args, name);
  if (v !== undefined && !allowed.includes(v as T)) throw new ValueError(`--${name}`, expectedFound(allowed.join(' or '), v));
  return v as T | undefined;
}

export function listArg(args: Args, name: string): number[] | undefined {
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

const flag = (args: Args, name: string): boolean | undefined => (args[name] === undefined ? undefined : args[name] === true || args[name] === 'true');

/** Drop absent options (so `{}` and `{eps: undefined}` are the same options). */
function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** --task ioi|induction --n --seed --corruption redwood|distinct --R */
export function taskArgs(args: Args): TaskOptions {
  return defined({
    task: oneOf(args, 'task', ['ioi', 'induction'] as const),
    n: numArg(args, 'n'),
    seed: numArg(args, 'seed'),
    corruption: oneOf(args, 'corruption', ['redwood', 'distinct'] as const),
    R: numArg(args, 'R'),
  });
}

const detectorArgs = (args: Args) =>
  defined({ errorMeasure: oneOf(args, 'error-measure', ['mul', 'abs'] as const), excludeBos: flag(args, 'exclude-bos'), excludeCurrentToken: flag(args, 'exclude-current-token') });

const saeArgs = (args: Args) =>
  defined({
    ...taskArgs(args),
    setup: oneOf(args, 'setup', ['authors-code', 'paper-text'] as const),
    sharing: oneOf(args, 'sharing', ['per-head', 'shared'] as const),
    epochs: numArg(args, 'epochs'),
    features: numArg(args, 'features'),
    lambda: numArg(args, 'lambda'),
    nTrain: numArg(args, 'n-train'),
  });

const razorArgs = (args: Args) =>
  defined({
    R: numArg(args, 'R'),
    repeats: numArg(args, 'repeats'),
    seed: numArg(args, 'seed'),
    lo: numArg(args, 'lo'),
    hi: numArg(args, 'hi'),
    rule: oneOf(args, 'rule', ['mod-r', 'same-token'] as const),
    aggregate: oneOf(args, 'aggregate', ['mean', 'row-mean'] as const),
  });

type Parser<K extends RankMethodName> = (args: Args) => RankMethodOptions[K] | Promise<RankMethodOptions[K]>;

const PARSERS: { [K in RankMethodName]: Parser<K> } = {
  sink: (a) => defined({ eps: numArg(a, 'eps') }),
  'hidden-sink': (a) => defined({ threshold: numArg(a, 'threshold') }),
  'prev-token': detectorArgs,
  'duplicate-token': detectorArgs,
  induction: detectorArgs,
  dormant: (a) => defined({ intervention: oneOf(a, 'intervention', ['zero', 'bos'] as const), tolerance: numArg(a, 'tolerance') }),
  copying: (a) => defined({ measure: oneOf(a, 'measure', ['elhage', 'positive-share'] as const) }),
  'head-patching': (a) => defined({ ...taskArgs(a), positions: oneOf(a, 'positions', ['all', 'each'] as const), maxBatch: numArg(a, 'max-batch') }),
  attribution: taskArgs,
  path: (a) => defined({ ...taskArgs(a), score: oneOf(a, 'score', ['percentChange', 'normalised'] as const) }),
  'sae-node': saeArgs,
  'sae-edge': saeArgs,
  'composition-q': () => ({}),
  'composition-k': () => ({}),
  'composition-v': () => ({}),
  retrieval: retrievalArgs,
  echo: razorArgs,
  'razor-induction': razorArgs,
};

/** The typed options of `method` from the command line. */
export async function rankOptionsFromArgs<K extends RankMethodName>(method: K, args: Args): Promise<RankMethodOptions[K]> {
  return (PARSERS[method] as Parser<K>)(args);
}

/** The token batch of --prompts <file.txt> or --tokens <file.json> (null when neither is given and the method does not need one). */
export async function batchFromArgs(args: Args, model: HookedTransformer, method: string, needsTokens: boolean): Promise<HostBatch | null> {
  const prompts = strArg(args, 'prompts');
  const tokens = strArg(args, 'tokens');
  if (prompts && tokens) throw new ValueError('--prompts/--tokens', 'give one of them, not both');
  if (tokens) return readTokensFile(tokens, model);
  if (prompts) {
    const { ids, mask } = await readPromptsFile(prompts, model);
    return { ids, mask };
  }
  if (needsTokens) throw new ValueError('--prompts/--tokens', `method ${method} reads activations: give --prompts <file.txt> or --tokens <file.json>`);
  return null;
}

// ------------------------------------------------------------------ retrieval

async function readText(file: string, name: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new ResolveError(file, `--${name}: cannot read (${describeErrno(e)})`);
  }
}

function textNeedles(args: Args, needles: unknown): Array<NiahNeedle<string>> {
  if (needles !== undefined) {
    if (!Array.isArray(needles)) throw new ValueError('--needles', expectedFound('a JSON list of {needle, question, answer}', typeof needles));
    return needles as Array<NiahNeedle<string>>;
  }
  const [needle, question, answer] = ['needle', 'question', 'answer'].map((k) => strArg(args, k));
  if (!needle || !question || !answer) throw new ValueError('--needle/--question/--answer', 'give all three, or --needles <file.json>');
  return [{ needle, question, answer }];
}

/** --needle-format <file.json> [--samples k] | --haystack <file.txt> (--needles <file.json> | --needle --question --answer); neither: the model's task.json. */
async function retrievalSamples(args: Args): Promise<RetrievalSamples | undefined> {
  const formatFile = strArg(args, 'needle-format');
  if (formatFile !== undefined) {
    const f = await readJsonFile(formatFile, '--needle-format');
    if (!f || typeof f !== 'object' || Array.isArray(f)) throw new ValueError('--needle-format', expectedFound('a JSON object of makeNeedle options', Array.isArray(f) ? 'an array' : typeof f));
    return { needleFormat: f as NeedleFormat };
  }
  const hayFile = strArg(args, 'haystack');
  if (hayFile !== undefined) {
    const needlesFile = strArg(args, 'needles');
    const needles = needlesFile === undefined ? undefined : await readJsonFile(needlesFile, '--needles');
    return { haystack: await readText(hayFile, 'haystack'), needles: textNeedles(args, needles) };
  }
  return undefined;
}

/** Lengths: --lengths a,b,.. or --min-length --max-length [--n-lengths 20]. */
function lengthsArg(args: Args): number[] | undefined {
  const given = listArg(args, 'lengths');
  if (given) return given;
  if (args['min-length'] === undefined && args['max-length'] === undefined) return undefined;
  const [lo, hi] = [numArg(args, 'min-length'), numArg(args, 'max-length')];
  if (lo === undefined || hi === undefined) throw new ValueError('--min-length/--max-length', 'give both');
  return linspace(lo, hi, numArg(args, 'n-lengths') ?? 20).map((x) => Math.round(x));
}

/** `tflens rank --method retrieval` arguments (see docs/methods/retrieval.md): samples, grid, decoding, scoring. */
async function retrievalArgs(args: Args): Promise<RetrievalRankOptions> {
  const nDepths = numArg(args, 'n-depths');
  return defined({
    samples: await retrievalSamples(args),
    perCell: numArg(args, 'samples'),
    lengths: lengthsArg(args),
    depths: listArg(args, 'depths') ?? (nDepths === undefined ? undefined : linspace(0, 1, nDepths)),
    seed: numArg(args, 'seed'),
    maxNewTokens: numArg(args, 'max-new-tokens'),
    stopTokens: listArg(args, 'stop-tokens'),
    variant: oneOf(args, 'variant', ['code', 'set'] as const),
    minRouge: numArg(args, 'min-rouge'),
    span: oneOf(args, 'span', ['answer', 'needle'] as const),
  });
}
