/**
 * Activation patching (denoising: the corrupted run with one clean activation patched in), every
 * TransformerLens variant, batched: all patch indices of a layer run in one forward (chunked by
 * `maxBatch`), starting from the corrupted residual at that layer (the layers below a patch cannot
 * change), and unembedding only the positions the metric reads.
 * `patchSweepLoop` is the TransformerLens-style one-forward-per-index reference.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { HookedTransformer } from '../model/hooked.js';
import type { HookSpec } from '../hooks/registry.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { runMetric, runMetricSteps, type PatchingProblem } from './problem.js';
import { repeatRows, runAsync, runSync, tileRows, type Steps } from '../backend/readback.js';

/** Activations that can be patched, with the hook they live at. */
export type PatchAct = 'resid_pre' | 'resid_mid' | 'attn_out' | 'mlp_out' | 'z' | 'q' | 'k' | 'v' | 'pattern';
/** 'pos': per [layer, pos] (block acts); 'head': per [layer, head] over all positions; 'head_pos': per [layer, pos, head]. */
export type PatchBy = 'pos' | 'head' | 'head_pos';

const HOOK: Record<PatchAct, string> = {
  resid_pre: 'hook_resid_pre',
  resid_mid: 'hook_resid_mid',
  attn_out: 'hook_attn_out',
  mlp_out: 'hook_mlp_out',
  z: 'attn.hook_z',
  q: 'attn.hook_q',
  k: 'attn.hook_k',
  v: 'attn.hook_v',
  pattern: 'attn.hook_pattern',
};
const BLOCK_ACTS: PatchAct[] = ['resid_pre', 'resid_mid', 'attn_out', 'mlp_out'];

export interface PatchResult {
  act: PatchAct;
  by: PatchBy;
  /** values[layer][i] ('pos': i = position; 'head': i = head) or values[layer][pos][head] for 'head_pos'. */
  values: number[][] | number[][][];
  /** Same layout: (patched - corrupted) / (clean - corrupted). */
  normalised: number[][] | number[][][];
  clean: number;
  corrupted: number;
  metricName: string;
  /** Number of forward passes (batched runs count once). */
  forwards: number;
}

export interface PatchOptions {
  /** Largest batch (prompts x patch indices) per forward; default 256. */
  maxBatch?: number;
  /** Only these layers (default all). */
  layers?: number[];
  onProgress?: (done: number, total: number) => void;
}

export function hookNameOf(act: PatchAct, layer: number): string {
  return `blocks.${layer}.${HOOK[act]}`;
}

/** Number of heads along the patched axis (KV heads for k and v). */
function headCount(model: HookedTransformer, act: PatchAct): number {
  return act === 'k' || act === 'v' ? model.cfg.n_kv_heads : model.cfg.n_heads;
}

interface Index {
  pos?: number;
  head?: number;
}

function indicesFor(model: HookedTransformer, act: PatchAct, by: PatchBy, T: number): Index[] {
  const isBlock = BLOCK_ACTS.includes(act);
  if (isBlock && by !== 'pos') throw new ValueError('by', expectedFound(`"pos" for ${act}`, by));
  if (!isBlock && by === 'pos') throw new ValueError('by', expectedFound(`"head" or "head_pos" for ${act}`, by));
  if (act === 'resid_mid' && model.cfg.parallel_attn_mlp) throw new ValueError('act', 'resid_mid does not exist in a parallel-residual model');
  const H = headCount(model, act);
  const out: Index[] = [];
  if (by === 'pos') for (let p = 0; p < T; p++) out.push({ pos: p });
  else if (by === 'head') for (let h = 0; h < H; h++) out.push({ head: h });
  else for (let p = 0; p < T; p++) for (let h = 0; h < H; h++) out.push({ pos: p, head: h });
  return out;
}

/**
 * 0/1 mask selecting, for patch index i (rows i*N .. i*N+N-1), where the clean activation goes.
 * Shapes broadcast against the activation: [P*N, T, 1] (block), [P*N, T|1, H, 1] (q/k/v/z), [P*N, H, T|1, 1] (pattern).
 */
function patchMask(act: PatchAct, idx: Index[], N: number, T: number, H: number): tf.Tensor {
  const P = idx.length;
  const isBlock = BLOCK_ACTS.includes(act);
  if (isBlock) {
    const m = new Float32Array(P * N * T);
    idx.forEach((ix, i) => {
      for (let n = 0; n < N; n++) m[(i * N + n) * T + ix.pos!] = 1;
    });
    return tf.tensor3d(m, [P * N, T, 1]);
  }
  const byPos = idx[0].pos !== undefined;
  const Tm = byPos ? T : 1;
  const m = new Float32Array(P * N * Tm * H);
  idx.forEach((ix, i) => {
    for (let n = 0; n < N; n++) {
      const t = byPos ? ix.pos! : 0;
      const off = act === 'pattern' ? ((i * N + n) * H + ix.head!) * Tm + t : ((i * N + n) * Tm + t) * H + ix.head!;
      m[off] = 1;
    }
  });
  return act === 'pattern' ? tf.tensor4d(m, [P * N, H, Tm, 1]) : tf.tensor4d(m, [P * N, Tm, H, 1]);
}


/** Batched activation patching of one activation over all layers. */
export function patchSweep(model: HookedTransformer, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions = {}): PatchResult {
  return runSync(patchSweepSteps(model, p, act, by, opts));
}

/** patchSweep reading results asynchronously (WebGPU). */
export function patchSweepAsync(model: HookedTransformer, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions = {}): Promise<PatchResult> {
  return runAsync(patchSweepSteps(model, p, act, by, opts));
}

function* patchSweepSteps(model: HookedTransformer, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions): Steps<PatchResult> {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const L = model.cfg.n_layers;
  const layers = opts.layers ?? Array.from({ length: L }, (_, l) => l);
  const maxBatch = opts.maxBatch ?? 256;
  const idx = indicesFor(model, act, by, T);
  const H = headCount(model, act);
  const clean = yield* runMetricSteps(model, p, 'clean');
  const corrupted = yield* runMetricSteps(model, p, 'corrupted');
  const names = layers.map((l) => hookNameOf(act, l));
  const residNames = layers.map((l) => `blocks.${l}.hook_resid_pre`);
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: names });
  const corrRun = model.runWithCache(p.corrupted, { attentionMask: p.mask, namesFilter: residNames });
  cleanRun.logits.dispose();
  corrRun.logits.dispose();
  const perChunk = Math.max(1, Math.floor(maxBatch / N));
  const values: number[][] = layers.map(() => new Array(idx.length).fill(0));
  let forwards = 0;
  const total = layers.length * Math.ceil(idx.length / perChunk);
  try {
    for (const [li, layer] of layers.entries()) {
      for (let c0 = 0; c0 < idx.length; c0 += perChunk) {
        const chunk = idx.slice(c0, c0 + perChunk);
        const P = chunk.length;
        const out = tf.tidy(() => {
          const mask = patchMask(act, chunk, N, T, H);
          const cleanAct = tileRows(cleanRun.cache.get(names[li]), P);
          const replace = (a: tf.Tensor) => tf.add(a, tf.mul(mask, tf.sub(cleanAct, a)));
          let residual = tileRows(corrRun.cache.get(residNames[li]), P);
          const hooks: HookSpec[] = [];
          if (act === 'resid_pre') residual = replace(residual);
          else hooks.push([names[li] as never, (a) => replace(a)]);
          const logits = model.forward(repeatRows(p.corrupted, P), {
            attentionMask: repeatRows(p.mask, P),
            startAtLayer: layer,
            residual,
            fwdHooks: hooks,
            logitPositions: Array.from({ length: P * N }, (_, r) => p.readPositions[r % N]),
          });
          return p.metric(tf.reshape(logits, [P, N, logits.shape[2]]) as tf.Tensor3D);
        });
        const v = yield out;
        chunk.forEach((_, i) => (values[li][c0 + i] = v[i]));
        forwards++;
        opts.onProgress?.(forwards, total);
      }
    }
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
  return shapeResult(act, by, layers, idx, values, clean, corrupted, p.metricName, forwards + 2 + 2, T, H);
}

function shapeResult(
  act: PatchAct, by: PatchBy, layers: number[], idx: Index[], flat: number[][], clean: number, corrupted: number,
  metricName: string, forwards: number, T: number, H: number,
): PatchResult {
  const norm = (x: number) => (x - corrupted) / (clean - corrupted);
  let values: number[][] | number[][][];
  if (by === 'head_pos') {
    values = layers.map((_, li) => Array.from({ length: T }, (_, t) => Array.from({ length: H }, (_, h) => flat[li][t * H + h])));
  } else values = flat;
  const normalised = JSON.parse(JSON.stringify(values), (_k, v) => (typeof v === 'number' ? norm(v) : v));
  void idx;
  return { act, by, values, normalised, clean, corrupted, metricName, forwards };
}

/** The TransformerLens-style loop: one full forward per (layer, index). Reference and benchmark baseline. */
export function patchSweepLoop(model: HookedTransformer, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions = {}): PatchResult {
  const T = p.clean[0].length;
  const L = model.cfg.n_layers;
  const layers = opts.layers ?? Array.from({ length: L }, (_, l) => l);
  const idx = indicesFor(model, act, by, T);
  const H = headCount(model, act);
  const clean = runMetric(model, p, 'clean');
  const corrupted = runMetric(model, p, 'corrupted');
  const names = layers.map((l) => hookNameOf(act, l));
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: names });
  cleanRun.logits.dispose();
  const N = p.clean.length;
  const values: number[][] = layers.map(() => new Array(idx.length).fill(0));
  let forwards = 0;
  try {
    layers.forEach((_, li) => {
      idx.forEach((ix, i) => {
        values[li][i] = tf.tidy(() => {
          const mask = patchMask(act, [ix], N, T, H);
          const cleanAct = cleanRun.cache.get(names[li]);
          const logits = model.forward(p.corrupted, {
            attentionMask: p.mask,
            fwdHooks: [[names[li] as never, (a) => tf.add(a, tf.mul(mask, tf.sub(cleanAct, a)))]],
          });
          const read = tf.stack(p.readPositions.map((pos, n) => logits.slice([n, pos, 0], [1, 1, -1]).reshape([-1])));
          return p.metric(read.expandDims(0) as tf.Tensor3D).dataSync()[0];
        });
        forwards++;
      });
    });
  } finally {
    cleanRun.cache.dispose();
  }
  return shapeResult(act, by, layers, idx, values, clean, corrupted, p.metricName, forwards + 3, T, H);
}

// ------------------------------------------------------------------ TransformerLens-named wrappers

export const actPatchResidPre = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'resid_pre', 'pos', o);
export const actPatchResidMid = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'resid_mid', 'pos', o);
export const actPatchAttnOut = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'attn_out', 'pos', o);
export const actPatchMlpOut = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'mlp_out', 'pos', o);
export const actPatchHeadOutAllPos = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'z', 'head', o);
export const actPatchHeadOutByPos = (m: HookedTransformer, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'z', 'head_pos', o);

/** [resid_pre, attn_out, mlp_out] by [layer, pos] (TransformerLens get_act_patch_block_every). */
export function actPatchBlockEvery(m: HookedTransformer, p: PatchingProblem, o?: PatchOptions): Record<'resid_pre' | 'attn_out' | 'mlp_out', PatchResult> {
  return { resid_pre: patchSweep(m, p, 'resid_pre', 'pos', o), attn_out: patchSweep(m, p, 'attn_out', 'pos', o), mlp_out: patchSweep(m, p, 'mlp_out', 'pos', o) };
}

/** [z, q, k, v, pattern] per head over all positions (get_act_patch_attn_head_all_pos_every). */
export function actPatchAttnHeadAllPosEvery(m: HookedTransformer, p: PatchingProblem, o?: PatchOptions): Record<'z' | 'q' | 'k' | 'v' | 'pattern', PatchResult> {
  const acts = ['z', 'q', 'k', 'v', 'pattern'] as const;
  return Object.fromEntries(acts.map((a) => [a, patchSweep(m, p, a, 'head', o)])) as Record<(typeof acts)[number], PatchResult>;
}

/** [z, q, k, v, pattern] per head and position (get_act_patch_attn_head_by_pos_every; pattern by query position). */
export function actPatchAttnHeadByPosEvery(m: HookedTransformer, p: PatchingProblem, o?: PatchOptions): Record<'z' | 'q' | 'k' | 'v' | 'pattern', PatchResult> {
  const acts = ['z', 'q', 'k', 'v', 'pattern'] as const;
  return Object.fromEntries(acts.map((a) => [a, patchSweep(m, p, a, 'head_pos', o)])) as Record<(typeof acts)[number], PatchResult>;
}

/** Head-patching ranking: normalised effect of patching each head's output over all positions. */
export function headPatchingScores(m: HookedTransformer, p: PatchingProblem, o?: PatchOptions): HeadScores {
  const r = patchSweep(m, p, 'z', 'head', o);
  return makeHeadScores('head-patching', r.normalised as number[][], { act: 'z', positions: 'all', metric: r.metricName, clean: r.clean, corrupted: r.corrupted }, {
    model: m.name,
    data: { task: p.task ?? 'custom', prompts: p.clean.length },
  });
}
