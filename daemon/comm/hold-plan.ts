/**
 * Taps and ports metad does not (or no longer) let through, as nftables lines (pure, no I/O).
 * Kept apart from the identity rules of daemon/comm/plan.ts and bridge-plan.ts, which splice
 * these lines into their tables; both tables are still replaced whole in one transaction.
 *
 * - `held` taps are dropped whole (IPv4, IPv6 and ARP) before anything else sees them: taps metad
 *   released (`nic down`, instance removed) that still exist, the registered tap of an instance
 *   whose install job runs (the appliance's tap stands in for it), and in bridged mode every
 *   registered tap while it is not (yet) a port of the bridge. Only guest devices are ever held
 *   (daemon/comm/guest-device.ts): never loopback, an uplink or another bridge.
 * - Bridged mode, ports metad does not know (enslaved by hand): this kernel cannot match a port's
 *   bridge (`meta ibrname` needs nft_meta_bridge), so frames from known ports are marked with
 *   PORT_MARK in the bridge table, and everything the host receives on the bridge without that
 *   mark is dropped (inet and arp tables); nothing is forwarded to a known port, and no other
 *   port may send from a registered MAC or the bridge's (so the bridge never learns them there).
 */
import type { CommNic, CommSettings } from './plan.js';
import { counterDecl, type CounterValues } from './nft-stats.js';

/** The skb mark bit that says "came in on a port metad knows" (bridged mode). */
const PORT_MARK = '0x01000000';

function elements(items: readonly string[]): string {
  return items.length === 0 ? '' : ` elements = { ${items.join(', ')} };`;
}

const q = (s: string): string => JSON.stringify(s);

/** Lines inside `table inet <table>`: the held set, its counter and its drop chain (plus unmarked bridge traffic). */
export function heldInetLines(held: readonly string[], s: CommSettings, counters?: CounterValues): string[] {
  const br = s.bridge?.name;
  return [
    `  # taps metad holds closed, and (bridged) ports metad does not know: docs/deployment.md`,
    `  set held { type ifname;${elements([...new Set(held)].sort().map(q))} }`,
    counterDecl('inet', 'held', counters),
    `  chain held_in {`,
    `    type filter hook prerouting priority raw - 20; policy accept;`,
    `    iifname @held counter name held drop`,
    ...(br === undefined ? [] : [`    iifname ${q(br)} meta mark & ${PORT_MARK} != ${PORT_MARK} counter name held drop`]),
    `  }`,
  ];
}

/** `table arp <table>`, replaced whole: ARP from held taps (and unmarked bridge ARP) never reaches the host. */
export function heldArpTable(held: readonly string[], s: CommSettings): string[] {
  const br = s.bridge?.name;
  return [
    `table arp ${s.table}`,
    `delete table arp ${s.table}`,
    `table arp ${s.table} {`,
    `  set held { type ifname;${elements([...new Set(held)].sort().map(q))} }`,
    `  chain held_in {`,
    `    type filter hook input priority filter; policy accept;`,
    `    iifname @held drop`,
    ...(br === undefined ? [] : [`    iifname ${q(br)} meta mark & ${PORT_MARK} != ${PORT_MARK} drop`]),
    `  }`,
    `}`,
  ];
}

/** Lines inside `table bridge <table>` (bridged mode): mark known ports, isolate unknown ones. */
export function unknownPortLines(nics: readonly CommNic[], s: CommSettings): string[] {
  const macs = [...new Set([...nics.map((n) => n.mac), ...(s.bridge ? [s.bridge.mac.toLowerCase()] : [])])].sort();
  return [
    `  # ports metad does not know (enslaved by hand): docs/deployment.md`,
    `  set macs { type ether_addr;${elements(macs)} }`,
    `  chain known_ports {`,
    `    type filter hook prerouting priority filter - 10; policy accept;`,
    `    iifname @taps meta mark set meta mark | ${PORT_MARK}`,
    `    iifname != @taps ether saddr @macs counter name spoofed drop`,
    `  }`,
    `  chain to_known_ports {`,
    `    type filter hook forward priority filter - 10; policy accept;`,
    `    oifname @taps counter name refused drop`,
    `  }`,
  ];
}
