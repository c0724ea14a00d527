/**
 * One install appliance run: a pure state machine (`reduce`) and the loop that drives it
 * (`runAppliance`) with an injected Hypervisor and Clock, so unit tests run it in milliseconds
 * with the fakes.
 *
 *   pending --created--> booting --first progress line--> running
 *   any live state --> succeeded | failed | timed-out | aborted | stuck   (terminal)
 *
 * - succeeded needs BOTH the agent's `final status=succeeded` and the domain gone (powered off);
 *   gone without it is failed.
 * - The hard deadline is absolute and nothing the guest does extends it; at the deadline the
 *   run is timed-out. A run whose appliance has not claimed its secrets by the claim deadline
 *   is stuck. An abort (signal) ends it as aborted.
 * - Whatever the outcome, a domain that was (or may have been) created is destroyed in
 *   `finally` (destroy of a gone domain is a no-op), then `cleanup` runs (overlay, tap, secrets:
 *   the caller's), whether the destroy succeeded or not. A hypervisor that cannot be reached
 *   (libvirtd restarting) does not stop the clock: a failing `state` is a hiccup and the
 *   deadlines still end the run; the final destroy is retried a bounded number of times
 *   (DESTROY_RETRY_MS), and if it still fails the record says so (`destroyError`).
 * - A hypervisor that does not answer at all (libvirtd stopped, a hung monitor) does not stop
 *   it either: every call is bounded (CALL_BOUNDS); the create is raced against the hard
 *   deadline and the abort, each `state` call against the hard deadline, the claim deadline
 *   (until the secrets are claimed) and the abort, but gets at least one poll interval to
 *   answer. So the run ends on time whatever the hypervisor does: at the hard deadline, on an
 *   abort, and at the claim deadline once the domain is created (a create that hangs past the
 *   claim deadline ends at its own bound or the hard deadline, whichever comes first). A create
 *   given up on may still make the domain later: the run ends with `destroyError` saying so,
 *   and the caller keeps retrying the destroy (daemon/jobs/leftovers.ts). A destroy that does
 *   not answer is not retried here.
 * - Deadlines are measured on the clock's monotonic reading (`mono`): a wall-clock step moves
 *   neither; the record's times stay wall-clock.
 * Within one poll, lines are taken first, then the domain state, then the deadlines: a domain
 * found gone at the deadline's poll powered off before it was seen, and counts as finished.
 */
import { bounded, TimedOut, type Clock } from '../daemon/clock.js';
import { CALL_BOUNDS, HypervisorUnavailable, type CallBounds, type Hypervisor } from './hypervisor.js';
import { parseProgress, splitLines } from './progress.js';

export type RunState = 'pending' | 'booting' | 'running' | 'succeeded' | 'failed' | 'timed-out' | 'aborted' | 'stuck';
const TERMINAL: readonly RunState[] = ['succeeded', 'failed', 'timed-out', 'aborted', 'stuck'];

export type RunEvent =
  | { type: 'created'; at: number }
  | { type: 'adopted'; at: number; createdAt?: number | undefined; firstReportAt?: number | undefined; final?: string | undefined }
  | { type: 'create-failed'; at: number; reason: string }
  | { type: 'line'; at: number; line: string }
  | { type: 'gone'; at: number }
  | { type: 'deadline'; at: number }
  | { type: 'claim-deadline'; at: number }
  | { type: 'abort'; at: number };

export interface RunRecord {
  state: RunState;
  /** The agent's final report ('succeeded' | 'failed'), once it arrived. */
  final?: string;
  /** The last progress lines (at most MAX_LINES). */
  lines: string[];
  reason?: string;
  /**
   * Set when the final destroy failed or did not answer, or a create given up on may still make
   * the domain: something may be left behind.
   */
  destroyError?: string;
  /** Set when the cleanup failed. */
  cleanupError?: string;
  startedAt: number;
  createdAt?: number;
  firstReportAt?: number;
  endedAt?: number;
}

export const MAX_LINES = 50;

/** Waits (ms) between attempts of the final destroy while the hypervisor cannot be reached: 7.75 s in all. */
export const DESTROY_RETRY_MS: readonly number[] = [250, 500, 1000, 2000, 4000];

export function isTerminal(s: RunState): boolean {
  return TERMINAL.includes(s);
}

export function initialRecord(at: number): RunRecord {
  return { state: 'pending', lines: [], startedAt: at };
}

/** The pure transition function. Events after a terminal state change nothing. */
export function reduce(r: RunRecord, ev: RunEvent): RunRecord {
  if (isTerminal(r.state)) return r;
  const end = (state: RunState, reason?: string): RunRecord => ({ ...r, state, endedAt: ev.at, ...(reason ? { reason } : {}) });
  switch (ev.type) {
    case 'created':
      return r.state === 'pending' ? { ...r, state: 'booting', createdAt: ev.at } : r;
    case 'adopted': {
      // Found again after a daemon restart: the run resumes where it was (running once it had reported).
      if (r.state !== 'pending') return r;
      const reported = ev.firstReportAt !== undefined ? { firstReportAt: ev.firstReportAt } : {};
      // A final report the old process recorded still counts: the power-off that follows is success.
      const final = ev.final !== undefined ? { final: ev.final } : {};
      return {
        ...r,
        ...reported,
        ...final,
        state: ev.firstReportAt !== undefined ? 'running' : 'booting',
        createdAt: ev.createdAt ?? ev.at,
      };
    }
    case 'create-failed':
      return end('failed', ev.reason);
    case 'line': {
      const p = parseProgress(ev.line);
      if (!p) return r;
      const lines = [...r.lines, ev.line].slice(-MAX_LINES);
      const next: RunRecord = { ...r, lines, state: r.state === 'booting' ? 'running' : r.state, firstReportAt: r.firstReportAt ?? ev.at };
      return p.step === 'final' ? { ...next, final: p.status } : next;
    }
    case 'gone':
      return r.final === 'succeeded'
        ? end('succeeded')
        : end('failed', r.final === undefined ? 'powered off without a final report' : 'the agent reported failure');
    case 'deadline':
      return end('timed-out', 'hard deadline');
    case 'claim-deadline':
      return end('stuck', 'secrets not claimed in time');
    case 'abort':
      return end('aborted', 'aborted');
  }
}

export interface RunSpec {
  /** Domain name (the runner's prefix + a short id). */
  name: string;
  xml: string;
  /** Absolute hard deadline (clock ms). */
  deadlineAt: number;
  /** Absolute time by which the appliance must have claimed its secrets (omit: no check). */
  claimDeadlineAt?: number;
  /** The domain already exists (found again after a daemon restart): supervise it, do not create it. */
  adopt?: boolean;
  /** With adopt: when the domain was created and first reported, as recorded before the restart. */
  resumed?: { createdAt?: number | undefined; firstReportAt?: number | undefined; final?: string | undefined };
}

export interface RunDeps {
  hv: Hypervisor;
  clock: Clock;
  /** How often the domain state and the pipe are polled (ms). */
  pollMs: number;
  /** New bytes the guest wrote to the pipe since the last call (the progress channel). */
  takeProgress: () => string;
  /** True once the appliance has claimed its secrets. */
  claimed?: () => boolean;
  /** Every state change (for the job record and watchers). */
  onChange?: (r: RunRecord) => void;
  /** Runs once the run has ended and the destroy was tried (succeeded or not), whatever happened (overlay, tap, secrets). */
  cleanup?: () => Promise<void>;
  signal?: AbortSignal;
  /** Waits between attempts of the final destroy (default DESTROY_RETRY_MS). */
  destroyRetryMs?: readonly number[];
  /** How long each hypervisor call may take (default CALL_BOUNDS). */
  callBounds?: Partial<CallBounds>;
}

const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/**
 * Destroys `name`, retrying after each wait while it fails: its answer, or the last error.
 * A destroy that does not answer within `boundMs` is not retried: the hypervisor is hung, not
 * restarting, and more calls would only queue behind it (the caller retries on its slow timer).
 */
async function destroyWithRetry(
  hv: Hypervisor,
  name: string,
  clock: Clock,
  waits: readonly number[],
  boundMs: number,
): Promise<{ error: string } | { result: 'destroyed' | 'gone' }> {
  for (let attempt = 0; ; attempt++) {
    try {
      return { result: await bounded(clock, boundMs, 'hypervisor destroy', hv.destroy(name)) };
    } catch (e) {
      const wait = waits[attempt];
      if (wait === undefined || e instanceof TimedOut) return { error: messageOf(e) };
      await clock.sleep(wait);
    }
  }
}

/**
 * Progress lines that arrived after the run ended (written just before an abort or the deadline,
 * still on their way while the domain was destroyed): kept in the record's lines, informative
 * only; they change neither the state nor the final report. Pure.
 */
function withLateLines(r: RunRecord, lines: readonly string[]): RunRecord {
  const late = lines.filter((l) => parseProgress(l) !== undefined);
  return late.length === 0 ? r : { ...r, lines: [...r.lines, ...late].slice(-MAX_LINES) };
}

/** Runs one appliance to a terminal state. Never rejects for guest or hypervisor trouble. */
export async function runAppliance(spec: RunSpec, deps: RunDeps): Promise<RunRecord> {
  const { hv, clock } = deps;
  const bounds: CallBounds = { ...CALL_BOUNDS, ...deps.callBounds };
  // The deadlines on the monotonic clock: a step of the wall clock during the run moves neither.
  const toMono = (wallAt: number): number => clock.mono() + (wallAt - clock.now());
  const deadline = toMono(spec.deadlineAt);
  const claimDeadline = spec.claimDeadlineAt === undefined ? Infinity : toMono(spec.claimDeadlineAt);
  let rec = initialRecord(clock.now());
  let tail = '';
  const apply = (ev: RunEvent): void => {
    const next = reduce(rec, ev);
    if (next !== rec) {
      rec = next;
      deps.onChange?.(rec);
    }
  };
  const drain = (): void => {
    const { lines, rest } = splitLines(tail, deps.takeProgress());
    tail = rest;
    for (const line of lines) apply({ type: 'line', at: clock.now(), line });
  };
  const unclaimed = (): boolean => spec.claimDeadlineAt !== undefined && !(deps.claimed?.() ?? false);
  const nextDeadline = (): number => Math.min(deadline, unclaimed() ? claimDeadline : Infinity);
  const aborted = (e: unknown): boolean => deps.signal?.aborted === true && e === deps.signal.reason;

  // At most one state call at a time: one that has not answered is waited for again at the
  // next poll, not joined by another (a hung hypervisor would pile them up).
  let inFlight: Promise<unknown> | undefined;
  const askState = (): Promise<unknown> => {
    if (!inFlight) {
      const p = hv.state(spec.name);
      inFlight = p;
      const clear = (): void => {
        if (inFlight === p) inFlight = undefined;
      };
      p.then(clear, clear);
    }
    // Up to the next deadline (or the call's bound), but always one poll interval to answer.
    const ms = Math.max(Math.min(bounds.state, nextDeadline() - clock.mono()), Math.min(deps.pollMs, bounds.state));
    return bounded(clock, ms, 'hypervisor state', inFlight, deps.signal);
  };

  const watch = async (): Promise<void> => {
    while (!isTerminal(rec.state)) {
      try {
        await clock.sleep(Math.max(0, Math.min(deps.pollMs, nextDeadline() - clock.mono())), deps.signal);
      } catch {
        drain(); // what the agent wrote just before the abort still counts
        apply({ type: 'abort', at: clock.now() });
        return;
      }
      drain();
      let state: unknown;
      try {
        state = await askState();
      } catch (e) {
        if (aborted(e)) {
          drain();
          apply({ type: 'abort', at: clock.now() });
          return;
        }
        state = undefined; // a hiccup (reconnecting) or no answer in time: the deadlines still hold
      }
      if (state === 'gone') {
        // The agent writes its final report before it powers off: lines that came in while the
        // state was asked for (or while an earlier ask was still out) are read before the end.
        drain();
        apply({ type: 'gone', at: clock.now() });
      }
      const at = clock.mono();
      if (at >= deadline) apply({ type: 'deadline', at: clock.now() });
      else if (unclaimed() && at >= claimDeadline) apply({ type: 'claim-deadline', at: clock.now() });
    }
  };

  let created = false;
  /** The create was given up on (deadline, abort, no answer): it may still make the domain. */
  let abandoned = false;
  try {
    if (deps.signal?.aborted) {
      apply({ type: 'abort', at: clock.now() });
      created = spec.adopt === true;
    } else if (spec.adopt) {
      created = true;
      apply({ type: 'adopted', at: clock.now(), ...spec.resumed });
      await watch();
    } else {
      try {
        const ms = Math.min(bounds.createTransient, deadline - clock.mono());
        await bounded(clock, ms, 'hypervisor createTransient', hv.createTransient(spec.name, spec.xml), deps.signal);
        created = true;
        apply({ type: 'created', at: clock.now() });
      } catch (e) {
        abandoned = e instanceof TimedOut || aborted(e);
        if (aborted(e)) apply({ type: 'abort', at: clock.now() });
        else if (e instanceof TimedOut && clock.mono() >= deadline) apply({ type: 'deadline', at: clock.now() });
        else apply({ type: 'create-failed', at: clock.now(), reason: messageOf(e) });
        // The create may have happened before the error (e.g. the connection died on the way
        // back): a domain of that name is destroyed below, not left running unsupervised. An
        // unreachable hypervisor (HypervisorUnavailable) never got the request.
        created =
          abandoned ||
          (!(e instanceof HypervisorUnavailable) &&
            (await bounded(clock, bounds.list, 'hypervisor list', hv.list(spec.name)).catch(() => [spec.name])).includes(spec.name));
      }
      if (rec.state === 'booting') await watch();
    }
  } finally {
    // A create given up on is settled when it answered before the destroy was sent, or when the
    // destroy found the domain it made; else it may still make the domain after this destroy.
    const createSettled = !abandoned || hv.busy?.(spec.name) === false;
    const destroyed = created
      ? await destroyWithRetry(hv, spec.name, clock, deps.destroyRetryMs ?? DESTROY_RETRY_MS, bounds.destroy)
      : undefined;
    let destroyError = destroyed && 'error' in destroyed ? destroyed.error : undefined;
    if (!createSettled && !(destroyed && 'result' in destroyed && destroyed.result === 'destroyed')) {
      destroyError ??= 'the create had not answered when the run ended: the domain may still appear';
    }
    if (destroyError !== undefined) rec = { ...rec, destroyError };
    if (created) rec = withLateLines(rec, splitLines(tail, deps.takeProgress()).lines);
    await deps.cleanup?.().catch((e: unknown) => {
      rec = { ...rec, cleanupError: messageOf(e) };
    });
  }
  return rec;
}
