import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { rng } from '../src/util/random.js';
import { FactoredMatrix } from '../src/analyses/weights/factored.js';
import {
  allCompositionScores,
  compositionBaseline,
  compositionScore,
  compositionScores,
  headCompositionScore,
} from '../src/analyses/weights/composition.js';
import { ShapeError, ValueError } from '../src/errors.js';
import { HookedTransformer, loadModel, randomModel } from '../src/model/index.js';
import { copyingScores, ovTokenEigenvalues } from '../src/analyses/weights/copying.js';
import { ovCircuit, qkCircuit } from '../src/analyses/weights/circuits.js';
import { runPort } from './helpers/port.js';

type P = Record<string, tf.Tensor>;

/** Dense brute force: ||L R||_F / (||L||_F ||R||_F) with plain loops over number[][]. */
function bruteScore(L: number[][], R: number[][]): number {
  const n = L.length, m = R.length, k = R[0].length;
  let num = 0, ln = 0, rn = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) ln += L[i][j] ** 2;
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) rn += R[i][j] ** 2;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let t = 0; t < m; t++) s += L[i][t] * R[t][j];
      num += s * s;
    }
  }
  return Math.sqrt(num) / Math.sqrt(ln * rn);
}
const mm = (a: number[][], b: number[][]) => new Matrix(a).mmul(new Matrix(b)).to2DArray();
const T = (a: number[][]) => new Matrix(a).transpose().to2DArray();

function randomParams(nLayers: number, nHeads: number, nKv: number, dModel: number, dHead: number, seed: number): P {
  const r = rng(seed);
  const arr = (n: number) => Array.from({ length: n }, () => r.normal());
  const p: P = {};
  for (let l = 0; l < nLayers; l++) {
    p[`blocks.${l}.attn.W_Q`] = tf.tensor3d(arr(nHeads * dModel * dHead), [nHeads, dModel, dHead]);
    p[`blocks.${l}.attn.W_K`] = tf.tensor3d(arr(nKv * dModel * dHead), [nKv, dModel, dHead]);
    p[`blocks.${l}.attn.W_V`] = tf.tensor3d(arr(nKv * dModel * dHead), [nKv, dModel, dHead]);
    p[`blocks.${l}.attn.W_O`] = tf.tensor3d(arr(nHeads * dHead * dModel), [nHeads, dHead, dModel]);
  }
  return p;
}
/** Host copies of every weight (read asynchronously), indexed [name][head]. */
async function hostOf(p: P): Promise<Record<string, number[][][]>> {
  const names = Object.keys(p);
  const vals = await Promise.all(names.map((n) => p[n].array()));
  return Object.fromEntries(names.map((n, i) => [n, vals[i] as number[][][]]));
}
const dispose = (p: P) => Object.values(p).forEach((t) => t.dispose());

/** Unit vectors e_i of R^d as columns selecting `dims`: a d x dims.length matrix. */
function selector(d: number, dims: number[]): number[][] {
  return Array.from({ length: d }, (_, i) => dims.map((k) => (i === k ? 1 : 0)));
}

describe('composition scores', () => {
  it('hand-checked 2x2 cases: aligned = 1, orthogonal = 0, partial = 1/sqrt(2)', () => {
    const L = new FactoredMatrix([[1], [0]], [[1, 1]]); // [[1,1],[0,0]]
    const Raligned = new FactoredMatrix([[1], [1]], [[1, 0]]); // [[1,0],[1,0]] -> LR = [[2,0],[0,0]]
    const Rorth = new FactoredMatrix([[1], [-1]], [[1, 0]]); // LR = 0
    const Rhalf = new FactoredMatrix([[1], [0]], [[1, 0]]); // [[1,0],[0,0]] -> LR = [[1,0],[0,0]]: 1 / (sqrt2 * 1)
    assert.ok(Math.abs(compositionScore(L, Raligned) - 1) < 1e-12);
    assert.ok(Math.abs(compositionScore(L, Rorth)) < 1e-12);
    assert.ok(Math.abs(compositionScore(L, Rhalf) - Math.SQRT1_2) < 1e-12);
    assert.equal(compositionScore(new FactoredMatrix([[0], [0]], [[1, 1]]), Rhalf), 0);
    assert.throws(() => compositionScore(L, new FactoredMatrix([[1], [0], [0]], [[1, 0]])), ShapeError);
  });

  it('factored score equals the dense brute force on random circuits', () => {
    const r = rng(3);
    const rand = (a: number, b: number) => Array.from({ length: a }, () => Array.from({ length: b }, () => r.normal()));
    for (let t = 0; t < 5; t++) {
      const A1 = rand(7, 3), B1 = rand(3, 7), A2 = rand(7, 2), B2 = rand(2, 7);
      const got = compositionScore(new FactoredMatrix(A1, B1), new FactoredMatrix(A2, B2));
      const ref = bruteScore(mm(A1, B1), mm(A2, B2));
      assert.ok(Math.abs(got - ref) / ref < 1e-9, `${got} vs ${ref}`);
    }
  });

  // Earlier head 0.0 writes only into residual dims {4,5}. The later head 1.0 reads queries from
  // `qDims`, keys from `kDims`, values from `vDims`: the mode whose input is {4,5} must win, the
  // other two must be exactly 0.
  const d = 6, dh = 2;
  function orientationParams(qDims: number[], kDims: number[], vDims: number[]): P {
    const r = rng(9);
    const rand = (a: number, b: number) => Array.from({ length: a }, () => Array.from({ length: b }, () => r.normal()));
    const mix = rand(2, 2);
    const wv0 = rand(d, dh);
    const wo0 = mm(mix, T(selector(d, [4, 5]))); // [dh x d], rows live in span(e4, e5)
    const read = (dims: number[]) => mm(selector(d, dims), rand(2, 2)); // [d x dh], reads only dims
    return {
      'blocks.0.attn.W_Q': tf.tensor3d([rand(d, dh)]),
      'blocks.0.attn.W_K': tf.tensor3d([rand(d, dh)]),
      'blocks.0.attn.W_V': tf.tensor3d([wv0]),
      'blocks.0.attn.W_O': tf.tensor3d([wo0]),
      'blocks.1.attn.W_Q': tf.tensor3d([read(qDims)]),
      'blocks.1.attn.W_K': tf.tensor3d([read(kDims)]),
      'blocks.1.attn.W_V': tf.tensor3d([read(vDims)]),
      'blocks.1.attn.W_O': tf.tensor3d([rand(dh, d)]),
    };
  }
  const cases: Array<[string, number[], number[], number[]]> = [
    ['K', [0, 1], [4, 5], [2, 3]],
    ['Q', [4, 5], [0, 1], [2, 3]],
    ['V', [0, 1], [2, 3], [4, 5]],
  ];
  for (const [winner, q, k, v] of cases) {
    it(`orientation: a later head whose ${winner === 'Q' ? 'query' : winner === 'K' ? 'key' : 'value'} reads the earlier OV output has ${winner}-composition largest`, async () => {
      const p = orientationParams(q, k, v);
      const h = await hostOf(p);
      const headOf = (_: P, name: string, i: number) => h[name][i];
      const before = tf.memory().numTensors;
      const all = await allCompositionScores({ params: p });
      assert.equal(tf.memory().numTensors, before);
      const s = { Q: all.Q.scores[0][0][1][0], K: all.K.scores[0][0][1][0], V: all.V.scores[0][0][1][0] };
      for (const m of ['Q', 'K', 'V'] as const) {
        if (m === winner) assert.ok(s[m] > 0.3, `${m} = ${s[m]}`);
        else assert.ok(Math.abs(s[m]) < 1e-6, `${m} should be 0, got ${s[m]}`);
      }
      // TransformerLens definition, densely: Q: OV0 @ QK1, K: OV0 @ QK1^T, V: OV0 @ OV1
      const OV0 = mm(headOf(p, 'blocks.0.attn.W_V', 0), headOf(p, 'blocks.0.attn.W_O', 0));
      const QK1 = mm(headOf(p, 'blocks.1.attn.W_Q', 0), T(headOf(p, 'blocks.1.attn.W_K', 0)));
      const OV1 = mm(headOf(p, 'blocks.1.attn.W_V', 0), headOf(p, 'blocks.1.attn.W_O', 0));
      const ref = { Q: bruteScore(OV0, QK1), K: bruteScore(OV0, T(QK1)), V: bruteScore(OV0, OV1) };
      for (const m of ['Q', 'K', 'V'] as const) assert.ok(Math.abs(s[m] - ref[m]) < 1e-6, `${m}: ${s[m]} vs ${ref[m]}`);
      dispose(p);
    });
  }

  it('all pairs (GQA, 3 layers) equal per-pair brute force, in every layout, on both engines', async () => {
    const nL = 3, nH = 4, nKv = 2, dm = 8, dhd = 3;
    const p = randomParams(nL, nH, nKv, dm, dhd, 21);
    const h = await hostOf(p);
    const headOf = (_: P, name: string, i: number) => h[name][i];
    const before = tf.memory().numTensors;
    const res = await compositionScores({ params: p, cfg: { n_layers: nL } }, 'K');
    const resTf = await compositionScores(p, 'K', { engine: 'tf' });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(res.params.engine, 'ml-matrix');
    assert.equal(resTf.params.engine, 'tf');
    assert.equal(res.labels.length, nL * nH);
    assert.equal(res.rows.length, nH * nH * 3); // pairs (0,1), (0,2), (1,2)
    for (let i = 1; i < res.rows.length; i++) assert.ok(res.rows[i - 1].score >= res.rows[i].score);
    for (let l1 = 0; l1 < nL; l1++) {
      for (let h1 = 0; h1 < nH; h1++) {
        const OV0 = mm(headOf(p, `blocks.${l1}.attn.W_V`, Math.floor((h1 * nKv) / nH)), headOf(p, `blocks.${l1}.attn.W_O`, h1));
        for (let l2 = 0; l2 < nL; l2++) {
          for (let h2 = 0; h2 < nH; h2++) {
            const got = res.scores[l1][h1][l2][h2];
            const cell = res.matrix[l2 * nH + h2][l1 * nH + h1];
            assert.equal(cell, got);
            if (l2 <= l1) {
              assert.equal(got, 0);
              continue;
            }
            const KQ = mm(headOf(p, `blocks.${l2}.attn.W_K`, Math.floor((h2 * nKv) / nH)), T(headOf(p, `blocks.${l2}.attn.W_Q`, h2)));
            const ref = bruteScore(OV0, KQ);
            assert.ok(Math.abs(got - ref) < 1e-6 * ref, `${l1}.${h1} -> ${l2}.${h2}: ${got} vs ${ref}`);
            assert.ok(Math.abs(resTf.scores[l1][h1][l2][h2] - ref) < 1e-4 * ref, 'tf engine');
            assert.ok(Math.abs((await headCompositionScore(p, 'K', l1, h1, l2, h2)) - ref) < 1e-6 * ref);
          }
        }
      }
    }
    const top = res.rows[0];
    assert.equal(res.scores[top.srcLayer][top.srcHead][top.layer][top.head], top.score);
    dispose(p);
  });

  it('baseline: seeded, reproducible, close to 1/sqrt(d_model) for random Gaussian heads', async () => {
    const b1 = compositionBaseline(64, 8, { samples: 40, seed: 1 });
    const b2 = compositionBaseline(64, 8, { samples: 40, seed: 1 });
    const b3 = compositionBaseline(64, 8, { samples: 40, seed: 2 });
    assert.equal(b1, b2);
    assert.notEqual(b1, b3);
    // ||A1 B1 A2 B2||^2 ~ k^2 d^3 and ||A B||^2 ~ k d^2 for i.i.d. N(0,1) factors: score ~ 1/sqrt(d)
    assert.ok(Math.abs(b1 - 1 / 8) < 0.25 / 8, `baseline ${b1}`);
    const p = randomParams(2, 2, 2, 6, 2, 4);
    const res = await compositionScores(p, 'V', { baseline: true, baselineSamples: 20, seed: 3 });
    assert.equal(res.baseline, compositionBaseline(6, 2, { samples: 20, seed: 3 }));
    for (const row of res.rows) assert.equal(row.corrected, row.score - res.baseline!);
    await assert.rejects(() => compositionScores(p, 'X' as 'Q'), ValueError);
    dispose(p);
  });
});

describe('weight analyses on a loaded HookedTransformer', () => {
  it('llama fixture (GQA 4/2 heads): composition and copying scores equal dense brute force from model.params', async () => {
    const model = await loadModel('fixtures/reference/llama');
    const before = tf.memory().numTensors;
    const { n_layers: nL, n_heads: nH, n_kv_heads: nKv } = model.cfg;
    assert.equal(nKv, 2);
    const all = await allCompositionScores(model);
    const cs = await copyingScores(model);
    assert.equal(tf.memory().numTensors, before);
    assert.equal(cs.model, model.name);
    const p = model.params;
    const host = await hostOf(p);
    const headOf = (_: P, name: string, i: number) => host[name][i];
    const WE = host['embed.W_E'] as unknown as number[][];
    const WU = host['unembed.W_U'] as unknown as number[][];
    for (let l = 0; l < nL; l++) {
      for (let h = 0; h < nH; h++) {
        const kv = Math.floor((h * nKv) / nH);
        const OV = mm(headOf(p, `blocks.${l}.attn.W_V`, kv), headOf(p, `blocks.${l}.attn.W_O`, h));
        // copying: eigenvalues of the dense d_vocab x d_vocab token circuit
        const dense = new Matrix(mm(mm(WE, OV), WU));
        const e = new EigenvalueDecomposition(dense);
        let mass = 0, sumRe = 0;
        e.realEigenvalues.forEach((re, i) => {
          mass += Math.hypot(re, e.imaginaryEigenvalues[i]);
          sumRe += re;
        });
        assert.ok(Math.abs(cs.extra!.elhageRatio[l][h] - sumRe / mass) < 1e-3, `copying ${l}.${h}: ${cs.extra!.elhageRatio[l][h]} vs ${sumRe / mass}`);
        if (l === 0) {
          for (let h2 = 0; h2 < nH; h2++) {
            const kv2 = Math.floor((h2 * nKv) / nH);
            const QK = mm(headOf(p, 'blocks.1.attn.W_Q', h2), T(headOf(p, 'blocks.1.attn.W_K', kv2)));
            const OV2 = mm(headOf(p, 'blocks.1.attn.W_V', kv2), headOf(p, 'blocks.1.attn.W_O', h2));
            const ref = { Q: bruteScore(OV, QK), K: bruteScore(OV, T(QK)), V: bruteScore(OV, OV2) };
            for (const m of ['Q', 'K', 'V'] as const) {
              const got = all[m].scores[0][h][1][h2];
              assert.ok(Math.abs(got - ref[m]) < 1e-5 * ref[m], `${m} 0.${h} -> 1.${h2}: ${got} vs ${ref[m]}`);
            }
          }
        }
      }
    }
    model.dispose();
  });
});

/**
 * A hand-built 2-layer GPT-2-style induction model (independent of the fixtures): layer 0 head 0 is
 * a previous-token head (positional QK) whose OV copies the token identity into a "previous token"
 * subspace; layer 1 head 0 is an induction head whose KEY reads that subspace and whose query reads
 * the current token; its OV writes the attended token into an output subspace that W_U reads.
 * Heads 0.1 and 1.1 are small random distractors; MLPs are zero. Every logical residual direction
 * k is coded as (+1, -1) on dims (2k, 2k + 1), so LayerNorm's centering is a no-op.
 */
describe('handmade induction model', () => {
  const V = 8, NCTX = 16, D = 80, H = 2, DH = 40;
  const Tk = (t: number) => t, Pk = (p: number) => 8 + p, Sk = (t: number) => 24 + t, Ok = (t: number) => 32 + t;

  function build(): HookedTransformer {
    const hf = {
      model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], activation_function: 'gelu_new', n_embd: D, n_head: H,
      n_layer: 2, n_positions: NCTX, vocab_size: V, n_inner: 16, layer_norm_epsilon: 1e-5, tie_word_embeddings: false,
      bos_token_id: 0, eos_token_id: 0,
    };
    const template = randomModel(hf, { seed: 1 });
    const r = rng(77);
    const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [k, t] of Object.entries(template.params)) {
      const data = new Float32Array(t.size);
      if (/ln(1|2|_final)\.w$/.test(k)) data.fill(1);
      arrays[k] = { shape: t.shape.slice(), data };
    }
    const cfg = template.cfg;
    template.dispose();
    const set = (name: string, idx: number[], v: number) => {
      const a = arrays[name];
      let off = 0;
      for (let i = 0; i < idx.length; i++) off = off * a.shape[i] + idx[i];
      a.data[off] = v;
    };
    /** Write the logical direction k with weight v into row/column pairs. */
    const emb = (name: string, row: number, k: number, v: number) => {
      set(name, [row, 2 * k], v);
      set(name, [row, 2 * k + 1], -v);
    };
    /** A [n, d_model, d_head] read weight: head h reads logical k into head dim c. */
    const read = (name: string, h: number, k: number, c: number, v: number) => {
      set(name, [h, 2 * k, c], v);
      set(name, [h, 2 * k + 1, c], -v);
    };
    /** A [n, d_head, d_model] write weight: head dim c writes logical k. */
    const write = (name: string, h: number, c: number, k: number, v: number) => {
      set(name, [h, c, 2 * k], v);
      set(name, [h, c, 2 * k + 1], -v);
    };
    for (let t = 0; t < V; t++) emb('embed.W_E', t, Tk(t), 1);
    for (let p = 0; p < NCTX; p++) emb('pos_embed.W_pos', p, Pk(p), 1);
    // W_U [d_model, d_vocab]: logit t reads the output direction O_t
    for (let t = 0; t < V; t++) {
      set('unembed.W_U', [2 * Ok(t), t], 4);
      set('unembed.W_U', [2 * Ok(t) + 1, t], -4);
    }
    const b0 = 'blocks.0.attn.', b1 = 'blocks.1.attn.';
    // 0.0 previous-token head: q(i) = e_i, k(j) = e_{j+1}; OV: token t -> S_t
    for (let p = 0; p < NCTX; p++) {
      read(b0 + 'W_Q', 0, Pk(p), p, 1.5);
      read(b0 + 'W_K', 0, Pk(p), p + 1, 1.5);
    }
    for (let t = 0; t < V; t++) {
      read(b0 + 'W_V', 0, Tk(t), t, 0.15);
      write(b0 + 'W_O', 0, t, Sk(t), 1);
    }
    // 1.0 induction head: q(i) = e_{tok i}, k(j) = e_{S(j)} = e_{tok j-1}; OV: token t -> O_t
    for (let t = 0; t < V; t++) {
      read(b1 + 'W_Q', 0, Tk(t), t, 1.5);
      read(b1 + 'W_K', 0, Sk(t), t, 1.5);
      read(b1 + 'W_V', 0, Tk(t), t, 0.15);
      write(b1 + 'W_O', 0, t, Ok(t), 1);
    }
    // distractor heads 0.1 and 1.1: small random weights
    for (const b of [b0, b1]) {
      for (const w of ['W_Q', 'W_K', 'W_V', 'W_O']) {
        const a = arrays[b + w];
        const per = a.data.length / H;
        for (let i = per; i < 2 * per; i++) a.data[i] = 0.05 * r.normal();
      }
    }
    const params: Record<string, tf.Tensor> = {};
    for (const [k, a] of Object.entries(arrays)) params[k] = tf.tensor(a.data, a.shape);
    return new HookedTransformer(cfg, params, null, 'handmade-induction');
  }

  it('does induction, and its largest K-composition is previous-token head 0.0 -> induction head 1.0', async () => {
    const model = build();
    // functional check: a repeated random block of 7 distinct tokens
    // (the unused token starts the sequence like a BOS: position 0's previous-token head can only
    // attend to itself, so its own token must not recur)
    const perm = rng(5).shuffle([0, 1, 2, 3, 4, 5, 6, 7]);
    const block = perm.slice(0, 7);
    const seq = [perm[7], ...block, ...block];
    const { logits, cache } = await model.runWithCache([seq]);
    const pattern = (await cache.get('blocks.1.attn.hook_pattern').array()) as number[][][][];
    const am = logits.argMax(-1);
    const pred = ((await am.array()) as number[][])[0];
    am.dispose();
    for (let i = 8; i < 14; i++) {
      assert.ok(pattern[0][0][i][i - 6] > 0.9, `induction attention at ${i}: ${pattern[0][0][i][i - 6]}`);
      assert.equal(pred[i], seq[i + 1], `prediction at ${i}`);
    }
    logits.dispose();
    cache.dispose();

    const before = tf.memory().numTensors;
    const all = await allCompositionScores(model);
    assert.equal(tf.memory().numTensors, before);
    const topK = all.K.rows[0];
    assert.deepEqual([topK.srcLayer, topK.srcHead, topK.layer, topK.head], [0, 0, 1, 0]);
    // hand value: OV(0.0) and QK^T(1.0) are matched rank-8 partial isometries (up to scale): 1/sqrt(8)
    assert.ok(Math.abs(topK.score - 1 / Math.sqrt(8)) < 1e-5, `K-composition ${topK.score}`);
    assert.ok(topK.score > 1.5 * all.K.rows[1].score, 'clearly above the distractor pairs');
    // the same pair has no Q- or V-composition: the subspace it writes is read only by 1.0's keys
    assert.ok(all.Q.scores[0][0][1][0] < 1e-6);
    assert.ok(all.V.scores[0][0][1][0] < 1e-6);
    // copying: the induction head's token circuit W_E W_V W_O W_U is a positive multiple of the
    // identity on the 8 tokens; the previous-token head writes nothing W_U reads (mass 0, score 0)
    const cs = await copyingScores(model);
    assert.ok(cs.scores[1][0] > 0.999 && cs.extra!.positiveShare[1][0] > 0.999, `induction head copying ${cs.scores[1][0]}`);
    assert.ok(cs.extra!.eigenvalueMass[0][0] < 1e-6 * cs.extra!.eigenvalueMass[1][0]);
    model.dispose();
  });
});

describe('shipped fixture fixtures/models/induction-handmade', () => {
  it('its largest K-composition is from its previous-token head into its induction head, and the induction head copies', async () => {
    const dir = 'fixtures/models/induction-handmade';
    const circuit = JSON.parse(readFileSync(`${dir}/circuit.json`, 'utf8')) as { roles: Record<string, string> };
    const byRole = (re: RegExp) => {
      const name = Object.keys(circuit.roles).find((k) => re.test(circuit.roles[k]));
      assert.ok(name, `circuit.json names a head matching ${re}`);
      return name!.split('.').map(Number);
    };
    const [pl, ph] = byRole(/^previous-token/);
    const [il, ih] = byRole(/^induction/);
    const model = await loadModel(dir);
    const before = tf.memory().numTensors;
    const K = await compositionScores(model, 'K');
    const cs = await copyingScores(model);
    assert.equal(tf.memory().numTensors, before);
    const top = K.rows[0];
    assert.deepEqual([top.srcLayer, top.srcHead, top.layer, top.head], [pl, ph, il, ih]);
    assert.ok(top.score > 0.1 && top.score > K.rows[1].score + 0.05, `top ${top.score}, next ${K.rows[1].score}`);
    assert.equal(K.matrix[il * K.nHeads + ih][pl * K.nHeads + ph], top.score);
    assert.ok(cs.scores[il][ih] > 0.9, `induction head copying ${cs.scores[il][ih]}`);
    model.dispose();
  });
});

/**
 * Against an independent port of TransformerLens's computations (test/ports/weights.py: FactoredMatrix
 * SVD/collapse, utilities/matrix.py composition_scores, all_composition_scores, the Main_Demo copying
 * score) on the weights of shipped models.
 */
type Maybe = number | null;
describe('weight analyses against the TransformerLens port (test/ports/weights.py)', function () {
  this.timeout(120000);
  for (const name of ['recall', 'var-group', 'induction-handmade']) {
    it(`${name}: Q/K/V composition of every pair, copying scores, token-circuit eigenvalues and dense OV/QK circuits`, async () => {
      const model = await loadModel(`fixtures/models/${name}`);
      const { n_layers: nL, n_heads: nH } = model.cfg;
      // float32 views of every weight: an F16 checkpoint (recall) stays packed in halfParams on WebGPU
      const views = Object.fromEntries([...Object.keys(model.params), ...Object.keys(model.halfParams)].map((n) => [n, model.weight(n)]));
      const host = await hostOf(views);
      dispose(views);
      const stack = (w: string) => Array.from({ length: nL }, (_, l) => host[`blocks.${l}.attn.${w}`]);
      const ref = runPort<{ Q: Maybe[][][][]; K: Maybe[][][][]; V: Maybe[][][][]; copying: Maybe[][]; eig_abs: number[][][]; ov_token: number[][][][]; qk_token: number[][][][] }>('weights', {
        W_E: host['embed.W_E'],
        W_U: host['unembed.W_U'],
        W_Q: stack('W_Q'),
        W_K: stack('W_K'),
        W_V: stack('W_V'),
        W_O: stack('W_O'),
      });
      const before = tf.memory().numTensors;
      const all = await allCompositionScores(model);
      const cs = await copyingScores(model);
      let worst = 0;
      for (const m of ['Q', 'K', 'V'] as const) {
        all[m].scores.forEach((a, l1) => a.forEach((b, h1) => b.forEach((c, l2) => c.forEach((got, h2) => {
          const want = ref[m][l1][h1][l2][h2] ?? 0; // TransformerLens: 0/0 (NaN) for a head that writes nothing; tflens: 0
          worst = Math.max(worst, Math.abs(got - want));
          assert.ok(Math.abs(got - want) <= 1e-6 * Math.max(1, Math.abs(want)), `${m} ${l1}.${h1} -> ${l2}.${h2}: ${got} vs ${want}`);
        }))));
      }
      for (let l = 0; l < nL; l++) {
        for (let h = 0; h < nH; h++) {
          const want = ref.copying[l][h] ?? 0;
          assert.ok(Math.abs(cs.scores[l][h] - want) < 1e-4, `copying ${l}.${h}: ${cs.scores[l][h]} vs ${want}`);
          const ev = await ovTokenEigenvalues(model, l, h);
          const mods = ev.re.map((re, i) => Math.hypot(re, ev.im[i]));
          mods.forEach((v, i) => assert.ok(Math.abs(v - ref.eig_abs[l][h][i]) <= 1e-4 * Math.max(1, ref.eig_abs[l][h][0]), `|eig| ${l}.${h}[${i}]`));
          const [ov, qk] = [await ovCircuit(model, l, h), await qkCircuit(model, l, h)];
          const near = (a: Matrix, b: number[][], what: string) => {
            const scale = Math.max(...b.flat().map(Math.abs), 1e-12);
            b.forEach((row, i) => row.forEach((v, j) => assert.ok(Math.abs(a.get(i, j) - v) <= 1e-5 * scale, `${what} ${l}.${h} [${i}][${j}]`)));
          };
          near(ov.AB, ref.ov_token[l][h], 'OV token circuit');
          near(qk.AB, ref.qk_token[l][h], 'QK token circuit');
        }
      }
      assert.equal(tf.memory().numTensors, before);
      console.log(`      ${name}: worst composition difference ${worst.toExponential(2)}`);
      model.dispose();
    });
  }
});
