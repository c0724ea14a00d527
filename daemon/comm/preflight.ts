/**
 * What `metad check-config` checks beyond the schema when the comm network is on: the tools it
 * runs exist and are executable (naming the Debian package), and the process may change the
 * network (root or CAP_NET_ADMIN). Reads the filesystem and /proc only; changes nothing.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import type { Config } from '../config/config.js';
import { packageHint } from './exec.js';

const CAP_NET_ADMIN = 12;

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Effective capabilities of this process (from /proc/self/status), or undefined off Linux. */
export function effectiveCaps(status?: string): bigint | undefined {
  let text = status;
  try {
    text ??= readFileSync('/proc/self/status', 'utf8');
  } catch {
    return undefined;
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m?.[1] === undefined ? undefined : BigInt(`0x${m[1]}`);
}

/** The kernel's bridge driver is loaded or built in, or can be loaded (a module file exists). */
function bridgeDriver(): boolean {
  return existsSync('/sys/module/bridge') || existsSync(`/lib/modules/${release()}/kernel/net/bridge`);
}

export function networkPreflight(
  cfg: Readonly<Config>,
  opts: { caps?: bigint | undefined; exists?: (p: string) => boolean; bridgeDriver?: () => boolean } = {},
): string[] {
  const n = cfg.network;
  if (n.mode === 'off') return [];
  const exists = opts.exists ?? executable;
  const out: string[] = [];
  // The package is the one that ships the tool the key is for, whatever file the key names
  // (`ipPath: /bin/ipx` must not suggest a package "ipx").
  const tools: [string, string, string][] = [
    ['/network/ipPath', n.ipPath, packageHint('ip')],
    ['/network/nftPath', n.nftPath, packageHint('nft')],
  ];
  if (n.dhcp.mode === 'managed') tools.push(['/network/dhcp/dnsmasqPath', n.dhcp.dnsmasqPath, packageHint('dnsmasq')]);
  for (const [key, path, pkg] of tools) {
    if (!exists(path)) out.push(`${key}: ${path} is not an executable file: install the Debian package ${pkg} (or set ${key})`);
  }
  if (n.mode === 'bridged' && !(opts.bridgeDriver ?? bridgeDriver)())
    out.push('/network/mode: bridged needs the kernel bridge driver (modprobe bridge), or use routed mode');
  const caps = 'caps' in opts ? opts.caps : effectiveCaps();
  if (caps !== undefined && (caps & (1n << BigInt(CAP_NET_ADMIN))) === 0n) {
    out.push(`/network/mode: ${n.mode} needs CAP_NET_ADMIN (run as root, or use the systemd unit, which grants it)`);
  }
  return out;
}
