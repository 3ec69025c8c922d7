/**
 * Plain result types shared by analyses, circuits, plots and exports.
 * A HeadScores is a layer x head grid of numbers with the method that made it, its parameters
 * and the data it was computed on. Plots and exports consume it; they never recompute.
 */
import { ShapeError } from './errors.js';

export interface HeadScores {
  /** Method name, e.g. "sink", "induction", "head-patching". */
  method: string;
  /** scores[layer][head]. */
  scores: number[][];
  nLayers: number;
  nHeads: number;
  /** Parameters of the method (thresholds, eps, positions...). */
  params: Record<string, unknown>;
  /** What it was computed on: a description, the number of prompts, a task name... */
  data?: Record<string, unknown>;
  /** Model name or path. */
  model?: string;
  /** Optional confidence interval per head (e.g. seeded bootstrap over prompts). */
  ci?: { lo: number[][]; hi: number[][]; level: number; method: string };
  /** Method-specific extra columns, each a layer x head grid (exported after "score"). */
  extra?: Record<string, number[][]>;
}

export interface HeadRow {
  layer: number;
  head: number;
  /** TransformerLens-style "L.H". */
  name: string;
  score: number;
  [column: string]: number | string;
}

export function makeHeadScores(
  method: string,
  scores: number[][],
  params: Record<string, unknown> = {},
  extras: Partial<Omit<HeadScores, 'method' | 'scores' | 'params' | 'nLayers' | 'nHeads'>> = {},
): HeadScores {
  const nLayers = scores.length;
  const nHeads = nLayers ? scores[0].length : 0;
  for (let l = 0; l < nLayers; l++) {
    if (scores[l].length !== nHeads) {
      throw new ShapeError(`scores[${l}]`, `expected ${nHeads} heads, found ${scores[l].length}`);
    }
  }
  for (const [k, grid] of Object.entries(extras.extra ?? {})) {
    if (grid.length !== nLayers || grid.some((r) => r.length !== nHeads)) {
      throw new ShapeError(`extra.${k}`, `expected a ${nLayers} x ${nHeads} grid`);
    }
  }
  return { method, scores, nLayers, nHeads, params, ...extras };
}

/** Rows sorted by score, descending (ties: lower layer, then lower head first; NaN last). */
export function rankHeads(hs: HeadScores): HeadRow[] {
  const rows: HeadRow[] = [];
  for (let l = 0; l < hs.nLayers; l++) {
    for (let h = 0; h < hs.nHeads; h++) {
      const row: HeadRow = { layer: l, head: h, name: `${l}.${h}`, score: hs.scores[l][h] };
      for (const [k, grid] of Object.entries(hs.extra ?? {})) row[k] = grid[l][h];
      if (hs.ci) {
        row.ci_lo = hs.ci.lo[l][h];
        row.ci_hi = hs.ci.hi[l][h];
      }
      rows.push(row);
    }
  }
  // NaN scores rank last (a NaN comparison would make the order depend on where the NaN sits)
  const key = (x: number) => (Number.isNaN(x) ? -Infinity : x);
  rows.sort((a, b) => (Number.isNaN(a.score) ? 1 : 0) - (Number.isNaN(b.score) ? 1 : 0) || key(b.score) - key(a.score) || a.layer - b.layer || a.head - b.head);
  return rows;
}

/** The top-k heads as "L.H" names. */
export function topHeads(hs: HeadScores, k: number): string[] {
  return rankHeads(hs).slice(0, k).map((r) => r.name);
}

/** One decoded needle-in-a-haystack sample of a NIAH grid (tfl.retrieval.niahGrid). */
export interface NiahSampleResult {
  length: number;
  depth: number;
  seed: number;
  promptLength: number;
  generated: number[];
  /** The decoded response text (null without a tokenizer or decoder). */
  response: string | null;
  /** ROUGE-1 recall of the answer in the response. */
  rouge: number;
  exact: boolean;
  meta?: Record<string, unknown>;
}

/** A needle-in-a-haystack grid: what the NIAH heatmaps (tfl.plot) read. */
export interface NiahResult {
  lengths: number[];
  depths: number[];
  /** Mean ROUGE-1 recall per cell, [length][depth]. */
  rouge: number[][];
  /** Exact-match rate per cell, [length][depth]. */
  exact: number[][];
  /** Means over the whole grid. */
  mean: { rouge: number; exact: number };
  /** samples[li][di][k]. */
  samples: NiahSampleResult[][][];
  params: Record<string, unknown>;
}
