/**
 * Small JSON helpers for strict file parsing: JSON.parse silently keeps the last of two equal keys,
 * which hides broken headers and weight maps, so tflens checks for duplicate keys explicitly.
 */
import { promises as fsp } from 'node:fs';
import { FormatError, ResolveError } from '../errors.js';

export interface DuplicateKey {
  /** Keys leading to the object holding the duplicate ([] for the top-level object). */
  path: string[];
  key: string;
}

/**
 * The first key that appears twice in one object of `text`, or null. `text` must be valid JSON
 * (call this after JSON.parse succeeded); the scan then needs no error handling.
 */
export function findDuplicateKey(text: string): DuplicateKey | null {
  type Frame = { obj: boolean; keys: Set<string>; expectKey: boolean; name: string };
  const stack: Frame[] = [];
  let pendingName = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      i++;
      while (i < text.length) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i += 2;
        else if (d === 0x22) break;
        else i++;
      }
      const top = stack[stack.length - 1];
      if (top && top.obj && top.expectKey) {
        const key = JSON.parse(text.slice(start, i + 1)) as string;
        if (top.keys.has(key)) return { path: stack.slice(1).map((f) => f.name), key };
        top.keys.add(key);
        top.expectKey = false;
        pendingName = key;
      }
    } else if (c === 0x7b /* { */) {
      const top = stack[stack.length - 1];
      stack.push({ obj: true, keys: new Set(), expectKey: true, name: top && top.obj ? pendingName : '[]' });
    } else if (c === 0x5b /* [ */) {
      const top = stack[stack.length - 1];
      stack.push({ obj: false, keys: new Set(), expectKey: false, name: top && top.obj ? pendingName : '[]' });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top && top.obj) top.expectKey = true;
    }
  }
  return null;
}

/** Parse JSON text strictly: a FormatError naming `where` on bad JSON or a repeated key. */
export function parseJsonStrict(text: string, where: string, what = 'JSON'): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new FormatError(where, `${what} is not valid JSON (${(e as Error).message})`);
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const at = dup.path.length ? ` in "${dup.path.join('.')}"` : '';
    throw new FormatError(where, `${what} lists key "${dup.key}" twice${at}`);
  }
  return value;
}

/**
 * Read a JSON file and parse it strictly (see parseJsonStrict): a ResolveError naming the file when
 * it cannot be read, a FormatError naming it on bad JSON or a key written twice. `what` names the
 * content in messages ("config", "token file", ...).
 */
export async function readJsonFile(file: string, what = 'JSON'): Promise<unknown> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ResolveError(file, code === 'ENOENT' ? 'file not found' : `cannot read: ${(e as Error).message}`);
  }
  return parseJsonStrict(text, file, what);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function describeJson(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`;
  return `${typeof v} ${String(v)}`;
}
