/**
 * Ganeti secret windows (daemon/feeds/ganeti-secrets.ts) on a real vault, a fake clock and a
 * temp record dir: what the integration test (ganeti-secrets.test.ts) does not reach through the
 * doors: another incarnation of the same name, the tap going down after a `ttl` claim, records
 * of earlier runs at the start.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GanetiSecretWindows } from '../../daemon/feeds/ganeti-secrets.js';
import { SecretVault } from '../../daemon/registry/vault.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';

function setup(claim: 'once' | 'ttl' = 'once', dir = mkdtempSync(join(tmpdir(), 'metad-gsw-'))) {
  const clock = new FakeClock();
  const vault = new SecretVault(clock, 7200);
  const { sink, log } = sinkLogger();
  const incarnations = new Map<string, string>([['web1', 'u1@t1']]);
  const w = new GanetiSecretWindows({
    vault,
    clock,
    log,
    dir: join(dir, 'ganeti-secrets'),
    settings: { claim, ttlSec: 600 },
    incarnation: (n) => incarnations.get(n),
  });
  return { dir, clock, vault, sink, w, incarnations };
}

test('a window serves only the incarnation it was pushed for', async () => {
  const s = setup();
  await s.w.init();
  s.w.pushed('web1', 'u1@t1', { k: 'v1' });
  assert.equal(s.w.secretsOpen('web1'), true);
  // The same name is now another instance (registered again): the window is not its.
  s.incarnations.set('web1', 'u2@t2');
  assert.equal(s.w.secretsOpen('web1'), false);
  s.w.noteClaim('web1');
  assert.deepEqual(s.w.list(), [], "another incarnation's window is not listed");
  s.incarnations.set('web1', 'u1@t1');
  assert.equal(s.w.list()[0]?.claimedAt, undefined, 'nothing claimed it meanwhile');
  await s.w.stop();
  rmSync(s.dir, { recursive: true, force: true });
});

test('claim ttl: the tap going down after a claim ends the window claimed, not stuck; values wiped', async () => {
  const s = setup('ttl');
  await s.w.init();
  s.w.pushed('web1', 'u1@t1', { k: 'v1' });
  s.w.tapUp('web1');
  s.w.noteClaim('web1');
  assert.deepEqual(s.vault.liveValues('web1', true), { k: 'v1' }, 'ttl: not claim-once in the vault');
  s.w.tapDown('web1');
  const [r] = s.w.list();
  assert.deepEqual([r?.state, r?.reason], ['claimed', 'the comm tap went down']);
  assert.deepEqual(s.vault.liveValues('web1', false), {});
  assert.equal(s.w.secretsOpen('web1'), false);
  assert.deepEqual(s.w.ended, { claimed: 1, expired: 0, stuck: 0, withdrawn: 0, lost: 0, removed: 0 });
  await s.w.stop();
  rmSync(s.dir, { recursive: true, force: true });
});

test('a claim needs live values: a GET after the vault was wiped (an install job ended) claims nothing', async () => {
  const s = setup();
  await s.w.init();
  s.w.pushed('web1', 'u1@t1', { k: 'v1' });
  s.vault.wipe('web1');
  s.w.noteClaim('web1');
  assert.equal(s.w.list()[0]?.state, 'served');
  await s.w.stop();
  rmSync(s.dir, { recursive: true, force: true });
});

test('at the start: an open window is reported lost, records of instances gone or registered again and files that are no record are deleted', async () => {
  const s = setup();
  await s.w.init();
  s.w.pushed('web1', 'u1@t1', { k: 'secret-value-1' });
  s.incarnations.set('web2', 'w2@t');
  s.w.pushed('web2', 'w2@t', { k: 'secret-value-2' });
  await s.w.stop();
  const dir = join(s.dir, 'ganeti-secrets');
  for (const f of readdirSync(dir)) assert.ok(!readFileSync(join(dir, f), 'utf8').includes('secret-value'), f);
  writeFileSync(join(dir, 'junk.json'), '{"v": 1}');
  mkdirSync(join(dir, 'sub.d'));

  const again = setup('once', s.dir);
  again.incarnations.delete('web2'); // removed while metad was down
  await again.w.init();
  assert.deepEqual(
    again.w.list().map((r) => [r.instance, r.state, r.secrets]),
    [['web1', 'lost', ['k']]],
  );
  assert.deepEqual(readdirSync(dir).sort(), ['sub.d', 'web1.json']);
  assert.equal(again.w.secretsOpen('web1'), false);
  assert.deepEqual(
    again.sink.records().map((r) => [r.msg, r.instance, r.state]),
    [['ganeti: secret parameters not claimed', 'web1', 'lost']],
  );
  // A later push opens a new window as usual.
  again.w.pushed('web1', 'u1@t1', { k: 'secret-value-3' });
  assert.equal(again.w.secretsOpen('web1'), true);
  await again.w.stop();
  rmSync(s.dir, { recursive: true, force: true });
});
