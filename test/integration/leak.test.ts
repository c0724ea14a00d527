/**
 * The test that tries to leak: canary private, secret and IAM values go in through every admin
 * route (and through invalid requests), then the test searches every admin answer, every log
 * line (debug level) and every byte under the state dir. Private values may exist on disk only
 * sealed; secret values nowhere at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startInstall, startTestDaemon, sampleInstance, type Reply } from '../support/daemon.js';
import type { InstanceView, ParamsView } from '../../cli/api-types.js';
import type { OsParameters } from '../../routes/render/ganeti.js';
import { createLogger } from '../../daemon/log/logger.js';
import { LogSink } from '../support/sink.js';

function allFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? allFiles(p) : [p];
  });
}

test('no private or secret value reaches logs, admin answers, errors or (secret) the disk; a restart brings back only the sealed ones', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-leak-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = await startTestDaemon({ dir });
  let closed = false;
  t.after(() => (closed ? undefined : d.close()));
  const c = (k: string) => `CANARY${k}${randomBytes(6).toString('hex')}`;
  const priv = c('PRIV');
  const priv2 = c('PRIVB');
  const secret = c('SECRET');
  const secret2 = c('SECRETB');
  const iamKey = c('IAM');
  const pw = c('PASSWORD');
  const answers: Reply[] = [];
  const a = async (m: string, p: string, b?: unknown) => {
    const r = await d.admin(m, p, b);
    answers.push(r);
    return r;
  };

  await a(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, {
      params: { public: { pub: 'ok' }, private: { p: priv }, secret: { s: secret } },
      ec2: { iam: { role: 'role1', accessKeyId: 'AKIA', secretAccessKey: iamKey, token: iamKey, expiration: '2030-01-01T00:00:00Z' } },
    }),
  );
  await a('PATCH', '/v1/instances/vm1', { params: { private: { p2: priv2 }, secret: { s2: secret2 } } });
  await a('PUT', '/v1/instances/vm1/params/secret', { values: { s3: secret }, claimOnce: true });
  await a('PATCH', '/v1/instances/vm1/params/private', { values: { p3: priv } });
  await d.daemon.services.store.setPassword('vm1', pw, true);
  // Invalid requests carrying canaries must not echo them.
  await a('PUT', '/v1/instances/vm1/params/private', { values: { 'bad key': priv }, extra: secret });
  await a('PUT', '/v1/instances/vm1', { ...sampleInstance(1), params: { secret: { s: 5 } }, hostname: secret });
  await a('PATCH', '/v1/instances/vm1', { comm: { ipv4: secret } });
  await a('PUT', '/v1/instances/vm1/params/secret', `{"values": {"s": "${secret}"`);
  // Every read-back route.
  for (const p of ['/v1/instances', '/v1/instances/vm1', '/v1/instances/vm1/params', '/v1/health']) await a('GET', p);

  // The guest may read its own private and secret values; that must not put them in the log.
  await startInstall(d, 'vm1'); // secrets are served only during an install job
  const params = await d.guest('127.0.0.2', 'GET', '/ganeti/latest/os/parameters.json');
  const osParams = params.json as OsParameters;
  assert.equal(osParams['p']?.[0], priv, `the guest sees its private value: ${params.text.slice(0, 300)}`);
  assert.equal(osParams['s3']?.[0], secret, 'and its live (claim-once) secret');
  await d.guest('127.0.0.2', 'GET', '/latest/meta-data/iam/security-credentials/role1');
  await d.guest('127.0.0.2', 'GET', '/openstack/latest/password');
  await d.guest('127.0.0.3', 'GET', '/ganeti/latest/os/parameters.json'); // an unknown guest
  await a('POST', '/v1/instances/vm1/install/abort');
  await d.daemon.services.jobs.settled('vm1');
  for (const p of ['/v1/instances/vm1/install', '/v1/jobs']) await a('GET', p); // job records: no values
  const view = answers.filter((r) => (r.json as Partial<InstanceView> | undefined)?.status?.params).at(-1)!.json as InstanceView;
  assert.deepEqual(view.status.params.private.sort(), ['p', 'p2', 'p3'], 'names are shown');
  assert.equal(view.status.iamRole, 'role1');

  for (const r of answers) {
    for (const v of [priv, priv2, secret, secret2, iamKey, pw])
      assert.ok(!r.text.includes(v), `admin answer leaked ${v.slice(0, 10)}: ${r.text.slice(0, 200)}`);
  }
  assert.ok(d.sink.lines.length > 3, 'the daemon logged something');
  for (const v of [priv, priv2, secret, secret2, iamKey, pw]) assert.ok(!d.sink.text.includes(v), `log leaked ${v.slice(0, 10)}`);

  const disk = allFiles(d.config.stateDir)
    .map((f) => readFileSync(f).toString('latin1'))
    .join('\n');
  for (const v of [secret, secret2]) assert.ok(!disk.includes(v), 'secret value on disk');
  for (const v of [priv, priv2, iamKey, pw]) assert.ok(!disk.includes(v), 'private value on disk in plaintext');
  // ...and they are really there (sealed): a restart on the same state dir and key brings the
  // private values, IAM credentials and password back; the secrets, kept in memory only, are gone.
  await d.close();
  closed = true;
  const d2 = await startTestDaemon({ dir });
  t.after(() => d2.close());
  const after = await d2.guest('127.0.0.2', 'GET', '/ganeti/latest/os/parameters.json');
  assert.equal(after.status, 200);
  assert.deepEqual(
    Object.keys(after.json as Record<string, unknown>).sort(),
    ['p', 'p2', 'p3', 'pub'],
    'private and public params came back; no secret did',
  );
  assert.equal((after.json as OsParameters)['p']![0], priv);
  const creds = JSON.parse((await d2.guest('127.0.0.2', 'GET', '/latest/meta-data/iam/security-credentials/role1')).text) as {
    SecretAccessKey: string;
  };
  assert.equal(creds.SecretAccessKey, iamKey);
  assert.equal((await d2.guest('127.0.0.2', 'GET', '/openstack/latest/password')).text, pw);
  const restarted = await d2.admin('GET', '/v1/instances/vm1/params');
  assert.deepEqual((restarted.json as ParamsView).secret, [], 'the vault starts empty');
  for (const v of [priv, priv2, secret, secret2, iamKey, pw]) {
    assert.ok(!restarted.text.includes(v) && !d2.sink.text.includes(v), `after the restart, ${v.slice(0, 10)} leaked`);
  }
});

test('logger redaction: fixed paths censor private/secret/IAM/token fields', () => {
  const sink = new LogSink();
  const log = createLogger({ level: 'debug', destination: sink });
  const canary = 'REDACT-CANARY-77';
  log.info({ params: { private: { a: canary }, secret: { b: canary }, public: { c: 'shown' } } }, 'one');
  log.info({ instance: { params: { private: { a: canary } }, ec2: { iam: { secretAccessKey: canary } } } }, 'two');
  log.info({ req: { headers: { 'x-aws-ec2-metadata-token': canary, authorization: canary } } }, 'three');
  log.info({ token: canary, password: canary, iam: canary, secretParams: { x: canary } }, 'four');
  assert.ok(!sink.text.includes(canary), sink.text);
  assert.ok(sink.text.includes('[secret]'));
  assert.ok(sink.text.includes('shown'));
});
