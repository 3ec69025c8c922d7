/**
 * `tflens info <model>`: what a model is (family, sizes), every hook point it has (the per-layer
 * pattern written once), which weight-processing steps keep it exact, and the backend in use.
 */
import { backendLine } from '../backend/index.js';
import type { HookedTransformer } from '../model/hooked.js';
import { describeModel } from '../model/load.js';
import { familyFor } from '../model/families/index.js';
import { PROCESSING_STEPS, processingSupport } from '../model/processing.js';

const WIDTH = 100;

/** The info text of a loaded model (ends with a newline). */
export function modelInfo(model: HookedTransformer): string {
  return [...summary(model), ...hookPoints(model), ...processing(model), `backend          ${backendLine()}`].join('\n') + '\n';
}

function summary(model: HookedTransformer): string[] {
  const c = model.cfg;
  const family = familyFor(c.architecture, 'config.json');
  const d = describeModel(model);
  const kv = c.n_kv_heads === c.n_heads ? '' : ` (${c.n_kv_heads} key/value heads)`;
  return [
    `model            ${model.name}`,
    `family           ${family.modelTypes[0]} (config model_type "${c.architecture}", HF class ${c.hfArchitecture})`,
    `shape            ${c.n_layers} layers, ${c.n_heads} heads${kv} of d_head ${c.d_head}, d_model ${c.d_model}, d_mlp ${c.d_mlp}, vocabulary ${c.d_vocab}, context ${c.n_ctx}`,
    `parts            ${c.normalization === 'LN' ? 'LayerNorm' : 'RMSNorm'} (${c.block_norms}), ${c.positional} positions, ${c.act_fn}` +
      `${c.parallel_attn_mlp ? ', parallel attention and MLP' : ''}; ${Number(d.parameters).toLocaleString('en-US')} parameters; tokenizer: ${d.tokenizer}`,
  ];
}

/**
 * The hook points, compactly: global points as they are, block points once as `blocks.L.<suffix>`
 * (with the layers named when only some layers have the point), in the order a forward passes them.
 * `*` marks points computed only when a hook or the cache asks for them.
 */
export function compactHookNames(names: readonly string[], nLayers: number, onRequest: (name: string) => boolean): string[] {
  const items: string[] = [];
  const suffixLayers = new Map<string, number[]>();
  for (const n of names) {
    const m = /^blocks\.(\d+)\.(.+)$/.exec(n);
    if (!m) {
      items.push(n + (onRequest(n) ? '*' : ''));
      continue;
    }
    const [, layer, suffix] = m;
    if (!suffixLayers.has(suffix)) {
      suffixLayers.set(suffix, []);
      items.push(`blocks.L.${suffix}${onRequest(n) ? '*' : ''}`);
    }
    suffixLayers.get(suffix)!.push(Number(layer));
  }
  return items.map((item) => {
    const m = /^blocks\.L\.([^*]+)/.exec(item);
    const layers = m ? suffixLayers.get(m[1])! : null;
    return layers && layers.length !== nLayers ? `${item} (L = ${layers.join(',')})` : item;
  });
}

function hookPoints(model: HookedTransformer): string[] {
  const names = model.hookNames();
  const byDefault = model.cacheFilter(undefined);
  const L = model.cfg.n_layers;
  const items = compactHookNames(names, L, (n) => !byDefault(n));
  const head = `hook points      ${names.length} (blocks.L for L = 0..${L - 1}; * = computed only on request, as TransformerLens's use_* flags):`;
  return [head, ...wrap(items, '  ')];
}

function processing(model: HookedTransformer): string[] {
  const support = processingSupport(model.cfg);
  const w = Math.max(...PROCESSING_STEPS.map((s) => s.length));
  return [
    'weight processing (off by default; tfl.model.processWeights(model, {...}) applies the chosen steps):',
    ...PROCESSING_STEPS.map((s) => `  ${s.padEnd(w)}  ${support[s] === null ? 'applies (exact)' : `does not apply: ${support[s]}`}`),
  ];
}

/** Items joined by two spaces into lines of at most WIDTH characters. */
function wrap(items: string[], indent: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const it of items) {
    if (line && indent.length + line.length + 2 + it.length > WIDTH) {
      lines.push(indent + line);
      line = '';
    }
    line = line ? `${line}  ${it}` : it;
  }
  if (line) lines.push(indent + line);
  return lines;
}
