/**
 * Train the tiny token-group model for the VAR notebook into fixtures/models/var-group:
 *   npx tsx scripts/train-var-group.ts [--steps N] [--seed S] [--lm-weight W] [--out dir] [--dry]
 * Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json, task.json,
 * train_log.json and MODEL_CARD.md (numbers measured on fresh held-out data after training).
 * --dry trains and prints the held-out numbers without writing anything.
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { initBackend } from '../src/backend/index.js';
import { TOKEN_GROUP_VOCAB, tokenGroupBatch, tokenGroupLayout } from '../src/data/token-group.js';
import { VAR_GROUP_RECIPE, VAR_GROUP_TASK, tokenGroupEvaluate, trainTokenGroupModel } from '../src/zoo/var-group.js';
import { saveZooModel } from '../src/zoo/registry.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** Held-out evaluation seed and size of the model card's headline numbers. */
export const HELDOUT = { seed: 777, n: 512 };

async function main(): Promise<void> {
  await initBackend();
  const steps = arg('steps') ? Number(arg('steps')) : undefined;
  const seed = arg('seed') ? Number(arg('seed')) : undefined;
  const out = arg('out') ?? 'fixtures/models/var-group';
  const dry = process.argv.includes('--dry');
  const lmWeight = arg('lm-weight') ? Number(arg('lm-weight')) : undefined;
  const t0 = Date.now();
  const { model, result, recipe } = await trainTokenGroupModel({
    steps,
    seed,
    lmWeight,
    progressLabel: false,
    onEval: (s, v) => console.log(`step ${s}: accuracy ${v.accuracy.toFixed(3)}, answer loss ${v.loss.toFixed(3)} (${((Date.now() - t0) / 1000).toFixed(0)} s)`),
  });
  const wallMs = Date.now() - t0;
  const ev = await tokenGroupEvaluate(model, tokenGroupBatch(HELDOUT.n, HELDOUT.seed));
  const layout = tokenGroupLayout();
  console.log(`held-out (seed ${HELDOUT.seed}, n ${HELDOUT.n}): accuracy ${ev.accuracy.toFixed(4)}, loss ${ev.loss.toFixed(4)}, distractor rate ${ev.distractorRate.toFixed(4)}; ${(wallMs / 1000).toFixed(0)} s on ${tf.getBackend()}`);
  if (dry) {
    model.dispose();
    return;
  }
  await fsp.mkdir(out, { recursive: true });
  await saveZooModel('var-group', model, out, { steps: result.completed }, { heldout: { ...HELDOUT, accuracy: ev.accuracy, loss: ev.loss, distractorRate: ev.distractorRate } });
  await fsp.writeFile(
    path.join(out, 'train_log.json'),
    JSON.stringify({ steps: result.steps, loss: result.loss, lr: result.lr, gradNorm: result.gradNorm, evals: result.evals, recipe }, null, 1) + '\n',
  );
  const c = model.cfg;
  const curve = ['| step | eval accuracy | eval answer loss |', '|---:|---:|---:|', ...result.evals.map((e) => `| ${e.step} | ${e.values.accuracy.toFixed(3)} | ${e.values.loss.toFixed(3)} |`)];
  const card = `# var-group

A tiny LLaMA-style model trained by tflens for the VAR (visual attention redistribution) part of
notebooks/06-calibration.ipynb, on the token-group task of \`src/data/token-group.ts\`.

## Task

\`<bos> text x ${layout.textBefore} <img> patch x ${layout.groupSize} </img> text x ${layout.textAfter} color ?\` -> the majority colour of the image.
The image patches are the background token \`bg\` except the majority colour (${VAR_GROUP_TASK.majority[0]}-${VAR_GROUP_TASK.majority[1]} times) and one
minority colour (${VAR_GROUP_TASK.minority} time). The text mentions a third colour, the distractor, ${VAR_GROUP_TASK.textDistractors} times among filler words
w0..w23, so attending to every colour token leads to the distractor. Colours are the same tokens
in the image and the text. Token group (VAR's image span): positions [${layout.group.start}, ${layout.group.end}) counted from \`<bos>\`;
the answer is read at position ${layout.query} ("?"). Vocabulary: ${TOKEN_GROUP_VOCAB.length} word-level tokens.

## Architecture

- LlamaForCausalLM; ${model.parameterCount().toLocaleString('en-US')} parameters
- layers ${c.n_layers}, d_model ${c.d_model}, heads ${c.n_heads}, d_head ${c.d_head}, d_mlp ${c.d_mlp} (gated SiLU), RMSNorm, rotary positions, untied embeddings

## Training

AdamW (src/zoo/train.ts): ${recipe.steps} steps, batch ${recipe.batch}, lr ${VAR_GROUP_RECIPE.lr} (warmup ${VAR_GROUP_RECIPE.warmupSteps}, cosine), weight decay ${VAR_GROUP_RECIPE.weightDecay},
betas ${VAR_GROUP_RECIPE.betas.join(', ')}, gradient clip ${VAR_GROUP_RECIPE.gradClip}, seed ${recipe.seed}; loss = answer NLL + ${recipe.lmWeight} x mean next-token NLL
on the prompt. Every batch is fresh seeded data.

${curve.join('\n')}

## Held-out numbers

Fresh prompts (tokenGroupBatch(${HELDOUT.n}, ${HELDOUT.seed})): accuracy ${ev.accuracy.toFixed(4)}, answer loss ${ev.loss.toFixed(4)} nats,
distractor predicted ${(100 * ev.distractorRate).toFixed(1)}% of the time. Chance is 1/8 over the colours.

## Reproduce

\`\`\`
npx tsx scripts/train-var-group.ts${steps ? ` --steps ${steps}` : ''}${seed !== undefined ? ` --seed ${seed}` : ''}${lmWeight !== undefined ? ` --lm-weight ${lmWeight}` : ''}
\`\`\`

- backend: ${tf.getBackend()} (TensorFlow.js ${tf.version.tfjs}), Node ${process.version}, ${os.cpus().length} shared CPU cores; wall time ${(wallMs / 1000).toFixed(0)} s
- trained on ${new Date().toISOString().slice(0, 10)}; load with \`loadModel('fixtures/models/var-group')\`; task metadata in task.json.
`;
  await fsp.writeFile(path.join(out, 'MODEL_CARD.md'), card);
  model.dispose();
  console.log(`wrote ${out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
