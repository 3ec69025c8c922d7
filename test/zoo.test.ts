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
import { RECALL_FORMAT, recallAccuracyGrid, recallExample, trainRecall } from '../src/zoo/recall.js';
import { IOI_SPLIT, IOI_VOCAB, ioiEvaluate, ioiSplitDataset, ioiTokenizer, ioiTokenizerAdapter, trainIOI } from '../src/zoo/ioi.js';
import { INDUCTION_DESIGN, buildInductionHandmade, inductionEvalBatch, inductionEvaluate } from '../src/zoo/induction-handmade.js';
import { runPort } from './helpers/port.js';

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

  it('ships dynamics.json (readable, its definitions stated) and at most 3 checkpoints, within 2.5 MB', async () => {
    const dyn = await readBBDynamics(dirOf('bb'));
    assert.ok(dyn.points.length >= 5);
    assert.equal(dyn.points[0].step, 0);
    assert.equal(dyn.points[dyn.points.length - 1].step, BB_RECIPE.steps);
    assert.equal(dyn.points[0].layers.length, model.cfg.n_layers);
    assert.equal(typeof dyn.definitions.sinkQueries, 'string');
    const ck = path.join(dirOf('bb'), 'checkpoints');
    assert.ok((await fsp.readdir(ck)).length <= 3);
    assert.ok((await dirBytes(dirOf('bb'))) <= 2.5e6);
  });
});

/** Bounds of the bb test (the trained model's values are in its MODEL_CARD.md). */
const BB_BOUNDS = { prevTrigger: 0.85, sinkNonTrigger: 0.5, excessTrigger: 0.05, excessNonTrigger: 0.05 };

describe('model zoo: recall (needle retrieval)', () => {
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('recall'));
  });
  after(() => model?.dispose());

  it('the needle format puts the answer after the question and the value in the needle', () => {
    const e = recallExample(64, 0.5, 3);
    assert.equal(e.tokens.length, 64);
    assert.equal(e.tokens[0], RECALL_FORMAT.bosId);
    assert.deepEqual(e.tokens.slice(e.valueSpan[0], e.valueSpan[1]), e.answer);
    assert.ok(RECALL_FORMAT.valueTokens.includes(e.answer[0]));
    assert.equal(e.tokens.filter((t) => RECALL_FORMAT.valueTokens.includes(t)).length, 1);
  });

  it('accuracy > 0.9 on a fresh grid of lengths and depths', async () => {
    const before = tf.memory().numTensors;
    const g = await recallAccuracyGrid(model, { lengths: [64, 128], depths: [0, 0.5, 1], n: 10, seed: 4321 });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(g.mean > 0.9, `mean accuracy ${g.mean}: ${JSON.stringify(g.accuracy)}`);
    assert.ok(g.min >= 0.7, `worst cell ${g.min}`);
  });

  it('a few retrieval heads do the copying: masking the top-3 by attention to the value hurts, the bottom-3 does not', async () => {
    const { n_layers: L, n_heads: H } = model.cfg;
    const ex = Array.from({ length: 12 }, (_, i) => recallExample(96, (i + 0.5) / 12, 6000 + i));
    const { logits, cache } = await model.runWithCache(ex.map((e) => e.tokens), { namesFilter: (n) => n.endsWith('hook_pattern') });
    const score: Array<[number, number, number]> = [];
    for (let l = 0; l < L; l++) {
      const A = (await cache.get(`blocks.${l}.attn.hook_pattern`).array()) as number[][][][];
      for (let h = 0; h < H; h++) score.push([l, h, ex.reduce((s, e, b) => s + A[b][h][95][e.valueSpan[0]], 0) / ex.length]);
    }
    logits.dispose();
    cache.dispose();
    score.sort((a, b) => b[2] - a[2]);
    assert.ok(score[0][2] > 0.8, `top head attention to the value ${score[0][2]}`);
    const masked = async (heads: Array<[number, number, number]>) => {
      const keep = Array.from({ length: L }, (_, l) => {
        const k = new Array(H).fill(1);
        heads.filter((x) => x[0] === l).forEach((x) => (k[x[1]] = 0));
        return tf.tensor(k, [1, 1, H, 1]);
      });
      const hooks = keep.map((k, l) => [`blocks.${l}.attn.hook_z`, (z: tf.Tensor) => tf.mul(z, k)] as [`blocks.${number}.attn.hook_z`, (z: tf.Tensor) => tf.Tensor]);
      try {
        return (await model.withHooks(hooks, () => recallAccuracyGrid(model, { lengths: [64, 128], depths: [0.2, 0.8], n: 16, seed: 777 }))).mean;
      } finally {
        tf.dispose(keep);
      }
    };
    const top = await masked(score.slice(0, 3));
    const bottom = await masked(score.slice(-3));
    assert.ok(top < 0.7, `accuracy with the top-3 retrieval heads masked ${top}`);
    assert.ok(bottom > 0.9, `accuracy with the bottom-3 heads masked ${bottom}`);
  });
});

describe('model zoo: ioi', () => {
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

  it('positive logit difference on fresh held-out names and templates; top-1 equals a direct argmax', async () => {
    const before = tf.memory().numTensors;
    const e = await ioiEvaluate(model, { split: 'heldout', n: 80, seed: 606 });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(e.meanLogitDiff > IOI_BOUNDS.meanLogitDiff, `mean logit diff ${e.meanLogitDiff}`);
    assert.ok(e.accuracy > IOI_BOUNDS.accuracy, `accuracy ${e.accuracy}`);
    // top-1 by hand: one prompt at a time (no padding), argmax of the last row
    const ds = ioiSplitDataset(ioiTokenizerAdapter(model.tokenizer!), 'heldout', 80, 606);
    let hits = 0;
    for (const [i, t] of ds.tokens.entries()) {
      const row = (await host<number[][][]>(await model.forward([t])))[0];
      const last = row[row.length - 1];
      hits += last.indexOf(Math.max(...last)) === ds.ioTokens[i] ? 1 : 0;
    }
    assert.equal(e.top1, hits / ds.tokens.length);
  });
});

/** Bounds of the ioi test (the trained model's values are in its MODEL_CARD.md). */
const IOI_BOUNDS = { meanLogitDiff: 2.0, accuracy: 0.8 };

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
    assert.ok(Math.abs(t.result.loss[0] - log.loss[0]) < 1e-6, `step 1: ${t.result.loss[0]} vs ${log.loss[0]}`);
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
    const budget: Record<string, number> = { bb: 2.5e6, recall: 1e6, ioi: 1e6, 'induction-handmade': 0.3e6, 'var-group': 1e6 };
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
