/**
 * The real `metad serve` process: socket mode, crash safety (every acknowledged registration
 * survives kill -9), clean SIGTERM, check-config, and a full or read-only state dir
 * (a real tmpfs) answering 503 while the daemon keeps serving and loses nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync, readdirSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, sampleInstance, type Reply } from '../support/daemon.js';
import { CLI, admin, startProcess, LOOPBACK, writeConfig } from '../support/process.js';
import { isRoot, skipOrFail } from '../support/env.js';
import { until } from '../support/wait.js';

type ErrorBody = { code: string; message: string };
const names = (r: Reply): string[] => (r.json as { instances: { name: string }[] }).instances.map((i) => i.name);

test('metad serve: socket 0660, kill -9 loses no acknowledged write, SIGTERM is clean', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-proc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'admin.sock');
  const cfg = writeConfig(dir, LOOPBACK);
  let p = await startProcess(cfg, sock);
  t.after(() => p.child.kill('SIGKILL'));

  await t.test('the admin socket is 0660 and the private key 0600', () => {
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    assert.equal(statSync(join(dir, 'state', 'private.key')).mode & 0o777, 0o600);
  });

  await t.test('kill -9 with registrations in flight: every acknowledged one is there after the restart, nothing partial', async (st) => {
    // Fire registrations and kill -9 once the first is acknowledged, while the others are in flight.
    const acked: string[] = [];
    const inflight = Array.from({ length: 60 }, (_, i) =>
      admin(sock, 'PUT', `/v1/instances/vm${i}`, sampleInstance(i)).then(
        (r) => {
          if (r.status === 201) acked.push(`vm${i}`);
        },
        () => undefined,
      ),
    );
    await until('a first registration acknowledged', () => acked.length > 0);
    p.child.kill('SIGKILL');
    await Promise.all(inflight);
    await new Promise((r) => p.child.once('exit', r));
    assert.ok(existsSync(sock), 'kill -9 leaves a stale socket behind');
    st.diagnostic(`${String(acked.length)} of 60 registrations acknowledged before kill -9`);

    p = await startProcess(cfg, sock);
    const list = names(await admin(sock, 'GET', '/v1/instances'));
    for (const name of acked) assert.ok(list.includes(name), `acknowledged ${name} lost after kill -9`);
    assert.ok(!readdirSync(join(dir, 'state', 'instances')).some((f) => f.startsWith('.tmp-')));
    assert.match(p.out(), /"quarantined":0/);
  });

  await t.test('SIGTERM: exit 0, the socket removed, "metad stopped" logged', async () => {
    p.child.kill('SIGTERM');
    const code = await new Promise((r) => p.child.once('exit', r));
    assert.equal(code, 0);
    assert.ok(!existsSync(sock), 'a clean stop removes the socket');
    assert.match(p.out(), /metad stopped/);
  });
});

test('metad check-config: lists every problem and exits 2; prints the effective config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-cfg-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'stateDir: 3\nguest:\n  commRange: x\nnope: 1\n');
    let res = { status: 0, out: '' };
    try {
      execFileSync(process.execPath, [CLI, 'check-config', bad], { stdio: 'pipe' });
    } catch (err) {
      const e = err as { status: number; stderr: Buffer };
      res = { status: e.status, out: e.stderr.toString() };
    }
    assert.equal(res.status, 2);
    assert.match(res.out, /\/stateDir/);
    assert.match(res.out, /\/guest\/commRange/);
    assert.match(res.out, /\/nope: unknown key/);
    const good = writeConfig(dir, LOOPBACK);
    const effective = JSON.parse(execFileSync(process.execPath, [CLI, 'check-config', good]).toString()) as {
      secrets: { defaultTtlSec: number };
    };
    assert.equal(effective.secrets.defaultTtlSec, 7200);
    const help = execFileSync(process.execPath, [CLI, 'serve', '--help']).toString();
    assert.match(help, /--config/);
    assert.match(help, /METAD_STATE_DIR/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('state dir full (ENOSPC) or read-only: 503, nothing lost, nothing partial, still serving', async (t) => {
  if (skipOrFail(t, isRoot() ? undefined : 'needs root to mount a small tmpfs')) return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-full-'));
  const state = join(dir, 'state');
  mkdirSync(state);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96k,mode=0700', 'metad-test', state]);
  t.after(() => {
    try {
      execFileSync('umount', ['-l', state]);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const sock = join(dir, 'admin.sock');
  const p = await startProcess(writeConfig(dir, { ...LOOPBACK, stateDir: state }), sock);
  t.after(() => p.child.kill('SIGKILL'));

  const filler = 'x'.repeat(3000);
  const acked: string[] = [];

  await t.test('full (ENOSPC): 503 Unavailable naming ENOSPC, no partial file, exactly the acknowledged instances', async () => {
    let full = null;
    for (let i = 0; i < 200 && !full; i++) {
      const r = await admin(
        sock,
        'PUT',
        `/v1/instances/vm${i}`,
        sampleInstance(i, { params: { public: { a: filler, b: filler, c: filler } } }),
      );
      if (r.status === 201) acked.push(`vm${i}`);
      else full = r;
    }
    assert.ok(full, 'the tmpfs should fill up');
    assert.equal(full.status, 503);
    assert.equal((full.json as ErrorBody).code, 'Unavailable');
    assert.match((full.json as ErrorBody).message, /ENOSPC/);
    assert.ok(!readdirSync(join(state, 'instances')).some((f) => f.startsWith('.tmp-')), 'no partial file left');
    const list = names(await admin(sock, 'GET', '/v1/instances'));
    assert.deepEqual(list.sort(), acked.sort(), 'exactly the acknowledged instances exist');
  });

  await t.test('read-only (EROFS): 503 naming EROFS; the failed write changes nothing in memory', async () => {
    assert.ok(acked.length > 0, 'an instance registered before the state dir filled up');
    execFileSync('mount', ['-o', 'remount,ro', state]);
    const r = await admin(sock, 'PATCH', `/v1/instances/${acked[0]!}`, { hostname: 'changed' });
    assert.equal(r.status, 503);
    assert.match((r.json as ErrorBody).message, /EROFS/);
    const v = await admin(sock, 'GET', `/v1/instances/${acked[0]!}`);
    assert.equal(v.status, 200);
    assert.notEqual(
      (v.json as { instance: { hostname: string } }).instance.hostname,
      'changed',
      'a failed write changes nothing in memory',
    );
  });
});

test('quick start: `metad serve --demo` serves the sample guest and metadctl reaches it', async (t) => {
  const child = spawn(process.execPath, [CLI, 'serve', '--demo', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  child.stdout.resume();
  await until('the demo banner', () => child.exitCode !== null || err.includes('admin door:'), 20_000);
  const port = Number(/127\.0\.0\.1:(\d+)\/latest\/meta-data\//.exec(err)?.[1]);
  const sock = /--socket (\S+) list/.exec(err)?.[1];
  assert.ok(port > 0 && sock, `banner names the guest port and the socket: ${err}`);
  const r = await request({ host: '127.0.0.1', port, path: '/latest/meta-data/instance-id' });
  assert.equal(r.status, 200);
  assert.equal(r.text, 'i-0123456789abcdef0', 'curl from this machine is the demo guest');
  const ctl = fileURLToPath(new URL('../../cli/metadctl.js', import.meta.url));
  const list = execFileSync(process.execPath, [ctl, '--socket', sock, 'list']).toString();
  assert.match(list, /demo1\s+6f0c2b8e/);
  const stateDir = /(\/\S+metad-demo-\w+)\//.exec(sock)?.[1];
  child.kill('SIGTERM');
  assert.equal(await new Promise((res) => child.once('exit', res)), 0);
  assert.ok(stateDir && !existsSync(stateDir), 'the demo leaves no temp dir behind');
});

test('metad serve: a guest address that is not on this machine fails with a hint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-bad-'));
  try {
    // 192.0.2.1 is TEST-NET-1: never configured here, and binding sends no traffic.
    const cfg = writeConfig(dir, { guest: { listen: [{ host: '192.0.2.1', port: 8080 }], commRange: '127.0.0.0/8' } });
    let res = { status: 0, err: '' };
    try {
      execFileSync(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: 'pipe', timeout: 10_000 });
    } catch (e) {
      const x = e as { status: number; stderr: Buffer };
      res = { status: x.status, err: x.stderr.toString() };
    }
    assert.equal(res.status, 1);
    assert.match(res.err, /EADDRNOTAVAIL/);
    assert.match(res.err, /hint: 192\.0\.2\.1 is not on any interface/);
    assert.ok(!existsSync(join(dir, 'admin.sock')), 'a failed start leaves no admin socket behind');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('metad serve: a state dir that cannot be created (under /proc) fails the start with a clear message', () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-proc-dir-'));
  try {
    // The old start spun at ~90 % CPU forever here (node's recursive mkdir loops on ENOENT).
    const cfg = writeConfig(dir, { ...LOOPBACK, stateDir: '/proc/metad-test-nonexistent/state' });
    let res = { status: null as number | null, err: '' };
    try {
      execFileSync(process.execPath, [CLI, 'serve', '--config', cfg], { stdio: 'pipe', timeout: 30_000 });
    } catch (e) {
      const x = e as { status: number | null; stderr: Buffer };
      res = { status: x.status, err: x.stderr.toString() };
    }
    assert.equal(res.status, 1, `exits 1 (not killed by the timeout): ${res.err}`);
    assert.match(res.err, /cannot start: cannot create directory \/proc\/metad-test-nonexistent \(E[A-Z]+\)/);
    assert.match(res.err, /hint: .*stateDir/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
