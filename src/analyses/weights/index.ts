/** Weight-space analyses: factored circuits, copying scores, composition scores, PCA. */
export {
  FactoredMatrix,
  WeightReader,
  asMatrix,
  readMatrix,
  fromFlat,
  toFlat32,
  thinQR,
  eigenvaluesOf,
  frobSqFactored,
  leftFactor,
  rightFactor,
  kvHead,
  QK,
  OV,
} from './factored.js';
export type { MatrixInput, FactoredSVD, Eigenvalues, Params } from './factored.js';
export { resolveWeights, withWeights, embedUnembed, ovCircuit, qkCircuit, ovFullCircuit, qkFullCircuit } from './circuits.js';
export type { WeightsSource, ResolvedWeights, FullCircuitOptions } from './circuits.js';
export { copyingScore, headCopyingScore, copyingScores, copyingParts, ovTokenEigenvalues } from './copying.js';
export type { CopyingMeasure, CopyingParts, CopyingScoresOptions } from './copying.js';
export {
  compositionScore,
  compositionScores,
  allCompositionScores,
  headCompositionScore,
  receivingCircuit,
  compositionBaseline,
} from './composition.js';
export type { CompositionMode, CompositionRow, CompositionResult, CompositionOptions } from './composition.js';
export { pca, pcaProject } from './pca.js';
export type { PCAOptions, PCAResult } from './pca.js';
