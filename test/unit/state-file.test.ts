/**
 * The state-file codec and the comm-address index on their own (daemon/registry/state-file.ts,
 * daemon/registry/comm-index.ts): a file decodes to what was encoded, only with the right key and name;
 * the index reports the first collision in ipv4, mac, tap order and honours claims in flight.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Keyring } from '../../daemon/registry/keys.js';
import { decodeStateFile, encodeStateFile } from '../../daemon/registry/state-file.js';
import { CommIndex } from '../../daemon/registry/comm-index.js';
import { splitInput, type PublicDoc, type StoredInstance } from '../../daemon/registry/model.js';
import { validateInstance } from '../../daemon/registry/validate.js';
import { sampleInstance } from '../support/daemon.js';

const docOf = (n: number, comm: Record<string, string> = {}): PublicDoc => {
  const base = sampleInstance(n) as { comm: Record<string, string> };
  return splitInput(validateInstance({ ...base, comm: { ...base.comm, ...comm } })).doc;
};
const stored = (doc: PublicDoc, priv: Record<string, string> = {}): StoredInstance => ({
  doc,
  sensitive: { private: priv },
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-02T00:00:00.000Z',
  generation: 3,
});

test('state file: round trip; the private part is sealed; another key, name or format is refused', () => {
  const keyring = new Keyring(randomBytes(32));
  const inst = stored(docOf(1), { pw: 'PRIVATE-CANARY' });
  const text = encodeStateFile(inst, keyring, 65536);
  assert.ok(!text.includes('PRIVATE-CANARY'));
  assert.deepEqual(decodeStateFile('vm1', text, keyring), inst);
  assert.equal(decodeStateFile('vm1', text, new Keyring(randomBytes(32))), 'integrity check failed (tampered, or another key)');
  assert.equal(decodeStateFile('vm2', text, keyring), 'name does not match file name');
  assert.equal(decodeStateFile('vm1', text.slice(0, -3), keyring), 'not JSON (truncated or damaged)');
  const outer = JSON.parse(text) as Record<string, unknown>;
  assert.equal(decodeStateFile('vm1', JSON.stringify({ ...outer, version: 99 }), keyring), 'unsupported format version 99');
  assert.equal(decodeStateFile('vm1', JSON.stringify({ ...outer, format: 'x' }), keyring), 'unknown format');
  const plain = stored(docOf(2));
  const plainOuter = JSON.parse(encodeStateFile(plain, keyring, 65536)) as { body: string };
  assert.equal((JSON.parse(plainOuter.body) as { sealed?: unknown }).sealed, undefined, 'nothing to seal, nothing sealed');
  assert.throws(() => encodeStateFile(inst, keyring, 100), { code: 'PayloadTooLarge' });
});

test('comm index: held and claimed addresses collide in ipv4, mac, tap order; own addresses do not', () => {
  const idx = new CommIndex();
  const a = docOf(1, { tap: 'tap1' });
  idx.add(a);
  assert.equal(idx.nameAt(a.comm.ipv4), 'vm1');
  assert.equal(idx.problem(a), undefined, 'an instance may keep its own addresses');
  assert.deepEqual(idx.problem(docOf(2, { ipv4: a.comm.ipv4, mac: a.comm.mac })), {
    path: '/comm/ipv4',
    message: 'already used by instance vm1',
  });
  assert.equal(idx.problem(docOf(2, { mac: a.comm.mac }))?.path, '/comm/mac');
  assert.equal(idx.problem(docOf(2, { tap: 'tap1' }))?.path, '/comm/tap');
  const b = docOf(3);
  const release = idx.claim(b);
  assert.equal(idx.problem(docOf(4, { ipv4: b.comm.ipv4 }))?.path, '/comm/ipv4', 'a write in flight holds its claim');
  assert.equal(idx.nameAt(b.comm.ipv4), undefined, 'a claim does not identify guests');
  release();
  assert.equal(idx.problem(docOf(4, { ipv4: b.comm.ipv4 })), undefined);
  // A successor that took over an address keeps it when the old holder is removed.
  const successor = docOf(5, { ipv4: a.comm.ipv4 });
  idx.add(successor);
  idx.remove(a);
  assert.equal(idx.nameAt(a.comm.ipv4), 'vm5');
  assert.equal(idx.problem(docOf(6, { tap: 'tap1' })), undefined, 'removal frees the tap');
});
