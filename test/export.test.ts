import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { headScoresToCsv, headScoresToJson, parseNpy, readNpy, readNpyTensor, saveHeadScores, saveJson, toCsv, writeFileAtomic, writeNpy } from '../src/io/export.js';
import { SweepStore, runResumable } from '../src/io/checkpoint.js';
import { rng } from '../src/util/random.js';
import { makeHeadScores } from '../src/results.js';
import { removeStaleTempFiles, tempFileWriter, tempPathFor } from '../src/io/atomic.js';
import { ConfigError, FormatError, ResolveError, ShapeError, ValueError } from '../src/errors.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const refDir = path.join(here, 'corpus', 'reference');

/** Minimal RFC 4180 reader, written independently of toCsv, to check what a CSV consumer sees. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), (i += 2);
      else if (c === '"') (quoted = false), i++;
      else (cell += c), i++;
    } else if (c === '"') (quoted = true), i++;
    else if (c === ',') row.push(cell), (cell = ''), i++;
    else if (c === '\n') row.push(cell), rows.push(row), (row = []), (cell = ''), i++;
    else (cell += c), i++;
  }
  if (cell !== '' || row.length) row.push(cell), rows.push(row);
  return rows;
}

describe('io/export', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-export-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  describe('writeFileAtomic', () => {
    it('creates parent folders and writes strings, bytes and chunk iterables', async () => {
      const f = path.join(dir, 'a', 'b', 'c.txt');
      await writeFileAtomic(f, 'hello');
      assert.equal(await fsp.readFile(f, 'utf8'), 'hello');
      await writeFileAtomic(f, new Uint8Array([104, 105]));
      assert.equal(await fsp.readFile(f, 'utf8'), 'hi');
      await writeFileAtomic(f, ['x', new Uint8Array([121]), 'z']);
      assert.equal(await fsp.readFile(f, 'utf8'), 'xyz');
      async function* gen() {
        yield 'as';
        yield 'ync';
      }
      await writeFileAtomic(f, gen());
      assert.equal(await fsp.readFile(f, 'utf8'), 'async');
    });

    it('concurrent writers: the file ends up exactly one of the versions, never a mix', async () => {
      const f = path.join(dir, 'race.txt');
      const versions = Array.from({ length: 16 }, (_, i) => String(i).repeat(20000 + i));
      await Promise.all(versions.map((v) => writeFileAtomic(f, v)));
      const got = await fsp.readFile(f, 'utf8');
      assert.ok(versions.includes(got));
      assert.deepEqual((await fsp.readdir(dir)).filter((n) => n.startsWith('.race.txt')), []);
    });

    it('a failure part way keeps the old file intact and leaves no temp file', async () => {
      const f = path.join(dir, 'keep.txt');
      await writeFileAtomic(f, 'old content');
      async function* failing() {
        yield 'new ';
        yield 'partial ';
        throw new Error('disk on fire');
      }
      await assert.rejects(writeFileAtomic(f, failing()), /disk on fire/);
      assert.equal(await fsp.readFile(f, 'utf8'), 'old content');
      assert.deepEqual((await fsp.readdir(dir)).filter((n) => n.startsWith('.keep.txt')), []);
    });
  });

  describe('write failures and stale temporary files', () => {
    const ROOT = path.join(here, '..');
    /** Run a module snippet in a child node (tsx loader) from the repository root. */
    const child = (code: string, opts: { uid?: number; gid?: number } = {}) =>
      spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const collect = (p: ReturnType<typeof child>) =>
      new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
        let out = '';
        p.stdout!.on('data', (d) => (out += d));
        p.stderr!.on('data', (d) => (out += d));
        p.on('close', (code, signal) => resolve({ code, signal, out }));
      });

    it('a folder as the destination is a ResolveError naming it (EISDIR), for every writer; nothing is left', async () => {
      const target = path.join(dir, 'a-folder.csv');
      await fsp.mkdir(target);
      const hs = makeHeadScores('sink', [[0.5, 1]]);
      for (const write of [() => writeFileAtomic(target, 'x'), () => saveHeadScores(hs, target), () => writeNpy(target, [1, 2])]) {
        await assert.rejects(write(), (e: unknown) => e instanceof ResolveError && (e as Error).message === `${target}: cannot write: EISDIR: it is a folder; give a file path`);
      }
      assert.deepEqual((await fsp.readdir(dir)).filter((n) => n.endsWith('.tmp')), []);
      assert.deepEqual(await fsp.readdir(target), []);
    });

    it('a read-only folder is a ResolveError naming the file (EACCES), not a plain Error', async function () {
      this.timeout(60000);
      const ro = path.join(dir, 'read-only');
      await fsp.mkdir(ro, { mode: 0o755 });
      await fsp.chmod(ro, 0o555);
      const dest = path.join(ro, 'scores.csv');
      if (process.getuid?.() === 0) {
        // root writes anywhere: check as an unprivileged user in a child process
        await fsp.chmod(dir, 0o755);
        const p = child(
          `import { writeFileAtomic } from './src/io/atomic.ts';
           try { await writeFileAtomic(${JSON.stringify(dest)}, 'x'); console.log('WROTE'); }
           catch (e) { console.log(e.name + ' | ' + e.message); }`,
          { uid: 65534, gid: 65534 },
        );
        const r = await collect(p);
        assert.match(r.out.trim(), new RegExp(`^ResolveError \\| ${dest.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot write: EACCES: permission denied$`), r.out);
      } else {
        await assert.rejects(writeFileAtomic(dest, 'x'), (e: unknown) => e instanceof ResolveError && /scores\.csv: cannot write: EACCES: permission denied$/.test((e as Error).message));
      }
      assert.deepEqual(await fsp.readdir(ro), []);
      await fsp.chmod(ro, 0o755);
    });

    it('temporary names record host and pid; only files of dead writers on this host are removed', async () => {
      const d = path.join(dir, 'names');
      await fsp.mkdir(d);
      const mine = tempPathFor(path.join(d, 'x.json'));
      const w = tempFileWriter(path.basename(mine))!;
      assert.equal(w.dest, 'x.json');
      assert.equal(w.host, os.hostname().replace(/[^A-Za-z0-9.-]/g, '_'));
      assert.equal(w.pid, process.pid);
      assert.equal(tempFileWriter('.x.json.123.abc.tmp'), null, 'names of other programs are not ours');
      // a dead pid: a child that has exited
      const gone = child('process.exit(0)');
      await collect(gone);
      const deadPid = gone.pid!;
      const host = w.host;
      const files = {
        dead: `.a.csv~${host}~${deadPid}~0123456789ab.tmp`,
        alive: `.b.csv~${host}~${process.pid}~0123456789ab.tmp`,
        otherHost: `.c.csv~elsewhere.example~${deadPid}~0123456789ab.tmp`,
        foreign: '.d.csv.tmp',
      };
      for (const f of Object.values(files)) await fsp.writeFile(path.join(d, f), 'partial');
      assert.deepEqual(await removeStaleTempFiles(d), [path.join(d, files.dead)]);
      assert.deepEqual((await fsp.readdir(d)).sort(), [files.alive, files.otherHost, files.foreign].sort());
    });

    it('kill -9 during a large export leaves a temporary file that the next write into the folder removes', async function () {
      this.timeout(120000);
      const d = path.join(dir, 'killed');
      await fsp.mkdir(d);
      // the child streams 1 MiB chunks (up to 512 MiB) into big.npy.json; it never finishes by itself in time
      const p = child(
        `import { writeFileAtomic } from './src/io/atomic.ts';
         async function* chunks() { for (let i = 0; i < 512; i++) { yield new Uint8Array(1 << 20).fill(i & 255); await new Promise((r) => setTimeout(r, 20)); } }
         await writeFileAtomic(${JSON.stringify(path.join(d, 'big.json'))}, chunks());
         console.log('FINISHED');`,
      );
      const done = collect(p);
      // wait until the temporary file holds at least 8 MiB, then kill the writer outright
      let tmp: string | undefined;
      for (let i = 0; i < 600 && !tmp; i++) {
        await new Promise((r) => setTimeout(r, 100));
        for (const n of await fsp.readdir(d)) {
          if (n.endsWith('.tmp') && (await fsp.stat(path.join(d, n))).size >= 8 << 20) tmp = n;
        }
      }
      assert.ok(tmp, 'the child started writing');
      p.kill('SIGKILL');
      const r = await done;
      assert.equal(r.signal, 'SIGKILL');
      assert.ok(!r.out.includes('FINISHED'));
      const left = await fsp.readdir(d);
      assert.deepEqual(left, [tmp], 'the killed writer left only its temporary file');
      assert.equal(tempFileWriter(tmp!)!.pid, p.pid);
      // a later export into the folder (a fresh process, as a user would run it) removes it
      const next = child(
        `import { saveJson } from './src/io/export.ts';
         await saveJson(${JSON.stringify(path.join(d, 'scores.json'))}, { ok: true });`,
      );
      const r2 = await collect(next);
      assert.equal(r2.code, 0, r2.out);
      assert.deepEqual(await fsp.readdir(d), ['scores.json']);
      assert.deepEqual(JSON.parse(await fsp.readFile(path.join(d, 'scores.json'), 'utf8')), { ok: true });
    });
  });

  describe('CSV', () => {
    it('quotes commas, quotes, newlines and edge spaces; a CSV reader gets the values back', () => {
      const rows = [
        { name: 'plain', v: 1.5, note: 'a,b' },
        { name: 'say "hi"', v: -0.25, note: 'line1\nline2' },
        { name: ' padded ', v: NaN, extra: true },
        { name: 'cr\r', v: Infinity, note: null },
      ];
      const text = toCsv(rows);
      assert.equal(
        text,
        'name,v,note,extra\n' + 'plain,1.5,"a,b",\n' + '"say ""hi""",-0.25,"line1\nline2",\n' + '" padded ",,,true\n' + '"cr\r",,,\n',
      );
      const parsed = parseCsv(text);
      assert.deepEqual(parsed, [
        ['name', 'v', 'note', 'extra'],
        ['plain', '1.5', 'a,b', ''],
        ['say "hi"', '-0.25', 'line1\nline2', ''],
        [' padded ', '', '', 'true'],
        ['cr\r', '', '', ''],
      ]);
      assert.equal(toCsv([]), '\n');
      assert.equal(toCsv([{ a: 1 }], ['b', 'a']), 'b,a\n,1\n');
      assert.throws(() => toCsv([1 as any]), ValueError);
    });

    it('head scores: rankHeads order, extra columns, CI columns; numbers round-trip exactly', async () => {
      const scores = [
        [0.1, 0.9, 1 / 3],
        [0.5, 0.9, -2],
      ];
      const hs = makeHeadScores('induction', scores, { seqLen: 10 }, {
        model: 'tiny',
        data: { prompts: 4 },
        extra: { prevTok: [[1, 2, 3], [4, 5, 6]] },
        ci: { lo: [[0, 0.8, 0.3], [0.4, 0.7, -3]], hi: [[0.2, 1, 0.4], [0.6, 1, -1]], level: 0.95, method: 'bootstrap' },
      });
      const rows = parseCsv(headScoresToCsv(hs));
      assert.deepEqual(rows[0], ['layer', 'head', 'score', 'prevTok', 'ci_lo', 'ci_hi']);
      // ties at 0.9: layer 0 before layer 1
      assert.deepEqual(
        rows.slice(1).map((r) => `${r[0]}.${r[1]}`),
        ['0.1', '1.1', '1.0', '0.2', '0.0', '1.2'],
      );
      assert.deepEqual(rows[1], ['0', '1', '0.9', '2', '0.8', '1']);
      assert.equal(Number(rows[4][2]), 1 / 3, 'shortest round-trip form keeps every bit');
      assert.equal(rows.length, 7);

      const doc = JSON.parse(headScoresToJson(hs));
      assert.equal(doc.method, 'induction');
      assert.equal(doc.model, 'tiny');
      assert.deepEqual(doc.params, { seqLen: 10 });
      assert.deepEqual(doc.data, { prompts: 4 });
      assert.deepEqual(doc.ci, { level: 0.95, method: 'bootstrap' });
      assert.deepEqual(doc.rows[0], { layer: 0, head: 1, score: 0.9, prevTok: 2, ci_lo: 0.8, ci_hi: 1 });
      assert.equal(doc.rows.length, 6);

      assert.equal(doc.rank_by, 'signed');

      await saveHeadScores(hs, path.join(dir, 'hs', 'scores.csv'), 'csv');
      await saveHeadScores(hs, path.join(dir, 'hs', 'scores.json'));
      assert.equal(await fsp.readFile(path.join(dir, 'hs', 'scores.csv'), 'utf8'), headScoresToCsv(hs));
      assert.equal(await fsp.readFile(path.join(dir, 'hs', 'scores.json'), 'utf8'), headScoresToJson(hs));
      await assert.rejects(saveHeadScores(hs, path.join(dir, 'x.xml'), 'xml' as any), ValueError);
    });

    it('rank_by: signed (default) puts a large negative effect last, absolute puts it first; NaN last either way', async () => {
      // a patching-like grid: 1.1 has the largest effect, negative
      const hs = makeHeadScores('head-patching', [
        [0.2, NaN, -0.05],
        [0.3, -0.9, 0.3],
      ]);
      const order = (rows: string[][]) => rows.slice(1).map((r) => `${r[0]}.${r[1]}`);
      assert.deepEqual(order(parseCsv(headScoresToCsv(hs))), ['1.0', '1.2', '0.0', '0.2', '1.1', '0.1']);
      assert.deepEqual(order(parseCsv(headScoresToCsv(hs, { rankBy: 'absolute' }))), ['1.1', '1.0', '1.2', '0.0', '0.2', '0.1']);
      const abs = JSON.parse(headScoresToJson(hs, { rankBy: 'absolute' }));
      assert.equal(abs.rank_by, 'absolute');
      assert.deepEqual(abs.rows.map((r: any) => `${r.layer}.${r.head}`), ['1.1', '1.0', '1.2', '0.0', '0.2', '0.1']);
      assert.throws(() => headScoresToCsv(hs, { rankBy: 'magnitude' as any }), (e: unknown) => e instanceof ValueError && /rankBy: expected "signed" or "absolute", found magnitude/.test((e as Error).message));
      await saveHeadScores(hs, path.join(dir, 'hs', 'abs.csv'), 'csv', { rankBy: 'absolute' });
      assert.equal(await fsp.readFile(path.join(dir, 'hs', 'abs.csv'), 'utf8'), headScoresToCsv(hs, { rankBy: 'absolute' }));
    });

    it('non-finite values: empty CSV cells and JSON null (a numeric column for pandas), never "NaN" strings', async () => {
      const hs = makeHeadScores('sink', [[NaN, 1, Infinity, -Infinity]], { eps: NaN }, {
        extra: { frac: [[0.5, NaN, 1, 0]] },
        ci: { lo: [[NaN, 0.9, 1, -1]], hi: [[NaN, 1.1, Infinity, 0]], level: 0.95, method: 'bootstrap' },
      });
      const csv = headScoresToCsv(hs);
      assert.ok(!/NaN|Infinity/.test(csv), csv);
      assert.deepEqual(parseCsv(csv), [
        ['layer', 'head', 'score', 'frac', 'ci_lo', 'ci_hi'],
        ['0', '2', '', '1', '1', ''],
        ['0', '1', '1', '', '0.9', '1.1'],
        ['0', '3', '', '0', '-1', '0'],
        ['0', '0', '', '0.5', '', ''],
      ]);
      const text = headScoresToJson(hs);
      assert.ok(!/NaN|Infinity/.test(text), text);
      const doc = JSON.parse(text);
      assert.equal(doc.params.eps, null);
      assert.deepEqual(doc.rows.map((r: any) => r.score), [null, 1, null, null]);
      assert.ok(doc.rows.every((r: any) => Object.values(r).every((v) => v === null || typeof v === 'number')), 'every cell a number or null');
      await saveJson(path.join(dir, 'hs', 'nan.json'), { a: NaN, b: [Infinity, 2] });
      assert.deepEqual(JSON.parse(await fsp.readFile(path.join(dir, 'hs', 'nan.json'), 'utf8')), { a: null, b: [null, 2] });
    });
  });

  describe('NPY', () => {
    it('writes exactly the bytes numpy.save writes (float32 2-D)', async () => {
      const expected = JSON.parse(await fsp.readFile(path.join(refDir, 'expected.json'), 'utf8'));
      const f = path.join(dir, 'f32.npy');
      const before = tf.memory().numTensors;
      const t = tf.tensor2d(expected['z.f32'].values, [2, 3]);
      await writeNpy(f, t);
      t.dispose();
      assert.equal(tf.memory().numTensors, before);
      assert.deepEqual(await fsp.readFile(f), await fsp.readFile(path.join(refDir, 'ref_f32.npy')));
    });

    it('writes exactly the bytes numpy.save writes (int32 3-D) and reads numpy files', async () => {
      const want = Array.from({ length: 24 }, (_, i) => i - 5);
      const f = path.join(dir, 'i32.npy');
      await writeNpy(f, Int32Array.from(want), [2, 3, 4]);
      assert.deepEqual(await fsp.readFile(f), await fsp.readFile(path.join(refDir, 'ref_i32.npy')));
      const r = await readNpy(path.join(refDir, 'ref_i32.npy'));
      assert.equal(r.dtype, 'int32');
      assert.deepEqual(r.shape, [2, 3, 4]);
      assert.deepEqual(Array.from(r.data), want);
      const t = await readNpyTensor(path.join(refDir, 'ref_f32.npy'));
      assert.deepEqual(t.shape, [2, 3]);
      t.dispose();
    });

    it('1-D and scalar shapes, number arrays, and bad input', async () => {
      const f = path.join(dir, 'v.npy');
      await writeNpy(f, [1, 2.5, -3]);
      const r = await readNpy(f);
      assert.deepEqual(r.shape, [3]);
      assert.deepEqual(Array.from(r.data), [1, 2.5, -3]);
      const bytes = await fsp.readFile(f);
      assert.match(bytes.subarray(10, 10 + bytes.readUInt16LE(8)).toString('latin1'), /^\{'descr': '<f4', 'fortran_order': False, 'shape': \(3,\), \} *\n$/);
      assert.equal((10 + bytes.readUInt16LE(8)) % 64, 0, 'data 64-byte aligned');
      await writeNpy(f, Float32Array.of(7), []);
      assert.deepEqual((await readNpy(f)).shape, []);
      await assert.rejects(writeNpy(f, [1, 2, 3], [2, 2]), ShapeError);
      assert.throws(() => parseNpy(new Uint8Array([1, 2, 3]), 'x.npy'), FormatError);
      const good = new Uint8Array(await fsp.readFile(path.join(refDir, 'ref_f32.npy')));
      assert.throws(() => parseNpy(good.subarray(0, good.length - 1), 'cut.npy'), (e: unknown) => e instanceof FormatError && /cut\.npy.*needs 24/.test((e as Error).message));
      const fortran = Buffer.from(good);
      fortran.write("True ", fortran.indexOf('False'), 'latin1');
      assert.throws(() => parseNpy(fortran, 'f.npy'), /Fortran order/);
    });

    it('600 seeded mutations of an NPY file: a consistent array or FormatError/ValueError', async () => {
      const good = new Uint8Array(await fsp.readFile(path.join(refDir, 'ref_i32.npy')));
      const r = rng(99);
      let ok = 0;
      for (let it = 0; it < 600; it++) {
        let b = good.slice();
        const op = r.int(3);
        if (op === 0) for (let k = r.range(1, 3); k > 0; k--) b[r.int(Math.min(b.length, 128))] ^= 1 << r.int(8);
        else if (op === 1) b = b.subarray(0, r.int(b.length));
        else {
          const h = Buffer.from(b).toString('latin1');
          const edits = ["'<i4'", "'<f4'", "'>i4'", "'<i8'", "'|u1'", "'<c8'", '(2, 3, 4)', '(24,)', '(2, 12)', '(3, 3)', '()', '(-1, 24)', 'True', 'False'];
          const from = r.choice(edits);
          const to = r.choice(edits);
          b = Buffer.from(h.replace(from, to), 'latin1');
        }
        try {
          const a = parseNpy(b, `m${it}.npy`);
          assert.equal(a.data.length, a.shape.reduce((x, y) => x * y, 1), `mutation #${it}`);
          ok++;
        } catch (e) {
          assert.ok(e instanceof FormatError || e instanceof ValueError, `mutation #${it}: ${(e as Error).name}: ${(e as Error).message}`);
        }
      }
      assert.ok(ok > 20, `only ${ok} mutations read back`);
    });
  });
});

describe('io/checkpoint (resumable sweeps)', () => {
  let dir: string;
  before(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tflens-sweep-'));
  });
  after(async () => {
    await fsp.rm(dir, { recursive: true, force: true });
  });

  const ids = Array.from({ length: 12 }, (_, i) => `L${Math.floor(i / 4)}H${i % 4}`);
  const value = (id: string) => {
    const [l, h] = id.slice(1).split('H').map(Number);
    return [l * 10 + h, Math.sin(l + h) / 3, l === 2 && h === 3 ? NaN : -h];
  };

  it('an interrupted sweep resumes in a fresh store, recomputes nothing finished, equals an uninterrupted run', async () => {
    const full = await runResumable(await SweepStore.open(path.join(dir, 'full.jsonl'), { key: 'k1' }), ids, async (id) => value(id));
    const file = path.join(dir, 'resume.jsonl');
    let calls: string[] = [];
    const k = 7;
    const store1 = await SweepStore.open(file, { key: 'k1' });
    await assert.rejects(
      runResumable(store1, ids, async (id) => {
        calls.push(id);
        if (calls.length === k + 1) throw new Error('interrupted');
        return value(id);
      }),
      /interrupted/,
    );
    assert.equal(calls.length, k + 1);
    assert.equal(store1.size, k);
    calls = [];
    const progress: boolean[] = [];
    const store2 = await SweepStore.open(file, { key: 'k1' });
    assert.equal(store2.size, k);
    const resumed = await runResumable(store2, ids, async (id) => (calls.push(id), value(id)), { onProgress: (p) => progress.push(p.cached) });
    assert.deepEqual(calls, ids.slice(k), 'only the unfinished items were computed');
    assert.deepEqual(progress, [...Array(k).fill(true), ...Array(ids.length - k).fill(false)]);
    assert.deepEqual(resumed, full);
    assert.deepEqual(resumed, ids.map(value));
    assert.ok(Number.isNaN((resumed[11] as number[])[2]), 'NaN stored as NaN, not null');
    // a third run computes nothing
    calls = [];
    await runResumable(await SweepStore.open(file, { key: 'k1' }), ids, async (id) => (calls.push(id), value(id)));
    assert.deepEqual(calls, []);
  });

  it('a torn last line (crash during a write) is dropped; a corrupt middle line is a FormatError', async () => {
    const file = path.join(dir, 'torn.jsonl');
    const s = await SweepStore.open(file, { key: 'k' });
    await s.put('a', 1);
    await s.put('b', [2, 3]);
    await fsp.appendFile(file, '{"id":"c","val');
    const s2 = await SweepStore.open(file, { key: 'k' });
    assert.deepEqual(s2.ids(), ['a', 'b']);
    await s2.put('c', 4);
    const s3 = await SweepStore.open(file, { key: 'k' });
    assert.deepEqual([s3.get('a'), s3.get('b'), s3.get('c')], [1, [2, 3], 4]);
    const lines = (await fsp.readFile(file, 'utf8')).split('\n');
    lines.splice(2, 0, 'garbage');
    await fsp.writeFile(file, lines.join('\n'));
    await assert.rejects(SweepStore.open(file, { key: 'k' }), (e: unknown) => e instanceof FormatError && /torn\.jsonl:3/.test((e as Error).message));
  });

  it('a changed key throws a ConfigError by default, or restarts with a warning', async () => {
    const file = path.join(dir, 'key.jsonl');
    const s = await SweepStore.open(file, { key: 'model=a' });
    await s.put('x', 1);
    await assert.rejects(SweepStore.open(file, { key: 'model=b' }), (e: unknown) => e instanceof ConfigError && /model=b.*model=a/.test((e as Error).message));
    const warnings: string[] = [];
    const s2 = await SweepStore.open(file, { key: 'model=b', onMismatch: 'restart', warn: (m) => warnings.push(m) });
    assert.equal(s2.size, 0);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /discarding 1 stored/);
    assert.equal((await SweepStore.open(file, { key: 'model=b' })).size, 0);
    await fsp.writeFile(path.join(dir, 'other.txt'), 'not a sweep\n');
    await assert.rejects(SweepStore.open(path.join(dir, 'other.txt'), { key: 'k' }), FormatError);
  });

  it('rejects duplicate ids and non-JSON values', async () => {
    const s = await SweepStore.open(path.join(dir, 'v.jsonl'), { key: 'k' });
    await assert.rejects(runResumable(s, ['a', 'a'], async () => 1), ValueError);
    await assert.rejects(s.put('f', (() => 1) as any), ValueError);
    await s.put('t', Float32Array.of(0.5, 1));
    assert.deepEqual(s.get('t'), [0.5, 1]);
  });
});
