/**
 * The shipped zoo models (fixtures/models/<name>): each model's headline behaviour on FRESH seeded
 * data (seeds differ from the ones in the model cards), checked against bounds stated here; the
 * Bigram-Backcopy measures against an independent port of the authors' code (test/ports/bb_dynamics.py)
 * on the shipped bb model; the task.json step counts and the checkpoint series built from them; and a
 * short training run of each recipe (finite losses, no tensors left behind). Everything runs with
 * synchronous readback forbidden (test/setup.ts).
 */
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FormatError, ValueError } from '../src/errors.js';
import { loadModel, randomModel, type HookedTransformer } from '../src/model/index.js';
import type { BBBatch } from '../src/data/bigram-backcopy.js';
import { ZOO, ZOO_NAMES, zooProbeTokens } from '../src/zoo/registry.js';
import { BB_RECIPE, bbCheckpointSeries, bbEvalBatch, bbMeasures, bbTask, readBBDynamics, trainBB, zooSteps } from '../src/zoo/bb.js';
import { RECALL_BINDING, RECALL_FORMAT, recallAccuracyGrid, recallExample, recallHeadline, recallTrainBatch, trainRecall } from '../src/zoo/recall.js';
import { needleSpan, newlineTokens } from '../src/analyses/retrieval.js';
import { IOI_SPLIT, IOI_VOCAB, ioiEvaluate, ioiSplitDataset, ioiTokenizer, ioiTokenizerAdapter, ioiTrainRows, trainIOI } from '../src/zoo/ioi.js';
import { IOI_CIRCUIT_STUDY, IOI_CLASSES, runIOICircuitStudy } from '../src/circuits/ioi-circuit.js';
import { leftPad } from '../src/circuits/problem.js';
import { NAMES, logitDiff } from '../src/data/ioi.js';
import { bootstrapCI } from '../src/analyses/stats.js';
import { INDUCTION_DESIGN, buildInductionHandmade, inductionEvalBatch, inductionEvaluate } from '../src/zoo/induction-handmade.js';
import { runPort } from './helpers/port.js';
import { bbInitModel } from '../src/zoo/bb.js';
import { BB_EMERGENCE, emergenceCheckpointDir, emergenceSteps, emergenceTokens, readSinkEmergence, sinkCheckpointSeries, sinkPoint, trainSinkEmergence, type EmergenceRun } from '../src/zoo/emergence.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dirOf = (name: keyof typeof ZOO) => path.join(ROOT, ZOO[name].dir);
const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-12, Math.abs(b));

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? await dirBytes(p) : (await fsp.stat(p)).size;
  }
  return n;
}

/** Host values of a computed tensor (async read), then freed. */
async function host<T>(t: tf.Tensor): Promise<T> {
  try {
    return (await t.array()) as T;
  } finally {
    t.dispose();
  }
}

describe('model zoo: induction-handmade', () => {
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('induction-handmade'));
  });
  after(() => model?.dispose());

  it('the shipped checkpoint is the hand-built model (saveModel/loadModel round trip)', async () => {
    const built = buildInductionHandmade();
    const toks = inductionEvalBatch(31, 2, 10).tokens;
    const [a, b] = await Promise.all([built.forward(toks), model.forward(toks)]);
    const d = await host<number>(tf.tidy(() => tf.max(tf.abs(tf.sub(a, b)))));
    tf.dispose([a, b]);
    built.dispose();
    assert.ok(d < 1e-4, `max |logit diff| ${d}`);
    assert.equal(model.cfg.n_layers, 2);
    assert.equal(model.cfg.architecture, 'gpt2');
  });

  it('circuit.json names the previous-token and induction heads; MLPs are zero', async () => {
    const c = JSON.parse(await fsp.readFile(path.join(dirOf('induction-handmade'), 'circuit.json'), 'utf8'));
    assert.deepEqual(c.heads, ['0.0', '1.0']);
    for (const l of [0, 1]) {
      for (const n of ['W_in', 'W_out', 'b_in', 'b_out']) {
        const m = await host<number>(tf.tidy(() => tf.max(tf.abs(model.params[`blocks.${l}.mlp.${n}`]))));
        assert.equal(m, 0, `blocks.${l}.mlp.${n}`);
      }
    }
  });

  it('predicts the repeated half of fresh random sequences (> 90% top-1) with the constructed attention', async () => {
    const data = inductionEvalBatch(90210, 24, 25);
    const before = tf.memory().numTensors;
    const e = await inductionEvaluate(model, data);
    assert.equal(tf.memory().numTensors, before);
    assert.ok(e.accuracy > 0.9, `accuracy ${e.accuracy}`);
    assert.ok(e.prevTokenAttention > 0.9, `prev-token attention ${e.prevTokenAttention}`);
    assert.ok(e.inductionAttention > 0.8, `induction attention ${e.inductionAttention}`);
    // Brute force from the cache: argmax of head 0.0's row i is i - 1; head 1.0's row in the
    // second repeat peaks on the token after the earlier occurrence of the current token.
    const { logits, cache } = await model.runWithCache(data.tokens.slice(0, 3), { namesFilter: ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_pattern'] });
    const [P0, P1] = (await Promise.all([cache.get('blocks.0.attn.hook_pattern').array(), cache.get('blocks.1.attn.hook_pattern').array()])) as number[][][][][];
    logits.dispose();
    cache.dispose();
    const argmax = (r: number[]) => r.indexOf(Math.max(...r));
    for (let b = 0; b < 3; b++) {
      const x = data.tokens[b];
      for (let i = 1; i < x.length; i++) assert.equal(argmax(P0[b][0][i]), i - 1, `prev head row ${i}`);
      for (let i = 1 + 25; i < x.length; i++) {
        const j = x.indexOf(x[i]); // earlier occurrence (blocks are distinct)
        assert.ok(j < i);
        assert.equal(argmax(P1[b][0][i]), j + 1, `induction head row ${i}`);
      }
    }
  });

  it('fails without the previous-token head (K-composition is what makes it work)', async () => {
    const data = inductionEvalBatch(7, 8, 20);
    const keep = tf.tensor([0, 1], [1, 1, 2, 1]);
    const ablated = await model.withHooks([['blocks.0.attn.hook_z', (z: tf.Tensor) => tf.mul(z, keep)]], () => inductionEvaluate(model, data));
    keep.dispose();
    assert.ok(ablated.accuracy < 0.3, `accuracy with head 0.0 zeroed ${ablated.accuracy}`);
  });
});

/** What the port of the authors' measures reads: the model's arrays on the input positions of a BB batch. */
async function bbPortInput(model: HookedTransformer, batch: BBBatch, states: string[]) {
  const L = model.cfg.n_layers;
  const x = batch.tokens.map((r) => r.slice(0, -1));
  const names = [...Array.from({ length: L }, (_, l) => [`blocks.${l}.attn.hook_pattern`, `blocks.${l}.attn.hook_v`]).flat(), ...states];
  const { logits, cache } = await model.runWithCache(x, { namesFilter: names });
  const vals = await Promise.all(names.map((n) => (n.endsWith('hook_v') ? host(tf.transpose(cache.get(n), [0, 2, 1, 3])) : cache.get(n).array())));
  const wo = await Promise.all(Array.from({ length: L }, (_, l) => model.params[`blocks.${l}.attn.W_O`].array()));
  const lg = await host<number[][][]>(logits);
  cache.dispose();
  const task = bbTask();
  return {
    attn: vals.filter((_, i) => i < 2 * L && i % 2 === 0),
    values: vals.filter((_, i) => i < 2 * L && i % 2 === 1),
    wo,
    states: vals.slice(2 * L),
    x,
    idxs: task.triggers,
    // each token's next-token row over the vocabulary: a character's transition row, BOS's first-character distribution
    cond: Array.from({ length: task.dVocab }, (_, v) => {
      const row = v < task.nChars ? task.transition[v] : v === task.bosId ? task.x1Dist : new Array(task.nChars).fill(0);
      return [...row, 0, 0];
    }),
    logits: lg,
  };
}

interface BBPort {
  bos_attn: number[][];
  bos_attn_after_bos: number[][];
  value_norm: number[][];
  value_other: number[][];
  value_out_norm: number[][];
  value_out_other: number[][];
  state_norm: number[];
  state_other: number[];
  risk_trigger: number;
  risk_non_trigger: number;
  oracle_trigger: number;
  oracle_non_trigger: number;
}

describe('model zoo: bb (Bigram-Backcopy)', () => {
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('bb'));
  });
  after(() => model?.dispose());

  it('task.json holds the triggers of the task and the training step counts', async () => {
    const t = JSON.parse(await fsp.readFile(path.join(dirOf('bb'), 'task.json'), 'utf8'));
    assert.deepEqual(t.triggers, bbTask().triggers);
    assert.equal(t.bosId, model.cfg.bos_token_id);
    assert.deepEqual(await zooSteps(dirOf('bb')), { step: BB_RECIPE.steps, steps: BB_RECIPE.steps });
    for (const s of BB_RECIPE.checkpoints) assert.deepEqual(await zooSteps(path.join(dirOf('bb'), 'checkpoints', `step-${s}`)), { step: s, steps: BB_RECIPE.steps });
  });

  it("bbMeasures equals the port of the authors' measures (BBM/probe_utils.py) on the shipped model, defaults and variants", async () => {
    const batch = bbEvalBatch(555, 8);
    const L = model.cfg.n_layers;
    const hidden = [...Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_pre`), 'ln_final.hook_normalized'];
    const post = Array.from({ length: L }, (_, l) => `blocks.${l}.hook_resid_post`);
    const before = tf.memory().numTensors;
    const m = await bbMeasures(model, batch);
    const v = await bbMeasures(model, batch, { sinkQueries: 'after-bos', residual: 'resid-post' });
    assert.equal(tf.memory().numTensors, before);
    const port = runPort<BBPort>('bb_dynamics', await bbPortInput(model, batch, hidden));
    const portPost = runPort<BBPort>('bb_dynamics', await bbPortInput(model, batch, post));
    const close = (a: number, b: number, what: string, tol = 1e-5) => assert.ok(rel(a, b) < tol, `${what}: ${a} vs port ${b}`);
    for (let l = 0; l < L; l++) {
      close(m.layers[l].sinkNonTrigger, port.bos_attn[l][0], `layer ${l} sink (query 0 included)`);
      close(v.layers[l].sinkNonTrigger, port.bos_attn_after_bos[l][0], `layer ${l} sink, variant after-bos`);
      close(m.layers[l].valueNormBos, port.value_norm[l][0], `layer ${l} raw ||v|| at BOS`);
      close(m.layers[l].valueNormOthers, port.value_other[l][0], `layer ${l} raw ||v|| elsewhere`);
      close(m.layers[l].valueOutNormBos, port.value_out_norm[l][0], `layer ${l} ||v W_O|| at BOS`);
      close(m.layers[l].valueOutNormOthers, port.value_out_other[l][0], `layer ${l} ||v W_O|| elsewhere`);
      // query 0 attends only to itself (weight 1), so including it raises the mean by a known amount
      const nAfter = batch.nonTriggerMask.flat().filter((x, i) => x && i % 65 !== 64).length;
      close(m.layers[l].sinkNonTrigger, (v.layers[l].sinkNonTrigger * nAfter + batch.tokens.length) / (nAfter + batch.tokens.length), `layer ${l} sink vs the variant`);
    }
    assert.deepEqual(m.residual.names, hidden);
    assert.deepEqual(v.residual.names, post);
    m.residual.normBos.forEach((x, s) => close(x, port.state_norm[s], `${hidden[s]} at BOS`));
    m.residual.normOthers.forEach((x, s) => close(x, port.state_other[s], `${hidden[s]} elsewhere`));
    v.residual.normBos.forEach((x, s) => close(x, portPost.state_norm[s], `${post[s]} at BOS`));
    v.residual.normOthers.forEach((x, s) => close(x, portPost.state_other[s], `${post[s]} elsewhere`));
    close(m.risk.trigger, port.risk_trigger, 'backcopy risk');
    close(m.risk.nonTrigger, port.risk_non_trigger, 'bigram risk');
    close(m.risk.oracleNonTrigger, port.oracle_non_trigger, 'oracle bigram risk', 1e-9);
    assert.equal(port.oracle_trigger, 0);
    assert.equal(m.risk.oracleTrigger, 0);
    close(m.risk.excessNonTrigger, port.risk_non_trigger - port.oracle_non_trigger, 'excess bigram risk', 1e-4);
  });

  it('trigger / previous-token attention and the sampled excess loss equal a brute-force recomputation', async () => {
    const batch = bbEvalBatch(556, 3);
    const m = await bbMeasures(model, batch);
    const x = batch.tokens.map((r) => r.slice(0, -1));
    const { logits, cache } = await model.runWithCache(x);
    const task = bbTask();
    for (let l = 0; l < model.cfg.n_layers; l++) {
      const A = (await cache.get(`blocks.${l}.attn.hook_pattern`).array()) as number[][][][];
      const acc = { st: 0, nt: 0, pt: 0, pn: 0, nn: 0 };
      x.forEach((row, b) => {
        for (let t = 1; t < row.length; t++) {
          if (task.isTrigger[row[t]]) {
            acc.st += A[b][0][t][0];
            acc.pt += A[b][0][t][t - 1];
            acc.nt++;
          } else {
            acc.pn += A[b][0][t][t - 1];
            acc.nn++;
          }
        }
      });
      assert.ok(rel(m.layers[l].sinkTrigger, acc.st / acc.nt) < 1e-5, `layer ${l} sink on triggers`);
      assert.ok(rel(m.layers[l].prevTrigger, acc.pt / acc.nt) < 1e-5, `layer ${l} prev on triggers`);
      assert.ok(rel(m.layers[l].prevNonTrigger, acc.pn / acc.nn) < 1e-5, `layer ${l} prev on non-triggers`);
    }
    cache.dispose();
    // sampled excess on trigger positions from the logits directly (the oracle loss there is 0)
    const lp = await host<number[][][]>(tf.tidy(() => tf.logSoftmax(logits)));
    logits.dispose();
    let tl = 0;
    let nt = 0;
    x.forEach((row, b) => {
      for (let t = 1; t < row.length; t++) if (task.isTrigger[row[t]]) {
        tl += -lp[b][t][batch.tokens[b][t + 1]];
        nt++;
      }
    });
    assert.ok(rel(m.excess.trigger as number, tl / nt) < 1e-5, `excess trigger ${m.excess.trigger} vs ${tl / nt}`);
    // on triggers the oracle is certain, so the risk and the sampled loss agree
    assert.ok(rel(m.risk.trigger, tl / nt) < 1e-5);
  });

  it('backcopy layer: sink on non-trigger queries, previous token on trigger queries, value drain, residual peak, small excess risk', async () => {
    const before = tf.memory().numTensors;
    const m = await bbMeasures(model, bbEvalBatch(8080, 16));
    assert.equal(tf.memory().numTensors, before);
    const L = m.layers[m.backcopyLayer];
    assert.ok(L.prevTrigger >= BB_BOUNDS.prevTrigger, `attention to the previous token from trigger queries ${L.prevTrigger}`);
    assert.ok(L.sinkNonTrigger >= BB_BOUNDS.sinkNonTrigger, `attention to BOS from non-trigger queries ${L.sinkNonTrigger}`);
    assert.ok(L.sinkTrigger < L.sinkNonTrigger, 'active on triggers: less BOS attention there');
    assert.ok(m.risk.excessTrigger <= BB_BOUNDS.excessTrigger, `excess backcopy risk ${m.risk.excessTrigger}`);
    assert.ok(m.risk.excessNonTrigger <= BB_BOUNDS.excessNonTrigger, `excess bigram risk ${m.risk.excessNonTrigger}`);
    assert.ok(L.valueNormBos < 0.5 * L.valueNormOthers, `value drain: ||v_BOS|| ${L.valueNormBos} vs others ${L.valueNormOthers}`);
    assert.ok(L.valueOutNormBos < 0.5 * L.valueOutNormOthers, `value drain (variant): ||v_BOS W_O|| ${L.valueOutNormBos} vs others ${L.valueOutNormOthers}`);
    // residual-state peak: in some hidden state after layer 0 the BOS residual is larger than the others
    const r = m.residual;
    assert.ok(r.normBos.some((x, s) => s > 0 && x > 1.3 * r.normOthers[s]), `residual peak: ${r.normBos.map((x, s) => `${x.toFixed(1)}/${r.normOthers[s].toFixed(1)}`)}`);
  });

  it('rejects a batch of another task or shape with typed errors', async () => {
    const b = bbEvalBatch(1, 2);
    await assert.rejects(bbMeasures(model, { ...b, tokens: b.tokens.map((r) => [0, ...r.slice(1)]) }), ValueError);
    await assert.rejects(bbMeasures(model, { ...b, triggerMask: [] }), /triggerMask/);
    await assert.rejects(bbMeasures(model, b, { sinkQueries: 'none' as 'all' }), ValueError);
  });

  it('the checkpoint series puts each model at the step its task.json records (the final one at the run length, not 401)', async () => {
    const batch = bbEvalBatch(99, 4);
    const series = await bbCheckpointSeries(dirOf('bb'), batch);
    assert.deepEqual(series.map((p) => [p.step, p.source]), [[100, 'checkpoint'], [400, 'checkpoint'], [1500, 'final']]);
    const direct = await bbMeasures(model, batch);
    assert.deepEqual(series[2].measures, direct);
    // training moves the sink up from step 100 to the end
    assert.ok(series[2].measures.layers[0].sinkNonTrigger > series[0].measures.layers[0].sinkNonTrigger);
  });

  it('zooSteps refuses a task.json without step counts (FormatError naming the file)', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-zoo-'));
    await fsp.writeFile(path.join(dir, 'task.json'), JSON.stringify({ task: 'bigram-backcopy', step: 400 }));
    await assert.rejects(zooSteps(dir), (e: unknown) => e instanceof FormatError && e.message.includes(path.join(dir, 'task.json')) && /steps/.test(e.message));
    await fsp.rm(dir, { recursive: true });
  });

  it('ships dynamics.json (readable, its definitions stated) and at most 3 checkpoints, within 2.6 MB (with the emergence log)', async () => {
    const dyn = await readBBDynamics(dirOf('bb'));
    assert.ok(dyn.points.length >= 5);
    assert.equal(dyn.points[0].step, 0);
    assert.equal(dyn.points[dyn.points.length - 1].step, BB_RECIPE.steps);
    assert.equal(dyn.points[0].layers.length, model.cfg.n_layers);
    assert.equal(typeof dyn.definitions.sinkQueries, 'string');
    const ck = path.join(dirOf('bb'), 'checkpoints');
    assert.ok((await fsp.readdir(ck)).length <= 3);
    assert.ok((await dirBytes(dirOf('bb'))) <= 2.6e6);
  });
});

/** Bounds of the bb test (the trained model's values are in its MODEL_CARD.md). */
const BB_BOUNDS = { prevTrigger: 0.85, sinkNonTrigger: 0.5, excessTrigger: 0.05, excessNonTrigger: 0.05 };

/**
 * Headline numbers of the shipped recall model (its MODEL_CARD.md) that a retrain must keep, with
 * tolerances: accuracy on the trained format, the authors' NIAH decode stopping after the answer, the
 * number of heads above 0.1 (Wu et al.: < 5% of heads), and the masking effect.
 */
/**
 * Pins of the shipped recall model (its MODEL_CARD.md gives the measured values: accuracy 0.997, 18 of 64
 * heads above 0.1, top-18 masked ROUGE 0.000, random-18 masked 0.982). The paper's sparsity (< 5% of
 * heads above 0.1) does not hold on this model; the pin keeps the measured count, so a retrain that
 * changes it fails here.
 */
const RECALL_BOUNDS = { accuracy: 0.95, worstCell: 0.8, niahExact: 0.93, stopRate: 0.95, retrievalHeads: [12, 24] as [number, number], topMaskedMax: 0.5, randomKeptMin: 0.9 };

describe('model zoo: recall (needle retrieval with distractors)', () => {
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('recall'));
  });
  after(() => model?.dispose());

  it('the needle format: the answer after the question, the value in the needle; 3 distractor pairs (on request) with other keys and values', () => {
    const f = RECALL_FORMAT;
    assert.equal(recallExample(64, 0.5, 3).distractors?.length ?? 0, f.distractors);
    const e = recallExample(64, 0.5, 3, 3);
    assert.equal(e.tokens.length, 64);
    assert.equal(e.tokens[0], f.bosId);
    assert.deepEqual(e.tokens.slice(e.valueSpan[0], e.valueSpan[1]), e.answer);
    const question = [...f.questionMarker, ...e.key, ...f.valueMarker];
    assert.deepEqual(e.tokens.slice(-question.length), question);
    const ds = e.distractors!;
    assert.equal(ds.length, 3);
    for (const d of ds) {
      assert.deepEqual(e.tokens.slice(d.span[0], d.span[1]), [...f.keyMarker, ...d.key, ...f.separator, ...f.valueMarker, ...d.value, f.periodToken]);
      assert.notEqual(d.key[0], e.key[0]);
      assert.notEqual(d.value[0], e.answer[0]);
    }
    assert.equal(new Set(ds.map((d) => d.value[0])).size, ds.length);
    assert.equal(e.tokens.filter((t) => f.valueTokens.includes(t)).length, 1 + ds.length, 'values occur only in the pairs');
    // the answer's span (the authors' find_needle_idx) is the needle's value, not a distractor's
    assert.deepEqual(needleSpan(e.tokens, e.answer), { start: e.valueSpan[0], end: e.valueSpan[1] });
  });

  it('training rows: the evaluation prompt first, then one question per distractor pair; the loss reads the answers and stop tokens', () => {
    const f = RECALL_FORMAT;
    const b = recallTrainBatch(4, 77);
    for (let i = Math.round(f.trainInduction * 4); i < 4; i++) {
      const row = [b.x[i][0], ...b.y[i]];
      const scored = b.w[i].flatMap((w, t) => (w ? [t] : []));
      assert.equal(scored.length % 2, 0);
      const qLen = f.questionMarker.length + 1 + f.valueMarker.length;
      const after = (p: number, marker: number[]) => marker.every((t, j) => row[p - marker.length + j] === t);
      for (let j = 0; j < scored.length; j += 2) {
        const [a, s] = [scored[j], scored[j + 1]];
        assert.equal(s, a + 1);
        const key = row[a - f.valueMarker.length];
        assert.deepEqual(row.slice(a - qLen + 1, a + 1), [...f.questionMarker, key, ...f.valueMarker], 'an answer follows a question');
        // the value of this key's sentence in the context ("keyMarker K separator valueMarker V .")
        const at = row.findIndex((t, p) => t === key && after(p, f.keyMarker));
        assert.equal(row[at + 1 + f.separator.length + f.valueMarker.length], b.y[i][a]);
        assert.equal(b.y[i][s], f.stopToken);
      }
    }
  });

  it('induction rows (the binding recipe\'s trainInduction): BOS, random filler, the same again, scored on the second copy after its first token', () => {
    const f = RECALL_FORMAT;
    const saved = Object.fromEntries(Object.keys(RECALL_BINDING.format).map((k) => [k, f[k as keyof typeof f]]));
    Object.assign(f, RECALL_BINDING.format);
    try {
      inductionRowsHold(f);
    } finally {
      Object.assign(f, saved);
    }
  });

  function inductionRowsHold(f: typeof RECALL_FORMAT): void {
    assert.ok(f.trainInduction > 0 && f.trainInduction < 1);
    const b = recallTrainBatch(8, 5);
    const k = Math.round(f.trainInduction * 8);
    const T = b.x[0].length;
    for (let i = 0; i < 8; i++) assert.equal(b.x[i].length, T, 'one length for the batch');
    for (let i = 0; i < k; i++) {
      const seq = [...b.x[i], b.y[i][T - 1]];
      const h = Math.floor((seq.length - 1) / 2);
      assert.equal(seq[0], f.bosId);
      assert.deepEqual(seq.slice(h + 1, 2 * h + 1), seq.slice(1, h + 1), 'the second copy repeats the first');
      for (const t of seq.slice(1)) assert.ok(f.fillerTokens.includes(t));
      const scored = b.w[i].flatMap((w, t) => (w ? [t] : []));
      assert.deepEqual(scored, Array.from({ length: h - 1 }, (_, j) => h + 1 + j));
      for (const t of scored) assert.equal(b.y[i][t], seq[t + 1 - h], 'each scored target is the token h back');
    }
    // the other rows are needle rows: they contain the question marker
    for (let i = k; i < 8; i++) assert.ok(b.x[i].some((t, p) => f.questionMarker.every((m, j) => b.x[i][p + j] === m)));
  }

  it('training rows with trainRepeats 2 ask every pair of the context (needle included) twice, each answer its own value', () => {
    const f = RECALL_FORMAT;
    const saved = { trainRepeats: f.trainRepeats, trainDistractors: f.trainDistractors, trainInduction: f.trainInduction };
    Object.assign(f, { trainRepeats: 2, trainDistractors: [2, 2], trainInduction: 0 });
    try {
      const b = recallTrainBatch(2, 91);
      for (let i = 0; i < 2; i++) {
        const row = [b.x[i][0], ...b.y[i]];
        const scored = b.w[i].flatMap((w, t) => (w ? [t] : []));
        const asked = new Map<number, number>();
        for (let j = 0; j < scored.length; j += 2) {
          const a = scored[j];
          const key = row[a - f.valueMarker.length];
          const at = row.findIndex((t, p) => t === key && f.keyMarker.every((m, k) => row[p - f.keyMarker.length + k] === m));
          assert.equal(b.y[i][a], row[at + 1 + f.separator.length + f.valueMarker.length], 'the answer is the value of the asked key');
          asked.set(key, (asked.get(key) ?? 0) + 1);
        }
        // three pairs (the needle and 2 distractors), each asked twice: the prompt's question plus five more
        assert.deepEqual([...asked.values()], [2, 2, 2]);
      }
    } finally {
      Object.assign(f, saved);
    }
  });

  it(`accuracy >= ${RECALL_BOUNDS.accuracy} on a fresh grid of lengths and depths (the trained format; chance 1/16)`, async () => {
    const before = tf.memory().numTensors;
    const g = await recallAccuracyGrid(model, { n: 12, seed: 4321 });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(g.mean >= RECALL_BOUNDS.accuracy, `mean accuracy ${g.mean}: ${JSON.stringify(g.accuracy)}`);
    assert.ok(g.min >= RECALL_BOUNDS.worstCell, `worst cell ${g.min}`);
  });

  it('the authors\' NIAH protocol: answer then the newline stop; few retrieval heads; masking them collapses retrieval, random heads do not', async () => {
    const before = tf.memory().numTensors;
    const h = await recallHeadline(model, { n: 4, perCell: 3, seed: 31337, randomSets: 2 });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(newlineTokens(model), [RECALL_FORMAT.stopToken]);
    assert.ok(h.niah.meanExact >= RECALL_BOUNDS.niahExact, `NIAH exact match ${h.niah.meanExact}`);
    assert.ok(h.niah.stopRate >= RECALL_BOUNDS.stopRate, `decodes that stop after the answer ${h.niah.stopRate}`);
    const [lo, hi] = RECALL_BOUNDS.retrievalHeads;
    const total = model.cfg.n_layers * model.cfg.n_heads;
    assert.equal(total, 64);
    assert.ok(h.retrieval.heads.length >= lo && h.retrieval.heads.length <= hi, `heads above 0.1: ${JSON.stringify(h.retrieval.heads)}`);
    assert.equal(h.masking.N, Math.max(h.masking.K, 6));
    const randomMean = h.masking.randomMasked.reduce((a, b) => a + b, 0) / h.masking.randomMasked.length;
    assert.ok(h.masking.topMasked <= RECALL_BOUNDS.topMaskedMax * h.masking.unmasked, `top-${h.masking.K} masked ${h.masking.topMasked} vs unmasked ${h.masking.unmasked}`);
    assert.ok(randomMean >= RECALL_BOUNDS.randomKeptMin * h.masking.unmasked, `random-${h.masking.K} masked ${h.masking.randomMasked} vs unmasked ${h.masking.unmasked}`);
    // the random heads lie outside the top N by score
    const rank = h.retrieval.scores.flatMap((r, l) => r.map((sc, hd) => ({ l, hd, sc }))).sort((a, b) => b.sc - a.sc || a.l - b.l || a.hd - b.hd);
    const topN = new Set(rank.slice(0, h.masking.N).map((r) => `${r.l}.${r.hd}`));
    for (const set of h.masking.randomSets) for (const [l, hd] of set) assert.ok(!topN.has(`${l}.${hd}`), `${l}.${hd} is in the top ${h.masking.N}`);
  });
});

describe('model zoo: ioi', function () {
  this.timeout(600000);
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('ioi'));
  });
  after(() => model?.dispose());

  it('word-level tokenizer: every name is one token, punctuation split, held-out split disjoint', () => {
    const tk = model.tokenizer!;
    for (const n of [...IOI_SPLIT.trainNames, ...IOI_SPLIT.heldOutNames]) assert.equal(tk.encode(' ' + n).length, 1, n);
    assert.deepEqual(tk.encode('the store.').map((i) => IOI_VOCAB[i]), ['the', 'store', '.']);
    assert.equal(IOI_SPLIT.heldOutNames.length, 20);
    assert.equal(IOI_SPLIT.heldOutNames.filter((n) => IOI_SPLIT.trainNames.includes(n)).length, 0);
    const ds = ioiSplitDataset(ioiTokenizerAdapter(ioiTokenizer()), 'heldout', 20, 5);
    assert.ok(ds.ioNames.every((n) => IOI_SPLIT.heldOutNames.includes(n)));
    assert.ok(ds.templateIds.every((t) => IOI_SPLIT.heldOutTemplates.includes(t)));
  });

  it('held-out logit difference and accuracy of the shipped weights, with 95% intervals, at the card\'s level', async () => {
    const before = tf.memory().numTensors;
    const e = await ioiEvaluate(model, { split: 'heldout', n: 200, seed: 606 });
    assert.equal(tf.memory().numTensors, before);
    const ds = ioiSplitDataset(ioiTokenizerAdapter(model.tokenizer!), 'heldout', 200, 606);
    const b = leftPad(ds.tokens, 0);
    const lgT = await model.forward(b.ids, { attentionMask: b.attentionMask });
    const ld = (await logitDiff(lgT, ds).finally(() => lgT.dispose())).perPrompt;
    const ci = bootstrapCI(ld, { seed: 0 });
    const acc = bootstrapCI(ld.map((x) => (x > 0 ? 1 : 0)), { seed: 0 });
    assert.ok(Math.abs(ci.estimate - e.meanLogitDiff) < 1e-4, 'ioiEvaluate is the mean logit difference');
    assert.ok(ci.lo > IOI_BOUNDS.heldoutLogitDiffLo && ci.estimate < IOI_BOUNDS.heldoutLogitDiffHi, `held-out logit difference ${ci.estimate} [${ci.lo}, ${ci.hi}]`);
    assert.ok(acc.lo > IOI_BOUNDS.heldoutAccuracyLo, `held-out accuracy ${acc.estimate} [${acc.lo}, ${acc.hi}]`);
    // top-1 by hand: one prompt at a time (no padding), argmax of the last row
    let hits = 0;
    const ds40 = ioiSplitDataset(ioiTokenizerAdapter(model.tokenizer!), 'heldout', 40, 606);
    for (const [i, t] of ds40.tokens.entries()) {
      const row = (await host<number[][][]>(await model.forward([t])))[0];
      const last = row[row.length - 1];
      hits += last.indexOf(Math.max(...last)) === ds40.ioTokens[i] ? 1 : 0;
    }
    const e40 = await ioiEvaluate(model, { split: 'heldout', n: 40, seed: 606 });
    assert.equal(e40.top1, hits / 40);
  });

  it('the shipped weights give the logits of tflens_logits.json (the HF cross-check file)', async () => {
    const log = JSON.parse(await fsp.readFile(path.join(dirOf('ioi'), 'tflens_logits.json'), 'utf8'));
    const lg = await host<number[][][]>(await model.forward(log.tokens));
    const err = Math.max(...lg.flat(2).map((x, i) => Math.abs(x - log.logits.flat(2)[i])));
    assert.ok(err < 1e-3, `tflens_logits.json: max diff ${err}`);
  });

  it('circuit.json: the paper\'s experiments find the same classes on the shipped weights, and the circuit keeps its faithfulness', async () => {
    const rec = JSON.parse(await fsp.readFile(path.join(dirOf('ioi'), 'circuit.json'), 'utf8'));
    const before = tf.memory().numTensors;
    const study = await runIOICircuitStudy(model, IOI_CIRCUIT_STUDY);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(study.search.classes, rec.classes, 'the classes of circuit.json');
    for (const [c, heads] of Object.entries(IOI_EXPECTED_CLASSES)) assert.deepEqual(study.search.classes[c as keyof typeof IOI_EXPECTED_CLASSES], heads, c);
    const ev = study.evaluation!;
    assert.ok(Math.abs(ev.faithfulnessRatio.estimate - rec.evaluation.faithfulnessRatio.estimate) < 1e-3, `F(C)/F(M) ${ev.faithfulnessRatio.estimate} vs circuit.json ${rec.evaluation.faithfulnessRatio.estimate}`);
    assert.ok(ev.faithfulnessRatio.lo > IOI_BOUNDS.faithfulnessRatioLo, `F(C)/F(M) ${JSON.stringify(ev.faithfulnessRatio)}`);
    assert.deepEqual(rec.heads, IOI_CLASSES.flatMap((c) => rec.classes[c]));
  });
});

/**
 * Pins of the shipped ioi model (its MODEL_CARD.md and circuit.json give the measured values): a
 * retrain that loses the behaviour or the circuit fails here.
 */
const IOI_BOUNDS = { heldoutLogitDiffLo: 1.5, heldoutLogitDiffHi: 20, heldoutAccuracyLo: 0.75, faithfulnessRatioLo: 0.75 };
/** The classes found on the shipped weights (circuit.json). */
const IOI_EXPECTED_CLASSES: Partial<Record<(typeof IOI_CLASSES)[number], string[]>> = {
  'name mover': ['0.2'],
  'backup name mover': ['0.3'],
  'S-inhibition': ['2.3', '2.1', '2.0'],
  induction: [],
  'duplicate token': [],
  'previous token': [],
};

describe('model zoo: registry and task.json', () => {
  it('every shipped folder has a model card and a task.json with the training step counts', async () => {
    for (const name of ZOO_NAMES) {
      const dir = dirOf(name);
      assert.ok(existsSync(path.join(dir, 'MODEL_CARD.md')), `${name}: MODEL_CARD.md`);
      const { step, steps } = await zooSteps(dir);
      assert.equal(step, steps, `${name}: the shipped weights are the end of the run`);
      const task = JSON.parse(await fsp.readFile(path.join(dir, 'task.json'), 'utf8'));
      assert.equal(task.task, ZOO[name].task().task, `${name}: task`);
      if (name !== 'induction-handmade') {
        const log = JSON.parse(await fsp.readFile(path.join(dir, 'train_log.json'), 'utf8'));
        assert.equal(steps, log.steps[log.steps.length - 1], `${name}: steps = the last step of train_log.json`);
      } else assert.equal(steps, 0, 'built, not trained');
      const m = await loadModel(dir);
      const built = randomModel(ZOO[name].config(), { seed: 0 });
      assert.deepEqual(built.cfg, m.cfg, `${name}: the recipe's config is the shipped model's`);
      built.dispose();
      const toks = zooProbeTokens(name);
      assert.ok(toks.every((r) => r.every((t) => t >= 0 && t < m.cfg.d_vocab)), `${name}: probe tokens in the vocabulary`);
      m.dispose();
    }
  });
});

describe('model zoo: short training runs (wasm-friendly sizes)', () => {
  it('bb: a few steps, finite decreasing loss, measures recorded, no tensors left', async () => {
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const t = await trainBB({ steps: 6, batch: 4, evalEvery: 3, evalBatch: 2, onMeasures: (s) => seen.push(s), finalEval: false, seed: 5 });
    assert.ok(t.result.loss.every(Number.isFinite));
    assert.ok(t.result.loss[t.result.loss.length - 1] < t.result.loss[0], `loss ${t.result.loss}`);
    assert.deepEqual(seen, [0, 3, 6]);
    assert.deepEqual(t.result.evals.map((e) => Object.keys(e.values)), [0, 1].map(() => ['excessTrigger', 'excessNonTrigger', 'sink', 'prevTrigger']));
    t.model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('bb: the first two losses of the shipped recipe reproduce train_log.json', async () => {
    // same seed, batches and schedule as the shipped run; stopped after two updates
    const log = JSON.parse(await fsp.readFile(path.join(dirOf('bb'), 'train_log.json'), 'utf8'));
    const ac = new AbortController();
    const t = await trainBB({ finalEval: false, evalEvery: 1e9, signal: ac.signal, onEval: () => undefined, checkpointSteps: [2], onCheckpoint: () => ac.abort() });
    assert.equal(t.result.completed, 2);
    // the log was written on wasm; WebGPU sums the same float32 terms in another order (1.4e-6 apart on lavapipe)
    assert.ok(Math.abs(t.result.loss[0] - log.loss[0]) < 4e-6, `step 1: ${t.result.loss[0]} vs ${log.loss[0]}`);
    assert.ok(Math.abs(t.result.loss[1] - log.loss[1]) < 1e-4, `step 2: ${t.result.loss[1]} vs ${log.loss[1]}`);
    assert.ok(Math.abs(t.result.gradNorm[0] - log.gradNorm[0]) < 1e-5);
    t.model.dispose();
  });

  it('recall: a few steps, finite loss, no tensors left', async () => {
    const before = tf.memory().numTensors;
    const t = await trainRecall({ steps: 3, batch: 4, evalEvery: 100, finalEval: false, seed: 5 });
    assert.equal(t.result.completed, 3);
    assert.ok(t.result.loss.every(Number.isFinite));
    t.model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('ioi training rows: a random unscored prefix of non-name words after BOS (prefixMax), none at 0', () => {
    const prompts = [{ tokens: [0, 10, 11, 12, 13], io: 14 }, { tokens: [0, 20, 21, 22], io: 23 }];
    const plain = ioiTrainRows(prompts, { maxLen: 40, ioWeight: 10, prefixMax: 0, seed: 1 });
    assert.deepEqual(plain.x[0], [0, 10, 11, 12, 13]);
    assert.deepEqual(plain.y[0], [10, 11, 12, 13, 14]);
    assert.deepEqual(plain.w[0], [1, 1, 1, 1, 10]);
    assert.deepEqual(plain.w[1], [1, 1, 1, 10, 0], 'padding weighs 0');
    const lengths = new Set<number>();
    const names = new Set(NAMES.map((n) => IOI_VOCAB.indexOf(n)));
    for (let seed = 0; seed < 40; seed++) {
      const b = ioiTrainRows(prompts, { maxLen: 40, ioWeight: 10, prefixMax: 6, seed });
      const p = b.w[0].findIndex((w) => w > 0); // prefix length of row 0
      lengths.add(p);
      assert.ok(p >= 0 && p <= 6);
      const prefix = b.x[0].slice(1, 1 + p);
      for (const t of prefix) assert.ok(t > 1 && !names.has(t), `prefix token ${IOI_VOCAB[t]}`);
      assert.deepEqual(b.x[0].slice(1 + p, 5 + p), [10, 11, 12, 13]);
      assert.deepEqual(b.y[0].slice(p, 5 + p), [10, 11, 12, 13, 14]);
      const pad = b.w[0].length - (p + 5);
      assert.deepEqual(b.w[0], [...new Array(p).fill(0), 1, 1, 1, 1, 10, ...new Array(pad).fill(0)], 'prefix targets weigh 0, the sentence 1, IO ioWeight');
    }
    assert.equal(lengths.size, 7, `prefix lengths seen: ${[...lengths]}`);
  });

  it('ioi: a few steps, finite loss, name embeddings stay fixed, no tensors left', async () => {
    const before = tf.memory().numTensors;
    const t = await trainIOI({ steps: 3, batch: 8, evalEvery: 100, finalEval: false, seed: 5 });
    assert.ok(t.result.loss.every(Number.isFinite));
    // tied unembedding = embedding
    const d = await host<number>(tf.tidy(() => tf.max(tf.abs(tf.sub(t.model.params['unembed.W_U'], tf.transpose(t.model.params['embed.W_E']))))));
    assert.equal(d, 0);
    const t2 = await trainIOI({ steps: 1, batch: 8, evalEvery: 100, finalEval: false, seed: 5 });
    const nameId = IOI_VOCAB.indexOf('Mary');
    const otherId = IOI_VOCAB.indexOf('store');
    const row = (m: HookedTransformer, i: number) => host<number[][]>(m.params['embed.W_E'].slice([i, 0], [1, -1]));
    assert.deepEqual(await row(t.model, nameId), await row(t2.model, nameId), 'name rows are fixed');
    assert.notDeepEqual(await row(t.model, otherId), await row(t2.model, otherId), 'other rows train');
    t.model.dispose();
    t2.model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('model zoo: size budget', () => {
  it('fixtures/models stays within its budget', async () => {
    // bb: the model, 2 checkpoints, dynamics.json and the emergence log with its F16 checkpoint (0.33 MB)
    const budget: Record<string, number> = { bb: 2.6e6, recall: 1e6, ioi: 1e6, 'induction-handmade': 0.3e6, 'var-group': 1e6 };
    let total = 0;
    for (const [name, max] of Object.entries(budget)) {
      const n = await dirBytes(path.join(ROOT, 'fixtures/models', name));
      total += n;
      assert.ok(n <= max, `${name}: ${n} bytes > ${max}`);
    }
    assert.ok(total <= 6e6, `total ${total}`);
    assert.equal(INDUCTION_DESIGN.vocab, 32);
  });
});

describe('model zoo: attention-sink emergence on bb (Gu et al.)', () => {
  /**
   * What the shipped emergence.json must show (Sink_1 in percent, final = step 600): the recipe's own
   * ratio grows a sink on one layer in three; the largest ratio keeps it below eps; in between the final
   * Sink_1 falls with the ratio (a later ratio may exceed an earlier one by at most `slack` points).
   */
  const PINS = { recipeFinalMin: 30, emergedBy: { step: 300, min: 25 }, largestFinalMax: 10, slack: 4, minDrop: 20 };
  const logFile = () => path.join(dirOf('bb'), 'emergence.json');
  const tokens = emergenceTokens();

  /** Sink_1^eps and alpha_1 per layer computed here in plain JS from the cached patterns (independent of sinkRates). */
  async function sinkByHand(m: HookedTransformer, eps: number): Promise<{ sink1: number; alpha1: number[] }> {
    const names = Array.from({ length: m.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern` as const);
    const { logits, cache } = await m.runWithCache(tokens, { namesFilter: names });
    logits.dispose();
    const pats = (await Promise.all(names.map((n) => cache.get(n).array()))) as number[][][][][];
    cache.dispose();
    let hits = 0;
    let count = 0;
    const alpha1 = pats.map((layer) => {
      let sum = 0;
      for (const prompt of layer) {
        for (const head of prompt) {
          const a = head.reduce((s, row) => s + row[0], 0) / head.length; // every query sees key 0
          hits += a > eps ? 1 : 0;
          count++;
          sum += a;
        }
      }
      return sum / (layer.length * layer[0].length);
    });
    return { sink1: (100 * hits) / count, alpha1 };
  }

  it('the shipped checkpoints: Sink_1 rises from about 5% at step 100 to one layer in three (33%) at the end, with the layer-0 sink', async () => {
    const before = tf.memory().numTensors;
    const series = await sinkCheckpointSeries(dirOf('bb'), tokens);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(series.map((p) => p.step), [...BB_RECIPE.checkpoints, BB_RECIPE.steps]);
    const [s100, s400, final] = series.map((p) => p.value);
    assert.ok(s100.sink1 <= 15, `step 100: ${s100.sink1}%`);
    assert.ok(s400.sink1 >= 25 && s400.sink1 <= 34, `step 400: ${s400.sink1}%`);
    assert.ok(final.sink1 >= 30 && final.sink1 <= 34, `final: ${final.sink1}%`);
    assert.ok(final.alpha1[0] > 0.45 && s400.alpha1[0] > s100.alpha1[0], `layer-0 alpha_1 ${series.map((p) => p.value.alpha1[0])}`);
    assert.ok(final.alpha1[1] < 0.3 && final.alpha1[2] < 0.3, `layers 1-2 stay below eps: ${final.alpha1}`);
    const shipped = await loadModel(dirOf('bb'));
    const byHand = await sinkByHand(shipped, BB_EMERGENCE.eps);
    shipped.dispose();
    assert.ok(Math.abs(byHand.sink1 - final.sink1) < 1e-9);
    byHand.alpha1.forEach((a, l) => assert.ok(Math.abs(a - final.alpha1[l]) < 1e-5, `layer ${l}: ${a} vs ${final.alpha1[l]}`));
  });

  it('emergence.json: every run starts at the seeded init; the recipe\'s own ratio grows the sink, the largest ratio does not', async () => {
    const log = await readSinkEmergence(logFile());
    assert.equal(log.factor, BB_EMERGENCE.factor);
    assert.deepEqual(log.runs.map((r) => r.value), BB_EMERGENCE.values);
    const init = bbInitModel(BB_EMERGENCE.seed);
    const p0 = await sinkPoint(init, tokens, BB_EMERGENCE.eps);
    init.dispose();
    for (const r of log.runs) {
      assert.deepEqual(r.points.map((p) => p.step), emergenceSteps(BB_EMERGENCE.steps));
      assert.equal(r.points[0].sink1, p0.sink1);
      r.points[0].alpha1.forEach((a, l) => assert.ok(Math.abs(a - p0.alpha1[l]) < 1e-6, `run ${r.value}, step 0, layer ${l}: ${a} vs ${p0.alpha1[l]}`));
      assert.ok(Number.isFinite(r.final.trainLoss) && r.final.excessTrigger < 0.15, `${log.factor} ${r.value}: the backcopy is learned (${JSON.stringify(r.final)})`);
    }
    const recipe = log.runs[0];
    const end = (r: EmergenceRun) => r.points[r.points.length - 1].sink1;
    assert.ok(end(recipe) >= PINS.recipeFinalMin, `recipe ratio: final Sink_1 ${end(recipe)}%`);
    const at = recipe.points.find((p) => p.step === PINS.emergedBy.step)!;
    assert.ok(at.sink1 >= PINS.emergedBy.min, `recipe ratio: Sink_1 ${at.sink1}% at step ${at.step}`);
    assert.ok(end(log.runs[log.runs.length - 1]) <= PINS.largestFinalMax, `largest ratio: final Sink_1 ${end(log.runs[log.runs.length - 1])}%`);
  });

  it('emergence.json: the final Sink_1 falls as the weight decay grows (the paper\'s collapse at large ratios), pinned with tolerances', async () => {
    const log = await readSinkEmergence(logFile());
    const finals = log.runs.map((r) => r.points[r.points.length - 1].sink1);
    finals.slice(1).forEach((f, i) => assert.ok(f <= finals[i] + PINS.slack, `${log.factor} ${log.runs[i + 1].value}: ${f}% after ${finals[i]}%`));
    assert.ok(finals[0] - finals[finals.length - 1] >= PINS.minDrop, `final Sink_1 ${finals.join(', ')}`);
  });

  it('the shipped F16 checkpoint gives its logged point again (sinkPoint and a plain-JS count)', async () => {
    const log = await readSinkEmergence(logFile());
    assert.ok(log.checkpoints.length >= 1);
    for (const c of log.checkpoints) {
      const dir = emergenceCheckpointDir(logFile(), c);
      assert.deepEqual(await zooSteps(dir), { step: c.step, steps: BB_EMERGENCE.steps });
      const m = await loadModel(dir);
      const again = await sinkPoint(m, tokens, BB_EMERGENCE.eps);
      const byHand = await sinkByHand(m, BB_EMERGENCE.eps);
      m.dispose();
      const logged = log.runs.find((r) => r.value === c.value)!.points.find((p) => p.step === c.step)!;
      assert.ok(Math.abs(again.sink1 - logged.sink1) <= 1, `Sink_1 ${again.sink1}% vs logged ${logged.sink1}% (F16 rounding may flip one prompt)`);
      again.alpha1.forEach((a, l) => assert.ok(Math.abs(a - logged.alpha1[l]) < 2e-3, `layer ${l}: alpha_1 ${a} vs logged ${logged.alpha1[l]}`));
      assert.ok(Math.abs(byHand.sink1 - again.sink1) < 1e-9);
      byHand.alpha1.forEach((a, l) => assert.ok(Math.abs(a - again.alpha1[l]) < 1e-5));
    }
  });

  it('the recipe reproduces the log by seed: the first 10 steps of the largest ratio give its logged step-10 point', async () => {
    const log = await readSinkEmergence(logFile());
    const v = BB_EMERGENCE.values[BB_EMERGENCE.values.length - 1];
    const ac = new AbortController();
    const seen: Array<{ step: number; alpha1: number[] }> = [];
    const before = tf.memory().numTensors;
    const { model } = await trainSinkEmergence({ value: v, tokens, at: [10], signal: ac.signal, onPoint: (p) => { seen.push(p); ac.abort(); } });
    model.dispose();
    assert.equal(tf.memory().numTensors, before);
    const logged = log.runs.find((r) => r.value === v)!.points.find((p) => p.step === 10)!;
    assert.equal(seen.length, 1);
    seen[0].alpha1.forEach((a, l) => assert.ok(Math.abs(a - logged.alpha1[l]) < 1e-5, `layer ${l}: ${a} vs logged ${logged.alpha1[l]}`));
  });
});
