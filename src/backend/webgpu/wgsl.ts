/**
 * WGSL pieces shared by the kernels: activations, half-precision decoding, special values.
 */

/** Element-wise activations a matmul epilogue can apply. */
export type Activation = 'none' | 'gelu' | 'gelu_new' | 'relu' | 'silu';

export const ACTIVATIONS: readonly Activation[] = ['none', 'gelu', 'gelu_new', 'relu', 'silu'];

/** Half-precision weight formats stored two per 32-bit word. */
export type HalfFormat = 'f16' | 'bf16';

/**
 * `fn act(x: f32) -> f32` for an activation.
 * gelu uses erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) (the Chebyshev fit in Numerical Recipes,
 * fractional error below 1.2e-7 for all z >= 0), so both tails keep their relative precision:
 * gelu(x) = x (1 - erfc(x/sqrt2)/2) for x >= 0 and x erfc(-x/sqrt2)/2 for x < 0.
 * gelu_new is the tanh form (GPT-2); tanh's argument is clamped so that no backend overflows.
 */
export function activationWgsl(act: Activation): string {
  switch (act) {
    case 'none':
      return 'fn act(x : f32) -> f32 { return x; }';
    case 'relu':
      return 'fn act(x : f32) -> f32 { return max(x, 0.0); }';
    case 'silu':
      return 'fn act(x : f32) -> f32 { return x / (1.0 + exp(-x)); }';
    case 'gelu_new':
      return `fn act(x : f32) -> f32 {
  let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return 0.5 * x * (1.0 + tanh(clamp(inner, -15.0, 15.0)));
}`;
    case 'gelu':
      return `fn erfc_pos(z : f32) -> f32 {
  let t = 1.0 / (1.0 + 0.5 * z);
  let p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807
          + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * exp(-z * z + p);
}
fn act(x : f32) -> f32 {
  let e = erfc_pos(abs(x) * 0.7071067811865476);
  return select(0.5 * x * e, x * (1.0 - 0.5 * e), x >= 0.0);
}`;
  }
}

/** `fn unpack_half(w : u32) -> vec2<f32>`: the two halves of a packed word (low half first). */
export function unpackHalfWgsl(format: HalfFormat): string {
  return format === 'f16'
    ? 'fn unpack_half(w : u32) -> vec2<f32> { return unpack2x16float(w); }'
    : 'fn unpack_half(w : u32) -> vec2<f32> { return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u)); }';
}

/**
 * WGSL expression for -Infinity. Constant expressions may not overflow (even through bitcast), so
 * the bits are read from a private variable (declared by NEG_INF_DECL) at run time.
 */
export const NEG_INF = 'bitcast<f32>(NEG_INF_BITS)';
export const NEG_INF_DECL = 'var<private> NEG_INF_BITS : u32 = 0xff800000u;';

/** A finite stand-in for -Infinity in running maxima (exp of differences stays finite). */
export const NEG_BIG = '-3.0e38';
