/**
 * Per-instance token bucket: `ratePerSec` refill, `burst` capacity, on the injected clock.
 * A request over the limit is answered 429 with Retry-After (never silently dropped, unlike
 * EC2's packet-level throttle).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  constructor(
    private ratePerSec: number,
    private burst: number,
  ) {}

  /** New limits (a configuration reload); buckets keep their tokens, capped at the new burst. */
  setLimits(ratePerSec: number, burst: number): void {
    this.ratePerSec = ratePerSec;
    this.burst = burst;
  }

  /** 0 when allowed (and a token is taken), else the seconds to wait before retrying. */
  take(key: string, nowMs: number): number {
    let b = this.buckets.get(key);
    if (!b) this.buckets.set(key, (b = { tokens: this.burst, at: nowMs }));
    b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.ratePerSec);
    b.at = nowMs;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.ratePerSec));
  }

  forget(key: string): void {
    this.buckets.delete(key);
  }
}
