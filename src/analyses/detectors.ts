/**
 * Head detectors with TransformerLens's definitions (TransformerLensOrg/TransformerLens,
 * transformer_lens/head_detector.py; line numbers below at commit 4cd36aa), batched over left-padded prompts.
 *
 * For one head on one prompt (A = its attention pattern on the prompt's real tokens, P a detection
 * pattern of the same shape, n real tokens):
 *   "mul" (default): excludeBos -> A[:, 0] = 0; excludeCurrentToken -> A[i, i] = 0;
 *                    score = sum(A * P) / sum(A)   (compute_head_attention_similarity_score, lines 250-256)
 *   "abs":           D = |A - P|, the same exclusions on D, score = 1 - round(sum(D) / n, 3)
 *                    (the same function, lines 260-269: 1 - round(mean(D) * size, 3))
 * The head's score is the mean of the per-prompt scores (detect_head on a list of prompts stacks the
 * per-prompt scores and takes the mean, lines 115-117). Two departures, both only where TransformerLens gives no
 * number or drops an argument: a prompt on which the head has no attention left after the exclusions
 * (0/0, NaN in TransformerLens) scores 0, and the exclude options and error measure apply to every
 * prompt of a list (detect_head's list branch calls itself without them, so there they are ignored).
 *
 * Detection patterns on tokens t (relative positions, BOS = 0; head_detector.py):
 *   prev-token       P[i][j] = 1 iff j = i - 1                      (get_previous_token_head_detection_pattern, lines 166-177)
 *   duplicate-token  P[i][j] = 1 iff j < i and t[j] = t[i]          (get_duplicate_token_head_detection_pattern, lines 181-197)
 *   induction        P[i][j] = 1 iff 1 <= j <= i and t[j-1] = t[i], j - 1 < i
 *                    (get_induction_head_detection_pattern, lines 201-219: the duplicate pattern shifted one column right)
 *   sink             P[i][0] = 1                                    (tflens addition)
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { firstRealIndex, readBatch, type Batch, type ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { toMatrix } from '../util/grid.js';
import { checkPatterns, grid, modelName, patternNames, readAll, runChunks, type RunOptions } from './attention-stats.js';

export type DetectorKind = 'prev-token' | 'duplicate-token' | 'induction' | 'sink';
export const DETECTOR_KINDS: DetectorKind[] = ['prev-token', 'duplicate-token', 'induction', 'sink'];

/** A custom detector: a name (becomes the HeadScores method) and a lower-triangular pattern builder. */
export interface CustomDetector {
  name: string;
  pattern: (tokens: number[]) => number[][];
}
export type Detector = DetectorKind | CustomDetector;

/** Detection pattern [n, n] (0/1) of a built-in kind on one prompt's real tokens. */
export function detectionPattern(kind: DetectorKind, tokens: number[]): number[][] {
  const n = tokens.length;
  const P = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const set = (ok: (i: number, j: number) => boolean) => P.forEach((row, i) => row.forEach((_, j) => (row[j] = j <= i && ok(i, j) ? 1 : 0)));
  switch (kind) {
    case 'prev-token':
      set((i, j) => j === i - 1);
      break;
    case 'duplicate-token':
      set((i, j) => j < i && tokens[j] === tokens[i]);
      break;
    case 'induction':
      set((i, j) => j >= 1 && j - 1 < i && tokens[j - 1] === tokens[i]);
      break;
    case 'sink':
      set((_, j) => j === 0);
      break;
    default:
      throw new ValueError('kind', expectedFound(DETECTOR_KINDS.join(' | '), kind));
  }
  return P;
}

export interface DetectorOptions {
  excludeBos?: boolean;
  excludeCurrentToken?: boolean;
  /** 'mul' (default, TransformerLens's default) or 'abs'. */
  errorMeasure?: 'mul' | 'abs';
}

/**
 * Python's round(x, digits): the nearest multiple of 10^-digits to the exact binary value of x, ties
 * to even. An exact tie needs x = odd / 2^(digits + 1); every other x is rounded by toFixed, which
 * also works on the exact value (but sends ties up).
 */
export function pyRound(x: number, digits: number): number {
  const t = x * 2 ** (digits + 1);
  if (Number.isInteger(t) && Math.abs(t % 2) === 1) {
    const lo = Math.floor(x * 10 ** digits);
    return (lo % 2 === 0 ? lo : lo + 1) / 10 ** digits;
  }
  return Number(x.toFixed(digits));
}

/**
 * TransformerLens's similarity of one head's pattern [n, n] (host numbers) to a detection pattern
 * [n, n]: "mul" = sum(A * P) / sum(A) after the exclusions (0 when nothing is left), "abs" =
 * 1 - round(sum |A - P| / n, 3) after the exclusions.
 */
export function headSimilarity(pattern: number[][], detection: number[][], opts: DetectorOptions = {}): number {
  const A = toMatrix(pattern, 'pattern');
  const n = A.length;
  if (A[0].length !== n) throw new ShapeError('pattern', expectedFound('a square [q, k] matrix', `[${n}, ${A[0].length}]`));
  const P = toMatrix(detection, 'detection');
  if (P.length !== n || P[0].length !== n) throw new ShapeError('detection', expectedFound(`[${n}, ${n}]`, `[${P.length}, ${P[0].length}]`));
  const measure = checkMeasure(opts.errorMeasure);
  let num = 0;
  let den = 0;
  let abs = 0;
  A.forEach((row, i) =>
    row.forEach((a, j) => {
      if ((opts.excludeBos && j === 0) || (opts.excludeCurrentToken && i === j)) return;
      num += a * P[i][j];
      den += a;
      abs += Math.abs(a - P[i][j]);
    }),
  );
  if (measure === 'abs') return 1 - pyRound(abs / n, 3);
  return den === 0 ? 0 : num / den;
}

function checkMeasure(m: DetectorOptions['errorMeasure']): 'mul' | 'abs' {
  const measure = m ?? 'mul';
  if (measure !== 'mul' && measure !== 'abs') throw new ValueError('errorMeasure', expectedFound("'mul' | 'abs'", m));
  return measure;
}

function detectorName(d: Detector): string {
  return typeof d === 'string' ? d : d.name;
}

function buildPattern(d: CustomDetector, toks: number[], where: string): number[][] {
  if (!d || typeof d.pattern !== 'function' || typeof d.name !== 'string') throw new ValueError(where, expectedFound('a detector kind or {name, pattern}', d));
  const n = toks.length;
  const P = toMatrix(d.pattern(toks), `${where} (${d.name})`);
  if (P.length !== n || P[0].length !== n) throw new ShapeError(`${where} (${d.name})`, expectedFound(`a [${n}, ${n}] pattern`, `[${P.length}, ${P[0].length}]`));
  P.forEach((r, i) =>
    r.forEach((v, j) => {
      if (j > i && v !== 0) throw new ValueError(`${where} (${d.name})[${i}][${j}]`, expectedFound('a lower-triangular pattern (0 above the diagonal)', v));
    }),
  );
  return P;
}

/** Detection patterns [B, 1, N, N] of every detector on left-padded tokens (real rows and columns only). */
function detectionTensors(tokens: number[][], first: number[], detectors: Detector[]): tf.Tensor[] {
  const [B, N] = [tokens.length, tokens[0].length];
  return detectors.map((d, k) => {
    if (typeof d !== 'string') {
      const buf = new Float32Array(B * N * N);
      tokens.forEach((row, b) => {
        const f = first[b];
        const P = buildPattern(d, row.slice(f), `detectors[${k}]`);
        for (let i = f; i < N; i++) for (let j = f; j <= i; j++) buf[(b * N + i) * N + j] = P[i - f][j - f];
      });
      return tf.tensor4d(buf, [B, 1, N, N]);
    }
    return tf.tidy(() => {
      const tok = tf.tensor2d(tokens, [B, N], 'int32');
      const fT = tf.tensor1d(first, 'int32').reshape([B, 1, 1]);
      const iIdx = tf.range(0, N, 1, 'int32').reshape([1, N, 1]);
      const jIdx = tf.range(0, N, 1, 'int32').reshape([1, 1, N]);
      const tokI = tok.reshape([B, N, 1]);
      let P: tf.Tensor;
      if (d === 'prev-token') P = jIdx.equal(iIdx.sub(1));
      else if (d === 'duplicate-token') P = tokI.equal(tok.reshape([B, 1, N])).logicalAnd(jIdx.less(iIdx));
      else if (d === 'induction') {
        const prevTok = tf.concat([tf.fill([B, 1], -1, 'int32'), tok.slice([0, 0], [B, N - 1])], 1).reshape([B, 1, N]);
        P = tokI.equal(prevTok).logicalAnd(jIdx.lessEqual(iIdx)).logicalAnd(jIdx.sub(1).greaterEqual(fT));
      } else if (d === 'sink') P = jIdx.equal(fT).logicalAnd(iIdx.greaterEqual(0));
      else throw new ValueError(`detectors[${k}]`, expectedFound(DETECTOR_KINDS.join(' | '), d));
      return P.logicalAnd(iIdx.greaterEqual(fT)).logicalAnd(jIdx.greaterEqual(fT)).toFloat().reshape([B, 1, N, N]);
    });
  });
}

/** Weight of each (query, key) pair: real row and column, minus the excluded BOS column / diagonal. */
function weightTensor(B: number, N: number, first: number[], opts: DetectorOptions): tf.Tensor {
  return tf.tidy(() => {
    const fT = tf.tensor1d(first, 'int32').reshape([B, 1, 1]);
    const iIdx = tf.range(0, N, 1, 'int32').reshape([1, N, 1]);
    const jIdx = tf.range(0, N, 1, 'int32').reshape([1, 1, N]);
    let W = iIdx.greaterEqual(fT).logicalAnd(jIdx.greaterEqual(fT));
    if (opts.excludeBos) W = W.logicalAnd(jIdx.notEqual(fT));
    if (opts.excludeCurrentToken) W = W.logicalAnd(jIdx.notEqual(iIdx));
    return W.toFloat().reshape([B, 1, N, N]);
  });
}

/** Per-prompt scores out[detector][prompt][layer][head] for several detectors at once. */
async function scoresPerPrompt(patterns: tf.Tensor[], tokens: number[][], first: number[], detectors: Detector[], opts: DetectorOptions): Promise<number[][][][]> {
  const [B, H, N] = checkPatterns(patterns);
  if (tokens.length !== B || tokens[0].length !== N) throw new ShapeError('batch.tokens', expectedFound(`[${B}, ${N}] to match the patterns`, `[${tokens.length}, ${tokens[0].length}]`));
  const measure = checkMeasure(opts.errorMeasure);
  const Pt = detectionTensors(tokens, first, detectors);
  const W = weightTensor(B, N, first, opts);
  try {
    const perLayer = await Promise.all(
      patterns.map((pat) => {
        const res = tf.tidy(() => {
          const A = pat.toFloat().mul(W);
          if (measure === 'abs') return Pt.map((P) => A.sub(P.mul(W)).abs().sum([2, 3]));
          const den = A.sum([2, 3]);
          const safe = tf.where(den.greater(0), den, tf.onesLike(den));
          return Pt.map((P) => A.mul(P).sum([2, 3]).div(safe).mul(den.greater(0).toFloat()));
        });
        return readAll<number[][][]>(res);
      }),
    );
    const n = first.map((f) => N - f);
    const finish = (v: number, b: number) => (measure === 'abs' ? 1 - pyRound(v / n[b], 3) : v);
    return detectors.map((_, k) => Array.from({ length: B }, (_, b) => perLayer.map((r) => r[k][b].slice(0, H).map((v) => finish(v, b)))));
  } finally {
    tf.dispose([...Pt, W]);
  }
}

function toHeadScores(name: string, per: number[][][], opts: DetectorOptions, model?: string): HeadScores {
  const B = per.length;
  const L = per[0].length;
  const H = per[0][0].length;
  const mean = grid(L, H, (l, h) => per.reduce((s, p) => s + p[l][h], 0) / B);
  const sd = grid(L, H, (l, h) => Math.sqrt(per.reduce((s, p) => s + (p[l][h] - mean[l][h]) ** 2, 0) / B));
  return makeHeadScores(name, mean, { excludeBos: !!opts.excludeBos, excludeCurrentToken: !!opts.excludeCurrentToken, measure: opts.errorMeasure ?? 'mul' }, {
    data: { prompts: B },
    ...(model ? { model } : {}),
    extra: { std: sd },
  });
}

function toRecord(detectors: Detector[], per: number[][][][], opts: DetectorOptions, model?: string): Record<string, HeadScores> {
  const out: Record<string, HeadScores> = {};
  detectors.forEach((d, k) => {
    out[detectorName(d)] = toHeadScores(detectorName(d), per[k], opts, model);
  });
  return out;
}

function detectorList(detectors: Detector | Detector[]): Detector[] {
  const list = Array.isArray(detectors) ? detectors : [detectors];
  if (list.length === 0) throw new ValueError('detectors', expectedFound('at least one detector', 'an empty list'));
  return list;
}

/**
 * Detector scores from per-layer patterns [batch, head, q, k] and the batch (tokens and mask) they
 * were computed on. Returns one HeadScores per detector (method = detector name), keyed by name.
 */
export async function detectorScores(
  patterns: tf.Tensor[],
  batch: Batch,
  detectors: Detector | Detector[],
  opts: DetectorOptions & { model?: string } = {},
): Promise<Record<string, HeadScores>> {
  const list = detectorList(detectors);
  const { ids, mask } = await readBatch(batch);
  const per = await scoresPerPrompt(patterns, ids, firstRealIndex(mask), list, opts);
  return toRecord(list, per, opts, opts.model);
}

export interface ModelDetectorOptions extends DetectorOptions, RunOptions {}

/** Run the model once (patterns only) and score every head against several detectors. */
export async function detectHeads(model: ModelView, batch: Batch, detectors: Detector[] = DETECTOR_KINDS, opts: ModelDetectorOptions = {}): Promise<Record<string, HeadScores>> {
  const list = detectorList(detectors);
  const names = patternNames(model.cfg.n_layers);
  const { results } = await runChunks(model, batch, names, opts, (c) => scoresPerPrompt(names.map((n) => c.cache.get(n)), c.ids, c.first, list, opts));
  return toRecord(list, list.map((_, k) => results.flatMap((r) => r[k])), opts, modelName(model));
}

/** One detector on a model (TransformerLens detect_head, batched): a HeadScores. */
export async function detectHead(model: ModelView, batch: Batch, detector: Detector, opts: ModelDetectorOptions = {}): Promise<HeadScores> {
  return (await detectHeads(model, batch, [detector], opts))[detectorName(detector)];
}
