import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { bosStats, dormantTest, entropyDetector, entropyDormancy } from '../src/analyses/dormant.js';
import { ValueError } from '../src/errors.js';
import { runPort } from './helpers/port.js';
import { bbData, cachedArrays as cached, paddedPrompts } from './helpers/attention.js';

const GPT2_TINY = 'fixtures/reference/gpt2-tiny';
const LLAMA = 'fixtures/reference/llama'; // GQA: 4 query heads, 2 KV heads, rotary

function leftPad(A: number[][], N: number): number[][] {
  const off = N - A.length;
  return Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => (i < off ? (j <= i ? 1 / (i + 1) : 0) : j < off ? 0 : A[i - off][j - off])),
  );
}
const entropy = (ps: number[]) => -ps.filter((p) => p > 0).reduce((s, p) => s + p * Math.log(p), 0);
const near = (a: number, b: number, what: string, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
const closeGrid = (a: number[][], b: number[][], what: string, tol = 1e-5) => a.forEach((row, i) => row.forEach((v, j) => near(v, b[i][j], `${what}[${i}][${j}]`, tol)));

/** Mean next-token NLL of counted targets, computed in plain JS from logits. */
async function jsLoss(logits: tf.Tensor, tokens: number[][], counted: (b: number, j: number) => boolean): Promise<number> {
  const lg = (await logits.array()) as number[][][];
  logits.dispose();
  let s = 0;
  let c = 0;
  tokens.forEach((row, b) => {
    for (let j = 1; j < row.length; j++) {
      if (!counted(b, j)) continue;
      const v = lg[b][j - 1];
      const mx = Math.max(...v);
      s += mx + Math.log(v.reduce((a, x) => a + Math.exp(x - mx), 0)) - v[row[j]];
      c++;
    }
  });
  return s / c;
}

describe('dormant: entropy detector on hand-built patterns', () => {
  const n = 4;
  const bos = Array.from({ length: n }, () => [1, 0, 0, 0]);
  const uni = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));

  it('a BOS-only head is dormant, a uniform head is not; values match the definitions', async () => {
    const before = tf.memory().numTensors;
    const pats = [tf.tensor4d([[bos, uni]])];
    const r = await entropyDetector(pats, { tauRow: 0.3, tauCol: 0.9 });
    assert.ok(Math.abs(r.rowEntropy[0][0]) < 1e-9);
    assert.ok(Math.abs(r.colEntropy[0][0] - 1) < 1e-6);
    // uniform head: rows 1..3 have normalised entropy 1, row 0 counts 0 -> mean 3/4
    assert.ok(Math.abs(r.rowEntropy[0][1] - 0.75) < 1e-6);
    const norm = (v: number[]) => v.map((x) => x / v.reduce((a, b) => a + b, 0));
    const cmax = Math.max(entropy(norm([1, 1 / 2, 1 / 3, 1 / 4])) / Math.log(4), entropy(norm([1 / 2, 1 / 3, 1 / 4])) / Math.log(3), entropy(norm([1 / 3, 1 / 4])) / Math.log(2));
    assert.ok(Math.abs(r.colEntropy[0][1] - cmax) < 1e-6);
    assert.deepEqual(r.scores.scores, [[1, 0]]);
    assert.equal(r.scores.method, 'dormant-entropy');
    assert.deepEqual(r.params, { tauRow: 0.3, tauCol: 0.9 });
    const padded = [tf.tensor4d([[leftPad(bos, 6), leftPad(uni, 6)]])];
    const p = await entropyDetector(padded, { attentionMask: [[0, 0, 1, 1, 1, 1]] });
    assert.ok(Math.abs(p.rowEntropy[0][1] - r.rowEntropy[0][1]) < 1e-6);
    assert.ok(Math.abs(p.colEntropy[0][1] - r.colEntropy[0][1]) < 1e-6);
    await assert.rejects(entropyDetector(pats, { tauRow: 2 }), ValueError);
    tf.dispose([...pats, ...padded]);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('dormant: model-level (gpt2-tiny and llama fixtures)', function () {
  this.timeout(300000);
  let gpt2: HookedTransformer;
  let llama: HookedTransformer;
  const { prompts, padded, mask, first } = paddedPrompts();
  const N = 10;

  before(async () => {
    gpt2 = await loadModel(GPT2_TINY);
    llama = await loadModel(LLAMA);
  });
  after(() => {
    gpt2?.dispose();
    llama?.dispose();
  });

  it('bosStats equals a brute-force computation from the cache (GQA model), alone or padded', async () => {
    const before = tf.memory().numTensors;
    const llamaPrompts = prompts.map((p) => p.map((t) => (t === 0 ? 1 : t)));
    const llamaPadded = llamaPrompts.map((p) => [...new Array(N - p.length).fill(0), ...p]);
    const s = await bosStats(llama, { tokens: llamaPadded, attentionMask: mask }, { batchSize: 2 });
    assert.equal(tf.memory().numTensors, before);
    const { n_layers: L, n_heads: Hh, n_kv_heads: K } = llama.cfg;
    const l = 1;
    const h = 3; // kv head 1 (heads 2, 3 share it)
    const kv = Math.floor(h / (Hh / K!));
    const WO = ((await llama.params[`blocks.${l}.attn.W_O`].array()) as number[][][])[h];
    const vo = (x: number[]) => Math.hypot(...WO[0].map((_, d) => x.reduce((a, e, i) => a + e * WO[i][d], 0)));
    // brute force, one prompt at a time, no padding; "other" = every other (prompt, position) pair pooled
    const acc = { sink: [] as number[], vB: [] as number[], vO: [] as number[], oB: [] as number[], oO: [] as number[], rB: [] as number[], rO: [] as number[], fB: [] as number[] };
    for (const p of llamaPrompts) {
      const names = [`blocks.${l}.attn.hook_pattern`, `blocks.${l}.attn.hook_v`, `blocks.${l}.hook_resid_pre`, 'ln_final.hook_normalized'];
      const a = await cached(llama, [p], names);
      const pat = a[names[0]][0][h] as number[][];
      const v = (a[names[1]][0] as number[][][]).map((pos) => pos[kv]);
      const r = a[names[2]][0] as number[][];
      for (let i = 0; i < p.length; i++) acc.sink.push(pat[i][0]);
      acc.vB.push(Math.hypot(...v[0]));
      acc.oB.push(vo(v[0]));
      acc.rB.push(Math.hypot(...r[0]));
      acc.fB.push(Math.hypot(...a[names[3]][0][0]));
      for (let j = 1; j < p.length; j++) {
        acc.vO.push(Math.hypot(...v[j]));
        acc.oO.push(vo(v[j]));
        acc.rO.push(Math.hypot(...r[j]));
      }
    }
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
    near(s.attnSink[l][h], mean(acc.sink), 'attnSink (query 0 included)');
    near(s.valueNormBos[l][h], mean(acc.vB), 'valueNormBos (raw)');
    near(s.valueNormOther[l][h], mean(acc.vO), 'valueNormOther');
    near(s.valueOutNormBos[l][h], mean(acc.oB), 'valueOutNormBos');
    near(s.valueOutNormOther[l][h], mean(acc.oO), 'valueOutNormOther');
    assert.equal(s.residNames.length, L + 1);
    near(s.residNormBos[l], mean(acc.rB), 'residNormBos (hidden state l = resid_pre l)');
    near(s.residNormOther[l], mean(acc.rO), 'residNormOther');
    near(s.residNormBos[L], mean(acc.fB), 'residNormBos (last hidden state, after the final norm)');
    assert.equal(s.scores.method, 'bos-sink');
    assert.equal(s.scores.nLayers, L);
    // the earlier rule: only queries after BOS
    const after = await bosStats(llama, { tokens: llamaPadded, attentionMask: mask }, { sinkQueries: 'after-bos', residual: 'resid-post' });
    const sinkAfter = mean(acc.sink.filter((_, k) => ![0, 10, 16].includes(k)));
    near(after.attnSink[l][h], sinkAfter, 'attnSink after BOS');
    assert.equal(after.residNames[l], `blocks.${l}.hook_resid_post`);
  });

  it("dormantTest: baseLoss is the clean next-token loss; 'zero' equals removing the head's W_O; a silenced head is dormant", async () => {
    const layer = 1;
    const head = 2;
    const silent = await loadModel(GPT2_TINY);
    try {
      const WO = silent.params[`blocks.${layer}.attn.W_O`];
      const keep = tf.tensor([1, 1, 0, 1], [4, 1, 1]);
      silent.params[`blocks.${layer}.attn.W_O`] = WO.mul(keep);
      WO.dispose();
      keep.dispose();
      silent.invalidateFused();
      const domain = { name: 'rep', tokens: padded, attentionMask: mask };
      const before = tf.memory().numTensors;
      const res = await dormantTest(gpt2, [domain], { intervention: 'zero', tolerance: 1e-4, heads: [[layer, head], [0, 1]] });
      assert.equal(tf.memory().numTensors, before);
      const base = await jsLoss(await gpt2.forward(padded, { attentionMask: mask }), padded, (b, j) => j > first[b]);
      const row = res.rows.find((r) => r.layer === layer && r.head === head)!;
      near(row.baseLoss, base, 'base');
      const want = await jsLoss(await silent.forward(padded, { attentionMask: mask }), padded, (b, j) => j > first[b]);
      near(row.ablatedLoss, want, 'ablated');
      near(row.delta, want - base, 'delta');
      assert.ok(Math.abs(row.delta) > 1e-3, 'the head matters on this model, so the comparison is not trivial');
      assert.equal(res.scores.rep.method, 'dormant-test');
      assert.equal(res.scores.rep.scores[layer][head], row.delta);
      assert.equal(res.scores.rep.extra!.tested[2][3], 0);
      assert.equal(row.status, Math.abs(row.delta) <= 1e-4 ? 'dormant' : row.delta > 0 ? 'active' : 'negative');
      for (const intervention of ['zero', 'bos'] as const) {
        const r2 = await dormantTest(silent, [domain], { intervention, tolerance: 1e-5, heads: [[layer, head]] });
        assert.ok(Math.abs(r2.rows[0].delta) < 1e-5, `${intervention}: ${r2.rows[0].delta}`);
        assert.equal(r2.rows[0].status, 'dormant');
        assert.deepEqual(r2.params, { intervention, tolerance: 1e-5 });
      }
    } finally {
      silent.dispose();
    }
  });

  it("dormantTest 'bos' equals replacing the head's z by its value at the first real token; lossMask selects targets", async () => {
    const layer = 2;
    const head = 1;
    const lossMask = padded.map((row, b) => row.map((_, j) => (j >= first[b] + 3 ? 1 : 0)));
    const before = tf.memory().numTensors;
    let calls = 0;
    const res = await dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask, lossMask }], { intervention: 'bos', heads: [[layer, head]], onProgress: () => calls++ });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(calls, 1);
    const counted = (b: number, j: number) => j >= first[b] + 3;
    const { logits, cache } = await gpt2.runWithCache(padded, { attentionMask: mask, namesFilter: [`blocks.${layer}.attn.hook_v`] });
    const v = (await cache.get(`blocks.${layer}.attn.hook_v`).array()) as number[][][][];
    cache.dispose();
    const base = await jsLoss(logits, padded, counted);
    const zBos = tf.tensor4d(padded.map((row, b) => row.map(() => Array.from({ length: 4 }, (_, hh) => (hh === head ? v[b][first[b]][head] : new Array(v[0][0][0].length).fill(0))))));
    const sel = tf.tensor4d([0, 1, 0, 0], [1, 1, 4, 1]);
    const hook = (z: tf.Tensor) => tf.tidy(() => z.mul(tf.scalar(1).sub(sel)).add(zBos.mul(sel)));
    const want = await jsLoss(await gpt2.runWithHooks(padded, { attentionMask: mask, fwdHooks: [[`blocks.${layer}.attn.hook_z`, hook]] }), padded, counted);
    tf.dispose([zBos, sel]);
    near(res.rows[0].baseLoss, base, 'base');
    near(res.rows[0].ablatedLoss, want, 'ablated');
    await assert.rejects(dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask }], { heads: [[3, 0]] }), ValueError);
    await assert.rejects(dormantTest(gpt2, [{ name: 'd', tokens: padded, attentionMask: mask, lossMask: padded.map((r) => r.map(() => 0)) }]), ValueError);
  });

  it('entropyDormancy equals entropyDetector on the cached patterns, and a padded prompt equals itself alone', async () => {
    const before = tf.memory().numTensors;
    const batched = await entropyDormancy(gpt2, { tokens: padded, attentionMask: mask }, { batchSize: 2 });
    let row = 0;
    let col = 0;
    for (const p of prompts) {
      const { logits, cache } = await gpt2.runWithCache([p], { namesFilter: (n) => n.endsWith('hook_pattern') });
      const r = await entropyDetector([0, 1, 2].map((l) => cache.get(`blocks.${l}.attn.hook_pattern`)));
      row += r.rowEntropy[2][3] / prompts.length;
      col += r.colEntropy[2][3] / prompts.length;
      logits.dispose();
      cache.dispose();
    }
    near(batched.rowEntropy[2][3], row, 'row', 1e-6);
    near(batched.colEntropy[2][3], col, 'col', 1e-6);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe("fidelity: ports of Guo et al.'s code on shipped models", function () {
  this.timeout(600000);
  let bb: HookedTransformer;
  before(async () => {
    bb = await loadModel('fixtures/models/bb');
  });
  after(() => bb?.dispose());

  it('BOS statistics = the Bigram-Backcopy measures of BBM/probe_utils.py on the bb model (non-trigger queries, query 0 included)', async () => {
    const { tokens, triggers } = bbData(6, 777);
    const L = bb.cfg.n_layers;
    const layers = Array.from({ length: L }, (_, l) => l);
    const hidden = [...layers.map((l) => `blocks.${l}.hook_resid_pre`), 'ln_final.hook_normalized'];
    const post = layers.map((l) => `blocks.${l}.hook_resid_post`);
    const acts = await cached(bb, tokens, [...layers.flatMap((l) => [`blocks.${l}.attn.hook_pattern`, `blocks.${l}.attn.hook_v`]), ...hidden, ...post]);
    const wo = await Promise.all(layers.map((l) => bb.params[`blocks.${l}.attn.W_O`].array()));
    // value_states layout (bs, n_heads, slen, head_dim)
    const values = layers.map((l) => (acts[`blocks.${l}.attn.hook_v`] as number[][][][]).map((seq) => seq[0].map((_, h) => seq.map((pos) => pos[h]))));
    const input = { attn: layers.map((l) => acts[`blocks.${l}.attn.hook_pattern`]), values, wo, triggers };
    const port = runPort<Record<string, number[][] & number[]>>('guo_bbm', { ...input, states: hidden.map((n) => acts[n]) });
    const queryMask = triggers.map((r) => r.map((t) => 1 - t));
    const s = await bosStats(bb, { tokens }, { queryMask });
    closeGrid(s.attnSink, port.bos_attn, 'bos_attn');
    closeGrid(s.valueNormBos, port.value_norm, 'value_norm (raw ||v|| at BOS)');
    closeGrid(s.valueNormOther, port.value_other, 'value norm of the other positions');
    closeGrid(s.valueOutNormBos, port.value_out_norm, 'wo(value) norm at BOS');
    s.residNormBos.forEach((v, k) => near(v, port.state_norm[k], `hidden state ${k} at BOS`));
    s.residNormOther.forEach((v, k) => near(v, port.state_other[k], `hidden state ${k} elsewhere`));
    assert.ok(s.attnSink[0][0] > 0.3 || s.attnSink[1][0] > 0.3 || s.attnSink[2][0] > 0.3, 'bb has an attention sink');
    // the BBM output_norm of probe_utils.py line 290: the L layer outputs
    const portPost = runPort<Record<string, number[]>>('guo_bbm', { ...input, states: post.map((n) => acts[n]) });
    const s2 = await bosStats(bb, { tokens }, { queryMask, residual: 'resid-post' });
    s2.residNormBos.forEach((v, k) => near(v, portPost.state_norm[k], `resid_post ${k} at BOS`));
  });

  it('entropy detector = LLM/src/entropy.py with the hook condition, on the bb and ioi models', async () => {
    const ioi = await loadModel('fixtures/models/ioi');
    try {
      for (const [model, tokens] of [
        [bb, bbData(5, 31).tokens],
        [ioi, Array.from({ length: 4 }, (_, b) => Array.from({ length: 14 }, (_, t) => (t === 0 ? (ioi.bosTokenId() ?? 0) : 2 + ((b * 13 + t * 17) % 150))))],
      ] as const) {
        const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
        const acts = await cached(model, tokens, names);
        const taus = { tauRow: 0.4, tauCol: 0.5 };
        const port = runPort<{ row: number[][][]; col: number[][][]; dormant: number[][][] }>('guo_entropy', { attn: names.map((n) => acts[n]), row_thr: taus.tauRow, col_thr: taus.tauCol });
        const r = await entropyDormancy(model, { tokens }, taus);
        const mean = (x: number[][][]) => x.map((layer) => layer[0].map((_, h) => layer.reduce((s, b) => s + b[h], 0) / tokens.length));
        closeGrid(r.rowEntropy, mean(port.row), `${model.name} row entropy`, 1e-5);
        closeGrid(r.colEntropy, mean(port.col), `${model.name} column entropy`, 1e-5);
        closeGrid(r.scores.scores, mean(port.dormant), `${model.name} dormant fraction`, 1e-9);
      }
    } finally {
      ioi.dispose();
    }
  });

  it("intervention test = the authors' attention-weight hooks (hook.py) and ce_loss (loss_ppl.py) on the bb model", async () => {
    const { tokens } = bbData(4, 5);
    const L = bb.cfg.n_layers;
    const loss = async (fwdHooks: Array<[string, (a: tf.Tensor) => tf.Tensor]>) => {
      const lg = await bb.runWithHooks(tokens, { fwdHooks: fwdHooks as never });
      const logits = await lg.array();
      lg.dispose();
      return runPort<{ loss: number }>('guo_intervene', { op: 'loss', logits, labels: tokens }).loss;
    };
    const base = await loss([]);
    for (const [intervention, kind] of [['zero', 'zero_out_attn'], ['bos', 'move_attn_to_bos']] as const) {
      const res = await dormantTest(bb, [{ name: 'bb', tokens }], { intervention });
      for (let l = 0; l < L; l++) {
        const name = `blocks.${l}.attn.hook_pattern`;
        const clean = (await cached(bb, tokens, [name]))[name];
        const theirs = runPort<{ attn: number[][][][] }>('guo_intervene', { op: 'intervene', attn: clean, head: 0, kind }).attn;
        const replaced = tf.tensor4d(theirs);
        const ablated = await loss([[name, () => replaced.clone()]]);
        replaced.dispose();
        const row = res.rows.find((r) => r.layer === l && r.head === 0)!;
        near(row.baseLoss, base, `${intervention} base`);
        near(row.ablatedLoss, ablated, `${intervention} layer ${l}`);
      }
      assert.ok(res.rows.some((r) => Math.abs(r.delta) > 1e-3), `${intervention}: some head matters`);
    }
  });
});
