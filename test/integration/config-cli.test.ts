/**
 * `metad check-config` and `metad serve` load a configuration the same way: a file check-config
 * refuses, serve refuses with the very same report (every problem at once, each naming its key).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isRoot, skipOrFail } from '../support/env.js';

const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const metad = (...args: string[]) => {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, METAD_CONFIG: '' } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

test('check-config and serve refuse the same file with the same report', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfgcli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'bad.yaml');
  writeFileSync(
    file,
    [
      `stateDir: ${join(dir, 'state')}`,
      `admin: { socket: ${join(dir, 'admin.sock')}, sokcet: x }`,
      'guest:',
      '  listen: [{ host: not-an-ip, port: 0 }]',
      '  headersTimeoutMs: 20000',
      '  requestTimeoutMs: 10000',
      '  rateLimit: { burst: 0 }',
      '',
    ].join('\n'),
  );
  const check = metad('check-config', file);
  const serve = metad('serve', '--config', file);
  assert.equal(check.status, 2);
  assert.equal(serve.status, 2);
  assert.equal(check.stdout, '');
  assert.equal(serve.stderr, check.stderr);
  const lines = check.stderr.split('\n').map((l) => l.trim());
  for (const expected of [
    '/admin/sokcet: unknown key (known here: socket, socketMode, maxBodyBytes)',
    '/guest/listen/0/host: must be an IP address (IPv4 or IPv6)',
    '/guest/rateLimit/burst: must be >= 1',
    '/guest/headersTimeoutMs: must not exceed /guest/requestTimeoutMs',
  ]) {
    assert.ok(lines.includes(expected), `missing "${expected}" in:\n${check.stderr}`);
  }
});

test('serve refuses a routed config whose tools are missing like check-config: exit 2, which systemd does not restart', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfgcli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'routed.yaml');
  const missing = join(dir, 'not-installed', 'ip');
  writeFileSync(
    file,
    [
      `stateDir: ${join(dir, 'state')}`,
      `admin: { socket: ${join(dir, 'admin.sock')} }`,
      `network: { mode: routed, ipPath: ${missing}, runDir: ${join(dir, 'run')} }`,
      '',
    ].join('\n'),
  );
  const check = metad('check-config', file);
  const serve = metad('serve', '--config', file);
  assert.equal(check.status, 2);
  // Before, serve got past its checks, failed later and exited 1: the unit restarted it every 2 s.
  assert.equal(serve.status, 2, serve.stderr);
  assert.equal(serve.stderr, check.stderr);
  assert.match(check.stderr, /\/network\/ipPath: .* is not an executable file: install the Debian package iproute2/);
});

test('check-config accepts what serve accepts and prints the effective configuration', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfgcli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'good.json');
  writeFileSync(file, JSON.stringify({ guest: { listen: [{ host: '::1', port: 0 }, { host: '127.0.0.1' }] } }));
  const check = metad('check-config', file);
  assert.equal(check.status, 0, check.stderr);
  const effective = JSON.parse(check.stdout) as { guest: { listen: unknown[] } };
  assert.deepEqual(effective.guest.listen, [
    { host: '::1', port: 0 },
    { host: '127.0.0.1', port: 80 },
  ]);
});

test('metad config-reference prints docs/configuration.md', () => {
  const r = metad('config-reference');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, readFileSync(fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url)), 'utf8'));
});

test('check-config with routed mode warns (exit 0) about a missing appliance image, naming the key and the fix; not with appliance.enabled false', (t) => {
  if (skipOrFail(t, isRoot() ? undefined : 'routed mode needs CAP_NET_ADMIN for check-config (root)')) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfgcli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'routed.json');
  writeFileSync(file, JSON.stringify({ network: { mode: 'routed' }, appliance: { cacheDir: join(dir, 'cache') } }));
  const check = metad('check-config', file);
  assert.equal(check.status, 0, check.stderr);
  assert.ok(
    check.stderr.includes(
      `metad: warning: /appliance/imageDir: no readable appliance image at ${join(dir, 'cache', 'current')}: run \`metad appliance build\``,
    ),
    check.stderr,
  );
  assert.equal((JSON.parse(check.stdout) as { appliance: { virtType: string } }).appliance.virtType, 'auto');
  // A host that never installs says so, and hears nothing about appliances (nor the binding).
  const off = join(dir, 'routed-no-installs.json');
  writeFileSync(off, JSON.stringify({ network: { mode: 'routed' }, appliance: { enabled: false, cacheDir: join(dir, 'cache') } }));
  const quiet = metad('check-config', off);
  assert.equal(quiet.status, 0, quiet.stderr);
  assert.equal(quiet.stderr, '', 'no warning on a host that never installs');
  assert.equal((JSON.parse(quiet.stdout) as { appliance: { enabled: boolean } }).appliance.enabled, false);
});

test('check-config run as the daemon user finds a state dir it cannot write and a key it cannot read (exit 2, path and fix named)', (t) => {
  if (skipOrFail(t, isRoot() ? undefined : 'needs root (setpriv to another user)')) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfgcli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const state = join(dir, 'state');
  mkdirSync(state, { mode: 0o700 }); // root's, as after `sudo metad serve` once
  writeFileSync(join(state, 'private.key'), Buffer.alloc(32), { mode: 0o600 });
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ stateDir: state, guest: { listen: [{ host: '127.0.0.1', port: 0 }] } }), { mode: 0o644 });
  const asNobody = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'check-config', file], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, METAD_CONFIG: '' },
  });
  assert.equal(asNobody.status, 2, asNobody.stderr);
  assert.match(asNobody.stderr, new RegExp(`/stateDir: ${state} is not writable by this user \\(uid 65534\\) \\(chown -R`));
  assert.equal(metad('check-config', file).status, 0, 'root may');
});
