/** Mocha set-up shared by the WebGPU test files: make WebGPU the backend, or skip the suite without a device. */
import { BackendError } from '../../src/errors.js';
import { setupWebGPU } from '../../src/backend/webgpu/index.js';

type WebGPUInfo = Awaited<ReturnType<typeof setupWebGPU>>;

/** setupWebGPU(), or this.skip() (with a line saying why) when there is no WebGPU device; other errors throw. */
export async function webgpuOrSkip(ctx: Mocha.Context): Promise<WebGPUInfo> {
  try {
    return await setupWebGPU();
  } catch (e) {
    if (e instanceof BackendError) {
      console.log(`      skipped: no WebGPU device (${e.message})`);
      ctx.skip();
    }
    throw e;
  }
}
