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
