/**
 * The converter most families share: an HF decoder whose modules are named by a `Layout` (where the
 * embedding, each block's norms, projections and MLP, the final norm and the head live) becomes the
 * canonical TransformerLens layout, and back. A family file gives its Layout as data; fused projections
 * (Phi-3, Falcon, BLOOM) give a split function and its inverse.
 */
import * as tf from '@tensorflow/tfjs';
import { FormatError } from '../../errors.js';
import type { ModelConfig } from '../config.js';
import {
  biasToHeads, convertLayer, headsToProj, linT, oProjToWO, projToHeads, readNorm, wOToOProj, writeNorm, type Family, type StateDict, type WeightSource,
} from './common.js';

/** A fused q/k/v projection: HF tensor (weight [rows, d] or bias [rows]) <-> q, k, v in Linear row layout. */
export interface FusedQKV {
  /** Module name inside the block, e.g. 'self_attention.query_key_value'. */
  name: string;
  /** Fused rows -> [q rows (H*dh), k rows (K*dh), v rows (K*dh)], each head's rows contiguous. */
  split(t: tf.Tensor, cfg: ModelConfig): [tf.Tensor, tf.Tensor, tf.Tensor];
  /** The inverse of split. */
  merge(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, cfg: ModelConfig): tf.Tensor;
}

/**
 * Mixture-of-experts tensors: transformers 5 holds the experts fused in memory (gate_up_proj, down_proj)
 * but reads and writes checkpoints per expert under the older names (Mixtral's block_sparse_moe.experts.{e}.w1/w3/w2,
 * Qwen2-MoE's mlp.experts.{e}.gate_proj/up_proj/down_proj); both are read, the per-expert form is written.
 */
export interface MoELayout {
  /** Router Linear, e.g. 'mlp.gate' ([E, d]). */
  router: string;
  /** Fused experts module, e.g. 'mlp.experts' (gate_up_proj [E, 2w, d], gate first; down_proj [E, d, w]). */
  experts: string;
  /** Per-expert names of older checkpoints, {e} = expert: [gate, up, down] Linear modules. */
  legacy?: [string, string, string];
  /** Older router name (Mixtral 4.x: 'block_sparse_moe.gate'). */
  legacyRouter?: string;
  /** Shared expert (Qwen2-MoE): gated MLP module and its sigmoid gate Linear. */
  shared?: { mlp: string; gate: string };
}

/** Where an HF decoder keeps its tensors (module names without '.weight' / '.bias'). */
export interface Layout {
  embed: string;
  /** Learned positions; `offset` rows precede position 0 (OPT: 2). */
  pos?: { name: string; offset: number };
  /** LayerNorm right after the embedding (BLOOM). */
  embedNorm?: string;
  /** Block prefix: `${layers}${l}.` */
  layers: string;
  ln1?: string;
  ln2?: string;
  ln1Post?: string;
  ln2Post?: string;
  q?: string;
  k?: string;
  v?: string;
  qkv?: FusedQKV;
  o: string;
  /** Query / key norms; '{h}' in the name = one module per head. */
  qNorm?: string;
  kNorm?: string;
  /** Dense MLP: up/in, down/out and (gated) gate, or a fused gate_up (gate first). */
  mlpIn?: string;
  mlpOut: string;
  mlpGate?: string;
  mlpGateUp?: string;
  moe?: MoELayout;
  finalNorm: string;
  lmHead: string;
  /** Added to the stored norm weights ((1 + w) RMSNorms of Gemma: canonical w = stored w + 1). */
  normOffset?: number;
}

function toCanonical(L: Layout, src: WeightSource, c: ModelConfig): StateDict {
  const { d_model: d, d_vocab: V } = c;
  const p: StateDict = {};
  const normBias = c.normalization === 'LN';
  p['embed.W_E'] = src.get(`${L.embed}.weight`, [V, d]).clone();
  if (L.embedNorm) readNorm(src, p, L.embedNorm, 'embed.ln', d, true);
  if (L.pos) p['pos_embed.W_pos'] = tf.slice(src.get(`${L.pos.name}.weight`, [c.n_ctx + L.pos.offset, d]), [L.pos.offset, 0], [c.n_ctx, d]);
  for (let l = 0; l < c.n_layers; l++) {
    const b = `${L.layers}${l}.`;
    const o = `blocks.${l}.`;
    const norm = (hf: string | undefined, name: string) => {
      if (hf && c.norm_weights) readNorm(src, p, b + hf, o + name, d, normBias, L.normOffset);
    };
    convertLayer(src, p, () => {
      norm(L.ln1, 'ln1');
      if (c.shared_norm) for (const s of ['w', 'b']) if (p[`${o}ln1.${s}`]) p[`${o}ln2.${s}`] = p[`${o}ln1.${s}`].clone();
      if (!c.shared_norm) norm(L.ln2, 'ln2');
      norm(L.ln1Post, 'ln1_post');
      norm(L.ln2Post, 'ln2_post');
      readAttention(L, src, c, b, o, p);
      if (c.moe?.layers[l]) readMoE(L.moe!, src, c, b, o, p);
      else readMlp(L, src, c, b, o + 'mlp.', c.d_mlp, p);
    });
  }
  if (c.norm_weights) readNorm(src, p, L.finalNorm, 'ln_final', d, normBias, L.normOffset);
  p['unembed.W_U'] = c.tie_word_embeddings ? tf.transpose(p['embed.W_E']) : linT(src.get(`${L.lmHead}.weight`, [V, d]));
  p['unembed.b_U'] = c.unembed_bias ? src.get(`${L.lmHead}.bias`, [V]).clone() : tf.zeros([V]);
  return p;
}

/** A bias the config says exists (read, shape-checked) or zeros. */
function biasOr(src: WeightSource, name: string, shape: number[], on: boolean): tf.Tensor {
  return on ? src.get(name, shape).clone() : tf.zeros(shape);
}

function readAttention(L: Layout, src: WeightSource, c: ModelConfig, b: string, o: string, p: StateDict): void {
  const { d_model: d, n_heads: H, n_kv_heads: K, d_head: dh } = c;
  const rows = [H * dh, K * dh, K * dh];
  let W: tf.Tensor[];
  let B: tf.Tensor[];
  if (L.qkv) {
    W = L.qkv.split(src.get(`${b}${L.qkv.name}.weight`, [H * dh + 2 * K * dh, d]), c);
    B = c.attn_qkv_bias ? L.qkv.split(src.get(`${b}${L.qkv.name}.bias`, [H * dh + 2 * K * dh]), c) : rows.map((n) => tf.zeros([n]));
  } else {
    const names = [L.q!, L.k!, L.v!];
    W = names.map((n, i) => src.get(`${b}${n}.weight`, [rows[i], d]));
    B = names.map((n, i) => biasOr(src, `${b}${n}.bias`, [rows[i]], c.attn_qkv_bias));
  }
  ['Q', 'K', 'V'].forEach((n, i) => {
    const heads = i === 0 ? H : K;
    p[`${o}attn.W_${n}`] = projToHeads(W[i], heads);
    p[`${o}attn.b_${n}`] = biasToHeads(B[i], heads);
  });
  p[`${o}attn.W_O`] = oProjToWO(src.get(`${b}${L.o}.weight`, [d, H * dh]), H);
  p[`${o}attn.b_O`] = biasOr(src, `${b}${L.o}.bias`, [d], c.attn_out_bias);
  if (c.qk_norm) {
    readQKNorm(L.qNorm!, src, c, b, `${o}attn.q_norm`, H, p, L.normOffset);
    readQKNorm(L.kNorm!, src, c, b, `${o}attn.k_norm`, K, p, L.normOffset);
  }
}

/** q_norm / k_norm weights: shared [dh], per head [heads, dh] (one module per head '{h}' or one [heads*dh] vector). */
function readQKNorm(hf: string, src: WeightSource, c: ModelConfig, b: string, name: string, heads: number, p: StateDict, offset = 0): void {
  const q = c.qk_norm!;
  const dh = c.d_head;
  const read = (field: 'weight' | 'bias'): tf.Tensor => {
    let t: tf.Tensor;
    if (hf.includes('{h}')) t = tf.stack(Array.from({ length: heads }, (_, h) => src.get(`${b}${hf.replace('{h}', String(h))}.${field}`, [dh])));
    else if (q.scope === 'all' || q.per_head) t = tf.reshape(src.get(`${b}${hf}.${field}`, [heads * dh]), [heads, dh]);
    else t = src.get(`${b}${hf}.${field}`, [dh]).clone();
    return field === 'weight' && offset ? tf.add(t, offset) : t;
  };
  if (c.norm_weights) p[`${name}.w`] = read('weight');
  if (q.bias) p[`${name}.b`] = read('bias');
}

function readMlp(L: Layout, src: WeightSource, c: ModelConfig, b: string, o: string, m: number, p: StateDict): void {
  const d = c.d_model;
  if (L.mlpGateUp) {
    const [gate, up] = tf.split(src.get(`${b}${L.mlpGateUp}.weight`, [2 * m, d]), 2, 0);
    p[o + 'W_gate'] = linT(gate);
    p[o + 'W_in'] = linT(up);
    p[o + 'b_in'] = tf.zeros([m]);
  } else {
    p[o + 'W_in'] = linT(src.get(`${b}${L.mlpIn}.weight`, [m, d]));
    if (c.gated_mlp) p[o + 'W_gate'] = linT(src.get(`${b}${L.mlpGate}.weight`, [m, d]));
    p[o + 'b_in'] = biasOr(src, `${b}${L.mlpIn}.bias`, [m], c.mlp_bias);
  }
  p[o + 'W_out'] = linT(src.get(`${b}${L.mlpOut}.weight`, [d, m]));
  p[o + 'b_out'] = biasOr(src, `${b}${L.mlpOut}.bias`, [d], c.mlp_bias);
}

function readMoE(M: MoELayout, src: WeightSource, c: ModelConfig, b: string, o: string, p: StateDict): void {
  const d = c.d_model;
  const { n_experts: E, d_expert: w, d_shared } = c.moe!;
  const router = src.find(`${b}${M.router}.weight`) || !M.legacyRouter ? M.router : M.legacyRouter;
  p[o + 'mlp.W_router'] = linT(src.get(`${b}${router}.weight`, [E, d]));
  const fused = src.find(`${b}${M.experts}.gate_up_proj`);
  if (fused || !M.legacy) {
    const [gate, up] = tf.split(src.get(`${b}${M.experts}.gate_up_proj`, [E, 2 * w, d]), 2, 1);
    p[o + 'mlp.experts.W_gate'] = tf.transpose(gate, [0, 2, 1]);
    p[o + 'mlp.experts.W_in'] = tf.transpose(up, [0, 2, 1]);
    p[o + 'mlp.experts.W_out'] = tf.transpose(src.get(`${b}${M.experts}.down_proj`, [E, d, w]), [0, 2, 1]);
  } else {
    const each = (i: number, shape: number[]) => tf.stack(Array.from({ length: E }, (_, e) => linT(src.get(`${b}${M.legacy![i].replace('{e}', String(e))}.weight`, shape))));
    p[o + 'mlp.experts.W_gate'] = each(0, [w, d]);
    p[o + 'mlp.experts.W_in'] = each(1, [w, d]);
    p[o + 'mlp.experts.W_out'] = each(2, [d, w]);
  }
  if (M.shared && d_shared > 0) {
    const s = `${b}${M.shared.mlp}.`;
    p[o + 'mlp.shared_expert.W_gate'] = linT(src.get(s + 'gate_proj.weight', [d_shared, d]));
    p[o + 'mlp.shared_expert.W_in'] = linT(src.get(s + 'up_proj.weight', [d_shared, d]));
    p[o + 'mlp.shared_expert.W_out'] = linT(src.get(s + 'down_proj.weight', [d, d_shared]));
    p[o + 'mlp.W_shared_gate'] = linT(src.get(`${b}${M.shared.gate}.weight`, [1, d]));
  }
}

function fromCanonical(L: Layout, p: StateDict, c: ModelConfig, prefix = ''): StateDict {
  const sd: StateDict = {};
  const off = L.normOffset ?? 0;
  sd[`${prefix}${L.embed}.weight`] = p['embed.W_E'].clone();
  if (L.embedNorm) writeNorm(p, sd, 'embed.ln', `${prefix}${L.embedNorm}`);
  if (L.pos) sd[`${prefix}${L.pos.name}.weight`] = tf.concat([tf.zeros([L.pos.offset, c.d_model]), p['pos_embed.W_pos']], 0);
  for (let l = 0; l < c.n_layers; l++) {
    const b = `${prefix}${L.layers}${l}.`;
    const o = `blocks.${l}.`;
    const pairs: [string | undefined, string][] = [[L.ln1, 'ln1'], [c.shared_norm ? undefined : L.ln2, 'ln2'], [L.ln1Post, 'ln1_post'], [L.ln2Post, 'ln2_post']];
    for (const [hf, name] of pairs) if (hf) writeNorm(p, sd, o + name, b + hf, off);
    writeAttention(L, p, c, b, o, sd);
    if (c.moe?.layers[l]) writeMoE(L.moe!, p, c, b, o, sd);
    else writeMlp(L, p, c, b, o + 'mlp.', sd);
  }
  writeNorm(p, sd, 'ln_final', `${prefix}${L.finalNorm}`, off);
  if (!c.tie_word_embeddings) sd[`${L.lmHead}.weight`] = linT(p['unembed.W_U']);
  if (c.unembed_bias) sd[`${L.lmHead}.bias`] = p['unembed.b_U'].clone();
  return sd;
}

function writeAttention(L: Layout, p: StateDict, c: ModelConfig, b: string, o: string, sd: StateDict): void {
  const W = ['Q', 'K', 'V'].map((n) => headsToProj(p[`${o}attn.W_${n}`]));
  const B = ['Q', 'K', 'V'].map((n) => p[`${o}attn.b_${n}`].flatten());
  if (L.qkv) {
    sd[`${b}${L.qkv.name}.weight`] = L.qkv.merge(W[0], W[1], W[2], c);
    if (c.attn_qkv_bias) sd[`${b}${L.qkv.name}.bias`] = L.qkv.merge(B[0], B[1], B[2], c);
  } else {
    [L.q!, L.k!, L.v!].forEach((n, i) => {
      sd[`${b}${n}.weight`] = W[i];
      if (c.attn_qkv_bias) sd[`${b}${n}.bias`] = B[i];
    });
  }
  sd[`${b}${L.o}.weight`] = wOToOProj(p[`${o}attn.W_O`]);
  if (c.attn_out_bias) sd[`${b}${L.o}.bias`] = p[`${o}attn.b_O`].clone();
  if (c.qk_norm) {
    writeQKNorm(L.qNorm!, p, c, b, `${o}attn.q_norm`, sd, L.normOffset);
    writeQKNorm(L.kNorm!, p, c, b, `${o}attn.k_norm`, sd, L.normOffset);
  }
}

function writeQKNorm(hf: string, p: StateDict, c: ModelConfig, b: string, name: string, sd: StateDict, offset = 0): void {
  for (const [field, key] of [['weight', 'w'], ['bias', 'b']] as const) {
    let t = p[`${name}.${key}`];
    if (!t) continue;
    if (field === 'weight' && offset) t = tf.sub(t, offset);
    if (hf.includes('{h}')) tf.unstack(t).forEach((row, h) => (sd[`${b}${hf.replace('{h}', String(h))}.${field}`] = row));
    else sd[`${b}${hf}.${field}`] = c.qk_norm!.scope === 'all' || c.qk_norm!.per_head ? t.flatten() : t.clone();
  }
}

function writeMlp(L: Layout, p: StateDict, c: ModelConfig, b: string, o: string, sd: StateDict): void {
  if (p[o + 'b_gate']) throw new FormatError(`${o}b_gate`, 'a gate bias (made by fold_ln) has no place in the HF checkpoint; save the model before processing its weights');
  if (L.mlpGateUp) sd[`${b}${L.mlpGateUp}.weight`] = tf.concat([linT(p[o + 'W_gate']), linT(p[o + 'W_in'])], 0);
  else {
    sd[`${b}${L.mlpIn}.weight`] = linT(p[o + 'W_in']);
    if (c.gated_mlp) sd[`${b}${L.mlpGate}.weight`] = linT(p[o + 'W_gate']);
    if (c.mlp_bias) sd[`${b}${L.mlpIn}.bias`] = p[o + 'b_in'].clone();
  }
  sd[`${b}${L.mlpOut}.weight`] = linT(p[o + 'W_out']);
  if (c.mlp_bias) sd[`${b}${L.mlpOut}.bias`] = p[o + 'b_out'].clone();
}

/** Experts are saved per expert under the older names when the family has them: transformers 5 writes its checkpoints so. */
function writeMoE(M: MoELayout, p: StateDict, c: ModelConfig, b: string, o: string, sd: StateDict): void {
  sd[`${b}${M.legacyRouter ?? M.router}.weight`] = linT(p[o + 'mlp.W_router']);
  const t = (n: string) => tf.transpose(p[o + n], [0, 2, 1]);
  if (M.legacy) {
    ['W_gate', 'W_in', 'W_out'].forEach((n, i) => {
      tf.unstack(t(`mlp.experts.${n}`)).forEach((w, e) => (sd[`${b}${M.legacy![i].replace('{e}', String(e))}.weight`] = w));
    });
  } else {
    sd[`${b}${M.experts}.gate_up_proj`] = tf.concat([t('mlp.experts.W_gate'), t('mlp.experts.W_in')], 1);
    sd[`${b}${M.experts}.down_proj`] = t('mlp.experts.W_out');
  }
  if (M.shared && c.moe!.d_shared > 0) {
    const s = `${b}${M.shared.mlp}.`;
    sd[s + 'gate_proj.weight'] = linT(p[o + 'mlp.shared_expert.W_gate']);
    sd[s + 'up_proj.weight'] = linT(p[o + 'mlp.shared_expert.W_in']);
    sd[s + 'down_proj.weight'] = linT(p[o + 'mlp.shared_expert.W_out']);
    sd[`${b}${M.shared.gate}.weight`] = linT(p[o + 'mlp.W_shared_gate']);
  }
}

/**
 * A family's converter from its Layout; saving writes `prefix` (HF's `model.` / `transformer.`) before
 * every name but the head's.
 */
export function layoutFamily(layout: Layout | ((cfg: ModelConfig) => Layout), prefix: string): Pick<Family, 'toCanonical' | 'fromCanonical'> {
  const of = (cfg: ModelConfig) => (typeof layout === 'function' ? layout(cfg) : layout);
  return {
    toCanonical: (src, cfg) => toCanonical(of(cfg), src, cfg),
    fromCanonical: (p, cfg) => fromCanonical(of(cfg), p, cfg, prefix),
  };
}

/** q, k, v as consecutive row blocks [H*dh | K*dh | K*dh] (Phi-3's qkv_proj, Falcon-7B's multi-query layout). */
export function blockQKV(name: string): FusedQKV {
  const sizes = (c: ModelConfig) => [c.n_heads * c.d_head, c.n_kv_heads * c.d_head, c.n_kv_heads * c.d_head];
  return {
    name,
    split: (t, c) => tf.split(t, sizes(c), 0) as [tf.Tensor, tf.Tensor, tf.Tensor],
    merge: (q, k, v) => tf.concat([q, k, v], 0),
  };
}

/**
 * Grouped rows: for each of `groups` groups, `nq` query heads then one key and one value head of d_head
 * rows each (BLOOM and Falcon's classic layout: groups = heads, nq = 1; Falcon-40B: groups = K, nq = H / K).
 */
export function groupedQKV(name: string): FusedQKV {
  const dims = (c: ModelConfig) => ({ g: c.n_kv_heads, nq: c.n_heads / c.n_kv_heads, dh: c.d_head });
  return {
    name,
    split(t, c) {
      const { g, nq, dh } = dims(c);
      const rest = t.shape.slice(1);
      const x = tf.reshape(t, [g, nq + 2, dh, ...rest]);
      const part = (start: number, n: number) => tf.reshape(tf.slice(x, [0, start], [g, n]), [g * n * dh, ...rest]);
      return [part(0, nq), part(nq, 1), part(nq + 1, 1)];
    },
    merge(q, k, v, c) {
      const { g, nq, dh } = dims(c);
      const rest = q.shape.slice(1);
      const parts = [tf.reshape(q, [g, nq, dh, ...rest]), tf.reshape(k, [g, 1, dh, ...rest]), tf.reshape(v, [g, 1, dh, ...rest])];
      return tf.reshape(tf.concat(parts, 1), [g * (nq + 2) * dh, ...rest]);
    },
  };
}
