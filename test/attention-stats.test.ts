import { strict as assert } from 'node:assert';
import * as tf from '@tensorflow/tfjs';
import { columnMean, rowEntropies, columnEntropies, headEntropies, hostMask, runChunks } from '../src/analyses/attention-stats.js';
import { loadModel } from '../src/model/index.js';
import { runPort } from './helpers/port.js';
import { bbData } from './helpers/attention.js';
import { rng } from '../src/util/random.js';
import { ShapeError, ValueError } from '../src/errors.js';

const A4 = [
  [1, 0, 0, 0],
  [0.5, 0.5, 0, 0],
  [0.2, 0.3, 0.5, 0],
  [0.1, 0.2, 0.3, 0.4],
];
// m_j = sum_{i>=j} A[i,j] / (N - j), by hand:
const M4 = [(1 + 0.5 + 0.2 + 0.1) / 4, (0.5 + 0.3 + 0.2) / 3, (0.5 + 0.3) / 2, 0.4 / 1];

/** Embed a [n, n] pattern at the bottom-right of a [N, N] matrix; pad rows get garbage, pad columns 0 for real rows. */
function leftPad(A: number[][], N: number): number[][] {
  const n = A.length;
  const off = N - n;
  return Array.from({ length: N }, (_, i) =>
    Array.from({ length: N }, (_, j) => (i < off ? (j <= i ? 1 / (i + 1) : 0) : j < off ? 0 : A[i - off][j - off])),
  );
}

function close(a: number[], b: number[], tol = 1e-6): void {
  assert.equal(a.length, b.length, `length ${a.length} vs ${b.length}`);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= tol, `index ${i}: ${x} vs ${b[i]}`));
}

describe('attention-stats: columnMean', () => {
  it('matches hand-computed column means of a 4x4 pattern (arrays)', () => {
    close(columnMean(A4), M4);
  });

  it('is batched over leading dims and leaks no tensors', async () => {
    const before = tf.memory().numTensors;
    const uniform = Array.from({ length: 4 }, (_, i) => Array.from({ length: 4 }, (_, j) => (j <= i ? 1 / (i + 1) : 0)));
    const t = tf.tensor4d([[A4, uniform], [uniform, A4]], [2, 2, 4, 4]);
    const m = columnMean(t);
    assert.deepEqual(m.shape, [2, 2, 4]);
    const arr = (await m.array()) as number[][][];
    close(arr[0][0], M4);
    close(arr[1][1], M4);
    // uniform causal: m_j = (1/N-j) * sum_{i>=j} 1/(i+1)
    const mu = [0, 1, 2, 3].map((j) => {
      let s = 0;
      for (let i = j; i < 4; i++) s += 1 / (i + 1);
      return s / (4 - j);
    });
    close(arr[0][1], mu);
    t.dispose();
    m.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it('with a left-padding mask, gives the unpadded values at the real positions and 0 on pads', async () => {
    const before = tf.memory().numTensors;
    const P = leftPad(A4, 6);
    close(columnMean(P, { attentionMask: [0, 0, 1, 1, 1, 1] }), [0, 0, ...M4]);
    // batched: prompt 0 unpadded in a [2, 1, 6, 6] batch with prompt 1 padded
    const A6 = Array.from({ length: 6 }, (_, i) => Array.from({ length: 6 }, (_, j) => (j === i ? 1 : 0)));
    const t = tf.tensor4d([[A6], [P]], [2, 1, 6, 6]);
    const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]);
    const m = columnMean(t, { attentionMask: mask });
    const arr = (await m.array()) as number[][][];
    close(arr[0][0], [1 / 6, 1 / 5, 1 / 4, 1 / 3, 1 / 2, 1]);
    close(arr[1][0], [0, 0, ...M4]);
    tf.dispose([t, mask, m]);
    assert.equal(tf.memory().numTensors, before);
  });

  it('general (non-left) masks: denominators count the real queries i >= j', () => {
    // right padding: last row is a pad; column 0 sees real rows 0..2
    const m = columnMean(A4, { attentionMask: [1, 1, 1, 0] });
    close(m, [(1 + 0.5 + 0.2) / 3, (0.5 + 0.3) / 2, 0.5 / 1, 0]);
  });

  it('rejects non-square patterns, bad masks and non-finite entries with typed errors', () => {
    assert.throws(() => columnMean(tf.zeros([2, 3, 4])), ShapeError);
    assert.throws(() => columnMean(A4, { attentionMask: [1, 1, 1] }), ShapeError);
    assert.throws(() => columnMean([[1, 0], [NaN, 1]]), ValueError);
    assert.throws(() => columnMean([[1, 0], [0.5]]), ShapeError);
  });
});

describe('attention-stats: entropies', () => {
  const H = (ps: number[]) => -ps.filter((p) => p > 0).reduce((s, p) => s + p * Math.log(p), 0);

  it('row entropies are normalised by log(#visible keys); the first row is 0', () => {
    const r = rowEntropies(A4);
    close(r, [0, 1, H([0.2, 0.3, 0.5]) / Math.log(3), H([0.1, 0.2, 0.3, 0.4]) / Math.log(4)]);
  });

  it('column entropies normalise A[., j] over its N - j queries; the last column is 0', () => {
    const c = columnEntropies(A4);
    const col0 = [1, 0.5, 0.2, 0.1].map((x) => x / 1.8);
    const col1 = [0.5, 0.3, 0.2];
    const col2 = [0.5, 0.3].map((x) => x / 0.8);
    close(c, [H(col0) / Math.log(4), H(col1) / Math.log(3), H(col2) / Math.log(2), 0]);
  });

  it('a BOS-only pattern has row entropy 0 and BOS column entropy 1', () => {
    const bos = Array.from({ length: 5 }, (_, i) => Array.from({ length: 5 }, (_, j) => (j === 0 ? 1 : 0)));
    close(rowEntropies(bos), [0, 0, 0, 0, 0]);
    assert.ok(Math.abs(columnEntropies(bos)[0] - 1) < 1e-12);
  });

  it('with an offset (left padding) equal the unpadded values', () => {
    const P = leftPad(A4, 6);
    close(rowEntropies(P, 2).slice(2), rowEntropies(A4));
    close(columnEntropies(P, 2).slice(2), columnEntropies(A4));
  });
});

describe('attention-stats: batched headEntropies', () => {
  it('equals the array definitions on random left-padded patterns (incl. exact zeros)', async () => {
    const before = tf.memory().numTensors;
    const r = rng(11);
    const B = 3;
    const H = 2;
    const N = 7;
    const lens = [7, 4, 2];
    const local = lens.map((n) =>
      Array.from({ length: H }, (_, h) =>
        Array.from({ length: n }, (_, i) => {
          const w = Array.from({ length: n }, (_, j) => (j <= i ? (h === 1 && j % 2 === 1 ? 0 : r.next() ** 4) : 0));
          w[0] += 1e-3;
          const s = w.reduce((a, b) => a + b, 0);
          return w.map((x) => x / s);
        }),
      ),
    );
    const t = tf.tensor4d(local.map((p) => p.map((A) => leftPad(A, N))));
    const mask = lens.map((n) => [...new Array(N - n).fill(0), ...new Array(n).fill(1)]);
    const e = headEntropies(t, mask);
    const [row, col] = (await Promise.all([e.row.array(), e.col.array()])) as number[][][];
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const re = rowEntropies(local[b][h]);
        const want = re.reduce((a, x) => a + x, 0) / re.length;
        assert.ok(Math.abs(row[b][h] - want) < 1e-5, `row ${b},${h}: ${row[b][h]} vs ${want}`);
        const wantC = Math.max(...columnEntropies(local[b][h]));
        assert.ok(Math.abs(col[b][h] - wantC) < 1e-5, `col ${b},${h}: ${col[b][h]} vs ${wantC}`);
      }
    }
    tf.dispose([t, e.row, e.col]);
    assert.equal(tf.memory().numTensors, before);
  });
});

describe('attention-stats: masks and the chunked runner', () => {
  it('hostMask reads rows or a tensor, defaults to all ones and rejects bad masks with typed errors', async () => {
    const t = tf.tensor2d([[0, 0, 1, 1], [1, 1, 1, 1]], undefined, 'int32');
    assert.deepEqual(await hostMask(t, 2, 4), [[0, 0, 1, 1], [1, 1, 1, 1]]);
    t.dispose();
    assert.deepEqual(await hostMask(undefined, 1, 3), [[1, 1, 1]]);
    await assert.rejects(hostMask([[1, 2]], 1, 2), ValueError);
    await assert.rejects(hostMask([[1, 1]], 2, 2), ShapeError);
    await assert.rejects(hostMask([[1, 1, 1]], 1, 2), ShapeError);
  });

  it('runChunks visits every chunk in order with its first real tokens and frees the caches', async function () {
    this.timeout(60000);
    const model = await loadModel('fixtures/reference/gpt2-tiny');
    try {
      const before = tf.memory().numTensors;
      const tokens = [[0, 0, 5, 6], [1, 2, 3, 4], [0, 7, 8, 9]];
      const attentionMask = [[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]];
      const seen: Array<[number, number[], number[]]> = [];
      const { batch, results } = await runChunks(model, { tokens, attentionMask }, ['blocks.0.hook_resid_pre'], { batchSize: 2 }, async (c) => {
        seen.push([c.start, c.first, c.cache.get('blocks.0.hook_resid_pre').shape]);
        return c.ids.length;
      });
      assert.deepEqual(seen, [[0, [2, 0], [2, 4, 32]], [2, [1], [1, 4, 32]]]);
      assert.deepEqual(results, [2, 1]);
      assert.deepEqual(batch.first, [2, 0, 1]);
      assert.equal(tf.memory().numTensors, before);
      await assert.rejects(runChunks(model, { tokens, attentionMask: [[1, 1, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1]] }, [], {}, async () => 0), ValueError);
    } finally {
      model.dispose();
    }
  });
});

describe("fidelity: column means and entropies against the authors' code on the bb model", function () {
  this.timeout(300000);
  it("columnMean = Gu et al.'s importance scores; rowEntropies / columnEntropies / headEntropies = Guo et al.'s entropy.py", async () => {
    const { tokens } = bbData(3, 8);
    const model = await loadModel('fixtures/models/bb');
    try {
      const { logits, cache } = await model.runWithCache(tokens, { namesFilter: ['blocks.1.attn.hook_pattern'] });
      logits.dispose();
      const pat = cache.get('blocks.1.attn.hook_pattern');
      const [A, cm] = (await Promise.all([pat.array(), columnMean(pat).array()])) as number[][][][][];
      const e = headEntropies(pat);
      const [row, col] = (await Promise.all([e.row.array(), e.col.array()])) as number[][][];
      tf.dispose([e.row, e.col]);
      cache.dispose();
      const gu = runPort<{ importance: number[][][][] }>('gu_sink', { attentions: A.map((p) => [p]), eps: 0.3 });
      const guo = runPort<{ row: number[][][]; col: number[][][]; row_tokens: number[][][][]; col_tokens: number[][][][] }>('guo_entropy', { attn: [A], row_thr: 0.3, col_thr: 0.9 });
      A.forEach((p, b) => {
        close(cm[b][0] as unknown as number[], gu.importance[b][0][0], 1e-6);
        close(columnMean(p[0]), gu.importance[b][0][0], 1e-6);
        close(rowEntropies(p[0]), guo.row_tokens[0][b][0], 1e-6);
        close(columnEntropies(p[0]), guo.col_tokens[0][b][0], 1e-6);
        close([row[b][0], col[b][0]], [guo.row[0][b][0], guo.col[0][b][0]], 1e-5);
      });
    } finally {
      model.dispose();
    }
  });
});
