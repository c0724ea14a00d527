/**
 * Install jobs that ended, counted from the job manager's 'ended' event (the composition root
 * subscribes): by outcome, how long each took from its start (leaving the queue; its request
 * when it never started) to its end, and for jobs that hit their hard deadline, how long from the
 * deadline until the domain was gone. Read when Prometheus scrapes.
 */
import type { JobRecord } from '../jobs/record.js';
import { Buckets } from './buckets.js';

/** Seconds: an install takes minutes. */
export const JOB_SECONDS_BUCKETS: readonly number[] = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];
/** Seconds: destroying a domain takes a fraction of a second to a few seconds. */
export const DEADLINE_DESTROY_BUCKETS: readonly number[] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];
/** How many ended jobs' ids are remembered, so a record told twice is counted once. */
const REMEMBER = 4096;

const ms = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Date.parse(iso));

/** Every outcome a job can end with, exported from the start at 0 (a rate over a series that appears late misses its first jobs). */
const JOB_OUTCOMES = ['succeeded', 'failed', 'timed-out', 'aborted', 'stuck'] as const satisfies readonly JobRecord['state'][];

/** Every state a job record can be in (metad_jobs exports each, 0 when none). */
export const JOB_STATES = ['queued', 'pending', 'booting', 'running', ...JOB_OUTCOMES] as const satisfies readonly JobRecord['state'][];

export class JobCounters {
  /** Outcome -> jobs that ended with it (every outcome from the start, at 0). */
  readonly outcomes = new Map<string, number>(JOB_OUTCOMES.map((o) => [o, 0]));
  readonly duration = new Buckets(JOB_SECONDS_BUCKETS);
  readonly deadlineToDestroy = new Buckets(DEADLINE_DESTROY_BUCKETS);
  private readonly seen = new Set<string>();

  ended(
    rec: Pick<JobRecord, 'domain' | 'outcome' | 'state' | 'requestedAt' | 'startedAt' | 'endedAt' | 'deadlineAt' | 'destroyedAt'>,
  ): void {
    if (this.seen.has(rec.domain)) return;
    if (this.seen.size >= REMEMBER) this.seen.clear();
    this.seen.add(rec.domain);
    const outcome = rec.outcome ?? rec.state;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    const from = ms(rec.startedAt) ?? ms(rec.requestedAt);
    const end = ms(rec.endedAt);
    if (from !== undefined && end !== undefined && end >= from) this.duration.observe((end - from) / 1000);
    const deadline = ms(rec.deadlineAt);
    const gone = ms(rec.destroyedAt);
    if (outcome === 'timed-out' && deadline !== undefined && gone !== undefined)
      this.deadlineToDestroy.observe(Math.max(0, gone - deadline) / 1000);
  }
}
