/**
 * Attention-sink emergence on the bb recipe (Gu et al.; src/zoo/emergence.ts): train the recipe once per
 * value of one factor (default: the weight-decay ratios of BB_EMERGENCE), measure Sink_1^eps
 * (tfl.sinks.sinkRates, eps 0.3) at step 0, the early steps and every 50 steps, and write the log
 * fixtures/models/bb/emergence.json with one F16 checkpoint per --save entry (re-measured by notebook 02
 * and test/zoo.test.ts).
 *
 *   npx tsx scripts/sink-emergence.ts [--values 0,0.1,1] [--factor weightDecay|lr] [--steps N]
 *                                     [--save VALUE@STEP ...] [--out fixtures/models/bb/emergence.json]
 *
 * Each finished run is kept beside the log (<out>.run-<factor>-<value>.json) and reused, so runs can go
 * in separate processes (e.g. one per CPU core with --values) and a last call without training
 * assembles the log. Runs are seeded (BB_EMERGENCE.seed): a rerun on the same backend and tflens
 * version reproduces them.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/backend/index.js';
import type { HookedTransformer } from '../src/model/index.js';
import { BB_RECIPE } from '../src/zoo/bb.js';
import { replaceCardSection, saveZooModel } from '../src/zoo/registry.js';
import {
  BB_EMERGENCE,
  emergenceSteps,
  sinkCheckpointSeries,
  trainSinkEmergence,
  type EmergenceCheckpoint,
  type EmergenceFactor,
  type EmergenceLog,
  type EmergenceRun,
} from '../src/zoo/emergence.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function args(name: string): string[] {
  return process.argv.flatMap((a, i) => (a === `--${name}` ? [process.argv[i + 1]] : []));
}

const PAPER = {
  claim: 'moderate weight decay encourages the attention sink and excessive weight decay eliminates it (Table 2 of the paper: Sink_1^eps 15.20% at ratio 0, 18.18% at 0.1, 41.08% at 0.5, 37.71% at 1.0, 6.13% at 2.0, 0.01% at 5.0; 60M LLaMA-style models on the Pile)',
  source: "Gu et al., 'When Attention Sink Emerges in Language Models: An Empirical View' (ICLR 2025), section 6 and Table 2; sail-sg/Attention-Sink (configs/decay, default ratio 0.1)",
  values: [0, 0.01, 0.1, 0.5, 1, 2, 5],
  sink1: [15.2, 15.23, 18.18, 41.08, 37.71, 6.13, 0.01],
};

const f1 = (x: number) => x.toFixed(1);
const f3 = (x: number) => x.toFixed(3);

/** How the paper's rise from ratio 0.1 to 0.5 (18.18% -> 41.08%) and its collapse at 2 and 5 compare with the runs. */
function moderateRise(runs: EmergenceRun[]): string {
  const at = (v: number) => runs.find((r) => r.value === v);
  const end = (r: EmergenceRun) => r.points[r.points.length - 1].sink1;
  const [a, b] = [at(0.1), at(0.5)];
  const rise = a && b
    ? `The paper's rise from 0.1 to 0.5 (18.18% -> 41.08%) ${end(b) > end(a) ? 'appears' : 'does not appear'} here (${f1(end(a))}% -> ${f1(end(b))}%)`
    : "The paper's rise at moderate ratios (0.1 -> 0.5) is not tested by these ratios";
  return `${rise}; its collapse at large ratios (6.13% at 2, 0.01% at 5) ${runs.some((r) => r.value >= 2 && end(r) < 5) ? 'does' : 'does not'} (${runs.filter((r) => r.value >= 2).map((r) => `${r.value}: ${f1(end(r))}%`).join(', ') || 'no ratio >= 2 run'}).`;
}

/** The MODEL_CARD.md section on the emergence log (replaces an earlier one, else goes before "## Reproduce"). */
async function writeCardSection(dir: string, log: EmergenceLog): Promise<void> {
  const card = path.join(dir, 'MODEL_CARD.md');
  if (!existsSync(card)) return;
  const shipped = await sinkCheckpointSeries(dir);
  const cols = [0, 100, 200, 400].filter((s) => s < Number(log.recipe.steps));
  const end = (r: EmergenceRun) => r.points[r.points.length - 1];
  const byValue = [...log.runs].sort((a, b) => a.value - b.value);
  const gain = end(byValue[byValue.length - 1]).sink1 - end(byValue[0]).sink1;
  const rows = byValue.map((r) => `| ${r.value} | ${[...cols.map((c) => f1(r.points.find((p) => p.step === c)!.sink1)), f1(end(r).sink1)].join(' | ')} | ${end(r).alpha1.map(f3).join(', ')} | ${f3(r.final.trainLoss)} | ${f3(r.final.excessTrigger)} / ${f3(r.final.excessNonTrigger)} |`);
  const section = `## Attention-sink emergence (Gu et al.)

Sink_1^eps (eps ${log.definitions.eps}; ${log.definitions.function}) on ${log.definitions.tokens}.

The shipped checkpoints: ${shipped.map((p) => `step ${p.step} ${f1(p.value.sink1)}% (alpha_1 ${p.value.alpha1.map(f3).join(', ')})`).join('; ')}.

\`emergence.json\` (scripts/sink-emergence.ts): the recipe trained ${log.runs.length} times for ${log.recipe.steps} steps from the same seed and batches with ${log.factor} = ${byValue.map((r) => r.value).join(', ')}:

| ${log.factor} | ${[...cols, log.recipe.steps].map((c) => `Sink_1 step ${c} (%)`).join(' | ')} | final alpha_1 per layer | final train loss | excess risk backcopy / bigram |
|---:|${[...cols, 0].map(() => '---:').join('|')}|---|---:|---:|
${rows.join('\n')}

The paper: ${log.paper.claim}. Here, raising ${log.factor} from ${byValue[0].value} to ${byValue[byValue.length - 1].value} changes the final Sink_1 by ${gain >= 0 ? '+' : ''}${f1(gain)} points: ${byValue.slice(1).map((r, i) => `${byValue[i].value} -> ${r.value}: ${f1(end(byValue[i]).sink1)}% -> ${f1(end(r).sink1)}%`).join('; ')}. ${moderateRise(byValue)} Shipped F16 checkpoint${log.checkpoints.length > 1 ? 's' : ''}: ${log.checkpoints.map((c) => `${c.dir} (${log.factor} ${c.value}, step ${c.step})`).join(', ')}. ${log.environment}.

`;
  await replaceCardSection(card, '## Attention-sink emergence', section, '## Reproduce');
}

async function main(): Promise<void> {
  const out = arg('out') ?? 'fixtures/models/bb/emergence.json';
  const factor = (arg('factor') ?? BB_EMERGENCE.factor) as EmergenceFactor;
  const values = (arg('values') ?? BB_EMERGENCE.values.join(',')).split(',').map(Number);
  const steps = Number(arg('steps') ?? BB_EMERGENCE.steps);
  const saves = args('save').map((s) => s.split('@').map(Number) as [number, number]);
  const backend = await initBackend();
  const runFile = (v: number) => `${out}.run-${factor}-${v}.json`;
  const checkpoints: EmergenceCheckpoint[] = [];
  const runs: EmergenceRun[] = [];
  for (const value of values) {
    const ckHere = saves.filter(([v]) => v === value).map(([, s]) => s);
    const ckDir = (step: number) => `emergence/${factor}-${value}/step-${step}`;
    ckHere.forEach((step) => checkpoints.push({ value, step, dir: ckDir(step) }));
    const ckMissing = ckHere.some((step) => !existsSync(path.join(path.dirname(out), ckDir(step), 'model.safetensors')));
    if (existsSync(runFile(value)) && !ckMissing) {
      runs.push(JSON.parse(await fsp.readFile(runFile(value), 'utf8')));
      console.error(`${factor} = ${value}: reusing ${runFile(value)}`);
      continue;
    }
    const { run, model } = await trainSinkEmergence({
      factor,
      value,
      steps,
      progressLabel: `${factor} ${value}`,
      saveSteps: ckHere,
      onPoint: (p) => console.error(`${factor} ${value} step ${p.step}: Sink_1 ${p.sink1.toFixed(1)}%  alpha_1 ${p.alpha1.map((a) => a.toFixed(3)).join(' ')}`),
      onSave: async (step: number, snap: HookedTransformer) => {
        const dir = path.join(path.dirname(out), ckDir(step));
        await saveZooModel('bb', snap, dir, { steps, step }, { emergence: { factor, value, log: path.basename(out) } }, { dtype: 'F16' });
      },
    });
    model.dispose();
    await fsp.writeFile(runFile(value), JSON.stringify(run) + '\n');
    runs.push(run);
  }
  const log: EmergenceLog = {
    description: `Sink_1^eps over training of the bb recipe (src/zoo/bb.ts) with ${factor} varied; written by scripts/sink-emergence.ts (src/zoo/emergence.ts)`,
    paper: PAPER,
    definitions: {
      metric: 'Sink_1^eps: 100 x share of (prompt, layer, head) whose column mean at the first token (BOS) exceeds eps',
      eps: BB_EMERGENCE.eps,
      tokens: `emergenceTokens(): bbEvalBatch(${BB_EMERGENCE.evalSeed}, ${BB_EMERGENCE.evalSequences}), the 64 input positions of each sequence`,
      function: 'tfl.sinks.sinkRates on the attention patterns of every layer (sinkPoint in src/zoo/emergence.ts)',
    },
    recipe: { ...BB_RECIPE, steps, seed: BB_EMERGENCE.seed, measuredAt: emergenceSteps(steps) },
    factor,
    runs,
    checkpoints,
    environment: `${backend} (TensorFlow.js ${tf.version.tfjs}), Node ${process.version}, ${os.cpus().length} shared CPU cores, ${new Date().toISOString().slice(0, 10)}`,
  };
  const round = (_k: string, v: unknown) => (typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(7)) : v);
  await fsp.writeFile(out, JSON.stringify(log, round) + '\n');
  await writeCardSection(path.dirname(out), log);
  console.error(`wrote ${out} (${runs.length} runs, ${checkpoints.length} checkpoints)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
