/** The appliance's libvirt domain XML (appliance/domain-xml.ts): golden text and refusals. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { applianceCmdline, diskTarget, domainXml, QBOOT_ROM, QEMU_X86, SEABIOS, type DomainSpec } from '../../appliance/domain-xml.js';

const golden = fileURLToPath(new URL('../../../test/fixtures/appliance/domain-full.xml', import.meta.url));

const spec: DomainSpec = {
  name: 'metad-inst-web1-1a2b3c',
  uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c14',
  type: 'qemu',
  memoryMiB: 256,
  vcpus: 2,
  kernel: '/var/cache/metad/appliance/6.1.0-57-amd64_x/vmlinux',
  initrd: '/var/cache/metad/appliance/6.1.0-57-amd64_x/initrd.cpio',
  cmdline: applianceCmdline({ ipv4: '169.254.10.7', timeoutSec: 5 }),
  firmware: QBOOT_ROM,
  disks: [
    { path: '/dev/xenvg/web1-disk0', format: 'raw' },
    { path: "/var/lib/metad/disks/web1 <&'data'>.qcow2", format: 'qcow2' },
  ],
  overlay: '/run/metad/jobs/web1/appliance.qcow2',
  nic: { tap: 'mdi1a2b3c', mac: '52:54:00:12:34:56' },
  consoleLog: '/run/metad/jobs/web1/console.log',
  emulator: QEMU_X86,
};

test('domain XML: golden (TCG, PVH kernel + qboot, disks vda.., overlay last, tap, console, destroy on every exit)', async () => {
  if (process.env['METAD_UPDATE_GOLDEN'] === '1') await writeFile(golden, domainXml(spec));
  assert.equal(domainXml(spec), await readFile(golden, 'utf8'), 'regenerate with METAD_UPDATE_GOLDEN=1 and review the diff');
});

test('domain XML: KVM uses the host CPU; no overlay means only the instance disks', () => {
  const xml = domainXml({ ...spec, type: 'kvm', overlay: undefined });
  assert.match(xml, /^<domain type='kvm'>/);
  assert.match(xml, /<cpu mode='host-passthrough'\/>/);
  assert.equal(xml.match(/<disk /g)?.length, 2);
  assert.doesNotMatch(xml, /appliance\.qcow2/);
});

test('domain XML: values are escaped, never spliced', () => {
  const xml = domainXml(spec);
  assert.ok(xml.includes('web1 &lt;&amp;&apos;data&apos;&gt;.qcow2'));
  assert.ok(!xml.includes("<&'data'>"));
});

test('domain XML: bad specs are refused', () => {
  const bad: Partial<DomainSpec>[] = [
    { name: 'a b' },
    { name: '' },
    { memoryMiB: 32 },
    { vcpus: 0 },
    { vcpus: 1.5 },
    { nic: { tap: 'a-very-long-tap-name', mac: '52:54:00:12:34:56' } },
    { nic: { tap: 'tap0', mac: 'nope' } },
    { kernel: 'relative/vmlinux' },
    { kernel: undefined },
    { kernel: undefined, initrd: undefined },
    { otherNics: [{ tap: 'tap 0', mac: '52:54:00:12:34:57' }] },
    { otherNics: [{ tap: 'tap0', mac: '52:54:00:12:34' }] },
    { disks: Array.from({ length: 26 }, () => ({ path: '/d', format: 'raw' as const })) },
  ];
  for (const b of bad) assert.throws(() => domainXml({ ...spec, ...b }), Error, JSON.stringify(b));
});

test("domain XML: without a kernel the first disk boots with the BIOS (Ganeti's helper VM); other NICs come before the comm NIC", () => {
  const xml = domainXml({
    ...spec,
    kernel: undefined,
    initrd: undefined,
    cmdline: undefined,
    firmware: SEABIOS,
    overlay: undefined,
    otherNics: [
      { tap: 'gnt.pub.0', mac: '52:54:00:AA:00:01' },
      { tap: 'gnt.pub.1', mac: '52:54:00:aa:00:02' },
    ],
  });
  assert.ok(xml.includes("    <boot dev='hd'/>\n"));
  assert.doesNotMatch(xml, /<kernel>|<initrd>|<cmdline>/);
  assert.ok(xml.includes(`<loader type='rom'>${SEABIOS}</loader>`));
  assert.deepEqual(
    [...xml.matchAll(/<target dev='([^']+)' managed='no'\/>/g)].map((m) => m[1]),
    ['gnt.pub.0', 'gnt.pub.1', 'mdi1a2b3c'],
  );
  assert.ok(xml.includes("<mac address='52:54:00:aa:00:01'/>"), 'MACs lower-cased');
  assert.doesNotMatch(domainXml(spec), /<boot /, 'a direct kernel boot names no boot device');
});

test('disk targets and the agent command line', () => {
  assert.equal(diskTarget(0), 'vda');
  assert.equal(diskTarget(25), 'vdz');
  assert.throws(() => diskTarget(26), RangeError);
  assert.equal(applianceCmdline({ ipv4: '169.254.0.9' }), 'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests metad.ip=169.254.0.9');
  assert.equal(
    applianceCmdline({ ipv4: '169.254.0.9', url: 'http://169.254.169.254', timeoutSec: 2.7, claimSec: 120 }),
    'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests metad.ip=169.254.0.9 metad.url=http://169.254.169.254 metad.timeout=2 metad.claim=120',
  );
  assert.match(applianceCmdline({ ipv4: '169.254.0.9', personalize: true }), / metad\.package=1$/);
  assert.doesNotMatch(applianceCmdline({ ipv4: '169.254.0.9', personalize: false }), /metad\.package/);
  assert.throws(() => applianceCmdline({ ipv4: '1.2.3.4 init=/bin/sh' }));
  assert.throws(() => applianceCmdline({ ipv4: '1.2.3.4', url: 'http://x y' }));
});

test('domain XML: shares are read-only 9p filesystems by tag; the command line says where the Debian root and each share are', () => {
  const spec: DomainSpec = {
    name: 'metad-install-s',
    type: 'qemu',
    memoryMiB: 256,
    vcpus: 1,
    kernel: '/k',
    initrd: '/i',
    cmdline: 'console=ttyS0',
    firmware: QBOOT_ROM,
    disks: [{ path: '/srv/d0.raw', format: 'raw' }],
    overlay: '/var/lib/metad/overlays/metad-install-s.qcow2',
    shares: [{ source: "/srv/it's", tag: 'share0' }],
    consoleLog: '/run/c.log',
    emulator: QEMU_X86,
  };
  const xml = domainXml(spec);
  assert.ok(
    xml.includes(
      "    <filesystem type='mount' accessmode='squash'>\n      <source dir='/srv/it&apos;s'/>\n      <target dir='share0'/>\n      <readonly/>\n    </filesystem>",
    ),
    xml,
  );
  assert.throws(() => domainXml({ ...spec, shares: [{ source: 'relative', tag: 'share0' }] }), /absolute/);
  assert.throws(() => domainXml({ ...spec, shares: [{ source: '/x', tag: 'Share 0' }] }), /share tag/);
  assert.equal(
    applianceCmdline({ ipv4: '169.254.1.2', root: 'vdb', shares: [{ tag: 'share0', target: '/var/cache/x' }] }),
    'console=ttyS0 panic=-1 loglevel=4 cryptomgr.notests metad.ip=169.254.1.2 metad.root=vdb metad.share=share0:/var/cache/x',
  );
  assert.throws(() => applianceCmdline({ ipv4: '169.254.1.2', root: 'sda' }), /root disk/);
  for (const target of ['/a/../b', '/a b', 'rel', '/./x', '/']) {
    assert.throws(() => applianceCmdline({ ipv4: '169.254.1.2', shares: [{ tag: 'share0', target }] }), /bad share/, target);
  }
});
