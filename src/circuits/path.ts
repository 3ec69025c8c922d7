/**
 * Path patching (Wang et al.) and attribution patching (Nanda).
 *
 * Path patching, noising direction as in the IOI paper: the base run is the clean prompt; the sender
 * head's output comes from the corrupted run while every other head's output is frozen at its clean
 * value, so the change reaches the receivers only along paths that avoid other heads (the residual
 * stream and MLPs). To the logits: the metric of that run. To receiver heads: the receivers' q, k or v
 * from that run are patched into an otherwise ordinary clean run. All senders of one layer run as one batch.
 *
 * Attribution patching: one corrupted forward and one backward give d metric / d activation; the
 * attribution of a head is sum((clean - corrupted) * grad) over its output (z), per position or summed.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import type { HookedTransformer } from '../model/hooked.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { runMetricSteps, type PatchingProblem } from './problem.js';
import { repeatRows, runAsync, runSync, tileRows, type Steps } from '../backend/readback.js';

export type Receiver = [layer: number, head: number];

export interface PathPatchOptions {
  /** Receiver heads and which input of theirs is patched; absent = the logits (final residual). */
  receivers?: Receiver[];
  receiverInput?: 'q' | 'k' | 'v';
  /** Sender layers (default: every layer below the first receiver, or all layers for the logits). */
  senderLayers?: number[];
  maxBatch?: number;
}

export interface PathPatchResult {
  /** values[layer][head]: metric with that sender's path patched; NaN for heads that cannot send. */
  values: number[][];
  /** (clean - patched) / (clean - corrupted): the share of the clean-corrupted gap the path carries. */
  effect: number[][];
  clean: number;
  corrupted: number;
  receivers: Receiver[] | 'logits';
}


/** [P*N, 1, H, 1] one-hot on head h_i for rows of patch i. */
function headMask(heads: number[], N: number, H: number): tf.Tensor {
  const m = new Float32Array(heads.length * N * H);
  heads.forEach((h, i) => {
    for (let n = 0; n < N; n++) m[(i * N + n) * H + h] = 1;
  });
  return tf.tensor4d(m, [heads.length * N, 1, H, 1]);
}

export function pathPatch(model: HookedTransformer, p: PatchingProblem, opts: PathPatchOptions = {}): PathPatchResult {
  return runSync(pathPatchSteps(model, p, opts));
}

/** pathPatch reading results asynchronously (WebGPU). */
export function pathPatchAsync(model: HookedTransformer, p: PatchingProblem, opts: PathPatchOptions = {}): Promise<PathPatchResult> {
  return runAsync(pathPatchSteps(model, p, opts));
}

function* pathPatchSteps(model: HookedTransformer, p: PatchingProblem, opts: PathPatchOptions): Steps<PathPatchResult> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const N = p.clean.length;
  const receivers = opts.receivers ?? null;
  const input = opts.receiverInput ?? 'q';
  if (receivers && model.cfg.n_kv_heads !== H && input !== 'q') {
    throw new ValueError('receiverInput', 'k/v receivers of a GQA model are shared by several query heads; patch q, or give KV-head receivers');
  }
  if (receivers) {
    if (!Array.isArray(receivers) || receivers.length === 0) throw new ValueError('receivers', expectedFound('a non-empty array of [layer, head]', receivers));
    receivers.forEach((r, i) => {
      if (!Array.isArray(r) || r.length !== 2 || !Number.isInteger(r[0]) || !Number.isInteger(r[1]) || r[0] < 0 || r[0] >= L || r[1] < 0 || r[1] >= H) {
        throw new ValueError(`receivers[${i}]`, expectedFound(`[layer, head] with layer in [0, ${L}) and head in [0, ${H})`, r));
      }
    });
  }
  const minRecv = receivers ? Math.min(...receivers.map((r) => r[0])) : L;
  const senderLayers = opts.senderLayers ?? Array.from({ length: minRecv }, (_, l) => l);
  if (senderLayers.some((l) => l >= minRecv)) throw new ValueError('senderLayers', expectedFound(`layers below the first receiver layer ${minRecv}`, senderLayers));
  const clean = yield* runMetricSteps(model, p, 'clean');
  const corrupted = yield* runMetricSteps(model, p, 'corrupted');
  const zNames = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`);
  const residNames = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`);
  const recvName = (l: number) => `blocks.${l}.attn.hook_${input}`;
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: [...zNames, ...residNames] });
  const corrRun = model.runWithCache(p.corrupted, { attentionMask: p.mask, namesFilter: zNames });
  tf.dispose([cleanRun.logits, corrRun.logits]);
  const values = Array.from({ length: L }, () => new Array(H).fill(NaN));
  const perChunk = Math.max(1, Math.floor((opts.maxBatch ?? 256) / N));
  const recvLayers = receivers ? [...new Set(receivers.map((r) => r[0]))].sort((a, b) => a - b) : [];
  try {
    for (const ls of senderLayers) {
      for (let h0 = 0; h0 < H; h0 += perChunk) {
        const heads = Array.from({ length: Math.min(perChunk, H - h0) }, (_, i) => h0 + i);
        const P = heads.length;
        const v = tf.tidy(() => {
          const toks = repeatRows(p.clean, P);
          const mask = repeatRows(p.mask, P);
          const reads = Array.from({ length: P * N }, (_, r) => p.readPositions[r % N]);
          // run 1: sender from corrupted, every other head frozen at clean
          const freeze: HookSpec[] = [];
          for (let l = ls; l < L; l++) {
            const cz = tileRows(cleanRun.cache.get(zNames[l]), P);
            if (l === ls) {
              const m = headMask(heads, N, H);
              const kz = tileRows(corrRun.cache.get(zNames[l]), P);
              freeze.push([zNames[l] as never, () => tf.add(cz, tf.mul(m, tf.sub(kz, cz)))]);
            } else freeze.push([zNames[l] as never, () => cz]);
          }
          const start = { startAtLayer: ls, residual: tileRows(cleanRun.cache.get(residNames[ls]), P) };
          if (!receivers) {
            const lg = model.forward(toks, { attentionMask: mask, fwdHooks: freeze, logitPositions: reads, ...start });
            return p.metric(tf.reshape(lg, [P, N, lg.shape[2]]) as tf.Tensor3D);
          }
          const r1 = model.run(toks, { attentionMask: mask, fwdHooks: freeze, stopAtLayer: recvLayers[recvLayers.length - 1] + 1, ...start }, (n) => recvLayers.some((l) => n === recvName(l)));
          // run 2: clean run with the receivers' inputs taken from run 1
          const patch: HookSpec[] = recvLayers.map((l) => {
            const sel = new Float32Array(H);
            receivers.filter((r) => r[0] === l).forEach((r) => (sel[r[1]] = 1));
            const m = tf.tensor4d(sel, [1, 1, H, 1]);
            const from = r1.cache[recvName(l)];
            return [recvName(l) as never, (a: tf.Tensor) => tf.add(a, tf.mul(m, tf.sub(from, a)))];
          });
          const lg = model.forward(toks, {
            attentionMask: mask, fwdHooks: patch, logitPositions: reads,
            startAtLayer: recvLayers[0], residual: tileRows(cleanRun.cache.get(residNames[recvLayers[0]]), P),
          });
          return p.metric(tf.reshape(lg, [P, N, lg.shape[2]]) as tf.Tensor3D);
        });
        const d = yield v;
        heads.forEach((h, i) => (values[ls][h] = d[i]));
      }
    }
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
  const effect = values.map((row) => row.map((x) => (clean - x) / (clean - corrupted)));
  return { values, effect, clean, corrupted, receivers: receivers ?? 'logits' };
}

export function pathPatchingScores(model: HookedTransformer, p: PatchingProblem, opts: PathPatchOptions = {}): HeadScores {
  const r = pathPatch(model, p, opts);
  return makeHeadScores('path', r.effect.map((row) => row.map((x) => (Number.isFinite(x) ? x : 0))), {
    receivers: r.receivers === 'logits' ? 'logits' : r.receivers.map((x) => `${x[0]}.${x[1]}`),
    receiverInput: opts.receiverInput ?? 'q',
    score: '(clean - patched) / (clean - corrupted)',
    clean: r.clean,
    corrupted: r.corrupted,
  }, { model: model.name, data: { task: p.task ?? 'custom', prompts: p.clean.length } });
}

export interface AttributionResult {
  /** byPos[layer][pos][head] = sum over d_head of (clean z - corrupted z) * d metric / d z. */
  byPos: number[][][];
  /** Summed over positions: [layer][head]. */
  allPos: number[][];
  clean: number;
  corrupted: number;
}

/** Attribution patching of every head's output z: one corrupted forward and one backward. */
export function attributionPatch(model: HookedTransformer, p: PatchingProblem): AttributionResult {
  return runSync(attributionSteps(model, p));
}

/** attributionPatch reading results asynchronously (WebGPU). */
export function attributionPatchAsync(model: HookedTransformer, p: PatchingProblem): Promise<AttributionResult> {
  return runAsync(attributionSteps(model, p));
}

function* attributionSteps(model: HookedTransformer, p: PatchingProblem): Steps<AttributionResult> {
  const { n_layers: L } = model.cfg;
  const N = p.clean.length;
  const T = p.clean[0].length;
  const H = model.cfg.n_heads;
  const clean = yield* runMetricSteps(model, p, 'clean');
  const corrupted = yield* runMetricSteps(model, p, 'corrupted');
  const zNames = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`);
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: zNames });
  const corrRun = model.runWithCache(p.corrupted, { attentionMask: p.mask, namesFilter: zNames });
  tf.dispose([cleanRun.logits, corrRun.logits]);
  try {
    const attr = tf.tidy(() => {
      const deltas = zNames.map((n) => tf.zerosLike(corrRun.cache.get(n)));
      const grads = tf.grads((...ds: tf.Tensor[]) => {
        const lg = model.forward(p.corrupted, {
          attentionMask: p.mask,
          logitPositions: p.readPositions,
          fwdHooks: zNames.map((n, l) => [n as never, (z: tf.Tensor) => tf.add(z, ds[l])] as HookSpec),
        });
        return tf.squeeze(p.metric(tf.reshape(lg, [1, N, lg.shape[2]]) as tf.Tensor3D)) as tf.Scalar;
      })(deltas);
      // [L, B, T, H] -> mean over prompts (the metric is a mean, gradients are per prompt)
      return tf.stack(zNames.map((n, l) => tf.sum(tf.sum(tf.mul(tf.sub(cleanRun.cache.get(n), corrRun.cache.get(n)), grads[l]), -1), 0)));
    });
    const flat = yield attr;
    const byPos = Array.from({ length: L }, (_, l) => Array.from({ length: T }, (_, t) => Array.from({ length: H }, (_, h) => flat[(l * T + t) * H + h])));
    const allPos = byPos.map((layer) => layer[0].map((_, h) => layer.reduce((s, row) => s + row[h], 0)));
    return { byPos, allPos, clean, corrupted };
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
}

/** Attribution ranking normalised like head patching: estimated (patched - corrupted) / (clean - corrupted). */
export function attributionScores(model: HookedTransformer, p: PatchingProblem): HeadScores {
  const r = attributionPatch(model, p);
  const gap = r.clean - r.corrupted;
  return makeHeadScores('attribution', r.allPos.map((row) => row.map((x) => x / gap)), {
    act: 'z', positions: 'all', estimate: 'gradient x (clean - corrupted), linearised at the corrupted run', clean: r.clean, corrupted: r.corrupted,
  }, { model: model.name, data: { task: p.task ?? 'custom', prompts: p.clean.length } });
}
