import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  headHeatmap,
  attentionPattern,
  attentionGrid,
  linePlot,
  tokenStrip,
  patchingHeatmap,
  bar,
  histogram,
  rocCurve,
  formatValue,
  dedupeLabels,
  tokenLabel,
  show,
  saveHtml,
  figuresPage,
  describeFigure,
  DIVERGING,
  SEQUENTIAL,
} from '../src/plot/index.js';
import type { Figure } from '../src/plot/index.js';
import { scriptSafe } from '../src/plot/html.js';
import { makeHeadScores } from '../src/results.js';
import { rocCurve as rocOf } from '../src/sae/metrics.js';
import { loadModel } from '../src/model/index.js';
import { ShapeError, ValueError } from '../src/errors.js';

const zw = /\u200b/g;

describe('plot: figure builders', () => {
  describe('headHeatmap', () => {
    it('hover text is "L<layer>.H<head>: value" with 2 decimals, title is the method', () => {
      const hs = makeHeadScores('induction', [
        [0.1, 0.25, 0.004],
        [0.83, 0.5, 1],
      ]);
      const fig = headHeatmap(hs);
      const t = fig.data[0];
      assert.equal(t.type, 'heatmap');
      assert.deepEqual(t.text, [
        ['L0.H0: 0.10', 'L0.H1: 0.25', 'L0.H2: 0.00'],
        ['L1.H0: 0.83', 'L1.H1: 0.50', 'L1.H2: 1.00'],
      ]);
      assert.equal(t.hovertemplate, '%{text}<extra></extra>');
      assert.deepEqual(t.x, [0, 1, 2]);
      assert.deepEqual(t.y, [0, 1]);
      assert.deepEqual(t.z, hs.scores);
      assert.equal(fig.layout.title?.text, 'induction');
      assert.equal(fig.layout.xaxis?.title?.text, 'Head');
      assert.equal(fig.layout.yaxis?.title?.text, 'Layer');
      assert.equal(fig.layout.yaxis?.autorange, 'reversed');
      // one-signed scores: sequential scale over the data range
      assert.equal(t.colorscale, SEQUENTIAL);
      assert.equal(t.zmin, 0.004);
      assert.equal(t.zmax, 1);
      assert.equal(t.zmid, undefined);
    });

    it('a 12x12 grid puts L9.H6 at row 9, column 6', () => {
      const scores = Array.from({ length: 12 }, (_, l) => Array.from({ length: 12 }, (_, h) => (l === 9 && h === 6 ? 0.8312 : 0)));
      const fig = headHeatmap(makeHeadScores('s', scores), { decimals: 3 });
      const text = fig.data[0].text as string[][];
      assert.equal(text[9][6], 'L9.H6: 0.831');
      assert.equal(text[0][0], 'L0.H0: 0.000');
    });

    it('scores of both signs get a diverging scale centred at 0, symmetric', () => {
      const fig = headHeatmap(makeHeadScores('head-patching', [[-0.2, 0.5], [0.1, -0.001]], {}, { model: 'gpt2' }));
      const t = fig.data[0];
      assert.equal(t.colorscale, DIVERGING);
      assert.equal(t.zmid, 0);
      assert.equal(t.zmin, -0.5);
      assert.equal(t.zmax, 0.5);
      assert.equal((t.text as string[][])[1][1], 'L1.H1: 0.00'); // no "-0.00"
      assert.equal((t.text as string[][])[0][0], 'L0.H0: -0.20');
      assert.equal(fig.layout.title?.text, 'head-patching (gpt2)');
    });

    it('showCI appends the interval to the hover text', () => {
      const hs = makeHeadScores('sink', [[0.5, 0.25]], {}, { ci: { lo: [[0.4, 0.1]], hi: [[0.61, 0.3]], level: 0.95, method: 'bootstrap' } });
      assert.deepEqual(headHeatmap(hs, { showCI: true }).data[0].text, [['L0.H0: 0.50 (95% CI 0.40 to 0.61)', 'L0.H1: 0.25 (95% CI 0.10 to 0.30)']]);
      assert.deepEqual(headHeatmap(hs).data[0].text, [['L0.H0: 0.50', 'L0.H1: 0.25']]);
      assert.throws(() => headHeatmap(makeHeadScores('x', [[1]]), { showCI: true }), ValueError);
      assert.throws(() => headHeatmap({ ...hs, ci: { ...hs.ci!, lo: [[0.4]] } }, { showCI: true }), ShapeError);
    });

    it('rejects a grid that does not match nLayers x nHeads, and NaN scores', () => {
      const hs = makeHeadScores('x', [[1, 2], [3, 4]]);
      assert.throws(() => headHeatmap({ ...hs, nHeads: 3 }), ShapeError);
      assert.throws(() => headHeatmap({ ...hs, scores: [[1, 2], [3]] }), ShapeError);
      assert.throws(() => headHeatmap({ ...hs, scores: [[1, NaN], [3, 4]] }), (e: unknown) => e instanceof ValueError && /\[0\]\[1\]/.test(e.message));
    });
  });

  describe('attentionPattern', () => {
    it('takes a q x k host matrix and labels both axes with tokens', () => {
      const fig = attentionPattern(
        [
          [1, 0, 0],
          [0.25, 0.75, 0],
          [0.2, 0.3, 0.5],
        ],
        ['<|endoftext|>', ' the', ' cat'],
      );
      const t = fig.data[0];
      assert.deepEqual(t.x, ['&lt;|endoftext|&gt;', ' the', ' cat']);
      assert.deepEqual(t.y, t.x);
      assert.equal((t.z as number[][])[1][1], 0.75);
      assert.equal((t.text as string[][])[2][1], 'q2  cat → k1  the: 0.30');
      assert.equal(fig.layout.xaxis?.type, 'category');
      assert.equal(fig.layout.yaxis?.type, 'category');
      assert.equal(fig.layout.xaxis?.title?.text, 'Key');
      assert.equal(fig.layout.yaxis?.title?.text, 'Query');
      assert.equal(t.zmin, 0);
      assert.equal(t.zmax, 1);
    });

    it("draws a shipped model's pattern read with await array(); a tensor itself is refused (no readback in builders)", async () => {
      const model = await loadModel('fixtures/models/induction-handmade');
      try {
        const toks = [0, 2, 3, 4, 2, 3];
        const { logits, cache } = await model.runWithCache([toks], { namesFilter: ['blocks.0.attn.hook_pattern'] });
        const head = tf.tidy(() => cache.get('blocks.0.attn.hook_pattern').squeeze([0]).gather(0)); // [q, k] of head 0.0
        const before = tf.memory().numTensors;
        assert.throws(() => attentionPattern(head as unknown as number[][], model.toStrTokens(toks)), ShapeError);
        assert.equal(tf.memory().numTensors, before);
        const z = (await head.array()) as number[][];
        tf.dispose([head, logits]);
        cache.dispose();
        const fig = attentionPattern(z, model.toStrTokens(toks));
        const drawn = fig.data[0].z as number[][];
        assert.deepEqual(drawn, z);
        // the previous-token head: row i peaks at key i - 1
        for (let i = 1; i < toks.length; i++) assert.equal(drawn[i].indexOf(Math.max(...drawn[i])), i - 1);
      } finally {
        model.dispose();
      }
    });

    it('repeated tokens keep their own rows and columns (invisible suffixes)', () => {
      const toks = ['A', 'B', 'A', 'B', 'A'];
      const z = toks.map((_, i) => toks.map((__, j) => (j <= i ? 1 / (i + 1) : 0)));
      const fig = attentionPattern(z, toks);
      const x = fig.data[0].x as string[];
      assert.equal(new Set(x).size, 5);
      assert.deepEqual(x.map((s) => s.replace(zw, '')), toks);
      assert.deepEqual(x, ['A', 'B', 'A\u200b', 'B\u200b', 'A\u200b\u200b']);
      // a label that already ends like a suffixed repeat still stays distinct
      assert.equal(new Set(dedupeLabels(['a', 'a\u200b', 'a'])).size, 3);
    });

    it('fewer queries than keys: rows are the last tokens', () => {
      const fig = attentionPattern([[0.5, 0.25, 0.25]], ['x', 'y', 'z']);
      assert.deepEqual(fig.data[0].y, ['z']);
      assert.equal((fig.data[0].text as string[][])[0][0], 'q2 z → k0 x: 0.50');
    });

    it('throws ShapeError for a wrong rank or a token count that does not match', () => {
      assert.throws(() => attentionPattern([[[1]]] as unknown as number[][], ['a']), (e: unknown) => e instanceof ValueError && /\[0\]\[0\]/.test(e.message));
      assert.throws(() => attentionPattern([[1, 0], [0.5, 0.5]], ['a', 'b', 'c']), (e: unknown) => e instanceof ShapeError && /tokens/.test(e.message) && /found 3/.test(e.message));
      assert.throws(() => attentionPattern([[1, 0], [0.5]], ['a', 'b']), ShapeError);
      assert.throws(() => attentionPattern([[1, 0], [0.5, 0.5], [0, 1]], ['a', 'b']), ShapeError);
      assert.throws(() => attentionPattern([], []), ShapeError);
    });

    it('tokenLabel makes whitespace and HTML visible', () => {
      assert.equal(tokenLabel('a\nb'), 'a\\nb');
      assert.equal(tokenLabel(''), '∅');
      assert.equal(tokenLabel('<b>&'), '&lt;b&gt;&amp;');
    });
  });

  describe('attentionGrid', () => {
    it('one trace per head, the first visible, a dropdown that shows exactly one', () => {
      const pats = [
        [[1, 0], [0.5, 0.5]],
        [[1, 0], [0.75, 0.25]],
        [[1, 0], [0, 1]],
      ];
      const fig = attentionGrid(pats, ['a', 'b'], { headNames: ['L1.H0', 'L1.H1', 'L1.H2'], title: 'L1' });
      assert.equal(fig.data.length, 3);
      assert.deepEqual(fig.data.map((t) => t.visible), [true, false, false]);
      assert.deepEqual(fig.data.map((t) => t.name), ['L1.H0', 'L1.H1', 'L1.H2']);
      assert.equal((fig.data[1].z as number[][])[1][0], 0.75);
      const menu = fig.layout.updatemenus![0];
      assert.deepEqual(menu.buttons.map((b) => b.label), ['L1.H0', 'L1.H1', 'L1.H2']);
      assert.deepEqual(menu.buttons[2].args[0], { visible: [false, false, true] });
      assert.deepEqual(menu.buttons[2].args[1], { 'title.text': 'L1: L1.H2' });
      assert.equal(fig.layout.title?.text, 'L1: L1.H0');
    });

    it('throws ShapeError for a 2-d array, wrong headNames or token counts', () => {
      assert.throws(() => attentionGrid([[1, 0], [0.5, 0.5]] as unknown as number[][][], ['a', 'b']), (e: unknown) => e instanceof ShapeError && /patterns\[0\]\[0\]/.test(e.message));
      const z = [[[1, 0], [0.5, 0.5]]];
      assert.throws(() => attentionGrid(z, ['a', 'b'], { headNames: ['x', 'y'] }), ShapeError);
      assert.throws(() => attentionGrid(z, ['a']), ShapeError);
      assert.throws(() => attentionGrid([[[1, 0], [0.5, 0.5]], [[1]]], ['a', 'b']), ShapeError);
    });
  });

  describe('linePlot, bar, histogram', () => {
    it('series get default x = 0..n-1, names and axis titles', () => {
      const fig = linePlot(
        [
          { name: 'clean', y: [0.1, 0.2, 0.4] },
          { name: 'corrupt', x: [2, 4, 6], y: [1, 2, 3] },
        ],
        { title: 'logit diff', xTitle: 'Layer', yTitle: 'Logit diff' },
      );
      assert.deepEqual(fig.data[0].x, [0, 1, 2]);
      assert.deepEqual(fig.data[1].x, [2, 4, 6]);
      assert.deepEqual(fig.data.map((t) => t.name), ['clean', 'corrupt']);
      assert.equal(fig.layout.xaxis?.title?.text, 'Layer');
      assert.equal(fig.layout.yaxis?.title?.text, 'Logit diff');
      assert.equal(fig.layout.title?.text, 'logit diff');
      assert.equal(fig.layout.showlegend, true);
    });

    it('rejects x/y of different lengths, no series and non-finite values', () => {
      const o = { title: '', xTitle: '', yTitle: '' };
      assert.throws(() => linePlot([{ name: 's', x: [0, 1], y: [1, 2, 3] }], o), ShapeError);
      assert.throws(() => linePlot([], o), ShapeError);
      assert.throws(() => linePlot([{ name: 's', y: [1, Infinity] }], o), ValueError);
    });

    it('bar and histogram carry the values', () => {
      const b = bar(['x', 'x', 'y'], [1, 2.5, -1], { title: 'b' });
      assert.deepEqual(b.data[0].y, [1, 2.5, -1]);
      assert.deepEqual((b.data[0].x as string[]).map((s) => s.replace(zw, '')), ['x', 'x', 'y']);
      assert.deepEqual(b.data[0].text, ['x: 1.000', 'x: 2.500', 'y: -1.000']);
      assert.throws(() => bar(['a'], [1, 2]), ShapeError);
      const h = histogram([1, 2, 2, 3], { nbins: 3 });
      assert.deepEqual(h.data[0].x, [1, 2, 2, 3]);
      assert.equal(h.data[0].nbinsx, 3);
      assert.throws(() => histogram([]), ShapeError);
    });
  });

  describe('rocCurve (draws the points of tfl.sae.rocCurve)', () => {
    it('draws the given points with the chance diagonal and the AUC in the legend', () => {
      const r = rocOf([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]);
      const fig = rocCurve(r, { name: 'probe' });
      assert.deepEqual(fig.data[0].x, [0, 0, 0.5, 0.5, 1]);
      assert.deepEqual(fig.data[0].y, [0, 0.5, 0.5, 1, 1]);
      assert.equal(fig.data[0].name, `probe (AUC = ${formatValue(0.75, 3)})`);
      assert.deepEqual(fig.data[1].x, [0, 1]);
    });

    it('bad points: typed errors', () => {
      assert.throws(() => rocCurve({ fpr: [0, 1], tpr: [0], auc: 0.5 }), ShapeError);
      assert.throws(() => rocCurve({ fpr: [0, 1], tpr: [0, NaN], auc: 0.5 }), ValueError);
      assert.throws(() => rocCurve({ fpr: [0, 1], tpr: [0, 1], auc: NaN }), ValueError);
    });
  });

  describe('tokenStrip', () => {
    it('wraps tokens into rows, writes each token on its cell', () => {
      const fig = tokenStrip(['The', ' cat', ' sat'], [0.5, -1, 2], { perRow: 2, title: 'loss' });
      const t = fig.data[0];
      assert.deepEqual(t.z, [[0.5, -1], [2, null]]);
      assert.deepEqual(t.text, [['0 The: 0.50', '1  cat: -1.00'], ['2  sat: 2.00', '']]);
      const ann = fig.layout.annotations!;
      assert.deepEqual(ann.map((a) => [a.x, a.y, a.text]), [[0, 0, 'The'], [1, 0, ' cat'], [0, 1, ' sat']]);
      // text colour follows the cell: 0.5 (near white) and -1 (mid blue on a +-2 scale) black, 2 (dark red) white
      assert.deepEqual(ann.map((a) => a.font?.color), ['#000', '#000', '#fff']);
      assert.equal(t.zmid, 0);
      assert.equal(t.zmin, -2);
      assert.equal(t.zmax, 2);
    });

    it('throws ShapeError when tokens and values differ in length', () => {
      assert.throws(() => tokenStrip(['a', 'b'], [1]), ShapeError);
      assert.throws(() => tokenStrip([], []), ShapeError);
      assert.throws(() => tokenStrip(['a'], [1], { perRow: 0 }), ValueError);
    });
  });

  describe('patchingHeatmap', () => {
    it('per (layer, position): token columns, layer rows, hover names both', () => {
      const v = [
        [0.9, -0.1, 0.0],
        [0.2, 0.7, -0.3],
      ];
      const fig = patchingHeatmap(v, { rowLabels: ['0', '1'], colLabels: ['When', ' Mary', ' Mary'], title: 'resid_pre' });
      const t = fig.data[0];
      assert.deepEqual((t.x as string[]).map((s) => s.replace(zw, '')), ['When', ' Mary', ' Mary']);
      assert.equal(new Set(t.x as string[]).size, 3);
      assert.deepEqual(t.y, ['0', '1']);
      assert.equal((t.text as string[][])[1][2], 'Layer 1, Position 2  Mary: -0.30');
      assert.equal(t.zmid, 0);
      assert.equal(t.zmax, 0.9);
      assert.equal(fig.layout.title?.text, 'resid_pre');
    });

    it('per (layer, head) with axis titles; wrong label counts throw', () => {
      const fig = patchingHeatmap([[1, 2], [3, 4]], { xTitle: 'Head', colLabels: ['0', '1'] });
      assert.equal(fig.layout.xaxis?.title?.text, 'Head');
      assert.equal((fig.data[0].text as string[][])[0][1], 'Layer 0, Head 1 1: 2.00');
      assert.throws(() => patchingHeatmap([[1, 2]], { rowLabels: ['a', 'b'] }), ShapeError);
      assert.throws(() => patchingHeatmap([[1, 2]], { colLabels: ['a'] }), ShapeError);
    });
  });
});

describe('plot: show and saveHtml', () => {
  const fig = (): Figure => headHeatmap(makeHeadScores('sink', [[0.1, 0.9]]));

  it('show() outside tslab prints a one-line summary', () => {
    const lines: string[] = [];
    const orig = console.log;
    console.log = (s: string) => lines.push(s);
    try {
      show([fig(), linePlot([{ name: 'a', y: [1, 2, 3] }], { title: 'T', xTitle: 'x', yTitle: 'y' })]);
    } finally {
      console.log = orig;
    }
    assert.deepEqual(lines, ['[tflens figure "sink": heatmap 1x2]', '[tflens figure "T": scatter (3 points)]']);
    assert.equal(describeFigure(bar(['a'], [1])), '[tflens figure: bar (1 points)]');
  });

  it('show() in a tslab kernel inlines plotly.js once, then only figures', () => {
    // Load the real tslab modules the kernel uses and give them a display sink, as the kernel does per cell.
    const req = createRequire(import.meta.url);
    const jupyter = req('tslab/dist/jupyter.js') as { lastWriteDisplayData: unknown };
    const outputs: Array<{ html: string; id: unknown; update: boolean }> = [];
    jupyter.lastWriteDisplayData = (msg: { data: Record<string, string>; transient: { display_id?: string } }, update: boolean) =>
      outputs.push({ html: msg.data['text/html'], id: msg.transient.display_id, update });
    try {
      show(fig());
      show([fig(), fig()]);
    } finally {
      jupyter.lastWriteDisplayData = null;
    }
    assert.equal(outputs.length, 2);
    assert.ok(outputs[0].html.includes('window.Plotly'));
    assert.ok(outputs[0].html.length > 1_000_000, 'first output carries plotly.js');
    assert.ok(outputs[1].html.length < 100_000, 'later outputs reuse window.Plotly');
    assert.equal((outputs[1].html.match(/class="tflens-plot"/g) ?? []).length, 2);
    assert.ok(outputs[1].html.includes('"L0.H1: 0.90"'));
    const ids = [...outputs.map((o) => o.html).join('').matchAll(/<div id="([^"]+)"/g)].map((m) => m[1]);
    assert.equal(new Set(ids).size, 3);
  });

  it('saveHtml writes one standalone page: plotly inlined, no network, one div per figure', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-plot-'));
    const file = path.join(dir, 'figs.html');
    const figs = [fig(), attentionPattern([[1, 0], [0.5, 0.5]], ['<a>', '</script>'])];
    await saveHtml(figs, file, { title: 'Two <figures>' });
    const html = await fsp.readFile(file, 'utf8');
    assert.ok(html.startsWith('<!DOCTYPE html>'));
    assert.ok(html.includes('<title>Two &lt;figures&gt;</title>'));
    assert.equal((html.match(/class="tflens-plot"/g) ?? []).length, 2);
    // 1 library script + 2 figure scripts, each closed once: no "</script" leaks from the data or the bundle
    assert.equal((html.match(/<script/g) ?? []).length, 3);
    assert.equal((html.match(/<\/script>/g) ?? []).length, 3);
    assert.ok(!/<script[^>]*\bsrc=/.test(html), 'no external scripts');
    assert.ok(html.includes('window.Plotly = Plotly') || /window\.Plotly\s*=/.test(html));
    assert.deepEqual(await fsp.readdir(dir), ['figs.html']);
    assert.equal(html, figuresPage(figs, { title: 'Two <figures>' }), 'the page is deterministic');
    await fsp.rm(dir, { recursive: true });
  });

  it('scriptSafe removes "</script" and "<!--" without changing what strings, templates and regexes mean', () => {
    const src = "var a = '</script><!--x'; var b = `</SCRIPT>`; var c = /<!--/u; var d = /<\\/script>/;";
    const safe = scriptSafe(src);
    assert.ok(!/<\/script|<!--/i.test(safe));
    const run = (code: string) => new Function(`${code} return [a, b, c.test('<!--'), d.test('</script>')];`)();
    assert.deepEqual(run(safe), run(src));
    assert.deepEqual(run(safe), ['</script><!--x', '</SCRIPT>', true, true]);
  });

  it('saveHtml with a bad figure throws before writing anything', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-plot-'));
    const file = path.join(dir, 'bad.html');
    await assert.rejects(saveHtml([fig(), { data: 'x' } as unknown as Figure], file), ShapeError);
    await assert.rejects(saveHtml([], file), ShapeError);
    assert.deepEqual(await fsp.readdir(dir), []);
    await fsp.rm(dir, { recursive: true });
  });
});
