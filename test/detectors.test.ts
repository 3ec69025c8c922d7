import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { detectionPattern, headSimilarity, detectorScores, detectHeads, detectHead, pyRound, DETECTOR_KINDS, type DetectorOptions } from '../src/analyses/detectors.js';
import { repeatedTokens } from '../src/data/induction.js';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { topHeads } from '../src/results.js';
import { loadReference } from './helpers/reference.js';
import { runPort } from './helpers/port.js';
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

const OPTION_SETS: DetectorOptions[] = [{}, { excludeBos: true }, { excludeCurrentToken: true }, { excludeBos: true, excludeCurrentToken: true }];

describe('detectors: detection patterns', () => {
  it('previous-token, duplicate-token, induction and sink patterns on a repeated sequence', () => {
    assert.deepEqual(detectionPattern('prev-token', toks), oneHotRows(7, (i) => i - 1));
    const ones = (P: number[][]) => P.flatMap((r, i) => r.map((v, j) => (v ? `${i},${j}` : ''))).filter(Boolean);
    assert.deepEqual(ones(detectionPattern('duplicate-token', toks)), ['4,1', '5,2', '6,3']);
    assert.deepEqual(ones(detectionPattern('induction', toks)), ['4,2', '5,3', '6,4']);
    assert.deepEqual(ones(detectionPattern('sink', [1, 2, 3])), ['0,0', '1,0', '2,0']);
  });

  it('induction matches TransformerLens (shifted duplicate, incl. repeated adjacent tokens)', () => {
    for (const t of [toks, [0, 3, 3, 3], [0, 1, 2, 1, 2, 1, 2, 2], [4, 4, 4, 4, 4]]) assert.deepEqual(detectionPattern('induction', t), tlInduction(t), `tokens ${t}`);
  });
});

describe('detectors: headSimilarity (TransformerLens mul and abs)', () => {
  it('perfect induction / previous-token heads on hand-built patterns', () => {
    const ind = oneHotRows(7, (i) => (i >= 4 ? i - 2 : 0)); // rows 4..6 attend to j = i - 2, others to BOS
    const P = detectionPattern('induction', toks);
    assert.equal(headSimilarity(ind, P), 3 / 7);
    assert.equal(headSimilarity(ind, P, { excludeBos: true }), 1);
    const prev = oneHotRows(7, (i) => Math.max(i - 1, 0));
    const Pp = detectionPattern('prev-token', toks);
    assert.equal(headSimilarity(prev, Pp), 6 / 7);
    assert.equal(headSimilarity(prev, Pp, { excludeBos: true }), 1);
    assert.equal(headSimilarity(prev, Pp, { excludeCurrentToken: true }), 1);
  });

  it('a mixed head: hand-computed mul and abs scores with exclusions', () => {
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
    // abs: |A - P| sums to 1 + 0.7 + 0.7 + 0.2 + 0.5 + 0.3 = 3.4 -> 1 - round(3.4 / 3, 3) = 1 - 1.133
    assert.equal(headSimilarity(A, P, { errorMeasure: 'abs' }), 1 - 1.133);
    // without column 0 (1 + 0.7 + 0.2 removed) and without the diagonal (A[1][1], A[2][2] removed)
    assert.equal(headSimilarity(A, P, { errorMeasure: 'abs', excludeBos: true }), 1 - pyRound(1.5 / 3, 3));
    assert.equal(headSimilarity(A, P, { errorMeasure: 'abs', excludeBos: true, excludeCurrentToken: true }), 1 - pyRound(0.5 / 3, 3));
    assert.equal(headSimilarity(oneHotRows(3, () => 0), P, { excludeBos: true }), 0);
    assert.throws(() => headSimilarity(A, [[1]]), ShapeError);
    assert.throws(() => headSimilarity(A, P, { errorMeasure: 'max' as never }), ValueError);
  });

  it("pyRound is Python's round: exact ties go to even, the rest to the nearest", () => {
    assert.deepEqual([0.0625, 0.1875, 0.1235, 0.0005, 0.3125, -0.0625, 0.9995, 3.14159].map((x) => pyRound(x, 3)), [0.062, 0.188, 0.123, 0.001, 0.312, -0.062, 1, 3.142]);
  });
});

describe('detectors: batched detectorScores', () => {
  it('equals the per-prompt brute force averaged over prompts, alone or left-padded, mul and abs', async () => {
    const before = tf.memory().numTensors;
    const r = rng(7);
    const prompts = [toks, [0, 9, 9, 8, 9], [0, 3, 4, 3, 4, 3]];
    const [N, L, H] = [7, 2, 3];
    const local = prompts.map((t) => Array.from({ length: L }, () => Array.from({ length: H }, () => randomCausal(t.length, r))));
    const tokens = prompts.map((t) => [...new Array(N - t.length).fill(50256), ...t]);
    const mask = prompts.map((t) => [...new Array(N - t.length).fill(0), ...new Array(t.length).fill(1)]);
    const patterns = Array.from({ length: L }, (_, l) => tf.tensor4d(local.map((p) => p[l].map((A) => leftPad(A, N)))));
    for (const base of OPTION_SETS) {
      for (const errorMeasure of ['mul', 'abs'] as const) {
        const opts = { ...base, errorMeasure };
        const res = await detectorScores(patterns, { tokens, attentionMask: mask }, DETECTOR_KINDS, opts);
        for (const kind of DETECTOR_KINDS) {
          assert.equal(res[kind].method, kind);
          for (let l = 0; l < L; l++) {
            for (let h = 0; h < H; h++) {
              const brute = prompts.reduce((s, t, b) => s + headSimilarity(local[b][l][h], detectionPattern(kind, t), opts), 0) / prompts.length;
              assert.ok(Math.abs(res[kind].scores[l][h] - brute) < 1e-6, `${kind} ${l}.${h} ${JSON.stringify(opts)}: ${res[kind].scores[l][h]} vs ${brute}`);
            }
          }
        }
        const first = patterns.map((p) => p.slice([0, 0, 0, 0], [1, H, N, N]));
        const alone = await detectorScores(first, { tokens: [tokens[0]] }, 'induction', opts);
        tf.dispose(first);
        assert.ok(Math.abs(alone.induction.scores[1][2] - headSimilarity(local[0][1][2], detectionPattern('induction', prompts[0]), opts)) < 1e-6);
      }
    }
    tf.dispose(patterns);
    assert.equal(tf.memory().numTensors, before);
  });

  it('custom detectors and errors', async () => {
    const A = tf.tensor4d([[oneHotRows(4, (i) => i)]]);
    const cur = { name: 'current-token', pattern: (t: number[]) => oneHotRows(t.length, (i) => i) };
    const res = await detectorScores([A], { tokens: [[1, 2, 3, 4]] }, [cur, 'sink']);
    assert.equal(res['current-token'].scores[0][0], 1);
    assert.equal(res.sink.scores[0][0], 1 / 4);
    const bad = { name: 'upper', pattern: (t: number[]) => oneHotRows(t.length, (i) => t.length - 1 - i) };
    await assert.rejects(detectorScores([A], { tokens: [[1, 2, 3, 4]] }, bad), ValueError);
    await assert.rejects(detectorScores([A], { tokens: [[1, 2, 3]] }, 'sink'), ShapeError);
    await assert.rejects(detectorScores([A], { tokens: [[1, 2, 3, 4]], attentionMask: [[1, 0, 1, 1]] }, 'sink'), ValueError);
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

  it('detectHeads: padded batch = mean of prompts alone = brute force on cached patterns', async () => {
    const prompts = [toks, [0, 9, 9, 8, 9], [0, 3, 4, 3, 4, 3, 4, 5]];
    const N = 8;
    const padded = prompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
    const mask = prompts.map((p) => [...new Array(N - p.length).fill(0), ...new Array(p.length).fill(1)]);
    const before = tf.memory().numTensors;
    const batched = await detectHeads(model, { tokens: padded, attentionMask: mask }, DETECTOR_KINDS, { excludeBos: true, batchSize: 2 });
    assert.equal(tf.memory().numTensors, before);
    const brute: Record<string, number[][]> = {};
    for (const kind of DETECTOR_KINDS) brute[kind] = Array.from({ length: 3 }, () => new Array(4).fill(0));
    for (const p of prompts) {
      const alone = await detectHead(model, { tokens: [p] }, 'induction', { excludeBos: true });
      const { logits, cache } = await model.runWithCache([p], { namesFilter: (n) => n.endsWith('hook_pattern') });
      for (let l = 0; l < 3; l++) {
        const pat = ((await cache.get(`blocks.${l}.attn.hook_pattern`).array()) as number[][][][])[0];
        for (let h = 0; h < 4; h++) {
          for (const kind of DETECTOR_KINDS) brute[kind][l][h] += headSimilarity(pat[h], detectionPattern(kind, p), { excludeBos: true }) / prompts.length;
          assert.ok(Math.abs(alone.scores[l][h] - headSimilarity(pat[h], detectionPattern('induction', p), { excludeBos: true })) < 1e-6);
        }
      }
      logits.dispose();
      cache.dispose();
    }
    for (const kind of DETECTOR_KINDS) {
      batched[kind].scores.forEach((row, l) => row.forEach((v, h) => assert.ok(Math.abs(v - brute[kind][l][h]) < 1e-6, `${kind} ${l}.${h}: ${v} vs ${brute[kind][l][h]}`)));
      assert.equal(batched[kind].params.excludeBos, true);
      assert.equal(batched[kind].model, model.name);
    }
  });
});

/** An induction batch for the hand-made model: BOS + a block of distinct tokens twice; half the rows left-padded by 4. */
function inductionBatch(seed: number, n: number, block: number): { tokens: number[][]; attentionMask: number[][] } {
  const data = repeatedTokens({ batch: n, blockLength: block, repeats: 2, low: 2, high: 32, bosId: 0, seed, distinct: true });
  const N = data.tokens[0].length;
  return {
    tokens: data.tokens.map((row, b) => (b % 2 ? [...new Array(4).fill(0), ...row.slice(0, N - 4)] : row)),
    attentionMask: data.tokens.map((_, b) => (b % 2 ? [0, 0, 0, 0, ...new Array(N - 4).fill(1)] : new Array(N).fill(1))),
  };
}

describe('detectors find the constructed heads of the hand-made induction model', function () {
  this.timeout(300000);

  it('prev-token and induction detectors rank the circuit heads first', async () => {
    const DIR = 'fixtures/models/induction-handmade';
    const model = await loadModel(DIR);
    const roles: Record<string, string> = JSON.parse(readFileSync(`${DIR}/circuit.json`, 'utf8')).roles;
    try {
      const prevHead = Object.keys(roles).find((k) => roles[k].startsWith('previous-token'))!;
      const indHead = Object.keys(roles).find((k) => roles[k].startsWith('induction'))!;
      assert.ok(prevHead && indHead, `circuit roles ${JSON.stringify(roles)}`);
      const before = tf.memory().numTensors;
      const res = await detectHeads(model, inductionBatch(77, 8, 12), ['prev-token', 'induction', 'duplicate-token'], { excludeBos: true });
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
          if (l !== il || h !== ih) assert.ok(res.induction.scores[l][h] < 0.1, `${l}.${h} induction score ${res.induction.scores[l][h]}`);
        }
      }
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
      const batch = { tokens: (await ref.input_ids.array()) as number[][], attentionMask: (await ref.attention_mask.array()) as number[][] };
      const hf = [0, 1, 2].map((l) => ref[`attentions.${l}`]);
      for (const opts of [{}, { excludeBos: true, excludeCurrentToken: true }]) {
        const mine = await detectHeads(model, batch, DETECTOR_KINDS, opts);
        const theirs = await detectorScores(hf, batch, DETECTOR_KINDS, opts);
        for (const k of DETECTOR_KINDS) mine[k].scores.forEach((row, l) => row.forEach((v, h) => assert.ok(Math.abs(v - theirs[k].scores[l][h]) < 1e-5, `${k} ${l}.${h}: ${v} vs ${theirs[k].scores[l][h]}`)));
      }
    } finally {
      model.dispose();
      tf.dispose(Object.values(ref));
    }
  });
});

describe("fidelity: a port of TransformerLens's head_detector.py on shipped models", function () {
  this.timeout(600000);

  it('detect_head scores (every kind, mul and abs, with and without exclusions) on the induction-handmade and ioi models', async () => {
    for (const dir of ['fixtures/models/induction-handmade', 'fixtures/models/ioi']) {
      const model = await loadModel(dir);
      try {
        const batch = dir.endsWith('ioi')
          ? { tokens: Array.from({ length: 4 }, (_, b) => [...new Array(b).fill(0), ...Array.from({ length: 14 - b }, (_, t) => (t === 0 ? (model.bosTokenId() ?? 0) : 2 + ((b * 13 + (t % 6) * 17) % 150)))]), attentionMask: Array.from({ length: 4 }, (_, b) => [...new Array(b).fill(0), ...new Array(14 - b).fill(1)]) }
          : inductionBatch(5, 6, 10);
        const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
        const { logits, cache } = await model.runWithCache(batch.tokens, { attentionMask: batch.attentionMask, namesFilter: names });
        logits.dispose();
        const pats = await Promise.all(names.map((n) => cache.get(n).array() as Promise<number[][][][]>));
        cache.dispose();
        // each prompt's real sub-matrix, as detect_head sees one unpadded prompt
        const prompts = batch.tokens.map((row, b) => {
          const f = batch.attentionMask[b].indexOf(1);
          return { tokens: row.slice(f), patterns: pats.map((p) => p[b].map((A) => A.slice(f).map((r) => r.slice(f)))) };
        });
        const kinds = ['prev-token', 'duplicate-token', 'induction'] as const;
        const options = kinds.flatMap((kind) => OPTION_SETS.flatMap((o) => (['mul', 'abs'] as const).map((m) => ({ kind, exclude_bos: !!o.excludeBos, exclude_current_token: !!o.excludeCurrentToken, error_measure: m }))));
        const port = runPort<{ scores: Array<Array<Array<number | null>>> }>('tl_head_detector', { prompts, options });
        let exact = 0;
        let total = 0;
        for (const [k, o] of options.entries()) {
          const opts = { excludeBos: o.exclude_bos, excludeCurrentToken: o.exclude_current_token, errorMeasure: o.error_measure };
          const mine = (await detectHeads(model, batch, [o.kind], opts))[o.kind];
          mine.scores.forEach((row, l) =>
            row.forEach((v, h) => {
              const want = port.scores[k][l][h];
              assert.ok(want !== null, `${dir} ${JSON.stringify(o)} ${l}.${h}: no attention left`);
              const tol = o.error_measure === 'abs' ? 1e-3 / prompts.length + 1e-9 : 1e-5;
              assert.ok(Math.abs(v - want) <= tol, `${dir} ${JSON.stringify(o)} ${l}.${h}: ${v} vs ${want}`);
              if (o.error_measure === 'abs') {
                total++;
                if (Math.abs(v - want) < 1e-12) exact++;
              }
            }),
          );
        }
        assert.ok(exact >= 0.9 * total, `${dir}: abs scores equal to the last digit in ${exact}/${total} heads`);
      } finally {
        model.dispose();
      }
    }
  });
});
