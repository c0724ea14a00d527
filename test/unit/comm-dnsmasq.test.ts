/**
 * The dnsmasq supervisor with a fake child (issue 13, items 2-4): hosts changes reach dnsmasq by
 * SIGHUP, not by a restart, except when a NIC is removed or readdressed (its in-memory lease
 * would keep the address); a child that was sent SIGHUP and then dies is still respawned; its
 * log lines become catalogued events with fields, sampled per MAC and type; as root it drops to
 * the configured user.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { BACKOFF_MS, DnsmasqSupervisor, HEALTHY_MS, dnsmasqIdentity, parseDnsmasqLine } from '../../daemon/comm/dnsmasq.js';
import { LogSampler } from '../../daemon/log/log-sampler.js';
import type { CommNic } from '../../daemon/comm/plan.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { ROUTED_SETTINGS } from '../support/comm-settings.js';
import { until } from '../support/wait.js';

const nic = (i: number, ipv4 = `169.254.1.${String(i)}`): CommNic => ({
  instance: `vm${String(i)}`,
  tap: `t${String(i)}`,
  ipv4,
  mac: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`,
});

interface FakeChild {
  pid: number;
  args: readonly string[];
  signals: string[];
  stderr: PassThrough;
  die(code: number): void;
}

/** A supervisor with a fake dnsmasq on the fake clock; stopped and its dir removed after the test. */
function harness(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'metad-dnsmasq-'));
  const clock = new FakeClock();
  const { sink, log } = sinkLogger();
  const children: FakeChild[] = [];
  const hosts = join(dir, 'dhcp-hosts');
  const spawnChild = (_file: string, args: readonly string[]): ChildProcess => {
    const ee = new EventEmitter() as EventEmitter & { pid: number; stderr: PassThrough; killed: boolean; kill(sig: string): boolean };
    const stderr = new PassThrough();
    const c: FakeChild = {
      pid: 1000 + children.length,
      args,
      signals: [],
      stderr,
      die: (code) => {
        stderr.end();
        setImmediate(() => ee.emit('close', code, null));
      },
    };
    Object.assign(ee, { pid: c.pid, stderr, killed: false });
    ee.kill = (sig: string) => {
      c.signals.push(sig);
      ee.killed = true; // as node does for any signal sent
      if (sig === 'SIGHUP') setImmediate(() => stderr.write(`dnsmasq-dhcp[${String(c.pid)}]: read ${hosts}\n`));
      if (sig === 'SIGTERM') c.die(0);
      return true;
    };
    setImmediate(() =>
      stderr.write(`dnsmasq[${String(c.pid)}]: started, version 2.90 DNS disabled\ndnsmasq-dhcp[${String(c.pid)}]: read ${hosts}\n`),
    );
    children.push(c);
    return ee as unknown as ChildProcess;
  };
  const sup = new DnsmasqSupervisor({
    path: '/usr/sbin/dnsmasq',
    dir,
    settings: ROUTED_SETTINGS,
    leaseTimeSec: 3600,
    log,
    clock,
    sampler: new LogSampler(10_000),
    spawnChild,
  });
  t.after(async () => {
    await sup.stop();
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 20 });
  });
  return { dir, clock, sink, children, sup, hosts };
}

test('300 NICs registered one by one: one start, then only rereads (SIGHUP); the hosts file always whole', async (t) => {
  const h = harness(t);
  const nics: CommNic[] = [];
  for (let i = 1; i <= 300; i++) {
    nics.push(nic(i, `169.254.${String(i >> 8)}.${String(i & 255)}`));
    await h.sup.update(nics);
  }
  assert.equal(h.children.length, 1, 'dnsmasq was restarted');
  assert.deepEqual(h.sup.counts, { starts: 1, rereads: 299 });
  assert.equal(h.children[0]!.signals.filter((s) => s === 'SIGHUP').length, 299);
  assert.equal(readFileSync(h.hosts, 'utf8').trim().split('\n').length, 301);
  assert.equal(h.sup.served().size, 300);
});

test('a NIC removed or readdressed restarts dnsmasq (its lease would hold the address); the same hosts again do nothing', async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1), nic(2)]);
  await h.sup.update([nic(1), nic(2)]);
  assert.equal(h.children.length, 1);
  assert.deepEqual(h.children[0]!.signals, []);
  await h.sup.update([nic(1)]);
  assert.equal(h.children.length, 2, 'a removed NIC did not restart dnsmasq');
  assert.deepEqual(h.children[0]!.signals, ['SIGTERM']);
  await h.sup.update([nic(1, '169.254.9.9')]);
  assert.equal(h.children.length, 3, 'a readdressed NIC did not restart dnsmasq');
});

test('a dnsmasq that was sent SIGHUP and then dies is still restarted', async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1)]);
  await h.sup.update([nic(1), nic(2)]);
  assert.deepEqual(h.children[0]!.signals, ['SIGHUP']);
  h.children[0]!.die(1);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.match(h.sink.text, /"msg":"dnsmasq exited; restarting it"/);
  await h.clock.advance(250);
  assert.equal(h.children.length, 2, 'not respawned');
});

test('restart backoff on the clock: 250 ms, 1 s, 5 s, then 30 s each; a dnsmasq that ran over a minute restarts after 250 ms again', async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1)]);
  const exits = (): number => h.sink.records().filter((r) => r['msg'] === 'dnsmasq exited; restarting it').length;
  /** The running child dies; no new one before `ms` have passed on the clock, one at `ms`. */
  const dieAndRestartAfter = async (ms: number, what: string): Promise<void> => {
    const n = h.children.length;
    const seen = exits();
    h.children[n - 1]!.die(1);
    await until('the exit logged', () => exits() === seen + 1);
    await h.clock.advance(ms - 1);
    assert.equal(h.children.length, n, `${what}: restarted before ${String(ms)} ms`);
    await h.clock.advance(1);
    assert.equal(h.children.length, n + 1, `${what}: not restarted at ${String(ms)} ms`);
    assert.equal(h.sup.pid, h.children[n]!.pid);
  };
  assert.deepEqual(BACKOFF_MS, [250, 1000, 5000, 30000]);
  await dieAndRestartAfter(250, '1st exit');
  await dieAndRestartAfter(1000, '2nd exit');
  await dieAndRestartAfter(5000, '3rd exit');
  await dieAndRestartAfter(30000, '4th exit');
  await dieAndRestartAfter(30000, '5th exit (the longest wait stays)');
  // A wall-clock step (NTP, date -s) is not running time: the backoff does not start over.
  h.clock.jumpWall(HEALTHY_MS * 10);
  await dieAndRestartAfter(30000, 'after a wall-clock step');
  // Running just at the limit is not healthy yet; running past it is.
  await h.clock.advance(HEALTHY_MS);
  await dieAndRestartAfter(30000, 'after running exactly a minute');
  await h.clock.advance(HEALTHY_MS + 1);
  await dieAndRestartAfter(250, 'after running over a minute');
  await dieAndRestartAfter(1000, 'and again it grows');
});

test('stopped during the restart backoff: dnsmasq is not started again', async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1)]);
  h.children[0]!.die(1);
  await until('the restart waits on the clock', () => h.clock.pending === 1);
  await h.sup.stop();
  assert.equal(h.clock.pending, 0, 'the backoff sleep was not cancelled');
  await h.clock.advance(BACKOFF_MS[0]);
  assert.equal(h.children.length, 1, 'started after stop()');
  assert.equal(h.sup.pid, undefined);
});

test("dnsmasq's log: DHCP messages parsed into fields", () => {
  assert.deepEqual(parseDnsmasqLine('dnsmasq-dhcp[14104]: DHCPOFFER(tapB) 169.254.1.11 02:00:00:00:01:0B '), {
    kind: 'message',
    type: 'OFFER',
    iface: 'tapB',
    ipv4: '169.254.1.11',
    mac: '02:00:00:00:01:0b',
    text: 'DHCPOFFER(tapB) 169.254.1.11 02:00:00:00:01:0B',
  });
  assert.deepEqual(parseDnsmasqLine('dnsmasq-dhcp[1]: DHCPDISCOVER(tapB) 02:00:00:00:01:0b no address available'), {
    kind: 'refused',
    type: 'DISCOVER',
    iface: 'tapB',
    mac: '02:00:00:00:01:0b',
    detail: 'no address available',
    text: 'DHCPDISCOVER(tapB) 02:00:00:00:01:0b no address available',
  });
  assert.equal(parseDnsmasqLine('dnsmasq-dhcp[1]: DHCPDECLINE(mtap1) 169.254.1.11 02:00:00:00:01:0b').kind, 'refused');
  assert.equal(parseDnsmasqLine('dnsmasq-dhcp[1]: DHCPNAK(mtap1) 169.254.1.11 02:00:00:00:01:0a wrong address').kind, 'refused');
  assert.deepEqual(parseDnsmasqLine('dnsmasq-dhcp[1]: DHCPACK(mtap1) 169.254.1.10 02:00:00:00:01:0a alpha'), {
    kind: 'message',
    type: 'ACK',
    iface: 'mtap1',
    ipv4: '169.254.1.10',
    mac: '02:00:00:00:01:0a',
    detail: 'alpha',
    text: 'DHCPACK(mtap1) 169.254.1.10 02:00:00:00:01:0a alpha',
  });
  // with --log-dhcp the xid comes first
  assert.equal(parseDnsmasqLine('dnsmasq-dhcp[1]: 3163029534 DHCPREQUEST(tapB) 169.254.1.11 02:00:00:00:01:0b ').type, 'REQUEST');
  assert.deepEqual(parseDnsmasqLine('dnsmasq[7]: started, version 2.90 DNS disabled'), {
    kind: 'other',
    text: 'started, version 2.90 DNS disabled',
  });
  assert.equal(parseDnsmasqLine(`dnsmasq[7]: ${'x'.repeat(500)}`).text.length, 200);
});

test("dnsmasq's log becomes metad's: events with fields, sampled per MAC and type, suppressed counts reported", async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1)]);
  const say = async (line: string): Promise<void> => {
    h.children[0]!.stderr.write(`dnsmasq-dhcp[${String(h.children[0]!.pid)}]: ${line}\n`);
    await new Promise((r) => setImmediate(r));
  };
  for (let i = 0; i < 50; i++) await say('DHCPDECLINE(t1) 169.254.1.1 02:00:00:00:01:01');
  await say('DHCPDISCOVER(t1) 02:00:00:00:01:01');
  await say('failed to read /x: Permission denied');
  const recs = h.sink.records();
  const refused = recs.filter((r) => r['msg'] === 'dhcp request refused');
  assert.equal(refused.length, 1, '50 DECLINEs from one MAC within 10 s: one line');
  assert.deepEqual(
    [refused[0]!['type'], refused[0]!['iface'], refused[0]!['ipv4'], refused[0]!['mac'], refused[0]!['level']],
    ['DECLINE', 't1', '169.254.1.1', '02:00:00:00:01:01', 40],
  );
  assert.ok(recs.some((r) => r['msg'] === 'dhcp message' && r['type'] === 'DISCOVER'));
  assert.ok(recs.some((r) => r['msg'] === 'dnsmasq reports a problem' && r['line'] === 'failed to read /x: Permission denied'));
  assert.ok(recs.some((r) => r['msg'] === 'dnsmasq log' && r['line'] === 'started, version 2.90 DNS disabled'));
  await h.clock.advance(10_000);
  await say('DHCPDECLINE(t1) 169.254.1.1 02:00:00:00:01:01');
  const again = h.sink.records().filter((r) => r['msg'] === 'dhcp request refused');
  assert.equal(again.length, 2);
  assert.equal(again[1]!['suppressed'], 49);
});

test('as root dnsmasq drops to network.dhcp.user (default dnsmasq, else nobody) with its group; otherwise it runs as metad', async () => {
  assert.deepEqual(await dnsmasqIdentity('nobody', 1000), { user: userInfo().username });
  const nobody = await dnsmasqIdentity('nobody', 0);
  assert.equal(nobody.user, 'nobody');
  assert.ok(nobody.group !== undefined && nobody.group !== 'root', JSON.stringify(nobody));
  const dflt = await dnsmasqIdentity(undefined, 0);
  assert.ok(['dnsmasq', 'nobody'].includes(dflt.user), dflt.user);
  assert.deepEqual(await dnsmasqIdentity('no-such-user-x', 0), { user: 'no-such-user-x' });
});

test('status: leases from its DHCPACKs until they end or are released, none after a restart; restarts counted', async (t) => {
  const h = harness(t);
  await h.sup.update([nic(1), nic(2)]);
  assert.deepEqual(h.sup.status(), { running: true, pid: 1000, restarts: 0, rereads: 0, leases: 0 });
  const say = async (line: string): Promise<void> => {
    const c = h.children[h.children.length - 1]!;
    c.stderr.write(`dnsmasq-dhcp[${String(c.pid)}]: ${line}\n`);
    await new Promise((r) => setImmediate(r));
  };
  await say('DHCPOFFER(t1) 169.254.1.1 02:00:00:00:01:01');
  assert.equal(h.sup.status().leases, 0, 'an offer is no lease');
  await say('DHCPACK(t1) 169.254.1.1 02:00:00:00:01:01 vm1');
  await say('DHCPACK(t2) 169.254.1.2 02:00:00:00:01:02');
  await say('DHCPACK(t1) 169.254.1.1 02:00:00:00:01:01 vm1'); // a renewal: still one lease
  assert.equal(h.sup.status().leases, 2);
  await say('DHCPRELEASE(t2) 169.254.1.2 02:00:00:00:01:02');
  assert.equal(h.sup.status().leases, 1);
  await h.clock.advance(3600 * 1000); // the lease time (3600 s) passed without a renewal
  assert.equal(h.sup.status().leases, 0);
  await say('DHCPACK(t1) 169.254.1.1 02:00:00:00:01:01 vm1');
  assert.equal(h.sup.status().leases, 1);
  await h.sup.update([nic(1)]); // a NIC removed: dnsmasq restarted, with no lease in memory
  assert.deepEqual(h.sup.status(), { running: true, pid: 1001, restarts: 1, rereads: 0, leases: 0 });
});
