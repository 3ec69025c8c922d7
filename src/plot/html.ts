/**
 * Drawing figures: in a tslab notebook (show), and as standalone offline HTML pages (saveHtml).
 * plotly.js comes from the installed plotly.js-dist and is inlined, never fetched: once per kernel
 * in notebooks (later figures reuse window.Plotly), once per page in saved files.
 */
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { ResolveError, ShapeError, expectedFound } from '../errors.js';
import { writeFileAtomic } from '../io/atomic.js';
import { tslabApi } from '../progress.js';
import { escapeText } from './figures.js';
import type { Figure } from './types.js';

let plotlySource: string | null = null;

/**
 * The plotly.js bundle text from node_modules/plotly.js-dist, minified with esbuild when that is
 * installed (halves notebook and report sizes), read once per process.
 */
export function plotlyJs(): string {
  if (plotlySource !== null) return plotlySource;
  const req = createRequire(import.meta.url);
  let file: string;
  let text: string;
  try {
    file = req.resolve('plotly.js-dist');
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ResolveError('plotly.js-dist', `cannot read the plotly.js bundle (npm install plotly.js-dist): ${(e as Error).message}`);
  }
  try {
    const esbuild = req('esbuild') as { transformSync(code: string, o: object): { code: string } };
    text = esbuild.transformSync(text, { minify: true, legalComments: 'inline' }).code;
  } catch {
    // esbuild absent or failed: the unminified bundle works the same
  }
  plotlySource = text;
  return text;
}

/**
 * JS source safe inside <script>...</script>: no "</script" (ends the element) or "<!--" (changes how
 * the HTML parser reads the rest). Both escapes mean the same inside JS strings, templates and regexes.
 * (plotly.js 4.1 holds neither; this guards future bundles.)
 */
export function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '\\x3C!--');
}

/** JSON that can sit inside a <script> element. */
function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * A <script> element that defines window.Plotly. The bundle runs with module/exports/define/require
 * hidden, so a page with require.js (classic Notebook, nbconvert templates) still gets the global.
 */
export function plotlyScriptTag(): string {
  return (
    '<script type="text/javascript">/* plotly.js (MIT), inlined by tflens */\n' +
    'if (!window.Plotly) { (function (module, exports, define, require) {\n' +
    scriptSafe(plotlyJs()) +
    '\n}).call(window); }\n</script>\n'
  );
}

function checkFigure(fig: Figure, where: string): void {
  if (typeof fig !== 'object' || fig === null || !Array.isArray(fig.data) || typeof fig.layout !== 'object' || fig.layout === null) {
    throw new ShapeError(where, expectedFound('a figure {data: Trace[], layout}', fig === null ? 'null' : typeof fig));
  }
}

export function figureList(figs: Figure | Figure[], where: string): Figure[] {
  const list = Array.isArray(figs) ? figs : [figs];
  if (list.length === 0) throw new ShapeError(where, expectedFound('at least one figure', 'none'));
  list.forEach((f, i) => checkFigure(f, Array.isArray(figs) ? `${where}[${i}]` : where));
  return list;
}

/**
 * A <div> and the <script> that draws `fig` into it with window.Plotly. The script finds its div
 * even while the output is not yet attached to the page (JupyterLab renders outputs detached) and
 * waits until it is, so plotly measures the real width.
 */
export function figureHtml(fig: Figure, id: string): string {
  checkFigure(fig, 'figureHtml: fig');
  const height = typeof fig.layout.height === 'number' ? fig.layout.height : 450;
  const width = typeof fig.layout.width === 'number' ? `${fig.layout.width}px` : '100%';
  const safeId = id.replace(/[^A-Za-z0-9_-]/g, '_');
  return (
    `<div id="${safeId}" class="tflens-plot" style="width:${width};max-width:100%;height:${height}px;"></div>\n` +
    '<script type="text/javascript">\n(function () {\n' +
    `  var id = ${jsonForScript(safeId)};\n` +
    `  var fig = ${jsonForScript(fig)};\n` +
    '  var me = document.currentScript;\n' +
    '  var tries = 0;\n' +
    '  function find() {\n' +
    '    var el = document.getElementById(id);\n' +
    '    if (!el && me && me.parentNode && me.parentNode.querySelector) el = me.parentNode.querySelector("#" + id);\n' +
    '    return el;\n' +
    '  }\n' +
    '  function draw() {\n' +
    '    var el = find();\n' +
    '    if ((!el || !el.isConnected) && tries++ < 200) { setTimeout(draw, 50); return; }\n' +
    '    if (!el) return;\n' +
    '    if (!window.Plotly) {\n' +
    '      el.style.height = "auto";\n' +
    '      el.textContent = "plotly.js is not loaded in this page: run tfl.loadPlotly() in a cell (or re-run the first figure cell), then this cell.";\n' +
    '      return;\n' +
    '    }\n' +
    '    window.Plotly.newPlot(el, fig.data, fig.layout, fig.config || {});\n' +
    '  }\n' +
    '  draw();\n' +
    '})();\n</script>\n'
  );
}

/** One line describing a figure, for places without a display (scripts, plain REPLs). */
export function describeFigure(fig: Figure): string {
  const title = fig.layout?.title?.text ?? '';
  const traces = fig.data.map((t) => {
    if (t.z) return `${t.type} ${t.z.length}x${t.z[0]?.length ?? 0}`;
    const n = (t.y ?? t.x ?? []).length;
    return `${t.type} (${n} points)`;
  });
  return `[tflens figure${title ? ` "${title}"` : ''}: ${traces.join(', ') || 'no traces'}]`;
}

let libShown = false;
let figureCounter = 0;
const sessionTag = `${process.pid.toString(36)}${Date.now().toString(36)}`;

/**
 * Display a figure (or several) in the notebook. The first call in a kernel inlines plotly.js;
 * later calls reuse window.Plotly. Outside tslab it prints a one-line summary per figure.
 */
export function show(figs: Figure | Figure[]): void {
  const list = figureList(figs, 'show: fig');
  const api = tslabApi();
  if (!api) {
    for (const f of list) console.log(describeFigure(f));
    return;
  }
  const lib = libShown ? '' : plotlyScriptTag();
  const body = list.map((f) => figureHtml(f, `tflens-plot-${sessionTag}-${figureCounter++}`)).join('');
  api.display.html(lib + body);
  libShown = true;
}

/**
 * Inline plotly.js into the notebook again (after the page was reloaded while the kernel kept
 * running, figures drawn later need it). Outside tslab it does nothing.
 */
export function loadPlotly(): void {
  const api = tslabApi();
  if (!api) return;
  api.display.html(plotlyScriptTag());
  libShown = true;
}

/** The text of a standalone HTML page showing the figures (plotly.js inlined, works offline). */
export function figuresPage(figs: Figure | Figure[], opts: { title?: string } = {}): string {
  const list = figureList(figs, 'figuresPage: figs');
  const title = opts.title ?? list[0].layout.title?.text ?? 'tflens figures';
  return (
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n' +
    `<title>${escapeText(title)}</title>\n` +
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    '<style>body{font-family:sans-serif;margin:1em 2em}.tflens-plot{margin-bottom:1.5em}</style>\n' +
    plotlyScriptTag() +
    '</head>\n<body>\n' +
    `<h1 style="font-size:1.3em">${escapeText(title)}</h1>\n` +
    list.map((f, i) => figureHtml(f, `tflens-fig-${i}`)).join('') +
    '</body>\n</html>\n'
  );
}

/**
 * Write the figures as one standalone HTML page (plotly.js inlined, no network), atomically:
 * the page is complete or the old file is untouched. Figures are checked before anything is written.
 */
export async function saveHtml(figs: Figure | Figure[], path: string, opts: { title?: string } = {}): Promise<void> {
  const page = figuresPage(figs, opts);
  await writeFileAtomic(path, page);
}
