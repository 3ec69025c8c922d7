/**
 * The Bigram-Backcopy (BB) task of Guo et al. ("Active-dormant attention heads"; docs/methods/bigram-backcopy.md):
 * - a fixed bigram language over nChars characters (seeded random and peaked, or estimated from a
 *   text), plus BOS and one unused token (<unk>);
 * - triggers = the k most frequent characters under the stationary (unigram) distribution;
 * - x0 = BOS; x1 ~ unigram with triggers zeroed; then x_{t+1} = x_{t-1} when x_t is a trigger
 *   (backcopy), else x_{t+1} ~ P(. | x_t). Length 257 by default, loss at every position.
 * Everything is plain arrays; the oracle loss (the negative log-probability of the true next token
 * under the true process) lets a caller compute excess loss on trigger / non-trigger positions.
 */
import { ValueError, expectedFound } from '../errors.js';
import { rng, type Rng } from '../util/random.js';
import { wordLevelTokenizerJson, tokenizerConfigJson } from './tokenizer.js';

/** The 65 characters of the tiny-shakespeare alphabet (the paper's bigram language is over these). */
export const DEFAULT_CHARS: readonly string[] = [..."\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"];

export interface BBOptions {
  /** Number of characters (default 65; at most 65 unless `text` gives the alphabet). */
  nChars?: number;
  /** Number of triggers (default 3; the paper also uses 5). */
  k?: number;
  /** Sequence length including BOS (default 257). */
  seqLen?: number;
  /** Seed of the random bigram matrix (ignored with `text`). */
  seed?: number;
  /** Peakedness of each row: logits ~ N(0, rowSigma^2) (default 2.0). */
  rowSigma?: number;
  /** Spread of the global popularity of characters: log-popularity ~ N(0, popSigma^2) (default 1.5). */
  popSigma?: number;
  /** Estimate the bigram matrix from this text instead (alphabet = its characters, sorted). */
  text?: string;
  /** Additive smoothing for `text` counts (default 0.01). */
  smoothing?: number;
}

export interface BBTask {
  /** Characters of ids 0..nChars-1. */
  chars: string[];
  /** Full vocabulary: chars, then "<bos>", then "<unk>" (unused). */
  vocab: string[];
  nChars: number;
  bosId: number;
  unkId: number;
  dVocab: number;
  seqLen: number;
  /** transition[i][j] = P(x_{t+1} = j | x_t = i), over chars. */
  transition: number[][];
  /** Stationary distribution of the bigram chain. */
  unigram: number[];
  /** The k most frequent characters (by unigram), most frequent first. */
  triggers: number[];
  isTrigger: boolean[];
  /** Distribution of x1: unigram with triggers zeroed, renormalised. */
  x1Dist: number[];
}

export interface BBBatch {
  /** [batch][seqLen] token ids; tokens[b][0] = BOS. */
  tokens: number[][];
  /** Targets: targets[b][t] = tokens[b][t+1] for t < seqLen - 1 (length seqLen - 1). */
  targets: number[][];
  /** lossMask[b][t]: position t is scored (every position with a target). */
  lossMask: boolean[][];
  /** triggerMask[b][t]: x_t is a trigger (the next token is the backcopy x_{t-1}). */
  triggerMask: boolean[][];
  /** nonTriggerMask[b][t]: 1 <= t < seqLen - 1 and x_t is not a trigger. */
  nonTriggerMask: boolean[][];
  /** oracleLoss[b][t] = -log P_true(x_{t+1} | x_<=t): 0 after a trigger. Length seqLen - 1. */
  oracleLoss: number[][];
}

function stationary(P: number[][]): number[] {
  const n = P.length;
  let pi = new Array(n).fill(1 / n);
  for (let it = 0; it < 10000; it++) {
    const next = new Array(n).fill(0);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) next[j] += pi[i] * P[i][j];
    let diff = 0;
    for (let j = 0; j < n; j++) diff += Math.abs(next[j] - pi[j]);
    pi = next;
    if (diff < 1e-15) break;
  }
  const s = pi.reduce((a, b) => a + b, 0);
  return pi.map((x) => x / s);
}

/** Build the BB task (the language, triggers and distributions). Deterministic in its options. */
export function makeBigramBackcopy(options: BBOptions = {}): BBTask {
  const k = options.k ?? 3;
  const seqLen = options.seqLen ?? 257;
  let chars: string[];
  let P: number[][];
  if (options.text !== undefined) {
    chars = [...new Set([...options.text])].sort();
    if (chars.length < 2) throw new ValueError('makeBigramBackcopy text', expectedFound('at least 2 distinct characters', chars.length));
    const idx = new Map(chars.map((c, i) => [c, i]));
    const a = options.smoothing ?? 0.01;
    if (!(a > 0)) throw new ValueError('makeBigramBackcopy smoothing', expectedFound('> 0', a));
    const counts = chars.map(() => new Array(chars.length).fill(a));
    const t = [...options.text];
    for (let i = 0; i + 1 < t.length; i++) counts[idx.get(t[i])!][idx.get(t[i + 1])!] += 1;
    P = counts.map((row) => {
      const s = row.reduce((x, y) => x + y, 0);
      return row.map((x) => x / s);
    });
  } else {
    const nChars = options.nChars ?? 65;
    if (!(Number.isInteger(nChars) && nChars >= 2 && nChars <= DEFAULT_CHARS.length)) {
      throw new ValueError('makeBigramBackcopy nChars', expectedFound(`an integer in [2, ${DEFAULT_CHARS.length}]`, nChars));
    }
    chars = DEFAULT_CHARS.slice(0, nChars);
    const r: Rng = rng(options.seed ?? 0);
    const rowSigma = options.rowSigma ?? 2.0;
    const popSigma = options.popSigma ?? 1.5;
    const pop = chars.map(() => popSigma * r.normal());
    P = chars.map(() => {
      const logits = chars.map((_, j) => pop[j] + rowSigma * r.normal());
      const m = Math.max(...logits);
      const e = logits.map((x) => Math.exp(x - m));
      const s = e.reduce((x, y) => x + y, 0);
      return e.map((x) => x / s);
    });
  }
  const nChars = chars.length;
  if (!(Number.isInteger(k) && k >= 1 && k < nChars)) {
    throw new ValueError('makeBigramBackcopy k', expectedFound(`an integer in [1, ${nChars - 1}]`, k));
  }
  if (!(Number.isInteger(seqLen) && seqLen >= 3)) throw new ValueError('makeBigramBackcopy seqLen', expectedFound('an integer >= 3', seqLen));
  const unigram = stationary(P);
  const order = unigram.map((p, i) => [p, i] as [number, number]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const triggers = order.slice(0, k).map(([, i]) => i);
  const isTrigger = chars.map((_, i) => triggers.includes(i));
  const z = unigram.map((p, i) => (isTrigger[i] ? 0 : p));
  const zs = z.reduce((a, b) => a + b, 0);
  const x1Dist = z.map((p) => p / zs);
  return {
    chars,
    vocab: [...chars, '<bos>', '<unk>'],
    nChars,
    bosId: nChars,
    unkId: nChars + 1,
    dVocab: nChars + 2,
    seqLen,
    transition: P,
    unigram,
    triggers,
    isTrigger,
    x1Dist,
  };
}

/** Cumulative rows for fast sampling. */
function cdf(p: number[]): Float64Array {
  const c = new Float64Array(p.length);
  let s = 0;
  for (let i = 0; i < p.length; i++) {
    s += p[i];
    c[i] = s;
  }
  return c;
}

function draw(c: Float64Array, u: number): number {
  const x = u * c[c.length - 1];
  let lo = 0;
  let hi = c.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (c[mid] > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

const CDF_CACHE = new WeakMap<BBTask, { rows: Float64Array[]; x1: Float64Array }>();

/** Sample a batch of BB sequences (seeded). */
export function sampleBigramBackcopy(task: BBTask, batch: number, seed: number): BBBatch {
  if (!(Number.isInteger(batch) && batch >= 1)) throw new ValueError('sampleBigramBackcopy batch', expectedFound('a positive integer', batch));
  let cd = CDF_CACHE.get(task);
  if (!cd) {
    cd = { rows: task.transition.map(cdf), x1: cdf(task.x1Dist) };
    CDF_CACHE.set(task, cd);
  }
  const r = rng(seed);
  const L = task.seqLen;
  const out: BBBatch = { tokens: [], targets: [], lossMask: [], triggerMask: [], nonTriggerMask: [], oracleLoss: [] };
  for (let b = 0; b < batch; b++) {
    const x = new Array<number>(L);
    x[0] = task.bosId;
    x[1] = draw(cd.x1, r.next());
    for (let t = 1; t < L - 1; t++) {
      x[t + 1] = task.isTrigger[x[t]] ? x[t - 1] : draw(cd.rows[x[t]], r.next());
    }
    out.tokens.push(x);
    const ann = annotateBigramBackcopy(task, x);
    out.targets.push(ann.targets);
    out.lossMask.push(ann.lossMask);
    out.triggerMask.push(ann.triggerMask);
    out.nonTriggerMask.push(ann.nonTriggerMask);
    out.oracleLoss.push(ann.oracleLoss);
  }
  return out;
}

/** Targets, masks and oracle loss of one sequence (which must start with BOS). */
export function annotateBigramBackcopy(
  task: BBTask,
  x: number[],
): { targets: number[]; lossMask: boolean[]; triggerMask: boolean[]; nonTriggerMask: boolean[]; oracleLoss: number[] } {
  if (x[0] !== task.bosId) throw new ValueError('BB sequence[0]', expectedFound(`BOS (${task.bosId})`, x[0]));
  const n = x.length;
  const targets: number[] = [];
  const lossMask: boolean[] = [];
  const triggerMask: boolean[] = [];
  const nonTriggerMask: boolean[] = [];
  const oracleLoss: number[] = [];
  for (let t = 0; t < n - 1; t++) {
    const trig = t >= 1 && task.isTrigger[x[t]] === true;
    targets.push(x[t + 1]);
    lossMask.push(true);
    triggerMask.push(trig);
    nonTriggerMask.push(t >= 1 && !trig);
    const p = oracleNext(task, x, t)[x[t + 1]];
    oracleLoss.push(p >= 1 ? 0 : p > 0 ? -Math.log(p) : Infinity);
  }
  triggerMask.push(n > 1 && task.isTrigger[x[n - 1]] === true);
  nonTriggerMask.push(n > 1 && !task.isTrigger[x[n - 1]]);
  return { targets, lossMask, triggerMask, nonTriggerMask, oracleLoss };
}

/** The true distribution of x_{t+1} given x_<=t, over the full vocabulary (dVocab). */
export function oracleNext(task: BBTask, x: number[], t: number): number[] {
  const p = new Array(task.dVocab).fill(0);
  if (t === 0) {
    task.x1Dist.forEach((v, i) => (p[i] = v));
  } else if (x[t] >= task.nChars) {
    throw new ValueError(`BB sequence[${t}]`, expectedFound('a character id after position 0', x[t]));
  } else if (task.isTrigger[x[t]]) {
    p[x[t - 1]] = 1;
  } else {
    task.transition[x[t]].forEach((v, i) => (p[i] = v));
  }
  return p;
}

/** Means over a group; null when the group is empty (never a silent NaN). */
export interface ExcessLoss {
  all: number | null;
  trigger: number | null;
  nonTrigger: number | null;
  /** Mean model loss and oracle loss on each group (for reports). */
  modelTrigger: number | null;
  modelNonTrigger: number | null;
  oracleTrigger: number | null;
  oracleNonTrigger: number | null;
  nTrigger: number;
  nNonTrigger: number;
}

/**
 * Excess loss (model NLL - oracle NLL), averaged over all scored positions, trigger positions and
 * non-trigger positions. `modelLoss[b][t]` is the model's -log p(x_{t+1}) at position t.
 */
export function bbExcessLoss(modelLoss: number[][], batch: BBBatch): ExcessLoss {
  let a = 0;
  let na = 0;
  const acc = { mt: 0, ot: 0, nt: 0, mn: 0, on: 0, nn: 0 };
  if (modelLoss.length !== batch.tokens.length) {
    throw new ValueError('bbExcessLoss modelLoss', expectedFound(`${batch.tokens.length} rows`, modelLoss.length));
  }
  modelLoss.forEach((row, b) => {
    if (row.length < batch.oracleLoss[b].length) {
      throw new ValueError(`bbExcessLoss modelLoss[${b}]`, expectedFound(`>= ${batch.oracleLoss[b].length} positions`, row.length));
    }
    batch.oracleLoss[b].forEach((o, t) => {
      const m = row[t];
      if (!Number.isFinite(m)) throw new ValueError(`bbExcessLoss modelLoss[${b}][${t}]`, expectedFound('a finite loss', m));
      a += m - o;
      na++;
      if (batch.triggerMask[b][t]) {
        acc.mt += m;
        acc.ot += o;
        acc.nt++;
      } else if (batch.nonTriggerMask[b][t]) {
        acc.mn += m;
        acc.on += o;
        acc.nn++;
      }
    });
  });
  const div = (x: number, n: number) => (n > 0 ? x / n : null);
  return {
    all: div(a, na),
    trigger: div(acc.mt - acc.ot, acc.nt),
    nonTrigger: div(acc.mn - acc.on, acc.nn),
    modelTrigger: div(acc.mt, acc.nt),
    modelNonTrigger: div(acc.mn, acc.nn),
    oracleTrigger: div(acc.ot, acc.nt),
    oracleNonTrigger: div(acc.on, acc.nn),
    nTrigger: acc.nt,
    nNonTrigger: acc.nn,
  };
}

/** tokenizer.json and tokenizer_config.json objects for the BB vocabulary (char-level). */
export function bbTokenizerFiles(task: BBTask): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  return {
    tokenizer: wordLevelTokenizerJson(task.vocab, { splitChars: true, specialTokens: ['<bos>'], unkToken: '<unk>' }),
    config: tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: task.seqLen }),
  };
}
