/**
 * Install appliances through the real daemon: a test network namespace with a private libvirtd
 * and the real `metad serve` (network.mode routed), the real appliance under QEMU (TCG here),
 * jobs started over the admin socket (test/support/install-env.ts; nothing in the machine's own
 * namespace). Times come from the job records (the daemon's clock):
 *   request -> domain created   requestedAt -> createdAt, against the baseline: the same domain
 *                               created directly through LibvirtHypervisor (libvirt + QEMU start);
 *                               the daemon's overhead is requestedAt -> preparedAt (admission, the
 *                               appliance tap, the comm reconcile, the XML: everything before the
 *                               libvirt call; target ≤ 100 ms)
 *   request -> first metadata   requestedAt -> firstReportAt: the agent's first progress line is
 *                               its first request to the guest door (target ≤ 2.5 s under TCG)
 *   deadline -> domain gone     deadlineAt -> destroyedAt of hung appliances (target ≤ 0.5 s)
 *   4 concurrent installs       four at once (maxConcurrent 4), first request -> last outcome
 *   appliance build             a fresh build (the kernel and busybox .debs reused from the test
 *                               cache, so no download): wall time, vmlinux and initramfs sizes
 * Needs root, libvirtd, QEMU, the libvirt binding and dnsmasq; elsewhere the suite says why and
 * records nothing.
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { domainXml, QBOOT_ROM, QEMU_X86 } from '../../appliance/domain-xml.js';
import { buildAppliance } from '../../appliance/image.js';
import type { JobRecord } from '../../daemon/jobs/record.js';
import { applianceCacheDir, testAppliance } from '../../test/support/appliance.js';
import { createAfter, HANG, installEnvMissing, startInstallEnv, type InstallEnv } from '../../test/support/install-env.js';
import { median, msOf, spread } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';

/** The same kind of domain the daemon creates, created and destroyed directly: libvirt's own cost. */
async function directCreates(e: InstallEnv, runs: number): Promise<number[]> {
  const img = await testAppliance();
  const tap = 'mdbench0';
  await e.ns.run('ip', ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  await e.ns.run('ip', ['link', 'set', tap, 'up']);
  const out: number[] = [];
  for (let i = 0; i < runs; i++) {
    const name = `metad-bench-direct-${String(i)}`;
    const xml = domainXml({
      name,
      type: 'qemu',
      memoryMiB: 256,
      vcpus: 1,
      kernel: img.kernel,
      initrd: img.initrd,
      cmdline: 'console=ttyS0 metad.ip=169.254.82.250',
      firmware: QBOOT_ROM,
      disks: [],
      nic: { tap, mac: '52:54:00:50:82:fa' },
      consoleLog: join(e.dir, `${name}.log`),
      emulator: QEMU_X86,
    });
    const t0 = performance.now();
    await e.hv.createTransient(name, xml);
    out.push(performance.now() - t0);
    await e.hv.destroy(name);
  }
  await e.ns.run('ip', ['link', 'del', tap]);
  return out;
}

async function sequentialInstalls(ctx: SuiteContext, e: InstallEnv, runs: number): Promise<JobRecord[]> {
  const recs: JobRecord[] = [];
  for (let i = 0; i < runs; i++) {
    const name = `seq${String(i)}`;
    await e.register({
      name,
      ip: `169.254.82.${String(10 + i)}`,
      mac: `52:54:00:50:82:${(10 + i).toString(16).padStart(2, '0')}`,
      create: createAfter(0),
    });
    const r = await e.ctl('install', name, '--timeout', '240');
    if (r.code !== 0) throw new Error(`install ${name}: ${r.err}`);
    const rec = await e.watchEnd(name);
    if (rec.outcome !== 'succeeded') throw new Error(`install ${name}: ${JSON.stringify(rec)}`);
    ctx.log(
      `${name}: created ${String(msOf(rec.createdAt) - msOf(rec.requestedAt))} ms, first report ${String(msOf(rec.firstReportAt) - msOf(rec.requestedAt))} ms`,
    );
    recs.push(rec);
  }
  return recs;
}

async function parallel(
  e: InstallEnv,
  prefix: string,
  n: number,
  create: string,
  timeoutSec: number,
  ipBase: number,
): Promise<{ recs: JobRecord[]; wallMs: number }> {
  const names = Array.from({ length: n }, (_, k) => `${prefix}${String(k)}`);
  for (const [k, name] of names.entries()) {
    await e.register({
      name,
      ip: `169.254.82.${String(ipBase + k)}`,
      mac: `52:54:00:50:82:${(ipBase + k).toString(16).padStart(2, '0')}`,
      create,
    });
  }
  const t0 = performance.now();
  await Promise.all(
    names.map(async (name) => {
      const r = await e.ctl('install', name, '--timeout', String(timeoutSec));
      if (r.code !== 0) throw new Error(`install ${name}: ${r.err}`);
    }),
  );
  const recs = await Promise.all(names.map((name) => e.watchEnd(name)));
  return { recs, wallMs: performance.now() - t0 };
}

async function build(ctx: SuiteContext): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'metad-bench-appliance-'));
  ctx.defer(() => rm(dir, { recursive: true, force: true }));
  await testAppliance(); // the test cache has the .debs
  await cp(join(applianceCacheDir(), 'debs'), join(dir, 'debs'), { recursive: true });
  const t0 = performance.now();
  const img = await buildAppliance(dir);
  const wall = performance.now() - t0;
  const m = img.manifest;
  ctx.record({
    name: 'appliance build (debs cached)',
    value: wall / 1000,
    unit: 's',
    stats: { 'build.sh ms': m.buildMs, 'download ms': m.downloadMs },
  });
  ctx.record({
    name: 'appliance size',
    value: (m.vmlinuxBytes + m.initrdBytes) / (1 << 20),
    unit: 'MiB',
    stats: { 'vmlinux MiB': m.vmlinuxBytes / (1 << 20), 'initramfs MiB': m.initrdBytes / (1 << 20) },
    note: `${m.kernelAbi}, busybox ${m.busyboxVersion}`,
  });
}

const suite: Suite = {
  description:
    'install appliances through the real daemon (TCG): daemon overhead to the domain, first metadata request, deadline to gone, 4 at once; appliance build',
  async run(ctx) {
    const why = await installEnvMissing();
    if (why) {
      ctx.log(`install skipped: ${why}`);
      return;
    }
    const runs = ctx.quick ? 2 : 5;
    await build(ctx);
    const e = await startInstallEnv({ maxConcurrent: 4, claimDeadlineMs: 120_000, baseDisk: undefined });
    ctx.defer(() => e.close());
    // Warm-up: the first domain pays for QEMU's capability probe (cached afterwards).
    await directCreates(e, 1);
    const direct = await directCreates(e, runs);
    const seq = await sequentialInstalls(ctx, e, runs);
    const toCreated = seq.map((r) => msOf(r.createdAt) - msOf(r.requestedAt));
    const toFirst = seq.map((r) => msOf(r.firstReportAt) - msOf(r.requestedAt));
    ctx.record({
      name: 'direct domain create (libvirt)',
      value: median(direct),
      unit: 'ms',
      stats: spread(direct),
      note: 'baseline: libvirt + QEMU start',
    });
    ctx.record({
      name: 'request -> domain created',
      value: median(toCreated),
      unit: 'ms',
      stats: spread(toCreated),
      baseline: 'direct domain create (libvirt)',
    });
    const toPrepared = seq.map((r) => msOf(r.preparedAt) - msOf(r.requestedAt));
    ctx.record({
      name: 'daemon overhead to the domain',
      value: median(toPrepared),
      unit: 'ms',
      stats: {
        'request -> run start ms': median(seq.map((r) => msOf(r.startedAt) - msOf(r.requestedAt))),
        'run start -> prepared ms': median(seq.map((r) => msOf(r.preparedAt) - msOf(r.startedAt))),
        'prepared -> created ms': median(seq.map((r) => msOf(r.createdAt) - msOf(r.preparedAt))),
        'created - direct ms': median(toCreated) - median(direct),
      },
      target: { op: '<=', value: 100 },
      note: 'request -> prepared (admission, tap, comm reconcile, XML); the libvirt create follows',
    });
    ctx.record({
      name: 'request -> first metadata request',
      value: median(toFirst) / 1000,
      unit: 's',
      stats: spread(toFirst.map((x) => x / 1000)),
      target: { op: '<=', value: 2.5 },
    });

    const hung = await parallel(e, 'hang', ctx.quick ? 2 : 3, HANG, 8, 40);
    const gone = hung.recs.map((r) => msOf(r.destroyedAt) - msOf(r.deadlineAt));
    if (hung.recs.some((r) => r.outcome !== 'timed-out'))
      throw new Error(`hung appliances: ${JSON.stringify(hung.recs.map((r) => r.outcome))}`);
    ctx.record({
      name: 'deadline -> domain gone',
      value: median(gone) / 1000,
      unit: 's',
      stats: spread(gone.map((x) => x / 1000)),
      target: { op: '<=', value: 0.5 },
    });

    const four = await parallel(e, 'four', 4, createAfter(0), 240, 60);
    if (four.recs.some((r) => r.outcome !== 'succeeded')) throw new Error(`4 at once: ${JSON.stringify(four.recs.map((r) => r.outcome))}`);
    const each = four.recs.map((r) => (msOf(r.endedAt) - msOf(r.requestedAt)) / 1000);
    ctx.record({
      name: '4 concurrent installs end to end',
      value: four.wallMs / 1000,
      unit: 's',
      stats: { 'each min s': Math.min(...each), 'each max s': Math.max(...each) },
    });
    const one = seq.map((r) => (msOf(r.endedAt) - msOf(r.requestedAt)) / 1000);
    ctx.record({
      name: 'one install end to end',
      value: median(one),
      unit: 's',
      stats: spread(one),
      note: 'info: request -> outcome, alone',
    });
    const left = await e.leftovers();
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
  },
};
export default suite;
