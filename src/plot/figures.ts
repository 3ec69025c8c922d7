/**
 * Plotly figure builders. Each takes host data (number[][], HeadScores, typed results; never a
 * tensor: read one with `await t.array()` first) and returns a plain figure object; nothing here
 * touches the DOM, reads a device or recomputes an analysis. Input is checked before anything is
 * built: a wrong rank or a label list of the wrong length throws a ShapeError, a NaN or infinite
 * value throws a ValueError.
 */
import { ShapeError, ValueError, expectedFound } from '../errors.js';
import type { HeadScores } from '../results.js';
import { toMatrix } from '../util/grid.js';
import type { Annotation, Axis, Figure, Trace, UpdateMenu } from './types.js';

/** Blue (negative) - white (zero) - red (positive); used when values have both signs. */
export const DIVERGING: Array<[number, string]> = [
  [0, '#2166ac'],
  [0.25, '#67a9cf'],
  [0.5, '#f7f7f7'],
  [0.75, '#ef8a62'],
  [1, '#b2182b'],
];
/** White to dark blue; used for attention probabilities and one-signed scores. */
export const SEQUENTIAL: Array<[number, string]> = [
  [0, '#f7fbff'],
  [0.25, '#c6dbef'],
  [0.5, '#6baed6'],
  [0.75, '#2171b5'],
  [1, '#08306b'],
];

const CONFIG = { responsive: true, displaylogo: false };

// ---------------------------------------------------------------- input checks

function checkFinite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ValueError(where, expectedFound('a finite number', typeof v === 'number' ? String(v) : typeof v));
  }
  return v;
}

/** A list of equal-shaped matrices [n][rows][cols] of finite numbers. */
function toCube(x: number[][][], where: string): number[][][] {
  if (!Array.isArray(x) || x.length === 0) {
    throw new ShapeError(where, expectedFound('a non-empty 3-d array', Array.isArray(x) ? 'an empty array' : typeof x));
  }
  const mats = x.map((m, i) => toMatrix(m, `${where}[${i}]`));
  const [r, c] = [mats[0].length, mats[0][0].length];
  mats.forEach((m, i) => {
    if (m.length !== r || m[0].length !== c) {
      throw new ShapeError(`${where}[${i}]`, expectedFound(`${r} x ${c}`, `${m.length} x ${m[0].length}`));
    }
  });
  return mats;
}

function toVector(x: number[], where: string): number[] {
  if (!Array.isArray(x)) throw new ShapeError(where, expectedFound('an array of numbers', typeof x));
  return x.map((v, i) => checkFinite(v, `${where}[${i}]`));
}

function checkLabels(labels: unknown, n: number, where: string): string[] {
  if (!Array.isArray(labels)) throw new ShapeError(where, expectedFound(`${n} labels`, typeof labels));
  if (labels.length !== n) throw new ShapeError(where, expectedFound(`${n} labels`, `${labels.length}`));
  return labels.map((l) => String(l));
}

// ---------------------------------------------------------------- formatting

/** Fixed decimals, without the "-0.00" that toFixed gives for tiny negatives. */
export function formatValue(v: number, decimals = 2): string {
  const s = v.toFixed(decimals);
  return Number(s) === 0 ? (0).toFixed(decimals) : s;
}

/** Plotly reads text as pseudo-HTML: escape it so tokens such as "<|endoftext|>" show as typed. */
export function escapeText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** How a token string is shown: escaped, newlines and tabs made visible, the empty string marked. */
export function tokenLabel(tok: string): string {
  if (tok === '') return '∅';
  return escapeText(tok.replace(/\n/g, '\\n').replace(/\t/g, '\\t').replace(/\r/g, '\\r'));
}

/**
 * Plotly merges equal category labels; give the k-th repeat of a label k zero-width spaces
 * so every position keeps its own row/column while the tick text looks the same.
 */
export function dedupeLabels(labels: string[]): string[] {
  const seen = new Set<string>();
  return labels.map((l) => {
    let out = l;
    while (seen.has(out)) out += '\u200b';
    seen.add(out);
    return out;
  });
}

interface ColourRange {
  colorscale: Array<[number, string]>;
  zmin: number;
  zmax: number;
  zmid?: number;
}

/** Diverging scale centred at 0 when the values have both signs (or when asked); else sequential. */
function colourRange(values: number[][], diverging?: boolean, zmin?: number, zmax?: number): ColourRange {
  let lo = Infinity;
  let hi = -Infinity;
  for (const row of values) for (const v of row) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const both = lo < 0 && hi > 0;
  if (diverging ?? both) {
    const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1;
    return { colorscale: DIVERGING, zmin: zmin ?? -m, zmax: zmax ?? m, zmid: 0 };
  }
  if (lo === hi) hi = lo + 1;
  return { colorscale: SEQUENTIAL, zmin: zmin ?? lo, zmax: zmax ?? hi };
}

function axis(title: string | undefined, extra: Axis = {}): Axis {
  return { ...(title !== undefined ? { title: { text: title } } : {}), automargin: true, ...extra };
}

// ---------------------------------------------------------------- head heatmap

export interface HeadHeatmapOptions {
  /** Decimals in the hover text (default 2). */
  decimals?: number;
  /** Append the confidence interval hs.ci to each hover text: "L9.H6: 0.83 (95% CI 0.71 to 0.90)". */
  showCI?: boolean;
  /** Title (default: hs.method, with the model in brackets when known). */
  title?: string;
  /** Force a diverging (true) or sequential (false) scale; default: diverging when scores have both signs. */
  diverging?: boolean;
  zmin?: number;
  zmax?: number;
  width?: number;
  height?: number;
}

/** Layer x head heatmap of a HeadScores; hover "L9.H6: 0.83"; layer 0 at the top. */
export function headHeatmap(hs: HeadScores, opts: HeadHeatmapOptions = {}): Figure {
  const where = `headHeatmap(${hs?.method ?? '?'})`;
  const z = toMatrix(hs.scores, `${where}: scores`);
  if (z.length !== hs.nLayers || z[0].length !== hs.nHeads) {
    throw new ShapeError(`${where}: scores`, expectedFound(`${hs.nLayers} x ${hs.nHeads} (nLayers x nHeads)`, `${z.length} x ${z[0].length}`));
  }
  const d = opts.decimals ?? 2;
  let ci: { lo: number[][]; hi: number[][]; level: number } | null = null;
  if (opts.showCI) {
    if (!hs.ci) throw new ValueError(`${where}: showCI`, expectedFound('scores with a confidence interval (hs.ci)', 'none'));
    ci = { lo: toMatrix(hs.ci.lo, `${where}: ci.lo`), hi: toMatrix(hs.ci.hi, `${where}: ci.hi`), level: hs.ci.level };
    for (const [name, g] of [['lo', ci.lo], ['hi', ci.hi]] as const) {
      if (g.length !== z.length || g[0].length !== z[0].length) {
        throw new ShapeError(`${where}: ci.${name}`, expectedFound(`${z.length} x ${z[0].length}`, `${g.length} x ${g[0].length}`));
      }
    }
  }
  const pct = ci ? `${formatValue(ci.level <= 1 ? ci.level * 100 : ci.level, 0)}% CI` : '';
  const text = z.map((row, l) =>
    row.map((v, h) => `L${l}.H${h}: ${formatValue(v, d)}${ci ? ` (${pct} ${formatValue(ci.lo[l][h], d)} to ${formatValue(ci.hi[l][h], d)})` : ''}`),
  );
  const range = colourRange(z, opts.diverging, opts.zmin, opts.zmax);
  const heads = Array.from({ length: hs.nHeads }, (_, h) => h);
  const layers = Array.from({ length: hs.nLayers }, (_, l) => l);
  const title = opts.title ?? (hs.model ? `${hs.method} (${hs.model})` : hs.method);
  return {
    data: [
      {
        type: 'heatmap',
        name: hs.method,
        x: heads,
        y: layers,
        z,
        text,
        hoverinfo: 'text',
        hovertemplate: '%{text}<extra></extra>',
        ...range,
        xgap: 1,
        ygap: 1,
      },
    ],
    layout: {
      title: { text: title },
      xaxis: axis('Head', { tickmode: 'linear', dtick: 1, showgrid: false, zeroline: false }),
      yaxis: axis('Layer', { tickmode: 'linear', dtick: 1, autorange: 'reversed', showgrid: false, zeroline: false }),
      width: opts.width,
      height: opts.height ?? Math.max(320, Math.min(900, 160 + 28 * hs.nLayers)),
    },
    config: { ...CONFIG },
  };
}

// ---------------------------------------------------------------- attention patterns

export interface AttentionPatternOptions {
  title?: string;
  /** Labels for the query rows when there are fewer queries than keys (default: the last q tokens). */
  queryTokens?: string[];
  decimals?: number;
  /** Colour range (default 0..1, attention probabilities). */
  zmin?: number;
  zmax?: number;
  width?: number;
  height?: number;
}

function patternLabels(q: number, k: number, tokens: string[], queryTokens: string[] | undefined, where: string) {
  const keys = checkLabels(tokens, k, `${where}: tokens (one per key position)`);
  let queries: string[];
  if (queryTokens !== undefined) queries = checkLabels(queryTokens, q, `${where}: queryTokens (one per query position)`);
  else if (q === k) queries = keys;
  else if (q < k) queries = keys.slice(k - q);
  else throw new ShapeError(`${where}: pattern`, expectedFound(`at most ${k} query rows (one per token)`, `${q} rows`));
  const keyShown = keys.map(tokenLabel);
  const queryShown = queries.map(tokenLabel);
  return {
    keyCats: dedupeLabels(keyShown),
    queryCats: dedupeLabels(queryShown),
    keyShown,
    queryShown,
    /** Position of the first query row among the keys. */
    offset: queryTokens !== undefined ? 0 : k - q,
  };
}

function patternTrace(z: number[][], labels: ReturnType<typeof patternLabels>, d: number, zmin: number, zmax: number, name?: string): Trace {
  const text = z.map((row, i) =>
    row.map((v, j) => `q${i + labels.offset} ${labels.queryShown[i]} → k${j} ${labels.keyShown[j]}: ${formatValue(v, d)}`),
  );
  return {
    type: 'heatmap',
    name,
    x: labels.keyCats,
    y: labels.queryCats,
    z,
    text,
    hoverinfo: 'text',
    hovertemplate: '%{text}<extra></extra>',
    colorscale: SEQUENTIAL,
    zmin,
    zmax,
  };
}

function patternLayout(title: string, n: number, opts: { width?: number; height?: number }) {
  const size = Math.max(320, Math.min(900, 200 + 22 * n));
  return {
    title: { text: title },
    xaxis: axis('Key', { type: 'category' as const, tickangle: -45, showgrid: false }),
    yaxis: axis('Query', { type: 'category' as const, autorange: 'reversed' as const, showgrid: false }),
    width: opts.width ?? size + 80,
    height: opts.height ?? size,
  };
}

/**
 * One attention pattern (query x key) with the tokens on both axes. `tokens` has one entry per key;
 * the query rows are the same tokens (or the last q of them, or `opts.queryTokens`).
 */
export function attentionPattern(pattern: number[][], tokens: string[], opts: AttentionPatternOptions = {}): Figure {
  const where = 'attentionPattern';
  const z = toMatrix(pattern, `${where}: pattern`);
  const labels = patternLabels(z.length, z[0].length, tokens, opts.queryTokens, where);
  const trace = patternTrace(z, labels, opts.decimals ?? 2, opts.zmin ?? 0, opts.zmax ?? 1);
  return {
    data: [trace],
    layout: patternLayout(opts.title ?? 'Attention pattern', labels.keyCats.length, opts),
    config: { ...CONFIG },
  };
}

export interface AttentionGridOptions extends AttentionPatternOptions {
  /** One name per head (default "H0", "H1", ...), e.g. "L5.H1". */
  headNames?: string[];
}

/** Patterns of several heads [head, q, k]; a dropdown picks the one head shown. */
export function attentionGrid(patterns: number[][][], tokens: string[], opts: AttentionGridOptions = {}): Figure {
  const where = 'attentionGrid';
  const zs = toCube(patterns, `${where}: patterns`);
  const names = opts.headNames !== undefined
    ? checkLabels(opts.headNames, zs.length, `${where}: headNames (one per head)`)
    : zs.map((_, i) => `H${i}`);
  const labels = patternLabels(zs[0].length, zs[0][0].length, tokens, opts.queryTokens, where);
  const d = opts.decimals ?? 2;
  const zmin = opts.zmin ?? 0;
  const zmax = opts.zmax ?? 1;
  const base = opts.title ?? 'Attention pattern';
  const data = zs.map((z, i) => ({ ...patternTrace(z, labels, d, zmin, zmax, names[i]), visible: i === 0 }));
  const menu: UpdateMenu = {
    type: 'dropdown',
    direction: 'down',
    active: 0,
    x: 0,
    y: 1.02,
    xanchor: 'left',
    yanchor: 'bottom',
    showactive: true,
    buttons: names.map((name, i) => ({
      label: name,
      method: 'update',
      args: [{ visible: names.map((_, j) => j === i) }, { 'title.text': `${base}: ${name}` }],
    })),
  };
  const layout = patternLayout(`${base}: ${names[0]}`, labels.keyCats.length, opts);
  // the title at the very top, the head dropdown between it and the plot
  return {
    data,
    layout: {
      ...layout,
      title: { ...layout.title, y: 0.98, yanchor: 'top' },
      margin: { t: 110 },
      height: layout.height + 40,
      updatemenus: [menu],
    },
    config: { ...CONFIG },
  };
}

// ---------------------------------------------------------------- lines, bars, histograms

export interface Series {
  name: string;
  /** Default 0, 1, 2, ... */
  x?: number[];
  y: number[];
}

export interface LinePlotOptions {
  title: string;
  xTitle: string;
  yTitle: string;
  /** 'lines+markers' (default), 'lines' or 'markers'. */
  mode?: string;
  logY?: boolean;
  decimals?: number;
  width?: number;
  height?: number;
}

/** Line plot of one or more series (over layers, positions, training steps...). */
export function linePlot(series: Series[], opts: LinePlotOptions): Figure {
  if (!Array.isArray(series) || series.length === 0) {
    throw new ShapeError('linePlot: series', expectedFound('at least one series', Array.isArray(series) ? 'none' : typeof series));
  }
  const d = opts.decimals ?? 3;
  const data: Trace[] = series.map((s, i) => {
    const where = `linePlot: series[${i}] (${s.name})`;
    const y = toVector(s.y, `${where}.y`);
    const x = s.x === undefined ? y.map((_, j) => j) : toVector(s.x, `${where}.x`);
    if (x.length !== y.length) throw new ShapeError(`${where}.x`, expectedFound(`${y.length} values (as many as y)`, `${x.length}`));
    return {
      type: 'scatter',
      mode: opts.mode ?? 'lines+markers',
      name: s.name,
      x,
      y,
      hovertemplate: `${escapeText(s.name)}: (%{x}, %{y:.${d}f})<extra></extra>`,
    };
  });
  return {
    data,
    layout: {
      title: { text: opts.title },
      xaxis: axis(opts.xTitle),
      yaxis: axis(opts.yTitle, opts.logY ? { type: 'log' } : {}),
      showlegend: series.length > 1,
      width: opts.width,
      height: opts.height ?? 420,
    },
    config: { ...CONFIG },
  };
}

export interface BarOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  decimals?: number;
  horizontal?: boolean;
  width?: number;
  height?: number;
}

/** Bar chart, one bar per label. */
export function bar(labels: string[], values: number[], opts: BarOptions = {}): Figure {
  const y = toVector(values, 'bar: values');
  const cats = dedupeLabels(checkLabels(labels, y.length, 'bar: labels (one per value)').map(escapeText));
  const d = opts.decimals ?? 3;
  const text = y.map((v, i) => `${escapeText(String(labels[i]))}: ${formatValue(v, d)}`);
  const h = opts.horizontal === true;
  return {
    data: [
      {
        type: 'bar',
        x: h ? y : cats,
        y: h ? cats : y,
        orientation: h ? 'h' : 'v',
        text,
        hoverinfo: 'text',
        hovertemplate: '%{text}<extra></extra>',
        textposition: 'none',
      },
    ],
    layout: {
      title: { text: opts.title ?? '' },
      xaxis: axis(h ? opts.yTitle : opts.xTitle, h ? {} : { type: 'category' }),
      yaxis: axis(h ? opts.xTitle : opts.yTitle, h ? { type: 'category', autorange: 'reversed' } : {}),
      width: opts.width,
      height: opts.height ?? 420,
    },
    config: { ...CONFIG },
  };
}

export interface HistogramOptions {
  title?: string;
  xTitle?: string;
  yTitle?: string;
  /** Maximum number of bins (plotly picks nice edges up to this many). */
  nbins?: number;
  width?: number;
  height?: number;
}

/** Histogram of values (plotly bins them in the browser). */
export function histogram(values: number[], opts: HistogramOptions = {}): Figure {
  const x = toVector(values, 'histogram: values');
  if (x.length === 0) throw new ShapeError('histogram: values', expectedFound('at least one value', 'none'));
  return {
    data: [{ type: 'histogram', x, ...(opts.nbins ? { nbinsx: opts.nbins } : {}) }],
    layout: {
      title: { text: opts.title ?? '' },
      xaxis: axis(opts.xTitle),
      yaxis: axis(opts.yTitle ?? 'Count'),
      width: opts.width,
      height: opts.height ?? 400,
    },
    config: { ...CONFIG },
  };
}

// ---------------------------------------------------------------- ROC

/**
 * ROC points to draw: false- and true-positive rates from (0, 0) to (1, 1) and the area under them, as
 * tfl.sae.rocCurve computes them (the one ROC computation of tflens; plots take its points as data).
 */
export interface RocData {
  fpr: number[];
  tpr: number[];
  auc: number;
}

export interface RocOptions {
  title?: string;
  /** Name of the curve in the legend (default "ROC"). */
  name?: string;
  width?: number;
  height?: number;
}

/** ROC curve with the chance diagonal; the AUC is in the legend. `roc` is tfl.sae.rocCurve(scores, labels). */
export function rocCurve(roc: RocData, opts: RocOptions = {}): Figure {
  const fpr = toVector(roc?.fpr, 'rocCurve: fpr');
  const tpr = toVector(roc?.tpr, 'rocCurve: tpr');
  if (fpr.length !== tpr.length || fpr.length < 2) throw new ShapeError('rocCurve: tpr', expectedFound(`${fpr.length} points (one per fpr, at least 2)`, tpr.length));
  if (typeof roc.auc !== 'number' || !Number.isFinite(roc.auc)) throw new ValueError('rocCurve: auc', expectedFound('a finite number', String(roc.auc)));
  const r = { fpr, tpr, auc: roc.auc };
  return {
    data: [
      {
        type: 'scatter',
        mode: 'lines',
        name: `${escapeText(opts.name ?? 'ROC')} (AUC = ${formatValue(r.auc, 3)})`,
        x: r.fpr,
        y: r.tpr,
        line: { shape: 'linear' },
        hovertemplate: 'FPR %{x:.3f}, TPR %{y:.3f}<extra></extra>',
      },
      { type: 'scatter', mode: 'lines', name: 'chance', x: [0, 1], y: [0, 1], line: { dash: 'dash', color: '#999' }, hoverinfo: 'skip' },
    ],
    layout: {
      title: { text: opts.title ?? 'ROC' },
      xaxis: axis('False positive rate', { range: [0, 1] }),
      yaxis: axis('True positive rate', { range: [0, 1] }),
      showlegend: true,
      width: opts.width ?? 520,
      height: opts.height ?? 480,
    },
    config: { ...CONFIG },
  };
}

// ---------------------------------------------------------------- token strip

export interface TokenStripOptions {
  title?: string;
  decimals?: number;
  /** Tokens per row before wrapping (default: all on one row up to 20). */
  perRow?: number;
  diverging?: boolean;
  zmin?: number;
  zmax?: number;
  width?: number;
}

/** Tokens coloured by a value each (like circuitsvis colored_tokens): a heatmap with the tokens written on it. */
export function tokenStrip(tokens: string[], values: number[], opts: TokenStripOptions = {}): Figure {
  const v = toVector(values, 'tokenStrip: values');
  if (v.length === 0) throw new ShapeError('tokenStrip: values', expectedFound('at least one value', 'none'));
  const toks = checkLabels(tokens, v.length, 'tokenStrip: tokens (one per value)');
  const perRow = opts.perRow ?? Math.min(v.length, 20);
  if (!Number.isInteger(perRow) || perRow < 1) throw new ValueError('tokenStrip: perRow', expectedFound('a positive integer', String(perRow)));
  const rows = Math.ceil(v.length / perRow);
  const d = opts.decimals ?? 2;
  const range = colourRange([v], opts.diverging, opts.zmin, opts.zmax);
  // white text on the dark ends of the scale, black elsewhere
  const ink = (x: number) => {
    const t = (x - range.zmin) / (range.zmax - range.zmin || 1);
    const dark = range.zmid !== undefined ? Math.abs(t - 0.5) > 0.35 : t > 0.55;
    return dark ? '#fff' : '#000';
  };
  const z: Array<Array<number | null>> = [];
  const text: string[][] = [];
  const annotations: Annotation[] = [];
  for (let r = 0; r < rows; r++) {
    z.push([]);
    text.push([]);
    for (let c = 0; c < perRow; c++) {
      const i = r * perRow + c;
      if (i < v.length) {
        z[r].push(v[i]);
        text[r].push(`${i} ${tokenLabel(toks[i])}: ${formatValue(v[i], d)}`);
        annotations.push({ x: c, y: r, text: tokenLabel(toks[i]), showarrow: false, font: { size: 12, color: ink(v[i]) } });
      } else {
        z[r].push(null);
        text[r].push('');
      }
    }
  }
  const cols = Array.from({ length: perRow }, (_, c) => c);
  const rowIdx = Array.from({ length: rows }, (_, r) => r);
  return {
    data: [
      {
        type: 'heatmap',
        x: cols,
        y: rowIdx,
        z,
        text,
        hoverinfo: 'text',
        hovertemplate: '%{text}<extra></extra>',
        ...range,
        xgap: 2,
        ygap: 2,
      },
    ],
    layout: {
      title: { text: opts.title ?? '' },
      xaxis: { visible: false, showgrid: false, zeroline: false },
      yaxis: { visible: false, autorange: 'reversed', showgrid: false, zeroline: false },
      annotations,
      width: opts.width ?? Math.min(1200, 120 + 70 * perRow),
      height: 110 + 40 * rows,
      margin: { l: 20, r: 20, t: 50, b: 20 },
    },
    config: { ...CONFIG },
  };
}

// ---------------------------------------------------------------- patching heatmap

export interface PatchingHeatmapOptions {
  /** One label per row (default "0", "1", ...: layers). */
  rowLabels?: string[];
  /** One label per column (tokens for positions, or head indices). */
  colLabels?: string[];
  title?: string;
  /** Axis titles (default "Position" and "Layer"). */
  xTitle?: string;
  yTitle?: string;
  decimals?: number;
  diverging?: boolean;
  zmin?: number;
  zmax?: number;
  width?: number;
  height?: number;
}

/** Per (layer, position) or per (layer, head) patching results; diverging and centred at 0 when values have both signs. */
export function patchingHeatmap(values: number[][], opts: PatchingHeatmapOptions = {}): Figure {
  const where = 'patchingHeatmap';
  const z = toMatrix(values, `${where}: values`);
  const rowShown = (opts.rowLabels !== undefined ? checkLabels(opts.rowLabels, z.length, `${where}: rowLabels (one per row)`) : z.map((_, i) => String(i))).map(tokenLabel);
  const colShown = (opts.colLabels !== undefined ? checkLabels(opts.colLabels, z[0].length, `${where}: colLabels (one per column)`) : z[0].map((_, j) => String(j))).map(tokenLabel);
  const xTitle = opts.xTitle ?? 'Position';
  const yTitle = opts.yTitle ?? 'Layer';
  const d = opts.decimals ?? 2;
  const text = z.map((row, i) => row.map((v, j) => `${yTitle} ${rowShown[i]}, ${xTitle} ${j} ${colShown[j]}: ${formatValue(v, d)}`));
  const range = colourRange(z, opts.diverging, opts.zmin, opts.zmax);
  return {
    data: [
      {
        type: 'heatmap',
        x: dedupeLabels(colShown),
        y: dedupeLabels(rowShown),
        z,
        text,
        hoverinfo: 'text',
        hovertemplate: '%{text}<extra></extra>',
        ...range,
        xgap: 1,
        ygap: 1,
      },
    ],
    layout: {
      title: { text: opts.title ?? 'Patching' },
      xaxis: axis(xTitle, { type: 'category', tickangle: -45, showgrid: false }),
      yaxis: axis(yTitle, { type: 'category', autorange: 'reversed', showgrid: false }),
      width: opts.width ?? Math.min(1200, 200 + 40 * z[0].length),
      height: opts.height ?? Math.max(320, Math.min(900, 180 + 28 * z.length)),
    },
    config: { ...CONFIG },
  };
}
