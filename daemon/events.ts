/**
 * The catalogue of log events: every message the daemon logs, with its level and fields, in one
 * place (docs/logging.md is generated from it by `metad log-events`; a test keeps them equal and
 * checks that the code logs nothing else). Fields never carry parameter values, tokens or bodies.
 */
export const EVENTS = {
  started: { msg: 'metad started', level: 'info', fields: 'adminSocket, guest[{host,port}], instances' },
  startFailed: { msg: 'metad failed to start', level: 'fatal', fields: 'err' },
  stopping: { msg: 'metad stopping', level: 'info', fields: 'signal' },
  stopped: { msg: 'metad stopped', level: 'info', fields: '' },
  shutdownFailed: { msg: 'shutdown failed', level: 'error', fields: 'err' },
  reloaded: {
    msg: 'configuration reloaded',
    level: 'info',
    fields: 'applied (changed keys now in effect), needsRestart (changed keys that are not)',
  },
  reloadNeedsRestart: {
    msg: 'configuration change needs a restart',
    level: 'warn',
    fields: 'keys (changed in the file; the running values stay until metad restarts)',
  },
  reloadFailed: { msg: 'configuration reload failed', level: 'error', fields: 'problems or err (the running configuration stays)' },
  signalIgnored: { msg: 'signal ignored', level: 'warn', fields: 'signal (SIGUSR1: node would open its inspector; metad keeps it closed)' },
  notifyFailed: {
    msg: 'readiness notification failed',
    level: 'error',
    fields: 'err (systemd-notify --ready; the unit will time out starting)',
  },
  inspectorClosed: { msg: 'node inspector closed', level: 'warn', fields: '— (a SIGUSR1 during start had opened it)' },
  instancesLoaded: { msg: 'instances loaded', level: 'info', fields: 'instances, quarantined' },
  quarantined: {
    msg: 'state file quarantined',
    level: 'error',
    fields: 'file, quarantinedAs (null: could not be moved, left in place and not loaded), reason, moveFailed?',
  },
  outsideCommRange: {
    msg: 'instance outside the comm range',
    level: 'warn',
    fields: 'instance, commRange (loaded anyway; new writes must be in range)',
  },
  reservedCommAddress: {
    msg: 'instance has a comm address no guest may have',
    level: 'warn',
    fields:
      'instance, rule (loaded from an older version; re-register it with another address: the metadata address never identifies a guest)',
  },
  notDurable: {
    msg: 'state change not confirmed durable',
    level: 'error',
    fields: 'code, dir (written and in effect, but the directory sync failed)',
  },
  stateWriteFailed: { msg: 'state dir write failed', level: 'error', fields: 'code, dir' },
  internalError: { msg: 'internal error', level: 'error', fields: 'incidentId, method, route, err (stack)' },
  instanceRegistered: { msg: 'instance registered', level: 'info', fields: 'instance, created, generation' },
  instanceReplaced: { msg: 'instance replaced', level: 'info', fields: 'instance, created, generation' },
  instancePatched: { msg: 'instance patched', level: 'info', fields: 'instance, generation' },
  instanceRemoved: { msg: 'instance removed', level: 'info', fields: 'instance, secretsWiped' },
  paramsUpdated: { msg: 'parameters updated', level: 'info', fields: 'instance, visibility, mode, count' },
  paramsCleared: { msg: 'parameters cleared', level: 'info', fields: 'instance, visibility' },
  paramRemoved: { msg: 'parameter removed', level: 'info', fields: 'instance, visibility' },
  secretsExpired: { msg: 'expired secrets wiped', level: 'info', fields: 'wiped' },
  pipeHostSent: { msg: 'pipe: host sent', level: 'info', fields: 'instance, bytes' },
  passwordCleared: { msg: 'password cleared', level: 'info', fields: 'instance' },
  adminRequest: { msg: 'admin request', level: 'debug', fields: 'method, route, status, ms' },
  guestUnknownSource: {
    msg: 'guest request from an unknown source address',
    level: 'warn',
    fields: 'source, suppressedBefore (sampled: once per address per 10 s)',
  },
  guestRefused: {
    msg: 'guest request refused',
    level: 'warn',
    fields: 'instance, status, method, path, suppressedBefore (sampled: once a second per instance)',
  },
  guestFailed: { msg: 'guest request failed', level: 'error', fields: 'instance, path, err (stack)' },
  guestTokenRefused: {
    msg: 'guest token refused',
    level: 'warn',
    fields: 'instance, reason, suppressedBefore (sampled: once per instance per 10 s)',
  },
  guestPasswordSet: {
    msg: 'guest set its password',
    level: 'info',
    fields: 'instance, suppressedBefore (sampled: once per instance per 10 s)',
  },
  guestPipeFull: {
    msg: 'guest pipe write refused: buffer full',
    level: 'warn',
    fields: 'instance, bytes, queued, suppressedBefore (sampled: once per instance per 10 s)',
  },
  guestScriptRefused: {
    msg: 'guest asked for a missing or refused OS script',
    level: 'warn',
    fields: 'instance, script, suppressedBefore (sampled: once per instance per 10 s)',
  },
  guestLogSuppressed: {
    msg: 'guest-triggered log lines suppressed',
    level: 'warn',
    fields:
      'event (the msg of the lines held back), suppressed (how many: sampled per source, or beyond 10,000 sources at once), windowMs (since the first one held back; one line per event per 10 s window)',
  },
  commAnchorReady: { msg: 'comm network: anchor ready', level: 'info', fields: 'anchor, kind (dummy | veth | existing | bridge)' },
  commReconciled: {
    msg: 'comm network reconciled',
    level: 'info',
    fields: 'nics, missingTaps, routesAdded, routesDeleted, tapsReleased, ms',
  },
  commPartial: { msg: 'comm network: some changes failed (retried on the next reconcile)', level: 'warn', fields: 'failed' },
  commFailed: { msg: 'comm network reconcile failed', level: 'error', fields: 'err' },
  commLinkDoorFailed: { msg: 'comm network: cannot listen on a tap (retried on the next reconcile)', level: 'warn', fields: 'tap, code' },
  nicUp: { msg: 'nic up', level: 'info', fields: 'instance, tap' },
  nicDown: { msg: 'nic down', level: 'info', fields: 'instance, tap' },
  dhcpOrphanKilled: { msg: 'dnsmasq left by an earlier metad killed', level: 'warn', fields: 'pid' },
  dhcpStarted: { msg: 'dnsmasq started', level: 'info', fields: 'pid' },
  dhcpExited: { msg: 'dnsmasq exited; restarting it', level: 'error', fields: 'code, signal, reason (its last log line)' },
  dhcpFailed: { msg: 'dnsmasq could not be started', level: 'error', fields: 'code, hint' },
  jobRequested: { msg: 'install job requested', level: 'info', fields: 'instance, domain, timeoutSec' },
  jobVirtType: {
    msg: 'install appliance virtualization chosen',
    level: 'info',
    fields: 'virtType (kvm or qemu: appliance.virtType auto, decided by a KVM trial boot once per daemon life)',
  },
  jobEnded: { msg: 'install job ended', level: 'info', fields: 'instance, domain, outcome, reason' },
  jobsRecovered: {
    msg: 'install jobs recovered after a restart',
    level: 'info',
    fields: 'adopted (domains supervised again with their recorded deadlines), orphans (domains destroyed)',
  },
  jobLeftoversRemoved: {
    msg: 'install leftovers removed',
    level: 'info',
    fields: 'removed (appliance taps, console logs and overlays no unfinished job owns, found at start)',
  },
  jobRecoveryDeferred: { msg: 'install jobs not recovered: hypervisor unavailable', level: 'warn', fields: 'jobs, err' },
  jobRecordWriteFailed: { msg: 'install job record write failed', level: 'error', fields: 'instance, code' },
  guestConnCap: {
    msg: 'guest connection refused: per-source cap',
    level: 'warn',
    fields: 'source, limit, suppressedBefore (sampled: once per address per 10 s)',
  },
} as const;

export type EventName = keyof typeof EVENTS;

/** The message of an event: `log.info({ instance }, EV.instanceRemoved)`. */
export const EV = Object.fromEntries(Object.entries(EVENTS).map(([k, v]) => [k, v.msg])) as { [K in EventName]: (typeof EVENTS)[K]['msg'] };

/** docs/logging.md, generated. */
export function loggingDoc(): string {
  const rows = Object.values(EVENTS).map((e) => `| \`${e.msg}\` | ${e.level} | ${e.fields || '—'} |`);
  return [
    '# Log events',
    '',
    'metad logs pino JSON lines (stdout; the journal under systemd). Every line has `level`, `time`,',
    '`service: "metad"` and `msg`; guest-door lines also carry `instance` and `door: "guest"`.',
    'These are all the messages it logs (generated from daemon/events.ts by `metad log-events`).',
    'No field ever holds a parameter value, a token, a password or a request body; as a second',
    'line of defence the logger censors fixed paths (`params.private`, `params.secret`, `iam`,',
    '`token`, `password`, the token and authorization headers) to `[secret]`.',
    '',
    '| msg | level | fields |',
    '|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}
