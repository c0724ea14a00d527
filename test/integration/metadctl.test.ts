/**
 * metadctl against the real admin door (not a stub): register from YAML, list, show, params
 * with a secret read from a file (never in argv), pipe both ways, remove, exit codes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../cli/metadctl.js';
import { startTestDaemon } from '../support/daemon.js';

async function ctl(socket: string, args: string[], stdin = '') {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (c) => (o += c));
  err.on('data', (c) => (e += c));
  const code = await main(['--socket', socket, ...args], { stdout: out, stderr: err, stdin: Readable.from([stdin]), env: {} });
  return { code, out: o, err: e };
}

test('metadctl drives the real daemon', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  const yaml = join(d.dir, 'vm1.yaml');
  writeFileSync(yaml, [
    'name: vm1',
    'uuid: 3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11',
    'hostname: vm1',
    'comm: { mac: "52:54:00:aa:bb:01", ipv4: 127.0.0.2 }',
    'params:',
    '  public: { locale: C.UTF-8 }',
  ].join('\n'));

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
  assert.equal(JSON.parse(r.out).instances[0].name, 'vm1');

  r = await ctl(sock, ['pipe', 'send', 'vm1', 'go']);
  assert.equal(r.code, 0, r.err);
  assert.equal(d.daemon.services.pipes.get('vm1').toGuest.take().toString(), 'go');
  d.daemon.services.pipes.get('vm1').toHost.push(Buffer.from('50%\n'));
  r = await ctl(sock, ['pipe', 'read', 'vm1']);
  assert.equal(r.out, '50%\n');

  r = await ctl(sock, ['show', 'nope']);
  assert.equal(r.code, 4);
  r = await ctl(sock, ['params', 'set', 'vm1', '--visibility', 'public', 'bad key=x']);
  assert.notEqual(r.code, 0);
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
  await d.admin('PUT', '/v1/instances/vm1', { name: 'vm1', uuid: '3f1c7a52-9d7e-4c1b-8a61-2f0e5b9c4d11', comm: { mac: '52:54:00:aa:bb:01', ipv4: '127.0.0.2' } });
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { A: '1', B: '2' } });
  for (const key of ['', '.', '..']) {
    const r = await ctl(sock, ['params', 'unset', 'vm1', '--visibility', 'secret', key]);
    assert.equal(r.code, 2, `key ${JSON.stringify(key)}: ${r.err}`);
  }
  assert.equal((await ctl(sock, ['show', ''])).code, 2);
  assert.deepEqual(d.daemon.services.vault.info('vm1').map((s) => s.name), ['A', 'B'], 'nothing was cleared');
  // The API itself: a trailing slash does not match the clear-all route.
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1/params/secret/')).status, 404);
  assert.equal(d.daemon.services.vault.info('vm1').length, 2);
  const r = await d.admin('PROPFIND', '/v1/instances/vm1');
  assert.ok(r.status === 405 || r.status === 501);
  assert.equal(r.json.code, 'MethodNotAllowed', 'every admin error is JSON from the closed table');
});
