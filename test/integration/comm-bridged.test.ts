/**
 * The bridged comm network, for real, inside namespaces this test creates and deletes: a
 * "hypervisor" namespace runs the real `metad serve` (network.mode bridged) with its bridge, the
 * taps (veth ends) as isolated ports, the `bridge metad` and `inet metad` tables and dnsmasq;
 * three guest namespaces get their IPv4 from metad's dnsmasq with busybox udhcpc and read their
 * metadata at 169.254.169.254 with curl and cloud-init's EC2 datasource.
 * Proves: the bridge has its fixed MAC and no IPv6; every tap is an isolated, non-flooding port
 * and `nic list` shows it; each guest sees only its own data and cannot reach another guest; the
 * replies carry TTL 1; the spoof matrix shared with comm-routed.test.ts (IPv4, MAC, both, arping -U/-A, a raw ARP frame;
 * victim up and down) yields no handshake and no data; IPv6 gets no answer; nic down releases
 * the port; removing an instance removes its port, route, set elements and DHCP host; a restart
 * leaves exactly one set of tables, routes and addresses and touches no other bridge; switching to
 * routed mode (bridge deleted by hand, as documented) leaves only routed mode's table.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipOrFail } from '../support/env.js';
import { CRAWL_PY, cloudInitMissing } from '../conformance/harness.js';
import { type Guest, type Ns } from '../support/comm-topology.js';
import {
  GUESTS,
  commBed,
  PY,
  assertOnlyMetadataPort,
  assertRepliesTtl1,
  counter,
  curl,
  dhcp,
  dhcpTheftMatrix,
  leasesAndOwnReads,
  handshake,
  registerGuests,
  spoofMatrix,
  type Metad,
} from '../support/comm-harness.js';
import { until } from '../support/wait.js';

const BR = 'metadbr0';
const BR_MAC = '02:00:a9:fe:a9:fe';
const MODE = { mode: 'bridged' };

interface Port {
  ifname: string;
  master?: string;
  linkinfo?: { info_slave_data?: { isolated?: boolean; flood?: boolean } };
}

async function port(hv: Ns, dev: string): Promise<Port> {
  const [l] = JSON.parse(await hv.ip('-d', '-j', 'link', 'show', 'dev', dev)) as Port[];
  assert.ok(l, dev);
  return l;
}

interface NicView {
  instance: string;
  tap: string;
  bridge?: string;
  isolated?: boolean;
  addresses: boolean;
  route: boolean;
  rules: boolean;
  dhcp: boolean;
}

test('bridged comm network in namespaces: isolated ports, DHCP, identity, anti-spoofing, reconcile, restart', async (t) => {
  const bed = await commBed(t);
  if (!bed) return;
  const { hv, dir, script } = bed;
  const [ga, gb, gc] = bed.guests as [Guest, Guest, Guest];
  const startMetad = (network: Record<string, unknown> = MODE): Promise<Metad> => bed.startMetad(network);
  let metad = await startMetad();

  await t.test('before any tap is registered: the bridge has its fixed MAC, holds 169.254.169.254 and no IPv6 address', async () => {
    const show = await hv.ip('addr', 'show', 'dev', BR);
    assert.match(show, new RegExp(`link/ether ${BR_MAC} `));
    assert.match(show, /inet 169\.254\.169\.254\/16 /);
    assert.doesNotMatch(show, /inet6/);
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), ['table arp metad', 'table bridge metad', 'table inet metad']);
  });

  await registerGuests(metad);
  await until('all three taps enslaved', async () => {
    for (const g of GUESTS) if ((await port(hv, g.tap)).master !== BR) return undefined;
    return true;
  });

  await t.test('each tap is an isolated port that does not flood unknown unicast; nic list shows it', async () => {
    for (const g of GUESTS) {
      const d = (await port(hv, g.tap)).linkinfo?.info_slave_data;
      assert.deepEqual([d?.isolated, d?.flood], [true, false], g.tap);
    }
    const r = await metad.admin('GET', '/v1/nics');
    const { nics } = r.json as { nics: NicView[] };
    assert.deepEqual(
      nics.map((n) => [n.tap, n.bridge, n.isolated, n.addresses, n.route, n.rules, n.dhcp]),
      GUESTS.map((g) => [g.tap, BR, true, true, true, true, true]),
    );
  });

  await leasesAndOwnReads(t, bed);

  await dhcpTheftMatrix(t, {
    hv,
    attacker: ga,
    attackerSpec: GUESTS[0],
    victim: gb,
    victimSpec: GUESTS[1],
    family: 'bridge',
    script,
    log: () => metad.out(),
  });

  await t.test('a guest reaches only the metadata port: not port 8080, not another guest', async () => {
    await assertOnlyMetadataPort(hv, ga, GUESTS[1].ipv4);
    assert.equal((await curl(ga)).body, 'i-alpha');
  });

  await t.test('IPv6 is not served on a bridge: a link-local request gets no answer and is dropped at the port', async () => {
    const before = await counter(hv, 'bridge', 'metad', 'refused');
    const r = await curl(ga, '/latest/meta-data/instance-id', '[fe80::a9fe:a9fe%eth0]');
    assert.notEqual(r.code, 0);
    assert.equal(r.body, '');
    assert.ok((await counter(hv, 'bridge', 'metad', 'refused')) > before, 'the IPv6 frames were not dropped at the port');
  });

  await t.test("cloud-init 22.4's EC2 datasource, with its default URLs, reads the guest's own metadata", async (st) => {
    if (skipOrFail(st, cloudInitMissing())) return;
    const r = await gb.run(PY, [CRAWL_PY, 'ec2', 'default', '--timeout', '2', '--max-wait', '20'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const out = JSON.parse(r.stdout) as { mode: string; instance_id: string; metadata: Record<string, unknown> };
    assert.equal(out.mode, 'v2');
    assert.equal(out.instance_id, 'i-bravo');
    assert.equal(out.metadata['local-ipv4'], GUESTS[1].ipv4);
    assert.equal(out.metadata['mac'], GUESTS[1].mac);
  });

  await t.test('replies leave the bridge with TTL 1 (hop limit on by default)', async () => {
    await assertRepliesTtl1(gb, 'i-bravo');
  });

  await spoofMatrix(t, { hv, attacker: gc, attackerSpec: GUESTS[2], victim: gb, victimSpec: GUESTS[1], family: 'bridge' });

  await t.test('nic down releases the port (no route, no handshake); nic up enslaves it again (time reported)', async (st) => {
    assert.equal((await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'down' })).status, 204);
    assert.equal((await port(hv, 'mtap1')).master, undefined);
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), /169\.254\.1\.10 /);
    assert.equal(await handshake(ga), false, 'a released port still reached metad');
    const t0 = performance.now();
    const up = await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'up' });
    assert.equal(up.status, 200, up.text);
    assert.deepEqual([(up.json as NicView).bridge, (up.json as NicView).isolated], [BR, true]);
    assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
    assert.equal((await curl(ga)).body, 'i-alpha');
    st.diagnostic(`nic up -> lease -> first read: ${String(Math.round(performance.now() - t0))} ms`);
  });

  await t.test('removing an instance releases its port and removes its route, set elements and DHCP host', async () => {
    assert.equal((await metad.admin('DELETE', '/v1/instances/bravo')).status, 204);
    const hostsFile = join(dir, 'run', 'dhcp-hosts');
    await until('bravo gone from the DHCP hosts', () => !readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac));
    assert.equal((await port(hv, 'mtap2')).master, undefined);
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), /169\.254\.1\.11 /);
    const sets = (await hv.run('nft', ['list', 'table', 'bridge', 'metad'])).stdout;
    assert.doesNotMatch(sets, /mtap2/);
    assert.match(sets, /"mtap1" \. 169\.254\.1\.10/);
    assert.equal(await dhcp(gb, script), undefined, 'a removed instance still got a lease');
    assert.equal(await handshake(gb), false);
    assert.equal((await curl(ga)).body, 'i-alpha');
  });

  await t.test('a restart leaves one set of tables, routes and addresses, releases foreign ports and touches no other bridge', async () => {
    await hv.ip('link', 'add', 'other0', 'type', 'bridge');
    await hv.ip('link', 'add', 'oth1', 'type', 'veth', 'peer', 'name', 'oth1p');
    await hv.ip('link', 'set', 'oth1', 'master', 'other0');
    await hv.ip('link', 'add', 'oth2', 'type', 'veth', 'peer', 'name', 'oth2p');
    await hv.ip('link', 'set', 'oth2', 'master', BR); // not registered: metad releases it
    await hv.run('nft', ['add', 'table', 'bridge', 'foreign']);
    await metad.stop();
    metad = await startMetad();
    await until('reconciled', () => metad.out().includes('"comm network reconciled"'));
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), [
      'table arp metad',
      'table bridge foreign',
      'table bridge metad',
      'table inet metad',
    ]);
    const routes = (await hv.ip('-4', 'route', 'show', 'proto', '171')).trim().split('\n');
    assert.deepEqual(routes.map((r) => r.split(' ').slice(0, 3).join(' ')).sort(), [`169.254.1.10 dev ${BR}`, `169.254.1.12 dev ${BR}`]);
    assert.equal(((await hv.ip('-4', 'addr', 'show', 'dev', BR)).match(/169\.254\.169\.254/g) ?? []).length, 1);
    assert.equal((await port(hv, 'oth2')).master, undefined, 'a port metad does not know stayed on its bridge');
    const other = await port(hv, 'oth1');
    assert.equal(other.master, 'other0');
    assert.equal(other.linkinfo?.info_slave_data?.isolated, false);
    assert.doesNotMatch((await hv.run('nft', ['list', 'set', 'bridge', 'metad', 'ports'])).stdout, /oth1/);
    assert.equal((await curl(ga)).body, 'i-alpha');
    assert.equal((await curl(gc)).body, 'i-carol');
  });

  await t.test('switching to routed mode as docs/deployment.md says: one table left, routes on the taps, guests read again', async () => {
    await metad.stop();
    await hv.ip('link', 'del', BR); // the documented manual step: releases the ports
    metad = await startMetad({ mode: 'routed' });
    await until('reconciled', () => metad.out().includes('"comm network reconciled"'));
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), ['table arp metad', 'table bridge foreign', 'table inet metad']);
    const routes = (await hv.ip('-4', 'route', 'show', 'proto', '171')).trim().split('\n');
    assert.deepEqual(routes.map((r) => r.split(' ').slice(0, 3).join(' ')).sort(), ['169.254.1.10 dev mtap1', '169.254.1.12 dev mtap3']);
    // The guest's ARP entry for 169.254.169.254 still names the bridge's MAC (a real guest waits it out).
    await ga.ip('neigh', 'flush', 'dev', 'eth0');
    const r = await curl(ga);
    assert.equal(r.body, 'i-alpha', `${await hv.ip('addr', 'show', 'dev', 'mtap1')}\n${await ga.ip('neigh', 'show')}`);
  });
});
