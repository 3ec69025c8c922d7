/** tfl.weights: weight-space circuits: FactoredMatrix, QK/OV circuits, composition and copying scores, PCA. */
export * from '../analyses/weights/index.js';
