/**
 * The forward pass, in the order data takes: prepareInputs -> embed -> blocks -> unembed.
 * Every hook point is one `hook(st, name, ...)` call here, so the model's hook list is whatever
 * this file calls (HookedTransformer.hookNames traces it). Each layer runs in its own tf.tidy:
 * a layer's intermediates are freed when it ends, and only the residual, the requested cache
 * entries and the new keys/values survive it.
 */
import * as tf from '@tensorflow/tfjs';
import { HookError, ShapeError, TflensError, ValueError, expectedFound } from '../errors.js';
import type { HookContext, HookRegistry } from '../hooks/registry.js';
import type { ModelConfig } from './config.js';
import * as ops from './ops.js';

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

/** What the forward needs from the model: its config, weights and derived tables. */
export interface ForwardModel {
  readonly cfg: ModelConfig;
  readonly params: Record<string, tf.Tensor>;
  /** Q, K and V weights as one [d_model, (H + 2K) d_head] matrix and its bias (or null). */
  fusedQKV(layer: number): { W: tf.Tensor; bias: tf.Tensor | null };
  /** W_O as [H d_head, d_model]. */
  fusedWO(layer: number): tf.Tensor;
  /** Rotary inverse frequencies [rotary_dim / 2]. */
  invFreq(): Float32Array;
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

/** Validated inputs of one run, read on the host. */
export interface Inputs {
  tokens: tf.Tensor2D;
  B: number;
  T: number;
  /** [B, T] position ids (rotary / learned positions). */
  positions: tf.Tensor2D;
  /** Keys visible to the queries (cache + new tokens). */
  mask: ops.AttnMaskSpec;
  /** Position ids of every key [B, Tk]. */
  keyPositions: tf.Tensor2D;
  rotQ: [tf.Tensor, tf.Tensor] | null;
  rotK: [tf.Tensor, tf.Tensor] | null;
  /** Real tokens per row in this call (for the KV cache's `seen`). */
  seenNow: number[];
}

export interface PrepareOptions {
  past?: KVCache;
  shiftPositions?: boolean;
}

/**
 * Position ids and the visibility spec, computed on the host from the validated mask rows. Position
 * ids count real tokens (pads get 0); with a StreamingLLM shift they are indices in the cache.
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
  if (maxPos >= c.n_ctx) {
    throw new ValueError('tokens', expectedFound(`a sequence of at most n_ctx = ${c.n_ctx} positions`, `position ${maxPos + 1}`));
  }
  const Tk = pastLen + T;
  const t = tf.tidy(() => {
    const positions = tf.tensor2d(posRows, [B, T], 'int32');
    const newMask = tf.tensor2d(maskRows, [B, T], 'int32');
    const keyMask = past ? tf.concat([past.mask, newMask], 1) : newMask;
    const keyPositions = past ? tf.concat([past.positions, positions], 1) : positions.clone();
    const rot: tf.Tensor[] = [];
    if (c.positional === 'rotary') {
      const inv = m.invFreq();
      const kp = past && opts.shiftPositions ? tf.tile(tf.range(0, Tk, 1, 'int32').expandDims(0), [B, 1]) : keyPositions;
      rot.push(...ops.rotaryTables(positions, inv, c.rotary_style ?? 'half'), ...ops.rotaryTables(kp as tf.Tensor2D, inv, c.rotary_style ?? 'half'));
    }
    return { positions, keyMask, keyPositions, rot } as unknown as tf.TensorContainer;
  }) as unknown as { positions: tf.Tensor2D; keyMask: tf.Tensor2D; keyPositions: tf.Tensor2D; rot: tf.Tensor[] };
  const [qc, qs, kc, ks] = t.rot;
  return {
    tokens, B, T, positions: t.positions, keyPositions: t.keyPositions, seenNow,
    mask: { keyMask: t.keyMask, pastLength: pastLen, window: c.sliding_window },
    rotQ: t.rot.length ? [qc, qs] : null,
    rotK: t.rot.length ? [kc, ks] : null,
  };
}

/** The tensors of Inputs (to dispose when the run ends). */
export function inputTensors(inp: Inputs): tf.Tensor[] {
  return [inp.positions, inp.mask.keyMask, inp.keyPositions, ...(inp.rotQ ?? []), ...(inp.rotK ?? [])];
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
  if (st.cacheFilter?.(name)) st.kept[name] = sliceForCache(x, name, st.posSlice);
  return x as T;
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

/** Token (and learned position) embeddings: the residual stream entering block 0. */
export function embed(m: ForwardModel, st: RunState, inp: Inputs): tf.Tensor3D {
  const P = m.params;
  const tokens = hook(st, 'hook_tokens', null, inp.tokens);
  const e = hook(st, 'hook_embed', null, tf.gather(P['embed.W_E'], tokens) as tf.Tensor3D);
  if (m.cfg.positional !== 'learned') return e;
  const pe = hook(st, 'hook_pos_embed', null, tf.gather(P['pos_embed.W_pos'], inp.positions) as tf.Tensor3D);
  return tf.add(e, pe) as tf.Tensor3D;
}

/** One transformer block: x = x + attn(ln1(x)); x = x + mlp(ln2(x)) (or both from x when parallel). */
export function block(m: ForwardModel, st: RunState, l: number, resid: tf.Tensor3D, inp: Inputs, past?: KVCache): BlockOut {
  const pre = `blocks.${l}.`;
  const x = hook(st, pre + 'hook_resid_pre', l, resid);
  const { out, k, v } = attention(m, st, l, x, inp, past);
  const attnOut = hook(st, pre + 'hook_attn_out', l, out);
  let resid2: tf.Tensor3D;
  if (m.cfg.parallel_attn_mlp) {
    const mlpOut = hook(st, pre + 'hook_mlp_out', l, mlp(m, st, l, norm(m, st, hook(st, pre + 'hook_mlp_in', l, x), l, 'ln2')));
    resid2 = tf.add(tf.add(x, attnOut), mlpOut) as tf.Tensor3D;
  } else {
    const mid = hook(st, pre + 'hook_resid_mid', l, tf.add(x, attnOut) as tf.Tensor3D);
    const mlpOut = hook(st, pre + 'hook_mlp_out', l, mlp(m, st, l, norm(m, st, hook(st, pre + 'hook_mlp_in', l, mid), l, 'ln2')));
    resid2 = tf.add(mid, mlpOut) as tf.Tensor3D;
  }
  return { resid: hook(st, pre + 'hook_resid_post', l, resid2), k, v };
}

export interface BlockOut {
  resid: tf.Tensor3D;
  /** Keys (pre-rotary) and values of every visible position, for the KV cache. */
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** The final norm and the unembedding (of every position, or of one position per row). */
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
  const xf = norm(m, st, fin, null, 'ln_final');
  const uin = hook(st, 'unembed.hook_in', null, xf);
  const [b2, t2] = uin.shape;
  const logits = ops.linear(tf.reshape(uin, [b2 * t2, c.d_model]) as tf.Tensor2D, P['unembed.W_U'], P['unembed.b_U']).reshape([b2, t2, c.d_vocab]);
  return hook(st, 'unembed.hook_out', null, logits as tf.Tensor3D);
}

/** LayerNorm / RMSNorm with hook_scale and hook_normalized (`which` is ln1, ln2 or ln_final). */
function norm<T extends tf.Tensor>(m: ForwardModel, st: RunState, x: T, l: number | null, which: 'ln1' | 'ln2' | 'ln_final'): T {
  const prefix = l === null ? which : `blocks.${l}.${which}`;
  const wName = l === null ? 'ln_final' : `blocks.${l}.${which}`;
  const kind = m.cfg.normalization;
  const scale = hook(st, `${prefix}.hook_scale`, l, ops.normScale(x, kind, m.cfg.eps));
  const y = ops.normApply(x, scale, kind, m.params[`${wName}.w`], m.params[`${wName}.b`]);
  return hook(st, `${prefix}.hook_normalized`, l, y) as T;
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
    const xn = norm(m, st, x, l, 'ln1');
    const { W, bias } = m.fusedQKV(l);
    const qkv = ops.linear(tf.reshape(xn, [B * T, d]) as tf.Tensor2D, W, bias);
    const [q2, k2, v2] = tf.split(qkv, [H * dh, K * dh, K * dh], 1);
    return { q: q2.reshape([B, T, H, dh]), k: k2.reshape([B, T, K, dh]), v: v2.reshape([B, T, K, dh]) };
  }
  // TransformerLens's use_attn_in / use_split_qkv_input: each head reads its own copy of the residual
  const attnIn = hook(st, pre + 'hook_attn_in', l, perHead(x, H));
  const qIn = hook(st, pre + 'attn.hook_q_input', l, attnIn);
  const kvBase = K === H ? attnIn : perHead(x, K);
  const kIn = hook(st, pre + 'attn.hook_k_input', l, kvBase);
  const vIn = hook(st, pre + 'attn.hook_v_input', l, kvBase);
  const P = m.params;
  const a = `${pre}attn.`;
  const proj = (inp: tf.Tensor, W: string, b: string, hooked: boolean) => {
    const n = inp.shape[2] as number;
    const xn = hooked ? norm(m, st, inp, l, 'ln1') : ops.normApply(inp, ops.normScale(inp, c.normalization, c.eps), c.normalization, P[`${pre}ln1.w`], P[`${pre}ln1.b`]);
    const y = tf.matMul(tf.transpose(tf.reshape(xn, [B * T, n, d]), [1, 0, 2]), P[a + W] as tf.Tensor3D); // [n, BT, dh]
    const withBias = P[a + b] ? tf.add(y, P[a + b].expandDims(1)) : y;
    return tf.transpose(withBias, [1, 0, 2]).reshape([B, T, n, dh]);
  };
  return { q: proj(qIn, 'W_Q', 'b_Q', true), k: proj(kIn, 'W_K', 'b_K', false), v: proj(vIn, 'W_V', 'b_V', false) };
}

/** Self-attention of layer l: q/k/v, rotary, scores, pattern, z, and the output projection. */
function attention(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D, inp: Inputs, past?: KVCache): { out: tf.Tensor3D; k: tf.Tensor4D; v: tf.Tensor4D } {
  const c = m.cfg;
  const P = m.params;
  const pre = `blocks.${l}.attn.`;
  const { B, T } = inp;
  const { n_heads: H, n_kv_heads: K, d_head: dh, d_model: d } = c;
  const p = projectQKV(m, st, l, x);
  let q = hook(st, pre + 'hook_q', l, p.q);
  const k = hook(st, pre + 'hook_k', l, p.k) as tf.Tensor4D;
  const v = hook(st, pre + 'hook_v', l, p.v) as tf.Tensor4D;
  const kAllRaw = past ? (tf.concat([past.k[l], k], 1) as tf.Tensor4D) : k;
  const vAll = past ? (tf.concat([past.v[l], v], 1) as tf.Tensor4D) : v;
  let kAll: tf.Tensor = kAllRaw;
  if (inp.rotQ && inp.rotK) {
    q = hook(st, pre + 'hook_rot_q', l, ops.rotary(q, inp.rotQ, c.rotary_style ?? 'half'));
    const Tk = kAllRaw.shape[1];
    // only the new keys pass the hook; cached keys were hooked when they were new
    const kRot = ops.rotary(kAllRaw, inp.rotK, c.rotary_style ?? 'half');
    const newRot = hook(st, pre + 'hook_rot_k', l, past ? tf.slice(kRot, [0, Tk - T, 0, 0], [B, T, K, dh]) : kRot);
    kAll = past ? tf.concat([tf.slice(kRot, [0, 0, 0, 0], [B, Tk - T, K, dh]), newRot], 1) : newRot;
  }
  const so: ops.ScoreOptions = { scale: c.attn_scale };
  const scoresName = pre + 'hook_attn_scores';
  const patternName = pre + 'hook_pattern';
  let z: tf.Tensor;
  if (st.hooks.hooksFor(scoresName).length || st.hooks.hooksFor(patternName).length || st.onHookPoint) {
    // a hook may read or replace the scores or the pattern: the unfused path, split where the hooks are
    const mask = ops.additiveMask(inp.mask, T);
    let scores = hook(st, scoresName, l, ops.attentionScores(q, kAll, mask, so));
    scores = tf.add(scores, mask) as tf.Tensor4D; // masked keys stay masked whatever a hook wrote
    const pattern = hook(st, patternName, l, ops.attentionPattern(scores));
    z = ops.mixValues(pattern, vAll);
  } else {
    const wantScores = st.cacheFilter?.(scoresName) ?? false;
    const wantPattern = st.cacheFilter?.(patternName) ?? false;
    const r = ops.attention(q, kAll, vAll, inp.mask, so, { scores: wantScores, pattern: wantPattern });
    if (r.scores) hook(st, scoresName, l, r.scores);
    if (r.pattern) hook(st, patternName, l, r.pattern);
    z = r.z;
  }
  const zh = hook(st, pre + 'hook_z', l, z);
  let out: tf.Tensor;
  if (wants(st, pre + 'hook_result')) {
    const per = tf.transpose(tf.reshape(zh, [B * T, H, dh]), [1, 0, 2]); // [H, BT, dh]
    const res = tf.transpose(tf.matMul(per, P[pre + 'W_O'] as tf.Tensor3D), [1, 0, 2]).reshape([B, T, H, d]);
    out = tf.sum(hook(st, pre + 'hook_result', l, res), 2);
  } else {
    out = ops.linear(tf.reshape(zh, [B * T, H * dh]) as tf.Tensor2D, m.fusedWO(l)).reshape([B, T, d]);
  }
  if (P[pre + 'b_O']) out = tf.add(out, P[pre + 'b_O']);
  return { out: out as tf.Tensor3D, k: kAllRaw, v: vAll };
}

/** The MLP: act(x W_in + b_in) W_out + b_out, or act(x W_gate) * (x W_in + b_in) for gated MLPs. */
function mlp(m: ForwardModel, st: RunState, l: number, x: tf.Tensor3D): tf.Tensor3D {
  const c = m.cfg;
  const P = m.params;
  const pre = `blocks.${l}.mlp.`;
  const [B, T, d] = x.shape;
  const x2 = tf.reshape(x, [B * T, d]) as tf.Tensor2D;
  let post: tf.Tensor;
  if (c.gated_mlp) {
    const gate = hook(st, pre + 'hook_pre', l, ops.linear(x2, P[pre + 'W_gate']).reshape([B, T, c.d_mlp]));
    const lin = hook(st, pre + 'hook_pre_linear', l, ops.linear(x2, P[pre + 'W_in'], P[pre + 'b_in']).reshape([B, T, c.d_mlp]));
    post = hook(st, pre + 'hook_post', l, tf.mul(ops.activation(c.act_fn, gate), lin));
  } else {
    const preAct = hook(st, pre + 'hook_pre', l, ops.linear(x2, P[pre + 'W_in'], P[pre + 'b_in']).reshape([B, T, c.d_mlp]));
    post = hook(st, pre + 'hook_post', l, ops.activation(c.act_fn, preAct));
  }
  return ops.linear(tf.reshape(post, [B * T, c.d_mlp]) as tf.Tensor2D, P[pre + 'W_out'], P[pre + 'b_out']).reshape([B, T, d]) as tf.Tensor3D;
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
