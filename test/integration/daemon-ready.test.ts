/**
 * Readiness without polling: under systemd (Type=notify) `metad serve` sends READY=1 once both
 * doors listen. A python3 datagram socket stands in for systemd's NOTIFY_SOCKET (node has no
 * unix datagram sockets); systemd-notify is the real one from the systemd package. Scripts use
 * `metadctl health --wait [--timeout S]`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from '../support/daemon.js';
import { hasCommand, skipOrFail } from '../support/env.js';
import { startProcess, LOOPBACK, writeConfig } from '../support/process.js';
import { runMetadctl } from '../support/metadctl-run.js';
import { until } from '../support/wait.js';

const ctl = runMetadctl;

// recv() without room for ancillary data: the kernel closes the barrier fd systemd-notify passes,
// which is how systemd acknowledges (systemd-notify then exits 0).
const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)
`;

test('metad serve: READY=1 reaches NOTIFY_SOCKET once the doors listen (Type=notify)', async (t) => {
  if (
    skipOrFail(t, hasCommand('systemd-notify') && hasCommand('python3') ? undefined : 'needs systemd-notify (package systemd) and python3')
  )
    return;
  const dir = mkdtempSync(join(tmpdir(), 'metad-ready-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const notifySocket = join(dir, 'notify.sock');
  const receiver = spawn('python3', ['-c', RECEIVER, notifySocket], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => receiver.kill('SIGKILL'));
  let got = '';
  receiver.stdout.on('data', (c: Buffer) => (got += c.toString()));
  await until('the stand-in for systemd bound NOTIFY_SOCKET', () => got.includes('bound'));

  const sock = join(dir, 'admin.sock');
  const p = await startProcess(writeConfig(dir, LOOPBACK), sock, { env: { ...process.env, NOTIFY_SOCKET: notifySocket } });
  t.after(() => p.child.kill('SIGKILL'));
  await until('the service manager hears that metad is ready (READY=1)', () => got.includes('READY=1'));
  const r = await request({ host: '127.0.0.1', port: p.guestPort, path: '/' });
  assert.equal(r.status, 404, 'and the guest door answers (an unknown source: 404)');
  assert.ok(!p.out().includes('readiness notification failed'));
});

test('metadctl health --wait: returns once a starting daemon answers; gives up after --timeout with exit 3', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-wait-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'admin.sock');
  const early = await ctl(['--socket', sock, 'health']);
  assert.equal(early.code, 3, 'without --wait: no daemon yet, exit 3 at once');

  const waiting = ctl(['--socket', sock, 'health', '--wait', '--timeout', '60']);
  const p = await startProcess(writeConfig(dir, LOOPBACK), sock);
  t.after(() => p.child.kill('SIGKILL'));
  const r = await waiting;
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ok \(0 instances\), metad \d+\.\d+\.\d+/m);

  p.child.kill('SIGTERM');
  await new Promise((res) => p.child.once('exit', res));
  const gone = await ctl(['--socket', sock, 'health', '--wait', '--timeout', '1']);
  assert.equal(gone.code, 3, 'still unreachable after the timeout: exit 3');
  assert.match(gone.err, /cannot connect to/);
  const usage = await ctl(['--socket', sock, 'health', '--timeout', '5']);
  assert.equal(usage.code, 2, '--timeout without --wait is a usage error');
});
