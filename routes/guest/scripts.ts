/**
 * OS scripts for the guest: `os/scripts/` lists them and `os/scripts/<name>` serves one (a script or
 * a file the scripts read, such as `common.sh`: the appliance fetches the whole definition), from the
 * instance's OS definition directory, the `untrusted/` variant where present (Ganeti design:
 * untrusted code runs in the appliance). The definition is found by the instance's OS name in
 * the configured OS search path (Ganeti's `os_search_path`: daemon/registry/os-definition.ts),
 * never by a path the instance names. Names are restricted; the resolved real path must stay inside the definition
 * directory, so neither `..` nor a symlink can escape it; only regular files up to 1 MiB are
 * served, opened non-blocking and checked on the open descriptor (a FIFO never blocks a file
 * thread: daemon/registry/host-file.ts), and the listing shows exactly the names that would be served.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openRegular, realDir, realInside, regularFileProblem } from '../../daemon/registry/host-file.js';

/**
 * A file of the definition: its scripts and the files they read from their directory
 * (`common.sh`, `variants.list`, `ganeti_api_version`, `parameters.list`). `metad_*` files are
 * metad's own host-side settings of the definition (`metad_trusted_secrets`, `metad_appliance`):
 * never served.
 */
const SCRIPT_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const HOST_ONLY = /^metad_/;
const servable = (name: string): boolean => SCRIPT_NAME.test(name) && !HOST_ONLY.test(name);
export const MAX_SCRIPT_BYTES = 1024 * 1024;

/** The real path `name` would be served from (untrusted/ first), or undefined. */
async function resolveScript(base: string, name: string): Promise<string | undefined> {
  if (!servable(name)) return undefined;
  return (await realInside(base, join(base, 'untrusted', name))) ?? (await realInside(base, join(base, name)));
}

/** The script's bytes, or undefined when it does not exist or is not allowed. */
export async function readOsScript(definitionDir: string, name: string): Promise<Buffer | undefined> {
  const base = await realDir(definitionDir);
  const path = base === undefined ? undefined : await resolveScript(base, name);
  if (!path) return undefined;
  const opened = await openRegular(path, MAX_SCRIPT_BYTES);
  if ('problem' in opened) return undefined;
  try {
    return await opened.fh.readFile();
  } finally {
    await opened.fh.close();
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
 * with `create`, `export`, `untrusted/create`, `variants.list`, `metad_trusted_secrets` and a
 * symlink to /etc/passwd: ["create", "export", "variants.list"]. A missing or unreadable
 * directory lists nothing.
 */
export async function listOsScripts(definitionDir: string): Promise<string[]> {
  const base = await realDir(definitionDir);
  if (base === undefined) return [];
  const candidates = new Set([...(await namesIn(join(base, 'untrusted'))), ...(await namesIn(base))]);
  const out: string[] = [];
  for (const name of [...candidates].filter(servable).sort()) {
    const path = await resolveScript(base, name);
    const st = path === undefined ? undefined : await stat(path).catch(() => undefined);
    if (st && regularFileProblem(st, MAX_SCRIPT_BYTES) === undefined) out.push(name);
  }
  return out;
}
