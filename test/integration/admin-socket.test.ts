/**
 * The admin socket exists with its final mode from the first instant (no chmod window), even
 * when the daemon runs under a loose umask (000): chmod is stubbed out here, so the mode seen is
 * the one bind(2) created.
 * Also: a live daemon's socket is never stolen (a stale one is replaced: daemon-process.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { mkdtempSync, rmSync, lstatSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { listenAdminSocket } from '../../daemon/process/admin-socket.js';
import { hasCommand, isRoot, skipOrFail } from '../support/env.js';
import { startProcess, LOOPBACK, writeConfig } from '../support/process.js';
import { until } from '../support/wait.js';

// Debian's python3: an unprivileged user may not be able to run another one (e.g. under /root).
const PY = '/usr/bin/python3';

// An unprivileged local user connecting in a tight loop until SIGTERM; prints "connected tries".
const ATTACKER = `
import signal, socket, sys
path = sys.argv[1]
got = tries = 0
def stop(*_):
    print(got, tries, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    s = socket.socket(socket.AF_UNIX)
    tries += 1
    try:
        s.connect(path)
        got += 1
    except OSError:
        pass
    finally:
        s.close()
`;

test('admin socket: created 0660 under umask 000 without any chmod (no window for other users)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-sock-'));
  const server = http.createServer();
  const realChmod = fsp.chmod;
  const oldUmask = process.umask(0o000);
  fsp.chmod = () => Promise.resolve(); // the mode must not depend on a chmod after listen
  syncBuiltinESMExports();
  t.after(() => {
    fsp.chmod = realChmod;
    syncBuiltinESMExports();
    process.umask(oldUmask);
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const sock = join(dir, 'run', 'admin.sock');
  await listenAdminSocket(server, sock, 0o660);
  assert.equal(process.umask(0o000), 0o000, 'the umask is restored');
  assert.ok(lstatSync(sock).isSocket());
  assert.equal(lstatSync(sock).mode & 0o777, 0o660, 'bind created the socket with its final mode');
  assert.equal(lstatSync(join(dir, 'run')).mode & 0o777, 0o750);
});

test("admin socket: a live daemon's socket is never stolen", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-sock-'));
  const sock = join(dir, 'admin.sock');
  const first = http.createServer();
  const second = http.createServer();
  t.after(() => {
    first.close();
    second.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await listenAdminSocket(first, sock, 0o600);
  await assert.rejects(listenAdminSocket(second, sock, 0o600), /another daemon is listening/);
});

test('admin socket: a local user retrying connect() all through a start under umask 000 never gets in', async (t) => {
  if (
    skipOrFail(
      t,
      isRoot() && hasCommand('setpriv') && existsSync(PY) ? undefined : `needs root, setpriv (util-linux) and ${PY} (package python3)`,
    )
  )
    return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-sockrace-'));
  chmodSync(dir, 0o755); // the attacker may reach the socket file; only its mode keeps them out
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'admin.sock');
  const attacker = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', PY, '-c', ATTACKER, sock], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => attacker.kill('SIGKILL'));
  let said = '';
  attacker.stdout.on('data', (c: Buffer) => (said += c.toString()));
  const exited = new Promise((r) => attacker.once('exit', r));
  await until('the unprivileged attacker runs', () => attacker.exitCode !== null || said.includes('ready'));
  assert.match(said, /ready/, 'the unprivileged attacker runs');
  const old = process.umask(0o000); // inherited by the daemon
  let p;
  try {
    p = await startProcess(writeConfig(dir, LOOPBACK), sock);
  } finally {
    process.umask(old);
  }
  const daemon = p;
  t.after(() => daemon.child.kill('SIGKILL'));
  attacker.kill('SIGTERM');
  await exited;
  const [got, tries] = said.replace('ready', '').trim().split(/\s+/).map(Number);
  assert.ok(tries! > 0, 'the attacker did try');
  assert.equal(got, 0, 'no connection from another user was ever accepted');
  assert.equal(lstatSync(sock).mode & 0o777, 0o660);
});
