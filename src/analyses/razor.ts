/**
 * RazorAttention echo / induction head scores (Tang et al., "RazorAttention"). There is no official
 * code; the published ports disagree, so each choice below names the port it follows and the others
 * are named options (docs/methods/retrieval.md has the table):
 *  - golden-stick = mindspore-ai/golden-stick, mindspore_gs/experimental/long_context_compress/
 *    razor_attention/wrappers/vllm_mindspore/attention_wrappers.py (masks lines 101-111, scores lines
 *    113-119, GQA max lines 131-134) and razor_attention.py (selection lines 225-245);
 *  - msmodelslim = Ascend/msmodelslim, msmodelslim/pytorch/ra_compression/ra_rope_tools.py (selection
 *    lines 106-125, scores lines 168-190).
 *
 * Probe: [BOS] + a random block of R tokens repeated `repeats` (4) times, N = bos + repeats * R.
 * Masks (rule 'mod-r', the default: golden-stick, and the spec's j = i mod R): for every row i >= R,
 * E[i, j] = 1 for j = i mod R, i mod R + R, ..., < i, and I[i, j + 1] = 1 for the same j. With a BOS at
 * position 0 this includes the BOS column on the rows i ≡ 0 (mod R). Rule 'same-token' (msmodelslim,
 * which cuts the BOS row and column before the same loop): only earlier copies of token i, j >= bos.
 * Scores (aggregate 'mean', golden-stick): mean(A * mask) over all N x N entries; 'row-mean'
 * (msmodelslim): the masked mass summed per row, averaged over the rows that have mask entries. Both
 * rank heads identically. GQA: the max over the query heads of each KV group (heads g*G .. g*G+G-1).
 * Selection (razorRetrievalHeads): top echoRatio (1%) of all (layer, KV head) echo scores union top
 * inductionRatio (14%) of the induction scores. The count is round(n * ratio) with Python's round (half
 * to even) and no minimum, and every head whose score is among the count largest values is kept (ties
 * at the cut all kept): golden-stick _select_top_heads and msmodelslim select_top_heads alike. Options:
 * minOne (at least one head) and ties: 'first' (exactly count heads, in layer-then-head order on ties),
 * together a later msmodelslim variant (select_top_heads_all). The union is taken over all layers
 * (golden-stick's _get_retrieval_heads returns inside its loop, after the first echo layer).
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { mulberry32 } from '../util/random.js';
import type { HookFn } from '../hooks/registry.js';
import type { ModelView } from '../model/index.js';

export type RazorMaskRule = 'mod-r' | 'same-token';
export type RazorAggregate = 'mean' | 'row-mean';

export interface RazorMaskOptions {
  /** Block length R. */
  R: number;
  /** 'mod-r' (default, golden-stick and the spec) or 'same-token' (msmodelslim: BOS excluded). */
  rule?: RazorMaskRule;
  /** Whether position 0 is a BOS (default true); only 'same-token' depends on it. */
  bos?: boolean;
}

/** Echo and induction masks (n x n, 0/1) for a probe of length n. */
export function razorMasks(n: number, opts: RazorMaskOptions): { echo: number[][]; induction: number[][] } {
  const { R } = opts;
  if (!Number.isInteger(R) || R <= 0) throw new ConfigError('R', expectedFound('a positive integer', R));
  if (!Number.isInteger(n) || n <= 0) throw new ConfigError('n', expectedFound('a positive integer', n));
  const rule = opts.rule ?? 'mod-r';
  if (rule !== 'mod-r' && rule !== 'same-token') throw new ConfigError('rule', expectedFound("'mod-r' or 'same-token'", rule));
  const first = rule === 'same-token' && opts.bos !== false ? 1 : 0;
  const echo = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const induction = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  for (let i = 0; i < n; i++) {
    for (let j = i - R; j >= first; j -= R) {
      echo[i][j] = 1;
      induction[i][j + 1] = 1;
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
  if (!Number.isInteger(repeats) || repeats < 2) throw new ConfigError('repeats', expectedFound('an integer >= 2', repeats));
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
  /** 'mean' (default, golden-stick) or 'row-mean' (msmodelslim). */
  aggregate?: RazorAggregate;
  /** Batch element to score (default: the mean pattern over the batch). */
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

/** The masks of a probe as device tensors [n, n] and the divisor of the aggregate; the caller disposes them. */
function maskTensors(n: number, opts: RazorScoreOptions): { echo: tf.Tensor2D; induction: tf.Tensor2D; divisor: number } {
  const m = razorMasks(n, opts);
  const aggregate = opts.aggregate ?? 'mean';
  if (aggregate !== 'mean' && aggregate !== 'row-mean') throw new ConfigError('aggregate', expectedFound("'mean' or 'row-mean'", aggregate));
  const rows = m.echo.filter((r) => r.some((v) => v)).length;
  return { echo: tf.tensor2d(m.echo), induction: tf.tensor2d(m.induction), divisor: aggregate === 'mean' ? n * n : Math.max(rows, 1) };
}

/** On the device: [2, head] = the echo and induction scores of one layer's pattern [batch, head, n, n]. */
function layerScores(p: tf.Tensor, masks: ReturnType<typeof maskTensors>, batchIndex: number | undefined): tf.Tensor {
  return tf.tidy(() => {
    const A = batchIndex === undefined ? p : tf.slice(p, [batchIndex, 0, 0, 0], [1, -1, -1, -1]);
    const A3 = tf.mean(tf.cast(A, 'float32'), 0); // [head, n, n]
    const score = (M: tf.Tensor2D) => tf.div(tf.sum(tf.mul(A3, M), [1, 2]), masks.divisor);
    return tf.stack([score(masks.echo), score(masks.induction)]);
  });
}

function checkPattern(p: tf.Tensor, where: string, H?: number, n?: number): void {
  const [, h, q, k] = p.shape;
  if (p.rank !== 4 || q !== k) throw new ShapeError(where, expectedFound('a square prefill pattern [batch, head, n, n]', `[${p.shape}]`));
  if ((H !== undefined && h !== H) || (n !== undefined && q !== n)) throw new ShapeError(where, expectedFound(`[batch, ${H}, ${n}, ${n}]`, `[${p.shape}]`));
}

/** Per-KV-head HeadScores from the per-query-head scores [layer][2][head]. */
function finish(perLayer: number[][][], H: number, opts: RazorScoreOptions): RazorScores {
  const nKv = opts.nKvHeads ?? H;
  const G = H / nKv;
  const groupMax = (grid: number[][]) => grid.map((row) => Array.from({ length: nKv }, (_, g) => Math.max(...row.slice(g * G, (g + 1) * G))));
  const perE = perLayer.map((x) => x[0]);
  const perI = perLayer.map((x) => x[1]);
  const params = { R: opts.R, rule: opts.rule ?? 'mod-r', bos: opts.bos !== false, aggregate: opts.aggregate ?? 'mean', nKvHeads: nKv, gqa: 'max over the query heads of a KV group' };
  return {
    echo: makeHeadScores('razor-echo', groupMax(perE), params),
    induction: makeHeadScores('razor-induction', groupMax(perI), params),
    echoPerQueryHead: perE,
    inductionPerQueryHead: perI,
  };
}

function checkKv(H: number, nKv: number | undefined): void {
  const k = nKv ?? H;
  if (!Number.isInteger(k) || k <= 0 || H % k !== 0) throw new ConfigError('nKvHeads', expectedFound(`a divisor of ${H}`, k));
}

/**
 * Echo and induction scores from per-layer patterns [batch, head, n, n] of the probe (see the file
 * comment for the rule, aggregate and GQA options). Reads back [2, head] numbers per layer.
 */
export async function razorScores(patterns: tf.Tensor[], opts: RazorScoreOptions): Promise<RazorScores> {
  if (!Array.isArray(patterns) || patterns.length === 0) throw new ConfigError('patterns', expectedFound('one pattern per layer', patterns));
  checkPattern(patterns[0], 'patterns[0]');
  const [, H, n] = patterns[0].shape;
  checkKv(H, opts.nKvHeads);
  patterns.forEach((p, l) => checkPattern(p, `patterns[${l}]`, H, n));
  const masks = maskTensors(n, opts);
  try {
    const all = tf.tidy(() => tf.stack(patterns.map((p) => layerScores(p, masks, opts.batchIndex))));
    const values = (await all.array()) as number[][][];
    all.dispose();
    return finish(values, H, opts);
  } finally {
    tf.dispose([masks.echo, masks.induction]);
  }
}

/** Python's round(x) for x >= 0 (half to even, on the exact binary value). */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface TopFractionOptions {
  /** At least one head (default false: round(n * ratio) may be 0). */
  minOne?: boolean;
  /** 'keep' (default): every head whose score equals one of the count largest values; 'first': exactly count heads, layer-then-head order on ties. */
  ties?: 'keep' | 'first';
}

/** Heads (layer, head) among the top round(n * ratio) scores (see TopFractionOptions), in layer-then-head order. */
export function topFraction(grid: number[][], ratio: number, opts: TopFractionOptions = {}): Array<[number, number]> {
  if (!(ratio >= 0 && ratio <= 1)) throw new ConfigError('ratio', expectedFound('a number in [0, 1]', ratio));
  const ties = opts.ties ?? 'keep';
  if (ties !== 'keep' && ties !== 'first') throw new ConfigError('ties', expectedFound("'keep' or 'first'", ties));
  const all: Array<[number, number, number]> = grid.flatMap((row, l) => row.map((s, h) => [l, h, s] as [number, number, number]));
  const count = Math.min(all.length, opts.minOne ? Math.max(1, pyRound(all.length * ratio)) : pyRound(all.length * ratio));
  if (count === 0) return [];
  const sorted = all.slice().sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  const chosen = ties === 'first' ? sorted.slice(0, count) : all.filter((x) => x[2] >= sorted[count - 1][2]);
  return chosen.map(([l, h]) => [l, h] as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/**
 * RazorAttention retrieval heads: top echoRatio (0.01) by echo score union top inductionRatio (0.14)
 * by induction score, as (layer, KV head) pairs sorted by layer then head, plus a per-layer map like
 * the ports' JSON ({layer: [heads]}).
 */
export function razorRetrievalHeads(
  scores: RazorScores,
  opts: { echoRatio?: number; inductionRatio?: number } & TopFractionOptions = {},
): { heads: Array<[number, number]>; echo: Array<[number, number]>; induction: Array<[number, number]>; byLayer: Record<string, number[]> } {
  const echo = topFraction(scores.echo.scores, opts.echoRatio ?? 0.01, opts);
  const induction = topFraction(scores.induction.scores, opts.inductionRatio ?? 0.14, opts);
  const seen = new Map<string, [number, number]>();
  for (const x of [...echo, ...induction]) seen.set(`${x[0]}.${x[1]}`, x);
  const heads = [...seen.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const byLayer: Record<string, number[]> = {};
  for (const [l, h] of heads) (byLayer[String(l)] ??= []).push(h);
  return { heads, echo, induction, byLayer };
}

export interface RazorProbeOptions extends Omit<RazorScoreOptions, 'R' | 'bos' | 'nKvHeads' | 'batchIndex'> {
  R: number;
  seed: number;
  repeats?: number;
  /** Probe ids are drawn from [lo, hi) (default [0, d_vocab)). */
  lo?: number;
  hi?: number;
}

/**
 * Run the probe on a model and score it: ids = [BOS] + R seeded random ids from [lo, hi) repeated
 * `repeats` times (BOS from the model config, if any). The scores are taken on the device inside
 * hook_pattern hooks (no pattern is cached); [2, head] numbers per layer are read back.
 */
export async function razorScoresForModel(model: ModelView, opts: RazorProbeOptions): Promise<RazorScores & { ids: number[] }> {
  const bosId = model.bosTokenId();
  const ids = razorInput({ R: opts.R, repeats: opts.repeats, seed: opts.seed, lo: opts.lo, hi: opts.hi ?? model.cfg.d_vocab, bosId });
  if (ids.length > model.cfg.n_ctx) throw new ConfigError('R', expectedFound(`a probe of at most n_ctx = ${model.cfg.n_ctx} tokens`, ids.length));
  const so: RazorScoreOptions = { ...opts, bos: bosId !== null, nKvHeads: model.cfg.n_kv_heads };
  checkKv(model.cfg.n_heads, so.nKvHeads);
  const masks = maskTensors(ids.length, so);
  const perLayer: tf.Tensor[] = [];
  const reader: HookFn = (act) => void perLayer.push(tf.keep(layerScores(act, masks, undefined)));
  try {
    const logits = await model.runWithHooks([ids], { fwdHooks: [[(n: string) => /^blocks\.\d+\.attn\.hook_pattern$/.test(n), reader]] });
    logits.dispose();
    const all = tf.stack(perLayer);
    const values = (await all.array()) as number[][][];
    all.dispose();
    return { ...finish(values, model.cfg.n_heads, so), ids };
  } finally {
    tf.dispose([masks.echo, masks.induction, ...perLayer]);
  }
}
