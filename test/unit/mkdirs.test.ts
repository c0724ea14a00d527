/** mkdirs (daemon/mkdirs.ts): mkdir -p that always ends, with the failing component named. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mkdirs, MkdirError } from '../../daemon/mkdirs.js';

test('mkdirs: creates missing parents with the mode; an existing directory is fine', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-mkdirs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const deep = join(dir, 'a', 'b', 'c');
  await mkdirs(deep, 0o700);
  assert.ok(statSync(deep).isDirectory());
  assert.equal(statSync(join(dir, 'a')).mode & 0o777, 0o700);
  await mkdirs(deep, 0o700);
  writeFileSync(join(dir, 'file'), '');
  await assert.rejects(
    mkdirs(join(dir, 'file', 'x'), 0o700),
    (err: unknown) => err instanceof MkdirError && err.code === 'ENOTDIR' && err.path === join(dir, 'file'),
  );
});

test('mkdirs: under /proc (mkdir answers ENOENT though the parent exists) it fails at once instead of looping', async () => {
  // node's own mkdir({ recursive: true }) spins forever on this path.
  await assert.rejects(
    mkdirs('/proc/metad-test-nonexistent/state', 0o700),
    (err: unknown) =>
      err instanceof MkdirError &&
      err.path === '/proc/metad-test-nonexistent' &&
      /cannot create directory \/proc\/metad-test-nonexistent \(E[A-Z]+\)/.test(err.message),
  );
});
