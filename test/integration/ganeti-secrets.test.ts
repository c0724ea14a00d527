/**
 * Secrets in Ganeti's flow (daemon/feeds/ganeti-secrets.ts, docs/ganeti.md "When a secret
 * parameter is served"), attacked through the real daemon graph: pushes on the real feed socket,
 * guest reads on the real guest door from 127.0.0.x, nic up/down on the admin door over a fake
 * comm network, a fake clock for the TTL (no sleep). Every test also greps the captured log, the
 * whole state directory and the admin read-backs for the secret value.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { luxiCall } from '../support/luxi.js';
import { ctlAt } from '../support/metadctl-run.js';
import { until } from '../support/wait.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { COMM_NIC_PREFIX } from '../../daemon/feeds/ganeti-map.js';
import type { GanetiSecretsRecord } from '../../daemon/feeds/ganeti-secrets.js';

/** The secret value every test pushes: it must never appear anywhere but in web1's one answer. */
const VALUE = 'xK9-never-anywhere-else-7Qz';
const PARAMS = '/ganeti/latest/os/parameters.json';

/** A push as Ganeti's node daemon sends it: instance `name`, comm address 127.0.0.<host>. */
function push(name: string, host: number, secret: Record<string, string>): Record<string, unknown> {
  return {
    name,
    uuid: `6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e${host.toString(16).padStart(2, '0')}`,
    os: 'noop',
    beparams: { maxmem: 128, vcpus: 1 },
    osparams: { image: 'debian-12' },
    osparams_private: {},
    osparams_secret: secret,
    nics: [
      { name: `${COMM_NIC_PREFIX}${name}`, mac: `52:54:00:00:00:${host.toString(16).padStart(2, '0')}`, ip: `127.0.0.${String(host)}` },
    ],
    disks: [],
  };
}

interface Env {
  dir: string;
  d: TestDaemon;
  socket: string;
  clock: FakeClock;
  net: FakeCommNetwork;
}

async function start(dir: string, secrets: Record<string, unknown> = {}): Promise<Env> {
  const socket = join(dir, 'run', 'ganeti-metad');
  const clock = new FakeClock();
  const net = new FakeCommNetwork();
  const d = await startTestDaemon({
    dir,
    clock,
    commNetwork: net,
    config: { ganeti: { socket, pidFile: join(dir, 'run', 'ganeti-metad.pid'), secrets } },
  });
  await d.daemon.ganeti?.listen();
  return { dir, d, socket, clock, net };
}

async function withDaemon(secrets: Record<string, unknown>, fn: (e: Env) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-gsec-'));
  const e = await start(dir, secrets);
  try {
    await fn(e);
    await e.d.daemon.services.ganetiSecrets?.idle(); // every record written
    noLeak(e);
  } finally {
    await e.d.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function feed(e: Env, name: string, host: number, secret: Record<string, string>): Promise<void> {
  assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push(name, host, secret)]), { success: true, result: [] });
}

/** os/parameters.json of the instance at 127.0.0.<host>, parsed. */
async function params(e: Env, host: number, method = 'GET'): Promise<Record<string, [string, string]>> {
  const r = await e.d.guest(`127.0.0.${String(host)}`, method, PARAMS);
  assert.equal(r.status, 200);
  return method === 'HEAD' ? {} : (r.json as Record<string, [string, string]>);
}

const served = (p: Record<string, [string, string]>): string | undefined => p['ssh-key']?.[0];

/** The instance's Ganeti secret window as GET /v1/jobs shows it. */
async function windowOf(e: Env, name: string): Promise<GanetiSecretsRecord | undefined> {
  const r = await e.d.admin('GET', '/v1/jobs');
  assert.equal(r.status, 200);
  assert.ok(!r.text.includes(VALUE), 'a secret value in GET /v1/jobs');
  const jobs = (r.json as { jobs: { kind?: string; instance: string }[] }).jobs;
  return jobs.find((j) => j.kind === 'ganeti-secrets' && j.instance === name) as GanetiSecretsRecord | undefined;
}

/** The record file as written (after the writes queued so far). */
async function recordFile(e: Env, name: string): Promise<GanetiSecretsRecord> {
  await e.d.daemon.services.ganetiSecrets?.idle();
  return JSON.parse(readFileSync(join(e.dir, 'state', 'ganeti-secrets', `${name}.json`), 'utf8')) as GanetiSecretsRecord;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => join(dir, f))
    .filter((f) => statSync(f).isFile());
}

/** The value is in no log line, no file of the state dir (records included). */
function noLeak(e: Env): void {
  assert.ok(!e.d.sink.text.includes(VALUE), 'a secret value reached the log');
  for (const f of filesUnder(join(e.dir, 'state'))) assert.ok(!readFileSync(f).includes(VALUE), `a secret value reached ${f}`);
}

function unclaimedLogs(e: Env, name: string): Record<string, unknown>[] {
  return e.d.sink.records().filter((r) => r.msg === 'ganeti: secret parameters not claimed' && r.instance === name);
}

describe('Ganeti secret windows: served from the push until the first of claim, TTL, next push, tap down', () => {
  it('claim-once: only the instance gets them, a HEAD and another instance never claim, the first GET does, nothing after it', async () => {
    await withDaemon({}, async (e) => {
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      await feed(e, 'web2', 6, {});
      // Another instance: its own parameters, no secret of web1's, and no claim.
      assert.equal(served(await params(e, 6)), undefined);
      assert.equal(JSON.stringify(await params(e, 6)).includes(VALUE), false);
      // An unknown source: nothing.
      assert.equal((await e.d.guest('127.0.0.99', 'GET', PARAMS)).status, 404);
      await params(e, 5, 'HEAD');
      let w = await windowOf(e, 'web1');
      assert.deepEqual([w?.state, w?.claimedAt, w?.secrets, w?.claim], ['served', undefined, ['ssh-key'], 'once']);
      const first = await params(e, 5);
      assert.deepEqual(first['ssh-key'], [VALUE, 'secret']);
      assert.deepEqual(first.image, ['debian-12', 'public']);
      w = await windowOf(e, 'web1');
      assert.equal(w?.state, 'claimed');
      assert.equal(typeof w.claimedAt, 'string');
      // A read after the claim: not served.
      assert.equal(served(await params(e, 5)), undefined);
      assert.deepEqual(
        e.d.sink
          .records()
          .filter((r) => r.msg === 'ganeti: secret parameters claimed')
          .map((r) => [r.instance, r.secrets, r.claim]),
        [['web1', 1, 'once']],
      );
      assert.deepEqual(unclaimedLogs(e, 'web1'), []);
      // web2 pushed none: it has no window.
      assert.equal(await windowOf(e, 'web2'), undefined);
      // The record on disk: names and states only.
      assert.deepEqual((await recordFile(e, 'web1')).state, 'claimed');
      // Admin read-backs: the instance, its params, the metrics.
      for (const path of ['/v1/instances/web1', '/v1/instances/web1/params', '/v1/metrics', '/v1/jobs']) {
        const r = await e.d.admin('GET', path);
        assert.equal(r.status, 200, path);
        assert.ok(!r.text.includes(VALUE), `a secret value in ${path}`);
      }
      assert.match((await e.d.admin('GET', '/v1/metrics')).text, /^metad_ganeti_secret_windows_total\{outcome="claimed"\} 1$/m);
    });
  });

  it('the TTL ends the window (fake clock): not served after it, reported expired', async () => {
    await withDaemon({ ttlSec: 600 }, async (e) => {
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      await e.clock.advance(599_000);
      assert.equal((await windowOf(e, 'web1'))?.state, 'served');
      await e.clock.advance(1_000);
      const w = await windowOf(e, 'web1');
      assert.deepEqual([w?.state, w?.reason, w?.claimedAt], ['expired', 'not claimed within ganeti.secrets.ttlSec', undefined]);
      assert.equal(served(await params(e, 5)), undefined);
      assert.deepEqual(
        unclaimedLogs(e, 'web1').map((r) => [r.state, r.secrets]),
        [['expired', 1]],
      );
      assert.equal(e.d.daemon.services.vault.held, 0, 'the value is wiped, not only hidden');
      assert.match((await e.d.admin('GET', '/v1/metrics')).text, /^metad_ganeti_secret_windows_total\{outcome="expired"\} 1$/m);
    });
  });

  it("the helper VM's tap deleted (QEMU exited; nobody calls nic down), or its name taken by another instance, ends the window (stuck)", async () => {
    await withDaemon({}, async (e) => {
      e.net.links.add('gnt.com.0');
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      assert.equal((await e.d.admin('POST', '/v1/instances/web1/nic', { tap: 'gnt.com.0', state: 'up' })).status, 200);
      assert.equal((await windowOf(e, 'web1'))?.state, 'served');
      e.net.vanish('gnt.com.0'); // the device goes: the link watcher tells the controller
      await until('the window ends', async () => ((await windowOf(e, 'web1'))?.state === 'stuck' ? true : undefined));
      assert.equal(served(await params(e, 5)), undefined, 'nothing served after the tap went');
      // The name reused: web2's nic up takes gnt.com.0 from web3, whose window ends with it.
      e.net.links.add('gnt.com.0');
      await feed(e, 'web3', 7, { 'ssh-key': `${VALUE}-3` });
      assert.equal((await e.d.admin('POST', '/v1/instances/web3/nic', { tap: 'gnt.com.0', state: 'up' })).status, 200);
      await feed(e, 'web2', 6, {});
      assert.equal((await e.d.admin('POST', '/v1/instances/web2/nic', { tap: 'gnt.com.0', state: 'up' })).status, 200);
      assert.equal((await windowOf(e, 'web3'))?.state, 'stuck');
      assert.equal(served(await params(e, 7)), undefined);
    });
  });

  it('the comm tap going down after it came up ends the window (stuck); a nic down before any nic up does not', async () => {
    await withDaemon({}, async (e) => {
      e.net.links.add('gnt.com.0');
      e.net.links.add('gnt.com.1');
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      // The tap of an earlier run, recorded before the push and gone: its nic down ends nothing.
      assert.equal((await e.d.admin('POST', '/v1/instances/web1/nic', { tap: 'gnt.com.1', state: 'up' })).status, 200);
      await feed(e, 'web1', 5, { 'ssh-key': `${VALUE}-2` });
      assert.equal((await e.d.admin('POST', '/v1/instances/web1/nic', { tap: 'gnt.com.1', state: 'down' })).status, 204);
      assert.equal((await windowOf(e, 'web1'))?.state, 'served', 'a tap that did not come up after the push');
      // The helper VM's tap comes up, then goes down without a read.
      assert.equal((await e.d.admin('POST', '/v1/instances/web1/nic', { tap: 'gnt.com.0', state: 'up' })).status, 200);
      assert.equal(typeof (await windowOf(e, 'web1'))?.tapUpAt, 'string');
      assert.equal((await e.d.admin('POST', '/v1/instances/web1/nic', { tap: 'gnt.com.0', state: 'down' })).status, 204);
      const w = await windowOf(e, 'web1');
      assert.equal(w?.state, 'stuck');
      assert.match(w.reason ?? '', /the comm tap went down without a claim/);
      assert.equal(served(await params(e, 5)), undefined);
      assert.deepEqual(
        unclaimedLogs(e, 'web1').map((r) => r.state),
        ['withdrawn', 'stuck'],
      );
      assert.ok(!e.d.sink.text.includes(`${VALUE}-2`));
    });
  });

  it('a push without them (or with other values) ends the window, reported withdrawn; the same values again open none', async () => {
    await withDaemon({}, async (e) => {
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      await feed(e, 'web1', 5, {});
      let w = await windowOf(e, 'web1');
      assert.deepEqual([w?.state, w?.reason], ['withdrawn', 'a push without secret parameters']);
      assert.equal(served(await params(e, 5)), undefined);
      // gnt-instance add: the helper VM claims, then Ganeti pushes the same secrets again before
      // it boots the instance itself: the instance does not get them.
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      assert.equal(served(await params(e, 5)), VALUE);
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      assert.equal(served(await params(e, 5)), undefined);
      w = await windowOf(e, 'web1');
      assert.equal(w?.state, 'claimed');
      assert.deepEqual(
        e.d.sink
          .records()
          .filter((r) => r.msg === 'ganeti: the same secret parameters pushed again: no new window')
          .map((r) => r.state),
        ['claimed'],
      );
      // Other values: a new window.
      await feed(e, 'web1', 5, { 'ssh-key': `${VALUE}-new` });
      assert.equal(served(await params(e, 5)), `${VALUE}-new`);
    });
  });

  it('claim: ttl: every GET gets them until the TTL; the first is recorded as the claim', async () => {
    await withDaemon({ claim: 'ttl', ttlSec: 60 }, async (e) => {
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      assert.equal(served(await params(e, 5)), VALUE);
      assert.equal(served(await params(e, 5)), VALUE);
      let w = await windowOf(e, 'web1');
      assert.deepEqual([w?.state, w?.claim, typeof w?.claimedAt], ['served', 'ttl', 'string']);
      await e.clock.advance(60_000);
      assert.equal(served(await params(e, 5)), undefined);
      w = await windowOf(e, 'web1');
      assert.equal(w?.state, 'claimed');
      assert.deepEqual(unclaimedLogs(e, 'web1'), []);
    });
  });

  it('metadctl jobs shows the window; removing the instance removes its record', async () => {
    await withDaemon({}, async (e) => {
      await feed(e, 'web1', 5, { 'ssh-key': VALUE, 'api-token': VALUE });
      const r = await ctlAt(e.d.config.admin.socket, ['jobs']);
      assert.equal(r.code, 0, r.err);
      assert.match(
        r.out,
        /^NAME +STATE +WHEN +REASON +LAST PROGRESS\nweb1 +served +expires 2026-01-01T02:05:00\.000Z +ganeti secrets: api-token, ssh-key\n$/,
      );
      assert.ok(!r.out.includes(VALUE));
      assert.equal((await e.d.admin('DELETE', '/v1/instances/web1')).status, 204);
      assert.equal(await windowOf(e, 'web1'), undefined);
      await e.d.daemon.services.ganetiSecrets?.idle();
      assert.deepEqual(readdirSync(join(e.dir, 'state', 'ganeti-secrets')), []);
      assert.deepEqual(
        unclaimedLogs(e, 'web1').map((x) => x.reason),
        ['instance removed'],
      );
    });
  });
});

describe('Ganeti secret windows across a restart', () => {
  it('secret values are memory only: after a restart they are not served, the window is reported lost', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metad-gsec-'));
    try {
      let e = await start(dir);
      await feed(e, 'web1', 5, { 'ssh-key': VALUE });
      assert.equal((await windowOf(e, 'web1'))?.state, 'served');
      await e.d.close();
      e = await start(dir);
      try {
        assert.equal(served(await params(e, 5)), undefined);
        const w = await windowOf(e, 'web1');
        assert.deepEqual([w?.state, w?.reason], ['lost', 'metad restarted: secret values are kept in memory only']);
        assert.deepEqual(
          unclaimedLogs(e, 'web1').map((r) => r.state),
          ['lost'],
        );
        assert.equal((await recordFile(e, 'web1')).state, 'lost');
        noLeak(e);
      } finally {
        await e.d.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
