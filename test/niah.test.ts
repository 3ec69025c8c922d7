import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  decodeNeedles,
  maskingExperiment,
  needleFromTokens,
  niahGrid,
  niahHeatmap,
  niahHeatmaps,
  retrievalGridFromArgs,
  syntheticSamples,
  type NiahSample,
} from '../src/analyses/niah.js';
import { headMaskHooks, toRetrievalHeadJson } from '../src/analyses/retrieval.js';
import { razorScoresForModel } from '../src/analyses/razor.js';
import { loadModel, randomModel, type HookedTransformer } from '../src/model/index.js';
import { buildInductionHandmade } from '../src/zoo/model-zoo.js';
import { main } from '../src/cli/main.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { rng } from '../src/util/random.js';
import { ConfigError, ValueError } from '../src/errors.js';

const near = (a: number, b: number, tol = 1e-9, msg = '') => assert.ok(Math.abs(a - b) <= tol, `${msg} ${a} vs ${b}`);

// The hand-made induction model (fixtures/models/induction-handmade): head 0.0 attends to the
// previous token, head 1.0 attends to the token after the previous occurrence of the current token
// and copies it; heads 0.1 and 1.1 are zero. Vocabulary: 0 <bos>, 1 <unk>, 2.. syllables.
const HANDMADE = 'fixtures/models/induction-handmade';
async function handmade(): Promise<HookedTransformer> {
  return existsSync(path.join(HANDMADE, 'model.safetensors')) ? loadModel(HANDMADE) : buildInductionHandmade();
}

// Token roles for needles the induction model copies: period 2, key marker 3, value marker 4,
// question marker 5, keys 6..9, first values 10..12, second values 13..15, filler 16..31.
const PERIOD = 2;
const FILLER = Array.from({ length: 16 }, (_, i) => 16 + i);

/** needle = [3, K, ., 4, V1, V2, .]; question = [5, K, 4]; the model should answer V1 V2 . */
function copySample(length: number, depth: number, seed: number): NiahSample & { v1: number; v2: number } {
  const r = rng(seed);
  const K = 6 + r.int(4);
  const v1 = 10 + r.int(3);
  const v2 = 13 + r.int(3);
  const hay: number[] = [];
  while (hay.length < 40) {
    const n = r.range(3, 6);
    for (let i = 0; i < n; i++) hay.push(r.choice(FILLER));
    hay.push(PERIOD);
  }
  const needle = [3, K, PERIOD, 4, v1, v2, PERIOD];
  const ex = needleFromTokens({ haystack: hay, needle, question: [5, K, 4], answer: [v1, v2], contextLength: length - 4, depth, boundaryTokens: [PERIOD], bosId: 0 });
  return { ...ex, needle, v1, v2 };
}

describe('needleFromTokens', () => {
  it('repeats the haystack, moves the needle back to a boundary, appends the question', () => {
    // haystack repeated to 10 - 2 = 8 tokens: [10 11 2 12 13 2 10 11]; depth 0.5 -> index 4, moved back to 3 (after the period at 2)
    const ex = needleFromTokens({ haystack: [10, 11, 2, 12, 13, 2], needle: [7, 8], question: [5, 6], answer: [8], contextLength: 10, depth: 0.5, boundaryTokens: [2], bosId: 0 });
    assert.deepEqual(ex.tokens, [0, 10, 11, 2, 7, 8, 12, 13, 2, 10, 11, 5, 6]);
    assert.deepEqual(ex.needleSpan, [4, 6]);
    assert.deepEqual(ex.valueSpan, [5, 6]);
    assert.equal(ex.requestedAt, 4);
    assert.equal(ex.insertAt, 3);
    assert.deepEqual(ex.questionSpan, [11, 13]);
    // depth 0 and 1, no BOS
    assert.deepEqual(needleFromTokens({ haystack: [10, 2], needle: [7], question: [5], answer: [7], contextLength: 3, depth: 0, boundaryTokens: [2] }).tokens, [7, 10, 2, 5]);
    assert.deepEqual(needleFromTokens({ haystack: [10, 2], needle: [7], question: [5], answer: [7], contextLength: 3, depth: 1, boundaryTokens: [2] }).tokens, [10, 2, 7, 5]);
    assert.throws(() => needleFromTokens({ haystack: [10], needle: [7, 8], question: [], answer: [7], contextLength: 2, depth: 0, boundaryTokens: [2] }), ValueError);
  });
});

describe('decodeNeedles (prefill prompt[:-1], decode from the last prompt token)', function () {
  this.timeout(120000);
  const cfg = JSON.parse(readFileSync('fixtures/reference/llama/config.json', 'utf8'));

  it('tokens and per-step argmax keys equal a brute-force loop of full forwards', () => {
    const model = randomModel({ ...cfg, num_hidden_layers: 2 }, { seed: 11, std: 0.3 });
    const prompts = [
      [1, 20, 21, 22, 23, 24, 25, 26, 27, 28],
      [1, 40, 41, 42, 40, 41, 43, 44, 45, 46],
    ];
    const before = tf.memory().numTensors;
    const res = decodeNeedles(model, prompts, { maxNewTokens: 5, recordKeys: true });
    assert.equal(tf.memory().numTensors, before);
    const names = ['blocks.0.attn.hook_pattern', 'blocks.1.attn.hook_pattern'] as const;
    prompts.forEach((p, b) => {
      const seq = p.slice();
      for (let step = 0; step < 5; step++) {
        const { logits, cache } = model.runWithCache([seq], { namesFilter: [...names] });
        const last = (logits.arraySync() as number[][][])[0][seq.length - 1];
        const tok = last.indexOf(Math.max(...last));
        const keys = names.map((n) => (cache.get(n).arraySync() as number[][][][])[0].map((M) => {
          const row = M[seq.length - 1];
          return row.indexOf(Math.max(...row));
        }));
        logits.dispose();
        cache.dispose();
        assert.equal(res.tokens[b][step], tok, `row ${b} step ${step}`);
        assert.deepEqual(res.keys![b][step], keys, `row ${b} step ${step} keys`);
        seq.push(tok);
      }
    });
    Object.values(model.params).forEach((t) => t.dispose());
  });

  it('headMaskHooks act on the decoded positions only (the last prompt token included)', () => {
    const model = randomModel({ ...cfg, num_hidden_layers: 2 }, { seed: 5, std: 0.3 });
    const prompt = [1, 30, 31, 32, 33, 34, 35, 36];
    const T = prompt.length;
    const res = decodeNeedles(model, [prompt], { maxNewTokens: 4, fwdHooks: headMaskHooks([[1, 0], [0, 3]]) });
    // brute force: full forwards where rows q >= T - 1 of heads 1.0 and 0.3 have their scores set to 0
    const zeroRows = (head: number): HookSpec[1] => (x) =>
      tf.tidy(() => {
        const [, H, Q, K] = x.shape;
        const keep = tf.buffer([1, H, Q, 1]);
        for (let h = 0; h < H; h++) for (let q = 0; q < Q; q++) keep.set(h === head && q >= T - 1 ? 0 : 1, 0, h, q, 0);
        return tf.mul(x, tf.broadcastTo(keep.toTensor(), [1, H, Q, K]));
      });
    const seq = prompt.slice();
    const ref: number[] = [];
    for (let step = 0; step < 4; step++) {
      const logits = model.runWithHooks([seq], { fwdHooks: [['blocks.1.attn.hook_attn_scores', zeroRows(0)], ['blocks.0.attn.hook_attn_scores', zeroRows(3)]] });
      const last = (logits.arraySync() as number[][][])[0][seq.length - 1];
      logits.dispose();
      const tok = last.indexOf(Math.max(...last));
      ref.push(tok);
      seq.push(tok);
    }
    assert.deepEqual(res.tokens[0], ref);
    const plain = decodeNeedles(model, [prompt], { maxNewTokens: 4 });
    assert.notDeepEqual(plain.tokens[0], ref, 'masking should change this random model\'s output');
    Object.values(model.params).forEach((t) => t.dispose());
  });

  it('stop tokens end a row (kept), other rows continue; bad input is refused', () => {
    const model = randomModel({ ...cfg, num_hidden_layers: 1 }, { seed: 2, std: 0.3 });
    const free = decodeNeedles(model, [[1, 20, 21, 22]], { maxNewTokens: 6 });
    const stopAt = free.tokens[0][1];
    const res = decodeNeedles(model, [[1, 20, 21, 22], [1, 20, 21, 22]], { maxNewTokens: 6, stopTokens: [stopAt] });
    const cut = free.tokens[0].indexOf(stopAt) + 1;
    assert.deepEqual(res.tokens[0], free.tokens[0].slice(0, cut));
    assert.deepEqual(res.tokens[1], res.tokens[0]);
    assert.throws(() => decodeNeedles(model, [[1]], { maxNewTokens: 2 }), ValueError);
    assert.throws(() => decodeNeedles(model, [[1, 2], [1, 2, 3]], { maxNewTokens: 2 }));
    assert.throws(() => decodeNeedles(model, [[1, 2]], { maxNewTokens: 0 }), ValueError);
    Object.values(model.params).forEach((t) => t.dispose());
  });
});

describe('niahGrid on the hand-made copy model', function () {
  this.timeout(300000);
  let model: HookedTransformer;
  before(async () => {
    model = await handmade();
  });
  after(() => model?.dispose?.());

  it('accuracy 1 everywhere; retrieval score of the copy head = copied needle tokens / needle length', () => {
    const before = tf.memory().numTensors;
    const lengths = [24, 40, 56];
    const depths = [0, 0.5, 1];
    const g = niahGrid(model, { lengths, depths, makeSample: copySample, samplesPerCell: 2, maxNewTokens: 5, stopTokens: [PERIOD], seed: 7, scorer: true, onProgress: false, decode: () => 'no match' });
    assert.equal(tf.memory().numTensors, before);
    g.rouge.flat().forEach((v) => assert.equal(v, 1));
    g.exact.flat().forEach((v) => assert.equal(v, 1));
    assert.deepEqual(g.mean, { rouge: 1, exact: 1 });
    // every sample: V1 V2 . (the period stops decoding); the samples are the maker's with the grid seeds
    g.samples.forEach((row, li) =>
      row.forEach((cell, di) => {
        assert.equal(cell.length, 2);
        cell.forEach((s) => {
          const ex = copySample(lengths[li], depths[di], s.seed);
          assert.equal(s.promptLength, lengths[li]);
          assert.deepEqual(s.generated, [ex.v1, ex.v2, PERIOD]);
          assert.equal(s.response, 'no match'); // the decoder's text is reported; id-only answers are scored on ids
        });
      }),
    );
    // head 1.0 copies V1, V2 and the period from the needle (7 tokens): 3/7 per sample; head 0.0
    // looks at the previous (question or generated) token, the zero heads at BOS: 0
    near(g.scores!.scores[1][0], 3 / 7, 1e-12);
    for (const [l, h] of [[0, 0], [0, 1], [1, 1]]) assert.equal(g.scores!.scores[l][h], 0, `${l}.${h}`);
    assert.equal(g.scores!.data?.counted, 18);
    assert.equal(g.authorJson!['1-0'].length, 18);
    g.authorJson!['1-0'].forEach((v) => near(v, 3 / 7, 1e-12));
    assert.deepEqual(g.authorJson, toRetrievalHeadJson(g.scorer!));
    // set variant: |{V1, V2, .}| / |{3, K, ., 4, V1, V2}| = 1/2; answer span only: V1 V2 of 2 -> 2/2 (code)
    const gs = niahGrid(model, { lengths: [40], depths: [0.5], makeSample: copySample, maxNewTokens: 5, stopTokens: [PERIOD], seed: 7, scorer: { variant: 'set' }, onProgress: false });
    near(gs.scores!.scores[1][0], 1 / 2, 1e-12);
    const ga = niahGrid(model, { lengths: [40], depths: [0.5], makeSample: copySample, maxNewTokens: 5, stopTokens: [PERIOD], seed: 7, scorer: true, spanOf: 'answer', onProgress: false });
    near(ga.scores!.scores[1][0], 1, 1e-12);
    // the heatmap: rows lengths, columns depths in %
    const fig = niahHeatmap(g);
    assert.deepEqual(fig.data[0].z, g.rouge);
    assert.deepEqual(fig.data[0].x, ['0%', '50%', '100%']);
    const two = niahHeatmaps([{ grid: g, title: 'a' }, { grid: gs, title: 'b' }], { metric: 'exact' });
    assert.equal(two.data.length, 2);
    assert.deepEqual(two.data[0].z, g.exact);
    assert.deepEqual(two.data[1].z, gs.exact);
    assert.deepEqual([two.data[1].xaxis, two.data[1].yaxis, two.data[0].showscale, two.data[1].showscale], ['x2', 'y2', false, true]);
    const [d1, d2] = [two.layout.xaxis!.domain as number[], two.layout.xaxis2 as { domain: number[] }];
    assert.ok(d1[1] < d2.domain[0], 'panels side by side');
    assert.deepEqual(two.layout.annotations!.map((a) => a.text), ['a (mean 1.00)', 'b (mean 1.00)']);
  });

  it('text and token sources give the same grid; ROUGE on text', () => {
    const tk = model.tokenizer!;
    const names = model.toStrTokens(Array.from({ length: 32 }, (_, i) => i));
    const w = (ids: number[]) => ids.map((i) => names[i]).join(' ');
    const hayIds = [16, 17, 18, PERIOD, 19, 20, 21, 22, PERIOD, 23, 24, 25, PERIOD];
    const needles = [
      { needle: [3, 6, PERIOD, 4, 10, 14, PERIOD], question: [5, 6, 4], answer: [10, 14] },
      { needle: [3, 8, PERIOD, 4, 12, 13, PERIOD], question: [5, 8, 4], answer: [12, 13] },
    ];
    assert.deepEqual(tk.encode(w(hayIds)), hayIds);
    const common = { lengths: [20, 36], depths: [0, 0.4, 1], maxNewTokens: 4, stopTokens: [PERIOD], seed: 0, scorer: true, onProgress: false as const };
    const byIds = niahGrid(model, { ...common, source: { haystackTokens: hayIds, needles, boundaryTokens: [PERIOD] } });
    const byText = niahGrid(model, {
      ...common,
      source: { haystack: w(hayIds), needles: needles.map((n) => ({ needle: w(n.needle), question: w(n.question), answer: w(n.answer) })), boundaryTokens: [PERIOD] },
    });
    assert.deepEqual(byText.rouge, byIds.rouge);
    assert.deepEqual(byText.exact, byIds.exact);
    assert.deepEqual(byText.authorJson, byIds.authorJson);
    byText.samples.flat(2).forEach((s, i) => {
      const ids = byIds.samples.flat(2)[i];
      assert.deepEqual(s.generated, ids.generated);
      assert.equal(s.response, w(s.generated));
      assert.equal(ids.response, s.response);
    });
    assert.equal(byText.mean.rouge, 1);
    near(byText.scores!.scores[1][0], 3 / 7, 1e-12);
  });

  it('masking: top-1 (the copy head) collapses retrieval, masking a zero head changes nothing', () => {
    const grid = { lengths: [24, 48], depths: [0, 0.5, 1], makeSample: copySample, samplesPerCell: 2, maxNewTokens: 5, stopTokens: [PERIOD], seed: 3, onProgress: false as const };
    const scores = [
      [0.2, 0],
      [0.9, 0.1],
    ];
    const before = tf.memory().numTensors;
    const m = maskingExperiment(model, scores, { K: 1, N: 2, seed: 1, grid });
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(m.topHeads, [[1, 0]]);
    // random head outside the top 2 (1.0, 0.0): 0.1 or 1.1, both zero heads
    assert.equal(m.randomHeads.length, 1);
    assert.ok(['0.1', '1.1'].includes(m.randomHeads[0].join('.')));
    assert.equal(m.summary.unmasked.exact, 1);
    assert.equal(m.summary.randomMasked.exact, 1);
    assert.deepEqual(m.randomMasked.samples.flat(2).map((s) => s.generated), m.unmasked.samples.flat(2).map((s) => s.generated));
    // head 1.0 attends uniformly while decoding: V1 is never produced
    assert.ok(m.summary.topMasked.rouge < 0.5, `top-1 masked ROUGE ${m.summary.topMasked.rouge}`);
    m.topMasked.samples.flat(2).forEach((s) => assert.equal(s.exact, false));
    // an explicit grid with the copy head masked equals the experiment's
    const direct = niahGrid(model, { ...grid, fwdHooks: headMaskHooks([[1, 0]]) });
    assert.deepEqual(direct.rouge, m.topMasked.rouge);
    assert.throws(() => maskingExperiment(model, scores, { K: 1, N: 4, seed: 1, grid }), ConfigError);
    assert.throws(() => maskingExperiment(model, [[1, 2]], { K: 1, seed: 1, grid }));
  });

  it('bad grids fail before decoding with typed errors', () => {
    assert.throws(() => niahGrid(model, { lengths: [], depths: [0], makeSample: copySample, seed: 0, onProgress: false }), ConfigError);
    assert.throws(() => niahGrid(model, { lengths: [24], depths: [1.5], makeSample: copySample, seed: 0, onProgress: false }), ConfigError);
    assert.throws(() => niahGrid(model, { lengths: [24], depths: [0], seed: 0, onProgress: false }), ConfigError);
    // learned positions: prompt + maxNewTokens - 1 must fit n_ctx = 64
    assert.throws(() => niahGrid(model, { lengths: [60], depths: [0], makeSample: copySample, maxNewTokens: 8, seed: 0, onProgress: false }), ValueError);
    assert.throws(
      () => niahGrid(model, { lengths: [24], depths: [0], makeSample: () => ({ tokens: [0, 99], answer: [1] }), seed: 0, onProgress: false }),
      ValueError,
    );
  });
});

describe('niahGrid on the shipped recall model (when present)', function () {
  this.timeout(300000);
  const RECALL = 'fixtures/models/recall';

  it('answers and retrieval scores equal a recomputation from full forwards', async function () {
    if (!existsSync(path.join(RECALL, 'model.safetensors'))) this.skip();
    const model = await loadModel(RECALL);
    const format = JSON.parse(readFileSync(path.join(RECALL, 'task.json'), 'utf8')).format;
    const make = syntheticSamples(format);
    const g = niahGrid(model, { lengths: [48, 96], depths: [0, 0.5, 1], makeSample: make, samplesPerCell: 2, maxNewTokens: 1, seed: 9, scorer: true, onProgress: false });
    const L = model.cfg.n_layers;
    const H = model.cfg.n_heads;
    const names = Array.from({ length: L }, (_, l) => `blocks.${l}.attn.hook_pattern`);
    const sum = Array.from({ length: L }, () => new Array<number>(H).fill(0));
    let counted = 0;
    let correct = 0;
    const all = g.samples.flat(2);
    for (const s of all) {
      const ex = make(s.length, s.depth, s.seed);
      const { logits, cache } = model.runWithCache([ex.tokens], { namesFilter: names });
      const last = (logits.arraySync() as number[][][])[0][ex.tokens.length - 1];
      const tok = last.indexOf(Math.max(...last));
      assert.deepEqual(s.generated, [tok]);
      const ok = tok === ex.answer[0];
      correct += ok ? 1 : 0;
      assert.equal(s.exact, ok);
      assert.equal(s.rouge, ok ? 1 : 0);
      if (ok) {
        counted++;
        const [a, b] = ex.needleSpan;
        names.forEach((n, l) =>
          (cache.get(n).arraySync() as number[][][][])[0].forEach((M, h) => {
            const row = M[ex.tokens.length - 1];
            const j = row.indexOf(Math.max(...row));
            if (j >= a && j < b && ex.tokens[j] === tok) sum[l][h] += 1 / (b - a);
          }),
        );
      }
      logits.dispose();
      cache.dispose();
    }
    near(g.mean.exact, correct / all.length, 1e-12);
    assert.equal(g.scores!.data?.counted, counted);
    sum.forEach((row, l) => row.forEach((v, h) => near(g.scores!.scores[l][h], counted ? v / counted : 0, 1e-12, `${l}.${h}`)));
    assert.ok(g.mean.exact > 0.9, `the recall model retrieves (exact ${g.mean.exact})`);
    model.dispose();
  });
});

describe('CLI: rank --method retrieval | echo | razor-induction', function () {
  this.timeout(300000);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-niah-'));
  const quiet = (s: string) => void s;
  const format = {
    bosId: 0,
    periodToken: PERIOD,
    keyMarker: [3],
    valueMarker: [4],
    questionMarker: [5],
    keyTokens: [6, 7, 8, 9],
    valueTokens: [10, 11, 12],
    fillerTokens: FILLER,
    sentenceLength: [3, 6],
  };

  it('--format retrieval-head writes the authors\' JSON, equal to the library', async function () {
    if (!existsSync(path.join(HANDMADE, 'model.safetensors'))) this.skip();
    const fmtFile = path.join(dir, 'format.json');
    writeFileSync(fmtFile, JSON.stringify(format));
    const out = path.join(dir, 'retrieval.json');
    const code = await main(
      ['rank', HANDMADE, '--method', 'retrieval', '--needle-format', fmtFile, '--lengths', '24,40', '--depths', '0,0.5,1', '--samples', '2', '--max-new-tokens', '3', '--stop-tokens', '2', '--seed', '4', '--format', 'retrieval-head', '--out', out],
      quiet,
    );
    assert.equal(code, 0);
    const json = JSON.parse(readFileSync(out, 'utf8')) as Record<string, number[]>;
    const model = await loadModel(HANDMADE);
    const g = niahGrid(model, { lengths: [24, 40], depths: [0, 0.5, 1], makeSample: syntheticSamples(format as never), samplesPerCell: 2, maxNewTokens: 3, stopTokens: [2], seed: 4, scorer: true, onProgress: false });
    model.dispose();
    assert.deepEqual(json, g.authorJson);
    assert.deepEqual(Object.keys(json), ['0-0', '0-1', '1-0', '1-1']);
    assert.equal(json['1-0'].length, 12);
    assert.ok(json['1-0'].every((v) => v > 0), 'the copy head scores on every sample');
    // csv: the mean scores, head 1.0 first
    const csvFile = path.join(dir, 'retrieval.csv');
    assert.equal(await main(['rank', HANDMADE, '--method', 'retrieval', '--needle-format', fmtFile, '--lengths', '24,40', '--depths', '0,0.5,1', '--samples', '2', '--max-new-tokens', '3', '--stop-tokens', '2', '--seed', '4', '--out', csvFile], quiet), 0);
    const rows = readFileSync(csvFile, 'utf8').trim().split('\n');
    assert.ok(rows[1].startsWith('1,0,'), rows[1]);
    near(Number(rows[1].split(',')[2]), g.scores!.scores[1][0], 1e-9);
  });

  it('echo and razor-induction equal razorScoresForModel', async function () {
    if (!existsSync(path.join(HANDMADE, 'model.safetensors'))) this.skip();
    const model = await loadModel(HANDMADE);
    const ref = razorScoresForModel(model, { R: 12, repeats: 4, seed: 5, lo: 2 });
    model.dispose();
    for (const [method, hs] of [['echo', ref.echo], ['razor-induction', ref.induction]] as const) {
      const out = path.join(dir, `${method}.json`);
      assert.equal(await main(['rank', HANDMADE, '--method', method, '--R', '12', '--seed', '5', '--lo', '2', '--format', 'json', '--out', out], quiet), 0);
      const j = JSON.parse(readFileSync(out, 'utf8'));
      assert.equal(j.method, hs.method);
      assert.equal(j.rows.length, 4);
      for (const r of j.rows as Array<{ layer: number; head: number; score: number }>) near(r.score, hs.scores[r.layer][r.head], 1e-12, `${method} ${r.layer}.${r.head}`);
    }
    // the induction head ranks first by the induction score
    const best = ref.induction.scores.flatMap((r, l) => r.map((v, h) => [v, l, h])).sort((a, b) => b[0] - a[0])[0];
    assert.deepEqual(best.slice(1), [1, 0]);
  });

  it('argument errors are typed and name the flag', () => {
    assert.throws(() => retrievalGridFromArgs({ depths: '0' }, { needleFormat: format }), /--lengths/);
    assert.throws(() => retrievalGridFromArgs({ lengths: '24,x' }, { needleFormat: format }), /--lengths/);
    assert.throws(() => retrievalGridFromArgs({ lengths: '24' }, {}), /--needle-format/);
    assert.throws(() => retrievalGridFromArgs({ lengths: '24', variant: 'max' }, { needleFormat: format }), /--variant/);
    assert.throws(() => retrievalGridFromArgs({ lengths: '24' }, { haystack: 'ba be' }), /--needle/);
    const o = retrievalGridFromArgs({ 'min-length': '20', 'max-length': '40', 'n-lengths': '3', 'n-depths': '3' }, { needleFormat: format });
    assert.deepEqual(o.lengths, [20, 30, 40]);
    assert.deepEqual(o.depths, [0, 0.5, 1]);
  });
});
