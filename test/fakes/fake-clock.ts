/**
 * A Clock that only moves when a test calls advance(): sleeps resolve in due order, aborts
 * reject at once. Strict: advancing backwards throws. The wall clock (`now`) and the monotonic
 * one (`mono`) move together, except that `jumpWall` sets the wall clock alone (an NTP step, an
 * operator's `date -s`): sleeps and monotonic deadlines do not notice it.
 */
import type { Clock } from '../../daemon/clock.js';

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** The signal's reason (AbortController.abort() makes it a DOMException, an Error). */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted');
}

export class FakeClock implements Clock {
  private sleepers: Sleeper[] = [];
  /** Monotonic time; the wall clock is mono + wallOffset. */
  private m = 1_000;
  private wallOffset: number;
  constructor(t = Date.UTC(2026, 0, 1)) {
    this.wallOffset = t - this.m;
  }

  now(): number {
    return this.m + this.wallOffset;
  }

  mono(): number {
    return this.m;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((x) => x !== s);
        reject(abortError(signal as AbortSignal));
      };
      const s: Sleeper = {
        at: this.m + ms,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.sleepers.push(s);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Number of pending sleeps (lets a test wait until code under test is parked). */
  get pending(): number {
    return this.sleepers.length;
  }

  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new Error('FakeClock cannot go backwards');
    this.m += ms;
    const due = this.sleepers.filter((s) => s.at <= this.m).sort((a, b) => a.at - b.at);
    this.sleepers = this.sleepers.filter((s) => s.at > this.m);
    for (const s of due) s.resolve();
    await new Promise((r) => setImmediate(r));
  }

  /** Sets the wall clock by `ms` (either way) without moving monotonic time or waking sleepers. */
  jumpWall(ms: number): void {
    this.wallOffset += ms;
  }
}
