/**
 * Needle-in-a-haystack inputs (retrieval heads, docs/methods/retrieval.md):
 * a haystack of filler with sentence boundaries, a key/value needle inserted at a depth (fraction
 * 0..1 of the context, moved back to a sentence boundary), and a question at the end whose answer
 * is the value. Works on token ids, so it serves both abstract toy vocabularies and real
 * tokenizers (`needleFromText`).
 */
import { ValueError, expectedFound } from '../errors.js';
import { rng } from '../util/random.js';

export interface InsertResult {
  /** Context with the needle inserted (no question). */
  tokens: number[];
  /** [start, end) of the needle in `tokens`. */
  needleSpan: [number, number];
  /** The haystack index the needle went in at (after moving back to a boundary). */
  insertAt: number;
  /** The index the depth asked for, before moving back. */
  requestedAt: number;
}

/**
 * Insert `needle` into `haystack` at `depth` (0 = start, 1 = end): the index floor(depth * n) is
 * moved back until the token before it is a boundary token (or the start is reached).
 */
export function insertNeedle(haystack: number[], needle: number[], depth: number, boundaryTokens: number[]): InsertResult {
  if (!(depth >= 0 && depth <= 1)) throw new ValueError('insertNeedle depth', expectedFound('a fraction in [0, 1]', depth));
  if (needle.length === 0) throw new ValueError('insertNeedle needle', expectedFound('a non-empty token list', 'empty'));
  const n = haystack.length;
  const requestedAt = Math.min(n, Math.floor(depth * n));
  let at = requestedAt;
  const isB = new Set(boundaryTokens);
  while (at > 0 && at < n && !isB.has(haystack[at - 1])) at--;
  // at === n: the needle goes after the whole haystack (depth 1, the end is a boundary by definition).
  const tokens = haystack.slice(0, at).concat(needle, haystack.slice(at));
  return { tokens, needleSpan: [at, at + needle.length], insertAt: at, requestedAt };
}

/**
 * The retrieval-head span rule: the first window of `target.length` tokens in `tokens` whose tokens
 * cover more than `threshold` of the target's token set. Returns null when there is none.
 */
export function findSpan(tokens: number[], target: number[], threshold = 0.9): [number, number] | null {
  const set = new Set(target);
  const w = target.length;
  for (let s = 0; s + w <= tokens.length; s++) {
    const seen = new Set<number>();
    for (let j = s; j < s + w; j++) if (set.has(tokens[j])) seen.add(tokens[j]);
    if (seen.size / set.size > threshold) return [s, s + w];
  }
  return null;
}

export interface NeedleOptions {
  /** Total prompt length in tokens (BOS + context + question), default 256. */
  length?: number;
  /** Needle depth, a fraction in [0, 1] (default 0.5). */
  depth?: number;
  seed?: number;
  /** Filler token ids (default 10..vocabSize-1 minus the special ids below). */
  fillerTokens?: number[];
  /** Vocabulary size when fillerTokens is not given (default 64). */
  vocabSize?: number;
  /** Sentence-boundary token (default 1). */
  periodToken?: number;
  /** Sentence lengths (without the period), inclusive range (default [4, 12]). */
  sentenceLength?: [number, number];
  /** Candidate key and value tokens (default: drawn from the filler). */
  keyTokens?: number[];
  valueTokens?: number[];
  /** Number of value tokens (the answer length, default 1). */
  valueLength?: number;
  /** Marker tokens: needle = keyMarker K separator valueMarker V... period; question = questionMarker K valueMarker. */
  keyMarker?: number[];
  valueMarker?: number[];
  /** Tokens between the key and the value marker in a needle (default [periodToken]; [] puts V right after K). */
  separator?: number[];
  questionMarker?: number[];
  /** BOS id to put first (default none). */
  bosId?: number;
  /**
   * Distractor key/value pairs (default 0): this many more sentences in the needle's own format,
   * each with another key and another value (keys distinct from the needle's and from each other;
   * value tokens outside the answer's and distinct from each other), at seeded sentence boundaries of
   * the haystack. The question names the needle's key, so answering means binding the value to its key.
   */
  distractors?: number;
}

/** A distractor pair inside a needle prompt. */
export interface NeedleDistractor {
  key: number[];
  value: number[];
  /** [start, end) of the distractor sentence in `tokens`. */
  span: [number, number];
}

export interface NeedleExample {
  /** Prompt: [BOS] + context with the needle + question. */
  tokens: number[];
  /** [start, end) of the needle in `tokens`. */
  needleSpan: [number, number];
  /** [start, end) of the value (the answer) inside the needle, in `tokens`. */
  valueSpan: [number, number];
  /** The answer tokens (the value). */
  answer: number[];
  key: number[];
  /** [start, end) of the question in `tokens`. */
  questionSpan: [number, number];
  depth: number;
  /** Context start (1 with BOS) and the insertion index within the context. */
  contextStart: number;
  insertAt: number;
  requestedAt: number;
  /** Distractor pairs, in prompt order (absent without distractors). */
  distractors?: NeedleDistractor[];
}

/** Draw `n` distinct items of `pool` minus `exclude` (seeded); a ValueError naming `what` when too few. */
function drawDistinct(r: ReturnType<typeof rng>, pool: number[], exclude: number[], n: number, what: string): number[] {
  const left = [...new Set(pool)].filter((t) => !exclude.includes(t));
  if (left.length < n) throw new ValueError(`makeNeedle ${what}`, expectedFound(`at least ${n} tokens besides the needle's (for the distractors)`, left.length));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(left.splice(r.int(left.length), 1)[0]);
  return out;
}

/**
 * Insert the distractor sentences into `hay` at seeded sentence boundaries (the start or just after a
 * period). Returns the new haystack and each sentence's [start, end) in it.
 */
function insertDistractors(r: ReturnType<typeof rng>, hay: number[], sentences: number[][], period: number): { hay: number[]; spans: Array<[number, number]> } {
  const bounds = [0, ...hay.flatMap((t, i) => (t === period ? [i + 1] : []))];
  const at = sentences.map(() => bounds[r.int(bounds.length)]);
  const order = sentences.map((_, i) => i).sort((a, b) => at[a] - at[b] || a - b);
  const out: number[] = [];
  const spans: Array<[number, number]> = new Array(sentences.length);
  let from = 0;
  for (const i of order) {
    out.push(...hay.slice(from, at[i]));
    from = at[i];
    spans[i] = [out.length, out.length + sentences[i].length];
    out.push(...sentences[i]);
  }
  out.push(...hay.slice(from));
  return { hay: out, spans };
}

/** A synthetic needle example over abstract token ids (seeded). */
export function makeNeedle(options: NeedleOptions = {}): NeedleExample {
  const length = options.length ?? 256;
  const depth = options.depth ?? 0.5;
  const r = rng(options.seed ?? 0);
  const period = options.periodToken ?? 1;
  const keyMarker = options.keyMarker ?? [2, 3];
  const valueMarker = options.valueMarker ?? [4, 3];
  const separator = options.separator ?? [period];
  const questionMarker = options.questionMarker ?? [5, 2, 3];
  const vocabSize = options.vocabSize ?? 64;
  const special = new Set([period, ...keyMarker, ...valueMarker, ...questionMarker, ...(options.bosId !== undefined ? [options.bosId] : [])]);
  const filler = options.fillerTokens ?? Array.from({ length: Math.max(0, vocabSize - 10) }, (_, i) => i + 10).filter((t) => !special.has(t));
  if (filler.length < 2) throw new ValueError('makeNeedle fillerTokens', expectedFound('at least 2 filler tokens', filler.length));
  const [minS, maxS] = options.sentenceLength ?? [4, 12];
  if (!(Number.isInteger(minS) && Number.isInteger(maxS) && minS >= 1 && maxS >= minS)) {
    throw new ValueError('makeNeedle sentenceLength', expectedFound('[min, max] with 1 <= min <= max', [minS, maxS]));
  }
  const valueLength = options.valueLength ?? 1;
  const key = [r.choice(options.keyTokens ?? filler)];
  const value = Array.from({ length: valueLength }, () => r.choice(options.valueTokens ?? filler));
  const sentence = (k: number[], v: number[]) => [...keyMarker, ...k, ...separator, ...valueMarker, ...v, period];
  const needle = sentence(key, value);
  const question = [...questionMarker, ...key, ...valueMarker];
  const bos = options.bosId !== undefined ? [options.bosId] : [];
  const nd = options.distractors ?? 0;
  if (!(Number.isInteger(nd) && nd >= 0)) throw new ValueError('makeNeedle distractors', expectedFound('a non-negative integer', nd));
  const ctxLen = length - bos.length - question.length - needle.length * (1 + nd);
  if (ctxLen < 1) {
    const what = nd ? `BOS + needle + ${nd} distractors + question` : 'BOS + needle + question';
    throw new ValueError('makeNeedle length', expectedFound(`> ${length - ctxLen} (${what})`, length));
  }
  const dKeys = nd ? drawDistinct(r, options.keyTokens ?? filler, key, nd, 'keyTokens') : [];
  const dValues = nd ? drawDistinct(r, options.valueTokens ?? filler, value, nd * valueLength, 'valueTokens') : [];
  const dPairs = dKeys.map((k, i) => ({ key: [k], value: dValues.slice(i * valueLength, (i + 1) * valueLength) }));
  // Haystack: sentences of filler ending in a period, cut to ctxLen and ending at a boundary.
  const hay: number[] = [];
  while (hay.length < ctxLen) {
    const len = r.range(minS, maxS);
    for (let i = 0; i < len; i++) hay.push(r.choice(filler));
    hay.push(period);
  }
  hay.length = ctxLen;
  hay[ctxLen - 1] = period;
  const withD = nd ? insertDistractors(r, hay, dPairs.map((p) => sentence(p.key, p.value)), period) : { hay, spans: [] };
  const ins = insertNeedle(withD.hay, needle, depth, [period]);
  // the period inside a distractor sentence is no boundary for the needle: move back to its start
  const inside = withD.spans.find(([a, b]) => a < ins.insertAt && ins.insertAt < b);
  if (inside) {
    const at = inside[0];
    Object.assign(ins, { tokens: withD.hay.slice(0, at).concat(needle, withD.hay.slice(at)), needleSpan: [at, at + needle.length], insertAt: at });
  }
  const tokens = [...bos, ...ins.tokens, ...question];
  const off = bos.length;
  const vStart = off + ins.needleSpan[0] + keyMarker.length + key.length + separator.length + valueMarker.length;
  const shift = (x: number) => off + x + (x >= ins.insertAt ? needle.length : 0);
  const distractors = dPairs.map((p, i) => ({ ...p, span: [shift(withD.spans[i][0]), shift(withD.spans[i][1] - 1) + 1] as [number, number] }));
  return {
    tokens,
    needleSpan: [off + ins.needleSpan[0], off + ins.needleSpan[1]],
    valueSpan: [vStart, vStart + value.length],
    answer: value,
    key,
    questionSpan: [off + ins.tokens.length, off + ins.tokens.length + question.length],
    depth,
    contextStart: off,
    insertAt: ins.insertAt,
    requestedAt: ins.requestedAt,
    ...(nd ? { distractors: distractors.sort((a, b) => a.span[0] - b.span[0]) } : {}),
  };
}

export interface NeedleTextOptions {
  tokenizer: { encode(text: string): number[] };
  /** Filler text (e.g. essays); repeated if too short. */
  haystack: string;
  /** The needle sentence, e.g. "\nThe key is 7481. The value is 2231.\n". */
  needle: string;
  /** The question appended after the context, e.g. "\nWhat is the value? The value is". */
  question: string;
  /** The expected answer text (its tokens are returned). */
  answer: string;
  /** Context length in tokens (haystack + needle, without BOS or question). */
  contextLength: number;
  depth: number;
  /** Sentence-boundary tokens (default: the tokens of "." when that is one token). */
  boundaryTokens?: number[];
  bosId?: number;
}

/** Text-level needle prompt for a real tokenizer (the retrieval-head protocol). */
export function needleFromText(o: NeedleTextOptions): NeedleExample {
  const needle = o.tokenizer.encode(o.needle);
  const question = o.tokenizer.encode(o.question);
  const answer = o.tokenizer.encode(o.answer);
  const boundary = o.boundaryTokens ?? o.tokenizer.encode('.');
  if (boundary.length === 0) throw new ValueError('needleFromText boundaryTokens', expectedFound('at least one token', 'none'));
  const hayLen = o.contextLength - needle.length;
  if (hayLen < 1) throw new ValueError('needleFromText contextLength', expectedFound(`> needle length ${needle.length}`, o.contextLength));
  const base = o.tokenizer.encode(o.haystack);
  if (base.length === 0) throw new ValueError('needleFromText haystack', expectedFound('non-empty text', 'empty'));
  const hay: number[] = [];
  while (hay.length < hayLen) hay.push(...base);
  hay.length = hayLen;
  const ins = insertNeedle(hay, needle, o.depth, boundary);
  const bos = o.bosId !== undefined ? [o.bosId] : [];
  const tokens = [...bos, ...ins.tokens, ...question];
  const off = bos.length;
  const needleSpan: [number, number] = [off + ins.needleSpan[0], off + ins.needleSpan[1]];
  // The value inside the needle: the answer's tokens as a contiguous run, else the 90% window rule.
  let valueSpan: [number, number] = needleSpan;
  for (let s = needleSpan[0]; s + answer.length <= needleSpan[1]; s++) {
    if (answer.every((t, j) => tokens[s + j] === t)) {
      valueSpan = [s, s + answer.length];
      break;
    }
  }
  const key: number[] = [];
  return {
    tokens,
    needleSpan,
    valueSpan,
    answer,
    key,
    questionSpan: [off + ins.tokens.length, tokens.length],
    depth: o.depth,
    contextStart: off,
    insertAt: ins.insertAt,
    requestedAt: ins.requestedAt,
  };
}

/** The retrieval-head grid: `n` points of linspace(a, b) (inclusive). */
export function linspace(a: number, b: number, n: number): number[] {
  if (!(Number.isInteger(n) && n >= 1)) throw new ValueError('linspace n', expectedFound('a positive integer', n));
  if (n === 1) return [a];
  return Array.from({ length: n }, (_, i) => a + ((b - a) * i) / (n - 1));
}
