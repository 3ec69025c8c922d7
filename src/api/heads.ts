/** tfl.heads: head detectors with TransformerLens's scores (previous-token, duplicate-token, induction, sink, custom patterns). */
export { DETECTOR_KINDS, detectionPattern, headSimilarity, detectorScores, detectHeads, detectHead } from '../analyses/detectors.js';
export type { DetectorKind, CustomDetector, Detector, DetectorOptions, ModelDetectorOptions } from '../analyses/detectors.js';
