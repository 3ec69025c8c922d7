/**
 * Active-dormant heads (Guo et al., "Active-Dormant Attention Heads", code
 * GuoTianYu2000/Active-Dormant-Attention): BOS statistics (attention sink, value-state drain,
 * residual-state peak), the per-head intervention test per input domain, and the entropy detector.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName, type HookName } from '../hooks/names.js';
import type { HookSpec } from '../hooks/registry.js';
import { firstRealIndex, readBatch, type Batch, type ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import {
  checkPatterns,
  grid,
  headEntropies,
  hostMask,
  modelName,
  patternNames,
  readAll,
  runChunks,
  type Chunk,
  type MaskInput,
  type RunOptions,
} from './attention-stats.js';
import { residualStateNames, type ResidualStates } from './sinks.js';

// ---------------------------------------------------------------------------------------------
// BOS statistics
// ---------------------------------------------------------------------------------------------

export interface BosStatsOptions extends RunOptions {
  /**
   * Which queries count for the attention sink: queryMask[b][i] = 1 (e.g. the non-trigger positions
   * of a Bigram-Backcopy batch). Default: every real query. Pad positions never count.
   */
  queryMask?: number[][];
  /**
   * 'all' (default): the BOS query itself counts, as in the authors' bos_attn
   * (BBM/probe_utils.py line 288: attn_weights[:, 0, :, 0][~triggers_pos].mean(), query 0 included);
   * 'after-bos': only queries after BOS (tflens's earlier rule).
   */
  sinkQueries?: 'all' | 'after-bos';
  /**
   * Residual states whose norms are reported (default 'hidden-states': the L + 1 hidden states, the
   * last after the final norm, HF's output_hidden_states as LLM/src/modified_forwards/llama.py lines
   * 475 and 515-519 build them); 'resid-post' = the L layer outputs (BBM/probe_utils.py line 290,
   * tflens's earlier rule); 'resid-pre' = the L layer inputs.
   */
  residual?: ResidualStates;
}

export interface BosStats {
  /** attnSink[layer][head]: mean of A[i, BOS] over every counted (prompt, query) pair. */
  attnSink: number[][];
  /** valueNormBos[layer][head]: raw ||v_BOS|| of the head's (KV) value vector, mean over prompts (value drain, BBM/probe_utils.py line 292). */
  valueNormBos: number[][];
  /** valueNormOther[layer][head]: raw ||v_j|| over every other real (prompt, position) pair. */
  valueNormOther: number[][];
  /** valueOutNormBos[layer][head]: ||v_BOS W_O^h||, the head's output direction (variant: BBM/final-plots.ipynb, and tflens's earlier valueNormBos). */
  valueOutNormBos: number[][];
  valueOutNormOther: number[][];
  /** The hook point behind each residual-state entry. */
  residNames: HookName[];
  /** residNormBos[s]: ||residual state s at BOS|| (residual peak), mean over prompts. */
  residNormBos: number[];
  /** residNormOther[s]: ||residual state s|| over every other real (prompt, position) pair. */
  residNormOther: number[];
  /** method "bos-sink": score = attnSink; extra columns valueNormBos, valueNormOther (raw ||v||). */
  scores: HeadScores;
}

/** kv head of each query head (TransformerLens GQA: repeat_interleave). */
function kvIndex(nHeads: number, nKv: number): number[] {
  return Array.from({ length: nHeads }, (_, h) => Math.floor(h / (nHeads / nKv)));
}

/** Sums and counts of the BOS statistics. */
class BosAcc {
  sink: number[][];
  sinkN: number[][];
  v: Record<'vB' | 'vO' | 'oB' | 'oO', number[][]>;
  vBN = 0;
  vON = 0;
  rB: number[];
  rO: number[];
  constructor(L: number, H: number, S: number) {
    this.sink = grid(L, H, () => 0);
    this.sinkN = grid(L, H, () => 0);
    this.v = { vB: grid(L, H, () => 0), vO: grid(L, H, () => 0), oB: grid(L, H, () => 0), oO: grid(L, H, () => 0) };
    this.rB = new Array(S).fill(0);
    this.rO = new Array(S).fill(0);
  }
}

/** Per-layer device work: attention to BOS [b, H, N], raw ||v|| and ||v W_O|| [b, N, H]. */
function layerTensors(model: ModelView, c: Chunk, l: number, kv: number[]): tf.Tensor[] {
  const name = `blocks.${l}.attn.W_O`;
  return tf.tidy(() => {
    const WO = model.hasWeight(name) ? model.weight(name) : undefined; // float32 (half weights decoded), freed by the tidy
    if (!WO || WO.rank !== 3) throw new ShapeError(`params.${name}`, expectedFound('[n_heads, d_head, d_model]', WO ? `[${WO.shape}]` : 'missing'));
    const pat = c.cache.get(actName('pattern', l)).toFloat(); // [b, H, N, N]
    const [b, H, N] = pat.shape;
    const bosCol = tf.oneHot(tf.tensor1d(c.first, 'int32'), N).toFloat().reshape([b, 1, 1, N]);
    const vq = tf.gather(c.cache.get(actName('v', l)).toFloat(), tf.tensor1d(kv, 'int32'), 2); // [b, N, H, dh]
    const dh = vq.shape[3] as number;
    const out = tf.matMul(vq.transpose([2, 0, 1, 3]).reshape([H, b * N, dh]), WO.toFloat()); // [H, b*N, d_model]
    const outN = out.square().sum(-1).sqrt().reshape([H, b, N]).transpose([1, 2, 0]);
    return [pat.mul(bosCol).sum(-1), vq.square().sum(-1).sqrt(), outN];
  });
}

async function accumulateBos(model: ModelView, c: Chunk, acc: BosAcc, counted: number[][], residNames: HookName[]): Promise<void> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const kv = kvIndex(H, model.cfg.n_kv_heads ?? H);
  const rnT = residNames.map((n) => tf.tidy(() => c.cache.get(n).toFloat().square().sum(-1).sqrt()));
  const layerT = Array.from({ length: L }, (_, l) => layerTensors(model, c, l, kv));
  const [rn, layers] = await Promise.all([readAll<number[][][]>(rnT), Promise.all(layerT.map((ts) => readAll<[number[][][], number[][][], number[][][]]>(ts)))]);
  c.ids.forEach((row, b) => {
    const f = c.first[b];
    const others = row.length - f - 1;
    layers.forEach(([P, RV, VO], l) => {
      for (let h = 0; h < H; h++) {
        row.forEach((_, i) => {
          if (counted[c.start + b][i]) {
            acc.sink[l][h] += P[b][h][i];
            acc.sinkN[l][h]++;
          }
        });
        acc.v.vB[l][h] += RV[b][f][h];
        acc.v.oB[l][h] += VO[b][f][h];
        for (let j = f + 1; j < row.length; j++) {
          acc.v.vO[l][h] += RV[b][j][h];
          acc.v.oO[l][h] += VO[b][j][h];
        }
      }
    });
    rn.forEach((R, s) => {
      acc.rB[s] += R[b][f];
      for (let j = f + 1; j < row.length; j++) acc.rO[s] += R[b][j];
    });
    acc.vBN++;
    acc.vON += others;
  });
}

/** Which (prompt, query) pairs count for the attention sink. */
function countedQueries(mask: number[][], first: number[], queryMask: number[][] | undefined, sinkQueries: 'all' | 'after-bos'): number[][] {
  if (sinkQueries !== 'all' && sinkQueries !== 'after-bos') throw new ValueError('sinkQueries', expectedFound("'all' | 'after-bos'", sinkQueries));
  if (queryMask && (queryMask.length !== mask.length || queryMask.some((r, b) => !Array.isArray(r) || r.length !== mask[b].length))) {
    throw new ShapeError('queryMask', expectedFound(`[${mask.length}, ${mask[0].length}] like the tokens`, `[${queryMask.length}, ${queryMask[0]?.length}]`));
  }
  const counted = mask.map((r, b) => r.map((m, i) => (m === 1 && (!queryMask || queryMask[b][i] === 1) && (sinkQueries === 'all' || i > first[b]) ? 1 : 0)));
  if (!counted.some((r) => r.includes(1))) throw new ValueError('queryMask', 'expected at least one counted query, found none');
  return counted;
}

/**
 * BOS statistics of a model on prompts ("BOS" = the first real token of each prompt, left padding
 * read from the mask), with the authors' definitions as defaults: the attention sink averages A[i, BOS]
 * over every counted (prompt, query) pair, BOS's own query included; the value drain is the raw
 * ||v|| at BOS; residual norms cover the L + 1 hidden states, the last after the final norm. Every
 * prompt needs at least 2 real tokens.
 */
export async function bosStats(model: ModelView, batch: Batch, opts: BosStatsOptions = {}): Promise<BosStats> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const residNames = residualStateNames(L, opts.residual);
  const host = await readBatch(batch);
  const first = firstRealIndex(host.mask);
  if (first.some((f) => f >= host.ids[0].length - 1)) throw new ValueError('batch.tokens', 'expected every prompt to have at least 2 real tokens (BOS and one more)');
  const counted = countedQueries(host.mask, first, opts.queryMask, opts.sinkQueries ?? 'all');
  const names: HookName[] = [...patternNames(L), ...Array.from({ length: L }, (_, l) => actName('v', l)), ...residNames];
  const acc = new BosAcc(L, H, residNames.length);
  await runChunks(model, { tokens: host.ids, attentionMask: host.mask }, names, opts, (c) => accumulateBos(model, c, acc, counted, residNames));
  const div = (g: number[][], n: number | number[][]) => g.map((r, l) => r.map((x, h) => x / (typeof n === 'number' ? n : n[l][h])));
  const res = {
    attnSink: div(acc.sink, acc.sinkN),
    valueNormBos: div(acc.v.vB, acc.vBN),
    valueNormOther: div(acc.v.vO, acc.vON),
    valueOutNormBos: div(acc.v.oB, acc.vBN),
    valueOutNormOther: div(acc.v.oO, acc.vON),
    residNames,
    residNormBos: acc.rB.map((x) => x / acc.vBN),
    residNormOther: acc.rO.map((x) => x / acc.vON),
  };
  const params = { bos: 'first real token', sinkQueries: opts.sinkQueries ?? 'all', queryMask: !!opts.queryMask, residual: opts.residual ?? 'hidden-states', value: 'raw ||v||' };
  const scores = makeHeadScores('bos-sink', res.attnSink, params, {
    data: { prompts: host.ids.length },
    ...(modelName(model) ? { model: modelName(model) } : {}),
    extra: { valueNormBos: res.valueNormBos, valueNormOther: res.valueNormOther },
  });
  return { ...res, scores };
}

// ---------------------------------------------------------------------------------------------
// intervention test
// ---------------------------------------------------------------------------------------------

/** An input domain: a named Batch, with an optional mask of the targets whose loss counts. */
export interface DormantDomain extends Batch {
  name: string;
  /**
   * Which predictions count, aligned with the TARGET token: lossMask[b][j] = 1 means the loss of
   * predicting token j (from position j - 1) is included. Default: every real token after the
   * first real one. Pad positions never count.
   */
  lossMask?: number[][];
}

export interface DormantTestOptions {
  /**
   * 'zero': the head's output is zeroed (ZeroOutAttentionHeadHook, LLM/src/hook.py lines 66-84, sets
   * the head's attention weights to 0; tflens zeroes its hook_z, which is the same z = A v = 0);
   * 'bos': all of the head's attention moves to the first real token (MoveAttentionToBOSHook,
   * hook.py lines 87-106: weights set to 0, then column 0 to 1).
   */
  intervention?: 'zero' | 'bos';
  /** |delta loss| <= tolerance -> dormant (default 0.01 nats; the authors compare loss curves, no threshold in their code). */
  tolerance?: number;
  /** Restrict to these heads ([layer, head] pairs); default all. */
  heads?: Array<[number, number]>;
  /** Called after each head (for progress displays). */
  onProgress?: (done: number, total: number) => void;
}

export type DormantStatus = 'dormant' | 'active' | 'negative';

export interface DormantRow {
  domain: string;
  layer: number;
  head: number;
  baseLoss: number;
  ablatedLoss: number;
  delta: number;
  /** dormant: |delta| <= tolerance; active: delta > tolerance; negative: the loss drops by more than the tolerance. */
  status: DormantStatus;
}

export interface DormantTestResult {
  rows: DormantRow[];
  /** One HeadScores per domain (method "dormant-test", score = delta loss, extra.dormant = 1/0; heads not tested: 0 with extra.tested = 0). */
  scores: Record<string, HeadScores>;
  params: { intervention: 'zero' | 'bos'; tolerance: number };
}

/** A domain on the device: tokens, mask, targets, the loss weights and the one-hot BOS rows. */
interface DomainTensors {
  ids: number[][];
  mask: number[][];
  targets: tf.Tensor2D;
  weight: tf.Tensor2D;
  count: number;
  bosRows: tf.Tensor;
}

/**
 * Mean next-token cross-entropy over the counted targets (LLM/src/loss_ppl.py lines 5-15, ce_loss: the mean over
 * every shifted position; pads and the first real token are never targets).
 */
async function meanLoss(logits: tf.Tensor, d: DomainTensors): Promise<number> {
  const t = tf.tidy(() => {
    const [, N, V] = logits.shape;
    const lg = logits.toFloat().slice([0, 0, 0], [-1, N - 1, V]);
    const rowsN = d.targets.size;
    const flatIdx = tf.range(0, rowsN, 1, 'int32').mul(tf.scalar(V, 'int32')).add(d.targets.reshape([rowsN]));
    const picked = tf.gather(lg.reshape([rowsN * V]), flatIdx).reshape(d.targets.shape);
    return lg.logSumExp(-1).sub(picked).mul(d.weight).sum().div(d.count);
  });
  logits.dispose();
  const v = (await readAll<[number]>([t]))[0];
  if (!Number.isFinite(v)) throw new ValueError('loss', expectedFound('a finite loss', v));
  return v;
}

async function domainTensors(d: DormantDomain, di: number): Promise<DomainTensors> {
  const { ids, mask } = await readBatch(d, `domains[${di}]`);
  const first = firstRealIndex(mask, `domains[${di}].attentionMask`);
  const [B, N] = [ids.length, ids[0].length];
  if (N < 2) throw new ShapeError(`domains[${di}].tokens`, expectedFound('at least 2 positions', N));
  const lm = d.lossMask ? await hostMask(d.lossMask, B, N, `domains[${di}].lossMask`) : null;
  const w = ids.map((_, b) => Array.from({ length: N - 1 }, (_, k) => ((lm ? lm[b][k + 1] === 1 : true) && k + 1 > first[b] ? 1 : 0)));
  const count = w.flat().reduce((a: number, x) => a + x, 0);
  if (count === 0) throw new ValueError(`domains[${di}].lossMask`, 'expected at least one counted target token, found none');
  return {
    ids,
    mask,
    count,
    targets: tf.tensor2d(ids.map((r) => r.slice(1)), [B, N - 1], 'int32'),
    weight: tf.tensor2d(w, [B, N - 1], 'float32'),
    bosRows: tf.tidy(() => tf.oneHot(tf.tensor1d(first, 'int32'), N).toFloat().reshape([B, 1, 1, N]).tile([1, 1, N, 1])),
  };
}

/** The hook of one intervention on head (l, h). */
function interventionHook(intervention: 'zero' | 'bos', l: number, h: number, bosRows: tf.Tensor): HookSpec {
  const keep = (n: number, axis: number) => {
    const shape = new Array(4).fill(1);
    shape[axis] = n;
    return tf.tensor(Array.from({ length: n }, (_, k) => (k === h ? 0 : 1)), shape, 'float32');
  };
  if (intervention === 'zero') return [actName('z', l), (z) => tf.tidy(() => z.mul(keep(z.shape[2] as number, 2)))];
  return [
    actName('pattern', l),
    (p) =>
      tf.tidy(() => {
        const k = keep(p.shape[1] as number, 1);
        return p.mul(k).add(bosRows.mul(tf.scalar(1).sub(k)));
      }),
  ];
}

function checkDormantArgs(model: ModelView, domains: DormantDomain[], opts: DormantTestOptions): { heads: Array<[number, number]>; intervention: 'zero' | 'bos'; tolerance: number } {
  const intervention = opts.intervention ?? 'zero';
  if (intervention !== 'zero' && intervention !== 'bos') throw new ValueError('intervention', expectedFound("'zero' | 'bos'", intervention));
  const tolerance = opts.tolerance ?? 0.01;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new ValueError('tolerance', expectedFound('a non-negative number', tolerance));
  if (!Array.isArray(domains) || domains.length === 0) throw new ValueError('domains', expectedFound('at least one {name, tokens} domain', domains));
  const { n_layers: L, n_heads: H } = model.cfg;
  const heads = opts.heads ?? grid(L, H, (l, h) => [l, h] as [number, number]).flat();
  heads.forEach(([l, h], i) => {
    if (!Number.isInteger(l) || l < 0 || l >= L || !Number.isInteger(h) || h < 0 || h >= H) throw new ValueError(`heads[${i}]`, expectedFound(`[layer < ${L}, head < ${H}]`, [l, h]));
  });
  const names = new Set<string>();
  domains.forEach((d, i) => {
    if (!d || typeof d.name !== 'string' || !d.name) throw new ValueError(`domains[${i}].name`, expectedFound('a non-empty name', d?.name));
    if (names.has(d.name)) throw new ValueError(`domains[${i}].name`, expectedFound('a unique name', d.name));
    names.add(d.name);
  });
  return { heads, intervention, tolerance };
}

/**
 * Per-head intervention test on input domains (the authors' LLM/intervene_each_head.py: one forward
 * pass per head and domain, lines 76-90): the clean mean next-token loss and the loss with one head intervened on;
 * dormant if |delta| <= tolerance, active if the loss rises by more.
 */
export async function dormantTest(model: ModelView, domains: DormantDomain[], opts: DormantTestOptions = {}): Promise<DormantTestResult> {
  const { heads, intervention, tolerance } = checkDormantArgs(model, domains, opts);
  const { n_layers: L, n_heads: H } = model.cfg;
  const rows: DormantRow[] = [];
  const scores: Record<string, HeadScores> = {};
  const total = heads.length * domains.length;
  for (const [di, d] of domains.entries()) {
    const t = await domainTensors(d, di);
    try {
      const run = (fwdHooks: HookSpec[]) => model.runWithHooks(t.ids, { fwdHooks, attentionMask: t.mask }).then((lg) => meanLoss(lg, t));
      const base = await run([]);
      const delta = grid(L, H, () => 0);
      const dormant = grid(L, H, () => 0);
      const tested = grid(L, H, () => 0);
      for (const [l, h] of heads) {
        const ablated = await run([interventionHook(intervention, l, h, t.bosRows)]);
        const dl = ablated - base;
        const status: DormantStatus = Math.abs(dl) <= tolerance ? 'dormant' : dl > 0 ? 'active' : 'negative';
        rows.push({ domain: d.name, layer: l, head: h, baseLoss: base, ablatedLoss: ablated, delta: dl, status });
        delta[l][h] = dl;
        dormant[l][h] = status === 'dormant' ? 1 : 0;
        tested[l][h] = 1;
        opts.onProgress?.(rows.length, total);
      }
      scores[d.name] = makeHeadScores('dormant-test', delta, { intervention, tolerance, baseLoss: base }, {
        data: { domain: d.name, prompts: t.ids.length, targets: t.count },
        ...(modelName(model) ? { model: modelName(model) } : {}),
        extra: { dormant, tested },
      });
    } finally {
      tf.dispose([t.targets, t.weight, t.bosRows]);
    }
  }
  return { rows, scores, params: { intervention, tolerance } };
}

// ---------------------------------------------------------------------------------------------
// entropy detector
// ---------------------------------------------------------------------------------------------

export interface EntropyDetectorOptions {
  /** Dormant needs mean normalised row entropy < tauRow (default 0.3; the authors' hooks take it as an argument, no default). */
  tauRow?: number;
  /** ... and max normalised column entropy > tauCol (default 0.9; likewise). */
  tauCol?: number;
}

export interface EntropyDetectorResult {
  params: { tauRow: number; tauCol: number };
  /** rowEntropy[layer][head]: mean over prompts of the head's mean normalised row entropy. */
  rowEntropy: number[][];
  /** colEntropy[layer][head]: mean over prompts of the head's max normalised column entropy. */
  colEntropy: number[][];
  /** method "dormant-entropy": score = fraction of prompts on which the head is classified dormant. */
  scores: HeadScores;
}

function checkTaus(opts: EntropyDetectorOptions): { tauRow: number; tauCol: number } {
  const tauRow = opts.tauRow ?? 0.3;
  const tauCol = opts.tauCol ?? 0.9;
  for (const [k, v] of [['tauRow', tauRow], ['tauCol', tauCol]] as const) {
    if (!Number.isFinite(v) || v < 0 || v > 1) throw new ValueError(k, expectedFound('a number in [0, 1]', v));
  }
  return { tauRow, tauCol };
}

/** Per-prompt [row, col] entropies of every head: out[prompt][layer][head] = [row, col]. */
async function entropiesPerPrompt(patterns: tf.Tensor[], mask: number[][]): Promise<number[][][][]> {
  const layers = await Promise.all(
    patterns.map((p) => {
      const e = headEntropies(p, mask);
      return readAll<[number[][], number[][]]>([e.row, e.col]);
    }),
  );
  return mask.map((_, b) => layers.map(([row, col]) => row[b].map((r, h) => [r, col[b][h]])));
}

function entropyResult(per: number[][][][], taus: { tauRow: number; tauCol: number }, model?: string): EntropyDetectorResult {
  const B = per.length;
  const [L, H] = [per[0].length, per[0][0].length];
  const mean = (f: (x: number[]) => number) => grid(L, H, (l, h) => per.reduce((s, p) => s + f(p[l][h]), 0) / B);
  const rowEntropy = mean((x) => x[0]);
  const colEntropy = mean((x) => x[1]);
  const frac = mean((x) => (x[0] < taus.tauRow && x[1] > taus.tauCol ? 1 : 0));
  const scores = makeHeadScores('dormant-entropy', frac, { ...taus, row: 'mean normalised row entropy', column: 'max normalised column entropy' }, {
    data: { prompts: B },
    ...(model ? { model } : {}),
    extra: { rowEntropy, colEntropy },
  });
  return { params: taus, rowEntropy, colEntropy, scores };
}

/**
 * Entropy detector (LLM/src/entropy.py lines 4-52 with the condition of
 * ZeroOutAttentionSinkHeadWithEntropyDetectionHook, LLM/src/hook.py line 125), applied per prompt on its real tokens:
 *  - row i (relative r): p = A[i, :] over the r + 1 visible keys, H_row(i) = entropy(p) / log(r + 1);
 *    the first row (log 1 = 0) counts as 0. Head row entropy = mean over all real rows.
 *  - column j: q = A[j.., j] / sum over the N - j queries that see j, H_col(j) = entropy(q) / log(N - j);
 *    the last column counts as 0. Head column entropy = max over columns.
 *  - dormant on a prompt iff row entropy < tauRow and column entropy > tauCol.
 */
export async function entropyDetector(patterns: tf.Tensor[], opts: EntropyDetectorOptions & { attentionMask?: MaskInput; model?: string } = {}): Promise<EntropyDetectorResult> {
  const taus = checkTaus(opts);
  const [B, , N] = checkPatterns(patterns);
  const mask = await hostMask(opts.attentionMask, B, N);
  return entropyResult(await entropiesPerPrompt(patterns, mask), taus, opts.model);
}

/** Entropy detector on a model's patterns for a batch of prompts. */
export async function entropyDormancy(model: ModelView, batch: Batch, opts: EntropyDetectorOptions & RunOptions = {}): Promise<EntropyDetectorResult> {
  const taus = checkTaus(opts);
  const L = model.cfg.n_layers;
  const { results } = await runChunks(model, batch, patternNames(L), opts, (c) => entropiesPerPrompt(patternNames(L).map((n) => c.cache.get(n)), c.mask));
  return entropyResult(results.flat(), taus, modelName(model));
}
