/**
 * The tflens command line: info, run, rank, sweep (submit, status, collect) and worker. Errors print one line (no stack trace) and exit non-zero;
 * TFLENS_DEBUG=1 prints the stack.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../backend/index.js';
import { HookError, TflensError, ValueError, expectedFound } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors } from '../io/safetensors.js';
import { loadModel } from '../model/load.js';
import { suggestNames, type HookedTransformer } from '../model/hooked.js';
import type { HookName } from '../hooks/names.js';
import { modelInfo } from './info.js';
import { readTokensFile } from './inputs.js';
import { RANK_METHODS, rankByArg, rankFormat, rankMethod, renderRank, type RankMethodName } from '../rank/index.js';
import { batchFromArgs, rankOptionsFromArgs, type Args } from './rank-args.js';
import { SWEEP_USAGE, sweepCommand } from './sweep.js';

const USAGE = `tflens: mechanistic interpretability on TensorFlow.js

usage:
  tflens info <model>
  tflens run <model> --tokens <file.json> --save <names> --out <file.safetensors>
  tflens rank <model> --method <method> [--prompts <file.txt> | --tokens <file.json>] [--format csv|json|retrieval-head] [--rank-by signed|absolute] [--out <file>]
${SWEEP_USAGE}
<model> is a folder (config.json + model.safetensors), a hub id in the HF cache, or a hub id to download
  (HF_HUB_CACHE / HF_HOME locate the cache; HF_HUB_OFFLINE=1 never contacts the hub).
info prints the family, every hook point, the weight processing that applies and the backend.
--tokens is JSON {"input_ids": [[...], ...], "attention_mask": [[...], ...]} (mask optional, rows of one
  length, left-padded with mask 0), a list of rows [[...], ...], or an int32/int64 .npy array.
--save takes comma-separated hook names (e.g. blocks.0.hook_resid_pre,blocks.1.attn.hook_pattern) and/or logits.
TFLENS_BACKEND forces a backend (webgpu, node, wasm, cpu). Errors print one line; TFLENS_DEBUG=1 adds the stack.

rank methods:
`;

export function parseArgs(argv: string[]): { positional: string[]; args: Args } {
  const positional: string[] = [];
  const args: Args = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) args[a.slice(2, eq)] = a.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) args[a.slice(2)] = argv[++i];
      else args[a.slice(2)] = true;
    } else positional.push(a);
  }
  return { positional, args };
}

function strArg(args: Args, name: string, required: boolean): string | undefined {
  const v = args[name];
  if (v === undefined || v === true) {
    if (required) throw new ValueError(`--${name}`, v === true ? 'needs a value' : 'is required');
    return undefined;
  }
  return v as string;
}

function usage(): string {
  return USAGE + Object.entries(RANK_METHODS).map(([n, m]) => `  ${n.padEnd(18)} ${m.help}`).join('\n') + '\n';
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const { positional, args } = parseArgs(argv);
  const cmd = positional[0];
  try {
    if (!cmd || cmd === 'help' || args.help) {
      out(usage());
      return cmd || args.help ? 0 : 2;
    }
    if (cmd === 'sweep' || cmd === 'worker') return await sweepCommand(cmd, positional.slice(1), args, out);
    const modelPath = positional[1];
    if (!modelPath) throw new ValueError('<model>', 'missing: give a model folder or hub id');
    await initBackend();
    const model = await loadModel(modelPath);
    try {
      switch (cmd) {
        case 'info':
          out(modelInfo(model));
          return 0;
        case 'run':
          return await run(model, args, out);
        case 'rank':
          return await rank(model, args, out);
        default:
          throw new ValueError('command', expectedFound('info, run, rank, sweep or worker', cmd));
      }
    } finally {
      model.dispose();
    }
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`tflens: ${e instanceof Error ? e.name : 'Error'}: ${msg.split('\n')[0]}\n`);
    if (process.env.TFLENS_DEBUG === '1' && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    return e instanceof TflensError ? 2 : 1;
  }
}

async function run(model: HookedTransformer, args: Args, out: (s: string) => void): Promise<number> {
  const tokensFile = strArg(args, 'tokens', true)!;
  const outFile = strArg(args, 'out', true)!;
  const names = strArg(args, 'save', true)!.split(',').map((s) => s.trim()).filter(Boolean);
  if (!names.length) throw new ValueError('--save', 'no names given');
  const batch = await readTokensFile(tokensFile, model);
  const hookNames = checkSaveNames(model, names);
  const { logits, cache } = await model.runWithCache(batch.ids, { attentionMask: batch.mask, namesFilter: hookNames });
  try {
    const tensors: Record<string, tf.Tensor> = {};
    for (const n of hookNames) tensors[n] = cache.get(n);
    if (names.includes('logits')) tensors.logits = logits;
    await writeSafetensors(outFile, tensors, { tflens_model: model.name });
  } finally {
    logits.dispose();
    cache.dispose();
  }
  out(`wrote ${names.length} tensor(s) to ${outFile}\n`);
  return 0;
}

/** The hook points of --save (without "logits"); an unknown name is a HookError with the nearest names. */
function checkSaveNames(model: HookedTransformer, names: string[]): HookName[] {
  const all = model.hookNames();
  const valid = new Set<string>(all);
  for (const n of names) {
    if (n === 'logits' || valid.has(n)) continue;
    const near = suggestNames(n, all);
    throw new HookError(`--save ${n}`, `not a hook point of ${model.name}${near.length ? `; did you mean ${near.join(', ')}?` : ''} (\`tflens info\` lists them)`);
  }
  return names.filter((n) => n !== 'logits') as HookName[];
}

async function rank(model: HookedTransformer, args: Args, out: (s: string) => void): Promise<number> {
  const methodName = strArg(args, 'method', true)!;
  const method = rankMethod(methodName, '--method');
  const format = rankFormat(strArg(args, 'format', false) ?? 'csv', '--format');
  const batch = await batchFromArgs(args, model, methodName, method.needsTokens);
  const result = await method.run(model, batch, await rankOptionsFromArgs(methodName as RankMethodName, args));
  const text = renderRank(result, format, model.name, rankByArg(strArg(args, 'rank-by', false), '--rank-by'));
  const outFile = strArg(args, 'out', false);
  if (outFile) {
    await writeFileAtomic(outFile, text);
    out(`wrote ${methodName} ranking to ${outFile}\n`);
  } else out(text);
  return 0;
}
