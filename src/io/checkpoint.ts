/**
 * Resumable sweeps. A SweepStore is a JSON-lines file: a first line naming the sweep's key, then one
 * line per finished item {"id": ..., "value": ...}. Each put appends one line with a single write
 * and fsyncs it, so an interrupted sweep keeps every finished item; a torn last line (a crash in the
 * middle of a write) is dropped when the store is reopened.
 *
 * The key identifies the sweep's inputs (model, data, method, parameters). Opening a store whose file
 * was written under another key throws a ConfigError by default (so finished results are never
 * silently mixed with or lost to a different sweep); pass `onMismatch: 'restart'` to discard the old
 * results with a warning and start over.
 *
 * One process should write a store at a time.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, FormatError, ValueError, expectedFound } from '../errors.js';
import { writeFileAtomic } from './atomic.js';

/** What a sweep stores per item: numbers (NaN, +-Infinity and -0 kept exactly), arrays, plain objects, strings. */
export type SweepValue = number | string | boolean | null | SweepValue[] | { [k: string]: SweepValue };

const FORMAT = 'tflens-sweep';
const VERSION = 1;

/** JSON with every number kept: NaN / Infinity / -Infinity / -0 become {"$num": "NaN"} etc. (also the shard results of queue sweeps). */
export function encodeSweepValue(v: unknown): string {
  return JSON.stringify(v, (_k, x) =>
    typeof x === 'number' && (!Number.isFinite(x) || Object.is(x, -0)) ? { $num: Object.is(x, -0) ? '-0' : String(x) } : x,
  );
}

/** The inverse of encodeSweepValue. */
export function decodeSweepValue(text: string): unknown {
  return JSON.parse(text, (_k, x) => {
    if (x && typeof x === 'object' && !Array.isArray(x) && Object.keys(x).length === 1 && typeof x.$num === 'string') {
      if (x.$num === 'NaN') return NaN;
      if (x.$num === 'Infinity') return Infinity;
      if (x.$num === '-Infinity') return -Infinity;
      if (x.$num === '-0') return -0;
    }
    return x;
  });
}

function checkValue(v: unknown, where: string): void {
  if (v === null || typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return;
  if (Array.isArray(v)) {
    v.forEach((x, i) => checkValue(x, `${where}[${i}]`));
    return;
  }
  if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    for (const [k, x] of Object.entries(v as object)) checkValue(x, `${where}.${k}`);
    return;
  }
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return; // typed arrays are stored as plain arrays
  throw new ValueError(where, expectedFound('a number, string, boolean, null, array or plain object', typeof v));
}

export interface SweepStoreOptions {
  /** Identifies the sweep's inputs; a store written under another key is not reused. */
  key: string;
  /** What to do when the file holds another key: 'throw' (default, ConfigError) or 'restart' (warn, discard). */
  onMismatch?: 'throw' | 'restart';
  /** Where a 'restart' warning goes (default console.warn). */
  warn?: (message: string) => void;
}

export class SweepStore {
  readonly path: string;
  readonly key: string;
  private readonly values = new Map<string, SweepValue>();

  private constructor(file: string, key: string) {
    this.path = file;
    this.key = key;
  }

  /** Open (or create) the store at `file`, loading finished items. */
  static async open(file: string, opts: SweepStoreOptions): Promise<SweepStore> {
    if (!opts || typeof opts.key !== 'string' || opts.key.length === 0) {
      throw new ValueError('SweepStore.open: key', expectedFound('a non-empty string identifying the sweep inputs', opts?.key));
    }
    const onMismatch = opts.onMismatch ?? 'throw';
    const store = new SweepStore(path.resolve(file), opts.key);
    let text: string | null = null;
    try {
      text = await fsp.readFile(store.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text === null || text.length === 0) {
      await store.rewrite();
      return store;
    }
    const lines = text.split('\n');
    const complete = text.endsWith('\n');
    // The last element is '' when the text ends with a newline, else a torn line.
    const torn = complete ? null : lines[lines.length - 1];
    const body = lines.slice(0, lines.length - 1);
    let head: any;
    try {
      head = body.length ? JSON.parse(body[0]) : null;
    } catch {
      head = null;
    }
    if (!head || head.format !== FORMAT || typeof head.key !== 'string') {
      if (body.length === 0 && torn !== null) {
        // Crash while writing the very first line: nothing was stored yet.
        await store.rewrite();
        return store;
      }
      throw new FormatError(store.path, `not a tflens sweep store (first line ${JSON.stringify((body[0] ?? torn ?? '').slice(0, 80))}); delete it or choose another path`);
    }
    if (head.version !== VERSION) throw new FormatError(store.path, expectedFound(`sweep store version ${VERSION}`, head.version));
    if (head.key !== opts.key) {
      if (onMismatch === 'restart') {
        (opts.warn ?? console.warn)(`${store.path}: sweep key changed (was ${JSON.stringify(head.key)}, now ${JSON.stringify(opts.key)}); discarding ${body.length - 1} stored results and starting over`);
        await store.rewrite();
        return store;
      }
      throw new ConfigError(store.path, `${expectedFound(`sweep key ${JSON.stringify(opts.key)}`, JSON.stringify(head.key))}; the inputs changed. Use another path, delete the file, or pass onMismatch: 'restart'`);
    }
    for (let i = 1; i < body.length; i++) {
      if (body[i].length === 0) continue;
      let rec: any;
      try {
        rec = decodeSweepValue(body[i]);
      } catch {
        throw new FormatError(`${store.path}:${i + 1}`, `line is not valid JSON: ${JSON.stringify(body[i].slice(0, 80))}`);
      }
      if (!rec || typeof rec !== 'object' || typeof rec.id !== 'string' || !('value' in rec)) {
        throw new FormatError(`${store.path}:${i + 1}`, expectedFound('{"id": string, "value": ...}', body[i].slice(0, 80)));
      }
      store.values.set(rec.id, rec.value as SweepValue);
    }
    if (torn !== null && torn.length > 0) {
      // Drop the torn tail so the next append starts on a fresh line.
      await store.rewrite();
    }
    return store;
  }

  private async rewrite(): Promise<void> {
    const lines = [JSON.stringify({ format: FORMAT, version: VERSION, key: this.key })];
    for (const [id, value] of this.values) lines.push(encodeSweepValue({ id, value }));
    await writeFileAtomic(this.path, lines.join('\n') + '\n');
  }

  /** Whether item `id` is finished. */
  has(id: string): boolean {
    return this.values.has(id);
  }

  /** The stored value of `id`, or undefined. */
  get<T extends SweepValue = SweepValue>(id: string): T | undefined {
    return this.values.get(id) as T | undefined;
  }

  /** Finished ids, in the order they were stored. */
  ids(): string[] {
    return [...this.values.keys()];
  }

  get size(): number {
    return this.values.size;
  }

  /** Store the value of `id` durably: one appended line, fsynced before this resolves. */
  async put(id: string, value: SweepValue | Float32Array | Int32Array | Float64Array): Promise<void> {
    if (typeof id !== 'string' || id.length === 0) throw new ValueError('SweepStore.put: id', expectedFound('a non-empty string', id));
    checkValue(value, `SweepStore.put(${JSON.stringify(id)})`);
    const v: SweepValue = ArrayBuffer.isView(value) ? Array.from(value as Float32Array) : (value as SweepValue);
    const line = encodeSweepValue({ id, value: v }) + '\n';
    const fh = await fsp.open(this.path, 'a');
    try {
      await fh.write(line);
      await fh.sync();
    } finally {
      await fh.close();
    }
    this.values.set(id, decodeSweepValue(encodeSweepValue(v)) as SweepValue);
  }

  /** Remove every stored result (the file is rewritten with just its header). */
  async clear(): Promise<void> {
    this.values.clear();
    await this.rewrite();
  }
}

export interface SweepProgress {
  /** Items finished so far (including those found already stored). */
  done: number;
  total: number;
  /** The item just finished. */
  id: string;
  /** True when the item came from the store, not from compute. */
  cached: boolean;
}

/**
 * Run `compute` for every id not yet in `store`, storing each result as soon as it is ready, and
 * return all results in `ids` order. If compute throws, the results stored so far stay stored and
 * the error propagates; calling again with a store reopened on the same file resumes where it
 * stopped and recomputes nothing already finished.
 */
export async function runResumable<T extends SweepValue>(
  store: SweepStore,
  ids: readonly string[],
  compute: (id: string) => Promise<T> | T,
  opts: { onProgress?: (p: SweepProgress) => void } = {},
): Promise<T[]> {
  const seen = new Set<string>();
  for (const id of ids) {
    if (typeof id !== 'string' || id.length === 0) throw new ValueError('runResumable: ids', expectedFound('non-empty strings', id));
    if (seen.has(id)) throw new ValueError('runResumable: ids', `id ${JSON.stringify(id)} appears twice`);
    seen.add(id);
  }
  const out: T[] = [];
  let done = 0;
  for (const id of ids) {
    if (store.has(id)) {
      out.push(store.get(id) as T);
      done++;
      opts.onProgress?.({ done, total: ids.length, id, cached: true });
      continue;
    }
    const value = await compute(id);
    await store.put(id, value);
    out.push(store.get(id) as T);
    done++;
    opts.onProgress?.({ done, total: ids.length, id, cached: false });
  }
  return out;
}
