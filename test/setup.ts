// Mocha root hooks: every test file runs on the backend chosen by TFLENS_BACKEND (default: best available).
import { initBackend } from '../src/backend/index.js';

export const mochaHooks = {
  async beforeAll(this: Mocha.Context) {
    this.timeout(60000);
    await initBackend();
  },
};
