/** tfl.data: task data generators: Bigram-Backcopy, needles, repeated tokens (induction), the token-group task, word-level tokenizers. */
export * from '../data/bigram-backcopy.js';
export * from '../data/needle.js';
export * from '../data/induction.js';
export * from '../data/token-group.js';
export * from '../data/tokenizer.js';
