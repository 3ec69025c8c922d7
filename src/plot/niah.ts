/**
 * Needle-in-a-haystack heatmaps: rows = context lengths, columns = needle depths (%), colour =
 * accuracy in [0, 1] (ROUGE-1 recall or exact match). They read a NiahResult (tfl.retrieval.niahGrid).
 */
import { ConfigError, expectedFound } from '../errors.js';
import type { NiahResult } from '../results.js';
import { patchingHeatmap } from './figures.js';
import type { Figure } from './types.js';

export type NiahMetric = 'rouge' | 'exact';

function metricOf(m: unknown): NiahMetric {
  const metric = m ?? 'rouge';
  if (metric !== 'rouge' && metric !== 'exact') throw new ConfigError('metric', expectedFound("'rouge' or 'exact'", metric));
  return metric;
}

const metricName = (m: NiahMetric) => (m === 'rouge' ? 'ROUGE-1 recall' : 'exact match');

/** The NIAH heatmap of one grid. */
export function niahHeatmap(grid: NiahResult, opts: { metric?: NiahMetric; title?: string; width?: number; height?: number } = {}): Figure {
  const metric = metricOf(opts.metric);
  return patchingHeatmap(grid[metric], {
    rowLabels: grid.lengths.map(String),
    colLabels: grid.depths.map((d) => `${Math.round(d * 100)}%`),
    xTitle: 'Depth',
    yTitle: 'Length',
    title: opts.title ?? `NIAH ${metricName(metric)} (mean ${grid.mean[metric].toFixed(2)})`,
    diverging: false,
    zmin: 0,
    zmax: 1,
    width: opts.width,
    height: opts.height,
  });
}

/**
 * Several NIAH heatmaps side by side in one figure (e.g. unmasked, top-K masked, random-K masked),
 * on one 0..1 colour scale; each panel titled with its mean.
 */
export function niahHeatmaps(panels: Array<{ grid: NiahResult; title: string }>, opts: { metric?: NiahMetric; title?: string; height?: number } = {}): Figure {
  if (!Array.isArray(panels) || panels.length === 0) throw new ConfigError('panels', expectedFound('at least one {grid, title}', panels));
  const metric = metricOf(opts.metric);
  const n = panels.length;
  const gap = 0.06;
  const w = (1 - gap * (n - 1)) / n;
  const layout: Figure['layout'] = {
    title: { text: opts.title ?? `NIAH ${metricName(metric)}` },
    height: opts.height ?? Math.max(320, 200 + 28 * panels[0].grid.lengths.length),
    annotations: [],
  };
  const data = panels.map((p, i) => {
    const t = { ...niahHeatmap(p.grid, { metric }).data[0] };
    const sfx = i === 0 ? '' : String(i + 1);
    t.xaxis = `x${sfx}`;
    t.yaxis = `y${sfx}`;
    t.showscale = i === n - 1;
    const x0 = i * (w + gap);
    layout[`xaxis${sfx}`] = { title: { text: 'Depth' }, type: 'category', tickangle: -45, showgrid: false, automargin: true, domain: [x0, x0 + w], anchor: `y${sfx}` };
    layout[`yaxis${sfx}`] = { title: { text: i === 0 ? 'Length' : '' }, type: 'category', autorange: 'reversed', showgrid: false, automargin: true, anchor: `x${sfx}` };
    layout.annotations!.push({ x: x0 + w / 2, y: 1.02, xref: 'paper', yref: 'paper', xanchor: 'center', yanchor: 'bottom', showarrow: false, text: `${p.title} (mean ${p.grid.mean[metric].toFixed(2)})` });
    return t;
  });
  return { data, layout, config: niahHeatmap(panels[0].grid, { metric }).config };
}
