/**
 * The Hypervisor contract, on the strict fake and on libvirt's in-process `test:///default`
 * driver through appliance/libvirt.ts (the real binding; skipped or failed without it), and a lost
 * connection (libvirtd restarted, killed, down) through a stand-in binding (test/fakes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING, isConnectionLost, isNotFound, stateName } from '../../appliance/libvirt.js';
import { BoundedHypervisor, HypervisorUnavailable, MAX_CALLS_IN_FLIGHT } from '../../appliance/hypervisor.js';
import { TimedOut } from '../../daemon/clock.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { skipOrFail } from '../support/env.js';
import { daemon } from '../fakes/fake-libvirt-binding.js';

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

// ------------------------------------------------------------ a lost connection (fake binding)

const FAKE_BINDING = new URL('../fakes/fake-libvirt-binding.js', import.meta.url).href;
const fakeXml = (name: string): string => `<domain><name>${name}</name></domain>`;

test('libvirtd restarted: the next call reconnects and succeeds; the dead handle is closed, not leaked', async () => {
  daemon.reset();
  const h = new LibvirtHypervisor('qemu:///fake', FAKE_BINDING);
  await h.createTransient('m-a', fakeXml('m-a'));
  assert.equal(daemon.open.size, 1);
  for (let i = 1; i <= 3; i++) {
    daemon.restart();
    assert.equal(await h.state('m-a'), 'running', `after restart ${String(i)}`);
    assert.equal(h.reconnects, i);
    assert.equal(daemon.opened, i + 1);
    assert.equal(daemon.open.size, 1, 'only the live connection is open');
  }
  daemon.restart();
  assert.deepEqual(await h.list('m-'), ['m-a']);
  daemon.restart();
  assert.equal(await h.destroy('m-a'), 'destroyed');
  assert.equal(daemon.open.size, 1);
  await h.close();
  assert.equal(daemon.open.size, 0);
});

test('calls racing on a dead connection share one new connection', async () => {
  daemon.reset();
  const h = new LibvirtHypervisor('qemu:///fake', FAKE_BINDING);
  await h.createTransient('m-a', fakeXml('m-a'));
  daemon.restart();
  const states = await Promise.all([1, 2, 3, 4, 5].map(() => h.state('m-a')));
  assert.deepEqual(states, ['running', 'running', 'running', 'running', 'running']);
  assert.equal(daemon.opened, 2, 'one reconnect for all five');
  assert.equal(daemon.open.size, 1);
  assert.equal(h.reconnects, 1);
  await h.close();
});

test('libvirtd down: calls fail at once (one connect attempt each), nothing leaks; back up: the next call works', async () => {
  daemon.reset();
  const h = new LibvirtHypervisor('qemu:///fake', FAKE_BINDING);
  await h.createTransient('m-a', fakeXml('m-a'));
  daemon.stop();
  await assert.rejects(h.state('m-a'), HypervisorUnavailable);
  await assert.rejects(h.destroy('m-a'), (e: unknown) => e instanceof HypervisorUnavailable && /Connection refused/.test(e.message));
  await assert.rejects(h.list('m-'), HypervisorUnavailable);
  assert.equal(daemon.open.size, 0, 'the dead handle was closed; no half-open one is kept');
  assert.equal(daemon.opened, 1);
  daemon.start();
  assert.equal(await h.destroy('m-a'), 'destroyed');
  assert.equal(await h.state('m-a'), 'gone');
  assert.equal(daemon.open.size, 1);
  await h.close();
});

test('a create after libvirtd restarted goes out on a new connection: the first install after a restart does not fail', async () => {
  daemon.reset();
  const h = new LibvirtHypervisor('qemu:///fake', FAKE_BINDING);
  await h.list('');
  daemon.restart();
  await h.createTransient('m-a', fakeXml('m-a'));
  assert.equal(daemon.creates, 1);
  assert.equal(h.reconnects, 1);
  assert.equal(daemon.open.size, 1, 'the dead handle was closed');
  await h.close();
});

test('a create whose answer is lost is not retried (it happened, or may have): the next call reconnects', async () => {
  daemon.reset();
  const h = new LibvirtHypervisor('qemu:///fake', FAKE_BINDING);
  await h.list('');
  daemon.loseNextCreateReply = true;
  await assert.rejects(h.createTransient('m-a', fakeXml('m-a')), /End of file while reading/);
  assert.equal(daemon.creates, 1, 'sent once, never again');
  assert.equal(daemon.open.size, 0, 'the dead handle was closed');
  assert.equal(await h.state('m-a'), 'running', 'the next call reconnects and finds it');
  assert.equal(daemon.open.size, 1);
  await h.close();
});

test('BoundedHypervisor: a call that never answers rejects at its bound; busy() until a create (one given up on too) has answered', async () => {
  const clock = new FakeClock();
  const fake = new FakeHypervisor();
  const timeouts: string[] = [];
  const hv = new BoundedHypervisor(fake, clock, { createTransient: 3_000, state: 1_000, destroy: 1_000, list: 1_000 }, (op, name, ms) =>
    timeouts.push(`${op} ${name} ${String(ms)}`),
  );
  const name = 'metad-install-b1';
  const xml = `<domain><name>${name}</name></domain>`;
  fake.stop();
  const create = hv.createTransient(name, xml);
  const state = hv.state(name);
  create.catch(() => undefined);
  state.catch(() => undefined);
  assert.equal(hv.busy(name), true, 'a create that has not answered: the domain may appear');
  await clock.advance(1_000);
  await assert.rejects(state, TimedOut);
  await clock.advance(2_000);
  await assert.rejects(create, TimedOut);
  assert.equal(hv.busy(name), true, 'a create given up on may still make the domain');
  assert.deepEqual(timeouts, [`state ${name} 1000`, `createTransient ${name} 3000`]);
  fake.resume(); // the create lands late
  await clock.advance(0);
  assert.equal(hv.busy(name), false);
  assert.deepEqual(fake.running(), [name]);
  assert.equal(await hv.destroy(name), 'destroyed');
  assert.equal(clock.pending, 0, 'no bound timer outlives its call');
});

test('BoundedHypervisor: a hung hypervisor gets at most MAX_CALLS_IN_FLIGHT calls; the others time out unsent; all flow again once it answers', async () => {
  const clock = new FakeClock();
  const fake = new FakeHypervisor();
  const hv = new BoundedHypervisor(fake, clock, { createTransient: 3_000, state: 1_000, destroy: 1_000, list: 1_000 });
  await fake.createTransient('d1', '<domain><name>d1</name></domain>');
  fake.stop();
  const calls = [hv.state('d1'), hv.destroy('d1'), hv.state('d1'), hv.list('d'), hv.destroy('d1')];
  for (const c of calls) c.catch(() => undefined);
  await clock.advance(1_000);
  for (const c of calls) await assert.rejects(c, TimedOut);
  assert.equal(fake.heldCalls, MAX_CALLS_IN_FLIGHT, 'only the first calls reached the hung hypervisor (each holds a pool thread)');
  const later = hv.state('d1');
  later.catch(() => undefined);
  await clock.advance(1_000);
  await assert.rejects(later, TimedOut, 'no slot while the hung calls hold theirs');
  assert.equal(fake.heldCalls, MAX_CALLS_IN_FLIGHT);
  fake.resume();
  await clock.advance(0);
  assert.equal(await hv.state('d1'), 'gone', 'the held destroy went through; new calls are sent again');
});
