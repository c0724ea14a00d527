/**
 * Which host devices may be a guest's comm tap (pure, no I/O): decided from what the kernel says
 * about the device (`ip -d -j addr show`), never from its name alone. A tap is a guest's device:
 * a `tun` device in tap mode (what QEMU, Ganeti and libvirt create), or a `veth` end (a container's
 * NIC, and what the tests use for guests in namespaces). Everything else is the host's own and
 * must never be filtered, addressed, enslaved or held closed by metad: loopback, metad's anchor and
 * bridge, other bridges, bonds, VLANs, physical NICs (no link kind), tun devices in layer-3 mode,
 * devices enslaved to another master, and any device holding an address that is not metad's.
 * `nic up` refuses such a device (409 with the reason); reconcile leaves a registered tap of that
 * kind alone (docs/deployment.md, "Which devices can be taps").
 */
import { isIPv6 } from 'node:net';
import { ownedAddresses, type CommSettings } from './plan.js';

/** What `ip -d -j addr show` says about one device (the fields this module reads). */
export interface LinkFacts {
  readonly ifname: string;
  readonly ifindex?: number;
  readonly flags?: readonly string[];
  readonly link_type?: string;
  readonly master?: string;
  readonly linkinfo?: { readonly info_kind?: string; readonly info_data?: { readonly type?: string } };
  readonly addr_info?: readonly { readonly family?: string; readonly local: string; readonly prefixlen: number }[];
}

/** Link kinds that stand for a guest's NIC. */
const GUEST_KINDS: ReadonlySet<string> = new Set(['tun', 'veth']);

const KIND_NAMES: Readonly<Record<string, string>> = {
  bridge: 'a bridge',
  bond: 'a bond',
  team: 'a team device',
  vlan: 'a VLAN device',
  macvlan: 'a macvlan device',
  macvtap: 'a macvtap device',
  ipvlan: 'an ipvlan device',
  vxlan: 'a VXLAN device',
  dummy: 'a dummy device',
};

function linkLocal6(addr: string): boolean {
  return isIPv6(addr) && /^fe[89ab][0-9a-f]:/i.test(addr);
}

/**
 * Why this device cannot be a guest's tap (undefined when it can). The reason names the rule and
 * the kind of device, never the device's name or addresses.
 */
export function guestDeviceProblem(l: LinkFacts, s: CommSettings): string | undefined {
  if (l.link_type === 'loopback' || (l.flags ?? []).includes('LOOPBACK')) return 'is the loopback device';
  if (l.ifname === s.anchor || l.ifname === `${s.anchor}p`) return "is metad's anchor";
  if (s.bridge && l.ifname === s.bridge.name) return "is metad's bridge";
  const kind = l.linkinfo?.info_kind;
  if (kind === undefined) return 'is a physical NIC (or another device without a link kind), not a tap';
  if (!GUEST_KINDS.has(kind)) return `is ${KIND_NAMES[kind] ?? `a ${kind} device`}, not a tap`;
  if (kind === 'tun' && l.linkinfo?.info_data?.type !== undefined && l.linkinfo.info_data.type !== 'tap')
    return 'is a tun (layer 3) device, not a tap';
  if (l.master !== undefined && l.master !== s.bridge?.name) return 'is enslaved to another device (a bridge or bond)';
  const ours = new Set(ownedAddresses(l.ifname, s).map((a) => a.cidr));
  for (const a of l.addr_info ?? []) {
    if (ours.has(`${a.local}/${String(a.prefixlen)}`) || linkLocal6(a.local)) continue;
    return "holds a host address that is not metad's";
  }
  return undefined;
}
