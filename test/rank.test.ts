// The rank room: each sharded method's shards, run one by one (results through the exact JSON a sweep stores)
// and combined on a weightless model, give the whole run's ranking files byte for byte.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { loadModel } from '../src/model/load.js';
import { decodeSweepValue, encodeSweepValue } from '../src/io/checkpoint.js';
import { RANK_METHODS, renderRank, type RankMethodName, type RetrievalRankOptions, type RankMethodOptions, type RankMethod, type RankOutput } from '../src/rank/index.js';
import type { HostBatch } from '../src/model/view.js';

const IOI = path.join('fixtures', 'models', 'ioi');
const HANDMADE = path.join('fixtures', 'models', 'induction-handmade');
const RECALL = path.join('fixtures', 'models', 'recall');
const roundTrip = <T>(v: T): T => decodeSweepValue(encodeSweepValue(v)) as T;

/** The whole run and the combined shards of one method, with the shard count; tensors checked around every shard. */
async function wholeAndSharded<K extends RankMethodName>(dir: string, name: K, opts: RankMethodOptions[K], size: number, prompts?: string[]) {
  process.env.TFLENS_QUIET = '1';
  const model = await loadModel(dir);
  const light = await loadModel(dir, { weights: false });
  const method = RANK_METHODS[name] as RankMethod<RankMethodOptions[K]>;
  const batch: HostBatch | null = prompts ? model.encodeBatch(prompts) : null;
  try {
    const o = method.prepare ? await method.prepare(model, opts) : opts;
    const whole = await method.run(model, batch, o);
    const shards = roundTrip(method.shards(light, batch, o, size));
    const results = [];
    for (const s of shards) {
      const before = tf.memory().numTensors;
      results.push(roundTrip(await method.runShard(model, batch, o, s)));
      assert.equal(tf.memory().numTensors, before, `${name}: a shard leaves no tensors`);
    }
    return { whole, combined: method.combine(light, batch, o, shards, results), shards, results, light, batch, o, method };
  } finally {
    model.dispose();
    delete process.env.TFLENS_QUIET;
  }
}

function sameFiles(a: RankOutput, b: RankOutput, model: string): void {
  for (const f of ['csv', 'json'] as const) assert.equal(renderRank(b, f, model), renderRank(a, f, model), f);
}

describe('rank methods: shards combine to the whole run bit for bit', function () {
  this.timeout(300_000);

  it('head-patching over all positions (one shard per layer) and by position (blocks of 3 patched forwards)', async () => {
    const all = await wholeAndSharded(IOI, 'head-patching', { task: 'ioi', n: 8 }, 1);
    assert.equal(all.shards.length, 3, '3 layers x 1 forward of 4 heads x 8 prompts');
    sameFiles(all.whole, all.combined, IOI);
    const each = await wholeAndSharded(HANDMADE, 'head-patching', { task: 'induction', n: 4, positions: 'each', maxBatch: 8 }, 3);
    // 2 layers x (16 positions x 2 heads) / 2 patches per forward = 16 forwards per layer, in blocks of 3
    assert.equal(each.shards.length, 2 * Math.ceil(16 / 3));
    sameFiles(each.whole, each.combined, HANDMADE);
    assert.deepEqual(each.whole.columns, ['layer', 'pos', 'head', 'score']);
    assert.equal(each.whole.rows!.length, 2 * 16 * 2);
    // the combine refuses shards computed on other inputs
    const tampered = each.results.map((r, i) => (i === 1 ? { ...(r as object), clean: 0 } : r));
    assert.throws(() => each.method.combine(each.light, each.batch, each.o, each.shards, tampered), /shard 1: baselines: differs from shard 0/);
  });

  it('path (one shard per sender layer) and dormant (blocks of 5 heads)', async () => {
    const p = await wholeAndSharded(IOI, 'path', { task: 'ioi', n: 6 }, 1);
    assert.equal(p.shards.length, 3);
    sameFiles(p.whole, p.combined, IOI);
    const d = await wholeAndSharded(IOI, 'dormant', {}, 5, ['When Mary and John went to the store, John gave a drink to', 'The cat sat on the mat and then it']);
    assert.equal(d.shards.length, Math.ceil(12 / 5));
    sameFiles(d.whole, d.combined, IOI);
  });

  it("retrieval (blocks of NIAH cells): the authors' per-sample JSON and the means over counted samples", async () => {
    // the recall model's own task.json (read by prepare): 3 lengths x 5 depths, every sample answered
    const r = await wholeAndSharded(RECALL, 'retrieval', {}, 4);
    assert.equal(r.shards.length, Math.ceil(15 / 4));
    sameFiles(r.whole, r.combined, RECALL);
    assert.equal(renderRank(r.combined, 'retrieval-head', RECALL), renderRank(r.whole, 'retrieval-head', RECALL));
    // needles the ioi model was never trained on: only some samples count, so the combine must keep the authors' filter
    const fillerTokens = Array.from({ length: 16 }, (_, i) => 16 + i);
    const needleFormat = { bosId: 0, periodToken: 2, keyMarker: [3], valueMarker: [4], questionMarker: [5], keyTokens: [6, 7, 8, 9], valueTokens: [10, 11, 12], fillerTokens, sentenceLength: [3, 6] as [number, number] };
    const opts: RetrievalRankOptions = { samples: { needleFormat }, lengths: [20, 26], depths: [0, 0.5, 1], perCell: 3, maxNewTokens: 4, stopTokens: [], minRouge: 0 };
    const m = await wholeAndSharded(IOI, 'retrieval', opts, 2);
    assert.equal(m.shards.length, 3);
    const data = m.whole.scores!.data!;
    assert.deepEqual([data.counted, data.samples], [5, 18], 'this seed: 5 of 18 samples have a ROUGE-1 recall above 0');
    sameFiles(m.whole, m.combined, IOI);
    assert.equal(renderRank(m.combined, 'retrieval-head', IOI), renderRank(m.whole, 'retrieval-head', IOI));
  });

  it('one-shard methods: the shard is the whole run', async () => {
    const s = await wholeAndSharded(IOI, 'sink', {}, 1, ['When Mary and John went to the store', 'The cat sat on the mat']);
    assert.equal(s.shards.length, 1);
    sameFiles(s.whole, s.combined, IOI);
  });
});
