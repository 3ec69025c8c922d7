/** tfl.model: loading and saving, random models, generation, weight processing, families, tokenizer, the activation cache and batches. */
export * from '../model/index.js';
