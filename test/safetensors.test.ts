import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import {
  f8e4m3ToFloat,
  f8e5m2ToFloat,
  floatToBf16,
  floatToHalf,
  halfToFloat,
  parseSafetensorsHeader,
  readCheckpointTensors,
  readSafetensors,
  readSafetensorsArrays,
  safetensorsInfo,
  writeSafetensors,
} from '../src/io/safetensors.js';
import { FormatError, ResolveError, ShapeError, ValueError } from '../src/errors.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const refDir = path.join(here, 'corpus', 'reference');

/** A safetensors file built by hand: 8-byte LE length, the header text as given, the data bytes. */
function handBuilt(headerText: string, data: Uint8Array): Uint8Array {
  const h = Buffer.from(headerText, 'utf8');
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

const f32bytes = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);

describe('io/safetensors', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-st-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  it('reads a file written independently by numpy + struct (all dtypes, scalar, empty)', async () => {
    const file = path.join(refDir, 'ref.safetensors');
    const expected = JSON.parse(await fsp.readFile(path.join(refDir, 'expected.json'), 'utf8'));
    const before = tf.memory().numTensors;
    const ts = await readSafetensors(file);
    assert.equal(tf.memory().numTensors - before, 9);
    const info = await safetensorsInfo(file);
    assert.deepEqual(info.metadata, expected.__metadata__);
    for (const [name, want] of Object.entries<any>(expected)) {
      if (name === '__metadata__' || name === 'f16_bits') continue;
      const t = ts[name];
      assert.ok(t, name);
      assert.deepEqual(t.shape, want.shape, name);
      const isInt = /\.(i64|i32|u8)$/.test(name);
      assert.equal(t.dtype, isInt ? 'int32' : 'float32', name);
      const got = Array.from(t.dataSync());
      // float32 values round-trip exactly through JSON (numpy wrote them as doubles of the float32).
      assert.deepEqual(got, want.values, name);
    }
    tf.dispose(Object.values(ts));
    assert.equal(tf.memory().numTensors, before);
  });

  it('reads hand-built bytes exactly, and the low-level arrays API matches', async () => {
    // Two F32 tensors and an I32 one, offsets as written by hand; header padded with spaces.
    const data = new Uint8Array(4 * 3 + 4 * 2 + 4);
    const dv = new DataView(data.buffer);
    [1.5, -2, 0.25].forEach((v, i) => dv.setFloat32(4 * i, v, true));
    [7, -9].forEach((v, i) => dv.setInt32(12 + 4 * i, v, true));
    dv.setFloat32(20, 3.75, true);
    const header = '{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]},"ids":{"dtype":"I32","shape":[1,2],"data_offsets":[12,20]},"s":{"dtype":"F32","shape":[],"data_offsets":[20,24]}}   ';
    const file = path.join(dir, 'hand.safetensors');
    await fsp.writeFile(file, handBuilt(header, data));
    const arrs = await readSafetensorsArrays(file);
    assert.deepEqual(Array.from(arrs.w.data), [1.5, -2, 0.25]);
    assert.ok(arrs.w.data instanceof Float32Array);
    assert.deepEqual(Array.from(arrs.ids.data), [7, -9]);
    assert.ok(arrs.ids.data instanceof Int32Array);
    assert.deepEqual(arrs.ids.shape, [1, 2]);
    assert.deepEqual(Array.from(arrs.s.data), [3.75]);
    const sub = await readSafetensorsArrays(file, { names: ['ids'] });
    assert.deepEqual(Object.keys(sub), ['ids']);
    await assert.rejects(readSafetensors(file, { names: ['nope'] }), (e: unknown) => e instanceof ValueError && /"nope"/.test((e as Error).message));
  });

  it('half / bfloat16 conversions match IEEE bit patterns and round to nearest even', async () => {
    const expected = JSON.parse(await fsp.readFile(path.join(refDir, 'expected.json'), 'utf8'));
    // numpy's float16 bit patterns decode to numpy's float32 values
    expected.f16_bits.forEach((bits: number, i: number) => assert.equal(Math.fround(halfToFloat(bits)), expected['a.f16'].values[i]));
    // and encode back to the same bits (except -0 which keeps its sign bit too)
    expected.f16_bits.forEach((bits: number, i: number) => assert.equal(floatToHalf(expected['a.f16'].values[i]), bits));
    assert.equal(halfToFloat(0x3c00), 1);
    assert.equal(halfToFloat(0xc000), -2);
    assert.equal(halfToFloat(0x7bff), 65504);
    assert.equal(halfToFloat(0x0001), 2 ** -24);
    assert.equal(halfToFloat(0x7c00), Infinity);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
    // every finite half survives decode -> encode
    for (let h = 0; h < 0x10000; h++) {
      const v = halfToFloat(h);
      if (!Number.isNaN(v)) assert.equal(floatToHalf(v), h, `half 0x${h.toString(16)}`);
    }
    // ties to even: 1 + 2^-11 lies halfway between 1 (even mantissa) and 1 + 2^-10
    assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00);
    assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
    assert.equal(floatToHalf(65520), 0x7c00); // rounds up past the largest half -> inf
    assert.equal(floatToHalf(65519), 0x7bff);
    assert.equal(floatToHalf(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal -> even (0)
    assert.equal(floatToHalf(3 * 2 ** -26), 0x0001);
    // bfloat16 vs numpy's rounding
    expected['m.bf16'].source.forEach((v: number, i: number) => assert.equal(floatToBf16(v), expected['m.bf16'].bits[i]));
  });

  it('round-trips every writable dtype and sorts names, pads the header to 8 bytes', async () => {
    const file = path.join(dir, 'rt.safetensors');
    const before = tf.memory().numTensors;
    const a = tf.tensor2d([[1, 2, 3], [4, 5, 6.5]]);
    const b = tf.tensor1d([3, -4], 'int32');
    await writeSafetensors(
      file,
      {
        zeta: a,
        alpha: b,
        big: { dtype: 'I64', shape: [3], data: [2 ** 31 - 1, -(2 ** 31), 5] },
        half: { dtype: 'F16', shape: [2, 2], data: [1, -0.5, 0.1, 65504] },
        brain: { dtype: 'BF16', shape: [2], data: [1, 0.1] },
        dbl: { dtype: 'F64', shape: [1], data: [0.1] },
        bytes: { dtype: 'U8', shape: [2], data: [0, 255] },
      },
      { note: 'x' },
    );
    const info = await safetensorsInfo(file);
    assert.equal((8 + info.headerLength) % 8, 0);
    assert.deepEqual(info.metadata, { note: 'x' });
    assert.deepEqual(
      info.tensors.map((t) => t.name),
      ['alpha', 'big', 'brain', 'bytes', 'dbl', 'half', 'zeta'],
    );
    // offsets contiguous in sorted order and cover the data section
    let off = 0;
    for (const t of info.tensors) {
      assert.equal(t.dataOffsets[0], off);
      off = t.dataOffsets[1];
    }
    assert.equal(off, info.dataSize);
    const raw = await fsp.readFile(file);
    const headerText = raw.subarray(8, 8 + info.headerLength).toString('utf8');
    assert.match(headerText, /^\{"__metadata__":\{"note":"x"\}/);
    assert.match(headerText, / *$/);
    const r = await readSafetensors(file);
    assert.deepEqual(Array.from(r.zeta.dataSync()), [1, 2, 3, 4, 5, 6.5]);
    assert.deepEqual(r.zeta.shape, [2, 3]);
    assert.deepEqual(Array.from(r.alpha.dataSync()), [3, -4]);
    assert.equal(r.alpha.dtype, 'int32');
    assert.deepEqual(Array.from(r.big.dataSync()), [2 ** 31 - 1, -(2 ** 31), 5]);
    assert.deepEqual(Array.from(r.half.dataSync()), [1, -0.5, 0.0999755859375, 65504]);
    assert.deepEqual(Array.from(r.brain.dataSync()), [1, 0.10009765625]);
    assert.deepEqual(Array.from(r.dbl.dataSync()), [Math.fround(0.1)]);
    assert.deepEqual(Array.from(r.bytes.dataSync()), [0, 255]);
    tf.dispose([a, b, ...Object.values(r)]);
    assert.equal(tf.memory().numTensors, before);
    // the I64 bytes on disk are real 64-bit little-endian values
    const big = info.tensors.find((t) => t.name === 'big')!;
    const dv = new DataView(raw.buffer, raw.byteOffset + info.dataStart + big.dataOffsets[0], 24);
    assert.equal(dv.getBigInt64(8, true), -(2n ** 31n));
  });

  it('rejects bad writes without leaving a file', async () => {
    const file = path.join(dir, 'bad-write.safetensors');
    await assert.rejects(writeSafetensors(file, { x: { dtype: 'F32', shape: [2, 2], data: [1, 2, 3] } }), ShapeError);
    await assert.rejects(writeSafetensors(file, { x: { dtype: 'I32', shape: [1], data: [2 ** 31] } }), ValueError);
    await assert.rejects(writeSafetensors(file, { x: { dtype: 'I32', shape: [1], data: [1.5] } }), ValueError);
    await assert.rejects(writeSafetensors(file, { x: { dtype: 'Q8' as any, shape: [1], data: [1] } }), ValueError);
    await assert.rejects(fsp.access(file));
    assert.deepEqual((await fsp.readdir(dir)).filter((f) => f.includes('bad-write')), []);
  });

  it('I64 values beyond int32 and F64 values beyond float32 are ValueErrors naming the tensor', async () => {
    const file = path.join(dir, 'range.safetensors');
    await writeSafetensors(file, { ok: { dtype: 'F32', shape: [1], data: [1] }, huge: { dtype: 'I64', shape: [2], data: [1, 2 ** 40] } });
    const before = tf.memory().numTensors;
    await assert.rejects(readSafetensors(file), (e: unknown) => e instanceof ValueError && /"huge".*1099511627776.*int32/.test((e as Error).message));
    assert.equal(tf.memory().numTensors, before, 'no tensor left behind on error');
    assert.deepEqual(Object.keys(await readSafetensorsArrays(file, { names: ['ok'] })), ['ok']);
    const f2 = path.join(dir, 'range64.safetensors');
    await writeSafetensors(f2, { d: { dtype: 'F64', shape: [2], data: [1, 1e300] } });
    await assert.rejects(readSafetensors(f2), (e: unknown) => e instanceof ValueError && /"d".*float32/.test((e as Error).message));
  });

  it('parseSafetensorsHeader validates from bytes alone', () => {
    const ok = handBuilt('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(8));
    const h = parseSafetensorsHeader(ok, ok.length, 'mem');
    assert.equal(h.tensors.length, 1);
    assert.equal(h.dataSize, 8);
    // the same header with a data section one byte short
    assert.throws(() => parseSafetensorsHeader(ok, ok.length - 1, 'mem'), (e: unknown) => e instanceof FormatError && /^mem: .*out of range/.test((e as Error).message));
    // duplicate tensor names are refused (JSON.parse alone would keep the last)
    const dup = handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8));
    assert.throws(() => parseSafetensorsHeader(dup, dup.length, 'mem'), /"a" twice/);
  });

  it('follows the reference reader on layout: contiguous offsets filling the data section, whitespace padding', async () => {
    const zeros = (n: number) => Buffer.alloc(n);
    const parse = (bytes: Uint8Array) => parseSafetensorsHeader(bytes, bytes.length, 'mem');
    // the reference library's own test bytes (safetensors/src/tensor.rs): its doc example loads ...
    const example = Buffer.concat([Buffer.from('<\0\0\0\0\0\0\0{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', 'latin1'), zeros(16)]);
    assert.deepEqual(parse(example).tensors.map((t) => t.name), ['test']);
    // ... its polyglot-file bytes (the same file with text appended) are refused ...
    const polyglot = Buffer.concat([example, Buffer.from('extra_bogus_data_for_polyglot_file', 'latin1')]);
    assert.throws(() => parse(polyglot), (e: unknown) => e instanceof FormatError && /^mem: 34 trailing bytes after the last tensor: the tensors end at data byte 16 but the data section holds 50 bytes/.test((e as Error).message));
    // ... as is the same file two bytes short ...
    assert.throws(() => parse(example.subarray(0, example.length - 2)), (e: unknown) => e instanceof FormatError && /out of range: the data section holds 14 bytes/.test((e as Error).message));
    // ... and its "JSON attack": ten tensors all claiming bytes [0, 16]
    const attack = `{${Array.from({ length: 10 }, (_, i) => `"weight_${i}":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}`).join(',')}}`;
    assert.throws(() => parse(handBuilt(attack, new Uint8Array(16))), /have overlapping data_offsets/);
    // its whitespace-padded headers load (trailing "\r \t\n", leading "\t\n")
    for (const text of ['{}\r \t\n', '\t\n{}\r ']) {
      const h = parse(Buffer.concat([Buffer.from([6, 0, 0, 0, 0, 0, 0, 0]), Buffer.from(text, 'latin1')]));
      assert.equal(h.tensors.length, 0);
      assert.equal(h.dataSize, 0);
    }
    // a zero-sized tensor at [0, 0] is part of the chain
    const empty = parse(Buffer.from('<\0\0\0\0\0\0\0{"test":{"dtype":"I32","shape":[2,0],"data_offsets":[0, 0]}}', 'latin1'));
    assert.deepEqual(empty.tensors[0].shape, [2, 0]);
    // other whitespace (NUL, a BOM) is not JSON whitespace
    assert.throws(() => parse(handBuilt('\u00a0{}', new Uint8Array(0))), FormatError);
    assert.throws(() => parse(handBuilt('{}\u0000', new Uint8Array(0))), /not valid JSON/);
    // gaps: between tensors, before the first one, and a zero-sized tensor off the chain
    const a = '"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}';
    const gap = handBuilt(`{${a},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}`, new Uint8Array(16));
    assert.throws(() => parse(gap), (e: unknown) => e instanceof FormatError && /^mem: data bytes 8\.\.12 between "a" \[0, 8\] and "b" \[12, 16\] belong to no tensor/.test((e as Error).message));
    const late = handBuilt('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', new Uint8Array(8));
    assert.throws(() => parse(late), /data bytes 0\.\.4 before the first tensor "a" \[4, 8\] belong to no tensor/);
    const stray = handBuilt(`{${a},"z":{"dtype":"F32","shape":[0],"data_offsets":[12,12]}}`, new Uint8Array(8));
    assert.throws(() => parse(stray), /out of range|belong to no tensor/);
    // the file layer says the same, naming the file; header order does not matter, offsets do
    const file = path.join(dir, 'gap.safetensors');
    await fsp.writeFile(file, gap);
    await assert.rejects(readSafetensors(file), (e: unknown) => e instanceof FormatError && (e as Error).message.startsWith(`${file}: data bytes 8..12`));
    const shuffled = handBuilt(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},${a}}`, f32bytes(1, 2, 3));
    await fsp.writeFile(file, shuffled);
    const arrs = await readSafetensorsArrays(file);
    assert.deepEqual([Array.from(arrs.a.data), Array.from(arrs.b.data)], [[1, 2], [3]]);
  });

  it('F8_E4M3 and F8_E5M2 decode to float32 (hand-computed values incl. subnormals, NaN, infinities, -0)', async () => {
    // E4M3 (bias 7, 3 mantissa bits, no infinities): 0x01 = 1/8 * 2^-6 = 2^-9; 0x07 = 7 * 2^-9; 0x08 = 2^-6;
    // 0x38 = 2^0; 0x3f = 1.875; 0x7e = 1.75 * 2^8 = 448; 0x7f and 0xff NaN; 0x80 = -0; 0xb8 = -1; 0xfe = -448
    const e4 = [0x00, 0x01, 0x07, 0x08, 0x38, 0x3f, 0x7e, 0x7f, 0x80, 0xb8, 0xfe, 0xff];
    const e4want = [0, 0.001953125, 0.013671875, 0.015625, 1, 1.875, 448, NaN, -0, -1, -448, NaN];
    // E5M2 (bias 15, 2 mantissa bits): 0x01 = 1/4 * 2^-14 = 2^-16; 0x03 = 3 * 2^-16; 0x04 = 2^-14; 0x3c = 1;
    // 0x3e = 1.5; 0x7b = 1.75 * 2^15 = 57344; 0x7c = +inf; 0x7d, 0x7f NaN; 0xfc = -inf; 0xbc = -1; 0x80 = -0
    const e5 = [0x00, 0x01, 0x03, 0x04, 0x3c, 0x3e, 0x7b, 0x7c, 0x7d, 0x7f, 0xfc, 0xbc, 0x80];
    const e5want = [0, 0.0000152587890625, 0.0000457763671875, 0.00006103515625, 1, 1.5, 57344, Infinity, NaN, NaN, -Infinity, -1, -0];
    e4.forEach((b, i) => assert.ok(Object.is(f8e4m3ToFloat(b), e4want[i]), `E4M3 0x${b.toString(16)}: ${f8e4m3ToFloat(b)} vs ${e4want[i]}`));
    e5.forEach((b, i) => assert.ok(Object.is(f8e5m2ToFloat(b), e5want[i]), `E5M2 0x${b.toString(16)}: ${f8e5m2ToFloat(b)} vs ${e5want[i]}`));
    const header = JSON.stringify({
      e4: { dtype: 'F8_E4M3', shape: [3, 4], data_offsets: [0, 12] },
      e5: { dtype: 'F8_E5M2', shape: [13], data_offsets: [12, 25] },
    });
    const file = path.join(dir, 'f8.safetensors');
    await fsp.writeFile(file, handBuilt(header, Uint8Array.from([...e4, ...e5])));
    const info = await safetensorsInfo(file);
    assert.deepEqual(info.tensors.map((t) => t.dtype), ['F8_E4M3', 'F8_E5M2']);
    const arrs = await readSafetensorsArrays(file);
    assert.ok(arrs.e4.data instanceof Float32Array);
    assert.deepEqual(arrs.e4.shape, [3, 4]);
    arrs.e4.data.forEach((v, i) => assert.ok(Object.is(v, e4want[i]), `file E4M3 [${i}]`));
    arrs.e5.data.forEach((v, i) => assert.ok(Object.is(v, e5want[i]), `file E5M2 [${i}]`));
    const before = tf.memory().numTensors;
    const ts = await readSafetensors(file);
    assert.equal(ts.e4.dtype, 'float32');
    tf.dispose(Object.values(ts));
    assert.equal(tf.memory().numTensors, before);
    // every one of the 256 E4M3 bytes: exactly two NaNs; every E5M2 byte: six NaNs, two infinities
    assert.equal(Array.from({ length: 256 }, (_, b) => f8e4m3ToFloat(b)).filter(Number.isNaN).length, 2);
    const all5 = Array.from({ length: 256 }, (_, b) => f8e5m2ToFloat(b));
    assert.equal(all5.filter(Number.isNaN).length, 6);
    assert.equal(all5.filter((v) => Math.abs(v) === Infinity).length, 2);
  });

  it('missing files are ResolveErrors', async () => {
    await assert.rejects(readSafetensors(path.join(dir, 'nope.safetensors')), (e: unknown) => e instanceof ResolveError && /not found/.test((e as Error).message));
    await assert.rejects(readSafetensors(dir), ResolveError);
  });

  describe('sharded checkpoints', () => {
    let ckpt: string;
    const vals = { 'embed.W_E': [[1, 2], [3, 4]], 'blocks.0.attn.W_Q': [[5]], 'unembed.W_U': [[6, 7]] };
    before(async () => {
      ckpt = path.join(dir, 'sharded');
      await fsp.mkdir(ckpt);
      await writeSafetensors(path.join(ckpt, 'model-00001-of-00002.safetensors'), {
        'embed.W_E': { dtype: 'F32', shape: [2, 2], data: [1, 2, 3, 4] },
        'blocks.0.attn.W_Q': { dtype: 'BF16', shape: [1, 1], data: [5] },
      });
      await writeSafetensors(path.join(ckpt, 'model-00002-of-00002.safetensors'), { 'unembed.W_U': { dtype: 'F16', shape: [1, 2], data: [6, 7] } });
      await fsp.writeFile(
        path.join(ckpt, 'model.safetensors.index.json'),
        JSON.stringify({
          metadata: { total_size: 26 },
          weight_map: {
            'embed.W_E': 'model-00001-of-00002.safetensors',
            'blocks.0.attn.W_Q': 'model-00001-of-00002.safetensors',
            'unembed.W_U': 'model-00002-of-00002.safetensors',
          },
        }),
      );
    });

    it('reads all shards through the index', async () => {
      const before = tf.memory().numTensors;
      const ts = await readCheckpointTensors(ckpt);
      assert.deepEqual(Object.keys(ts).sort(), Object.keys(vals).sort());
      for (const [k, v] of Object.entries(vals)) assert.deepEqual(ts[k].arraySync(), v, k);
      tf.dispose(Object.values(ts));
      const one = await readCheckpointTensors(ckpt, { names: ['unembed.W_U'] });
      assert.deepEqual(Object.keys(one), ['unembed.W_U']);
      tf.dispose(Object.values(one));
      assert.equal(tf.memory().numTensors, before);
    });

    it('prefers model.safetensors when present', async () => {
      const single = path.join(dir, 'single');
      await writeSafetensors(path.join(single, 'model.safetensors'), { x: { dtype: 'F32', shape: [1], data: [9] } });
      const ts = await readCheckpointTensors(single);
      assert.deepEqual(Array.from(ts.x.dataSync()), [9]);
      tf.dispose(Object.values(ts));
    });

    it('names a missing shard, a tensor listed twice, a tensor stored twice, a tensor missing from its shard', async () => {
      const mk = async (name: string, index: string, extra?: () => Promise<void>) => {
        const d = path.join(dir, name);
        await fsp.cp(ckpt, d, { recursive: true });
        await fsp.writeFile(path.join(d, 'model.safetensors.index.json'), index);
        await extra?.();
        return d;
      };
      const before = tf.memory().numTensors;
      const s1 = 'model-00001-of-00002.safetensors';
      const s2 = 'model-00002-of-00002.safetensors';
      const missing = await mk('missing-shard', JSON.stringify({ weight_map: { 'embed.W_E': s1, 'unembed.W_U': 'model-00003.safetensors' } }));
      await assert.rejects(readCheckpointTensors(missing), (e: unknown) => e instanceof ResolveError && /model-00003\.safetensors.*missing/.test((e as Error).message));
      const twice = await mk('listed-twice', `{"weight_map": {"embed.W_E": "${s1}", "unembed.W_U": "${s2}", "embed.W_E": "${s2}"}}`);
      await assert.rejects(readCheckpointTensors(twice), (e: unknown) => e instanceof FormatError && /"embed\.W_E" twice/.test((e as Error).message));
      const stored = await mk('stored-twice', JSON.stringify({ weight_map: { 'embed.W_E': s1, 'unembed.W_U': s2 } }), async () => {
        await writeSafetensors(path.join(dir, 'stored-twice', s2), {
          'unembed.W_U': { dtype: 'F32', shape: [1], data: [1] },
          'embed.W_E': { dtype: 'F32', shape: [1], data: [1] },
        });
      });
      await assert.rejects(readCheckpointTensors(stored), (e: unknown) => e instanceof FormatError && /"embed\.W_E" is stored twice/.test((e as Error).message));
      const absent = await mk('absent', JSON.stringify({ weight_map: { 'embed.W_E': s1, 'pos_embed.W_pos': s2 } }));
      await assert.rejects(readCheckpointTensors(absent), (e: unknown) => e instanceof FormatError && /"pos_embed\.W_pos".*not in the shard/.test((e as Error).message));
      const escape = await mk('escape', JSON.stringify({ weight_map: { 'embed.W_E': '../sharded/' + s1 } }));
      await assert.rejects(readCheckpointTensors(escape), (e: unknown) => e instanceof FormatError && /not a plain relative path/.test((e as Error).message));
      await assert.rejects(readCheckpointTensors(path.join(dir, 'no-such-dir')), ResolveError);
      assert.equal(tf.memory().numTensors, before);
    });
  });
});
