/** Reading CLI inputs (token files, prompt files) with errors that name the file and the row. */
import { promises as fsp } from 'node:fs';
import { FormatError, ResolveError, ValueError, expectedFound } from '../errors.js';
import { isPlainObject, readJsonFile } from '../io/json.js';
import { parseTokenIds, readTokenFile } from '../io/tokens.js';
import type { HookedTransformer } from '../model/hooked.js';

export interface TokenBatch {
  ids: number[][];
  mask: number[][];
}

async function readText(file: string): Promise<string> {
  try {
    return await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new ResolveError(file, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * A --tokens file, in any layout io/tokens reads: JSON {"input_ids": [[...]], "attention_mask": [[...]]}
 * (mask optional, 0/1), {"tokens": [[...]]}, a bare list of rows, or an int32/int64 .npy array. Rows have
 * one length (left-pad and give the mask); ids must fit the model's vocabulary and rows its context.
 */
export async function readTokensFile(file: string, model?: HookedTransformer): Promise<TokenBatch> {
  const dVocab = model?.cfg.d_vocab;
  let ids: number[][];
  let mask: number[][] | null = null;
  if (file.endsWith('.npy')) ids = await readTokenFile(file, { dVocab });
  else {
    const json = await readJsonFile(file, 'token file'); // a key written twice is an error, not "last wins"
    ids = parseTokenIds(json, file, { dVocab }); // checks the mask too
    if (isPlainObject(json) && json.attention_mask !== undefined && json.attention_mask !== null) mask = json.attention_mask as number[][];
  }
  const T = ids[0].length;
  if (model && T > model.cfg.n_ctx) throw new ValueError(`${file}: input_ids`, expectedFound(`at most n_ctx = ${model.cfg.n_ctx} tokens per row`, T));
  return { ids, mask: mask ?? ids.map((r) => r.map(() => 1)) };
}

/** One prompt per non-empty line, tokenized with left padding. */
export async function readPromptsFile(file: string, model: HookedTransformer): Promise<TokenBatch & { prompts: string[] }> {
  const prompts = (await readText(file)).split(/\r?\n/).filter((l) => l.trim().length > 0);
  if (!prompts.length) throw new FormatError(file, 'no prompts (one per line expected)');
  const { ids, mask } = encodePrompts(file, prompts, model);
  const V = model.cfg.d_vocab;
  ids.forEach((r, i) =>
    r.forEach((v, j) => {
      if (v >= V) throw new ValueError(`${file}: prompt ${i + 1}`, `${expectedFound(`token ids in [0, ${V})`, v)} at token ${j - mask[i].indexOf(1)} (the tokenizer's vocabulary is larger than the model's)`);
    }),
  );
  return { ids, mask, prompts };
}

/** model.encodeBatch, with a refused text (empty, longer than n_ctx) named by file and line. */
function encodePrompts(file: string, prompts: string[], model: HookedTransformer): { ids: number[][]; mask: number[][] } {
  try {
    return model.encodeBatch(prompts);
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    const i = /^texts\[(\d+)\]$/.exec(e.where);
    if (i) throw new ValueError(`${file}: prompt ${Number(i[1]) + 1}`, e.message.slice(e.where.length + 2));
    throw e;
  }
}
