/**
 * HookedTransformer: one forward for every supported family, in the canonical (TransformerLens)
 * weight layout, with a hook point at every TransformerLens name.
 */
import * as tf from '@tensorflow/tfjs';
import { HookError, ShapeError, TflensError, ValueError, expectedFound } from '../errors.js';
import { ActivationCache } from '../hooks/cache.js';
import { BLOCK_HOOK_SUFFIXES, GLOBAL_HOOK_NAMES, type HookName } from '../hooks/names.js';
import { HookRegistry, type HookContext, type HookFn, type HookSpec } from '../hooks/registry.js';
import type { ModelConfig } from './config.js';
import type { Tokenizer } from './tokenizer.js';

export type Tokens = tf.Tensor | number[][] | number[];
export type Mask = tf.Tensor | number[][] | number[];
export type NamesFilter = readonly string[] | ((name: string) => boolean);

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

export interface ForwardOptions {
  attentionMask?: Mask;
  fwdHooks?: HookSpec[];
  /** Past keys/values (decoding). The result then holds the updated cache in `kv`. */
  past?: KVCache;
  /** Return the updated KV cache (implied by `past`). */
  useCache?: boolean;
  /** Use cache indices instead of true positions for the new tokens (StreamingLLM position shift). */
  shiftPositions?: boolean;
  /** Run only layers [startAtLayer, stopAtLayer); with startAtLayer, `residual` is the input of that layer. */
  startAtLayer?: number;
  stopAtLayer?: number;
  residual?: tf.Tensor;
  /** Unembed only these positions per row ([batch] indices); logits are then [batch, 1, vocab]. */
  logitPositions?: number[];
}

interface RunState {
  hooks: HookRegistry;
  cacheFilter: ((name: string) => boolean) | null;
  cache: Record<string, tf.Tensor>;
  posSlice: [number, number] | null;
  needResult: (layer: number) => boolean;
  decoding: boolean;
  pastLength: number;
}

export interface ForwardResult {
  logits: tf.Tensor3D;
  cache: Record<string, tf.Tensor>;
  kv?: KVCache;
  /** Residual stream when stopAtLayer < n_layers. */
  residual?: tf.Tensor3D;
}

const NEG = -1e30;

/**
 * Host copies of token and mask tensors, read once. On WebGPU a tensor's values leave the host when an
 * op first uploads them and cannot be read back synchronously; reading (and remembering) them at first
 * use keeps inputs such as the tensors of toTokens reusable across runs.
 */
const hostCopies = new WeakMap<object, ArrayLike<number>>();
export function hostValues(t: tf.Tensor): ArrayLike<number> {
  const id = t.dataId as object;
  let v = hostCopies.get(id);
  if (!v) {
    v = t.dataSync();
    hostCopies.set(id, v);
  }
  return v;
}

export class HookedTransformer {
  readonly cfg: ModelConfig;
  params: Record<string, tf.Tensor>;
  tokenizer: Tokenizer | null;
  /** Name or path the model was loaded from. */
  name: string;
  readonly hooks: HookRegistry;
  private readonly hookNameSet: Set<string>;
  private inHook = false;
  private fusedCache = new Map<string, { src: tf.Tensor[]; fused: tf.Tensor }>();

  constructor(cfg: ModelConfig, params: Record<string, tf.Tensor>, tokenizer: Tokenizer | null = null, name = 'model') {
    this.cfg = cfg;
    this.params = params;
    this.tokenizer = tokenizer;
    this.name = name;
    this.hookNameSet = new Set(this.hookNames());
    this.hooks = new HookRegistry(
      (n) => this.hookNameSet.has(n),
      (n) => suggestNames(n, [...this.hookNameSet]),
    );
    this.checkParams();
    this.prepareFused();
  }

  /** Every hook-point name of this model. */
  hookNames(): HookName[] {
    const names: string[] = ['hook_embed'];
    if (this.cfg.positional === 'learned') names.push('hook_pos_embed');
    for (let l = 0; l < this.cfg.n_layers; l++) {
      for (const s of BLOCK_HOOK_SUFFIXES) {
        if ((s === 'attn.hook_rot_q' || s === 'attn.hook_rot_k') && this.cfg.positional !== 'rotary') continue;
        if (s === 'mlp.hook_pre_linear' && !this.cfg.gated_mlp) continue;
        if (s === 'hook_resid_mid' && this.cfg.parallel_attn_mlp) continue;
        names.push(`blocks.${l}.${s}`);
      }
    }
    for (const g of GLOBAL_HOOK_NAMES) if (g !== 'hook_embed' && g !== 'hook_pos_embed') names.push(g);
    return names as HookName[];
  }

  private checkParams(): void {
    const c = this.cfg;
    const need: [string, number[]][] = [['embed.W_E', [c.d_vocab, c.d_model]], ['unembed.W_U', [c.d_model, c.d_vocab]]];
    if (c.positional === 'learned') need.push(['pos_embed.W_pos', [c.n_ctx, c.d_model]]);
    for (let l = 0; l < c.n_layers; l++) {
      need.push([`blocks.${l}.attn.W_Q`, [c.n_heads, c.d_model, c.d_head]], [`blocks.${l}.attn.W_K`, [c.n_kv_heads, c.d_model, c.d_head]]);
      need.push([`blocks.${l}.attn.W_V`, [c.n_kv_heads, c.d_model, c.d_head]], [`blocks.${l}.attn.W_O`, [c.n_heads, c.d_head, c.d_model]]);
      need.push([`blocks.${l}.mlp.W_in`, [c.d_model, c.d_mlp]], [`blocks.${l}.mlp.W_out`, [c.d_mlp, c.d_model]]);
    }
    for (const [n, s] of need) {
      const t = this.params[n];
      if (!t) throw new ShapeError(`params.${n}`, 'missing');
      if (t.shape.join(',') !== s.join(',')) throw new ShapeError(`params.${n}`, expectedFound(`[${s}]`, `[${t.shape}]`));
    }
  }

  /** Parameter count (canonical tensors; tied embeddings counted once as HF does). */
  parameterCount(): number {
    let n = 0;
    for (const [k, t] of Object.entries(this.params)) {
      if (k === 'unembed.W_U' && this.cfg.tie_word_embeddings) continue;
      n += t.size;
    }
    return n;
  }

  // ---------------------------------------------------------------- tokens

  /** Tokenize with left padding; returns int32 tokens and the attention mask (caller disposes). */
  toTokens(texts: string | string[], opts: { prependBos?: boolean } = {}): { tokens: tf.Tensor2D; attentionMask: tf.Tensor2D } {
    const { ids, mask } = this.encodeBatch(texts, opts);
    const tokens = tf.tensor2d(ids, undefined, 'int32');
    const attentionMask = tf.tensor2d(mask, undefined, 'int32');
    hostValues(tokens); // remembered before any op can upload them (see hostValues)
    hostValues(attentionMask);
    return { tokens, attentionMask };
  }

  /** Like toTokens, as plain arrays (left-padded). */
  encodeBatch(texts: string | string[], opts: { prependBos?: boolean } = {}): { ids: number[][]; mask: number[][] } {
    const tk = this.requireTokenizer();
    const list = typeof texts === 'string' ? [texts] : texts;
    const bos = this.bosTokenId();
    const prepend = opts.prependBos ?? true;
    const rows = list.map((t) => {
      const r = tk.encode(t);
      return prepend && bos !== null ? [bos, ...r] : r;
    });
    const T = Math.max(...rows.map((r) => r.length));
    const pad = this.cfg.pad_token_id ?? bos ?? 0;
    return {
      ids: rows.map((r) => [...new Array(T - r.length).fill(pad), ...r]),
      mask: rows.map((r) => [...new Array(T - r.length).fill(0), ...new Array(r.length).fill(1)]),
    };
  }

  bosTokenId(): number | null {
    return this.cfg.bos_token_id ?? this.cfg.eos_token_id ?? null;
  }

  toStrTokens(input: string | number[]): string[] {
    const tk = this.requireTokenizer();
    const ids = typeof input === 'string' ? this.encodeBatch(input).ids[0] : input;
    return tk.toStrTokens(ids);
  }

  toString(ids: number[]): string {
    return this.requireTokenizer().decode(ids);
  }

  private requireTokenizer(): Tokenizer {
    if (!this.tokenizer) throw new ValueError(`${this.name}: tokenizer`, 'this model has no tokenizer.json; pass token ids instead');
    return this.tokenizer;
  }

  // ---------------------------------------------------------------- public runs

  /** Logits [batch, pos, vocab]. */
  forward(tokens: Tokens, opts: ForwardOptions = {}): tf.Tensor3D {
    return this.run(tokens, opts, null).logits;
  }

  runWithHooks(tokens: Tokens, opts: ForwardOptions = {}): tf.Tensor3D {
    return this.forward(tokens, opts);
  }

  /** Forward keeping activations: { logits, cache }. namesFilter selects hook points (default: all but hook_result). */
  runWithCache(
    tokens: Tokens,
    opts: ForwardOptions & { namesFilter?: NamesFilter; posSlice?: number | [number, number] } = {},
  ): { logits: tf.Tensor3D; cache: ActivationCache } {
    const f = opts.namesFilter;
    const filter = !f ? (n: string) => !n.endsWith('hook_result') : typeof f === 'function' ? f : ((s) => (n: string) => s.has(n))(new Set(f));
    if (Array.isArray(f)) for (const n of f) if (!this.hookNameSet.has(n)) throw new HookError(n, `unknown hook point in namesFilter; did you mean ${suggestNames(n, [...this.hookNameSet]).join(', ')}?`);
    const r = this.run(tokens, opts, filter, opts.posSlice);
    return { logits: r.logits, cache: new ActivationCache(r.cache, this) };
  }

  /** Run fn with hooks registered; they are removed when fn returns or throws (sync or async). */
  withHooks<T>(fwdHooks: HookSpec[], fn: () => T): T {
    const handle = this.hooks.addAll(fwdHooks);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      handle.remove();
      throw e;
    }
    if (result instanceof Promise) return result.finally(() => handle.remove()) as T;
    handle.remove();
    return result;
  }

  /** Low-level forward returning logits, the kept activations and, when asked, the KV cache. */
  run(tokens: Tokens, opts: ForwardOptions, cacheFilter: ((name: string) => boolean) | null, posSlice?: number | [number, number]): ForwardResult {
    if (this.inHook) throw new HookError('hooks', 'a hook ran the model again (the run\'s hooks would apply to it too); compute what the hook needs before the run');
    const before = this.hooks.snapshot();
    const beforeSize = this.hooks.size;
    const handle = this.hooks.addAll(opts.fwdHooks);
    let result: ForwardResult | null = null;
    try {
      result = tf.tidy(() => {
        const tok = this.tokensTensor(tokens, 'tokens');
        const mask = opts.attentionMask !== undefined ? this.maskTensor(opts.attentionMask, tok.shape as [number, number]) : null;
        const state: RunState = {
          hooks: this.hooks,
          cacheFilter,
          cache: {},
          posSlice: posSlice === undefined ? null : typeof posSlice === 'number' ? [posSlice, posSlice + 1] : posSlice,
          needResult: (l) =>
            (cacheFilter?.(`blocks.${l}.attn.hook_result`) ?? false) || this.hooks.hooksFor(`blocks.${l}.attn.hook_result`).length > 0,
          decoding: !!opts.past,
          pastLength: opts.past ? opts.past.mask.shape[1] : 0,
        };
        return this.forwardInternal(tok, mask, opts, state) as unknown as tf.TensorContainer;
      }) as unknown as ForwardResult;
      return result;
    } finally {
      handle.remove();
      if (this.hooks.size !== beforeSize) {
        this.hooks.restore(before); // hooks a hook added (or removed) during the run do not outlive it
        if (result) tf.dispose(result as unknown as tf.TensorContainer); // the run's outputs are not returned: free them
        throw new HookError('hooks', 'a hook registered or removed hooks during the run');
      }
    }
  }

  // ---------------------------------------------------------------- input checks

  /**
   * Token ids as an int32 [batch, pos] tensor, validated on host values (arrays as given, tensors read
   * once before any op), so the forward never reads back from the device (WebGPU has no sync readback).
   */
  tokensTensor(tokens: Tokens, where: string): tf.Tensor2D {
    let rows: number[][] | null = null;
    let t: tf.Tensor2D;
    let data: ArrayLike<number>;
    if (tokens instanceof tf.Tensor) {
      if (tokens.rank !== 1 && tokens.rank !== 2) throw new ShapeError(where, expectedFound('[batch, pos] token ids', `rank ${tokens.rank} tensor [${tokens.shape}]`));
      data = hostValues(tokens);
      const shape = (tokens.rank === 1 ? [1, tokens.shape[0]] : tokens.shape) as [number, number];
      t = tokens.dtype === 'int32' ? (tokens.reshape(shape) as tf.Tensor2D) : tf.tensor2d(Int32Array.from(data), shape, 'int32');
    } else {
      if (!Array.isArray(tokens)) throw new ShapeError(where, expectedFound('an array of token ids', typeof tokens));
      rows = (tokens.length && Array.isArray(tokens[0]) ? tokens : [tokens]) as number[][];
      const T = rows[0]?.length ?? 0;
      rows.forEach((r, i) => {
        if (!Array.isArray(r) || r.length !== T) throw new ShapeError(`${where}[${i}]`, expectedFound(`${T} tokens (rows must have equal length; pad left and pass an attentionMask)`, Array.isArray(r) ? r.length : typeof r));
        r.forEach((v, j) => {
          if (!Number.isInteger(v)) throw new ValueError(`${where}[${i}][${j}]`, expectedFound('an integer token id', v));
        });
      });
      data = rows.flat();
      t = tf.tensor2d(rows, [rows.length, T], 'int32');
    }
    const [B, T] = t.shape;
    if (B === 0 || T === 0) throw new ShapeError(where, expectedFound('at least one token', `[${t.shape}]`));
    for (let i = 0; i < data.length; i++) {
      if (!(data[i] >= 0 && data[i] < this.cfg.d_vocab) || !Number.isInteger(data[i])) {
        throw new ValueError(`${where}[${Math.floor(i / T)}][${i % T}]`, expectedFound(`a token id in [0, ${this.cfg.d_vocab})`, data[i]));
      }
    }
    return t;
  }

  /** The attention mask as host rows (validated 0/1) and as an int32 tensor. */
  private maskTensor(mask: Mask, shape: [number, number]): { tensor: tf.Tensor2D; rows: number[][] } {
    let flat: ArrayLike<number>;
    let mShape: number[];
    if (mask instanceof tf.Tensor) {
      mShape = mask.rank === 1 ? [1, mask.shape[0]] : mask.shape;
      flat = hostValues(mask);
    } else {
      const rows = (mask.length && Array.isArray(mask[0]) ? mask : [mask]) as number[][];
      if (rows.some((r) => !Array.isArray(r) || r.length !== rows[0].length)) throw new ShapeError('attentionMask', 'rows must have equal length');
      mShape = [rows.length, rows[0]?.length ?? 0];
      flat = rows.flat();
    }
    if (mShape.length !== 2 || mShape[0] !== shape[0] || mShape[1] !== shape[1]) throw new ShapeError('attentionMask', expectedFound(`[${shape}] like the tokens`, `[${mShape}]`));
    for (let i = 0; i < flat.length; i++) if (flat[i] !== 0 && flat[i] !== 1) throw new ValueError(`attentionMask[${Math.floor(i / shape[1])}][${i % shape[1]}]`, expectedFound('0 or 1', flat[i]));
    const rows = Array.from({ length: shape[0] }, (_, b) => Array.from(flat).slice(b * shape[1], (b + 1) * shape[1]));
    return { tensor: tf.tensor2d(rows, shape, 'int32'), rows };
  }

  // ---------------------------------------------------------------- the forward

  private hook(state: RunState, name: string, layer: number | null, act: tf.Tensor): tf.Tensor {
    const fns = state.hooks.hooksFor(name);
    let x = act;
    if (fns.length) {
      const ctx: HookContext = { name, layer, decoding: state.decoding, pastLength: state.pastLength };
      for (const fn of fns) {
        let out: tf.Tensor | void;
        try {
          this.inHook = true;
          out = fn(x, ctx);
        } catch (e) {
          if (e instanceof TflensError) throw e;
          throw new HookError(name, `hook threw: ${(e as Error)?.message ?? e}`);
        } finally {
          this.inHook = false;
        }
        if (out === undefined || out === null) continue;
        if (!(out instanceof tf.Tensor)) throw new HookError(name, expectedFound('the hook to return a tf.Tensor or nothing', typeof out));
        if (out.shape.join(',') !== x.shape.join(',')) throw new HookError(name, expectedFound(`a tensor of shape [${x.shape}]`, `[${out.shape}]`));
        x = out.dtype === x.dtype ? out : out.cast(x.dtype);
      }
    }
    if (state.cacheFilter && state.cacheFilter(name)) state.cache[name] = this.sliceForCache(x, name, state.posSlice);
    return x;
  }

  private sliceForCache(x: tf.Tensor, name: string, posSlice: [number, number] | null): tf.Tensor {
    if (!posSlice) return x;
    const axis = name.endsWith('hook_pattern') || name.endsWith('hook_attn_scores') ? 2 : 1;
    const n = x.shape[axis] as number;
    let [s, e] = posSlice;
    if (s < 0) s += n;
    if (e <= 0 && posSlice[0] < 0) e += n;
    const begin = x.shape.map((_, i) => (i === axis ? s : 0));
    const size = x.shape.map((d, i) => (i === axis ? e - s : d));
    return tf.slice(x, begin, size);
  }

  private fused(key: string, parts: tf.Tensor[], make: () => tf.Tensor): tf.Tensor {
    // Trainable parameters must stay on the gradient tape: no caching for variables.
    if (parts.some((p) => p instanceof tf.Variable)) return make();
    const hit = this.fusedCache.get(key);
    if (hit && hit.src.length === parts.length && hit.src.every((s, i) => s === parts[i] && !s.isDisposed)) return hit.fused;
    if (hit) hit.fused.dispose();
    const fused = tf.keep(tf.tidy(make));
    this.fusedCache.set(key, { src: parts, fused });
    return fused;
  }

  /** Q, K and V weights as one [d_model, (H + 2K) * d_head] matrix, and their biases (or null). */
  private fusedQKV(l: number): { W: tf.Tensor; bias: tf.Tensor | null } {
    const P = this.params;
    const pre = `blocks.${l}.attn.`;
    const { n_heads: H, n_kv_heads: K, d_head: dh } = this.cfg;
    const wq = P[pre + 'W_Q'], wk = P[pre + 'W_K'], wv = P[pre + 'W_V'];
    const bq = P[pre + 'b_Q'], bk = P[pre + 'b_K'], bv = P[pre + 'b_V'];
    const W = this.fused(pre + 'qkv', [wq, wk, wv], () => tf.concat([mergeIn(wq), mergeIn(wk), mergeIn(wv)], 1));
    if (!bq && !bk && !bv) return { W, bias: null };
    const flat = (b: tf.Tensor | undefined, n: number) => (b ? b.flatten() : tf.zeros([n * dh]));
    const bias = this.fused(pre + 'qkv_b', [bq, bk, bv].filter(Boolean) as tf.Tensor[], () =>
      tf.concat([flat(bq, H), flat(bk, K), flat(bv, K)], 0),
    );
    return { W, bias };
  }

  private fusedWO(l: number): tf.Tensor {
    const wo = this.params[`blocks.${l}.attn.W_O`];
    return this.fused(`blocks.${l}.attn.W_O`, [wo], () => tf.reshape(wo, [this.cfg.n_heads * this.cfg.d_head, this.cfg.d_model]));
  }

  /** Build the derived weights now, so that runs do not change the tensor count. */
  private prepareFused(): void {
    for (let l = 0; l < this.cfg.n_layers; l++) {
      this.fusedQKV(l);
      this.fusedWO(l);
    }
  }

  /** Drop derived (fused) weights; call after replacing params in place. */
  invalidateFused(): void {
    for (const v of this.fusedCache.values()) v.fused.dispose();
    this.fusedCache.clear();
    this.prepareFused();
  }

  private forwardInternal(tok: tf.Tensor2D, maskIn: { tensor: tf.Tensor2D; rows: number[][] } | null, opts: ForwardOptions, st: RunState): ForwardResult {
    const c = this.cfg;
    const P = this.params;
    const [B, T] = tok.shape;
    const past = opts.past;
    const pastLen = past ? past.mask.shape[1] : 0;
    const newMask = maskIn ? maskIn.tensor : tf.ones([B, T], 'int32');
    const maskRows = maskIn ? maskIn.rows : Array.from({ length: B }, () => new Array<number>(T).fill(1));
    // position ids, on the host: count of real tokens so far, minus one (pads get 0); with a shift, the cache index
    const seenNow = maskRows.map((r) => r.reduce((a, x) => a + x, 0));
    const posRows = maskRows.map((r, b) => {
      let run = past ? past.seen[b] : 0;
      return r.map((x, t) => {
        if (past && opts.shiftPositions) return pastLen + t;
        run += x;
        return Math.max(run - 1, 0);
      });
    });
    const positions = tf.tensor2d(posRows, [B, T], 'int32');
    const maxPos = Math.max(...posRows.map((r) => Math.max(...r)));
    if (maxPos >= c.n_ctx) {
      throw new ValueError('tokens', expectedFound(`a sequence of at most n_ctx = ${c.n_ctx} positions`, `position ${maxPos + 1}`));
    }
    const allMask = (past ? tf.concat([past.mask, newMask], 1) : newMask) as tf.Tensor2D;
    const allPos = past ? (tf.concat([past.positions, positions], 1) as tf.Tensor2D) : positions;
    const Tk = pastLen + T;

    // visibility: causal (by cache index), key not padding, sliding window
    const qIdx = tf.range(pastLen, pastLen + T, 1, 'int32').reshape([T, 1]);
    const kIdx = tf.range(0, Tk, 1, 'int32').reshape([1, Tk]);
    let allowed = tf.lessEqual(kIdx, qIdx);
    if (c.sliding_window !== null) allowed = tf.logicalAnd(allowed, tf.less(tf.sub(qIdx, kIdx), c.sliding_window));
    const keyOk = tf.cast(allMask, 'bool').reshape([B, 1, 1, Tk]);
    // additive mask [B, 1, T, Tk]: 0 where a key is visible, NEG where it is not
    const attnMask = tf.where(tf.logicalAnd(allowed.reshape([1, 1, T, Tk]), keyOk), tf.zeros([B, 1, T, Tk]), tf.fill([B, 1, T, Tk], NEG)) as tf.Tensor4D;

    // rotary tables for new queries and for all keys
    let rotQ: [tf.Tensor, tf.Tensor] | null = null;
    let rotK: [tf.Tensor, tf.Tensor] | null = null;
    if (c.positional === 'rotary') {
      rotQ = this.rotaryTables(positions);
      const keyPos = past && opts.shiftPositions ? (tf.tile(tf.range(0, Tk, 1, 'int32').expandDims(0), [B, 1]) as tf.Tensor2D) : allPos;
      rotK = this.rotaryTables(keyPos);
    }

    let resid: tf.Tensor3D;
    const start = opts.startAtLayer ?? 0;
    const stop = opts.stopAtLayer ?? c.n_layers;
    if (!Number.isInteger(start) || start < 0 || start > c.n_layers) throw new ValueError('startAtLayer', expectedFound(`a layer in [0, ${c.n_layers}]`, start));
    if (!Number.isInteger(stop) || stop < start || stop > c.n_layers) throw new ValueError('stopAtLayer', expectedFound(`a layer in [${start}, ${c.n_layers}]`, stop));
    if (start > 0 || opts.residual) {
      if (!opts.residual) throw new ValueError('residual', 'startAtLayer needs the residual input of that layer');
      if (opts.residual.shape.join(',') !== [B, T, c.d_model].join(',')) throw new ShapeError('residual', expectedFound(`[${[B, T, c.d_model]}]`, `[${opts.residual.shape}]`));
      resid = opts.residual as tf.Tensor3D;
    } else {
      const embed = this.hook(st, 'hook_embed', null, tf.gather(P['embed.W_E'], tok) as tf.Tensor3D);
      if (c.positional === 'learned') {
        const pe = this.hook(st, 'hook_pos_embed', null, tf.gather(P['pos_embed.W_pos'], positions));
        resid = tf.add(embed, pe) as tf.Tensor3D;
      } else {
        resid = embed as tf.Tensor3D;
      }
    }

    const newK: tf.Tensor4D[] = [];
    const newV: tf.Tensor4D[] = [];
    for (let l = start; l < stop; l++) {
      const pre = `blocks.${l}.`;
      resid = this.hook(st, pre + 'hook_resid_pre', l, resid) as tf.Tensor3D;
      const x1 = this.norm(st, resid, `blocks.${l}.ln1`, l, `${pre}ln1.w`, `${pre}ln1.b`);
      const { out: attnOut, k, v } = this.attention(st, l, x1, attnMask, rotQ, rotK, past);
      newK.push(k);
      newV.push(v);
      const ao = this.hook(st, pre + 'hook_attn_out', l, attnOut);
      let mlpIn: tf.Tensor3D;
      let mid: tf.Tensor3D | null = null;
      if (c.parallel_attn_mlp) {
        mlpIn = resid;
      } else {
        mid = this.hook(st, pre + 'hook_resid_mid', l, tf.add(resid, ao)) as tf.Tensor3D;
        mlpIn = mid;
      }
      const x2 = this.norm(st, mlpIn, `blocks.${l}.ln2`, l, `${pre}ln2.w`, `${pre}ln2.b`);
      const mo = this.hook(st, pre + 'hook_mlp_out', l, this.mlp(st, l, x2));
      const post = c.parallel_attn_mlp ? tf.add(tf.add(resid, ao), mo) : tf.add(mid!, mo);
      resid = this.hook(st, pre + 'hook_resid_post', l, post) as tf.Tensor3D;
    }

    const result: ForwardResult = { logits: undefined as unknown as tf.Tensor3D, cache: st.cache };
    if (opts.useCache || past) {
      result.kv = {
        k: newK,
        v: newV,
        mask: allMask,
        positions: allPos,
        seen: (past ? past.seen : new Array(B).fill(0)).map((s, i) => s + seenNow[i]),
      };
    }
    if (stop < c.n_layers) {
      result.residual = resid;
      result.logits = tf.zeros([B, 0, c.d_vocab]) as tf.Tensor3D;
      return result;
    }
    let fin = resid;
    if (opts.logitPositions) {
      if (opts.logitPositions.length !== B) throw new ShapeError('logitPositions', expectedFound(`${B} positions (one per row)`, opts.logitPositions.length));
      const idx = tf.tensor1d(opts.logitPositions.map((p, b) => b * T + (p < 0 ? p + T : p)), 'int32');
      fin = tf.gather(tf.reshape(resid, [B * T, c.d_model]), idx).reshape([B, 1, c.d_model]);
    }
    const xf = this.norm(st, fin, 'ln_final', null, 'ln_final.w', 'ln_final.b');
    const uin = this.hook(st, 'unembed.hook_in', null, xf);
    const [b2, t2] = uin.shape;
    const logits = tf.add(tf.matMul(tf.reshape(uin, [b2 * t2, c.d_model]), P['unembed.W_U']), P['unembed.b_U']).reshape([b2, t2, c.d_vocab]);
    result.logits = this.hook(st, 'unembed.hook_out', null, logits) as tf.Tensor3D;
    return result;
  }

  private norm(st: RunState, x: tf.Tensor, prefix: string, layer: number | null, wName: string, bName: string): tf.Tensor3D {
    const c = this.cfg;
    let centered = x;
    let scale: tf.Tensor;
    if (c.normalization === 'LN') {
      centered = tf.sub(x, tf.mean(x, -1, true));
      scale = tf.sqrt(tf.add(tf.mean(tf.square(centered), -1, true), c.eps));
    } else {
      scale = tf.sqrt(tf.add(tf.mean(tf.square(x), -1, true), c.eps));
    }
    scale = this.hook(st, `${prefix}.hook_scale`, layer, scale);
    let y = tf.div(centered, scale);
    const w = this.params[wName];
    if (w) y = tf.mul(y, w);
    const b = this.params[bName];
    if (b && c.normalization === 'LN') y = tf.add(y, b);
    return this.hook(st, `${prefix}.hook_normalized`, layer, y) as tf.Tensor3D;
  }

  /** cos/sin tables [B, T, 1, rotary_dim] for the given position ids. */
  private rotaryTables(pos: tf.Tensor2D): [tf.Tensor, tf.Tensor] {
    const rd = this.cfg.rotary_dim;
    const inv = tf.tensor1d(Array.from({ length: rd / 2 }, (_, i) => 1 / Math.pow(this.cfg.rope_theta, (2 * i) / rd)));
    const [B, T] = pos.shape;
    const freqs = tf.mul(pos.toFloat().reshape([B, T, 1]), inv.reshape([1, 1, rd / 2]));
    const emb = tf.concat([freqs, freqs], -1).reshape([B, T, 1, rd]);
    return [tf.cos(emb), tf.sin(emb)];
  }

  /** Rotary on [B, T, H, dh] (rotate-half convention, first rotary_dim dims of each head). */
  private applyRotary(x: tf.Tensor, [cos, sin]: [tf.Tensor, tf.Tensor]): tf.Tensor {
    const rd = this.cfg.rotary_dim;
    const dh = this.cfg.d_head;
    const [B, T, H] = x.shape;
    const rot = rd === dh ? x : tf.slice(x, [0, 0, 0, 0], [B, T, H, rd]);
    const x1 = tf.slice(rot, [0, 0, 0, 0], [B, T, H, rd / 2]);
    const x2 = tf.slice(rot, [0, 0, 0, rd / 2], [B, T, H, rd / 2]);
    const rotated = tf.add(tf.mul(rot, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin));
    return rd === dh ? rotated : tf.concat([rotated, tf.slice(x, [0, 0, 0, rd], [B, T, H, dh - rd])], -1);
  }

  private attention(
    st: RunState,
    l: number,
    x: tf.Tensor3D,
    attnMask: tf.Tensor4D,
    rotQ: [tf.Tensor, tf.Tensor] | null,
    rotK: [tf.Tensor, tf.Tensor] | null,
    past: KVCache | undefined,
  ): { out: tf.Tensor3D; k: tf.Tensor4D; v: tf.Tensor4D } {
    const c = this.cfg;
    const P = this.params;
    const pre = `blocks.${l}.attn.`;
    const [B, T, d] = x.shape;
    const H = c.n_heads;
    const K = c.n_kv_heads;
    const dh = c.d_head;
    const G = H / K;
    const { W, bias } = this.fusedQKV(l);
    let qkv = tf.matMul(tf.reshape(x, [B * T, d]), W as tf.Tensor2D);
    if (bias) qkv = tf.add(qkv, bias);
    const [q2, k2, v2] = tf.split(qkv, [H * dh, K * dh, K * dh], 1);
    let q = this.hook(st, pre + 'hook_q', l, q2.reshape([B, T, H, dh]));
    let k = this.hook(st, pre + 'hook_k', l, k2.reshape([B, T, K, dh])) as tf.Tensor4D;
    const v = this.hook(st, pre + 'hook_v', l, v2.reshape([B, T, K, dh])) as tf.Tensor4D;
    const kAllRaw = past ? (tf.concat([past.k[l], k], 1) as tf.Tensor4D) : k;
    const vAll = past ? (tf.concat([past.v[l], v], 1) as tf.Tensor4D) : v;
    let kAll: tf.Tensor = kAllRaw;
    if (rotQ && rotK) {
      q = this.hook(st, pre + 'hook_rot_q', l, this.applyRotary(q, rotQ));
      const Tk = kAllRaw.shape[1];
      // only the new keys pass the hook; cached keys were hooked when they were new
      const kRot = this.applyRotary(kAllRaw, rotK);
      const newRot = this.hook(st, pre + 'hook_rot_k', l, past ? tf.slice(kRot, [0, Tk - T, 0, 0], [B, T, K, dh]) : kRot);
      kAll = past ? tf.concat([tf.slice(kRot, [0, 0, 0, 0], [B, Tk - T, K, dh]), newRot], 1) : newRot;
    }
    const Tk = kAll.shape[1] as number;
    // scores [B, H, T, Tk] computed per KV group without repeating keys
    const qg = tf.reshape(tf.transpose(tf.reshape(q, [B, T, K, G, dh]), [0, 2, 3, 1, 4]), [B, K, G * T, dh]);
    const kt = tf.transpose(kAll, [0, 2, 3, 1]); // [B, K, dh, Tk]
    let scores = tf.reshape(tf.div(tf.matMul(qg, kt), c.attn_scale), [B, H, T, Tk]);
    scores = tf.add(scores, attnMask);
    const scoresName = pre + 'hook_attn_scores';
    if (st.hooks.hooksFor(scoresName).length) {
      scores = this.hook(st, scoresName, l, scores);
      scores = tf.maximum(tf.add(scores, attnMask), NEG); // re-mask after hooks (masked keys stay masked)
    } else if (st.cacheFilter?.(scoresName)) {
      st.cache[scoresName] = this.sliceForCache(scores, scoresName, st.posSlice);
    }
    const pattern = this.hook(st, pre + 'hook_pattern', l, tf.softmax(scores, -1));
    const zg = tf.matMul(tf.reshape(pattern, [B, K, G * T, Tk]), tf.transpose(vAll, [0, 2, 1, 3])); // [B, K, G*T, dh]
    const z = this.hook(st, pre + 'hook_z', l, tf.transpose(tf.reshape(zg, [B, H, T, dh]), [0, 2, 1, 3])); // [B, T, H, dh]
    const wo = P[pre + 'W_O'];
    let out: tf.Tensor;
    if (st.needResult(l)) {
      const zh = tf.transpose(tf.reshape(z, [B * T, H, dh]), [1, 0, 2]); // [H, BT, dh]
      const res = tf.transpose(tf.matMul(zh, wo), [1, 0, 2]).reshape([B, T, H, d]);
      const result = this.hook(st, pre + 'hook_result', l, res);
      out = tf.sum(result, 2);
    } else {
      const woFlat = this.fusedWO(l);
      out = tf.matMul(tf.reshape(z, [B * T, H * dh]), woFlat as tf.Tensor2D).reshape([B, T, d]);
    }
    if (P[pre + 'b_O']) out = tf.add(out, P[pre + 'b_O']);
    return { out: out as tf.Tensor3D, k: kAllRaw, v: vAll };
  }

  private mlp(st: RunState, l: number, x: tf.Tensor3D): tf.Tensor3D {
    const c = this.cfg;
    const P = this.params;
    const pre = `blocks.${l}.mlp.`;
    const [B, T, d] = x.shape;
    const x2 = tf.reshape(x, [B * T, d]);
    let post: tf.Tensor;
    const bin = P[pre + 'b_in'];
    if (c.gated_mlp) {
      const gate = this.hook(st, pre + 'hook_pre', l, tf.matMul(x2, P[pre + 'W_gate'] as tf.Tensor2D).reshape([B, T, c.d_mlp]));
      let lin = tf.matMul(x2, P[pre + 'W_in'] as tf.Tensor2D);
      if (bin) lin = tf.add(lin, bin);
      const linH = this.hook(st, pre + 'hook_pre_linear', l, lin.reshape([B, T, c.d_mlp]));
      post = this.hook(st, pre + 'hook_post', l, tf.mul(activation(c.act_fn, gate), linH));
    } else {
      let h = tf.matMul(x2, P[pre + 'W_in'] as tf.Tensor2D);
      if (bin) h = tf.add(h, bin);
      const preAct = this.hook(st, pre + 'hook_pre', l, h.reshape([B, T, c.d_mlp]));
      post = this.hook(st, pre + 'hook_post', l, activation(c.act_fn, preAct));
    }
    let out = tf.matMul(tf.reshape(post, [B * T, c.d_mlp]), P[pre + 'W_out'] as tf.Tensor2D);
    if (P[pre + 'b_out']) out = tf.add(out, P[pre + 'b_out']);
    return out.reshape([B, T, d]) as tf.Tensor3D;
  }

  /** Free the weights (and derived tensors). */
  dispose(): void {
    for (const v of this.fusedCache.values()) v.fused.dispose();
    this.fusedCache.clear();
    tf.dispose(Object.values(this.params));
    this.params = {};
  }
}

function mergeIn(w: tf.Tensor): tf.Tensor {
  const [h, dIn, dh] = w.shape;
  return tf.reshape(tf.transpose(w, [1, 0, 2]), [dIn, h * dh]);
}

export function activation(fn: ModelConfig['act_fn'], x: tf.Tensor): tf.Tensor {
  switch (fn) {
    case 'relu':
      return tf.relu(x);
    case 'silu':
      return tf.mul(x, tf.sigmoid(x));
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));
    case 'gelu_fast':
    case 'gelu_new': {
      const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
      return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
    }
  }
}

function suggestNames(name: string, all: string[]): string[] {
  const tail = name.split('.').pop() ?? name;
  const layer = /^blocks\.(\d+)\./.exec(name)?.[1];
  let cands = all.filter((n) => n.endsWith(tail) || (layer !== undefined && n.startsWith(`blocks.${layer}.`) && lev(n, name) <= 4));
  if (!cands.length) cands = all.filter((n) => lev(n.split('.').pop()!, tail) <= 3);
  return cands.sort((a, b) => lev(a, name) - lev(b, name)).slice(0, 3);
}

function lev(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

export type { HookFn, HookSpec };
