import assert from 'node:assert/strict';
import { rng } from '../src/util/random.js';
import { acrossSeeds, bootstrapCI, meanStd, withBootstrap } from '../src/analyses/stats.js';
import { makeHeadScores } from '../src/results.js';
import { ShapeError, ValueError } from '../src/errors.js';
import { sinkScores } from '../src/analyses/sinks.js';
import { loadModel } from '../src/model/index.js';
import { runPort } from './helpers/port.js';
import { bbData } from './helpers/attention.js';

describe('stats', () => {
  it('bootstrap CI of a normal sample brackets the true mean, has the textbook width, and is reproducible by seed', () => {
    const r = rng(123);
    const mu = 10, sigma = 2, m = 400;
    const xs = Array.from({ length: m }, () => mu + sigma * r.normal());
    const ci = bootstrapCI(xs, { n: 2000, seed: 5 });
    const sampleMean = xs.reduce((s, v) => s + v, 0) / m;
    assert.ok(Math.abs(ci.estimate - sampleMean) < 1e-12);
    assert.ok(ci.lo < mu && mu < ci.hi, `[${ci.lo}, ${ci.hi}] should contain ${mu}`);
    assert.ok(ci.lo < sampleMean && sampleMean < ci.hi);
    // normal-theory width 2 * 1.96 * s / sqrt(m)
    const s = Math.sqrt(xs.reduce((t, v) => t + (v - sampleMean) ** 2, 0) / (m - 1));
    const width = (2 * 1.959964 * s) / Math.sqrt(m);
    assert.ok(Math.abs(ci.hi - ci.lo - width) < 0.1 * width, `width ${ci.hi - ci.lo} vs ${width}`);
    assert.deepEqual(bootstrapCI(xs, { n: 2000, seed: 5 }), ci);
    const other = bootstrapCI(xs, { n: 2000, seed: 6 });
    assert.notEqual(other.lo, ci.lo);
    // a higher level gives a wider interval
    const ci99 = bootstrapCI(xs, { n: 2000, seed: 5, level: 0.99 });
    assert.ok(ci99.lo < ci.lo && ci99.hi > ci.hi);
  });

  it('coverage: over 200 seeded normal samples the 90% interval contains the true mean about 90% of the time', () => {
    const r = rng(9);
    let hits = 0;
    const trials = 200;
    for (let t = 0; t < trials; t++) {
      const xs = Array.from({ length: 60 }, () => r.normal());
      const ci = bootstrapCI(xs, { n: 300, seed: t, level: 0.9 });
      if (ci.lo <= 0 && 0 <= ci.hi) hits++;
    }
    // binomial(200, 0.9): sd ~ 4.2 hits; the percentile bootstrap undercovers slightly at n = 60
    assert.ok(hits >= 160 && hits <= 195, `coverage ${hits}/${trials}`);
  });

  it('degenerate and custom-statistic cases', () => {
    const c = bootstrapCI([3, 3, 3, 3], { n: 50 });
    assert.deepEqual([c.lo, c.hi, c.estimate], [3, 3, 3]);
    // custom statistic on records: the share of "correct" prompts; all correct -> [1, 1]
    const recs = [{ ok: true }, { ok: true }, { ok: true }];
    const share = (s: { ok: boolean }[]) => s.filter((x) => x.ok).length / s.length;
    const cs = bootstrapCI(recs, share, { n: 100, seed: 1 });
    assert.deepEqual([cs.lo, cs.hi], [1, 1]);
    // median of [1, 2, 100]: every replicate median is one of the values
    const med = (s: number[]) => s.slice().sort((a, b) => a - b)[1];
    const cm = bootstrapCI([1, 2, 100], med, { n: 500, seed: 2, level: 0.5 });
    assert.ok(cm.lo >= 1 && cm.hi <= 100);
    assert.equal(cm.estimate, 2);
    assert.throws(() => bootstrapCI([], { n: 10 }), ValueError);
    assert.throws(() => bootstrapCI([1, NaN]), ValueError);
    assert.throws(() => bootstrapCI([1, 2], { level: 1.5 }), ValueError);
    assert.throws(() => bootstrapCI([1, 2], { n: 0 }), ValueError);
    assert.throws(() => bootstrapCI([1, 2], () => NaN), ValueError);
  });

  it('withBootstrap fills hs.ci per head, resampling prompts; each head matches bootstrapCI on its column', () => {
    const r = rng(4);
    const P = 40;
    const perPrompt = Array.from({ length: P }, () => [
      [1, 5 + r.normal()],
      [r.next(), -2 + 0.5 * r.normal()],
    ]);
    const scores = [0, 1].map((l) => [0, 1].map((h) => perPrompt.reduce((s, g) => s + g[l][h], 0) / P));
    const hs = makeHeadScores('test', scores, { x: 1 });
    const out = withBootstrap(hs, perPrompt, { n: 500, seed: 3, level: 0.9 });
    assert.equal(out, hs, 'fills hs.ci in place and returns hs');
    assert.equal(out.ci!.level, 0.9);
    assert.match(out.ci!.method, /bootstrap-percentile/);
    assert.deepEqual([out.ci!.lo[0][0], out.ci!.hi[0][0]], [1, 1]);
    for (let l = 0; l < 2; l++) {
      for (let h = 0; h < 2; h++) {
        const col = perPrompt.map((g) => g[l][h]);
        const ref = bootstrapCI(col, { n: 500, seed: 3, level: 0.9 });
        assert.ok(Math.abs(out.ci!.lo[l][h] - ref.lo) < 1e-12 && Math.abs(out.ci!.hi[l][h] - ref.hi) < 1e-12);
        assert.ok(out.ci!.lo[l][h] <= scores[l][h] && scores[l][h] <= out.ci!.hi[l][h]);
      }
    }
    assert.ok(out.ci!.lo[0][1] < 5 && out.ci!.hi[0][1] > 5);
    assert.throws(() => withBootstrap(hs, [[[1, 2]]]), ShapeError);
    assert.throws(() => withBootstrap(hs, []), ValueError);
  });

  it('meanStd: hand-checked sample and population std', () => {
    const v = [2, 4, 4, 4, 5, 5, 7, 9];
    const s = meanStd(v);
    assert.equal(s.mean, 5);
    assert.ok(Math.abs(s.std - Math.sqrt(32 / 7)) < 1e-12);
    assert.ok(Math.abs(meanStd(v, { normalization: 'uncorrected' }).std - 2) < 1e-12);
    assert.throws(() => meanStd([1]), ValueError);
    assert.equal(meanStd([1], { normalization: 'uncorrected' }).std, 0);
    assert.throws(() => meanStd([1, Infinity]), ValueError);
  });

  it('acrossSeeds averages HeadScores and reports std/min/max per head', () => {
    const a = makeHeadScores('copying', [[1, 2], [3, 4]], { seed: 0 }, { model: 'm' });
    const b = makeHeadScores('copying', [[3, 2], [3, 8]], { seed: 1 }, { model: 'm' });
    const c = makeHeadScores('copying', [[5, 2], [3, 6]], { seed: 2 }, { model: 'm' });
    const out = acrossSeeds([a, b, c]);
    assert.deepEqual(out.scores, [[3, 2], [3, 6]]);
    assert.deepEqual(out.extra!.std, [[2, 0], [0, 2]]);
    assert.deepEqual(out.extra!.min, [[1, 2], [3, 4]]);
    assert.deepEqual(out.extra!.max, [[5, 2], [3, 8]]);
    assert.equal(out.method, 'copying');
    assert.equal(out.params.runs, 3);
    assert.throws(() => acrossSeeds([a]), ValueError);
    assert.throws(() => acrossSeeds([a, makeHeadScores('other', [[1, 2], [3, 4]])]), ValueError);
    assert.throws(() => acrossSeeds([a, makeHeadScores('copying', [[1, 2, 3]])]), ShapeError);
  });
});

describe('fidelity: stats against an independent numpy port, on per-prompt scores of a shipped model', function () {
  this.timeout(300000);
  it('bootstrapCI (same PRNG draws, numpy linear quantiles), meanStd and acrossSeeds on the bb model\'s per-prompt sink scores', async () => {
    const { tokens } = bbData(12, 3);
    const model = await loadModel('fixtures/models/bb');
    try {
      // alpha_1 of every head on each prompt alone
      const perPrompt = await Promise.all(tokens.map(async (t) => (await sinkScores(model, { tokens: [t] })).scores.scores));
      const values = perPrompt.map((g) => g[1][0]);
      assert.ok(new Set(values).size > 1, 'the scores vary over prompts');
      for (const [n, level, seed] of [[400, 0.95, 0], [257, 0.9, 12345]]) {
        const port = runPort<{ estimate: number; lo: number; hi: number; std: number }>('bootstrap', { values, n, level, seed });
        const ci = bootstrapCI(values, { n, level, seed });
        for (const k of ['estimate', 'lo', 'hi'] as const) assert.ok(Math.abs(ci[k] - port[k]) < 1e-12, `${k}: ${ci[k]} vs ${port[k]}`);
        assert.ok(Math.abs(meanStd(values).std - port.std) < 1e-12);
      }
      const runs = perPrompt.slice(0, 3).map((g) => makeHeadScores('sink', g, {}));
      const port = runPort<{ runs_mean: number[][]; runs_std: number[][] }>('bootstrap', { values, n: 1, level: 0.9, seed: 0, runs: perPrompt.slice(0, 3) });
      const avg = acrossSeeds(runs);
      avg.scores.forEach((row, l) => row.forEach((v, h) => assert.ok(Math.abs(v - port.runs_mean[l][h]) < 1e-12 && Math.abs(avg.extra!.std[l][h] - port.runs_std[l][h]) < 1e-12)));
    } finally {
      model.dispose();
    }
  });
});
