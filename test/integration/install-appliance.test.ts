/**
 * Install jobs through the real daemon, end to end: `metad serve` with network.mode routed in a
 * test network namespace (its anchor, nftables table and dnsmasq there), a private libvirtd in
 * the same namespace, the real appliance under QEMU (TCG here; virtType auto decides by a KVM
 * trial boot), and the real `metadctl` (in-process) on the admin socket. metad assembles every
 * run itself: the appliance tap (created, given the instance's addresses/route/rules by the comm
 * reconcile, deleted after), the instance's disk, a per-run qcow2 overlay over a read-only base
 * (baseDisk), the serial console log on the runtime dir. The image is where `metad appliance
 * build` put it (<cacheDir>/current, the default imageDir).
 *  1. virtType auto (a KVM trial boot: TCG on these machines), claimDeadlineMs 1000: an
 *     appliance that has not claimed its secrets in time -> stuck.
 *  2. after a restart (virtType qemu, claim deadline 60 s; a leftover appliance tap is swept at start), three
 *     jobs at once:
 *     - web1: the OS's create mounts the instance's ext4 disk and writes its environment there
 *       (read back with debugfs): the secret parameter was served during the job; succeeded;
 *       the secret is wiped afterwards;
 *     - hang1: create never returns; `--timeout 30` (under load the boot alone can take 20 s):
 *       timed-out, the domain destroyed within 1 s
 *       of the deadline (the record's deadlineAt and destroyedAt), the secret wiped;
 *     - abrt1: `metadctl install abort` once it runs: aborted;
 *     - an instance whose own tap exists (its VM runs) is refused with 409.
 *  3. network.mode bridged (the routed anchor removed as docs/deployment.md says): br1's
 *     appliance tap is an isolated port of metad's bridge with the per-port checks; succeeded,
 *     its environment on the disk, the secret wiped, the tap and its elements gone.
 * Afterwards no domain, tap, overlay, console log, nftables element or process is left, and the
 * tripwire saw nothing leave the namespace except through the appliance taps (or metad's bridge).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { missingCommand, skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns, netnsExists, TRIP_TABLE, type Netns } from '../support/netns.js';
import { applianceCacheDir, applianceMissing, ganetiEnv, testAppliance } from '../support/appliance.js';
import { libvirtdMissing, netnsPids, startLibvirtd, type TestLibvirtd } from '../support/libvirtd.js';
import { METAD_CLI, startNsMetad, type NsMetad } from '../support/ns-metad.js';
import { ctlAt } from '../support/metadctl-run.js';
import { until } from '../support/wait.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { REDACTED, type JobRecord } from '../../daemon/jobs/record.js';

const run = promisify(execFile);
const MD = '169.254.169.254';
const SECRET = 'tok-S3cret-install';

const CREATE = `#!/bin/sh
# Test OS create script: records the Ganeti OS environment in a file on the instance's ext4 disk.
set -e
mkdir -p /mnt/disk0
mount -t ext4 "$DISK_0_PATH" /mnt/disk0
env | grep -E '^(OSP_|INSTANCE_|DISK_|OS_|NIC_)' | sort >/mnt/disk0/metad-env.txt
umount /mnt/disk0
# A hostile script prints its secret into a progress line: every record must show it redacted.
wget -q -O /dev/null --post-data "metad-progress v1 step=leak status=ok token=$OSP_API_TOKEN
" http://169.254.169.254/ganeti/latest/write
echo "test create: done"
`;

const HANG = `#!/bin/sh
echo "test create: hanging"
exec sleep 100000
`;

const missing = (): string | undefined =>
  missingCommand([
    ['dnsmasq', 'dnsmasq-base'],
    ['debugfs', 'e2fsprogs'],
    ['mkfs.ext4', 'e2fsprogs'],
  ]);

interface Inst {
  name: string;
  ip: string;
  mac: string;
  create: string;
  disk?: string;
  tap?: string;
}

test('install jobs through the real daemon: stuck, succeeded (marker on the ext4 disk), timed-out, aborted, refused while the VM runs, succeeded in bridged mode; nothing left', async (t) => {
  const binding = await loadBinding().then(
    () => undefined,
    () => MISSING_BINDING,
  );
  if (skipOrFail(t, canUseNetns().why ?? applianceMissing() ?? libvirtdMissing() ?? missing() ?? binding)) return;
  const img = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-install-'));
  // The operator's path: `metad appliance build` into the cache dir (the tests' build: reused)
  // points <cacheDir>/current at it, and the daemon's default imageDir is that link.
  const cacheDir = applianceCacheDir();
  await writeFile(join(dir, 'build.json'), JSON.stringify({ appliance: { cacheDir } }));
  const built = await run(process.execPath, [METAD_CLI, 'appliance', 'build', '--config', join(dir, 'build.json')]);
  assert.equal(built.stdout.trim(), img.dir);
  assert.equal(await readlink(join(cacheDir, 'current')), basename(img.dir));
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
  });
  const ns: Netns = await createNetns('metadti');
  cleanups.push(() => ns.destroy());
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // Replies to the appliances leave through their taps (mdi…; in bridged mode through metad's
  // bridge), IPv6 neighbour discovery through vm1's tap (metad's comm taps); anything else trips
  // the wire.
  for (const tap of ['mdi*', 'vmtap1', 'metadbr0']) {
    assert.equal((await ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', tap, 'accept'])).code, 0);
  }
  let libvirtd: TestLibvirtd | undefined = await startLibvirtd(ns);
  cleanups.push(async () => libvirtd?.stop());
  const uri = libvirtd.uri;
  const hv = new LibvirtHypervisor(uri);
  cleanups.push(async () => {
    for (const n of await hv.list('metad-install-')) await hv.destroy(n);
    await hv.close();
  });

  const base = join(dir, 'base.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
  await chmod(base, 0o444);
  const baseBefore = await readFile(base);
  const jobsDir = join(dir, 'jobs');
  const overlays = join(dir, 'overlays');
  const config = (claimDeadlineMs: number, virtType: string): Record<string, unknown> => ({
    guest: { listen: [{ host: MD, port: 80 }], commRange: ['169.254.0.0/16'] },
    network: { mode: 'routed', runDir: join(dir, 'comm') },
    storage: { fileRoots: [dir] },
    os: { searchPath: [join(dir, 'os')] },
    appliance: {
      cacheDir,
      virtType,
      libvirtUri: uri,
      runDir: jobsDir,
      overlayDir: overlays,
      baseDisk: base,
      maxConcurrent: 4,
      claimDeadlineMs,
      pollMs: 100,
    },
  });
  let metad: NsMetad = await startNsMetad((c, a, o) => ns.exec(c, a, o), dir, config(1000, 'auto'));
  cleanups.push(() => metad.stop());
  const ctl = (...args: string[]): ReturnType<typeof ctlAt> => ctlAt(metad.socket, args);
  const status = async (name: string): Promise<JobRecord> => {
    const r = await ctl('--json', 'install', 'status', name);
    return JSON.parse(r.out) as JobRecord;
  };

  const register = async (g: Inst): Promise<void> => {
    const osdir = join(dir, 'os', `testos-${g.name}`);
    await mkdir(join(osdir, 'untrusted'), { recursive: true });
    await writeFile(join(osdir, 'untrusted', 'create'), g.create);
    if (g.disk) {
      await writeFile(g.disk, Buffer.alloc(0));
      await run('truncate', ['-s', '8M', g.disk]);
      await run('mkfs.ext4', ['-q', '-F', g.disk]);
    }
    const put = await metad.admin('PUT', `/v1/instances/${g.name}`, {
      name: g.name,
      uuid: `6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c${g.mac.slice(-2)}`,
      hostname: `${g.name}.example.org`,
      comm: { mac: g.mac, ipv4: g.ip, ...(g.tap ? { tap: g.tap } : {}) },
      os: { name: `testos-${g.name}`, variant: 'default' },
      params: { public: { image: 'debian-12' } },
      hardware: { memoryMiB: 256, vcpus: 1, disks: g.disk ? [{ path: g.disk, format: 'raw' }] : [] },
    });
    assert.equal(put.status, 201, `register ${g.name}: ${put.text}`);
    const sec = await metad.admin('PUT', `/v1/instances/${g.name}/params/secret`, { values: { api_token: SECRET } });
    assert.equal(sec.status, 200, sec.text);
  };
  const secretNames = async (name: string): Promise<unknown[]> =>
    ((await metad.admin('GET', `/v1/instances/${name}/params`)).json as { secret: unknown[] }).secret;
  const watchEnd = async (name: string): Promise<JobRecord> => {
    await ctl('install', 'watch', name);
    return status(name);
  };

  /** A phase's view of a job an earlier phase ran (fails here, named, if that one did not get it). */
  const got = <T>(v: T | undefined, what: string): T => {
    assert.ok(v !== undefined, `${what} (see the phase that runs it)`);
    return v;
  };

  // 1. stuck: the claim deadline (1 s) passes before the appliance reads its parameters.
  let stuck: JobRecord | undefined;
  let virt: RegExpExecArray | null = null;
  await t.test(
    'virtType auto decides once; an appliance that has not claimed its secrets within 1 s is stuck, its secret wiped',
    async () => {
      await register({ name: 'stuck1', ip: '169.254.80.5', mac: '52:54:00:50:80:05', create: CREATE });
      const s1 = await ctl('install', 'stuck1');
      assert.equal(s1.code, 0, s1.err);
      stuck = await watchEnd('stuck1');
      assert.equal(stuck.outcome, 'stuck', JSON.stringify(stuck));
      assert.equal(stuck.claimedAt, undefined);
      assert.deepEqual(await secretNames('stuck1'), [], 'the job end wiped the secret');
      virt =
        /"install appliance virtualization chosen"[^\n]*"virtType":"(\w+)"|"virtType":"(\w+)"[^\n]*"install appliance virtualization chosen"/.exec(
          metad.out(),
        );
      assert.ok(virt, 'virtType auto decided once');
      // These machines' /dev/kvm is a nested PVM hypervisor on which KVM guests do not run.
      if (existsSync('/sys/module/kvm_pvm')) assert.equal(virt[1] ?? virt[2], 'qemu');
    },
  );

  // 2. a restart with a claim deadline the appliances meet; three jobs at once.
  await t.test('a restart sweeps the appliance tap an earlier run left', async () => {
    await metad.stop();
    // A tap an earlier run left (its cleanup failed): swept at start.
    assert.equal((await ns.run('ip', ['tuntap', 'add', 'dev', 'mdiffffffffffff', 'mode', 'tap'])).code, 0);
    metad = await startNsMetad((c, a, o) => ns.exec(c, a, o), dir, config(60_000, 'qemu'));
    await until('the leftover tap swept', async () => (await ns.run('ip', ['link', 'show', 'mdiffffffffffff'])).code !== 0, 10_000);
  });
  const web1: Inst = { name: 'web1', ip: '169.254.80.2', mac: '52:54:00:50:80:02', create: CREATE, disk: join(dir, 'web1.ext4') };
  const hang1: Inst = { name: 'hang1', ip: '169.254.80.3', mac: '52:54:00:50:80:03', create: HANG, disk: join(dir, 'hang1.ext4') };
  const abrt1: Inst = { name: 'abrt1', ip: '169.254.80.4', mac: '52:54:00:50:80:04', create: HANG };
  const vm1: Inst = { name: 'vm1', ip: '169.254.80.6', mac: '52:54:00:50:80:06', create: CREATE, tap: 'vmtap1' };
  for (const g of [web1, hang1, abrt1, vm1]) await register(g);

  await t.test('an instance whose own VM runs (its registered tap exists) is refused; no job recorded', async () => {
    assert.equal((await ns.run('ip', ['tuntap', 'add', 'dev', 'vmtap1', 'mode', 'tap'])).code, 0);
    const refused = await ctl('install', 'vm1');
    assert.equal(refused.code, 1);
    assert.match(refused.err, /own comm tap exists/);
    assert.equal((await metad.admin('GET', '/v1/instances/vm1/install')).status, 404, 'no job was recorded');
  });

  let ok: JobRecord | undefined;
  let hung: JobRecord | undefined;
  let ab: JobRecord | undefined;
  await t.test(
    "three jobs at once (web1, hang1, abrt1 aborted once it runs) all end; web1's appliance tap carries its route meanwhile",
    async () => {
      for (const [g, timeout] of [
        [web1, '240'],
        [hang1, '30'],
        [abrt1, '240'],
      ] as const) {
        const r = await ctl('install', g.name, '--timeout', timeout);
        assert.equal(r.code, 0, `${g.name}: ${r.err}`);
      }
      const aborted = (async () => {
        await until('abrt1 running', async () => (await status('abrt1')).state === 'running', 120_000);
        const r = await ctl('install', 'abort', 'abrt1');
        assert.equal(r.code, 0, r.err);
        return watchEnd('abrt1');
      })();
      // While web1's job runs its appliance tap carries web1's identity (route, set elements).
      const live = await until('web1 running', async () => (await status('web1')).state === 'running', 120_000).then(() =>
        ns.run('ip', ['-4', 'route', 'show', 'proto', '171']),
      );
      [ok, hung, ab] = await Promise.all([watchEnd('web1'), watchEnd('hang1'), aborted]);
      assert.match(live.stdout, /169\.254\.80\.2 dev mdi[0-9a-f]{12}/);
    },
  );

  await t.test(
    'web1 succeeded: every step reported, the secret served during the job (on its disk) and redacted everywhere else',
    async () => {
      const w = got(ok, 'web1 ended');
      assert.equal(w.outcome, 'succeeded', JSON.stringify(w));
      assert.ok(w.claimedAt !== undefined);
      assert.deepEqual(
        w.lines.map((l) => l.split(' ').slice(2, 4).join(' ')),
        [
          'step=net status=ok',
          'step=metadata status=ok',
          'step=parameters status=ok',
          'step=script status=ok',
          'step=create status=start',
          'a secret', // '[redacted: contained a secret value]': the line the script printed with its secret
          'step=create status=ok',
          'step=final status=succeeded',
        ],
      );
      assert.ok(w.lines.includes(REDACTED));
      const env = (await run('debugfs', ['-R', 'cat /metad-env.txt', web1.disk ?? ''])).stdout.trim().split('\n');
      assert.deepEqual(env, ganetiEnv('web1', { api_token: SECRET, image: 'debian-12' }));
      assert.ok(!JSON.stringify(w).includes(SECRET), 'no secret in the record');
      const jobFiles = join(dir, 'state', 'jobs');
      for (const f of await readdir(jobFiles))
        assert.ok(!(await readFile(join(jobFiles, f), 'utf8')).includes(SECRET), `no secret in ${f}`);
      assert.ok(!(await ctl('install', 'status', 'web1')).out.includes(SECRET), 'nor in metadctl install status');
    },
  );

  await t.test('hang1 timed out at its deadline, not before, with no final report; its domain gone within 1 s of the deadline', () => {
    const h = got(hung, 'hang1 ended');
    assert.equal(h.outcome, 'timed-out', JSON.stringify(h));
    assert.equal(h.lines.filter((l) => l.includes('step=final')).length, 0, 'no final report: it hung');
    const deadline = Date.parse(h.deadlineAt ?? '');
    const destroyed = Date.parse(h.destroyedAt ?? '');
    assert.ok(Date.parse(h.endedAt ?? '') >= deadline);
    assert.ok(destroyed - deadline <= 1000, `destroyed ${String(destroyed - deadline)} ms after the deadline`);
  });

  await t.test("abrt1 aborted; every job's secret wiped", async () => {
    const a = got(ab, 'abrt1 ended');
    assert.equal(a.outcome, 'aborted', JSON.stringify(a));
    for (const g of [web1, hang1, abrt1]) assert.deepEqual(await secretNames(g.name), [], `${g.name}: secret wiped`);
  });

  await t.test(
    'nothing left of the routed jobs: domains, taps, routes, set elements, overlays, console logs; late replies dropped',
    async () => {
      assert.deepEqual(await hv.list('metad-install-'), []);
      const links = (await ns.run('ip', ['-o', 'link', 'show'])).stdout;
      assert.doesNotMatch(links, /mdi[0-9a-f]{12}/);
      // Only vm1's own tap (its "VM" is up) keeps its route.
      assert.equal((await ns.run('ip', ['-4', 'route', 'show', 'proto', '171'])).stdout.trim().split('\n').length, 1);
      const sets = (await ns.run('nft', ['list', 'table', 'inet', 'metad'])).stdout;
      assert.doesNotMatch(sets, /mdi[0-9a-f]{12}/);
      assert.deepEqual(await readdir(overlays), []);
      assert.deepEqual(await readdir(jobsDir), []);
      assert.deepEqual(await readFile(base), baseBefore, 'the read-only base is unchanged');
      // With the appliances' taps and routes gone, metadata-sourced traffic to them (the door's late
      // retransmissions) would take the default route: metad's table drops it before it leaves.
      const late = await ns.run(process.execPath, [
        '-e',
        `const s = require('node:net').connect({ host: '${web1.ip}', port: 80, localAddress: '${MD}' });
       s.on('error', (e) => { console.log(e.code); process.exit(0); }); s.on('connect', () => { console.log('connected'); process.exit(0); });
       setTimeout(() => { console.log('timeout'); process.exit(0); }, 1500);`,
      ]);
      assert.notEqual(late.stdout.trim(), 'connected');
      // (the tripwire below would count it, had metad's table not dropped it first)
      assert.equal(await ns.tripCount(), 0, `nothing left but through the taps: ${(await ns.tripDestinations()).join(', ')}`);
    },
  );

  // 3. bridged mode (docs/deployment.md, switching modes: the routed anchor removed by hand): the
  // same install through an isolated, filtered port of metad's bridge.
  let br: JobRecord | undefined;
  await t.test(
    "bridged mode: br1's appliance tap is an isolated port of metad's bridge; succeeded, secret wiped, the port gone",
    async () => {
      await metad.stop();
      assert.equal((await ns.run('ip', ['link', 'del', 'metad0'])).code, 0);
      metad = await startNsMetad((c, a, o) => ns.exec(c, a, o), dir, {
        ...config(60_000, 'qemu'),
        network: { mode: 'bridged', runDir: join(dir, 'comm') },
      });
      const br1: Inst = { name: 'br1', ip: '169.254.80.7', mac: '52:54:00:50:80:07', create: CREATE, disk: join(dir, 'br1.ext4') };
      await register(br1);
      const rb = await ctl('install', 'br1', '--timeout', '240');
      assert.equal(rb.code, 0, rb.err);
      const portOf = async (): Promise<
        { ifname: string; master?: string; linkinfo?: { info_slave_data?: { isolated?: boolean } } } | undefined
      > => {
        const links = JSON.parse((await ns.run('ip', ['-d', '-j', 'link', 'show'])).stdout) as {
          ifname: string;
          master?: string;
          linkinfo?: { info_slave_data?: { isolated?: boolean } };
        }[];
        return links.find((l) => /^mdi[0-9a-f]{12}$/.test(l.ifname));
      };
      const brPort = await until('br1 running', async () => (await status('br1')).state === 'running' && portOf(), 120_000);
      assert.equal(brPort.master, 'metadbr0', "the appliance's tap is a port of metad's bridge");
      assert.equal(brPort.linkinfo?.info_slave_data?.isolated, true, 'an isolated port');
      assert.match((await ns.run('nft', ['list', 'table', 'bridge', 'metad'])).stdout, new RegExp(brPort.ifname));
      br = await watchEnd('br1');
      assert.equal(br.outcome, 'succeeded', JSON.stringify(br));
      const brEnv = (await run('debugfs', ['-R', 'cat /metad-env.txt', br1.disk ?? ''])).stdout.trim().split('\n');
      assert.deepEqual(brEnv, ganetiEnv('br1', { api_token: SECRET, image: 'debian-12' }));
      assert.deepEqual(await secretNames('br1'), [], 'br1: secret wiped');
      assert.equal(await portOf(), undefined, 'the appliance tap is gone');
      assert.doesNotMatch((await ns.run('nft', ['list', 'table', 'bridge', 'metad'])).stdout, /mdi[0-9a-f]{12}/);
      assert.equal(await ns.tripCount(), 0, `bridged: nothing left but through the bridge: ${(await ns.tripDestinations()).join(', ')}`);
    },
  );

  await t.test('afterwards no process is left in the namespace, and the namespace goes', async (st) => {
    await metad.stop();
    await hv.close();
    await libvirtd?.stop();
    libvirtd = undefined;
    await ns.run('ip', ['link', 'del', 'vmtap1']);
    assert.deepEqual(await netnsPids(ns.name), [], 'no process left in the namespace');
    const nsName = ns.name;
    await ns.destroy();
    assert.ok(!netnsExists(nsName));
    const ms = (a?: string, b?: string): string => String(Date.parse(a ?? '') - Date.parse(b ?? ''));
    st.diagnostic(
      `virtType ${virt?.[1] ?? virt?.[2] ?? '?'}; web1: requested -> prepared ${ms(ok?.preparedAt, ok?.requestedAt)} ms ` +
        `(virtType qemu: no trial), -> created ${ms(ok?.createdAt, ok?.requestedAt)} ms, ` +
        `-> first report ${ms(ok?.firstReportAt, ok?.requestedAt)} ms, -> ended ${ms(ok?.endedAt, ok?.requestedAt)} ms; ` +
        `br1 (bridged): requested -> ended ${ms(br?.endedAt, br?.requestedAt)} ms; ` +
        `hang1: deadline -> destroyed ${ms(hung?.destroyedAt, hung?.deadlineAt)} ms, reached ${hung?.lines.at(-1) ?? '(no progress line)'}; ` +
        `stuck1: ${ms(stuck?.endedAt, stuck?.startedAt)} ms after its start`,
    );
  });
});
