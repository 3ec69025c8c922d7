/**
 * Model resolution: a local folder, the standard Hugging Face cache, or the hub over HTTPS.
 *
 * Cache layout (the one huggingface_hub uses, so both tools share downloads):
 *   {cache}/models--{org}--{name}/refs/{revision}          the commit hash a branch or tag points to
 *   {cache}/models--{org}--{name}/blobs/{etag}             file contents (etag = sha256 for LFS files)
 *   {cache}/models--{org}--{name}/snapshots/{commit}/{file} symlink to ../../blobs/{etag}
 * cache = cacheDir ?? $HF_HUB_CACHE ?? ($HF_HOME ?? ~/.cache/huggingface)/hub.
 *
 * A complete cached snapshot is used without touching the network. Downloads go to a temporary
 * file in blobs/ that is renamed only once complete (and its sha256 checked when the etag is one),
 * so an interrupted download never leaves a half file under a real name; the temporary names say
 * which host and process wrote them, and partial downloads of processes that were killed are
 * removed by the next download into the cache.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FormatError, ResolveError, ValueError, expectedFound } from '../errors.js';
import { removeStaleTempFiles, tempPathFor, writeFileAtomic } from './atomic.js';
import { isPlainObject } from './json.js';
import { INDEX_FILE, SINGLE_FILE, checkRelativeFileName, parseShardIndex } from './safetensors.js';

export interface ResolveProgress {
  file: string;
  loaded: number;
  /** Bytes expected (Content-Length), 0 when unknown. */
  total: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit hash (default "main"). */
  revision?: string;
  cacheDir?: string;
  /** Hub base URL (default $HF_ENDPOINT or https://huggingface.co). */
  endpoint?: string;
  /** Access token (default $HF_TOKEN); sent as "Authorization: Bearer ..." to the endpoint only. */
  token?: string;
  /** false: never contact the hub (also when HF_HUB_OFFLINE=1). Default true. */
  allowNetwork?: boolean;
  onProgress?: (p: ResolveProgress) => void;
  /** Exact files to fetch instead of the default set (config, tokenizer files, safetensors weights). */
  files?: string[];
  /** Give up on a request that sends nothing for this long (ms, default 60000). */
  timeoutMs?: number;
}

/** Optional files fetched when the repository has them. */
export const OPTIONAL_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'];
export const DEFAULT_ENDPOINT = 'https://huggingface.co';

const COMMIT_RE = /^[0-9a-f]{40}$/;
const REPO_ID_RE = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

function envFlag(name: string): boolean {
  const v = (process.env[name] ?? '').trim().toLowerCase();
  return v === '1' || v === 'true' || v === 'yes' || v === 'on';
}

/** The hub cache folder: cacheDir ?? $HF_HUB_CACHE (or legacy $HUGGINGFACE_HUB_CACHE) ?? ($HF_HOME ?? ~/.cache/huggingface)/hub. */
export function hubCacheDir(cacheDir?: string): string {
  if (cacheDir) return path.resolve(cacheDir);
  if (process.env.HF_HUB_CACHE) return path.resolve(process.env.HF_HUB_CACHE);
  if (process.env.HUGGINGFACE_HUB_CACHE) return path.resolve(process.env.HUGGINGFACE_HUB_CACHE); // legacy name
  const home = process.env.HF_HOME ? path.resolve(process.env.HF_HOME) : path.join(os.homedir(), '.cache', 'huggingface');
  return path.join(home, 'hub');
}

/** Folder of a model repository in the cache: models--{org}--{name}. */
export function repoCacheFolder(repoId: string, cacheDir?: string): string {
  return path.join(hubCacheDir(cacheDir), `models--${repoId.split('/').join('--')}`);
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

function looksLikePath(s: string): boolean {
  return s.startsWith('.') || s.startsWith('/') || s.startsWith('~') || s.includes('\\') || /^[A-Za-z]:/.test(s) || s.split('/').length > 2;
}

async function statOrNull(p: string) {
  try {
    return await fsp.stat(p);
  } catch {
    return null;
  }
}

function checkRepoId(id: string): void {
  if (!REPO_ID_RE.test(id) || id.includes('--') || id.includes('..') || id.length > 96) {
    throw new ResolveError(
      id,
      `not a local folder and not a valid hub repository id (expected "org/name" or "name" of letters, digits, "-", "_", "."; no "--" or "..")`,
    );
  }
}

function checkRevision(rev: string, id: string): void {
  if (typeof rev !== 'string' || rev.length === 0 || rev.includes('..') || rev.startsWith('/') || rev.includes('\\') || rev.includes('\0')) {
    throw new ValueError(`${id}: revision`, expectedFound('a branch, tag or commit hash', rev));
  }
}

/** Files a cached snapshot must hold to be usable: config.json plus the weights (all shards). */
async function missingFromSnapshot(snap: string, files: string[] | undefined): Promise<string[] | null> {
  if (!(await statOrNull(snap))?.isDirectory()) return null;
  const need = files ? [...files] : ['config.json'];
  if (!files) {
    if (await statOrNull(path.join(snap, SINGLE_FILE))) {
      need.push(SINGLE_FILE);
    } else if (await statOrNull(path.join(snap, INDEX_FILE))) {
      need.push(INDEX_FILE);
      try {
        const shards = parseShardIndex(await fsp.readFile(path.join(snap, INDEX_FILE), 'utf8'), path.join(snap, INDEX_FILE));
        need.push(...shards.keys());
      } catch {
        return [INDEX_FILE];
      }
    } else {
      need.push(SINGLE_FILE);
    }
  }
  const missing: string[] = [];
  for (const f of need) {
    const st = await statOrNull(path.join(snap, f)); // follows the symlink: a dangling link counts as missing
    if (!st?.isFile()) missing.push(f);
  }
  return missing;
}

async function readRef(repoDir: string, revision: string): Promise<string | null> {
  try {
    const commit = (await fsp.readFile(path.join(repoDir, 'refs', revision), 'utf8')).trim();
    return COMMIT_RE.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

/**
 * A local folder holding config.json and the weights of `pathOrId`: an existing local folder as is;
 * else a hub repository id, taken from the HF cache when a complete snapshot is there, else
 * downloaded into the cache (unless offline). Errors are ResolveErrors naming the id, the revision
 * and the file.
 */
export async function resolveModelPath(pathOrId: string, opts: ResolveOptions = {}): Promise<string> {
  if (typeof pathOrId !== 'string' || pathOrId.length === 0) throw new ValueError('pathOrId', expectedFound('a folder path or a hub id', pathOrId));
  const local = path.resolve(expandHome(pathOrId));
  const st = await statOrNull(local);
  if (st?.isDirectory()) return local;
  if (st) throw new ResolveError(pathOrId, 'expected a model folder (config.json + model.safetensors), found a file');
  if (looksLikePath(pathOrId)) throw new ResolveError(pathOrId, `model folder not found (${local})`);

  const id = pathOrId;
  checkRepoId(id);
  const revision = opts.revision ?? 'main';
  checkRevision(revision, id);
  const files = opts.files;
  files?.forEach((f) => checkRelativeFileName(f, `${id}: files`));
  const repoDir = repoCacheFolder(id, opts.cacheDir);
  const where = `${id} (revision ${revision})`;

  // (b) the cache
  const cachedCommit = COMMIT_RE.test(revision) ? revision : await readRef(repoDir, revision);
  let missing: string[] | null = null;
  if (cachedCommit) {
    const snap = path.join(repoDir, 'snapshots', cachedCommit);
    missing = await missingFromSnapshot(snap, files);
    if (missing && missing.length === 0) return snap;
  }

  const offline = envFlag('HF_HUB_OFFLINE') || opts.allowNetwork === false;
  if (offline) {
    const why = envFlag('HF_HUB_OFFLINE') ? 'HF_HUB_OFFLINE is set' : 'allowNetwork is false';
    const what = !cachedCommit
      ? `no snapshot for this revision in the cache (${repoDir})`
      : `the cached snapshot ${cachedCommit} lacks ${missing && missing.length ? missing.join(', ') : 'files'}`;
    throw new ResolveError(where, `not cached: ${what}, and ${why}`);
  }

  // (c) the hub
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const token = opts.token ?? process.env.HF_TOKEN ?? process.env.HUGGING_FACE_HUB_TOKEN;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) throw new ValueError('timeoutMs', expectedFound('a positive number of milliseconds', timeoutMs));
  const hub = new HubClient(endpoint, token, id, revision, timeoutMs);
  const info = await hub.revisionInfo();
  const commit = info.sha;
  const snap = path.join(repoDir, 'snapshots', commit);
  const siblings = info.siblings;
  const has = (f: string) => siblings === null || siblings.includes(f);

  let plan: string[];
  if (files) {
    for (const f of files) if (!has(f)) throw new ResolveError(`${where}: ${f}`, 'file not found in the repository');
    plan = files;
  } else {
    if (!has('config.json')) throw new ResolveError(`${where}: config.json`, 'the repository has no config.json');
    plan = ['config.json', ...OPTIONAL_FILES.filter((f) => siblings !== null && siblings.includes(f))];
    if (has(SINGLE_FILE) && (siblings !== null || !has(INDEX_FILE))) plan.push(SINGLE_FILE);
    else if (siblings !== null && siblings.includes(INDEX_FILE)) plan.push(INDEX_FILE);
    else if (siblings === null) plan.push(SINGLE_FILE);
    else {
      const bins = siblings.filter((f) => /\.(bin|pt|pth|ckpt|h5|msgpack)$/.test(f));
      throw new ResolveError(
        `${where}: ${SINGLE_FILE}`,
        `the repository has no safetensors weights (${SINGLE_FILE} or ${INDEX_FILE})${bins.length ? `; found ${bins.slice(0, 3).join(', ')}, which tflens does not read` : ''}`,
      );
    }
  }
  const done = new Set<string>();
  const fetchOne = async (f: string) => {
    if (done.has(f)) return;
    done.add(f);
    if ((await statOrNull(path.join(snap, f)))?.isFile()) return;
    await hub.download(f, commit, repoDir, snap, opts.onProgress);
  };
  for (const f of plan) await fetchOne(f);
  if (!files && plan.includes(INDEX_FILE)) {
    const idx = path.join(snap, INDEX_FILE);
    const shards = parseShardIndex(await fsp.readFile(idx, 'utf8'), `${where}: ${INDEX_FILE}`);
    for (const shard of shards.keys()) {
      if (!has(shard)) throw new ResolveError(`${where}: ${shard}`, `shard named in ${INDEX_FILE} is not in the repository`);
      await fetchOne(shard);
    }
  }
  if (revision !== commit) await writeFileAtomic(path.join(repoDir, 'refs', revision), commit);
  return snap;
}

/** What a user without network can do, said where the hub cannot be reached. */
const OFFLINE_HINT =
  'to work offline, pass a local model folder, or put the model in the HF cache (HF_HUB_CACHE, or HF_HOME/hub; ~/.cache/huggingface/hub by default) and set HF_HUB_OFFLINE=1';

function normalizeEtag(v: string | null): string | null {
  if (!v) return null;
  const e = v.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
  return /^[A-Za-z0-9._-]+$/.test(e) && e.length <= 200 ? e : null;
}

function encodePath(file: string): string {
  return file.split('/').map(encodeURIComponent).join('/');
}

class HubClient {
  private readonly where: string;
  constructor(
    private readonly endpoint: string,
    private readonly token: string | undefined,
    private readonly id: string,
    private readonly revision: string,
    private readonly timeoutMs: number,
  ) {
    this.where = `${id} (revision ${revision})`;
  }

  private headersFor(url: string): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'tflens' };
    // The token goes to the hub endpoint only, never to a CDN it redirects to.
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async get(url: string, file: string, dog: Watchdog): Promise<Response> {
    try {
      return await fetch(url, { headers: this.headersFor(url), redirect: 'manual', signal: dog.signal });
    } catch (e) {
      if (dog.fired) throw dog.error(`${this.where}: ${file}`, new URL(url).origin);
      const cause = (e as { cause?: Error }).cause;
      throw new ResolveError(`${this.where}: ${file}`, `cannot reach ${new URL(url).origin}: ${cause?.message ?? (e as Error).message}; ${OFFLINE_HINT}`);
    }
  }

  private statusError(res: Response, file: string): ResolveError {
    const w = `${this.where}: ${file}`;
    if (res.status === 401 || res.status === 403) {
      return new ResolveError(
        w,
        `access denied (HTTP ${res.status}): the repository is private or gated, or the token is wrong; ${this.token ? 'check the token' : 'set HF_TOKEN or pass a token'}`,
      );
    }
    if (res.status === 404) return new ResolveError(w, 'not found (HTTP 404): check the repository id, the revision and the file name');
    return new ResolveError(w, `HTTP ${res.status} ${res.statusText} from ${res.url || this.endpoint}`);
  }

  async revisionInfo(): Promise<{ sha: string; siblings: string[] | null }> {
    const url = `${this.endpoint}/api/models/${encodePath(this.id)}/revision/${encodeURIComponent(this.revision)}`;
    const dog = new Watchdog(this.timeoutMs);
    let json: unknown;
    try {
      const res = (await this.follow(url, 'api/models', dog))!;
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        throw this.statusError(res, 'api/models');
      }
      try {
        json = await res.json();
      } catch {
        if (dog.fired) throw dog.error(`${this.where}: api/models`, this.endpoint);
        throw new FormatError(`${this.where}: api/models`, `the hub answered with something that is not JSON (${url})`);
      }
    } finally {
      dog.stop();
    }
    if (!isPlainObject(json) || typeof json.sha !== 'string' || !COMMIT_RE.test(json.sha)) {
      throw new FormatError(`${this.where}: api/models`, expectedFound('{"sha": <40-hex commit>, "siblings": [...]}', isPlainObject(json) ? `sha ${JSON.stringify(json.sha)}` : typeof json));
    }
    let siblings: string[] | null = null;
    if (Array.isArray(json.siblings)) {
      siblings = json.siblings.map((s) => (isPlainObject(s) && typeof s.rfilename === 'string' ? s.rfilename : '')).filter((s) => s.length > 0);
    }
    return { sha: json.sha, siblings };
  }

  /** GET following up to 5 redirects by hand, so the first response's etag headers can be read. */
  private async follow(
    url: string,
    file: string,
    dog: Watchdog,
    seen?: { etag: string | null; commit: string | null },
    stopIf?: (etag: string) => Promise<boolean>,
  ): Promise<Response | null> {
    let cur = url;
    for (let hop = 0; hop <= 5; hop++) {
      const res = await this.get(cur, file, dog);
      if (seen) {
        seen.etag ??= normalizeEtag(res.headers.get('x-linked-etag')) ?? (res.status >= 300 && res.status < 400 ? null : normalizeEtag(res.headers.get('etag')));
        seen.commit ??= res.headers.get('x-repo-commit');
        if (seen.etag && (res.ok || (res.status >= 300 && res.status < 400)) && stopIf && (await stopIf(seen.etag))) {
          // The blob is already in the cache (e.g. shared with another revision): no need for the body.
          await res.body?.cancel().catch(() => undefined);
          return null;
        }
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel().catch(() => undefined);
        cur = new URL(res.headers.get('location')!, cur).toString();
        continue;
      }
      return res;
    }
    throw new ResolveError(`${this.where}: ${file}`, `too many redirects from ${url}`);
  }

  async download(file: string, commit: string, repoDir: string, snap: string, onProgress?: (p: ResolveProgress) => void): Promise<void> {
    checkRelativeFileName(file, `${this.where}: file`);
    const url = `${this.endpoint}/${encodePath(this.id)}/resolve/${commit}/${encodePath(file)}`;
    const seen = { etag: null as string | null, commit: null as string | null };
    const blobs = path.join(repoDir, 'blobs');
    const dog = new Watchdog(this.timeoutMs);
    try {
      await this.fetchInto(url, file, seen, dog, blobs, snap, onProgress);
    } finally {
      dog.stop();
    }
  }

  private async fetchInto(
    url: string,
    file: string,
    seen: { etag: string | null; commit: string | null },
    dog: Watchdog,
    blobs: string,
    snap: string,
    onProgress?: (p: ResolveProgress) => void,
  ): Promise<void> {
    const res = await this.follow(url, file, dog, seen, async (etag) => (await statOrNull(path.join(blobs, etag)))?.isFile() ?? false);
    if (res === null) {
      await linkIntoSnapshot(path.join(blobs, seen.etag!), path.join(snap, file));
      return;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel().catch(() => undefined);
      throw this.statusError(res, file);
    }
    await fsp.mkdir(blobs, { recursive: true });
    await removeStaleTempFiles(blobs); // partial downloads of killed processes
    const total = Number(res.headers.get('content-length') ?? 0) || 0;
    const tmp = tempPathFor(path.join(blobs, 'download'));
    const hash = createHash('sha256');
    let loaded = 0;
    const fh = await fsp.open(tmp, 'wx');
    let blob: string;
    try {
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          dog.kick();
          hash.update(chunk);
          let off = 0;
          while (off < chunk.byteLength) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
          loaded += chunk.byteLength;
          onProgress?.({ file, loaded, total });
        }
      } catch (e) {
        if (dog.fired) throw dog.error(`${this.where}: ${file}`, new URL(url).origin, loaded);
        throw new ResolveError(`${this.where}: ${file}`, `download interrupted after ${loaded} bytes: ${(e as Error).message}`);
      }
      if (total && loaded !== total) throw new ResolveError(`${this.where}: ${file}`, `download truncated: ${expectedFound(`${total} bytes`, `${loaded} bytes`)}`);
      const digest = hash.digest('hex');
      if (seen.etag && /^[0-9a-f]{64}$/.test(seen.etag) && seen.etag !== digest) {
        throw new ResolveError(`${this.where}: ${file}`, `downloaded bytes do not match the hub's sha256: ${expectedFound(seen.etag, digest)}`);
      }
      blob = seen.etag ?? digest;
      await fh.sync();
      await fh.close();
      await fsp.rename(tmp, path.join(blobs, blob));
    } catch (e) {
      await fh.close().catch(() => undefined);
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
      throw e;
    }
    await linkIntoSnapshot(path.join(blobs, blob), path.join(snap, file));
  }
}

/** Aborts a request that sends nothing for `ms` milliseconds; kick() on every chunk received. */
class Watchdog {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  fired = false;
  constructor(private readonly ms: number) {
    this.kick();
  }
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  kick(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.fired = true;
      this.controller.abort();
    }, this.ms);
  }
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
  error(where: string, origin: string, loaded?: number): ResolveError {
    return new ResolveError(where, `no data from ${origin} for ${this.ms} ms${loaded !== undefined ? ` (after ${loaded} bytes)` : ''}; giving up (timeoutMs)`);
  }
}

/** snapshots/{commit}/{file} -> relative symlink to the blob (a copy where symlinks are not allowed). */
async function linkIntoSnapshot(blobPath: string, dest: string): Promise<void> {
  await fsp.mkdir(path.dirname(dest), { recursive: true });
  const rel = path.relative(path.dirname(dest), blobPath);
  const tmp = tempPathFor(dest);
  try {
    await fsp.symlink(rel, tmp);
  } catch {
    await fsp.copyFile(blobPath, tmp);
  }
  try {
    await fsp.rename(tmp, dest);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw e;
  }
}
