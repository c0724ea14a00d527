/**
 * The Ganeti feed on a real unix socket, in the real daemon graph (daemon/feeds/ganeti.ts):
 * Ganeti's framing and both methods, the protocol's error forms, the semantics (same name
 * updates, same comm address replaces a fed instance, no comm NIC removes it, admin-registered
 * instances are never replaced by address nor removed), refusals that change nothing, the socket's
 * mode, group and pid file, and fed instances after a restart. Pushes are shaped as Ganeti 3.0's
 * `objects.Instance.ToDict()`; ganeti-real.test.ts sends real ones with Ganeti's own client.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { LuxiConnection, luxiCall } from '../support/luxi.js';
import { isRoot, skipOrFail } from '../support/env.js';
import { GanetiFeed } from '../../daemon/feeds/ganeti.js';
import { COMM_NIC_PREFIX } from '../../daemon/feeds/ganeti-map.js';

const UUIDS = ['6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e00', '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e01', '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e02'];

/** A push as Ganeti's node daemon sends it: instance `name`, comm address 127.0.0.<host>. */
function push(name: string, host: number, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    uuid: UUIDS[host % UUIDS.length],
    os: 'noop',
    beparams: { maxmem: 128, vcpus: 1 },
    osparams: { image: `img-${name}` },
    osparams_private: { 'root-password': 'p' },
    osparams_secret: {},
    nics: [
      { name: `${COMM_NIC_PREFIX}${name}`, mac: `52:54:00:00:00:${host.toString(16).padStart(2, '0')}`, ip: `127.0.0.${String(host)}` },
    ],
    disks: [],
    ...over,
  };
}

interface Env {
  dir: string;
  d: TestDaemon;
  socket: string;
  pidFile: string;
}

async function start(dir: string, ganeti: Record<string, unknown> = {}): Promise<Env> {
  const socket = join(dir, 'run', 'socket', 'ganeti-metad');
  const pidFile = join(dir, 'run', 'ganeti-metad.pid');
  const d = await startTestDaemon({ dir, config: { ganeti: { socket, pidFile, ...ganeti } } });
  try {
    await d.daemon.ganeti?.listen();
  } catch (err) {
    await d.close();
    throw err;
  }
  return { dir, d, socket, pidFile };
}

const ok = { success: true, result: [] };

/** metad_ganeti_pushes_total{result} from a scrape (0 when absent). */
function ganetiPushes(text: string, result: string): number {
  const m = new RegExp(`^metad_ganeti_pushes_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('the Ganeti feed socket', () => {
  let e: Env;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metad-ganeti-'));
    mkdirSync(join(dir, 'os', 'noop'), { recursive: true });
    writeFileSync(join(dir, 'os', 'noop', 'create'), '#!/bin/sh\nexit 0\n');
    e = await start(dir);
  });
  after(async () => {
    await e.d.close();
    rmSync(e.dir, { recursive: true, force: true });
  });

  it('is there with mode 0600 and metad pid in the pid file', () => {
    const st = statSync(e.socket);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(readFileSync(e.pidFile, 'utf8'), `${String(process.pid)}\n`);
    assert.ok(e.d.sink.records().some((r) => r.msg === 'ganeti feed listening' && r.socket === e.socket));
  });

  it('echo answers its argument; several requests on one connection, split or joined, are answered in order', async () => {
    assert.deepEqual(await luxiCall(e.socket, 'echo', ['hello']), { success: true, result: 'hello' });
    const c = await LuxiConnection.open(e.socket);
    const a = JSON.stringify({ method: 'echo', args: ['one'] });
    const b = JSON.stringify({ method: 'echo', args: ['two'] });
    c.write(`${a}\u0003${b.slice(0, 7)}`);
    c.write(`${b.slice(7)}\u0003`);
    assert.deepEqual(await c.next(), { success: true, result: 'one' });
    assert.deepEqual(await c.next(), { success: true, result: 'two' });
    assert.deepEqual(await c.call('updateConfig', [push('web1', 2)]), ok);
    assert.deepEqual(await c.call('echo', ['three']), { success: true, result: 'three' });
    c.close();
  });

  it("a request it cannot parse is answered as ganeti-metad does: a string result (Ganeti's client raises RequestError)", async () => {
    const c = await LuxiConnection.open(e.socket);
    const cases: [string | Buffer, RegExp][] = [
      ['{"method": "echo", \u0003', /^Failed to parse request: not JSON$/],
      [Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x03]), /^Failed to parse request: not UTF-8$/],
      ['[1,2]\u0003', /not a JSON object/],
      ['{"method": "echo"}\u0003', /no method or arguments/],
      ['{"method": "updateConfig", "args": []}\u0003', /updateConfig takes one argument/],
      ['{"method": "echo", "args": [7]}\u0003', /echo takes one string/],
      ['{"method": "dropEverything", "args": []}\u0003', /unknown method "dropEverything" \(metad answers echo and updateConfig\)/],
    ];
    for (const [bytes, message] of cases) {
      c.write(bytes);
      const a = await c.next();
      assert.equal(a.success, false);
      assert.equal(typeof a.result, 'string');
      assert.match(a.result as string, message);
    }
    // The connection still works after each.
    assert.deepEqual(await c.call('echo', ['still here']), { success: true, result: 'still here' });
    c.close();
  });

  it('a request over ganeti.maxMessageBytes is answered with an error and the connection closed', async () => {
    const c = await LuxiConnection.open(e.socket);
    c.write(`{"method": "echo", "args": ["${'x'.repeat(1_100_000)}`);
    const a = await c.next();
    assert.equal(a.success, false);
    assert.match(a.result as string, /larger than 1048576 bytes \(ganeti\.maxMessageBytes\)/);
    await c.closed;
  });

  it('updateConfig stores the instance, marked ganeti; the guest door serves it; its secrets go to the vault only', async () => {
    const r = await luxiCall(e.socket, 'updateConfig', [push('web2', 3, { osparams_secret: { 'ssh-key': 'hunter2' } })]);
    assert.deepEqual(r, ok);
    const list = (await e.d.admin('GET', '/v1/instances')).json as { instances: { name: string; origin: string }[] };
    assert.deepEqual(
      list.instances.find((i) => i.name === 'web2'),
      {
        name: 'web2',
        uuid: UUIDS[0],
        hostname: 'web2',
        commIpv4: '127.0.0.3',
        commMac: '52:54:00:00:00:03',
        tap: null,
        generation: 1,
        updatedAt: (list.instances.find((i) => i.name === 'web2') as unknown as { updatedAt: string }).updatedAt,
        origin: 'ganeti',
      },
    );
    const secretStates = async (): Promise<string[][]> => {
      const view = (await e.d.admin('GET', '/v1/instances/web2/params')).json as { secret: { name: string; state: string }[] };
      return view.secret.map((s) => [s.name, s.state]);
    };
    assert.deepEqual(await secretStates(), [['ssh-key', 'live']]);
    const params = await e.d.guest('127.0.0.3', 'GET', '/ganeti/latest/os/parameters.json');
    assert.equal(params.status, 200);
    // Its Ganeti secret window: served once, to the instance (docs/ganeti.md; ganeti-secrets.test.ts).
    assert.deepEqual(params.json, { image: ['img-web2', 'public'], 'root-password': ['p', 'private'], 'ssh-key': ['hunter2', 'secret'] });
    assert.deepEqual(await secretStates(), [['ssh-key', 'claimed']]);
    assert.deepEqual((await e.d.guest('127.0.0.3', 'GET', '/ganeti/latest/os/scripts/create')).text, '#!/bin/sh\nexit 0\n');
    const fed = e.d.sink.records().find((x) => x.msg === 'ganeti: instance fed' && x.instance === 'web2');
    assert.deepEqual(
      { created: fed?.created, secrets: fed?.secrets, os: fed?.os, osDefinition: fed?.osDefinition },
      { created: true, secrets: 1, os: 'noop', osDefinition: join(e.dir, 'os', 'noop') },
    );
    assert.ok(!e.d.sink.text.includes('hunter2'), 'a secret value reached the log');
    assert.ok(!readFileSync(join(e.dir, 'state', 'instances', 'web2.json'), 'utf8').includes('hunter2'), 'a secret value reached the disk');
  });

  it('the same name updates; what an admin added is kept; a push without secrets wipes them', async () => {
    await luxiCall(e.socket, 'updateConfig', [push('web3', 4, { osparams_secret: { k: 'v' } })]);
    const patched = await e.d.admin('PATCH', '/v1/instances/web3', { nameservers: ['10.0.0.53'] });
    assert.equal(patched.status, 200);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('web3', 4, { osparams: { image: 'v2' } })]), ok);
    const view = (await e.d.admin('GET', '/v1/instances/web3')).json as {
      instance: Record<string, unknown>;
      status: { generation: number; params: { secret: unknown[] } };
    };
    assert.equal(view.status.generation, 3);
    assert.deepEqual(view.instance.nameservers, ['10.0.0.53']);
    assert.deepEqual((view.instance.params as { public: unknown }).public, { image: 'v2' });
    assert.deepEqual(view.status.params.secret, []);
    const fed = e.d.sink.records().filter((x) => x.msg === 'ganeti: instance fed' && x.instance === 'web3');
    assert.deepEqual(
      fed.map((x) => x.created),
      [true, false],
    );
  });

  it('another name with the comm address of a fed instance replaces it (logged)', async () => {
    await luxiCall(e.socket, 'updateConfig', [push('old', 5)]);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('renamed', 5, { uuid: UUIDS[1] })]), ok);
    assert.equal((await e.d.admin('GET', '/v1/instances/old')).status, 404);
    assert.equal(((await e.d.guest('127.0.0.5', 'GET', '/ganeti/latest/meta_data.json')).json as { name: string }).name, 'renamed');
    const rec = e.d.sink.records().find((x) => x.msg === 'ganeti: instance replaced by another with its comm address');
    assert.deepEqual([rec?.instance, rec?.replaced, rec?.commIpv4], ['renamed', 'old', '127.0.0.5']);
  });

  it('an instance registered through the admin door is never replaced by address: the push is refused, naming it', async () => {
    const doc = { name: 'byhand', uuid: UUIDS[2], comm: { mac: '52:54:00:00:00:06', ipv4: '127.0.0.6' } };
    assert.equal((await e.d.admin('PUT', '/v1/instances/byhand', doc)).status, 201);
    const refusedBefore = ganetiPushes((await e.d.admin('GET', '/v1/metrics')).text, 'refused');
    const r = await luxiCall(e.socket, 'updateConfig', [
      push('intruder', 6, { nics: [{ ...(push('x', 7).nics as object[])[0], ip: '127.0.0.6' }] }),
    ]);
    assert.equal(r.success, false);
    const [cls, [message]] = r.result as [string, string[]];
    assert.equal(cls, 'GenericError');
    assert.equal(
      message,
      'metad refused instance intruder: comm address taken: nics[0].ip: already used by instance byhand, registered through the admin door (the feed replaces only instances Ganeti fed: metadctl remove byhand)',
    );
    assert.equal((await e.d.admin('GET', '/v1/instances/byhand')).status, 200);
    assert.equal((await e.d.admin('GET', '/v1/instances/intruder')).status, 404);
    // The refusal is counted (GET /v1/metrics), and no value of the push is in the metrics.
    const metrics = (await e.d.admin('GET', '/v1/metrics')).text;
    assert.equal(ganetiPushes(metrics, 'refused'), refusedBefore + 1);
    assert.ok(ganetiPushes(metrics, 'applied') > 0, 'the earlier pushes were counted as applied');
    assert.ok(!metrics.includes('intruder') && !metrics.includes('127.0.0.6'));
  });

  it('a refused push changes nothing: the stored version stays, and no instance is removed for it', async () => {
    await luxiCall(e.socket, 'updateConfig', [push('keep', 8)]);
    const stored = (await e.d.admin('GET', '/v1/instances/keep')).json;
    const bad = await luxiCall(e.socket, 'updateConfig', [push('keep', 8, { beparams: { vcpus: 0 }, osparams: { image: 'new' } })]);
    assert.equal(bad.success, false);
    assert.match(
      (bad.result as [string, string[]])[1][0] ?? '',
      /^metad refused instance keep: invalid instance document: beparams\.vcpus: must be >= 1$/,
    );
    assert.deepEqual((await e.d.admin('GET', '/v1/instances/keep')).json, stored);
    // A rename onto keep's address whose MAC another instance (web1) holds: keep is not removed first.
    const clash = push('keep2', 8, { uuid: UUIDS[1], nics: [{ name: `${COMM_NIC_PREFIX}k`, mac: '52:54:00:00:00:02', ip: '127.0.0.8' }] });
    const r = await luxiCall(e.socket, 'updateConfig', [clash]);
    assert.equal(r.success, false);
    assert.deepEqual(r.result, ['GenericError', ['metad refused instance keep2: nics[0].mac: already used by instance web1']]);
    assert.equal((await e.d.admin('GET', '/v1/instances/keep')).status, 200);
  });

  it('a push without a communication NIC removes the fed instance and wipes its secrets; an admin-registered one stays', async () => {
    await luxiCall(e.socket, 'updateConfig', [push('gone', 9, { osparams_secret: { k: 'v' } })]);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('gone', 9, { nics: [] })]), ok);
    assert.equal((await e.d.admin('GET', '/v1/instances/gone')).status, 404);
    assert.deepEqual(e.d.daemon.services.vault.info('gone'), []);
    const rec = e.d.sink.records().find((x) => x.msg === 'ganeti: instance removed: pushed without a communication NIC');
    assert.deepEqual([rec?.instance, rec?.secretsWiped], ['gone', 1]);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('byhand', 6, { nics: [] })]), ok);
    assert.equal((await e.d.admin('GET', '/v1/instances/byhand')).status, 200);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('never-seen', 10, { nics: [] })]), ok);
    const ignored = e.d.sink.records().filter((x) => x.msg === 'ganeti: push without a communication NIC changed nothing');
    assert.deepEqual(
      ignored.map((x) => [x.instance, x.reason]),
      [
        ['byhand', 'registered through the admin door, left as it is'],
        ['never-seen', 'not registered'],
      ],
    );
  });

  it('the same name takes over an instance registered through the admin door', async () => {
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('byhand', 6, { uuid: UUIDS[2] })]), ok);
    const v = (await e.d.admin('GET', '/v1/instances/byhand')).json as { instance: { origin?: string } };
    assert.equal(v.instance.origin, 'ganeti');
  });

  it('metadctl remove (DELETE) removes a fed instance; the next push of it brings it back', async () => {
    assert.equal((await e.d.admin('DELETE', '/v1/instances/web1')).status, 204);
    assert.equal((await e.d.admin('GET', '/v1/instances/web1')).status, 404);
    assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('web1', 2)]), ok);
    const v = (await e.d.admin('GET', '/v1/instances/web1')).json as { instance: { origin?: string }; status: { generation: number } };
    assert.deepEqual([v.instance.origin, v.status.generation], ['ganeti', 1]);
  });

  it('refuses to take a live socket (ganeti-metad still running), and stops cleanly', async () => {
    const second = new GanetiFeed(e.d.config.ganeti ?? assert.fail('no ganeti config'), {
      store: e.d.daemon.services.store,
      vault: e.d.daemon.services.vault,
      secrets: { pushed: () => assert.fail('this feed never listens') },
      log: e.d.daemon.services.log,
      osSearchPath: [],
    });
    await assert.rejects(second.listen(), /another daemon is listening on/);
    assert.ok(existsSync(e.socket), 'the live socket stays');
    assert.deepEqual(await luxiCall(e.socket, 'echo', ['x']), { success: true, result: 'x' });
  });
});

describe('the Ganeti feed across a restart and at stop', () => {
  it('a fed instance survives a restart (its secrets do not: memory only); stop removes the socket and the pid file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metad-ganeti-'));
    try {
      let e = await start(dir);
      assert.deepEqual(await luxiCall(e.socket, 'updateConfig', [push('web1', 2, { osparams_secret: { k: 'v' } })]), ok);
      // A connection open at stop is closed, not left hanging.
      const idle = await LuxiConnection.open(e.socket);
      await e.d.close();
      await idle.closed;
      assert.ok(!existsSync(e.socket), 'the socket is removed at stop');
      assert.ok(!existsSync(e.pidFile), 'the pid file is removed at stop');
      e = await start(dir);
      try {
        const v = (await e.d.admin('GET', '/v1/instances/web1')).json as {
          instance: { origin?: string };
          status: { params: { secret: unknown[] } };
        };
        assert.equal(v.instance.origin, 'ganeti');
        assert.deepEqual(v.status.params.secret, []);
        const p = await e.d.guest('127.0.0.2', 'GET', '/ganeti/latest/os/parameters.json');
        assert.deepEqual(p.json, { image: ['img-web1', 'public'], 'root-password': ['p', 'private'] });
      } finally {
        await e.d.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a pid file that no longer names metad (another daemon's) is left at stop", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metad-ganeti-'));
    try {
      const e = await start(dir);
      writeFileSync(e.pidFile, '1\n');
      await e.d.close();
      assert.equal(readFileSync(e.pidFile, 'utf8'), '1\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('ganeti.socketGroup gives the socket its group, with the mode asked for', async (t) => {
    if (skipOrFail(t, isRoot() ? undefined : 'giving a socket another group needs root')) return;
    const dir = mkdtempSync(join(tmpdir(), 'metad-ganeti-'));
    try {
      const daemonGid = Number(/^daemon:[^:]*:(\d+):/m.exec(readFileSync('/etc/group', 'utf8'))?.[1]);
      assert.ok(Number.isInteger(daemonGid), 'the group daemon exists');
      const e = await start(dir, { socketGroup: 'daemon', socketMode: '0660' });
      try {
        const st = statSync(e.socket);
        assert.equal(st.gid, daemonGid);
        assert.equal(st.mode & 0o777, 0o660);
      } finally {
        await e.d.close();
      }
      await assert.rejects(
        start(dir, { socketGroup: 'no-such-group-here' }),
        /ganeti\.socketGroup: no group no-such-group-here in \/etc\/group/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
