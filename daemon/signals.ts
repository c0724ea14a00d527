/**
 * Signals of the running daemon (process edge, wired by `metad serve`):
 *  - SIGTERM/SIGINT: clean shutdown (stop accepting, wipe secrets, flush the log, exit 0);
 *  - SIGUSR1: ignored and logged; the Node inspector it would open stays closed
 *    (daemon/no-inspector.ts, imported first by the entry point).
 */
import type { Logger } from 'pino';
import type { Running } from './main.js';
import { closeInspector, onSigusr1 } from './no-inspector.js';
import { EV } from './events.js';

export function handleSignals(r: Running, log: Logger): void {
  let stopping = false;
  const stop = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, EV.stopping);
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    r.close()
      .then(() => {
        log.info(EV.stopped);
        log.flush();
        setTimeout(() => process.exit(0), 50).unref();
      })
      .catch((err: unknown) => {
        log.error({ err }, EV.shutdownFailed);
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  onSigusr1(() => log.warn({ signal: 'SIGUSR1' }, EV.signalIgnored));
  // A SIGUSR1 that reached node while it was still starting may have opened the inspector.
  if (closeInspector()) log.warn(EV.inspectorClosed);
}
