/**
 * The admin door on a real unix socket: register/replace/patch/read/list/delete, the error
 * table (400 unknown field / malformed JSON, 404, 405 + Allow, 409 duplicates, 413, 415),
 * params per visibility, the pipe's host side and the socket's mode.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';
import { startTestDaemon, sampleInstance, type Reply } from '../support/daemon.js';
import type { InstanceList, InstanceView, ParamsView } from '../../cli/api-types.js';
import type { InstanceInput } from '../../daemon/registry/model.js';
import type { DaemonError } from '../../daemon/errors.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { until, settled } from '../support/wait.js';

/** An admin answer read as what the admin door sends (cli/api-types.ts, daemon/errors.ts). */
function asView(r: Reply): InstanceView {
  return r.json as InstanceView;
}
function asList(r: Reply): InstanceList {
  return r.json as InstanceList;
}
function asParams(r: Reply): ParamsView {
  return r.json as ParamsView;
}
function asError(r: Reply): ReturnType<DaemonError['toJSON']> {
  return r.json as ReturnType<DaemonError['toJSON']>;
}

test('admin door: instance lifecycle', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());

  let r = await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  assert.equal(r.status, 201);
  assert.equal(asView(r).instance.name, 'vm1');
  assert.equal(asView(r).status.generation, 1);

  r = await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { hostname: 'renamed' }));
  assert.equal(r.status, 200, 'a second PUT replaces');
  assert.equal(asView(r).instance.hostname, 'renamed');
  assert.equal(asView(r).status.generation, 2);

  r = await d.admin(
    'PATCH',
    '/v1/instances/vm1',
    { hostname: null, os: { name: 'debian' } },
    { 'content-type': 'application/merge-patch+json' },
  );
  assert.equal(r.status, 200);
  assert.equal(asView(r).instance.hostname, undefined, 'null removes a member (RFC 7396)');
  assert.deepEqual(asView(r).instance.os, { name: 'debian' });

  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));
  r = await d.admin('GET', '/v1/instances');
  assert.deepEqual(
    asList(r).instances.map((i: { name: string }) => i.name),
    ['vm1', 'vm2'],
  );
  assert.equal(asList(r).instances[1]!.commIpv4, '127.0.0.3');

  r = await d.admin('DELETE', '/v1/instances/vm1');
  assert.equal(r.status, 204);
  r = await d.admin('GET', '/v1/instances/vm1');
  assert.equal(r.status, 404);
  assert.equal(asError(r).code, 'NotFound');
  r = await d.admin('GET', '/v1/health');
  assert.deepEqual(r.json, {
    status: 'ok',
    version: (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version,
    instances: 1,
    limits: { maxBodyBytes: 262144, pipeMaxBytes: 1048576 },
    installs: { available: false, reason: 'network.mode is off: installs need the comm network (routed or bridged)' },
    leftovers: [],
    network: { mode: 'off' },
    jobs: { running: 0, queued: 0 },
  });
});

test('admin door: the socket is created with mode 0660', async (t) => {
  const d = await startTestDaemon({ config: { admin: { socketMode: '0660' } } });
  t.after(() => d.close());
  // startTestDaemon listens without chmod: the production path (runDaemon) is covered in daemon-process.test
  assert.ok(statSync(d.config.admin.socket).isSocket());
});

test('admin door: bad input gets a JSON error that never echoes the value', async (t) => {
  const d = await startTestDaemon({ config: { admin: { maxBodyBytes: 4096 } } });
  t.after(() => d.close());
  const canary = 'CANARY-bad-input-4f1e';

  let r = await d.admin('PUT', '/v1/instances/vm1', '{"name": "vm1", ');
  assert.equal(r.status, 400);
  assert.equal(asError(r).code, 'InvalidInput');
  assert.match(asError(r).message, /malformed JSON/);

  r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), bogus: canary });
  assert.equal(r.status, 400);
  assert.deepEqual(asError(r).details, [{ path: '/bogus', message: 'unknown field' }]);

  r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), hostname: canary, comm: { mac: canary, ipv4: 'x' } });
  assert.equal(r.status, 400);
  const paths = asError(r)
    .details.map((x: { path: string }) => x.path)
    .sort();
  assert.deepEqual(paths, ['/comm/ipv4', '/comm/mac', '/hostname']);
  assert.ok(!r.text.includes(canary), 'error must not echo submitted values');

  r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), userData: 'A'.repeat(5000) });
  assert.equal(r.status, 413);
  assert.equal(asError(r).code, 'PayloadTooLarge');

  r = await d.admin('PUT', '/v1/instances/vm1', 'name=vm1', { 'content-type': 'text/plain' });
  assert.equal(r.status, 415);

  r = await d.admin('PUT', '/v1/instances/other', sampleInstance(1));
  assert.equal(r.status, 400, 'body name must equal the path name');

  r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), comm: { mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' } });
  assert.equal(r.status, 409, 'comm IPv4 outside the comm range');
  assert.equal(asError(r).details[0]!.path, '/comm/ipv4');

  for (const bad of ['..%2F..%2Fetc%2Fpasswd', '..', 'a%2Fb', 'UPPER', '%00x']) {
    r = await d.admin('GET', `/v1/instances/${bad}`);
    assert.ok(r.status === 400 || r.status === 404, `traversal name ${bad} -> ${r.status}`);
    assert.equal(typeof asError(r).code, 'string');
  }

  r = await d.admin('POST', '/v1/instances/vm1');
  assert.equal(r.status, 405);
  assert.equal(asError(r).code, 'MethodNotAllowed');
  assert.match(String(r.headers.allow), /PUT/);
  assert.match(String(r.headers.allow), /DELETE/);

  r = await d.admin('GET', '/v1/nothing-here');
  assert.equal(r.status, 404);
  assert.equal(asError(r).code, 'NotFound');

  // The daemon keeps serving after all of that.
  r = await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  assert.equal(r.status, 201);
});

test('admin door: comm IPv4 addresses no guest may have are 400 with the path, never echoing the value', async (t) => {
  const d = await startTestDaemon({ config: { guest: { commRange: ['127.0.0.0/8', '169.254.0.0/16', '10.7.0.0/30'] } } });
  t.after(() => d.close());
  const refused: [string, RegExp][] = [
    ['169.254.169.254', /metadata address/],
    ['0.0.0.0', /0\.0\.0\.0\/8/],
    ['224.0.0.1', /224\.0\.0\.0\/3/],
    ['255.255.255.255', /224\.0\.0\.0\/3/],
    ['127.0.0.0', /network or broadcast address of its comm range/],
    ['127.255.255.255', /network or broadcast address of its comm range/],
    ['169.254.0.0', /network or broadcast address of its comm range/],
    ['10.7.0.3', /network or broadcast address of its comm range/],
  ];
  for (const [ipv4, rule] of refused) {
    const r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), comm: { mac: '52:54:00:00:00:01', ipv4 } });
    assert.equal(r.status, 400, ipv4);
    assert.equal(asError(r).code, 'InvalidInput');
    assert.deepEqual(
      asError(r).details.map((x) => x.path),
      ['/comm/ipv4'],
      ipv4,
    );
    assert.match(asError(r).details[0]!.message, rule, ipv4);
    // (the metadata address and 0.0.0.0 are part of their rules' text)
    if (!['169.254.169.254', '0.0.0.0'].includes(ipv4)) assert.ok(!r.text.includes(ipv4), `the value is not echoed: ${ipv4}`);
  }
  assert.equal(d.daemon.services.store.size, 0, 'nothing was registered');
  // The same rules on a patch; and the addresses next to the edges are fine.
  for (const ipv4 of ['127.0.0.1', '127.255.255.254', '169.254.0.1', '10.7.0.1']) {
    const r = await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), comm: { mac: '52:54:00:00:00:01', ipv4 } });
    assert.ok(r.status === 201 || r.status === 200, `${ipv4}: ${r.text}`);
  }
  const p = await d.admin('PATCH', '/v1/instances/vm1', { comm: { ipv4: '10.7.0.0' } });
  assert.equal(p.status, 400);
  assert.equal(asError(p).details[0]!.path, '/comm/ipv4');
  assert.equal(d.daemon.services.store.get('vm1')!.doc.comm.ipv4, '10.7.0.1', 'the refused patch changed nothing');
});

test('admin door: duplicate comm IPv4 or MAC is 409', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
  const sameIp = { ...sampleInstance(2), comm: { ...(sampleInstance(2) as InstanceInput).comm, ipv4: '127.0.0.2' } };
  let r = await d.admin('PUT', '/v1/instances/vm2', sameIp);
  assert.equal(r.status, 409);
  assert.equal(asError(r).details[0]!.path, '/comm/ipv4');
  const sameMac = {
    ...sampleInstance(2),
    comm: { ...(sampleInstance(2) as InstanceInput).comm, mac: (sampleInstance(1) as InstanceInput).comm.mac },
  };
  r = await d.admin('PUT', '/v1/instances/vm2', sameMac);
  assert.equal(r.status, 409);
  assert.equal(asError(r).details[0]!.path, '/comm/mac');
  const sameTap = (n: number) => ({ ...sampleInstance(n), comm: { ...(sampleInstance(n) as InstanceInput).comm, tap: 'mdt7' } });
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { comm: { tap: 'mdt7' } })).status, 200);
  r = await d.admin('PUT', '/v1/instances/vm2', sameTap(2));
  assert.equal(r.status, 409, 'a tap belongs to one instance');
  assert.equal(asError(r).details[0]!.path, '/comm/tap');
  await d.admin('PATCH', '/v1/instances/vm1', { comm: { tap: null } });
  // Moving vm1 to a new address frees the old one.
  await d.admin('PATCH', '/v1/instances/vm1', { comm: { ipv4: '127.0.0.50' } });
  r = await d.admin('PUT', '/v1/instances/vm2', {
    ...sampleInstance(2),
    comm: { ...(sampleInstance(2) as InstanceInput).comm, ipv4: '127.0.0.2' },
  });
  assert.equal(r.status, 201);
});

test('admin door: params per visibility', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { params: { public: { a: '1' }, private: { p: 'pv' } } }));

  let r = await d.admin('PATCH', '/v1/instances/vm1/params/public', { values: { b: '2', a: null } });
  assert.equal(r.status, 200);
  assert.deepEqual(asParams(r).public, { b: '2' });
  assert.deepEqual(asParams(r).private, ['p']);

  r = await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { s1: 'x', s2: 'y' }, ttlSec: 60, claimOnce: true });
  assert.equal(r.status, 200);
  assert.deepEqual(
    asParams(r).secret.map((s: { name: string }) => s.name),
    ['s1', 's2'],
  );
  assert.equal(asParams(r).secret[0]!.claimOnce, true);
  assert.equal(asParams(r).secret[0]!.state, 'live');

  r = await d.admin('PUT', '/v1/instances/vm1/params/public', { values: { a: '1' }, ttlSec: 5 });
  assert.equal(r.status, 400, 'ttlSec is for secrets only');
  r = await d.admin('PUT', '/v1/instances/vm1/params/hidden', { values: {} });
  assert.equal(r.status, 400);
  r = await d.admin('PUT', '/v1/instances/vm1/params/public', { values: { 'bad name!': 'x' } });
  assert.equal(r.status, 400);

  r = await d.admin('DELETE', '/v1/instances/vm1/params/secret/s1');
  assert.equal(r.status, 204);
  r = await d.admin('DELETE', '/v1/instances/vm1/params/secret/s1');
  assert.equal(r.status, 404);
  r = await d.admin('DELETE', '/v1/instances/vm1/params/private');
  assert.equal(r.status, 204);
  r = await d.admin('GET', '/v1/instances/vm1/params');
  assert.deepEqual(asParams(r).private, []);
  assert.deepEqual(
    asParams(r).secret.map((s: { name: string }) => s.name),
    ['s2'],
  );

  // A GET-edit-PUT round trip keeps private values (they cannot be read back).
  await d.admin('PUT', '/v1/instances/vm1/params/private', { values: { keep: 'me' } });
  const view = asView(await d.admin('GET', '/v1/instances/vm1'));
  r = await d.admin('PUT', '/v1/instances/vm1', { ...view.instance, hostname: 'edited' });
  assert.equal(r.status, 200);
  assert.deepEqual(asView(r).status.params.private, ['keep']);
  assert.deepEqual(
    asView(r).status.params.secret.map((s: { name: string }) => s.name),
    ['s2'],
  );
});

test('admin door: pipe host side and password', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { pipe: { maxBytes: 16 } } });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  let r = await d.admin('POST', '/v1/instances/vm1/pipe', 'hello', { 'content-type': 'application/octet-stream' });
  assert.equal(r.status, 202);
  assert.equal((r.json as { queuedBytes: number }).queuedBytes, 5);
  r = await d.admin('POST', '/v1/instances/vm1/pipe', 'this is too long', { 'content-type': 'application/octet-stream' });
  assert.equal(r.status, 413, 'a write that does not fit is refused whole');
  assert.equal(asView(await d.admin('GET', '/v1/instances/vm1')).status.pipe.toGuestBytes, 5);

  d.daemon.services.pipes.get('vm1').toHost.push(Buffer.from('progress 50%'));
  r = await d.admin('GET', '/v1/instances/vm1/pipe');
  assert.equal(r.text, 'progress 50%');
  r = await d.admin('GET', '/v1/instances/vm1/pipe');
  assert.equal(r.text, '', 'reads consume');
  r = await d.admin('GET', '/v1/instances/vm1/pipe?wait=abc');
  assert.equal(r.status, 400);

  // A waiting reader returns as soon as the guest writes, with no time passing on the clock.
  const pending = d.admin('GET', '/v1/instances/vm1/pipe?wait=30');
  await until('the reader waits on the clock', () => clock.pending === 1);
  d.daemon.services.pipes.get('vm1').toHost.push(Buffer.from('done'));
  r = await settled(pending, 'the reader is woken by the write (the clock stands still)');
  assert.equal(r.status, 200);
  assert.equal(r.text, 'done');
  assert.equal(clock.pending, 0, 'its wait is cancelled');

  r = await d.admin('GET', '/v1/instances/vm1/password');
  assert.deepEqual(r.json, { password: null });
  await d.daemon.services.store.setPassword('vm1', 'pw', true);
  assert.deepEqual((await d.admin('GET', '/v1/instances/vm1/password')).json, { password: 'pw' });
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1/password')).status, 204);
  assert.deepEqual((await d.admin('GET', '/v1/instances/vm1/password')).json, { password: null });

  r = await d.admin('GET', '/v1/identity/public-key');
  assert.match(r.text, /BEGIN PUBLIC KEY/);
});

test('admin door: concurrent patches and param merges never lose an update', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
  await Promise.all(keys.map((k) => d.admin('PATCH', '/v1/instances/vm1', { openstack: { meta: { [k]: 'v' } } })));
  await Promise.all(keys.map((k) => d.admin('PATCH', '/v1/instances/vm1/params/public', { values: { [k]: 'v' } })));
  await Promise.all(keys.map((k) => d.admin('PATCH', '/v1/instances/vm1/params/private', { values: { [k]: 'v' } })));
  const v = asView(await d.admin('GET', '/v1/instances/vm1'));
  assert.deepEqual(Object.keys(v.instance.openstack!.meta!).sort(), [...keys].sort());
  assert.deepEqual(v.status.params.public, [...keys].sort());
  assert.deepEqual(v.status.params.private, [...keys].sort());
  assert.equal(v.status.generation, 61);
});

/** Send headers and part of a body now; `finish()` sends the rest and resolves with the reply. */
function slowRequest(sock: string, method: string, path: string, body: string, type = 'application/json') {
  const req = http.request({
    socketPath: sock,
    method,
    path,
    headers: { 'content-type': type, 'content-length': Buffer.byteLength(body) },
  });
  const reply = new Promise<number>((resolve, reject) => {
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
  });
  req.write(body.slice(0, 5));
  return {
    finish: () => {
      req.end(body.slice(5));
      return reply;
    },
  };
}

test('admin door: a secret or pipe write racing a DELETE never reaches a later instance of that name', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const secret = slowRequest(sock, 'PUT', '/v1/instances/vm1/params/secret', JSON.stringify({ values: { DB: 'old-tenant-secret' } }));
  const pipe = slowRequest(sock, 'POST', '/v1/instances/vm1/pipe', 'wipe-disk-and-reinstall', 'application/octet-stream');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  assert.equal(await secret.finish(), 404);
  assert.equal(await pipe.finish(), 404);
  // A new tenant gets the name (on another address).
  await d.admin('PUT', '/v1/instances/vm1', { ...sampleInstance(1), comm: { mac: '52:54:00:99:99:99', ipv4: '127.0.0.77' } });
  assert.deepEqual((await d.guest('127.0.0.77', 'GET', '/ganeti/latest/os/parameters.json')).json, {});
  assert.equal((await d.guest('127.0.0.77', 'GET', '/ganeti/latest/read')).text, '');
  assert.deepEqual(d.daemon.services.vault.info('vm1'), []);
});

test('admin door: secret writes apply in the order they were acknowledged', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  // A PATCH carrying a secret (slow: a durable write) and a later params PUT of the same secret.
  const patch = d.admin('PATCH', '/v1/instances/vm1', { hostname: 'x', params: { secret: { S: 'OLD' } } });
  const put = d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { S: 'NEW' } });
  assert.equal((await patch).status, 200);
  assert.equal((await put).status, 200);
  assert.deepEqual(d.daemon.services.vault.liveValues('vm1', false), { S: 'NEW' });
});

test('admin door: a pipe long-poll with nothing written ends empty exactly when its wait expires', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  let answered = false;
  const pending = d.admin('GET', '/v1/instances/vm1/pipe?wait=2.5').then((r) => {
    answered = true;
    return r;
  });
  await until('the reader waits on the clock', () => clock.pending === 1);
  await clock.advance(2499);
  // The positive fact first: its wait is still pending on the clock (an early end would have taken it off).
  assert.equal(clock.pending, 1, 'the reader no longer waits 1 ms before its wait ends');
  assert.equal(answered, false, 'still waiting 1 ms before the wait ends');
  await clock.advance(1);
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'application/octet-stream');
  assert.equal(r.body.length, 0, 'nothing was written: an empty answer');
  // Bytes written after the expiry wait for the next read; the expired one consumed nothing.
  d.daemon.services.pipes.get('vm1').toHost.push(Buffer.from('late'));
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, 'late');
});
