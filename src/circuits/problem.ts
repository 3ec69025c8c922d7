/**
 * A patching problem: clean and corrupted token batches of equal shape (left-padded, one attention
 * mask), the position each prompt's metric reads, and a metric over the logits at those positions.
 * The metric is vectorised over patches: logits [patches, prompts, vocab] -> [patches], so a batched
 * sweep computes every patch's metric in one kernel chain and reads them back together.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { ModelView } from '../model/view.js';
import { rng } from '../util/random.js';
import { batchPositions, generateIOI, ioiCorrupted, type IOICorruptionRule, type IOIDataset, type IOITokenizer } from '../data/ioi.js';

export type VectorMetric = (logits: tf.Tensor3D) => tf.Tensor1D;

export interface PatchingProblem {
  clean: number[][];
  corrupted: number[][];
  /** Attention mask shared by both batches (1 = real token, left padding). */
  attentionMask: number[][];
  /** Per prompt, the position whose logits the metric reads. */
  readPositions: number[];
  metric: VectorMetric;
  /** What the metric is, for reports. */
  metricName: string;
  task?: string;
}

/**
 * Mean over prompts of logit(correct) - logit(wrong) at the read position (the IOI logit difference:
 * the authors' logit_diff, easy_transformer/ioi_utils.py lines 375-412, and TransformerLens's
 * get_logit_diff in demos/Activation_Patching_in_TL_Demo.ipynb).
 */
export function logitDiffMetric(correct: number[], wrong: number[], vocab: number): VectorMetric {
  if (correct.length !== wrong.length) throw new ShapeError('wrong', expectedFound(`${correct.length} tokens`, wrong.length));
  return (logits) =>
    tf.tidy(() => {
      const dir = tf.sub(tf.oneHot(tf.tensor1d(correct, 'int32'), vocab), tf.oneHot(tf.tensor1d(wrong, 'int32'), vocab)); // [N, V]
      return tf.mean(tf.sum(tf.mul(logits, dir.expandDims(0)), -1), -1) as tf.Tensor1D;
    });
}

/** Mean over prompts of the log-probability of the correct token at the read position. */
export function logProbMetric(correct: number[], vocab: number): VectorMetric {
  return (logits) =>
    tf.tidy(() => {
      const oh = tf.oneHot(tf.tensor1d(correct, 'int32'), vocab).expandDims(0);
      return tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits, -1), oh), -1), -1) as tf.Tensor1D;
    });
}

/** Left-pad rows to one length; returns the ids, attention mask and per-row offset. */
export function leftPad(rows: number[][], pad: number): { ids: number[][]; attentionMask: number[][]; offset: number[] } {
  const T = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...new Array(T - r.length).fill(pad), ...r]),
    attentionMask: rows.map((r) => [...new Array(T - r.length).fill(0), ...new Array(r.length).fill(1)]),
    offset: rows.map((r) => T - r.length),
  };
}

/** IOI patching problem: clean = the IOI prompts, corrupted = their ABC set; metric = logit(IO) - logit(S) at END. */
export function ioiProblem(model: ModelView, clean: IOIDataset, corrupted: IOIDataset): PatchingProblem {
  if (clean.tokens.length !== corrupted.tokens.length) throw new ShapeError('corrupted', expectedFound(`${clean.tokens.length} prompts`, corrupted.tokens.length));
  clean.tokens.forEach((r, i) => {
    if (r.length !== corrupted.tokens[i].length) {
      throw new ShapeError(`corrupted.tokens[${i}]`, expectedFound(`${r.length} tokens like the clean prompt`, corrupted.tokens[i].length));
    }
  });
  const pad = model.cfg.pad_token_id ?? model.bosTokenId() ?? 0;
  const c = leftPad(clean.tokens, pad);
  const T = c.ids[0].length;
  return {
    clean: c.ids,
    corrupted: leftPad(corrupted.tokens, pad).ids,
    attentionMask: c.attentionMask,
    readPositions: batchPositions(clean, 'end', T, 'left'),
    metric: logitDiffMetric(clean.ioTokens, clean.sTokens, model.cfg.d_vocab),
    metricName: 'logit diff (IO - S) at END',
    task: 'ioi',
  };
}

export interface InductionProblemOptions {
  /** Prompts (default 8). */
  n?: number;
  /** Length of the repeated block (default 8). */
  R?: number;
  /** Seed of the token draws (default 0). */
  seed?: number;
  /** Token ids are drawn from [low, high) (default the whole vocabulary; BOS is never drawn). */
  low?: number;
  high?: number;
}

/**
 * Induction patching problem on repeated random tokens: clean = BOS, A (R tokens), A[0..R-2];
 * corrupted = BOS, B, A[0..R-2] (the first half replaced); metric = logit(A[R-1]) - logit(B[R-1]) at the end.
 */
export function inductionProblem(model: ModelView, opts: InductionProblemOptions = {}): PatchingProblem {
  const n = opts.n ?? 8;
  const R = opts.R ?? 8;
  const lo = opts.low ?? 0;
  const hi = opts.high ?? model.cfg.d_vocab;
  if (!Number.isInteger(n) || n < 1) throw new ValueError('inductionProblem n', expectedFound('a positive integer', n));
  if (!Number.isInteger(R) || R < 2) throw new ValueError('inductionProblem R', expectedFound('an integer >= 2', R));
  if (hi - lo < 2 * R + 1) throw new ValueError('inductionProblem', expectedFound(`a token range [low, high) with more than 2R = ${2 * R} ids`, `[${lo}, ${hi})`));
  const r = rng(opts.seed ?? 0);
  const bos = model.bosTokenId();
  const draw = (k: number, avoid: Set<number>) => {
    const out: number[] = [];
    while (out.length < k) {
      const t = lo + Math.floor(r.next() * (hi - lo));
      if (!avoid.has(t) && !out.includes(t) && t !== bos) out.push(t);
    }
    return out;
  };
  const clean: number[][] = [];
  const corrupted: number[][] = [];
  const correct: number[] = [];
  const wrong: number[] = [];
  for (let i = 0; i < n; i++) {
    const A = draw(R, new Set());
    const B = draw(R, new Set(A));
    const head = bos === null ? [] : [bos];
    clean.push([...head, ...A, ...A.slice(0, R - 1)]);
    corrupted.push([...head, ...B, ...A.slice(0, R - 1)]);
    correct.push(A[R - 1]);
    wrong.push(B[R - 1]);
  }
  const T = clean[0].length;
  return {
    clean,
    corrupted,
    attentionMask: clean.map((row) => row.map(() => 1)),
    readPositions: new Array(n).fill(T - 1),
    metric: logitDiffMetric(correct, wrong, model.cfg.d_vocab),
    metricName: 'logit diff (repeated token - corrupted token) at the last position',
    task: 'induction',
  };
}

/** The metric (one number) of logits [N, 1, V] read at the problem's positions, as a [1] tensor. */
export function metricOfReadLogits(p: PatchingProblem, logits: tf.Tensor3D): tf.Tensor1D {
  return tf.tidy(() => p.metric(tf.reshape(logits, [1, logits.shape[0], logits.shape[2]]) as tf.Tensor3D));
}

/** Metric of a plain run on the clean or corrupted tokens (one number). */
export async function runMetric(model: ModelView, p: PatchingProblem, which: 'clean' | 'corrupted'): Promise<number> {
  const lg = await model.forward(which === 'clean' ? p.clean : p.corrupted, { attentionMask: p.attentionMask, logitPositions: p.readPositions });
  let m: tf.Tensor1D;
  try {
    m = metricOfReadLogits(p, lg);
  } finally {
    lg.dispose();
  }
  try {
    return (await m.data())[0];
  } finally {
    m.dispose();
  }
}

/** The model's tokenizer in the form the IOI generator needs. */
export function ioiTokenizerOf(model: ModelView): IOITokenizer {
  if (!model.tokenizer) throw new ValueError(`${model.name}: tokenizer`, 'IOI prompts need a tokenizer.json');
  const tk = model.tokenizer;
  const bos = model.bosTokenId();
  return { encode: (t) => tk.encode(t), decode: (ids) => tk.decode(ids), ...(bos === null ? {} : { bosTokenId: bos }) };
}

/**
 * Generate IOI prompts and their ABC corruption for a model, as a patching problem (seeded; the
 * corruption draws with `corruption` = 'redwood' by default, the authors' rule: see IOICorruptionRule).
 */
export function ioiTask(
  model: ModelView,
  opts: { n?: number; seed?: number; corruption?: IOICorruptionRule } = {},
): { problem: PatchingProblem; clean: IOIDataset; corrupted: IOIDataset } {
  const tk = ioiTokenizerOf(model);
  const clean = generateIOI(tk, { n: opts.n ?? 16, seed: opts.seed ?? 0, prependBos: model.bosTokenId() !== null });
  const corrupted = ioiCorrupted(clean, tk, { seed: (opts.seed ?? 0) + 1, rule: opts.corruption });
  return { problem: ioiProblem(model, clean, corrupted), clean, corrupted };
}
