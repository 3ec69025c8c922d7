/**
 * Attention sinks (Gu et al., "When Attention Sink Emerges", code sail-sg/Attention-Sink) with the
 * companion norms of residual states, keys and values, and hidden sinks (Yu et al., code
 * GATECH-EIC/ACT, detection only).
 *
 * Positions are relative to the first real token of each prompt (left padding is read from the
 * attention mask), so a prompt gives the same numbers alone or padded inside a batch.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName, type HookName } from '../hooks/names.js';
import { firstRealIndex, type Batch, type ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { toMatrix } from '../util/grid.js';
import {
  checkPatterns,
  checkRange,
  columnMean,
  grid,
  hostMask,
  modelName,
  patternNames,
  readOut,
  runChunks,
  type MaskInput,
  type RunOptions,
} from './attention-stats.js';

// ---------------------------------------------------------------------------------------------
// sink rates
// ---------------------------------------------------------------------------------------------

export interface SinkRateOptions {
  /** Threshold on alpha (default 0.3: eval_sink_open_source.py line 92, eval_sink_pretrain.py line 147). */
  eps?: number;
  /**
   * Key positions, 1-indexed as in the paper (k = 1 is the first token). Default 1..10, capped at the
   * longest prompt: the curve eval_sink_pretrain.py line 151 prints (metric1[:, :10]).
   */
  ks?: number[];
  /** Attention mask [batch, pos] (left padding). */
  attentionMask?: MaskInput;
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

/** Per-prompt column means at relative positions: out[prompt][layer][head][r] (one readback per layer). */
async function alphaPerPrompt(patterns: tf.Tensor[], mask: number[][], first: number[]): Promise<number[][][][]> {
  checkPatterns(patterns);
  const layers = await Promise.all(patterns.map((p) => readOut<number[][][]>(columnMean(p, { attentionMask: mask }))));
  return mask.map((_, b) => layers.map((arr) => arr[b].map((row) => row.slice(first[b]))));
}

function aggregateSinks(alpha: number[][][][], opts: SinkRateOptions): SinkRateResult {
  const eps = opts.eps ?? 0.3;
  checkRange('eps', eps, 0, 1);
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
    let hits = 0;
    let cnt = 0;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const vals = alpha.map((a) => a[l][h]).filter((a) => k - 1 < a.length).map((a) => a[k - 1]);
        hits += vals.filter((v) => v > eps).length;
        cnt += vals.length;
        alphaMean[l][h].push(vals.reduce((s, v) => s + v, 0) / vals.length);
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
 * Sink metric from per-layer patterns [batch, head, q, k] (one tensor per layer, e.g. from a cache).
 * alpha^{l,h}_k = column mean at key k (1-indexed; k = 1 = first real token);
 * Sink_k^eps = 100 * mean over (prompts, layers, heads) of 1[alpha_k > eps]
 * (eval_sink_open_source.py lines 41-49, compute_attention_sink: strict ">", mean over samples,
 * layers and heads, times 100).
 */
export async function sinkRates(patterns: tf.Tensor[], opts: SinkRateOptions = {}): Promise<SinkRateResult> {
  const [B, , N] = checkPatterns(patterns);
  const mask = await hostMask(opts.attentionMask, B, N);
  return aggregateSinks(await alphaPerPrompt(patterns, mask, firstRealIndex(mask)), opts);
}

export interface SinkScoreOptions extends RunOptions {
  eps?: number;
  ks?: number[];
}

/** Sink metric of a model on a batch of prompts (caches only the attention patterns). */
export async function sinkScores(model: ModelView, batch: Batch, opts: SinkScoreOptions = {}): Promise<SinkRateResult> {
  const L = model.cfg.n_layers;
  const { results } = await runChunks(model, batch, patternNames(L), opts, (c) =>
    alphaPerPrompt(patternNames(L).map((n) => c.cache.get(n)), c.mask, c.first),
  );
  return aggregateSinks(results.flat(), { eps: opts.eps, ks: opts.ks, model: modelName(model) });
}

// ---------------------------------------------------------------------------------------------
// companion norms
// ---------------------------------------------------------------------------------------------

/** Per-prompt L2 norms at relative positions: t is [B, N, d] or [B, N, heads, d] (then averaged over heads). */
async function normsByPrompt(t: tf.Tensor, first: number[]): Promise<number[][]> {
  if (t.rank !== 3 && t.rank !== 4) throw new ShapeError('activation', expectedFound('[batch, pos, d] or [batch, pos, head, d]', `[${t.shape}]`));
  const arr = await readOut<number[][]>(
    tf.tidy(() => {
      const n = t.toFloat().square().sum(-1).sqrt();
      return n.rank === 3 ? n.mean(-1) : n;
    }),
  );
  return arr.map((row, b) => row.slice(first[b]));
}

/** Mean over prompts per relative position (prompts shorter than r are left out). */
function meanOverPrompts(perPrompt: number[][]): { mean: number[]; counts: number[] } {
  const maxLen = Math.max(...perPrompt.map((r) => r.length));
  const mean: number[] = [];
  const counts: number[] = [];
  for (let r = 0; r < maxLen; r++) {
    const vals = perPrompt.filter((row) => r < row.length).map((row) => row[r]);
    mean.push(vals.reduce((s, v) => s + v, 0) / vals.length);
    counts.push(vals.length);
  }
  return { mean, counts };
}

/**
 * Which residual states to measure:
 * - 'hidden-states' (default): the L + 1 hidden states of HF transformers' output_hidden_states, as
 *   Gu et al. read them (eval_activations_open_source.py lines 53-59, compute_norm lines 71-82): the
 *   input to every layer (blocks.l.hook_resid_pre, l = 0..L-1) and, last, the final stream after the
 *   final norm (ln_final.hook_normalized).
 * - 'resid-pre': the L layer inputs only (tflens's earlier default).
 * - 'resid-post': the L layer outputs (blocks.l.hook_resid_post, no final norm).
 */
export type ResidualStates = 'hidden-states' | 'resid-pre' | 'resid-post';

/** Hook points of each residual-state convention (see ResidualStates). */
export function residualStateNames(nLayers: number, states: ResidualStates = 'hidden-states'): HookName[] {
  const layers = Array.from({ length: nLayers }, (_, l) => l);
  if (states === 'hidden-states') return [...layers.map((l) => actName('resid_pre', l)), 'ln_final.hook_normalized'];
  if (states === 'resid-pre') return layers.map((l) => actName('resid_pre', l));
  if (states === 'resid-post') return layers.map((l) => actName('resid_post', l));
  throw new ValueError('states', expectedFound("'hidden-states' | 'resid-pre' | 'resid-post'", states));
}

export interface ResidualNormOptions extends RunOptions {
  /** Default 'hidden-states' (L + 1 states, Gu et al.'s convention). */
  states?: ResidualStates;
}

export interface NormsResult {
  /** The hook point behind each row of `norms`. */
  names: HookName[];
  /** norms[state][r]: mean over prompts of the L2 norm at relative position r. */
  norms: number[][];
  /** counts[r]: prompts that have position r. */
  counts: number[];
}

/** Mean L2 norm of the residual states (see ResidualStates) per (state, relative position). */
export async function residualNorms(model: ModelView, batch: Batch, opts: ResidualNormOptions = {}): Promise<NormsResult> {
  const names = residualStateNames(model.cfg.n_layers, opts.states);
  const { results } = await runChunks(model, batch, names, opts, (c) => Promise.all(names.map((n) => normsByPrompt(c.cache.get(n), c.first))));
  const res = names.map((_, s) => meanOverPrompts(results.flatMap((r) => r[s])));
  return { names, norms: res.map((r) => r.mean), counts: res[0].counts };
}

export interface KeyValueNormsResult {
  /** keys[layer][r]: mean over prompts and KV heads of ||k|| at relative position r (hook_k; rotary keeps norms). */
  keys: number[][];
  /** values[layer][r]: same for ||v|| (hook_v). */
  values: number[][];
  counts: number[];
}

/**
 * Mean L2 norm of keys and values (averaged over the KV heads) per (layer, relative position):
 * compute_kv_norm of eval_activations_open_source.py lines 85-96 (norms of past_key_values, mean over
 * samples and heads). Keys are read before rotary embeddings, whose rotation keeps their norm.
 */
export async function keyValueNorms(model: ModelView, batch: Batch, opts: RunOptions = {}): Promise<KeyValueNormsResult> {
  const L = model.cfg.n_layers;
  const kNames = Array.from({ length: L }, (_, l) => actName('k', l));
  const vNames = Array.from({ length: L }, (_, l) => actName('v', l));
  const names = [...kNames, ...vNames];
  const { results } = await runChunks(model, batch, names, opts, (c) => Promise.all(names.map((n) => normsByPrompt(c.cache.get(n), c.first))));
  const per = names.map((_, s) => meanOverPrompts(results.flatMap((r) => r[s])));
  return { keys: per.slice(0, L).map((r) => r.mean), values: per.slice(L).map((r) => r.mean), counts: per[0].counts };
}

// ---------------------------------------------------------------------------------------------
// hidden sinks (ACT)
// ---------------------------------------------------------------------------------------------

export interface HiddenSinkOptions {
  /** Absolute threshold on the column mean (ACT's THRES; 0.1 in scripts/calibration.sh). */
  threshold?: number;
}

/**
 * ACT's rule on column means m (models/llama_modelling_aug.py lines 27-28): S = {j : m_j > threshold},
 * then drop its lowest index (normally BOS).
 */
function hiddenFromColumnMeans(m: number[], thr: number, real?: number[]): number[] {
  const s: number[] = [];
  m.forEach((v, j) => {
    if (v > thr && (!real || real[j] === 1)) s.push(j);
  });
  return s.slice(1);
}

/**
 * Hidden sinks of one head on one prompt (host pattern [q, k]): S = {j : m_j > threshold} with m the
 * column mean, minus its lowest index (normally BOS). Returns column indices of the given matrix.
 * `attentionMask` ([k], 0 = pad) restricts to real tokens. For tensors use hiddenSinksFromPatterns.
 */
export function hiddenSinks(pattern: number[][], opts: HiddenSinkOptions & { attentionMask?: number[] } = {}): number[] {
  const thr = opts.threshold ?? 0.1;
  checkRange('threshold', thr, 0, 1, true);
  const m = columnMean(toMatrix(pattern, 'pattern'), opts.attentionMask ? { attentionMask: opts.attentionMask } : {});
  return hiddenFromColumnMeans(m, thr, opts.attentionMask);
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
export async function hiddenSinksFromPatterns(patterns: tf.Tensor[], opts: HiddenSinkOptions & { attentionMask?: MaskInput } = {}): Promise<HiddenSinkResult> {
  const thr = opts.threshold ?? 0.1;
  checkRange('threshold', thr, 0, 1, true);
  const [B, , N] = checkPatterns(patterns);
  const mask = await hostMask(opts.attentionMask, B, N);
  return aggregateHidden(await alphaPerPrompt(patterns, mask, firstRealIndex(mask)), thr);
}

/** Hidden sinks of a model on a batch of prompts (prefill patterns). */
export async function hiddenSinkScores(model: ModelView, batch: Batch, opts: RunOptions & HiddenSinkOptions = {}): Promise<HiddenSinkResult> {
  const thr = opts.threshold ?? 0.1;
  checkRange('threshold', thr, 0, 1, true);
  const L = model.cfg.n_layers;
  const { results } = await runChunks(model, batch, patternNames(L), opts, (c) =>
    alphaPerPrompt(patternNames(L).map((n) => c.cache.get(n)), c.mask, c.first),
  );
  return aggregateHidden(results.flat(), thr, modelName(model));
}
