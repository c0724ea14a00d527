/**
 * Signals of the running daemon (process edge, wired by `metad serve`):
 *  - SIGTERM/SIGINT: clean shutdown (stop accepting, wipe secrets, flush the log, exit 0);
 *  - SIGHUP: reload: re-read the configuration; what can change live changes, what cannot is
 *    logged as needing a restart, an invalid file is logged and changes nothing. Never exits;
 *  - SIGUSR1: ignored and logged; the Node inspector it would open stays closed
 *    (daemon/process/no-inspector.ts, imported first by the entry point).
 */
import type { Logger } from 'pino';
import type { Running } from './main.js';
import { closeInspector, onSigusr1 } from './no-inspector.js';
import { EV } from '../log/events.js';
import { ConfigError, type Config } from '../config/config.js';

/** Re-read the configuration as `serve` read it at start (file, environment, validation). */
export type ConfigSource = () => Readonly<Config>;

export function handleSignals(r: Running, log: Logger, reread: ConfigSource): void {
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
  process.on('SIGHUP', () => {
    if (!stopping) reload(r, log, reread);
  });
  onSigusr1(() => log.warn({ signal: 'SIGUSR1' }, EV.signalIgnored));
  // A SIGUSR1 that reached node while it was still starting may have opened the inspector.
  if (closeInspector()) log.warn(EV.inspectorClosed);
}

function reload(r: Running, log: Logger, reread: ConfigSource): void {
  let next: Readonly<Config>;
  try {
    next = reread();
  } catch (err) {
    if (err instanceof ConfigError) log.error({ problems: err.problems }, EV.reloadFailed);
    else log.error({ err }, EV.reloadFailed);
    return;
  }
  const plan = r.reload(next);
  log.info({ applied: plan.applied, needsRestart: plan.needsRestart }, EV.reloaded);
  if (plan.needsRestart.length > 0) log.warn({ keys: plan.needsRestart }, EV.reloadNeedsRestart);
}
