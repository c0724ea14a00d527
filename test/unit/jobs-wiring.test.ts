/**
 * The production preparation of install runs (daemon/jobs/wiring.ts, prepare.ts, virt-type.ts)
 * in the real daemon graph with the fakes: FakeCommNetwork (taps and reconciles recorded),
 * FakeHypervisor, FakeClock, an image directory of empty files. Pure parts (names, spec) alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { sampleInstance } from '../support/daemon.js';
import { createDaemon, type Daemon } from '../../daemon/daemon.js';
import { buildConfig, type Config } from '../../daemon/config/config.js';
import { DaemonError } from '../../daemon/errors.js';
import { tapNameProblem } from '../../daemon/net.js';
import { applianceTap, imageDirOf, metadataUrl, runNames, runSpec } from '../../daemon/jobs/prepare.js';
import { SEABIOS } from '../../appliance/domain-xml.js';
import { kvmWorks, virtTypeChooser } from '../../daemon/jobs/virt-type.js';
import { debianRootOf, parseVariant, resolveShares, VARIANT_FILE, variantOf } from '../../daemon/jobs/variant.js';
import { ProductionAppliance, type WiringDeps } from '../../daemon/jobs/wiring.js';
import { appliancePreflight, installAvailability } from '../../daemon/jobs/preflight.js';
import { loadBinding } from '../../appliance/libvirt.js';
import { DiskRefused, lvmDmName, resolveDisk, type DiskFs } from '../../daemon/jobs/disks.js';
import { skipOrFail } from '../support/env.js';
import type { PublicDoc } from '../../daemon/registry/model.js';
import { until } from '../support/wait.js';

/** Until the job's domain runs (prepare does real file I/O: more than a few turns of the loop). */
async function created(hv: FakeHypervisor): Promise<void> {
  await until('the domain runs', () => hv.running().length > 0);
  assert.equal(hv.running().length, 1);
}

function routedConfig(
  dir: string,
  appliance: Record<string, unknown> = {},
  network: Record<string, unknown> = { mode: 'routed' },
  storage: Record<string, unknown> = { fileRoots: [join(dir, 'disks')] },
): Readonly<Config> {
  return buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: '169.254.169.254', port: 0 }], commRange: '169.254.0.0/16' },
    network,
    storage,
    appliance: { imageDir: join(dir, 'img'), runDir: join(dir, 'run'), overlayDir: join(dir, 'ovl'), virtType: 'qemu', ...appliance },
  });
}

function fakeImage(dir: string): void {
  mkdirSync(join(dir, 'img'), { recursive: true });
  for (const f of ['vmlinux', 'initrd.cpio']) writeFileSync(join(dir, 'img', f), '');
  writeFileSync(join(dir, 'img', 'manifest.json'), '{"stamp":"test"}');
}

interface H {
  dir: string;
  d: Daemon;
  net: FakeCommNetwork;
  hv: FakeHypervisor;
  clock: FakeClock;
  disk: string;
  logs: () => string;
}

async function withDaemon(
  fn: (h: H) => Promise<void>,
  opts: {
    appliance?: Record<string, unknown>;
    network?: Record<string, unknown>;
    image?: boolean;
    hv?: FakeHypervisor;
    storage?: Record<string, unknown>;
    /** Leftovers of an earlier process, made before the daemon starts. */
    before?: (dir: string, net: FakeCommNetwork) => void;
  } = {},
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-wiring-'));
  if (opts.image !== false) fakeImage(dir);
  mkdirSync(join(dir, 'disks'));
  const disk = join(dir, 'disks', 'disk0.raw');
  writeFileSync(disk, '');
  const net = new FakeCommNetwork();
  const hv = opts.hv ?? new FakeHypervisor();
  const clock = new FakeClock(1_000_000);
  const { sink, log } = sinkLogger();
  const config = routedConfig(dir, opts.appliance, opts.network, opts.storage ?? { fileRoots: [join(dir, 'disks')] });
  opts.before?.(dir, net);
  const d = await createDaemon(config, {
    log,
    clock,
    hypervisor: () => Promise.resolve(hv),
    ...(config.network.mode === 'routed' ? { commNetwork: net } : {}),
  });
  await d.services.store.put(
    sampleInstance(1, {
      comm: { mac: '52:54:00:00:00:01', ipv4: '169.254.10.2', tap: 'vmtap1' },
      hardware: { memoryMiB: 512, vcpus: 2, disks: [{ path: disk, format: 'raw' }] },
    }) as never,
    true,
  );
  try {
    await fn({ dir, d, net, hv, clock, disk, logs: () => sink.text });
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The production wiring over the daemon's store and comm controller, with `config`. */
function wiringOf(h: H, config: Readonly<Config>, extra: Partial<WiringDeps> = {}): ProductionAppliance {
  const { store, comm } = h.d.services;
  return new ProductionAppliance({
    config,
    store,
    comm,
    hypervisor: () => Promise.resolve(h.hv),
    clock: h.clock,
    log: sinkLogger().log,
    ...extra,
  });
}

const doc = (extra: Record<string, unknown> = {}): PublicDoc =>
  sampleInstance(1, { comm: { mac: '52:54:00:AA:00:01', ipv4: '169.254.10.2', tap: 'vmtap1' }, ...extra }) as unknown as PublicDoc;

test('names: the appliance tap is derived from the domain (stable, 15 characters, a valid tap name); files by domain', () => {
  const a = applianceTap('metad-install-abc-123456');
  assert.equal(a, applianceTap('metad-install-abc-123456'));
  assert.notEqual(a, applianceTap('metad-install-abc-123457'));
  assert.match(a, /^mdi[0-9a-f]{12}$/);
  assert.equal(tapNameProblem(a), undefined);
  assert.deepEqual(runNames('metad-install-x', { runDir: '/run/metad/jobs', overlayDir: '/var/lib/o' }), {
    tap: applianceTap('metad-install-x'),
    consoleLog: '/run/metad/jobs/metad-install-x.console.log',
    overlay: '/var/lib/o/metad-install-x.qcow2',
  });
  assert.equal(imageDirOf({ cacheDir: '/c', imageDir: undefined }), '/c/current');
  assert.equal(imageDirOf({ cacheDir: '/c', imageDir: '/i' }), '/i');
  assert.equal(metadataUrl([{ host: '169.254.169.254', port: 80 }]), undefined);
  assert.equal(
    metadataUrl([
      { host: '127.0.0.1', port: 81 },
      { host: '169.254.169.254', port: 8080 },
    ]),
    'http://169.254.169.254:8080',
  );
});

test('spec: memory, vCPUs and disks from the instance, defaults from config; overlay only with a base disk', () => {
  const a = routedConfig('/tmp/x').appliance;
  const names = runNames('metad-install-x', a);
  const image = { kernel: '/i/vmlinux', initrd: '/i/initrd.cpio' };
  const withHw = runSpec({
    domain: 'metad-install-x',
    doc: doc({ hardware: { memoryMiB: 1024, vcpus: 100, disks: [{ path: '/dev/vg/d0' }, { path: '/srv/d1.qcow2', format: 'qcow2' }] } }),
    image,
    type: 'qemu',
    names,
    appliance: a,
  });
  assert.equal(withHw.memoryMiB, 1024);
  assert.equal(withHw.vcpus, 64, 'capped at 64');
  assert.deepEqual(withHw.disks, [
    { path: '/dev/vg/d0', format: 'raw' },
    { path: '/srv/d1.qcow2', format: 'qcow2' },
  ]);
  assert.deepEqual(withHw.nic, { tap: names.tap, mac: '52:54:00:aa:00:01' });
  assert.match(withHw.cmdline ?? '', /metad\.ip=169\.254\.10\.2 /);
  assert.match(withHw.cmdline ?? '', / metad\.timeout=10 /);
  assert.match(withHw.cmdline ?? '', / metad\.claim=300$/, 'the claim deadline (appliance.claimDeadlineMs): how long the agent retries');
  assert.equal(withHw.overlay, undefined);
  assert.equal(withHw.consoleLog, names.consoleLog);

  const bare = runSpec({
    domain: 'metad-install-x',
    doc: doc({ hardware: { memoryMiB: 32 } }),
    image,
    type: 'kvm',
    names,
    appliance: { ...a, baseDisk: '/b.qcow2', claimDeadlineMs: 90_500 },
    url: 'http://169.254.169.254:8080',
  });
  assert.match(bare.cmdline ?? '', / metad\.claim=91$/, 'rounded up: the agent never gives up before the job does');
  assert.equal(bare.memoryMiB, 256, 'never less than the appliance needs');
  assert.equal(bare.vcpus, 1);
  assert.deepEqual(bare.disks, []);
  assert.equal(bare.overlay, names.overlay);
  assert.match(bare.cmdline ?? '', /metad\.url=http:\/\/169\.254\.169\.254:8080/);

  // self_install: the instance's own first disk, booted by SeaBIOS; no appliance kernel, command line or overlay.
  const self = runSpec({
    domain: 'metad-install-x',
    doc: doc({ install: { mode: 'self_install' }, hardware: { disks: [{ path: '/srv/media.raw' }] } }),
    image,
    type: 'qemu',
    names,
    appliance: { ...a, baseDisk: '/b.qcow2' },
  });
  assert.equal(self.kernel, undefined);
  assert.equal(self.cmdline, undefined);
  assert.equal(self.overlay, undefined);
  assert.equal(self.firmware, SEABIOS);
  assert.deepEqual(self.disks, [{ path: '/srv/media.raw', format: 'raw' }]);
  assert.deepEqual(self.nic, { tap: names.tap, mac: '52:54:00:aa:00:01' });
});

test('spec: the Debian variant boots its root through the overlay after the instance disks, told where it is and where each share goes', () => {
  const a = routedConfig('/tmp/x').appliance;
  const names = runNames('metad-install-x', a);
  const spec = runSpec({
    domain: 'metad-install-x',
    doc: doc({ hardware: { disks: [{ path: '/srv/d0.raw' }, { path: '/srv/d1.raw' }] } }),
    image: { kernel: '/i/vmlinux', initrd: '/i/initrd.cpio' },
    type: 'qemu',
    names,
    appliance: a,
    debian: {
      shares: [
        { source: '/var/cache/ganeti-instance-debootstrap', target: '/var/cache/ganeti-instance-debootstrap' },
        { source: '/srv/conf', target: '/etc/ganeti/instance-debootstrap' },
      ],
    },
  });
  assert.equal(spec.overlay, names.overlay, 'the root disk is a per-run overlay, with or without baseDisk');
  assert.match(spec.cmdline ?? '', / metad\.root=vdc /, 'after the two instance disks');
  assert.match(
    spec.cmdline ?? '',
    / metad\.share=share0:\/var\/cache\/ganeti-instance-debootstrap metad\.share=share1:\/etc\/ganeti\/instance-debootstrap$/,
  );
  assert.deepEqual(spec.shares, [
    { source: '/var/cache/ganeti-instance-debootstrap', tag: 'share0' },
    { source: '/srv/conf', tag: 'share1' },
  ]);
});

test('variant: the definition’s metad_appliance names it, else the config; anything else is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-variant-'));
  try {
    const os = join(dir, 'os');
    for (const n of ['plain', 'deb', 'typo', 'two', 'escape', 'fifo']) mkdirSync(join(os, n), { recursive: true });
    writeFileSync(join(os, 'deb', VARIANT_FILE), '# the Debian userland\ndebian\n');
    writeFileSync(join(os, 'typo', VARIANT_FILE), 'Debian\n');
    writeFileSync(join(os, 'two', VARIANT_FILE), 'busybox\ndebian\n');
    writeFileSync(join(dir, 'outside'), 'debian\n');
    symlinkSync(join(dir, 'outside'), join(os, 'escape', VARIANT_FILE));
    execFileSync('mkfifo', [join(os, 'fifo', VARIANT_FILE)]);
    assert.equal(await variantOf([os], 'plain', 'busybox'), 'busybox');
    assert.equal(await variantOf([os], 'plain+v1', 'debian'), 'debian');
    assert.equal(await variantOf([os], 'deb+v1', 'busybox'), 'debian');
    assert.equal(await variantOf([os], 'missing', 'busybox'), 'busybox');
    assert.equal(await variantOf([os], undefined, 'busybox'), 'busybox');
    assert.equal(await variantOf([os], 'escape', 'busybox'), 'busybox', 'a symlink out of the definition is never read');
    for (const n of ['typo', 'two', 'fifo']) {
      await assert.rejects(
        variantOf([os], n, 'busybox'),
        (e: unknown) => e instanceof DaemonError && e.message.startsWith(`OS definition ${n}: ${VARIANT_FILE} `),
        n,
      );
    }
    assert.equal(parseVariant('busybox', 'x'), 'busybox');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('shares: resolved to real directories when the run is prepared; anything else stops the run with the key named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-shares-'));
  try {
    mkdirSync(join(dir, 'real'), { mode: 0o755 });
    mkdirSync(join(dir, 'open'));
    chmodSync(join(dir, 'open'), 0o1777);
    mkdirSync(join(dir, 'group'));
    chmodSync(join(dir, 'group'), 0o775);
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    writeFileSync(join(dir, 'file'), '');
    assert.deepEqual(await resolveShares([{ source: join(dir, 'link'), target: '/var/cache/x' }]), [
      { source: join(dir, 'real'), target: '/var/cache/x' },
    ]);
    for (const bad of [join(dir, 'file'), join(dir, 'missing'), join(dir, 'open'), join(dir, 'group')]) {
      await assert.rejects(
        resolveShares([
          { source: join(dir, 'real'), target: '/a' },
          { source: bad, target: '/b' },
        ]),
        (e: unknown) => e instanceof DaemonError && e.message.startsWith('/appliance/shares/1: '),
      );
    }
    assert.equal(debianRootOf({ cacheDir: '/var/cache/metad/appliance' }), '/var/cache/metad/appliance/current-debian/root.qcow2');
    assert.equal(debianRootOf({ cacheDir: '/c', debianRoot: '/srv/root.qcow2' }), '/srv/root.qcow2');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a run: the appliance tap is created and stands in for the instance NIC (registered tap untouched); the end removes tap, rules and console log', async () => {
  await withDaemon(async (h) => {
    const jobs = h.d.services.jobs;
    const rec = await jobs.start('vm1');
    await created(h.hv);
    const tap = applianceTap(rec.domain);
    assert.ok(h.net.links.has(tap), 'tap created');
    assert.deepEqual(
      h.net.nics.map((n) => [n.instance, n.tap, n.ipv4, n.mac]),
      [['vm1', tap, '169.254.10.2', '52:54:00:00:00:01']],
    );
    assert.equal(h.d.services.store.mustGet('vm1').doc.comm.tap, 'vmtap1', "the instance's own tap stays registered");
    const create = h.hv.calls.find((c) => c.op === 'createTransient');
    assert.ok(create?.op === 'createTransient');
    for (const piece of [
      `<domain type='qemu'>`,
      `<memory unit='MiB'>512</memory>`,
      `<vcpu>2</vcpu>`,
      `<source file='${h.disk}'/>`,
      `<target dev='${tap}' managed='no'/>`,
      `<mac address='52:54:00:00:00:01'/>`,
      `<source path='${join(h.dir, 'run', `${rec.domain}.console.log`)}'/>`,
      `<kernel>${join(h.dir, 'img', 'vmlinux')}</kernel>`,
    ])
      assert.ok(create.xml.includes(piece), piece);
    writeFileSync(join(h.dir, 'run', `${rec.domain}.console.log`), 'console');
    (await h.d.services.comm?.list())?.forEach((n) => assert.equal(n.tap, tap));

    h.hv.powerOff(rec.domain);
    await h.clock.advance(1000);
    await jobs.settled('vm1');
    assert.equal(jobs.status('vm1')?.outcome, 'failed');
    assert.ok(jobs.status('vm1')?.destroyedAt !== undefined);
    assert.ok(!h.net.links.has(tap), 'tap deleted');
    assert.deepEqual(
      h.net.nics.map((n) => n.tap),
      ['vmtap1'],
      'the instance has its registered NIC again',
    );
    assert.ok(!existsSync(join(h.dir, 'run', `${rec.domain}.console.log`)), 'console log deleted');
  });
});

test("refused at the request: the instance's own tap exists (409), no image (503), a missing disk (409); nothing recorded", async () => {
  await withDaemon(async (h) => {
    const jobs = h.d.services.jobs;
    h.net.links.add('vmtap1');
    await assert.rejects(
      jobs.start('vm1'),
      (e: unknown) => e instanceof DaemonError && e.code === 'Conflict' && /own comm tap exists/.test(e.message),
    );
    h.net.links.delete('vmtap1');
    rmSync(h.disk);
    await assert.rejects(
      jobs.start('vm1'),
      (e: unknown) => e instanceof DaemonError && e.code === 'Conflict' && e.details[0]?.path === '/hardware/disks/0/path',
    );
    assert.equal(jobs.status('vm1'), undefined);
    assert.equal(h.hv.calls.filter((c) => c.op === 'createTransient').length, 0);
  });
  await withDaemon(
    async (h) => {
      await assert.rejects(
        h.d.services.jobs.start('vm1'),
        (e: unknown) => e instanceof DaemonError && e.code === 'Unavailable' && e.message.includes('/appliance/imageDir'),
      );
    },
    { image: false },
  );
});

test('without a comm network (mode off) an install is refused naming /network/mode', async () => {
  await withDaemon(
    async (h) => {
      await assert.rejects(
        h.d.services.jobs.start('vm1'),
        (e: unknown) =>
          e instanceof DaemonError && e.code === 'Unavailable' && e.message.includes('set /network/mode to routed or bridged'),
      );
      assert.equal(h.d.services.jobs.status('vm1'), undefined);
    },
    { network: { mode: 'off' } },
  );
});

test('installs off (appliance.enabled false): an install is refused naming /appliance/enabled; nothing is created', async () => {
  await withDaemon(
    async (h) => {
      await assert.rejects(
        h.d.services.jobs.start('vm1'),
        (e: unknown) => e instanceof DaemonError && e.code === 'Unavailable' && e.message.includes('/appliance/enabled is false'),
      );
      assert.equal(h.d.services.jobs.status('vm1'), undefined);
      assert.deepEqual(await h.d.services.installs?.(), {
        available: false,
        reason: 'installs are off on this host (/appliance/enabled is false)',
      });
    },
    { appliance: { enabled: false } },
  );
});

test('release after a restart removes the leftovers found by name: tap, rules, console log, overlay', async () => {
  await withDaemon(async (h) => {
    const cfg = h.d.services.config;
    const w = wiringOf(h, cfg);
    const domain = 'metad-install-old-abcdef';
    const names = runNames(domain, cfg.appliance);
    await h.net.createTap(names.tap);
    await h.d.services.comm?.useJobTap('vm1', names.tap);
    assert.deepEqual(
      h.net.nics.map((n) => n.tap),
      [names.tap],
    );
    mkdirSync(cfg.appliance.runDir, { recursive: true });
    mkdirSync(cfg.appliance.overlayDir, { recursive: true });
    writeFileSync(names.consoleLog, 'x');
    writeFileSync(names.overlay, 'x');
    await w.release('vm1', domain);
    assert.ok(!h.net.links.has(names.tap));
    assert.deepEqual(
      h.net.nics.map((n) => n.tap),
      ['vmtap1'],
    );
    assert.ok(!existsSync(names.consoleLog) && !existsSync(names.overlay));
    await w.release('vm1', domain); // idempotent
  });
});

test('a disk-based appliance gets a per-run overlay over the base, deleted when the run ends', async () => {
  await withDaemon(async (h) => {
    const cfg = buildConfig({
      ...JSON.parse(JSON.stringify(h.d.services.config)),
      appliance: { ...h.d.services.config.appliance, baseDisk: join(h.dir, 'base.qcow2') },
    });
    const made: string[][] = [];
    const w = wiringOf(h, cfg, {
      makeOverlay: (base, path) => {
        made.push([base, path]);
        writeFileSync(path, 'overlay');
        return Promise.resolve();
      },
    });
    const domain = 'metad-install-disk-abcdef';
    const names = runNames(domain, cfg.appliance);
    const p = await w.prepare('vm1', domain, []);
    assert.deepEqual(made, [[join(h.dir, 'base.qcow2'), names.overlay]]);
    assert.ok(p.xml.includes(`<source file='${names.overlay}'/>`) && p.xml.includes(`<target dev='vdb' bus='virtio'/>`));
    assert.ok(existsSync(names.overlay));
    await p.cleanup();
    assert.ok(!existsSync(names.overlay) && !h.net.links.has(names.tap));
  });
});

test('virtType auto: one KVM trial per daemon life; a KVM that fails to start means TCG', async () => {
  const hv = new FakeHypervisor();
  const real = hv.createTransient.bind(hv);
  let trials = 0;
  hv.createTransient = (name, xml) => {
    if (xml.includes(`<domain type='kvm'>`)) {
      trials++;
      return Promise.reject(new Error('internal error: qemu unexpectedly closed the monitor: failed to set MSR 0x10a'));
    }
    return real(name, xml);
  };
  await withDaemon(
    async (h) => {
      const jobs = h.d.services.jobs;
      for (let i = 0; i < 2; i++) {
        const rec = await jobs.start('vm1');
        await created(h.hv);
        const create = h.hv.calls.filter((c) => c.op === 'createTransient').at(-1);
        assert.ok(create?.op === 'createTransient' && create.xml.startsWith(`<domain type='qemu'>`));
        h.hv.powerOff(rec.domain);
        await h.clock.advance(1000);
        await jobs.settled('vm1');
      }
      assert.equal(trials, 1);
      assert.match(h.logs(), /"virtType":"qemu"/);
    },
    { appliance: { virtType: 'auto' }, hv },
  );
});

test('kvmWorks: the kernel banner on the console means KVM runs; a domain that vanishes does not; no domain or file left', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-kvmtrial-'));
  try {
    for (const banner of [true, false]) {
      const hv = new FakeHypervisor();
      const real = hv.createTransient.bind(hv);
      hv.createTransient = async (name, xml) => {
        await real(name, xml);
        const log = /<source path='([^']+)'\/>/.exec(xml)?.[1] ?? '';
        if (banner) writeFileSync(log, '[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org)\n');
        else hv.powerOff(name);
      };
      const ok = await kvmWorks({
        hv,
        clock: new FakeClock(),
        image: { kernel: '/k', initrd: '/i' },
        runDir: dir,
        firmware: '/f',
        emulator: '/e',
      });
      assert.equal(ok, banner);
      assert.deepEqual(hv.running(), []);
      assert.ok(hv.calls.some((c) => c.op === 'createTransient' && c.xml.includes(`<domain type='kvm'>`) && !c.xml.includes('<interface')));
    }
    const chooser = virtTypeChooser('kvm', () => Promise.reject(new Error('not called')), sinkLogger().log);
    assert.equal(await chooser(), 'kvm');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('check-config: with network routed, a missing image, QEMU or firmware is named with its key and package', () => {
  const cfg = routedConfig('/nonexistent', { baseDisk: '/nonexistent/base.qcow2' });
  const none = { readable: () => false, executable: () => false };
  const w = appliancePreflight(cfg, none);
  assert.equal(w.length, 5);
  assert.match(w[0] ?? '', /^\/appliance\/imageDir: .*metad appliance build/);
  assert.match(w[1] ?? '', /^\/appliance\/emulator: .*qemu-system-x86$/);
  assert.match(w[2] ?? '', /^\/appliance\/firmware: .*qemu-system-data$/);
  assert.match(w[3] ?? '', /^\/appliance\/baseDisk: /);
  assert.match(w[4] ?? '', /^\/appliance\/qemuImgPath: .*qemu-utils$/);
  assert.deepEqual(appliancePreflight(cfg, { readable: () => true, executable: () => true }), []);
  assert.match(w[0] ?? '', /on a host that never installs, set \/appliance\/enabled to false/);
  assert.deepEqual(
    appliancePreflight(routedConfig('/x', {}, { mode: 'off' }), none),
    [],
    'installs need routed: nothing to check otherwise',
  );
  // The Debian variant as the default: its root, qemu-img and each share.
  const deb = appliancePreflight(
    routedConfig('/nonexistent', { variant: 'debian', cacheDir: '/c', shares: [{ source: '/srv/cache', target: '/var/cache/x' }] }),
    { readable: (p) => !p.startsWith('/c/') && p !== '/srv/cache', executable: () => false },
  );
  assert.deepEqual(deb.slice(-3), [
    '/appliance/debianRoot: no readable Debian appliance root at /c/current-debian/root.qcow2: run `metad appliance build --variant debian` (or set /appliance/debianRoot)',
    '/appliance/qemuImgPath: /usr/bin/qemu-img is not executable: install the Debian package qemu-utils',
    '/appliance/shares/0: /srv/cache is not a readable directory',
  ]);
});

test('a Debian run: the overlay over the Debian root, the shares resolved into the XML, the agent told where; no root disk: refused with the command to run', async () => {
  await withDaemon(async (h) => {
    const root = join(h.dir, 'debian-root.qcow2');
    const share = join(h.dir, 'share');
    mkdirSync(share);
    chmodSync(share, 0o755);
    const cfgOf = (debianRoot: string): Config =>
      buildConfig({
        ...JSON.parse(JSON.stringify(h.d.services.config)),
        appliance: { ...h.d.services.config.appliance, variant: 'debian', debianRoot, shares: [{ source: share, target: '/var/cache/x' }] },
      });
    const made: string[][] = [];
    const overlay = {
      makeOverlay: (base: string, path: string) => {
        made.push([base, path]);
        writeFileSync(path, 'overlay');
        return Promise.resolve();
      },
    };
    const domain = 'metad-install-deb-abcdef';
    await assert.rejects(
      wiringOf(h, cfgOf(root), overlay).prepare('vm1', domain, []),
      (e: unknown) => e instanceof DaemonError && /run `metad appliance build --variant debian`/.test(e.message),
    );
    assert.deepEqual(made, [], 'nothing made for a run that cannot start');
    writeFileSync(root, 'base');
    const cfg = cfgOf(root);
    const p = await wiringOf(h, cfg, overlay).prepare('vm1', domain, []);
    const names = runNames(domain, cfg.appliance);
    assert.deepEqual(made, [[root, names.overlay]]);
    assert.ok(p.xml.includes(`<source dir='${share}'/>`) && p.xml.includes('<readonly/>'), p.xml);
    assert.match(p.xml, / metad\.root=vdb metad\.share=share0:\/var\/cache\/x</);
    await p.cleanup();
    assert.ok(!existsSync(names.overlay));
  });
});

test('check-config on a host that never installs (appliance.enabled false): no word about the image, QEMU or firmware', () => {
  const none = { readable: () => false, executable: () => false };
  const off = routedConfig('/nonexistent', { enabled: false, baseDisk: '/nonexistent/base.qcow2' });
  assert.equal(off.appliance.enabled, false);
  assert.deepEqual(appliancePreflight(off, none), []);
  // The default is a host that installs: the same config without the key is checked.
  const on = routedConfig('/nonexistent', { baseDisk: '/nonexistent/base.qcow2' });
  assert.equal(on.appliance.enabled, true);
  assert.equal(appliancePreflight(on, none).length, 5);
});

test('restart: a running appliance is adopted, its tap gets the instance identity back, and its end releases the tap', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-wiring-adopt-'));
  fakeImage(dir);
  const hv = new FakeHypervisor();
  const start = async (net: FakeCommNetwork, clock: FakeClock, at = dir): Promise<Daemon> =>
    createDaemon(routedConfig(at), { log: sinkLogger().log, clock, hypervisor: () => Promise.resolve(hv), commNetwork: net });
  try {
    const net1 = new FakeCommNetwork();
    const d1 = await start(net1, new FakeClock(1_000_000));
    await d1.services.store.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '169.254.10.2' } }) as never, true);
    const rec = await d1.services.jobs.start('vm1');
    await created(hv);
    const tap = applianceTap(rec.domain);
    assert.ok((d1.services.jobs.status('vm1')?.preparedAt ?? '') <= (d1.services.jobs.status('vm1')?.createdAt ?? ''));
    const onDisk = (): string =>
      existsSync(join(dir, 'state', 'jobs', 'vm1.json')) ? readFileSync(join(dir, 'state', 'jobs', 'vm1.json'), 'utf8') : '';
    await until('the record on disk says created', () => onDisk().includes('"createdAt"'));
    // The first daemon dies (kill -9: nothing of it runs on); its tap, domain and record stay.
    // d1 still holds its state dir's lock in this process, so the "restarted" daemon gets a copy
    // of the state dir as it was (the lock is on d1's open file, not on the copied file).
    const dir2 = join(dir, 'after');
    cpSync(join(dir, 'state'), join(dir2, 'state'), { recursive: true });
    fakeImage(dir2);
    const net2 = new FakeCommNetwork();
    net2.links.add(tap);
    const clock2 = new FakeClock(1_010_000);
    const d2 = await start(net2, clock2, dir2);
    await until('the tap adopted', () => net2.nics.some((n) => n.tap === tap));
    assert.deepEqual(
      net2.nics.map((n) => [n.instance, n.tap]),
      [['vm1', tap]],
      'adopted: the tap carries vm1 again',
    );
    hv.powerOff(rec.domain);
    await until('the adopted run ended', async () => {
      await clock2.advance(250); // the adopted run polls on this clock
      return d2.services.jobs.status('vm1')?.outcome !== undefined;
    });
    await d2.services.jobs.settled('vm1');
    assert.equal(d2.services.jobs.status('vm1')?.outcome, 'failed');
    assert.ok(!net2.links.has(tap), 'released: tap deleted');
    assert.deepEqual(net2.nics, []);
    await d2.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('at start, leftovers no unfinished job owns are swept: appliance taps, console logs, overlays; nothing else', async () => {
  await withDaemon(
    async (h) => {
      await until('the leftover tap swept', () => !h.net.links.has('mdi0123456789ab'));
      assert.deepEqual([...h.net.links].sort(), ['mtap7'], 'the leftover appliance tap is gone, the other tap stays');
      assert.deepEqual(readdirSync(join(h.dir, 'run')), ['notes.txt']);
      assert.deepEqual(readdirSync(join(h.dir, 'ovl')), ['base.qcow2']);
      assert.match(h.logs(), /"removed":3,"msg":"install leftovers removed"/);
    },
    {
      before: (dir, net) => {
        net.links.add('mdi0123456789ab');
        net.links.add('mtap7');
        mkdirSync(join(dir, 'run'));
        mkdirSync(join(dir, 'ovl'));
        writeFileSync(join(dir, 'run', 'metad-install-old-abc.console.log'), 'x');
        writeFileSync(join(dir, 'run', 'notes.txt'), 'x');
        writeFileSync(join(dir, 'ovl', 'metad-install-old-abc.qcow2'), 'x');
        writeFileSync(join(dir, 'ovl', 'base.qcow2'), 'x');
      },
    },
  );
});

/** The disk of vm1 is set to `path` (through the store, as a PATCH would). */
async function setDisk(h: H, path: string, name = 'vm1'): Promise<void> {
  const prev = h.d.services.store.mustGet(name).doc;
  await h.d.services.store.put({ ...prev, hardware: { ...prev.hardware, disks: [{ path, format: 'raw' }] } } as never, true);
}

/** The refusal of vm1's install: a 409 naming disk 0's field, whose text never holds `path`. */
async function refusedDisk(h: H, path: string, rule: RegExp): Promise<void> {
  await setDisk(h, path);
  await assert.rejects(h.d.services.jobs.start('vm1'), (e: unknown) => {
    assert.ok(e instanceof DaemonError && e.code === 'Conflict', String(e));
    assert.equal(e.details[0]?.path, '/hardware/disks/0/path');
    assert.match(e.message, rule);
    assert.ok(!JSON.stringify({ m: e.message, d: e.details }).includes(path), 'the path is never echoed');
    return true;
  });
  assert.equal(h.d.services.jobs.status('vm1'), undefined, 'nothing recorded');
}

test('disks: only regular files under storage.fileRoots and block devices under storage.blockRoots; never /etc/shadow, a symlink out, a FIFO, a directory', async () => {
  await withDaemon(async (h) => {
    const disks = join(h.dir, 'disks');
    await refusedDisk(h, '/etc/shadow', /not under a storage root/);
    symlinkSync('/etc/shadow', join(disks, 'shadow-link'));
    await refusedDisk(h, join(disks, 'shadow-link'), /resolves outside the storage roots/);
    execFileSync('mkfifo', [join(disks, 'fifo')]);
    await refusedDisk(h, join(disks, 'fifo'), /must be a regular file/);
    mkdirSync(join(disks, 'dir'));
    await refusedDisk(h, join(disks, 'dir'), /must be a regular file/);
    await refusedDisk(h, join(disks, 'missing.raw'), /does not exist/);
    // A symlink that stays inside the roots is fine, and the domain gets the resolved path.
    symlinkSync(h.disk, join(disks, 'alias.raw'));
    await setDisk(h, join(disks, 'alias.raw'));
    const rec = await h.d.services.jobs.start('vm1');
    await created(h.hv);
    const xml = h.hv.calls.find((c) => c.op === 'createTransient');
    assert.ok(xml?.op === 'createTransient' && xml.xml.includes(`<source file='${h.disk}'/>`), 'the resolved path');
    assert.ok(!xml.xml.includes('alias.raw'));
    h.d.services.jobs.abort('vm1');
    await h.clock.advance(1000);
    await h.d.services.jobs.settled('vm1');
    assert.equal(h.d.services.jobs.status('vm1')?.domain, rec.domain);
  });
  // No storage roots configured (the default): no disk at all.
  await withDaemon(
    async (h) => {
      await refusedDisk(h, h.disk, /not under a storage root/);
    },
    { storage: {} },
  );
});

test('disks: a block root takes block devices only (a char device is refused); an LVM root checks the device-mapper name', async (t) => {
  const root = mkdtempSync(join('/dev/shm', 'metad-blk-'));
  try {
    execFileSync('mknod', [join(root, 'blk0'), 'b', '7', '250']);
    execFileSync('mknod', [join(root, 'chr0'), 'c', '1', '3']);
  } catch (e) {
    rmSync(root, { recursive: true, force: true });
    skipOrFail(t, `mknod needs root: ${String(e)}`);
    return;
  }
  try {
    await withDaemon(
      async (h) => {
        await refusedDisk(h, join(root, 'chr0'), /must be a block device/);
        await setDisk(h, join(root, 'blk0'));
        await h.d.services.jobs.start('vm1');
        await created(h.hv);
        const xml = h.hv.calls.find((c) => c.op === 'createTransient');
        assert.ok(xml?.op === 'createTransient' && xml.xml.includes(join(root, 'blk0')));
      },
      { storage: { blockRoots: [root] } },
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  // LVM: /dev/<vg>/<lv> -> /dev/dm-N must be the device-mapper device named <vg>-<lv>.
  const fs = (target: string, dm: string | undefined): DiskFs => ({
    realpath: (p) => Promise.resolve(p.startsWith('/dev/vg-0/') ? target : p),
    stat: () => Promise.resolve({ isFile: () => false, isBlockDevice: () => true, dev: 5, ino: 1, rdev: (253 << 8) | 3 }),
    dmName: (major, minor) => Promise.resolve(major === 253 && minor === 3 ? dm : undefined),
  });
  const roots = { fileRoots: [], blockRoots: ['/dev/vg-0'] };
  assert.equal(lvmDmName('vg-0', 'lv-a'), 'vg--0-lv--a');
  assert.equal((await resolveDisk('/dev/vg-0/lv-a', roots, fs('/dev/dm-3', 'vg--0-lv--a'))).real, '/dev/dm-3');
  await assert.rejects(resolveDisk('/dev/vg-0/lv-a', roots, fs('/dev/dm-3', 'vg--0-other')), DiskRefused, 'another volume');
  await assert.rejects(resolveDisk('/dev/vg-0/lv-a', roots, fs('/dev/sda', undefined)), DiskRefused, 'a host disk');
});

test("disks: one held by another instance's running VM or install job is refused (409); the path is checked again when the run is prepared", async () => {
  await withDaemon(
    async (h) => {
      const { store, jobs } = h.d.services;
      const vm2 = (disk: string) =>
        sampleInstance(2, {
          comm: { mac: '52:54:00:00:00:02', ipv4: '169.254.10.3', tap: 'vmtap2' },
          hardware: { disks: [{ path: disk, format: 'raw' }] },
        }) as never;
      await store.put(vm2(h.disk), true);
      h.net.links.add('vmtap2'); // vm2's VM runs
      await refusedDisk(h, h.disk, /in use by another instance/);
      symlinkSync(h.disk, join(h.dir, 'disks', 'other-name.raw'));
      await refusedDisk(h, join(h.dir, 'disks', 'other-name.raw'), /in use by another instance/); // the same file by another name
      h.net.links.delete('vmtap2');
      // vm2's install job holds its disk too.
      const x = join(h.dir, 'disks', 'x.raw');
      writeFileSync(x, '');
      await store.put(vm2(x), true);
      await jobs.start('vm2');
      await created(h.hv);
      await refusedDisk(h, x, /in use by another instance/);
      // vm1 is admitted and waits in the queue; meanwhile its disk becomes a link to /etc/shadow.
      await setDisk(h, h.disk);
      assert.equal((await jobs.start('vm1')).state, 'queued');
      rmSync(h.disk);
      symlinkSync('/etc/shadow', h.disk);
      jobs.abort('vm2');
      await h.clock.advance(1000);
      await jobs.settled('vm2');
      await jobs.settled('vm1');
      const rec = jobs.status('vm1');
      assert.equal(rec?.outcome, 'failed');
      assert.match(rec.reason ?? '', /resolves outside the storage roots/);
      assert.ok(!JSON.stringify(rec).includes(h.dir), 'no host path in the record');
      assert.equal(h.hv.calls.filter((c) => c.op === 'createTransient').length, 1, "vm1's domain was never created");
    },
    { appliance: { maxConcurrent: 1 } },
  );
});

test("identity: while vm1's job is queued or live its comm address, MAC, tap, disks and OS cannot change (409); other fields can; after the end all can", async () => {
  await withDaemon(async (h) => {
    const { store, jobs } = h.d.services;
    const put = (change: Record<string, unknown>) => store.put({ ...store.mustGet('vm1').doc, ...change }, true);
    const doc = store.mustGet('vm1').doc;
    await jobs.start('vm1');
    await created(h.hv);
    for (const [change, path] of [
      [{ comm: { ...doc.comm, ipv4: '169.254.10.9' } }, '/comm'],
      [{ comm: { ...doc.comm, mac: '52:54:00:00:00:09' } }, '/comm'],
      [{ comm: { ...doc.comm, tap: 'vmtap9' } }, '/comm'],
      [{ hardware: { ...doc.hardware, disks: [] } }, '/hardware/disks'],
      [{ os: { name: 'other' } }, '/os'],
    ] as const) {
      await assert.rejects(put(change), (e: unknown) => e instanceof DaemonError && e.code === 'Conflict' && e.details[0]?.path === path);
    }
    assert.equal(store.mustGet('vm1').doc.comm.ipv4, '169.254.10.2', 'nothing changed');
    await put({ hostname: 'renamed' }); // not part of what the job relies on
    jobs.abort('vm1');
    await h.clock.advance(1000);
    await jobs.settled('vm1');
    await put({ comm: { ...doc.comm, ipv4: '169.254.10.9' } });
    assert.equal(store.mustGet('vm1').doc.comm.ipv4, '169.254.10.9');
  });
});

test('install availability says plainly why installs cannot run: network off, the binding missing (packages named), no image', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-avail-'));
  try {
    const ok = () => Promise.resolve();
    assert.deepEqual(await installAvailability(routedConfig(dir, {}, { mode: 'off' }), ok), {
      available: false,
      reason: 'network.mode is off: installs need the comm network (routed or bridged)',
    });
    // The real loader with a binding that is not installed: the message names the Debian packages.
    const missing = await installAvailability(routedConfig(dir), () => loadBinding('@metad-test/no-such-binding'));
    assert.equal(missing.available, false);
    assert.match(missing.reason ?? '', /libvirt-dev pkg-config g\+\+ make/);
    assert.match((await installAvailability(routedConfig(dir), ok)).reason ?? '', /no appliance image: run `metad appliance build`/);
    fakeImage(dir);
    assert.deepEqual(await installAvailability(routedConfig(dir), ok), { available: true });
    // Off by configuration: said first, and the binding is not even asked for.
    assert.deepEqual(await installAvailability(routedConfig(dir, { enabled: false }), () => Promise.reject(new Error('not asked'))), {
      available: false,
      reason: 'installs are off on this host (/appliance/enabled is false)',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
