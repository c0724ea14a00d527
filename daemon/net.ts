/**
 * Small IPv4 helpers (pure). `net.BlockList` would do membership, but we also need the parsed
 * range for error messages and the loopback quick start, so keep a 20-line parser.
 */
import { isIPv4 } from 'node:net';

export function ipv4ToInt(ip: string): number {
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

export function ipv4InCidr(ip: string, range: { base: number; mask: number }): boolean {
  return isIPv4(ip) && ((ipv4ToInt(ip) & range.mask) >>> 0) === range.base;
}

/** Strip the IPv4-mapped IPv6 prefix node reports on dual-stack sockets: '::ffff:1.2.3.4' -> '1.2.3.4'. */
export function normalizeAddress(addr: string | undefined): string {
  if (!addr) return '';
  return addr.startsWith('::ffff:') && isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}
