/**
 * Seeded pseudo-random numbers (mulberry32). Every random choice in tflens takes a seed and goes
 * through this file, so runs are reproducible across machines and backends.
 */
import { ValueError, expectedFound } from '../errors.js';

/** mulberry32: a 32-bit state generator; returns a function giving floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mix a seed with extra integers (e.g. a step or a worker index) into a new 32-bit seed. */
export function deriveSeed(seed: number, ...salt: number[]): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const s of salt) {
    h = Math.imul(h ^ (s >>> 0), 0x85ebca6b) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h = (h ^ (h >>> 16)) >>> 0;
  }
  return h;
}

export interface Rng {
  /** The seed this generator started from. */
  readonly seed: number;
  /** Uniform float in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** Uniform integer in [lo, hi] (inclusive). */
  range(lo: number, hi: number): number;
  /** One element of a non-empty array, uniformly. */
  choice<T>(arr: readonly T[]): T;
  /** Index drawn from unnormalised non-negative weights. */
  weighted(weights: ArrayLike<number>): number;
  /** Fisher-Yates shuffle in place; returns the same array. */
  shuffle<T>(arr: T[]): T[];
  /** k distinct elements of arr (order random). */
  sample<T>(arr: readonly T[], k: number): T[];
  /** Standard normal (Box-Muller). */
  normal(): number;
}

/** A seeded generator. The same seed gives the same sequence everywhere. */
export function rng(seed: number): Rng {
  if (!Number.isFinite(seed)) throw new ValueError('seed', expectedFound('a finite number', seed));
  const u = mulberry32(Math.floor(seed));
  let spare: number | null = null;
  const r: Rng = {
    seed,
    next: u,
    int(n: number): number {
      if (!(Number.isInteger(n) && n > 0)) throw new ValueError('rng.int(n)', expectedFound('a positive integer', n));
      return Math.floor(u() * n);
    },
    range(lo: number, hi: number): number {
      if (!(Number.isInteger(lo) && Number.isInteger(hi) && hi >= lo)) {
        throw new ValueError('rng.range(lo, hi)', expectedFound('integers with lo <= hi', [lo, hi]));
      }
      return lo + Math.floor(u() * (hi - lo + 1));
    },
    choice<T>(arr: readonly T[]): T {
      if (arr.length === 0) throw new ValueError('rng.choice(arr)', expectedFound('a non-empty array', 'empty array'));
      return arr[Math.floor(u() * arr.length)];
    },
    weighted(weights: ArrayLike<number>): number {
      let total = 0;
      for (let i = 0; i < weights.length; i++) {
        const w = weights[i];
        if (!(w >= 0) || !Number.isFinite(w)) {
          throw new ValueError(`rng.weighted(weights)[${i}]`, expectedFound('a finite non-negative weight', w));
        }
        total += w;
      }
      if (!(total > 0)) throw new ValueError('rng.weighted(weights)', expectedFound('a positive total weight', total));
      let x = u() * total;
      let last = -1;
      for (let i = 0; i < weights.length; i++) {
        if (weights[i] > 0) last = i;
        x -= weights[i];
        if (x < 0) return i;
      }
      return last; // floating-point round-off: the last index with positive weight
    },
    shuffle<T>(arr: T[]): T[] {
      for (let i = arr.length - 1; i > 0; i--) {
        const j = Math.floor(u() * (i + 1));
        const t = arr[i];
        arr[i] = arr[j];
        arr[j] = t;
      }
      return arr;
    },
    sample<T>(arr: readonly T[], k: number): T[] {
      if (!(Number.isInteger(k) && k >= 0 && k <= arr.length)) {
        throw new ValueError('rng.sample(arr, k)', expectedFound(`an integer k in [0, ${arr.length}]`, k));
      }
      const copy = arr.slice();
      for (let i = 0; i < k; i++) {
        const j = i + Math.floor(u() * (copy.length - i));
        const t = copy[i];
        copy[i] = copy[j];
        copy[j] = t;
      }
      return copy.slice(0, k);
    },
    normal(): number {
      if (spare !== null) {
        const s = spare;
        spare = null;
        return s;
      }
      let a = 0;
      while (a <= 1e-300) a = u();
      const b = u();
      const rad = Math.sqrt(-2 * Math.log(a));
      spare = rad * Math.sin(2 * Math.PI * b);
      return rad * Math.cos(2 * Math.PI * b);
    },
  };
  return r;
}
