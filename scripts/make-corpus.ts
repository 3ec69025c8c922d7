/**
 * Writes the malformed-input corpus under test/corpus/ (safetensors/, config/, tokens/).
 * Run: npx tsx scripts/make-corpus.ts
 * The files are committed; test/fuzz.test.ts holds, per file, the error class and the message
 * regex a reader must produce. Bytes are built by hand here (no tflens writer), so the corpus
 * does not depend on the code it tests.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'corpus');

/** 8-byte LE length + header bytes + data bytes; `lengthOverride` writes another length. */
function st(header: string | Uint8Array, data: Uint8Array | number = 0, lengthOverride?: bigint): Uint8Array {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, lengthOverride ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

const f32 = (...v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
const W = '"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}';
const B = '"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}';
const good = st(`{${W},${B}}`, f32(1, 2, 3, 4, 5, 6));

export const SAFETENSORS_CASES: Record<string, { bytes: Uint8Array; what: string }> = {
  'empty-file': { bytes: new Uint8Array(0), what: 'zero bytes' },
  'short-prefix': { bytes: new Uint8Array([24, 0, 0, 0, 0]), what: 'file shorter than the 8-byte length prefix' },
  'header-length-zero': { bytes: st('', 8), what: 'header length 0' },
  'header-length-beyond-file': { bytes: st(`{${W}}`, f32(1, 2, 3, 4), 1000n), what: 'header length 1000 in a 120-byte file' },
  'header-length-huge': { bytes: st(`{${W}}`, f32(1, 2, 3, 4), 1n << 40n), what: 'header length 2^40' },
  'header-length-over-cap': { bytes: st(`{${W}}`, f32(1, 2, 3, 4), 100_000_001n), what: 'header length just over the 100 MB cap' },
  'truncated-data': { bytes: good.subarray(0, good.length - 5), what: 'valid header, data section cut short' },
  'truncated-header': { bytes: good.subarray(0, 40), what: 'file cut inside the header' },
  'not-json': { bytes: st('{"w": oops}', 16), what: 'header is not JSON' },
  'not-json-text': { bytes: st('hello world!', 16), what: 'header is plain text' },
  'header-not-object': { bytes: st('[1,2,3]', 16), what: 'header is a JSON array' },
  'header-not-utf8': { bytes: st(new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), what: 'header bytes are not UTF-8' },
  'overlapping-offsets': {
    bytes: st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', 12),
    what: 'two tensors share bytes 4..8',
  },
  'offsets-out-of-range': { bytes: st('{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}', 16), what: 'end offset 24 in a 16-byte data section' },
  'offsets-shape-mismatch': { bytes: st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8), what: 'shape [3] x F32 needs 12 bytes, offsets span 8' },
  'offsets-dtype-mismatch': { bytes: st('{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}}', 16), what: 'shape [4] x F16 needs 8 bytes, offsets span 16' },
  'offsets-begin-after-end': { bytes: st('{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}', 8), what: 'data_offsets [8, 4]' },
  'offsets-negative': { bytes: st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}', 8), what: 'negative offset' },
  'offsets-three-numbers': { bytes: st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}', 8), what: 'data_offsets with 3 entries' },
  'offsets-float': { bytes: st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}', 8), what: 'fractional offset' },
  'unknown-dtype': { bytes: st('{"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}', 8), what: 'dtype Q4_K' },
  'lowercase-dtype': { bytes: st('{"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}', 8), what: 'dtype "f32" (case matters)' },
  'dtype-not-string': { bytes: st('{"a":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}', 8), what: 'dtype is a number' },
  'negative-shape': { bytes: st('{"a":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}}', 8), what: 'shape [-1, 2]' },
  'float-shape': { bytes: st('{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}}', 8), what: 'shape [1.5]' },
  'shape-not-array': { bytes: st('{"a":{"dtype":"F32","shape":"2x2","data_offsets":[0,16]}}', 16), what: 'shape is a string' },
  'shape-overflow': { bytes: st('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', 8), what: 'shape product beyond 2^53' },
  'missing-data-offsets': { bytes: st('{"a":{"dtype":"F32","shape":[2]}}', 8), what: 'no data_offsets' },
  'missing-dtype': { bytes: st('{"a":{"shape":[2],"data_offsets":[0,8]}}', 8), what: 'no dtype' },
  'missing-shape': { bytes: st('{"a":{"dtype":"F32","data_offsets":[0,8]}}', 8), what: 'no shape' },
  'entry-not-object': { bytes: st('{"a":[0,8]}', 8), what: 'tensor entry is an array' },
  'duplicate-tensor': { bytes: st(`{${W},${W.replace('[0,16]', '[8,24]')}}`, 24), what: 'tensor "w" listed twice' },
  'metadata-not-strings': { bytes: st(`{"__metadata__":{"n":3},${W}}`, 16), what: '__metadata__ value is a number' },
  'metadata-not-object': { bytes: st(`{"__metadata__":"pt",${W}}`, 16), what: '__metadata__ is a string' },
  'gap-between-tensors': {
    bytes: st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}}', 16),
    what: 'bytes 8..12 of the data section belong to no tensor',
  },
  'data-not-at-zero': { bytes: st('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), what: 'the only tensor starts at data byte 4' },
  'trailing-bytes': { bytes: st(`{${W},${B}}`, Uint8Array.from([...f32(1, 2, 3, 4, 5, 6), 0, 0, 0, 0])), what: '4 bytes after the last tensor' },
  'polyglot-reference': {
    bytes: new Uint8Array(
      Buffer.concat([
        Buffer.from('<\0\0\0\0\0\0\0{"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}', 'latin1'),
        Buffer.alloc(16),
        Buffer.from('extra_bogus_data_for_polyglot_file', 'latin1'),
      ]),
    ),
    what: "the reference library's polyglot-file test bytes (text appended after the data)",
  },
  'zero-size-off-chain': {
    bytes: st('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"z":{"dtype":"F32","shape":[0],"data_offsets":[12,12]}}', 12),
    what: 'a zero-sized tensor placed after a 4-byte gap (the last 4 bytes belong to no tensor)',
  },
};

export const CONFIG_CASES: Record<string, { json: string; field: string; what: string; error: string }> = {
  'gpt2-missing-n_layer': {
    json: JSON.stringify({ model_type: 'gpt2', n_embd: 8, n_head: 2, vocab_size: 16, n_positions: 32 }),
    field: 'n_layer',
    what: 'GPT-2 config without n_layer',
    error: 'ConfigError',
  },
  'gpt2-n_head-string': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 8, n_head: '2', vocab_size: 16, n_positions: 32 }),
    field: 'n_head',
    what: 'n_head is the string "2"',
    error: 'ConfigError',
  },
  'gpt2-n_embd-float': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 8.5, n_head: 2, vocab_size: 16, n_positions: 32 }),
    field: 'n_embd',
    what: 'n_embd is 8.5',
    error: 'ConfigError',
  },
  'gpt2-vocab-negative': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 8, n_head: 2, vocab_size: -16, n_positions: 32 }),
    field: 'vocab_size',
    what: 'vocab_size is negative',
    error: 'ConfigError',
  },
  'gpt2-n_embd-not-divisible': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 10, n_head: 3, vocab_size: 16, n_positions: 32 }),
    field: 'n_head',
    what: 'n_embd 10 is not a multiple of n_head 3 (d_head would be 3.33)',
    error: 'ConfigError',
  },
  'gpt2-bad-activation': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 16, n_positions: 32, activation_function: 'swiglu9' }),
    field: 'activation_function',
    what: 'unknown activation function',
    error: 'ConfigError',
  },
  'gpt2-eps-string': {
    json: JSON.stringify({ model_type: 'gpt2', n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 16, n_positions: 32, layer_norm_epsilon: '1e-5' }),
    field: 'layer_norm_epsilon',
    what: 'layer_norm_epsilon is a string',
    error: 'ConfigError',
  },
  'unknown-architecture': {
    json: JSON.stringify({ model_type: 'mamba', n_layer: 1, hidden_size: 8, vocab_size: 16 }),
    field: 'model_type',
    what: 'model_type "mamba" is not implemented',
    error: 'UnsupportedModelError',
  },
  'missing-model_type': {
    json: JSON.stringify({ n_layer: 1, n_embd: 8, n_head: 2, vocab_size: 16 }),
    field: 'model_type',
    what: 'no model_type at all',
    error: 'ConfigError',
  },
  'not-an-object': { json: '[1, 2, 3]', field: 'config', what: 'config.json is an array', error: 'ConfigError' },
  'llama-kv-heads-not-divisor': {
    json: JSON.stringify({
      model_type: 'llama',
      num_hidden_layers: 1,
      hidden_size: 8,
      num_attention_heads: 4,
      num_key_value_heads: 3,
      intermediate_size: 16,
      vocab_size: 16,
    }),
    field: 'num_key_value_heads',
    what: '4 attention heads cannot share 3 KV heads',
    error: 'ConfigError',
  },
  'llama-missing-intermediate_size': {
    json: JSON.stringify({ model_type: 'llama', num_hidden_layers: 1, hidden_size: 8, num_attention_heads: 2, vocab_size: 16 }),
    field: 'intermediate_size',
    what: 'Llama config without intermediate_size',
    error: 'ConfigError',
  },
  'llama-heads-not-divisor': {
    json: JSON.stringify({ model_type: 'llama', num_hidden_layers: 1, hidden_size: 10, num_attention_heads: 4, intermediate_size: 16, vocab_size: 16 }),
    field: 'num_attention_heads',
    what: 'hidden_size 10 is not a multiple of 4 heads (and no head_dim given)',
    error: 'ConfigError',
  },
  'llama-layers-zero': {
    json: JSON.stringify({ model_type: 'llama', num_hidden_layers: 0, hidden_size: 8, num_attention_heads: 2, intermediate_size: 16, vocab_size: 16 }),
    field: 'num_hidden_layers',
    what: 'zero layers',
    error: 'ConfigError',
  },
};

export const TOKEN_CASES: Record<string, { json: string; what: string; error: string }> = {
  ragged: { json: '{"input_ids": [[1, 2, 3], [4, 5]]}', what: 'rows of different lengths', error: 'ShapeError' },
  'negative-id': { json: '{"input_ids": [[1, 2, -3]]}', what: 'a negative id', error: 'ValueError' },
  'non-integer': { json: '{"input_ids": [[1, 2.5]]}', what: 'a fractional id', error: 'ValueError' },
  'id-too-large': { json: '{"input_ids": [[0, 50257]]}', what: 'id 50257 with a 50257-token vocabulary', error: 'ValueError' },
  'string-id': { json: '{"input_ids": [["7", 8]]}', what: 'an id written as a string', error: 'ValueError' },
  'infinite-id': { json: '{"input_ids": [[1e999]]}', what: 'an id that parses to Infinity', error: 'ValueError' },
  'row-not-array': { json: '{"input_ids": [[1, 2], 3]}', what: 'the second row is a number', error: 'ShapeError or FormatError' },
  'empty-row': { json: '{"input_ids": [[]]}', what: 'a row with no tokens', error: 'ShapeError' },
  'no-rows': { json: '{"input_ids": []}', what: 'no rows at all', error: 'ShapeError' },
  'mask-shape': { json: '{"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1]]}', what: 'attention_mask row shorter than its input_ids row', error: 'ShapeError' },
  'mask-not-binary': { json: '{"input_ids": [[1, 2]], "attention_mask": [[1, 2]]}', what: 'attention_mask holds a 2', error: 'ValueError' },
  'scalar': { json: '7', what: 'a number instead of {"input_ids": ...}', error: 'FormatError' },
  'not-json': { json: '{"input_ids": [[1, 2,', what: 'truncated JSON', error: 'FormatError' },
  'duplicate-input_ids': { json: '{"input_ids": [[1, 2]], "input_ids": [[3, 4]]}', what: 'input_ids written twice (JSON.parse would keep the second)', error: 'FormatError' },
};

async function main(): Promise<void> {
  const stDir = path.join(root, 'safetensors');
  await fsp.mkdir(stDir, { recursive: true });
  const stReadme = ['# Malformed safetensors files (generated by scripts/make-corpus.ts)', '', 'Each must fail with a FormatError naming the file and the problem (regexes in test/fuzz.test.ts).', ''];
  for (const [name, c] of Object.entries(SAFETENSORS_CASES)) {
    await fsp.writeFile(path.join(stDir, `${name}.safetensors`), c.bytes);
    stReadme.push(`- ${name}.safetensors: ${c.what}`);
  }
  await fsp.writeFile(path.join(stDir, 'README.md'), stReadme.join('\n') + '\n');

  const cfgDir = path.join(root, 'config');
  await fsp.mkdir(cfgDir, { recursive: true });
  const cfgReadme = [
    '# Malformed config.json files (generated by scripts/make-corpus.ts)',
    '',
    'Checked by the model loader (normalizeConfig in src/model). Each line: file: what is wrong -> error class, field the error must name.',
    '',
  ];
  for (const [name, c] of Object.entries(CONFIG_CASES)) {
    await fsp.writeFile(path.join(cfgDir, `${name}.json`), c.json + '\n');
    cfgReadme.push(`- ${name}.json: ${c.what} -> ${c.error} naming "${c.field}"`);
  }
  await fsp.writeFile(path.join(cfgDir, 'README.md'), cfgReadme.join('\n') + '\n');

  const tokDir = path.join(root, 'tokens');
  await fsp.mkdir(tokDir, { recursive: true });
  const tokReadme = [
    '# Malformed token files (generated by scripts/make-corpus.ts)',
    '',
    'JSON token files in the tokenizer-output layout {"input_ids": [[...]], "attention_mask": [[...]]} (the CLI\'s --tokens format; readTokenFile in src/io/tokens.ts also takes a bare [[...]]), checked with a vocabulary of 50257. Each line: file: what is wrong -> error class.',
    '',
  ];
  for (const [name, c] of Object.entries(TOKEN_CASES)) {
    await fsp.writeFile(path.join(tokDir, `${name}.json`), c.json + '\n');
    tokReadme.push(`- ${name}.json: ${c.what} -> ${c.error}`);
  }
  await fsp.writeFile(path.join(tokDir, 'README.md'), tokReadme.join('\n') + '\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await main();
}
