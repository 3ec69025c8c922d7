/**
 * tflens: mechanistic interpretability for TypeScript notebooks.
 *
 * A small flat core (the model, hook names, results, the backend, display, errors) and one namespace
 * per topic: tfl.sinks, tfl.dormant, tfl.heads, tfl.retrieval, tfl.calibration, tfl.weights, tfl.stats,
 * tfl.patching, tfl.ioi, tfl.sae, tfl.plot, tfl.io, tfl.data, tfl.zoo, tfl.model, tfl.backend, tfl.util, tfl.sweep.
 */
export * as tf from '@tensorflow/tfjs';
export * from './errors.js';
export { makeHeadScores, rankHeads, topHeads, type HeadScores, type HeadRow } from './results.js';
export { initBackend, backendLine, formatBackendReport, type BackendName } from './backend/index.js';
export { actName, type HookName, type BlockHookName, type GlobalHookName } from './hooks/names.js';
export type { HookFn, HookSpec, HookContext } from './hooks/registry.js';
export { HookedTransformer, type ForwardOptions, type CacheOptions } from './model/hooked.js';
export { ActivationCache } from './model/cache.js';
export { loadModel, type LoadOptions } from './model/load.js';
export type { ModelView, Batch } from './model/view.js';
export type { ModelConfig } from './model/config.js';
export { show } from './plot/html.js';

export * as sinks from './api/sinks.js';
export * as dormant from './api/dormant.js';
export * as heads from './api/heads.js';
export * as retrieval from './api/retrieval.js';
export * as calibration from './api/calibration.js';
export * as weights from './api/weights.js';
export * as stats from './api/stats.js';
export * as patching from './api/patching.js';
export * as ioi from './api/ioi.js';
export * as sae from './api/sae.js';
export * as plot from './api/plot.js';
export * as io from './api/io.js';
export * as data from './api/data.js';
export * as zoo from './api/zoo.js';
export * as model from './api/model.js';
export * as backend from './api/backend.js';
export * as util from './api/util.js';
export * as sweep from './api/sweep.js';
