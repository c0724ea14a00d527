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

/**
 * A host file or directory metad hands on (an OS image, a Ganeti package, an appliance share) must
 * be writable by its owner only: true when group or others may write it.
 */
export function writableByOthers(mode: number): boolean {
  return (mode & 0o022) !== 0;
}

// eslint-disable-next-line no-control-regex -- control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Open the file an admin or a feed names at `path` if it lies under one of `roots` (named
 * `rootsKey` in the problem): absolute, no control characters, realpath strictly inside a root,
 * opened as `openRegular` does, and writable by its owner only (`{problem}` says why not, never
 * the path). ('/tmp/tmpa1b2.tgz', ['/tmp']) -> the open file; ('/etc/shadow', ['/tmp']) -> outside the roots.
 */
export async function openUnderRoots(
  path: string,
  roots: readonly string[],
  maxBytes: number,
  rootsKey: string,
): Promise<OpenedFile | { problem: string }> {
  if (path.length === 0 || path.length > 4096 || CONTROL.test(path)) return { problem: 'not a usable path' };
  if (!path.startsWith('/')) return { problem: 'not an absolute path' };
  let real: string | undefined;
  for (const root of roots) {
    const base = await realDir(root);
    real = base === undefined ? undefined : await realInside(base, path);
    if (real !== undefined) break;
  }
  if (real === undefined) return { problem: `missing, or outside ${rootsKey}` };
  const opened = await openRegular(real, maxBytes);
  if ('problem' in opened) return opened;
  if (writableByOthers(opened.st.mode)) {
    await opened.fh.close();
    return { problem: 'writable by group or others' };
  }
  return opened;
}
