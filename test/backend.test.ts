import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { backendReport, formatBackendReport, initBackend } from '../src/backend/index.js';
import { BackendError } from '../src/errors.js';

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
  it('rejects an unknown forced backend with a typed error', async () => {
    await assert.rejects(initBackend('tpu' as any), (e: unknown) => e instanceof BackendError && /unknown backend "tpu"/.test((e as Error).message));
  });
});
