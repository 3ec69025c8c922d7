import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { readFileSync } from 'node:fs';
import {
  RetrievalScorer,
  fromRetrievalHeadJson,
  lastRowArgmax,
  mergeRetrievalHeadJson,
  needleSpan,
  newlineTokens,
  retrievalHeads,
  retrievalScoreStep,
  scoreRetrievalSample,
  toRetrievalHeadJson,
  headMaskHooks,
  randomControlHeads,
} from '../src/analyses/retrieval.js';
import { needleTask, niahGrid, syntheticSamples } from '../src/analyses/niah.js';
import { loadModel, randomModel, Tokenizer, type HookedTransformer } from '../src/model/index.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { porterStem, rougeRecall1, rougeTokenize } from '../src/analyses/rouge.js';
import { razorInput, razorMasks, razorRetrievalHeads, razorScores, razorScoresForModel, topFraction, type RazorScores } from '../src/analyses/razor.js';
import { wordLevelTokenizerJson } from '../src/data/tokenizer.js';
import { ConfigError, FormatError, ValueError } from '../src/errors.js';
import { argmax, bruteDecode } from './helpers/decode.js';
import { runPort } from './helpers/port.js';

const near = (a: number, b: number, tol = 1e-9, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);
const LLAMA = JSON.parse(readFileSync('fixtures/reference/llama/config.json', 'utf8'));
const RECALL = 'fixtures/models/recall';
const dispose = (m: HookedTransformer) => Object.values(m.params).forEach((t) => t.dispose());

describe('needle span (authors search)', () => {
  it('finds the first window covering > 90% of the answer token set', () => {
    assert.deepEqual(needleSpan([5, 7, 8, 9, 7, 8, 6], [7, 8, 9]), { start: 1, end: 4 });
    // a window covering exactly 90% does not qualify (strict >)
    const answer = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    assert.equal(needleSpan([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, 0], answer), null);
    // the end is i + len(answer), even past the prompt's end (as in the code)
    assert.deepEqual(needleSpan([0, 0, 0, 7, 8], [7, 8, 8]), { start: 2, end: 5 });
    assert.deepEqual(needleSpan([7, 8], [7, 8, 8]), { start: 0, end: 3 });
    assert.throws(() => needleSpan([1, 2], []), ValueError);
  });
});

describe('retrieval score on a hand-built copy trace', () => {
  // prompt ids; span [1, 4) holds tokens 10, 11, 12 (increment 1/3 per hit)
  const ids = [1, 10, 11, 12, 13, 2, 3];
  const span = { start: 1, end: 4 };
  // 1 layer, 3 heads; argmax keys per step and the generated token:
  //  step 1: gen 10, keys [1, 2, 0] -> head0 hit (ids[1]=10), head1 miss (ids[2]=11), head2 outside
  //  step 2: gen 11, keys [2, 2, 5] -> head0 hit, head1 hit, head2 outside
  //  step 3: gen 10, keys [1, 4, 1] -> head0 hit (copies 10 again), head1 outside (4 = end), head2 hit
  //  step 4: gen 12, keys [3, 3, 6] -> head0 hit, head1 hit, head2 outside
  // code: head0 = 4/3 (> 1), head1 = 2/3, head2 = 1/3
  // set : head0 {10,11,12} -> 1, head1 {11,12} -> 2/3, head2 {10} -> 1/3
  const trace: Array<[number[], number]> = [
    [[1, 2, 0], 10],
    [[2, 2, 5], 11],
    [[1, 4, 1], 10],
    [[3, 3, 6], 12],
  ];

  it('step rule', () => {
    assert.deepEqual(retrievalScoreStep([[1, 2, 0]], 10, ids, span), [[true, false, false]]);
    assert.deepEqual(retrievalScoreStep([[1, 4, 1]], 10, ids, span), [[true, false, true]]);
  });

  for (const variant of ['code', 'set'] as const) {
    it(`${variant} variant accumulates per sample`, () => {
      const sc = new RetrievalScorer({ nLayers: 1, nHeads: 3, variant });
      sc.beginSample(ids, span);
      for (const [keys, tok] of trace) sc.step([keys], tok);
      const s = sc.endSample({ rouge: 1 });
      const exp = variant === 'code' ? [4 / 3, 2 / 3, 1 / 3] : [1, 2 / 3, 1 / 3];
      s.scores[0].forEach((v, h) => near(v, exp[h], 1e-12, `head ${h}`));
      assert.equal(s.steps, 4);
      assert.ok(s.counted);
    });
  }

  it('sample filter (ROUGE-1 recall > 0.5), mean over counted samples, JSON round trip', () => {
    const sc = new RetrievalScorer({ nLayers: 1, nHeads: 3 });
    sc.beginSample(ids, span);
    for (const [keys, tok] of trace) sc.step([keys], tok);
    const a = sc.endSample({ answer: 'eat a sandwich', response: 'Eat a sandwich!' });
    assert.equal(a.rouge, 1);
    assert.ok(a.counted);
    // only step 2 -> head0 1/3, head1 1/3; the response recalls exactly half -> not counted (needs > 0.5)
    sc.beginSample(ids, span);
    sc.step([[2, 2, 5]], 11);
    const b = sc.endSample({ answer: 'blue whale', response: 'a blue car' });
    near(b.rouge, 0.5);
    assert.equal(b.counted, false);
    sc.beginSample(ids, span);
    sc.step([[1, 2, 0]], 10);
    sc.endSample({ rouge: 0.75 });
    const hs = sc.headScores({ model: 'toy' });
    // means over the two counted samples: head0 (4/3 + 1/3)/2 = 5/6, head1 (2/3 + 0)/2 = 1/3, head2 (1/3 + 0)/2 = 1/6
    near(hs.scores[0][0], 5 / 6);
    near(hs.scores[0][1], 1 / 3);
    near(hs.scores[0][2], 1 / 6);
    assert.equal(hs.data?.counted, 2);
    assert.deepEqual(retrievalHeads(hs).map((r) => [r[0], r[1]]), [[0, 0], [0, 1], [0, 2]]);
    assert.deepEqual(retrievalHeads(hs, { threshold: 0.3 }).map((r) => [r[0], r[1]]), [[0, 0], [0, 1]]);
    const json = toRetrievalHeadJson(sc);
    assert.deepEqual(Object.keys(json), ['0-0', '0-1', '0-2']);
    near(json['0-0'][0], 4 / 3);
    assert.equal(json['0-0'].length, 2);
    const back = fromRetrievalHeadJson(JSON.stringify(json));
    near(back.scores.scores[0][0], 5 / 6);
    assert.deepEqual(back.perSample, sc.perSample());
    assert.equal(mergeRetrievalHeadJson(json, { '0-0': [1] })['0-0'].length, 3);
    assert.throws(() => fromRetrievalHeadJson('{"0-0": [1, "x"]}'), FormatError);
    assert.throws(() => fromRetrievalHeadJson('{"a": []}'), FormatError);
    assert.throws(() => fromRetrievalHeadJson('not json'), FormatError);
    assert.throws(() => sc.beginSample([1], null), ValueError);
    sc.beginSample(ids, span);
    assert.throws(() => sc.step([[1, 2]], 10), /1 x 3/);
    assert.throws(() => new RetrievalScorer({ nLayers: 0, nHeads: 1 }), ConfigError);
  });

  it('lastRowArgmax: on the device, lowest index on ties, nothing left behind', async () => {
    const before = tf.memory().numTensors;
    // [batch 2, heads 2, q 2, k 3]; last rows: [.2 .5 .3] -> 1, [.4 .2 .4] -> 0 (tie), [0 0 1] -> 2, [.3 .3 .3] -> 0
    const p = tf.tensor4d([
      [[[1, 0, 0], [0.2, 0.5, 0.3]], [[1, 0, 0], [0.4, 0.2, 0.4]]],
      [[[1, 0, 0], [0, 0, 1]], [[1, 0, 0], [0.3, 0.3, 0.3]]],
    ]);
    const idx = lastRowArgmax(p);
    assert.equal(idx.dtype, 'int32');
    assert.deepEqual(await idx.array(), [[1, 0], [2, 0]]);
    tf.dispose([p, idx]);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('newlineTokens (where the authors stop decoding)', () => {
  it("byte-level BPE 'Ċ', SentencePiece '<0x0A>', else EOS", () => {
    const gpt2 = new Tokenizer(JSON.parse(readFileSync('fixtures/reference/gpt2/tokenizer.json', 'utf8')));
    assert.deepEqual(newlineTokens({ tokenizer: gpt2, cfg: { eos_token_id: 50256 } as never }), [198]);
    const sp = new Tokenizer(wordLevelTokenizerJson(['<unk>', 'a', '<0x0A>', 'b']));
    assert.deepEqual(newlineTokens({ tokenizer: sp, cfg: { eos_token_id: 3 } as never }), [2]);
    assert.deepEqual(newlineTokens({ tokenizer: null, cfg: { eos_token_id: 7 } as never }), [7]);
    assert.deepEqual(newlineTokens({ tokenizer: null, cfg: {} as never }), []);
  });
});

describe('ROUGE-1 recall (rouge_score with the Porter stemmer)', () => {
  it('Porter stemmer (NLTK mode) on the paper examples', () => {
    const cases: Record<string, string> = {
      caresses: 'caress',
      ponies: 'poni',
      ties: 'tie',
      cats: 'cat',
      feed: 'feed',
      agreed: 'agre',
      plastered: 'plaster',
      motoring: 'motor',
      sing: 'sing',
      conflated: 'conflat',
      troubled: 'troubl',
      sized: 'size',
      hopping: 'hop',
      falling: 'fall',
      filing: 'file',
      happy: 'happi',
      relational: 'relat',
      generalization: 'gener',
      running: 'run',
      sandwich: 'sandwich',
    };
    for (const [w, s] of Object.entries(cases)) assert.equal(porterStem(w), s, w);
  });

  it('tokenizer and recall as rouge_score', () => {
    assert.deepEqual(rougeTokenize("San-Francisco's best!", { useStemmer: false }), ['san', 'francisco', 's', 'best']);
    near(rougeRecall1('eat a sandwich and sit in Dolores Park on a sunny day.', 'Eat a sandwich and sit in Dolores Park.'), 8 / 12);
    near(rougeRecall1('a a b', 'a b b'), 2 / 3);
    near(rougeRecall1('running dogs', 'the dog runs'), 1);
    near(rougeRecall1('running dogs', 'the dog runs', { useStemmer: false }), 0);
    near(rougeRecall1('', 'anything'), 0);
    near(rougeRecall1([1, 2, 3, 3], [3, 1]), 2 / 4);
  });
});

describe('RazorAttention echo / induction scores', () => {
  // R = 2, BOS: positions 0 BOS, 1 a, 2 b, 3 a, 4 b, 5 a, 6 b, 7 a, 8 b (n = 9)
  const R = 2;
  const n = 9;
  const ones = (M: number[][]) => M.flatMap((r, i) => r.map((v, j) => (v ? `${i},${j}` : ''))).filter(Boolean);

  it("masks: the spec's j = i mod R (BOS column included) and the same-token rule", () => {
    const sameToken = razorMasks(n, { R, rule: 'same-token' });
    assert.deepEqual(ones(sameToken.echo), ['3,1', '4,2', '5,1', '5,3', '6,2', '6,4', '7,1', '7,3', '7,5', '8,2', '8,4', '8,6']);
    assert.deepEqual(ones(sameToken.induction), ['3,2', '4,3', '5,2', '5,4', '6,3', '6,5', '7,2', '7,4', '7,6', '8,3', '8,5', '8,7']);
    // mod-r (default): for every row i >= R, j = i mod R, i mod R + R, ... < i: the BOS column on the even rows
    const modR = razorMasks(n, { R });
    assert.deepEqual(ones(modR.echo).filter((x) => !ones(sameToken.echo).includes(x)), ['2,0', '4,0', '6,0', '8,0']);
    assert.deepEqual(ones(modR.induction).filter((x) => !ones(sameToken.induction).includes(x)), ['2,1', '4,1', '6,1', '8,1']);
    // without a BOS both rules are the same
    assert.deepEqual(razorMasks(8, { R, rule: 'same-token', bos: false }), razorMasks(8, { R }));
    const ids = razorInput({ R: 3, seed: 7, bosId: 1, lo: 10, hi: 20 });
    assert.equal(ids.length, 13);
    assert.equal(ids[0], 1);
    assert.deepEqual(ids.slice(1, 4), ids.slice(4, 7));
    assert.deepEqual(ids.slice(1, 4), ids.slice(10, 13));
    assert.throws(() => razorMasks(n, { R, rule: 'other' as never }), ConfigError);
  });

  it('scores on hand-built patterns: both rules and aggregates, GQA max', async () => {
    const before = tf.memory().numTensors;
    const { echo, induction } = razorMasks(n, { R, rule: 'same-token' });
    const uniformOver = (M: number[][]) => M.map((row) => (row.some((v) => v) ? row.map((v) => v / row.reduce((a, b) => a + b, 0)) : row.map((_, j) => (j === 0 ? 1 : 0))));
    const hEcho = uniformOver(echo); // 6 rows with full echo mass
    const hInd = uniformOver(induction);
    const hBos = Array.from({ length: n }, () => Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 0)));
    const hPrev = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === Math.max(0, i - 1) ? 1 : 0)));
    const L0 = tf.tensor4d([[hEcho, hInd, hBos, hPrev]]);
    const L1 = tf.tensor4d([[hBos, hBos, hBos, hEcho]]);
    const same = await razorScores([L0, L1], { R, nKvHeads: 2, rule: 'same-token' });
    near(same.echoPerQueryHead[0][0], 6 / 81, 1e-6);
    near(same.inductionPerQueryHead[0][1], 6 / 81, 1e-6);
    near(same.inductionPerQueryHead[0][3], 6 / 81, 1e-6); // A[i, i-1] is an induction target for i >= 3
    [1, 2, 3].forEach((h) => near(same.echoPerQueryHead[0][h], 0, 1e-7));
    // GQA: KV0 = max(h0, h1), KV1 = max(h2, h3)
    near(same.echo.scores[0][0], 6 / 81, 1e-6);
    near(same.echo.scores[1][1], 6 / 81, 1e-6);
    assert.equal(same.echo.nHeads, 2);
    // mod-r: the BOS head gets echo credit on rows 2, 4, 6, 8 (4/81), the prev-token head induction credit on row 2 too (7/81)
    const modR = await razorScores([L0], { R });
    near(modR.echoPerQueryHead[0][2], 4 / 81, 1e-6);
    near(modR.inductionPerQueryHead[0][3], 7 / 81, 1e-6);
    // row-mean: the masked mass per row averaged over the rows with mask entries (6 rows for same-token)
    const rows = await razorScores([L0], { R, rule: 'same-token', aggregate: 'row-mean' });
    near(rows.echoPerQueryHead[0][0], 1, 1e-6);
    near(rows.inductionPerQueryHead[0][1], 1, 1e-6);
    [L0, L1].forEach((t) => t.dispose());
    assert.equal(tf.memory().numTensors, before);
  });

  it('topFraction: round half to even, no minimum, ties kept (options: minOne, first)', () => {
    const g250 = [Array.from({ length: 250 }, (_, i) => i)];
    assert.deepEqual(topFraction(g250, 0.01), [[0, 248], [0, 249]]); // round(2.5) = 2
    assert.equal(topFraction([Array.from({ length: 350 }, (_, i) => i)], 0.01).length, 4); // round(3.5) = 4
    assert.deepEqual(topFraction([[1, 5, 3]], 0.01), []); // round(0.03) = 0
    assert.deepEqual(topFraction([[1, 5, 3]], 0.01, { minOne: true }), [[0, 1]]);
    assert.deepEqual(topFraction([[5, 1], [5, 0]], 0.25), [[0, 0], [1, 0]]); // one value, two heads hold it
    assert.deepEqual(topFraction([[5, 1], [5, 0]], 0.25, { ties: 'first' }), [[0, 0]]);
    assert.throws(() => topFraction([[1]], 2), ConfigError);
    const sel = razorRetrievalHeads({ echo: { scores: [[3, 1], [2, 0]] }, induction: { scores: [[0, 1], [9, 2]] } } as unknown as RazorScores, { echoRatio: 0.25, inductionRatio: 0.5 });
    assert.deepEqual(sel.echo, [[0, 0]]);
    assert.deepEqual(sel.induction, [[1, 0], [1, 1]]);
    assert.deepEqual(sel.heads, [[0, 0], [1, 0], [1, 1]]);
    assert.deepEqual(sel.byLayer, { 0: [0], 1: [0, 1] });
  });
});

describe('scoreRetrievalSample on a random-init LLaMA', function () {
  this.timeout(120000);
  it('pairs each token with the row that produced it; a forced copy head scores steps / span; no leaks', async () => {
    const model = randomModel({ ...LLAMA, num_hidden_layers: 3 }, { seed: 9, std: 0.3 });
    const prompt = [1, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38];
    const answer = [30, 31, 32, 33]; // span [11, 15)
    const T = prompt[12]; // = 31
    // force: the model always generates T, and head (1, 0) always attends to key 12
    const force: HookSpec[] = [
      ['unembed.hook_out', (x) => tf.tidy(() => tf.add(x, tf.oneHot([T], x.shape[2] as number).mul(1000).reshape([1, 1, x.shape[2] as number])))],
      [
        'blocks.1.attn.hook_attn_scores',
        (x) =>
          tf.tidy(() => {
            const [, h, , k] = x.shape;
            const bump = tf.buffer([1, h, 1, k]);
            bump.set(100, 0, 0, 0, 12);
            return tf.add(x, bump.toTensor());
          }),
      ],
    ];
    const before = tf.memory().numTensors;
    const scorer = new RetrievalScorer({ nLayers: 3, nHeads: 4 });
    const r = await scoreRetrievalSample(model, scorer, prompt, answer, { maxNewTokens: 5, fwdHooks: force });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(r.tokens, [T, T, T, T, T]);
    assert.deepEqual(r.sample.span, { start: 11, end: 15 });
    near(r.sample.scores[1][0], 5 / 4, 1e-12); // a hit at every step: 5 x 1/4 (> 1)
    near(r.sample.rouge, 1 / 4); // answer unigrams 30..33 vs the response [31 x 5]: 1 of 4
    assert.equal(r.sample.counted, false);
    // every head against full forwards without a KV cache
    const ref = await bruteDecode(model, prompt, { maxNewTokens: 5, fwdHooks: () => force });
    assert.deepEqual(ref.tokens, r.tokens);
    const exp = [0, 1, 2].map(() => [0, 0, 0, 0]);
    ref.rows.forEach((layers, step) => {
      const hits = retrievalScoreStep(layers.map((heads) => heads.map(argmax)), ref.tokens[step], prompt, { start: 11, end: 15 });
      hits.forEach((row, l) => row.forEach((h, hh) => (exp[l][hh] += h ? 1 / 4 : 0)));
    });
    exp.forEach((row, l) => row.forEach((v, h) => near(r.sample.scores[l][h], v, 1e-12, `${l}.${h}`)));
    // the default stop is the model's newline token (here EOS = 2): forcing it ends decoding after one step
    const stop = await scoreRetrievalSample(model, new RetrievalScorer({ nLayers: 3, nHeads: 4 }), prompt, answer, {
      fwdHooks: [['unembed.hook_out', (x) => tf.tidy(() => tf.add(x, tf.oneHot([2], x.shape[2] as number).mul(1000).reshape([1, 1, -1])))]],
    });
    assert.deepEqual(stop.tokens, [2]);
    dispose(model);
  });
});

describe('masking helpers', function () {
  this.timeout(120000);

  it("headMaskHooks: 'generation' masks the last prompt row of a prefill, 'all' every row, 'decoding' none of a prefill", async () => {
    const model = randomModel({ ...LLAMA, num_hidden_layers: 2 }, { seed: 4, std: 0.3 });
    const prompt = [[1, 5, 6, 7, 8]];
    const T = 5;
    const pattern = async (hooks: HookSpec[]) => {
      const { logits, cache } = await model.runWithCache(prompt, { namesFilter: ['blocks.1.attn.hook_pattern'], fwdHooks: hooks });
      const p = ((await cache.get('blocks.1.attn.hook_pattern').array()) as number[][][][])[0];
      logits.dispose();
      cache.dispose();
      return p;
    };
    const base = await pattern([]);
    const before = tf.memory().numTensors;
    const gen = await pattern(headMaskHooks([[1, 0]]));
    const all = await pattern(headMaskHooks([[1, 0]], { scope: 'all' }));
    const dec = await pattern(headMaskHooks([[1, 0]], { scope: 'decoding' }));
    assert.equal(tf.memory().numTensors, before);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) {
        const uniform = j <= i ? 1 / (i + 1) : 0;
        near(gen[0][i][j], i === T - 1 ? uniform : base[0][i][j], 1e-6, `generation ${i},${j}`);
        near(all[0][i][j], uniform, 1e-6, `all ${i},${j}`);
        near(dec[0][i][j], base[0][i][j], 1e-6, `decoding ${i},${j}`);
        for (const h of [1, 2, 3]) near(gen[h][i][j], base[h][i][j], 1e-6, `head ${h}`);
      }
    }
    assert.throws(() => headMaskHooks([[1, 0]], { scope: 'prefill' as never }), ConfigError);
    dispose(model);
  });

  it('randomControlHeads: seeded, outside the top set (default the top 100, the authors)', () => {
    const grid = [
      [12, 11, 10, 9],
      [8, 7, 6, 5],
      [4, 3, 2, 1],
    ];
    const a = randomControlHeads(grid, 3, { exclude: 5, seed: 1 });
    assert.equal(a.length, 3);
    assert.deepEqual(a, randomControlHeads(grid, 3, { exclude: 5, seed: 1 }));
    for (const [l, h] of a) assert.ok(grid[l][h] <= 7, `${l}.${h} is in the top 5`);
    assert.equal(new Set(a.map((x) => x.join('.'))).size, 3);
    assert.equal(randomControlHeads(grid, 7, { exclude: 5, seed: 2 }).length, 7);
    assert.throws(() => randomControlHeads(grid, 8, { exclude: 5, seed: 1 }), ConfigError);
    assert.throws(() => randomControlHeads(grid, 1, { seed: 1 }), /outside the top 100 of 12/);
    const big = Array.from({ length: 12 }, (_, l) => Array.from({ length: 12 }, (_, h) => 144 - 12 * l - h));
    for (const [l, h] of randomControlHeads(big, 10, { seed: 3 })) assert.ok(big[l][h] <= 44, `${l}.${h} is in the top 100`);
  });
});

describe('fidelity on the shipped recall model: ports of the authors\' computations (test/ports)', function () {
  this.timeout(600000);
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel(RECALL);
  });
  after(() => model?.dispose());

  it('retrieval scores, answer span, newline stop and ROUGE filter equal retrieval_head.py', async () => {
    const task = needleTask(JSON.parse(readFileSync(`${RECALL}/task.json`, 'utf8')));
    const make = syntheticSamples(task.format);
    const tk = model.tokenizer!;
    // answer texts: the value (counted), the value and a filler word (recall exactly 1/2: not counted), the value with punctuation (counted)
    const answerText = (ids: number[], seed: number) => [tk.decode(ids, true), `${tk.decode(ids, true)} w39`, `${tk.decode(ids, true).toUpperCase()}!`][seed % 3];
    const makeSample = (l: number, d: number, seed: number) => {
      const ex = make(l, d, seed);
      return { ...ex, answerText: answerText(ex.answer, seed) };
    };
    const g = await niahGrid(model, { lengths: [48, 96], depths: [0, 0.5, 1], makeSample, samplesPerCell: 2, maxNewTokens: 6, seed: 9, scorer: true, onProgress: false });
    const samples = [];
    for (const s of g.samples.flat(2)) {
      const ex = makeSample(s.length, s.depth, s.seed);
      const ref = await bruteDecode(model, ex.tokens, { maxNewTokens: 6, stopTokens: newlineTokens(model) });
      assert.deepEqual(s.generated, ref.tokens, 'tokens of the KV-cache decode equal full forwards');
      samples.push({ prompt: ex.tokens, answer_ids: ex.answer, answer_text: ex.answerText, generated: ref.tokens, response: s.response, rows: ref.rows });
    }
    const port = runPort<{ head_counter: Record<string, number[]>; spans: number[][]; recall: number[]; counted: boolean[]; stemmer: string | null }>('retrieval_head', {
      n_layers: model.cfg.n_layers,
      n_heads: model.cfg.n_heads,
      samples,
    });
    // without NLTK the port stems nothing: then these texts must not depend on stemming
    if (port.stemmer === null) samples.forEach((x) => assert.equal(rougeRecall1(x.answer_text, x.response!), rougeRecall1(x.answer_text, x.response!, { useStemmer: false })));
    const mine = g.scorer!.samples;
    assert.deepEqual(port.spans, mine.map((s) => [s.span.start, s.span.end]));
    port.recall.forEach((r, i) => near(mine[i].rouge, r, 1e-12, `recall ${i}`));
    assert.deepEqual(port.counted, mine.map((s) => s.counted));
    assert.ok(port.counted.some((c) => c) && port.counted.some((c) => !c), 'the filter keeps some samples and drops others');
    assert.deepEqual(Object.keys(g.authorJson!), Object.keys(port.head_counter));
    for (const [k, v] of Object.entries(port.head_counter)) {
      assert.equal(g.authorJson![k].length, v.length, k);
      v.forEach((x, i) => near(g.authorJson![k][i], x, 1e-12, `${k}[${i}]`));
    }
    assert.ok(Object.values(port.head_counter).flat().some((x) => x > 0), 'some head retrieves');
  });

  it('RazorAttention scores and selections equal razor.py (golden-stick and msmodelslim rules), MHA and GQA', async () => {
    const gqa = randomModel({ ...LLAMA, num_hidden_layers: 2 }, { seed: 6, std: 0.3 });
    try {
      for (const [m, R] of [[model, 16], [gqa, 7]] as const) {
        const gs = await razorScoresForModel(m, { R, seed: 1, lo: 7 });
        const ms = await razorScoresForModel(m, { R, seed: 1, lo: 7, rule: 'same-token', aggregate: 'row-mean' });
        const names = Array.from({ length: m.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
        const { logits, cache } = await m.runWithCache([gs.ids], { namesFilter: names });
        const patterns = (await Promise.all(names.map((n) => cache.get(n).array()))).map((p) => (p as number[][][][])[0]);
        logits.dispose();
        cache.dispose();
        const ties = [[0.5, 0.1, 0.5], [0.5, 0.2, 0.1]];
        const grids = [gs.echo.scores, gs.induction.scores, ties];
        const ratios = [0.01, 0.14, 0.25, 0.5];
        const selections = grids.flatMap((grid) => ratios.map((ratio) => ({ grid, ratio })));
        const port = runPort<{ golden_stick: Record<'echo' | 'induction', number[][]>; msmodelslim: Record<'echo' | 'induction', number[][]>; selections: Array<{ by_value: number[][]; exact_min1: number[][] }> }>('razor', {
          R,
          n_kv_heads: m.cfg.n_kv_heads,
          patterns,
          selections,
        });
        const close = (a: number[][], b: number[][], what: string) => a.forEach((row, l) => row.forEach((v, h) => near(v, b[l][h], 1e-6 * Math.max(1, Math.abs(b[l][h])) + 1e-9, `${what} ${l}.${h}`)));
        close(gs.echo.scores, port.golden_stick.echo, 'golden-stick echo');
        close(gs.induction.scores, port.golden_stick.induction, 'golden-stick induction');
        close(ms.echo.scores, port.msmodelslim.echo, 'msmodelslim echo');
        close(ms.induction.scores, port.msmodelslim.induction, 'msmodelslim induction');
        selections.forEach(({ grid, ratio }, i) => {
          assert.deepEqual(topFraction(grid, ratio), port.selections[i].by_value, `by value, ratio ${ratio}`);
          assert.deepEqual(topFraction(grid, ratio, { minOne: true, ties: 'first' }), port.selections[i].exact_min1, `exact min1, ratio ${ratio}`);
        });
      }
    } finally {
      dispose(gqa);
    }
  });
});
