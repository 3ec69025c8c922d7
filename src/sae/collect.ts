/**
 * Activation collection for SAEs: per-head outputs z_h W_O^h (d_model) averaged over the real positions
 * of each prompt (or taken at its last real position), as the discrete-SAE authors collect them
 * (sae-circuits data/data_utils.py lines 41-56: TransformerLens `stack_head_results`, then the mean over
 * positions), and any hook's activations for residual-stream SAEs.
 *
 * Every function runs the model chunk by chunk (forEachChunk), keeps the result on the device and reads
 * nothing back but the batch itself.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookName } from '../hooks/names.js';
import { forEachChunk, readBatch, type Batch, type HostBatch, type ModelView } from '../model/view.js';
import { parseHead } from '../util/grid.js';

/** How each prompt becomes one row: the mean over its real positions, or its last real position. */
export type PositionMode = 'mean' | 'last';
/** A head as "L.H", "L9H6" or [layer, head]. */
export type HeadRef = readonly [number, number] | string;

/** Parse and check a head list; returns unique heads sorted layer-major (all heads when absent). */
export function normaliseHeads(heads: ReadonlyArray<HeadRef> | undefined, nLayers: number, nHeads: number): Array<[number, number]> {
  if (heads === undefined) {
    const all: Array<[number, number]> = [];
    for (let l = 0; l < nLayers; l++) for (let h = 0; h < nHeads; h++) all.push([l, h]);
    return all;
  }
  if (!Array.isArray(heads) || heads.length === 0) throw new ValueError('heads', expectedFound('at least one head', JSON.stringify(heads)));
  const seen = new Set(heads.map((ref, i) => {
    const [l, h] = parseHead(ref, { n_layers: nLayers, n_heads: nHeads }, `heads[${i}]`);
    return l * nHeads + h;
  }));
  return [...seen].sort((a, b) => a - b).map((i) => [Math.floor(i / nHeads), i % nHeads]);
}

/** Position weights [b][p]: uniform over real positions ('mean') or one-hot at the last real one. */
function positionWeights(mask: number[][], mode: PositionMode): number[][] {
  return mask.map((r, i) => {
    const last = r.lastIndexOf(1);
    if (last < 0) throw new ValueError(`attentionMask[${i}]`, 'has no real position (all zeros)');
    if (mode === 'last') return r.map((_, j) => (j === last ? 1 : 0));
    const s = r.reduce((a, v) => a + v, 0);
    return r.map((v) => v / s);
  });
}

function checkMode<T extends string>(mode: T, allowed: readonly T[]): T {
  if (!allowed.includes(mode)) throw new ValueError('position', expectedFound(allowed.map((m) => `'${m}'`).join(' or '), mode));
  return mode;
}

function checkChunk(bs: number): number {
  if (!(Number.isInteger(bs) && bs > 0)) throw new ValueError('batchSize', expectedFound('a positive integer', bs));
  return bs;
}

/**
 * Run the model over the batch in chunks of `bs` prompts, caching `names`, and stack what `read` makes
 * of each chunk's cache (inside a tidy) along the batch axis. Nothing is left allocated on error.
 */
async function collectChunks<T extends tf.Tensor>(
  model: ModelView,
  rows: HostBatch,
  masked: boolean,
  bs: number,
  names: HookName[],
  read: (cache: { get(name: string): tf.Tensor }, part: HostBatch) => T,
): Promise<T> {
  const chunks: T[] = [];
  let out: T | null = null;
  try {
    await forEachChunk(rows, bs, async (part) => {
      const { logits, cache } = await model.runWithCache(part.ids, { attentionMask: masked ? part.mask : undefined, namesFilter: names });
      try {
        chunks.push(tf.tidy(() => read(cache, part)));
      } finally {
        logits.dispose();
        cache.dispose();
      }
    });
    out = chunks.length === 1 ? chunks[0] : tf.tidy(() => tf.concat(chunks, 0) as T);
    return out;
  } finally {
    tf.dispose(chunks.filter((c) => c !== out));
  }
}

export interface CollectHeadsOptions {
  /** Heads to collect ([layer, head], "L.H" or "L9H6"); default all, layer-major. */
  heads?: ReadonlyArray<HeadRef>;
  /** 'mean' over real positions (default, the authors' choice) or the 'last' real position. */
  position?: PositionMode;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
}

/**
 * Head outputs [batch, heads, d_model], heads in layer-major order: for each prompt, hook_z averaged
 * over the real positions (or at the last real one) times W_O^h. The bias b_O is not included (as
 * TransformerLens hook_result). The tensor is the caller's to dispose.
 */
export async function collectHeadOutputs(model: ModelView, batch: Batch, opts: CollectHeadsOptions = {}): Promise<tf.Tensor3D> {
  const { n_layers: L, n_heads: H, d_model: D } = model.cfg;
  const heads = normaliseHeads(opts.heads, L, H);
  const mode = checkMode(opts.position ?? 'mean', ['mean', 'last'] as const);
  const bs = checkChunk(opts.batchSize ?? 16);
  const layers = [...new Set(heads.map(([l]) => l))];
  // W_O of the layers read, as float32 (half-precision weights are decoded once and freed at the end)
  const WO = new Map<number, tf.Tensor>();
  try {
    for (const l of layers) {
      const name = `blocks.${l}.attn.W_O`;
      const w = model.hasWeight(name) ? model.weight(name) : undefined;
      if (w) WO.set(l, w);
      if (!w || w.rank !== 3 || w.shape[0] !== H || w.shape[2] !== D) {
        throw new ShapeError(`params['${name}']`, expectedFound(`[${H}, d_head, ${D}]`, w ? w.shape : 'missing'));
      }
    }
    const rows = await readBatch(batch);
    const names = layers.map((l) => `blocks.${l}.attn.hook_z` as HookName);
    return await collectChunks(model, rows, batch.attentionMask !== undefined, bs, names, (cache, part) => {
      const [size, p] = [part.ids.length, part.ids[0].length];
      const wPos = tf.tensor2d(positionWeights(part.mask, mode), [size, p], 'float32');
      const perLayer = layers.map((l) => {
        const z = cache.get(`blocks.${l}.attn.hook_z`);
        if (z.rank !== 4 || z.shape[0] !== size || z.shape[1] !== p || z.shape[2] !== H) {
          throw new ShapeError(`blocks.${l}.attn.hook_z`, expectedFound(`[${size}, ${p}, ${H}, d_head]`, z.shape));
        }
        const zbar = tf.sum(tf.mul(z, tf.reshape(wPos, [size, p, 1, 1])), 1); // [b, H, dh]
        const idx = tf.tensor1d(heads.filter(([hl]) => hl === l).map(([, h]) => h), 'int32');
        const zsel = tf.transpose(tf.gather(zbar, idx, 1), [1, 0, 2]) as tf.Tensor3D; // [hs, b, dh]
        const wo = tf.gather(WO.get(l)!, idx, 0) as tf.Tensor3D; // [hs, dh, D]
        return tf.transpose(tf.matMul(zsel, wo), [1, 0, 2]); // [b, hs, D]
      });
      return (perLayer.length === 1 ? perLayer[0] : tf.concat(perLayer, 1)) as tf.Tensor3D;
    });
  } finally {
    tf.dispose([...WO.values()]);
  }
}

/**
 * Activations of one hook for residual-stream (or any [batch, pos, d]) SAEs: every real position as a
 * row ('all', default), or per prompt the mean over real positions / the last real one. Rank-4
 * activations [batch, pos, head, d_head] are flattened to [batch, pos, head * d_head].
 */
export async function collectActivations(
  model: ModelView,
  batch: Batch,
  hookName: HookName,
  opts: { position?: 'all' | PositionMode; batchSize?: number } = {},
): Promise<tf.Tensor2D> {
  const mode = checkMode(opts.position ?? 'all', ['all', 'mean', 'last'] as const);
  const bs = checkChunk(opts.batchSize ?? 16);
  const rows = await readBatch(batch);
  return collectChunks(model, rows, batch.attentionMask !== undefined, bs, [hookName], (cache, part) => {
    const [size, p] = [part.ids.length, part.ids[0].length];
    let a = cache.get(hookName);
    const sh = a.shape as number[];
    if (a.rank === 4) a = tf.reshape(a, [sh[0], sh[1], sh[2] * sh[3]]);
    if (a.rank !== 3 || a.shape[0] !== size || a.shape[1] !== p) throw new ShapeError(hookName, expectedFound(`[${size}, ${p}, d]`, a.shape));
    if (mode === 'all') {
      const flat: number[] = [];
      part.mask.forEach((r, i) => r.forEach((v, j) => v && flat.push(i * p + j)));
      return tf.gather(tf.reshape(a, [size * p, a.shape[2] as number]), tf.tensor1d(flat, 'int32')) as tf.Tensor2D;
    }
    const w = tf.tensor2d(positionWeights(part.mask, mode), [size, p], 'float32');
    return tf.sum(tf.mul(a, tf.expandDims(w, 2)), 1) as tf.Tensor2D;
  });
}
