/**
 * The shipped model zoo: five small models that tflens builds or trains itself and ships under
 * fixtures/models/<name> as genuine Hugging Face checkpoints (config.json, model.safetensors,
 * tokenizer.json, tokenizer_config.json), with a task.json of task metadata (including the training
 * step counts) and a MODEL_CARD.md. One file per model holds its task, recipe and evaluation:
 *
 * - bb (bb.ts): Bigram-Backcopy, GPT-2 architecture, one head per layer.
 * - recall (recall.ts): needle retrieval with distractor pairs, LLaMA architecture with 64 heads (GQA).
 * - ioi (ioi.ts): indirect object identification over the exact IOI templates and names.
 * - induction-handmade (induction-handmade.ts): hand-set previous-token and induction heads.
 * - var-group (var-group.ts): the token-group task of the VAR study, LLaMA architecture.
 *
 * Everything is seeded, so notebooks and tests can rebuild exactly the data a number in a model
 * card was measured on.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ValueError, expectedFound } from '../errors.js';
import { saveModel, type HookedTransformer } from '../model/index.js';
import { tokenGroupBatch } from '../data/token-group.js';
import { bbConfig, bbEvalBatch, bbTask, bbTaskJson } from './bb.js';
import { recallConfig, recallExample, recallTaskJson } from './recall.js';
import { ioiConfig, ioiSplitDataset, ioiTaskJson, ioiTokenizer, ioiTokenizerAdapter } from './ioi.js';
import { inductionConfig, inductionEvalBatch, inductionTaskJson } from './induction-handmade.js';
import { tokenGroupConfig, varGroupTaskJson } from './var-group.js';

export type ZooName = 'bb' | 'recall' | 'ioi' | 'induction-handmade' | 'var-group';
export const ZOO_NAMES: readonly ZooName[] = ['bb', 'recall', 'ioi', 'induction-handmade', 'var-group'];

export interface ZooEntry {
  name: ZooName;
  /** Folder relative to the repository root. */
  dir: string;
  architecture: 'gpt2' | 'llama';
  description: string;
  /** The script that makes the folder. */
  script: string;
  /** The HF config.json the recipe builds the model from. */
  config: () => Record<string, unknown>;
  /** Task metadata (written to task.json with the step counts). */
  task: () => Record<string, unknown>;
}

export const ZOO: Record<ZooName, ZooEntry> = {
  bb: {
    name: 'bb',
    dir: 'fixtures/models/bb',
    architecture: 'gpt2',
    description: 'Bigram-Backcopy (Guo et al.): 3-layer GPT-2, one head per layer, ReLU MLP with zero biases',
    script: 'scripts/train-zoo.ts bb',
    config: () => bbConfig(bbTask()),
    task: bbTaskJson,
  },
  recall: {
    name: 'recall',
    dir: 'fixtures/models/recall',
    architecture: 'llama',
    description: 'Needle retrieval with distractor key/value pairs: 4-layer LLaMA with 16 query heads per layer (64 heads; GQA with 4 key/value heads, d_head 8; rotary, RMSNorm, gated SiLU MLP), F16 weights',
    script: 'scripts/train-zoo.ts recall',
    config: recallConfig,
    task: recallTaskJson,
  },
  ioi: {
    name: 'ioi',
    dir: 'fixtures/models/ioi',
    architecture: 'gpt2',
    description: 'Synthetic IOI over the exact templates and names: 3-layer, 4-head GPT-2 with a word-level tokenizer',
    script: 'scripts/train-zoo.ts ioi',
    config: ioiConfig,
    task: ioiTaskJson,
  },
  'induction-handmade': {
    name: 'induction-handmade',
    dir: 'fixtures/models/induction-handmade',
    architecture: 'gpt2',
    description: 'Hand-built 2-layer attention-only GPT-2: previous-token head 0.0, induction head 1.0 (K-composition)',
    script: 'scripts/train-zoo.ts induction-handmade',
    config: inductionConfig,
    task: inductionTaskJson,
  },
  'var-group': {
    name: 'var-group',
    dir: 'fixtures/models/var-group',
    architecture: 'llama',
    description: 'Token-group task of the VAR study: 4-layer, 4-head LLaMA (rotary, RMSNorm, gated SiLU MLP)',
    script: 'scripts/train-var-group.ts',
    config: tokenGroupConfig,
    task: varGroupTaskJson,
  },
};

/** The training steps written to task.json: `steps` = updates of the run, `step` = those behind these weights. */
export interface ZooSteps {
  steps: number;
  /** Default `steps` (the final model); a checkpoint's own step otherwise. */
  step?: number;
}

/**
 * Save a zoo model as an HF folder plus task.json (the task metadata, the step counts and `extra`).
 * `dtype: 'F16'` stores the float weights of model.safetensors as IEEE half (half the bytes; the
 * loader reads them back as float32, rounded to half precision; the config says float16).
 */
export async function saveZooModel(name: ZooName, model: HookedTransformer, dir: string, run: ZooSteps, extra: Record<string, unknown> = {}, opts: { dtype?: 'F32' | 'F16' } = {}): Promise<void> {
  const step = run.step ?? run.steps;
  if (!Number.isInteger(run.steps) || run.steps < 0 || !Number.isInteger(step) || step < 0 || step > run.steps) {
    throw new ValueError('saveZooModel run', expectedFound('integers 0 <= step <= steps', JSON.stringify(run)));
  }
  const dtype = opts.dtype ?? 'F32';
  if (dtype !== 'F32' && dtype !== 'F16') throw new ValueError('saveZooModel dtype', expectedFound('"F32" or "F16"', dtype));
  await saveModel(model, dir, {}, { dtype });
  const task = { ...ZOO[name].task(), ...extra, step, steps: run.steps };
  await fsp.writeFile(path.join(dir, 'task.json'), JSON.stringify(task, null, 2) + '\n');
}

/** Fixed small token rows per zoo model, for the HF logits check (scripts/zoo-logits.ts). */
export function zooProbeTokens(name: ZooName): number[][] {
  switch (name) {
    case 'bb':
      return bbEvalBatch(5, 2).tokens.map((r) => r.slice(0, 33));
    case 'recall':
      return [recallExample(48, 0.5, 5).tokens, recallExample(48, 0.2, 6).tokens];
    case 'ioi': {
      const ds = ioiSplitDataset(ioiTokenizerAdapter(ioiTokenizer()), 'heldout', 2, 5);
      const T = Math.min(...ds.tokens.map((t) => t.length));
      return ds.tokens.map((t) => t.slice(0, T));
    }
    case 'induction-handmade':
      return inductionEvalBatch(5, 2, 12).tokens;
    case 'var-group':
      return tokenGroupBatch(2, 5).tokens;
  }
}

/**
 * Replace the section of a MODEL_CARD.md that starts at the line `heading` (up to the next "## "
 * heading) with `section` (which starts with its own heading). A card without that section gets it
 * before the `before` heading (e.g. "## Reproduce"), or at the end.
 */
export async function replaceCardSection(file: string, heading: string, section: string, before?: string): Promise<void> {
  const card = await fsp.readFile(file, 'utf8');
  const body = section.replace(/\n+$/, '') + '\n';
  const start = card.indexOf(heading);
  if (start < 0) {
    const at = before === undefined ? -1 : card.indexOf(`\n${before}`);
    await fsp.writeFile(file, at < 0 ? `${card.replace(/\n*$/, '')}\n\n${body}` : `${card.slice(0, at)}\n${body}${card.slice(at)}`);
    return;
  }
  const end = card.indexOf('\n## ', start + 1);
  await fsp.writeFile(file, card.slice(0, start) + body + (end < 0 ? '' : card.slice(end)));
}
