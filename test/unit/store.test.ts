/**
 * The store on a real state dir: reload after restart, private values sealed at rest, secret
 * values never on disk, tampered/unreadable files quarantined while others load, leftover
 * temp files removed, state files carry a format version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { InstanceStore, type StoreOptions } from '../../daemon/registry/store.js';
import type { DaemonError } from '../../daemon/errors.js';
import { STATE_FORMAT, STATE_VERSION } from '../../daemon/registry/state-file.js';
import { Keyring, loadMasterKey } from '../../daemon/registry/keys.js';
import { validateInstance } from '../../daemon/registry/validate.js';
import type { InstanceInput } from '../../daemon/registry/model.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { sampleInstance } from '../support/daemon.js';

function makeStore(dir: string, key = randomBytes(32), files?: StoreOptions['files']) {
  const { sink, log } = sinkLogger();
  const store = new InstanceStore({
    dir,
    keyring: new Keyring(key),
    clock: new FakeClock(),
    log,
    commRange: '127.0.0.0/8',
    maxDocumentBytes: 65536,
    ...(files ? { files } : {}),
  });
  return { store, sink, key };
}

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'metad-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('store: instances survive a restart; private values are sealed at rest', async (t) => {
  const dir = tmp(t);
  const { store, key } = makeStore(dir);
  await store.start();
  const canary = `PRIVATE-CANARY-${randomBytes(4).toString('hex')}`;
  const iamCanary = `IAM-CANARY-${randomBytes(4).toString('hex')}`;
  await store.put(
    validateInstance(
      sampleInstance(1, {
        params: { public: { pub: 'visible' }, private: { pw: canary }, secret: { s: 'never-here' } },
        ec2: { iam: { role: 'r', accessKeyId: 'AK', secretAccessKey: iamCanary, token: 'tok', expiration: '2030-01-01T00:00:00Z' } },
      }),
    ),
    true,
  );
  await store.put(validateInstance(sampleInstance(2)), true);
  const file = readFileSync(join(dir, 'instances', 'vm1.json'), 'utf8');
  assert.ok(!file.includes(canary), 'private value must be encrypted at rest');
  assert.ok(!file.includes(iamCanary), 'IAM credentials must be encrypted at rest');
  assert.ok(!file.includes('never-here'), 'secret values never reach the store');
  assert.ok(file.includes('visible'), 'public values are stored as they are');
  const outer = JSON.parse(file) as { format: unknown; version: unknown };
  assert.equal(outer.format, STATE_FORMAT);
  assert.equal(outer.version, STATE_VERSION);
  assert.equal(statSync(join(dir, 'instances', 'vm1.json')).mode & 0o777, 0o600);

  const again = makeStore(dir, key).store;
  const loaded = await again.start();
  assert.deepEqual(loaded, { loaded: 2, quarantined: 0 });
  const vm1 = again.get('vm1')!;
  assert.equal(vm1.sensitive.private.pw, canary);
  assert.equal(vm1.sensitive.iam?.secretAccessKey, iamCanary);
  assert.equal(again.byAddress('127.0.0.2')?.doc.name, 'vm1');
  assert.equal(again.byAddress('127.0.0.3')?.doc.name, 'vm2');
});

test('store: tampered, truncated and foreign files are quarantined; the others load', async (t) => {
  const dir = tmp(t);
  const { store, key } = makeStore(dir);
  await store.start();
  for (const n of [1, 2, 3, 4, 5]) await store.put(validateInstance(sampleInstance(n, { params: { private: { k: 'v' } } })), true);
  const p = (n: number) => join(dir, 'instances', `vm${n}.json`);
  // 1: flip the hostname inside the MACed body
  writeFileSync(p(1), readFileSync(p(1), 'utf8').replace('vm1\\"', 'vmX\\"'));
  // 2: truncated (a torn write that a non-atomic writer would leave)
  writeFileSync(p(2), readFileSync(p(2), 'utf8').slice(0, 40));
  // 3: a future format version
  const o3 = JSON.parse(readFileSync(p(3), 'utf8')) as Record<string, unknown>;
  writeFileSync(p(3), JSON.stringify({ ...o3, version: 99 }));
  // leftover temp file from a crash mid-write
  writeFileSync(join(dir, 'instances', '.tmp-vm9.json.abc'), 'partial');

  const { store: again, sink } = makeStore(dir, key);
  const r = await again.start();
  assert.deepEqual(r, { loaded: 2, quarantined: 3 });
  assert.deepEqual(
    again.list().map((i) => i.doc.name),
    ['vm4', 'vm5'],
  );
  const q = readdirSync(join(dir, 'quarantine'));
  assert.equal(q.length, 3);
  assert.ok(!readdirSync(join(dir, 'instances')).some((f) => f.startsWith('.tmp-')), 'temp files cleaned');
  const reasons = sink
    .records()
    .filter((l) => l.msg === 'state file quarantined')
    .map((l) => l.reason);
  assert.ok(reasons.some((x) => /integrity/.test(String(x))));
  assert.ok(reasons.some((x) => /not JSON/.test(String(x))));
  assert.ok(reasons.some((x) => /version 99/.test(String(x))));

  // With another key every file fails its integrity check: nothing wrong is loaded.
  const { store: wrongKey } = makeStore(dir, randomBytes(32));
  assert.deepEqual(await wrongKey.start(), { loaded: 0, quarantined: 2 });
});

test('keys: the key file is created 0600 and a loose one is refused', (t) => {
  const dir = tmp(t);
  const path = join(dir, 'k');
  const k1 = loadMasterKey(path, true);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(loadMasterKey(path, false), k1);
  writeFileSync(path, k1, { mode: 0o644 });
  rmSync(path);
  writeFileSync(path, k1, { mode: 0o644 });
  assert.throws(() => loadMasterKey(path, false), /group or others/);
  assert.throws(() => loadMasterKey(join(dir, 'missing'), false), /ENOENT/);
});

test('store: a document over the stored size cap is PayloadTooLarge and nothing changes', async (t) => {
  const dir = tmp(t);
  const { store } = makeStore(dir);
  await store.start();
  const big = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'x'.repeat(1000)]));
  await assert.rejects(
    store.put(validateInstance(sampleInstance(1, { params: { public: big } })), true),
    (e: { code?: string }) => e.code === 'PayloadTooLarge',
  );
  assert.equal(store.size, 0);
  assert.deepEqual(readdirSync(join(dir, 'instances')), []);
});

test('store: concurrent writes of different instances cannot claim the same comm IPv4 or MAC', async (t) => {
  const dir = tmp(t);
  const { store } = makeStore(dir);
  await store.start();
  const clash = (n: number) =>
    validateInstance({ ...sampleInstance(n), comm: { mac: `52:54:00:00:10:${String(n).padStart(2, '0')}`, ipv4: '127.0.9.9' } });
  const results = await Promise.allSettled([1, 2, 3, 4, 5, 6, 7, 8].map((n) => store.put(clash(n), true)));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one wins the address');
  assert.ok(results.filter((r) => r.status === 'rejected').every((r) => (r.reason as DaemonError).code === 'Conflict'));
  const sameMac = (n: number) => validateInstance({ ...sampleInstance(n + 20), comm: { mac: '52:54:00:00:20:00', ipv4: `127.0.8.${n}` } });
  const r2 = await Promise.allSettled([1, 2, 3].map((n) => store.put(sameMac(n), true)));
  assert.equal(r2.filter((r) => r.status === 'fulfilled').length, 1);
  // Writes to one instance apply in order: the last one wins.
  await Promise.all(['a', 'b', 'c', 'd'].map((h) => store.put(validateInstance(sampleInstance(50, { hostname: h })), true)));
  assert.equal(store.get('vm50')!.doc.hostname, 'd');
  assert.equal(store.get('vm50')!.generation, 4);
});

test('identity key: created 0600, reused, refused when group/world readable', async (t) => {
  const dir = tmp(t);
  const { IdentitySigner } = await import('../../daemon/registry/identity.js');
  const path = join(dir, 'identity-key.pem');
  const a = await IdentitySigner.load(path);
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const b = await IdentitySigner.load(path);
  assert.equal(a.publicKeyPem, b.publicKeyPem, 'the same key after a restart');
  const { chmodSync } = await import('node:fs');
  chmodSync(path, 0o644);
  await assert.rejects(IdentitySigner.load(path), /group or others/);
});

test('store: a failed directory sync after the rename keeps memory equal to the disk and says so', async (t) => {
  const dir = tmp(t);
  const { writeFileDurable, removeFileDurable, DirSyncError } = await import('../../daemon/registry/persist.js');
  let failSync = false;
  const eio = Object.assign(new Error('EIO'), { code: 'EIO' });
  const files = {
    writeFileDurable: async (d: string, n: string, data: string | Buffer) => {
      if (!failSync) return writeFileDurable(d, n, data);
      const { writeFile } = await import('node:fs/promises');
      await writeFile(join(d, n), data); // the file is replaced...
      throw new DirSyncError(eio); // ...but the directory sync fails
    },
    removeFileDurable: async (d: string, n: string) => {
      if (!failSync) return removeFileDurable(d, n);
      rmSync(join(d, n));
      throw new DirSyncError(eio);
    },
  };
  const { store, sink } = makeStore(dir, randomBytes(32), files);
  await store.start();
  await store.put(validateInstance(sampleInstance(1, { hostname: 'old' })), true);
  failSync = true;
  await assert.rejects(
    store.put(validateInstance(sampleInstance(1, { hostname: 'new' })), true),
    (e: { code?: string; message: string }) => e.code === 'Unavailable' && /in effect/.test(e.message),
  );
  assert.equal(store.get('vm1')!.doc.hostname, 'new', 'memory follows the disk');
  assert.ok(sink.records().some((l) => l.msg === 'state change not confirmed durable'));
  await assert.rejects(store.remove('vm1'), (e: { code?: string }) => e.code === 'Unavailable');
  assert.equal(store.get('vm1'), undefined, 'removed on disk, so removed in memory');
});

test('store: a bad file that cannot be moved aside stays put; everything else still loads', async (t) => {
  const dir = tmp(t);
  const { store, key } = makeStore(dir);
  await store.start();
  for (const n of [1, 2]) await store.put(validateInstance(sampleInstance(n)), true);
  writeFileSync(join(dir, 'instances', 'vm1.json'), 'garbage');
  writeFileSync(join(dir, 'quarantine'), 'a file where the quarantine dir should be');
  const { store: again, sink } = makeStore(dir, key);
  assert.deepEqual(await again.start(), { loaded: 1, quarantined: 1 });
  assert.equal(again.get('vm2')?.doc.name, 'vm2');
  assert.ok(readdirSync(join(dir, 'instances')).includes('vm1.json'), 'left in place');
  const rec = sink.records().find((l) => l.msg === 'state file quarantined');
  assert.equal(rec?.quarantinedAs, null);
});

test('store: narrowing the comm range loads existing instances with a warning instead of quarantining them', async (t) => {
  const dir = tmp(t);
  const { store, key } = makeStore(dir);
  await store.start();
  await store.put(validateInstance(sampleInstance(300)), true); // 127.0.1.45
  const { log, sink } = sinkLogger();
  const narrow = new InstanceStore({
    dir,
    keyring: new Keyring(key),
    clock: new FakeClock(),
    log,
    commRange: '127.0.0.0/24',
    maxDocumentBytes: 65536,
  });
  assert.deepEqual(await narrow.start(), { loaded: 1, quarantined: 0 });
  assert.ok(sink.records().some((l) => l.msg === 'instance outside the comm range' && l.instance === 'vm300'));
  await assert.rejects(
    narrow.put(validateInstance(sampleInstance(301)), true),
    (e: { code?: string }) => e.code === 'Conflict',
    'new writes must be in range',
  );
});

test('store: two state files claiming one comm address: the newer one loads, the older is quarantined', async (t) => {
  const dir = tmp(t);
  const { key } = makeStore(dir);
  // Write two valid files with the same address through two stores that do not see each other.
  const clockA = new FakeClock(Date.UTC(2026, 0, 1));
  const clockB = new FakeClock(Date.UTC(2026, 0, 2));
  const mk = (clock: FakeClock) =>
    new InstanceStore({ dir, keyring: new Keyring(key), clock, log: sinkLogger().log, commRange: '127.0.0.0/8', maxDocumentBytes: 65536 });
  const a = mk(clockA);
  await a.start();
  const b = mk(clockB);
  await b.start();
  await b.put(validateInstance({ ...sampleInstance(1), name: 'zzz-newer' }), true); // sorts last by name, written later
  await a.put(validateInstance({ ...sampleInstance(1), name: 'aaa-older' }), true);
  const { store: again } = makeStore(dir, key);
  assert.deepEqual(await again.start(), { loaded: 1, quarantined: 1 });
  assert.equal(again.byAddress('127.0.0.2')?.doc.name, 'zzz-newer');
});

test('store: an address no guest may have, stored by an older version, loads with a warning and never identifies anyone', async (t) => {
  const dir = tmp(t);
  const { log, sink } = sinkLogger();
  const opts = { dir, keyring: new Keyring(randomBytes(32)), clock: new FakeClock(), maxDocumentBytes: 65536 };
  const old = new InstanceStore({ ...opts, log, commRange: '169.254.0.0/16' });
  await old.start();
  // Straight into the store (no validateInstance), as a version without the address rules did.
  await old.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '169.254.169.254' } }) as InstanceInput, true);
  await old.put(sampleInstance(2, { comm: { mac: '52:54:00:00:00:02', ipv4: '169.254.7.0' } }) as InstanceInput, true);
  assert.equal(old.byAddress('169.254.169.254'), undefined, 'the metadata address is the host: a host process is nobody');
  assert.equal(old.byAddress('169.254.7.0')?.doc.name, 'vm2', 'control: an ordinary address identifies its guest');

  const again = new InstanceStore({ ...opts, log, commRange: ['169.254.0.0/16', '169.254.7.0/24'] });
  assert.deepEqual(await again.start(), { loaded: 2, quarantined: 0 });
  const warned = sink
    .records()
    .filter((l) => l.msg === 'instance has a comm address no guest may have')
    .map((l) => l.instance)
    .sort();
  assert.deepEqual(warned, ['vm1', 'vm2'], 'the metadata address, and the network address of the narrower range');
  assert.equal(again.byAddress('169.254.169.254'), undefined);
});
