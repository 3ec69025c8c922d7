/**
 * tflens: mechanistic interpretability for TypeScript notebooks.
 * The one public entry: everything a notebook or script needs is exported from here.
 */
export * as tf from '@tensorflow/tfjs';
export * from './errors.js';
export * from './results.js';
export { initBackend, backendReport, formatBackendReport, BACKEND_ORDER, type BackendName, type BackendReport, type BackendAttempt } from './backend/index.js';
export * from './hooks/index.js';
export * from './model/index.js';
export * from './io/index.js';
export * from './analyses/index.js';
export * from './plot/index.js';
export * from './sae/index.js';
// both plot and sae name a rocCurve: the figure keeps the name, the points are rocCurvePoints
export { rocCurve } from './plot/index.js';
export { rocCurve as rocCurvePoints } from './sae/index.js';
export * from './circuits/index.js';
export * from './tasks/index.js';
export { registeredKernels, einsumByOps } from './backend/kernels.js';
export { progress } from './progress.js';
export { rng, mulberry32, deriveSeed, type Rng } from './util/random.js';
