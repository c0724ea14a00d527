/**
 * What `metad check-config` says about install appliances on a host that installs (the comm
 * network on, routed or bridged, and `appliance.enabled`): the image, QEMU, the firmware and the
 * overlay tools exist. A host that never installs gets no word about them.
 * Warnings, not errors: without them the daemon still serves metadata; installs then fail with
 * the same reason. Reads the filesystem only; changes nothing.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import { imageDirOf } from './prepare.js';
import { debianRootOf } from './variant.js';

function can(path: string, mode: number): boolean {
  try {
    accessSync(path, mode);
    return true;
  } catch {
    return false;
  }
}

/** A finished appliance build is in `dir`: its kernel, initramfs and manifest can be read. */
function imageReadable(dir: string, fs: PreflightFs): boolean {
  return ['vmlinux', 'initrd.cpio', 'manifest.json'].every((f) => fs.readable(join(dir, f)));
}

export interface PreflightFs {
  readable: (p: string) => boolean;
  executable: (p: string) => boolean;
}

const realFs: PreflightFs = { readable: (p) => can(p, constants.R_OK), executable: (p) => can(p, constants.X_OK) };

/** Why this host runs no install jobs by configuration (undefined: it is configured to run them). */
export function installsOff(cfg: Readonly<Config>): string | undefined {
  if (!cfg.appliance.enabled) return 'installs are off on this host (/appliance/enabled is false)';
  if (cfg.network.mode === 'off') return 'network.mode is off: installs need the comm network (routed or bridged)';
  return undefined;
}

export function appliancePreflight(cfg: Readonly<Config>, fs: PreflightFs = realFs): string[] {
  if (installsOff(cfg) !== undefined) return [];
  const a = cfg.appliance;
  const out: string[] = [];
  const dir = imageDirOf(a);
  if (!imageReadable(dir, fs)) {
    out.push(
      `/appliance/imageDir: no readable appliance image at ${dir}: run \`metad appliance build\` (or set /appliance/imageDir; on a host that never installs, set /appliance/enabled to false)`,
    );
  }
  if (!fs.executable(a.emulator))
    out.push(`/appliance/emulator: ${a.emulator} is not executable: install the Debian package qemu-system-x86`);
  if (!fs.readable(a.firmware)) out.push(`/appliance/firmware: ${a.firmware} is not readable: install the Debian package qemu-system-data`);
  if (a.baseDisk !== undefined && !fs.readable(a.baseDisk)) out.push(`/appliance/baseDisk: ${a.baseDisk} is not readable`);
  // The Debian variant: checked when it is the default (a definition may still ask for it by its
  // metad_appliance file; such a run then fails with the same words).
  if (a.variant === 'debian' && !fs.readable(debianRootOf(a)))
    out.push(
      `/appliance/debianRoot: no readable Debian appliance root at ${debianRootOf(a)}: run \`metad appliance build --variant debian\` (or set /appliance/debianRoot)`,
    );
  if ((a.baseDisk !== undefined || a.variant === 'debian') && !fs.executable(a.qemuImgPath))
    out.push(`/appliance/qemuImgPath: ${a.qemuImgPath} is not executable: install the Debian package qemu-utils`);
  for (const [n, share] of a.shares.entries())
    if (!fs.readable(share.source)) out.push(`/appliance/shares/${String(n)}: ${share.source} is not a readable directory`);
  return out;
}

/** Whether install jobs can run on this host now, and if not, why (in words an operator acts on). */
export interface InstallAvailability {
  available: boolean;
  reason?: string;
}

/**
 * The plain answer `GET /v1/health`, `serve`'s start-up and `check-config` give about installs:
 * they are enabled, the comm network is on, the libvirt binding loads (`binding`: rejects with the packages to
 * install), and an appliance image is there. The first missing thing is the reason.
 */
export async function installAvailability(
  cfg: Readonly<Config>,
  binding: () => Promise<unknown>,
  fs: PreflightFs = realFs,
): Promise<InstallAvailability> {
  const off = installsOff(cfg);
  if (off !== undefined) return { available: false, reason: off };
  const missing = await binding().then(
    () => undefined,
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );
  if (missing !== undefined) return { available: false, reason: missing };
  const dir = imageDirOf(cfg.appliance);
  if (!imageReadable(dir, fs))
    return { available: false, reason: 'no appliance image: run `metad appliance build` (or set /appliance/imageDir)' };
  return { available: true };
}
