/**
 * Node opens its inspector (127.0.0.1:9229, no authentication: anyone local could run code in
 * the daemon and read every secret) when the process gets SIGUSR1. Importing this module — the
 * first import of the `metad` entry — makes that impossible for the rest of the process's life:
 *  - a JS listener for SIGUSR1 replaces node's own handler, so later signals are only logged;
 *  - a SIGUSR1 that arrived while node itself was starting (before this module ran) may already
 *    have opened the inspector, or be about to: `closeInspector()` closes it, here and again when
 *    the daemon has started and on every SIGUSR1.
 * Node >= 22.14 has `--disable-sigusr1`; Node 20 does not, hence this. Side effects on import.
 */
import inspector from 'node:inspector';

let onSignal: (() => void) | undefined;

/** Close the inspector if something opened it; true if it was open. */
export function closeInspector(): boolean {
  if (inspector.url() === undefined) return false;
  inspector.close();
  return true;
}

/** What to do (besides keeping the inspector closed) when SIGUSR1 arrives: log it. */
export function onSigusr1(fn: () => void): void {
  onSignal = fn;
}

process.on('SIGUSR1', () => {
  closeInspector();
  onSignal?.();
});
closeInspector();
