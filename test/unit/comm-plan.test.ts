/**
 * The comm network's pure builders against golden files (the nftables table, dnsmasq's config
 * and hosts, the per-tap address/route plan), plus what a golden alone does not state: the rule
 * count does not grow with instances, tap names are validated, route diffs touch only what differs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  anchorAddresses,
  buildDhcpHosts,
  buildDnsmasqConf,
  buildLinkPlan,
  buildRuleset,
  chaddrElements,
  commNics,
  diffRoutes,
  ownedAddresses,
  prefixToNetmask,
  type CommNic,
  type CommSettings,
} from '../../daemon/comm/plan.js';
import { EC2_METADATA_IPV6, tapNameProblem } from '../../daemon/net.js';
import { assertGoldenDir } from '../support/render-golden.js';
import { ROUTED_SETTINGS } from '../support/comm-settings.js';

const SETTINGS = ROUTED_SETTINGS;

const NICS: CommNic[] = [
  { instance: 'web-1', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' },
  { instance: 'web-2', tap: 'mtap2', ipv4: '169.254.1.11', mac: '02:00:00:00:01:0b' },
  { instance: 'db', tap: 'gnt.com.7', ipv4: '169.254.7.1', mac: '52:54:00:12:34:56' },
];

function files(nics: readonly CommNic[], s: CommSettings): Map<string, string> {
  return new Map([
    ['ruleset.nft', buildRuleset(nics, s, nics.length > 0 ? ['old9'] : [])],
    ['dnsmasq.conf', buildDnsmasqConf(s, '/run/metad/comm/dhcp-hosts', 3600)],
    ['dhcp-hosts', buildDhcpHosts(nics)],
    ['links.json', `${JSON.stringify(buildLinkPlan(nics, s), null, 2)}\n`],
  ]);
}

function nic(i: number): CommNic {
  return {
    instance: `vm-${i}`,
    tap: `mt${i}`,
    ipv4: `169.254.${(i >> 8) & 255}.${i & 255}`,
    mac: `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
  };
}

/** Rule lines: inside a chain, not its type/policy line. */
function ruleLines(ruleset: string): string[] {
  const out: string[] = [];
  let inChain = false;
  for (const line of ruleset.split('\n')) {
    if (/^\s+chain /.test(line)) inChain = true;
    else if (inChain && /^\s+}/.test(line)) inChain = false;
    else if (inChain && !/^\s+type /.test(line)) out.push(line.trim());
  }
  return out;
}

test('golden: routed, three NICs, hop limit on', () => {
  assertGoldenDir('comm/routed', files(commNics(NICS.map((n) => ({ doc: { name: n.instance, comm: n } }))), SETTINGS));
});

test('golden: no NICs yet (anchor only), hop limit off, extra port', () => {
  assertGoldenDir('comm/empty', files([], { ...SETTINGS, hopLimit: false, tcpPorts: [80, 8080] }));
});

test('golden: fd00:ec2::254 configured (network.ec2Ipv6): one more rule (its traffic stays on the taps), one more address per tap and on the anchor', () => {
  const s = { ...SETTINGS, ec2Ipv6: EC2_METADATA_IPV6 };
  assertGoldenDir('comm/ec2-ipv6', files(commNics(NICS.map((n) => ({ doc: { name: n.instance, comm: n } }))), s));
  // One rule more: fd00:ec2::254's traffic leaves only through the taps (lo and the anchor for the host's own).
  assert.deepEqual(ruleLines(buildRuleset(NICS, s)).length, ruleLines(buildRuleset(NICS, SETTINGS)).length + 1);
  assert.match(buildRuleset(NICS, s), /ip6 saddr fd00:ec2::254 oifname != \{ "lo", "metad0" \} oifname != @taps counter name refused drop/);
  assert.match(buildRuleset(NICS, s), /ip6 daddr \{ fe80::a9fe:a9fe, fd00:ec2::254 \} tcp dport @guest_tcp accept/);
  assert.match(buildRuleset(NICS, s), /ip6 saddr \{ fe80::a9fe:a9fe, fd00:ec2::254 \} tcp sport @guest_tcp ip6 hoplimit set 1/);
  // Link-local sources only, whatever the destination: identity by tap.
  assert.match(buildRuleset(NICS, s), /ip6 saddr != \{ ::, fe80::\/10 \} counter name spoofed drop/);
  assert.deepEqual(
    anchorAddresses(s).map((a) => a.cidr),
    ['169.254.169.254/32', 'fd00:ec2::254/128'],
  );
  assert.doesNotMatch(buildRuleset(NICS, SETTINGS), /fd00:ec2/, 'off by default: not in the rules');
  assert.deepEqual(
    anchorAddresses(SETTINGS).map((a) => a.cidr),
    ['169.254.169.254/32'],
  );
  // What a reconcile may release: every address metad ever puts there, whatever the setting now.
  assert.deepEqual(
    ownedAddresses('mtap1', SETTINGS).map((a) => a.cidr),
    ['169.254.169.254/16', 'fe80::a9fe:a9fe/64', 'fd00:ec2::254/128'],
  );
  assert.deepEqual(
    ownedAddresses('metad0', SETTINGS).map((a) => a.cidr),
    ['169.254.169.254/32', 'fd00:ec2::254/128'],
  );
});

test('the rule count is the same for 1 and 1,000 NICs; only set elements grow', () => {
  const one = buildRuleset([nic(1)], SETTINGS);
  const many = buildRuleset(
    Array.from({ length: 1000 }, (_, i) => nic(i + 1)),
    SETTINGS,
  );
  assert.deepEqual(ruleLines(many), ruleLines(one));
  assert.equal(ruleLines(one).length, 22); // 16 identity rules, 4 DHCP chaddr, 1 held (inet) and 1 held (arp)
  assert.match(many, /"mt1000" \. 169\.254\.3\.232/);
});

test('DHCP identity: chaddr (transport bit 288, 48 bits) is looked up as tap . MAC, after the Ethernet check, before DHCP is accepted', () => {
  // The raw payload yields the MAC as a 48-bit big-endian integer: 02:00:00:00:01:0a -> 0x02000000010a.
  assert.deepEqual(chaddrElements(NICS.slice(0, 1)), ['"mtap1" . 0x02000000010a']);
  const rules = ruleLines(buildRuleset(NICS, SETTINGS));
  const at = (re: RegExp): number => rules.findIndex((r) => re.test(r));
  const chaddr = at(/udp dport 67 iifname \. @th,288,48 != @chaddr counter name spoofed drop$/);
  assert.ok(chaddr > at(/ether saddr != @nicmac/), 'chaddr checked before the Ethernet source');
  assert.ok(chaddr < at(/udp sport 68 udp dport 67 accept/), 'chaddr checked after DHCP is accepted');
  assert.ok(at(/udp length < 244 counter name spoofed drop/) < chaddr, 'a short message could fall through the lookup');
  assert.ok(at(/@th,72,16 != 0x0106 counter name spoofed drop/) < chaddr, 'hardware type/length not checked first');
  assert.ok(at(/ip frag-off & 0x3fff != 0 counter name refused drop/) < chaddr, 'fragments not dropped first');
  assert.match(buildDnsmasqConf(SETTINGS, '/h', 60), /^dhcp-ignore-clid$/m);
});

test('dnsmasq: served where 169.254.169.254 is (anchor and taps), no interface named: taps come and go without a new config', () => {
  const conf = buildDnsmasqConf(SETTINGS, '/h', 3600);
  assert.deepEqual(
    conf.split('\n').filter((l) => /^(interface|listen-address)=/.test(l)),
    ['listen-address=169.254.169.254'],
  );
  assert.match(conf, /^bind-dynamic$/m);
  assert.match(conf, /^dhcp-hostsfile=\/h$/m);
});

test('the table is replaced whole in one transaction: add, delete, define', () => {
  const lines = buildRuleset(NICS, SETTINGS)
    .split('\n')
    .filter((l) => l.startsWith('table') || l.startsWith('delete'));
  assert.deepEqual(lines, [
    'table inet metad',
    'delete table inet metad',
    'table inet metad {',
    'table arp metad',
    'delete table arp metad',
    'table arp metad {',
  ]);
});

test('held taps (released, job-held) are dropped whole before anything else: IPv4, IPv6 and ARP', () => {
  const r = buildRuleset(NICS, SETTINGS, ['old9', 'gone2']);
  assert.match(
    r,
    /set held \{ type ifname; elements = \{ "gone2", "old9" \}; \}\n {2}counter held \{ \}\n {2}chain held_in \{\n {4}type filter hook prerouting priority raw - 20; policy accept;\n {4}iifname @held counter name held drop\n {2}\}/,
  );
  const arp = r.split('table arp metad {')[1] ?? '';
  assert.match(arp, /set held \{ type ifname; elements = \{ "gone2", "old9" \}; \}/);
  assert.match(arp, /type filter hook input priority filter; policy accept;\n {4}iifname @held drop/);
  assert.doesNotMatch(r, /meta mark/, 'routed mode marks nothing');
  assert.match(buildRuleset(NICS, SETTINGS), /set held \{ type ifname; \}/);
});

test('hop limit: the replies chain exists only when enabled', () => {
  assert.match(buildRuleset(NICS, SETTINGS), /ip ttl set 1/);
  assert.match(buildRuleset(NICS, SETTINGS), /ip6 hoplimit set 1/);
  assert.doesNotMatch(buildRuleset(NICS, { ...SETTINGS, hopLimit: false }), /chain replies|ttl set/);
});

test('commNics: instances without a tap are skipped; MACs lowercased; sorted by tap', () => {
  const got = commNics([
    { doc: { name: 'b', comm: { tap: 'tb', ipv4: '169.254.0.2', mac: '02:AA:00:00:00:02' } } },
    { doc: { name: 'none', comm: { ipv4: '169.254.0.3', mac: '02:00:00:00:00:03' } } },
    { doc: { name: 'a', comm: { tap: 'ta', ipv4: '169.254.0.1', mac: '02:00:00:00:00:01' } } },
  ]);
  assert.deepEqual(
    got.map((n) => [n.instance, n.tap, n.mac]),
    [
      ['a', 'ta', '02:00:00:00:00:01'],
      ['b', 'tb', '02:aa:00:00:00:02'],
    ],
  );
});

test('tap names: at most 15 characters, no libvirt prefixes, no odd characters', () => {
  for (const ok of ['mtap1', 'gnt.com.12', 'a', 'x'.repeat(15), 'tap-web_1']) assert.equal(tapNameProblem(ok), undefined, ok);
  for (const bad of ['', 'x'.repeat(16), 'vnet0', 'vif1.0', 'macvtap3', 'tap/1', 'tap 1', '..', 'tap\n']) {
    assert.ok(tapNameProblem(bad), JSON.stringify(bad));
  }
  assert.ok(!tapNameProblem('vnet0')!.includes('vnet0 '), 'the message names the rule, not the input');
});

test('netmask from prefix length', () => {
  assert.equal(prefixToNetmask(16), '255.255.0.0');
  assert.equal(prefixToNetmask(0), '0.0.0.0');
  assert.equal(prefixToNetmask(32), '255.255.255.255');
  assert.equal(prefixToNetmask(20), '255.255.240.0');
});

test('diffRoutes: deletes only unwanted routes, adds missing or changed ones, keeps the rest', () => {
  const keep = { dst: '169.254.1.10/32', dev: 'mtap1', src: '169.254.169.254' };
  const moved = { dst: '169.254.1.11/32', dev: 'mtap2', src: '169.254.169.254' };
  const stale = { dst: '169.254.9.9/32', dev: 'old', src: '169.254.169.254' };
  const wrongSrc = { dst: '169.254.1.12/32', dev: 'mtap3', src: '169.254.0.1' };
  const fixedSrc = { ...wrongSrc, src: '169.254.169.254' };
  const d = diffRoutes([keep, stale, wrongSrc, { ...moved, dev: 'mtapX' }], [keep, moved, fixedSrc]);
  assert.deepEqual(d.del, [stale, { ...moved, dev: 'mtapX' }]);
  assert.deepEqual(d.add, [moved, fixedSrc]);
  assert.deepEqual(diffRoutes([keep], [keep]), { add: [], del: [] });
});

test('check-config preflight: names the missing tool, its Debian package, and a missing CAP_NET_ADMIN', async () => {
  const { networkPreflight, effectiveCaps } = await import('../../daemon/comm/preflight.js');
  const { buildConfig } = await import('../../daemon/config/config.js');
  const off = buildConfig({});
  assert.deepEqual(networkPreflight(off, { caps: 0n, exists: () => false }), []);
  const routed = buildConfig({ network: { mode: 'routed' } });
  assert.deepEqual(networkPreflight(routed, { caps: 1n << 12n, exists: () => true }), []);
  const problems = networkPreflight(routed, { caps: 0n, exists: (p) => !p.endsWith('/dnsmasq') });
  assert.equal(problems.length, 2);
  assert.match(problems[0]!, /^\/network\/dhcp\/dnsmasqPath: .*install the Debian package dnsmasq-base/);
  assert.match(problems[1]!, /CAP_NET_ADMIN/);
  const external = buildConfig({ network: { mode: 'routed', dhcp: { mode: 'external' } } });
  assert.deepEqual(networkPreflight(external, { caps: 1n << 12n, exists: (p) => !p.endsWith('/dnsmasq') }), []);
  assert.match(networkPreflight(routed, { caps: 1n << 12n, exists: (p) => !p.endsWith('/nft') })[0]!, /nftables/);
  const ipx = buildConfig({ network: { mode: 'routed', ipPath: '/bin/ipx' } });
  const [ipxProblem] = networkPreflight(ipx, { caps: 1n << 12n, exists: (p) => p !== '/bin/ipx' });
  assert.match(
    ipxProblem ?? '',
    /install the Debian package iproute2 \(or set \/network\/ipPath\)/,
    'the package of the tool, not of the basename',
  );
  assert.equal(effectiveCaps('Name:\tx\nCapEff:\t0000000000001000\n'), 1n << 12n);
});
