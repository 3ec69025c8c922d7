/**
 * Token-space circuits of attention heads (Elhage et al., "A Mathematical Framework for Transformer
 * Circuits"): the OV circuit W_E W_V W_O W_U and the QK circuit W_E W_Q W_K^T W_E^T, both
 * d_vocab x d_vocab and rank <= d_head, kept factored. Dense versions exist for small vocabularies
 * only, behind an explicit size guard. Layer norms and positional embeddings are ignored (the
 * usual "direct path" simplification); fold LN into the weights first if you want it included.
 */
import * as tf from '@tensorflow/tfjs';
import type { Matrix } from 'ml-matrix';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { FactoredMatrix, checkHead, getParam, headCountsOf, readMatrix, type Params } from './factored.js';

/** A model (anything with .params and optionally .cfg) or a bare params record. */
export type WeightsSource =
  | Params
  | { params: Params; cfg?: { n_layers?: number; n_heads?: number; model_name?: string; name?: string } & Record<string, unknown> };

export interface ResolvedWeights {
  params: Params;
  nLayers: number;
  nHeads: number;
  modelName?: string;
  /**
   * Frees the float32 copies of half-precision weights that `params` decoded on first use (a model
   * loaded on WebGPU keeps F16/BF16 matrices packed in `halfParams`); a no-op for float32 weights.
   */
  release(): void;
}

interface HalfSource {
  params: Params;
  halfParams?: Record<string, { shape: number[] }>;
  weight?: (name: string) => tf.Tensor;
}

/**
 * The weights of a model as one float32 record: its float32 `params` as they are, and each weight
 * it keeps in half precision decoded to float32 the first time it is read (kept until `release`).
 */
function float32View(m: HalfSource): { params: Params; release: () => void } {
  const half = new Set(m.halfParams ? Object.keys(m.halfParams) : []);
  const weight = m.weight;
  if (!half.size || typeof weight !== 'function') return { params: m.params, release: () => {} };
  const decoded = new Map<string, tf.Tensor>();
  const params = new Proxy(m.params, {
    get(target, key, receiver) {
      if (typeof key === 'string' && half.has(key) && !Object.prototype.hasOwnProperty.call(target, key)) {
        let t = decoded.get(key);
        if (!t) {
          t = tf.keep(weight.call(m, key));
          decoded.set(key, t);
        }
        return t;
      }
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      return Reflect.has(target, key) || (typeof key === 'string' && half.has(key));
    },
  });
  return {
    params,
    release: () => {
      tf.dispose([...decoded.values()]);
      decoded.clear();
    },
  };
}

/** Resolve the weights, run `fn` on them and free the decoded half-precision copies afterwards. */
export async function withWeights<R>(src: WeightsSource, fn: (w: ResolvedWeights) => Promise<R> | R, where = 'model'): Promise<R> {
  const w = resolveWeights(src, where);
  try {
    return await fn(w);
  } finally {
    w.release();
  }
}

function isParams(x: unknown): x is Params {
  return !!x && typeof x === 'object' && !('params' in (x as object) && !((x as { params: unknown }).params instanceof tf.Tensor));
}

/**
 * Find params, number of layers and heads (from cfg when given, otherwise from the weight names).
 * Weights a model keeps in half precision are decoded to float32 when first read; call `release()`
 * when done (or use `withWeights`).
 */
export function resolveWeights(src: WeightsSource, where = 'model'): ResolvedWeights {
  if (!src || typeof src !== 'object') throw new ValueError(where, expectedFound('a model or a params record', typeof src));
  const cfg = isParams(src) ? undefined : (src as { cfg?: Record<string, unknown> }).cfg;
  const raw: Params = isParams(src) ? src : (src as { params: Params }).params;
  if (!raw || typeof raw !== 'object') throw new ValueError(`${where}.params`, expectedFound('a params record', typeof raw));
  // layers and heads from the shapes alone: nothing is decoded until an analysis reads a weight
  const half = isParams(src) ? undefined : (src as HalfSource).halfParams;
  const counts = countHeads((name) => raw[name]?.shape ?? half?.[name]?.shape, cfg, where);
  const { params, release } = isParams(src) ? { params: raw, release: () => {} } : float32View(src as HalfSource);
  return { ...counts, params, modelName: modelNameOf(src, cfg), release };
}

function modelNameOf(src: WeightsSource, cfg: Record<string, unknown> | undefined): string | undefined {
  const name = cfg?.model_name ?? cfg?.name ?? (isParams(src) ? undefined : (src as { name?: unknown }).name);
  return typeof name === 'string' ? name : undefined;
}

function countHeads(shapeOf: (name: string) => number[] | undefined, cfg: Record<string, unknown> | undefined, where: string): { nLayers: number; nHeads: number } {
  let nLayers = typeof cfg?.n_layers === 'number' ? (cfg.n_layers as number) : 0;
  if (!nLayers) {
    while (shapeOf(`blocks.${nLayers}.attn.W_Q`)) nLayers++;
  }
  if (!nLayers) throw new ValueError(`${where}.params`, expectedFound("'blocks.0.attn.W_Q' and following layers", 'no attention weights'));
  const nHeads = headCountsOf(shapeOf, 0).nHeads;
  for (let l = 1; l < nLayers; l++) {
    const h = headCountsOf(shapeOf, l).nHeads;
    if (h !== nHeads) throw new ShapeError(`blocks.${l}.attn.W_Q`, expectedFound(`${nHeads} heads like layer 0`, h));
  }
  return { nLayers, nHeads };
}

/** W_E [d_vocab, d_model] and W_U [d_model, d_vocab], checked against each other. */
export function embedUnembed(params: Params): { WE: tf.Tensor2D; WU: tf.Tensor2D; dVocab: number; dModel: number } {
  const WE = getParam(params, 'embed.W_E', 2) as tf.Tensor2D;
  const WU = getParam(params, 'unembed.W_U', 2) as tf.Tensor2D;
  const [dVocab, dModel] = WE.shape;
  if (WU.shape[0] !== dModel || WU.shape[1] !== dVocab) {
    throw new ShapeError("params['unembed.W_U']", expectedFound(`[${dModel}, ${dVocab}] (W_E is [${dVocab}, ${dModel}])`, `[${WU.shape.join(', ')}]`));
  }
  return { WE, WU, dVocab, dModel };
}

function headTensor(params: Params, name: string, index: number): tf.Tensor2D {
  const t = getParam(params, name, 3);
  const [, r, c] = t.shape as [number, number, number];
  return t.slice([index, 0, 0], [1, r, c]).reshape([r, c]) as tf.Tensor2D;
}

/** Build the two factors with tf (on the backend), read them asynchronously, free them. */
async function factoredOf(make: () => [tf.Tensor2D, tf.Tensor2D], where: string): Promise<FactoredMatrix> {
  const [left, right] = tf.tidy(make);
  try {
    const [A, B] = await Promise.all([readMatrix(left, `${where} left factor`), readMatrix(right, `${where} right factor`)]);
    return new FactoredMatrix(A, B);
  } finally {
    tf.dispose([left, right]);
  }
}

/**
 * Token-space OV circuit W_E W_V W_O W_U (d_vocab x d_vocab, rank <= d_head), factored as
 * (W_E W_V) [d_vocab x d_head] times (W_O W_U) [d_head x d_vocab]. Entry [s][t]: how much attending
 * to source token s raises the logit of token t.
 */
export function ovCircuit(src: WeightsSource, layer: number, head: number): Promise<FactoredMatrix> {
  return withWeights(src, ({ params }) => ovFactors(params, layer, head));
}

function ovFactors(params: Params, layer: number, head: number): Promise<FactoredMatrix> {
  const { kv } = checkHead(params, layer, head);
  const { WE, WU } = embedUnembed(params);
  return factoredOf(() => [tf.matMul(WE, headTensor(params, `blocks.${layer}.attn.W_V`, kv)), tf.matMul(headTensor(params, `blocks.${layer}.attn.W_O`, head), WU)], 'ovCircuit');
}

/**
 * Token-space QK circuit W_E W_Q W_K^T W_E^T (query token rows, key token columns), factored as
 * (W_E W_Q) [d_vocab x d_head] times (W_E W_K)^T [d_head x d_vocab].
 */
export function qkCircuit(src: WeightsSource, layer: number, head: number): Promise<FactoredMatrix> {
  return withWeights(src, ({ params }) => qkFactors(params, layer, head));
}

function qkFactors(params: Params, layer: number, head: number): Promise<FactoredMatrix> {
  const { kv } = checkHead(params, layer, head);
  const { WE } = embedUnembed(params);
  return factoredOf(() => [tf.matMul(WE, headTensor(params, `blocks.${layer}.attn.W_Q`, head)), tf.matMul(headTensor(params, `blocks.${layer}.attn.W_K`, kv), WE, true, true)], 'qkCircuit');
}

export interface FullCircuitOptions {
  /** Largest vocabulary for which a dense d_vocab x d_vocab matrix is built (default 4096, i.e. 16.7M entries). */
  maxVocab?: number;
}

function guardVocab(params: Params, opts: FullCircuitOptions, where: string): void {
  const maxVocab = opts.maxVocab ?? 4096;
  const { dVocab } = embedUnembed(params);
  if (dVocab > maxVocab) {
    throw new ValueError(
      where,
      `a dense ${dVocab} x ${dVocab} matrix is too large: ${expectedFound(`d_vocab <= maxVocab (${maxVocab})`, dVocab)}; ` +
        'use the factored ovCircuit/qkCircuit, or raise opts.maxVocab',
    );
  }
}

/** Dense token x token OV circuit W_E W_V W_O W_U (small vocabularies only; see opts.maxVocab). */
export async function ovFullCircuit(src: WeightsSource, layer: number, head: number, opts: FullCircuitOptions = {}): Promise<Matrix> {
  return withWeights(src, async ({ params }) => {
    guardVocab(params, opts, 'ovFullCircuit');
    return (await ovFactors(params, layer, head)).AB;
  });
}

/** Dense token x token QK circuit W_E W_Q W_K^T W_E^T (rows: query token, columns: key token; small vocabularies only). */
export async function qkFullCircuit(src: WeightsSource, layer: number, head: number, opts: FullCircuitOptions = {}): Promise<Matrix> {
  return withWeights(src, async ({ params }) => {
    guardVocab(params, opts, 'qkFullCircuit');
    return (await qkFactors(params, layer, head)).AB;
  });
}
