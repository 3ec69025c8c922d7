/** tfl.heads: head detectors (previous-token, duplicate-token, induction, custom patterns; TransformerLens scores). */
export * from '../analyses/detectors.js';
