/**
 * Signals to the real `metad serve` process: SIGUSR1 never opens node's inspector (not after
 * the start, not during it) and the daemon keeps serving; SIGHUP reloads the configuration.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, sampleInstance } from '../support/daemon.js';
import { until } from '../support/wait.js';
import { spawn } from 'node:child_process';
import {
  CLI,
  admin,
  catchesSignal,
  listeningTcpPorts,
  startProcess,
  stopChild,
  LOOPBACK,
  writeConfig,
  type DaemonProcess,
} from '../support/process.js';

const SIGUSR1 = 10;
const SIGHUP = 1;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'metad-sig-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function servesGuest(p: DaemonProcess, sock: string): Promise<void> {
  await admin(sock, 'PUT', '/v1/instances/vm1', sampleInstance(1));
  const r = await request({ host: '127.0.0.1', port: p.guestPort, localAddress: '127.0.0.2', path: '/latest/meta-data/hostname' });
  assert.equal(r.status, 200);
  assert.equal(r.text, 'vm1');
}

/**
 * Starts metad with `signal` sent every 5 ms from the moment the process catches it (SigCgt;
 * before that the default action would end any process) until "metad started".
 */
async function startUnderSignalStorm(
  t: { after(fn: () => void): void },
  signal: 'SIGUSR1' | 'SIGHUP',
): Promise<{ p: DaemonProcess; sock: string }> {
  const dir = tempDir(t);
  const sock = join(dir, 'admin.sock');
  const signo = signal === 'SIGUSR1' ? SIGUSR1 : SIGHUP;
  let sender: NodeJS.Timeout | undefined;
  t.after(() => clearInterval(sender));
  const p = await startProcess(writeConfig(dir, LOOPBACK), sock, {}, async (child) => {
    const pid = child.pid!;
    await until(`the process catches ${signal}`, () => child.exitCode !== null || catchesSignal(pid, signo), { every: 1 });
    sender = setInterval(() => child.kill(signal), 5);
  });
  clearInterval(sender);
  t.after(() => p.child.kill('SIGKILL'));
  return { p, sock };
}

test('SIGUSR1 opens no inspector: no new listener, logged, still serving', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'admin.sock');
  const p = await startProcess(writeConfig(dir, LOOPBACK), sock);
  t.after(() => p.child.kill('SIGKILL'));
  const pid = p.child.pid!;
  const before = listeningTcpPorts(pid);
  assert.deepEqual(before, [p.guestPort], 'only the guest door listens on TCP');
  process.kill(pid, 'SIGUSR1');
  // The positive signal first: the daemon has handled this SIGUSR1 (and said so).
  await until('"signal ignored" logged', () => p.out().includes('"msg":"signal ignored"'));
  assert.match(p.out(), /"signal":"SIGUSR1".*"msg":"signal ignored"/);
  assert.deepEqual(listeningTcpPorts(pid), before, 'no inspector port (9229 or any other) opened');
  assert.ok(!p.out().includes('Debugger listening'));
  assert.equal(p.child.exitCode, null);
  await servesGuest(p, sock);
});

test('SIGUSR1 all through the start: the inspector is closed before the daemon serves', async (t) => {
  // The early signals reach node before metad's entry module runs (on node 20 they open the
  // inspector), the later ones metad itself.
  const { p, sock } = await startUnderSignalStorm(t, 'SIGUSR1');
  // The positive signal first: requests sent after the storm are answered, so the event loop has
  // gone round since the last signal: an inspector start it queued (node opens it on the main
  // loop, bound before its callback returns) would be listening by now.
  await servesGuest(p, sock);
  assert.deepEqual(listeningTcpPorts(p.child.pid!), [p.guestPort], 'no inspector port');
  assert.equal(p.child.exitCode, null);
});

test('SIGHUP reloads the configuration: live keys change, others are reported, a bad file changes nothing; never exits', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'admin.sock');
  const cfg = writeConfig(dir, LOOPBACK);
  const p = await startProcess(cfg, sock);
  t.after(() => p.child.kill('SIGKILL'));
  await admin(sock, 'PUT', '/v1/instances/vm1', sampleInstance(1));
  const guest = async (): Promise<number> =>
    (await request({ host: '127.0.0.1', port: p.guestPort, localAddress: '127.0.0.2', path: '/latest/meta-data/hostname' })).status;
  assert.deepEqual([await guest(), await guest(), await guest()], [200, 200, 200]);
  const reloads = (): number =>
    p
      .out()
      .split('\n')
      .filter((l) => l.includes('"msg":"configuration reload')).length;
  const hup = async (): Promise<void> => {
    const n = reloads();
    process.kill(p.child.pid!, 'SIGHUP');
    await until('the reload logged', () => reloads() > n);
  };

  // A tight rate limit, debug logging and a new state dir (which needs a restart).
  writeConfig(dir, {
    stateDir: join(dir, 'elsewhere'),
    log: { level: 'debug' },
    guest: { ...LOOPBACK.guest, rateLimit: { ratePerSec: 0.1, burst: 1 } },
  });
  await hup();
  assert.match(
    p.out(),
    /"applied":\["guest\.rateLimit\.burst","guest\.rateLimit\.ratePerSec","log\.level"\],"needsRestart":\["stateDir"\].*"msg":"configuration reloaded"/,
  );
  // Logged right after the reload line, possibly in a later write: wait for it too.
  await until('"configuration change needs a restart" logged', () => p.out().includes('"msg":"configuration change needs a restart"'));
  assert.match(p.out(), /"keys":\["stateDir"\].*"msg":"configuration change needs a restart"/);
  assert.deepEqual([await guest(), await guest()], [200, 429], 'the new rate limit is in effect');
  const r = await admin(sock, 'GET', '/v1/instances');
  assert.equal(r.status, 200, 'the state dir in use is still the old one');
  await until('"admin request" logged (debug)', () => p.out().includes('"msg":"admin request"'));
  assert.match(p.out(), /"msg":"admin request"/, 'debug lines are logged now');

  writeFileSync(cfg, '{ "guest": { "rateLimit": { "burst": "many" } } }');
  await hup();
  assert.match(p.out(), /"problems":\[[^\]]*burst[^\]]*\].*"msg":"configuration reload failed"/);
  assert.equal(await guest(), 429, 'a bad file changes nothing');
  assert.equal(p.child.exitCode, null);
  assert.equal(p.child.signalCode, null, 'SIGHUP never ends the daemon');
});

test('SIGHUP in the demo: the same temp dir, nothing needs a restart', async (t) => {
  const child = spawn(process.execPath, [CLI, 'serve', '--demo', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => stopChild(child)); // SIGTERM: the demo removes its temp dir
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  await until('the demo started', () => child.exitCode !== null || out.includes('admin door:'), 20_000);
  assert.match(out, /admin door:/);
  child.kill('SIGHUP');
  await until('"configuration reloaded" logged', () => out.includes('"msg":"configuration reloaded"'));
  assert.match(out, /"applied":\[\],"needsRestart":\[\].*"msg":"configuration reloaded"/);
});

test('SIGHUP all through the start never ends the daemon', async (t) => {
  // The reload handler exists only once the daemon runs; the early signals used to kill it.
  const { p, sock } = await startUnderSignalStorm(t, 'SIGHUP');
  assert.equal(p.child.signalCode, null);
  await servesGuest(p, sock);
});
