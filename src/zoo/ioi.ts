/**
 * The shipped ioi model (fixtures/models/ioi): a 3-layer, 4-head GPT-2 trained on synthetic IOI
 * sentences over the exact templates and names of src/data/ioi.ts, with a word-level tokenizer, a
 * held-out split of names and templates, the recipe and the logit-difference evaluation.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import { randomModel, Tokenizer, type ModelView } from '../model/index.js';
import { rng, deriveSeed } from '../util/random.js';
import { ABBA_TEMPLATES, ABC_TEMPLATES, BABA_TEMPLATES, NAMES, OBJECTS, PLACES, generateIOI, logitDiff, type IOIDataset, type IOITokenizer } from '../data/ioi.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../data/tokenizer.js';
import { train, type TrainResult } from './train.js';
import { Trainable, gpt2Config, lastArgmax, realParam, recipeOptions, snapshotEval, trainingLogits, weightedNll, type TrainRecipeOptions, type TrainedZooModel } from './common.js';

/** HF `Whitespace` pre-tokenisation: \w+ | [^\w\s]+ . */
function ioiWords(text: string): string[] {
  return text.match(/\w+|[^\w\s]+/g) ?? [];
}

function ioiVocab(): string[] {
  const words = new Set<string>();
  for (const t of [...BABA_TEMPLATES, ...ABBA_TEMPLATES, ...ABC_TEMPLATES]) {
    for (const w of ioiWords(t.replace(/\[(A|B|C|PLACE|OBJECT)\]/g, ' '))) words.add(w);
  }
  for (const w of [...PLACES, ...OBJECTS]) words.add(w);
  const names = new Set(NAMES);
  const other = [...words].filter((w) => !names.has(w)).sort();
  return ['<bos>', '<unk>', ...other, ...NAMES];
}

/** Word-level IOI vocabulary: <bos>, <unk>, template words and punctuation, places, objects, then the 99 names. */
export const IOI_VOCAB: readonly string[] = ioiVocab();

/** Held-out split: 20 names (seeded draw) and 3 template ids (in both BABA and ABBA order). */
export const IOI_SPLIT = (() => {
  const r = rng(20240);
  const heldOutNames = r.sample(NAMES, 20).sort();
  const heldOutTemplates = [2, 7, 12];
  return {
    heldOutNames,
    trainNames: NAMES.filter((n) => !heldOutNames.includes(n)),
    heldOutTemplates,
    trainTemplates: BABA_TEMPLATES.map((_, i) => i).filter((i) => !heldOutTemplates.includes(i)),
  };
})();

/** The architecture of the ioi model (GPT-2: learned positions, LayerNorm, tied embeddings). */
export const IOI_ARCH = { nCtx: 32, dModel: 64, layers: 3, heads: 4, dMlp: 256 };

export function ioiConfig(): Record<string, unknown> {
  return gpt2Config({ vocab: IOI_VOCAB.length, ...IOI_ARCH, act: 'gelu_new', tied: true, bos: 0 });
}

/** Word-level tokenizer with HF's `Whitespace` pre-tokenizer (so "store." is "store" + "."). */
export function ioiTokenizer(): Tokenizer {
  const json = wordLevelTokenizerJson([...IOI_VOCAB], { specialTokens: ['<bos>'], unkToken: '<unk>' });
  json.pre_tokenizer = { type: 'Whitespace' };
  return new Tokenizer(json, tokenizerConfigJson({ unkToken: '<unk>', bosToken: '<bos>', modelMaxLength: 32 }), 'ioi tokenizer.json');
}

/** The IOI tokenizer interface of src/data/ioi.ts for a tflens Tokenizer. */
export function ioiTokenizerAdapter(tk: Tokenizer): IOITokenizer {
  return { encode: (t) => tk.encode(t), decode: (ids) => tk.decode(ids), bosTokenId: tk.tokenToId('<bos>') };
}

/** IOI prompts restricted to a split (its names and template ids), seeded. */
export function ioiSplitDataset(tk: IOITokenizer, split: 'train' | 'heldout', n: number, seed: number): IOIDataset {
  const names = split === 'train' ? IOI_SPLIT.trainNames : IOI_SPLIT.heldOutNames;
  const keep = new Set(split === 'train' ? IOI_SPLIT.trainTemplates : IOI_SPLIT.heldOutTemplates);
  const parts: IOIDataset[] = [];
  let have = 0;
  for (let k = 0; have < n && k < 1000; k++) {
    const ds = generateIOI(tk, { n: Math.max(16, 3 * n), seed: deriveSeed(seed, k), names });
    parts.push(ds);
    have += ds.templateIds.filter((t) => keep.has(t)).length;
  }
  const idx: Array<[number, number]> = [];
  parts.forEach((ds, d) => ds.templateIds.forEach((t, i) => keep.has(t) && idx.push([d, i])));
  return subsetIOI(parts, idx.slice(0, n));
}

function subsetIOI(parts: IOIDataset[], idx: Array<[number, number]>): IOIDataset {
  const first = parts[0];
  const pick = <K extends keyof IOIDataset>(k: K) => idx.map(([d, i]) => (parts[d][k] as unknown as unknown[])[i]);
  const wordIdx = Object.fromEntries(Object.keys(first.wordIdx).map((k) => [k, idx.map(([d, i]) => parts[d].wordIdx[k as keyof IOIDataset['wordIdx']][i])]));
  return {
    ...first,
    prompts: pick('prompts') as string[],
    texts: pick('texts') as string[],
    tokens: pick('tokens') as number[][],
    ioTokens: pick('ioTokens') as number[],
    sTokens: pick('sTokens') as number[],
    ioNames: pick('ioNames') as string[],
    sNames: pick('sNames') as string[],
    s1Names: pick('s1Names') as string[],
    cNames: pick('cNames') as string[],
    places: pick('places') as string[],
    objects: pick('objects') as string[],
    templateIds: pick('templateIds') as number[],
    templateKinds: pick('templateKinds') as IOIDataset['templateKinds'],
    wordIdx: wordIdx as IOIDataset['wordIdx'],
  };
}

/** task.json of the ioi model (saveZooModel adds the step counts). */
export function ioiTaskJson(): Record<string, unknown> {
  return { task: 'ioi', split: IOI_SPLIT, evalSeed: 31337, regenerate: "ioiSplitDataset(tokenizer, 'heldout', n, seed) / ioiEvaluate in src/zoo/ioi.ts" };
}

export interface IOIEval {
  meanLogitDiff: number;
  /** Fraction of prompts with logit(IO) > logit(S). */
  accuracy: number;
  /** Fraction where IO is the top-1 prediction. */
  top1: number;
  n: number;
  seed: number;
  split: 'train' | 'heldout';
}

export interface IOIEvalOptions {
  split?: 'train' | 'heldout';
  /** Prompts (default 100). */
  n?: number;
  seed?: number;
}

/** Mean logit difference and accuracy on a fresh seeded IOI set of a split (left-padded batch). */
export async function ioiEvaluate(model: ModelView, o: IOIEvalOptions = {}): Promise<IOIEval> {
  const split = o.split ?? 'heldout';
  const n = o.n ?? 100;
  const seed = o.seed ?? 31337;
  if (!model.tokenizer) throw new ValueError('ioiEvaluate model', expectedFound('a model with a tokenizer', 'none'));
  const ds = ioiSplitDataset(ioiTokenizerAdapter(model.tokenizer), split, n, seed);
  const T = Math.max(...ds.tokens.map((t) => t.length));
  const ids = ds.tokens.map((t) => [...new Array(T - t.length).fill(0), ...t]);
  const mask = ds.tokens.map((t) => [...new Array(T - t.length).fill(0), ...new Array(t.length).fill(1)]);
  const logits = await model.forward(ids, { attentionMask: mask });
  const [ld, top] = await Promise.all([logitDiff(logits, ds, { padding: 'left' }), lastArgmax(logits)]).finally(() => logits.dispose());
  const m = ds.tokens.length;
  return {
    meanLogitDiff: ld.mean,
    accuracy: ld.perPrompt.filter((x) => x > 0).length / ld.perPrompt.length,
    top1: ds.ioTokens.filter((io, i) => top[i] === io).length / m,
    n: m,
    seed,
    split,
  };
}

export const IOI_RECIPE = {
  steps: 700, batch: 64, lr: 3e-3, warmupSteps: 30, weightDecay: 0.01, betas: [0.9, 0.99] as [number, number], gradClip: 1.0, seed: 3, evalEvery: 50,
  ioWeight: 10, nameEmbedStd: 0.15,
  /**
   * Up to this many random non-name words (template words, places, objects) between BOS and the
   * sentence in each training row, uniform in [0, prefixMax], not scored: the sentence then sits at no
   * fixed position, so position alone cannot tell the model which name is IO (0: the shipped recipe).
   */
  prefixMax: 0,
};

/** The non-name words of IOI_VOCAB (template words, punctuation, places, objects): the random prefix's tokens. */
const IOI_FILLERS = IOI_VOCAB.map((w, i) => (i > 1 && !NAMES.includes(w) ? i : -1)).filter((i) => i >= 0);

/**
 * Training rows from IOI prompts (BOS first): each prompt gets a random prefix of 0..prefixMax
 * IOI_FILLERS words after BOS (seeded by `seed`; none when prefixMax is 0), then is shifted into inputs,
 * targets and weights (right-padded with weight 0): weight 1 on every sentence token, ioWeight on the
 * final IO, 0 on the prefix's own tokens.
 */
export function ioiTrainRows(prompts: { tokens: number[]; io: number }[], o: { maxLen: number; ioWeight: number; prefixMax: number; seed: number }) {
  const r = rng(o.seed);
  const rows = prompts.map(({ tokens: [bos, ...rest], io }) => {
    const prefix = Array.from({ length: o.prefixMax > 0 ? r.range(0, o.prefixMax) : 0 }, () => r.choice(IOI_FILLERS));
    return { tokens: [bos, ...prefix, ...rest], io, skip: prefix.length };
  });
  return ioiRows(rows, o.maxLen, o.ioWeight);
}

/** Rows of full sentences (prompt + IO) shifted into inputs, targets and weights, right-padded (weight 0); `skip[i]` leading targets of row i weigh 0. */
function ioiRows(rows: { tokens: number[]; io: number; skip?: number }[], maxLen: number, ioWeight: number) {
  const Tb = Math.max(...rows.map((r) => r.tokens.length));
  const pad = (r: number[]) => [...r, ...new Array(Tb - r.length).fill(0)];
  const x: number[][] = [];
  const y: number[][] = [];
  const w: number[][] = [];
  for (const r of rows) {
    const full = [...r.tokens, r.io];
    if (full.length > maxLen + 1) throw new ValueError('trainIOI prompt', expectedFound(`<= ${maxLen + 1} tokens`, full.length));
    const yi = full.slice(1);
    x.push(pad(full.slice(0, -1)));
    y.push(pad(yi));
    w.push(pad(yi.map((_, t) => (t === yi.length - 1 ? ioWeight : t < (r.skip ?? 0) ? 0 : 1))));
  }
  return { x, y, w };
}

/**
 * Train the IOI model. Name embeddings are fixed random vectors (not trained; tied unembedding), so
 * the model has to learn a name-agnostic copy/suppression mechanism that transfers to held-out
 * names. Loss: next-token loss on every position, with the final IO prediction weighted ioWeight.
 */
export async function trainIOI(o: TrainRecipeOptions = {}): Promise<TrainedZooModel> {
  const R = { ...IOI_RECIPE, ...(o.overrides ?? {}) };
  const seed = o.seed ?? R.seed;
  const steps = o.steps ?? R.steps;
  const batchSize = o.batch ?? R.batch;
  const tok = ioiTokenizer();
  const model = randomModel(ioiConfig(), { seed, std: 0.02, tokenizer: tok, name: 'ioi' });
  const V = IOI_VOCAB.length;
  const isName = new Array(V).fill(0);
  NAMES.forEach((n) => (isName[IOI_VOCAB.indexOf(n)] = 1));
  const nameMask = tf.tensor2d(isName, [V, 1]);
  const nameEmb = tf.tidy(() => tf.mul(tf.randomNormal([V, model.cfg.d_model], 0, R.nameEmbedStd, 'float32', deriveSeed(seed, 77)), nameMask));
  const tr = new Trainable(model, (n) => realParam(model, n), (p) => {
    // W_E = trainable rows for non-names, fixed random rows for names; W_U tied.
    p['embed.W_E'] = tf.add(tf.mul(p['embed.W_E'], tf.sub(1, nameMask)), nameEmb);
    p['unembed.W_U'] = tf.transpose(p['embed.W_E']);
    return p;
  });
  const atk = ioiTokenizerAdapter(tok);
  const T = ioiConfig().n_positions as number;
  let pool: IOIDataset | null = null;
  let poolPos = 0;
  let refills = 0;
  const nextPrompts = (k: number) => {
    const rows: { tokens: number[]; io: number }[] = [];
    while (rows.length < k) {
      if (!pool || poolPos >= pool.tokens.length) {
        pool = ioiSplitDataset(atk, 'train', 512, deriveSeed(seed, 5000, refills++));
        poolPos = 0;
      }
      rows.push({ tokens: pool.tokens[poolPos], io: pool.ioTokens[poolPos] });
      poolPos++;
    }
    return rows;
  };
  let result: TrainResult;
  try {
    result = await train<{ x: number[][]; y: tf.Tensor2D; w: tf.Tensor2D }>({
      ...recipeOptions(R, o, tr.vars, steps, seed),
      batches: (step) => {
        const { x, y, w } = ioiTrainRows(nextPrompts(batchSize), { maxLen: T, ioWeight: R.ioWeight, prefixMax: R.prefixMax, seed: deriveSeed(seed, 6000, step) });
        return { x, y: tf.tensor2d(y, undefined, 'int32'), w: tf.tensor2d(w) };
      },
      lossFn: (b) => {
        model.params = tr.effective();
        return weightedNll(trainingLogits(model, b.x), b.y, b.w);
      },
      evalEvery: o.evalEvery ?? R.evalEvery,
      evalFn: snapshotEval(tr, o, async (snap) => {
        const h = await ioiEvaluate(snap, { split: 'heldout', n: 64, seed: 11 });
        return { heldoutLogitDiff: h.meanLogitDiff, heldoutAccuracy: h.accuracy };
      }),
    });
  } finally {
    tr.finish();
    tf.dispose([nameMask, nameEmb]);
  }
  const metrics: Record<string, unknown> = { finalTrainLoss: result.loss[result.loss.length - 1] };
  if (o.finalEval ?? true) {
    metrics.heldout = await ioiEvaluate(model, { split: 'heldout', n: 200, seed: 31337 });
    metrics.train = await ioiEvaluate(model, { split: 'train', n: 200, seed: 31337 });
  }
  return { model, result, metrics, recipe: { ...R, steps, batch: batchSize, seed, split: IOI_SPLIT, arch: { ...IOI_ARCH } } };
}
