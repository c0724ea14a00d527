/**
 * Readiness for systemd (Type=notify): once both doors listen, tell the service manager.
 * Node has no unix datagram sockets, so the notification is sent by `systemd-notify --ready`, a
 * child process (hence NotifyAccess=all in the unit). systemd-notify waits for systemd to have
 * processed the message (its barrier, systemd >= 246), so the child exiting at once loses
 * nothing. Outside systemd (no NOTIFY_SOCKET) nothing happens. Process edge: spawns, never throws.
 */
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';
import { EV } from '../log/events.js';

type Run = (file: string, args: string[], done: (err: Error | null) => void) => void;

const run: Run = (file, args, done) => {
  execFile(file, args, { timeout: 10_000 }, (err) => done(err));
};

/** Send READY=1 if the service manager asked for it (NOTIFY_SOCKET); failures are logged. */
export function notifyReady(env: Record<string, string | undefined>, log: Logger, exec: Run = run): void {
  if (!env.NOTIFY_SOCKET) return;
  exec('systemd-notify', ['--ready'], (err) => {
    if (err) log.error({ err }, EV.notifyFailed);
  });
}
