/**
 * The forward pass, in the order data takes: prepareInputs -> embed -> blocks -> unembed.
 * Every hook point is one `hook(st, name, ...)` call here, so the model's hook list is whatever
 * this file calls (HookedTransformer.hookNames traces it). Each layer runs in its own tf.tidy:
 * a layer's intermediates are freed when it ends, and only the residual, the requested cache
 * entries and the new keys/values survive it.
 *
 * On WebGPU the ops (src/model/ops.ts) run fused kernels: a norm with its scale, a projection with
 * its bias, activation and residual add, the gated MLP input, rotary, and attention without the
 * [T, Tk] matrices. Where a fused kernel would hide an intermediate that a hook or the cache asks
 * for, this file takes the split path at that point (`wants`): a hook on hook_scale, hook_pre,
 * hook_pre_linear, hook_attn_scores or hook_pattern sees (and may replace) the real tensor, and a
 * module's output (hook_attn_out, hook_mlp_out) is added to the residual in the kernel only when
 * nothing reads it.
 */
import * as tf from '@tensorflow/tfjs';
import { HookError, ShapeError, TflensError, ValueError, expectedFound } from '../errors.js';
import type { HookContext, HookFn, HookRegistry } from '../hooks/registry.js';
import type { PackedHalf } from '../backend/webgpu/half.js';
import type { ModelConfig } from './config.js';
import * as ops from './ops.js';
import { alibiSlopes, ropeCosSinScale, ropeFor, ropeInvFreq, ropeKey } from './positions.js';

/** Past keys/values for KV-cache decoding. Keys are stored before rotary and rotated when used. */
export interface KVCache {
  /** Per layer: keys [batch, past, n_kv_heads, d_head] (pre-rotary) and values. */
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
  /** [batch, past] 1 for real tokens, 0 for padding. */
  mask: tf.Tensor2D;
  /** [batch, past] position ids of the cached keys (used for rotary / learned positions). */
  positions: tf.Tensor2D;
  /** Number of real tokens seen per row (the next position id when positions are not shifted). */
  seen: number[];
}

/**
 * What the forward needs from the model: its config and weights in the canonical layout. Weights
 * kept in half precision on the GPU are in `halfParams` (packed words) instead of `params`.
 */
export interface ForwardModel {
  readonly cfg: ModelConfig;
  readonly params: Record<string, tf.Tensor>;
  readonly halfParams?: Readonly<Record<string, PackedHalf>>;
}

/** A weight for the ops (float32 tensor or packed halves); undefined when the model has none of that name. */
function weight(m: ForwardModel, name: string): ops.Weight | undefined {
  return m.params[name] ?? m.halfParams?.[name];
}

/** A weight as float32 (packed halves decoded now; the stage's tidy frees the copy). */
function weightF32(m: ForwardModel, name: string): tf.Tensor {
  const w = weight(m, name);
  if (!w) throw new ShapeError(`params.${name}`, 'missing');
  return ops.asFloat(w);
}

/** Per-run state: the hooks, which activations to keep, and what the run is doing. */
export interface RunState {
  hooks: HookRegistry;
  /** Keep the activation of this hook point (null = keep none). */
  cacheFilter: ((name: string) => boolean) | null;
  /** Activations kept in the current layer (moved into `cache` when the layer ends). */
  kept: Record<string, tf.Tensor>;
  posSlice: [number, number] | null;
  decoding: boolean;
  pastLength: number;
  /** Called with every hook point the run passes (hook-name tracing). */
  onHookPoint?: (name: string) => void;
  /** Set while a hook function runs (a hook must not run the model). */
  inHook: { value: boolean };
}

/** cos/sin tables of one rotary setting for the queries and for every key, and the angles the fused kernel reads instead. */
export interface RotaryTables {
  q: [tf.Tensor, tf.Tensor];
  k: [tf.Tensor, tf.Tensor];
  qAngles: ops.RotaryAngles;
  kAngles: ops.RotaryAngles;
}

/** Validated inputs of one run, read on the host. */
export interface Inputs {
  tokens: tf.Tensor2D;
  B: number;
  T: number;
  /** [B, T] position ids (rotary / learned positions / ALiBi). */
  positions: tf.Tensor2D;
  /** Keys visible to the queries (cache + new tokens); the window is set per layer (maskFor). */
  mask: ops.AttnMaskSpec;
  /** Position ids of every key [B, Tk]. */
  keyPositions: tf.Tensor2D;
  /** Rotary tables, one entry per distinct rotary setting of the model (empty without rotary). */
  rotary: RotaryTables[];
  /** Per layer, the index of its tables in `rotary`. */
  layerRotary: number[];
  /** ALiBi bias [B, H, 1, Tk] added to the scores (null without ALiBi). */
  alibi: tf.Tensor | null;
  /** The same bias as per-head slopes [H] (with keyPositions), for the fused attention kernel. */
  alibiSlopes: tf.Tensor1D | null;
  /** Position ids the keys are rotated by (keyPositions, or cache indices with a StreamingLLM shift). */
  rotaryKeyPositions: tf.Tensor2D;
  /** Real tokens per row in this call (for the KV cache's `seen`). */
  seenNow: number[];
}

export interface PrepareOptions {
  past?: KVCache;
  shiftPositions?: boolean;
}

/**
 * Position ids and the visibility spec, computed on the host from the validated mask rows. Position
 * ids count real tokens (pads get 0); with a StreamingLLM shift they are indices in the cache. Rotary
 * tables are made once per run for each distinct rotary setting (scaled ropes that depend on the
 * sequence length take the run's largest position, as HF does for its whole batch).
 */
export function prepareInputs(m: ForwardModel, tokens: tf.Tensor2D, maskRows: number[][], opts: PrepareOptions): Inputs {
  const c = m.cfg;
  const [B, T] = tokens.shape;
  const past = opts.past;
  const pastLen = past ? past.mask.shape[1] : 0;
  const seenNow = maskRows.map((r) => r.reduce((a, x) => a + x, 0));
  const posRows = maskRows.map((r, b) => {
    let run = past ? past.seen[b] : 0;
    return r.map((x, t) => {
      if (past && opts.shiftPositions) return pastLen + t;
      run += x;
      return Math.max(run - 1, 0);
    });
  });
  const maxPos = Math.max(...posRows.map((r) => Math.max(...r)));
  if (c.positional === 'learned' && maxPos >= c.n_ctx) {
    throw new ValueError('tokens', expectedFound(`a sequence of at most n_ctx = ${c.n_ctx} positions`, `position ${maxPos + 1}`));
  }
  const Tk = pastLen + T;
  const plan = c.positional === 'rotary' ? rotaryPlan(c, maxPos + 1) : { tables: [], layer: [] };
  const t = tf.tidy(() => {
    const positions = tf.tensor2d(posRows, [B, T], 'int32');
    const newMask = tf.tensor2d(maskRows, [B, T], 'int32');
    const keyMask = past ? tf.concat([past.mask, newMask], 1) : newMask;
    const keyPositions = past ? tf.concat([past.positions, positions], 1) : positions.clone();
    const kp = (past && opts.shiftPositions ? tf.tile(tf.range(0, Tk, 1, 'int32').expandDims(0), [B, 1]) : keyPositions.clone()) as tf.Tensor2D;
    const style = c.rotary_style ?? 'half';
    const rotary = plan.tables.map(({ inv, scale }) => {
      const invFreq = tf.tensor1d(inv);
      return {
        q: ops.rotaryTables(positions, inv, style, scale),
        k: ops.rotaryTables(kp, inv, style, scale),
        qAngles: { positions, invFreq, scale },
        kAngles: { positions: kp, invFreq, scale },
      };
    });
    const slopes = c.positional === 'alibi' ? alibiSlopes(c.n_heads) : null;
    const alibi = slopes ? ops.alibiBias(keyPositions, slopes) : null;
    const alibiTensor = slopes ? tf.tensor1d(slopes) : null;
    return { positions, keyMask, keyPositions, kp, rotary, alibi, alibiTensor } as unknown as tf.TensorContainer;
  }) as unknown as {
    positions: tf.Tensor2D; keyMask: tf.Tensor2D; keyPositions: tf.Tensor2D; kp: tf.Tensor2D; rotary: RotaryTables[]; alibi: tf.Tensor | null; alibiTensor: tf.Tensor1D | null;
  };
  return {
    tokens, B, T, positions: t.positions, keyPositions: t.keyPositions, seenNow,
    mask: { keyMask: t.keyMask, pastLength: pastLen, window: null },
    rotary: t.rotary, layerRotary: plan.layer, alibi: t.alibi, alibiSlopes: t.alibiTensor, rotaryKeyPositions: t.kp,
  };
}

/** The distinct rotary settings of the model (inverse frequencies, cos/sin scale) and each layer's. */
function rotaryPlan(c: ModelConfig, seqLen: number): { tables: { inv: Float32Array; scale: number }[]; layer: number[] } {
  const keys: string[] = [];
  const tables: { inv: Float32Array; scale: number }[] = [];
  const layer = Array.from({ length: c.n_layers }, (_, l) => {
    const spec = ropeFor(c, l);
    const key = ropeKey(spec);
    let i = keys.indexOf(key);
    if (i < 0) {
      i = keys.push(key) - 1;
      tables.push({ inv: ropeInvFreq(spec, c.rotary_dim, seqLen), scale: ropeCosSinScale(spec.scaling) });
    }
    return i;
  });
  return { tables, layer };
}

/** The tensors of Inputs (to dispose when the run ends). */
export function inputTensors(inp: Inputs): tf.Tensor[] {
  const rot = inp.rotary.flatMap((r) => [...r.q, ...r.k, r.qAngles.invFreq]);
  return [inp.positions, inp.mask.keyMask, inp.keyPositions, inp.rotaryKeyPositions, ...rot, ...[inp.alibi, inp.alibiSlopes].filter((t): t is tf.Tensor => !!t)];
}

/** Score options of the run: the scale, soft-cap and ALiBi (as a bias tensor and as slopes for the fused kernel). */
function scoreOptions(c: ModelConfig, inp: Inputs): ops.ScoreOptions {
  return {
    scale: c.attn_scale,
    softcap: c.attn_softcap,
    bias: inp.alibi,
    alibi: inp.alibiSlopes ? { slopes: inp.alibiSlopes, keyPositions: inp.keyPositions } : null,
  };
}

/** The visibility spec of layer l: the run's keys with this layer's window (sliding-window layers). */
export function maskFor(c: ModelConfig, inp: Inputs, l: number): ops.AttnMaskSpec {
  const local = c.sliding_window !== null && (c.attn_types === null || c.attn_types[l] === 'local');
  return { ...inp.mask, window: local ? c.sliding_window : null };
}

// ---------------------------------------------------------------------------------------------
// hook points
// ---------------------------------------------------------------------------------------------

/** Whether a hook or the cache asks for this hook point (activations computed only on request use this). */
export function wants(st: RunState, name: string): boolean {
  return !!st.onHookPoint || st.hooks.hooksFor(name).length > 0 || (st.cacheFilter?.(name) ?? false);
}

/** Pass an activation through the hooks registered at `name` (each may replace it), and keep it if cached. */
export function hook<T extends tf.Tensor>(st: RunState, name: string, layer: number | null, act: T): T {
  st.onHookPoint?.(name);
  const fns = st.hooks.hooksFor(name);
  let x: tf.Tensor = act;
  if (fns.length) {
    const ctx: HookContext = { name, layer, decoding: st.decoding, pastLength: st.pastLength };
    for (const fn of fns) {
      let out: tf.Tensor | void;
      try {
        st.inHook.value = true;
        out = fn(x, ctx);
      } catch (e) {
        if (e instanceof TflensError) throw e;
        throw new HookError(name, `hook threw: ${(e as Error)?.message ?? e}`);
      } finally {
        st.inHook.value = false;
      }
      if (out === undefined || out === null) continue;
      if (!(out instanceof tf.Tensor)) throw new HookError(name, expectedFound('the hook to return a tf.Tensor or nothing', typeof out));
      if (out.shape.join(',') !== x.shape.join(',')) throw new HookError(name, expectedFound(`a tensor of shape [${x.shape}]`, `[${out.shape}]`));
      x = out.dtype === x.dtype ? out : out.cast(x.dtype);
    }
  }
  keep(st, name, x);
  return x as T;
}

/** Keep an activation in the run's cache when the cache asks for it (without running hooks). */
function keep(st: RunState, name: string, x: tf.Tensor): void {
  if (st.cacheFilter?.(name)) st.kept[name] = sliceForCache(x, name, st.posSlice);
}

/** Whether a hook function is registered at `name` (hooks may replace the activation; the cache only reads it). */
function hooked(st: RunState, name: string): boolean {
  return !!st.onHookPoint || st.hooks.hooksFor(name).length > 0;
}

const ARGMAX_READER = Symbol('tflens.lastRowArgmaxReader');
type ArgmaxRead = (argmax: tf.Tensor2D, ctx: HookContext) => void;

/**
 * A hook for `blocks.L.attn.hook_pattern` that reads only the argmax key of every head's last query
 * row (int32 [batch, head], lowest key on ties; what retrieval-head scoring records at each decoding
 * step). It changes nothing. As an ordinary hook it computes the argmax from the pattern; when every
 * hook at that point is such a reader, the fused WebGPU attention computes the argmax in the kernel
 * (from the scores, before the softmax) and no pattern is made. `read` receives a tensor that lives
 * until the layer ends (tf.keep it to hold it longer).
 */
export function lastRowArgmaxHook(read: ArgmaxRead): HookFn {
  const fn: HookFn = (pattern, ctx) => {
    read(ops.lastRowArgmax(pattern), ctx);
  };
  return Object.assign(fn, { [ARGMAX_READER]: read });
}

function argmaxReader(fn: HookFn): ArgmaxRead | null {
  return (fn as unknown as { [ARGMAX_READER]?: ArgmaxRead })[ARGMAX_READER] ?? null;
}

function sliceForCache(x: tf.Tensor, name: string, posSlice: [number, number] | null): tf.Tensor {
  // a clone: the cache owns its tensors even when a hook returned one of the caller's
  if (!posSlice) return x.clone();
  const axis = name.endsWith('hook_pattern') || name.endsWith('hook_attn_scores') ? 2 : 1;
  const n = x.shape[axis] as number;
  let [s, e] = posSlice;
  if (s < 0) s += n;
  if (e <= 0 && posSlice[0] < 0) e += n;
  const begin = x.shape.map((_, i) => (i === axis ? s : 0));
  const size = x.shape.map((d, i) => (i === axis ? e - s : d));
  return tf.slice(x, begin, size);
}

// ---------------------------------------------------------------------------------------------
// embed, blocks, unembed
// ---------------------------------------------------------------------------------------------

/** Token embedding (times embed_scale), learned positions, the embedding norm: the residual entering block 0. */
export function embed(m: ForwardModel, st: RunState, inp: Inputs): tf.Tensor3D {
  const c = m.cfg;
  const tokens = hook(st, 'hook_tokens', null, inp.tokens);
  const raw = ops.embedRows(weight(m, 'embed.W_E')!, tokens) as tf.Tensor3D;
  let e = hook(st, 'hook_embed', null, c.embed_scale ? (tf.mul(raw, c.embed_scale) as tf.Tensor3D) : raw);
  if (c.positional === 'learned') e = tf.add(e, hook(st, 'hook_pos_embed', null, ops.embedRows(weight(m, 'pos_embed.W_pos')!, inp.positions) as tf.Tensor3D));
  return c.embed_norm ? norm(m, st, e, 'embed.ln', null) : e;
}

/**
 * One transformer block: x = x + attn(ln1(x)); x = x + mlp(ln2(x)), or both from x when parallel;
 * post-norms (ln1_post, ln2_post) wrap the outputs, and a block without pre-norms reads x itself.
 */
export function block(m: ForwardModel, st: RunState, l: number, resid: tf.Tensor3D, inp: Inputs, past?: KVCache): BlockOut {
  const c = m.cfg;
  const pre = `blocks.${l}.`;
  const x = hook(st, pre + 'hook_resid_pre', l, resid);
  // on WebGPU a module's output is added to the residual inside its last matmul when nothing reads it alone
  const fusable = c.block_norms === 'pre' && ops.fusedKernels();
  const fuseAttn = fusable && !c.parallel_attn_mlp && !wants(st, pre + 'hook_attn_out');
  const a = attention(m, st, l, x, inp, past, fuseAttn ? x : null);
  let base: tf.Tensor3D;
  let attnOut: tf.Tensor3D | null = null;
  if (fuseAttn) base = hook(st, pre + 'hook_resid_mid', l, a.out);
  else {
    attnOut = hook(st, pre + 'hook_attn_out', l, postNorm(m, st, a.out, l, 'ln1_post'));
    base = c.parallel_attn_mlp ? x : hook(st, pre + 'hook_resid_mid', l, tf.add(x, attnOut) as tf.Tensor3D);
  }
  const mlpIn = hook(st, pre + 'hook_mlp_in', l, base);
  // what the MLP's output is added to: resid_mid, or resid_pre + attn_out in a parallel block
  const res = c.parallel_attn_mlp ? (tf.add(x, attnOut!) as tf.Tensor3D) : base;
  let out: tf.Tensor3D;
  if (fusable && !c.moe?.layers[l] && !wants(st, pre + 'hook_mlp_out')) out = mlp(m, st, l, preNorm(m, st, mlpIn, l, 'ln2'), res);
  else out = tf.add(res, hook(st, pre + 'hook_mlp_out', l, postNorm(m, st, mlp(m, st, l, preNorm(m, st, mlpIn, l, 'ln2')), l, 'ln2_post')));
  return { resid: hook(st, pre + 'hook_resid_post', l, out), k: a.k, v: a.v };
}

export interface BlockOut {
  resid: tf.Tensor3D;
  /** Keys (after their norms, before rotary) and values of every visible position, for the KV cache. */
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** The final norm and the unembedding (of every position, or of one position per row); then the final soft-cap. */
export function unembed(m: ForwardModel, st: RunState, resid: tf.Tensor3D, inp: Inputs, logitPositions?: number[]): tf.Tensor3D {
  const c = m.cfg;
  const P = m.params;
  let fin = resid;
  if (logitPositions) {
    const { B, T } = inp;
    if (logitPositions.length !== B) throw new ShapeError('logitPositions', expectedFound(`${B} positions (one per row)`, logitPositions.length));
    const idx = tf.tensor1d(logitPositions.map((p, b) => b * T + (p < 0 ? p + T : p)), 'int32');
    fin = tf.gather(tf.reshape(resid, [B * T, c.d_model]), idx).reshape([B, 1, c.d_model]);
  }
  const uin = hook(st, 'unembed.hook_in', null, norm(m, st, fin, 'ln_final', null));
  const [b2, t2] = uin.shape;
  const logits = ops.linear(tf.reshape(uin, [b2 * t2, c.d_model]) as tf.Tensor2D, weight(m, 'unembed.W_U')!, P['unembed.b_U']).reshape([b2, t2, c.d_vocab]);
  const out = hook(st, 'unembed.hook_out', null, logits as tf.Tensor3D);
  return c.final_softcap ? (ops.softcap(out, c.final_softcap) as tf.Tensor3D) : out;
}

/**
 * A LayerNorm / RMSNorm module at `name` (blocks.L.ln1, ln_final, embed.ln, ...): hook_scale, then
 * hook_normalized (after the weight and bias, which are absent for parameter-free norms or after fold_ln).
 */
function norm<T extends tf.Tensor>(m: ForwardModel, st: RunState, x: T, name: string, l: number | null): T {
  return normModule(st, x, name, l, m.cfg.normalization, m.cfg.eps, m.params[`${name}.w`], m.params[`${name}.b`]);
}

/**
 * hook_scale then hook_normalized of a norm module. One fused kernel (which also writes the scale when
 * the cache asks for it) unless a hook on hook_scale may replace the scale the output is computed from.
 */
function normModule<T extends tf.Tensor>(st: RunState, x: T, name: string, l: number | null, kind: ops.NormKind, eps: number, w?: tf.Tensor, b?: tf.Tensor, scaleOnly = false): T {
  const scaleName = `${name}.hook_scale`;
  let y: tf.Tensor;
  if (ops.fusedKernels() && !hooked(st, scaleName)) {
    const r = ops.norm(x, kind, eps, w, b, { wantScale: wants(st, scaleName) });
    if (r.scale) keep(st, scaleName, r.scale);
    y = r.y;
  } else {
    const scale = hook(st, scaleName, l, ops.normScale(x, kind, eps));
    y = ops.normApply(x, scale, kind, w, b);
  }
  // scaleOnly: the caller reshapes the output before hook_normalized (q/k norms over all heads)
  return (scaleOnly ? y : hook(st, `${name}.hook_normalized`, l, y)) as T;
}

/** ln1 / ln2 of block l, unless the family has no norms before attention and MLP (OLMo 2). */
function preNorm<T extends tf.Tensor>(m: ForwardModel, st: RunState, x: T, l: number, which: 'ln1' | 'ln2'): T {
  return m.cfg.block_norms === 'post' ? x : norm(m, st, x, `blocks.${l}.${which}`, l);
}

/** ln1_post / ln2_post of block l, when the family has norms after attention and MLP (Gemma 2/3, OLMo 2). */
function postNorm<T extends tf.Tensor>(m: ForwardModel, st: RunState, x: T, l: number, which: 'ln1_post' | 'ln2_post'): T {
  return m.cfg.block_norms === 'pre' ? x : norm(m, st, x, `blocks.${l}.${which}`, l);
}

/** Residual [B, T, d] repeated per head: [B, T, n, d] (TransformerLens's split-input hook points). */
function perHead(x: tf.Tensor, n: number): tf.Tensor4D {
  return tf.tile(x.expandDims(2), [1, 1, n, 1]) as tf.Tensor4D;
}

/** Q, K, V [B, T, heads, d_head] from the normalised residual (one fused matmul), or per head from split inputs. */
function projectQKV(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D): { q: tf.Tensor; k: tf.Tensor; v: tf.Tensor } {
  const c = m.cfg;
  const pre = `blocks.${l}.`;
  const [B, T, d] = x.shape;
  const { n_heads: H, n_kv_heads: K, d_head: dh } = c;
  const split = ['hook_attn_in', 'attn.hook_q_input', 'attn.hook_k_input', 'attn.hook_v_input'].some((n) => wants(st, pre + n));
  if (!split) {
    // one product per projection, reading W_Q / W_K / W_V [heads, d_model, d_head] as they are stored
    const x2 = tf.reshape(preNorm(m, st, x, l, 'ln1'), [B * T, d]) as tf.Tensor2D;
    const a = `${pre}attn.`;
    const proj = (n: 'Q' | 'K' | 'V', heads: number) => ops.linearHeads(x2, weight(m, `${a}W_${n}`)!, m.params[`${a}b_${n}`]).reshape([B, T, heads, dh]);
    return { q: proj('Q', H), k: proj('K', K), v: proj('V', K) };
  }
  // TransformerLens's use_attn_in / use_split_qkv_input: each head reads its own copy of the residual
  const attnIn = hook(st, pre + 'hook_attn_in', l, perHead(x, H));
  const qIn = hook(st, pre + 'attn.hook_q_input', l, attnIn);
  const kvBase = K === H ? attnIn : perHead(x, K);
  const kIn = hook(st, pre + 'attn.hook_k_input', l, kvBase);
  const vIn = hook(st, pre + 'attn.hook_v_input', l, kvBase);
  const P = m.params;
  const a = `${pre}attn.`;
  const quiet = (inp: tf.Tensor) => {
    if (c.block_norms === 'post') return inp;
    return ops.normApply(inp, ops.normScale(inp, c.normalization, c.eps), c.normalization, P[`${pre}ln1.w`], P[`${pre}ln1.b`]);
  };
  const proj = (inp: tf.Tensor, W: string, b: string, hooked: boolean) => {
    const n = inp.shape[2] as number;
    const xn = hooked ? preNorm(m, st, inp, l, 'ln1') : quiet(inp);
    const y = tf.matMul(tf.transpose(tf.reshape(xn, [B * T, n, d]), [1, 0, 2]), weightF32(m, a + W) as tf.Tensor3D); // [n, BT, dh]
    const withBias = P[a + b] ? tf.add(y, P[a + b].expandDims(1)) : y;
    return tf.transpose(withBias, [1, 0, 2]).reshape([B, T, n, dh]);
  };
  return { q: proj(qIn, 'W_Q', 'b_Q', true), k: proj(kIn, 'W_K', 'b_K', false), v: proj(vIn, 'W_V', 'b_V', false) };
}

/**
 * A query or key norm (q_norm / k_norm) on [B, T, heads, d_head]: per head, or over all heads of a
 * token (scope 'all'); hook_scale is [B, T, heads, 1] (or [B, T, 1, 1]), hook_normalized [B, T, heads, d_head].
 */
function qkNorm(m: ForwardModel, st: RunState, x: tf.Tensor, l: number, which: 'q_norm' | 'k_norm'): tf.Tensor {
  const c = m.cfg;
  const spec = c.qk_norm!;
  const name = `blocks.${l}.attn.${which}`;
  const w = m.params[`${name}.w`];
  const b = m.params[`${name}.b`];
  if (spec.scope !== 'all') return normModule(st, x, name, l, spec.kind, c.eps, w, b);
  // over all heads of a token: the norm runs on [B, T, 1, n dh]; hook_normalized shows [B, T, n, dh]
  const [B, T, n, dh] = x.shape;
  const flat = (t: tf.Tensor | undefined) => (t ? tf.reshape(t, [n * dh]) : t);
  const y = normModule(st, tf.reshape(x, [B, T, 1, n * dh]), name, l, spec.kind, c.eps, flat(w), flat(b), true);
  return hook(st, `${name}.hook_normalized`, l, tf.reshape(y, [B, T, n, dh]));
}

/**
 * Self-attention of layer l: q/k/v, clipping and q/k norms, rotary, scores, pattern, z, and the output
 * projection (plus `residual` when given: resid_mid in one kernel on WebGPU).
 */
function attention(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D, inp: Inputs, past?: KVCache, residual: tf.Tensor3D | null = null): { out: tf.Tensor3D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const c = m.cfg;
  const pre = `blocks.${l}.attn.`;
  const p = projectQKV(m, st, l, x);
  let q = hook(st, pre + 'hook_q', l, p.q);
  let k = hook(st, pre + 'hook_k', l, p.k);
  let v = hook(st, pre + 'hook_v', l, p.v);
  if (c.clip_qkv) [q, k, v] = [q, k, v].map((t) => ops.clip(t, c.clip_qkv!));
  if (c.qk_norm) {
    q = qkNorm(m, st, q, l, 'q_norm');
    k = qkNorm(m, st, k, l, 'k_norm');
  }
  const kAllRaw = (past ? tf.concat([past.k[l], k], 1) : k) as tf.Tensor4D;
  const vAll = (past ? tf.concat([past.v[l], v], 1) : v) as tf.Tensor4D;
  const r = rotate(m, st, l, q, kAllRaw, inp);
  const z = hook(st, pre + 'hook_z', l, scoresToZ(m, st, l, r.q, r.k, vAll, inp));
  return { out: outputProjection(m, st, l, z, inp, residual), k: kAllRaw, v: vAll };
}

/** Rotary embedding of the queries and of every key (only the new keys pass hook_rot_k); identity without rotary. */
function rotate(m: ForwardModel, st: RunState, l: number, q: tf.Tensor, kAll: tf.Tensor4D, inp: Inputs): { q: tf.Tensor; k: tf.Tensor } {
  if (!inp.rotary.length) return { q, k: kAll };
  const pre = `blocks.${l}.attn.`;
  const style = m.cfg.rotary_style ?? 'half';
  const tables = inp.rotary[inp.layerRotary[l]];
  const rq = hook(st, pre + 'hook_rot_q', l, ops.rotary(q, tables.q, style, tables.qAngles));
  const kRot = ops.rotary(kAll, tables.k, style, tables.kAngles);
  const { B, T } = inp;
  const [, Tk, K, dh] = kAll.shape;
  // cached keys were hooked when they were new
  if (Tk === T) return { q: rq, k: hook(st, pre + 'hook_rot_k', l, kRot) };
  if (!hooked(st, pre + 'hook_rot_k') && !wants(st, pre + 'hook_rot_k')) return { q: rq, k: kRot };
  const newRot = hook(st, pre + 'hook_rot_k', l, tf.slice(kRot, [0, Tk - T, 0, 0], [B, T, K, dh]));
  return { q: rq, k: tf.concat([tf.slice(kRot, [0, 0, 0, 0], [B, Tk - T, K, dh]), newRot], 1) };
}

/**
 * Scores, pattern and the value mix. A hook at hook_attn_scores / hook_pattern (which may read or replace
 * them) takes the split path; otherwise one ops.attention call, which computes the scores and the
 * pattern only for the cache, and only the last row's argmax for lastRowArgmaxHook readers.
 */
function scoresToZ(m: ForwardModel, st: RunState, l: number, q: tf.Tensor, kAll: tf.Tensor, vAll: tf.Tensor, inp: Inputs): tf.Tensor {
  const c = m.cfg;
  const pre = `blocks.${l}.attn.`;
  const spec = maskFor(c, inp, l);
  const so = scoreOptions(c, inp);
  const scoresName = pre + 'hook_attn_scores';
  const patternName = pre + 'hook_pattern';
  const readers = st.hooks.hooksFor(patternName).map(argmaxReader);
  const onlyReaders = readers.length > 0 && readers.every((r) => r !== null) && !hooked(st, scoresName);
  if (!onlyReaders && (hooked(st, scoresName) || hooked(st, patternName))) {
    const mask = ops.additiveMask(spec, inp.T);
    let scores = hook(st, scoresName, l, ops.attentionScores(q, kAll, mask, so));
    scores = tf.add(scores, mask) as tf.Tensor4D; // masked keys stay masked whatever a hook wrote
    return ops.mixValues(hook(st, patternName, l, ops.attentionPattern(scores, mask)), vAll);
  }
  const r = ops.attention(q, kAll, vAll, spec, so, { scores: wants(st, scoresName), pattern: wants(st, patternName), lastArgmax: onlyReaders });
  if (r.scores) keep(st, scoresName, r.scores);
  if (r.pattern) keep(st, patternName, r.pattern);
  if (r.lastArgmax) {
    const ctx: HookContext = { name: patternName, layer: l, decoding: st.decoding, pastLength: st.pastLength };
    for (const read of readers) read!(r.lastArgmax, ctx);
  }
  return r.z;
}

/** z W_O + b_O (+ residual), through hook_result (each head's output) when it is asked for. */
function outputProjection(m: ForwardModel, st: RunState, l: number, zh: tf.Tensor, inp: Inputs, residual: tf.Tensor3D | null): tf.Tensor3D {
  const pre = `blocks.${l}.attn.`;
  const bO = m.params[pre + 'b_O'];
  const { B, T } = inp;
  const { n_heads: H, d_head: dh, d_model: d } = m.cfg;
  if (wants(st, pre + 'hook_result')) {
    const per = tf.transpose(tf.reshape(zh, [B * T, H, dh]), [1, 0, 2]); // [H, BT, dh]
    const res = tf.transpose(tf.matMul(per, weightF32(m, pre + 'W_O') as tf.Tensor3D), [1, 0, 2]).reshape([B, T, H, d]);
    let out = tf.sum(hook(st, pre + 'hook_result', l, res), 2);
    if (bO) out = tf.add(out, bO);
    return (residual ? tf.add(out, residual) : out) as tf.Tensor3D;
  }
  // W_O [H, d_head, d_model] read as the [H d_head, d_model] matrix it is in memory
  const WO = ops.reshapeWeight(weight(m, pre + 'W_O')!, [H * dh, d]);
  const res2 = residual ? (tf.reshape(residual, [B * T, d]) as tf.Tensor2D) : null;
  return ops.linear(tf.reshape(zh, [B * T, H * dh]) as tf.Tensor2D, WO, bO, { residual: res2 }).reshape([B, T, d]);
}

/** The MLP of layer l: dense (gated or not) or mixture of experts (plus `residual` when given, dense only). */
function mlp(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D, residual: tf.Tensor3D | null = null): tf.Tensor3D {
  const c = m.cfg;
  if (c.moe?.layers[l]) return moe(m, st, l, x);
  return denseMlp(m, st, `blocks.${l}.mlp.`, l, x, residual);
}

/**
 * act(x W_in + b_in) W_out + b_out, or act(x W_gate + b_gate) * (x W_in + b_in) W_out + b_out for gated
 * MLPs (+ residual when given); `pre` names both the parameters and the hook points (blocks.L.mlp. or
 * a shared expert's). On WebGPU the activation is fused into the input product (one kernel for both
 * gated products) unless hook_pre / hook_pre_linear is asked for.
 */
function denseMlp(m: ForwardModel, st: RunState, pre: string, l: number, x: tf.Tensor3D, residual: tf.Tensor3D | null = null): tf.Tensor3D {
  const c = m.cfg;
  const P = m.params;
  const [B, T, d] = x.shape;
  const W = (n: string) => weight(m, pre + n)!;
  const width = W('W_in').shape[1] as number;
  const x2 = tf.reshape(x, [B * T, d]) as tf.Tensor2D;
  const proj = (w: string, b: string) => ops.linear(x2, W(w), P[pre + b]).reshape([B, T, width]);
  const fused = ops.fusedKernels();
  let post: tf.Tensor;
  if (c.gated_mlp) {
    if (fused && !wants(st, pre + 'hook_pre') && !wants(st, pre + 'hook_pre_linear')) {
      post = ops.gatedLinear(x2, W('W_gate'), W('W_in'), c.act_fn, P[pre + 'b_gate'], P[pre + 'b_in']).reshape([B, T, width]);
    } else {
      const gate = hook(st, pre + 'hook_pre', l, proj('W_gate', 'b_gate'));
      const lin = hook(st, pre + 'hook_pre_linear', l, proj('W_in', 'b_in'));
      post = tf.mul(ops.activation(c.act_fn, gate), lin);
    }
  } else if (fused && !wants(st, pre + 'hook_pre')) {
    post = ops.linear(x2, W('W_in'), P[pre + 'b_in'], { activation: c.act_fn }).reshape([B, T, width]);
  } else {
    post = ops.activation(c.act_fn, hook(st, pre + 'hook_pre', l, proj('W_in', 'b_in')));
  }
  post = hook(st, pre + 'hook_post', l, post);
  const res2 = residual ? (tf.reshape(residual, [B * T, d]) as tf.Tensor2D) : null;
  return ops.linear(tf.reshape(post, [B * T, width]) as tf.Tensor2D, W('W_out'), P[pre + 'b_out'], { residual: res2 }).reshape([B, T, d]) as tf.Tensor3D;
}

/**
 * Mixture of experts: router logits -> softmax (hook_expert_weights) -> top-k experts (hook_expert_indices)
 * with their weights (renormalised or not: hook_topk_weights); every expert runs on every token
 * (experts.hook_* [B, T, E, ...]) and the output sums the chosen ones, plus a gated shared expert.
 */
function moe(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D): tf.Tensor3D {
  const c = m.cfg;
  const e = c.moe!;
  const pre = `blocks.${l}.mlp.`;
  const [B, T, d] = x.shape;
  const x2 = tf.reshape(x, [B * T, d]) as tf.Tensor2D;
  const logits = hook(st, pre + 'hook_router_logits', l, ops.linear(x2, weight(m, pre + 'W_router')!).reshape([B, T, e.n_experts]));
  const probs = hook(st, pre + 'hook_expert_weights', l, tf.softmax(logits, -1));
  const top = ops.topExperts(probs, e.top_k, e.norm_topk_prob);
  const idx = hook(st, pre + 'hook_expert_indices', l, top.indices);
  const w = hook(st, pre + 'hook_topk_weights', l, top.weights);
  const outs = hook(st, pre + 'experts.hook_out', l, experts(m, st, l, x2, B, T));
  let y = ops.combineExperts(outs, idx, w, e.n_experts);
  if (e.d_shared > 0) {
    const shared = hook(st, pre + 'shared_expert.hook_out', l, denseMlp(m, st, pre + 'shared_expert.', l, x));
    const gate = hook(st, pre + 'hook_shared_gate', l, ops.linear(x2, weight(m, pre + 'W_shared_gate')!).reshape([B, T, 1]));
    y = tf.add(y, tf.mul(tf.sigmoid(gate), shared));
  }
  return y as tf.Tensor3D;
}

/** Every expert's gated MLP on every token: hook_pre / hook_pre_linear / hook_post [B, T, E, d_expert]; output [B, T, E, d]. */
function experts(m: ForwardModel, st: RunState, l: number, x2: tf.Tensor2D, B: number, T: number): tf.Tensor4D {
  const c = m.cfg;
  const { n_experts: E, d_expert: w } = c.moe!;
  const pre = `blocks.${l}.mlp.experts.`;
  const gate = hook(st, pre + 'hook_pre', l, ops.linearExperts(x2, weight(m, pre + 'W_gate')!).reshape([B, T, E, w]));
  const lin = hook(st, pre + 'hook_pre_linear', l, ops.linearExperts(x2, weight(m, pre + 'W_in')!).reshape([B, T, E, w]));
  const post = hook(st, pre + 'hook_post', l, tf.mul(ops.activation(c.act_fn, gate), lin));
  return ops.expertsOut(post, weight(m, pre + 'W_out')!);
}

// ---------------------------------------------------------------------------------------------
// the layer loop
// ---------------------------------------------------------------------------------------------

export interface LoopOptions extends PrepareOptions {
  useCache?: boolean;
  startAtLayer?: number;
  stopAtLayer?: number;
  residual?: tf.Tensor;
  logitPositions?: number[];
}

export interface ForwardResult {
  logits: tf.Tensor3D;
  cache: Record<string, tf.Tensor>;
  kv?: KVCache;
  /** Residual stream when stopAtLayer < n_layers. */
  residual?: tf.Tensor3D;
}

/** What a step of the forward kept: the names it added to `cache` (the run's cache object). */
export interface StepKept {
  names: string[];
  cache: Record<string, tf.Tensor>;
}

/**
 * The forward as steps: it yields the names of the activations each stage kept (after embed, after
 * every block, after unembed) so that a driver may move them off the device between layers; it
 * returns the logits, the kept activations and (when asked) the KV cache. Every stage is one tf.tidy.
 */
export function* forwardSteps(m: ForwardModel, st: RunState, tokens: tf.Tensor2D, maskRows: number[][], o: LoopOptions): Generator<StepKept, ForwardResult, void> {
  const c = m.cfg;
  const start = o.startAtLayer ?? 0;
  const stop = o.stopAtLayer ?? c.n_layers;
  if (!Number.isInteger(start) || start < 0 || start > c.n_layers) throw new ValueError('startAtLayer', expectedFound(`a layer in [0, ${c.n_layers}]`, start));
  if (!Number.isInteger(stop) || stop < start || stop > c.n_layers) throw new ValueError('stopAtLayer', expectedFound(`a layer in [${start}, ${c.n_layers}]`, stop));
  const [B, T] = tokens.shape;
  if ((start > 0 || o.residual) && !o.residual) throw new ValueError('residual', 'startAtLayer needs the residual input of that layer');
  if (o.residual && o.residual.shape.join(',') !== [B, T, c.d_model].join(',')) throw new ShapeError('residual', expectedFound(`[${[B, T, c.d_model]}]`, `[${o.residual.shape}]`));
  const cache: Record<string, tf.Tensor> = {};
  const ks: tf.Tensor4D[] = [];
  const vs: tf.Tensor4D[] = [];
  let inp: Inputs | null = null;
  let resid: tf.Tensor3D | null = null;
  /** Run one stage in a tidy; it keeps its returned tensors and the activations it cached. */
  let keptNames: string[] = [];
  const stage = <R extends tf.TensorContainer>(f: () => R): R => {
    st.kept = {};
    const r = tf.tidy(() => ({ r: f(), kept: st.kept }) as unknown as tf.TensorContainer) as unknown as { r: R; kept: Record<string, tf.Tensor> };
    Object.assign(cache, r.kept);
    keptNames = Object.keys(r.kept);
    st.kept = {};
    return r.r;
  };
  try {
    inp = prepareInputs(m, tokens, maskRows, o);
    const i0 = inp;
    resid = o.residual ? (o.residual.clone() as tf.Tensor3D) : stage(() => embed(m, st, i0).clone());
    yield { names: keptNames, cache };
    for (let l = start; l < stop; l++) {
      const x = resid;
      const r = stage(() => {
        const b = block(m, st, l, x, i0, o.past);
        return { resid: b.resid.clone(), k: b.k.clone(), v: b.v.clone() };
      });
      x.dispose();
      resid = r.resid as tf.Tensor3D;
      if (o.useCache || o.past) {
        ks.push(r.k as tf.Tensor4D);
        vs.push(r.v as tf.Tensor4D);
      } else tf.dispose([r.k, r.v]);
      yield { names: keptNames, cache };
    }
    const result: ForwardResult = { logits: undefined as unknown as tf.Tensor3D, cache };
    if (o.useCache || o.past) {
      result.kv = {
        k: ks.splice(0),
        v: vs.splice(0),
        mask: inp.mask.keyMask.clone(),
        positions: inp.keyPositions.clone(),
        seen: (o.past ? o.past.seen : new Array(B).fill(0)).map((s, i) => s + i0.seenNow[i]),
      };
    }
    if (stop < c.n_layers) {
      result.residual = resid;
      resid = null;
      result.logits = tf.zeros([B, 0, c.d_vocab]) as tf.Tensor3D;
      return result;
    }
    const fin = resid;
    result.logits = stage(() => unembed(m, st, fin, i0, o.logitPositions).clone());
    yield { names: keptNames, cache };
    return result;
  } catch (e) {
    tf.dispose([...Object.values(cache), ...ks, ...vs]);
    throw e;
  } finally {
    if (resid) resid.dispose();
    if (inp) tf.dispose(inputTensors(inp));
  }
}
