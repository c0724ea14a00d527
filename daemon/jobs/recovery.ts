/**
 * Install jobs across a daemon restart (kill -9 included): what the job manager does at start
 * with the records it finds in the records dir (`loadRecords`) and with the unfinished ones
 * against the appliance domains it finds (`recoverJobs`), and what the runner needs to go on
 * supervising an adopted domain (`resumedOf`). The jobs stay the manager's: recovery decides,
 * the manager's `end` and `adopt` carry the decisions out.
 */
import type { Logger } from 'pino';
import type { Hypervisor } from '../../appliance/hypervisor.js';
import { parseProgress } from '../../appliance/progress.js';
import type { RunSpec } from '../../appliance/runner.js';
import type { Clock } from '../clock.js';
import { EV } from '../log/events.js';
import { itemsOf, type LeftoverItem } from './leftovers.js';
import { DOMAIN_PREFIX } from './prepare.js';
import { isEnded, type JobRecord, type JobRecordFiles } from './record.js';

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const msOf = (iso: string | undefined): number | undefined => (iso === undefined ? undefined : Date.parse(iso));

/**
 * The records of earlier jobs, for status and list. An ended record of an incarnation that is
 * no longer registered (`current` false: the instance was removed, or removed and registered
 * again) is deleted; an unfinished one is kept for recoverJobs.
 */
export async function loadRecords(files: JobRecordFiles, current: (r: JobRecord) => boolean): Promise<JobRecord[]> {
  await files.init();
  const { records } = await files.loadAll();
  const kept: JobRecord[] = [];
  for (const r of records) {
    if (isEnded(r) && !current(r)) {
      await files.remove(r.instance).catch(() => undefined);
      continue;
    }
    kept.push(r);
  }
  return kept;
}

/**
 * What the runner needs to resume a run recorded before a restart: when its domain was created
 * and first reported, and the agent's final status among the recorded progress lines, if it
 * reported one (a power-off after it is then success).
 */
export function resumedOf(r: JobRecord): NonNullable<RunSpec['resumed']> {
  const final = r.lines
    .map((l) => parseProgress(l))
    .filter((p) => p?.step === 'final')
    .at(-1)?.status;
  return { createdAt: msOf(r.createdAt), firstReportAt: msOf(r.firstReportAt), final };
}

export interface RecoveryDeps {
  clock: Clock;
  log: Logger;
  hypervisor: () => Promise<Hypervisor>;
  /** Removes what `prepare` made for `domain` (overlay, tap), found by name. */
  release?: ((instance: string, domain: string) => Promise<void>) | undefined;
  /** Reports what could not be removed (the manager's leftover sink). */
  leftBehind: (items: readonly LeftoverItem[], during: string, err: unknown) => void;
  /** The manager's records of no queued or live job: ended ones, and unfinished ones not recovered yet. */
  records: readonly JobRecord[];
  /** The instance has a queued or live job (requested since the restart): its old record is left alone. */
  hasJob: (instance: string) => boolean;
  /** Ends the unfinished job of `rec` with `rec` (what its run made is released already). */
  end: (rec: JobRecord) => void;
  /** Supervises the running domain of `rec` again, to the recorded deadlines (absolute, clock ms). */
  adopt: (rec: JobRecord, t: { deadlineAt: number; claimDeadlineAt: number }) => void;
  /** The domains of queued and live jobs, adopted ones included: never orphans. */
  liveDomains: () => ReadonlySet<string>;
}

/**
 * The records of unfinished jobs against the domains that exist. A live job whose domain still
 * runs is adopted with its recorded deadlines (one that already passed ends it at once,
 * timed-out); a live job whose domain is gone failed (its final report is lost); a queued job is
 * aborted (its secrets died with the old process); a domain with our prefix that no live job
 * names is destroyed (orphan), and `release` removes what was made for it. Without a usable
 * hypervisor nothing is touched (`deferred`: the caller runs it again later). What cannot be
 * destroyed or released is reported as a leftover. Safe to run again: live jobs' domains are
 * never orphans.
 */
export async function recoverJobs(d: RecoveryDeps): Promise<{ adopted: string[]; orphans: string[]; deferred?: true }> {
  const open = d.records.filter((r) => !isEnded(r));
  // Every domain we create has a record first (written when queued): no open record, and no
  // ended one whose final destroy failed (libvirtd down too long), nothing to find.
  const undestroyed = d.records.some((r) => isEnded(r) && r.destroyError !== undefined);
  if (open.length === 0 && !undestroyed) return { adopted: [], orphans: [] };
  let hv: Hypervisor;
  let domains: string[];
  try {
    hv = await d.hypervisor();
    domains = await hv.list(DOMAIN_PREFIX);
  } catch (e) {
    d.log.warn({ jobs: open.length, err: messageOf(e) }, EV.jobRecoveryDeferred);
    return { adopted: [], orphans: [], deferred: true }; // the caller retries (daemon/daemon.ts)
  }
  // What it could not remove is reported, not dropped.
  const release = async (instance: string, domain: string): Promise<void> => {
    await d.release?.(instance, domain).catch((e: unknown) => {
      d.leftBehind(itemsOf(e, { kind: 'cleanup', name: domain, instance, domain }), 'recovery', e);
    });
  };
  const adopted: string[] = [];
  const at = new Date(d.clock.now()).toISOString();
  for (const r of open) {
    if (d.hasJob(r.instance)) continue;
    const running = r.state !== 'queued' && r.deadlineAt !== undefined && domains.includes(r.domain);
    if (!running) {
      const rec: JobRecord =
        r.state === 'queued'
          ? { ...r, state: 'aborted', outcome: 'aborted', reason: 'daemon restarted', endedAt: at }
          : { ...r, state: 'failed', outcome: 'failed', reason: 'domain gone across a daemon restart', endedAt: at };
      await release(r.instance, r.domain);
      d.end(rec);
      continue;
    }
    d.adopt(r, { deadlineAt: Date.parse(r.deadlineAt ?? ''), claimDeadlineAt: Date.parse(r.claimDeadlineAt ?? r.deadlineAt ?? '') });
    adopted.push(r.instance);
  }
  // Live jobs' domains are not orphans: adopted ones, and (when this runs again on the retry
  // timer) jobs started since.
  const named = d.liveDomains();
  const orphans = domains.filter((dom) => !named.has(dom));
  const left: string[] = [];
  for (const dom of orphans) {
    const owner = open.find((r) => r.domain === dom)?.instance;
    await hv.destroy(dom).catch((e: unknown) => {
      left.push(dom);
      d.leftBehind([{ kind: 'domain', name: dom, instance: owner, domain: dom }], 'recovery', e);
    });
    if (owner !== undefined) await release(owner, dom);
  }
  if (adopted.length + orphans.length > 0) {
    d.log.info({ adopted: adopted.length, orphans: orphans.length - left.length, orphansLeft: left.length }, EV.jobsRecovered);
  }
  return { adopted, orphans };
}
