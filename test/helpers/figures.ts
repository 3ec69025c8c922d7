/**
 * Checking in a browser page that tflens figures really drew: each `div.tflens-plot` holds a plotly
 * SVG with data marks of real size. Shared by the report test (test/browser.test.ts) and the live
 * Jupyter test (test/live-jupyter.test.ts).
 */
import { strict as assert } from 'node:assert';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Headless Chromium with nothing that reaches out (no GPU, no first-run, no background networking). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export interface FigureCheck {
  id: string;
  svgs: number;
  heatmapImages: number;
  heatmapImageArea: number;
  points: number;
  lines: number;
  bars: number;
  annotations: number;
  width: number;
  height: number;
  text: string;
}

/**
 * Page source (evaluated as text: tsx's transpiled closures reference helpers that do not exist in
 * the page) that returns a FigureCheck per tflens figure div.
 */
export const FIGURE_CHECKS_JS = `(() => {
  const area = (el) => {
    const r = el.getBoundingClientRect();
    return r.width * r.height;
  };
  return Array.from(document.querySelectorAll('div.tflens-plot')).map((d) => {
    const imgs = Array.from(d.querySelectorAll('g.hm image'));
    const lines = Array.from(d.querySelectorAll('g.trace.scatter path.js-line')).filter((p) => (p.getAttribute('d') || '').length > 3);
    const bars = Array.from(d.querySelectorAll('g.trace.bars path')).filter((p) => area(p) > 0);
    const r = d.getBoundingClientRect();
    return {
      id: d.id,
      svgs: d.querySelectorAll('svg.main-svg').length,
      heatmapImages: imgs.filter((i) => (i.getAttribute('href') || i.getAttribute('xlink:href') || '').startsWith('data:image')).length,
      heatmapImageArea: imgs.reduce((s, i) => s + area(i), 0),
      points: d.querySelectorAll('g.trace.scatter path.point').length,
      lines: lines.length,
      bars: bars.length,
      annotations: d.querySelectorAll('g.annotation').length,
      width: r.width,
      height: r.height,
      text: (d.textContent || '').slice(0, 200),
    };
  });
})()`;

/** Page source: true once at least `min` figure divs exist and each holds a plotly SVG (or gave up with its message). */
export function figuresSettledJs(min: number): string {
  return `(() => {
    const divs = Array.from(document.querySelectorAll('div.tflens-plot'));
    return divs.length >= ${min} && divs.every((d) => d.querySelector('svg.main-svg') || (d.textContent || '').includes('not loaded'));
  })()`;
}

/** A figure drew: an SVG of real size holding data marks (heatmap images with area, points, lines or bars). */
export function assertDrawn(f: FigureCheck, where: string): void {
  assert.ok(f.svgs >= 1, `${where}: figure ${f.id} has no svg.main-svg (text: ${f.text})`);
  assert.ok(f.width > 100 && f.height > 100, `${where}: figure ${f.id} is ${f.width}x${f.height}`);
  const marks = f.heatmapImages + f.points + f.lines + f.bars;
  assert.ok(marks > 0, `${where}: figure ${f.id} holds no data marks`);
  if (f.heatmapImages > 0) assert.ok(f.heatmapImageArea > 1000, `${where}: heatmap of ${f.id} has no area`);
}
