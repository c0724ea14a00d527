/**
 * The bridged comm network (Linux): one bridge metad owns (`network.bridge`, fixed MAC) holds
 * 169.254.169.254 from start; each registered tap that exists becomes an isolated port of it
 * that does not flood unknown unicast; the bridge-family table filters each port's MAC, ARP
 * sender and IPv4 source (daemon/comm/bridge-plan.ts). Like routed mode it touches only what
 * metad owns: its two tables, routes tagged `proto ROUTE_PROTO`, its bridge and that bridge's
 * ports (a port that is not a registered tap is released with `nomaster`, then held closed while
 * it exists: daemon/comm/hold-plan.ts).
 */
import { CommError, type NicStatus, type ReconcileReport } from './network.js';
import { LinuxCommNetwork, addrCommand, type IpAddr, type IpLink, type IpRoute } from './linux.js';
import type { LinkEvent } from './link-watch.js';
import { buildBridgedRuleset, bridgeRoutes, PORT_FLAGS } from './bridge-plan.js';
import { diffRoutes, tapAddresses, type AddressSpec, type CommNic, type RouteSpec } from './plan.js';
import { mustExec } from './exec.js';
import { EV } from '../log/events.js';

interface BrLink extends IpLink, IpAddr {
  master?: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_slave_kind?: string; info_slave_data?: { isolated?: boolean; flood?: boolean } };
}

export class BridgedCommNetwork extends LinuxCommNetwork {
  private get br(): { name: string; mac: string } {
    const b = this.o.settings.bridge;
    if (!b) throw new CommError('bridged mode needs network.bridge');
    return b;
  }

  private bridgeAddress(): AddressSpec {
    const s = this.o.settings;
    return { dev: this.br.name, cidr: `${s.metadataIpv4}/${String(s.prefixLen)}`, noprefixroute: true };
  }

  private links(): Promise<BrLink[]> {
    return this.json<BrLink>(['-d', 'addr', 'show']);
  }

  /**
   * The bridge with its fixed MAC (a bridge without one takes a port's MAC and changes it as taps
   * come and go, and guests keep a stale ARP entry for 169.254.169.254), without IPv6 addresses
   * (no IPv6 on a bridged comm network), up, holding the metadata address. Idempotent.
   */
  private async ensureBridge(links: readonly BrLink[]): Promise<boolean> {
    const { name, mac } = this.br;
    const have = links.find((l) => l.ifname === name);
    if (have && have.linkinfo?.info_kind !== 'bridge')
      throw new CommError('network.bridge names an existing device that is not a bridge: choose another name');
    const cmds: string[] = [];
    if (!have) cmds.push(`link add ${name} address ${mac} type bridge`, `link set dev ${name} addrgenmode none`);
    else if (have.address?.toLowerCase() !== mac.toLowerCase()) cmds.push(`link set dev ${name} address ${mac}`);
    if (!have || !(have.flags ?? []).includes('UP')) cmds.push(`link set dev ${name} up`);
    const a = this.bridgeAddress();
    if (!(have?.addr_info ?? []).some((i) => `${i.local}/${String(i.prefixlen)}` === a.cidr)) cmds.push(addrCommand('replace', a));
    for (const c of cmds) await this.ip(c.split(' '));
    return !have;
  }

  override async start(): Promise<void> {
    const created = await this.ensureBridge(await this.links());
    await this.seedKnown('bridge');
    this.o.log.info({ anchor: this.br.name, kind: created ? 'bridge' : 'existing' }, EV.commAnchorReady);
  }

  /** Besides routed mode's reasons: a port joined metad's bridge that metad does not know, or a port left it. */
  protected override statsFamilies(): readonly string[] {
    return ['bridge', 'inet'];
  }

  protected override linkEventMatters(e: LinkEvent): boolean {
    if (!e.deleted && e.master === this.br.name && !this.state.registered.has(e.ifname)) return true;
    if (!e.deleted && this.state.live.has(e.ifname) && e.master !== this.br.name) return true;
    return super.linkEventMatters(e);
  }

  override async reconcile(all: readonly CommNic[], jobHeld: readonly string[] = []): Promise<ReconcileReport> {
    const t0 = performance.now();
    const s = this.o.settings;
    const br = this.br.name;
    let links = await this.links();
    if (await this.ensureBridge(links)) links = await this.links();
    const present = new Map(links.map((l) => [l.ifname, l]));
    const nics = this.guestNics(all, present);
    const live = nics.filter((n) => n.tap !== br && present.has(n.tap));
    const missingTaps = [...new Set(nics.filter((n) => !present.has(n.tap)).map((n) => n.tap))];
    const ports = links.filter((l) => l.master === br).map((l) => l.ifname);
    const registered = new Set(nics.map((n) => n.tap));
    // Held whole at the host: released taps and ports (once they are no ports), job-held taps, and
    // every registered tap while it is not a port (the host sees a port's traffic on the bridge).
    const released = this.holdTaps(present, registered, jobHeld, [...this.known, ...ports]);
    const held = [...released, ...registered];

    // Rules first: a tap is filtered before it is enslaved; a port leaving is dropped until released.
    await mustExec(this.exec, this.o.nftPath, ['-f', '-'], buildBridgedRuleset(nics, ports, s, held, await this.counters()));

    const wanted = new Set(live.map((n) => n.tap));
    const batch: string[] = [];
    for (const tap of wanted) {
      const l = present.get(tap);
      if (l?.master !== br) batch.push(`link set dev ${tap} master ${br}`);
      const port = l?.master === br ? l.linkinfo?.info_slave_data : undefined;
      if (port?.isolated !== true || port.flood !== false) batch.push(`link set dev ${tap} type bridge_slave ${PORT_FLAGS.join(' ')}`);
      if (!(l?.flags ?? []).includes('UP')) batch.push(`link set dev ${tap} up`);
    }
    let tapsReleased = 0;
    for (const p of ports) {
      if (wanted.has(p)) continue;
      batch.push(`link set dev ${p} nomaster`);
      tapsReleased++;
    }

    const current = (await this.json<IpRoute>(['-4', 'route', 'show', 'proto', String(s.routeProto)])).map((r): RouteSpec => ({
      dst: r.dst.includes('/') ? r.dst : `${r.dst}/32`,
      dev: r.dev,
      src: r.prefsrc ?? '',
    }));
    const { add, del } = diffRoutes(current, bridgeRoutes(live, s));
    for (const r of del) batch.push(`route del ${r.dst} dev ${r.dev} proto ${String(s.routeProto)}`);
    for (const r of add) batch.push(`route replace ${r.dst} dev ${r.dev} proto ${String(s.routeProto)} scope link src ${r.src}`);
    // Taps that carried routed-mode routes (a switch from routed mode) lose routed mode's addresses.
    for (const tap of new Set(current.map((r) => r.dev))) {
      const l = present.get(tap);
      if (tap === br || !l) continue;
      const have = new Set((l.addr_info ?? []).map((i) => `${i.local}/${String(i.prefixlen)}`));
      for (const a of tapAddresses(tap, s)) if (have.has(a.cidr)) batch.push(addrCommand('del', a));
    }
    const applied = batch.length === 0 || (await this.ipBatch(batch));
    // Released ports leave the `ports` set too (they were dropped whole while still enslaved).
    if (tapsReleased > 0) {
      const still = ports.filter((p) => wanted.has(p));
      await mustExec(this.exec, this.o.nftPath, ['-f', '-'], buildBridgedRuleset(nics, still, s, held, await this.counters()));
    }
    this.known = registered;
    this.state = {
      registered,
      live: new Map([...wanted].map((t) => [t, present.get(t)?.ifindex ?? 0])),
      held: new Map(released.map((t) => [t, present.get(t)?.ifindex ?? 0])),
    };

    await this.o.dhcp?.update(nics);
    const report: ReconcileReport = {
      nics: nics.length,
      missingTaps,
      liveTaps: [], // no IPv6 doors on a bridge: the socket would see the bridge, not the tap
      placed: applied ? [...wanted].map((tap) => ({ tap, ifindex: present.get(tap)?.ifindex ?? 0, bridge: br })) : [],
      seen: [...wanted].map((tap) => ({ tap, ifindex: present.get(tap)?.ifindex ?? 0 })),
      routesAdded: add.length,
      routesDeleted: del.length,
      tapsReleased,
      held,
      ms: Math.round(performance.now() - t0),
    };
    const { nics: n, routesAdded, routesDeleted, ms } = report;
    this.o.log.info(
      { nics: n, missingTaps: missingTaps.length, routesAdded, routesDeleted, tapsReleased, held: released.length, ms },
      EV.commReconciled,
    );
    return report;
  }

  override async status(nics: readonly CommNic[]): Promise<NicStatus[]> {
    const s = this.o.settings;
    const br = this.br.name;
    const byName = new Map((await this.links()).map((l) => [l.ifname, l]));
    const bridgeHas = (byName.get(br)?.addr_info ?? []).some((i) => `${i.local}/${String(i.prefixlen)}` === this.bridgeAddress().cidr);
    const routes = new Set(
      (await this.json<IpRoute>(['-4', 'route', 'show', 'proto', String(s.routeProto)])).map(
        (r) => `${r.dst.includes('/') ? r.dst : `${r.dst}/32`} ${r.dev}`,
      ),
    );
    const elems = await this.setElements('nic4', 'bridge');
    const macs = await this.setElements('nicmac', 'bridge');
    const served = this.o.dhcp?.served() ?? new Set<string>();
    return nics.map((n) => {
      const link = byName.get(n.tap);
      const port = link?.master === br ? link.linkinfo?.info_slave_data : undefined;
      return {
        ...n,
        tapExists: link !== undefined,
        tapUp: (link?.flags ?? []).includes('UP'),
        addresses: bridgeHas,
        route: routes.has(`${n.ipv4}/32 ${br}`),
        rules: elems.has(`${n.tap} . ${n.ipv4}`) && macs.has(`${n.tap} . ${n.mac}`),
        dhcp: this.o.dhcp === undefined || served.has(n.mac),
        bridge: link?.master ?? '',
        isolated: port?.isolated === true && port.flood === false,
      };
    });
  }
}
