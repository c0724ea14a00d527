/**
 * The real comm network (Linux): the only code that runs `ip` and `nft`; DHCP goes through a
 * DhcpServer (daemon/comm/dnsmasq.ts). It touches only what metad owns: its nftables table
 * (replaced whole, atomically), routes tagged `proto ROUTE_PROTO`, the metadata addresses on
 * taps of registered NICs (and on taps it set up before), and the anchor device.
 */
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { CommError, type CommNetwork, type LiveTap, type NicStatus, type ReconcileReport, type TapCheck } from './network.js';
import {
  anchorAddresses,
  buildLinkPlan,
  buildRuleset,
  diffRoutes,
  ownedAddresses,
  tapAddresses,
  type AddressSpec,
  type CommNic,
  type CommSettings,
  type RouteSpec,
} from './plan.js';
import { boundedExec, mustExec, type Exec } from './exec.js';
import { guestDeviceProblem, type LinkFacts } from './guest-device.js';
import { LinkWatch, type LinkEvent } from './link-watch.js';
import { EV } from '../log/events.js';
import type { DhcpStatus } from './dnsmasq.js';
import { parseCounters, parseTables, type CounterValues, type NftStats } from './nft-stats.js';

/** DHCP as the network sees it: managed dnsmasq, an operator's one, or none. */
export interface DhcpServer {
  update(nics: readonly CommNic[]): Promise<void>;
  /** MACs it serves right now (for status). */
  served(): ReadonlySet<string>;
  /** metad's own DHCP server's state (none for an operator's). */
  status?(): DhcpStatus;
  stop(): Promise<void>;
}

export interface LinuxCommOptions {
  readonly settings: CommSettings;
  readonly ipPath: string;
  readonly nftPath: string;
  readonly dhcp?: DhcpServer;
  readonly log: Logger;
  /** Runs ip and nft (default: bounded by EXEC_TIMEOUT_MS on `clock`, killed past it). */
  readonly exec?: Exec;
  readonly clock?: Clock;
}

export interface IpLink {
  ifname: string;
  ifindex?: number;
  flags?: string[];
}
export interface IpAddr extends IpLink {
  addr_info?: { family: string; local: string; prefixlen: number; noprefixroute?: boolean }[];
}
/** `ip -d addr show`: a device with its kind and master (for guestDeviceProblem). */
export type IpLinkFacts = IpAddr & LinkFacts;

/** What the last reconcile left, for deciding which device changes need another one. */
export interface WatchState {
  /** Registered taps (in metad's sets), present or not. */
  readonly registered: ReadonlySet<string>;
  /** Registered taps that exist and are set up (routed: addressed; bridged: ports), by ifindex. */
  readonly live: ReadonlyMap<string, number>;
  /** Taps held closed, by the ifindex they had. */
  readonly held: ReadonlyMap<string, number>;
}
export interface IpRoute {
  dst: string;
  dev: string;
  prefsrc?: string;
}

/** How long one read of the nftables counters serves scrapes (ms). */
const NFT_STATS_TTL_MS = 1000;

const addrKey = (dev: string, cidr: string): string => `${dev} ${cidr}`;

export class LinuxCommNetwork implements CommNetwork {
  protected readonly exec: Exec;
  /** Taps this process gave addresses to: released when they leave the registry. */
  private readonly configured = new Set<string>();
  private anchorKind: 'dummy' | 'veth' | 'existing' | undefined;
  /** Taps held closed (released by metad, or standing aside for a job), with the ifindex they had. */
  private held = new Map<string, number>();
  /** Taps in metad's sets as of the last reconcile (at start: those of the table a previous run left). */
  protected known = new Set<string>();
  /** Registered taps refused as no guest device (logged once each). */
  private refused = new Set<string>();
  protected state: WatchState = { registered: new Set(), live: new Map(), held: new Map() };
  private watch: LinkWatch | undefined;

  constructor(protected readonly o: LinuxCommOptions) {
    this.exec = o.exec ?? boundedExec(o.clock);
  }

  get anchor(): 'dummy' | 'veth' | 'existing' | undefined {
    return this.anchorKind;
  }

  protected ip(args: readonly string[], input?: string): Promise<string> {
    return mustExec(this.exec, this.o.ipPath, args, input);
  }

  protected async json<T>(args: readonly string[]): Promise<T[]> {
    const out = await this.ip(['-j', ...args]);
    return out.trim() === '' ? [] : (JSON.parse(out) as T[]);
  }

  /**
   * The anchor holds the metadata IPv4 from start so the guest door can bind before any tap
   * exists: a dummy device where the kernel has the driver, else a veth pair whose both ends
   * stay on the host (a dead end: nothing is on the other side).
   */
  async start(): Promise<void> {
    const name = this.o.settings.anchor;
    const links = await this.json<IpLink>(['link', 'show']);
    if (links.some((l) => l.ifname === name)) {
      this.anchorKind = 'existing';
    } else {
      const dummy = await this.exec(this.o.ipPath, ['link', 'add', name, 'type', 'dummy']);
      if (dummy.code === 0) this.anchorKind = 'dummy';
      else {
        await this.ip(['link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`]);
        this.anchorKind = 'veth';
      }
    }
    const ends = this.anchorKind === 'veth' || links.some((l) => l.ifname === `${name}p`) ? [name, `${name}p`] : [name];
    // No IPv6 link-local address on the anchor: nothing there to talk to.
    for (const dev of ends) await this.exec(this.o.ipPath, ['link', 'set', 'dev', dev, 'addrgenmode', 'none']);
    for (const dev of ends.slice().reverse()) await this.ip(['link', 'set', 'dev', dev, 'up']);
    const anchorWanted = anchorAddresses(this.o.settings);
    for (const a of anchorWanted) await this.ip(addrCommand('replace', a).split(' '));
    // fd00:ec2::254 from an earlier configuration that had it (absent: nothing to do, the error is ignored).
    for (const a of ownedAddresses(name, this.o.settings)) {
      if (!anchorWanted.some((w) => w.cidr === a.cidr)) await this.exec(this.o.ipPath, addrCommand('del', a).split(' '));
    }
    await this.dropTable('bridge'); // left by a bridged-mode run (daemon/comm/bridged.ts)
    await this.seedKnown('inet');
    this.o.log.info({ anchor: name, kind: this.anchorKind }, EV.commAnchorReady);
  }

  async reconcile(all: readonly CommNic[], jobHeld: readonly string[] = []): Promise<ReconcileReport> {
    const t0 = performance.now();
    const s = this.o.settings;
    const addrs = await this.json<IpLinkFacts>(['-d', 'addr', 'show']);
    const present = new Map(addrs.map((l) => [l.ifname, l]));
    const nics = this.guestNics(all, present);
    const live = nics.filter((n) => present.has(n.tap));
    const missingTaps = [...new Set(nics.filter((n) => !present.has(n.tap)).map((n) => n.tap))];
    const plan = buildLinkPlan(live, s);
    const have = new Set<string>();
    for (const l of addrs) for (const a of l.addr_info ?? []) have.add(addrKey(l.ifname, `${a.local}/${a.prefixlen}`));

    const current = (await this.json<IpRoute>(['-4', 'route', 'show', 'proto', String(s.routeProto)])).map((r): RouteSpec => ({
      dst: r.dst.includes('/') ? r.dst : `${r.dst}/32`,
      dev: r.dev,
      src: r.prefsrc ?? '',
    }));
    const registered = new Set(nics.map((n) => n.tap));
    const held = this.holdTaps(present, registered, jobHeld, [...this.known, ...this.configured, ...current.map((r) => r.dev)]);

    // Rules first: a tap that appears is filtered before it gets a route or an address.
    await mustExec(this.exec, this.o.nftPath, ['-f', '-'], buildRuleset(nics, s, held, await this.counters()));

    const batch: string[] = [];
    for (const tap of new Set(live.map((n) => n.tap))) {
      if (!(present.get(tap)?.flags ?? []).includes('UP')) batch.push(`link set dev ${tap} up`);
    }
    for (const a of plan.addresses) if (!have.has(addrKey(a.dev, a.cidr))) batch.push(addrCommand('replace', a));
    // Addresses of ours a live tap no longer needs (fd00:ec2::254 after network.ec2Ipv6 was turned off).
    const planned = new Set(plan.addresses.map((a) => addrKey(a.dev, a.cidr)));
    for (const tap of new Set(live.map((n) => n.tap))) {
      for (const a of ownedAddresses(tap, s)) {
        if (have.has(addrKey(tap, a.cidr)) && !planned.has(addrKey(tap, a.cidr))) batch.push(addrCommand('del', a));
      }
    }

    const { add, del } = diffRoutes(current, plan.routes);
    for (const r of del) batch.push(`route del ${r.dst} dev ${r.dev} proto ${s.routeProto}`);
    for (const r of add) batch.push(`route replace ${r.dst} dev ${r.dev} proto ${s.routeProto} scope link src ${r.src}`);

    // Taps that carried our routes or addresses and are no longer registered: release them.
    const wanted = new Set(live.map((n) => n.tap));
    const formerly = new Set([...this.configured, ...current.map((r) => r.dev)]);
    let tapsReleased = 0;
    for (const tap of formerly) {
      if (wanted.has(tap) || tap === s.anchor || !present.has(tap)) continue;
      for (const a of ownedAddresses(tap, s)) if (have.has(addrKey(tap, a.cidr))) batch.push(addrCommand('del', a));
      tapsReleased++;
    }
    const applied = batch.length === 0 || (await this.ipBatch(batch));
    this.configured.clear();
    for (const t of wanted) this.configured.add(t);
    this.known = registered;
    this.state = { registered, live: new Map([...wanted].map((t) => [t, present.get(t)?.ifindex ?? 0])), held: this.held };

    await this.o.dhcp?.update(nics);
    const liveTaps = [...wanted].map((tap) => ({ tap, ifindex: present.get(tap)?.ifindex ?? 0 }));
    const report: ReconcileReport = {
      nics: nics.length,
      missingTaps,
      liveTaps,
      placed: applied ? liveTaps : [],
      seen: liveTaps,
      routesAdded: add.length,
      routesDeleted: del.length,
      tapsReleased,
      held,
      ms: Math.round(performance.now() - t0),
    };
    this.o.log.info(
      {
        nics: report.nics,
        missingTaps: missingTaps.length,
        routesAdded: add.length,
        routesDeleted: del.length,
        tapsReleased,
        held: held.length,
        ms: report.ms,
      },
      EV.commReconciled,
    );
    return report;
  }

  /**
   * The registered NICs whose tap may be a guest's: a registered tap that exists and is the host's
   * own device (loopback, an uplink, a bridge: daemon/comm/guest-device.ts) is left alone, never
   * filtered, addressed or enslaved (logged once).
   */
  protected guestNics(nics: readonly CommNic[], present: ReadonlyMap<string, IpLinkFacts>): CommNic[] {
    const out: CommNic[] = [];
    const refused = new Set<string>();
    for (const n of nics) {
      const l = present.get(n.tap);
      const problem = l ? guestDeviceProblem(l, this.o.settings) : undefined;
      if (problem === undefined) {
        out.push(n);
        continue;
      }
      refused.add(n.tap);
      if (!this.refused.has(n.tap)) this.o.log.warn({ instance: n.instance, reason: problem }, EV.commTapRefused);
    }
    this.refused = refused;
    return out;
  }

  /**
   * Taps to hold closed (dropped whole): `jobHeld` (by name, whether it exists or not), and `candidates` (taps metad had in its sets,
   * addressed or routed) that are no longer registered, plus those held before; each only while
   * it exists as the same device (same ifindex) and is a guest's device.
   */
  protected holdTaps(
    present: ReadonlyMap<string, IpLinkFacts>,
    registered: ReadonlySet<string>,
    jobHeld: readonly string[],
    candidates: Iterable<string>,
  ): string[] {
    const s = this.o.settings;
    const next = new Map<string, number>();
    const consider = (tap: string, sameDevice: boolean, evenMissing = false): void => {
      if (registered.has(tap) || next.has(tap) || tap === s.anchor || tap === s.bridge?.name) return;
      const l = present.get(tap);
      if (!l) {
        if (evenMissing) next.set(tap, 0);
        return;
      }
      if (guestDeviceProblem(l, s) !== undefined) return;
      const was = this.held.get(tap);
      if (sameDevice && was !== undefined && was !== (l.ifindex ?? 0)) return;
      next.set(tap, l.ifindex ?? 0);
    };
    // A job-held tap is held by name even before it exists: the instance's VM may come up mid-install.
    for (const t of jobHeld) consider(t, false, true);
    for (const t of candidates) consider(t, false);
    for (const t of this.held.keys()) consider(t, true);
    this.held = next;
    return [...next.keys()].sort();
  }

  /**
   * The named counters of our tables as the kernel holds them now, to declare again in the
   * replacing transaction (daemon/comm/nft-stats.ts). Empty when there is no table yet, or when
   * the read fails: the counts then start again, the reconcile goes on.
   */
  protected async counters(): Promise<CounterValues> {
    const r = await this.exec(this.o.nftPath, ['-j', 'list', 'counters']).catch(() => undefined);
    if (r?.code !== 0) return new Map();
    try {
      return parseCounters(r.stdout, this.o.settings.table);
    } catch {
      return new Map();
    }
  }

  /** The families of the tables whose counters, sets and rules metrics report. */
  protected statsFamilies(): readonly string[] {
    return ['inet'];
  }

  private statsRead: { at: number; stats: Promise<NftStats | undefined> } | undefined;

  /**
   * Counters, set sizes and rule counts read from nftables (`nft -j list table`, one run per
   * family, bounded like every run), for metrics. A read serves every caller for a second on the
   * injected clock, so a burst of scrapes starts one `nft`; undefined when the read failed.
   */
  nftStats(): Promise<NftStats | undefined> {
    const now = (this.o.clock ?? systemClock).mono();
    if (this.statsRead && now - this.statsRead.at < NFT_STATS_TTL_MS) return this.statsRead.stats;
    const stats = (async (): Promise<NftStats | undefined> => {
      const outs: string[] = [];
      for (const family of this.statsFamilies()) {
        const r = await this.exec(this.o.nftPath, ['-j', 'list', 'table', family, this.o.settings.table]);
        if (r.code !== 0) return undefined;
        outs.push(r.stdout);
      }
      return parseTables(outs, this.o.settings.table);
    })().catch(() => undefined);
    this.statsRead = { at: now, stats };
    return stats;
  }

  /** Taps of the sets a previous run left in the kernel (held ones included): candidates to hold after a restart. */
  protected async seedKnown(family: 'inet' | 'bridge'): Promise<void> {
    for (const [fam, set] of [
      [family, 'taps'],
      ['inet', 'held'],
    ] as const) {
      for (const t of await this.setNames(fam, set)) this.known.add(t);
    }
  }

  /** Elements of one of our ifname sets (empty when the table or set is absent). */
  private async setNames(family: 'inet' | 'bridge', set: string): Promise<string[]> {
    const r = await this.exec(this.o.nftPath, ['-j', 'list', 'set', family, this.o.settings.table, set]);
    if (r.code !== 0 || r.stdout.trim() === '') return [];
    const doc = JSON.parse(r.stdout) as { nftables?: { set?: { elem?: unknown[] } }[] };
    return (doc.nftables ?? []).flatMap((i) => (i.set?.elem ?? []).filter((e): e is string => typeof e === 'string'));
  }

  async checkTap(name: string): Promise<TapCheck> {
    const r = await this.exec(this.o.ipPath, ['-d', '-j', 'addr', 'show', 'dev', name]);
    const [l] = r.code === 0 && r.stdout.trim() !== '' ? (JSON.parse(r.stdout) as IpLinkFacts[]) : [];
    if (!l) return { ok: false, missing: true, reason: 'no such network device' };
    const problem = guestDeviceProblem(l, this.o.settings);
    return problem === undefined ? { ok: true, ifindex: l.ifindex ?? 0 } : { ok: false, missing: false, reason: problem };
  }

  watchLinks(onChange: (gone?: LiveTap) => void): void {
    this.watch ??= new LinkWatch({
      ipPath: this.o.ipPath,
      log: this.o.log,
      ...(this.o.clock ? { clock: this.o.clock } : {}),
      onEvent: (e) => {
        if (!this.linkEventMatters(e)) return;
        // The device a registered tap was set up on went: the controller stops serving its instance there.
        if (e.deleted && this.state.live.get(e.ifname) === e.ifindex) onChange({ tap: e.ifname, ifindex: e.ifindex });
        else onChange();
      },
      onRestart: () => onChange(),
    });
    this.watch.start();
  }

  /**
   * Does this device change need a reconcile? A held tap went (or is another device now), a
   * registered tap appeared or changed, the device a registered tap was set up on went.
   */
  protected linkEventMatters(e: LinkEvent): boolean {
    const { registered, live, held } = this.state;
    const h = held.get(e.ifname);
    if (h !== undefined) return e.deleted || h !== e.ifindex;
    if (e.deleted) return live.get(e.ifname) === e.ifindex;
    if (!registered.has(e.ifname)) return false;
    return live.get(e.ifname) !== e.ifindex;
  }

  /** One `ip -batch` for many changes: 1,000 taps cost one process, not thousands. False: some failed. */
  protected async ipBatch(lines: readonly string[]): Promise<boolean> {
    const r = await this.exec(this.o.ipPath, ['-force', '-batch', '-'], `${lines.join('\n')}\n`);
    if (r.code !== 0) {
      // Lines that failed (a tap removed meanwhile, an address already gone) do not stop the rest;
      // the next reconcile tries again. Report the first failure's kind only.
      const first = r.stderr.trim().split('\n')[0] ?? '';
      if (/Operation not permitted/i.test(first))
        throw new CommError('ip failed: operation not permitted (needs CAP_NET_ADMIN: run as root or with the systemd unit)');
      this.o.log.warn({ failed: r.stderr.trim().split('\n').length }, EV.commPartial);
      return false;
    }
    return true;
  }

  async status(nics: readonly CommNic[]): Promise<NicStatus[]> {
    const s = this.o.settings;
    const addrs = await this.json<IpAddr>(['addr', 'show']);
    const byName = new Map(addrs.map((l) => [l.ifname, l]));
    const routes = new Set(
      (await this.json<IpRoute>(['-4', 'route', 'show', 'proto', String(s.routeProto)])).map(
        (r) => `${r.dst.includes('/') ? r.dst : `${r.dst}/32`} ${r.dev}`,
      ),
    );
    const elems = await this.setElements('nic4');
    const macs = await this.setElements('nicmac');
    const served = this.o.dhcp?.served() ?? new Set<string>();
    return nics.map((n) => {
      const link = byName.get(n.tap);
      const have = new Set((link?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
      return {
        ...n,
        tapExists: link !== undefined,
        tapUp: (link?.flags ?? []).includes('UP'),
        addresses: link !== undefined && tapAddresses(n.tap, s).every((a) => have.has(a.cidr)),
        route: routes.has(`${n.ipv4}/32 ${n.tap}`),
        rules: elems.has(`${n.tap} . ${n.ipv4}`) && macs.has(`${n.tap} . ${n.mac}`),
        dhcp: this.o.dhcp === undefined || served.has(n.mac),
      };
    });
  }

  /** Elements of one of our sets as `tap . value` strings (empty when the table is absent). */
  protected async setElements(set: string, family: 'inet' | 'bridge' = 'inet'): Promise<Set<string>> {
    const r = await this.exec(this.o.nftPath, ['-j', 'list', 'set', family, this.o.settings.table, set]);
    const out = new Set<string>();
    if (r.code !== 0) return out;
    const doc = JSON.parse(r.stdout) as { nftables?: { set?: { elem?: unknown[] } }[] };
    for (const item of doc.nftables ?? []) {
      for (const e of item.set?.elem ?? []) {
        const parts = (e as { concat?: unknown[] }).concat;
        if (Array.isArray(parts)) out.add(parts.map(String).join(' . '));
      }
    }
    return out;
  }

  /** Delete our table of this family if it exists (a no-op, and no error, when it does not). */
  protected async dropTable(family: 'inet' | 'bridge'): Promise<void> {
    const t = this.o.settings.table;
    if ((await this.exec(this.o.nftPath, ['list', 'table', family, t])).code === 0)
      await mustExec(this.exec, this.o.nftPath, ['delete', 'table', family, t]);
  }

  async linkExists(name: string): Promise<boolean> {
    const r = await this.exec(this.o.ipPath, ['link', 'show', 'dev', name]);
    return r.code === 0;
  }

  async createTap(name: string): Promise<void> {
    // No IPv6 link-local address of its own until reconcile gives it metad's: nothing to announce.
    await this.ip(['tuntap', 'add', 'dev', name, 'mode', 'tap']);
    await this.exec(this.o.ipPath, ['link', 'set', 'dev', name, 'addrgenmode', 'none']);
  }

  async linksWithPrefix(prefix: string): Promise<string[]> {
    return (await this.json<IpLink>(['link', 'show'])).map((l) => l.ifname).filter((n) => n.startsWith(prefix));
  }

  async deleteTap(name: string): Promise<void> {
    if (!(await this.linkExists(name))) return;
    const r = await this.exec(this.o.ipPath, ['link', 'del', 'dev', name]);
    if (r.code !== 0 && (await this.linkExists(name))) throw new CommError('ip link del failed for an appliance tap');
  }

  /** metad's dnsmasq (network.dhcp.mode managed); undefined with an operator's DHCP server. */
  dhcpStatus(): DhcpStatus | undefined {
    return this.o.dhcp?.status?.();
  }

  async stop(): Promise<void> {
    await this.watch?.stop();
    await this.o.dhcp?.stop();
  }
}

export function addrCommand(verb: 'replace' | 'del', a: AddressSpec): string {
  // ip infers the family from the address (batch lines take no -4/-6).
  const v6 = a.cidr.includes(':');
  const flags = verb === 'replace' ? [...(a.noprefixroute ? ['noprefixroute'] : []), ...(v6 ? ['nodad'] : [])] : [];
  return ['addr', verb, a.cidr, 'dev', a.dev, ...flags].join(' ');
}
