/**
 * The text of a ranking file, as `tflens rank` and `tflens sweep collect` write it: head scores as
 * CSV or JSON (io/export), row results as CSV or JSON, or the retrieval-head authors' JSON.
 */
import { ValueError, expectedFound } from '../errors.js';
import { headScoresToCsv, headScoresToJson, toCsv, type RankBy } from '../io/export.js';
import type { RankOutput } from './types.js';

export const RANK_FORMATS = ['csv', 'json', 'retrieval-head'] as const;
export type RankFormat = (typeof RANK_FORMATS)[number];

/** Check a format name (`where` names the argument in the error). */
export function rankFormat(format: string, where = 'format'): RankFormat {
  if (!(RANK_FORMATS as readonly string[]).includes(format)) throw new ValueError(where, expectedFound('csv, json or retrieval-head', format));
  return format as RankFormat;
}

/** Check a ranking order (`--rank-by`): 'signed' (the default, largest score first) or 'absolute' (largest |score| first). */
export function rankByArg(value: string | undefined, where = 'rankBy'): RankBy {
  if (value === undefined) return 'signed';
  if (value !== 'signed' && value !== 'absolute') throw new ValueError(where, expectedFound('signed or absolute', value));
  return value;
}

/**
 * The file text of a ranking; `modelName` fills in head scores that carry no model. `rankBy` orders
 * head scores and row results ('absolute': by |score|, ties and NaN as io/export's rankedHeadRows).
 */
export function renderRank(r: RankOutput, format: RankFormat, modelName: string, rankBy: RankBy = 'signed'): string {
  if (format === 'retrieval-head') {
    if (!r.authorJson) throw new ValueError('--format retrieval-head', `only for --method retrieval, not ${r.method}`);
    return JSON.stringify(r.authorJson) + '\n';
  }
  if (r.scores) {
    const hs = { ...r.scores, model: r.scores.model ?? modelName };
    return format === 'json' ? headScoresToJson(hs, { rankBy }) : headScoresToCsv(hs, { rankBy });
  }
  const rows = rankBy === 'absolute' ? byMagnitude(r.rows ?? []) : r.rows ?? [];
  if (format === 'json') return JSON.stringify({ method: r.method, params: r.params, model: modelName, rows }, null, 2) + '\n';
  return toCsv(rows, r.columns ?? ['layer', 'head', 'srcLayer', 'srcHead', 'score']);
}

/** Rows by |score|, largest first (NaN or missing scores last); a stable sort keeps the method's order among ties. */
function byMagnitude<T extends Record<string, unknown>>(rows: T[]): T[] {
  const key = (row: T) => (typeof row.score === 'number' && !Number.isNaN(row.score) ? Math.abs(row.score) : -1);
  return [...rows].sort((a, b) => key(b) - key(a));
}
