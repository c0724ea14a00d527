/**
 * A CommNetwork that touches nothing: it records every call and keeps the last reconciled NICs,
 * so unit tests can check that registry changes reach the network. `links` says which taps
 * "exist" (each with an ifindex: `recreate` gives a tap a new one, as deleting and creating it
 * again does); `failNext` makes the next reconcile reject; `gate`, when set, holds every
 * reconcile until it resolves (a scripted slow network).
 */
import type { CommNetwork, LiveTap, NicStatus, ReconcileReport, TapCheck } from '../../daemon/comm/network.js';
import type { CommNic } from '../../daemon/comm/plan.js';

export class FakeCommNetwork implements CommNetwork {
  readonly calls: string[] = [];
  readonly links = new Set<string>();
  /** NICs as of the last reconcile. */
  nics: readonly CommNic[] = [];
  reconciles = 0;
  started = false;
  stopped = false;
  failNext: Error | undefined;
  /** Set: every reconcile waits for it (then records its NICs). */
  gate: Promise<void> | undefined;
  private readonly indexes = new Map<string, number>();
  private nextIndex = 1;
  /** Set: status reports each existing tap as an isolated port of this bridge (bridged mode). */
  bridge: string | undefined;
  /** Existing devices that are no guest's (checkTap refuses them with this reason). */
  readonly hostDevices = new Map<string, string>();
  /** Taps held closed as of the last reconcile (the controller's `held`). */
  held: readonly string[] = [];
  /** What watchLinks was given (a test calls it to stand for a device change). */
  onLinkChange: ((gone?: LiveTap) => void) | undefined;

  start(): Promise<void> {
    this.calls.push('start');
    this.started = true;
    return Promise.resolve();
  }

  /** The ifindex of an existing tap (assigned the first time it is seen). */
  private indexOf(tap: string): number {
    let i = this.indexes.get(tap);
    if (i === undefined) this.indexes.set(tap, (i = this.nextIndex++));
    return i;
  }

  /** The tap is deleted and created again under its name: another link, another ifindex. */
  recreate(tap: string): void {
    this.links.add(tap);
    this.indexes.set(tap, this.nextIndex++);
  }

  /**
   * The tap's device is deleted (a VM stopped): with `announce`, the link watcher reports it as
   * the real one does for a tap the last reconcile set up (onLinkChange with the device that went).
   */
  vanish(tap: string, announce = true): void {
    const ifindex = this.indexes.get(tap);
    this.links.delete(tap);
    this.indexes.delete(tap);
    if (announce && ifindex !== undefined && this.nics.some((n) => n.tap === tap)) this.onLinkChange?.({ tap, ifindex });
  }

  async reconcile(nics: readonly CommNic[], held: readonly string[] = []): Promise<ReconcileReport> {
    this.calls.push(`reconcile ${nics.map((n) => `${n.instance}@${n.tap}`).join(',')}`);
    this.held = [...held];
    this.reconciles++;
    if (this.gate) await this.gate;
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = undefined;
      throw e;
    }
    this.nics = [...nics];
    const missingTaps = nics.filter((n) => !this.links.has(n.tap)).map((n) => n.tap);
    const liveTaps = [...new Set(nics.filter((n) => this.links.has(n.tap)).map((n) => n.tap))].map((tap) => ({
      tap,
      ifindex: this.indexOf(tap),
    }));
    const placed = liveTaps.map((l) => (this.bridge === undefined ? l : { ...l, bridge: this.bridge }));
    return {
      nics: nics.length,
      missingTaps,
      liveTaps,
      placed,
      seen: liveTaps,
      routesAdded: 0,
      routesDeleted: 0,
      tapsReleased: 0,
      held: [...held],
      ms: 0,
    };
  }

  status(nics: readonly CommNic[]): Promise<NicStatus[]> {
    const applied = new Set(this.nics.map((n) => `${n.tap} ${n.ipv4} ${n.mac}`));
    return Promise.resolve(
      nics.map((n) => {
        const exists = this.links.has(n.tap);
        const ok = applied.has(`${n.tap} ${n.ipv4} ${n.mac}`);
        const port = this.bridge === undefined ? {} : { bridge: exists ? this.bridge : '', isolated: exists };
        return { ...n, tapExists: exists, tapUp: exists, addresses: exists && ok, route: exists && ok, rules: ok, dhcp: ok, ...port };
      }),
    );
  }

  linkExists(name: string): Promise<boolean> {
    return Promise.resolve(this.links.has(name));
  }

  checkTap(name: string): Promise<TapCheck> {
    const reason = this.hostDevices.get(name);
    if (reason !== undefined) return Promise.resolve({ ok: false, missing: false, reason });
    return Promise.resolve(
      this.links.has(name) ? { ok: true, ifindex: this.indexOf(name) } : { ok: false, missing: true, reason: 'no such network device' },
    );
  }

  watchLinks(onChange: (gone?: LiveTap) => void): void {
    this.onLinkChange = onChange;
  }

  createTap(name: string): Promise<void> {
    this.calls.push(`createTap ${name}`);
    if (this.links.has(name)) return Promise.reject(new Error(`FakeCommNetwork: ${name} exists`));
    this.links.add(name);
    return Promise.resolve();
  }

  linksWithPrefix(prefix: string): Promise<string[]> {
    return Promise.resolve([...this.links].filter((l) => l.startsWith(prefix)));
  }

  deleteTap(name: string): Promise<void> {
    this.calls.push(`deleteTap ${name}`);
    this.links.delete(name);
    this.indexes.delete(name);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.calls.push('stop');
    this.stopped = true;
    return Promise.resolve();
  }
}
