/**
 * Install job records: what `metadctl install status` shows and what survives a restart.
 * Kept apart from the instance document (<stateDir>/jobs/<instance>.json): a progress line
 * rewrites this small file only, so it never bumps the instance's generation nor flushes the
 * guest answers cached for it. Times are absolute ISO strings (a deadline survives a restart).
 * The record holds states, times, reasons and the agent's progress lines. Every record the
 * JobManager makes or changes passes `scrubRecord` before it is kept, written or shown: control
 * characters leave guest-written lines, long lines are cut, and a line that contains any secret
 * value the job has held verbatim is replaced whole. The values are collected at the job's
 * request, its start, each record change while it is live, the appliance's claim (before the
 * claim-once ones are consumed) and the end of its run (before the wipe), so a value claimed
 * or wiped since is still known. A secret printed otherwise (encoded, split across lines) is
 * not recognised.
 * Records read back at start (`JobRecordFiles.loadAll`) pass `scrubRecord` again, without secret
 * values (a restart has lost them; lines that held one were redacted when written): a file of an
 * older version or edited by hand is shown by the same rules.
 * Reasons are metad's own words, a refusal of metad's (DaemonError), or a comm network error
 * (metad's words around a tool's first error line, anything shaped like a host path cut out): a
 * hypervisor's raw error text and any other preparation error (which may name host paths) go to
 * the log, never to the record; so do destroy and cleanup errors that are not metad's words.
 * A record belongs to one incarnation of its instance (`incarnation`: uuid @ creation time).
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { RunRecord, RunState } from '../../appliance/runner.js';
import { EV } from '../log/events.js';
import { isInstanceName } from '../registry/model.js';
import { mkdirs } from '../mkdirs.js';
import { removeFileDurable, writeFileDurable } from '../registry/persist.js';

type JobState = 'queued' | RunState;
type Outcome = 'succeeded' | 'failed' | 'timed-out' | 'aborted' | 'stuck';
const OUTCOMES: readonly JobState[] = ['succeeded', 'failed', 'timed-out', 'aborted', 'stuck'];

export interface JobRecord {
  v: 1;
  instance: string;
  /** The instance's incarnation (uuid@createdAt) the job was requested for; absent in records of older versions. */
  incarnation?: string;
  /** The transient domain's name (the runner's prefix + a short id): also the job's id. */
  domain: string;
  state: JobState;
  outcome?: Outcome;
  reason?: string;
  timeoutSec: number;
  requestedAt: string;
  /** Set when the job leaves the queue; the hard deadline counts from then. */
  startedAt?: string;
  deadlineAt?: string;
  claimDeadlineAt?: string;
  /** The run is assembled (tap, overlay, XML): the domain is created next. */
  preparedAt?: string;
  createdAt?: string;
  firstReportAt?: string;
  claimedAt?: string;
  endedAt?: string;
  /** When the domain was gone (destroyed, or found powered off) and the cleanup began. */
  destroyedAt?: string;
  /**
   * The names (never the values) of the secret parameters the instance held when the job was
   * requested: a reinstall without them (secrets live for one job) is told so (metadctl install).
   */
  secretNames?: string[];
  /** The last progress lines (at most MAX_LINES of the runner). */
  lines: string[];
  /** Something may be left behind (destroy or cleanup failed). */
  destroyError?: string;
  cleanupError?: string;
}

export const REDACTED = '[redacted: contained a secret value]';
const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

export function isEnded(r: Pick<JobRecord, 'state'>): boolean {
  return OUTCOMES.includes(r.state);
}

/** The longest progress line a record keeps (characters; longer ones are cut and end in `…`). */
export const MAX_LINE_CHARS = 1024;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * A guest-written line fit for a record and a terminal: every control character (C0, DEL, C1:
 * `\r`, `\v`, `\f`, ESC …) removed, at most MAX_LINE_CHARS. Pure.
 * 'metad-progress v1 step=a status=ok\r\v' -> 'metad-progress v1 step=a status=ok'
 */
function cleanLine(line: string): string {
  const clean = line.replace(CONTROL, '');
  return clean.length > MAX_LINE_CHARS ? clean.slice(0, MAX_LINE_CHARS - 1) + '…' : clean;
}

/** Lines that contain any of `secrets` (non-empty values) are replaced whole. Pure. */
export function redactLines(lines: readonly string[], secrets: Iterable<string>): string[] {
  const vals = [...secrets].filter((v) => v.length > 0);
  return lines.map((l) => (vals.some((v) => l.includes(v)) ? REDACTED : l));
}

/** The runner's and the manager's own reasons; any other reason of a run is a hypervisor's text. */
export const OWN_REASONS: ReadonlySet<string> = new Set([
  'aborted',
  'hard deadline',
  'secrets not claimed in time',
  'powered off without a final report',
  'the agent reported failure',
  'queued too long',
  'daemon stopped',
  'daemon restarted',
  'instance removed',
  'domain gone across a daemon restart',
  'trusted create: still running at the hard deadline',
]);
export const CREATE_FAILED = 'the hypervisor could not create the domain (details in the daemon log)';
export const CANNOT_START = 'the run could not be prepared (details in the daemon log)';
const LEFT_BEHIND = 'failed (details in the daemon log)';
/** The runner's and the bounded hypervisor's own words for a destroy that did not happen (no paths, no libvirt text). */
const OWN_DESTROY_ERROR =
  /^(hypervisor [A-Za-z]+: no answer within \d+ ms|the create had not answered when the run ended: the domain may still appear)$/;

/**
 * The one function every record the job manager makes or changes passes before it is kept,
 * written or shown: lines cleaned (control characters, length) and then redacted against every
 * secret the job has held; error fields that are not metad's own words replaced by a pointer to
 * the log. Pure; a record it made comes out of it again unchanged (with the same secrets).
 */
export function scrubRecord(r: JobRecord, secrets: Iterable<string>): JobRecord {
  const next: JobRecord = { ...r, lines: redactLines(r.lines.map(cleanLine), secrets) };
  if (next.destroyError !== undefined && !OWN_DESTROY_ERROR.test(next.destroyError)) next.destroyError = LEFT_BEHIND;
  if (next.cleanupError !== undefined && !/^cleanup left: [a-z ,]+$/.test(next.cleanupError)) next.cleanupError = LEFT_BEHIND;
  return next;
}

/** The job record after a runner state change, not scrubbed yet (the manager's update does that). Pure. */
export function withRun(job: JobRecord, run: RunRecord): JobRecord {
  const next: JobRecord = { ...job, state: run.state, lines: [...run.lines] };
  const set = <K extends keyof JobRecord>(k: K, v: JobRecord[K] | undefined): void => {
    if (v !== undefined) next[k] = v;
  };
  set('createdAt', iso(run.createdAt));
  set('firstReportAt', iso(run.firstReportAt));
  set('endedAt', iso(run.endedAt));
  set('reason', run.reason);
  set('destroyError', run.destroyError);
  set('cleanupError', run.cleanupError);
  if (isEnded(next)) next.outcome = next.state as Outcome;
  return next;
}

/** Durable storage of the records, one file per instance (its latest job). */
export class JobRecordFiles {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdirs(this.dir, 0o700);
  }

  save(r: JobRecord): Promise<void> {
    return writeFileDurable(this.dir, `${r.instance}.json`, JSON.stringify(r, null, 1) + '\n');
  }

  remove(instance: string): Promise<void> {
    return removeFileDurable(this.dir, `${instance}.json`);
  }

  /** Every readable record; unreadable files are skipped (reported in `bad`). */
  async loadAll(): Promise<{ records: JobRecord[]; bad: string[] }> {
    const records: JobRecord[] = [];
    const bad: string[] = [];
    for (const f of (await readdir(this.dir)).sort()) {
      if (!f.endsWith('.json')) continue;
      try {
        const r = JSON.parse(await readFile(`${this.dir}/${f}`, 'utf8')) as Partial<JobRecord>;
        if (r.v !== 1 || typeof r.instance !== 'string' || !isInstanceName(r.instance) || `${r.instance}.json` !== f)
          throw new Error('not a job record');
        if (!Array.isArray(r.lines) || !r.lines.every((l) => typeof l === 'string')) throw new Error('not a job record');
        // Scrubbed again (control characters, long lines, foreign error text): a file of an older
        // version or edited by hand is shown by the same rules. The secrets are gone with the
        // process; the lines that held one were redacted when the record was written.
        records.push(scrubRecord(r as JobRecord, []));
      } catch {
        bad.push(f);
      }
    }
    return { records, bad };
  }
}

/**
 * The job manager's writes of its records, in the background and in order. Writes are
 * coalesced: per instance at most one write waits behind the one in flight, and it saves the
 * newest record when its turn comes. A guest that floods the pipe with progress lines (the
 * create script is untrusted) causes one durable write per write time, not one per line. A write
 * that fails is logged (`job record write failed`); the record in memory stays as it is.
 */
export class JobRecordWriter {
  private writes = Promise.resolve();
  /** Records changed since their last write was queued (see save). */
  private readonly unsaved = new Map<string, JobRecord>();

  constructor(
    private readonly files: JobRecordFiles,
    private readonly log: Logger,
  ) {}

  /** Queues the durable write of `rec` (its instance's newest record wins). */
  save(rec: JobRecord): void {
    const waiting = this.unsaved.has(rec.instance);
    this.unsaved.set(rec.instance, rec);
    if (waiting) return;
    this.writes = this.writes
      .then(() => {
        const newest = this.unsaved.get(rec.instance) ?? rec;
        this.unsaved.delete(rec.instance);
        return this.files.save(newest);
      })
      .catch((e: unknown) => {
        this.log.error({ instance: rec.instance, code: (e as NodeJS.ErrnoException).code ?? 'error' }, EV.jobRecordWriteFailed);
      });
  }

  /** Queues the deletion of the instance's record file, after the writes queued before it (a failure is ignored). */
  remove(instance: string): void {
    this.writes = this.writes.then(() => this.files.remove(instance)).catch(() => undefined);
  }

  /** Resolves once every write and deletion queued so far is done. */
  idle(): Promise<void> {
    return this.writes;
  }
}
