/** Circuits: task datasets, patching problems and metrics, activation / path / attribution patching, circuit evaluation. */
export * from '../data/ioi.js';
export * from './problem.js';
export { runSync, runAsync, repeatRows, tileRows, type Steps, type Values } from '../backend/readback.js';
export * from './patching.js';
export * from './path.js';
export * from './evaluate.js';
export * from './resumable.js';
