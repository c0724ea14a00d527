/**
 * The Ganeti install image (appliance/install-image.sh, `metad appliance install-image`) and the
 * agent's DHCP rule that a helper VM depends on:
 *  - the image: an MBR with one bootable FAT16 partition at 1 MiB holding syslinux, the
 *    appliance's bzImage and initramfs, and `metad.nic=` on the kernel command line; the same
 *    build gives the same bytes; a NIC name that could reach the command line as something else
 *    is refused, and so is a build without the bzImage (the boot itself: ganeti-helper-vm.test.ts);
 *  - appliance/agent/udhcpc.sh, run by the appliance's own busybox udhcpc in a network namespace
 *    this test creates, against a real dnsmasq: a lease from another server (a DHCP server on
 *    another of the instance's networks, or a guest posing as one) is left unconfigured and not
 *    marked; a lease from metad's address is configured as a /32 with the route to it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isRoot, missingCommand, skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns, TRIP_TABLE } from '../support/netns.js';
import { applianceMissing, testAppliance } from '../support/appliance.js';
import { until } from '../support/wait.js';
import { applianceSourceDir, buildInstallImage } from '../../appliance/image.js';

const run = promisify(execFile);
const sha256 = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');

function imageMissing(): string | undefined {
  return (
    applianceMissing() ??
    missingCommand([
      ['sfdisk', 'fdisk'],
      ['mkfs.fat', 'dosfstools'],
      ['mcopy', 'mtools'],
      ['syslinux', 'syslinux'],
    ])
  );
}

test('the install image: a bootable FAT partition with syslinux, the kernel and the initramfs; reproducible; bad input refused', async (t) => {
  if (skipOrFail(t, imageMissing())) return;
  const img = await testAppliance();
  const dir = mkdtempSync(join(tmpdir(), 'metad-install-image-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const a = await buildInstallImage(img.dir, join(dir, 'a.img'));
  const b = await buildInstallImage(img.dir, join(dir, 'b.img'));
  const eth1 = await buildInstallImage(img.dir, join(dir, 'eth1.img'), 'eth1');

  await t.test('partition table, files and command line', async () => {
    const table = JSON.parse((await run('sfdisk', ['--json', a])).stdout) as {
      partitiontable: { label: string; partitions: { start: number; type: string; bootable?: boolean }[] };
    };
    assert.equal(table.partitiontable.label, 'dos');
    assert.deepEqual(
      table.partitiontable.partitions.map((p) => ({ start: p.start, type: p.type, bootable: p.bootable === true })),
      [{ start: 2048, type: 'e', bootable: true }],
    );
    assert.equal(readFileSync(a).subarray(510, 512).toString('hex'), '55aa', 'an MBR boot signature');
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    const names = (await run('mdir', ['-a', '-b', '-i', `${a}@@1M`, '::'], { env })).stdout;
    for (const f of ['LDLINUX.SYS', 'VMLINUZ', 'INITRD.CPIO', 'SYSLINUX.CFG'])
      assert.match(names.toUpperCase(), new RegExp(`::/${f.replace('.', '\\.')}\\b`));
    const copy = async (file: string, name: string): Promise<string> => {
      const out = join(dir, `${name}.out`);
      await run('mcopy', ['-n', '-i', `${file}@@1M`, `::${name}`, out], { env });
      return out;
    };
    assert.equal(sha256(await copy(a, 'vmlinuz')), sha256(img.vmlinuz), "the build's bzImage");
    assert.equal(sha256(await copy(a, 'initrd.cpio')), sha256(img.initrd), "the build's initramfs");
    const cfg = readFileSync(await copy(a, 'syslinux.cfg'), 'utf8');
    assert.match(cfg, /^SERIAL 0 115200$/m);
    assert.match(cfg, /^ {2}APPEND console=ttyS0 panic=-1 loglevel=4 cryptomgr\.notests metad\.nic=last$/m);
    assert.doesNotMatch(cfg, /metad\.ip=/, 'no static address: the agent asks DHCP');
    assert.match(readFileSync(await copy(eth1, 'syslinux.cfg'), 'utf8'), / metad\.nic=eth1$/m);
  });

  await t.test('the same build gives the same bytes', () => {
    assert.equal(sha256(a), sha256(b));
    assert.notEqual(sha256(a), sha256(eth1));
  });

  await t.test('a NIC name that is no interface name, or a build without the bzImage, is refused and writes nothing', async () => {
    for (const nic of ['eth1 metad.url=http://10.0.0.1', 'eth1\nAPPEND x', '../eth0', '', 'ETH0']) {
      const out = join(dir, 'bad.img');
      await assert.rejects(buildInstallImage(img.dir, out, nic), /bad NIC name/, JSON.stringify(nic));
      assert.ok(!existsSync(out));
    }
    const partial = join(dir, 'partial');
    await run('mkdir', [partial]);
    for (const f of ['initrd.cpio', 'manifest.json']) writeFileSync(join(partial, f), readFileSync(join(img.dir, f)));
    await assert.rejects(buildInstallImage(partial, join(dir, 'bad.img')), /vmlinuz is missing: rebuild the appliance/);
    assert.deepEqual(
      (await run('ls', ['-A', dir])).stdout.split('\n').filter((f) => f.startsWith('.install-image')),
      [],
      'no temporary file left',
    );
  });
});

test("the agent's DHCP script takes a lease only from metad's address (real busybox udhcpc and dnsmasq in a namespace)", async (t) => {
  const why = !isRoot()
    ? 'needs root (network namespace)'
    : (canUseNetns().why ??
      applianceMissing() ??
      missingCommand([
        ['dnsmasq', 'dnsmasq-base'],
        ['nft', 'nftables'],
      ]));
  if (skipOrFail(t, why)) return;
  const img = await testAppliance();
  const dir = mkdtempSync(join(tmpdir(), 'metad-udhcpc-'));
  const ns = await createNetns('metaddhcp');
  let dnsmasq: ChildProcess | undefined;
  t.after(async () => {
    dnsmasq?.kill('SIGKILL');
    await ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const must = async (cmd: string, args: string[]): Promise<string> => {
    const r = await ns.run(cmd, args);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // srv is the DHCP server's side, cli the guest's: a veth pair inside the namespace.
  await must('ip', ['link', 'add', 'srv', 'type', 'veth', 'peer', 'name', 'cli']);
  await must('ip', ['link', 'set', 'srv', 'up']);
  await must('ip', ['link', 'set', 'cli', 'up']);
  await must('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', '{ "srv", "cli" }', 'accept']);
  // Executable, as build.sh makes the agent's scripts in the appliance.
  const script = join(dir, 'udhcpc.sh');
  copyFileSync(join(applianceSourceDir(), 'agent', 'udhcpc.sh'), script);
  chmodSync(script, 0o755);

  /** dnsmasq serving `range` from `serverAddr` on srv; then the agent's udhcpc on cli. */
  const lease = async (serverCidr: string, range: string): Promise<{ ok: boolean; err: string; addrs: string; routes: string }> => {
    await must('ip', ['addr', 'flush', 'dev', 'srv']);
    await must('ip', ['addr', 'flush', 'dev', 'cli']);
    await must('ip', ['addr', 'add', serverCidr, 'dev', 'srv']);
    dnsmasq = ns.exec('dnsmasq', [
      '--keep-in-foreground',
      '--port=0',
      '--interface=srv',
      '--bind-interfaces',
      '--leasefile-ro',
      '--no-resolv',
      '--no-hosts',
      '--no-ping',
      `--dhcp-range=${range}`,
      `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    ]);
    // dnsmasq answers once it listens on the DHCP port (a loaded machine may take seconds).
    await until('dnsmasq listening', async () => (await ns.run('ss', ['-Hlun', 'sport = :67'])).stdout.trim() !== '');
    const marker = join(dir, 'dhcp.ok');
    rmSync(marker, { force: true });
    const r = await ns.run(img.busybox, ['udhcpc', '-i', 'cli', '-f', '-q', '-n', '-t', '5', '-T', '1', '-s', script], {
      env: { PATH: process.env['PATH'] ?? '', METAD_HOST: '169.254.169.254', DHCP_OK: marker },
      timeoutMs: 30_000,
    });
    dnsmasq.kill('SIGTERM');
    dnsmasq = undefined;
    assert.equal(r.code, 0, `udhcpc (exit ${String(r.code)}, timed out ${String(r.timedOut)}): ${r.stderr}`);
    return {
      ok: existsSync(marker),
      err: r.stderr,
      addrs: await must('ip', ['-4', '-o', 'addr', 'show', 'dev', 'cli']),
      routes: await must('ip', ['-4', 'route', 'show', 'dev', 'cli']),
    };
  };

  await t.test('a lease from another server is left alone and not marked', async () => {
    const r = await lease('10.77.0.1/24', '10.77.0.10,10.77.0.20,255.255.255.0,120s');
    assert.match(r.err, /ignoring a lease of 10\.77\.0\.\d+ from 10\.77\.0\.1 on cli: not 169\.254\.169\.254/);
    assert.equal(r.ok, false, 'marked');
    assert.equal(r.addrs.trim(), '', 'an address on the NIC');
    assert.equal(r.routes.trim(), '', 'a route on the NIC');
  });

  await t.test("a lease from metad's address is configured as a /32 with the route to metad", async () => {
    const r = await lease('169.254.169.254/16', '169.254.10.10,169.254.10.20,255.255.0.0,120s');
    assert.equal(r.ok, true, r.err);
    assert.match(r.addrs, /inet 169\.254\.10\.\d+\/32 /);
    assert.match(r.routes, /^169\.254\.169\.254 scope link/m);
  });
});
