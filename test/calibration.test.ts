import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  actColumnMeans,
  actHiddenSinks,
  actHook,
  calibrateACT,
  calibrateACTBatched,
  defaultCalibLayers,
  evaluateACT,
  imageCentricHeads,
  imageCentricRows,
  redistributeVAR,
  redistributeVARBatched,
  selectACTHeads,
  sinkDimensions,
  sinkTokenMask,
  varHook,
} from '../src/analyses/calibration.js';
import { mulberry32 } from '../src/util/random.js';
import { readFileSync } from 'node:fs';
import { generate, randomModel, type HookedTransformer } from '../src/model/index.js';
import { ConfigError, ShapeError, ValueError } from '../src/errors.js';

function close(a: number[][], b: number[][], tol = 1e-6, msg = '') {
  assert.equal(a.length, b.length, msg);
  for (let i = 0; i < a.length; i++) {
    assert.equal(a[i].length, b[i].length, msg);
    for (let j = 0; j < a[i].length; j++) {
      assert.ok(Math.abs(a[i][j] - b[i][j]) <= tol, `${msg} [${i}][${j}]: ${a[i][j]} vs ${b[i][j]}`);
    }
  }
}

/** Random causal softmax matrix (seeded), optionally with a strong column (a sink). */
function randomCausal(n: number, seed: number, sinkCols: number[] = [], scale = 2): number[][] {
  const r = mulberry32(seed);
  const A: number[][] = [];
  for (let i = 0; i < n; i++) {
    const s: number[] = [];
    for (let j = 0; j <= i; j++) s.push(scale * (r() * 2 - 1) + (sinkCols.includes(j) ? 3 : 0));
    const mx = Math.max(...s);
    const e = s.map((x) => Math.exp(x - mx));
    const z = e.reduce((a, b) => a + b, 0);
    A.push([...e.map((x) => x / z), ...new Array(n - 1 - i).fill(0)]);
  }
  return A;
}

/** Embed an n x n matrix at the bottom-right of an (n+pad) x (n+pad) left-padded one. */
function leftPad(A: number[][], pad: number): number[][] {
  const n = A.length + pad;
  const out: number[][] = [];
  for (let i = 0; i < n; i++) {
    if (i < pad) {
      // padded query rows: arbitrary but valid content (attend to the first pad)
      out.push(Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 0)));
    } else out.push([...new Array(pad).fill(0), ...A[i - pad]]);
  }
  return out;
}

const ctxOf = (name: string, layer: number | null, decoding = false, pastLength = 0) => ({ name, layer, decoding, pastLength });

const near = (a: number, b: number, tol: number, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);

const rowSums = (A: number[][]) => A.map((r) => r.reduce((a, b) => a + b, 0));

describe('ACT calibration', () => {
  // Worked example (threshold 0.2, beta 0.4):
  //   A = [1 0 0 0; .5 .5 0 0; .4 .4 .2 0; .3 .3 .1 .3]
  //   m = [(1+.5+.4+.3)/4, (.5+.4+.3)/3, (.2+.1)/2, .3/1] = [.55, .4, .15, .3]
  //   S = {0, 1, 3}, S' = {1, 3}
  //   row 1: sink .5, non .5, r = .6*.5 = .3 -> [.5 + .3*.5/.5, .4*.5] = [.8, .2]
  //   row 2: sink .4 (col 3 not visible), non .6, r = .24 -> [.4+.24*.4/.6, .16, .2+.24*.2/.6] = [.56, .16, .28]
  //   row 3: sink .6, non .4, r = .36 -> [.3+.36*.3/.4, .12, .1+.36*.1/.4, .12] = [.57, .12, .19, .12]
  const A4 = [
    [1, 0, 0, 0],
    [0.5, 0.5, 0, 0],
    [0.4, 0.4, 0.2, 0],
    [0.3, 0.3, 0.1, 0.3],
  ];
  const expected4 = [
    [1, 0, 0, 0],
    [0.8, 0.2, 0, 0],
    [0.56, 0.16, 0.28, 0],
    [0.57, 0.12, 0.19, 0.12],
  ];

  it('column means and hidden sinks of the worked example', () => {
    close([actColumnMeans(A4)], [[0.55, 0.4, 0.15, 0.3]], 1e-12);
    assert.deepEqual(actHiddenSinks(A4, 0.2), [1, 3]);
    assert.deepEqual(actHiddenSinks(A4, 0.1), [1, 2, 3]);
  });

  it('matches the hand-computed 4x4 example; rows sum to 1; sinks scaled by beta', () => {
    const out = calibrateACT(A4, { threshold: 0.2, beta: 0.4 });
    close(out, expected4, 1e-12);
    rowSums(out).forEach((s) => assert.ok(Math.abs(s - 1) < 1e-12));
    // sinks scaled by beta
    for (let i = 1; i < 4; i++) assert.ok(Math.abs(out[i][1] - 0.4 * A4[i][1]) < 1e-12);
    // input untouched
    assert.equal(A4[1][1], 0.5);
  });

  it('moves mass to non-sinks in proportion to their original attention', () => {
    const A = randomCausal(7, 11, [0, 3]);
    const sp = new Set(actHiddenSinks(A, 0.1));
    assert.ok(sp.size > 0, 'example must have a hidden sink');
    const out = calibrateACT(A, { threshold: 0.1, beta: 0.3 });
    for (let i = 1; i < 7; i++) {
      const non = [...Array(i + 1).keys()].filter((j) => !sp.has(j));
      if (!non.length) continue;
      const ratios = non.map((j) => out[i][j] / A[i][j]);
      ratios.forEach((r) => assert.ok(Math.abs(r - ratios[0]) < 1e-9, `row ${i} ratios ${ratios}`));
      assert.ok(Math.abs(rowSums([out[i]])[0] - 1) < 1e-9);
    }
  });

  it('a row whose mass is all on hidden sinks is left unchanged, without NaN', () => {
    // m = [.5, .75, 0] -> S = {0, 1}, S' = {1}; row 1 has no non-sink mass.
    const A = [
      [1, 0, 0],
      [0, 1, 0],
      [0.5, 0.5, 0],
    ];
    const out = calibrateACT(A, { threshold: 0.1, beta: 0.4 });
    close(out, [
      [1, 0, 0],
      [0, 1, 0],
      [0.8, 0.2, 0],
    ]);
    out.flat().forEach((v) => assert.ok(Number.isFinite(v)));
  });

  it('one decoding row: column means are the row itself (authors code)', () => {
    // row [.5 .3 .2], threshold .25 -> S = {0,1}, S' = {1}; r = .6*.3 = .18, non = .7
    const out = calibrateACT([[0.5, 0.3, 0.2]], { threshold: 0.25, beta: 0.4 });
    close(out, [[0.5 + (0.18 * 0.5) / 0.7, 0.12, 0.2 + (0.18 * 0.2) / 0.7]], 1e-12);
  });

  it('rejects bad input with typed errors', () => {
    assert.throws(() => calibrateACT([[1, 0], [NaN, 1]]), ValueError);
    assert.throws(() => calibrateACT([[1, 0], [0.5]]), ShapeError);
    assert.throws(() => calibrateACT(A4, { beta: 2 }), ConfigError);
    assert.throws(() => calibrateACT([[1], [1]]), ShapeError);
  });

  it('batched tensor version equals the per-matrix version, with left padding', () => {
    const before = tf.memory().numTensors;
    const n = 6;
    const mats = [randomCausal(n, 1, [0, 2]), randomCausal(n, 2, [0, 4]), randomCausal(n - 2, 3, [0, 1]), randomCausal(n - 2, 4, [0, 2])];
    // batch 0: no padding (heads 0,1); batch 1: 2 pads (heads 0,1)
    const data = [
      [mats[0], mats[1]],
      [leftPad(mats[2], 2), leftPad(mats[3], 2)],
    ];
    const t = tf.tensor4d(data);
    const mask = [
      [1, 1, 1, 1, 1, 1],
      [0, 0, 1, 1, 1, 1],
    ];
    for (const inferred of [false, true]) {
      const out = calibrateACTBatched(t, { threshold: 0.1, beta: 0.4, attentionMask: inferred ? undefined : mask });
      const arr = out.arraySync() as number[][][][];
      out.dispose();
      close(arr[0][0], calibrateACT(mats[0]), 1e-5, `b0h0 inferred=${inferred}`);
      close(arr[0][1], calibrateACT(mats[1]), 1e-5, 'b0h1');
      const inner = (M: number[][]) => M.slice(2).map((r) => r.slice(2));
      close(inner(arr[1][0]), calibrateACT(mats[2]), 1e-5, 'b1h0');
      close(inner(arr[1][1]), calibrateACT(mats[3]), 1e-5, 'b1h1');
      // padded rows untouched, padded columns still zero in real rows
      close(arr[1][0].slice(0, 2), data[1][0].slice(0, 2), 1e-7);
      for (let i = 2; i < n; i++) assert.equal(arr[1][1][i][0], 0);
    }
    t.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('actHook calibrates only the chosen heads, in prefill and decoding, without leaks', () => {
    const start = tf.memory().numTensors;
    const n = 5;
    const m0 = randomCausal(n, 21, [0, 2]);
    const m1 = randomCausal(n, 22, [0, 3]);
    const pat = tf.tensor4d([[m0, m1]]);
    const hooks = actHook({ heads: [[3, 1]], threshold: 0.1, beta: 0.4 });
    assert.equal(hooks.length, 1);
    assert.equal(hooks[0][0], 'blocks.3.attn.hook_pattern');
    const before = tf.memory().numTensors;
    const out = hooks[0][1](pat, ctxOf('blocks.3.attn.hook_pattern', 3)) as tf.Tensor;
    assert.equal(tf.memory().numTensors, before + 1);
    const arr = out.arraySync() as number[][][][];
    out.dispose();
    close(arr[0][0], m0, 1e-7, 'head 0 untouched');
    close(arr[0][1], calibrateACT(m1), 1e-5, 'head 1 calibrated');
    // decoding row (last row of m1 as a [1,2,1,k] pattern), 'row' mode = per-row column means
    const dec = tf.tensor4d([[[m0[n - 1]], [m1[n - 1]]]]);
    const o2 = hooks[0][1](dec, ctxOf('blocks.3.attn.hook_pattern', 3)) as tf.Tensor;
    const a2 = o2.arraySync() as number[][][][];
    o2.dispose();
    close(a2[0][1], calibrateACT([m1[n - 1]]), 1e-5, 'decode row');
    close(a2[0][0], [m0[n - 1]], 1e-7);
    // 'prefill' mode: decoding reuses S' from the prefill
    const hp = actHook({ heads: [[3, 1]], decodeSinks: 'prefill' });
    hp[0][1](pat, ctxOf('x', 3))!.dispose();
    const o3 = hp[0][1](dec, ctxOf('x', 3)) as tf.Tensor;
    const a3 = o3.arraySync() as number[][][][];
    o3.dispose();
    const sp = new Set(actHiddenSinks(m1));
    const row = m1[n - 1];
    const sink = row.reduce((a, v, j) => a + (sp.has(j) ? v : 0), 0);
    const non = 1 - sink;
    const exp = row.map((v, j) => (sp.has(j) ? 0.4 * v : v + (0.6 * sink * v) / non));
    close(a3[0][1], [exp], 1e-5, 'decode with prefill sinks');
    dec.dispose();
    pat.dispose();
    assert.equal(tf.memory().numTensors, start);
  });

  it('selectACTHeads greedy and independent rules on a synthetic accuracy', async () => {
    const model = { cfg: { n_layers: 6, n_heads: 2 } };
    assert.deepEqual(defaultCalibLayers(6), [2, 3, 4]);
    // accuracy = 0.5 + sum of gains of calibrated heads, read back from the hook names/heads
    const gain: Record<string, number> = { '2.0': 0.1, '2.1': -0.05, '3.0': 0.02, '3.1': 0, '4.0': -0.01, '4.1': 0.03 };
    const seen: string[][] = [];
    const evaluate = (hooks: ReturnType<typeof actHook>) => {
      // recover the heads from a probe: apply each hook to a pattern where only calibrated heads change
      const names: string[] = [];
      for (const [name, fn] of hooks) {
        const layer = Number(String(name).split('.')[1]);
        const A = [
          [1, 0, 0],
          [0.5, 0.5, 0],
          [0.2, 0.6, 0.2],
        ];
        const t = tf.tensor4d([[A, A]]);
        const o = fn(t, ctxOf(String(name), layer)) as tf.Tensor;
        const arr = o.arraySync() as number[][][][];
        t.dispose();
        o.dispose();
        arr[0].forEach((M, h) => {
          if (Math.abs(M[2][1] - 0.6) > 1e-6) names.push(`${layer}.${h}`);
        });
      }
      seen.push(names);
      return 0.5 + names.reduce((a, n) => a + gain[n], 0);
    };
    const g = await selectACTHeads(model, null, evaluate);
    assert.deepEqual(g.kept, [[2, 0], [3, 0], [4, 1]]);
    assert.ok(Math.abs(g.final - 0.65) < 1e-12);
    assert.equal(g.baseline, 0.5);
    assert.equal(g.trace.length, 6);
    const ind = await selectACTHeads(model, null, evaluate, { mode: 'independent', minGain: 0.025 });
    assert.deepEqual(ind.kept, [[2, 0], [4, 1]]);
    assert.ok(Math.abs(ind.final - 0.63) < 1e-12);
    const ev = await evaluateACT([[2, 0]], null, evaluate);
    assert.ok(Math.abs(ev.delta - 0.1) < 1e-12);
  });
});

describe('VAR redistribution', () => {
  // Worked example, p = 0.6, sinks S = {0, 2}, group I = [1, 4) = {1, 2, 3}:
  //   row [.4 .1 .3 .2 0]: Omega = .4*(.4+.3) = .28; I\S = {1,3}, den = .3
  //   -> [.24, .1 + .28*.1/.3, .18, .2 + .28*.2/.3, 0] = [.24, .19333.., .18, .38666.., 0]
  const row = [0.4, 0.1, 0.3, 0.2, 0];
  const exp = [0.24, 0.1 + (0.28 * 0.1) / 0.3, 0.18, 0.2 + (0.28 * 0.2) / 0.3, 0];

  it('hand-computed row; sums preserved; rows without non-sink group mass unchanged', () => {
    const A = [
      [1, 0, 0, 0, 0],
      [0.5, 0, 0.5, 0, 0], // no mass on I\S = {1,3}: unchanged
      row,
    ];
    const out = redistributeVAR(A, { sinks: [0, 2], group: { start: 1, end: 4 }, p: 0.6 });
    close(out, [A[0], A[1], exp], 1e-12);
    rowSums(out).forEach((s) => assert.ok(Math.abs(s - 1) < 1e-12));
    out.flat().forEach((v) => assert.ok(Number.isFinite(v)));
    // explicit group list gives the same
    close(redistributeVAR(A, { sinks: [0, 2], group: [1, 2, 3] }), out, 1e-12);
    // repeated positions count once
    close(redistributeVAR(A, { sinks: [0, 2, 2], group: [3, 1, 2, 3] }), out, 1e-12);
  });

  it('image-centric test (summ, rho, prefill queries after the group)', () => {
    const A = [
      [1, 0, 0, 0],
      [0.5, 0.5, 0, 0],
      [0.7, 0.1, 0.2, 0], // group {1,2}: sum .3 >= .2; sinks in group {1}: .1/.3 = .33 <= .5 -> but query 2 is inside the group (prefill)
      [0.5, 0.2, 0.1, 0.2], // group sum .3; sink share .2/.3 = .67 > .5 -> not centric
    ];
    const rows = imageCentricRows(A, { group: [1, 2], sinks: [1], summ: 0.2, rho: 0.5, phase: 'prefill' });
    assert.deepEqual(rows, [false, false, false, false]);
    const rowsD = imageCentricRows(A, { group: [1, 2], sinks: [1], phase: 'decode' });
    // decode: row1 group .5, sink share .5/.5 ~ 1 > .5 -> false; row2 true; row3 false
    assert.deepEqual(rowsD, [false, false, true, false]);
    const padded = [...A.map((r) => [...r, 0]), [0.4, 0.1, 0.4, 0.05, 0.05]];
    const r5 = imageCentricRows(padded, { group: [1, 2], sinks: [1] });
    assert.deepEqual(r5, [false, false, false, false, true]);
  });

  it('batched version equals the per-matrix version on centric rows; no leaks', () => {
    const before = tf.memory().numTensors;
    const mats = [randomCausal(6, 31, [0, 2]), randomCausal(6, 32, [0, 3])];
    const t = tf.tensor4d([mats]);
    const sinks = [0, 3];
    const group = [2, 3, 4];
    const gm = [0, 0, 1, 1, 1, 0];
    const sm = [1, 0, 0, 1, 0, 0];
    const out = redistributeVARBatched(t, { sinkMask: sm, groupMask: gm, p: 0.6, summ: 0.2, rho: 0.5, rowMask: [0, 0, 0, 0, 0, 1] });
    const arr = out.arraySync() as number[][][][];
    out.dispose();
    mats.forEach((M, h) => {
      const centric = imageCentricRows(M, { group, sinks, summ: 0.2, rho: 0.5, phase: 'prefill' });
      const rows = centric.map((c, i) => (c ? i : -1)).filter((i) => i >= 0);
      close(arr[0][h], redistributeVAR(M, { sinks, group, p: 0.6, rows }), 1e-5, `head ${h}`);
    });
    const ic = imageCentricHeads([t], { group, sinks, phase: 'prefill' });
    assert.equal(ic.flags[0][0].length, 2);
    assert.equal(ic.fraction[0].length, 2);
    // fraction per head = centric qualifying rows / qualifying rows (only row 5 qualifies here)
    mats.forEach((M, h) => {
      const c = imageCentricRows(M, { group, sinks, phase: 'prefill' }).filter(Boolean).length;
      assert.equal(ic.fraction[0][h], c / 1);
      assert.equal(ic.scores.scores[0][h], c);
    });
    t.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('sink tokens and sink dimensions from residuals', () => {
    const before = tf.memory().numTensors;
    // d = 4; token 1 has a massive dim 2: x = [1, 1, 100, 1] -> rms = sqrt((3 + 1e4)/4) = 50.0150
    // phi = 100/50.015 = 1.9994 ; with tau = 1.5 it is a sink, the others ([1,1,1,1]: phi = 1) are not
    const x = tf.tensor3d([[[1, 1, 1, 1], [1, 1, 100, 1], [1, -1, 1, -1]]]);
    const m = sinkTokenMask(x, [2], 1.5);
    assert.deepEqual(m.arraySync(), [[0, 1, 0]]);
    m.dispose();
    const sd = sinkDimensions([x], { topK: 2 });
    assert.equal(sd.dims[0], 2);
    assert.ok(Math.abs(sd.scores[0] - 100 / Math.sqrt((3 + 1e4) / 4 + 1e-6)) < 1e-3);
    x.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('varHook: resid_pre marks sinks, pattern redistributes image-centric rows (prefill and decode)', () => {
    const before = tf.memory().numTensors;
    const hooks = varHook({ layers: [2], group: { start: 1, end: 3 }, sinkDims: [0], tau: 1.5, p: 0.6, summ: 0.2, rho: 0.5 });
    assert.deepEqual(hooks.map((h) => h[0]), ['blocks.2.hook_resid_pre', 'blocks.2.attn.hook_pattern']);
    // 5 tokens, d = 4; token 0 (BOS) and token 2 (in the group) are sinks: phi = 50/sqrt((2500+3)/4) = 1.999 > 1.5
    const resid = tf.tensor3d([[[50, 1, 1, 1], [1, 1, 1, 1], [50, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]]);
    assert.equal(hooks[0][1](resid, ctxOf('blocks.2.hook_resid_pre', 2)), undefined);
    const M = randomCausal(5, 41, [0]);
    const pat = tf.tensor4d([[M]]);
    const out = hooks[1][1](pat, ctxOf('blocks.2.attn.hook_pattern', 2)) as tf.Tensor;
    const arr = out.arraySync() as number[][][][];
    out.dispose();
    const centric = imageCentricRows(M, { group: [1, 2], sinks: [0, 2], phase: 'prefill' });
    const rows = centric.map((c, i) => (c ? i : -1)).filter((i) => i >= 0);
    close(arr[0][0], redistributeVAR(M, { sinks: [0, 2], group: [1, 2], rows }), 1e-5);
    // decode step: a new token (not a sink), pattern [1,1,1,6]
    const r2 = tf.tensor3d([[[1, 1, 1, 1]]]);
    hooks[0][1](r2, ctxOf('blocks.2.hook_resid_pre', 2));
    const drow = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1];
    const dp = tf.tensor4d([[[drow]]]);
    const o2 = hooks[1][1](dp, ctxOf('blocks.2.attn.hook_pattern', 2)) as tf.Tensor;
    // group {1,2} sum .4 >= .2; sink share .2/.4 = .5 <= .5 -> centric;
    // Omega = .4*(.3+.2) = .2 ; I\S = {1}: .2 + .2 = .4
    close((o2.arraySync() as number[][][][])[0][0], [[0.18, 0.4, 0.12, 0.1, 0.1, 0.1]], 1e-5);
    o2.dispose();
    [resid, pat, r2, dp].forEach((t) => t.dispose());
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('ACT and VAR hooks on a model (random-init LLaMA, 4 layers, GQA)', function () {
  this.timeout(120000);
  let model: HookedTransformer;
  const layer = 2;
  const name = `blocks.${layer}.attn.hook_pattern` as const;
  // batch of 2, the first left-padded by 2
  const tokens = [
    [0, 0, 5, 6, 7, 8, 9, 10],
    [3, 11, 12, 13, 14, 15, 16, 17],
  ];
  const mask = [
    [0, 0, 1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 1, 1, 1, 1],
  ];
  const inner = (M: number[][], pad: number) => M.slice(pad).map((r) => r.slice(pad));

  before(() => {
    const cfg = JSON.parse(readFileSync('fixtures/reference/llama/config.json', 'utf8'));
    model = randomModel({ ...cfg, num_hidden_layers: 4 }, { seed: 5, std: 0.3 });
  });
  after(() => {
    Object.values(model.params).forEach((t) => t.dispose());
  });

  it('actHook composes with another hook in runWithHooks and equals ACT on the cached pattern', () => {
    const start = tf.memory().numTensors;
    const { logits: base, cache } = model.runWithCache(tokens, { attentionMask: mask, namesFilter: [name] });
    const P = cache.get(name).arraySync() as number[][][][];
    cache.dispose();
    let recorded: number[][][][] = [];
    const rec = (act: tf.Tensor) => {
      recorded = act.arraySync() as number[][][][];
    };
    const logits = model.runWithHooks(tokens, { attentionMask: mask, fwdHooks: [...actHook({ heads: [[layer, 1]] }), [name, rec]] });
    // head 1 calibrated (padding removed), other heads untouched
    close(inner(recorded[0][1], 2), calibrateACT(inner(P[0][1], 2)), 1e-5, 'b0 h1');
    close(recorded[1][1], calibrateACT(P[1][1]), 1e-5, 'b1 h1');
    for (const h of [0, 2, 3]) for (const b of [0, 1]) close(recorded[b][h], P[b][h], 1e-6, `b${b} h${h}`);
    // ACT has an effect here, and the logits equal a run that substitutes the calibrated pattern
    let maxDiff = 0;
    const expected = P.map((bp, b) =>
      bp.map((M, h) => {
        if (h !== 1) return M;
        const pad = b === 0 ? 2 : 0;
        const c = calibrateACT(inner(M, pad));
        return M.map((row, i) => (i < pad ? row : [...new Array(pad).fill(0), ...c[i - pad]]));
      }),
    );
    const subst = model.runWithHooks(tokens, { attentionMask: mask, fwdHooks: [[name, () => tf.tensor4d(expected)]] });
    const a = logits.arraySync() as number[][][];
    const s2 = subst.arraySync() as number[][][];
    const b0 = base.arraySync() as number[][][];
    for (let b = 0; b < 2; b++) {
      for (let i = b === 0 ? 2 : 0; i < 8; i++) {
        for (let v = 0; v < a[b][i].length; v++) {
          assert.ok(Math.abs(a[b][i][v] - s2[b][i][v]) < 1e-4, `logits ${b},${i},${v}`);
          maxDiff = Math.max(maxDiff, Math.abs(a[b][i][v] - b0[b][i][v]));
        }
      }
    }
    assert.ok(maxDiff > 1e-4, `ACT changed nothing (max logit change ${maxDiff})`);
    tf.dispose([base, logits, subst]);
    assert.equal(tf.memory().numTensors, start);
  });

  it('actHook in generate: decoding rows are calibrated per step (row mode and prefill mode)', () => {
    // generate itself may hold tensors back (measured here without hooks); the hooks must add none
    const s0 = tf.memory().numTensors;
    generate(model, [tokens[1]], { maxNewTokens: 3 });
    const plainLeak = tf.memory().numTensors - s0;
    const start = tf.memory().numTensors;
    for (const mode of ['row', 'prefill'] as const) {
      const beforeAct: number[][][][][] = [];
      const afterAct: number[][][][][] = [];
      const hooks = [
        [name, (act: tf.Tensor) => void beforeAct.push(act.arraySync() as number[][][][])] as [typeof name, (a: tf.Tensor) => void],
        ...actHook({ heads: [[layer, 1]], decodeSinks: mode }),
        [name, (act: tf.Tensor) => void afterAct.push(act.arraySync() as number[][][][])] as [typeof name, (a: tf.Tensor) => void],
      ];
      const res = generate(model, [tokens[1]], { maxNewTokens: 3, fwdHooks: hooks });
      assert.equal(res.tokens[0].length, 3);
      assert.equal(beforeAct.length, 3); // prefill + 2 decoding steps
      assert.deepEqual([afterAct[0][0][0].length, afterAct[1][0][0].length, afterAct[2][0][0].length], [8, 1, 1]);
      close(afterAct[0][0][1], calibrateACT(beforeAct[0][0][1]), 1e-5, `${mode} prefill`);
      const sp = new Set(actHiddenSinks(beforeAct[0][0][1]));
      for (const step of [1, 2]) {
        const row = beforeAct[step][0][1][0];
        let exp: number[];
        if (mode === 'row') exp = calibrateACT([row])[0];
        else {
          const sink = row.reduce((acc, v, j) => acc + (sp.has(j) ? v : 0), 0);
          exp = row.map((v, j) => (sp.has(j) ? 0.4 * v : v + (0.6 * sink * v) / (1 - sink)));
        }
        close([afterAct[step][0][1][0]], [exp], 1e-5, `${mode} step ${step}`);
        close(afterAct[step][0][0], beforeAct[step][0][0], 1e-7, 'head 0 untouched');
      }
    }
    assert.equal(tf.memory().numTensors, start + 2 * plainLeak);
  });

  it('selectACTHeads with a model metric (mean target log-prob) is consistent with direct evaluation', async () => {
    const data = { tokens: [[3, 11, 12, 13, 14, 15, 16, 17, 11, 12, 13, 14]] };
    const evaluate = (hooks: ReturnType<typeof actHook>, d: typeof data) => {
      const logits = model.runWithHooks(d.tokens, { fwdHooks: hooks });
      const lp = tf.tidy(() => tf.logSoftmax(logits).arraySync() as number[][][]);
      logits.dispose();
      let s = 0;
      const row = d.tokens[0];
      for (let i = 0; i + 1 < row.length; i++) s += lp[0][i][row[i + 1]];
      return s / (row.length - 1);
    };
    const start = tf.memory().numTensors;
    const sel = await selectACTHeads(model, data, evaluate);
    assert.deepEqual(sel.params.layers, [2]);
    assert.equal(sel.trace.length, 4);
    near(sel.baseline, evaluate([], data), 1e-6);
    let best = sel.baseline;
    for (const st of sel.trace) {
      assert.equal(st.kept, st.accuracy > best);
      if (st.kept) best = st.accuracy;
    }
    near(sel.final, best, 1e-9);
    if (sel.kept.length) near(evaluate(actHook({ heads: sel.kept }), data), sel.final, 1e-5);
    const ev = await evaluateACT(sel.kept, data, evaluate);
    near(ev.after - ev.before, sel.final - sel.baseline, 1e-5);
    assert.equal(tf.memory().numTensors, start);
  });

  it('varHook on the model equals VAR on the cached pattern with sinks from the cached residual', () => {
    const start = tf.memory().numTensors;
    const rname = `blocks.${layer}.hook_resid_pre` as const;
    const { logits, cache } = model.runWithCache(tokens, { attentionMask: mask, namesFilter: [name, rname] });
    logits.dispose();
    const resid = cache.get(rname);
    const { dims } = sinkDimensions([resid], { topK: 1, attentionMask: mask });
    const sm = sinkTokenMask(resid, dims, 0);
    // tau between the largest and a mid phi so that some, not all, tokens are sinks
    const phi = tf.tidy(() => {
      const x = resid;
      const rms = tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6));
      return tf.abs(tf.div(tf.gather(x, [dims[0]], 2), rms)).max(-1);
    });
    const phis = (phi.arraySync() as number[][]).flat().sort((a, b) => b - a);
    const tau = (phis[0] + phis[3]) / 2;
    const sinks = sinkTokenMask(resid, dims, tau);
    const P = cache.get(name);
    const group = { start: 1, end: 4 }; // relative to the first real token
    const gAbs = [
      [0, 0, 0, 1, 1, 1, 0, 0],
      [0, 1, 1, 1, 0, 0, 0, 0],
    ];
    const rows = [
      [0, 0, 0, 0, 0, 0, 1, 1],
      [0, 0, 0, 0, 1, 1, 1, 1],
    ];
    const expT = tf.tidy(() =>
      redistributeVARBatched(P, { sinkMask: tf.mul(sinks, tf.tensor2d(mask)), groupMask: gAbs, rowMask: rows, p: 0.6, summ: 0.2, rho: 0.5 }),
    );
    const expected = expT.arraySync() as number[][][][];
    let recorded: number[][][][] = [];
    const out = model.runWithHooks(tokens, {
      attentionMask: mask,
      fwdHooks: [...varHook({ nLayers: 4, group, sinkDims: dims, tau }), [name, (act: tf.Tensor) => void (recorded = act.arraySync() as number[][][][])]],
    });
    for (let b = 0; b < 2; b++) for (let h = 0; h < 4; h++) close(recorded[b][h], expected[b][h], 1e-5, `b${b} h${h}`);
    const base = P.arraySync() as number[][][][];
    const changed = recorded.flat(3).some((v, i) => Math.abs(v - base.flat(3)[i]) > 1e-6);
    assert.ok(changed, 'VAR changed nothing on this input');
    tf.dispose([out, expT, sinks, sm, phi]);
    cache.dispose();
    assert.equal(tf.memory().numTensors, start);
  });
});
