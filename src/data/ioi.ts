/**
 * The Indirect Object Identification (IOI) dataset and its metrics (Wang et al. 2022). Templates, places,
 * objects and names are those of the authors' dataset code (redwoodresearch/Easy-Transformer,
 * easy_transformer/ioi_dataset.py, lines 17-233; ACDC's acdc/ioi/ioi_dataset.py is a copy); the
 * corruption follows its gen_flipped_prompts by default (see IOICorruptionRule) and docs/methods/ioi.md
 * lists every departure. Works with any tokenizer given as `{ encode(text): number[] }`; nothing here
 * needs a model.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { rng, type Rng } from '../util/random.js';

/** The 15 BABA templates ([A] = indirect object, [B] = subject). */
export const BABA_TEMPLATES: readonly string[] = [
  'Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to [A]',
  'Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a [OBJECT] to [A]',
  'Then, [B] and [A] had a long argument, and afterwards [B] said to [A]',
  'After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to [A]',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to [A]',
  'When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to [A]',
  'While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to [A]',
  'While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to [A]',
  'After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]',
  'Then, [B] and [A] had a long argument. Afterwards [B] said to [A]',
  'The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]',
  'Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to [A]',
];

/** Swap the two names of the first clause: the first [B] becomes [A] and the first [A] becomes [B]. */
export function swapFirstClause(template: string): string {
  const b = template.indexOf('[B]');
  const a = template.indexOf('[A]');
  if (b < 0 || a < 0) throw new ValueError('swapFirstClause(template)', expectedFound('a template with [A] and [B]', template));
  const chars = template.split('');
  chars.splice(b, 3, '[', 'A', ']');
  chars.splice(a, 3, '[', 'B', ']');
  return chars.join('');
}

/** The 15 ABBA templates: BABA with the first clause's names swapped. */
export const ABBA_TEMPLATES: readonly string[] = BABA_TEMPLATES.map(swapFirstClause);

/** The 4 three-name templates used for corrupted runs. */
export const ABC_TEMPLATES: readonly string[] = [
  'Then, [A], [B] and [C] went to the [PLACE]. [B] and [C] gave a [OBJECT] to [A]',
  'Afterwards [A], [B] and [C] went to the [PLACE]. [B] and [C] gave a [OBJECT] to [A]',
  'When [A], [B] and [C] arrived at the [PLACE], [B] and [C] gave a [OBJECT] to [A]',
  'Friends [A], [B] and [C] went to the [PLACE]. [B] and [C] gave a [OBJECT] to [A]',
];

export const PLACES: readonly string[] = ['store', 'garden', 'restaurant', 'school', 'hospital', 'office', 'house', 'station'];
export const OBJECTS: readonly string[] = ['ring', 'kiss', 'bone', 'basketball', 'computer', 'necklace', 'drink', 'snack'];

/**
 * The 99 names of the authors' NAMES list (easy_transformer/ioi_dataset.py lines 17-117), in its order;
 * each is one GPT-2 token with its leading space.
 */
export const NAMES: readonly string[] = [
  'Michael', 'Christopher', 'Jessica', 'Matthew', 'Ashley', 'Jennifer', 'Joshua', 'Amanda', 'Daniel', 'David',
  'James', 'Robert', 'John', 'Joseph', 'Andrew', 'Ryan', 'Brandon', 'Jason', 'Justin', 'Sarah',
  'William', 'Jonathan', 'Stephanie', 'Brian', 'Nicole', 'Nicholas', 'Anthony', 'Heather', 'Eric', 'Elizabeth',
  'Adam', 'Megan', 'Melissa', 'Kevin', 'Steven', 'Thomas', 'Timothy', 'Christina', 'Kyle', 'Rachel',
  'Laura', 'Lauren', 'Amber', 'Brittany', 'Danielle', 'Richard', 'Kimberly', 'Jeffrey', 'Amy', 'Crystal',
  'Michelle', 'Tiffany', 'Jeremy', 'Benjamin', 'Mark', 'Emily', 'Aaron', 'Charles', 'Rebecca', 'Jacob',
  'Stephen', 'Patrick', 'Sean', 'Erin', 'Jamie', 'Kelly', 'Samantha', 'Nathan', 'Sara', 'Dustin',
  'Paul', 'Angela', 'Tyler', 'Scott', 'Katherine', 'Andrea', 'Gregory', 'Erica', 'Mary', 'Travis',
  'Lisa', 'Kenneth', 'Bryan', 'Lindsey', 'Kristen', 'Jose', 'Alexander', 'Jesse', 'Katie', 'Lindsay',
  'Shannon', 'Vanessa', 'Courtney', 'Christine', 'Alicia', 'Cody', 'Allison', 'Bradley', 'Samuel',
];

/** A tokenizer as the IOI code needs it. */
export interface IOITokenizer {
  encode(text: string): number[];
  decode?(ids: number[]): string;
  /** BOS id, needed when prependBos is true. */
  bosTokenId?: number;
}

export type IOIPromptType = 'mixed' | 'BABA' | 'ABBA' | 'ABC';
export type IOITemplateKind = 'BABA' | 'ABBA' | 'ABC';
export const IOI_POSITIONS = ['IO', 'IO-1', 'IO+1', 'S', 'S-1', 'S+1', 'S2', 'end', 'starts', 'punct'] as const;
export type IOIPosition = (typeof IOI_POSITIONS)[number];

export interface IOIDataset {
  /** Prompts without the final IO name (what the model sees). */
  prompts: string[];
  /** Full sentences, ending in " " + IO. */
  texts: string[];
  /** Token ids of each prompt, un-padded (BOS first when prependBos). */
  tokens: number[][];
  /** Token id of " " + IO (the answer) and of " " + S, per prompt. */
  ioTokens: number[];
  sTokens: number[];
  ioNames: string[];
  sNames: string[];
  /** For corrupted/ABC prompts: the name at S1 when it differs from S (else equals sNames). */
  s1Names: string[];
  /** Third name drawn per prompt (used by ABC templates). */
  cNames: string[];
  places: string[];
  objects: string[];
  /** Index into the template list of the kind (0..14 for BABA/ABBA, 0..3 for ABC). */
  templateIds: number[];
  templateKinds: IOITemplateKind[];
  /** Token positions per prompt (indices into `tokens[i]`). */
  wordIdx: Record<IOIPosition, number[]>;
  /** The names that were usable (single tokens with a leading space). */
  names: string[];
  prependBos: boolean;
  seed: number;
  promptType: IOIPromptType;
  /** Set on corrupted datasets: the flips applied. */
  flips?: Array<[string, string]>;
  /** Set on corrupted datasets: how the new names were drawn (see IOICorruptionRule). */
  corruptionRule?: IOICorruptionRule;
}

export interface IOIOptions {
  /** Number of prompts (even when symmetric). */
  n: number;
  seed?: number;
  /** 'mixed' (default): template uniform over the 30 BABA+ABBA templates. */
  promptType?: IOIPromptType;
  /** Add each prompt again with A and B swapped (n/2 pairs). */
  symmetric?: boolean;
  /** Put the tokenizer's BOS first (default true, like model.toTokens). */
  prependBos?: boolean;
  /** Names to draw from (default NAMES). */
  names?: readonly string[];
  /** Only these template indices (into the kind's list, 0..14 for BABA/ABBA); default all. */
  templates?: readonly number[];
}

const WARNED = new WeakSet<object>();

/** The names of `candidates` that encode to exactly one token with a leading space (others dropped with a warning). */
export function singleTokenNames(tokenizer: IOITokenizer, candidates: readonly string[] = NAMES): string[] {
  const ok: string[] = [];
  const dropped: string[] = [];
  for (const n of candidates) (tokenizer.encode(' ' + n).length === 1 ? ok : dropped).push(n);
  if (dropped.length > 0 && !WARNED.has(tokenizer)) {
    WARNED.add(tokenizer);
    console.warn(`IOI: dropped ${dropped.length} name(s) that are not one token with a leading space: ${dropped.join(', ')}`);
  }
  return ok;
}

const SLOT = /\[(A|B|C)\]/g;

/** The names filling a template's [A]/[B]/[C] slots, in text order (the final [A] is the answer). */
function slotNames(template: string, io: string, s: string, s1: string, c: string): string[] {
  let firstB = true;
  return [...template.matchAll(SLOT)].map((m) => {
    if (m[1] === 'A') return io;
    if (m[1] === 'C') return c;
    const name = firstB ? s1 : s;
    firstB = false;
    return name;
  });
}

/** A template with its name slots filled in order by `names`, and its place and object. */
function fillSlots(template: string, names: string[], place: string, object: string): string {
  let k = 0;
  return template.replace(SLOT, () => names[k++]).replaceAll('[PLACE]', place).replaceAll('[OBJECT]', object);
}

function templatesOf(kind: IOITemplateKind): readonly string[] {
  return kind === 'BABA' ? BABA_TEMPLATES : kind === 'ABBA' ? ABBA_TEMPLATES : ABC_TEMPLATES;
}

interface RawPrompt {
  kind: IOITemplateKind;
  templateId: number;
  io: string;
  s: string;
  s1: string;
  c: string;
  place: string;
  object: string;
  text: string;
}

/** Build the full sentence for a template with the IO and S names (S1 may differ after corruption). */
function buildText(kind: IOITemplateKind, templateId: number, io: string, s: string, s1: string, c: string, place: string, object: string): string {
  const t = templatesOf(kind)[templateId];
  return fillSlots(t, slotNames(t, io, s, s1, c), place, object);
}

function promptOf(text: string, io: string): string {
  const suffix = ' ' + io;
  if (!text.endsWith(suffix)) throw new ValueError('IOI text', expectedFound(`a sentence ending in "${suffix}"`, text));
  return text.slice(0, text.length - suffix.length);
}

function singleToken(tokenizer: IOITokenizer, text: string, where: string): number {
  const ids = tokenizer.encode(text);
  if (ids.length !== 1) throw new ValueError(where, expectedFound(`"${text}" to be one token`, `${ids.length} tokens ${JSON.stringify(ids)}`));
  return ids[0];
}

/** The per-prompt lists that finishing a dataset fills, empty. */
function promptLists(): Pick<IOIDataset, 'prompts' | 'texts' | 'tokens' | 'ioTokens' | 'sTokens' | 'ioNames' | 'sNames' | 's1Names'> {
  return { prompts: [], texts: [], tokens: [], ioTokens: [], sTokens: [], ioNames: [], sNames: [], s1Names: [] };
}

function finish(raw: RawPrompt[], tokenizer: IOITokenizer, opts: Required<Pick<IOIOptions, 'seed' | 'promptType' | 'prependBos'>>, names: string[]): IOIDataset {
  const bos = tokenizer.bosTokenId;
  if (opts.prependBos && (bos === undefined || !Number.isInteger(bos))) {
    throw new ConfigError('IOI tokenizer.bosTokenId', expectedFound('a BOS token id (or prependBos: false)', bos));
  }
  const dotId = tokenizer.encode('.');
  const commaId = tokenizer.encode(',');
  const wordIdx = Object.fromEntries(IOI_POSITIONS.map((k) => [k, [] as number[]])) as Record<IOIPosition, number[]>;
  const ds: IOIDataset = {
    ...promptLists(),
    cNames: [],
    places: [],
    objects: [],
    templateIds: [],
    templateKinds: [],
    wordIdx,
    names,
    prependBos: opts.prependBos,
    seed: opts.seed,
    promptType: opts.promptType,
  };
  raw.forEach((r, i) => {
    const where = `IOI prompt ${i} ("${r.text}")`;
    const prompt = promptOf(r.text, r.io);
    const toks = (opts.prependBos ? [bos as number] : []).concat(tokenizer.encode(prompt));
    const ioTok = singleToken(tokenizer, ' ' + r.io, `${where}: IO name`);
    const sTok = singleToken(tokenizer, ' ' + r.s, `${where}: S name`);
    const s1Tok = singleToken(tokenizer, ' ' + r.s1, `${where}: S1 name`);
    const io = toks.indexOf(ioTok);
    const s1 = toks.indexOf(s1Tok);
    const s2 = toks.lastIndexOf(sTok);
    if (io < 0 || s1 < 0 || s2 < 0 || s2 === s1) {
      throw new ValueError(where, expectedFound('IO, S1 and a distinct S2 as whole tokens in the prompt', { io, s1, s2 }));
    }
    // punct: the first "." when the sentence has one, else the first "," (the literature's rule).
    const pid = r.text.includes('.') && dotId.length === 1 ? dotId[0] : commaId.length === 1 ? commaId[0] : -1;
    const punct = toks.indexOf(pid);
    if (punct < 0) throw new ValueError(where, expectedFound('a "." or "," token', 'none (tokenizer merges punctuation?)'));
    const pos: Record<IOIPosition, number> = {
      IO: io,
      'IO-1': io - 1,
      'IO+1': io + 1,
      S: s1,
      'S-1': s1 - 1,
      'S+1': s1 + 1,
      S2: s2,
      end: toks.length - 1,
      starts: 0,
      punct,
    };
    for (const k of IOI_POSITIONS) wordIdx[k].push(pos[k]);
    ds.prompts.push(prompt);
    ds.texts.push(r.text);
    ds.tokens.push(toks);
    ds.ioTokens.push(ioTok);
    ds.sTokens.push(sTok);
    ds.ioNames.push(r.io);
    ds.sNames.push(r.s);
    ds.s1Names.push(r.s1);
    ds.cNames.push(r.c);
    ds.places.push(r.place);
    ds.objects.push(r.object);
    ds.templateIds.push(r.templateId);
    ds.templateKinds.push(r.kind);
  });
  return ds;
}

/**
 * Generate an IOI dataset: template uniform (over the 30 BABA+ABBA templates for 'mixed'),
 * three distinct names, place and object uniform; seeded. In symmetric mode every prompt is
 * followed by the same prompt with A and B swapped.
 */
export function generateIOI(tokenizer: IOITokenizer, options: IOIOptions): IOIDataset {
  const n = options.n;
  const seed = options.seed ?? 0;
  const promptType = options.promptType ?? 'mixed';
  const symmetric = options.symmetric ?? false;
  const prependBos = options.prependBos ?? true;
  if (!(Number.isInteger(n) && n > 0)) throw new ValueError('generateIOI n', expectedFound('a positive integer', n));
  if (symmetric && n % 2 !== 0) throw new ValueError('generateIOI n', expectedFound('an even number in symmetric mode', n));
  if (!['mixed', 'BABA', 'ABBA', 'ABC'].includes(promptType)) {
    throw new ValueError('generateIOI promptType', expectedFound('mixed | BABA | ABBA | ABC', promptType));
  }
  const names = singleTokenNames(tokenizer, options.names ?? NAMES);
  if (names.length < 3) throw new ValueError('generateIOI names', expectedFound('at least 3 single-token names', names.length));
  const choices: Array<[IOITemplateKind, number]> =
    promptType === 'mixed'
      ? [...BABA_TEMPLATES.map((_, i) => ['BABA', i] as [IOITemplateKind, number]), ...ABBA_TEMPLATES.map((_, i) => ['ABBA', i] as [IOITemplateKind, number])]
      : templatesOf(promptType).map((_, i) => [promptType, i] as [IOITemplateKind, number]);
  if (options.templates) {
    const keep = new Set(options.templates);
    const kept = choices.filter(([, i]) => keep.has(i));
    if (!kept.length) throw new ValueError('generateIOI templates', expectedFound(`template indices of the ${promptType} list`, options.templates));
    choices.splice(0, choices.length, ...kept);
  }
  const r = rng(seed);
  const raw: RawPrompt[] = [];
  const draws = symmetric ? n / 2 : n;
  for (let d = 0; d < draws; d++) {
    const [kind, templateId] = r.choice(choices);
    const [a, b, c] = r.sample(names, 3);
    const place = r.choice(PLACES);
    const object = r.choice(OBJECTS);
    raw.push({ kind, templateId, io: a, s: b, s1: b, c, place, object, text: buildText(kind, templateId, a, b, b, c, place, object) });
    if (symmetric) {
      raw.push({ kind, templateId, io: b, s: a, s1: a, c, place, object, text: buildText(kind, templateId, b, a, a, c, place, object) });
    }
  }
  return finish(raw, tokenizer, { seed, promptType, prependBos }, names);
}

export type IOIFlip = ['IO' | 'S' | 'S1', 'RAND'];
export const ABC_FLIPS: IOIFlip[] = [
  ['IO', 'RAND'],
  ['S', 'RAND'],
  ['S1', 'RAND'],
];

/**
 * How a RAND flip draws its new name.
 * - 'redwood' (default, the authors' code: redwoodresearch/Easy-Transformer easy_transformer/ioi_dataset.py
 *   gen_flipped_prompts, lines 369-377 and 393-401, copied into ACDC's acdc/ioi/ioi_dataset.py): IO->RAND
 *   redraws until the name differs from the current IO and S; S->RAND and S1->RAND draw from every name,
 *   so a corrupted prompt may repeat a name (S1 = S2, IO = S2, IO = S1 or an unchanged S: 0.5-1.5% of
 *   prompts each with the 99 names; docs/methods/ioi.md gives the rates).
 * - 'distinct': every new name differs from every name in the prompt at that moment, so the corrupted
 *   prompt always holds three distinct names at IO, S1 and S2 (the paper's description of the ABC set).
 */
export type IOICorruptionRule = 'redwood' | 'distinct';

/**
 * One RAND flip on the name slots, as the authors' code does it on the words of the sentence: IO replaces
 * the first two occurrences of the IO name (the IO slot and the answer); S the first and then the last
 * occurrence of S (S1 and S2) and becomes the new S; S1 the first occurrence of S only.
 */
function flipSlots(w: string[], cur: { io: string; s: string }, what: IOIFlip[0], name: string, where: string): void {
  const first = (x: string) => {
    const i = w.indexOf(x);
    if (i < 0) throw new ValueError(where, expectedFound(`the name "${x}" in the prompt`, w.join(', ')));
    return i;
  };
  if (what === 'IO') {
    const old = cur.io;
    w[first(old)] = name;
    w[first(old)] = name;
    cur.io = name;
  } else {
    const old = cur.s;
    w[first(old)] = name;
    if (what === 'S') {
      const last = w.lastIndexOf(old);
      if (last < 0) throw new ValueError(where, expectedFound(`a second occurrence of "${old}" (S2)`, w.join(', ')));
      w[last] = name;
      cur.s = name;
    }
  }
}

/**
 * The corrupted ("ABC") set: the same prompts with IO, then S (both occurrences), then S1 replaced by
 * random names (the flips IO->RAND, S->RAND, S1->RAND, in this order by default). `rule` says how the
 * names are drawn (see IOICorruptionRule; default 'redwood', the authors' code); the result records it
 * in `corruptionRule`. Token positions are the clean ones (names are single tokens; this is checked), as
 * the authors' code reuses the clean word indices.
 */
export function ioiCorrupted(ds: IOIDataset, tokenizer: IOITokenizer, options: { seed?: number; flips?: IOIFlip[]; rule?: IOICorruptionRule } = {}): IOIDataset {
  const seed = options.seed ?? ds.seed + 1;
  const flips = options.flips ?? ABC_FLIPS;
  const rule = options.rule ?? 'redwood';
  if (rule !== 'redwood' && rule !== 'distinct') throw new ValueError('ioiCorrupted rule', expectedFound('"redwood" or "distinct"', rule));
  flips.forEach((f, k) => {
    if (!Array.isArray(f) || f[1] !== 'RAND' || !['IO', 'S', 'S1'].includes(f[0])) {
      throw new ValueError(`ioiCorrupted flips[${k}]`, expectedFound('["IO"|"S"|"S1", "RAND"]', f));
    }
  });
  const r: Rng = rng(seed);
  const draw = (avoid: Set<string>) => {
    if (rule === 'distinct') return r.choice(ds.names.filter((x) => !avoid.has(x)));
    for (;;) {
      const x = r.choice(ds.names); // rejection sampling, as the authors' redraw loop
      if (!avoid.has(x)) return x;
    }
  };
  const raw: RawPrompt[] = ds.texts.map((_, i) => {
    const kind = ds.templateKinds[i];
    const tid = ds.templateIds[i];
    const template = templatesOf(kind)[tid];
    const w = slotNames(template, ds.ioNames[i], ds.sNames[i], ds.s1Names[i], ds.cNames[i]);
    const cur = { io: ds.ioNames[i], s: ds.sNames[i] };
    for (const [what] of flips) {
      const avoid = rule === 'distinct' ? new Set([...w, ds.cNames[i]]) : what === 'IO' ? new Set([cur.io, cur.s]) : new Set<string>();
      flipSlots(w, cur, what, draw(avoid), `ioiCorrupted prompt ${i} (${what}->RAND)`);
    }
    const s1 = w[(template.slice(0, template.indexOf('[B]')).match(SLOT) ?? []).length];
    const text = fillSlots(template, w, ds.places[i], ds.objects[i]);
    return { kind, templateId: tid, io: cur.io, s: cur.s, s1, c: ds.cNames[i], place: ds.places[i], object: ds.objects[i], text };
  });
  const out = finishCorrupted(raw, tokenizer, ds);
  out.flips = flips.map((f) => [f[0], f[1]]);
  out.corruptionRule = rule;
  out.seed = seed;
  return out;
}

function finishCorrupted(raw: RawPrompt[], tokenizer: IOITokenizer, clean: IOIDataset): IOIDataset {
  const bos = tokenizer.bosTokenId;
  const out: IOIDataset = {
    ...clean,
    ...promptLists(),
    wordIdx: Object.fromEntries(IOI_POSITIONS.map((k) => [k, clean.wordIdx[k].slice()])) as Record<IOIPosition, number[]>,
  };
  raw.forEach((r, i) => {
    const prompt = promptOf(r.text, r.io);
    const toks = (clean.prependBos ? [bos as number] : []).concat(tokenizer.encode(prompt));
    if (toks.length !== clean.tokens[i].length) {
      throw new ShapeError(`ioiCorrupted prompt ${i}`, expectedFound(`${clean.tokens[i].length} tokens like the clean prompt`, toks.length));
    }
    out.prompts.push(prompt);
    out.texts.push(r.text);
    out.tokens.push(toks);
    out.ioTokens.push(singleToken(tokenizer, ' ' + r.io, `ioiCorrupted prompt ${i}: IO`));
    out.sTokens.push(singleToken(tokenizer, ' ' + r.s, `ioiCorrupted prompt ${i}: S`));
    out.ioNames.push(r.io);
    out.sNames.push(r.s);
    out.s1Names.push(r.s1);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Metrics

export type Padding = 'left' | 'right' | 'none';

/**
 * Position of a recorded word in a batch of length seqLen: with left padding (model.toTokens)
 * prompt i is shifted right by seqLen - tokens[i].length.
 */
export function batchPositions(ds: IOIDataset, key: IOIPosition, seqLen: number, padding: Padding = 'left'): number[] {
  return ds.wordIdx[key].map((p, i) => {
    const len = ds.tokens[i].length;
    if (len > seqLen) throw new ShapeError('batchPositions seqLen', expectedFound(`>= ${len} (prompt ${i})`, seqLen));
    return padding === 'left' ? p + seqLen - len : p;
  });
}

/**
 * The template group of each prompt: one id per template of the dataset's template list (BABA, ABBA and
 * ABC templates are different groups), as the authors group prompts for per-template means
 * (IOIDataset.groups, easy_transformer/ioi_dataset.py lines 758-762). Pass it to templateMeans.
 */
export function templateGroups(ds: IOIDataset): number[] {
  const offset: Record<IOITemplateKind, number> = { BABA: 0, ABBA: 100, ABC: 200 };
  return ds.templateIds.map((t, i) => offset[ds.templateKinds[i]] + t);
}

export interface LogitDiffResult {
  mean: number;
  perPrompt: number[];
}

type Logits3 = tf.Tensor | number[][][];

/**
 * logit(IO) - logit(S) at each prompt's end position, and its mean over prompts (the authors' logit_diff:
 * easy_transformer/ioi_utils.py lines 375-412). `logits` is [batch, pos, vocab] (a tensor or nested
 * arrays) for the prompts of `ds` in order; `padding` says how the batch was padded (default 'left', as
 * model.toTokens pads). Tensors are read asynchronously; leaves no tensors behind.
 */
export async function logitDiff(logits: Logits3, ds: IOIDataset, options: { padding?: Padding; ioTokens?: number[]; sTokens?: number[] } = {}): Promise<LogitDiffResult> {
  const padding = options.padding ?? 'left';
  const io = options.ioTokens ?? ds.ioTokens;
  const s = options.sTokens ?? ds.sTokens;
  const n = ds.tokens.length;
  const shape = logits instanceof tf.Tensor ? logits.shape : [logits.length, logits[0]?.length ?? 0, logits[0]?.[0]?.length ?? 0];
  if (shape.length !== 3 || shape[0] !== n) {
    throw new ShapeError('logitDiff logits', expectedFound(`[${n}, pos, vocab]`, shape));
  }
  const [, P, V] = shape;
  const ends = batchPositions(ds, 'end', P, padding);
  for (let i = 0; i < n; i++) {
    if (!(io[i] >= 0 && io[i] < V && s[i] >= 0 && s[i] < V)) {
      throw new ValueError(`logitDiff prompt ${i}`, expectedFound(`token ids < vocab ${V}`, { io: io[i], s: s[i] }));
    }
  }
  let per: number[];
  if (logits instanceof tf.Tensor) {
    const idx: number[] = [];
    for (let i = 0; i < n; i++) idx.push((i * P + ends[i]) * V + io[i], (i * P + ends[i]) * V + s[i]);
    const flat = tf.tidy(() => tf.gather(tf.reshape(logits, [n * P * V]), tf.tensor1d(idx, 'int32')));
    const v = await flat.data();
    flat.dispose();
    per = Array.from({ length: n }, (_, i) => v[2 * i] - v[2 * i + 1]);
  } else {
    per = Array.from({ length: n }, (_, i) => logits[i][ends[i]][io[i]] - logits[i][ends[i]][s[i]]);
  }
  per.forEach((x, i) => {
    if (!Number.isFinite(x)) throw new ValueError(`logitDiff prompt ${i}`, expectedFound('finite logits', x));
  });
  return { mean: per.reduce((a, b) => a + b, 0) / n, perPrompt: per };
}

/** (patched - corrupted) / (clean - corrupted): 0 = no effect, 1 = full recovery. */
export function normalisedMetric(patched: number, clean: number, corrupted: number): number;
export function normalisedMetric(patched: number[], clean: number, corrupted: number): number[];
export function normalisedMetric(patched: number | number[], clean: number, corrupted: number): number | number[] {
  const denom = clean - corrupted;
  if (!Number.isFinite(denom) || Math.abs(denom) < 1e-12) {
    throw new ValueError('normalisedMetric', expectedFound('clean and corrupted metrics that differ', { clean, corrupted }));
  }
  const f = (p: number) => {
    if (!Number.isFinite(p)) throw new ValueError('normalisedMetric patched', expectedFound('a finite number', p));
    return (p - corrupted) / denom;
  };
  return Array.isArray(patched) ? patched.map(f) : f(patched);
}
