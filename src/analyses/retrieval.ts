/**
 * Retrieval-head scores (Wu et al., "Retrieval Head Mechanistically Explains Long-Context
 * Factuality"), as the authors' code computes them: nightdessert/Retrieval_Head,
 * retrieval_head_detection.py (line numbers of that file below; docs/methods/retrieval.md has the table).
 *
 *  - Span (find_needle_idx, lines 249-259, called on `real_needle` at line 287): the span of the ANSWER
 *    in the prompt, the first window of len(answer) tokens whose token set covers more than 90% of the
 *    answer's token set. `needleSpan` below; the whole needle is the named variant spanOf: 'needle'.
 *  - One decoding step (retrieval_calculate, lines 221-228): for every (layer, head) the top-1 key of the
 *    step's query row; when it lies in the span and the prompt token there equals the token generated
 *    at this step, the head's score for the sample grows by 1 / (span length). `retrievalScoreStep`.
 *    Ties: the lowest key position (torch.topk leaves the order of equal values unspecified).
 *  - Decoding (decode, lines 235-247, started at lines 289-290): the prompt without its last token is
 *    prefilled, decoding starts by feeding the last prompt token; greedy, at most 50 steps, and it stops
 *    after the newline token (line 246), which is scored too. Here: `generate` (one full prefill, whose
 *    last query row is the authors' first decoding step) with a hook that takes, on the device, the
 *    argmax key of the last query row of every head; only [heads] ints per layer and step come back.
 *  - ROUGE filter (lines 291-298): response = the decoded tokens without special tokens, stripped; a
 *    sample counts when rouge_score's ROUGE-1 recall (Porter stemmer, line 63) of the answer in the
 *    response, times 100, is > 50; only counted samples are appended to the per-head lists.
 *  - Score of a head: the mean of its list (line 300); the file is {"layer-head": [...]} (line 511).
 * The paper's set form, |copied token set ∩ span token set| / |span token set| (<= 1), is the 'set'
 * variant; the code's step count (which can exceed 1) is the default 'code'.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, FormatError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { rougeRecall1, type RougeOptions } from './rouge.js';
import { mulberry32 } from '../util/random.js';
import type { HookFn, HookSpec } from '../hooks/registry.js';
import type { BlockHookName } from '../hooks/names.js';
import { generate, lastRowArgmaxHook, ops, type HookedTransformer, type ModelView } from '../model/index.js';

/**
 * The span [start, end) of `answerIds` in the prompt, searched as find_needle_idx (lines 249-259): for
 * each start i in order, the window ids[i : i + len(answer)] (shorter at the end of the prompt); the
 * first window whose token SET covers more than `minOverlap` (0.9) of the answer's token set wins, and
 * the span is [i, i + len(answer)) (not clipped, as in the code). null when none qualifies (the code
 * returns -1, -1).
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
 * One decoding step of the code's rule (retrieval_calculate): which heads copied from the span.
 * `topKeys[l][h]` is the argmax key of (layer l, head h) for the step's query. Returns hits[l][h].
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
 * On the device: the argmax key of the last query row of a pattern [batch, head, q, k] -> int32
 * [batch, head], the lowest position on ties. Reads nothing back; the caller disposes the result.
 * (src/model/ops.ts; decodeWithKeys reads it through lastRowArgmaxHook, which the fused WebGPU
 * attention answers from the scores without making the pattern.)
 */
export const lastRowArgmax = ops.lastRowArgmax;

/**
 * The model's newline token(s), where the authors stop decoding (line 246: the SentencePiece byte
 * '<0x0A>', or id 144): the vocabulary entries '<0x0A>', 'Ċ' (byte-level BPE) and '\n'. A vocabulary
 * without a newline token gives its EOS token instead (stated in docs/methods/retrieval.md), none
 * without one either.
 */
export function newlineTokens(model: Pick<ModelView, 'tokenizer' | 'cfg'>): number[] {
  const tk = model.tokenizer;
  const found = new Set<number>();
  for (const piece of ['<0x0A>', '\u010a', '\n']) {
    const id = tk?.tokenToId(piece);
    if (id !== undefined) found.add(id);
  }
  if (found.size) return [...found].sort((a, b) => a - b);
  return model.cfg.eos_token_id === undefined || model.cfg.eos_token_id === null ? [] : [model.cfg.eos_token_id];
}

export interface KeyDecodeOptions {
  maxNewTokens: number;
  /** Tokens that end a row's decoding (kept in its output and scored). */
  stopTokens?: number[];
  /** Hooks active during the prefill and every decoding step (e.g. headMaskHooks). */
  fwdHooks?: HookSpec[];
  /** Record the argmax key of each (layer, head) at every step (default true). */
  recordKeys?: boolean;
}

export interface KeyDecodeResult {
  /** Generated ids per row (a row stops after its stop token). */
  tokens: number[][];
  /** keys[row][step][layer][head]: argmax key of the query row that produced the step's token; null unless recorded. */
  keys: number[][][][] | null;
}

const PATTERN = /^blocks\.(\d+)\.attn\.hook_pattern$/;

/**
 * Greedy decoding of equal-length prompts with `generate`, recording per step the argmax key of the
 * query row that produced each token (the prefill's last row for the first token, as the authors'
 * first decoding step; then each decoding step's row). The argmax is taken on the device by a
 * lastRowArgmaxHook at hook_pattern (on WebGPU the fused attention kernel computes it from the
 * scores and makes no pattern); the [layer, batch, head] ints of all steps are read back once, at the end.
 */
export async function decodeWithKeys(model: ModelView, prompts: number[][], opts: KeyDecodeOptions): Promise<KeyDecodeResult> {
  if (!Array.isArray(prompts) || prompts.length === 0) throw new ValueError('prompts', expectedFound('a non-empty list of token id lists', prompts));
  const T = prompts[0].length;
  prompts.forEach((p, i) => {
    if (!Array.isArray(p) || p.length !== T) throw new ShapeError(`prompts[${i}]`, expectedFound(`${T} tokens (equal lengths)`, p?.length));
  });
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) throw new ValueError('maxNewTokens', expectedFound('a positive integer', opts.maxNewTokens));
  const L = model.cfg.n_layers;
  const record = opts.recordKeys !== false;
  let layerKeys: Array<tf.Tensor | null> = new Array(L).fill(null);
  const steps: tf.Tensor[] = [];
  const reader: HookFn = lastRowArgmaxHook((argmax, ctx) => {
    if (ctx.layer === null) return;
    layerKeys[ctx.layer]?.dispose();
    layerKeys[ctx.layer] = tf.keep(argmax);
  });
  try {
    const res = await generate(model as HookedTransformer, prompts, {
      maxNewTokens: opts.maxNewTokens,
      stopTokens: opts.stopTokens,
      fwdHooks: [...(opts.fwdHooks ?? []), ...(record ? [[(n: string) => PATTERN.test(n), reader] as HookSpec] : [])],
      onStep: () => {
        if (!record) return;
        if (layerKeys.some((k) => k === null)) throw new ValueError('decodeWithKeys', 'a layer pattern was not seen in this step');
        steps.push(tf.stack(layerKeys as tf.Tensor[]));
        tf.dispose(layerKeys as tf.Tensor[]);
        layerKeys = new Array(L).fill(null);
      },
    });
    if (!record) return { tokens: res.tokens, keys: null };
    const all = tf.stack(steps); // [step, layer, batch, head]
    const flat = await all.data();
    all.dispose();
    const [S, , B, H] = all.shape;
    const at = (s: number, l: number, b: number, h: number) => flat[((s * L + l) * B + b) * H + h];
    const keys = res.tokens.map((gen, b) =>
      Array.from({ length: Math.min(gen.length, S) }, (_, s) => Array.from({ length: L }, (_, l) => Array.from({ length: H }, (_, h) => at(s, l, b, h)))),
    );
    return { tokens: res.tokens, keys };
  } finally {
    tf.dispose(steps);
    tf.dispose(layerKeys.filter((k): k is tf.Tensor => k !== null));
  }
}

export type RetrievalVariant = 'code' | 'set';

export interface RetrievalScorerOptions {
  nLayers: number;
  nHeads: number;
  /** 'code' (default): step counts / span length; 'set': |copied set ∩ span set| / |span set|. */
  variant?: RetrievalVariant;
  /** Count a sample when ROUGE-1 recall > minRouge. Default 0.5 (the code's recall x 100 > 50). */
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
 * Accumulates retrieval scores over samples and decoding steps (host numbers only).
 *   scorer.beginSample(promptIds, span)
 *   for each decoding step: scorer.step(topKeys [layer][head], generatedToken)
 *   scorer.endSample({ answer, response } or { rouge })   // the ROUGE filter
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
    if (!span) throw new ValueError('span', 'no answer span in the prompt (needleSpan found no window covering > 90% of the answer)');
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

  /** One decoding step: the argmax keys [layer][head] of the step's query row and the token it produced. */
  step(keys: number[][], generatedToken: number): boolean[][] {
    const cur = this.cur;
    if (!cur) throw new ValueError('RetrievalScorer.step', 'call beginSample first');
    if (!Array.isArray(keys) || keys.length !== this.nLayers || keys.some((r) => !Array.isArray(r) || r.length !== this.nHeads)) {
      throw new ShapeError('step(keys)', expectedFound(`${this.nLayers} x ${this.nHeads} argmax keys`, `${keys?.length} x ${keys?.[0]?.length}`));
    }
    const hits = retrievalScoreStep(keys, generatedToken, cur.ids, cur.span);
    const inc = 1 / (cur.span.end - cur.span.start);
    hits.forEach((row, l) =>
      row.forEach((hit, h) => {
        if (!hit) return;
        cur.acc[l][h] += inc;
        cur.copied[l][h].add(generatedToken);
      }),
    );
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
      if (opts.answer === undefined || opts.response === undefined) throw new ConfigError('endSample', 'give rouge, or answer and response');
      rouge = rougeRecall1(opts.answer, opts.response, this.rougeOpts);
    }
    if (!Number.isFinite(rouge)) throw new ValueError('rouge', expectedFound('a finite number', rouge));
    const scores = this.variant === 'code' ? cur.acc : setScores(cur.copied, new Set(cur.ids.slice(cur.span.start, cur.span.end)));
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
  headScores(extra: { model?: string; data?: Record<string, unknown>; params?: Record<string, unknown> } = {}): HeadScores {
    return retrievalHeadScores(this.perSample(), {
      variant: this.variant,
      minRouge: this.minRouge,
      model: extra.model,
      params: extra.params,
      data: { samples: this.samples.length, ...extra.data },
    });
  }
}

function setScores(copied: Set<number>[][], span: Set<number>): number[][] {
  return copied.map((row) =>
    row.map((s) => {
      let c = 0;
      for (const t of s) if (span.has(t)) c++;
      return span.size ? c / span.size : 0;
    }),
  );
}

/** HeadScores (mean over samples) from per-sample lists [layer][head][sample]. */
export function retrievalHeadScores(
  perSample: number[][][],
  opts: { variant?: RetrievalVariant; minRouge?: number; model?: string; data?: Record<string, unknown>; params?: Record<string, unknown> } = {},
): HeadScores {
  const counted = perSample[0]?.[0]?.length ?? 0;
  const scores = perSample.map((row) => row.map((xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0)));
  return makeHeadScores(
    'retrieval',
    scores,
    { variant: opts.variant ?? 'code', minRouge: opts.minRouge ?? 0.5, aggregate: 'mean over counted samples', ...opts.params },
    { model: opts.model, data: { counted, ...opts.data } },
  );
}

/** Heads with score > threshold (default 0.1, the paper's), best first: [layer, head, score]. */
export function retrievalHeads(scores: HeadScores | number[][], opts: { threshold?: number } = {}): Array<[number, number, number]> {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const thr = opts.threshold ?? 0.1;
  const out: Array<[number, number, number]> = [];
  grid.forEach((row, l) =>
    row.forEach((s, h) => {
      if (s > thr) out.push([l, h, s]);
    }),
  );
  out.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  return out;
}

/** The authors' JSON object {"layer-head": [per-sample scores]} (layer-major key order). */
export function toRetrievalHeadJson(src: RetrievalScorer | number[][][]): Record<string, number[]> {
  const per = src instanceof RetrievalScorer ? src.perSample() : src;
  const out: Record<string, number[]> = {};
  per.forEach((row, l) =>
    row.forEach((xs, h) => {
      out[`${l}-${h}`] = xs.slice();
    }),
  );
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

/** Append the lists of b to those of a (the authors merge a new run into an existing file this way, lines 505-509). */
export function mergeRetrievalHeadJson(a: Record<string, number[]>, b: Record<string, number[]>): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(a)) out[k] = v.slice();
  for (const [k, v] of Object.entries(b)) out[k] = [...(out[k] ?? []), ...v];
  return out;
}

export interface RetrievalSampleOptions {
  /** The scored span; default needleSpan(promptIds, answerIds), the answer's span (the code's real_needle). */
  span?: { start: number; end: number };
  /** Default 50 (the authors' decode length). */
  maxNewTokens?: number;
  /** Tokens that end decoding after being scored; default newlineTokens(model) (the authors'); [] for none. */
  stopTokens?: number[];
  /** Extra hooks during the run (e.g. head masking); they run before the argmax is taken. */
  fwdHooks?: HookSpec[];
  /** The answer as text for ROUGE (else the token ids are compared as unigrams). */
  answerText?: string;
  /** Generated ids -> response text (default: the model's tokenizer without special tokens, when it has one). */
  decode?: (ids: number[]) => string;
  meta?: Record<string, unknown>;
}

/** The response text as the authors make it (decode without special tokens, strip); null without a tokenizer. */
export function responseText(model: Pick<ModelView, 'tokenizer'>, decode?: (ids: number[]) => string): ((ids: number[]) => string) | null {
  if (decode) return (ids) => decode(ids).trim();
  const tk = model.tokenizer;
  return tk ? (ids) => tk.decode(ids, true).trim() : null;
}

/**
 * Score one needle-in-a-haystack sample (the authors' evaluate_and_log for one prompt): greedy
 * decoding from `promptIds` (decodeWithKeys), each generated token paired with the argmax keys of the
 * query row that produced it, then the ROUGE-1 filter on the response.
 */
export async function scoreRetrievalSample(
  model: ModelView,
  scorer: RetrievalScorer,
  promptIds: number[],
  answerIds: number[],
  opts: RetrievalSampleOptions = {},
): Promise<{ sample: RetrievalSample; tokens: number[]; response: string | null }> {
  if (model.cfg.n_layers !== scorer.nLayers || model.cfg.n_heads !== scorer.nHeads) {
    throw new ConfigError('scorer', expectedFound(`${model.cfg.n_layers} layers x ${model.cfg.n_heads} heads`, `${scorer.nLayers} x ${scorer.nHeads}`));
  }
  const span = opts.span ?? needleSpan(promptIds, answerIds);
  scorer.beginSample(promptIds, span);
  const res = await decodeWithKeys(model, [promptIds], {
    maxNewTokens: opts.maxNewTokens ?? 50,
    stopTokens: opts.stopTokens ?? newlineTokens(model),
    fwdHooks: opts.fwdHooks,
  });
  const tokens = res.tokens[0];
  res.keys![0].forEach((keys, step) => scorer.step(keys, tokens[step]));
  const text = responseText(model, opts.decode);
  const response = text ? text(tokens) : null;
  const sample =
    opts.answerText !== undefined && response !== null
      ? scorer.endSample({ answer: opts.answerText, response, meta: opts.meta })
      : scorer.endSample({ answer: answerIds, response: tokens, meta: opts.meta });
  return { sample, tokens, response };
}

/** Which forwards headMaskHooks act on. */
export type MaskScope = 'generation' | 'decoding' | 'all';

/**
 * Head-masking hooks for the causal test: the given heads' pre-softmax scores are set to 0 on
 * blocks.L.attn.hook_attn_scores (uniform attention over the visible keys; masked keys stay masked),
 * as the authors' modeling code does with block_list (faiss_attn/source/modeling_llama.py line 689).
 * Scope 'generation' (default, the authors: needle_in_haystack_with_mask.py lines 346-347 mask only the
 * decoding forwards, whose first query is the last prompt token): every decoding step and the last
 * query row of a prefill. 'decoding': forwards with a KV cache only. 'all': every query row.
 */
export function headMaskHooks(heads: Array<[number, number]>, opts: { scope?: MaskScope } = {}): HookSpec[] {
  const scope = opts.scope ?? 'generation';
  if (scope !== 'generation' && scope !== 'decoding' && scope !== 'all') throw new ConfigError('scope', expectedFound("'generation', 'decoding' or 'all'", scope));
  const byLayer = new Map<number, number[]>();
  heads.forEach(([l, h], i) => {
    if (!Number.isInteger(l) || !Number.isInteger(h) || l < 0 || h < 0) throw new ConfigError(`heads[${i}]`, expectedFound('[layer, head] non-negative integers', [l, h]));
    byLayer.set(l, [...(byLayer.get(l) ?? []), h]);
  });
  return [...byLayer.entries()].map(([l, hs]): HookSpec => [
    `blocks.${l}.attn.hook_attn_scores` as BlockHookName,
    (act, ctx) => {
      if (scope === 'decoding' && !ctx.decoding) return;
      const [, H, Q] = act.shape as number[];
      for (const h of hs) if (h >= H) throw new ValueError(`headMaskHooks: blocks.${l}`, expectedFound(`head < ${H}`, h));
      const firstRow = scope === 'generation' && !ctx.decoding ? Q - 1 : 0;
      return tf.tidy(() => {
        const keep = tf.buffer([1, H, Q, 1], 'bool');
        for (let h = 0; h < H; h++) for (let q = 0; q < Q; q++) keep.set(!(hs.includes(h) && q >= firstRow), 0, h, q, 0);
        return tf.where(tf.broadcastTo(keep.toTensor(), act.shape), act, tf.zerosLike(act));
      });
    },
  ]);
}

/**
 * K heads drawn (seeded, uniformly) from those not among the top `exclude` by score: the control set
 * of the masking experiment. Default exclude = 100, the authors' rule (needle_in_haystack_with_mask.py
 * line 222 keeps the top 100 as block_list, construct_random_head at lines 300-310 draws outside it).
 */
export function randomControlHeads(scores: HeadScores | number[][], k: number, opts: { exclude?: number; seed: number }): Array<[number, number]> {
  const grid = Array.isArray(scores) ? scores : scores.scores;
  const all: Array<[number, number, number]> = [];
  grid.forEach((row, l) => row.forEach((s, h) => all.push([l, h, s])));
  all.sort((a, b) => b[2] - a[2] || a[0] - b[0] || a[1] - b[1]);
  const exclude = opts.exclude ?? 100;
  const pool = all.slice(exclude).map(([l, h]) => [l, h] as [number, number]);
  if (!Number.isInteger(k) || k < 0 || k > pool.length) {
    throw new ConfigError('k', expectedFound(`an integer in [0, ${pool.length}] (heads outside the top ${exclude} of ${all.length})`, k));
  }
  // seeded partial Fisher-Yates
  const rnd = mulberry32(opts.seed);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rnd() * (pool.length - i));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return pool.slice(0, k).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
}
