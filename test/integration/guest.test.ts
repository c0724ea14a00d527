/**
 * The guest door on real sockets, guests played by distinct loopback source addresses
 * (127.0.0.2, 127.0.0.3, …): isolation, every EC2 status code, IMDSv2 tokens, OpenStack password,
 * Ganeti parameters/scripts/pipe, rate limit, cache invalidation, connection hardening.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdirSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { startInstall, startTestDaemon, sampleInstance, type Reply } from '../support/daemon.js';
import type { InstanceView, JobRecord, ParamsView } from '../../cli/api-types.js';
import type { InstanceInput } from '../../daemon/registry/model.js';
import type { GanetiMetaData } from '../../routes/render/ganeti.js';
import type { NetworkData, OpenstackMetaData } from '../../routes/render/openstack.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { until, settled } from '../support/wait.js';

const VM1 = '127.0.0.2';
const VM2 = '127.0.0.3';

/** An OpenStack meta_data.json answer. */
function osMeta(r: Reply): OpenstackMetaData {
  return r.json as OpenstackMetaData;
}

test('guest door: each guest sees its own instance only; unknown sources get a fast 404', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, { userData: Buffer.from('#!/bin/sh\necho vm1\n').toString('base64'), params: { private: { k: 'vm1-private' } } }),
  );
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2, { params: { private: { k: 'vm2-private' } } }));

  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text, 'vm1');
  assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/hostname')).text, 'vm2');
  assert.equal(osMeta(await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json')).name, 'vm1');
  assert.equal(osMeta(await d.guest(VM2, 'GET', '/openstack/latest/meta_data.json')).name, 'vm2');
  assert.deepEqual((await d.guest(VM2, 'GET', '/ganeti/latest/os/parameters.json')).json, { k: ['vm2-private', 'private'] });
  // Proxy headers never change who is asking.
  const spoof = await d.guest(VM2, 'GET', '/latest/meta-data/hostname', {
    'X-Forwarded-For': VM1,
    'X-Real-IP': VM1,
    Forwarded: `for=${VM1}`,
  });
  assert.equal(spoof.text, 'vm2');

  const r = await settled(d.guest('127.0.0.99', 'GET', '/latest/meta-data/hostname'), 'an unknown source is answered, never left hanging');
  assert.equal(r.status, 404);
  assert.equal(r.text, 'Not Found');
  for (const p of ['/latest/user-data', '/openstack/latest/meta_data.json', '/ganeti/latest/os/parameters.json', '/']) {
    const u = await d.guest('127.0.0.99', 'GET', p);
    assert.equal(u.status, 404);
    assert.ok(!u.text.includes('vm1') && !u.text.includes('private'));
  }
  assert.ok(d.sink.records().some((l) => l.msg === 'guest request from an unknown source address' && l.source === '127.0.0.99'));
  assert.equal(d.sink.records().filter((l) => l.source === '127.0.0.99').length, 1, 'unknown-source warnings are sampled');

  // A change is visible at once (the cache is per generation); removal makes the guest unknown.
  await d.admin('PATCH', '/v1/instances/vm1', { hostname: 'vm1-renamed' });
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text, 'vm1-renamed');
  await d.admin('DELETE', '/v1/instances/vm1');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).status, 404);
});

test('guest door: EC2 paths, versions, redirects and methods', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { publicKeys: [{ name: 'k1', key: 'ssh-ed25519 AAAA k1' }] }));
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));

  let r = await d.guest(VM1, 'GET', '/');
  for (const v of ['2009-04-04', '2016-09-02', '2018-09-24', '2021-03-23', 'latest']) assert.ok(r.text.split('\n').includes(v), v);
  r = await d.guest(VM1, 'GET', '/latest/meta-data');
  assert.equal(r.status, 301);
  assert.equal(r.headers.location, '/latest/meta-data/');
  r = await d.guest(VM1, 'GET', '/latest/meta-data/');
  assert.ok(r.text.split('\n').includes('instance-id'));
  assert.ok(r.text.split('\n').includes('placement/'));
  assert.ok(!r.text.endsWith('\n'));
  r = await d.guest(VM1, 'GET', '//latest/meta-data/instance-id');
  assert.equal(r.status, 200, 'doubled leading slash is answered directly');
  assert.match(r.text, /^i-/);
  assert.match(String(r.headers['content-type']), /text\/plain/);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/public-keys/')).text, '0=k1');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/public-keys/0/openssh-key')).text, 'ssh-ed25519 AAAA k1');
  assert.equal((await d.guest(VM1, 'GET', '/2009-04-04/meta-data/mac')).status, 404, 'mac is from 2011-01-01');
  assert.equal((await d.guest(VM1, 'GET', '/2011-01-01/meta-data/mac')).text, (sampleInstance(1) as InstanceInput).comm.mac);
  assert.equal((await d.guest(VM1, 'GET', '/1999-01-01/meta-data/')).status, 404);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/nope')).status, 404);
  assert.equal((await d.guest(VM1, 'GET', '/latest/user-data')).status, 404, 'no user data: 404');
  r = await d.guest(VM1, 'POST', '/latest/meta-data/instance-id');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'GET, HEAD');
  r = await d.guest(VM1, 'GET', '/latest/dynamic/instance-identity/document');
  const doc = JSON.parse(r.text) as { privateIp: string };
  assert.equal(doc.privateIp, '127.0.0.2');
  const sig = (await d.guest(VM1, 'GET', '/latest/dynamic/instance-identity/signature')).text;
  const pem = (await d.admin('GET', '/v1/identity/public-key')).text;
  const { verify } = await import('node:crypto');
  assert.ok(verify('sha256', Buffer.from(r.text), pem, Buffer.from(sig, 'base64')), 'signature verifies with the admin door key');
  r = await d.guest(VM1, 'GET', '/latest/meta-data/../../etc/passwd');
  assert.equal(r.status, 404);
});

test('guest door: IMDSv2 tokens', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2, { ec2: { imdsV2: 'required' } }));
  const TTL = 'X-aws-ec2-metadata-token-ttl-seconds';
  const put = (from: string, ttl?: string, extra: Record<string, string> = {}, path = '/latest/api/token') =>
    d.guest(from, 'PUT', path, { ...(ttl === undefined ? {} : { [TTL]: ttl }), ...extra });

  let r = await put(VM1, '60');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-aws-ec2-metadata-token-ttl-seconds'], '60');
  const t1 = r.text;
  for (const bad of [undefined, '0', '21601', 'abc', '-5', '1.5']) assert.equal((await put(VM1, bad)).status, 400, `ttl ${bad}`);
  assert.equal((await put(VM1, '21600')).status, 200);
  assert.equal((await put(VM1, '60', { 'X-Forwarded-For': '1.2.3.4' })).status, 403);
  assert.equal((await put(VM1, '60', {}, '/2021-03-23/api/token')).status, 403);
  r = await d.guest(VM1, 'GET', '/latest/api/token');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'PUT');

  const get = (from: string, token?: string) =>
    d.guest(from, 'GET', '/latest/meta-data/instance-id', token ? { 'X-aws-ec2-metadata-token': token } : {});
  assert.equal((await get(VM1, t1)).status, 200);
  assert.equal((await get(VM1)).status, 200, 'optional mode: v1 reads work');
  assert.equal((await get(VM1, 'garbage')).status, 401);
  assert.equal((await get(VM2, t1)).status, 401, "vm1's token is useless to vm2");
  assert.equal((await get(VM2)).status, 401, 'required mode: token-less reads are 401');
  const t2 = (await put(VM2, '10')).text;
  assert.equal((await get(VM2, t2)).status, 200);
  clock.jumpWall(3_600_000); // the wall clock is stepped an hour forward: expiry is monotonic
  assert.equal((await get(VM2, t2)).status, 200, 'a wall-clock step does not expire a live token');
  clock.jumpWall(-7_200_000);
  await clock.advance(9_999);
  assert.equal((await get(VM2, t2)).status, 200, 'nor does a step back extend it');
  await clock.advance(1);
  assert.equal((await get(VM2, t2)).status, 401, 'expired token');
  assert.ok(!d.sink.text.includes(t1) && !d.sink.text.includes(t2), 'tokens never reach the log');
});

test('guest door: OpenStack listing, random seed and password', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  assert.ok((await d.guest(VM1, 'GET', '/openstack')).text.split('\n').includes('2018-08-27'));
  assert.equal((await d.guest(VM1, 'GET', '/openstack/2012-08-10/')).text, 'meta_data.json');
  assert.equal((await d.guest(VM1, 'GET', '/openstack/2012-08-10/network_data.json')).status, 404);
  assert.equal((await d.guest(VM1, 'GET', '/openstack/2099-01-01/meta_data.json')).status, 404);
  const a = osMeta(await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json'));
  const b = osMeta(await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json'));
  assert.equal(a.uuid, (sampleInstance(1) as InstanceInput).uuid);
  assert.equal(Buffer.from(a.random_seed!, 'base64').length, 512);
  assert.notEqual(a.random_seed, b.random_seed, 'a fresh seed on every request');
  assert.ok(Array.isArray(((await d.guest(VM1, 'GET', '/openstack/latest/network_data.json')).json as NetworkData).links));

  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/password')).text, '');
  assert.equal((await d.guest(VM1, 'POST', '/openstack/latest/password', {}, 'x'.repeat(1021))).status, 400);
  assert.equal((await d.guest(VM1, 'POST', '/openstack/latest/password', {}, 'encrypted-pw')).status, 200);
  assert.equal((await d.guest(VM1, 'POST', '/openstack/latest/password', {}, 'again')).status, 409);
  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/password')).text, 'encrypted-pw');
  assert.deepEqual((await d.admin('GET', '/v1/instances/vm1/password')).json, { password: 'encrypted-pw' });
  await d.admin('DELETE', '/v1/instances/vm1/password');
  assert.equal((await d.guest(VM1, 'POST', '/openstack/latest/password', {}, 'new')).status, 200);
});

test('guest door: Ganeti parameters (secret only during an install job, live only, claim-once) and OS scripts', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  const osdir = join(d.dir, 'os', 'debootstrap');
  mkdirSync(join(osdir, 'untrusted'), { recursive: true });
  writeFileSync(join(osdir, 'create'), '#!/bin/sh\necho trusted\n');
  writeFileSync(join(osdir, 'untrusted', 'create'), '#!/bin/sh\necho untrusted\n');
  writeFileSync(join(osdir, 'export'), '#!/bin/sh\necho export\n');
  writeFileSync(join(d.dir, 'outside'), 'host secret file');
  symlinkSync(join(d.dir, 'outside'), join(osdir, 'escape'));
  symlinkSync(join(osdir, 'export'), join(osdir, 'rename'));
  await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, { os: { name: 'debootstrap' }, params: { public: { a: '1' }, private: { b: '2' } } }),
  );
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { once: 'O' }, claimOnce: true, ttlSec: 100 });
  await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { short: 'S' }, ttlSec: 10 });

  const params = () => d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json').then((r): unknown => r.json);
  assert.deepEqual(await params(), { a: ['1', 'public'], b: ['2', 'private'] }, 'no install job: no secrets, none consumed');
  await startInstall(d, 'vm1');
  assert.deepEqual(await params(), { a: ['1', 'public'], b: ['2', 'private'], once: ['O', 'secret'], short: ['S', 'secret'] });
  assert.deepEqual(await params(), { a: ['1', 'public'], b: ['2', 'private'], short: ['S', 'secret'] }, 'claim-once consumed');
  const info = ((await d.admin('GET', '/v1/instances/vm1/params')).json as ParamsView).secret;
  assert.equal(info.find((s) => s.name === 'once')!.claimedAt, new Date(clock.now()).toISOString());
  await clock.advance(10_000);
  assert.deepEqual(await params(), { a: ['1', 'public'], b: ['2', 'private'] }, 'expired secret gone');

  const script = (name: string) => d.guest(VM1, 'GET', `/ganeti/latest/os/scripts/${name}`);
  assert.equal((await script('create')).text, '#!/bin/sh\necho untrusted\n', 'the untrusted variant wins');
  assert.equal((await script('export')).text, '#!/bin/sh\necho export\n');
  assert.equal((await script('rename')).status, 200, 'a symlink inside the definition is fine');
  for (const bad of ['escape', '..%2F..%2Foutside', '..', '.hidden', 'CREATE', 'a%00b']) {
    const r = await script(bad);
    assert.equal(r.status, 404, bad);
    assert.ok(!r.text.includes('host secret'));
  }
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/os/scripts/../../outside')).status, 404);
  assert.ok((await d.guest(VM1, 'GET', '/ganeti')).text.split('\n').includes('latest'));
  const meta = (await d.guest(VM1, 'GET', '/ganeti/latest/meta_data.json')).json as GanetiMetaData;
  assert.equal(meta.os!.name, 'debootstrap');
  assert.equal(JSON.stringify(meta).includes(osdir), false, 'no host path in meta_data.json');
});

test('guest door: secrets only while the install job runs; its end wipes them; progress reaches the job, the pipe keeps it', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { pw: 'hunter2' } });
  const params = () => d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json').then((r): unknown => r.json);
  assert.deepEqual(await params(), {}, 'no job running: nothing');
  await startInstall(d, 'vm1');
  assert.deepEqual(await params(), { pw: ['hunter2', 'secret'] });
  const generationOf = async (): Promise<number> => ((await d.admin('GET', '/v1/instances/vm1')).json as InstanceView).status.generation;
  const generation = await generationOf();
  const line = 'metad-progress v1 step=create status=started\n';
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, line)).status, 204);
  const jobs = d.daemon.services.jobs;
  while (jobs.status('vm1')?.lines.length === 0) await new Promise((r) => jobs.once('change', r));
  const aborted = await d.admin('POST', '/v1/instances/vm1/install/abort');
  assert.equal(aborted.status, 200);
  await d.daemon.services.jobs.settled('vm1');
  const rec = (await d.admin('GET', '/v1/instances/vm1/install')).json as JobRecord;
  assert.equal(rec.outcome, 'aborted');
  assert.deepEqual(rec.lines, [line.trim()], 'the progress line reached the job record');
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, line, 'and the pipe still holds every byte');
  assert.deepEqual(((await d.admin('GET', '/v1/instances/vm1/params')).json as ParamsView).secret, [], 'the job end wiped the secret');
  assert.deepEqual(d.hv.running(), []);
  assert.equal(await generationOf(), generation, 'the job never touched the instance document');
  await startInstall(d, 'vm1');
  assert.deepEqual(await params(), {}, 'a new job does not bring it back');
});

test('guest door: the pipe both ways', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { pipe: { maxBytes: 32 } } });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));
  const octet = { 'content-type': 'application/octet-stream' };

  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, '', 'non-blocking and empty');
  await d.admin('POST', '/v1/instances/vm1/pipe', 'start install', octet);
  assert.equal((await d.guest(VM2, 'GET', '/ganeti/latest/read')).text, '', "vm2 cannot read vm1's pipe");
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, 'start install');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, '', 'consumed');

  // A long-poll returns as soon as data arrives (the clock stands still) ...
  const waiting = d.guest(VM1, 'GET', '/ganeti/latest/read?wait=20');
  await until('the guest read waits on the clock', () => clock.pending === 1);
  await d.admin('POST', '/v1/instances/vm1/pipe', 'late', octet);
  assert.equal((await settled(waiting, 'the read is woken by the write')).text, 'late');
  assert.equal(clock.pending, 0, 'its wait is cancelled');
  // ... and with nothing written, ends empty exactly when its wait expires.
  const expiring = d.guest(VM1, 'GET', '/ganeti/latest/read?wait=3');
  await until('the guest read waits on the clock', () => clock.pending === 1);
  await clock.advance(3000);
  const expired = await settled(expiring, 'the read ends when its wait expires');
  assert.equal(expired.status, 200);
  assert.equal(expired.text, '');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read?wait=999')).status, 400);

  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'progress 10%\n')).status, 204);
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'x'.repeat(40))).status, 413);
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'y'.repeat(25))).status, 413, 'does not fit: refused whole');
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, 'progress 10%\n');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/write')).status, 405);
});

test('guest door: rate limit answers 429 with Retry-After', async (t) => {
  const d = await startTestDaemon({ config: { guest: { rateLimit: { ratePerSec: 1, burst: 3 } } } });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2));
  const codes = [];
  for (let i = 0; i < 5; i++) codes.push((await d.guest(VM1, 'GET', '/latest/meta-data/instance-id')).status);
  assert.deepEqual(codes.slice(0, 3), [200, 200, 200]);
  const r = await d.guest(VM1, 'GET', '/latest/meta-data/instance-id');
  assert.equal(r.status, 429);
  assert.ok(Number(r.headers['retry-after']) >= 1);
  assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/instance-id')).status, 200, 'limits are per instance');
});

test('guest door: slow headers are cut off and one source cannot hog connections', async (t) => {
  const d = await startTestDaemon({ config: { guest: { headersTimeoutMs: 500, requestTimeoutMs: 1000, maxConnectionsPerSource: 4 } } });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const slow = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
  await new Promise((r) => slow.once('connect', r));
  slow.resume(); // flowing, so the server's close reaches us as 'end' then 'close'
  slow.write('GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n');
  // Closed by the server's header timeout (500 ms, node's own timer, not the injected clock).
  await settled(new Promise((r) => slow.once('close', r)), 'a slowloris connection is closed');

  const socks = await Promise.all(
    Array.from(
      { length: 8 },
      () =>
        new Promise<net.Socket>((res) => {
          const s = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
          s.resume();
          s.on('error', () => undefined);
          s.once('connect', () => res(s));
        }),
    ),
  );
  t.after(() => socks.forEach((s) => s.destroy()));
  await until('connections over the per-source cap are closed', () => socks.filter((s) => s.destroyed || s.readableEnded).length >= 4);
  assert.equal((await d.guest('127.0.0.7', 'GET', '/')).status, 404, 'other sources are still served');
});

test('guest door: an internal failure is a plain 500 without detail; the stack goes to the log', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const identity = d.daemon.services.identity as unknown as { sign: (doc: string) => string };
  identity.sign = () => {
    throw new Error('signer exploded at /secret/path/key.pem');
  };
  const r = await d.guest(VM1, 'GET', '/latest/dynamic/instance-identity/signature');
  assert.equal(r.status, 500);
  assert.equal(r.text, 'Internal Server Error');
  assert.match(String(r.headers['content-type']), /text\/plain/);
  const logged = d.sink.records().find((l) => l.msg === 'guest request failed') as
    { err?: { stack?: string }; instance?: string } | undefined;
  assert.ok(logged?.err?.stack?.includes('signer exploded'), 'the stack is logged');
  assert.equal(logged?.instance, 'vm1');
  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json')).status, 200, 'other answers still work');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/instance-id')).status, 200, 'the signature is computed only when asked for');
});

test('guest door: imdsV2 required covers every dialect; HEAD never consumes the pipe', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, {
      ec2: { imdsV2: 'required' },
      userData: Buffer.from('#cloud-config').toString('base64'),
      params: { private: { k: 'v' } },
    }),
  );
  for (const p of [
    '/openstack/latest/user_data',
    '/openstack/latest/meta_data.json',
    '/ganeti/latest/os/parameters.json',
    '/ganeti/latest/read',
  ]) {
    assert.equal((await d.guest(VM1, 'GET', p)).status, 401, `${p} needs a token when IMDSv2 is required`);
  }
  const token = (await d.guest(VM1, 'PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '60' })).text;
  const withToken = { 'X-aws-ec2-metadata-token': token };
  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/user_data', withToken)).text, '#cloud-config');
  assert.deepEqual((await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json', withToken)).json, { k: ['v', 'private'] });

  await d.admin('POST', '/v1/instances/vm1/pipe', 'keep me', { 'content-type': 'application/octet-stream' });
  const head = await d.guest(VM1, 'HEAD', '/ganeti/latest/read', withToken);
  assert.equal(head.status, 405);
  assert.equal(head.headers.allow, 'GET');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read', withToken)).text, 'keep me', 'the HEAD consumed nothing');
});

test('guest door: an admin value equal to a zero seed cannot disable random_seed', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const zeros = Buffer.alloc(512).toString('base64');
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { openstack: { meta: { trap: zeros } } }));
  const a = osMeta(await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json'));
  const b = osMeta(await d.guest(VM1, 'GET', '/openstack/latest/meta_data.json'));
  assert.equal(a.meta!['trap'], zeros, 'the admin value is served as it is');
  assert.notEqual(a.random_seed, zeros);
  assert.notEqual(a.random_seed, b.random_seed);
});

test('guest door: uploads cut short are 400s, logged sampled and without a stack', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  for (let i = 0; i < 20; i++) {
    const s = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
    await new Promise((r) => s.once('connect', r));
    s.write('POST /ganeti/latest/write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part');
    await new Promise((r) => setTimeout(r, 5));
    s.destroy();
  }
  // The positive signal first: every one of the 20 has been answered as refused (logged, or
  // counted by the sampler and written out by a flush): all of them are past the point where a
  // hang-up could have been logged as a failure.
  const refused = (): number =>
    d.sink
      .records()
      .filter(
        (l) =>
          l.msg === 'guest request refused' || (l.msg === 'guest-triggered log lines suppressed' && l.event === 'guest request refused'),
      )
      .reduce((n, l) => n + (l.msg === 'guest request refused' ? 1 : Number(l.suppressed)), 0);
  await until('the 20 cut-short uploads refused', () => {
    d.daemon.services.guestLog.flush(true);
    return refused() === 20;
  });
  assert.equal(d.sink.records().filter((l) => l.msg === 'guest request failed').length, 0, 'no stack traces for client hang-ups');
  assert.ok(d.sink.records().filter((l) => l.msg === 'guest request refused').length <= 2, 'refusals are sampled');
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, '', 'nothing partial was queued');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/instance-id')).status, 200);
});
