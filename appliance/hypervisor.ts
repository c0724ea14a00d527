/**
 * What the install runner needs from a hypervisor: transient domains it can create (started at
 * once), watch, destroy and find again by name prefix. One implementation talks to libvirt
 * (appliance/libvirt.ts, the only file that loads the binding); test/fakes/fake-hypervisor.ts
 * is the strict fake for unit tests.
 *
 * Transient domains have no definition that outlives them: when the guest powers off (or
 * reboots or crashes: the appliance's XML maps all three to destroy) the domain is gone, and
 * `state` says 'gone'. Nothing needs undefining.
 */

/** libvirt's virDomainState, plus 'gone' for a domain that no longer exists. */
export type DomainState = 'nostate' | 'running' | 'blocked' | 'paused' | 'shutdown' | 'shutoff' | 'crashed' | 'pmsuspended' | 'gone';

export const DOMAIN_STATES: readonly DomainState[] = [
  'nostate',
  'running',
  'blocked',
  'paused',
  'shutdown',
  'shutoff',
  'crashed',
  'pmsuspended',
];

export interface Hypervisor {
  /** Creates and starts a transient domain from its XML (whose <name> must be `name`). */
  createTransient(name: string, xml: string): Promise<void>;
  /** The domain's state; 'gone' when no domain has that name (any more). */
  state(name: string): Promise<DomainState>;
  /** Stops the domain at once (pulls the plug). 'gone' when it had already vanished. */
  destroy(name: string): Promise<'destroyed' | 'gone'>;
  /** Names of the existing domains that start with `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * The hypervisor cannot be used at all (binding missing, daemon unreachable): say what to do.
 * A call that rejects with it never reached the hypervisor (nothing was created).
 */
export class HypervisorUnavailable extends Error {
  override name = 'HypervisorUnavailable';
}
