/**
 * The composition root as a function: build the whole graph (the state-dir lock, keys, store,
 * vault, pipes, identity signer, the comm network and its controller, the install jobs with their
 * hypervisor, wiring and leftovers, the guest log, the admin koa app, the guest handler and the
 * Ganeti feed) from
 * a config and injectable dependencies. Opens no sockets:
 * daemon/process/main.ts listens. Tests call createDaemon with a temp state dir, a sink logger and a
 * fake clock and get the same graph production runs.
 */
import { mkdirs } from './mkdirs.js';
import { join } from 'node:path';
import type Koa from 'koa';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config/config.js';
import { IdentitySigner } from './registry/identity.js';
import { removeFileDurable, removeStaleTemps, writeFileDurable } from './registry/persist.js';
import { Keyring, loadMasterKey } from './registry/keys.js';
import { PipeRegistry } from './registry/pipes.js';
import type { NetworkHealth, SecretsGate, Services } from './services.js';
import { InstanceStore } from './registry/store.js';
import { DaemonError } from './errors.js';
import { incarnationOf, installIdentityChanges, type StoredInstance } from './registry/model.js';
import { SecretVault } from './registry/vault.js';
import { createAdminApp } from '../routes/admin/index.js';
import { createGuestHandler, type GuestHandler } from '../routes/guest/index.js';
import { TokenIssuer } from '../routes/guest/tokens.js';
import { GuestCounters } from './metrics/guest-counters.js';
import { Metrics } from './metrics/metrics.js';
import { JobCounters } from './metrics/job-counters.js';
import { CommCounters } from './metrics/comm-counters.js';
import { StoreWrites } from './metrics/store-writes.js';
import { VERSION } from './version.js';
import { RateLimiter } from '../routes/guest/rate-limit.js';
import { EV } from './log/events.js';
import { CommController, type ReconcileEnd } from './comm/controller.js';
import type { CommNetwork } from './comm/network.js';
import { createCommNetwork } from './comm/setup.js';
import { DHCP_LOG_INTERVAL_MS } from './comm/dnsmasq.js';
import { LogSampler } from './log/log-sampler.js';
import { JobManager, type JobDeps } from './jobs/manager.js';
import { JobRecordFiles, type JobRecord } from './jobs/record.js';
import { installAvailability, type InstallAvailability } from './jobs/preflight.js';
import { loadBinding } from '../appliance/libvirt.js';
import { Leftovers, type LeftoverItem } from './jobs/leftovers.js';
import { boundedHypervisor, defaultHypervisor, ProductionAppliance } from './jobs/wiring.js';
import { lockStateDir } from './process/state-lock.js';
import { GuestLog } from './log/guest-log.js';
import { GanetiFeed } from './feeds/ganeti.js';
import { GanetiSecretWindows } from './feeds/ganeti-secrets.js';
import { FedPackages } from './registry/os-package.js';
import { PackageSource } from './jobs/package.js';
import { trustedCompanions } from './jobs/trusted.js';

export interface DaemonDeps {
  log: Logger;
  clock?: Clock;
  /** The comm network (tests inject a fake); default: the real one when network.mode is not off. */
  commNetwork?: CommNetwork;
  /** Install jobs: the hypervisor and the per-run preparation (tests pass the fakes). */
  hypervisor?: JobDeps['hypervisor'];
  prepare?: JobDeps['prepare'];
  /** Wait between retries of install leftovers (default LEFTOVER_RETRY_MS, 30 s). */
  leftoverRetryMs?: number;
}

export interface Daemon {
  services: Services;
  adminApp: Koa;
  /** The guest door: a plain node:http request handler (see routes/guest/index.ts). */
  guestHandler: GuestHandler;
  /** The Ganeti feed (config `ganeti`; undefined when absent): daemon/process/main.ts makes it listen. */
  ganeti: GanetiFeed | undefined;
  /** Take the live settings of a reloaded configuration: log level, guest rate limit (daemon/config/reload.ts). */
  reconfigure(next: Readonly<Config>): void;
  /** Stop timers and the Ganeti feed (its socket too); the doors' sockets are closed by whoever opened them. */
  stop(): Promise<void>;
}

/**
 * Build and start the graph: creates the state dir and locks it (daemon/process/state-lock.ts: a second
 * daemon on it fails here with StateDirBusy, before any side effect), loads keys and instances.
 */
export async function createDaemon(config: Readonly<Config>, deps: DaemonDeps): Promise<Daemon> {
  await mkdirs(config.stateDir, 0o700);
  const lock = lockStateDir(config.stateDir);
  try {
    return await build(config, deps, () => lock.release());
  } catch (err) {
    lock.release();
    throw err;
  }
}

async function build(config: Readonly<Config>, deps: DaemonDeps, unlock: () => void): Promise<Daemon> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log;
  await removeStaleTemps(config.stateDir); // e.g. a key write cut short by a crash
  const keyPath = config.keyFile ?? join(config.stateDir, 'private.key');
  const keyring = new Keyring(loadMasterKey(keyPath, config.keyFile === undefined));
  const identity = await IdentitySigner.load(join(config.stateDir, 'identity-key.pem'));
  // Every durable state-dir change timed and its failures counted (metrics), through the store's file seam.
  const storeWrites = new StoreWrites(() => clock.mono());
  const store = new InstanceStore({
    dir: config.stateDir,
    files: storeWrites.wrap({ writeFileDurable, removeFileDurable }),
    keyring,
    clock,
    log,
    commRange: config.guest.commRange,
    maxDocumentBytes: config.store.maxDocumentBytes,
  });
  const loaded = await store.start();
  const incarnation = (name: string): string | undefined => {
    const i = store.get(name);
    return i === undefined ? undefined : incarnationOf(i);
  };
  const vault = new SecretVault(clock, config.secrets.defaultTtlSec);
  const pipes = new PipeRegistry(config.pipe.maxBytes);
  const commNet =
    deps.commNetwork ??
    (config.network.mode === 'off' ? undefined : createCommNetwork(config, log, clock, new LogSampler(DHCP_LOG_INTERVAL_MS)));
  const comm = commNet ? new CommController(store, commNet, log) : undefined;
  const a = config.appliance;
  // Every hypervisor call bounded (CALL_BOUNDS), the injected one too.
  const hypervisor = boundedHypervisor(deps.hypervisor ?? defaultHypervisor(a.libvirtUri), clock, log);
  // What runs, recovery and the sweep could not remove: logged, shown in GET /v1/health, retried.
  const removeLeftover = async (item: LeftoverItem): Promise<void> => {
    if (item.kind === 'recovery') return recoverAndSweep();
    if (item.kind !== 'domain') return wiring.removeLeftover(item);
    const hv = await hypervisor();
    await hv.destroy(item.name);
    if (hv.busy?.(item.name)) throw new Error('its create has not answered yet: the domain may still appear');
  };
  const leftovers = new Leftovers({
    clock,
    log,
    remove: removeLeftover,
    ...(deps.leftoverRetryMs ? { retryMs: deps.leftoverRetryMs } : {}),
  });
  // Tests inject a stand-in `prepare` (fake hypervisor); production assembles real runs.
  const wiring = new ProductionAppliance({ config, store, comm, hypervisor, clock, log, leftovers });
  const appliance = deps.prepare ? { prepare: deps.prepare } : wiring.jobHooks();
  const jobs = new JobManager({
    clock,
    log,
    vault,
    pipes,
    files: new JobRecordFiles(join(config.stateDir, 'jobs')),
    settings: {
      defaultTimeoutMs: a.installTimeoutMs,
      maxTimeoutMs: a.maxTimeoutMs,
      maxConcurrent: a.maxConcurrent,
      maxQueueMs: a.maxQueueMs,
      claimDeadlineMs: a.claimDeadlineMs,
      pollMs: a.pollMs,
    },
    hypervisor,
    incarnation,
    quiesce: (name) => store.settled(name),
    leftovers,
    // An OS definition's trusted `create`, run on the host beside the appliance (daemon/jobs/trusted.ts).
    companion: trustedCompanions({ searchPath: config.os.searchPath, store, vault, log }),
    ...appliance,
  });
  await jobs.init();
  // Secrets Ganeti pushes are served in a window of their own: Ganeti boots the helper VM, no job runs.
  const ganetiSecrets = config.ganeti
    ? new GanetiSecretWindows({
        vault,
        clock,
        log,
        dir: join(config.stateDir, 'ganeti-secrets'),
        settings: config.ganeti.secrets,
        incarnation,
      })
    : undefined;
  await ganetiSecrets?.init();
  // Jobs of an earlier process (kill -9, crash): adopted or ended, then the sweep. Rejects while
  // the hypervisor is unavailable (recovery deferred) or a step fails: then it is a leftover.
  async function recoverAndSweep(): Promise<void> {
    const r = await jobs.recover();
    if (r.deferred) throw new Error('recovery deferred: the hypervisor is unavailable');
    if (deps.prepare) return; // tests' stand-in runs create nothing to sweep
    const swept = await wiring.sweep(() => jobs.domainsInUse());
    if (swept.removed.length > 0) log.info({ removed: swept.removed.length }, EV.jobLeftoversRemoved);
    for (const f of swept.failed) leftovers.add([f.item], 'sweep', f.err);
  }
  // Not awaited: a slow libvirt must not hold up the doors; stop() waits for it.
  const recovering = recoverAndSweep().catch((e: unknown) => {
    const err = e instanceof Error ? e.message : String(e);
    if (!err.startsWith('recovery deferred')) log.error({ step: 'recover', err }, EV.jobRecoveryFailed);
    leftovers.add([{ kind: 'recovery', name: 'unfinished install jobs' }], 'recovery', e);
  });
  // The binding is what an injected hypervisor (tests) stands in for; the real one must load.
  const installs = (): Promise<InstallAvailability> =>
    installAvailability(config, deps.hypervisor ? () => Promise.resolve() : () => loadBinding());
  const guestLog = new GuestLog(log, () => clock.mono());
  const guestCounters = new GuestCounters();
  const jobCounters = new JobCounters();
  jobs.on('ended', (rec: JobRecord) => jobCounters.ended(rec));
  const commCounters = new CommCounters();
  comm?.on('reconcileEnded', (e: ReconcileEnd) => commCounters.ended(e, clock.now()));
  const tokens = new TokenIssuer();
  const metrics = new Metrics({
    version: VERSION,
    guest: guestCounters,
    guestEvents: () => guestLog.counts(),
    tokensIssued: () => tokens.issued,
    instances: () => store.size,
    secretsHeld: () => vault.held,
    pipeBytes: () => pipes.totals(),
    quarantined: () => loaded.quarantined,
    reconciles: () => comm?.reconciles,
    ganetiPushes: () => ganeti?.pushes,
    jobStates: () => jobs.list().map((j) => j.state),
    ganetiSecretWindows: () => ganetiSecrets?.ended,
    leftovers: () => leftovers.size,
    storeWrites,
    jobCounters,
    commCounters,
    dhcp: () => commNet?.dhcpStatus?.(),
    nftStats: () => commNet?.nftStats?.() ?? Promise.resolve(undefined),
  });
  const network = comm
    ? (): NetworkHealth => {
        const dhcp = commNet?.dhcpStatus?.();
        return { ...(commCounters.last ? { lastReconcile: commCounters.last } : {}), ...(dhcp ? { dhcp } : {}) };
      }
    : undefined;
  const services: Services = {
    config,
    log,
    clock,
    store,
    vault,
    pipes,
    identity,
    comm,
    jobs,
    leftovers,
    installs,
    guestLog,
    metrics,
    ganetiSecrets,
    network,
  };
  // Whatever removes an instance, its install job (aborted, then its record deleted), its
  // secrets and its pipe go with it. DELETE waits for the job's end (routes/admin/instances.ts).
  store.on('removed', (name: string, prev: StoredInstance) => {
    void jobs.forget(name, incarnationOf(prev));
    ganetiSecrets?.forget(name);
    vault.wipe(name);
    pipes.drop(name);
  });
  // While a job holds an instance, what the appliance relies on cannot change under it.
  store.setGuard((prev, next) => {
    const changed = jobs.holds(prev.doc.name) ? installIdentityChanges(prev.doc, next) : [];
    if (changed.length > 0) {
      const message = 'cannot change while an install job of the instance is queued or running (abort it or wait for its end)';
      throw new DaemonError(
        'Conflict',
        `the instance's ${changed.join(', ')} ${message}`,
        changed.map((path) => ({ path, message })),
      );
    }
  });
  // A fed instance's comm tap going down after it came up ends its Ganeti secret window.
  if (ganetiSecrets)
    comm?.on('nic', (name: string, _tap: string, up: boolean) => (up ? ganetiSecrets.tapUp(name) : ganetiSecrets.tapDown(name)));
  // The anchor holds 169.254.169.254 before main.ts binds the guest door to it.
  await comm?.start();
  const limiter = new RateLimiter(config.guest.rateLimit.ratePerSec, config.guest.rateLimit.burst);
  // The guest door sees the install jobs and the Ganeti secret windows only as one secrets gate:
  // open while either is; a claim goes to both (each ignores it unless it is open).
  const secrets: SecretsGate = {
    secretsOpen: (name) => jobs.secretsOpen(name) || (ganetiSecrets?.secretsOpen(name) ?? false),
    noteClaim: (name) => {
      jobs.noteClaim(name);
      ganetiSecrets?.noteClaim(name);
    },
  };
  // The OS package parameters Ganeti pushed: the only ones the guest door follows (daemon/registry/os-package.ts).
  const osPackages = config.ganeti ? new FedPackages() : undefined;
  if (osPackages) store.on('removed', (name: string) => osPackages.forget(name));
  // Personalization packages: fetched while the instance's job runs (daemon/jobs/package.ts).
  const packages = new PackageSource({
    jobs,
    secrets: (name) => vault.liveValues(name, false),
    settings: a.package,
    userAgent: `metad/${VERSION}`,
  });
  const guestHandler = createGuestHandler(
    { config, log, clock, store, vault, pipes, identity, guestLog, secrets, osPackages, packages },
    { limiter, tokens, counters: guestCounters },
  );
  const adminApp = createAdminApp(services);
  // Ganeti's node daemon pushes its instances here; built now, listening once main.ts says so.
  const ganeti =
    config.ganeti && ganetiSecrets
      ? new GanetiFeed(config.ganeti, {
          store,
          vault,
          secrets: ganetiSecrets,
          log,
          osSearchPath: config.os.searchPath,
          packages: osPackages,
        })
      : undefined;
  // Expired secrets are wiped on read too; the sweep bounds how long a value lingers in memory.
  const sweeper = setInterval(() => {
    const n = vault.sweep();
    if (n > 0) log.info({ wiped: n }, EV.secretsExpired);
  }, 30_000);
  sweeper.unref();
  return {
    services,
    adminApp,
    guestHandler,
    ganeti,
    reconfigure(next) {
      log.level = next.log.level;
      limiter.setLimits(next.guest.rateLimit.ratePerSec, next.guest.rateLimit.burst);
    },
    async stop() {
      try {
        await ganeti?.close(); // first: no push lands in a store that is stopping
        await ganetiSecrets?.stop(); // open windows stay `served` on disk: the next start reports them lost
        clearInterval(sweeper);
        await recovering;
        await jobs.stop(); // every job ends: domain destroyed, cleanup run, outcome recorded
        await leftovers.stop(); // what is left stays for the next start's recovery and sweep
        vault.wipeAll();
        guestLog.flush(true); // what the last window held back
        await comm?.stop();
      } finally {
        unlock(); // last: the host is ours until our dnsmasq and table are gone
      }
    },
  };
}
