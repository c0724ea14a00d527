/**
 * The Debian package (docs/operations.md, "Or: the Debian package"): scripts/package.mjs builds it
 * from this checkout's build under the two versions the doc's blocks name; lintian reports
 * nothing (at warning level, with the package's two overrides); and on a host booted by a real
 * systemd (test/support/operator-host.ts, the machine's dpkg database under an overlay so that
 * nothing gets installed on the machine) the doc's blocks run as printed by a sudo user: install
 * (files, links, the user, modes, the conffile; the unit starts with the packaged configuration
 * and "Your first guest" reads its metadata), upgrade (the new version runs, state and an edited
 * conffile kept), remove (stopped, its network gone, state and config kept), purge (nothing of
 * metad's left but its user).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chainedPhases, hasCommand, skipOrFail } from '../support/env.js';
import { commandsOf, hostExample, parseExamples, type Example } from '../support/doc-examples.js';
import { bootOperatorHost, operatorHostMissing, type OperatorHost } from '../support/operator-host.js';
import { runFile } from '../support/netns.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PAGE = 'docs/operations.md';
const DOC = readFileSync(join(ROOT, PAGE), 'utf8');
const block = (id: string): Example => hostExample(DOC, id);

/** The .deb a block installs: `./metad_VERSION_ARCH.deb`. */
function debOf(id: string): { file: string; version: string; arch: string } {
  const m = /\.\/(metad_([0-9][A-Za-z0-9.+~]*)_([a-z0-9]+)\.deb)/.exec(block(id).body);
  assert.ok(m, `host=${id} installs a ./metad_VERSION_ARCH.deb`);
  return { file: m[1] ?? '', version: m[2] ?? '', arch: m[3] ?? '' };
}

function missing(): string | undefined {
  if (!hasCommand('dpkg-deb')) return 'dpkg-deb not installed (dpkg)';
  if (!hasCommand('lintian')) return 'lintian not installed (.ci/install-deps.sh)';
  if (!hasCommand('dpkg-shlibdeps')) return 'dpkg-shlibdeps not installed (dpkg-dev)';
  return operatorHostMissing();
}

async function script(h: OperatorHost, id: string, cwd: string): Promise<void> {
  const r = await h.asAdmin(block(id).body, cwd);
  if (r.code !== 0) {
    const j = await h.asRoot('journalctl', '-u', 'metad', '-n', '30', '--no-pager', '-o', 'cat');
    assert.fail(`${id}: exit ${String(r.code)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- metad's journal ---\n${j.stdout}`);
  }
}

test('the Debian package: built, lint-free, installed, upgraded, removed and purged under a real systemd', async (t) => {
  if (skipOrFail(t, missing())) return;
  const first = debOf('deb-install');
  const second = debOf('deb-upgrade');
  const arch = (await run('dpkg', ['--print-architecture'])).stdout.trim();
  assert.equal(first.arch, arch, `the doc's package is for ${first.arch}; this machine is ${arch}`);
  const releases = mkdtempSync(join(tmpdir(), 'metad-deb-test-'));
  chmodSync(releases, 0o755);
  const undo: (() => Promise<void> | void)[] = [() => rmSync(releases, { recursive: true, force: true })];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const phase = chainedPhases(t);

  await phase(`scripts/package.mjs builds ${first.file} and ${second.file}`, async () => {
    for (const v of [first.version, second.version]) {
      const began = Date.now();
      const out = (
        await run('node', [join(ROOT, 'scripts/package.mjs'), '--out', releases, '--version', v], { maxBuffer: 16 << 20 })
      ).stdout.trim();
      assert.equal(out, join(releases, `metad_${v}_${arch}.deb`));
      t.diagnostic(`${v}: built in ${String(Date.now() - began)} ms`);
    }
    const deb = join(releases, first.file);
    const field = async (f: string): Promise<string> => (await run('dpkg-deb', ['-f', deb, f])).stdout.trim();
    assert.equal(await field('Package'), 'metad');
    assert.equal(await field('Version'), first.version);
    assert.match(await field('Depends'), /^nodejs \(>= 20\), systemd, iproute2, nftables, libc6 \(>= [0-9.]+\)/);
    assert.doesNotMatch(await field('Depends'), /libvirt/, 'libvirt0 only recommended: the binding is optional');
    assert.match(await field('Recommends'), /libvirt0/);
    const listing = (await run('dpkg-deb', ['-c', deb], { maxBuffer: 64 << 20 })).stdout;
    const entry = (path: string): string => listing.split('\n').find((l) => l.endsWith(` .${path}`) || l.includes(` .${path} -> `)) ?? '';
    assert.match(entry('/usr/bin/metad'), /^lrwxrwxrwx root\/root .* -> \.\.\/lib\/metad\/dist\/daemon\/cli\.js$/);
    assert.match(entry('/usr/bin/metadctl'), /^lrwxrwxrwx root\/root .* -> \.\.\/lib\/metad\/dist\/cli\/metadctl\.js$/);
    assert.match(entry('/usr/lib/metad/dist/daemon/cli.js'), /^-rwxr-xr-x root\/root /);
    assert.match(entry('/usr/lib/metad/ganeti/kvm-ifup-os'), /^-rwxr-xr-x root\/root /);
    // The appliance builds (`metad appliance build [--variant debian]`) and what they source.
    for (const x of ['build.sh', 'build-debian.sh', 'install-image.sh'])
      assert.match(entry(`/usr/lib/metad/appliance/${x}`), /^-rwxr-xr-x root\/root /, x);
    assert.match(entry('/usr/lib/metad/appliance/build-lib.sh'), /^-rw-r--r-- root\/root /);
    assert.match(entry('/usr/lib/metad/appliance/agent/osdef.sh'), /^-rw-r--r-- root\/root /);
    assert.match(entry('/lib/systemd/system/metad.service'), /^-rw-r--r-- root\/root /);
    assert.match(entry('/etc/metad/config.yaml'), /^-rw-r--r-- root\/root /);
    assert.match(entry('/usr/share/man/man8/metad.8.gz'), /^-rw-r--r-- /);
    assert.match(entry('/usr/share/doc/metad/grafana-dashboard.json'), /^-rw-r--r-- /, 'the dashboard (docs/operations.md, "Monitoring")');
    assert.match(entry('/usr/lib/metad/node_modules/@unraid/libvirt/build/Release/libvirt.node'), /^-rw-r--r-- /);
    // What node never loads is not shipped: build tools, sources of the addon, source maps.
    for (const absent of [
      '/node_modules/tsx/',
      '/node_modules/esbuild/',
      '/node_modules/@esbuild/',
      '/node_modules/typescript/',
      '.js.map',
      '/node_modules/c8/',
    ])
      assert.ok(!listing.includes(absent), `not in the package: ${absent}`);
    assert.equal((await run('dpkg-deb', ['-I', deb, 'conffiles'])).stdout, '/etc/metad/config.yaml\n');
  });

  await phase('lintian reports nothing at warning level or above (overrides listed with reasons)', async () => {
    const r = await runFile('lintian', ['--fail-on', 'warning', join(releases, first.file)], { timeoutMs: 300_000 });
    assert.deepEqual(
      r.stdout.split('\n').filter((l) => /^[EW]: /.test(l)),
      [],
      'lintian errors or warnings',
    );
    assert.equal(r.code, 0, `lintian failed: ${r.stderr}`);
  });

  let h: OperatorHost | undefined;
  await phase('boot a host (real systemd, a test network namespace, dpkg database under an overlay)', async () => {
    h = await bootOperatorHost({ binds: [releases], allowOut: ['md-*'], dpkg: true });
    const host = h;
    undo.push(() => host.destroy());
    assert.notEqual((await host.asRoot('dpkg-query', '-W', 'metad')).code, 0, 'not installed before');
  });
  const host = (): OperatorHost => {
    assert.ok(h);
    return h;
  };
  const show = async (prop: string): Promise<string> => (await host().asRoot('systemctl', 'show', '-P', prop, 'metad')).stdout.trim();
  const started = async (): Promise<unknown[]> =>
    (await host().journal()).filter((e) => e.msg === 'metad started').map((e) => e['version']);
  const exists = async (path: string): Promise<boolean> => (await host().asRoot('test', '-e', path)).code === 0;
  const served = async (): Promise<string> =>
    (
      await host().asRoot(
        'ip',
        'netns',
        'exec',
        'guest1',
        'curl',
        '-s',
        '--max-time',
        '10',
        'http://169.254.169.254/latest/meta-data/hostname',
      )
    ).stdout;

  await phase('install as printed: files, user, modes, conffile; the unit starts with the packaged config', async () => {
    const h = host();
    // Installing alone starts nothing (the doc's third step enables it): check after the first line.
    const installOnly = await h.asAdmin(block('deb-install').body.split('\n')[0] ?? '', releases);
    assert.equal(installOnly.code, 0, installOnly.stderr);
    assert.equal(await show('ActiveState'), 'inactive', 'installing starts nothing');
    assert.equal((await h.asRoot('systemctl', 'is-enabled', 'metad')).stdout.trim(), 'disabled');
    await script(h, 'deb-install', releases); // again, as printed: installing the same version again is harmless
    assert.equal(await show('ActiveState'), 'active');
    assert.equal(await show('NRestarts'), '0');
    assert.deepEqual(await started(), [first.version]);
    assert.equal((await h.asRoot('readlink', '-f', '/usr/bin/metad')).stdout.trim(), '/usr/lib/metad/dist/daemon/cli.js');
    assert.match(
      (await h.asRoot('getent', 'passwd', 'metad')).stdout,
      /^metad:x:\d+:\d+:metad instance metadata daemon:\/var\/lib\/metad:\/usr\/sbin\/nologin$/m,
    );
    assert.equal((await h.asRoot('stat', '-c', '%a %U %G', '/var/lib/metad')).stdout.trim(), '700 metad metad');
    assert.equal((await h.asRoot('stat', '-c', '%a %U %G', '/etc/metad/config.yaml')).stdout.trim(), '644 root root');
    assert.equal((await h.asRoot('cat', '/etc/metad/config.yaml')).stdout, readFileSync(join(ROOT, 'systemd/config.yaml'), 'utf8'));
    assert.match((await h.asRoot('dpkg-query', '-W', '-f', '${Conffiles}', 'metad')).stdout, /\/etc\/metad\/config\.yaml [0-9a-f]{32}/);
    assert.match((await h.asRoot('id', '-nG', 'alice')).stdout, /\bmetad\b/);
    // The packaged libvirt binding loads with the packaged node_modules.
    const binding = await h.asRoot(
      'node',
      '-e',
      "import('/usr/lib/metad/node_modules/@unraid/libvirt/dist/index.js').then((m) => console.log(typeof m.Hypervisor))",
    );
    assert.equal(binding.stdout.trim(), 'function', binding.stderr);
    assert.match((await h.asRoot('sh', '-c', 'zcat /usr/share/man/man8/metad.8.gz')).stdout, /^\.TH METAD 8 /m);
  });

  await phase('"Your first guest" as printed with the packaged metadctl: the guest reads its metadata', async () => {
    const h = host();
    const doc = parseExamples(DOC).find((e) => e.file === 'guest1.yaml');
    assert.ok(doc);
    const wrote = await h.asAdmin(`cat > guest1.yaml <<'EOF'\n${doc.body}EOF`);
    assert.equal(wrote.code, 0, wrote.stderr);
    for (const { command, expect } of commandsOf(block('first-guest'))) {
      const r = await h.asAdmin(command);
      assert.equal(r.code, 0, `${command}\n${r.stderr}`);
      if (expect !== undefined) assert.equal(r.stdout.replace(/\n$/, ''), expect, command);
    }
    assert.equal(await served(), 'guest1');
  });

  await phase(`upgrade to ${second.version} as printed: the new version runs, state and the edited conffile kept`, async () => {
    const h = host();
    const edited = `${(await h.asRoot('cat', '/etc/metad/config.yaml')).stdout}# edited by the admin\n`;
    assert.equal((await h.asRoot('sh', '-c', `printf '%s' '${edited.replace(/'/g, "'\\''")}' > /etc/metad/config.yaml`)).code, 0);
    const pid = await show('MainPID');
    await script(h, 'deb-upgrade', releases);
    assert.notEqual(await show('MainPID'), pid, 'restarted');
    assert.equal(await show('ActiveState'), 'active');
    assert.equal((await started()).at(-1), second.version);
    assert.equal((await h.asRoot('dpkg-query', '-W', '-f', '${Version}', 'metad')).stdout, second.version);
    assert.equal((await h.asRoot('cat', '/etc/metad/config.yaml')).stdout, edited, 'the edited conffile is kept');
    assert.ok(await exists('/var/lib/metad/instances/guest1.json'));
    assert.equal(await served(), 'guest1');
  });

  await phase('remove as printed: stopped, its network gone; configuration and state kept', async () => {
    const h = host();
    await script(h, 'deb-remove', releases);
    assert.equal(await show('ActiveState'), 'inactive');
    assert.ok(!(await exists('/usr/bin/metad')));
    assert.ok(!(await exists('/usr/lib/metad')));
    assert.ok(!(await exists('/lib/systemd/system/metad.service')));
    assert.notEqual((await h.hv.run('ip', ['link', 'show', 'metad0'])).code, 0, 'metad0 removed by the stopping daemon');
    assert.ok(await exists('/var/lib/metad/instances/guest1.json'), 'state kept');
    assert.ok(await exists('/etc/metad/config.yaml'), 'configuration kept');
    assert.match((await h.asRoot('dpkg-query', '-W', '-f', '${db:Status-Abbrev}', 'metad')).stdout, /^rc/);
  });

  await phase('purge as printed: nothing of metad left but its system user', async () => {
    const box = host();
    await script(box, 'deb-purge', releases);
    for (const path of ['/etc/metad', '/var/lib/metad', '/var/cache/metad', '/run/metad'])
      assert.ok(!(await exists(path)), `${path} removed`);
    assert.notEqual((await box.asRoot('dpkg-query', '-W', 'metad')).code, 0, 'unknown to dpkg');
    assert.equal((await box.asRoot('getent', 'passwd', 'metad')).code, 0, 'the user stays (docs/operations.md)');
    await box.destroy();
    h = undefined;
    // The machine itself never had it.
    assert.notEqual((await runFile('dpkg-query', ['-W', 'metad'])).code, 0, 'not installed on the machine');
  });
});
