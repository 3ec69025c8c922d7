/**
 * Needle-in-a-haystack harness and the retrieval-head masking experiment (Wu et al., "Retrieval
 * Head Mechanistically Explains Long-Context Factuality"; METHODS.md section 6).
 *
 * Protocol (as the authors' code nightdessert/Retrieval_Head runs it):
 *  - a prompt = haystack with the needle inserted at depth d (moved back to a sentence boundary)
 *    + the question; the model is prefilled with the prompt WITHOUT its last token, and greedy
 *    decoding with the KV cache then feeds the last prompt token as the first decoding step, so
 *    every generated token, the first included, comes from a decoding forward;
 *  - decoding stops after maxNewTokens or after a stop token (which is kept and scored);
 *  - accuracy of a sample = ROUGE-1 recall of the answer in the response (rouge_score with the
 *    Porter stemmer; token ids as unigrams when there is no text); exact match = the response
 *    starts with the answer (ROUGE tokens when there is text, else token ids);
 *  - retrieval scores (optional) are read from the same decode: the argmax key of every
 *    (layer, head) at every step, scored by RetrievalScorer (src/analyses/retrieval.ts) against
 *    the needle span (the whole needle, as the code's find_needle_idx(needle));
 *  - head masking (maskingExperiment): the masked heads' pre-softmax scores are set to 0 during
 *    decoding only (headMaskHooks), i.e. uniform attention over the visible keys.
 */
import * as tf from '@tensorflow/tfjs';
import { readFile } from 'node:fs/promises';
import { ConfigError, FormatError, ResolveError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, rankHeads, type HeadScores } from '../results.js';
import type { HookSpec } from '../hooks/registry.js';
import type { HookedTransformer, KVCache } from '../model/hooked.js';
import { disposeKV } from '../model/generate.js';
import { insertNeedle, linspace, makeNeedle, needleFromText, type NeedleExample, type NeedleOptions } from '../data/needle.js';
import { deriveSeed } from '../util/random.js';
import { progress as makeProgress } from '../progress.js';
import { patchingHeatmap } from '../plot/figures.js';
import type { Figure } from '../plot/types.js';
import { rougeRecall1, rougeTokenize } from './rouge.js';
import { RetrievalScorer, headMaskHooks, needleSpan, randomControlHeads, toRetrievalHeadJson, type RetrievalVariant } from './retrieval.js';

// ---------------------------------------------------------------------------------- samples

/** One needle prompt. NeedleExample (src/tasks/needle.ts) has this shape. */
export interface NiahSample {
  /** The prompt ids (BOS + context with the needle + question). */
  tokens: number[];
  /** The answer ids. */
  answer: number[];
  /** The answer as text (ROUGE on text then; else the ids are compared as unigrams). */
  answerText?: string;
  /** [start, end) of the needle in `tokens` (the span retrieval scores look at). */
  needleSpan?: [number, number];
  /** [start, end) of the answer inside the needle (used when spanOf = 'answer'). */
  valueSpan?: [number, number];
  /** The needle ids (searched with the authors' 90% rule when needleSpan is absent). */
  needle?: number[];
  meta?: Record<string, unknown>;
}

export type NiahSampleFn = (length: number, depth: number, seed: number) => NiahSample;

/** A needle with its question and answer, as text (tokenized by the model) or as token ids. */
export interface NiahNeedle<T = string | number[]> {
  needle: T;
  question: T;
  answer: T;
}

/**
 * A haystack source: filler text (tokenized with `tokenizer` or the model's tokenizer) or filler
 * token ids, repeated to the length; one sample per needle in each grid cell. `length` in the grid
 * is the context length in tokens (haystack + needle, without BOS and question), as in the code.
 */
export type NiahSource =
  | {
      haystack: string;
      needles: Array<NiahNeedle<string>>;
      tokenizer?: { encode(text: string): number[] };
      /** Sentence-boundary tokens (default: the tokens of "."). */
      boundaryTokens?: number[];
      /** BOS id (default: the model's; null for none). */
      bosId?: number | null;
    }
  | {
      haystackTokens: number[];
      needles: Array<NiahNeedle<number[]>>;
      boundaryTokens: number[];
      bosId?: number | null;
    };

/**
 * A needle prompt from token ids: the haystack repeated to `contextLength - needle.length` tokens,
 * the needle inserted at `depth` (moved back to a boundary), then the question.
 */
export function needleFromTokens(o: {
  haystack: number[];
  needle: number[];
  question: number[];
  answer: number[];
  contextLength: number;
  depth: number;
  boundaryTokens: number[];
  bosId?: number | null;
}): NeedleExample {
  if (!o.haystack.length) throw new ValueError('needleFromTokens haystack', expectedFound('a non-empty token list', 'empty'));
  if (!o.answer.length) throw new ValueError('needleFromTokens answer', expectedFound('a non-empty token list', 'empty'));
  const hayLen = o.contextLength - o.needle.length;
  if (!Number.isInteger(o.contextLength) || hayLen < 1) {
    throw new ValueError('needleFromTokens contextLength', expectedFound(`an integer > needle length ${o.needle.length}`, o.contextLength));
  }
  const hay: number[] = [];
  while (hay.length < hayLen) hay.push(...o.haystack);
  hay.length = hayLen;
  const ins = insertNeedle(hay, o.needle, o.depth, o.boundaryTokens);
  const bos = o.bosId !== undefined && o.bosId !== null ? [o.bosId] : [];
  const tokens = [...bos, ...ins.tokens, ...o.question];
  const off = bos.length;
  const span: [number, number] = [off + ins.needleSpan[0], off + ins.needleSpan[1]];
  let valueSpan: [number, number] = span;
  for (let s = span[0]; s + o.answer.length <= span[1]; s++) {
    if (o.answer.every((t, j) => tokens[s + j] === t)) {
      valueSpan = [s, s + o.answer.length];
      break;
    }
  }
  return {
    tokens,
    needleSpan: span,
    valueSpan,
    answer: o.answer.slice(),
    key: [],
    questionSpan: [off + ins.tokens.length, tokens.length],
    depth: o.depth,
    contextStart: off,
    insertAt: ins.insertAt,
    requestedAt: ins.requestedAt,
  };
}

/** Sample makers of a source: one per needle, (length, depth) -> sample. */
export function sourceSamples(model: HookedTransformer, source: NiahSource): Array<(length: number, depth: number) => NiahSample> {
  if (!source || !Array.isArray(source.needles) || source.needles.length === 0) {
    throw new ConfigError('source.needles', expectedFound('a non-empty list of {needle, question, answer}', source?.needles));
  }
  const bosId = source.bosId === undefined ? model.bosTokenId() : source.bosId;
  if ('haystack' in source) {
    const tok = source.tokenizer ?? model.tokenizer;
    if (!tok) throw new ConfigError('source.tokenizer', `${model.name} has no tokenizer; give source.tokenizer or haystackTokens`);
    if (typeof source.haystack !== 'string' || !source.haystack.length) throw new ConfigError('source.haystack', expectedFound('non-empty text', source.haystack));
    return source.needles.map((n, i) => {
      for (const k of ['needle', 'question', 'answer'] as const) {
        if (typeof n[k] !== 'string') throw new ConfigError(`source.needles[${i}].${k}`, expectedFound('a string', typeof n[k]));
      }
      const needleIds = tok.encode(n.needle);
      return (length: number, depth: number): NiahSample => {
        const ex = needleFromText({
          tokenizer: tok,
          haystack: source.haystack,
          needle: n.needle,
          question: n.question,
          answer: n.answer,
          contextLength: length,
          depth,
          boundaryTokens: source.boundaryTokens,
          bosId: bosId ?? undefined,
        });
        return { ...ex, answerText: n.answer, needle: needleIds, meta: { needle: i } };
      };
    });
  }
  if (!Array.isArray(source.haystackTokens)) throw new ConfigError('source', 'give haystack (text) or haystackTokens (ids)');
  return source.needles.map((n, i) => {
    for (const k of ['needle', 'question', 'answer'] as const) {
      if (!Array.isArray(n[k])) throw new ConfigError(`source.needles[${i}].${k}`, expectedFound('a token id list', typeof n[k]));
    }
    return (length: number, depth: number): NiahSample => ({
      ...needleFromTokens({
        haystack: source.haystackTokens,
        needle: n.needle,
        question: n.question,
        answer: n.answer,
        contextLength: length,
        depth,
        boundaryTokens: source.boundaryTokens,
        bosId,
      }),
      needle: n.needle.slice(),
      meta: { needle: i },
    });
  });
}

/** Synthetic needle samples (makeNeedle) in a given token format; `length` is the prompt length. */
export function syntheticSamples(format: Omit<NeedleOptions, 'length' | 'depth' | 'seed'>): (length: number, depth: number, seed: number) => NeedleExample {
  return (length, depth, seed) => makeNeedle({ ...format, length, depth, seed });
}

// ---------------------------------------------------------------------------------- decoding

export interface NeedleDecodeOptions {
  maxNewTokens: number;
  /** Tokens that end a row's decoding (kept in its output and scored). */
  stopTokens?: number[];
  /** Hooks active during the prefill and every decoding step (e.g. headMaskHooks). */
  fwdHooks?: HookSpec[];
  /** Record the argmax key of each (layer, head) at every decoding step. */
  recordKeys?: boolean;
}

export interface NeedleDecodeResult {
  /** Generated ids per row (a row stops after its stop token). */
  tokens: number[][];
  /** keys[row][step][layer][head]: argmax key of the step's query row (lowest index on ties); null unless recordKeys. */
  keys: number[][][][] | null;
}

/** Lowest-index argmax of the last query row of a pattern [batch, head, q, k] -> [batch][head]. */
function rowArgmax(p: tf.Tensor): number[][] {
  if (p.rank !== 4) throw new ShapeError('hook_pattern', expectedFound('[batch, head, q, k]', `[${p.shape}]`));
  const [B, H, Q, K] = p.shape;
  const idx = tf.tidy(() => {
    const row = tf.slice(p, [0, 0, Q - 1, 0], [B, H, 1, K]).reshape([B * H, K]);
    const mx = row.max(1, true);
    const pos = tf.broadcastTo(tf.range(0, K, 1, 'float32').reshape([1, K]), [B * H, K]);
    return tf.where(tf.equal(row, mx), pos, tf.fill([B * H, K], K)).min(1);
  });
  const flat = idx.dataSync();
  idx.dispose();
  return Array.from({ length: B }, (_, b) => Array.from({ length: H }, (_, h) => flat[b * H + h]));
}

/**
 * Greedy decoding of equal-length prompts the authors' way: prefill prompt[:-1] with the KV cache,
 * then decode starting from the last prompt token (every generated token comes from a decoding
 * forward, where ctx.decoding is true).
 */
export function decodeNeedles(model: HookedTransformer, prompts: number[][], opts: NeedleDecodeOptions): NeedleDecodeResult {
  if (!Array.isArray(prompts) || prompts.length === 0) throw new ValueError('prompts', expectedFound('a non-empty list of token id lists', prompts));
  const T = prompts[0].length;
  prompts.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== T) throw new ShapeError(`prompts[${i}]`, expectedFound(`${T} tokens (equal lengths)`, p?.length));
  });
  if (T < 2) throw new ValueError('prompts', expectedFound('at least 2 tokens (prefill + the decoded last token)', T));
  const max = opts.maxNewTokens;
  if (!Number.isInteger(max) || max < 1) throw new ValueError('maxNewTokens', expectedFound('a positive integer', max));
  const B = prompts.length;
  const L = model.cfg.n_layers;
  const stop = new Set(opts.stopTokens ?? []);
  const record = opts.recordKeys === true;
  let buf: Array<number[][] | null> = new Array(L).fill(null);
  const reader: HookSpec = [
    (name: string) => /^blocks\.\d+\.attn\.hook_pattern$/.test(name),
    (act, ctx) => {
      if (ctx.decoding && ctx.layer !== null) buf[ctx.layer] = rowArgmax(act);
    },
  ];
  const handle = model.hooks.addAll([...(opts.fwdHooks ?? []), ...(record ? [reader] : [])]);
  const out: number[][] = Array.from({ length: B }, () => []);
  const keys: number[][][][] | null = record ? Array.from({ length: B }, () => []) : null;
  const finished = new Array<boolean>(B).fill(false);
  let kv: KVCache | undefined;
  try {
    const pre = model.run(prompts.map((p) => p.slice(0, T - 1)), { useCache: true }, null);
    pre.logits.dispose();
    kv = pre.kv;
    let cur = prompts.map((p) => p[T - 1]);
    for (let step = 0; step < max; step++) {
      buf = new Array(L).fill(null);
      const r = model.run(cur.map((t) => [t]), { past: kv }, null);
      disposeKV(kv!);
      kv = r.kv;
      const nextT = tf.tidy(() => tf.argMax(tf.reshape(r.logits, [B, -1]), -1));
      r.logits.dispose();
      const next = Array.from(nextT.dataSync());
      nextT.dispose();
      if (record && buf.some((x) => x === null)) throw new ValueError('decodeNeedles', 'a layer pattern was not seen in a decoding step');
      for (let b = 0; b < B; b++) {
        if (finished[b]) continue;
        out[b].push(next[b]);
        if (keys) keys[b].push(buf.map((layer) => layer![b]));
        if (stop.has(next[b])) finished[b] = true;
      }
      if (finished.every(Boolean)) break;
      cur = next;
    }
  } finally {
    if (kv) disposeKV(kv);
    handle.remove();
  }
  return { tokens: out, keys };
}

// ---------------------------------------------------------------------------------- grid

export interface NiahGridOptions {
  /** Context lengths (rows). With makeSample, whatever length the maker takes (makeNeedle: the prompt length). */
  lengths: number[];
  /** Needle depths as fractions in [0, 1] (columns). */
  depths: number[];
  /** Sample maker (length, depth, seed) -> sample; or give `source`. */
  makeSample?: NiahSampleFn;
  /** Haystack source (text or ids) with needles; one sample per needle per cell. */
  source?: NiahSource;
  /** Samples per cell with makeSample (default 1; seeds deriveSeed(seed, li, di, k)). */
  samplesPerCell?: number;
  /** Default 50 (the authors' decode length). */
  maxNewTokens?: number;
  stopTokens?: number[];
  /** Extra hooks during prefill and decoding (e.g. head masking). */
  fwdHooks?: HookSpec[];
  /** Accumulate retrieval scores from the same decodes: true, scorer options, or a scorer to add to. */
  scorer?: boolean | RetrievalScorer | { variant?: RetrievalVariant; minRouge?: number };
  /** Retrieval span: the whole needle (default, the code) or the answer inside it. */
  spanOf?: 'needle' | 'answer';
  seed: number;
  /** Progress: true or a label for the live display, or a callback (done, total). Default: a display labelled "NIAH". */
  onProgress?: boolean | string | ((done: number, total: number) => void);
  /** Generated ids -> response text (default: the model's tokenizer, when it has one). ROUGE is on text when the sample has answerText, else on ids. */
  decode?: (ids: number[]) => string;
  /** Rows decoded together (default: a whole cell). */
  batchSize?: number;
}

export interface NiahSampleResult {
  length: number;
  depth: number;
  seed: number;
  promptLength: number;
  generated: number[];
  response: string | null;
  rouge: number;
  exact: boolean;
  meta?: Record<string, unknown>;
}

export interface NiahGrid {
  lengths: number[];
  depths: number[];
  /** Mean ROUGE-1 recall per cell, [length][depth]. */
  rouge: number[][];
  /** Exact-match rate per cell, [length][depth]. */
  exact: number[][];
  /** Means over the whole grid. */
  mean: { rouge: number; exact: number };
  /** samples[li][di][k]. */
  samples: NiahSampleResult[][][];
  /** Present when retrieval scoring was asked for. */
  scorer?: RetrievalScorer;
  scores?: HeadScores;
  /** The authors' JSON {"layer-head": [per-sample scores]}. */
  authorJson?: Record<string, number[]>;
  params: Record<string, unknown>;
}

function exactMatch(answerIds: number[], answerText: string | undefined, generated: number[], response: string | null): boolean {
  if (answerText !== undefined && response !== null) {
    const a = rougeTokenize(answerText, { useStemmer: false });
    const r = rougeTokenize(response, { useStemmer: false });
    return a.length > 0 && a.every((t, i) => r[i] === t);
  }
  return answerIds.length > 0 && answerIds.every((t, i) => generated[i] === t);
}

function checkGridAxis(name: string, xs: number[], check: (x: number) => boolean, what: string): void {
  if (!Array.isArray(xs) || xs.length === 0) throw new ConfigError(name, expectedFound('a non-empty list', xs));
  xs.forEach((x, i) => {
    if (!check(x)) throw new ConfigError(`${name}[${i}]`, expectedFound(what, x));
  });
}

/**
 * The (length x depth) needle-in-a-haystack grid: every sample decoded greedily with the KV cache
 * (authors' protocol, see the file comment), scored by ROUGE-1 recall and exact match; with
 * `scorer`, retrieval scores accumulate from the same decodes.
 */
export function niahGrid(model: HookedTransformer, opts: NiahGridOptions): NiahGrid {
  const { lengths, depths } = opts;
  checkGridAxis('lengths', lengths, (x) => Number.isInteger(x) && x >= 2, 'an integer >= 2');
  checkGridAxis('depths', depths, (x) => typeof x === 'number' && x >= 0 && x <= 1, 'a fraction in [0, 1]');
  if (!Number.isFinite(opts.seed)) throw new ConfigError('seed', expectedFound('a finite number', opts.seed));
  if (!!opts.makeSample === !!opts.source) throw new ConfigError('niahGrid', 'give exactly one of makeSample and source');
  const maxNewTokens = opts.maxNewTokens ?? 50;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new ConfigError('maxNewTokens', expectedFound('a positive integer', maxNewTokens));
  const makers = opts.source ? sourceSamples(model, opts.source) : null;
  const perCell = makers ? makers.length : opts.samplesPerCell ?? 1;
  if (!Number.isInteger(perCell) || perCell < 1) throw new ConfigError('samplesPerCell', expectedFound('a positive integer', perCell));
  const batchSize = opts.batchSize ?? perCell;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError('batchSize', expectedFound('a positive integer', batchSize));
  const spanOf = opts.spanOf ?? 'needle';
  if (spanOf !== 'needle' && spanOf !== 'answer') throw new ConfigError('spanOf', expectedFound("'needle' or 'answer'", spanOf));

  let scorer: RetrievalScorer | undefined;
  if (opts.scorer instanceof RetrievalScorer) scorer = opts.scorer;
  else if (opts.scorer) {
    const so = typeof opts.scorer === 'object' ? opts.scorer : {};
    scorer = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads, variant: so.variant, minRouge: so.minRouge });
  }
  if (scorer && (scorer.nLayers !== model.cfg.n_layers || scorer.nHeads !== model.cfg.n_heads)) {
    throw new ConfigError('scorer', expectedFound(`${model.cfg.n_layers} layers x ${model.cfg.n_heads} heads`, `${scorer.nLayers} x ${scorer.nHeads}`));
  }

  // Build every sample first, so bad input fails before any decoding.
  const cells: Array<{ li: number; di: number; samples: Array<{ s: NiahSample; seed: number }> }> = [];
  lengths.forEach((len, li) =>
    depths.forEach((d, di) => {
      const samples = Array.from({ length: perCell }, (_, k) => {
        const seed = deriveSeed(opts.seed, li, di, k);
        const s = makers ? makers[k](len, d) : opts.makeSample!(len, d, seed);
        checkSample(model, s, `sample (length ${len}, depth ${d}, #${k})`, maxNewTokens);
        return { s, seed };
      });
      cells.push({ li, di, samples });
    }),
  );

  const total = cells.length * perCell;
  const cb = typeof opts.onProgress === 'function' ? opts.onProgress : null;
  const bar =
    opts.onProgress === false || cb
      ? null
      : makeProgress(total, { label: typeof opts.onProgress === 'string' ? opts.onProgress : 'NIAH' });
  const decodeText = opts.decode ?? (model.tokenizer ? (ids: number[]) => model.toString(ids) : null);
  const results: NiahSampleResult[][][] = lengths.map(() => depths.map(() => []));
  let done = 0;
  try {
    for (const cell of cells) {
      const len = lengths[cell.li];
      const depth = depths[cell.di];
      // rows of equal prompt length decode together
      const groups = new Map<number, number[]>();
      cell.samples.forEach(({ s }, k) => groups.set(s.tokens.length, [...(groups.get(s.tokens.length) ?? []), k]));
      const cellOut: NiahSampleResult[] = new Array(perCell);
      for (const idxs of groups.values()) {
        for (let i0 = 0; i0 < idxs.length; i0 += batchSize) {
          const part = idxs.slice(i0, i0 + batchSize);
          const res = decodeNeedles(
            model,
            part.map((k) => cell.samples[k].s.tokens),
            { maxNewTokens, stopTokens: opts.stopTokens, fwdHooks: opts.fwdHooks, recordKeys: !!scorer },
          );
          part.forEach((k, row) => {
            const { s, seed } = cell.samples[k];
            const gen = res.tokens[row];
            const useText = s.answerText !== undefined && decodeText !== null;
            const response = decodeText ? decodeText(gen).trim() : null;
            const rouge = useText ? rougeRecall1(s.answerText!, response!) : rougeRecall1(s.answer, gen);
            const exact = exactMatch(s.answer, useText ? s.answerText : undefined, gen, response);
            if (scorer) {
              scorer.beginSample(s.tokens, sampleSpan(s, spanOf));
              res.keys![row].forEach((kk, step) => scorer!.step(kk, gen[step]));
              scorer.endSample({ rouge, meta: { length: len, depth, seed, ...s.meta } });
            }
            cellOut[k] = { length: len, depth, seed, promptLength: s.tokens.length, generated: gen, response, rouge, exact, meta: s.meta };
          });
          done += part.length;
          bar?.tick(part.length);
          cb?.(done, total);
        }
      }
      results[cell.li][cell.di] = cellOut;
    }
  } finally {
    bar?.done();
  }
  const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rouge = results.map((row) => row.map((c) => meanOf(c.map((r) => r.rouge))));
  const exact = results.map((row) => row.map((c) => meanOf(c.map((r) => (r.exact ? 1 : 0)))));
  const grid: NiahGrid = {
    lengths: lengths.slice(),
    depths: depths.slice(),
    rouge,
    exact,
    mean: { rouge: meanOf(rouge.flat()), exact: meanOf(exact.flat()) },
    samples: results,
    params: { maxNewTokens, stopTokens: opts.stopTokens ?? [], samplesPerCell: perCell, seed: opts.seed, spanOf, masked: (opts.fwdHooks ?? []).length > 0 },
  };
  if (scorer) {
    grid.scorer = scorer;
    grid.scores = scorer.headScores({ model: model.name, data: { task: 'needle in a haystack', lengths, depths, samplesPerCell: perCell } });
    grid.authorJson = toRetrievalHeadJson(scorer);
  }
  return grid;
}

function checkSample(model: HookedTransformer, s: NiahSample, where: string, maxNewTokens: number): void {
  if (!s || !Array.isArray(s.tokens) || s.tokens.length < 2) throw new ValueError(`${where}.tokens`, expectedFound('at least 2 token ids', s?.tokens?.length));
  if (!Array.isArray(s.answer) || s.answer.length === 0) throw new ValueError(`${where}.answer`, expectedFound('a non-empty token id list', s?.answer));
  const V = model.cfg.d_vocab;
  s.tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= V) throw new ValueError(`${where}.tokens[${i}]`, expectedFound(`a token id in [0, ${V})`, t));
  });
  if (model.cfg.positional === 'learned' && s.tokens.length + maxNewTokens - 1 > model.cfg.n_ctx) {
    throw new ValueError(where, expectedFound(`prompt + maxNewTokens - 1 <= n_ctx = ${model.cfg.n_ctx}`, `${s.tokens.length} + ${maxNewTokens} - 1`));
  }
}

function sampleSpan(s: NiahSample, spanOf: 'needle' | 'answer'): { start: number; end: number } | null {
  const tuple = spanOf === 'answer' ? s.valueSpan : s.needleSpan;
  if (tuple) return { start: tuple[0], end: tuple[1] };
  return needleSpan(s.tokens, spanOf === 'needle' && s.needle ? s.needle : s.answer);
}

// ---------------------------------------------------------------------------------- masking

export interface MaskingOptions {
  /** Heads masked in each condition. */
  K: number;
  /** Random heads come from outside the top N (default 100 when the model has >= 100 + K heads, else K). */
  N?: number;
  seed: number;
  /** The grid every condition runs on (same samples in all three). */
  grid: Omit<NiahGridOptions, 'scorer'>;
  /** Mask only while decoding (default true, as the authors). */
  onlyDecoding?: boolean;
}

export interface MaskingResult {
  topHeads: Array<[number, number]>;
  randomHeads: Array<[number, number]>;
  unmasked: NiahGrid;
  topMasked: NiahGrid;
  randomMasked: NiahGrid;
  /** Grid means of ROUGE-1 recall and exact match per condition. */
  summary: Record<'unmasked' | 'topMasked' | 'randomMasked', { rouge: number; exact: number }>;
  params: Record<string, unknown>;
}

/**
 * The causal test: needle accuracy with the top-K heads by `scores` masked, with K random heads
 * from outside the top N masked (seeded), and unmasked, on the same grid.
 */
export function maskingExperiment(model: HookedTransformer, scores: HeadScores | number[][], opts: MaskingOptions): MaskingResult {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const hs = Array.isArray(scores) ? makeHeadScores('scores', scores) : scores;
  if (grid.length !== model.cfg.n_layers || grid.some((r) => r.length !== model.cfg.n_heads)) {
    throw new ShapeError('scores', expectedFound(`${model.cfg.n_layers} x ${model.cfg.n_heads}`, `${grid.length} x ${grid[0]?.length}`));
  }
  const total = model.cfg.n_layers * model.cfg.n_heads;
  const { K } = opts;
  if (!Number.isInteger(K) || K < 1 || K > total) throw new ConfigError('K', expectedFound(`an integer in [1, ${total}]`, K));
  const N = opts.N ?? (total - 100 >= K ? 100 : K);
  if (!Number.isInteger(N) || N < K || total - N < K) throw new ConfigError('N', expectedFound(`an integer in [K, ${total - K}] (K random heads outside the top N)`, N));
  const topHeads = rankHeads(hs)
    .slice(0, K)
    .map((r) => [r.layer, r.head] as [number, number])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const randomHeads = randomControlHeads(grid, K, { exclude: N, seed: opts.seed });
  const mask = (heads: Array<[number, number]>) => headMaskHooks(heads, { onlyDecoding: opts.onlyDecoding ?? true });
  const base = { ...opts.grid, scorer: undefined };
  const label = (s: string) => (opts.grid.onProgress === false || typeof opts.grid.onProgress === 'function' ? opts.grid.onProgress : `NIAH ${s}`);
  const unmasked = niahGrid(model, { ...base, onProgress: label('unmasked') });
  const topMasked = niahGrid(model, { ...base, fwdHooks: [...(opts.grid.fwdHooks ?? []), ...mask(topHeads)], onProgress: label(`top-${K} masked`) });
  const randomMasked = niahGrid(model, { ...base, fwdHooks: [...(opts.grid.fwdHooks ?? []), ...mask(randomHeads)], onProgress: label(`random-${K} masked`) });
  return {
    topHeads,
    randomHeads,
    unmasked,
    topMasked,
    randomMasked,
    summary: { unmasked: unmasked.mean, topMasked: topMasked.mean, randomMasked: randomMasked.mean },
    params: { K, N, seed: opts.seed, onlyDecoding: opts.onlyDecoding ?? true, method: hs.method },
  };
}

// ---------------------------------------------------------------------------------- figure

/** The NIAH heatmap: rows = context lengths, columns = depths (%), colour = accuracy in [0, 1]. */
export function niahHeatmap(grid: NiahGrid, opts: { metric?: 'rouge' | 'exact'; title?: string; width?: number; height?: number } = {}): Figure {
  const metric = opts.metric ?? 'rouge';
  if (metric !== 'rouge' && metric !== 'exact') throw new ConfigError('metric', expectedFound("'rouge' or 'exact'", metric));
  return patchingHeatmap(grid[metric], {
    rowLabels: grid.lengths.map(String),
    colLabels: grid.depths.map((d) => `${Math.round(d * 100)}%`),
    xTitle: 'Depth',
    yTitle: 'Length',
    title: opts.title ?? `NIAH ${metric === 'rouge' ? 'ROUGE-1 recall' : 'exact match'} (mean ${grid.mean[metric].toFixed(2)})`,
    diverging: false,
    zmin: 0,
    zmax: 1,
    width: opts.width,
    height: opts.height,
  });
}

/**
 * Several NIAH heatmaps side by side in one figure (e.g. unmasked, top-K masked, random-K masked),
 * on one 0..1 colour scale; each panel titled.
 */
export function niahHeatmaps(
  panels: Array<{ grid: NiahGrid; title: string }>,
  opts: { metric?: 'rouge' | 'exact'; title?: string; height?: number } = {},
): Figure {
  if (!Array.isArray(panels) || panels.length === 0) throw new ConfigError('panels', expectedFound('at least one {grid, title}', panels));
  const metric = opts.metric ?? 'rouge';
  const n = panels.length;
  const gap = 0.06;
  const w = (1 - gap * (n - 1)) / n;
  const layout: Figure['layout'] = {
    title: { text: opts.title ?? `NIAH ${metric === 'rouge' ? 'ROUGE-1 recall' : 'exact match'}` },
    height: opts.height ?? Math.max(320, 200 + 28 * panels[0].grid.lengths.length),
    annotations: [],
  };
  const data = panels.map((p, i) => {
    const t = { ...niahHeatmap(p.grid, { metric }).data[0] };
    const sfx = i === 0 ? '' : String(i + 1);
    t.xaxis = `x${sfx}`;
    t.yaxis = `y${sfx}`;
    t.showscale = i === n - 1;
    const x0 = i * (w + gap);
    layout[`xaxis${sfx}`] = { title: { text: 'Depth' }, type: 'category', tickangle: -45, showgrid: false, automargin: true, domain: [x0, x0 + w], anchor: `y${sfx}` };
    layout[`yaxis${sfx}`] = { title: { text: i === 0 ? 'Length' : '' }, type: 'category', autorange: 'reversed', showgrid: false, automargin: true, anchor: `x${sfx}` };
    layout.annotations!.push({
      x: x0 + w / 2,
      y: 1.02,
      xref: 'paper',
      yref: 'paper',
      xanchor: 'center',
      yanchor: 'bottom',
      showarrow: false,
      text: `${p.title} (mean ${p.grid.mean[metric].toFixed(2)})`,
    });
    return t;
  });
  return { data, layout, config: niahHeatmap(panels[0].grid, { metric }).config };
}

// ---------------------------------------------------------------------------------- CLI

type CliArgs = Record<string, string | boolean>;

function listArg(args: CliArgs, name: string): number[] | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v.trim()) throw new ValueError(`--${name}`, expectedFound('a comma-separated list of numbers', v));
  return v.split(',').map((s) => {
    const n = Number(s.trim());
    if (!s.trim() || !Number.isFinite(n)) throw new ValueError(`--${name}`, expectedFound('a comma-separated list of numbers', v));
    return n;
  });
}

function numOf(args: CliArgs, name: string, fallback: number): number {
  const v = args[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n)) throw new ValueError(`--${name}`, expectedFound('a number', v));
  return n;
}

function strOf(args: CliArgs, name: string): string | undefined {
  const v = args[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ValueError(`--${name}`, 'needs a value');
  return v;
}

/**
 * `tflens rank --method retrieval`: the grid from the arguments, decoded with retrieval scoring.
 * Samples: --needle-format <file.json> (makeNeedle options; synthetic samples, --samples per cell)
 * or --haystack <file.txt> with --needles <file.json> [{needle, question, answer}] or
 * --needle/--question/--answer. Grid: --lengths a,b,.. or --min-length/--max-length/--n-lengths
 * (20, as the authors); --depths f,.. (fractions) or --n-depths (10). Decoding: --max-new-tokens (50),
 * --stop-tokens ids. Scoring: --variant code|set, --min-rouge (0.5), --span needle|answer, --seed (0).
 */
export async function rankRetrieval(
  model: HookedTransformer,
  args: CliArgs,
): Promise<{ scores: HeadScores; authorJson: Record<string, number[]>; params: Record<string, unknown> }> {
  const readJson = async (name: string): Promise<unknown> => {
    const file = strOf(args, name);
    if (file === undefined) return undefined;
    const text = await readCliFile(file, name);
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new FormatError(file, `invalid JSON: ${(e as Error).message}`);
    }
  };
  const hayFile = strOf(args, 'haystack');
  const files = {
    needleFormat: await readJson('needle-format'),
    needles: await readJson('needles'),
    haystack: hayFile === undefined ? undefined : await readCliFile(hayFile, 'haystack'),
  };
  const opts = retrievalGridFromArgs(args, files);
  const g = niahGrid(model, opts);
  return { scores: g.scores!, authorJson: g.authorJson!, params: { ...g.scores!.params, ...g.params, lengths: g.lengths, depths: g.depths } };
}

async function readCliFile(file: string, name: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new ResolveError(file, `--${name}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** The grid options of `tflens rank --method retrieval` from its arguments and the files they name (see rankRetrieval). */
export function retrievalGridFromArgs(
  args: CliArgs,
  files: { needleFormat?: unknown; haystack?: string; needles?: unknown },
): NiahGridOptions {
  let lengths = listArg(args, 'lengths');
  if (!lengths) {
    const lo = args['min-length'];
    const hi = args['max-length'];
    if (lo === undefined || hi === undefined) throw new ValueError('--lengths', 'give --lengths a,b,... or --min-length and --max-length');
    lengths = linspace(numOf(args, 'min-length', 0), numOf(args, 'max-length', 0), numOf(args, 'n-lengths', 20)).map((x) => Math.round(x));
  }
  const depths = listArg(args, 'depths') ?? linspace(0, 1, numOf(args, 'n-depths', 10));
  const variant = (strOf(args, 'variant') ?? 'code') as RetrievalVariant;
  if (variant !== 'code' && variant !== 'set') throw new ValueError('--variant', expectedFound('code or set', variant));
  const span = strOf(args, 'span') ?? 'needle';
  if (span !== 'needle' && span !== 'answer') throw new ValueError('--span', expectedFound('needle or answer', span));
  const base: NiahGridOptions = {
    lengths,
    depths,
    seed: numOf(args, 'seed', 0),
    maxNewTokens: numOf(args, 'max-new-tokens', 50),
    stopTokens: listArg(args, 'stop-tokens'),
    scorer: { variant, minRouge: numOf(args, 'min-rouge', 0.5) },
    spanOf: span,
    onProgress: 'retrieval',
  };
  if (files.needleFormat !== undefined) {
    const f = files.needleFormat;
    if (!f || typeof f !== 'object' || Array.isArray(f)) throw new ValueError('--needle-format', expectedFound('a JSON object of makeNeedle options', Array.isArray(f) ? 'an array' : typeof f));
    return { ...base, makeSample: syntheticSamples(f as NeedleOptions), samplesPerCell: numOf(args, 'samples', 1) };
  }
  if (files.haystack !== undefined) {
    let needles: Array<NiahNeedle<string>>;
    if (files.needles !== undefined) {
      if (!Array.isArray(files.needles)) throw new ValueError('--needles', expectedFound('a JSON list of {needle, question, answer}', typeof files.needles));
      needles = files.needles as Array<NiahNeedle<string>>;
    } else {
      const needle = strOf(args, 'needle');
      const question = strOf(args, 'question');
      const answer = strOf(args, 'answer');
      if (!needle || !question || !answer) throw new ValueError('--needle/--question/--answer', 'give all three, or --needles <file.json>');
      needles = [{ needle, question, answer }];
    }
    return { ...base, source: { haystack: files.haystack, needles } };
  }
  throw new ValueError('--needle-format/--haystack', 'give --needle-format <file.json> (synthetic needles) or --haystack <file.txt> with the needles');
}
