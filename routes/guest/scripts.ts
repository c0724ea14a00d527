/**
 * OS scripts for the guest: `os/scripts/<name>` from the instance's OS definition directory,
 * the `untrusted/` variant where present (Ganeti design: untrusted code runs in the appliance).
 * Names are restricted; the resolved real path must stay inside the definition directory, so
 * neither `..` nor a symlink can escape it; only regular files up to 1 MiB are served.
 */
import { open, realpath } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, sep } from 'node:path';

export const SCRIPT_NAME = /^[a-z][a-z0-9_-]{0,63}$/;
export const MAX_SCRIPT_BYTES = 1024 * 1024;

async function inside(base: string, candidate: string): Promise<string | undefined> {
  try {
    const real = await realpath(candidate);
    return real.startsWith(base + sep) ? real : undefined;
  } catch {
    return undefined;
  }
}

/** The script's bytes, or undefined when it does not exist or is not allowed. */
export async function readOsScript(definitionDir: string, name: string): Promise<Buffer | undefined> {
  if (!SCRIPT_NAME.test(name)) return undefined;
  let base: string;
  try {
    base = await realpath(definitionDir);
  } catch {
    return undefined;
  }
  const path = (await inside(base, join(base, 'untrusted', name))) ?? (await inside(base, join(base, name)));
  if (!path) return undefined;
  // O_NOFOLLOW: the resolved path must not have become a symlink since realpath (TOCTOU).
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_SCRIPT_BYTES) return undefined;
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}
