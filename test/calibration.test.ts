/**
 * ACT and VAR (src/analyses/calibration.ts): hand-computed cases, and agreement with independent ports of
 * the authors' code (test/ports/act.py from GATECH-EIC/ACT, test/ports/var.py from MICV-yonsei/VisAttnSink)
 * on attention patterns and residuals of the shipped models (fixtures/models/var-group, recall), in
 * prefill and in KV-cache decoding. Sync readback is forbidden here (test/setup.ts): hooks record by
 * keeping clones, read after the run.
 */
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  actColumnMeans,
  actHiddenSinks,
  actHook,
  calibrateACT,
  defaultCalibLayers,
  evaluateACT,
  imageCentricHeads,
  imageCentricMask,
  redistributeVAR,
  selectACTHeads,
  sinkDimensions,
  sinkTokenMask,
  tokenGroupMask,
  varHook,
  varLayers,
  type CalibHooks,
} from '../src/analyses/calibration.js';
import { actName } from '../src/hooks/names.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { generate, loadModel, randomModel, type HookedTransformer } from '../src/model/index.js';
import { tokenGroupBatch, tokenGroupLayout } from '../src/data/token-group.js';
import { ConfigError, HookError, ShapeError } from '../src/errors.js';
import { mulberry32 } from '../src/util/random.js';
import { runPort } from './helpers/port.js';

type M = number[][];

function close(a: M, b: M, tol = 1e-6, msg = '') {
  assert.equal(a.length, b.length, msg);
  a.forEach((row, i) => {
    assert.equal(row.length, b[i].length, msg);
    row.forEach((v, j) => assert.ok(Math.abs(v - b[i][j]) <= tol, `${msg} [${i}][${j}]: ${v} vs ${b[i][j]}`));
  });
}

/** Random causal softmax matrix (seeded), optionally with strong columns (sinks). */
function randomCausal(n: number, seed: number, sinkCols: number[] = [], scale = 2): M {
  const r = mulberry32(seed);
  return Array.from({ length: n }, (_, i) => {
    const s = Array.from({ length: i + 1 }, (_, j) => scale * (r() * 2 - 1) + (sinkCols.includes(j) ? 3 : 0));
    const mx = Math.max(...s);
    const e = s.map((x) => Math.exp(x - mx));
    const z = e.reduce((a, b) => a + b, 0);
    return [...e.map((x) => x / z), ...new Array(n - 1 - i).fill(0)];
  });
}

/** Embed an n x n matrix at the bottom-right of a left-padded (n + pad) square (padded rows attend to column 0). */
function leftPad(A: M, pad: number): M {
  const n = A.length + pad;
  return Array.from({ length: n }, (_, i) => (i < pad ? Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 0)) : [...new Array(pad).fill(0), ...A[i - pad]]));
}

/** Read a tensor a function returns, then free it. */
async function read<T>(t: tf.Tensor): Promise<T> {
  try {
    return (await t.array()) as T;
  } finally {
    t.dispose();
  }
}

const ctxOf = (name: string, layer: number, decoding = false) => ({ name, layer, decoding, pastLength: 0 });

/** A hook that keeps a copy of every activation it sees (read them after the run). */
function recorder() {
  const kept: tf.Tensor[] = [];
  return {
    hook: (act: tf.Tensor) => void kept.push(tf.keep(act.clone())),
    async values<T>(): Promise<T[]> {
      const out = await Promise.all(kept.map((t) => t.array()));
      tf.dispose(kept.splice(0));
      return out as T[];
    },
  };
}

const actPort = (heads: M[], threshold = 0.1, beta = 0.4) =>
  runPort<{ out: Array<Array<Array<number | null>>>; means: number[][]; sinks: number[][] }>('act', { heads, threshold, beta });

/** Ours vs the ACT port on one matrix: equal where the port is finite; where it divides 0 by 0, ours keeps the input row. */
function matchesACTPort(ours: M, port: Array<Array<number | null>>, input: M, tol: number, msg: string): number {
  let nanRows = 0;
  port.forEach((row, i) => {
    if (row.some((v) => v === null)) {
      nanRows++;
      close([ours[i]], [input[i]], 1e-6, `${msg} row ${i} (authors: 0/0) kept`);
    } else close([ours[i]], [row as number[]], tol, `${msg} row ${i}`);
  });
  return nanRows;
}

// ---------------------------------------------------------------------------------------------
// ACT
// ---------------------------------------------------------------------------------------------

describe('ACT', () => {
  // Worked example (threshold 0.2, beta 0.4):
  //   A = [1 0 0 0; .5 .5 0 0; .4 .4 .2 0; .3 .3 .1 .3]
  //   m = [(1+.5+.4+.3)/4, (.5+.4+.3)/3, (.2+.1)/2, .3/1] = [.55, .4, .15, .3] ; S = {0, 1, 3}, S' = {1, 3}
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

  it('worked example: column means, hidden sinks and the calibrated matrix (by hand and by the port)', async () => {
    const t = tf.tensor2d(A4);
    const before = tf.memory().numTensors;
    close([await read<number[]>(actColumnMeans(t))], [[0.55, 0.4, 0.15, 0.3]], 1e-6);
    assert.deepEqual(await read<number[]>(actHiddenSinks(t, { threshold: 0.2 })), [0, 1, 0, 1]);
    assert.deepEqual(await read<number[]>(actHiddenSinks(t)), [0, 1, 1, 1]);
    const out = await read<M>(calibrateACT(t, { threshold: 0.2, beta: 0.4 }));
    assert.equal(tf.memory().numTensors, before);
    t.dispose();
    close(out, expected4, 1e-6);
    const port = actPort([A4], 0.2, 0.4);
    close(port.out[0] as M, expected4, 1e-12, 'port');
    assert.deepEqual(port.sinks[0], [1, 3]);
  });

  it('a row whose visible mass is all on hidden sinks is kept (the authors divide 0 by 0); a decoding row uses its own means', async () => {
    // m = [.5, .75, 0] -> S = {0, 1}, S' = {1}; row 1 has no non-sink mass
    const A = [
      [1, 0, 0],
      [0, 1, 0],
      [0.5, 0.5, 0],
    ];
    const out = await read<M>(calibrateACT(tf.tensor2d(A)));
    close(out, [A[0], A[1], [0.8, 0.2, 0]], 1e-6);
    assert.equal(matchesACTPort(out, actPort([A]).out[0], A, 1e-6, 'all-sink row'), 1);
    // one decoding row [.5 .3 .2], threshold .25 -> S = {0, 1}, S' = {1}; r = .6*.3 = .18, non = .7
    const dec = await read<M>(calibrateACT(tf.tensor2d([[0.5, 0.3, 0.2]]), { threshold: 0.25 }));
    close(dec, [[0.5 + (0.18 * 0.5) / 0.7, 0.12, 0.2 + (0.18 * 0.2) / 0.7]], 1e-6);
  });

  it('rejects bad input with typed errors', () => {
    assert.throws(() => calibrateACT(tf.tensor2d([[1], [1]])), ShapeError);
    assert.throws(() => calibrateACT([[1]] as never), ShapeError);
    assert.throws(() => calibrateACT(tf.tensor2d(A4), { beta: 2 }), ConfigError);
    assert.throws(() => actHook({ heads: ['x.1'] }), /head/);
    assert.throws(() => actHook({ heads: [[0, 1]], decodeSinks: 'bogus' as 'row' }), ConfigError);
  });

  it('on a [batch, head, q, k] pattern with left padding: each matrix equals the port on its unpadded part', async () => {
    const n = 6;
    const mats = [randomCausal(n, 1, [0, 2]), randomCausal(n, 2, [0, 4]), randomCausal(n - 2, 3, [0, 1]), randomCausal(n - 2, 4, [0, 2])];
    const data = [
      [mats[0], mats[1]],
      [leftPad(mats[2], 2), leftPad(mats[3], 2)],
    ];
    const port = actPort(mats);
    const inner = (X: M) => X.slice(2).map((r) => r.slice(2));
    const t = tf.tensor4d(data);
    const before = tf.memory().numTensors;
    for (const attentionMask of [[[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]], undefined]) {
      const out = await read<M[][]>(calibrateACT(t, { attentionMask }));
      matchesACTPort(out[0][0], port.out[0], mats[0], 1e-6, 'b0h0');
      matchesACTPort(out[0][1], port.out[1], mats[1], 1e-6, 'b0h1');
      matchesACTPort(inner(out[1][0]), port.out[2], mats[2], 1e-6, 'b1h0');
      matchesACTPort(inner(out[1][1]), port.out[3], mats[3], 1e-6, 'b1h1');
      close(out[1][0].slice(0, 2), data[1][0].slice(0, 2), 0, 'padded rows untouched');
    }
    const sinks = await read<number[][][]>(actHiddenSinks(t));
    assert.deepEqual(sinks[0][1].flatMap((v, j) => (v ? [j] : [])), port.sinks[1]);
    assert.deepEqual(sinks[1][0].flatMap((v, j) => (v ? [j - 2] : [])), port.sinks[2]);
    assert.equal(tf.memory().numTensors, before);
    t.dispose();
  });

  it('defaults: layers 2..L-2 (the authors\' range(2, 31) for 32 layers)', () => {
    assert.deepEqual(defaultCalibLayers(32), Array.from({ length: 29 }, (_, i) => i + 2));
    assert.deepEqual(defaultCalibLayers(6), [2, 3, 4]);
  });
});

describe('ACT on shipped models, against the port (test/ports/act.py)', function () {
  this.timeout(120000);
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel('fixtures/models/var-group');
  });
  after(() => model?.dispose());

  it('actHook on var-group (every head of layers 1-3, 6 prompts): calibrated heads equal the port, the others pass through, logits change', async () => {
    const { tokens } = tokenGroupBatch(6, 41);
    const heads: Array<[number, number]> = [[1, 0], [1, 3], [2, 1], [2, 2], [3, 0], [3, 3]];
    const start = tf.memory().numTensors;
    const base = await model.forward(tokens);
    const recs = [1, 2, 3].map(() => [recorder(), recorder()]);
    const hooks = actHook({ heads });
    const fwdHooks: HookSpec[] = [1, 2, 3].flatMap((l, i) => [[actName('pattern', l), recs[i][0].hook] as HookSpec]);
    fwdHooks.push(...hooks, ...[1, 2, 3].map((l, i) => [actName('pattern', l), recs[i][1].hook] as HookSpec));
    const logits = await model.runWithHooks(tokens, { fwdHooks });
    hooks.dispose();
    const diff = await read<number>(tf.tidy(() => tf.max(tf.abs(tf.sub(logits, base)))));
    tf.dispose([base, logits]);
    assert.ok(diff > 1e-3, `ACT changed the logits by ${diff}`);
    let calibrated = 0;
    let kept = 0;
    for (const [i, l] of [1, 2, 3].entries()) {
      const [[pre], [post]] = [await recs[i][0].values<M[][]>(), await recs[i][1].values<M[][]>()];
      const mine = heads.filter(([hl]) => hl === l).map(([, h]) => h);
      const port = actPort(pre.flatMap((p) => mine.map((h) => p[h])));
      pre.forEach((p, b) =>
        p.forEach((A, h) => {
          const k = mine.indexOf(h);
          if (k < 0) return close(post[b][h], A, 0, `layer ${l} head ${h} untouched`);
          kept += matchesACTPort(post[b][h], port.out[b * mine.length + k], A, 2e-6, `layer ${l} b${b} h${h}`);
          calibrated++;
        }),
      );
    }
    assert.equal(calibrated, 6 * heads.length);
    assert.equal(tf.memory().numTensors, start);
    console.log(`      ${calibrated} calibrated matrices equal the port (${kept} rows the authors would leave NaN kept)`);
  });

  it('recall (4 layers x 16 heads, grouped-query attention): calibrateACT on cached patterns equals the port for every head', async () => {
    const recall = await loadModel('fixtures/models/recall');
    const r = mulberry32(9);
    const tokens = [Array.from({ length: 40 }, (_, i) => (i === 0 ? 0 : 7 + Math.floor(r() * 60)))];
    const names = Array.from({ length: recall.cfg.n_layers }, (_, l) => actName('pattern', l));
    const { logits, cache } = await recall.runWithCache(tokens, { namesFilter: names });
    logits.dispose();
    for (const n of names) {
      const P = cache.get(n);
      const [pre, post] = [await P.array(), await read(calibrateACT(P))] as [M[][], M[][]];
      const port = actPort(pre[0]);
      pre[0].forEach((A, h) => matchesACTPort(post[0][h], port.out[h], A, 2e-6, `${n} head ${h}`));
    }
    cache.dispose();
    recall.dispose();
  });

  it('actHook in generate: decoding rows with their own means (default) or the prefill\'s hidden sinks, no tensors left after dispose()', async () => {
    const { tokens } = tokenGroupBatch(1, 43);
    const layer = 0; // head 0.1 has hidden sinks inside the image on this prompt
    const name = actName('pattern', layer);
    const s0 = tf.memory().numTensors;
    await generate(model, tokens, { maxNewTokens: 3 });
    const plainLeak = tf.memory().numTensors - s0;
    const start = tf.memory().numTensors;
    let withSinks = 0;
    for (const decodeSinks of ['row', 'prefill'] as const) {
      const [pre, post] = [recorder(), recorder()];
      const hooks = actHook({ heads: [[layer, 1]], decodeSinks });
      const res = await generate(model, tokens, { maxNewTokens: 3, fwdHooks: [[name, pre.hook], ...hooks, [name, post.hook]] });
      hooks.dispose();
      assert.equal(res.tokens[0].length, 3);
      const [a, b] = [await pre.values<M[][]>(), await post.values<M[][]>()];
      assert.deepEqual(b.map((x) => x[0][1].length), [tokens[0].length, 1, 1]);
      const prefillPort = actPort([a[0][0][1]]);
      matchesACTPort(b[0][0][1], prefillPort.out[0], a[0][0][1], 2e-6, `${decodeSinks} prefill`);
      const sp = new Set(prefillPort.sinks[0]);
      for (const step of [1, 2]) {
        const row = a[step][0][1][0];
        // 'row': S' from this row's own means (the port's sinks of the one-row matrix); 'prefill': S' of the prefill.
        // Both then follow the prefill rule (the port's one-row matrix would also keep sink columns in its
        // ratio map and set [0][0] = 1: the authors' prefill-only code, not applied by tflens in decoding).
        const S = decodeSinks === 'row' ? new Set(actPort([[row]]).sinks[0]) : sp;
        if (S.size) withSinks++;
        const sink = row.reduce((s, v, j) => s + (S.has(j) ? v : 0), 0);
        const want = row.map((v, j) => (S.has(j) ? 0.4 * v : v + (0.6 * sink * v) / (1 - sink)));
        close([b[step][0][1][0]], [want], 2e-6, `${decodeSinks} step ${step}`);
        close(b[step][0][0], a[step][0][0], 0, 'head 0 untouched');
      }
    }
    assert.equal(tf.memory().numTensors, start + 2 * plainLeak);
    assert.ok(withSinks >= 2, `decoding steps with hidden sinks: ${withSinks}`);
  });
});

describe('ACT head selection', function () {
  this.timeout(60000);
  // a metric read back from which heads the hook set calibrates (probe: a pattern where a calibrated head changes)
  const gain: Record<string, number> = { '2.0': 0.1, '2.1': -0.05, '3.0': 0.02, '3.1': 0, '4.0': -0.01, '4.1': 0.03 };
  const probe = async (hooks: HookSpec[]): Promise<number> => {
    const names: string[] = [];
    for (const [name, fn] of hooks) {
      const layer = Number(String(name).split('.')[1]);
      const A = [
        [1, 0, 0],
        [0.5, 0.5, 0],
        [0.2, 0.6, 0.2],
      ];
      const t = tf.tensor4d([[A, A]]);
      const arr = await read<M[][]>(fn(t, ctxOf(String(name), layer)) as tf.Tensor);
      t.dispose();
      arr[0].forEach((X, h) => {
        if (Math.abs(X[2][1] - 0.6) > 1e-6) names.push(`${layer}.${h}`);
      });
    }
    return 0.5 + names.reduce((a, n) => a + gain[n], 0);
  };
  const model = randomModel({ model_type: 'gpt2', n_layer: 6, n_head: 2, n_embd: 8, vocab_size: 11, n_positions: 8 }, { seed: 1 });
  after(() => model.dispose());

  it("default = the authors' independent search: each head alone against the baseline; greedy is a named variant", async () => {
    const ind = await selectACTHeads(model, null, probe);
    assert.equal(ind.params.mode, 'independent');
    assert.deepEqual(ind.params.layers, [2, 3, 4]);
    assert.deepEqual(ind.kept, [[2, 0], [3, 0], [4, 1]]);
    assert.ok(Math.abs(ind.final - 0.65) < 1e-9);
    assert.equal(ind.baseline, 0.5);
    assert.deepEqual(ind.trace.map((s) => s.accuracy.toFixed(2)), ['0.60', '0.45', '0.52', '0.50', '0.49', '0.53']);
    const strict = await selectACTHeads(model, null, probe, { minGain: 0.025 });
    assert.deepEqual(strict.kept, [[2, 0], [4, 1]]);
    // greedy: 2.0 (0.6 > 0.5), 2.1 (0.55 < 0.6), 3.0 (0.62), 3.1 (0.62, not better), 4.0 (0.61), 4.1 (0.65)
    const greedy = await selectACTHeads(model, null, probe, { mode: 'greedy' });
    assert.deepEqual(greedy.kept, [[2, 0], [3, 0], [4, 1]]);
    assert.deepEqual(greedy.trace.map((s) => s.accuracy.toFixed(2)), ['0.60', '0.55', '0.62', '0.62', '0.61', '0.65']);
    const ev = await evaluateACT(['2.0', 'L4H1'], null, probe);
    assert.ok(Math.abs(ev.delta - 0.13) < 1e-9);
    assert.deepEqual(ev.heads, [[2, 0], [4, 1]]);
    await assert.rejects(() => selectACTHeads(model, null, probe, { mode: 'bogus' as 'greedy' }), ConfigError);
    await assert.rejects(() => selectACTHeads(model, null, async () => NaN), /finite/);
  });

  it('with a model metric (mean target log-prob on var-group): the trace and final agree with direct evaluations; no tensors left', async () => {
    const vg = await loadModel('fixtures/models/var-group');
    const data = tokenGroupBatch(4, 17).tokens;
    const metric = async (hooks: HookSpec[], d: number[][]) => {
      const logits = await vg.runWithHooks(d, { fwdHooks: hooks });
      const lp = await read<number[][][]>(tf.tidy(() => tf.logSoftmax(logits)));
      logits.dispose();
      let s = 0;
      let n = 0;
      d.forEach((row, b) => row.slice(1).forEach((t, i) => ((s += lp[b][i][t]), n++)));
      return s / n;
    };
    const start = tf.memory().numTensors;
    const sel = await selectACTHeads(vg, data, metric, { layers: [1, 2] });
    assert.equal(sel.trace.length, 8);
    assert.ok(Math.abs(sel.baseline - (await metric([], data))) < 1e-6);
    for (const st of sel.trace) {
      assert.equal(st.kept, st.accuracy > sel.baseline);
      const hooks = actHook({ heads: [[st.layer, st.head]] });
      assert.ok(Math.abs((await metric(hooks, data)) - st.accuracy) < 1e-6);
      hooks.dispose();
    }
    const ev = await evaluateACT(sel.kept, data, metric);
    assert.ok(Math.abs(ev.after - sel.final) < 1e-6 && Math.abs(ev.before - sel.baseline) < 1e-6);
    assert.equal(tf.memory().numTensors, start);
    vg.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// VAR
// ---------------------------------------------------------------------------------------------

describe('VAR', () => {
  it('hand-computed redistribution: sinks keep p, Omega moves to the group non-sinks; rows without group non-sink mass unchanged', async () => {
    // p = 0.6, sinks S = {0, 2}, group I = {1, 2, 3}; row [.4 .1 .3 .2 0]: Omega = .4*(.4+.3) = .28; I\S = {1,3}, den = .3
    const A = [
      [1, 0, 0, 0, 0],
      [0.5, 0, 0.5, 0, 0],
      [0.4, 0.1, 0.3, 0.2, 0],
    ];
    const want = [A[0], A[1], [0.24, 0.1 + (0.28 * 0.1) / 0.3, 0.18, 0.2 + (0.28 * 0.2) / 0.3, 0]];
    const t = tf.tensor2d(A);
    const before = tf.memory().numTensors;
    const out = await read<M>(redistributeVAR(t, { sinkMask: [1, 0, 1, 0, 0], groupMask: tokenGroupMask({ start: 1, end: 4 }, 5), allRows: true }));
    close(out, want, 1e-6);
    assert.equal(tf.memory().numTensors, before);
    t.dispose();
    assert.deepEqual(tokenGroupMask([3, 1, 2, 3], 5), [0, 1, 1, 1, 0]);
  });

  it("image-centric test (summ, rho, the authors' +1e-6 per group token) and the no-visual-sink rule", async () => {
    const A = [
      [1, 0, 0, 0],
      [0.5, 0.5, 0, 0],
      [0.7, 0.1, 0.2, 0], // group {1,2}: .3 >= .2; sink share .1/.3 <= .5 -> centric
      [0.5, 0.2, 0.1, 0.2], // group .3; share .2/.3 > .5 -> not
    ];
    const t = tf.tensor2d(A);
    const groupMask = [0, 1, 1, 0];
    assert.deepEqual(await read(imageCentricMask(t, { sinkMask: [0, 1, 0, 0], groupMask })), [0, 0, 1, 0]);
    assert.deepEqual(await read(imageCentricMask(t, { sinkMask: [0, 1, 0, 0], groupMask, rowMask: [0, 0, 0, 1] })), [0, 0, 0, 0]);
    // only a text sink (BOS): the authors select nothing; the earlier tflens rule passes rows with share 0
    assert.deepEqual(await read(imageCentricMask(t, { sinkMask: [1, 0, 0, 0], groupMask })), [0, 0, 0, 0]);
    assert.deepEqual(await read(imageCentricMask(t, { sinkMask: [1, 0, 0, 0], groupMask, noVisualSink: 'redistribute' })), [0, 1, 1, 1]);
    // share exactly at rho with the 1e-6 terms: row [.5 .25 .25 0], sinks {1}: .25 / (.5 + 2e-6) < .5 -> centric
    const edge = tf.tensor2d([[0.5, 0.25, 0.25, 0]]);
    assert.deepEqual(await read(imageCentricMask(edge, { sinkMask: [0, 1, 0, 0], groupMask })), [1]);
    tf.dispose([t, edge]);
  });

  it('sink tokens and sink dimensions from residuals', async () => {
    // d = 4; token 1 has a massive dim 2: x = [1, 1, 100, 1] -> rms = sqrt((3 + 1e4)/4 + 1e-6), phi = 100/rms = 1.9994
    const x = tf.tensor3d([[[1, 1, 1, 1], [1, 1, 100, 1], [1, -1, 1, -1]]]);
    const before = tf.memory().numTensors;
    assert.deepEqual(await read(sinkTokenMask(x, [2], 1.5)), [[0, 1, 0]]);
    const sd = await sinkDimensions([x], { topK: 2 });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(sd.dims[0], 2);
    assert.ok(Math.abs(sd.scores[0] - 100 / Math.sqrt((3 + 1e4) / 4 + 1e-6)) < 1e-3);
    assert.throws(() => sinkTokenMask(x, [4]), ConfigError);
    x.dispose();
  });

  it("layers: 'authors-code' = 2..L-1 (sinks searched from layer 2, the last layer not skipped), 'except-last' = 2..L-2", () => {
    assert.deepEqual(varLayers(6), [2, 3, 4, 5]);
    assert.deepEqual(varLayers(6, 'except-last'), [2, 3, 4]);
    const names = (h: CalibHooks) => h.map((e) => e[0]);
    assert.deepEqual(names(varHook({ nLayers: 4, group: [1], sinkDims: [0] })), ['blocks.2.hook_resid_pre', 'blocks.2.attn.hook_pattern', 'blocks.3.hook_resid_pre', 'blocks.3.attn.hook_pattern']);
    assert.deepEqual(names(varHook({ nLayers: 4, layers: 'except-last', group: [1], sinkDims: [0] })), ['blocks.2.hook_resid_pre', 'blocks.2.attn.hook_pattern']);
    assert.throws(() => varHook({ group: [1], sinkDims: [0] }), ConfigError);
    assert.throws(() => varHook({ layers: [2], group: [1], sinkDims: [0], decodeSinks: 'x' as 'prefill' }), ConfigError);
  });

  it('varHook called directly: prefill marks sinks, decoding reuses them (new tokens are not sinks unless every-step)', async () => {
    const start = tf.memory().numTensors;
    // 5 tokens, d = 4; token 0 (BOS) and token 2 (in the group {1, 2}) are sinks: phi = 50/sqrt((2500+3)/4) = 1.999 > 1.5
    const resid = tf.tensor3d([[[50, 1, 1, 1], [1, 1, 1, 1], [50, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]]]);
    const M5 = randomCausal(5, 41, [0]);
    const pat = tf.tensor4d([[M5]]);
    const newTok = tf.tensor3d([[[50, 1, 1, 1]]]); // a sink-like new token
    const drow = [0.3, 0.2, 0.2, 0.1, 0.1, 0.1];
    const dp = tf.tensor4d([[[drow]]]);
    for (const decodeSinks of ['prefill', 'every-step'] as const) {
      const hooks = varHook({ layers: [2], group: { start: 1, end: 3 }, sinkDims: [0], tau: 1.5, decodeSinks });
      const [sinkHook, patternHook] = [hooks[0][1], hooks[1][1]];
      assert.equal(sinkHook(resid, ctxOf('r', 2)), undefined);
      const out = await read<M[][]>(patternHook(pat, ctxOf('p', 2)) as tf.Tensor);
      // prefill: only rows after the group (3, 4) may change; the port gives the same
      const port = runPort<{ attn: M[][] }>('var', { hidden: [[], [], (await resid.array())[0]], attn: [[M5], [M5], [M5]], dims: [0], tau: 1.5, rho: 0.5, summ: 0.2, p: 0.6, im: 1, pa: 2 });
      close(out[0][0], port.attn[2][0], 1e-6, `${decodeSinks} prefill`);
      sinkHook(newTok, ctxOf('r', 2, true));
      const dec = await read<M[][]>(patternHook(dp, ctxOf('p', 2, true)) as tf.Tensor);
      // group {1,2}: .4 >= .2; share .2/.4 <= .5 -> centric. Sinks {0, 2} (+ 5 if every-step)
      const S = decodeSinks === 'prefill' ? [0, 2] : [0, 2, 5];
      const omega = 0.4 * S.reduce((s, j) => s + drow[j], 0);
      const want = drow.map((v, j) => (S.includes(j) ? 0.6 * v : j === 1 ? v + omega : v));
      close(dec[0][0], [want], 1e-6, `${decodeSinks} decode`);
      hooks.dispose();
    }
    tf.dispose([resid, pat, newTok, dp]);
    assert.equal(tf.memory().numTensors, start);
    const bad = varHook({ layers: [2], group: [1], sinkDims: [0] });
    assert.throws(() => bad[1][1](tf.zeros([1, 1, 2, 2]), ctxOf('p', 2)), HookError);
  });
});

describe('VAR on var-group, against the port (test/ports/var.py)', function () {
  this.timeout(120000);
  let model: HookedTransformer;
  let dims: number[];
  const L = tokenGroupLayout();
  const TAU = 2.6;
  before(async () => {
    model = await loadModel('fixtures/models/var-group');
    // sink dimensions from layers 2..3 of an unhooked run
    const names = [actName('resid_pre', 2), actName('resid_pre', 3)];
    const { logits, cache } = await model.runWithCache(tokenGroupBatch(16, 5).tokens, { namesFilter: names });
    logits.dispose();
    dims = (await sinkDimensions(names.map((n) => cache.get(n)), { topK: 2 })).dims;
    cache.dispose();
  });
  after(() => model?.dispose());

  const settings = () => ({ dims, tau: TAU, rho: 0.5, summ: 0.2, p: 0.6, im: L.group.start, pa: L.group.end - L.group.start });

  /** Run `go` with varHook between recorders (each layer's resid_pre, pattern before and after VAR); the recordings, read. */
  async function recordVAR(go: (fwdHooks: HookSpec[]) => Promise<unknown>, opts: { noVisualSink?: 'skip' | 'redistribute' } = {}) {
    const n = model.cfg.n_layers;
    const [pre, post, resid] = [range(n).map(() => recorder()), range(n).map(() => recorder()), range(n).map(() => recorder())];
    const hooks = varHook({ nLayers: n, group: L.group, sinkDims: dims, tau: TAU, ...opts });
    await go([
      ...range(n).flatMap((l) => [[actName('resid_pre', l), resid[l].hook], [actName('pattern', l), pre[l].hook]] as HookSpec[]),
      ...hooks,
      ...range(n).map((l) => [actName('pattern', l), post[l].hook] as HookSpec),
    ]);
    hooks.dispose();
    const read3 = <T>(rs: ReturnType<typeof recorder>[]) => Promise.all(rs.map((r) => r.values<T>()));
    return { n, P: await read3<M[][]>(pre), Q: await read3<M[][]>(post), R: await read3<M[]>(resid) };
  }

  /** Prefill through varHook; compare every prompt with the port. */
  async function runAgainstPort(tokens: number[][], opts: { noVisualSink?: 'skip' | 'redistribute' } = {}) {
    const { n, P, Q, R } = await recordVAR(async (fwdHooks) => (await model.runWithHooks(tokens, { fwdHooks })).dispose(), opts);
    let changedRows = 0;
    let noVisualLayers = 0;
    let visualLayers = 0;
    let maxChange = 0;
    tokens.forEach((_, b) => {
      const port = runPort<{ attn: M[][]; sinks: number[][] }>('var', { hidden: range(n).map((l) => R[l][0][b]), attn: range(n).map((l) => P[l][0][b]), ...settings() });
      for (let l = 0; l < n; l++) {
        const inImage = port.sinks[l].filter((j) => j >= L.group.start && j < L.group.end).length;
        if (l >= 2 && port.sinks[l].length && !inImage) noVisualLayers++;
        if (inImage) visualLayers++;
        for (let h = 0; h < model.cfg.n_heads; h++) {
          const ours = Q[l][0][b][h];
          if (opts.noVisualSink !== 'redistribute') close(ours, port.attn[l][h], 2e-6, `prompt ${b} layer ${l} head ${h}`);
          ours.forEach((row, i) => {
            const d = Math.max(...row.map((v, j) => Math.abs(v - P[l][0][b][h][i][j])));
            if (d > 1e-7) changedRows++;
            maxChange = Math.max(maxChange, d);
          });
        }
      }
    });
    return { changedRows, noVisualLayers, visualLayers, maxChange };
  }

  it('prefill, 12 prompts, default layers 2..3: every pattern equals the port; both branches (image sinks, only text sinks) occur', async () => {
    const { tokens } = tokenGroupBatch(12, 606);
    const start = tf.memory().numTensors;
    const r = await runAgainstPort(tokens);
    assert.equal(tf.memory().numTensors, start);
    assert.ok(r.visualLayers > 0 && r.noVisualLayers > 0, `layers with image sinks ${r.visualLayers}, with only text sinks ${r.noVisualLayers}`);
    assert.ok(r.changedRows > 0, 'VAR changed some rows');
    const old = await runAgainstPort(tokens, { noVisualSink: 'redistribute' });
    assert.ok(old.changedRows > r.changedRows, `the earlier rule changes more rows (${old.changedRows} vs ${r.changedRows})`);
    console.log(`      rows changed: ${r.changedRows} (authors' rule) vs ${old.changedRows} ('redistribute'); max change ${r.maxChange.toFixed(4)} vs ${old.maxChange.toFixed(4)}; (layer, prompt) with image sinks ${r.visualLayers}, with only text sinks ${r.noVisualLayers}`);
  });

  it('generate: the decoding step uses the prefill sinks, as the port does', async () => {
    const { tokens } = tokenGroupBatch(1, 603);
    await generate(model, tokens, { maxNewTokens: 2 }); // warm-up: generate's own tensors
    const start = tf.memory().numTensors;
    const { n, P, Q, R } = await recordVAR((fwdHooks) => generate(model, tokens, { maxNewTokens: 2, fwdHooks }));
    assert.equal(tf.memory().numTensors, start, 'hook state freed by dispose()');
    const port = runPort<{ attn: M[][]; decode: M[][] }>('var', {
      hidden: range(n).map((l) => R[l][0][0]),
      attn: range(n).map((l) => P[l][0][0]),
      decode: range(n).map((l) => P[l][1][0]),
      ...settings(),
    });
    let changed = 0;
    for (let l = 0; l < n; l++) {
      for (let h = 0; h < model.cfg.n_heads; h++) {
        close(Q[l][0][0][h], port.attn[l][h], 2e-6, `prefill layer ${l} head ${h}`);
        close(Q[l][1][0][h], port.decode[l][h], 2e-6, `decode layer ${l} head ${h}`);
        if (Q[l][1][0][h][0].some((v, j) => Math.abs(v - P[l][1][0][h][0][j]) > 1e-6)) changed++;
      }
    }
    assert.ok(changed > 0, 'VAR changed some decoding rows');
  });

  it('imageCentricHeads (async) equals imageCentricMask on cached patterns', async () => {
    const { tokens } = tokenGroupBatch(6, 612);
    const names = [2, 3].flatMap((l) => [actName('pattern', l), actName('resid_pre', l)]);
    const { logits, cache } = await model.runWithCache(tokens, { namesFilter: names });
    logits.dispose();
    const start = tf.memory().numTensors;
    const sinkMask = [2, 3].map((l) => sinkTokenMask(cache.get(actName('resid_pre', l)), dims, TAU));
    const patterns = [2, 3].map((l) => cache.get(actName('pattern', l)));
    const ic = await imageCentricHeads(patterns, { group: L.group, sinkMasks: sinkMask, layers: [2, 3] });
    await assert.rejects(() => imageCentricHeads(patterns, { group: L.group, sinkMasks: [sinkMask[0]] }), ConfigError);
    const T = L.length;
    const rowMask = range(T).map((i): number => (i >= L.group.end ? 1 : 0));
    for (const [i, P] of patterns.entries()) {
      const want = await read<number[][][]>(imageCentricMask(P, { sinkMask: sinkMask[i], groupMask: tokenGroupMask(L.group, T), rowMask }));
      assert.deepEqual(ic.flags[i], want);
      const sum = (xs: number[]) => xs.reduce((a, v) => a + v, 0);
      const nq = sum(rowMask) * tokens.length;
      ic.fraction[i].forEach((f, h) => assert.ok(Math.abs(f - sum(want.map((b) => sum(b[h]))) / nq) < 1e-12));
    }
    tf.dispose(sinkMask);
    assert.equal(tf.memory().numTensors, start);
    assert.deepEqual(ic.scores.data?.layers, [2, 3]);
    cache.dispose();
  });
});

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
