/**
 * The README's code runs as written: each ```ts block that starts with `import * as tfl from 'tflens'`
 * (the quick start, the IOI example) runs as a Node script from a folder laid out like the repository
 * root, with synchronous readback forbidden; it must finish, leave no tensors behind, write the files
 * it says, and print what the README says it prints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const IMPORT = "import * as tfl from 'tflens';";

/** The README's runnable TypeScript blocks. */
function snippets(): string[] {
  return [...README.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => b.startsWith(IMPORT));
}

/** Run one snippet with 'tflens' bound to this checkout's sources; cwd holds `fixtures` like the repository root. */
function runSnippet(dir: string, name: string, code: string): { status: number | null; stdout: string; stderr: string } {
  const file = path.join(dir, name);
  writeFileSync(file, code.replace(IMPORT, `import * as tfl from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'src/index.ts')).href)};`));
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 240000,
    env: { ...process.env, TFLENS_FORBID_SYNC_READBACK: '1', TFLENS_BACKEND: process.env.TFLENS_BACKEND ?? '' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('README', function () {
  this.timeout(600000);
  let dir = '';

  before(() => {
    // inside the checkout, so that tsx and the dependencies resolve from node_modules
    mkdirSync(path.join(ROOT, '.tflens-tmp'), { recursive: true });
    dir = mkdtempSync(path.join(ROOT, '.tflens-tmp', 'readme-'));
    symlinkSync(path.join(ROOT, 'fixtures'), path.join(dir, 'fixtures'));
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shows the async namespaced API: no synchronous readback, no flat analysis names, no links outside the repository', () => {
    assert.equal(snippets().length, 2, 'the quick start and the IOI example');
    for (const code of snippets()) {
      assert.doesNotMatch(code, /dataSync|arraySync|bufferSync/);
      assert.doesNotMatch(code, /tfl\.(detectHead|headHeatmap|saveHeadScores|attentionGrid)\(/, 'analyses are namespaced');
    }
    assert.doesNotMatch(README, /\.\.\/shared|DESIGN\.md|METHODS\.md/);
    for (const [, link] of README.matchAll(/\]\((docs\/[^)#]+)/g)) assert.ok(existsSync(path.join(ROOT, link)), `README links ${link}`);
  });

  it('the quick start runs, exports the induction ranking and leaves no tensors behind', () => {
    const r = runSnippet(dir, 'quickstart.mts', snippets()[0]);
    assert.equal(r.status, 0, r.stderr.slice(0, 2000));
    assert.match(r.stdout, /^tflens runs on \w+/m);
    assert.match(r.stdout, /^tensors left behind: 0$/m);
    const csv = readFileSync(path.join(dir, 'induction.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'layer,head,score,std');
    assert.match(csv[1], /^1,0,/, 'the hand-set induction head 1.0 ranks first');
  });

  it('the IOI example runs, prints the numbers the README states, exports the ranking and leaves no tensors behind', () => {
    const r = runSnippet(dir, 'ioi.mts', snippets()[1]);
    assert.equal(r.status, 0, r.stderr.slice(0, 2000));
    assert.match(r.stdout, /^tensors left behind: 0$/m);
    const ld = Number(/logit difference (-?[\d.]+)/.exec(r.stdout)?.[1]);
    const stated = Number(/a logit difference of about ([\d.]+)/.exec(README)?.[1]);
    assert.ok(Math.abs(ld - stated) < 0.05, `logit difference ${ld}, the README says about ${stated}`);
    const rows = readFileSync(path.join(dir, 'ioi-head-patching.csv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split(',').map(Number));
    const m = /ranks heads (\d+\.\d+) and (\d+\.\d+) first \(about ([\d.]+) and ([\d.]+)\)/.exec(README)!;
    assert.deepEqual(rows.slice(0, 2).map(([l, h]) => `${l}.${h}`), [m[1], m[2]]);
    assert.ok(Math.abs(rows[0][2] - Number(m[3])) < 0.01 && Math.abs(rows[1][2] - Number(m[4])) < 0.01, `scores ${rows[0][2]}, ${rows[1][2]}`);
    const json = JSON.parse(readFileSync(path.join(dir, 'ioi-head-patching.json'), 'utf8')) as { rank_by: string; rows: { score: number }[] };
    assert.equal(json.rank_by, 'absolute');
    assert.equal(json.rows.length, rows.length);
  });
});
