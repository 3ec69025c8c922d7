// Mocha root hooks: every test file runs on the backend chosen by TFLENS_BACKEND (default: best available),
// with synchronous readback of computed tensors forbidden (as on WebGPU) unless TFLENS_FORBID_SYNC_READBACK=0.
import { initBackend } from '../src/backend/index.js';

process.env.TFLENS_FORBID_SYNC_READBACK ??= '1';

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60000);
    await initBackend();
  },
};
