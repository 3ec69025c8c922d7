/**
 * Hook registration and scoping. A hook is `(act, ctx) => tf.Tensor | void`; a returned tensor
 * replaces the activation (same shape required). Hooks added for a run are removed when it ends,
 * also when it throws.
 */
import type * as tf from '@tensorflow/tfjs';
import { HookError } from '../errors.js';
import type { HookName } from './names.js';

export interface HookContext {
  /** Full hook name, e.g. "blocks.3.attn.hook_pattern". */
  name: string;
  /** Layer index, or null for global hook points. */
  layer: number | null;
  /** True while decoding with a KV cache (queries are the new tokens only). */
  decoding: boolean;
  /** Number of cached (past) positions before the current queries. */
  pastLength: number;
}

export type HookFn = (act: tf.Tensor, ctx: HookContext) => tf.Tensor | void;
export type HookFilter = HookName | ((name: string) => boolean);
export type HookSpec = [HookFilter, HookFn];

export interface HookHandle {
  remove(): void;
}

export class HookRegistry {
  private entries: { filter: HookFilter; fn: HookFn; id: number }[] = [];
  private nextId = 0;
  /** Names of hook points the model has (for validation of string filters). */
  constructor(private readonly isValidName: (name: string) => boolean, private readonly suggest: (name: string) => string[]) {}

  add(filter: HookFilter, fn: HookFn): HookHandle {
    if (typeof fn !== 'function') throw new HookError(String(filter), 'hook must be a function (act, ctx) => tensor | void');
    if (typeof filter === 'string' && !this.isValidName(filter)) {
      const s = this.suggest(filter);
      throw new HookError(filter, `unknown hook point${s.length ? `; did you mean ${s.map((x) => `"${x}"`).join(', ')}?` : ''}`);
    }
    if (typeof filter !== 'string' && typeof filter !== 'function') {
      throw new HookError(String(filter), 'hook filter must be a hook name or a predicate on names');
    }
    const id = this.nextId++;
    this.entries.push({ filter, fn, id });
    return { remove: () => (this.entries = this.entries.filter((e) => e.id !== id)) };
  }

  addAll(specs: HookSpec[] | undefined): HookHandle {
    const handles: HookHandle[] = [];
    try {
      for (const [f, fn] of specs ?? []) handles.push(this.add(f, fn));
    } catch (e) {
      handles.forEach((h) => h.remove());
      throw e;
    }
    return { remove: () => handles.forEach((h) => h.remove()) };
  }

  /** Hooks that apply to `name`, in registration order. */
  hooksFor(name: string): HookFn[] {
    const out: HookFn[] = [];
    for (const e of this.entries) if (typeof e.filter === 'string' ? e.filter === name : e.filter(name)) out.push(e.fn);
    return out;
  }

  /** The registered hooks now (to restore after a run whose hooks changed the registry). */
  snapshot(): unknown {
    return [...this.entries];
  }

  restore(snap: unknown): void {
    this.entries = [...(snap as typeof this.entries)];
  }

  get size(): number {
    return this.entries.length;
  }

  clear(): void {
    this.entries = [];
  }
}
