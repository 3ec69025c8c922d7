/**
 * What the zoo's recipes share: the per-token loss, a trainable wrapper that turns a model's params
 * into tf.Variables (and back), the train() options every recipe passes, evaluation of a detached
 * snapshot during training, and small host helpers.
 */
import * as tf from '@tensorflow/tfjs';
import { ValueError, expectedFound } from '../errors.js';
import type { HookSpec } from '../hooks/registry.js';
import { HookedTransformer, randomModel, type ModelView } from '../model/index.js';
import type { TrainResult } from './train.js';

/** Per-position negative log-likelihood [B, T] of `targets` [B, T] under `logits` [B, T, V]. */
export function tokenNll(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const V = logits.shape[2];
    const logp = tf.logSoftmax(logits);
    return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(targets.toInt(), V)), -1)) as tf.Tensor2D;
  });
}

/** Weighted mean NLL: sum(w * nll) / sum(w). */
export function weightedNll(logits: tf.Tensor3D, targets: tf.Tensor2D, weights: tf.Tensor2D): tf.Scalar {
  const nll = tokenNll(logits, targets);
  return tf.div(tf.sum(tf.mul(nll, weights)), tf.maximum(tf.sum(weights), 1e-9)) as tf.Scalar;
}

/**
 * Logits of the synchronous, differentiable forward (HookedTransformer.run), for losses inside
 * tf.variableGrads. `tokens` are host rows, so nothing is read back from the device.
 */
export function trainingLogits(model: ModelView, tokens: number[][]): tf.Tensor3D {
  return model.run(tokens, {}, null).logits;
}

/**
 * Trainable wrapper of a HookedTransformer: the chosen params become tf.Variables; `effective()`
 * maps the variables (plus fixed tensors) to the canonical params dict a forward uses. Call it
 * inside a tidy (the training loss does) and install the result as model.params.
 */
export class Trainable {
  readonly vars: Record<string, tf.Variable> = {};
  readonly fixed: Record<string, tf.Tensor> = {};
  constructor(
    readonly model: HookedTransformer,
    trainable: (name: string) => boolean,
    private readonly transform: (p: Record<string, tf.Tensor>) => Record<string, tf.Tensor> = (p) => p,
  ) {
    for (const [name, t] of Object.entries(model.params)) {
      if (trainable(name)) {
        this.vars[name] = tf.variable(t, true);
        t.dispose();
      } else {
        this.fixed[name] = t;
      }
    }
    model.params = {};
  }

  effective(): Record<string, tf.Tensor> {
    return this.transform({ ...this.fixed, ...this.vars });
  }

  private plainCopy(): Record<string, tf.Tensor> {
    return tf.tidy(() => {
      const e = this.effective();
      const out: Record<string, tf.Tensor> = {};
      for (const [k, v] of Object.entries(e)) out[k] = v.clone();
      return out as unknown as tf.TensorContainer;
    }) as unknown as Record<string, tf.Tensor>;
  }

  /** Give the model plain (non-variable) params again and free the variables. */
  finish(): HookedTransformer {
    const final = this.plainCopy();
    tf.dispose(Object.values(this.vars));
    tf.dispose(Object.values(this.fixed));
    this.model.params = final;
    this.model.invalidateFused();
    return this.model;
  }

  /** A plain copy of the current model (caller disposes), e.g. for a checkpoint or an eval. */
  snapshot(): HookedTransformer {
    return new HookedTransformer(this.model.cfg, this.plainCopy(), this.model.tokenizer, this.model.name);
  }
}

/** Which canonical params a family really has (the others stay at their zero init). */
export function realParam(model: ModelView, name: string): boolean {
  const c = model.cfg;
  if (name === 'unembed.b_U') return false;
  if (name === 'unembed.W_U' && c.tie_word_embeddings) return false;
  if (/attn\.b_[QKV]$/.test(name)) return c.attn_qkv_bias;
  if (/attn\.b_O$/.test(name)) return c.attn_out_bias;
  if (/mlp\.b_(in|out)$/.test(name)) return c.mlp_bias;
  return true;
}

export function mean(xs: number[]): number {
  if (xs.length === 0) throw new ValueError('mean', expectedFound('a non-empty list', 'empty'));
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** A GPT-2 config.json of the zoo's shape: no dropout, LayerNorm eps 1e-5, float32. */
export function gpt2Config(o: { vocab: number; nCtx: number; dModel: number; layers: number; heads: number; dMlp: number; act: string; tied: boolean; bos: number }): Record<string, unknown> {
  return {
    model_type: 'gpt2', architectures: ['GPT2LMHeadModel'], vocab_size: o.vocab, n_positions: o.nCtx, n_embd: o.dModel, n_layer: o.layers, n_head: o.heads,
    n_inner: o.dMlp, activation_function: o.act, layer_norm_epsilon: 1e-5, resid_pdrop: 0, embd_pdrop: 0, attn_pdrop: 0,
    tie_word_embeddings: o.tied, bos_token_id: o.bos, eos_token_id: o.bos, torch_dtype: 'float32',
  };
}

/** The shape of a zoo model with rotary positions (llamaConfig, starcoder2Config). */
export interface RotaryZooShape { vocab: number; dModel: number; dMlp: number; layers: number; heads: number; kvHeads?: number; headDim?: number; maxPos: number; bos: number; eos: number; dtype?: 'float32' | 'float16' }

/**
 * A LLaMA config.json of the zoo's shape: RMSNorm eps 1e-6, rotary base 1e4, gated SiLU MLP, no biases, untied, float32.
 * `kvHeads` (GQA, default `heads`) and `headDim` (default dModel / heads) are written only when given.
 */
export function llamaConfig(o: RotaryZooShape): Record<string, unknown> {
  return {
    model_type: 'llama', architectures: ['LlamaForCausalLM'], vocab_size: o.vocab, hidden_size: o.dModel, intermediate_size: o.dMlp, num_hidden_layers: o.layers,
    num_attention_heads: o.heads, num_key_value_heads: o.kvHeads ?? o.heads, ...(o.headDim !== undefined ? { head_dim: o.headDim } : {}),
    max_position_embeddings: o.maxPos, rms_norm_eps: 1e-6, rope_theta: 10000, hidden_act: 'silu',
    tie_word_embeddings: false, attention_bias: false, mlp_bias: false, bos_token_id: o.bos, eos_token_id: o.eos, torch_dtype: o.dtype ?? 'float32',
  };
}

/**
 * A StarCoder2 config.json of the zoo's shape: a GPT-style pre-norm block (LayerNorm with bias, biases on
 * every projection, plain GELU MLP) with rotary positions (base 1e4) and grouped-query attention;
 * untied, no sliding window, float32 unless `dtype`. `headDim` is written only when given.
 */
export function starcoder2Config(o: RotaryZooShape): Record<string, unknown> {
  return {
    model_type: 'starcoder2', architectures: ['Starcoder2ForCausalLM'], vocab_size: o.vocab, hidden_size: o.dModel, intermediate_size: o.dMlp,
    num_hidden_layers: o.layers, num_attention_heads: o.heads, num_key_value_heads: o.kvHeads ?? o.heads, ...(o.headDim !== undefined ? { head_dim: o.headDim } : {}),
    max_position_embeddings: o.maxPos, norm_epsilon: 1e-5, rope_theta: 10000, hidden_act: 'gelu_pytorch_tanh', use_bias: true, sliding_window: null,
    tie_word_embeddings: false, residual_dropout: 0, embedding_dropout: 0, attention_dropout: 0, bos_token_id: o.bos, eos_token_id: o.eos, torch_dtype: o.dtype ?? 'float32',
  };
}

/** The config of a model as normalised by the model core (via a throwaway tiny random model). */
export function configOf(hf: Record<string, unknown>): HookedTransformer['cfg'] {
  const m = randomModel(hf, { seed: 0 });
  const cfg = m.cfg;
  m.dispose();
  return cfg;
}

/** Top-1 token at the last position of each row of `logits` [B, T, V], read asynchronously (logits are kept). */
export async function lastArgmax(logits: tf.Tensor3D): Promise<number[]> {
  const pred = tf.tidy(() => tf.argMax(tf.squeeze(tf.slice(logits, [0, logits.shape[1] - 1, 0], [-1, 1, -1]), [1]), -1));
  try {
    return Array.from(await pred.data());
  } finally {
    pred.dispose();
  }
}

/**
 * Top-1 predictions at one position per row (`positions[b]`, default the last): one forward of only
 * those positions' logits, one asynchronous read. Options pass to the forward (hooks, attention mask).
 */
export async function predictAt(model: ModelView, rows: number[][], opts: { positions?: number[]; fwdHooks?: HookSpec[]; attentionMask?: number[][] } = {}): Promise<number[]> {
  const T = rows[0].length;
  const logits = await model.forward(rows, { fwdHooks: opts.fwdHooks, attentionMask: opts.attentionMask, logitPositions: opts.positions ?? rows.map(() => T - 1) });
  return lastArgmax(logits).finally(() => logits.dispose());
}

export interface TrainRecipeOptions {
  /** Number of optimizer steps (default: the recipe's). */
  steps?: number;
  seed?: number;
  /** Progress display label, or false for none (default false). */
  progressLabel?: string | false;
  /** Called with each eval point (step and values). */
  onEval?: (step: number, values: Record<string, number>) => void;
  /** Batch size (default: the recipe's). */
  batch?: number;
  /** Evaluate every this many steps (default: the recipe's). */
  evalEvery?: number;
  /** Stop early (after the current step); the model trained so far is returned. */
  signal?: AbortSignal;
  /** Measure the headline metrics on fresh data after training (default true; the card's numbers). */
  finalEval?: boolean;
  /** Override numeric recipe fields (e.g. { lr: 1e-3 }); recorded in the returned recipe. */
  overrides?: Record<string, number>;
}

export interface TrainedZooModel {
  model: HookedTransformer;
  result: TrainResult;
  /** Headline numbers measured on fresh seeded data after training. */
  metrics: Record<string, unknown>;
  /** The recipe actually used (for the model card); `steps` is the number of updates requested. */
  recipe: Record<string, unknown>;
}

/** The optimiser fields of a recipe. */
export interface RecipeCore {
  lr: number;
  warmupSteps: number;
  weightDecay: number;
  betas: [number, number];
  gradClip: number;
}

/** The train() options every zoo recipe shares (warmup clipped to the run's length). */
export function recipeOptions(R: RecipeCore, o: TrainRecipeOptions, params: Record<string, tf.Variable>, steps: number, seed: number) {
  return {
    params,
    steps,
    lr: R.lr,
    warmupSteps: Math.min(R.warmupSteps, Math.max(0, steps - 1)),
    weightDecay: R.weightDecay,
    betas: R.betas,
    gradClip: R.gradClip,
    seed,
    progressLabel: o.progressLabel ?? false,
    signal: o.signal,
  };
}

/** train()'s evalFn: evaluate a detached snapshot of the current weights and report it through onEval. */
export function snapshotEval(tr: Trainable, o: TrainRecipeOptions, evaluate: (snap: HookedTransformer) => Promise<Record<string, number>>) {
  return async (step: number): Promise<Record<string, number>> => {
    const snap = tr.snapshot();
    try {
      const v = await evaluate(snap);
      o.onEval?.(step, v);
      return v;
    } finally {
      snap.dispose();
    }
  };
}
