import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { backendLine, backendReport, formatBackendReport, initBackend } from '../src/backend/index.js';
import { BackendError } from '../src/errors.js';

const BACKEND_SRC = pathToFileURL(path.resolve('src/backend/index.ts')).href;

/** Run a plain node script (through tsx, so it imports the sources) and return its exit status and stderr. */
function runScript(dir: string, name: string, body: string): { status: number | null; stderr: string } {
  const file = path.join(dir, name);
  writeFileSync(file, `import { initBackend } from ${JSON.stringify(BACKEND_SRC)};\nawait initBackend('wasm');\n${body}\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8', timeout: 60000, env: { ...process.env, TFLENS_BACKEND: '' } });
  return { status: r.status, stderr: r.stderr };
}

describe('backend', () => {
  it('reports the active backend and why others were skipped', () => {
    const r = backendReport();
    assert.ok(r);
    assert.equal(r.tfjsBackend, tf.getBackend());
    const text = formatBackendReport(r);
    assert.match(text, new RegExp(`backend: ${r.active}`));
    // tfjs-node is not installable here: when it was tried, its skip reason is reported
    const node = r.attempts.find((a) => a.name === 'node');
    if (node) assert.match(node.reason, /not installed|failed/);
  });

  it('backendLine: one line naming the backend and why (an absent optional package in a few words)', () => {
    const r = backendReport()!;
    const line = backendLine(r);
    assert.doesNotMatch(line, /\n/);
    assert.match(line, new RegExp(`^tflens runs on ${r.active}`));
    for (const a of r.attempts.filter((x) => !x.ok)) assert.ok(line.includes(`${a.name}: ${a.reason}`), `${a.name} in ${line}`);
    const node = r.attempts.find((a) => a.name === 'node');
    if (node && /not installed/.test(node.reason)) assert.equal(node.reason, '@tensorflow/tfjs-node not installed');
  });

  it('rejects an unknown forced backend with a typed error', async () => {
    await assert.rejects(initBackend('tpu' as any), (e: unknown) => e instanceof BackendError && /unknown backend "tpu"/.test((e as Error).message));
  });

  it("an uncaught error in a plain node script after initBackend on wasm is Node's own report, not a stack inside the wasm bundle", function () {
    this.timeout(120000);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tflens-uncaught-'));
    try {
      const cases = [
        ['throw.mts', "throw new Error('boom after initBackend');", /Error: boom after initBackend\n\s+at .*throw\.mts:3/],
        ['timer.mts', "setTimeout(() => { throw new RangeError('late boom'); }, 5);", /RangeError: late boom\n\s+at .*timer\.mts:3/],
        ['reject.mts', "Promise.reject(new TypeError('rejected'));", /TypeError: rejected\n\s+at .*reject\.mts:3/],
      ] as const;
      for (const [name, body, report] of cases) {
        const r = runScript(dir, name, body);
        const head = r.stderr.slice(0, 300); // a report from inside the bundle prints the whole minified file
        assert.equal(r.status, 1, `${name}: exit status (stderr: ${head})`);
        assert.match(r.stderr, report, `${name}: ${head}`);
        // the wasm backend's Emscripten handlers would rethrow from tf-backend-wasm.node.js and print its source line
        assert.doesNotMatch(r.stderr, /tfjs-backend-wasm|tf-backend-wasm/, `${name}: ${head}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
