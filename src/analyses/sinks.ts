/**
 * Attention sinks (Gu et al., "When Attention Sink Emerges"; METHODS.md section 2) and hidden
 * sinks (Yu et al., ACT; METHODS.md section 3, detection only).
 *
 * Positions are relative to the first real token of each prompt (left padding is read from the
 * attention mask), so a prompt gives the same numbers alone or padded inside a batch.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { makeHeadScores } from '../results.js';
import type { HeadScores } from '../results.js';
import {
  checkPatterns,
  columnMean,
  firstRealIndex,
  forEachChunk,
  grid,
  maskRows,
  modelName,
  patternNames,
  prepareBatch,
} from './attention-stats.js';
import type { AnalysisModel, MaskLike, ModelRunOptions, TokensLike } from './attention-stats.js';

// ---------------------------------------------------------------------------------------------
// sink rates
// ---------------------------------------------------------------------------------------------

export interface SinkRateOptions {
  /** Threshold on alpha (default 0.3, as in the paper). */
  eps?: number;
  /** Key positions, 1-indexed as in the paper (k = 1 is the first token). Default 1..10 (capped at the longest prompt). */
  ks?: number[];
  /** Attention mask [batch, pos] (left padding). */
  mask?: MaskLike;
  /** Recorded in the HeadScores. */
  model?: string;
  data?: Record<string, unknown>;
}

export interface SinkRateResult {
  eps: number;
  /** The key positions, 1-indexed. */
  ks: number[];
  /** Sink_k^eps in percent for each k: 100 * mean over (prompt, layer, head) of 1[alpha_k > eps]. */
  rates: number[];
  /** Number of (prompt, layer, head) triples behind each rate (prompts shorter than k are left out). */
  counts: number[];
  /** alpha[layer][head][kIndex]: column mean at position k, averaged over the prompts that have it. */
  alpha: number[][][];
  /** method "sink": score = alpha_1 (mean attention the head's queries give the first token) averaged over prompts; extra.sinkRate = percent of prompts with alpha_1 > eps. */
  scores: HeadScores;
}

/** Per-prompt column means at relative positions: out[prompt][layer][head][r]. */
function alphaPerPrompt(patterns: tf.Tensor[], mask: number[][], first: number[]): number[][][][] {
  const [B, H, N] = checkPatterns(patterns);
  const out: number[][][][] = Array.from({ length: B }, () => []);
  const maskT = tf.tensor2d(mask, [B, N], 'float32');
  try {
    for (const p of patterns) {
      const cm = columnMean(p, { mask: maskT });
      const arr = cm.arraySync() as number[][][];
      cm.dispose();
      for (let b = 0; b < B; b++) {
        out[b].push(Array.from({ length: H }, (_, h) => arr[b][h].slice(first[b])));
      }
    }
  } finally {
    maskT.dispose();
  }
  return out;
}

function checkEps(eps: number): void {
  if (!Number.isFinite(eps) || eps < 0 || eps >= 1) throw new ValueError('eps', expectedFound('a number in [0, 1)', eps));
}

function aggregateSinks(alpha: number[][][][], opts: SinkRateOptions): SinkRateResult {
  const eps = opts.eps ?? 0.3;
  checkEps(eps);
  const B = alpha.length;
  const L = alpha[0].length;
  const H = alpha[0][0].length;
  const maxLen = Math.max(...alpha.map((a) => a[0][0].length));
  const ks = opts.ks ?? Array.from({ length: Math.min(10, maxLen) }, (_, i) => i + 1);
  ks.forEach((k, i) => {
    if (!Number.isInteger(k) || k < 1) throw new ValueError(`ks[${i}]`, expectedFound('a 1-indexed position (integer >= 1)', k));
    if (k > maxLen) throw new ValueError(`ks[${i}]`, expectedFound(`a position <= the longest prompt (${maxLen} tokens)`, k));
  });
  const rates: number[] = [];
  const counts: number[] = [];
  const alphaMean: number[][][] = grid(L, H, () => [] as number[]);
  for (const k of ks) {
    const r = k - 1;
    let hits = 0;
    let cnt = 0;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        let s = 0;
        let c = 0;
        for (let b = 0; b < B; b++) {
          const a = alpha[b][l][h];
          if (r >= a.length) continue;
          s += a[r];
          c++;
          if (a[r] > eps) hits++;
        }
        cnt += c;
        alphaMean[l][h].push(s / c);
      }
    }
    rates.push((100 * hits) / cnt);
    counts.push(cnt);
  }
  const first = grid(L, H, (l, h) => alpha.reduce((s, a) => s + a[l][h][0], 0) / B);
  const rate1 = grid(L, H, (l, h) => (100 * alpha.filter((a) => a[l][h][0] > eps).length) / B);
  const scores = makeHeadScores('sink', first, { eps, position: 'first token (k = 1)' }, {
    data: { prompts: B, ...(opts.data ?? {}) },
    ...(opts.model ? { model: opts.model } : {}),
    extra: { sinkRate: rate1 },
  });
  return { eps, ks, rates, counts, alpha: alphaMean, scores };
}

/**
 * Sink metric from per-layer patterns [batch, head, q, k] (one tensor per layer).
 * alpha^{l,h}_k = column mean at key k (1-indexed; k = 1 = first real token);
 * Sink_k^eps = 100 * mean over (prompts, layers, heads) of 1[alpha_k > eps].
 */
export function sinkRates(patterns: tf.Tensor[], opts: SinkRateOptions = {}): SinkRateResult {
  const [B, , N] = checkPatterns(patterns);
  const mask = maskRows(opts.mask, B, N, 'mask');
  const first = firstRealIndex(mask, 'mask');
  return aggregateSinks(alphaPerPrompt(patterns, mask, first), opts);
}

export interface SinkScoreOptions extends ModelRunOptions {
  eps?: number;
  ks?: number[];
}

/** Sink metric of a model on a batch of prompts (caches only the attention patterns). */
export function sinkScores(model: AnalysisModel, tokens: TokensLike, opts: SinkScoreOptions = {}): SinkRateResult {
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const alpha: number[][][][] = [];
  forEachChunk(model, batch, patternNames(L), opts.batchSize, (get, rows) => {
    const pats = Array.from({ length: L }, (_, l) => get(actName('pattern', l)));
    alpha.push(...alphaPerPrompt(pats, rows.mask, rows.first));
  });
  return aggregateSinks(alpha, { eps: opts.eps, ks: opts.ks, model: modelName(model) });
}

// ---------------------------------------------------------------------------------------------
// companion norms
// ---------------------------------------------------------------------------------------------

/** Per-prompt L2 norms at relative positions: t is [B, N, d] or [B, N, heads, d] (then averaged over heads). */
function normsByPrompt(t: tf.Tensor, first: number[]): number[][] {
  if (t.rank !== 3 && t.rank !== 4) throw new ShapeError('activation', expectedFound('[batch, pos, d] or [batch, pos, head, d]', `[${t.shape}]`));
  const n = tf.tidy(() => {
    const x = t.toFloat();
    let nn = x.square().sum(-1).sqrt();
    if (nn.rank === 3) nn = nn.mean(-1);
    return nn;
  });
  const arr = n.arraySync() as number[][];
  n.dispose();
  return arr.map((row, b) => row.slice(first[b]));
}

function meanOverPrompts(perPrompt: number[][]): { mean: number[]; counts: number[] } {
  const maxLen = Math.max(...perPrompt.map((r) => r.length));
  const mean: number[] = [];
  const counts: number[] = [];
  for (let r = 0; r < maxLen; r++) {
    let s = 0;
    let c = 0;
    for (const row of perPrompt) {
      if (r < row.length) {
        s += row[r];
        c++;
      }
    }
    mean.push(s / c);
    counts.push(c);
  }
  return { mean, counts };
}

export interface NormsResult {
  /** norms[layer][r]: mean over prompts of the L2 norm at relative position r. */
  norms: number[][];
  /** counts[r]: prompts that have position r. */
  counts: number[];
}

/** Mean L2 norm of the residual stream entering each layer (blocks.L.hook_resid_pre) per (layer, relative position). */
export function residualNorms(model: AnalysisModel, tokens: TokensLike, opts: ModelRunOptions = {}): NormsResult {
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const per: number[][][] = Array.from({ length: L }, () => []);
  const names = Array.from({ length: L }, (_, l) => actName('resid_pre', l));
  forEachChunk(model, batch, names, opts.batchSize, (get, rows) => {
    for (let l = 0; l < L; l++) per[l].push(...normsByPrompt(get(names[l]), rows.first));
  });
  const res = per.map(meanOverPrompts);
  return { norms: res.map((r) => r.mean), counts: res[0].counts };
}

export interface KeyValueNormsResult {
  /** keys[layer][r]: mean over prompts and KV heads of ||k|| at relative position r (hook_k; rotary keeps norms). */
  keys: number[][];
  /** values[layer][r]: same for ||v|| (hook_v). */
  values: number[][];
  counts: number[];
}

/** Mean L2 norm of keys and values (averaged over heads) per (layer, relative position). */
export function keyValueNorms(model: AnalysisModel, tokens: TokensLike, opts: ModelRunOptions = {}): KeyValueNormsResult {
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const kPer: number[][][] = Array.from({ length: L }, () => []);
  const vPer: number[][][] = Array.from({ length: L }, () => []);
  const kNames = Array.from({ length: L }, (_, l) => actName('k', l));
  const vNames = Array.from({ length: L }, (_, l) => actName('v', l));
  forEachChunk(model, batch, [...kNames, ...vNames], opts.batchSize, (get, rows) => {
    for (let l = 0; l < L; l++) {
      kPer[l].push(...normsByPrompt(get(kNames[l]), rows.first));
      vPer[l].push(...normsByPrompt(get(vNames[l]), rows.first));
    }
  });
  const k = kPer.map(meanOverPrompts);
  const v = vPer.map(meanOverPrompts);
  return { keys: k.map((r) => r.mean), values: v.map((r) => r.mean), counts: k[0].counts };
}

// ---------------------------------------------------------------------------------------------
// hidden sinks (ACT)
// ---------------------------------------------------------------------------------------------

export interface HiddenSinkOptions {
  /** Absolute threshold on the column mean (ACT's THRES, default 0.1). */
  threshold?: number;
}

function checkThreshold(t: number): void {
  if (!Number.isFinite(t) || t <= 0 || t >= 1) throw new ValueError('threshold', expectedFound('a number in (0, 1)', t));
}

/** ACT's rule on column means m (real columns only, relative indices): S = {j : m_j > thr} minus its lowest index. */
function hiddenFromColumnMeans(m: number[], thr: number): number[] {
  const s: number[] = [];
  m.forEach((v, j) => {
    if (v > thr) s.push(j);
  });
  return s.slice(1);
}

/**
 * Hidden sinks of one head on one prompt (pattern [q, k]): S = {j : m_j > threshold} with m the
 * column mean, minus its lowest index (normally BOS). Returns column indices of the given matrix.
 * `mask` ([k], 0 = pad) restricts to real tokens.
 */
export function hiddenSinks(pattern: tf.Tensor | number[][], opts: HiddenSinkOptions & { mask?: number[] } = {}): number[] {
  const thr = opts.threshold ?? 0.1;
  checkThreshold(thr);
  let m: number[];
  if (pattern instanceof tf.Tensor) {
    if (pattern.rank !== 2) throw new ShapeError('pattern', expectedFound('[q, k]', `[${pattern.shape}]`));
    const t = columnMean(pattern, opts.mask ? { mask: opts.mask } : {});
    m = t.arraySync() as number[];
    t.dispose();
  } else {
    m = columnMean(pattern, opts.mask ? { mask: opts.mask } : {});
  }
  const s: number[] = [];
  m.forEach((v, j) => {
    if (v > thr && (!opts.mask || opts.mask[j] === 1)) s.push(j);
  });
  return s.slice(1);
}

export interface HiddenSinkResult {
  threshold: number;
  /** perPrompt[prompt][layer][head]: relative positions of the hidden sinks. */
  perPrompt: number[][][][];
  /** positions[layer][head]: union over prompts, sorted. */
  positions: number[][][];
  /** method "hidden-sink": score = mean over prompts of the total column-mean mass of the hidden sinks; extra.count = mean number of hidden sinks; extra.frequency = fraction of prompts with at least one. */
  scores: HeadScores;
}

function aggregateHidden(alpha: number[][][][], thr: number, model?: string): HiddenSinkResult {
  const B = alpha.length;
  const L = alpha[0].length;
  const H = alpha[0][0].length;
  const perPrompt = alpha.map((a) => a.map((layer) => layer.map((m) => hiddenFromColumnMeans(m, thr))));
  const positions = grid(L, H, (l, h) => [...new Set(perPrompt.flatMap((p) => p[l][h]))].sort((x, y) => x - y));
  const mass = grid(L, H, (l, h) => alpha.reduce((s, a, b) => s + perPrompt[b][l][h].reduce((t, j) => t + a[l][h][j], 0), 0) / B);
  const count = grid(L, H, (l, h) => perPrompt.reduce((s, p) => s + p[l][h].length, 0) / B);
  const freq = grid(L, H, (l, h) => perPrompt.filter((p) => p[l][h].length > 0).length / B);
  const scores = makeHeadScores('hidden-sink', mass, { threshold: thr, rule: 'S = {j : m_j > threshold} minus its lowest index' }, {
    data: { prompts: B },
    ...(model ? { model } : {}),
    extra: { count, frequency: freq },
  });
  return { threshold: thr, perPrompt, positions, scores };
}

/** Hidden sinks per (layer, head) from per-layer patterns [batch, head, q, k]. */
export function hiddenSinksFromPatterns(patterns: tf.Tensor[], opts: HiddenSinkOptions & { mask?: MaskLike } = {}): HiddenSinkResult {
  const thr = opts.threshold ?? 0.1;
  checkThreshold(thr);
  const [B, , N] = checkPatterns(patterns);
  const mask = maskRows(opts.mask, B, N, 'mask');
  const first = firstRealIndex(mask, 'mask');
  return aggregateHidden(alphaPerPrompt(patterns, mask, first), thr);
}

/** Hidden sinks of a model on a batch of prompts (prefill patterns). */
export function hiddenSinkScores(model: AnalysisModel, tokens: TokensLike, opts: ModelRunOptions & HiddenSinkOptions = {}): HiddenSinkResult {
  const thr = opts.threshold ?? 0.1;
  checkThreshold(thr);
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const alpha: number[][][][] = [];
  forEachChunk(model, batch, patternNames(L), opts.batchSize, (get, rows) => {
    const pats = Array.from({ length: L }, (_, l) => get(actName('pattern', l)));
    alpha.push(...alphaPerPrompt(pats, rows.mask, rows.first));
  });
  return aggregateHidden(alpha, thr, modelName(model));
}
