/**
 * A token-group task for VAR (visual attention redistribution, METHODS.md section 4): a span of
 * "visual" patch tokens carries the answer, the surrounding text carries distractors.
 *
 *   <bos> text... <img> patch x G </img> text... color ?   ->   answer
 *
 * The image is G patches: mostly the background token `bg`, the majority colour 2-3 times and one
 * other (minority) colour once. The text before and after the image mentions a third colour, the
 * distractor, more often than the majority colour appears in the image, among filler words. The
 * answer is the majority colour of the image: a model that spreads its attention over every colour
 * token in the prompt is drawn to the distractor, so the task needs attention on the token group.
 * Colours are the same token ids in the image and in the text, and the layout is fixed, so the
 * group is one span `{ start, end }` (positions from <bos>) for a whole batch, as `varHook` takes it.
 *
 * The shipped model trained on it, its recipe and its evaluation live in src/zoo/var-group.ts.
 */
import { ConfigError, expectedFound } from '../errors.js';
import { deriveSeed, rng } from '../util/random.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary and layout

export const TOKEN_GROUP_COLORS: readonly string[] = ['red', 'green', 'blue', 'yellow', 'cyan', 'magenta', 'black', 'white'];
const SPECIAL = ['<bos>', '<unk>', '<img>', '</img>', 'color', '?', 'bg'];
const FILLER = Array.from({ length: 24 }, (_, i) => `w${i}`);
/** <bos> <unk> <img> </img> color ? bg, 8 colours, 24 filler words (39 tokens). */
export const TOKEN_GROUP_VOCAB: readonly string[] = [...SPECIAL, ...TOKEN_GROUP_COLORS, ...FILLER];
const tid = (w: string) => TOKEN_GROUP_VOCAB.indexOf(w);

export const TOKEN_GROUP_IDS = {
  bos: tid('<bos>'),
  imgOpen: tid('<img>'),
  imgClose: tid('</img>'),
  color: tid('color'),
  question: tid('?'),
  background: tid('bg'),
  colors: TOKEN_GROUP_COLORS.map(tid),
  filler: FILLER.map(tid),
} as const;

export interface TokenGroupOptions {
  /** Text tokens between <bos> and <img> (default 10). */
  textBefore?: number;
  /** Patch tokens in the image, the token group (default 16). */
  groupSize?: number;
  /** Text tokens between </img> and "color ?" (default 6). */
  textAfter?: number;
  /** Occurrences of the majority colour in the image, inclusive range (default [2, 3]). */
  majority?: [number, number];
  /** Occurrences of the one minority colour in the image (default 1; 0 for none). */
  minority?: number;
  /** Occurrences of the distractor colour in the text (default 4). */
  textDistractors?: number;
}

export interface TokenGroupLayout {
  textBefore: number;
  groupSize: number;
  textAfter: number;
  /** Total prompt length (answer excluded). */
  length: number;
  /** Position of <img>. */
  imgOpen: number;
  /** The patch span [start, end), positions from <bos>: the VAR token group. */
  group: { start: number; end: number };
  /** Position of </img>. */
  imgClose: number;
  /** The last position (the "?" query that predicts the answer). */
  query: number;
}

/** The options with their defaults filled in. */
export function resolveTokenGroupOptions(o: TokenGroupOptions): Required<TokenGroupOptions> {
  const r = {
    textBefore: o.textBefore ?? 10,
    groupSize: o.groupSize ?? 16,
    textAfter: o.textAfter ?? 6,
    majority: o.majority ?? ([2, 3] as [number, number]),
    minority: o.minority ?? 1,
    textDistractors: o.textDistractors ?? 4,
  };
  const int = (k: string, v: number, lo: number) => {
    if (!Number.isInteger(v) || v < lo) throw new ConfigError(`tokenGroup ${k}`, expectedFound(`an integer >= ${lo}`, v));
  };
  int('textBefore', r.textBefore, 0);
  int('groupSize', r.groupSize, 1);
  int('textAfter', r.textAfter, 0);
  int('minority', r.minority, 0);
  int('textDistractors', r.textDistractors, 0);
  if (!Array.isArray(r.majority) || r.majority.length !== 2) throw new ConfigError('tokenGroup majority', expectedFound('[min, max]', r.majority));
  int('majority[0]', r.majority[0], 1);
  int('majority[1]', r.majority[1], r.majority[0]);
  if (r.majority[0] <= r.minority) {
    throw new ConfigError('tokenGroup majority', expectedFound(`more than minority (${r.minority}) occurrences`, r.majority[0]));
  }
  if (r.majority[1] + r.minority > r.groupSize) {
    throw new ConfigError('tokenGroup groupSize', expectedFound(`room for ${r.majority[1]} + ${r.minority} coloured patches`, r.groupSize));
  }
  if (r.textDistractors > r.textBefore + r.textAfter) {
    throw new ConfigError('tokenGroup textDistractors', expectedFound(`at most textBefore + textAfter = ${r.textBefore + r.textAfter}`, r.textDistractors));
  }
  return r;
}

/** Positions of the parts of a prompt (fixed for given options). */
export function tokenGroupLayout(opts: TokenGroupOptions = {}): TokenGroupLayout {
  const o = resolveTokenGroupOptions(opts);
  const imgOpen = 1 + o.textBefore;
  const start = imgOpen + 1;
  const end = start + o.groupSize;
  const imgClose = end;
  const length = imgClose + 1 + o.textAfter + 2;
  return { textBefore: o.textBefore, groupSize: o.groupSize, textAfter: o.textAfter, length, imgOpen, group: { start, end }, imgClose, query: length - 1 };
}

export interface TokenGroupExample {
  /** Prompt token ids (length layout.length), ending in "color ?". */
  tokens: number[];
  /** Answer token id: the majority colour of the image. */
  answer: number;
  /** Colour token ids: majority (the answer), minority (image, once) and distractor (text). */
  majority: number;
  minority: number | null;
  distractor: number | null;
  /** How often the majority colour is in the image. */
  majorityCount: number;
  /** Absolute positions of the coloured patches and of the distractor mentions. */
  majorityPositions: number[];
  minorityPositions: number[];
  distractorPositions: number[];
}

/** One seeded example. */
export function tokenGroupExample(seed: number, opts: TokenGroupOptions = {}): TokenGroupExample {
  const o = resolveTokenGroupOptions(opts);
  const L = tokenGroupLayout(o);
  const r = rng(seed);
  const ids = TOKEN_GROUP_IDS;
  const cols = r.sample(ids.colors, 3);
  const [majority, minority, distractor] = cols;
  const tokens: number[] = new Array(L.length);
  tokens[0] = ids.bos;
  const textPos: number[] = [];
  for (let i = 1; i < L.imgOpen; i++) textPos.push(i);
  for (let i = L.imgClose + 1; i < L.length - 2; i++) textPos.push(i);
  for (const i of textPos) tokens[i] = r.choice(ids.filler);
  tokens[L.imgOpen] = ids.imgOpen;
  tokens[L.imgClose] = ids.imgClose;
  tokens[L.length - 2] = ids.color;
  tokens[L.length - 1] = ids.question;
  const patchPos: number[] = [];
  for (let j = L.group.start; j < L.group.end; j++) {
    tokens[j] = ids.background;
    patchPos.push(j);
  }
  const majorityCount = r.range(o.majority[0], o.majority[1]);
  const coloured = r.sample(patchPos, majorityCount + o.minority);
  const majorityPositions = coloured.slice(0, majorityCount).sort((a, b) => a - b);
  const minorityPositions = coloured.slice(majorityCount).sort((a, b) => a - b);
  for (const j of majorityPositions) tokens[j] = majority;
  for (const j of minorityPositions) tokens[j] = minority;
  const distractorPositions = r.sample(textPos, o.textDistractors).sort((a, b) => a - b);
  for (const j of distractorPositions) tokens[j] = distractor;
  return {
    tokens,
    answer: majority,
    majority,
    minority: o.minority > 0 ? minority : null,
    distractor: o.textDistractors > 0 ? distractor : null,
    majorityCount,
    majorityPositions,
    minorityPositions,
    distractorPositions,
  };
}

export interface TokenGroupBatch {
  tokens: number[][];
  answers: number[];
  examples: TokenGroupExample[];
  layout: TokenGroupLayout;
  seed: number;
}

/** n seeded examples (example i uses deriveSeed(seed, i)). */
export function tokenGroupBatch(n: number, seed: number, opts: TokenGroupOptions = {}): TokenGroupBatch {
  if (!Number.isInteger(n) || n < 1) throw new ConfigError('tokenGroupBatch n', expectedFound('a positive integer', n));
  if (!Number.isFinite(seed)) throw new ConfigError('tokenGroupBatch seed', expectedFound('a finite number', seed));
  const examples = Array.from({ length: n }, (_, i) => tokenGroupExample(deriveSeed(seed, i), opts));
  return { tokens: examples.map((e) => e.tokens), answers: examples.map((e) => e.answer), examples, layout: tokenGroupLayout(opts), seed };
}
