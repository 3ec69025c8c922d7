/**
 * tfl.retrieval: needle-in-a-haystack grids and the masking experiment, retrieval-head scores (Wu et
 * al.), ROUGE-1 recall as rouge_score computes it, and RazorAttention echo / induction heads. The NIAH
 * heatmaps are in tfl.plot. Defaults follow the authors' code: docs/methods/retrieval.md.
 */
export {
  niahGrid,
  maskingExperiment,
  syntheticSamples,
  sourceSamples,
  needleFromTokens,
  needleTask,
  type NiahGrid,
  type NiahGridOptions,
  type NiahSample,
  type NiahSampleFn,
  type NiahNeedle,
  type NiahSource,
  type MaskingOptions,
  type MaskingResult,
} from '../analyses/niah.js';
export type { NiahResult, NiahSampleResult } from '../results.js';
export {
  RetrievalScorer,
  scoreRetrievalSample,
  decodeWithKeys,
  needleSpan,
  newlineTokens,
  retrievalScoreStep,
  retrievalHeadScores,
  retrievalHeads,
  toRetrievalHeadJson,
  fromRetrievalHeadJson,
  mergeRetrievalHeadJson,
  headMaskHooks,
  randomControlHeads,
  type RetrievalVariant,
  type RetrievalScorerOptions,
  type RetrievalSample,
  type RetrievalSampleOptions,
  type KeyDecodeOptions,
  type KeyDecodeResult,
  type MaskScope,
} from '../analyses/retrieval.js';
export { porterStem, rougeTokenize, rougeRecall1, type RougeOptions } from '../analyses/rouge.js';
export {
  razorScoresForModel,
  razorScores,
  razorRetrievalHeads,
  razorMasks,
  razorInput,
  topFraction,
  type RazorMaskRule,
  type RazorAggregate,
  type RazorMaskOptions,
  type RazorScoreOptions,
  type RazorProbeOptions,
  type RazorScores,
  type TopFractionOptions,
} from '../analyses/razor.js';
