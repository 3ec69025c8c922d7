// Generation with the KV cache against naive re-computation, hooks at every step, stop tokens,
// seeded sampling and the StreamingLLM cache policy.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { generate, loadModel, type HookedTransformer } from '../src/model/index.js';
import { REF_DIR } from './helpers/reference.js';

/** Greedy decoding by re-running the whole (left-padded) sequence each step: the reference. */
async function naiveGreedy(m: HookedTransformer, prompt: number[][], mask: number[][], n: number): Promise<number[][]> {
  const seqs = prompt.map((r) => [...r]);
  const masks = mask.map((r) => [...r]);
  const out: number[][] = prompt.map(() => []);
  for (let s = 0; s < n; s++) {
    const lg = await m.forward(seqs, { attentionMask: masks });
    const ids = tf.tidy(() => tf.argMax(lg.slice([0, seqs[0].length - 1, 0], [-1, 1, -1]).squeeze([1]), -1));
    const next = Array.from(await ids.data());
    tf.dispose([lg, ids]);
    next.forEach((t, b) => {
      out[b].push(t);
      seqs[b].push(t);
      masks[b].push(1);
    });
  }
  return out;
}

describe('generation', () => {
  for (const fam of ['gpt2-tiny', 'pythia', 'llama', 'qwen2', 'mistral']) {
    it(`${fam}: KV-cache greedy decoding equals re-running the full sequence (left-padded batch)`, async () => {
      const m = await loadModel(path.join(REF_DIR, fam));
      const prompt = [[0, 0, 5, 9, 3, 7], [4, 8, 15, 16, 23, 42]];
      const mask = [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]];
      const before = tf.memory().numTensors;
      const r = await generate(m, prompt, { maxNewTokens: 8, attentionMask: mask });
      assert.equal(tf.memory().numTensors, before, 'generate leaves no tensors');
      assert.deepEqual(r.tokens, await naiveGreedy(m, prompt, mask, 8));
      m.dispose();
    });
  }

  it('hooks run at every step (prefill sees the prompt, decoding sees one query row), stop tokens end a row', async () => {
    const m = await loadModel(path.join(REF_DIR, 'llama'));
    const shapes: number[][] = [];
    const decodingFlags: boolean[] = [];
    const r0 = await generate(m, [[1, 2, 3, 4]], { maxNewTokens: 5 });
    const stopAt = r0.tokens[0][2];
    const r = await generate(m, [[1, 2, 3, 4]], {
      maxNewTokens: 5,
      stopTokens: [stopAt],
      fwdHooks: [['blocks.0.attn.hook_pattern', (p, ctx) => { shapes.push(p.shape); decodingFlags.push(ctx.decoding); }]],
    });
    const firstStop = r0.tokens[0].indexOf(stopAt);
    assert.deepEqual(r.tokens[0], r0.tokens[0].slice(0, firstStop + 1));
    assert.deepEqual(shapes[0], [1, 4, 4, 4]);
    shapes.slice(1).forEach((s, i) => assert.deepEqual(s, [1, 4, 1, 5 + i]));
    assert.deepEqual(decodingFlags, [false, ...new Array(shapes.length - 1).fill(true)]);
    assert.equal(m.hooks.size, 0);
    m.dispose();
  });

  it('seeded sampling is reproducible and depends on the seed', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const a = await generate(m, [[1, 2, 3]], { maxNewTokens: 12, temperature: 1.5, seed: 7 });
    const b = await generate(m, [[1, 2, 3]], { maxNewTokens: 12, temperature: 1.5, seed: 7 });
    const c = await generate(m, [[1, 2, 3]], { maxNewTokens: 12, temperature: 1.5, seed: 8 });
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.tokens, c.tokens);
    m.dispose();
  });

  it('StreamingLLM: a window that never fills equals plain decoding; eviction equals masking the evicted keys', async () => {
    const m = await loadModel(path.join(REF_DIR, 'llama'));
    const prompt = [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3]];
    const plain = await generate(m, prompt, { maxNewTokens: 6 });
    const wide = await generate(m, prompt, { maxNewTokens: 6, streaming: { startSize: 4, recentSize: 64 } });
    assert.deepEqual(wide.tokens, plain.tokens);
    const start = 2;
    const recent = 4;
    // eviction without position shift keeps true positions, so it must equal full-cache decoding
    // with the evicted keys masked out of every decoding step
    const streamed = await generate(m, prompt, { maxNewTokens: 6, streaming: { startSize: start, recentSize: recent, shiftPositions: false } });
    const masked = await generate(m, prompt, {
      maxNewTokens: 6,
      fwdHooks: [[
        (n) => n.endsWith('attn.hook_attn_scores'),
        (s, ctx) => {
          if (!ctx.decoding) return;
          const n = ctx.pastLength; // cached keys before this step
          const keep = Array.from({ length: n + 1 }, (_, j) => (j < start || j >= n - recent ? 0 : -1e9));
          return tf.add(s, tf.tensor(keep).reshape([1, 1, 1, n + 1]));
        },
      ]],
    });
    assert.deepEqual(streamed.tokens, masked.tokens);
    // with position shift the attention width stays start + recent + 1
    const widths: number[] = [];
    await generate(m, prompt, { maxNewTokens: 6, streaming: { startSize: start, recentSize: recent }, fwdHooks: [['blocks.1.attn.hook_pattern', (p, ctx) => { if (ctx.decoding) widths.push(p.shape[3] as number); }]] });
    assert.ok(widths.every((w) => w === start + recent + 1), `widths ${widths}`);
    m.dispose();
  });
});
