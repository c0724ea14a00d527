/**
 * The real appliance under real libvirtd + QEMU (TCG here), driven by the runner
 * (appliance/runner.ts) through appliance/libvirt.ts, end to end, inside a network namespace this
 * test creates and deletes: a private libvirtd (test/support/libvirtd.ts), one tap per appliance
 * standing in for the comm network (169.254.169.254/32 on it, a /32 route to the appliance), and
 * the real `metad serve` bound to 169.254.169.254:80 in the namespace with each appliance
 * registered as its instance. Two appliances at once:
 *  - web1: the agent reads the parameters, runs the OS's `create` with Ganeti's environment (the
 *    script writes that environment onto the instance's disk, read back here), reports every step
 *    through the pipe and powers off: succeeded;
 *  - hang1: its `create` never returns: at the hard deadline the runner destroys it: timed-out.
 * Afterwards no domain, overlay, tap or process is left, and the tripwire saw nothing leave the
 * namespace except through the taps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns, netnsExists, TRIP_TABLE } from '../support/netns.js';
import { applianceMissing, ganetiEnv, testAppliance } from '../support/appliance.js';
import { libvirtdMissing, netnsPids, startLibvirtd, type TestLibvirtd } from '../support/libvirtd.js';
import { pipePoller, startNsMetad } from '../support/ns-metad.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { applianceCmdline, domainXml, QBOOT_ROM, QEMU_X86, type DomainDisk } from '../../appliance/domain-xml.js';
import { runAppliance, type RunRecord } from '../../appliance/runner.js';
import { systemClock } from '../../daemon/clock.js';
import type { ApplianceImage } from '../../appliance/image.js';

const run = promisify(execFile);
const METADATA_IP = '169.254.169.254';

const CREATE = `#!/bin/sh
# Test OS create script: records the Ganeti OS environment on the instance's first disk.
set -e
{
  echo METAD-TEST-BEGIN
  env | grep -E '^(OSP_|INSTANCE_|DISK_|OS_|NIC_)' | sort
  echo METAD-TEST-END
} >/tmp/report.txt
dd if=/tmp/report.txt of="$DISK_0_PATH" conv=fsync 2>/dev/null
echo "test create: done"
`;

const HANG = `#!/bin/sh
# Test OS create script that never finishes.
echo "test create: hanging"
exec sleep 100000
`;

interface Guest {
  name: string;
  ip: string;
  mac: string;
  tap: string;
  domain: string;
  disk: string;
}

test('appliances boot under libvirt (TCG): one runs create with the Ganeti environment and succeeds, a hung one is destroyed at its deadline; nothing is left', async (t) => {
  const binding = await loadBinding().then(
    () => undefined,
    () => MISSING_BINDING,
  );
  if (skipOrFail(t, canUseNetns().why ?? applianceMissing() ?? libvirtdMissing() ?? binding)) return;
  const img: ApplianceImage = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-appliance-boot-'));
  const id = randomBytes(3).toString('hex');
  const prefix = `metadt-appl-${process.pid}-${id}-`;
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
  };
  t.after(cleanup);

  const ns = await createNetns('metadta');
  cleanups.push(() => ns.destroy());
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const ip = async (...args: string[]): Promise<void> => {
    const r = await ns.run('ip', args);
    assert.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
  };
  const guests: Guest[] = [
    {
      name: 'web1',
      ip: '169.254.77.2',
      mac: '52:54:00:4d:77:02',
      tap: `mdt${id}a`,
      domain: `${prefix}web1`,
      disk: join(dir, 'web1-disk0.raw'),
    },
    {
      name: 'hang1',
      ip: '169.254.77.3',
      mac: '52:54:00:4d:77:03',
      tap: `mdt${id}b`,
      domain: `${prefix}hang1`,
      disk: join(dir, 'hang1-disk0.raw'),
    },
  ];
  // The stand-in comm links: a tap per appliance holding the metadata address, a host route to
  // the guest. The tripwire drops everything else that tries to leave the namespace.
  for (const g of guests) {
    await ip('tuntap', 'add', 'dev', g.tap, 'mode', 'tap');
    await ip('link', 'set', g.tap, 'up');
    await ip('addr', 'add', `${METADATA_IP}/32`, 'dev', g.tap);
    await ip('route', 'add', `${g.ip}/32`, 'dev', g.tap);
    assert.equal((await ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', g.tap, 'accept'])).code, 0);
  }

  let libvirtd: TestLibvirtd | undefined = await startLibvirtd(ns);
  cleanups.push(async () => libvirtd?.stop());
  const metad = await startNsMetad((cmd, args, opts) => ns.exec(cmd, args, opts), dir, {
    guest: { listen: [{ host: METADATA_IP, port: 80 }], commRange: '169.254.0.0/16' },
    storage: { fileRoots: [dir] },
    os: { searchPath: [join(dir, 'os')] },
  });
  cleanups.push(async () => {
    metad.kill();
    await Promise.resolve();
  });
  const hv = new LibvirtHypervisor(libvirtd.uri);
  cleanups.push(async () => {
    for (const n of await hv.list(prefix)) await hv.destroy(n);
    await hv.close();
  });

  // The instances: one raw disk each, an OS definition whose untrusted/create records its
  // environment (web1) or never returns (hang1).
  for (const g of guests) {
    await writeFile(g.disk, Buffer.alloc(4 << 20));
    const osdir = join(dir, 'os', `testos-${g.name}`);
    await mkdir(join(osdir, 'untrusted'), { recursive: true });
    await writeFile(join(osdir, 'untrusted', 'create'), g.name === 'web1' ? CREATE : HANG);
    const put = await metad.admin('PUT', `/v1/instances/${g.name}`, {
      name: g.name,
      uuid: `6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c${g.name === 'web1' ? '01' : '02'}`,
      hostname: `${g.name}.example.org`,
      comm: { mac: g.mac, ipv4: g.ip, tap: g.tap },
      os: { name: `testos-${g.name}`, variant: 'default' },
      params: { public: { image: 'debian-12', 'mirror.url': 'http://deb.example/debian' }, private: { root_hash: "it's a value" } },
      hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: g.disk, format: 'raw', sizeGiB: 1 }] },
    });
    assert.equal(put.status, 201, `register ${g.name}: ${put.text}`);
    const sec = await metad.admin('PUT', `/v1/instances/${g.name}/params/secret`, { values: { api_token: 'tok-S3cret' } });
    assert.equal(sec.status, 200, sec.text);
  }

  // A disk-based appliance's per-run overlay over a read-only base: made, attached, deleted.
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'web1-overlay.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
  await chmod(base, 0o444);
  const baseBefore = await readFile(base);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);

  const boot = async (
    g: Guest,
    deadlineMs: number,
  ): Promise<{ rec: RunRecord; pipe: string; console: string; deadlineAt: number; doneAt: number }> => {
    const disks: DomainDisk[] = [{ path: g.disk, format: 'raw' }];
    const consoleLog = join(dir, `${g.name}-console.log`);
    const xml = domainXml({
      name: g.domain,
      type: 'qemu',
      memoryMiB: 256,
      vcpus: 1,
      kernel: img.kernel,
      initrd: img.initrd,
      cmdline: applianceCmdline({ ipv4: g.ip, timeoutSec: 10 }),
      firmware: QBOOT_ROM,
      disks,
      ...(g.name === 'web1' ? { overlay } : {}),
      nic: { tap: g.tap, mac: g.mac },
      consoleLog,
      emulator: QEMU_X86,
    });
    const poller = pipePoller(metad, g.name);
    const deadlineAt = Date.now() + deadlineMs;
    const rec = await runAppliance(
      { name: g.domain, xml, deadlineAt },
      {
        hv: poller.watching(hv),
        clock: systemClock,
        pollMs: 200,
        takeProgress: poller.take,
        cleanup: async () => {
          if (g.name === 'web1') await rm(overlay);
          await ip('link', 'del', g.tap);
        },
      },
    );
    const doneAt = Date.now();
    await poller.stop();
    return { rec, pipe: poller.all(), console: await readFile(consoleLog, 'utf8').catch(() => ''), deadlineAt, doneAt };
  };

  type Booted = Awaited<ReturnType<typeof boot>>;
  let ok: Booted | undefined;
  let hung: Booted | undefined;
  /** A phase's view of a boot the first phase did (it fails here, named, if that boot never ended). */
  const ended = (b: Booted | undefined, name: string): Booted => {
    assert.ok(b, `${name} did not end (see the first phase)`);
    return b;
  };

  await t.test('both appliances boot at once and end (web1 on its own, hang1 at its deadline)', async (st) => {
    [ok, hung] = await Promise.all([boot(guests[0]!, 240_000), boot(guests[1]!, 25_000)]);
    const r = ok.rec;
    st.diagnostic(
      `web1: start -> domain created ${r.createdAt! - r.startedAt} ms, -> first progress line (right after the first metadata request) ` +
        `${r.firstReportAt! - r.startedAt} ms, -> powered off and gone ${r.endedAt! - r.startedAt} ms; ` +
        `hang1: deadline -> destroyed and cleaned up ${hung.doneAt - hung.deadlineAt} ms, reached: ${hung.rec.lines.at(-1) ?? '(no progress line)'}`,
    );
  });

  await t.test('web1 succeeds and reports every step through the pipe, in order; the runner saw each line', () => {
    const w = ended(ok, 'web1');
    assert.equal(w.rec.state, 'succeeded', `web1: ${JSON.stringify(w.rec)}\nconsole:\n${w.console.slice(-3000)}`);
    const lines = w.pipe.trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(' ').slice(0, 4).join(' ')),
      [
        'metad-progress v1 step=net status=ok',
        'metad-progress v1 step=metadata status=ok',
        'metad-progress v1 step=parameters status=ok',
        'metad-progress v1 step=script status=ok',
        'metad-progress v1 step=create status=start',
        'metad-progress v1 step=create status=ok',
        'metad-progress v1 step=final status=succeeded',
      ],
      `pipe:\n${w.pipe}\nconsole:\n${w.console.slice(-3000)}`,
    );
    assert.deepEqual(w.rec.lines, lines, 'the runner saw every progress line');
    assert.ok(lines[1]!.includes('instance=web1') && lines[1]!.includes('disks=1'), lines[1]);
  });

  await t.test(
    'web1 without an install job: 3 parameters, the secret never reached the appliance, no value in progress lines',
    async () => {
      const w = ended(ok, 'web1');
      const lines = w.pipe.trim().split('\n');
      // The runner is driven directly here, with no install job in the daemon: the guest door does not
      // serve the secret (served only during a job), so the appliance sees 3 parameters, not 4.
      assert.ok(lines[2]?.endsWith('count=3'), lines[2]);
      assert.ok(!w.pipe.includes('tok-S3cret'), 'no parameter value in progress lines');
      assert.ok(
        !(await readFile(guests[0]!.disk)).toString('latin1').includes('tok-S3cret'),
        'no job, no secret: it never reached the appliance',
      );
    },
  );

  await t.test("web1's create script ran with Ganeti's OS environment (its report, read back from DISK_0_PATH)", async () => {
    ended(ok, 'web1');
    const onDisk = (await readFile(guests[0]!.disk)).toString('latin1');
    const start = onDisk.indexOf('METAD-TEST-BEGIN\n');
    const end = onDisk.indexOf('METAD-TEST-END\n');
    assert.ok(start === 0 && end > start, 'the create script wrote its report to DISK_0_PATH');
    assert.deepEqual(
      onDisk
        .slice(start + 'METAD-TEST-BEGIN\n'.length, end)
        .trim()
        .split('\n'),
      ganetiEnv('web1', { image: 'debian-12', 'mirror.url': 'http://deb.example/debian', root_hash: "it's a value" }),
    );
  });

  await t.test('hang1 is destroyed by the runner at its deadline (not before), while its create still ran: timed-out', () => {
    const h = ended(hung, 'hang1');
    assert.equal(h.rec.state, 'timed-out', `hang1: ${JSON.stringify(h.rec)}\nconsole:\n${h.console.slice(-3000)}`);
    assert.ok(h.rec.endedAt! >= h.deadlineAt);
    assert.equal(h.rec.final, undefined);
    assert.equal(h.rec.destroyError, undefined);
  });

  await t.test(
    'nothing is left: no domain, the overlay deleted (the base untouched), no tap, no traffic past the tripwire, no process',
    async () => {
      assert.deepEqual(await hv.list(prefix), []);
      assert.ok(!existsSync(overlay));
      assert.deepEqual(await readFile(base), baseBefore, 'the read-only base is unchanged');
      assert.equal((await stat(base)).mode & 0o222, 0);
      for (const g of guests) assert.notEqual((await ns.run('ip', ['link', 'show', g.tap])).code, 0, `${g.tap} gone`);
      assert.equal(await ns.tripCount(), 0, `nothing left the namespace but through the taps: ${(await ns.tripDestinations()).join(', ')}`);
      await hv.close();
      await metad.stop();
      await libvirtd?.stop();
      libvirtd = undefined;
      assert.deepEqual(await netnsPids(ns.name), [], 'no process left in the namespace');
      const nsName = ns.name;
      await ns.destroy();
      assert.ok(!netnsExists(nsName));
    },
  );
});

test('private libvirtds in two namespaces run side by side and leave no process behind', async (t) => {
  if (skipOrFail(t, canUseNetns().why ?? libvirtdMissing())) return;
  const a = await createNetns('metadta');
  t.after(() => a.destroy());
  const b = await createNetns('metadta');
  t.after(() => b.destroy());
  // Both at once: with the default /run/libvirtd.pid one of them failed to start.
  const started = await Promise.allSettled([startLibvirtd(a), startLibvirtd(b)]);
  t.after(() => Promise.all(started.map(async (s) => (s.status === 'fulfilled' ? s.value.stop() : undefined))));
  const [la, lb] = started.map((s) => {
    if (s.status === 'rejected') assert.fail(String(s.reason));
    return s.value;
  });
  assert.ok(la && lb);
  assert.notEqual(la.uri, lb.uri);
  assert.ok((await netnsPids(a.name)).length > 0);
  await la.stop();
  await lb.stop();
  assert.deepEqual(await netnsPids(a.name), []);
  assert.deepEqual(await netnsPids(b.name), []);
});
