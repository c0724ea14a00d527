/**
 * Waiting in tests without timing anything: let the event loop run until a condition holds or
 * a promise settles. The bound only turns a hang into a failure with a name (a frozen fake
 * clock must not hang a test); how long it took is never asserted. The one polling loop of the
 * test suite: write `await until(...)`, not a `for` loop around a sleep.
 */
import { setTimeout as delay } from 'node:timers/promises';

/** How long `until` and `settled` wait by default before they fail. */
const BOUND_MS = 15_000;
/** The first pause between two probes; it doubles up to MAX_POLL_MS (a cheap probe answers at once, a costly one is not run in a tight loop). */
const FIRST_POLL_MS = 5;
const MAX_POLL_MS = 100;

/** Not there yet: `undefined`, `null` or `false`; anything else is the awaited value. */
type Unmet = undefined | null | false;

export interface UntilOptions {
  /** The bound (default 15 s): a hang becomes a failure naming what never happened. */
  ms?: number;
  /** A fixed pause between probes, in ms, instead of the growing one (e.g. 1 to catch a short-lived state). */
  every?: number;
  /** Told with the failure (e.g. a process's output so far). */
  detail?: () => string;
}

/**
 * Run `probe` until it gives a value (not undefined, null or false) and resolve with it; fail
 * naming `what` once the bound has passed (a number for `opts` is the bound in ms). A probe that
 * throws ends the wait with its error (e.g. "the daemon exited").
 */
export async function until<T>(
  what: string,
  probe: () => T | PromiseLike<T>,
  opts: number | UntilOptions = {},
): Promise<Exclude<T, Unmet>> {
  const { ms = BOUND_MS, every, detail } = typeof opts === 'number' ? { ms: opts } : opts;
  const end = Date.now() + ms;
  for (let pause = every ?? FIRST_POLL_MS; ; pause = every ?? Math.min(pause * 2, MAX_POLL_MS)) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v as Exclude<T, Unmet>;
    if (Date.now() > end) throw new Error(`never happened within ${String(ms)} ms: ${what}${detail ? `\n${detail()}` : ''}`);
    await delay(pause);
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
