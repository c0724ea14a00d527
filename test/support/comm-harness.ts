/**
 * What the routed and bridged comm network tests share (test/integration/comm-routed.test.ts,
 * comm-bridged.test.ts): the real `metad serve` in the "hypervisor" namespace of a
 * test/support/comm-topology.ts topology, the guests' clients (busybox udhcpc, curl, a raw TCP
 * connect, busybox arping, a raw ARP frame), and the spoof matrix both modes must pass.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { canUseNetns } from './netns.js';
import { missingCommand } from './env.js';
import { request, type Reply } from './daemon.js';
import { cleanEnv } from '../conformance/harness.js';
import type { Guest, Ns } from './comm-topology.js';

const MD = '169.254.169.254';
export const PY = '/usr/bin/python3';
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));

export const GUESTS = [
  { name: 'alpha', tap: 'mtap1', mac: '02:00:00:00:01:0a', ipv4: '169.254.1.10', id: 'i-alpha' },
  { name: 'bravo', tap: 'mtap2', mac: '02:00:00:00:01:0b', ipv4: '169.254.1.11', id: 'i-bravo' },
  { name: 'carol', tap: 'mtap3', mac: '02:00:00:00:01:0c', ipv4: '169.254.1.12', id: 'i-carol' },
] as const;
type GuestSpec = (typeof GUESTS)[number];

const CONNECT_PY = `
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=float(sys.argv[2])).close()
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)
`;

/** One ARP reply, broadcast, built by hand: ether source and ARP sender given separately. */
const RAW_ARP_PY = `
import socket, sys
eth_src, sender_mac, sender_ip = sys.argv[1], sys.argv[2], sys.argv[3]
mac = lambda m: bytes.fromhex(m.replace(":", ""))
ip = socket.inet_aton(sender_ip)
frame = b"\\xff" * 6 + mac(eth_src) + b"\\x08\\x06"
frame += b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x02" + mac(sender_mac) + ip + b"\\xff" * 6 + ip
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(3):
    s.send(frame)
`;

const DHCP_SCRIPT = `#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
/usr/sbin/ip -4 addr flush dev "$interface"
/usr/sbin/ip addr add "$ip/\${mask:-16}" dev "$interface"
`;

/** The udhcpc script that puts the leased address on eth0. */
export function writeDhcpScript(dir: string): string {
  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, DHCP_SCRIPT, { mode: 0o755 });
  return script;
}

export function commMissing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  return missingCommand([
    ['dnsmasq', 'dnsmasq-base'],
    ['busybox', 'busybox'],
    ['curl', 'curl'],
  ]);
}

export interface Metad {
  child: ChildProcess;
  out(): string;
  admin(method: string, path: string, body?: unknown): Promise<Reply>;
  stop(): Promise<void>;
}

export async function until<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** `metad serve` in the hypervisor namespace with `network` as its network section. */
export function startMetad(hv: Ns, dir: string, network: Record<string, unknown>): Promise<Metad> {
  const socket = join(dir, 'admin.sock');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: join(dir, 'state'),
      admin: { socket },
      log: { level: 'info' },
      network: { runDir: join(dir, 'run'), ...network },
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

/** Register the three guests with their taps (201 each). */
export async function registerGuests(metad: Metad): Promise<void> {
  for (const [i, g] of GUESTS.entries()) {
    const r = await metad.admin('PUT', `/v1/instances/${g.name}`, {
      name: g.name,
      uuid: `00000000-0000-4000-8000-00000000000${String(i + 1)}`,
      comm: { mac: g.mac, ipv4: g.ipv4, tap: g.tap },
      ec2: { instanceId: g.id },
    });
    assert.equal(r.status, 201, r.text);
  }
}

/** busybox udhcpc on eth0: the leased address, or undefined when none was offered. */
export async function dhcp(g: Ns, script: string): Promise<string | undefined> {
  const r = await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '4', '-T', '1', '-A', '1', '-s', script], {
    timeoutMs: 20_000,
  });
  return r.code === 0 ? /lease of (\S+) obtained/.exec(r.stdout + r.stderr)?.[1] : undefined;
}

export async function curl(g: Ns, path = '/latest/meta-data/instance-id', host = MD): Promise<{ code: number | null; body: string }> {
  const r = await g.run('curl', ['-s', '-g', '--noproxy', '*', '--connect-timeout', '1', '--max-time', '3', `http://${host}${path}`], {
    timeoutMs: 10_000,
  });
  return { code: r.code, body: r.stdout };
}

/** Does a TCP handshake with the metadata address complete? */
export async function handshake(g: Ns): Promise<boolean> {
  const r = await g.run(PY, ['-c', CONNECT_PY, MD, '1'], { timeoutMs: 10_000 });
  return r.stdout.startsWith('connected');
}

export async function counter(n: Ns, family: 'inet' | 'bridge', table: string, name: string): Promise<number> {
  const r = await n.run('nft', ['list', 'counter', family, table, name]);
  const m = /packets (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no counter ${family} ${table}/${name}: ${r.stderr}`);
  return Number(m[1]);
}

/** The guest reads its instance-id; every reply packet from the metadata port arrived with TTL 1. */
export async function assertRepliesTtl1(g: Ns, id: string): Promise<void> {
  await g.run('nft', ['-f', '-'], {
    input: [
      'table inet probe {',
      '  counter ttl1 { }',
      '  counter other { }',
      '  chain c {',
      '    type filter hook input priority 0; policy accept;',
      `    ip saddr ${MD} tcp sport 80 ip ttl 1 counter name ttl1`,
      `    ip saddr ${MD} tcp sport 80 ip ttl != 1 counter name other`,
      '  }',
      '}',
      '',
    ].join('\n'),
  });
  assert.equal((await curl(g)).body, id);
  assert.ok((await counter(g, 'inet', 'probe', 'ttl1')) > 0, 'no reply arrived with TTL 1');
  assert.equal(await counter(g, 'inet', 'probe', 'other'), 0, 'a reply arrived with TTL > 1');
}

/** Another port on the metadata address and another guest are dropped by metad's `inet` rules (counter `refused`). */
export async function assertOnlyMetadataPort(hv: Ns, g: Ns, otherGuestIpv4: string): Promise<void> {
  const before = await counter(hv, 'inet', 'metad', 'refused');
  const r = await g.run('curl', ['-s', '--noproxy', '*', '--connect-timeout', '1', '--max-time', '2', `http://${MD}:8080/`], {
    timeoutMs: 10_000,
  });
  assert.notEqual(r.code, 0, 'port 8080 answered');
  const ping = await g.run('busybox', ['ping', '-c', '2', '-W', '1', otherGuestIpv4], { timeoutMs: 10_000 });
  assert.notEqual(ping.code, 0, 'the other guest answered');
  assert.ok((await counter(hv, 'inet', 'metad', 'refused')) > before, 'nothing was dropped by the refused rule');
}

async function setIdentity(g: Guest, mac: string, ipv4: string): Promise<void> {
  await g.ip('link', 'set', 'eth0', 'down');
  await g.ip('link', 'set', 'eth0', 'address', mac);
  await g.ip('-4', 'addr', 'flush', 'dev', 'eth0');
  await g.ip('addr', 'add', `${ipv4}/16`, 'dev', 'eth0');
  await g.ip('link', 'set', 'eth0', 'up');
}

/** Gratuitous ARP with busybox arping: -U (request) or -A (reply). */
async function garp(g: Ns, ipv4: string, mode: '-U' | '-A' = '-U'): Promise<void> {
  await g.run('busybox', ['arping', mode, '-c', '3', '-w', '3', '-I', 'eth0', '-s', ipv4, ipv4], { timeoutMs: 10_000 });
}

interface Attack {
  readonly what: string;
  /** The identity the attacker's eth0 takes. */
  readonly mac: string;
  readonly ipv4: string;
  readonly announce?: (g: Guest) => Promise<void>;
}

function attacks(self: GuestSpec, victim: GuestSpec): Attack[] {
  const v = victim.name;
  return [
    { what: `${v}'s IPv4`, mac: self.mac, ipv4: victim.ipv4 },
    { what: `${v}'s MAC`, mac: victim.mac, ipv4: self.ipv4 },
    { what: `${v}'s IPv4 and MAC`, mac: victim.mac, ipv4: victim.ipv4 },
    {
      what: `${v}'s IPv4 announced by gratuitous ARP (arping -U)`,
      mac: self.mac,
      ipv4: victim.ipv4,
      announce: (g) => garp(g, victim.ipv4),
    },
    {
      what: `${v}'s IPv4 and MAC announced by gratuitous ARP (arping -U)`,
      mac: victim.mac,
      ipv4: victim.ipv4,
      announce: (g) => garp(g, victim.ipv4),
    },
    {
      what: `${v}'s IPv4 announced by unsolicited ARP replies (arping -A)`,
      mac: self.mac,
      ipv4: victim.ipv4,
      announce: (g) => garp(g, victim.ipv4, '-A'),
    },
    {
      what: `${v}'s IPv4 and MAC announced by raw ARP replies from its own MAC`,
      mac: self.mac,
      ipv4: victim.ipv4,
      announce: async (g) => {
        const r = await g.run(PY, ['-c', RAW_ARP_PY, self.mac, victim.mac, victim.ipv4], { timeoutMs: 10_000 });
        assert.equal(r.code, 0, r.stderr);
      },
    },
  ];
}

export interface SpoofSetup {
  readonly hv: Ns;
  readonly attacker: Guest;
  readonly attackerSpec: GuestSpec;
  readonly victim: Guest;
  readonly victimSpec: GuestSpec;
  /** Where metad's `spoofed` counter lives: `inet metad` (routed) or `bridge metad` (bridged). */
  readonly family: 'inet' | 'bridge';
}

/**
 * Each attack, with the victim up and with its link down: the attacker completes no TCP handshake
 * and reads nothing, metad's rules counted the spoofed packets as dropped, and afterwards both the
 * attacker (under its own identity) and the victim read their own data again.
 */
export async function spoofMatrix(t: TestContext, s: SpoofSetup): Promise<void> {
  for (const victimDown of [false, true]) {
    for (const a of attacks(s.attackerSpec, s.victimSpec)) {
      await t.test(`${s.attackerSpec.name} takes ${a.what}, victim ${victimDown ? 'down' : 'up'}: no handshake, no data`, async () => {
        if (victimDown) await s.victim.ip('link', 'set', 'eth0', 'down');
        try {
          await setIdentity(s.attacker, a.mac, a.ipv4);
          const before = await counter(s.hv, s.family, 'metad', 'spoofed');
          await a.announce?.(s.attacker);
          assert.equal(await handshake(s.attacker), false, 'the spoofer completed a TCP handshake');
          const r = await curl(s.attacker);
          assert.notEqual(r.code, 0);
          assert.equal(r.body, '');
          // Dropped by metad's rules on the way in (not merely unanswered).
          assert.ok((await counter(s.hv, s.family, 'metad', 'spoofed')) > before, 'the spoofed packets were not counted as dropped');
        } finally {
          await setIdentity(s.attacker, s.attackerSpec.mac, s.attackerSpec.ipv4);
          await garp(s.attacker, s.attackerSpec.ipv4);
          if (victimDown) await s.victim.ip('link', 'set', 'eth0', 'up');
        }
        // Controls: the attacker's own identity still works, and so does the victim.
        assert.equal(
          await until('attacker back', async () => ((await curl(s.attacker)).body === s.attackerSpec.id ? true : undefined)),
          true,
        );
        assert.equal(await until('victim back', async () => ((await curl(s.victim)).body === s.victimSpec.id ? true : undefined)), true);
      });
    }
  }
}
