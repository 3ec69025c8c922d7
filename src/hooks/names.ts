/**
 * Hook-point names, TransformerLens conventions, as TypeScript template-literal types:
 * a misspelt name is a compile error in a notebook. `actName('pattern', 5)` builds one. The hook points a
 * given model has are whatever its forward passes (HookedTransformer.hookNames traces them).
 */
export type GlobalHookName =
  | 'hook_tokens'
  | 'hook_embed'
  | 'hook_pos_embed'
  | 'embed.ln.hook_scale'
  | 'embed.ln.hook_normalized'
  | 'ln_final.hook_scale'
  | 'ln_final.hook_normalized'
  | 'unembed.hook_in'
  | 'unembed.hook_out';

export type AttnHookSuffix =
  | 'hook_q'
  | 'hook_k'
  | 'hook_v'
  | 'hook_rot_q'
  | 'hook_rot_k'
  | 'hook_attn_scores'
  | 'hook_pattern'
  | 'hook_z'
  | 'hook_result'
  | 'hook_q_input'
  | 'hook_k_input'
  | 'hook_v_input'
  | 'q_norm.hook_scale'
  | 'q_norm.hook_normalized'
  | 'k_norm.hook_scale'
  | 'k_norm.hook_normalized';

/** Mixture-of-experts points (experts.* hold every expert at once: [batch, pos, expert, ...]). */
export type MoEHookSuffix =
  | 'hook_router_logits'
  | 'hook_expert_weights'
  | 'hook_expert_indices'
  | 'hook_topk_weights'
  | 'experts.hook_pre'
  | 'experts.hook_pre_linear'
  | 'experts.hook_post'
  | 'experts.hook_out'
  | 'shared_expert.hook_pre'
  | 'shared_expert.hook_pre_linear'
  | 'shared_expert.hook_post'
  | 'shared_expert.hook_out'
  | 'hook_shared_gate';

export type BlockHookSuffix =
  | 'hook_resid_pre'
  | 'hook_resid_mid'
  | 'hook_resid_post'
  | 'hook_attn_out'
  | 'hook_mlp_out'
  | 'hook_attn_in'
  | 'hook_mlp_in'
  | 'ln1.hook_scale'
  | 'ln1.hook_normalized'
  | 'ln2.hook_scale'
  | 'ln2.hook_normalized'
  | 'ln1_post.hook_scale'
  | 'ln1_post.hook_normalized'
  | 'ln2_post.hook_scale'
  | 'ln2_post.hook_normalized'
  | 'mlp.hook_pre'
  | 'mlp.hook_pre_linear'
  | 'mlp.hook_post'
  | `attn.${AttnHookSuffix}`
  | `mlp.${MoEHookSuffix}`;

export type BlockHookName = `blocks.${number}.${BlockHookSuffix}`;
export type HookName = GlobalHookName | BlockHookName;

/** Short names accepted by actName, as in TransformerLens utils.get_act_name. */
const SHORT: Record<string, string> = {
  resid_pre: 'hook_resid_pre',
  resid_mid: 'hook_resid_mid',
  resid_post: 'hook_resid_post',
  attn_out: 'hook_attn_out',
  mlp_out: 'hook_mlp_out',
  q: 'attn.hook_q',
  k: 'attn.hook_k',
  v: 'attn.hook_v',
  rot_q: 'attn.hook_rot_q',
  rot_k: 'attn.hook_rot_k',
  attn_scores: 'attn.hook_attn_scores',
  scores: 'attn.hook_attn_scores',
  pattern: 'attn.hook_pattern',
  attn: 'attn.hook_pattern',
  z: 'attn.hook_z',
  result: 'attn.hook_result',
  pre: 'mlp.hook_pre',
  pre_linear: 'mlp.hook_pre_linear',
  post: 'mlp.hook_post',
  scale1: 'ln1.hook_scale',
  normalized1: 'ln1.hook_normalized',
  scale2: 'ln2.hook_scale',
  normalized2: 'ln2.hook_normalized',
  attn_in: 'hook_attn_in',
  mlp_in: 'hook_mlp_in',
  q_input: 'attn.hook_q_input',
  k_input: 'attn.hook_k_input',
  v_input: 'attn.hook_v_input',
};

export type ShortActName = keyof typeof SHORT_TYPES;
const SHORT_TYPES = {
  resid_pre: 0, resid_mid: 0, resid_post: 0, attn_out: 0, mlp_out: 0, q: 0, k: 0, v: 0, rot_q: 0, rot_k: 0,
  attn_scores: 0, scores: 0, pattern: 0, attn: 0, z: 0, result: 0, pre: 0, pre_linear: 0, post: 0,
  scale1: 0, normalized1: 0, scale2: 0, normalized2: 0, attn_in: 0, mlp_in: 0, q_input: 0, k_input: 0, v_input: 0,
};

export function actName(name: ShortActName, layer: number): BlockHookName;
export function actName(name: string, layer?: number): HookName;
export function actName(name: string, layer?: number): HookName {
  const suffix = SHORT[name] ?? name;
  if (layer === undefined) return suffix as HookName;
  return `blocks.${layer}.${suffix}` as BlockHookName;
}

/** Parse "blocks.3.attn.hook_pattern" into {layer: 3, suffix: "attn.hook_pattern"}; null for global names. */
export function parseHookName(name: string): { layer: number; suffix: string } | null {
  const m = /^blocks\.(\d+)\.(.+)$/.exec(name);
  return m ? { layer: Number(m[1]), suffix: m[2] } : null;
}
