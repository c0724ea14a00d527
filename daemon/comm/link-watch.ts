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
}

const MAX_BACKOFF_MS = 30_000;

export class LinkWatch {
  private child: ToolProcess | undefined;
  private stopped = false;
  private backoff = 500;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: LinkWatchOptions) {}

  start(): void {
    if (this.stopped || this.child) return;
    const child = spawnTool(this.o.ipPath, ['-o', 'monitor', 'link'], ['ignore', 'pipe', 'ignore']);
    this.child = child;
    const started = Date.now();
    if (child.stdout)
      createInterface({ input: child.stdout }).on('line', (line) => {
        const e = parseMonitorLine(line);
        if (e) this.o.onEvent(e);
      });
    child.once('error', () => undefined); // 'exit' follows (or never started: the backoff retries)
    child.once('close', (code, signal) => {
      this.child = undefined;
      if (this.stopped) return;
      if (Date.now() - started > MAX_BACKOFF_MS) this.backoff = 500;
      this.o.log.error({ code, signal, retryMs: this.backoff }, EV.commLinkWatchExited);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.start();
        this.o.onRestart();
      }, this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    });
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('close', () => resolve());
      child.kill('SIGTERM');
    });
  }
}
