/**
 * Exports: CSV / JSON for head scores and generic rows, NPY arrays. Every write is atomic
 * (see atomic.ts): a temporary file in the destination folder, fsync, rename.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import { FormatError, ResolveError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { rankHeads, type HeadRow, type HeadScores } from '../results.js';
import { writeFileAtomic } from './atomic.js';

export { writeFileAtomic, withAtomicFile, type AtomicData } from './atomic.js';

// ---------------------------------------------------------------------------------------------
// CSV

function csvCell(v: unknown): string {
  let s: string;
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return ''; // NaN and infinities: an empty (missing) cell, as readers expect
    s = String(v);
  } else if (typeof v === 'string') s = v;
  else if (typeof v === 'boolean' || typeof v === 'bigint') s = String(v);
  else s = JSON.stringify(v);
  // RFC 4180: quote fields holding a comma, a quote, CR or LF (and keep edge spaces intact).
  if (/[",\r\n]/.test(s) || /^\s|\s$/.test(s)) return `"${s.replace(/"/g, '""')}"`;
  return s;
}

/**
 * Rows to CSV text. Columns: `columns` if given, else every key in first-seen order. Missing or
 * null values and non-finite numbers (NaN, +-Infinity) are empty cells; numbers use JavaScript's
 * shortest round-trip form; objects are JSON. Fields holding a comma, quote or newline are quoted,
 * quotes doubled. Lines end with "\n"; the text ends with a newline.
 */
export function toCsv(rows: Record<string, unknown>[], columns?: string[]): string {
  if (!Array.isArray(rows)) throw new ValueError('rows', expectedFound('an array of objects', typeof rows));
  let cols = columns;
  if (!cols) {
    const seen = new Set<string>();
    cols = [];
    rows.forEach((r, i) => {
      if (typeof r !== 'object' || r === null || Array.isArray(r)) throw new ValueError(`rows[${i}]`, expectedFound('an object', r === null ? 'null' : typeof r));
      for (const k of Object.keys(r)) if (!seen.has(k)) (seen.add(k), cols!.push(k));
    });
  }
  const lines = [cols.map(csvCell).join(',')];
  for (const r of rows) lines.push(cols.map((c) => csvCell(r[c])).join(','));
  return lines.join('\n') + '\n';
}

/** How head rankings are ordered: by the signed score (largest first) or by its magnitude. */
export type RankBy = 'signed' | 'absolute';

export interface HeadExportOptions {
  /**
   * 'signed' (default): largest score first, so large negative effects come last; 'absolute':
   * largest |score| first (patching effects of either sign). NaN scores come last either way;
   * ties keep layer, then head order.
   */
  rankBy?: RankBy;
}

function rankByOf(opts: HeadExportOptions): RankBy {
  const by = opts.rankBy ?? 'signed';
  if (by !== 'signed' && by !== 'absolute') throw new ValueError('rankBy', expectedFound('"signed" or "absolute"', by));
  return by;
}

/** Head rows in ranking order (rankHeads for 'signed'; by |score| for 'absolute'). */
export function rankedHeadRows(hs: HeadScores, opts: HeadExportOptions = {}): HeadRow[] {
  const rows = rankHeads(hs);
  if (rankByOf(opts) === 'signed') return rows;
  const key = (x: number) => (Number.isNaN(x) ? -1 : Math.abs(x));
  return rows.sort((a, b) => key(b.score) - key(a.score) || a.layer - b.layer || a.head - b.head);
}

/** Head-score columns: layer, head, score, the `extra` columns in their order, then ci_lo, ci_hi when present. */
function headColumns(hs: HeadScores): string[] {
  const cols = ['layer', 'head', 'score', ...Object.keys(hs.extra ?? {})];
  if (hs.ci) cols.push('ci_lo', 'ci_hi');
  return cols;
}

/** CSV of a HeadScores, one row per head in ranking order (docs/formats.md lists the columns). */
export function headScoresToCsv(hs: HeadScores, opts: HeadExportOptions = {}): string {
  return toCsv(rankedHeadRows(hs, opts), headColumns(hs));
}

/**
 * JSON text of a HeadScores: {method, model, data, params, nLayers, nHeads, rank_by, ci?, rows},
 * rows in ranking order with the CSV's columns. Non-finite numbers are written as null (JSON has
 * no NaN or Infinity), anywhere in the document.
 */
export function headScoresToJson(hs: HeadScores, opts: HeadExportOptions = {}): string {
  const cols = headColumns(hs);
  const rows = rankedHeadRows(hs, opts).map((r) => Object.fromEntries(cols.map((c) => [c, r[c]])));
  const doc: Record<string, unknown> = {
    method: hs.method,
    model: hs.model ?? null,
    data: hs.data ?? null,
    params: hs.params,
    nLayers: hs.nLayers,
    nHeads: hs.nHeads,
    rank_by: rankByOf(opts),
  };
  if (hs.ci) doc.ci = { level: hs.ci.level, method: hs.ci.method };
  doc.rows = rows;
  return jsonText(doc);
}

/** Pretty JSON with a trailing newline; non-finite numbers become null (JSON.stringify's rule, made explicit). */
function jsonText(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n';
}

/** Write a HeadScores as CSV or JSON, atomically. */
export async function saveHeadScores(
  hs: HeadScores,
  file: string,
  format: 'csv' | 'json' = file.endsWith('.json') ? 'json' : 'csv',
  opts: HeadExportOptions = {},
): Promise<void> {
  if (format !== 'csv' && format !== 'json') throw new ValueError('format', expectedFound('"csv" or "json"', format));
  await writeFileAtomic(file, format === 'csv' ? headScoresToCsv(hs, opts) : headScoresToJson(hs, opts));
}

/** Write rows as CSV, atomically. */
export async function saveCsv(file: string, rows: Record<string, unknown>[], columns?: string[]): Promise<void> {
  await writeFileAtomic(file, toCsv(rows, columns));
}

/** Write any JSON value, atomically (pretty-printed, trailing newline; non-finite numbers as null). */
export async function saveJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, jsonText(value));
}

// ---------------------------------------------------------------------------------------------
// NPY (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html)

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const LE = os.endianness() === 'LE';

export interface NpyArray {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

function checkShape(shape: unknown, n: number, where: string): number[] {
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new ShapeError(`${where}: shape`, expectedFound('an array of non-negative integers', shape));
  }
  const count = shape.reduce((a: number, b: number) => a * b, 1);
  if (count !== n) throw new ShapeError(`${where}: shape`, expectedFound(`a shape with ${n} elements`, `${JSON.stringify(shape)} (${count} elements)`));
  return shape.slice();
}

/**
 * Write a float32 or int32 array as a .npy file (format v1.0, little-endian, C order), atomically.
 * `data` is a tf.Tensor (its shape is used unless `shape` is given), a Float32Array / Int32Array,
 * or a number array (written as float32). Header padded so the data starts 64-byte aligned.
 */
export async function writeNpy(file: string, data: tf.Tensor | Float32Array | Int32Array | number[], shape?: number[]): Promise<void> {
  let arr: Float32Array | Int32Array;
  let shp: number[];
  if (data instanceof tf.Tensor) {
    if (data.dtype !== 'float32' && data.dtype !== 'int32') throw new ValueError(`${file}: data`, expectedFound('a float32 or int32 tensor', data.dtype));
    arr = (await data.data()) as Float32Array | Int32Array;
    shp = checkShape(shape ?? data.shape, arr.length, file);
  } else if (data instanceof Float32Array || data instanceof Int32Array) {
    arr = data;
    shp = checkShape(shape ?? [data.length], arr.length, file);
  } else if (Array.isArray(data)) {
    data.forEach((v, i) => {
      if (typeof v !== 'number') throw new ValueError(`${file}: data[${i}]`, expectedFound('a number', typeof v));
    });
    arr = Float32Array.from(data);
    shp = checkShape(shape ?? [data.length], arr.length, file);
  } else {
    throw new ValueError(`${file}: data`, expectedFound('a tf.Tensor, Float32Array, Int32Array or number[]', typeof data));
  }
  const descr = arr instanceof Float32Array ? '<f4' : '<i4';
  const shapeStr = shp.length === 1 ? `(${shp[0]},)` : `(${shp.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  if (header.length > 65535) throw new ShapeError(`${file}: shape`, 'too many dimensions for an NPY v1.0 header');
  const pre = new Uint8Array(10);
  pre.set(NPY_MAGIC, 0);
  pre[6] = 1;
  pre[7] = 0;
  new DataView(pre.buffer).setUint16(8, header.length, true);
  let bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (!LE) {
    bytes = bytes.slice();
    for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
  }
  await writeFileAtomic(file, [pre, Buffer.from(header, 'latin1'), bytes]);
}

/** Parse NPY bytes. Accepts v1/v2/v3 headers, C order, dtypes <f4, <i4 and (converted) <f8, <i8, |u1, |b1. */
export function parseNpy(buf: Uint8Array, where: string): NpyArray {
  if (buf.length < 10 || NPY_MAGIC.some((b, i) => buf[i] !== b)) throw new FormatError(where, 'not an NPY file (missing the \\x93NUMPY magic)');
  const major = buf[6];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let hlen: number;
  let start: number;
  if (major === 1) {
    hlen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw new FormatError(where, 'NPY file truncated in its header');
    hlen = dv.getUint32(8, true);
    start = 12;
  } else {
    throw new FormatError(where, `unsupported NPY format version ${major}.${buf[7]}`);
  }
  if (start + hlen > buf.length) throw new FormatError(where, `NPY header length ${hlen} goes beyond the end of the file (${buf.length} bytes)`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(start, start + hlen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeTxt = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeTxt === undefined) {
    throw new FormatError(where, `NPY header is not a dict with descr, fortran_order and shape: ${JSON.stringify(header.trim().slice(0, 120))}`);
  }
  if (fortran === 'True') throw new FormatError(where, 'NPY array is in Fortran order; expected C order (save with np.ascontiguousarray)');
  const shape = shapeTxt
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+L?$/.test(s)) throw new FormatError(where, `NPY shape entry "${s}" is not a non-negative integer`);
      return parseInt(s, 10);
    });
  const count = shape.reduce((a, b) => a * b, 1);
  const sizes: Record<string, number> = { '<f4': 4, '<i4': 4, '<f8': 8, '<i8': 8, '|u1': 1, '|b1': 1, '<u1': 1 };
  const size = sizes[descr];
  if (size === undefined) throw new FormatError(where, `NPY dtype "${descr}" is not supported; expected <f4 or <i4 (also <f8, <i8, |u1, |b1)`);
  const off = start + hlen;
  if (buf.length - off !== count * size) {
    throw new FormatError(where, `NPY data holds ${buf.length - off} bytes but shape (${shape.join(', ')}) x ${descr} needs ${count * size}`);
  }
  const body = new DataView(buf.buffer, buf.byteOffset + off, count * size);
  if (descr === '<f4' || descr === '<f8') {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const v = size === 4 ? body.getFloat32(4 * i, true) : body.getFloat64(8 * i, true);
      out[i] = v;
      if (size === 8 && Number.isFinite(v) && !Number.isFinite(out[i])) throw new ValueError(where, `float64 value ${v} at flat index ${i} is beyond the float32 range`);
    }
    return { dtype: 'float32', shape, data: out };
  }
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    if (size === 4) out[i] = body.getInt32(4 * i, true);
    else if (size === 1) out[i] = body.getUint8(i);
    else {
      const v = body.getBigInt64(8 * i, true);
      if (v > 2147483647n || v < -2147483648n) throw new ValueError(where, `int64 value ${v} at flat index ${i} does not fit in int32`);
      out[i] = Number(v);
    }
  }
  return { dtype: 'int32', shape, data: out };
}

/** Read a .npy file into {dtype, shape, data}. */
export async function readNpy(file: string): Promise<NpyArray> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    throw new ResolveError(file, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read: ${(e as Error).message}`);
  }
  return parseNpy(buf, file);
}

/** Read a .npy file into a tf tensor (float32 or int32). */
export async function readNpyTensor(file: string): Promise<tf.Tensor> {
  const a = await readNpy(file);
  return tf.tensor(a.data, a.shape, a.dtype);
}
