// Shared helpers for tests that compare against the HF-transformers reference fixtures.
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { readSafetensors } from '../../src/io/safetensors.js';

export const REF_DIR = path.resolve('fixtures/reference');
export const REF_FAMILIES = ['gpt2', 'gpt2-tiny', 'pythia', 'pythia-seq', 'llama', 'qwen2', 'mistral'];

export async function loadReference(name: string): Promise<Record<string, tf.Tensor>> {
  return readSafetensors(path.join(REF_DIR, name, 'reference.safetensors'));
}

/**
 * Max |a - b| over real (mask = 1) positions, relative to max |b| there, computed on the host from
 * `await data()` reads. a, b: [batch, pos, ...] or patterns [batch, head, q, k] (queries masked by `queryAxis`).
 */
export async function maskedRelErr(a: tf.Tensor, b: tf.Tensor, mask: tf.Tensor2D, queryAxis = 1): Promise<{ abs: number; ref: number; rel: number }> {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape mismatch [${a.shape}] vs [${b.shape}]`);
  const [av, bv, mv] = await Promise.all([a.data(), b.data(), mask.data()]);
  const shape = a.shape;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((x, y) => x * y, 1));
  const T = mask.shape[1];
  let abs = 0;
  let ref = 0;
  for (let i = 0; i < av.length; i++) {
    const bIdx = Math.floor(i / strides[0]) % shape[0];
    const q = Math.floor(i / strides[queryAxis]) % shape[queryAxis];
    if (!mv[bIdx * T + q]) continue;
    abs = Math.max(abs, Math.abs(av[i] - bv[i]));
    ref = Math.max(ref, Math.abs(bv[i]));
  }
  return { abs, ref, rel: abs / ref };
}
