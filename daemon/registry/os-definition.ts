/**
 * Where an instance's OS definition lives: found by its OS name in the configured OS search path
 * (Ganeti's `os_search_path`), never by a path an instance names. Read by the guest door
 * (`os/scripts/`) and the Ganeti feed (which logs where a fed instance's scripts come from).
 */
import { realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { openRegular, realInside } from './host-file.js';

const OS_DIR_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * The OS definition directory of OS `osName` (`name` or `name+variant`): `<dir>/<name>` in the
 * first directory of `searchPath` where it is a directory, or undefined.
 * ('debootstrap+default', ['/srv/ganeti/os', '/usr/share/ganeti/os']) -> '/usr/share/ganeti/os/debootstrap'
 * when only the second holds it.
 */
export async function osDefinitionDir(searchPath: readonly string[], osName: string | undefined): Promise<string | undefined> {
  const name = osName?.split('+')[0];
  if (name === undefined || !OS_DIR_NAME.test(name)) return undefined;
  for (const dir of searchPath) {
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (st?.isDirectory()) return join(dir, name);
  }
  return undefined;
}

/**
 * One of metad's own host-side settings in an OS definition directory `def` (a `metad_*` file such
 * as `metad_appliance` or `metad_trusted_secrets`; never served to the guest): its text, or
 * undefined when the definition has none or it is a symlink out of the definition. Opened without
 * blocking: a FIFO, a device or a file over `maxBytes` is a `{problem}`.
 */
export async function readDefinitionSetting(
  def: string,
  name: string,
  maxBytes: number,
): Promise<string | undefined | { problem: string }> {
  const base = await realpath(def).catch(() => undefined);
  const path = base === undefined ? undefined : await realInside(base, join(def, name));
  if (path === undefined) return undefined;
  const opened = await openRegular(path, maxBytes);
  if ('problem' in opened) return opened;
  try {
    return await opened.fh.readFile('utf8');
  } finally {
    await opened.fh.close();
  }
}
