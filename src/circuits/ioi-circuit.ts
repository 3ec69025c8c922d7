/**
 * Wang et al.'s IOI circuit ("Interpretability in the Wild", 2022), found class by class with the
 * paper's experiments, on any model with a tokenizer (the shipped `ioi` model, GPT-2 small):
 *
 * 1. path patching from every head to the logits at END (ioi_utils.py path_patching, the paper's
 *    Figure 3b): heads whose path carries the clean logit difference are name-mover candidates, heads
 *    whose path lowers it are negative-name-mover candidates; the attention from END (to IO more
 *    than to S) and the copy score of the OV circuit on names (positive for name movers, negative for
 *    negative name movers) confirm them;
 * 2. path patching to the name movers' queries at END: S-inhibition heads (attending from END to S2);
 * 3. path patching to the S-inhibition heads' keys and values at S2: induction heads (attending from
 *    S2 to S1+1) and duplicate-token heads (attending from S2 to S1);
 * 4. path patching to the induction heads' keys at S1+1: previous-token heads (attending from S1+1 to S1);
 * 5. the name movers mean-ablated (the ABC means), path patching to the logits again: heads whose direct
 *    effect grows are backup name movers (the paper's "Backup NM results" experiment).
 *
 * The copy score follows the authors' check_copy_circuit (the paper's notebook, "Copy score" cell): the
 * residual stream after the first block at the IO, S1 and S2 tokens, through the head's layer norm, W_V
 * (+ b_V) and W_O, the final layer norm and the unembedding; the share of (prompt, name) pairs whose
 * name is in the top 5 logits (with +OV for name movers, -OV for negative name movers).
 *
 * The rules that turn the experiments' numbers into classes are explicit (IOIClassRules): a head
 * qualifies in an experiment when its effect passes max(minPercent, relThreshold x the experiment's
 * largest effect), and its attention says which class it is. A class no head qualifies for is
 * reported as not found; nothing is forced. docs/methods/ioi-circuit.md describes each step.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import type { ModelView } from '../model/view.js';
import { normApply, normScale } from '../model/ops.js';
import { tileRows } from '../backend/readback.js';
import { headName, parseHead } from '../util/grid.js';
import { bootstrapCI, type BootstrapCI } from '../analyses/stats.js';
import { batchPositions, templateGroups, type IOICorruptionRule, type IOIDataset, type IOIPosition } from '../data/ioi.js';
import { ioiTask, logitDiffMetric, type PatchingProblem } from './problem.js';
import { blend, hookNameOf } from './patching.js';
import { pathPatch, type HeadRef, type PathPatchOptions, type PathPatchResult } from './path.js';
import { evaluateCircuit, templateMeans, type AblationMeans, type CircuitNode } from './evaluate.js';

/** The seven classes of heads of the IOI circuit. */
export const IOI_CLASSES = ['name mover', 'negative name mover', 'backup name mover', 'S-inhibition', 'induction', 'duplicate token', 'previous token'] as const;
export type IOIClass = (typeof IOI_CLASSES)[number];

/** Where each class is kept when the circuit is evaluated (the authors' RELEVANT_TOKENS). */
export const IOI_CLASS_POSITION: Record<IOIClass, 'end' | 'S2' | 'S+1'> = {
  'name mover': 'end',
  'negative name mover': 'end',
  'backup name mover': 'end',
  'S-inhibition': 'end',
  induction: 'S2',
  'duplicate token': 'S2',
  'previous token': 'S+1',
};

/**
 * The published circuit of GPT-2 small (Wang et al. 2022, Figure 2; the authors' CIRCUIT dictionary in
 * easy_transformer/ioi_circuit_extraction.py): 26 heads.
 */
export const GPT2_SMALL_IOI_CIRCUIT: Record<IOIClass, string[]> = {
  'name mover': ['9.9', '10.0', '9.6'],
  'negative name mover': ['10.7', '11.10'],
  'backup name mover': ['10.10', '10.6', '10.2', '10.1', '11.2', '9.7', '9.0', '11.9'],
  'S-inhibition': ['7.3', '7.9', '8.6', '8.10'],
  induction: ['5.5', '5.8', '5.9', '6.9'],
  'duplicate token': ['0.1', '0.10', '3.0'],
  'previous token': ['2.2', '4.11'],
};

/** The paper's faithfulness of that circuit on GPT-2 small (Section 4): F(C) / F(M) = 87% (the gap |F(M) - F(C)| is 13% of F(M)). */
export const GPT2_SMALL_IOI_EVALUATION = { faithfulnessRatio: 0.87 } as const;

// ---------------------------------------------------------------------------------------------
// Data

/** An IOI patching problem with the padded position of every recorded word. */
export interface IOICircuitData {
  problem: PatchingProblem;
  clean: IOIDataset;
  corrupted: IOIDataset;
  /** Per prompt, the position of a recorded word in the (left-padded) batch. */
  at: (key: IOIPosition) => number[];
}

export interface IOICircuitDataOptions {
  /** Prompts (default 64). */
  n?: number;
  /** Seed of the prompts (the ABC corruption uses seed + 1; default 0). */
  seed?: number;
  corruption?: IOICorruptionRule;
}

/** Seeded IOI prompts over every template and name, their ABC corruption, and the word positions. */
export function ioiCircuitData(model: ModelView, opts: IOICircuitDataOptions = {}): IOICircuitData {
  const { problem, clean, corrupted } = ioiTask(model, { n: opts.n ?? 64, seed: opts.seed ?? 0, corruption: opts.corruption });
  const T = problem.clean[0].length;
  return { problem, clean, corrupted, at: (key) => batchPositions(clean, key, T, 'left') };
}

// ---------------------------------------------------------------------------------------------
// Attention

export const IOI_ATTENTION_QUERIES = ['end', 'S2', 'S+1'] as const;
export const IOI_ATTENTION_KEYS = ['IO', 'S', 'S+1', 'S2', 'end', 'starts'] as const;
export type IOIAttentionQuery = (typeof IOI_ATTENTION_QUERIES)[number];
export type IOIAttentionKey = (typeof IOI_ATTENTION_KEYS)[number];
/** attention[query][key][layer][head]: mean attention from the query word to the key word (S = S1, starts = the first token). */
export type IOIAttention = Record<IOIAttentionQuery, Record<IOIAttentionKey, number[][]>>;

/** Mean attention of every head between the IOI words (one cached run of the clean prompts). */
export async function ioiAttention(model: ModelView, data: IOICircuitData): Promise<IOIAttention> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const p = data.problem;
  const N = p.clean.length;
  const T = p.clean[0].length;
  const names = Array.from({ length: L }, (_, l) => hookNameOf('pattern', l));
  const run = await model.runWithCache(p.clean, { attentionMask: p.attentionMask, namesFilter: names });
  run.logits.dispose();
  const out = Object.fromEntries(IOI_ATTENTION_QUERIES.map((q) => [q, Object.fromEntries(IOI_ATTENTION_KEYS.map((k) => [k, [] as number[][]]))])) as IOIAttention;
  const pos = Object.fromEntries([...new Set<IOIPosition>([...IOI_ATTENTION_QUERIES, ...IOI_ATTENTION_KEYS])].map((k) => [k, data.at(k)])) as Record<IOIPosition, number[]>;
  try {
    for (let l = 0; l < L; l++) {
      const a = await run.cache.get(names[l]).data(); // [N, H, T, T]
      for (const q of IOI_ATTENTION_QUERIES) {
        for (const k of IOI_ATTENTION_KEYS) {
          out[q][k].push(Array.from({ length: H }, (_, h) => {
            let s = 0;
            for (let n = 0; n < N; n++) s += a[((n * H + h) * T + pos[q][n]) * T + pos[k][n]];
            return s / N;
          }));
        }
      }
    }
  } finally {
    run.cache.dispose();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Copy scores

export interface IOICopyScores {
  /** positive[layer][head]: share of (prompt, name) pairs with the name in the top k of +OV. */
  positive: number[][];
  /** The same with -OV (the negative copy score). */
  negative: number[][];
  k: number;
}

/**
 * The authors' copy score of every head (check_copy_circuit): the residual stream after block 0 at IO,
 * S1 and S2, through the head's layer norm, W_V + b_V and W_O (times +1 or -1), the final layer norm and
 * the unembedding; the share of the 3 x prompts (position, name) pairs whose name is in the top k.
 */
export async function ioiCopyScores(model: ModelView, data: IOICircuitData, opts: { k?: number } = {}): Promise<IOICopyScores> {
  const k = opts.k ?? 5;
  const c = model.cfg;
  if (!Number.isInteger(k) || k < 1 || k > c.d_vocab) throw new ValueError('ioiCopyScores k', expectedFound(`an integer in [1, ${c.d_vocab}]`, k));
  const p = data.problem;
  const N = p.clean.length;
  const T = p.clean[0].length;
  const rows = (['IO', 'S', 'S2'] as const).flatMap((w) => data.at(w).map((t, n) => n * T + t));
  const targets = [...data.clean.ioTokens, ...data.clean.sTokens, ...data.clean.sTokens];
  const run = await model.runWithCache(p.clean, { attentionMask: p.attentionMask, namesFilter: ['blocks.0.hook_resid_post'] });
  run.logits.dispose();
  let x: tf.Tensor2D;
  try {
    x = tf.tidy(() => tf.gather(tf.reshape(run.cache.get('blocks.0.hook_resid_post'), [N * T, c.d_model]), tf.tensor1d(rows, 'int32')) as tf.Tensor2D);
  } finally {
    run.cache.dispose();
  }
  const positive: number[][] = [];
  const negative: number[][] = [];
  try {
    for (let l = 0; l < c.n_layers; l++) {
      const pr: number[] = [];
      const ng: number[] = [];
      for (let h = 0; h < c.n_heads; h++) {
        const [plus, minus] = await Promise.all([1, -1].map((sign) => topKHits(model, x, l, h, sign, k, targets)));
        pr.push(plus);
        ng.push(minus);
      }
      positive.push(pr);
      negative.push(ng);
    }
  } finally {
    x.dispose();
  }
  return { positive, negative, k };
}

/** Share of rows of x whose target is among the top k logits of sign * OV(head) applied to the row. */
async function topKHits(model: ModelView, x: tf.Tensor2D, l: number, h: number, sign: number, k: number, targets: number[]): Promise<number> {
  const c = model.cfg;
  const P = model.params;
  const kv = Math.floor(h / (c.n_heads / c.n_kv_heads));
  const idx = tf.tidy(() => {
    const xn = normApply(x, normScale(x, c.normalization, c.eps), c.normalization, P[`blocks.${l}.ln1.w`], P[`blocks.${l}.ln1.b`]);
    const wv = tf.squeeze(tf.slice(P[`blocks.${l}.attn.W_V`], [kv, 0, 0], [1, -1, -1]), [0]);
    const bv = tf.squeeze(tf.slice(P[`blocks.${l}.attn.b_V`], [kv, 0], [1, -1]), [0]);
    const wo = tf.squeeze(tf.slice(P[`blocks.${l}.attn.W_O`], [h, 0, 0], [1, -1, -1]), [0]);
    const o = tf.mul(tf.matMul(tf.add(tf.matMul(xn as tf.Tensor2D, wv as tf.Tensor2D), bv), wo as tf.Tensor2D), sign);
    const on = normApply(o, normScale(o, c.normalization, c.eps), c.normalization, P['ln_final.w'], P['ln_final.b']);
    const logits = tf.add(tf.matMul(on as tf.Tensor2D, P['unembed.W_U'] as tf.Tensor2D), P['unembed.b_U']);
    return tf.topk(logits, k).indices;
  });
  try {
    const top = await idx.data();
    let hits = 0;
    targets.forEach((t, r) => {
      for (let j = 0; j < k; j++) if (top[r * k + j] === t) hits++;
    });
    return hits / targets.length;
  } finally {
    idx.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Knockouts

/** The ABC means of every head output (per template group), for the prompts of `data` (caller disposes). */
export function ioiAblationMeans(model: ModelView, data: IOICircuitData): Promise<AblationMeans> {
  const p = data.problem;
  return templateMeans(model, { tokens: p.corrupted, attentionMask: p.attentionMask }, { referenceGroups: templateGroups(data.corrupted), groups: templateGroups(data.clean) });
}

/**
 * Path patching with some heads mean-ablated (at every position) in every run, as the authors' backup
 * name-mover experiment passes the knockout hooks to path_patching (extra_hooks).
 */
export async function pathPatchKnockedOut(model: ModelView, p: PatchingProblem, means: AblationMeans, knocked: HeadRef[], opts: PathPatchOptions = {}): Promise<PathPatchResult> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const N = p.clean.length;
  const heads = knocked.map((r, i) => parseHead(r, model.cfg, `knocked[${i}]`));
  const masks = Array.from({ length: L }, (_, l) => {
    const m = new Float32Array(H);
    heads.filter(([hl]) => hl === l).forEach(([, h]) => (m[h] = 1));
    return m.some((v) => v) ? tf.tensor4d(m, [1, 1, H, 1]) : null;
  });
  const hooks: HookSpec[] = masks.flatMap((m, l) => {
    if (!m) return [];
    const fn = (z: tf.Tensor) => {
      const P = z.shape[0] / N;
      if (!Number.isInteger(P)) throw new ValueError('pathPatchKnockedOut', expectedFound(`a batch of a multiple of ${N} rows`, z.shape[0]));
      return blend(z, m, P === 1 ? means.perRow[l] : tileRows(means.perRow[l], P));
    };
    return [[hookNameOf('z', l), fn] as HookSpec];
  });
  try {
    return await model.withHooks(hooks, () => pathPatch(model, p, opts));
  } finally {
    tf.dispose(masks.filter((m): m is tf.Tensor4D => m !== null));
  }
}

// ---------------------------------------------------------------------------------------------
// Classification

export interface IOIClassRules {
  /** A head passes an experiment when |% change| >= max(minPercent, relThreshold x the largest |% change|). Default 0.2. */
  relThreshold?: number;
  /** Default 2 (%). */
  minPercent?: number;
  /** Attention to the defining word a class needs (induction, duplicate-token, previous-token heads), default 0.2. */
  minAttention?: number;
  /**
   * Also count as S-inhibition heads the heads of experiment 1 that carry the logit difference by attending
   * from END to S2 and writing against S (negative copy score > copy score): the S-inhibition role reached
   * directly through the logits instead of through the name movers' queries (default true; a tflens
   * addition, reported as such in the evidence; false = the paper's experiment 2 only).
   */
  directSInhibition?: boolean;
}

export interface IOIHeadEvidence {
  head: string;
  class: IOIClass;
  /** The experiment that found it. */
  experiment: string;
  /** Its effect there: % change of the logit difference (for backup name movers: the change of its direct effect, logit-difference units). */
  effect: number;
  /** Attention from the class's query word to the words that define it. */
  attention: Record<string, number>;
  /** Copy scores (name movers, negative and backup name movers). */
  copy?: { positive: number; negative: number };
}

export interface IOICircuitSearch {
  classes: Record<IOIClass, string[]>;
  /** Per circuit head, what found it. */
  evidence: Record<string, IOIHeadEvidence>;
  /** Classes that no head qualified for. */
  notFound: IOIClass[];
  attention: IOIAttention;
  copy: IOICopyScores;
  /** The path-patching runs, by experiment (absent when the class they start from was not found). */
  experiments: {
    direct: PathPatchResult;
    toMoverQueries?: PathPatchResult;
    toSInhibitionKeys?: PathPatchResult;
    toSInhibitionValues?: PathPatchResult;
    toInductionKeys?: PathPatchResult;
    /** Direct effects with the name movers knocked out. */
    directKnockedOut?: PathPatchResult;
    /** directKnockedOut.values - its clean minus (direct.values - direct.clean), per head. */
    backupChange?: number[][];
  };
  rules: Required<IOIClassRules>;
}

export const IOI_EXPERIMENT = {
  direct: 'path patching head -> logits at END',
  toMoverQueries: "path patching head -> name movers' queries at END",
  directSInhibition: 'path patching head -> logits at END, attending to S2 and writing against S (S-inhibition through the logits)',
  toSInhibition: "path patching head -> S-inhibition heads' keys and values at S2",
  toInductionKeys: "path patching head -> induction heads' keys at S1+1",
  backup: 'path patching head -> logits at END with the name movers mean-ablated (change of the direct effect)',
} as const;

function rulesOf(r: IOIClassRules = {}): Required<IOIClassRules> {
  const out = { relThreshold: r.relThreshold ?? 0.2, minPercent: r.minPercent ?? 2, minAttention: r.minAttention ?? 0.2, directSInhibition: r.directSInhibition ?? true };
  if (!(out.relThreshold >= 0 && out.relThreshold <= 1)) throw new ValueError('rules.relThreshold', expectedFound('a number in [0, 1]', out.relThreshold));
  if (!(out.minPercent >= 0)) throw new ValueError('rules.minPercent', expectedFound('a number >= 0', out.minPercent));
  if (!(out.minAttention >= 0 && out.minAttention <= 1)) throw new ValueError('rules.minAttention', expectedFound('a number in [0, 1]', out.minAttention));
  return out;
}

/** Every head of a [layer][head] grid with its value (NaN entries skipped). */
function cells(grid: number[][]): Array<{ l: number; h: number; v: number }> {
  return grid.flatMap((row, l) => row.map((v, h) => ({ l, h, v }))).filter((x) => Number.isFinite(x.v));
}

/** The passing threshold of an experiment's grid: max(floor, rel x the largest |value|). */
export function ioiThreshold(grid: number[][], rel: number, floor: number): number {
  return Math.max(floor, rel * Math.max(0, ...cells(grid).map((x) => Math.abs(x.v))));
}

/** Heads whose value is <= -threshold (sign -1) or >= threshold (sign +1), strongest first. */
function passing(grid: number[][], thr: number, sign: 1 | -1): Array<{ l: number; h: number; v: number }> {
  return cells(grid).filter((x) => sign * x.v >= thr).sort((a, b) => sign * (b.v - a.v));
}

/** Attention numbers of one head (query -> keys). */
function att(a: IOIAttention, q: IOIAttentionQuery, l: number, h: number, keys: IOIAttentionKey[]): Record<string, number> {
  return Object.fromEntries(keys.map((k) => [`${q}->${k}`, a[q][k][l][h]]));
}

/** Minimum of two grids cell by cell (the stronger negative effect of the key and the value path). */
function minGrid(a: number[][], b: number[][]): number[][] {
  return a.map((row, l) => row.map((x, h) => Math.min(x, b[l][h])));
}

/**
 * Path patching to receivers that sit in several layers: every sender is patched towards the receivers
 * above it (a sender between two receiver layers reaches only the higher ones). One pathPatch per range
 * of sender layers between consecutive receiver layers; the grids are merged (NaN = cannot send).
 */
export async function pathPatchToReceivers(model: ModelView, p: PatchingProblem, receivers: HeadRef[], opts: Omit<PathPatchOptions, 'receivers' | 'senderLayers'> = {}): Promise<PathPatchResult> {
  const parsed = receivers.map((r, i) => parseHead(r, model.cfg, `receivers[${i}]`));
  const layers = [...new Set(parsed.map(([l]) => l))].sort((a, b) => a - b);
  let merged: PathPatchResult | null = null;
  for (let i = 0; i < layers.length; i++) {
    const senderLayers = Array.from({ length: layers[i] - (i ? layers[i - 1] : 0) }, (_, k) => (i ? layers[i - 1] : 0) + k);
    if (!senderLayers.length) continue;
    const r = await pathPatch(model, p, { ...opts, receivers: parsed.filter(([l]) => l >= layers[i]), senderLayers });
    if (!merged) merged = { ...r, receivers: parsed };
    else for (const l of senderLayers) (['values', 'percentChange', 'normalised'] as const).forEach((k) => (merged![k][l] = r[k][l]));
  }
  if (!merged) throw new ValueError('pathPatchToReceivers receivers', expectedFound('a receiver above layer 0', receivers.join(', ')));
  return merged;
}

/**
 * Run the paper's experiments in order and classify the heads (see the file header). `means` are the
 * ABC means of ioiAblationMeans (computed here when absent). Each experiment that depends on an
 * earlier class is skipped when that class was not found.
 */
export async function findIOICircuit(model: ModelView, data: IOICircuitData, opts: { rules?: IOIClassRules; maxBatch?: number; means?: AblationMeans } = {}): Promise<IOICircuitSearch> {
  const rules = rulesOf(opts.rules);
  const p = data.problem;
  const pp = (o: PathPatchOptions) => pathPatch(model, p, { maxBatch: opts.maxBatch, ...o });
  const attention = await ioiAttention(model, data);
  const copy = await ioiCopyScores(model, data);
  const classes = Object.fromEntries(IOI_CLASSES.map((c) => [c, [] as string[]])) as Record<IOIClass, string[]>;
  const evidence: Record<string, IOIHeadEvidence> = {};
  const thr = (g: number[][]) => ioiThreshold(g, rules.relThreshold, rules.minPercent);
  const add = (cls: IOIClass, l: number, h: number, experiment: string, effect: number, attn: Record<string, number>, withCopy = false) => {
    const name = headName(l, h);
    if (evidence[name]) return;
    evidence[name] = { head: name, class: cls, experiment, effect, attention: attn, ...(withCopy ? { copy: { positive: copy.positive[l][h], negative: copy.negative[l][h] } } : {}) };
    classes[cls].push(name);
  };
  const endAttn = (l: number, h: number) => att(attention, 'end', l, h, ['IO', 'S', 'S2']);
  const toIO = (l: number, h: number) => attention.end.IO[l][h] > attention.end.S[l][h] + attention.end.S2[l][h];
  const experiments: IOICircuitSearch['experiments'] = { direct: await pp({}) };
  // 1. direct effect: name movers (carry the logit difference) and negative name movers (lower it)
  const d = experiments.direct.percentChange;
  for (const x of passing(d, thr(d), -1)) if (toIO(x.l, x.h) && copy.positive[x.l][x.h] >= copy.negative[x.l][x.h]) add('name mover', x.l, x.h, IOI_EXPERIMENT.direct, x.v, endAttn(x.l, x.h), true);
  for (const x of passing(d, thr(d), 1)) if (toIO(x.l, x.h) && copy.negative[x.l][x.h] > copy.positive[x.l][x.h]) add('negative name mover', x.l, x.h, IOI_EXPERIMENT.direct, x.v, endAttn(x.l, x.h), true);
  if (rules.directSInhibition) {
    for (const x of passing(d, thr(d), -1)) {
      if (attention.end.S2[x.l][x.h] > attention.end.IO[x.l][x.h] && copy.negative[x.l][x.h] > copy.positive[x.l][x.h]) add('S-inhibition', x.l, x.h, IOI_EXPERIMENT.directSInhibition, x.v, endAttn(x.l, x.h), true);
    }
  }
  const movers = classes['name mover'];
  // 2. S-inhibition: what reaches the name movers' queries, attending from END to S2 more than to IO
  const pr = (receivers: string[], o: Omit<PathPatchOptions, 'receivers' | 'senderLayers'>) => pathPatchToReceivers(model, p, receivers, { maxBatch: opts.maxBatch, ...o });
  if (movers.length && Math.max(...movers.map((m) => parseHead(m)[0])) > 0) {
    const q = (experiments.toMoverQueries = await pr(movers, { receiverInput: 'q' })).percentChange;
    for (const x of passing(q, thr(q), -1)) if (attention.end.S2[x.l][x.h] > attention.end.IO[x.l][x.h]) add('S-inhibition', x.l, x.h, IOI_EXPERIMENT.toMoverQueries, x.v, endAttn(x.l, x.h));
  }
  // 3. induction and duplicate-token heads: what reaches the S-inhibition heads' keys and values at S2
  const sInh = classes['S-inhibition'];
  if (sInh.length && Math.max(...sInh.map((m) => parseHead(m)[0])) > 0) {
    const s2 = data.at('S2');
    experiments.toSInhibitionKeys = await pr(sInh, { receiverInput: 'k', positions: s2 });
    experiments.toSInhibitionValues = await pr(sInh, { receiverInput: 'v', positions: s2 });
    const kv = minGrid(experiments.toSInhibitionKeys.percentChange, experiments.toSInhibitionValues.percentChange);
    for (const x of passing(kv, thr(kv), -1)) {
      const toNext = attention.S2['S+1'][x.l][x.h];
      const toSame = attention.S2.S[x.l][x.h];
      const a = att(attention, 'S2', x.l, x.h, ['S', 'S+1', 'IO']);
      if (toNext >= toSame && toNext >= rules.minAttention) add('induction', x.l, x.h, IOI_EXPERIMENT.toSInhibition, x.v, a);
      else if (toSame > toNext && toSame >= rules.minAttention) add('duplicate token', x.l, x.h, IOI_EXPERIMENT.toSInhibition, x.v, a);
    }
  }
  // 4. previous-token heads: what reaches the induction heads' keys at S1+1, attending from S1+1 to S1
  const ind = classes.induction;
  if (ind.length && Math.max(...ind.map((m) => parseHead(m)[0])) > 0) {
    const k = (experiments.toInductionKeys = await pr(ind, { receiverInput: 'k', positions: data.at('S+1') })).percentChange;
    for (const x of passing(k, thr(k), -1)) {
      if (attention['S+1'].S[x.l][x.h] >= rules.minAttention) add('previous token', x.l, x.h, IOI_EXPERIMENT.toInductionKeys, x.v, att(attention, 'S+1', x.l, x.h, ['S', 'S+1', 'IO']));
    }
  }
  // 5. backup name movers: direct effects with the name movers knocked out
  if (movers.length) {
    const means = opts.means ?? (await ioiAblationMeans(model, data));
    try {
      const ko = (experiments.directKnockedOut = await pathPatchKnockedOut(model, p, means, movers, { maxBatch: opts.maxBatch }));
      const base = experiments.direct;
      const change = (experiments.backupChange = ko.values.map((row, l) => row.map((v, h) => v - ko.clean - (base.values[l][h] - base.clean))));
      const floor = (rules.minPercent / 100) * Math.abs(base.clean);
      for (const x of passing(change, ioiThreshold(change, rules.relThreshold, floor), -1)) if (toIO(x.l, x.h)) add('backup name mover', x.l, x.h, IOI_EXPERIMENT.backup, x.v, endAttn(x.l, x.h), true);
    } finally {
      if (!opts.means) means.dispose();
    }
  }
  return { classes, evidence, notFound: IOI_CLASSES.filter((c) => classes[c].length === 0), attention, copy, experiments, rules };
}

// ---------------------------------------------------------------------------------------------
// Evaluation with confidence intervals

export interface IOICircuitEvaluationOptions {
  /** Bootstrap replicates (default 1000) and seed (default 0) of the 95% intervals over prompts. */
  bootstrap?: { n?: number; seed?: number; level?: number };
  maxBatch?: number;
}

export interface IOIEvaluationCI {
  estimate: number;
  lo: number;
  hi: number;
}

export interface IOICircuitEvaluationCI {
  prompts: number;
  /** F(M): the model's mean logit difference. */
  full: IOIEvaluationCI;
  /** F(C): everything outside the circuit mean-ablated (circuit heads kept at their class's positions). */
  circuit: IOIEvaluationCI;
  /** |F(M) - F(C)|. */
  faithfulness: IOIEvaluationCI;
  /** F(C) / F(M). */
  faithfulnessRatio: IOIEvaluationCI;
  /** |F(C \ K) - F(M \ K)| per set K (empty, each class, all name-mover classes). */
  completeness: Array<{ K: string; heads: string[]; circuitMinusK: number; fullMinusK: number; score: IOIEvaluationCI }>;
  /** |F(C \ (K u {v})) - F(C \ K)| / F(M) per head v, K = the other heads of v's class. */
  minimality: Array<{ head: string; class: IOIClass; K: string[]; score: IOIEvaluationCI }>;
}

/** The circuit's nodes: each head kept at its class's position in every prompt. */
export function ioiCircuitNodes(data: IOICircuitData, classes: Record<IOIClass, string[]>): CircuitNode[] {
  const at = { end: data.at('end'), S2: data.at('S2'), 'S+1': data.at('S+1') };
  return IOI_CLASSES.flatMap((c) => classes[c].map((head) => ({ head, positions: at[IOI_CLASS_POSITION[c]].map((t) => [t]) })));
}

function ci(values: number[], stat: (idx: number[]) => number, o: IOICircuitEvaluationOptions['bootstrap'] = {}): IOIEvaluationCI {
  const idx = values.map((_, i) => i);
  const r: BootstrapCI = bootstrapCI(idx, stat, { n: o.n ?? 1000, seed: o.seed ?? 0, level: o.level ?? 0.95 });
  return { estimate: r.estimate, lo: r.lo, hi: r.hi };
}

/** One prompt of a problem (rows kept at the batch's length, so the means' positions still align). */
function promptProblem(p: PatchingProblem, i: number, vocab: number, io: number, s: number): PatchingProblem {
  return { ...p, clean: [p.clean[i]], corrupted: [p.corrupted[i]], attentionMask: [p.attentionMask[i]], readPositions: [p.readPositions[i]], metric: logitDiffMetric([io], [s], vocab) };
}

/**
 * Faithfulness, completeness and minimality (tflens evaluateCircuit, the authors' definitions) of a
 * circuit given by classes, with percentile-bootstrap intervals over prompts. Each prompt runs as its
 * own problem (rows keep the batch's length, so the ABC means still align); every configuration a
 * score needs is a completeness set of one evaluateCircuit call (F(C \ K) and F(M \ K) come back as
 * raw numbers), so each score is a statistic of per-prompt values: the mean over prompts of a
 * per-prompt value is evaluateCircuit's number on the whole batch.
 */
export async function evaluateIOICircuit(model: ModelView, data: IOICircuitData, classes: Record<IOIClass, string[]>, opts: IOICircuitEvaluationOptions = {}): Promise<IOICircuitEvaluationCI> {
  const p = data.problem;
  const N = p.clean.length;
  const nodes = ioiCircuitNodes(data, classes);
  if (!nodes.length) throw new ValueError('evaluateIOICircuit classes', expectedFound('at least one circuit head', 'none'));
  const moverSet = [...classes['name mover'], ...classes['backup name mover'], ...classes['negative name mover']];
  const named: Array<{ K: string; heads: string[] }> = [
    { K: 'empty', heads: [] },
    ...IOI_CLASSES.filter((c) => classes[c].length).map((c) => ({ K: c, heads: classes[c] })),
    ...(moverSet.length ? [{ K: 'all name-mover classes', heads: moverSet }] : []),
  ];
  // minimality of v: K = the other heads of v's class; needs F(C \ K) and F(C \ (K u {v}))
  const minimal = IOI_CLASSES.flatMap((c) => classes[c].map((v) => ({ c, v, K: classes[c].filter((x) => x !== v) })));
  const sets: string[][] = [];
  const setIndex = (heads: string[]) => {
    const key = [...heads].sort().join(',');
    const k = sets.findIndex((s) => [...s].sort().join(',') === key);
    return k >= 0 ? k : sets.push(heads) - 1;
  };
  const namedIdx = named.map((s) => setIndex(s.heads));
  const minIdx = minimal.map((m) => [setIndex(m.K), setIndex([...m.K, m.v])]);
  const full: number[] = [];
  const circ: number[] = [];
  const cmk = sets.map(() => [] as number[]);
  const fmk = sets.map(() => [] as number[]);
  const means = await ioiAblationMeans(model, data);
  try {
    for (let i = 0; i < N; i++) {
      const mi = sliceMeans(means, i);
      try {
        const pi = promptProblem(p, i, model.cfg.d_vocab, data.clean.ioTokens[i], data.clean.sTokens[i]);
        const ni = nodes.map((nd) => {
          const x = nd as { head: string; positions: number[][] };
          return { head: x.head, positions: [x.positions[i]] };
        });
        const ev = await evaluateCircuit(model, pi, mi, ni, { completenessSets: sets, maxBatch: opts.maxBatch });
        full.push(ev.full);
        circ.push(ev.circuitOnly);
        ev.completeness.forEach((c, k) => (cmk[k].push(c.circuitMinusK), fmk[k].push(c.fullMinusK)));
      } finally {
        mi.dispose();
      }
    }
  } finally {
    means.dispose();
  }
  const b = opts.bootstrap;
  const avg = (v: number[], idx: number[]) => idx.reduce((s, i) => s + v[i], 0) / idx.length;
  const all = full.map((_, i) => i);
  return {
    prompts: N,
    full: ci(full, (ix) => avg(full, ix), b),
    circuit: ci(full, (ix) => avg(circ, ix), b),
    faithfulness: ci(full, (ix) => Math.abs(avg(full, ix) - avg(circ, ix)), b),
    faithfulnessRatio: ci(full, (ix) => avg(circ, ix) / avg(full, ix), b),
    completeness: named.map((s, j) => {
      const k = namedIdx[j];
      return { K: s.K, heads: s.heads, circuitMinusK: avg(cmk[k], all), fullMinusK: avg(fmk[k], all), score: ci(full, (ix) => Math.abs(avg(cmk[k], ix) - avg(fmk[k], ix)), b) };
    }),
    minimality: minimal.map((m, j) => {
      const [k0, k1] = minIdx[j];
      return { head: m.v, class: m.c, K: m.K, score: ci(full, (ix) => Math.abs(avg(cmk[k1], ix) - avg(cmk[k0], ix)) / avg(full, ix), b) };
    }),
  };
}

/** Row i of a set of ablation means (caller disposes). */
function sliceMeans(means: AblationMeans, i: number): AblationMeans {
  const perRow = means.perRow.map((t) => tf.slice(t, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D);
  return { perRow, dispose: () => tf.dispose(perRow) };
}

// ---------------------------------------------------------------------------------------------
// The whole study and its record (circuit.json)

export interface IOICircuitStudyOptions {
  /** Prompts and seed of the experiments that find the classes. */
  discovery: IOICircuitDataOptions;
  /** Fresh prompts and seed of the evaluation (faithfulness, completeness, minimality). */
  evaluation: IOICircuitDataOptions;
  rules?: IOIClassRules;
  bootstrap?: IOICircuitEvaluationOptions['bootstrap'];
  maxBatch?: number;
}

/** The options circuit.json of the shipped ioi model was made with (scripts/ioi-circuit.ts, notebook 04). */
export const IOI_CIRCUIT_STUDY: IOICircuitStudyOptions = {
  discovery: { n: 64, seed: 404 },
  evaluation: { n: 100, seed: 4040 },
  rules: { relThreshold: 0.2, minPercent: 2, minAttention: 0.2 },
  bootstrap: { n: 1000, seed: 0 },
};

export interface IOICircuitStudy {
  options: IOICircuitStudyOptions;
  search: IOICircuitSearch;
  /** Absent when no head was found. */
  evaluation: IOICircuitEvaluationCI | null;
}

/** findIOICircuit on the discovery prompts, then evaluateIOICircuit on fresh prompts. */
export async function runIOICircuitStudy(model: ModelView, opts: IOICircuitStudyOptions = IOI_CIRCUIT_STUDY, log: (msg: string) => void = () => undefined): Promise<IOICircuitStudy> {
  log(`discovery: ${opts.discovery.n} prompts, seed ${opts.discovery.seed}`);
  const search = await findIOICircuit(model, ioiCircuitData(model, opts.discovery), { rules: opts.rules, maxBatch: opts.maxBatch });
  log(`found ${IOI_CLASSES.map((c) => `${c}: ${search.classes[c].join(' ') || '-'}`).join('; ')}`);
  const heads = IOI_CLASSES.flatMap((c) => search.classes[c]);
  let evaluation: IOICircuitEvaluationCI | null = null;
  if (heads.length) {
    log(`evaluation: ${opts.evaluation.n} prompts, seed ${opts.evaluation.seed}`);
    evaluation = await evaluateIOICircuit(model, ioiCircuitData(model, opts.evaluation), search.classes, { bootstrap: opts.bootstrap, maxBatch: opts.maxBatch });
    log(`F(C)/F(M) = ${evaluation.faithfulnessRatio.estimate.toFixed(3)}`);
  }
  return { options: opts, search, evaluation };
}

const round = (x: number, d = 4) => Number(x.toFixed(d));
const roundCI = (c: IOIEvaluationCI) => ({ estimate: round(c.estimate), lo: round(c.lo), hi: round(c.hi) });

/** The JSON record of a study: the circuit (classes -> heads), how each head was found, and its evaluation. */
export function ioiCircuitRecord(model: string, study: IOICircuitStudy): Record<string, unknown> {
  const s = study.search;
  const heads = IOI_CLASSES.flatMap((c) => s.classes[c]);
  const ev = study.evaluation;
  const howFound: Record<IOIClass, string> = {
    'name mover': `${IOI_EXPERIMENT.direct}: % change <= -threshold, attention END->IO > END->S1 + END->S2, copy score >= negative copy score`,
    'negative name mover': `${IOI_EXPERIMENT.direct}: % change >= +threshold, attention END->IO > END->S1 + END->S2, negative copy score > copy score`,
    'backup name mover': `${IOI_EXPERIMENT.backup}: change <= -threshold, attention END->IO > END->S1 + END->S2`,
    'S-inhibition': `${IOI_EXPERIMENT.toMoverQueries}: % change <= -threshold, attention END->S2 > END->IO` + (s.rules.directSInhibition ? `; or ${IOI_EXPERIMENT.directSInhibition}: % change <= -threshold, attention END->S2 > END->IO, negative copy score > copy score` : ''),
    induction: `${IOI_EXPERIMENT.toSInhibition}: % change (the stronger of k, v) <= -threshold, attention S2->S1+1 >= S2->S1 and >= minAttention`,
    'duplicate token': `${IOI_EXPERIMENT.toSInhibition}: % change (the stronger of k, v) <= -threshold, attention S2->S1 > S2->S1+1 and >= minAttention`,
    'previous token': `${IOI_EXPERIMENT.toInductionKeys}: % change <= -threshold, attention S1+1->S1 >= minAttention`,
  };
  return {
    model,
    generatedBy: 'scripts/ioi-circuit.ts (runIOICircuitStudy in src/circuits/ioi-circuit.ts; notebooks/04-ioi-circuit.ipynb runs the same)',
    heads,
    roles: Object.fromEntries(heads.map((h) => [h, s.evidence[h].class])),
    classes: s.classes,
    notFound: s.notFound,
    positions: IOI_CLASS_POSITION,
    howFound,
    rules: { ...s.rules, threshold: 'max(minPercent, relThreshold x the largest |effect| of the experiment)' },
    evidence: Object.fromEntries(heads.map((h) => {
      const e = s.evidence[h];
      return [h, { ...e, effect: round(e.effect, 3), attention: Object.fromEntries(Object.entries(e.attention).map(([k, v]) => [k, round(v, 3)])), ...(e.copy ? { copy: { positive: round(e.copy.positive, 3), negative: round(e.copy.negative, 3) } } : {}) }];
    })),
    data: { discovery: study.options.discovery, evaluation: study.options.evaluation, corruption: 'ABC (IO -> RAND, S -> RAND, S1 -> RAND; the authors\' rule)', means: 'per-template means of the ABC prompts' },
    evaluation: ev && {
      prompts: ev.prompts,
      level: 0.95,
      bootstrap: study.options.bootstrap ?? { n: 1000, seed: 0 },
      full: roundCI(ev.full),
      circuit: roundCI(ev.circuit),
      faithfulness: roundCI(ev.faithfulness),
      faithfulnessRatio: roundCI(ev.faithfulnessRatio),
      completeness: ev.completeness.map((c) => ({ K: c.K, heads: c.heads, circuitMinusK: round(c.circuitMinusK), fullMinusK: round(c.fullMinusK), score: roundCI(c.score) })),
      minimality: ev.minimality.map((m) => ({ head: m.head, class: m.class, K: m.K, score: roundCI(m.score) })),
    },
    paper: { model: 'gpt2 (GPT-2 small)', classes: GPT2_SMALL_IOI_CIRCUIT, ...GPT2_SMALL_IOI_EVALUATION },
  };
}
