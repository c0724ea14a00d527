/**
 * `metad network teardown`: remove what the comm network leaves on the host when metad stops
 * (docs/deployment.md: the anchor or bridge, the nftables tables, the routes tagged with metad's
 * protocol, so that a restart changes nothing for running guests). For an operator leaving the
 * comm network for good, and for the Debian package's removal (packaging/deb/prerm). Only what
 * metad creates goes: the anchor when it is a dummy or veth device, the bridge when it is a
 * bridge; a device of another kind under that name is the operator's and is left, with a note.
 * Whatever the configured mode (a host may have switched to `off` since). Idempotent.
 */
import type { Config } from '../config/config.js';
import { boundedExec, type Exec } from './exec.js';
import { ROUTE_PROTO } from './plan.js';

interface LinkInfo {
  ifname: string;
  linkinfo?: { info_kind?: string };
}

/** One line per thing removed or left, for the operator. */
export async function teardownCommNetwork(cfg: Readonly<Config>, exec: Exec = boundedExec()): Promise<string[]> {
  const n = cfg.network;
  const out: string[] = [];
  const ip = (args: readonly string[]): ReturnType<Exec> => exec(n.ipPath, args);
  for (const family of ['inet', 'arp', 'bridge'] as const) {
    const r = await exec(n.nftPath, ['delete', 'table', family, n.table]);
    if (r.code === 0) out.push(`removed nftables table ${family} ${n.table}`);
  }
  for (const v of ['-4', '-6'] as const) {
    const shown = await ip([v, 'route', 'show', 'proto', String(ROUTE_PROTO)]);
    const count = shown.stdout.split('\n').filter((l) => l.trim() !== '').length;
    if (count === 0) continue;
    const r = await ip([v, 'route', 'flush', 'proto', String(ROUTE_PROTO)]);
    if (r.code !== 0) throw new Error(`ip ${v} route flush proto ${String(ROUTE_PROTO)}: ${r.stderr.trim()}`);
    out.push(`removed ${String(count)} IPv${v === '-4' ? '4' : '6'} route(s) of proto ${String(ROUTE_PROTO)}`);
  }
  for (const [name, kinds] of [
    [n.anchor, ['dummy', 'veth']],
    [n.bridge, ['bridge']],
  ] as const) {
    const shown = await ip(['-j', '-d', 'link', 'show', 'dev', name]);
    if (shown.code !== 0) continue; // no such device
    const kind = (JSON.parse(shown.stdout) as LinkInfo[])[0]?.linkinfo?.info_kind ?? 'unknown';
    if (!(kinds as readonly string[]).includes(kind)) {
      out.push(`left ${name}: a ${kind} device, which metad does not create`);
      continue;
    }
    const r = await ip(['link', 'del', 'dev', name]); // a veth's peer goes with it, a bridge's ports are released
    if (r.code !== 0) throw new Error(`ip link del ${name}: ${r.stderr.trim()}`);
    out.push(`removed ${name} (${kind})`);
  }
  if (out.length === 0) out.push('nothing to remove');
  return out;
}
