/**
 * tfl.sweep: a rank method split into shards on a BullMQ queue over Redis, run by workers anywhere
 * (docs/sweeps.md). `submitSweep` -> a stable sweep id; `runWorker` runs shards (one per GPU or process);
 * `sweepStatus`; `collectSweep(id, {wait: true})` -> the ranking `tflens rank` computes in one process.
 * `RANK_METHODS` lists the methods with their typed options; `renderRank` writes the ranking files.
 */
export { submitSweep, runWorker, sweepStatus, collectSweep, sweepId, modelIdentity, WORKER_DEFAULTS, SHARD_JOB_OPTIONS } from '../sweep/index.js';
export type { SweepSpec, SubmitOptions, WorkerOptions, WorkerStats, ShardEvent, SweepStatus, CollectOptions, QueueRef, ModelIdentity } from '../sweep/index.js';
export { RANK_METHODS, runRank, renderRank } from '../rank/index.js';
export type { RankMethodName, RankMethodOptions, RankOutput, RankFormat } from '../rank/index.js';
