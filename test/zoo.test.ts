/**
 * The shipped zoo models (fixtures/models/<name>): each model's headline behaviour on FRESH seeded
 * data (seeds differ from the ones in the model cards), checked against bounds stated here, the
 * measures checked against brute-force recomputation, and a short training run of each recipe
 * (finite losses, no tensors left behind).
 */
import assert from 'node:assert/strict';
import { promises as fsp, existsSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import {
  INDUCTION_DESIGN, IOI_SPLIT, IOI_VOCAB, RECALL_FORMAT, ZOO, bbEvalBatch, bbMeasures, bbTask, buildInductionHandmade, inductionEvalBatch,
  inductionEvaluate, ioiEvaluate, ioiSplitDataset, ioiTokenizer, ioiTokenizerAdapter, recallAccuracyGrid, recallExample, trainBB, trainIOI, trainRecall,
} from '../src/zoo/model-zoo.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const dirOf = (name: keyof typeof ZOO) => path.join(ROOT, ZOO[name].dir);

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? await dirBytes(p) : (await fsp.stat(p)).size;
  }
  return n;
}

describe('model zoo: induction-handmade', () => {
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(dirOf('induction-handmade'));
  });
  after(() => model?.dispose());

  it('the shipped checkpoint is the hand-built model (saveModel/loadModel round trip)', () => {
    const built = buildInductionHandmade();
    const toks = inductionEvalBatch(31, 2, 10).tokens;
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(built.forward(toks), model.forward(toks)))).dataSync()[0]);
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
        const m = tf.tidy(() => tf.max(tf.abs(model.params[`blocks.${l}.mlp.${n}`])).dataSync()[0]);
        assert.equal(m, 0, `blocks.${l}.mlp.${n}`);
      }
    }
  });

  it('predicts the repeated half of fresh random sequences (> 90% top-1) with the constructed attention', () => {
    const data = inductionEvalBatch(90210, 24, 25);
    const before = tf.memory().numTensors;
    const e = inductionEvaluate(model, data);
    assert.equal(tf.memory().numTensors, before);
    assert.ok(e.accuracy > 0.9, `accuracy ${e.accuracy}`);
    assert.ok(e.prevTokenAttention > 0.9, `prev-token attention ${e.prevTokenAttention}`);
    assert.ok(e.inductionAttention > 0.8, `induction attention ${e.inductionAttention}`);
    // Brute force from the cache: argmax of head 0.0's row i is i - 1; head 1.0's row in the
    // second repeat peaks on the token after the earlier occurrence of the current token.
    const { logits, cache } = model.runWithCache(data.tokens.slice(0, 3), { namesFilter: ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_pattern'] });
    const P0 = (cache.get('blocks.0.attn.hook_pattern') as tf.Tensor).arraySync() as number[][][][];
    const P1 = (cache.get('blocks.1.attn.hook_pattern') as tf.Tensor).arraySync() as number[][][][];
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
    logits.dispose();
    cache.dispose();
  });

  it('fails without the previous-token head (K-composition is what makes it work)', () => {
    const data = inductionEvalBatch(7, 8, 20);
    const ablated = model.withHooks(
      [['blocks.0.attn.hook_z', (z: tf.Tensor) => tf.mul(z, tf.tensor([0, 1], [1, 1, 2, 1]))]],
      () => inductionEvaluate(model, data),
    );
    assert.ok(ablated.accuracy < 0.3, `accuracy with head 0.0 zeroed ${ablated.accuracy}`);
  });
});

describe('model zoo: bb (Bigram-Backcopy)', () => {
  let model: HookedTransformer;
  before(async function () {
    if (!existsSync(path.join(dirOf('bb'), 'config.json'))) this.skip();
    model = await loadModel(dirOf('bb'));
  });
  after(() => model?.dispose());

  it('task.json holds the triggers of the task', async () => {
    const t = JSON.parse(await fsp.readFile(path.join(dirOf('bb'), 'task.json'), 'utf8'));
    assert.deepEqual(t.triggers, bbTask().triggers);
    assert.equal(t.bosId, model.cfg.bos_token_id);
  });

  it('bbMeasures equals a brute-force recomputation from the cache', () => {
    const batch = bbEvalBatch(555, 2);
    const m = bbMeasures(model, batch);
    const { logits, cache } = model.runWithCache(batch.tokens);
    const task = bbTask();
    for (let l = 0; l < model.cfg.n_layers; l++) {
      const A = (cache.get(`blocks.${l}.attn.hook_pattern` as never) as tf.Tensor).arraySync() as number[][][][];
      let s = 0;
      let n = 0;
      let p = 0;
      let np = 0;
      batch.tokens.forEach((x, b) => {
        for (let t = 1; t < x.length; t++) {
          if (task.isTrigger[x[t]]) {
            p += A[b][0][t][t - 1];
            np++;
          } else {
            s += A[b][0][t][0];
            n++;
          }
        }
      });
      assert.ok(Math.abs(m.layers[l].sinkNonTrigger - s / n) < 1e-6, `layer ${l} sink`);
      assert.ok(Math.abs(m.layers[l].prevTrigger - p / np) < 1e-6, `layer ${l} prev`);
    }
    // excess loss on trigger positions from the logits directly (the oracle loss there is 0)
    const lp = tf.tidy(() => tf.logSoftmax(logits).arraySync()) as number[][][];
    let tl = 0;
    let nt = 0;
    batch.tokens.forEach((x, b) => {
      for (let t = 1; t < x.length - 1; t++) if (task.isTrigger[x[t]]) {
        tl += -lp[b][t][x[t + 1]];
        nt++;
      }
    });
    assert.ok(Math.abs((m.excess.trigger as number) - tl / nt) < 1e-4, `excess trigger ${m.excess.trigger} vs ${tl / nt}`);
    logits.dispose();
    cache.dispose();
  });

  it('backcopy layer: sink on non-trigger queries, previous token on trigger queries, small excess loss', () => {
    const before = tf.memory().numTensors;
    const m = bbMeasures(model, bbEvalBatch(8080, 16));
    assert.equal(tf.memory().numTensors, before);
    const L = m.layers[m.backcopyLayer];
    assert.ok(L.prevTrigger >= BB_BOUNDS.prevTrigger, `attention to the previous token from trigger queries ${L.prevTrigger}`);
    assert.ok(L.sinkNonTrigger >= BB_BOUNDS.sinkNonTrigger, `attention to BOS from non-trigger queries ${L.sinkNonTrigger}`);
    assert.ok(L.sinkTrigger < L.sinkNonTrigger, 'active on triggers: less BOS attention there');
    assert.ok((m.excess.trigger as number) <= BB_BOUNDS.excessTrigger, `excess loss on triggers ${m.excess.trigger}`);
    assert.ok((m.excess.nonTrigger as number) <= BB_BOUNDS.excessNonTrigger, `excess loss on non-triggers ${m.excess.nonTrigger}`);
    assert.ok(L.valueNormBos < L.valueNormOthers, `value drain: ||v_BOS W_O|| ${L.valueNormBos} vs others ${L.valueNormOthers}`);
    assert.ok(L.valueNormBos < 0.5 * L.valueNormOthers, `value drain: ||v_BOS W_O|| ${L.valueNormBos} vs others ${L.valueNormOthers}`);
    // residual-state peak: in some later layer the BOS residual is larger than the others
    assert.ok(m.layers.some((x) => x.residNormBos > 1.3 * x.residNormOthers), `residual peak: ${m.layers.map((x) => `${x.residNormBos.toFixed(1)}/${x.residNormOthers.toFixed(1)}`)}`);
  });

  it('ships dynamics.json and at most 3 checkpoints, within 2.5 MB', async () => {
    const dyn = JSON.parse(await fsp.readFile(path.join(dirOf('bb'), 'dynamics.json'), 'utf8'));
    assert.ok(dyn.points.length >= 5);
    assert.equal(dyn.points[0].step, 0);
    assert.equal(dyn.points[0].layers.length, model.cfg.n_layers);
    const ck = path.join(dirOf('bb'), 'checkpoints');
    if (existsSync(ck)) assert.ok((await fsp.readdir(ck)).length <= 3);
    assert.ok((await dirBytes(dirOf('bb'))) <= 2.5e6);
  });
});

/** Bounds of the bb test (the trained model's values are in its MODEL_CARD.md). */
const BB_BOUNDS = { prevTrigger: 0.85, sinkNonTrigger: 0.5, excessTrigger: 0.05, excessNonTrigger: 0.05 };

describe('model zoo: recall (needle retrieval)', () => {
  let model: HookedTransformer;
  before(async function () {
    if (!existsSync(path.join(dirOf('recall'), 'config.json'))) this.skip();
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

  it('accuracy > 0.9 on a fresh grid of lengths and depths', () => {
    const before = tf.memory().numTensors;
    const g = recallAccuracyGrid(model, { lengths: [64, 128], depths: [0, 0.5, 1], n: 10, seed: 4321 });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(g.mean > 0.9, `mean accuracy ${g.mean}: ${JSON.stringify(g.accuracy)}`);
    assert.ok(g.min >= 0.7, `worst cell ${g.min}`);
  });

  it('a few retrieval heads do the copying: masking the top-3 by attention to the value hurts, the bottom-3 does not', () => {
    const { n_layers: L, n_heads: H } = model.cfg;
    const ex = Array.from({ length: 12 }, (_, i) => recallExample(96, (i + 0.5) / 12, 6000 + i));
    const { logits, cache } = model.runWithCache(ex.map((e) => e.tokens), { namesFilter: (n) => n.endsWith('hook_pattern') });
    const score: Array<[number, number, number]> = [];
    for (let l = 0; l < L; l++) {
      const A = (cache.get(`blocks.${l}.attn.hook_pattern` as never) as tf.Tensor).arraySync() as number[][][][];
      for (let h = 0; h < H; h++) score.push([l, h, ex.reduce((s, e, b) => s + A[b][h][95][e.valueSpan[0]], 0) / ex.length]);
    }
    logits.dispose();
    cache.dispose();
    score.sort((a, b) => b[2] - a[2]);
    assert.ok(score[0][2] > 0.8, `top head attention to the value ${score[0][2]}`);
    const masked = (heads: Array<[number, number, number]>) =>
      model.withHooks(
        Array.from({ length: L }, (_, l) => [
          `blocks.${l}.attn.hook_z`,
          (z: tf.Tensor) => {
            const k = new Array(H).fill(1);
            heads.filter((x) => x[0] === l).forEach((x) => (k[x[1]] = 0));
            return tf.mul(z, tf.tensor(k, [1, 1, H, 1]));
          },
        ]) as never,
        () => recallAccuracyGrid(model, { lengths: [64, 128], depths: [0.2, 0.8], n: 16, seed: 777 }).mean,
      );
    const top = masked(score.slice(0, 3));
    const bottom = masked(score.slice(-3));
    assert.ok(top < 0.7, `accuracy with the top-3 retrieval heads masked ${top}`);
    assert.ok(bottom > 0.9, `accuracy with the bottom-3 heads masked ${bottom}`);
  });
});

describe('model zoo: ioi', () => {
  let model: HookedTransformer;
  before(async function () {
    if (!existsSync(path.join(dirOf('ioi'), 'config.json'))) this.skip();
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

  it('positive logit difference on fresh held-out names and templates', () => {
    const before = tf.memory().numTensors;
    const e = ioiEvaluate(model, { split: 'heldout', n: 80, seed: 606 });
    assert.equal(tf.memory().numTensors, before);
    assert.ok(e.meanLogitDiff > IOI_BOUNDS.meanLogitDiff, `mean logit diff ${e.meanLogitDiff}`);
    assert.ok(e.accuracy > IOI_BOUNDS.accuracy, `accuracy ${e.accuracy}`);
  });
});

/** Bounds of the ioi test (the trained model's values are in its MODEL_CARD.md). */
const IOI_BOUNDS = { meanLogitDiff: 2.0, accuracy: 0.8 };

describe('model zoo: short training runs (wasm-friendly sizes)', () => {
  it('bb: a few steps, finite decreasing loss, measures recorded, no tensors left', async () => {
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const t = await trainBB({ steps: 6, batch: 4, evalEvery: 3, evalBatch: 2, onMeasures: (s) => seen.push(s), finalEval: false, seed: 5 });
    assert.ok(t.result.loss.every(Number.isFinite));
    assert.ok(t.result.loss[t.result.loss.length - 1] < t.result.loss[0], `loss ${t.result.loss}`);
    assert.deepEqual(seen, [0, 3, 6]);
    t.model.dispose();
    assert.equal(tf.memory().numTensors, before);
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
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(t.model.params['unembed.W_U'], tf.transpose(t.model.params['embed.W_E'])))).dataSync()[0]);
    assert.equal(d, 0);
    const t2 = await trainIOI({ steps: 1, batch: 8, evalEvery: 100, finalEval: false, seed: 5 });
    const nameId = IOI_VOCAB.indexOf('Mary');
    const otherId = IOI_VOCAB.indexOf('store');
    const row = (m: HookedTransformer, i: number) => tf.tidy(() => m.params['embed.W_E'].slice([i, 0], [1, -1]).dataSync());
    assert.deepEqual(Array.from(row(t.model, nameId)), Array.from(row(t2.model, nameId)), 'name rows are fixed');
    assert.notDeepEqual(Array.from(row(t.model, otherId)), Array.from(row(t2.model, otherId)), 'other rows train');
    t.model.dispose();
    t2.model.dispose();
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('model zoo: size budget', () => {
  it('fixtures/models stays within its budget', async () => {
    const budget: Record<string, number> = { bb: 2.5e6, recall: 1e6, ioi: 1e6, 'induction-handmade': 0.3e6 };
    let total = 0;
    for (const [name, max] of Object.entries(budget)) {
      const d = path.join(ROOT, 'fixtures/models', name);
      if (!existsSync(d)) continue;
      const n = await dirBytes(d);
      total += n;
      assert.ok(n <= max, `${name}: ${n} bytes > ${max}`);
    }
    assert.ok(total <= 5e6, `total ${total}`);
    assert.equal(INDUCTION_DESIGN.vocab, 32);
  });
});
