import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  RetrievalScorer,
  fromRetrievalHeadJson,
  lastRowArgmax,
  mergeRetrievalHeadJson,
  needleSpan,
  retrievalHeads,
  retrievalScoreStep,
  scoreRetrievalSample,
  toRetrievalHeadJson,
  headMaskHooks,
  randomControlHeads,
} from '../src/analyses/retrieval.js';
import { readFileSync } from 'node:fs';
import { generate, randomModel } from '../src/model/index.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { porterStem, rougeRecall1, rougeTokenize } from '../src/analyses/rouge.js';
import { razorInput, razorMasks, razorRetrievalHeads, razorScores, razorScoresForModel, topFraction } from '../src/analyses/razor.js';
import { ConfigError, FormatError, ValueError } from '../src/errors.js';

const near = (a: number, b: number, tol = 1e-9, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);

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
  // prompt ids; needle span [1, 4) holds tokens 10, 11, 12 (increment 1/3 per hit)
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
    // sample A: the trace, response recalls the answer -> counted
    sc.beginSample(ids, span);
    for (const [keys, tok] of trace) sc.step([keys], tok);
    const a = sc.endSample({ answer: 'eat a sandwich', response: 'Eat a sandwich!' });
    assert.equal(a.rouge, 1);
    assert.ok(a.counted);
    // sample B: only step 2 -> head0 1/3, head1 1/3; response recalls exactly half -> not counted (needs > 0.5)
    sc.beginSample(ids, span);
    sc.step([[2, 2, 5]], 11);
    const b = sc.endSample({ answer: 'blue whale', response: 'a blue car' });
    near(b.rouge, 0.5);
    assert.equal(b.counted, false);
    // sample C: only step 1 -> head0 1/3; counted
    sc.beginSample(ids, span);
    sc.step([[1, 2, 0]], 10);
    sc.endSample({ rouge: 0.75 });
    const hs = sc.headScores({ model: 'toy' });
    // means over A and C: head0 (4/3 + 1/3)/2 = 5/6, head1 (2/3 + 0)/2 = 1/3, head2 (1/3 + 0)/2 = 1/6
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
    const merged = mergeRetrievalHeadJson(json, { '0-0': [1] });
    assert.equal(merged['0-0'].length, 3);
    assert.throws(() => fromRetrievalHeadJson('{"0-0": [1, "x"]}'), FormatError);
    assert.throws(() => fromRetrievalHeadJson('{"a": []}'), FormatError);
    assert.throws(() => fromRetrievalHeadJson('not json'), FormatError);
  });

  it('argmax keys from per-layer patterns (lowest index on ties), no leaks', () => {
    const before = tf.memory().numTensors;
    // [batch 1, heads 2, q 2, k 3]; last rows: head0 [.2 .5 .3] -> 1, head1 [.4 .2 .4] -> 0 (tie)
    const p = tf.tensor4d([[[[1, 0, 0], [0.2, 0.5, 0.3]], [[1, 0, 0], [0.4, 0.2, 0.4]]]]);
    assert.deepEqual(lastRowArgmax([p, p]), [[1, 0], [1, 0]]);
    const sc = new RetrievalScorer({ nLayers: 2, nHeads: 2 });
    sc.beginSample([5, 6, 7], { start: 1, end: 2 });
    const hits = sc.step([p, p], 6);
    assert.deepEqual(hits, [[true, false], [true, false]]);
    p.dispose();
    assert.equal(tf.memory().numTensors, before);
    assert.throws(() => sc.beginSample([1], null), ValueError);
    assert.throws(() => new RetrievalScorer({ nLayers: 0, nHeads: 1 }), ConfigError);
  });
});

describe('ROUGE-1 recall (rouge_score with the Porter stemmer)', () => {
  it('Porter stemmer (NLTK mode) on the paper examples', () => {
    const cases: Record<string, string> = {
      caresses: 'caress', ponies: 'poni', ties: 'tie', caress: 'caress', cats: 'cat', feed: 'feed', agreed: 'agre',
      plastered: 'plaster', bled: 'bled', motoring: 'motor', sing: 'sing', conflated: 'conflat', troubled: 'troubl',
      sized: 'size', hopping: 'hop', tanned: 'tan', falling: 'fall', hissing: 'hiss', fizzed: 'fizz', failing: 'fail',
      filing: 'file', happy: 'happi', sky: 'sky', relational: 'relat', conditional: 'condit', rational: 'ration',
      generalization: 'gener', hopefulness: 'hope', formative: 'form', adjustable: 'adjust', dying: 'die',
      dolores: 'dolor', sunny: 'sunni', running: 'run', sandwich: 'sandwich', enjoy: 'enjoy', spied: 'spi', died: 'die',
      // steps 3-5 of the paper, NLTK's alli/logi rules, and the first-matching-suffix-decides rule (agreement)
      generously: 'gener', organization: 'organ', university: 'univers', happiness: 'happi', probate: 'probat',
      controll: 'control', roll: 'roll', cease: 'ceas', rate: 'rate', triplicate: 'triplic', electrical: 'electr',
      goodness: 'good', revival: 'reviv', allowance: 'allow', inference: 'infer', airliner: 'airlin', gyroscopic: 'gyroscop',
      defensible: 'defens', irritant: 'irrit', replacement: 'replac', adjustment: 'adjust', dependent: 'depend',
      adoption: 'adopt', homologous: 'homolog', communism: 'commun', activate: 'activ', angularity: 'angular',
      effective: 'effect', bowdlerize: 'bowdler', radically: 'radic', geology: 'geolog', skies: 'sky', news: 'news',
      agreement: 'agreement',
    };
    for (const [w, s] of Object.entries(cases)) assert.equal(porterStem(w), s, w);
  });

  it('tokenisation and hand-computed recalls', () => {
    assert.deepEqual(rougeTokenize("San-Francisco's best!", { useStemmer: false }), ['san', 'francisco', 's', 'best']);
    // reference 12 tokens: eat a sandwich and sit in dolor park on a sunni day; response matches 8
    // (eat, a (min(2,1)), sandwich, and, sit, in, dolor, park)
    near(rougeRecall1('eat a sandwich and sit in Dolores Park on a sunny day.', 'Eat a sandwich and sit in Dolores Park.'), 8 / 12);
    // clipping: ref a a b, response a b b -> (1 + 1... min(2,1) + min(1,2)) / 3 = 2/3
    near(rougeRecall1('a a b', 'a b b'), 2 / 3);
    // stemming matters: running dogs vs the dog runs
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

  it('masks with the BOS offset (and the port masks without it)', () => {
    const { echo, induction } = razorMasks(n, { R });
    const ones = (M: number[][]) => M.flatMap((r, i) => r.map((v, j) => (v ? `${i},${j}` : ''))).filter(Boolean);
    assert.deepEqual(ones(echo), ['3,1', '4,2', '5,1', '5,3', '6,2', '6,4', '7,1', '7,3', '7,5', '8,2', '8,4', '8,6']);
    assert.deepEqual(ones(induction), ['3,2', '4,3', '5,2', '5,4', '6,3', '6,5', '7,2', '7,4', '7,6', '8,3', '8,5', '8,7']);
    // the port's un-offset masks add the BOS column for even rows (2, 4, 6, 8)
    const port = razorMasks(n, { R, bos: false });
    assert.deepEqual(ones(port.echo).filter((x) => x.endsWith(',0')), ['2,0', '4,0', '6,0', '8,0']);
    const ids = razorInput({ R: 3, seed: 7, bosId: 1, lo: 10, hi: 20 });
    assert.equal(ids.length, 13);
    assert.equal(ids[0], 1);
    assert.deepEqual(ids.slice(1, 4), ids.slice(4, 7));
    assert.deepEqual(ids.slice(1, 4), ids.slice(10, 13));
  });

  it('scores on hand-built patterns, GQA max, selection', () => {
    const before = tf.memory().numTensors;
    const { echo, induction } = razorMasks(n, { R });
    const uniformOver = (M: number[][], fallback: (i: number) => number) =>
      M.map((row, i) => {
        const c = row.reduce((a, b) => a + b, 0);
        return c ? row.map((v) => v / c) : row.map((_, j) => (j === fallback(i) ? 1 : 0));
      });
    const hEcho = uniformOver(echo, () => 0); // perfect echo head: 6 rows with full echo mass -> 6/81
    const hInd = uniformOver(induction, () => 0); // perfect induction head -> 6/81
    const hBos = Array.from({ length: n }, () => Array.from({ length: n }, (_, j) => (j === 0 ? 1 : 0))); // 0, 0
    const hPrev = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === 0 ? (j === 0 ? 1 : 0) : j === i - 1 ? 1 : 0)));
    // prev-token head: A[i,i-1] is an induction target for i >= 3 -> 6/81; echo 0
    const L0 = tf.tensor4d([[hEcho, hInd, hBos, hPrev]]);
    const L1 = tf.tensor4d([[hBos, hBos, hBos, hEcho]]);
    const res = razorScores([L0, L1], { R, nKvHeads: 2 });
    const e = res.echoPerQueryHead;
    const ind = res.inductionPerQueryHead;
    near(e[0][0], 6 / 81, 1e-6);
    near(e[0][1], 0, 1e-7);
    near(e[0][2], 0, 1e-7);
    near(e[0][3], 0, 1e-7);
    near(ind[0][0], 0, 1e-7);
    near(ind[0][1], 6 / 81, 1e-6);
    near(ind[0][3], 6 / 81, 1e-6);
    // GQA: KV0 = max(h0, h1), KV1 = max(h2, h3)
    near(res.echo.scores[0][0], 6 / 81, 1e-6);
    near(res.echo.scores[0][1], 0, 1e-7);
    near(res.echo.scores[1][1], 6 / 81, 1e-6);
    near(res.induction.scores[0][1], 6 / 81, 1e-6);
    assert.equal(res.echo.nHeads, 2);
    // port masks (no BOS offset): the BOS head gets echo credit on even rows: 4/81
    const port = razorScores([L0], { R, bos: false });
    near(port.echoPerQueryHead[0][2], 4 / 81, 1e-6);
    // selection on 4 KV heads: echo top round(4*.5)=2 -> (0,0),(1,1); induction top round(4*.25)=1 (ties kept)
    const sel = razorRetrievalHeads(res, { echoRatio: 0.5, inductionRatio: 0.25 });
    assert.deepEqual(sel.echo, [[0, 0], [1, 1]]);
    // induction: KV0 (via h1) and KV1 (via h3) of layer 0 both score 6/81 up to float rounding
    assert.ok(sel.induction.length >= 1 && sel.induction.every(([l]) => l === 0));
    const names = sel.heads.map(([l, h]) => `${l}.${h}`);
    assert.ok(names.includes('0.0') && names.includes('1.1'));
    assert.deepEqual(sel.byLayer['1'], [1]);
    [L0, L1].forEach((t) => t.dispose());
    assert.equal(tf.memory().numTensors, before);
  });

  it('topFraction: Python rounding (half to even), at least one, ties kept', () => {
    const g250 = [Array.from({ length: 250 }, (_, i) => i)];
    assert.deepEqual(topFraction(g250, 0.01), [[0, 248], [0, 249]]); // round(2.5) = 2
    const g350 = [Array.from({ length: 350 }, (_, i) => i)];
    assert.equal(topFraction(g350, 0.01).length, 4); // round(3.5) = 4
    assert.deepEqual(topFraction([[1, 5, 3]], 0.01), [[0, 1]]); // round(0.03) = 0 -> at least 1
    assert.deepEqual(topFraction([[5, 1], [5, 0]], 0.25), [[0, 0], [1, 0]]); // tie at the cut
    assert.throws(() => topFraction([[1]], 2), ConfigError);
  });
});

describe('retrieval scoring on a model (random-init LLaMA)', function () {
  this.timeout(120000);
  it('pairs each generated token with the patterns of its forward; forced copy head scores steps/span', () => {
    const cfg = JSON.parse(readFileSync('fixtures/reference/llama/config.json', 'utf8'));
    const model = randomModel({ ...cfg, num_hidden_layers: 3 }, { seed: 9, std: 0.3 });
    const prompt = [1, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38];
    const answer = [30, 31, 32, 33]; // needle span [11, 15)
    const T = prompt[12]; // = 31
    // force: the model always generates T, and head (1, 0) always attends to key 12 (once visible)
    const force: HookSpec[] = [
      ['unembed.hook_out', (x) => tf.tidy(() => tf.add(x, tf.oneHot([T], x.shape[2] as number).mul(1000).reshape([1, 1, x.shape[2] as number])))],
      [
        'blocks.1.attn.hook_attn_scores',
        (x) =>
          tf.tidy(() => {
            const [b, h, q, k] = x.shape;
            const bump = tf.buffer([1, h, 1, k]);
            if (k > 12) bump.set(100, 0, 0, 0, 12);
            return tf.add(x, bump.toTensor());
          }),
      ],
    ];
    // generate itself may hold tensors back: measure it without scoring hooks
    const s0 = tf.memory().numTensors;
    generate(model, [prompt], { maxNewTokens: 5, fwdHooks: force });
    const plainLeak = tf.memory().numTensors - s0;
    const start = tf.memory().numTensors;
    const scorer = new RetrievalScorer({ nLayers: 3, nHeads: 4 });
    const r = scoreRetrievalSample(model, scorer, prompt, answer, { maxNewTokens: 5, fwdHooks: force });
    assert.deepEqual(r.tokens, [T, T, T, T, T]);
    assert.deepEqual(r.sample.span, { start: 11, end: 15 });
    near(r.sample.scores[1][0], 5 / 4, 1e-12); // hit at every step: 5 x 1/4 (> 1)
    near(r.sample.rouge, 1 / 4); // answer unigrams 30..33 vs response [31 x 5]: 1 of 4
    assert.equal(r.sample.counted, false);
    // independent recomputation of every head from recorded patterns
    const recorded: number[][][] = []; // per forward: per layer, last-row argmax per head
    let cur: number[][] = [];
    const rec: HookSpec = [
      (n: string) => /^blocks\.\d+\.attn\.hook_pattern$/.test(n),
      (act, ctx) => {
        const a = act.arraySync() as number[][][][];
        cur[ctx.layer as number] = a[0].map((M) => {
          const row = M[M.length - 1];
          return row.indexOf(Math.max(...row));
        });
        if (ctx.layer === 2) {
          recorded.push(cur);
          cur = [];
        }
      },
    ];
    const sc2 = new RetrievalScorer({ nLayers: 3, nHeads: 4 });
    const r2 = scoreRetrievalSample(model, sc2, prompt, answer, { maxNewTokens: 5, fwdHooks: [...force, rec] });
    assert.equal(recorded.length, 5);
    const exp = [0, 1, 2].map(() => [0, 0, 0, 0]);
    recorded.forEach((keys, step) => {
      const hits = retrievalScoreStep(keys, r2.tokens[step], prompt, { start: 11, end: 15 });
      hits.forEach((row, l) => row.forEach((h, hh) => (exp[l][hh] += h ? 1 / 4 : 0)));
    });
    exp.forEach((row, l) => row.forEach((v, h) => near(r2.sample.scores[l][h], v, 1e-12, `${l}.${h}`)));
    assert.equal(tf.memory().numTensors, start + 2 * plainLeak);
    Object.values(model.params).forEach((t) => t.dispose());
  });
});

describe('masking experiment helpers and Razor on a model', function () {
  this.timeout(120000);
  const cfg = JSON.parse(readFileSync('fixtures/reference/llama/config.json', 'utf8'));

  it('headMaskHooks: uniform attention for the masked head while decoding only', () => {
    const model = randomModel({ ...cfg, num_hidden_layers: 2 }, { seed: 4, std: 0.3 });
    const seen: number[][][][][] = [];
    const rec: HookSpec = ['blocks.1.attn.hook_pattern', (a) => void seen.push(a.arraySync() as number[][][][])];
    const base: number[][][][][] = [];
    const recBase: HookSpec = ['blocks.1.attn.hook_pattern', (a) => void base.push(a.arraySync() as number[][][][])];
    const prompt = [[1, 5, 6, 7, 8]];
    generate(model, prompt, { maxNewTokens: 3, fwdHooks: [recBase] });
    const out = generate(model, prompt, { maxNewTokens: 3, fwdHooks: [...headMaskHooks([[1, 0]]), rec] });
    assert.equal(seen.length, 3);
    // prefill untouched (same as the unmasked run)
    for (let h = 0; h < 4; h++) {
      seen[0][0][h].forEach((row, i) => row.forEach((v, j) => near(v, base[0][0][h][i][j], 1e-6)));
    }
    // decoding: head 0 uniform over the k visible keys, head 1 not
    for (const step of [1, 2]) {
      const row = seen[step][0][0][0];
      row.forEach((v) => near(v, 1 / row.length, 1e-6, `step ${step}`));
      assert.ok(seen[step][0][1][0].some((v) => Math.abs(v - 1 / row.length) > 1e-4));
    }
    assert.equal(out.tokens[0].length, 3);
    // masking in prefill too
    const pre: number[][][][][] = [];
    model.runWithHooks(prompt, { fwdHooks: [...headMaskHooks([[1, 0]], { onlyDecoding: false }), ['blocks.1.attn.hook_pattern', (a) => void pre.push(a.arraySync() as number[][][][])]] }).dispose();
    pre[0][0][0].forEach((row, i) => row.forEach((v, j) => near(v, j <= i ? 1 / (i + 1) : 0, 1e-6)));
    Object.values(model.params).forEach((t) => t.dispose());
  });

  it('randomControlHeads: seeded, outside the top set', () => {
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
    assert.deepEqual(randomControlHeads(grid, 7, { exclude: 5, seed: 2 }).length, 7);
    assert.throws(() => randomControlHeads(grid, 8, { exclude: 5, seed: 1 }), ConfigError);
  });

  it('razorScoresForModel equals razorScores on the cached probe patterns', () => {
    const model = randomModel({ ...cfg, num_hidden_layers: 2 }, { seed: 6, std: 0.3 });
    const start = tf.memory().numTensors;
    const r = razorScoresForModel(model, { R: 5, seed: 3, lo: 3 });
    assert.equal(r.ids.length, 21);
    assert.equal(r.ids[0], 1);
    assert.equal(r.echo.nHeads, 2); // GQA: 4 query heads, 2 KV heads
    const names = ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_pattern'] as const;
    const { logits, cache } = model.runWithCache([r.ids], { namesFilter: [...names] });
    const ref = razorScores(names.map((n) => cache.get(n)), { R: 5, nKvHeads: 2 });
    logits.dispose();
    cache.dispose();
    ref.echo.scores.forEach((row, l) => row.forEach((v, h) => near(r.echo.scores[l][h], v, 1e-9)));
    ref.induction.scores.forEach((row, l) => row.forEach((v, h) => near(r.induction.scores[l][h], v, 1e-9)));
    assert.equal(tf.memory().numTensors, start);
    Object.values(model.params).forEach((t) => t.dispose());
  });
});
