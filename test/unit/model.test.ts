/** The published schema matches the code, and the schema accepts/refuses what it should. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { instanceSchema } from '../../daemon/model.js';
import { validateInstance } from '../../daemon/validate.js';
import { sampleInstance } from '../support/daemon.js';

test('docs/instance.schema.json is the schema in daemon/model.ts (run `node dist/daemon/cli.js schema > docs/instance.schema.json`)', () => {
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
