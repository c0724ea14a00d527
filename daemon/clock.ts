/**
 * Time as a dependency: everything that waits or stamps asks a Clock, so tests drive time
 * with a fake instead of sleeping (test/fakes/fake-clock.ts).
 *
 * Two readings: `now()` is wall-clock time (what is persisted and shown: ISO stamps in records
 * and state files), `mono()` is monotonic (never steps when the wall clock is set): in-process
 * deadlines, bounds and expiries are measured on it.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';

export interface Clock {
  /** Wall-clock ms since the epoch (persisted times). */
  now(): number;
  /** Monotonic ms from an arbitrary origin (in-process deadlines and expiries). */
  mono(): number;
  /** Resolves after ms, or rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  mono: () => performance.now(),
  sleep: async (ms, signal) => {
    await delay(ms, undefined, signal ? { signal } : {});
  },
};

/** A call that did not settle within its bound (it may still complete later: nothing cancels it). */
export class TimedOut extends Error {
  override name = 'TimedOut';
}

/**
 * Settles like `p`, or rejects with TimedOut once `ms` have passed on `clock`, or with the
 * signal's reason once it is aborted: whichever comes first. `p` is not cancelled (a promise
 * cannot be): the caller decides what an abandoned call means. A `p` that has already settled
 * wins over a bound of 0. The bound's timer is cleared as soon as the race is decided.
 */
export async function bounded<T>(clock: Clock, ms: number, what: string, p: Promise<T>, signal?: AbortSignal): Promise<T> {
  const timer = new AbortController();
  const onAbort = (): void => timer.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const limit = (async (): Promise<never> => {
    if (signal?.aborted) throw abortReason(signal);
    if (ms > 0) {
      try {
        await clock.sleep(ms, timer.signal);
      } catch (e) {
        throw signal?.aborted ? abortReason(signal) : e;
      }
    } else {
      await Promise.resolve(); // one turn: a call that has already answered still wins
    }
    throw new TimedOut(`${what}: no answer within ${String(Math.max(0, Math.round(ms)))} ms`);
  })();
  try {
    return await Promise.race([p, limit]);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    timer.abort();
    limit.catch(() => undefined);
  }
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('aborted');
}
