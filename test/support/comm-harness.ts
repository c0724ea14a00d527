/**
 * What the comm network tests share (test/integration/comm-*.test.ts, state-lock.test.ts): the
 * prologue (`commBed`: a test/support/comm-topology.ts topology, a temp dir, the real `metad
 * serve` in its "hypervisor" namespace, all removed after the test), the guests' clients
 * (busybox udhcpc, curl, a raw TCP connect, busybox arping, a raw ARP frame), and the spoof and
 * DHCP theft matrices both modes must pass.
 */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canUseNetns } from './netns.js';
import { missingCommand, skipOrFail } from './env.js';
import { startNsMetad, type NsMetad } from './ns-metad.js';
import { until } from './wait.js';
import { createTopology, type Guest, type Ns, type Topology } from './comm-topology.js';

const MD = '169.254.169.254';
export const PY = '/usr/bin/python3';

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

export type Metad = NsMetad;

/** Starts a command in the hypervisor namespace (a wrapper such as setpriv may go in front). */
type Spawner = Parameters<typeof startNsMetad>[0];

export interface CommBed {
  readonly topo: Topology;
  /** The "hypervisor" namespace: metad, its taps, routes, nftables and dnsmasq. */
  readonly hv: Ns;
  readonly guests: Guest[];
  /** A temp dir (0755: dnsmasq reads its files there after dropping privileges): metad's state, run dir and admin socket. */
  readonly dir: string;
  /** The udhcpc script that puts the leased address on eth0 (for `dhcp`). */
  readonly script: string;
  /** `metad serve` in the hypervisor namespace with `network` as its network section (runDir: `<dir>/run`), `more` merged over the rest. */
  startMetad(network: Record<string, unknown>, spawn?: Spawner, more?: Record<string, unknown>): Promise<Metad>;
}

/**
 * The prologue of every comm network test: skip-or-fail without network namespaces, dnsmasq,
 * busybox, curl (and `also`); a topology whose guests are `guests` (default: the three GUESTS,
 * each on its tap); a temp dir with the udhcpc script. After the test, every metad started
 * through the bed is stopped, then the namespaces (and whatever still runs there) and the dir go.
 * Undefined when the test was skipped.
 */
export async function commBed(
  t: TestContext,
  opts: { guests?: readonly { tap: string; mac: string }[]; also?: readonly (readonly [string, string])[] } = {},
): Promise<CommBed | undefined> {
  if (skipOrFail(t, commMissing() ?? missingCommand(opts.also ?? []))) return undefined;
  const topo = await createTopology(opts.guests ?? GUESTS.map((g) => ({ tap: g.tap, mac: g.mac })));
  const dir = mkdtempSync(join(tmpdir(), 'metad-comm-'));
  const started: Metad[] = [];
  t.after(async () => {
    for (const m of started.reverse()) await m.stop();
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  chmodSync(dir, 0o755);
  const spawnInHv: Spawner = (cmd, args, o) => topo.hv.spawn(cmd, args, o);
  return {
    topo,
    hv: topo.hv,
    guests: topo.guests,
    dir,
    script: writeDhcpScript(dir),
    async startMetad(network, spawn = spawnInHv, more = {}) {
      const m = await startNsMetad(spawn, dir, { ...more, network: { runDir: join(dir, 'run'), ...network } });
      started.push(m);
      return m;
    },
  };
}

/** A phase: each of the three guests gets its registered IPv4 from dnsmasq (udhcpc) and reads only its own instance-id. */
export async function leasesAndOwnReads(t: TestContext, bed: CommBed): Promise<void> {
  await t.test('each guest gets its registered IPv4 from dnsmasq (udhcpc) and reads only its own instance-id', async () => {
    for (const [i, spec] of GUESTS.entries()) {
      const g = bed.guests[i]!;
      assert.equal(await dhcp(g, bed.script), spec.ipv4, `${spec.name} lease`);
      const r = await curl(g);
      assert.equal(r.code, 0, `${spec.name} curl failed`);
      assert.equal(r.body, spec.id);
    }
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
        assert.equal(await until('attacker back', async () => (await curl(s.attacker)).body === s.attackerSpec.id), true);
        assert.equal(await until('victim back', async () => (await curl(s.victim)).body === s.victimSpec.id), true);
      });
    }
  }
}

/**
 * One hand-made DHCP message from the guest's eth0, then every DHCP reply that reaches eth0 within
 * `wait` seconds, as JSON lines `{"type": 2, "yiaddr": "..."}` (replies to this message's xid only).
 * argv: type chaddr requested-ip client-id(hex, or "-") how wait source-ip; how is `broadcast` (raw
 * frame from 0.0.0.0 to 255.255.255.255 with eth0's own MAC as Ethernet source), `fragments` (raw,
 * from the guest's own address to the server, in two IPv4 fragments with chaddr in the second) or
 * `unicast` (a UDP socket from the guest's own address to the server, as a renewing client sends).
 */
const DHCP_PY = `
import json, os, random, socket, struct, sys, time
mtype, chaddr, req, clid, how, wait, src = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]), sys.argv[7]
SERVER = "169.254.169.254"
mac = lambda m: bytes.fromhex(m.replace(":", ""))
own = open("/sys/class/net/eth0/address").read().strip()
xid = random.getrandbits(32)
opts = bytes([53, 1, mtype])
if req != "-": opts += bytes([50, 4]) + socket.inet_aton(req)
if mtype in (3, 4): opts += bytes([54, 4]) + socket.inet_aton(SERVER)
if clid != "-": opts += bytes([61, len(bytes.fromhex(clid))]) + bytes.fromhex(clid)
ciaddr = socket.inet_aton(req) if how == "unicast" and req != "-" else bytes(4)
bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + ciaddr + bytes(12) + mac(chaddr) + bytes(10) + bytes(192)
bootp += b"\\x63\\x82\\x53\\x63" + opts + b"\\xff"
bootp += bytes(max(0, 300 - len(bootp)))
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
rx.bind(("eth0", 0))
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
def ip4(payload, ident, off_words, more, saddr, daddr):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, (0x2000 if more else 0) | off_words, 64, 17, 0, saddr, daddr)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
if how == "unicast":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    s.bind(("", 68))
    s.sendto(bootp, (SERVER, 67))
else:
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    eth = b"\\xff" * 6 + mac(own) + b"\\x08\\x00"
    tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    tx.bind(("eth0", 0))
    ident = random.getrandbits(16)
    if how == "fragments":
        saddr, daddr = socket.inet_aton(src), socket.inet_aton(SERVER)
        tx.send(eth + ip4(udp[:24], ident, 0, True, saddr, daddr))
        tx.send(eth + ip4(udp[24:], ident, 3, False, saddr, daddr))
    else:
        tx.send(eth + ip4(udp, ident, 0, False, bytes(4), b"\\xff" * 4))
end = time.time() + wait
while True:
    left = end - time.time()
    if left <= 0: break
    rx.settimeout(left)
    try: f = rx.recv(4096)
    except socket.timeout: break
    ip = f[14:]
    if len(ip) < 20 or ip[9] != 17: continue
    l4 = ip[(ip[0] & 15) * 4:]
    sport, dport = struct.unpack("!HH", l4[:4])
    b = l4[8:]
    if sport != 67 or dport != 68 or len(b) < 240 or b[0] != 2 or struct.unpack("!I", b[4:8])[0] != xid: continue
    t, i = None, 240
    while i < len(b) and b[i] != 255:
        if b[i] == 0: i += 1; continue
        if b[i] == 53: t = b[i + 2]
        i += 2 + b[i + 1]
    print(json.dumps({"type": t, "yiaddr": socket.inet_ntoa(b[16:20])}), flush=True)
`;

const DHCP = { discover: 1, offer: 2, request: 3, decline: 4, ack: 5, nak: 6 } as const;

interface DhcpReply {
  type: number;
  yiaddr: string;
}

async function sendDhcp(
  g: Ns,
  src: string,
  m: { type: keyof typeof DHCP; chaddr: string; requested?: string; clientId?: string; how: 'broadcast' | 'fragments' | 'unicast' },
  waitSec = 2,
): Promise<DhcpReply[]> {
  const args = [DHCP[m.type], m.chaddr, m.requested ?? '-', m.clientId ?? '-', m.how, waitSec, src].map(String);
  const r = await g.run(PY, ['-c', DHCP_PY, ...args], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as DhcpReply);
}

/** DHCP client-identifier for a MAC as udhcpc sends it: type 1 (Ethernet) + the MAC. */
const clientIdOf = (mac: string): string => `01${mac.replaceAll(':', '')}`;

export interface DhcpTheftSetup {
  readonly hv: Ns;
  readonly attacker: Guest;
  readonly attackerSpec: GuestSpec;
  readonly victim: Guest;
  readonly victimSpec: GuestSpec;
  /** Where metad's counters live: `inet metad` (routed) or `bridge metad` (bridged). */
  readonly family: 'inet' | 'bridge';
  readonly script: string;
  /** metad's log so far (its stdout and stderr). */
  readonly log: () => string;
}

/** metad's log lines with this msg (JSON lines). */
function logged(log: string, msg: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes(`"msg":${JSON.stringify(msg)}`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * issue 13 item 1: a guest sends DHCP messages from its own tap and MAC carrying another guest's
 * MAC as `chaddr` (DECLINE of the victim's address, DISCOVER, REQUEST; broadcast, in two IPv4
 * fragments, unicast as a renewing client). Each is dropped before dnsmasq (counted), the attacker
 * is offered nothing, and the victim gets its own lease at once afterwards. A foreign client-id
 * with the attacker's own chaddr gets the attacker nothing but its own address (dnsmasq ignores
 * client-ids: dhcp-ignore-clid). metad's log shows the messages that reached dnsmasq (item 2).
 */
export async function dhcpTheftMatrix(t: TestContext, s: DhcpTheftSetup): Promise<void> {
  const v = s.victimSpec;
  const cases: { what: string; msg: Parameters<typeof sendDhcp>[2]; counter: 'spoofed' | 'refused' }[] = [
    { what: 'DECLINE of its address', msg: { type: 'decline', chaddr: v.mac, requested: v.ipv4, how: 'broadcast' }, counter: 'spoofed' },
    {
      what: 'DECLINE of its address in two IPv4 fragments',
      msg: { type: 'decline', chaddr: v.mac, requested: v.ipv4, how: 'fragments' },
      counter: 'refused',
    },
    { what: 'DISCOVER', msg: { type: 'discover', chaddr: v.mac, how: 'broadcast' }, counter: 'spoofed' },
    { what: 'REQUEST of its address', msg: { type: 'request', chaddr: v.mac, requested: v.ipv4, how: 'broadcast' }, counter: 'spoofed' },
    {
      what: 'unicast REQUEST renewing its address',
      msg: { type: 'request', chaddr: v.mac, requested: v.ipv4, how: 'unicast' },
      counter: 'spoofed',
    },
  ];
  for (const c of cases) {
    await t.test(
      `${s.attackerSpec.name} sends a ${c.what} with ${v.name}'s chaddr: dropped before dnsmasq, ${v.name} keeps its lease`,
      async () => {
        const before = await counter(s.hv, s.family, 'metad', c.counter);
        const replies = await sendDhcp(s.attacker, s.attackerSpec.ipv4, c.msg);
        assert.deepEqual(replies, [], "dnsmasq answered a message carrying another guest's chaddr");
        assert.ok((await counter(s.hv, s.family, 'metad', c.counter)) > before, `the message was not counted as dropped (${c.counter})`);
        assert.equal(await dhcp(s.victim, s.script), v.ipv4, `${v.name} lost its lease`);
      },
    );
  }
  await t.test(`${s.attackerSpec.name} with its own chaddr and ${v.name}'s client-id is offered its own address only`, async () => {
    const clientId = clientIdOf(v.mac);
    const offers = await sendDhcp(s.attacker, s.attackerSpec.ipv4, {
      type: 'discover',
      chaddr: s.attackerSpec.mac,
      clientId,
      how: 'broadcast',
    });
    assert.deepEqual(offers, [{ type: DHCP.offer, yiaddr: s.attackerSpec.ipv4 }]);
    const acks = await sendDhcp(s.attacker, s.attackerSpec.ipv4, {
      type: 'request',
      chaddr: s.attackerSpec.mac,
      requested: v.ipv4,
      clientId,
      how: 'broadcast',
    });
    assert.ok(
      acks.every((r) => r.type !== DHCP.ack && r.yiaddr !== v.ipv4),
      JSON.stringify(acks),
    );
    await sendDhcp(
      s.attacker,
      s.attackerSpec.ipv4,
      { type: 'decline', chaddr: s.attackerSpec.mac, requested: v.ipv4, clientId, how: 'broadcast' },
      0.5,
    );
    assert.equal(await dhcp(s.victim, s.script), v.ipv4, `${v.name} lost its lease`);
    assert.equal(await dhcp(s.attacker, s.script), s.attackerSpec.ipv4);
  });
  await t.test("metad's log shows what reached dnsmasq, with fields, and none of the dropped messages", async () => {
    const refused = await until('the DECLINE in the log', () => {
      const r = logged(s.log(), 'dhcp request refused');
      return r.some((l) => l['type'] === 'DECLINE' && l['mac'] === s.attackerSpec.mac && l['ipv4'] === v.ipv4) ? r : undefined;
    });
    assert.ok(
      logged(s.log(), 'dhcp message').some(
        (l) => l['type'] === 'ACK' && l['mac'] === v.mac && l['ipv4'] === v.ipv4 && typeof l['iface'] === 'string',
      ),
      `no ACK for ${v.name} in metad's log`,
    );
    assert.ok(!refused.some((l) => l['mac'] === v.mac), `a message with ${v.name}'s chaddr reached dnsmasq: ${JSON.stringify(refused)}`);
  });
}

/**
 * DHCPDISCOVER from eth0 (its own MAC, broadcast flag) every 0.2 s until SIGTERM; each waits up to
 * 3 s for an OFFER (udhcpc's default wait). On SIGTERM: `{"tries": N, "lost": [seconds since start…]}`.
 */
const DISCOVER_LOOP_PY = `
import json, random, signal, socket, struct, sys, time
own = open("/sys/class/net/eth0/address").read().strip()
mac = bytes.fromhex(own.replace(":", ""))
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800)); rx.bind(("eth0", 0))
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); tx.bind(("eth0", 0))
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
t0, tries, lost, stop = time.time(), 0, [], False
def done(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, done)
while not stop:
    xid = random.getrandbits(32)
    bootp = struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + bytes(16) + mac + bytes(10) + bytes(192)
    bootp += b"\\x63\\x82\\x53\\x63\\x35\\x01\\x01\\xff"; bootp += bytes(300 - len(bootp))
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\\xff" * 4)
    tx.send(b"\\xff" * 6 + mac + b"\\x08\\x00" + h[:10] + struct.pack("!H", csum(h)) + h[12:] + udp)
    tries += 1
    sent, end, got = time.time(), time.time() + 3, False
    while not got:
        left = end - time.time()
        if left <= 0: break
        rx.settimeout(left)
        try: f = rx.recv(4096)
        except (socket.timeout, InterruptedError): continue
        ip = f[14:]
        if len(ip) < 20 or ip[9] != 17: continue
        b = ip[(ip[0] & 15) * 4 + 8:]
        got = len(b) > 240 and b[0] == 2 and struct.unpack("!I", b[4:8])[0] == xid
    if not got: lost.append(round(sent - t0, 1))
    time.sleep(0.2)
print(json.dumps({"tries": tries, "lost": lost}), flush=True)
`;

/** A guest doing DHCP in a loop; stop() ends it and returns how many DISCOVERs got no OFFER. */
export function discoverLoop(g: Ns): { stop(): Promise<{ tries: number; lost: number[] }> } {
  const child = g.spawn(PY, ['-c', DISCOVER_LOOP_PY], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    async stop() {
      child.kill('SIGTERM');
      await exited;
      assert.ok(out.trim() !== '', `the DHCP loop printed nothing: ${err}`);
      return JSON.parse(out) as { tries: number; lost: number[] };
    },
  };
}
