/**
 * Retrieval-head scores (Wu et al., "Retrieval Head Mechanistically Explains Long-Context
 * Factuality", code nightdessert/Retrieval_Head, retrieval_head_detection.py). METHODS.md section 6.
 *
 * What the authors' code does, and what this module reproduces:
 *  - the prompt is prefilled without its last token; decoding then feeds the last prompt token, so
 *    at every decoding step the "current query" is the token just fed and the generated token is
 *    the argmax of that step's logits. Each step, for every (layer, head), the top-1 key of the
 *    query's attention row is taken (ties: the lowest position); when needleStart <= j < needleEnd
 *    and the generated token equals inputIds[j], the head's score for this sample grows by
 *    1 / (needleEnd - needleStart). A head scores at most once per step. Steps are counted (the
 *    sum can exceed 1 when the head copies the same needle token twice); decoding stops after a
 *    newline token, and that step is scored too.
 *  - a sample counts only when ROUGE-1 recall of the answer in the response is > 0.5
 *    (rouge_score with the Porter stemmer); only counted samples are appended to the per-head list.
 *  - the final score of a head is the mean of its list; the JSON file is {"layer-head": [...]}.
 * The paper's set form, |copied token set ∩ needle token set| / |needle token set| (<= 1), is the
 * 'set' variant.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, FormatError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { rougeRecall1, type RougeOptions } from './rouge.js';
import { mulberry32 } from '../util/random.js';
import type { HookSpec } from '../hooks/registry.js';
import { generate, type HookedTransformer } from '../model/index.js';

/**
 * The needle span [start, end) in the prompt ids, searched as the authors' code does: for each
 * start i in order, the window ids[i : i + len(answer)] (shorter at the end of the prompt) is
 * taken; the first window whose token SET covers more than `minOverlap` (0.9) of the answer's
 * token set wins, and the span is [i, i + len(answer)) (not clipped, as in the code). null when
 * no window qualifies (the code returns -1, -1).
 */
export function needleSpan(contextIds: number[], answerIds: number[], minOverlap = 0.9): { start: number; end: number } | null {
  if (!Array.isArray(contextIds)) throw new ConfigError('contextIds', expectedFound('number[]', typeof contextIds));
  if (!Array.isArray(answerIds) || answerIds.length === 0) {
    throw new ValueError('answerIds', expectedFound('a non-empty token id list', answerIds));
  }
  const need = new Set(answerIds);
  const len = answerIds.length;
  for (let i = 0; i < contextIds.length; i++) {
    const win = new Set(contextIds.slice(i, i + len));
    let inter = 0;
    for (const t of need) if (win.has(t)) inter++;
    if (inter / need.size > minOverlap) return { start: i, end: i + len };
  }
  return null;
}

/**
 * One decoding step of the code's rule: which heads copied from the needle. `topKeys[l][h]` is the
 * argmax key of (layer l, head h) for the current query. Returns hits[l][h].
 */
export function retrievalScoreStep(
  topKeys: number[][],
  generatedToken: number,
  inputIds: number[],
  span: { start: number; end: number },
): boolean[][] {
  if (!(span.end > span.start)) throw new ValueError('span', expectedFound('end > start', span));
  return topKeys.map((row) =>
    row.map((j) => span.start <= j && j < span.end && j < inputIds.length && inputIds[j] === generatedToken),
  );
}

/**
 * Argmax keys [layer][head] of the last query row from per-layer patterns [batch, head, q, k]
 * (or [head, q, k]); batch element `batchIndex`. Reads back only the argmax indices.
 */
export function lastRowArgmax(patterns: tf.Tensor[], batchIndex = 0): number[][] {
  return patterns.map((p, l) => {
    const idx = tf.tidy(() => {
      let x = p;
      if (x.rank === 3) x = x.expandDims(0);
      if (x.rank !== 4) throw new ShapeError(`patterns[${l}]`, expectedFound('[batch, head, q, k]', `[${p.shape}]`));
      const [b, h, q, k] = x.shape;
      if (batchIndex >= b) throw new ShapeError(`patterns[${l}]`, expectedFound(`batch > ${batchIndex}`, b));
      const row = x.slice([batchIndex, 0, q - 1, 0], [1, h, 1, k]).reshape([h, k]);
      // tf.argMax's tie order is backend-defined; take the lowest maximal index explicitly
      const mx = row.max(1, true);
      const pos = tf.range(0, k, 1, 'float32').reshape([1, k]);
      return tf.where(tf.equal(row, mx), tf.broadcastTo(pos, [h, k]), tf.fill([h, k], k)).min(1);
    });
    const out = Array.from(idx.dataSync());
    idx.dispose();
    return out;
  });
}

export type RetrievalVariant = 'code' | 'set';

export interface RetrievalScorerOptions {
  nLayers: number;
  nHeads: number;
  /** 'code' (default): step counts / span length; 'set': |copied set ∩ needle set| / |needle set|. */
  variant?: RetrievalVariant;
  /** Count a sample when ROUGE-1 recall > minRouge. Default 0.5. */
  minRouge?: number;
  rouge?: RougeOptions;
}

export interface RetrievalSample {
  /** Per (layer, head) score of this sample. */
  scores: number[][];
  rouge: number;
  counted: boolean;
  steps: number;
  span: { start: number; end: number };
  meta?: Record<string, unknown>;
}

/**
 * Accumulates retrieval scores over samples and decoding steps.
 *   scorer.beginSample(promptIds, span)
 *   for each decoding step: scorer.step(topKeys or patterns, generatedToken)
 *   scorer.endSample({ answer, response })   // ROUGE filter
 *   scorer.headScores()  /  toRetrievalHeadJson(scorer)
 */
export class RetrievalScorer {
  readonly nLayers: number;
  readonly nHeads: number;
  readonly variant: RetrievalVariant;
  readonly minRouge: number;
  readonly samples: RetrievalSample[] = [];
  private rougeOpts: RougeOptions;
  private cur: { ids: number[]; span: { start: number; end: number }; acc: number[][]; copied: Set<number>[][]; steps: number } | null = null;

  constructor(opts: RetrievalScorerOptions) {
    const { nLayers, nHeads } = opts;
    if (!Number.isInteger(nLayers) || nLayers <= 0) throw new ConfigError('nLayers', expectedFound('a positive integer', nLayers));
    if (!Number.isInteger(nHeads) || nHeads <= 0) throw new ConfigError('nHeads', expectedFound('a positive integer', nHeads));
    this.nLayers = nLayers;
    this.nHeads = nHeads;
    this.variant = opts.variant ?? 'code';
    if (this.variant !== 'code' && this.variant !== 'set') throw new ConfigError('variant', expectedFound("'code' | 'set'", this.variant));
    this.minRouge = opts.minRouge ?? 0.5;
    this.rougeOpts = opts.rouge ?? {};
  }

  beginSample(promptIds: number[], span: { start: number; end: number } | null): void {
    if (!span) throw new ValueError('span', 'no needle span (needleSpan found no window covering the answer)');
    if (!(Number.isInteger(span.start) && Number.isInteger(span.end) && span.end > span.start && span.start >= 0)) {
      throw new ValueError('span', expectedFound('integers 0 <= start < end', span));
    }
    this.cur = {
      ids: promptIds.slice(),
      span: { ...span },
      acc: Array.from({ length: this.nLayers }, () => new Array(this.nHeads).fill(0)),
      copied: Array.from({ length: this.nLayers }, () => Array.from({ length: this.nHeads }, () => new Set<number>())),
      steps: 0,
    };
  }

  /** One decoding step: `top` is argmax keys [layer][head] or the per-layer patterns of the step. */
  step(top: number[][] | tf.Tensor[], generatedToken: number): boolean[][] {
    const cur = this.cur;
    if (!cur) throw new ValueError('RetrievalScorer.step', 'call beginSample first');
    const keys = top.length && top[0] instanceof tf.Tensor ? lastRowArgmax(top as tf.Tensor[]) : (top as number[][]);
    if (keys.length !== this.nLayers || keys.some((r) => r.length !== this.nHeads)) {
      throw new ShapeError('step(top)', expectedFound(`${this.nLayers} x ${this.nHeads}`, `${keys.length} x ${keys[0]?.length}`));
    }
    const hits = retrievalScoreStep(keys, generatedToken, cur.ids, cur.span);
    const inc = 1 / (cur.span.end - cur.span.start);
    for (let l = 0; l < this.nLayers; l++) {
      for (let h = 0; h < this.nHeads; h++) {
        if (hits[l][h]) {
          cur.acc[l][h] += inc;
          cur.copied[l][h].add(generatedToken);
        }
      }
    }
    cur.steps++;
    return hits;
  }

  /**
   * Close the sample. Give `rouge` directly, or `answer` and `response` (strings or token lists)
   * to compute ROUGE-1 recall. Returns the sample record.
   */
  endSample(opts: { rouge?: number; answer?: string | Array<string | number>; response?: string | Array<string | number>; meta?: Record<string, unknown> }): RetrievalSample {
    const cur = this.cur;
    if (!cur) throw new ValueError('RetrievalScorer.endSample', 'call beginSample first');
    let rouge = opts.rouge;
    if (rouge === undefined) {
      if (opts.answer === undefined || opts.response === undefined) {
        throw new ConfigError('endSample', 'give rouge, or answer and response');
      }
      rouge = rougeRecall1(opts.answer, opts.response, this.rougeOpts);
    }
    if (!Number.isFinite(rouge)) throw new ValueError('rouge', expectedFound('a finite number', rouge));
    let scores: number[][];
    if (this.variant === 'code') scores = cur.acc;
    else {
      const needle = new Set(cur.ids.slice(cur.span.start, cur.span.end));
      scores = cur.copied.map((row) =>
        row.map((s) => {
          let c = 0;
          for (const t of s) if (needle.has(t)) c++;
          return needle.size ? c / needle.size : 0;
        }),
      );
    }
    const sample: RetrievalSample = { scores, rouge, counted: rouge > this.minRouge, steps: cur.steps, span: cur.span, meta: opts.meta };
    this.samples.push(sample);
    this.cur = null;
    return sample;
  }

  /** Per-head lists of counted-sample scores, [layer][head][sample]. */
  perSample(): number[][][] {
    const counted = this.samples.filter((s) => s.counted);
    return Array.from({ length: this.nLayers }, (_, l) => Array.from({ length: this.nHeads }, (_, h) => counted.map((s) => s.scores[l][h])));
  }

  /** Mean over counted samples (0 where none counted; see data.counted). */
  headScores(extra: { model?: string; data?: Record<string, unknown> } = {}): HeadScores {
    return retrievalHeadScores(this.perSample(), {
      variant: this.variant,
      minRouge: this.minRouge,
      model: extra.model,
      data: { samples: this.samples.length, ...extra.data },
    });
  }
}

/** HeadScores (mean over samples) from per-sample lists [layer][head][sample]. */
export function retrievalHeadScores(
  perSample: number[][][],
  opts: { variant?: RetrievalVariant; minRouge?: number; model?: string; data?: Record<string, unknown> } = {},
): HeadScores {
  const counted = perSample[0]?.[0]?.length ?? 0;
  const scores = perSample.map((row) => row.map((xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0)));
  return makeHeadScores(
    'retrieval',
    scores,
    { variant: opts.variant ?? 'code', minRouge: opts.minRouge ?? 0.5, aggregate: 'mean over counted samples' },
    { model: opts.model, data: { counted, ...opts.data } },
  );
}

/** Heads with score > threshold (default 0.1), best first: [layer, head, score]. */
export function retrievalHeads(scores: HeadScores | number[][], opts: { threshold?: number } = {}): Array<[number, number, number]> {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const thr = opts.threshold ?? 0.1;
  const out: Array<[number, number, number]> = [];
  grid.forEach((row, l) => row.forEach((s, h) => {
    if (s > thr) out.push([l, h, s]);
  }));
  out.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  return out;
}

/** The authors' JSON object {"layer-head": [per-sample scores]} (layer-major key order). */
export function toRetrievalHeadJson(src: RetrievalScorer | number[][][]): Record<string, number[]> {
  const per = src instanceof RetrievalScorer ? src.perSample() : src;
  const out: Record<string, number[]> = {};
  per.forEach((row, l) => row.forEach((xs, h) => {
    out[`${l}-${h}`] = xs.slice();
  }));
  return out;
}

/**
 * Parse the authors' JSON (object or string) into per-sample lists [layer][head][sample] plus mean
 * scores. Missing heads get empty lists; nLayers/nHeads default to the largest indices + 1.
 */
export function fromRetrievalHeadJson(
  json: string | Record<string, unknown>,
  opts: { nLayers?: number; nHeads?: number } = {},
): { perSample: number[][][]; scores: HeadScores } {
  let obj: unknown = json;
  if (typeof json === 'string') {
    try {
      obj = JSON.parse(json);
    } catch (e) {
      throw new FormatError('retrieval head JSON', `not valid JSON (${(e as Error).message})`);
    }
  }
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new FormatError('retrieval head JSON', expectedFound('an object {"layer-head": [...]}', typeof obj));
  const entries: Array<[number, number, number[]]> = [];
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const m = /^(\d+)-(\d+)$/.exec(k);
    if (!m) throw new FormatError(`retrieval head JSON key "${k}"`, expectedFound('"layer-head"', k));
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'number' || !Number.isFinite(x))) {
      throw new FormatError(`retrieval head JSON "${k}"`, expectedFound('a list of finite numbers', v));
    }
    entries.push([Number(m[1]), Number(m[2]), v as number[]]);
  }
  const nL = opts.nLayers ?? Math.max(0, ...entries.map((e) => e[0] + 1));
  const nH = opts.nHeads ?? Math.max(0, ...entries.map((e) => e[1] + 1));
  const per: number[][][] = Array.from({ length: nL }, () => Array.from({ length: nH }, () => [] as number[]));
  for (const [l, h, v] of entries) {
    if (l >= nL || h >= nH) throw new FormatError(`retrieval head JSON "${l}-${h}"`, expectedFound(`layer < ${nL}, head < ${nH}`, `${l}-${h}`));
    per[l][h] = v.slice();
  }
  return { perSample: per, scores: retrievalHeadScores(per) };
}

/** Append the lists of b to those of a (the authors merge a new run into an existing file this way). */
export function mergeRetrievalHeadJson(a: Record<string, number[]>, b: Record<string, number[]>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(a)) out[k] = v.slice();
  for (const [k, v] of Object.entries(b)) out[k] = [...(out[k] ?? []), ...v];
  return out;
}

export interface RetrievalSampleOptions {
  /** Needle span; default needleSpan(promptIds, answerIds). */
  span?: { start: number; end: number };
  /** Default 50 (the authors' decode length). */
  maxNewTokens?: number;
  /** Tokens that end decoding after being scored (the authors stop at a newline token). */
  stopTokens?: number[];
  /** Extra hooks during the run (e.g. head masking); they run before the argmax is read. */
  fwdHooks?: HookSpec[];
  /** The answer as text for ROUGE (else the token ids are compared as unigrams). */
  answerText?: string;
  /** Turn generated ids into the response text (default: the model tokenizer, when present). */
  decode?: (ids: number[]) => string;
  meta?: Record<string, unknown>;
}

/**
 * Score one needle-in-a-haystack sample on a model: greedy generation from `promptIds` with a
 * hook reading the argmax key of the last query row of every layer's hook_pattern; each generated
 * token is paired with the patterns of the forward that produced it (the prefill's last row for the
 * first token, as in the authors' code, which feeds the last prompt token as the first decoding
 * step). The sample is closed with ROUGE-1 recall of the answer in the response.
 */
export function scoreRetrievalSample(
  model: HookedTransformer,
  scorer: RetrievalScorer,
  promptIds: number[],
  answerIds: number[],
  opts: RetrievalSampleOptions = {},
): { sample: RetrievalSample; tokens: number[]; response: string | null } {
  if (model.cfg.n_layers !== scorer.nLayers || model.cfg.n_heads !== scorer.nHeads) {
    throw new ConfigError('scorer', expectedFound(`${model.cfg.n_layers} layers x ${model.cfg.n_heads} heads`, `${scorer.nLayers} x ${scorer.nHeads}`));
  }
  const span = opts.span ?? needleSpan(promptIds, answerIds);
  scorer.beginSample(promptIds, span);
  const L = model.cfg.n_layers;
  let buf: Array<number[] | null> = new Array(L).fill(null);
  const reader: HookSpec = [
    (name: string) => /^blocks\.\d+\.attn\.hook_pattern$/.test(name),
    (act, ctx) => {
      if (ctx.layer !== null) buf[ctx.layer] = lastRowArgmax([act])[0];
    },
  ];
  const res = generate(model, [promptIds], {
    maxNewTokens: opts.maxNewTokens ?? 50,
    stopTokens: opts.stopTokens,
    fwdHooks: [...(opts.fwdHooks ?? []), reader],
    onStep: ({ tokens }) => {
      if (buf.some((r) => r === null)) throw new ValueError('scoreRetrievalSample', 'a layer pattern was not seen in this step');
      scorer.step(buf as number[][], tokens[0]);
      buf = new Array(L).fill(null);
    },
  });
  const tokens = res.tokens[0];
  const decode = opts.decode ?? (model.tokenizer ? (ids: number[]) => model.toString(ids) : null);
  const response = decode ? decode(tokens).trim() : null;
  const sample =
    opts.answerText !== undefined && response !== null
      ? scorer.endSample({ answer: opts.answerText, response, meta: opts.meta })
      : scorer.endSample({ answer: answerIds, response: tokens, meta: opts.meta });
  return { sample, tokens, response };
}

/**
 * Head-masking hooks for the causal test: on blocks.L.attn.hook_attn_scores set the given query
 * heads' pre-softmax scores to 0 (uniform attention over the visible keys; the core re-applies
 * the causal mask), by default only while decoding with a KV cache (as in the authors' code).
 */
export function headMaskHooks(heads: Array<[number, number]>, opts: { onlyDecoding?: boolean } = {}): HookSpec[] {
  const onlyDecoding = opts.onlyDecoding ?? true;
  const byLayer = new Map<number, number[]>();
  heads.forEach(([l, h], i) => {
    if (!Number.isInteger(l) || !Number.isInteger(h) || l < 0 || h < 0) throw new ConfigError(`heads[${i}]`, expectedFound('[layer, head] non-negative integers', [l, h]));
    byLayer.set(l, [...(byLayer.get(l) ?? []), h]);
  });
  return [...byLayer.entries()].map(([l, hs]): HookSpec => [
    `blocks.${l}.attn.hook_attn_scores` as `blocks.${number}.attn.hook_attn_scores`,
    (act, ctx) => {
      if (onlyDecoding && !ctx.decoding) return;
      const H = act.shape[1] as number;
      for (const h of hs) if (h >= H) throw new ValueError(`headMaskHooks: blocks.${l}`, expectedFound(`head < ${H}`, h));
      return tf.tidy(() => {
        const keep = tf.tensor1d(Array.from({ length: H }, (_, h) => (hs.includes(h) ? 0 : 1))).reshape([1, H, 1, 1]);
        return tf.mul(act, keep);
      });
    },
  ]);
}

/**
 * K heads drawn (seeded) from those not among the top `exclude` by score: the control set of the
 * masking experiment (K random heads outside the top 100).
 */
export function randomControlHeads(scores: HeadScores | number[][], k: number, opts: { exclude?: number; seed: number }): Array<[number, number]> {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const all: Array<[number, number, number]> = [];
  grid.forEach((row, l) => row.forEach((s, h) => all.push([l, h, s])));
  all.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  const pool = all.slice(opts.exclude ?? 100).map(([l, h]) => [l, h] as [number, number]);
  if (!Number.isInteger(k) || k < 0 || k > pool.length) throw new ConfigError('k', expectedFound(`an integer in [0, ${pool.length}]`, k));
  // seeded partial Fisher-Yates
  const rnd = mulberry32(opts.seed);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rnd() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
}
