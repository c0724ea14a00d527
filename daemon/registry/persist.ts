/**
 * Durable file operations for the state dir: every acknowledged write survives kill -9 and
 * power loss (write temp + fsync + rename + fsync the directory). A failed write leaves no
 * partial file behind. Knows nothing of instances.
 */
import { open, rename, unlink, readdir } from 'node:fs/promises';
import { mkdirs } from '../mkdirs.js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const TMP_MARK = '.tmp-';

/**
 * The rename/unlink happened, but fsync of the directory failed: the change is visible (and in
 * effect) but may not survive a power loss. Callers must not report "nothing changed".
 */
export class DirSyncError extends Error {
  override name = 'DirSyncError';
  constructor(override readonly cause: NodeJS.ErrnoException) {
    super(`directory sync failed after the change (${cause.code ?? 'error'})`);
  }
  get code(): string {
    return this.cause.code ?? 'EIO';
  }
}

async function fsyncDirAfterChange(dir: string): Promise<void> {
  try {
    await fsyncDir(dir);
  } catch (err) {
    throw new DirSyncError(err as NodeJS.ErrnoException);
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await open(dir, 'r');
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/**
 * Atomically replace `dir/name` with `data`. The temp file's name is random and short
 * (`.tmp-` + 16 hex digits), never derived from `name`: any `name` that fits NAME_MAX can be
 * written, and removeStaleTemps finds leftovers by the prefix alone.
 */
export async function writeFileDurable(dir: string, name: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = join(dir, `${TMP_MARK}${randomBytes(8).toString('hex')}`);
  let fd;
  try {
    fd = await open(tmp, 'wx', mode);
    await fd.writeFile(data);
    await fd.sync();
    await fd.close();
    fd = undefined;
    await rename(tmp, join(dir, name));
  } catch (err) {
    await fd?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fsyncDirAfterChange(dir);
}

/** Remove `dir/name` durably; a missing file is not an error. */
export async function removeFileDurable(dir: string, name: string): Promise<void> {
  try {
    await unlink(join(dir, name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await fsyncDirAfterChange(dir);
}

/** Move a file aside (e.g. into quarantine/) durably. */
export async function moveDurable(fromDir: string, name: string, toDir: string, newName: string): Promise<void> {
  await mkdirs(toDir, 0o700);
  await rename(join(fromDir, name), join(toDir, newName));
  await fsyncDir(toDir);
  await fsyncDir(fromDir);
}

/** Delete leftovers of writes interrupted by a crash. Returns how many were removed. */
export async function removeStaleTemps(dir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(dir)) {
    if (f.startsWith(TMP_MARK)) {
      await unlink(join(dir, f)).catch(() => undefined);
      n++;
    }
  }
  return n;
}
