/** Synthetic tasks (Bigram-Backcopy, needle retrieval, induction), tokenizer.json builders and the training loop. */
export * from './bigram-backcopy.js';
export * from './needle.js';
export * from './induction.js';
export * from './tokenizer.js';
export * from './train.js';
export * from './model-zoo.js';
export * from './token-group.js';
