/**
 * SAELens folder layout: cfg.json + sae_weights.safetensors with W_enc [d_in, d_sae],
 * b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in].
 *
 * cfg.json carries the flat fields every SAELens version reads (d_in, d_sae, dtype, device,
 * apply_b_dec_to_input, normalize_activations, reshape_activations, architecture, k for topk,
 * hook_name, hook_layer, hook_head_index, model_name, context_size, prepend_bos, dataset_path,
 * activation_fn_str, activation_fn_kwargs, finetuning_scaling_factor) plus a v6-style `metadata`
 * object with the model/hook fields. No sae_lens_version is written, so SAELens >= 6 converts it
 * through its pre-6 path, which builds its metadata from the flat fields and keeps the explicit
 * reshape_activations 'none'. A "tflens" object records the tflens variant and lambda (SAELens
 * drops unknown top-level keys). Reading accepts `metadata`, `meta` (early v6) or flat fields.
 * The paper variant is SAELens 'standard' with apply_b_dec_to_input = true and b_dec = the shared
 * pre-bias.
 */
import * as path from 'node:path';
import { promises as fsp } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, FormatError, ResolveError, UnsupportedModelError, ValueError, expectedFound } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { parseJsonStrict, isPlainObject } from '../io/json.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { SparseAutoencoder, type SAEArchitecture } from './models.js';

export const SAE_CFG_FILE = 'cfg.json';
export const SAE_WEIGHTS_FILE = 'sae_weights.safetensors';

export interface SAELensSaveConfig {
  /** Hook the SAE reads, e.g. "blocks.5.hook_resid_pre" or "blocks.3.attn.hook_z". */
  hookName: string;
  /** Default: the layer in hookName. */
  hookLayer?: number;
  hookHeadIndex?: number | null;
  modelName?: string;
  contextSize?: number;
  prependBos?: boolean;
  datasetPath?: string;
  /** Extra top-level cfg.json fields (must not collide with the written ones). */
  extra?: Record<string, unknown>;
}

export interface SAELensConfig {
  architecture: string;
  d_in: number;
  d_sae: number;
  dtype: string;
  device: string;
  apply_b_dec_to_input: boolean;
  normalize_activations: string;
  k?: number;
  hook_name: string | null;
  hook_layer: number | null;
  hook_head_index: number | null;
  model_name: string | null;
  context_size: number | null;
  prepend_bos: boolean | null;
  /** The whole parsed cfg.json. */
  raw: Record<string, unknown>;
}

function tflensToSAELens(sae: SparseAutoencoder): { architecture: 'standard' | 'topk'; activation_fn_str: string } {
  return sae.architecture === 'topk' ? { architecture: 'topk', activation_fn_str: 'topk' } : { architecture: 'standard', activation_fn_str: 'relu' };
}

/** Write an SAE as a SAELens folder (both files atomic; the weights first, then cfg.json). */
export async function saveSAELens(sae: SparseAutoencoder, dir: string, cfg: SAELensSaveConfig): Promise<{ cfgPath: string; weightsPath: string; cfg: Record<string, unknown> }> {
  if (sae.isDisposed) throw new ValueError('sae', 'this SAE has been disposed');
  if (typeof dir !== 'string' || dir.length === 0) throw new ValueError('dir', expectedFound('a folder path', dir));
  if (!cfg || typeof cfg.hookName !== 'string' || cfg.hookName.length === 0) {
    throw new ConfigError('cfg.hookName', expectedFound('the hook name the SAE reads (e.g. "blocks.5.hook_resid_pre")', cfg?.hookName));
  }
  const m = /^blocks\.(\d+)\./.exec(cfg.hookName);
  const hookLayer = cfg.hookLayer ?? (m ? Number(m[1]) : null);
  if (hookLayer !== null && !(Number.isInteger(hookLayer) && hookLayer >= 0)) {
    throw new ConfigError('cfg.hookLayer', expectedFound('a non-negative integer', hookLayer));
  }
  const { architecture, activation_fn_str } = tflensToSAELens(sae);
  const meta = {
    model_name: cfg.modelName ?? null,
    hook_name: cfg.hookName,
    hook_layer: hookLayer,
    hook_head_index: cfg.hookHeadIndex ?? null,
    prepend_bos: cfg.prependBos ?? true,
    context_size: cfg.contextSize ?? null,
    dataset_path: cfg.datasetPath ?? null,
  };
  const out: Record<string, unknown> = {
    architecture,
    d_in: sae.dIn,
    d_sae: sae.dSae,
    dtype: 'float32',
    device: 'cpu',
    apply_b_dec_to_input: sae.applyBDecToInput,
    normalize_activations: 'none',
    reshape_activations: 'none',
    ...(sae.k !== undefined ? { k: sae.k } : {}),
    metadata: meta,
    // pre-v6 flat fields
    model_name: meta.model_name,
    hook_name: meta.hook_name,
    hook_layer: meta.hook_layer,
    hook_head_index: meta.hook_head_index,
    context_size: meta.context_size,
    prepend_bos: meta.prepend_bos,
    dataset_path: meta.dataset_path,
    activation_fn_str,
    activation_fn_kwargs: sae.k !== undefined ? { k: sae.k } : {},
    finetuning_scaling_factor: false,
    sae_lens_training_version: null,
    tflens: { architecture: sae.architecture, lambda: sae.lambda, decoderNorm: sae.decoderNorm },
  };
  for (const [k, v] of Object.entries(cfg.extra ?? {})) {
    if (k in out) throw new ConfigError(`cfg.extra.${k}`, 'collides with a field tflens writes');
    out[k] = v;
  }
  const weightsPath = path.join(dir, SAE_WEIGHTS_FILE);
  const cfgPath = path.join(dir, SAE_CFG_FILE);
  await writeSafetensors(weightsPath, {
    W_enc: sae.params.W_enc,
    b_enc: sae.params.b_enc,
    W_dec: sae.params.W_dec,
    b_dec: sae.params.b_dec,
  });
  await writeFileAtomic(cfgPath, JSON.stringify(out, null, 2) + '\n');
  return { cfgPath, weightsPath, cfg: out };
}

function intField(raw: Record<string, unknown>, key: string, where: string, required: true): number;
function intField(raw: Record<string, unknown>, key: string, where: string, required: false): number | null;
function intField(raw: Record<string, unknown>, key: string, where: string, required: boolean): number | null {
  const v = raw[key];
  if (v === undefined || v === null) {
    if (required) throw new ConfigError(`${where}: ${key}`, expectedFound('a positive integer', 'missing'));
    return null;
  }
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0)) throw new ConfigError(`${where}: ${key}`, expectedFound('a non-negative integer', v));
  return v;
}

/**
 * Read a SAELens folder (written by tflens or by SAELens in Python; optional fields may be missing).
 * Supports 'standard' (ReLU) and 'topk'; other architectures and activation normalisation raise.
 */
export async function loadSAELens(dir: string): Promise<{ sae: SparseAutoencoder; cfg: SAELensConfig }> {
  const cfgPath = path.join(dir, SAE_CFG_FILE);
  const weightsPath = path.join(dir, SAE_WEIGHTS_FILE);
  let text: string;
  try {
    text = await fsp.readFile(cfgPath, 'utf8');
  } catch (e) {
    throw new ResolveError(cfgPath, `cannot read the SAE config: ${(e as Error).message}`);
  }
  const parsed = parseJsonStrict(text, cfgPath, 'SAE config');
  if (!isPlainObject(parsed)) throw new FormatError(cfgPath, expectedFound('a JSON object', typeof parsed));
  const raw = parsed as Record<string, unknown>;
  const meta = isPlainObject(raw.meta) ? (raw.meta as Record<string, unknown>) : isPlainObject(raw.metadata) ? (raw.metadata as Record<string, unknown>) : {};
  const dIn = intField(raw, 'd_in', cfgPath, true);
  const dSae = intField(raw, 'd_sae', cfgPath, true);
  const fnKwargs = isPlainObject(raw.activation_fn_kwargs) ? (raw.activation_fn_kwargs as Record<string, unknown>) : {};
  let arch = typeof raw.architecture === 'string' ? raw.architecture : undefined;
  if (arch === undefined) arch = raw.activation_fn_str === 'topk' ? 'topk' : 'standard';
  if (arch !== 'standard' && arch !== 'topk') {
    throw new UnsupportedModelError(`${cfgPath}: architecture`, expectedFound("'standard' or 'topk'", arch));
  }
  if (arch === 'standard' && raw.activation_fn_str !== undefined && raw.activation_fn_str !== null && raw.activation_fn_str !== 'relu') {
    throw new UnsupportedModelError(`${cfgPath}: activation_fn_str`, expectedFound("'relu' for a standard SAE", raw.activation_fn_str));
  }
  const norm = raw.normalize_activations ?? 'none';
  if (norm !== 'none' && norm !== null) {
    throw new ConfigError(`${cfgPath}: normalize_activations`, expectedFound("'none' (fold the normalisation into the weights first)", norm));
  }
  if (raw.finetuning_scaling_factor === true) {
    throw new UnsupportedModelError(`${cfgPath}: finetuning_scaling_factor`, expectedFound('false', true));
  }
  if (raw.reshape_activations !== undefined && raw.reshape_activations !== null && raw.reshape_activations !== 'none') {
    throw new UnsupportedModelError(`${cfgPath}: reshape_activations`, expectedFound("'none' (flatten hook_z inputs yourself)", raw.reshape_activations));
  }
  const applyB = raw.apply_b_dec_to_input === undefined || raw.apply_b_dec_to_input === null ? true : raw.apply_b_dec_to_input;
  if (typeof applyB !== 'boolean') throw new ConfigError(`${cfgPath}: apply_b_dec_to_input`, expectedFound('true or false', applyB));
  let k: number | undefined;
  if (arch === 'topk') {
    const kv = raw.k ?? fnKwargs.k;
    if (!(typeof kv === 'number' && Number.isInteger(kv) && kv > 0)) throw new ConfigError(`${cfgPath}: k`, expectedFound('a positive integer for a topk SAE', kv));
    k = kv;
  }
  const tfl = isPlainObject(raw.tflens) ? (raw.tflens as Record<string, unknown>) : {};
  let tflArch: SAEArchitecture = arch === 'topk' ? 'topk' : 'standard';
  if (tfl.architecture === 'paper' && arch === 'standard' && applyB) tflArch = 'paper';
  const decoderNorm = tflArch === 'paper' && tfl.decoderNorm === 'input' ? ('input' as const) : undefined;
  const lambda = typeof tfl.lambda === 'number' && Number.isFinite(tfl.lambda) && tfl.lambda >= 0 ? tfl.lambda : undefined;

  let tensors: Record<string, tf.Tensor>;
  try {
    await fsp.access(weightsPath);
  } catch (e) {
    throw new ResolveError(weightsPath, `cannot read the SAE weights: ${(e as Error).message}`);
  }
  tensors = await readSafetensors(weightsPath);
  try {
    for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec']) {
      if (!tensors[name]) throw new FormatError(`${weightsPath}: ${name}`, expectedFound('a tensor', 'missing'));
    }
    const sae = new SparseAutoencoder(
      { architecture: tflArch, dIn, dSae, k, lambda, applyBDecToInput: applyB, decoderNorm },
      { W_enc: tensors.W_enc, b_enc: tensors.b_enc, W_dec: tensors.W_dec, b_dec: tensors.b_dec },
    );
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    const pick = (key: string) => (meta[key] !== undefined ? meta[key] : raw[key]);
    const hl = pick('hook_layer');
    const hh = pick('hook_head_index');
    const cs = pick('context_size');
    const pb = pick('prepend_bos');
    return {
      sae,
      cfg: {
        architecture: arch,
        d_in: dIn,
        d_sae: dSae,
        dtype: str(raw.dtype) ?? 'float32',
        device: str(raw.device) ?? 'cpu',
        apply_b_dec_to_input: applyB,
        normalize_activations: 'none',
        ...(k !== undefined ? { k } : {}),
        hook_name: str(pick('hook_name')),
        hook_layer: typeof hl === 'number' ? hl : null,
        hook_head_index: typeof hh === 'number' ? hh : null,
        model_name: str(pick('model_name')),
        context_size: typeof cs === 'number' ? cs : null,
        prepend_bos: typeof pb === 'boolean' ? pb : null,
        raw,
      },
    };
  } catch (e) {
    // shape errors from the constructor name "weights.W_enc" etc.; add the file
    if (e instanceof Error && !(e as { where?: string }).where?.includes(weightsPath) && e.name === 'ShapeError') {
      throw new FormatError(weightsPath, `${e.message} (cfg.json: d_in=${dIn}, d_sae=${dSae})`);
    }
    throw e;
  } finally {
    Object.values(tensors).forEach((t) => t.dispose());
  }
}
