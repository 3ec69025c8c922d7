// The families of issue 17, mechanism by mechanism, against numbers computed here independently: rotary
// frequencies of every rope type, ALiBi slopes and biases, soft-capping, (1 + w) RMSNorms, post-norms, q/k
// norms, interleaved rotary, OPT's position offset, GPT-Neo's unscaled local attention, fused q/k/v layouts
// and mixture-of-experts routing; plus, for every family: random models that run, match themselves
// left-padded, decode with a KV cache, survive save/load, and keep their logits under the weight processing
// the family allows (and refuse the rest).
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, UnsupportedModelError } from '../src/errors.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { loadModel, normalizeConfig, processWeights, randomModel, saveModel, type HookedTransformer } from '../src/model/index.js';
import type { RopeSpec } from '../src/model/config.js';
import { alibiSlopes, ropeCosSinScale, ropeInvFreq } from '../src/model/positions.js';
import { PROCESSING_STEPS, processingSupport } from '../src/model/processing.js';
import { main } from '../src/cli/main.js';
import { REF_DIR, REF_FAMILIES } from './helpers/reference.js';

const NEW = REF_FAMILIES.slice(7);
const manifest = JSON.parse(readFileSync(path.join(REF_DIR, 'manifest.json'), 'utf8')) as { families: Record<string, Record<string, any>> };
const configOf = (fam: string) => JSON.parse(readFileSync(path.join(REF_DIR, fam, 'config.json'), 'utf8')) as Record<string, unknown>;
const randomOf = (fam: string, seed = 1) => randomModel(configOf(fam), { seed, std: 0.3, randomNorms: true });

type N4 = number[][][][];
type N3 = number[][][];
const arr = async <T>(t: tf.Tensor) => (await t.array()) as T;
const maxAbs = async (a: tf.Tensor, b: tf.Tensor) => {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0];
  d.dispose();
  return v;
};
const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

const TOKENS = [[0, 0, 0, 5, 6, 7, 8, 9, 10], [1, 2, 3, 4, 5, 6, 7, 8, 9]];
const MASK = [[0, 0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1]];
/** Positions as HF counts them: real tokens from 0. */
const POS = MASK.map((r) => {
  let n = -1;
  return r.map((x) => Math.max((n += x), 0));
});

async function cacheOf(m: HookedTransformer, names: string[]) {
  return m.runWithCache(TOKENS, { attentionMask: MASK, namesFilter: names as never });
}

describe('families: rotary frequencies of every rope type', () => {
  const dim = 16;
  const theta = 1e4;
  const plain = Array.from({ length: dim / 2 }, (_, i) => theta ** (-(2 * i) / dim));
  const spec = (scaling: RopeSpec['scaling']): RopeSpec => ({ theta, scaling });
  const same = (ours: Float32Array, want: number[], what: string, tol = 2e-6) => want.forEach((w, i) => close(ours[i], w, tol, `${what}[${i}]`));

  it('default and linear: theta^(-2i/d), divided by the factor', () => {
    same(ropeInvFreq(spec({ rope_type: 'default' }), dim, 8), plain, 'default');
    same(ropeInvFreq(spec({ rope_type: 'linear', factor: 4 }), dim, 8), plain.map((f) => f / 4), 'linear');
  });

  it('llama3: short wavelengths kept, long ones divided by 8, the band between blended (hand values for i = 1, 2)', () => {
    const s = { rope_type: 'llama3' as const, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    // Meta's reference phrasing: r = rotations of frequency f in the original context (L / wavelength)
    const want = plain.map((f) => {
      const r = (64 * f) / (2 * Math.PI);
      if (r > 4) return f; // wavelength < 16
      if (r < 1) return f / 8; // wavelength > 64
      const smooth = (r - 1) / (4 - 1);
      return smooth * f + (1 - smooth) * (f / 8);
    });
    const ours = ropeInvFreq(spec(s), dim, 8);
    same(ours, want, 'llama3');
    // by hand: i = 1, wavelength 2 pi / 10^-0.5 = 19.87, smooth = (64 / 19.87 - 1) / 3 = 0.7403: 0.31623 (0.2597 / 8 + 0.7403) = 0.2444
    close(ours[1], 0.2444, 2e-4, 'llama3[1]');
    // i = 2, wavelength 62.83 < 64, smooth = 0.0062: 0.1 (0.9938 / 8 + 0.0062) = 0.01304
    close(ours[2], 0.01304, 2e-4, 'llama3[2]');
  });

  it('dynamic NTK: the base grows as theta (f S / M - (f - 1))^(d / (d - 2)) once S passes M', () => {
    const s = { rope_type: 'dynamic' as const, factor: 2, max_position_embeddings: 4 };
    same(ropeInvFreq(spec(s), dim, 3), plain, 'dynamic below M');
    const base = theta * (2 * 8 / 4 - 1) ** (dim / (dim - 2));
    same(ropeInvFreq(spec(s), dim, 8), plain.map((_, i) => base ** (-(2 * i) / dim)), 'dynamic S = 8');
  });

  it('yarn: frequencies above beta_fast rotations kept, below beta_slow divided by the factor, a linear ramp over dimension indices between; cos/sin scaled by 0.1 ln(s) + 1', () => {
    const s = { rope_type: 'yarn' as const, factor: 4, original_max_position_embeddings: 32, beta_fast: 32, beta_slow: 1, attention_factor: 0.1 * Math.log(4) + 1, truncate: true };
    // index i where frequency i makes `rot` rotations over the original context: L theta^(-2i/d) / (2 pi) = rot
    const at = (rot: number) => (dim / 2) * (Math.log(32 / (2 * Math.PI * rot)) / Math.log(theta));
    const lo = Math.max(0, Math.floor(at(32)));
    const hi = Math.min(dim - 1, Math.ceil(at(1)));
    const want = plain.map((f, i) => {
      const ramp = Math.min(1, Math.max(0, (i - lo) / (hi - lo)));
      return ramp * (f / 4) + (1 - ramp) * f;
    });
    same(ropeInvFreq(spec(s), dim, 8), want, 'yarn');
    close(ropeCosSinScale(s), 1.1386, 1e-4, 'yarn attention factor');
  });

  it('longrope: short factors up to the original length, long factors past it; cos/sin scaled by sqrt(1 + ln(32/4) / ln 4)', () => {
    const short = [1, 1.1, 1.3, 1.6, 2, 2.5, 3.1, 3.8];
    const long = [1, 1.5, 2.2, 3, 4.5, 6, 8, 10];
    const s = { rope_type: 'longrope' as const, short_factor: short, long_factor: long, original_max_position_embeddings: 4, attention_factor: Math.sqrt(1 + Math.log(8) / Math.log(4)) };
    same(ropeInvFreq(spec(s), dim, 4), plain.map((f, i) => f / short[i]), 'longrope short');
    same(ropeInvFreq(spec(s), dim, 5), plain.map((f, i) => f / long[i]), 'longrope long');
    close(ropeCosSinScale(s), 1.5811, 1e-4, 'longrope attention factor');
  });

  it('every rope fixture: the config as HF wrote it gives the inv_freq HF used (manifest, measured after the forward)', () => {
    for (const fam of NEW) {
      const r = manifest.families[fam].rotary;
      if (!r) continue;
      const cfg = normalizeConfig(configOf(fam));
      const tables = Object.entries(r.inv_freq_after_forward as Record<string, number[]>);
      for (const [buffer, want] of tables) {
        const type = buffer.includes('full_attention') ? 'full_attention' : buffer.includes('sliding_attention') ? 'sliding_attention' : null;
        const l = type ? (cfg.hf.layer_types as string[]).indexOf(type) : 0;
        const rope = cfg.layer_rope ? cfg.layer_rope[l] : { theta: cfg.rope_theta, scaling: cfg.rope_scaling };
        if (cfg.rotary_style === 'interleaved') continue; // GPT-J keeps no inv_freq buffer of this form
        same(ropeInvFreq(rope, cfg.rotary_dim, 8), want, `${fam} ${buffer}`, 1e-5);
        const scale = Object.entries(r.attention_scaling as Record<string, number>).find(([k]) => !type || k.includes(type))?.[1] ?? 1;
        close(ropeCosSinScale(rope.scaling), scale, 1e-6, `${fam} attention scaling`);
      }
    }
  });

  it('an unknown rope type is a ConfigError naming it and the supported ones', () => {
    const cfg = { ...configOf('llama3'), rope_parameters: { rope_type: 'mrope', rope_theta: 1e4 } };
    assert.throws(() => normalizeConfig(cfg, 'x/config.json'), (e: unknown) => e instanceof ConfigError && /rope type "mrope" is not supported; supported: default, linear, dynamic, yarn, longrope, llama3/.test((e as Error).message));
  });
});

describe('families: attention mechanisms', () => {
  it('ALiBi slopes: 2^(-8i/n) for the largest power of two n, then every other slope of the 2n series', () => {
    assert.deepEqual(Array.from(alibiSlopes(8)), [1, 2, 3, 4, 5, 6, 7, 8].map((i) => 2 ** -i));
    assert.deepEqual(Array.from(alibiSlopes(6)), [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
    assert.deepEqual(Array.from(alibiSlopes(12)), [...[1, 2, 3, 4, 5, 6, 7, 8].map((i) => 2 ** -i), ...[0.5, 1.5, 2.5, 3.5].map((e) => 2 ** -e)].map((x) => Math.fround(x)));
    assert.deepEqual(Array.from(alibiSlopes(6)), manifest.families.bloom.alibi_slopes);
  });

  it('BLOOM: scores = q.k / sqrt(d_head) + slope_h * key position (counting real tokens only)', async () => {
    const m = randomOf('bloom');
    const { logits, cache } = await cacheOf(m, ['blocks.1.attn.hook_q', 'blocks.1.attn.hook_k', 'blocks.1.attn.hook_attn_scores']);
    const [q, k, s] = await Promise.all(['hook_q', 'hook_k', 'hook_attn_scores'].map((n) => arr<N4>(cache.get(`blocks.1.attn.${n}` as never))));
    const slopes = alibiSlopes(m.cfg.n_heads);
    const dh = m.cfg.d_head;
    for (let b = 0; b < 2; b++)
      for (let h = 0; h < m.cfg.n_heads; h++)
        for (let i = 3; i < 9; i++)
          for (let j = 0; j <= i; j++) {
            if (!MASK[b][j]) {
              assert.equal(s[b][h][i][j], -Infinity);
              continue;
            }
            const dot = q[b][i][h].reduce((a, x, e) => a + x * k[b][j][h][e], 0);
            close(s[b][h][i][j], dot / Math.sqrt(dh) + slopes[h] * POS[b][j], 1e-4, `scores ${b} ${h} ${i} ${j}`);
          }
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('Gemma 2: scores soft-capped as cap tanh(q.k / sqrt(query_pre_attn_scalar) / cap) after rotary; logits cap tanh(unembed.hook_out / cap)', async () => {
    const m = randomModel({ ...configOf('gemma2'), attn_logit_softcapping: 2, final_logit_softcapping: 3 }, { seed: 2, std: 0.5, randomNorms: true });
    const { logits, cache } = await cacheOf(m, ['blocks.1.attn.hook_rot_q', 'blocks.1.attn.hook_rot_k', 'blocks.1.attn.hook_attn_scores', 'unembed.hook_out']);
    const [q, k, s] = await Promise.all(['hook_rot_q', 'hook_rot_k', 'hook_attn_scores'].map((n) => arr<N4>(cache.get(`blocks.1.attn.${n}` as never))));
    const G = m.cfg.n_heads / m.cfg.n_kv_heads;
    let beyond = 0;
    for (let h = 0; h < m.cfg.n_heads; h++)
      for (let i = 0; i < 9; i++)
        for (let j = 0; j <= i; j++) {
          const raw = q[1][i][h].reduce((a, x, e) => a + x * k[1][j][Math.floor(h / G)][e], 0) / Math.sqrt(20);
          if (Math.abs(raw) > 2) beyond++;
          close(s[1][h][i][j], 2 * Math.tanh(raw / 2), 1e-5, `capped score ${h} ${i} ${j}`);
        }
    assert.ok(beyond > 0, 'some raw scores exceed the cap (the test would not see a missing tanh otherwise)');
    const out = await arr<N3>(cache.get('unembed.hook_out'));
    const lg = await arr<N3>(logits);
    out[1].forEach((row, t) => row.forEach((x, v) => close(lg[1][t][v], 3 * Math.tanh(x / 3), 1e-5, 'final cap')));
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('GPT-Neo: q.k is not scaled; local layers see the window_size keys up to the query, global layers all', async () => {
    const m = randomOf('gpt-neo');
    assert.deepEqual(m.cfg.attn_types, ['global', 'local']);
    const names = [0, 1].flatMap((l) => [`blocks.${l}.attn.hook_q`, `blocks.${l}.attn.hook_k`, `blocks.${l}.attn.hook_attn_scores`]);
    const { logits, cache } = await cacheOf(m, names);
    for (const l of [0, 1]) {
      const [q, k, s] = await Promise.all(['hook_q', 'hook_k', 'hook_attn_scores'].map((n) => arr<N4>(cache.get(`blocks.${l}.attn.${n}` as never))));
      for (let i = 0; i < 9; i++)
        for (let j = 0; j <= i; j++) {
          const visible = l === 0 || i - j < 3;
          if (!visible) assert.equal(s[1][2][i][j], -Infinity, `layer ${l} key ${j} of query ${i} is outside the window`);
          else close(s[1][2][i][j], q[1][i][2].reduce((a, x, e) => a + x * k[1][j][2][e], 0), 1e-5, `layer ${l} unscaled score ${i} ${j}`);
        }
    }
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('GPT-J: interleaved rotary on the first rotary_dim dims, pairs (2i, 2i+1) turned by position * 10000^(-2i/R)', async () => {
    const m = randomOf('gptj');
    const R = m.cfg.rotary_dim;
    const { logits, cache } = await cacheOf(m, ['blocks.0.attn.hook_q', 'blocks.0.attn.hook_rot_q']);
    const [q, rq] = await Promise.all(['hook_q', 'hook_rot_q'].map((n) => arr<N4>(cache.get(`blocks.0.attn.${n}` as never))));
    for (let b = 0; b < 2; b++)
      for (let t = 3; t < 9; t++)
        for (let h = 0; h < m.cfg.n_heads; h++) {
          const x = q[b][t][h];
          for (let i = 0; i < R / 2; i++) {
            const a = POS[b][t] * 10000 ** (-(2 * i) / R);
            close(rq[b][t][h][2 * i], x[2 * i] * Math.cos(a) - x[2 * i + 1] * Math.sin(a), 1e-5, 'even');
            close(rq[b][t][h][2 * i + 1], x[2 * i + 1] * Math.cos(a) + x[2 * i] * Math.sin(a), 1e-5, 'odd');
          }
          for (let e = R; e < m.cfg.d_head; e++) assert.equal(rq[b][t][h][e], x[e], 'dims past rotary_dim pass through');
        }
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('q/k norms: Qwen3 per head (shared weight), OLMo 2 over all heads of a token, StableLM per head with its own weights', async () => {
    for (const fam of ['qwen3', 'olmo2', 'stablelm-x']) {
      const m = randomOf(fam);
      const { logits, cache } = await cacheOf(m, ['blocks.0.attn.hook_q', 'blocks.0.attn.q_norm.hook_normalized']);
      const [q, qn] = await Promise.all(['hook_q', 'q_norm.hook_normalized'].map((n) => arr<N4>(cache.get(`blocks.0.attn.${n}` as never))));
      const w = await arr<number[] | number[][]>(m.params['blocks.0.attn.q_norm.w']);
      const wOf = (h: number, e: number) => (Array.isArray(w[0]) ? (w as number[][])[h][e] : (w as number[])[e]);
      const H = m.cfg.n_heads;
      const dh = m.cfg.d_head;
      for (let t = 0; t < 9; t++) {
        const all = q[1][t].flat();
        for (let h = 0; h < H; h++) {
          const x = fam === 'olmo2' ? all : q[1][t][h];
          const mean = fam === 'stablelm-x' ? x.reduce((a, v) => a + v, 0) / x.length : 0;
          const scale = Math.sqrt(x.reduce((a, v) => a + (v - mean) ** 2, 0) / x.length + m.cfg.eps);
          for (let e = 0; e < dh; e++) close(qn[1][t][h][e], ((q[1][t][h][e] - mean) / scale) * wOf(h, e), 1e-5, `${fam} q_norm`);
        }
      }
      logits.dispose();
      cache.dispose();
      m.dispose();
    }
  });

  it('OLMo clip_qkv: q, k and v clamped to [-clip, clip] after their hooks, before rotary', async () => {
    const m = randomModel({ ...configOf('olmo'), clip_qkv: 0.5 }, { seed: 4, std: 0.5 });
    const { logits, cache } = await cacheOf(m, ['blocks.0.attn.hook_q', 'blocks.0.attn.hook_rot_q']);
    const q = await arr<N4>(cache.get('blocks.0.attn.hook_q'));
    const rq = await arr<N4>(cache.get('blocks.0.attn.hook_rot_q'));
    assert.ok(q.flat(3).some((x) => Math.abs(x) > 0.5), 'hook_q is before the clamp');
    // position 0 (row 1, token 0): rotary is the identity there
    q[1][0].forEach((hv, h) => hv.forEach((x, e) => close(rq[1][0][h][e], Math.max(-0.5, Math.min(0.5, x)), 1e-6, 'clamped')));
    logits.dispose();
    cache.dispose();
    m.dispose();
  });
});

describe('families: norms, embeddings and positions', () => {
  it('Gemma: stored (1 + w) norm weights load as w + 1; hook_embed is the embedding times sqrt(d_model); ln1 normalises with the folded weight', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gemma'));
    const sd = await readSafetensors(path.join(REF_DIR, 'gemma', 'model.safetensors'));
    const stored = await arr<number[]>(sd['model.layers.0.input_layernorm.weight']);
    const ours = await arr<number[]>(m.params['blocks.0.ln1.w']);
    stored.forEach((w, i) => close(ours[i], w + 1, 1e-7, 'ln1.w'));
    const { logits, cache } = await m.runWithCache([[3, 4, 5]], { namesFilter: ['hook_embed', 'blocks.0.hook_resid_pre', 'blocks.0.ln1.hook_normalized'] });
    const E = await arr<number[][]>(sd['model.embed_tokens.weight']);
    const emb = await arr<N3>(cache.get('hook_embed'));
    [3, 4, 5].forEach((id, t) => E[id].forEach((x, i) => close(emb[0][t][i], x * Math.sqrt(32), 1e-6, 'embed scale')));
    const x = (await arr<N3>(cache.get('blocks.0.hook_resid_pre')))[0][1];
    const y = (await arr<N3>(cache.get('blocks.0.ln1.hook_normalized')))[0][1];
    const rms = Math.sqrt(x.reduce((a, v) => a + v * v, 0) / x.length + 1e-6);
    x.forEach((v, i) => close(y[i], (v / rms) * (1 + stored[i]), 1e-5, 'gemma rmsnorm'));
    tf.dispose([logits, ...Object.values(sd)]);
    cache.dispose();
    m.dispose();
  });

  it('post-norms (Gemma 2): hook_attn_out is ln1_post of z W_O, hook_mlp_out ln2_post of the MLP, and they sum with resid_pre to resid_post', async () => {
    const m = randomOf('gemma2');
    const pre = 'blocks.0.';
    const { logits, cache } = await m.runWithCache(TOKENS, { attentionMask: MASK });
    const get = (n: string) => cache.get((pre + n) as never);
    const sum = tf.tidy(() => tf.add(tf.add(get('hook_resid_pre'), get('hook_attn_out')), get('hook_mlp_out')));
    assert.ok((await maxAbs(sum, get('hook_resid_post'))) < 1e-5);
    assert.ok((await maxAbs(get('ln1_post.hook_normalized'), get('hook_attn_out'))) === 0);
    const [z, out, w] = await Promise.all([arr<N4>(get('attn.hook_z')), arr<N3>(get('hook_attn_out')), arr<number[]>(m.params[pre + 'ln1_post.w'])]);
    const WO = await arr<number[][][]>(m.params[pre + 'attn.W_O']);
    const moduleOut = WO[0][0].map((_, i) => z[1][4].reduce((a, zh, h) => a + zh.reduce((s, x, e) => s + x * WO[h][e][i], 0), 0));
    const rms = Math.sqrt(moduleOut.reduce((a, v) => a + v * v, 0) / moduleOut.length + m.cfg.eps);
    moduleOut.forEach((v, i) => close(out[1][4][i], (v / rms) * w[i], 1e-4, 'ln1_post'));
    sum.dispose();
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('OPT: W_pos drops the 2 offset rows; hook_pos_embed at position p is stored row p + 2', async () => {
    const m = await loadModel(path.join(REF_DIR, 'opt'));
    const sd = await readSafetensors(path.join(REF_DIR, 'opt', 'model.safetensors'));
    const stored = await arr<number[][]>(sd['model.decoder.embed_positions.weight']);
    assert.equal(stored.length, m.cfg.n_ctx + 2);
    const { logits, cache } = await cacheOf(m, ['hook_pos_embed']);
    const pe = await arr<N3>(cache.get('hook_pos_embed'));
    for (let b = 0; b < 2; b++) for (let t = 3; t < 9; t++) assert.deepEqual(pe[b][t], stored[POS[b][t] + 2]);
    tf.dispose([logits, ...Object.values(sd)]);
    cache.dispose();
    m.dispose();
  });

  it('BLOOM: hook_embed is before the embedding LayerNorm, resid_pre after it', async () => {
    const m = randomOf('bloom');
    const { logits, cache } = await cacheOf(m, ['hook_embed', 'embed.ln.hook_normalized', 'blocks.0.hook_resid_pre']);
    assert.equal(await maxAbs(cache.get('embed.ln.hook_normalized'), cache.get('blocks.0.hook_resid_pre')), 0);
    assert.ok((await maxAbs(cache.get('hook_embed'), cache.get('blocks.0.hook_resid_pre'))) > 0.1);
    logits.dispose();
    cache.dispose();
    m.dispose();
  });

  it('fused q/k/v layouts (Falcon multi-query and new architecture, BLOOM, Phi-3): each canonical head is the fused rows HF measured for it', async () => {
    for (const fam of ['falcon-mq', 'falcon-new', 'bloom', 'phi3']) {
      const m = await loadModel(path.join(REF_DIR, fam));
      const sd = await readSafetensors(path.join(REF_DIR, fam, 'model.safetensors'));
      const name = Object.keys(sd).find((n) => /layers?\.0\..*(query_key_value|qkv_proj)\.weight$/.test(n) || /h\.0\..*query_key_value\.weight$/.test(n))!;
      const fused = await arr<number[][]>(sd[name]);
      const layout = manifest.families[fam].fused_layout;
      const starts = layout.query_key_value_head_start_columns ?? layout.qkv_proj_head_start_columns;
      const dh = m.cfg.d_head;
      const G = m.cfg.n_heads / m.cfg.n_kv_heads;
      for (const [n, key] of [['Q', 'q'], ['K', 'k'], ['V', 'v']] as const) {
        const W = await arr<number[][][]>(m.params[`blocks.0.attn.W_${n}`]); // [heads, d, dh]
        (starts[key] as number[]).forEach((row0, hh) => {
          const h = n === 'Q' || starts[key].length === W.length ? hh : Math.floor(hh / G); // HF's per-query-head k/v rows
          for (let e = 0; e < dh; e++) for (let i = 0; i < m.cfg.d_model; i++) assert.equal(W[h][i][e], fused[row0 + e][i], `${fam} W_${n} head ${h}`);
        });
      }
      tf.dispose(Object.values(sd));
      m.dispose();
    }
  });
});

describe('families: mixture of experts', () => {
  for (const fam of ['mixtral', 'qwen2-moe']) {
    it(`${fam}: mlp_out = sum of the top-k experts' outputs times their weights (+ sigmoid-gated shared expert); a hook on one expert moves only the tokens routed to it`, async () => {
      const m = randomOf(fam);
      const pre = 'blocks.1.mlp.';
      const names = ['hook_expert_weights', 'hook_expert_indices', 'hook_topk_weights', 'experts.hook_out', 'shared_expert.hook_out', 'hook_shared_gate'].map((n) => pre + n).filter((n) => m.hookNames().includes(n as never));
      const { logits, cache } = await m.runWithCache(TOKENS, { attentionMask: MASK, namesFilter: [...names, 'blocks.1.hook_mlp_out'] as never });
      const probs = await arr<N3>(cache.get((pre + 'hook_expert_weights') as never));
      const idx = await arr<N3>(cache.get((pre + 'hook_expert_indices') as never));
      const w = await arr<N3>(cache.get((pre + 'hook_topk_weights') as never));
      const outs = await arr<N4>(cache.get((pre + 'experts.hook_out') as never));
      const mlpOut = await arr<N3>(cache.get('blocks.1.hook_mlp_out'));
      const shared = m.cfg.moe!.d_shared ? await arr<N3>(cache.get((pre + 'shared_expert.hook_out') as never)) : null;
      const gate = m.cfg.moe!.d_shared ? await arr<N3>(cache.get((pre + 'hook_shared_gate') as never)) : null;
      for (let t = 0; t < 9; t++) {
        const p = probs[1][t];
        const order = p.map((v, e) => [v, e]).sort((a, b) => b[0] - a[0]).slice(0, m.cfg.moe!.top_k).map(([, e]) => e);
        assert.deepEqual(idx[1][t], order, 'top-k of the router probabilities, descending');
        const raw = order.map((e) => p[e]);
        const sum = raw.reduce((a, v) => a + v, 0);
        raw.forEach((v, j) => close(w[1][t][j], m.cfg.moe!.norm_topk_prob ? v / sum : v, 1e-6, 'expert weight'));
        for (let i = 0; i < m.cfg.d_model; i++) {
          let want = order.reduce((a, e, j) => a + w[1][t][j] * outs[1][t][e][i], 0);
          if (shared && gate) want += (1 / (1 + Math.exp(-gate[1][t][0]))) * shared[1][t][i];
          close(mlpOut[1][t][i], want, 1e-5, `${fam} mlp_out`);
        }
      }
      // zero expert 0's output: tokens that did not choose it keep their mlp_out
      const edited = await m.runWithCache(TOKENS, {
        attentionMask: MASK, namesFilter: ['blocks.1.hook_mlp_out'],
        fwdHooks: [[`${pre}experts.hook_out` as never, (x) => tf.mul(x, tf.tensor([0, 1, 1, 1]).reshape([1, 1, 4, 1]))]],
      });
      const after = await arr<N3>(edited.cache.get('blocks.1.hook_mlp_out'));
      let moved = 0;
      for (let t = 0; t < 9; t++) {
        const diff = Math.max(...after[1][t].map((v, i) => Math.abs(v - mlpOut[1][t][i])));
        if (idx[1][t].includes(0)) moved += diff > 1e-6 ? 1 : 0;
        else assert.ok(diff < 1e-6, `token ${t} did not choose expert 0 but moved by ${diff}`);
      }
      assert.ok(moved > 0, 'some token routed to expert 0 changed');
      for (const r of [{ logits, cache }, edited]) {
        r.logits.dispose();
        r.cache.dispose();
      }
      m.dispose();
    });
  }
});

describe('families: every family', () => {
  for (const fam of NEW) {
    it(`${fam}: a random model runs, its left-padded row equals the row alone, decoding with a KV cache equals the full run, and no tensors stay behind`, async () => {
      const m = randomOf(fam, 3);
      m.hookNames();
      const before = tf.memory().numTensors;
      const alone = await m.forward([TOKENS[0].slice(3)]);
      const batch = await m.forward(TOKENS, { attentionMask: MASK });
      const row = tf.tidy(() => batch.slice([0, 3, 0], [1, 6, -1]));
      const err = await maxAbs(alone, row);
      // dynamic NTK rope takes its base from the longest row of the batch (as HF), so padding changes it
      if (m.cfg.rope_scaling.rope_type === 'dynamic') assert.ok(err > 1e-4, 'dynamic rope depends on the batch');
      else assert.ok(err < 1e-4, `${fam}: padded vs alone ${err}`);
      // prefix then one token with the KV cache = the full run's last position
      const full = tf.tidy(() => batch.slice([1, 8, 0], [1, 1, -1]));
      const first = m.run([TOKENS[1].slice(0, 8)], { useCache: true }, null);
      const step = m.run([[TOKENS[1][8]]], { past: first.kv, useCache: true }, null);
      const decodeErr = await maxAbs(step.logits, full);
      if (m.cfg.rope_scaling.rope_type !== 'dynamic') assert.ok(decodeErr < 1e-4, `${fam}: decode vs full ${decodeErr}`);
      for (const r of [first, step]) {
        tf.dispose([r.logits, ...(r.kv ? [...r.kv.k, ...r.kv.v, r.kv.mask, r.kv.positions] : [])]);
      }
      tf.dispose([alone, batch, row, full]);
      assert.equal(tf.memory().numTensors, before);
      m.dispose();
    });
  }

  for (const fam of NEW) {
    it(`${fam}: saving writes the HF checkpoint's tensor names and values, and loading it back gives the same model`, async () => {
      const m = await loadModel(path.join(REF_DIR, fam));
      const dir = mkdtempSync(path.join(os.tmpdir(), `tflens-${fam}-`));
      try {
        await saveModel(m, dir);
        const [ours, theirs] = await Promise.all([readSafetensors(path.join(dir, 'model.safetensors')), readSafetensors(path.join(REF_DIR, fam, 'model.safetensors'))]);
        assert.deepEqual(Object.keys(ours).sort(), Object.keys(theirs).sort());
        for (const n of Object.keys(theirs)) {
          // OPT's 2 offset rows of embed_positions are read only at pad positions; they are saved as zeros
          const skip = /embed_positions/.test(n) ? 2 : 0;
          const a = ours[n].slice(skip);
          const b = theirs[n].slice(skip);
          assert.ok((await maxAbs(a, b)) <= 1e-7, `${fam} ${n}`);
          tf.dispose([a, b]);
        }
        tf.dispose([...Object.values(ours), ...Object.values(theirs)]);
        const back = await loadModel(dir);
        const [x, y] = await Promise.all([m.forward(TOKENS, { attentionMask: MASK }), back.forward(TOKENS, { attentionMask: MASK })]);
        assert.equal(await maxAbs(x, y), 0);
        tf.dispose([x, y]);
        back.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
        m.dispose();
      }
    });
  }
});

describe('families: weight processing per family', () => {
  const logProbs = async (m: HookedTransformer) => {
    const l = await m.forward(TOKENS, { attentionMask: MASK });
    const r = tf.tidy(() => tf.logSoftmax(l, -1).slice([0, 3, 0], [2, 6, -1]));
    l.dispose();
    return r;
  };
  for (const fam of NEW) {
    it(`${fam}: each allowed step and all allowed steps together keep the log-probs (1e-4); refused steps are ConfigErrors that change nothing`, async () => {
      const support = processingSupport(normalizeConfig(configOf(fam)));
      const allowed = PROCESSING_STEPS.filter((s) => !support[s]);
      for (const steps of [...allowed.map((s) => [s]), allowed]) {
        const m = randomOf(fam, 5);
        const before = await logProbs(m);
        processWeights(m, Object.fromEntries(steps.map((s) => [s, true])));
        const after = await logProbs(m);
        const err = await maxAbs(before, after);
        assert.ok(err < 1e-4, `${fam} ${steps.join('+')}: ${err}`);
        tf.dispose([before, after]);
        m.dispose();
      }
      for (const step of PROCESSING_STEPS.filter((s) => support[s])) {
        const m = randomOf(fam, 5);
        const keys = Object.keys(m.params).sort();
        const withAllowed = allowed.length ? { [allowed[0]]: true } : {};
        assert.throws(() => processWeights(m, { ...withAllowed, [step]: true }), (e: unknown) => e instanceof ConfigError && new RegExp(`^${step}: not valid`).test((e as Error).message));
        assert.deepEqual(Object.keys(m.params).sort(), keys, 'nothing changed');
        m.dispose();
      }
    });
  }
  it('the refusals follow TransformerLens: RMSNorm models do not centre writing weights, OLMo 2 does not fold, Gemma 2 does not centre its soft-capped unembedding, OLMo keeps v biases behind its clamp', () => {
    const refused = (fam: string) => PROCESSING_STEPS.filter((s) => processingSupport(normalizeConfig(configOf(fam)))[s]);
    assert.deepEqual(refused('gemma2'), ['centerWritingWeights', 'centerUnembed']);
    assert.deepEqual(refused('olmo2'), ['foldLn', 'centerWritingWeights']);
    assert.deepEqual(refused('olmo'), ['foldValueBiases']);
    assert.deepEqual(refused('gptj'), []);
    assert.deepEqual(refused('mixtral'), ['centerWritingWeights']);
  });
});

describe('families: configs and the info command', () => {
  it('hook names come from the forward: each family lists the points of its parts and none of others', () => {
    const names = (fam: string) => {
      const m = randomOf(fam);
      const n = m.hookNames() as string[];
      m.dispose();
      return n;
    };
    const g2 = names('gemma2');
    assert.ok(g2.includes('blocks.0.ln1_post.hook_normalized') && g2.includes('blocks.1.ln2_post.hook_scale') && !g2.some((n) => n.includes('q_norm')));
    const o2 = names('olmo2');
    assert.ok(o2.includes('blocks.0.attn.q_norm.hook_scale') && !o2.includes('blocks.0.ln1.hook_scale') && o2.includes('blocks.0.ln2_post.hook_normalized'));
    const bl = names('bloom');
    assert.ok(bl.includes('embed.ln.hook_normalized') && !bl.some((n) => n.includes('rot_')) && !bl.includes('hook_pos_embed'));
    const mx = names('qwen2-moe');
    assert.ok(mx.includes('blocks.1.mlp.experts.hook_out') && mx.includes('blocks.0.mlp.hook_router_logits') && mx.includes('blocks.0.mlp.shared_expert.hook_out') && !mx.includes('blocks.0.mlp.hook_pre'));
    const pj = names('gptj');
    assert.ok(pj.includes('blocks.0.attn.hook_rot_k') && !pj.includes('blocks.0.hook_resid_mid'), 'parallel block: no resid_mid');
  });

  it('unsupported options are UnsupportedModelErrors naming the field; an unknown model_type lists the supported ones', () => {
    const refuse = (cfg: Record<string, unknown>, field: RegExp) => assert.throws(() => normalizeConfig(cfg, 'c.json'), (e: unknown) => e instanceof UnsupportedModelError && field.test((e as Error).message));
    refuse({ ...configOf('falcon-mq'), alibi: true }, /c\.json: alibi: ALiBi Falcons are not supported/);
    refuse({ ...configOf('opt'), do_layer_norm_before: false }, /do_layer_norm_before: post-LN OPT/);
    refuse({ ...configOf('bloom'), apply_residual_connection_post_layernorm: true }, /apply_residual_connection_post_layernorm/);
    refuse({ ...configOf('gemma2'), use_bidirectional_attention: true }, /use_bidirectional_attention/);
    assert.throws(() => normalizeConfig({ model_type: 'bert' }), (e: unknown) => e instanceof UnsupportedModelError && /"bert" is not supported; supported: gpt2, gpt_neox, llama, .*gemma2, gemma3_text, .*qwen2_moe/.test((e as Error).message));
  });

  it('tflens info names the family, lists the hook points and which weight processing applies; an unknown model_type lists the supported ones', async () => {
    let text = '';
    assert.equal(await main(['info', path.join(REF_DIR, 'gemma2')], (s) => void (text += s)), 0);
    assert.match(text, /family\s+gemma2\b.*Gemma2ForCausalLM/);
    assert.match(text, /blocks\.(1|L)\.ln2_post\.hook_normalized/);
    assert.match(text, /foldLn\s+applies/);
    assert.match(text, /centerUnembed\s+(does not apply|refused): the final logits are soft-capped/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-bert-'));
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    const err: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => void err.push(s)) as never;
    try {
      assert.equal(await main(['info', dir], () => undefined), 2);
    } finally {
      process.stderr.write = write;
      rmSync(dir, { recursive: true, force: true });
    }
    assert.match(err.join(''), /UnsupportedModelError: .*"bert" is not supported; supported: gpt2, .*falcon, starcoder2, mixtral, qwen2_moe/);
  });
});
