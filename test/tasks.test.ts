import assert from 'node:assert/strict';
import { Tokenizer } from '@huggingface/tokenizers';
import {
  DEFAULT_CHARS,
  annotateBigramBackcopy,
  bbExcessLoss,
  bbTokenizerFiles,
  makeBigramBackcopy,
  oracleNext,
  sampleBigramBackcopy,
} from '../src/data/bigram-backcopy.js';
import { findSpan, insertNeedle, linspace, makeNeedle, needleFromText } from '../src/data/needle.js';
import { razorAttentionInput, repeatedTokens } from '../src/data/induction.js';
import { razorMasks } from '../src/analyses/razor.js';
import { tokenizerConfigJson, wordLevelTokenizerJson } from '../src/data/tokenizer.js';
import { rng, mulberry32, deriveSeed } from '../src/util/random.js';
import { ValueError } from '../src/errors.js';
import { encode as gpt2Encode, decode as gpt2Decode } from 'gpt-3-encoder';

describe('util/random', () => {
  it('mulberry32 reference values and reproducibility', () => {
    // First outputs of mulberry32(0), computed by hand from the algorithm's integer steps.
    const g = mulberry32(0);
    const first = g();
    // a = 0x6d2b79f5; t = imul(a ^ a>>>15, a|1); ... = 1144304738 / 2^32
    assert.equal(first, 1144304738 / 4294967296);
    const a = rng(42);
    const b = rng(42);
    for (let i = 0; i < 100; i++) assert.equal(a.next(), b.next());
    assert.notEqual(deriveSeed(1, 2), deriveSeed(1, 3));
  });

  it('int, choice, weighted, shuffle, sample, normal have the right distributions', () => {
    const r = rng(7);
    const counts = new Array(5).fill(0);
    for (let i = 0; i < 50000; i++) counts[r.int(5)]++;
    for (const c of counts) assert.ok(Math.abs(c / 50000 - 0.2) < 0.01, `int uniform: ${counts}`);
    const w = new Array(3).fill(0);
    for (let i = 0; i < 60000; i++) w[r.weighted([1, 0, 3])]++;
    assert.equal(w[1], 0);
    assert.ok(Math.abs(w[2] / 60000 - 0.75) < 0.01);
    const s = r.shuffle([1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...s].sort(), [1, 2, 3, 4, 5, 6]);
    const smp = r.sample([1, 2, 3, 4, 5, 6], 4);
    assert.equal(new Set(smp).size, 4);
    let m = 0;
    let v = 0;
    const n = 40000;
    for (let i = 0; i < n; i++) {
      const x = r.normal();
      m += x;
      v += x * x;
    }
    assert.ok(Math.abs(m / n) < 0.02 && Math.abs(v / n - 1) < 0.03);
    assert.throws(() => r.int(0), ValueError);
    assert.throws(() => r.choice([]), ValueError);
    assert.throws(() => r.weighted([0, 0]), ValueError);
  });
});

describe('Bigram-Backcopy task', () => {
  const task = makeBigramBackcopy({ seed: 1 });

  it('has the paper vocabulary: 65 characters + BOS + one unused', () => {
    assert.equal(DEFAULT_CHARS.length, 65);
    assert.equal(task.nChars, 65);
    assert.equal(task.dVocab, 67);
    assert.equal(task.vocab[task.bosId], '<bos>');
    assert.equal(task.seqLen, 257);
    for (const row of task.transition) assert.ok(Math.abs(row.reduce((a, b) => a + b) - 1) < 1e-9);
    // peaked rows: the top transition of a typical row carries a sizeable share
    const tops = task.transition.map((r) => Math.max(...r)).sort((a, b) => a - b);
    assert.ok(tops[Math.floor(tops.length / 2)] > 0.15, `median top transition ${tops[32]}`);
  });

  it('triggers are the k most frequent under the stationary distribution', () => {
    // stationarity: pi P = pi
    const pi = task.unigram;
    for (let j = 0; j < task.nChars; j++) {
      let s = 0;
      for (let i = 0; i < task.nChars; i++) s += pi[i] * task.transition[i][j];
      assert.ok(Math.abs(s - pi[j]) < 1e-9);
    }
    const sorted = [...pi].sort((a, b) => b - a);
    assert.equal(task.triggers.length, 3);
    assert.deepEqual(task.triggers.map((t) => pi[t]), sorted.slice(0, 3));
    const t5 = makeBigramBackcopy({ seed: 1, k: 5 });
    assert.deepEqual(t5.triggers.slice(0, 3), task.triggers);
    assert.equal(t5.triggers.length, 5);
    for (const t of task.triggers) assert.equal(task.x1Dist[t], 0);
  });

  it('samples obey the backcopy rule at every trigger; x1 is never a trigger; seeded', () => {
    const b = sampleBigramBackcopy(task, 64, 5);
    assert.deepEqual(b.tokens, sampleBigramBackcopy(task, 64, 5).tokens);
    let nTrig = 0;
    for (const x of b.tokens) {
      assert.equal(x.length, 257);
      assert.equal(x[0], task.bosId);
      assert.ok(!task.isTrigger[x[1]]);
      for (let t = 1; t < x.length - 1; t++) {
        assert.ok(x[t] < task.nChars);
        if (task.isTrigger[x[t]]) {
          nTrig++;
          assert.equal(x[t + 1], x[t - 1], 'backcopy');
          assert.ok(!task.isTrigger[x[t + 1]], 'no two triggers in a row');
        }
      }
    }
    assert.ok(nTrig > 100, `triggers seen: ${nTrig}`);
  });

  it('marginals: x1 follows the unigram with triggers zeroed; non-trigger transitions follow P', () => {
    const b = sampleBigramBackcopy(task, 4000, 11);
    const c1 = new Array(task.nChars).fill(0);
    for (const x of b.tokens) c1[x[1]]++;
    let tv = 0;
    for (let i = 0; i < task.nChars; i++) tv += Math.abs(c1[i] / 4000 - task.x1Dist[i]);
    assert.ok(tv / 2 < 0.06, `total variation of x1 vs spec ${tv / 2}`);
    // transitions out of the most common non-trigger char
    const src = task.unigram.map((p, i) => [p, i]).filter(([, i]) => !task.isTrigger[i]).sort((a, b) => b[0] - a[0])[0][1];
    const ct = new Array(task.nChars).fill(0);
    let n = 0;
    for (const x of b.tokens) for (let t = 1; t < x.length - 1; t++) if (x[t] === src) (ct[x[t + 1]]++, n++);
    let tv2 = 0;
    for (let j = 0; j < task.nChars; j++) tv2 += Math.abs(ct[j] / n - task.transition[src][j]);
    assert.ok(n > 5000 && tv2 / 2 < 0.04, `transition TV ${tv2 / 2} over ${n}`);
  });

  it('masks and oracle loss per position (hand-checked sequence)', () => {
    const small = makeBigramBackcopy({ text: 'abababcabcaacb', k: 1 });
    assert.deepEqual(small.chars, ['a', 'b', 'c']);
    const trig = small.triggers[0];
    const other = [0, 1, 2].filter((i) => i !== trig);
    const x = [small.bosId, other[0], trig, other[0], other[1]];
    const ann = annotateBigramBackcopy(small, x);
    assert.deepEqual(ann.targets, x.slice(1));
    assert.deepEqual(ann.triggerMask, [false, false, true, false, false]);
    assert.deepEqual(ann.nonTriggerMask, [false, true, false, true, true]);
    assert.ok(Math.abs(ann.oracleLoss[0] + Math.log(small.x1Dist[other[0]])) < 1e-12);
    assert.ok(Math.abs(ann.oracleLoss[1] + Math.log(small.transition[other[0]][trig])) < 1e-12);
    assert.equal(ann.oracleLoss[2], 0);
    assert.ok(Math.abs(ann.oracleLoss[3] + Math.log(small.transition[other[0]][other[1]])) < 1e-12);
    const p = oracleNext(small, x, 2);
    assert.equal(p[other[0]], 1);
    // bigram from text counts (+0.01 smoothing): after "a": b x4, c x1, a x1 in 'abababcabcaacb'
    const a = small.chars.indexOf('a');
    assert.ok(Math.abs(small.transition[a][small.chars.indexOf('b')] - 4.01 / 6.03) < 1e-12);
  });

  it('excess loss: the oracle itself has zero excess; groups are separated', () => {
    const b = sampleBigramBackcopy(task, 8, 2);
    const ex = bbExcessLoss(b.oracleLoss, b);
    assert.equal(ex.all, 0);
    assert.equal(ex.trigger, 0);
    assert.equal(ex.nonTrigger, 0);
    const plus = b.oracleLoss.map((r, bi) => r.map((v, t) => v + (b.triggerMask[bi][t] ? 2 : 0.5)));
    const ex2 = bbExcessLoss(plus, b);
    assert.ok(Math.abs(ex2.trigger! - 2) < 1e-12 && Math.abs(ex2.nonTrigger! - 0.5) < 1e-12);
    assert.throws(() => bbExcessLoss([[NaN]], sampleBigramBackcopy(task, 1, 0)), ValueError);
  });

  it('tokenizer.json for the BB vocabulary loads in @huggingface/tokenizers and round-trips', () => {
    const { tokenizer, config } = bbTokenizerFiles(task);
    const tok = new Tokenizer(tokenizer as any, config as any);
    const b = sampleBigramBackcopy(task, 2, 3);
    const text = b.tokens[0].slice(1).map((i) => task.vocab[i]).join('');
    const enc = tok.encode('<bos>' + text);
    assert.deepEqual(enc.ids, b.tokens[0]);
    assert.equal(tok.decode(enc.ids, { skip_special_tokens: true }), text);
    // JSON-serialisable, with the fields the Rust library requires
    const j = JSON.parse(JSON.stringify(tokenizer));
    assert.equal(j.model.type, 'WordLevel');
    assert.equal(j.model.unk_token, '<unk>');
    assert.equal(Object.keys(j.model.vocab).length, 67);
  });

  it('word-level tokenizer.json round-trips and maps unknown words to <unk>', () => {
    const vocab = ['<bos>', '<unk>', 'the', 'key', 'is', 'value', '.'];
    const tok = new Tokenizer(wordLevelTokenizerJson(vocab, { specialTokens: ['<bos>'] }) as any, tokenizerConfigJson({ bosToken: '<bos>' }) as any);
    assert.deepEqual(tok.encode('<bos> the key is zebra .').ids, [0, 2, 3, 4, 1, 6]);
    assert.equal(tok.decode([2, 3, 4, 5, 6]), 'the key is value .');
    assert.throws(() => wordLevelTokenizerJson(['a', 'a', '<unk>']), ValueError);
    assert.throws(() => wordLevelTokenizerJson(['a b', '<unk>']), ValueError);
    assert.throws(() => wordLevelTokenizerJson(['ab', '<unk>'], { splitChars: true }), ValueError);
    assert.throws(() => wordLevelTokenizerJson(['a']), ValueError);
  });
});

describe('needle in a haystack', () => {
  it('inserts at the boundary at or before the requested depth', () => {
    const P = 1;
    const hay = [5, 6, 7, P, 8, 9, P, 10, 11, 12, 13, P];
    const r = insertNeedle(hay, [99, 98], 0.5, [P]); // requested 6 -> token before index 6 is 9 -> back to 4
    assert.equal(r.requestedAt, 6);
    assert.equal(r.insertAt, 4);
    assert.deepEqual(r.tokens, [5, 6, 7, P, 99, 98, 8, 9, P, 10, 11, 12, 13, P]);
    assert.deepEqual(r.needleSpan, [4, 6]);
    assert.equal(insertNeedle(hay, [99], 0, [P]).insertAt, 0);
    assert.equal(insertNeedle(hay, [99], 1, [P]).insertAt, hay.length);
    assert.equal(insertNeedle(hay, [99], 7 / 12, [P]).insertAt, 7); // exactly at a boundary stays
    assert.throws(() => insertNeedle(hay, [99], 1.5, [P]), ValueError);
  });

  it('synthetic needles: length, spans, answer, and boundary placement for many depths', () => {
    for (const depth of linspace(0, 1, 11)) {
      const ex = makeNeedle({ length: 200, depth, seed: 3, bosId: 0, valueLength: 2 });
      assert.equal(ex.tokens.length, 200);
      assert.equal(ex.tokens[0], 0);
      const [s, e] = ex.needleSpan;
      assert.deepEqual(ex.tokens.slice(ex.valueSpan[0], ex.valueSpan[1]), ex.answer);
      assert.ok(ex.valueSpan[0] >= s && ex.valueSpan[1] <= e);
      assert.ok(s === ex.contextStart || ex.tokens[s - 1] === 1, 'needle starts after a period');
      assert.ok(ex.insertAt <= ex.requestedAt);
      // nothing between insertAt and requestedAt is a boundary (it moved back to the nearest one)
      const ctxWithoutNeedle = ex.tokens.slice(ex.contextStart, s).concat(ex.tokens.slice(e, ex.questionSpan[0]));
      for (let i = ex.insertAt; i < ex.requestedAt; i++) assert.notEqual(ctxWithoutNeedle[i], 1);
      // the question asks for the needle's key and ends with the value marker
      const q = ex.tokens.slice(ex.questionSpan[0], ex.questionSpan[1]);
      assert.ok(q.includes(ex.key[0]));
      assert.equal(ex.questionSpan[1], 200);
    }
    assert.deepEqual(makeNeedle({ seed: 9 }).tokens, makeNeedle({ seed: 9 }).tokens);
  });

  it('the separator between key and value: default the period, [] puts the value right after the key', () => {
    const base = { length: 60, depth: 0.5, seed: 5, periodToken: 1, keyMarker: [2, 3], questionMarker: [5, 2, 3], keyTokens: [40, 41, 42], valueTokens: [50, 51, 52] };
    const dflt = makeNeedle({ ...base, valueMarker: [4, 3] });
    const [s] = dflt.needleSpan;
    assert.deepEqual(dflt.tokens.slice(s, dflt.needleSpan[1]), [2, 3, dflt.key[0], 1, 4, 3, dflt.answer[0], 1]);
    const adj = makeNeedle({ ...base, valueMarker: [], separator: [], distractors: 2 });
    const [a, b] = adj.needleSpan;
    assert.deepEqual(adj.tokens.slice(a, b), [2, 3, adj.key[0], adj.answer[0], 1]);
    assert.deepEqual(adj.tokens.slice(adj.valueSpan[0], adj.valueSpan[1]), adj.answer);
    assert.deepEqual(adj.tokens.slice(adj.questionSpan[0]), [5, 2, 3, adj.key[0]], 'the question ends with the key');
    for (const d of adj.distractors!) assert.deepEqual(adj.tokens.slice(d.span[0], d.span[1]), [2, 3, d.key[0], d.value[0], 1]);
    assert.equal(adj.tokens.length, 60);
  });

  it('text needles with GPT-2 BPE and the 90% span rule', () => {
    const tokenizer = { encode: gpt2Encode };
    const hay = 'The cat sat on the mat. It was a sunny day. Birds were singing in the trees. ';
    const ex = needleFromText({
      tokenizer,
      haystack: hay,
      needle: ' The secret value is 7481.',
      question: ' What is the secret value? The secret value is',
      answer: ' 7481',
      contextLength: 120,
      depth: 0.4,
      bosId: 50256,
    });
    const [s, e] = ex.needleSpan;
    assert.equal(gpt2Decode(ex.tokens.slice(s, e)), ' The secret value is 7481.');
    assert.equal(gpt2Decode(ex.tokens.slice(s - 1, s)), '.');
    assert.equal(gpt2Decode(ex.tokens.slice(ex.valueSpan[0], ex.valueSpan[1])), ' 7481');
    assert.equal(ex.tokens.length, 1 + 120 + gpt2Encode(' What is the secret value? The secret value is').length);
    // The rule takes the FIRST window covering > 90% of the needle's token set: the window one to
    // the left holds the haystack's "." plus the needle's first 6 tokens, i.e. all 7 distinct ones.
    assert.deepEqual(findSpan(ex.tokens, gpt2Encode(' The secret value is 7481.')), [s - 1, e - 1]);
    assert.deepEqual(findSpan(ex.tokens, gpt2Encode(' The secret value is 7481')), [s, e - 1]);
    assert.equal(findSpan([1, 2, 3], [7, 8]), null);
  });
});

describe('repeated random tokens (induction, RazorAttention)', () => {
  it('BOS + block repeated n times, seeded, from the allowed range', () => {
    const r = repeatedTokens({ batch: 3, blockLength: 10, repeats: 3, dVocab: 50, bosId: 0, seed: 4 });
    assert.deepEqual(r.tokens, repeatedTokens({ batch: 3, blockLength: 10, repeats: 3, dVocab: 50, bosId: 0, seed: 4 }).tokens);
    for (const [b, seq] of r.tokens.entries()) {
      assert.equal(seq.length, 31);
      assert.equal(seq[0], 0);
      for (let i = 1; i < 31; i++) {
        assert.ok(seq[i] > 0 && seq[i] < 50);
        if (i > 10) assert.equal(seq[i], seq[i - 10]);
      }
      assert.deepEqual(seq.slice(1, 11), r.blocks[b]);
    }
    const d = repeatedTokens({ blockLength: 20, dVocab: 25, distinct: true, seed: 1 });
    assert.equal(new Set(d.blocks[0]).size, 20);
    assert.throws(() => repeatedTokens({ blockLength: 20, dVocab: 10, distinct: true }), ValueError);
  });

  it('RazorAttention input matches the echo/induction masks of src/analyses/razor (hand-checked small case)', () => {
    const r = razorAttentionInput({ blockLength: 5, dVocab: 30, bosId: 1, seed: 2 });
    assert.equal(r.tokens[0].length, 21);
    const { echo, induction } = razorMasks(7, { R: 2, rule: 'same-token' }); // BOS a b a b a b (earlier copies only; the default mod-r rule adds the BOS column)
    // query 5 (3rd "a"): previous copies of its token at 1 and 3; induction keys 2 and 4
    assert.deepEqual(echo[5], [0, 1, 0, 1, 0, 0, 0]);
    assert.deepEqual(induction[5], [0, 0, 1, 0, 1, 0, 0]);
    assert.deepEqual(echo[2], [0, 0, 0, 0, 0, 0, 0]);
    // masks agree with token identity on a real sequence
    const m = razorMasks(21, { R: 5 });
    const x = r.tokens[0];
    for (let i = 1; i < 21; i++) for (let j = 1; j < i; j++) if (m.echo[i][j]) assert.equal(x[j], x[i]);
  });
});
