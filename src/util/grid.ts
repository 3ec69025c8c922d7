/**
 * Host-side helpers shared by every room: the one head-reference parser and the one matrix check.
 * Pure functions over plain arrays (tensors are read by their callers, asynchronously).
 */
import { ShapeError, ValueError, expectedFound } from '../errors.js';

/**
 * Parse a head reference: "L.H" (e.g. "9.6"), "L9H6", or [layer, head]; range-checked when the
 * model's shape is given.
 */
export function parseHead(ref: string | readonly [number, number], shape?: { n_layers: number; n_heads: number }, where = 'head'): [number, number] {
  let l: number;
  let h: number;
  if (typeof ref === 'string') {
    const m = /^\s*(\d+)\s*[.:,]\s*(\d+)\s*$/.exec(ref) ?? /^\s*L(\d+)\s*H(\d+)\s*$/i.exec(ref);
    if (!m) throw new ValueError(where, expectedFound('a head as "layer.head" (e.g. "9.6") or "L9H6"', JSON.stringify(ref)));
    l = Number(m[1]);
    h = Number(m[2]);
  } else if (Array.isArray(ref) && ref.length === 2) {
    [l, h] = ref;
  } else {
    throw new ValueError(where, expectedFound('"layer.head" or [layer, head]', JSON.stringify(ref)));
  }
  if (!Number.isInteger(l) || l < 0 || (shape && l >= shape.n_layers)) throw new ValueError(where, expectedFound(`a layer in [0, ${shape?.n_layers ?? 'n_layers'})`, l));
  if (!Number.isInteger(h) || h < 0 || (shape && h >= shape.n_heads)) throw new ValueError(where, expectedFound(`a head in [0, ${shape?.n_heads ?? 'n_heads'})`, h));
  return [l, h];
}

/** The canonical "L.H" name of a head. */
export function headName(l: number, h: number): string {
  return `${l}.${h}`;
}

/**
 * A rectangular rows x cols grid of numbers (copied), checked: non-empty, equal row lengths and,
 * unless `allowNonFinite`, finite entries. Errors name `where` and the offending cell.
 */
export function toMatrix(x: unknown, where = 'matrix', opts: { allowNonFinite?: boolean } = {}): number[][] {
  if (!Array.isArray(x) || x.length === 0) throw new ShapeError(where, expectedFound('a non-empty 2-d array', Array.isArray(x) ? 'an empty array' : typeof x));
  const cols = Array.isArray(x[0]) ? (x[0] as unknown[]).length : -1;
  return x.map((row, i) => {
    if (!Array.isArray(row) || row.length !== cols || cols === 0) {
      throw new ShapeError(`${where}[${i}]`, expectedFound(`a row of ${cols > 0 ? cols : 'at least 1'} numbers`, Array.isArray(row) ? `${row.length} entries` : typeof row));
    }
    return row.map((v, j) => {
      if (typeof v !== 'number' || (!opts.allowNonFinite && !Number.isFinite(v))) {
        throw new ValueError(`${where}[${i}][${j}]`, expectedFound(opts.allowNonFinite ? 'a number' : 'a finite number', typeof v === 'number' ? String(v) : typeof v));
      }
      return v;
    });
  });
}
