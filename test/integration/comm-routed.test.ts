/**
 * The routed comm network, for real, inside namespaces this test creates and deletes: a
 * "hypervisor" namespace runs the real `metad serve` (network.mode routed) with its anchor,
 * taps (veth ends), routes, nftables table and dnsmasq; three guest namespaces get their IPv4
 * from metad's dnsmasq with busybox udhcpc and read their metadata at 169.254.169.254 with curl.
 * Proves: each guest sees only its own instance-id; a guest that takes another's IPv4, MAC, both,
 * or announces them by gratuitous ARP (arping -U, -A, a raw frame; victim up and victim down) gets
 * no handshake and no data (the matrix is shared with comm-bridged.test.ts: test/support/comm-harness.ts);
 * removing an instance removes its route, set elements and DHCP host; a restart leaves exactly
 * one table and one copy of each route/address; a killed dnsmasq comes back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipOrFail } from '../support/env.js';
import { CRAWL_PY, cloudInitMissing } from '../conformance/harness.js';
import { childPids, type Guest, type Ns } from '../support/comm-topology.js';
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

const MODE = { mode: 'routed', ec2Ipv6: true };

test('routed comm network in namespaces: DHCP, identity by tap, anti-spoofing, reconcile, restart, dnsmasq supervision', async (t) => {
  const bed = await commBed(t);
  if (!bed) return;
  const { topo, hv, dir, script } = bed;
  const [ga, gb, gc] = bed.guests as [Guest, Guest, Guest];
  const startMetad = (network: Record<string, unknown> = MODE): Promise<Metad> => bed.startMetad(network);
  let metad = await startMetad();

  await t.test('before any tap is registered: the anchor holds 169.254.169.254, one table (and its ARP companion) exists', async () => {
    assert.match(await hv.ip('-4', 'addr', 'show', 'dev', 'metad0'), /inet 169\.254\.169\.254\/32/);
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), ['table arp metad', 'table inet metad']);
  });

  await registerGuests(metad);
  await until('routes for all three guests', async () => {
    const routes = await hv.ip('-4', 'route', 'show', 'proto', '171');
    return GUESTS.every((g) => routes.includes(`${g.ipv4} dev ${g.tap}`));
  });

  await leasesAndOwnReads(t, bed);

  await dhcpTheftMatrix(t, {
    hv,
    attacker: ga,
    attackerSpec: GUESTS[0],
    victim: gb,
    victimSpec: GUESTS[1],
    family: 'inet',
    script,
    log: () => metad.out(),
  });

  await t.test('IPv6: fe80::a9fe:a9fe answers on each tap, and a link-local caller is identified by its tap', async () => {
    for (const [g, spec] of [
      [ga, GUESTS[0]],
      [gc, GUESTS[2]],
    ] as const) {
      const body = await until(`${spec.name} over IPv6`, async () => {
        const r = await g.run(
          'curl',
          ['-s', '-g', '--noproxy', '*', '--max-time', '3', 'http://[fe80::a9fe:a9fe%eth0]/latest/meta-data/instance-id'],
          { timeoutMs: 10_000 },
        );
        return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
      });
      assert.equal(body, spec.id);
    }
  });

  await t.test('a tap deleted and created again under its name (guest restart) works again after nic up, IPv4 and IPv6', async () => {
    await hv.ip('link', 'del', 'mtap1');
    await hv.ip('link', 'add', 'mtap1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ga.name);
    await ga.ip('link', 'set', 'eth0', 'address', GUESTS[0].mac);
    await ga.ip('link', 'set', 'eth0', 'up');
    const up = await metad.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'up' });
    assert.equal(up.status, 200, up.text);
    assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
    assert.equal((await curl(ga)).body, 'i-alpha');
    const body = await until('alpha over IPv6 on the new link', async () => {
      const r = await ga.run(
        'curl',
        ['-s', '-g', '--noproxy', '*', '--max-time', '3', 'http://[fe80::a9fe:a9fe%eth0]/latest/meta-data/instance-id'],
        { timeoutMs: 10_000 },
      );
      return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
    });
    assert.equal(body, 'i-alpha');
  });

  await t.test('IPv6: fd00:ec2::254 (network.ec2Ipv6) answers link-local callers by their tap; a ULA source gets nothing', async () => {
    const EC2V6 = 'fd00:ec2::254';
    const read = (g: Ns, source?: string) =>
      g.run(
        'curl',
        [
          '-s',
          '-g',
          '--noproxy',
          '*',
          '--max-time',
          '3',
          ...(source ? ['--interface', source] : []),
          `http://[${EC2V6}]/latest/meta-data/instance-id`,
        ],
        { timeoutMs: 10_000 },
      );
    const linkLocal = async (g: Ns) =>
      /inet6 (fe80::[0-9a-f:]+)\/64/.exec(await g.ip('-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link'))![1]!;
    // A guest routes it on-link (each tap answers neighbour solicitation for it) or through fe80::a9fe:a9fe.
    await ga.ip('-6', 'route', 'replace', `${EC2V6}/128`, 'dev', 'eth0');
    await gc.ip('-6', 'route', 'replace', `${EC2V6}/128`, 'via', 'fe80::a9fe:a9fe', 'dev', 'eth0');
    for (const [g, spec] of [
      [ga, GUESTS[0]],
      [gc, GUESTS[2]],
    ] as const) {
      const body = await until(`${spec.name} at fd00:ec2::254`, async () => {
        const r = await read(g);
        return r.code === 0 && r.stdout !== '' ? r.stdout : undefined;
      });
      assert.equal(body, spec.id);
    }
    // carol takes alpha's link-local address: the kernel still scopes it to carol's tap.
    const own = await linkLocal(gc);
    const alpha = await linkLocal(ga);
    await gc.ip('-6', 'addr', 'del', `${own}/64`, 'dev', 'eth0');
    await gc.ip('-6', 'addr', 'add', `${alpha}/64`, 'dev', 'eth0', 'nodad');
    try {
      assert.equal((await read(gc)).stdout, 'i-carol', "alpha's link-local address on carol's tap is carol");
    } finally {
      await gc.ip('-6', 'addr', 'del', `${alpha}/64`, 'dev', 'eth0');
      await gc.ip('-6', 'addr', 'add', `${own}/64`, 'dev', 'eth0', 'nodad');
    }
    // A ULA source (not scoped: nothing would tie it to a tap) is dropped on the way in.
    await gc.ip('-6', 'addr', 'add', 'fd00:99::12/64', 'dev', 'eth0', 'nodad');
    try {
      const before = await counter(hv, 'inet', 'metad', 'spoofed');
      const r = await read(gc, 'fd00:99::12');
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.ok((await counter(hv, 'inet', 'metad', 'spoofed')) > before, 'the ULA-sourced packets were not dropped by the rules');
    } finally {
      await gc.ip('-6', 'addr', 'del', 'fd00:99::12/64', 'dev', 'eth0');
    }
    // Replies leave with hop limit 1, as for the other metadata addresses.
    await ga.run('nft', ['-f', '-'], {
      input: [
        'table inet probe6 {',
        '  counter hl1 { }',
        '  counter other { }',
        '  chain c {',
        '    type filter hook input priority 0; policy accept;',
        `    ip6 saddr ${EC2V6} tcp sport 80 ip6 hoplimit 1 counter name hl1`,
        `    ip6 saddr ${EC2V6} tcp sport 80 ip6 hoplimit != 1 counter name other`,
        '  }',
        '}',
        '',
      ].join('\n'),
    });
    assert.equal((await read(ga)).stdout, 'i-alpha');
    assert.ok((await counter(ga, 'inet', 'probe6', 'hl1')) > 0, 'no reply arrived with hop limit 1');
    assert.equal(await counter(ga, 'inet', 'probe6', 'other'), 0, 'a reply arrived with hop limit > 1');
    // A host on another link (a veth that is no tap) routing fd00:ec2::254 here gets no answer: its
    // replies leave only through the taps. The host's own processes (lo) reach the door: nobody, 404.
    const lan = await topo.addGuest('lan0', '02:00:00:00:0f:01');
    try {
      await hv.ip('link', 'set', 'lan0', 'up');
      const lanLL = await until(
        'lan0 link-local',
        async () => /inet6 (fe80::[0-9a-f:]+)\/64/.exec(await hv.ip('-6', 'addr', 'show', 'dev', 'lan0'))?.[1],
      );
      await lan.ip('-6', 'route', 'add', `${EC2V6}/128`, 'via', lanLL, 'dev', 'eth0');
      // Its own link-local address must have passed DAD, or curl has no source to send from.
      await until("the other host's link-local address", async () => {
        const a = await lan.ip('-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'link');
        return a.includes('fe80::') && !a.includes('tentative');
      });
      const before = await counter(hv, 'inet', 'metad', 'refused');
      const r = await read(lan);
      // It did reach the host (the next hop resolved, so the SYN went out), and the answer was dropped.
      assert.match(await lan.ip('-6', 'neigh', 'show', lanLL, 'dev', 'eth0'), /lladdr/);
      assert.ok((await counter(hv, 'inet', 'metad', 'refused')) > before, 'the replies were not dropped by the rules');
      assert.notEqual(r.code, 0, 'a host on another link got an answer from fd00:ec2::254');
      assert.equal(r.stdout, '');
      const own = await hv.run('curl', [
        '-s',
        '-g',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--max-time',
        '3',
        `http://[${EC2V6}]/latest/meta-data/`,
      ]);
      assert.equal(own.stdout, '404', "the host's own process reaches the door and is nobody");
    } finally {
      await hv.ip('link', 'del', 'lan0');
    }
  });

  await t.test("cloud-init 22.4's EC2 datasource, with its default URLs, reads the guest's own metadata", async (st) => {
    if (skipOrFail(st, cloudInitMissing())) return;
    const r = await ga.run(PY, [CRAWL_PY, 'ec2', 'default', '--timeout', '2', '--max-wait', '20'], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    const out = JSON.parse(r.stdout) as { mode: string; instance_id: string; metadata_address: string; metadata: Record<string, unknown> };
    assert.equal(out.metadata_address, 'http://169.254.169.254');
    assert.equal(out.mode, 'v2');
    assert.equal(out.instance_id, 'i-alpha');
    assert.equal(out.metadata['local-ipv4'], GUESTS[0].ipv4);
    assert.equal(out.metadata['mac'], GUESTS[0].mac);
  });

  await t.test('a guest reaches only the metadata port: not port 8080, not another guest', async () => {
    await assertOnlyMetadataPort(hv, gc, GUESTS[0].ipv4);
  });

  await t.test('replies leave the taps with TTL 1 (hop limit on by default)', async () => {
    await assertRepliesTtl1(ga, 'i-alpha');
  });

  await spoofMatrix(t, { hv, attacker: gc, attackerSpec: GUESTS[2], victim: gb, victimSpec: GUESTS[1], family: 'inet' });

  await t.test('nic up on a new tap: DHCP and a first read work at once (time reported, not asserted)', async (st) => {
    const delta = await topo.addGuest('mtap4', '02:00:00:00:01:0d');
    const reg = await metad.admin('PUT', '/v1/instances/delta', {
      name: 'delta',
      uuid: '00000000-0000-4000-8000-000000000004',
      comm: { mac: '02:00:00:00:01:0d', ipv4: '169.254.1.13' },
      ec2: { instanceId: 'i-delta' },
    });
    assert.equal(reg.status, 201, reg.text);
    assert.equal(await handshake(delta), false, 'no tap registered yet: the guest has no address and no route');
    const t0 = performance.now();
    const up = await metad.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'up' });
    assert.equal(up.status, 200, up.text);
    const st0 = up.json as { route: boolean; rules: boolean; addresses: boolean; dhcp: boolean };
    assert.deepEqual([st0.route, st0.rules, st0.addresses, st0.dhcp], [true, true, true, true]);
    assert.equal(await dhcp(delta, script), '169.254.1.13');
    assert.equal((await curl(delta)).body, 'i-delta');
    st.diagnostic(`nic up -> lease -> first read: ${Math.round(performance.now() - t0)} ms`);
    const again = await metad.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'up' });
    assert.equal(again.status, 200);
    assert.equal(
      (await hv.ip('-4', 'route', 'show', 'proto', '171')).split('169.254.1.13 ').length - 1,
      1,
      'a repeated nic up duplicated the route',
    );
    assert.equal((await metad.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'down' })).status, 204);
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), /169\.254\.1\.13 /);
    assert.equal(await handshake(delta), false, 'after nic down the guest has no route back');
    assert.equal((await metad.admin('DELETE', '/v1/instances/delta')).status, 204);
  });

  await t.test('removing an instance removes its route, set elements, tap addresses and DHCP host', async () => {
    assert.equal((await metad.admin('DELETE', '/v1/instances/bravo')).status, 204);
    // One reconcile does it all; wait for its last step (dnsmasq's hosts file), then check each piece.
    const hostsFile = join(dir, 'run', 'dhcp-hosts');
    await until('bravo gone from the DHCP hosts', () => !readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac));
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), new RegExp(GUESTS[1].ipv4.replaceAll('.', '\\.')));
    const sets = (await hv.run('nft', ['list', 'table', 'inet', 'metad'])).stdout;
    assert.doesNotMatch(sets.replace(/set held \{[^}]*\}/, ''), /mtap2/);
    // Its tap still exists (the guest runs): held closed until it goes (test/integration/comm-ports.test.ts).
    assert.match(sets, /set held \{[^}]*"mtap2"[^}]*\}/);
    assert.match(sets, /"mtap1" \. 169\.254\.1\.10/);
    assert.doesNotMatch(await hv.ip('addr', 'show', 'dev', 'mtap2'), /169\.254\.169\.254|fe80::a9fe:a9fe|fd00:ec2::254/);

    assert.equal(await dhcp(gb, script), undefined, 'a removed instance still got a lease');
    assert.equal(await handshake(gb), false);
    assert.equal((await curl(ga)).body, 'i-alpha');
  });

  await t.test('a restart leaves exactly one table, one route per guest and one address per tap', async () => {
    // Things metad does not own, some looking much like its own: they must survive.
    await hv.ip('link', 'add', 'other0', 'type', 'veth', 'peer', 'name', 'other1');
    await hv.ip('link', 'set', 'other0', 'up');
    await hv.ip('addr', 'add', '169.254.169.254/16', 'dev', 'other0', 'noprefixroute');
    await hv.ip('route', 'add', '169.254.77.7/32', 'dev', 'other0', 'proto', 'static');
    await hv.ip('route', 'add', '10.9.9.9/32', 'dev', 'metad0', 'proto', 'boot');
    await hv.run('nft', ['add', 'table', 'inet', 'foreign']);
    await metad.stop();
    metad = await startMetad();
    await until('reconciled', () => metad.out().includes('"comm network reconciled"'));
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), ['table arp metad', 'table inet foreign', 'table inet metad']);
    const routes = (await hv.ip('-4', 'route', 'show', 'proto', '171')).trim().split('\n');
    assert.deepEqual(routes.map((r) => r.split(' ').slice(0, 3).join(' ')).sort(), ['169.254.1.10 dev mtap1', '169.254.1.12 dev mtap3']);
    for (const tap of ['mtap1', 'mtap3', 'metad0']) {
      const n = ((await hv.ip('-4', 'addr', 'show', 'dev', tap)).match(/169\.254\.169\.254/g) ?? []).length;
      assert.equal(n, 1, tap);
      assert.equal(((await hv.ip('-6', 'addr', 'show', 'dev', tap)).match(/fd00:ec2::254/g) ?? []).length, 1, `${tap} (IPv6)`);
    }
    assert.equal((await curl(ga)).body, 'i-alpha');
    assert.equal((await curl(gc)).body, 'i-carol');
    await metad.admin('PUT', '/v1/instances/bravo', {
      name: 'bravo',
      uuid: '00000000-0000-4000-8000-000000000002',
      comm: { mac: GUESTS[1].mac, ipv4: GUESTS[1].ipv4, tap: 'other9' },
    });
    const hostsFile = join(dir, 'run', 'dhcp-hosts');
    await until('bravo in the DHCP hosts (reconciled)', () => readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac));
    await metad.admin('DELETE', '/v1/instances/bravo');
    await until('bravo gone from the DHCP hosts (reconciled)', () => !readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac));
    assert.match(await hv.ip('addr', 'show', 'dev', 'other0'), /169\.254\.169\.254\/16/);
    assert.match(await hv.ip('route', 'show', 'proto', 'static'), /169\.254\.77\.7 dev other0/);
    assert.match(await hv.ip('route', 'show', 'proto', 'boot'), /10\.9\.9\.9 dev metad0/);
    assert.match((await hv.run('nft', ['list', 'tables'])).stdout, /table inet foreign/);
  });

  await t.test('a killed dnsmasq is restarted and serves leases again; health and metrics show it', async () => {
    type Dhcp = { running: boolean; pid?: number; restarts: number; leases: number };
    const health = async (): Promise<{ network: { mode: string; lastReconcile?: { ok: boolean }; dhcp?: Dhcp } }> =>
      (await metad.admin('GET', '/v1/health')).json as { network: { mode: string; lastReconcile?: { ok: boolean }; dhcp?: Dhcp } };
    const before = await health();
    assert.equal(before.network.mode, 'routed');
    assert.equal(before.network.lastReconcile?.ok, true);
    assert.equal(before.network.dhcp?.running, true);
    const pid = metad.child.pid!;
    const [first] = await until('dnsmasq running', () => {
      const p = childPids(pid, 'dnsmasq');
      return p.length === 1 ? p : undefined;
    });
    process.kill(first!, 'SIGKILL');
    const [second] = await until('dnsmasq restarted', () => {
      const p = childPids(pid, 'dnsmasq');
      return p.length === 1 && p[0] !== first ? p : undefined;
    });
    assert.ok(second);
    assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
    assert.match(metad.out(), /"dnsmasq exited; restarting it"/);
    const after = await health();
    assert.equal(after.network.dhcp?.pid, second);
    assert.equal(after.network.dhcp.restarts, before.network.dhcp.restarts + 1);
    assert.equal(after.network.dhcp.leases, 1, 'the lease the guest just got, in the new dnsmasq');
    const m = (await metad.admin('GET', '/v1/metrics')).text;
    assert.match(m, /^metad_dhcp_leases 1$/m);
    assert.match(m, new RegExp(`^metad_dnsmasq_restarts_total ${String(after.network.dhcp.restarts)}$`, 'm'));
    assert.match(m, /^metad_dnsmasq_up 1$/m);
  });

  await t.test(
    'metad runs as root, its dnsmasq does not: network.dhcp.user (default dnsmasq, else nobody), and it still serves',
    async () => {
      assert.equal(process.getuid?.(), 0, 'this test runs metad as root');
      const [p] = childPids(metad.child.pid!, 'dnsmasq');
      const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${String(p)}/status`, 'utf8'));
      const gids = /^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(readFileSync(`/proc/${String(p)}/status`, 'utf8'));
      const passwd = readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .map((l) => l.split(':'));
      const want = passwd.find((f) => f[0] === 'dnsmasq') ?? passwd.find((f) => f[0] === 'nobody');
      assert.ok(want, 'neither dnsmasq nor nobody exists');
      assert.deepEqual(ids?.slice(1), [want[2], want[2], want[2], want[2]], 'real, effective, saved and fs uid');
      assert.deepEqual(gids?.slice(1), [want[3], want[3], want[3], want[3]], 'real, effective, saved and fs gid');
      assert.match(metad.out(), new RegExp(`"user":"${want[0]!}"[^\n]*"msg":"dnsmasq started"`));
      assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
    },
  );

  await t.test('a metad killed outright leaves its dnsmasq; the next start kills that one and runs exactly one', async () => {
    const old = metad.child.pid!;
    metad.child.kill('SIGKILL');
    await metad.stop();
    const orphan = Number(readFileSync(join(dir, 'run', 'dnsmasq.pid'), 'utf8'));
    assert.ok(existsSync(`/proc/${String(orphan)}`), 'the dnsmasq outlived its metad');
    metad = await startMetad();
    await until('reconciled', () => metad.out().includes('"comm network reconciled"'));
    assert.equal(
      existsSync(`/proc/${String(orphan)}`) && readFileSync(`/proc/${String(orphan)}/cmdline`, 'utf8').includes('dnsmasq'),
      false,
      'the orphan still runs',
    );
    assert.notEqual(metad.child.pid, old);
    assert.equal(childPids(metad.child.pid!, 'dnsmasq').length, 1);
    assert.equal(await dhcp(ga, script), GUESTS[0].ipv4);
    assert.match(metad.out(), /"dnsmasq left by an earlier metad killed"/);
  });
});
