/**
 * Names up to the schema's maximum work everywhere a name becomes a file name (issue 6, item 8:
 * names of 233–253 characters answered 500, ENAMETOOLONG on the temp file): register, patch,
 * guest reads, a private-value write, restart (the state file loads), quarantine of a damaged
 * file, delete. One character more is a 400 that names the field, never a 500.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, sampleInstance, type TestDaemon } from '../support/daemon.js';
import { FILE_NAME_MAX, MAX_NAME_CHARS, isInstanceName } from '../../daemon/registry/model.js';

/** A valid DNS-style name of exactly `n` characters: labels of 63 letters joined by dots. */
function nameOf(n: number, letter: string): string {
  const chars = Array.from({ length: n }, (_, i) => (i % 64 === 63 ? '.' : letter));
  // Never end on a dot: move the last dot one to the left (a 62-letter label, then a 1-letter one).
  if (chars[n - 1] === '.') [chars[n - 2], chars[n - 1]] = ['.', letter];
  return chars.join('');
}

test('the longest name the schema allows is 250 (NAME_MAX 255 minus ".json")', () => {
  assert.equal(MAX_NAME_CHARS, 250);
  assert.equal(FILE_NAME_MAX, 255);
  for (const n of [1, 63, 64, 200, 249, 250, 251, 253]) assert.equal(nameOf(n, 'x').length, n);
  assert.ok(isInstanceName(nameOf(250, 'x')));
  assert.equal(isInstanceName(nameOf(251, 'x')), false);
});

test('a 250-character name: register, patch, guest read, private write, restart, delete', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-longname-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let d: TestDaemon = await startTestDaemon({ dir });
  t.after(() => d.close());
  const long = nameOf(MAX_NAME_CHARS, 'q');
  const long2 = nameOf(MAX_NAME_CHARS, 'r');

  let r = await d.admin('PUT', `/v1/instances/${long}`, sampleInstance(1, { name: long, params: { private: { k: 'v' } } }));
  assert.equal(r.status, 201, r.text);
  assert.equal((await d.admin('PUT', `/v1/instances/${long2}`, sampleInstance(2, { name: long2 }))).status, 201);
  r = await d.admin('PATCH', `/v1/instances/${long}`, { ec2: { instanceType: 't3.long' } });
  assert.equal(r.status, 200, r.text);
  r = await d.admin('PUT', `/v1/instances/${long}/params/private`, { values: { k: 'w' } });
  assert.ok(r.status === 200 || r.status === 204, `${r.status} ${r.text}`);
  assert.equal((await d.guest('127.0.0.2', 'GET', '/latest/meta-data/instance-type')).text, 't3.long');
  const files = readdirSync(join(d.config.stateDir, 'instances'));
  assert.ok(files.includes(`${long}.json`), 'the state file is <name>.json');
  assert.ok(files.every((f) => Buffer.byteLength(f) <= FILE_NAME_MAX));

  // Restart on the same state dir: both load; then damage one and restart: it is quarantined.
  await d.close();
  d = await startTestDaemon({ dir });
  const view = (await d.admin('GET', `/v1/instances/${long}`)).json as { instance: { ec2: { instanceType: string } } };
  assert.equal(view.instance.ec2.instanceType, 't3.long');
  assert.equal((await d.guest('127.0.0.3', 'GET', '/latest/meta-data/hostname')).text, 'vm2');
  const file2 = join(d.config.stateDir, 'instances', `${long2}.json`);
  writeFileSync(file2, readFileSync(file2, 'utf8').replace('vm2', 'vmX'));
  await d.close();
  d = await startTestDaemon({ dir });
  const q = d.sink.records().find((l) => l.msg === 'state file quarantined');
  assert.ok(q, 'the damaged file was quarantined');
  assert.equal(typeof q.quarantinedAs, 'string', `moved aside, not left in place: ${JSON.stringify(q)}`);
  assert.ok(existsSync(String(q.quarantinedAs)));
  assert.ok(
    String(q.quarantinedAs).split('/').pop()!.startsWith(long2.slice(0, 200)),
    'the quarantined copy keeps (the start of) its name',
  );
  assert.equal((await d.admin('GET', `/v1/instances/${long2}`)).status, 404);

  assert.equal((await d.admin('DELETE', `/v1/instances/${long}`)).status, 204);
  assert.equal((await d.admin('GET', `/v1/instances/${long}`)).status, 404);
  assert.deepEqual(readdirSync(join(d.config.stateDir, 'instances')), []);
});

test('names over 250 characters are a 400 naming /name, never a 500', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  for (const n of [251, 253]) {
    const name = nameOf(n, 'z');
    const body = await d.admin('PUT', `/v1/instances/${name}`, sampleInstance(1, { name }));
    assert.equal(body.status, 400, `${n}: ${body.text}`);
    assert.match(body.text, /\/name/);
  }
  // A hostname is not a file name: DNS's 253 still holds there.
  const ok = await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { hostname: nameOf(253, 'h') }));
  assert.equal(ok.status, 201, ok.text);
  assert.equal((await d.guest('127.0.0.2', 'GET', '/latest/meta-data/hostname')).text, nameOf(253, 'h'));
});
