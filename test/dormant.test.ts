import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { loadModel, HookedTransformer } from '../src/model/index.js';
import { bosStats, dormantTest, entropyDetector, entropyDormancy } from '../src/analyses/dormant.js';
import { ValueError } from '../src/errors.js';

const GPT2_TINY = 'fixtures/reference/gpt2-tiny';
const LLAMA = 'fixtures/reference/llama'; // GQA: 4 query heads, 2 KV heads, rotary

function leftPad(A: number[][], N: number): number[][] {
  const off = N - A.length;
  return Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => (i < off ? (j <= i ? 1 / (i + 1) : 0) : j < off ? 0 : A[i - off][j - off])),
  );
}
const H = (ps: number[]) => -ps.filter((p) => p > 0).reduce((s, p) => s + p * Math.log(p), 0);

describe('dormant: entropy detector on hand-built patterns', () => {
  const n = 4;
  const bos = Array.from({ length: n }, () => [1, 0, 0, 0]);
  const uni = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));

  it('a BOS-only head is dormant, a uniform head is not; values match the definitions', () => {
    const before = tf.memory().numTensors;
    const pats = [tf.tensor4d([[bos, uni]])];
    const r = entropyDetector(pats, { tauRow: 0.3, tauCol: 0.9 });
    // BOS head: every row entropy 0; BOS column uniform over 4 queries -> 1
    assert.ok(Math.abs(r.rowEntropy[0][0]) < 1e-9);
    assert.ok(Math.abs(r.colEntropy[0][0] - 1) < 1e-6);
    // uniform head: rows 1..3 have normalised entropy 1, row 0 counts 0 -> mean 3/4
    assert.ok(Math.abs(r.rowEntropy[0][1] - 0.75) < 1e-6);
    // its column 0 receives [1, 1/2, 1/3, 1/4]; column 1 [1/2, 1/3, 1/4]; column 2 [1/3, 1/4]
    const c0 = [1, 1 / 2, 1 / 3, 1 / 4];
    const c1 = [1 / 2, 1 / 3, 1 / 4];
    const c2 = [1 / 3, 1 / 4];
    const norm = (v: number[]) => v.map((x) => x / v.reduce((a, b) => a + b, 0));
    const cmax = Math.max(H(norm(c0)) / Math.log(4), H(norm(c1)) / Math.log(3), H(norm(c2)) / Math.log(2));
    assert.ok(Math.abs(r.colEntropy[0][1] - cmax) < 1e-6);
    assert.deepEqual(r.scores.scores, [[1, 0]]);
    assert.equal(r.scores.method, 'dormant-entropy');
    assert.deepEqual(r.params, { tauRow: 0.3, tauCol: 0.9 });
    // left-padded copy gives the same values
    const padded = [tf.tensor4d([[leftPad(bos, 6), leftPad(uni, 6)]])];
    const p = entropyDetector(padded, { mask: [[0, 0, 1, 1, 1, 1]] });
    assert.ok(Math.abs(p.rowEntropy[0][1] - r.rowEntropy[0][1]) < 1e-6);
    assert.ok(Math.abs(p.colEntropy[0][1] - r.colEntropy[0][1]) < 1e-6);
    assert.throws(() => entropyDetector(pats, { tauRow: 2 }), ValueError);
    tf.dispose([...pats, ...padded]);
    assert.equal(tf.memory().numTensors, before);
  });
});

/** Mean next-token NLL of counted targets, computed in plain JS from logits. */
function jsLoss(logits: tf.Tensor, tokens: number[][], counted: (b: number, j: number) => boolean): number {
  const lg = logits.arraySync() as number[][][];
  let s = 0;
  let c = 0;
  tokens.forEach((row, b) => {
    for (let j = 1; j < row.length; j++) {
      if (!counted(b, j)) continue;
      const v = lg[b][j - 1];
      const mx = Math.max(...v);
      const lse = mx + Math.log(v.reduce((a, x) => a + Math.exp(x - mx), 0));
      s += lse - v[row[j]];
      c++;
    }
  });
  return s / c;
}

describe('dormant: model-level (gpt2-tiny and llama fixtures)', function () {
  this.timeout(300000);
  let gpt2: HookedTransformer;
  let llama: HookedTransformer;
  const prompts = [
    [0, 11, 12, 13, 14, 11, 12, 13, 14, 20],
    [0, 40, 41, 42, 43, 44],
    [0, 7, 8, 9, 7, 8, 9],
  ];
  const N = 10;
  const padded = prompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
  const mask = prompts.map((p) => [...new Array(N - p.length).fill(0), ...new Array(p.length).fill(1)]);
  const first = prompts.map((p) => N - p.length);

  before(async () => {
    gpt2 = await loadModel(GPT2_TINY);
    llama = await loadModel(LLAMA);
  });
  after(() => {
    gpt2?.dispose();
    llama?.dispose();
  });

  it('bosStats equals a brute-force computation from the cache (GQA model), alone or padded', () => {
    const before = tf.memory().numTensors;
    const llamaPrompts = prompts.map((p) => p.map((t) => (t === 0 ? 1 : t)));
    const llamaPadded = llamaPrompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
    const s = bosStats(llama, llamaPadded, { attentionMask: mask });
    const { n_layers: L, n_heads: Hh, n_kv_heads: K } = llama.cfg;
    // brute force, one prompt at a time, no padding
    const acc = { sink: 0, vB: 0, vO: 0, rB: 0, rO: 0 };
    const l = 1;
    const h = 3; // kv head 1 (heads 2, 3 share it)
    for (const p of llamaPrompts) {
      const { logits, cache } = llama.runWithCache([p], { namesFilter: [`blocks.${l}.attn.hook_pattern`, `blocks.${l}.attn.hook_v`, `blocks.${l}.hook_resid_post`] });
      const pat = (cache.get(`blocks.${l}.attn.hook_pattern`).arraySync() as number[][][][])[0][h];
      const v = (cache.get(`blocks.${l}.attn.hook_v`).arraySync() as number[][][][])[0];
      const r = (cache.get(`blocks.${l}.hook_resid_post`).arraySync() as number[][][])[0];
      const WO = (llama.params[`blocks.${l}.attn.W_O`].arraySync() as number[][][])[h];
      const kv = Math.floor(h / (Hh / K!));
      const vo = (j: number) => {
        const out = new Array(WO[0].length).fill(0);
        v[j][kv].forEach((x, e) => WO[e].forEach((w, d) => (out[d] += x * w)));
        return Math.hypot(...out);
      };
      const n = p.length;
      let sk = 0;
      for (let i = 1; i < n; i++) sk += pat[i][0];
      acc.sink += sk / (n - 1) / prompts.length;
      acc.vB += vo(0) / prompts.length;
      let so = 0;
      for (let j = 1; j < n; j++) so += vo(j);
      acc.vO += so / (n - 1) / prompts.length;
      acc.rB += Math.hypot(...r[0]) / prompts.length;
      let ro = 0;
      for (let j = 1; j < n; j++) ro += Math.hypot(...r[j]);
      acc.rO += ro / (n - 1) / prompts.length;
      logits.dispose();
      cache.dispose();
    }
    const near = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
    near(s.attnSink[l][h], acc.sink, 'attnSink');
    near(s.valueNormBos[l][h], acc.vB, 'valueNormBos');
    near(s.valueNormOther[l][h], acc.vO, 'valueNormOther');
    near(s.residNormBos[l], acc.rB, 'residNormBos');
    near(s.residNormOther[l], acc.rO, 'residNormOther');
    assert.equal(s.scores.method, 'bos-sink');
    assert.equal(s.scores.nLayers, L);
    assert.equal(tf.memory().numTensors, before);
  });

  it("dormantTest: baseLoss is the clean next-token loss; 'zero' equals removing the head's W_O; a silenced head is dormant", async () => {
    const layer = 1;
    const head = 2;
    // a copy of the model whose head (1, 2) writes nothing
    const silent = await loadModel(GPT2_TINY);
    try {
      const WO = silent.params[`blocks.${layer}.attn.W_O`];
      const keep = tf.tensor([1, 1, 0, 1], [4, 1, 1]);
      silent.params[`blocks.${layer}.attn.W_O`] = WO.mul(keep);
      WO.dispose();
      keep.dispose();
      silent.invalidateFused();

      const before = tf.memory().numTensors;
      const res = dormantTest(gpt2, [{ name: 'rep', tokens: padded, attentionMask: mask }], { intervention: 'zero', tolerance: 1e-4, heads: [[layer, head], [0, 1]] });
      assert.equal(tf.memory().numTensors, before);
      const clean = gpt2.forward(padded, { attentionMask: mask });
      const base = jsLoss(clean, padded, (b, j) => j > first[b]);
      clean.dispose();
      const row = res.rows.find((r) => r.layer === layer && r.head === head)!;
      assert.ok(Math.abs(row.baseLoss - base) < 1e-5, `base ${row.baseLoss} vs ${base}`);
      const abl = silent.forward(padded, { attentionMask: mask });
      const want = jsLoss(abl, padded, (b, j) => j > first[b]);
      abl.dispose();
      assert.ok(Math.abs(row.ablatedLoss - want) < 1e-5, `ablated ${row.ablatedLoss} vs ${want}`);
      assert.ok(Math.abs(row.delta - (want - base)) < 1e-5);
      assert.ok(Math.abs(row.delta) > 1e-3, 'the head matters on this model, so the comparison is not trivial');
      assert.equal(res.scores.rep.method, 'dormant-test');
      assert.equal(res.scores.rep.scores[layer][head], row.delta);
      assert.equal(res.scores.rep.extra!.tested[2][3], 0);
      const expectStatus = Math.abs(row.delta) <= 1e-4 ? 'dormant' : row.delta > 0 ? 'active' : 'negative';
      assert.equal(row.status, expectStatus);

      // on the silenced model, both interventions leave the loss unchanged for that head: dormant
      for (const intervention of ['zero', 'bos'] as const) {
        const r2 = dormantTest(silent, [{ name: 'rep', tokens: padded, attentionMask: mask }], { intervention, tolerance: 1e-5, heads: [[layer, head]] });
        assert.ok(Math.abs(r2.rows[0].delta) < 1e-5, `${intervention}: ${r2.rows[0].delta}`);
        assert.equal(r2.rows[0].status, 'dormant');
        assert.deepEqual(r2.params, { intervention, tolerance: 1e-5 });
      }
    } finally {
      silent.dispose();
    }
  });

  it("dormantTest 'bos' equals replacing the head's z by its value at the first real token; lossMask selects targets", () => {
    const layer = 2;
    const head = 1;
    const lossMask = padded.map((row, b) => row.map((_, j) => (j >= first[b] + 3 ? 1 : 0)));
    const before = tf.memory().numTensors;
    let calls = 0;
    const res = dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask, lossMask }], { intervention: 'bos', heads: [[layer, head]], onProgress: () => calls++ });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(calls, 1);
    const { logits, cache } = gpt2.runWithCache(padded, { attentionMask: mask, namesFilter: [`blocks.${layer}.attn.hook_v`] });
    const v = cache.get(`blocks.${layer}.attn.hook_v`).arraySync() as number[][][][];
    const counted = (b: number, j: number) => j >= first[b] + 3;
    const base = jsLoss(logits, padded, counted);
    logits.dispose();
    cache.dispose();
    const hook = (z: tf.Tensor) => {
      const arr = z.arraySync() as number[][][][];
      arr.forEach((rowB, b) => rowB.forEach((pos) => (pos[head] = v[b][first[b]][head].slice())));
      return tf.tensor4d(arr);
    };
    const lg = gpt2.runWithHooks(padded, { attentionMask: mask, fwdHooks: [[`blocks.${layer}.attn.hook_z`, hook]] });
    const want = jsLoss(lg, padded, counted);
    lg.dispose();
    assert.ok(Math.abs(res.rows[0].baseLoss - base) < 1e-5, `${res.rows[0].baseLoss} vs ${base}`);
    assert.ok(Math.abs(res.rows[0].ablatedLoss - want) < 1e-5, `${res.rows[0].ablatedLoss} vs ${want}`);
    assert.throws(() => dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask }], { heads: [[3, 0]] }), ValueError);
    assert.throws(() => dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask, lossMask: padded.map((r) => r.map(() => 0)) }]), ValueError);
  });

  it('entropyDormancy equals entropyDetector on the cached patterns, and a padded prompt equals itself alone', () => {
    const before = tf.memory().numTensors;
    const batched = entropyDormancy(gpt2, padded, { attentionMask: mask, batchSize: 2 });
    let row = 0;
    let col = 0;
    for (const p of prompts) {
      const { logits, cache } = gpt2.runWithCache([p], { namesFilter: (n) => n.endsWith('hook_pattern') });
      const pats = [0, 1, 2].map((l) => cache.get(`blocks.${l}.attn.hook_pattern`));
      const r = entropyDetector(pats);
      row += r.rowEntropy[2][3] / prompts.length;
      col += r.colEntropy[2][3] / prompts.length;
      logits.dispose();
      cache.dispose();
    }
    assert.ok(Math.abs(batched.rowEntropy[2][3] - row) < 1e-6, `${batched.rowEntropy[2][3]} vs ${row}`);
    assert.ok(Math.abs(batched.colEntropy[2][3] - col) < 1e-6, `${batched.colEntropy[2][3]} vs ${col}`);
    assert.equal(tf.memory().numTensors, before);
  });
});
