/**
 * The real appliance for tests: built once per cache directory (default: a fixed directory under
 * the system temp dir, so repeated runs reuse it; METAD_APPLIANCE_CACHE overrides) and shared by
 * every test of a process.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildAppliance, type ApplianceImage } from '../../appliance/image.js';
import { hasCommand } from './env.js';

let built: Promise<ApplianceImage> | undefined;

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
    'OS_VARIANT=default',
    ...Object.entries(osp).map(([k, v]) => `OSP_${k.toUpperCase().replace(/[.-]/g, '_')}=${v}`),
  ].sort();
}
