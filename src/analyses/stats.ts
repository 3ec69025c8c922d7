/**
 * Small statistics helpers on top of mathjs: seeded percentile-bootstrap confidence intervals,
 * bootstrap CIs for HeadScores over prompts, mean/std, and averaging results across seeds.
 *
 * Conventions: `std` is the SAMPLE standard deviation (divide by n - 1, mathjs 'unbiased') unless
 * asked otherwise; quantiles interpolate linearly between order statistics (mathjs quantileSeq,
 * the same rule as numpy's default). Every resampling takes a seed (default 0) and goes through the
 * project PRNG (src/util/random.ts), so the same call gives the same interval everywhere.
 */
import { mean as mjMean, quantileSeq, std as mjStd } from 'mathjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { HeadScores, makeHeadScores } from '../results.js';
import { rng } from '../util/random.js';

export type Statistic<T> = (sample: T[]) => number;

export interface BootstrapOptions {
  /** Number of bootstrap replicates (default 1000). */
  n?: number;
  /** Confidence level in (0, 1) (default 0.95). */
  level?: number;
  /** PRNG seed (default 0). */
  seed?: number;
}

export interface BootstrapCI {
  /** The statistic on the original sample. */
  estimate: number;
  lo: number;
  hi: number;
  level: number;
  /** Replicates drawn. */
  n: number;
  seed: number;
  method: 'percentile';
}

function checkOpts(opts: BootstrapOptions): { n: number; level: number; seed: number } {
  const n = opts.n ?? 1000;
  const level = opts.level ?? 0.95;
  const seed = opts.seed ?? 0;
  if (!(Number.isInteger(n) && n >= 1)) throw new ValueError('opts.n', expectedFound('a positive integer number of replicates', n));
  if (!(level > 0 && level < 1)) throw new ValueError('opts.level', expectedFound('a confidence level in (0, 1)', level));
  if (!Number.isFinite(seed)) throw new ValueError('opts.seed', expectedFound('a finite number', seed));
  return { n, level, seed };
}

function checkNumbers(values: readonly number[], where: string): void {
  for (let i = 0; i < values.length; i++) {
    if (typeof values[i] !== 'number' || !Number.isFinite(values[i])) {
      throw new ValueError(`${where}[${i}]`, expectedFound('a finite number', values[i]));
    }
  }
}

/** Arithmetic mean (mathjs). */
export function mean(values: readonly number[]): number {
  if (values.length === 0) throw new ValueError('mean(values)', expectedFound('a non-empty array', 'an empty array'));
  return mjMean(values as number[]) as number;
}

/** Percentiles [(1-level)/2, (1+level)/2] of a list of replicate values. */
function percentileInterval(reps: number[], level: number): [number, number] {
  const a = (1 - level) / 2;
  const q = quantileSeq(reps, [a, 1 - a]) as unknown as number[];
  return [q[0], q[1]];
}

/**
 * Percentile bootstrap confidence interval of `stat` (default: the mean) over `values`, resampling
 * values with replacement `n` times with a seeded PRNG. values may be numbers or any per-prompt
 * record when a custom stat is given.
 */
export function bootstrapCI(values: readonly number[], stat?: Statistic<number> | BootstrapOptions, opts?: BootstrapOptions): BootstrapCI;
export function bootstrapCI<T>(values: readonly T[], stat: Statistic<T>, opts?: BootstrapOptions): BootstrapCI;
export function bootstrapCI<T>(values: readonly T[], statOrOpts?: Statistic<T> | BootstrapOptions, maybeOpts: BootstrapOptions = {}): BootstrapCI {
  let stat: Statistic<T>;
  let opts: BootstrapOptions;
  if (typeof statOrOpts === 'function') {
    stat = statOrOpts;
    opts = maybeOpts;
  } else {
    stat = ((s: number[]) => mean(s)) as unknown as Statistic<T>;
    opts = statOrOpts ?? maybeOpts;
    checkNumbers(values as unknown as number[], 'bootstrapCI(values)');
  }
  if (!Array.isArray(values) || values.length === 0) {
    throw new ValueError('bootstrapCI(values)', expectedFound('a non-empty array', Array.isArray(values) ? 'an empty array' : typeof values));
  }
  const { n, level, seed } = checkOpts(opts);
  const estimate = stat(values.slice());
  if (!Number.isFinite(estimate)) throw new ValueError('bootstrapCI(stat)', expectedFound('a finite statistic on the sample', estimate));
  const r = rng(seed);
  const m = values.length;
  const reps = new Array<number>(n);
  const sample = new Array<T>(m);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < m; i++) sample[i] = values[r.int(m)];
    const v = stat(sample);
    if (!Number.isFinite(v)) throw new ValueError(`bootstrapCI(stat), replicate ${b}`, expectedFound('a finite statistic', v));
    reps[b] = v;
  }
  const [lo, hi] = percentileInterval(reps, level);
  return { estimate, lo, hi, level, n, seed, method: 'percentile' };
}

export interface HeadBootstrapOptions extends BootstrapOptions {
  /** Per-head statistic over the prompts' values (default: mean). */
  stat?: Statistic<number>;
}

/**
 * Bootstrap CIs for every head of a HeadScores from per-prompt values perPrompt[prompt][layer][head]:
 * each replicate resamples the PROMPTS (the same draw for all heads) and applies `stat` per head.
 * Fills hs.ci ({lo, hi, level, method}) in place and returns hs (so it can be chained).
 */
export function withBootstrap(hs: HeadScores, perPrompt: readonly number[][][], opts: HeadBootstrapOptions = {}): HeadScores {
  const { n, level, seed } = checkOpts(opts);
  const stat = opts.stat ?? ((s: number[]) => mean(s));
  const P = perPrompt.length;
  if (P === 0) throw new ValueError('withBootstrap(perPrompt)', expectedFound('values for at least one prompt', 'an empty array'));
  const L = hs.nLayers;
  const H = hs.nHeads;
  perPrompt.forEach((grid, p) => {
    if (!Array.isArray(grid) || grid.length !== L) {
      throw new ShapeError(`withBootstrap(perPrompt)[${p}]`, expectedFound(`${L} layers (as hs)`, Array.isArray(grid) ? grid.length : typeof grid));
    }
    grid.forEach((row, l) => {
      if (!Array.isArray(row) || row.length !== H) {
        throw new ShapeError(`withBootstrap(perPrompt)[${p}][${l}]`, expectedFound(`${H} heads (as hs)`, Array.isArray(row) ? row.length : typeof row));
      }
      checkNumbers(row, `withBootstrap(perPrompt)[${p}][${l}]`);
    });
  });
  const r = rng(seed);
  // reps[l][h][b]
  const reps = Array.from({ length: L }, () => Array.from({ length: H }, () => new Array<number>(n)));
  const idx = new Array<number>(P);
  const col = new Array<number>(P);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < P; i++) idx[i] = r.int(P);
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        for (let i = 0; i < P; i++) col[i] = perPrompt[idx[i]][l][h];
        const v = stat(col);
        if (!Number.isFinite(v)) throw new ValueError(`withBootstrap(stat) at head ${l}.${h}`, expectedFound('a finite statistic', v));
        reps[l][h][b] = v;
      }
    }
  }
  const lo = reps.map((row) => row.map((rs) => percentileInterval(rs, level)[0]));
  const hi = reps.map((row) => row.map((rs) => percentileInterval(rs, level)[1]));
  hs.ci = { lo, hi, level, method: `bootstrap-percentile over ${P} prompts (n=${n}, seed=${seed})` };
  return hs;
}

export interface MeanStd {
  mean: number;
  /** Sample standard deviation (n - 1) unless normalization 'uncorrected' (n) was asked for. */
  std: number;
  n: number;
}

/**
 * Mean and standard deviation with mathjs. normalization 'unbiased' (default, sample std, n - 1;
 * needs >= 2 values) or 'uncorrected' (population std, n).
 */
export function meanStd(values: readonly number[], opts: { normalization?: 'unbiased' | 'uncorrected' } = {}): MeanStd {
  const normalization = opts.normalization ?? 'unbiased';
  if (normalization !== 'unbiased' && normalization !== 'uncorrected') {
    throw new ValueError('opts.normalization', expectedFound("'unbiased' or 'uncorrected'", normalization));
  }
  checkNumbers(values, 'meanStd(values)');
  const min = normalization === 'unbiased' ? 2 : 1;
  if (values.length < min) {
    throw new ValueError('meanStd(values)', expectedFound(`at least ${min} values for the ${normalization} std`, values.length));
  }
  return {
    mean: mjMean(values as number[]) as number,
    std: mjStd(values as number[], normalization) as unknown as number,
    n: values.length,
  };
}

/**
 * Average HeadScores of the same method and shape across runs (e.g. seeds): scores = mean per head,
 * extra.std = sample std per head (n - 1), extra.min / extra.max. Needs >= 2 runs.
 */
export function acrossSeeds(results: readonly HeadScores[]): HeadScores {
  if (!Array.isArray(results) || results.length < 2) {
    throw new ValueError('acrossSeeds(results)', expectedFound('at least 2 HeadScores', Array.isArray(results) ? results.length : typeof results));
  }
  const first = results[0];
  const L = first.nLayers;
  const H = first.nHeads;
  results.forEach((r, i) => {
    if (r.method !== first.method) throw new ValueError(`acrossSeeds(results)[${i}].method`, expectedFound(first.method, r.method));
    if (r.nLayers !== L || r.nHeads !== H) {
      throw new ShapeError(`acrossSeeds(results)[${i}]`, expectedFound(`${L} x ${H} heads`, `${r.nLayers} x ${r.nHeads}`));
    }
  });
  const grid = () => Array.from({ length: L }, () => new Array<number>(H).fill(0));
  const meanG = grid();
  const stdG = grid();
  const minG = grid();
  const maxG = grid();
  for (let l = 0; l < L; l++) {
    for (let h = 0; h < H; h++) {
      const vals = results.map((r) => r.scores[l][h]);
      checkNumbers(vals, `acrossSeeds: scores[${l}][${h}] across results`);
      const ms = meanStd(vals);
      meanG[l][h] = ms.mean;
      stdG[l][h] = ms.std;
      minG[l][h] = Math.min(...vals);
      maxG[l][h] = Math.max(...vals);
    }
  }
  return makeHeadScores(
    first.method,
    meanG,
    { ...first.params, aggregate: 'mean across runs', runs: results.length },
    {
      model: first.model,
      data: { ...(first.data ?? {}), runs: results.map((r) => r.data ?? null) },
      extra: { std: stdG, min: minG, max: maxG },
    },
  );
}
