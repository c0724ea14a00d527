/**
 * EC2 IMDS dialect: for one instance, the tree behind `/<version>/` (`meta-data/`, `user-data`,
 * `dynamic/instance-identity/`), each category gated by the version that introduced it. Fields
 * the doc leaves out get documented defaults. Versions, gates and defaults: ./ec2-catalog.ts.
 * Pure: no I/O, no clock, no randomness; the identity signature comes from `ctx.sign`.
 */
import { dir, LazyText, type Dir, type Tree } from './tree.js';
import { availabilityZoneOf, hostnameOf, launchIndexOf, since, sshKeysOf, userDataOf, type GuestView, type RenderCtx } from './view.js';
import { TAG_KEY_PATTERN, type IamCredentials, type PublicDoc } from '../../daemon/registry/model.js';
import { subnetOf } from '../../daemon/net.js';
import { nicsOf, type NicFacts } from './nics.js';
import { EC2_DEFAULTS, EC2_SINCE, type Ec2Version } from './ec2-catalog.js';

/** The EC2 facts of one instance after defaults, computed once per render. */
interface Ec2Facts {
  instanceId: string;
  amiId: string;
  instanceType: string;
  hostname: string;
  localIpv4: string;
  mac: string;
  az: string;
  region: string;
  accountId: string;
  architecture: string;
  reservationId: string;
  securityGroups: string[];
  kernelId: string | undefined;
}

/** The uuid as 32 lowercase hex digits: '6f1c2a9e-…' → '6f1c2a9e…'. */
function uuidHex(doc: PublicDoc): string {
  return doc.uuid.replace(/-/g, '').toLowerCase();
}

/**
 * Region from an availability zone: drop the zone letter.
 * 'us-east-1a' → 'us-east-1'; 'metad-1a' → 'metad-1'; 'nova' → 'nova' (no letter to drop).
 */
export function regionOf(az: string): string {
  const m = /^(.*\d)[a-z]$/.exec(az) ?? /^(.+)-[a-z]$/.exec(az);
  return m?.[1] ?? az;
}

function factsOf(doc: PublicDoc): Ec2Facts {
  const e = doc.ec2 ?? {};
  const hex = uuidHex(doc);
  const az = availabilityZoneOf(doc, 'ec2');
  return {
    // 'i-' + 17 hex digits like a current EC2 id: uuid 6f1c2a9e-4b7d-… → i-6f1c2a9e4b7d…
    instanceId: e.instanceId ?? `i-${hex.slice(0, 17)}`,
    amiId: e.amiId ?? EC2_DEFAULTS.amiId,
    instanceType: e.instanceType ?? EC2_DEFAULTS.instanceType,
    hostname: e.localHostname ?? hostnameOf(doc),
    localIpv4: e.localIpv4 ?? doc.comm.ipv4,
    mac: doc.comm.mac,
    az,
    region: e.region ?? regionOf(az),
    accountId: e.accountId ?? EC2_DEFAULTS.accountId,
    architecture: e.architecture ?? EC2_DEFAULTS.architecture,
    reservationId: e.reservationId ?? `r-${hex.slice(-17)}`,
    securityGroups: e.securityGroups?.length ? e.securityGroups : [EC2_DEFAULTS.securityGroup],
    kernelId: e.kernelId,
  };
}

/** ISO 8601 at second precision, as EC2 writes times: '2024-05-01T10:00:00.000Z' → '2024-05-01T10:00:00Z'. */
function isoSeconds(time: string): string {
  return new Date(time).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * JSON in EC2's own layout (two-space indent, a space on both sides of the colon), for flat
 * objects of strings and nulls. Clients parse it as JSON; the layout only mimics the real thing.
 * { Code: 'Success', kernelId: null } → '{\n  "Code" : "Success",\n  "kernelId" : null\n}'
 */
function awsJson(fields: Readonly<Record<string, string | null>>): string {
  const lines = Object.entries(fields).map(([k, v]) => `  ${JSON.stringify(k)} : ${JSON.stringify(v)}`);
  return `{\n${lines.join(',\n')}\n}`;
}

/**
 * The instance identity document served at `dynamic/instance-identity/document`, exactly the
 * bytes the caller must sign. Field order follows AWS's published example.
 */
export function identityDocument(view: GuestView): string {
  const f = factsOf(view.doc);
  return awsJson({
    accountId: f.accountId,
    architecture: f.architecture,
    availabilityZone: f.az,
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: f.amiId,
    instanceId: f.instanceId,
    instanceType: f.instanceType,
    kernelId: f.kernelId ?? null,
    pendingTime: isoSeconds(view.createdAt),
    privateIp: f.localIpv4,
    ramdiskId: null,
    region: f.region,
    version: '2017-09-30',
  });
}

/**
 * `public-keys/`: EC2 lists each key as `<index>=<name>` with no slash, yet the path to descend
 * is the bare index. Keys [{name:'alice'}, {name:'bob'}] give:
 *   public-keys/           → "0=alice\n1=bob"
 *   public-keys/0/         → "openssh-key"
 *   public-keys/0/openssh-key → the key text
 * Only OpenSSH keys are listed (an x509 key under `openssh-key` would pollute authorized_keys).
 */
function publicKeys(doc: PublicDoc): Dir | undefined {
  const keys = sshKeysOf(doc);
  if (keys.length === 0) return undefined;
  return dir(
    keys.map((k, i) => [String(i), dir({ 'openssh-key': k.key })] as const),
    keys.map((k, i) => [String(i), `${i}=${k.name}`] as const),
  );
}

/**
 * One NIC under `network/interfaces/macs/<mac>/`. Addresses come from the NIC itself (the comm
 * NIC's is its comm address, whatever `ec2.localIpv4` says); hostnames and public addresses
 * belong to the comm NIC, device 0. For nics [{mac, addresses: ['10.0.0.17/24', '10.0.0.18/24',
 * '2001:db8::17/64']}]:
 *   device-number 1, local-ipv4s "10.0.0.17\n10.0.0.18", subnet-ipv4-cidr-block 10.0.0.0/24,
 *   ipv6s 2001:db8::17, subnet-ipv6-cidr-blocks 2001:db8::/64
 * cloud-init 22.4 configures each listed NIC present in the guest by DHCP (route metric from the
 * device number) and adds the second and later addresses statically with the subnet's prefix.
 */
function nicDir(n: NicFacts, doc: PublicDoc, f: Ec2Facts): Dir {
  const e = doc.ec2 ?? {};
  const v4 = n.ipv4[0];
  const v6Subnets = [...new Set(n.ipv6.map(subnetOf))];
  return dir({
    'device-number': String(n.device),
    ipv6s: n.ipv6.length > 0 ? n.ipv6.map((a) => a.address).join('\n') : undefined,
    'local-hostname': n.comm ? f.hostname : undefined,
    'local-ipv4s': n.ipv4.length > 0 ? n.ipv4.map((a) => a.address).join('\n') : undefined,
    mac: n.mac,
    'owner-id': f.accountId,
    'public-hostname': n.comm ? e.publicHostname : undefined,
    'public-ipv4s': n.comm ? e.publicIpv4 : undefined,
    'security-groups': f.securityGroups.join('\n'),
    'subnet-ipv4-cidr-block': v4 ? subnetOf(v4) : undefined,
    'subnet-ipv6-cidr-blocks': v6Subnets.length > 0 ? v6Subnets.join('\n') : undefined,
  });
}

/** `network/interfaces/macs/`: every NIC by MAC, the comm NIC first, then `nics` in order. */
function network(view: GuestView, f: Ec2Facts): Dir {
  const macs = nicsOf(view).map((n) => [n.mac, nicDir(n, view.doc, f)] as const);
  return dir({ interfaces: dir({ macs: dir(macs) }) });
}

/**
 * `iam/`: `info` and `security-credentials/<role>`, both JSON. LastUpdated is the credentials'
 * own `lastUpdated`, else the instance's creation time (never "now", so renders stay stable).
 */
function iam(view: GuestView, f: Ec2Facts, cred: IamCredentials): Dir {
  const updated = isoSeconds(cred.lastUpdated ?? view.createdAt);
  const info = awsJson({
    Code: 'Success',
    LastUpdated: updated,
    InstanceProfileArn: cred.instanceProfileArn ?? `arn:aws:iam::${f.accountId}:instance-profile/${cred.role}`,
    InstanceProfileId: cred.instanceProfileId ?? `AIPA${uuidHex(view.doc).slice(0, 17).toUpperCase()}`,
  });
  const secret = awsJson({
    Code: 'Success',
    LastUpdated: updated,
    Type: 'AWS-HMAC',
    AccessKeyId: cred.accessKeyId,
    SecretAccessKey: cred.secretAccessKey,
    Token: cred.token,
    Expiration: isoSeconds(cred.expiration),
  });
  return dir({ info, 'security-credentials': dir([[cred.role, secret]]) });
}

/**
 * Tag keys as the schema admits them (TAG_KEY_PATTERN: EC2's rules for tags in metadata, minus
 * `<digits>=…`, which cloud-init mistakes for a public key). Registration refuses other keys;
 * this filter only guards documents stored before the rule: they are left out, not mangled:
 * {Name:'web', 'a b':'x', '..':'y'} → tags/instance/ lists "Name".
 */
const TAG_KEY = new RegExp(TAG_KEY_PATTERN);

function tags(doc: PublicDoc): Dir | undefined {
  if (doc.ec2?.exposeTags !== true) return undefined;
  const pairs = Object.entries(doc.ec2.tags ?? {})
    .filter(([k]) => TAG_KEY.test(k))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return dir({ instance: dir(pairs) });
}

/** Every category of `meta-data/` that `version` has, keyed by name (unsorted). */
function categories(view: GuestView, v: string, f: Ec2Facts): Record<string, Tree | undefined> {
  const doc = view.doc;
  const e = doc.ec2 ?? {};
  const c: Record<string, Tree | undefined> = {
    'ami-id': f.amiId,
    'ami-launch-index': String(launchIndexOf(doc, 'ec2')),
    'ami-manifest-path': e.amiManifestPath ?? EC2_DEFAULTS.amiManifestPath,
    hostname: f.hostname,
    'instance-id': f.instanceId,
    'local-ipv4': f.localIpv4,
    'public-keys': publicKeys(doc),
    'reservation-id': f.reservationId,
    'security-groups': f.securityGroups.join('\n'),
  };
  if (since(EC2_SINCE.localHostname, v)) {
    Object.assign(c, { 'local-hostname': f.hostname, 'public-hostname': e.publicHostname, 'public-ipv4': e.publicIpv4 });
  }
  if (since(EC2_SINCE.instanceType, v)) c['instance-type'] = f.instanceType;
  if (since(EC2_SINCE.blockDeviceMapping, v)) {
    c['block-device-mapping'] = dir({ ami: EC2_DEFAULTS.rootDevice, root: EC2_DEFAULTS.rootDevice });
  }
  if (since(EC2_SINCE.placement, v)) {
    c['kernel-id'] = f.kernelId;
    c.placement = dir({ 'availability-zone': f.az, region: since(EC2_SINCE.region, v) ? f.region : undefined });
  }
  if (since(EC2_SINCE.instanceAction, v)) c['instance-action'] = 'none';
  if (since(EC2_SINCE.network, v)) Object.assign(c, { mac: f.mac, network: network(view, f) });
  if (since(EC2_SINCE.iam, v) && view.iam) c.iam = iam(view, f, view.iam);
  if (since(EC2_SINCE.services, v)) c.services = dir({ domain: e.domain ?? EC2_DEFAULTS.domain });
  if (since(EC2_SINCE.tags, v)) c.tags = tags(doc);
  return c;
}

/** `dynamic/` (from 2009-04-04): the identity document, and its signature when ctx can sign. */
function dynamic(view: GuestView, ctx: RenderCtx): Dir {
  const document = identityDocument(view);
  const sign = ctx.sign;
  return dir({ 'instance-identity': dir({ document, signature: sign ? new LazyText(() => sign(document)) : undefined }) });
}

/**
 * The tree behind `/<version>/` for one instance. `meta-data/` lists alphabetically as EC2 does.
 * The version root lists its children without slashes, as EC2 does:
 *   GET /latest/ → "dynamic\nmeta-data\nuser-data"  (user-data only when there is some)
 */
export function renderEc2(view: GuestView, version: Ec2Version, ctx: RenderCtx): Dir {
  const cats = Object.entries(categories(view, version, factsOf(view.doc)));
  cats.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return dir(
    {
      dynamic: since(EC2_SINCE.dynamic, version) ? dynamic(view, ctx) : undefined,
      'meta-data': dir(cats),
      'user-data': userDataOf(view),
    },
    { dynamic: 'dynamic', 'meta-data': 'meta-data' },
  );
}
