/** Public API of ACT/VAR calibration, retrieval-head scores, ROUGE-1 recall and RazorAttention scores. */
export {
  defaultCalibLayers,
  actColumnMeans,
  actHiddenSinks,
  calibrateACT,
  calibrateACTBatched,
  actHiddenSinksBatched,
  actHook,
  selectACTHeads,
  evaluateACT,
  redistributeVAR,
  imageCentricRows,
  imageCentricMask,
  redistributeVARBatched,
  imageCentricHeads,
  sinkDimensions,
  sinkTokenMask,
  varHook,
} from './calibration.js';
export type {
  CalibHookFn,
  CalibFwdHook,
  CalibModelLike,
  ACTOptions,
  ACTBatchedOptions,
  ACTHookOptions,
  SelectACTOptions,
  ACTSelectionStep,
  ACTSelection,
  TokenGroup,
  VAROptions,
  ImageCentricOptions,
  VARBatchedOptions,
  VARHookOptions,
} from './calibration.js';
export {
  needleSpan,
  retrievalScoreStep,
  lastRowArgmax,
  RetrievalScorer,
  retrievalHeadScores,
  retrievalHeads,
  toRetrievalHeadJson,
  fromRetrievalHeadJson,
  mergeRetrievalHeadJson,
  scoreRetrievalSample,
  headMaskHooks,
  randomControlHeads,
} from './retrieval.js';
export type { RetrievalVariant, RetrievalScorerOptions, RetrievalSample, RetrievalSampleOptions } from './retrieval.js';
export { porterStem, rougeTokenize, rougeRecall1 } from './rouge.js';
export type { RougeOptions } from './rouge.js';
export { razorMasks, razorInput, razorScores, razorScoresForModel, topFraction, razorRetrievalHeads } from './razor.js';
export type { RazorMaskOptions, RazorScoreOptions, RazorScores } from './razor.js';
