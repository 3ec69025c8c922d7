/**
 * tflens's fused WebGPU kernels (src/backend/webgpu) against plain TensorFlow.js compositions (and
 * host computations where tfjs has no counterpart), on whatever WebGPU adapter exists: Mesa
 * lavapipe here, a real GPU on the accelerator. Skipped, with the reason, when WebGPU cannot start.
 *
 * Tolerances: the float32 paths accumulate in a different order than tfjs's matMul / reductions;
 * each of the K products and additions is rounded at 2^-24 relative, and with O(1) random inputs
 * the sums' errors grow like sqrt(K) * 2^-24 * |terms|, so |got - want| <= 1e-5 * (sqrt(K) + |want|)
 * is a bound with a wide margin that a wrong index, a lost tile or a dropped term breaks by orders
 * of magnitude. Half-precision weights are decoded exactly, so their reference is the float32
 * product with the same rounded weights and the same tolerance.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { BackendError, ShapeError, ValueError } from '../src/errors.js';
import { webgpuOrSkip } from './helpers/webgpu.js';
import { mulberry32 } from '../src/util/random.js';
import {
  type Activation,
  type HalfFormat,
  type TileName,
  adapterFlagFor,
  attention,
  bf16BitsToF32,
  gatherHalf,
  packHalf,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  gatedMatmul,
  matmul,
  norm,
  packFloat32,
  packHalfBytes,
  packedHalfFromFloat32,
  parseAdapterList,
  ropeInvFreq,
  rotary,
  subgroupMatrixTile,
  takeKernelErrors,
  unpackHalf,
  unpackHalfHost,
} from '../src/backend/webgpu/index.js';
import { subgroupProgram } from '../src/backend/webgpu/matmul.js';

function randn(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.tensor(randn(shape.reduce((a, b) => a * b, 1), seed, scale), shape);
}

/** |got - want| <= atol + rtol * |want| everywhere (also -Infinity == -Infinity). */
async function expectClose(got: tf.Tensor, want: tf.Tensor | Float32Array, atol: number, rtol: number, what: string): Promise<void> {
  if (got instanceof tf.Tensor && want instanceof tf.Tensor) assert.deepEqual(got.shape, want.shape, `${what}: shape`);
  const g = await got.data();
  const w = want instanceof tf.Tensor ? await want.data() : want;
  assert.equal(g.length, w.length, `${what}: size`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < g.length; i++) {
    if (g[i] === w[i]) continue;
    const err = Math.abs(g[i] - w[i]) - rtol * Math.abs(w[i]);
    if (!(err <= worst)) {
      worst = Number.isNaN(err) ? Infinity : err;
      at = i;
    }
  }
  assert.ok(worst <= atol, `${what}: element ${at}: got ${g[at]}, want ${w[at]} (excess ${worst} > ${atol})`);
}

function refAct(act: Activation, h: tf.Tensor): tf.Tensor {
  switch (act) {
    case 'none':
      return h;
    case 'relu':
      return tf.relu(h);
    case 'silu':
      return tf.mul(h, tf.sigmoid(h));
    case 'gelu':
      return tf.mul(tf.mul(h, 0.5), tf.add(1, tf.erf(tf.mul(h, Math.SQRT1_2))));
    case 'gelu_new':
      return tf.mul(tf.mul(h, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(h, tf.mul(0.044715, tf.pow(h, 3)))))));
  }
}

/** Reference attention in plain tfjs (GQA by repeating key heads), TransformerLens semantics. */
function refAttention(
  q: tf.Tensor,
  k: tf.Tensor,
  v: tf.Tensor,
  o: { scale: number; past: number; causal: boolean; window?: number; keyMask?: number[][]; slopes?: number[]; softcap?: number; keyPos?: number[][] },
): { z: tf.Tensor; pattern: tf.Tensor; scores: tf.Tensor } {
  return tf.tidy(() => {
    const [B, T, H, dh] = q.shape;
    const [, Tk, KV] = k.shape;
    const G = H / KV;
    const rep = (x: tf.Tensor) => tf.reshape(tf.tile(tf.reshape(x, [B, Tk, KV, 1, dh]), [1, 1, 1, G, 1]), [B, Tk, H, dh]);
    const qh = tf.transpose(q, [0, 2, 1, 3]);
    const kh = tf.transpose(rep(k), [0, 2, 1, 3]);
    const vh = tf.transpose(rep(v), [0, 2, 1, 3]);
    let s = tf.div(tf.matMul(qh, kh, false, true), o.scale);
    if (o.softcap) s = tf.mul(tf.tanh(tf.div(s, o.softcap)), o.softcap);
    const ok = new Float32Array(B * H * T * Tk);
    const bias = new Float32Array(B * H * T * Tk);
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let t = 0; t < T; t++)
          for (let j = 0; j < Tk; j++) {
            const qp = o.past + t;
            const vis = (!o.causal || j <= qp) && (!o.window || qp - j < o.window) && (!o.keyMask || o.keyMask[b][j] !== 0);
            const i = ((b * H + h) * T + t) * Tk + j;
            ok[i] = vis ? 1 : 0;
            bias[i] = o.slopes ? o.slopes[h] * (o.keyPos ? o.keyPos[b][j] : j - qp) : 0;
          }
    const okT = tf.tensor(ok, [B, H, T, Tk]);
    s = tf.add(s, tf.tensor(bias, [B, H, T, Tk]));
    const scores = tf.where(tf.cast(okT, 'bool'), s, tf.fill([B, H, T, Tk], -Infinity));
    const e = tf.mul(tf.exp(tf.sub(tf.where(tf.cast(okT, 'bool'), s, tf.fill(s.shape, -1e30)), tf.max(tf.where(tf.cast(okT, 'bool'), s, tf.fill(s.shape, -1e30)), -1, true))), okT);
    const sum = tf.sum(e, -1, true);
    const pattern = tf.div(e, tf.where(tf.greater(sum, 0), sum, tf.onesLike(sum)));
    const z = tf.transpose(tf.matMul(pattern, vh), [0, 2, 1, 3]);
    return { z, pattern, scores };
  });
}

describe('webgpu kernels: host-side helpers (no GPU needed)', () => {
  it('converts float32 to f16 / bf16 bits with round-to-nearest-even (hand-computed cases)', () => {
    const f16: Array<[number, number]> = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // halfway to the next binade rounds up to Infinity
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // tie, even is 0
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 ulps: even
      [-0, 0x8000],
      [1 / 3, 0x3555],
      [Infinity, 0x7c00],
    ];
    for (const [x, bits] of f16) assert.equal(f32ToF16Bits(x), bits, `f16(${x})`);
    assert.equal(f32ToF16Bits(NaN) & 0x7c00, 0x7c00);
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
    const bf16: Array<[number, number]> = [
      [1, 0x3f80],
      [1 / 3, 0x3eab], // 0x3eaaaaab: low half 0xaaab > 0x8000 rounds up
      [-2.5, 0xc020],
      [1 + 2 ** -8, 0x3f80], // 0x3f808000: tie, even is 0x3f80
      [1 + 3 * 2 ** -8, 0x3f82], // 0x3f818000: tie, even is 0x3f82
    ];
    for (const [x, bits] of bf16) assert.equal(f32ToBf16Bits(x), bits, `bf16(${x})`);
    for (let h = 0; h < 0x7c00; h += 97) assert.equal(f32ToF16Bits(f16BitsToF32(h)), h, `f16 round trip ${h}`);
    for (let h = 0; h < 0x7f80; h += 101) assert.equal(f32ToBf16Bits(bf16BitsToF32(h)), h, `bf16 round trip ${h}`);
  });

  it('packs safetensors-style half bytes in place for even widths and pads odd widths', () => {
    const halves = new Uint16Array([1, 2, 3, 4, 5, 6]);
    const bytes = new Uint8Array(halves.buffer);
    const even = packHalfBytes(bytes, [3, 2]);
    assert.equal(even.buffer, halves.buffer, 'even width is a view, not a copy');
    assert.deepEqual(Array.from(even), [1 | (2 << 16), 3 | (4 << 16), 5 | (6 << 16)]);
    const odd = packHalfBytes(bytes, [2, 3]);
    assert.deepEqual(Array.from(odd), [1 | (2 << 16), 3, 4 | (5 << 16), 6]);
    assert.throws(() => packHalfBytes(bytes, [4, 2]), ShapeError);
    const vals = randn(15, 3);
    for (const fmt of ['f16', 'bf16'] as HalfFormat[]) {
      const back = unpackHalfHost(packFloat32(vals, fmt, [3, 5]), fmt, [3, 5]);
      for (let i = 0; i < 15; i++) assert.ok(Math.abs(back[i] - vals[i]) <= Math.abs(vals[i]) * (fmt === 'f16' ? 2 ** -11 : 2 ** -8) + 1e-7, `${fmt} ${i}`);
    }
  });

  it('parses dawn.node adapter lists and maps a choice to its adapter= flag', () => {
    const msg = "no suitable backends found\nAvailable adapters:\n * backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3'\n * backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)'";
    const list = parseAdapterList(msg);
    assert.deepEqual(list, [
      { backend: 'vulkan', name: 'NVIDIA H100 80GB HBM3' },
      { backend: 'vulkan', name: 'llvmpipe (LLVM 15.0.6, 256 bits)' },
    ]);
    assert.equal(adapterFlagFor('1', list), 'llvmpipe (LLVM 15.0.6, 256 bits)');
    assert.equal(adapterFlagFor(0, list), 'NVIDIA H100 80GB HBM3');
    assert.equal(adapterFlagFor('H100', list), 'H100');
    assert.throws(() => adapterFlagFor('A100', list), /TFLENS_WEBGPU_ADAPTER/);
    assert.throws(() => adapterFlagFor(2, list), /index in \[0, 2\)/);
    const twins = [list[0], list[0]];
    assert.throws(() => adapterFlagFor(1, twins), /same name as adapter 0/);
  });

  it('the tensor-core matmul WGSL compiles without errors or warnings (Dawn null backend)', async function () {
    // No GPU here has subgroup matrices; Dawn's null backend exposes the feature, so at least the
    // shader text (types, builtins, the f16 and subgroup-matrix extensions) is checked by Tint.
    let dawn: { create: (f: string[]) => any; globals: object };
    try {
      dawn = (await import('webgpu' as string)) as typeof dawn;
    } catch {
      console.log('      skipped: the npm package webgpu is not installed');
      return this.skip();
    }
    const adapter = await dawn.create(['backend=null', 'enable-dawn-features=allow_unsafe_apis']).requestAdapter();
    const features = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'];
    if (!adapter || !features.every((f) => adapter.features.has(f))) {
      console.log('      skipped: Dawn null backend without subgroup matrices');
      return this.skip();
    }
    const device = await adapter.requestDevice({ requiredFeatures: features });
    const cfg = { componentType: 'f16', resultComponentType: 'f32', M: 16, N: 16, K: 16 };
    for (const format of ['f16', 'bf16', 'f32'] as const) {
      for (const combine of ['none', 'add', 'mul'] as const) {
        const attrs = { N: 100, K: 96, M: 136, format, act: 'gelu' as const, hasBias: true, combine, path: 'subgroup-matrix' as const, tile: '64x64' as const, outShape: [100, 136], G: 1, Mg: 136 };
        const module = device.createShaderModule({ code: subgroupProgram(attrs, cfg, 32).wgsl() });
        const msgs = (await module.getCompilationInfo()).messages.map((m: { type: string; message: string }) => `${m.type}: ${m.message}`);
        assert.deepEqual(msgs, [], `${format} ${combine}`);
      }
    }
    device.destroy();
  });
});

describe('webgpu kernels (fused WGSL on the tfjs WebGPU backend)', function () {
  this.timeout(600000);
  let prev = '';

  before(async function () {
    prev = tf.getBackend();
    const info = await webgpuOrSkip(this);
    console.log(`      (adapter: ${info.adapter.description || info.adapter.device}; features ${JSON.stringify(info.features)})`);
  });

  after(async () => {
    const errors = await takeKernelErrors();
    if (prev && prev !== tf.getBackend()) await tf.setBackend(prev);
    assert.deepEqual(errors, [], 'WebGPU validation errors');
  });

  async function expectNoLeak<T>(fn: () => T | Promise<T>, outputs: number): Promise<T> {
    const before = tf.memory().numTensors;
    const r = await fn();
    assert.equal(tf.memory().numTensors, before + outputs, 'tensors left behind');
    return r;
  }

  const shapes: Array<[number, number, number]> = [
    [7, 20, 12], // all tiny, aligned
    [70, 36, 130], // several tiles, M % 4 != 0 on y
    [3, 30, 18], // K, M unaligned
    [130, 64, 136], // edge tiles in both directions
  ];

  for (const tile of ['16x64', '32x64', '64x64', '128x64', '128x128'] as TileName[]) {
    it(`matmul (float32 W) with bias, activation and residual, tile ${tile}`, async () => {
      for (const [i, [N, K, M]] of shapes.entries()) {
        const act = (['gelu', 'gelu_new', 'relu', 'silu'] as Activation[])[i % 4];
        const [x, w, b, r] = [rand([N, K], 1 + i), rand([K, M], 2 + i, 0.3), rand([M], 3 + i), rand([N, M], 4 + i)];
        const y = await expectNoLeak(() => matmul(x, w, { bias: b, activation: act, residual: r, tile, path: 'tiled' }), 1);
        const want = tf.tidy(() => tf.add(refAct(act, tf.add(tf.matMul(x, w), b)), r));
        await expectClose(y, want, 1e-5 * Math.sqrt(K), 1e-5, `${tile} ${N}x${K}x${M} ${act}`);
        const plain = matmul(x, w, { tile, path: 'tiled' });
        await expectClose(plain, tf.tidy(() => tf.matMul(x, w)), 1e-5 * Math.sqrt(K), 1e-5, `${tile} plain`);
        tf.dispose([x, w, b, r, y, want, plain]);
      }
    });
  }

  it('matmul keeps leading dims and multiplies by a third tensor', async () => {
    const x = rand([2, 3, 16], 11);
    const w = rand([16, 8], 12);
    const m = rand([2, 3, 8], 13);
    const y = matmul(x, w, { multiply: m, activation: 'silu' });
    assert.deepEqual(y.shape, [2, 3, 8]);
    const want = tf.tidy(() => tf.mul(refAct('silu', tf.reshape(tf.matMul(tf.reshape(x, [6, 16]), w), [2, 3, 8])), m));
    await expectClose(y, want, 4e-5, 1e-5, 'multiply');
    tf.dispose([x, w, m, y, want]);
  });

  for (const fmt of ['f16', 'bf16'] as HalfFormat[]) {
    it(`matmul with packed ${fmt} weights equals float32 matmul with the same rounded weights`, async () => {
      for (const [i, [N, K, M]] of [...shapes, [5, 32, 21] as [number, number, number]].entries()) {
        const wv = randn(K * M, 20 + i, 0.5);
        const packed = packedHalfFromFloat32(wv, fmt, [K, M]);
        const wRounded = tf.tensor(unpackHalfHost(await packed.words.data() as Int32Array, fmt, [K, M]), [K, M]);
        const x = rand([N, K], 30 + i);
        const b = rand([M], 40 + i);
        const y = matmul(x, packed, { bias: b, activation: 'gelu', path: 'tiled' });
        const want = tf.tidy(() => refAct('gelu', tf.add(tf.matMul(x, wRounded), b)));
        await expectClose(y, want, 1e-5 * Math.sqrt(K), 1e-5, `${fmt} ${N}x${K}x${M}`);
        const unpacked = await expectNoLeak(() => unpackHalf(packed), 1);
        assert.deepEqual(Array.from(await unpacked.data()), Array.from(await wRounded.data()), `${fmt} unpack is exact`);
        tf.dispose([packed.words, wRounded, x, b, y, want, unpacked]);
      }
    });
  }

  it('matmul reads column blocks [G, K, Mg] (canonical W_Q [heads, d, d_head]) as the [K, G Mg] matrix, float32 and packed', async () => {
    // Mg 8 and 16: aligned loads; Mg 6 and 5: per-element loads (an odd width pads each packed row)
    for (const [i, [N, G, K, Mg]] of [[7, 4, 20, 8], [33, 3, 36, 16], [5, 5, 12, 6], [9, 2, 8, 5]].entries()) {
      const wv = randn(G * K * Mg, 140 + i, 0.5);
      const w = tf.tensor(wv, [G, K, Mg]);
      const flat = tf.tidy(() => tf.reshape(tf.transpose(w, [1, 0, 2]), [K, G * Mg]));
      const x = rand([N, K], 150 + i);
      const b = rand([G * Mg], 160 + i);
      const y = await expectNoLeak(() => matmul(x, w, { bias: b }), 1);
      const want = tf.tidy(() => tf.add(tf.matMul(x, flat), b));
      await expectClose(y, want, 1e-5 * Math.sqrt(K), 1e-5, `blocks ${[N, G, K, Mg]}`);
      for (const fmt of ['f16', 'bf16'] as HalfFormat[]) {
        const packed = packedHalfFromFloat32(wv, fmt, [G, K, Mg]);
        const rounded = tf.tidy(() => tf.reshape(tf.transpose(tf.tensor(unpackHalfHost(packFloat32(wv, fmt, [G, K, Mg]), fmt, [G, K, Mg]), [G, K, Mg]), [1, 0, 2]), [K, G * Mg]));
        const yh = matmul(x, packed, { residual: want });
        const wantH = tf.tidy(() => tf.add(tf.matMul(x, rounded), want));
        await expectClose(yh, wantH, 1e-5 * Math.sqrt(K), 1e-5, `blocks ${fmt} ${[N, G, K, Mg]}`);
        tf.dispose([packed.words, rounded, yh, wantH]);
      }
      tf.dispose([w, flat, x, b, y, want]);
    }
  });

  it('packHalf rounds float32 to F16 / BF16 on the GPU as the host does (nearest even, subnormals, overflow, NaN) and gatherHalf reads rows', async () => {
    const special = [0, -0, 1, -2.5, 65504, 65520, 1e6, -1e6, 6e-8, 3e-8, 1e-40, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity, -Infinity, NaN];
    const vals = new Float32Array([...special, ...randn(61, 170, 100)]);
    const shape = [8, 10];
    const x = tf.tensor(vals, shape);
    for (const [fmt, toBits] of [['f16', f32ToF16Bits], ['bf16', f32ToBf16Bits]] as const) {
      const p = await expectNoLeak(() => packHalf(x, fmt), 1);
      const got = new Uint16Array((await p.words.data() as Int32Array).buffer);
      for (let i = 0; i < vals.length; i++) {
        const want = toBits(vals[i]);
        // NaN: any quiet NaN pattern of the format
        if (Number.isNaN(vals[i])) assert.ok(Number.isNaN((fmt === 'f16' ? f16BitsToF32 : bf16BitsToF32)(got[i])), `${fmt} NaN`);
        else assert.equal(got[i], want, `${fmt} ${vals[i]}: got ${got[i].toString(16)}, want ${want.toString(16)}`);
      }
      // odd width: one zero half of padding per row, and the round trip through unpackHalf
      const odd = tf.tensor(randn(15, 171), [3, 5]);
      const po = packHalf(odd, fmt);
      assert.deepEqual(po.words.shape, [3, 3]);
      const back = unpackHalf(po);
      const hostBack = unpackHalfHost(await po.words.data() as Int32Array, fmt, [3, 5]);
      assert.deepEqual(Array.from(await back.data()), Array.from(hostBack));
      const ids = tf.tensor2d([[2, 0], [1, 2]], [2, 2], 'int32');
      const rows = await expectNoLeak(() => gatherHalf(po, ids), 1);
      assert.deepEqual(rows.shape, [2, 2, 5]);
      const pick = (r: number) => Array.from(hostBack.slice(r * 5, r * 5 + 5));
      assert.deepEqual(Array.from(await rows.data()), [2, 0, 1, 2].flatMap(pick), `${fmt} gathered rows`);
      tf.dispose([p.words, odd, po.words, back, ids, rows]);
    }
    x.dispose();
  });

  it('gated MLP input act(x Wg + bg) * (x Wu + bu) in one kernel (float32 and bf16 weights)', async () => {
    for (const [i, [N, K, M]] of shapes.entries()) {
      const x = rand([N, K], 50 + i);
      const [wg, wu] = [rand([K, M], 51 + i, 0.3), rand([K, M], 52 + i, 0.3)];
      const [bg, bu] = [rand([M], 53 + i), rand([M], 54 + i)];
      const act = i % 2 ? 'gelu' : 'silu';
      const y = await expectNoLeak(() => gatedMatmul(x, wg, wu, { activation: act, biasGate: bg, biasUp: bu, path: 'tiled' }), 1);
      const want = tf.tidy(() => tf.mul(refAct(act, tf.add(tf.matMul(x, wg), bg)), tf.add(tf.matMul(x, wu), bu)));
      await expectClose(y, want, 2e-5 * Math.sqrt(K), 2e-5, `gated ${N}x${K}x${M}`);
      const pg = packedHalfFromFloat32(await wg.data() as Float32Array, 'bf16', [K, M]);
      const pu = packedHalfFromFloat32(await wu.data() as Float32Array, 'bf16', [K, M]);
      const yh = gatedMatmul(x, pg, pu, { activation: act, path: 'tiled' });
      const [rg, ru] = [unpackHalf(pg), unpackHalf(pu)];
      const wantH = tf.tidy(() => tf.mul(refAct(act, tf.matMul(x, rg)), tf.matMul(x, ru)));
      await expectClose(yh, wantH, 2e-5 * Math.sqrt(K), 2e-5, `gated bf16 ${N}x${K}x${M}`);
      tf.dispose([x, wg, wu, bg, bu, y, want, pg.words, pu.words, yh, rg, ru, wantH]);
    }
  });

  it('matmul on the subgroup-matrix (tensor core) path agrees with f16-rounded inputs', async function () {
    if (!subgroupMatrixTile()) {
      console.log('      skipped: this adapter exposes no f16 subgroup-matrix configuration');
      this.skip();
    }
    for (const [N, K, M] of [[100, 96, 136], [64, 256, 256], [5, 64, 200]] as Array<[number, number, number]>) {
      const xv = randn(N * K, 60);
      const x = tf.tensor(xv, [N, K]);
      const packed = packedHalfFromFloat32(randn(K * M, 61, 0.2), 'f16', [K, M]);
      const b = rand([M], 62);
      const r = rand([N, M], 63);
      const y = matmul(x, packed, { bias: b, activation: 'gelu_new', residual: r, path: 'subgroup-matrix' });
      const x16 = tf.tensor(xv.map((v) => f16BitsToF32(f32ToF16Bits(v))), [N, K]);
      const w = unpackHalf(packed);
      const want = tf.tidy(() => tf.add(refAct('gelu_new', tf.add(tf.matMul(x16, w), b)), r));
      // x is rounded to f16 like the kernel does; what remains is accumulation order inside the tensor cores
      await expectClose(y, want, 1e-4 * Math.sqrt(K), 1e-4, `sgm ${N}x${K}x${M}`);
      tf.dispose([x, packed.words, b, r, y, x16, w, want]);
    }
  });

  it('rejects bad shapes and a non-WebGPU backend with typed errors', async () => {
    const x = rand([4, 8], 70);
    const w = rand([6, 8], 71);
    assert.throws(() => matmul(x, w), ShapeError);
    assert.throws(() => matmul(x, rand([8, 4], 72), { bias: rand([5], 73) }), ShapeError);
    assert.throws(() => matmul(x, rand([8, 4], 72), { activation: 'tanh' as Activation }), ValueError);
    assert.throws(() => norm(x, { kind: 'RMS', eps: 1e-5, bias: rand([8], 74) }), ValueError);
    assert.throws(() => attention(rand([1, 2, 3, 8], 75), rand([1, 2, 2, 8], 76), rand([1, 2, 2, 8], 77), { scale: 1 }), ShapeError);
    const be = tf.getBackend();
    await tf.setBackend('cpu');
    try {
      const xc = tf.zeros([2, 4]);
      assert.throws(() => matmul(xc, tf.zeros([4, 4])), BackendError);
      tf.dispose(xc);
    } finally {
      await tf.setBackend(be);
    }
    tf.dispose([x, w]);
  });

  it('is visible to tf.profile under its kernel name and leaves no tensor behind', async () => {
    const x = rand([8, 16], 80);
    const w = rand([16, 16], 81);
    const info = await tf.profile(() => tf.tidy(() => matmul(matmul(x, w), w)));
    assert.ok(info.kernelNames.includes('TflensMatmul'), `kernels: ${info.kernelNames}`);
    assert.equal(info.newTensors, 1);
    tf.dispose([x, w]);
  });

  for (const kind of ['LN', 'RMS'] as const) {
    it(`${kind === 'LN' ? 'LayerNorm' : 'RMSNorm'} with weight${kind === 'LN' ? ' and bias' : ''} and the per-row scale`, async () => {
      for (const [i, D] of [16, 30, 768, 1000].entries()) {
        const x = tf.add(rand([3, 5, D], 90 + i, 2), 0.7);
        const w = rand([D], 91 + i);
        const b = kind === 'LN' ? rand([D], 92 + i) : null;
        const eps = 1e-5;
        const out = await expectNoLeak(() => norm(x, { kind, eps, weight: w, bias: b, wantScale: true }), 2);
        const [wantY, wantS] = tf.tidy(() => {
          const c = kind === 'LN' ? tf.sub(x, tf.mean(x, -1, true)) : x;
          const s = tf.sqrt(tf.add(tf.mean(tf.square(c), -1, true), eps));
          let y = tf.mul(tf.div(c, s), w);
          if (b) y = tf.add(y, b);
          return [y, s];
        });
        // sums over D values of O(1): error ~ sqrt(D) * 2^-24 relative to the row's scale
        await expectClose(out.y, wantY, 2e-6 * Math.sqrt(D), 1e-5, `${kind} y D=${D}`);
        await expectClose(out.scale!, wantS, 0, 1e-5, `${kind} scale D=${D}`);
        const plain = norm(x, { kind, eps });
        assert.equal(plain.scale, undefined);
        tf.dispose([x, w, b, out.y, out.scale, wantY, wantS, plain.y].filter((t): t is tf.Tensor => !!t));
      }
    });
  }

  for (const style of ['half', 'interleaved'] as const) {
    it(`rotary (${style}) matches the float64 host rotation of float32 angles, partial and full rotary dims`, async () => {
      for (const [i, [B, T, H, dh, rd]] of [
        [2, 5, 3, 8, 8],
        [1, 4, 2, 16, 8],
        [2, 3, 2, 64, 32],
      ].entries()) {
        const x = rand([B, T, H, dh], 100 + i);
        const posv = Array.from({ length: B * T }, (_, j) => [0, 1, 7, 100, 4095, 70000][(j * 5 + i) % 6]);
        const pos = tf.tensor2d(posv, [B, T], 'int32');
        const inv = ropeInvFreq(rd, 10000);
        const y = await expectNoLeak(() => rotary(x, pos, { style, rotaryDim: rd, invFreq: inv }), 1);
        const xv = await x.data();
        const want = new Float32Array(xv.length);
        for (let bt = 0; bt < B * T; bt++)
          for (let h = 0; h < H; h++)
            for (let d = 0; d < dh; d++) {
              const at = (bt * H + h) * dh + d;
              if (d >= rd) {
                want[at] = xv[at];
                continue;
              }
              const [fi, partner] = style === 'half' ? (d < rd / 2 ? [d, -xv[at + rd / 2]] : [d - rd / 2, xv[at - rd / 2]]) : d % 2 === 0 ? [d / 2, -xv[at + 1]] : [(d - 1) / 2, xv[at - 1]];
              const ang = Math.fround(posv[bt] * inv[fi]);
              want[at] = xv[at] * Math.cos(ang) + partner * Math.sin(ang);
            }
        await expectClose(y, want, 2e-6, 2e-6, `rotary ${style} ${[B, T, H, dh, rd]}`);
        const byTheta = rotary(x, pos, { style, rotaryDim: rd, theta: 10000 });
        await expectClose(byTheta, y, 0, 0, 'theta gives the same table');
        // a cos/sin scale (YaRN / LongRoPE attention factor) multiplies the rotated dims only
        const scaled = rotary(x, pos, { style, rotaryDim: rd, invFreq: inv, scale: 1.25 });
        const wantScaled = want.map((v, at) => (at % dh < rd ? v * 1.25 : v));
        await expectClose(scaled, wantScaled, 3e-6, 3e-6, `rotary ${style} scaled`);
        tf.dispose([x, pos, y, byTheta, scaled]);
      }
    });
  }

  interface AttnCase {
    name: string;
    B: number;
    T: number;
    Tk: number;
    H: number;
    KV: number;
    dh: number;
    causal?: boolean;
    window?: number;
    pad?: number[];
    alibi?: boolean;
    softcap?: number;
    chunks?: number;
    /** ALiBi from key position ids (positions counted over real keys, HF BLOOM) instead of (j - query position). */
    keyPos?: boolean;
  }
  const cases: AttnCase[] = [
    { name: 'MHA causal', B: 2, T: 5, Tk: 5, H: 2, KV: 2, dh: 8 },
    { name: 'GQA, left padding, past keys (fully masked rows)', B: 2, T: 3, Tk: 7, H: 4, KV: 2, dh: 16, pad: [0, 4] },
    { name: 'sliding window + ALiBi + soft-capping', B: 1, T: 9, Tk: 12, H: 3, KV: 1, dh: 12, window: 4, alibi: true, softcap: 3 },
    { name: 'dh 64, two invocations per row, several row blocks', B: 1, T: 40, Tk: 40, H: 4, KV: 2, dh: 64 },
    { name: 'dh 128, several key tiles', B: 1, T: 6, Tk: 37, H: 2, KV: 1, dh: 128, pad: [3] },
    { name: 'not causal', B: 1, T: 4, Tk: 6, H: 2, KV: 1, dh: 8, causal: false },
    { name: 'decode step, keys in 3 chunks', B: 2, T: 1, Tk: 50, H: 4, KV: 2, dh: 32, pad: [0, 10], chunks: 3 },
    { name: 'prefill, keys in 4 chunks', B: 1, T: 20, Tk: 29, H: 2, KV: 2, dh: 16, chunks: 4, alibi: true },
    { name: 'ALiBi by key position ids, left padding', B: 2, T: 6, Tk: 6, H: 4, KV: 4, dh: 8, alibi: true, keyPos: true, pad: [0, 2] },
  ];
  it('attention: a decode step split into 2, 3 and 5 key chunks of several tiles each (one process, one cache of pipelines)', async () => {
    const [B, T, Tk, H, KV, dh] = [1, 2, 300, 6, 2, 16];
    const q = rand([B, T, H, dh], 210);
    const k = rand([B, Tk, KV, dh], 211);
    const v = rand([B, Tk, KV, dh], 212);
    const ref = refAttention(q, k, v, { scale: 4, past: Tk - T, causal: true });
    for (const chunks of [2, 3, 5]) {
      const { z } = attention(q, k, v, { scale: 4, keyChunks: chunks });
      await expectClose(z, ref.z, 1e-5, 1e-5, `z with ${chunks} key chunks`);
      z.dispose();
    }
    tf.dispose([q, k, v, ref.z, ref.pattern, ref.scores]);
  });

  for (const c of cases) {
    it(`attention: ${c.name}`, async () => {
      const q = rand([c.B, c.T, c.H, c.dh], 200);
      const k = rand([c.B, c.Tk, c.KV, c.dh], 201);
      const v = rand([c.B, c.Tk, c.KV, c.dh], 202);
      const keyMask = c.pad ? c.pad.map((p) => Array.from({ length: c.Tk }, (_, j) => (j < p ? 0 : 1))) : undefined;
      const km = keyMask ? tf.tensor2d(keyMask, [c.B, c.Tk], 'int32') : null;
      const slopes = c.alibi ? Array.from({ length: c.H }, (_, h) => 2 ** (-(h + 1))) : undefined;
      const sl = slopes ? tf.tensor1d(slopes) : null;
      const past = c.Tk - c.T;
      const scale = Math.sqrt(c.dh);
      const causal = c.causal ?? true;
      // key position ids: counted over real keys (0 for padding), as the forward derives them from the mask
      const keyPos = c.keyPos ? Array.from({ length: c.B }, (_, b) => Array.from({ length: c.Tk }, (_, j) => Math.max(0, j - (c.pad?.[b] ?? 0)))) : undefined;
      const kp = keyPos ? tf.tensor2d(keyPos, [c.B, c.Tk], 'int32') : null;
      const opts = { scale, causal, window: c.window, keyMask: km, alibiSlopes: sl, alibiKeyPositions: kp, softcap: c.softcap };
      const ref = refAttention(q, k, v, { scale, past, causal, window: c.window, keyMask, slopes, softcap: c.softcap, keyPos });
      const full = await expectNoLeak(() => attention(q, k, v, { ...opts, wantPattern: true, wantScores: true, wantLastArgmax: true }), 4);
      await expectClose(full.z, ref.z, 1e-5, 1e-5, 'z');
      await expectClose(full.pattern!, ref.pattern, 1e-6, 1e-5, 'pattern');
      await expectClose(full.scores!, ref.scores, 1e-5, 1e-5, 'scores');
      // argmax over keys of the last query row, from the reference scores on the host
      const rs = await ref.scores.data();
      const want: number[] = [];
      for (let b = 0; b < c.B; b++)
        for (let h = 0; h < c.H; h++) {
          let best = 0;
          for (let j = 0; j < c.Tk; j++) {
            const at = ((b * c.H + h) * c.T + c.T - 1) * c.Tk;
            if (rs[at + j] > rs[at + best] || (rs[at + best] === -Infinity && rs[at + j] > -Infinity)) best = j;
          }
          want.push(best);
        }
      assert.deepEqual(Array.from(await full.lastArgmax!.data()), want, 'last-row argmax');
      const zOnly = await expectNoLeak(() => attention(q, k, v, { ...opts, keyChunks: c.chunks }), 1);
      await expectClose(zOnly.z, ref.z, 1e-5, 1e-5, `z alone (${c.chunks ?? 'default'} chunks)`);
      assert.equal(zOnly.pattern, undefined);
      tf.dispose([q, k, v, km, sl, kp, ref.z, ref.pattern, ref.scores, full.z, full.pattern!, full.scores!, full.lastArgmax!, zOnly.z].filter((t): t is tf.Tensor => !!t));
    });
  }
});
