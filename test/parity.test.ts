// Parity with HF transformers: every tensor the reference fixtures store (fixtures/reference/make_reference.py on
// HF transformers), compared at its TransformerLens hook point at every non-pad position, for every family in
// the manifest. A stored tensor this test does not know how to compare fails the test (nothing is skipped silently).
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { inputTensors, prepareInputs } from '../src/model/forward.js';
import type { ActivationCache } from '../src/model/cache.js';
import { fusedKernels } from '../src/model/ops.js';
import { fusedKernelCounts } from '../src/backend/webgpu/index.js';
import { REF_DIR, REF_FAMILIES, loadReference, maskedRelErr, visibleRelErr } from './helpers/reference.js';

const TOL = 1e-4;
export const parityReport: Record<string, Record<string, number>> = {};

/** How one stored tensor is compared: our tensor (owned by the caller when `own`) and the query axis. */
interface Ours {
  t: tf.Tensor;
  own: boolean;
  queryAxis?: number;
  /** Attention scores: compare visible entries only. */
  scores?: boolean;
  /** Integer tensors (expert indices): exact equality. */
  exact?: boolean;
}

/** K/V heads repeated per query group when HF stored them per query head (Falcon's new architecture). */
function perQueryHead(t: tf.Tensor, heads: number): Ours {
  const K = t.shape[2] as number;
  if (K === heads) return { t, own: false };
  const idx = Array.from({ length: heads }, (_, h) => Math.floor(h / (heads / K)));
  return { t: tf.gather(t, idx, 2), own: true };
}

/** Our tensor for a stored reference name (null: an input, checked elsewhere). */
function oursFor(name: string, refShape: number[], model: HookedTransformer, cache: ActivationCache, logits: tf.Tensor, rot: RotaryRef): Ours | null {
  const L = model.cfg.n_layers;
  const [kind, a, b] = name.split('.');
  const l = Number(a);
  const c = (n: string) => cache.get(n as never);
  const attn = (s: string) => c(`blocks.${l}.attn.${s}`);
  switch (kind) {
    case 'input_ids':
    case 'attention_mask':
    case 'position_ids':
      return null;
    case 'logits': {
      // the real-vocabulary gpt2 fixture stores the first columns of its logits only (fixture size)
      const V = refShape[2];
      return V < (logits.shape[2] as number) ? { t: logits.slice([0, 0, 0], [-1, -1, V]), own: true } : { t: logits, own: false };
    }
    case 'logits_pre_softcap':
      return { t: c('unembed.hook_out'), own: false };
    case 'hidden_states':
      return { t: l < L ? c(`blocks.${l}.hook_resid_pre`) : c('unembed.hook_in'), own: false };
    case 'final_norm_in':
      return { t: c(`blocks.${L - 1}.hook_resid_post`), own: false };
    case 'embed':
      return { t: c('hook_embed'), own: false };
    case 'pos_embed':
      return { t: c('hook_pos_embed'), own: false };
    case 'attentions':
      return { t: attn('hook_pattern'), own: false, queryAxis: 2 };
    case 'hook_attn_scores':
      return { t: attn('hook_attn_scores'), own: false, queryAxis: 2, scores: true };
    case 'hook_q':
    case 'hook_rot_q':
    case 'hook_z':
      return { t: attn(kind), own: false };
    case 'hook_k':
    case 'hook_v':
    case 'hook_rot_k':
      return perQueryHead(attn(kind), refShape[2]);
    case 'hook_q_normed':
      return { t: attn('q_norm.hook_normalized'), own: false };
    case 'hook_k_normed':
      return perQueryHead(attn('k_norm.hook_normalized'), refShape[2]);
    case 'attn_out':
      return { t: c(`blocks.${l}.hook_attn_out`), own: false };
    case 'mlp_out':
      return { t: c(`blocks.${l}.hook_mlp_out`), own: false };
    case 'attn_module_out':
      return { t: moduleOut(attn('hook_z'), model, `blocks.${l}.attn.W_O`, `blocks.${l}.attn.b_O`), own: true };
    case 'mlp_module_out':
      return { t: moduleOut(c(`blocks.${l}.mlp.hook_post`), model, `blocks.${l}.mlp.W_out`, `blocks.${l}.mlp.b_out`), own: true };
    case 'rotary_cos':
    case 'rotary_sin':
      return { t: rot.table(kind === 'rotary_cos' ? 0 : 1, a), own: true };
    case 'alibi':
      return { t: tf.squeeze(rot.alibi!, [2]), own: true, queryAxis: 2 };
    case 'router_logits':
      return { t: c(`blocks.${l}.mlp.hook_router_logits`), own: false };
    case 'router_probs':
      return { t: c(`blocks.${l}.mlp.hook_expert_weights`), own: false };
    case 'expert_indices':
      return { t: c(`blocks.${l}.mlp.hook_expert_indices`), own: false, exact: true };
    case 'expert_weights':
      return { t: c(`blocks.${l}.mlp.hook_topk_weights`), own: false };
    case 'expert_out': {
      const outs = c(`blocks.${l}.mlp.experts.hook_out`);
      const [B, T, , d] = outs.shape;
      return { t: tf.tidy(() => tf.reshape(tf.slice(outs, [0, 0, Number(b), 0], [B, T, 1, d]), [B, T, d])), own: true };
    }
    case 'shared_expert_out':
      return { t: c(`blocks.${l}.mlp.shared_expert.hook_out`), own: false };
    case 'shared_expert_gate':
      return { t: c(`blocks.${l}.mlp.hook_shared_gate`), own: false };
  }
  throw new Error(`reference tensor ${name}: no comparison defined`);
}

/** z W_O + b_O (attention) or post W_out + b_out (MLP): a module's output before its post-norm. */
function moduleOut(x: tf.Tensor, model: HookedTransformer, W: string, b: string): tf.Tensor {
  return tf.tidy(() => {
    const w = model.params[W];
    const [dOut] = w.shape.slice(-1);
    const dIn = w.size / dOut;
    const [B, T] = x.shape as number[];
    const y = tf.matMul(tf.reshape(x, [B * T, dIn]), tf.reshape(w, [dIn, dOut]) as tf.Tensor2D);
    return tf.reshape(model.params[b] ? tf.add(y, model.params[b]) : y, [B, T, dOut]);
  });
}

/** The rotary tables and ALiBi bias the forward makes for these inputs (prepareInputs), as HF stores them. */
interface RotaryRef {
  table(which: 0 | 1, layerType: string | undefined): tf.Tensor;
  alibi: tf.Tensor | null;
  dispose(): void;
}

function rotaryRef(model: HookedTransformer, tokens: tf.Tensor2D, maskRows: number[][]): RotaryRef {
  const inp = prepareInputs(model, tokens, maskRows, {});
  const types = (model.cfg.hf.layer_types ?? []) as string[];
  return {
    table(which, layerType) {
      const l = layerType ? types.indexOf(layerType) : 0;
      const t = inp.rotary[inp.layerRotary[l]].q[which];
      const [B, T, , R] = t.shape;
      const flat = tf.reshape(t, [B, T, R]);
      if (model.cfg.rotary_style !== 'interleaved') return flat;
      // GPT-J stores its sin/cos rows before repeat_interleave: every other column of ours
      const half = tf.gather(flat, Array.from({ length: R / 2 }, (_, i) => 2 * i), 2);
      flat.dispose();
      return half;
    },
    alibi: inp.alibi,
    dispose: () => tf.dispose(inputTensors(inp)),
  };
}

describe('parity with HF transformers (reference fixtures)', function () {
  this.timeout(60000);
  for (const fam of REF_FAMILIES) {
    it(`${fam}: every stored hook tensor at real positions within ${TOL} (relative)`, async () => {
      const before = tf.memory().numTensors;
      const model = await loadModel(path.join(REF_DIR, fam));
      const ref = await loadReference(fam);
      const mask = ref.attention_mask as tf.Tensor2D;
      fusedKernelCounts(true);
      const { logits, cache } = await model.runWithCache(ref.input_ids, { attentionMask: mask });
      if (fusedKernels()) {
        // WebGPU: the numbers below came through the fused kernels (norms with their scale, projections, attention with the matrices the cache asks for)
        const ran = fusedKernelCounts(true);
        for (const k of ['TflensNorm', 'TflensMatmul', 'TflensAttention']) assert.ok((ran[k] ?? 0) > 0, `${fam}: ${k} did not run (${JSON.stringify(ran)})`);
        if (model.cfg.positional === 'rotary') assert.ok((ran.TflensRotary ?? 0) > 0, `${fam}: TflensRotary did not run`);
      }
      const maskRows = (await mask.array()) as number[][];
      const rot = rotaryRef(model, ref.input_ids as tf.Tensor2D, maskRows);
      const errs: Record<string, number> = {};
      try {
        for (const name of Object.keys(ref).sort()) {
          const ours = oursFor(name, ref[name].shape, model, cache, logits, rot);
          if (!ours) continue;
          try {
            if (ours.exact) {
              const e = await maskedRelErr(ours.t, ref[name], mask);
              assert.equal(e.abs, 0, `${fam} ${name}: chosen experts differ`);
              continue;
            }
            const e = ours.scores ? await visibleRelErr(ours.t, ref[name], mask) : await maskedRelErr(ours.t, ref[name], mask, ours.queryAxis ?? 1);
            errs[name] = e.rel;
            assert.ok(e.rel <= TOL, `${fam} ${name}: max abs err ${e.abs} vs max |ref| ${e.ref} (rel ${e.rel})`);
          } finally {
            if (ours.own) ours.t.dispose();
          }
        }
        // positions derived from the mask (as the forward does, on the host) equal HF's position_ids at real tokens
        const posRef = (await ref.position_ids.array()) as number[][];
        maskRows.forEach((r, b) => {
          let run = 0;
          r.forEach((x, t) => {
            run += x;
            if (x) assert.equal(run - 1, posRef[b][t], `${fam} position of row ${b}, token ${t}`);
          });
        });
      } finally {
        rot.dispose();
        tf.dispose([logits, ...Object.values(ref)]);
        cache.dispose();
        model.dispose();
      }
      parityReport[fam] = errs;
      assert.equal(tf.memory().numTensors, before, 'tensors left behind');
    });
  }
  after(() => {
    const worst = Object.entries(parityReport).map(([f, e]) => `${f}: ${Math.max(...Object.values(e)).toExponential(2)} (${Object.keys(e).length} tensors)`);
    console.log(`      parity, worst relative error per family on ${tf.getBackend()}: ${worst.join(', ')}`);
  });
});
