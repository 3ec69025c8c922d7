/** Reading CLI inputs (token files, prompt files) with errors that name the file and the row. */
import { promises as fsp } from 'node:fs';
import { FormatError, ResolveError, ShapeError, ValueError, expectedFound } from '../errors.js';
import { readJsonFile } from '../io/json.js';
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

/** {"input_ids": [[...]], "attention_mask": [[...]]} (mask optional), checked against the model's vocabulary. */
export async function readTokensFile(file: string, model?: HookedTransformer): Promise<TokenBatch> {
  const json = await readJsonFile(file, 'token file'); // a key written twice is an error, not "last wins"
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new FormatError(file, expectedFound('an object {"input_ids": [[...]]}', Array.isArray(json) ? 'an array' : typeof json));
  const obj = json as Record<string, unknown>;
  const ids = intRows(obj.input_ids, `${file}: input_ids`);
  const T = ids[0].length;
  const mask = obj.attention_mask === undefined ? ids.map((r) => r.map(() => 1)) : intRows(obj.attention_mask, `${file}: attention_mask`);
  if (mask.length !== ids.length) throw new ShapeError(`${file}: attention_mask`, expectedFound(`${ids.length} rows like input_ids`, mask.length));
  mask.forEach((r, i) => {
    if (r.length !== T) throw new ShapeError(`${file}: attention_mask[${i}]`, expectedFound(`${T} entries`, r.length));
    r.forEach((v, j) => {
      if (v !== 0 && v !== 1) throw new ValueError(`${file}: attention_mask[${i}][${j}]`, expectedFound('0 or 1', v));
    });
  });
  if (model) {
    const V = model.cfg.d_vocab;
    ids.forEach((r, i) =>
      r.forEach((v, j) => {
        if (v >= V) throw new ValueError(`${file}: input_ids[${i}][${j}]`, expectedFound(`a token id in [0, ${V})`, v));
      }),
    );
    if (T > model.cfg.n_ctx) throw new ValueError(`${file}: input_ids`, expectedFound(`at most n_ctx = ${model.cfg.n_ctx} tokens per row`, T));
  }
  return { ids, mask };
}

function intRows(v: unknown, where: string): number[][] {
  if (!Array.isArray(v) || v.length === 0) throw new ShapeError(where, expectedFound('a non-empty array of rows', Array.isArray(v) ? 'an empty array' : typeof v));
  const rows = Array.isArray(v[0]) ? (v as unknown[][]) : [v as unknown[]];
  const T = Array.isArray(rows[0]) ? rows[0].length : -1;
  if (T <= 0) throw new ShapeError(where, 'rows must be non-empty arrays');
  return rows.map((r, i) => {
    if (!Array.isArray(r)) throw new ShapeError(`${where}[${i}]`, expectedFound('an array', typeof r));
    if (r.length !== T) throw new ShapeError(`${where}[${i}]`, expectedFound(`${T} entries (rows must be equal length; left-pad and give attention_mask)`, r.length));
    return r.map((x, j) => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0) throw new ValueError(`${where}[${i}][${j}]`, expectedFound('a non-negative integer', x));
      return x;
    });
  });
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
