/**
 * Path patching (Wang et al. 2022) and attribution patching (Nanda 2023).
 *
 * Path patching follows the authors' path_patching (redwoodresearch/Easy-Transformer,
 * easy_transformer/ioi_utils.py lines 985-1120) in the noising direction of the IOI paper: the base run
 * is the clean prompt; the sender head's output comes from the corrupted run while every other head's
 * output is frozen at its clean value (the authors freeze each head's q, k and v inputs, which fixes its
 * output the same way), MLPs are recomputed, so the change reaches the receivers only along paths that
 * avoid other heads. To the logits: the metric of that run. To receiver heads: the receivers' q, k or v
 * from that run, at the patched positions, go into an otherwise ordinary clean run. The authors patch
 * sender and receivers at the same positions (`positions=["end"]`); with every other head frozen, a
 * sender's output at one position reaches only the same position, so patching the sender at every
 * position and the receivers at the chosen ones gives the same numbers. All senders of a layer run as
 * one batch; each layer's metrics are read back once.
 *
 * The effect is reported as the paper does (experiments.py plot_path_patching, lines 151-162: the
 * patched logit difference relative to the clean one, in percent) and, under its own name, as the
 * normalised metric (patched - corrupted) / (clean - corrupted).
 *
 * Attribution patching follows TransformerLens's demos/Attribution_Patching_Demo.ipynb (attr_patch_head_vector):
 * one corrupted forward and one backward give d metric / d z at the corrupted run; the attribution of a
 * head is sum((clean z - corrupted z) * grad) over d_head and prompts, per position or summed.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { BlockHookName } from '../hooks/names.js';
import type { HookSpec } from '../hooks/registry.js';
import type { ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { parseHead } from '../util/grid.js';
import { repeatRows, tileRows } from '../backend/readback.js';
import { metricOfReadLogits, type PatchingProblem } from './problem.js';
import { baselineRuns, blend, disposeAfter, hookNameOf, readChunks } from './patching.js';

/** A head as "L.H", "L9H6" or [layer, head]. */
export type HeadRef = string | readonly [number, number];

export interface PathPatchOptions {
  /** Receiver heads; absent = the logits (the final residual stream). */
  receivers?: HeadRef[];
  /** Which input of the receivers is patched (default 'q'). */
  receiverInput?: 'q' | 'k' | 'v';
  /**
   * Where the receivers' inputs are patched: 'read' (default: each prompt's read position, the authors'
   * positions=["end"] for IOI), 'all', or one position per prompt (in the padded batch).
   */
  positions?: 'read' | 'all' | number[];
  /** Sender layers (default: every layer below the first receiver, or all layers for the logits). */
  senderLayers?: number[];
  /** Largest batch (prompts x senders) per forward; default 256. */
  maxBatch?: number;
}

export interface PathPatchResult {
  /** values[layer][head]: the metric with that sender's path patched; NaN for heads that cannot send. */
  values: number[][];
  /** Wang et al.'s quantity: 100 * (patched - clean) / clean, the % change of the metric. */
  percentChange: number[][];
  /** (patched - corrupted) / (clean - corrupted): 1 = no effect, 0 = the path carries the whole clean-corrupted gap. */
  normalised: number[][];
  clean: number;
  corrupted: number;
  receivers: Array<[number, number]> | 'logits';
}

/** [P*N, 1, H, 1] one-hot on head h_i for rows of patch i. */
function headMask(heads: number[], N: number, H: number): tf.Tensor {
  const m = new Float32Array(heads.length * N * H);
  heads.forEach((h, i) => {
    for (let n = 0; n < N; n++) m[(i * N + n) * H + h] = 1;
  });
  return tf.tensor4d(m, [heads.length * N, 1, H, 1]);
}

/** [rows, T|1, H, 1]: 1 at the receiver heads of `layer`, at each row's patched position (or every position). */
function receiverMask(receivers: Array<[number, number]>, layer: number, H: number, T: number, positions: number[] | null, rows: number): tf.Tensor {
  const heads = receivers.filter((r) => r[0] === layer).map((r) => r[1]);
  if (!positions) {
    const sel = new Float32Array(H);
    heads.forEach((h) => (sel[h] = 1));
    return tf.tensor4d(sel, [1, 1, H, 1]);
  }
  const m = new Float32Array(rows * T * H);
  for (let r = 0; r < rows; r++) for (const h of heads) m[(r * T + positions[r % positions.length]) * H + h] = 1;
  return tf.tensor4d(m, [rows, T, H, 1]);
}

interface PathPlan {
  receivers: Array<[number, number]> | null;
  input: 'q' | 'k' | 'v';
  senderLayers: number[];
  recvLayers: number[];
  /** Per prompt, where receivers are patched; null = every position. */
  positions: number[] | null;
}

function planPath(model: ModelView, p: PatchingProblem, opts: PathPatchOptions): PathPlan {
  const { n_layers: L, n_heads: H } = model.cfg;
  const input = opts.receiverInput ?? 'q';
  if (!['q', 'k', 'v'].includes(input)) throw new ValueError('receiverInput', expectedFound('"q", "k" or "v"', input));
  let receivers: Array<[number, number]> | null = null;
  if (opts.receivers !== undefined) {
    if (!Array.isArray(opts.receivers) || opts.receivers.length === 0) throw new ValueError('receivers', expectedFound('a non-empty array of heads ("L.H" or [layer, head])', opts.receivers));
    receivers = opts.receivers.map((r, i) => parseHead(r, model.cfg, `receivers[${i}]`));
    if (model.cfg.n_kv_heads !== H && input !== 'q') {
      throw new ValueError('receiverInput', 'k/v receivers of a GQA model are shared by several query heads; patch q');
    }
  }
  const minRecv = receivers ? Math.min(...receivers.map((r) => r[0])) : L;
  const senderLayers = opts.senderLayers ?? Array.from({ length: minRecv }, (_, l) => l);
  senderLayers.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= minRecv) throw new ValueError(`senderLayers[${i}]`, expectedFound(`a layer below the first receiver layer ${minRecv}`, l));
  });
  const N = p.clean.length;
  const T = p.clean[0].length;
  const pos = opts.positions ?? 'read';
  let positions: number[] | null;
  if (pos === 'all') positions = null;
  else if (pos === 'read') positions = p.readPositions;
  else if (Array.isArray(pos) && pos.length === N && pos.every((x) => Number.isInteger(x) && x >= 0 && x < T)) positions = pos;
  else throw new ValueError('positions', expectedFound(`"read", "all" or ${N} positions in [0, ${T})`, pos));
  const recvLayers = receivers ? [...new Set(receivers.map((r) => r[0]))].sort((a, b) => a - b) : [];
  return { receivers, input, senderLayers, recvLayers, positions };
}

/** Path patching from every head of the sender layers to the logits or to receiver heads' inputs. */
export async function pathPatch(model: ModelView, p: PatchingProblem, opts: PathPatchOptions = {}): Promise<PathPatchResult> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const plan = planPath(model, p, opts);
  const N = p.clean.length;
  const T = p.clean[0].length;
  const zNames = Array.from({ length: L }, (_, l) => hookNameOf('z', l));
  const residNames = Array.from({ length: L }, (_, l) => hookNameOf('resid_pre', l));
  const recvName = (l: number): BlockHookName => hookNameOf(plan.input, l);
  const { clean: cleanRun, corrupted: corrRun } = await baselineRuns(model, p, [...zNames, ...residNames], zNames);
  const [clean, corrupted] = [cleanRun.metric, corrRun.metric];
  const values = Array.from({ length: L }, () => new Array<number>(H).fill(NaN));
  const perChunk = Math.max(1, Math.floor((opts.maxBatch ?? 256) / N));
  try {
    for (const ls of plan.senderLayers) {
      const parts: tf.Tensor[] = [];
      const heads: number[] = [];
      try {
        for (let h0 = 0; h0 < H; h0 += perChunk) {
          const chunk = Array.from({ length: Math.min(perChunk, H - h0) }, (_, i) => h0 + i);
          parts.push(await senderChunk(model, p, plan, { cache: cleanRun.cache, zNames, residNames }, corrRun.cache.get(zNames[ls]), ls, chunk, recvName, T));
          heads.push(...chunk);
        }
      } catch (e) {
        tf.dispose(parts);
        throw e;
      }
      const v = await readChunks(parts);
      heads.forEach((h, i) => (values[ls][h] = v[i]));
    }
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
  return {
    values,
    percentChange: values.map((row) => row.map((x) => (100 * (x - clean)) / clean)),
    normalised: values.map((row) => row.map((x) => (x - corrupted) / (clean - corrupted))),
    clean,
    corrupted,
    receivers: plan.receivers ?? 'logits',
  };
}

/**
 * The metric (a [P] tensor) of one chunk of senders (heads of layer `ls`): run 1 freezes every head at
 * its clean output except the sender (corrupted); to the logits that run's metric is the answer; to
 * receivers, run 2 is the clean run with the receivers' inputs taken from run 1.
 */
async function senderChunk(
  model: ModelView, p: PatchingProblem, plan: PathPlan,
  clean: { cache: { get(name: string): tf.Tensor }; zNames: BlockHookName[]; residNames: BlockHookName[] },
  corrZ: tf.Tensor, ls: number, heads: number[], recvName: (l: number) => BlockHookName, T: number,
): Promise<tf.Tensor> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const N = p.clean.length;
  const P = heads.length;
  const toks = repeatRows(p.clean, P);
  const attentionMask = repeatRows(p.attentionMask, P);
  const reads = Array.from({ length: P * N }, (_, r) => p.readPositions[r % N]);
  const frozen = tf.tidy(() => {
    const z = Array.from({ length: L - ls }, (_, i) => tileRows(clean.cache.get(clean.zNames[ls + i]), P));
    z[0] = blend(z[0], headMask(heads, N, H), tileRows(corrZ, P));
    return { z, resid: tileRows(clean.cache.get(clean.residNames[ls]), P) };
  });
  const held: tf.Tensor[] = [...frozen.z, frozen.resid];
  try {
    const freeze: HookSpec[] = frozen.z.map((z, i) => [clean.zNames[ls + i], () => z]);
    const start = { attentionMask, startAtLayer: ls, residual: frozen.resid };
    if (!plan.receivers) {
      const lg = await model.forward(toks, { ...start, fwdHooks: freeze, logitPositions: reads });
      return disposeAfter(lg, () => p.metric(tf.reshape(lg, [P, N, lg.shape[2]]) as tf.Tensor3D));
    }
    const names = plan.recvLayers.map(recvName);
    const r1 = await model.runWithCache(toks, { ...start, fwdHooks: freeze, stopAtLayer: plan.recvLayers[plan.recvLayers.length - 1] + 1, namesFilter: names });
    r1.logits.dispose();
    try {
      const masks = plan.recvLayers.map((l) => receiverMask(plan.receivers!, l, H, T, plan.positions, P * N));
      held.push(...masks);
      const patch: HookSpec[] = names.map((name, i) => [name, (a: tf.Tensor) => blend(a, masks[i], r1.cache.get(name))]);
      const resid = tileRows(clean.cache.get(clean.residNames[plan.recvLayers[0]]), P);
      held.push(resid);
      const lg = await model.forward(toks, { attentionMask, fwdHooks: patch, logitPositions: reads, startAtLayer: plan.recvLayers[0], residual: resid });
      return disposeAfter(lg, () => p.metric(tf.reshape(lg, [P, N, lg.shape[2]]) as tf.Tensor3D));
    } finally {
      r1.cache.dispose();
    }
  } finally {
    tf.dispose(held);
  }
}

/**
 * Path-patching ranking. `score`: 'percentChange' (default, the paper's % change of the metric; strongly
 * negative = the path carries the clean behaviour) or 'normalised'. The other is kept as an extra column.
 * Heads that cannot send (at or above the first receiver layer) score 0.
 */
export async function pathPatchingScores(model: ModelView, p: PatchingProblem, opts: PathPatchOptions & { score?: 'percentChange' | 'normalised' } = {}): Promise<HeadScores> {
  const score = opts.score ?? 'percentChange';
  if (score !== 'percentChange' && score !== 'normalised') throw new ValueError('score', expectedFound('"percentChange" or "normalised"', score));
  const r = await pathPatch(model, p, opts);
  const other = score === 'percentChange' ? 'normalised' : 'percentChange';
  const finite = (g: number[][]) => g.map((row) => row.map((x) => (Number.isFinite(x) ? x : 0)));
  return makeHeadScores('path', finite(r[score]), {
    receivers: r.receivers === 'logits' ? 'logits' : r.receivers.map((x) => `${x[0]}.${x[1]}`),
    receiverInput: opts.receiverInput ?? 'q',
    positions: Array.isArray(opts.positions) ? 'custom' : opts.positions ?? 'read',
    score: score === 'percentChange' ? '100 * (patched - clean) / clean' : '(patched - corrupted) / (clean - corrupted)',
    clean: r.clean,
    corrupted: r.corrupted,
  }, { model: model.name, data: { task: p.task ?? 'custom', prompts: p.clean.length }, extra: { [other]: finite(r[other]) } });
}

export interface AttributionResult {
  /** byPos[layer][pos][head] = sum over prompts and d_head of (clean z - corrupted z) * d metric / d z. */
  byPos: number[][][];
  /** Summed over positions: [layer][head]. */
  allPos: number[][];
  clean: number;
  corrupted: number;
}

/** Attribution patching of every head's output z: one corrupted forward and one backward (through model.run in tf.grads). */
export async function attributionPatch(model: ModelView, p: PatchingProblem): Promise<AttributionResult> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const T = p.clean[0].length;
  const zNames = Array.from({ length: L }, (_, l) => hookNameOf('z', l));
  const { clean: cl, corrupted: co } = await baselineRuns(model, p, zNames, zNames);
  try {
    const attr = tf.tidy(() => {
      const deltas = zNames.map((n) => tf.zerosLike(co.cache.get(n)));
      const grads = tf.grads((...ds: tf.Tensor[]) => {
        const lg = model.run(p.corrupted, {
          attentionMask: p.attentionMask,
          logitPositions: p.readPositions,
          fwdHooks: zNames.map((n, l): HookSpec => [n, (z: tf.Tensor) => tf.add(z, ds[l])]),
        }, null).logits;
        return tf.squeeze(metricOfReadLogits(p, lg)) as tf.Scalar;
      })(deltas);
      // [L, T, H] flattened: summed over prompts (the metric is a mean, so each prompt's gradient carries 1/N) and d_head
      return tf.stack(zNames.map((n, l) => tf.sum(tf.sum(tf.mul(tf.sub(cl.cache.get(n), co.cache.get(n)), grads[l]), -1), 0))).reshape([-1]);
    });
    const flat = await readChunks([attr]);
    const byPos = Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, t) => Array.from(flat.subarray((l * T + t) * H, (l * T + t + 1) * H))));
    const allPos = byPos.map((layer) => layer[0].map((_, h) => layer.reduce((s, row) => s + row[h], 0)));
    return { byPos, allPos, clean: cl.metric, corrupted: co.metric };
  } finally {
    cl.cache.dispose();
    co.cache.dispose();
  }
}

/** Attribution ranking normalised like head patching: estimated (patched - corrupted) / (clean - corrupted). */
export async function attributionScores(model: ModelView, p: PatchingProblem): Promise<HeadScores> {
  const r = await attributionPatch(model, p);
  const gap = r.clean - r.corrupted;
  return makeHeadScores('attribution', r.allPos.map((row) => row.map((x) => x / gap)), {
    act: 'z', positions: 'all', estimate: 'gradient x (clean - corrupted), linearised at the corrupted run', clean: r.clean, corrupted: r.corrupted,
  }, { model: model.name, data: { task: p.task ?? 'custom', prompts: p.clean.length } });
}
