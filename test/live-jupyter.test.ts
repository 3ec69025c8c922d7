/**
 * Notebook 01 live, as a researcher sees it: starts Jupyter Notebook (scripts/notebook-server.sh, the
 * tslab kernel) on a loopback port with a token, opens a fresh copy of notebooks/01-quickstart.ipynb
 * in headless Chromium (playwright-core, a fresh profile), runs every cell through the page's menu
 * (Cell > Run All), waits until all have run, and checks that the plotly figures drew in the page and
 * that the head selector of an attention figure switches heads. Keeps a screenshot in
 * reports/live-01-quickstart.png. Synchronous readback is forbidden in the kernel, as in CI.
 *
 * Not part of `npm test` (it needs Jupyter and Chromium): .ci/run runs it after the notebooks, with
 * test/browser.test.ts. Skipped, with a message, when Chromium or Jupyter is missing. Every wait is
 * bounded; the server and its kernels are stopped at the end, also on failure.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS, FIGURE_CHECKS_JS, assertDrawn, figuresSettledJs, type FigureCheck } from './helpers/figures.js';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const NOTEBOOK = '01-quickstart.ipynb';
const REPORTS = path.resolve(process.env.REPORTS ?? path.join(ROOT, 'reports'));
const SHOT = path.join(REPORTS, 'live-01-quickstart.png');
/** Figures notebook 01 draws: two attention grids, the logit lens, the loss lines, two head heatmaps. */
const FIGURES = 6;

type Page = import('playwright-core').Page;
type BrowserContext = import('playwright-core').BrowserContext;

/** A free loopback port (the OS picks one; the tiny race with another process is acceptable in a test). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null>, server?: ChildProcess): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (server && server.exitCode !== null) throw new Error(`${what}: the notebook server exited (${server.exitCode})`);
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Run-all progress in the classic Notebook page (page source: a string, see helpers/figures.ts). */
const RUN_STATE_JS = `(() => {
  const cells = Jupyter.notebook.get_cells().filter((c) => c.cell_type === 'code');
  return {
    total: cells.length,
    done: cells.filter((c) => typeof c.input_prompt_number === 'number').length,
    running: cells.filter((c) => c.input_prompt_number === '*').length,
    idle: !!document.querySelector('#kernel_indicator_icon.kernel_idle_icon'),
    errors: Array.from(document.querySelectorAll('.output_error, .output_stderr')).map((e) => (e.textContent || '').slice(0, 300)),
  };
})()`;

interface RunState {
  total: number;
  done: number;
  running: number;
  idle: boolean;
  errors: string[];
}

/** The first attention figure's visible trace, title, dropdown label and drawn image (page source). */
const HEAD_STATE_JS = `(() => {
  const d = document.querySelector('div.tflens-plot');
  const img = d.querySelector('g.hm image');
  return {
    visible: d.data.map((t) => t.visible === true),
    title: (d.querySelector('.gtitle') || {}).textContent || '',
    header: (d.querySelector('g.updatemenu-header-group') || {}).textContent || '',
    image: img ? img.getAttribute('href') || img.getAttribute('xlink:href') || '' : '',
  };
})()`;

interface HeadState {
  visible: boolean[];
  title: string;
  header: string;
  image: string;
}

describe('live Jupyter: notebook 01 in headless Chromium', function () {
  this.timeout(600000);
  let server: ChildProcess | null = null;
  let serverLog = '';
  let context: BrowserContext | null = null;
  let page: Page | null = null;
  let profile = '';
  let work = '';
  let base = '';

  before(async function () {
    const jupyter = spawnSync('jupyter', ['notebook', '--version'], { encoding: 'utf8' });
    if (!existsSync(CHROMIUM) || jupyter.status !== 0) {
      console.log(`      (skipped: needs Chromium at ${CHROMIUM} and Jupyter Notebook: apt-get install chromium jupyter-notebook)`);
      this.skip();
    }
    // A fresh copy of the notebook, served from a folder inside the checkout, so that the notebook's
    // relative paths (../fixtures, ../reports) and `import 'tflens'` resolve as in notebooks/; Jupyter's
    // autosave writes into the copy, never into notebooks/.
    mkdirSync(path.join(ROOT, '.tflens-tmp'), { recursive: true });
    work = mkdtempSync(path.join(ROOT, '.tflens-tmp', 'live-'));
    mkdirSync(path.join(work, 'notebooks'));
    mkdirSync(REPORTS, { recursive: true });
    symlinkSync(path.join(ROOT, 'fixtures'), path.join(work, 'fixtures'));
    symlinkSync(REPORTS, path.join(work, 'reports'));
    copyFileSync(path.join(ROOT, 'notebooks', NOTEBOOK), path.join(work, 'notebooks', NOTEBOOK));
    const nb = JSON.parse(readFileSync(path.join(work, 'notebooks', NOTEBOOK), 'utf8')) as { cells: { outputs?: unknown[] }[] };
    assert.ok(nb.cells.every((c) => !c.outputs?.length), 'the committed notebook holds no outputs');

    const port = await freePort();
    const token = randomBytes(16).toString('hex');
    base = `http://127.0.0.1:${port}`;
    server = spawn('bash', [path.join(ROOT, 'scripts/notebook-server.sh'), `--NotebookApp.token=${token}`, '--port-retries=0'], {
      cwd: ROOT,
      detached: true, // its own process group: the server and its kernels are stopped together
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, HOST: '127.0.0.1', PORT: String(port), NOTEBOOK_DIR: path.join(work, 'notebooks'), TFLENS_FORBID_SYNC_READBACK: '1' },
    });
    const keep = (b: Buffer) => void (serverLog = (serverLog + b.toString()).slice(-20000));
    server.stdout!.on('data', keep);
    server.stderr!.on('data', keep);
    await waitFor('the notebook server answers', 240000, async () => {
      const r = await fetch(`${base}/api/kernelspecs?token=${token}`);
      const specs = r.ok ? ((await r.json()) as { kernelspecs: Record<string, unknown> }) : null;
      return specs && 'tslab' in specs.kernelspecs ? true : null;
    }, server);

    const { chromium } = await import('playwright-core');
    profile = mkdtempSync(path.join(os.tmpdir(), 'tflens-live-profile-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1280, height: 1000 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    const url = `${base}/notebooks/${NOTEBOOK}?token=${token}`;
    await page.goto(url, { waitUntil: 'load', timeout: 60000 });
    // the tslab kernel started for the page and is idle
    await page.waitForFunction(
      `!!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel && Jupyter.notebook.kernel.is_connected()
         && Jupyter.notebook.kernel.name === 'tslab' && document.querySelector('#kernel_indicator_icon.kernel_idle_icon'))`,
      undefined,
      { timeout: 120000 },
    );
  });

  after(async function () {
    this.timeout(60000);
    await context?.close().catch(() => undefined);
    if (server?.pid && server.exitCode === null) {
      const exited = new Promise<void>((r) => server!.once('exit', () => r()));
      const group = -server.pid;
      process.kill(group, 'SIGTERM'); // Jupyter shuts its kernels down on SIGTERM; they share its group anyway
      const killed = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 15000))]);
      if (!killed) {
        try {
          process.kill(group, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    if (profile) rmSync(profile, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs every cell through the page (Cell > Run All) with no error, and the figures draw live', async () => {
    const p = page!;
    await p.click('#celllink');
    await p.click('#run_all_cells > a');
    const state = await waitFor('every cell ran', 300000, async () => {
      const s = (await p.evaluate(RUN_STATE_JS)) as RunState;
      if (s.errors.length) return s; // stop at the first error, reported below
      return s.done === s.total && s.running === 0 && s.idle ? s : null;
    });
    assert.deepEqual(state.errors, [], `cell errors (server log tail: ${serverLog.slice(-2000)})`);
    assert.equal(state.done, state.total);
    const out = (await p.evaluate(`Array.from(document.querySelectorAll('.output_stdout')).map((e) => e.textContent).join('\\n')`)) as string;
    assert.match(out, /^tflens runs on \w+/m, 'the first output is the backend line');
    assert.match(out, /tensors left behind by this notebook: 0/);
    await p.waitForFunction(figuresSettledJs(FIGURES), undefined, { timeout: 60000 });
    const figs = (await p.evaluate(FIGURE_CHECKS_JS)) as FigureCheck[];
    assert.equal(figs.length, FIGURES, 'figures in the page');
    figs.forEach((f) => assertDrawn(f, 'live notebook 01'));
    assert.ok(figs.every((f) => f.svgs >= 1 && !/not loaded/.test(f.text)), 'plotly.js was inlined by the first figure');
  });

  it('the head selector of the first attention figure switches heads (the drawn pattern changes)', async () => {
    const p = page!;
    const fig = p.locator('div.tflens-plot').first();
    await fig.scrollIntoViewIfNeeded();
    const before = (await p.evaluate(HEAD_STATE_JS)) as HeadState;
    assert.deepEqual(before.visible, [true, false]);
    assert.match(before.title, /layer 0 attention: 0\.0/);
    await fig.locator('g.updatemenu-header-group').click();
    const labels = await fig.locator('g.updatemenu-dropdown-button').allTextContents();
    assert.deepEqual(labels, ['0.0', '0.1']);
    await fig.locator('g.updatemenu-dropdown-button', { hasText: '0.1' }).click();
    await p.waitForFunction(`document.querySelector('div.tflens-plot').data[1].visible === true`, undefined, { timeout: 10000 });
    const after = (await p.evaluate(HEAD_STATE_JS)) as HeadState;
    assert.deepEqual(after.visible, [false, true]);
    assert.match(after.title, /layer 0 attention: 0\.1/);
    assert.match(after.header, /^0\.1/);
    assert.ok(after.image.startsWith('data:image') && after.image !== before.image, 'another pattern is drawn');
    // the screenshot: the cell's code and the switched figure
    await p.setViewportSize({ width: 1280, height: 1500 });
    await p.evaluate(`(() => {
      const i = Jupyter.notebook.get_cells().findIndex((c) => c.element[0].querySelector('div.tflens-plot'));
      Jupyter.notebook.scroll_to_cell(i, 0);
    })()`);
    await p.waitForTimeout(500);
    await p.screenshot({ path: SHOT });
    assert.ok(readFileSync(SHOT).length > 20000, 'screenshot written');
  });
});
