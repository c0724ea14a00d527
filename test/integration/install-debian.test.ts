/**
 * Real OS definitions, unmodified, in the install appliance (issue 16): the real daemon in a test
 * network namespace, the real appliance under libvirt + QEMU (TCG).
 *  - deb1: Debian's ganeti-instance-debootstrap 0.16 (unpacked from its .deb, read where the
 *    package puts it: no file of the definition changed or added) in the Debian variant
 *    (`appliance.variant: debian`: its root disk through a per-run overlay). Its configuration
 *    directory (a `bookworm` variant, a hook) and its cache directory (a cache tarball made on the
 *    host with mmdebstrap: minbase and ifupdown, whose /etc/network the create script writes to)
 *    are handed to the appliance
 *    read-only (`appliance.shares`). It partitions the blank disk (sfdisk), maps the partition
 *    (kpartx), makes ext4, unpacks Debian, writes fstab and the hostname and runs the hook: read
 *    back from partition 1 with debugfs afterwards.
 *  - noop1: Debian's ganeti-os-noop (`#!/bin/sh`, OS API 5 and 10) in the busybox variant: its
 *    definition's `metad_appliance` says so; the agent runs it with OS_API_VERSION=10.
 *  - ro1: a definition whose create tries to write into a share: refused (read-only), so it fails.
 *  - bash1: the debootstrap definition forced into the busybox variant: refused at once, naming
 *    the missing interpreter (/bin/bash) instead of failing with exit 127.
 * Afterwards nothing of the runs is left, and the base root disk is unchanged.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, realpath, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { skipOrFail } from '../support/env.js';
import { startInstallEnv, type InstallEnv } from '../support/install-env.js';
import { applianceCacheDir, testDebianRoot } from '../support/appliance.js';
import { debootstrapInstallMissing, debootstrapShares, GIDEB_OS, SUITE } from '../support/debootstrap.js';
import { METAD_CLI } from '../support/ns-metad.js';
import type { JobRecord } from '../../daemon/jobs/record.js';

const run = promisify(execFile);

const NOOP = '/usr/share/ganeti/os/noop';
const WRITE_SHARE = `#!/bin/sh
echo try >/var/cache/ganeti-instance-debootstrap/x && exit 0
echo "the share is read-only"
exit 7
`;

async function debugfs(image: string, cmd: string): Promise<string> {
  return (await run('debugfs', ['-R', cmd, image])).stdout;
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

test(
  'real OS definitions run unmodified: ganeti-instance-debootstrap installs Debian in the Debian appliance, ganeti-os-noop in the busybox one',
  { timeout: 2_400_000 },
  async (t) => {
    const why =
      (await debootstrapInstallMissing()) ??
      (existsSync(join(NOOP, 'create')) ? undefined : 'ganeti-os-noop is not installed (.ci/install-deps.sh)');
    if (skipOrFail(t, why)) return;
    const root = await testDebianRoot();
    const rootSha = await sha256(root);
    const shares = await debootstrapShares(join(applianceCacheDir(), 'debootstrap-cache'));
    const cache = shares[0]?.source ?? '';

    const env: InstallEnv = await startInstallEnv(
      {
        variant: 'debian',
        debianRoot: root,
        maxConcurrent: 3,
        installTimeoutMs: 1_200_000,
        shares,
      },
      { searchPath: [GIDEB_OS] },
    );
    t.after(() => env.close());

    // noop: a copy of Debian's definition with metad's host-side choice of the busybox variant.
    await cp(NOOP, join(env.dir, 'os', 'noop'), { recursive: true });
    await writeFile(join(env.dir, 'os', 'noop', 'metad_appliance'), 'busybox\n');
    await mkdir(join(env.dir, 'os', 'rotest'), { recursive: true });
    await writeFile(join(env.dir, 'os', 'rotest', 'create'), WRITE_SHARE, { mode: 0o755 });

    // The same debootstrap definition, bash scripts, forced into the busybox variant: refused plainly.
    await cp(join(GIDEB_OS, 'debootstrap'), join(env.dir, 'os', 'bashos'), { recursive: true, verbatimSymlinks: true });
    await writeFile(join(env.dir, 'os', 'bashos', 'metad_appliance'), 'busybox\n');
    const disks: Record<string, string> = {};
    const instances: [string, string, string, Record<string, unknown>, string][] = [
      ['deb1', '169.254.41.11', '52:54:00:41:00:11', { name: 'debootstrap', variant: SUITE }, '600M'],
      ['noop1', '169.254.41.12', '52:54:00:41:00:12', { name: 'noop' }, '8M'],
      ['ro1', '169.254.41.13', '52:54:00:41:00:13', { name: 'rotest' }, '8M'],
      ['bash1', '169.254.41.14', '52:54:00:41:00:14', { name: 'bashos', variant: SUITE }, '8M'],
    ];
    for (const [name, ip, mac, os, size] of instances) {
      const disk = join(env.dir, `${name}.img`);
      disks[name] = disk;
      await run('truncate', ['-s', size, disk]);
      const put = await env.metad.admin('PUT', `/v1/instances/${name}`, {
        name,
        uuid: `6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7d${mac.slice(-2)}`,
        hostname: `${name}.example.org`,
        comm: { mac, ipv4: ip },
        os,
        params: { public: { filesystem: 'ext4' } },
        hardware: { memoryMiB: 512, vcpus: 1, disks: [{ path: disk, format: 'raw' }] },
      });
      assert.equal(put.status, 201, put.text);
    }
    for (const [name] of instances) assert.equal((await env.ctl('install', name)).code, 0);
    const [deb, noop, ro, bash] = (await Promise.all(instances.map(([name]) => env.watchEnd(name)))) as [
      JobRecord,
      JobRecord,
      JobRecord,
      JobRecord,
    ];

    await t.test(
      'deb1: ganeti-instance-debootstrap partitioned the disk and installed Debian from its cache, with the node’s variant and hook',
      async () => {
        assert.equal(deb.outcome, 'succeeded', `${JSON.stringify(deb)}\n${await env.console(deb.domain)}`);
        // Its files but variants.list: the package makes that a symlink out of the definition (to
        // /etc/ganeti/instance-debootstrap/variants.list), which metad never follows.
        assert.ok(
          deb.lines.some((l) => /step=script status=ok files=8 api=20 variant=bookworm/.test(l)),
          deb.lines.join('\n'),
        );
        assert.ok(
          deb.lines.some((l) => /step=root status=ok shares=2/.test(l)),
          deb.lines.join('\n'),
        );
        assert.ok(
          deb.lines.some((l) => /step=verify status=ok/.test(l)),
          deb.lines.join('\n'),
        );
        // Partition 1 (msdos, 1 MiB aligned): Debian's files, as the definition wrote them.
        const table = JSON.parse((await run('sfdisk', ['-J', disks['deb1'] ?? ''])).stdout) as {
          partitiontable: { label: string; partitions: { start: number; size: number; bootable?: boolean }[] };
        };
        assert.equal(table.partitiontable.label, 'dos');
        const p1 = table.partitiontable.partitions[0];
        assert.ok(p1 && p1.start === 2048 && p1.bootable === true, JSON.stringify(table));
        const fs1 = join(env.dir, 'deb1-p1.img');
        await run('dd', [`if=${disks['deb1'] ?? ''}`, `of=${fs1}`, 'bs=1M', 'skip=1', 'status=none']);
        assert.equal(await debugfs(fs1, 'cat /etc/hostname'), 'deb1\n');
        assert.match(await debugfs(fs1, 'cat /etc/debian_version'), /^12\./);
        assert.match(await debugfs(fs1, 'cat /etc/fstab'), /^UUID=[0-9a-f-]{36}\s+\/\s+ext4\s+defaults/m);
        assert.equal(await debugfs(fs1, 'cat /etc/metad-hook'), `hooked ${SUITE} msdos\n`);
        assert.match(await debugfs(fs1, 'cat /etc/shadow'), /^root::/m, 'passwd -d root ran in the target');
      },
    );

    await t.test('noop1: Debian’s ganeti-os-noop ran in the busybox appliance with OS API 10', () => {
      assert.equal(noop.outcome, 'succeeded', JSON.stringify(noop));
      assert.ok(
        noop.lines.some((l) => /step=script status=ok files=5 api=10 variant=$/.test(l)),
        noop.lines.join('\n'),
      );
      assert.equal(
        noop.lines.some((l) => /step=root/.test(l)),
        false,
      );
    });

    await t.test('ro1: a share cannot be written from the appliance', () => {
      assert.equal(ro.outcome, 'failed', JSON.stringify(ro));
      assert.ok(
        ro.lines.some((l) => /step=create status=failed exit=7/.test(l)),
        ro.lines.join('\n'),
      );
      assert.equal(existsSync(join(cache, 'x')), false);
    });

    await t.test('bash1: bash scripts in the busybox variant are refused with the interpreter named, before anything runs', () => {
      assert.equal(bash.outcome, 'failed', JSON.stringify(bash));
      assert.ok(
        bash.lines.some((l) => /step=final status=failed reason=interpreter script=verify interpreter=\/bin\/bash/.test(l)),
        bash.lines.join('\n'),
      );
    });

    await t.test('`metad appliance build --variant debian` finds that build and makes it current-debian', async () => {
      await writeFile(join(env.dir, 'tool.json'), JSON.stringify({ appliance: { cacheDir: applianceCacheDir() } }));
      const r = await run(process.execPath, [METAD_CLI, 'appliance', 'build', '--variant', 'debian', '-c', join(env.dir, 'tool.json')]);
      assert.equal(r.stdout.trim(), dirname(root));
      assert.equal(await realpath(join(applianceCacheDir(), 'current-debian', 'root.qcow2')), root);
      const manifest = JSON.parse(await readFile(join(dirname(root), 'manifest.json'), 'utf8')) as {
        variant: string;
        packages: Record<string, string>;
      };
      assert.equal(manifest.variant, 'debian');
      for (const p of ['bash', 'util-linux', 'e2fsprogs', 'fdisk', 'kpartx', 'qemu-utils', 'debootstrap', 'ganeti-instance-debootstrap'])
        assert.match(manifest.packages[p] ?? '', /^\S+$/, p);
      const bad = await run(process.execPath, [
        METAD_CLI,
        'appliance',
        'build',
        '--variant',
        'alpine',
        '-c',
        join(env.dir, 'tool.json'),
      ]).then(
        () => ({ code: 0, stderr: '' }),
        (e: unknown) => e as { code: number; stderr: string },
      );
      assert.ok(bad.code !== 0 && /busybox, debian/.test(bad.stderr), JSON.stringify(bad));
    });

    await t.test('`--manifest`: a rebuild from the build’s manifest has every package at the version it lists', async () => {
      const cache = await mkdtemp(join(env.dir, 'rebuild-'));
      // The busybox part reuses the shared cache's .debs (no second kernel download).
      await cp(join(applianceCacheDir(), 'debs'), join(cache, 'debs'), { recursive: true });
      await writeFile(join(env.dir, 'rebuild.json'), JSON.stringify({ appliance: { cacheDir: cache } }));
      const manifestFile = join(dirname(root), 'manifest.json');
      const r = await run(
        process.execPath,
        [METAD_CLI, 'appliance', 'build', '--variant', 'debian', '--manifest', manifestFile, '-c', join(env.dir, 'rebuild.json')],
        {
          maxBuffer: 16 << 20,
        },
      );
      const rebuilt = JSON.parse(await readFile(join(r.stdout.trim(), 'manifest.json'), 'utf8')) as {
        pinned: boolean;
        packages: Record<string, string>;
      };
      const original = JSON.parse(await readFile(manifestFile, 'utf8')) as { packages: Record<string, string> };
      assert.equal(rebuilt.pinned, true);
      assert.deepEqual(rebuilt.packages, original.packages);
      const wrong = await run(process.execPath, [
        METAD_CLI,
        'appliance',
        'build',
        '--manifest',
        manifestFile,
        '-c',
        join(env.dir, 'rebuild.json'),
      ]).then(
        () => ({ code: 0, stderr: '' }),
        (e: unknown) => e as { code: number; stderr: string },
      );
      assert.equal(wrong.code, 2);
      assert.match(wrong.stderr, /--manifest goes with --variant debian/);
    });

    await t.test('nothing is left; the Debian root disk is unchanged', async () => {
      assert.deepEqual(await env.leftovers(), []);
      assert.equal(await sha256(root), rootSha);
    });
  },
);
