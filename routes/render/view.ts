/**
 * What every renderer gets: one instance as the guest may see it (`GuestView`) plus the impure
 * inputs the caller supplies (`RenderCtx`), and the few defaults that all three dialects share
 * (hostname, availability zone, launch index, keys, user data) so they agree unless told otherwise.
 * Pure: no I/O, no clock, no randomness, no process.env.
 */
import type { PublicDoc, ParamValues, IamCredentials } from '../../daemon/registry/model.js';

/**
 * One instance, already split by visibility. secretParams holds the vault's live values where a
 * dialect serves them (Ganeti os/parameters.json) and is empty elsewhere.
 */
export interface GuestView {
  doc: PublicDoc;
  privateParams: ParamValues;
  secretParams: ParamValues;
  iam?: IamCredentials;
  generation: number;
  createdAt: string;
  /**
   * Prefix length of the comm NIC's network: that of the most specific configured comm range
   * holding its address (`guest.commRange`), 32 when none does.
   */
  commPrefix: number;
}

/** Everything impure a renderer may need, supplied by the caller. */
export interface RenderCtx {
  /** Milliseconds since the epoch. */
  now: number;
  /** At least RANDOM_SEED_BYTES from a CSPRNG; OpenStack's `random_seed` is the first RANDOM_SEED_BYTES of it. */
  randomSeed: Buffer;
  /** Signs the EC2 identity document; when given, `dynamic/instance-identity/signature` exists. */
  sign?: (document: string) => string;
}

/** Used when neither `ec2.availabilityZone` nor `openstack.availabilityZone` is set. */
/**
 * Ends in digit + letter like EC2 zones, so every consumer derives the same region: metad says
 * 'metad-1' and cloud-init (which drops the last character off-AWS) agrees.
 */
export const DEFAULT_AVAILABILITY_ZONE = 'metad-1a';

/**
 * True when a category introduced in `introduced` exists in `version`.
 * Dated versions compare as strings, and `1.0` sorts before every date because '1' < '2':
 * since('2011-01-01', '2009-04-04') → false; since('2007-01-19', '1.0') → false;
 * since('1.0', '1.0') → true; since(anything, 'latest') → true.
 */
export function since(introduced: string, version: string): boolean {
  return version === 'latest' || version >= introduced;
}

/** The guest's hostname: `hostname`, else the instance name. */
export function hostnameOf(doc: PublicDoc): string {
  return doc.hostname ?? doc.name;
}

/** The dialect asking: its own field wins, the other dialect's is the fallback. */
export type Dialect = 'ec2' | 'openstack';

/**
 * The availability zone, the same in every dialect unless the admin set both:
 * {ec2: {availabilityZone: 'eu-west-1b'}} → 'eu-west-1b' for ec2 and openstack;
 * {} → DEFAULT_AVAILABILITY_ZONE.
 */
export function availabilityZoneOf(doc: PublicDoc, dialect: Dialect): string {
  const ec2 = doc.ec2?.availabilityZone;
  const os = doc.openstack?.availabilityZone;
  return (dialect === 'ec2' ? (ec2 ?? os) : (os ?? ec2)) ?? DEFAULT_AVAILABILITY_ZONE;
}

/** The launch index: `ec2.amiLaunchIndex` / `openstack.launchIndex` (own dialect first), else 0. */
export function launchIndexOf(doc: PublicDoc, dialect: Dialect): number {
  const ec2 = doc.ec2?.amiLaunchIndex;
  const os = doc.openstack?.launchIndex;
  return (dialect === 'ec2' ? (ec2 ?? os) : (os ?? ec2)) ?? 0;
}

/**
 * The user data as raw bytes, or undefined when there is none. An empty string counts as none,
 * so `userData: ""` gives a 404 like an instance launched without user data.
 */
export function userDataOf(view: GuestView): Buffer | undefined {
  const b64 = view.doc.userData;
  if (b64 === undefined || b64.length === 0) return undefined;
  return Buffer.from(b64, 'base64');
}

/** A public key with its type made explicit (the model's default is `ssh`). */
export interface PublicKey {
  name: string;
  key: string;
  type: 'ssh' | 'x509';
}

/** The instance's public keys in registration order. */
export function publicKeysOf(doc: PublicDoc): PublicKey[] {
  return (doc.publicKeys ?? []).map((k) => ({ name: k.name, key: k.key, type: k.type ?? 'ssh' }));
}

/** The instance's OpenSSH keys only: x509 keys must never land in authorized_keys. */
export function sshKeysOf(doc: PublicDoc): PublicKey[] {
  return publicKeysOf(doc).filter((k) => k.type === 'ssh');
}
