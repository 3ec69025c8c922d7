/**
 * Public API of the attention-statistics analyses: column means, attention sinks, hidden sinks,
 * massive activations / VAR sink tokens, active-dormant heads and head detectors.
 * Re-exported from src/analyses/index.ts.
 */
export {
  columnMean,
  rowEntropies,
  columnEntropies,
  headEntropies,
  tokenRows,
  maskRows,
  firstRealIndex,
} from './attention-stats.js';
export type { AnalysisModel, TokensLike, MaskLike, ColumnMeanOptions, ModelRunOptions } from './attention-stats.js';

export {
  sinkRates,
  sinkScores,
  residualNorms,
  keyValueNorms,
  hiddenSinks,
  hiddenSinksFromPatterns,
  hiddenSinkScores,
} from './sinks.js';
export type {
  SinkRateOptions,
  SinkRateResult,
  SinkScoreOptions,
  NormsResult,
  KeyValueNormsResult,
  HiddenSinkOptions,
  HiddenSinkResult,
} from './sinks.js';

export { massiveDims, varSinkTokens, varSinks } from './massive.js';
export type { MassiveDim, MassiveDimsResult, MassiveDimsOptions, VarSinkOptions, VarSinkResult, VarSinksOptions } from './massive.js';

export { bosStats, dormantTest, entropyDetector, entropyDormancy } from './dormant.js';
export type {
  BosStats,
  DormantDomain,
  DormantTestOptions,
  DormantStatus,
  DormantRow,
  DormantTestResult,
  EntropyDetectorOptions,
  EntropyDetectorResult,
} from './dormant.js';

export { DETECTOR_KINDS, detectionPattern, headSimilarity, detectorScores, detectHeads, detectHead } from './detectors.js';
export type { DetectorKind, CustomDetector, Detector, DetectorOptions, PatternDetectorOptions, ModelDetectorOptions } from './detectors.js';
