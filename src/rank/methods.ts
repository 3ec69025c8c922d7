/**
 * The registry of head-ranking methods (`tflens rank`, `tflens sweep`, `tfl.sweep`), each with its
 * typed options and its shards (see types.ts for the rule shards keep). The CLI turns its arguments
 * into these options in src/cli; notebooks pass them directly.
 *
 * Sharded: head-patching (blocks of patched forwards of a layer), path (sender layers), dormant
 * (blocks of heads: one forward per head), retrieval (NIAH grid cells). One shard: the attention
 * statistics (sinks, detectors: means over prompts taken on the device in one reduction, which a split
 * would re-associate), the weight-space scores, attribution (one forward and backward), the discrete-SAE
 * scores (one SAE trained on every head) and the RazorAttention probe.
 */
import type { HostBatch, ModelView } from '../model/view.js';
import { sinkScores, hiddenSinkScores } from '../analyses/sinks.js';
import { detectHead, type DetectorKind } from '../analyses/detectors.js';
import { dormantTest } from '../analyses/dormant.js';
import { copyingScores } from '../analyses/weights/copying.js';
import { compositionScores, type CompositionMode } from '../analyses/weights/composition.js';
import { razorScoresForModel } from '../analyses/razor.js';
import { attributionScores } from '../circuits/path.js';
import { saeCircuitScores, type SAESetup } from '../sae/discrete.js';
import type { HeadScores } from '../results.js';
import { ValueError, expectedFound } from '../errors.js';
import { taskProblem, type TaskOptions } from './task.js';
import { headPatching, pathRank, type HeadPatchingOptions, type PathRankOptions } from './patching.js';
import { retrievalRank, type RetrievalRankOptions } from './retrieval.js';
import { blocks, fromScores, placeHeadScores, wholeMethod, type RankMethod, type RankOutput, type ShardValue } from './types.js';

export interface DetectorRankOptions {
  /** TransformerLens's error measure: 'mul' (default) or 'abs'. */
  errorMeasure?: 'mul' | 'abs';
  excludeBos?: boolean;
  excludeCurrentToken?: boolean;
}

export interface DormantRankOptions {
  /** 'zero' (default): the head's output zeroed; 'bos': its attention moved to BOS. */
  intervention?: 'zero' | 'bos';
  /** Dormant = loss change within this (default 0.01). */
  tolerance?: number;
}

export interface SaeRankOptions extends TaskOptions {
  setup?: SAESetup;
  sharing?: 'per-head' | 'shared';
  epochs?: number;
  /** SAE features (default 200). */
  features?: number;
  lambda?: number;
  /** Training examples (default 10). */
  nTrain?: number;
}

export interface RazorRankOptions {
  /** Random ids per repeat (default min(64, floor((n_ctx - 1) / repeats))). */
  R?: number;
  repeats?: number;
  seed?: number;
  lo?: number;
  hi?: number;
  rule?: 'mod-r' | 'same-token';
  aggregate?: 'mean' | 'row-mean';
}

/** Each method's typed options. */
export interface RankMethodOptions {
  sink: { eps?: number };
  'hidden-sink': { threshold?: number };
  'prev-token': DetectorRankOptions;
  'duplicate-token': DetectorRankOptions;
  induction: DetectorRankOptions;
  dormant: DormantRankOptions;
  copying: { measure?: 'elhage' | 'positive-share' };
  'head-patching': HeadPatchingOptions;
  attribution: TaskOptions;
  path: PathRankOptions;
  'sae-node': SaeRankOptions;
  'sae-edge': SaeRankOptions;
  'composition-q': Record<string, never>;
  'composition-k': Record<string, never>;
  'composition-v': Record<string, never>;
  retrieval: RetrievalRankOptions;
  echo: RazorRankOptions;
  'razor-induction': RazorRankOptions;
}

export type RankMethodName = keyof RankMethodOptions;

function batchOf(batch: HostBatch | null, method: string): { tokens: number[][]; attentionMask: number[][] } {
  if (!batch) throw new ValueError('batch', `method ${method} reads activations: give prompts or tokens`);
  return { tokens: batch.ids, attentionMask: batch.mask };
}

const detector = (kind: DetectorKind, help: string): RankMethod<DetectorRankOptions> =>
  wholeMethod(help, true, async (model, batch, opts) => {
    const errorMeasure = opts.errorMeasure ?? 'mul';
    if (errorMeasure !== 'mul' && errorMeasure !== 'abs') throw new ValueError('errorMeasure', expectedFound('mul or abs', errorMeasure));
    return fromScores(await detectHead(model, batchOf(batch, kind), kind, { excludeBos: !!opts.excludeBos, excludeCurrentToken: !!opts.excludeCurrentToken, errorMeasure }));
  });

const composition = (mode: CompositionMode): RankMethod<Record<string, never>> =>
  wholeMethod(`${mode}-composition score between every earlier and later head (weights only)`, false, async (model) => {
    const r = await compositionScores(model, mode);
    const rows = r.rows.map((x) => ({ layer: x.layer, head: x.head, srcLayer: x.srcLayer, srcHead: x.srcHead, score: x.score }));
    return { rows, method: `composition-${mode.toLowerCase()}`, params: r.params };
  });

const razor = (kind: 'echo' | 'induction', help: string): RankMethod<RazorRankOptions> =>
  wholeMethod(help, false, async (model, _batch, opts) => {
    const repeats = opts.repeats ?? 4;
    const R = opts.R ?? Math.min(64, Math.floor((model.cfg.n_ctx - 1) / repeats));
    const r = await razorScoresForModel(model, { R, repeats, seed: opts.seed ?? 0, lo: opts.lo ?? 0, hi: opts.hi, rule: opts.rule ?? 'mod-r', aggregate: opts.aggregate ?? 'mean' });
    return fromScores(r[kind]);
  });

/** Discrete-SAE circuit scores (O'Neill & Bui): positives = the task's clean prompts, negatives = its corrupted prompts. */
const saeMethod = (kind: 'node' | 'edge'): RankMethod<SaeRankOptions> =>
  wholeMethod(
    `discrete-SAE ${kind} score (O'Neill & Bui), --task ioi|induction --n --seed --setup authors-code|paper-text --epochs (500) --features (200) --lambda (0.02) --n-train (10)`,
    false,
    async (model, _batch, opts) => {
      const p = taskProblem(model, opts);
      const setup = opts.setup ?? 'authors-code';
      if (setup !== 'authors-code' && setup !== 'paper-text') throw new ValueError('setup', expectedFound('authors-code or paper-text', setup));
      const mask = p.attentionMask;
      const r = await saeCircuitScores(model, { tokens: p.clean, attentionMask: mask }, { tokens: p.corrupted, attentionMask: mask }, {
        epochs: opts.epochs ?? 500,
        nFeatures: opts.features ?? 200,
        lambda: opts.lambda ?? 0.02,
        nTrain: opts.nTrain ?? 10,
        seed: opts.seed ?? 0,
        setup,
        sharing: opts.sharing,
        model: model.name,
      });
      return fromScores(kind === 'node' ? r.node : r.edge);
    },
  );

/** The dormant test on the batch for `heads` (all when absent). */
async function dormantScores(model: ModelView, batch: HostBatch | null, opts: DormantRankOptions, heads?: Array<[number, number]>): Promise<HeadScores> {
  const intervention = opts.intervention ?? 'zero';
  if (intervention !== 'zero' && intervention !== 'bos') throw new ValueError('intervention', expectedFound('zero or bos', intervention));
  const r = await dormantTest(model, [{ name: 'input', ...batchOf(batch, 'dormant') }], { intervention, tolerance: opts.tolerance ?? 0.01, heads });
  return r.scores.input;
}

/** Dormant heads: one intervened forward per head, so a shard is a block of heads (layer-major) with the clean loss repeated. */
const dormant: RankMethod<DormantRankOptions> = {
  help: 'loss increase when the head is zeroed (--intervention zero|bos, --tolerance 0.01); dormant = within tolerance',
  needsTokens: true,
  run: async (model, batch, opts) => fromScores(await dormantScores(model, batch, opts)),
  /** Units: heads; default one layer's heads per shard. */
  shards(model, _batch, _opts, size = model.cfg.n_heads) {
    const H = model.cfg.n_heads;
    return blocks(model.cfg.n_layers * H, size).map(([a, b]) => ({ heads: Array.from({ length: b - a }, (_, i) => [Math.floor((a + i) / H), (a + i) % H]) }));
  },
  async runShard(model, batch, opts, shard) {
    return (await dormantScores(model, batch, opts, (shard as { heads: Array<[number, number]> }).heads)) as unknown as ShardValue;
  },
  combine(_model, _batch, _opts, shards, results) {
    const owner = new Map<string, number>();
    (shards as Array<{ heads: Array<[number, number]> }>).forEach((s, i) => s.heads.forEach(([l, h]) => owner.set(`${l}.${h}`, i)));
    return fromScores(placeHeadScores(results as unknown as HeadScores[], (l, h) => owner.get(`${l}.${h}`) ?? -1));
  },
};

export const RANK_METHODS: { [K in RankMethodName]: RankMethod<RankMethodOptions[K]> } = {
  sink: wholeMethod('alpha_1: mean attention the head gives the first token (Gu et al.), averaged over prompts; --eps (0.3)', true, async (model, batch, opts) =>
    fromScores((await sinkScores(model, batchOf(batch, 'sink'), { eps: opts.eps ?? 0.3 })).scores),
  ),
  'hidden-sink': wholeMethod('mass of the hidden sinks (ACT rule: column mean > --threshold (0.1), minus the first)', true, async (model, batch, opts) =>
    fromScores((await hiddenSinkScores(model, batchOf(batch, 'hidden-sink'), { threshold: opts.threshold ?? 0.1 })).scores),
  ),
  'prev-token': detector('prev-token', 'previous-token detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  'duplicate-token': detector('duplicate-token', 'duplicate-token detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  induction: detector('induction', 'induction detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  dormant,
  copying: wholeMethod(
    'OV copying score Re(sum lambda) / sum |lambda| of W_E W_V W_O W_U (TransformerLens; --measure positive-share for the share of eigenvalue mass with positive real part; weights only)',
    false,
    async (model, _batch, opts) => {
      const measure = opts.measure ?? 'elhage';
      if (measure !== 'elhage' && measure !== 'positive-share') throw new ValueError('measure', expectedFound('elhage or positive-share', measure));
      return fromScores(await copyingScores(model, { model: model.name, measure }));
    },
  ),
  'head-patching': headPatching,
  attribution: wholeMethod('attribution patching estimate of head-patching (one forward + one backward), --task ioi|induction', false, async (model, _batch, opts) =>
    fromScores(await attributionScores(model, taskProblem(model, opts))),
  ),
  path: pathRank,
  'sae-node': saeMethod('node'),
  'sae-edge': saeMethod('edge'),
  'composition-q': composition('Q'),
  'composition-k': composition('K'),
  'composition-v': composition('V'),
  retrieval: retrievalRank,
  echo: razor('echo', 'RazorAttention echo score: mean(A * echo mask) on BOS + --R random ids x --repeats (4); --seed --lo --hi --rule mod-r|same-token --aggregate mean|row-mean'),
  'razor-induction': razor('induction', 'RazorAttention induction score: mean(A * induction mask) on the same probe; --R --repeats --seed --lo --hi --rule --aggregate'),
};

/** The method of a name, or a ValueError naming the known ones. */
export function rankMethod(name: string, where = 'method'): RankMethod<unknown> {
  if (!Object.prototype.hasOwnProperty.call(RANK_METHODS, name)) throw new ValueError(where, expectedFound(`one of ${Object.keys(RANK_METHODS).join(', ')}`, name));
  return RANK_METHODS[name as RankMethodName] as RankMethod<unknown>;
}

/** Run one method in one process: `tflens rank`'s computation. */
export function runRank<K extends RankMethodName>(model: ModelView, batch: HostBatch | null, method: K, opts: RankMethodOptions[K]): Promise<RankOutput> {
  return (RANK_METHODS[method] as RankMethod<RankMethodOptions[K]>).run(model, batch, opts);
}
