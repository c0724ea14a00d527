/**
 * The routed comm network, for real, inside namespaces this test creates and deletes: a
 * "hypervisor" namespace runs the real `metad serve` (network.mode routed) with its anchor,
 * taps (veth ends), routes, nftables table and dnsmasq; three guest namespaces get their IPv4
 * from metad's dnsmasq with busybox udhcpc and read their metadata at 169.254.169.254 with curl.
 * Proves: each guest sees only its own instance-id; a guest that takes another's IPv4, MAC, both,
 * or announces them by gratuitous ARP (victim up and victim down) gets no handshake and no data;
 * removing an instance removes its route, set elements and DHCP host; a restart leaves exactly
 * one table and one copy of each route/address; a killed dnsmasq comes back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { canUseNetns } from '../support/netns.js';
import { hasCommand, skipOrFail } from '../support/env.js';
import { request, type Reply } from '../support/daemon.js';
import { CRAWL_PY, cleanEnv, cloudInitMissing } from '../conformance/harness.js';
import { childPids, createTopology, type Guest, type Ns, type Topology } from '../support/comm-topology.js';

const MD = '169.254.169.254';
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const PY = '/usr/bin/python3';
const GUESTS = [
  { name: 'alpha', tap: 'mtap1', mac: '02:00:00:00:01:0a', ipv4: '169.254.1.10', id: 'i-alpha' },
  { name: 'bravo', tap: 'mtap2', mac: '02:00:00:00:01:0b', ipv4: '169.254.1.11', id: 'i-bravo' },
  { name: 'carol', tap: 'mtap3', mac: '02:00:00:00:01:0c', ipv4: '169.254.1.12', id: 'i-carol' },
] as const;

const CONNECT_PY = `
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=float(sys.argv[2])).close()
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)
`;

const DHCP_SCRIPT = `#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
/usr/sbin/ip -4 addr flush dev "$interface"
/usr/sbin/ip addr add "$ip/\${mask:-16}" dev "$interface"
`;

function missing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  for (const [cmd, pkg] of [
    ['dnsmasq', 'dnsmasq-base'],
    ['busybox', 'busybox'],
    ['curl', 'curl'],
  ] as const) {
    if (!hasCommand(cmd) && !hasCommand(`/usr/sbin/${cmd}`)) return `${cmd} not installed (${pkg}; .ci/install-deps.sh)`;
  }
  return undefined;
}

interface Metad {
  child: ChildProcess;
  out(): string;
  admin(method: string, path: string, body?: unknown): Promise<Reply>;
  stop(): Promise<void>;
}

async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function startMetad(hv: Ns, dir: string): Promise<Metad> {
  const socket = join(dir, 'admin.sock');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: join(dir, 'state'),
      admin: { socket },
      log: { level: 'info' },
      network: { mode: 'routed', runDir: join(dir, 'run') },
    }),
  );
  const child = hv.spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const m: Metad = {
    child,
    out: () => out,
    admin(method, path, body) {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      return request(
        { socketPath: socket, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json' } },
        payload,
      );
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  return until('metad started', () => {
    if (child.exitCode !== null) throw new Error(`metad exited: ${out}`);
    return out.includes('"metad started"') ? m : undefined;
  });
}

async function dhcp(g: Ns, script: string): Promise<string | undefined> {
  const r = await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '4', '-T', '1', '-A', '1', '-s', script], {
    timeoutMs: 20_000,
  });
  return r.code === 0 ? /lease of (\S+) obtained/.exec(r.stdout + r.stderr)?.[1] : undefined;
}

async function curl(g: Ns, path = '/latest/meta-data/instance-id'): Promise<{ code: number | null; body: string }> {
  const r = await g.run('curl', ['-s', '--noproxy', '*', '--connect-timeout', '1', '--max-time', '3', `http://${MD}${path}`], {
    timeoutMs: 10_000,
  });
  return { code: r.code, body: r.stdout };
}

async function handshake(g: Ns): Promise<boolean> {
  const r = await g.run(PY, ['-c', CONNECT_PY, MD, '1'], { timeoutMs: 10_000 });
  return r.stdout.startsWith('connected');
}

async function counter(n: Ns, table: string, name: string): Promise<number> {
  const r = await n.run('nft', ['list', 'counter', 'inet', table, name]);
  const m = /packets (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no counter ${table}/${name}: ${r.stderr}`);
  return Number(m[1]);
}

async function setIdentity(g: Guest, mac: string, ipv4: string): Promise<void> {
  await g.ip('link', 'set', 'eth0', 'down');
  await g.ip('link', 'set', 'eth0', 'address', mac);
  await g.ip('-4', 'addr', 'flush', 'dev', 'eth0');
  await g.ip('addr', 'add', `${ipv4}/16`, 'dev', 'eth0');
  await g.ip('link', 'set', 'eth0', 'up');
}

async function garp(g: Ns, ipv4: string): Promise<void> {
  await g.run('busybox', ['arping', '-U', '-c', '3', '-w', '3', '-I', 'eth0', '-s', ipv4, ipv4], { timeoutMs: 10_000 });
}

test('routed comm network in namespaces: DHCP, identity by tap, anti-spoofing, reconcile, restart, dnsmasq supervision', async (t) => {
  if (skipOrFail(t, missing())) return;
  const topo: Topology = await createTopology(GUESTS.map((g) => ({ tap: g.tap, mac: g.mac })));
  const dir = mkdtempSync(join(tmpdir(), 'metad-comm-'));
  let metad: Metad | undefined;
  t.after(async () => {
    await metad?.stop();
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  chmodSync(dir, 0o755);
  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, DHCP_SCRIPT, { mode: 0o755 });
  const { hv } = topo;
  const [ga, gb, gc] = topo.guests as [Guest, Guest, Guest];
  metad = await startMetad(hv, dir);

  await t.test('before any tap is registered: the anchor holds 169.254.169.254, one table exists', async () => {
    assert.match(await hv.ip('-4', 'addr', 'show', 'dev', 'metad0'), /inet 169\.254\.169\.254\/32/);
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n'), ['table inet metad']);
  });

  for (const g of GUESTS) {
    const r = await metad.admin('PUT', `/v1/instances/${g.name}`, {
      name: g.name,
      uuid: `00000000-0000-4000-8000-00000000000${GUESTS.indexOf(g) + 1}`,
      comm: { mac: g.mac, ipv4: g.ipv4, tap: g.tap },
      ec2: { instanceId: g.id },
    });
    assert.equal(r.status, 201, r.text);
  }
  await until('routes for all three guests', async () => {
    const routes = await hv.ip('-4', 'route', 'show', 'proto', '171');
    return GUESTS.every((g) => routes.includes(`${g.ipv4} dev ${g.tap}`)) ? true : undefined;
  });

  await t.test('each guest gets its registered IPv4 from dnsmasq (udhcpc) and reads only its own instance-id', async () => {
    for (const [g, spec] of [
      [ga, GUESTS[0]],
      [gb, GUESTS[1]],
      [gc, GUESTS[2]],
    ] as const) {
      assert.equal(await dhcp(g, script), spec.ipv4, `${spec.name} lease`);
      const r = await curl(g);
      assert.equal(r.code, 0, `${spec.name} curl failed`);
      assert.equal(r.body, spec.id);
    }
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
    const up = await metad!.admin('POST', '/v1/instances/alpha/nic', { tap: 'mtap1', state: 'up' });
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

  await t.test('replies leave the taps with TTL 1 (hop limit on by default)', async () => {
    await ga.run('nft', ['-f', '-'], {
      input: [
        'table inet probe {',
        '  counter ttl1 { }',
        '  counter other { }',
        '  chain c {',
        '    type filter hook input priority 0; policy accept;',
        '    ip saddr 169.254.169.254 tcp sport 80 ip ttl 1 counter name ttl1',
        '    ip saddr 169.254.169.254 tcp sport 80 ip ttl != 1 counter name other',
        '  }',
        '}',
        '',
      ].join('\n'),
    });
    assert.equal((await curl(ga)).body, 'i-alpha');
    assert.ok((await counter(ga, 'probe', 'ttl1')) > 0, 'no reply arrived with TTL 1');
    assert.equal(await counter(ga, 'probe', 'other'), 0, 'a reply arrived with TTL > 1');
  });

  const attacks: { what: string; mac: string; ipv4: string; garp: boolean }[] = [
    { what: "bravo's IPv4", mac: GUESTS[2].mac, ipv4: GUESTS[1].ipv4, garp: false },
    { what: "bravo's MAC", mac: GUESTS[1].mac, ipv4: GUESTS[2].ipv4, garp: false },
    { what: "bravo's IPv4 and MAC", mac: GUESTS[1].mac, ipv4: GUESTS[1].ipv4, garp: false },
    { what: "bravo's IPv4 announced by gratuitous ARP", mac: GUESTS[2].mac, ipv4: GUESTS[1].ipv4, garp: true },
    { what: "bravo's IPv4 and MAC announced by gratuitous ARP", mac: GUESTS[1].mac, ipv4: GUESTS[1].ipv4, garp: true },
  ];
  for (const victimDown of [false, true]) {
    for (const a of attacks) {
      await t.test(`carol takes ${a.what}, victim ${victimDown ? 'down' : 'up'}: no handshake, no data`, async () => {
        if (victimDown) await gb.ip('link', 'set', 'eth0', 'down');
        try {
          await setIdentity(gc, a.mac, a.ipv4);
          if (a.garp) await garp(gc, a.ipv4);
          const before = await counter(hv, 'metad', 'spoofed');
          assert.equal(await handshake(gc), false, 'the spoofer completed a TCP handshake');
          const r = await curl(gc);
          assert.notEqual(r.code, 0);
          assert.equal(r.body, '');
          // Dropped by metad's rules on the way in (not merely unanswered).
          assert.ok((await counter(hv, 'metad', 'spoofed')) > before, 'the spoofed packets were not counted as dropped');
        } finally {
          await setIdentity(gc, GUESTS[2].mac, GUESTS[2].ipv4);
          await garp(gc, GUESTS[2].ipv4);
          if (victimDown) await gb.ip('link', 'set', 'eth0', 'up');
        }
        // Controls: the attacker's own identity still works, and so does the victim.
        assert.equal((await curl(gc)).body, 'i-carol');
        assert.equal(await until('bravo back', async () => ((await curl(gb)).body === 'i-bravo' ? true : undefined)), true);
      });
    }
  }

  await t.test('nic up on a new tap: DHCP and a first read work at once (time reported, not asserted)', async (st) => {
    const delta = await topo.addGuest('mtap4', '02:00:00:00:01:0d');
    const reg = await metad!.admin('PUT', '/v1/instances/delta', {
      name: 'delta',
      uuid: '00000000-0000-4000-8000-000000000004',
      comm: { mac: '02:00:00:00:01:0d', ipv4: '169.254.1.13' },
      ec2: { instanceId: 'i-delta' },
    });
    assert.equal(reg.status, 201, reg.text);
    assert.equal(await handshake(delta), false, 'no tap registered yet: the guest has no address and no route');
    const t0 = performance.now();
    const up = await metad!.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'up' });
    assert.equal(up.status, 200, up.text);
    const st0 = up.json as { route: boolean; rules: boolean; addresses: boolean; dhcp: boolean };
    assert.deepEqual([st0.route, st0.rules, st0.addresses, st0.dhcp], [true, true, true, true]);
    assert.equal(await dhcp(delta, script), '169.254.1.13');
    assert.equal((await curl(delta)).body, 'i-delta');
    st.diagnostic(`nic up -> lease -> first read: ${Math.round(performance.now() - t0)} ms`);
    const again = await metad!.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'up' });
    assert.equal(again.status, 200);
    assert.equal(
      (await hv.ip('-4', 'route', 'show', 'proto', '171')).split('169.254.1.13 ').length - 1,
      1,
      'a repeated nic up duplicated the route',
    );
    assert.equal((await metad!.admin('POST', '/v1/instances/delta/nic', { tap: 'mtap4', state: 'down' })).status, 204);
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), /169\.254\.1\.13 /);
    assert.equal(await handshake(delta), false, 'after nic down the guest has no route back');
    assert.equal((await metad!.admin('DELETE', '/v1/instances/delta')).status, 204);
  });

  await t.test('removing an instance removes its route, set elements, tap addresses and DHCP host', async () => {
    assert.equal((await metad!.admin('DELETE', '/v1/instances/bravo')).status, 204);
    // One reconcile does it all; wait for its last step (dnsmasq's hosts file), then check each piece.
    const hostsFile = join(dir, 'run', 'dhcp-hosts');
    await until('bravo gone from the DHCP hosts', () => (readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac) ? undefined : true));
    assert.doesNotMatch(await hv.ip('-4', 'route', 'show', 'proto', '171'), new RegExp(GUESTS[1].ipv4.replaceAll('.', '\\.')));
    const sets = (await hv.run('nft', ['list', 'table', 'inet', 'metad'])).stdout;
    assert.doesNotMatch(sets, /mtap2/);
    assert.match(sets, /"mtap1" \. 169\.254\.1\.10/);
    assert.doesNotMatch(await hv.ip('addr', 'show', 'dev', 'mtap2'), /169\.254\.169\.254|fe80::a9fe:a9fe/);

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
    await metad!.stop();
    metad = await startMetad(hv, dir);
    await until('reconciled', () => (metad!.out().includes('"comm network reconciled"') ? true : undefined));
    const tables = (await hv.run('nft', ['list', 'tables'])).stdout;
    assert.deepEqual(tables.trim().split('\n').sort(), ['table inet foreign', 'table inet metad']);
    const routes = (await hv.ip('-4', 'route', 'show', 'proto', '171')).trim().split('\n');
    assert.deepEqual(routes.map((r) => r.split(' ').slice(0, 3).join(' ')).sort(), ['169.254.1.10 dev mtap1', '169.254.1.12 dev mtap3']);
    for (const tap of ['mtap1', 'mtap3', 'metad0']) {
      const n = ((await hv.ip('-4', 'addr', 'show', 'dev', tap)).match(/169\.254\.169\.254/g) ?? []).length;
      assert.equal(n, 1, tap);
    }
    assert.equal((await curl(ga)).body, 'i-alpha');
    assert.equal((await curl(gc)).body, 'i-carol');
    await metad.admin('PUT', '/v1/instances/bravo', {
      name: 'bravo',
      uuid: '00000000-0000-4000-8000-000000000002',
      comm: { mac: GUESTS[1].mac, ipv4: GUESTS[1].ipv4, tap: 'other9' },
    });
    const hostsFile = join(dir, 'run', 'dhcp-hosts');
    await until('bravo in the DHCP hosts (reconciled)', () => (readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac) ? true : undefined));
    await metad.admin('DELETE', '/v1/instances/bravo');
    await until('bravo gone from the DHCP hosts (reconciled)', () =>
      readFileSync(hostsFile, 'utf8').includes(GUESTS[1].mac) ? undefined : true,
    );
    assert.match(await hv.ip('addr', 'show', 'dev', 'other0'), /169\.254\.169\.254\/16/);
    assert.match(await hv.ip('route', 'show', 'proto', 'static'), /169\.254\.77\.7 dev other0/);
    assert.match(await hv.ip('route', 'show', 'proto', 'boot'), /10\.9\.9\.9 dev metad0/);
    assert.match((await hv.run('nft', ['list', 'tables'])).stdout, /table inet foreign/);
  });

  await t.test('a killed dnsmasq is restarted and serves leases again', async () => {
    const pid = metad!.child.pid!;
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
    assert.match(metad!.out(), /"dnsmasq exited; restarting it"/);
  });

  await t.test('a metad killed outright leaves its dnsmasq; the next start kills that one and runs exactly one', async () => {
    const old = metad!.child.pid!;
    metad!.child.kill('SIGKILL');
    await metad!.stop();
    const orphan = Number(readFileSync(join(dir, 'run', 'dnsmasq.pid'), 'utf8'));
    assert.ok(existsSync(`/proc/${String(orphan)}`), 'the dnsmasq outlived its metad');
    metad = await startMetad(hv, dir);
    await until('reconciled', () => (metad!.out().includes('"comm network reconciled"') ? true : undefined));
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
