/**
 * The guest door's own counters: plain numbers bumped on every request, read only when
 * Prometheus scrapes (daemon/metrics/metrics.ts). Not prom-client objects on the hot path:
 * a labelled prom-client counter cost 190–230 ns and a histogram observe 250–770 ns per call
 * here, against ~5 ns for a number in a Float64Array, and the guest door's whole budget per
 * request is a few microseconds (docs/benchmarks.md).
 */

/** Latency buckets (seconds, upper bounds) of the guest answer histogram; +Inf is implied. */
export const LATENCY_BUCKETS: readonly number[] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1];

/** What the guest door answered, per dialect and status, and how long it took. */
export class GuestCounters {
  /** dialect -> status -> count. The dialect of a request refused before routing is 'none'. */
  private readonly answers = new Map<string, Map<number, number>>();
  /** Per bucket (the last is +Inf), not cumulative: the exposition adds them up. */
  readonly buckets = new Float64Array(LATENCY_BUCKETS.length + 1);
  latencySum = 0;
  latencyCount = 0;
  cacheHits = 0;
  cacheMisses = 0;

  /** One answer sent: `seconds` from the request's arrival to its answer being handed to the socket. */
  answered(dialect: string, status: number, seconds: number): void {
    let byStatus = this.answers.get(dialect);
    if (!byStatus) this.answers.set(dialect, (byStatus = new Map<number, number>()));
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > (LATENCY_BUCKETS[i] ?? Infinity)) i++;
    this.buckets[i] = (this.buckets[i] ?? 0) + 1;
    this.latencySum += seconds;
    this.latencyCount++;
  }

  /** Every (dialect, status) seen with its count. */
  *answerCounts(): Generator<{ dialect: string; status: number; count: number }> {
    for (const [dialect, byStatus] of this.answers) for (const [status, count] of byStatus) yield { dialect, status, count };
  }
}
