// Integrity of the HF-transformers reference fixtures in fixtures/reference (see its README.md), for every
// family its manifest lists, and of the shipped zoo models in fixtures/models (files, cards, task.json).
// Pure Node: reads safetensors headers and data directly, recomputes a few relations
// independently in float64 (embedding lookup, final norm, unembedding, residual
// decomposition, attention-pattern structure) and checks the GPT-2 tokenizer against HF's ids.
import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import * as tf from '@tensorflow/tfjs';
import { loadModel } from '../src/model/index.js';
import { ZOO, ZOO_NAMES } from '../src/zoo/registry.js';

const ROOT = path.resolve('fixtures', 'reference');
const PAD_LEFT = 3;

interface StEntry { dtype: string; shape: number[]; data_offsets: [number, number] }
interface StFile { header: Record<string, StEntry>; metadata: Record<string, string>; buf: Buffer; base: number }

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

function readSafetensors(file: string): StFile {
  const buf = readFileSync(file);
  assert.ok(buf.length >= 8, `${file}: expected at least 8 bytes, found ${buf.length}`);
  const n = Number(buf.readBigUInt64LE(0));
  assert.ok(n > 0 && 8 + n <= buf.length, `${file}: header length ${n} does not fit in ${buf.length} bytes`);
  const raw = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const metadata = (raw.__metadata__ ?? {}) as Record<string, string>;
  delete raw.__metadata__;
  const header = raw as unknown as Record<string, StEntry>;
  // Offsets must tile the data section exactly, and each size must match dtype * shape.
  const spans = Object.entries(header).map(([k, e]) => {
    const size = DTYPE_BYTES[e.dtype];
    assert.ok(size !== undefined, `${file}: ${k}: unknown dtype ${e.dtype}`);
    const want = size * e.shape.reduce((a, b) => a * b, 1);
    assert.equal(e.data_offsets[1] - e.data_offsets[0], want, `${file}: ${k}: byte size vs dtype*shape`);
    return e.data_offsets;
  }).sort((a, b) => a[0] - b[0]);
  let end = 0;
  for (const [s, e] of spans) { assert.equal(s, end, `${file}: data offsets not contiguous`); end = e; }
  assert.equal(8 + n + end, buf.length, `${file}: data section length`);
  return { header, metadata, buf, base: 8 + n };
}

function tensor(st: StFile, name: string): { shape: number[]; data: Float64Array } {
  const e = st.header[name];
  assert.ok(e, `missing tensor ${name}`);
  const [s, t] = e.data_offsets;
  const bytes = st.buf.subarray(st.base + s, st.base + t);
  const copy = new Uint8Array(bytes); // aligned copy
  let src: ArrayLike<number>;
  if (e.dtype === 'F32') src = new Float32Array(copy.buffer);
  else if (e.dtype === 'I32') src = new Int32Array(copy.buffer);
  else throw new Error(`${name}: unsupported dtype ${e.dtype} in test reader`);
  return { shape: e.shape, data: Float64Array.from(src) };
}

/** What a family's folder must hold, from the manifest (every family it lists) and, for the original seven, their configs. */
interface Fam {
  name: string; B: number; T: number; L: number; d: number; H: number; padLeft: number;
  /** Vocabulary size, and the logits columns the reference stores (the first VL; gpt2 keeps 2,048 of its 50,257). */
  V: number; VL: number;
  /** The position_ids rule clamp(cumsum(mask) - 1, 0) holds (the ids were passed to the model). */
  clampPositions: boolean;
  /** Sliding window measured by the reference run (mistral). */
  window?: number;
  /** Float64 recomputation of embedding, final norm and unembedding (the original families, whose weight names are known). */
  weights?: { norm: 'LN' | 'RMS'; eps: number; finalNorm: string; embed: string; unembed: string; pos?: string };
}

const MANIFEST = JSON.parse(readFileSync(path.join(ROOT, 'manifest.json'), 'utf8')) as {
  versions: Record<string, string>; problems: string[]; families: Record<string, Record<string, unknown>>;
};
/** The families of the first reference run, made before the manifest recorded batch sizes. */
const ORIGINAL = ['gpt2', 'gpt2-tiny', 'pythia', 'pythia-seq', 'llama', 'qwen2', 'mistral'];

const cfg = (name: string) => JSON.parse(readFileSync(path.join(ROOT, name, 'config.json'), 'utf8'));

/** Weight names of the original families (the float64 checks read them from model.safetensors). */
function originalWeights(c: Record<string, any>): Fam['weights'] {
  if (c.model_type === 'gpt2') {
    return { norm: 'LN', eps: c.layer_norm_epsilon, finalNorm: 'transformer.ln_f', embed: 'transformer.wte.weight', unembed: 'transformer.wte.weight', pos: 'transformer.wpe.weight' };
  }
  if (c.model_type === 'gpt_neox') return { norm: 'LN', eps: c.layer_norm_eps, finalNorm: 'gpt_neox.final_layer_norm', embed: 'gpt_neox.embed_in.weight', unembed: 'embed_out.weight' };
  return { norm: 'RMS', eps: c.rms_norm_eps, finalNorm: 'model.norm', embed: 'model.embed_tokens.weight', unembed: c.tie_word_embeddings ? 'model.embed_tokens.weight' : 'lm_head.weight' };
}

/** A family's sizes: batch, length and layers from the manifest, widths from its reference tensors' shapes. */
function family(name: string): Fam {
  const info = MANIFEST.families[name];
  const dir = path.join(ROOT, name);
  const ref = existsSync(path.join(dir, 'reference.safetensors')) ? readSafetensors(path.join(dir, 'reference.safetensors')).header : {};
  const shape = (k: string) => ref[k]?.shape ?? [];
  const source = info.position_ids_source;
  const sw = info.sliding_window as { W?: number; window_applied?: boolean } | undefined;
  return {
    name,
    B: Number(info.batch ?? 3),
    T: Number(info.T),
    L: Number(info.n_layers),
    d: shape('hidden_states.0')[2],
    H: shape('attentions.0')[1],
    V: Number(cfg(name).vocab_size ?? shape('logits')[2]),
    VL: shape('logits')[2],
    padLeft: Number(info.pad_left_row1 ?? PAD_LEFT),
    clampPositions: source === undefined || String(source).startsWith('passed'),
    window: sw?.window_applied ? sw.W : undefined,
    weights: ORIGINAL.includes(name) ? originalWeights(cfg(name)) : undefined,
  };
}

const FAMILIES: Fam[] = Object.keys(MANIFEST.families).map(family);

/** The manifest's listing of a safetensors file, in the file's dtype names. */
const TORCH_DTYPE: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64', int32: 'I32', int64: 'I64', bool: 'BOOL', uint8: 'U8', int8: 'I8' };

function close(got: number, want: number, atol: number, rtol: number, what: string) {
  assert.ok(Number.isFinite(got) && Math.abs(got - want) <= atol + rtol * Math.abs(want),
    `${what}: expected ${want}, found ${got} (atol ${atol}, rtol ${rtol})`);
}

describe('fixtures/reference integrity', () => {
  it('manifest records versions, every original family, and problems only of families it lists', () => {
    const m = MANIFEST;
    assert.match(m.versions.transformers, /^\d+\.\d+/);
    assert.match(m.versions.torch, /^\d+\.\d+/);
    assert.ok(Array.isArray(m.problems), 'problems is a list');
    for (const p of m.problems) {
      const fam = Object.keys(m.families).find((f) => p.startsWith(`${f}: `));
      assert.ok(fam, `problem of an unlisted family: ${p}`);
      assert.ok(!ORIGINAL.includes(fam), `the original families have no problems: ${p}`);
    }
    assert.deepEqual(ORIGINAL.filter((f) => !(f in m.families)), []);
    for (const f of FAMILIES) {
      assert.ok(Number.isInteger(f.B) && f.B >= 2 && Number.isInteger(f.T) && f.T > f.padLeft && Number.isInteger(f.L) && f.L >= 1, `${f.name}: batch ${f.B}, T ${f.T}, n_layers ${f.L}`);
      if (!ORIGINAL.includes(f.name)) assert.ok(m.families[f.name].made_by, `${f.name}: merged with a made_by record`);
    }
    assert.equal((m.families.mistral.sliding_window as { semantic: string }).semantic.startsWith('key j visible to query i iff 0 <= i - j < W'), true);
  });

  for (const f of FAMILIES) {
    describe(f.name, () => {
      const dir = path.join(ROOT, f.name);
      const load = () => ({ ref: readSafetensors(path.join(dir, 'reference.safetensors')), model: readSafetensors(path.join(dir, 'model.safetensors')) });

      it('has the documented files, tensor names, dtypes and shapes (the manifest listing where it has one)', () => {
        const files = ['config.json', 'model.safetensors', 'reference.safetensors', ...(f.name === 'gpt2' ? ['tokenizer.json', 'tokenizer_config.json', 'tokenization.json'] : [])];
        for (const file of files) assert.ok(existsSync(path.join(dir, file)), `${f.name}/${file} missing`);
        const { ref, model } = load();
        const { B, T, d, L, H, V, VL } = f;
        assert.ok(VL === V || (VL < V && ref.metadata.logits_vocab_slice?.startsWith(`0:${VL}`)), `logits hold ${VL} of ${V} columns: the metadata must say so`);
        const want: Record<string, [string, number[]]> = {
          input_ids: ['I32', [B, T]], attention_mask: ['I32', [B, T]], position_ids: ['I32', [B, T]],
          logits: ['F32', [B, T, VL]], final_norm_in: ['F32', [B, T, d]],
        };
        for (let i = 0; i <= L; i++) want[`hidden_states.${i}`] = ['F32', [B, T, d]];
        for (let l = 0; l < L; l++) {
          want[`attentions.${l}`] = ['F32', [B, H, T, T]];
          want[`attn_out.${l}`] = ['F32', [B, T, d]];
          want[`mlp_out.${l}`] = ['F32', [B, T, d]];
        }
        const names = Object.keys(ref.header);
        if (ORIGINAL.includes(f.name)) assert.deepEqual(names.sort(), Object.keys(want).sort());
        else assert.deepEqual(Object.keys(want).filter((k) => !names.includes(k)), [], 'the core tensors of every family');
        for (const [k, [dtype, shape]] of Object.entries(want)) {
          assert.equal(ref.header[k].dtype, dtype, `${k} dtype`);
          assert.deepEqual(ref.header[k].shape, shape, `${k} shape`);
        }
        assert.equal(ref.metadata.family, f.name);
        for (const [file, st] of [['reference_safetensors', ref], ['model_safetensors', model]] as const) {
          const listed = MANIFEST.families[f.name][file] as Record<string, { dtype: string; shape: number[] }> | undefined;
          if (!listed) continue;
          assert.deepEqual(Object.keys(st.header).sort(), Object.keys(listed).sort(), `${file} names as the manifest lists them`);
          for (const [k, e] of Object.entries(listed)) {
            assert.equal(st.header[k].dtype, TORCH_DTYPE[e.dtype] ?? e.dtype, `${file} ${k} dtype`);
            assert.deepEqual(st.header[k].shape, e.shape, `${file} ${k} shape`);
          }
        }
      });

      it(`attention_mask is row-1 left padding${f.clampPositions ? ' and position_ids = clamp(cumsum(mask)-1, 0)' : ''}`, () => {
        const { ref } = load();
        const mask = tensor(ref, 'attention_mask').data; const pos = tensor(ref, 'position_ids').data;
        const ids = tensor(ref, 'input_ids').data;
        for (let b = 0; b < f.B; b++) {
          let c = 0;
          for (let t = 0; t < f.T; t++) {
            const m = mask[b * f.T + t];
            assert.equal(m, b === 1 && t < f.padLeft ? 0 : 1, `mask[${b},${t}]`);
            c += m;
            if (f.clampPositions) assert.equal(pos[b * f.T + t], Math.max(c - 1, 0), `position_ids[${b},${t}]`);
            const id = ids[b * f.T + t];
            assert.ok(Number.isInteger(id) && id >= 0 && id < f.V, `input_ids[${b},${t}] = ${id} out of vocab`);
          }
        }
      });

      it('attention patterns: rows sum to 1, causal, no weight on pad keys, window respected', () => {
        const { ref } = load();
        const mask = tensor(ref, 'attention_mask').data; const { T, H } = f;
        for (let l = 0; l < f.L; l++) {
          const a = tensor(ref, `attentions.${l}`).data;
          let maxAtWindowEdge = 0;
          for (let b = 0; b < f.B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
            if (!mask[b * T + i]) continue; // pad queries are unspecified
            let s = 0;
            for (let j = 0; j < T; j++) {
              const p = a[((b * H + h) * T + i) * T + j];
              s += p;
              const hidden = j > i || !mask[b * T + j] || (f.window !== undefined && i - j >= f.window);
              if (hidden) assert.ok(p <= 1e-7, `attentions.${l}[${b},${h},${i},${j}] = ${p}, expected 0`);
              if (f.window !== undefined && i - j === f.window - 1 && mask[b * T + j]) maxAtWindowEdge = Math.max(maxAtWindowEdge, p);
            }
            close(s, 1, 1e-5, 0, `sum of attentions.${l}[${b},${h},${i},:]`);
          }
          if (f.window !== undefined) assert.ok(maxAtWindowEdge > 1e-3, `window edge distance ${f.window - 1} must be visible`);
        }
      });

      it('resid_pre(l) + attn_out(l) + mlp_out(l) = resid_pre(l+1), last one = final_norm_in', () => {
        const { ref } = load();
        const mask = tensor(ref, 'attention_mask').data; const { T, d } = f;
        for (let l = 0; l < f.L; l++) {
          const x = tensor(ref, `hidden_states.${l}`).data;
          const a = tensor(ref, `attn_out.${l}`).data; const m = tensor(ref, `mlp_out.${l}`).data;
          const next = tensor(ref, l + 1 < f.L ? `hidden_states.${l + 1}` : 'final_norm_in').data;
          for (let bt = 0; bt < f.B * T; bt++) {
            if (!mask[bt]) continue;
            for (let k = 0; k < d; k++) close(x[bt * d + k] + a[bt * d + k] + m[bt * d + k], next[bt * d + k], 1e-4, 1e-5, `layer ${l} [${bt},${k}]`);
          }
        }
      });

      const w = f.weights;
      if (w) {
        it('hidden_states.0 is the embedding; hidden_states.L = final_norm(final_norm_in); logits = unembed(hidden_states.L)', () => {
          const { ref, model } = load();
          const { T, d, V } = f;
          const mask = tensor(ref, 'attention_mask').data; const ids = tensor(ref, 'input_ids').data; const pos = tensor(ref, 'position_ids').data;
          const WE = tensor(model, w.embed).data; const WU = tensor(model, w.unembed).data;
          const WP = w.pos ? tensor(model, w.pos).data : null;
          const h0 = tensor(ref, 'hidden_states.0').data; const hL = tensor(ref, `hidden_states.${f.L}`).data;
          const fin = tensor(ref, 'final_norm_in').data; const logits = tensor(ref, 'logits').data;
          const g = tensor(model, `${w.finalNorm}.weight`).data;
          const bias = w.norm === 'LN' ? tensor(model, `${w.finalNorm}.bias`).data : null;
          assert.deepEqual(model.header[w.unembed].shape, [V, d]);
          for (let bt = 0; bt < f.B * T; bt++) {
            if (!mask[bt]) continue;
            for (let k = 0; k < d; k++) {
              const e = WE[ids[bt] * d + k] + (WP ? WP[pos[bt] * d + k] : 0);
              close(h0[bt * d + k], e, 1e-6, 1e-6, `hidden_states.0[${bt},${k}]`);
            }
            const x = fin.subarray(bt * d, bt * d + d);
            const mean = w.norm === 'LN' ? x.reduce((a, b) => a + b, 0) / d : 0;
            const v = x.reduce((a, b) => a + (b - mean) ** 2, 0) / d;
            const inv = 1 / Math.sqrt(v + w.eps);
            for (let k = 0; k < d; k++) {
              const want = (x[k] - mean) * inv * g[k] + (bias ? bias[k] : 0);
              close(hL[bt * d + k], want, 1e-4, 1e-4, `hidden_states.${f.L}[${bt},${k}]`);
            }
            for (let vtok = 0; vtok < f.VL; vtok += f.VL > 1000 ? 37 : 1) {
              let s = 0;
              for (let k = 0; k < d; k++) s += hL[bt * d + k] * WU[vtok * d + k];
              close(logits[bt * f.VL + vtok], s, 1e-4, 1e-4, `logits[${bt},${vtok}]`);
            }
          }
        });
      }
    });
  }

  describe('gpt2 tokenizer', () => {
    const dir = path.join(ROOT, 'gpt2');
    const tok = () => new Tokenizer(JSON.parse(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
      JSON.parse(readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));

    it('encodes every tokenization.json sentence to exactly the HF ids', () => {
      const ref = JSON.parse(readFileSync(path.join(dir, 'tokenization.json'), 'utf8'));
      const t = tok();
      assert.ok(ref.cases.length >= 10);
      for (const c of ref.cases as Array<{ text: string; ids: number[] }>) {
        assert.deepEqual(t.encode(c.text).ids, c.ids, `encode(${JSON.stringify(c.text)})`);
      }
      assert.deepEqual(t.encode('Hello world').ids, [15496, 995]);
    });

    it('reference input_ids are <|endoftext|> + the tokenized input sentences', () => {
      const t = tok();
      const st = readSafetensors(path.join(dir, 'reference.safetensors'));
      const ids = tensor(st, 'input_ids').data; const T = 8;
      const sentences = [
        'When Mary and John went to the store, John gave a drink to Mary',
        'The capital of France is Paris, and the capital of Germany is Berlin',
        'Numbers like 12345 and symbols like $%& are tokenized differently',
      ];
      sentences.forEach((s, b) => {
        const nReal = b === 1 ? T - PAD_LEFT : T;
        const want = [...Array(T - nReal).fill(50256), ...[50256, ...t.encode(s).ids].slice(0, nReal)];
        assert.deepEqual(Array.from(ids.subarray(b * T, b * T + T)), want, `row ${b}`);
      });
    });

    it('checkpoint files of the original families stay small', () => {
      let total = 0;
      for (const f of FAMILIES.filter((x) => ORIGINAL.includes(x.name))) for (const file of ['model.safetensors', 'reference.safetensors']) total += statSync(path.join(ROOT, f.name, file)).size;
      assert.ok(total < 12 * 2 ** 20, `reference safetensors total ${total} bytes`);
    });
  });

  // The model core against the HF references: every stored activation at real (unpadded) positions, for the
  // original families (test/parity.test.ts runs the families the model core supports).
  describe('loadModel + runWithCache match HF transformers', () => {
    for (const f of FAMILIES.filter((x) => ORIGINAL.includes(x.name))) {
      it(f.name, async () => {
        const dir = path.join(ROOT, f.name);
        const ref = readSafetensors(path.join(dir, 'reference.safetensors'));
        const model = await loadModel(dir);
        try {
          const { T, d, H } = f;
          const mask = tensor(ref, 'attention_mask').data;
          const ids = tf.tensor2d(Int32Array.from(tensor(ref, 'input_ids').data), [f.B, T], 'int32');
          const am = tf.tensor2d(Int32Array.from(mask), [f.B, T], 'int32');
          const before = tf.memory().numTensors;
          const { logits, cache } = await model.runWithCache(ids, { attentionMask: am });
          // inner = number of values per (batch, position) row; attention tensors are [b, h, q, k]
          const check = async (what: string, got: tf.Tensor, refName: string, atol: number, attn = false) => {
            const want = tensor(ref, refName);
            assert.deepEqual(got.shape, want.shape, `${what} shape`);
            const g = await got.data(); const w = want.data;
            const inner = want.shape[want.shape.length - 1];
            let worst = 0;
            for (let i = 0; i < w.length; i++) {
              const bt = attn ? Math.floor(i / (H * T * T)) * T + (Math.floor(i / T) % T) : Math.floor(i / inner);
              if (!mask[bt]) continue;
              worst = Math.max(worst, Math.abs(g[i] - w[i]) / (1 + Math.abs(w[i])));
            }
            assert.ok(worst <= atol, `${f.name} ${what} vs ${refName}: max scaled error ${worst} > ${atol}`);
          };
          // the reference may store the first VL vocabulary columns only (gpt2)
          const ours = f.VL < f.V ? logits.slice([0, 0, 0], [-1, -1, f.VL]) : logits;
          await check('logits', ours, 'logits', 1e-4);
          if (ours !== logits) ours.dispose();
          for (let l = 0; l < f.L; l++) {
            await check(`blocks.${l}.hook_resid_pre`, cache.get(`blocks.${l}.hook_resid_pre`), `hidden_states.${l}`, 1e-4);
            await check(`blocks.${l}.attn.hook_pattern`, cache.get(`blocks.${l}.attn.hook_pattern`), `attentions.${l}`, 2e-5, true);
            await check(`blocks.${l}.hook_attn_out`, cache.get(`blocks.${l}.hook_attn_out`), `attn_out.${l}`, 1e-4);
            await check(`blocks.${l}.hook_mlp_out`, cache.get(`blocks.${l}.hook_mlp_out`), `mlp_out.${l}`, 1e-4);
          }
          await check(`blocks.${f.L - 1}.hook_resid_post`, cache.get(`blocks.${f.L - 1}.hook_resid_post`), 'final_norm_in', 1e-4);
          await check('unembed.hook_in', cache.get('unembed.hook_in'), `hidden_states.${f.L}`, 1e-4);
          assert.equal(d, model.cfg.d_model);
          cache.dispose();
          logits.dispose();
          assert.equal(tf.memory().numTensors, before, 'tensors leaked by runWithCache');
          tf.dispose([ids, am]);
        } finally {
          model.dispose();
        }
      });
    }
  });
});

describe('fixtures/models integrity (the shipped zoo)', () => {
  for (const name of ZOO_NAMES) {
    it(`${name}: HF files, a safetensors file that tiles its data, a model card naming its script, task.json with step counts`, () => {
      const dir = path.resolve(ZOO[name].dir);
      for (const file of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'task.json', 'MODEL_CARD.md']) {
        assert.ok(existsSync(path.join(dir, file)), `${name}/${file} missing`);
      }
      const st = readSafetensors(path.join(dir, 'model.safetensors'));
      assert.ok(Object.keys(st.header).length > 0);
      const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
      assert.equal(config.model_type, ZOO[name].architecture);
      const task = JSON.parse(readFileSync(path.join(dir, 'task.json'), 'utf8'));
      assert.equal(typeof task.task, 'string');
      assert.ok(Number.isInteger(task.steps) && Number.isInteger(task.step) && task.step >= 0 && task.step <= task.steps, `${name}: step ${task.step} of ${task.steps}`);
      const card = readFileSync(path.join(dir, 'MODEL_CARD.md'), 'utf8');
      assert.ok(card.startsWith(`# ${name}\n`), `${name}: card title`);
      assert.ok(card.includes(`npx tsx ${ZOO[name].script}`), `${name}: the card names ${ZOO[name].script}`);
    });
  }
});
