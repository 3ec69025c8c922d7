/**
 * `tflens rank` methods. Each method turns a model (and, where it reads activations, a token batch)
 * into head scores; the CLI writes them as CSV/JSON. The same library functions back the notebooks,
 * so CLI rankings equal library results.
 */
import { ValueError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
import type { HookedTransformer } from '../model/hooked.js';
import type { ModelView } from '../model/view.js';
import type { TokenBatch } from './inputs.js';
import { sinkScores, hiddenSinkScores } from '../analyses/sinks.js';
import { detectHead, type DetectorKind } from '../analyses/detectors.js';
import { dormantTest } from '../analyses/dormant.js';
import { copyingScores } from '../analyses/weights/copying.js';
import { compositionScores, type CompositionMode } from '../analyses/weights/composition.js';
import { inductionProblem, ioiTask, type PatchingProblem } from '../circuits/problem.js';
import type { IOICorruptionRule } from '../data/ioi.js';
import { headPatchingScores } from '../circuits/patching.js';
import { attributionScores, pathPatchingScores } from '../circuits/path.js';
import { saeCircuitScores, type SAESetup } from '../sae/discrete.js';
import { rankRetrieval } from './retrieval-args.js';
import { razorScoresForModel } from '../analyses/razor.js';

export type Args = Record<string, string | boolean>;

export interface RankOutput {
  /** Head-level result (most methods). */
  scores?: HeadScores;
  /** Pairwise rows (composition methods): {layer, head, srcLayer, srcHead, score}, sorted by score. */
  rows?: Record<string, number>[];
  /** The retrieval-head authors' JSON {"layer-head": [per-sample scores]}. */
  authorJson?: Record<string, number[]>;
  method: string;
  params: Record<string, unknown>;
}

export interface RankMethod {
  /** Reads activations on prompts or tokens (else weights only). */
  needsTokens: boolean;
  /** One line for --help. */
  help: string;
  run(model: HookedTransformer, batch: TokenBatch | null, args: Args): Promise<RankOutput>;
}

export function numArg(args: Args, name: string, fallback: number): number {
  const v = args[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n)) throw new ValueError(`--${name}`, expectedFound('a number', v));
  return n;
}

function fromScores(scores: HeadScores): RankOutput {
  return { scores, method: scores.method, params: scores.params };
}

const detector = (kind: DetectorKind, help: string): RankMethod => ({
  needsTokens: true,
  help,
  async run(model, batch, args) {
    const errorMeasure = (args['error-measure'] ?? 'mul') as 'mul' | 'abs';
    if (errorMeasure !== 'mul' && errorMeasure !== 'abs') throw new ValueError('--error-measure', expectedFound('mul or abs', errorMeasure));
    return fromScores(
      await detectHead(model, { tokens: batch!.ids, attentionMask: batch!.mask }, kind, {
        excludeBos: args['exclude-bos'] === true,
        excludeCurrentToken: args['exclude-current-token'] === true,
        errorMeasure,
      }),
    );
  },
});

const composition = (mode: CompositionMode): RankMethod => ({
  needsTokens: false,
  help: `${mode}-composition score between every earlier and later head (weights only)`,
  async run(model) {
    const r = await compositionScores(model, mode);
    const rows = r.rows.map((x) => ({ layer: x.layer, head: x.head, srcLayer: x.srcLayer, srcHead: x.srcHead, score: x.score }));
    return { rows, method: `composition-${mode.toLowerCase()}`, params: r.params };
  },
});

/** The patching problem of --task ioi|induction (--n prompts, --seed; IOI: --corruption redwood|distinct). */
export function taskProblem(model: ModelView, args: Args): PatchingProblem {
  const task = (args.task ?? 'ioi') as string;
  const n = numArg(args, 'n', 16);
  const seed = numArg(args, 'seed', 0);
  if (task === 'ioi') {
    const corruption = (args.corruption ?? 'redwood') as IOICorruptionRule;
    if (corruption !== 'redwood' && corruption !== 'distinct') throw new ValueError('--corruption', expectedFound('redwood or distinct', corruption));
    return ioiTask(model, { n, seed, corruption }).problem;
  }
  if (task === 'induction') return inductionProblem(model, { n, R: numArg(args, 'R', 8), seed });
  throw new ValueError('--task', expectedFound('ioi or induction', task));
}

const patching = (help: string, f: (m: ModelView, p: PatchingProblem, args: Args) => Promise<HeadScores>): RankMethod => ({
  needsTokens: false,
  help,
  async run(model, _batch, args) {
    return fromScores(await f(model, taskProblem(model, args), args));
  },
});

const razor = (kind: 'echo' | 'induction', help: string): RankMethod => ({
  needsTokens: false,
  help,
  async run(model, _batch, args) {
    const repeats = numArg(args, 'repeats', 4);
    const R = numArg(args, 'R', Math.min(64, Math.floor((model.cfg.n_ctx - 1) / repeats)));
    const hi = args.hi === undefined ? undefined : numArg(args, 'hi', 0);
    const rule = (args.rule ?? 'mod-r') as 'mod-r' | 'same-token';
    const aggregate = (args.aggregate ?? 'mean') as 'mean' | 'row-mean';
    const r = await razorScoresForModel(model, { R, repeats, seed: numArg(args, 'seed', 0), lo: numArg(args, 'lo', 0), hi, rule, aggregate });
    return fromScores(r[kind]);
  },
});

/** Discrete-SAE circuit scores (O'Neill & Bui): positives = the task's clean prompts, negatives = its corrupted prompts. */
function saeMethod(kind: 'node' | 'edge'): RankMethod {
  return {
    needsTokens: false,
    help: `discrete-SAE ${kind} score (O'Neill & Bui), --task ioi|induction --n --seed --setup authors-code|paper-text --epochs (500) --features (200) --lambda (0.02) --n-train (10)`,
    async run(model, _batch, args) {
      const p = taskProblem(model, args);
      const setup = (args.setup ?? 'authors-code') as SAESetup;
      if (setup !== 'authors-code' && setup !== 'paper-text') throw new ValueError('--setup', expectedFound('authors-code or paper-text', setup));
      const sharing = args.sharing as 'per-head' | 'shared' | undefined;
      if (sharing !== undefined && sharing !== 'per-head' && sharing !== 'shared') throw new ValueError('--sharing', expectedFound('per-head or shared', sharing));
      const mask = p.attentionMask;
      const r = await saeCircuitScores(model, { tokens: p.clean, attentionMask: mask }, { tokens: p.corrupted, attentionMask: mask }, {
        epochs: numArg(args, 'epochs', 500),
        nFeatures: numArg(args, 'features', 200),
        lambda: numArg(args, 'lambda', 0.02),
        nTrain: numArg(args, 'n-train', 10),
        seed: numArg(args, 'seed', 0),
        setup,
        sharing,
        model: model.name,
      });
      return fromScores(kind === 'node' ? r.node : r.edge);
    },
  };
}

export const RANK_METHODS: Record<string, RankMethod> = {
  sink: {
    needsTokens: true,
    help: 'alpha_1: mean attention the head gives the first token (Gu et al.), averaged over prompts; --eps (0.3)',
    async run(model, batch, args) {
      return fromScores((await sinkScores(model, { tokens: batch!.ids, attentionMask: batch!.mask }, { eps: numArg(args, 'eps', 0.3) })).scores);
    },
  },
  'hidden-sink': {
    needsTokens: true,
    help: 'mass of the hidden sinks (ACT rule: column mean > --threshold (0.1), minus the first)',
    async run(model, batch, args) {
      return fromScores((await hiddenSinkScores(model, { tokens: batch!.ids, attentionMask: batch!.mask }, { threshold: numArg(args, 'threshold', 0.1) })).scores);
    },
  },
  'prev-token': detector('prev-token', 'previous-token detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  'duplicate-token': detector('duplicate-token', 'duplicate-token detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  induction: detector('induction', 'induction detector (TransformerLens score; --error-measure mul|abs, --exclude-bos, --exclude-current-token)'),
  dormant: {
    needsTokens: true,
    help: 'loss increase when the head is zeroed (--intervention zero|bos, --tolerance 0.01); dormant = within tolerance',
    async run(model, batch, args) {
      const intervention = (args.intervention ?? 'zero') as 'zero' | 'bos';
      if (intervention !== 'zero' && intervention !== 'bos') throw new ValueError('--intervention', expectedFound('zero or bos', intervention));
      const r = await dormantTest(model, [{ name: 'input', tokens: batch!.ids, attentionMask: batch!.mask }], {
        intervention,
        tolerance: numArg(args, 'tolerance', 0.01),
      });
      return fromScores(r.scores.input);
    },
  },
  copying: {
    needsTokens: false,
    help: 'OV copying score Re(sum lambda) / sum |lambda| of W_E W_V W_O W_U (TransformerLens; --measure positive-share for the share of eigenvalue mass with positive real part; weights only)',
    async run(model, _batch, args) {
      const measure = (args.measure ?? 'elhage') as 'elhage' | 'positive-share';
      if (measure !== 'elhage' && measure !== 'positive-share') throw new ValueError('--measure', expectedFound('elhage or positive-share', measure));
      return fromScores(await copyingScores(model, { model: model.name, measure }));
    },
  },
  'head-patching': patching('normalised effect of patching each head output (all positions), --task ioi|induction --n --seed --corruption redwood|distinct', (m, p) => headPatchingScores(m, p)),
  attribution: patching('attribution patching estimate of head-patching (one forward + one backward), --task ioi|induction', (m, p) => attributionScores(m, p)),
  path: patching('path patching from each head to the logits, scored as Wang et al.: 100 * (patched - clean) / clean (negative = the path carries the behaviour); --score normalised for (patched - corrupted) / (clean - corrupted); --task ioi|induction', (m, p, args) => {
    const score = (args.score ?? 'percentChange') as 'percentChange' | 'normalised';
    if (score !== 'percentChange' && score !== 'normalised') throw new ValueError('--score', expectedFound('percentChange or normalised', score));
    return pathPatchingScores(m, p, { score });
  }),
  'sae-node': saeMethod('node'),
  'sae-edge': saeMethod('edge'),
  'composition-q': composition('Q'),
  'composition-k': composition('K'),
  'composition-v': composition('V'),
  retrieval: {
    needsTokens: false,
    help: "retrieval score (Wu et al.) from NIAH decoding, on the answer span (--span needle), stopping at the newline token; samples from the model's task.json, or --needle-format <json> | --haystack <txt> --needles <json>; --lengths --depths --max-new-tokens --stop-tokens; --format retrieval-head",
    async run(model, _batch, args) {
      const r = await rankRetrieval(model, args);
      return { scores: r.scores, authorJson: r.authorJson, method: 'retrieval', params: r.params };
    },
  },
  echo: razor('echo', 'RazorAttention echo score: mean(A * echo mask) on BOS + --R random ids x --repeats (4); --seed --lo --hi --rule mod-r|same-token --aggregate mean|row-mean'),
  'razor-induction': razor('induction', 'RazorAttention induction score: mean(A * induction mask) on the same probe; --R --repeats --seed --lo --hi --rule --aggregate'),
};

/** Register a method (used by modules that add rankings, e.g. circuits and retrieval). */
export function registerRankMethod(name: string, method: RankMethod): void {
  RANK_METHODS[name] = method;
}
