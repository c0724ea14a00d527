/**
 * Which appliance variant an install run boots, and what the Debian variant needs from the host.
 *
 * - The OS definition chooses: a `metad_appliance` file in its directory (one word, `busybox` or
 *   `debian`; metad's own host-side setting, never served to the guest); without one,
 *   `appliance.variant` does. A file that says anything else fails the run (a typo must not
 *   quietly run bash scripts under busybox sh).
 * - The Debian variant boots the same kernel and initramfs plus its root disk
 *   (`appliance.debianRoot`, default `<cacheDir>/current-debian/root.qcow2`) through a per-run
 *   overlay, and `appliance.shares`: host directories handed read-only, each resolved when the run
 *   is prepared and required to be a directory then.
 */
import { realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { DaemonError } from '../errors.js';
import { writableByOthers } from '../registry/host-file.js';
import { osDefinitionDir, readDefinitionSetting } from '../registry/os-definition.js';

export type Variant = 'busybox' | 'debian';
type ApplianceConfig = Config['appliance'];

const VARIANTS: readonly string[] = ['busybox', 'debian'];

/** The file in an OS definition that names its variant. */
export const VARIANT_FILE = 'metad_appliance';

/** The variant an OS definition's `metad_appliance` text names ('debian\n' -> 'debian'), or a DaemonError. */
export function parseVariant(text: string, osName: string): Variant {
  const words = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const word = words[0];
  if (words.length !== 1 || word === undefined || !VARIANTS.includes(word))
    throw new DaemonError('Unavailable', `OS definition ${osName}: ${VARIANT_FILE} must name one appliance variant: busybox or debian`);
  return word as Variant;
}

/** The variant of a run of an instance whose OS is `osName`: its definition's choice, else the configured one. */
export async function variantOf(searchPath: readonly string[], osName: string | undefined, fallback: Variant): Promise<Variant> {
  const def = await osDefinitionDir(searchPath, osName);
  const text = def === undefined ? undefined : await readDefinitionSetting(def, VARIANT_FILE, 256);
  if (text === undefined) return fallback;
  if (typeof text !== 'string') throw new DaemonError('Unavailable', `OS definition ${osName ?? ''}: ${VARIANT_FILE} ${text.problem}`);
  return parseVariant(text, osName ?? '');
}

/** The Debian variant's read-only root disk. */
export function debianRootOf(a: Pick<ApplianceConfig, 'debianRoot' | 'cacheDir'>): string {
  return a.debianRoot ?? join(a.cacheDir, 'current-debian', 'root.qcow2');
}

/**
 * `appliance.shares`, each source resolved now and required to be a directory that only its owner
 * may write to (what the appliance reads there runs as root in it, next to the instance's
 * secrets: a directory any local user can fill is no place for it).
 */
export async function resolveShares(shares: ApplianceConfig['shares']): Promise<{ source: string; target: string }[]> {
  const out: { source: string; target: string }[] = [];
  for (const [n, s] of shares.entries()) {
    const real = await realpath(s.source).catch(() => undefined);
    const st = real === undefined ? undefined : await stat(real).catch(() => undefined);
    const key = `/appliance/shares/${String(n)}`;
    if (real === undefined || !st?.isDirectory())
      throw new DaemonError('Unavailable', `${key}: its source is not a directory (the Debian appliance cannot start)`);
    if (writableByOthers(st.mode))
      throw new DaemonError('Unavailable', `${key}: its source is writable by group or others (the Debian appliance cannot start)`);
    out.push({ source: real, target: s.target });
  }
  return out;
}
