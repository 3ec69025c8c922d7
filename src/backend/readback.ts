/**
 * Reading results back from the device. WebGPU under Node has no synchronous readback, so library
 * code reads computed tensors only with `await t.data()` / `await t.array()`. `forbidSyncReadback`
 * makes that rule checkable without a GPU: once on, dataSync / arraySync / bufferSync throw for any
 * tensor a kernel computed; tensors made from host values (tf.tensor(...) and reshapes of them) may
 * still be read. TFLENS_FORBID_SYNC_READBACK=1 turns it on when the backend starts (tests and CI).
 */
import * as tf from '@tensorflow/tfjs';
import { BackendError } from '../errors.js';

/** Data ids written from host values (engine.makeTensor), which stay readable. */
const hostMade = new WeakSet<object>();
let installed = false;
let forbidden = false;

/** Whether synchronous readback of computed tensors is forbidden now. */
export function syncReadbackForbidden(): boolean {
  return forbidden;
}

/**
 * Forbid (or allow again) synchronous readback of tensors computed by kernels. Returns the previous
 * setting. The check wraps Tensor.prototype.dataSync (which arraySync and bufferSync call).
 */
export function forbidSyncReadback(on = true): boolean {
  install();
  const before = forbidden;
  forbidden = on;
  return before;
}

function install(): void {
  if (installed) return;
  installed = true;
  const engine = tf.engine() as unknown as { makeTensor: (...a: unknown[]) => tf.Tensor };
  const make = engine.makeTensor.bind(engine);
  engine.makeTensor = (...a: unknown[]) => {
    const t = make(...a);
    hostMade.add(t.dataId as object);
    return t;
  };
  const proto = tf.Tensor.prototype as unknown as { dataSync: (this: tf.Tensor) => unknown };
  const dataSync = proto.dataSync;
  proto.dataSync = function (this: tf.Tensor) {
    if (forbidden && !hostMade.has(this.dataId as object)) {
      const where = new Error().stack?.split('\n').slice(2, 5).map((s) => s.trim()).join(' <- ') ?? '';
      throw new BackendError(
        'sync readback',
        `dataSync/arraySync/bufferSync on a computed tensor [${this.shape}] (${this.dtype}) is forbidden ` +
          `(TFLENS_FORBID_SYNC_READBACK; WebGPU in Node cannot read synchronously): use await data()/array(). At ${where}`,
      );
    }
    return dataSync.call(this);
  };
}

/** Turn the check on when the environment asks for it (called by initBackend). */
export function applyReadbackPolicyFromEnv(): void {
  const v = typeof process !== 'undefined' ? process.env?.TFLENS_FORBID_SYNC_READBACK : undefined;
  if (v && v !== '0' && v !== 'false') forbidSyncReadback(true);
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
