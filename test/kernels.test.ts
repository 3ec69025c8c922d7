import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { einsumByOps, registerMissingKernels } from '../src/backend/kernels.js';

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-5, what = '') {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol * (1 + Math.abs(b[i])), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

/** Run fn on a given backend and return the plain numbers of its result(s). */
async function onBackend(name: string, fn: () => tf.Tensor | tf.Tensor[]): Promise<number[][]> {
  const prev = tf.getBackend();
  await tf.setBackend(name);
  registerMissingKernels(name);
  try {
    const out = tf.tidy(fn);
    const arr = Array.isArray(out) ? out : [out];
    try {
      return await Promise.all(arr.map(async (t) => Array.from(await t.data())));
    } finally {
      tf.dispose(arr);
    }
  } finally {
    await tf.setBackend(prev);
  }
}

/** Deterministic pseudo-random floats for inputs. */
function vals(n: number, seed: number): number[] {
  const out: number[] = [];
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out.push((s / 2147483648) * 2 - 1);
  }
  return out;
}

describe('backend kernels (registered where missing)', () => {
  const backends = ['cpu'];
  before(async () => {
    try {
      await import('@tensorflow/tfjs-backend-wasm');
      const prev = tf.getBackend();
      if (await tf.setBackend('wasm')) backends.push('wasm');
      await tf.setBackend(prev);
    } catch {
      /* wasm unavailable: cpu only */
    }
  });

  it('gather gradient (embedding) hand-checked: repeated ids accumulate', async () => {
    for (const b of backends) {
      const [g] = await onBackend(b, () => {
        const W = tf.tensor2d([[1, 2], [3, 4], [5, 6], [7, 8]]);
        const ids = tf.tensor1d([2, 0, 2, 3], 'int32');
        const up = tf.tensor2d([[1, 10], [2, 20], [3, 30], [4, 40]]);
        return tf.grad((w: tf.Tensor) => tf.gather(w, ids).mul(up).sum())(W);
      });
      // row 0 <- up[1]; row 1 <- nothing; row 2 <- up[0] + up[2]; row 3 <- up[3]
      assert.deepEqual(g, [2, 20, 0, 0, 4, 40, 4, 40], `backend ${b}`);
    }
  });

  it('gather gradient on wasm equals cpu (2-D ids, axis 0 and axis 1)', async function () {
    if (!backends.includes('wasm')) this.skip();
    const W = vals(7 * 5, 3);
    const ids = [[0, 6, 2], [2, 2, 5]];
    const up = vals(2 * 3 * 5, 9);
    const up1 = vals(7 * 4, 11);
    const f = () => {
      const w = tf.tensor2d(W, [7, 5]);
      const i = tf.tensor2d(ids, [2, 3], 'int32');
      const g0 = tf.grad((x: tf.Tensor) => tf.gather(x, i).mul(tf.tensor3d(up, [2, 3, 5])).sum())(w);
      const g1 = tf.grad((x: tf.Tensor) =>
        tf.gather(x, tf.tensor1d([4, 0, 4, 1], 'int32'), 1).mul(tf.tensor2d(up1, [7, 4])).sum(),
      )(w);
      return [g0, g1];
    };
    const cpu = await onBackend('cpu', f);
    const wasm = await onBackend('wasm', f);
    close(wasm[0], cpu[0], 1e-6, 'axis 0');
    close(wasm[1], cpu[1], 1e-6, 'axis 1');
  });

  it('unsortedSegmentSum drops out-of-range ids and sums int32', async () => {
    for (const b of backends) {
      const [r] = await onBackend(b, () =>
        tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4], [5, 6]], undefined, 'int32'), tf.tensor1d([1, 1, 0], 'int32'), 3),
      );
      assert.deepEqual(r, [5, 6, 4, 6, 0, 0], `backend ${b}`);
    }
  });

  it('einsum forward on wasm matches cpu and a brute-force sum', async function () {
    const A = vals(2 * 3 * 4, 1);
    const B = vals(2 * 4 * 5, 2);
    const f = () => [
      tf.einsum('bij,bjk->bik', tf.tensor3d(A, [2, 3, 4]), tf.tensor3d(B, [2, 4, 5])),
      tf.einsum('bij,bjk->kib', tf.tensor3d(A, [2, 3, 4]), tf.tensor3d(B, [2, 4, 5])),
      tf.einsum('bij->jb', tf.tensor3d(A, [2, 3, 4])),
    ];
    // brute force for the first
    const ref: number[] = [];
    for (let b = 0; b < 2; b++)
      for (let i = 0; i < 3; i++)
        for (let k = 0; k < 5; k++) {
          let s = 0;
          for (let j = 0; j < 4; j++) s += A[b * 12 + i * 4 + j] * B[b * 20 + j * 5 + k];
          ref.push(s);
        }
    const cpu = await onBackend('cpu', f);
    close(cpu[0], ref, 1e-5, 'cpu bij,bjk');
    for (const b of backends) {
      const r = await onBackend(b, f);
      for (let t = 0; t < 3; t++) close(r[t], cpu[t], 1e-5, `${b} einsum ${t}`);
    }
    // einsumByOps directly (three operands, private summed index)
    const [three] = await onBackend('cpu', () =>
      einsumByOps('ij,jk,kl->il', tf.tensor2d([[1, 2]]), tf.tensor2d([[1, 0], [0, 1]]), tf.tensor2d([[3], [4]])),
    );
    assert.deepEqual(three, [11]);
    const [priv] = await onBackend('cpu', () => einsumByOps('ij,k->i', tf.tensor2d([[1, 2], [3, 4]]), tf.tensor1d([1, 1, 1])));
    assert.deepEqual(priv, [9, 21]);
  });

  it('einsum gradient equals the matMul gradient (incl. a broadcast index)', async () => {
    const A = vals(3 * 4, 5);
    const B = vals(4 * 2, 6);
    for (const b of backends) {
      const r = await onBackend(b, () => {
        const a = tf.tensor2d(A, [3, 4]);
        const bb = tf.tensor2d(B, [4, 2]);
        const w = tf.tensor2d([[1, -2], [0.5, 3], [2, 1]]);
        const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.einsum('ij,jk->ik', x, y).mul(w).sum())([a, bb]);
        const [ra, rb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D).mul(w).sum())([a, bb]);
        return [ga, gb, ra, rb];
      });
      close(r[0], r[2], 1e-5, `${b} dA`);
      close(r[1], r[3], 1e-5, `${b} dB`);
    }
    if (backends.includes('wasm')) {
      // 'ij,k->i' (k summed privately): d/dk = sum_ij dy_i a_ij, broadcast over k. tfjs's own cpu
      // Einsum gets this forward wrong ([1,2] shape), so this runs on wasm, where the kernel is ours.
      const [gk, fw] = await onBackend('wasm', () => {
        const a = tf.tensor2d(A, [3, 4]);
        const k = tf.ones([2]);
        return [tf.grad((kk: tf.Tensor) => tf.einsum('ij,k->i', a, kk).mul(tf.tensor1d([1, 2, 3])).sum())(k), tf.einsum('ij,k->i', a, k)];
      });
      let s = 0;
      for (let i = 0; i < 3; i++) for (let j = 0; j < 4; j++) s += (i + 1) * A[i * 4 + j];
      close(gk, [s, s], 1e-5, 'wasm broadcast grad');
      close(fw, [0, 1, 2].map((i) => 2 * (A[i * 4] + A[i * 4 + 1] + A[i * 4 + 2] + A[i * 4 + 3])), 1e-5, 'wasm private-index forward');
    }
  });

  it('gatherND gradient scatters and sums repeated indices', async () => {
    for (const b of backends) {
      const [g] = await onBackend(b, () =>
        tf.grad((x: tf.Tensor) => tf.gatherND(x, tf.tensor2d([[0, 1], [1, 2], [0, 1]], undefined, 'int32')).mul(tf.tensor1d([1, 2, 3])).sum())(
          tf.zeros([2, 3]),
        ),
      );
      assert.deepEqual(g, [0, 4, 0, 0, 0, 2], `backend ${b}`);
    }
  });

  it('transformer training-step gradients run on wasm and match cpu', async function () {
    if (!backends.includes('wasm')) this.skip();
    const X = vals(2 * 3 * 4, 21);
    const f = () => {
      const x = tf.tensor3d(X, [2, 3, 4]);
      const ops: Array<(a: tf.Tensor) => tf.Tensor> = [
        (a) => tf.softmax(a).mul(tf.range(0, 4)).sum(),
        (a) => tf.logSoftmax(a).mul(tf.range(0, 4)).sum(),
        (a) => {
          const m = tf.moments(a, -1, true);
          return a.sub(m.mean).mul(tf.rsqrt(m.variance.add(1e-5))).mul(tf.range(0, 4)).sum();
        },
        (a) => tf.relu(a).sum(),
        (a) => a.mul(tf.sigmoid(a)).sum(),
        (a) => a.mul(tf.erf(a.div(Math.SQRT2)).add(1)).mul(0.5).sum(),
        (a) => tf.tanh(a).mul(a).sum(),
        (a) => tf.cumsum(a, 1).square().sum(),
        (a) => tf.cumsum(a, 2, true, true).mul(tf.range(0, 4)).sum(),
        (a) => tf.matMul(a as tf.Tensor3D, a as tf.Tensor3D, false, true).square().sum(),
        (a) => tf.sqrt(a.square().add(1)).sum(),
        (a) => tf.where(tf.linalg.bandPart(tf.ones([3, 4]), -1, 0).cast('bool'), a, tf.fill([2, 3, 4], -1e9)).softmax().mul(a).sum(),
      ];
      return ops.map((op) => tf.grad(op)(x));
    };
    const cpu = await onBackend('cpu', f);
    const wasm = await onBackend('wasm', f);
    for (let i = 0; i < cpu.length; i++) close(wasm[i], cpu[i], 1e-4, `op ${i}`);
  });

  it('cumsum gradient along a middle axis is correct (tfjs-core transposed it)', async () => {
    for (const b of backends) {
      const [g] = await onBackend(b, () =>
        tf.grad((x: tf.Tensor) => tf.cumsum(x, 1).mul(tf.tensor3d([1, 2, 3, 4, 5, 6], [1, 3, 2])).sum())(tf.zeros([1, 3, 2])),
      );
      // d/dx[0,i,c] = sum_{t>=i} w[0,t,c]: column 0 weights 1,3,5 -> 9,8,5; column 1 weights 2,4,6 -> 12,10,6
      assert.deepEqual(g, [9, 12, 8, 10, 5, 6], `backend ${b}`);
    }
  });

  it('kernels leave no tensors behind', async () => {
    for (const b of backends) {
      const prev = tf.getBackend();
      await tf.setBackend(b);
      registerMissingKernels(b);
      const w = tf.ones([4, 3]);
      const ids = tf.tensor1d([1, 1], 'int32');
      const before = tf.memory().numTensors;
      const g = tf.grad((x: tf.Tensor) => tf.gather(x, ids).sum())(w);
      const e = tf.einsum('ij,kj->ik', w, w);
      assert.equal(tf.memory().numTensors, before + 2, `backend ${b}`);
      tf.dispose([g, e, w, ids]);
      await tf.setBackend(prev);
    }
  });
});
