/**
 * Reading results back from the device. A computation that needs numbers mid-way is written once as a
 * generator that yields the tensors it must read; `runSync` reads them with dataSync (cpu, wasm,
 * tfjs-node) and `runAsync` with `await data()` (WebGPU, which has no synchronous readback in Node).
 * Each yielded tensor is disposed by the driver once read.
 */
import * as tf from '@tensorflow/tfjs';

export type Values = Float32Array | Int32Array | Uint8Array;
export type Steps<T> = Generator<tf.Tensor, T, Values>;

export function runSync<T>(g: Steps<T>): T {
  let r = g.next(undefined as unknown as Values);
  try {
    while (!r.done) {
      const t = r.value;
      let v: Values;
      try {
        v = t.dataSync() as Values;
      } finally {
        t.dispose();
      }
      r = g.next(v);
    }
    return r.value;
  } catch (e) {
    g.return(undefined as never); // run the generator's finally blocks
    throw e;
  }
}

export async function runAsync<T>(g: Steps<T>): Promise<T> {
  let r = g.next(undefined as unknown as Values);
  try {
    while (!r.done) {
      const t = r.value;
      let v: Values;
      try {
        v = (await t.data()) as Values;
      } finally {
        t.dispose();
      }
      r = g.next(v);
    }
    return r.value;
  } catch (e) {
    g.return(undefined as never);
    throw e;
  }
}

/** Rows repeated `times` times (index-major: all rows, then all rows again). */
export function repeatRows<T>(rows: T[][], times: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < times; i++) for (const r of rows) out.push(r);
  return out;
}

/** A tensor's rows repeated `times` times along the batch axis (index-major, like repeatRows). */
export function tileRows(x: tf.Tensor, times: number): tf.Tensor {
  return tf.tile(x, [times, ...new Array(x.rank - 1).fill(1)]);
}
