/**
 * A strict in-memory Hypervisor for unit tests. It records every call, and a test drives the
 * guest side: `powerOff` (the agent finished), `setState`, or nothing (a hung guest).
 * Strict: creating a name that is running, or asking about, destroying or powering off a name
 * that was never created rejects (a bug in the code under test, not a guest event). A domain
 * that powered off or was destroyed is 'gone', exactly like a transient libvirt domain.
 * `stop(ops)` plays a SIGSTOPped libvirtd: calls of those operations are recorded and never
 * answer until `resume()` (SIGCONT), which carries them out in the order they were made.
 */
import type { DomainState, Hypervisor } from '../../appliance/hypervisor.js';

export type FakeCall =
  | { op: 'createTransient'; name: string; xml: string }
  | { op: 'state'; name: string }
  | { op: 'destroy'; name: string }
  | { op: 'list'; prefix: string }
  | { op: 'close' };

interface FakeDomain {
  state: DomainState;
  xml: string;
}

/** Runs f as an async operation: its throw becomes a rejection. */
function settle<T>(f: () => T): Promise<T> {
  try {
    return Promise.resolve(f());
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

export class FakeHypervisor implements Hypervisor {
  readonly calls: FakeCall[] = [];
  /** Every name ever created, with its current state. */
  private readonly domains = new Map<string, FakeDomain>();
  /** The next createTransient rejects with this error (once). */
  failNextCreate: Error | undefined;
  /** Every destroy rejects with this error while it is set. */
  failDestroy: Error | undefined;
  private closed = false;
  private stopped = new Set<FakeCall['op']>();
  private held: (() => void)[] = [];

  /** Calls of `ops` made from now on hang (recorded, unanswered) until resume(). */
  stop(ops: readonly FakeCall['op'][] = ['createTransient', 'state', 'destroy', 'list']): void {
    this.stopped = new Set(ops);
  }

  /** Answers every held call, in the order they were made, and stops holding. */
  resume(): void {
    this.stopped.clear();
    for (const run of this.held.splice(0)) run();
  }

  /** Calls made while stopped and not yet answered. */
  get heldCalls(): number {
    return this.held.length;
  }

  /** Runs `f` now, or when resume() comes if `op` is stopped. */
  private answer<T>(op: FakeCall['op'], f: () => Promise<T>): Promise<T> {
    if (!this.stopped.has(op)) return f();
    return new Promise<T>((resolve, reject) => {
      this.held.push(() => {
        f().then(resolve, reject);
      });
    });
  }

  private known(name: string): FakeDomain {
    if (this.closed) throw new Error('FakeHypervisor: used after close');
    const d = this.domains.get(name);
    if (!d) throw new Error(`FakeHypervisor: unknown domain ${name}`);
    return d;
  }

  createTransient(name: string, xml: string): Promise<void> {
    this.calls.push({ op: 'createTransient', name, xml });
    return this.answer('createTransient', () => this.create(name, xml));
  }

  private create(name: string, xml: string): Promise<void> {
    return settle(() => {
      if (this.closed) throw new Error('FakeHypervisor: used after close');
      const old = this.domains.get(name);
      if (old && old.state !== 'gone') throw new Error(`FakeHypervisor: domain ${name} already exists`);
      if (!xml.includes(`<name>${name}</name>`)) throw new Error(`FakeHypervisor: XML does not name ${name}`);
      const err = this.failNextCreate;
      this.failNextCreate = undefined;
      if (err) throw err;
      this.domains.set(name, { state: 'running', xml });
    });
  }

  state(name: string): Promise<DomainState> {
    this.calls.push({ op: 'state', name });
    return this.answer('state', () => settle(() => this.known(name).state));
  }

  destroy(name: string): Promise<'destroyed' | 'gone'> {
    this.calls.push({ op: 'destroy', name });
    return this.answer('destroy', () =>
      settle(() => {
        if (this.failDestroy) throw this.failDestroy;
        const d = this.known(name);
        if (d.state === 'gone') return 'gone';
        d.state = 'gone';
        return 'destroyed';
      }),
    );
  }

  list(prefix: string): Promise<string[]> {
    this.calls.push({ op: 'list', prefix });
    return this.answer('list', () =>
      settle(() => {
        if (this.closed) throw new Error('FakeHypervisor: used after close');
        return this.running().filter((n) => n.startsWith(prefix));
      }),
    );
  }

  close(): Promise<void> {
    this.calls.push({ op: 'close' });
    this.closed = true;
    return Promise.resolve();
  }

  // ------------------------------------------------------------ the guest's side

  /** The guest powered off: the transient domain vanishes. */
  powerOff(name: string): void {
    const d = this.known(name);
    if (d.state === 'gone') throw new Error(`FakeHypervisor: ${name} is not running`);
    d.state = 'gone';
  }

  /** Any other state (e.g. 'paused', or 'shutdown' for the moment before it is gone). */
  setState(name: string, state: DomainState): void {
    this.known(name).state = state;
  }

  /** Names that exist right now (not gone), sorted. */
  running(): string[] {
    return [...this.domains]
      .filter(([, d]) => d.state !== 'gone')
      .map(([n]) => n)
      .sort();
  }

  xmlOf(name: string): string {
    return this.known(name).xml;
  }

  /** The names (or prefixes) of the calls of one kind, in order. */
  opsOf(op: FakeCall['op']): string[] {
    return this.calls.filter((c) => c.op === op).map((c) => ('name' in c ? c.name : 'prefix' in c ? c.prefix : ''));
  }
}
