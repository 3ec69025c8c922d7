/**
 * Find the IOI circuit of a model with the paper's experiments (src/circuits/ioi-circuit.ts) and write it
 * as circuit.json (classes -> heads, how each head was found, the evaluation with 95% bootstrap
 * intervals). notebooks/04-ioi-circuit.ipynb runs the same experiments with the same options.
 *   npx tsx scripts/ioi-circuit.ts [model folder = fixtures/models/ioi] [--out file] [--print] [--card]
 * --out defaults to <model folder>/circuit.json; --print writes nothing and prints the JSON; --card also
 * rewrites the "## The IOI circuit" section of the folder's MODEL_CARD.md from the record.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend/index.js';
import { loadModel } from '../src/model/index.js';
import { replaceCardSection } from '../src/zoo/registry.js';
import { IOI_CIRCUIT_STUDY, IOI_CLASSES, GPT2_SMALL_IOI_CIRCUIT, ioiCircuitRecord, runIOICircuitStudy, type IOICircuitStudy } from '../src/circuits/ioi-circuit.js';

const ci = (c: { estimate: number; lo: number; hi: number }, d = 2) => `${c.estimate.toFixed(d)} [${c.lo.toFixed(d)}, ${c.hi.toFixed(d)}]`;

/** The model card's circuit section: the classes found next to GPT-2 small's, and the evaluation. */
function cardSection(study: IOICircuitStudy, seconds: number): string {
  const s = study.search;
  const o = study.options;
  const rows = IOI_CLASSES.map((c) => {
    const heads = s.classes[c].map((h) => `${h}${s.evidence[h].experiment.includes('logits, attending to S2') ? ' (through the logits)' : ''}`);
    return `| ${c} | ${heads.join(', ') || 'not found'} | ${GPT2_SMALL_IOI_CIRCUIT[c].length} (${GPT2_SMALL_IOI_CIRCUIT[c].join(', ')}) |`;
  });
  const ev = study.evaluation;
  const evText = ev
    ? `Evaluation on ${ev.prompts} fresh prompts (seed ${o.evaluation.seed}), everything outside the circuit mean-ablated with the ABC means per template, each head kept at its class's position; 95% bootstrap intervals over prompts: F(M) = ${ci(ev.full)}, F(C) = ${ci(ev.circuit)}, faithfulness |F(M) - F(C)| = ${ci(ev.faithfulness)}, **F(C) / F(M) = ${ci(ev.faithfulnessRatio, 3)}** (the paper: 0.87 on GPT-2 small). Completeness |F(C \\ K) - F(M \\ K)|: ${ev.completeness.map((c) => `K = ${c.K}: ${ci(c.score)}`).join('; ')}. Minimality (K = the other heads of the class): ${ev.minimality.map((m) => `${m.head} ${ci(m.score, 3)}`).join('; ')}.`
    : 'No head passed the rules, so there is no circuit to evaluate.';
  return `## The IOI circuit

Found by scripts/ioi-circuit.ts (runIOICircuitStudy with IOI_CIRCUIT_STUDY, src/circuits/ioi-circuit.ts; ${o.discovery.n} prompts, seed ${o.discovery.seed}; ${seconds.toFixed(0)} s on ${tf.getBackend()}) with the paper's experiments: path patching to the logits, to the name movers' queries, to the S-inhibition heads' keys and values at S2, to the induction heads' keys at S1+1, and to the logits again with the name movers knocked out; attention and copy scores decide the class (docs/methods/ioi-circuit.md). circuit.json holds the heads, how each was found, and the numbers.

| class | this model | GPT-2 small (Wang et al.) |
|---|---|---|
${rows.join('\n')}

${evText}`;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const flag = (n: string) => args.indexOf(`--${n}`);
  const dir = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--out') ?? 'fixtures/models/ioi';
  const out = flag('out') >= 0 ? args[flag('out') + 1] : path.join(dir, 'circuit.json');
  await initBackend();
  const model = await loadModel(dir);
  const t0 = Date.now();
  const study = await runIOICircuitStudy(model, IOI_CIRCUIT_STUDY, (msg) => console.error(`[${((Date.now() - t0) / 1000).toFixed(0)} s] ${msg}`));
  const seconds = (Date.now() - t0) / 1000;
  const record = ioiCircuitRecord(path.basename(path.resolve(dir)), study);
  model.dispose();
  const json = JSON.stringify(record, null, 1) + '\n';
  if (flag('print') >= 0) process.stdout.write(json);
  else {
    await fsp.writeFile(out, json);
    console.error(`wrote ${out} (${tf.getBackend()}, ${seconds.toFixed(0)} s)`);
    if (flag('card') >= 0) await replaceCardSection(path.join(dir, 'MODEL_CARD.md'), '## The IOI circuit', cardSection(study, seconds), '## Reproduce');
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
