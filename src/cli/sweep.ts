/**
 * `tflens sweep submit|status|collect` and `tflens worker` (docs/sweeps.md).
 *
 *   tflens sweep submit <model> --method <m> [method flags] [--prompts f | --tokens f] [--shard-size k] --queue redis://host:port/db
 *       plans the shards, stores the sweep, queues its jobs; the sweep id is the last line printed
 *   tflens worker --queue ... [--concurrency 1] [--idle-exit <s>] [--lock-duration <ms>] [--stalled-interval <ms>] [--max-stalled <n>]
 *       runs shards until interrupted (SIGINT/SIGTERM finish the running shard first) or idle for --idle-exit seconds;
 *       one line per shard on stderr
 *   tflens sweep status <id> --queue ... [--format json]
 *   tflens sweep collect <id> --queue ... [--wait] [--timeout <s>] [--format csv|json|retrieval-head] [--rank-by signed|absolute] [--out <file>]
 *       writes what `tflens rank` writes for the same inputs
 */
import { ValueError, expectedFound } from '../errors.js';
import { isQuiet } from '../progress.js';
import { writeFileAtomic } from '../io/atomic.js';
import { loadModel } from '../model/load.js';
import { rankByArg, rankFormat, rankMethod, renderRank, type RankMethodName } from '../rank/index.js';
import { collectSweep, runWorker, submitSweep, sweepStatus, WORKER_DEFAULTS, type QueueRef, type SweepStatus } from '../sweep/index.js';
import { batchFromArgs, numArg, rankOptionsFromArgs, strArg, type Args } from './rank-args.js';

export const SWEEP_USAGE = `  tflens sweep submit <model> --method <method> [method flags] [--prompts f | --tokens f] [--shard-size k] --queue redis://host:port/db
  tflens worker --queue redis://host:port/db [--concurrency 1] [--idle-exit <s>] [--lock-duration <ms>] [--stalled-interval <ms>] [--max-stalled <n>]
  tflens sweep status <id> --queue redis://host:port/db [--format text|json]
  tflens sweep collect <id> --queue redis://host:port/db [--wait] [--timeout <s>] [--format csv|json|retrieval-head] [--rank-by signed|absolute] [--out <file>]
`;

function queueOf(args: Args): QueueRef {
  const url = strArg(args, 'queue');
  if (!url) throw new ValueError('--queue', 'is required: the Redis URL, e.g. redis://127.0.0.1:6379/0');
  const name = strArg(args, 'queue-name');
  return name === undefined ? { url } : { url, name };
}

function positiveInt(args: Args, name: string): number | undefined {
  const n = numArg(args, name);
  if (n !== undefined && !(Number.isInteger(n) && n > 0)) throw new ValueError(`--${name}`, expectedFound('a positive integer', n));
  return n;
}

function statusLines(s: SweepStatus): string {
  const lines = [
    `sweep ${s.id}: ${s.method} on ${s.model}`,
    `shards ${s.done}/${s.shards} done, ${s.running} running, ${s.waiting} waiting, ${s.failed.length} failed; ${s.runs} runs started`,
    `workers ${s.workers.length}${s.workers.length ? `: ${s.workers.join(', ')}` : ''}`,
    `results ${s.bytes.results} bytes of JSON${s.bytes.redis === null ? '' : ` (Redis holds ${s.bytes.redis} bytes)`}${s.backends.length ? `, computed on ${s.backends.join(' | ')}` : ''}`,
    ...s.failed.slice(0, 5).map((f) => `failed shard ${f.shard}: ${f.reason}`),
  ];
  return lines.join('\n') + '\n';
}

async function submit(positional: string[], args: Args, out: (s: string) => void): Promise<number> {
  const modelPath = positional[0];
  if (!modelPath) throw new ValueError('<model>', 'missing: give a model folder or hub id');
  const name = strArg(args, 'method');
  if (!name) throw new ValueError('--method', 'is required');
  const method = rankMethod(name, '--method');
  const model = await loadModel(modelPath, { weights: false });
  const batch = await batchFromArgs(args, model, name, method.needsTokens);
  const queue = queueOf(args);
  const options = await rankOptionsFromArgs(name as RankMethodName, args);
  const id = await submitSweep({ model: modelPath, method: name as RankMethodName, options, batch: batch ?? undefined, shardSize: positiveInt(args, 'shard-size') }, { queue });
  const s = await sweepStatus(id, { queue });
  out(`submitted ${s.method} on ${s.model}: ${s.shards} shards, ${s.done} already done\n${id}\n`);
  return 0;
}

async function worker(args: Args, out: (s: string) => void): Promise<number> {
  const queue = queueOf(args);
  const idle = numArg(args, 'idle-exit');
  const ac = new AbortController();
  const stop = () => ac.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    const stats = await runWorker({
      queue,
      signal: ac.signal,
      concurrency: positiveInt(args, 'concurrency'),
      idleExitMs: idle === undefined ? undefined : idle * 1000,
      lockDuration: positiveInt(args, 'lock-duration') ?? WORKER_DEFAULTS.lockDuration,
      stalledInterval: positiveInt(args, 'stalled-interval') ?? WORKER_DEFAULTS.stalledInterval,
      maxStalledCount: positiveInt(args, 'max-stalled') ?? WORKER_DEFAULTS.maxStalledCount,
      // one log line per shard on stderr (TFLENS_QUIET=1 silences them)
      onShard: isQuiet() ? undefined : (e) => process.stderr.write(`shard ${e.sweep}#${e.shard} ${e.outcome} in ${e.ms} ms${e.error ? `: ${e.error.split('\n')[0]}` : ''}\n`),
    });
    out(`worker ${stats.worker} on ${stats.backend}: ${stats.computed} shards computed, ${stats.stored} stored, ${stats.present} already present, ${stats.failed} failed\n`);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
  return 0;
}

async function collect(id: string, args: Args, out: (s: string) => void): Promise<number> {
  const queue = queueOf(args);
  const format = rankFormat(strArg(args, 'format') ?? 'csv', '--format');
  const timeout = numArg(args, 'timeout');
  const r = await collectSweep(id, { queue, wait: args.wait === true, timeoutMs: timeout === undefined ? undefined : timeout * 1000 });
  const { model } = await sweepStatus(id, { queue });
  const text = renderRank(r, format, model, rankByArg(strArg(args, 'rank-by'), '--rank-by'));
  const outFile = strArg(args, 'out');
  if (outFile) {
    await writeFileAtomic(outFile, text);
    out(`wrote ${r.method} ranking to ${outFile}\n`);
  } else out(text);
  return 0;
}

/** `tflens sweep <submit|status|collect> ...` and `tflens worker ...`; `rest` = the positional arguments after the command. */
export async function sweepCommand(cmd: 'sweep' | 'worker', rest: string[], args: Args, out: (s: string) => void): Promise<number> {
  if (cmd === 'worker') return worker(args, out);
  const [sub, ...more] = rest;
  if (sub === 'submit') return submit(more, args, out);
  if (sub !== 'status' && sub !== 'collect') throw new ValueError('tflens sweep', expectedFound('submit, status or collect', sub));
  const id = more[0];
  if (!id) throw new ValueError('<id>', 'missing: give the sweep id that `tflens sweep submit` printed');
  if (sub === 'collect') return collect(id, args, out);
  const s = await sweepStatus(id, { queue: queueOf(args) });
  out(strArg(args, 'format') === 'json' ? JSON.stringify(s, null, 2) + '\n' : statusLines(s));
  return 0;
}
