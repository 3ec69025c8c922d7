// Reliability (issue 11.4): long sweeps checkpoint to disk and resume after an interruption without
// recomputing finished layers, and the resumed result equals an uninterrupted run exactly; exports
// are atomic (an error part way leaves neither a partial destination nor a temporary file).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, appendFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { ConfigError, ValueError } from '../src/errors.js';
import { loadModel, saveModel, type HookedTransformer } from '../src/model/index.js';
import { inductionProblem, patchSweep, type PatchAct, type PatchBy, type PatchingProblem } from '../src/circuits/index.js';
import { resumablePatchSweep, sweepKey } from '../src/circuits/resumable.js';
import { saveHeadScores, writeFileAtomic } from '../src/io/export.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { makeHeadScores } from '../src/results.js';
import { REF_DIR } from './helpers/reference.js';

/** Count the model's runs (every forward, cached or not: forward and runWithCache). */
function countRuns(model: HookedTransformer): { n: number; restore: () => void } {
  const m = model as unknown as Record<'forward' | 'runWithCache', (...a: unknown[]) => unknown>;
  const orig = { forward: m.forward, runWithCache: m.runWithCache };
  const c = { n: 0, restore: () => Object.assign(m, orig) };
  for (const k of ['forward', 'runWithCache'] as const) {
    m[k] = function (this: HookedTransformer, ...a: unknown[]) {
      c.n++;
      return orig[k].apply(this, a);
    };
  }
  return c;
}

function tmpFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.endsWith('.tmp'));
}

describe('reliability: resumable patching sweeps', function () {
  let model: HookedTransformer;
  let prob: PatchingProblem;
  let dir: string;
  before(async () => {
    model = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    prob = inductionProblem(model, { n: 3, R: 5, seed: 11 });
    dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-resume-'));
  });
  after(() => model.dispose());

  const cases: [PatchAct, PatchBy][] = [['z', 'head'], ['resid_pre', 'pos'], ['v', 'head_pos']];
  for (const [act, by] of cases) {
    it(`${act}/${by}: uninterrupted equals patchSweep exactly; interrupted after k layers and resumed equals it too, finished layers not recomputed`, async () => {
      const before = tf.memory().numTensors;
      const L = model.cfg.n_layers;
      const plain = await patchSweep(model, prob, act, by);
      const full = await resumablePatchSweep(model, prob, act, by, { store: path.join(dir, `${act}-full.jsonl`) });
      assert.deepEqual(full.values, plain.values);
      assert.deepEqual(full.normalised, plain.normalised);
      assert.equal(full.clean, plain.clean);
      assert.equal(full.corrupted, plain.corrupted);
      assert.deepEqual(full.computedLayers, [0, 1, 2]);
      assert.deepEqual(full.cachedLayers, []);
      // sanity: the sweep is not constant (a resumed run that returned zeros would fail)
      assert.ok(new Set((plain.values as unknown[]).flat(3)).size > 3);

      for (let k = 1; k < L; k++) {
        const store = path.join(dir, `${act}-${by}-k${k}.jsonl`);
        const stop = new Error(`stop after ${k}`);
        await assert.rejects(
          resumablePatchSweep(model, prob, act, by, { store, onProgress: (p) => { if (p.done === k) throw stop; } }),
          (e) => e === stop,
        );
        // k rows stored (plus the key line)
        assert.equal(readFileSync(store, 'utf8').trim().split('\n').length, 1 + k);
        // forwards a run of the remaining layers alone needs
        const ref = countRuns(model);
        for (let l = k; l < L; l++) await patchSweep(model, prob, act, by, { layers: [l] });
        const need = ref.n;
        ref.restore();
        const c = countRuns(model);
        const resumed = await resumablePatchSweep(model, prob, act, by, { store });
        c.restore();
        assert.equal(c.n, need, `k=${k}: ${c.n} forwards on resume, expected ${need}`);
        assert.deepEqual(resumed.cachedLayers, Array.from({ length: k }, (_, l) => l));
        assert.deepEqual(resumed.computedLayers, Array.from({ length: L - k }, (_, i) => k + i));
        assert.deepEqual(resumed.values, plain.values);
        assert.deepEqual(resumed.normalised, plain.normalised);
        assert.equal(resumed.clean, plain.clean);
        // a third call computes nothing
        const c2 = countRuns(model);
        const again = await resumablePatchSweep(model, prob, act, by, { store });
        c2.restore();
        assert.equal(c2.n, 0);
        assert.equal(again.forwards, 0);
        assert.deepEqual(again.values, plain.values);
      }
      assert.equal(tf.memory().numTensors, before);
    });
  }

  it('a process killed (SIGKILL) in the middle of a sweep: a fresh process resumes from its finished layers to the exact result', async function () {
    this.timeout(180000);
    const store = path.join(dir, 'killed.jsonl');
    const child = path.join(dir, 'child.mts');
    const src = (f: string) => JSON.stringify(pathToFileURL(path.resolve('src', f)).href);
    // the child runs the same sweep on the same backend and prints each finished layer; it never finishes on its own
    writeFileSync(child, `
      import { initBackend } from ${src('backend/index.ts')};
      import { loadModel } from ${src('model/index.ts')};
      import { inductionProblem } from ${src('circuits/index.ts')};
      import { resumablePatchSweep } from ${src('circuits/resumable.ts')};
      await initBackend();
      const model = await loadModel(${JSON.stringify(path.join(REF_DIR, 'gpt2-tiny'))});
      const prob = inductionProblem(model, { n: 3, R: 5, seed: 11 });
      await resumablePatchSweep(model, prob, 'z', 'head_pos', { store: ${JSON.stringify(store)}, onProgress: (p) => {
        console.log('done ' + p.done);
        if (p.done === 2) { const t = Date.now(); while (Date.now() - t < 60000); } // stuck before the last layer until killed
      } });
      console.log('finished');
    `);
    const p = spawn(process.execPath, ['--import', 'tsx', child], { cwd: path.resolve('.'), env: { ...process.env, TFLENS_BACKEND: ({ tensorflow: 'node' } as Record<string, string>)[tf.getBackend()] ?? tf.getBackend(), TFLENS_QUIET: '1' } });
    let out = '';
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const killedAfter = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => (p.kill('SIGKILL'), reject(new Error(`child timed out: ${out} ${err}`))), 150000);
      p.stdout.on('data', (d) => {
        out += d;
        if (/done 2\n/.test(out)) {
          p.kill('SIGKILL');
          clearTimeout(timer);
          resolve(2);
        }
      });
      p.on('exit', (code, sig) => {
        if (sig !== 'SIGKILL') reject(new Error(`child exited ${code}: ${out} ${err}`));
      });
    });
    await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.on('exit', r)));
    assert.doesNotMatch(out, /finished/);
    assert.equal(readFileSync(store, 'utf8').trim().split('\n').length, 1 + killedAfter);
    const c = countRuns(model);
    const r = await resumablePatchSweep(model, prob, 'z', 'head_pos', { store });
    c.restore();
    assert.deepEqual(r.cachedLayers, [0, 1]);
    assert.deepEqual(r.computedLayers, [2]);
    const ref = countRuns(model);
    const plain = await patchSweep(model, prob, 'z', 'head_pos');
    ref.restore();
    assert.ok(c.n < ref.n, `resume ran ${c.n} forwards, a full sweep ${ref.n}`);
    assert.deepEqual(r.values, plain.values);
    assert.deepEqual(r.normalised, plain.normalised);
  });

  it('an AbortSignal stops the sweep between layers; a fresh call resumes; no tensors leak', async () => {
    const before = tf.memory().numTensors;
    const store = path.join(dir, 'abort.jsonl');
    const ac = new AbortController();
    let computedBeforeAbort = 0;
    await assert.rejects(
      resumablePatchSweep(model, prob, 'z', 'head', {
        store,
        signal: ac.signal,
        onProgress: (p) => {
          computedBeforeAbort = p.done;
          if (p.done === 2) ac.abort(new Error('user stop'));
        },
      }),
      /user stop/,
    );
    assert.equal(computedBeforeAbort, 2);
    const c = countRuns(model);
    const r = await resumablePatchSweep(model, prob, 'z', 'head', { store });
    c.restore();
    assert.deepEqual(r.computedLayers, [2]);
    assert.deepEqual(r.values, (await patchSweep(model, prob, 'z', 'head')).values);
    // an already-aborted signal computes nothing and stores nothing
    const ac2 = new AbortController();
    ac2.abort();
    const s2 = path.join(dir, 'pre-aborted.jsonl');
    await assert.rejects(resumablePatchSweep(model, prob, 'z', 'head', { store: s2, signal: ac2.signal }));
    assert.equal(readFileSync(s2, 'utf8').trim().split('\n').length, 1);
    assert.equal(tf.memory().numTensors, before);
  });

  it('a crash inside a layer (a failing metric, a torn last line) keeps the finished rows; resume equals the plain sweep', async () => {
    const before = tf.memory().numTensors;
    const store = path.join(dir, 'crash.jsonl');
    // the metric fails in layer 1's patched forward (calls: clean, corrupted, patched per layer)
    let calls = 0;
    const failing: PatchingProblem = {
      ...prob,
      metric: (lg) => {
        if (++calls === 6) throw new Error('disk on fire');
        return prob.metric(lg);
      },
    };
    await assert.rejects(resumablePatchSweep(model, failing, 'z', 'head', { store, key: 'crash' }), /disk on fire/);
    assert.equal(model.hooks.size, 0);
    assert.equal(readFileSync(store, 'utf8').trim().split('\n').length, 2); // key + layer 0
    // a crash in the middle of writing the next line leaves a torn tail: it is dropped on reopen
    appendFileSync(store, '{"id":"layer:1","val');
    const r = await resumablePatchSweep(model, prob, 'z', 'head', { store, key: 'crash' });
    assert.deepEqual(r.cachedLayers, [0]);
    assert.deepEqual(r.computedLayers, [1, 2]);
    assert.deepEqual(r.values, (await patchSweep(model, prob, 'z', 'head')).values);
    assert.equal(tf.memory().numTensors, before);
  });

  it('the key covers the inputs: other tokens, metric, act, layers or weights never reuse stored rows', async () => {
    const k0 = await sweepKey(model, prob, 'z', 'head');
    assert.equal(await sweepKey(model, prob, 'z', 'head'), k0);
    const other = inductionProblem(model, { n: 3, R: 5, seed: 12 });
    assert.notEqual(await sweepKey(model, other, 'z', 'head'), k0);
    assert.notEqual(await sweepKey(model, { ...prob, readPositions: prob.readPositions.map((p) => p - 1) }, 'z', 'head'), k0);
    assert.notEqual(await sweepKey(model, { ...prob, metricName: 'other' }, 'z', 'head'), k0);
    assert.notEqual(await sweepKey(model, prob, 'q', 'head'), k0);
    assert.notEqual(await sweepKey(model, prob, 'z', 'head_pos'), k0);
    assert.notEqual(await sweepKey(model, prob, 'z', 'head', { layers: [0, 1] }), k0);
    assert.notEqual(await sweepKey(model, prob, 'z', 'head', { maxBatch: 4 }), k0);
    // one weight changed by a small amount changes the key
    const w = model.params['blocks.2.mlp.b_out'];
    const changed = tf.tidy(() => tf.add(w, tf.oneHot([5], w.shape[0]).reshape(w.shape).mul(1e-3)));
    model.params['blocks.2.mlp.b_out'] = changed;
    try {
      assert.notEqual(await sweepKey(model, prob, 'z', 'head'), k0);
    } finally {
      model.params['blocks.2.mlp.b_out'] = w;
      changed.dispose();
    }
    assert.equal(await sweepKey(model, prob, 'z', 'head'), k0);
    // a store written for one problem refuses another (ConfigError naming the store), or restarts when asked
    const store = path.join(dir, 'mismatch.jsonl');
    await resumablePatchSweep(model, prob, 'z', 'head', { store, layers: [0] });
    await assert.rejects(resumablePatchSweep(model, other, 'z', 'head', { store, layers: [0] }), (e) => e instanceof ConfigError && e.message.includes('mismatch.jsonl'));
    const warnings: string[] = [];
    const r = await resumablePatchSweep(model, other, 'z', 'head', { store, layers: [0], onMismatch: 'restart', warn: (m) => warnings.push(m) });
    assert.equal(warnings.length, 1);
    assert.deepEqual(r.computedLayers, [0]);
    assert.deepEqual(r.values, (await patchSweep(model, other, 'z', 'head', { layers: [0] })).values);
  });

  it('bad arguments are typed errors', async () => {
    await assert.rejects(resumablePatchSweep(model, prob, 'z', 'head', { store: '' }), ValueError);
    await assert.rejects(resumablePatchSweep(model, prob, 'z', 'head', { store: path.join(dir, 'b1.jsonl'), layers: [0, 3] }), (e) => e instanceof ValueError && /layers\[1\].*\[0, 3\).*3/.test((e as Error).message));
    await assert.rejects(resumablePatchSweep(model, prob, 'z', 'head', { store: path.join(dir, 'b2.jsonl'), layers: [1, 1] }), ValueError);
    await assert.rejects(resumablePatchSweep(model, prob, 'z', 'pos', { store: path.join(dir, 'b3.jsonl') }), ValueError);
  });
});

describe('reliability: exports are atomic', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-atomic-'));
  const hs = makeHeadScores('test', [[1, 2], [3, 4]], { k: 1 }, { model: 'm' });

  it('saveHeadScores / writeFileAtomic: a failure at the rename leaves no temp file; a failure in the data source keeps the old file', async () => {
    // destination is a folder: the data is fully written to the temp file, then the rename fails
    const asDir = path.join(dir, 'scores.csv');
    mkdirSync(asDir);
    await assert.rejects(saveHeadScores(hs, asDir));
    assert.deepEqual(tmpFiles(dir), []);
    // an existing file survives a writer whose data source fails part way
    const dest = path.join(dir, 'keep.csv');
    await saveHeadScores(hs, dest);
    const old = readFileSync(dest, 'utf8');
    assert.match(old, /^layer,head,score/);
    async function* chunks() {
      yield 'layer,head,score\n';
      yield '0,0,'.repeat(10000);
      throw new Error('source failed');
    }
    await assert.rejects(writeFileAtomic(dest, chunks()), /source failed/);
    assert.equal(readFileSync(dest, 'utf8'), old);
    assert.deepEqual(tmpFiles(dir), []);
    // json round trip of a successful save
    await saveHeadScores(hs, path.join(dir, 's.json'));
    assert.equal(JSON.parse(readFileSync(path.join(dir, 's.json'), 'utf8')).rows.length, 4);
  });

  it('writeSafetensors: a bad tensor after good ones leaves the old file intact and no temp file; no tensors leak', async () => {
    const before = tf.memory().numTensors;
    const dest = path.join(dir, 'w.safetensors');
    const a = tf.tensor1d([1, 2, 3]);
    await writeSafetensors(dest, { a });
    const old = readFileSync(dest);
    // a raw entry whose data does not fit its shape: sorted after "a", so "a" is already written
    await assert.rejects(writeSafetensors(dest, { a, z: { dtype: 'F32', shape: [4], data: new Float32Array(3) } as any }));
    // a tensor disposed between planning and writing: caught part way through the data section
    const big = tf.ones([1000]);
    const late = tf.ones([4]);
    const tensors: Record<string, tf.Tensor> = { a: big, b: late };
    const p = writeSafetensors(dest, tensors);
    late.dispose();
    await assert.rejects(p);
    assert.deepEqual(readFileSync(dest), old);
    assert.deepEqual(tmpFiles(dir), []);
    const back = await readSafetensors(dest);
    assert.deepEqual(Array.from(await back.a.data()), [1, 2, 3]);
    tf.dispose([a, big, back.a]);
    assert.equal(tf.memory().numTensors, before);
  });

  it('saveModel: a failure writing config.json leaves no temp files; a later save into a clean folder reloads to the same logits', async () => {
    const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    const before = tf.memory().numTensors;
    const out = path.join(dir, 'model');
    mkdirSync(path.join(out, 'config.json'), { recursive: true }); // config.json cannot be replaced
    await assert.rejects(saveModel(m, out));
    assert.deepEqual(tmpFiles(out), []);
    assert.equal(tf.memory().numTensors, before);
    const good = path.join(dir, 'model2');
    await saveModel(m, good);
    assert.deepEqual(tmpFiles(good), []);
    const m2 = await loadModel(good);
    const [a, b] = [await m.forward([[1, 2, 3, 4]]), await m2.forward([[1, 2, 3, 4]])];
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
    assert.equal((await d.data())[0], 0);
    tf.dispose([a, b, d]);
    m2.dispose();
    m.dispose();
    assert.ok(existsSync(path.join(good, 'model.safetensors')));
  });
});
