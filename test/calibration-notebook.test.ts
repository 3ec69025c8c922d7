/**
 * The token-group task of notebooks/06-calibration.ipynb (src/data/token-group.ts) and the tiny
 * model shipped for it (fixtures/models/var-group, recipe and evaluation in src/zoo/var-group.ts):
 * layout and answers checked by brute-force recount, seeding, config errors, the evaluation against a
 * direct forward, and the model's headline on fresh held-out prompts (seeds differ from the model card's).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ValueError } from '../src/errors.js';
import { loadModel, randomModel, type HookedTransformer } from '../src/model/index.js';
import { varHook, actHook } from '../src/analyses/calibration.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { TOKEN_GROUP_COLORS, TOKEN_GROUP_IDS, TOKEN_GROUP_VOCAB, tokenGroupBatch, tokenGroupExample, tokenGroupLayout } from '../src/data/token-group.js';
import { VAR_GROUP_TASK, tokenGroupConfig, tokenGroupEvaluate, tokenGroupTokenizer, trainTokenGroupModel } from '../src/zoo/var-group.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const FIXTURE = path.join(ROOT, 'fixtures/models/var-group');

const isColour = (t: number) => (TOKEN_GROUP_IDS.colors as readonly number[]).includes(t);

describe('token-group task', () => {
  it('layout: <bos> text <img> group </img> text color ? at the stated positions', () => {
    const L = tokenGroupLayout({ textBefore: 3, groupSize: 5, textAfter: 2 });
    // 0 bos | 1..3 text | 4 <img> | 5..9 group | 10 </img> | 11..12 text | 13 color | 14 ?
    assert.deepEqual(L.group, { start: 5, end: 10 });
    assert.equal(L.imgOpen, 4);
    assert.equal(L.imgClose, 10);
    assert.equal(L.length, 15);
    assert.equal(L.query, 14);
    const d = tokenGroupLayout();
    assert.equal(d.length, 1 + 10 + 1 + 16 + 1 + 6 + 2);
  });

  it('every example: the answer is the most frequent colour of the group (recounted), the text holds only the distractor colour', () => {
    const opts = { textBefore: 6, groupSize: 9, textAfter: 4, majority: [2, 4] as [number, number], minority: 1, textDistractors: 5 };
    const L = tokenGroupLayout(opts);
    const ids = TOKEN_GROUP_IDS;
    const seenCounts = new Set<number>();
    for (let s = 0; s < 200; s++) {
      const e = tokenGroupExample(s, opts);
      const t = e.tokens;
      assert.equal(t.length, L.length);
      assert.equal(t[0], ids.bos);
      assert.equal(t[L.imgOpen], ids.imgOpen);
      assert.equal(t[L.imgClose], ids.imgClose);
      assert.deepEqual(t.slice(-2), [ids.color, ids.question]);
      // recount the colours of the group
      const counts = new Map<number, number>();
      for (let j = L.group.start; j < L.group.end; j++) {
        if (t[j] === ids.background) continue;
        assert.ok(isColour(t[j]), `group token ${t[j]} is a colour or bg`);
        counts.set(t[j], (counts.get(t[j]) ?? 0) + 1);
      }
      const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1]);
      assert.equal(sorted.length, 2, 'two colours in the image');
      assert.ok(sorted[0][1] > sorted[1][1], 'a strict majority');
      assert.equal(sorted[0][0], e.answer);
      assert.equal(sorted[0][1], e.majorityCount);
      assert.equal(sorted[1][1], 1);
      seenCounts.add(e.majorityCount);
      // the text: filler words and the distractor colour only, textDistractors times
      const textPos = [...Array(L.length).keys()].filter((j) => (j >= 1 && j < L.imgOpen) || (j > L.imgClose && j < L.length - 2));
      const textColours = textPos.filter((j) => isColour(t[j]));
      assert.equal(textColours.length, 5);
      assert.deepEqual(textColours, e.distractorPositions);
      for (const j of textColours) assert.equal(t[j], e.distractor);
      for (const j of textPos) if (!isColour(t[j])) assert.ok((ids.filler as readonly number[]).includes(t[j]));
      assert.notEqual(e.distractor, e.answer);
      assert.notEqual(e.distractor, e.minority);
      // the distractor outnumbers the answer in the prompt as a whole
      assert.ok(textColours.length >= e.majorityCount);
    }
    assert.deepEqual([...seenCounts].sort(), [2, 3, 4]);
  });

  it('is seeded: same seed, same batch; another seed, another batch', () => {
    const a = tokenGroupBatch(20, 11);
    const b = tokenGroupBatch(20, 11);
    const c = tokenGroupBatch(20, 12);
    assert.deepEqual(a.tokens, b.tokens);
    assert.deepEqual(a.answers, b.answers);
    assert.notDeepEqual(a.tokens, c.tokens);
    // answers spread over the colours (not a constant)
    const big = tokenGroupBatch(400, 3);
    const freq = TOKEN_GROUP_IDS.colors.map((id) => big.answers.filter((x) => x === id).length / 400);
    for (const f of freq) assert.ok(f > 0.06 && f < 0.2, `answer frequency ${f} near 1/8`);
  });

  it('rejects impossible options with ConfigError naming the option', () => {
    assert.throws(() => tokenGroupLayout({ majority: [1, 2], minority: 1 }), (e: Error) => e instanceof ConfigError && /majority/.test(e.message));
    assert.throws(() => tokenGroupExample(0, { groupSize: 3, majority: [3, 3], minority: 1 }), (e: Error) => e instanceof ConfigError && /groupSize/.test(e.message));
    assert.throws(() => tokenGroupExample(0, { textBefore: 1, textAfter: 1, textDistractors: 3 }), (e: Error) => e instanceof ConfigError && /textDistractors/.test(e.message));
    assert.throws(() => tokenGroupBatch(0, 1), (e: Error) => e instanceof ConfigError && /n/.test(e.message));
    assert.throws(() => tokenGroupLayout({ textBefore: -1 }), ConfigError);
  });

  it('the tokenizer maps the vocabulary words to their ids and back', () => {
    const tk = tokenGroupTokenizer();
    const e = tokenGroupExample(5);
    const text = e.tokens.map((t) => TOKEN_GROUP_VOCAB[t]).join(' ');
    assert.deepEqual(tk.encode(text), e.tokens);
    assert.deepEqual(tk.toStrTokens(e.tokens), e.tokens.map((t) => TOKEN_GROUP_VOCAB[t]));
    assert.equal(TOKEN_GROUP_COLORS.length, 8);
    assert.equal(new Set(TOKEN_GROUP_VOCAB).size, TOKEN_GROUP_VOCAB.length);
  });
});

describe('tokenGroupEvaluate', () => {
  let model: HookedTransformer;
  before(() => {
    model = randomModel(tokenGroupConfig(), { seed: 3, std: 0.3, tokenizer: tokenGroupTokenizer() });
  });
  after(() => model?.dispose());

  it('accuracy, loss and distractor rate equal a direct forward (chunked), no tensors left', async () => {
    const b = tokenGroupBatch(10, 21);
    const before = tf.memory().numTensors;
    const ev = await tokenGroupEvaluate(model, b, { batchSize: 4 });
    assert.equal(tf.memory().numTensors, before);
    const logits = await model.forward(b.tokens);
    const last = ((await logits.array()) as number[][][]).map((r) => r[r.length - 1]);
    logits.dispose();
    let ok = 0;
    let fooled = 0;
    let nll = 0;
    last.forEach((row, i) => {
      const arg = row.indexOf(Math.max(...row));
      const mx = Math.max(...row);
      const lse = mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0));
      nll += lse - row[b.answers[i]];
      if (arg === b.answers[i]) ok++;
      if (arg === b.examples[i].distractor) fooled++;
      assert.equal(ev.predictions[i], arg);
    });
    assert.equal(ev.accuracy, ok / 10);
    assert.equal(ev.distractorRate, fooled / 10);
    assert.ok(Math.abs(ev.loss - nll / 10) < 1e-4, `loss ${ev.loss} vs ${nll / 10}`);
  });

  it('passes fwdHooks through (VAR with p = 1 keeps every weight: same loss; p = 0 changes it)', async () => {
    const b = tokenGroupBatch(8, 22);
    const L = b.layout;
    const before = tf.memory().numTensors;
    const base = await tokenGroupEvaluate(model, b);
    const keep = varHook({ layers: [1, 2], group: L.group, sinkDims: [0, 1], tau: 0.5, p: 1, summ: 0, rho: 1 });
    const same = await tokenGroupEvaluate(model, b, { fwdHooks: keep });
    keep.dispose();
    assert.ok(Math.abs(same.loss - base.loss) < 1e-5);
    const move = varHook({ layers: [1, 2], group: L.group, sinkDims: [0, 1], tau: 0.5, p: 0, summ: 0, rho: 1 });
    const moved = await tokenGroupEvaluate(model, b, { fwdHooks: move });
    move.dispose();
    assert.ok(Math.abs(moved.loss - base.loss) > 1e-4, 'p = 0 moves attention');
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(() => tokenGroupEvaluate(model, { tokens: b.tokens, answers: [1] }), ValueError);
  });
});

describe('trainTokenGroupModel', function () {
  this.timeout(120000);
  it('a short seeded run: finite losses starting near (1 + lmWeight) ln V, an eval point, plain params, no tensors left, same seed same weights', async () => {
    const before = tf.memory().numTensors;
    const run = () => trainTokenGroupModel({ steps: 3, batch: 4, evalEvery: 3, seed: 9 });
    const a = await run();
    assert.equal(a.result.completed, 3);
    assert.ok(a.result.loss.every((x) => Number.isFinite(x) && x > 0));
    assert.equal(a.result.evals.length, 1);
    assert.ok(a.result.evals[0].values.accuracy >= 0 && a.result.evals[0].values.accuracy <= 1);
    for (const t of Object.values(a.model.params)) assert.ok(!(t instanceof tf.Variable), 'plain tensors after training');
    const b = await run();
    const dT = tf.tidy(() => tf.max(tf.abs(tf.sub(a.model.params['blocks.0.attn.W_Q'], b.model.params['blocks.0.attn.W_Q']))));
    const d = (await dT.data())[0];
    dT.dispose();
    assert.equal(d, 0);
    // the recipe's loss: the answer NLL has weight 1, the rest lmWeight; step 1 at init is close to ln(vocab) + lmWeight ln(vocab)
    const V = TOKEN_GROUP_VOCAB.length;
    assert.ok(Math.abs(a.result.loss[0] - (1 + (a.recipe.lmWeight as number)) * Math.log(V)) < 0.3, `first loss ${a.result.loss[0]}`);
    a.model.dispose();
    b.model.dispose();
    assert.equal(tf.memory().numTensors, before);
    await assert.rejects(() => trainTokenGroupModel({ steps: 1, lmWeight: -1 }), ConfigError);
  });
});

describe('fixtures/models/var-group', function () {
  this.timeout(120000);
  let model: HookedTransformer;
  before(async function () {
    if (!existsSync(path.join(FIXTURE, 'model.safetensors'))) this.skip();
    model = await loadModel(FIXTURE);
  });
  after(() => model?.dispose());

  it('is under 1 MB of weights and has a model card and task.json matching the task module', () => {
    const st = readFileSync(path.join(FIXTURE, 'model.safetensors'));
    assert.ok(st.length <= 1024 * 1024, `${st.length} bytes`);
    assert.ok(readFileSync(path.join(FIXTURE, 'MODEL_CARD.md'), 'utf8').includes('Held-out numbers'));
    const task = JSON.parse(readFileSync(path.join(FIXTURE, 'task.json'), 'utf8'));
    assert.deepEqual(task.options, VAR_GROUP_TASK);
    assert.deepEqual(task.layout, tokenGroupLayout());
    assert.deepEqual(task.vocab, TOKEN_GROUP_VOCAB);
  });

  it('answers the majority colour on fresh prompts far above chance and beats the distractor', async () => {
    const b = tokenGroupBatch(256, 31337);
    const ev = await tokenGroupEvaluate(model, b);
    assert.ok(ev.accuracy >= 0.9, `accuracy ${ev.accuracy}`);
    assert.ok(ev.distractorRate <= 0.05, `distractor rate ${ev.distractorRate}`);
    // the card's held-out numbers are reproducible from their seed
    const task = JSON.parse(readFileSync(path.join(FIXTURE, 'task.json'), 'utf8'));
    const card = await tokenGroupEvaluate(model, tokenGroupBatch(task.heldout.n, task.heldout.seed));
    assert.ok(Math.abs(card.accuracy - task.heldout.accuracy) < 1e-9);
    assert.ok(Math.abs(card.loss - task.heldout.loss) < 1e-3);
  });

  it('needs the group: zeroing the attention of the last position to the group breaks it', async () => {
    const b = tokenGroupBatch(64, 4040);
    const L = b.layout;
    const base = await tokenGroupEvaluate(model, b);
    const hooks = Array.from({ length: model.cfg.n_layers }, (_, l) => [
      `blocks.${l}.attn.hook_pattern`,
      (p: tf.Tensor) =>
        tf.tidy(() => {
          const k = p.shape[3] as number;
          const q = p.shape[2] as number;
          const keep = tf.tensor1d([...Array(k).keys()].map((j) => (j >= L.group.start && j < L.group.end ? 0 : 1)));
          const rowMask = tf.tensor1d([...Array(q).keys()].map((i) => (i === q - 1 ? 1 : 0))).reshape([q, 1]);
          const m = tf.sub(1, tf.mul(rowMask, tf.sub(1, keep.reshape([1, k]))));
          return tf.mul(p, m);
        }),
    ]) as HookSpec[];
    const cut = await tokenGroupEvaluate(model, b, { fwdHooks: hooks });
    assert.ok(cut.accuracy < base.accuracy - 0.5, `without the group ${cut.accuracy} vs ${base.accuracy}`);
    // ACT with beta = 1 is the identity (sanity of the hook path used in the notebook)
    const act = actHook({ heads: [[1, 0], [2, 3]], beta: 1, keepFirstRow: false });
    const ident = await tokenGroupEvaluate(model, b, { fwdHooks: act });
    act.dispose();
    assert.ok(Math.abs(ident.loss - base.loss) < 1e-5);
  });
});
