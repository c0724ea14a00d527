/**
 * The install appliance image: `appliance/build.sh` makes it (Debian kernel as a PVH vmlinux,
 * an initramfs with busybox-static, the modules and the agent) into a cache directory; this
 * module runs it and describes the result. The build is idempotent: an existing build for the
 * same kernel, busybox and agent is reused as it is.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What `build.sh` writes into manifest.json. */
interface ApplianceManifest {
  stamp: string;
  kernelPackage: string;
  kernelVersion: string;
  kernelAbi: string;
  busyboxVersion: string;
  agentHash: string;
  modules: string[];
  vmlinuxBytes: number;
  vmlinuzBytes: number;
  initrdBytes: number;
  downloadMs: number;
  buildMs: number;
}

export interface ApplianceImage {
  dir: string;
  /** Uncompressed kernel with the PVH entry note (boots with qboot). */
  kernel: string;
  /** The same kernel as a bzImage (what a BIOS bootloader loads: the Ganeti install image). */
  vmlinuz: string;
  /** Uncompressed cpio (newc) initramfs; /init is the agent. */
  initrd: string;
  /** The busybox binary inside the initramfs (for host-side tests of the agent's scripts). */
  busybox: string;
  manifest: ApplianceManifest;
}

/**
 * The source tree's appliance directory (build.sh, agent/). Compiled code runs from
 * dist/appliance/, the sources live in appliance/ at the repository root.
 */
export function applianceSourceDir(): string {
  return fileURLToPath(new URL('../../appliance/', import.meta.url));
}

/** Describes a finished build directory (throws when it is incomplete). */
export async function readAppliance(dir: string): Promise<ApplianceImage> {
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as ApplianceManifest;
  return {
    dir,
    kernel: join(dir, 'vmlinux'),
    vmlinuz: join(dir, 'vmlinuz'),
    initrd: join(dir, 'initrd.cpio'),
    busybox: join(dir, 'busybox'),
    manifest,
  };
}

/**
 * Runs appliance/<script> with bash: its stdout, or a rejection saying `<what> failed:` with the
 * last `lines` lines of its stderr (the scripts say there what went wrong).
 */
function runScript(script: string, args: string[], timeoutMs: number, what: string, lines: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [join(applianceSourceDir(), script), ...args], { timeout: timeoutMs, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${what} failed: ${stderr.trim().split('\n').slice(-lines).join(' | ')}`));
      else resolve(stdout);
    });
  });
}

/** Builds (or finds) the appliance under `cacheDir`. Rejects with build.sh's stderr on failure. */
export async function buildAppliance(cacheDir: string, timeoutMs = 600_000): Promise<ApplianceImage> {
  const stdout = await runScript('build.sh', [cacheDir], timeoutMs, 'appliance build', 5);
  return readAppliance(stdout.trim().split('\n').pop() ?? '');
}

/** What `build-debian.sh` writes into manifest.json (the Debian variant's root disk). */
export interface DebianManifest {
  variant: 'debian';
  stamp: string;
  suite: string;
  /** Every package in the image, with its version. */
  packages: Record<string, string>;
  packageCount: number;
  /** Built from a manifest, every package pinned. */
  pinned: boolean;
  rootMiB: number;
  qcow2Bytes: number;
  debootstrapMs: number;
  buildMs: number;
}

/**
 * Builds (or finds) the Debian variant's root disk under `<cacheDir>/debian/` with
 * appliance/build-debian.sh (mmdebstrap from the host's apt sources; minutes the first time), or,
 * with `fromManifest` (an earlier build's manifest.json), the same suite with every package at the
 * version it lists. Resolves to the build's directory (`root.qcow2`, `manifest.json`).
 */
export async function buildDebianRoot(
  cacheDir: string,
  fromManifest?: string,
  timeoutMs = 1_200_000,
): Promise<{ dir: string; manifest: DebianManifest }> {
  const stdout = await runScript(
    'build-debian.sh',
    [cacheDir, ...(fromManifest ? [fromManifest] : [])],
    timeoutMs,
    'Debian appliance build',
    5,
  );
  const dir = stdout.trim().split('\n').pop() ?? '';
  return { dir, manifest: JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as DebianManifest };
}

/**
 * Writes the build in `buildDir` as a bootable raw disk image to `out` (install-image.sh: MBR,
 * FAT16, syslinux, the bzImage and the initramfs, `metad.nic=<nic>` on the command line):
 * Ganeti's `install_image`. Resolves to `out`; rejects with the script's message.
 */
export async function buildInstallImage(buildDir: string, out: string, nic = 'last', timeoutMs = 120_000): Promise<string> {
  await runScript('install-image.sh', [buildDir, out, nic], timeoutMs, 'install image', 3);
  return out;
}
