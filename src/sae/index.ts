/**
 * Sparse autoencoders (paper / ReLU / TopK), training, metrics, SAELens files and the discrete-SAE
 * circuit method (O'Neill & Bui). What a notebook needs; internals (the matmul with a custom gradient,
 * numpy's argsort, initialisation arrays) stay in their modules.
 */
export { SparseAutoencoder, paperSAE, reluSAE, topKSAE, type SAEArchitecture, type SAEOptions, type SAEWeights, type SAEForward, type SAELoss } from './models.js';
export { trainSAE, type TrainSAEOptions, type TrainSAEResult, type TrainProgress, type BatchFn } from './train.js';
export {
  saeMetrics,
  rocAuc,
  rocCurve,
  tprTnrF1,
  bestTprTnrF1,
  groundTruthGrid,
  headScoresAuc,
  type SAEMetrics,
  type RocCurve,
  type RocOptions,
  type TprTnr,
} from './metrics.js';
export { collectHeadOutputs, collectActivations, type PositionMode, type HeadRef, type CollectHeadsOptions } from './collect.js';
export {
  argmaxCodes,
  saeCodes,
  uniqueCodeCounts,
  nodeScores,
  uniquePairCounts,
  edgeScores,
  collectCircuitActivations,
  scoreCircuitActivations,
  saeCircuitScores,
  type CodeTable,
  type HeadLayout,
  type UniqueCodeCounts,
  type NodeScoreOptions,
  type EdgeScoreOptions,
  type EdgeTieOrder,
  type CircuitActivations,
  type SAESetup,
  type SAECircuitOptions,
  type SAECircuitResult,
} from './discrete.js';
export {
  saveSAELens,
  loadSAELens,
  parseSAELensConfig,
  SAELensSAE,
  SAE_CFG_FILE,
  SAE_WEIGHTS_FILE,
  SAELENS_FORMAT_VERSION,
  type SAELensSaveConfig,
  type SAELensConfig,
  type SAELensArchitecture,
  type SAELensNormalization,
  type SAELensForward,
} from './saelens.js';
