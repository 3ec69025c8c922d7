/** The sweep room: rank methods split into shards on a BullMQ queue over Redis (submit, worker, status, collect). */
export { submitSweep, SHARD_JOB_OPTIONS, type SubmitOptions } from './submit.js';
export { runWorker, WORKER_DEFAULTS, type WorkerOptions, type WorkerStats, type ShardEvent } from './worker.js';
export { sweepStatus, collectSweep, type SweepStatus, type CollectOptions } from './collect.js';
export { planSweep, sweepId, type SweepSpec, type StoredSweep } from './spec.js';
export { modelIdentity, type ModelIdentity } from './identity.js';
export { queueRef, DEFAULT_QUEUE_NAME, type QueueRef } from './store.js';
