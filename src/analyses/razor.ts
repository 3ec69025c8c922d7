/**
 * RazorAttention echo / induction head scores (Tang et al., "RazorAttention"; no official code,
 * METHODS.md section 6 end, following a third-party port's rule).
 *
 * Input: [BOS] + a random block of R tokens repeated `repeats` (4) times, N = bos + repeats*R.
 * Positions are 0-indexed with BOS (when present) at 0, so the block token at position p >= bos is
 * block[(p - bos) mod R]. Two positions i, j >= bos hold the same token iff i ≡ j (mod R) (the BOS
 * offset cancels), so:
 *   echo mask      E[i, j]   = 1 for bos <= j < i with (i - j) mod R = 0  (earlier copies of token i)
 *   induction mask I[i, j+1] = 1 for the same j                           (the token after each copy)
 * The port builds the masks with j = i mod R, i mod R + R, ... and no BOS offset; with a BOS at 0
 * that includes the BOS column for rows i ≡ 0 (mod R) — an off-by-one we avoid by starting at
 * j >= bos (`bos: false` gives the port's masks exactly).
 * Scores per head: mean(A * E) and mean(A * I) over all q*k entries (the port's ops.mean; only the
 * ranking matters). GQA: the max over the query heads of each KV group (query heads g*G .. g*G+G-1
 * share KV head g) gives per-KV-head scores.
 * Selection: top `echoRatio` (1%) of all (layer, KV head) echo scores union top `inductionRatio`
 * (14%) of the induction scores. The count is round(n * ratio) with Python's round (half to even),
 * as in the port, but at least 1; every head whose score equals or exceeds the count-th largest is
 * kept (the port selects by value, so ties at the cut are all kept).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { mulberry32 } from '../util/random.js';
import type { HookedTransformer } from '../model/index.js';

export interface RazorMaskOptions {
  /** Block length R. */
  R: number;
  /** 1 when the sequence starts with BOS (default), 0 for the port's un-offset masks. */
  bos?: boolean;
}

/** Echo and induction masks (n x n, 0/1) for a sequence of length n. */
export function razorMasks(n: number, opts: RazorMaskOptions): { echo: number[][]; induction: number[][] } {
  const { R } = opts;
  if (!Number.isInteger(R) || R <= 0) throw new ConfigError('R', expectedFound('a positive integer', R));
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError('n', expectedFound('a positive integer', n));
  const off = opts.bos === false ? 0 : 1;
  const echo = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const induction = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = i - R; j >= off; j -= R) {
      echo[i][j] = 1;
      if (j + 1 < n) induction[i][j + 1] = 1;
    }
  }
  return { echo, induction };
}

/** The probe input: [bos] + R random ids (seeded, from [lo, hi)) repeated `repeats` times. */
export function razorInput(opts: { R: number; repeats?: number; bosId?: number | null; seed: number; lo?: number; hi: number }): number[] {
  const { R, seed, hi } = opts;
  const lo = opts.lo ?? 0;
  const repeats = opts.repeats ?? 4;
  if (!Number.isInteger(R) || R <= 0) throw new ConfigError('R', expectedFound('a positive integer', R));
  if (!(hi > lo)) throw new ConfigError('hi', expectedFound(`> lo (${lo})`, hi));
  const r = mulberry32(seed);
  const block = Array.from({ length: R }, () => lo + Math.floor(r() * (hi - lo)));
  const out: number[] = [];
  if (opts.bosId !== undefined && opts.bosId !== null) out.push(opts.bosId);
  for (let k = 0; k < repeats; k++) out.push(...block);
  return out;
}

export interface RazorScoreOptions extends RazorMaskOptions {
  /** KV heads per layer (GQA); default = query heads. */
  nKvHeads?: number;
  /** Batch element to score (default: mean over the batch). */
  batchIndex?: number;
}

export interface RazorScores {
  /** [layer][kv head] */
  echo: HeadScores;
  induction: HeadScores;
  /** Per query head, before the GQA max: [layer][head]. */
  echoPerQueryHead: number[][];
  inductionPerQueryHead: number[][];
}

/**
 * Echo and induction scores from per-layer patterns [batch, head, q, k] (q = k = N) on the probe
 * input. Returns per-KV-head HeadScores.
 */
export function razorScores(patterns: tf.Tensor[], opts: RazorScoreOptions): RazorScores {
  if (!Array.isArray(patterns) || patterns.length === 0) throw new ConfigError('patterns', expectedFound('one pattern per layer', patterns));
  const first = patterns[0];
  if (first.rank !== 4) throw new ShapeError('patterns[0]', expectedFound('[batch, head, q, k]', `[${first.shape}]`));
  const [, H, n, k] = first.shape;
  if (n !== k) throw new ShapeError('patterns[0]', expectedFound('a square prefill pattern (q = k)', `q=${n}, k=${k}`));
  const nKv = opts.nKvHeads ?? H;
  if (!Number.isInteger(nKv) || nKv <= 0 || H % nKv !== 0) throw new ConfigError('nKvHeads', expectedFound(`a divisor of ${H}`, nKv));
  const G = H / nKv;
  const { echo, induction } = razorMasks(n, opts);
  const eT = tf.tensor2d(echo);
  const iT = tf.tensor2d(induction);
  const perE: number[][] = [];
  const perI: number[][] = [];
  try {
    patterns.forEach((p, l) => {
      if (p.rank !== 4 || p.shape[1] !== H || p.shape[2] !== n || p.shape[3] !== n) {
        throw new ShapeError(`patterns[${l}]`, expectedFound(`[batch, ${H}, ${n}, ${n}]`, `[${p.shape}]`));
      }
      const res = tf.tidy(() => {
        let A = p.toFloat();
        if (opts.batchIndex !== undefined) A = A.slice([opts.batchIndex, 0, 0, 0], [1, -1, -1, -1]);
        const A3 = A.mean(0) as tf.Tensor3D; // [head, n, n]
        const e = tf.mul(A3, eT).mean([1, 2]);
        const ind = tf.mul(A3, iT).mean([1, 2]);
        return tf.stack([e, ind]);
      });
      const arr = res.arraySync() as number[][];
      res.dispose();
      perE.push(arr[0]);
      perI.push(arr[1]);
    });
  } finally {
    eT.dispose();
    iT.dispose();
  }
  const groupMax = (grid: number[][]) => grid.map((row) => Array.from({ length: nKv }, (_, g) => Math.max(...row.slice(g * G, (g + 1) * G))));
  const params = { R: opts.R, bos: opts.bos !== false, nKvHeads: nKv, aggregate: 'mean(A*mask) over q*k; max over query heads of a KV group' };
  return {
    echo: makeHeadScores('razor-echo', groupMax(perE), params),
    induction: makeHeadScores('razor-induction', groupMax(perI), params),
    echoPerQueryHead: perE,
    inductionPerQueryHead: perI,
  };
}

/** Python's round(x) for x >= 0: half to even. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (Math.abs(d - 0.5) < 1e-12) return f % 2 === 0 ? f : f + 1;
  return Math.round(x);
}

/** Heads (layer, head) whose score is among the top round(n * ratio) (>= 1), ties at the cut kept. */
export function topFraction(grid: number[][], ratio: number): Array<[number, number]> {
  if (!(ratio >= 0 && ratio <= 1)) throw new ConfigError('ratio', expectedFound('a number in [0, 1]', ratio));
  const all = grid.flatMap((row) => row);
  if (!all.length) return [];
  const count = Math.min(all.length, Math.max(1, pyRound(all.length * ratio)));
  const cut = all.slice().sort((a, b) => b - a)[count - 1];
  const out: Array<[number, number]> = [];
  grid.forEach((row, l) => row.forEach((s, h) => {
    if (s >= cut) out.push([l, h]);
  }));
  return out;
}

/**
 * RazorAttention retrieval heads: top echoRatio (0.01) by echo score union top inductionRatio
 * (0.14) by induction score, as (layer, KV head) pairs sorted by layer then head, plus a per-layer
 * map like the port's JSON ({layer: [heads]}).
 */
export function razorRetrievalHeads(
  scores: RazorScores,
  opts: { echoRatio?: number; inductionRatio?: number } = {},
): { heads: Array<[number, number]>; echo: Array<[number, number]>; induction: Array<[number, number]>; byLayer: Record<string, number[]> } {
  const echo = topFraction(scores.echo.scores, opts.echoRatio ?? 0.01);
  const induction = topFraction(scores.induction.scores, opts.inductionRatio ?? 0.14);
  const key = (x: [number, number]) => `${x[0]}.${x[1]}`;
  const seen = new Map<string, [number, number]>();
  for (const x of [...echo, ...induction]) seen.set(key(x), x);
  const heads = [...seen.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const byLayer: Record<string, number[]> = {};
  for (const [l, h] of heads) (byLayer[String(l)] ??= []).push(h);
  return { heads, echo, induction, byLayer };
}

/**
 * Run the probe on a model and score it: ids = [BOS] + R seeded random ids from [lo, hi) repeated
 * `repeats` times (hi defaults to d_vocab, lo to 0; BOS from the model config, if any).
 */
export function razorScoresForModel(
  model: HookedTransformer,
  opts: { R: number; seed: number; repeats?: number; lo?: number; hi?: number },
): RazorScores & { ids: number[] } {
  const bosId = model.bosTokenId();
  const ids = razorInput({ R: opts.R, repeats: opts.repeats, seed: opts.seed, lo: opts.lo, hi: opts.hi ?? model.cfg.d_vocab, bosId });
  if (ids.length > model.cfg.n_ctx) throw new ConfigError('R', expectedFound(`a probe of at most n_ctx = ${model.cfg.n_ctx} tokens`, ids.length));
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
  const { logits, cache } = model.runWithCache([ids], { namesFilter: names });
  logits.dispose();
  try {
    const res = razorScores(names.map((n) => cache.get(n as never)), { R: opts.R, bos: bosId !== null, nKvHeads: model.cfg.n_kv_heads });
    return { ...res, ids };
  } finally {
    cache.dispose();
  }
}
