/**
 * Resumable activation-patching sweeps. `resumablePatchSweep` runs `patchSweep` one layer at a time
 * and records every finished layer row in a SweepStore (src/io/checkpoint.ts), a JSON-lines file
 * keyed by a hash of the sweep's inputs (model weights fingerprint and config, clean / corrupted
 * tokens, mask, read positions, metric, activation, grouping, layers, maxBatch). After an
 * interruption (an exception, a thrown onProgress, an AbortSignal, a killed process) a fresh call
 * with the same store path recomputes only the layers that were not finished, and returns exactly
 * what an uninterrupted run returns: stored numbers are kept bit for bit (NaN and -0 included).
 *
 * Cost: each computed layer repeats the clean and corrupted cached baseline runs that patchSweep
 * needs (2 forwards per layer); for sweeps with many patch indices per layer this is small next to
 * the patched forwards.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import { SweepStore, runResumable, type SweepStoreOptions, type SweepValue } from '../io/checkpoint.js';
import type { ModelView } from '../model/view.js';
import { normaliseValues, patchSweep, type PatchAct, type PatchBy, type PatchOptions, type PatchResult } from './patching.js';
import type { PatchingProblem } from './problem.js';

export interface ResumableProgress {
  /** The layer just finished (from compute or from the store). */
  layer: number;
  /** Layers finished so far, stored ones included. */
  done: number;
  total: number;
  /** True when the row came from the store. */
  cached: boolean;
}

export interface ResumablePatchOptions extends Omit<PatchOptions, 'onProgress'> {
  /** Path of the sweep store (JSON lines); created when absent. */
  store: string;
  /**
   * Key of the sweep's inputs. Default: a SHA-256 of the inputs (see sweepKey). Give your own when the
   * metric is a closure whose source does not show what it depends on.
   */
  key?: string;
  /** Include a fingerprint of the weights (sums per parameter) in the default key (default true). */
  fingerprintWeights?: boolean;
  /** A store written for other inputs: 'throw' (default, ConfigError) or 'restart' (warn and discard). */
  onMismatch?: SweepStoreOptions['onMismatch'];
  warn?: (message: string) => void;
  /** Called after each layer is stored (or found stored). Throwing here stops the sweep; stored rows stay. */
  onProgress?: (p: ResumableProgress) => void;
  /** Checked before each layer; an aborted signal stops the sweep with its reason. Stored rows stay. */
  signal?: AbortSignal;
}

export interface ResumablePatchResult extends PatchResult {
  /** Layers computed in this call. */
  computedLayers: number[];
  /** Layers taken from the store. */
  cachedLayers: number[];
  /** The store key. */
  key: string;
  /** Absolute path of the store. */
  storePath: string;
}

/** Per-parameter sum and sum of squares, one readback for all parameters. */
async function weightFingerprint(model: ModelView): Promise<string> {
  // every weight, float32 and half-precision alike (a half weight is decoded, summed and freed)
  const names = [...Object.keys(model.params), ...Object.keys(model.halfParams)].sort();
  if (!names.length) return '';
  const shapes: string[] = [];
  const t = tf.tidy(() => tf.stack(names.flatMap((n) => {
    const x = model.weight(n);
    shapes.push(x.shape.join('x'));
    return [tf.sum(x), tf.sum(tf.square(x))];
  })));
  const v = await t.data();
  t.dispose();
  return names.map((n, i) => `${n}:${shapes[i]}:${v[2 * i]}:${v[2 * i + 1]}`).join(';');
}

/** The default store key: a SHA-256 over everything that determines the sweep's numbers. */
export async function sweepKey(
  model: ModelView, p: PatchingProblem, act: PatchAct, by: PatchBy,
  opts: { layers?: number[]; maxBatch?: number; fingerprintWeights?: boolean } = {},
): Promise<string> {
  const h = createHash('sha256');
  const cfg = { ...(model.cfg as unknown as Record<string, unknown>) };
  delete cfg.hf;
  h.update(JSON.stringify({
    v: 1,
    kind: 'patchSweep',
    model: model.name,
    cfg,
    weights: opts.fingerprintWeights === false ? null : await weightFingerprint(model),
    clean: p.clean,
    corrupted: p.corrupted,
    mask: p.attentionMask,
    readPositions: p.readPositions,
    metricName: p.metricName,
    metricSource: String(p.metric),
    act,
    by,
    layers: opts.layers ?? null,
    maxBatch: opts.maxBatch ?? 256,
  }));
  return `patchSweep:${act}:${by}:${h.digest('hex')}`;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (!signal?.aborted) return;
  const r = signal.reason;
  if (r instanceof Error) throw r;
  const e = new Error(`sweep aborted${r === undefined ? '' : `: ${String(r)}`}`);
  e.name = 'AbortError';
  throw e;
}

/**
 * `patchSweep(model, p, act, by)` with one stored row per finished layer. Interrupt it any way you
 * like; call again with the same `store` to resume. The result equals the uninterrupted sweep.
 */
export async function resumablePatchSweep(
  model: ModelView, p: PatchingProblem, act: PatchAct, by: PatchBy, opts: ResumablePatchOptions,
): Promise<ResumablePatchResult> {
  if (!opts || typeof opts.store !== 'string' || opts.store.length === 0) {
    throw new ValueError('resumablePatchSweep: store', expectedFound('a file path for the sweep store', opts?.store));
  }
  const L = model.cfg.n_layers;
  const layers = opts.layers ?? Array.from({ length: L }, (_, l) => l);
  layers.forEach((l, i) => {
    if (!Number.isInteger(l) || l < 0 || l >= L) throw new ValueError(`layers[${i}]`, expectedFound(`a layer in [0, ${L})`, l));
  });
  if (new Set(layers).size !== layers.length) throw new ValueError('layers', `a layer appears twice: ${JSON.stringify(layers)}`);
  const key = opts.key ?? await sweepKey(model, p, act, by, { layers: opts.layers, maxBatch: opts.maxBatch, fingerprintWeights: opts.fingerprintWeights });
  const store = await SweepStore.open(opts.store, { key, onMismatch: opts.onMismatch, warn: opts.warn });
  throwIfAborted(opts.signal);

  let clean = NaN;
  let corrupted = NaN;
  let metricName = p.metricName;
  let forwards = 0;
  const computed: number[] = [];
  const cached: number[] = [];
  const ids = layers.map((l) => `layer:${l}`);
  const rows = await runResumable<SweepValue>(
    store,
    ids,
    async (id) => {
      throwIfAborted(opts.signal);
      const layer = Number(id.slice('layer:'.length));
      const r = await patchSweep(model, p, act, by, { maxBatch: opts.maxBatch, layers: [layer] });
      forwards += r.forwards;
      computed.push(layer);
      return { values: r.values[0] as SweepValue, clean: r.clean, corrupted: r.corrupted, metricName: r.metricName };
    },
    {
      onProgress: (pr) => {
        const layer = Number(pr.id.slice('layer:'.length));
        if (pr.cached) cached.push(layer);
        opts.onProgress?.({ layer, done: pr.done, total: pr.total, cached: pr.cached });
      },
    },
  );
  const values = rows.map((row, i) => {
    const r = row as { values: SweepValue; clean: number; corrupted: number; metricName: string };
    // every row carries the baselines it was computed with; they must agree (same inputs, same key)
    if (i === 0) ({ clean, corrupted, metricName } = r);
    else if (!Object.is(r.clean, clean) || !Object.is(r.corrupted, corrupted)) {
      throw new ValueError(`${store.path}: layer ${layers[i]}`, expectedFound(`baselines clean ${clean}, corrupted ${corrupted}`, `${r.clean}, ${r.corrupted} (the store mixes different inputs; delete it)`));
    }
    return r.values;
  }) as number[][] | number[][][];
  const normalised = normaliseValues(values, clean, corrupted);
  return { act, by, values, normalised, clean, corrupted, metricName, forwards, computedLayers: computed, cachedLayers: cached, key, storePath: store.path };
}
