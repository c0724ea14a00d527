/**
 * What install runs left behind and could not remove: an appliance domain whose destroy failed
 * or never answered, a tap, an overlay or console log that could not be deleted, a recovery
 * that found no hypervisor. Nothing of that is swallowed: each is logged as a catalogued event
 * (`install leftover not removed`), listed in `GET /v1/health` (`leftovers`), and retried on a
 * slow timer on the injected clock until its removal succeeds (`install leftover removed`).
 *
 * The registry knows no hypervisor or network: `remove` (daemon/daemon.ts) does the work and
 * rejects while the thing is still there. Items are keyed by kind and name: reporting one
 * again keeps its first time and counts on.
 */
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { EV } from '../log/events.js';

type LeftoverKind =
  /** An appliance domain (name: the domain): destroyed on retry. */
  | 'domain'
  /** An appliance tap (name: the tap): deleted. */
  | 'tap'
  /** The comm network still gives an appliance tap its instance's identity (name: the tap). */
  | 'tap identity'
  /** A per-run overlay or console log (name: the file's path): removed. */
  | 'overlay'
  | 'console log'
  /** An OS image a run fetched from a URL (`<stateDir>/images/<domain>.image`). */
  | 'image'
  /** A run's cleanup failed in a way that names nothing (name: the domain): run again. */
  | 'cleanup'
  /** The recovery of unfinished jobs after a restart could not run (name: what is waiting). */
  | 'recovery';

export interface LeftoverItem {
  kind: LeftoverKind;
  name: string;
  /** The instance the run belonged to, when known. */
  instance?: string | undefined;
  /** The run's domain, when known (taps and files are named after it). */
  domain?: string | undefined;
}

/** A cleanup that did not finish: what is still there. */
export class LeftBehind extends Error {
  override name = 'LeftBehind';
  constructor(
    message: string,
    readonly items: readonly LeftoverItem[],
  ) {
    super(message);
  }
}

/** What a failed cleanup left: the items a LeftBehind names, else `fallback`. */
export function itemsOf(e: unknown, fallback: LeftoverItem): readonly LeftoverItem[] {
  return e instanceof LeftBehind && e.items.length > 0 ? e.items : [fallback];
}

export interface LeftoverView {
  kind: LeftoverKind;
  name: string;
  instance: string | null;
  /** When it was first found (ISO). */
  since: string;
  /** Removal attempts made by the retry timer so far. */
  attempts: number;
  /** The last reason it could not be removed. */
  error: string;
}

/** Where leftovers are reported (the registry; the job manager takes any such sink). */
export interface LeftoverSink {
  add(items: readonly LeftoverItem[], during: string, err: unknown): void;
}

/** The default wait between retries (ms). */
export const LEFTOVER_RETRY_MS = 30_000;

const ORDER: readonly LeftoverKind[] = ['recovery', 'domain', 'cleanup', 'tap identity', 'tap', 'overlay', 'console log', 'image'];

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e)).slice(0, 300);

/** The one log line for leftovers found (the registry logs through it; so does a manager without one). */
export function logLeftovers(log: Logger, items: readonly LeftoverItem[], during: string, err: unknown): void {
  for (const i of items) log.error({ kind: i.kind, name: i.name, instance: i.instance, during, err: messageOf(err) }, EV.jobLeftover);
}

interface Entry extends LeftoverItem {
  since: number;
  attempts: number;
  error: string;
}

export interface LeftoverDeps {
  clock: Clock;
  log: Logger;
  /** Removes the item; rejects while it is still there. */
  remove: (item: LeftoverItem) => Promise<void>;
  retryMs?: number;
}

export class Leftovers implements LeftoverSink {
  private readonly entries = new Map<string, Entry>();
  private readonly stopped = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(private readonly d: LeftoverDeps) {}

  add(items: readonly LeftoverItem[], during: string, err: unknown): void {
    logLeftovers(this.d.log, items, during, err);
    if (this.stopped.signal.aborted) return;
    for (const i of items) {
      const key = `${i.kind}\0${i.name}`;
      const old = this.entries.get(key);
      this.entries.set(key, { ...i, since: old?.since ?? this.d.clock.now(), attempts: old?.attempts ?? 0, error: messageOf(err) });
    }
    this.loop ??= this.retryLoop().finally(() => {
      this.loop = undefined;
    });
  }

  /** For GET /v1/health: everything still waiting, in retry order. */
  list(): LeftoverView[] {
    return this.sorted().map((e) => ({
      kind: e.kind,
      name: e.name,
      instance: e.instance ?? null,
      since: new Date(e.since).toISOString(),
      attempts: e.attempts,
      error: e.error,
    }));
  }

  get size(): number {
    return this.entries.size;
  }

  /** Ends the retry timer (daemon stop); what is left stays for the next start's sweep and recovery. */
  async stop(): Promise<void> {
    this.stopped.abort();
    await this.loop;
  }

  private sorted(): Entry[] {
    return [...this.entries.values()].sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind) || a.name.localeCompare(b.name));
  }

  private async retryLoop(): Promise<void> {
    while (this.entries.size > 0) {
      try {
        await this.d.clock.sleep(this.d.retryMs ?? LEFTOVER_RETRY_MS, this.stopped.signal);
      } catch {
        return; // stopped
      }
      await this.round();
    }
  }

  /** One attempt at every item (domains before the files and taps named after them). */
  private async round(): Promise<void> {
    for (const e of this.sorted()) {
      if (this.stopped.signal.aborted) return;
      const key = `${e.kind}\0${e.name}`;
      e.attempts++;
      try {
        await this.d.remove(e);
        if (this.entries.get(key) === e) this.entries.delete(key);
        this.d.log.info({ kind: e.kind, name: e.name, instance: e.instance, attempts: e.attempts }, EV.jobLeftoverRemoved);
      } catch (err) {
        e.error = messageOf(err);
        this.d.log.warn(
          { kind: e.kind, name: e.name, instance: e.instance, attempts: e.attempts, err: e.error },
          EV.jobLeftoverRetryFailed,
        );
      }
    }
  }
}
