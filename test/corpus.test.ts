// Reliability (issue 11.1), whole-model-folder corpus: every malformed model folder, token file,
// prompt file and hook goes through the library (loadModel, the CLI input readers, the model) AND
// through the built command line (`node bin/tflens.js info|run|rank`). Each case must give a typed
// error whose message names the file or field; the CLI must exit non-zero with exactly one stderr
// line, no stack trace and nothing on stdout. Cases are built in a temp folder from the small
// gpt2-tiny fixture (no large files committed); the table below is the corpus.
// (The file-level corpus and the seeded mutation fuzz of single files live in test/fuzz.test.ts.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp, existsSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { TflensError } from '../src/errors.js';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { readPromptsFile, readTokensFile } from '../src/cli/inputs.js';
import { saveHeadScores } from '../src/io/export.js';
import { makeHeadScores } from '../src/results.js';
import { Tokenizer } from '../src/model/tokenizer.js';
import { rng, type Rng } from '../src/util/random.js';
import { REF_DIR } from './helpers/reference.js';

const SRC = path.join(REF_DIR, 'gpt2-tiny');
const V = 97; // gpt2-tiny vocab_size
const NCTX = 64; // gpt2-tiny n_positions
const ROOT = path.resolve('.');

/** A WordLevel tokenizer.json for the tiny model: <bos> = 0, <unk> = 1, then "w2" .. "w96". */
function tokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = { '<bos>': 0, '<unk>': 1 };
  for (let i = 2; i < V; i++) vocab[`w${i}`] = i;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: 0, content: '<bos>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      { id: 1, content: '<unk>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab, unk_token: '<unk>' },
  };
}

async function readJsonFile(file: string): Promise<any> {
  return JSON.parse(await fsp.readFile(file, 'utf8'));
}
async function writeJsonFile(file: string, v: unknown): Promise<void> {
  await fsp.writeFile(file, typeof v === 'string' ? v : JSON.stringify(v, null, 2));
}
async function editJson(file: string, fn: (j: any) => any): Promise<void> {
  const j = await readJsonFile(file);
  await writeJsonFile(file, fn(j) ?? j);
}

/** Rewrite a safetensors header (data section kept byte for byte). */
async function editHeader(file: string, fn: (h: Record<string, any>) => void): Promise<void> {
  const b = await fsp.readFile(file);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8'));
  fn(h);
  const hb = Buffer.from(JSON.stringify(h), 'utf8');
  const pre = Buffer.alloc(8);
  pre.writeBigUInt64LE(BigInt(hb.length));
  await fsp.writeFile(file, Buffer.concat([pre, hb, b.subarray(8 + n)]));
}

/**
 * Rewrite the weights through the library writer with one tensor changed (or removed when fn
 * returns null) and `add` tensors added.
 */
async function editWeights(file: string, name: string, fn: (t: tf.Tensor) => tf.Tensor | null, add: Record<string, tf.Tensor> = {}): Promise<void> {
  const w = await readSafetensors(file);
  assert.ok(w[name], `fixture has ${name}`);
  const old = w[name];
  const nt = fn(old);
  if (nt === null) delete w[name];
  else w[name] = nt;
  Object.assign(w, add);
  await writeSafetensors(file, w, { format: 'pt' });
  tf.dispose([...Object.values(w), old]);
}

/** Split model.safetensors into two shards with an index, leaving `drop` out of both. */
async function shardWithout(dir: string, drop: string): Promise<void> {
  const file = path.join(dir, 'model.safetensors');
  const w = await readSafetensors(file);
  const names = Object.keys(w).filter((n) => n !== drop).sort();
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const half = Math.ceil(names.length / 2);
  const weightMap: Record<string, string> = {};
  for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
    await writeSafetensors(path.join(dir, shards[i]), Object.fromEntries(part.map((n) => [n, w[n]])));
    for (const n of part) weightMap[n] = shards[i];
  }
  tf.dispose(Object.values(w));
  await fsp.rm(file);
  await writeJsonFile(path.join(dir, 'model.safetensors.index.json'), { metadata: {}, weight_map: weightMap });
}

const withValue = (value: number, at = 7) => (t: tf.Tensor) =>
  tf.tidy(() => {
    const flat = t.dataSync().slice() as Float32Array;
    flat[at] = value;
    return tf.tensor(flat, t.shape, 'float32');
  });

type Cli = { code: number | null; stdout: string; stderr: string };
const DAWN_NOTICE = /^Warning: max\w+ artificially reduced from \d+ to \d+/;

function runCli(args: string[]): Promise<Cli> {
  const useDist = existsSync(path.join(ROOT, 'dist/cli/main.js'));
  const argv = useDist
    ? [path.join(ROOT, 'bin/tflens.js'), ...args]
    : ['--import', 'tsx', '-e', `import('${path.join(ROOT, 'src/cli/main.ts')}').then(async (m) => { process.exitCode = await m.main(process.argv.slice(1)); })`, ...args];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, argv, { cwd: ROOT, env: { ...process.env, TFLENS_DEBUG: '', TFLENS_QUIET: '1' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 90000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Run jobs with at most `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  }));
  return out;
}

interface Case {
  name: string;
  group: 'tokenizer' | 'config' | 'weights' | 'tokens' | 'prompts' | 'hooks' | 'output';
  /** Error class name(s), "A|B" when either is acceptable. */
  cls: string;
  /** What the message must say (it must name the file or the field). */
  re: RegExp;
  /** Prepare the case folder (a fresh copy of the valid folder). */
  setup?: (dir: string) => Promise<void>;
  /** The library call; default loadModel(dir). Gets the loaded valid model for input cases. */
  lib?: (dir: string, model: HookedTransformer) => Promise<unknown> | unknown;
  /** CLI arguments; default ['info', dir]; null = library only (hooks have no CLI). */
  cli?: ((dir: string) => string[]) | null;
}

const words = (n: number, from = 2) => Array.from({ length: n }, (_, i) => `w${from + (i % (V - from))}`).join(' ');
const tokensCase = (name: string, doc: unknown, cls: string, re: RegExp): Case => ({
  name,
  group: 'tokens',
  cls,
  re,
  setup: (dir) => writeJsonFile(path.join(dir, 'tokens.json'), doc),
  lib: (dir, m) => readTokensFile(path.join(dir, 'tokens.json'), m),
  cli: (dir) => ['run', dir, '--tokens', path.join(dir, 'tokens.json'), '--save', 'logits', '--out', path.join(dir, 'out.safetensors')],
});
const promptsCase = (name: string, text: string, cls: string, re: RegExp): Case => ({
  name,
  group: 'prompts',
  cls,
  re,
  setup: (dir) => fsp.writeFile(path.join(dir, 'prompts.txt'), text),
  lib: async (dir, m) => {
    // the reader, then the model itself (a caller that skips the reader must be stopped by forward)
    const b = await readPromptsFile(path.join(dir, 'prompts.txt'), m);
    tf.dispose(await m.forward(b.ids, { attentionMask: b.mask }));
  },
  cli: (dir) => ['rank', dir, '--method', 'sink', '--prompts', path.join(dir, 'prompts.txt')],
});
const hookCase = (name: string, cls: string, re: RegExp, run: (m: HookedTransformer) => unknown): Case => ({
  name, group: 'hooks', cls, re, lib: (_d, m) => run(m), cli: null,
});

const CASES: Case[] = [
  // ---- tokenizer.json / tokenizer_config.json
  { name: 'tokenizer invalid JSON', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: tokenizer is not valid JSON/, setup: (d) => writeJsonFile(path.join(d, 'tokenizer.json'), '{"model": {"type": "WordLevel",') },
  { name: 'tokenizer empty file', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: tokenizer is not valid JSON/, setup: (d) => writeJsonFile(path.join(d, 'tokenizer.json'), '') },
  { name: 'tokenizer is an array', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: .*"model"/, setup: (d) => writeJsonFile(path.join(d, 'tokenizer.json'), [1, 2, 3]) },
  { name: 'tokenizer missing model', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: .*"model" field/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void delete j.model) },
  { name: 'tokenizer model is a string', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: .*"model" field/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model = 'WordLevel')) },
  { name: 'tokenizer unknown model type', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: model\.type: expected one of BPE, WordPiece, WordLevel, Unigram, found "Quantum"/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model.type = 'Quantum')) },
  { name: 'tokenizer vocab not an object', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: model\.vocab: expected an object of token -> id, found 5/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model.vocab = 5)) },
  { name: 'tokenizer vocab id a string', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: model\.vocab\["w7"\]: expected a non-negative integer id, found "7"/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model.vocab.w7 = '7')) },
  { name: 'tokenizer unk_token not in the vocabulary', group: 'tokenizer', cls: 'FormatError', re: /tokenizer\.json: model\.unk_token: "\[UNK\]" is not in the vocabulary/, setup: (d) => editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model.unk_token = '[UNK]')) },
  {
    name: 'tokenizer ids beyond the model vocabulary (prompts)',
    group: 'prompts',
    cls: 'ValueError',
    re: /prompts\.txt: prompt 2: expected token ids in \[0, 97\), found 500 at token 2/,
    setup: async (d) => {
      await editJson(path.join(d, 'tokenizer.json'), (j) => void (j.model.vocab.w500 = 500));
      await fsp.writeFile(path.join(d, 'prompts.txt'), 'w5 w6 w7\nw5 w500\n');
    },
    lib: async (d) => {
      const m = await loadModel(d);
      try {
        return await readPromptsFile(path.join(d, 'prompts.txt'), m);
      } finally {
        m.dispose();
      }
    },
    cli: (d) => ['rank', d, '--method', 'sink', '--prompts', path.join(d, 'prompts.txt')],
  },
  { name: 'tokenizer_config.json invalid JSON', group: 'tokenizer', cls: 'FormatError', re: /tokenizer_config\.json: tokenizer config is not valid JSON/, setup: (d) => writeJsonFile(path.join(d, 'tokenizer_config.json'), '{bos_token: <bos>}') },
  // ---- config.json
  { name: 'config.json missing', group: 'config', cls: 'FormatError|ResolveError|ConfigError', re: /config\.json/, setup: (d) => fsp.rm(path.join(d, 'config.json')) },
  { name: 'config invalid JSON', group: 'config', cls: 'FormatError', re: /config\.json: config is not valid JSON/, setup: (d) => writeJsonFile(path.join(d, 'config.json'), '{"model_type": "gpt2", n_layer: 3}') },
  { name: 'config not an object', group: 'config', cls: 'ConfigError', re: /config\.json/, setup: (d) => writeJsonFile(path.join(d, 'config.json'), '"gpt2"') },
  { name: 'config missing n_layer', group: 'config', cls: 'ConfigError', re: /config\.json: n_layer: required field is missing/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void delete j.n_layer) },
  { name: 'config missing model_type', group: 'config', cls: 'ConfigError', re: /config\.json: .*model_type/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void delete j.model_type) },
  { name: 'config n_head a string', group: 'config', cls: 'ConfigError', re: /config\.json: n_head: expected an integer, found "4"/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_head = '4')) },
  { name: 'config n_embd a float', group: 'config', cls: 'ConfigError', re: /config\.json: n_embd: expected an integer/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_embd = 32.5)) },
  { name: 'config vocab_size negative', group: 'config', cls: 'ConfigError', re: /config\.json: vocab_size/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.vocab_size = -97)) },
  { name: 'config unknown activation', group: 'config', cls: 'ConfigError', re: /config\.json: activation_function/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.activation_function = 'swishy')) },
  { name: 'config epsilon a string', group: 'config', cls: 'ConfigError', re: /config\.json: layer_norm_epsilon/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.layer_norm_epsilon = '1e-5')) },
  { name: 'config unknown architecture', group: 'config', cls: 'UnsupportedModelError', re: /config\.json: model_type: architecture "bert" is not supported; supported: gpt2/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.model_type = 'bert')) },
  { name: 'config heads do not divide n_embd', group: 'config', cls: 'ConfigError', re: /config\.json: n_head: n_embd 32 is not a multiple of n_head 5/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_head = 5)) },
  { name: 'config with a key written twice', group: 'config', cls: 'FormatError', re: /config\.json: config lists key "n_layer" twice/, setup: async (d) => {
    const f = path.join(d, 'config.json');
    await fsp.writeFile(f, (await fsp.readFile(f, 'utf8')).replace('"n_layer": 3,', '"n_layer": 3,\n  "n_layer": 1,'));
  } },
  { name: 'tokenizer_config.json with a key written twice', group: 'tokenizer', cls: 'FormatError', re: /tokenizer_config\.json: tokenizer config lists key "bos_token" twice/, setup: (d) => writeJsonFile(path.join(d, 'tokenizer_config.json'), '{"bos_token": "<bos>", "unk_token": "<unk>", "bos_token": "w5"}') },
  // ---- weights that do not fit the config
  { name: 'config n_layer above the checkpoint (missing tensors)', group: 'weights', cls: 'FormatError|ShapeError|ConfigError', re: /model\.safetensors.*h\.3\./, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_layer = 4)) },
  { name: 'config n_layer below the checkpoint (unused tensors)', group: 'weights', cls: 'FormatError', re: /model\.safetensors: 24 tensor\(s\) are not used by the gpt2 model: the checkpoint has layers beyond the 1 that .*config\.json declares \(transformer\.h\.1\.attn\.c_attn\.bias, /, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_layer = 1)) },
  { name: 'a tensor no family reads', group: 'weights', cls: 'FormatError', re: /model\.safetensors: 1 tensor\(s\) are not used by the gpt2 model: .*config\.json does not describe these weights \(transformer\.h\.0\.attn\.q_norm\.weight\)/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.h.0.ln_1.weight', (t) => t.clone(), { 'transformer.h.0.attn.q_norm.weight': tf.ones([8]) }) },
  { name: 'tied embeddings but a different lm_head.weight', group: 'weights', cls: 'FormatError', re: /model\.safetensors: lm_head\.weight: .*config\.json sets tie_word_embeddings, so the output layer is the embedding, but the checkpoint stores a different lm_head\.weight/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.wte.weight', (t) => t.clone(), { 'lm_head.weight': tf.ones([V, 32]) }) },
  { name: 'model.safetensors a symlink loop', group: 'weights', cls: 'ResolveError', re: /model\.safetensors: cannot be used: ELOOP: too many levels of symbolic links/, setup: async (d) => {
    await fsp.rm(path.join(d, 'model.safetensors'));
    await fsp.symlink('model.safetensors', path.join(d, 'model.safetensors'));
  } },
  { name: 'tokenizer.json a symlink loop', group: 'tokenizer', cls: 'ResolveError', re: /tokenizer\.json: cannot be used: ELOOP/, setup: async (d) => {
    await fsp.rm(path.join(d, 'tokenizer.json'));
    await fsp.symlink('tokenizer.json', path.join(d, 'tokenizer.json'));
  } },
  { name: 'shard index without a tensor', group: 'weights', cls: 'FormatError', re: /model\.safetensors\.index\.json \(shards model-00001-of-00002\.safetensors, model-00002-of-00002\.safetensors\): transformer\.h\.2\.mlp\.c_fc\.weight: tensor is missing from the checkpoint/, setup: (d) => shardWithout(d, 'transformer.h.2.mlp.c_fc.weight') },
  { name: 'config n_embd other than the weights', group: 'weights', cls: 'FormatError|ShapeError', re: /model\.safetensors: wte\.weight: expected shape \[97,64\], found \[97,32\]/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void ((j.n_embd = 64), (j.n_head = 4))) },
  { name: 'config vocab_size other than the weights', group: 'weights', cls: 'FormatError|ShapeError', re: /model\.safetensors: wte\.weight: expected shape \[100,32\], found \[97,32\]/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.vocab_size = 100)) },
  { name: 'config n_positions other than the weights', group: 'weights', cls: 'FormatError|ShapeError', re: /model\.safetensors: wpe\.weight: expected shape \[128,32\], found \[64,32\]/, setup: (d) => editJson(path.join(d, 'config.json'), (j) => void (j.n_positions = 128)) },
  { name: 'missing tensor', group: 'weights', cls: 'FormatError|ShapeError', re: /model\.safetensors.*h\.1\.attn\.c_attn\.weight/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.h.1.attn.c_attn.weight', () => null) },
  { name: 'tensor with the wrong shape', group: 'weights', cls: 'FormatError|ShapeError', re: /model\.safetensors: h\.2\.mlp\.c_fc\.weight: expected shape \[32,128\], found \[128,32\]/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.h.2.mlp.c_fc.weight', (t) => tf.transpose(t)) },
  { name: 'NaN weight', group: 'weights', cls: 'ValueError', re: /model\.safetensors: transformer\.h\.1\.attn\.c_proj\.weight: weights hold NaN/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.h.1.attn.c_proj.weight', withValue(NaN)) },
  { name: 'infinite weight', group: 'weights', cls: 'ValueError', re: /model\.safetensors: transformer\.wte\.weight: weights hold NaN or infinite/, setup: (d) => editWeights(path.join(d, 'model.safetensors'), 'transformer.wte.weight', withValue(-Infinity, 300)) },
  { name: 'model.safetensors missing', group: 'weights', cls: 'ResolveError|FormatError', re: /model\.safetensors/, setup: (d) => fsp.rm(path.join(d, 'model.safetensors')) },
  { name: 'model.safetensors truncated', group: 'weights', cls: 'FormatError', re: /model\.safetensors: .*out of range|model\.safetensors: .*truncated/, setup: async (d) => { const f = path.join(d, 'model.safetensors'); const b = await fsp.readFile(f); await fsp.writeFile(f, b.subarray(0, b.length - 1000)); } },
  { name: 'header length beyond the file', group: 'weights', cls: 'FormatError', re: /model\.safetensors: header length \d+ bytes goes beyond the end of the file/, setup: async (d) => { const f = path.join(d, 'model.safetensors'); const b = await fsp.readFile(f); b.writeBigUInt64LE(BigInt(b.length)); await fsp.writeFile(f, b); } },
  { name: 'huge header length', group: 'weights', cls: 'FormatError', re: /model\.safetensors: header length .* too large/, setup: async (d) => { const f = path.join(d, 'model.safetensors'); const b = await fsp.readFile(f); b.writeBigUInt64LE(1n << 40n); await fsp.writeFile(f, b); } },
  { name: 'unknown dtype', group: 'weights', cls: 'FormatError', re: /model\.safetensors: tensor "transformer\.h\.0\.ln_1\.bias": unknown dtype "Q4_K"/, setup: (d) => editHeader(path.join(d, 'model.safetensors'), (h) => void (h['transformer.h.0.ln_1.bias'].dtype = 'Q4_K')) },
  { name: 'dtype not matching the bytes', group: 'weights', cls: 'FormatError', re: /model\.safetensors: tensor "transformer\.h\.0\.ln_1\.bias": data_offsets .* needs 64/, setup: (d) => editHeader(path.join(d, 'model.safetensors'), (h) => void (h['transformer.h.0.ln_1.bias'].dtype = 'F16')) },
  { name: 'overlapping offsets', group: 'weights', cls: 'FormatError', re: /model\.safetensors: tensors .* have overlapping data_offsets/, setup: (d) => editHeader(path.join(d, 'model.safetensors'), (h) => { const a = h['transformer.h.0.ln_1.bias'].data_offsets; h['transformer.h.0.ln_2.bias'].data_offsets = [a[0], a[1]]; }) },
  { name: 'offsets out of range', group: 'weights', cls: 'FormatError', re: /model\.safetensors: tensor "transformer\.ln_f\.bias": data_offsets .* out of range/, setup: (d) => editHeader(path.join(d, 'model.safetensors'), (h) => void (h['transformer.ln_f.bias'].data_offsets = [10_000_000, 10_000_128])) },
  { name: 'shard index naming a missing shard', group: 'weights', cls: 'ResolveError|FormatError', re: /model-00002-of-00002\.safetensors/, setup: async (d) => {
    const f = path.join(d, 'model.safetensors');
    await fsp.rename(f, path.join(d, 'model-00001-of-00002.safetensors'));
    await writeJsonFile(path.join(d, 'model.safetensors.index.json'), { metadata: {}, weight_map: { 'transformer.wte.weight': 'model-00001-of-00002.safetensors', 'transformer.ln_f.weight': 'model-00002-of-00002.safetensors' } });
  } },
  // ---- token files (CLI run --tokens)
  tokensCase('tokens ragged', { input_ids: [[0, 5, 6], [0, 5]] }, 'ShapeError', /tokens\.json: input_ids: row 1: has 2 tokens, expected 3 like row 0/),
  tokensCase('tokens negative id', { input_ids: [[0, -5, 6]] }, 'ValueError', /tokens\.json: input_ids: \[0\]\[1\]: expected a token id in \[0, 96\], found -5/),
  tokensCase('tokens id outside the vocabulary', { input_ids: [[0, 5, 97]] }, 'ValueError', /tokens\.json: input_ids: \[0\]\[2\]: expected a token id in \[0, 96\], found 97/),
  tokensCase('tokens longer than n_ctx', { input_ids: [Array.from({ length: NCTX + 1 }, (_, i) => i % V)] }, 'ValueError', /tokens\.json: input_ids: expected at most n_ctx = 64 tokens per row, found 65/),
  tokensCase('tokens not JSON', '[[0, 1', 'FormatError', /tokens\.json: token file is not valid JSON/),
  tokensCase('tokens with input_ids written twice', '{"input_ids": [[0, 5, 6]], "input_ids": [[0, 7, 8]]}', 'FormatError', /tokens\.json: token file lists key "input_ids" twice/),
  tokensCase('tokens float id', { input_ids: [[0, 1.5]] }, 'ValueError', /tokens\.json: input_ids: \[0\]\[1\]: expected an integer token id, found 1\.5/),
  tokensCase('attention_mask not binary', { input_ids: [[0, 1, 2]], attention_mask: [[1, 2, 1]] }, 'ValueError', /tokens\.json: attention_mask: \[0\]\[1\]: expected 0 or 1, found number 2/),
  tokensCase('attention_mask of another length', { input_ids: [[0, 1, 2]], attention_mask: [[1, 1]] }, 'ShapeError', /tokens\.json: attention_mask: row 0: expected 3 entries like its ids row, found 2 entries/),
  // ---- prompt files (CLI rank --prompts)
  promptsCase('prompts longer than n_ctx', `${words(10)}\n${words(NCTX + 5)}\n`, 'ValueError', /prompts\.txt: prompt 2: expected 1 to n_ctx = 64 tokens, found 70 tokens \(shorten or split the text\)/),
  promptsCase('prompts file empty', '\n\n  \n', 'FormatError', /prompts\.txt: no prompts/),
  { name: 'toTokens of an empty list', group: 'prompts', cls: 'ValueError', re: /^texts: expected a string or a non-empty array of strings, found an empty array$/, lib: (_d, m) => m.toTokens([]), cli: null },
  { name: 'toTokens of a text longer than n_ctx', group: 'prompts', cls: 'ValueError', re: /^texts\[1\]: expected 1 to n_ctx = 64 tokens, found 70 tokens \(shorten or split the text\)$/, lib: (_d, m) => m.toTokens([words(5), words(69)]), cli: null },
  // ---- outputs
  {
    name: 'ranking written onto a folder', group: 'output', cls: 'ResolveError', re: /out-folder\.csv: cannot write: EISDIR: it is a folder/,
    setup: async (d) => {
      await fsp.mkdir(path.join(d, 'out-folder.csv'));
      await fsp.writeFile(path.join(d, 'prompts.txt'), `${words(8)}\n`);
    },
    lib: (d) => saveHeadScores(makeHeadScores('sink', [[1, 2]]), path.join(d, 'out-folder.csv')),
    cli: (d) => ['rank', d, '--method', 'sink', '--prompts', path.join(d, 'prompts.txt'), '--out', path.join(d, 'out-folder.csv')],
  },
  // ---- hooks (library only)
  hookCase('hook throws', 'HookError', /blocks\.1\.attn\.hook_z: hook threw: broken/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.1.attn.hook_z', () => { throw new Error('broken'); }]] })),
  hookCase('hook returns the wrong shape', 'HookError', /blocks\.0\.hook_resid_post: .*expected a tensor of shape \[1,3,32\], found \[1,2,32\]/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.0.hook_resid_post', (a) => tf.slice(a, [0, 0, 0], [1, 2, -1])]] })),
  hookCase('hook returns the wrong rank', 'HookError', /blocks\.2\.attn\.hook_pattern: .*\[1,4,3,3\]/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.2.attn.hook_pattern', (a) => tf.sum(a, -1)]] })),
  hookCase('hook returns a number', 'HookError', /blocks\.0\.hook_mlp_out: /, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.0.hook_mlp_out', () => 3 as any]] })),
  hookCase('unknown hook name', 'HookError', /blocks\.0\.attn\.hook_patern: unknown hook point; did you mean "blocks\.0\.attn\.hook_pattern"/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.0.attn.hook_patern' as any, () => undefined]] })),
  hookCase('hook on a layer past n_layers', 'HookError', /blocks\.3\.hook_resid_pre: unknown hook point/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['blocks.3.hook_resid_pre' as any, () => undefined]] })),
  hookCase('hook not a function', 'HookError', /hook must be a function/, (m) => m.forward([[0, 5, 6]], { fwdHooks: [['hook_embed', 'nope' as any]] })),
];

describe('reliability: model-folder corpus through loadModel and the CLI', function () {
  this.timeout(600000);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tflens-corpus-'));
  const base = path.join(tmp, 'valid');
  let model: HookedTransformer;
  const dirs = new Map<Case, string>();

  before(async () => {
    await fsp.mkdir(base);
    await fsp.copyFile(path.join(SRC, 'config.json'), path.join(base, 'config.json'));
    await fsp.copyFile(path.join(SRC, 'model.safetensors'), path.join(base, 'model.safetensors'));
    await writeJsonFile(path.join(base, 'tokenizer.json'), tokenizerJson());
    await writeJsonFile(path.join(base, 'tokenizer_config.json'), { bos_token: '<bos>', unk_token: '<unk>' });
    model = await loadModel(base);
    let i = 0;
    for (const c of CASES) {
      const d = path.join(tmp, `case-${String(i++).padStart(2, '0')}`);
      await fsp.cp(base, d, { recursive: true });
      await c.setup?.(d);
      dirs.set(c, d);
    }
  });
  after(() => model?.dispose());

  it('the valid folder loads, tokenizes, runs, and passes the CLI (the cases differ from it by one defect)', async () => {
    assert.equal(model.cfg.d_vocab, V);
    assert.equal(model.cfg.n_ctx, NCTX);
    assert.deepEqual(model.encodeBatch(['w5 w6 w7']).ids, [[0, 5, 6, 7]]);
    // a WordLevel tokenizer.json alone (no tokenizer_config.json) maps unknown words to its model.unk_token, as HF does
    assert.deepEqual(new Tokenizer(tokenizerJson(), {}, 'tokenizer.json').encode('zz w5 qq'), [1, 5, 1]);
    const p = await readPromptsFile(await (async () => { const f = path.join(tmp, 'ok.txt'); await fsp.writeFile(f, `${words(NCTX - 1)}\n`); return f; })(), model);
    assert.equal(p.ids[0].length, NCTX);
    const r = await runCli(['info', base]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^shape +3 layers, 4 heads/m);
    const r2 = await runCli(['rank', base, '--method', 'sink', '--prompts', path.join(tmp, 'ok.txt'), '--format', 'json']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).rows.length, 12);
  });

  it('tensors HF itself drops (mask buffers, rotary inv_freq) and a tied copy of the embedding load; the options make the check strict or off', async () => {
    const d = path.join(tmp, 'known-extras');
    await fsp.cp(base, d, { recursive: true });
    const file = path.join(d, 'model.safetensors');
    const w = await readSafetensors(file);
    const add: Record<string, tf.Tensor> = {
      'transformer.h.0.attn.bias': tf.ones([1, 1, NCTX, NCTX]),
      'transformer.h.0.attn.masked_bias': tf.scalar(-1e4),
      'transformer.h.2.attn.bias': tf.ones([1, 1, NCTX, NCTX]),
      'transformer.h.1.attn.rotary_emb.inv_freq': tf.ones([4]),
      'lm_head.weight': w['transformer.wte.weight'].clone(),
    };
    await writeSafetensors(file, { ...w, ...add }, { format: 'pt' });
    tf.dispose([...Object.values(w), ...Object.values(add)]);
    const before = tf.memory().numTensors;
    const m = await loadModel(d);
    const ids = [[0, 5, 6, 7, 8]];
    const [a, b] = [await m.forward(ids), await model.forward(ids)];
    assert.deepEqual(Array.from(await a.data()), Array.from(await b.data()), 'same logits as the plain folder');
    tf.dispose([a, b]);
    m.dispose();
    await assert.rejects(loadModel(d, { allowExtraTensors: 'none' }), (e: unknown) => e instanceof TflensError && e.name === 'FormatError' && /4 tensor\(s\) are not used.*transformer\.h\.0\.attn\.bias/.test((e as Error).message));
    assert.equal(tf.memory().numTensors, before, 'a refused load leaves no tensors');
    // the issue's case: n_layer 1 on the 3-layer checkpoint loads only when asked to drop the rest
    await editJson(path.join(d, 'config.json'), (j) => void (j.n_layer = 1));
    await assert.rejects(loadModel(d), /tensor\(s\) are not used/);
    const one = await loadModel(d, { allowExtraTensors: 'all' });
    assert.equal(one.cfg.n_layers, 1);
    one.dispose();
    assert.equal(tf.memory().numTensors, before);
  });

  it(`${CASES.length} malformed cases: typed errors naming the file or field from the library, no leaked tensors`, async () => {
    const problems: string[] = [];
    const byClass: Record<string, number> = {};
    for (const c of CASES) {
      const d = dirs.get(c)!;
      const before = tf.memory().numTensors;
      let err: unknown = null;
      try {
        const r = await (c.lib ? c.lib(d, model) : loadModel(d));
        if (r && typeof (r as HookedTransformer).dispose === 'function') (r as HookedTransformer).dispose();
        else tf.dispose(r as tf.TensorContainer);
      } catch (e) {
        err = e;
      }
      if (tf.memory().numTensors !== before) problems.push(`${c.name}: ${tf.memory().numTensors - before} tensors left`);
      if (model.hooks.size) problems.push(`${c.name}: ${model.hooks.size} hooks left`);
      if (!err) {
        problems.push(`${c.name}: no error`);
        continue;
      }
      const e = err as Error;
      if (!(e instanceof TflensError)) problems.push(`${c.name}: untyped ${e.name}: ${e.message}`);
      else if (!c.cls.split('|').includes(e.name)) problems.push(`${c.name}: ${e.name}, expected ${c.cls}: ${e.message}`);
      if (!c.re.test(e.message)) problems.push(`${c.name}: message ${JSON.stringify(e.message)} does not match ${c.re}`);
      byClass[e.name] = (byClass[e.name] ?? 0) + 1;
    }
    const groups: Record<string, number> = {};
    for (const c of CASES) groups[c.group] = (groups[c.group] ?? 0) + 1;
    console.log(`      corpus: ${CASES.length} cases (${Object.entries(groups).map(([g, n]) => `${g} ${n}`).join(', ')}); errors by class: ${JSON.stringify(byClass)}`);
    assert.deepEqual(problems, []);
    assert.ok(CASES.length >= 30);
  });

  it('the CLI: every folder, token and prompt case exits non-zero with one stderr line naming the problem, no stack trace, nothing written', async () => {
    const cliCases = CASES.filter((c) => c.cli !== null);
    const results = await pool(cliCases, 3, async (c) => {
      const d = dirs.get(c)!;
      return [c, await runCli(c.cli ? c.cli(d) : ['info', d])] as const;
    });
    const problems: string[] = [];
    for (const [c, r] of results) {
      // Dawn (the native WebGPU library) prints its own adapter-limit warnings when it starts on some
      // Vulkan drivers (Mesa's lavapipe); they are not tflens output
      const lines = r.stderr.split('\n').filter((l) => l.length > 0 && !DAWN_NOTICE.test(l));
      if (r.code === 0 || r.code === null) problems.push(`${c.name}: exit code ${r.code}`);
      if (lines.length !== 1) problems.push(`${c.name}: ${lines.length} stderr lines: ${JSON.stringify(r.stderr.slice(0, 400))}`);
      if (/\n\s+at /.test(r.stderr) || /\.(ts|js):\d+:\d+/.test(r.stderr)) problems.push(`${c.name}: stack trace on stderr`);
      const m = /^tflens: (\w+): (.*)$/.exec(lines[0] ?? '');
      if (!m) problems.push(`${c.name}: stderr is not "tflens: <ErrorClass>: <message>": ${JSON.stringify(lines[0])}`);
      else {
        if (!c.cls.split('|').includes(m[1])) problems.push(`${c.name}: CLI reported ${m[1]}, expected ${c.cls}: ${m[2]}`);
        if (!c.re.test(m[2])) problems.push(`${c.name}: CLI message ${JSON.stringify(m[2])} does not match ${c.re}`);
      }
      if (r.stdout.length) problems.push(`${c.name}: wrote to stdout: ${JSON.stringify(r.stdout.slice(0, 200))}`);
      if (existsSync(path.join(dirs.get(c)!, 'out.safetensors'))) problems.push(`${c.name}: an output file was written`);
    }
    console.log(`      CLI: ${cliCases.length} cases spawned, ${cliCases.length - new Set(problems.map((p) => p.split(':')[0])).size} clean one-line typed failures`);
    assert.deepEqual(problems, []);
  });
});

// ---------------------------------------------------------------------------------------------
// seeded mutations of a whole folder through the loader: config.json against real weights, and
// tokenizer.json through the Tokenizer the loader builds. Each case either loads a working model
// (finite logits of the right shape) / a tokenizer whose ids are valid integers, or throws a
// TflensError; nothing else (TypeError, RangeError, a tfjs error, a hang) is accepted.

const WEIRD: Array<(r: Rng, old: unknown) => unknown> = [
  () => undefined, // delete
  () => null,
  () => 'seven',
  () => '',
  () => -1,
  () => 0,
  () => 1,
  () => 2,
  () => 3.5,
  () => 1e12,
  () => true,
  () => [],
  () => [1, 2],
  () => ({}),
  (_r, old) => (typeof old === 'number' ? old * 2 : old),
  (_r, old) => (typeof old === 'number' ? old + 1 : old),
  (_r, old) => (typeof old === 'number' ? old - 1 : old),
  (_r, old) => (typeof old === 'number' ? String(old) : old),
  (r) => r.int(200),
];

function mutateObject(r: Rng, obj: Record<string, unknown>, extraKeys: string[]): string {
  const keys = [...Object.keys(obj), ...extraKeys];
  const k = r.choice(keys);
  const v = r.choice(WEIRD)(r, obj[k]);
  if (v === undefined) delete obj[k];
  else obj[k] = v;
  return `${k}=${JSON.stringify(v)}`;
}

/** All [container, key] pairs of a JSON tree (for tokenizer mutations). */
function slots(v: unknown, out: Array<[any, string | number]> = []): Array<[any, string | number]> {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([v, i]), slots(x, out)));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) out.push([v, k]), slots(x, out);
  return out;
}

describe('reliability: seeded mutations of a model folder through the loader', function () {
  this.timeout(600000);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tflens-folder-fuzz-'));

  it('400 config.json mutations against the real weights: a working model or a TflensError, no tensors left', async () => {
    const dir = path.join(tmp, 'cfg');
    await fsp.mkdir(dir);
    await fsp.copyFile(path.join(SRC, 'model.safetensors'), path.join(dir, 'model.safetensors'));
    const cfg0 = await readJsonFile(path.join(SRC, 'config.json'));
    const extra = ['n_inner', 'rotary_dim', 'num_key_value_heads', 'parallel_residual', 'torch_dtype', 'rms_norm_eps'];
    const r = rng(20261128);
    const problems: string[] = [];
    const outcome: Record<string, number> = {};
    const before = tf.memory().numTensors;
    for (let i = 0; i < 400; i++) {
      const cfg = structuredClone(cfg0);
      const what = Array.from({ length: 1 + r.int(3) }, () => mutateObject(r, cfg, extra)).join(', ');
      await writeJsonFile(path.join(dir, 'config.json'), cfg);
      try {
        const m = await loadModel(dir);
        try {
          const lg = await m.forward([[0, 1, 2, 3]]);
          const ok = lg.shape.join(',') === `1,4,${m.cfg.d_vocab}` && Array.from(await lg.data()).every(Number.isFinite);
          lg.dispose();
          if (!ok) problems.push(`#${i} (${what}): loaded but logits are not finite [1,4,V]`);
          outcome.loaded = (outcome.loaded ?? 0) + 1;
        } catch (e) {
          // a config the loader accepted must run; a typed refusal at run time still counts as typed
          if (!(e instanceof TflensError)) problems.push(`#${i} (${what}): forward threw untyped ${(e as Error).name}: ${(e as Error).message}`);
          outcome[`run:${(e as Error).name}`] = (outcome[`run:${(e as Error).name}`] ?? 0) + 1;
        } finally {
          m.dispose();
        }
      } catch (e) {
        if (!(e instanceof TflensError)) problems.push(`#${i} (${what}): untyped ${(e as Error).name}: ${(e as Error).message}`);
        else if (!/config\.json|model\.safetensors/.test(e.message)) problems.push(`#${i} (${what}): message names neither file: ${e.message}`);
        outcome[(e as Error).name] = (outcome[(e as Error).name] ?? 0) + 1;
      }
      if (tf.memory().numTensors !== before) {
        problems.push(`#${i} (${what}): ${tf.memory().numTensors - before} tensors left`);
        break;
      }
    }
    console.log(`      config mutations: 400, outcomes ${JSON.stringify(outcome)}`);
    assert.deepEqual(problems, []);
    assert.ok((outcome.loaded ?? 0) > 20 && (outcome.ConfigError ?? 0) > 50, 'both outcomes occur');
  });

  it('1,000 tokenizer.json mutations: a tokenizer whose ids are non-negative integers, or a FormatError naming tokenizer.json', () => {
    const base = tokenizerJson();
    const r = rng(7);
    const problems: string[] = [];
    const outcome: Record<string, number> = {};
    for (let i = 0; i < 1000; i++) {
      const j = structuredClone(base) as Record<string, any>;
      const what: string[] = [];
      for (let k = 0; k < 1 + r.int(2); k++) {
        // favour the parts that matter (model, vocab, added tokens) over the long vocab list
        const pool = slots(j).filter(([c]) => c !== j.model?.vocab || r.next() < 0.05);
        const [c, key] = r.choice(pool);
        const v = r.choice(WEIRD)(r, c[key]);
        if (v === undefined) Array.isArray(c) ? c.splice(key as number, 1) : delete c[key];
        else c[key] = v;
        what.push(`${String(key)}=${JSON.stringify(v)}`);
      }
      try {
        const tk = new Tokenizer(j, {}, 'case/tokenizer.json');
        for (const text of ['w5 w6 w7', 'zz w2', '<bos> w96']) {
          const ids = tk.encode(text);
          if (!ids.every((x) => Number.isInteger(x) && x >= 0)) problems.push(`#${i} (${what}): encode(${text}) gave ${JSON.stringify(ids)}`);
        }
        outcome.built = (outcome.built ?? 0) + 1;
      } catch (e) {
        if (!(e instanceof TflensError)) problems.push(`#${i} (${what.join(', ')}): untyped ${(e as Error).name}: ${(e as Error).message}`);
        else if (!e.message.startsWith('case/tokenizer.json')) problems.push(`#${i} (${what}): message does not name the file: ${e.message}`);
        outcome[(e as Error).name] = (outcome[(e as Error).name] ?? 0) + 1;
      }
    }
    console.log(`      tokenizer mutations: 1000, outcomes ${JSON.stringify(outcome)}`);
    assert.deepEqual(problems.slice(0, 20), []);
    assert.ok((outcome.built ?? 0) > 100 && (outcome.FormatError ?? 0) > 100, 'both outcomes occur');
  });
});
