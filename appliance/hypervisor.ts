/**
 * What the install runner needs from a hypervisor: transient domains it can create (started at
 * once), watch, destroy and find again by name prefix. One implementation talks to libvirt
 * (appliance/libvirt.ts, the only file that loads the binding); test/fakes/fake-hypervisor.ts
 * is the strict fake for unit tests.
 *
 * Transient domains have no definition that outlives them: when the guest powers off (or
 * reboots or crashes: the appliance's XML maps all three to destroy) the domain is gone, and
 * `state` says 'gone'. Nothing needs undefining.
 */
import { bounded, TimedOut, type Clock } from '../daemon/clock.js';

/** libvirt's virDomainState, plus 'gone' for a domain that no longer exists. */
export type DomainState = 'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended' | 'gone';

export const DOMAIN_STATES: readonly DomainState[] = [
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
];

export interface Hypervisor {
  /** Creates and starts a transient domain from its XML (whose <name> must be `name`). */
  createTransient(name: string, xml: string): Promise<void>;
  /** The domain's state; 'gone' when no domain has that name (any more). */
  state(name: string): Promise<DomainState>;
  /** Stops the domain at once (pulls the plug). 'gone' when it had already vanished. */
  destroy(name: string): Promise<'destroyed' | 'gone'>;
  /** Names of the existing domains that start with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  close(): Promise<void>;
  /**
   * True while a create of `name` has not answered yet (one its caller gave up on included):
   * the domain may still appear. Optional: without it, callers cannot tell.
   */
  busy?(name: string): boolean;
}

/**
 * The hypervisor cannot be used at all (binding missing, daemon unreachable): say what to do.
 * A call that rejects with it never reached the hypervisor (nothing was created).
 */
export class HypervisorUnavailable extends Error {
  override name = 'HypervisorUnavailable';
}

/**
 * How long one hypervisor call may take (ms) before its caller stops waiting. A create under TCG
 * with a cold capabilities cache took up to 7.5 s here; the others take milliseconds, and a
 * destroy whose QEMU waits for a slow reaper 1.2–3 s.
 */
export interface CallBounds {
  createTransient: number;
  state: number;
  destroy: number;
  list: number;
}

export const CALL_BOUNDS: Readonly<CallBounds> = { createTransient: 30_000, state: 10_000, destroy: 10_000, list: 10_000 };

/**
 * At most this many hypervisor calls are outstanding at once. The binding runs each call on one
 * of libuv's four pool threads, which node's file I/O needs too: calls that never answer
 * (libvirtd stopped) would otherwise take every thread, and with them every file read and
 * write in the daemon (state files, job records). Calls beyond it wait their turn, within
 * their own bound.
 */
export const MAX_CALLS_IN_FLIGHT = 2;

/**
 * Any Hypervisor with every call bounded on the injected clock: a call that does not answer in
 * time rejects with TimedOut (daemon/clock.ts), whatever the hypervisor does (libvirtd stopped,
 * a hung QEMU monitor). The call itself goes on inside the binding and keeps its slot (at most
 * MAX_CALLS_IN_FLIGHT) until it answers: a hung hypervisor gets no more calls than that, the
 * others time out waiting and were never sent. `busy(name)` stays true while a create of the
 * domain has not answered, so whoever cleans up knows that the domain may still appear.
 * `onTimeout` hears of each call given up on (for the log).
 */
export class BoundedHypervisor implements Hypervisor {
  private readonly creating = new Map<string, number>();
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];

  constructor(
    private readonly inner: Hypervisor,
    private readonly clock: Clock,
    private readonly bounds: Readonly<CallBounds> = CALL_BOUNDS,
    private readonly onTimeout?: (op: keyof CallBounds, name: string, ms: number) => void,
    private readonly maxInFlight = MAX_CALLS_IN_FLIGHT,
  ) {}

  /** Sends `send()` once a slot is free; the slot is held until the call answers. `given`: the caller stopped waiting. */
  private sendInTurn<T>(send: () => Promise<T>, given: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const go = (): void => {
        if (given.aborted) {
          this.next();
          reject(new Error('not sent: the caller stopped waiting'));
          return;
        }
        this.inFlight++;
        const p = send();
        const done = (): void => {
          this.inFlight--;
          this.next();
        };
        p.then(done, done);
        p.then(resolve, reject);
      };
      if (this.inFlight < this.maxInFlight) go();
      else this.queue.push(go);
    });
  }

  private next(): void {
    if (this.inFlight < this.maxInFlight) this.queue.shift()?.();
  }

  private async call<T>(op: keyof CallBounds, name: string, send: () => Promise<T>): Promise<T> {
    const ms = this.bounds[op];
    const given = new AbortController();
    try {
      return await bounded(this.clock, ms, `hypervisor ${op}`, this.sendInTurn(send, given.signal));
    } catch (e) {
      if (e instanceof TimedOut) {
        given.abort();
        this.onTimeout?.(op, name, ms);
      }
      throw e;
    }
  }

  createTransient(name: string, xml: string): Promise<void> {
    this.creating.set(name, (this.creating.get(name) ?? 0) + 1);
    const done = (): void => {
      const n = (this.creating.get(name) ?? 1) - 1;
      if (n > 0) this.creating.set(name, n);
      else this.creating.delete(name);
    };
    let sent: Promise<void> | undefined;
    const p = this.call('createTransient', name, () => {
      sent = this.inner.createTransient(name, xml);
      return sent;
    });
    // Busy until the create answers, or (never sent) until the caller gave up on it.
    p.then(done, () => {
      if (sent) sent.then(done, done);
      else done();
    });
    return p;
  }

  state(name: string): Promise<DomainState> {
    return this.call('state', name, () => this.inner.state(name));
  }

  destroy(name: string): Promise<'destroyed' | 'gone'> {
    return this.call('destroy', name, () => this.inner.destroy(name));
  }

  list(prefix: string): Promise<string[]> {
    return this.call('list', `${prefix}*`, () => this.inner.list(prefix));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  busy(name: string): boolean {
    return this.creating.has(name) || (this.inner.busy?.(name) ?? false);
  }
}
