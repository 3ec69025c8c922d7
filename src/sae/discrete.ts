/**
 * Discrete-SAE circuit identification (O'Neill & Bui; code charlieoneill11/sae-circuits).
 *
 * Each head's output on a prompt is encoded by an SAE and reduced to one integer code: the
 * argmax feature. Heads whose codes separate positive prompts (the task) from negative prompts
 * (a corrupted task) are circuit candidates:
 * - node score of head h: |P_h \ N_h|, codes seen on positives and never on negatives
 *   (optionally divided by |P_h ∪ N_h|), softmax over heads -> HeadScores "sae-node";
 * - edge score: for every ordered head pair (h1, h2), h1 != h2 (as the authors' code), the number
 *   of code pairs (c1, c2) seen on positives and never on negatives (optionally divided by
 *   #distinct positive pairs + #distinct negative pairs); pairs sorted by that count; the heads of
 *   the sorted pairs are listed (h1, h2, h1', h2', ...) and the first k entries (default
 *   floor(n_heads^2 / 2), n_heads = heads per layer, as the authors' code) counted per head;
 *   softmax over heads -> HeadScores "sae-edge".
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { deriveSeed, rng as makeRng } from '../util/random.js';
import { paperSAE, SparseAutoencoder } from './models.js';
import { trainSAE } from './train.js';
import { progress as progressBar } from '../progress.js';
import {
  collectHeadOutputsMulti,
  normaliseHeads,
  type ActivationModel,
  type HeadRef,
  type MaskInput,
  type PositionMode,
  type TokensInput,
} from './collect.js';

/** codes[example][column]: one integer code per example and head column. */
export type CodeTable = number[][];

/** Layout of code-table columns: the model's grid and the head of each column (layer-major). */
export interface HeadLayout {
  nLayers: number;
  nHeads: number;
  /** Head of each column; default every head, layer-major (column = layer * nHeads + head). */
  heads?: ReadonlyArray<HeadRef>;
}

/** Index of the first maximum of each row (numpy argmax semantics: an all-zero row gives 0). */
export function argmaxCodes(features: tf.Tensor2D | number[][]): number[] {
  if (features instanceof tf.Tensor) {
    if (features.rank !== 2) throw new ShapeError('features', expectedFound('[n, d_sae]', features.shape));
    const [n, f] = features.shape;
    const data = features.dataSync();
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < f; j++) if (data[i * f + j] > data[i * f + best]) best = j;
      out[i] = best;
    }
    return out;
  }
  return features.map((row, i) => {
    if (!Array.isArray(row) || row.length === 0) throw new ShapeError(`features[${i}]`, expectedFound('a non-empty row', row));
    let best = 0;
    for (let j = 1; j < row.length; j++) if (row[j] > row[best]) best = j;
    return best;
  });
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

function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function layoutHeads(layout: HeadLayout): Array<[number, number]> {
  const { nLayers, nHeads } = layout;
  if (!(Number.isInteger(nLayers) && nLayers > 0 && Number.isInteger(nHeads) && nHeads > 0)) {
    throw new ConfigError('layout', expectedFound('positive integers nLayers and nHeads', { nLayers, nHeads }));
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
  /** Divide |P_h \ N_h| by |P_h ∪ N_h| (authors' `normalise`, default false). */
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
  const sm = softmax(raw);
  return makeHeadScores(
    'sae-node',
    toGrid(layout, heads, sm),
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
 * counts[h1][h2] for columns h1 != h2: code pairs (c1, c2) seen together on a positive example
 * and never on a negative one (diagonal 0). With normalise, divided by the number of distinct
 * positive pairs plus distinct negative pairs of (h1, h2) (the authors' edge normalisation).
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

export interface EdgeScoreOptions {
  normalise?: boolean;
  /** Head entries taken from the sorted pair list (default floor(nHeads^2 / 2), nHeads = heads per layer). */
  k?: number;
  /**
   * Order of pairs with equal counts. 'last-first' (default) mirrors the authors' reversed
   * ascending argsort (a later flat index h1 * H + h2 first); 'first-first' the opposite.
   */
  tieOrder?: 'last-first' | 'first-first';
  model?: string;
  data?: Record<string, unknown>;
}

/** Edge scores -> HeadScores "sae-edge" (appearances in the top pairs, softmax over the listed heads). */
export function edgeScores(pos: CodeTable, neg: CodeTable, layout: HeadLayout, opts: EdgeScoreOptions = {}): HeadScores {
  const heads = layoutHeads(layout);
  checkTables(pos, neg, heads.length);
  const H = heads.length;
  const k = opts.k ?? Math.floor((layout.nHeads * layout.nHeads) / 2);
  if (!(Number.isInteger(k) && k >= 0)) throw new ConfigError('k', expectedFound('a non-negative integer', k));
  const counts = uniquePairCounts(pos, neg, { normalise: opts.normalise });
  const flat: number[] = [];
  for (let a = 0; a < H; a++) for (let b = 0; b < H; b++) flat.push(a * H + b);
  const lastFirst = (opts.tieOrder ?? 'last-first') === 'last-first';
  const val = (i: number) => counts[Math.floor(i / H)][i % H];
  flat.sort((i, j) => val(j) - val(i) || (lastFirst ? j - i : i - j));
  const appearances = new Array<number>(H).fill(0);
  let taken = 0;
  for (const i of flat) {
    for (const col of [Math.floor(i / H), i % H]) {
      if (taken >= k) break;
      appearances[col]++;
      taken++;
    }
    if (taken >= k) break;
  }
  const sm = softmax(appearances);
  let maxPair = 0;
  for (let a = 0; a < H; a++) for (let b = 0; b < H; b++) maxPair = Math.max(maxPair, counts[a][b]);
  const bestPartner = counts.map((row) => Math.max(...row));
  return makeHeadScores(
    'sae-edge',
    toGrid(layout, heads, sm),
    { normalise: !!opts.normalise, k, tieOrder: lastFirst ? 'last-first' : 'first-first', pairs: 'ordered, h1 != h2' },
    {
      model: opts.model,
      data: { nPositive: pos.length, nNegative: neg.length, maxPairCount: maxPair, ...opts.data },
      extra: {
        appearances: toGrid(layout, heads, appearances),
        bestPairCount: toGrid(layout, heads, bestPartner),
        included: toGrid(layout, heads, heads.map(() => 1)),
      },
    },
  );
}

// ------------------------------------------------------------ per-head SAEs

export interface HeadSAETrainOptions {
  epochs?: number;
  lr?: number;
  /** Remove the gradient part parallel to the unit-norm vectors (authors' hook), default true. */
  projectGradients?: boolean;
  /** Called after each head's SAE is trained. */
  onProgress?: (p: { head: number; nHeads: number; loss: number }) => void;
  /** Progress display: true (default), false, or a label. */
  progress?: boolean | string;
  /** Stop when aborted: train() returns the losses of the heads finished so far. */
  signal?: AbortSignal;
}

/**
 * One paper SAE per head (head h initialised as paperSAE(d, F, {seed: deriveSeed(seed, h)})),
 * each trained full batch on its own vectors. The heads are trained one after another: on wasm,
 * many small tensors are much faster than one batched [H, ...] tensor, and only one head's Adam
 * state is alive at a time.
 */
export class HeadSAEs {
  readonly saes: SparseAutoencoder[];

  constructor(nHeadSAEs: number, dIn: number, dSae: number, opts: { seed?: number; lambda?: number; decoderNorm?: 'feature' | 'input' } = {}) {
    if (!(Number.isInteger(nHeadSAEs) && nHeadSAEs > 0)) throw new ConfigError('nHeadSAEs', expectedFound('a positive integer', nHeadSAEs));
    const seed = opts.seed ?? 0;
    this.saes = [];
    try {
      for (let h = 0; h < nHeadSAEs; h++) this.saes.push(paperSAE(dIn, dSae, { seed: HeadSAEs.headSeed(seed, h), lambda: opts.lambda ?? 0.02, decoderNorm: opts.decoderNorm }));
    } catch (e) {
      this.saes.forEach((s) => s.dispose());
      throw e;
    }
  }

  /** Seed of head h's SAE. */
  static headSeed(seed: number, h: number): number {
    return deriveSeed(seed, h);
  }

  get nHeadSAEs(): number {
    return this.saes.length;
  }

  private check(x: tf.Tensor): void {
    const d = this.saes[0].dIn;
    if (x.rank !== 3 || x.shape[0] !== this.saes.length || x.shape[2] !== d) {
      throw new ShapeError('x', expectedFound(`[${this.saes.length}, n, ${d}]`, x.shape));
    }
  }

  private head(x: tf.Tensor3D, h: number): tf.Tensor2D {
    const [, n, d] = x.shape;
    return tf.tidy(() => tf.reshape(tf.slice(x, [h, 0, 0], [1, n, d]), [n, d]) as tf.Tensor2D);
  }

  /** Train head h's SAE on x[h] ([H, n, d]); returns each head's final loss. */
  async train(x: tf.Tensor3D, opts: HeadSAETrainOptions = {}): Promise<number[]> {
    this.check(x);
    const epochs = opts.epochs ?? 500;
    const bar = opts.progress === false ? null : progressBar(this.saes.length, { label: typeof opts.progress === 'string' ? opts.progress : `train ${this.saes.length} head SAEs` });
    const losses: number[] = [];
    try {
      for (let h = 0; h < this.saes.length; h++) {
        const l = await trainHeadSAE(this.saes[h], this.head(x, h), { epochs, lr: opts.lr, projectGradients: opts.projectGradients, signal: opts.signal }, h);
        if (l === null) break;
        losses.push(l);
        opts.onProgress?.({ head: h, nHeads: this.saes.length, loss: losses[h] });
        bar?.tick(1, { loss: losses[h] });
      }
    } finally {
      bar?.done();
    }
    return losses;
  }

  /** Integer codes (first argmax feature) [H][n]. */
  codes(x: tf.Tensor3D): number[][] {
    this.check(x);
    return this.saes.map((sae, h) => {
      const xh = this.head(x, h);
      const f = sae.encode(xh);
      xh.dispose();
      const c = argmaxCodes(f);
      f.dispose();
      return c;
    });
  }

  /** Head h's SAE (owned by this object; disposed with it). */
  sae(h: number): SparseAutoencoder {
    const s = this.saes[h];
    if (!s) throw new ValueError('h', expectedFound(`a head index in [0, ${this.saes.length})`, h));
    return s;
  }

  dispose(): void {
    this.saes.forEach((s) => s.dispose());
  }
}

/** Full-batch training of one head's SAE (disposes xh); returns the final loss on xh. */
async function trainHeadSAE(
  sae: SparseAutoencoder,
  xh: tf.Tensor2D,
  opts: { epochs: number; lr?: number; projectGradients?: boolean; signal?: AbortSignal },
  h: number,
): Promise<number | null> {
  try {
    const r = await trainSAE(sae, xh, {
      signal: opts.signal,
      epochs: opts.epochs,
      batchSize: xh.shape[0],
      lr: opts.lr,
      projectGradients: opts.projectGradients,
      progress: false,
      finalMetrics: false,
      logEvery: opts.epochs,
    });
    if (r.aborted) return null;
    const l = sae.loss(xh);
    const v = l.loss.dataSync()[0];
    tf.dispose([l.loss, l.mse, l.l1]);
    if (!Number.isFinite(v)) throw new ValueError(`head SAE ${h}`, `loss became ${v}; check the activations for NaN/Inf`);
    return v;
  } finally {
    xh.dispose();
  }
}

// ------------------------------------------------------------ pipeline

export type PromptSet = TokensInput | { tokens: TokensInput; attentionMask?: MaskInput };

export interface SAECircuitOptions {
  positive: PromptSet;
  negative: PromptSet;
  /** Heads to score (default all). */
  heads?: ReadonlyArray<HeadRef>;
  nFeatures?: number;
  lambda?: number;
  epochs?: number;
  /** Examples (drawn at random from positives ∪ negatives) the SAEs train on; default 10. */
  nTrain?: number;
  lr?: number;
  seed?: number;
  position?: PositionMode;
  /** Node and edge normalisation (default false, as the authors' main results). */
  normalise?: boolean;
  /**
   * 'per-head' (default): one SAE per head. 'shared': one SAE on all heads' vectors, as the
   * authors' code does (its input is [examples, heads, d_model]).
   */
  sharing?: 'per-head' | 'shared';
  /**
   * Unit norm of the decoder: 'feature' (default, each feature's decoder vector) or 'input' (the
   * authors' code: each input dimension's weights across features). sharing 'shared' with
   * decoderNorm 'input' is the authors' code.
   */
  decoderNorm?: 'feature' | 'input';
  /** Edge: head entries taken from the sorted pair list (default floor(n_heads^2 / 2)). */
  k?: number;
  /** Prompts per forward pass while collecting (default 16). */
  batchSize?: number;
  model?: string;
  /** Progress display while training: true (default), false, or a label. */
  progress?: boolean | string;
  /**
   * Stop early: per-head, the heads finished so far are scored (result.aborted = true, the
   * others are left out of the grids' softmax and marked extra.included = 0); shared, the SAE
   * trained so far codes every head.
   */
  signal?: AbortSignal;
  /** stage 'train': per-head, step = heads finished - 1 of totalSteps heads (loss = that head's final loss); shared, the training step. */
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

function splitPromptSet(s: PromptSet): { tokens: TokensInput; attentionMask?: MaskInput } {
  if (s instanceof tf.Tensor || Array.isArray(s)) return { tokens: s };
  if (s && typeof s === 'object' && 'tokens' in s) return s;
  throw new ValueError('prompts', expectedFound('tokens (tensor or number[][]) or {tokens, attentionMask}', typeof s));
}

/**
 * The discrete-SAE circuit pipeline: collect each head's output (mean over positions by default)
 * on positive and negative prompts, train SAEs (paper variant, 200 features, lambda 0.02, Adam
 * 1e-3, 500 full-batch epochs on 10 random examples), code every example by its argmax feature,
 * and score heads by node and edge uniqueness.
 */
export async function saeCircuitScores(model: ActivationModel, opts: SAECircuitOptions): Promise<SAECircuitResult> {
  const { n_layers: L, n_heads: H, d_model: D } = model.cfg;
  const heads = normaliseHeads(opts.heads, L, H);
  const nFeatures = opts.nFeatures ?? 200;
  const lambda = opts.lambda ?? 0.02;
  const epochs = opts.epochs ?? 500;
  const nTrain = opts.nTrain ?? 10;
  const seed = opts.seed ?? 0;
  const sharing = opts.sharing ?? 'per-head';
  if (sharing !== 'per-head' && sharing !== 'shared') throw new ConfigError('sharing', expectedFound("'per-head' or 'shared'", sharing));
  if (!(Number.isInteger(nFeatures) && nFeatures > 0)) throw new ConfigError('nFeatures', expectedFound('a positive integer', nFeatures));
  if (!(Number.isInteger(epochs) && epochs > 0)) throw new ConfigError('epochs', expectedFound('a positive integer', epochs));
  if (!(Number.isInteger(nTrain) && nTrain > 0)) throw new ConfigError('nTrain', expectedFound('a positive integer', nTrain));
  if (!(typeof lambda === 'number' && Number.isFinite(lambda) && lambda >= 0)) throw new ConfigError('lambda', expectedFound('a finite number >= 0', lambda));
  const lr = opts.lr ?? 1e-3;
  if (!(typeof lr === 'number' && Number.isFinite(lr) && lr > 0)) throw new ConfigError('lr', expectedFound('a positive number', lr));
  const pos = splitPromptSet(opts.positive);
  const neg = splitPromptSet(opts.negative);
  const collectOpts = { heads, position: opts.position ?? 'mean', batchSize: opts.batchSize };
  opts.onProgress?.({ stage: 'collect', step: 0, totalSteps: 2 });
  const xp = collectHeadOutputsMulti(model, pos.tokens, { ...collectOpts, attentionMask: pos.attentionMask });
  let xn: tf.Tensor3D | null = null;
  let all: tf.Tensor3D | null = null;
  try {
    opts.onProgress?.({ stage: 'collect', step: 1, totalSteps: 2 });
    xn = collectHeadOutputsMulti(model, neg.tokens, { ...collectOpts, attentionMask: neg.attentionMask });
    opts.onProgress?.({ stage: 'collect', step: 2, totalSteps: 2 });
    const nPos = xp.shape[0];
    const nNeg = xn.shape[0];
    const nAll = nPos + nNeg;
    if (!(Number.isInteger(nTrain) && nTrain > 0 && nTrain <= nAll)) {
      throw new ConfigError('nTrain', expectedFound(`an integer in [1, ${nAll}] (positives + negatives)`, nTrain));
    }
    const trainIndices = makeRng(seed).sample(
      Array.from({ length: nAll }, (_, i) => i),
      nTrain,
    );
    all = tf.concat([xp, xn], 0) as tf.Tensor3D; // [nAll, Hs, D]
    const Hs = heads.length;
    let codesByHead: number[][]; // [Hs][nAll]
    let finalLoss: number[];
    let aborted = false;
    const progress = (p: { step: number; totalSteps: number; loss: number }) =>
      opts.onProgress?.({ stage: 'train', step: p.step, totalSteps: p.totalSteps, loss: p.loss });
    if (sharing === 'per-head') {
      // head by head: train on the nTrain examples, code every example, dispose
      const idx = tf.tensor1d(trainIndices, 'int32');
      const bar = opts.progress === false ? null : progressBar(Hs, { label: typeof opts.progress === 'string' ? opts.progress : `SAE circuit: ${Hs} head SAEs` });
      codesByHead = [];
      finalLoss = [];
      try {
        for (let h = 0; h < Hs; h++) {
          const xAllH = tf.tidy(() => tf.reshape(tf.slice(all!, [0, h, 0], [nAll, 1, D]), [nAll, D]) as tf.Tensor2D);
          const sae = paperSAE(D, nFeatures, { seed: HeadSAEs.headSeed(seed, h), lambda, decoderNorm: opts.decoderNorm });
          try {
            const xTrain = tf.tidy(() => tf.gather(xAllH, idx) as tf.Tensor2D);
            let l: number | null = null;
            if (opts.signal?.aborted) xTrain.dispose();
            else l = await trainHeadSAE(sae, xTrain, { epochs, lr: opts.lr, signal: opts.signal }, h);
            if (l === null) {
              aborted = true;
              break;
            }
            finalLoss.push(l);
            const f = sae.encode(xAllH);
            codesByHead.push(argmaxCodes(f));
            f.dispose();
          } finally {
            sae.dispose();
            xAllH.dispose();
          }
          progress({ step: h, totalSteps: Hs, loss: finalLoss[h] });
          bar?.tick(1, { head: `${heads[h][0]}.${heads[h][1]}`, loss: finalLoss[h] });
        }
      } finally {
        bar?.done();
        idx.dispose();
      }
    } else {
      const xTrain = tf.tidy(() => tf.reshape(tf.gather(all!, tf.tensor1d(trainIndices, 'int32'), 0), [nTrain * Hs, D]) as tf.Tensor2D);
      const sae = new SparseAutoencoder({ architecture: 'paper', dIn: D, dSae: nFeatures, lambda, seed, decoderNorm: opts.decoderNorm });
      try {
        const r = await trainSAE(sae, xTrain, {
          epochs,
          batchSize: nTrain * Hs,
          lr: opts.lr,
          seed,
          finalMetrics: false,
          signal: opts.signal,
          progress: opts.progress ?? 'SAE circuit: shared SAE',
          onProgress: (p) => progress({ step: p.step, totalSteps: p.totalSteps, loss: p.loss }),
        });
        aborted = r.aborted;
        finalLoss = r.history.loss.length ? [r.history.loss[r.history.loss.length - 1]] : [];
        codesByHead = [];
        for (let h = 0; h < Hs; h++) {
          const f = tf.tidy(() => sae.encode(tf.reshape(tf.slice(all!, [0, h, 0], [nAll, 1, D]), [nAll, D]) as tf.Tensor2D));
          codesByHead.push(argmaxCodes(f));
          f.dispose();
        }
      } finally {
        sae.dispose();
        xTrain.dispose();
      }
    }
    opts.onProgress?.({ stage: 'score', step: 0, totalSteps: 1 });
    if (codesByHead.length === 0) throw new ValueError('saeCircuitScores', 'aborted (opts.signal) before any head SAE was trained');
    const doneHeads = heads.slice(0, codesByHead.length);
    const table: CodeTable = Array.from({ length: nAll }, (_, e) => codesByHead.map((c) => c[e]));
    const positive = table.slice(0, nPos);
    const negative = table.slice(nPos);
    const layout: HeadLayout = { nLayers: L, nHeads: H, heads: doneHeads };
    const data = {
      nPositive: nPos,
      nNegative: nNeg,
      nTrain,
      trainIndices,
      position: collectOpts.position,
      input: 'head output z_h W_O^h',
      ...(aborted ? { aborted: true, headsScored: doneHeads.length, headsRequested: heads.length } : {}),
    };
    const common = { nFeatures, lambda, epochs, lr, seed, sharing, decoderNorm: opts.decoderNorm ?? 'feature', sae: 'paper' };
    const node = nodeScores(positive, negative, layout, { normalise: opts.normalise, model: opts.model, data });
    node.params = { ...common, ...node.params };
    const edge = edgeScores(positive, negative, layout, { normalise: opts.normalise, k: opts.k, model: opts.model, data });
    edge.params = { ...common, ...edge.params };
    opts.onProgress?.({ stage: 'score', step: 1, totalSteps: 1 });
    return { node, edge, codes: { positive, negative }, heads: doneHeads, trainIndices, finalLoss, aborted };
  } finally {
    xp.dispose();
    xn?.dispose();
    all?.dispose();
  }
}
