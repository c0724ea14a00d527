/**
 * The real appliance under real libvirtd + QEMU (TCG here), end to end, inside a network
 * namespace this test creates and deletes: a private libvirtd (test/support/libvirtd.ts), a tap
 * standing in for the comm network (169.254.169.254/32 on it, a /32 route to the appliance),
 * and the real `metad serve` bound to 169.254.169.254:80 in the namespace with the appliance
 * registered as the instance. The agent must read the parameters, run the OS's `create` with
 * Ganeti's environment (the script writes that environment onto the instance's disk, read back
 * here), report every step through the pipe, and power off; afterwards no domain, overlay, tap or
 * process is left, and the tripwire saw nothing leave the namespace except through the tap.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns, netnsExists, TRIP_TABLE, type Netns } from '../support/netns.js';
import { applianceMissing, testAppliance } from '../support/appliance.js';
import { libvirtdMissing, netnsPids, startLibvirtd, type TestLibvirtd } from '../support/libvirtd.js';
import { request } from '../support/daemon.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { applianceCmdline, domainXml, QBOOT_ROM, QEMU_X86 } from '../../appliance/domain-xml.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const METADATA_IP = '169.254.169.254';
const GUEST_IP = '169.254.77.2';
const GUEST_MAC = '52:54:00:4d:77:02';

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

async function startMetad(ns: Netns, dir: string): Promise<{ child: ChildProcess; sock: string; out: () => string }> {
  const sock = join(dir, 'admin.sock');
  const cfg = join(dir, 'config.json');
  await writeFile(cfg, JSON.stringify({
    stateDir: join(dir, 'state'),
    admin: { socket: sock },
    guest: { listen: [{ host: METADATA_IP, port: 80 }], commRange: '169.254.0.0/16' },
    log: { level: 'info' },
  }));
  const child = ns.exec(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  for (let i = 0; i < 400 && child.exitCode === null; i++) {
    if (out.includes('metad started')) return { child, sock, out: () => out };
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  throw new Error(`metad did not start in the namespace: ${out}`);
}

function admin(sock: string, method: string, path: string, body?: unknown): ReturnType<typeof request> {
  const json = body === undefined ? undefined : JSON.stringify(body);
  return request({ socketPath: sock, method, path, headers: json === undefined ? {} : { 'content-type': 'application/json' } }, json);
}

test('the appliance boots under libvirt (TCG), runs create with the Ganeti environment, reports through the pipe, powers off, leaves nothing', async (t) => {
  const binding = await loadBinding().then(() => undefined, () => MISSING_BINDING);
  if (skipOrFail(t, canUseNetns().why ?? applianceMissing() ?? libvirtdMissing() ?? binding)) return;
  const img = await testAppliance();
  const dir = await mkdtemp(join(tmpdir(), 'metad-appliance-boot-'));
  const id = randomBytes(3).toString('hex');
  const tap = `mdt${id}`;
  const domain = `metadt-appl-${process.pid}-${id}`;
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const f of cleanups.splice(0).reverse()) await f().catch(() => undefined);
  };
  t.after(cleanup);

  const ns = await createNetns('metadta');
  cleanups.push(() => ns.destroy());
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // The stand-in comm link: a tap holding the metadata address, a host route to the guest. The
  // tripwire drops everything else that tries to leave the namespace.
  const ip = async (...args: string[]): Promise<void> => {
    const r = await ns.run('ip', args);
    assert.equal(r.code, 0, `ip ${args.join(' ')}: ${r.stderr}`);
  };
  await ip('tuntap', 'add', 'dev', tap, 'mode', 'tap');
  await ip('link', 'set', tap, 'up');
  await ip('addr', 'add', `${METADATA_IP}/32`, 'dev', tap);
  await ip('route', 'add', `${GUEST_IP}/32`, 'dev', tap);
  assert.equal((await ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', tap, 'accept'])).code, 0);

  let libvirtd: TestLibvirtd | undefined = await startLibvirtd(ns);
  cleanups.push(async () => libvirtd?.stop());
  const metad = await startMetad(ns, dir);
  cleanups.push(async () => {
    metad.child.kill('SIGKILL');
    await Promise.resolve();
  });

  // The instance: one raw disk, an OS definition whose untrusted/create records its environment.
  const disk = join(dir, 'disk0.raw');
  await writeFile(disk, Buffer.alloc(4 << 20));
  const osdir = join(dir, 'os-testos');
  await mkdir(join(osdir, 'untrusted'), { recursive: true });
  await writeFile(join(osdir, 'untrusted', 'create'), CREATE);
  const put = await admin(metad.sock, 'PUT', '/v1/instances/web1', {
    name: 'web1',
    uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c99',
    hostname: 'web1.example.org',
    comm: { mac: GUEST_MAC, ipv4: GUEST_IP, tap },
    os: { name: 'testos', definition: osdir, variant: 'default' },
    params: { public: { image: 'debian-12', 'mirror.url': 'http://deb.example/debian' }, private: { root_hash: "it's a value" } },
    hardware: { memoryMiB: 256, vcpus: 1, disks: [{ path: disk, format: 'raw', sizeGiB: 1 }] },
  });
  assert.ok(put.status === 201, `register: ${put.status} ${put.text}`);
  const sec = await admin(metad.sock, 'PUT', '/v1/instances/web1/params/secret', { values: { api_token: 'tok-S3cret' } });
  assert.equal(sec.status, 200, sec.text);

  // A disk-based appliance's per-run overlay over a read-only base: made, attached, deleted.
  const base = join(dir, 'base.qcow2');
  const overlay = join(dir, 'run-overlay.qcow2');
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', base, '16M']);
  await chmod(base, 0o444);
  const baseBefore = await readFile(base);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay]);
  cleanups.push(() => rm(overlay, { force: true }));

  const consoleLog = join(dir, 'console.log');
  const xml = domainXml({
    name: domain,
    type: 'qemu',
    memoryMiB: 256,
    vcpus: 1,
    kernel: img.kernel,
    initrd: img.initrd,
    cmdline: applianceCmdline({ ipv4: GUEST_IP, timeoutSec: 10 }),
    firmware: QBOOT_ROM,
    disks: [{ path: disk, format: 'raw' }],
    overlay,
    nic: { tap, mac: GUEST_MAC },
    consoleLog,
    emulator: QEMU_X86,
  });
  const hv = new LibvirtHypervisor(libvirtd.uri);
  cleanups.push(async () => {
    for (const n of await hv.list(domain)) await hv.destroy(n);
    await hv.close();
  });

  // Boot, then collect progress lines from the pipe until the VM is gone (hard limit: 180 s).
  const t0 = performance.now();
  await hv.createTransient(domain, xml);
  const tCreated = performance.now();
  let tFirstLine: number | undefined;
  let tGone: number | undefined;
  let pipe = '';
  while (performance.now() - t0 < 180_000) {
    const r = await admin(metad.sock, 'GET', '/v1/instances/web1/pipe?wait=1');
    assert.equal(r.status, 200);
    if (r.text !== '') {
      tFirstLine ??= performance.now();
      pipe += r.text;
    }
    if ((await hv.state(domain)) === 'gone') {
      tGone = performance.now();
      pipe += (await admin(metad.sock, 'GET', '/v1/instances/web1/pipe')).text;
      break;
    }
  }
  const consoleText = await readFile(consoleLog, 'utf8').catch(() => '');
  assert.ok(tGone !== undefined, `the appliance did not power off within 180 s; console:\n${consoleText.slice(-3000)}`);

  const lines = pipe.trim().split('\n');
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
    `pipe:\n${pipe}\nconsole:\n${consoleText.slice(-3000)}`,
  );
  assert.ok(lines[1]!.includes('instance=web1') && lines[1]!.includes('disks=1'), lines[1]);
  assert.ok(lines[2]!.endsWith('count=4'), lines[2]);
  assert.ok(!pipe.includes('tok-S3cret'), 'no parameter value in progress lines');

  // What the create script saw, written onto the instance's disk by the guest.
  const onDisk = (await readFile(disk)).toString('latin1');
  const start = onDisk.indexOf('METAD-TEST-BEGIN\n');
  const end = onDisk.indexOf('METAD-TEST-END\n');
  assert.ok(start === 0 && end > start, 'the create script wrote its report to DISK_0_PATH');
  const env = onDisk.slice(start + 'METAD-TEST-BEGIN\n'.length, end).trim().split('\n');
  assert.deepEqual(env, [
    'DISK_0_ACCESS=rw',
    'DISK_0_PATH=/dev/vda',
    'DISK_COUNT=1',
    'INSTANCE_BE_maxmem=256',
    'INSTANCE_BE_vcpus=1',
    'INSTANCE_HOSTNAME=web1.example.org',
    'INSTANCE_NAME=web1',
    'INSTANCE_OS=testos',
    'NIC_COUNT=0',
    'OSP_API_TOKEN=tok-S3cret',
    'OSP_IMAGE=debian-12',
    'OSP_MIRROR_URL=http://deb.example/debian',
    "OSP_ROOT_HASH=it's a value",
    'OS_API_VERSION=20',
    'OS_VARIANT=default',
  ]);

  // Nothing left: no domain, the overlay deleted (the base untouched), no tap, no process.
  assert.deepEqual(await hv.list('metadt-appl-'), []);
  await rm(overlay);
  assert.ok(!existsSync(overlay));
  assert.deepEqual(await readFile(base), baseBefore, 'the read-only base is unchanged');
  assert.equal((await stat(base)).mode & 0o222, 0);
  assert.equal(await ns.tripCount(), 0, `nothing left the namespace but through the tap: ${(await ns.tripDestinations()).join(', ')}`);
  await ip('link', 'del', tap);
  assert.notEqual((await ns.run('ip', ['link', 'show', tap])).code, 0, 'tap gone');
  await hv.close();
  metad.child.kill('SIGTERM');
  await new Promise((r) => (metad.child.exitCode !== null ? r(null) : metad.child.once('exit', r)));
  await libvirtd.stop();
  libvirtd = undefined;
  assert.deepEqual(await netnsPids(ns.name), [], 'no process left in the namespace');
  const nsName = ns.name;
  await ns.destroy();
  assert.ok(!netnsExists(nsName));

  const ms = (a: number, b: number): string => `${Math.round(b - a)} ms`;
  t.diagnostic(
    `createXML ${ms(t0, tCreated)}; create -> first progress line (right after the first metadata request) ${ms(t0, tFirstLine ?? t0)}; ` +
      `create -> powered off and gone ${ms(t0, tGone)}`,
  );
});
