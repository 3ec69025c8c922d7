/**
 * Activation patching (denoising: the corrupted run with one clean activation patched in) as
 * TransformerLens's generic_activation_patch (TransformerLensOrg/TransformerLens, transformer_lens/patching.py
 * lines 125-235, setters lines 242-317), with every get_act_patch_* variant of lines 342-643 except
 * pattern by (query, key) position; docs/methods/patching.md has the table.
 *
 * `patchSweep` is batched: all patch indices of a layer run in one forward (chunked by `maxBatch`),
 * starting from the corrupted residual at that layer (the layers below a patch cannot change), and
 * unembedding only the positions the metric reads; the metrics of a layer are read back once.
 * `patchLoop` is the TransformerLens-style reference: one full forward per (layer, index), the metric
 * read after each (TransformerLens's generic_activation_patch calls .item() per index, patching.py line 230).
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { BlockHookName, BlockHookSuffix } from '../hooks/names.js';
import type { ModelView } from '../model/view.js';
import { makeHeadScores, type HeadScores } from '../results.js';
import { repeatRows, tileRows } from '../backend/readback.js';
import type { ActivationCache } from '../model/cache.js';
import { metricOfReadLogits, runMetric, type PatchingProblem } from './problem.js';

/** Activations that can be patched, with the hook they live at. */
export type PatchAct = 'resid_pre' | 'resid_mid' | 'attn_out' | 'mlp_out' | 'z' | 'q' | 'k' | 'v' | 'pattern';
/** 'pos': per [layer, pos] (block acts); 'head': per [layer, head] over all positions; 'head_pos': per [layer, pos, head]. */
export type PatchBy = 'pos' | 'head' | 'head_pos';

const HOOK: Record<PatchAct, BlockHookSuffix> = {
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
  /** Same layout: (patched - corrupted) / (clean - corrupted) (TransformerLens demos' ioi_metric). */
  normalised: number[][] | number[][][];
  clean: number;
  corrupted: number;
  metricName: string;
  /** Number of forward passes (a batched run counts once). */
  forwards: number;
}

export interface PatchOptions {
  /** Largest batch (prompts x patch indices) per forward; default 256. */
  maxBatch?: number;
  /** Only these layers (default all). */
  layers?: number[];
  /** Called after each forward of patches with the forwards done and the total. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Only the patched forwards numbered [from, to) of each layer (a forward patches floor(maxBatch / prompts)
   * consecutive patch indices; see patchForwardsPerLayer). For splitting a sweep into shards that run
   * exactly the whole sweep's forwards, so each number is the one the whole sweep computes. The rows
   * of `values` (and `normalised`) then hold only those patch indices, flat in sweep order ('head_pos' too).
   */
  forwards?: [number, number];
}

export function hookNameOf(act: PatchAct, layer: number): BlockHookName {
  return `blocks.${layer}.${HOOK[act]}`;
}

/** Number of heads along the patched axis (KV heads for k and v). */
function headCount(model: ModelView, act: PatchAct): number {
  return act === 'k' || act === 'v' ? model.cfg.n_kv_heads : model.cfg.n_heads;
}

interface Index {
  pos?: number;
  head?: number;
}

function indicesFor(model: ModelView, act: PatchAct, by: PatchBy, T: number): Index[] {
  const isBlock = BLOCK_ACTS.includes(act);
  if (!(act in HOOK)) throw new ValueError('act', expectedFound(Object.keys(HOOK).join(' | '), act));
  if (isBlock && by !== 'pos') throw new ValueError('by', expectedFound(`"pos" for ${act}`, by));
  if (!isBlock && by !== 'head' && by !== 'head_pos') throw new ValueError('by', expectedFound(`"head" or "head_pos" for ${act}`, by));
  if (act === 'resid_mid' && model.cfg.parallel_attn_mlp) throw new ValueError('act', 'resid_mid does not exist in a parallel-residual model');
  const H = headCount(model, act);
  const out: Index[] = [];
  if (by === 'pos') for (let p = 0; p < T; p++) out.push({ pos: p });
  else if (by === 'head') for (let h = 0; h < H; h++) out.push({ head: h });
  else for (let p = 0; p < T; p++) for (let h = 0; h < H; h++) out.push({ pos: p, head: h });
  return out;
}

function layersOf(model: ModelView, layers: number[] | undefined): number[] {
  const L = model.cfg.n_layers;
  const out = layers ?? Array.from({ length: L }, (_, l) => l);
  out.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= L) throw new ValueError(`layers[${i}]`, expectedFound(`a layer in [0, ${L})`, l));
  });
  return out;
}

/**
 * 0/1 mask selecting, for patch index i (rows i*N .. i*N+N-1), where the clean activation goes.
 * Shapes broadcast against the activation: [P*N, T, 1] (block), [P*N, T|1, H, 1] (q/k/v/z), [P*N, H, T|1, 1] (pattern).
 */
function patchMask(act: PatchAct, idx: Index[], N: number, T: number, H: number): tf.Tensor {
  const P = idx.length;
  if (BLOCK_ACTS.includes(act)) {
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

/** f() in a tidy, then dispose t (also when f throws). */
export function disposeAfter<R extends tf.Tensor>(t: tf.Tensor, f: () => R): R {
  try {
    return tf.tidy(f);
  } finally {
    t.dispose();
  }
}

/** a + mask * (clean - a): the clean activation where the mask is 1. */
export function blend(a: tf.Tensor, mask: tf.Tensor, clean: tf.Tensor): tf.Tensor {
  return tf.add(a, tf.mul(mask, tf.sub(clean, a)));
}

/** A cached run of the clean or corrupted tokens, with the metric at the read positions. */
async function baselineRun(model: ModelView, p: PatchingProblem, which: 'clean' | 'corrupted', names: string[]): Promise<{ metric: number; cache: ActivationCache }> {
  const { logits, cache } = await model.runWithCache(which === 'clean' ? p.clean : p.corrupted, {
    attentionMask: p.attentionMask,
    namesFilter: names,
    logitPositions: p.readPositions,
  });
  try {
    return { metric: (await readChunks([disposeAfter(logits, () => metricOfReadLogits(p, logits))]))[0], cache };
  } catch (e) {
    cache.dispose();
    throw e;
  }
}

/**
 * The clean and corrupted baseline runs of a sweep: their metrics and caches of the named activations
 * (the caller disposes both caches; nothing is left behind when a run fails).
 */
export async function baselineRuns(model: ModelView, p: PatchingProblem, cleanNames: string[], corruptedNames: string[]) {
  const clean = await baselineRun(model, p, 'clean', cleanNames);
  try {
    return { clean, corrupted: await baselineRun(model, p, 'corrupted', corruptedNames) };
  } catch (e) {
    clean.cache.dispose();
    throw e;
  }
}

/** Concatenate per-chunk metric tensors, read them back once and free them. */
export async function readChunks(parts: tf.Tensor[]): Promise<Float32Array> {
  if (!parts.length) return new Float32Array(0);
  const all = parts.length === 1 ? parts[0] : tf.concat(parts);
  try {
    return (await all.data()) as Float32Array;
  } finally {
    tf.dispose([all, ...parts]);
  }
}

function maxBatchOf(opts: PatchOptions): number {
  const maxBatch = opts.maxBatch ?? 256;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new ValueError('maxBatch', expectedFound('a positive integer', maxBatch));
  return maxBatch;
}

/** Patched forwards per layer of `patchSweep` (the unit of `opts.forwards`). */
export function patchForwardsPerLayer(model: ModelView, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: Pick<PatchOptions, 'maxBatch'> = {}): number {
  return Math.ceil(indicesFor(model, act, by, p.clean[0].length).length / Math.max(1, Math.floor(maxBatchOf(opts) / p.clean.length)));
}

/** The patch indices [start, end) that `opts.forwards` selects (all when absent). */
function forwardRange(opts: PatchOptions, perChunk: number, n: number): [number, number] {
  if (!opts.forwards) return [0, n];
  const [a, b] = opts.forwards;
  const count = Math.ceil(n / perChunk);
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b <= a || b > count) throw new ValueError('forwards', expectedFound(`[from, to) with 0 <= from < to <= ${count}`, opts.forwards));
  return [a * perChunk, Math.min(n, b * perChunk)];
}

/** Batched activation patching of one activation over all layers (or `opts.layers`). */
export async function patchSweep(model: ModelView, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions = {}): Promise<PatchResult> {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const layers = layersOf(model, opts.layers);
  const maxBatch = maxBatchOf(opts);
  const idx = indicesFor(model, act, by, T);
  const H = headCount(model, act);
  const perChunk = Math.max(1, Math.floor(maxBatch / N));
  const [from, to] = forwardRange(opts, perChunk, idx.length);
  const names = layers.map((l) => hookNameOf(act, l));
  const residNames = layers.map((l) => hookNameOf('resid_pre', l));
  const { clean: cleanRun, corrupted: corrRun } = await baselineRuns(model, p, names, residNames);
  const values: number[][] = [];
  let forwards = 0;
  const total = layers.length * Math.ceil((to - from) / perChunk);
  const reads = Array.from({ length: perChunk * N }, (_, r) => p.readPositions[r % N]);
  try {
    for (const [li, layer] of layers.entries()) {
      const parts: tf.Tensor[] = [];
      try {
        for (let c0 = from; c0 < to; c0 += perChunk) {
          const chunk = idx.slice(c0, Math.min(to, c0 + perChunk));
          const P = chunk.length;
          const held = tf.tidy(() => {
            const mask = patchMask(act, chunk, N, T, H);
            const cleanAct = tileRows(cleanRun.cache.get(names[li]), P);
            const corr = tileRows(corrRun.cache.get(residNames[li]), P);
            return { mask, cleanAct, residual: act === 'resid_pre' ? blend(corr, mask, cleanAct) : corr };
          });
          try {
            const logits = await model.forward(repeatRows(p.corrupted, P), {
              attentionMask: repeatRows(p.attentionMask, P),
              startAtLayer: layer,
              residual: held.residual,
              fwdHooks: act === 'resid_pre' ? [] : [[names[li], (a) => blend(a, held.mask, held.cleanAct)]],
              logitPositions: reads.slice(0, P * N),
            });
            parts.push(disposeAfter(logits, () => p.metric(tf.reshape(logits, [P, N, logits.shape[2]]) as tf.Tensor3D)));
          } finally {
            tf.dispose([held.mask, held.cleanAct, held.residual]);
          }
          forwards++;
          opts.onProgress?.(forwards, total);
        }
      } catch (e) {
        tf.dispose(parts);
        throw e;
      }
      values.push(Array.from(await readChunks(parts)));
    }
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
  return patchResultFromRows(act, by, values, cleanRun.metric, corrRun.metric, p.metricName, forwards + 2, T, H, !!opts.forwards);
}

/** x mapped elementwise through f (nested arrays keep their shape). */
function mapNested<T extends number[] | number[][] | number[][][]>(x: T, f: (v: number) => number): T {
  return (x as unknown[]).map((v) => (Array.isArray(v) ? mapNested(v as number[], f) : f(v as number))) as T;
}

/** (v - corrupted) / (clean - corrupted) elementwise over nested sweep values. */
export function normaliseValues<T extends number[][] | number[][][]>(values: T, clean: number, corrupted: number): T {
  return mapNested(values, (v) => (v - corrupted) / (clean - corrupted));
}

/**
 * The PatchResult of flat per-layer metric rows (reshaped to [pos][head] for 'head_pos' unless
 * `keepFlat`, a part of a layer); also how a sweep assembled from shards becomes a result.
 */
export function patchResultFromRows(
  act: PatchAct, by: PatchBy, flat: number[][], clean: number, corrupted: number,
  metricName: string, forwards: number, T: number, H: number, keepFlat = false,
): PatchResult {
  const values = by === 'head_pos' && !keepFlat ? flat.map((row) => Array.from({ length: T }, (_, t) => row.slice(t * H, (t + 1) * H))) : flat;
  const normalised = normaliseValues(values, clean, corrupted);
  return { act, by, values, normalised, clean, corrupted, metricName, forwards };
}

/**
 * The TransformerLens-style loop: one full forward of the corrupted tokens per (layer, index) with the
 * clean activation patched in by a hook, reading each metric. Reference and benchmark baseline.
 */
export async function patchLoop(model: ModelView, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: PatchOptions = {}): Promise<PatchResult> {
  const T = p.clean[0].length;
  const N = p.clean.length;
  const layers = layersOf(model, opts.layers);
  const idx = indicesFor(model, act, by, T);
  const H = headCount(model, act);
  const names = layers.map((l) => hookNameOf(act, l));
  const cleanRun = await baselineRun(model, p, 'clean', names);
  const values: number[][] = layers.map(() => []);
  let corrupted = NaN;
  let forwards = 0;
  const total = layers.length * idx.length;
  try {
    corrupted = await runMetric(model, p, 'corrupted');
    for (const [li, name] of names.entries()) {
      for (const ix of idx) {
        const mask = patchMask(act, [ix], N, T, H);
        try {
          const cleanAct = cleanRun.cache.get(name);
          const logits = await model.forward(p.corrupted, { attentionMask: p.attentionMask, logitPositions: p.readPositions, fwdHooks: [[name, (a) => blend(a, mask, cleanAct)]] });
          values[li].push((await readChunks([disposeAfter(logits, () => metricOfReadLogits(p, logits))]))[0]);
        } finally {
          mask.dispose();
        }
        forwards++;
        opts.onProgress?.(forwards, total);
      }
    }
  } finally {
    cleanRun.cache.dispose();
  }
  return patchResultFromRows(act, by, values, cleanRun.metric, corrupted, p.metricName, forwards + 2, T, H);
}

// ------------------------------------------------------------------ TransformerLens-named wrappers

export const actPatchResidPre = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'resid_pre', 'pos', o);
export const actPatchResidMid = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'resid_mid', 'pos', o);
export const actPatchAttnOut = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'attn_out', 'pos', o);
export const actPatchMlpOut = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'mlp_out', 'pos', o);
export const actPatchHeadOutAllPos = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'z', 'head', o);
export const actPatchHeadOutByPos = (m: ModelView, p: PatchingProblem, o?: PatchOptions) => patchSweep(m, p, 'z', 'head_pos', o);

/** One sweep per activation, in order, keyed by activation. */
async function sweepEach<A extends PatchAct>(m: ModelView, p: PatchingProblem, acts: readonly A[], by: PatchBy, o?: PatchOptions): Promise<Record<A, PatchResult>> {
  const out = {} as Record<A, PatchResult>;
  for (const a of acts) out[a] = await patchSweep(m, p, a, by, o);
  return out;
}

/** [resid_pre, attn_out, mlp_out] by [layer, pos] (TransformerLens get_act_patch_block_every). */
export function actPatchBlockEvery(m: ModelView, p: PatchingProblem, o?: PatchOptions): Promise<Record<'resid_pre' | 'attn_out' | 'mlp_out', PatchResult>> {
  return sweepEach(m, p, ['resid_pre', 'attn_out', 'mlp_out'] as const, 'pos', o);
}

/** [z, q, k, v, pattern] per head over all positions (get_act_patch_attn_head_all_pos_every). */
export function actPatchAttnHeadAllPosEvery(m: ModelView, p: PatchingProblem, o?: PatchOptions): Promise<Record<'z' | 'q' | 'k' | 'v' | 'pattern', PatchResult>> {
  return sweepEach(m, p, ['z', 'q', 'k', 'v', 'pattern'] as const, 'head', o);
}

/** [z, q, k, v, pattern] per head and position (get_act_patch_attn_head_by_pos_every; pattern by query position). */
export function actPatchAttnHeadByPosEvery(m: ModelView, p: PatchingProblem, o?: PatchOptions): Promise<Record<'z' | 'q' | 'k' | 'v' | 'pattern', PatchResult>> {
  return sweepEach(m, p, ['z', 'q', 'k', 'v', 'pattern'] as const, 'head_pos', o);
}

/** Head-patching ranking: normalised effect of patching each head's output over all positions. */
export async function headPatchingScores(m: ModelView, p: PatchingProblem, o?: PatchOptions): Promise<HeadScores> {
  return headPatchingScoresOf(m, p, await patchSweep(m, p, 'z', 'head', o));
}

/** The head-patching ranking of a finished z-by-head sweep (also one assembled from shards). */
export function headPatchingScoresOf(m: Pick<ModelView, 'name'>, p: PatchingProblem, r: PatchResult): HeadScores {
  return makeHeadScores('head-patching', r.normalised as number[][], { act: 'z', positions: 'all', metric: r.metricName, clean: r.clean, corrupted: r.corrupted }, {
    model: m.name,
    data: { task: p.task ?? 'custom', prompts: p.clean.length },
  });
}
