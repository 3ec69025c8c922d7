/** tfl.patching: patching problems and metrics, activation / path / attribution patching, ablations, circuit evaluation, resumable sweeps. */
export * from '../circuits/problem.js';
export * from '../circuits/patching.js';
export * from '../circuits/path.js';
export * from '../circuits/evaluate.js';
export * from '../circuits/resumable.js';
