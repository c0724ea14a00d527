/**
 * `mkdir -p` that always ends: node's `mkdir(path, { recursive: true })` loops forever (at full
 * CPU, without an error) where mkdir(2) answers ENOENT for a path whose parent exists, as under
 * /proc. This walks the path from the root once, one mkdir per missing component, and fails with
 * the component and the error code. Modes apply to the directories it creates (umask permitting).
 */
import { mkdir, stat } from 'node:fs/promises';
import { resolve, sep } from 'node:path';

export class MkdirError extends Error {
  override name = 'MkdirError';
  constructor(
    readonly path: string,
    readonly code: string,
  ) {
    super(`cannot create directory ${path} (${code})`);
  }
}

/** Create `path` and any missing parents (mode `mode`); an existing directory is fine. */
export async function mkdirs(path: string, mode: number): Promise<void> {
  const parts = resolve(path)
    .split(sep)
    .filter((p) => p !== '');
  let at = '';
  for (const part of parts) {
    at = `${at}${sep}${part}`;
    try {
      await mkdir(at, { mode });
      continue;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      if (code !== 'EEXIST') throw new MkdirError(at, code);
    }
    const st = await stat(at).catch((err: unknown) => {
      throw new MkdirError(at, (err as NodeJS.ErrnoException).code ?? 'EIO');
    });
    if (!st.isDirectory()) throw new MkdirError(at, 'ENOTDIR');
  }
}
