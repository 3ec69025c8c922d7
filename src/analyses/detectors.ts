/**
 * Head detectors, TransformerLens conventions (transformer_lens/head_detector.py; METHODS.md
 * section 9), batched over left-padded prompts.
 *
 * For one head on one prompt (A = its attention pattern on the prompt's real tokens, P a 0/1
 * detection pattern of the same shape):
 *   excludeBos            -> A[:, 0] = 0   (the first real token's column)
 *   excludeCurrentToken   -> A[i, i] = 0
 *   score = sum(A * P) / sum(A)          (TransformerLens "mul"; all real rows)
 * The head's score is the mean of the per-prompt scores (TransformerLens averages over a list of
 * prompts the same way; unlike TransformerLens, the exclude options also apply to lists).
 * A prompt on which the head puts no attention at all in the considered region (sum(A) = 0,
 * e.g. one-hot BOS attention with excludeBos) scores 0 there rather than NaN.
 *
 * Detection patterns on tokens t (relative positions, BOS = 0):
 *   prev-token       P[i][j] = 1 iff j = i - 1
 *   duplicate-token  P[i][j] = 1 iff j < i and t[j] = t[i]         (every earlier occurrence)
 *   induction        P[i][j] = 1 iff 1 <= j <= i and t[j-1] = t[i] and j - 1 < i
 *   sink             P[i][0] = 1                                    (tflens addition)
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { makeHeadScores } from '../results.js';
import type { HeadScores } from '../results.js';
import { checkPatterns, firstRealIndex, forEachChunk, grid, maskRows, modelName, patternNames, patternTensor, prepareBatch, tokenRows } from './attention-stats.js';
import type { AnalysisModel, MaskLike, ModelRunOptions, TokensLike } from './attention-stats.js';

export type DetectorKind = 'prev-token' | 'duplicate-token' | 'induction' | 'sink';
export const DETECTOR_KINDS: DetectorKind[] = ['prev-token', 'duplicate-token', 'induction', 'sink'];

/** A custom detector: a name (becomes the HeadScores method) and a 0/1 pattern builder. */
export interface CustomDetector {
  name: string;
  pattern: (tokens: number[]) => number[][];
}
export type Detector = DetectorKind | CustomDetector;

/** Detection pattern [n, n] (0/1) of a built-in kind on one prompt's real tokens. */
export function detectionPattern(kind: DetectorKind, tokens: number[]): number[][] {
  const n = tokens.length;
  const P = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  switch (kind) {
    case 'prev-token':
      for (let i = 1; i < n; i++) P[i][i - 1] = 1;
      break;
    case 'duplicate-token':
      for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) if (tokens[j] === tokens[i]) P[i][j] = 1;
      break;
    case 'induction':
      for (let i = 0; i < n; i++) for (let j = 1; j <= i; j++) if (tokens[j - 1] === tokens[i] && j - 1 < i) P[i][j] = 1;
      break;
    case 'sink':
      for (let i = 0; i < n; i++) P[i][0] = 1;
      break;
    default:
      throw new ValueError('kind', expectedFound(DETECTOR_KINDS.join(' | '), kind));
  }
  return P;
}

export interface DetectorOptions {
  excludeBos?: boolean;
  excludeCurrentToken?: boolean;
}

/**
 * TransformerLens "mul" similarity of one head's pattern [n, n] to a detection pattern [n, n]:
 * sum(A * P) / sum(A) after the exclusions (0 when sum(A) = 0).
 */
export function headSimilarity(pattern: number[][] | tf.Tensor, detection: number[][], opts: DetectorOptions = {}): number {
  const A = pattern instanceof tf.Tensor ? (pattern.rank === 2 ? (pattern.arraySync() as number[][]) : null) : pattern;
  if (!A) throw new ShapeError('pattern', expectedFound('[q, k]', `[${(pattern as tf.Tensor).shape}]`));
  patternTensor(A, 'pattern').dispose(); // validates shape and finiteness
  const n = A.length;
  if (A[0].length !== n) throw new ShapeError('pattern', expectedFound('a square [q, k] matrix', `[${n}, ${A[0].length}]`));
  if (detection.length !== n || detection.some((r) => r.length !== n)) throw new ShapeError('detection', expectedFound(`[${n}, ${n}]`, `[${detection.length}, ${detection[0]?.length}]`));
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (opts.excludeBos && j === 0) continue;
      if (opts.excludeCurrentToken && i === j) continue;
      num += A[i][j] * detection[i][j];
      den += A[i][j];
    }
  }
  return den === 0 ? 0 : num / den;
}

function detectorName(d: Detector): string {
  return typeof d === 'string' ? d : d.name;
}

function buildPattern(d: Detector, toks: number[], where: string): number[][] {
  if (typeof d === 'string') return detectionPattern(d, toks);
  if (!d || typeof d.pattern !== 'function' || typeof d.name !== 'string') throw new ValueError(where, expectedFound('a detector kind or {name, pattern}', d));
  const P = d.pattern(toks);
  const n = toks.length;
  if (!Array.isArray(P) || P.length !== n || P.some((r) => !Array.isArray(r) || r.length !== n)) {
    throw new ShapeError(`${where} (${d.name})`, expectedFound(`a [${n}, ${n}] pattern`, Array.isArray(P) ? `${P.length} rows` : typeof P));
  }
  P.forEach((r, i) =>
    r.forEach((v, j) => {
      if (!Number.isFinite(v)) throw new ValueError(`${where} (${d.name})[${i}][${j}]`, expectedFound('a finite number', v));
      if (j > i && v !== 0) throw new ValueError(`${where} (${d.name})[${i}][${j}]`, expectedFound('a lower-triangular pattern (0 above the diagonal)', v));
    }),
  );
  return P;
}

/** Per-prompt scores [prompt][layer][head] for several detectors at once. */
function scoresPerPrompt(
  patterns: tf.Tensor[],
  tokens: number[][],
  _mask: number[][], // left padding: the first real index carries it
  first: number[],
  detectors: Detector[],
  opts: DetectorOptions,
): number[][][][] {
  const [B, H, N] = checkPatterns(patterns);
  if (tokens.length !== B || tokens[0].length !== N) throw new ShapeError('tokens', expectedFound(`[${B}, ${N}] to match the patterns`, `[${tokens.length}, ${tokens[0].length}]`));
  // Built-in kinds and the weight mask are built as tensors (no [batch, q, k] JS arrays);
  // custom detectors go through their JS builder.
  const custom = detectors.map((d) => (typeof d === 'string' ? null : new Float32Array(B * N * N)));
  for (let b = 0; b < B; b++) {
    const f = first[b];
    const toks = tokens[b].slice(f);
    detectors.forEach((d, k) => {
      const buf = custom[k];
      if (!buf) return;
      const P = buildPattern(d, toks, `detectors[${k}]`);
      for (let i = f; i < N; i++) for (let j = f; j <= i; j++) buf[(b * N + i) * N + j] = P[i - f][j - f];
    });
  }
  const [Wt, ...Pt] = tf.tidy(() => {
    const tok = tf.tensor2d(tokens, [B, N], 'int32');
    const fT = tf.tensor1d(first, 'int32').reshape([B, 1, 1]);
    const iIdx = tf.range(0, N, 1, 'int32').reshape([1, N, 1]);
    const jIdx = tf.range(0, N, 1, 'int32').reshape([1, 1, N]);
    const rowReal = iIdx.greaterEqual(fT); // [B, N, 1]
    const colReal = jIdx.greaterEqual(fT); // [B, 1, N]
    const causal = jIdx.lessEqual(iIdx); // [1, N, N]
    let W = rowReal.logicalAnd(colReal).logicalAnd(causal);
    if (opts.excludeBos) W = W.logicalAnd(jIdx.notEqual(fT));
    if (opts.excludeCurrentToken) W = W.logicalAnd(jIdx.notEqual(iIdx));
    const tokI = tok.reshape([B, N, 1]);
    const built = detectors.map((d, k) => {
      let P: tf.Tensor;
      switch (d) {
        case 'prev-token':
          P = jIdx.equal(iIdx.sub(1)).logicalAnd(colReal);
          break;
        case 'duplicate-token':
          P = tokI.equal(tok.reshape([B, 1, N])).logicalAnd(jIdx.less(iIdx)).logicalAnd(colReal);
          break;
        case 'induction': {
          const prevTok = tf.concat([tf.fill([B, 1], -1, 'int32'), tok.slice([0, 0], [B, N - 1])], 1).reshape([B, 1, N]);
          P = tokI.equal(prevTok).logicalAnd(causal).logicalAnd(jIdx.sub(1).greaterEqual(fT));
          break;
        }
        case 'sink':
          P = jIdx.equal(fT).logicalAnd(iIdx.greaterEqual(0));
          break;
        default:
          return tf.tensor4d(custom[k]!, [B, 1, N, N]);
      }
      return P.logicalAnd(rowReal).toFloat().reshape([B, 1, N, N]);
    });
    return [W.toFloat().reshape([B, 1, N, N]), ...built];
  });
  // out[k][b][l][h]
  const out: number[][][][] = detectors.map(() => Array.from({ length: B }, () => [] as number[][]));
  try {
    patterns.forEach((pat) => {
      const res = tf.tidy(() => {
        const Aw = pat.toFloat().mul(Wt);
        const den = Aw.sum([2, 3]);
        const safe = tf.where(den.greater(0), den, tf.onesLike(den));
        return Pt.map((P) => Aw.mul(P).sum([2, 3]).div(safe).mul(den.greater(0).toFloat()));
      });
      res.forEach((r, k) => {
        const arr = r.arraySync() as number[][];
        for (let b = 0; b < B; b++) out[k][b].push(arr[b].slice(0, H));
      });
      tf.dispose(res);
    });
  } finally {
    Wt.dispose();
    tf.dispose(Pt);
  }
  return out;
}

function toHeadScores(name: string, per: number[][][], opts: DetectorOptions, model?: string): HeadScores {
  const B = per.length;
  const L = per[0].length;
  const H = per[0][0].length;
  const mean = grid(L, H, (l, h) => per.reduce((s, p) => s + p[l][h], 0) / B);
  const sd = grid(L, H, (l, h) => Math.sqrt(per.reduce((s, p) => s + (p[l][h] - mean[l][h]) ** 2, 0) / B));
  return makeHeadScores(name, mean, { excludeBos: !!opts.excludeBos, excludeCurrentToken: !!opts.excludeCurrentToken, measure: 'mul' }, {
    data: { prompts: B },
    ...(model ? { model } : {}),
    extra: { std: sd },
  });
}

export interface PatternDetectorOptions extends DetectorOptions {
  /** Attention mask [batch, pos] (left padding). */
  mask?: MaskLike;
  model?: string;
}

/**
 * Detector scores from per-layer patterns [batch, head, q, k] and the tokens [batch, pos] they
 * were computed on. Returns one HeadScores per detector (method = detector name), keyed by name.
 */
export function detectorScores(
  patterns: tf.Tensor[],
  tokens: TokensLike,
  detectors: Detector | Detector[],
  opts: PatternDetectorOptions = {},
): Record<string, HeadScores> {
  const list = Array.isArray(detectors) ? detectors : [detectors];
  if (list.length === 0) throw new ValueError('detectors', expectedFound('at least one detector', 'an empty list'));
  const rows = tokenRows(tokens);
  const mask = maskRows(opts.mask, rows.length, rows[0].length, 'mask');
  const first = firstRealIndex(mask, 'mask');
  const per = scoresPerPrompt(patterns, rows, mask, first, list, opts);
  const out: Record<string, HeadScores> = {};
  list.forEach((d, k) => {
    out[detectorName(d)] = toHeadScores(detectorName(d), per[k], opts, opts.model);
  });
  return out;
}

export interface ModelDetectorOptions extends DetectorOptions, ModelRunOptions {}

/** Run the model once (patterns only) and score every head against several detectors. */
export function detectHeads(
  model: AnalysisModel,
  tokens: TokensLike,
  detectors: Detector[] = DETECTOR_KINDS,
  opts: ModelDetectorOptions = {},
): Record<string, HeadScores> {
  if (detectors.length === 0) throw new ValueError('detectors', expectedFound('at least one detector', 'an empty list'));
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const per: number[][][][] = detectors.map(() => []);
  forEachChunk(model, batch, patternNames(L), opts.batchSize, (get, rows) => {
    const pats = Array.from({ length: L }, (_, l) => get(actName('pattern', l)));
    const r = scoresPerPrompt(pats, rows.tokens, rows.mask, rows.first, detectors, opts);
    r.forEach((x, k) => per[k].push(...x));
  });
  const out: Record<string, HeadScores> = {};
  detectors.forEach((d, k) => {
    out[detectorName(d)] = toHeadScores(detectorName(d), per[k], opts, modelName(model));
  });
  return out;
}

/** One detector on a model (TransformerLens detect_head, batched): a HeadScores. */
export function detectHead(model: AnalysisModel, tokens: TokensLike, detector: Detector, opts: ModelDetectorOptions = {}): HeadScores {
  return detectHeads(model, tokens, [detector], opts)[detectorName(detector)];
}
