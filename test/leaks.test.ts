// Reliability (issue 11.3): long loops of hooked runs, patching sweeps, generation, SAE training and
// cache helpers leave tf.memory() (tensors, bytes, data buffers) and the backend's heap where they
// were; an error thrown in the middle of a forward leaves no tensors and no hooks behind.
import assert from 'node:assert/strict';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { HookError, TflensError } from '../src/errors.js';
import { loadModel, generate, type HookedTransformer } from '../src/model/index.js';
import type { HookSpec } from '../src/hooks/registry.js';
import { attributionPatch, evaluateCircuit, inductionProblem, patchLoop, patchSweep, pathPatch, headPatchingScores, knockout, templateMeans, type PatchingProblem } from '../src/circuits/index.js';
import { reluSAE, topKSAE } from '../src/sae/models.js';
import { trainSAE } from '../src/sae/train.js';
import { saeCircuitScores } from '../src/sae/discrete.js';
import { REF_DIR } from './helpers/reference.js';
import { sinkScores, hiddenSinkScores, residualNorms } from '../src/analyses/sinks.js';
import { detectHeads } from '../src/analyses/detectors.js';
import { bosStats, dormantTest, entropyDormancy } from '../src/analyses/dormant.js';
import { RetrievalScorer, headMaskHooks, scoreRetrievalSample } from '../src/analyses/retrieval.js';
import { needleFromTokens, niahGrid } from '../src/analyses/niah.js';
import { razorScoresForModel } from '../src/analyses/razor.js';
import { actHook, selectACTHeads, varHook } from '../src/analyses/calibration.js';
import { allCompositionScores, copyingScores, pca } from '../src/analyses/weights/index.js';
import { tokenGroupBatch } from '../src/data/token-group.js';
import { bbEvalBatch, bbMeasures, trainBB } from '../src/zoo/bb.js';
import { recallAccuracyGrid } from '../src/zoo/recall.js';
import { ioiEvaluate } from '../src/zoo/ioi.js';
import { inductionEvalBatch, inductionEvaluate } from '../src/zoo/induction-handmade.js';
import { tokenGroupEvaluate } from '../src/zoo/var-group.js';

interface Snap {
  numTensors: number;
  numBytes: number;
  numDataBuffers: number;
  heap: number | null;
}

/** tf.memory() plus the wasm heap size (null on other backends). */
function snap(): Snap {
  const m = tf.memory() as tf.MemoryInfo & { numDataBuffers: number };
  const wasm = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm;
  return { numTensors: m.numTensors, numBytes: m.numBytes, numDataBuffers: m.numDataBuffers, heap: wasm?.HEAPU8?.byteLength ?? null };
}

function assertSame(before: Snap, after: Snap, what: string): void {
  assert.equal(after.numTensors, before.numTensors, `${what}: numTensors ${before.numTensors} -> ${after.numTensors}`);
  assert.equal(after.numBytes, before.numBytes, `${what}: numBytes ${before.numBytes} -> ${after.numBytes}`);
  assert.equal(after.numDataBuffers, before.numDataBuffers, `${what}: numDataBuffers ${before.numDataBuffers} -> ${after.numDataBuffers}`);
}

/** The wasm heap only grows; after a warm-up it must not keep growing with the number of runs. */
function assertHeapStable(warm: Snap, after: Snap, what: string): void {
  if (warm.heap === null || after.heap === null) return;
  assert.equal(after.heap, warm.heap, `${what}: wasm heap grew ${warm.heap} -> ${after.heap} bytes`);
}

async function maxAbs(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0];
  d.dispose();
  return v;
}

describe('reliability: no leaks', function () {
  let model: HookedTransformer;
  let prob: PatchingProblem;
  const counts: Record<string, number> = {};
  before(async () => {
    model = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
    prob = inductionProblem(model, { n: 3, R: 5, seed: 3 });
  });
  after(() => {
    model.dispose();
    console.log(`      leak checks: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  });

  it('1,000 hooked runs that read and replace activations: tensors, bytes, buffers and wasm heap unchanged', async function () {
    this.timeout(300000);
    const toks = [[0, 5, 9, 13, 2, 7, 7, 5], [0, 3, 8, 4, 4, 1, 9, 2]];
    const plain = await model.forward(toks);
    let reads = 0;
    let sum = 0;
    const kept: tf.Tensor[] = [];
    const hooks = (i: number): HookSpec[] => [
      // read: keep a derived tensor (read back after the run: hooks cannot await)
      ['blocks.0.hook_resid_pre', (a) => void kept.push(tf.keep(tf.mean(a)))],
      // replace: scale the residual, zero a head's z, rescale a pattern, add to the scores
      ['blocks.1.hook_resid_mid', (a) => tf.mul(a, 1 + (i % 3) * 0.01)],
      ['blocks.1.attn.hook_z', (z) => tf.mul(z, tf.tensor4d([1, 0, 1, 1], [1, 1, 4, 1]))],
      [(n: string) => n.endsWith('hook_pattern'), (p) => tf.mul(p, 0.5)],
      ['blocks.2.attn.hook_attn_scores', (s) => tf.add(s, 0.1)],
      ['blocks.2.mlp.hook_post', (x) => tf.relu(x)],
    ];
    const readKept = async () => {
      for (const t of kept.splice(0)) {
        sum += (await t.data())[0];
        reads++;
        t.dispose();
      }
    };
    // warm-up (kernels, wasm heap)
    for (let i = 0; i < 5; i++) tf.dispose(await model.runWithHooks(toks, { fwdHooks: hooks(i) }));
    await readKept();
    const before = snap();
    let last: tf.Tensor | null = null;
    for (let i = 0; i < 1000; i++) {
      const lg = await model.runWithHooks(toks, { fwdHooks: hooks(i) });
      await readKept();
      if (i === 999) last = lg;
      else lg.dispose();
    }
    // the hooks had an effect and every run read its activation
    assert.ok((await maxAbs(last!, plain)) > 1e-3);
    assert.equal(reads, 1005);
    assert.ok(Number.isFinite(sum));
    tf.dispose([last!]);
    assertSame(before, snap(), '1,000 hooked runs');
    assertHeapStable(before, snap(), '1,000 hooked runs');
    assert.equal(model.hooks.size, 0);
    plain.dispose();
    counts['hooked runs'] = 1000;
  });

  it('withHooks and permanent hooks around 200 runWithCache calls (device and host caches), cache.dispose frees everything', async () => {
    const toks = [[0, 5, 9, 13, 2, 7]];
    const warm = await model.runWithCache(toks);
    warm.logits.dispose();
    warm.cache.dispose();
    const before = snap();
    let cached = 0;
    await model.withHooks([['blocks.0.hook_mlp_out', (a) => tf.neg(a)]], async () => {
      for (let i = 0; i < 200; i++) {
        const { logits, cache } = await model.runWithCache(toks, {
          ...(i % 2 ? { namesFilter: (n: string) => n.includes('attn') } : {}),
          cacheOn: i % 4 === 0 ? 'host' : 'device',
        });
        cached += cache.keys().length;
        if (i % 4 === 0) cache.get(cache.keys()[0]); // a host entry made a tensor: dispose frees it too
        logits.dispose();
        cache.dispose();
        assert.throws(() => cache.get(cache.keys()[0]), HookError); // disposed caches refuse reads
      }
    });
    assert.ok(cached > 200 * 5);
    assert.equal(model.hooks.size, 0);
    assertSame(before, snap(), 'runWithCache x200');
    counts['cached runs'] = 200;
  });

  it('ActivationCache helpers (stackHeadResults, decomposeResid, accumulatedResid, applyLnToStack, logitAttrs) leak nothing', async () => {
    const toks = [[0, 5, 9, 13, 2, 7], [0, 3, 8, 4, 4, 1]];
    const { logits, cache } = await model.runWithCache(toks);
    const before = snap();
    for (let i = 0; i < 20; i++) {
      const heads = cache.stackHeadResults(undefined, { posSlice: -1 });
      const dec = cache.decomposeResid(undefined, { posSlice: -1 });
      const acc = cache.accumulatedResid(undefined, { inclMid: true, posSlice: -1 });
      const ln = cache.applyLnToStack(dec.stack, undefined, { posSlice: -1 });
      const attrs = cache.logitAttrs(ln, [5, 3], [9, 8]);
      assert.equal(attrs.shape[0], dec.labels.length);
      tf.dispose([heads.stack, dec.stack, acc.stack, ln, attrs]);
    }
    assertSame(before, snap(), 'cache helpers');
    // an error inside a helper (bad layer) leaks nothing either
    assert.throws(() => cache.accumulatedResid(99));
    assert.throws(() => cache.stackHeadResults(undefined, { posSlice: 50 }));
    assertSame(before, snap(), 'cache helpers after errors');
    logits.dispose();
    cache.dispose();
    counts['cache helper rounds'] = 20;
  });

  it('patching: patchSweep and patchLoop (every act), pathPatch (logits and receivers), attributionPatch, head scores, knockout and circuit evaluation leave memory unchanged; errors part way leave no tensors and no hooks', async function () {
    this.timeout(300000);
    await patchSweep(model, prob, 'z', 'head'); // warm-up
    const before = snap();
    const runs: string[] = [];
    for (const [act, by] of [['resid_pre', 'pos'], ['resid_mid', 'pos'], ['attn_out', 'pos'], ['mlp_out', 'pos'], ['z', 'head'], ['q', 'head_pos'], ['k', 'head'], ['v', 'head'], ['pattern', 'head_pos']] as const) {
      const r = await patchSweep(model, prob, act, by, { maxBatch: 7 });
      assert.ok(r.forwards > 4);
      runs.push(`${act}/${by}`);
    }
    await patchLoop(model, prob, 'z', 'head', { layers: [1] });
    const pl = await pathPatch(model, prob);
    assert.ok(pl.values.flat().some(Number.isFinite));
    await pathPatch(model, prob, { receivers: [[2, 1], [2, 3]], receiverInput: 'q' });
    await pathPatch(model, prob, { receivers: ['2.0'], receiverInput: 'k', positions: 'all' });
    const at = await attributionPatch(model, prob);
    assert.ok(at.allPos.flat().some((x) => x !== 0));
    await headPatchingScores(model, prob);
    const ids = prob.clean.map((_, i) => i % 2);
    const means = await templateMeans(model, { tokens: prob.corrupted, attentionMask: prob.attentionMask }, { referenceGroups: ids });
    assert.ok(Number.isFinite(await knockout(model, prob, means, ['1.0', '2.3'])));
    const last = prob.readPositions.map((t) => [t]);
    await evaluateCircuit(model, prob, means, ['1.0', { head: '2.3', positions: last }], { completenessSets: [['1.0']], maxBatch: 4 });
    means.dispose();
    assertSame(before, snap(), `patching (${runs.join(', ')}, patchLoop, pathPatch x3, attributionPatch, knockout, evaluateCircuit)`);
    assert.equal(model.hooks.size, 0);
    counts['patching runs'] = runs.length + 8;
    // errors part way: rejected promises, no tensors, no hooks
    const failing: Array<[string, () => Promise<unknown>]> = [
      ['patchSweep, hook throws in the patched runs', () => model.withHooks([['blocks.2.hook_mlp_out', (a) => { if (a.shape[0] > 3) throw new Error('late'); }]], () => patchSweep(model, prob, 'z', 'head'))],
      ['patchSweep, metric throws in a later layer', () => { let n = 0; return patchSweep(model, { ...prob, metric: (lg) => { if (++n === 5) throw new Error('metric'); return prob.metric(lg); } }, 'v', 'head'); }],
      ['attributionPatch, metric throws', () => attributionPatch(model, { ...prob, metric: () => { throw new Error('metric'); } })],
      ['pathPatch, receiver head out of range', () => pathPatch(model, prob, { receivers: [[1, 9]] })],
      ['pathPatch, receiver layer out of range', () => pathPatch(model, prob, { receivers: [[7, 0]] })],
      ['pathPatch, no receivers', () => pathPatch(model, prob, { receivers: [] })],
      ['pathPatch to receivers, hook throws in the second run', () => model.withHooks([['blocks.2.attn.hook_q', (a) => { if (a.shape[0] > 3) throw new Error('late'); }]], () => pathPatch(model, prob, { receivers: ['2.1'] }))],
    ];
    for (const [name, fn] of failing) {
      const b = snap();
      await assert.rejects(fn(), (e) => e instanceof Error, name);
      assert.equal(snap().numTensors, b.numTensors, `${name}: tensors left`);
      assert.equal(model.hooks.size, 0, `${name}: hooks left`);
    }
    assertSame(before, snap(), 'patching errors');
    counts['patching errors'] = failing.length;
  });

  it('generation with hooks, sampling and a StreamingLLM cache: memory unchanged, hooks removed', async () => {
    const prompt = [[0, 5, 9, 13, 2, 7], [0, 3, 8, 4, 4, 1]];
    await generate(model, prompt, { maxNewTokens: 3 });
    const before = snap();
    let calls = 0;
    const hooks: HookSpec[] = [['blocks.0.attn.hook_pattern', (p) => { calls++; return tf.mul(p, 1); }]];
    const g1 = await generate(model, prompt, { maxNewTokens: 20, fwdHooks: hooks });
    const g2 = await generate(model, prompt, { maxNewTokens: 20, temperature: 0.8, topK: 10, seed: 4, fwdHooks: hooks, streaming: { startSize: 2, recentSize: 6 } });
    const g3 = await generate(model, prompt, { maxNewTokens: 40, streaming: { startSize: 1, recentSize: 4, shiftPositions: false } });
    assert.equal(g1.tokens[0].length, 20);
    assert.equal(g2.tokens[1].length, 20);
    assert.equal(g3.tokens[0].length, 40);
    assert.equal(calls, 40); // one prefill + 19 decode steps, twice
    // the greedy hooked run equals the unhooked greedy run (the hook is the identity)
    assert.deepEqual(g1.tokens, (await generate(model, prompt, { maxNewTokens: 20 })).tokens);
    assertSame(before, snap(), 'generation');
    assert.equal(model.hooks.size, 0);
    counts.generations = 4;
  });

  it('retrieval scoring, a masked NIAH grid and the RazorAttention probe: memory and wasm heap unchanged', async function () {
    this.timeout(300000);
    const prompt = [0, 5, 9, 13, 2, 7, 11, 4, 6, 8];
    const makeSample = (len: number, depth: number) => needleFromTokens({ haystack: [5, 6, 7, 2], needle: [3, 9, 2], question: [4, 9], answer: [9], contextLength: len, depth, boundaryTokens: [2], bosId: 0 });
    const runAll = async () => {
      const sc = new RetrievalScorer({ nLayers: model.cfg.n_layers, nHeads: model.cfg.n_heads });
      for (let i = 0; i < 10; i++) await scoreRetrievalSample(model, sc, prompt, [13, 2], { maxNewTokens: 8, stopTokens: [], fwdHooks: headMaskHooks([[0, 0]]) });
      await niahGrid(model, { lengths: [12, 16], depths: [0, 1], makeSample, samplesPerCell: 2, maxNewTokens: 6, seed: 0, scorer: true, onProgress: false, fwdHooks: headMaskHooks([[1, 0]]) });
      await razorScoresForModel(model, { R: 5, seed: 1 });
    };
    await runAll(); // warm-up (the wasm heap grows to its working size once)
    const warm = snap();
    await runAll();
    assertSame(warm, snap(), 'retrieval');
    assertHeapStable(warm, snap(), 'retrieval');
    assert.equal(model.hooks.size, 0);
    counts['retrieval decodes'] = 2 * (10 + 8) + 2;
  });

  it('attention statistics (sinks, hidden sinks, norms, detectors, BOS statistics, dormant and entropy tests): memory and wasm heap unchanged', async function () {
    this.timeout(300000);
    const batch = { tokens: [[0, 5, 9, 13, 2, 7, 5, 9], [0, 0, 0, 3, 8, 4, 3, 8]], attentionMask: [[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1, 1]] };
    const runAll = async () => {
      await sinkScores(model, batch, { batchSize: 1 });
      await hiddenSinkScores(model, batch);
      await residualNorms(model, batch);
      await detectHeads(model, batch, undefined, { errorMeasure: 'abs', excludeBos: true });
      await bosStats(model, batch);
      await entropyDormancy(model, batch);
      await dormantTest(model, [{ name: 'd', ...batch }], { intervention: 'bos', heads: [[0, 0], [2, 3]] });
    };
    await runAll();
    const warm = snap();
    await runAll();
    assertSame(warm, snap(), 'attention statistics');
    assertHeapStable(warm, snap(), 'attention statistics');
    assert.equal(model.hooks.size, 0);
    counts['attention-statistics passes'] = 2;
  });

  it('calibration (ACT and VAR hook sets in runs and generation, head selection) and weight analyses: memory and wasm heap unchanged', async function () {
    this.timeout(300000);
    const toks = [[0, 5, 9, 13, 2, 7, 5, 9], [0, 3, 8, 4, 3, 8, 1, 2]];
    const runAll = async () => {
      for (let i = 0; i < 10; i++) {
        const hooks = [actHook({ heads: [[1, 0], [2, 3]], decodeSinks: i % 2 ? 'prefill' : 'row' }), varHook({ nLayers: model.cfg.n_layers, group: { start: 2, end: 6 }, sinkDims: [0, 1], tau: 1, decodeSinks: i % 2 ? 'every-step' : 'prefill' })];
        tf.dispose(await model.runWithHooks(toks, { fwdHooks: hooks.flat() }));
        await generate(model, toks, { maxNewTokens: 3, fwdHooks: hooks.flat() });
        hooks.forEach((h) => h.dispose());
      }
      await selectACTHeads(model, toks, async (hooks, t) => {
        const lg = await model.runWithHooks(t, { fwdHooks: hooks });
        const mean = tf.tidy(() => lg.mean());
        lg.dispose();
        const v = await mean.data().finally(() => mean.dispose());
        return v[0];
      }, { layers: [1] });
      await allCompositionScores(model, { engine: 'tf' });
      await copyingScores(model);
      const { logits, cache } = await model.runWithCache(toks, { namesFilter: ['blocks.1.hook_resid_post'] });
      await pca(cache.get('blocks.1.hook_resid_post'), { k: 3 });
      tf.dispose(logits);
      cache.dispose();
    };
    await runAll();
    const warm = snap();
    await runAll();
    assertSame(warm, snap(), 'calibration and weights');
    assertHeapStable(warm, snap(), 'calibration and weights');
    assert.equal(model.hooks.size, 0);
    counts['calibrated runs'] = 2 * 10 * 2;
  });

  it('zoo evaluations of the shipped models and a short training run: memory and wasm heap unchanged', async function () {
    this.timeout(300000);
    const dirs = ['bb', 'recall', 'ioi', 'induction-handmade', 'var-group'].map((n) => path.join('fixtures/models', n));
    const [bb, recall, ioi, ind, vg] = await Promise.all(dirs.map((d) => loadModel(d)));
    const runAll = async () => {
      await bbMeasures(bb, bbEvalBatch(3, 2));
      await recallAccuracyGrid(recall, { lengths: [48], depths: [0.5], n: 2, seed: 1 });
      await ioiEvaluate(ioi, { n: 4, seed: 1 });
      await inductionEvaluate(ind, inductionEvalBatch(1, 2, 8));
      await tokenGroupEvaluate(vg, tokenGroupBatch(4, 1), { batchSize: 3 });
      (await trainBB({ steps: 2, batch: 2, evalEvery: 2, evalBatch: 2, finalEval: false })).model.dispose();
    };
    try {
      await runAll();
      const warm = snap();
      await runAll();
      assertSame(warm, snap(), 'zoo');
      assertHeapStable(warm, snap(), 'zoo');
    } finally {
      [bb, recall, ioi, ind, vg].forEach((m) => m.dispose());
    }
    counts['zoo passes'] = 2;
  });

  it('an error in the middle of a forward, a cached run or a generation leaves no tensors and no hooks', async () => {
    const toks = [[0, 5, 9, 13, 2, 7]];
    const before = snap();
    let typed = 0;
    const boom = () => { throw new Error('boom'); };
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['forward, hook throws in layer 1', () => model.forward(toks, { fwdHooks: [['blocks.1.attn.hook_v', boom]] })],
      ['forward, hook returns a wrong shape', () => model.forward(toks, { fwdHooks: [['blocks.2.hook_resid_pre', (a) => tf.slice(a, [0, 0, 0], [1, 3, -1])]] })],
      ['forward, hook returns a wrong rank', () => model.forward(toks, { fwdHooks: [['blocks.0.attn.hook_pattern', (a) => tf.sum(a, -1)]] })],
      ['forward, hook returns a non-tensor', () => model.forward(toks, { fwdHooks: [['blocks.0.hook_mlp_out', () => 3 as never]] })],
      ['forward, hook re-enters the model', () => model.forward(toks, { fwdHooks: [['blocks.0.hook_resid_mid', () => void model.run(toks, {}, null)]] })],
      ['runWithCache, hook throws late', () => model.runWithCache(toks, { fwdHooks: [['ln_final.hook_normalized', boom]] })],
      ['runWithCache on the host, hook throws late', () => model.runWithCache(toks, { cacheOn: 'host', fwdHooks: [['unembed.hook_out', boom]] })],
      ['generate, hook throws at step 5', () => {
        let n = 0;
        return generate(model, toks, { maxNewTokens: 10, fwdHooks: [['blocks.1.hook_mlp_out', () => { if (++n === 6) throw new Error('step 5'); }]] });
      }],
      ['generate with streaming, onStep throws', () => generate(model, toks, { maxNewTokens: 10, streaming: { startSize: 1, recentSize: 3 }, onStep: ({ step }) => { if (step === 4) throw new Error('stop'); } })],
    ];
    const problems: string[] = [];
    for (const [name, fn] of cases) {
      const b = snap();
      let threw = false;
      try {
        const r = await fn();
        tf.dispose(r as never);
      } catch (e) {
        threw = true;
        if (e instanceof TflensError) typed++;
      }
      if (!threw) problems.push(`${name}: did not throw`);
      const now = snap();
      if (now.numTensors !== b.numTensors) problems.push(`${name}: ${now.numTensors - b.numTensors} tensors left`);
      if (model.hooks.size !== 0) {
        problems.push(`${name}: ${model.hooks.size} hooks left`);
        model.hooks.clear();
      }
    }
    assert.deepEqual(problems, []);
    assertSame(before, snap(), 'errors mid-forward');
    // the model still works and gives the same logits afterwards
    const a = await model.forward(toks);
    const b = await model.forward(toks);
    assert.equal(await maxAbs(a, b), 0);
    tf.dispose([a, b]);
    counts['mid-forward errors'] = cases.length;
    counts['of them typed (the rest are the user\'s own errors, passed through)'] = typed;
  });

  it('SAE training (ReLU and TopK, tensor data and a batch function): memory unchanged apart from the SAE, zero after dispose', async function () {
    this.timeout(120000);
    const before = snap();
    const x = tf.randomNormal([64, 16], 0, 1, 'float32', 5) as tf.Tensor2D;
    for (const make of [() => reluSAE(16, 32, { seed: 1 }), () => topKSAE(16, 32, 4, { seed: 2 })]) {
      const sae = make();
      const mid = snap();
      const r1 = await trainSAE(sae, x, { steps: 30, batchSize: 16, progress: false });
      const r2 = await trainSAE(sae, (step) => tf.randomNormal([8, 16], 0, 1, 'float32', step) as tf.Tensor2D, { steps: 30, progress: false });
      assert.equal(r1.history.loss.length > 0 && r2.history.loss.length > 0, true);
      assert.ok(r1.history.loss[r1.history.loss.length - 1] < r1.history.loss[0], 'training reduced the loss');
      assertSame(mid, snap(), `${sae.architecture} SAE training`);
      sae.dispose();
    }
    x.dispose();
    assertSame(before, snap(), 'SAE create/train/dispose');
    counts['SAE training steps'] = 120;
    // the discrete-SAE pipeline (collection, shared and per-head SAEs, codes), twice each
    const positive = { tokens: [[1, 2, 3, 1, 2, 3], [4, 5, 6, 4, 5, 6]] };
    const negative = { tokens: [[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]] };
    const start = snap();
    for (const setup of ['authors-code', 'paper-text', 'authors-code', 'paper-text'] as const) {
      await saeCircuitScores(model, positive, negative, { setup, nFeatures: 8, epochs: 5, nTrain: 3, progress: false });
    }
    assertSame(start, snap(), 'discrete-SAE circuit scores');
  });

  it('loading and disposing a model 20 times returns memory to where it was', async () => {
    const before = snap();
    for (let i = 0; i < 20; i++) {
      const m = await loadModel(path.join(REF_DIR, 'gpt2-tiny'));
      tf.dispose(await m.forward([[1, 2, 3]]));
      m.dispose();
    }
    assertSame(before, snap(), 'load/dispose x20');
    counts['load/dispose'] = 20;
  });
});
