/**
 * Builds the comm network the config asks for: settings from the config (pure), and the real
 * Linux network with its DHCP server. daemon/daemon.ts calls `createCommNetwork` only when
 * `network.mode` is not off and no network was injected (tests inject a fake).
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Config } from '../config/config.js';
import { EC2_METADATA_IPV6, ipv4InCidr, METADATA_IPV4, METADATA_IPV6, parseCidr } from '../net.js';
import { DnsmasqSupervisor, type LineSampler } from './dnsmasq.js';
import { LinuxCommNetwork, type DhcpServer } from './linux.js';
import { BridgedCommNetwork } from './bridged.js';
import type { CommNetwork } from './network.js';
import { buildDhcpHosts, ROUTE_PROTO, type CommNic, type CommSettings } from './plan.js';
import { writeFileDurable } from '../registry/persist.js';
import { mkdir } from 'node:fs/promises';

function commSettings(cfg: Readonly<Config>): CommSettings {
  // The most specific comm range holding the metadata address: the taps' prefix and the DHCP range
  // (check-config refuses a routed config without one).
  const cidr =
    cfg.guest.commRange
      .filter((c) => ipv4InCidr(METADATA_IPV4, parseCidr(c)))
      .sort((a, b) => Number(b.split('/')[1]) - Number(a.split('/')[1]))[0] ?? '169.254.0.0/16';
  const range = parseCidr(cidr);
  const bits = Number(cidr.split('/')[1]);
  const base = [24, 16, 8, 0].map((sh) => (range.base >>> sh) & 255).join('.');
  const door = cfg.guest.listen.find((l) => l.host === METADATA_IPV4)?.port ?? 80;
  return {
    table: cfg.network.table,
    anchor: cfg.network.anchor,
    metadataIpv4: METADATA_IPV4,
    metadataIpv6: METADATA_IPV6,
    ...(cfg.network.ec2Ipv6 && cfg.network.mode === 'routed' ? { ec2Ipv6: EC2_METADATA_IPV6 } : {}),
    rangeBase: base,
    prefixLen: bits,
    tcpPorts: [door, ...cfg.network.openTcpPorts],
    hopLimit: cfg.network.hopLimit,
    routeProto: ROUTE_PROTO,
    ...(cfg.network.mode === 'bridged' ? { bridge: { name: cfg.network.bridge, mac: cfg.network.bridgeMac.toLowerCase() } } : {}),
  };
}

/** An operator's DHCP server: metad only keeps the hosts file current for it. */
class ExternalDhcp implements DhcpServer {
  private macs = new Set<string>();
  constructor(private readonly dir: string) {}
  async update(nics: readonly CommNic[]): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o755 });
    await writeFileDurable(this.dir, 'dhcp-hosts', buildDhcpHosts(nics), 0o644);
    this.macs = new Set(nics.map((n) => n.mac));
  }
  served(): ReadonlySet<string> {
    return this.macs;
  }
  async stop(): Promise<void> {
    // not ours to stop
  }
}

/** `dhcpLog` samples dnsmasq's log lines (the composition root passes the guest door's LogSampler). */
export function createCommNetwork(cfg: Readonly<Config>, log: Logger, clock: Clock, dhcpLog?: LineSampler): CommNetwork {
  const settings = commSettings(cfg);
  const n = cfg.network;
  const dhcp: DhcpServer =
    n.dhcp.mode === 'managed'
      ? new DnsmasqSupervisor({
          path: n.dhcp.dnsmasqPath,
          dir: n.runDir,
          settings,
          leaseTimeSec: n.dhcp.leaseTimeSec,
          log,
          clock,
          ...(n.dhcp.user === undefined ? {} : { user: n.dhcp.user }),
          ...(dhcpLog === undefined ? {} : { sampler: dhcpLog }),
        })
      : new ExternalDhcp(n.runDir);
  const opts = { settings, ipPath: n.ipPath, nftPath: n.nftPath, dhcp, log, clock };
  return n.mode === 'bridged' ? new BridgedCommNetwork(opts) : new LinuxCommNetwork(opts);
}
