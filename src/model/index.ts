export { HookedTransformer, activation, type Tokens, type Mask, type KVCache, type ForwardOptions, type ForwardResult, type NamesFilter } from './hooked.js';
export { loadModel, saveModel, randomModel, supportedArchitectures, describeModel, type LoadOptions } from './load.js';
export { generate, generateAsync, evict, disposeKV, type GenerateOptions, type GenerateResult, type StreamingOptions } from './generate.js';
export { foldLn, centerWritingWeights, centerUnembed, foldValueBiases, processWeights, type ProcessOptions } from './processing.js';
export { normalizeConfig, familyFor, FAMILIES } from './families/index.js';
export type { ModelConfig, Architecture, ActFn } from './config.js';
export { Tokenizer } from './tokenizer.js';
