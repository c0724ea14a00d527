/**
 * The comm network seam: what the daemon asks of whatever sets up the host side of the guests'
 * comm NICs. daemon/comm/linux.ts (routed) and daemon/comm/bridged.ts (bridged) are the real
 * ones; they run `ip`, `nft` and dnsmasq through daemon/comm/exec.ts; test/fakes/fake-comm-network.ts records calls for unit tests. The registry decides
 * what should exist (daemon/comm/controller.ts turns it into CommNics); reconcile makes the host
 * match, idempotently.
 */
import type { DhcpStatus } from './dnsmasq.js';
import type { NftStats } from './nft-stats.js';
import type { CommNic } from './plan.js';

export interface LiveTap {
  readonly tap: string;
  readonly ifindex: number;
}

/** A tap a reconcile left fully in place: existing, up, addressed or enslaved, routed, filtered. */
export interface PlacedTap extends LiveTap {
  /** Bridged mode: the bridge it is an isolated port of. */
  readonly bridge?: string;
}

export interface ReconcileReport {
  /** NICs in the registry with a tap. */
  readonly nics: number;
  /** Their taps that do not exist (yet): rules and DHCP are ready, routes/addresses wait. */
  readonly missingTaps: readonly string[];
  readonly routesAdded: number;
  readonly routesDeleted: number;
  /** Taps that exist and now hold the metadata addresses, with their ifindex (a tap deleted and
   * created again under the same name is another link: the IPv6 doors follow these). */
  readonly liveTaps: readonly LiveTap[];
  /** Taps this reconcile left in place, each on the link (ifindex) it configured; empty when any
   * change failed. An idempotent `nic up` of one of these needs no reconcile (CommController). */
  readonly placed: readonly PlacedTap[];
  /** Every registered tap that exists, with the device (ifindex) it is now, whether or not its
   * changes applied (bridged mode too): the controller notices a recorded tap whose device went. */
  readonly seen: readonly LiveTap[];
  /** Taps that lost metad's addresses (no longer registered). */
  readonly tapsReleased: number;
  /** Taps held closed (dropped whole): released ones that still exist, job-held ones, and (bridged) registered taps not yet ports. */
  readonly held: readonly string[];
  readonly ms: number;
}

/** What `metadctl nic list` shows for one NIC: each piece as the kernel and dnsmasq hold it. */
export interface NicStatus {
  readonly instance: string;
  readonly tap: string;
  readonly ipv4: string;
  readonly mac: string;
  readonly tapExists: boolean;
  readonly tapUp: boolean;
  /** The metadata addresses on the tap. */
  readonly addresses: boolean;
  /** The /32 route to the guest through its tap. */
  readonly route: boolean;
  /** Its tap, IPv4 and MAC are elements of the nftables sets. */
  readonly rules: boolean;
  /** Its MAC -> IPv4 line is in dnsmasq's hosts file (and dnsmasq runs, when managed). */
  readonly dhcp: boolean;
  /** Bridged mode only: the bridge the tap is a port of ('' when none). */
  readonly bridge?: string;
  /** Bridged mode only: the port is isolated and does not flood unknown unicast. */
  readonly isolated?: boolean;
  /** The instance has no tap now (`nic down`, or never up): listed so that it does not vanish. */
  readonly down?: true;
}

/** `missing`: no such device; `refused`: a device that is not a guest's (the reason names what it is). */
/** `ok`: a guest's device, with its ifindex (the link `nic up` finds in place or not). */
export type TapCheck =
  { readonly ok: true; readonly ifindex: number } | { readonly ok: false; readonly missing: boolean; readonly reason: string };

export interface CommNetwork {
  /** Prepare what must exist before any tap: the anchor holding the metadata address. */
  start(): Promise<void>;
  /**
   * Make routes, addresses, rules and DHCP hosts exactly match `nics`. Serialized by the caller.
   * `held`: registered taps that must carry nothing for now (an instance whose install job runs):
   * dropped whole, like taps metad released that still exist.
   */
  reconcile(nics: readonly CommNic[], held?: readonly string[]): Promise<ReconcileReport>;
  status(nics: readonly CommNic[]): Promise<NicStatus[]>;
  /** Does this network device exist on the host (a tap named in `nic up`)? */
  linkExists(name: string): Promise<boolean>;
  /** Can this device be a guest's tap (`nic up`)? From the kernel's facts (daemon/comm/guest-device.ts). */
  checkTap(name: string): Promise<TapCheck>;
  /**
   * Call `onChange` whenever a device change needs a reconcile (a port joining the bridge, a held
   * tap going, a registered tap appearing or going); with `gone` when the change is the deletion
   * of a registered tap's device that the last reconcile set up (the VM stopped).
   */
  watchLinks(onChange: (gone?: LiveTap) => void): void;
  /** Create a tap (an install appliance's comm NIC); reconcile then gives it addresses, route, rules. */
  createTap(name: string): Promise<void>;
  /** Delete a tap metad created (no error when it is already gone). */
  deleteTap(name: string): Promise<void>;
  /** Names of the network devices whose name starts with `prefix` (leftover appliance taps). */
  linksWithPrefix(prefix: string): Promise<string[]>;
  /** metad's own DHCP server (dnsmasq), if it runs one: for health and metrics. */
  dhcpStatus?(): DhcpStatus | undefined;
  /** What nftables counts in metad's tables (drops by counter, set sizes, rules), for metrics; cached a second. */
  nftStats?(): Promise<NftStats | undefined>;
  /** Stop the DHCP child. Rules, routes and addresses stay: guests keep working across a restart. */
  stop(): Promise<void>;
}

/** A comm network failure with a message that names the fix (no user-supplied values). */
export class CommError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommError';
  }
}
