/**
 * Active-dormant heads (Guo et al., code GuoTianYu2000/Active-Dormant-Attention; METHODS.md
 * section 5, measures): BOS statistics (attention sink, value-state drain, residual-state peak),
 * the per-head intervention test per input domain, and the entropy detector.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import { actName } from '../hooks/names.js';
import { makeHeadScores } from '../results.js';
import type { HeadScores } from '../results.js';
import {
  checkPatterns,
  firstRealIndex,
  headEntropies,
  forEachChunk,
  grid,
  maskRows,
  modelName,
  prepareBatch,
} from './attention-stats.js';
import type { AnalysisModel, MaskLike, ModelRunOptions, TokensLike } from './attention-stats.js';

// ---------------------------------------------------------------------------------------------
// BOS statistics
// ---------------------------------------------------------------------------------------------

export interface BosStats {
  /** attnSink[layer][head]: mean over prompts and queries i > BOS of A[i, BOS]. */
  attnSink: number[][];
  /** valueNormBos[layer][head]: ||v_BOS W_O^h||, mean over prompts (value-state drain). */
  valueNormBos: number[][];
  /** valueNormOther[layer][head]: ||v_j W_O^h|| averaged over the other real positions, then prompts. */
  valueNormOther: number[][];
  /** rawValueNormBos[layer][head]: ||v_BOS|| of the head's (KV) value vector, without W_O. */
  rawValueNormBos: number[][];
  rawValueNormOther: number[][];
  /** residNormBos[layer]: ||resid_post at BOS|| (residual-state peak), mean over prompts. */
  residNormBos: number[];
  /** residNormOther[layer]: ||resid_post|| averaged over the other real positions, then prompts. */
  residNormOther: number[];
  /** method "bos-sink": score = attnSink; extra columns valueNormBos, valueNormOther. */
  scores: HeadScores;
}

/** kv head of query head h (TransformerLens GQA: repeat_interleave). */
function kvIndex(h: number, nHeads: number, nKv: number): number {
  return Math.floor(h / (nHeads / nKv));
}

/**
 * BOS statistics of a model on prompts: "BOS" is the first real token of each prompt (left padding
 * read from the mask). Residual norms use blocks.L.hook_resid_post (the stream after layer L).
 */
export function bosStats(model: AnalysisModel, tokens: TokensLike, opts: ModelRunOptions = {}): BosStats {
  const batch = prepareBatch(tokens, opts.attentionMask);
  const { n_layers: L, n_heads: H } = model.cfg;
  const nKv = model.cfg.n_kv_heads ?? H;
  const Np = batch.tokens[0].length;
  if (batch.first.some((f) => f >= Np - 1)) throw new ValueError('tokens', 'expected every prompt to have at least 2 real tokens (BOS and one more)');
  const names: string[] = [];
  for (let l = 0; l < L; l++) names.push(actName('pattern', l), actName('v', l), actName('resid_post', l));
  const acc = {
    sink: grid(L, H, () => 0),
    vB: grid(L, H, () => 0),
    vO: grid(L, H, () => 0),
    rvB: grid(L, H, () => 0),
    rvO: grid(L, H, () => 0),
    rB: new Array(L).fill(0),
    rO: new Array(L).fill(0),
  };
  const B = batch.tokens.length;
  forEachChunk(model, batch, names, opts.batchSize, (get, rows) => {
    const b0 = rows.tokens.length;
    for (let l = 0; l < L; l++) {
      const WO = model.params[`blocks.${l}.attn.W_O`];
      if (!WO || WO.rank !== 3) throw new ShapeError(`params.blocks.${l}.attn.W_O`, expectedFound('[n_heads, d_head, d_model]', WO ? `[${WO.shape}]` : 'missing'));
      const [pat, vo, rv, rn] = tf.tidy(() => {
        const pFull = get(actName('pattern', l)).toFloat(); // [b, H, N, N]
        const Nk = pFull.shape[3] as number;
        const bosCol = tf.oneHot(tf.tensor1d(rows.first, 'int32'), Nk).toFloat().reshape([rows.first.length, 1, 1, Nk]);
        const p = pFull.mul(bosCol).sum(-1); // [b, H, N]: attention of each query to BOS
        const v = get(actName('v', l)).toFloat(); // [b, N, Hkv, dh]
        const idx = tf.tensor1d(Array.from({ length: H }, (_, h) => kvIndex(h, H, nKv)), 'int32');
        const vq = tf.gather(v, idx, 2); // [b, N, H, dh]
        const [bb, N, , dh] = vq.shape;
        const vh = vq.transpose([2, 0, 1, 3]).reshape([H, bb * N, dh]);
        const out = tf.matMul(vh, WO.toFloat()); // [H, b*N, d_model]
        const voN = out.square().sum(-1).sqrt().reshape([H, bb, N]).transpose([1, 2, 0]); // [b, N, H]
        const rawN = v.square().sum(-1).sqrt(); // [b, N, Hkv]
        const r = get(actName('resid_post', l)).toFloat();
        const rN = r.square().sum(-1).sqrt(); // [b, N]
        return [p, voN, tf.gather(rawN, idx, 2), rN];
      });
      const P = pat.arraySync() as number[][][];
      const VO = vo.arraySync() as number[][][];
      const RV = rv.arraySync() as number[][][];
      const RN = rn.arraySync() as number[][];
      tf.dispose([pat, vo, rv, rn]);
      for (let b = 0; b < b0; b++) {
        const f = rows.first[b];
        const N = rows.tokens[b].length;
        const others = N - f - 1;
        for (let h = 0; h < H; h++) {
          let s = 0;
          for (let i = f + 1; i < N; i++) s += P[b][h][i];
          acc.sink[l][h] += s / others;
          acc.vB[l][h] += VO[b][f][h];
          acc.rvB[l][h] += RV[b][f][h];
          let so = 0;
          let sr = 0;
          for (let j = f + 1; j < N; j++) {
            so += VO[b][j][h];
            sr += RV[b][j][h];
          }
          acc.vO[l][h] += so / others;
          acc.rvO[l][h] += sr / others;
        }
        acc.rB[l] += RN[b][f];
        let sr = 0;
        for (let j = f + 1; j < N; j++) sr += RN[b][j];
        acc.rO[l] += sr / others;
      }
    }
  });
  const div = (g: number[][]) => g.map((r) => r.map((x) => x / B));
  const res = {
    attnSink: div(acc.sink),
    valueNormBos: div(acc.vB),
    valueNormOther: div(acc.vO),
    rawValueNormBos: div(acc.rvB),
    rawValueNormOther: div(acc.rvO),
    residNormBos: acc.rB.map((x) => x / B),
    residNormOther: acc.rO.map((x) => x / B),
  };
  const scores = makeHeadScores('bos-sink', res.attnSink, { bos: 'first real token', residual: 'hook_resid_post', value: '||v_j W_O^h||' }, {
    data: { prompts: B },
    ...(modelName(model) ? { model: modelName(model) } : {}),
    extra: { valueNormBos: res.valueNormBos, valueNormOther: res.valueNormOther },
  });
  return { ...res, scores };
}

// ---------------------------------------------------------------------------------------------
// intervention test
// ---------------------------------------------------------------------------------------------

export interface DormantDomain {
  name: string;
  tokens: TokensLike;
  attentionMask?: MaskLike;
  /**
   * Which predictions count, aligned with the TARGET token: lossMask[b][j] = 1 means the loss of
   * predicting token j (from position j - 1) is included. Default: every real token after the
   * first real one. Pad positions never count.
   */
  lossMask?: number[][];
}

export interface DormantTestOptions {
  /** 'zero': the head's hook_z is set to 0; 'bos': its hook_pattern rows become one-hot on the first real token. */
  intervention?: 'zero' | 'bos';
  /** |delta loss| <= tolerance -> dormant (default 0.01 nats). */
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

/** Mean next-token cross-entropy over counted targets (token-weighted over the batch). */
function meanLoss(logits: tf.Tensor, targets: tf.Tensor, weight: tf.Tensor, count: number): number {
  const t = tf.tidy(() => {
    const [, N, V] = logits.shape;
    const lg = logits.toFloat().slice([0, 0, 0], [-1, N - 1, V]);
    const lse = lg.logSumExp(-1);
    // gather the target logits (no [batch, pos, vocab] one-hot)
    const rowsN = targets.size;
    const flatIdx = tf.range(0, rowsN, 1, 'int32').mul(tf.scalar(V, 'int32')).add(targets.reshape([rowsN]).toInt());
    const picked = tf.gather(lg.reshape([rowsN * V]), flatIdx).reshape(targets.shape);
    return lse.sub(picked).mul(weight).sum().div(count);
  });
  const v = t.dataSync()[0];
  t.dispose();
  if (!Number.isFinite(v)) throw new ValueError('loss', expectedFound('a finite loss', v));
  return v;
}

/**
 * Per-head intervention test on input domains: for each domain the clean mean next-token loss and
 * the loss with one head intervened on (one forward pass per head). dormant if |delta| <= tolerance,
 * active if the loss rises by more.
 */
export function dormantTest(model: AnalysisModel, domains: DormantDomain[], opts: DormantTestOptions = {}): DormantTestResult {
  const intervention = opts.intervention ?? 'zero';
  if (intervention !== 'zero' && intervention !== 'bos') throw new ValueError('intervention', expectedFound("'zero' | 'bos'", intervention));
  const tolerance = opts.tolerance ?? 0.01;
  if (!Number.isFinite(tolerance) || tolerance < 0) throw new ValueError('tolerance', expectedFound('a non-negative number', tolerance));
  if (!Array.isArray(domains) || domains.length === 0) throw new ValueError('domains', expectedFound('at least one {name, tokens} domain', domains));
  const { n_layers: L, n_heads: H } = model.cfg;
  const heads = opts.heads ?? grid(L, H, (l, h) => [l, h] as [number, number]).flat();
  heads.forEach(([l, h], i) => {
    if (!Number.isInteger(l) || l < 0 || l >= L || !Number.isInteger(h) || h < 0 || h >= H) {
      throw new ValueError(`heads[${i}]`, expectedFound(`[layer < ${L}, head < ${H}]`, [l, h]));
    }
  });
  const names = new Set<string>();
  domains.forEach((d, i) => {
    if (!d || typeof d.name !== 'string' || !d.name) throw new ValueError(`domains[${i}].name`, expectedFound('a non-empty name', d?.name));
    if (names.has(d.name)) throw new ValueError(`domains[${i}].name`, expectedFound('a unique name', d.name));
    names.add(d.name);
  });
  const rows: DormantRow[] = [];
  const scores: Record<string, HeadScores> = {};
  const total = heads.length * domains.length;
  let done = 0;
  for (const [di, d] of domains.entries()) {
    const batch = prepareBatch(d.tokens, d.attentionMask);
    const B = batch.tokens.length;
    const N = batch.tokens[0].length;
    if (N < 2) throw new ShapeError(`domains[${di}].tokens`, expectedFound('at least 2 positions', N));
    const lm = d.lossMask ? maskRows(d.lossMask, B, N, `domains[${di}].lossMask`) : batch.mask.map((r, b) => r.map((_, j) => (j > batch.first[b] ? 1 : 0)));
    const w: number[][] = [];
    let count = 0;
    for (let b = 0; b < B; b++) {
      const row: number[] = [];
      for (let j = 1; j < N; j++) {
        const c = lm[b][j] === 1 && j > batch.first[b] ? 1 : 0;
        row.push(c);
        count += c;
      }
      w.push(row);
    }
    if (count === 0) throw new ValueError(`domains[${di}].lossMask`, 'expected at least one counted target token, found none');
    const tokT = tf.tensor2d(batch.tokens, undefined, 'int32');
    const maskT = tf.tensor2d(batch.mask, undefined, 'int32');
    const targets = tf.tensor2d(batch.tokens.map((r) => r.slice(1)), [B, N - 1], 'int32');
    const weight = tf.tensor2d(w, [B, N - 1], 'float32');
    // one-hot rows on the first real token: [B, 1, N, N]
    const bosOneHot = tf.tidy(() =>
      tf.oneHot(tf.tensor1d(batch.first, 'int32'), N).toFloat().reshape([B, 1, 1, N]).tile([1, 1, N, 1]),
    );
    try {
      const base = (() => {
        const lg = model.runWithHooks(tokT, { fwdHooks: [], attentionMask: maskT });
        try {
          return meanLoss(lg, targets, weight, count);
        } finally {
          lg.dispose();
        }
      })();
      const delta = grid(L, H, () => 0);
      const dormant = grid(L, H, () => 0);
      const tested = grid(L, H, () => 0);
      for (const [l, h] of heads) {
        const sel = (n: number, axis: number, rank: number) => {
          const shape = new Array(rank).fill(1);
          shape[axis] = n;
          return tf.tensor(Array.from({ length: n }, (_, k) => (k === h ? 1 : 0)), shape, 'float32');
        };
        const hook =
          intervention === 'zero'
            ? [actName('z', l), (z: tf.Tensor) => tf.tidy(() => z.mul(tf.scalar(1).sub(sel(z.shape[2] as number, 2, 4))))]
            : [actName('pattern', l), (p: tf.Tensor) => tf.tidy(() => {
                const s = sel(p.shape[1] as number, 1, 4);
                return p.mul(tf.scalar(1).sub(s)).add(bosOneHot.mul(s));
              })];
        const lg = model.runWithHooks(tokT, { fwdHooks: [hook as [string, (a: tf.Tensor) => tf.Tensor]], attentionMask: maskT });
        let ablated: number;
        try {
          ablated = meanLoss(lg, targets, weight, count);
        } finally {
          lg.dispose();
        }
        const dl = ablated - base;
        const status: DormantStatus = Math.abs(dl) <= tolerance ? 'dormant' : dl > 0 ? 'active' : 'negative';
        rows.push({ domain: d.name, layer: l, head: h, baseLoss: base, ablatedLoss: ablated, delta: dl, status });
        delta[l][h] = dl;
        dormant[l][h] = status === 'dormant' ? 1 : 0;
        tested[l][h] = 1;
        done++;
        opts.onProgress?.(done, total);
      }
      scores[d.name] = makeHeadScores('dormant-test', delta, { intervention, tolerance, baseLoss: base }, {
        data: { domain: d.name, prompts: B, targets: count },
        ...(modelName(model) ? { model: modelName(model) } : {}),
        extra: { dormant, tested },
      });
    } finally {
      tf.dispose([tokT, maskT, targets, weight, bosOneHot]);
    }
  }
  return { rows, scores, params: { intervention, tolerance } };
}

// ---------------------------------------------------------------------------------------------
// entropy detector
// ---------------------------------------------------------------------------------------------

export interface EntropyDetectorOptions {
  /** Dormant needs mean normalised row entropy < tauRow (default 0.3). */
  tauRow?: number;
  /** ... and max normalised column entropy > tauCol (default 0.9). */
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

/**
 * Entropy detector (authors' LLM/src/entropy.py, applied per prompt on its real tokens):
 *  - row i (relative r): p = A[i, :] over the r + 1 visible keys, H_row(i) = entropy(p) / log(r + 1);
 *    the first row (log 1 = 0) counts as 0. Head row entropy = mean over all real rows.
 *  - column j: q = A[j.., j] / sum over the N - j queries that see j, H_col(j) = entropy(q) / log(N - j);
 *    the last column counts as 0. Head column entropy = max over columns.
 *  - dormant on a prompt iff row entropy < tauRow and column entropy > tauCol.
 */
export function entropyDetector(patterns: tf.Tensor[], opts: EntropyDetectorOptions & { mask?: MaskLike; model?: string } = {}): EntropyDetectorResult {
  const tauRow = opts.tauRow ?? 0.3;
  const tauCol = opts.tauCol ?? 0.9;
  for (const [k, v] of [['tauRow', tauRow], ['tauCol', tauCol]] as const) {
    if (!Number.isFinite(v) || v < 0 || v > 1) throw new ValueError(k, expectedFound('a number in [0, 1]', v));
  }
  const [B, H, N] = checkPatterns(patterns);
  const mask = maskRows(opts.mask, B, N, 'mask');
  firstRealIndex(mask, 'mask');
  const L = patterns.length;
  const row = grid(L, H, () => 0);
  const col = grid(L, H, () => 0);
  const frac = grid(L, H, () => 0);
  patterns.forEach((p, l) => {
    const e = headEntropies(p, mask);
    const rows = e.row.arraySync() as number[][];
    const cols = e.col.arraySync() as number[][];
    tf.dispose([e.row, e.col]);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const rMean = rows[b][h];
        const cMax = cols[b][h];
        row[l][h] += rMean / B;
        col[l][h] += cMax / B;
        if (rMean < tauRow && cMax > tauCol) frac[l][h] += 1 / B;
      }
    }
  });
  const scores = makeHeadScores('dormant-entropy', frac, { tauRow, tauCol, row: 'mean normalised row entropy', column: 'max normalised column entropy' }, {
    data: { prompts: B },
    ...(opts.model ? { model: opts.model } : {}),
    extra: { rowEntropy: row, colEntropy: col },
  });
  return { params: { tauRow, tauCol }, rowEntropy: row, colEntropy: col, scores };
}

/** Entropy detector on a model's patterns for a batch of prompts. */
export function entropyDormancy(model: AnalysisModel, tokens: TokensLike, opts: EntropyDetectorOptions & ModelRunOptions = {}): EntropyDetectorResult {
  const batch = prepareBatch(tokens, opts.attentionMask);
  const L = model.cfg.n_layers;
  const parts: Array<{ res: EntropyDetectorResult; n: number }> = [];
  forEachChunk(model, batch, Array.from({ length: L }, (_, l) => actName('pattern', l)), opts.batchSize, (get, rows) => {
    const pats = Array.from({ length: L }, (_, l) => get(actName('pattern', l)));
    parts.push({ res: entropyDetector(pats, { tauRow: opts.tauRow, tauCol: opts.tauCol, mask: rows.mask }), n: rows.tokens.length });
  });
  const B = batch.tokens.length;
  const H = model.cfg.n_heads;
  const comb = (f: (r: EntropyDetectorResult) => number[][]) => grid(L, H, (l, h) => parts.reduce((s, p) => s + f(p.res)[l][h] * p.n, 0) / B);
  const rowEntropy = comb((r) => r.rowEntropy);
  const colEntropy = comb((r) => r.colEntropy);
  const frac = comb((r) => r.scores.scores);
  const params = parts[0].res.params;
  const scores = makeHeadScores('dormant-entropy', frac, { ...parts[0].res.scores.params }, {
    data: { prompts: B },
    ...(modelName(model) ? { model: modelName(model) } : {}),
    extra: { rowEntropy, colEntropy },
  });
  return { params, rowEntropy, colEntropy, scores };
}
