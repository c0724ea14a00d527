/**
 * metadctl against the real admin door (not a stub): register from YAML, list, show, params
 * with a secret read from a file (never in argv), pipe both ways, remove, exit codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceList } from '../../cli/api-types.js';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';
import { ctlAt } from '../support/metadctl-run.js';

const ctl = ctlAt;

test('metadctl drives the real daemon', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  const yaml = join(d.dir, 'vm1.yaml');
  writeFileSync(
    yaml,
    [
      'name: vm1',
      'uuid: 3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11',
      'hostname: vm1',
      'comm: { mac: "52:54:00:aa:bb:01", ipv4: 127.0.0.2 }',
      'params:',
      '  public: { locale: C.UTF-8 }',
    ].join('\n'),
  );

  let r = await ctl(sock, ['register', yaml]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /registered vm1/);
  r = await ctl(sock, ['register', yaml]);
  assert.match(r.out, /replaced vm1/);

  const secretFile = join(d.dir, 'secret.txt');
  const secret = 'CTL-SECRET-9d1a';
  writeFileSync(secretFile, `${secret}\n`);
  r = await ctl(sock, ['params', 'set', 'vm1', '--visibility', 'secret', `rootpw=@${secretFile}`, '--claim-once', '--ttl', '600']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(d.daemon.services.vault.liveValues('vm1', false), { rootpw: secret }, 'value read from the file, newline trimmed');
  r = await ctl(sock, ['params', 'set', 'vm1', '--visibility', 'private', 'k=-'], 'from-stdin');
  assert.equal(r.code, 0, r.err);
  assert.equal(d.daemon.services.store.get('vm1')!.sensitive.private.k, 'from-stdin');

  r = await ctl(sock, ['show', 'vm1']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /vm1/);
  assert.match(r.out, /rootpw/);
  assert.match(r.out, /locale/);
  assert.ok(!r.out.includes(secret) && !r.out.includes('from-stdin'), 'show never prints private/secret values');

  r = await ctl(sock, ['list']);
  assert.match(r.out, /vm1\s+3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11\s+127\.0\.0\.2/);
  r = await ctl(sock, ['--json', 'list']);
  assert.equal((JSON.parse(r.out) as InstanceList).instances[0]?.name, 'vm1');

  r = await ctl(sock, ['pipe', 'send', 'vm1', 'go']);
  assert.equal(r.code, 0, r.err);
  assert.equal(d.daemon.services.pipes.get('vm1').toGuest.take().toString(), 'go');
  d.daemon.services.pipes.get('vm1').toHost.push(Buffer.from('50%\n'));
  r = await ctl(sock, ['pipe', 'read', 'vm1']);
  assert.equal(r.out, '50%\n');

  r = await ctl(sock, ['show', 'nope']);
  assert.equal(r.code, 4);
  r = await ctl(sock, ['params', 'set', 'vm1', '--visibility', 'public', 'bad key=x']);
  assert.equal(r.code, 2, 'an invalid parameter name is refused before sending (usage error)');
  assert.match(r.err, /assignment 1: invalid parameter name/);
  r = await ctl(sock, ['remove', 'vm1']);
  assert.equal(r.code, 0);
  assert.equal(d.daemon.services.store.size, 0);
  assert.deepEqual(d.daemon.services.vault.info('vm1'), [], 'removing an instance wipes its secrets');
  r = await ctl(join(d.dir, 'missing.sock'), ['list']);
  assert.equal(r.code, 3);
  assert.match(r.err, /missing\.sock/);
});

test('metadctl: an empty or dot key is a usage error, never "clear everything"', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  await d.admin('PUT', '/v1/instances/vm1', {
    name: 'vm1',
    uuid: '3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11',
    comm: { mac: '52:54:00:aa:bb:01', ipv4: '127.0.0.2' },
  });
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { A: '1', B: '2' } });
  for (const key of ['', '.', '..']) {
    const r = await ctl(sock, ['params', 'unset', 'vm1', '--visibility', 'secret', key]);
    assert.equal(r.code, 2, `key ${JSON.stringify(key)}: ${r.err}`);
  }
  assert.equal((await ctl(sock, ['show', ''])).code, 2);
  assert.deepEqual(
    d.daemon.services.vault.info('vm1').map((s) => s.name),
    ['A', 'B'],
    'nothing was cleared',
  );
  // The API itself: a trailing slash does not match the clear-all route.
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1/params/secret/')).status, 404);
  assert.equal(d.daemon.services.vault.info('vm1').length, 2);
  const r = await d.admin('PROPFIND', '/v1/instances/vm1');
  assert.ok(r.status === 405 || r.status === 501);
  assert.equal((r.json as { code?: unknown }).code, 'MethodNotAllowed', 'every admin error is JSON from the closed table');
});

test('metadctl: an oversize register or patch always says "document larger than N bytes" (exit 2), never EPIPE', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  const limit = d.config.admin.maxBodyBytes;
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
  const big = join(d.dir, 'big.json');
  writeFileSync(big, JSON.stringify({ ...sampleInstance(1), hostname: 'x'.repeat(limit) }));
  const bigPatch = join(d.dir, 'big-patch.json');
  writeFileSync(bigPatch, JSON.stringify({ hostname: 'y'.repeat(limit) }));
  for (let i = 0; i < 30; i++) {
    for (const args of [
      ['register', big],
      ['patch', 'vm1', bigPatch],
    ]) {
      const r = await ctl(sock, args);
      assert.equal(r.code, 2, `${args[0]} #${i}: ${r.err}`);
      assert.match(r.err, new RegExp(`^metadctl: document larger than ${limit} bytes \\(\\d+ bytes\\)\\n`), `${args[0]} #${i}`);
    }
  }
  assert.equal(d.daemon.services.store.get('vm1')?.doc.hostname, 'vm1', 'nothing changed');
});

test('admin client: a raw oversize request (no size check in the client) reads the 413', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
  const doc = JSON.stringify({ ...sampleInstance(1), hostname: 'x'.repeat(4 * d.config.admin.maxBodyBytes) });
  const data = Buffer.alloc(4 * d.config.pipe.maxBytes);
  for (let i = 0; i < 30; i++) {
    // The daemon answers 413 and closes while the client may still be writing: the answer counts.
    assert.equal((await d.client.request('PUT', '/v1/instances/vm1', { body: doc })).status, 413, `PUT #${i}`);
    assert.equal(
      (await d.client.request('POST', '/v1/instances/vm1/pipe', { body: data, contentType: 'application/octet-stream' })).status,
      413,
      `POST pipe #${i}`,
    );
  }
});

test('metadctl register: a comm IPv4 no guest may have is refused with its path and rule, never the value', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  for (const [ipv4, rule] of [
    ['169.254.169.254', /\/comm\/ipv4: must not be the metadata address/],
    ['127.255.255.255', /\/comm\/ipv4: must not be the network or broadcast address of its comm range/],
  ] as const) {
    const yaml = join(d.dir, 'bad.yaml');
    writeFileSync(
      yaml,
      ['name: vm1', 'uuid: 3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11', `comm: { mac: "52:54:00:aa:bb:01", ipv4: ${ipv4} }`].join('\n'),
    );
    const r = await ctl(sock, ['register', yaml]);
    assert.notEqual(r.code, 0, ipv4);
    assert.match(r.err, rule);
    if (ipv4 !== '169.254.169.254') assert.ok(!r.err.includes(ipv4), 'the value is not echoed');
  }
  assert.equal(d.daemon.services.store.size, 0);
});
