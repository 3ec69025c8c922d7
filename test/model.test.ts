// HookedTransformer behaviour: hooks, cache helpers, padding, bad input, weight processing.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { HookError, ShapeError, ValueError, ConfigError, UnsupportedModelError } from '../src/errors.js';
import { actName } from '../src/hooks/names.js';
import { loadModel, randomModel, normalizeConfig, processWeights, type ProcessOptions } from '../src/model/index.js';
import { REF_DIR } from './helpers/reference.js';

const CONFIGS: Record<string, Record<string, unknown>> = {
  gpt2: { model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, vocab_size: 60, n_positions: 32 },
  neox: { model_type: 'gpt_neox', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, vocab_size: 60, rotary_pct: 0.5, max_position_embeddings: 64 },
  llama: { model_type: 'llama', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48, vocab_size: 60, max_position_embeddings: 64 },
  qwen2: { model_type: 'qwen2', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 1, intermediate_size: 48, vocab_size: 60, max_position_embeddings: 64 },
  mistral: { model_type: 'mistral', hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 48, vocab_size: 60, sliding_window: 3, max_position_embeddings: 64 },
};

/** Largest absolute difference, read back asynchronously. */
async function maxAbs(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

describe('HookedTransformer', () => {
  it('actName builds TransformerLens names', () => {
    assert.equal(actName('pattern', 5), 'blocks.5.attn.hook_pattern');
    assert.equal(actName('resid_pre', 0), 'blocks.0.hook_resid_pre');
    assert.equal(actName('z', 2), 'blocks.2.attn.hook_z');
  });

  for (const [fam, cfg] of Object.entries(CONFIGS)) {
    it(`${fam}: a left-padded prompt gives the numbers it gives alone, and runs leave no tensors`, async () => {
      const m = randomModel(cfg, { seed: 3, std: 0.3, randomNorms: true });
      m.hookNames();
      const before = tf.memory().numTensors;
      const alone = await m.forward([[5, 6, 7, 8, 9, 10]]);
      const batch = await m.forward([[0, 0, 0, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9]], { attentionMask: [[0, 0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]] });
      const row = tf.tidy(() => batch.slice([0, 3, 0], [1, 6, -1]));
      const err = await maxAbs(alone, row);
      assert.ok(err < 1e-5, `${fam}: padded vs alone ${err}`);
      tf.dispose([alone, batch, row]);
      assert.equal(tf.memory().numTensors, before);
      m.dispose();
    });
  }

  it('zeroing a head through hook_z equals the model with that head\'s W_O zeroed', async () => {
    const m = randomModel(CONFIGS.llama, { seed: 1, std: 0.3 });
    const toks = [[3, 9, 4, 1, 7, 7, 2]];
    const hooked = await m.runWithHooks(toks, {
      fwdHooks: [['blocks.1.attn.hook_z', (z) => tf.tidy(() => tf.mul(z, tf.tensor([1, 0, 1, 1]).reshape([1, 1, 4, 1])))]],
    });
    const old = m.params['blocks.1.attn.W_O'];
    m.params['blocks.1.attn.W_O'] = tf.tidy(() => tf.mul(old, tf.tensor([1, 0, 1, 1]).reshape([4, 1, 1])));
    m.invalidateFused();
    const edited = await m.forward(toks);
    assert.ok((await maxAbs(hooked, edited)) < 1e-5);
    const zeros = tf.zerosLike(hooked);
    assert.ok((await maxAbs(hooked, zeros)) > 0);
    zeros.dispose();
    m.params['blocks.1.attn.W_O'].dispose();
    m.params['blocks.1.attn.W_O'] = old;
    m.invalidateFused();
    const back = await m.forward(toks);
    assert.ok((await maxAbs(back, edited)) > 1e-4, 'restoring W_O must change the output back');
    tf.dispose([hooked, edited, back]);
    m.dispose();
  });

  it('setting a head\'s pre-softmax scores to 0 gives uniform attention over visible keys only', async () => {
    const m = randomModel(CONFIGS.gpt2, { seed: 2, std: 0.3 });
    const { cache, logits } = await m.runWithCache([[0, 1, 2, 3], [4, 5, 6, 7]], {
      attentionMask: [[0, 1, 1, 1], [1, 1, 1, 1]],
      namesFilter: ['blocks.0.attn.hook_pattern'],
      fwdHooks: [['blocks.0.attn.hook_attn_scores', (s) => tf.zerosLike(s)]],
    });
    const p = (await cache.get('blocks.0.attn.hook_pattern').array()) as number[][][][];
    // row 1 (left-padded by one): query 3 sees keys 1..3 -> 1/3 each, key 0 (pad) -> 0
    assert.ok(Math.abs(p[0][2][3][1] - 1 / 3) < 1e-6 && p[0][2][3][0] === 0);
    assert.ok(Math.abs(p[1][0][2][0] - 1 / 3) < 1e-6 && p[1][0][2][3] === 0);
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('bad hooks and bad input give typed errors and leave no tensors or hooks behind', async () => {
    const m = randomModel(CONFIGS.gpt2, { seed: 4 });
    m.hookNames();
    const before = tf.memory().numTensors;
    const rejects = (p: Promise<unknown>, check: (e: unknown) => boolean) => assert.rejects(p, check);
    await rejects(m.runWithHooks([[1, 2]], { fwdHooks: [['blocks.0.attn.hook_patern' as any, () => undefined]] }), (e: unknown) => e instanceof HookError && /did you mean "blocks.0.attn.hook_pattern"/.test((e as Error).message));
    await rejects(m.runWithHooks([[1, 2, 3]], { fwdHooks: [['blocks.1.hook_resid_mid', (x) => tf.slice(x, [0, 0, 0], [1, 2, -1])]] }), (e: unknown) => e instanceof HookError && /blocks\.1\.hook_resid_mid.*expected a tensor of shape \[1,3,32\], found \[1,2,32\]/.test((e as Error).message));
    await rejects(m.runWithHooks([[1, 2, 3]], { fwdHooks: [['blocks.0.mlp.hook_post', () => { throw new Error('boom'); }]] }), (e: unknown) => e instanceof HookError && /hook_post: hook threw: boom/.test((e as Error).message));
    await rejects(m.forward([[1, 2, 3], [1, 2]]), (e: unknown) => e instanceof ShapeError && /tokens\[1\]/.test((e as Error).message));
    await rejects(m.forward([[1, 60]]), (e: unknown) => e instanceof ValueError && /tokens\[0\]\[1\].*\[0, 60\).*60/.test((e as Error).message));
    await rejects(m.forward([[-1]]), (e) => e instanceof ValueError);
    await rejects(m.forward([new Array(33).fill(1)]), (e: unknown) => e instanceof ValueError && /n_ctx = 32/.test((e as Error).message));
    await rejects(m.forward([[1, 2]], { attentionMask: [[1, 2]] }), (e) => e instanceof ValueError);
    await rejects(m.forward([[1, 2]], { attentionMask: [[1, 1, 1]] }), (e) => e instanceof ShapeError);
    // a hook that runs the model again
    await rejects(m.forward([[1, 2]], { fwdHooks: [['hook_embed', () => void m.run([[1]], {}, null)]] }), (e) => e instanceof HookError && /ran the model again/.test((e as Error).message));
    assert.equal(m.hooks.size, 0);
    assert.equal(tf.memory().numTensors, before);
    // withHooks removes its hooks when fn throws
    assert.throws(() => m.withHooks([['hook_embed', () => undefined]], () => { throw new Error('inside'); }), /inside/);
    assert.equal(m.hooks.size, 0);
    m.dispose();
  });

  it('hook names come from the forward: TransformerLens points incl. hook_tokens, split inputs, hook_mlp_in; none for absent parts', () => {
    const g = randomModel(CONFIGS.gpt2, { seed: 1 });
    const names = g.hookNames();
    for (const n of ['hook_tokens', 'hook_embed', 'hook_pos_embed', 'blocks.0.hook_resid_pre', 'blocks.0.hook_attn_in', 'blocks.0.attn.hook_q_input', 'blocks.0.attn.hook_k_input',
      'blocks.0.attn.hook_v_input', 'blocks.0.ln1.hook_scale', 'blocks.0.attn.hook_attn_scores', 'blocks.0.attn.hook_pattern', 'blocks.0.attn.hook_z', 'blocks.0.attn.hook_result',
      'blocks.0.hook_attn_out', 'blocks.0.hook_resid_mid', 'blocks.0.hook_mlp_in', 'blocks.0.mlp.hook_pre', 'blocks.0.mlp.hook_post', 'blocks.1.hook_resid_post', 'ln_final.hook_scale', 'unembed.hook_out']) {
      assert.ok(names.includes(n as never), `gpt2 lacks ${n}`);
    }
    assert.ok(!names.some((n) => n.includes('rot_') || n.includes('pre_linear')), 'no rotary or gated hooks on GPT-2');
    assert.equal(names.length, new Set(names).size);
    const neox = randomModel(CONFIGS.neox, { seed: 1 }).hookNames();
    assert.ok(neox.includes('blocks.0.attn.hook_rot_q') && !neox.includes('blocks.0.hook_resid_mid' as never) && !neox.includes('hook_pos_embed'));
    const llama = randomModel(CONFIGS.llama, { seed: 1 }).hookNames();
    assert.ok(llama.includes('blocks.1.mlp.hook_pre_linear'));
    g.dispose();
  });

  it('masked attention scores are -Infinity (TransformerLens) and the pattern has no NaN', async () => {
    const m = randomModel(CONFIGS.gpt2, { seed: 2, std: 0.3 });
    const { cache, logits } = await m.runWithCache([[0, 1, 2], [4, 5, 6]], { attentionMask: [[0, 1, 1], [1, 1, 1]], namesFilter: ['blocks.0.attn.hook_attn_scores', 'blocks.0.attn.hook_pattern'] });
    const s = (await cache.get('blocks.0.attn.hook_attn_scores').array()) as number[][][][];
    assert.equal(s[0][0][2][0], -Infinity); // pad key
    assert.equal(s[1][0][0][1], -Infinity); // future key
    assert.ok(Number.isFinite(s[1][0][2][1]));
    const p = (await cache.get('blocks.0.attn.hook_pattern').data()) as Float32Array;
    assert.ok(p.every((x) => Number.isFinite(x)));
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('split-input hook points: replacing hook_q_input of one head changes only what reads that head\'s query', async () => {
    const m = randomModel(CONFIGS.gpt2, { seed: 5, std: 0.3 });
    const toks = [[3, 9, 4, 1, 7]];
    const plain = await m.runWithCache(toks, { namesFilter: ['blocks.0.attn.hook_z'] });
    // identity hooks on the split inputs reproduce the plain run
    const ident = await m.runWithCache(toks, { namesFilter: ['blocks.0.attn.hook_z', 'blocks.0.hook_attn_in'], fwdHooks: [['blocks.0.attn.hook_q_input', (x) => x]] });
    assert.deepEqual(ident.cache.get('blocks.0.hook_attn_in').shape, [1, 5, 4, 32]);
    assert.ok((await maxAbs(plain.cache.get('blocks.0.attn.hook_z'), ident.cache.get('blocks.0.attn.hook_z'))) < 1e-5);
    const zeroHead2 = (x: tf.Tensor) => tf.mul(x, tf.tensor([1, 1, 0, 1]).reshape([1, 1, 4, 1]));
    const edited = await m.runWithCache(toks, { namesFilter: ['blocks.0.attn.hook_z'], fwdHooks: [['blocks.0.attn.hook_q_input', zeroHead2]] });
    const z0 = (await plain.cache.get('blocks.0.attn.hook_z').array()) as number[][][][];
    const z1 = (await edited.cache.get('blocks.0.attn.hook_z').array()) as number[][][][];
    const diff = (h: number) => Math.max(...z0[0].map((row, t) => Math.max(...row[h].map((v, j) => Math.abs(v - z1[0][t][h][j])))));
    assert.ok(diff(2) > 1e-4, 'head 2 must change');
    for (const h of [0, 1, 3]) assert.ok(diff(h) < 1e-5, `head ${h} must not change (${diff(h)})`);
    for (const r of [plain, ident, edited]) {
      r.logits.dispose();
      r.cache.dispose();
    }
    m.dispose();
  });

  it('cacheOn host: the same activations, kept in host memory, with fewer device tensors', async () => {
    const m = randomModel(CONFIGS.llama, { seed: 6, std: 0.3 });
    const toks = [[3, 9, 4, 1, 7, 2]];
    const dev = await m.runWithCache(toks);
    const host = await m.runWithCache(toks, { cacheOn: 'host' });
    assert.deepEqual(host.cache.keys().sort(), dev.cache.keys().sort());
    assert.equal(host.cache.device('blocks.1.hook_resid_post'), 'host');
    const before = tf.memory().numTensors;
    for (const n of dev.cache.keys()) {
      const a = await dev.cache.values(n);
      const b = await host.cache.values(n);
      assert.deepEqual(b.shape, a.shape);
      let e = 0;
      for (let i = 0; i < a.values.length; i++) e = Math.max(e, a.values[i] === b.values[i] ? 0 : Math.abs(a.values[i] - b.values[i]));
      assert.ok(e === 0, `${n}: ${e}`);
    }
    assert.equal(tf.memory().numTensors, before, 'values() of host entries makes no tensors');
    const t = host.cache.get('blocks.0.attn.hook_pattern'); // becomes a tensor on first use, owned by the cache
    assert.deepEqual(t.shape, [1, 4, 6, 6]);
    for (const r of [dev, host]) {
      r.logits.dispose();
      r.cache.dispose();
    }
    m.dispose();
  });

  it('concurrent runs keep their hooks apart', async () => {
    const m = randomModel(CONFIGS.gpt2, { seed: 7, std: 0.3 });
    const toks = [[1, 2, 3, 4]];
    const ref = await m.forward(toks);
    const [a, b] = await Promise.all([
      m.forward(toks, { fwdHooks: [['blocks.0.hook_attn_out', (x) => tf.zerosLike(x)]] }),
      m.forward(toks),
    ]);
    assert.equal(await maxAbs(b, ref), 0);
    assert.ok((await maxAbs(a, ref)) > 1e-4);
    tf.dispose([ref, a, b]);
    m.dispose();
  });

  it('config errors name the field; unknown architectures are UnsupportedModelError', () => {
    assert.throws(() => normalizeConfig({ model_type: 'gpt2', n_embd: 32, n_head: 4 }, 'x/config.json'), (e: unknown) => e instanceof ConfigError && /x\/config.json: n_layer: required field is missing/.test((e as Error).message));
    assert.throws(() => normalizeConfig({ model_type: 'gpt2', n_embd: '32', n_layer: 1, n_head: 4, vocab_size: 5 }), (e: unknown) => e instanceof ConfigError && /n_embd: expected an integer, found "32"/.test((e as Error).message));
    assert.throws(() => normalizeConfig({ model_type: 'bert' }), (e: unknown) => e instanceof UnsupportedModelError && /"bert" is not supported/.test((e as Error).message));
    assert.throws(() => normalizeConfig({ ...CONFIGS.llama, num_key_value_heads: 3 }), (e: unknown) => e instanceof ConfigError && /multiple of n_kv_heads/.test((e as Error).message));
  });

  it('hook_result is computed only when asked for, and its head sum plus b_O is attn_out', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const toks = [[1, 5, 9, 13, 2, 7]];
    const plain = await m.runWithCache(toks);
    assert.ok(!plain.cache.has('blocks.0.attn.hook_result'));
    const withRes = await m.runWithCache(toks, { namesFilter: (n) => n.endsWith('hook_result') || n.endsWith('hook_attn_out') });
    const res = withRes.cache.get('blocks.1.attn.hook_result');
    assert.deepEqual(res.shape, [1, 6, 4, 32]);
    const summed = tf.tidy(() => tf.add(tf.sum(res, 2), m.params['blocks.1.attn.b_O']));
    assert.ok((await maxAbs(summed, withRes.cache.get('blocks.1.hook_attn_out'))) < 1e-5);
    assert.ok((await maxAbs(plain.logits, withRes.logits)) < 1e-5);
    tf.dispose([summed, plain.logits, withRes.logits]);
    plain.cache.dispose();
    withRes.cache.dispose();
    m.dispose();
  });

  it('cache helpers: decomposed residual sums to the final residual; DLA of the decomposition reproduces the logit difference', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const toks = [[1, 5, 9, 13, 2, 7], [3, 3, 8, 8, 4, 4]];
    const { logits, cache } = await m.runWithCache(toks);
    const L = m.cfg.n_layers;
    const dec = cache.decomposeResid(undefined, { posSlice: -1 });
    assert.deepEqual(dec.labels, ['embed', 'pos_embed', '0_attn_out', '0_mlp_out', '1_attn_out', '1_mlp_out', '2_attn_out', '2_mlp_out']);
    const total = tf.tidy(() => tf.sum(dec.stack, 0));
    const finalResid = tf.tidy(() => cache.get(`blocks.${L - 1}.hook_resid_post`).slice([0, 5, 0], [2, 1, -1]).squeeze([1]));
    assert.ok((await maxAbs(total, finalResid)) < 1e-4);
    const acc = cache.accumulatedResid(undefined, { posSlice: -1 });
    assert.equal(acc.labels.length, L + 1);
    const heads = cache.stackHeadResults(undefined, { posSlice: -1 });
    assert.equal(heads.labels[5], 'L1H1');
    // direct logit attribution with the frozen final LayerNorm scale
    const io = [11, 20];
    const s = [12, 30];
    const scaled = cache.applyLnToStack(dec.stack, undefined, { posSlice: -1, applyWeights: true });
    const attrsT = cache.logitAttrs(scaled, io, s);
    const attrs = (await attrsT.array()) as number[][];
    const WU = m.params['unembed.W_U'];
    const biasT = tf.tidy(() => {
      const dir = tf.sub(tf.gather(WU, io, 1), tf.gather(WU, s, 1)); // [d, B]
      return tf.sum(tf.mul(m.params['ln_final.b'].reshape([-1, 1]), dir), 0);
    });
    const biasTerm = (await biasT.array()) as number[];
    tf.dispose([attrsT, biasT]);
    const lg = (await logits.array()) as number[][][];
    for (let b = 0; b < 2; b++) {
      const sum = attrs.reduce((acc2, row) => acc2 + row[b], 0) + biasTerm[b];
      const want = lg[b][5][io[b]] - lg[b][5][s[b]];
      assert.ok(Math.abs(sum - want) < 1e-3, `row ${b}: ${sum} vs ${want}`);
    }
    tf.dispose([logits, dec.stack, total, finalResid, acc.stack, heads.stack, scaled]);
    cache.dispose();
    m.dispose();
  });

  const processing: [string, ProcessOptions][] = [
    ['foldLn', { foldLn: true }],
    ['centerWritingWeights', { centerWritingWeights: true }],
    ['centerUnembed', { centerUnembed: true }],
    ['foldValueBiases', { foldValueBiases: true }],
    ['all four', { foldLn: true, centerWritingWeights: true, centerUnembed: true, foldValueBiases: true }],
  ];
  for (const fam of ['gpt2-tiny', 'pythia', 'qwen2']) {
    for (const [label, opts] of processing) {
      if (fam === 'qwen2' && opts.centerWritingWeights) continue; // RMSNorm: not valid, tested below
      it(`${fam}: ${label} leaves log-probs unchanged within 1e-4`, async () => {
        const m = await loadModel(path.join(REF_DIR, fam));
        const toks = [[0, 3, 5, 7, 9, 11, 13], [2, 4, 6, 8, 10, 12, 14]];
        const mask = [[0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]];
        const lp = async () => {
          const l = await m.forward(toks, { attentionMask: mask });
          const r = tf.tidy(() => tf.logSoftmax(l, -1).slice([0, 1, 0], [2, 6, -1]));
          l.dispose();
          return r;
        };
        const before = await lp();
        processWeights(m, opts);
        if (opts.foldLn) assert.ok(!('ln_final.w' in m.params));
        const after = await lp();
        const err = await maxAbs(before, after);
        assert.ok(err < 1e-4, `${fam} ${label}: ${err}`);
        tf.dispose([before, after]);
        m.dispose();
      });
    }
  }
  it('centerWritingWeights refuses RMSNorm models', async () => {
    const m = await loadModel(path.join(REF_DIR, 'llama'));
    assert.throws(() => processWeights(m, { centerWritingWeights: true }), ConfigError);
    m.dispose();
  });
});

describe("randomModel init 'torch' (PyTorch's module defaults)", () => {
  const cfg = { model_type: 'starcoder2', hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16, intermediate_size: 96, vocab_size: 500, max_position_embeddings: 64, tie_word_embeddings: false };

  /** max |x| and the standard deviation of a weight, read asynchronously. */
  async function stats(t: tf.Tensor): Promise<{ max: number; std: number }> {
    const v = Array.from(await t.data());
    const m = v.reduce((a, b) => a + b, 0) / v.length;
    return { max: Math.max(...v.map(Math.abs)), std: Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / v.length) };
  }

  it('projections uniform in +-1/sqrt(fan_in) (W_O: n_heads * d_head; W_out: d_mlp), embeddings standard normal, biases 0', async () => {
    const m = randomModel(cfg, { seed: 3, init: 'torch' });
    // fan_in of each canonical weight as nn.Linear sees it: in_features
    const fan: Record<string, number> = { 'blocks.0.attn.W_Q': 64, 'blocks.0.attn.W_K': 64, 'blocks.0.attn.W_V': 64, 'blocks.0.attn.W_O': 128, 'blocks.0.mlp.W_in': 64, 'blocks.0.mlp.W_out': 96, 'unembed.W_U': 64 };
    for (const [name, f] of Object.entries(fan)) {
      const { max, std } = await stats(m.params[name]);
      const bound = 1 / Math.sqrt(f);
      assert.ok(max <= bound && max > 0.97 * bound, `${name}: max ${max}, bound ${bound}`);
      assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.06 * bound, `${name}: std ${std}, uniform ${bound / Math.sqrt(3)}`);
    }
    const e = await stats(m.params['embed.W_E']);
    assert.ok(Math.abs(e.std - 1) < 0.03, `embedding std ${e.std}`);
    for (const b of ['blocks.0.attn.b_Q', 'blocks.0.attn.b_O', 'blocks.0.mlp.b_in']) assert.equal((await stats(m.params[b])).max, 0, b);
    m.dispose();
  });

  it('is seeded, and an unknown init is a ConfigError naming the option', async () => {
    const [a, b] = [randomModel(cfg, { seed: 5, init: 'torch' }), randomModel(cfg, { seed: 5, init: 'torch' })];
    assert.equal(await maxAbs(a.params['blocks.0.attn.W_Q'], b.params['blocks.0.attn.W_Q']), 0);
    a.dispose();
    b.dispose();
    assert.throws(() => randomModel(cfg, { init: 'xavier' as never }), (e: Error) => e instanceof ConfigError && /init/.test(e.message) && /xavier/.test(e.message));
  });
});
