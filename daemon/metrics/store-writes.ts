/**
 * State-dir writes timed and counted: the composition root hands the store its durable file
 * primitives (InstanceStore's `files` seam) through `wrap`, so the registry itself knows nothing
 * of metrics. A write is one instance's state file replaced (temp + fsync + rename + directory
 * fsync), a remove its file unlinked durably; a failure is any error either throws (the store
 * answers 503 for it).
 */
import { Buckets } from './buckets.js';

/** Seconds; an fsync on a busy disk takes milliseconds to seconds. */
export const STORE_WRITE_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5];

export type StoreOp = 'write' | 'remove';

type DurableFn<A extends unknown[]> = (...args: A) => Promise<void>;

export class StoreWrites {
  readonly latency: Record<StoreOp, Buckets> = { write: new Buckets(STORE_WRITE_BUCKETS), remove: new Buckets(STORE_WRITE_BUCKETS) };
  readonly failures: Record<StoreOp, number> = { write: 0, remove: 0 };

  constructor(private readonly monoMs: () => number) {}

  /** `files` with each call timed (failed ones too) and each failure counted. */
  wrap<W extends unknown[], R extends unknown[]>(files: {
    writeFileDurable: DurableFn<W>;
    removeFileDurable: DurableFn<R>;
  }): { writeFileDurable: DurableFn<W>; removeFileDurable: DurableFn<R> } {
    return {
      writeFileDurable: (...a: W) => this.timed('write', () => files.writeFileDurable(...a)),
      removeFileDurable: (...a: R) => this.timed('remove', () => files.removeFileDurable(...a)),
    };
  }

  private async timed(op: StoreOp, fn: () => Promise<void>): Promise<void> {
    const t0 = this.monoMs();
    try {
      await fn();
    } catch (err) {
      this.failures[op]++;
      throw err;
    } finally {
      this.latency[op].observe((this.monoMs() - t0) / 1000);
    }
  }
}
