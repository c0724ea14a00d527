/**
 * Install jobs: at most one per instance, run by appliance/runner.ts over an injected
 * Hypervisor and Clock. The JobManager keeps the records (daemon/jobs/record.ts: scrubbed here,
 * written by its JobRecordWriter; loaded and recovered after a restart by daemon/jobs/recovery.ts), the queue
 * (maxConcurrent running, the rest `queued`, for at most maxQueueMs), the hard deadlines (absolute, set when a job leaves
 * the queue; guest traffic never moves them), the progress tap on the pipe, and the secrets gate:
 * the guest door serves an instance's secret parameters only while its job is live (pending,
 * booting, running), and every job end wipes them. Abort, instance removal and daemon stop end a
 * job the same way: the runner destroys the domain, then the cleanup (overlay, tap, secrets).
 * A job belongs to one incarnation of its instance (uuid + creation time): a removed instance's
 * job is aborted and its record forgotten, and its end never touches a newer instance of the
 * same name. While a job is queued or live the instance's identity (comm address, MAC, tap,
 * disks, OS) cannot change (`holds`, the store's guard).
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { HypervisorUnavailable, type Hypervisor } from '../../appliance/hypervisor.js';
import { isTerminal, MAX_LINES, runAppliance, type RunRecord } from '../../appliance/runner.js';
import { bounded, TimedOut, type Clock } from '../clock.js';
import { DaemonError, notFound, withoutPaths } from '../errors.js';
import { CommError } from '../comm/network.js';
import { EV } from '../log/events.js';
import type { PipeRegistry } from '../registry/pipes.js';
import type { SecretsGate } from '../services.js';
import type { PackageJobs } from './package.js';
import { failedCompanion, type Companion, type CompanionIo } from './trusted.js';
import type { SecretVault } from '../registry/vault.js';
import {
  CANNOT_START,
  CREATE_FAILED,
  isEnded,
  JobRecordWriter,
  OWN_REASONS,
  scrubRecord,
  withRun,
  type JobRecord,
  type JobRecordFiles,
} from './record.js';
import { itemsOf, LeftBehind, logLeftovers, type LeftoverItem, type LeftoverSink } from './leftovers.js';
import { DOMAIN_PREFIX } from './prepare.js';
import { loadRecords, recoverJobs, resumedOf } from './recovery.js';

/** At most this many characters of what the guest wrote to the pipe wait for the runner (the newest). */
const MAX_TAP_CHARS = 65_536;
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

export interface JobSettings {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  maxConcurrent: number;
  /** The appliance must read its secrets within this time of its start, else the job is stuck. */
  claimDeadlineMs: number;
  pollMs: number;
  /** A job still queued this long after its request ends `failed` ("queued too long"); omit: no limit. */
  maxQueueMs?: number;
}

/** What one run needs besides the hypervisor: the domain XML and what to remove afterwards. */
export interface PreparedRun {
  xml: string;
  cleanup: () => Promise<void>;
  /** The instance's disks as the run attaches them (resolved host paths), for a trusted script. */
  disks?: readonly string[];
}

export interface JobDeps {
  clock: Clock;
  log: Logger;
  files: JobRecordFiles;
  vault: SecretVault;
  pipes: PipeRegistry;
  settings: JobSettings;
  /** The hypervisor; rejects with HypervisorUnavailable (naming the packages) when it cannot be used. */
  hypervisor: () => Promise<Hypervisor>;
  /**
   * Overlay, tap, domain XML (and the OS image on the first disk) for one run of `instance` as
   * domain `domain` (`busy` as for admit); `deadlineAt`: the job's hard deadline (clock.now() ms).
   */
  prepare: (instance: string, domain: string, busy: readonly string[], deadlineAt: number) => Promise<PreparedRun>;
  /** After a restart: remove what `prepare` made for `domain` (overlay, tap), found by name. */
  release?: (instance: string, domain: string) => Promise<void>;
  /**
   * At the request: rejects (a DaemonError) when `instance` cannot be installed now. `busy`: the
   * other instances whose jobs are queued or live (their disks are taken).
   */
  admit?: (instance: string, busy: readonly string[]) => Promise<unknown>;
  /** The current incarnation of `instance` (daemon/registry/model.ts incarnationOf); undefined when it is not registered. */
  incarnation?: (instance: string) => string | undefined;
  /** Resolves once the instance's writes queued so far have landed (the identity a job checks is final). */
  quiesce?: (instance: string) => Promise<void>;
  /** After a restart, for a domain that still runs: restore what it needs (its tap's rules); the cleanup releases. */
  adopt?: (instance: string, domain: string) => Promise<PreparedRun>;
  /** Where what could not be removed is reported (and retried); without it, it is logged only. */
  leftovers?: LeftoverSink;
  /**
   * A host-side script that runs beside the appliance for the run, talking to it through the
   * pipe (daemon/jobs/trusted.ts); undefined: none for this instance.
   */
  companion?: (instance: string, io: CompanionIo, disks: readonly string[]) => Promise<Companion | undefined>;
}

interface Live {
  rec: JobRecord;
  ac: AbortController;
  abortReason?: string;
  tap: string;
  claimed: boolean;
  done?: Promise<void>;
  /** Cancels the queue-time limit once the job leaves the queue. */
  queueWait?: AbortController;
  /**
   * Every secret value the instance held while this job did (its request, its start, each
   * record change, each claim): what its record lines are redacted against, even after a
   * claim-once value was consumed or the vault wiped. Memory only; emptied when the job ends.
   */
  secrets: Set<string>;
  /** Aborted when the job ends, whichever way (what the job's fetches hang on: daemon/jobs/package.ts). */
  over: AbortController;
  /** Why a part metad serves the job failed (the package): a failed run's record says this. */
  failNote?: string;
  /** The failure ended the run at once (an abort that is recorded as failed). */
  failedNow?: boolean;
  /** The trusted script running beside the appliance. */
  companion?: Companion;
}

/** A job's live state around `rec` (a new request, or a record found after a restart). */
function liveJob(rec: JobRecord): Live {
  return { rec, ac: new AbortController(), over: new AbortController(), tap: '', claimed: rec.claimedAt !== undefined, secrets: new Set() };
}

export class JobManager extends EventEmitter implements SecretsGate, PackageJobs {
  private readonly jobs = new Map<string, Live>();
  private readonly ended = new Map<string, JobRecord>();
  private readonly queue: string[] = [];
  /** Instances whose install request is being admitted (no record yet): they are held too. */
  private readonly reserving = new Set<string>();
  private running = 0;
  private readonly records: JobRecordWriter;
  private readonly untap: () => void;
  private stopping = false;

  constructor(private readonly d: JobDeps) {
    super();
    this.records = new JobRecordWriter(d.files, d.log);
    this.untap = d.pipes.tap((instance, data) => {
      const j = this.jobs.get(instance);
      if (!j || !this.isLive(j.rec)) return;
      j.tap = (j.tap + data.toString('utf8')).slice(-MAX_TAP_CHARS);
      // The trusted script is the pipe's reader while it runs: it takes what it has room for.
      j.companion?.poke();
    });
  }

  /**
   * Loads the records of earlier jobs (status and list show them). An ended record of an
   * incarnation that is no longer registered (the instance was removed, or removed and
   * registered again) is deleted; an unfinished one stays for recover().
   */
  async init(): Promise<JobRecord[]> {
    const kept = await loadRecords(this.d.files, (r) => this.current(r));
    for (const r of kept) this.ended.set(r.instance, r);
    return kept;
  }

  /** The record is of the instance's current incarnation (records from before incarnations: by name). */
  private current(r: Pick<JobRecord, 'instance' | 'incarnation'>): boolean {
    if (!this.d.incarnation) return true;
    const now = this.d.incarnation(r.instance);
    return now !== undefined && (r.incarnation === undefined || r.incarnation === now);
  }

  private isStopping(): boolean {
    return this.stopping;
  }

  /** The instance has a queued or live job (or one being admitted): its identity must not change. */
  holds(instance: string): boolean {
    return this.jobs.has(instance) || this.reserving.has(instance);
  }

  /** The other instances that have a queued or live job (or one being admitted). */
  private busyBesides(instance: string): string[] {
    return [...new Set([...this.jobs.keys(), ...this.reserving])].filter((n) => n !== instance);
  }

  private heldSecrets(j: Live): void {
    if (!this.current(j.rec)) return;
    for (const v of Object.values(this.d.vault.liveValues(j.rec.instance, false))) j.secrets.add(v);
  }

  /** Wipes the instance's secrets if the job's incarnation is still the registered one (never a newer one's). */
  private wipeSecrets(j: Live): void {
    if (this.current(j.rec)) this.d.vault.wipe(j.rec.instance);
  }

  private isLive(r: JobRecord): boolean {
    return r.state === 'pending' || r.state === 'booting' || r.state === 'running';
  }

  /** The secrets gate: true while the instance's install job is live (not queued, not ended) and of this incarnation. */
  secretsOpen(instance: string): boolean {
    const j = this.jobs.get(instance);
    return j !== undefined && this.isLive(j.rec) && this.current(j.rec);
  }

  /** The guest door hands the appliance its secret parameters now: the claim deadline is met. */
  noteClaim(instance: string): void {
    const j = this.jobs.get(instance);
    if (!j || !this.isLive(j.rec)) return;
    this.heldSecrets(j); // before the claim-once values are consumed
    if (j.claimed) return;
    j.claimed = true;
    this.update(j, { ...j.rec, claimedAt: new Date(this.d.clock.now()).toISOString() });
  }

  /** A signal that fires when the instance's live job (this incarnation's) ends; undefined when none is live. */
  liveSignal(instance: string): AbortSignal | undefined {
    const j = this.jobs.get(instance);
    return j !== undefined && this.isLive(j.rec) && this.current(j.rec) ? j.over.signal : undefined;
  }

  /**
   * Something metad serves the live job failed (its package): the appliance is refused and
   * reports failure; the record's reason is then this (the first one told).
   */
  noteFailure(instance: string, reason: string): void {
    const j = this.jobs.get(instance);
    if (!j || !this.isLive(j.rec) || j.failNote !== undefined) return;
    j.failNote = reason;
    this.d.log.warn({ instance, domain: j.rec.domain, reason }, EV.jobPartFailed);
  }

  /** Domains of jobs that are live, or unfinished and not yet recovered: what a sweep must keep. */
  domainsInUse(): string[] {
    return [...[...this.jobs.values()].map((j) => j.rec), ...[...this.ended.values()].filter((r) => !isEnded(r))].map((r) => r.domain);
  }

  /** The job of the instance as registered now (a removed or re-registered instance's old job is not its). */
  status(instance: string): JobRecord | undefined {
    const r = this.jobs.get(instance)?.rec ?? this.ended.get(instance);
    return r !== undefined && this.current(r) ? r : undefined;
  }

  list(): JobRecord[] {
    const all = new Map([...this.ended].filter(([, r]) => this.current(r)));
    for (const [n, j] of this.jobs) if (this.current(j.rec)) all.set(n, j.rec);
    return [...all.values()].sort((a, b) => a.instance.localeCompare(b.instance));
  }

  /**
   * The instance (this incarnation of it) was removed: its job is aborted, and once the domain is
   * gone and the record written, the record is deleted. Resolves then (DELETE answers after it).
   */
  async forget(instance: string, incarnation: string | undefined): Promise<void> {
    const j = this.jobs.get(instance);
    const mine = (r: JobRecord | undefined): boolean => r !== undefined && (r.incarnation === undefined || r.incarnation === incarnation);
    if (j && mine(j.rec)) {
      j.abortReason ??= 'instance removed';
      if (!this.endQueued(j, 'aborted', 'instance removed')) j.ac.abort();
      await j.done;
    }
    await this.records.idle();
    // A newer incarnation may have started a job meanwhile: its record (same file name) stays.
    if (!this.jobs.has(instance) && mine(this.ended.get(instance))) {
      this.ended.delete(instance);
      this.records.remove(instance);
    }
    // Also when another caller (the store's 'removed' event and DELETE both call this) queued the
    // removal: resolve only once it is done.
    await this.records.idle();
  }

  /**
   * Starts (or queues) an install of `instance`. The hard deadline: the request's `timeoutSec`
   * (up to the configured maximum, else refused), else the instance document's
   * `install.timeoutSec` (`instanceTimeoutSec`: capped at the maximum, never refused: the
   * document was valid when stored and the operator's cap may have shrunk since), else the default.
   */
  async start(
    instance: string,
    opts: { timeoutSec?: number | undefined; instanceTimeoutSec?: number | undefined } = {},
  ): Promise<JobRecord> {
    if (this.stopping) throw new DaemonError('Unavailable', 'the daemon is stopping');
    const s = this.d.settings;
    const timeoutMs =
      opts.timeoutSec !== undefined
        ? opts.timeoutSec * 1000
        : opts.instanceTimeoutSec !== undefined
          ? Math.min(Math.max(1, Math.floor(opts.instanceTimeoutSec)) * 1000, Math.floor(s.maxTimeoutMs / 1000) * 1000)
          : s.defaultTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1000 || timeoutMs > s.maxTimeoutMs) {
      throw new DaemonError('InvalidInput', `timeoutSec must be an integer from 1 to ${String(Math.floor(s.maxTimeoutMs / 1000))}`);
    }
    const conflict = (): DaemonError => new DaemonError('Conflict', 'an install job for this instance is already queued or running');
    if (this.holds(instance)) throw conflict();
    // Held from here on: the store refuses identity changes, so what admit checks is what runs.
    this.reserving.add(instance);
    try {
      await this.d.quiesce?.(instance); // a patch already in flight lands before the checks
      try {
        await this.d.hypervisor(); // no binding, no libvirtd: refuse now, with the packages named
        await this.d.admit?.(instance, this.busyBesides(instance)); // no comm network, no image, the VM runs, a bad disk: refuse now
      } catch (e) {
        // Our own text (the packages to install, or the libvirt URI of the config): no user input.
        if (e instanceof HypervisorUnavailable) throw new DaemonError('Unavailable', e.message);
        throw e;
      }
      if (this.isStopping()) throw new DaemonError('Unavailable', 'the daemon is stopping'); // stop() began while we waited
      return this.enqueue(instance, timeoutMs);
    } finally {
      this.reserving.delete(instance);
    }
  }

  private enqueue(instance: string, timeoutMs: number): JobRecord {
    const now = this.d.clock.now();
    const incarnation = this.d.incarnation?.(instance);
    const rec: JobRecord = {
      v: 1,
      instance,
      ...(incarnation !== undefined ? { incarnation } : {}),
      domain: `${DOMAIN_PREFIX}${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
      state: 'queued',
      timeoutSec: Math.floor(timeoutMs / 1000),
      requestedAt: new Date(now).toISOString(),
      secretNames: Object.keys(this.d.vault.liveValues(instance, false)).sort(),
      lines: [],
    };
    const j = liveJob(rec);
    this.heldSecrets(j); // sent with the request (PUT/params) before the job exists
    this.jobs.set(instance, j);
    this.ended.delete(instance);
    this.update(j, rec);
    this.d.log.info({ instance, domain: rec.domain, timeoutSec: rec.timeoutSec }, EV.jobRequested);
    this.queue.push(instance);
    this.pump();
    this.limitQueueTime(j);
    return j.rec;
  }

  /** Ends the instance's job: a queued one at once, a live one through the runner. */
  abort(instance: string, reason = 'aborted'): JobRecord {
    const j = this.jobs.get(instance);
    if (!j) throw notFound('no install job is queued or running for this instance');
    j.abortReason = reason;
    if (!this.endQueued(j, 'aborted', reason)) j.ac.abort();
    return j.rec;
  }

  /** Ends a job that is still queued (nothing was created); false when it is not queued. */
  private endQueued(j: Live, outcome: 'aborted' | 'failed', reason: string): boolean {
    const qi = this.queue.indexOf(j.rec.instance);
    if (qi < 0 || this.jobs.get(j.rec.instance) !== j) return false;
    this.queue.splice(qi, 1);
    j.queueWait?.abort();
    const at = new Date(this.d.clock.now()).toISOString();
    this.finish(j, { ...j.rec, state: outcome, outcome, reason, endedAt: at });
    return true;
  }

  /** A queued job waits at most `maxQueueMs` from its request, then ends failed. */
  private limitQueueTime(j: Live): void {
    const ms = this.d.settings.maxQueueMs;
    if (ms === undefined || !this.queue.includes(j.rec.instance)) return;
    j.queueWait = new AbortController();
    void this.d.clock.sleep(ms, j.queueWait.signal).then(
      () => this.endQueued(j, 'failed', 'queued too long'),
      () => undefined, // left the queue in time
    );
  }

  /** Resolves when the instance's job (if any) has ended and its record is written. */
  async settled(instance?: string): Promise<void> {
    const live = instance === undefined ? [...this.jobs.values()] : [this.jobs.get(instance)].filter((j) => j !== undefined);
    await Promise.all(live.map((j) => j.done ?? Promise.resolve()));
    await this.records.idle();
  }

  /** Daemon stop: every job ends (aborted), domains destroyed, cleanup run, records written. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const name of [...this.jobs.keys()]) this.abort(name, 'daemon stopped');
    await this.settled();
    this.untap();
  }

  private pump(): void {
    while (this.running < this.d.settings.maxConcurrent && this.queue.length > 0) {
      const instance = this.queue.shift() ?? '';
      const j = this.jobs.get(instance);
      if (!j) continue;
      j.queueWait?.abort();
      this.launch(j, () => this.run(j));
    }
  }

  /** The job counts as running (maxConcurrent) until `go` settles; then the queue moves on. */
  private launch(j: Live, go: () => Promise<void>): void {
    this.running++;
    j.done = go().finally(() => {
      this.running--;
      this.pump();
    });
  }

  private async run(j: Live): Promise<void> {
    const now = this.d.clock.now();
    const deadlineAt = now + j.rec.timeoutSec * 1000;
    const claimDeadlineAt = now + this.d.settings.claimDeadlineMs;
    this.heldSecrets(j);
    this.update(j, {
      ...j.rec,
      state: 'pending',
      startedAt: new Date(now).toISOString(),
      deadlineAt: new Date(deadlineAt).toISOString(),
      claimDeadlineAt: new Date(claimDeadlineAt).toISOString(),
    });
    await this.supervise(j, { deadlineAt, claimDeadlineAt, adopt: false });
  }

  /** Runs (or, after a restart, adopts) the job's domain to its end; never rejects. */
  private async supervise(j: Live, t: { deadlineAt: number; claimDeadlineAt: number; adopt: boolean }): Promise<void> {
    const { clock, settings } = this.d;
    const instance = j.rec.instance;
    const startedAt = clock.now();
    const before = t.adopt ? j.rec.lines : [];
    let final: RunRecord | undefined;
    let destroyedAt: number | undefined;
    let ran = false;
    try {
      const hv = await this.d.hypervisor();
      const release = (): Promise<void> => this.d.release?.(instance, j.rec.domain) ?? Promise.resolve();
      const adopted = (): Promise<PreparedRun | undefined> =>
        this.d.adopt?.(instance, j.rec.domain).catch((e: unknown) => {
          this.d.log.error({ instance, domain: j.rec.domain, err: messageOf(e) }, EV.jobAdoptFailed);
          return undefined;
        }) ?? Promise.resolve(undefined);
      const prepared: PreparedRun = t.adopt
        ? ((await adopted()) ?? { xml: '', cleanup: release })
        : await this.prepareWithin(j, t.deadlineAt);
      if (!t.adopt) this.update(j, { ...j.rec, preparedAt: new Date(clock.now()).toISOString() });
      if (!t.adopt) await this.startCompanion(j, prepared.disks ?? []);
      const keep = (r: RunRecord): RunRecord => ({ ...r, lines: [...before, ...r.lines].slice(-MAX_LINES) });
      final = await runAppliance(
        {
          name: j.rec.domain,
          xml: prepared.xml,
          deadlineAt: t.deadlineAt,
          claimDeadlineAt: t.claimDeadlineAt,
          adopt: t.adopt,
          resumed: resumedOf(j.rec),
        },
        {
          hv,
          clock,
          pollMs: settings.pollMs,
          signal: j.ac.signal,
          takeProgress: () => {
            const text = j.tap;
            j.tap = '';
            return text;
          },
          claimed: () => j.claimed,
          onChange: (r) => {
            // The outcome is recorded by finish(), once the domain is destroyed and the cleanup
            // (secrets, tap, overlay) done: whoever sees an outcome sees nothing left behind.
            if (!isTerminal(r.state)) this.update(j, withRun(j.rec, keep(r)));
          },
          cleanup: async () => {
            destroyedAt = clock.now(); // the runner cleans up once the domain is gone
            this.heldSecrets(j); // the last look before they are wiped: the final record is redacted against them
            this.wipeSecrets(j); // secrets live only as long as the job
            await prepared.cleanup().catch((e: unknown) => {
              this.leftBehind(itemsOf(e, { kind: 'cleanup', name: j.rec.domain, instance, domain: j.rec.domain }), 'job', e);
              throw e;
            });
          },
        },
      );
      final = keep(final);
      final = await this.endCompanion(j, final, t.deadlineAt);
      ran = true;
      if (final.destroyError !== undefined) {
        this.leftBehind([{ kind: 'domain', name: j.rec.domain, instance, domain: j.rec.domain }], 'job', final.destroyError);
      }
    } catch (e) {
      // prepare or the hypervisor failed before the runner started (or the deadline or an abort
      // came first): nothing was created; what prepare could not undo is a leftover. Our own
      // refusals (DaemonError) say why; anything else (a tool's or libvirt's text, with host
      // paths) goes to the log only.
      this.heldSecrets(j);
      this.wipeSecrets(j);
      if (e instanceof LeftBehind) this.leftBehind(e.items, 'prepare', e);
      const endedAt = clock.now();
      // The comm network's errors are metad's words around a tool's first stderr line ("ip tuntap
      // add failed: open: ..."): kept, with anything shaped like a host path cut out.
      const reason = e instanceof DaemonError ? e.message : e instanceof CommError ? withoutPaths(e.message) : CANNOT_START;
      if (!(e instanceof DaemonError) && !(e instanceof TimedOut) && !j.ac.signal.aborted)
        this.d.log.warn({ instance, domain: j.rec.domain, err: messageOf(e) }, EV.jobStartFailed);
      final = j.ac.signal.aborted
        ? { state: 'aborted', lines: before, startedAt, endedAt, reason: 'aborted' }
        : e instanceof TimedOut
          ? { state: 'timed-out', lines: before, startedAt, endedAt, reason: 'hard deadline' }
          : { state: 'failed', lines: before, startedAt, endedAt, reason };
    }
    // (A trusted script's reason is metad's words around its exit code.)
    if (
      ran &&
      final.reason !== undefined &&
      !OWN_REASONS.has(final.reason) &&
      !/^trusted create: (exit \d+|killed by \w+)$/.test(final.reason)
    ) {
      // The runner's create-failed reason is the hypervisor's raw text: to the log, not the record.
      this.d.log.warn({ instance, domain: j.rec.domain, err: final.reason }, EV.jobCreateFailed);
      final = { ...final, reason: CREATE_FAILED };
    }
    let rec = withRun(j.rec, final);
    if (rec.state === 'aborted' && j.abortReason) rec = { ...rec, reason: j.abortReason };
    if (rec.state === 'failed' && j.failNote !== undefined) rec = { ...rec, reason: j.failNote };
    // Ended by failNow (a trusted script that failed), not by an admin's abort: failed.
    if (rec.state === 'aborted' && j.failedNow === true && j.abortReason === undefined && j.failNote !== undefined)
      rec = { ...rec, state: 'failed', outcome: 'failed', reason: j.failNote };
    j.companion?.kill(); // whatever ended the job (prepare failed after it started, a stop) ends it too
    if (destroyedAt !== undefined) rec = { ...rec, destroyedAt: new Date(destroyedAt).toISOString() };
    this.finish(j, rec);
  }

  /** Starts the instance's trusted script (if its OS definition has one) beside the run. */
  private async startCompanion(j: Live, disks: readonly string[]): Promise<void> {
    const instance = j.rec.instance;
    const pipe = (): ReturnType<PipeRegistry['get']> => this.d.pipes.get(instance);
    const c = await this.companionOf(instance, pipe, disks);
    if (c === undefined) return;
    j.companion = c;
    c.poke(); // what the guest wrote before it started
    void c.done.then((r) => {
      // A trusted script that fails ends the run at once: the untrusted side may wait for it forever.
      if (!r.ok && this.jobs.get(instance) === j && !isEnded(j.rec)) this.failNow(j, r.reason);
    });
  }

  /** The companion hook's answer; one that throws is a companion that failed (never a leak of what prepare made). */
  private async companionOf(
    instance: string,
    pipe: () => ReturnType<PipeRegistry['get']>,
    disks: readonly string[],
  ): Promise<Companion | undefined> {
    try {
      return await this.d.companion?.(
        instance,
        {
          toGuest: (b) => {
            try {
              pipe().toGuest.push(b);
              return true;
            } catch {
              return false; // full: held back until the guest reads
            }
          },
          fromGuest: () => pipe().toHost.take(),
        },
        disks,
      );
    } catch (e) {
      this.d.log.warn({ instance, err: messageOf(e) }, EV.jobStartFailed);
      return failedCompanion('trusted create: cannot be started');
    }
  }

  /**
   * After the run: a successful one waits for the trusted script's exit (at most until the hard
   * deadline) and fails when it failed; any other one kills it. Never rejects.
   */
  private async endCompanion(j: Live, final: RunRecord, deadlineAt: number): Promise<RunRecord> {
    const c = j.companion;
    if (c === undefined) return final;
    let r: Awaited<Companion['done']> | undefined;
    if (final.state === 'succeeded') {
      r = await bounded(this.d.clock, Math.max(0, deadlineAt - this.d.clock.now()), 'trusted script', c.done).catch(() => undefined);
    }
    c.kill();
    await c.done;
    if (final.state !== 'succeeded') return final;
    if (r === undefined) return { ...final, state: 'timed-out', reason: 'trusted create: still running at the hard deadline' };
    return r.ok ? final : { ...final, state: 'failed', reason: r.reason };
  }

  /** Ends the live run now and records it failed with `reason`. */
  private failNow(j: Live, reason: string): void {
    j.failNote ??= reason;
    j.failedNow = true;
    this.d.log.warn({ instance: j.rec.instance, domain: j.rec.domain, reason }, EV.jobPartFailed);
    j.ac.abort();
  }

  /**
   * `prepare`, raced against the job's hard deadline and its abort: a preparation that hangs
   * does not hold the job. One given up on is undone when it finishes (its cleanup), and what
   * that cannot remove is a leftover.
   */
  private async prepareWithin(j: Live, deadlineAt: number): Promise<PreparedRun> {
    const { instance, domain } = j.rec;
    const preparing = this.d.prepare(instance, domain, this.busyBesides(instance), deadlineAt);
    try {
      return await bounded(this.d.clock, deadlineAt - this.d.clock.now(), 'prepare', preparing, j.ac.signal);
    } catch (e) {
      const abandoned = e instanceof TimedOut || (j.ac.signal.aborted && e === j.ac.signal.reason);
      const report = (err: unknown): void =>
        this.leftBehind(itemsOf(err, { kind: 'cleanup', name: domain, instance, domain }), 'prepare', err);
      if (abandoned) {
        void preparing.then(
          (p) => p.cleanup().catch(report),
          (err: unknown) => {
            if (err instanceof LeftBehind) report(err); // else it undid what it made
          },
        );
      }
      throw e;
    }
  }

  /**
   * After a daemon restart (kill -9 included): the unfinished jobs of the records init() loaded,
   * against the domains that exist (daemon/jobs/recovery.ts: adopted, ended, orphans destroyed).
   * `deferred` when the hypervisor cannot be used yet (the caller runs it again later).
   */
  recover(): Promise<{ adopted: string[]; orphans: string[]; deferred?: true }> {
    return recoverJobs({
      clock: this.d.clock,
      log: this.d.log,
      hypervisor: () => this.d.hypervisor(),
      release: this.d.release,
      leftBehind: (items, during, err) => this.leftBehind(items, during, err),
      records: [...this.ended.values()],
      hasJob: (instance) => this.jobs.has(instance),
      end: (rec) => this.finish(liveJob(rec), rec),
      adopt: (rec, t) => {
        const j = liveJob(rec);
        this.jobs.set(rec.instance, j);
        this.ended.delete(rec.instance);
        this.launch(j, () => this.supervise(j, { ...t, adopt: true }));
      },
      liveDomains: () => new Set([...this.jobs.values()].map((j) => j.rec.domain)),
    });
  }

  /** Reports what could not be removed: to the leftover registry (logged, shown, retried), else the log. */
  private leftBehind(items: readonly LeftoverItem[], during: string, err: unknown): void {
    if (this.d.leftovers) this.d.leftovers.add(items, during, err);
    else logLeftovers(this.d.log, items, during, err);
  }

  private finish(j: Live, rec: JobRecord): void {
    j.over.abort();
    this.wipeSecrets(j);
    this.update(j, rec);
    j.secrets.clear(); // the final record is redacted: the values need not outlive the job
    if (this.jobs.get(rec.instance) === j) this.jobs.delete(rec.instance);
    this.ended.set(rec.instance, j.rec);
    this.d.log.info({ instance: rec.instance, domain: rec.domain, outcome: rec.outcome, reason: rec.reason }, EV.jobEnded);
  }

  /**
   * New record state: scrubbed, kept, written (coalesced: JobRecordWriter), and told to watchers
   * ('change', and 'ended' once it ended).
   */
  private update(j: Live, next: JobRecord): void {
    if (this.isLive(next)) this.heldSecrets(j);
    const rec = scrubRecord(next, j.secrets); // every record the manager makes or changes passes here: no secret, no control character
    j.rec = rec;
    this.records.save(rec);
    this.emit('change', rec);
    if (isEnded(rec)) this.emit('ended', rec);
  }
}
