/**
 * SIGHUP never ends metad: node's default for it is to exit, and daemon/process/signals.ts installs the
 * reload handler only once the daemon runs. Imported right after no-inspector.js by the `metad`
 * entry, this keeps a SIGHUP during the start (a reload sent too early, a terminal hang-up) from
 * killing the process; it is simply ignored until the reload handler exists. Side effect on import.
 */
process.on('SIGHUP', () => undefined);
