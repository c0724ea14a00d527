/**
 * docs/deployment.md, "libvirtd for install appliances", and docs/operations.md, "Turning installs
 * on", as printed, on the host of operator-live.test.ts (a container booted by a real systemd in a
 * test network namespace, metad installed by operations.md's lines, a sudo user running them):
 *   1. Debian's libvirtd. libvirt-daemon-system is not installed on the machine (its default
 *      network would add virbr0): the container's /usr is the machine's (libvirt-daemon, QEMU) with
 *      the package's files from its .deb (the installed libvirt's version) laid over it, its
 *      postinst's users and groups, its /etc/libvirt, and its sockets started as the package
 *      does; dbus and polkitd are the machine's. Its apt-get line is checked, not run; the rest
 *      runs as printed, then an install job goes through it: polkit admits group libvirt, QEMU
 *      runs as libvirt-qemu, its log goes through virtlogd.
 *   2. metad's private libvirtd (systemd/metad-libvirtd.service) beside it, as printed, and an
 *      install through its socket; then, without `stdio_handler = "file"`, the create fails
 *      with the virtlogd message the docs quote.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseDocument } from 'yaml';
import { chainedPhases, hasCommand, skipOrFail } from '../support/env.js';
import { hostExample, parseExamples, type Example } from '../support/doc-examples.js';
import { applianceCacheDir, applianceMissing, testAppliance } from '../support/appliance.js';
import { bootOperatorHost, operatorHostMissing, packTarballs, type OperatorHost, type Tarballs } from '../support/operator-host.js';
import type { JobRecord } from '../../daemon/jobs/record.js';
import { EV } from '../../daemon/log/events.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const OPS = 'docs/operations.md';
const DEPLOY = 'docs/deployment.md';
const ops = readFileSync(join(ROOT, OPS), 'utf8');
const deploy = readFileSync(join(ROOT, DEPLOY), 'utf8');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const CREATE = '#!/bin/sh\necho "test create: done"\n';
// Test only: these machines' KVM does not work (docs: appliance.virtType auto would find that out
// with a trial boot at the first job).
const TEST_ONLY = { appliance: { virtType: 'qemu' } };

function missing(): string | undefined {
  for (const c of ['libvirtd', 'virtlogd', 'virsh', 'qemu-system-x86_64', 'dpkg-deb', 'apt-get'])
    if (!hasCommand(c) && !hasCommand(`/usr/sbin/${c}`)) return `${c} not installed (.ci/install-deps.sh)`;
  if (!hasCommand('dbus-daemon') || !existsSync('/usr/lib/polkit-1/polkitd')) return 'dbus and polkitd not installed (.ci/install-deps.sh)';
  return operatorHostMissing() ?? applianceMissing();
}

/** libvirt-daemon-system of the installed libvirt's version, extracted (downloaded once into a cache). */
async function stockPackage(into: string): Promise<void> {
  const version = (await run('dpkg-query', ['-W', '-f=${Version}', 'libvirt-daemon'])).stdout.trim();
  const cache = join(tmpdir(), 'metad-libvirt-debs');
  mkdirSync(cache, { recursive: true });
  let deb = readdirSync(cache).find((f) => f.startsWith(`libvirt-daemon-system_${version.replace(/^\d+:/, '')}_`));
  if (deb === undefined) {
    await run('apt-get', ['download', `libvirt-daemon-system=${version}`], { cwd: cache });
    deb = readdirSync(cache).find((f) => f.startsWith('libvirt-daemon-system_'));
  }
  assert.ok(deb, 'libvirt-daemon-system downloaded');
  await run('dpkg-deb', ['-x', join(cache, deb), into]);
}

/** The `yaml config` example of a page whose text contains `marker`. */
function configExample(doc: string, marker: string): Record<string, unknown> {
  const found = parseExamples(doc).filter((e) => e.lang === 'yaml' && e.flags.has('config') && e.body.includes(marker));
  assert.equal(found.length, 1, `one config example with ${marker}`);
  return parseDocument((found[0] as Example).body).toJS() as Record<string, unknown>;
}

/** The packages an apt-get line names. */
const packagesOf = (line: string): string[] =>
  line
    .replace(/^sudo apt-get install --no-install-recommends /, '')
    .split(/\s+/)
    .filter((w) => w !== '' && !w.startsWith('#'));

test("deployment.md's two libvirtds as printed, on a host booted by systemd: an install job through each", async (t) => {
  if (skipOrFail(t, missing())) return;
  const undo: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const dir = mkdtempSync(join(tmpdir(), 'metad-libvirtd-live-'));
  undo.push(() => rmSync(dir, { recursive: true, force: true }));
  let tb: Tarballs | undefined;
  const stock = join(dir, 'stock');
  await t.test('prepare: this checkout packed, the appliance, libvirt-daemon-system extracted', async () => {
    tb = await packTarballs([VERSION]);
    await testAppliance();
    await stockPackage(stock);
  });
  if (tb === undefined) return;
  const tarballs = tb;
  undo.push(() => rmSync(tarballs.dir, { recursive: true, force: true }));
  // The package's /usr and /lib (merged: /lib is /usr/lib) over the machine's /usr.
  const usr = join(dir, 'usr-tree');
  mkdirSync(join(usr, 'lib'), { recursive: true });
  await run('cp', ['-a', `${stock}/usr/.`, usr]);
  await run('cp', ['-a', `${stock}/lib/.`, join(usr, 'lib')]);
  const host: OperatorHost = await bootOperatorHost({
    binds: [tarballs.clone, stock, applianceCacheDir(), '/etc/apt', '/var/lib/apt/lists'],
    npmCache: tarballs.cache,
    allowOut: ['mdi*'],
    usrTrees: [usr],
    // libvirt-daemon-system's postinst: groups libvirt and kvm, user libvirt-qemu (group kvm, and libvirt-qemu).
    sysusers:
      'g libvirt - -\ng kvm - -\nu libvirt-qemu -:kvm "Libvirt Qemu" /var/lib/libvirt\ng libvirt-qemu - -\nm libvirt-qemu libvirt-qemu\n',
  });
  undo.push(() => host.destroy());

  // Each phase builds on the one before: after a failure the rest fail at once, naming it (never a skip).
  const phase = chainedPhases(t);
  const root = async (cmd: string, ...args: string[]): Promise<string> => {
    const r = await host.asRoot(cmd, ...args);
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const admin = async (what: string, script: string, cwd?: string): Promise<string> => {
    const r = await host.asAdmin(script, cwd);
    if (r.code !== 0) {
      const j = await host.asRoot(
        'journalctl',
        '-u',
        'metad',
        '-u',
        'libvirtd',
        '-u',
        'metad-libvirtd',
        '-n',
        '40',
        '--no-pager',
        '-o',
        'cat',
      );
      assert.fail(`${what}: exit ${String(r.code)}\n${script}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- journal ---\n${j.stdout}`);
    }
    return r.stdout;
  };
  /** What an operator's editor does to /etc/metad/config.yaml: these keys set, the rest (comments too) kept. */
  const setConfig = async (...parts: Record<string, unknown>[]): Promise<void> => {
    const doc = parseDocument(await root('cat', '/etc/metad/config.yaml'));
    for (const part of parts)
      for (const [section, keys] of Object.entries(part))
        for (const [k, v] of Object.entries(keys as Record<string, unknown>)) doc.setIn([section, k], v);
    writeFileSync(join(host.share, 'config.yaml'), doc.toString());
    await root('install', '-m', '0644', join(host.share, 'config.yaml'), '/etc/metad/config.yaml');
  };
  const install = async (name: string): Promise<JobRecord> => {
    await admin(
      `install ${name}`,
      `metadctl install ${name} --timeout 240 >/dev/null && metadctl install watch ${name} >/dev/null || true`,
    );
    // Exit 1 for a job that failed: the record is on stdout all the same.
    const status = await host.asAdmin(`metadctl --json install status ${name}`);
    return JSON.parse(status.stdout) as JobRecord;
  };
  const register = async (name: string, n: number): Promise<void> => {
    const doc = {
      name,
      uuid: `6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c0${String(n)}`,
      comm: { mac: `52:54:00:50:81:0${String(n)}`, ipv4: `169.254.81.${String(n)}` },
      os: { name: 'testos', variant: 'default' },
    };
    await admin(`register ${name}`, `cat > ${name}.json <<'EOF'\n${JSON.stringify(doc)}\nEOF\nmetadctl register ${name}.json`);
  };

  await phase('metad installed as operations.md says, its host made ready for appliances (a test OS, the image cache)', async () => {
    const lines = hostExample(ops, 'install').body.split('\n').slice(1).join('\n');
    await admin('install', lines, tarballs.clone);
    // An OS definition where os.searchPath looks first, and the tests' appliance build in the
    // default cache dir: `metad appliance build` finds it there instead of downloading.
    await root('install', '-d', '/srv/ganeti/os/testos/untrusted');
    writeFileSync(join(host.share, 'create'), CREATE, { mode: 0o755 });
    await root('install', '-m', '0755', join(host.share, 'create'), '/srv/ganeti/os/testos/untrusted/create');
    const img = await testAppliance();
    await root('install', '-d', '/var/cache/metad/appliance');
    await root('cp', '-a', img.dir, `/var/cache/metad/appliance/${basename(img.dir)}`);
    await root('chmod', '0666', '/dev/net/tun'); // udev's mode on a stock host (nspawn makes it 0600)
  });

  await phase("Debian's libvirtd: the package as apt-get would leave it, then the doc's lines; an install job through it", async (st) => {
    const [apt, ...rest] = hostExample(deploy, 'libvirt-stock').body.trim().split('\n');
    const pkgs = packagesOf(apt ?? '');
    assert.ok(pkgs.includes('libvirt-daemon-system'));
    const ci = readFileSync(join(ROOT, '.ci/install-deps.sh'), 'utf8');
    for (const p of pkgs.filter((x) => x !== 'libvirt-daemon-system')) assert.match(ci, new RegExp(`\\b${p}\\b`), `.ci installs ${p}`);
    // What the package's installation does: its conffiles, then its sockets (the postinst enables
    // and starts them), dbus for polkit.
    await root('cp', '-a', `${stock}/etc/libvirt`, '/etc/libvirt');
    // Test only (deployment.md says why): these machines' cgroup controllers are v1, read-only in
    // the container; libvirt's own cgroups would fail every start.
    await root('sh', '-c', 'echo "cgroup_controllers = [ ]" >> /etc/libvirt/qemu.conf');
    await root('systemctl', 'start', 'dbus.socket');
    await root(
      'systemctl',
      'enable',
      '--now',
      'virtlogd.socket',
      'virtlockd.socket',
      'libvirtd.socket',
      'libvirtd-ro.socket',
      'libvirtd-admin.socket',
    );
    await admin('libvirt-stock', rest.join('\n'), tarballs.clone);
    await admin('enable-installs', hostExample(ops, 'enable-installs').body, tarballs.clone);
    await setConfig(configExample(ops, 'enabled: true\n'), TEST_ONLY);
    const health = await admin('enable-installs-restart', hostExample(ops, 'enable-installs-restart').body, tarballs.clone);
    assert.equal(
      health.trim(),
      `ok (0 instances), metad ${VERSION}\nnetwork routed: last reconcile ok\ndnsmasq running: 0 leases`,
      'installs available: health names nothing missing',
    );
    await register('web1', 1);
    const rec = await install('web1');
    assert.equal(rec.outcome, 'succeeded', JSON.stringify(rec));
    // Through Debian's libvirtd: QEMU's own log went through virtlogd into its log dir.
    assert.ok((await root('ls', '/var/log/libvirt/qemu')).split('\n').includes(`${rec.domain}.log`));
    assert.match(await root('systemctl', 'show', '-P', 'ActiveState', 'virtlogd.service'), /^active/);
    // polkit decides: group libvirt is admitted, another user is not.
    assert.equal(
      (await host.asRoot('setpriv', '--reuid=metad', '--regid=metad', '--init-groups', 'virsh', '-c', 'qemu:///system', 'list')).code,
      0,
    );
    const alice = await host.asAdmin('virsh -c qemu:///system list');
    assert.notEqual(alice.code, 0, 'a user outside group libvirt');
    st.diagnostic(`outside group libvirt: ${alice.stderr.trim().split('\n')[0] ?? ''}`);
  });

  await phase("the private libvirtd as printed, beside Debian's; an install through its socket", async () => {
    const [apt] = hostExample(deploy, 'libvirt-private-packages').body.trim().split('\n');
    const ci = readFileSync(join(ROOT, '.ci/install-deps.sh'), 'utf8');
    for (const p of packagesOf(apt ?? '')) assert.match(ci, new RegExp(`\\b${p}\\b`), `.ci installs ${p}`);
    await admin('libvirt-private', hostExample(deploy, 'libvirt-private').body, tarballs.clone);
    assert.equal((await root('stat', '-c', '%a %G', '/run/metad-libvirt/libvirt-sock')).trim(), '770 metad-libvirt');
    await setConfig(configExample(deploy, 'libvirtUri: qemu:///system?socket=/run/metad-libvirt/libvirt-sock'));
    await admin('enable-installs-restart', hostExample(ops, 'enable-installs-restart').body, tarballs.clone);
    await register('web2', 2);
    const rec = await install('web2');
    assert.equal(rec.outcome, 'succeeded', JSON.stringify(rec));
    // Through the private one: QEMU's log is in its own log dir, written without virtlogd.
    assert.ok((await root('ls', '/var/log/metad-libvirt/qemu')).split('\n').includes(`${rec.domain}.log`));
    assert.ok(!(await root('ls', '/var/log/libvirt/qemu')).split('\n').includes(`${rec.domain}.log`));
    const alice = await host.asAdmin('virsh -c "qemu:///system?socket=/run/metad-libvirt/libvirt-sock" list');
    assert.notEqual(alice.code, 0, 'its socket is for group metad-libvirt only');
  });

  await phase('without stdio_handler = "file" (and no virtlogd) the private libvirtd fails every create, as the docs say', async () => {
    await root('sed', '-i', '/^stdio_handler/d', '/etc/metad/libvirt/qemu.conf');
    await root('systemctl', 'restart', 'metad-libvirtd');
    const rec = await install('web2');
    assert.equal(rec.outcome, 'failed', JSON.stringify(rec));
    const failed = (await host.journal()).filter((e) => e.msg === EV.jobCreateFailed).at(-1);
    assert.match(String(failed?.['err']), /Failed to connect socket to '\/run\/libvirt\/virtlogd-sock'/);
    await root('install', '-m', '0644', join(tarballs.clone, 'systemd/libvirt/qemu.conf'), '/etc/metad/libvirt/qemu.conf');
    await root('systemctl', 'restart', 'metad-libvirtd');
    assert.equal((await install('web2')).outcome, 'succeeded');
  });

  await t.test('the files the docs show are the ones shipped', () => {
    // Shown in list items, so indented: compared line by line without the indentation.
    const lines = deploy.split('\n').map((l) => l.trimStart());
    for (const f of ['systemd/libvirt/libvirtd.conf', 'systemd/libvirt/qemu.conf', 'systemd/install-appliances.conf']) {
      const want = readFileSync(join(ROOT, f), 'utf8').replace(/\n$/, '').split('\n');
      const at = lines.findIndex((_, i) => want.every((w, j) => lines[i + j] === w));
      assert.ok(at > 0 && lines[at - 1] === '```ini' && lines[at + want.length] === '```', `deployment.md shows ${f} as it is`);
    }
  });
});
