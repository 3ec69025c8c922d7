// WebGPU under Node: what the bench needs to run tflens there, and the async drivers it uses.
//
// tfjs-backend-webgpu reads GPU tensors synchronously (dataSync / arraySync) through an
// OffscreenCanvas, which Node does not have; there is no synchronous buffer read in dawn.node.
// tflens's forward reads a few small int32 tensors synchronously (token ids, the attention mask,
// the per-row token counts and the largest position id), and patchSweep, runMetric, generate and
// scoreRetrievalSample read their results with dataSync. So on WebGPU in Node:
//  1. `cpuForwardIntKernels()` re-registers a few webgpu kernels so that, for int32/bool inputs whose
//     values are still on the CPU, they run on the CPU backend and keep their outputs on the CPU (the
//     webgpu backend already does this for some kernels below 128 elements). The forward's metadata
//     then never lives on the GPU and its synchronous reads work; the model's float math is untouched.
//  2. `patchSweepAsync` / `patchLoopAsync` / `retrievalSampleAsync` drive the library's forward
//     (model.forward / model.run with hooks, startAtLayer, residual, logitPositions, the KV cache)
//     the way patchSweep, patchSweepLoop and scoreRetrievalSample do, reading results with await data().
// Both are bench-side stand-ins for library changes; results that use them say so. Since then the
// library's forward reads nothing back and it has patchSweepAsync / generateAsync: bench/run.mjs uses
// the library's patchSweepAsync where it exists, applies (1) only when a probe forward fails, and keeps
// (2) for the one-forward-per-index loop and the retrieval sample (no async library versions yet).

const INT_KERNELS = ['Fill', 'Sum', 'Cumsum', 'Max', 'Min', 'Add', 'Sub', 'Maximum', 'Minimum', 'Cast', 'Tile', 'ConcatV2', 'Concat', 'Slice', 'Range', 'Multiply', 'Equal', 'Greater', 'Less', 'LogicalAnd'];

export function cpuForwardIntKernels(tf) {
  const engine = tf.engine();
  const cpu = engine.findBackend('cpu');
  if (!cpu) throw new Error('cpu backend not available for the int32 forwarding');
  const done = [];
  for (const name of INT_KERNELS) {
    const gpuCfg = tf.getKernel(name, 'webgpu');
    const cpuCfg = tf.getKernel(name, 'cpu');
    if (!gpuCfg || !cpuCfg || gpuCfg.__benchCpuForward) continue;
    const orig = gpuCfg.kernelFunc;
    const kernelFunc = (args) => {
      const be = args.backend;
      const ins = Object.entries(args.inputs ?? {}).filter(([, t]) => t != null);
      const intish = (dt) => dt === 'int32' || dt === 'bool';
      let ok;
      if (ins.length === 0) ok = name === 'Fill' && intish(args.attrs?.dtype) || (name === 'Range' && intish(args.attrs?.dtype));
      else ok = ins.every(([, t]) => intish(t.dtype) && be.tensorMap.get(t.dataId)?.values != null && tf.util.sizeFromShape(t.shape) <= 1 << 20);
      if (!ok) return orig(args);
      const cpuIns = {};
      const made = [];
      for (const [k, t] of ins) {
        const vals = be.tensorMap.get(t.dataId).values;
        const dataId = cpu.write(vals, t.shape, t.dtype);
        made.push(dataId);
        cpuIns[k] = { dataId, shape: t.shape, dtype: t.dtype };
      }
      try {
        const out = cpuCfg.kernelFunc({ inputs: cpuIns, backend: cpu, attrs: args.attrs });
        const conv = (o) => {
          const vals = cpu.readSync(o.dataId);
          const info = be.makeTensorInfo(o.shape, o.dtype, vals);
          cpu.disposeData(o.dataId, true);
          return info;
        };
        return Array.isArray(out) ? out.map(conv) : conv(out);
      } finally {
        for (const d of made) cpu.disposeData(d, true);
      }
    };
    tf.unregisterKernel(name, 'webgpu');
    tf.registerKernel({ ...gpuCfg, kernelFunc, __benchCpuForward: true });
    done.push(name);
  }
  return done;
}

// ------------------------------------------------------------------ patching (mirrors src/circuits/patching.ts)

function patchMask(tf, idx, N, T, H) {
  const P = idx.length;
  const byPos = idx[0].pos !== undefined;
  const Tm = byPos ? T : 1;
  const m = new Float32Array(P * N * Tm * H);
  idx.forEach((ix, i) => {
    for (let n = 0; n < N; n++) m[((i * N + n) * Tm + (byPos ? ix.pos : 0)) * H + ix.head] = 1;
  });
  return tf.tensor4d(m, [P * N, Tm, H, 1]);
}

const tileRows = (tf, x, k) => tf.tile(x, [k, ...new Array(x.rank - 1).fill(1)]);
const repeatRows = (rows, k) => Array.from({ length: k }, () => rows).flat();

async function metricOf(tf, model, p, which) {
  const t = tf.tidy(() => {
    const lg = model.forward(which === 'clean' ? p.clean : p.corrupted, { attentionMask: p.mask, logitPositions: p.readPositions });
    return p.metric(tf.reshape(lg, [1, lg.shape[0], lg.shape[2]]));
  });
  const v = (await t.data())[0];
  t.dispose();
  return v;
}

function indices(kind, T, H) {
  const out = [];
  if (kind === 'head') for (let h = 0; h < H; h++) out.push({ head: h });
  else for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) out.push({ pos: t, head: h });
  return out;
}

/** Batched hook_z patching (the algorithm of patchSweep: per layer, all indices in one forward from that layer's corrupted residual). */
export async function patchSweepAsync(tf, model, p, kind, { maxBatch = 256 } = {}) {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const L = model.cfg.n_layers;
  const H = model.cfg.n_heads;
  const idx = indices(kind, T, H);
  const clean = await metricOf(tf, model, p, 'clean');
  const corrupted = await metricOf(tf, model, p, 'corrupted');
  const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`);
  const residNames = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`);
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: names });
  const corrRun = model.runWithCache(p.corrupted, { attentionMask: p.mask, namesFilter: residNames });
  cleanRun.logits.dispose();
  corrRun.logits.dispose();
  const perChunk = Math.max(1, Math.floor(maxBatch / N));
  const values = Array.from({ length: L }, () => new Array(idx.length).fill(0));
  let forwards = 4;
  try {
    for (let l = 0; l < L; l++) {
      for (let c0 = 0; c0 < idx.length; c0 += perChunk) {
        const chunk = idx.slice(c0, c0 + perChunk);
        const P = chunk.length;
        const out = tf.tidy(() => {
          const mask = patchMask(tf, chunk, N, T, H);
          const cleanAct = tileRows(tf, cleanRun.cache.get(names[l]), P);
          const residual = tileRows(tf, corrRun.cache.get(residNames[l]), P);
          const logits = model.forward(repeatRows(p.corrupted, P), {
            attentionMask: repeatRows(p.mask, P),
            startAtLayer: l,
            residual,
            fwdHooks: [[names[l], (a) => tf.add(a, tf.mul(mask, tf.sub(cleanAct, a)))]],
            logitPositions: Array.from({ length: P * N }, (_, r) => p.readPositions[r % N]),
          });
          return p.metric(tf.reshape(logits, [P, N, logits.shape[2]]));
        });
        const v = await out.data();
        out.dispose();
        chunk.forEach((_, i) => (values[l][c0 + i] = v[i]));
        forwards++;
      }
    }
  } finally {
    cleanRun.cache.dispose();
    corrRun.cache.dispose();
  }
  return { values: kind === 'head' ? values : values.map((row) => Array.from({ length: T }, (_, t) => row.slice(t * H, t * H + H))), clean, corrupted, forwards };
}

/** The TransformerLens-style loop on tflens: one full forward per (layer, index), the metric read after each. */
export async function patchLoopAsync(tf, model, p, kind) {
  const N = p.clean.length;
  const T = p.clean[0].length;
  const L = model.cfg.n_layers;
  const H = model.cfg.n_heads;
  const idx = indices(kind, T, H);
  const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_z`);
  const cleanRun = model.runWithCache(p.clean, { attentionMask: p.mask, namesFilter: names });
  cleanRun.logits.dispose();
  const values = Array.from({ length: L }, () => new Array(idx.length).fill(0));
  try {
    for (let l = 0; l < L; l++) {
      for (let i = 0; i < idx.length; i++) {
        const out = tf.tidy(() => {
          const mask = patchMask(tf, [idx[i]], N, T, H);
          const cleanAct = cleanRun.cache.get(names[l]);
          const logits = model.forward(p.corrupted, { attentionMask: p.mask, fwdHooks: [[names[l], (a) => tf.add(a, tf.mul(mask, tf.sub(cleanAct, a)))]] });
          const read = tf.stack(p.readPositions.map((pos, n) => tf.reshape(tf.slice(logits, [n, pos, 0], [1, 1, -1]), [-1])));
          return p.metric(tf.expandDims(read, 0));
        });
        values[l][i] = (await out.data())[0];
        out.dispose();
      }
    }
  } finally {
    cleanRun.cache.dispose();
  }
  return { values: kind === 'head' ? values : values.map((row) => Array.from({ length: T }, (_, t) => row.slice(t * H, t * H + H))), forwards: L * idx.length + 1 };
}

// ------------------------------------------------------------------ retrieval (mirrors scoreRetrievalSample + generate)

/**
 * Greedy decoding with the KV cache from `promptIds`, a hook on every layer's hook_pattern keeping the
 * argmax key of the last query row; each generated token is fed to scorer.step with the patterns of
 * the forward that produced it. Returns the generated tokens.
 */
export async function retrievalSampleAsync(tf, lib, model, scorer, promptIds, span, maxNewTokens) {
  const L = model.cfg.n_layers;
  let buf = new Array(L).fill(null);
  const reader = [
    (name) => /^blocks\.\d+\.attn\.hook_pattern$/.test(name),
    (act, ctx) => {
      if (ctx.layer === null) return;
      const [, H, Tq, Tk] = act.shape;
      buf[ctx.layer] = tf.keep(tf.reshape(tf.argMax(tf.slice(act, [0, 0, Tq - 1, 0], [1, H, 1, Tk]), -1), [H]));
    },
  ];
  scorer.beginSample(promptIds, span);
  const readBuf = async () => {
    const rows = await Promise.all(buf.map((t) => t.data()));
    buf.forEach((t) => t.dispose());
    buf = new Array(L).fill(null);
    return rows.map((r) => Array.from(r));
  };
  const nextToken = async (logits) => {
    const t = tf.tidy(() => tf.argMax(tf.reshape(tf.slice(logits, [0, logits.shape[1] - 1, 0], [1, 1, -1]), [-1])));
    const v = (await t.data())[0];
    t.dispose();
    return v;
  };
  const tokens = [];
  // the prefill unembeds only its last position: all 4096 x 151936 logits (2.49 GB) exceed WebGPU's
  // 2 GiB storage-binding limit (seen on the H200; the library's generate unembeds every position)
  let r = model.run([promptIds], { useCache: true, fwdHooks: [reader], logitPositions: [promptIds.length - 1] }, null);
  let kv = r.kv;
  try {
    for (let step = 0; step < maxNewTokens; step++) {
      const tok = await nextToken(r.logits);
      r.logits.dispose();
      scorer.step(await readBuf(), tok);
      tokens.push(tok);
      if (step === maxNewTokens - 1) break;
      r = model.run([[tok]], { past: kv, fwdHooks: [reader] }, null);
      lib.disposeKV(kv);
      kv = r.kv;
    }
  } finally {
    buf.forEach((t) => t?.dispose());
    if (kv) lib.disposeKV(kv);
  }
  return tokens;
}
