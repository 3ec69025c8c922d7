/**
 * loadModel: a local folder, the HF cache, or the hub -> HookedTransformer in the canonical layout.
 * saveModel: a HookedTransformer -> a genuine HF checkpoint folder (config.json, model.safetensors, tokenizer.json).
 * randomModel: a seeded random-init model from an HF config (tests, benchmarks, training).
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { FormatError, ValueError } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readJsonFile } from '../io/json.js';
import { resolveModelPath, type ResolveOptions } from '../io/hub.js';
import { pathExists } from '../io/files.js';
import { describeCheckpoint, readCheckpointTensors, writeSafetensors } from '../io/safetensors.js';
import { canonicalParams, type ModelConfig } from './config.js';
import { FAMILIES, familyFor, normalizeConfig, WeightSource } from './families/index.js';
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
  const hf = await readCheckpointTensors(dir);
  const where = await describeCheckpoint(dir);
  try {
    if (opts.checkFinite ?? true) {
      for (const [name, t] of Object.entries(hf)) {
        if (t.dtype !== 'float32') continue;
        // before any op uses them the tensors hold the file's values on the host: dataSync never reads the device
        const v = t.dataSync();
        let ok = true;
        for (let i = 0; i < v.length && ok; i++) ok = Number.isFinite(v[i]);
        if (!ok) {
          throw new ValueError(`${where}: ${name}`, 'weights hold NaN or infinite values');
        }
      }
    }
    const family = familyFor(cfg.architecture, cfgFile);
    const src = new WeightSource(hf, where, family.prefixes);
    const params = tf.tidy(() => {
      const p = family.toCanonical(src, cfg);
      return p as unknown as tf.TensorContainer;
    }) as unknown as Record<string, tf.Tensor>;
    try {
      await checkAllTensorsUsed(src, cfg, cfgFile, opts.allowExtraTensors ?? 'known', family.extraTensors ?? []);
    } catch (e) {
      tf.dispose(Object.values(params));
      throw e;
    }
    return new HookedTransformer(cfg, params, tokenizer, pathOrId);
  } finally {
    tf.dispose(Object.values(hf));
  }
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

/** Write a genuine HF checkpoint folder (config.json, model.safetensors, tokenizer.json when present). */
export async function saveModel(model: HookedTransformer, dir: string, extraConfig: Record<string, unknown> = {}): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  const fam = familyFor(model.cfg.architecture, 'model.cfg');
  const sd = tf.tidy(() => fam.fromCanonical(model.params, model.cfg) as unknown as tf.TensorContainer) as unknown as Record<string, tf.Tensor>;
  try {
    await writeSafetensors(path.join(dir, 'model.safetensors'), sd, { format: 'pt' });
  } finally {
    tf.dispose(Object.values(sd));
  }
  const config = { ...model.cfg.hf, architectures: [fam.hfClass], ...extraConfig };
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
 */
export function randomModel(
  hfConfig: Record<string, unknown>,
  opts: { seed?: number; std?: number; randomNorms?: boolean; tokenizer?: Tokenizer | null; name?: string } = {},
): HookedTransformer {
  const cfg = normalizeConfig(hfConfig, 'config');
  const seed = opts.seed ?? 0;
  const std = opts.std ?? 0.02;
  let k = 0;
  // tfjs treats seed 0 as "unseeded": offset so every tensor gets a non-zero seed
  const rnd = (shape: number[], s = std) => tf.randomNormal(shape, 0, s, 'float32', seed * 7919 + 1 + k++);
  const p: Record<string, tf.Tensor> = {};
  for (const spec of canonicalParams(cfg)) {
    const { name, shape } = spec;
    if (name === 'unembed.W_U' && cfg.tie_word_embeddings) p[name] = tf.transpose(p['embed.W_E']);
    else if (cfg.shared_norm && /\.ln2\.[wb]$/.test(name)) p[name] = p[name.replace('.ln2.', '.ln1.')].clone();
    else if (spec.role === 'norm_w') p[name] = opts.randomNorms ? tf.add(1, rnd(shape, 0.2)) : tf.ones(shape);
    else if (spec.role === 'norm_b') p[name] = opts.randomNorms ? rnd(shape, 0.2) : tf.zeros(shape);
    else if (spec.role === 'bias') p[name] = spec.real && opts.randomNorms ? rnd(shape, 0.1) : tf.zeros(shape);
    else p[name] = rnd(shape);
  }
  return new HookedTransformer(cfg, p, opts.tokenizer ?? null, opts.name ?? `random-${cfg.architecture}`);
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

