import { strict as assert } from 'node:assert';
import { createRequire } from 'node:module';
import { progress, progressLine, tslabApi, isQuiet } from '../src/progress.js';
import { ValueError } from '../src/errors.js';

function fakeStream(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, write: (s: string) => writes.push(s) } };
}

function clock() {
  let t = 1000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('progress', () => {
  it('progressLine: bar, counts, percent, rate and eta', () => {
    assert.equal(progressLine('sweep', 25, 100, 5, 'loss=0.5', false, 8), 'sweep [##......] 25/100 25% 5.00 it/s eta 15s loss=0.5');
    assert.equal(progressLine('', 100, 100, 125, '', true, 4), '[####] 100/100 100% done in 2m05s');
    assert.equal(progressLine('x', 0, 10, 0, '', false, 2), 'x [..] 0/10 0% 0.00 it/s eta ?');
    // counting past the total keeps the bar full
    assert.equal(progressLine('', 12, 10, 1, '', false, 2), '[##] 12/10 100% 12 it/s eta 0.0s');
  });

  it('on a terminal: one line rewritten with \\r, throttled, newline at done', () => {
    const { writes, stream } = fakeStream(true);
    const c = clock();
    const p = progress(4, { label: 'L', stream, now: c.now, minIntervalMs: 100 });
    assert.equal(writes.length, 1); // initial draw
    p.tick();
    assert.equal(writes.length, 1, 'throttled: no redraw within 100 ms');
    c.advance(150);
    p.tick(2, { loss: 0.123456, step: 3 });
    assert.equal(writes.length, 2);
    assert.ok(writes[1].startsWith('\rL ['));
    assert.ok(writes[1].includes('3/4 75%'));
    assert.ok(writes[1].endsWith('loss=0.1235 step=3'));
    c.advance(10);
    p.tick();
    p.done();
    p.done();
    p.tick();
    assert.equal(p.count, 4);
    assert.equal(writes.length, 3, 'done() always draws once; later calls are ignored');
    assert.ok(writes[2].startsWith('\r') && writes[2].endsWith('\n'));
    assert.ok(writes[2].includes('4/4 100% done in'));
    assert.ok(writes.every((w) => !w.slice(1, -1).includes('\n')));
  });

  it('in a pipe or file: full lines, sparse', () => {
    const { writes, stream } = fakeStream(false);
    const c = clock();
    const p = progress(1000, { stream, now: c.now });
    for (let i = 0; i < 1000; i++) {
      c.advance(20); // 20 s in all
      p.tick();
    }
    p.done();
    // start, every >= 5 s (4 times in 20 s), done
    assert.ok(writes.length >= 4 && writes.length <= 6, `${writes.length} lines`);
    assert.ok(writes.every((w) => w.endsWith('\n') && !w.includes('\r')));
    assert.ok(writes[writes.length - 1].includes('1000/1000 100% done in 20s'));
  });

  it('TFLENS_QUIET=1 silences it (and quiet: true)', () => {
    const saved = process.env.TFLENS_QUIET;
    process.env.TFLENS_QUIET = '1';
    try {
      assert.equal(isQuiet(), true);
      const { writes, stream } = fakeStream(true);
      const p = progress(3, { stream });
      p.tick(3);
      p.done();
      assert.equal(writes.length, 0);
      assert.equal(p.count, 3);
    } finally {
      if (saved === undefined) delete process.env.TFLENS_QUIET;
      else process.env.TFLENS_QUIET = saved;
    }
    process.env.TFLENS_QUIET = '0';
    assert.equal(isQuiet(), false);
    if (saved === undefined) delete process.env.TFLENS_QUIET;
    else process.env.TFLENS_QUIET = saved;
    const { writes, stream } = fakeStream(true);
    progress(1, { stream, quiet: true }).done();
    assert.equal(writes.length, 0);
  });

  it('rejects a bad total or tick count by name', () => {
    assert.throws(() => progress(NaN), (e: unknown) => e instanceof ValueError && /total/.test(e.message));
    assert.throws(() => progress(-1), ValueError);
    const p = progress(2, { quiet: true });
    assert.throws(() => p.tick(Infinity), (e: unknown) => e instanceof ValueError && /tick/.test(e.message));
  });

  it('in a tslab kernel: one display id, updated in place', () => {
    assert.equal(tslabApi(), null, 'not a kernel: no tslab display');
    const req = createRequire(import.meta.url);
    const jupyter = req('tslab/dist/jupyter.js') as { lastWriteDisplayData: unknown };
    const msgs: Array<{ html: string; id: unknown; update: boolean }> = [];
    jupyter.lastWriteDisplayData = (m: { data: Record<string, string>; transient: { display_id?: string } }, update: boolean) =>
      msgs.push({ html: m.data['text/html'], id: m.transient.display_id, update });
    try {
      assert.notEqual(tslabApi(), null);
      const c = clock();
      const p = progress(10, { label: 'sweep <heads>', now: c.now });
      for (let i = 0; i < 10; i++) {
        c.advance(300);
        p.tick();
      }
      p.done();
    } finally {
      jupyter.lastWriteDisplayData = null;
    }
    assert.equal(msgs.length, 12); // initial + 10 ticks (each 300 ms > 250 ms) + done
    assert.equal(new Set(msgs.map((m) => m.id)).size, 1);
    assert.equal(typeof msgs[0].id, 'string');
    assert.deepEqual(msgs.map((m) => m.update === true), [false, ...Array(11).fill(true)]);
    assert.ok(msgs[0].html.includes('<b>sweep &lt;heads&gt;</b>'));
    assert.ok(msgs[11].html.includes('<progress value="10" max="10"'));
    assert.ok(msgs[11].html.includes('10/10 100% done in 3.0s'));
  });
});
