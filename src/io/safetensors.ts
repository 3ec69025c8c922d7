/**
 * safetensors reading and writing (https://huggingface.co/docs/safetensors).
 *
 * Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object mapping tensor
 * names to {dtype, shape, data_offsets}, plus an optional "__metadata__" string map), then the
 * data section; data_offsets are [begin, end) byte offsets relative to the start of the data.
 *
 * Validation follows the reference reader (huggingface/safetensors): the header may be padded
 * with JSON whitespace on either side; sorted by offset, the tensors must fill the data section
 * exactly (no gap, no overlap, no trailing bytes); a key written twice is refused as well.
 *
 * Reading goes through a file descriptor: each tensor's bytes are read straight into its own typed
 * array at its offset, never the whole file into one buffer. Every structural problem is a
 * FormatError naming the file and the tensor.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'node:fs';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { FormatError, ResolveError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { withAtomicFile } from './atomic.js';
import { describeErrno, pathExists } from './files.js';
import { describeJson, findDuplicateKey, isPlainObject, parseJsonStrict } from './json.js';
import { f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, halfToFloat32 } from '../backend/webgpu/half.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64' | 'F64' | 'I8' | 'U8' | 'BOOL' | 'I16' | 'F8_E4M3' | 'F8_E5M2';

/** Bytes per element of each supported dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Largest header accepted (the reference implementation uses the same 100 MB cap). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** [begin, end) relative to the start of the data section. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** N, the JSON header's byte length. */
  headerLength: number;
  /** Absolute file offset of the data section (8 + N). */
  dataStart: number;
  /** Bytes in the data section (fileSize - 8 - N). */
  dataSize: number;
  fileSize: number;
  /** Tensors in header order. */
  tensors: SafetensorsEntry[];
  metadata: Record<string, string>;
}

export interface SafetensorsArray {
  /** The dtype stored in the file. */
  dtype: SafetensorsDtype;
  shape: number[];
  /** Floating types (F32, F16, BF16, F64, F8_E4M3, F8_E5M2) as float32; integer and BOOL types as int32. */
  data: Float32Array | Int32Array;
}

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

/** Read the 8-byte little-endian header length, checking it against the file size. */
export function readHeaderLength(bytes: Uint8Array, fileSize: number, where: string): number {
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new ValueError(`${where}: fileSize`, expectedFound('a non-negative integer', fileSize));
  }
  if (fileSize < 8 || bytes.byteLength < 8) {
    throw new FormatError(
      where,
      `file is truncated: ${Math.min(fileSize, bytes.byteLength)} bytes, shorter than the 8-byte header-length prefix of a safetensors file`,
    );
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo; // exact below 2^53; anything with hi > 0 is far beyond the cap anyway
  if (n === 0) throw new FormatError(where, 'header length is 0; expected a JSON header of at least 2 bytes ("{}")');
  if (hi !== 0 || n > MAX_HEADER_BYTES) {
    throw new FormatError(
      where,
      `header length ${hi !== 0 ? `${hi} * 2^32 + ${lo}` : n} bytes is too large (limit ${MAX_HEADER_BYTES} bytes); not a safetensors file or a corrupt header length`,
    );
  }
  if (8 + n > fileSize) {
    throw new FormatError(
      where,
      `header length ${n} bytes goes beyond the end of the file (file is ${fileSize} bytes, header would end at byte ${8 + n}); the file is truncated or not safetensors`,
    );
  }
  return n;
}

/**
 * Parse and validate a safetensors header. `bytes` holds at least the first 8 + N bytes of the
 * file (the whole file is fine too); `fileSize` is the full file size, used to bound the offsets;
 * `where` (usually the file path) prefixes every error.
 */
export function parseSafetensorsHeader(bytes: Uint8Array, fileSize: number, where: string): SafetensorsHeader {
  const n = readHeaderLength(bytes, fileSize, where);
  if (bytes.byteLength < 8 + n) {
    throw new ValueError(`${where}: bytes`, expectedFound(`at least the ${8 + n} header bytes`, `${bytes.byteLength} bytes`));
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new FormatError(where, `header (${n} bytes) is not valid UTF-8`);
  }
  // JSON whitespace may pad the header on either side (writers align the data section with it).
  const lead = text.length - text.replace(/^[ \t\n\r]+/, '').length;
  if (text.charCodeAt(lead) !== 0x7b /* { */) {
    throw new FormatError(where, `header must be a JSON object starting with "{", found ${JSON.stringify(text.slice(lead, lead + 20))}`);
  }
  const json = parseJsonStrict(text, where, 'header');
  if (!isPlainObject(json)) throw new FormatError(where, `header must be a JSON object, found ${describeJson(json)}`);

  const dataStart = 8 + n;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (raw === null) continue;
      if (!isPlainObject(raw)) throw new FormatError(where, `__metadata__ must be an object of strings, found ${describeJson(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') throw new FormatError(where, `__metadata__["${k}"] must be a string, found ${describeJson(v)}`);
      }
      metadata = { ...(raw as Record<string, string>) };
      continue;
    }
    const t = `tensor "${name}"`;
    if (!isPlainObject(raw)) throw new FormatError(where, `${t}: expected an object {dtype, shape, data_offsets}, found ${describeJson(raw)}`);
    const { dtype, shape, data_offsets: offs } = raw;
    if (dtype === undefined) throw new FormatError(where, `${t}: missing field "dtype"`);
    if (!isDtype(dtype)) {
      throw new FormatError(where, `${t}: unknown dtype ${JSON.stringify(dtype)}; expected one of ${Object.keys(DTYPE_SIZE).join(', ')}`);
    }
    if (shape === undefined) throw new FormatError(where, `${t}: missing field "shape"`);
    if (!Array.isArray(shape)) throw new FormatError(where, `${t}: shape must be an array of non-negative integers, found ${describeJson(shape)}`);
    for (const d of shape) {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw new FormatError(where, `${t}: shape ${JSON.stringify(shape)} holds ${JSON.stringify(d)}; expected non-negative integers`);
      }
    }
    const count = numel(shape as number[]);
    if (!Number.isSafeInteger(count * DTYPE_SIZE[dtype])) {
      throw new FormatError(where, `${t}: shape ${JSON.stringify(shape)} is too large (${count} elements)`);
    }
    if (offs === undefined) throw new FormatError(where, `${t}: missing field "data_offsets"`);
    if (!Array.isArray(offs) || offs.length !== 2) {
      throw new FormatError(where, `${t}: data_offsets must be [begin, end], found ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs;
    for (const o of [b, e]) {
      if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
        throw new FormatError(where, `${t}: data_offsets ${JSON.stringify(offs)} must be non-negative integers`);
      }
    }
    if (b > e) throw new FormatError(where, `${t}: data_offsets [${b}, ${e}] have begin > end`);
    if (e > dataSize) {
      throw new FormatError(
        where,
        `${t}: data_offsets [${b}, ${e}] are out of range: the data section holds ${dataSize} bytes (file truncated?)`,
      );
    }
    const want = count * DTYPE_SIZE[dtype];
    if (e - b !== want) {
      throw new FormatError(
        where,
        `${t}: data_offsets [${b}, ${e}] span ${e - b} bytes but shape ${JSON.stringify(shape)} x ${dtype} (${DTYPE_SIZE[dtype]} bytes) needs ${want}`,
      );
    }
    tensors.push({ name, dtype, shape: (shape as number[]).slice(), dataOffsets: [b, e] });
  }
  checkContiguous(tensors, dataSize, where);
  return { headerLength: n, dataStart, dataSize, fileSize, tensors, metadata };
}

/**
 * The reference reader's layout rule: sorted by offset, the tensors tile the data section exactly,
 * from byte 0 to its last byte, with no gap, no shared byte and nothing after the last tensor.
 */
function checkContiguous(tensors: readonly SafetensorsEntry[], dataSize: number, where: string): void {
  const sorted = tensors.slice().sort((x, y) => x.dataOffsets[0] - y.dataOffsets[0] || x.dataOffsets[1] - y.dataOffsets[1]);
  let end = 0;
  let prev: SafetensorsEntry | null = null;
  const span = (t: SafetensorsEntry) => `"${t.name}" [${t.dataOffsets.join(', ')}]`;
  for (const t of sorted) {
    const [b, e] = t.dataOffsets;
    if (prev && b < end) throw new FormatError(where, `tensors ${span(prev)} and ${span(t)} have overlapping data_offsets`);
    if (b > end) {
      const after = prev ? `between ${span(prev)} and ${span(t)}` : `before the first tensor ${span(t)}`;
      throw new FormatError(where, `data bytes ${end}..${b} ${after} belong to no tensor; tensors must fill the data section contiguously`);
    }
    end = e;
    prev = t;
  }
  if (end !== dataSize) {
    throw new FormatError(
      where,
      `${dataSize - end} trailing bytes after the last tensor: the tensors end at data byte ${end} but the data section holds ${dataSize} bytes (extra data appended to the file?)`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// dtype conversions (F16 / BF16 bits: the helpers of src/backend/webgpu/half.ts, under the names this module exported)

/** IEEE half (binary16) bits to a number. */
export const halfToFloat = f16BitsToF32;
/** A number to IEEE half bits, rounding to nearest even; overflow gives +-Infinity. */
export const floatToHalf = f32ToF16Bits;
/** A number to bfloat16 bits (upper half of float32, rounded to nearest even). */
export const floatToBf16 = f32ToBf16Bits;

/**
 * FP8 E4M3 (the OCP "E4M3FN" of torch.float8_e4m3fn) bits to a number: 1 sign, 4 exponent bits
 * (bias 7), 3 mantissa bits; no infinities, S.1111.111 is NaN, largest finite 448, smallest
 * subnormal 2^-9.
 */
export function f8e4m3ToFloat(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 0x7;
  if (e === 0xf && m === 0x7) return NaN;
  if (e === 0) return s * m * 2 ** -9;
  return s * (1 + m / 8) * 2 ** (e - 7);
}

/**
 * FP8 E5M2 (torch.float8_e5m2) bits to a number: IEEE-style with 1 sign, 5 exponent bits (bias
 * 15), 2 mantissa bits; exponent 31 is infinity (mantissa 0) or NaN, largest finite 57344,
 * smallest subnormal 2^-16.
 */
export function f8e5m2ToFloat(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >> 2) & 0x1f;
  const m = b & 0x3;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** -16;
  return s * (1 + m / 4) * 2 ** (e - 15);
}

const F8_TABLES: Partial<Record<'F8_E4M3' | 'F8_E5M2', Float32Array>> = {};
/** All 256 values of an FP8 format as float32 (exact: every FP8 value is a float32). */
function f8Table(dtype: 'F8_E4M3' | 'F8_E5M2'): Float32Array {
  const decode = dtype === 'F8_E4M3' ? f8e4m3ToFloat : f8e5m2ToFloat;
  return (F8_TABLES[dtype] ??= Float32Array.from({ length: 256 }, (_, b) => decode(b)));
}

function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i + size <= bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/** Fill `target` from the file at `position`, looping over short reads. */
async function readExact(fh: FileHandle, target: Uint8Array, position: number, where: string): Promise<void> {
  let off = 0;
  while (off < target.byteLength) {
    const len = Math.min(target.byteLength - off, 1 << 30);
    const { bytesRead } = await fh.read(target, off, len, position + off);
    if (bytesRead === 0) {
      throw new FormatError(where, `file ended at byte ${position + off} while reading ${target.byteLength} bytes at ${position} (file changed while reading?)`);
    }
    off += bytesRead;
  }
}

/** Read one tensor's bytes from an open file and convert them to float32 / int32. */
async function readEntry(fh: FileHandle, header: SafetensorsHeader, entry: SafetensorsEntry, where: string): Promise<SafetensorsArray> {
  const bytes = new Uint8Array(entry.dataOffsets[1] - entry.dataOffsets[0]);
  await readExact(fh, bytes, header.dataStart + entry.dataOffsets[0], where);
  return decodeEntry(entry, bytes, where);
}

/**
 * A tensor's values from its raw little-endian bytes (`bytes` must own its buffer from offset 0, as
 * a fresh read does; it may be reused for the result): float types as float32, integer types as int32.
 */
export function decodeEntry(entry: SafetensorsEntry, bytes: Uint8Array, where: string): SafetensorsArray {
  const count = numel(entry.shape);
  const size = DTYPE_SIZE[entry.dtype];
  const t = `tensor "${entry.name}"`;
  if (!LITTLE_ENDIAN_HOST) swapBytes(bytes, size);
  const view = <A>(make: (buf: ArrayBuffer, off: number, n: number) => A, n = count): A => make(bytes.buffer as ArrayBuffer, bytes.byteOffset, n);
  const out = (data: Float32Array | Int32Array): SafetensorsArray => ({ dtype: entry.dtype, shape: entry.shape, data });
  switch (entry.dtype) {
    case 'F32':
      return out(view((b, o, n) => new Float32Array(b, o, n)));
    case 'I32':
      return out(view((b, o, n) => new Int32Array(b, o, n)));
    case 'F16':
    case 'BF16':
      return out(halfToFloat32(view((b, o, n) => new Uint16Array(b, o, n)), entry.dtype === 'F16' ? 'f16' : 'bf16'));
    case 'F64': {
      const d = view((b, o, n) => new Float64Array(b, o, n));
      const f = new Float32Array(count);
      for (let i = 0; i < count; i++) {
        f[i] = d[i];
        if (!Number.isFinite(f[i]) && Number.isFinite(d[i])) {
          throw new ValueError(`${where}: ${t}`, `F64 value ${d[i]} at flat index ${i} is beyond the float32 range`);
        }
      }
      return out(f);
    }
    case 'I64': {
      const w = view((b, o, n) => new Int32Array(b, o, n), 2 * count); // little-endian pairs (low, high)
      const v = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const lo = w[2 * i];
        const hi = w[2 * i + 1];
        if (hi !== (lo < 0 ? -1 : 0)) {
          const big = (BigInt(hi) << 32n) + BigInt(lo >>> 0);
          throw new ValueError(`${where}: ${t}`, `I64 value ${big} at flat index ${i} does not fit in int32`);
        }
        v[i] = lo;
      }
      return out(v);
    }
    case 'I16':
      return out(Int32Array.from(view((b, o, n) => new Int16Array(b, o, n))));
    case 'I8':
      return out(Int32Array.from(view((b, o, n) => new Int8Array(b, o, n))));
    case 'U8':
    case 'BOOL':
      return out(Int32Array.from(bytes.subarray(0, count)));
    case 'F8_E4M3':
    case 'F8_E5M2': {
      const lut = f8Table(entry.dtype);
      return out(Float32Array.from(bytes.subarray(0, count), (x) => lut[x]));
    }
  }
}

async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ResolveError(file, 'file not found');
    if (code === 'EISDIR') throw new ResolveError(file, 'expected a safetensors file, found a folder');
    throw new ResolveError(file, `cannot open: ${describeErrno(e)}`);
  }
}

async function readHeaderFrom(fh: FileHandle, where: string): Promise<SafetensorsHeader> {
  const st = await fh.stat();
  if (!st.isFile()) throw new ResolveError(where, 'expected a regular safetensors file');
  const size = st.size;
  const prefix = new Uint8Array(8);
  if (size >= 8) await readExact(fh, prefix, 0, where);
  const n = readHeaderLength(prefix, size, where);
  const all = new Uint8Array(8 + n);
  all.set(prefix, 0);
  await readExact(fh, all.subarray(8), 8, where);
  return parseSafetensorsHeader(all, size, where);
}

function selectEntries(header: SafetensorsHeader, names: readonly string[] | undefined, where: string): SafetensorsEntry[] {
  if (!names) return header.tensors;
  const byName = new Map(header.tensors.map((t) => [t.name, t]));
  return names.map((nm) => {
    const e = byName.get(nm);
    if (!e) {
      const known = header.tensors.slice(0, 8).map((t) => t.name).join(', ');
      throw new ValueError(`${where}: names`, `tensor "${nm}" is not in the file (it holds ${header.tensors.length} tensors: ${known}${header.tensors.length > 8 ? ', ...' : ''})`);
    }
    return e;
  });
}

/** The header of a safetensors file: names, dtypes, shapes, offsets and metadata; reads no data. */
export async function safetensorsInfo(file: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(file);
  try {
    return await readHeaderFrom(fh, file);
  } finally {
    await fh.close();
  }
}

/**
 * Read tensors as typed arrays (no tf tensors): floating dtypes as Float32Array, integer and BOOL
 * dtypes as Int32Array (I64 values outside int32 are a ValueError naming the tensor).
 */
export async function readSafetensorsArrays(file: string, opts: { names?: readonly string[] } = {}): Promise<Record<string, SafetensorsArray>> {
  const fh = await openForRead(file);
  try {
    const header = await readHeaderFrom(fh, file);
    const out: Record<string, SafetensorsArray> = {};
    for (const e of selectEntries(header, opts.names, file)) out[e.name] = await readEntry(fh, header, e, file);
    return out;
  } finally {
    await fh.close();
  }
}

/** A tf tensor of decoded safetensors values: float32, int32, or bool for BOOL. */
export function arrayToTensor(a: SafetensorsArray): tf.Tensor {
  if (a.dtype === 'BOOL') return tf.tensor(Uint8Array.from(a.data), a.shape, 'bool');
  return tf.tensor(a.data, a.shape, a.data instanceof Float32Array ? 'float32' : 'int32');
}

/**
 * Read a safetensors file into tf tensors: F32/F16/BF16/F64/F8_E4M3/F8_E5M2 as float32, I32/I64/I16/I8/U8 as int32,
 * BOOL as bool. `names` reads only those tensors (a missing name is a ValueError). On error no
 * tensor is left allocated.
 */
export async function readSafetensors(file: string, opts: { names?: readonly string[] } = {}): Promise<Record<string, tf.Tensor>> {
  const fh = await openForRead(file);
  const out: Record<string, tf.Tensor> = {};
  try {
    const header = await readHeaderFrom(fh, file);
    for (const e of selectEntries(header, opts.names, file)) {
      // One tensor at a time: its typed array is dropped as soon as the tensor holds the data.
      out[e.name] = arrayToTensor(await readEntry(fh, header, e, file));
    }
    return out;
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// writing

export type WritableDtype = 'F32' | 'I32' | 'I64' | 'F16' | 'BF16' | 'F64' | 'U8' | 'BOOL';

export interface RawTensor {
  dtype: WritableDtype;
  shape: number[];
  data: ArrayLike<number>;
}

/** Check a raw entry's dtype, shape and data length; returns its element count. */
function checkRaw(name: string, t: RawTensor, where: string): number {
  const w = `${where}: tensor "${name}"`;
  if (!isDtype(t.dtype) || !['F32', 'I32', 'I64', 'F16', 'BF16', 'F64', 'U8', 'BOOL'].includes(t.dtype)) {
    throw new ValueError(`${w}.dtype`, expectedFound('one of F32, I32, I64, F16, BF16, F64, U8, BOOL', t.dtype));
  }
  if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new ShapeError(`${w}.shape`, expectedFound('an array of non-negative integers', t.shape));
  }
  const count = numel(t.shape);
  const data = t.data;
  if (!data || typeof data.length !== 'number' || data.length !== count) {
    throw new ShapeError(`${w}.data`, expectedFound(`${count} values for shape ${JSON.stringify(t.shape)}`, `${data?.length} values`));
  }
  return count;
}

/** Little-endian bytes of a checked raw entry (integer dtypes: range-checked). */
function encodeRaw(name: string, t: RawTensor, where: string): Uint8Array {
  const w = `${where}: tensor "${name}"`;
  const count = checkRaw(name, t, where);
  const data = t.data;
  const isInt = t.dtype === 'I32' || t.dtype === 'I64' || t.dtype === 'U8' || t.dtype === 'BOOL';
  if (isInt) {
    const [lo, hi] =
      t.dtype === 'I32' ? [-(2 ** 31), 2 ** 31 - 1] : t.dtype === 'I64' ? [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER] : t.dtype === 'U8' ? [0, 255] : [0, 1];
    for (let i = 0; i < count; i++) {
      const v = data[i];
      if (!Number.isInteger(v) || v < lo || v > hi) {
        throw new ValueError(`${w}.data[${i}]`, expectedFound(`an integer in [${lo}, ${hi}] for ${t.dtype}`, v));
      }
    }
  }
  let arr: ArrayBufferView;
  switch (t.dtype) {
    case 'F32':
      arr = data instanceof Float32Array ? data : Float32Array.from(data);
      break;
    case 'F64':
      arr = Float64Array.from(data);
      break;
    case 'I32':
      arr = data instanceof Int32Array ? data : Int32Array.from(data);
      break;
    case 'I64': {
      const b = new BigInt64Array(count);
      for (let i = 0; i < count; i++) b[i] = BigInt(data[i]);
      arr = b;
      break;
    }
    case 'F16': {
      const h = new Uint16Array(count);
      for (let i = 0; i < count; i++) h[i] = floatToHalf(data[i]);
      arr = h;
      break;
    }
    case 'BF16': {
      const h = new Uint16Array(count);
      for (let i = 0; i < count; i++) h[i] = floatToBf16(data[i]);
      arr = h;
      break;
    }
    case 'U8':
    case 'BOOL':
      arr = Uint8Array.from(data);
      break;
  }
  let bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (!LITTLE_ENDIAN_HOST) {
    bytes = bytes.slice();
    swapBytes(bytes, DTYPE_SIZE[t.dtype]);
  }
  return bytes;
}

async function tensorToRaw(name: string, t: tf.Tensor, where: string): Promise<RawTensor> {
  if (t.isDisposed) throw new ValueError(`${where}: tensor "${name}"`, 'the tensor is disposed');
  const data = await t.data();
  switch (t.dtype) {
    case 'float32':
      return { dtype: 'F32', shape: t.shape, data: data as Float32Array };
    case 'int32':
      return { dtype: 'I32', shape: t.shape, data: data as Int32Array };
    case 'bool':
      return { dtype: 'BOOL', shape: t.shape, data: data as Uint8Array };
    default:
      throw new ValueError(`${where}: tensor "${name}"`, expectedFound('a float32, int32 or bool tensor', t.dtype));
  }
}

/**
 * Write tensors to a safetensors file, atomically (temp file beside it, fsync, rename). Tensor names
 * are sorted; the header is padded with spaces so the data section starts 8-byte aligned. tf tensors
 * are stored as F32 / I32 / BOOL (float32 tensors as `opts.floatDtype` when given: F16 or BF16, rounded
 * to nearest even, one tensor at a time); raw `{dtype, shape, data}` entries may also ask for I64,
 * F16, BF16, F64 or U8 (F16/BF16 round to nearest even).
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, tf.Tensor | RawTensor>,
  metadata?: Record<string, string>,
  opts: { floatDtype?: 'F32' | 'F16' | 'BF16' } = {},
): Promise<void> {
  const floatDtype = opts.floatDtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(floatDtype)) throw new ValueError(`${file}: floatDtype`, expectedFound("'F32', 'F16' or 'BF16'", floatDtype));
  if (!isPlainObject(tensors)) throw new ValueError(`${file}: tensors`, expectedFound('an object of name -> tensor', describeJson(tensors)));
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new ValueError(`${file}: metadata`, expectedFound('an object of strings', describeJson(metadata)));
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new ValueError(`${file}: metadata["${k}"]`, expectedFound('a string', describeJson(v)));
    }
    if (Object.keys(metadata).length) header.__metadata__ = { ...metadata };
  }
  const names = Object.keys(tensors).sort();
  // Pass 1: dtypes, shapes and sizes (no data copied), so the header can be written first.
  const plan: { name: string; dtype: WritableDtype; shape: number[]; tensor: tf.Tensor | null; raw: RawTensor | null }[] = [];
  let offset = 0;
  for (const name of names) {
    if (name.length === 0 || name === '__metadata__') throw new ValueError(`${file}: tensors`, `"${name}" is not a valid tensor name`);
    const v = tensors[name];
    let dtype: WritableDtype;
    let shape: number[];
    if (v instanceof tf.Tensor) {
      if (v.isDisposed) throw new ValueError(`${file}: tensor "${name}"`, 'the tensor is disposed');
      const map: Record<string, WritableDtype> = { float32: floatDtype, int32: 'I32', bool: 'BOOL' };
      dtype = map[v.dtype];
      if (!dtype) throw new ValueError(`${file}: tensor "${name}"`, expectedFound('a float32, int32 or bool tensor', v.dtype));
      shape = v.shape.slice();
      plan.push({ name, dtype, shape, tensor: v, raw: null });
    } else {
      const raw = encodeCheck(name, v, file);
      checkRaw(name, raw, file);
      dtype = raw.dtype;
      shape = raw.shape.slice();
      plan.push({ name, dtype, shape, tensor: null, raw });
    }
    const nbytes = numel(shape) * DTYPE_SIZE[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hbytes = enc.encode(json);
  const pad = (8 - (hbytes.byteLength % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hbytes = enc.encode(json);
  }
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(hbytes.byteLength), true);
  // Pass 2: one tensor's bytes at a time (peak memory: one tensor, not the whole file). A value
  // error part way aborts the atomic write: no file is left.
  await withAtomicFile(file, async (_fh, write) => {
    await write(prefix);
    await write(hbytes);
    for (const p of plan) {
      const raw = p.tensor ? { ...(await tensorToRaw(p.name, p.tensor, file)), dtype: p.dtype } : p.raw!;
      const bytes = encodeRaw(p.name, raw, file);
      const want = (header[p.name] as { data_offsets: number[] }).data_offsets;
      if (bytes.byteLength !== want[1] - want[0]) throw new ShapeError(`${file}: tensor "${p.name}"`, 'data changed while writing');
      await write(bytes);
    }
  });
}

function encodeCheck(name: string, v: unknown, where: string): RawTensor {
  if (!isPlainObject(v)) {
    throw new ValueError(`${where}: tensor "${name}"`, expectedFound('a tf.Tensor or {dtype, shape, data}', describeJson(v)));
  }
  return v as unknown as RawTensor;
}

// ---------------------------------------------------------------------------------------------
// sharded checkpoints

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';


/** Check that a file name from an index or the hub is a plain relative path inside its folder. */
export function checkRelativeFileName(name: string, where: string): void {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.includes('\0') ||
    name.includes('\\') ||
    path.posix.isAbsolute(name) ||
    /^[A-Za-z]:/.test(name) ||
    name.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')
  ) {
    throw new FormatError(where, `file name ${JSON.stringify(name)} is not a plain relative path inside the folder`);
  }
}

/**
 * Parse a model.safetensors.index.json: returns shard file -> tensor names (shards in first-seen
 * order). A FormatError names the index file and the bad entry.
 */
export function parseShardIndex(text: string, where: string): Map<string, string[]> {
  const json = parseJsonStrict(text, where, 'index');
  if (!isPlainObject(json)) throw new FormatError(where, `expected a JSON object with "weight_map", found ${describeJson(json)}`);
  const wm = json.weight_map;
  if (wm === undefined) throw new FormatError(where, 'missing field "weight_map"');
  if (!isPlainObject(wm)) throw new FormatError(where, `weight_map must be an object of tensor -> shard file, found ${describeJson(wm)}`);
  const shards = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(wm)) {
    if (typeof shard !== 'string') throw new FormatError(where, `weight_map["${tensor}"] must be a shard file name, found ${describeJson(shard)}`);
    checkRelativeFileName(shard, `${where}: weight_map["${tensor}"]`);
    const list = shards.get(shard) ?? [];
    list.push(tensor);
    shards.set(shard, list);
  }
  if (shards.size === 0) throw new FormatError(where, 'weight_map is empty');
  return shards;
}

/**
 * How errors about a checkpoint folder's tensors name it: the path of `model.safetensors`, or for a
 * sharded folder the index with the shard files it names (a sharded folder has no model.safetensors).
 */
export async function describeCheckpoint(dir: string): Promise<string> {
  const single = path.join(dir, SINGLE_FILE);
  if (await pathExists(single)) return single;
  const index = path.join(dir, INDEX_FILE);
  if (!(await pathExists(index))) return single;
  const shards = [...parseShardIndex(await fsp.readFile(index, 'utf8'), index).keys()];
  return `${index} (shards ${shards.join(', ')})`;
}

/** Where one tensor of a checkpoint folder lies: its file, that file's header and its entry. */
export interface CheckpointEntry {
  file: string;
  header: SafetensorsHeader;
  entry: SafetensorsEntry;
}

/**
 * Every tensor of a checkpoint folder (`model.safetensors`, or `model.safetensors.index.json` and the
 * shards its weight_map names), located from the headers alone: no data is read. A missing shard is a
 * ResolveError naming it; a tensor the weight_map places in one shard but that is missing there, or a
 * tensor stored in two shards, is a FormatError.
 */
export async function checkpointEntries(dir: string): Promise<Map<string, CheckpointEntry>> {
  const single = path.join(dir, SINGLE_FILE);
  const index = path.join(dir, INDEX_FILE);
  const out = new Map<string, CheckpointEntry>();
  const add = (file: string, header: SafetensorsHeader) => header.tensors.forEach((entry) => out.set(entry.name, { file, header, entry }));
  if (await pathExists(single)) {
    add(single, await safetensorsInfo(single));
    return out;
  }
  if (!(await pathExists(index))) {
    if (!(await pathExists(dir))) throw new ResolveError(dir, 'checkpoint folder not found');
    throw new ResolveError(dir, `no ${SINGLE_FILE} or ${INDEX_FILE} in the folder (only safetensors checkpoints are supported)`);
  }
  const shards = parseShardIndex(await fsp.readFile(index, 'utf8'), index);
  const owner = new Map<string, string>();
  for (const [shard, listed] of shards) {
    const file = path.join(dir, shard);
    if (!(await pathExists(file))) throw new ResolveError(file, `shard "${shard}" named in ${INDEX_FILE} is missing`);
    const header = await safetensorsInfo(file);
    for (const t of header.tensors) {
      const prev = owner.get(t.name);
      if (prev !== undefined) throw new FormatError(index, `tensor "${t.name}" is stored twice, in shards "${prev}" and "${shard}"`);
    }
    const inShard = new Map(header.tensors.map((t) => [t.name, t]));
    for (const t of listed) {
      if (!inShard.has(t)) throw new FormatError(file, `tensor "${t}" is listed for shard "${shard}" in ${INDEX_FILE} but is not in the shard`);
    }
    for (const t of header.tensors) owner.set(t.name, shard);
    // the checkpoint is what the weight_map lists (a shard may hold more, as HF reads it)
    for (const t of listed) out.set(t, { file, header, entry: inShard.get(t)! });
  }
  return out;
}

/**
 * Read all tensors of a checkpoint folder (see checkpointEntries for the layout and its errors) as tf
 * tensors, one tensor's bytes at a time. `names` reads only those (a missing name is a ValueError). On
 * error no tensor is left allocated.
 */
export async function readCheckpointTensors(dir: string, opts: { names?: readonly string[] } = {}): Promise<Record<string, tf.Tensor>> {
  const entries = await checkpointEntries(dir);
  const names = opts.names ?? [...entries.keys()];
  for (const nm of names) if (!entries.has(nm)) throw new ValueError(`${await describeCheckpoint(dir)}: names`, `tensor "${nm}" is not in the checkpoint`);
  const reader = openCheckpointReader(entries);
  const out: Record<string, tf.Tensor> = {};
  try {
    for (const nm of names) out[nm] = arrayToTensor(reader.array(nm));
    return out;
  } catch (err) {
    for (const t of Object.values(out)) t.dispose();
    throw err;
  } finally {
    reader.close();
  }
}

/**
 * Synchronous reads of single tensors from located checkpoint files (the model loader converts a
 * checkpoint tensor by tensor as its families ask for them, so no whole-checkpoint copy exists in
 * host memory). Files open on first use; `close()` closes them.
 */
export interface CheckpointReader {
  readonly entries: ReadonlyMap<string, CheckpointEntry>;
  /** The tensor's raw little-endian bytes, in a fresh buffer of exactly its size. */
  bytes(name: string): Uint8Array;
  /** The tensor's values (float types as float32, integer types as int32). */
  array(name: string): SafetensorsArray;
  close(): void;
}

export function openCheckpointReader(entries: ReadonlyMap<string, CheckpointEntry>): CheckpointReader {
  const fds = new Map<string, number>();
  const locate = (name: string): CheckpointEntry => {
    const e = entries.get(name);
    if (!e) throw new ValueError('checkpoint', `tensor "${name}" is not in the checkpoint`);
    return e;
  };
  const bytes = (name: string): Uint8Array => {
    const { file, header, entry } = locate(name);
    let fd = fds.get(file);
    if (fd === undefined) fds.set(file, (fd = fs.openSync(file, 'r')));
    const out = new Uint8Array(entry.dataOffsets[1] - entry.dataOffsets[0]);
    let off = 0;
    while (off < out.byteLength) {
      const n = fs.readSync(fd, out, off, Math.min(out.byteLength - off, 1 << 30), header.dataStart + entry.dataOffsets[0] + off);
      if (n === 0) throw new FormatError(file, `file ended while reading tensor "${name}" (file changed while reading?)`);
      off += n;
    }
    return out;
  };
  return {
    entries,
    bytes,
    array: (name) => decodeEntry(locate(name).entry, bytes(name), locate(name).file),
    close() {
      for (const fd of fds.values()) fs.closeSync(fd);
      fds.clear();
    },
  };
}

// Re-exported for callers that check JSON headers themselves.
export { findDuplicateKey };
