/**
 * The Debian appliance variant (issue 16) through the real daemon (test/support/install-env.ts:
 * a test namespace, a private libvirtd, QEMU under TCG here). Records:
 *   Debian appliance build      appliance/build-debian.sh into a fresh cache dir (mmdebstrap from
 *                               the host's apt sources: the download is part of it); `--quick`
 *                               reports the shared test build's manifest instead of building
 *   request -> first metadata   requestedAt -> firstReportAt of the same toy `create`, in the busybox
 *                               variant and in the Debian one, interleaved; the Debian one as a
 *                               ratio to busybox (the same kernel and initramfs boot: what differs
 *                               is the root disk's overlay and its attachment)
 *   Debian install              Debian's ganeti-instance-debootstrap, unmodified, installing Debian
 *                               from its cache tarball onto a blank 600 MiB disk: request -> outcome
 * Needs root, libvirtd, QEMU, the binding, dnsmasq, mmdebstrap and the unpacked package; elsewhere
 * the suite says why and records nothing.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { buildDebianRoot, type DebianManifest } from '../../appliance/image.js';
import type { JobRecord } from '../../daemon/jobs/record.js';
import { applianceCacheDir, debianMissing, testDebianRoot } from '../../test/support/appliance.js';
import { debootstrapShares, giDebMissing, GIDEB_OS, SUITE } from '../../test/support/debootstrap.js';
import { createAfter, installEnvMissing, startInstallEnv, type InstallEnv } from '../../test/support/install-env.js';
import { makeTempDir, removeTempDir } from '../support/cleanup.js';
import { median, msOf, spread } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';

const run = promisify(execFile);

async function buildRecord(ctx: SuiteContext): Promise<void> {
  let m: DebianManifest;
  let wallMs: number;
  let note: string;
  if (ctx.quick) {
    const root = await testDebianRoot();
    m = (await buildDebianRoot(applianceCacheDir())).manifest;
    wallMs = m.buildMs;
    note = `the shared build's manifest (${root})`;
  } else {
    const dir = makeTempDir('metad-bench-debian-');
    ctx.defer(() => removeTempDir(dir));
    const t0 = performance.now();
    m = (await buildDebianRoot(dir)).manifest;
    wallMs = performance.now() - t0;
    note = 'a fresh build, packages downloaded';
  }
  ctx.record({
    name: 'Debian appliance build',
    value: wallMs / 1000,
    unit: 's',
    stats: {
      'mmdebstrap s': m.debootstrapMs / 1000,
      'root.qcow2 MiB': m.qcow2Bytes / (1 << 20),
      'filesystem MiB': m.rootMiB,
      packages: m.packageCount,
    },
    note,
  });
}

async function one(e: InstallEnv, name: string): Promise<JobRecord> {
  const r = await e.ctl('install', name, '--timeout', '900');
  if (r.code !== 0) throw new Error(`install ${name}: ${r.err}`);
  const rec = await e.watchEnd(name);
  if (rec.outcome !== 'succeeded') throw new Error(`install ${name}: ${JSON.stringify(rec)}\n${await e.console(rec.domain)}`);
  return rec;
}

const suite: Suite = {
  description: 'the Debian appliance variant: its build, request -> first metadata request against busybox, a real Debian install (TCG)',
  async run(ctx) {
    const why = (await installEnvMissing()) ?? debianMissing() ?? giDebMissing();
    if (why) {
      ctx.log(`install-debian skipped: ${why}`);
      return;
    }
    await buildRecord(ctx);
    const root = await testDebianRoot();
    const shares = await debootstrapShares(join(applianceCacheDir(), 'debootstrap-cache'));
    const e = await startInstallEnv(
      { maxConcurrent: 1, variant: 'debian', debianRoot: root, shares, baseDisk: undefined },
      { searchPath: [GIDEB_OS] },
    );
    ctx.defer(() => e.close());
    const runs = ctx.quick ? 2 : 4;
    const first: Record<'busybox' | 'debian', number[]> = { busybox: [], debian: [] };
    for (let i = 0; i < runs; i++) {
      for (const variant of ['busybox', 'debian'] as const) {
        const name = `${variant.slice(0, 3)}${String(i)}`;
        const k = 10 + 2 * i + (variant === 'debian' ? 1 : 0);
        await e.register({
          name,
          ip: `169.254.83.${String(k)}`,
          mac: `52:54:00:50:83:${k.toString(16).padStart(2, '0')}`,
          create: createAfter(0),
        });
        await writeFile(join(e.dir, 'os', `testos-${name}`, 'metad_appliance'), `${variant}\n`);
        const rec = await one(e, name);
        first[variant].push(msOf(rec.firstReportAt) - msOf(rec.requestedAt));
        ctx.log(
          `${name}: first report ${String(msOf(rec.firstReportAt) - msOf(rec.requestedAt))} ms, outcome after ${String(msOf(rec.endedAt) - msOf(rec.requestedAt))} ms`,
        );
      }
    }
    ctx.record({
      name: 'request -> first metadata request (busybox)',
      value: median(first.busybox) / 1000,
      unit: 's',
      stats: spread(first.busybox.map((x) => x / 1000)),
    });
    ctx.record({
      name: 'request -> first metadata request (debian)',
      value: median(first.debian) / 1000,
      unit: 's',
      stats: spread(first.debian.map((x) => x / 1000)),
      baseline: 'request -> first metadata request (busybox)',
    });

    // A real install: ganeti-instance-debootstrap onto a blank disk.
    const disk = join(e.dir, 'deb.img');
    await run('truncate', ['-s', '600M', disk]);
    const put = await e.metad.admin('PUT', '/v1/instances/debian1', {
      name: 'debian1',
      uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7e01',
      hostname: 'debian1.example.org',
      comm: { mac: '52:54:00:50:83:f1', ipv4: '169.254.83.241' },
      os: { name: 'debootstrap', variant: SUITE },
      hardware: { memoryMiB: 512, vcpus: 1, disks: [{ path: disk, format: 'raw' }] },
    });
    if (put.status !== 201) throw new Error(`register debian1: ${put.text}`);
    const rec = await one(e, 'debian1');
    ctx.record({
      name: 'Debian install end to end (ganeti-instance-debootstrap)',
      value: (msOf(rec.endedAt) - msOf(rec.requestedAt)) / 1000,
      unit: 's',
      stats: {
        'request -> first report s': (msOf(rec.firstReportAt) - msOf(rec.requestedAt)) / 1000,
        'first report -> outcome s': (msOf(rec.endedAt) - msOf(rec.firstReportAt)) / 1000,
      },
      note: `Debian ${SUITE} from a minbase cache tarball onto a blank 600 MiB disk, variant and hook from the node's configuration`,
    });
    const left = await e.leftovers();
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
  },
};
export default suite;
