// Shared helpers for tests that compare against the HF-transformers reference fixtures.
import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readSafetensors } from '../../src/io/safetensors.js';

export const REF_DIR = path.resolve('fixtures/reference');
/** Every family fixtures/reference/manifest.json lists (the original seven first, then the issue 17 families). */
export const REF_FAMILIES = Object.keys((JSON.parse(readFileSync(path.join(REF_DIR, 'manifest.json'), 'utf8')) as { families: Record<string, unknown> }).families);

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

/**
 * Attention scores compared where a key is visible: real queries, and entries HF did not mask (HF writes
 * about -3.4e38 or -Infinity at masked entries, tflens -Infinity). The two masks must agree.
 * a, b: [batch, head, query, key].
 */
export async function visibleRelErr(a: tf.Tensor, b: tf.Tensor, mask: tf.Tensor2D): Promise<{ abs: number; ref: number; rel: number }> {
  if (a.shape.join(',') !== b.shape.join(',')) throw new Error(`shape mismatch [${a.shape}] vs [${b.shape}]`);
  const [av, bv, mv] = await Promise.all([a.data(), b.data(), mask.data()]);
  const [, H, T, Tk] = a.shape;
  let abs = 0;
  let ref = 0;
  for (let i = 0; i < av.length; i++) {
    const bIdx = Math.floor(i / (H * T * Tk));
    const q = Math.floor(i / Tk) % T;
    if (!mv[bIdx * T + q]) continue;
    const theirs = bv[i] > -1e30;
    if (theirs !== Number.isFinite(av[i])) throw new Error(`scores entry ${i}: visible in ${theirs ? 'HF' : 'tflens'} only (${av[i]} vs ${bv[i]})`);
    if (!theirs) continue;
    abs = Math.max(abs, Math.abs(av[i] - bv[i]));
    ref = Math.max(ref, Math.abs(bv[i]));
  }
  return { abs, ref, rel: abs / ref };
}
