/**
 * Atomic file writes. Every file tflens writes goes through here: the bytes go to a temporary file
 * in the destination folder, are flushed to disk (fsync), and the temporary file is renamed over
 * the destination. A crash or an error part way leaves either the old file or the new one, never
 * a half-written file; the temporary file is removed on error.
 *
 * A writer killed outright (kill -9, power loss) cannot remove its temporary file, so temporary
 * names say who wrote them: `.{file}~{host}~{pid}~{random}.tmp`. The first write a process makes
 * into a folder removes the temporary files there whose writer ran on this host and is no longer
 * alive. Files of live processes, of other hosts (a shared folder) and other dot-files are kept.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ResolveError, TflensError, ValueError } from '../errors.js';
import { describeErrno } from './files.js';

export type AtomicData = string | Uint8Array | Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>;

/** Host names may hold dots and dashes, never "~": it separates the parts of a temporary name. */
function hostTag(): string {
  return os.hostname().replace(/[^A-Za-z0-9.-]/g, '_') || 'host';
}

const TEMP_RE = /^\.(.+)~([A-Za-z0-9._-]+)~(\d+)~([0-9a-f]{12})\.tmp$/;

/** A temp-file name beside `dest` (same folder, so the rename stays on one file system), naming this host and process. */
export function tempPathFor(dest: string): string {
  const dir = path.dirname(dest);
  const base = path.basename(dest);
  return path.join(dir, `.${base}~${hostTag()}~${process.pid}~${randomBytes(6).toString('hex')}.tmp`);
}

/** The writer a temporary name records, or null for any other file name. */
export function tempFileWriter(name: string): { dest: string; host: string; pid: number } | null {
  const m = TEMP_RE.exec(name);
  return m ? { dest: m[1], host: m[2], pid: Number(m[3]) } : null;
}

/** Whether a process of this host is alive (EPERM: alive, owned by another user). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the temporary files in `dir` left by writers of this host that are no longer running;
 * returns their paths. Best effort: a file that cannot be listed or removed is left alone.
 */
export async function removeStaleTempFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const w = tempFileWriter(name);
    if (!w || w.host !== hostTag() || processAlive(w.pid)) continue;
    const p = path.join(dir, name);
    if (await fsp.rm(p).then(() => true, () => false)) removed.push(p);
  }
  return removed;
}

/** Folders this process has already swept for stale temporary files. */
const swept = new Set<string>();

/** A file-system failure while writing `dest`, as a ResolveError naming it (tflens errors pass through). */
function writeError(dest: string, e: unknown): unknown {
  if (e instanceof TflensError || !(e as NodeJS.ErrnoException)?.code) return e;
  return new ResolveError(dest, `cannot write: ${describeErrno(e)}`);
}

async function writeAllTo(fh: FileHandle, chunk: Uint8Array | string): Promise<void> {
  const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
  let off = 0;
  while (off < buf.byteLength) {
    const { bytesWritten } = await fh.write(buf, off, buf.byteLength - off);
    if (bytesWritten <= 0) throw new Error('write returned 0 bytes');
    off += bytesWritten;
  }
}

/** Flush a folder's entry table (makes a rename durable). Best effort: not all platforms allow it. */
async function fsyncDir(dir: string): Promise<void> {
  let dh: FileHandle | null = null;
  try {
    dh = await fsp.open(dir, 'r');
    await dh.sync();
  } catch {
    // Windows and some file systems do not allow opening or syncing a folder.
  } finally {
    await dh?.close().catch(() => undefined);
  }
}

/**
 * Open a temporary file beside `dest`, let `fill` write into it, fsync, close and rename it to
 * `dest`. Creates parent folders. If `fill` throws, the temporary file is removed and `dest` is
 * left untouched. Returns what `fill` returned.
 */
export async function withAtomicFile<R>(dest: string, fill: (fh: FileHandle, write: (chunk: Uint8Array | string) => Promise<void>) => Promise<R>): Promise<R> {
  if (typeof dest !== 'string' || dest.length === 0) {
    throw new ValueError('path', `expected a non-empty file path, found ${JSON.stringify(dest)}`);
  }
  const dir = path.dirname(path.resolve(dest));
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new ResolveError(dir, `cannot create the folder for ${dest}: ${describeErrno(e)}`);
  }
  if ((await fsp.stat(dest).catch(() => null))?.isDirectory()) {
    throw new ResolveError(dest, 'cannot write: EISDIR: it is a folder; give a file path');
  }
  if (!swept.has(dir)) {
    swept.add(dir);
    await removeStaleTempFiles(dir);
  }
  const tmp = tempPathFor(path.resolve(dest));
  let fh: FileHandle | null = null;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    const handle = fh;
    const result = await fill(handle, (chunk) => writeAllTo(handle, chunk));
    await fh.sync();
    await fh.close();
    fh = null;
    await fsp.rename(tmp, dest);
    await fsyncDir(dir);
    return result;
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw writeError(dest, e);
  }
}

/**
 * Write `data` (a string, bytes, or an iterable / async iterable of chunks) to `dest` atomically:
 * temporary file in the same folder, fsync, rename. Creates parent folders.
 */
export async function writeFileAtomic(dest: string, data: AtomicData): Promise<void> {
  await withAtomicFile(dest, async (_fh, write) => {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await write(data);
    } else if (Symbol.asyncIterator in (data as object)) {
      for await (const chunk of data as AsyncIterable<Uint8Array | string>) await write(chunk);
    } else if (Symbol.iterator in (data as object)) {
      for (const chunk of data as Iterable<Uint8Array | string>) await write(chunk);
    } else {
      throw new ValueError('data', `expected a string, bytes or an iterable of chunks, found ${typeof data}`);
    }
  });
}
