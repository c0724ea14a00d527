/**
 * What Ganeti pushes, as metad's instance document. Pure: no I/O, no clock.
 *
 * Ganeti 3.0's node daemon (lib/backend.py `ModifyInstanceMetadata`, called by
 * lib/cmdlib/instance_utils.py `UpdateMetadata` after every instance create, reinstall and
 * modify) sends one argument to `updateConfig`: `objects.Instance.ToDict()` (name, uuid, os,
 * beparams, osparams, osparams_private, nics, disks as UUIDs, …) plus `osparams_secret` (always,
 * `{}` when none) and, on a reinstall, `osparams_public` and `osparams_private` overriding the
 * instance's own. It maps onto the document the admin door takes (daemon/registry/model.ts) and
 * is checked by the same validation (validateInstance); a refusal names Ganeti's fields
 * (`nics[1].ip`, `osparams_private`), never a value.
 *
 *   {name:'web1.example.com', uuid, os:'debootstrap+default', beparams:{maxmem:512, vcpus:2},
 *    osparams:{image:'a'}, osparams_private:{pw:'p'}, osparams_secret:{key:'k'},
 *    nics:[{name:'ganeti:communication:web1', mac:'52:54:00:AA:00:01', ip:'169.254.10.2'},
 *          {mac:'52:54:00:aa:00:02', ip:'10.0.0.5', network:'net-uuid'}]}
 *   → {name:'web1.example.com', uuid, hostname:'web1.example.com', origin:'ganeti',
 *      os:{name:'debootstrap+default', variant:'default'}, hardware:{memoryMiB:512, vcpus:2},
 *      comm:{mac:'52:54:00:aa:00:01', ipv4:'169.254.10.2'}, nics:[{mac:'52:54:00:aa:00:02', network:'net-uuid'}],
 *      params:{public:{image:'a'}, private:{pw:'p'}, secret:{key:'k'}}}
 *
 * The comm NIC is the first whose name starts `ganeti:communication:` (Ganeti's
 * `constants.INSTANCE_COMMUNICATION_NIC_PREFIX`, which ganeti-metad keys instances by). Its tap is
 * not in the push: Ganeti's KVM hypervisor names it `gnt.com.N` when the instance starts
 * (hv_base.GenerateTapName: one above the highest index on the node), so the document keeps the
 * tap metad already recorded for that NIC (`nic up`) and otherwise has none.
 */
import { validateInstance } from '../registry/validate.js';
import { DaemonError, invalid, type ErrorDetail } from '../errors.js';
import { isInstanceName, type InstanceInput, type Nic, type ParamValues, type PublicDoc } from '../registry/model.js';

/** Ganeti's `constants.INSTANCE_COMMUNICATION_NIC_PREFIX`. */
export const COMM_NIC_PREFIX = 'ganeti:communication:';

/** What the feed does with one push. */
export interface GanetiPush {
  /** The instance name Ganeti pushed. */
  name: string;
  /** The document to store (validated), or undefined: the push has no communication NIC. */
  input?: InstanceInput;
  /** `osparams_secret`: for the vault (memory only), never stored. */
  secret: ParamValues;
  /** A store error about the document (e.g. its comm address taken) with Ganeti's field names. */
  inGanetiTerms(err: DaemonError): DaemonError;
}

/**
 * The parts of a stored document Ganeti knows nothing of: kept when the same instance (same
 * name and uuid) is pushed again, so what an admin added to a fed instance survives.
 */
const KEPT_FIELDS = ['displayName', 'nameservers', 'userData', 'publicKeys', 'ec2', 'openstack', 'install'] as const;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where each part of the document came from in the push, to name Ganeti's field in a refusal. */
interface Origins {
  comm: number;
  /** The Ganeti index of each entry of `nics`. */
  nics: number[];
  publicKey: 'osparams' | 'osparams_public';
  memoryKey: 'maxmem' | 'memory';
}

function refuse(field: string, message: string): never {
  throw invalid('the pushed instance is not usable', [{ path: field, message }]);
}

/** `name` as a refusal may show it: only a valid instance name, never whatever was pushed. */
export function pushedName(arg: unknown): string | undefined {
  const name = isObj(arg) ? arg.name : undefined;
  return typeof name === 'string' && isInstanceName(name) ? name : undefined;
}

/** An OS parameter map of the push: absent or null is empty; values are checked by the schema. */
function paramsAt(arg: Obj, key: string): Obj {
  const v = arg[key];
  if (v === undefined || v === null) return {};
  if (!isObj(v)) refuse(key, 'must be an object of parameter names to values');
  return v;
}

/** `params` without the names `drop` has: on a clash the more private visibility keeps it. */
function without(params: Obj, ...drop: Obj[]): ParamValues {
  // Object.fromEntries defines own properties: a name like `__proto__` stays data (and the schema refuses it).
  return Object.fromEntries(Object.entries(params).filter(([k]) => !drop.some((d) => Object.hasOwn(d, k)))) as ParamValues;
}

/** The host path of a disk in Ganeti's RPC form (`disks_info`), or undefined when it has none metad can use. */
function diskPath(d: Obj): string | undefined {
  const id = d.logical_id;
  if (!Array.isArray(id)) return undefined;
  if (d.dev_type === 'plain' && typeof id[0] === 'string' && typeof id[1] === 'string') return `/dev/${id[0]}/${id[1]}`;
  if (['file', 'sharedfile', 'blockdev'].includes(String(d.dev_type)) && typeof id[1] === 'string') return id[1];
  return undefined;
}

/**
 * `disks_info` (only Ganeti's RPC form carries it; `updateConfig` pushes disk UUIDs): the disks
 * when every one has a host path (plain LVs, files, block devices), else none: a partial list
 * would shift the disk indices the guest sees.
 */
function disksOf(arg: Obj): NonNullable<NonNullable<InstanceInput['hardware']>['disks']> | undefined {
  const info = arg.disks_info;
  if (info === undefined || info === null) return undefined;
  if (!Array.isArray(info)) refuse('disks_info', 'must be a list');
  const disks = info.map((d: unknown) => {
    const path = isObj(d) ? diskPath(d) : undefined;
    if (!isObj(d) || path === undefined) return undefined;
    return { path, format: 'raw' as const, ...(typeof d.size === 'number' ? { sizeGiB: d.size / 1024 } : {}) };
  });
  return disks.length > 0 && disks.every((d) => d !== undefined) ? disks : undefined;
}

/** A NIC besides the comm NIC: its MAC and network; its address only with its network's prefix (`netinfo`). */
function nicOf(nic: Obj, i: number): Nic {
  if (typeof nic.mac !== 'string') refuse(`nics[${String(i)}].mac`, 'must be a string');
  const out: Nic = { mac: nic.mac.toLowerCase() };
  if (typeof nic.network === 'string' && nic.network !== '') out.network = nic.network;
  const net = nic.netinfo;
  const prefix = isObj(net) && typeof net.network === 'string' ? /\/(\d{1,2})$/.exec(net.network)?.[1] : undefined;
  if (typeof nic.ip === 'string' && prefix !== undefined) {
    out.addresses = [`${nic.ip}/${prefix}`];
    if (isObj(net) && typeof net.gateway === 'string') out.gateway4 = net.gateway;
  }
  return out;
}

/** A metad document path as the Ganeti field it came from: '/comm/ipv4' → 'nics[2].ip'. */
function ganetiField(path: string, o: Origins): string {
  const [a, b, ...rest] = path.split('/').slice(1);
  const tail = rest.length > 0 ? `.${rest.join('.')}` : '';
  switch (a) {
    case 'name':
    case 'hostname':
      return 'name';
    case 'uuid':
      return 'uuid';
    case 'os':
      return 'os';
    case 'origin':
      return 'name';
    case 'comm':
      if (b === 'tap') return `nics[${String(o.comm)}] (the tap metad recorded for it)`;
      return `nics[${String(o.comm)}]${b === 'ipv4' ? '.ip' : b === undefined ? '' : `.${b}`}`;
    case 'nics': {
      const i = b === undefined ? undefined : o.nics[Number(b)];
      const field =
        rest[0] === 'addresses' ? '.ip' : rest[0] === 'gateway4' ? '.netinfo.gateway' : rest[0] === undefined ? '' : `.${rest[0]}`;
      return i === undefined ? 'nics' : `nics[${String(i)}]${field}`;
    }
    case 'params':
      return `${b === 'private' ? 'osparams_private' : b === 'secret' ? 'osparams_secret' : o.publicKey}${tail}`;
    case 'hardware':
      if (b === 'memoryMiB') return `beparams.${o.memoryKey}`;
      if (b === 'vcpus') return 'beparams.vcpus';
      return b === 'disks' ? `disks_info${rest[0] === undefined ? '' : `[${rest[0]}]`}` : 'beparams';
    default:
      return `metad's ${path} (kept from the stored instance)`;
  }
}

/** The same error with each detail's path turned into Ganeti's field. */
function inGanetiTerms(err: DaemonError, o: Origins): DaemonError {
  const details: ErrorDetail[] = err.details.map((d) => ({ path: ganetiField(d.path, o), message: d.message }));
  return new DaemonError(err.code, err.message, details);
}

/**
 * One `updateConfig` argument as the feed applies it. `prev` is the document stored under the
 * pushed name (if any): the same instance (same uuid) keeps its tap (same comm MAC) and the
 * fields Ganeti knows nothing of. Throws a DaemonError (InvalidInput) naming Ganeti's fields.
 */
export function mapGanetiPush(arg: unknown, prev?: PublicDoc): GanetiPush {
  if (!isObj(arg)) refuse('the argument', 'must be an object (objects.Instance.ToDict())');
  const name = arg.name;
  if (typeof name !== 'string' || name === '') refuse('name', 'must be a non-empty string');
  if (arg.nics !== undefined && arg.nics !== null && !Array.isArray(arg.nics)) refuse('nics', 'must be a list');
  const nics: unknown[] = Array.isArray(arg.nics) ? arg.nics : [];
  nics.forEach((n, i) => {
    if (!isObj(n)) refuse(`nics[${String(i)}]`, 'must be an object');
  });
  const all = nics as Obj[];
  const c = all.findIndex((n) => typeof n.name === 'string' && n.name.startsWith(COMM_NIC_PREFIX));
  if (c < 0) return { name, secret: {}, inGanetiTerms: (err) => err };
  const comm = all[c] as Obj;
  if (typeof comm.ip !== 'string')
    refuse(`nics[${String(c)}].ip`, 'the communication NIC has no IP address (metad identifies the guest by it)');
  if (typeof comm.mac !== 'string') refuse(`nics[${String(c)}].mac`, 'must be a string');
  const mac = comm.mac.toLowerCase();

  const publicKey = arg.osparams_public === undefined || arg.osparams_public === null ? 'osparams' : 'osparams_public';
  const pub = paramsAt(arg, publicKey);
  const priv = paramsAt(arg, 'osparams_private');
  const sec = paramsAt(arg, 'osparams_secret');
  // A reinstall's osparams_public is SimpleFillOS's merge: it holds the private and secret values
  // too. They stay in their own visibility and never become public (stored in the clear).
  const params: NonNullable<InstanceInput['params']> = { private: without(priv, sec) };
  const publicValues = without(pub, priv, sec);
  if (Object.keys(publicValues).length > 0) params.public = publicValues;
  const secret = without(sec);
  if (Object.keys(secret).length > 0) params.secret = secret;

  if (arg.beparams !== undefined && arg.beparams !== null && !isObj(arg.beparams)) refuse('beparams', 'must be an object');
  const be: Obj = isObj(arg.beparams) ? arg.beparams : {};
  const memoryKey = be.maxmem === undefined && be.memory !== undefined ? 'memory' : 'maxmem';
  const hardware: Obj = {};
  if (be[memoryKey] !== undefined && be[memoryKey] !== null) hardware.memoryMiB = be[memoryKey];
  if (be.vcpus !== undefined && be.vcpus !== null) hardware.vcpus = be.vcpus;
  const disks = disksOf(arg);
  if (disks) hardware.disks = disks;

  if (arg.os !== undefined && arg.os !== null && typeof arg.os !== 'string') refuse('os', 'must be a string');
  const os = typeof arg.os === 'string' && arg.os !== '' ? arg.os : undefined;
  const plus = os?.indexOf('+') ?? -1;

  const others = all.flatMap((n, i) => (i === c ? [] : [{ i, nic: nicOf(n, i) }]));
  const same = prev !== undefined && prev.uuid === arg.uuid ? prev : undefined;
  const tap = same?.comm.mac.toLowerCase() === mac ? same.comm.tap : undefined;
  const doc: Obj = {
    ...(same ? Object.fromEntries(KEPT_FIELDS.filter((k) => same[k] !== undefined).map((k) => [k, structuredClone(same[k])])) : {}),
    name,
    uuid: arg.uuid,
    hostname: name,
    origin: 'ganeti',
    comm: { mac, ipv4: comm.ip, ...(tap === undefined ? {} : { tap }) },
    ...(others.length > 0 ? { nics: others.map((o) => o.nic) } : {}),
    ...(os === undefined ? {} : { os: { name: os, ...(plus > 0 ? { variant: os.slice(plus + 1) } : {}) } }),
    ...(Object.keys(hardware).length > 0 ? { hardware } : {}),
    params,
  };
  const origins: Origins = { comm: c, nics: others.map((o) => o.i), publicKey, memoryKey };
  try {
    return { name, input: validateInstance(doc), secret, inGanetiTerms: (err) => inGanetiTerms(err, origins) };
  } catch (err) {
    throw err instanceof DaemonError ? inGanetiTerms(err, origins) : err;
  }
}
