/**
 * Circuit evaluation by mean ablation (Wang et al.): a knocked-out head's output z is replaced by its
 * mean over the reference (ABC) prompts of the same template, position by position (prompts are
 * left-padded, so positions are aligned from the end; padding is left out of the means).
 * With F = mean metric: faithfulness |F(M) - F(C)|, completeness |F(C\K) - F(M\K)|,
 * minimality |F(C\(K u {v})) - F(C\K)| / F(M).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import type { HookedTransformer } from '../model/hooked.js';
import type { PatchingProblem } from './problem.js';

export type HeadSet = Iterable<string>; // "layer.head"

export interface AblationMeans {
  /** Per layer, [B, T, H, d_head]: the mean z of each prompt's template. */
  perRow: tf.Tensor4D[];
  dispose(): void;
}

function parseHead(s: string, L: number, H: number): [number, number] {
  const m = /^(\d+)\.(\d+)$/.exec(s);
  if (!m) throw new ValueError(`head "${s}"`, expectedFound('"layer.head"', s));
  const l = Number(m[1]);
  const h = Number(m[2]);
  if (l >= L || h >= H) throw new ValueError(`head "${s}"`, expectedFound(`layer < ${L} and head < ${H}`, s));
  return [l, h];
}

/**
 * Per-template mean head outputs over `reference` tokens (e.g. the ABC set), expanded to one row per
 * prompt of the evaluated batch (`templateIds[i]` of prompt i; the reference has its own ids).
 */
export function templateMeans(
  model: HookedTransformer,
  reference: { tokens: number[][]; mask: number[][]; templateIds: number[] },
  templateIds: number[],
): AblationMeans {
  const L = model.cfg.n_layers;
  const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`);
  const run = model.runWithCache(reference.tokens, { attentionMask: reference.mask, namesFilter: names });
  run.logits.dispose();
  try {
    const perRow = tf.tidy(() => {
      const ids = [...new Set(reference.templateIds)];
      const m = tf.tensor2d(reference.mask, undefined, 'float32').expandDims(2).expandDims(3); // [R, T, 1, 1]
      return names.map((n) => {
        const z = run.cache.get(n); // [R, T, H, dh]
        const means = new Map<number, tf.Tensor>();
        for (const t of ids) {
          const sel = reference.templateIds.map((x) => (x === t ? 1 : 0));
          const w = tf.mul(m, tf.tensor1d(sel).reshape([-1, 1, 1, 1]));
          means.set(t, tf.div(tf.sum(tf.mul(z, w), 0), tf.maximum(tf.sum(w, 0), 1e-9)));
        }
        return tf.stack(templateIds.map((t) => {
          const mt = means.get(t);
          if (!mt) throw new ValueError('templateIds', `template ${t} has no reference prompts to average`);
          return mt;
        })) as tf.Tensor4D;
      });
    });
    return { perRow, dispose: () => tf.dispose(perRow) };
  } finally {
    run.cache.dispose();
  }
}

/** Mean metric with the heads in `ablated` mean-ablated. */
export function knockout(model: HookedTransformer, p: PatchingProblem, means: AblationMeans, ablated: HeadSet): number {
  const { n_layers: L, n_heads: H } = model.cfg;
  const byLayer = new Map<number, number[]>();
  for (const s of ablated) {
    const [l, h] = parseHead(s, L, H);
    byLayer.set(l, [...(byLayer.get(l) ?? []), h]);
  }
  if (means.perRow[0].shape[0] !== p.clean.length) throw new ShapeError('means', expectedFound(`${p.clean.length} rows`, means.perRow[0].shape[0]));
  return tf.tidy(() => {
    const hooks: HookSpec[] = [...byLayer].map(([l, heads]) => {
      const sel = new Float32Array(H);
      heads.forEach((h) => (sel[h] = 1));
      const m = tf.tensor4d(sel, [1, 1, H, 1]);
      return [`blocks.${l}.attn.hook_z` as never, (z: tf.Tensor) => tf.add(z, tf.mul(m, tf.sub(means.perRow[l], z)))];
    });
    const lg = model.forward(p.clean, { attentionMask: p.mask, fwdHooks: hooks, logitPositions: p.readPositions });
    return p.metric(tf.reshape(lg, [1, lg.shape[0], lg.shape[2]]) as tf.Tensor3D).dataSync()[0];
  });
}

export interface CircuitEvaluation {
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

export function evaluateCircuit(
  model: HookedTransformer,
  p: PatchingProblem,
  means: AblationMeans,
  circuit: string[],
  opts: { completenessSets?: string[][]; minimalityK?: string[] } = {},
): CircuitEvaluation {
  const { n_layers: L, n_heads: H } = model.cfg;
  circuit.forEach((s) => parseHead(s, L, H));
  const all: string[] = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) all.push(`${l}.${h}`);
  const inC = new Set(circuit);
  const outside = all.filter((x) => !inC.has(x));
  const F = (ablated: string[]) => knockout(model, p, means, ablated);
  const full = F([]);
  const circuitOnly = F(outside);
  const completeness = (opts.completenessSets ?? [[]]).map((K) => {
    const circuitMinusK = F([...outside, ...K]);
    const fullMinusK = F(K);
    return { K, circuitMinusK, fullMinusK, score: Math.abs(circuitMinusK - fullMinusK) };
  });
  const K = opts.minimalityK ?? [];
  const base = F([...outside, ...K]);
  const minimality = circuit.filter((v) => !K.includes(v)).map((v) => ({ v, K, score: Math.abs(F([...outside, ...K, v]) - base) / full }));
  return { circuit, full, circuitOnly, faithfulness: Math.abs(full - circuitOnly), faithfulnessRatio: circuitOnly / full, completeness, minimality };
}
