/** tfl.util: seeded random numbers, the head-reference parser and the matrix check. */
export { rng, mulberry32, deriveSeed, type Rng } from '../util/random.js';
export { parseHead, headName, toMatrix } from '../util/grid.js';
export { progress, type Progress, type ProgressOptions } from '../progress.js';
