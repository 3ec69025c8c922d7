// Greedy decoding the slow way, as an independent reference for the NIAH decoders: one full forward
// (no KV cache) per step over the prompt and the tokens generated so far, reading every layer's
// attention row of the last query.
import * as tf from '@tensorflow/tfjs';
import type { HookSpec } from '../../src/hooks/registry.js';
import type { ModelView } from '../../src/model/index.js';

export interface BruteDecode {
  tokens: number[];
  /** rows[step][layer][head][key]: the attention row of the query that produced tokens[step]. */
  rows: number[][][][];
}

/** The lowest index of the maximum (the tie rule of tflens and of numpy.argmax). */
export const argmax = (xs: number[]): number => xs.indexOf(Math.max(...xs));

/**
 * Decode `prompt` greedily with full forwards; `fwdHooks(T)` gives the hooks of a forward over T
 * tokens (e.g. masks of the rows from the last prompt token on). Stops after a stop token.
 */
export async function bruteDecode(model: ModelView, prompt: number[], opts: { maxNewTokens: number; stopTokens?: number[]; fwdHooks?: (T: number) => HookSpec[] }): Promise<BruteDecode> {
  const names = Array.from({ length: model.cfg.n_layers }, (_, l) => `blocks.${l}.attn.hook_pattern`);
  const seq = prompt.slice();
  const out: BruteDecode = { tokens: [], rows: [] };
  for (let step = 0; step < opts.maxNewTokens; step++) {
    const { logits, cache } = await model.runWithCache([seq], { namesFilter: names, posSlice: -1, fwdHooks: opts.fwdHooks?.(seq.length) });
    const last = tf.tidy(() => tf.slice(logits, [0, seq.length - 1, 0], [1, 1, -1]));
    const [lastRow, ...patterns] = await Promise.all([last.array(), ...names.map((n) => cache.get(n).array())]);
    tf.dispose([logits, last]);
    cache.dispose();
    const tok = argmax((lastRow as number[][][])[0][0]);
    out.tokens.push(tok);
    out.rows.push((patterns as number[][][][][]).map((p) => p[0].map((head) => head[0])));
    if (opts.stopTokens?.includes(tok)) break;
    seq.push(tok);
  }
  return out;
}
