/**
 * The IOI circuit search (src/circuits/ioi-circuit.ts) on the shipped ioi model: the copy score against
 * a numpy port of the authors' check_copy_circuit, the attention table against the float64 forward's
 * patterns, path patching with knocked-out heads against its definition (no knockout = pathPatch; a
 * knocked-out head sends nothing; the baseline equals knockout()), the per-prompt evaluation against
 * evaluateCircuit on the whole batch, rules and errors, and no tensors left behind.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { evaluateCircuit, knockout, pathPatch } from '../src/circuits/index.js';
import {
  IOI_ATTENTION_KEYS, IOI_ATTENTION_QUERIES, IOI_CLASSES, evaluateIOICircuit, findIOICircuit, ioiAblationMeans, ioiAttention, ioiCircuitData,
  ioiCircuitNodes, ioiCircuitRecord, ioiCopyScores, ioiThreshold, pathPatchKnockedOut, type IOIClass,
} from '../src/circuits/ioi-circuit.js';
import { runPort } from './helpers/port.js';

const IOI_DIR = path.resolve('fixtures', 'models', 'ioi');
const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.flatMap((r, i) => r.map((x, j) => Math.abs(x - b[i][j]))));

/** A circuit of valid heads for any model with >= 3 layers and >= 3 heads (the evaluation tests need one, not the found one). */
const SOME_CLASSES = (): Record<IOIClass, string[]> => ({
  ...(Object.fromEntries(IOI_CLASSES.map((c) => [c, []])) as unknown as Record<IOIClass, string[]>),
  'name mover': ['2.1', '2.0'],
  'S-inhibition': ['1.0'],
  induction: ['1.2'],
  'previous token': ['0.1'],
});

describe('IOI circuit search: the authors\' measurements, ported', function () {
  this.timeout(600000);
  let m: HookedTransformer;
  let data: ReturnType<typeof ioiCircuitData>;
  before(async () => {
    m = await loadModel(IOI_DIR);
    data = ioiCircuitData(m, { n: 8, seed: 3 });
  });
  after(() => m?.dispose());

  it('copy scores (+OV and -OV, top 5) equal the port of check_copy_circuit', async () => {
    const before = tf.memory().numTensors;
    const ours = await ioiCopyScores(m, data);
    assert.equal(tf.memory().numTensors, before);
    const positions = Object.fromEntries((['IO', 'S', 'S2'] as const).map((w) => [w, data.at(w)]));
    const port = runPort<{ positive: number[][]; negative: number[][] }>('ioi_copy_score', {
      model: IOI_DIR, tokens: data.problem.clean, mask: data.problem.attentionMask, positions, io: data.clean.ioTokens, s: data.clean.sTokens, k: 5,
    });
    // a name at rank 5 or 6 with nearly equal logits may swap between float32 and float64: one pair of 24 at most
    const one = 1 / (3 * data.clean.ioTokens.length) + 1e-9;
    assert.ok(maxDiff(ours.positive, port.positive) <= one, `positive ${maxDiff(ours.positive, port.positive)}`);
    assert.ok(maxDiff(ours.negative, port.negative) <= one, `negative ${maxDiff(ours.negative, port.negative)}`);
    const flat = [...ours.positive.flat(), ...ours.negative.flat()];
    assert.ok(Math.max(...flat) - Math.min(...flat) > 0.3, 'the scores separate heads');
    await assert.rejects(ioiCopyScores(m, data, { k: 0 }), /ioiCopyScores k: expected an integer in \[1, /);
  });

  it('attention between the IOI words equals the float64 forward\'s patterns', async () => {
    const ours = await ioiAttention(m, data);
    const words = [...new Set([...IOI_ATTENTION_QUERIES, ...IOI_ATTENTION_KEYS])];
    const port = runPort<Record<string, Record<string, number[][]>>>('ioi_attention', {
      model: IOI_DIR, tokens: data.problem.clean, mask: data.problem.attentionMask,
      positions: Object.fromEntries(words.map((w) => [w, data.at(w)])), queries: IOI_ATTENTION_QUERIES, keys: IOI_ATTENTION_KEYS,
    });
    for (const q of IOI_ATTENTION_QUERIES) for (const k of IOI_ATTENTION_KEYS) assert.ok(maxDiff(ours[q][k], port[q][k]) < 1e-5, `${q}->${k}`);
    // END attends to nothing after it; each query row sums to at most 1 over these words
    for (let l = 0; l < m.cfg.n_layers; l++) for (let h = 0; h < m.cfg.n_heads; h++) {
      const s = IOI_ATTENTION_KEYS.filter((k) => k !== 'end').reduce((a, k) => a + ours.end[k][l][h], 0) + ours.end.end[l][h];
      assert.ok(s <= 1 + 1e-5, `END row of ${l}.${h} sums to ${s}`);
    }
  });

  it('path patching with heads knocked out: none = pathPatch, a knocked-out head sends nothing, the baseline is knockout()', async () => {
    const p = data.problem;
    const means = await ioiAblationMeans(m, data);
    try {
      const before = tf.memory().numTensors;
      const plain = await pathPatch(m, p);
      const none = await pathPatchKnockedOut(m, p, means, []);
      assert.ok(maxDiff(plain.values, none.values) < 1e-5 && Math.abs(plain.clean - none.clean) < 1e-5);
      const ko = await pathPatchKnockedOut(m, p, means, ['2.1', [2, 3]]);
      assert.equal(tf.memory().numTensors, before);
      assert.ok(Math.abs(ko.clean - (await knockout(m, p, means, ['2.1', '2.3']))) < 1e-4, 'the knocked-out clean run is a mean ablation');
      for (const h of [1, 3]) assert.ok(Math.abs(ko.values[2][h] - ko.clean) < 1e-4, `knocked-out 2.${h} sends nothing`);
      assert.ok(Math.abs(ko.clean - plain.clean) > 0.05, 'the knockout changes the logit difference');
      await assert.rejects(pathPatchKnockedOut(m, p, means, ['7.0']), /knocked\[0\]/);
    } finally {
      means.dispose();
    }
  });

  it('the evaluation per prompt averages to evaluateCircuit on the whole batch; intervals contain the estimates', async () => {
    const classes = SOME_CLASSES();
    const before = tf.memory().numTensors;
    const ev = await evaluateIOICircuit(m, data, classes, { bootstrap: { n: 200, seed: 1 } });
    assert.equal(tf.memory().numTensors, before);
    const means = await ioiAblationMeans(m, data);
    try {
      const nodes = ioiCircuitNodes(data, classes);
      const whole = await evaluateCircuit(m, data.problem, means, nodes, { completenessSets: [[], ['2.1', '2.0']], minimalityK: ['2.0'] });
      assert.ok(Math.abs(ev.full.estimate - whole.full) < 1e-4 && Math.abs(ev.circuit.estimate - whole.circuitOnly) < 1e-4, `${ev.full.estimate} ${whole.full}; ${ev.circuit.estimate} ${whole.circuitOnly}`);
      assert.ok(Math.abs(ev.faithfulnessRatio.estimate - whole.faithfulnessRatio) < 1e-4);
      const nm = ev.completeness.find((c) => c.K === 'name mover')!;
      assert.ok(Math.abs(nm.score.estimate - whole.completeness[1].score) < 1e-4, 'completeness of K = the name movers');
      const v = ev.minimality.find((x) => x.head === '2.1')!;
      assert.deepEqual(v.K, ['2.0']);
      assert.ok(Math.abs(v.score.estimate - whole.minimality.find((x) => x.v === '2.1')!.score) < 1e-4, 'minimality of 2.1 with K = {2.0}');
    } finally {
      means.dispose();
    }
    for (const c of [ev.full, ev.circuit, ev.faithfulness, ev.faithfulnessRatio, ...ev.completeness.map((x) => x.score), ...ev.minimality.map((x) => x.score)]) {
      assert.ok(c.lo <= c.estimate + 1e-9 && c.estimate <= c.hi + 1e-9, JSON.stringify(c));
    }
    assert.deepEqual(ev.completeness.map((c) => c.K), ['empty', 'name mover', 'S-inhibition', 'induction', 'previous token', 'all name-mover classes']);
    assert.equal(ev.minimality.length, 5);
    await assert.rejects(evaluateIOICircuit(m, data, Object.fromEntries(IOI_CLASSES.map((c) => [c, []])) as unknown as Record<IOIClass, string[]>), /at least one circuit head/);
  });

  it('the search applies its rules: every head passes its experiment\'s threshold and attention rule; the record lists them', async () => {
    const before = tf.memory().numTensors;
    const s = await findIOICircuit(m, data);
    assert.equal(tf.memory().numTensors, before);
    const d = s.experiments.direct.percentChange;
    const thr = ioiThreshold(d, s.rules.relThreshold, s.rules.minPercent);
    for (const h of s.classes['name mover']) {
      const [l, hd] = h.split('.').map(Number);
      assert.ok(d[l][hd] <= -thr, h);
      assert.ok(s.attention.end.IO[l][hd] > s.attention.end.S[l][hd] + s.attention.end.S2[l][hd], h);
    }
    const all = IOI_CLASSES.flatMap((c) => s.classes[c]);
    assert.equal(new Set(all).size, all.length, 'one class per head');
    assert.deepEqual(s.notFound, IOI_CLASSES.filter((c) => !s.classes[c].length));
    const rec = ioiCircuitRecord('ioi', { options: { discovery: { n: 8, seed: 3 }, evaluation: { n: 8, seed: 4 } }, search: s, evaluation: null }) as { heads: string[]; roles: Record<string, string> };
    assert.deepEqual(rec.heads, all);
    for (const h of all) assert.equal(rec.roles[h], s.evidence[h].class);
    assert.equal(ioiThreshold([[1, -4, NaN]], 0.5, 1), 2);
    assert.equal(ioiThreshold([[1, -4, NaN]], 0.5, 3), 3);
    await assert.rejects(findIOICircuit(m, data, { rules: { relThreshold: 2 } }), /rules.relThreshold: expected a number in \[0, 1\]/);
  });
});
