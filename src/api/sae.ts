/** tfl.sae: sparse autoencoders, training, metrics, SAELens files and discrete-SAE circuit scores (O'Neill & Bui). */
export * from '../sae/index.js';
