/** tfl.io: safetensors, HF hub and cache resolution, CSV / JSON / NPY export, atomic writes, sweep stores. */
export * from '../io/index.js';
