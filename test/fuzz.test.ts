// Reliability: a malformed-input corpus (test/corpus, made by scripts/make-corpus.ts) with one
// expected error per file, and seeded random mutations of valid safetensors and config.json files.
// Every read must either succeed with exactly the right result (checked against an independent
// reference decoder written below from the format description) or throw a typed error.
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { readCheckpointTensors, readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { readTokenFile } from '../src/io/tokens.js';
import { ConfigError, FormatError, ResolveError, ShapeError, UnsupportedModelError, ValueError } from '../src/errors.js';
import { rng, type Rng } from '../src/util/random.js';
import { normalizeConfig } from '../src/model/index.js';
import { readTokensFile } from '../src/cli/inputs.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const corpus = path.join(here, 'corpus');
const repoRoot = path.join(here, '..');

// ---------------------------------------------------------------------------------------------
// corpus tables

const SAFETENSORS_TABLE: Record<string, RegExp> = {
  'empty-file': /truncated: 0 bytes, shorter than the 8-byte header-length prefix/,
  'short-prefix': /truncated: 5 bytes, shorter than the 8-byte/,
  'header-length-zero': /header length is 0/,
  'header-length-beyond-file': /header length 1000 bytes goes beyond the end of the file \(file is \d+ bytes/,
  'header-length-huge': /header length 256 \* 2\^32 \+ 0 bytes is too large/,
  'header-length-over-cap': /header length 100000001 bytes is too large \(limit 100000000 bytes\)/,
  'truncated-data': /tensor "b": data_offsets \[16, 24\] are out of range: the data section holds 19 bytes/,
  'truncated-header': /header length \d+ bytes goes beyond the end of the file \(file is 40 bytes/,
  'not-json': /header is not valid JSON/,
  'not-json-text': /header must be a JSON object starting with "\{", found "hello world!"/,
  'header-not-object': /header must be a JSON object starting with "\{", found "\[1,2,3\]"/,
  'header-not-utf8': /header \(8 bytes\) is not valid UTF-8/,
  'overlapping-offsets': /tensors "a" \[0, 8\] and "b" \[4, 12\] have overlapping data_offsets/,
  'offsets-out-of-range': /tensor "a": data_offsets \[8, 24\] are out of range: the data section holds 16 bytes/,
  'offsets-shape-mismatch': /tensor "a": data_offsets \[0, 8\] span 8 bytes but shape \[3\] x F32 \(4 bytes\) needs 12/,
  'offsets-dtype-mismatch': /tensor "a": data_offsets \[0, 16\] span 16 bytes but shape \[4\] x F16 \(2 bytes\) needs 8/,
  'offsets-begin-after-end': /tensor "a": data_offsets \[8, 4\] have begin > end/,
  'offsets-negative': /tensor "a": data_offsets \[-4,0\] must be non-negative integers/,
  'offsets-three-numbers': /tensor "a": data_offsets must be \[begin, end\], found \[0,4,8\]/,
  'offsets-float': /tensor "a": data_offsets \[0,4.5\] must be non-negative integers/,
  'unknown-dtype': /tensor "a": unknown dtype "Q4_K"; expected one of F64, I64, F32/,
  'lowercase-dtype': /tensor "a": unknown dtype "f32"/,
  'dtype-not-string': /tensor "a": unknown dtype 4/,
  'negative-shape': /tensor "a": shape \[-1,2\] holds -1; expected non-negative integers/,
  'float-shape': /tensor "a": shape \[1.5\] holds 1.5/,
  'shape-not-array': /tensor "a": shape must be an array of non-negative integers, found the string "2x2"/,
  'shape-overflow': /tensor "a": shape \[4294967296,4294967296\] is too large/,
  'missing-data-offsets': /tensor "a": missing field "data_offsets"/,
  'missing-dtype': /tensor "a": missing field "dtype"/,
  'missing-shape': /tensor "a": missing field "shape"/,
  'entry-not-object': /tensor "a": expected an object \{dtype, shape, data_offsets\}, found an array/,
  'duplicate-tensor': /header lists key "w" twice/,
  'metadata-not-strings': /__metadata__\["n"\] must be a string, found number 3/,
  'metadata-not-object': /__metadata__ must be an object of strings, found the string "pt"/,
  'gap-between-tensors': /data bytes 8\.\.12 between "a" \[0, 8\] and "b" \[12, 16\] belong to no tensor; tensors must fill the data section contiguously/,
  'data-not-at-zero': /data bytes 0\.\.4 before the first tensor "a" \[4, 8\] belong to no tensor/,
  'trailing-bytes': /4 trailing bytes after the last tensor: the tensors end at data byte 24 but the data section holds 28 bytes/,
  'polyglot-reference': /34 trailing bytes after the last tensor/,
  'zero-size-off-chain': /data bytes 8\.\.12 between "a" \[0, 8\] and "z" \[12, 12\] belong to no tensor/,
};

const TOKENS_TABLE: Record<string, [new (...a: any[]) => Error, RegExp]> = {
  ragged: [ShapeError, /input_ids: row 1: has 2 tokens, expected 3/],
  'negative-id': [ValueError, /input_ids: \[0\]\[2\]: expected a token id in \[0, 50256\], found -3/],
  'non-integer': [ValueError, /input_ids: \[0\]\[1\]: expected an integer token id, found 2\.5/],
  'id-too-large': [ValueError, /input_ids: \[0\]\[1\]: expected a token id in \[0, 50256\], found 50257/],
  'string-id': [ValueError, /input_ids: \[0\]\[0\]: expected an integer token id, found the string "7"/],
  'infinite-id': [ValueError, /input_ids: \[0\]\[0\]: expected an integer token id, found Infinity/],
  'row-not-array': [FormatError, /input_ids: row 1: expected an array of token ids, found number 3/],
  'empty-row': [ShapeError, /input_ids: row 0: expected at least one token/],
  'no-rows': [ShapeError, /input_ids: expected at least one row, found an empty list/],
  'mask-shape': [ShapeError, /attention_mask: row 0: expected 3 entries like its ids row, found 2 entries/],
  'mask-not-binary': [ValueError, /attention_mask: \[0\]\[1\]: expected 0 or 1, found number 2/],
  scalar: [FormatError, /expected a JSON array of rows of token ids, found number 7/],
  'not-json': [FormatError, /token file is not valid JSON/],
  'duplicate-input_ids': [FormatError, /token file lists key "input_ids" twice/],
};
// error classes any token reader must give (the CLI's reader may report a non-array row as a shape problem)
const TOKENS_CLASSES: Record<string, string[]> = { 'row-not-array': ['ShapeError', 'FormatError'] };

// class name and the field the message must name, as in test/corpus/config/README.md
const CONFIG_TABLE: Record<string, [string, string]> = {
  'gpt2-missing-n_layer': ['ConfigError', 'n_layer'],
  'gpt2-n_head-string': ['ConfigError', 'n_head'],
  'gpt2-n_embd-float': ['ConfigError', 'n_embd'],
  'gpt2-vocab-negative': ['ConfigError', 'vocab_size'],
  'gpt2-n_embd-not-divisible': ['ConfigError', 'n_head'],
  'gpt2-bad-activation': ['ConfigError', 'activation_function'],
  'gpt2-eps-string': ['ConfigError', 'layer_norm_epsilon'],
  'unknown-architecture': ['UnsupportedModelError', 'model_type'],
  'missing-model_type': ['ConfigError', 'model_type'],
  'not-an-object': ['ConfigError', 'config'],
  'llama-kv-heads-not-divisor': ['ConfigError', 'num_key_value_heads'],
  'llama-missing-intermediate_size': ['ConfigError', 'intermediate_size'],
  'llama-heads-not-divisor': ['ConfigError', 'num_attention_heads'],
  'llama-layers-zero': ['ConfigError', 'num_hidden_layers'],
};

async function filesIn(dir: string, ext: string): Promise<string[]> {
  return (await fsp.readdir(dir)).filter((f) => f.endsWith(ext)).map((f) => f.slice(0, -ext.length)).sort();
}

// ---------------------------------------------------------------------------------------------
// independent reference: a JSON parser that keeps duplicate keys, and a safetensors decoder

type J = null | boolean | number | string | J[] | { entries: [string, J][] };

/** Recursive-descent JSON parser returning objects as entry lists (duplicates kept). Throws on bad JSON. */
function refParseJson(text: string): J {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw new Error(`bad json at ${i}`);
  };
  const str = (): string => {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(i));
    if (!m) fail();
    i += m![0].length;
    return JSON.parse(m![0]);
  };
  const val = (): J => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const entries: [string, J][] = [];
      ws();
      if (text[i] === '}') return i++, { entries };
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        const k = str();
        ws();
        if (text[i++] !== ':') fail();
        entries.push([k, val()]);
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') return i++, { entries };
        else fail();
      }
    }
    if (c === '[') {
      i++;
      const arr: J[] = [];
      ws();
      if (text[i] === ']') return i++, arr;
      for (;;) {
        arr.push(val());
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') return i++, arr;
        else fail();
      }
    }
    if (c === '"') return str();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(lit, i)) return (i += lit.length), v;
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail();
    i += m![0].length;
    return Number(m![0]);
  };
  const v = val();
  ws();
  if (i !== text.length) fail();
  return v;
}

const SIZES: Record<string, number> = { F64: 8, I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

type RefResult =
  | { kind: 'format' }
  | { kind: 'value' } // valid structure, a value does not fit float32 / int32
  | { kind: 'ok'; tensors: Map<string, { dtype: string; shape: number[]; values: number[] }> };

function refHalf(h: number): number {
  const sign = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const f = h & 1023;
  if (e === 31) return f === 0 ? sign * Infinity : NaN;
  return e === 0 ? sign * Math.pow(2, -14) * (f / 1024) : sign * Math.pow(2, e - 15) * (1 + f / 1024);
}

function refDecode(bytes: Uint8Array): RefResult {
  const F: RefResult = { kind: 'format' };
  if (bytes.length < 8) return F;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 === 0n || n64 > 100_000_000n || 8n + n64 > BigInt(bytes.length)) return F;
  const n = Number(n64);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    return F;
  }
  if (text.replace(/^[ \t\n\r]+/, '')[0] !== '{') return F; // JSON whitespace may pad the header
  let root: J;
  try {
    root = refParseJson(text);
  } catch {
    return F;
  }
  if (root === null || typeof root !== 'object' || Array.isArray(root)) return F;
  const keys = root.entries.map((e) => e[0]);
  if (new Set(keys).size !== keys.length) return F;
  const dataLen = bytes.length - 8 - n;
  const isNat = (x: J) => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
  const list: { name: string; dtype: string; shape: number[]; b: number; e: number }[] = [];
  for (const [name, v] of root.entries) {
    if (name === '__metadata__') {
      if (v === null) continue;
      if (typeof v !== 'object' || Array.isArray(v)) return F;
      const mk = v.entries.map((e) => e[0]);
      if (new Set(mk).size !== mk.length || v.entries.some((e) => typeof e[1] !== 'string')) return F;
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return F;
    const sub = new Map(v.entries);
    if (sub.size !== v.entries.length) return F; // duplicate field inside a tensor entry
    const dtype = sub.get('dtype');
    const shape = sub.get('shape');
    const offs = sub.get('data_offsets');
    if (typeof dtype !== 'string' || !(dtype in SIZES)) return F;
    if (!Array.isArray(shape) || !shape.every(isNat)) return F;
    let count = 1;
    for (const d of shape as number[]) count *= d;
    if (!Number.isSafeInteger(count * SIZES[dtype])) return F;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isNat)) return F;
    const [b, e] = offs as number[];
    if (b > e || e > dataLen || e - b !== count * SIZES[dtype]) return F;
    list.push({ name, dtype, shape: shape as number[], b, e });
  }
  // the reference reader's rule: in offset order the ranges tile [0, dataLen) exactly
  let end = 0;
  for (const t of [...list].sort((p, q) => p.b - q.b || p.e - q.e)) {
    if (t.b !== end) return F;
    end = t.e;
  }
  if (end !== dataLen) return F;
  const tensors = new Map<string, { dtype: string; shape: number[]; values: number[] }>();
  let valueProblem = false;
  for (const t of list) {
    const at = 8 + n + t.b;
    const cnt = (t.e - t.b) / SIZES[t.dtype];
    const values: number[] = [];
    for (let k = 0; k < cnt; k++) {
      const o = at + k * SIZES[t.dtype];
      switch (t.dtype) {
        case 'F32':
          values.push(dv.getFloat32(o, true));
          break;
        case 'F64': {
          const d = dv.getFloat64(o, true);
          if (Number.isFinite(d) && !Number.isFinite(Math.fround(d))) valueProblem = true;
          values.push(Math.fround(d));
          break;
        }
        case 'F16':
          values.push(refHalf(dv.getUint16(o, true)));
          break;
        case 'BF16': {
          const tmp = new DataView(new ArrayBuffer(4));
          tmp.setUint16(0, dv.getUint16(o, true));
          tmp.setUint16(2, 0);
          values.push(tmp.getFloat32(0)); // big-endian scratch: the bf16 bits are the high half
          break;
        }
        case 'I64': {
          const v = dv.getBigInt64(o, true);
          if (v > 2147483647n || v < -2147483648n) valueProblem = true;
          values.push(Number(v));
          break;
        }
        case 'I32':
          values.push(dv.getInt32(o, true));
          break;
        case 'I16':
          values.push(dv.getInt16(o, true));
          break;
        case 'I8':
          values.push(dv.getInt8(o));
          break;
        case 'F8_E5M2':
          values.push(refHalf(dv.getUint8(o) << 8)); // E5M2 is the high byte of a binary16
          break;
        case 'F8_E4M3': {
          const b = dv.getUint8(o);
          const [sign, ex, fr] = [b >> 7 ? -1 : 1, (b >> 3) & 15, b & 7];
          values.push(ex === 15 && fr === 7 ? NaN : ex === 0 ? sign * Math.pow(2, -6) * (fr / 8) : sign * Math.pow(2, ex - 7) * (1 + fr / 8));
          break;
        }
        default:
          values.push(dv.getUint8(o));
      }
    }
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, values });
  }
  if (valueProblem) return { kind: 'value' };
  return { kind: 'ok', tensors };
}

/** A valid file holding every dtype, built by hand (no tflens writer). */
function baseFile(): Uint8Array {
  const parts: { name: string; dtype: string; shape: number[]; bytes: Uint8Array }[] = [];
  const add = (name: string, dtype: string, shape: number[], fill: (dv: DataView) => void) => {
    const cnt = shape.reduce((a, b) => a * b, 1);
    const buf = new Uint8Array(cnt * SIZES[dtype]);
    fill(new DataView(buf.buffer));
    parts.push({ name, dtype, shape, bytes: buf });
  };
  add('w', 'F32', [2, 3], (d) => [0.5, -1, 2, 3.25, -0.125, 8].forEach((v, i) => d.setFloat32(4 * i, v, true)));
  add('h', 'F16', [4], (d) => [0x3c00, 0xc000, 0x3555, 0x0001].forEach((v, i) => d.setUint16(2 * i, v, true)));
  add('bf', 'BF16', [3], (d) => [0x3f80, 0xc049, 0x3dcd].forEach((v, i) => d.setUint16(2 * i, v, true)));
  add('ids', 'I64', [2, 2], (d) => [0n, -1n, 70000n, -2147483648n].forEach((v, i) => d.setBigInt64(8 * i, v, true)));
  add('i', 'I32', [3], (d) => [1, -2, 3].forEach((v, i) => d.setInt32(4 * i, v, true)));
  add('d', 'F64', [2], (d) => [0.1, -1e10].forEach((v, i) => d.setFloat64(8 * i, v, true)));
  add('u', 'U8', [5], (d) => [0, 1, 127, 128, 255].forEach((v, i) => d.setUint8(i, v)));
  add('m', 'BOOL', [2], (d) => [1, 0].forEach((v, i) => d.setUint8(i, v)));
  add('s', 'I8', [3], (d) => [-128, 0, 127].forEach((v, i) => d.setInt8(i, v)));
  add('t', 'I16', [2], (d) => [-300, 300].forEach((v, i) => d.setInt16(2 * i, v, true)));
  add('e', 'F32', [0, 3], () => undefined);
  add('sc', 'F32', [], (d) => d.setFloat32(0, 42, true));
  add('q', 'F8_E4M3', [4], (d) => [0x38, 0x01, 0x7f, 0xfe].forEach((v, i) => d.setUint8(i, v)));
  add('r', 'F8_E5M2', [3], (d) => [0x3c, 0x7c, 0x02].forEach((v, i) => d.setUint8(i, v)));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let off = 0;
  for (const p of parts) {
    header[p.name] = { dtype: p.dtype, shape: p.shape, data_offsets: [off, off + p.bytes.length] };
    off += p.bytes.length;
  }
  return assemble(JSON.stringify(header), parts.map((p) => p.bytes));
}

function assemble(headerText: string, data: Uint8Array[], pad = true): Uint8Array {
  let h = Buffer.from(headerText, 'utf8');
  if (pad && h.length % 8) h = Buffer.concat([h, Buffer.alloc(8 - (h.length % 8), 0x20)]);
  const total = data.reduce((a, b) => a + b.length, 0);
  const out = new Uint8Array(8 + h.length + total);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  let o = 8 + h.length;
  for (const d of data) out.set(d, o), (o += d.length);
  return out;
}

function splitFile(bytes: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { header: Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8'), data: bytes.subarray(8 + n) };
}

/** Random JSON-ish junk for field mutations. */
function junk(r: Rng): unknown {
  return r.choice<unknown>([-1, 0, 1, 2, 3.5, 1e300, -0, 2 ** 53, '', 'F32', 'x', null, true, [], [1], [1, 2, 3], {}, { a: 1 }, [-1, 4], [4, 0], [0, 1e20]]);
}

function mutate(base: Uint8Array, r: Rng): { bytes: Uint8Array; kind: string } {
  const kind = r.choice(['flip', 'flip-header', 'truncate', 'length', 'field', 'field', 'field', 'text', 'append']);
  const b = base.slice();
  const { header, data } = splitFile(base);
  switch (kind) {
    case 'flip': {
      const k = r.range(1, 4);
      for (let j = 0; j < k; j++) b[r.int(b.length)] ^= 1 << r.int(8);
      return { bytes: b, kind };
    }
    case 'flip-header': {
      const n = 8 + Buffer.byteLength(header);
      const k = r.range(1, 3);
      for (let j = 0; j < k; j++) b[r.int(n)] ^= r.range(1, 255);
      return { bytes: b, kind };
    }
    case 'truncate':
      return { bytes: b.subarray(0, r.int(b.length)), kind };
    case 'length': {
      const dv = new DataView(b.buffer);
      const n = Number(dv.getBigUint64(0, true));
      const choice = r.int(4);
      const v = choice === 0 ? BigInt(Math.max(0, n + r.range(-16, 16))) : choice === 1 ? BigInt(r.int(2 ** 31)) : choice === 2 ? 1n << BigInt(r.range(32, 63)) : BigInt(b.length - 8 + r.range(-2, 2));
      dv.setBigUint64(0, v < 0n ? 0n : v, true);
      return { bytes: b, kind };
    }
    case 'field': {
      const h = JSON.parse(header);
      const names = Object.keys(h);
      const name = r.choice(names);
      const op = r.int(8);
      if (name === '__metadata__' || op === 0) {
        if (op === 0) h[r.choice(['__metadata__', 'extra', name])] = junk(r);
        else h.__metadata__ = r.choice<unknown>([{ a: junk(r) }, junk(r), { format: 'pt' }]);
      } else if (op === 1) {
        h[name].dtype = r.choice(['F32', 'F16', 'BF16', 'I64', 'I32', 'F64', 'U8', 'BOOL', 'I8', 'I16', 'F8_E4M3', 'U32', 'f32', 7]);
      } else if (op === 2 && Array.isArray(h[name].shape) && h[name].shape.length) {
        const i = r.int(h[name].shape.length);
        h[name].shape[i] = r.choice<unknown>([h[name].shape[i] + 1, h[name].shape[i] - 1, 0, -1, 1.5, '2', null, 2 ** 40]);
      } else if (op === 3) {
        h[name].shape = junk(r);
      } else if (op === 4) {
        const i = r.int(2);
        h[name].data_offsets[i] += r.range(-9, 9);
      } else if (op === 5) {
        h[name].data_offsets = junk(r);
      } else if (op === 6) {
        delete h[name][r.choice(['dtype', 'shape', 'data_offsets'])];
      } else {
        // another tensor pointing at random bytes, possibly overlapping
        const start = r.int(data.length + 4);
        h[`x${r.int(100)}`] = { dtype: 'U8', shape: [r.range(0, 6)], data_offsets: [start, start + r.range(0, 6)] };
      }
      return { bytes: assemble(JSON.stringify(h), [data], r.next() < 0.8), kind };
    }
    case 'text': {
      // edit the header text: insert/delete characters, duplicate a key, trailing garbage
      let t = header.trimEnd();
      const op = r.int(4);
      if (op === 0) {
        const i = r.int(t.length);
        t = t.slice(0, i) + r.choice(['{', '}', '"', ',', ':', '[', ']', '0', '-', ' ', '\\', '\u00e9', '\u0000']) + t.slice(i);
      } else if (op === 1) {
        const i = r.int(t.length);
        t = t.slice(0, i) + t.slice(i + r.range(1, 3));
      } else if (op === 2) {
        const m = /"(\w+)":\{"dtype"[^}]*\}/.exec(t.slice(1 + r.int(40)));
        if (m) t = t.slice(0, -1) + ',' + m[0] + '}';
      } else {
        t = t + r.choice([' ', '\n', 'x', '}', '\u0000']);
      }
      return { bytes: assemble(t, [data], false), kind };
    }
    default: {
      // trailing bytes after the data section (refused, as by the reference reader)
      const extra = new Uint8Array(r.range(1, 9)).map(() => r.int(256));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      return { bytes: out, kind };
    }
  }
}

function sameNumber(a: number, b: number): boolean {
  return Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`hang: ${what} took more than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------

describe('reliability: malformed-input corpus', () => {
  it('every malformed safetensors file gives a FormatError naming the file and the problem', async () => {
    const dir = path.join(corpus, 'safetensors');
    const names = await filesIn(dir, '.safetensors');
    assert.deepEqual(names, Object.keys(SAFETENSORS_TABLE).sort(), 'corpus files and table agree');
    assert.ok(names.length >= 20);
    const before = tf.memory().numTensors;
    for (const name of names) {
      const file = path.join(dir, `${name}.safetensors`);
      await assert.rejects(readSafetensors(file), (e: unknown) => {
        assert.ok(e instanceof FormatError, `${name}: expected FormatError, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.ok(e.message.startsWith(file + ': '), `${name}: message names the file: ${e.message}`);
        assert.match(e.message, SAFETENSORS_TABLE[name], name);
        return true;
      });
      // the independent reference agrees that the file is malformed
      assert.equal(refDecode(new Uint8Array(await fsp.readFile(file))).kind, 'format', `${name}: reference decoder`);
    }
    assert.equal(tf.memory().numTensors, before);
  });

  it('the corpus is small and the base file of the fuzz is valid for both decoders', async () => {
    let total = 0;
    for (const sub of ['safetensors', 'config', 'tokens']) {
      for (const f of await fsp.readdir(path.join(corpus, sub))) total += (await fsp.stat(path.join(corpus, sub, f))).size;
    }
    assert.ok(total < 16 * 1024, `corpus is ${total} bytes`);
    const base = baseFile();
    const ref = refDecode(base);
    assert.equal(ref.kind, 'ok');
    const f = path.join(os.tmpdir(), `tflens-fuzz-base-${process.pid}.safetensors`);
    await fsp.writeFile(f, base);
    const ts = await readSafetensors(f);
    await fsp.rm(f);
    // spot values decoded by hand
    assert.deepEqual(Array.from(ts.h.dataSync()), [1, -2, Math.fround(0.333251953125), 2 ** -24]);
    assert.deepEqual(Array.from(ts.bf.dataSync()), [1, -3.140625, 0.10009765625]);
    assert.deepEqual(Array.from(ts.ids.dataSync()), [0, -1, 70000, -2147483648]);
    assert.deepEqual(Array.from(ts.s.dataSync()), [-128, 0, 127]);
    assert.deepEqual(Array.from(ts.q.dataSync()), [1, 2 ** -9, NaN, -448]);
    assert.deepEqual(Array.from(ts.r.dataSync()), [1, Infinity, 2 ** -15]);
    assert.equal(ts.m.dtype, 'bool');
    assert.deepEqual(ts.e.shape, [0, 3]);
    tf.dispose(Object.values(ts));
  });

  it('malformed token files give typed errors naming the file, row and position', async () => {
    const dir = path.join(corpus, 'tokens');
    const names = await filesIn(dir, '.json');
    assert.deepEqual(names, Object.keys(TOKENS_TABLE).sort());
    for (const name of names) {
      const file = path.join(dir, `${name}.json`);
      const [cls, re] = TOKENS_TABLE[name];
      await assert.rejects(readTokenFile(file, { dVocab: 50257 }), (e: unknown) => {
        assert.ok(e instanceof cls, `${name}: expected ${cls.name}, got ${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.ok((e as Error).message.startsWith(file), `${name}: names the file`);
        assert.match((e as Error).message, re, name);
        return true;
      });
    }
    // and good files read back, in both layouts
    const good = path.join(os.tmpdir(), `tflens-tokens-${process.pid}.json`);
    await fsp.writeFile(good, '[[50256, 0, 17], [1, 2, 3]]');
    assert.deepEqual(await readTokenFile(good, { dVocab: 50257 }), [[50256, 0, 17], [1, 2, 3]]);
    await fsp.writeFile(good, '{"input_ids": [[50256, 0, 17], [1, 2, 3]], "attention_mask": [[0, 1, 1], [1, 1, 1]]}');
    assert.deepEqual(await readTokenFile(good, { dVocab: 50257 }), [[50256, 0, 17], [1, 2, 3]]);
    await fsp.rm(good);
  });

  it("the CLI's --tokens reader rejects every malformed token file with the expected class, naming the file", async () => {
    const dir = path.join(corpus, 'tokens');
    const fakeModel = { cfg: { d_vocab: 50257, n_ctx: 1024 } } as any;
    const problems: string[] = [];
    for (const name of await filesIn(dir, '.json')) {
      const file = path.join(dir, `${name}.json`);
      const allowed = TOKENS_CLASSES[name] ?? [TOKENS_TABLE[name][0].name];
      try {
        await readTokensFile(file, fakeModel);
        problems.push(`${name}: accepted`);
      } catch (e) {
        const err = e as Error;
        if (!allowed.includes(err.name)) problems.push(`${name}: ${err.name} (${err.message}), expected ${allowed.join(' or ')}`);
        else if (!err.message.startsWith(file)) problems.push(`${name}: message does not name the file: ${err.message}`);
      }
    }
    assert.deepEqual(problems, []);
  });
});

describe('reliability: seeded fuzz of safetensors reading', () => {
  it('1,200 mutations: each read succeeds with exactly the reference values or throws FormatError/ValueError, none hangs', async function () {
    this.timeout(240000);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-fuzz-'));
    const base = baseFile();
    const r = rng(20240611);
    const before = tf.memory().numTensors;
    const tally: Record<string, number> = { ok: 0, format: 0, value: 0 };
    const kinds: Record<string, number> = {};
    try {
      for (let it = 0; it < 1200; it++) {
        const { bytes, kind } = mutate(base, r);
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        const file = path.join(dir, `m${it % 4}.safetensors`);
        await fsp.writeFile(file, bytes);
        const ref = refDecode(bytes);
        const label = `mutation #${it} (${kind})`;
        const t0 = Date.now();
        let got: Record<string, tf.Tensor> | null = null;
        let err: unknown = null;
        try {
          got = await withTimeout(readSafetensors(file), 5000, label);
        } catch (e) {
          err = e;
        }
        assert.ok(Date.now() - t0 < 5000, `${label} took too long`);
        if (err) {
          if (!(err instanceof FormatError || err instanceof ValueError)) {
            throw new Error(`${label}: unexpected ${(err as Error)?.name}: ${(err as Error)?.message}`);
          }
          const kindGot = err instanceof FormatError ? 'format' : 'value';
          assert.equal(kindGot, ref.kind, `${label}: tflens says ${kindGot} (${(err as Error).message}), reference says ${ref.kind}`);
          assert.ok((err as Error).message.startsWith(file), `${label}: error names the file`);
          tally[kindGot]++;
          continue;
        }
        assert.equal(ref.kind, 'ok', `${label}: tflens read it, the reference says ${ref.kind}`);
        if (ref.kind !== 'ok') continue;
        assert.deepEqual(Object.keys(got!).sort(), [...ref.tensors.keys()].sort(), label);
        for (const [name, want] of ref.tensors) {
          const t = got![name];
          assert.deepEqual(t.shape, want.shape, `${label}: ${name} shape`);
          const vals = Array.from(t.dataSync());
          assert.equal(vals.length, want.values.length, `${label}: ${name} size`);
          for (let k = 0; k < vals.length; k++) {
            assert.ok(sameNumber(vals[k], want.values[k]), `${label}: ${name}[${k}] = ${vals[k]}, reference ${want.values[k]}`);
          }
        }
        tf.dispose(Object.values(got!));
        tally.ok++;
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
    assert.equal(tf.memory().numTensors, before, 'no tensors leaked');
    // the mutations exercised both outcomes substantially
    assert.ok(tally.ok > 50 && tally.format > 300, JSON.stringify({ tally, kinds }));
    if (process.env.TFLENS_FUZZ_VERBOSE) console.log(JSON.stringify({ tally, kinds }));
  });
});

describe('reliability: seeded fuzz of sharded checkpoint indexes', () => {
  it('400 mutations of model.safetensors.index.json: the right tensors or FormatError/ResolveError/ValueError', async function () {
    this.timeout(120000);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-fuzz-idx-'));
    const s1 = 'model-00001-of-00002.safetensors';
    const s2 = 'model-00002-of-00002.safetensors';
    await writeSafetensors(path.join(dir, s1), { a: { dtype: 'F32', shape: [2], data: [1, 2] }, b: { dtype: 'F32', shape: [1], data: [3] } });
    await writeSafetensors(path.join(dir, s2), { c: { dtype: 'I32', shape: [2], data: [4, 5] } });
    const truth: Record<string, number[]> = { a: [1, 2], b: [3], c: [4, 5] };
    const base = { metadata: { total_size: 20 }, weight_map: { a: s1, b: s1, c: s2 } };
    const r = rng(4242);
    const before = tf.memory().numTensors;
    let ok = 0;
    try {
      for (let it = 0; it < 400; it++) {
        const idx: any = structuredClone(base);
        let text: string;
        const op = r.int(6);
        if (op === 0) idx.weight_map[r.choice(['a', 'b', 'c', 'zz'])] = r.choice<unknown>([s1, s2, 'missing.safetensors', '../' + s1, '/etc/passwd', '', 3, null, [s1]]);
        else if (op === 1) delete idx.weight_map[r.choice(['a', 'b', 'c'])];
        else if (op === 2) idx.weight_map = r.choice<unknown>([null, [], 'x', {}, 7]);
        else if (op === 3) delete idx.weight_map;
        if (op === 4) {
          text = JSON.stringify(idx);
          const i = r.int(text.length);
          text = text.slice(0, i) + r.choice(['{', '}', '"', ',', '', 'x']) + text.slice(i + r.int(2));
        } else if (op === 5) {
          text = JSON.stringify(idx).replace('"c":', `"${r.choice(['a', 'b', 'c'])}":"${r.choice([s1, s2])}","c":`); // a key listed twice
        } else {
          text = JSON.stringify(idx);
        }
        await fsp.writeFile(path.join(dir, 'model.safetensors.index.json'), text);
        try {
          const ts = await readCheckpointTensors(dir);
          // success: every tensor the index lists, with its true values
          const listed = Object.keys(JSON.parse(text).weight_map).sort();
          assert.deepEqual(Object.keys(ts).sort(), listed, `mutation #${it}: ${text}`);
          for (const [k, t] of Object.entries(ts)) assert.deepEqual(Array.from(t.dataSync()), truth[k], `mutation #${it}: ${k}`);
          tf.dispose(Object.values(ts));
          ok++;
        } catch (e) {
          assert.ok(
            e instanceof FormatError || e instanceof ResolveError || e instanceof ValueError,
            `mutation #${it} (${text}): unexpected ${(e as Error).name}: ${(e as Error).message}`,
          );
        }
      }
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
    assert.equal(tf.memory().numTensors, before);
    assert.ok(ok > 30, `only ${ok} mutations read back`);
  });
});

// ---------------------------------------------------------------------------------------------
// config.json (the model loader's normalizeConfig)

describe('reliability: config.json', () => {
  it('every malformed config gives the expected error naming its field', async function () {
    const dir = path.join(corpus, 'config');
    const names = await filesIn(dir, '.json');
    assert.deepEqual(names, Object.keys(CONFIG_TABLE).sort());
    const problems: string[] = [];
    for (const name of names) {
      const file = path.join(dir, `${name}.json`);
      const [cls, field] = CONFIG_TABLE[name];
      const json = JSON.parse(await fsp.readFile(file, 'utf8'));
      try {
        const cfg = normalizeConfig(json, file);
        problems.push(`${name}: accepted (d_head ${cfg?.d_head}), expected ${cls} naming ${field}`);
      } catch (e) {
        const err = e as Error;
        if (!cls.split('|').includes(err.name)) problems.push(`${name}: ${err.name} (${err.message}), expected ${cls}`);
        else if (!err.message.includes(file)) problems.push(`${name}: message does not name the file: ${err.message}`);
        else if (!err.message.includes(field)) problems.push(`${name}: message does not name "${field}": ${err.message}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('1,000 seeded mutations of real config.json files: a sane config or ConfigError/UnsupportedModelError', async function () {
    this.timeout(60000);
    const bases: Record<string, unknown>[] = [];
    for (const m of ['gpt2', 'llama', 'pythia', 'qwen2', 'mistral']) {
      const f = path.join(repoRoot, 'fixtures', 'reference', m, 'config.json');
      try {
        bases.push(JSON.parse(await fsp.readFile(f, 'utf8')));
      } catch {
        // fixture not present
      }
    }
    if (bases.length === 0) this.skip();
    for (const b of bases) normalizeConfig(b, 'base'); // the unmutated bases are valid
    const r = rng(777);
    const values = (): unknown =>
      r.choice<unknown>([0, -1, 1, 2, 3, 7, 0.5, 1e9, -1e-5, NaN, '8', 'gelu', 'silu', null, true, false, [], [1, 2], {}, 'gpt2', 'llama', 'mamba', 2 ** 31]);
    const tally = { ok: 0, config: 0, unsupported: 0 };
    const insane: string[] = [];
    for (let it = 0; it < 1000; it++) {
      const base = structuredClone(r.choice(bases));
      const keys = Object.keys(base);
      const edits = r.range(1, 3);
      const log: string[] = [`${base.model_type}`];
      for (let k = 0; k < edits; k++) {
        const op = r.int(4);
        const key = r.choice(keys);
        if (op === 0) {
          delete base[key];
          log.push(`-${key}`);
        } else {
          const k2 = op === 3 ? r.choice(['model_type', 'head_dim', 'num_key_value_heads', 'rotary_pct', 'partial_rotary_factor', 'n_inner', 'sliding_window', 'rope_theta']) : key;
          base[k2] = values();
          log.push(`${k2}=${JSON.stringify(base[k2])}`);
        }
      }
      const input: unknown = r.next() < 0.01 ? r.choice<unknown>([null, 3, 'x', [base]]) : base;
      let cfg: any;
      try {
        cfg = normalizeConfig(input, `mut${it}.json`);
      } catch (e) {
        if (e instanceof ConfigError) tally.config++;
        else if (e instanceof UnsupportedModelError) tally.unsupported++;
        else throw new Error(`mutation #${it}: unexpected ${(e as Error)?.name}: ${(e as Error)?.message}`);
        continue;
      }
      tally.ok++;
      // an accepted config must be usable: positive integer sizes, heads dividing evenly, finite numbers
      const ints = ['n_layers', 'd_model', 'n_heads', 'n_kv_heads', 'd_head', 'd_mlp', 'd_vocab', 'n_ctx'];
      const bad = ints.filter((k) => !(Number.isSafeInteger(cfg[k]) && cfg[k] > 0));
      if (!(Number.isFinite(cfg.eps) && cfg.eps >= 0)) bad.push(`eps=${cfg.eps}`);
      if (!Number.isFinite(cfg.attn_scale) || cfg.attn_scale <= 0) bad.push(`attn_scale=${cfg.attn_scale}`);
      if (cfg.positional === 'rotary' && !(Number.isFinite(cfg.rope_theta) && cfg.rope_theta > 0)) bad.push(`rope_theta=${cfg.rope_theta}`);
      if (bad.length) insane.push(`#${it} ${log.join(' ')} -> ${bad.map((k) => (k.includes('=') ? k : `${k}=${cfg[k]}`)).join(', ')}`);
    }
    assert.ok(tally.ok > 50 && tally.config > 200, JSON.stringify(tally));
    assert.deepEqual(insane.slice(0, 10), [], `${insane.length} accepted configs are not usable`);
  });
});
