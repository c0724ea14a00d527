/**
 * A helper VM in Ganeti's shape (lib/cmdlib/instance_create.py RunOsScriptsVirtualized and
 * lib/cmdlib/instance_helpervm.py RunWithHelperVM), with metad's appliance as the install image,
 * in a network namespace this test creates and deletes:
 *  - Ganeti's own code (test/support/ganeti_feed.py) builds the OS install package with
 *    backend.ExportOS and the master's GetOsInstallPackageEnvironment (OS_SCRIPT=create_untrusted,
 *    DISK_0_PATH=/dev/vdb), for an untrusted OS (Debian's ganeti-os-noop plus a create_untrusted:
 *    Ganeti boots a helper VM only for an OS that has one), and pushes the instance with
 *    `os-install-package` and a secret parameter through UpdateMetadata to metad (routed comm
 *    network, Ganeti feed on);
 *  - then, as RunWithHelperVM's instance start does: the tap Ganeti names (gnt.com.0), Ganeti's
 *    real kvm-ifup with metad's hook (test/support/ganeti-node.ts), and the VM under a private
 *    libvirtd + QEMU (TCG): the install image `metad appliance install-image` wrote, dumped onto
 *    the helper's own disk (vda) and booted by the BIOS and syslinux (no kernel given to QEMU, as
 *    for an instance whose kernel_path is empty), the instance's disk as vdb, and the instance's
 *    NICs: another network's first (no DHCP there), the comm NIC last on gnt.com.0;
 *  - the agent takes the last NIC as the comm NIC (the image's metad.nic=last) and never touches
 *    the other; it gets its address by DHCP, reads meta_data.json, claims the secret, fetches and
 *    unpacks the package, runs os/create_untrusted (which writes its environment onto
 *    DISK_0_PATH), reports through the pipe and powers off; the tap is deleted as Ganeti does.
 * Then: the run succeeded with every step on the pipe; the helper's disk still holds the image,
 * byte for byte; nothing came out of the other NIC; the script saw the package's environment
 * and the secret (its hash, never the value); the secret window is `claimed`; the tap going
 * stopped metad serving the instance there; the secret value is nowhere in metad's output, its
 * state directory, the pipe or the console.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRoot, missingCommand, skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns, TRIP_TABLE } from '../support/netns.js';
import { applianceCacheDir, applianceMissing, testAppliance } from '../support/appliance.js';
import { libvirtdMissing, startLibvirtd, type TestLibvirtd } from '../support/libvirtd.js';
import { METAD_CLI, pipePoller, startNsMetad } from '../support/ns-metad.js';
import { GANETI_SCRIPTS, NOOP_OS, ganetiFeed, ganetiMissing, nodeRoot } from '../support/ganeti.js';
import { ganetiNode } from '../support/ganeti-node.js';
import { until } from '../support/wait.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { domainXml, QEMU_X86, SEABIOS } from '../../appliance/domain-xml.js';
import { runAppliance } from '../../appliance/runner.js';
import { systemClock } from '../../daemon/clock.js';

const SECRET = `hk-${randomBytes(12).toString('hex')}`;
const TAP = 'gnt.com.0';
/** The instance's other NIC (first, as in Ganeti: `--communication` appends the comm NIC). */
const OTHER = { tap: 'hvm-other0', mac: '52:54:00:0b:00:01' };
const NAME = 'web1.example.com';
const UUID = '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e01';
const COMM = { mac: '52:54:00:0a:00:05', ip: '169.254.10.5' };
/** The comm network as `gnt-cluster modify --instance-communication-network ganeti-comm` creates it. */
const COMM_NETWORK = {
  name: 'ganeti-comm',
  uuid: '0c0a7e5e-1b2c-4d3e-8f40-5a6b7c8d9e00',
  network: '169.254.0.0/16',
  mac_prefix: '52:54:00',
};

/** The untrusted OS's create_untrusted: its environment (names, the secret's hash) onto DISK_0_PATH. */
const CREATE_UNTRUSTED = `#!/bin/sh
set -e
{
  echo METAD-TEST-BEGIN
  env | grep -E '^(OS_SCRIPT|DISK_[0-9]+_PATH|INSTANCE_NAME|HYPERVISOR|OSP_IMAGE|OSP_ROOT_PASSWORD)=' | sort
  echo "OSP_NAMES=$(env | sed -n 's/^\\(OSP_[A-Z0-9_]*\\)=.*/\\1/p' | sort | tr '\\n' ' ')"
  echo "SECRET_SHA256=$(printf '%s' "$OSP_SSH_HOST_KEY" | sha256sum | cut -d' ' -f1)"
  echo "CWD=$(pwd)"
  echo METAD-TEST-END
} >/tmp/report.txt
dd if=/tmp/report.txt of="$DISK_0_PATH" conv=fsync 2>/dev/null
echo "test create_untrusted: done"
`;

function instance(osparams: Record<string, string>): Record<string, unknown> {
  return {
    name: NAME,
    uuid: UUID,
    os: 'noop',
    hypervisor: 'kvm',
    beparams: { maxmem: 256, vcpus: 1 },
    osparams,
    osparams_private: { 'root-password': 'pr1v' },
    nics: [
      {
        name: `ganeti:communication:${NAME}`,
        mac: COMM.mac,
        ip: COMM.ip,
        nicparams: { mode: 'routed', link: 'communication_rt' },
        network: COMM_NETWORK.uuid,
        uuid: `${UUID.slice(0, -2)}a2`,
      },
    ],
    disks: [],
  };
}

/** Every file under `dir`, read whole (the state directory is small). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

test("a helper VM in Ganeti's shape: Ganeti's package and push, Ganeti's kvm-ifup with metad's hook, metad's appliance runs create_untrusted with the secret", async (t) => {
  const binding = await loadBinding().then(
    () => undefined,
    () => MISSING_BINDING,
  );
  const why = !isRoot()
    ? 'needs root (network and mount namespaces, libvirtd)'
    : (canUseNetns().why ??
      applianceMissing() ??
      libvirtdMissing() ??
      binding ??
      ganetiMissing() ??
      (existsSync(join(GANETI_SCRIPTS, 'kvm-ifup')) ? undefined : `Ganeti's kvm-ifup is not unpacked in ${GANETI_SCRIPTS}`) ??
      missingCommand([
        ['unshare', 'util-linux'],
        ['dnsmasq', 'dnsmasq-base'],
        ['syslinux', 'syslinux'],
        ['mcopy', 'mtools'],
        ['mkfs.fat', 'dosfstools'],
      ]));
  if (skipOrFail(t, why)) return;
  await testAppliance();
  const dir = mkdtempSync(join(tmpdir(), 'metad-helpervm-'));
  chmodSync(dir, 0o755); // dnsmasq reads its files there after dropping privileges
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });
  const ns = await createNetns('metadhvm');
  cleanups.push(() => ns.destroy());

  // The untrusted OS: Debian's ganeti-os-noop plus create_untrusted, where Ganeti's OS search path finds it.
  const osDir = join(dir, 'os', 'noop');
  mkdirSync(osDir, { recursive: true });
  for (const f of readdirSync(NOOP_OS)) copyFileSync(join(NOOP_OS, f), join(osDir, f));
  writeFileSync(join(osDir, 'create_untrusted'), CREATE_UNTRUSTED, { mode: 0o755 });

  const feed = nodeRoot(join(dir, 'ganeti'));
  const metad = await startNsMetad((c, a, o) => ns.exec(c, a, o), dir, {
    network: { mode: 'routed', runDir: join(dir, 'run') },
    ganeti: { socket: feed.metadSocket, pidFile: feed.metadPidFile },
  });
  cleanups.push(() => metad.stop());

  // RunOsScriptsVirtualized: the package (ExportOS, the master's helper environment), its path in
  // the public parameter os-install-package, then UpdateMetadata with the secret parameter.
  const [exported] = await ganetiFeed(feed, [
    {
      op: 'export-os',
      instance: instance({ image: 'debian-12' }),
      helper: { script: 'create_untrusted', disks: 1 },
      os_search_path: [join(dir, 'os')],
    },
  ]);
  const pkg = exported?.result;
  assert.equal(typeof pkg, 'string', JSON.stringify(exported));
  cleanups.push(() => rm(pkg as string, { force: true }));
  assert.ok(!readFileSync(pkg as string).includes(SECRET), 'the package never holds a secret');
  const [pushed] = await ganetiFeed(feed, [
    {
      op: 'update',
      instance: instance({ image: 'debian-12', 'os-install-package': pkg as string }),
      osparams_secret: { 'ssh-host-key': SECRET },
    },
  ]);
  assert.deepEqual(pushed, { warnings: [] });

  // RunWithHelperVM starts the instance: the comm tap Ganeti names, then kvm-ifup (with metad's hook).
  const node = ganetiNode(ns, dir, metad.socket);
  assert.equal(await node.tapname(), TAP);
  assert.equal((await ns.run('ip', ['tuntap', 'add', 'dev', TAP, 'mode', 'tap'])).code, 0);
  // The tripwire drops whatever leaves the namespace except through the tap.
  assert.equal((await ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', TAP, 'accept'])).code, 0);
  assert.deepEqual(await node.ifup(instance({}), 0, TAP, COMM_NETWORK), { ok: true });
  // The other NIC's tap: up, on no network, so that whatever the guest sends there is counted.
  assert.equal((await ns.run('ip', ['tuntap', 'add', 'dev', OTHER.tap, 'mode', 'tap'])).code, 0);
  // No IPv6 on it: the namespace itself would send router solicitations and MLD reports there.
  assert.equal((await ns.run('sysctl', ['-qw', `net.ipv6.conf.${OTHER.tap}.disable_ipv6=1`])).code, 0);
  assert.equal((await ns.run('ip', ['link', 'set', OTHER.tap, 'up'])).code, 0);

  // The install image, as an operator makes it for `gnt-cluster modify --install-image` (the
  // tests' appliance build is the current one of this cache), dumped onto the helper's own disk
  // (vda) as Ganeti's DumpImage does; the instance's disk is vdb.
  writeFileSync(join(dir, 'tool.json'), JSON.stringify({ appliance: { cacheDir: applianceCacheDir() } }));
  const image = join(dir, 'metad-install.img');
  const made = await promisify(execFile)(process.execPath, [
    METAD_CLI,
    'appliance',
    'install-image',
    '--out',
    image,
    '-c',
    join(dir, 'tool.json'),
  ]);
  assert.equal(made.stdout, `${image}\n`);
  const helperDisk = join(dir, 'helper-disk.raw');
  const instDisk = join(dir, 'web1-disk0.raw');
  copyFileSync(image, helperDisk);
  const imageHash = createHash('sha256').update(readFileSync(image)).digest('hex');
  writeFileSync(instDisk, Buffer.alloc(4 << 20));
  let libvirtd: TestLibvirtd | undefined = await startLibvirtd(ns);
  cleanups.push(async () => libvirtd?.stop());
  const hv = new LibvirtHypervisor(libvirtd.uri);
  const domain = `metadt-hvm-${String(process.pid)}-${randomBytes(3).toString('hex')}`;
  cleanups.push(async () => {
    for (const n of await hv.list(domain)) await hv.destroy(n);
    await hv.close();
  });
  const consoleLog = join(dir, 'console.log');
  const xml = domainXml({
    name: domain,
    type: 'qemu',
    memoryMiB: 256,
    vcpus: 1,
    // No kernel: the BIOS boots vda (the image's syslinux: metad.nic=last, no metad.ip, so DHCP).
    firmware: SEABIOS,
    disks: [
      { path: helperDisk, format: 'raw' },
      { path: instDisk, format: 'raw' },
    ],
    otherNics: [OTHER],
    nic: { tap: TAP, mac: COMM.mac },
    consoleLog,
    emulator: QEMU_X86,
  });
  const poller = pipePoller(metad, NAME, 300);
  cleanups.push(() => poller.stop());
  const rec = await runAppliance(
    { name: domain, xml, deadlineAt: Date.now() + 240_000 },
    {
      hv: poller.watching(hv),
      clock: systemClock,
      pollMs: 200,
      takeProgress: poller.take,
      // The VM stopped: Ganeti deletes its tap and calls nothing.
      cleanup: async () => {
        await ns.run('ip', ['link', 'del', TAP]);
      },
    },
  );
  await poller.stop();
  const pipe = poller.all();
  const console_ = existsSync(consoleLog) ? readFileSync(consoleLog, 'utf8') : '';

  await t.test('the helper VM ran create_untrusted from the package and reported every step through the pipe', () => {
    assert.equal(rec.state, 'succeeded', `${JSON.stringify(rec)}\nconsole:\n${console_.slice(-3000)}`);
    const lines = pipe.trim().split('\n');
    assert.deepEqual(
      lines.map((l) => l.split(' ').slice(0, 4).join(' ')),
      [
        'metad-progress v1 step=net status=ok',
        'metad-progress v1 step=metadata status=ok',
        'metad-progress v1 step=parameters status=ok',
        'metad-progress v1 step=package status=ok',
        'metad-progress v1 step=create status=start',
        'metad-progress v1 step=create status=ok',
        'metad-progress v1 step=final status=succeeded',
      ],
      `pipe:\n${pipe}\nconsole:\n${console_.slice(-3000)}`,
    );
    assert.ok(lines[0]!.includes('ip=dhcp'), lines[0]);
    assert.ok(lines[1]!.includes(`instance=${NAME}`), lines[1]);
    // image, os-install-package, root-password (private), ssh-host-key (secret)
    assert.ok(lines[2]!.endsWith('count=4'), lines[2]);
    // in the package's environment: image, root-password; from parameters.json: ssh-host-key
    assert.equal(lines[3], 'metad-progress v1 step=package status=ok script=create_untrusted osp=3');
  });

  await t.test("the script saw the package's environment and the secret; it wrote the instance's disk (vdb), not the helper's", () => {
    const onDisk = readFileSync(instDisk).toString('latin1');
    const end = onDisk.indexOf('METAD-TEST-END\n');
    assert.ok(onDisk.startsWith('METAD-TEST-BEGIN\n') && end > 0, `no report on the instance's disk\nconsole:\n${console_.slice(-3000)}`);
    assert.deepEqual(onDisk.slice('METAD-TEST-BEGIN\n'.length, end).trim().split('\n'), [
      // Ganeti's GetOsInstallPackageEnvironment: the instance's disks from vdb (vda is the helper's).
      'DISK_0_PATH=/dev/vdb',
      'HYPERVISOR=kvm',
      `INSTANCE_NAME=${NAME}`,
      'OSP_IMAGE=debian-12',
      'OSP_ROOT_PASSWORD=pr1v',
      'OS_SCRIPT=create_untrusted',
      'OSP_NAMES=OSP_IMAGE OSP_ROOT_PASSWORD OSP_SSH_HOST_KEY ',
      `SECRET_SHA256=${createHash('sha256').update(SECRET).digest('hex')}`,
      'CWD=/tmp/package/os',
    ]);
    assert.equal(
      createHash('sha256').update(readFileSync(helperDisk)).digest('hex'),
      imageHash,
      "the helper's own disk still holds the image",
    );
  });

  await t.test('the image booted through the BIOS and syslinux; the agent took the last NIC and sent nothing on the other', async (st) => {
    assert.match(console_, /SYSLINUX/);
    const created = rec.createdAt ?? rec.startedAt;
    st.diagnostic(
      `start -> domain created ${String(created - rec.startedAt)} ms, -> first progress line ${String((rec.firstReportAt ?? NaN) - created)} ms, -> ended ${String((rec.endedAt ?? NaN) - created)} ms`,
    );
    assert.match(console_, /metad-agent: \[[0-9.]+\] comm NIC: eth1, the last of 2/);
    const rx = (await ns.run('cat', [`/sys/class/net/${OTHER.tap}/statistics/rx_packets`])).stdout.trim();
    assert.equal(rx, '0', 'frames from the guest on the other NIC');
  });

  await t.test('the secret window is claimed; the tap going stopped metad serving the instance through it', async () => {
    const jobs = (await metad.admin('GET', '/v1/jobs')).json as { jobs: { kind?: string; instance: string; state: string }[] };
    assert.equal(jobs.jobs.find((j) => j.kind === 'ganeti-secrets' && j.instance === NAME)?.state, 'claimed');
    await until('the tap gone in the log', () =>
      metad
        .out()
        .split('\n')
        .some((l) => l.includes('"msg":"comm network: the device of a recorded tap went') && l.includes(`"tap":"${TAP}"`)),
    );
    await until('no rules for the instance, no device', async () => {
      const nics = (await metad.admin('GET', '/v1/nics')).json as { nics: { instance: string; tapExists: boolean; rules: boolean }[] };
      const mine = nics.nics.filter((n) => n.instance === NAME);
      return mine.length === 1 && !mine[0]!.tapExists && !mine[0]!.rules;
    });
  });

  await t.test('the secret value is nowhere: metad output, state directory, pipe, console', async () => {
    await metad.stop();
    assert.ok(!metad.out().includes(SECRET), 'in metad output');
    const files = filesUnder(join(dir, 'state'));
    assert.ok(files.length > 0);
    for (const f of files) assert.ok(!readFileSync(f).includes(SECRET), `in ${f}`);
    assert.ok(!pipe.includes(SECRET), 'in the pipe');
    assert.ok(!console_.includes(SECRET), 'on the console');
    assert.equal(await ns.tripCount(), 0, `nothing left the namespace but through the tap: ${(await ns.tripDestinations()).join(', ')}`);
    await hv.close();
    await libvirtd?.stop();
    libvirtd = undefined;
  });
});
