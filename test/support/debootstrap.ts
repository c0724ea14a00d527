/**
 * Debian's ganeti-instance-debootstrap as the install tests and benchmarks run it in the Debian
 * appliance: its OS definition unpacked by .ci/install-deps.sh (read where the package puts it,
 * unmodified), and the node-side directories metad shares with the appliance read-only: its cache
 * (a tarball made on the host with mmdebstrap) and its configuration (a variant for the suite,
 * optional hooks).
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { debianMissing, debootstrapCache } from './appliance.js';
import { missingCommand } from './env.js';
import { installEnvMissing } from './install-env.js';

/** Where .ci/install-deps.sh unpacks the package. */
const GIDEB = process.env['METAD_GIDEB_DIR'] ?? '/var/cache/metad-test/ganeti-instance-debootstrap';
/** The OS search path entry holding its `debootstrap` definition. */
export const GIDEB_OS = join(GIDEB, 'usr/share/ganeti/os');
/** The Debian suite installed (the host's: its apt sources make the cache). */
export const SUITE = 'bookworm';

/**
 * Why a debootstrap install cannot run here (undefined when it can): the install environment, the
 * Debian variant's build, the unpacked definition, and what the tests read the disk back with.
 */
export async function debootstrapInstallMissing(): Promise<string | undefined> {
  return (
    (await installEnvMissing()) ??
    debianMissing() ??
    giDebMissing() ??
    missingCommand([
      ['debugfs', 'e2fsprogs'],
      ['sfdisk', 'fdisk'],
    ])
  );
}

/** Why the definition is not here (undefined when it is). */
export function giDebMissing(): string | undefined {
  return existsSync(join(GIDEB_OS, 'debootstrap', 'create'))
    ? undefined
    : `ganeti-instance-debootstrap is not unpacked in ${GIDEB} (.ci/install-deps.sh)`;
}

/**
 * A customize hook (run-parts, from the node's configuration directory), as a node admin writes
 * one: proves it ran, in the target, and lets ifupdown read /etc/network/interfaces.d.
 */
const HOOK = `#!/bin/sh
echo "hooked $SUITE $PARTITION_STYLE" >"$TARGET/etc/metad-hook"
# ifupdown reads what cloud-init writes for the instance's network (its ENI renderer): the create
# script's /etc/network/interfaces has only lo.
printf 'source /etc/network/interfaces.d/*\\n' >>"$TARGET/etc/network/interfaces"
`;

/**
 * The appliance.shares of a debootstrap install: the cache directory (`cache-<suite>-amd64.tar`:
 * minbase, ifupdown, whose /etc/network the create script writes to, plus `include`) and a
 * configuration directory under `dir` with the `<suite>` variant (from the cache only, never the
 * network) and a hook writing /etc/metad-hook.
 */
export async function debootstrapShares(dir: string, include: readonly string[] = []): Promise<{ source: string; target: string }[]> {
  const cache = await debootstrapCache(['minbase-ifupdown', ...include].join('+'), SUITE, ['ifupdown', ...include]);
  const conf = join(dir, 'instance-debootstrap');
  await mkdir(join(conf, 'variants'), { recursive: true });
  await mkdir(join(conf, 'hooks'), { recursive: true });
  await writeFile(join(conf, 'variants', `${SUITE}.conf`), `SUITE=${SUITE}\nCLEAN_CACHE=""\nGENERATE_CACHE=no\n`);
  await writeFile(join(conf, 'hooks', 'metad-test'), HOOK, { mode: 0o755 });
  // Shares must be writable by their owner only (whatever the umask).
  for (const d of [cache, conf]) await chmod(d, 0o755);
  return [
    { source: cache, target: '/var/cache/ganeti-instance-debootstrap' },
    { source: conf, target: '/etc/ganeti/instance-debootstrap' },
  ];
}
