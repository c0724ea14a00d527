/** Secret vault: expiry on the injected clock, claim-once, wipe zeroes the bytes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SecretVault } from '../../daemon/registry/vault.js';
import { FakeClock } from '../fakes/fake-clock.js';

test('vault: values expire after their TTL (default and per value)', async () => {
  const clock = new FakeClock();
  const v = new SecretVault(clock, 5400);
  v.replace('vm1', { a: 'A' });
  v.merge('vm1', { b: 'B' }, { ttlSec: 10 });
  assert.deepEqual(v.liveValues('vm1', false), { a: 'A', b: 'B' });
  await clock.advance(10_000);
  assert.deepEqual(v.liveValues('vm1', false), { a: 'A' });
  assert.equal(v.info('vm1').find((i) => i.name === 'b')?.state, 'expired', 'expired, even though its bytes are already zeroed');
  await clock.advance(5390_000);
  assert.deepEqual(v.liveValues('vm1', false), {});
  assert.equal(v.sweep(), 0, 'already wiped on read');
});

test('vault: sweep wipes expired values nobody read', async () => {
  const clock = new FakeClock();
  const v = new SecretVault(clock, 60);
  v.replace('vm1', { a: 'A' });
  await clock.advance(61_000);
  assert.equal(v.info('vm1')[0]?.state, 'expired');
  assert.equal(v.sweep(), 1);
  assert.equal(v.info('vm1')[0]?.state, 'expired', 'the sweep zeroes it; it still reads as expired');
  v.replace('vm2', { b: 'B' });
  v.wipe('vm2');
  assert.deepEqual(v.info('vm2'), [], 'a wipe (removal, replacement) forgets the secret entirely');
});

test('vault: claim-once values are handed out once and the claim time is recorded', async () => {
  const clock = new FakeClock();
  const v = new SecretVault(clock, 5400);
  v.replace('vm1', { token: 'T', keep: 'K' });
  v.merge('vm1', { token: 'T' }, { claimOnce: true });
  assert.deepEqual(
    v.info('vm1').map((i) => [i.name, i.state, i.claimOnce]),
    [
      ['keep', 'live', false],
      ['token', 'live', true],
    ],
  );
  assert.deepEqual(v.liveValues('vm1', false), { token: 'T', keep: 'K' }, 'a peek does not consume');
  await clock.advance(1000);
  assert.deepEqual(v.liveValues('vm1', true), { token: 'T', keep: 'K' });
  assert.deepEqual(v.liveValues('vm1', true), { keep: 'K' }, 'the second read has no claim-once value');
  const info = v.info('vm1').find((i) => i.name === 'token');
  assert.equal(info?.state, 'claimed');
  assert.equal(info.claimedAt, new Date(clock.now()).toISOString());
});

test('vault: wipe zeroes the stored bytes and forgets the instance', () => {
  const v = new SecretVault(new FakeClock(), 5400);
  v.replace('vm1', { a: 'secret-bytes' });
  // Reach into the private map to prove the buffer itself is zeroed, not just dropped.
  const entry = (v as unknown as { byInstance: Map<string, Map<string, { value: Buffer }>> }).byInstance.get('vm1')!.get('a')!;
  const buf = entry.value;
  assert.equal(v.wipe('vm1'), 1);
  assert.ok(buf.every((b) => b === 0));
  assert.deepEqual(v.info('vm1'), []);
  assert.deepEqual(v.liveValues('vm1', true), {});
  v.replace('vm2', { x: '1' });
  assert.equal(v.remove('vm2', 'x'), true);
  assert.equal(v.remove('vm2', 'x'), false);
});
