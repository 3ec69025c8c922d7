import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadSAELens, saveSAELens, SAE_CFG_FILE, SAE_WEIGHTS_FILE } from '../src/sae/saelens.js';
import { SparseAutoencoder } from '../src/sae/models.js';
import { writeSafetensors, readSafetensors } from '../src/io/safetensors.js';
import { ConfigError, FormatError, ResolveError, UnsupportedModelError } from '../src/errors.js';

async function tmpDir(): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-saelens-'));
}

describe('sae/saelens', () => {
  let dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs) await fsp.rm(d, { recursive: true, force: true });
    dirs = [];
  });
  const fresh = async () => {
    const d = await tmpDir();
    dirs.push(d);
    return d;
  };

  it('round trip: save then load gives the same weights, variant and forward pass; cfg fields present', async () => {
    const x = tf.randomNormal([5, 6], 0, 1, 'float32', 2) as tf.Tensor2D;
    for (const [arch, k] of [
      ['paper', undefined],
      ['standard', undefined],
      ['topk', 3],
    ] as const) {
      const sae = new SparseAutoencoder({ architecture: arch, dIn: 6, dSae: 10, k, seed: 4, lambda: 0.05 });
      sae.params.b_dec.assign(tf.randomNormal([6], 0, 1, 'float32', 3));
      sae.params.b_enc.assign(tf.randomNormal([10], 0, 0.1, 'float32', 5));
      const dir = await fresh();
      const before = tf.memory().numTensors;
      const { cfg } = await saveSAELens(sae, dir, { hookName: 'blocks.3.attn.hook_z', modelName: 'induction-handmade', contextSize: 32, hookHeadIndex: 1 });
      const raw = JSON.parse(await fsp.readFile(path.join(dir, SAE_CFG_FILE), 'utf8')) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
      assert.deepEqual({ ...raw }, cfg);
      assert.equal(raw.architecture, arch === 'topk' ? 'topk' : 'standard');
      assert.equal(raw.d_in, 6);
      assert.equal(raw.d_sae, 10);
      assert.equal(raw.dtype, 'float32');
      assert.equal(raw.device, 'cpu');
      assert.equal(raw.normalize_activations, 'none');
      assert.equal(raw.apply_b_dec_to_input, arch !== 'standard');
      assert.equal(raw.hook_name, 'blocks.3.attn.hook_z');
      assert.equal(raw.hook_layer, 3);
      assert.equal(raw.metadata.hook_layer, 3);
      assert.equal(raw.metadata.hook_head_index, 1);
      assert.equal(raw.metadata.model_name, 'induction-handmade');
      assert.equal(raw.context_size, 32);
      if (arch === 'topk') {
        assert.equal(raw.k, 3);
        assert.deepEqual(raw.activation_fn_kwargs, { k: 3 });
      }
      // the weights file holds exactly the four SAELens tensors with SAELens shapes
      const w = await readSafetensors(path.join(dir, SAE_WEIGHTS_FILE));
      assert.deepEqual(Object.keys(w).sort(), ['W_dec', 'W_enc', 'b_dec', 'b_enc']);
      assert.deepEqual(w.W_enc.shape, [6, 10]);
      assert.deepEqual(w.W_dec.shape, [10, 6]);
      assert.deepEqual(w.b_enc.shape, [10]);
      assert.deepEqual(w.b_dec.shape, [6]);
      Object.values(w).forEach((t) => t.dispose());
      assert.equal(tf.memory().numTensors, before);

      const { sae: back, cfg: lc } = await loadSAELens(dir);
      assert.equal(back.architecture, arch);
      assert.equal(back.k, k);
      assert.equal(back.lambda, 0.05);
      assert.equal(back.applyBDecToInput, sae.applyBDecToInput);
      assert.equal(back.decoderNorm, 'feature');
      assert.equal(lc.hook_name, 'blocks.3.attn.hook_z');
      assert.equal(lc.hook_layer, 3);
      assert.equal(lc.model_name, 'induction-handmade');
      for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        assert.deepEqual(Array.from(back.params[name].dataSync()), Array.from(sae.params[name].dataSync()), `${arch}: ${name}`);
      }
      const fa = sae.encode(x);
      const fb = back.encode(x);
      assert.deepEqual(Array.from(fa.dataSync()), Array.from(fb.dataSync()));
      tf.dispose([fa, fb]);
      back.dispose();
      sae.dispose();
      assert.equal(tf.memory().numTensors, before - 4, `${arch}: leaked tensors (the 4 disposed variables aside)`);
    }
    x.dispose();
  });

  it("keeps the paper variant's decoderNorm 'input' through a round trip", async () => {
    const sae = new SparseAutoencoder({ architecture: 'paper', dIn: 3, dSae: 4, decoderNorm: 'input', seed: 2 });
    const dir = await fresh();
    const { cfg } = await saveSAELens(sae, dir, { hookName: 'blocks.0.hook_resid_pre' });
    assert.equal(cfg.architecture, 'standard');
    assert.equal(cfg.apply_b_dec_to_input, true);
    const { sae: back } = await loadSAELens(dir);
    assert.equal(back.architecture, 'paper');
    assert.equal(back.decoderNorm, 'input');
    assert.deepEqual(Array.from(back.params.W_dec.dataSync()), Array.from(sae.params.W_dec.dataSync()));
    back.dispose();
    sae.dispose();
  });

  it('reads a Python-style SAELens folder with only the required fields (hand-checked forward)', async () => {
    const dir = await fresh();
    await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), {
      W_enc: { dtype: 'F32', shape: [2, 3], data: [1, 0, 1, 0, 1, 1] },
      b_enc: { dtype: 'F32', shape: [3], data: [0, 0, -1] },
      W_dec: { dtype: 'F32', shape: [3, 2], data: [1, 0, 0, 1, 0.5, 0.5] },
      b_dec: { dtype: 'F32', shape: [2], data: [1, 1] },
    });
    // legacy (pre-v6) fields: no architecture, no meta
    await fsp.writeFile(
      path.join(dir, SAE_CFG_FILE),
      JSON.stringify({ d_in: 2, d_sae: 3, hook_name: 'blocks.0.hook_resid_pre', hook_layer: 0, activation_fn_str: 'relu', apply_b_dec_to_input: false, model_name: 'gpt2' }),
    );
    const before = tf.memory().numTensors;
    const { sae, cfg } = await loadSAELens(dir);
    assert.equal(sae.architecture, 'standard');
    assert.equal(sae.applyBDecToInput, false);
    assert.equal(cfg.model_name, 'gpt2');
    assert.equal(cfg.context_size, null);
    const x = tf.tensor2d([[2, 3]]);
    // pre = [2, 3, 5 - 1] -> f = [2, 3, 4]; recon = [2 + 2, 3 + 2] + [1, 1] = [5, 6]
    const { features, recon } = sae.forward(x);
    assert.deepEqual(Array.from(features.dataSync()), [2, 3, 4]);
    assert.deepEqual(Array.from(recon.dataSync()), [5, 6]);
    tf.dispose([x, features, recon]);
    sae.dispose();
    assert.equal(tf.memory().numTensors, before);

    // legacy topk: k in activation_fn_kwargs, apply_b_dec_to_input missing -> SAELens default true
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, activation_fn_str: 'topk', activation_fn_kwargs: { k: 1 } }));
    const { sae: tk } = await loadSAELens(dir);
    assert.equal(tk.architecture, 'topk');
    assert.equal(tk.k, 1);
    assert.equal(tk.applyBDecToInput, true);
    const x2 = tf.tensor2d([[2, 3]]);
    // x - b_dec = [1, 2]: pre = [1, 2, 2] -> top-1 keeps a value 2 (ties at the threshold both pass: >= threshold)
    const f2 = Array.from(tk.encode(x2).dataSync());
    assert.equal(f2[0], 0);
    assert.equal(f2[1], 2);
    x2.dispose();
    tk.dispose();
  });

  it('typed errors for missing files, missing tensors, wrong shapes and unsupported settings, without leaks', async () => {
    const dir = await fresh();
    await assert.rejects(loadSAELens(dir), ResolveError);
    const good = {
      W_enc: { dtype: 'F32' as const, shape: [2, 3], data: [1, 0, 1, 0, 1, 1] },
      b_enc: { dtype: 'F32' as const, shape: [3], data: [0, 0, 0] },
      W_dec: { dtype: 'F32' as const, shape: [3, 2], data: [1, 0, 0, 1, 0, 0] },
      b_dec: { dtype: 'F32' as const, shape: [2], data: [0, 0] },
    };
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, architecture: 'standard' }));
    await assert.rejects(loadSAELens(dir), ResolveError); // no weights yet
    const before = tf.memory().numTensors;
    const { W_dec: _omit, ...noDec } = good;
    await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), noDec);
    await assert.rejects(loadSAELens(dir), (e: Error) => e instanceof FormatError && /W_dec/.test(e.message));
    await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), { ...good, W_dec: { dtype: 'F32', shape: [2, 3], data: [1, 0, 0, 1, 0, 0] } });
    await assert.rejects(loadSAELens(dir), FormatError);
    await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), good);
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, architecture: 'jumprelu' }));
    await assert.rejects(loadSAELens(dir), UnsupportedModelError);
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, normalize_activations: 'expected_average_only_in' }));
    await assert.rejects(loadSAELens(dir), ConfigError);
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_sae: 3 }));
    await assert.rejects(loadSAELens(dir), (e: Error) => e instanceof ConfigError && /d_in/.test(e.message));
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, architecture: 'topk' }));
    await assert.rejects(loadSAELens(dir), (e: Error) => e instanceof ConfigError && /\bk\b/.test(e.message));
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), '{"d_in": 2,');
    await assert.rejects(loadSAELens(dir), FormatError);
    assert.equal(tf.memory().numTensors, before);
    const sae = new SparseAutoencoder({ architecture: 'standard', dIn: 2, dSae: 3 });
    await assert.rejects(saveSAELens(sae, dir, { hookName: '' }), ConfigError);
    sae.dispose();
  });
});
