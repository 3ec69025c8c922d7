/**
 * FactoredMatrix: a low-rank matrix M = A B kept as its two factors (the semantics of TransformerLens's
 * transformer_lens/FactoredMatrix.py: svd, norm, eigenvalues of B A, collapse_l/collapse_r; see
 * docs/methods/weights.md),
 * over ml-matrix `Matrix`. A is [ldim x mdim], B is [mdim x rdim]; mdim is usually d_head, so
 * SVD, eigenvalues and norms cost O(d_head^2 * d_model) and the ldim x rdim product is never
 * formed unless `.AB` is asked for.
 *
 * Conventions (TransformerLens): vectors are rows, the residual stream is x [.., d_model], a head's
 * OV circuit is W_V W_O (x -> x W_V W_O) and its QK circuit is W_Q W_K^T
 * (score(x_q, x_k) = x_q W_Q W_K^T x_k^T).
 */
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from 'ml-matrix';
import { ShapeError, ValueError, expectedFound } from '../../errors.js';
import { toMatrix } from '../../util/grid.js';

/** Host forms of a dense 2D matrix (tensors are read first, asynchronously: see readMatrix). */
export type MatrixInput = Matrix | number[][] | { data: ArrayLike<number>; shape: readonly [number, number] | readonly number[] };

/**
 * An ml-matrix Matrix from any host MatrixInput (a copy for arrays). Throws a typed error naming
 * `where` on a ragged, empty or non-finite input.
 */
export function asMatrix(x: MatrixInput, where = 'matrix'): Matrix {
  let out: Matrix;
  if (x instanceof Matrix) out = x;
  else if (Array.isArray(x)) out = new Matrix(toMatrix(x, where));
  else if (x && typeof x === 'object' && !((x as unknown) instanceof tf.Tensor) && 'data' in x && 'shape' in x) {
    const shape = x.shape;
    if (shape.length !== 2) throw new ShapeError(`${where}.shape`, expectedFound('2 dimensions', shape));
    const [r, c] = shape as [number, number];
    if (x.data.length !== r * c) throw new ShapeError(`${where}.data`, expectedFound(`${r} x ${c} = ${r * c} numbers`, x.data.length));
    out = fromFlat(x.data, r, c);
  } else {
    throw new ValueError(where, expectedFound('a Matrix, number[][] or {data, shape} (read a tensor with readMatrix first)', (x as unknown) instanceof tf.Tensor ? 'a tf.Tensor' : typeof x));
  }
  if (out.rows === 0 || out.columns === 0) throw new ShapeError(where, expectedFound('a non-empty matrix', `${out.rows} x ${out.columns}`));
  assertFinite(out, where);
  return out;
}

/** A rank-2 tensor as an ml-matrix Matrix, read with `await t.data()` (works on every backend). */
export async function readMatrix(t: tf.Tensor, where = 'matrix'): Promise<Matrix> {
  if (!(t instanceof tf.Tensor) || t.rank !== 2) throw new ShapeError(where, expectedFound('a rank-2 tensor', t instanceof tf.Tensor ? `shape [${t.shape.join(', ')}]` : typeof t));
  const [r, c] = t.shape as [number, number];
  return asMatrix({ data: await t.data(), shape: [r, c] }, where);
}

/** The row arrays backing an ml-matrix Matrix (ml-matrix stores one Float64Array per row). */
export function raw(m: Matrix): Float64Array[] {
  return (m as unknown as { data: Float64Array[] }).data;
}

/** A rows x cols Matrix from a row-major flat array (copied). */
export function fromFlat(data: ArrayLike<number>, rows: number, cols: number, offset = 0): Matrix {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) {
    const row = raw(m)[i];
    const base = offset + i * cols;
    for (let j = 0; j < cols; j++) row[j] = data[base + j];
  }
  return m;
}

/** Row-major Float32Array of a Matrix (for handing to tf). */
export function toFlat32(m: Matrix): Float32Array {
  const out = new Float32Array(m.rows * m.columns);
  for (let i = 0; i < m.rows; i++) out.set(raw(m)[i], i * m.columns);
  return out;
}

function assertFinite(m: Matrix, where: string): void {
  for (let i = 0; i < m.rows; i++) {
    const row = raw(m)[i];
    for (let j = 0; j < m.columns; j++) {
      if (!Number.isFinite(row[j])) throw new ValueError(`${where}[${i}][${j}]`, expectedFound('a finite number', row[j]));
    }
  }
}

/**
 * Thin Householder QR of a tall (rows >= cols) matrix: Q [rows x cols] with orthonormal columns and
 * R [cols x cols] upper triangular, M = Q R. Works on rank-deficient input. Column-major typed-array
 * loops (about 2 rows cols^2 flops for R and as many for Q).
 */
export function thinQR(m: Matrix): { Q: Matrix; R: Matrix } {
  const { R, reflectors, betas } = householder(m, true);
  const rows = m.rows;
  const n = m.columns;
  // Q = H_0 H_1 ... H_{n-1} [I_n; 0], applying the reflectors right to left; column j is only
  // touched by reflectors k <= j.
  const qc: Float64Array[] = Array.from({ length: n }, (_, j) => {
    const c = new Float64Array(rows);
    c[j] = 1;
    return c;
  });
  for (let k = n - 1; k >= 0; k--) {
    const beta = betas[k];
    if (beta === 0) continue;
    const v = reflectors[k];
    for (let j = k; j < n; j++) {
      const c = qc[j];
      let sdot = 0;
      for (let i = k; i < rows; i++) sdot += v[i] * c[i];
      const f = beta * sdot;
      if (f === 0) continue;
      for (let i = k; i < rows; i++) c[i] -= f * v[i];
    }
  }
  const Q = new Matrix(rows, n);
  const Qr = raw(Q);
  for (let i = 0; i < rows; i++) {
    const r = Qr[i];
    for (let j = 0; j < n; j++) r[j] = qc[j][i];
  }
  return { Q, R };
}

/** Householder triangularisation; reflector k is v = cols[k][k:] with H_k = I - beta_k v v^T. */
function householder(m: Matrix, keep: boolean): { R: Matrix; reflectors: Float64Array[]; betas: number[] } {
  const rows = m.rows;
  const n = m.columns;
  if (rows < n) throw new ShapeError('QR', expectedFound('rows >= columns', `${rows} x ${n}`));
  const cols: Float64Array[] = Array.from({ length: n }, () => new Float64Array(rows));
  const src = raw(m);
  for (let i = 0; i < rows; i++) {
    const r = src[i];
    for (let j = 0; j < n; j++) cols[j][i] = r[j];
  }
  const R = new Matrix(n, n);
  const Rr = raw(R);
  const betas = new Array<number>(n).fill(0);
  for (let k = 0; k < n; k++) {
    const x = cols[k];
    let nrm2 = 0;
    for (let i = k; i < rows; i++) nrm2 += x[i] * x[i];
    const nrm = Math.sqrt(nrm2);
    if (nrm === 0) {
      for (let j = k + 1; j < n; j++) Rr[k][j] = cols[j][k];
      continue;
    }
    const alpha = x[k] > 0 ? -nrm : nrm;
    // v = x[k:] - alpha e_k (stored in x[k:]); |v|^2 = |x|^2 - x_k^2 + (x_k - alpha)^2
    const vk = x[k] - alpha;
    const vnorm2 = nrm2 - x[k] * x[k] + vk * vk;
    x[k] = vk;
    Rr[k][k] = alpha;
    const beta = 2 / vnorm2;
    betas[k] = beta;
    for (let j = k + 1; j < n; j++) {
      const c = cols[j];
      let sdot = 0;
      for (let i = k; i < rows; i++) sdot += x[i] * c[i];
      const f = beta * sdot;
      for (let i = k; i < rows; i++) c[i] -= f * x[i];
      Rr[k][j] = c[k];
    }
  }
  return { R, reflectors: keep ? cols : [], betas };
}

/**
 * The R factor of a thin Householder QR of a tall matrix (rows >= cols): R [cols x cols], upper
 * triangular, with R^T R = M^T M, so ||M X||_F = ||R X||_F for every X. Works on rank-deficient
 * input (zero columns give zero rows of R). Column-major typed arrays: much faster than forming Q.
 */
export function qrR(m: Matrix): Matrix {
  return householder(m, false).R;
}

export interface FactoredSVD {
  /** Left singular vectors as columns, [ldim x k]. */
  U: Matrix;
  /** Singular values, descending, length k = min(ldim, mdim, rdim). */
  S: number[];
  /** Right singular vectors as columns, [rdim x k] (so M = U diag(S) V^T; TransformerLens returns the same V). */
  V: Matrix;
}

export interface Eigenvalues {
  /** Real parts, sorted by |lambda| descending. */
  re: number[];
  /** Imaginary parts, same order. */
  im: number[];
}

/**
 * M = A B with A [ldim x mdim] and B [mdim x rdim].
 */
export class FactoredMatrix {
  readonly A: Matrix;
  readonly B: Matrix;
  private _svd?: FactoredSVD;
  private _compressed?: { A: Matrix; B: Matrix };

  constructor(A: MatrixInput, B: MatrixInput) {
    this.A = asMatrix(A, 'FactoredMatrix A');
    this.B = asMatrix(B, 'FactoredMatrix B');
    if (this.A.columns !== this.B.rows) {
      throw new ShapeError(
        'FactoredMatrix(A, B)',
        expectedFound(`B with ${this.A.columns} rows (A is ${this.A.rows} x ${this.A.columns})`, `${this.B.rows} x ${this.B.columns}`),
      );
    }
  }

  get ldim(): number {
    return this.A.rows;
  }
  get mdim(): number {
    return this.A.columns;
  }
  get rdim(): number {
    return this.B.columns;
  }
  /** [ldim, rdim] of the product. */
  get shape(): [number, number] {
    return [this.ldim, this.rdim];
  }

  /** The dense product A B [ldim x rdim]. Formed on every call: ask only when it is small enough. */
  get AB(): Matrix {
    return this.A.mmul(this.B);
  }

  /** B A [mdim x mdim]; needs ldim == rdim (a square M). */
  get BA(): Matrix {
    if (this.ldim !== this.rdim) {
      throw new ShapeError('FactoredMatrix.BA', expectedFound('a square product (ldim == rdim)', `${this.ldim} x ${this.rdim}`));
    }
    return this.B.mmul(this.A);
  }

  /** The transpose, (A B)^T = B^T A^T, still factored. */
  get T(): FactoredMatrix {
    return new FactoredMatrix(this.B.transpose(), this.A.transpose());
  }

  /**
   * An equivalent factorisation with inner dimension <= min(ldim, rdim) (same product). When mdim is
   * already the smallest, this is (A, B) itself.
   */
  compressed(): { A: Matrix; B: Matrix } {
    if (this._compressed) return this._compressed;
    let A = this.A;
    let B = this.B;
    if (A.columns > A.rows) {
      // A^T = Q R (Q [mdim x ldim]) => A = R^T Q^T, AB = R^T (Q^T B)
      const { Q, R } = thinQR(A.transpose());
      A = R.transpose();
      B = Q.transpose().mmul(B);
    }
    if (B.rows > B.columns) {
      // B = Q R (Q [inner x rdim]) => AB = (A Q) R
      const { Q, R } = thinQR(B);
      A = A.mmul(Q);
      B = R;
    }
    this._compressed = { A, B };
    return this._compressed;
  }

  /**
   * SVD through the small factors: A = Q_A R_A, B^T = Q_B R_B (thin QR), core = R_A R_B^T [k x k],
   * core = U' S V'^T, then U = Q_A U', V = Q_B V'. Never forms ldim x rdim. Cached.
   */
  svd(): FactoredSVD {
    if (this._svd) return this._svd;
    const { A, B } = this.compressed();
    const qa = thinQR(A);
    const qb = thinQR(B.transpose());
    const core = qa.R.mmul(qb.R.transpose());
    const s = new SingularValueDecomposition(core, { autoTranspose: true });
    const S = Array.from(s.diagonal);
    const k = S.length;
    let Up = s.leftSingularVectors;
    let Vp = s.rightSingularVectors;
    if (Up.columns > k) Up = Up.subMatrix(0, Up.rows - 1, 0, k - 1);
    if (Vp.columns > k) Vp = Vp.subMatrix(0, Vp.rows - 1, 0, k - 1);
    this._svd = { U: qa.Q.mmul(Up), S, V: qb.Q.mmul(Vp) };
    return this._svd;
  }

  /** Singular values, descending. */
  singularValues(): number[] {
    return this.svd().S.slice();
  }

  /**
   * Eigenvalues of the square product A B, computed from B A [mdim x mdim] (the nonzero eigenvalues
   * agree; A B has ldim - mdim extra zero eigenvalues when ldim > mdim). Sorted by |lambda| descending.
   */
  eigenvalues(): Eigenvalues {
    return eigenvaluesOf(this.BA);
  }

  /** Frobenius norm, sqrt(trace((A^T A)(B B^T))): mdim x mdim work only. */
  norm(): number {
    return Math.sqrt(Math.max(0, frobSqFactored(this.A, this.B)));
  }

  /** this @ other, kept factored with the smallest inner dimension available. */
  matmul(other: FactoredMatrix | MatrixInput): FactoredMatrix {
    if (other instanceof FactoredMatrix) {
      if (other.ldim !== this.rdim) throw mmShape('FactoredMatrix.matmul', this.rdim, other.ldim);
      return this.matmul(other.A).matmul(other.B);
    }
    const M = asMatrix(other, 'FactoredMatrix.matmul(other)');
    if (M.rows !== this.rdim) throw mmShape('FactoredMatrix.matmul', this.rdim, M.rows);
    if (this.mdim <= this.rdim) return new FactoredMatrix(this.A, this.B.mmul(M));
    return new FactoredMatrix(this.AB, M);
  }

  /** other @ this, kept factored. */
  rmatmul(other: FactoredMatrix | MatrixInput): FactoredMatrix {
    if (other instanceof FactoredMatrix) return other.matmul(this);
    const M = asMatrix(other, 'FactoredMatrix.rmatmul(other)');
    if (M.columns !== this.ldim) throw mmShape('FactoredMatrix.rmatmul', this.ldim, M.columns);
    if (this.mdim <= this.ldim) return new FactoredMatrix(M.mmul(this.A), this.B);
    return new FactoredMatrix(M, this.AB);
  }

  /** diag(S) V^T [k x rdim]: drops the orthonormal left factor U, so ||collapseL() X||_F = ||A B X||_F for every X. */
  collapseL(): Matrix {
    const { S, V } = this.svd();
    const out = V.transpose();
    for (let i = 0; i < out.rows; i++) {
      const row = raw(out)[i];
      for (let j = 0; j < out.columns; j++) row[j] *= S[i];
    }
    return out;
  }

  /** U diag(S) [ldim x k]: drops the orthonormal right factor V. */
  collapseR(): Matrix {
    const { U, S } = this.svd();
    const out = U.clone();
    for (let i = 0; i < out.rows; i++) {
      const row = raw(out)[i];
      for (let j = 0; j < out.columns; j++) row[j] *= S[j];
    }
    return out;
  }

  /** The top-left k x k block of A B (rows/columns clipped to the shape), without forming A B. */
  corner(k = 3): number[][] {
    const r = Math.min(k, this.ldim);
    const c = Math.min(k, this.rdim);
    return this.A.subMatrix(0, r - 1, 0, this.mdim - 1).mmul(this.B.subMatrix(0, this.mdim - 1, 0, c - 1)).to2DArray();
  }

  /** Dense product as number[][] (small matrices only). */
  toArray(): number[][] {
    return this.AB.to2DArray();
  }
}

function mmShape(where: string, expected: number, found: number): ShapeError {
  return new ShapeError(where, expectedFound(`inner dimension ${expected}`, found));
}

/** ||A B||_F^2 = sum((A^T A) .* (B B^T)). */
export function frobSqFactored(A: Matrix, B: Matrix): number {
  const ga = A.transposeMultiply(A);
  const gb = B.mmulByTranspose();
  let s = 0;
  for (let i = 0; i < ga.rows; i++) {
    const ra = raw(ga)[i];
    const rb = raw(gb)[i];
    for (let j = 0; j < ga.columns; j++) s += ra[j] * rb[j];
  }
  return s;
}

/** Eigenvalues of a dense square matrix, sorted by modulus descending. */
export function eigenvaluesOf(M: Matrix): Eigenvalues {
  if (M.rows !== M.columns) throw new ShapeError('eigenvalues', expectedFound('a square matrix', `${M.rows} x ${M.columns}`));
  const e = new EigenvalueDecomposition(M);
  const idx = e.realEigenvalues.map((_, i) => i);
  const mod = (i: number) => Math.hypot(e.realEigenvalues[i], e.imaginaryEigenvalues[i]);
  idx.sort((a, b) => mod(b) - mod(a));
  return { re: idx.map((i) => e.realEigenvalues[i]), im: idx.map((i) => e.imaginaryEigenvalues[i]) };
}

/** R B for an upper-triangular R [k x k] and B [k x n] (typed-array loops, skipping the zero triangle). */
function upperTimes(R: Matrix, B: Matrix): Matrix {
  const k = R.rows;
  const n = B.columns;
  const out = new Matrix(k, n);
  const Rr = raw(R);
  const Br = raw(B);
  const Or = raw(out);
  for (let i = 0; i < k; i++) {
    const o = Or[i];
    for (let t = i; t < k; t++) {
      const r = Rr[i][t];
      if (r === 0) continue;
      const b = Br[t];
      for (let j = 0; j < n; j++) o[j] += r * b[j];
    }
  }
  return out;
}

/** A R^T for A [m x k] and an upper-triangular R [k x k]: out[i][j] = sum_{t >= j} A[i][t] R[j][t]. */
function timesUpperT(A: Matrix, R: Matrix): Matrix {
  const m = A.rows;
  const k = R.rows;
  const out = new Matrix(m, k);
  const Ar = raw(A);
  const Rr = raw(R);
  const Or = raw(out);
  for (let i = 0; i < m; i++) {
    const a = Ar[i];
    const o = Or[i];
    for (let j = 0; j < k; j++) {
      const r = Rr[j];
      let s = 0;
      for (let t = j; t < k; t++) s += a[t] * r[t];
      o[j] = s;
    }
  }
  return out;
}

/**
 * Norm-preserving left factor of A B: R_A B where A = Q_A R_A (thin QR). For every X,
 * ||A B X||_F = ||R_A B X||_F. Cheaper than collapseL (no SVD); inner dim = min(mdim, ldim).
 */
export function leftFactor(fm: FactoredMatrix): Matrix {
  const { A, B } = fm.compressed();
  return upperTimes(qrR(A), B);
}

/** Norm-preserving right factor of A B: A R_B^T where B^T = Q_B R_B. For every Y, ||Y A B||_F = ||Y A R_B^T||_F. */
export function rightFactor(fm: FactoredMatrix): Matrix {
  const { A, B } = fm.compressed();
  return timesUpperT(A, qrR(B.transpose()));
}

// ---------------------------------------------------------------------------------------------
// Per-head circuits from model.params (canonical TransformerLens layout).

export type Params = Record<string, tf.Tensor>;

/** The shape of the weight `name` (undefined when missing), checked for rank. */
function checkedShape(shape: number[] | undefined, name: string, rank: number): number[] {
  if (!shape) throw new ValueError(`params['${name}']`, expectedFound('a weight tensor', 'nothing (missing key)'));
  if (shape.length !== rank) throw new ShapeError(`params['${name}']`, expectedFound(`rank ${rank}`, `shape [${shape.join(', ')}]`));
  return shape;
}

/** params[name], checked for rank (shapes only: nothing is read). */
export function getParam(params: Params, name: string, rank: number): tf.Tensor {
  const t = params[name];
  checkedShape(t?.shape, name, rank);
  return t;
}

/**
 * Reads weight tensors asynchronously (`await t.data()`, every backend), each at most once, and serves
 * per-head slices as ml-matrix matrices. One reader per analysis shares the reads across heads.
 */
export class WeightReader {
  private readonly values = new Map<string, Promise<ArrayLike<number>>>();
  constructor(readonly params: Params) {}

  /** Host values of params[name] (row-major), read once. */
  read(name: string, rank: number): Promise<ArrayLike<number>> {
    const t = getParam(this.params, name, rank);
    if (t.isDisposed) throw new ValueError(`params['${name}']`, 'the weight tensor was disposed before the analysis read it');
    let v = this.values.get(name);
    if (!v) this.values.set(name, (v = t.data()));
    return v;
  }

  /** Slice [index] of a rank-3 weight [n, r, c] as an r x c Matrix. */
  async slice(name: string, index: number): Promise<Matrix> {
    const [n, r, c] = getParam(this.params, name, 3).shape as [number, number, number];
    if (!(Number.isInteger(index) && index >= 0 && index < n)) throw new ValueError(`${name}[${index}]`, expectedFound(`a head index in [0, ${n})`, index));
    return fromFlat(await this.read(name, 3), r, c, index * r * c);
  }

  /** W_Q[h] [d_model x d_head]. */
  WQ(layer: number, head: number): Promise<Matrix> {
    checkHead(this.params, layer, head);
    return this.slice(`blocks.${layer}.attn.W_Q`, head);
  }
  /** W_K of the KV head serving query head h, [d_model x d_head]. */
  WK(layer: number, head: number): Promise<Matrix> {
    return this.slice(`blocks.${layer}.attn.W_K`, checkHead(this.params, layer, head).kv);
  }
  /** W_V of the KV head serving query head h, [d_model x d_head]. */
  WV(layer: number, head: number): Promise<Matrix> {
    return this.slice(`blocks.${layer}.attn.W_V`, checkHead(this.params, layer, head).kv);
  }
  /** W_O[h] [d_head x d_model]. */
  WO(layer: number, head: number): Promise<Matrix> {
    checkHead(this.params, layer, head);
    return this.slice(`blocks.${layer}.attn.W_O`, head);
  }
  /** QK circuit W_Q W_K^T (rows: query side, columns: key side), factored (TransformerLens `model.QK`). */
  async QK(layer: number, head: number): Promise<FactoredMatrix> {
    const [q, k] = await Promise.all([this.WQ(layer, head), this.WK(layer, head)]);
    return new FactoredMatrix(q, k.transpose());
  }
  /** OV circuit W_V W_O (x -> x W_V W_O), factored (TransformerLens `model.OV`). */
  async OV(layer: number, head: number): Promise<FactoredMatrix> {
    const [v, o] = await Promise.all([this.WV(layer, head), this.WO(layer, head)]);
    return new FactoredMatrix(v, o);
  }
}

/** Heads of a layer: n_heads (query heads) and n_kv_heads, from the weight shapes. */
export function headCounts(params: Params, layer: number): { nHeads: number; nKvHeads: number; dHead: number; dModel: number } {
  return headCountsOf((name) => params[name]?.shape, layer);
}

/** headCounts from weight shapes alone (`shapeOf(name)`, undefined when missing): nothing is read or decoded. */
export function headCountsOf(shapeOf: (name: string) => number[] | undefined, layer: number): { nHeads: number; nKvHeads: number; dHead: number; dModel: number } {
  const q = `blocks.${layer}.attn.W_Q`;
  const k = `blocks.${layer}.attn.W_K`;
  const [nHeads, dModel, dHead] = checkedShape(shapeOf(q), q, 3) as [number, number, number];
  const nKvHeads = checkedShape(shapeOf(k), k, 3)[0];
  if (nHeads % nKvHeads !== 0) {
    throw new ShapeError(`blocks.${layer}.attn.W_K`, expectedFound(`a number of KV heads dividing ${nHeads}`, nKvHeads));
  }
  return { nHeads, nKvHeads, dHead, dModel };
}

/** KV head serving query head h (GQA): floor(h * n_kv / n_heads). */
export function kvHead(head: number, nHeads: number, nKvHeads: number): number {
  return Math.floor((head * nKvHeads) / nHeads);
}

/** Checks layer and head against the weights; returns the KV head serving the query head. */
export function checkHead(params: Params, layer: number, head: number): { kv: number } {
  if (!(Number.isInteger(layer) && layer >= 0 && params[`blocks.${layer}.attn.W_Q`])) {
    throw new ValueError('layer', expectedFound('an existing layer index', layer));
  }
  const { nHeads, nKvHeads } = headCounts(params, layer);
  if (!(Number.isInteger(head) && head >= 0 && head < nHeads)) {
    throw new ValueError(`head (layer ${layer})`, expectedFound(`an integer in [0, ${nHeads})`, head));
  }
  return { kv: kvHead(head, nHeads, nKvHeads) };
}

const readerOf = (src: Params | WeightReader): WeightReader => (src instanceof WeightReader ? src : new WeightReader(src));

/** QK circuit of a head: W_Q W_K^T, d_model x d_model, factored (rows: query side, columns: key side). */
export function QK(params: Params | WeightReader, layer: number, head: number): Promise<FactoredMatrix> {
  return readerOf(params).QK(layer, head);
}

/** OV circuit of a head: W_V W_O, d_model x d_model, factored (x -> x W_V W_O). */
export function OV(params: Params | WeightReader, layer: number, head: number): Promise<FactoredMatrix> {
  return readerOf(params).OV(layer, head);
}
