/**
 * loadModel: a local folder, the HF cache, or the hub -> HookedTransformer in the canonical layout.
 * saveModel: a HookedTransformer -> a genuine HF checkpoint folder (config.json, model.safetensors, tokenizer.json).
 * randomModel: a seeded random-init model from an HF config (tests, benchmarks, training).
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ConfigError, FormatError, ValueError, expectedFound } from '../errors.js';
import { packHalf, packHalfBytes, unpackHalf, type PackedHalf } from '../backend/webgpu/half.js';
import type { HalfFormat } from '../backend/webgpu/wgsl.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { resolveModelPath, type ResolveOptions } from '../io/hub.js';
import { pathExists } from '../io/files.js';
import {
  arrayToTensor, checkpointEntries, describeCheckpoint, openCheckpointReader, writeSafetensors, type CheckpointEntry, type CheckpointReader,
} from '../io/safetensors.js';
import { canonicalParams, type ModelConfig, type ParamSpec } from './config.js';
import { FAMILIES, familyFor, normalizeConfig, WeightSource } from './families/index.js';
import type { StateDict } from './families/common.js';
import { HookedTransformer } from './hooked.js';
import { Tokenizer } from './tokenizer.js';

export interface LoadOptions extends ResolveOptions {
  /** Reject checkpoints whose weights hold NaN or infinities (default true). */
  checkFinite?: boolean;
  /**
   * Checkpoint tensors the model never reads. 'known' (default): only the buffers HF transformers
   * itself drops when loading are allowed (KNOWN_EXTRA_TENSORS), plus an output layer identical to
   * the embedding when tie_word_embeddings is true; any other unread tensor is a FormatError naming
   * it. 'none': every unread tensor is an error. 'all': unread tensors are ignored.
   */
  allowExtraTensors?: 'known' | 'none' | 'all';
  /** false: read the config and tokenizer only, no weights (see HookedTransformer's constructor); default true. */
  weights?: boolean;
  /**
   * F16 / BF16 checkpoints. 'auto' (default): on the webgpu backend the weight matrices stay 16-bit
   * on the GPU (packed words the fused kernels decode in registers, float32 accumulation; norms and
   * biases float32), elsewhere they are upcast to float32 at load (wasm and cpu have no half-precision
   * kernels). 'float32': always upcast. A checkpoint whose matrices mix dtypes is upcast.
   */
  halfWeights?: 'auto' | 'float32';
}

/**
 * Checkpoint entries HF transformers ignores on load (its `_keys_to_ignore_on_load_unexpected`
 * patterns and the rotary rule of modeling_utils): causal-mask buffers that old GPT-2 and GPT-NeoX
 * files saved with the weights, and rotary frequencies, which are recomputed from the config.
 */
export const KNOWN_EXTRA_TENSORS: readonly RegExp[] = [
  /(^|\.)h\.\d+\.attn\.(bias|masked_bias)$/, // GPT-2
  /(^|\.)layers\.\d+\.attention\.(bias|masked_bias)$/, // GPT-NeoX / Pythia
  /(^|\.)rotary_emb\.inv_freq$/, // LLaMA-style and NeoX rotary buffers
];

/** Load a model from a folder path or a hub id (see resolveModelPath for the cache and HF_ENDPOINT). */
export async function loadModel(pathOrId: string, opts: LoadOptions = {}): Promise<HookedTransformer> {
  const dir = await resolveModelPath(pathOrId, opts);
  const cfgFile = path.join(dir, 'config.json');
  const cfg = normalizeConfig(await readJsonFile(cfgFile, 'config'), cfgFile);
  let tokenizer: Tokenizer | null = null;
  const tkFile = path.join(dir, 'tokenizer.json');
  if (await pathExists(tkFile)) {
    const tkCfgFile = path.join(dir, 'tokenizer_config.json');
    const tkCfg = (await pathExists(tkCfgFile)) ? ((await readJsonFile(tkCfgFile, 'tokenizer config')) as Record<string, unknown>) : {};
    tokenizer = new Tokenizer((await readJsonFile(tkFile, 'tokenizer')) as Record<string, unknown>, tkCfg, tkFile);
  }
  if (opts.weights === false) return new HookedTransformer(cfg, {}, tokenizer, pathOrId, { weights: false });
  const entries = await checkpointEntries(dir);
  const where = await describeCheckpoint(dir);
  const format = (opts.halfWeights ?? 'auto') === 'auto' && tf.getBackend() === 'webgpu' ? halfFormatOf(entries) : null;
  const reader = openCheckpointReader(entries);
  const lazy = lazyStateDict(reader, where, format, opts.checkFinite ?? true);
  const half: Record<string, PackedHalf> = {};
  let params: StateDict = {};
  const family = familyFor(cfg.architecture, cfgFile);
  const src = new WeightSource(lazy.sd, where, family.prefixes);
  try {
    if (format) src.finish = packer(cfg, format, half);
    params = tf.tidy(() => family.toCanonical(src, cfg) as unknown as tf.TensorContainer) as unknown as StateDict;
    // what no layer finished (embeddings, final norm, unembedding)
    if (src.finish) for (const k of Object.keys(params)) if (!src.finish(k, params[k])) delete params[k];
    await checkAllTensorsUsed(src, cfg, cfgFile, opts.allowExtraTensors ?? 'known', family.extraTensors ?? []);
    return new HookedTransformer(cfg, params, tokenizer, pathOrId, { halfParams: half });
  } catch (e) {
    tf.dispose([...Object.values(params), ...src.kept, ...Object.values(half).map((h) => h.words)].filter((t) => !t.isDisposed));
    throw e;
  } finally {
    lazy.dispose();
    reader.close();
  }
}

/** The half format of a checkpoint whose floating matrices (rank >= 2) are all F16 or all BF16, else null. */
function halfFormatOf(entries: ReadonlyMap<string, CheckpointEntry>): HalfFormat | null {
  const kinds = new Set<string>();
  for (const { entry } of entries.values()) {
    if (entry.shape.length >= 2 && ['F32', 'F16', 'BF16', 'F64', 'F8_E4M3', 'F8_E5M2'].includes(entry.dtype)) kinds.add(entry.dtype);
  }
  if (kinds.size !== 1) return null;
  return kinds.has('F16') ? 'f16' : kinds.has('BF16') ? 'bf16' : null;
}

/**
 * WeightSource.finish for a half-precision load: every canonical weight matrix (role weight or
 * embed) is rounded back to its checkpoint format and packed on the GPU (exact: the float32 values
 * came from that format), the float32 copy freed; norms and biases stay float32.
 */
function packer(cfg: ModelConfig, format: HalfFormat, half: Record<string, PackedHalf>): (name: string, t: tf.Tensor) => tf.Tensor | null {
  const matrices = new Set(canonicalParams(cfg).filter((p) => p.role === 'weight' || p.role === 'embed').map((p) => p.name));
  return (name, t) => {
    if (!matrices.has(name) || t.dtype !== 'float32') return t;
    const p = packHalf(t, format);
    half[name] = { ...p, words: tf.keep(p.words) };
    t.dispose();
    return null;
  };
}

/**
 * The checkpoint as a state dict whose tensors are read when a family first asks for them (one
 * synchronous read of that tensor's bytes; a tensor freed by a converter's layer scope is read again
 * if asked again). With a half `format` on WebGPU, F16 / BF16 bytes go to the GPU as packed words and
 * are decoded there (no float32 copy on the host); otherwise they are decoded on the host. Non-finite
 * weights are refused when `checkFinite`.
 */
function lazyStateDict(reader: CheckpointReader, where: string, format: HalfFormat | null, checkFinite: boolean): { sd: StateDict; dispose(): void } {
  const live = new Map<string, tf.Tensor>();
  const read = (name: string): tf.Tensor => {
    const { entry } = reader.entries.get(name)!;
    const gpuHalf = format !== null && (entry.dtype === 'F16' || entry.dtype === 'BF16') && entry.shape.length >= 1 && entry.shape.every((d) => d > 0);
    if (!gpuHalf) {
      const a = reader.array(name);
      if (checkFinite && a.data instanceof Float32Array && !a.data.every(Number.isFinite)) throw new ValueError(`${where}: ${name}`, 'weights hold NaN or infinite values');
      return arrayToTensor(a);
    }
    const bytes = reader.bytes(name);
    if (checkFinite && !halfBitsFinite(bytes, entry.dtype as 'F16' | 'BF16')) throw new ValueError(`${where}: ${name}`, 'weights hold NaN or infinite values');
    const cols = entry.shape[entry.shape.length - 1];
    const words = tf.tensor(packHalfBytes(bytes, entry.shape, `${where}: ${name}`), [...entry.shape.slice(0, -1), Math.ceil(cols / 2)], 'int32');
    const f = unpackHalf({ words, format: entry.dtype === 'F16' ? 'f16' : 'bf16', shape: entry.shape });
    words.dispose();
    return f;
  };
  const sd: StateDict = {};
  for (const name of reader.entries.keys()) {
    Object.defineProperty(sd, name, {
      enumerable: true,
      get: () => {
        let t = live.get(name);
        if (!t || t.isDisposed) live.set(name, (t = read(name)));
        return t;
      },
    });
  }
  return { sd, dispose: () => tf.dispose([...live.values()].filter((t) => !t.isDisposed)) };
}

/** Whether no 16-bit value is Infinity or NaN (all exponent bits set). */
function halfBitsFinite(bytes: Uint8Array, dtype: 'F16' | 'BF16'): boolean {
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const exp = dtype === 'F16' ? 0x7c00 : 0x7f80;
  for (let i = 0; i < h.length; i++) if ((h[i] & exp) === exp) return false;
  return true;
}

async function sameValues(a: tf.Tensor, b: tf.Tensor): Promise<boolean> {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return false;
  const [x, y] = await Promise.all([a.data(), b.data()]);
  for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) return false;
  return true;
}

/**
 * With tie_word_embeddings the output layer is the embedding: a checkpoint may still store it
 * (lm_head.weight, embed_out.weight). Such an unread [d_vocab, d_model] tensor is accounted for when
 * it equals a tensor the family read (the embedding); a different one is an error, since the file
 * then holds a head the config tells us to ignore.
 */
async function isTiedCopy(src: WeightSource, name: string, unread: ReadonlySet<string>, cfg: ModelConfig, cfgFile: string): Promise<boolean> {
  const t = src.sd[name];
  if (!cfg.tie_word_embeddings || t.shape.join() !== `${cfg.d_vocab},${cfg.d_model}`) return false;
  for (const k of Object.keys(src.sd)) if (!unread.has(k) && (await sameValues(t, src.sd[k]))) return true;
  throw new FormatError(
    `${src.where}: ${name}`,
    `${cfgFile} sets tie_word_embeddings, so the output layer is the embedding, but the checkpoint stores a different ${name}; set tie_word_embeddings to false to use it`,
  );
}

/** Every checkpoint tensor must be read by the family or accounted for (see LoadOptions.allowExtraTensors). */
async function checkAllTensorsUsed(src: WeightSource, cfg: ModelConfig, cfgFile: string, mode: 'known' | 'none' | 'all', familyExtra: readonly RegExp[]): Promise<void> {
  if (mode === 'all') return;
  const extra: string[] = [];
  const unread = new Set(src.unread());
  for (const name of unread) {
    if (mode === 'known' && [...KNOWN_EXTRA_TENSORS, ...familyExtra].some((re) => re.test(name))) continue;
    if (await isTiedCopy(src, name, unread, cfg, cfgFile)) continue;
    extra.push(name);
  }
  if (extra.length === 0) return;
  const layers = extra.map((n) => /(?:^|\.)(?:h|layers|blocks)\.(\d+)\./.exec(n)).filter((m) => m && Number(m[1]) >= cfg.n_layers);
  const hint = layers.length
    ? `: the checkpoint has layers beyond the ${cfg.n_layers} that ${cfgFile} declares`
    : `: ${cfgFile} does not describe these weights`;
  const shown = extra.slice(0, 6).join(', ') + (extra.length > 6 ? `, ... (${extra.length} in all)` : '');
  throw new FormatError(
    src.where,
    `${extra.length} tensor(s) are not used by the ${cfg.architecture} model${hint} (${shown}); loading would silently drop them (pass allowExtraTensors: 'all' to do so anyway)`,
  );
}

/**
 * Write a genuine HF checkpoint folder (config.json, model.safetensors, tokenizer.json when present).
 * `opts.dtype` stores the floating weights as F32 (default), F16 or BF16 (rounded to nearest even;
 * config.json then names it as torch_dtype). Half-precision weights of the model are decoded first.
 */
export async function saveModel(model: HookedTransformer, dir: string, extraConfig: Record<string, unknown> = {}, opts: { dtype?: 'F32' | 'F16' | 'BF16' } = {}): Promise<void> {
  const dtype = opts.dtype ?? 'F32';
  if (!['F32', 'F16', 'BF16'].includes(dtype)) throw new ValueError('saveModel dtype', expectedFound("'F32', 'F16' or 'BF16'", dtype));
  await fsp.mkdir(dir, { recursive: true });
  const fam = familyFor(model.cfg.architecture, 'model.cfg');
  const sd = tf.tidy(() => {
    const all: StateDict = { ...model.params };
    for (const k of Object.keys(model.halfParams)) all[k] = model.weight(k);
    return fam.fromCanonical(all, model.cfg) as unknown as tf.TensorContainer;
  }) as unknown as Record<string, tf.Tensor>;
  try {
    await writeSafetensors(path.join(dir, 'model.safetensors'), sd, { format: 'pt' }, { floatDtype: dtype });
  } finally {
    tf.dispose(Object.values(sd));
  }
  const stored = dtype === 'F32' ? {} : { torch_dtype: dtype === 'F16' ? 'float16' : 'bfloat16' };
  const config = { ...model.cfg.hf, architectures: [fam.hfClass], ...stored, ...extraConfig };
  await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (model.tokenizer) {
    await writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(model.tokenizer.json) + '\n');
    if (Object.keys(model.tokenizer.config).length) {
      await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(model.tokenizer.config, null, 2) + '\n');
    }
  }
}

/**
 * Seeded random initialisation of every canonical parameter the config implies (canonicalParams):
 * weights normal with std `std`; norms at 1 and biases at 0 unless `randomNorms` (then 1 + 0.2 randn
 * and 0.1 randn for the biases the family really has). Parallel blocks with one norm keep ln2 = ln1.
 *
 * `init: 'torch'` draws the scale PyTorch's own modules start from instead of one `std`: every
 * projection uniform in +-1/sqrt(fan_in) (nn.Linear's default; fan_in is d_model for W_Q/W_K/W_V/W_in/
 * W_U, n_heads * d_head for W_O, d_mlp for W_out) and the token and position embeddings standard normal
 * (nn.Embedding's default); biases stay 0. The recall binding recipe uses it (RECALL_BINDING, docs/zoo.md).
 */
export function randomModel(
  hfConfig: Record<string, unknown>,
  opts: { seed?: number; std?: number; init?: 'normal' | 'torch'; randomNorms?: boolean; tokenizer?: Tokenizer | null; name?: string } = {},
): HookedTransformer {
  const cfg = normalizeConfig(hfConfig, 'config');
  const seed = opts.seed ?? 0;
  const std = opts.std ?? 0.02;
  if (opts.init !== undefined && opts.init !== 'normal' && opts.init !== 'torch') {
    throw new ConfigError('randomModel: init', expectedFound("'normal' or 'torch'", JSON.stringify(opts.init)));
  }
  let k = 0;
  // tfjs treats seed 0 as "unseeded": offset so every tensor gets a non-zero seed
  const nextSeed = () => seed * 7919 + 1 + k++;
  const rnd = (shape: number[], s = std) => tf.randomNormal(shape, 0, s, 'float32', nextSeed());
  const torchInit = (spec: ParamSpec): tf.Tensor => {
    if (spec.role === 'embed') return rnd(spec.shape, 1);
    const bound = 1 / Math.sqrt(fanIn(spec));
    return tf.randomUniform(spec.shape, -bound, bound, 'float32', nextSeed());
  };
  const p: Record<string, tf.Tensor> = {};
  for (const spec of canonicalParams(cfg)) {
    const { name, shape } = spec;
    if (name === 'unembed.W_U' && cfg.tie_word_embeddings) p[name] = tf.transpose(p['embed.W_E']);
    else if (cfg.shared_norm && /\.ln2\.[wb]$/.test(name)) p[name] = p[name.replace('.ln2.', '.ln1.')].clone();
    else if (spec.role === 'norm_w') p[name] = opts.randomNorms ? tf.add(1, rnd(shape, 0.2)) : tf.ones(shape);
    else if (spec.role === 'norm_b') p[name] = opts.randomNorms ? rnd(shape, 0.2) : tf.zeros(shape);
    else if (spec.role === 'bias') p[name] = spec.real && opts.randomNorms ? rnd(shape, 0.1) : tf.zeros(shape);
    else p[name] = opts.init === 'torch' ? torchInit(spec) : rnd(shape);
  }
  return new HookedTransformer(cfg, p, opts.tokenizer ?? null, opts.name ?? `random-${cfg.architecture}`);
}

/** The input width of a canonical weight as PyTorch's Linear sees it (W_Q/K/V [heads, d, dh] and expert weights [E, in, out]: s[1]; W_O [H, dh, d]: H * dh; 2-D: s[0]). */
function fanIn(spec: ParamSpec): number {
  const s = spec.shape;
  if (s.length === 3) return /\.W_O$/.test(spec.name) ? s[0] * s[1] : s[1];
  return s[0];
}

export function supportedArchitectures(): string[] {
  return FAMILIES.flatMap((f) => f.modelTypes);
}

export function describeModel(m: HookedTransformer): Record<string, unknown> {
  const c: ModelConfig = m.cfg;
  return {
    name: m.name, architecture: c.architecture, hf_class: c.hfArchitecture, n_layers: c.n_layers, d_model: c.d_model,
    n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, d_head: c.d_head, d_mlp: c.d_mlp, d_vocab: c.d_vocab, n_ctx: c.n_ctx,
    normalization: c.normalization, positional: c.positional, act_fn: c.act_fn, parameters: m.parameterCount(),
    tokenizer: m.tokenizer ? 'tokenizer.json' : 'none',
  };
}

