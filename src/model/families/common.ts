/**
 * What every architecture family provides, and the reshaping helpers they share.
 * A family converts between an HF state dict and the canonical (TransformerLens) layout.
 */
import * as tf from '@tensorflow/tfjs';
import { FormatError, expectedFound } from '../../errors.js';
import type { ConfigReader, ModelConfig } from '../config.js';

export type StateDict = Record<string, tf.Tensor>;

export interface Family {
  /** HF model_type values handled by this family. */
  modelTypes: string[];
  /** The HF class written into config.json "architectures" when saving. */
  hfClass: string;
  normalize(r: ConfigReader): ModelConfig;
  /** HF state dict -> canonical params (new tensors; the caller disposes the HF ones). */
  toCanonical(sd: WeightSource, cfg: ModelConfig): StateDict;
  /** Canonical params -> HF state dict (new tensors). */
  fromCanonical(params: StateDict, cfg: ModelConfig): StateDict;
}

/**
 * Reads HF tensors by name, trying prefixes, and checks shapes; errors name the file and tensor.
 * Every name found through find/get/getOr is recorded, so the loader can tell which tensors of
 * the checkpoint a family never used (unread()): families need no bookkeeping of their own.
 */
export class WeightSource {
  private readonly used = new Set<string>();
  constructor(
    readonly sd: StateDict,
    readonly where: string,
    readonly prefixes: string[] = [''],
  ) {}
  find(name: string): tf.Tensor | undefined {
    for (const p of this.prefixes) {
      const t = this.sd[p + name];
      if (t) {
        this.used.add(p + name);
        return t;
      }
    }
    return undefined;
  }
  get(name: string, shape: number[]): tf.Tensor {
    const t = this.find(name);
    if (!t) throw new FormatError(`${this.where}: ${this.prefixes[0]}${name}`, 'tensor is missing from the checkpoint');
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new FormatError(`${this.where}: ${name}`, expectedFound(`shape [${shape}]`, `[${t.shape}]`));
    }
    return t;
  }
  /** Optional tensor: zeros of `shape` when absent. */
  getOr(name: string, shape: number[]): tf.Tensor {
    return this.find(name) ? this.get(name, shape) : tf.zeros(shape);
  }
  /** Full names (prefix included) of the state dict's tensors that find/get/getOr never returned, in dict order. */
  unread(): string[] {
    return Object.keys(this.sd).filter((k) => !this.used.has(k));
  }
}

/** [d_in, H*dh] (x @ W convention) -> [H, d_in, dh]. */
export function splitHeadsIn(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  const [dIn, hd] = w.shape as [number, number];
  return tf.transpose(tf.reshape(w, [dIn, nHeads, hd / nHeads]), [1, 0, 2]) as tf.Tensor3D;
}
/** [H, d_in, dh] -> [d_in, H*dh]. */
export function mergeHeadsIn(w: tf.Tensor): tf.Tensor2D {
  const [h, dIn, dh] = w.shape as [number, number, number];
  return tf.reshape(tf.transpose(w, [1, 0, 2]), [dIn, h * dh]) as tf.Tensor2D;
}
/** nn.Linear weight [out, in] -> x @ W form [in, out]. */
export function linT(w: tf.Tensor): tf.Tensor2D {
  return tf.transpose(w) as tf.Tensor2D;
}
/** Linear weight [H*dh, d] (q/k/v proj) -> [H, d, dh]. */
export function projToHeads(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  return splitHeadsIn(linT(w), nHeads);
}
/** [H, d, dh] -> Linear weight [H*dh, d]. */
export function headsToProj(w: tf.Tensor): tf.Tensor2D {
  return linT(mergeHeadsIn(w));
}
/** o_proj Linear weight [d, H*dh] -> W_O [H, dh, d]. */
export function oProjToWO(w: tf.Tensor, nHeads: number): tf.Tensor3D {
  const [d, hd] = w.shape as [number, number];
  return tf.reshape(tf.transpose(w), [nHeads, hd / nHeads, d]) as tf.Tensor3D;
}
/** W_O [H, dh, d] -> o_proj Linear weight [d, H*dh]. */
export function wOToOProj(w: tf.Tensor): tf.Tensor2D {
  const [h, dh, d] = w.shape as [number, number, number];
  return tf.transpose(tf.reshape(w, [h * dh, d])) as tf.Tensor2D;
}
/** Bias [H*dh] -> [H, dh]. */
export function biasToHeads(b: tf.Tensor, nHeads: number): tf.Tensor2D {
  return tf.reshape(b, [nHeads, b.shape[0] / nHeads]) as tf.Tensor2D;
}

/** Reads rope theta and the rotary fraction from either the classic fields or `rope_parameters` (transformers >= 5). */
export function ropeSettings(r: ConfigReader, thetaKey: string, defaultTheta: number): { theta: number; partial: number } {
  const rp = r.json.rope_parameters as Record<string, unknown> | undefined;
  const rs = r.json.rope_scaling as Record<string, unknown> | undefined | null;
  const type = (rp?.rope_type ?? rs?.rope_type ?? rs?.type ?? 'default') as string;
  if (type !== 'default') {
    throw new FormatError(`${r.where}: rope_scaling`, expectedFound('no rope scaling (rope_type "default")', type));
  }
  const theta = typeof rp?.rope_theta === 'number' ? (rp.rope_theta as number) : r.num(thetaKey, defaultTheta);
  const partial = typeof rp?.partial_rotary_factor === 'number' ? (rp.partial_rotary_factor as number) : r.num('partial_rotary_factor', 1);
  return { theta, partial };
}
