// Patching, path patching, attribution patching, knockouts and circuit evaluation.
// (1) Batched activation patching equals the one-forward-per-index loop on the reference fixtures.
// (2) Fidelity: on the shipped ioi model, every method equals an independent numpy port of the authors'
//     computation (test/ports/*.py: TransformerLens patching, Redwood's path_patching and mean ablation,
//     TransformerLens's attribution patching) to float precision.
// All of it runs with synchronous readback of computed tensors forbidden (test/setup.ts).
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import {
  patchSweep, patchLoop, attributionPatch, pathPatch, inductionProblem, ioiTask, logitDiffMetric, runMetric, metricOfReadLogits,
  templateMeans, knockout, evaluateCircuit, headPatchingScores, attributionScores, pathPatchingScores,
  type PatchAct, type PatchBy, type PatchingProblem, type CircuitNode,
} from '../src/circuits/index.js';
import { logitDiff, templateGroups, type IOIDataset } from '../src/data/ioi.js';
import { syncReadbackForbidden } from '../src/backend/readback.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { makeHeadScores, topHeads, type HeadScores } from '../src/results.js';
import { REF_DIR } from './helpers/reference.js';
import { runPort } from './helpers/port.js';

const IOI_DIR = path.resolve('fixtures', 'models', 'ioi');

function problem(model: HookedTransformer, seed: number): PatchingProblem {
  return inductionProblem(model, { n: 3, R: 4, low: 3, high: model.cfg.d_vocab, seed });
}

const flat = (x: unknown): number[] => (Array.isArray(x) ? x.flatMap(flat) : [x as number]);
const maxDiff = (a: unknown, b: unknown): number => {
  const x = flat(a);
  const y = flat(b);
  assert.equal(x.length, y.length, 'same number of entries');
  return Math.max(...x.map((v, i) => (Number.isNaN(v) && (y[i] === null || Number.isNaN(y[i])) ? 0 : Math.abs(v - y[i]))));
};

/** Run a forward with hooks and read the problem's metric (a test-side helper). */
async function metricWith(m: HookedTransformer, p: PatchingProblem, tokens: number[][], fwdHooks: HookSpec[]): Promise<number> {
  const lg = await m.forward(tokens, { attentionMask: p.attentionMask, logitPositions: p.readPositions, fwdHooks });
  const v = metricOfReadLogits(p, lg);
  lg.dispose();
  const out = (await v.data())[0];
  v.dispose();
  return out;
}

describe('activation patching', () => {
  const cases: [string, PatchAct, PatchBy][] = [
    ['gpt2-tiny', 'resid_pre', 'pos'], ['gpt2-tiny', 'resid_mid', 'pos'], ['gpt2-tiny', 'attn_out', 'pos'], ['gpt2-tiny', 'mlp_out', 'pos'],
    ['gpt2-tiny', 'z', 'head'], ['gpt2-tiny', 'z', 'head_pos'], ['gpt2-tiny', 'pattern', 'head'], ['gpt2-tiny', 'pattern', 'head_pos'],
    ['llama', 'q', 'head'], ['llama', 'k', 'head'], ['llama', 'v', 'head_pos'], ['llama', 'z', 'head'], ['pythia', 'attn_out', 'pos'],
  ];
  for (const [fam, act, by] of cases) {
    it(`${fam}: batched ${act} by ${by} equals the per-index loop${fam === 'llama' ? ' (GQA)' : ''}`, async () => {
      const m = await loadModel(path.join(REF_DIR, fam));
      const p = problem(m, 1);
      const before = tf.memory().numTensors;
      const batched = await patchSweep(m, p, act, by, { maxBatch: 7 }); // small batches: exercises chunking
      assert.equal(tf.memory().numTensors, before, 'no tensors left behind');
      const loop = await patchLoop(m, p, act, by);
      assert.equal(tf.memory().numTensors, before, 'no tensors left behind (loop)');
      const err = maxDiff(batched.values, loop.values);
      assert.ok(err < 1e-4, `max diff ${err}`);
      const a = flat(batched.values);
      assert.ok(Math.max(...a) - Math.min(...a) > 1e-3, 'patching must change the metric somewhere');
      if (act === 'k' || act === 'v') assert.equal((batched.values as number[][])[0].length, by === 'head' ? m.cfg.n_kv_heads : p.clean[0].length);
      assert.ok(batched.forwards < loop.forwards);
      m.dispose();
    });
  }

  it('patching resid_pre where clean and corrupted tokens agree has no effect at layer 0; where they differ it does', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const p = problem(m, 2);
    const r = await patchSweep(m, p, 'resid_pre', 'pos', { layers: [0] });
    const row = (r.values as number[][])[0];
    p.clean[0].forEach((_, pos) => {
      const same = p.clean.every((c, n) => c[pos] === p.corrupted[n][pos]);
      if (same) assert.ok(Math.abs(row[pos] - r.corrupted) < 1e-6, `pos ${pos}`);
    });
    assert.ok(row.some((x) => Math.abs(x - r.corrupted) > 1e-3));
    m.dispose();
  });

  it('a batched sweep reads back once per layer (plus the two baselines), never per patch index', async () => {
    assert.ok(syncReadbackForbidden(), 'the suite runs with synchronous readback forbidden');
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const p = problem(m, 3);
    const proto = tf.Tensor.prototype as unknown as { data: (...a: unknown[]) => Promise<unknown> };
    const orig = proto.data;
    let reads = 0;
    proto.data = function (this: tf.Tensor, ...a: unknown[]) {
      reads++;
      return orig.apply(this, a);
    };
    try {
      const r = await patchSweep(m, p, 'z', 'head_pos', { maxBatch: 12 });
      assert.equal(r.forwards - 2, m.cfg.n_layers * Math.ceil((p.clean[0].length * m.cfg.n_heads) / 4));
    } finally {
      proto.data = orig;
    }
    assert.equal(reads, m.cfg.n_layers + 2);
    m.dispose();
  });

  it('bad arguments are typed errors', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const p = problem(m, 4);
    await assert.rejects(patchSweep(m, p, 'z', 'pos'), /by: expected "head" or "head_pos" for z/);
    await assert.rejects(patchSweep(m, p, 'resid_pre', 'head'), /by: expected "pos" for resid_pre/);
    await assert.rejects(patchSweep(m, p, 'z', 'head', { layers: [5] }), /layers\[0\]: expected a layer in \[0, 3\)/);
    m.dispose();
  });
});

describe('attribution patching', () => {
  it('matches a finite-difference patch of a small step to first order (GQA model)', async () => {
    const m = await loadModel(path.join(REF_DIR, 'llama'));
    const p = problem(m, 4);
    const before = tf.memory().numTensors;
    const attr = await attributionPatch(m, p);
    assert.equal(tf.memory().numTensors, before);
    const eps = 1e-3;
    const zName = 'blocks.1.attn.hook_z';
    const cl = await m.runWithCache(p.clean, { attentionMask: p.attentionMask, namesFilter: [zName] });
    const co = await m.runWithCache(p.corrupted, { attentionMask: p.attentionMask, namesFilter: [zName] });
    const h = 2;
    const step = tf.tidy(() => tf.mul(tf.tensor4d([0, 0, 1, 0], [1, 1, 4, 1]), tf.mul(tf.sub(cl.cache.get(zName), co.cache.get(zName)), eps)));
    const patched = await metricWith(m, p, p.corrupted, [[zName, (z) => tf.add(z, step)]]);
    const fd = (patched - attr.corrupted) / eps;
    assert.ok(Math.abs(fd - attr.allPos[1][h]) < 1e-2 * Math.max(1, Math.abs(fd)), `finite difference ${fd} vs attribution ${attr.allPos[1][h]}`);
    tf.dispose([cl.logits, co.logits, step]);
    cl.cache.dispose();
    co.cache.dispose();
    m.dispose();
  });
});

describe('path patching and circuit evaluation', () => {
  it('sender -> logits for last-layer heads equals plain head patching in the noising direction', async () => {
    // a last-layer head reaches the logits only directly, so freezing the other heads changes nothing
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const p = problem(m, 5);
    const L = m.cfg.n_layers;
    const r = await pathPatch(m, p, { senderLayers: [L - 1] });
    const swapped: PatchingProblem = { ...p, clean: p.corrupted, corrupted: p.clean }; // noising = denoising with roles swapped
    const noising = await patchSweep(m, swapped, 'z', 'head', { layers: [L - 1] });
    const err = maxDiff(r.values[L - 1], (noising.values as number[][])[0]);
    assert.ok(err < 1e-4, `diff ${err}`);
    assert.ok(Number.isNaN(r.values[0][0]));
    assert.ok(Math.abs(r.clean - (await runMetric(m, p, 'clean'))) < 1e-6);
    m.dispose();
  });

  it('mean ablation: nothing ablated gives the model; a circuit of every head is perfectly faithful; one head by hand', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const p = problem(m, 7);
    const ids = p.clean.map((_, i) => i % 2);
    const before = tf.memory().numTensors;
    const means = await templateMeans(m, { tokens: p.corrupted, attentionMask: p.attentionMask }, { referenceGroups: ids });
    assert.ok(Math.abs((await knockout(m, p, means, [])) - (await runMetric(m, p, 'clean'))) < 1e-5);
    const all: string[] = [];
    for (let l = 0; l < m.cfg.n_layers; l++) for (let h = 0; h < m.cfg.n_heads; h++) all.push(`${l}.${h}`);
    const ev = await evaluateCircuit(m, p, means, all, { completenessSets: [['0.1']] });
    assert.ok(ev.faithfulness < 1e-5 && Math.abs(ev.faithfulnessRatio - 1) < 1e-5);
    assert.ok(ev.completeness[0].score < 1e-5);
    // ablating one head by hand: z replaced by the per-group mean of the reference prompts
    const one = await knockout(m, p, means, ['1.2']);
    const ref = await m.runWithCache(p.corrupted, { attentionMask: p.attentionMask, namesFilter: ['blocks.1.attn.hook_z'] });
    const held = tf.tidy(() => {
      const zr = ref.cache.get('blocks.1.attn.hook_z');
      const rows = ids.map((t) => tf.mean(tf.stack(ids.flatMap((u, j) => (u === t ? [zr.slice([j], [1]).squeeze([0])] : []))), 0));
      return { mz: tf.stack(rows), sel: tf.tensor4d([0, 0, 1, 0], [1, 1, 4, 1]) };
    });
    const manual = await metricWith(m, p, p.clean, [['blocks.1.attn.hook_z', (z) => tf.add(tf.mul(z, tf.sub(1, held.sel)), tf.mul(held.mz, held.sel))]]);
    tf.dispose([ref.logits, held.mz, held.sel]);
    ref.cache.dispose();
    assert.ok(Math.abs(one - manual) < 1e-5, `${one} vs ${manual}`);
    await assert.rejects(knockout(m, p, means, ['9.9']), /expected a layer in \[0, 3\)/);
    await assert.rejects(knockout(m, p, means, [{ head: '1.0', positions: [[0]] }]), /ablated\[0\]\.positions: expected 3 lists/);
    means.dispose();
    assert.equal(tf.memory().numTensors, before);
    m.dispose();
  });

  it('logitDiffMetric is logit(correct) - logit(wrong) averaged over prompts, per patch', async () => {
    const lg = tf.tensor3d([[[1, 2, 3], [0, 5, 1]], [[3, 2, 1], [1, 1, 1]]]); // [P=2, N=2, V=3]
    const out = logitDiffMetric([2, 1], [0, 2], 3)(lg);
    assert.deepEqual(Array.from(await out.data()), [((3 - 1) + (5 - 1)) / 2, ((1 - 3) + (1 - 1)) / 2]);
    tf.dispose([lg, out]);
  });
});

describe('fidelity: the authors\' computations, ported, on the shipped ioi model', function () {
  this.timeout(300000);
  let m: HookedTransformer;
  let p: PatchingProblem;
  let clean: IOIDataset;
  let corrupted: IOIDataset;
  /** The problem as the ports read it. */
  let base: Record<string, unknown>;
  before(async () => {
    m = await loadModel(IOI_DIR);
    ({ problem: p, clean, corrupted } = ioiTask(m, { n: 8, seed: 3 }));
    base = { model: IOI_DIR, clean: p.clean, corrupted: p.corrupted, mask: p.attentionMask, reads: p.readPositions, io: clean.ioTokens, s: clean.sTokens };
    assert.ok(p.attentionMask.some((r) => r.includes(0)), 'the batch has left padding (templates of different lengths)');
  });
  after(() => m.dispose());

  it('logit difference (Redwood logit_diff), normalised metric (TransformerLens ioi_metric), % change (Wang et al.)', async () => {
    const lg = await m.forward(p.clean, { attentionMask: p.attentionMask });
    const ours = await logitDiff(lg, clean);
    const logits = await lg.array();
    lg.dispose();
    const cl = await runMetric(m, p, 'clean');
    const co = await runMetric(m, p, 'corrupted');
    const patched = [co, (cl + co) / 2, cl, 0.3];
    const port = runPort<{ per_prompt: number[]; mean: number; normalised: number[]; percent: number[] }>('ioi_metrics', {
      logits, ends: p.readPositions, io: clean.ioTokens, s: clean.sTokens, patched, clean: cl, corrupted: co,
    });
    assert.ok(maxDiff(ours.perPrompt, port.per_prompt) < 1e-5);
    assert.ok(Math.abs(ours.mean - port.mean) < 1e-5 && Math.abs(cl - port.mean) < 1e-4, `${ours.mean} ${cl} ${port.mean}`);
    assert.ok(cl > 1 && cl - co > 1, `the model does IOI: clean ${cl}, corrupted ${co}`);
    const pp = await pathPatch(m, p, { senderLayers: [0] });
    assert.ok(maxDiff(patched.map((x) => (x - co) / (cl - co)), port.normalised) < 1e-9);
    assert.ok(maxDiff(patched.map((x) => (100 * (x - cl)) / cl), port.percent) < 1e-9);
    // the path-patching result applies those two definitions to its values
    const portPath = runPort<{ normalised: number[]; percent: number[] }>('ioi_metrics', { logits, ends: p.readPositions, io: clean.ioTokens, s: clean.sTokens, patched: pp.values[0], clean: pp.clean, corrupted: pp.corrupted });
    assert.ok(maxDiff(pp.percentChange[0], portPath.percent) < 1e-9 && maxDiff(pp.normalised[0], portPath.normalised) < 1e-9);
  });

  const acts: [PatchAct, PatchBy][] = [
    ['resid_pre', 'pos'], ['resid_mid', 'pos'], ['attn_out', 'pos'], ['mlp_out', 'pos'], ['z', 'head'], ['z', 'head_pos'],
    ['q', 'head'], ['k', 'head_pos'], ['v', 'head'], ['pattern', 'head'], ['pattern', 'head_pos'],
  ];
  for (const [act, by] of acts) {
    it(`activation patching ${act} by ${by}: patchSweep and patchLoop equal TransformerLens's generic_activation_patch (port)`, async () => {
      const layers = by === 'head_pos' ? [2] : undefined; // one layer (the name movers') for the long per-position sweeps
      const port = runPort<{ values: unknown; clean: number; corrupted: number }>('activation_patching', { ...base, act, by, layers });
      const batched = await patchSweep(m, p, act, by, { maxBatch: 40, layers });
      const loop = await patchLoop(m, p, act, by, { layers });
      assert.ok(Math.abs(batched.clean - port.clean) < 1e-4 && Math.abs(batched.corrupted - port.corrupted) < 1e-4);
      const e1 = maxDiff(batched.values, port.values);
      const e2 = maxDiff(loop.values, port.values);
      assert.ok(e1 < 2e-4 && e2 < 2e-4, `batched ${e1}, loop ${e2}`);
      const v = flat(port.values);
      assert.ok(Math.max(...v) - Math.min(...v) > 0.01, `the sweep is not flat: ${Math.max(...v) - Math.min(...v)}`);
    });
  }

  it('path patching to the logits equals Redwood\'s path_patching: values, % change, normalised', async () => {
    const ends = p.readPositions.map((t) => [t]);
    const port = runPort<{ values: (number | null)[][]; percent: (number | null)[][]; clean: number; corrupted: number }>('path_patching', {
      ...base, positions: ends, receivers: null, receiver_input: 'q', sender_layers: Array.from({ length: m.cfg.n_layers }, (_, l) => l),
    });
    const r = await pathPatch(m, p);
    assert.ok(maxDiff(r.values, port.values) < 2e-4, `values ${maxDiff(r.values, port.values)}`);
    assert.ok(maxDiff(r.percentChange, port.percent) < 5e-3);
    assert.ok(maxDiff(r.normalised, port.values.map((row) => row.map((x) => (x! - port.corrupted) / (port.clean - port.corrupted)))) < 1e-4);
    assert.ok(Math.min(...flat(r.percentChange)) < -5, 'some head carries the behaviour');
    const scores = await pathPatchingScores(m, p);
    assert.deepEqual(scores.scores, r.percentChange);
    assert.deepEqual(scores.extra?.normalised, r.normalised);
  });

  for (const [input, where] of [['q', 'read'], ['k', 'all'], ['v', 'read']] as const) {
    it(`path patching to receivers' ${input} (${where === 'read' ? 'at END' : 'at every position'}) equals Redwood's path_patching`, async () => {
      const receivers: [number, number][] = [[2, 0], [2, 3]];
      const T = p.clean[0].length;
      const positions = where === 'read' ? p.readPositions.map((t) => [t]) : p.clean.map(() => Array.from({ length: T }, (_, t) => t));
      const port = runPort<{ values: (number | null)[][] }>('path_patching', { ...base, positions, receivers, receiver_input: input, sender_layers: [0, 1] });
      const r = await pathPatch(m, p, { receivers: ['2.0', 'L2H3'], receiverInput: input, positions: where });
      const err = maxDiff(r.values, port.values);
      assert.ok(err < 2e-4, `max diff ${err}`);
      assert.ok(flat(r.values).filter(Number.isFinite).some((x) => Math.abs(x - r.clean) > 1e-2), 'some path changes the metric');
    });
  }

  it('attribution patching equals the gradient (finite differences of the float64 port) times (clean - corrupted)', async () => {
    const port = runPort<{ by_pos: number[][][]; clean: number; corrupted: number }>('attribution_patching', base);
    const r = await attributionPatch(m, p);
    const err = maxDiff(r.byPos, port.by_pos);
    const scale = Math.max(...flat(port.by_pos).map(Math.abs));
    assert.ok(err < 1e-3 * scale, `max diff ${err} (scale ${scale})`);
    assert.ok(Math.abs(r.clean - port.clean) < 1e-4 && Math.abs(r.corrupted - port.corrupted) < 1e-4);
    const scores = await attributionScores(m, p);
    assert.ok(maxDiff(scores.scores, r.allPos.map((row) => row.map((x) => x / (r.clean - r.corrupted)))) < 1e-9);
  });

  it('knockouts and faithfulness / completeness / minimality equal Redwood\'s mean ablation (port), heads kept at given positions', async () => {
    const groups = templateGroups(clean);
    assert.deepEqual(templateGroups(corrupted), groups);
    const means = await templateMeans(m, { tokens: p.corrupted, attentionMask: p.attentionMask }, { referenceGroups: groups });
    const end = p.readPositions.map((t) => [t]);
    const s2 = clean.wordIdx.S2.map((t, i) => t + p.clean[0].length - clean.tokens[i].length);
    // nodes as [layer, head, positions per prompt | null = all]; the same circuit for tflens and the port
    const nodes: [number, number, number[][] | null][] = [[2, 0, end], [2, 3, end], [1, 1, s2.map((t) => [t])], [0, 2, null]];
    const circuit: CircuitNode[] = nodes.map(([l, h, pos]) => (pos ? { head: `${l}.${h}`, positions: pos } : `${l}.${h}`));
    const ev = await evaluateCircuit(m, p, means, circuit, { completenessSets: [[], ['2.0', '1.1']], minimalityK: ['0.2'] });
    const single = await knockout(m, p, means, ['1.0', { head: '2.1', positions: end }]);
    const configs = [
      { ablate: [] }, { keep: nodes },
      { keep: nodes }, { ablate: [] },
      { keep: [nodes[1], nodes[3]] }, { ablate: [nodes[0], nodes[2]] },
      { keep: [nodes[0], nodes[1], nodes[2]] },
      { keep: [nodes[1], nodes[2]] }, { keep: [nodes[0], nodes[2]] }, { keep: [nodes[0], nodes[1]] },
      { ablate: [[1, 0, null], [2, 1, end]] },
    ];
    const port = runPort<{ metrics: number[] }>('mean_ablation', { ...base, reference: p.corrupted, ref_groups: groups, groups, configs }).metrics;
    const [c0, c1] = ev.completeness;
    const ours = [ev.full, ev.circuitOnly, c0.circuitMinusK, c0.fullMinusK, c1.circuitMinusK, c1.fullMinusK, single];
    const err = maxDiff(ours, [...port.slice(0, 6), port[10]]);
    assert.ok(err < 2e-4, `max diff ${err}: ${ours} vs ${port}`);
    // minimality: |F(C \ (K u {v})) - F(C \ K)| / F(M), K = {0.2}
    const baseK = port[6];
    const want = [port[7], port[8], port[9]].map((x) => Math.abs(x - baseK) / port[0]);
    assert.deepEqual(ev.minimality.map((x) => x.v), ['2.0', '2.3', '1.1']);
    assert.ok(maxDiff(ev.minimality.map((x) => x.score), want) < 1e-4);
    assert.ok(Math.abs(ev.faithfulness - Math.abs(port[0] - port[1])) < 2e-4);
    assert.ok(Math.abs(port[0] - port[1]) > 0.05, 'ablating outside the circuit changes the metric');
    means.dispose();
  });
});

describe('ground truth: induction-handmade', () => {
  it('head patching and attribution patching rank the constructed heads (circuit.json) first by |effect|', async () => {
    const dir = path.join('fixtures', 'models', 'induction-handmade');
    const truth: string[] = JSON.parse(readFileSync(path.join(dir, 'circuit.json'), 'utf8')).heads;
    const m = await loadModel(dir);
    const p = inductionProblem(m, { n: 8, R: 8, low: 2, seed: 3 });
    const byAbs = (hs: HeadScores) => topHeads(makeHeadScores('abs', hs.scores.map((row) => row.map(Math.abs))), truth.length).sort();
    const hp = await headPatchingScores(m, p);
    assert.deepEqual(byAbs(hp), [...truth].sort());
    assert.deepEqual(byAbs(await attributionScores(m, p)), [...truth].sort());
    // the induction head alone restores the clean metric exactly
    assert.ok(Math.abs(hp.scores[1][0] - 1) < 1e-5);
    m.dispose();
  });
});
