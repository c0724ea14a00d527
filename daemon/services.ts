/**
 * The shared graph both doors use: one store, one vault, one pipe registry, clock, logger,
 * config and the identity signer. Built by daemon/daemon.ts; tests build it with fakes.
 */
import type { Logger } from 'pino';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { IdentitySigner } from './identity.js';
import type { PipeRegistry } from './pipes.js';
import type { InstanceStore } from './store.js';
import type { SecretVault } from './vault.js';
import type { CommController } from './comm/controller.js';

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
}
