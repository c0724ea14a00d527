/**
 * The real appliance for tests: built once per cache directory (default: a fixed directory under
 * the system temp dir, so repeated runs reuse it; METAD_APPLIANCE_CACHE overrides) and shared by
 * every test of a process.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { buildAppliance, buildDebianRoot, type ApplianceImage } from '../../appliance/image.js';
import { hasCommand } from './env.js';

let built: Promise<ApplianceImage> | undefined;
let debianBuilt: Promise<string> | undefined;
const run = promisify(execFile);

/** The shared build cache (a `metad appliance build` there reuses the tests' build). */
export function applianceCacheDir(): string {
  return process.env['METAD_APPLIANCE_CACHE'] ?? join(tmpdir(), 'metad-appliance-cache');
}

/** Why the appliance cannot be built here (undefined when it can). */
export function applianceMissing(): string | undefined {
  for (const c of ['apt-get', 'dpkg-deb', 'cpio', 'xz']) {
    if (!hasCommand(c)) return `${c} not installed; run .ci/install-deps.sh`;
  }
  return undefined;
}

export function testAppliance(): Promise<ApplianceImage> {
  built ??= buildAppliance(applianceCacheDir());
  return built;
}

/** Why the Debian variant cannot be built here (undefined when it can). */
export function debianMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'the Debian appliance is built as root';
  for (const c of ['mmdebstrap', 'mke2fs', 'qemu-img']) {
    if (!hasCommand(c)) return `${c} not installed; run .ci/install-deps.sh`;
  }
  return undefined;
}

/** The Debian variant's root disk (appliance/build-debian.sh into the shared cache; minutes the first time). */
export function testDebianRoot(): Promise<string> {
  debianBuilt ??= buildDebianRoot(applianceCacheDir()).then((b) => join(b.dir, 'root.qcow2'));
  return debianBuilt;
}

/**
 * A ganeti-instance-debootstrap cache directory holding `cache-<suite>-amd64.tar`: a minbase
 * Debian of the host's suite (plus `include`), made on the host with mmdebstrap from the host's
 * apt sources, as the package's own `GENERATE_CACHE` would have made it. Built once per name
 * under the shared cache (a minute or so), reused afterwards.
 */
export async function debootstrapCache(name: string, suite: string, include: readonly string[] = []): Promise<string> {
  const dir = join(applianceCacheDir(), 'debootstrap-cache', name);
  const tar = join(dir, `cache-${suite}-amd64.tar`);
  if (existsSync(tar)) return dir;
  await mkdir(dir, { recursive: true });
  // Two test processes may build the same cache at once: each writes its own file, the rename wins.
  const tmp = `${tar}.${String(process.pid)}.tmp`;
  await rm(tmp, { force: true });
  const sources = ['/etc/apt/sources.list', '/etc/apt/sources.list.d/debian.sources'].filter((f) => existsSync(f));
  await run(
    'mmdebstrap',
    [
      '--quiet',
      '--mode=root',
      '--variant=minbase',
      '--format=tar',
      ...(include.length > 0 ? [`--include=${include.join(',')}`] : []),
      suite,
      tmp,
      ...sources,
    ],
    { maxBuffer: 16 << 20, timeout: 1_200_000 },
  );
  await rename(tmp, tar);
  return dir;
}

/**
 * What the test OS's `create` records (`env | grep … | sort`): Ganeti's OS environment of an
 * instance `NAME` (hostname NAME.example.org, OS testos-NAME/default, 256 MiB, 1 vCPU, one disk) with
 * the given OS parameters, sorted as busybox `sort` does (bytewise).
 */
export function ganetiEnv(name: string, osp: Record<string, string>): string[] {
  return [
    'DISK_0_ACCESS=rw',
    'DISK_0_PATH=/dev/vda',
    'DISK_COUNT=1',
    'INSTANCE_BE_maxmem=256',
    'INSTANCE_BE_vcpus=1',
    `INSTANCE_HOSTNAME=${name}.example.org`,
    `INSTANCE_NAME=${name}`,
    `INSTANCE_OS=testos-${name}`,
    'NIC_COUNT=0',
    'OS_API_VERSION=20',
    `OS_NAME=testos-${name}`,
    'OS_VARIANT=default',
    ...Object.entries(osp).map(([k, v]) => `OSP_${k.toUpperCase().replace(/[.-]/g, '_')}=${v}`),
  ].sort();
}
