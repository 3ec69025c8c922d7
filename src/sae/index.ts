/** Sparse autoencoders (paper / ReLU / TopK), training, metrics, SAELens files and discrete-SAE circuit scores. */
export {
  SparseAutoencoder,
  paperSAE,
  reluSAE,
  topKSAE,
  initSAEArrays,
  type SAEArchitecture,
  type SAEOptions,
  type SAEWeights,
  type SAEForward,
  type SAELoss,
} from './models.js';
export { trainSAE, type TrainSAEOptions, type TrainSAEResult, type TrainProgress, type BatchFn } from './train.js';
export {
  saeMetrics,
  rocAuc,
  rocCurve,
  trapezoidAuc,
  tprTnrF1,
  bestTprTnrF1,
  groundTruthGrid,
  headScoresAuc,
  type SAEMetrics,
  type RocCurve,
  type TprTnr,
} from './metrics.js';
export {
  collectHeadOutputs,
  collectHeadOutputsMulti,
  collectActivations,
  normaliseHeads,
  type ActivationModel,
  type TokensInput,
  type MaskInput,
  type PositionMode,
  type HeadRef,
  type CollectHeadsOptions,
} from './collect.js';
export {
  argmaxCodes,
  uniqueCodeCounts,
  nodeScores,
  uniquePairCounts,
  edgeScores,
  HeadSAEs,
  saeCircuitScores,
  type CodeTable,
  type HeadLayout,
  type UniqueCodeCounts,
  type NodeScoreOptions,
  type EdgeScoreOptions,
  type HeadSAETrainOptions,
  type PromptSet,
  type SAECircuitOptions,
  type SAECircuitResult,
} from './discrete.js';
export { saveSAELens, loadSAELens, SAE_CFG_FILE, SAE_WEIGHTS_FILE, type SAELensSaveConfig, type SAELensConfig } from './saelens.js';
