/**
 * The comm network's reconciles as health and metrics see them, fed by the controller's
 * 'reconcileEnded' event (the composition root subscribes): the last one (when, ok or why not)
 * and the durations of the successful ones.
 */
import type { ReconcileEnd } from '../comm/controller.js';
import { Buckets } from './buckets.js';

/** Seconds: ~0.1 s for a few NICs, ~0.5–1 s at 1,000 (docs/benchmarks.md). */
export const RECONCILE_BUCKETS: readonly number[] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface LastReconcile {
  readonly at: string;
  readonly ok: boolean;
  readonly ms?: number;
  readonly error?: string;
}

export class CommCounters {
  readonly reconcileSeconds = new Buckets(RECONCILE_BUCKETS);
  last: LastReconcile | undefined;

  ended(e: ReconcileEnd, atMs: number): void {
    const at = new Date(atMs).toISOString();
    if (e.ok) {
      this.reconcileSeconds.observe(e.ms / 1000);
      this.last = { at, ok: true, ms: e.ms };
    } else this.last = { at, ok: false, error: e.error };
  }
}
