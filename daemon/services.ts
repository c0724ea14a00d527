/**
 * The shared graph the doors use: one store, one vault, one pipe registry, clock, logger,
 * config, the identity signer, the comm network (when on), the install jobs, their leftovers and
 * install availability, and the sampled guest log. The admin door gets all of it (`Services`);
 * the guest door a part (`GuestServices`), in which the install jobs are only their secrets gate.
 * Built by daemon/daemon.ts.
 */
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config/config.js';
import type { IdentitySigner } from './registry/identity.js';
import type { JobManager } from './jobs/manager.js';
import type { InstallAvailability } from './jobs/preflight.js';
import type { PipeRegistry } from './registry/pipes.js';
import type { InstanceStore } from './registry/store.js';
import type { SecretVault } from './registry/vault.js';
import type { CommController } from './comm/controller.js';
import type { Leftovers } from './jobs/leftovers.js';
import type { GuestLog } from './log/guest-log.js';
import type { Metrics } from './metrics/metrics.js';
import type { GanetiSecretWindows } from './feeds/ganeti-secrets.js';
import type { FedPackages } from './registry/os-package.js';
import type { PackageSource } from './jobs/package.js';
import type { LastReconcile } from './metrics/comm-counters.js';
import type { DhcpStatus } from './comm/dnsmasq.js';

/**
 * When the guest door may serve an instance's secret parameters, as it sees it: no start, abort
 * or record. Two implementations, composed by daemon/daemon.ts: the install jobs
 * (daemon/jobs/manager.ts: while a metad install job of the instance is live) and the Ganeti
 * secret windows (daemon/feeds/ganeti-secrets.ts: from a Ganeti push until claim, TTL, the next
 * push or the comm tap going down).
 */
export interface SecretsGate {
  /** True while the instance's secrets may be served. */
  secretsOpen(instance: string): boolean;
  /** The instance is being handed its secret parameters now (a GET of os/parameters.json while open): the claim. */
  noteClaim(instance: string): void;
}

export interface Services {
  readonly config: Readonly<Config>;
  readonly log: Logger;
  readonly clock: Clock;
  readonly store: InstanceStore;
  readonly vault: SecretVault;
  readonly pipes: PipeRegistry;
  readonly identity: IdentitySigner;
  /** The comm network (undefined when network.mode is off and none was injected). */
  readonly comm?: CommController | undefined;
  /** Install jobs (the admin door; the guest door sees only their SecretsGate). */
  readonly jobs: JobManager;
  /** What install runs, recovery and the sweep could not remove yet (GET /v1/health; retried). */
  readonly leftovers?: Leftovers | undefined;
  /** Can installs run here now, and if not why (GET /v1/health, serve's start-up)? */
  readonly installs?: (() => Promise<InstallAvailability>) | undefined;
  /** Every log line a guest can trigger, sampled per source (daemon/log/guest-log.ts). */
  readonly guestLog: GuestLog;
  /** The Prometheus registry (GET /v1/metrics); absent in tests that build Services by hand. */
  readonly metrics?: Metrics | undefined;
  /** The Ganeti secret windows' records (config `ganeti`; GET /v1/jobs shows them). */
  readonly ganetiSecrets?: Pick<GanetiSecretWindows, 'list' | 'idle'> | undefined;
  /** The comm network's last reconcile and metad's dnsmasq, for GET /v1/health (absent: network off). */
  readonly network?: (() => NetworkHealth) | undefined;
}

/** GET /v1/health's `network` (besides the mode from the config). */
export interface NetworkHealth {
  readonly lastReconcile?: LastReconcile;
  readonly dhcp?: DhcpStatus;
}

/** What the guest door is given: no job control, comm network, leftovers or install availability. */
export interface GuestServices extends Pick<Services, 'config' | 'log' | 'clock' | 'store' | 'vault' | 'pipes' | 'identity' | 'guestLog'> {
  /** The install jobs' secrets gate (a view of the JobManager that has nothing else of it). */
  readonly secrets: SecretsGate;
  /** The OS package parameters the Ganeti feed pushed (absent: the feed is off, no package is served). */
  readonly osPackages?: FedPackages | undefined;
  /** Personalization packages (`install.packageUrl`), served while the instance's install job runs. */
  readonly packages?: Pick<PackageSource, 'open'> | undefined;
}
