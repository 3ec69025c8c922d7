// Micro-benchmark of tflens's fused WebGPU kernels (src/backend/webgpu) against TensorFlow.js's own
// ops on the same GPU, in one process. Prints a table and writes JSON (--out FILE).
//
//   node bench/kernels/kernels-bench.mjs [--quick] [--parts matmul,attention,norm,rotary,gated] [--out f.json]
//
// Imports the compiled library from TFLENS_DIST (default bench/out/dist; build it with
// `node node_modules/typescript/bin/tsc -p tsconfig.json --outDir bench/out/dist`).
// Timing: each case runs once to compile, then back-to-back repetitions are recorded into tfjs's
// command stream and the GPU queue is drained once at the end (wall time / repetitions), so the
// per-dispatch CPU cost counts but no read-back does. Every kernel is also checked against the tfjs
// result on a smaller shape first (max |diff| / max |ref| printed), which is the only check of the
// subgroup-matrix path where the GPU has one.
import * as tf from '@tensorflow/tfjs';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const flag = (n) => args.includes(`--${n}`);
const opt = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);
const quick = flag('quick');
const parts = new Set(opt('parts', 'matmul,attention,gated,norm,rotary').split(','));
const dist = resolve(process.env.TFLENS_DIST ?? 'bench/out/dist');
const K = await import(pathToFileURL(`${dist}/backend/webgpu/index.js`).href);

const info = await K.setupWebGPU();
const backend = tf.backend();
const rows = [];
const log = (...a) => console.log(...a);
log(`adapter: ${info.adapter.vendor} ${info.adapter.architecture} ${info.adapter.device} | ${info.adapter.description}`);
log(`features: ${JSON.stringify(info.features)}; subgroup sizes ${info.subgroupMinSize}-${info.subgroupMaxSize}; toggles ${info.toggles.join(',')}`);
log(`subgroupMatrixConfigs: ${JSON.stringify(info.subgroupMatrixConfigs)}`);
log(`limits: ${JSON.stringify(info.limits)}`);

async function drain() {
  if (backend.commandEncoder) {
    backend.endComputePassEncoder();
    backend.submitQueue();
  }
  await backend.device.queue.onSubmittedWorkDone();
}

/** Median-free mean time (ms) of `fn` over repetitions filling about `budgetMs`. */
async function time(fn, budgetMs = quick ? 50 : 250) {
  tf.dispose(fn()); // compile + first run
  await drain();
  let reps = 1;
  let t0 = performance.now();
  tf.dispose(fn());
  await drain();
  let one = performance.now() - t0;
  reps = Math.max(2, Math.min(200, Math.round(budgetMs / Math.max(one, 0.01))));
  t0 = performance.now();
  for (let i = 0; i < reps; i++) tf.dispose(fn());
  await drain();
  return (performance.now() - t0) / reps;
}

async function maxRelDiff(a, b) {
  const [x, y] = [await a.data(), await b.data()];
  let d = 0;
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    if (x[i] === y[i]) continue;
    d = Math.max(d, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  for (let i = 0; i < y.length; i++) if (Number.isFinite(y[i])) m = Math.max(m, Math.abs(y[i]));
  return m ? d / m : d;
}

function record(r) {
  rows.push(r);
  const extra = r.tflops != null ? `${r.tflops.toFixed(2)} TFLOP/s` : r.gbs != null ? `${r.gbs.toFixed(1)} GB/s` : '';
  log(`${r.part.padEnd(9)} ${r.case.padEnd(44)} ${r.impl.padEnd(34)} ${r.ms.toFixed(3).padStart(9)} ms  ${extra}${r.err != null ? `  err ${r.err.toExponential(1)}` : ''}${r.note ? `  (${r.note})` : ''}`);
}

async function attempt(what, fn) {
  try {
    return await fn();
  } catch (e) {
    log(`${what}: FAILED ${String(e.message ?? e).split('\n')[0]}`);
    rows.push({ part: 'error', case: what, impl: '', ms: NaN, note: String(e.message ?? e).slice(0, 500) });
    return null;
  }
}

const randn = (shape, scale = 1, seed = 1) => tf.randomNormal(shape, 0, scale, 'float32', seed);
const sgm = K.subgroupMatrixTile();

// ------------------------------------------------------------------ matmul
if (parts.has('matmul')) {
  const shapes = quick
    ? [['tiny 64x96x128', 64, 96, 128]]
    : [
        ['GPT-2 small MLP in, T=1024 (1024x768x3072)', 1024, 768, 3072],
        ['GPT-2 small MLP out (1024x3072x768)', 1024, 3072, 768],
        ['GPT-2 small QKV, B=8 T=128 (1024x768x2304)', 1024, 768, 2304],
        ['square 4096^3', 4096, 4096, 4096],
        ['7B MLP in, T=4096 (4096x4096x11008)', 4096, 4096, 11008],
        ['7B MLP out (4096x11008x4096)', 4096, 11008, 4096],
        ['7B decode step (1x4096x11008)', 1, 4096, 11008],
      ];
  // correctness of every path on one moderate shape
  {
    const [N, Kd, M] = quick ? [33, 64, 72] : [300, 512, 392];
    const x = randn([N, Kd]);
    const w = randn([Kd, M], 0.05, 2);
    const ref = tf.matMul(x, w);
    for (const tile of Object.keys(K.TILES)) {
      await attempt(`check tiled ${tile}`, async () => {
        const y = K.matmul(x, w, { tile, path: 'tiled' });
        record({ part: 'check', case: `matmul ${N}x${Kd}x${M}`, impl: `tiled ${tile} f32`, ms: 0, err: await maxRelDiff(y, ref) });
        y.dispose();
      });
    }
    for (const fmt of ['f16', 'bf16']) {
      const p = K.packedHalfFromFloat32(await w.data(), fmt, [Kd, M]);
      const wr = K.unpackHalf(p);
      const refh = tf.matMul(x, wr);
      for (const path of ['tiled', ...(sgm ? ['subgroup-matrix'] : [])]) {
        await attempt(`check ${path} ${fmt}`, async () => {
          const y = K.matmul(x, p, { path });
          record({ part: 'check', case: `matmul ${N}x${Kd}x${M}`, impl: `${path} ${fmt} weights`, ms: 0, err: await maxRelDiff(y, refh) });
          y.dispose();
        });
      }
      tf.dispose([p.words, wr, refh]);
    }
    tf.dispose([x, w, ref]);
  }
  for (const [name, N, Kd, M] of shapes) {
    const flops = 2 * N * Kd * M;
    const x = randn([N, Kd]);
    const w = randn([Kd, M], 0.02, 2);
    const row = (impl, ms, note) => record({ part: 'matmul', case: name, impl, ms, tflops: flops / ms / 1e9, note });
    await attempt(`${name} tfjs`, async () => row('tfjs tf.matMul f32', await time(() => tf.matMul(x, w))));
    const tiles = N <= 16 ? ['16x64'] : ['128x128', '128x64', '64x64'];
    for (const tile of tiles) await attempt(`${name} tiled ${tile}`, async () => row(`tflens tiled ${tile} f32`, await time(() => K.matmul(x, w, { tile, path: 'tiled' }))));
    for (const fmt of ['f16', 'bf16']) {
      const p = K.packedHalfFromFloat32(await w.data(), fmt, [Kd, M]);
      const best = K.defaultTile(N, M);
      await attempt(`${name} tiled ${fmt}`, async () => row(`tflens tiled ${best} ${fmt} W`, await time(() => K.matmul(x, p, { path: 'tiled' }))));
      if (sgm) await attempt(`${name} sgm ${fmt}`, async () => row(`tflens subgroup-matrix ${fmt} W`, await time(() => K.matmul(x, p, { path: 'subgroup-matrix' }))));
      p.words.dispose();
    }
    tf.dispose([x, w]);
  }
}

// ------------------------------------------------------------------ attention
/** The unfused composition (what src/model/ops.ts does on tfjs): scores, mask, softmax, value mix. */
function tfjsAttention(q, k, v, past) {
  return tf.tidy(() => {
    const [B, T, H, dh] = q.shape;
    const [, Tk, KV] = k.shape;
    const G = H / KV;
    const qg = tf.reshape(tf.transpose(tf.reshape(q, [B, T, KV, G, dh]), [0, 2, 3, 1, 4]), [B, KV, G * T, dh]);
    const s = tf.reshape(tf.div(tf.matMul(qg, tf.transpose(k, [0, 2, 3, 1])), Math.sqrt(dh)), [B, H, T, Tk]);
    const qi = tf.range(past, past + T, 1, 'int32').reshape([T, 1]);
    const ki = tf.range(0, Tk, 1, 'int32').reshape([1, Tk]);
    const masked = tf.where(tf.lessEqual(ki, qi).reshape([1, 1, T, Tk]), s, tf.fill([1, 1, T, Tk], -Infinity));
    const p = tf.softmax(tf.maximum(masked, -3e38), -1);
    const zg = tf.matMul(tf.reshape(p, [B, KV, G * T, Tk]), tf.transpose(v, [0, 2, 1, 3]));
    return [tf.transpose(tf.reshape(zg, [B, H, T, dh]), [0, 2, 1, 3]), p];
  });
}

if (parts.has('attention')) {
  const [H, KV, dh] = [14, 2, 64]; // Qwen2-0.5B
  const cases = quick
    ? [['tiny T=64', 1, 64, 64]]
    : [
        ['Qwen2-0.5B prefill T=1024', 1, 1024, 1024],
        ['Qwen2-0.5B prefill T=4096', 1, 4096, 4096],
        ['Qwen2-0.5B decode T=1, 4096 keys', 1, 1, 4096],
      ];
  for (const [name, B, T, Tk] of cases) {
    const q = randn([B, T, H, dh], 1, 5);
    const k = randn([B, Tk, KV, dh], 1, 6);
    const v = randn([B, Tk, KV, dh], 1, 7);
    const past = Tk - T;
    // causal FLOPs actually needed: QK and PV over the visible half (about T*Tk/2 pairs when T == Tk)
    const pairs = T === Tk ? (T * (T + 1)) / 2 : T * Tk;
    const flops = 4 * pairs * dh * H * B;
    const row = (impl, ms, err, note) => record({ part: 'attention', case: name, impl, ms, tflops: flops / ms / 1e9, err, note });
    const [zr, pr] = tfjsAttention(q, k, v, past);
    await attempt(`${name} tfjs`, async () => row('tfjs composition (pattern materialised)', await time(() => tfjsAttention(q, k, v, past))));
    await attempt(`${name} fused`, async () => {
      const r = K.attention(q, k, v, { scale: Math.sqrt(dh), pastLength: past });
      const err = await maxRelDiff(r.z, zr);
      r.z.dispose();
      row('tflens fused (z only)', await time(() => K.attention(q, k, v, { scale: Math.sqrt(dh), pastLength: past }).z), err);
    });
    await attempt(`${name} fused+pattern`, async () => {
      const r = K.attention(q, k, v, { scale: Math.sqrt(dh), pastLength: past, wantPattern: true });
      const err = Math.max(await maxRelDiff(r.z, zr), await maxRelDiff(r.pattern, pr));
      tf.dispose([r.z, r.pattern]);
      row('tflens fused + pattern written', await time(() => Object.values(K.attention(q, k, v, { scale: Math.sqrt(dh), pastLength: past, wantPattern: true }))), err);
    });
    if (T === 1) {
      await attempt(`${name} argmax`, async () => {
        row('tflens fused z + last-row argmax', await time(() => Object.values(K.attention(q, k, v, { scale: Math.sqrt(dh), pastLength: past, wantLastArgmax: true }))));
        row('tfjs composition + argMax(pattern)', await time(() => tf.tidy(() => { const [z, p] = tfjsAttention(q, k, v, past); return [z, tf.argMax(p, -1)]; })));
      });
    }
    tf.dispose([q, k, v, zr, pr]);
  }
}

// ------------------------------------------------------------------ gated MLP
if (parts.has('gated')) {
  const [name, N, Kd, M] = quick ? ['tiny', 64, 64, 128] : ['Llama-7B SwiGLU in, T=1024 (1024x4096x11008)', 1024, 4096, 11008];
  const x = randn([N, Kd]);
  const wg = randn([Kd, M], 0.02, 3);
  const wu = randn([Kd, M], 0.02, 4);
  const flops = 4 * N * Kd * M;
  const ref = () => tf.tidy(() => tf.mul(tf.mul(tf.matMul(x, wg), tf.sigmoid(tf.matMul(x, wg))), tf.matMul(x, wu)));
  const row = (impl, ms, err) => record({ part: 'gated', case: name, impl, ms, tflops: flops / ms / 1e9, err });
  await attempt('gated tfjs', async () => row('tfjs matMul x2 + silu + mul', await time(ref)));
  await attempt('gated f32', async () => {
    const y = K.gatedMatmul(x, wg, wu, { activation: 'silu', path: 'tiled' });
    const r = ref();
    const err = await maxRelDiff(y, r);
    tf.dispose([y, r]);
    row('tflens gated tiled f32', await time(() => K.gatedMatmul(x, wg, wu, { activation: 'silu', path: 'tiled' })), err);
  });
  for (const fmt of ['bf16']) {
    const pg = K.packedHalfFromFloat32(await wg.data(), fmt, [Kd, M]);
    const pu = K.packedHalfFromFloat32(await wu.data(), fmt, [Kd, M]);
    await attempt(`gated tiled ${fmt}`, async () => row(`tflens gated tiled ${fmt} W`, await time(() => K.gatedMatmul(x, pg, pu, { activation: 'silu', path: 'tiled' }))));
    if (sgm) await attempt(`gated sgm ${fmt}`, async () => row(`tflens gated subgroup-matrix ${fmt} W`, await time(() => K.gatedMatmul(x, pg, pu, { activation: 'silu', path: 'subgroup-matrix' }))));
    tf.dispose([pg.words, pu.words]);
  }
  tf.dispose([x, wg, wu]);
}

// ------------------------------------------------------------------ norms
if (parts.has('norm')) {
  const [N, D] = quick ? [64, 256] : [4096, 4096];
  const x = randn([N, D]);
  const w = randn([D], 1, 8);
  const b = randn([D], 1, 9);
  const bytes = 2 * N * D * 4;
  for (const kind of ['LN', 'RMS']) {
    const ref = () =>
      tf.tidy(() => {
        const c = kind === 'LN' ? tf.sub(x, tf.mean(x, -1, true)) : x;
        const s = tf.sqrt(tf.add(tf.mean(tf.square(c), -1, true), 1e-5));
        const y = tf.mul(tf.div(c, s), w);
        return [kind === 'LN' ? tf.add(y, b) : y, s];
      });
    const row = (impl, ms, err) => record({ part: 'norm', case: `${kind} ${N}x${D}`, impl, ms, gbs: bytes / ms / 1e6, err });
    await attempt(`${kind} tfjs`, async () => row('tfjs composition', await time(ref)));
    await attempt(`${kind} fused`, async () => {
      const o = { kind, eps: 1e-5, weight: w, bias: kind === 'LN' ? b : null, wantScale: true };
      const r = K.norm(x, o);
      const [ry] = ref();
      const err = await maxRelDiff(r.y, ry);
      tf.dispose([r.y, r.scale, ry]);
      row('tflens fused (y + scale)', await time(() => Object.values(K.norm(x, o))), err);
    });
  }
  tf.dispose([x, w, b]);
}

// ------------------------------------------------------------------ rotary
if (parts.has('rotary')) {
  const [B, T, H, dh] = quick ? [1, 64, 4, 64] : [1, 4096, 32, 128];
  const x = randn([B, T, H, dh]);
  const pos = tf.tensor2d(Array.from({ length: B * T }, (_, i) => i % T), [B, T], 'int32');
  const inv = K.ropeInvFreq(dh, 10000);
  const bytes = 2 * B * T * H * dh * 4;
  const ref = () =>
    tf.tidy(() => {
      const f = tf.mul(tf.cast(pos, 'float32').reshape([B, T, 1]), tf.tensor1d(inv).reshape([1, 1, dh / 2]));
      const e = tf.concat([f, f], -1).reshape([B, T, 1, dh]);
      const x1 = tf.slice(x, [0, 0, 0, 0], [B, T, H, dh / 2]);
      const x2 = tf.slice(x, [0, 0, 0, dh / 2], [B, T, H, dh / 2]);
      return tf.add(tf.mul(x, tf.cos(e)), tf.mul(tf.concat([tf.neg(x2), x1], -1), tf.sin(e)));
    });
  const row = (impl, ms, err) => record({ part: 'rotary', case: `half ${B}x${T}x${H}x${dh}`, impl, ms, gbs: bytes / ms / 1e6, err });
  await attempt('rotary tfjs', async () => row('tfjs composition', await time(ref)));
  await attempt('rotary fused', async () => {
    const y = K.rotary(x, pos, { style: 'half', invFreq: inv });
    const r = ref();
    const err = await maxRelDiff(y, r);
    tf.dispose([y, r]);
    row('tflens fused', await time(() => K.rotary(x, pos, { style: 'half', invFreq: inv })), err);
  });
  tf.dispose([x, pos]);
}

const errors = await K.takeKernelErrors();
if (errors.length) log(`WebGPU validation errors:\n${errors.join('\n')}`);
const outFile = opt('out', null);
if (outFile) {
  writeFileSync(outFile, JSON.stringify({ date: new Date().toISOString(), info, quick, rows, errors }, null, 1));
  log(`wrote ${outFile}`);
}
process.exit(0);
