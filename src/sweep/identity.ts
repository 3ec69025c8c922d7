/**
 * What identifies a model for a sweep. The sweep id hashes the `exact` identity: the content of
 * the small files (config, tokenizer, task), and per weight file its size, a hash of its safetensors
 * header (names, dtypes, shapes, offsets) and either the Hugging Face cache's content hash (the blob
 * a snapshot file links to is named by its SHA-256) or its modification time. So a retrained model
 * written to the same path gets a new sweep id without hashing gigabytes at submit.
 *
 * Workers check the `portable` part (everything but modification times), which holds on every
 * machine that has a copy of the same files, and refuse shards of a model they do not have.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { resolveModelPath } from '../io/hub.js';
import { ConfigError, FormatError } from '../errors.js';

export interface ModelFile {
  file: string;
  size: number;
  /** SHA-256 of the content (small files, or a weight file in the HF cache). */
  sha256?: string;
  /** SHA-256 of a safetensors file's header. */
  header?: string;
  /** Modification time (ms) of a weight file without a content hash; not part of the portable identity. */
  mtimeMs?: number;
}

export interface ModelIdentity {
  /** The model as given (folder or hub id); also its name in the results. */
  name: string;
  files: ModelFile[];
}

const SMALL = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'task.json'];

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** SHA-256 of the 8-byte length and the JSON header of a safetensors file. */
async function headerHash(file: string): Promise<string> {
  const fh = await fsp.open(file, 'r');
  try {
    const len = Buffer.alloc(8);
    await fh.read(len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE(0));
    const { size } = await fh.stat();
    if (n <= 0 || 8 + n > size) throw new FormatError(file, `a safetensors header length in [1, ${size - 8}], found ${n}`);
    const head = Buffer.alloc(n);
    await fh.read(head, 0, n, 8);
    return sha256(Buffer.concat([len, head]));
  } finally {
    await fh.close();
  }
}

/** The HF cache's content hash: a snapshot file links to blobs/<sha256>. */
async function blobHash(file: string): Promise<string | undefined> {
  const real = path.basename(await fsp.realpath(file));
  return /^[0-9a-f]{64}$/.test(real) ? real : undefined;
}

/** The identity of a model folder or hub id (resolved as loadModel resolves it). */
export async function modelIdentity(name: string): Promise<ModelIdentity> {
  const dir = await resolveModelPath(name);
  const files: ModelFile[] = [];
  for (const f of (await fsp.readdir(dir)).sort()) {
    const p = path.join(dir, f);
    const isWeights = f.endsWith('.safetensors');
    if (!SMALL.includes(f) && !isWeights && !f.endsWith('.safetensors.index.json')) continue;
    const st = await fsp.stat(p);
    if (!isWeights) {
      files.push({ file: f, size: st.size, sha256: sha256(await fsp.readFile(p)) });
      continue;
    }
    const blob = await blobHash(p);
    files.push({ file: f, size: st.size, header: await headerHash(p), ...(blob ? { sha256: blob } : { mtimeMs: Math.floor(st.mtimeMs) }) });
  }
  if (!files.some((f) => f.file === 'config.json')) throw new ConfigError(`${name}: config.json`, 'missing in the model folder');
  return { name, files };
}

/** The identity without modification times: equal on every machine holding the same files. */
export function portableIdentity(id: ModelIdentity): ModelFile[] {
  return id.files.map(({ mtimeMs: _, ...rest }) => rest);
}
