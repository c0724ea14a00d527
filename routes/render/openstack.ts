/**
 * OpenStack (Nova) dialect: the version list, what `/openstack/<version>/` lists, and the JSON
 * documents meta_data.json, network_data.json, vendor_data.json and vendor_data2.json, gated by
 * version as Nova gates them. Pure: no I/O, no clock; `random_seed` comes from ctx.randomSeed.
 * `password` is stateful (the guest POSTs it once), so the route serves it, not this module.
 */
import { netmaskOf } from '../../daemon/net.js';
import { nicsOf, type NicFacts } from './nics.js';
import {
  availabilityZoneOf,
  hostnameOf,
  launchIndexOf,
  publicKeysOf,
  since,
  sshKeysOf,
  userDataOf,
  type GuestView,
  type RenderCtx,
} from './view.js';

/** What `GET /openstack` lists, oldest first, `latest` last (Nova's list). */
export const OPENSTACK_VERSIONS = [
  '2012-08-10',
  '2013-04-04',
  '2013-10-17',
  '2015-10-15',
  '2016-06-30',
  '2016-10-06',
  '2017-02-22',
  '2018-08-27',
  '2020-10-14',
  'latest',
] as const;
export type OpenstackVersion = (typeof OPENSTACK_VERSIONS)[number];

/** True when `v` is a version this dialect serves (anything else is a 404). */
export function isOpenstackVersion(v: string): v is OpenstackVersion {
  return (OPENSTACK_VERSIONS as readonly string[]).includes(v);
}

/** The version that introduced each gated file or field (Nova's GRIZZLY, HAVANA, LIBERTY, NEWTON…). */
const OPENSTACK_SINCE = {
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
  'meta_data.json' | 'user_data' | 'password' | 'vendor_data.json' | 'network_data.json' | 'vendor_data2.json';

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
 * `name` is the free-form `displayName`, else the instance name.
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
    ...(all.length > 0
      ? {
          public_keys: Object.fromEntries(sshKeysOf(doc).map((k) => [k.name, k.key])),
          keys: all.map((k) => ({ name: k.name, type: k.type, data: k.key })),
        }
      : {}),
    hostname: hostnameOf(doc),
    name: doc.displayName ?? doc.name,
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

/** Link id of the comm NIC in the default network data (the host's tap name means nothing inside the guest). */
export const COMM_LINK_ID = 'comm0';

/** Default route through a NIC's gateway, as Nova writes it. */
function defaultRoute(family: 4 | 6, gateway: string): Record<string, string> {
  return family === 4 ? { network: '0.0.0.0', netmask: '0.0.0.0', gateway } : { network: '::', netmask: '::', gateway };
}

/** The `networks` entries of one NIC: each static address, or IPv4 by DHCP when it has none. */
function networksOf(n: NicFacts, link: string, nextId: () => string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const networkId = n.network === undefined ? {} : { network_id: n.network };
  if (n.ipv4.length === 0) out.push({ id: nextId(), link, type: 'ipv4_dhcp', ...networkId });
  for (const a of [...n.ipv4, ...n.ipv6]) {
    const family = a.family === 4 ? n.ipv4 : n.ipv6;
    const gateway = a.family === 4 ? n.gateway4 : n.gateway6;
    // The default route goes with the first address of its family only.
    const routes = gateway !== undefined && family[0] === a ? [defaultRoute(a.family, gateway)] : [];
    out.push({ id: nextId(), link, type: `ipv${String(a.family)}`, ip_address: a.address, netmask: netmaskOf(a), routes, ...networkId });
  }
  return out;
}

/**
 * network_data.json: `openstack.networkData` verbatim when the admin gave it, else built from the
 * NICs: the comm NIC (link `comm0`, its address with the netmask of its comm range, no gateway:
 * a default route through it would capture the guest's traffic), then each of `nics` (link
 * `nic<device>`, static addresses with their own netmask and the NIC's gateway as default route,
 * or `ipv4_dhcp` when it has no IPv4 address), and `nameservers` as dns services. For comm
 * {mac: '52:54:00:12:34:56', ipv4: '169.254.10.7'} in 169.254.0.0/16 and one NIC
 * {mac: '52:54:00:aa:bb:cc', network: 'public', addresses: ['10.0.0.17/24'], gateway4: '10.0.0.1'}:
 *   links    [{id:'comm0', type:'phy', ethernet_mac_address:'52:54:00:12:34:56', mtu:1500},
 *             {id:'nic1',  type:'phy', ethernet_mac_address:'52:54:00:aa:bb:cc', mtu:1500}]
 *   networks [{id:'network0', link:'comm0', type:'ipv4', ip_address:'169.254.10.7', netmask:'255.255.0.0', routes:[]},
 *             {id:'network1', link:'nic1', type:'ipv4', ip_address:'10.0.0.17', netmask:'255.255.255.0',
 *              routes:[{network:'0.0.0.0', netmask:'0.0.0.0', gateway:'10.0.0.1'}], network_id:'public'}]
 *   services []
 */
export function renderNetworkData(view: GuestView): NetworkData {
  const given = view.doc.openstack?.networkData;
  if (given) return structuredClone(given) as NetworkData;
  const links: Record<string, unknown>[] = [];
  const networks: Record<string, unknown>[] = [];
  let id = 0;
  const nextId = () => `network${String(id++)}`;
  for (const n of nicsOf(view)) {
    const link = n.comm ? COMM_LINK_ID : `nic${String(n.device)}`;
    links.push({ id: link, type: 'phy', ethernet_mac_address: n.mac, mtu: n.mtu });
    networks.push(...networksOf(n, link, nextId));
  }
  const services = (view.doc.nameservers ?? []).map((address) => ({ type: 'dns', address }));
  return { links, networks, services };
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
export type OpenstackFile = { kind: 'json'; value: unknown } | { kind: 'bytes'; value: Buffer } | { kind: 'password' };

/**
 * The file `name` under `/openstack/<version>/`, or undefined (a 404) when that version does not
 * list it: renderOpenstackFile(v, '2012-08-10', 'network_data.json', ctx) → undefined.
 * `password` comes back as a marker: the route owns its state.
 */
export function renderOpenstackFile(view: GuestView, version: OpenstackVersion, name: string, ctx: RenderCtx): OpenstackFile | undefined {
  const listed = openstackListing(view, version) as string[];
  if (!listed.includes(name)) return undefined;
  switch (name as OpenstackFileName) {
    case 'meta_data.json':
      return { kind: 'json', value: renderMetaData(view, version, ctx) };
    case 'user_data':
      return { kind: 'bytes', value: userDataOf(view) ?? Buffer.alloc(0) };
    case 'password':
      return { kind: 'password' };
    case 'vendor_data.json':
      return { kind: 'json', value: renderVendorData(view, 1) };
    case 'network_data.json':
      return { kind: 'json', value: renderNetworkData(view) };
    case 'vendor_data2.json':
      return { kind: 'json', value: renderVendorData(view, 2) };
  }
}
