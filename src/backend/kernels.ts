/**
 * Kernels that some backends lack and that training needs, registered once per backend by
 * initBackend, never worked around at call sites.
 *
 * Measured on tfjs 4.22 (every kernel the cpu backend has, minus those the backend has):
 * - wasm lacks UnsortedSegmentSum (the gradient of Gather, i.e. of every embedding lookup),
 *   Einsum, Conv2DBackpropFilter, the depthwise-conv gradients, FFT/complex and ragged/string ops.
 *   tflens registers UnsortedSegmentSum and Einsum on any backend that lacks them.
 * - webgpu lacks none of the ops a transformer uses.
 * - No backend has a gradient for Einsum or GatherNd (tfjs-core registers none); tflens registers
 *   both gradients (they are backend-independent). tfjs-core's Cumsum gradient is wrong for a
 *   non-last axis; tflens replaces it. tfjs's own cpu Einsum mishandles an index summed inside one
 *   operand only ('ij,k->i'); the kernel here handles it, but it is only registered where missing. StridedSlice has no gradient either: use
 *   tf.slice, which has one.
 * Every other gradient a transformer training step uses (softmax, logSoftmax, layer norm pieces,
 * rsqrt/sqrt, ReLU/GELU/SiLU/erf/tanh, cumsum, batched matMul, transpose, where, concat, pad, tile)
 * was checked to work on wasm (test/kernels.test.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { ShapeError, ValueError, expectedFound } from '../errors.js';

const registered = new Set<string>();
let gradientsRegistered = false;

/** Names of the kernels tflens registered for a backend (for reports and tests). */
export const registeredKernels: Record<string, string[]> = {};

function hasKernel(kernelName: string, backendName: string): boolean {
  return tf.getKernel(kernelName, backendName) !== undefined;
}

export function registerMissingKernels(backendName: string): void {
  if (!gradientsRegistered) {
    gradientsRegistered = true;
    registerMissingGradients();
  }
  if (registered.has(backendName)) return;
  registered.add(backendName);
  const added: string[] = [];
  if (!hasKernel('UnsortedSegmentSum', backendName)) {
    tf.registerKernel({ kernelName: 'UnsortedSegmentSum', backendName, kernelFunc: unsortedSegmentSumKernel as any });
    added.push('UnsortedSegmentSum');
  }
  if (!hasKernel('Einsum', backendName)) {
    tf.registerKernel({ kernelName: 'Einsum', backendName, kernelFunc: einsumKernel as any });
    added.push('Einsum');
  }
  registeredKernels[backendName] = added;
}

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum: out[s, ...] = sum over i with ids[i] == s of x[i, ...]; ids outside
// [0, numSegments) are dropped (TensorFlow drops negative ids).

interface KernelArgs {
  inputs: Record<string, tf.TensorInfo>;
  attrs: Record<string, unknown>;
  backend: any;
}

function makeOutputInfo(backend: any, shape: number[], dtype: tf.DataType, values: tf.TypedArray): tf.TensorInfo {
  if (typeof backend.makeTensorInfo === 'function') return backend.makeTensorInfo(shape, dtype, values);
  if (typeof backend.makeOutput === 'function') return backend.makeOutput(shape, dtype, undefined, values);
  // Generic fallback: a tensor made through the engine (its TensorInfo is what kernels return).
  return tf.tensor(values, shape, dtype);
}

function unsortedSegmentSumKernel({ inputs, attrs, backend }: KernelArgs): tf.TensorInfo {
  const x = inputs.x;
  const ids = inputs.segmentIds;
  const numSegments = attrs.numSegments as number;
  if (!(Number.isInteger(numSegments) && numSegments >= 0)) {
    throw new ValueError('UnsortedSegmentSum numSegments', expectedFound('a non-negative integer', numSegments));
  }
  for (let d = 0; d < ids.shape.length; d++) {
    if (x.shape[d] !== ids.shape[d]) {
      throw new ShapeError(
        'UnsortedSegmentSum',
        expectedFound(`x shape starting with segmentIds shape ${JSON.stringify(ids.shape)}`, x.shape),
      );
    }
  }
  const nIds = ids.shape.reduce((a, b) => a * b, 1);
  const innerShape = x.shape.slice(ids.shape.length);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  const xv = backend.readSync(x.dataId) as tf.TypedArray;
  const iv = backend.readSync(ids.dataId) as tf.TypedArray;
  const dtype = x.dtype === 'int32' ? 'int32' : 'float32';
  const out = dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  for (let i = 0; i < nIds; i++) {
    const s = iv[i];
    if (s < 0 || s >= numSegments) continue;
    const o = s * inner;
    const xi = i * inner;
    for (let j = 0; j < inner; j++) out[o + j] += xv[xi + j];
  }
  return makeOutputInfo(backend, [numSegments, ...innerShape], dtype, out);
}

// ---------------------------------------------------------------------------------------------
// Einsum, built from transpose / reshape / sum / batched matMul (so it runs at matMul speed).
// Supports any number of operands with explicit "->" output, no ellipsis, no repeated index
// within one operand (the same subset tfjs supports on cpu/webgl).

interface ParsedEinsum {
  inputs: string[];
  output: string;
}

function parseEinsum(equation: string, nOperands: number): ParsedEinsum {
  const eq = equation.replace(/\s+/g, '');
  const where = `einsum("${equation}")`;
  if (eq.includes('.')) throw new ValueError(where, 'ellipsis (...) is not supported; name every axis');
  const arrow = eq.indexOf('->');
  const lhs = arrow >= 0 ? eq.slice(0, arrow) : eq;
  const inputs = lhs.split(',');
  let output: string;
  if (arrow >= 0) {
    output = eq.slice(arrow + 2);
  } else {
    // Implicit output: indices that occur exactly once, in alphabetical order (numpy convention).
    const counts = new Map<string, number>();
    for (const c of inputs.join('')) counts.set(c, (counts.get(c) ?? 0) + 1);
    output = [...counts.entries()]
      .filter(([, n]) => n === 1)
      .map(([c]) => c)
      .sort()
      .join('');
  }
  if (inputs.length !== nOperands) {
    throw new ValueError(where, expectedFound(`${inputs.length} operand(s) as the equation names`, nOperands));
  }
  const all = new Set(inputs.join(''));
  for (const term of [...inputs, output]) {
    if (!/^[a-zA-Z]*$/.test(term)) throw new ValueError(where, expectedFound('letters as axis names', term));
    if (new Set(term).size !== term.length) {
      throw new ValueError(where, `repeated index in "${term}" (diagonals) is not supported`);
    }
  }
  for (const c of output) if (!all.has(c)) throw new ValueError(where, `output index "${c}" occurs in no input`);
  return { inputs, output };
}

function permuteTo(x: tf.Tensor, from: string, to: string): tf.Tensor {
  if (from === to) return x;
  return tf.transpose(x, [...to].map((c) => from.indexOf(c)));
}

/** Contract two operands into the index string `keep` (which must contain every shared index kept). */
function contractPair(a: tf.Tensor, ia: string, b: tf.Tensor, ib: string, keep: Set<string>): [tf.Tensor, string] {
  // Sum out indices private to one operand and not kept.
  const sumPrivate = (x: tf.Tensor, ix: string, other: string): [tf.Tensor, string] => {
    const drop = [...ix].filter((c) => !keep.has(c) && !other.includes(c));
    if (drop.length === 0) return [x, ix];
    return [tf.sum(x, drop.map((c) => ix.indexOf(c))), [...ix].filter((c) => !drop.includes(c)).join('')];
  };
  [a, ia] = sumPrivate(a, ia, ib);
  [b, ib] = sumPrivate(b, ib, ia);
  const batch = [...ia].filter((c) => ib.includes(c) && keep.has(c));
  const contr = [...ia].filter((c) => ib.includes(c) && !keep.has(c));
  const left = [...ia].filter((c) => !ib.includes(c));
  const right = [...ib].filter((c) => !ia.includes(c));
  const size = (x: tf.Tensor, ix: string, cs: string[]) => cs.reduce((p, c) => p * x.shape[ix.indexOf(c)], 1);
  const dims = (x: tf.Tensor, ix: string, cs: string[]) => cs.map((c) => x.shape[ix.indexOf(c)]);
  const B = size(a, ia, batch);
  const M = size(a, ia, left);
  const K = size(a, ia, contr);
  const N = size(b, ib, right);
  const a3 = tf.reshape(permuteTo(a, ia, [...batch, ...left, ...contr].join('')), [B, M, K]);
  const b3 = tf.reshape(permuteTo(b, ib, [...batch, ...contr, ...right].join('')), [B, K, N]);
  const prod = tf.matMul(a3 as tf.Tensor3D, b3 as tf.Tensor3D);
  const outIdx = [...batch, ...left, ...right].join('');
  const outShape = [...dims(a, ia, batch), ...dims(a, ia, left), ...dims(b, ib, right)];
  return [tf.reshape(prod, outShape), outIdx];
}

/** einsum from tf ops (differentiable through the ops it uses). */
export function einsumByOps(equation: string, ...operands: tf.Tensor[]): tf.Tensor {
  const { inputs, output } = parseEinsum(equation, operands.length);
  return tf.tidy(() => {
    const sizes = new Map<string, number>();
    operands.forEach((t, i) => {
      if (t.rank !== inputs[i].length) {
        throw new ShapeError(`einsum("${equation}") operand ${i}`, expectedFound(`rank ${inputs[i].length}`, t.shape));
      }
      [...inputs[i]].forEach((c, d) => {
        const s = sizes.get(c);
        if (s !== undefined && s !== t.shape[d]) {
          throw new ShapeError(`einsum("${equation}") index "${c}"`, expectedFound(`size ${s}`, t.shape[d]));
        }
        sizes.set(c, t.shape[d]);
      });
    });
    let cur = operands[0];
    let idx = inputs[0];
    for (let k = 1; k < operands.length; k++) {
      const later = new Set([...output, ...inputs.slice(k + 1).join('')]);
      [cur, idx] = contractPair(cur, idx, operands[k], inputs[k], later);
    }
    // Sum what is left over and order as the output.
    const drop = [...idx].filter((c) => !output.includes(c));
    if (drop.length > 0) {
      cur = tf.sum(cur, drop.map((c) => idx.indexOf(c)));
      idx = [...idx].filter((c) => !drop.includes(c)).join('');
    }
    const res = permuteTo(cur, idx, output);
    return res === operands[0] ? tf.clone(res) : res;
  });
}

function einsumKernel({ inputs, attrs }: KernelArgs): tf.Tensor {
  // Registered-kernel inputs are the engine's Tensors; the tape is off inside kernels, so the
  // ops below are not recorded (the Einsum gradient below handles differentiation).
  const operands = Object.keys(inputs)
    .sort((a, b) => Number(a) - Number(b))
    .map((k) => inputs[k] as tf.Tensor);
  return einsumByOps(attrs.equation as string, ...operands);
}

// ---------------------------------------------------------------------------------------------
// Gradients tfjs-core lacks.

function registerMissingGradients(): void {
  // tfjs-core 4.22's Cumsum gradient transposes its result when the axis is not the last one,
  // which gives the wrong shape (rank >= 3) or wrong values; the adjoint of a cumulative sum is
  // the cumulative sum in the other direction, along the same axis.
  tf.registerGradient({
    kernelName: 'Cumsum',
    gradFunc: (dy: tf.Tensor | tf.Tensor[], _saved: tf.Tensor[], attrs: any) => {
      const g = Array.isArray(dy) ? dy[0] : dy;
      return { x: () => tf.cumsum(g, attrs.axis as number, attrs.exclusive as boolean, !attrs.reverse) };
    },
  });
  if (!tf.getGradient('Einsum')) {
    tf.registerGradient({
      kernelName: 'Einsum',
      saveAllInputs: true,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: any) => {
        const g = Array.isArray(dy) ? dy[0] : dy;
        const { inputs, output } = parseEinsum(attrs.equation as string, saved.length);
        const grads: Record<string, () => tf.Tensor> = {};
        saved.forEach((x, i) => {
          grads[String(i)] = () => {
            // d out / d x_i: einsum of dy with every other operand into x_i's indices; indices of
            // x_i that occur nowhere else were summed in the forward pass, so dy broadcasts there.
            const others = saved.filter((_, j) => j !== i);
            const otherIdx = inputs.filter((_, j) => j !== i);
            const avail = new Set([...output, ...otherIdx.join('')]);
            const target = inputs[i];
            const reduced = [...target].filter((c) => avail.has(c)).join('');
            const eq = `${[output, ...otherIdx].join(',')}->${reduced}`;
            let r = einsumByOps(eq, g, ...others);
            if (reduced !== target) {
              const shape = [...target].map((c, d) => (reduced.includes(c) ? x.shape[d] : 1));
              const ordered = permuteTo(r, reduced, [...target].filter((c) => reduced.includes(c)).join(''));
              r = tf.broadcastTo(tf.reshape(ordered, shape), x.shape);
            }
            return r;
          };
        });
        return grads;
      },
    });
  }
  if (!tf.getGradient('GatherNd')) {
    tf.registerGradient({
      kernelName: 'GatherNd',
      inputsToSave: ['params', 'indices'],
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = Array.isArray(dy) ? dy[0] : dy;
        const [params, indices] = saved;
        // ScatterNd sums updates at repeated indices, which is the adjoint of GatherNd.
        return {
          params: () => tf.scatterND(indices, g, params.shape),
          indices: () => tf.zerosLike(indices),
        };
      },
    });
  }
}
