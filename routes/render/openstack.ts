/**
 * OpenStack (Nova) dialect: the version list, what `/openstack/<version>/` lists, and the JSON
 * documents meta_data.json, network_data.json, vendor_data.json and vendor_data2.json, gated by
 * version as Nova gates them. Pure: no I/O, no clock; `random_seed` comes from ctx.randomSeed.
 * `password` is stateful (the guest POSTs it once), so the route serves it, not this module.
 */
import { availabilityZoneOf, hostnameOf, launchIndexOf, publicKeysOf, since, sshKeysOf, userDataOf, type GuestView, type RenderCtx } from './view.js';

/** What `GET /openstack` lists, oldest first, `latest` last (Nova's list). */
export const OPENSTACK_VERSIONS = [
  '2012-08-10', '2013-04-04', '2013-10-17', '2015-10-15', '2016-06-30', '2016-10-06',
  '2017-02-22', '2018-08-27', '2020-10-14', 'latest',
] as const;
export type OpenstackVersion = (typeof OPENSTACK_VERSIONS)[number];

/** True when `v` is a version this dialect serves (anything else is a 404). */
export function isOpenstackVersion(v: string): v is OpenstackVersion {
  return (OPENSTACK_VERSIONS as readonly string[]).includes(v);
}

/** The version that introduced each gated file or field (Nova's GRIZZLY, HAVANA, LIBERTY, NEWTON…). */
export const OPENSTACK_SINCE = {
  password: '2013-04-04',
  randomSeed: '2013-04-04',
  vendorData: '2013-10-17',
  networkData: '2015-10-15',
  projectId: '2015-10-15',
  /** Nova adds `devices` from NEWTON_ONE (2016-06-30) on. */
  devices: '2016-06-30',
  vendorData2: '2016-10-06',
} as const;

/** `random_seed` is this many bytes of ctx.randomSeed, base64-encoded (as Nova's os.urandom(512)). */
export const RANDOM_SEED_BYTES = 512;

export type OpenstackFileName =
  | 'meta_data.json' | 'user_data' | 'password' | 'vendor_data.json' | 'network_data.json' | 'vendor_data2.json';

/**
 * What `GET /openstack/<version>/` lists, in Nova's order. For an instance with user data:
 *   2012-08-10 → meta_data.json, user_data
 *   latest     → meta_data.json, user_data, password, vendor_data.json, network_data.json, vendor_data2.json
 * The route joins the names with '\n'.
 */
export function openstackListing(view: GuestView, version: OpenstackVersion): OpenstackFileName[] {
  const names: OpenstackFileName[] = ['meta_data.json'];
  if (userDataOf(view)) names.push('user_data');
  if (since(OPENSTACK_SINCE.password, version)) names.push('password');
  if (since(OPENSTACK_SINCE.vendorData, version)) names.push('vendor_data.json');
  if (since(OPENSTACK_SINCE.networkData, version)) names.push('network_data.json');
  if (since(OPENSTACK_SINCE.vendorData2, version)) names.push('vendor_data2.json');
  return names;
}

/** meta_data.json as Nova writes it (key order included). Optional keys are absent, never null. */
export interface OpenstackMetaData {
  uuid: string;
  meta?: Record<string, string>;
  public_keys?: Record<string, string>;
  keys?: { name: string; type: 'ssh' | 'x509'; data: string }[];
  hostname: string;
  name: string;
  launch_index: number;
  availability_zone: string;
  random_seed?: string;
  project_id?: string;
  devices?: Record<string, unknown>[];
}

/** base64 of the first RANDOM_SEED_BYTES of the caller's seed; a shorter seed is a caller bug. */
function randomSeed(ctx: RenderCtx): string {
  if (ctx.randomSeed.length < RANDOM_SEED_BYTES) {
    throw new RangeError(`ctx.randomSeed must hold at least ${RANDOM_SEED_BYTES} bytes`);
  }
  return ctx.randomSeed.subarray(0, RANDOM_SEED_BYTES).toString('base64');
}

/**
 * meta_data.json for one instance. Keys: `public_keys` maps name → key for OpenSSH keys only
 * (cloud-init writes every value to authorized_keys); `keys` lists every key with its type:
 *   [{name:'ops', key:'ssh-ed25519 A…'}, {name:'ca', key:'-----BEGIN…', type:'x509'}]
 *   → public_keys {ops: 'ssh-ed25519 A…'}, keys [{name:'ops', type:'ssh', …}, {name:'ca', type:'x509', …}]
 * Both are absent when the instance has no keys, as in Nova. `project_id` is present only when set.
 */
export function renderMetaData(view: GuestView, version: OpenstackVersion, ctx: RenderCtx): OpenstackMetaData {
  const doc = view.doc;
  const os = doc.openstack ?? {};
  const all = publicKeysOf(doc);
  // Object.fromEntries defines own properties, so a key named `__proto__` stays a plain key.
  const meta = os.meta && Object.keys(os.meta).length > 0 ? Object.fromEntries(Object.entries(os.meta)) : undefined;
  return {
    uuid: doc.uuid,
    ...(meta ? { meta } : {}),
    ...(all.length > 0 ? {
      public_keys: Object.fromEntries(sshKeysOf(doc).map((k) => [k.name, k.key])),
      keys: all.map((k) => ({ name: k.name, type: k.type, data: k.key })),
    } : {}),
    hostname: hostnameOf(doc),
    name: doc.name,
    launch_index: launchIndexOf(doc, 'openstack'),
    availability_zone: availabilityZoneOf(doc, 'openstack'),
    ...(since(OPENSTACK_SINCE.randomSeed, version) ? { random_seed: randomSeed(ctx) } : {}),
    ...(since(OPENSTACK_SINCE.projectId, version) && os.projectId !== undefined ? { project_id: os.projectId } : {}),
    ...(since(OPENSTACK_SINCE.devices, version) ? { devices: [...(os.devices ?? [])] } : {}),
  };
}

/** network_data.json in Nova's schema. */
export interface NetworkData {
  links: Record<string, unknown>[];
  networks: Record<string, unknown>[];
  services: Record<string, unknown>[];
  [k: string]: unknown;
}

/** Link id of the default network data (the host's tap name means nothing inside the guest). */
export const COMM_LINK_ID = 'comm0';

/**
 * network_data.json: `openstack.networkData` verbatim when the admin gave it, else the comm NIC
 * alone, statically addressed in link-local 169.254.0.0/16 and without a gateway (a default
 * route through the comm NIC would capture the guest's traffic). For comm {mac: '52:54:00:12:34:56',
 * ipv4: '169.254.10.7'}:
 *   links    [{id:'comm0', type:'phy', ethernet_mac_address:'52:54:00:12:34:56', mtu:1500}]
 *   networks [{id:'network0', link:'comm0', type:'ipv4', ip_address:'169.254.10.7',
 *              netmask:'255.255.0.0', routes:[]}]
 *   services []
 * cloud-init configures only the NICs listed here: a guest with other NICs needs its own
 * networkData.
 */
export function renderNetworkData(view: GuestView): NetworkData {
  const given = view.doc.openstack?.networkData;
  if (given) return structuredClone(given) as NetworkData;
  const { mac, ipv4 } = view.doc.comm;
  return {
    links: [{ id: COMM_LINK_ID, type: 'phy', ethernet_mac_address: mac, mtu: 1500 }],
    networks: [{ id: 'network0', link: COMM_LINK_ID, type: 'ipv4', ip_address: ipv4, netmask: '255.255.0.0', routes: [] }],
    services: [],
  };
}

/**
 * vendor_data.json (`which` 1) or vendor_data2.json (`which` 2): the admin's object, else `{}`
 * as Nova serves when no vendor data is configured.
 */
export function renderVendorData(view: GuestView, which: 1 | 2 = 1): Record<string, unknown> {
  const os = view.doc.openstack;
  const given = which === 1 ? os?.vendorData : os?.vendorData2;
  return given ? structuredClone(given) : {};
}

/** One file under `/openstack/<version>/`, ready for the route to serialise. */
export type OpenstackFile =
  | { kind: 'json'; value: unknown }
  | { kind: 'bytes'; value: Buffer }
  | { kind: 'password' };

/**
 * The file `name` under `/openstack/<version>/`, or undefined (a 404) when that version does not
 * list it: renderOpenstackFile(v, '2012-08-10', 'network_data.json', ctx) → undefined.
 * `password` comes back as a marker: the route owns its state.
 */
export function renderOpenstackFile(view: GuestView, version: OpenstackVersion, name: string, ctx: RenderCtx): OpenstackFile | undefined {
  const listed = openstackListing(view, version) as string[];
  if (!listed.includes(name)) return undefined;
  switch (name as OpenstackFileName) {
    case 'meta_data.json': return { kind: 'json', value: renderMetaData(view, version, ctx) };
    case 'user_data': return { kind: 'bytes', value: userDataOf(view) ?? Buffer.alloc(0) };
    case 'password': return { kind: 'password' };
    case 'vendor_data.json': return { kind: 'json', value: renderVendorData(view, 1) };
    case 'network_data.json': return { kind: 'json', value: renderNetworkData(view) };
    case 'vendor_data2.json': return { kind: 'json', value: renderVendorData(view, 2) };
  }
}
