/**
 * numpy's default argsort (`np.argsort(x)`, kind='quicksort') reproduced exactly, ties included.
 *
 * The discrete-SAE edge score (O'Neill & Bui, sae-circuits src/edge.py line 121) ranks head pairs with
 * `np.argsort(counts.flatten())[::-1]`; counts tie a lot, and which tied pairs fall inside the first k
 * entries decides the scores. numpy's 'quicksort' is not stable: it is an introsort (numpy
 * _core/src/npysort/quicksort.cpp, aquicksort_): median-of-three quicksort on the index array, partitions
 * of at most 16 entries finished by insertion sort, heapsort (npysort_heapsort.h, aheapsort_) once the
 * depth budget 2 * floor(log2 n) is spent. This file implements that algorithm from its description,
 * step for step, so the permutation (not only the sorted values) is numpy's.
 *
 * Scope: this is numpy's portable path, which np.argsort takes for float64 in numpy <= 1.24 on every CPU
 * and in later numpy on CPUs without the SIMD argsort (numpy >= 1.25 dispatches float64 argsort to
 * x86-simd-sort on AVX-512 machines, whose tie order differs). test/sae-discrete.test.ts checks it
 * against Debian's numpy 1.24 on tie-heavy inputs.
 */

/** Partitions longer than this (pr - pl > 15, i.e. 17 entries or more) are split; shorter ones are insertion-sorted. */
const SMALL_QUICKSORT = 15;

/** floor(log2 n) for n >= 1 (numpy's npy_get_msb). */
function msb(n: number): number {
  let d = 0;
  while ((n = Math.floor(n / 2)) > 0) d++;
  return d;
}

/**
 * The permutation np.argsort(values) returns (numpy's introsort). `values` must be free of NaN (numpy
 * sorts NaN last; the scores sorted here are finite).
 */
export function numpyArgsort(values: ArrayLike<number>): Int32Array {
  return introArgsort(values.length, (a, b) => values[a] < values[b]);
}

/**
 * numpy's introsort on the indices 0..n-1 under a strict order `less(i, j)` between items (the
 * comparator form lets tests drive it with an adversary). Returns the sorted index array.
 */
export function introArgsort(n: number, less: (a: number, b: number) => boolean): Int32Array {
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  if (n < 2) return a;
  const swap = (i: number, j: number) => {
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  };
  const stack: number[] = []; // pairs (pl, pr) still to sort, with their depth budgets beside
  const depths: number[] = [];
  let pl = 0;
  let pr = n - 1;
  let depth = msb(n) * 2;
  for (;;) {
    if (depth < 0) {
      heapArgsort(a, pl, pr - pl + 1, less);
    } else {
      while (pr - pl > SMALL_QUICKSORT) {
        const pm = pl + ((pr - pl) >> 1);
        if (less(a[pm], a[pl])) swap(pm, pl);
        if (less(a[pr], a[pm])) swap(pr, pm);
        if (less(a[pm], a[pl])) swap(pm, pl);
        const pivot = a[pm];
        let pi = pl;
        let pj = pr - 1;
        swap(pm, pj);
        for (;;) {
          do pi++;
          while (less(a[pi], pivot));
          do pj--;
          while (less(pivot, a[pj]));
          if (pi >= pj) break;
          swap(pi, pj);
        }
        swap(pi, pr - 1);
        // the larger side waits on the stack; the loop continues on the smaller one
        if (pi - pl < pr - pi) {
          stack.push(pi + 1, pr);
          pr = pi - 1;
        } else {
          stack.push(pl, pi - 1);
          pl = pi + 1;
        }
        depths.push(--depth);
      }
      for (let pi = pl + 1; pi <= pr; pi++) {
        const vi = a[pi];
        let pj = pi;
        while (pj > pl && less(vi, a[pj - 1])) {
          a[pj] = a[pj - 1];
          pj--;
        }
        a[pj] = vi;
      }
    }
    if (stack.length === 0) break;
    pr = stack.pop()!;
    pl = stack.pop()!;
    depth = depths.pop()!;
  }
  return a;
}

/** numpy's aheapsort_ on a[start .. start+n): a max-heap built bottom-up, then popped from the end. */
export function heapArgsort(a: Int32Array, start: number, n: number, less: (a: number, b: number) => boolean): void {
  const at = (k: number) => a[start + k - 1]; // 1-based heap positions
  const set = (k: number, v: number) => (a[start + k - 1] = v);
  const sift = (tmp: number, i: number, size: number) => {
    for (let j = i * 2; j <= size; ) {
      if (j < size && less(at(j), at(j + 1))) j++;
      if (!less(tmp, at(j))) break;
      set(i, at(j));
      i = j;
      j += j;
    }
    set(i, tmp);
  };
  for (let l = n >> 1; l > 0; l--) sift(at(l), l, n);
  for (let size = n; size > 1; ) {
    const tmp = at(size);
    set(size, at(1));
    size--;
    sift(tmp, 1, size);
  }
}
