/**
 * OS scripts for the guest: `os/scripts/` lists them and `os/scripts/<name>` serves one, from the
 * instance's OS definition directory, the `untrusted/` variant where present (Ganeti design:
 * untrusted code runs in the appliance). The definition is found by the instance's OS name in
 * the configured OS search path (Ganeti's `os_search_path`: daemon/registry/os-definition.ts),
 * never by a path the instance names. Names are restricted; the resolved real path must stay inside the definition
 * directory, so neither `..` nor a symlink can escape it; only regular files up to 1 MiB are
 * served, opened non-blocking and checked on the open descriptor (a FIFO never blocks a file
 * thread), and the listing shows exactly the names that would be served.
 */
import { open, readdir, realpath, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join, sep } from 'node:path';

const SCRIPT_NAME = /^[a-z][a-z0-9_-]{0,63}$/;
export const MAX_SCRIPT_BYTES = 1024 * 1024;

async function inside(base: string, candidate: string): Promise<string | undefined> {
  try {
    const real = await realpath(candidate);
    return real.startsWith(base + sep) ? real : undefined;
  } catch {
    return undefined;
  }
}

async function realBase(definitionDir: string): Promise<string | undefined> {
  try {
    return await realpath(definitionDir);
  } catch {
    return undefined;
  }
}

/** The real path `name` would be served from (untrusted/ first), or undefined. */
async function resolveScript(base: string, name: string): Promise<string | undefined> {
  if (!SCRIPT_NAME.test(name)) return undefined;
  return (await inside(base, join(base, 'untrusted', name))) ?? (await inside(base, join(base, name)));
}

/** The script's bytes, or undefined when it does not exist or is not allowed. */
export async function readOsScript(definitionDir: string, name: string): Promise<Buffer | undefined> {
  const base = await realBase(definitionDir);
  const path = base === undefined ? undefined : await resolveScript(base, name);
  if (!path) return undefined;
  // O_NOFOLLOW: the resolved path must not have become a symlink since realpath (TOCTOU).
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer, holding one of node's few
  // file threads per request (six guest GETs stalled every file operation of the daemon).
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!fh) return undefined;
  try {
    const st = await fh.stat();
    if (!st.isFile() || st.size > MAX_SCRIPT_BYTES) return undefined;
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

async function namesIn(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/**
 * The names `os/scripts/` lists: those `readOsScript` would serve, sorted. For a definition
 * with `create`, `export`, `untrusted/create`, `variants.list` and a symlink to /etc/passwd:
 * ["create", "export"]. A missing or unreadable directory lists nothing.
 */
export async function listOsScripts(definitionDir: string): Promise<string[]> {
  const base = await realBase(definitionDir);
  if (base === undefined) return [];
  const candidates = new Set([...(await namesIn(join(base, 'untrusted'))), ...(await namesIn(base))]);
  const out: string[] = [];
  for (const name of [...candidates].filter((n) => SCRIPT_NAME.test(n)).sort()) {
    const path = await resolveScript(base, name);
    const st = path === undefined ? undefined : await stat(path).catch(() => undefined);
    if (st?.isFile() && st.size <= MAX_SCRIPT_BYTES) out.push(name);
  }
  return out;
}
