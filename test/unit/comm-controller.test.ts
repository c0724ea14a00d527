/**
 * The comm controller with a FakeCommNetwork: the registry is the source of truth. Start
 * reconciles; every store change and removal reaches the network; nic up/down record the tap on
 * the instance idempotently; bad or missing taps are refused before anything changes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestDaemon, sampleInstance } from '../support/daemon.js';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { createDaemon } from '../../daemon/daemon.js';
import { buildConfig } from '../../daemon/config/config.js';
import { sinkLogger } from '../support/sink.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DaemonError } from '../../daemon/errors.js';
import type { LiveTap } from '../../daemon/comm/network.js';
import { until } from '../support/wait.js';

async function withDaemon(fn: (d: Awaited<ReturnType<typeof createDaemon>>, net: FakeCommNetwork) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-comm-unit-'));
  const net = new FakeCommNetwork();
  const { log } = sinkLogger();
  const config = buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  });
  const d = await createDaemon(config, { log, commNetwork: net });
  try {
    await fn(d, net);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function settled(net: FakeCommNetwork, d: Awaited<ReturnType<typeof createDaemon>>): Promise<void> {
  await d.services.comm!.reconcile();
  assert.ok(net.reconciles > 0);
}

test('start prepares the network, then reconciles the registry; stop stops it', async () => {
  let seen: FakeCommNetwork | undefined;
  await withDaemon((_d, net) => {
    seen = net;
    assert.deepEqual(net.calls.slice(0, 2), ['start', 'reconcile ']);
    return Promise.resolve();
  });
  assert.equal(seen?.stopped, true);
});

test('registering, changing and removing instances reaches the network', async () => {
  await withDaemon(async (d, net) => {
    const { store } = d.services;
    await store.put(sampleInstance(1, { comm: { mac: '02:00:00:00:00:01', ipv4: '127.0.0.2', tap: 'mtap1' } }) as never, true);
    await store.put(sampleInstance(2) as never, true); // no tap: nothing to set up
    await settled(net, d);
    assert.deepEqual(
      net.nics.map((n) => [n.instance, n.tap, n.ipv4]),
      [['vm1', 'mtap1', '127.0.0.2']],
    );
    await store.put(sampleInstance(1, { comm: { mac: '02:00:00:00:00:01', ipv4: '127.0.0.9', tap: 'mtap1' } }) as never, true);
    await settled(net, d);
    assert.equal(net.nics[0]?.ipv4, '127.0.0.9');
    await store.remove('vm1');
    await settled(net, d);
    assert.deepEqual(net.nics, []);
  });
});

test('nic up records the tap (idempotently) and reconciles; nic down forgets it', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(3) as never, true);
    net.links.add('mtap3');
    const st = await comm!.attach('vm3', 'mtap3');
    assert.equal(st.tap, 'mtap3');
    assert.equal(st.rules, true);
    assert.equal(store.get('vm3')?.doc.comm.tap, 'mtap3');
    const gen = store.get('vm3')!.generation;
    await comm!.attach('vm3', 'mtap3');
    assert.equal(store.get('vm3')!.generation, gen, 'a repeated nic up rewrote the instance');
    await comm!.detach('vm3', 'other'); // not its tap: nothing changes
    assert.equal(store.get('vm3')?.doc.comm.tap, 'mtap3');
    await comm!.detach('vm3', 'mtap3');
    assert.equal(store.get('vm3')?.doc.comm.tap, undefined);
    await comm!.detach('vm3', 'mtap3'); // idempotent
    assert.deepEqual(net.nics, []);
  });
});

test('nic up refuses a reserved or overlong tap name and a tap that does not exist, changing nothing', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(4) as never, true);
    for (const bad of ['vnet0', 'macvtap1', 'x'.repeat(16)]) {
      await assert.rejects(comm!.attach('vm4', bad), (e: unknown) => e instanceof DaemonError && e.code === 'InvalidInput');
    }
    await assert.rejects(
      comm!.attach('vm4', 'nosuchtap'),
      (e: unknown) => e instanceof DaemonError && e.code === 'Conflict' && !e.message.includes('nosuchtap'),
    );
    await assert.rejects(comm!.attach('nobody', 'mtap4'), (e: unknown) => e instanceof DaemonError && e.code === 'NotFound');
    assert.equal(store.get('vm4')?.doc.comm.tap, undefined);
    assert.equal(net.links.size, 0);
  });
});

test('a failed reconcile is logged and the next change reconciles again', async () => {
  await withDaemon(async (d, net) => {
    net.failNext = new Error('boom');
    await assert.rejects(d.services.comm!.reconcile(), /boom/);
    await d.services.store.put(sampleInstance(5, { comm: { mac: '02:00:00:00:00:05', ipv4: '127.0.0.6', tap: 'mtap5' } }) as never, true);
    await settled(net, d);
    assert.equal(net.nics.length, 1);
  });
});

test('network.mode off (the default) builds no comm network', async () => {
  const d = await startTestDaemon();
  try {
    assert.equal(d.daemon.services.comm, undefined);
  } finally {
    await d.close();
  }
});

test('a link-local IPv6 caller is identified by the tap it arrived on, never by its address', async () => {
  await withDaemon(async (d) => {
    const { store } = d.services;
    await store.put(sampleInstance(6, { comm: { mac: '02:00:00:00:00:06', ipv4: '127.0.0.7', tap: 'mtap6' } }) as never, true);
    await store.put(sampleInstance(7, { comm: { mac: '02:00:00:00:00:07', ipv4: '127.0.0.8', tap: 'mtap7' } }) as never, true);
    assert.equal(store.byAddress('fe80::4:5ff:fe00:7%mtap6')?.doc.name, 'vm6');
    assert.equal(store.byAddress('fe80::1%mtap7')?.doc.name, 'vm7');
    assert.equal(store.byAddress('FE80::1%mtap7')?.doc.name, 'vm7');
    assert.equal(store.byAddress('fe80::1%mtap8'), undefined, 'an unknown tap');
    assert.equal(store.byAddress('fe80::1'), undefined, 'no scope: no identity');
    assert.equal(store.byAddress('fd00::1%mtap6'), undefined, 'only link-local sources are identified by tap');
    assert.equal(store.byAddress('127.0.0.7')?.doc.name, 'vm6');
  });
});

test('the controller remembers and announces the live taps after each reconcile', async () => {
  await withDaemon(async (d, net) => {
    const comm = d.services.comm!;
    const seen: (readonly LiveTap[])[] = [];
    comm.on('reconciled', (taps: readonly LiveTap[]) => seen.push(taps));
    net.links.add('mtap8');
    await d.services.store.put(sampleInstance(8, { comm: { mac: '02:00:00:00:00:08', ipv4: '127.0.0.9', tap: 'mtap8' } }) as never, true);
    await d.services.store.put(sampleInstance(9, { comm: { mac: '02:00:00:00:00:09', ipv4: '127.0.0.10', tap: 'mtap9' } }) as never, true);
    await comm.reconcile();
    assert.deepEqual(comm.liveTaps, [{ tap: 'mtap8', ifindex: 1 }]);
    assert.deepEqual(seen.at(-1), [{ tap: 'mtap8', ifindex: 1 }]);
  });
});

/** Let queued callbacks (store writes, their 'changed' events) run. */
async function ticks(n = 20): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

test('N concurrent nic ups of new taps cost at most two reconciles (one in flight, one pending for all)', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    const N = 60;
    for (let i = 0; i < N; i++) {
      await store.put(sampleInstance(i) as never, true);
      net.links.add(`mtap${String(i)}`);
    }
    await settled(net, d);
    const base = net.reconciles;
    // A slow network: the first reconcile holds until every nic up has recorded its tap.
    let release = (): void => undefined;
    net.gate = new Promise<void>((r) => (release = r));
    const ups = Array.from({ length: N }, (_, i) => comm!.attach(`vm${String(i)}`, `mtap${String(i)}`));
    await until('every nic up recorded its tap', () =>
      Array.from({ length: N }, (_, j) => store.get(`vm${String(j)}`)?.doc.comm.tap).every(Boolean),
    );
    await ticks();
    release();
    const statuses = await Promise.all(ups);
    assert.ok(net.reconciles - base <= 2, `${String(net.reconciles - base)} reconciles for ${String(N)} concurrent nic ups`);
    assert.equal(net.nics.length, N, 'the last reconcile carried every tap');
    for (const [i, s] of statuses.entries()) {
      assert.equal(s.tap, `mtap${String(i)}`);
      assert.equal(s.rules && s.addresses && s.route, true, `mtap${String(i)} not in place`);
    }
  });
});

test('nic up and nic down of a tap, one at a time, cost one reconcile each (the one the store change started)', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    for (let i = 0; i < 5; i++) {
      await store.put(sampleInstance(i) as never, true);
      net.links.add(`mtap${String(i)}`);
    }
    await settled(net, d);
    for (let i = 0; i < 5; i++) {
      const base = net.reconciles;
      const st = await comm!.attach(`vm${String(i)}`, `mtap${String(i)}`);
      assert.equal(net.reconciles - base, 1, `nic up of mtap${String(i)}`);
      assert.ok(
        net.nics.some((n) => n.tap === `mtap${String(i)}`),
        'the reconcile carried the new tap',
      );
      assert.equal(st.rules && st.addresses, true);
    }
    const base = net.reconciles;
    await comm!.detach('vm0', 'mtap0');
    assert.equal(net.reconciles - base, 1, 'nic down');
    assert.ok(!net.nics.some((n) => n.tap === 'mtap0'));
  });
});

test('an idempotent nic up of a tap in place costs no reconcile; a recreated tap, a pending change or a failed reconcile still reconcile', async () => {
  await withDaemon(async (d, net) => {
    const { store, comm } = d.services;
    await store.put(sampleInstance(3) as never, true);
    net.links.add('mtap3');
    await comm!.attach('vm3', 'mtap3');
    let base = net.reconciles;
    const again = await comm!.attach('vm3', 'mtap3');
    assert.equal(net.reconciles - base, 0, 'an idempotent nic up reconciled');
    assert.deepEqual(
      [again.tap, again.ipv4, again.tapExists, again.tapUp, again.addresses, again.route, again.rules, again.dhcp],
      ['mtap3', '127.0.0.4', true, true, true, true, true, true],
    );
    await Promise.all(Array.from({ length: 50 }, () => comm!.attach('vm3', 'mtap3')));
    assert.equal(net.reconciles - base, 0, '50 concurrent idempotent nic ups reconciled');

    // The guest restarted: its tap was deleted and created again under the same name (a new
    // link without metad's addresses). That nic up must set it up.
    net.recreate('mtap3');
    await comm!.attach('vm3', 'mtap3');
    assert.equal(net.reconciles - base, 1, 'a recreated tap was not reconciled');
    base = net.reconciles;
    await comm!.attach('vm3', 'mtap3');
    assert.equal(net.reconciles - base, 0);

    // A change in flight: the nic up waits for the host to match the registry again.
    let release = (): void => undefined;
    net.gate = new Promise<void>((r) => (release = r));
    const running = comm!.reconcile();
    let answered = false;
    const up = comm!.attach('vm3', 'mtap3').then(() => (answered = true));
    await ticks();
    assert.equal(answered, false, 'answered while a reconcile was running');
    release();
    net.gate = undefined;
    await Promise.all([running, up]);
    assert.equal(net.reconciles - base, 2, 'the running reconcile and one pending for the nic up');

    // A failed reconcile may have left the host half-changed: nothing counts as in place.
    net.failNext = new Error('boom');
    await assert.rejects(comm!.reconcile(), /boom/);
    base = net.reconciles;
    await comm!.attach('vm3', 'mtap3');
    assert.equal(net.reconciles - base, 1, 'nic up after a failed reconcile did not reconcile');
  });
});
