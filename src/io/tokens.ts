/**
 * Token-id files: JSON, either the tokenizer-output layout {"input_ids": [[...]], "attention_mask":
 * [[...]]} (mask optional, 0/1, same shape), {"tokens": [[...]]}, or a bare list of rows; or .npy
 * (int32/int64, 2-D or 1-D). Rows must all have the same length (left-pad and give a mask); every
 * id must be an integer in [0, dVocab).
 */
import { promises as fsp } from 'node:fs';
import { FormatError, ResolveError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { parseNpy } from './export.js';
import { describeJson, isPlainObject, parseJsonStrict } from './json.js';

export interface TokenCheckOptions {
  /** Vocabulary size: ids must be < dVocab. */
  dVocab?: number;
  /** Allow rows of different lengths (default false). */
  allowRagged?: boolean;
}

/**
 * Check a JSON value as token ids [batch][pos]; returns it as number[][] (a single flat row of
 * numbers is not accepted: wrap it in a list). Errors name `where`, the row and the position.
 */
export function parseTokenIds(value: unknown, where: string, opts: TokenCheckOptions = {}): number[][] {
  const { dVocab, allowRagged = false } = opts;
  if (dVocab !== undefined && !(Number.isSafeInteger(dVocab) && dVocab > 0)) {
    throw new ValueError('dVocab', expectedFound('a positive integer', dVocab));
  }
  let rows: unknown = value;
  let mask: unknown = undefined;
  if (isPlainObject(value)) {
    const key = 'input_ids' in value ? 'input_ids' : 'tokens' in value ? 'tokens' : null;
    if (!key) throw new FormatError(where, expectedFound('{"input_ids": [[...]]} or a list of rows', `an object with keys ${Object.keys(value).slice(0, 5).join(', ') || '(none)'}`));
    rows = value[key];
    where = `${where}: ${key}`;
    mask = value.attention_mask;
  }
  if (!Array.isArray(rows)) throw new FormatError(where, expectedFound('a JSON array of rows of token ids', describeJson(rows)));
  if (rows.length === 0) throw new ShapeError(where, expectedFound('at least one row', 'an empty list'));
  const out: number[][] = [];
  rows.forEach((row, b) => {
    if (!Array.isArray(row)) throw new FormatError(`${where}: row ${b}`, expectedFound('an array of token ids', describeJson(row)));
    if (row.length === 0) throw new ShapeError(`${where}: row ${b}`, expectedFound('at least one token', 'an empty row'));
    if (!allowRagged && b > 0 && row.length !== rows[0].length) {
      throw new ShapeError(`${where}: row ${b}`, `has ${row.length} tokens, expected ${rows[0].length} like row 0 (rows must have one length; left-pad them)`);
    }
    row.forEach((id: unknown, p: number) => {
      const at = `${where}: [${b}][${p}]`;
      if (typeof id !== 'number') throw new ValueError(at, expectedFound('an integer token id', describeJson(id)));
      if (!Number.isInteger(id)) throw new ValueError(at, expectedFound('an integer token id', String(id)));
      if (id < 0 || (dVocab !== undefined && id >= dVocab)) {
        throw new ValueError(at, expectedFound(`a token id in [0, ${dVocab !== undefined ? dVocab - 1 : 'inf'}]`, id));
      }
    });
    out.push(row.slice() as number[]);
  });
  if (mask !== undefined && mask !== null) checkMask(mask, out, where.replace(/: (input_ids|tokens)$/, ': attention_mask'));
  return out;
}

function checkMask(mask: unknown, ids: number[][], where: string): void {
  if (!Array.isArray(mask) || mask.length !== ids.length) {
    throw new ShapeError(where, expectedFound(`${ids.length} rows like the ids`, Array.isArray(mask) ? `${mask.length} rows` : describeJson(mask)));
  }
  mask.forEach((row, b) => {
    if (!Array.isArray(row) || row.length !== ids[b].length) {
      throw new ShapeError(`${where}: row ${b}`, expectedFound(`${ids[b].length} entries like its ids row`, Array.isArray(row) ? `${row.length} entries` : describeJson(row)));
    }
    row.forEach((v: unknown, p: number) => {
      if (v !== 0 && v !== 1) throw new ValueError(`${where}: [${b}][${p}]`, expectedFound('0 or 1', describeJson(v)));
    });
  });
}

/** Read a token-id file (.json or .npy) and check it; returns number[][]. */
export async function readTokenFile(file: string, opts: TokenCheckOptions = {}): Promise<number[][]> {
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (e) {
    throw new ResolveError(file, (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : `cannot read: ${(e as Error).message}`);
  }
  if (file.endsWith('.npy')) {
    const a = parseNpy(buf, file);
    if (a.dtype !== 'int32') throw new FormatError(file, expectedFound('integer token ids (int32 or int64)', a.dtype));
    if (a.shape.length !== 1 && a.shape.length !== 2) throw new ShapeError(file, expectedFound('a 1-D or 2-D array', `shape (${a.shape.join(', ')})`));
    const [b, p] = a.shape.length === 1 ? [1, a.shape[0]] : a.shape;
    const rows: number[][] = [];
    for (let i = 0; i < b; i++) rows.push(Array.from(a.data.subarray(i * p, (i + 1) * p)));
    return parseTokenIds(rows, file, opts);
  }
  const json = parseJsonStrict(buf.toString('utf8'), file, 'token file');
  return parseTokenIds(json, file, opts);
}
