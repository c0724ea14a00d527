/**
 * docs/operations.md, "Backup and restore", as printed (systemctl aside, which the systemd-live
 * tests cover): a stopped daemon's state dir packed with tar and unpacked elsewhere gives a daemon
 * with the same instances, private values and identity key; secret values are not in the backup
 * and must be sent again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';
import { hostExample } from '../support/doc-examples.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The tar commands of the documented lines, for a state dir at `<lib>/state` instead of /var/lib/metad. */
function documentedTar(lib: string, archive: string): { backup: string[]; restore: string[] } {
  const doc = hostExample(readFileSync(join(ROOT, 'docs/operations.md'), 'utf8'), 'backup').body;
  const tars = [...doc.matchAll(/sudo (tar -C \/var\/lib -[cx]zf metad-state\.tgz(?: metad)?)/g)].map((m) => m[1] ?? '');
  assert.equal(tars.length, 2, 'operations.md shows a backup and a restore line');
  const argv = (line: string): string[] =>
    line
      .replace('/var/lib', lib)
      .replace('metad-state.tgz', archive)
      .replace(/ metad$/, ' state')
      .split(' ')
      .slice(1);
  return { backup: argv(tars[0] ?? ''), restore: argv(tars[1] ?? '') };
}

test('backup and restore as documented: instances, private values and the identity key come back; secrets do not', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'metad-backup-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const archive = join(base, 'metad-state.tgz');
  const first = join(base, 'first');
  const d1 = await startTestDaemon({ dir: first });
  await d1.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { params: { public: { a: '1' }, private: { p: 'private-value' } } }));
  await d1.admin('PUT', '/v1/instances/vm1/params/secret', { values: { s: 'secret-value' } });
  const key1 = (await d1.admin('GET', '/v1/identity/public-key')).text;
  await d1.close(); // systemctl stop
  const tar = documentedTar(first, archive);
  await run('tar', tar.backup);
  assert.ok(!readFileSync(archive).includes(Buffer.from('secret-value')), 'no secret value in the backup');
  assert.ok(!readFileSync(archive).includes(Buffer.from('private-value')), 'private values sealed');

  const second = join(base, 'second'); // another host
  await run('mkdir', ['-p', second]);
  await run('tar', documentedTar(second, archive).restore);
  const d2 = await startTestDaemon({ dir: second });
  t.after(() => d2.close());
  assert.equal((await d2.admin('GET', '/v1/identity/public-key')).text, key1, 'the same identity key');
  const params = await d2.guest('127.0.0.2', 'GET', '/ganeti/latest/os/parameters.json');
  assert.deepEqual(params.json, { a: ['1', 'public'], p: ['private-value', 'private'] });
  const view = (await d2.admin('GET', '/v1/instances/vm1/params')).json as { secret: unknown[] };
  assert.deepEqual(view.secret, [], 'secret values are gone: send them again');
});
