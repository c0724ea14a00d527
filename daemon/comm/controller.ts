/**
 * The comm network as a domain service: turns the registry into CommNics, reconciles the host
 * on start, on every store change and on `nic up|down`, one reconcile at a time: requests that
 * arrive while one runs share a single next run (at most one in flight and one pending, whatever
 * the number of callers), so N concurrent `nic up`s cost about one reconcile. An idempotent
 * `nic up` of a tap the last reconcile left in place on the same link costs none. `attach`/`detach`
 * record the tap in the instance document, so the registry stays the single source of truth
 * across restarts.
 *
 * A tap is a name, and names are reused (Ganeti names its comm taps `gnt.com.N`, the lowest free
 * N): `nic up` of a tap another instance has recorded moves it (the other instance loses it), and
 * a recorded tap whose device goes (the VM stopped: nothing calls `nic down`) stops serving its
 * instance; a device that appears under that name later serves nobody until a `nic up` names it.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { InstanceStore } from '../registry/store.js';
import { inputOf } from '../registry/model.js';
import { DaemonError, notFound } from '../errors.js';
import { EV } from '../log/events.js';
import { guestTapNameProblem, tapNameProblem } from '../net.js';
import { commNics, type CommNic } from './plan.js';
import type { CommNetwork, LiveTap, NicStatus, PlacedTap, ReconcileReport } from './network.js';

/** How a reconcile ended (event 'reconcileEnded'; health and metrics): its duration, or why it failed. */
export type ReconcileEnd = { ok: true; ms: number } | { ok: false; error: string };

/**
 * Events: 'reconciled' (liveTaps: LiveTap[]) after each successful reconcile; 'reconcileEnded'
 * (ReconcileEnd) after each; 'nic' (instance, tap, up: boolean) after a `nic up` of the
 * instance's tap succeeded, or its tap went down (`nic down`, its device deleted, or the name
 * taken by another instance's `nic up`). The Ganeti secret windows listen (daemon/daemon.ts).
 */
export class CommController extends EventEmitter {
  /** Taps holding the metadata addresses as of the last reconcile. */
  liveTaps: readonly LiveTap[] = [];
  /** Install appliances' comm NICs by instance: each stands in for its instance's registered NIC. */
  private readonly jobNics = new Map<string, CommNic>();
  /** Taps the last successful reconcile left in place, by name (empty after a failed one). */
  private placed = new Map<string, PlacedTap>();
  /** Per instance, the reconcile its latest store change asked for (it covers that change). */
  private readonly covering = new Map<string, Promise<ReconcileReport>>();
  private running: Promise<ReconcileReport> | undefined;
  private again: Promise<ReconcileReport> | undefined;
  /**
   * The device (ifindex) each recorded tap serves its instance on, and the reconcile run during
   * which that was learnt (`nic up`, or the first reconcile that found the tap): only runs started
   * later judge it (an earlier one's view of the host may predate it).
   */
  private readonly devices = new Map<string, { ifindex: number; run: number }>();
  /** Recorded taps whose device went, with the instance that had them: left out until a `nic up` names the tap. */
  private readonly gone = new Map<string, string>();
  /** Reconcile runs started so far. */
  private runs = 0;
  /**
   * A device change the link watcher says needs a reconcile (no instance of the registry changed);
   * `gone`: the device a recorded tap served on was deleted, so its instance is left out at once.
   */
  private readonly onLinkChange = (gone?: LiveTap): void => {
    if (gone && this.devices.get(gone.tap)?.ifindex === gone.ifindex) this.markGone(gone.tap, gone.ifindex);
    this.reconcile().catch((err: unknown) => this.log.error({ err }, EV.commFailed));
  };
  private readonly onChange = (name: string): void => {
    // A gone tap the instance no longer records (changed, moved, removed) is forgotten.
    for (const [tap, holder] of this.gone) if (holder === name && this.store.get(name)?.doc.comm.tap !== tap) this.gone.delete(tap);
    const run = this.reconcile();
    // Kept after it settles (a settled promise costs nothing to await), dropped with the instance.
    if (this.store.get(name)) this.covering.set(name, run);
    else this.covering.delete(name);
    run.catch((err: unknown) => this.log.error({ err }, EV.commFailed));
  };

  constructor(
    private readonly store: InstanceStore,
    readonly net: CommNetwork,
    private readonly log: Logger,
  ) {
    super();
  }

  /** Reconciles run since the start, by result (the metrics read it). */
  readonly reconciles = { ok: 0, failed: 0 };

  async start(): Promise<ReconcileReport> {
    await this.net.start();
    // Watching first: a port joining the bridge during the first reconcile is not missed.
    this.net.watchLinks(this.onLinkChange);
    const r = await this.reconcile();
    this.store.on('changed', this.onChange);
    this.store.on('removed', this.onChange);
    return r;
  }

  /** Reconcile now; if one runs, one more run follows it and every caller waits for that one. */
  reconcile(): Promise<ReconcileReport> {
    if (!this.running) {
      const run = ++this.runs;
      this.running = this.net
        .reconcile(this.nics(), this.held())
        .then(
          (r) => {
            this.reconciles.ok++;
            this.liveTaps = r.liveTaps;
            this.placed = new Map(r.placed.map((p) => [p.tap, p]));
            // A recorded tap found on another device (the link watcher missed the deletion): left out from the next run on.
            if (this.noteDevices(r, run)) this.reconcile().catch((err: unknown) => this.log.error({ err }, EV.commFailed));
            this.emit('reconciled', r.liveTaps);
            this.emit('reconcileEnded', { ok: true, ms: r.ms } satisfies ReconcileEnd);
            return r;
          },
          (err: unknown) => {
            this.reconciles.failed++;
            this.placed = new Map(); // the host may be half-changed: nothing counts as in place
            this.emit('reconcileEnded', { ok: false, error: err instanceof Error ? err.message : String(err) } satisfies ReconcileEnd);
            throw err;
          },
        )
        .finally(() => {
          this.running = undefined;
        });
      return this.running;
    }
    this.again ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.again = undefined;
        return this.reconcile();
      });
    return this.again;
  }

  /**
   * Compare the devices recorded taps serve on with what run `run` found: a tap whose device is
   * missing or another one is gone (true when any is); a tap found for the first time is learnt.
   */
  private noteDevices(r: ReconcileReport, run: number): boolean {
    const seen = new Map(r.seen.map((l) => [l.tap, l.ifindex]));
    const missing = new Set(r.missingTaps);
    let went = false;
    for (const [tap, d] of this.devices) {
      if (d.run >= run) continue;
      const now = seen.get(tap);
      if (now === d.ifindex) continue;
      if (now === undefined && !missing.has(tap))
        this.devices.delete(tap); // no longer recorded (nic down, moved, removed)
      else went = this.markGone(tap, d.ifindex) || went;
    }
    for (const [tap, ifindex] of seen) if (!this.devices.has(tap)) this.devices.set(tap, { ifindex, run });
    return went;
  }

  /**
   * The device tap `tap` served its instance on (`ifindex`) went: the instance that records the
   * tap is left out of the host's NICs (no rules, addresses, route or DHCP host for it there) until
   * a `nic up` names the tap again. Its document keeps the tap (an install job holds it by name).
   */
  private markGone(tap: string, ifindex: number): boolean {
    this.devices.delete(tap);
    const holder = this.store.byTap(tap)?.doc.name;
    if (holder === undefined || this.jobNics.has(holder) || this.gone.get(tap) === holder) return false;
    this.gone.set(tap, holder);
    this.log.info({ instance: holder, tap, ifindex }, EV.commTapGone);
    this.emit('nic', holder, tap, false); // as a `nic down`: e.g. a Ganeti secret window ends (stuck)
    return true;
  }

  /**
   * Wait until the host reflects the instance's latest store change: the run that change asked
   * for (started by it, or the pending one it joined; already settled, maybe).
   * (Waiting for another reconcile as well cost every `nic up` of a new tap two in a row.)
   */
  private async reconcileAfterChange(instance: string): Promise<void> {
    await (this.covering.get(instance) ?? this.reconcile());
  }

  /**
   * What the host should hold: the registry's NICs, except that an instance with an install
   * appliance running has the appliance's NIC (its tap, the instance's IPv4 and MAC) instead of
   * its registered one (the registered tap stays in the document untouched), and an instance
   * whose tap's device went has none.
   */
  private nics(): CommNic[] {
    const out = commNics(this.store.list()).filter((n) => !this.jobNics.has(n.instance) && this.gone.get(n.tap) !== n.instance);
    for (const n of this.jobNics.values()) if (this.store.get(n.instance)) out.push(n);
    return out.sort((a, b) => (a.tap < b.tap ? -1 : a.tap > b.tap ? 1 : 0));
  }

  /** The registered taps of instances whose install job runs: held closed (dropped whole) meanwhile. */
  private held(): string[] {
    const out: string[] = [];
    for (const instance of this.jobNics.keys()) {
      const tap = this.store.get(instance)?.doc.comm.tap;
      if (tap !== undefined) out.push(tap);
    }
    return out;
  }

  /**
   * An install appliance's tap (created by `createTap`) carries the instance's comm identity
   * until `releaseJobTap`: addresses, /32 route, rules and DHCP come from the same reconcile.
   */
  async useJobTap(instance: string, tap: string): Promise<ReconcileReport> {
    const doc = this.store.mustGet(instance).doc;
    // The registered tap is held by name while the job runs and serves by name after it (the
    // instance's VM may come up meanwhile, and its nic up is refused until the job ends).
    if (doc.comm.tap !== undefined) {
      if (this.gone.get(doc.comm.tap) === instance) this.gone.delete(doc.comm.tap);
      this.devices.delete(doc.comm.tap);
    }
    this.jobNics.set(instance, { instance, tap, ipv4: doc.comm.ipv4, mac: doc.comm.mac.toLowerCase() });
    return this.reconcile();
  }

  /** The appliance's NIC is forgotten (if it is still this tap) and its rules dropped. */
  async releaseJobTap(instance: string, tap: string): Promise<ReconcileReport> {
    if (this.jobNics.get(instance)?.tap === tap) this.jobNics.delete(instance);
    return this.reconcile();
  }

  /**
   * `nic up`: the tap must exist and be a guest's device (docs/deployment.md, "Which devices can be
   * taps"); not while the instance's install job runs; never an appliance's tap. Record it on the
   * instance (taken from another instance that recorded it: the name was reused), bound to the
   * device it is now, then reconcile. Idempotent: when the instance already has this tap and the last
   * reconcile left it in place on this very link (same ifindex: a tap deleted and created again is
   * another link), with nothing changed or pending since, the answer needs no reconcile.
   */
  async attach(instance: string, tap: string): Promise<NicStatus> {
    const status = await this.attachTap(instance, tap);
    this.emit('nic', instance, tap, true);
    return status;
  }

  private async attachTap(instance: string, tap: string): Promise<NicStatus> {
    if ([...this.jobNics.values()].some((n) => n.tap === tap)) {
      throw new DaemonError('Conflict', "the tap is an install appliance's: it belongs to its job only", [
        { path: '/tap', message: "an install appliance's tap" },
      ]);
    }
    const problem = guestTapNameProblem(tap);
    if (problem) throw new DaemonError('InvalidInput', 'invalid tap name', [{ path: '/tap', message: problem }]);
    this.store.mustGet(instance);
    if (this.jobNics.has(instance)) {
      throw new DaemonError(
        'Conflict',
        "the instance's install job runs: its own tap stays closed until the job ends (stop the VM, or wait for the job)",
        [{ path: '/tap', message: 'install job running' }],
      );
    }
    const check = await this.net.checkTap(tap); // one query: a guest's device, and on which link
    if (!check.ok && check.missing) {
      throw new DaemonError(
        'Conflict',
        'the tap does not exist on this host: create it first (the ifup hook runs nic up after the tap exists)',
        [{ path: '/tap', message: 'no such network device' }],
      );
    }
    if (!check.ok) {
      throw new DaemonError('Conflict', `the device cannot be a guest's tap: it ${check.reason}`, [
        { path: '/tap', message: check.reason },
      ]);
    }
    const holder = this.store.byTap(tap)?.doc.name;
    if (holder !== undefined && holder !== instance) {
      await this.forgetTap(holder, tap); // its install job running refuses this (409), changing nothing
      this.log.info({ tap, from: holder, to: instance }, EV.commTapMoved);
      this.emit('nic', holder, tap, false); // the instance that had it lost it, as by a `nic down`
    }
    this.gone.delete(tap);
    this.devices.set(tap, { ifindex: check.ifindex, run: this.runs });
    if (this.store.mustGet(instance).doc.comm.tap !== tap) {
      await this.store.update(instance, (prev) => {
        const input = inputOf(prev);
        input.comm = { ...input.comm, tap };
        return input;
      });
      await this.reconcileAfterChange(instance); // the store's change already asked for it
    } else {
      // Nothing runs or is pending: the host is as the last reconcile left it.
      const inPlace = this.running || this.again ? undefined : this.placedStatus(instance, tap, check.ifindex);
      if (inPlace) return inPlace;
      await this.reconcile();
    }
    // The reconcile just waited for placed it (the usual case): no need to read 10,000 NICs back.
    return this.placedStatus(instance, tap, check.ifindex) ?? this.statusOf(instance);
  }

  /**
   * The status of an instance's tap the last reconcile left in place on link `ifindex`, as that
   * reconcile established it; undefined when the instance's NIC is not this tap (or an install
   * appliance's stands in for it), or the last reconcile did not place it on that link.
   */
  private placedStatus(instance: string, tap: string, ifindex: number): NicStatus | undefined {
    if (this.jobNics.has(instance)) return undefined;
    const p = this.placed.get(tap);
    const [nic] = commNics([this.store.mustGet(instance)]);
    if (p?.ifindex !== ifindex || nic?.tap !== tap) return undefined;
    const port = p.bridge === undefined ? {} : { bridge: p.bridge, isolated: true };
    return { ...nic, tapExists: true, tapUp: true, addresses: true, route: true, rules: true, dhcp: true, ...port };
  }

  /** `nic down`: forget the instance's tap (only if it is this one), then reconcile. Idempotent. */
  async detach(instance: string, tap: string): Promise<void> {
    const problem = tapNameProblem(tap);
    if (problem) throw new DaemonError('InvalidInput', 'invalid tap name', [{ path: '/tap', message: problem }]);
    if (this.store.mustGet(instance).doc.comm.tap === tap) {
      await this.forgetTap(instance, tap);
      await this.reconcileAfterChange(instance);
      this.emit('nic', instance, tap, false);
    } else await this.reconcile();
  }

  /** The instance no longer records `tap` (if it still does). */
  private async forgetTap(instance: string, tap: string): Promise<void> {
    await this.store.update(instance, (prev) => {
      const input = inputOf(prev);
      if (input.comm.tap !== tap) return input;
      const comm = { ...input.comm };
      delete comm.tap;
      input.comm = comm;
      return input;
    });
  }

  /**
   * Every registered instance's comm NIC: those with a tap as the host holds them, then those
   * without one (`nic down`, or never up) as `down`, so an instance never vanishes from the list.
   */
  async list(): Promise<NicStatus[]> {
    const up = await this.net.status(this.nics());
    const listed = new Set(up.map((n) => n.instance));
    const down: NicStatus[] = this.store
      .list()
      .filter((i) => !listed.has(i.doc.name))
      .map((i) => ({
        instance: i.doc.name,
        tap: '',
        ipv4: i.doc.comm.ipv4,
        mac: i.doc.comm.mac.toLowerCase(),
        tapExists: false,
        tapUp: false,
        addresses: false,
        route: false,
        rules: false,
        dhcp: false,
        down: true,
      }));
    return [...up, ...down];
  }

  private async statusOf(instance: string): Promise<NicStatus> {
    const nic = commNics([this.store.mustGet(instance)]);
    const [s] = await this.net.status(nic);
    if (!s) throw notFound('no such NIC');
    return s;
  }

  async stop(): Promise<void> {
    this.store.off('changed', this.onChange);
    this.store.off('removed', this.onChange);
    await this.running?.catch(() => undefined);
    await this.again?.catch(() => undefined);
    await this.net.stop();
  }
}
