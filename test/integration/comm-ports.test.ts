/**
 * Taps and ports metad does not (or no longer) own, for real, inside namespaces this test creates
 * and deletes (issue 13 items 5-8, issue 12 items 7-8):
 * - routed: `nic up` refuses loopback, the anchor, a bridge, a port of another bridge, a device
 *   holding a host address and a layer-3 tun (409 naming why) and admits a real tap; an instance
 *   registered with `comm.tap: lo` leaves loopback alone; after `nic down` or removing the instance
 *   (tap and guest still there) the guest's UDP (IPv4 and IPv6 link-local) and ARP never reach the
 *   host, until `nic up` again or the tap goes (the link watcher notices);
 * - bridged, the rules alone (no metad, no reconcile): a port enslaved by hand cannot take a
 *   registered guest's address by gratuitous ARP, reach the host, or teach the bridge a guest's
 *   MAC; a registered tap that is not a port reaches nothing;
 * - bridged with metad: a hand-enslaved port is released by the link watcher without any admin
 *   call and held closed, and its ARP spoofing never poisons the host; a registered tap that
 *   appears later is enslaved without `nic up`;
 * - an install job (the controller's useJobTap, as daemon/jobs/wiring.ts calls it): the
 *   instance's own tap is held closed (its IPv6 link-local UDP is dropped) and `nic up` of it is 409.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Guest, Ns } from '../support/comm-topology.js';
import { GUESTS, PY, commBed, counter, curl, dhcp, handshake, registerGuests } from '../support/comm-harness.js';
import { until } from '../support/wait.js';
import { buildBridgedRuleset } from '../../daemon/comm/bridge-plan.js';
import { BRIDGED_SETTINGS } from '../support/comm-settings.js';
import { createDaemon } from '../../daemon/daemon.js';
import { buildConfig } from '../../daemon/config/config.js';
import { DaemonError } from '../../daemon/errors.js';
import { sinkLogger } from '../support/sink.js';

const MD = '169.254.169.254';
const BR = 'metadbr0';
const PORT = 7777;

/** Counts UDP datagrams on [::]:PORT (IPv4 too), printing one line per datagram. */
const LISTEN_PY = `
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(2048)
    print("got", data.decode(errors="replace"), flush=True)
`;

const SEND_PY = `
import socket, sys
host, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
info = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
s = socket.socket(info[0], socket.SOCK_DGRAM)
for _ in range(5):
    try:
        s.sendto(tag.encode(), info[4])
    except OSError as e:
        print("send failed", e)
`;

interface Listener {
  /** Has the listener got datagrams tagged `tag` (sent before this call)? */
  received(tag: string): Promise<boolean>;
}

async function sendUdp(g: Ns, host: string, tag: string): Promise<void> {
  await g.run(PY, ['-c', SEND_PY, host, String(PORT), tag], { timeoutMs: 10_000 });
}

/**
 * A UDP listener in the hypervisor namespace. `received` first sends a marker over loopback and
 * waits until the listener has printed it: a datagram delivered to its socket before the marker
 * is printed before it, so its absence after the marker is an answer, not a guess after a sleep.
 */
async function udpListener(hv: Ns): Promise<Listener> {
  const child: ChildProcess = hv.spawn(PY, ['-u', '-c', LISTEN_PY, String(PORT)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await until('udp listener', () => out.includes('ready'));
  const got = (tag: string): boolean => out.split('\n').includes(`got ${tag}`);
  let markers = 0;
  return {
    async received(tag) {
      const marker = `marker-${String(++markers)}`;
      await sendUdp(hv, '127.0.0.1', marker);
      await until(`the listener got ${marker} (sent after ${tag}, over loopback)`, () => got(marker));
      return got(tag);
    },
  };
}

async function linkLocal(n: Ns, dev: string): Promise<string> {
  return until(`${dev} link-local`, async () => {
    const a = await n.ip('-6', 'addr', 'show', 'dev', dev, 'scope', 'link');
    if (a.includes('tentative')) return undefined;
    return [...a.matchAll(/inet6 (fe80::[0-9a-f:]+)\/64/g)].map((m) => m[1]!).find((x) => x !== 'fe80::a9fe:a9fe');
  });
}

async function macOf(n: Ns, dev: string): Promise<string> {
  const [l] = JSON.parse(await n.ip('-j', 'link', 'show', 'dev', dev)) as { address: string }[];
  return l!.address;
}

async function setElements(hv: Ns, family: string, set: string): Promise<string> {
  return (await hv.run('nft', ['list', 'set', family, 'metad', set])).stdout;
}

async function master(hv: Ns, dev: string): Promise<string | undefined> {
  const [l] = JSON.parse(await hv.ip('-j', 'link', 'show', 'dev', dev)) as { master?: string }[];
  return l?.master;
}

/** The guest's UDP to the host (IPv4 to the metadata address with a static neighbour entry, IPv6 to the tap's link-local address). */
async function guestUdpReaches(hv: Ns, g: Guest, l: Listener, tag: string): Promise<{ v4: boolean; v6: boolean }> {
  const tapMac = await macOf(hv, g.tap);
  await g.ip('neigh', 'replace', MD, 'lladdr', tapMac, 'dev', 'eth0', 'nud', 'permanent');
  await sendUdp(g, MD, `${tag}-v4`);
  const ll = await linkLocal(hv, g.tap);
  // As for IPv4: the datagrams leave the guest whether or not the host answers neighbour discovery.
  await g.ip('-6', 'neigh', 'replace', ll, 'lladdr', tapMac, 'dev', 'eth0', 'nud', 'permanent');
  await sendUdp(g, `${ll}%eth0`, `${tag}-v6`);
  return { v4: await l.received(`${tag}-v4`), v6: await l.received(`${tag}-v6`) };
}

test('routed: nic up takes only guest devices; released taps stay closed until nic up or until they go', async (t) => {
  const bed = await commBed(t); // its end kills the listener too
  if (!bed) return;
  const { hv, script } = bed;
  const [ga, , gc] = bed.guests as [Guest, Guest, Guest];
  const metad = await bed.startMetad({ mode: 'routed' });
  await registerGuests(metad);
  assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
  assert.equal(await dhcp(gc, script), GUESTS[2].ipv4);
  const listener = await udpListener(hv);
  await sendUdp(hv, '127.0.0.1', 'control');
  assert.equal(await listener.received('control'), true, "the host's listener works");

  await t.test('nic up refuses host devices with 409 naming why, and admits a real tap', async () => {
    await hv.ip('link', 'add', 'br9', 'type', 'bridge');
    await hv.ip('link', 'add', 'portv9', 'type', 'veth', 'peer', 'name', 'portv9p');
    await hv.ip('link', 'set', 'portv9', 'master', 'br9');
    await hv.ip('link', 'add', 'hostv9', 'type', 'veth', 'peer', 'name', 'hostv9p');
    await hv.ip('addr', 'add', '10.99.0.1/24', 'dev', 'hostv9');
    await hv.ip('tuntap', 'add', 'dev', 'tun9', 'mode', 'tun');
    await hv.ip('tuntap', 'add', 'dev', 'gtap9', 'mode', 'tap');
    const reg = await metad.admin('PUT', '/v1/instances/delta', {
      name: 'delta',
      uuid: '00000000-0000-4000-8000-000000000004',
      comm: { mac: '02:00:00:00:01:0d', ipv4: '169.254.1.13' },
    });
    assert.equal(reg.status, 201, reg.text);
    for (const [tap, why] of [
      ['lo', /loopback/],
      ['metad0', /anchor/],
      ['br9', /is a bridge/],
      ['portv9', /enslaved to another device/],
      ['hostv9', /host address/],
      ['tun9', /layer 3/],
    ] as const) {
      const r = await metad.admin('POST', '/v1/instances/delta/nic', { tap, state: 'up' });
      assert.equal(r.status, 409, `${tap}: ${r.text}`);
      assert.match(r.text, why, tap);
    }
    const sets = await setElements(hv, 'inet', 'taps');
    assert.doesNotMatch(sets, /"(lo|metad0|br9|portv9|hostv9|tun9)"/);
    const ok = await metad.admin('POST', '/v1/instances/delta/nic', { tap: 'gtap9', state: 'up' });
    assert.equal(ok.status, 200, ok.text);
    assert.equal((ok.json as { rules: boolean }).rules, true);
    assert.equal((await metad.admin('DELETE', '/v1/instances/delta')).status, 204);
  });

  await t.test('an instance registered with comm.tap lo leaves loopback alone (not in the sets, loopback traffic flows)', async () => {
    const r = await metad.admin('PUT', '/v1/instances/echo', {
      name: 'echo',
      uuid: '00000000-0000-4000-8000-000000000005',
      comm: { mac: '02:00:00:00:01:0e', ipv4: '169.254.1.14', tap: 'lo' },
    });
    assert.equal(r.status, 201, r.text);
    await until('refused in the log', () => metad.out().includes('a registered tap is no guest device'));
    assert.doesNotMatch(await setElements(hv, 'inet', 'taps'), /"lo"/);
    assert.doesNotMatch(await setElements(hv, 'inet', 'held'), /"lo"/);
    await sendUdp(hv, '127.0.0.1', 'loopback-after');
    assert.equal(await listener.received('loopback-after'), true, 'loopback traffic is dropped');
    assert.equal((await metad.admin('DELETE', '/v1/instances/echo')).status, 204);
    await sendUdp(hv, '127.0.0.1', 'loopback-removed');
    assert.equal(await listener.received('loopback-removed'), true);
  });

  await t.test("after nic down the guest's UDP (IPv4, IPv6 link-local) and ARP never reach the host; nic up opens it again", async () => {
    const before = await guestUdpReaches(hv, ga, listener, 'alpha-registered');
    assert.deepEqual(before, { v4: false, v6: false }, 'a registered tap reaches only the metadata port');
    assert.equal((await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'down' })).status, 204);
    assert.match(await setElements(hv, 'inet', 'held'), /"mtap1"/);
    assert.deepEqual(await guestUdpReaches(hv, ga, listener, 'alpha-released'), { v4: false, v6: false });
    const arp = await ga.run('busybox', ['arping', '-c', '2', '-w', '2', '-I', 'eth0', MD], { timeoutMs: 10_000 });
    assert.notEqual(arp.code, 0, 'the host answered ARP on a released tap');
    assert.equal(await handshake(ga), false);
    const up = await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'up' });
    assert.equal(up.status, 200, up.text);
    assert.doesNotMatch(await setElements(hv, 'inet', 'held'), /"mtap1"/);
    await ga.ip('neigh', 'del', MD, 'dev', 'eth0');
    assert.equal((await curl(ga)).body, 'i-alpha');
  });

  await t.test('after the instance is removed (tap and guest still there) its tap is held until the tap goes', async () => {
    assert.equal((await metad.admin('DELETE', '/v1/instances/carol')).status, 204);
    await until('mtap3 held', async () => (await setElements(hv, 'inet', 'held')).includes('"mtap3"'));
    assert.deepEqual(await guestUdpReaches(hv, gc, listener, 'carol-removed'), { v4: false, v6: false });
    const refused = await counter(hv, 'inet', 'metad', 'refused');
    assert.ok(refused > 0, 'the held tap was dropped by the held rule');
    await hv.ip('link', 'del', 'mtap3'); // the guest stopped: no admin call follows
    await until(
      'mtap3 no longer held (the link watcher reconciled)',
      async () => !(await setElements(hv, 'inet', 'held')).includes('"mtap3"'),
    );
    assert.equal((await curl(ga)).body, 'i-alpha');
  });
});

/** One bridge with metad's ruleset applied by hand: no metad, so nothing reconciles. */
test('bridged, the rules alone: a port enslaved by hand and a registered tap that is no port reach nothing', async (t) => {
  const alpha = GUESTS[0];
  const bed = await commBed(t, {
    guests: [
      { tap: alpha.tap, mac: alpha.mac },
      { tap: 'mtap9', mac: '02:00:00:00:09:09' },
      { tap: 'mtap8', mac: '02:00:00:00:08:08' },
    ],
  }); // its end kills the listeners too
  if (!bed) return;
  const { hv } = bed;
  const [ga, mallory, pending] = bed.guests as [Guest, Guest, Guest];
  await hv.ip('link', 'add', BR, 'address', BRIDGED_SETTINGS.bridge!.mac, 'type', 'bridge');
  await hv.ip('link', 'set', 'dev', BR, 'addrgenmode', 'none');
  await hv.ip('link', 'set', 'dev', BR, 'up');
  await hv.ip('addr', 'add', `${MD}/16`, 'dev', BR, 'noprefixroute');
  await hv.ip('link', 'set', 'dev', 'mtap1', 'master', BR);
  await hv.ip('link', 'set', 'dev', 'mtap1', 'up');
  await hv.ip('link', 'set', 'dev', 'mtap1', 'type', 'bridge_slave', 'isolated', 'on', 'flood', 'off');
  await hv.ip('link', 'set', 'dev', 'mtap8', 'up');
  await hv.ip('route', 'add', `${alpha.ipv4}/32`, 'dev', BR, 'src', MD);
  const nics = [
    { instance: 'alpha', tap: 'mtap1', ipv4: alpha.ipv4, mac: alpha.mac },
    { instance: 'hotel', tap: 'mtap8', ipv4: '169.254.1.18', mac: '02:00:00:00:08:08' },
  ];
  // What the last reconcile wrote: mtap1 is a known port, mtap8 is registered but not a port.
  const ruleset = buildBridgedRuleset(nics, ['mtap1'], BRIDGED_SETTINGS, ['mtap1', 'mtap8']);
  const applied = await hv.run('nft', ['-f', '-'], { input: ruleset });
  assert.equal(applied.code, 0, applied.stderr);
  // Then mtap9 joins by hand (Ganeti's bridged NIC mode, libvirt's bridge interface): no reconcile follows.
  await hv.ip('link', 'set', 'dev', 'mtap9', 'master', BR);
  await hv.ip('link', 'set', 'dev', 'mtap9', 'up');
  await ga.ip('addr', 'add', `${alpha.ipv4}/16`, 'dev', 'eth0');
  const listener = await udpListener(hv);
  hv.spawn(PY, ['-c', `import socket\ns=socket.socket()\ns.bind(("${MD}",80))\ns.listen()\nwhile True: s.accept()[0].close()`], {
    stdio: 'ignore',
  });
  await until('alpha completes a handshake (the control)', async () => await handshake(ga));

  await t.test('the hand-enslaved port takes alpha address by gratuitous ARP: no handshake, no poisoned neighbour, no UDP', async () => {
    await mallory.ip('addr', 'add', `${alpha.ipv4}/16`, 'dev', 'eth0');
    for (const mode of ['-U', '-A']) {
      await mallory.run('busybox', ['arping', mode, '-c', '3', '-w', '3', '-I', 'eth0', '-s', alpha.ipv4, alpha.ipv4], {
        timeoutMs: 10_000,
      });
    }
    const neigh = await hv.ip('neigh', 'show', alpha.ipv4, 'dev', BR);
    assert.doesNotMatch(neigh, /02:00:00:00:09:09/, `the host's neighbour entry was poisoned: ${neigh}`);
    await mallory.ip('neigh', 'replace', MD, 'lladdr', BRIDGED_SETTINGS.bridge!.mac, 'dev', 'eth0', 'nud', 'permanent');
    assert.equal(await handshake(mallory), false, 'the unknown port completed a TCP handshake');
    await sendUdp(mallory, MD, 'mallory');
    assert.equal(await listener.received('mallory'), false, "the unknown port's UDP reached the host");
    assert.equal(await handshake(ga), true, 'alpha still works');
  });

  await t.test("the hand-enslaved port sending from alpha's MAC does not move it in the bridge", async () => {
    const before = await counter(hv, 'bridge', 'metad', 'spoofed');
    await mallory.ip('link', 'set', 'eth0', 'down');
    await mallory.ip('link', 'set', 'eth0', 'address', alpha.mac);
    await mallory.ip('link', 'set', 'eth0', 'up');
    await mallory.run('busybox', ['arping', '-U', '-c', '3', '-w', '3', '-I', 'eth0', '-s', alpha.ipv4, alpha.ipv4], { timeoutMs: 10_000 });
    assert.ok((await counter(hv, 'bridge', 'metad', 'spoofed')) > before, "frames from alpha's MAC on another port were not dropped");
    const fdb = (await hv.run('bridge', ['fdb', 'show', 'br', BR])).stdout;
    assert.doesNotMatch(fdb, new RegExp(`${alpha.mac} dev mtap9`), `the bridge learned alpha's MAC on the unknown port: ${fdb}`);
    assert.equal(await handshake(ga), true, 'alpha still works');
  });

  await t.test('a registered tap that is not (yet) a port reaches nothing on the host', async () => {
    await pending.ip('addr', 'add', '169.254.1.18/16', 'dev', 'eth0');
    await pending.ip('neigh', 'replace', MD, 'lladdr', await macOf(hv, 'mtap8'), 'dev', 'eth0', 'nud', 'permanent');
    await sendUdp(pending, MD, 'pending-v4');
    const ll = await linkLocal(hv, 'mtap8');
    await pending.ip('-6', 'neigh', 'replace', ll, 'lladdr', await macOf(hv, 'mtap8'), 'dev', 'eth0', 'nud', 'permanent');
    await sendUdp(pending, `${ll}%eth0`, 'pending-v6');
    assert.equal(await listener.received('pending-v4'), false);
    assert.equal(await listener.received('pending-v6'), false);
    const arp = await pending.run('busybox', ['arping', '-c', '2', '-w', '2', '-I', 'eth0', MD], { timeoutMs: 10_000 });
    assert.notEqual(arp.code, 0, 'the host answered ARP on a registered tap that is no port');
  });
});

test('bridged with metad: a hand-enslaved port is released and held at once; a registered tap that appears is enslaved', async (t) => {
  const bed = await commBed(t);
  if (!bed) return;
  const { topo, hv, script } = bed;
  const [ga] = bed.guests as [Guest, Guest, Guest];
  const metad = await bed.startMetad({ mode: 'bridged' });
  await registerGuests(metad);
  assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);

  await t.test(
    'ip link set TAP master metadbr0 by hand: released and held without any admin call; its ARP spoofing poisons nothing',
    async (st) => {
      const mallory = await topo.addGuest('mtap9', '02:00:00:00:09:09');
      await mallory.ip('addr', 'add', `${GUESTS[0].ipv4}/16`, 'dev', 'eth0');
      await hv.ip('link', 'set', 'dev', 'mtap9', 'up');
      const t0 = performance.now();
      await hv.ip('link', 'set', 'dev', 'mtap9', 'master', BR);
      // How soon the watcher's reconcile releases it (reported, not asserted: the rules hold meanwhile).
      await until('mtap9 off the bridge', async () => (await master(hv, 'mtap9')) !== BR);
      st.diagnostic(`hand-enslaved port released after ${String(Math.round(performance.now() - t0))} ms (polled, 5 to 100 ms apart)`);
      await mallory.run('busybox', ['arping', '-U', '-c', '3', '-w', '3', '-I', 'eth0', '-s', GUESTS[0].ipv4, GUESTS[0].ipv4], {
        timeoutMs: 10_000,
      });
      await until('mtap9 released by the link watcher', async () => (await master(hv, 'mtap9')) === undefined);
      assert.match(await setElements(hv, 'inet', 'held'), /"mtap9"/);
      assert.doesNotMatch(await hv.ip('neigh', 'show', GUESTS[0].ipv4, 'dev', BR), /02:00:00:00:09:09/);
      assert.equal((await curl(mallory)).body, '', 'the unknown port read alpha metadata');
      assert.equal((await curl(ga)).body, 'i-alpha');
    },
  );

  await t.test('a registered tap is held from registration and enslaved when it appears, without nic up', async () => {
    const r = await metad.admin('PUT', '/v1/instances/hotel', {
      name: 'hotel',
      uuid: '00000000-0000-4000-8000-000000000008',
      comm: { mac: '02:00:00:00:08:08', ipv4: '169.254.1.18', tap: 'mtap8' },
      ec2: { instanceId: 'i-hotel' },
    });
    assert.equal(r.status, 201, r.text);
    await until('mtap8 held before it exists', async () => (await setElements(hv, 'inet', 'held')).includes('"mtap8"'));
    const hotel = await topo.addGuest('mtap8', '02:00:00:00:08:08');
    await until('mtap8 enslaved by the link watcher', async () => (await master(hv, 'mtap8')) === BR);
    assert.equal(await dhcp(hotel, script), '169.254.1.18');
    assert.equal((await curl(hotel)).body, 'i-hotel');
  });
});

test("an install job: the instance's own tap is held closed (IPv6 link-local dropped) and nic up of it is 409", async (t) => {
  const alpha = GUESTS[0];
  const bed = await commBed(t, { guests: [{ tap: alpha.tap, mac: alpha.mac }] });
  if (!bed) return;
  const { hv, dir } = bed;
  const [ga] = bed.guests as [Guest];
  // The daemon runs in this process; its ip and nft (and the link watcher) run in the namespace.
  const wrap = (tool: string): string => {
    const p = join(dir, `${tool}-in-ns`);
    writeFileSync(p, `#!/bin/sh\nexec /usr/sbin/ip netns exec ${hv.name} /usr/sbin/${tool} "$@"\n`, { mode: 0o755 });
    return p;
  };
  const config = buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: MD, port: 80 }], commRange: '169.254.0.0/16' }, // not bound: createDaemon opens no door
    network: { mode: 'routed', ipPath: wrap('ip'), nftPath: wrap('nft'), runDir: join(dir, 'run'), dhcp: { mode: 'external' } },
  });
  const daemon = await createDaemon(config, { log: sinkLogger().log });
  t.after(() => daemon.stop());
  const { store } = daemon.services;
  const comm = daemon.services.comm!;
  await store.put(
    {
      name: 'alpha',
      uuid: '00000000-0000-4000-8000-000000000001',
      comm: { mac: alpha.mac, ipv4: alpha.ipv4, tap: alpha.tap },
    },
    true,
  );
  await comm.reconcile();
  const listener = await udpListener(hv);

  // The VM is stopped for its install (an install is refused while its tap exists) ...
  await hv.ip('link', 'del', alpha.tap);
  // ... the job's appliance tap, as daemon/jobs/wiring.ts prepares it ...
  await comm.net.createTap('mdi0123456789ab');
  await comm.useJobTap('alpha', 'mdi0123456789ab');
  assert.match(await setElements(hv, 'inet', 'held'), /"mtap1"/, 'held by name before the tap exists');
  assert.doesNotMatch(await setElements(hv, 'inet', 'taps'), /"mtap1"/);
  // ... and the VM comes up during the install: its tap appears, no admin call follows.
  await hv.ip('link', 'add', alpha.tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ga.name);
  await ga.ip('link', 'set', 'eth0', 'address', alpha.mac);
  await ga.ip('link', 'set', 'eth0', 'up');
  await hv.ip('link', 'set', alpha.tap, 'up');
  const ll = await linkLocal(hv, alpha.tap);
  await linkLocal(ga, 'eth0');
  await ga.ip('-6', 'neigh', 'replace', ll, 'lladdr', await macOf(hv, alpha.tap), 'dev', 'eth0', 'nud', 'permanent');
  await sendUdp(ga, `${ll}%eth0`, 'alpha-installing');
  assert.equal(await listener.received('alpha-installing'), false, "the installing instance's own VM reached the host over IPv6");
  await assert.rejects(comm.attach('alpha', alpha.tap), (e: unknown) => e instanceof DaemonError && e.code === 'Conflict');

  await comm.net.deleteTap('mdi0123456789ab');
  await comm.releaseJobTap('alpha', 'mdi0123456789ab');
  assert.doesNotMatch(await setElements(hv, 'inet', 'held'), /"mtap1"|mdi/);
  assert.match(await setElements(hv, 'inet', 'taps'), /"mtap1"/);
  assert.equal((await comm.attach('alpha', alpha.tap)).rules, true);
});
