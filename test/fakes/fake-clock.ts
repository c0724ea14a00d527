/**
 * A Clock that only moves when a test calls advance(): sleeps resolve in due order, aborts
 * reject at once. Strict: advancing backwards throws.
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
  constructor(private t = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const s: Sleeper = { at: this.t + ms, resolve };
      this.sleepers.push(s);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((x) => x !== s);
          reject(abortError(signal));
        },
        { once: true },
      );
    });
  }

  /** Number of pending sleeps (lets a test wait until code under test is parked). */
  get pending(): number {
    return this.sleepers.length;
  }

  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new Error('FakeClock cannot go backwards');
    this.t += ms;
    const due = this.sleepers.filter((s) => s.at <= this.t).sort((a, b) => a.at - b.at);
    this.sleepers = this.sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.resolve();
    await new Promise((r) => setImmediate(r));
  }
}
