/**
 * Knockouts and circuit evaluation by mean ablation (Wang et al. 2022), as the authors' code does it
 * (redwoodresearch/Easy-Transformer: easy_transformer/ioi_circuit_extraction.py do_circuit_extraction,
 * lines 265-350, with the per-template means of experiments.py EasyAblation.compute_mean, lines 424-466).
 * A knocked-out head's output z is replaced by its mean over the reference prompts (the ABC set) of the
 * same template group, position by position (prompts are left-padded, so positions are aligned from the
 * end; padding is left out of the means). A circuit node is a head, kept at every position or only at
 * given positions per prompt (the paper keeps name movers at END, induction heads at S2, ...); outside
 * its positions a circuit head is ablated like any other head.
 *
 * With F = the mean metric, M the model and C the circuit: faithfulness |F(M) - F(C)| (and F(C) / F(M));
 * completeness |F(C \ K) - F(M \ K)| for sets K of circuit heads (completeness.py lines 196-245: M \ K
 * ablates K's heads at their circuit positions only); minimality |F(C \ (K u {v})) - F(C \ K)| / F(M)
 * (minimality.py lines 240-265). Every configuration of one evaluation runs in one batched sweep.
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import type { ModelView, Batch } from '../model/view.js';
import { readBatch } from '../model/view.js';
import { repeatRows, tileRows } from '../backend/readback.js';
import { headName, parseHead } from '../util/grid.js';
import type { PatchingProblem } from './problem.js';
import { blend, disposeAfter, hookNameOf, readChunks } from './patching.js';
import type { HeadRef } from './path.js';

/** A circuit node: a head at every position, or only at `positions[prompt]` (positions in the padded batch). */
export type CircuitNode = HeadRef | { head: HeadRef; positions: number[][] };

export interface AblationMeans {
  /** Per layer, [rows, T, H, d_head]: the mean z of each target row's template group. */
  perRow: tf.Tensor4D[];
  dispose(): void;
}

/**
 * Per-group mean head outputs z over the `reference` prompts (e.g. the ABC set), expanded to one row per
 * prompt of the evaluated batch: row i gets the mean of group `groups[i]` (default: `referenceGroups`,
 * when the reference rows are the evaluated prompts' own corruptions). For IOI, the groups are
 * templateGroups(dataset) (src/data/ioi.ts).
 */
export async function templateMeans(model: ModelView, reference: Batch, opts: { referenceGroups: number[]; groups?: number[] }): Promise<AblationMeans> {
  const ref = await readBatch(reference, 'reference');
  const refGroups = opts.referenceGroups;
  const groups = opts.groups ?? refGroups;
  if (!Array.isArray(refGroups) || refGroups.length !== ref.ids.length) throw new ShapeError('referenceGroups', expectedFound(`${ref.ids.length} group ids (one per reference row)`, refGroups?.length));
  const missing = groups.filter((g) => !refGroups.includes(g));
  if (missing.length) throw new ValueError('groups', expectedFound('groups that have reference prompts to average', `no reference prompt for group ${missing[0]}`));
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => hookNameOf('z', l));
  const run = await model.runWithCache(ref.ids, { attentionMask: ref.mask, namesFilter: names });
  run.logits.dispose();
  try {
    const perRow = tf.tidy(() => {
      const ids = [...new Set(refGroups)];
      const m = tf.tensor2d(ref.mask, undefined, 'float32').reshape([ref.ids.length, -1, 1, 1]); // [R, T, 1, 1]
      return names.map((n) => {
        const z = run.cache.get(n); // [R, T, H, dh]
        const means = new Map(ids.map((g) => {
          const w = tf.mul(m, tf.tensor1d(refGroups.map((x) => (x === g ? 1 : 0))).reshape([-1, 1, 1, 1]));
          return [g, tf.div(tf.sum(tf.mul(z, w), 0), tf.maximum(tf.sum(w, 0), 1e-9))] as const;
        }));
        return tf.stack(groups.map((g) => means.get(g)!)) as tf.Tensor4D;
      });
    });
    return { perRow, dispose: () => tf.dispose(perRow) };
  } finally {
    run.cache.dispose();
  }
}

interface Node {
  layer: number;
  head: number;
  /** Per prompt, the positions of the node; null = every position. */
  positions: number[][] | null;
}

function toNode(model: ModelView, x: CircuitNode, N: number, T: number, where: string): Node {
  const isRef = typeof x === 'string' || Array.isArray(x);
  const [layer, head] = parseHead(isRef ? (x as HeadRef) : (x as { head: HeadRef }).head, model.cfg, where);
  if (isRef) return { layer, head, positions: null };
  const pos = (x as { positions: number[][] }).positions;
  if (!Array.isArray(pos) || pos.length !== N || !pos.every((r) => Array.isArray(r) && r.every((t) => Number.isInteger(t) && t >= 0 && t < T))) {
    throw new ValueError(`${where}.positions`, expectedFound(`${N} lists of positions in [0, ${T}) (one per prompt)`, JSON.stringify(pos)?.slice(0, 80)));
  }
  return { layer, head, positions: pos };
}

/** Per layer, a 0/1 ablation mask [N * T * H]: `base` everywhere, then `value` at the nodes' positions. */
function ablationMask(model: ModelView, N: number, T: number, base: 0 | 1, nodes: Node[], value: 0 | 1): Float32Array[] {
  const H = model.cfg.n_heads;
  const masks = Array.from({ length: model.cfg.n_layers }, () => new Float32Array(N * T * H).fill(base));
  for (const nd of nodes) {
    for (let n = 0; n < N; n++) for (const t of nd.positions?.[n] ?? Array.from({ length: T }, (_, i) => i)) masks[nd.layer][(n * T + t) * H + nd.head] = value;
  }
  return masks;
}

/** The mean metric under each ablation configuration (per layer masks), batched; read back once. */
async function ablationSweep(model: ModelView, p: PatchingProblem, means: AblationMeans, configs: Float32Array[][], maxBatch = 256): Promise<number[]> {
  const { n_layers: L, n_heads: H } = model.cfg;
  const N = p.clean.length;
  const T = p.clean[0].length;
  const s = means.perRow[0]?.shape;
  if (means.perRow.length !== L || !s || s[0] !== N || s[1] !== T) throw new ShapeError('means', expectedFound(`${L} layers of [${N}, ${T}, ...] (like the problem's prompts)`, `${means.perRow.length} of [${s?.slice(0, 2)}, ...]`));
  const per = Math.max(1, Math.floor(maxBatch / N));
  const parts: tf.Tensor[] = [];
  try {
    for (let c0 = 0; c0 < configs.length; c0 += per) {
      const chunk = configs.slice(c0, c0 + per);
      const P = chunk.length;
      const used = Array.from({ length: L }, (_, l) => chunk.some((c) => c[l].some((x) => x !== 0)));
      const held = used.map((u, l) => {
        if (!u) return null;
        const flat = new Float32Array(P * N * T * H);
        chunk.forEach((c, i) => flat.set(c[l], i * N * T * H));
        return { mask: tf.tensor4d(flat, [P * N, T, H, 1]), mean: tileRows(means.perRow[l], P) };
      });
      try {
        const hooks: HookSpec[] = held.flatMap((x, l) => (x ? [[hookNameOf('z', l), (z: tf.Tensor) => blend(z, x.mask, x.mean)] as HookSpec] : []));
        const lg = await model.forward(repeatRows(p.clean, P), {
          attentionMask: repeatRows(p.attentionMask, P),
          fwdHooks: hooks,
          logitPositions: Array.from({ length: P * N }, (_, r) => p.readPositions[r % N]),
        });
        parts.push(disposeAfter(lg, () => p.metric(tf.reshape(lg, [P, N, lg.shape[2]]) as tf.Tensor3D)));
      } finally {
        tf.dispose(held.flatMap((x) => (x ? [x.mask, x.mean] : [])));
      }
    }
  } catch (e) {
    tf.dispose(parts);
    throw e;
  }
  return Array.from(await readChunks(parts));
}

/** Mean metric with the given nodes mean-ablated (a bare head: at every position). */
export async function knockout(model: ModelView, p: PatchingProblem, means: AblationMeans, ablated: Iterable<CircuitNode>): Promise<number> {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const nodes = [...ablated].map((x, i) => toNode(model, x, N, T, `ablated[${i}]`));
  return (await ablationSweep(model, p, means, [ablationMask(model, N, T, 0, nodes, 1)]))[0];
}

export interface CircuitEvaluation {
  /** The circuit's heads ("L.H"). */
  circuit: string[];
  /** F(M): the full model. */
  full: number;
  /** F(C): everything outside the circuit mean-ablated. */
  circuitOnly: number;
  faithfulness: number;
  /** F(C) / F(M). */
  faithfulnessRatio: number;
  completeness: { K: string[]; circuitMinusK: number; fullMinusK: number; score: number }[];
  minimality: { v: string; K: string[]; score: number }[];
}

export interface CircuitEvaluationOptions {
  /** Sets K of circuit heads for completeness (default [[]]: K empty, i.e. faithfulness again). */
  completenessSets?: HeadRef[][];
  /** The set K of the minimality scores (default empty); every other circuit head v is scored. */
  minimalityK?: HeadRef[];
  /** Largest batch (prompts x configurations) per forward; default 256. */
  maxBatch?: number;
}

/** Faithfulness, completeness and minimality of a circuit, all configurations in one batched sweep. */
export async function evaluateCircuit(model: ModelView, p: PatchingProblem, means: AblationMeans, circuit: CircuitNode[], opts: CircuitEvaluationOptions = {}): Promise<CircuitEvaluation> {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const nodes = circuit.map((x, i) => toNode(model, x, N, T, `circuit[${i}]`));
  const names = nodes.map((nd) => headName(nd.layer, nd.head));
  if (new Set(names).size !== names.length) throw new ValueError('circuit', `a head appears twice: ${names.join(', ')}`);
  const pick = (set: HeadRef[], where: string) =>
    set.map((h, i) => {
      const [l, hd] = parseHead(h, model.cfg, `${where}[${i}]`);
      const k = names.indexOf(headName(l, hd));
      if (k < 0) throw new ValueError(`${where}[${i}]`, expectedFound(`a head of the circuit (${names.join(', ')})`, headName(l, hd)));
      return k;
    });
  const without = (ks: number[]) => nodes.filter((_, k) => !ks.includes(k));
  const only = (ks: number[]) => ks.map((k) => nodes[k]);
  // configurations: F(M), F(C), per K: F(C\K), F(M\K); minimality: F(C\K), then F(C\(K u {v})) per v
  const sets = (opts.completenessSets ?? [[]]).map((K, i) => pick(K, `completenessSets[${i}]`));
  const K = pick(opts.minimalityK ?? [], 'minimalityK');
  const vs = nodes.map((_, k) => k).filter((k) => !K.includes(k));
  const configs = [
    ablationMask(model, N, T, 0, [], 1),
    ablationMask(model, N, T, 1, nodes, 0),
    ...sets.flatMap((ks) => [ablationMask(model, N, T, 1, without(ks), 0), ablationMask(model, N, T, 0, only(ks), 1)]),
    ablationMask(model, N, T, 1, without(K), 0),
    ...vs.map((v) => ablationMask(model, N, T, 1, without([...K, v]), 0)),
  ];
  const F = await ablationSweep(model, p, means, configs, opts.maxBatch);
  const [full, circuitOnly] = F;
  const completeness = sets.map((ks, i) => {
    const circuitMinusK = F[2 + 2 * i];
    const fullMinusK = F[3 + 2 * i];
    return { K: ks.map((k) => names[k]), circuitMinusK, fullMinusK, score: Math.abs(circuitMinusK - fullMinusK) };
  });
  const base = F[2 + 2 * sets.length];
  const minimality = vs.map((v, i) => ({ v: names[v], K: K.map((k) => names[k]), score: Math.abs(F[3 + 2 * sets.length + i] - base) / full }));
  return { circuit: names, full, circuitOnly, faithfulness: Math.abs(full - circuitOnly), faithfulnessRatio: circuitOnly / full, completeness, minimality };
}
