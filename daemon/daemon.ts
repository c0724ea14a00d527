/**
 * The composition root as a function: build the whole graph (logger, keys, store, vault, pipes,
 * identity signer, the admin koa app and the guest handler) from a config and injectable dependencies. Opens no sockets:
 * daemon/main.ts listens. Tests call createDaemon with a temp state dir, a sink logger and a
 * fake clock and get the same graph production runs.
 */
import { mkdirs } from './mkdirs.js';
import { join } from 'node:path';
import type Koa from 'koa';
import type { Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import type { Config } from './config.js';
import { IdentitySigner } from './identity.js';
import { removeStaleTemps } from './persist.js';
import { Keyring, loadMasterKey } from './keys.js';
import { PipeRegistry } from './pipes.js';
import type { Services } from './services.js';
import { InstanceStore } from './store.js';
import { SecretVault } from './vault.js';
import { createAdminApp } from '../routes/admin/index.js';
import { createGuestHandler, type GuestHandler } from '../routes/guest/index.js';
import { RateLimiter } from '../routes/guest/rate-limit.js';
import { EV } from './events.js';
import { CommController } from './comm/controller.js';
import type { CommNetwork } from './comm/network.js';
import { createCommNetwork } from './comm/setup.js';
import { JobManager, type JobDeps } from './jobs/manager.js';
import { JobRecordFiles } from './jobs/record.js';
import { defaultHypervisor, productionAppliance } from './jobs/wiring.js';
import { lockStateDir } from './state-lock.js';
import { GuestLog } from './guest-log.js';

export interface DaemonDeps {
  log: Logger;
  clock?: Clock;
  /** The comm network (tests inject a fake); default: the real one when network.mode is not off. */
  commNetwork?: CommNetwork;
  /** Install jobs: the hypervisor and the per-run preparation (tests pass the fakes). */
  hypervisor?: JobDeps['hypervisor'];
  prepare?: JobDeps['prepare'];
}

export interface Daemon {
  services: Services;
  adminApp: Koa;
  /** The guest door: a plain node:http request handler (see routes/guest/index.ts). */
  guestHandler: GuestHandler;
  /** Take the live settings of a reloaded configuration: log level, guest rate limit (daemon/reload.ts). */
  reconfigure(next: Readonly<Config>): void;
  /** Stop timers; sockets are closed by whoever opened them. */
  stop(): Promise<void>;
}

/**
 * Build and start the graph: creates the state dir and locks it (daemon/state-lock.ts: a second
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
  const store = new InstanceStore({
    dir: config.stateDir,
    keyring,
    clock,
    log,
    commRange: config.guest.commRange,
    maxDocumentBytes: config.store.maxDocumentBytes,
  });
  await store.start();
  const vault = new SecretVault(clock, config.secrets.defaultTtlSec);
  const pipes = new PipeRegistry(config.pipe.maxBytes);
  const commNet = deps.commNetwork ?? (config.network.mode === 'off' ? undefined : createCommNetwork(config, log, clock));
  const comm = commNet ? new CommController(store, commNet, log) : undefined;
  const a = config.appliance;
  const hypervisor = deps.hypervisor ?? defaultHypervisor(a.libvirtUri);
  // Tests inject a stand-in `prepare` (fake hypervisor); production assembles real runs.
  const wiring = productionAppliance({ config, store, comm, hypervisor, clock, log });
  const appliance = deps.prepare ? { prepare: deps.prepare } : wiring;
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
    ...appliance,
  });
  await jobs.init();
  // Jobs of an earlier process (kill -9, crash): adopted or ended. Not awaited: a slow libvirt
  // must not hold up the doors; stop() waits for it.
  const recovering = jobs
    .recover()
    .then(async () => {
      if (deps.prepare) return; // tests' stand-in runs create nothing to sweep
      const removed = await wiring.sweep(() => jobs.domainsInUse());
      if (removed.length > 0) log.info({ removed: removed.length }, EV.jobLeftoversRemoved);
    })
    .catch(() => undefined);
  const guestLog = new GuestLog(log, () => clock.now());
  const services: Services = { config, log, clock, store, vault, pipes, identity, comm, jobs, guestLog };
  // Whatever removes an instance, its install job, its secrets and its pipe go with it.
  store.on('removed', (name: string) => {
    if (jobs.status(name) && !jobs.status(name)?.outcome) jobs.abort(name, 'instance removed');
    vault.wipe(name);
    pipes.drop(name);
  });
  // The anchor holds 169.254.169.254 before main.ts binds the guest door to it.
  await comm?.start();
  const limiter = new RateLimiter(config.guest.rateLimit.ratePerSec, config.guest.rateLimit.burst);
  const guestHandler = createGuestHandler(services, { limiter });
  const adminApp = createAdminApp(services);
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
    reconfigure(next) {
      log.level = next.log.level;
      limiter.setLimits(next.guest.rateLimit.ratePerSec, next.guest.rateLimit.burst);
    },
    async stop() {
      try {
        clearInterval(sweeper);
        await recovering;
        await jobs.stop(); // every job ends: domain destroyed, cleanup run, outcome recorded
        vault.wipeAll();
        guestLog.flush(true); // what the last window held back
        await comm?.stop();
      } finally {
        unlock(); // last: the host is ours until our dnsmasq and table are gone
      }
    },
  };
}
