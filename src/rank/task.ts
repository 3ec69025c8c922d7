/** The patching problem the circuit methods rank heads on (IOI or induction), from typed options. */
import { ValueError, expectedFound } from '../errors.js';
import type { ModelView } from '../model/view.js';
import type { IOICorruptionRule } from '../data/ioi.js';
import { inductionProblem, ioiTask, type PatchingProblem } from '../circuits/problem.js';

export interface TaskOptions {
  /** 'ioi' (default) or 'induction'. */
  task?: 'ioi' | 'induction';
  /** Prompts (default 16). */
  n?: number;
  /** Seed of the prompts (default 0). */
  seed?: number;
  /** IOI corruption rule (default 'redwood', the authors'). */
  corruption?: IOICorruptionRule;
  /** Induction: length of the repeated block (default 8). */
  R?: number;
}

/** The patching problem of `opts` (built from the tokenizer and config only, so a weightless model will do). */
export function taskProblem(model: ModelView, opts: TaskOptions): PatchingProblem {
  const task = opts.task ?? 'ioi';
  const n = opts.n ?? 16;
  const seed = opts.seed ?? 0;
  if (task === 'ioi') {
    const corruption = opts.corruption ?? 'redwood';
    if (corruption !== 'redwood' && corruption !== 'distinct') throw new ValueError('corruption', expectedFound('redwood or distinct', corruption));
    return ioiTask(model, { n, seed, corruption }).problem;
  }
  if (task === 'induction') return inductionProblem(model, { n, R: opts.R ?? 8, seed });
  throw new ValueError('task', expectedFound('ioi or induction', task));
}
