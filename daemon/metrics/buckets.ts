/**
 * A latency histogram as plain numbers (observed where the work happens, read when Prometheus
 * scrapes: daemon/metrics/metrics.ts), for the paths that are not the guest door's
 * (guest-counters.ts keeps its own for the hot path).
 */
export class Buckets {
  /** Per bucket (the last is +Inf), not cumulative: the exposition adds them up. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  /** `bounds`: upper bounds in seconds, ascending; +Inf is implied. */
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < this.bounds.length && seconds > (this.bounds[i] ?? Infinity)) i++;
    this.counts[i] = (this.counts[i] ?? 0) + 1;
    this.sum += seconds;
    this.count++;
  }
}
