/**
 * The Hypervisor contract, on the strict fake and on libvirt's in-process `test:///default`
 * driver through appliance/libvirt.ts (the real binding; skipped or failed without it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING, isConnectionLost, isNotFound, stateName } from '../../appliance/libvirt.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { skipOrFail } from '../support/env.js';

const xmlFor = (name: string): string =>
  `<domain type='test'><name>${name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>` +
  `<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash></domain>`;

test('fake hypervisor: strict about unknown names and double creates; records calls', async () => {
  const h = new FakeHypervisor();
  await assert.rejects(h.state('nope'), /unknown domain/);
  await assert.rejects(h.destroy('nope'), /unknown domain/);
  assert.throws(() => h.powerOff('nope'), /unknown domain/);
  await h.createTransient('m-a', xmlFor('m-a'));
  await assert.rejects(h.createTransient('m-a', xmlFor('m-a')), /already exists/);
  await assert.rejects(h.createTransient('m-b', xmlFor('m-c')), /does not name/);
  assert.equal(await h.state('m-a'), 'running');
  assert.deepEqual(await h.list('m-'), ['m-a']);
  h.powerOff('m-a');
  assert.throws(() => h.powerOff('m-a'), /not running/);
  assert.equal(await h.state('m-a'), 'gone');
  assert.equal(await h.destroy('m-a'), 'gone');
  assert.deepEqual(await h.list('m-'), []);
  await h.createTransient('m-a', xmlFor('m-a')); // a gone name may be created again
  h.failNextCreate = new Error('boom');
  await assert.rejects(h.createTransient('m-d', xmlFor('m-d')), /boom/);
  await h.createTransient('m-d', xmlFor('m-d'));
  assert.equal(await h.destroy('m-d'), 'destroyed');
  assert.deepEqual(h.opsOf('createTransient'), ['m-a', 'm-a', 'm-b', 'm-a', 'm-d', 'm-d']);
  await h.close();
  await assert.rejects(h.list(''), /after close/);
});

test('libvirt error classification and state names', () => {
  assert.ok(isNotFound(new Error("Domain not found: no domain with matching uuid 'x' (y)")));
  assert.ok(!isNotFound(new Error('operation failed: domain already exists')));
  assert.ok(isConnectionLost(new Error('Cannot write data: Broken pipe')));
  assert.ok(isConnectionLost(new Error('internal error: client socket is closed')));
  assert.ok(!isConnectionLost(new Error('Domain not found')));
  assert.equal(stateName(1), 'running');
  assert.equal(stateName(4), 'shutdown');
  assert.equal(stateName(99), 'nostate');
});

test('a missing binding fails with a message naming the Debian packages', async () => {
  await assert.rejects(loadBinding('@metad/no-such-libvirt-binding'), (e: unknown) => {
    assert.ok(e instanceof HypervisorUnavailable);
    assert.equal(e.message, MISSING_BINDING);
    assert.match(e.message, /libvirt-dev/);
    return true;
  });
  const h = new LibvirtHypervisor('test:///default', '@metad/no-such-libvirt-binding');
  await assert.rejects(h.list(''), HypervisorUnavailable);
});

test('libvirt binding against test:///default: create, state, list by prefix, destroy, gone', async (t) => {
  const missing = await loadBinding().then(
    () => undefined,
    () => `${MISSING_BINDING} (.ci/install-deps.sh installs them)`,
  );
  if (skipOrFail(t, missing)) return;
  const h = new LibvirtHypervisor('test:///default');
  const prefix = `metadt-${process.pid}-`;
  const a = `${prefix}a`;
  const b = `${prefix}b`;
  try {
    assert.deepEqual(await h.list(prefix), []);
    await h.createTransient(a, xmlFor(a));
    await h.createTransient(b, xmlFor(b));
    await assert.rejects(h.createTransient(a, xmlFor(a)), /already exists/);
    await assert.rejects(h.createTransient(`${prefix}c`, xmlFor(`${prefix}d`)), /names/);
    assert.deepEqual(await h.list(prefix), [a, b]);
    assert.ok((await h.list('')).includes('test'), 'the driver has its own domain');
    assert.equal(await h.state(a), 'running');
    assert.equal(await h.destroy(a), 'destroyed');
    assert.equal(await h.state(a), 'gone');
    assert.equal(await h.destroy(a), 'gone');
    assert.deepEqual(await h.list(prefix), [b]);
    await assert.rejects(new LibvirtHypervisor('qemu:///system?socket=/nonexistent/sock').list(''), HypervisorUnavailable);
  } finally {
    for (const n of await h.list(prefix)) await h.destroy(n);
    await h.close();
  }
});
