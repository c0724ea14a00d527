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
import { listenAdminSocket } from '../../daemon/admin-socket.js';

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

test('admin socket: a live daemon\'s socket is never stolen', async (t) => {
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
