/**
 * Bridged mode's pure builders (daemon/comm/bridge-plan.ts) against golden files, plus what a
 * golden alone does not state: the rule count does not grow with instances, both tables are
 * replaced in one transaction, only the bridge's own ports are filtered, the per-port checks come
 * before anything is accepted, IPv6 is never accepted from a port, and dnsmasq binds the bridge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildBridgedRuleset, bridgeRoutes } from '../../daemon/comm/bridge-plan.js';
import { buildDnsmasqConf, type CommNic } from '../../daemon/comm/plan.js';
import { assertGoldenDir } from '../support/render-golden.js';
import { BRIDGED_SETTINGS } from '../support/comm-settings.js';

const SETTINGS = BRIDGED_SETTINGS;

const NICS: CommNic[] = [
  { instance: 'db', tap: 'gnt.com.7', ipv4: '169.254.7.1', mac: '52:54:00:12:34:56' },
  { instance: 'web-1', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' },
  { instance: 'web-2', tap: 'mtap2', ipv4: '169.254.1.11', mac: '02:00:00:00:01:0b' },
];

function nic(i: number): CommNic {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return {
    instance: `vm-${String(i)}`,
    tap: `mt${String(i)}`,
    ipv4: `169.254.${String(i >> 8)}.${String(i & 255)}`,
    mac: `02:00:00:00:${hex(i >> 8)}:${hex(i & 255)}`,
  };
}

/** Rule lines of one family's table: inside a chain, not its type/policy line. */
function rules(ruleset: string, family: 'bridge' | 'inet'): string[] {
  const body = ruleset.split(`table ${family} metad {`)[1]?.split('\n}')[0] ?? '';
  return body
    .split('\n')
    .filter((l) => /^ {4}\S/.test(l) && !/^\s+type /.test(l))
    .map((l) => l.trim());
}

test('golden: bridged, three NICs, a port being released, hop limit on', () => {
  assertGoldenDir(
    'comm/bridged',
    new Map([
      ['ruleset.nft', buildBridgedRuleset(NICS, ['mtap1', 'old9'], SETTINGS, ['gone3', ...NICS.map((n) => n.tap)])],
      ['dnsmasq.conf', buildDnsmasqConf(SETTINGS, '/run/metad/comm/dhcp-hosts', 3600)],
      ['routes.json', `${JSON.stringify(bridgeRoutes(NICS, SETTINGS), null, 2)}\n`],
    ]),
  );
});

test('the rule count is the same for 1 and 1,000 NICs; only set elements grow', () => {
  const one = buildBridgedRuleset([nic(1)], [], SETTINGS);
  const many = buildBridgedRuleset(
    Array.from({ length: 1000 }, (_, i) => nic(i + 1)),
    [],
    SETTINGS,
  );
  for (const f of ['bridge', 'inet'] as const) assert.deepEqual(rules(many, f), rules(one, f));
  assert.equal(rules(one, 'bridge').length, 23); // 16, 4 DHCP chaddr (dhcp), 3 unknown ports and held (ports)
  assert.equal(rules(one, 'inet').length, 10);
  assert.match(many, /"mt1000" \. 169\.254\.3\.232/);
});

test('both tables are replaced whole in one transaction', () => {
  const lines = buildBridgedRuleset(NICS, [], SETTINGS)
    .split('\n')
    .filter((l) => l.startsWith('table') || l.startsWith('delete'));
  assert.deepEqual(lines, [
    'table bridge metad',
    'delete table bridge metad',
    'table bridge metad {',
    'table inet metad',
    'delete table inet metad',
    'table inet metad {',
    'table arp metad',
    'delete table arp metad',
    'table arp metad {',
  ]);
});

test('per port: frames from other bridges pass, unknown ports and spoofed MAC/ARP/IPv4 are dropped, IPv6 never accepted', () => {
  const all = rules(buildBridgedRuleset(NICS, ['old9'], SETTINGS), 'bridge');
  const r = all.slice(0, all.indexOf('iifname @ports counter name refused drop')); // from_ports
  assert.equal(
    all[r.length + 1],
    'iifname @taps meta mark set meta mark | 0x01000000',
    'between_ports: one rule, nothing bridged port to port',
  );
  assert.equal(r[0], 'iifname != @ports accept', 'ports of other bridges are not ours');
  assert.equal(r[1], 'iifname != @taps counter name refused drop', 'a port that is no registered tap is dropped whole');
  const firstAccept = r.findIndex((l) => l.endsWith(' accept') && l !== r[0]);
  const checks = r.slice(0, firstAccept).join('\n');
  assert.match(checks, /iifname \. ether saddr != @nicmac/);
  assert.match(checks, /iifname \. arp saddr ether != @nicmac/);
  assert.match(checks, /arp hlen != 6/);
  assert.match(r.join('\n'), /iifname \. arp saddr ip != @nic4 counter name spoofed drop\n.*\n(.*\n)*.*iifname \. ip saddr != @nic4/);
  // DHCP identity as in routed mode: fragments, short messages, non-Ethernet chaddr and a chaddr
  // that is not the port's MAC are dropped before DHCP from 0.0.0.0 is accepted.
  const dhcpAccept = r.findIndex((l) => l.endsWith('udp sport 68 udp dport 67 accept'));
  for (const re of [
    /^ether type ip ip frag-off & 0x3fff != 0 counter name refused drop$/,
    /^ether type ip udp dport 67 udp length < 244 counter name spoofed drop$/,
    /^ether type ip udp dport 67 @th,72,16 != 0x0106 counter name spoofed drop$/,
    /^ether type ip udp dport 67 iifname \. @th,288,48 != @chaddr counter name spoofed drop$/,
  ]) {
    const i = r.findIndex((l) => re.test(l));
    assert.ok(i > r.indexOf('iifname . ether saddr != @nicmac counter name spoofed drop') && i < dhcpAccept, String(re));
  }
  assert.equal(r.at(-1), 'counter name refused drop', 'anything not IPv4 or ARP (IPv6, VLAN tags) is dropped');
  assert.ok(!r.some((l) => /ip6|ether type ip6/.test(l)), 'no IPv6 accept rule');
  assert.match(
    buildBridgedRuleset(NICS, ['old9'], SETTINGS),
    /set ports \{ type ifname; elements = \{ "gnt\.com\.7", "mtap1", "mtap2", "old9" \}/,
  );
});

test('ports metad does not know: only known ports are marked; unmarked traffic on the bridge and held taps never reach the host', () => {
  const all = buildBridgedRuleset(NICS, [], SETTINGS, ['gone3', 'mtap1']);
  const br = rules(all, 'bridge');
  // No `meta ibrname` on this kernel: the bridge table marks frames from known ports, the host drops unmarked ones.
  assert.ok(br.includes('iifname @taps meta mark set meta mark | 0x01000000'));
  assert.ok(br.includes('iifname != @taps ether saddr @macs counter name spoofed drop'), 'no other port sends from a registered MAC');
  assert.ok(br.includes('oifname @taps counter name refused drop'), 'nothing is forwarded to a known port');
  assert.match(
    all,
    /set macs \{ type ether_addr; elements = \{ 02:00:00:00:01:0a, 02:00:00:00:01:0b, 02:00:a9:fe:a9:fe, 52:54:00:12:34:56 \}; \}/,
  );
  const inet = rules(all, 'inet');
  assert.ok(inet.includes('iifname "metadbr0" meta mark & 0x01000000 != 0x01000000 counter name held drop'));
  assert.ok(inet.includes('iifname @held counter name held drop'));
  assert.match(all, /chain held_in \{\n {4}type filter hook prerouting priority raw - 20;/);
  const arp = all.split('table arp metad {')[1] ?? '';
  assert.match(arp, /set held \{ type ifname; elements = \{ "gone3", "mtap1" \}; \}/);
  assert.match(arp, /iifname @held drop\n {4}iifname "metadbr0" meta mark & 0x01000000 != 0x01000000 drop/);
});

test('the inet table admits only the metadata port and DHCP from the bridge; hop limit optional', () => {
  const r = rules(buildBridgedRuleset(NICS, [], SETTINGS), 'inet');
  assert.deepEqual(r.slice(0, 4), [
    'iifname != "metadbr0" accept',
    'meta nfproto ipv4 ip daddr 169.254.169.254 tcp dport @guest_tcp accept',
    'meta nfproto ipv4 udp sport 68 udp dport 67 accept',
    'counter name refused drop',
  ]);
  assert.doesNotMatch(buildBridgedRuleset(NICS, [], { ...SETTINGS, hopLimit: false }), /chain replies|ttl set/);
});

test('dnsmasq serves DHCP where 169.254.169.254 is (the bridge; ports are not IP interfaces), naming no interface', () => {
  const conf = buildDnsmasqConf(SETTINGS, '/h', 3600);
  assert.deepEqual(
    conf.split('\n').filter((l) => /^(interface|listen-address)=/.test(l)),
    ['listen-address=169.254.169.254'],
  );
});

test('routes: one /32 per live guest through the bridge, from 169.254.169.254', () => {
  assert.deepEqual(bridgeRoutes([NICS[1]!], SETTINGS), [{ dst: '169.254.1.10/32', dev: 'metadbr0', src: '169.254.169.254' }]);
  const { bridge: _bridge, ...routed } = SETTINGS;
  assert.throws(() => bridgeRoutes(NICS, routed));
});

test('check-config: bridged mode is a valid mode, needs the bridge driver and CAP_NET_ADMIN; the bridge MAC must be unicast', async () => {
  const { networkPreflight } = await import('../../daemon/comm/preflight.js');
  const { buildConfig } = await import('../../daemon/config/config.js');
  const bridged = buildConfig({ network: { mode: 'bridged' } });
  assert.equal(bridged.network.bridge, 'metadbr0');
  assert.equal(bridged.network.bridgeMac, '02:00:a9:fe:a9:fe');
  assert.deepEqual(networkPreflight(bridged, { caps: 1n << 12n, exists: () => true, bridgeDriver: () => true }), []);
  const problems = networkPreflight(bridged, { caps: 0n, exists: () => true, bridgeDriver: () => false });
  assert.equal(problems.length, 2);
  assert.match(problems[0]!, /^\/network\/mode: bridged needs the kernel bridge driver/);
  assert.match(problems[1]!, /^\/network\/mode: bridged needs CAP_NET_ADMIN/);
  assert.throws(() => buildConfig({ network: { mode: 'bridged', bridgeMac: '03:00:00:00:00:01' } }), /\/network\/bridgeMac/);
  assert.throws(() => buildConfig({ network: { mode: 'bridged', bridge: 'x'.repeat(16) } }), /\/network\/bridge:/);
  assert.equal(buildConfig({ network: { mode: 'bridged', bridgeMac: '52:54:00:AB:cd:01' } }).network.bridgeMac, '52:54:00:AB:cd:01');
});
