import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { encode as gpt2Encode, decode as gpt2Decode } from 'gpt-3-encoder';
import {
  ABBA_TEMPLATES,
  ABC_TEMPLATES,
  BABA_TEMPLATES,
  IOI_POSITIONS,
  NAMES,
  OBJECTS,
  PLACES,
  batchPositions,
  generateIOI,
  ioiCorrupted,
  logitDiff,
  normalisedMetric,
  singleTokenNames,
  templateGroups,
  type IOICorruptionRule,
  type IOIDataset,
  type IOITokenizer,
} from '../src/data/ioi.js';
import { ConfigError, ValueError } from '../src/errors.js';
import { runPort } from './helpers/port.js';

/** A simple tokenizer: words with their leading space, and punctuation, ids assigned on first sight. */
function whitespaceTokenizer(): IOITokenizer & { vocab: string[] } {
  const ids = new Map<string, number>();
  const vocab: string[] = ['<bos>'];
  ids.set('<bos>', 0);
  return {
    vocab,
    bosTokenId: 0,
    encode(text: string): number[] {
      const pieces = text.match(/ ?[A-Za-z]+| ?[.,]/g) ?? [];
      return pieces.map((p) => {
        if (!ids.has(p)) {
          ids.set(p, vocab.length);
          vocab.push(p);
        }
        return ids.get(p)!;
      });
    },
    decode(t: number[]) {
      return t.map((i) => vocab[i]).join('');
    },
  };
}

const gpt2: IOITokenizer = { encode: gpt2Encode, decode: gpt2Decode, bosTokenId: 50256 };

/** Independent check of the positions: split the prompt into words by hand. */
function checkPositionsByWords(ds: IOIDataset, i: number, tok: IOITokenizer) {
  const t = ds.tokens[i];
  const w = ds.wordIdx;
  const dec = (p: number) => tok.decode!([t[p]]);
  assert.equal(dec(w.IO[i]), ' ' + ds.ioNames[i], `IO of ${ds.prompts[i]}`);
  assert.equal(dec(w.S[i]), ' ' + ds.s1Names[i], `S of ${ds.prompts[i]}`);
  assert.equal(dec(w.S2[i]), ' ' + ds.sNames[i], `S2 of ${ds.prompts[i]}`);
  assert.ok(w.S2[i] > w.S[i] && w.S2[i] > w.IO[i]);
  assert.equal(w['IO-1'][i], w.IO[i] - 1);
  assert.equal(w['IO+1'][i], w.IO[i] + 1);
  assert.equal(w['S-1'][i], w.S[i] - 1);
  assert.equal(w['S+1'][i], w.S[i] + 1);
  assert.equal(w.end[i], t.length - 1);
  assert.equal(w.starts[i], 0);
  const text = ds.texts[i];
  const punctChar = text.includes('.') ? '.' : ',';
  assert.equal(dec(w.punct[i]), punctChar);
  // it is the first such token
  for (let p = 0; p < w.punct[i]; p++) assert.notEqual(dec(p), punctChar);
  // the prompt decodes back (after the BOS)
  assert.equal(tok.decode!(t.slice(ds.prependBos ? 1 : 0)), ds.prompts[i]);
  assert.equal(ds.prompts[i] + ' ' + ds.ioNames[i], text);
}

describe('IOI dataset', () => {
  it("has the templates, places, objects and names of the authors' dataset code", () => {
    assert.equal(BABA_TEMPLATES.length, 15);
    assert.equal(ABBA_TEMPLATES.length, 15);
    assert.equal(ABC_TEMPLATES.length, 4);
    // The authors' NAMES list holds 99 names.
    assert.equal(NAMES.length, 99);
    assert.equal(new Set(NAMES).size, 99);
    assert.deepEqual([...PLACES], ['store', 'garden', 'restaurant', 'school', 'hospital', 'office', 'house', 'station']);
    assert.deepEqual([...OBJECTS], ['ring', 'kiss', 'bone', 'basketball', 'computer', 'necklace', 'drink', 'snack']);
    assert.equal(BABA_TEMPLATES[0], 'Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to [A]');
    assert.equal(BABA_TEMPLATES[13], 'The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to [A]');
    // ABBA: the first clause's names swapped, the rest untouched
    assert.equal(ABBA_TEMPLATES[0], 'Then, [A] and [B] went to the [PLACE]. [B] gave a [OBJECT] to [A]');
    assert.equal(ABBA_TEMPLATES[4], 'Then, [A] and [B] had a long argument, and afterwards [B] said to [A]');
    assert.equal(ABBA_TEMPLATES[13], 'The [PLACE] [A] and [B] went to had a [OBJECT]. [B] gave it to [A]');
    for (let i = 0; i < 15; i++) {
      assert.equal(ABBA_TEMPLATES[i].replace('[A]', '#').replace('[B]', '[A]').replace('#', '[B]'), BABA_TEMPLATES[i]);
    }
    // the first, last and a middle name of the authors' NAMES list (easy_transformer/ioi_dataset.py lines 17-117)
    assert.deepEqual([NAMES[0], NAMES[50], NAMES[98]], ['Michael', 'Michelle', 'Samuel']);
  });

  it('all the names are one GPT-2 token with the leading space', () => {
    assert.equal(singleTokenNames(gpt2).length, NAMES.length);
  });

  it('is seeded and reproducible; different seeds differ', () => {
    const tok = whitespaceTokenizer();
    const a = generateIOI(tok, { n: 50, seed: 7 });
    const b = generateIOI(tok, { n: 50, seed: 7 });
    const c = generateIOI(tok, { n: 50, seed: 8 });
    assert.deepEqual(a.prompts, b.prompts);
    assert.deepEqual(a.tokens, b.tokens);
    assert.notDeepEqual(a.prompts, c.prompts);
  });

  it('draws templates uniformly over BABA+ABBA, distinct names, and fills them', () => {
    const tok = whitespaceTokenizer();
    const ds = generateIOI(tok, { n: 3000, seed: 1, prependBos: false });
    const counts = new Map<string, number>();
    ds.templateKinds.forEach((k, i) => counts.set(`${k}${ds.templateIds[i]}`, (counts.get(`${k}${ds.templateIds[i]}`) ?? 0) + 1));
    assert.equal(counts.size, 30);
    // each of 30 templates expected 100 times; binomial sd ~ 9.8
    for (const [k, v] of counts) assert.ok(v > 50 && v < 150, `template ${k} drawn ${v} times`);
    for (let i = 0; i < ds.prompts.length; i++) {
      assert.notEqual(ds.ioNames[i], ds.sNames[i]);
      assert.notEqual(ds.cNames[i], ds.sNames[i]);
      assert.notEqual(ds.cNames[i], ds.ioNames[i]);
      const tpl = (ds.templateKinds[i] === 'BABA' ? BABA_TEMPLATES : ABBA_TEMPLATES)[ds.templateIds[i]];
      const expected = tpl
        .split('[A]')
        .join(ds.ioNames[i])
        .split('[B]')
        .join(ds.sNames[i])
        .split('[PLACE]')
        .join(ds.places[i])
        .split('[OBJECT]')
        .join(ds.objects[i]);
      assert.equal(ds.texts[i], expected);
      assert.ok(!ds.prompts[i].includes('['));
    }
    // ABBA prompts put IO first, BABA put S first
    for (let i = 0; i < ds.prompts.length; i++) {
      if (ds.templateKinds[i] === 'ABBA') assert.ok(ds.wordIdx.IO[i] < ds.wordIdx.S[i]);
      else assert.ok(ds.wordIdx.S[i] < ds.wordIdx.IO[i]);
    }
  });

  it('word_idx is right for a whitespace tokenizer', () => {
    const tok = whitespaceTokenizer();
    const ds = generateIOI(tok, { n: 200, seed: 3 });
    for (let i = 0; i < 200; i++) checkPositionsByWords(ds, i, tok);
    // hand-checked case: BABA template 0 with BOS
    const one = generateIOI(tok, { n: 400, seed: 11, promptType: 'BABA' });
    const k = one.templateIds.indexOf(0);
    // "<bos> Then , B and A went to the P . B gave a O to"
    assert.deepEqual(
      IOI_POSITIONS.map((p) => one.wordIdx[p][k]),
      [5, 4, 6, 3, 2, 4, 11, 15, 0, 10],
    );
  });

  it('word_idx is right for GPT-2 BPE (gpt-3-encoder), all templates and ABC', () => {
    const ds = generateIOI(gpt2, { n: 300, seed: 5 });
    for (let i = 0; i < 300; i++) checkPositionsByWords(ds, i, gpt2);
    assert.equal(ds.tokens[0][0], 50256);
    const abc = generateIOI(gpt2, { n: 40, seed: 5, promptType: 'ABC' });
    for (let i = 0; i < 40; i++) checkPositionsByWords(abc, i, gpt2);
    // spot check a known GPT-2 tokenisation: "Then, Mary and John went to the store. Mary gave a ring to"
    const ids = gpt2Encode('Then, Mary and John went to the store.');
    assert.deepEqual(ids.map((i) => gpt2Decode([i])), ['Then', ',', ' Mary', ' and', ' John', ' went', ' to', ' the', ' store', '.']);
  });

  it('symmetric mode gives pairs with A and B swapped', () => {
    const ds = generateIOI(gpt2, { n: 40, seed: 2, symmetric: true });
    for (let i = 0; i < 40; i += 2) {
      assert.equal(ds.ioNames[i], ds.sNames[i + 1]);
      assert.equal(ds.sNames[i], ds.ioNames[i + 1]);
      assert.equal(ds.templateIds[i], ds.templateIds[i + 1]);
      assert.equal(ds.templateKinds[i], ds.templateKinds[i + 1]);
      assert.equal(ds.places[i], ds.places[i + 1]);
      assert.equal(ds.objects[i], ds.objects[i + 1]);
      assert.deepEqual(ds.wordIdx.end[i], ds.wordIdx.end[i + 1]);
    }
    assert.throws(() => generateIOI(gpt2, { n: 5, symmetric: true }), ValueError);
  });

  it("ABC corrupted set, rule 'distinct': three distinct names at IO, S1, S2, same positions and lengths", () => {
    const ds = generateIOI(gpt2, { n: 100, seed: 4 });
    const abc = ioiCorrupted(ds, gpt2, { seed: 9, rule: 'distinct' });
    assert.equal(abc.corruptionRule, 'distinct');
    assert.deepEqual(abc.flips, [['IO', 'RAND'], ['S', 'RAND'], ['S1', 'RAND']]);
    for (let i = 0; i < 100; i++) {
      const t = abc.tokens[i];
      const w = ds.wordIdx;
      assert.equal(new Set([t[w.IO[i]], t[w.S[i]], t[w.S2[i]]]).size, 3, abc.prompts[i]);
      assert.notEqual(abc.ioNames[i], ds.ioNames[i]);
      assert.notEqual(abc.sNames[i], ds.sNames[i]);
      assert.equal(t.length, ds.tokens[i].length);
      // everything but the three name positions is unchanged
      for (let p = 0; p < t.length; p++) {
        if (p === w.IO[i] || p === w.S[i] || p === w.S2[i]) continue;
        assert.equal(t[p], ds.tokens[i][p]);
      }
      checkPositionsByWords(abc, i, gpt2);
    }
    assert.deepEqual(ioiCorrupted(ds, gpt2, { seed: 9, rule: 'distinct' }).prompts, abc.prompts);
    assert.deepEqual(templateGroups(abc), templateGroups(ds));
  });

  it("ABC corrupted set, the authors' rule (default 'redwood'): recorded on the dataset; only name slots change; seeded", () => {
    const ds = generateIOI(gpt2, { n: 200, seed: 4 });
    const abc = ioiCorrupted(ds, gpt2, { seed: 9 });
    assert.equal(abc.corruptionRule, 'redwood');
    assert.deepEqual(ioiCorrupted(ds, gpt2, { seed: 9 }).prompts, abc.prompts);
    for (let i = 0; i < 200; i++) {
      const t = abc.tokens[i];
      const w = ds.wordIdx;
      assert.equal(t.length, ds.tokens[i].length);
      for (let p = 0; p < t.length; p++) if (p !== w.IO[i] && p !== w.S[i] && p !== w.S2[i]) assert.equal(t[p], ds.tokens[i][p]);
      // IO->RAND never keeps the IO nor takes the clean S (the authors' redraw loop)
      assert.ok(abc.ioNames[i] !== ds.ioNames[i] && abc.ioNames[i] !== ds.sNames[i]);
      assert.equal(abc.texts[i].split(' ').pop(), abc.ioNames[i]);
    }
    assert.throws(() => ioiCorrupted(ds, gpt2, { rule: 'other' as IOICorruptionRule }), ValueError);
    assert.throws(() => ioiCorrupted(ds, gpt2, { flips: [['X' as 'IO', 'RAND']] }), /flips\[0\]/);
  });

  it("ABC name collisions: under the authors' rule at the rates of their code (numpy port) and of its arithmetic, never under 'distinct'", function () {
    this.timeout(120000);
    const tok = whitespaceTokenizer();
    const n = 6000;
    const ds = generateIOI(tok, { n, seed: 21, prependBos: false });
    /** Word indices of the IO, S1 and S2 slots of each clean sentence. */
    const slots = ds.texts.map((t, i) => {
      const w = t.split(' ');
      return { io: w.indexOf(ds.ioNames[i]), s1: w.indexOf(ds.sNames[i]), s2: w.lastIndexOf(ds.sNames[i]) };
    });
    const stats = (texts: string[]) => {
      const c = { ioS2: 0, s1S2: 0, ioS1: 0, sKept: 0 };
      texts.forEach((t, i) => {
        const w = t.split(' ');
        const { io, s1, s2 } = slots[i];
        c.ioS2 += +(w[io] === w[s2]);
        c.s1S2 += +(w[s1] === w[s2]);
        c.ioS1 += +(w[io] === w[s1]);
        c.sKept += +(w[s2] === ds.sNames[i]);
      });
      return c;
    };
    const port = runPort<{ prompts: { text: string }[] }>('ioi_corruption', {
      prompts: ds.texts.map((text, i) => ({ text, IO: ds.ioNames[i], S: ds.sNames[i] })),
      names: ds.names,
      seed: 5,
    });
    const theirs = stats(port.prompts.map((x) => x.text));
    const ours = stats(ioiCorrupted(ds, tok, { seed: 5 }).texts);
    const distinct = stats(ioiCorrupted(ds, tok, { seed: 5, rule: 'distinct' }).texts);
    // Rates of the authors' rule (p = 1 / |names|, one uniform draw hitting one given name): S1 = S2 and
    // IO = S1 and S kept are single hits (p); the new S equal to the new IO (p) lasts only in BABA prompts,
    // since in ABBA prompts S1->RAND then rewrites the first occurrence of that name, the IO slot, which
    // leaves S1 = S2 instead (p + p * share of ABBA). Second-order terms (p^2 n < 1) are left out.
    const p = 1 / ds.names.length;
    const abba = ds.templateKinds.filter((k) => k === 'ABBA').length / n;
    const expected = { ioS2: p * (1 - abba), s1S2: p * (1 + abba), ioS1: p, sKept: p };
    for (const k of Object.keys(ours) as (keyof typeof ours)[]) {
      const sd = Math.sqrt(n * expected[k] * (1 - expected[k]));
      assert.ok(Math.abs(theirs[k] - n * expected[k]) < 4 * sd, `port ${k}: ${theirs[k]} vs ${n * expected[k]}`);
      assert.ok(Math.abs(ours[k] - n * expected[k]) < 4 * sd, `ours ${k}: ${ours[k]} vs ${n * expected[k]}`);
      assert.ok(Math.abs(ours[k] - theirs[k]) < 4 * Math.SQRT2 * sd, `${k}: ours ${ours[k]}, port ${theirs[k]}`);
      assert.equal(distinct[k], 0, `distinct ${k}`);
    }
  });

  it('drops names that are not single tokens, with a warning', () => {
    const tok: IOITokenizer = {
      bosTokenId: 0,
      encode: (t: string) => (t.includes('Christopher') ? [1, 2] : gpt2Encode(t)),
    };
    const warn = console.warn;
    let warned = '';
    console.warn = (m: string) => (warned += m);
    try {
      const names = singleTokenNames(tok);
      assert.equal(names.length, NAMES.length - 1);
      assert.ok(!names.includes('Christopher'));
      assert.match(warned, /Christopher/);
    } finally {
      console.warn = warn;
    }
  });

  it('rejects bad options by name', () => {
    assert.throws(() => generateIOI({ encode: gpt2Encode }, { n: 2 }), ConfigError);
    assert.throws(() => generateIOI(gpt2, { n: 0 }), ValueError);
  });

  it('logitDiff reads IO-S at the end position (left padding) and leaks nothing', async () => {
    const tok = whitespaceTokenizer();
    const ds = generateIOI(tok, { n: 4, seed: 6 });
    const V = tok.vocab.length + 5;
    const P = Math.max(...ds.tokens.map((t) => t.length)) + 2;
    // logits[i][p][v] = 0.01 * (i + 1) * v + p, so IO - S = 0.01 (i + 1) (io - s)
    const arr = Array.from({ length: 4 }, (_, i) =>
      Array.from({ length: P }, (_, p) => Array.from({ length: V }, (_, v) => 0.01 * (i + 1) * v + p * (v === ds.ioTokens[i] ? 1 : 0))),
    );
    const ends = batchPositions(ds, 'end', P, 'left');
    assert.deepEqual(ends, [P - 1, P - 1, P - 1, P - 1]);
    const expected = ds.ioTokens.map((io, i) => 0.01 * (i + 1) * (io - ds.sTokens[i]) + (P - 1));
    const fromArr = await logitDiff(arr, ds);
    fromArr.perPrompt.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) < 1e-9));
    const t = tf.tensor3d(arr);
    const before = tf.memory().numTensors;
    const fromT = await logitDiff(t, ds);
    assert.equal(tf.memory().numTensors, before);
    fromT.perPrompt.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) < 1e-3));
    assert.ok(Math.abs(fromT.mean - expected.reduce((a, b) => a + b) / 4) < 1e-3);
    // right padding reads at wordIdx.end
    const right = await logitDiff(t, ds, { padding: 'right' });
    right.perPrompt.forEach((x, i) => assert.ok(Math.abs(x - (0.01 * (i + 1) * (ds.ioTokens[i] - ds.sTokens[i]) + ds.wordIdx.end[i])) < 1e-3));
    t.dispose();
    const z = tf.zeros([3, P, V]);
    await assert.rejects(logitDiff(z, ds), /logitDiff/);
    z.dispose();
  });

  it('normalisedMetric', () => {
    assert.equal(normalisedMetric(2, 4, 0), 0.5);
    assert.deepEqual(normalisedMetric([0, 4, 5], 4, 0), [0, 1, 1.25]);
    assert.equal(normalisedMetric(-1, 1, -3), 0.5);
    assert.throws(() => normalisedMetric(1, 2, 2), ValueError);
    assert.throws(() => normalisedMetric(NaN, 2, 1), ValueError);
  });
});

describe('IOI dataset: template subsets', () => {
  it('templates restricts the drawn templates, and an empty selection is a typed error', () => {
    const tok = whitespaceTokenizer();
    const ds = generateIOI(tok, { n: 40, seed: 3, promptType: 'BABA', templates: [0, 5] });
    assert.deepEqual([...new Set(ds.templateIds)].sort((a, b) => a - b), [0, 5]);
    ds.prompts.forEach((p, i) => assert.ok(p.startsWith(ds.templateIds[i] === 0 ? 'Then, ' : 'After ')));
    assert.throws(() => generateIOI(tok, { n: 4, promptType: 'BABA', templates: [99] }), ValueError);
  });
});
