/** docs/admin-api.md's error table is the code's: every error code with its HTTP status, no other. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HTTP_STATUS } from '../../routes/errors.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

test('the admin API error table lists every error code with its status', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'admin-api.md'), 'utf8');
  const table = doc.slice(doc.indexOf('| code | status | when |'));
  const rows: Record<string, number> = {};
  for (const m of table.matchAll(/^\| ([A-Z][A-Za-z]+) \| (\d{3}) \|/gm)) rows[m[1] ?? ''] = Number(m[2]);
  assert.deepEqual(rows, { ...HTTP_STATUS });
});
