// SAELens folders (src/sae/saelens.ts) checked against a port of SAELens 6.18's own config handling
// and forward pass, written here from reading its source (sae_lens/loading/pretrained_sae_loaders.py:
// handle_config_defaulting, handle_pre_6_0_config, read_sae_components_from_disk; sae_lens/saes/sae.py:
// SAEConfig.from_dict, __post_init__, process_sae_in, the run-time normalisations; standard_sae.py,
// topk_sae.py, jumprelu_sae.py, gated_sae.py, batchtopk_sae.py: encode/decode and the inference
// conversion of batchtopk checkpoints). The port works on plain objects and number arrays, the way the
// Python code works on dicts and torch tensors; the loader under test is typed and runs on tfjs.
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loadSAELens, parseSAELensConfig, saveSAELens, SAELensSAE, SAE_CFG_FILE, SAE_WEIGHTS_FILE, type SAELensConfig } from '../src/sae/saelens.js';
import { SparseAutoencoder } from '../src/sae/models.js';
import { readSafetensorsArrays, writeSafetensors, type RawTensor } from '../src/io/safetensors.js';
import { ConfigError, FormatError, ResolveError, TflensError, UnsupportedModelError, ValueError } from '../src/errors.js';
import { rng } from '../src/util/random.js';

type Dict = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

// =============================================================================================
// port of SAELens's config handling

/** A Python exception in the port (KeyError, TypeError, ValueError...). */
class PyError extends Error {}

const LLM_METADATA_KEYS = [
  'model_name', 'hook_name', 'model_class_name', 'hook_head_index', 'model_from_pretrained_kwargs', 'prepend_bos', 'exclude_special_tokens',
  'neuronpedia_id', 'context_size', 'seqpos_slice', 'dataset_path', 'sae_lens_version', 'sae_lens_training_version', 'hook_name_out', 'hook_head_index_out',
];

/** Dataclass fields with their defaults (undefined = required), per config class. */
const BASE_FIELDS: Dict = {
  d_in: undefined, d_sae: undefined, dtype: 'float32', device: 'cpu', apply_b_dec_to_input: true, normalize_activations: 'none',
  reshape_activations: 'none', metadata: {},
};
const INFERENCE_CLASSES: Record<string, Dict> = {
  standard: BASE_FIELDS,
  gated: BASE_FIELDS,
  jumprelu: BASE_FIELDS,
  topk: { ...BASE_FIELDS, k: 100, rescale_acts_by_decoder_norm: false },
};
const TOPK_TRAINING: Dict = { ...BASE_FIELDS, decoder_init_norm: 0.1, k: 100, use_sparse_activations: false, aux_loss_coefficient: 1.0, rescale_acts_by_decoder_norm: true };
const TRAINING_CLASSES: Record<string, Dict> = {
  batchtopk: { ...TOPK_TRAINING, topk_threshold_lr: 0.01 },
  matryoshka_batchtopk: { ...TOPK_TRAINING, topk_threshold_lr: 0.01 },
};

/** packaging.version comparison, reduced to what sae_lens_version strings use. */
function pyVersion(v: string): number[] {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:-?(a|b|rc)\.?(\d+))?$/.exec(v);
  if (!m) throw new PyError(`InvalidVersion: ${v}`);
  return [+m[1], +m[2], +m[3], m[4] ? ['a', 'b', 'rc'].indexOf(m[4]) : 9, m[5] ? +m[5] : 0];
}
function versionLess(a: string, b: string): boolean {
  const [x, y] = [pyVersion(a), pyVersion(b)];
  const i = x.findIndex((v, j) => v !== y[j]);
  return i >= 0 && x[i] < y[i];
}

function handleConfigDefaulting(cfg: Dict): Dict {
  let version = cfg.sae_lens_version;
  if (!version && 'metadata' in cfg) version = cfg.metadata.sae_lens_version;
  if (!version || versionLess(version, '6.0.0-rc.0')) return handlePre6(cfg);
  return cfg;
}

function handlePre6(cfg: Dict): Dict {
  const rename: Dict = { hook_point: 'hook_name', hook_point_head_index: 'hook_head_index', activation_fn_str: 'activation_fn' };
  const n: Dict = {};
  for (const [k, v] of Object.entries(cfg)) n[rename[k] ?? k] = v;
  const setdefault = (k: string, v: unknown) => void (k in n ? undefined : (n[k] = v));
  setdefault('prepend_bos', true);
  setdefault('dataset_trust_remote_code', true);
  setdefault('apply_b_dec_to_input', true);
  setdefault('finetuning_scaling_factor', false);
  setdefault('sae_lens_training_version', null);
  setdefault('activation_fn', 'activation_fn' in n ? n.activation_fn : 'relu');
  setdefault('architecture', 'standard');
  setdefault('neuronpedia_id', null);
  const hookName = 'hook_name' in n ? n.hook_name : '';
  if (typeof hookName !== 'string') throw new PyError("TypeError: argument of type 'NoneType' is not iterable");
  setdefault('reshape_activations', hookName.includes('hook_z') ? 'hook_z' : 'none');
  if (n.activation_fn === 'topk' && (n.activation_fn_kwargs ?? {}).k != null) {
    n.architecture = 'topk';
    n.k = n.activation_fn_kwargs.k;
  }
  if (typeof n.normalize_activations === 'boolean') n.normalize_activations = n.normalize_activations ? 'expected_average_only_in' : 'none';
  if (n.normalize_activations == null) n.normalize_activations = 'none';
  setdefault('device', 'cpu');
  const architecture = n.architecture ?? 'standard';
  const cls = INFERENCE_CLASSES[architecture];
  if (!cls) throw new PyError(`KeyError: '${architecture}'`);
  const out: Dict = Object.fromEntries(Object.entries(n).filter(([k]) => k in cls));
  if (architecture === 'topk' && 'activation_fn_kwargs' in n) out.k = n.activation_fn_kwargs.k;
  out.metadata = Object.fromEntries(Object.entries(n).filter(([k]) => LLM_METADATA_KEYS.includes(k)));
  out.architecture = architecture;
  return out;
}

/** SAEConfig.from_dict (or TrainingSAEConfig.from_dict for training-only architectures) and __post_init__. */
function fromDict(d: Dict): Dict {
  const arch = d.architecture;
  if (arch === undefined) throw new PyError("KeyError: 'architecture'");
  const cls = INFERENCE_CLASSES[arch] ?? TRAINING_CLASSES[arch];
  if (!cls) throw new PyError(`KeyError: '${arch}'`);
  const res: Dict = {};
  for (const [k, def] of Object.entries(cls)) {
    if (k in d) res[k] = d[k];
    else if (def === undefined) throw new PyError(`TypeError: missing required argument '${k}'`);
    else res[k] = def;
  }
  res.metadata = 'metadata' in d ? { ...d.metadata } : {};
  if (!['none', 'expected_average_only_in', 'constant_norm_rescale', 'layer_norm'].includes(res.normalize_activations)) {
    throw new PyError(`ValueError: normalize_activations must be ..., got ${res.normalize_activations}`);
  }
  if (res.reshape_activations === 'hook_z' && res.metadata.hook_name != null && !res.metadata.hook_name.endsWith('_z')) {
    throw new PyError('ValueError: This method should only be called for hook_z SAEs.');
  }
  res.architecture = arch;
  return res;
}

/** What SAELens loads from a cfg.json: load_from_disk's config steps; training-only architectures as saved for inference. */
function saelensLoadConfig(cfg: Dict): Dict {
  const d = fromDict(handleConfigDefaulting(JSON.parse(JSON.stringify(cfg)))); // as read from cfg.json
  if (TRAINING_CLASSES[d.architecture]) {
    // get_inference_sae_cfg_dict: the JumpReLU config's fields
    const inf: Dict = Object.fromEntries(Object.keys(BASE_FIELDS).map((k) => [k, d[k]]));
    return { ...inf, architecture: 'jumprelu', fileArchitecture: d.architecture, rescale_acts_by_decoder_norm: d.rescale_acts_by_decoder_norm };
  }
  return { ...d, fileArchitecture: d.architecture };
}

/** The loader's config in the port's terms. */
function ours(c: SAELensConfig): Dict {
  const o: Dict = {
    architecture: c.architecture, fileArchitecture: c.fileArchitecture, d_in: c.d_in, d_sae: c.d_sae, dtype: c.dtype, device: c.device,
    apply_b_dec_to_input: c.apply_b_dec_to_input, normalize_activations: c.normalize_activations, reshape_activations: c.reshape_activations, metadata: c.metadata,
  };
  if (c.k !== undefined) o.k = c.k;
  if (c.rescale_acts_by_decoder_norm !== undefined) o.rescale_acts_by_decoder_norm = c.rescale_acts_by_decoder_norm;
  return o;
}
function portView(p: Dict): Dict {
  const keys = ['architecture', 'fileArchitecture', 'd_in', 'd_sae', 'dtype', 'device', 'apply_b_dec_to_input', 'normalize_activations', 'reshape_activations', 'metadata', 'k', 'rescale_acts_by_decoder_norm'];
  return Object.fromEntries(keys.filter((k) => p[k] !== undefined).map((k) => [k, p[k]]));
}

// cfg.json variants: pre-6 files (flat fields, as SAELens < 6 wrote them), SAELens 6 files, and files SAELens refuses
const D = { d_in: 3, d_sae: 4 };
const V6 = (extra: Dict, meta: Dict = {}) => ({ ...D, ...extra, metadata: { sae_lens_version: '6.18.0', sae_lens_training_version: '6.18.0', ...meta } });
const CFG_CASES: Record<string, Dict> = {
  'pre-6 flat ReLU SAE with hook_point, normalize false': {
    ...D, hook_point: 'blocks.2.hook_resid_pre', hook_point_layer: 2, hook_point_head_index: null, model_name: 'gpt2-small', context_size: 128,
    activation_fn_str: 'relu', normalize_activations: false, apply_b_dec_to_input: false, dtype: 'float32', device: 'cuda', dataset_path: 'Skylion007/openwebtext',
  },
  'pre-6 normalize true': { ...D, hook_name: 'blocks.0.hook_resid_post', normalize_activations: true },
  'pre-6 normalize null, no apply_b_dec_to_input (default true)': { ...D, hook_name: 'blocks.0.hook_mlp_out', normalize_activations: null },
  'pre-6 topk from activation_fn_kwargs': { ...D, hook_name: 'blocks.1.hook_resid_pre', activation_fn_str: 'topk', activation_fn_kwargs: { k: 2 } },
  'pre-6 topk: kwargs k overrides a top-level k': { ...D, architecture: 'topk', k: 3, activation_fn_str: 'topk', activation_fn_kwargs: { k: 1 } },
  'pre-6 activation_fn topk without k stays standard': { ...D, activation_fn_str: 'topk', activation_fn_kwargs: {} },
  'pre-6 hook_z SAE reshapes': { ...D, hook_name: 'blocks.3.attn.hook_z', hook_head_index: null },
  'pre-6 hook_point then hook_name: the later key wins': { ...D, hook_point: 'blocks.0.hook_resid_pre', hook_name: 'blocks.1.hook_resid_post' },
  'pre-6 jumprelu with an explicit architecture': { ...D, architecture: 'jumprelu', hook_name: 'blocks.5.hook_resid_post', prepend_bos: false },
  'pre-6 layout although a metadata object exists (version 5.9.1)': { ...D, sae_lens_version: '5.9.1', hook_name: 'blocks.4.hook_resid_pre', metadata: { hook_name: 'ignored' } },
  '6.0.0 pre-release b1 is still pre-6': { ...D, sae_lens_version: '6.0.0-b.1', hook_point: 'blocks.0.hook_resid_pre' },
  'v6 standard, version in metadata': V6({ architecture: 'standard', apply_b_dec_to_input: false }, { hook_name: 'blocks.6.hook_resid_pre', model_name: 'pythia-70m' }),
  'v6 ignores top-level hook_name': { ...V6({ architecture: 'standard' }, { model_name: 'gpt2' }), hook_name: 'blocks.0.hook_resid_pre' },
  'v6 version at the top level': { ...D, architecture: 'gated', sae_lens_version: '6.0.0-rc.0', metadata: { hook_name: 'blocks.0.hook_resid_pre' } },
  'v6 topk with rescaling': V6({ architecture: 'topk', k: 2, rescale_acts_by_decoder_norm: true }, { hook_name: 'blocks.2.hook_resid_post' }),
  'v6 topk default rescale (false)': V6({ architecture: 'topk', k: 4 }),
  'v6 jumprelu, constant_norm_rescale': V6({ architecture: 'jumprelu', normalize_activations: 'constant_norm_rescale' }),
  'v6 gated, layer_norm': V6({ architecture: 'gated', normalize_activations: 'layer_norm' }),
  'v6 expected_average_only_in': V6({ architecture: 'standard', normalize_activations: 'expected_average_only_in', dtype: 'bfloat16' }),
  'v6 hook_z': V6({ architecture: 'standard', reshape_activations: 'hook_z' }, { hook_name: 'blocks.1.attn.hook_z', hook_head_index: null }),
  'v6 batchtopk checkpoint (rescale default true)': V6({ architecture: 'batchtopk', k: 1.5 }, { hook_name: 'blocks.0.hook_resid_post' }),
  'v6 batchtopk checkpoint without rescaling': V6({ architecture: 'batchtopk', k: 2, rescale_acts_by_decoder_norm: false, topk_threshold_lr: 0.02 }),
  'v6 matryoshka batchtopk checkpoint': V6({ architecture: 'matryoshka_batchtopk', k: 2, matryoshka_widths: [2, 4] }),
  // refused by SAELens
  'refused: v6 normalize_activations null': V6({ architecture: 'standard', normalize_activations: null }),
  'refused: unknown normalize_activations': V6({ architecture: 'standard', normalize_activations: 'mean' }),
  'refused: v6 without architecture': V6({}),
  'refused: unknown architecture': V6({ architecture: 'sparse-but-odd' }),
  'refused: pre-6 unknown architecture': { ...D, architecture: 'batchtopk' },
  'refused: no d_in': { d_sae: 4, hook_name: 'blocks.0.hook_resid_pre' },
  'refused: v6 no d_sae': V6({ architecture: 'standard', d_sae: undefined }),
  'refused: hook_z on a residual hook': V6({ architecture: 'standard', reshape_activations: 'hook_z' }, { hook_name: 'blocks.1.hook_resid_pre' }),
};

// =============================================================================================
// port of SAELens's forward pass, on number arrays

interface PortWeights {
  [name: string]: number[][] | number[];
}
const relu = (v: number) => (v > 0 ? v : 0);
const vecMat = (v: number[], m: number[][]) => m[0].map((_, j) => v.reduce((s, vi, i) => s + vi * m[i][j], 0));
const rowNorms = (m: number[][]) => m.map((r) => Math.sqrt(r.reduce((s, x) => s + x * x, 0)));

/** process_sae_in's normalisation, and the statistics decode needs to undo it. */
function normIn(cfg: Dict, x: number[]): { v: number[]; undo: (y: number[]) => number[] } {
  const n = x.length;
  if (cfg.normalize_activations === 'constant_norm_rescale') {
    const coeff = Math.sqrt(cfg.d_in) / Math.sqrt(x.reduce((s, a) => s + a * a, 0));
    return { v: x.map((a) => a * coeff), undo: (y) => y.map((a) => a / coeff) };
  }
  if (cfg.normalize_activations === 'layer_norm') {
    const mu = x.reduce((s, a) => s + a, 0) / n;
    const c = x.map((a) => a - mu);
    const std = Math.sqrt(c.reduce((s, a) => s + a * a, 0) / (n - 1)); // torch.std: unbiased
    return { v: c.map((a) => a / (std + 1e-5)), undo: (y) => y.map((a) => a * std + mu) };
  }
  return { v: x, undo: (y) => y };
}

/** encode + decode of one input row as the SAELens classes compute them (ties in top-k: lower index first). */
function portForward(cfg: Dict, w: PortWeights, x: number[]): { f: number[]; recon: number[] } {
  const { v, undo } = normIn(cfg, x);
  const bDec = w.b_dec as number[];
  const sin = cfg.apply_b_dec_to_input ? v.map((a, i) => a - bDec[i]) : v;
  const W_enc = w.W_enc as number[][];
  const W_dec = w.W_dec as number[][];
  const add = (a: number[], b: number[]) => a.map((t, i) => t + b[i]);
  let f: number[];
  if (cfg.architecture === 'gated') {
    const gate = add(vecMat(sin, W_enc), w.b_gate as number[]).map((t) => (t > 0 ? 1 : 0));
    const rMag = w.r_mag as number[];
    const mag = add(vecMat(sin, W_enc.map((row) => row.map((t, j) => t * Math.exp(rMag[j])))), w.b_mag as number[]).map(relu);
    f = gate.map((g, j) => g * mag[j]);
  } else {
    let pre = add(vecMat(sin, W_enc), w.b_enc as number[]);
    if (cfg.architecture === 'jumprelu') f = pre.map((t, j) => (t > (w.threshold as number[])[j] ? relu(t) : 0));
    else if (cfg.architecture === 'topk') {
      const norms = rowNorms(W_dec);
      if (cfg.rescale_acts_by_decoder_norm) pre = pre.map((t, j) => t * norms[j]);
      const keep = pre.map((t, j) => [t, j]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, cfg.k).map((p) => p[1]);
      f = pre.map((t, j) => (keep.includes(j) ? relu(t) : 0));
    } else f = pre.map(relu);
  }
  let g = f;
  if (cfg.architecture === 'topk' && cfg.rescale_acts_by_decoder_norm) {
    const norms = rowNorms(W_dec);
    g = f.map((t, j) => t / norms[j]);
  }
  return { f, recon: undo(add(vecMat(g, W_dec), bDec)) };
}

/** BatchTopK's save-for-inference: fold decoder norms when rescaling, threshold = topk_threshold for every feature. */
function portBatchTopKToJumpReLU(w: PortWeights, rescale: boolean): PortWeights {
  const W_dec = w.W_dec as number[][];
  const norms = rescale ? rowNorms(W_dec) : W_dec.map(() => 1);
  return {
    W_enc: (w.W_enc as number[][]).map((row) => row.map((t, j) => t * norms[j])),
    b_enc: (w.b_enc as number[]).map((t, j) => t * norms[j]),
    W_dec: W_dec.map((row, j) => row.map((t) => t / norms[j])),
    b_dec: w.b_dec,
    threshold: (w.b_enc as number[]).map(() => w.topk_threshold as unknown as number),
  };
}

// =============================================================================================

async function tmpDir(): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-saelens-'));
}

const SHAPES = (dIn: number, dSae: number): Dict => ({
  W_enc: [dIn, dSae], W_dec: [dSae, dIn], b_dec: [dIn], b_enc: [dSae], threshold: [dSae], b_gate: [dSae], b_mag: [dSae], r_mag: [dSae], topk_threshold: [],
});
const NAMES: Dict = {
  standard: ['W_enc', 'b_enc', 'W_dec', 'b_dec'], topk: ['W_enc', 'b_enc', 'W_dec', 'b_dec'], jumprelu: ['W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold'],
  gated: ['W_enc', 'b_gate', 'b_mag', 'r_mag', 'W_dec', 'b_dec'], batchtopk: ['W_enc', 'b_enc', 'W_dec', 'b_dec', 'topk_threshold'],
};

/** Seeded random weights for an architecture, as nested arrays (the port) and safetensors entries (the file). */
function randomWeights(arch: string, dIn: number, dSae: number, seed: number): { port: PortWeights; file: Record<string, RawTensor> } {
  const r = rng(seed);
  const port: PortWeights = {};
  const file: Record<string, RawTensor> = {};
  for (const name of NAMES[arch === 'matryoshka_batchtopk' ? 'batchtopk' : arch]) {
    const shape: number[] = SHAPES(dIn, dSae)[name];
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    const flat = Array.from({ length: n }, () => Math.fround(name === 'threshold' || name === 'topk_threshold' ? 0.2 + 0.3 * r.next() : r.normal() * 0.8));
    file[name] = { dtype: 'F32', shape, data: flat };
    port[name] = shape.length === 2 ? Array.from({ length: shape[0] }, (_, i) => flat.slice(i * shape[1], (i + 1) * shape[1])) : shape.length === 0 ? (flat[0] as any) : flat;
  }
  return { port, file };
}

async function writeFolder(dir: string, cfg: Dict, weights: Record<string, RawTensor>): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify(cfg));
  await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), weights);
}

async function rows(t: tf.Tensor): Promise<number[][]> {
  return (await t.array()) as number[][];
}

function assertClose(got: number[][], want: number[][], tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  got.forEach((row, i) =>
    row.forEach((v, j) => {
      const w = want[i][j];
      assert.ok(Math.abs(v - w) <= tol * (1 + Math.abs(w)), `${what} [${i}][${j}]: ${v} vs ${w}`);
    }),
  );
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

  it(`cfg.json: ${Object.keys(CFG_CASES).length} variants read as SAELens 6 reads them (port of its config handling), or refused as SAELens refuses them`, () => {
    const problems: string[] = [];
    let accepted = 0;
    for (const [name, cfg] of Object.entries(CFG_CASES)) {
      let want: Dict | null = null;
      let portErr: Error | null = null;
      try {
        want = portView(saelensLoadConfig(cfg));
      } catch (e) {
        if (!(e instanceof PyError)) throw e;
        portErr = e;
      }
      let got: Dict | null = null;
      let err: unknown = null;
      try {
        got = ours(parseSAELensConfig(JSON.parse(JSON.stringify(cfg)), 'cfg.json'));
      } catch (e) {
        err = e;
      }
      if (portErr) {
        if (!err) problems.push(`${name}: SAELens refuses (${portErr.message}) but tflens accepted ${JSON.stringify(got)}`);
        else if (!(err instanceof TflensError) || !(err as Error).message.startsWith('cfg.json')) problems.push(`${name}: not a typed error naming cfg.json: ${err}`);
        continue;
      }
      if (err) {
        problems.push(`${name}: tflens refused (${(err as Error).message}) what SAELens loads`);
        continue;
      }
      accepted++;
      try {
        assert.deepEqual(got, want);
      } catch {
        problems.push(`${name}:\n  tflens ${JSON.stringify(got)}\n  SAELens ${JSON.stringify(want)}`);
      }
    }
    assert.deepEqual(problems, []);
    assert.ok(accepted >= 20, `${accepted} accepted variants`);
    // spot checks written out by hand
    const legacy = parseSAELensConfig(CFG_CASES['pre-6 flat ReLU SAE with hook_point, normalize false'], 'cfg.json');
    assert.equal(legacy.hook_name, 'blocks.2.hook_resid_pre', 'hook_point read as hook_name');
    assert.equal(legacy.hook_layer, 2);
    assert.equal(legacy.normalize_activations, 'none', 'legacy normalize_activations false is "none"');
    assert.equal(legacy.sae_lens_version, null);
    assert.equal(parseSAELensConfig(CFG_CASES['pre-6 normalize true'], 'cfg.json').normalize_activations, 'expected_average_only_in');
    assert.equal(parseSAELensConfig(CFG_CASES['pre-6 topk from activation_fn_kwargs'], 'cfg.json').k, 2);
  });

  const archCases: Array<{ arch: string; norm: string; apply: boolean; extra?: Dict }> = [
    { arch: 'standard', norm: 'none', apply: true },
    { arch: 'standard', norm: 'constant_norm_rescale', apply: false },
    { arch: 'jumprelu', norm: 'none', apply: true },
    { arch: 'jumprelu', norm: 'layer_norm', apply: true },
    { arch: 'gated', norm: 'none', apply: true },
    { arch: 'gated', norm: 'constant_norm_rescale', apply: true },
    { arch: 'topk', norm: 'none', apply: true, extra: { k: 3 } },
    { arch: 'topk', norm: 'layer_norm', apply: false, extra: { k: 2, rescale_acts_by_decoder_norm: true } },
    { arch: 'topk', norm: 'expected_average_only_in', apply: true, extra: { k: 5, rescale_acts_by_decoder_norm: true } },
    { arch: 'batchtopk', norm: 'none', apply: true, extra: { k: 2.5 } },
    { arch: 'batchtopk', norm: 'none', apply: true, extra: { k: 2, rescale_acts_by_decoder_norm: false } },
  ];
  for (const c of archCases) {
    it(`forward of a ${c.arch} SAE (${c.norm}, apply_b_dec_to_input ${c.apply}${c.extra?.rescale_acts_by_decoder_norm ? ', rescaled' : ''}) equals the port of SAELens`, async () => {
      const dIn = 6;
      const dSae = 9;
      const { port, file } = randomWeights(c.arch, dIn, dSae, 11 + archCases.indexOf(c));
      const cfg = V6({ architecture: c.arch, d_in: dIn, d_sae: dSae, normalize_activations: c.norm, apply_b_dec_to_input: c.apply, ...c.extra }, { hook_name: 'blocks.0.hook_resid_post' });
      const dir = await fresh();
      await writeFolder(dir, cfg, file);
      const before = tf.memory().numTensors;
      const { sae, cfg: lc } = await loadSAELens(dir);
      const want = saelensLoadConfig(cfg);
      const pw = c.arch === 'batchtopk' ? portBatchTopKToJumpReLU(port, want.rescale_acts_by_decoder_norm) : port;
      const r = rng(99);
      const X = Array.from({ length: 7 }, () => Array.from({ length: dIn }, () => Math.fround(r.normal() * 2)));
      const ref = X.map((x) => portForward({ ...want, d_in: dIn, k: want.k }, pw, x));
      const x = tf.tensor2d(X);
      const { features, recon } = sae.forward(x);
      assertClose(await rows(features), ref.map((o) => o.f), 2e-5, 'features');
      assertClose(await rows(recon), ref.map((o) => o.recon), 2e-5, 'recon');
      assert.ok(ref.some((o) => o.f.some((v) => v > 0)) && ref.some((o) => o.f.some((v) => v === 0)), 'some features fire, some do not');
      if (c.arch === 'topk') ref.forEach((o, i) => assert.ok(o.f.filter((v) => v !== 0).length <= c.extra!.k, `row ${i}: at most k features`));
      if (c.arch === 'batchtopk') assert.equal(lc.architecture, 'jumprelu');
      // encode alone and decode(features, input) agree with forward
      const f2 = sae.encode(x);
      const y2 = sae.decode(f2, x);
      assertClose(await rows(y2), ref.map((o) => o.recon), 2e-5, 'decode');
      tf.dispose([x, features, recon, f2, y2]);
      sae.dispose();
      assert.equal(tf.memory().numTensors, before, 'no tensors left');
    });
  }

  it('batchtopk checkpoints run as the rescaled training SAE did: folding keeps the features and reconstruction', async () => {
    // training-time computation (TopKTrainingSAE with rescaling): h = ((x - b_dec) W_enc + b_enc) * ||W_dec_j||,
    // a feature fires when h > topk_threshold; decode divides by ||W_dec_j||. Hand-built 2 -> 2 SAE:
    // W_dec rows [3, 4] (norm 5) and [0, 0.5] (norm 0.5); W_enc = I; b_enc = [0.1, 0]; b_dec = 0; threshold 1.
    const dir = await fresh();
    await writeFolder(dir, V6({ architecture: 'batchtopk', d_in: 2, d_sae: 2, k: 1 }), {
      W_enc: { dtype: 'F32', shape: [2, 2], data: [1, 0, 0, 1] },
      b_enc: { dtype: 'F32', shape: [2], data: [0.1, 0] },
      W_dec: { dtype: 'F32', shape: [2, 2], data: [3, 4, 0, 0.5] },
      b_dec: { dtype: 'F32', shape: [2], data: [0, 0] },
      topk_threshold: { dtype: 'F64', shape: [], data: [1] },
    });
    const { sae } = await loadSAELens(dir);
    // x = [0.3, 4]: h = [0.4 * 5, 4 * 0.5] = [2, 2] -> both > 1; recon = [2/5 * [3,4] + 2/0.5 * [0, 0.5]] = [1.2, 1.6 + 2] = [1.2, 3.6]
    // x = [0.1, 1]: h = [0.2 * 5, 0.5] = [1, 0.5] -> none > 1 (strict), recon = [0, 0]
    const x = tf.tensor2d([[0.3, 4], [0.1, 1]]);
    const { features, recon } = sae.forward(x);
    assertClose(await rows(features), [[2, 2], [0, 0]], 1e-6, 'features');
    assertClose(await rows(recon), [[1.2, 3.6], [0, 0]], 1e-6, 'recon');
    tf.dispose([x, features, recon]);
    sae.dispose();
  });

  it('top-k keeps exactly k features on ties (SAELens takes torch.topk indices), in SAELensSAE and in the tflens SAE', async () => {
    // W_enc = I (4 -> 4), no biases: pre = x. Row [3, 1, 3, 3] with k = 2 keeps features 0 and 2 (lower index on ties).
    const eye = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
    const w = { W_enc: Float32Array.from(eye), b_enc: [0, 0, 0, 0], W_dec: Float32Array.from(eye), b_dec: [0, 0, 0, 0] };
    const dir = await fresh();
    await writeFolder(dir, V6({ architecture: 'topk', d_in: 4, d_sae: 4, k: 2 }), {
      W_enc: { dtype: 'F32', shape: [4, 4], data: eye },
      b_enc: { dtype: 'F32', shape: [4], data: w.b_enc },
      W_dec: { dtype: 'F32', shape: [4, 4], data: eye },
      b_dec: { dtype: 'F32', shape: [4], data: w.b_dec },
    });
    const { sae } = await loadSAELens(dir);
    const x = tf.tensor2d([[3, 1, 3, 3], [-1, -2, 5, -1], [2, 2, 2, 2]]);
    const f = sae.encode(x);
    // row 2: top-2 of [-1, -2, 5, -1] are 5 and -1 (index 0); ReLU zeroes the -1
    assert.deepEqual(await rows(f), [[3, 0, 3, 0], [0, 0, 5, 0], [2, 2, 0, 0]]);
    const own = new SparseAutoencoder({ architecture: 'topk', dIn: 4, dSae: 4, k: 2, applyBDecToInput: false }, w);
    const g = own.encode(x as tf.Tensor2D);
    assert.deepEqual(await rows(g), [[3, 0, 3, 0], [0, 0, 5, 0], [2, 2, 0, 0]]);
    tf.dispose([x, f, g]);
    own.dispose();
    sae.dispose();
  });

  it('hook_z SAEs take [..., n_heads, d_head] inputs and give reconstructions of that shape', async () => {
    const dir = await fresh();
    const { port, file } = randomWeights('standard', 4, 5, 3);
    await writeFolder(dir, { ...D, d_in: 4, d_sae: 5, hook_name: 'blocks.0.attn.hook_z', apply_b_dec_to_input: true }, file); // pre-6: reshape from the hook name
    const { sae, cfg } = await loadSAELens(dir);
    assert.equal(cfg.reshape_activations, 'hook_z');
    const X = [[[1, -0.5], [0.25, 2]], [[0, 1], [1, 0]], [[-1, 0.5], [3, -2]]]; // [pos 3, heads 2, d_head 2]
    const x = tf.tensor3d(X);
    const { features, recon } = sae.forward(x);
    assert.deepEqual(features.shape, [3, 5]);
    assert.deepEqual(recon.shape, [3, 2, 2]);
    const ref = X.map((r) => portForward({ architecture: 'standard', apply_b_dec_to_input: true, d_in: 4 }, port, r.flat()));
    assertClose(await rows(features), ref.map((o) => o.f), 2e-5, 'features');
    assertClose((await recon.array() as number[][][]).map((r) => r.flat()), ref.map((o) => o.recon), 2e-5, 'recon');
    tf.dispose([x, features, recon]);
    sae.dispose();
  });

  it('writes the SAELens 6 layout: SAELens reads it without its pre-6 conversion; tflens gets its SAE back', async () => {
    const x = tf.randomNormal([5, 6], 0, 1, 'float32', 2) as tf.Tensor2D;
    for (const [arch, k] of [['paper', undefined], ['standard', undefined], ['topk', 3]] as const) {
      const sae = new SparseAutoencoder({ architecture: arch, dIn: 6, dSae: 10, k, seed: 4, lambda: 0.05 });
      sae.params.b_dec.assign(tf.randomNormal([6], 0, 1, 'float32', 3));
      sae.params.b_enc.assign(tf.randomNormal([10], 0, 0.1, 'float32', 5));
      const dir = await fresh();
      const before = tf.memory().numTensors;
      const { cfg } = await saveSAELens(sae, dir, { hookName: 'blocks.3.attn.hook_z', modelName: 'induction-handmade', contextSize: 32, hookHeadIndex: 1 });
      const raw = JSON.parse(await fsp.readFile(path.join(dir, SAE_CFG_FILE), 'utf8')) as Dict;
      assert.deepEqual(raw, cfg);
      // SAELens's view of the file (no pre-6 path: metadata kept as written)
      assert.deepEqual(portView(saelensLoadConfig(raw)), {
        architecture: arch === 'topk' ? 'topk' : 'standard', fileArchitecture: arch === 'topk' ? 'topk' : 'standard', d_in: 6, d_sae: 10, dtype: 'float32', device: 'cpu',
        apply_b_dec_to_input: arch !== 'standard', normalize_activations: 'none', reshape_activations: 'none',
        metadata: {
          model_name: 'induction-handmade', hook_name: 'blocks.3.attn.hook_z', hook_head_index: 1, prepend_bos: true, context_size: 32, dataset_path: null,
          sae_lens_version: '6.0.0', sae_lens_training_version: null,
        },
        ...(arch === 'topk' ? { k: 3, rescale_acts_by_decoder_norm: false } : {}),
      });
      assert.equal(raw.hook_name, undefined, 'no pre-6 flat fields');
      const w = await readSafetensorsArrays(path.join(dir, SAE_WEIGHTS_FILE));
      assert.deepEqual(Object.keys(w).sort(), ['W_dec', 'W_enc', 'b_dec', 'b_enc']);
      assert.deepEqual([w.W_enc.shape, w.W_dec.shape, w.b_enc.shape, w.b_dec.shape], [[6, 10], [10, 6], [10], [6]]);
      const { sae: loaded, cfg: lc } = await loadSAELens(dir);
      assert.equal(lc.hook_layer, 3);
      assert.equal(lc.model_name, 'induction-handmade');
      const back = loaded.toSparseAutoencoder();
      loaded.dispose();
      assert.equal(back.architecture, arch);
      assert.equal(back.k, k);
      assert.equal(back.lambda, 0.05);
      assert.equal(back.applyBDecToInput, sae.applyBDecToInput);
      for (const name of ['W_enc', 'b_enc', 'W_dec', 'b_dec'] as const) {
        assert.deepEqual(Array.from(await back.params[name].data()), Array.from(await sae.params[name].data()), `${arch}: ${name}`);
      }
      const fa = sae.encode(x);
      const fb = back.encode(x);
      assert.deepEqual(Array.from(await fa.data()), Array.from(await fb.data()));
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
    const { sae: loaded } = await loadSAELens(dir);
    const back = loaded.toSparseAutoencoder();
    loaded.dispose();
    assert.equal(back.architecture, 'paper');
    assert.equal(back.decoderNorm, 'input');
    assert.deepEqual(Array.from(await back.params.W_dec.data()), Array.from(await sae.params.W_dec.data()));
    back.dispose();
    sae.dispose();
  });

  it('a loaded jumprelu / gated / rescaled topk SAE is written back as SAELens 6 saves it and reloads to the same outputs', async () => {
    for (const [arch, extra] of [['jumprelu', {}], ['gated', { normalize_activations: 'layer_norm' }], ['topk', { k: 2, rescale_acts_by_decoder_norm: true }]] as const) {
      const { file } = randomWeights(arch, 4, 6, 7);
      const src = await fresh();
      await writeFolder(src, V6({ architecture: arch, d_in: 4, d_sae: 6, ...extra }, { hook_name: 'blocks.1.hook_resid_post', neuronpedia_id: 'x/y' }), file);
      const { sae } = await loadSAELens(src);
      const dst = await fresh();
      const { cfg } = await saveSAELens(sae, dst);
      assert.equal(cfg.architecture, arch);
      assert.deepEqual((cfg.metadata as Dict).neuronpedia_id, 'x/y', 'metadata kept');
      assert.equal(saelensLoadConfig(cfg).architecture, arch);
      assert.deepEqual(Object.keys(await readSafetensorsArrays(path.join(dst, SAE_WEIGHTS_FILE))).sort(), [...NAMES[arch]].sort());
      const { sae: again } = await loadSAELens(dst);
      const x = tf.tensor2d([[1, -2, 0.5, 3], [0.2, 0.1, -0.3, 1]]);
      const [a, b] = [sae.forward(x), again.forward(x)];
      assert.deepEqual(await rows(a.features), await rows(b.features));
      assert.deepEqual(await rows(a.recon), await rows(b.recon));
      assert.throws(() => sae.toSparseAutoencoder(), UnsupportedModelError);
      tf.dispose([x, a.features, a.recon, b.features, b.recon]);
      sae.dispose();
      again.dispose();
    }
  });

  it('reads a pre-6 Python-style folder with only the required fields (hand-checked forward)', async () => {
    const dir = await fresh();
    await writeSafetensors(path.join(dir, SAE_WEIGHTS_FILE), {
      W_enc: { dtype: 'F32', shape: [2, 3], data: [1, 0, 1, 0, 1, 1] },
      b_enc: { dtype: 'F32', shape: [3], data: [0, 0, -1] },
      W_dec: { dtype: 'F32', shape: [3, 2], data: [1, 0, 0, 1, 0.5, 0.5] },
      b_dec: { dtype: 'F32', shape: [2], data: [1, 1] },
      scaling_factor: { dtype: 'F32', shape: [3], data: [1, 1, 1] }, // all ones: dropped, as SAELens does
    });
    await fsp.writeFile(
      path.join(dir, SAE_CFG_FILE),
      JSON.stringify({ d_in: 2, d_sae: 3, hook_point: 'blocks.0.hook_resid_pre', hook_point_layer: 0, activation_fn_str: 'relu', apply_b_dec_to_input: false, model_name: 'gpt2' }),
    );
    const before = tf.memory().numTensors;
    const { sae, cfg } = await loadSAELens(dir);
    assert.equal(sae.architecture, 'standard');
    assert.equal(cfg.model_name, 'gpt2');
    assert.equal(cfg.hook_name, 'blocks.0.hook_resid_pre');
    assert.equal(cfg.context_size, null);
    const x = tf.tensor2d([[2, 3]]);
    // pre = [2, 3, 5 - 1] -> f = [2, 3, 4]; recon = [2 + 2, 3 + 2] + [1, 1] = [5, 6]
    const { features, recon } = sae.forward(x);
    assert.deepEqual(await rows(features), [[2, 3, 4]]);
    assert.deepEqual(await rows(recon), [[5, 6]]);
    tf.dispose([x, features, recon]);
    sae.dispose();
    assert.equal(tf.memory().numTensors, before);

    // pre-6 topk: k in activation_fn_kwargs, apply_b_dec_to_input missing -> SAELens default true
    await fsp.writeFile(path.join(dir, SAE_CFG_FILE), JSON.stringify({ d_in: 2, d_sae: 3, activation_fn_str: 'topk', activation_fn_kwargs: { k: 1 } }));
    const { sae: tk } = await loadSAELens(dir);
    assert.equal(tk.architecture, 'topk');
    assert.equal(tk.cfg.k, 1);
    assert.equal(tk.cfg.apply_b_dec_to_input, true);
    const x2 = tf.tensor2d([[2, 3]]);
    // x - b_dec = [1, 2]: pre = [1, 2, 2]; top-1 with a tie keeps exactly one feature, the lower index
    assert.deepEqual(await rows(tk.encode(x2)), [[0, 2, 0]]);
    x2.dispose();
    tk.dispose();
  });

  it('typed errors for missing files, missing or extra tensors, wrong shapes and unsupported settings, without leaks', async () => {
    const dir = await fresh();
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof ResolveError && /cfg\.json: file not found/.test((e as Error).message));
    const good = {
      W_enc: { dtype: 'F32' as const, shape: [2, 3], data: [1, 0, 1, 0, 1, 1] },
      b_enc: { dtype: 'F32' as const, shape: [3], data: [0, 0, 0] },
      W_dec: { dtype: 'F32' as const, shape: [3, 2], data: [1, 0, 0, 1, 0, 0] },
      b_dec: { dtype: 'F32' as const, shape: [2], data: [0, 0] },
    };
    const cfgFile = path.join(dir, SAE_CFG_FILE);
    const weights = path.join(dir, SAE_WEIGHTS_FILE);
    await fsp.writeFile(cfgFile, JSON.stringify({ d_in: 2, d_sae: 3, architecture: 'standard' }));
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof ResolveError && /sae_weights\.safetensors: file not found/.test((e as Error).message));
    const before = tf.memory().numTensors;
    const { W_dec: _omit, ...noDec } = good;
    await writeSafetensors(weights, noDec);
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof FormatError && /sae_weights\.safetensors: W_dec: expected a tensor of shape \[3,2\]/.test((e as Error).message));
    await writeSafetensors(weights, { ...good, W_dec: { dtype: 'F32', shape: [2, 3], data: [1, 0, 0, 1, 0, 0] } });
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof FormatError && /W_dec: expected shape \[3,2\], found \[2,3\]/.test((e as Error).message));
    await writeSafetensors(weights, { ...good, threshold: { dtype: 'F32', shape: [3], data: [0, 0, 0] } });
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof FormatError && /tensors threshold are not part of a standard SAE/.test((e as Error).message));
    await writeSafetensors(weights, { ...good, scaling_factor: { dtype: 'F32', shape: [3], data: [1, 2, 1] } });
    await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof UnsupportedModelError && /scaling_factor/.test((e as Error).message));
    await writeSafetensors(weights, good);
    const bad: Array<[Dict | string, new (...a: any[]) => Error, RegExp]> = [
      [{ d_in: 2, d_sae: 3, architecture: 'transcoder', metadata: { sae_lens_version: '6.18.0' } }, UnsupportedModelError, /architecture: "transcoder" is a transcoder/],
      [{ d_in: 2, d_sae: 3, architecture: 'batchtopk' }, UnsupportedModelError, /architecture: "batchtopk" in a pre-6 cfg\.json/],
      [{ d_in: 2, d_sae: 3, normalize_activations: 'mean' }, ConfigError, /normalize_activations: expected one of none, expected_average_only_in/],
      [{ d_sae: 3 }, ConfigError, /d_in: required field is missing/],
      [{ d_in: 2, d_sae: 3, architecture: 'topk' }, ConfigError, /k: expected at most d_sae = 3 features, found 100/],
      [{ d_in: 2, d_sae: 3, apply_b_dec_to_input: 'yes' }, ConfigError, /apply_b_dec_to_input: expected true or false/],
      [{ d_in: 2, d_sae: 3, sae_lens_version: 'six' }, ConfigError, /sae_lens_version: expected a version/],
      [{ d_in: 2, d_sae: 3, dtype: 'int8' }, ConfigError, /dtype: expected one of float32/],
      ['{"d_in": 2, "d_sae": 3, "d_in": 4}', FormatError, /cfg\.json: SAE config lists key "d_in" twice/],
      ['{"d_in": 2,', FormatError, /cfg\.json: SAE config is not valid JSON/],
      ['[1, 2]', FormatError, /cfg\.json: expected a JSON object, found an array/],
    ];
    for (const [c, cls, re] of bad) {
      await fsp.writeFile(cfgFile, typeof c === 'string' ? c : JSON.stringify(c));
      await assert.rejects(loadSAELens(dir), (e: unknown) => e instanceof cls && re.test((e as Error).message) && (e as Error).message.includes(cfgFile), `${JSON.stringify(c)}`);
    }
    assert.equal(tf.memory().numTensors, before);
    const sae = new SparseAutoencoder({ architecture: 'standard', dIn: 2, dSae: 3 });
    await assert.rejects(saveSAELens(sae, dir, { hookName: '' }), ConfigError);
    await assert.rejects(saveSAELens(sae, dir, { hookName: 'blocks.0.hook_resid_pre', extra: { d_in: 5 } }), ConfigError);
    sae.dispose();
    // run-time misuse of a loaded SAE
    await fsp.writeFile(cfgFile, JSON.stringify({ d_in: 2, d_sae: 3, normalize_activations: 'constant_norm_rescale' }));
    const { sae: cn } = await loadSAELens(dir);
    const f = tf.zeros([1, 3]);
    assert.throws(() => cn.decode(f), (e: unknown) => e instanceof ValueError && /pass the encoded input/.test((e as Error).message));
    const wrong = tf.zeros([1, 5]);
    assert.throws(() => cn.encode(wrong), /x: expected \[\.\.\., 2\]/);
    tf.dispose([f, wrong]);
    cn.dispose();
    assert.throws(() => cn.encode(tf.zeros([1, 2])), /disposed/);
    assert.ok(cn instanceof SAELensSAE);
  });
});
