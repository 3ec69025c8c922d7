/** The rank room: the head-ranking methods with typed options, their shards, and the ranking file formats. */
export { RANK_METHODS, rankMethod, runRank } from './methods.js';
export type { RankMethodName, RankMethodOptions, DetectorRankOptions, DormantRankOptions, SaeRankOptions, RazorRankOptions } from './methods.js';
export type { HeadPatchingOptions, PathRankOptions } from './patching.js';
export type { RetrievalRankOptions, RetrievalSamples, NeedleFormat } from './retrieval.js';
export { retrievalGrid } from './retrieval.js';
export { taskProblem, type TaskOptions } from './task.js';
export { renderRank, rankFormat, rankByArg, RANK_FORMATS, type RankFormat } from './render.js';
export type { RankMethod, RankOutput, ShardValue } from './types.js';
