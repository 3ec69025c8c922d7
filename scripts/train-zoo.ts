/**
 * Train (or build) the shipped zoo models into fixtures/models/<name>:
 *   npx tsx scripts/train-zoo.ts <bb|recall|ioi|induction-handmade|all> [--steps N] [--out dir] [--seed S]
 * Each model folder gets config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
 * task.json (with the training step counts), MODEL_CARD.md and train_log.json (bb also dynamics.json
 * and checkpoints/step-N/). var-group has its own script (scripts/train-var-group.ts).
 *   npx tsx scripts/train-zoo.ts bb --remeasure [--out dir]
 * recomputes the headline measures of a shipped bb folder from its weights (no training) and
 * rewrites that section of its MODEL_CARD.md.
 *   npx tsx scripts/train-zoo.ts recall --variant binding
 * trains recall with the binding recipe (RECALL_BINDING in src/zoo/recall.ts: distractor pairs).
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { initBackend } from '../src/backend/index.js';
import { loadModel, type HookedTransformer } from '../src/model/index.js';
import { deriveSeed } from '../src/util/random.js';
import { ZOO, replaceCardSection, saveZooModel, type ZooName } from '../src/zoo/registry.js';
import { BB_DYNAMICS_DEFINITIONS, BB_RECIPE, bbEvalBatch, bbMeasures, trainBB, type BBDynamicsPoint, type BBMeasures } from '../src/zoo/bb.js';
import { RECALL_ARCH, RECALL_BINDING, RECALL_FORMAT, recallFormatText, recallHeadline, trainRecall, type RecallHeadline } from '../src/zoo/recall.js';
import { IOI_ARCH, ioiEvaluate, trainIOI } from '../src/zoo/ioi.js';
import { buildInductionHandmade, inductionEvalBatch, inductionEvaluate } from '../src/zoo/induction-handmade.js';
import type { TrainedZooModel } from '../src/zoo/common.js';

/** The models this script makes (var-group: scripts/train-var-group.ts). */
const NAMES = ['bb', 'recall', 'ioi', 'induction-handmade'] as const;

/** --set key=value (repeatable): numeric recipe overrides. */
function overrides(): Record<string, number> | undefined {
  const o: Record<string, number> = {};
  process.argv.forEach((a, i) => {
    if (a === '--set') {
      const [k, v] = process.argv[i + 1].split('=');
      o[k] = Number(v);
    }
  });
  return Object.keys(o).length ? o : undefined;
}

/**
 * --arch '{...}' / --format '{...}': JSON merged into RECALL_ARCH / RECALL_FORMAT (recall) or IOI_ARCH (ioi) before training,
 * to try a variant of the recipe (the card, task.json and train_log.json record what was used). A key
 * the target lacks is refused.
 */
function mergeJsonFlag(flag: string, target: Record<string, unknown>): string {
  const text = arg(flag);
  if (text === undefined) return '';
  const o = JSON.parse(text) as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!(k in target)) throw new Error(`--${flag}: unknown key "${k}" (known: ${Object.keys(target).join(', ')})`);
  Object.assign(target, o);
  return ` --${flag} '${text}'`;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const fmt = (x: number, d = 3) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

async function dirSize(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    n += e.isDirectory() ? await dirSize(p) : (await fsp.stat(p)).size;
  }
  return n;
}

function archLines(m: HookedTransformer): string {
  const c = m.cfg;
  return [
    `- HF class: ${c.hfArchitecture} (model_type ${c.architecture}); ${m.parameterCount().toLocaleString('en-US')} parameters`,
    `- layers ${c.n_layers}, d_model ${c.d_model}, heads ${c.n_heads} (kv ${c.n_kv_heads}), d_head ${c.d_head}, d_mlp ${c.d_mlp}, vocab ${c.d_vocab}, n_ctx ${c.n_ctx}`,
    `- normalization ${c.normalization}, positions ${c.positional}, activation ${c.act_fn}${c.gated_mlp ? ' (gated)' : ''}, tied embeddings ${c.tie_word_embeddings}`,
  ].join('\n');
}

function envLine(wallMs: number): string {
  return `- backend: ${tf.getBackend()} (TensorFlow.js ${tf.version.tfjs}), Node ${process.version}, ${os.cpus().length} shared CPU cores; wall time ${(wallMs / 1000).toFixed(0)} s`;
}

function curve(r: TrainedZooModel['result'], every: number): string {
  const rows = ['| step | train loss |', '|---:|---:|'];
  r.steps.forEach((s, i) => {
    if (s === 1 || s % every === 0 || i === r.steps.length - 1) rows.push(`| ${s} | ${fmt(r.loss[i])} |`);
  });
  return rows.join('\n');
}

/** The Architecture and Training sections of a trained model's card (`archExtra` follows the architecture lines). */
function archAndTraining(t: TrainedZooModel, schedule: string, archExtra = ''): string {
  const r = t.recipe;
  return `## Architecture

${archLines(t.model)}${archExtra}

## Training

AdamW lr ${r.lr} (warmup ${r.warmupSteps}, ${schedule}), weight decay ${r.weightDecay}, betas ${JSON.stringify(r.betas)}, grad clip ${r.gradClip}, batch ${r.batch}, ${t.result.completed} steps, seed ${r.seed}. Final train loss ${fmt(t.result.loss[t.result.loss.length - 1])}.

${curve(t.result, 50)}`;
}

function evalTable(r: TrainedZooModel['result']): string {
  if (!r.evals.length) return '';
  const keys = Object.keys(r.evals[0].values);
  const rows = [`| step | ${keys.join(' | ')} |`, `|---:|${keys.map(() => '---:|').join('')}`];
  for (const e of r.evals) rows.push(`| ${e.step} | ${keys.map((k) => fmt(e.values[k])).join(' | ')} |`);
  return rows.join('\n');
}

async function writeCommon(name: ZooName, dir: string, t: TrainedZooModel, wallMs: number, body: string, command: string): Promise<void> {
  await fsp.writeFile(
    path.join(dir, 'train_log.json'),
    JSON.stringify({ steps: t.result.steps, loss: t.result.loss, lr: t.result.lr, gradNorm: t.result.gradNorm, evals: t.result.evals, recipe: t.recipe, metrics: t.metrics }, null, 1) + '\n',
  );
  const card = `# ${name}\n\n${ZOO[name].description}.\n\n${body}\n\n## Reproduce\n\n\`\`\`\n${command}\n\`\`\`\n\n${envLine(wallMs)}\n- trained on ${new Date().toISOString().slice(0, 10)} by tflens (src/zoo/${name}.ts); load with \`loadModel('${ZOO[name].dir}')\`; task metadata in task.json.\n`;
  await fsp.writeFile(path.join(dir, 'MODEL_CARD.md'), card);
}

function measuresTable(m: BBMeasures): string {
  const rows = [
    '| layer | attn->BOS, non-trigger q | attn->BOS, trigger q | attn->prev, trigger q | attn->prev, non-trigger q | ‖v‖ BOS | ‖v‖ others | ‖v W_O‖ BOS | ‖v W_O‖ others |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  m.layers.forEach((l, i) =>
    rows.push(`| ${i} | ${fmt(l.sinkNonTrigger)} | ${fmt(l.sinkTrigger)} | ${fmt(l.prevTrigger)} | ${fmt(l.prevNonTrigger)} | ${fmt(l.valueNormBos)} | ${fmt(l.valueNormOthers)} | ${fmt(l.valueOutNormBos)} | ${fmt(l.valueOutNormOthers)} |`),
  );
  const res = ['| residual state | norm at BOS | mean norm elsewhere |', '|---|---:|---:|', ...m.residual.names.map((n, s) => `| ${n} | ${fmt(m.residual.normBos[s])} | ${fmt(m.residual.normOthers[s])} |`)];
  return `${rows.join('\n')}\n\n${res.join('\n')}`;
}

/** The card's headline section of a bb model (the authors' definitions; the earlier ones as the named variant columns). */
async function bbHeadline(model: HookedTransformer, seed: number): Promise<string> {
  const m = await bbMeasures(model, bbEvalBatch(deriveSeed(seed, 4242), 32));
  const r = m.risk;
  const ex = m.excess;
  return `## Headline measures (fresh batch: bbEvalBatch(deriveSeed(${seed}, 4242), 32))

Measured by bbMeasures (src/zoo/bb.ts) with the authors' definitions (docs/methods/bigram-backcopy.md): the model reads the 64 input positions; the sink averages attention to BOS over non-trigger queries including BOS itself; the value drain is the raw ‖v‖ at BOS; residual norms are taken on the L + 1 hidden states.

Risks (cross entropy under the true next-token distribution, BBM/probe_utils.py get_risk): backcopy (trigger positions) ${fmt(r.trigger, 4)} nats, oracle ${fmt(r.oracleTrigger, 4)}, excess ${fmt(r.excessTrigger, 4)}; bigram (non-trigger positions) ${fmt(r.nonTrigger, 4)} nats, oracle ${fmt(r.oracleNonTrigger, 4)}, excess ${fmt(r.excessNonTrigger, 4)}.
Sampled excess loss (variant: NLL of the drawn next token minus the oracle's): trigger ${fmt(ex.trigger ?? NaN, 4)}, non-trigger ${fmt(ex.nonTrigger ?? NaN, 4)} nats.
Backcopy layer (largest attention to the previous token from trigger queries): ${m.backcopyLayer}.

${measuresTable(m)}

‖v‖ is the value-state drain when small at BOS (‖v W_O‖, the head's output, is the named variant); the residual peak is a large norm at BOS.`;
}

/** Recompute the headline section of a shipped bb folder's MODEL_CARD.md from its weights (no training). */
async function remeasureBB(out: string): Promise<void> {
  const dir = path.join(out, 'bb');
  const model = await loadModel(dir);
  const seed = BB_RECIPE.seed;
  const section = await bbHeadline(model, seed);
  model.dispose();
  await replaceCardSection(path.join(dir, 'MODEL_CARD.md'), '## Headline measures', section, '## Reproduce');
  console.log(section);
}

async function doBB(out: string, steps: number | undefined, seed: number | undefined): Promise<void> {
  const dir = path.join(out, 'bb');
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const dynamics: BBDynamicsPoint[] = [];
  const total = steps ?? BB_RECIPE.steps;
  const ckptSteps = total === BB_RECIPE.steps ? BB_RECIPE.checkpoints : [];
  const t0 = Date.now();
  const t = await trainBB({
    signal: abort.signal,
    steps,
    seed,
    progressLabel: 'bb',
    onEval: (s, v) => console.log(`\nbb step ${s}: ${JSON.stringify(v)}`),
    checkpointSteps: ckptSteps,
    onMeasures: (step, m) => dynamics.push({ step, layers: m.layers, residual: m.residual, risk: m.risk, excess: { trigger: m.excess.trigger, nonTrigger: m.excess.nonTrigger } }),
    onCheckpoint: async (step, model) => {
      await saveZooModel('bb', model, path.join(dir, 'checkpoints', `step-${step}`), { step, steps: total });
    },
  });
  const wall = Date.now() - t0;
  await saveZooModel('bb', t.model, dir, { steps: t.result.completed });
  await fsp.writeFile(
    path.join(dir, 'dynamics.json'),
    JSON.stringify({ description: 'per-layer BB measures on a fixed seeded eval batch (16 sequences) during training; see bbMeasures in src/zoo/bb.ts', evalBatchSeed: 'deriveSeed(seed, 999)', definitions: BB_DYNAMICS_DEFINITIONS, points: dynamics }, null, 1) + '\n',
  );
  const body = `## Task

Bigram-Backcopy (Guo et al.): ${JSON.stringify(t.recipe.task)}. Triggers (the 3 most frequent characters): see task.json.
Sequences are 65 tokens (BOS + 64 characters) instead of the paper's 257, to fit the training budget on 2 shared CPU cores.

${archAndTraining(t, 'cosine to 0.1x', '\n- Differences from the paper: d_model 64 (paper 256); GPT-2 modules, so attention and LayerNorm have biases; the ReLU MLP (4d) has its biases fixed at zero; untied unembedding.')}

Eval during training (backcopy layer, fixed 16-sequence batch):

${evalTable(t.result)}

${await bbHeadline(t.model, t.recipe.seed as number)}
dynamics.json holds these measures every ${t.recipe.evalEvery} steps; checkpoints/step-N/ hold intermediate checkpoints (${ckptSteps.join(', ') || 'none'}).`;
  const cmd = `npx tsx scripts/train-zoo.ts bb${steps ? ` --steps ${steps}` : ''}${seed !== undefined ? ` --seed ${seed}` : ''}`;
  await writeCommon('bb', dir, t, wall, body, cmd);
  t.model.dispose();
  console.log(`bb: ${(await dirSize(dir)) / 1e6} MB`);
}

/** A length x depth table of a grid's cells. */
function gridTable(lengths: number[], depths: number[], cells: number[][], d = 2): string {
  return [`| length \\ depth | ${depths.join(' | ')} |`, `|---:|${depths.map(() => '---:|').join('')}`, ...lengths.map((L, i) => `| ${L} | ${cells[i].map((a) => fmt(a, d)).join(' | ')} |`)].join('\n');
}

/** The headline section of the recall card (recallHeadline of the shipped F16 weights; the float32 weights' numbers beside). */
function recallHeadlineSection(h: RecallHeadline, f32: RecallHeadline | null, total: number): string {
  const heads = h.retrieval.heads.map(([l, hd, sc]) => `${l}.${hd} (${fmt(sc, 2)})`).join(', ') || 'none';
  const top = [...h.retrieval.scores.flatMap((r, l) => r.map((sc, hd) => [l, hd, sc] as const))].sort((a, b) => b[2] - a[2]).slice(0, 8);
  const rnd = h.masking.randomMasked;
  const rndMean = rnd.reduce((a, b) => a + b, 0) / rnd.length;
  return `## Headline (shipped F16 weights; fresh data: recallHeadline(model) in src/zoo/recall.ts, seed 2024)

${RECALL_FORMAT.distractors ? `Every prompt holds the needle and ${RECALL_FORMAT.distractors} distractor pairs (other keys, other values); chance is ${fmt(1 / (1 + RECALL_FORMAT.distractors), 2)}.` : 'Every prompt holds the needle and no distractor pair (the format the model was trained on).'}

Top-1 accuracy of the answer (40 prompts per cell; mean ${fmt(h.accuracy.mean, 3)}, worst cell ${fmt(h.accuracy.min, 3)}):

${gridTable(h.accuracy.lengths, h.accuracy.depths, h.accuracy.accuracy)}

NIAH decoding as the authors do it (greedy, up to 50 tokens, stop after the newline token \`<0x0A>\`; 8 prompts per cell, ${h.niah.prompts} in all): exact match ${fmt(h.niah.meanExact, 3)} (worst cell ${fmt(h.niah.minExact, 3)}), ROUGE-1 recall ${fmt(h.niah.meanRouge, 3)}; ${fmt(100 * h.niah.stopRate, 1)}% of the decodes are the answer then the stop token. Exact match per cell:

${gridTable(h.accuracy.lengths, h.accuracy.depths, h.niah.exact)}

Retrieval scores (Wu et al.'s, the authors' defaults: answer span, newline stop, ROUGE filter; ${h.niah.counted} counted samples): ${h.retrieval.heads.length} of ${total} heads (${fmt(100 * h.retrieval.share, 1)}%) score above 0.1: ${heads}. Paper: under 5% of heads. Top scores: ${top.map(([l, hd, sc]) => `${l}.${hd} ${fmt(sc, 3)}`).join(', ')}.

Masking (maskingExperiment; masked heads get pre-softmax scores 0 while generating): K = ${h.masking.K} (the retrieval heads), random heads from outside the top N = ${h.masking.N} (the authors' 100 of 1,024 heads as a share of ${total}). ROUGE-1 recall: unmasked ${fmt(h.masking.unmasked, 3)}, top-${h.masking.K} masked ${fmt(h.masking.topMasked, 3)}, random-${h.masking.K} masked ${fmt(rndMean, 3)} (mean of ${rnd.length} random sets: ${rnd.map((x) => fmt(x, 3)).join(', ')}).

${f32 ? `Float32 weights before the F16 rounding: accuracy ${fmt(f32.accuracy.mean, 3)}, NIAH exact match ${fmt(f32.niah.meanExact, 3)}, ${f32.retrieval.heads.length} heads above 0.1, top-${f32.masking.K} masked ${fmt(f32.masking.topMasked, 3)}, random masked ${fmt(f32.masking.randomMasked.reduce((a, b) => a + b, 0) / f32.masking.randomMasked.length, 3)}.` : ''}`;
}

/** Recompute the headline section of a shipped recall folder's MODEL_CARD.md from its (F16) weights. */
async function remeasureRecall(out: string): Promise<void> {
  const dir = path.join(out, 'recall');
  const model = await loadModel(dir);
  const h = await recallHeadline(model);
  const section = recallHeadlineSection(h, null, model.cfg.n_layers * model.cfg.n_heads);
  model.dispose();
  await replaceCardSection(path.join(dir, 'MODEL_CARD.md'), '## Headline', section, '## Size');
  console.log(section);
}

async function doRecall(out: string, steps: number | undefined, seed: number | undefined): Promise<void> {
  const dir = path.join(out, 'recall');
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  // --variant binding: RECALL_BINDING merged in first, then --arch / --format / --set on top
  const named = arg('variant');
  if (named !== undefined && named !== 'binding') throw new Error(`--variant: expected "binding", found "${named}"`);
  if (named) {
    Object.assign(RECALL_ARCH, RECALL_BINDING.arch);
    Object.assign(RECALL_FORMAT, RECALL_BINDING.format);
  }
  const cli = overrides();
  const recipe = { ...(named ? RECALL_BINDING.recipe : {}), ...cli };
  const variant = (named ? ` --variant ${named}` : '') + mergeJsonFlag('arch', RECALL_ARCH) + mergeJsonFlag('format', RECALL_FORMAT);
  const command = `npx tsx scripts/train-zoo.ts recall${steps ? ` --steps ${steps}` : ''}${seed !== undefined ? ` --seed ${seed}` : ''}${Object.entries(cli ?? {}).map(([k, v]) => ` --set ${k}=${v}`).join('')}${variant}`;
  const t0 = Date.now();
  const t = await trainRecall({ signal: abort.signal, steps, seed, overrides: recipe, progressLabel: 'recall', onEval: (s, v) => console.log(`\nrecall step ${s}: ${JSON.stringify(v)}`) });
  const wall = Date.now() - t0;
  await saveZooModel('recall', t.model, dir, { steps: t.result.completed }, {}, { dtype: 'F16' });
  const weightBytes = (await fsp.stat(path.join(dir, 'model.safetensors'))).size;
  const total = t.model.cfg.n_layers * t.model.cfg.n_heads;
  // the card is complete but for the headline, which a stopped run (or --remeasure later) fills in
  const pending = '## Headline\n\n(not measured yet: `npx tsx scripts/train-zoo.ts recall --remeasure`)';
  await writeCommon('recall', dir, t, wall, recallCardBody(t, pending, weightBytes), command);
  console.log(`recall: trained ${t.result.completed} steps in ${(wall / 1000).toFixed(0)} s; measuring the headline`);
  const f32 = await recallHeadline(t.model);
  const shipped = await loadModel(dir);
  const h = await recallHeadline(shipped);
  shipped.dispose();
  await writeCommon('recall', dir, t, wall, recallCardBody(t, recallHeadlineSection(h, f32, total), weightBytes), command);
  t.model.dispose();
  console.log(`recall: ${(await dirSize(dir)) / 1e6} MB`);
}

/** The recall card's body: task, architecture and training, the evals, `headline` (a "## Headline" section) and the size. */
function recallCardBody(t: TrainedZooModel, headline: string, weightBytes: number): string {
  const f = t.recipe.format as typeof RECALL_FORMAT;
  const text = recallFormatText();
  return `## Task

Needle retrieval (src/data/needle.ts makeNeedle, format in task.json): haystack sentences of filler words w0..w39 ending in "."; the needle "${text.needle}" at a depth${f.distractors ? ` and ${f.distractors} more sentences of that form with other keys and other values at random sentence boundaries` : ''}; the question "${text.question}". The answer is V, then the newline token \`<0x0A>\` (where NIAH decoding stops, as in the authors' protocol). Keys (k0..k15) and values (v0..v15) have their own tokens.${f.distractors ? ` Since every prompt holds ${f.distractors + 1} values, the model must bind the value to the key the question names.` : ` Every prompt holds one value, so the model retrieves the value token; it is not asked to bind the value to its key.`}

Training rows: a prompt of length uniform in ${JSON.stringify(f.trainLengths)}${f.trainDistractors[1] > 0 ? ` with ${JSON.stringify(f.trainDistractors)} distractor pairs (as many as fit)` : ''} and a uniform depth, its answer and stop token${f.trainDistractors[1] > 0 ? ', then one more question about each distractor pair with its answer and stop token' : ''} (recallTrainBatch); the loss is the NLL of the answers and stop tokens only.${f.trainInduction ? ` A share ${f.trainInduction} of each batch is induction rows instead (a random filler sequence and the same again, scored on the repeat).` : ''}

${archAndTraining(t, `${t.recipe.schedule ?? 'cosine'}`)}

Trained with the tfjs ${tf.getBackend()} backend${tf.getBackend() === 'webgpu' ? ' (on the accelerator)' : ''}.

${evalTable(t.result)}

${headline}

## Size

model.safetensors stores the weights as F16: ${(weightBytes / 1024).toFixed(0)} KiB (float32 would be ${((2 * weightBytes) / 1024).toFixed(0)} KiB). The loader reads F16 as float32; the numbers above are those of the F16 weights, with the float32 weights' beside them.`;
}

async function doIOI(out: string, steps: number | undefined, seed: number | undefined): Promise<void> {
  const dir = path.join(out, 'ioi');
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const variant = mergeJsonFlag('arch', IOI_ARCH);
  const t0 = Date.now();
  const t = await trainIOI({ signal: abort.signal, overrides: overrides(), steps, seed, progressLabel: 'ioi', onEval: (s, v) => console.log(`\nioi step ${s}: ${JSON.stringify(v)}`) });
  const wall = Date.now() - t0;
  await saveZooModel('ioi', t.model, dir, { steps: t.result.completed });
  type IOIEval = Awaited<ReturnType<typeof ioiEvaluate>>;
  const mt = t.metrics as { heldout: IOIEval; train: IOIEval };
  const row = (n: string, e: IOIEval) => `| ${n} | ${e.n} | ${fmt(e.meanLogitDiff)} | ${fmt(e.accuracy)} | ${fmt(e.top1)} |`;
  const body = `## Task

Synthetic IOI over the exact BABA/ABBA templates, places, objects and the 99 names of src/data/ioi.ts, with a word-level tokenizer (HF Whitespace pre-tokenizer: words and punctuation; every name is one token). Held out: 20 names and templates ${JSON.stringify((t.recipe.split as { heldOutTemplates: number[] }).heldOutTemplates)} (both BABA and ABBA order); see task.json. Name embeddings are fixed random vectors (std ${t.recipe.nameEmbedStd}, never trained; the unembedding is tied), so held-out names are as good as trained ones to the model. Loss: next-token NLL on every position of the full sentence, the final IO token weighted ${t.recipe.ioWeight}.

${archAndTraining(t, 'cosine')}

${evalTable(t.result)}

## Logit difference (fresh data: ioiEvaluate(model, { split, n: 200, seed: 31337 }))

| split | prompts | mean logit(IO) - logit(S) | accuracy (IO > S) | IO top-1 |
|---|---:|---:|---:|---:|
${row('held-out names + templates', mt.heldout)}
${row('train names + templates', mt.train)}

## The IOI circuit

(written by scripts/ioi-circuit.ts --card)`;
  await writeCommon('ioi', dir, t, wall, body, `npx tsx scripts/train-zoo.ts ioi${steps ? ` --steps ${steps}` : ''}${seed !== undefined ? ` --seed ${seed}` : ''}${Object.entries(overrides() ?? {}).map(([k, v]) => ` --set ${k}=${v}`).join('')}${variant}\nnpx tsx scripts/ioi-circuit.ts fixtures/models/ioi --card\nnpx tsx scripts/zoo-logits.ts ioi`);
  t.model.dispose();
  console.log(`ioi: ${(await dirSize(dir)) / 1e6} MB`);
}

async function doInduction(out: string): Promise<void> {
  const dir = path.join(out, 'induction-handmade');
  await fsp.rm(dir, { recursive: true, force: true });
  await fsp.mkdir(dir, { recursive: true });
  const t0 = Date.now();
  const m = buildInductionHandmade();
  await saveZooModel('induction-handmade', m, dir, { steps: 0 });
  await fsp.writeFile(path.join(dir, 'circuit.json'), JSON.stringify({ heads: ['0.0', '1.0'], roles: { '0.0': 'previous-token', '1.0': 'induction (K-composition with 0.0)' } }, null, 2) + '\n');
  const e = await inductionEvaluate(m, inductionEvalBatch(2024, 32, 20));
  const wall = Date.now() - t0;
  const card = `# induction-handmade

${ZOO['induction-handmade'].description}. No training: every weight is set by buildInductionHandmade() in src/zoo/induction-handmade.ts.

## Construction

- Vocabulary: 32 word-level tokens (<bos>, <unk>, 30 syllables ba..lu); d_model 80, 2 layers, 2 heads of d_head 40, n_ctx 64; GPT2LMHeadModel with tied embeddings; MLPs zero (n_inner 4); LayerNorm weights 1, biases 0.
- Residual layout: token block [0, 32) holds e_t = onehot(t) - 1/32; previous-token block [32, 64); position block [64, 80) holds (cos, sin, -cos, -sin)(w_f i)/sqrt(8) for w_f = 2 pi k / 64, k in {2, 3, 11, 23}. Every vector sums to zero, so each LayerNorm only rescales (by a known constant).
- Head 0.0 (previous token): W_Q rotates the position features one step back, W_K reads them unrotated, so the score is proportional to sum_f cos(w_f (i - 1 - j)), maximal at j = i - 1 (gap >= 2.2 per unit; scaled to ${12} x). OV copies the token block into the previous-token block.
- Head 1.0 (induction, K-composition): W_Q reads the current token, W_K reads the previous-token block written by 0.0, so it attends to positions whose previous token equals the current token (logit gap 25); OV writes the attended token into the token block with gain 4, so the tied unembedding predicts it.
- Heads 0.1 and 1.1 are zero (uniform attention, zero output).

circuit.json: {"heads": ["0.0", "1.0"]}.

## Behaviour (fresh data: inductionEvalBatch(2024, 32, 20) = BOS + 20 random syllables repeated twice)

- top-1 accuracy on the second repeat (positions where induction applies): ${fmt(e.accuracy)}
- mean attention of 0.0 from query i to i - 1: ${fmt(e.prevTokenAttention)}
- mean attention of 1.0 from second-repeat queries to the token after the earlier occurrence: ${fmt(e.inductionAttention)}

## Reproduce

\`\`\`
npx tsx scripts/train-zoo.ts induction-handmade
\`\`\`

${envLine(wall)}
`;
  await fsp.writeFile(path.join(dir, 'MODEL_CARD.md'), card);
  m.dispose();
  console.log(`induction-handmade: ${JSON.stringify(e)}; ${(await dirSize(dir)) / 1e6} MB`);
}

/** `kill -USR2 <pid>` stops the current training after its step; the model so far is saved. */
const abort = new AbortController();
process.on('SIGUSR2', () => {
  console.log('\nSIGUSR2: stopping after this step');
  abort.abort();
});

async function main(): Promise<void> {
  const which = process.argv[2];
  if (!which || ![...NAMES, 'all'].includes(which)) {
    console.error('usage: npx tsx scripts/train-zoo.ts <bb|recall|ioi|induction-handmade|all> [--steps N] [--out dir] [--seed S] | bb --remeasure [--out dir]');
    process.exit(2);
  }
  const steps = arg('steps') !== undefined ? Number(arg('steps')) : undefined;
  const seed = arg('seed') !== undefined ? Number(arg('seed')) : undefined;
  const out = arg('out') ?? 'fixtures/models';
  const backend = await initBackend();
  console.log(`backend ${backend}`);
  if (process.argv.includes('--remeasure')) {
    if (which === 'recall') return remeasureRecall(out);
    if (which !== 'bb') throw new Error('--remeasure is for bb and recall');
    return remeasureBB(out);
  }
  const todo: readonly ZooName[] = which === 'all' ? NAMES : [which as ZooName];
  for (const n of todo) {
    if (n === 'bb') await doBB(out, steps, seed);
    else if (n === 'recall') await doRecall(out, steps, seed);
    else if (n === 'ioi') await doIOI(out, steps, seed);
    else await doInduction(out);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
