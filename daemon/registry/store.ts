/**
 * The instance store: the one place that owns registered instances. Keeps them in memory by name
 * (comm addresses in daemon/registry/comm-index.ts) and persists each one durably as its own state file,
 * instances/<name>.json (the codec, with its MAC and sealed sensitive part, is
 * daemon/registry/state-file.ts). Secret params never come here. Mutations of one instance are serialized
 * (different instances write in parallel; the comm IPv4/MAC/tap they claim are reserved
 * synchronously, so uniqueness holds); memory changes only after the write is durable.
 */
import { EventEmitter } from 'node:events';
import { mkdirs } from '../mkdirs.js';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Keyring } from './keys.js';
import { writeFileDurable, removeFileDurable, removeStaleTemps, DirSyncError } from './persist.js';
import {
  splitInput,
  type InstanceInput,
  type PublicDoc,
  type Sensitive,
  type StoredInstance,
  type ParamValues,
  type IamCredentials,
  sameIncarnation,
} from './model.js';
import { DaemonError, notFound } from '../errors.js';
import { CommIndex, type CommProblem } from './comm-index.js';
import { encodeStateFile } from './state-file.js';
import { quarantineFile, readStateFiles } from './state-dir.js';
import { Ipv4Ranges, METADATA_IPV4 } from '../net.js';
import { commIpv4Problem } from './validate.js';
import { EV } from '../log/events.js';

export interface StoreOptions {
  dir: string;
  /** The durable file primitives (tests inject faults here). */
  files?: { writeFileDurable: typeof writeFileDurable; removeFileDurable: typeof removeFileDurable };
  keyring: Keyring;
  clock: Clock;
  log: Logger;
  /** The comm ranges (`guest.commRange`): one CIDR or several. */
  commRange: string | readonly string[];
  maxDocumentBytes: number;
}

export interface PutResult {
  created: boolean;
  instance: StoredInstance;
}

/** Events: 'removed' (name), after an instance's file is gone; 'changed' (name), after a write is in effect. */
export class InstanceStore extends EventEmitter {
  private readonly byName = new Map<string, StoredInstance>();
  private readonly comm = new CommIndex();
  private readonly instancesDir: string;
  private readonly quarantineDir: string;
  private readonly ranges: Ipv4Ranges;
  private readonly files: NonNullable<StoreOptions['files']>;
  private readonly queues = new Map<string, Promise<unknown>>();
  private guard?: (prev: StoredInstance, next: PublicDoc) => void;

  constructor(private readonly o: StoreOptions) {
    super();
    this.instancesDir = join(o.dir, 'instances');
    this.quarantineDir = join(o.dir, 'quarantine');
    this.ranges = new Ipv4Ranges(typeof o.commRange === 'string' ? [o.commRange] : o.commRange);
    this.files = o.files ?? { writeFileDurable, removeFileDurable };
  }

  /** Create the state layout and load every instance; bad files are quarantined. */
  async start(): Promise<{ loaded: number; quarantined: number }> {
    await mkdirs(this.instancesDir, 0o700);
    await removeStaleTemps(this.instancesDir);
    const { good, bad } = await readStateFiles(this.instancesDir, this.o.keyring);
    // Two files claiming one comm address (or MAC, or tap): the most recently written wins.
    good.sort((a, b) => (a.inst.updatedAt < b.inst.updatedAt ? 1 : a.inst.updatedAt > b.inst.updatedAt ? -1 : 0));
    for (const { f, inst } of good) {
      const clash = this.comm.problem(inst.doc);
      if (clash) {
        bad.push({ f, reason: `${clash.path.slice(1)} ${clash.message} (a newer file holds it)` });
        continue;
      }
      // A comm range narrowed in the config does not cost an instance: it loads, with a warning.
      if (!this.ranges.has(inst.doc.comm.ipv4))
        this.o.log.warn({ instance: inst.doc.name, commRange: this.ranges.cidrs }, EV.outsideCommRange);
      const reserved = commIpv4Problem(inst.doc.comm.ipv4) ?? (this.ranges.isEdge(inst.doc.comm.ipv4) ? 'comm range edge' : undefined);
      if (reserved !== undefined) this.o.log.warn({ instance: inst.doc.name, rule: reserved }, EV.reservedCommAddress);
      this.index(inst);
    }
    const dirs = { from: this.instancesDir, to: this.quarantineDir };
    for (const { f, reason } of bad) await quarantineFile(dirs, f, reason, this.o.clock.now(), this.o.log);
    const quarantined = bad.length;
    this.o.log.info({ instances: this.byName.size, quarantined }, EV.instancesLoaded);
    return { loaded: this.byName.size, quarantined };
  }

  get size(): number {
    return this.byName.size;
  }
  get(name: string): StoredInstance | undefined {
    return this.byName.get(name);
  }
  mustGet(name: string): StoredInstance {
    const i = this.byName.get(name);
    if (!i) throw notFound('no such instance');
    return i;
  }
  /** The instance whose comm IPv4 is `ip`, or whose tap a link-local `fe80::…%TAP` came in on (guest identification). */
  byAddress(ip: string): StoredInstance | undefined {
    // A link-local IPv6 source carries the interface it arrived on (`fe80::…%TAP`): the kernel
    // sets that scope, a guest cannot, so a link-local caller is identified by its tap.
    const scope = ip.indexOf('%');
    // The metadata address is the host's own: a host process connecting from it is nobody.
    if (ip === METADATA_IPV4) return undefined;
    const name = scope > 0 && /^fe[89ab][0-9a-f]:/i.test(ip) ? this.comm.nameOfTap(ip.slice(scope + 1)) : this.comm.nameAt(ip);
    return name === undefined ? undefined : this.byName.get(name);
  }
  /** The instance whose comm tap is `tap` (the comm controller moves a reused tap name). */
  byTap(tap: string): StoredInstance | undefined {
    const name = this.comm.nameOfTap(tap);
    return name === undefined ? undefined : this.byName.get(name);
  }
  list(): StoredInstance[] {
    return [...this.byName.values()].sort((a, b) => (a.doc.name < b.doc.name ? -1 : 1));
  }

  /**
   * Register or replace. When `keepOmittedSensitive`, private params and IAM credentials that
   * the input omits are kept from the stored version (PUT semantics, see docs/admin-api.md).
   * Secret params in the input are ignored here: the caller hands them to the vault in `after`,
   * which runs inside the instance's write queue once the write is durable.
   */
  put(input: InstanceInput, keepOmittedSensitive: boolean, after?: (r: PutResult) => void): Promise<PutResult> {
    return this.putWith(input.name, () => input, keepOmittedSensitive, after);
  }

  /**
   * `put`, with the input made inside the instance's write queue from the version stored then
   * (undefined when there is none), so that nothing written in between is lost: the Ganeti feed
   * keeps what an admin added to a fed instance. `make` may throw to refuse (nothing changes);
   * its result must keep the name.
   */
  putWith(
    name: string,
    make: (prev: StoredInstance | undefined) => InstanceInput,
    keepOmittedSensitive: boolean,
    after?: (r: PutResult) => void,
  ): Promise<PutResult> {
    return this.serialized(name, async () => {
      const input = make(this.byName.get(name));
      if (input.name !== name)
        throw new DaemonError('InvalidInput', 'a write cannot rename an instance', [{ path: '/name', message: 'must stay the same' }]);
      const r = await this.putNow(input, keepOmittedSensitive);
      after?.(r);
      return r;
    });
  }

  /**
   * Read-modify-write of one instance without lost updates: `make` gets the current version
   * inside the instance's write queue and returns the full new input (e.g. a merge patch
   * applied to it). Its result must keep the name.
   */
  update(name: string, make: (prev: StoredInstance) => InstanceInput, after?: (r: PutResult) => void): Promise<PutResult> {
    return this.serialized(name, async () => {
      const input = make(this.mustGet(name));
      if (input.name !== name)
        throw new DaemonError('InvalidInput', 'an update cannot rename an instance', [{ path: '/name', message: 'must stay the same' }]);
      const r = await this.putNow(input, false);
      after?.(r);
      return r;
    });
  }

  private async putNow(input: InstanceInput, keepOmittedSensitive: boolean): Promise<PutResult> {
    const prev = this.byName.get(input.name);
    const { doc, priv, iam } = splitInput(input);
    // Check and claim in one synchronous step: no other write can slip in between.
    const problem = this.problemOf(doc);
    if (problem) throw problem;
    if (prev) this.guard?.(prev, doc);
    const release = this.comm.claim(doc);
    try {
      return await this.putClaimed(doc, priv, iam, prev, keepOmittedSensitive);
    } finally {
      release();
    }
  }

  private async putClaimed(
    doc: PublicDoc,
    priv: ParamValues | undefined,
    iam: IamCredentials | null | undefined,
    prev: StoredInstance | undefined,
    keepOmittedSensitive: boolean,
  ): Promise<PutResult> {
    const sensitive: Sensitive = {
      private: priv ?? (keepOmittedSensitive ? (prev?.sensitive.private ?? {}) : {}),
    };
    if (prev?.sensitive.password !== undefined) sensitive.password = prev.sensitive.password;
    const keptIam = iam === undefined && keepOmittedSensitive ? prev?.sensitive.iam : (iam ?? undefined);
    if (keptIam) sensitive.iam = keptIam;
    const inst = await this.persist(doc, sensitive, prev);
    return { created: prev === undefined, instance: inst };
  }

  /** Replace the private params of an instance (`values` may be computed from the current ones). */
  setPrivate(name: string, values: ParamValues | ((old: ParamValues) => ParamValues)): Promise<StoredInstance> {
    return this.serialized(name, async () => {
      const prev = this.mustGet(name);
      const next = typeof values === 'function' ? values({ ...prev.sensitive.private }) : values;
      return this.persist(prev.doc, { ...prev.sensitive, private: next }, prev);
    });
  }

  /**
   * Set (string) or clear (null) the OpenStack password. With `onlyIfUnset`, a second set is a
   * 409: the guest may post its password once, only the admin clears it.
   */
  setPassword(name: string, password: string | null, onlyIfUnset: boolean, incarnation?: StoredInstance): Promise<StoredInstance> {
    return this.serialized(name, async () => {
      const prev = this.mustGet(name);
      if (incarnation && !sameIncarnation(prev, incarnation)) throw notFound('no such instance');
      if (onlyIfUnset && prev.sensitive.password !== undefined) throw new DaemonError('Conflict', 'password already set');
      const sensitive: Sensitive = { ...prev.sensitive };
      if (password === null) delete sensitive.password;
      else sensitive.password = password;
      return this.persist(prev.doc, sensitive, prev);
    });
  }

  /** Replace the public params of an instance (`values` may be computed from the current ones). */
  setPublic(name: string, values: ParamValues | ((old: ParamValues) => ParamValues)): Promise<StoredInstance> {
    return this.serialized(name, async () => {
      const prev = this.mustGet(name);
      const next = typeof values === 'function' ? values({ ...(prev.doc.params?.public ?? {}) }) : values;
      const doc: PublicDoc = { ...prev.doc, params: { public: next } };
      if (Object.keys(next).length === 0) delete doc.params;
      return this.persist(doc, prev.sensitive, prev);
    });
  }

  /**
   * A rule from outside the registry that every replacement of an instance must pass (it throws a
   * DaemonError to refuse): the install jobs refuse identity changes while a job holds the instance.
   * Runs inside the instance's write queue, before anything is written.
   */
  setGuard(guard: (prev: StoredInstance, next: PublicDoc) => void): void {
    this.guard = guard;
  }

  /** Resolves once every write of `name` queued so far has finished (whatever its outcome). */
  async settled(name: string): Promise<void> {
    await this.serialized(name, () => undefined);
  }

  remove(name: string): Promise<void> {
    return this.serialized(name, async () => {
      const prev = this.mustGet(name);
      await this.guardFs(
        () => this.files.removeFileDurable(this.instancesDir, `${name}.json`),
        () => {
          this.unindex(prev);
          this.emit('removed', name, prev);
        },
      );
    });
  }

  private async persist(doc: PublicDoc, sensitive: Sensitive, prev: StoredInstance | undefined): Promise<StoredInstance> {
    const now = new Date(this.o.clock.now()).toISOString();
    const inst: StoredInstance = {
      doc,
      sensitive,
      createdAt: prev?.createdAt ?? now,
      updatedAt: now,
      generation: (prev?.generation ?? 0) + 1,
    };
    const file = encodeStateFile(inst, this.o.keyring, this.o.maxDocumentBytes);
    await this.guardFs(
      () => this.files.writeFileDurable(this.instancesDir, `${doc.name}.json`, file),
      () => {
        if (prev) this.unindex(prev);
        this.index(inst);
        this.emit('changed', doc.name);
      },
    );
    return inst;
  }

  /**
   * Run a state-dir change, then `commit` the matching memory change. Failures before the change
   * became visible map to 503 "nothing was changed". A failed directory sync after it became
   * visible commits memory (it must match the disk) and answers 503 saying so.
   */
  private async guardFs(fn: () => Promise<void>, commit: () => void): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (err instanceof DirSyncError) {
        commit();
        this.o.log.error({ code: err.code, dir: this.instancesDir }, EV.notDurable);
        throw new DaemonError('Unavailable', `the change is in effect but the state dir could not confirm it durable (${err.code})`);
      }
      const code = (err as NodeJS.ErrnoException).code;
      if (code && ['ENOSPC', 'EROFS', 'EACCES', 'EPERM', 'EDQUOT', 'EIO'].includes(code)) {
        this.o.log.error({ code, dir: this.instancesDir }, EV.stateWriteFailed);
        throw new DaemonError('Unavailable', `state dir not writable (${code}); nothing was changed`);
      }
      throw err;
    }
    commit();
  }

  /**
   * Why `doc` could not be written now, as the error the write would throw, or undefined: its
   * comm IPv4 must lie inside a comm range and not on its edge, and no other instance may hold
   * its comm IPv4, MAC or tap; with `ignoring`, that instance's holdings do not count (the
   * Ganeti feed asks before it removes the instance a push replaces).
   */
  problemOf(doc: PublicDoc, ignoring?: string): DaemonError | undefined {
    if (this.ranges.isEdge(doc.comm.ipv4)) {
      const message = 'must not be the network or broadcast address of its comm range';
      return new DaemonError('InvalidInput', message, [{ path: '/comm/ipv4', message }]);
    }
    const problem: CommProblem | undefined = !this.ranges.has(doc.comm.ipv4)
      ? { path: '/comm/ipv4', message: `must lie in a comm range (${this.ranges.toString()})` }
      : this.comm.problem(doc, ignoring);
    return problem ? new DaemonError('Conflict', problem.message, [{ path: problem.path, message: problem.message }]) : undefined;
  }

  private index(i: StoredInstance): void {
    this.byName.set(i.doc.name, i);
    this.comm.add(i.doc);
  }
  private unindex(i: StoredInstance): void {
    this.byName.delete(i.doc.name);
    this.comm.remove(i.doc);
  }

  /**
   * Run `fn` inside the instance's write queue (after every earlier mutation of it settled),
   * with the instance required to exist when `fn` starts. Memory-only state that belongs to an
   * instance (its secrets, its pipe) is changed here, so it is ordered with the store's own
   * writes and can never outlive a removal.
   */
  exclusive<T>(name: string, fn: (inst: StoredInstance) => T, incarnation?: StoredInstance): Promise<T> {
    return this.serialized(name, () => {
      const inst = this.mustGet(name);
      if (incarnation && !sameIncarnation(inst, incarnation)) throw notFound('no such instance');
      return fn(inst);
    });
  }

  /** Run `fn` after every earlier mutation of the same instance has settled. */
  private serialized<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
    const run = (this.queues.get(name) ?? Promise.resolve()).then(fn, fn);
    const tail = run.catch(() => undefined);
    this.queues.set(name, tail);
    void tail.then(() => {
      if (this.queues.get(name) === tail) this.queues.delete(name);
    });
    return run;
  }
}
