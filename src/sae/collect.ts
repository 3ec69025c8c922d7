/**
 * Activation collection for SAEs: per-head outputs z_h W_O^h (d_model) averaged over the real
 * positions of each prompt (or taken at its last real position), and any hook's activations for
 * residual-stream SAEs. Works with any model exposing the HookedTransformer surface used here.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookName } from '../hooks/names.js';

/** The part of a HookedTransformer these functions use. */
export interface ActivationModel {
  cfg: { n_layers: number; n_heads: number; d_model: number; d_head: number };
  params: Record<string, tf.Tensor>;
  runWithCache(
    tokens: tf.Tensor2D | number[][],
    opts?: { attentionMask?: tf.Tensor2D; namesFilter?: HookName[] | ((name: string) => boolean) },
  ): { logits: tf.Tensor; cache: { get(name: string): tf.Tensor; dispose(): void } };
}

export type TokensInput = tf.Tensor2D | number[][];
export type MaskInput = tf.Tensor2D | number[][];
export type PositionMode = 'mean' | 'last';
export type HeadRef = readonly [number, number] | string;

function tokenShape(tokens: TokensInput): [number, number] {
  if (tokens instanceof tf.Tensor) {
    if (tokens.rank !== 2) throw new ShapeError('tokens', expectedFound('[batch, pos]', tokens.shape));
    return [tokens.shape[0], tokens.shape[1]];
  }
  if (!Array.isArray(tokens) || tokens.length === 0 || !Array.isArray(tokens[0])) {
    throw new ShapeError('tokens', expectedFound('a non-empty number[][] or a [batch, pos] tensor', typeof tokens));
  }
  const p = tokens[0].length;
  tokens.forEach((row, i) => {
    if (!Array.isArray(row) || row.length !== p) throw new ShapeError(`tokens[${i}]`, expectedFound(`${p} ids`, Array.isArray(row) ? row.length : typeof row));
  });
  return [tokens.length, p];
}

/** The mask as rows of 0/1 numbers (all ones when absent), checked against the tokens' shape. */
function maskRows(mask: MaskInput | undefined, b: number, p: number): number[][] {
  if (mask === undefined) return Array.from({ length: b }, () => new Array<number>(p).fill(1));
  const rows = mask instanceof tf.Tensor ? (mask.arraySync() as number[][]) : mask;
  if (!Array.isArray(rows) || rows.length !== b || rows.some((r) => !Array.isArray(r) || r.length !== p)) {
    const shape = mask instanceof tf.Tensor ? mask.shape : [rows?.length];
    throw new ShapeError('attentionMask', expectedFound(`[${b}, ${p}] like the tokens`, shape));
  }
  rows.forEach((r, i) => {
    if (!r.some((v) => v !== 0)) throw new ValueError(`attentionMask[${i}]`, 'has no real position (all zeros)');
    r.forEach((v, j) => {
      if (v !== 0 && v !== 1) throw new ValueError(`attentionMask[${i}][${j}]`, expectedFound('0 or 1', v));
    });
  });
  return rows;
}

/** Position weights [b, p]: uniform over real positions ('mean') or one-hot at the last real one. */
function positionWeights(rows: number[][], mode: PositionMode): number[][] {
  return rows.map((r) => {
    if (mode === 'mean') {
      const s = r.reduce((a, v) => a + v, 0);
      return r.map((v) => v / s);
    }
    let last = -1;
    r.forEach((v, j) => {
      if (v) last = j;
    });
    return r.map((_, j) => (j === last ? 1 : 0));
  });
}

function sliceTokens(tokens: TokensInput, start: number, size: number): TokensInput {
  if (tokens instanceof tf.Tensor) return tf.slice(tokens, [start, 0], [size, tokens.shape[1]]);
  return tokens.slice(start, start + size);
}

/** Parse and check a head list; returns unique heads sorted layer-major. */
export function normaliseHeads(heads: ReadonlyArray<HeadRef> | undefined, nLayers: number, nHeads: number): Array<[number, number]> {
  if (heads === undefined) {
    const all: Array<[number, number]> = [];
    for (let l = 0; l < nLayers; l++) for (let h = 0; h < nHeads; h++) all.push([l, h]);
    return all;
  }
  const seen = new Set<number>();
  heads.forEach((ref, i) => {
    let l: number;
    let h: number;
    if (typeof ref === 'string') {
      const m = /^L?(\d+)[.H](\d+)$/.exec(ref.trim());
      if (!m) throw new ValueError(`heads[${i}]`, expectedFound('"L.H" (e.g. "5.1") or "L5H1"', ref));
      l = Number(m[1]);
      h = Number(m[2]);
    } else {
      [l, h] = ref;
    }
    if (!(Number.isInteger(l) && l >= 0 && l < nLayers && Number.isInteger(h) && h >= 0 && h < nHeads)) {
      throw new ValueError(`heads[${i}]`, expectedFound(`a head inside ${nLayers} layers x ${nHeads} heads`, ref));
    }
    seen.add(l * nHeads + h);
  });
  if (seen.size === 0) throw new ValueError('heads', expectedFound('at least one head', 'an empty list'));
  return [...seen].sort((a, b) => a - b).map((i) => [Math.floor(i / nHeads), i % nHeads]);
}

export interface CollectHeadsOptions {
  /** Heads to collect ([layer, head] or "L.H"); default all, layer-major. */
  heads?: ReadonlyArray<HeadRef>;
  position?: PositionMode;
  attentionMask?: MaskInput;
  /** Prompts per forward pass (default 16). */
  batchSize?: number;
}

/**
 * Run the model over `tokens` in chunks of `bs` prompts, caching `names`, and stack what `read` makes of
 * each chunk's cache (inside a tidy) along the batch axis. Nothing is left allocated on error.
 */
function collectChunks<T extends tf.Tensor>(
  model: ActivationModel,
  tokens: TokensInput,
  rows: number[][],
  masked: boolean,
  bs: number,
  names: HookName[],
  read: (cache: { get(name: string): tf.Tensor }, start: number, size: number) => T,
): T {
  const p = rows[0]?.length ?? 0;
  const chunks: T[] = [];
  try {
    for (let start = 0; start < rows.length; start += bs) {
      const size = Math.min(bs, rows.length - start);
      const tok = sliceTokens(tokens, start, size);
      const maskT = masked ? tf.tensor2d(rows.slice(start, start + size), [size, p], 'int32') : undefined;
      try {
        const { logits, cache } = model.runWithCache(tok, { attentionMask: maskT, namesFilter: names });
        try {
          chunks.push(tf.tidy(() => read(cache, start, size)));
        } finally {
          logits.dispose();
          cache.dispose();
        }
      } finally {
        maskT?.dispose();
        if (tok instanceof tf.Tensor && tok !== tokens) tok.dispose();
      }
    }
    if (chunks.length === 1) return chunks[0];
    const out = tf.concat(chunks, 0) as T;
    chunks.forEach((c) => c.dispose());
    return out;
  } catch (e) {
    chunks.forEach((c) => c.dispose());
    throw e;
  }
}

/**
 * Outputs of several heads, [batch, nHeadsSelected, d_model], heads in layer-major order:
 * for each prompt, z_h (hook_z) averaged over real positions (or at the last real position)
 * times W_O^h. The bias b_O is not included (as TransformerLens hook_result).
 */
export function collectHeadOutputsMulti(model: ActivationModel, tokens: TokensInput, opts: CollectHeadsOptions = {}): tf.Tensor3D {
  const { n_layers: L, n_heads: H, d_model: D } = model.cfg;
  const heads = normaliseHeads(opts.heads, L, H);
  const mode = opts.position ?? 'mean';
  if (mode !== 'mean' && mode !== 'last') throw new ValueError('position', expectedFound("'mean' or 'last'", mode));
  const [b, p] = tokenShape(tokens);
  const rows = maskRows(opts.attentionMask, b, p);
  const weights = positionWeights(rows, mode);
  const bs = opts.batchSize ?? 16;
  if (!(Number.isInteger(bs) && bs > 0)) throw new ValueError('batchSize', expectedFound('a positive integer', bs));
  const layers = [...new Set(heads.map(([l]) => l))];
  for (const l of layers) {
    const w = model.params[`blocks.${l}.attn.W_O`];
    if (!w || w.rank !== 3 || w.shape[0] !== H || w.shape[2] !== D) {
      throw new ShapeError(`params['blocks.${l}.attn.W_O']`, expectedFound(`[${H}, d_head, ${D}]`, w ? w.shape : 'missing'));
    }
  }
  const names = layers.map((l) => `blocks.${l}.attn.hook_z` as HookName);
  return collectChunks(model, tokens, rows, opts.attentionMask !== undefined, bs, names, (cache, start, size) => {
    const wPos = tf.tensor2d(weights.slice(start, start + size), [size, p], 'float32');
    const parts: tf.Tensor[] = [];
    for (const l of layers) {
      const z = cache.get(`blocks.${l}.attn.hook_z`);
      if (z.rank !== 4 || z.shape[0] !== size || z.shape[1] !== p || z.shape[2] !== H) {
        throw new ShapeError(`blocks.${l}.attn.hook_z`, expectedFound(`[${size}, ${p}, ${H}, d_head]`, z.shape));
      }
      const dh = z.shape[3];
      // weighted sum over positions: [b, H, dh]
      const zbar = tf.sum(tf.mul(z, tf.reshape(wPos, [size, p, 1, 1])), 1);
      const hs = heads.filter(([hl]) => hl === l).map(([, h]) => h);
      const idx = tf.tensor1d(hs, 'int32');
      const zsel = tf.transpose(tf.gather(zbar, idx, 1), [1, 0, 2]); // [hs, b, dh]
      const wo = tf.gather(model.params[`blocks.${l}.attn.W_O`], idx, 0) as tf.Tensor3D; // [hs, dh, D]
      if (wo.shape[1] !== dh) throw new ShapeError(`blocks.${l}.attn.W_O`, expectedFound(`d_head ${dh} like hook_z`, wo.shape[1]));
      parts.push(tf.transpose(tf.matMul(zsel as tf.Tensor3D, wo), [1, 0, 2])); // [b, hs, D]
    }
    return (parts.length === 1 ? parts[0] : tf.concat(parts, 1)) as tf.Tensor3D;
  });
}

/** One head's output z_h W_O^h per prompt, [batch, d_model] (mean over real positions, or last). */
export function collectHeadOutputs(
  model: ActivationModel,
  tokens: TokensInput,
  opts: { layer: number; head: number; position?: PositionMode; attentionMask?: MaskInput; batchSize?: number },
): tf.Tensor2D {
  const x = collectHeadOutputsMulti(model, tokens, {
    heads: [[opts.layer, opts.head]],
    position: opts.position,
    attentionMask: opts.attentionMask,
    batchSize: opts.batchSize,
  });
  const out = tf.reshape(x, [x.shape[0], x.shape[2]]) as tf.Tensor2D;
  x.dispose();
  return out;
}

/**
 * Activations of one hook for residual-stream (or any [batch, pos, d]) SAEs: every real position
 * as a row ('all', default), or per prompt the mean over real positions / the last real one.
 * Rank-4 activations [batch, pos, head, d_head] are flattened to [batch, pos, head * d_head].
 */
export function collectActivations(
  model: ActivationModel,
  tokens: TokensInput,
  hookName: HookName,
  opts: { attentionMask?: MaskInput; position?: 'all' | PositionMode; batchSize?: number } = {},
): tf.Tensor2D {
  const mode = opts.position ?? 'all';
  if (mode !== 'all' && mode !== 'mean' && mode !== 'last') throw new ValueError('position', expectedFound("'all', 'mean' or 'last'", mode));
  const [b, p] = tokenShape(tokens);
  const rows = maskRows(opts.attentionMask, b, p);
  const bs = opts.batchSize ?? 16;
  if (!(Number.isInteger(bs) && bs > 0)) throw new ValueError('batchSize', expectedFound('a positive integer', bs));
  return collectChunks(model, tokens, rows, opts.attentionMask !== undefined, bs, [hookName], (cache, start, size) => {
    let a = cache.get(hookName);
    const sh = a.shape as number[];
    if (a.rank === 4) a = tf.reshape(a, [sh[0], sh[1], sh[2] * sh[3]]);
    if (a.rank !== 3 || a.shape[0] !== size || a.shape[1] !== p) {
      throw new ShapeError(hookName, expectedFound(`[${size}, ${p}, d]`, a.shape));
    }
    const sub = rows.slice(start, start + size);
    if (mode === 'all') {
      const flat: number[] = [];
      sub.forEach((r, i) => r.forEach((v, j) => v && flat.push(i * p + j)));
      const a2 = tf.reshape(a, [size * p, (a.shape as number[])[2]]);
      return tf.gather(a2, tf.tensor1d(flat, 'int32')) as tf.Tensor2D;
    }
    const w = tf.tensor2d(positionWeights(sub, mode), [size, p], 'float32');
    return tf.sum(tf.mul(a, tf.expandDims(w, 2)), 1) as tf.Tensor2D;
  });
}
