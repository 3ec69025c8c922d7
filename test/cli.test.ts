// The tflens command line: `run` reproduces the HF references, `rank` equals the library, errors are one line.
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { main } from '../src/cli/main.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { writeNpy } from '../src/io/export.js';
import { loadModel } from '../src/model/index.js';
import { sinkScores } from '../src/analyses/sinks.js';
import { headScoresToCsv, headScoresToJson } from '../src/io/export.js';
import { taskProblem } from '../src/rank/index.js';
import { saeCircuitScores } from '../src/sae/discrete.js';
import { headPatchingScores } from '../src/circuits/patching.js';
import { attributionScores, pathPatchingScores } from '../src/circuits/path.js';
import { copyingScores } from '../src/analyses/weights/copying.js';
import { compositionScores } from '../src/analyses/weights/composition.js';
import { REF_DIR, loadReference, maskedRelErr } from './helpers/reference.js';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const write = process.stderr.write.bind(process.stderr);
  (process.stderr as any).write = (s: string) => ((err += s), true);
  try {
    const code = await main(args, (s) => (out += s));
    return { code, out, err };
  } finally {
    (process.stderr as any).write = write;
  }
}

describe('tflens CLI', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tflens-cli-'));

  it('run: saved activations and logits reproduce the HF references', async () => {
    for (const fam of ['llama', 'gpt2-tiny']) {
      const ref = await loadReference(fam);
      const tokensFile = path.join(tmp, `${fam}.json`);
      writeFileSync(tokensFile, JSON.stringify({ input_ids: await ref.input_ids.array(), attention_mask: await ref.attention_mask.array() }));
      const outFile = path.join(tmp, `${fam}.safetensors`);
      const r = await cli(['run', path.join(REF_DIR, fam), '--tokens', tokensFile, '--save', 'blocks.1.hook_resid_pre,blocks.0.attn.hook_pattern,logits', '--out', outFile]);
      assert.equal(r.code, 0, r.err);
      const got = await readSafetensors(outFile);
      assert.deepEqual(Object.keys(got).sort(), ['blocks.0.attn.hook_pattern', 'blocks.1.hook_resid_pre', 'logits']);
      const mask = ref.attention_mask as tf.Tensor2D;
      assert.ok((await maskedRelErr(got.logits, ref.logits, mask)).rel < 1e-4);
      assert.ok((await maskedRelErr(got['blocks.1.hook_resid_pre'], ref['hidden_states.1'], mask)).rel < 1e-4);
      assert.ok((await maskedRelErr(got['blocks.0.attn.hook_pattern'], ref['attentions.0'], mask, 2)).rel < 1e-4);
      tf.dispose([...Object.values(got), ...Object.values(ref)]);
    }
  });

  it('run: a list of rows and an int32 .npy give what the {input_ids, attention_mask} layout gives', async () => {
    const dir = path.join(REF_DIR, 'gpt2-tiny');
    const ids = [[5, 9, 13, 2], [7, 3, 8, 4]];
    const files = { json: path.join(tmp, 'ids.json'), list: path.join(tmp, 'ids-list.json'), npy: path.join(tmp, 'ids.npy') };
    writeFileSync(files.json, JSON.stringify({ input_ids: ids, attention_mask: [[1, 1, 1, 1], [1, 1, 1, 1]] }));
    writeFileSync(files.list, JSON.stringify(ids));
    await writeNpy(files.npy, new Int32Array(ids.flat()), [2, 4]);
    const saved: Record<string, number[]> = {};
    for (const [kind, file] of Object.entries(files)) {
      const outFile = path.join(tmp, `ids-${kind}.safetensors`);
      const r = await cli(['run', dir, '--tokens', file, '--save', 'blocks.0.hook_resid_post,logits', '--out', outFile]);
      assert.equal(r.code, 0, r.err);
      const got = await readSafetensors(outFile);
      saved[kind] = [...(await got['blocks.0.hook_resid_post'].data()), ...(await got.logits.data())];
      tf.dispose(Object.values(got));
    }
    assert.deepEqual(saved.list, saved.json);
    assert.deepEqual(saved.npy, saved.json);
  });

  it('info: the family, every hook point (each block pattern once), the weight processing that applies, the backend', async () => {
    for (const [dir, family, refused] of [
      [path.resolve('fixtures/models/induction-handmade'), 'gpt2', []],
      [path.join(REF_DIR, 'olmo2'), 'olmo2', ['foldLn', 'centerWritingWeights']],
      [path.join(REF_DIR, 'gemma2'), 'gemma2', ['centerWritingWeights', 'centerUnembed']],
    ] as const) {
      const r = await cli(['info', dir]);
      assert.equal(r.code, 0, r.err);
      const m = await loadModel(dir);
      const lines = r.out.split('\n');
      assert.match(lines.find((l) => l.startsWith('family'))!, new RegExp(`^family +${family} \\(config model_type "${m.cfg.architecture}", HF class ${m.cfg.hfArchitecture}\\)`));
      // expand the compact list back into names: blocks.L.x stands for every layer (or the layers it names)
      const start = lines.findIndex((l) => l.startsWith('hook points'));
      const end = lines.findIndex((l) => l.startsWith('weight processing'));
      assert.match(lines[start], new RegExp(`^hook points +${m.hookNames().length} `));
      const items = lines.slice(start + 1, end).join(' ').replace(/ \(L = /g, '(L=').trim().split(/\s+/);
      const expanded = new Map<string, boolean>();
      for (const item of items) {
        const [, name, star, only] = /^([^*(]+)(\*?)(?:\(L=([\d,]+)\))?$/.exec(item)!;
        const layers = only ? only.split(',').map(Number) : [...Array(m.cfg.n_layers).keys()];
        for (const n of name.startsWith('blocks.L.') ? layers.map((l) => name.replace('blocks.L.', `blocks.${l}.`)) : [name]) expanded.set(n, star === '*');
      }
      assert.deepEqual([...expanded.keys()].sort(), [...m.hookNames()].sort());
      const byDefault = m.cacheFilter(undefined);
      for (const [n, onRequest] of expanded) assert.equal(onRequest, !byDefault(n), n);
      assert.equal(items.length, new Set(items).size, 'each pattern once');
      for (const step of ['foldLn', 'centerWritingWeights', 'centerUnembed', 'foldValueBiases']) {
        const line = lines.find((l) => l.trim().startsWith(`${step} `))!;
        assert.match(line, (refused as readonly string[]).includes(step) ? /does not apply: \S/ : /applies \(exact\)/, `${family} ${step}`);
      }
      assert.match(lines.find((l) => l.startsWith('backend'))!, /^backend +tflens runs on (wasm|cpu|webgpu|node|node-gpu)/);
      m.dispose();
    }
  });

  it('rank --method sink: the CSV equals the library result, sorted by score', async () => {
    const toks = { input_ids: [[1, 5, 9, 13, 2, 7], [0, 0, 3, 8, 4, 4]], attention_mask: [[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]] };
    const tokensFile = path.join(tmp, 'rank.json');
    writeFileSync(tokensFile, JSON.stringify(toks));
    const outFile = path.join(tmp, 'sink.csv');
    const r = await cli(['rank', path.join(REF_DIR, 'gpt2-tiny'), '--method', 'sink', '--tokens', tokensFile, '--format', 'csv', '--out', outFile]);
    assert.equal(r.code, 0, r.err);
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const lib = await sinkScores(m, { tokens: toks.input_ids, attentionMask: toks.attention_mask });
    const csv = readFileSync(outFile, 'utf8');
    assert.equal(csv, headScoresToCsv({ ...lib.scores, model: lib.scores.model ?? path.join(REF_DIR, 'gpt2-tiny') }));
    const lines = csv.trim().split('\n');
    assert.match(lines[0], /^layer,head,score/);
    const scores = lines.slice(1).map((l) => Number(l.split(',')[2]));
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a));
    assert.equal(lines.length - 1, m.cfg.n_layers * m.cfg.n_heads);
    m.dispose();
    const j = await cli(['rank', path.join(REF_DIR, 'gpt2-tiny'), '--method', 'induction', '--tokens', tokensFile, '--format', 'json']);
    const doc = JSON.parse(j.out);
    assert.equal(doc.method, 'induction');
    assert.equal(doc.rows.length, 12);
    assert.ok('params' in doc && 'model' in doc);
  });

  it('rank --method sae-node|head-patching --task induction equal the library on the same seeded problem', async () => {
    const modelDir = path.join('fixtures', 'models', 'induction-handmade');
    const m = await loadModel(modelDir);
    const p = taskProblem(m, { task: 'induction', n: 8, seed: 3 });
    const lib = await saeCircuitScores(m, { tokens: p.clean, attentionMask: p.attentionMask }, { tokens: p.corrupted, attentionMask: p.attentionMask }, { epochs: 40, seed: 3, model: modelDir });
    const r = await cli(['rank', modelDir, '--method', 'sae-node', '--task', 'induction', '--n', '8', '--seed', '3', '--epochs', '40', '--format', 'json']);
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out);
    const want = JSON.parse(headScoresToJson(lib.node));
    assert.deepEqual(doc.rows, want.rows);
    const hp = await cli(['rank', modelDir, '--method', 'head-patching', '--task', 'induction', '--n', '8', '--seed', '3', '--format', 'json']);
    const libHp = await headPatchingScores(m, p);
    assert.deepEqual(JSON.parse(hp.out).rows, JSON.parse(headScoresToJson(libHp)).rows);
    // ground truth: the constructed induction head ranks first under head patching
    const top = JSON.parse(hp.out).rows[0];
    assert.deepEqual([top.layer, top.head], [1, 0]);
    // --rank-by absolute: the library's order by |score|, stated in the file
    const abs = await cli(['rank', modelDir, '--method', 'head-patching', '--task', 'induction', '--n', '8', '--seed', '3', '--format', 'json', '--rank-by', 'absolute']);
    assert.equal(abs.code, 0, abs.err);
    const absDoc = JSON.parse(abs.out);
    assert.equal(absDoc.rank_by, 'absolute');
    assert.equal(JSON.parse(hp.out).rank_by, 'signed');
    assert.deepEqual(absDoc.rows, JSON.parse(headScoresToJson(libHp, { rankBy: 'absolute' })).rows);
    const mags = absDoc.rows.map((row: { score: number }) => Math.abs(row.score));
    mags.slice(1).forEach((x: number, i: number) => assert.ok(x <= mags[i], `row ${i + 1}: |score| ${x} after ${mags[i]}`));
    const badBy = await cli(['rank', modelDir, '--method', 'head-patching', '--task', 'induction', '--n', '8', '--rank-by', 'size']);
    assert.equal(badBy.code, 2, badBy.err);
    assert.match(badBy.err, /ValueError: --rank-by: expected signed or absolute, found "?size"?/);
    m.dispose();
  });

  it('rank --method copying|composition-k (weights only) equal the library; --measure picks the copying variant', async () => {
    const modelDir = path.join('fixtures', 'models', 'induction-handmade');
    const m = await loadModel(modelDir);
    const [cop, share, comp] = [await copyingScores(m, { model: m.name }), await copyingScores(m, { model: m.name, measure: 'positive-share' }), await compositionScores(m, 'K')];
    m.dispose();
    for (const [args, lib] of [[[], cop], [['--measure', 'positive-share'], share]] as const) {
      const r = await cli(['rank', modelDir, '--method', 'copying', '--format', 'json', ...args]);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(JSON.parse(r.out).rows, JSON.parse(headScoresToJson({ ...lib, model: lib.model ?? modelDir })).rows);
    }
    const k = await cli(['rank', modelDir, '--method', 'composition-k', '--format', 'json']);
    assert.equal(k.code, 0, k.err);
    const rows = JSON.parse(k.out).rows as Array<Record<string, number>>;
    assert.equal(rows.length, comp.rows.length);
    rows.forEach((row, i) => assert.deepEqual(row, { layer: comp.rows[i].layer, head: comp.rows[i].head, srcLayer: comp.rows[i].srcLayer, srcHead: comp.rows[i].srcHead, score: comp.rows[i].score }));
    const bad = await cli(['rank', modelDir, '--method', 'copying', '--measure', 'bogus']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.err, /--measure/);
  });

  it('rank --method path|attribution --task ioi equal the library (paper % change by default, --score normalised), --corruption picks the ABC rule', async () => {
    const modelDir = path.join('fixtures', 'models', 'ioi');
    const m = await loadModel(modelDir);
    const args = { task: 'ioi', n: 6, seed: 2 } as const;
    const p = taskProblem(m, args);
    assert.notDeepEqual(taskProblem(m, { ...args, corruption: 'distinct' }).corrupted, p.corrupted);
    const rows = async (argv: string[]) => {
      const r = await cli(['rank', modelDir, ...argv, '--task', 'ioi', '--n', '6', '--seed', '2', '--format', 'json']);
      assert.equal(r.code, 0, r.err);
      return JSON.parse(r.out).rows;
    };
    assert.deepEqual(await rows(['--method', 'path']), JSON.parse(headScoresToJson(await pathPatchingScores(m, p))).rows);
    assert.deepEqual(await rows(['--method', 'path', '--score', 'normalised']), JSON.parse(headScoresToJson(await pathPatchingScores(m, p, { score: 'normalised' }))).rows);
    assert.deepEqual(await rows(['--method', 'attribution']), JSON.parse(headScoresToJson(await attributionScores(m, p))).rows);
    const bad = await cli(['rank', modelDir, '--method', 'path', '--task', 'ioi', '--corruption', 'other']);
    assert.match(bad.err, /ValueError: --corruption: expected redwood or distinct/);
    m.dispose();
  });

  it('bad input: one-line typed messages and a non-zero exit, nothing written', async () => {
    const bad = path.join(tmp, 'ragged.json');
    writeFileSync(bad, JSON.stringify({ input_ids: [[1, 2, 3], [1, 2]] }));
    const good = path.join(tmp, 'good.json');
    writeFileSync(good, JSON.stringify({ input_ids: [[1, 2, 3]] }));
    const outFile = path.join(tmp, 'never.safetensors');
    const cases: [string[], RegExp][] = [
      [['run', path.join(REF_DIR, 'llama'), '--tokens', bad, '--save', 'logits', '--out', outFile], /ShapeError: .*ragged\.json: input_ids: row 1: has 2 tokens, expected 3 like row 0/],
      [['run', path.join(REF_DIR, 'llama'), '--tokens', bad, '--save', 'blocks.9.hook_resid_pre', '--out', outFile], /ShapeError|ValueError/],
      [['run', path.join(REF_DIR, 'llama'), '--tokens', good, '--save', 'blocks.1.attn.hook_patern,logits', '--out', outFile], /^tflens: HookError: --save blocks\.1\.attn\.hook_patern: not a hook point of .*llama; did you mean blocks\.1\.attn\.hook_pattern(, |\?)/],
      [['run', path.join(REF_DIR, 'llama'), '--tokens', good, '--save', 'resid_pre', '--out', outFile], /HookError: --save resid_pre: .*did you mean blocks\.\d\.hook_resid_pre/],
      [['info', path.join(tmp, 'no-such-model')], /ResolveError: .*no-such-model/],
      [['rank', path.join(REF_DIR, 'llama'), '--method', 'nonsense'], /ValueError: --method: expected one of/],
      [['rank', path.join(REF_DIR, 'llama'), '--method', 'sink'], /give --prompts <file.txt> or --tokens <file.json>/],
    ];
    for (const [args, re] of cases) {
      const r = await cli(args);
      assert.notEqual(r.code, 0, args.join(' '));
      assert.match(r.err, re);
      assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
    }
    const ids = path.join(tmp, 'big.json');
    writeFileSync(ids, JSON.stringify({ input_ids: [[1, 2, 103]] }));
    const r = await cli(['run', path.join(REF_DIR, 'llama'), '--tokens', ids, '--save', 'logits', '--out', outFile]);
    assert.match(r.err, /input_ids: \[0\]\[2\]: expected a token id in \[0, 102\], found 103/);
    assert.ok(!existsSync(outFile));
  });

  it('the installed bin prints no stack trace on error', function () {
    if (!existsSync('dist/cli/main.js')) this.skip();
    const r = spawnSync(process.execPath, ['bin/tflens.js', 'info', path.join(tmp, 'missing')], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('tflens:'));
    assert.equal(lines.length, 1);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
