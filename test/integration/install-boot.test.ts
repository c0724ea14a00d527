/**
 * The whole product in one test (issue 16): install Debian, then boot it.
 *  1. Debian's ganeti-instance-debootstrap, unmodified, installs Debian bookworm with a kernel,
 *     systemd and cloud-init (from a cache tarball made on the host with mmdebstrap) onto the
 *     blank disk of instance web1, in the Debian appliance, through metad's install job.
 *  2. The instance itself then boots from that disk (TCG; its kernel and initramfs read from the
 *     disk, as a Ganeti node with `kernel_path` would boot it), its comm NIC on its own tap, which
 *     metad's routed comm network serves (DHCP from metad's dnsmasq, the guest door on
 *     169.254.169.254). QEMU's SMBIOS says "OpenStack Nova", as Nova's does, so cloud-init's
 *     ds-identify picks its OpenStack datasource, which reads metad's OpenStack dialect.
 *  3. cloud-init sets the hostname from metad's metadata (not the one the install wrote), puts the
 *     SSH key from metad into the default user's authorized_keys and runs the user data's command,
 *     which reports both through the Ganeti pipe (`POST /ganeti/latest/write`); the test reads the
 *     line with `metadctl pipe read`.
 * Minutes long under TCG (the first run also builds the Debian root and a 0.8 GB cache tarball
 * with mmdebstrap: hence its own 40-minute timeout); kept whole on purpose.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { skipOrFail } from '../support/env.js';
import { startInstallEnv, type InstallEnv } from '../support/install-env.js';
import { applianceCacheDir, testDebianRoot } from '../support/appliance.js';
import { debootstrapInstallMissing, debootstrapShares, GIDEB_OS, SUITE } from '../support/debootstrap.js';
import { until } from '../support/wait.js';
import { TRIP_TABLE } from '../support/netns.js';

const run = promisify(execFile);

/** What the installed system needs to boot and meet metad: a kernel, an init, udev, DHCP, cloud-init. */
const BOOT_PACKAGES = ['isc-dhcp-client', 'linux-image-amd64', 'systemd-sysv', 'udev', 'cloud-init'];
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM3t4dB00tTestKeyOnlyForMetadsBootTest00000 metad-boot-test';
const HOSTNAME = 'booted-by-metad';
const TAP = 'gst42';
const MAC = '52:54:00:42:00:11';

/** The user data: a report of what cloud-init did, sent through the Ganeti pipe. */
const USER_DATA = `#cloud-config
write_files:
  - path: /usr/local/sbin/metad-report
    permissions: '0755'
    content: |
      #!/bin/sh
      keys=$(cat /home/*/.ssh/authorized_keys 2>/dev/null | grep -c metad-boot-test)
      line="booted host=$(hostname) keys=$keys"
      exec python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request("http://169.254.169.254/ganeti/latest/write", data=(sys.argv[1] + "\\n").encode(), method="POST"), timeout=10)' "$line"
runcmd:
  - [/usr/local/sbin/metad-report]
`;

/** The instance as a hypervisor would run it (not an appliance: metad neither makes nor adopts it). */
function instanceXml(o: { kernel: string; initrd: string; disk: string; log: string }): string {
  return `<domain type='qemu'>
  <name>metad-boot-web1</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <sysinfo type='smbios'>
    <system>
      <entry name='manufacturer'>OpenStack Foundation</entry>
      <entry name='product'>OpenStack Nova</entry>
    </system>
  </sysinfo>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${o.kernel}</kernel>
    <initrd>${o.initrd}</initrd>
    <cmdline>root=/dev/vda1 ro console=ttyS0</cmdline>
    <smbios mode='sysinfo'/>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${o.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='ethernet'>
      <mac address='${MAC}'/>
      <target dev='${TAP}' managed='no'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='${o.log}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

test(
  'install Debian, then boot it: ganeti-instance-debootstrap installs it in the Debian appliance; booted from its disk, cloud-init takes its hostname and SSH key from metad and reports through the pipe',
  { timeout: 2_400_000 },
  async (t) => {
    const why = await debootstrapInstallMissing();
    if (skipOrFail(t, why)) return;
    const root = await testDebianRoot();
    const shares = await debootstrapShares(join(applianceCacheDir(), 'debootstrap-cache'), BOOT_PACKAGES);
    const env: InstallEnv = await startInstallEnv(
      { variant: 'debian', debianRoot: root, shares, installTimeoutMs: 1_800_000 },
      { searchPath: [GIDEB_OS] },
    );
    let booted = false;
    t.after(async () => {
      if (booted) await env.hv.destroy('metad-boot-web1').catch(() => undefined);
      await env.close();
    });

    const disk = join(env.dir, 'web1.img');
    await run('truncate', ['-s', '3G', disk]);
    const put = await env.metad.admin('PUT', '/v1/instances/web1', {
      name: 'web1',
      uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7f11',
      hostname: `${HOSTNAME}.example.org`,
      comm: { mac: MAC, ipv4: '169.254.42.11', tap: TAP },
      os: { name: 'debootstrap', variant: SUITE },
      hardware: { memoryMiB: 1024, vcpus: 1, disks: [{ path: disk, format: 'raw' }] },
      publicKeys: [{ name: 'test', key: KEY }],
      userData: Buffer.from(USER_DATA).toString('base64'),
    });
    assert.equal(put.status, 201, put.text);

    await t.test('the install: Debian with a kernel and cloud-init, written by the unmodified definition', async () => {
      assert.equal((await env.ctl('install', 'web1')).code, 0);
      const rec = await env.watchEnd('web1');
      assert.equal(rec.outcome, 'succeeded', JSON.stringify(rec));
      t.diagnostic(`install: request -> outcome ${String(Date.parse(rec.endedAt ?? '') - Date.parse(rec.requestedAt))} ms`);
    });

    const fs1 = join(env.dir, 'web1-p1.img');
    await run('dd', [`if=${disk}`, `of=${fs1}`, 'bs=1M', 'skip=1', 'status=none']);
    const boot = (await run('debugfs', ['-R', 'ls -l /boot', fs1])).stdout;
    const kernelName = /\b(vmlinuz-\S+)/.exec(boot)?.[1];
    const initrdName = /\b(initrd\.img-\S+)/.exec(boot)?.[1];
    assert.ok(kernelName && initrdName, boot);
    const kernel = join(env.dir, 'vmlinuz');
    const initrd = join(env.dir, 'initrd.img');
    await run('debugfs', ['-R', `dump /boot/${kernelName} ${kernel}`, fs1]);
    await run('debugfs', ['-R', `dump /boot/${initrdName} ${initrd}`, fs1]);

    await t.test(
      'booted from its disk, cloud-init reads metad: hostname and SSH key from the metadata, the report through the pipe',
      async () => {
        // The namespace's tripwire lets the host's replies out through the appliances' taps only:
        // the instance's own tap too (its DHCP offers and metadata answers; nothing else leaves).
        await env.ns.run('nft', ['insert', 'rule', 'inet', TRIP_TABLE, 'out', 'oifname', TAP, 'accept']);
        await env.ns.run('ip', ['tuntap', 'add', 'dev', TAP, 'mode', 'tap']);
        await env.ns.run('ip', ['link', 'set', TAP, 'up']);
        assert.equal((await env.ctl('nic', 'up', '--instance', 'web1', '--tap', TAP)).code, 0);
        const log = join(env.dir, 'web1.console.log');
        const started = Date.now();
        await env.hv.createTransient('metad-boot-web1', instanceXml({ kernel, initrd, disk, log }));
        booted = true;
        let said = '';
        await until(
          'the booted instance reports through the pipe',
          async () => {
            const r = await env.ctl('pipe', 'read', 'web1', '--wait', '10');
            said += r.out;
            return said.includes('booted ');
          },
          { ms: 900_000, every: 100 },
        ).catch(async (e: unknown) => {
          const console = await readFile(log, 'utf8').catch(() => '');
          throw new Error(`${String(e)}\n--- console (tail) ---\n${console.split('\n').slice(-60).join('\n')}`);
        });
        t.diagnostic(`boot: domain created -> report ${String(Date.now() - started)} ms`);
        assert.match(said, new RegExp(`^booted host=${HOSTNAME} keys=1$`, 'm'));
      },
    );

    await t.test('nothing of the install is left once the instance is gone', async () => {
      await env.hv.destroy('metad-boot-web1');
      booted = false;
      assert.deepEqual(await env.leftovers(), []);
    });
  },
);
