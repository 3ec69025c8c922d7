import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { detectionPattern, headSimilarity, detectorScores, detectHeads, detectHead, DETECTOR_KINDS } from '../src/analyses/detectors.js';
import { loadModel, HookedTransformer } from '../src/model/index.js';
import { buildInductionHandmade, inductionEvalBatch, INDUCTION_DESIGN } from '../src/zoo/model-zoo.js';
import { topHeads } from '../src/results.js';
import { loadReference } from './helpers/reference.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ShapeError, ValueError } from '../src/errors.js';
import { rng } from '../src/util/random.js';

const toks = [0, 5, 6, 7, 5, 6, 7]; // BOS + a repeated sequence

function oneHotRows(n: number, target: (i: number) => number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j === target(i) ? 1 : 0)));
}

/** TransformerLens's construction, written independently: duplicate = eq with zero diagonal, tril; induction = duplicate rolled one column right, first column zeroed, tril. */
function tlInduction(t: number[]): number[][] {
  const n = t.length;
  const dup = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i !== j && t[i] === t[j] && j <= i ? 1 : 0)));
  const rolled = dup.map((row) => row.map((_, j) => (j === 0 ? 0 : row[j - 1])));
  return rolled.map((row, i) => row.map((v, j) => (j <= i ? v : 0)));
}

function randomCausal(n: number, r: ReturnType<typeof rng>): number[][] {
  return Array.from({ length: n }, (_, i) => {
    const w = Array.from({ length: n }, (_, j) => (j <= i ? r.next() ** 3 + 1e-3 : 0));
    const s = w.reduce((a, b) => a + b, 0);
    return w.map((x) => x / s);
  });
}

function leftPad(A: number[][], N: number): number[][] {
  const off = N - A.length;
  return Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => (i < off ? (j <= i ? 1 / (i + 1) : 0) : j < off ? 0 : A[i - off][j - off])),
  );
}

describe('detectors: detection patterns', () => {
  it('previous-token, duplicate-token, induction and sink patterns on a repeated sequence', () => {
    const prev = detectionPattern('prev-token', toks);
    assert.deepEqual(prev, oneHotRows(7, (i) => i - 1));
    const dup = detectionPattern('duplicate-token', toks);
    const ones = (P: number[][]) => P.flatMap((r, i) => r.map((v, j) => (v ? `${i},${j}` : ''))).filter(Boolean);
    assert.deepEqual(ones(dup), ['4,1', '5,2', '6,3']);
    const ind = detectionPattern('induction', toks);
    assert.deepEqual(ones(ind), ['4,2', '5,3', '6,4']);
    assert.deepEqual(ones(detectionPattern('sink', [1, 2, 3])), ['0,0', '1,0', '2,0']);
  });

  it('induction matches TransformerLens (shifted duplicate, incl. repeated adjacent tokens)', () => {
    for (const t of [toks, [0, 3, 3, 3], [0, 1, 2, 1, 2, 1, 2, 2], [4, 4, 4, 4, 4]]) {
      assert.deepEqual(detectionPattern('induction', t), tlInduction(t), `tokens ${t}`);
    }
  });
});

describe('detectors: headSimilarity (TransformerLens mul)', () => {
  it('perfect induction / previous-token heads on hand-built patterns', () => {
    const ind = oneHotRows(7, (i) => (i >= 4 ? i - 2 : 0)); // rows 4..6 attend to j = i - 2, others to BOS
    const P = detectionPattern('induction', toks);
    assert.equal(headSimilarity(ind, P), 3 / 7);
    assert.equal(headSimilarity(ind, P, { excludeBos: true }), 1);
    const prev = oneHotRows(7, (i) => Math.max(i - 1, 0));
    const Pp = detectionPattern('prev-token', toks);
    assert.equal(headSimilarity(prev, Pp), 6 / 7);
    assert.equal(headSimilarity(prev, Pp, { excludeBos: true }), 1); // rows 0, 1 (on BOS) drop out
    assert.equal(headSimilarity(prev, Pp, { excludeCurrentToken: true }), 1); // A[0,0] drops out
  });

  it('a mixed head: hand-computed sum(A*P)/sum(A) with exclusions', () => {
    const A = [
      [1, 0, 0],
      [0.3, 0.7, 0],
      [0.2, 0.5, 0.3],
    ];
    const P = detectionPattern('prev-token', [0, 1, 2]); // (1,0), (2,1)
    assert.ok(Math.abs(headSimilarity(A, P) - (0.3 + 0.5) / 3) < 1e-12);
    assert.ok(Math.abs(headSimilarity(A, P, { excludeBos: true }) - 0.5 / 1.5) < 1e-12);
    assert.ok(Math.abs(headSimilarity(A, P, { excludeCurrentToken: true }) - 0.8 / 1.0) < 1e-12);
    assert.ok(Math.abs(headSimilarity(A, P, { excludeBos: true, excludeCurrentToken: true }) - 0.5 / 0.5) < 1e-12);
    // all attention excluded -> 0, not NaN
    assert.equal(headSimilarity(oneHotRows(3, () => 0), P, { excludeBos: true }), 0);
    assert.throws(() => headSimilarity(A, [[1]]), ShapeError);
  });
});

describe('detectors: batched detectorScores', () => {
  it('equals the per-prompt brute force averaged over prompts, alone or left-padded', () => {
    const before = tf.memory().numTensors;
    const r = rng(7);
    const prompts = [toks, [0, 9, 9, 8, 9], [0, 3, 4, 3, 4, 3]];
    const N = 7;
    const L = 2;
    const H = 3;
    // local patterns per prompt/layer/head
    const local = prompts.map((t) => Array.from({ length: L }, () => Array.from({ length: H }, () => randomCausal(t.length, r))));
    const tokens = prompts.map((t) => [...new Array(N - t.length).fill(50256), ...t]);
    const mask = prompts.map((t) => [...new Array(N - t.length).fill(0), ...new Array(t.length).fill(1)]);
    const patterns = Array.from({ length: L }, (_, l) => tf.tensor4d(local.map((p) => p[l].map((A) => leftPad(A, N)))));
    for (const opts of [{}, { excludeBos: true }, { excludeCurrentToken: true }, { excludeBos: true, excludeCurrentToken: true }]) {
      const res = detectorScores(patterns, tokens, DETECTOR_KINDS, { ...opts, mask });
      for (const kind of DETECTOR_KINDS) {
        const hs = res[kind];
        assert.equal(hs.method, kind);
        for (let l = 0; l < L; l++) {
          for (let h = 0; h < H; h++) {
            const brute = prompts.reduce((s, t, b) => s + headSimilarity(local[b][l][h], detectionPattern(kind, t), opts), 0) / prompts.length;
            assert.ok(Math.abs(hs.scores[l][h] - brute) < 1e-6, `${kind} ${l}.${h} ${JSON.stringify(opts)}: ${hs.scores[l][h]} vs ${brute}`);
          }
        }
      }
      // prompt 0 alone (no padding) gives its own per-prompt score
      const first = patterns.map((p) => p.slice([0, 0, 0, 0], [1, H, N, N]));
      const alone = detectorScores(first, [tokens[0]], 'induction', opts);
      tf.dispose(first);
      const want = headSimilarity(local[0][1][2], detectionPattern('induction', prompts[0]), opts);
      assert.ok(Math.abs(alone.induction.scores[1][2] - want) < 1e-6);
    }
    tf.dispose(patterns);
    assert.equal(tf.memory().numTensors, before);
  });

  it('custom detectors and errors', () => {
    const A = tf.tensor4d([[oneHotRows(4, (i) => i)]]);
    const cur = { name: 'current-token', pattern: (t: number[]) => oneHotRows(t.length, (i) => i) };
    const res = detectorScores([A], [[1, 2, 3, 4]], [cur, 'sink']);
    assert.equal(res['current-token'].scores[0][0], 1);
    assert.equal(res.sink.scores[0][0], 1 / 4);
    const bad = { name: 'upper', pattern: (t: number[]) => oneHotRows(t.length, (i) => t.length - 1 - i) };
    assert.throws(() => detectorScores([A], [[1, 2, 3, 4]], bad), ValueError);
    assert.throws(() => detectorScores([A], [[1, 2, 3]], 'sink'), ShapeError);
    assert.throws(() => detectorScores([A], [[1, 2, 3, 4]], 'sink', { mask: [[1, 0, 1, 1]] }), ValueError);
    A.dispose();
  });
});

describe('detectors on a model (gpt2-tiny fixture)', function () {
  this.timeout(300000);
  let model: HookedTransformer;
  before(async () => {
    model = await loadModel('fixtures/reference/gpt2-tiny');
  });
  after(() => model?.dispose());

  it('detectHeads: padded batch = mean of prompts alone = brute force on cached patterns', () => {
    const prompts = [toks, [0, 9, 9, 8, 9], [0, 3, 4, 3, 4, 3, 4, 5]];
    const N = 8;
    const padded = prompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
    const mask = prompts.map((p) => [...new Array(N - p.length).fill(0), ...new Array(p.length).fill(1)]);
    const before = tf.memory().numTensors;
    const batched = detectHeads(model, padded, DETECTOR_KINDS, { attentionMask: mask, excludeBos: true });
    assert.equal(tf.memory().numTensors, before);
    const brute: Record<string, number[][]> = {};
    for (const kind of DETECTOR_KINDS) brute[kind] = Array.from({ length: 3 }, () => new Array(4).fill(0));
    for (const p of prompts) {
      const alone = detectHead(model, [p], 'induction', { excludeBos: true });
      const { logits, cache } = model.runWithCache([p], { namesFilter: (n) => n.endsWith('hook_pattern') });
      for (let l = 0; l < 3; l++) {
        const pat = (cache.get(`blocks.${l}.attn.hook_pattern`).arraySync() as number[][][][])[0];
        for (let h = 0; h < 4; h++) {
          for (const kind of DETECTOR_KINDS) brute[kind][l][h] += headSimilarity(pat[h], detectionPattern(kind, p), { excludeBos: true }) / prompts.length;
          assert.ok(Math.abs(alone.scores[l][h] - headSimilarity(pat[h], detectionPattern('induction', p), { excludeBos: true })) < 1e-6);
        }
      }
      logits.dispose();
      cache.dispose();
    }
    for (const kind of DETECTOR_KINDS) {
      batched[kind].scores.forEach((row, l) =>
        row.forEach((v, h) => assert.ok(Math.abs(v - brute[kind][l][h]) < 1e-6, `${kind} ${l}.${h}: ${v} vs ${brute[kind][l][h]}`)),
      );
      assert.equal(batched[kind].params.excludeBos, true);
      assert.equal(batched[kind].model, model.name);
    }
  });
});

describe('detectors find the constructed heads of the hand-made induction model', function () {
  this.timeout(300000);
  const DIR = 'fixtures/models/induction-handmade';

  it('prev-token and induction detectors rank the circuit heads first (shipped files, else the builder)', async () => {
    let model: HookedTransformer;
    let roles: Record<string, string>;
    if (existsSync(path.join(DIR, 'config.json')) && existsSync(path.join(DIR, 'circuit.json'))) {
      model = await loadModel(DIR);
      roles = JSON.parse(readFileSync(path.join(DIR, 'circuit.json'), 'utf8')).roles;
    } else {
      model = buildInductionHandmade();
      roles = { [INDUCTION_DESIGN.prevHead.join('.')]: 'previous-token', [INDUCTION_DESIGN.inductionHead.join('.')]: 'induction' };
    }
    try {
      const prevHead = Object.keys(roles).find((k) => roles[k].startsWith('previous-token'))!;
      const indHead = Object.keys(roles).find((k) => roles[k].startsWith('induction'))!;
      assert.ok(prevHead && indHead, `circuit roles ${JSON.stringify(roles)}`);
      // BOS + a block of distinct syllables twice; left-pad half the prompts by shortening their blocks
      const data = inductionEvalBatch(77, 8, 12);
      const N = data.tokens[0].length;
      const tokens = data.tokens.map((row, b) => (b % 2 ? [...new Array(4).fill(0), ...row.slice(0, N - 4)] : row));
      const mask = data.tokens.map((_, b) => (b % 2 ? [0, 0, 0, 0, ...new Array(N - 4).fill(1)] : new Array(N).fill(1)));
      const before = tf.memory().numTensors;
      const res = detectHeads(model, tokens, ['prev-token', 'induction', 'duplicate-token'], { attentionMask: mask, excludeBos: true });
      assert.equal(tf.memory().numTensors, before);
      assert.equal(topHeads(res['prev-token'], 1)[0], prevHead);
      assert.equal(topHeads(res.induction, 1)[0], indHead);
      const [pl, ph] = prevHead.split('.').map(Number);
      const [il, ih] = indHead.split('.').map(Number);
      assert.ok(res['prev-token'].scores[pl][ph] > 0.9, `prev-token score ${res['prev-token'].scores[pl][ph]}`);
      // The first repeat (half the queries) has no earlier occurrence, and TransformerLens's score
      // divides by all the rows' attention: a perfect induction head scores about 1/2 here.
      assert.ok(res.induction.scores[il][ih] > 0.45, `induction score ${res.induction.scores[il][ih]}`);
      for (let l = 0; l < model.cfg.n_layers; l++) {
        for (let h = 0; h < model.cfg.n_heads; h++) {
          if (l === il && h === ih) continue;
          assert.ok(res.induction.scores[l][h] < 0.1, `${l}.${h} induction score ${res.induction.scores[l][h]}`);
        }
      }
      // the previous-token head is not an induction head and vice versa
      assert.ok(res.induction.scores[pl][ph] < 0.2, `prev head's induction score ${res.induction.scores[pl][ph]}`);
      assert.ok(res['prev-token'].scores[il][ih] < 0.5, `induction head's prev score ${res['prev-token'].scores[il][ih]}`);
    } finally {
      model.dispose();
    }
  });
});

describe('detectors against HF transformers attentions (gpt2-tiny reference fixture)', function () {
  this.timeout(300000);
  it('detectHeads on the model = detectorScores on the HF attentions', async () => {
    const ref = await loadReference('gpt2-tiny');
    const model = await loadModel('fixtures/reference/gpt2-tiny');
    try {
      const ids = ref.input_ids.arraySync() as number[][];
      const mask = ref.attention_mask.arraySync() as number[][];
      const hf = [0, 1, 2].map((l) => ref[`attentions.${l}`]);
      for (const opts of [{}, { excludeBos: true, excludeCurrentToken: true }]) {
        const mine = detectHeads(model, ids, DETECTOR_KINDS, { attentionMask: mask, ...opts });
        const theirs = detectorScores(hf, ids, DETECTOR_KINDS, { mask, ...opts });
        for (const k of DETECTOR_KINDS) {
          mine[k].scores.forEach((row, l) => row.forEach((v, h) => assert.ok(Math.abs(v - theirs[k].scores[l][h]) < 1e-5, `${k} ${l}.${h}: ${v} vs ${theirs[k].scores[l][h]}`)));
        }
      }
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});
