/**
 * `metad appliance build`: build (or find) the appliance in the cache dir with appliance/build.sh
 * and point `<cacheDir>/current` at it, atomically (a new symlink renamed over the old one), so a
 * job that starts meanwhile reads either the old build or the new one, never half of one.
 */
import { rename, rm, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { buildAppliance } from '../../appliance/image.js';

/** Builds, switches `current`, and returns the build's directory. */
export async function buildCurrentAppliance(cacheDir: string): Promise<string> {
  const img = await buildAppliance(cacheDir);
  const tmp = join(cacheDir, `.current-${String(process.pid)}`);
  await rm(tmp, { force: true });
  await symlink(basename(img.dir), tmp);
  await rename(tmp, join(cacheDir, 'current'));
  return img.dir;
}
