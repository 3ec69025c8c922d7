/** tfl.retrieval: needle-in-a-haystack decoding, retrieval-head scores (Wu et al.), ROUGE-1, RazorAttention. */
export * from '../analyses/niah.js';
export * from '../analyses/retrieval.js';
export * from '../analyses/rouge.js';
export * from '../analyses/razor.js';
