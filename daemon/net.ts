/**
 * Small address helpers (pure). `net.BlockList` would do membership, but we also need the parsed
 * range for error messages and the loopback quick start, so keep a 20-line parser; plus what the
 * renderers need of a NIC's addresses (IPv4 and IPv6): prefix, netmask, subnet.
 */
import { isIPv4, isIPv6 } from 'node:net';

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => ((acc << 8) | Number(o)) >>> 0, 0);
}

/** '169.254.0.0/16' -> { base, mask }; throws on malformed input. */
export function parseCidr(cidr: string): { base: number; mask: number } {
  const [addr, bitsText] = cidr.split('/');
  const bits = Number(bitsText);
  if (!addr || !isIPv4(addr) || bitsText === undefined || !/^\d{1,2}$/.test(bitsText) || bits > 32) throw new Error(`bad CIDR ${cidr}`);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return { base: (ipv4ToInt(addr) & mask) >>> 0, mask };
}

/** @public Is `ip` inside `range` (from parseCidr)? (knip: the comm network, daemon/comm, imports it.) */
export function ipv4InCidr(ip: string, range: { base: number; mask: number }): boolean {
  return isIPv4(ip) && (ipv4ToInt(ip) & range.mask) >>> 0 === range.base;
}

/**
 * The comm ranges (`guest.commRange`, a list): membership, and the prefix length a guest's comm
 * NIC gets, that of the most specific range holding its address:
 *   ['169.254.0.0/16', '10.99.0.0/24'].prefixOf('10.99.0.7') → 24; '10.1.1.1' → undefined.
 */
export class Ipv4Ranges {
  private readonly ranges: { base: number; mask: number; bits: number }[];
  constructor(readonly cidrs: readonly string[]) {
    this.ranges = cidrs.map((c) => ({ ...parseCidr(c), bits: Number(c.split('/')[1]) }));
  }
  has(ip: string): boolean {
    return this.prefixOf(ip) !== undefined;
  }
  prefixOf(ip: string): number | undefined {
    let best: number | undefined;
    for (const r of this.ranges) if (ipv4InCidr(ip, r) && (best === undefined || r.bits > best)) best = r.bits;
    return best;
  }
  /**
   * Is `ip` the network or broadcast address of the most specific range holding it? Only for
   * prefixes up to /30 (a /31 or /32 has none, RFC 3021):
   *   ['169.254.0.0/16'].isEdge('169.254.0.0') → true; '169.254.255.255' → true; '169.254.0.1' → false.
   */
  isEdge(ip: string): boolean {
    const bits = this.prefixOf(ip);
    if (bits === undefined || bits > 30) return false;
    const host = ~(bits === 0 ? 0 : ~0 << (32 - bits)) >>> 0;
    const low = (ipv4ToInt(ip) & host) >>> 0;
    return low === 0 || low === host;
  }
  toString(): string {
    return this.cidrs.join(', ');
  }
}

/** Dotted netmask of a prefix length: 16 → '255.255.0.0', 0 → '0.0.0.0'. */
export function ipv4Netmask(bits: number): string {
  return intToIpv4(bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0);
}

/** Strip the IPv4-mapped IPv6 prefix node reports on dual-stack sockets: '::ffff:1.2.3.4' -> '1.2.3.4'. */
export function normalizeAddress(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}

/** An address with its prefix length, as a NIC carries it: '10.0.0.17/24', '2001:db8::17/64'. */
export interface AddressCidr {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** Parse 'address/prefix'; undefined when the address or the prefix (≤ 32 / ≤ 128) is bad. */
export function parseAddressCidr(text: string): AddressCidr | undefined {
  const slash = text.lastIndexOf('/');
  const address = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (slash < 0 || !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = Number(prefixText);
  if (isIPv4(address)) return prefix <= 32 ? { family: 4, address, prefix } : undefined;
  if (isIPv6(address) && !address.includes('%')) return prefix <= 128 ? { family: 6, address: canonicalIpv6(address), prefix } : undefined;
  return undefined;
}

function intToIpv4(n: number): string {
  return [24, 16, 8, 0].map((shift) => String((n >>> shift) & 0xff)).join('.');
}

/** '2001:DB8:0:0::1' → '2001:db8::1' (RFC 5952 form, as the WHATWG URL parser writes it). */
function canonicalIpv6(address: string): string {
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/** An IPv6 address as a 128-bit integer (embedded IPv4 tails included). */
function ipv6ToBigInt(address: string): bigint {
  let text = canonicalIpv6(address);
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1] !== undefined) {
    const n = ipv4ToInt(v4[1]);
    text = `${text.slice(0, -v4[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToIpv6(n: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16));
  return canonicalIpv6(groups.join(':'));
}

function ipv6Mask(bits: number): bigint {
  return bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n);
}

/**
 * The netmask of an address's prefix, dotted for IPv4 and in address form for IPv6 (as Nova
 * writes network_data.json): 10.0.0.17/24 → '255.255.255.0'; 2001:db8::17/64 → 'ffff:ffff:ffff:ffff::'.
 */
export function netmaskOf(a: AddressCidr): string {
  return a.family === 4 ? ipv4Netmask(a.prefix) : bigIntToIpv6(ipv6Mask(a.prefix));
}

/** The subnet an address lies in: 10.0.0.17/24 → '10.0.0.0/24'; 2001:db8::17/64 → '2001:db8::/64'. */
export function subnetOf(a: AddressCidr): string {
  if (a.family === 4) {
    const mask = a.prefix === 0 ? 0 : (~0 << (32 - a.prefix)) >>> 0;
    return `${intToIpv4((ipv4ToInt(a.address) & mask) >>> 0)}/${String(a.prefix)}`;
  }
  return `${bigIntToIpv6(ipv6ToBigInt(a.address) & ipv6Mask(a.prefix))}/${String(a.prefix)}`;
}

/** The metadata addresses guests ask (EC2, OpenStack and Ganeti all use the IPv4 one). */
export const METADATA_IPV4 = '169.254.169.254';
export const METADATA_IPV6 = 'fe80::a9fe:a9fe';
export const EC2_METADATA_IPV6 = 'fd00:ec2::254';

/** libvirt creates taps with these prefixes itself (and may reuse them): never ours to name. */
const RESERVED_TAP_PREFIXES = ['vnet', 'vif', 'macvtap'] as const;
/** Install appliances' taps (daemon/jobs/prepare.ts) start with this: never a guest's tap name. */
export const APPLIANCE_TAP_PREFIX = 'mdi';
const TAP_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** Why a tap name is unusable (undefined when fine). Never echoes the name. */
export function tapNameProblem(name: string): string | undefined {
  if (!TAP_RE.test(name)) return 'must be 1-15 characters of A-Z a-z 0-9 _ . -';
  if (name === '.' || name === '..') return 'must not be . or ..';
  if (RESERVED_TAP_PREFIXES.some((p) => name.startsWith(p)))
    return `must not start with ${RESERVED_TAP_PREFIXES.join(', ')} (reserved by libvirt)`;
  return undefined;
}

/** Why a guest may not have this tap name: it is an install appliance's (undefined when not). */
export function applianceTapProblem(name: string): string | undefined {
  return name.startsWith(APPLIANCE_TAP_PREFIX)
    ? `must not start with ${APPLIANCE_TAP_PREFIX} (reserved for install appliances' taps)`
    : undefined;
}

/** Why a guest's tap name (`nic up`, `comm.tap`) is unusable: tapNameProblem, and not an appliance's. */
export function guestTapNameProblem(name: string): string | undefined {
  return tapNameProblem(name) ?? applianceTapProblem(name);
}
