/**
 * Watches the host's network devices (`ip -o monitor link`, a supervised child: restarted with a
 * backoff when it exits) and reports each change as a LinkEvent. The comm network decides which
 * events need a reconcile (a port joining metad's bridge that metad does not know, a held tap
 * going, a registered tap appearing), so those are handled within milliseconds instead of at the
 * next registry change.
 */
import { spawnTool, type ToolProcess } from './exec.js';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { systemClock, type Clock } from '../clock.js';
import { EV } from '../log/events.js';

export interface LinkEvent {
  readonly deleted: boolean;
  readonly ifindex: number;
  readonly ifname: string;
  /** The bridge or bond the device is enslaved to (absent when none). */
  readonly master?: string;
}

/** One line of `ip -o monitor link` (`[Deleted ]IDX: NAME[@PEER]: <FLAGS> … [master M] …`). */
export function parseMonitorLine(line: string): LinkEvent | undefined {
  const m = /^(Deleted )?(\d+): ([^:@\s]+)(?:@[^:\s]*)?: <[^>]*>(.*)$/.exec(line.trim());
  if (!m) return undefined;
  const master = / master (\S+)/.exec(m[4] ?? '')?.[1];
  return { deleted: m[1] !== undefined, ifindex: Number(m[2]), ifname: m[3] ?? '', ...(master ? { master } : {}) };
}

export interface LinkWatchOptions {
  readonly ipPath: string;
  readonly log: Logger;
  /** Each parsed event. */
  readonly onEvent: (e: LinkEvent) => void;
  /** After the watcher (re)started: events may have been missed meanwhile. */
  readonly onRestart: () => void;
  /** The restart backoff waits and measures on it (default: the system clock). */
  readonly clock?: Clock;
  readonly spawnChild?: (file: string, args: readonly string[]) => ToolProcess;
}

/** The first restart waits this long; each exit doubles it up to MAX_BACKOFF_MS. */
export const FIRST_BACKOFF_MS = 500;
/** Also: a watcher that ran longer than this before it exited starts the backoff over. */
export const MAX_BACKOFF_MS = 30_000;

export class LinkWatch {
  private child: ToolProcess | undefined;
  private stopped = false;
  private backoff = FIRST_BACKOFF_MS;
  private readonly abort = new AbortController();
  private readonly clock: Clock;

  constructor(private readonly o: LinkWatchOptions) {
    this.clock = o.clock ?? systemClock;
  }

  start(): void {
    if (this.stopped || this.child) return;
    const args = ['-o', 'monitor', 'link'];
    const child = (this.o.spawnChild ?? ((f, a) => spawnTool(f, a, ['ignore', 'pipe', 'ignore'])))(this.o.ipPath, args);
    this.child = child;
    const started = this.clock.mono();
    if (child.stdout)
      createInterface({ input: child.stdout }).on('line', (line) => {
        const e = parseMonitorLine(line);
        if (e) this.o.onEvent(e);
      });
    child.once('error', () => undefined); // 'exit' follows (or never started: the backoff retries)
    child.once('close', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      if (this.clock.mono() - started > MAX_BACKOFF_MS) this.backoff = FIRST_BACKOFF_MS;
      this.o.log.error({ code, signal, retryMs: this.backoff }, EV.commLinkWatchExited);
      void this.restartAfter(this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    });
  }

  private async restartAfter(ms: number): Promise<void> {
    try {
      await this.clock.sleep(ms, this.abort.signal);
    } catch {
      return; // stopped meanwhile
    }
    if (this.stopped) return;
    this.start();
    this.o.onRestart();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('close', () => resolve());
      child.kill('SIGTERM');
    });
  }
}
