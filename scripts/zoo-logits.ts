/**
 * Write fixtures/models/<name>/tflens_logits.json for the HF cross-check (fixtures/check_hf_models.py):
 * fixed probe token rows, tflens's logits for them (6 significant digits), and tokenizer samples
 * (text -> ids by tflens's tokenizer).
 *   npx tsx scripts/zoo-logits.ts [name ...] [--dir fixtures/models]
 */
import * as tf from '@tensorflow/tfjs';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { initBackend } from '../src/backend/index.js';
import { loadModel } from '../src/model/index.js';
import { ZOO_NAMES, zooProbeTokens, type ZooName } from '../src/zoo/registry.js';

const SAMPLES: Record<ZooName, string[]> = {
  bb: ['Hello, world!', 'abc xyz\nQ'],
  recall: ['key is k3 . value is v7 .', 'w1 w2 w3 . what key is k3 value is'],
  ioi: ['Then, Mary and John went to the store. John gave a drink to', 'When Amy and Tom got a ring at the school, Amy decided to give it to'],
  'induction-handmade': ['ba be bi', 'lu la ka ke'],
  'var-group': ['<bos> w1 w2 <img> bg red </img> color ?', 'w3 blue w4'],
};

async function main(): Promise<void> {
  const di = process.argv.indexOf('--dir');
  const dir = di >= 0 ? process.argv[di + 1] : 'fixtures/models';
  const names = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && all[i - 1] !== '--dir') as ZooName[];
  const backend = await initBackend();
  for (const name of names.length ? names : ZOO_NAMES) {
    const folder = path.join(dir, name);
    try {
      await fsp.stat(path.join(folder, 'config.json'));
    } catch {
      console.log(`${name}: no model in ${folder}, skipped`);
      continue;
    }
    const model = await loadModel(folder);
    const tokens = zooProbeTokens(name);
    const logitsT = await model.forward(tokens);
    const raw = (await logitsT.array()) as number[][][];
    logitsT.dispose();
    const logits = raw.map((r) => r.map((row) => row.map((x) => Number(x.toPrecision(6)))));
    const tokenizer = SAMPLES[name].map((text) => ({ text, ids: model.tokenizer ? model.tokenizer.encode(text) : [] }));
    const out = { model: name, backend, tfjs: tf.version.tfjs, tokens, logits, tokenizer };
    await fsp.writeFile(path.join(folder, 'tflens_logits.json'), JSON.stringify(out) + '\n');
    model.dispose();
    console.log(`${name}: ${tokens.length} x ${tokens[0].length} tokens -> ${path.join(folder, 'tflens_logits.json')}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
