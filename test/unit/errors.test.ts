/**
 * The closed error table: every code the daemon reports (daemon/errors.ts) has its HTTP status
 * at the doors (routes/errors.ts), and docs/admin-api.md lists exactly those codes with those
 * statuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, type ErrorCode } from '../../daemon/errors.js';
import { HTTP_STATUS } from '../../routes/errors.js';

test('docs/admin-api.md lists every error code with its status, and nothing else', () => {
  const doc = readFileSync(new URL('../../../docs/admin-api.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| ([A-Z][A-Za-z]+) \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  assert.deepEqual(rows.sort(), codes.map((c) => [c, HTTP_STATUS[c]]).sort());
});
