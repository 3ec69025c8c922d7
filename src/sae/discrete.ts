/**
 * Discrete-SAE circuit identification (O'Neill & Bui; code: charlieoneill11/sae-circuits).
 *
 * Each head's output on a prompt is encoded by an SAE and reduced to one integer code, its argmax
 * feature (src/main.py line 153). Heads whose codes separate positive prompts (the task) from negative
 * prompts (a corrupted task) are circuit candidates:
 * - node score of head h (src/node.py lines 49-86, softmax at line 44): |P_h \ N_h|, codes seen on
 *   positives and never on negatives (optionally divided by |P_h ∪ N_h|), softmax over heads;
 * - edge score (src/edge.py lines 19-83 and 108-144): for every ordered head pair (h1, h2), h1 != h2,
 *   the number of code pairs seen on positives and never on negatives (optionally divided by the number
 *   of distinct positive plus distinct negative pairs); all H x H entries (the diagonal stays 0) ranked
 *   by `np.argsort(flat)[::-1]` (numpy's introsort, reproduced exactly in argsort.ts, ties included); the
 *   heads of the ranked pairs listed (h1, h2, h1', h2', ...), the first k entries counted per head
 *   (k = H^2 // 2 with H = all heads scored, src/main.py line 182), softmax over heads.
 *
 * Set-up (src/main.py lines 129-136, experiments/main_results.py lines 40-47): by default one SAE shared
 * by all heads, trained on the [examples, heads, d_model] outputs of 10 random prompts (full batch, 500
 * epochs, Adam 1e-3, 200 features, lambda 0.02), its decoder normalised per input dimension (the torch
 * decoder weight [d_model, features] normalised along its last axis, src/sae.py line 185). The paper's
 * text describes one SAE per head with unit-norm feature vectors: setup 'paper-text'.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { deriveSeed, rng as makeRng } from '../util/random.js';
import { progress as progressBar } from '../progress.js';
import type { Batch, ModelView } from '../model/view.js';
import { paperSAE, type SparseAutoencoder } from './models.js';
import { trainSAE } from './train.js';
import { numpyArgsort } from './argsort.js';
import { collectHeadOutputs, normaliseHeads, type CollectHeadsOptions, type HeadRef } from './collect.js';

/** codes[example][column]: one integer code per example and head column. */
export type CodeTable = number[][];

/** Layout of code-table columns: the model's grid and the head of each column (layer-major). */
export interface HeadLayout {
  nLayers: number;
  nHeads: number;
  /** Head of each column; default every head, layer-major (column = layer * nHeads + head). */
  heads?: ReadonlyArray<HeadRef>;
}

/** Index of the first maximum of each row (numpy's argmax: an all-zero row gives 0). */
export function argmaxCodes(features: number[][]): number[] {
  return features.map((row, i) => {
    if (!Array.isArray(row) || row.length === 0) throw new ShapeError(`features[${i}]`, expectedFound('a non-empty row', row));
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    return best;
  });
}

/** First argmax of each row, on the device (ties resolved to the lowest index on every backend). */
function firstArgmax(f: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const F = f.shape[1];
    const isMax = tf.cast(tf.equal(f, tf.max(f, 1, true)), 'float32');
    const iota = tf.range(0, F, 1, 'float32');
    // index where the row is maximal, F elsewhere; the smallest is the first maximum
    return tf.cast(tf.min(tf.add(tf.mul(isMax, tf.sub(iota, F)), F), 1), 'int32') as tf.Tensor1D;
  });
}

/** Rows encoded per pass when coding (bounds the [rows, features] activations held at once). */
const CODE_ROWS = 16384;

/** Codes on the device: the first argmax feature of the SAE's activations for each row of x. */
function codesOnDevice(sae: SparseAutoencoder, x: tf.Tensor2D): tf.Tensor1D {
  const n = x.shape[0];
  const parts: tf.Tensor1D[] = [];
  for (let s = 0; s < n; s += CODE_ROWS) {
    parts.push(tf.tidy(() => firstArgmax(sae.encode(tf.slice(x, [s, 0], [Math.min(CODE_ROWS, n - s), x.shape[1]])))));
  }
  if (parts.length === 1) return parts[0];
  const out = tf.concat(parts) as tf.Tensor1D;
  tf.dispose(parts);
  return out;
}

/** The integer code of each row of x [n, d_in]: the SAE's first argmax feature (one readback). */
export async function saeCodes(sae: SparseAutoencoder, x: tf.Tensor2D): Promise<number[]> {
  const c = codesOnDevice(sae, x);
  try {
    return Array.from(await c.data());
  } finally {
    c.dispose();
  }
}

function checkTables(pos: CodeTable, neg: CodeTable, nCols: number): void {
  for (const [name, t] of [
    ['positive', pos],
    ['negative', neg],
  ] as const) {
    if (!Array.isArray(t) || t.length === 0) throw new ShapeError(`${name} codes`, expectedFound('at least one example', Array.isArray(t) ? 0 : typeof t));
    t.forEach((row, i) => {
      if (!Array.isArray(row) || row.length !== nCols) {
        throw new ShapeError(`${name} codes[${i}]`, expectedFound(`${nCols} codes (one per head)`, Array.isArray(row) ? row.length : typeof row));
      }
      row.forEach((c, j) => {
        if (!(Number.isInteger(c) && c >= 0)) throw new ValueError(`${name} codes[${i}][${j}]`, expectedFound('a non-negative integer code', c));
      });
    });
  }
}

/** Softmax (max subtracted; the authors' edge softmax, src/edge.py line 87, omits that and overflows past exp(709)). */
function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function layoutHeads(layout: HeadLayout): Array<[number, number]> {
  const { nLayers, nHeads } = layout;
  if (!(Number.isInteger(nLayers) && nLayers > 0 && Number.isInteger(nHeads) && nHeads > 0)) {
    throw new ConfigError('layout', expectedFound('positive integers nLayers and nHeads', JSON.stringify({ nLayers, nHeads })));
  }
  return normaliseHeads(layout.heads, nLayers, nHeads);
}

function toGrid(layout: HeadLayout, heads: Array<[number, number]>, values: number[], fill = 0): number[][] {
  const g = Array.from({ length: layout.nLayers }, () => new Array<number>(layout.nHeads).fill(fill));
  heads.forEach(([l, h], i) => (g[l][h] = values[i]));
  return g;
}

export interface UniqueCodeCounts {
  /** |P_h \ N_h| per column. */
  uniquePositive: number[];
  /** |N_h \ P_h| per column. */
  uniqueNegative: number[];
  /** |P_h ∪ N_h| per column. */
  union: number[];
}

/** Per head column: codes only on positives, only on negatives, and all distinct codes. */
export function uniqueCodeCounts(pos: CodeTable, neg: CodeTable): UniqueCodeCounts {
  const nCols = pos[0]?.length ?? 0;
  checkTables(pos, neg, nCols);
  const res: UniqueCodeCounts = { uniquePositive: [], uniqueNegative: [], union: [] };
  for (let c = 0; c < nCols; c++) {
    const P = new Set(pos.map((r) => r[c]));
    const N = new Set(neg.map((r) => r[c]));
    let up = 0;
    for (const v of P) if (!N.has(v)) up++;
    let un = 0;
    for (const v of N) if (!P.has(v)) un++;
    res.uniquePositive.push(up);
    res.uniqueNegative.push(un);
    res.union.push(new Set([...P, ...N]).size);
  }
  return res;
}

export interface NodeScoreOptions {
  /** Divide |P_h \ N_h| by |P_h ∪ N_h| (authors' `normalise`, default false as their main results). */
  normalise?: boolean;
  model?: string;
  data?: Record<string, unknown>;
}

/** Node scores -> HeadScores "sae-node" (softmax over the listed heads; other heads score 0, extra.included = 0). */
export function nodeScores(pos: CodeTable, neg: CodeTable, layout: HeadLayout, opts: NodeScoreOptions = {}): HeadScores {
  const heads = layoutHeads(layout);
  checkTables(pos, neg, heads.length);
  const u = uniqueCodeCounts(pos, neg);
  const raw = u.uniquePositive.map((v, i) => (opts.normalise ? v / u.union[i] : v));
  return makeHeadScores(
    'sae-node',
    toGrid(layout, heads, softmax(raw)),
    { normalise: !!opts.normalise, softmax: 'over listed heads' },
    {
      model: opts.model,
      data: { nPositive: pos.length, nNegative: neg.length, ...opts.data },
      extra: {
        raw: toGrid(layout, heads, raw),
        uniquePositive: toGrid(layout, heads, u.uniquePositive),
        uniqueNegative: toGrid(layout, heads, u.uniqueNegative),
        union: toGrid(layout, heads, u.union),
        included: toGrid(layout, heads, heads.map(() => 1)),
      },
    },
  );
}

/**
 * counts[h1][h2] for columns h1 != h2: code pairs (c1, c2) seen together on a positive example and
 * never on a negative one (diagonal 0). With normalise, divided by the number of distinct positive
 * pairs plus distinct negative pairs of (h1, h2) (the authors' edge normalisation).
 */
export function uniquePairCounts(pos: CodeTable, neg: CodeTable, opts: { normalise?: boolean } = {}): number[][] {
  const H = pos[0]?.length ?? 0;
  checkTables(pos, neg, H);
  let maxCode = 0;
  for (const t of [pos, neg]) for (const r of t) for (const c of r) maxCode = Math.max(maxCode, c);
  const base = maxCode + 1;
  const out = Array.from({ length: H }, () => new Array<number>(H).fill(0));
  for (let a = 0; a < H; a++) {
    for (let b = a + 1; b < H; b++) {
      const P = new Set(pos.map((r) => r[a] * base + r[b]));
      const N = new Set(neg.map((r) => r[a] * base + r[b]));
      let u = 0;
      for (const v of P) if (!N.has(v)) u++;
      const val = opts.normalise ? (P.size + N.size > 0 ? u / (P.size + N.size) : 0) : u;
      out[a][b] = val;
      out[b][a] = val; // (c2, c1) on (h2, h1) is the same set, transposed
    }
  }
  return out;
}

/**
 * Order of pairs with equal counts in the edge ranking:
 * - 'numpy' (default): `np.argsort(flat)[::-1]` with numpy's default (introsort) argsort, as the
 *   authors' code; see argsort.ts for which numpy builds sort this way;
 * - 'last-first': a stable sort reversed (`np.argsort(flat, kind='stable')[::-1]`), a later flat index
 *   h1 * H + h2 first;
 * - 'first-first': descending with an earlier flat index first.
 */
export type EdgeTieOrder = 'numpy' | 'last-first' | 'first-first';

export interface EdgeScoreOptions {
  normalise?: boolean;
  /** Head entries taken from the ranked pair list (default floor(H^2 / 2), H = the number of heads scored). */
  k?: number;
  tieOrder?: EdgeTieOrder;
  model?: string;
  data?: Record<string, unknown>;
}

/** Flat indices a * H + b of the H x H counts, highest first, ties ordered by `tie`. */
function rankPairs(counts: number[][], tie: EdgeTieOrder): number[] {
  const flat = counts.flat();
  if (tie === 'numpy') return Array.from(numpyArgsort(flat)).reverse();
  const idx = flat.map((_, i) => i);
  return idx.sort((i, j) => flat[j] - flat[i] || (tie === 'last-first' ? j - i : i - j));
}

/** Edge scores -> HeadScores "sae-edge" (appearances in the top pairs, softmax over the listed heads). */
export function edgeScores(pos: CodeTable, neg: CodeTable, layout: HeadLayout, opts: EdgeScoreOptions = {}): HeadScores {
  const heads = layoutHeads(layout);
  checkTables(pos, neg, heads.length);
  const H = heads.length;
  const k = opts.k ?? Math.floor((H * H) / 2);
  if (!(Number.isInteger(k) && k >= 0)) throw new ConfigError('k', expectedFound('a non-negative integer', k));
  const tie = opts.tieOrder ?? 'numpy';
  if (!['numpy', 'last-first', 'first-first'].includes(tie)) throw new ConfigError('tieOrder', expectedFound("'numpy', 'last-first' or 'first-first'", tie));
  const counts = uniquePairCounts(pos, neg, { normalise: opts.normalise });
  const entries = rankPairs(counts, tie).flatMap((i) => [Math.floor(i / H), i % H]);
  const appearances = new Array<number>(H).fill(0);
  for (const col of entries.slice(0, k)) appearances[col]++;
  const bestPartner = counts.map((row) => Math.max(...row));
  return makeHeadScores(
    'sae-edge',
    toGrid(layout, heads, softmax(appearances)),
    { normalise: !!opts.normalise, k, tieOrder: tie, pairs: 'ordered, h1 != h2' },
    {
      model: opts.model,
      data: { nPositive: pos.length, nNegative: neg.length, maxPairCount: Math.max(...bestPartner), ...opts.data },
      extra: {
        appearances: toGrid(layout, heads, appearances),
        bestPairCount: toGrid(layout, heads, bestPartner),
        included: toGrid(layout, heads, heads.map(() => 1)),
      },
    },
  );
}

// ------------------------------------------------------------ SAEs on head outputs

/** Head outputs of the positive and negative prompts, [n, heads, d_model] each, heads layer-major. */
export interface CircuitActivations {
  positive: tf.Tensor3D;
  negative: tf.Tensor3D;
  heads: Array<[number, number]>;
  nLayers: number;
  nHeads: number;
}

/**
 * Collect the head outputs of positive and negative prompts once (mean over real positions by
 * default, as the authors), to score them under many seeds. Dispose the two tensors when done.
 */
export async function collectCircuitActivations(model: ModelView, positive: Batch, negative: Batch, opts: CollectHeadsOptions = {}): Promise<CircuitActivations> {
  const { n_layers: nLayers, n_heads: nHeads } = model.cfg;
  const heads = normaliseHeads(opts.heads, nLayers, nHeads);
  const pos = await collectHeadOutputs(model, positive, { ...opts, heads });
  try {
    const neg = await collectHeadOutputs(model, negative, { ...opts, heads });
    return { positive: pos, negative: neg, heads, nLayers, nHeads };
  } catch (e) {
    pos.dispose();
    throw e;
  }
}

/**
 * 'authors-code' (default): one SAE shared by all heads, decoder normalised per input dimension.
 * 'paper-text': one SAE per head (head h seeded deriveSeed(seed, h)), unit-norm feature vectors.
 */
export type SAESetup = 'authors-code' | 'paper-text';

export interface SAECircuitOptions {
  setup?: SAESetup;
  /** Overrides the set-up's sharing: one SAE for all heads ('shared') or one per head. */
  sharing?: 'shared' | 'per-head';
  /** Overrides the set-up's decoder norm: per input dimension ('input') or per feature ('feature'). */
  decoderNorm?: 'input' | 'feature';
  /** SAE features (default 200). */
  nFeatures?: number;
  /** Sparsity coefficient (default 0.02). */
  lambda?: number;
  /** Full-batch epochs (default 500). */
  epochs?: number;
  /** Examples (drawn at random from positives ∪ negatives) the SAEs train on; default 10. */
  nTrain?: number;
  /** Adam learning rate (default 1e-3). */
  lr?: number;
  seed?: number;
  /** Node and edge normalisation (default false, as the authors' main results). */
  normalise?: boolean;
  /** Edge: head entries taken from the ranked pair list (default floor(H^2 / 2), H = heads scored). */
  k?: number;
  tieOrder?: EdgeTieOrder;
  model?: string;
  /** Progress display while training: true (default), false, or a label. */
  progress?: boolean | string;
  /**
   * Stop early: per head, the heads finished so far are scored (result.aborted = true, the others are
   * left out of the grids' softmax and marked extra.included = 0); shared, the SAE trained so far codes
   * every head.
   */
  signal?: AbortSignal;
  /**
   * stage 'train': per head, step = heads finished - 1 of totalSteps heads (loss = that head's final
   * loss); shared, the training's log steps (which then reads the losses back at each of them).
   */
  onProgress?: (p: { stage: 'collect' | 'train' | 'score'; step: number; totalSteps: number; loss?: number }) => void;
}

export interface SAECircuitResult {
  node: HeadScores;
  edge: HeadScores;
  codes: { positive: CodeTable; negative: CodeTable };
  /** Head of each code column, layer-major. */
  heads: Array<[number, number]>;
  /** Indices of the SAE training examples in [positives..., negatives...]. */
  trainIndices: number[];
  /** Final training loss of each head's SAE (one entry when shared). */
  finalLoss: number[];
  /** True when opts.signal stopped the run early. */
  aborted: boolean;
}

interface Resolved {
  setup: SAESetup;
  sharing: 'shared' | 'per-head';
  decoderNorm: 'input' | 'feature';
  nFeatures: number;
  lambda: number;
  epochs: number;
  nTrain: number;
  lr: number;
  seed: number;
}

function resolve(opts: SAECircuitOptions): Resolved {
  const setup = opts.setup ?? 'authors-code';
  if (setup !== 'authors-code' && setup !== 'paper-text') throw new ConfigError('setup', expectedFound("'authors-code' or 'paper-text'", setup));
  const sharing = opts.sharing ?? (setup === 'authors-code' ? 'shared' : 'per-head');
  if (sharing !== 'shared' && sharing !== 'per-head') throw new ConfigError('sharing', expectedFound("'shared' or 'per-head'", sharing));
  const decoderNorm = opts.decoderNorm ?? (setup === 'authors-code' ? 'input' : 'feature');
  if (decoderNorm !== 'input' && decoderNorm !== 'feature') throw new ConfigError('decoderNorm', expectedFound("'input' or 'feature'", decoderNorm));
  const r = { setup, sharing, decoderNorm, nFeatures: opts.nFeatures ?? 200, lambda: opts.lambda ?? 0.02, epochs: opts.epochs ?? 500, nTrain: opts.nTrain ?? 10, lr: opts.lr ?? 1e-3, seed: opts.seed ?? 0 };
  for (const key of ['nFeatures', 'epochs', 'nTrain'] as const) {
    if (!(Number.isInteger(r[key]) && r[key] > 0)) throw new ConfigError(key, expectedFound('a positive integer', r[key]));
  }
  if (!(Number.isFinite(r.lambda) && r.lambda >= 0)) throw new ConfigError('lambda', expectedFound('a finite number >= 0', r.lambda));
  if (!(Number.isFinite(r.lr) && r.lr > 0)) throw new ConfigError('lr', expectedFound('a positive number', r.lr));
  return r;
}

function checkActivations(acts: CircuitActivations): number {
  const { positive: p, negative: n, heads } = acts;
  for (const [name, t] of [
    ['positive', p],
    ['negative', n],
  ] as const) {
    if (!(t instanceof tf.Tensor) || t.rank !== 3 || t.shape[1] !== heads.length || t.shape[2] !== p.shape[2]) {
      throw new ShapeError(`activations.${name}`, expectedFound(`[n, ${heads.length}, d_model]`, t instanceof tf.Tensor ? t.shape : typeof t));
    }
  }
  return p.shape[2];
}

/** One head's rows [n, D] of a [n, H, D] tensor. */
function headRows(x: tf.Tensor3D, h: number): tf.Tensor2D {
  const [n, , D] = x.shape;
  return tf.tidy(() => tf.reshape(tf.slice(x, [0, h, 0], [n, 1, D]), [n, D]) as tf.Tensor2D);
}

interface CodesRun {
  /** Codes [nAll * heads done], example-major (row e, column h at e * H + h), on the device. */
  codes: tf.Tensor1D;
  headsDone: number;
  finalLoss: number[];
  aborted: boolean;
}

const lastLoss = (h: { loss: number[] }) => h.loss[h.loss.length - 1];

/** The authors' set-up: one SAE on the training examples' outputs of every head; codes of all heads. */
async function sharedCodes(all: tf.Tensor3D, trainIdx: tf.Tensor1D, r: Resolved, opts: SAECircuitOptions): Promise<CodesRun> {
  const [nAll, H, D] = all.shape;
  const xTrain = tf.tidy(() => tf.reshape(tf.gather(all, trainIdx, 0), [r.nTrain * H, D]) as tf.Tensor2D);
  const sae = paperSAE(D, r.nFeatures, { seed: r.seed, lambda: r.lambda, decoderNorm: r.decoderNorm });
  try {
    const res = await trainSAE(sae, xTrain, {
      epochs: r.epochs,
      batchSize: r.nTrain * H,
      lr: r.lr,
      seed: r.seed,
      finalMetrics: false,
      signal: opts.signal,
      progress: opts.progress === undefined ? 'SAE circuit: shared SAE' : opts.progress,
      logEvery: opts.onProgress ? undefined : r.epochs,
      onProgress: opts.onProgress && ((p) => opts.onProgress!({ stage: 'train', step: p.step, totalSteps: p.totalSteps, loss: p.loss })),
    });
    const codes = tf.tidy(() => codesOnDevice(sae, tf.reshape(all, [nAll * H, D]) as tf.Tensor2D));
    return { codes, headsDone: H, finalLoss: res.history.loss.length ? [lastLoss(res.history)] : [], aborted: res.aborted };
  } finally {
    sae.dispose();
    xTrain.dispose();
  }
}

/** The paper's text: one SAE per head, trained on that head's outputs of the training examples. */
async function perHeadCodes(all: tf.Tensor3D, trainIdx: tf.Tensor1D, r: Resolved, heads: Array<[number, number]>, opts: SAECircuitOptions): Promise<CodesRun> {
  const [, H, D] = all.shape;
  const perHead: tf.Tensor1D[] = [];
  const finalLoss: number[] = [];
  let aborted = false;
  const bar = opts.progress === false ? null : progressBar(H, { label: typeof opts.progress === 'string' ? opts.progress : `SAE circuit: ${H} head SAEs` });
  try {
    for (let h = 0; h < H; h++) {
      if (opts.signal?.aborted) {
        aborted = true;
        break;
      }
      const xAll = headRows(all, h);
      const xTrain = tf.tidy(() => tf.gather(xAll, trainIdx) as tf.Tensor2D);
      const sae = paperSAE(D, r.nFeatures, { seed: deriveSeed(r.seed, h), lambda: r.lambda, decoderNorm: r.decoderNorm });
      try {
        const res = await trainSAE(sae, xTrain, { epochs: r.epochs, batchSize: r.nTrain, lr: r.lr, seed: r.seed, finalMetrics: false, signal: opts.signal, progress: false, logEvery: r.epochs });
        if (res.aborted) {
          aborted = true;
          break;
        }
        finalLoss.push(lastLoss(res.history));
        perHead.push(codesOnDevice(sae, xAll));
      } finally {
        sae.dispose();
        tf.dispose([xAll, xTrain]);
      }
      opts.onProgress?.({ stage: 'train', step: h, totalSteps: H, loss: finalLoss[h] });
      bar?.tick(1, { head: `${heads[h][0]}.${heads[h][1]}`, loss: finalLoss[h] });
    }
    const codes = tf.tidy(() => (perHead.length ? tf.reshape(tf.stack(perHead, 1), [-1]) : tf.zeros([0], 'int32')) as tf.Tensor1D);
    return { codes, headsDone: perHead.length, finalLoss, aborted };
  } finally {
    bar?.done();
    tf.dispose(perHead);
  }
}

/**
 * The SAE part of the method on collected head outputs: train the SAE(s) on nTrain random examples,
 * code every example and head, and score the heads (node and edge). The activations stay the
 * caller's. The training loop stays on the device; codes are read back once.
 */
export async function scoreCircuitActivations(acts: CircuitActivations, opts: SAECircuitOptions = {}): Promise<SAECircuitResult> {
  const r = resolve(opts);
  checkActivations(acts);
  const nPos = acts.positive.shape[0];
  const nAll = nPos + acts.negative.shape[0];
  if (r.nTrain > nAll) throw new ConfigError('nTrain', expectedFound(`an integer in [1, ${nAll}] (positives + negatives)`, r.nTrain));
  const trainIndices = makeRng(r.seed).sample(
    Array.from({ length: nAll }, (_, i) => i),
    r.nTrain,
  );
  const all = tf.concat([acts.positive, acts.negative], 0) as tf.Tensor3D;
  const trainIdx = tf.tensor1d(trainIndices, 'int32');
  let run: CodesRun;
  try {
    run = r.sharing === 'shared' ? await sharedCodes(all, trainIdx, r, opts) : await perHeadCodes(all, trainIdx, r, acts.heads, opts);
  } finally {
    tf.dispose([all, trainIdx]);
  }
  const flat = await run.codes.data();
  run.codes.dispose();
  opts.onProgress?.({ stage: 'score', step: 0, totalSteps: 1 });
  if (run.headsDone === 0) throw new ValueError('saeCircuitScores', 'aborted (opts.signal) before any head SAE was trained');
  const doneHeads = acts.heads.slice(0, run.headsDone);
  const table: CodeTable = Array.from({ length: nAll }, (_, e) => Array.from(flat.subarray(e * run.headsDone, (e + 1) * run.headsDone)));
  const positive = table.slice(0, nPos);
  const negative = table.slice(nPos);
  const layout: HeadLayout = { nLayers: acts.nLayers, nHeads: acts.nHeads, heads: doneHeads };
  const data = {
    nPositive: nPos,
    nNegative: nAll - nPos,
    nTrain: r.nTrain,
    trainIndices,
    input: 'head output z_h W_O^h',
    ...(run.aborted ? { aborted: true, headsScored: doneHeads.length, headsRequested: acts.heads.length } : {}),
  };
  const common = { ...r, sae: 'paper' };
  const node = nodeScores(positive, negative, layout, { normalise: opts.normalise, model: opts.model, data });
  node.params = { ...common, ...node.params };
  const edge = edgeScores(positive, negative, layout, { normalise: opts.normalise, k: opts.k, tieOrder: opts.tieOrder, model: opts.model, data });
  edge.params = { ...common, ...edge.params };
  opts.onProgress?.({ stage: 'score', step: 1, totalSteps: 1 });
  return { node, edge, codes: { positive, negative }, heads: doneHeads, trainIndices, finalLoss: run.finalLoss, aborted: run.aborted };
}

/**
 * The discrete-SAE circuit pipeline: collect each head's output (mean over real positions by default)
 * on positive and negative prompts, then scoreCircuitActivations (the authors' set-up by default:
 * one shared SAE, 200 features, lambda 0.02, Adam 1e-3, 500 full-batch epochs on 10 random examples).
 * To run many seeds, collect once with collectCircuitActivations and call scoreCircuitActivations.
 */
export async function saeCircuitScores(
  model: ModelView,
  positive: Batch,
  negative: Batch,
  opts: SAECircuitOptions & CollectHeadsOptions = {},
): Promise<SAECircuitResult> {
  resolve(opts); // bad options fail before the model runs
  opts.onProgress?.({ stage: 'collect', step: 0, totalSteps: 1 });
  const acts = await collectCircuitActivations(model, positive, negative, opts);
  opts.onProgress?.({ stage: 'collect', step: 1, totalSteps: 1 });
  try {
    const res = await scoreCircuitActivations(acts, { ...opts, model: opts.model ?? model.name });
    const position = opts.position ?? 'mean';
    res.node.data = { ...res.node.data, position };
    res.edge.data = { ...res.edge.data, position };
    return res;
  } finally {
    tf.dispose([acts.positive, acts.negative]);
  }
}
