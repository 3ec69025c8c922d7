/**
 * Position encodings as host arithmetic: rotary inverse frequencies for every HF rope type, the
 * cos/sin scaling some of them apply, and ALiBi slopes. Pure functions over numbers (float64, rounded
 * to float32 at the end); the forward turns them into tensors (src/model/ops.ts rotaryTables).
 *
 * The rope formulas follow transformers' modeling_rope_utils.py (5.5): _compute_linear_scaling_rope_parameters,
 * _compute_dynamic_ntk_parameters, _compute_yarn_parameters, _compute_longrope_parameters and
 * _compute_llama3_parameters, and the per-forward updates of dynamic_rope_update. ALiBi follows
 * modeling_bloom.py build_alibi_tensor.
 */
import type { ModelConfig, RopeScaling, RopeSpec } from './config.js';

/** The plain rotary frequencies base^(-2i / dim), i < dim / 2, in float64. */
function plain(theta: number, dim: number): number[] {
  return Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / dim));
}

/**
 * Inverse frequencies [dim / 2] of one rotary setting. `seqLen` is the largest position id of the run
 * plus one (over the whole batch, as HF computes it); only 'dynamic' and 'longrope' read it.
 */
export function ropeInvFreq(spec: RopeSpec, dim: number, seqLen: number): Float32Array {
  const s = spec.scaling;
  const theta = spec.theta;
  switch (s.rope_type) {
    case 'default':
      return Float32Array.from(plain(theta, dim));
    case 'linear':
      return Float32Array.from(plain(theta, dim).map((f) => f / s.factor));
    case 'dynamic': {
      // NTK-aware: the base grows with the sequence once it passes max_position_embeddings
      const S = Math.max(seqLen, s.max_position_embeddings);
      const base = theta * Math.pow((s.factor * S) / s.max_position_embeddings - (s.factor - 1), dim / (dim - 2));
      return Float32Array.from(plain(base, dim));
    }
    case 'yarn':
      return Float32Array.from(yarn(theta, dim, s));
    case 'longrope': {
      const ext = seqLen > s.original_max_position_embeddings ? s.long_factor : s.short_factor;
      return Float32Array.from(plain(theta, dim).map((f, i) => f / ext[i]));
    }
    case 'llama3':
      return Float32Array.from(llama3(theta, dim, s));
  }
}

/** YaRN: interpolated frequencies below the correction range, extrapolated above it, a linear ramp between. */
function yarn(theta: number, dim: number, s: Extract<RopeScaling, { rope_type: 'yarn' }>): number[] {
  const corrDim = (rotations: number) => (dim * Math.log(s.original_max_position_embeddings / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corrDim(s.beta_fast);
  let high = corrDim(s.beta_slow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  return plain(theta, dim).map((extrap, i) => {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const keep = 1 - ramp; // share of the extrapolated (unscaled) frequency
    return (extrap / s.factor) * (1 - keep) + extrap * keep;
  });
}

/** Llama 3.1: long wavelengths divided by factor, short ones kept, a smooth blend between. */
function llama3(theta: number, dim: number, s: Extract<RopeScaling, { rope_type: 'llama3' }>): number[] {
  const lowWavelen = s.original_max_position_embeddings / s.low_freq_factor;
  const highWavelen = s.original_max_position_embeddings / s.high_freq_factor;
  return plain(theta, dim).map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen > lowWavelen) return f / s.factor;
    if (wavelen < highWavelen) return f;
    const smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    return ((1 - smooth) * f) / s.factor + smooth * f;
  });
}

/** The factor HF multiplies cos and sin by (YaRN's and LongRoPE's attention factor; 1 otherwise). */
export function ropeCosSinScale(s: RopeScaling): number {
  return s.rope_type === 'yarn' || s.rope_type === 'longrope' ? s.attention_factor : 1;
}

/** The rotary setting of layer l. */
export function ropeFor(cfg: ModelConfig, l: number): RopeSpec {
  return cfg.layer_rope ? cfg.layer_rope[l] : { theta: cfg.rope_theta, scaling: cfg.rope_scaling };
}

/** A key naming a rotary setting, so that layers sharing one share their tables. */
export function ropeKey(spec: RopeSpec): string {
  return JSON.stringify(spec);
}

/**
 * ALiBi slopes, one per head: 2^(-8 i / n) for i = 1..n with n the largest power of two <= heads; the
 * remaining heads take every other slope of the series for 2n (BLOOM's build_alibi_tensor).
 */
export function alibiSlopes(nHeads: number): Float32Array {
  const n = 2 ** Math.floor(Math.log2(nHeads));
  const series = (m: number) => Array.from({ length: m }, (_, i) => Math.pow(2, (-8 * (i + 1)) / m));
  const extra = series(2 * n).filter((_, i) => i % 2 === 0).slice(0, Math.min(n, nHeads - n));
  return Float32Array.from([...series(n), ...(n === nHeads ? [] : extra)]);
}
