/**
 * `metad appliance build`: build (or find) the appliance in the cache dir with appliance/build.sh
 * and point `<cacheDir>/current` at it, atomically (a new symlink renamed over the old one), so a
 * job that starts meanwhile reads either the old build or the new one, never half of one.
 * `--variant debian` also builds the Debian root disk (appliance/build-debian.sh) and points
 * `<cacheDir>/current-debian` at it the same way.
 */
import { rename, rm, symlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { buildAppliance, buildDebianRoot } from '../../appliance/image.js';

/** Points `<cacheDir>/<name>` at `target` (a relative symlink, renamed into place). */
async function pointAt(cacheDir: string, name: string, target: string): Promise<void> {
  const tmp = join(cacheDir, `.${name}-${String(process.pid)}`);
  await rm(tmp, { force: true });
  await symlink(relative(cacheDir, target), tmp);
  await rename(tmp, join(cacheDir, name));
}

/** Builds, switches `current` (and `current-debian`), and returns the build's directory. */
export async function buildCurrentAppliance(
  cacheDir: string,
  variant: 'busybox' | 'debian' = 'busybox',
  fromManifest?: string,
): Promise<string> {
  const img = await buildAppliance(cacheDir);
  await pointAt(cacheDir, 'current', img.dir);
  if (variant === 'busybox') return img.dir;
  const debian = await buildDebianRoot(cacheDir, fromManifest);
  await pointAt(cacheDir, 'current-debian', debian.dir);
  return debian.dir;
}
