/**
 * Figures must really draw in a browser, offline. Opens, in headless Chromium (/usr/bin/chromium or
 * $CHROMIUM), a page made by saveHtml and every HTML report in reports/ (written by `npm run
 * notebooks`), and checks that each tflens figure became a plotly SVG holding data marks with real
 * geometry, and that no code or output line runs off a report's page. No network: every request other
 * than file:// and data: is refused and fails the test.
 * Skipped, with a message, when Chromium is not installed.
 */
import { strict as assert } from 'node:assert';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  headHeatmap,
  attentionGrid,
  linePlot,
  tokenStrip,
  bar,
  patchingHeatmap,
  saveHtml,
  figureHtml,
  plotlyScriptTag,
} from '../src/plot/index.js';
import { makeHeadScores } from '../src/results.js';
import { CHROMIUM, CHROMIUM_ARGS, FIGURE_CHECKS_JS, assertDrawn, figuresSettledJs, type FigureCheck } from './helpers/figures.js';

const REPORTS = path.resolve(process.env.REPORTS ?? 'reports');

type Browser = import('playwright-core').Browser;
type Page = import('playwright-core').Page;

interface PageCheck {
  figs: FigureCheck[];
  errors: string[];
  external: string[];
  /** Text blocks (code, output) wider than their box, and whether the page scrolls sideways. */
  overflowing: string[];
  pageWidth: number;
}

/** Page source: the start of every <pre> wider than its box (a long line that neither wraps nor fits). */
const OVERFLOWING_PRE_JS = `Array.from(document.querySelectorAll('pre'))
  .filter((p) => p.scrollWidth > p.clientWidth + 1)
  .map((p) => (p.textContent || '').slice(0, 80))`;

async function openAndCheck(browser: Browser, file: string, screenshot?: string, minFigures = 0): Promise<PageCheck> {
  const page: Page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  const external: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
    external.push(url);
    return route.abort();
  });
  try {
    await page.goto(pathToFileURL(file).href, { waitUntil: 'load', timeout: 60000 });
    // every tflens figure div holds a plotly SVG (or gave up with a message)
    await page.waitForFunction(figuresSettledJs(minFigures), undefined, { timeout: 60000 });
    const figs = (await page.evaluate(FIGURE_CHECKS_JS)) as FigureCheck[];
    const overflowing = (await page.evaluate(OVERFLOWING_PRE_JS)) as string[];
    const pageWidth = (await page.evaluate('document.documentElement.scrollWidth')) as number;
    if (screenshot) {
      const first = page.locator('div.tflens-plot').first();
      await first.screenshot({ path: screenshot });
    }
    return { figs, errors, external, overflowing, pageWidth };
  } finally {
    await page.close();
  }
}

describe('browser: figures render in headless Chromium', function () {
  this.timeout(180000);
  let browser: Browser | null = null;
  let chromium: typeof import('playwright-core').chromium;

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      console.log(`      (skipped: no Chromium at ${CHROMIUM}; install the Debian package "chromium" or set CHROMIUM=/path)`);
      this.skip();
    }
    ({ chromium } = await import('playwright-core'));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
    });
  });

  after(async () => {
    await browser?.close();
  });

  it('a saveHtml page: heatmaps, a head dropdown, lines, a token strip and bars all draw', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-browser-'));
    const file = path.join(dir, 'figures.html');
    const scores = Array.from({ length: 12 }, (_, l) => Array.from({ length: 12 }, (_, h) => Math.sin(l * 12 + h)));
    const toks = ['<|endoftext|>', 'When', ' Mary', ' and', ' John', ' went', ' Mary'];
    const causal = (k: number) => toks.map((_, q) => toks.map((__, j) => (j <= q ? (j === 0 ? k : 1 - k) / (j === 0 ? 1 : q || 1) : 0)));
    await saveHtml(
      [
        headHeatmap(makeHeadScores('sin test', scores)),
        attentionGrid([causal(1), causal(0.5)], toks, { headNames: ['L0.H0', 'L0.H1'] }),
        linePlot([{ name: 'a', y: [0, 1, 4, 9] }, { name: 'b', y: [1, 2, 3, 4] }], { title: 'lines', xTitle: 'layer', yTitle: 'y' }),
        tokenStrip(toks, [0.1, -0.5, 2, 0.3, 1.2, -1, 0], { title: 'per-token loss' }),
        bar(['x', 'y', 'z'], [3, -1, 2], { title: 'bars' }),
        patchingHeatmap([[0.5, -0.25], [1, 0]], { colLabels: [' Mary', ' Mary'] }),
      ],
      file,
      { title: 'browser test' },
    );
    await fsp.mkdir(REPORTS, { recursive: true });
    const shot = path.join(REPORTS, 'browser-figure.png');
    const { figs, errors, external } = await openAndCheck(browser!, file, shot, 6);
    assert.deepEqual(errors, []);
    assert.deepEqual(external, []);
    assert.equal(figs.length, 6);
    figs.forEach((f) => assertDrawn(f, 'saveHtml page'));
    assert.equal(figs[0].heatmapImages, 1);
    assert.equal(figs[1].heatmapImages, 1, 'only the selected head is drawn');
    assert.equal(figs[2].lines, 2);
    assert.equal(figs[2].points, 8);
    assert.equal(figs[3].annotations, 7, 'one token label per cell');
    assert.equal(figs[4].bars, 3);
    assert.ok((await fsp.stat(shot)).size > 5000, 'screenshot written');
    await fsp.rm(dir, { recursive: true });
  });

  it('a notebook output inserted detached and attached later (as JupyterLab does) draws; without plotly.js it says so', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-browser-'));
    const fragment = figureHtml(headHeatmap(makeHeadScores('late', [[1, 2], [3, 4]])), 'late-fig');
    const js = JSON.stringify(fragment).replace(/</g, '\\u003c');
    // innerHTML into a detached host, scripts re-created there (innerHTML alone never runs them), host attached 300 ms later
    const lab =
      '<!DOCTYPE html><html><head><meta charset="utf-8">' + plotlyScriptTag() + '</head><body><script>' +
      `window.addEventListener('load', function () {
         var host = document.createElement('div');
         host.innerHTML = ${js};
         Array.prototype.slice.call(host.querySelectorAll('script')).forEach(function (old) {
           var s = document.createElement('script'); s.textContent = old.textContent; old.parentNode.replaceChild(s, old);
         });
         setTimeout(function () { document.body.appendChild(host); }, 300);
       });` +
      '</script></body></html>';
    await fsp.writeFile(path.join(dir, 'lab.html'), lab);
    const late = await openAndCheck(browser!, path.join(dir, 'lab.html'), undefined, 1);
    assert.deepEqual(late.errors, []);
    assert.equal(late.figs.length, 1);
    assertDrawn(late.figs[0], 'late attachment');
    assert.ok(late.figs[0].width > 500, `full width, found ${late.figs[0].width}`);
    // a figure whose page lost plotly.js (browser reloaded while the kernel ran on) shows a hint, no error
    await fsp.writeFile(path.join(dir, 'nolib.html'), `<!DOCTYPE html><html><body>${fragment}</body></html>`);
    const bare = await openAndCheck(browser!, path.join(dir, 'nolib.html'), undefined, 1);
    assert.deepEqual(bare.errors, []);
    assert.equal(bare.figs[0].svgs, 0);
    assert.match(bare.figs[0].text, /plotly\.js is not loaded in this page: run tfl\.loadPlotly\(\)/);
    await fsp.rm(dir, { recursive: true });
  });

  it('every HTML report from `npm run notebooks` in reports/ draws its figures', async function () {
    const reports = existsSync(REPORTS) ? (await fsp.readdir(REPORTS)).filter((f) => f.endsWith('.html')).sort() : [];
    if (reports.length === 0) {
      console.log(`      (skipped: no HTML reports in ${REPORTS}; run 'npm run notebooks' first)`);
      this.skip();
    }
    let total = 0;
    for (const name of reports) {
      const { figs, errors, external, overflowing, pageWidth } = await openAndCheck(browser!, path.join(REPORTS, name));
      assert.deepEqual(errors, [], `${name}: page errors`);
      // long code and output lines wrap (the report style of scripts/nb-execute.py): nothing runs off the page
      assert.deepEqual(overflowing, [], `${name}: text wider than its box`);
      assert.ok(pageWidth <= 1280, `${name}: the page is ${pageWidth} px wide in a 1280 px window`);
      figs.forEach((f) => assertDrawn(f, name));
      total += figs.length;
      // Requests off file:// are refused, as offline. Only nbconvert's own template assets (require.js,
      // MathJax: file:// on Debian, a CDN with pip's nbconvert) may be asked for; figures never are.
      const other = external.filter((u) => !/require(\.min)?\.js|mathjax/i.test(u));
      assert.deepEqual(other, [], `${name}: network requests`);
    }
    assert.ok(total > 0, `no tflens figures in ${reports.join(', ')}`);
  });
});
