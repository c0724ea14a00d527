/**
 * Host files a guest is served (OS scripts, Ganeti's OS install package): the care taken once.
 * A path is resolved with realpath and must land strictly inside a base directory (itself
 * resolved), so neither `..` nor a symlink leads out; the result is opened O_NOFOLLOW (it must not
 * have become a symlink since) and O_NONBLOCK (a FIFO would otherwise hold one of node's few file
 * threads until a writer comes), and checked on the open descriptor: a regular file within a
 * size cap. Nothing here follows a path an instance names without these checks.
 */
import { open, realpath, type FileHandle } from 'node:fs/promises';
import { constants, type Stats } from 'node:fs';
import { sep } from 'node:path';

/** The real path of a directory, or undefined when it cannot be resolved. */
export async function realDir(dir: string): Promise<string | undefined> {
  try {
    return await realpath(dir);
  } catch {
    return undefined;
  }
}

/** The real path of `candidate` when it lies strictly inside the real directory `base`, else undefined. */
export async function realInside(base: string, candidate: string): Promise<string | undefined> {
  try {
    const real = await realpath(candidate);
    return real.startsWith(base === sep ? base : base + sep) && real !== base ? real : undefined;
  } catch {
    return undefined;
  }
}

/** Why an open file is not served, or undefined: it must be a regular file of at most `maxBytes`. */
export function regularFileProblem(st: Stats, maxBytes: number): 'not a regular file' | 'too large' | undefined {
  if (!st.isFile()) return 'not a regular file';
  if (st.size > maxBytes) return 'too large';
  return undefined;
}

export interface OpenedFile {
  fh: FileHandle;
  st: Stats;
}

/**
 * Open a resolved path for reading, O_NOFOLLOW | O_NONBLOCK, and check it on the descriptor.
 * `{problem}` when it cannot be opened or is not served (the handle is closed then).
 */
export async function openRegular(path: string, maxBytes: number): Promise<OpenedFile | { problem: string }> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return { problem: 'cannot be opened' };
  try {
    const st = await fh.stat();
    const problem = regularFileProblem(st, maxBytes);
    if (problem === undefined) return { fh, st };
    await fh.close();
    return { problem };
  } catch {
    await fh.close().catch(() => undefined);
    return { problem: 'cannot be read' };
  }
}
