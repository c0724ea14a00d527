/**
 * Waiting in tests without timing anything: let the event loop run until a condition holds or
 * a promise settles. The bound only turns a hang into a failure with a name (a frozen fake
 * clock must not hang a test); how long it took is never asserted.
 */
import { setTimeout as delay } from 'node:timers/promises';

const POLL_MS = 5;
const BOUND_MS = 10_000;

/** Resolve once `cond()` holds; fail naming `what` if it never does. */
export async function until(cond: () => boolean, what: string): Promise<void> {
  for (let waited = 0; !cond(); waited += POLL_MS) {
    if (waited >= BOUND_MS) throw new Error(`never happened: ${what}`);
    await delay(POLL_MS);
  }
}

/** The value of `p`; fail naming `what` if it does not settle. */
export async function settled<T>(p: Promise<T>, what: string): Promise<T> {
  const ac = new AbortController();
  try {
    return await Promise.race([
      p,
      delay(BOUND_MS, undefined, { signal: ac.signal }).then(() => Promise.reject(new Error(`never settled: ${what}`))),
    ]);
  } finally {
    ac.abort();
  }
}
