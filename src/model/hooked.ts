/**
 * HookedTransformer: one forward for every supported family, in the canonical (TransformerLens)
 * weight layout, with a hook point at every TransformerLens name.
 *
 * Running the model is async (`forward`, `runWithHooks`, `runWithCache`): WebGPU under Node has no
 * synchronous readback, and an async run can move cached activations to the host between layers.
 * `run` is the synchronous, differentiable core the async runs drive; use it inside tf.grad (training,
 * attribution patching) or tf.tidy. None of them reads a computed tensor back.
 */
import * as tf from '@tensorflow/tfjs';
import { HookError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { type PackedHalf, unpackHalf } from '../backend/webgpu/half.js';
import type { HookName } from '../hooks/names.js';
import { HookRegistry, type HookFn, type HookSpec } from '../hooks/registry.js';
import { ActivationCache, type HostTensor } from './cache.js';
import { canonicalParams, type ModelConfig } from './config.js';
import { ropeFor, ropeInvFreq } from './positions.js';
import { forwardSteps, type ForwardModel, type ForwardResult, type KVCache, type LoopOptions, type RunState } from './forward.js';
import type { Tokenizer } from './tokenizer.js';

export type Tokens = tf.Tensor | number[][] | number[];
export type Mask = tf.Tensor | number[][] | number[];
export type NamesFilter = readonly string[] | ((name: string) => boolean);
export type { KVCache, ForwardResult };

export interface ForwardOptions extends LoopOptions {
  attentionMask?: Mask;
  /** Hooks for this run only (they never apply to another run, also one running concurrently). */
  fwdHooks?: HookSpec[];
}

export interface CacheOptions extends ForwardOptions {
  /** Hook points to keep (names or a predicate). Default: all but the per-head hook points computed only on request. */
  namesFilter?: NamesFilter;
  /** Keep only these positions (one index, or [start, end)). */
  posSlice?: number | [number, number];
  /** Where cached activations live: on the backend's device (default) or in host memory (TransformerLens's device='cpu'). */
  cacheOn?: 'device' | 'host';
}

/** Hook points computed only when a hook or the cache asks for them (TransformerLens's use_attn_result etc.). */
const ON_REQUEST = /(attn\.hook_result|hook_attn_in|attn\.hook_[qkv]_input)$/;

/**
 * Host copies of token and mask tensors, read once. On WebGPU a tensor's values leave the host when an
 * op first uploads them; remembering them at first use keeps inputs such as the tensors of toTokens reusable.
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
/**
 * Read a token or mask tensor asynchronously (works for tensors a kernel computed) and remember its
 * values, so that the synchronous `run` can validate it on the host afterwards.
 */
export async function readHost(t: unknown): Promise<void> {
  if (t instanceof tf.Tensor && !hostCopies.has(t.dataId as object)) hostCopies.set(t.dataId as object, await t.data());
}

/** How a weight is stored: float32, or packed IEEE half / bfloat16 words on the GPU. */
export type WeightFormat = 'f32' | 'f16' | 'bf16';

export class HookedTransformer implements ForwardModel {
  readonly cfg: ModelConfig;
  /**
   * Float32 weights in the canonical layout (docs/architecture.md). For a half-precision checkpoint
   * loaded on WebGPU the large matrices are in `halfParams` instead; `weight(name)` gives any weight
   * as float32.
   */
  params: Record<string, tf.Tensor>;
  /** Weights kept as packed F16 / BF16 words on the GPU (empty for float32 models); see docs/gpu.md. */
  halfParams: Record<string, PackedHalf>;
  tokenizer: Tokenizer | null;
  /** Name or path the model was loaded from. */
  name: string;
  /** Hooks that stay registered across runs (see withHooks); per-run hooks go in the run's options. */
  readonly hooks: HookRegistry;
  private hookNameList: HookName[] | null = null;
  private readonly inHook = { value: false };
  private invFreqTable: Float32Array | null = null;

  /**
   * `opts.weights: false` makes a model without weights (params must be empty): its config, tokenizer
   * and BOS work, so it can build prompts and plan work where the weights do not fit (sweep submit and
   * collect); running it throws. `opts.halfParams`: weights stored as packed halves (WebGPU), which
   * then are not in `params`.
   */
  constructor(
    cfg: ModelConfig,
    params: Record<string, tf.Tensor>,
    tokenizer: Tokenizer | null = null,
    name = 'model',
    opts: { weights?: boolean; halfParams?: Record<string, PackedHalf> } = {},
  ) {
    this.cfg = cfg;
    this.params = params;
    this.halfParams = opts.halfParams ?? {};
    this.tokenizer = tokenizer;
    this.name = name;
    this.hooks = this.newRegistry();
    if (opts.weights === false && Object.keys(params).length === 0) return;
    this.checkParams();
  }

  private newRegistry(): HookRegistry {
    return new HookRegistry(
      (n) => this.hookNameSet().has(n),
      (n) => suggestNames(n, this.hookNames()),
    );
  }

  /**
   * Every hook point of this model, in the order a forward passes them. Derived from the forward itself:
   * a one-token run with every on-request hook point enabled records the names it passes.
   */
  hookNames(): HookName[] {
    if (!this.hookNameList) {
      const names: string[] = [];
      const st = this.newState(new HookRegistry(() => true, () => []), null, null);
      st.onHookPoint = (n) => void (names.includes(n) || names.push(n));
      tf.tidy(() => {
        const tok = tf.zeros([1, 1], 'int32') as tf.Tensor2D;
        const r = drain(forwardSteps(this, st, tok, [[1]], {}));
        tf.dispose([r.logits, ...Object.values(r.cache)]);
      });
      this.hookNameList = names as HookName[];
    }
    return this.hookNameList;
  }

  private hookNameSetCache: Set<string> | null = null;
  private hookNameSet(): Set<string> {
    return (this.hookNameSetCache ??= new Set(this.hookNames()));
  }

  /** Every canonical weight the config implies must be present with its shape; norms and biases may be absent (folded or none). */
  private checkParams(): void {
    for (const spec of canonicalParams(this.cfg)) {
      const t = this.params[spec.name] ?? this.halfParams[spec.name];
      if (!t) {
        if (spec.role === 'weight' || spec.role === 'embed') throw new ShapeError(`params.${spec.name}`, 'missing');
        continue;
      }
      if (t.shape.join(',') !== spec.shape.join(',')) throw new ShapeError(`params.${spec.name}`, expectedFound(`[${spec.shape}]`, `[${t.shape}]`));
    }
  }

  /** Parameter count (canonical tensors; tied embeddings counted once as HF does). */
  parameterCount(): number {
    let n = 0;
    for (const [k, shape] of this.weightShapes()) {
      if (k === 'unembed.W_U' && this.cfg.tie_word_embeddings) continue;
      n += shape.reduce((a, b) => a * b, 1);
    }
    return n;
  }

  /** [name, shape] of every weight (float32 and half-precision). */
  private weightShapes(): Array<[string, number[]]> {
    return [...Object.entries(this.params).map(([k, t]): [string, number[]] => [k, t.shape]), ...Object.entries(this.halfParams).map(([k, p]): [string, number[]] => [k, p.shape])];
  }

  /** How the weight `name` is stored: 'f32', or 'f16' / 'bf16' for packed halves on the GPU. */
  weightFormat(name: string): WeightFormat {
    if (this.params[name]) return 'f32';
    const h = this.halfParams[name];
    if (h) return h.format;
    throw new ValueError(`weight "${name}"`, expectedFound(`a weight of ${this.name}`, 'no such weight'));
  }

  /**
   * The weight `name` in the canonical layout as a float32 tensor that the caller owns (dispose it):
   * a clone of a float32 weight (no copy of the data), or half-precision words decoded on the GPU (a
   * float32 copy that lives until the caller frees it, so nothing stays resident twice). Analyses
   * that read weights as float32 (W_O in the cache helpers, weight-space analyses) go through this.
   */
  weight(name: string): tf.Tensor {
    const t = this.params[name];
    if (t) return t.clone();
    const h = this.halfParams[name];
    if (h) return unpackHalf(h);
    throw new ValueError(`weight "${name}"`, expectedFound(`a weight of ${this.name}`, 'no such weight'));
  }

  /** Whether the model has a weight of that name (float32 or half-precision). */
  hasWeight(name: string): boolean {
    return !!(this.params[name] ?? this.halfParams[name]);
  }

  // ---------------------------------------------------------------- tokens

  /** Tokenize with left padding; returns int32 tokens and the attention mask (a Batch; caller disposes). */
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
    if (!Array.isArray(list) || list.length === 0) throw new ValueError('texts', expectedFound('a string or a non-empty array of strings', Array.isArray(list) ? 'an empty array' : typeof list));
    const bos = this.bosTokenId();
    const prepend = opts.prependBos ?? true;
    const rows = list.map((t, i) => {
      const r = prepend && bos !== null ? [bos, ...tk.encode(t)] : tk.encode(t);
      if (r.length === 0 || r.length > this.cfg.n_ctx) {
        throw new ValueError(`texts[${i}]`, `${expectedFound(`1 to n_ctx = ${this.cfg.n_ctx} tokens`, `${r.length} tokens`)}${r.length ? ' (shorten or split the text)' : ''}`);
      }
      return r;
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
  async forward(tokens: Tokens, opts: ForwardOptions = {}): Promise<tf.Tensor3D> {
    const r = await this.drive(tokens, opts, null, undefined, false);
    tf.dispose(Object.values(r.cache));
    if (r.kv) disposeKV(r.kv);
    if (r.residual) r.residual.dispose();
    return r.logits;
  }

  /** Logits with `opts.fwdHooks` applied for this run (TransformerLens's run_with_hooks). */
  runWithHooks(tokens: Tokens, opts: ForwardOptions = {}): Promise<tf.Tensor3D> {
    return this.forward(tokens, opts);
  }

  /** Forward keeping activations: { logits, cache }. The cache may live on the host (`cacheOn: 'host'`). */
  async runWithCache(tokens: Tokens, opts: CacheOptions = {}): Promise<{ logits: tf.Tensor3D; cache: ActivationCache }> {
    const r = await this.drive(tokens, opts, this.cacheFilter(opts.namesFilter), opts.posSlice, opts.cacheOn === 'host');
    if (r.kv) disposeKV(r.kv);
    if (r.residual) r.residual.dispose();
    return { logits: r.logits, cache: new ActivationCache(r.cache, this, r.host) };
  }

  /** The namesFilter as a predicate; names in a list are checked against the model's hook points. */
  cacheFilter(f: NamesFilter | undefined): (name: string) => boolean {
    if (!f) return (n) => !ON_REQUEST.test(n);
    if (typeof f === 'function') return f;
    for (const n of f) if (!this.hookNameSet().has(n)) throw new HookError(n, `unknown hook point in namesFilter; did you mean ${suggestNames(n, this.hookNames()).join(', ')}?`);
    const s = new Set(f);
    return (n) => s.has(n);
  }

  /** Run fn with hooks registered on the model; they are removed when fn returns or throws (sync or async). */
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

  /**
   * The synchronous, differentiable forward: logits, the activations `cacheFilter` keeps and, when
   * asked, the KV cache. For use inside tf.grad / tf.tidy; token tensors must be host-made (e.g. from
   * toTokens) or plain arrays, since their values are validated on the host.
   */
  run(tokens: Tokens, opts: ForwardOptions, cacheFilter: ((name: string) => boolean) | null, posSlice?: number | [number, number]): ForwardResult {
    const { st, tok, rows, done } = this.begin(tokens, opts, cacheFilter, posSlice);
    try {
      return drain(forwardSteps(this, st, tok, rows, opts));
    } finally {
      done();
    }
  }

  /** The async driver: runs the steps, moving kept activations to the host between layers when asked. */
  private async drive(tokens: Tokens, opts: ForwardOptions, cacheFilter: ((name: string) => boolean) | null, posSlice: number | [number, number] | undefined, toHost: boolean): Promise<ForwardResult & { host?: Record<string, HostTensor> }> {
    await readHost(tokens);
    await readHost(opts.attentionMask);
    const { st, tok, rows, done } = this.begin(tokens, opts, cacheFilter, posSlice);
    const host: Record<string, HostTensor> = {};
    let result: ForwardResult | null = null;
    try {
      const g = forwardSteps(this, st, tok, rows, opts);
      for (let s = g.next(); ; s = g.next()) {
        if (s.done) {
          result = s.value;
          break;
        }
        if (toHost) for (const n of s.value.names) await moveToHost(s.value.cache, n, host);
      }
      return toHost ? { ...result, host } : result;
    } finally {
      done();
    }
  }

  /** Validate inputs and make the run's state; `done` removes the run's hooks and frees its token tensor. */
  private begin(tokens: Tokens, opts: ForwardOptions, cacheFilter: ((name: string) => boolean) | null, posSlice?: number | [number, number]) {
    if (this.inHook.value) throw new HookError('hooks', "a hook ran the model again (the run's hooks would apply to it too); compute what the hook needs before the run");
    const tok = this.tokensTensor(tokens, 'tokens');
    let rows: number[][];
    try {
      rows = opts.attentionMask !== undefined ? this.maskRows(opts.attentionMask, tok.shape as [number, number]) : Array.from({ length: tok.shape[0] }, () => new Array<number>(tok.shape[1]).fill(1));
    } catch (e) {
      tok.dispose();
      throw e;
    }
    const local = this.newRegistry();
    try {
      local.addAll(opts.fwdHooks);
    } catch (e) {
      tok.dispose();
      throw e;
    }
    const persistent = this.hooks;
    const both = { hooksFor: (n: string): HookFn[] => [...persistent.hooksFor(n), ...local.hooksFor(n)] } as unknown as HookRegistry;
    const st = this.newState(both, cacheFilter, posSlice === undefined ? null : typeof posSlice === 'number' ? [posSlice, posSlice + 1] : posSlice);
    st.decoding = !!opts.past;
    st.pastLength = opts.past ? opts.past.mask.shape[1] : 0;
    return { st, tok, rows, done: () => tok.dispose() };
  }

  private newState(hooks: HookRegistry, cacheFilter: ((name: string) => boolean) | null, posSlice: [number, number] | null): RunState {
    return { hooks, cacheFilter, kept: {}, posSlice, decoding: false, pastLength: 0, inHook: this.inHook };
  }

  // ---------------------------------------------------------------- input checks

  /**
   * Token ids as an int32 [batch, pos] tensor, validated on host values (arrays as given, tensors read
   * once: see hostValues), so the forward never reads back from the device.
   */
  tokensTensor(tokens: Tokens, where: string): tf.Tensor2D {
    let t: tf.Tensor2D;
    let data: ArrayLike<number>;
    if (tokens instanceof tf.Tensor) {
      if (tokens.rank !== 1 && tokens.rank !== 2) throw new ShapeError(where, expectedFound('[batch, pos] token ids', `rank ${tokens.rank} tensor [${tokens.shape}]`));
      data = hostValues(tokens);
      const shape = (tokens.rank === 1 ? [1, tokens.shape[0]] : tokens.shape) as [number, number];
      checkIds(data, shape[1], this.cfg.d_vocab, where, shape);
      t = tf.tensor2d(Int32Array.from(data), shape, 'int32');
    } else {
      if (!Array.isArray(tokens)) throw new ShapeError(where, expectedFound('an array of token ids', typeof tokens));
      const rows = (tokens.length && Array.isArray(tokens[0]) ? tokens : [tokens]) as number[][];
      const T = rows[0]?.length ?? 0;
      rows.forEach((r, i) => {
        if (!Array.isArray(r) || r.length !== T) throw new ShapeError(`${where}[${i}]`, expectedFound(`${T} tokens (rows must have equal length; pad left and pass an attentionMask)`, Array.isArray(r) ? r.length : typeof r));
      });
      data = rows.flat();
      checkIds(data, T, this.cfg.d_vocab, where, [rows.length, T]);
      t = tf.tensor2d(Int32Array.from(data), [rows.length, T], 'int32');
    }
    hostCopies.set(t.dataId as object, data);
    return t;
  }

  /** The attention mask as validated host rows of 0/1. */
  private maskRows(mask: Mask, shape: [number, number]): number[][] {
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
    return Array.from({ length: shape[0] }, (_, b) => Array.from(flat).slice(b * shape[1], (b + 1) * shape[1]));
  }

  // ---------------------------------------------------------------- weights

  /** Rotary inverse frequencies of layer 0 at its native length (src/model/positions.ts; scaled ropes included). */
  invFreq(): Float32Array {
    if (!this.invFreqTable) this.invFreqTable = ropeInvFreq(ropeFor(this.cfg, 0), this.cfg.rotary_dim, 1);
    return this.invFreqTable;
  }

  /**
   * Call after replacing params in place: checks them against the config. (The forward reads the
   * canonical weights directly, W_Q / W_K / W_V as column blocks and W_O as a reshape, so no derived
   * copy needs rebuilding.)
   */
  invalidateFused(): void {
    this.checkParams();
  }

  /** Free the weights. */
  dispose(): void {
    tf.dispose(Object.values(this.params));
    tf.dispose(Object.values(this.halfParams).map((p) => p.words));
    this.params = {};
    this.halfParams = {};
  }
}

/** Run a generator of forward steps to its end (no readback between layers). */
function drain<R>(g: Generator<unknown, R, void>): R {
  for (;;) {
    const s = g.next();
    if (s.done) return s.value;
  }
}

function checkIds(data: ArrayLike<number>, T: number, vocab: number, where: string, shape: number[]): void {
  if (shape[0] === 0 || T === 0) throw new ShapeError(where, expectedFound('at least one token', `[${shape}]`));
  for (let i = 0; i < data.length; i++) {
    if (!(data[i] >= 0 && data[i] < vocab) || !Number.isInteger(data[i])) {
      throw new ValueError(`${where}[${Math.floor(i / T)}][${i % T}]`, expectedFound(`a token id in [0, ${vocab})`, data[i]));
    }
  }
}

/** Move one cached tensor to host memory (awaiting its values) and free the device copy. */
async function moveToHost(cache: Record<string, tf.Tensor>, name: string, host: Record<string, HostTensor>): Promise<void> {
  const t = cache[name];
  if (!t) return;
  delete cache[name];
  try {
    host[name] = { values: await t.data(), shape: t.shape, dtype: t.dtype };
  } finally {
    t.dispose();
  }
}

export function disposeKV(kv: KVCache): void {
  tf.dispose([...kv.k, ...kv.v, kv.mask, kv.positions]);
}

/** Up to three hook names near `name` (same last part, or a few edits away), nearest first. */
export function suggestNames(name: string, all: readonly string[]): string[] {
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
