/** Circuits: patching problems and metrics, activation / path / attribution patching, knockouts, circuit evaluation, resumable sweeps. */
export * from './problem.js';
export * from './patching.js';
export * from './path.js';
export * from './evaluate.js';
export * from './resumable.js';
