/**
 * A patching problem: clean and corrupted token batches of equal shape (left-padded, one mask),
 * the position each prompt's metric reads, and a metric over the logits at those positions.
 * The metric is vectorised over patches: logits [patches, prompts, vocab] -> [patches].
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookedTransformer } from '../model/hooked.js';
import { runSync, type Steps } from '../backend/readback.js';
import { batchPositions, generateIOI, ioiCorrupted, type IOIDataset, type IOITokenizer } from '../data/ioi.js';

export type VectorMetric = (logits: tf.Tensor3D) => tf.Tensor1D;

export interface PatchingProblem {
  clean: number[][];
  corrupted: number[][];
  /** Shared attention mask (1 = real token); all ones when absent. */
  mask: number[][];
  /** Per prompt, the position whose logits the metric reads. */
  readPositions: number[];
  metric: VectorMetric;
  /** What the metric is, for reports. */
  metricName: string;
  task?: string;
}

/** Mean over prompts of logit(correct) - logit(wrong) at the read position. */
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

/** Left-pad rows to one length; returns the ids, mask and per-row offset. */
export function leftPad(rows: number[][], pad: number): { ids: number[][]; mask: number[][]; offset: number[] } {
  const T = Math.max(...rows.map((r) => r.length));
  return {
    ids: rows.map((r) => [...new Array(T - r.length).fill(pad), ...r]),
    mask: rows.map((r) => [...new Array(T - r.length).fill(0), ...new Array(r.length).fill(1)]),
    offset: rows.map((r) => T - r.length),
  };
}

/** IOI patching problem: clean = the IOI prompts, corrupted = the ABC set; metric = logit(IO) - logit(S) at END. */
export function ioiProblem(model: HookedTransformer, clean: IOIDataset, corrupted: IOIDataset): PatchingProblem {
  if (clean.tokens.length !== corrupted.tokens.length) throw new ShapeError('corrupted', expectedFound(`${clean.tokens.length} prompts`, corrupted.tokens.length));
  clean.tokens.forEach((r, i) => {
    if (r.length !== corrupted.tokens[i].length) {
      throw new ShapeError(`corrupted.tokens[${i}]`, expectedFound(`${r.length} tokens like the clean prompt`, corrupted.tokens[i].length));
    }
  });
  const pad = model.cfg.pad_token_id ?? model.bosTokenId() ?? 0;
  const c = leftPad(clean.tokens, pad);
  const k = leftPad(corrupted.tokens, pad);
  const T = c.ids[0].length;
  return {
    clean: c.ids,
    corrupted: k.ids,
    mask: c.mask,
    readPositions: batchPositions(clean, 'end', T, 'left'),
    metric: logitDiffMetric(clean.ioTokens, clean.sTokens, model.cfg.d_vocab),
    metricName: 'logit diff (IO - S) at END',
    task: 'ioi',
  };
}

/**
 * Induction patching problem on repeated random tokens: clean = BOS, A (R tokens), A[0..R-2];
 * corrupted = BOS, B, A[0..R-2] (the first half replaced); metric = logit(A[R-1]) - logit(B[R-1]) at the end.
 */
export function inductionProblem(
  model: HookedTransformer,
  opts: { n?: number; R?: number; seed?: number; low?: number; high?: number } = {},
  rand: () => number,
): PatchingProblem {
  const n = opts.n ?? 8;
  const R = opts.R ?? 8;
  const lo = opts.low ?? 0;
  const hi = opts.high ?? model.cfg.d_vocab;
  if (hi - lo < 2 * R) throw new ValueError('inductionProblem', `vocabulary range [${lo}, ${hi}) too small for R = ${R}`);
  const bos = model.bosTokenId();
  const draw = (k: number, avoid: Set<number>) => {
    const out: number[] = [];
    while (out.length < k) {
      const t = lo + Math.floor(rand() * (hi - lo));
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
    mask: clean.map((r) => r.map(() => 1)),
    readPositions: new Array(n).fill(T - 1),
    metric: logitDiffMetric(correct, wrong, model.cfg.d_vocab),
    metricName: 'logit diff (repeated token - corrupted token) at the last position',
    task: 'induction',
  };
}

/** Metric of a plain run on clean or corrupted tokens (one number), as readback steps. */
export function* runMetricSteps(model: HookedTransformer, p: PatchingProblem, which: 'clean' | 'corrupted'): Steps<number> {
  const out = tf.tidy(() => {
    const lg = model.forward(which === 'clean' ? p.clean : p.corrupted, { attentionMask: p.mask, logitPositions: p.readPositions });
    return p.metric(tf.reshape(lg, [1, lg.shape[0], lg.shape[2]]) as tf.Tensor3D);
  });
  return (yield out)[0];
}

/** Metric of a plain run on clean or corrupted tokens (one number). */
export function runMetric(model: HookedTransformer, p: PatchingProblem, which: 'clean' | 'corrupted'): number {
  return runSync(runMetricSteps(model, p, which));
}

/** The model's tokenizer in the form the IOI generator needs. */
export function ioiTokenizerOf(model: HookedTransformer): IOITokenizer {
  if (!model.tokenizer) throw new ValueError(`${model.name}: tokenizer`, 'IOI prompts need a tokenizer.json');
  const tk = model.tokenizer;
  const bos = model.bosTokenId();
  return { encode: (t) => tk.encode(t), decode: (ids) => tk.decode(ids), ...(bos === null ? {} : { bosTokenId: bos }) };
}

/** Generate IOI prompts and their ABC corruption for a model, as a patching problem (seeded). */
export function ioiTask(model: HookedTransformer, opts: { n?: number; seed?: number } = {}): { problem: PatchingProblem; clean: IOIDataset; corrupted: IOIDataset } {
  const tk = ioiTokenizerOf(model);
  const clean = generateIOI(tk, { n: opts.n ?? 16, seed: opts.seed ?? 0, prependBos: model.bosTokenId() !== null });
  const corrupted = ioiCorrupted(clean, tk, { seed: (opts.seed ?? 0) + 1 });
  return { problem: ioiProblem(model, clean, corrupted), clean, corrupted };
}
