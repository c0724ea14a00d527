/**
 * The catalogue of log events: every message the daemon logs, with its level and fields, in one
 * place (docs/logging.md is generated from it by `metad log-events`; a test keeps them equal and
 * checks that the code logs nothing else). Fields never carry parameter values, tokens or bodies.
 */
export const EVENTS = {
  started: { msg: 'metad started', level: 'info', fields: 'version, adminSocket, guest[{host,port}], instances' },
  installsUnavailable: {
    msg: 'install jobs unavailable',
    level: 'warn',
    fields:
      'reason (the comm network is on but installs cannot run: the libvirt binding and the packages it needs, or no appliance image; also in GET /v1/health `installs`)',
  },
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
  ganetiListening: {
    msg: 'ganeti feed listening',
    level: 'info',
    fields: "socket, mode, group (null: metad's own), pidFile (docs/ganeti.md)",
  },
  ganetiFed: {
    msg: 'ganeti: instance fed',
    level: 'info',
    fields:
      'instance, created, generation, secrets (secret parameters now in the vault), os, osDefinition (the directory its scripts are served from; null: none in os.searchPath)',
  },
  ganetiOsMissing: {
    msg: 'ganeti: OS definition not found',
    level: 'warn',
    fields: 'instance, os, searchPath (the instance is stored; os/scripts/ serves nothing until the definition exists)',
  },
  ganetiReplaced: {
    msg: 'ganeti: instance replaced by another with its comm address',
    level: 'info',
    fields: 'instance (the one pushed), replaced (the fed instance removed for it), commIpv4',
  },
  ganetiRemoved: {
    msg: 'ganeti: instance removed: pushed without a communication NIC',
    level: 'info',
    fields: 'instance, secretsWiped',
  },
  ganetiIgnored: {
    msg: 'ganeti: push without a communication NIC changed nothing',
    level: 'info',
    fields: 'instance, reason (not registered | registered through the admin door, left as it is)',
  },
  ganetiRefused: {
    msg: 'ganeti: update refused',
    level: 'warn',
    fields: 'instance (when the push named one), err (what Ganeti was answered: fields and rules, never values)',
  },
  ganetiSecretsClaimed: {
    msg: 'ganeti: secret parameters claimed',
    level: 'info',
    fields:
      'instance, secrets (how many; never names or values), claim (once: the window ended with this read; ttl: the values stay until the TTL, a push or the tap going down)',
  },
  ganetiSecretsUnclaimed: {
    msg: 'ganeti: secret parameters not claimed',
    level: 'warn',
    fields:
      'instance, secrets (how many), state (expired | stuck | withdrawn | lost), reason (the TTL passed; the comm tap went down; a push without them or with other values; metad restarted; instance removed). The window is over: metadctl jobs shows it (docs/ganeti.md)',
  },
  ganetiSecretsRepeated: {
    msg: 'ganeti: the same secret parameters pushed again: no new window',
    level: 'info',
    fields: 'instance, state (of the window those values opened: served goes on, an ended one stays ended), secrets (how many)',
  },
  ganetiSecretsRecordWriteFailed: {
    msg: 'ganeti: secret window record write failed',
    level: 'error',
    fields: 'instance, code (the record in memory is right; metadctl jobs shows it)',
  },
  ganetiBadRequest: {
    msg: 'ganeti feed: request not understood',
    level: 'warn',
    fields: 'reason (what the client was answered), bytes',
  },
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
  guestPackageRefused: {
    msg: 'guest OS package not served',
    level: 'warn',
    fields:
      'instance, param (`os-install-package` or `os-package`; `install.packageUrl` for a personalization package), reason (not set; not as Ganeti pushed it; not a usable or absolute path; missing, or outside ganeti.packageRoots; not a regular file; too large; writable by group or others; the Ganeti feed is off; for a personalization package: no install job runs, failed earlier in this job, or why the fetch failed: `HTTP 404 from the package server`, a timeout, a content type, a size), suppressedBefore (sampled: once per instance per 10 s). Never the path or URL',
  },
  guestPackageCut: {
    msg: 'guest OS package cut',
    level: 'warn',
    fields:
      'instance, param, entry (the archive entry that broke a rule, as the archive names it, at most 256 characters; null: the archive itself), reason (absolute name, "..", a link out of the tree, a device node or FIFO, setuid, over a size or entry cap, not gzip or not tar), bytesSent (the guest got a cut transfer: no byte of that entry), suppressedBefore (sampled)',
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
  commLinkWatchExited: {
    msg: 'comm network: the link watcher (ip monitor link) exited; restarting it',
    level: 'error',
    fields: 'code, signal, retryMs (a reconcile follows its restart)',
  },
  commTapRefused: {
    msg: 'comm network: a registered tap is no guest device; left alone',
    level: 'warn',
    fields: 'instance, reason (the device is not filtered, addressed, enslaved or held by metad)',
  },
  commTapMoved: {
    msg: 'comm network: tap moved to another instance',
    level: 'info',
    fields:
      'tap, from (the instance that had it: no longer served through it), to (nic up named it; a tap name reused, as Ganeti reuses gnt.com.N)',
  },
  commTapGone: {
    msg: 'comm network: the device of a recorded tap went; its instance is not served through that tap until nic up',
    level: 'info',
    fields: 'instance, tap, ifindex (the device that went: the VM stopped, or another device took the name)',
  },
  nicUp: { msg: 'nic up', level: 'info', fields: 'instance, tap' },
  nicDown: { msg: 'nic down', level: 'info', fields: 'instance, tap' },
  dhcpOrphanKilled: { msg: 'dnsmasq left by an earlier metad killed', level: 'warn', fields: 'pid' },
  dhcpStarted: { msg: 'dnsmasq started', level: 'info', fields: 'pid, user (it runs as)' },
  dhcpExited: { msg: 'dnsmasq exited; restarting it', level: 'error', fields: 'code, signal, reason (its last log line)' },
  dhcpFailed: { msg: 'dnsmasq could not be started', level: 'error', fields: 'code, hint' },
  dhcpReread: { msg: 'dnsmasq reread its hosts file', level: 'debug', fields: 'pid, hosts (after SIGHUP: hosts changed, no restart)' },
  dhcpRereadUnconfirmed: {
    msg: 'dnsmasq did not confirm rereading its hosts file',
    level: 'warn',
    fields: 'pid, waitedMs (it may not be able to read <runDir>/dhcp-hosts as network.dhcp.user)',
  },
  dhcpMessage: {
    msg: 'dhcp message',
    level: 'info',
    fields:
      'type (DISCOVER, OFFER, REQUEST, ACK, RELEASE, INFORM), iface, ipv4?, mac, detail? (host name), suppressed? (sampled: once per MAC and type per 10 s)',
  },
  dhcpRefused: {
    msg: 'dhcp request refused',
    level: 'warn',
    fields:
      "type (NAK, DECLINE, or a DISCOVER/REQUEST/... dnsmasq did not serve), iface, ipv4?, mac, detail (dnsmasq's reason), suppressed? (sampled: once per MAC and type per 10 s)",
  },
  dhcpLog: {
    msg: 'dnsmasq log',
    level: 'info',
    fields: "line (dnsmasq's own words), suppressed? (sampled: once per kind of line per 10 s)",
  },
  dhcpLogProblem: {
    msg: 'dnsmasq reports a problem',
    level: 'warn',
    fields: "line (dnsmasq's own words: failed, denied, ...), suppressed? (sampled: once per kind of line per 10 s)",
  },
  dhcpLogSuppressed: {
    msg: 'dnsmasq log lines not logged',
    level: 'warn',
    fields: 'lines (held back because 10,000 other clients were already being sampled; at most once per 10 s)',
  },
  jobRequested: { msg: 'install job requested', level: 'info', fields: 'instance, domain, timeoutSec' },
  jobVirtType: {
    msg: 'install appliance virtualization chosen',
    level: 'info',
    fields: 'virtType (kvm or qemu: appliance.virtType auto, decided by a KVM trial boot once per daemon life)',
  },
  jobImageWritten: {
    msg: 'install job OS image written',
    level: 'info',
    fields: 'instance, domain, bytes (the image file, its sha256 checked) written onto the first disk before the appliance boots',
  },
  jobTrustedStarted: {
    msg: 'install job trusted script started',
    level: 'info',
    fields: "instance, pid (the OS definition's trusted `create`, run on the host beside the appliance's untrusted one)",
  },
  jobTrustedOutput: {
    msg: 'install job trusted script said',
    level: 'info',
    fields:
      'instance, line (one of the first 20 lines of its stderr, at most 200 characters; a line holding a private or secret value it was given is replaced whole by `[redacted: contained a secret value]`)',
  },
  jobTrustedEnded: { msg: 'install job trusted script ended', level: 'info', fields: 'instance, code, signal' },
  jobPartFailed: {
    msg: 'install job part failed',
    level: 'warn',
    fields:
      'instance, domain, reason (what metad serves the job failed: `package: HTTP 404 from the package server`, `package: archive refused at entry …`, a timeout; the appliance is refused and the job ends failed with this reason). Never the URL or a credential',
  },
  jobEnded: { msg: 'install job ended', level: 'info', fields: 'instance, domain, outcome, reason' },
  jobStartFailed: {
    msg: 'install job could not be prepared',
    level: 'warn',
    fields: "instance, domain, err (a tool's or the hypervisor's own text; the record says only that it failed)",
  },
  jobCreateFailed: {
    msg: 'install domain could not be created',
    level: 'warn',
    fields: "instance, domain, err (the hypervisor's own text, which may name host paths; the record says only that it failed)",
  },
  jobsRecovered: {
    msg: 'install jobs recovered after a restart',
    level: 'info',
    fields:
      'adopted (domains supervised again with their recorded deadlines), orphans (domains destroyed), orphansLeft (orphan domains whose destroy failed: each an `install leftover not removed`, retried)',
  },
  jobLeftoversRemoved: {
    msg: 'install leftovers removed',
    level: 'info',
    fields: 'removed (appliance taps, console logs and overlays no unfinished job owns, found at start)',
  },
  jobRecoveryDeferred: {
    msg: 'install jobs not recovered: hypervisor unavailable',
    level: 'warn',
    fields: 'jobs, err (retried on the leftover timer until it runs: GET /v1/health lists it as a `recovery` leftover)',
  },
  jobRecoveryFailed: {
    msg: 'install recovery or leftover sweep failed',
    level: 'error',
    fields: 'step (recover | sweep), err (retried on the leftover timer)',
  },
  jobAdoptFailed: {
    msg: 'install job adopted without its tap identity',
    level: 'error',
    fields:
      "instance, domain, err (after a restart the running appliance's tap could not be given its instance's identity again; the job still ends at its deadline)",
  },
  jobLeftover: {
    msg: 'install leftover not removed',
    level: 'error',
    fields:
      'kind (domain | tap | tap identity | overlay | console log | cleanup | recovery), name, instance, during (job | recovery | sweep | prepare | kvm trial), err; listed in GET /v1/health and retried every 30 s until removed',
  },
  jobLeftoverRetryFailed: {
    msg: 'install leftover still not removed',
    level: 'warn',
    fields: 'kind, name, instance, attempts, err (retried again later)',
  },
  jobLeftoverRemoved: { msg: 'install leftover removed', level: 'info', fields: 'kind, name, instance, attempts' },
  hypervisorCallTimedOut: {
    msg: 'hypervisor call did not answer in time',
    level: 'warn',
    fields:
      'op (createTransient | state | destroy | list), name, ms (the call was given up on; a create may still make its domain, which is then destroyed as a leftover)',
  },
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
    'These are all the messages it logs (generated from daemon/log/events.ts by `metad log-events`).',
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
