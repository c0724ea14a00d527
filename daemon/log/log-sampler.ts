/**
 * At most one log line per key (a source address, an instance) per interval, for any number of
 * keys, in bounded memory. Pure bookkeeping: the caller passes the time and does the logging.
 *
 * The table keeps keys in the order they last logged (oldest first). A new key when the table is
 * full first evicts keys whose interval has passed (they may log again anyway); if every tracked
 * key is still inside its interval, the new key is not logged at all: it is counted, and
 * `overflow(now)` hands that count out at most once per interval for one summary line. So a
 * flood of rotating source addresses costs at most `maxKeys` lines plus one summary per
 * interval, never a line per request and never unbounded memory.
 */

interface Entry {
  at: number;
  suppressed: number;
}

export class LogSampler {
  private readonly seen = new Map<string, Entry>();
  /** Lines held back because the table was full. */
  private overflowed = 0;
  private overflowReportedAt = -Infinity;

  constructor(
    private readonly intervalMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** The number of lines suppressed for `key` since its last one, or undefined: do not log now. */
  take(key: string, now: number): number | undefined {
    const last = this.seen.get(key);
    if (last && now - last.at < this.intervalMs) {
      last.suppressed++;
      return undefined;
    }
    if (last)
      this.seen.delete(key); // re-inserted below: the map stays ordered by `at`
    else if (this.seen.size >= this.maxKeys && !this.evictExpired(now)) {
      this.overflowed++;
      return undefined;
    }
    this.seen.set(key, { at: now, suppressed: 0 });
    return last?.suppressed ?? 0;
  }

  /**
   * Lines held back because the table was full, at most once per interval (then reset), or
   * undefined: nothing to report now.
   */
  overflow(now: number): number | undefined {
    if (this.overflowed === 0 || now - this.overflowReportedAt < this.intervalMs) return undefined;
    const n = this.overflowed;
    this.overflowed = 0;
    this.overflowReportedAt = now;
    return n;
  }

  forget(key: string): void {
    this.seen.delete(key);
  }

  get size(): number {
    return this.seen.size;
  }

  /** Drop keys whose interval has passed (oldest first); true if room was made. */
  private evictExpired(now: number): boolean {
    for (const [key, e] of this.seen) {
      if (now - e.at < this.intervalMs) break;
      this.seen.delete(key);
    }
    return this.seen.size < this.maxKeys;
  }
}
