/**
 * Needle-in-a-haystack grid and the retrieval-head masking experiment (Wu et al., "Retrieval Head
 * Mechanistically Explains Long-Context Factuality"; code nightdessert/Retrieval_Head).
 *
 * Protocol (retrieval_head_detection.py, evaluate_and_log, lines 261-300; docs/methods/retrieval.md):
 *  - a prompt = haystack with the needle inserted at depth d (moved back to a sentence boundary)
 *    + the question; greedy decoding with the KV cache (decodeWithKeys, built on `generate`), at most
 *    50 tokens, stopping after the model's newline token (line 246; newlineTokens), which is kept;
 *  - accuracy of a sample = ROUGE-1 recall of the answer in the response (rouge_score with the Porter
 *    stemmer, line 296; token ids as unigrams when the sample has no answer text); exact match = the
 *    response starts with the answer;
 *  - retrieval scores (optional) come from the same decodes: the argmax key of every (layer, head) at
 *    every step, scored by RetrievalScorer against the ANSWER's span (find_needle_idx(real_needle),
 *    line 287); the whole needle is the named variant spanOf: 'needle';
 *  - head masking (maskingExperiment): the masked heads' pre-softmax scores are 0 while generating
 *    (headMaskHooks), the random control heads come from outside the top 100 (the authors' rule).
 */
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, rankHeads, type HeadScores, type NiahResult, type NiahSampleResult } from '../results.js';
import type { HookSpec } from '../hooks/registry.js';
import type { ModelView } from '../model/index.js';
import { insertNeedle, makeNeedle, needleFromText, type NeedleExample, type NeedleOptions } from '../data/needle.js';
import { deriveSeed } from '../util/random.js';
import { progress as makeProgress } from '../progress.js';
import { rougeRecall1, rougeTokenize } from './rouge.js';
import {
  RetrievalScorer,
  decodeWithKeys,
  headMaskHooks,
  needleSpan,
  newlineTokens,
  randomControlHeads,
  responseText,
  toRetrievalHeadJson,
  type RetrievalVariant,
} from './retrieval.js';

// ---------------------------------------------------------------------------------- samples

/** One needle prompt. NeedleExample (src/data/needle.ts) has this shape. */
export interface NiahSample {
  /** The prompt ids (BOS + context with the needle + question). */
  tokens: number[];
  /** The answer ids. */
  answer: number[];
  /** The answer as text (ROUGE on text then; else the ids are compared as unigrams). */
  answerText?: string;
  /** [start, end) of the needle in `tokens` (the span of the 'needle' variant). */
  needleSpan?: [number, number];
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

function checkNeedles<T>(needles: Array<NiahNeedle<T>>, ok: (x: unknown) => boolean, what: string): void {
  needles.forEach((n, i) => {
    for (const k of ['needle', 'question', 'answer'] as const) {
      if (!ok(n?.[k])) throw new ConfigError(`source.needles[${i}].${k}`, expectedFound(what, typeof n?.[k]));
    }
  });
}

/** Sample makers of a source: one per needle, (length, depth) -> sample. */
export function sourceSamples(model: Pick<ModelView, 'tokenizer' | 'bosTokenId'>, source: NiahSource): Array<(length: number, depth: number) => NiahSample> {
  if (!source || !Array.isArray(source.needles) || source.needles.length === 0) {
    throw new ConfigError('source.needles', expectedFound('a non-empty list of {needle, question, answer}', source?.needles));
  }
  const bosId = source.bosId === undefined ? model.bosTokenId() : source.bosId;
  if ('haystack' in source) {
    const tok = source.tokenizer ?? model.tokenizer;
    if (!tok) throw new ConfigError('source.tokenizer', 'the model has no tokenizer; give source.tokenizer or haystackTokens');
    if (typeof source.haystack !== 'string' || !source.haystack.length) throw new ConfigError('source.haystack', expectedFound('non-empty text', source.haystack));
    checkNeedles(source.needles, (x) => typeof x === 'string', 'a string');
    return source.needles.map((n, i) => {
      const needleIds = tok.encode(n.needle);
      return (length: number, depth: number): NiahSample => ({
        ...needleFromText({ tokenizer: tok, haystack: source.haystack, ...n, contextLength: length, depth, boundaryTokens: source.boundaryTokens, bosId: bosId ?? undefined }),
        answerText: n.answer,
        needle: needleIds,
        meta: { needle: i },
      });
    });
  }
  if (!Array.isArray(source.haystackTokens)) throw new ConfigError('source', 'give haystack (text) or haystackTokens (ids)');
  checkNeedles(source.needles, Array.isArray, 'a token id list');
  return source.needles.map((n, i) => (length: number, depth: number): NiahSample => ({
    ...needleFromTokens({ haystack: source.haystackTokens, ...n, contextLength: length, depth, boundaryTokens: source.boundaryTokens, bosId }),
    needle: n.needle.slice(),
    meta: { needle: i },
  }));
}

/** Synthetic needle samples (makeNeedle) in a given token format; `length` is the prompt length. */
export function syntheticSamples(format: Omit<NeedleOptions, 'length' | 'depth' | 'seed'>): (length: number, depth: number, seed: number) => NeedleExample {
  return (length, depth, seed) => makeNeedle({ ...format, length, depth, seed });
}

const NEEDLE_KEYS = ['fillerTokens', 'vocabSize', 'periodToken', 'sentenceLength', 'keyTokens', 'valueTokens', 'valueLength', 'keyMarker', 'valueMarker', 'questionMarker', 'bosId', 'distractors'] as const;

/**
 * The needle task a shipped model was trained on, from its task.json ({task: 'needle', format}): the
 * makeNeedle format and the model card's evaluation grid (format.evalLengths x format.evalDepths).
 */
export function needleTask(task: unknown, where = 'task.json'): { format: Omit<NeedleOptions, 'length' | 'depth' | 'seed'>; lengths: number[]; depths: number[] } {
  const t = task as { task?: unknown; format?: Record<string, unknown> } | null;
  if (!t || typeof t !== 'object' || t.task !== 'needle') throw new ConfigError(`${where}: task`, expectedFound('"needle"', t && typeof t === 'object' ? t.task : typeof t));
  const f = t.format;
  if (!f || typeof f !== 'object') throw new ConfigError(`${where}: format`, expectedFound('an object of makeNeedle options', typeof f));
  const isList = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((v) => typeof v === 'number');
  if (!isList(f.evalLengths)) throw new ConfigError(`${where}: format.evalLengths`, expectedFound('a non-empty list of lengths', f.evalLengths));
  if (!isList(f.evalDepths)) throw new ConfigError(`${where}: format.evalDepths`, expectedFound('a non-empty list of depths', f.evalDepths));
  const format: Record<string, unknown> = {};
  for (const k of NEEDLE_KEYS) if (f[k] !== undefined) format[k] = f[k];
  return { format: format as Omit<NeedleOptions, 'length' | 'depth' | 'seed'>, lengths: f.evalLengths.slice(), depths: f.evalDepths.slice() };
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
  /** Default newlineTokens(model) (the authors stop after the newline token); [] decodes maxNewTokens. */
  stopTokens?: number[];
  /** Extra hooks during prefill and decoding (e.g. head masking). */
  fwdHooks?: HookSpec[];
  /** Accumulate retrieval scores from the same decodes: true, scorer options, or a scorer to add to. */
  scorer?: boolean | RetrievalScorer | { variant?: RetrievalVariant; minRouge?: number };
  /** Retrieval span: the answer (default, the code's real_needle) or the whole needle (variant). */
  spanOf?: 'answer' | 'needle';
  seed: number;
  /** Progress: true or a label for the live display, or a callback (done, total). Default: a display labelled "NIAH". */
  onProgress?: boolean | string | ((done: number, total: number) => void);
  /** Generated ids -> response text (default: the model's tokenizer, special tokens skipped). ROUGE is on text when the sample has answerText, else on ids. */
  decode?: (ids: number[]) => string;
  /** Rows decoded together (default: a whole cell). */
  batchSize?: number;
  /**
   * Decode only these cells (indices in length-major order: li * depths.length + di), for splitting a
   * grid into shards: each decodes exactly what the whole grid decodes there (same seeds, same batches).
   * The other cells stay empty; scores and authorJson then cover these cells' samples only.
   */
  cells?: number[];
}

/** The NIAH grid (NiahResult, what the heatmap reads) with the retrieval scores when asked for. */
export interface NiahGrid extends NiahResult {
  scorer?: RetrievalScorer;
  scores?: HeadScores;
  /** The authors' JSON {"layer-head": [per-sample scores]}. */
  authorJson?: Record<string, number[]>;
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

function positiveInt(name: string, x: number): number {
  if (!Number.isInteger(x) || x < 1) throw new ConfigError(name, expectedFound('a positive integer', x));
  return x;
}

function makeScorer(model: ModelView, opt: NiahGridOptions['scorer']): RetrievalScorer | undefined {
  if (!opt) return undefined;
  const { n_layers: L, n_heads: H } = model.cfg;
  const scorer = opt instanceof RetrievalScorer ? opt : new RetrievalScorer({ nLayers: L, nHeads: H, ...(typeof opt === 'object' ? opt : {}) });
  if (scorer.nLayers !== L || scorer.nHeads !== H) throw new ConfigError('scorer', expectedFound(`${L} layers x ${H} heads`, `${scorer.nLayers} x ${scorer.nHeads}`));
  return scorer;
}

type Cell = { li: number; di: number; samples: Array<{ s: NiahSample; seed: number; span: { start: number; end: number } | null }> };

/** The resolved options of a grid run. */
interface Plan {
  maxNewTokens: number;
  perCell: number;
  batchSize: number;
  spanOf: 'answer' | 'needle';
  stopTokens: number[];
  scorer?: RetrievalScorer;
  makers: Array<(l: number, d: number) => NiahSample> | null;
  text: ((ids: number[]) => string) | null;
}

function planOf(model: ModelView, opts: NiahGridOptions): Plan {
  checkGridAxis('lengths', opts.lengths, (x) => Number.isInteger(x) && x >= 2, 'an integer >= 2');
  checkGridAxis('depths', opts.depths, (x) => typeof x === 'number' && x >= 0 && x <= 1, 'a fraction in [0, 1]');
  const nCells = opts.lengths.length * opts.depths.length;
  if (opts.cells) checkGridAxis('cells', opts.cells, (x) => Number.isInteger(x) && x >= 0 && x < nCells, `a cell index in [0, ${nCells})`);
  if (!Number.isFinite(opts.seed)) throw new ConfigError('seed', expectedFound('a finite number', opts.seed));
  if (!!opts.makeSample === !!opts.source) throw new ConfigError('niahGrid', 'give exactly one of makeSample and source');
  const makers = opts.source ? sourceSamples(model, opts.source) : null;
  const perCell = positiveInt('samplesPerCell', makers ? makers.length : opts.samplesPerCell ?? 1);
  const spanOf = opts.spanOf ?? 'answer';
  if (spanOf !== 'answer' && spanOf !== 'needle') throw new ConfigError('spanOf', expectedFound("'answer' or 'needle'", spanOf));
  return {
    maxNewTokens: positiveInt('maxNewTokens', opts.maxNewTokens ?? 50),
    perCell,
    batchSize: positiveInt('batchSize', opts.batchSize ?? perCell),
    spanOf,
    stopTokens: opts.stopTokens ?? newlineTokens(model),
    scorer: makeScorer(model, opts.scorer),
    makers,
    text: responseText(model, opts.decode),
  };
}

/** Every sample of the grid, built and checked before any decoding (bad input fails early). */
function buildCells(model: ModelView, opts: NiahGridOptions, plan: Plan): Cell[] {
  const cells: Cell[] = [];
  const only = opts.cells ? new Set(opts.cells) : null;
  opts.lengths.forEach((len, li) =>
    opts.depths.forEach((d, di) => {
      if (only && !only.has(li * opts.depths.length + di)) return;
      const samples = Array.from({ length: plan.perCell }, (_, k) => {
        const seed = deriveSeed(opts.seed, li, di, k);
        const s = plan.makers ? plan.makers[k](len, d) : opts.makeSample!(len, d, seed);
        const where = `sample (length ${len}, depth ${d}, #${k})`;
        checkSample(model, s, where, plan.maxNewTokens);
        const span = sampleSpan(s, plan.spanOf);
        if (plan.scorer && !span) throw new ValueError(`${where}: ${plan.spanOf} span`, `no window of the prompt covers > 90% of the ${plan.spanOf}'s tokens`);
        return { s, seed, span };
      });
      cells.push({ li, di, samples });
    }),
  );
  return cells;
}

/** Decode one cell (rows of equal length together) and score its samples; `tick` reports progress. */
async function decodeCell(model: ModelView, cell: Cell, plan: Plan, at: { length: number; depth: number }, fwdHooks: HookSpec[] | undefined, tick: (n: number) => void): Promise<NiahSampleResult[]> {
  const out: NiahSampleResult[] = new Array(plan.perCell);
  const { scorer } = plan;
  for (const part of cellBatches(cell, plan.batchSize)) {
    const res = await decodeWithKeys(model, part.map((k) => cell.samples[k].s.tokens), { maxNewTokens: plan.maxNewTokens, stopTokens: plan.stopTokens, fwdHooks, recordKeys: !!scorer });
    part.forEach((k, row) => {
      const { s, seed, span } = cell.samples[k];
      const r = sampleResult(s, res.tokens[row], plan.text, { ...at, seed });
      if (scorer) {
        scorer.beginSample(s.tokens, span);
        res.keys![row].forEach((keys, step) => scorer.step(keys, r.generated[step]));
        scorer.endSample({ rouge: r.rouge, meta: { ...at, seed, ...s.meta } });
      }
      out[k] = r;
    });
    tick(part.length);
  }
  return out;
}

/**
 * The (length x depth) needle-in-a-haystack grid: every sample decoded greedily with the KV cache
 * (the authors' protocol, see the file comment), scored by ROUGE-1 recall and exact match; with
 * `scorer`, retrieval scores accumulate from the same decodes.
 */
export async function niahGrid(model: ModelView, opts: NiahGridOptions): Promise<NiahGrid> {
  const plan = planOf(model, opts);
  const { lengths, depths } = opts;
  const cells = buildCells(model, opts, plan);
  const total = cells.length * plan.perCell;
  const cb = typeof opts.onProgress === 'function' ? opts.onProgress : null;
  const bar = opts.onProgress === false || cb ? null : makeProgress(total, { label: typeof opts.onProgress === 'string' ? opts.onProgress : 'NIAH' });
  const results: NiahSampleResult[][][] = lengths.map(() => depths.map(() => []));
  let done = 0;
  const tick = (n: number) => {
    done += n;
    bar?.tick(n);
    cb?.(done, total);
  };
  try {
    for (const cell of cells) results[cell.li][cell.di] = await decodeCell(model, cell, plan, { length: lengths[cell.li], depth: depths[cell.di] }, opts.fwdHooks, tick);
  } finally {
    bar?.done();
  }
  const { maxNewTokens, stopTokens, spanOf, scorer } = plan;
  const grid = gridOf(lengths, depths, results, { maxNewTokens, stopTokens, samplesPerCell: plan.perCell, seed: opts.seed, spanOf, masked: (opts.fwdHooks ?? []).length > 0 });
  if (!scorer) return grid;
  const scores = scorer.headScores({ model: model.name, params: { spanOf, stopTokens, maxNewTokens }, data: { task: 'needle in a haystack', lengths, depths, samplesPerCell: plan.perCell } });
  return { ...grid, scorer, scores, authorJson: toRetrievalHeadJson(scorer) };
}

/** Rows of a cell decoded together: equal prompt lengths, at most batchSize. */
function cellBatches(cell: Cell, batchSize: number): number[][] {
  const groups = new Map<number, number[]>();
  cell.samples.forEach(({ s }, k) => groups.set(s.tokens.length, [...(groups.get(s.tokens.length) ?? []), k]));
  const parts: number[][] = [];
  for (const idxs of groups.values()) for (let i = 0; i < idxs.length; i += batchSize) parts.push(idxs.slice(i, i + batchSize));
  return parts;
}

function sampleResult(s: NiahSample, gen: number[], text: ((ids: number[]) => string) | null, at: { length: number; depth: number; seed: number }): NiahSampleResult {
  const response = text ? text(gen) : null;
  const onText = s.answerText !== undefined && response !== null;
  const rouge = onText ? rougeRecall1(s.answerText!, response!) : rougeRecall1(s.answer, gen);
  const exact = exactMatch(s.answer, onText ? s.answerText : undefined, gen, response);
  return { ...at, promptLength: s.tokens.length, generated: gen, response, rouge, exact, meta: s.meta };
}

function gridOf(lengths: number[], depths: number[], samples: NiahSampleResult[][][], params: Record<string, unknown>): NiahGrid {
  const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rouge = samples.map((row) => row.map((c) => meanOf(c.map((r) => r.rouge))));
  const exact = samples.map((row) => row.map((c) => meanOf(c.map((r) => (r.exact ? 1 : 0)))));
  return { lengths: lengths.slice(), depths: depths.slice(), rouge, exact, mean: { rouge: meanOf(rouge.flat()), exact: meanOf(exact.flat()) }, samples, params };
}

function checkSample(model: ModelView, s: NiahSample, where: string, maxNewTokens: number): void {
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

/** The scored span: the answer's (the authors' search, find_needle_idx(real_needle)) or the needle's. */
function sampleSpan(s: NiahSample, spanOf: 'answer' | 'needle'): { start: number; end: number } | null {
  if (spanOf === 'answer') return needleSpan(s.tokens, s.answer);
  if (s.needleSpan) return { start: s.needleSpan[0], end: s.needleSpan[1] };
  return s.needle ? needleSpan(s.tokens, s.needle) : null;
}

// ---------------------------------------------------------------------------------- masking

export interface MaskingOptions {
  /** Heads masked in each condition. */
  K: number;
  /** Random heads come from outside the top N (default 100, the authors' rule; a model needs >= 100 + K heads for it). */
  N?: number;
  seed: number;
  /** The grid every condition runs on (same samples in all three). */
  grid: Omit<NiahGridOptions, 'scorer'>;
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
 * The causal test (needle_in_haystack_with_mask.py): needle accuracy with the top-K heads by `scores`
 * masked, with K random heads from outside the top N masked (seeded), and unmasked, on the same grid.
 * Masks act while generating (headMaskHooks' default scope).
 */
export async function maskingExperiment(model: ModelView, scores: HeadScores | number[][], opts: MaskingOptions): Promise<MaskingResult> {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const hs = Array.isArray(scores) ? makeHeadScores('scores', scores) : scores;
  const { n_layers: L, n_heads: H } = model.cfg;
  if (grid.length !== L || grid.some((r) => r.length !== H)) throw new ShapeError('scores', expectedFound(`${L} x ${H}`, `${grid.length} x ${grid[0]?.length}`));
  const total = L * H;
  const { K } = opts;
  if (!Number.isInteger(K) || K < 1 || K > total) throw new ConfigError('K', expectedFound(`an integer in [1, ${total}]`, K));
  const N = opts.N ?? 100;
  if (!Number.isInteger(N) || N < K || total - N < K) {
    const hint = opts.N === undefined ? `; the authors' rule draws them outside the top 100, which needs >= ${100 + K} heads (this model has ${total}): pass N` : '';
    throw new ConfigError('N', expectedFound(`an integer in [K, ${total - K}] (K random heads outside the top N)${hint}`, N));
  }
  const topHeads = rankHeads(hs)
    .slice(0, K)
    .map((r) => [r.layer, r.head] as [number, number])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const randomHeads = randomControlHeads(grid, K, { exclude: N, seed: opts.seed });
  const base = { ...opts.grid, scorer: undefined };
  const extra = opts.grid.fwdHooks ?? [];
  const label = (s: string) => (opts.grid.onProgress === false || typeof opts.grid.onProgress === 'function' ? opts.grid.onProgress : `NIAH ${s}`);
  const unmasked = await niahGrid(model, { ...base, onProgress: label('unmasked') });
  const topMasked = await niahGrid(model, { ...base, fwdHooks: [...extra, ...headMaskHooks(topHeads)], onProgress: label(`top-${K} masked`) });
  const randomMasked = await niahGrid(model, { ...base, fwdHooks: [...extra, ...headMaskHooks(randomHeads)], onProgress: label(`random-${K} masked`) });
  return {
    topHeads,
    randomHeads,
    unmasked,
    topMasked,
    randomMasked,
    summary: { unmasked: unmasked.mean, topMasked: topMasked.mean, randomMasked: randomMasked.mean },
    params: { K, N, seed: opts.seed, scope: 'generation', method: hs.method },
  };
}
