/** The published schema matches the code, and the schema accepts/refuses what it should. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { instanceSchema } from '../../daemon/model.js';
import { validateInstance } from '../../daemon/validate.js';
import { sampleInstance } from '../support/daemon.js';

test('docs/instance.schema.json is the schema in daemon/model.ts (run `node dist/daemon/cli.js schema > docs/instance.schema.json`)', () => {
  const doc = JSON.parse(readFileSync(new URL('../../../docs/instance.schema.json', import.meta.url), 'utf8'));
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
