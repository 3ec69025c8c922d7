/**
 * File-system probes that keep the reason a path cannot be used. A plain "does it exist" check
 * turns a symlink loop (ELOOP), a permission problem (EACCES) or a file where a folder is expected
 * (ENOTDIR) into "not found"; these helpers report them as what they are.
 */
import { promises as fsp } from 'node:fs';
import { ResolveError } from '../errors.js';

/** Why an errno code makes a path unusable, in words (the code itself is kept in messages). */
export function describeErrno(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    ELOOP: 'too many levels of symbolic links (a symlink loop?)',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EISDIR: 'it is a folder, not a file',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EROFS: 'the file system is read-only',
    ENOSPC: 'no space left on the device',
    ENAMETOOLONG: 'the name is too long',
  };
  return err?.code && why[err.code] ? `${err.code}: ${why[err.code]}` : (err?.message ?? String(e));
}

/**
 * True when `p` exists (following symlinks), false when it does not (ENOENT, or a dangling
 * symlink); any other failure (ELOOP, EACCES, ...) is a ResolveError naming the path and the errno.
 */
export async function pathExists(p: string): Promise<boolean> {
  try {
    await fsp.stat(p);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new ResolveError(p, `cannot be used: ${describeErrno(e)}`);
  }
}
