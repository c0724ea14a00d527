/**
 * Tap names are reused (Ganeti names its comm taps gnt.com.N, the lowest free N, and never says
 * when a VM stopped), so the comm controller, with a FakeCommNetwork: `nic up` of a tap another
 * instance records moves it (the other loses it, logged); a recorded tap whose device goes stops
 * serving its instance, whether the link watcher reports the deletion or a later reconcile finds
 * another device under the name; a device that appears under that name serves nobody until a
 * `nic up` names it; a tap recorded before it ever existed is still served when it appears.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleInstance } from '../support/daemon.js';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { createDaemon } from '../../daemon/daemon.js';
import { buildConfig } from '../../daemon/config/config.js';
import { sinkLogger, type LogSink } from '../support/sink.js';
import { until } from '../support/wait.js';
import { inputOf } from '../../daemon/registry/model.js';

type Daemon = Awaited<ReturnType<typeof createDaemon>>;

async function withDaemon(fn: (d: Daemon, net: FakeCommNetwork, sink: LogSink) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-tap-reuse-'));
  const net = new FakeCommNetwork();
  const { log, sink } = sinkLogger();
  const config = buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  });
  const d = await createDaemon(config, { log, commNetwork: net });
  try {
    await fn(d, net, sink);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const served = (net: FakeCommNetwork): string[] => net.nics.map((n) => `${n.instance}@${n.tap}`);
const logged = (sink: LogSink, msg: RegExp): Record<string, unknown>[] => sink.records().filter((r) => msg.test(String(r['msg'])));

test('nic up of a tap another instance records moves it: the other loses it, without any nic down', async () => {
  await withDaemon(async (d, net, sink) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1) as never, true);
    await store.put(sampleInstance(2) as never, true);
    net.links.add('gnt.com.0');
    await comm!.attach('vm1', 'gnt.com.0');
    assert.deepEqual(served(net), ['vm1@gnt.com.0']);
    // vm1's VM stopped and vm2 started on the name it freed: the kernel gave it another device.
    net.recreate('gnt.com.0');
    const st = await comm!.attach('vm2', 'gnt.com.0');
    assert.equal(st.instance, 'vm2');
    assert.equal(st.rules, true);
    assert.equal(store.get('vm1')?.doc.comm.tap, undefined, 'vm1 still records the tap');
    assert.equal(store.get('vm2')?.doc.comm.tap, 'gnt.com.0');
    assert.deepEqual(served(net), ['vm2@gnt.com.0']);
    const [moved] = logged(sink, /tap moved to another instance/);
    assert.deepEqual([moved?.['tap'], moved?.['from'], moved?.['to']], ['gnt.com.0', 'vm1', 'vm2']);
    // The same device named again for vm2 moves nothing.
    await comm!.attach('vm2', 'gnt.com.0');
    assert.equal(logged(sink, /tap moved/).length, 1);
    const list = await comm!.list();
    assert.deepEqual(
      list.map((n) => [n.instance, n.tap, n.down === true]),
      [
        ['vm2', 'gnt.com.0', false],
        ['vm1', '', true],
      ],
    );
  });
});

test('a move away from an instance whose install job runs is refused (409) and changes nothing', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.2', tap: 'gnt.com.0' } }) as never, true);
    await store.put(sampleInstance(2) as never, true);
    net.links.add('gnt.com.0');
    // As daemon/jobs holds the instance while its job runs (the store's guard refuses identity changes).
    store.setGuard((prev, next) => {
      if (prev.doc.comm.tap !== next.comm.tap) throw Object.assign(new Error('held'), { code: 'Conflict' });
    });
    await assert.rejects(comm!.attach('vm2', 'gnt.com.0'));
    assert.equal(store.get('vm1')?.doc.comm.tap, 'gnt.com.0');
    assert.equal(store.get('vm2')?.doc.comm.tap, undefined);
  });
});

test('a recorded tap whose device goes (reported by the link watcher) stops serving its instance; a new device of that name serves nobody until nic up', async () => {
  await withDaemon(async (d, net, sink) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1) as never, true);
    net.links.add('gnt.com.0');
    await comm!.attach('vm1', 'gnt.com.0');
    const before = net.calls.length;
    net.vanish('gnt.com.0'); // the VM stopped: Ganeti calls nothing
    net.recreate('gnt.com.0'); // and another VM's tap takes the name at once
    await until('vm1 left out', () => net.nics.length === 0);
    assert.deepEqual(
      net.calls.slice(before).filter((c) => c.includes('vm1@')),
      [],
      "a reconcile after the deletion gave vm1's identity to the new device",
    );
    const [gone] = logged(sink, /device of a recorded tap went/);
    assert.deepEqual([gone?.['instance'], gone?.['tap']], ['vm1', 'gnt.com.0']);
    assert.equal(store.get('vm1')?.doc.comm.tap, 'gnt.com.0', 'the document keeps the tap it last had');
    assert.equal((await comm!.list()).find((n) => n.instance === 'vm1')?.down, true);
    // Another device event: still nobody's.
    net.onLinkChange?.();
    await comm!.reconcile();
    assert.deepEqual(served(net), []);
    // A store change of vm1 (a Ganeti push keeps the recorded tap) does not bring it back.
    await store.update('vm1', (prev) => ({ ...inputOf(prev), hostname: 'again' }));
    await comm!.reconcile();
    assert.deepEqual(served(net), []);
    // nic up names it again: served on the new device.
    await comm!.attach('vm1', 'gnt.com.0');
    assert.deepEqual(served(net), ['vm1@gnt.com.0']);
  });
});

test('a deletion the link watcher missed: the next reconcile finds another device under the name and leaves the instance out', async () => {
  await withDaemon(async (d, net, sink) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1) as never, true);
    net.links.add('gnt.com.0');
    await comm!.attach('vm1', 'gnt.com.0');
    net.vanish('gnt.com.0', false);
    net.recreate('gnt.com.0');
    await comm!.reconcile();
    await until('vm1 left out', () => net.nics.length === 0);
    assert.equal(logged(sink, /device of a recorded tap went/).length, 1);
    // And a tap that is missing at a reconcile (not recreated) is gone as well.
    await comm!.attach('vm1', 'gnt.com.0');
    assert.deepEqual(served(net), ['vm1@gnt.com.0']);
    net.vanish('gnt.com.0', false);
    await comm!.reconcile();
    await until('vm1 left out again', () => net.nics.length === 0);
    net.recreate('gnt.com.0');
    await comm!.reconcile();
    assert.deepEqual(served(net), []);
  });
});

test('a tap recorded before its device ever existed is served when it appears (registration ahead of the VM)', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.2', tap: 'vmtap1' } }) as never, true);
    await comm!.reconcile();
    assert.deepEqual(served(net), ['vm1@vmtap1'], 'rules and DHCP wait for it');
    net.links.add('vmtap1');
    await comm!.reconcile();
    await comm!.reconcile();
    assert.deepEqual(served(net), ['vm1@vmtap1']);
    // From then on it is bound to that device: when it goes, the instance is left out.
    net.vanish('vmtap1');
    await until('vm1 left out', () => net.nics.length === 0);
  });
});

test('nic down of a gone tap forgets it; removing the instance forgets it: a new registration of that tap is served', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(1) as never, true);
    net.links.add('gnt.com.0');
    await comm!.attach('vm1', 'gnt.com.0');
    net.vanish('gnt.com.0');
    await until('vm1 left out', () => net.nics.length === 0);
    await store.remove('vm1');
    await store.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.2', tap: 'gnt.com.0' } }) as never, true);
    await comm!.reconcile();
    assert.deepEqual(served(net), ['vm1@gnt.com.0']);
  });
});
