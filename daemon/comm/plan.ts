/**
 * The comm network as data (pure, no I/O): from the registry's comm NICs and the network
 * settings, build the one nftables table metad owns, the dnsmasq config and static hosts, and
 * the addresses and routes each tap needs. daemon/comm/linux.ts applies these; unit tests
 * compare them with golden files (test/fixtures/golden/comm/).
 */
import { isIPv4 } from 'node:net';
import { EC2_METADATA_IPV6 } from '../net.js';
import { heldArpTable, heldInetLines } from './hold-plan.js';
import { counterDecl, type CounterValues } from './nft-stats.js';

/** One instance's comm NIC with a known tap (instances without a tap have nothing to set up). */
export interface CommNic {
  readonly instance: string;
  readonly tap: string;
  readonly ipv4: string;
  readonly mac: string;
}

export interface CommSettings {
  /** nftables table (family inet) metad owns and replaces whole. */
  readonly table: string;
  /** Device that holds the metadata address from start, before any tap exists. */
  readonly anchor: string;
  readonly metadataIpv4: string;
  readonly metadataIpv6: string;
  /** EC2's IPv6 metadata address (fd00:ec2::254) when `network.ec2Ipv6` is on: on the anchor and
   * every tap, reached from link-local sources only (identity by tap, as for fe80::a9fe:a9fe). */
  readonly ec2Ipv6?: string;
  /** The comm range (guest.commRange): its prefix is the tap address's and the DHCP netmask. */
  readonly rangeBase: string;
  readonly prefixLen: number;
  /** TCP ports guests may reach on the metadata address (the guest door's port first). */
  readonly tcpPorts: readonly number[];
  /** TTL / hop limit 1 on metadata replies leaving the taps. */
  readonly hopLimit: boolean;
  /** Routes metad adds carry this `proto` number; only those are ever deleted. */
  readonly routeProto: number;
  /** Bridged mode (daemon/comm/bridge-plan.ts): the comm bridge metad owns, with its fixed MAC. */
  readonly bridge?: { readonly name: string; readonly mac: string };
}

/** Unassigned in iproute2's rt_protos; `ip route show proto 171` lists what metad added. */
export const ROUTE_PROTO = 171;

/** The NICs to set up: instances with a tap, sorted by tap (deterministic output). */
export function commNics(instances: Iterable<{ doc: { name: string; comm: { tap?: string; ipv4: string; mac: string } } }>): CommNic[] {
  const out: CommNic[] = [];
  for (const { doc } of instances) {
    if (doc.comm.tap === undefined) continue;
    out.push({ instance: doc.name, tap: doc.comm.tap, ipv4: doc.comm.ipv4, mac: doc.comm.mac.toLowerCase() });
  }
  return out.sort((a, b) => (a.tap < b.tap ? -1 : a.tap > b.tap ? 1 : 0));
}

function elements(items: readonly string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} };`;
}

/**
 * DHCP identity (issue 13): dnsmasq matches static hosts, leases and DECLINEs on the BOOTP
 * `chaddr`, not on the Ethernet source, so a DHCP request (UDP to port 67) must carry its tap's
 * registered MAC there too. nftables cannot compare two packet fields, so the check is a lookup
 * of `iifname . chaddr` (transport header bit 288 = UDP header 8 + BOOTP offset 28, 48 bits) in a
 * set of `tap . MAC` as 48-bit integers; before it, the hardware type and length must be Ethernet's
 * (1, 6) and the message long enough to hold a BOOTP header (so the lookup cannot fall through on
 * a short packet). IPv4 fragments are dropped before any of this: a later fragment has no UDP
 * header to look at (reassembly may happen only after these hooks), and guests send none.
 */
export const DHCP_CHADDR = '@th,288,48';

/** `iifname . chaddr` set elements: the MAC as the 48-bit integer the raw payload yields. */
export function chaddrElements(nics: readonly CommNic[]): string[] {
  return nics.map((n) => `${JSON.stringify(n.tap)} . 0x${n.mac.replaceAll(':', '')}`);
}

/** The DHCP identity rules, for a chain where `iifname . ether saddr` was already checked (prefix: `ether type ip ` in bridged mode). */
export function dhcpIdentityRules(prefix: string, fragmentCounter: string, spoofCounter: string): string[] {
  const dhcp = `${prefix}udp dport 67`;
  return [
    `${prefix}ip frag-off & 0x3fff != 0 counter name ${fragmentCounter} drop`,
    `${dhcp} udp length < 244 counter name ${spoofCounter} drop`,
    `${dhcp} @th,72,16 != 0x0106 counter name ${spoofCounter} drop`,
    `${dhcp} iifname . ${DHCP_CHADDR} != @chaddr counter name ${spoofCounter} drop`,
  ];
}

/**
 * The whole table, as one `nft -f` transaction: add (so the delete cannot fail), delete, add
 * again with its contents. Applying it twice leaves exactly one copy; nothing outside the table
 * is touched. The rule count is fixed; instances only add set elements. `counters`: the named
 * counters' values read just before (daemon/comm/nft-stats.ts), declared again so they run on.
 */
export function buildRuleset(nics: readonly CommNic[], s: CommSettings, held: readonly string[] = [], counters?: CounterValues): string {
  const taps = nics.map((n) => JSON.stringify(n.tap));
  const nic4 = nics.map((n) => `${JSON.stringify(n.tap)} . ${n.ipv4}`);
  const nicMac = nics.map((n) => `${JSON.stringify(n.tap)} . ${n.mac}`);
  const ports = [...new Set(s.tcpPorts)].sort((a, b) => a - b).map(String);
  const m4 = s.metadataIpv4;
  // IPv6 destinations of the door: fe80::a9fe:a9fe, and fd00:ec2::254 when configured.
  const m6 = s.ec2Ipv6 === undefined ? s.metadataIpv6 : `{ ${s.metadataIpv6}, ${s.ec2Ipv6} }`;
  const lines = [
    `# generated by metad: the comm network's rules (replaced whole on every change)`,
    `table inet ${s.table}`,
    `delete table inet ${s.table}`,
    `table inet ${s.table} {`,
    `  set taps { type ifname;${elements(taps)} }`,
    `  set nic4 { type ifname . ipv4_addr;${elements(nic4)} }`,
    `  set nicmac { type ifname . ether_addr;${elements(nicMac)} }`,
    `  set chaddr { typeof iifname . ${DHCP_CHADDR};${elements(chaddrElements(nics))} }`,
    `  set guest_tcp { type inet_service;${elements(ports)} }`,
    counterDecl('inet', 'spoofed', counters),
    counterDecl('inet', 'refused', counters),
    `  chain from_taps {`,
    `    type filter hook prerouting priority raw; policy accept;`,
    `    iifname != @taps accept`,
    `    iifname . ether saddr != @nicmac counter name spoofed drop`,
    ...dhcpIdentityRules('meta nfproto ipv4 ', 'refused', 'spoofed').map((r) => `    ${r}`),
    `    meta nfproto ipv4 ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept`,
    `    meta nfproto ipv4 iifname . ip saddr != @nic4 counter name spoofed drop`,
    `    meta nfproto ipv6 ip6 saddr != { ::, fe80::/10 } counter name spoofed drop`,
    `  }`,
    `  chain to_host {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname != @taps accept`,
    `    meta nfproto ipv4 ip daddr ${m4} tcp dport @guest_tcp accept`,
    `    meta nfproto ipv4 udp sport 68 udp dport 67 accept`,
    `    meta nfproto ipv6 ip6 daddr ${m6} tcp dport @guest_tcp accept`,
    `    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept`,
    `    counter name refused drop`,
    `  }`,
    `  chain forward_taps {`,
    `    type filter hook forward priority filter; policy accept;`,
    `    iifname @taps counter name refused drop`,
    `    oifname @taps counter name refused drop`,
    `  }`,
    // A guest whose tap (and /32 route) went while a connection was open: the door's FIN
    // retransmits would follow the default route off the host. Metadata traffic stays on taps.
    // Before anything else in the output path (raw is -300: conntrack and other tables come later).
    `  chain door_out {`,
    `    type filter hook output priority raw - 10; policy accept;`,
    `    meta nfproto ipv4 ip saddr ${m4} oifname != { "lo", ${JSON.stringify(s.anchor)} } oifname != @taps counter name refused drop`,
    // fd00:ec2::254 is not scoped to a link (fe80::a9fe:a9fe is): a host on another link that
    // routes it to this host would otherwise reach the door (and get 404). Its traffic stays on taps too.
    ...(s.ec2Ipv6 === undefined
      ? []
      : [
          `    meta nfproto ipv6 ip6 saddr ${s.ec2Ipv6} oifname != { "lo", ${JSON.stringify(s.anchor)} } oifname != @taps counter name refused drop`,
        ]),
    `  }`,
  ];
  if (s.hopLimit) {
    lines.push(
      `  chain replies {`,
      `    type filter hook output priority filter; policy accept;`,
      `    oifname @taps meta nfproto ipv4 ip saddr ${m4} tcp sport @guest_tcp ip ttl set 1`,
      `    oifname @taps meta nfproto ipv6 ip6 saddr ${m6} tcp sport @guest_tcp ip6 hoplimit set 1`,
      `  }`,
    );
  }
  lines.push(...heldInetLines(held, s, counters), '}', ...heldArpTable(held, s), '');
  return lines.join('\n');
}

/** dnsmasq --dhcp-hostsfile: one static `MAC,IPv4` per NIC. */
export function buildDhcpHosts(nics: readonly CommNic[]): string {
  const lines = ['# generated by metad: static comm addresses (MAC,IPv4)'];
  for (const n of nics) lines.push(`${n.mac},${n.ipv4}`);
  return `${lines.join('\n')}\n`;
}

export function prefixToNetmask(bits: number): string {
  const m = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return [24, 16, 8, 0].map((sh) => (m >>> sh) & 255).join('.');
}

/**
 * dnsmasq's config: DHCP only (port=0: no DNS), on the interfaces that hold the metadata address
 * only (the anchor and the comm taps, or the bridge), static leases from the hosts file, no router
 * and no DNS server offered, leases in memory only (a restart forgets removed NICs' leases). It
 * does not depend on the NICs: taps coming and going and hosts changing never need a new config.
 */
export function buildDnsmasqConf(s: CommSettings, hostsFile: string, leaseTimeSec: number): string {
  const lines = [
    '# generated by metad: DHCP for the comm taps only',
    'port=0',
    'bind-dynamic',
    'except-interface=lo',
    // DHCP is served on an interface that holds this address and nowhere else: routed, the anchor
    // and every tap metad has set up (a new tap is served as soon as it has the address, without a
    // restart); bridged, the bridge (its ports are not IP interfaces).
    `listen-address=${s.metadataIpv4}`,
    'no-resolv',
    'no-hosts',
    'leasefile-ro',
    'dhcp-authoritative',
    // Leases are keyed on chaddr alone (which the rules check against the tap's MAC): a client-id
    // is the guest's to choose, so it must not name, match or displace another guest's lease.
    'dhcp-ignore-clid',
    // Static leases need no "is it in use?" ping, and without this dnsmasq refuses to start
    // without CAP_NET_RAW, which the systemd unit does not grant (test/integration/comm-caps.test.ts).
    'no-ping',
    `dhcp-range=${s.rangeBase},static,${prefixToNetmask(s.prefixLen)},${leaseTimeSec}s`,
    `dhcp-hostsfile=${hostsFile}`,
    'dhcp-option=option:router',
    'dhcp-option=option:dns-server',
  ];
  return `${lines.join('\n')}\n`;
}

export interface AddressSpec {
  readonly dev: string;
  /** `a.b.c.d/len` or `fe80::…/64`. */
  readonly cidr: string;
  /** IPv4 tap addresses get no prefix route: guests are reached by their /32 routes only. */
  readonly noprefixroute: boolean;
}

export interface RouteSpec {
  readonly dst: string;
  readonly dev: string;
  readonly src: string;
}

export interface LinkPlan {
  readonly addresses: AddressSpec[];
  readonly routes: RouteSpec[];
}

/** The addresses of the metadata service a tap (or the anchor) holds. */
export function tapAddresses(tap: string, s: CommSettings): AddressSpec[] {
  return [
    { dev: tap, cidr: `${s.metadataIpv4}/${s.prefixLen}`, noprefixroute: true },
    { dev: tap, cidr: `${s.metadataIpv6}/64`, noprefixroute: false },
    // On the tap too (not only the anchor) so that a guest routing it on-link gets a neighbour answer.
    ...(s.ec2Ipv6 === undefined ? [] : [{ dev: tap, cidr: `${s.ec2Ipv6}/128`, noprefixroute: true }]),
  ];
}

/** The anchor holds what the guest door binds at start: the metadata IPv4, and fd00:ec2::254 when configured. */
export function anchorAddresses(s: CommSettings): AddressSpec[] {
  return [
    { dev: s.anchor, cidr: `${s.metadataIpv4}/32`, noprefixroute: false },
    ...(s.ec2Ipv6 === undefined ? [] : [{ dev: s.anchor, cidr: `${s.ec2Ipv6}/128`, noprefixroute: true }]),
  ];
}

/** Addresses metad may have put on a device in any configuration: released when no longer wanted. */
export function ownedAddresses(dev: string, s: CommSettings): AddressSpec[] {
  const all = { ...s, ec2Ipv6: EC2_METADATA_IPV6 };
  return dev === s.anchor ? anchorAddresses(all) : tapAddresses(dev, all);
}

/**
 * What the kernel must hold for these NICs: on every tap the metadata addresses, and a /32
 * route to each guest's IPv4 through its own tap (so a reply to a spoofed source goes to the
 * real owner, never to the spoofer).
 */
export function buildLinkPlan(nics: readonly CommNic[], s: CommSettings): LinkPlan {
  const addresses: AddressSpec[] = [];
  const routes: RouteSpec[] = [];
  for (const tap of [...new Set(nics.map((n) => n.tap))]) addresses.push(...tapAddresses(tap, s));
  for (const n of nics) {
    if (isIPv4(n.ipv4)) routes.push({ dst: `${n.ipv4}/32`, dev: n.tap, src: s.metadataIpv4 });
  }
  return { addresses, routes };
}

const routeKey = (r: RouteSpec): string => `${r.dst} ${r.dev}`;

/** Routes to delete (present, tagged ours, not wanted) and to add (wanted, missing or different). */
export function diffRoutes(current: readonly RouteSpec[], wanted: readonly RouteSpec[]): { add: RouteSpec[]; del: RouteSpec[] } {
  const want = new Map(wanted.map((r) => [routeKey(r), r]));
  const have = new Map(current.map((r) => [routeKey(r), r]));
  return {
    del: current.filter((r) => !want.has(routeKey(r))),
    add: wanted.filter((r) => have.get(routeKey(r))?.src !== r.src),
  };
}
