/** The published schema matches the code, and the schema accepts/refuses what it should. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { HOST_PATH_PATTERN, inputOf, instanceSchema, splitInput, type StoredInstance } from '../../daemon/registry/model.js';
import { hostPathProblem } from '../../daemon/jobs/disks.js';
import { validateInstance } from '../../daemon/registry/validate.js';
import { sampleInstance } from '../support/daemon.js';
import { DaemonError } from '../../daemon/errors.js';

test('docs/instance.schema.json is the schema in daemon/registry/model.ts (run `node dist/daemon/cli.js schema > docs/instance.schema.json`)', () => {
  const doc: unknown = JSON.parse(readFileSync(new URL('../../../docs/instance.schema.json', import.meta.url), 'utf8'));
  assert.deepEqual(doc, JSON.parse(JSON.stringify(instanceSchema)));
});

test('schema: names cannot carry paths; user data is capped at 64 KiB', () => {
  for (const name of ['../x', 'a/b', '.hidden', 'a..b', 'UPPER', '-x', '']) {
    assert.throws(() => validateInstance({ ...sampleInstance(1), name }), /invalid instance document/, name);
  }
  const ok64k = Buffer.alloc(64 * 1024, 1).toString('base64');
  assert.doesNotThrow(() => validateInstance({ ...sampleInstance(1), userData: ok64k }));
  const over = Buffer.alloc(64 * 1024 + 3, 1).toString('base64');
  assert.throws(() => validateInstance({ ...sampleInstance(1), userData: over }));
  assert.throws(() => validateInstance({ ...sampleInstance(1), userData: 'not base64!' }));
});

test('schema: tag keys follow EC2 metadata rules and never look like a public-key line', () => {
  const withTags = (tags: Record<string, string>) => ({ ...sampleInstance(1), ec2: { exposeTags: true, tags } });
  for (const ok of ['Name', 'a+b=c.d,e_f:g@h-i', 'x'.repeat(128)]) assert.doesNotThrow(() => validateInstance(withTags({ [ok]: 'v' })), ok);
  for (const bad of ['0=x', '12=key', '_index', '.', '..', 'a b', 'a/b', '', 'x'.repeat(129)]) {
    assert.throws(() => validateInstance(withTags({ [bad]: 'v' })), /invalid instance document/, bad);
  }
});

test('schema: public key names must be unique', () => {
  const keys = [
    { name: 'k', key: 'ssh-ed25519 A' },
    { name: 'k', key: 'ssh-ed25519 B' },
  ];
  assert.throws(
    () => validateInstance({ ...sampleInstance(1), publicKeys: keys }),
    (e: { details?: { path: string }[] }) => e.details?.[0]?.path === '/publicKeys/1/name',
  );
});

test('schema: host paths are absolute and normalized (no control characters, "." or ".." segments, "//"); OS definitions are names', () => {
  const withDisk = (path: string) => ({ ...sampleInstance(1), hardware: { disks: [{ path }] } });
  for (const ok of ['/srv/disks/vm1.raw', '/dev/vg0/vm1-disk0', '/srv/a..b/.hidden'])
    assert.doesNotThrow(() => validateInstance(withDisk(ok)), ok);
  for (const bad of [
    '/dev/../etc/shadow',
    '/srv/./x',
    '/srv//x',
    '/srv/x/',
    'relative',
    '/srv/x\ny',
    '/srv/\u001b[31m',
    '/srv/x\u0085',
    '/srv/\u007f',
    '/srv/..',
  ]) {
    assert.throws(
      () => validateInstance(withDisk(bad)),
      (e: unknown) => {
        assert.ok(e instanceof DaemonError);
        assert.equal(e.details[0]?.path, '/hardware/disks/0/path');
        assert.match(e.details.at(0)?.message ?? 'none', /absolute, normalized path/);
        assert.ok(!JSON.stringify(e.details).includes(bad), 'the value is never echoed');
        return true;
      },
      JSON.stringify(bad),
    );
  }
  // The schema's pattern and the code's check (daemon/jobs/disks.ts) agree.
  const re = new RegExp(HOST_PATH_PATTERN, 'u');
  for (const p of ['/srv/disks/vm1.raw', '/dev/../etc/shadow', '/srv//x', '/srv/x/', '/srv/x\ny', '/a', '/.', '/..', '/...', 'x'])
    assert.equal(re.test(p), hostPathProblem(p) === undefined, JSON.stringify(p));
  assert.doesNotThrow(() => validateInstance({ ...sampleInstance(1), os: { name: 'debootstrap+default', variant: 'default' } }));
  for (const os of [{ definition: '/etc' }, { name: '/etc' }, { name: '../etc' }, { name: 'a/b' }, { name: '.hidden' }])
    assert.throws(() => validateInstance({ ...sampleInstance(1), os }), /invalid instance document/, JSON.stringify(os));
});

test('inputOf: a stored instance is its input document again (public, private values, IAM), never its secrets or the guest password', () => {
  const iam = { role: 'r', accessKeyId: 'AKIA', secretAccessKey: 'sak', token: 'tok', expiration: '2030-01-01T00:00:00Z' };
  const input = validateInstance({
    ...sampleInstance(1),
    params: { public: { a: '1' }, private: { p: 'private-value' }, secret: { s: 'secret-value' } },
    ec2: { imdsV2: 'required', iam },
  });
  const { doc, priv, iam: creds } = splitInput(input);
  const stored: StoredInstance = {
    doc,
    sensitive: { private: priv ?? {}, ...(creds ? { iam: creds } : {}), password: 'guest-password' },
    createdAt: 't',
    updatedAt: 't',
    generation: 1,
  };
  const back = inputOf(stored);
  assert.deepEqual(back, { ...input, params: { public: { a: '1' }, private: { p: 'private-value' } } });
  assert.ok(!JSON.stringify(back).includes('secret-value') && !JSON.stringify(back).includes('guest-password'));
  // A copy: editing it (as a patch does) changes nothing stored.
  back.comm.ipv4 = '127.0.0.9';
  (back.params as { private: Record<string, string> }).private.p = 'changed';
  assert.equal(stored.doc.comm.ipv4, '127.0.0.2');
  assert.equal(stored.sensitive.private.p, 'private-value');
});
