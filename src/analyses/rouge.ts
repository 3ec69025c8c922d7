/**
 * ROUGE-1 recall as the Python `rouge_score` package computes it, which the retrieval-head code
 * (nightdessert/Retrieval_Head) uses as `RougeScorer(['rouge1', 'rougeL'], use_stemmer=True)` and
 * `score(reference, response)['rouge1'].recall`:
 *  - tokenisation: lowercase; every run of characters outside [a-z0-9] becomes a space; split on
 *    whitespace; with the stemmer, words longer than 3 characters are Porter-stemmed; empty or
 *    non-[a-z0-9] tokens are dropped (so non-ASCII letters split words, as in rouge_score);
 *  - recall = sum over unigrams of min(count in reference, count in response) / max(#reference
 *    unigrams, 1).
 * The stemmer is Porter's algorithm with the NLTK extensions (NLTK's default mode, which
 * rouge_score gets through `nltk.stem.porter.PorterStemmer()`), written here from the paper's
 * rules and NLTK's documented departures.
 */
import { ConfigError, expectedFound } from '../errors.js';

const VOWELS = new Set(['a', 'e', 'i', 'o', 'u']);

function isCons(w: string, i: number): boolean {
  const c = w[i];
  if (VOWELS.has(c)) return false;
  if (c === 'y') return i === 0 ? true : !isCons(w, i - 1);
  return true;
}

/** Porter's measure m: the number of VC sequences in [C](VC)^m[V]. */
function measure(stem: string): number {
  let m = 0;
  for (let i = 1; i < stem.length; i++) {
    if (!isCons(stem, i - 1) && isCons(stem, i)) m++;
  }
  return m;
}

function hasVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isCons(stem, i)) return true;
  return false;
}

/** *o: stem ends consonant-vowel-consonant, last not w/x/y; NLTK also accepts a 2-letter vowel-consonant stem. */
function endsCVC(s: string): boolean {
  const n = s.length;
  if (n >= 3 && isCons(s, n - 3) && !isCons(s, n - 2) && isCons(s, n - 1) && !'wxy'.includes(s[n - 1])) return true;
  return n === 2 && !isCons(s, 0) && isCons(s, 1);
}

type Rule = [suffix: string, replacement: string, cond: ((stem: string) => boolean) | null];

/**
 * The first rule whose suffix matches decides: replace when its condition holds on the shortened
 * stem, else leave the word (no later rule is tried, as in the paper and NLTK).
 */
function firstRule(word: string, rules: Rule[]): string {
  for (const [suf, rep, cond] of rules) {
    if (!word.endsWith(suf)) continue;
    const stem = word.slice(0, word.length - suf.length);
    return cond === null || cond(stem) ? stem + rep : word;
  }
  return word;
}

const posM = (s: string) => measure(s) > 0;
const mGt1 = (s: string) => measure(s) > 1;

const IRREGULAR: Record<string, string> = {
  sky: 'sky', skies: 'sky', dying: 'die', lying: 'lie', tying: 'tie', news: 'news',
  innings: 'inning', inning: 'inning', outings: 'outing', outing: 'outing',
  cannings: 'canning', canning: 'canning', howe: 'howe', proceed: 'proceed', exceed: 'exceed', succeed: 'succeed',
};

function step1a(w: string): string {
  // 'ies' -> 'ie' for four-letter words (dies -> die), else 'i' (ponies -> poni)
  if (w.endsWith('ies') && w.length === 4) return w.slice(0, -3) + 'ie';
  return firstRule(w, [
    ['sses', 'ss', null],
    ['ies', 'i', null],
    ['ss', 'ss', null],
    ['s', '', null],
  ]);
}

function step1b(w: string): string {
  if (w.endsWith('ied')) return w.slice(0, -3) + (w.length === 4 ? 'ie' : 'i');
  if (w.endsWith('eed')) {
    const stem = w.slice(0, -3);
    return measure(stem) > 0 ? stem + 'ee' : w;
  }
  let stem: string | null = null;
  if (w.endsWith('ed') && hasVowel(w.slice(0, -2))) stem = w.slice(0, -2);
  else if (w.endsWith('ing') && hasVowel(w.slice(0, -3))) stem = w.slice(0, -3);
  if (stem === null) return w;
  if (stem.endsWith('at') || stem.endsWith('bl') || stem.endsWith('iz')) return stem + 'e';
  const n = stem.length;
  if (n >= 2 && stem[n - 1] === stem[n - 2] && isCons(stem, n - 1) && !'lsz'.includes(stem[n - 1])) return stem.slice(0, -1);
  if (measure(stem) === 1 && endsCVC(stem)) return stem + 'e';
  return stem;
}

function step1c(w: string): string {
  // NLTK: y -> i only after a consonant that is not the first letter (happy -> happi, enjoy stays)
  if (w.endsWith('y') && w.length > 2 && isCons(w, w.length - 2)) return w.slice(0, -1) + 'i';
  return w;
}

function step2(w: string): string {
  if (w.endsWith('alli') && posM(w.slice(0, -4))) return step2(w.slice(0, -4) + 'al');
  return firstRule(w, [
    ['ational', 'ate', posM],
    ['tional', 'tion', posM],
    ['enci', 'ence', posM],
    ['anci', 'ance', posM],
    ['izer', 'ize', posM],
    ['bli', 'ble', posM],
    ['fulli', 'ful', posM],
    ['entli', 'ent', posM],
    ['eli', 'e', posM],
    ['ousli', 'ous', posM],
    ['ization', 'ize', posM],
    ['ation', 'ate', posM],
    ['ator', 'ate', posM],
    ['alism', 'al', posM],
    ['iveness', 'ive', posM],
    ['fulness', 'ful', posM],
    ['ousness', 'ous', posM],
    ['aliti', 'al', posM],
    ['iviti', 'ive', posM],
    ['biliti', 'ble', posM],
    ['logi', 'log', (s) => measure(s + 'l') > 0],
  ]);
}

function step3(w: string): string {
  return firstRule(w, [
    ['icate', 'ic', posM],
    ['ative', '', posM],
    ['alize', 'al', posM],
    ['iciti', 'ic', posM],
    ['ical', 'ic', posM],
    ['ful', '', posM],
    ['ness', '', posM],
  ]);
}

function step4(w: string): string {
  return firstRule(w, [
    ['al', '', mGt1],
    ['ance', '', mGt1],
    ['ence', '', mGt1],
    ['er', '', mGt1],
    ['ic', '', mGt1],
    ['able', '', mGt1],
    ['ible', '', mGt1],
    ['ant', '', mGt1],
    ['ement', '', mGt1],
    ['ment', '', mGt1],
    ['ent', '', mGt1],
    ['ion', '', (s) => measure(s) > 1 && (s.endsWith('s') || s.endsWith('t'))],
    ['ou', '', mGt1],
    ['ism', '', mGt1],
    ['ate', '', mGt1],
    ['iti', '', mGt1],
    ['ous', '', mGt1],
    ['ive', '', mGt1],
    ['ize', '', mGt1],
  ]);
}

function step5(w: string): string {
  if (w.endsWith('e')) {
    const s = w.slice(0, -1);
    const m = measure(s);
    if (m > 1 || (m === 1 && !endsCVC(s))) w = s;
  }
  if (w.endsWith('ll') && measure(w.slice(0, -1)) > 1) w = w.slice(0, -1);
  return w;
}

/** Porter stemmer, NLTK-extensions mode (lowercases its input). */
export function porterStem(word: string): string {
  const w = word.toLowerCase();
  if (Object.prototype.hasOwnProperty.call(IRREGULAR, w)) return IRREGULAR[w];
  if (w.length <= 2) return w;
  return step5(step4(step3(step2(step1c(step1b(step1a(w)))))));
}

export interface RougeOptions {
  /** Porter-stem words longer than 3 characters. Default true (the retrieval-head code). */
  useStemmer?: boolean;
}

/** rouge_score's default tokenizer. */
export function rougeTokenize(text: string, opts: RougeOptions = {}): string[] {
  if (typeof text !== 'string') throw new ConfigError('text', expectedFound('a string', typeof text));
  const stem = opts.useStemmer ?? true;
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(/\s+/)
    .map((t) => (stem && t.length > 3 ? porterStem(t) : t))
    .filter((t) => /^[a-z0-9]+$/.test(t));
}

function counts(tokens: string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of tokens) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

/**
 * ROUGE-1 recall of `reference` in `response` (rouge_score: score(target=reference,
 * prediction=response)['rouge1'].recall). Strings are tokenised as above; arrays are taken as
 * already-tokenised unigrams (e.g. token ids) and compared as they are.
 */
export function rougeRecall1(reference: string | Array<string | number>, response: string | Array<string | number>, opts: RougeOptions = {}): number {
  const ref = typeof reference === 'string' ? rougeTokenize(reference, opts) : reference.map(String);
  const res = typeof response === 'string' ? rougeTokenize(response, opts) : response.map(String);
  const rc = counts(ref);
  const pc = counts(res);
  let overlap = 0;
  for (const [t, c] of rc) overlap += Math.min(c, pc.get(t) ?? 0);
  return overlap / Math.max(ref.length, 1);
}
