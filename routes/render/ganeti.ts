/**
 * Ganeti dialect (design-os): `/ganeti/<version>/meta_data.json` (identity, OS and hardware as the
 * guest may see them) and `os/parameters.json` (every OS parameter with its visibility).
 * Host details never reach the guest: no disk paths, no OS definition directory, no tap name.
 * Pure: no I/O, no clock, no randomness.
 */
import { hostnameOf, type GuestView } from './view.js';
import type { Nic, Visibility } from '../../daemon/registry/model.js';

/**
 * `2014-07-01` is this dialect's one dated version (the year Ganeti's design-os and metad
 * appeared); `latest` renders the same. A new dated version is added only when the format changes.
 */
export const GANETI_VERSIONS = ['2014-07-01', 'latest'] as const;
export type GanetiVersion = (typeof GANETI_VERSIONS)[number];

/** True when `v` is a version this dialect serves (anything else is a 404). */
export function isGanetiVersion(v: string): v is GanetiVersion {
  return (GANETI_VERSIONS as readonly string[]).includes(v);
}

/** A disk as the guest sees it: its position, format and size; never its host path. */
interface GanetiDisk {
  index: number;
  format?: 'raw' | 'qcow2';
  sizeGiB?: number;
}

/** meta_data.json. Optional parts are absent (not null) when the doc does not set them. */
export interface GanetiMetaData {
  uuid: string;
  name: string;
  hostname: string;
  os?: { name?: string; variant?: string };
  hardware?: { memoryMiB?: number; vcpus?: number; disks?: GanetiDisk[] };
  comm: { mac: string; ipv4: string };
  /** The NICs besides comm, as registered (absent when there are none). */
  nics?: Nic[];
  nameservers?: string[];
}

/** Copies the listed keys of `from` that are set, in the listed order. */
function pick<T extends object, K extends keyof T>(from: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (from[k] !== undefined) out[k] = from[k];
  return out;
}

/**
 * meta_data.json for one instance. Host-side fields are dropped on purpose:
 *   os {name:'debootstrap', variant:'bookworm', definition:'/srv/ganeti/os/debootstrap'}
 *     → os {name:'debootstrap', variant:'bookworm'}
 *   disks [{path:'/dev/xenvg/web-disk0', format:'raw', sizeGiB:20}]
 *     → disks [{index:0, format:'raw', sizeGiB:20}]
 *   comm {mac, ipv4, tap:'gnt.com.3'} → comm {mac, ipv4}
 *   nics, nameservers → as registered (no host detail in them)
 * Every version renders the same today; `version` is taken so a future one can differ.
 */
// eslint-disable-next-line @typescript-eslint/no-unused-vars -- every version renders the same today (see above)
export function renderGanetiMetaData(view: GuestView, version: GanetiVersion): GanetiMetaData {
  const doc = view.doc;
  const os = doc.os ? pick(doc.os, ['name', 'variant']) : {};
  const hw = doc.hardware;
  return {
    uuid: doc.uuid,
    name: doc.name,
    hostname: hostnameOf(doc),
    ...(Object.keys(os).length > 0 ? { os } : {}),
    ...(hw
      ? {
          hardware: {
            ...pick(hw, ['memoryMiB', 'vcpus']),
            ...(hw.disks ? { disks: hw.disks.map((d, index) => ({ index, ...pick(d, ['format', 'sizeGiB']) })) } : {}),
          },
        }
      : {}),
    comm: { mac: doc.comm.mac, ipv4: doc.comm.ipv4 },
    ...(doc.nics && doc.nics.length > 0 ? { nics: structuredClone(doc.nics) } : {}),
    ...(doc.nameservers && doc.nameservers.length > 0 ? { nameservers: [...doc.nameservers] } : {}),
  };
}

/** os/parameters.json: name → [value, visibility]. */
export type OsParameters = Record<string, [string, Visibility]>;

/**
 * Every OS parameter with its visibility, names sorted. On a name clash the more private
 * visibility wins (secret over private over public), as in Ganeti, which lists public, then
 * private, then secret so that a JSON reader keeps the last:
 *   public {image:'a', mirror:'m'}, private {image:'b'}, secret {}
 *   → {"image": ["b", "private"], "mirror": ["m", "public"]}
 * Secret values appear only when the caller passes them (the guest door passes the vault's live values).
 */
export function renderOsParameters(view: GuestView): OsParameters {
  const merged = new Map<string, [string, Visibility]>();
  const layers: [Visibility, Record<string, string> | undefined][] = [
    ['public', view.doc.params?.public],
    ['private', view.privateParams],
    ['secret', view.secretParams],
  ];
  for (const [visibility, values] of layers) {
    for (const [name, value] of Object.entries(values ?? {})) merged.set(name, [value, visibility]);
  }
  const names = [...merged.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Object.fromEntries defines own properties: a parameter named `__proto__` stays a parameter.
  return Object.fromEntries(names.map((n) => [n, merged.get(n) as [string, Visibility]]));
}
