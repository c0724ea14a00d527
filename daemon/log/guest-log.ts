/**
 * Every log line a guest can trigger goes through here, sampled per source, so a guest never
 * controls the host's log volume: at most one line per event per key (a source address, an
 * instance) per interval (daemon/log/log-sampler.ts, bounded memory), each line carrying
 * `suppressedBefore` (lines held back for that key since its previous one). What is held back is
 * counted per event and reported in one summary line per event per window
 * (`guest-triggered log lines suppressed`: event, suppressed, windowMs), written by the first
 * `note` or `flush` after the window ends (the guest listeners flush every 250 ms) and at stop.
 */
import type { Logger } from 'pino';
import { EV, EVENTS } from './events.js';
import { LogSampler } from './log-sampler.js';

/** The guest-triggered events and how often each may be logged per key. */
const SAMPLED = {
  guestConnCap: 10_000,
  guestUnknownSource: 10_000,
  guestRefused: 1000,
  guestTokenRefused: 10_000,
  guestPasswordSet: 10_000,
  guestPipeFull: 10_000,
  guestScriptRefused: 10_000,
  guestPackageRefused: 10_000,
  guestPackageCut: 10_000,
} as const;

export type GuestEvent = keyof typeof SAMPLED;

/** The summary window: suppressed lines are reported at most this often per event. */
export const SUMMARY_WINDOW_MS = 10_000;

interface Held {
  /** When the first line of this window was held back. */
  since: number;
  count: number;
}

export class GuestLog {
  private readonly samplers = new Map<GuestEvent, LogSampler>();
  private readonly held = new Map<GuestEvent, Held>();
  /** Every note per event since the start, logged or held back (the metrics read them). */
  private readonly totals = new Map<GuestEvent, number>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number,
    private readonly maxKeys = 10_000,
  ) {}

  /**
   * `event` about `key` happened: log it (through `logger`, e.g. an instance's child logger) with
   * `fields` unless a line for this event and key was logged within its interval; else count it.
   */
  note(event: GuestEvent, key: string, fields: Record<string, unknown> = {}, logger: Logger = this.log): void {
    this.totals.set(event, (this.totals.get(event) ?? 0) + 1);
    const now = this.now();
    let sampler = this.samplers.get(event);
    if (!sampler) this.samplers.set(event, (sampler = new LogSampler(SAMPLED[event], this.maxKeys)));
    const suppressedBefore = sampler.take(key, now);
    if (suppressedBefore === undefined) {
      const h = this.held.get(event);
      if (h) h.count++;
      else this.held.set(event, { since: now, count: 1 });
    } else if (EVENTS[event].level === 'info') logger.info({ ...fields, suppressedBefore }, EV[event]);
    else logger.warn({ ...fields, suppressedBefore }, EV[event]);
    this.flush();
  }

  /** How often each event happened since the start (sampled lines and held-back ones alike). */
  counts(): ReadonlyMap<GuestEvent, number> {
    return this.totals;
  }

  /** Forget a key everywhere (a removed instance). */
  forget(key: string): void {
    for (const s of this.samplers.values()) s.forget(key);
  }

  /** Write the summary of each event whose window has ended (all of them with `all`: at stop). */
  flush(all = false): void {
    if (this.held.size === 0) return;
    const now = this.now();
    for (const [event, h] of this.held) {
      if (!all && now - h.since < SUMMARY_WINDOW_MS) continue;
      this.held.delete(event);
      this.log.warn({ event: EV[event], suppressed: h.count, windowMs: now - h.since }, EV.guestLogSuppressed);
    }
  }
}
