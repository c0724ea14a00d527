/**
 * The instance model: one JSON Schema (the single source of truth for what an admin may
 * register) and the TypeScript types derived from it with json-schema-to-ts.
 * Pure data and validation helpers: no I/O here. docs/instance.schema.json is `instanceSchema`
 * as `metad schema` prints it (daemon/cli.ts), and test/unit/model.test.ts keeps the two equal.
 */
import type { FromSchema } from 'json-schema-to-ts';

/** A DNS-label style name: it is also a file name in the state dir, so no '/', no '..'. */
const NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$';
/** Linux NAME_MAX: the longest directory entry, in bytes (names are ASCII: bytes = characters). */
export const FILE_NAME_MAX = 255;
/** What the store appends to a name: instances/<name>.json. */
const STATE_FILE_SUFFIX = '.json';
/**
 * 250, not DNS's 253: the state file `<name>.json` must fit NAME_MAX (docs/design-notes.md).
 * Every other file metad names (temp files, quarantined copies) is built so that it fits too.
 */
export const MAX_NAME_CHARS = FILE_NAME_MAX - STATE_FILE_SUFFIX.length;
/** Hostnames are not file names: DNS's own limit (RFC 1035). */
const MAX_HOSTNAME_CHARS = 253;
const NAME_RE = new RegExp(NAME_PATTERN);

/** An instance name as the schema admits it: the one check for paths, files and bodies. */
export function isInstanceName(name: string): boolean {
  return name.length <= MAX_NAME_CHARS && NAME_RE.test(name);
}
/** OS parameter names become environment variables inside the install appliance. */
export const PARAM_NAME_PATTERN = '^(?!(__proto__|constructor|prototype)$)[A-Za-z_][A-Za-z0-9_.-]{0,63}$';
/**
 * A host path as an admin may name it: absolute and normalized, without control characters (C0,
 * DEL, C1), `.` or `..` segments, `//` or a trailing `/` (daemon/jobs/disks.ts says the same in code).
 */
export const HOST_PATH_PATTERN = '^(/(?!\\.{1,2}(/|$))[^/\\u0000-\\u001f\\u007f-\\u009f]+)+$';
/** Ganeti OS names (`name` or `name+variant`): a directory name, never a path. */
export const OS_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(\\+[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$';
const MAC_PATTERN = '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$';
/** Interface names are at most 15 characters (IFNAMSIZ - 1). */
const TAP_PATTERN = '^[A-Za-z0-9_.-]{1,15}$';
/**
 * EC2 tag keys as instance metadata allows them (letters, digits, `+ - = . , _ : @`; not `.`,
 * `..` or `_index`), and never `<digits>=…`: cloud-init reads such a listing line as a public
 * key (`0=name`), fetches `…/0/openssh-key`, gets 404 and discards the whole meta-data tree.
 */
export const TAG_KEY_PATTERN = '^(?!(_index|__proto__|constructor|prototype)$)(?!\\.{1,2}$)(?![0-9]+=)[A-Za-z0-9+=.,_:@-]{1,128}$';
const MAX_USER_DATA_BYTES = 64 * 1024;
/** base64 of 64 KiB is 87,384 characters. */
const MAX_USER_DATA_B64 = Math.ceil(MAX_USER_DATA_BYTES / 3) * 4;
const MAX_PARAM_VALUE_CHARS = 32 * 1024;
export const VISIBILITIES = ['public', 'private', 'secret'] as const;
export type Visibility = (typeof VISIBILITIES)[number];

const stringMap = {
  type: 'object',
  additionalProperties: { type: 'string', maxLength: 4096 },
  maxProperties: 128,
} as const;

export const paramValuesSchema = {
  type: 'object',
  propertyNames: { pattern: PARAM_NAME_PATTERN },
  additionalProperties: { type: 'string', maxLength: MAX_PARAM_VALUE_CHARS },
  maxProperties: 256,
} as const;

const shortString = { type: 'string', minLength: 1, maxLength: 255 } as const;
/** A host path an admin names (disks, the OS image): HOST_PATH_PATTERN, at most 4096 characters. */
const hostPath = <D extends string>(description: D) =>
  ({ type: 'string', pattern: HOST_PATH_PATTERN, maxLength: 4096, description }) as const;
/** A disk or image file's format (never probed). */
const imageFormat = { type: 'string', enum: ['raw', 'qcow2'] } as const;
const ipv4 = { type: 'string', format: 'ipv4' } as const;
const ipv6 = { type: 'string', format: 'ipv6' } as const;
/** An address with its prefix length; validate.ts checks the address and the prefix's range. */
const ADDRESS_CIDR_PATTERN = '^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$';
const MAX_NICS = 15;

/** A guest NIC besides the comm NIC. */
const nicSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['mac'],
  properties: {
    mac: { type: 'string', pattern: MAC_PATTERN },
    network: { type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$', description: 'The network it is attached to (OpenStack network_id).' },
    addresses: {
      type: 'array',
      maxItems: 16,
      items: { type: 'string', pattern: ADDRESS_CIDR_PATTERN },
      description: 'Static addresses with their prefix, IPv4 and IPv6: ["10.0.0.17/24", "2001:db8::17/64"]. No IPv4 address: IPv4 by DHCP.',
    },
    gateway4: { ...ipv4, description: 'IPv4 default gateway through this NIC.' },
    gateway6: { ...ipv6, description: 'IPv6 default gateway through this NIC.' },
    mtu: { type: 'integer', minimum: 68, maximum: 65535, description: 'Default 1500.' },
  },
} as const;

const iamSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['role', 'accessKeyId', 'secretAccessKey', 'token', 'expiration'],
  properties: {
    role: { type: 'string', pattern: '^[A-Za-z0-9+=,.@_-]{1,64}$' },
    accessKeyId: shortString,
    secretAccessKey: { type: 'string', minLength: 1, maxLength: 1024 },
    token: { type: 'string', minLength: 1, maxLength: 8192 },
    expiration: { type: 'string', format: 'date-time' },
    lastUpdated: { type: 'string', format: 'date-time' },
    instanceProfileArn: shortString,
    instanceProfileId: shortString,
  },
} as const;

export const instanceSchema = {
  $id: 'https://metad.invalid/schemas/instance.json',
  title: 'metad instance',
  description: 'An instance registered with metad. Secret values and private values are never read back.',
  type: 'object',
  additionalProperties: false,
  required: ['name', 'uuid', 'comm'],
  properties: {
    name: {
      type: 'string',
      pattern: NAME_PATTERN,
      maxLength: MAX_NAME_CHARS,
      description: 'Unique name; also the state file name (<name>.json), hence at most 250 characters.',
    },
    uuid: { type: 'string', format: 'uuid' },
    displayName: {
      type: 'string',
      minLength: 1,
      maxLength: 255,
      pattern: '^[^\\u0000-\\u001f\\u007f]*$',
      description: 'Free-form display name (no control characters): OpenStack meta_data.json `name`. Default: the instance name.',
    },
    hostname: { type: 'string', pattern: NAME_PATTERN, maxLength: MAX_HOSTNAME_CHARS },
    origin: {
      type: 'string',
      enum: ['ganeti'],
      description:
        "`ganeti`: Ganeti's node daemon pushed this instance through the Ganeti feed (docs/ganeti.md), which replaces it on the next push of its name, replaces it when another instance is pushed with its comm address, and removes it when it is pushed without a communication NIC. Absent: registered through the admin door (the feed then only ever replaces it by name). `metadctl remove` removes either.",
    },
    comm: {
      type: 'object',
      description: 'The comm NIC: the guest is identified by the source address of its connections.',
      additionalProperties: false,
      required: ['mac', 'ipv4'],
      properties: {
        mac: { type: 'string', pattern: MAC_PATTERN },
        ipv4: {
          ...ipv4,
          description:
            'In a comm range (guest.commRange); never 169.254.169.254, 0.0.0.0/8, 224.0.0.0/3, nor the network or broadcast address of its comm range (docs/deployment.md).',
        },
        tap: { type: 'string', pattern: TAP_PATTERN },
      },
    },
    nics: {
      type: 'array',
      maxItems: MAX_NICS,
      items: nicSchema,
      description:
        "The guest's NICs besides the comm NIC, in device order (EC2 device-number 1, 2, …), rendered into EC2 network/interfaces/macs/ and OpenStack network_data.json.",
    },
    nameservers: {
      type: 'array',
      maxItems: 8,
      items: { type: 'string', anyOf: [{ format: 'ipv4' }, { format: 'ipv6' }] },
      description: 'DNS servers for the guest (OpenStack network_data.json services).',
    },
    userData: {
      type: 'string',
      contentEncoding: 'base64',
      maxLength: MAX_USER_DATA_B64,
      pattern: '^[A-Za-z0-9+/]*={0,2}$',
      description: 'User data, base64-encoded raw bytes (at most 64 KiB decoded).',
    },
    publicKeys: {
      type: 'array',
      description: 'Names must be unique: cloud-init keeps only the last key of a name.',
      maxItems: 32,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'key'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9_.@-]{1,64}$' },
          key: { type: 'string', minLength: 1, maxLength: 16384 },
          type: { type: 'string', enum: ['ssh', 'x509'] },
        },
      },
    },
    ec2: {
      type: 'object',
      additionalProperties: false,
      properties: {
        instanceId: { type: 'string', pattern: '^[A-Za-z0-9-]{1,64}$' },
        amiId: shortString,
        amiLaunchIndex: { type: 'integer', minimum: 0 },
        amiManifestPath: shortString,
        instanceType: shortString,
        kernelId: shortString,
        localIpv4: ipv4,
        publicIpv4: ipv4,
        localHostname: shortString,
        publicHostname: shortString,
        availabilityZone: shortString,
        region: shortString,
        accountId: { type: 'string', pattern: '^[0-9]{1,20}$' },
        reservationId: shortString,
        securityGroups: { type: 'array', maxItems: 64, items: shortString },
        architecture: { type: 'string', enum: ['x86_64', 'arm64', 'i386'] },
        domain: shortString,
        imdsV2: { type: 'string', enum: ['optional', 'required'], description: 'required: token-less reads get 401.' },
        tags: { ...stringMap, propertyNames: { pattern: TAG_KEY_PATTERN }, additionalProperties: { type: 'string', maxLength: 256 } },
        exposeTags: { type: 'boolean', description: 'Serve tags/instance/ (EC2 "instance metadata tags").' },
        iam: { ...iamSchema, description: 'Role credentials. Sensitive: encrypted at rest, never read back.' },
      },
    },
    openstack: {
      type: 'object',
      additionalProperties: false,
      properties: {
        availabilityZone: shortString,
        projectId: shortString,
        launchIndex: { type: 'integer', minimum: 0 },
        meta: stringMap,
        devices: { type: 'array', maxItems: 64, items: { type: 'object' } },
        networkData: { type: 'object', description: 'Served as network_data.json (Nova schema: links, networks, services).' },
        vendorData: { type: 'object' },
        vendorData2: { type: 'object' },
      },
    },
    os: {
      type: 'object',
      additionalProperties: false,
      properties: {
        name: {
          type: 'string',
          pattern: OS_NAME_PATTERN,
          description:
            "Ganeti's OS name (`debootstrap`, or `debootstrap+default` with its variant): the definition is `<dir>/<name before +>` in the first directory of the configured OS search path (os.searchPath) that holds it. Never a host path.",
        },
        variant: shortString,
      },
    },
    params: {
      type: 'object',
      additionalProperties: false,
      description: 'OS parameters by visibility. private/secret given in a PUT replace the stored ones; omitted, they are kept.',
      properties: {
        public: paramValuesSchema,
        private: paramValuesSchema,
        secret: paramValuesSchema,
      },
    },
    install: {
      type: 'object',
      additionalProperties: false,
      properties: {
        appliance: shortString,
        mode: {
          type: 'string',
          enum: ['install', 'self_install'],
          description:
            "`install` (the default): the install appliance runs the OS scripts onto the instance's disks. `self_install`: the instance's own first disk (install media, or the OS image written onto it) is booted with the comm NIC and installs itself from its metadata; the job ends when it reports and powers off, or at the deadline.",
        },
        packageUrl: {
          type: 'string',
          format: 'uri',
          pattern: '^https?://[^/?#@\\s]+/[^?#\\s]*\\.(tar\\.gz|tgz)(\\?[^#\\s]*)?$',
          maxLength: 2048,
          description:
            'The personalization package: an http(s) URL of a `.tar.gz` or `.tgz` whose files the install appliance unpacks over the installed filesystem after the OS scripts ran. Fetched by metad while the install job runs, checked as it streams, never stored (docs/guest-api.md). No credentials in the URL (it is stored and shown): basic auth comes from the secret parameters `package-username` and `package-password`.',
        },
        image: {
          type: 'object',
          additionalProperties: false,
          required: ['sha256'],
          oneOf: [{ required: ['path'] }, { required: ['url'] }],
          description:
            'An OS image written onto the first disk before the OS scripts run, from a host path or a URL (one of the two); the install job fails, with nothing written, when its sha256 does not match.',
          properties: {
            url: {
              type: 'string',
              format: 'uri',
              pattern: '^https?://[^/?#@\\s]+(/[^#\\s]*)?$',
              maxLength: 2048,
              description:
                "An http(s) URL of the image (no credentials in it): fetched by metad when the run is prepared into the state directory (`<stateDir>/images`, 0700), checked, written, and deleted; bounded like the personalization package (appliance.package's timeouts and redirects) and by the first disk's size.",
            },
            path: hostPath(
              'Absolute, normalized host path of a regular file under storage.imageRoots, writable by its owner only; checked at the install request and again before it is written.',
            ),
            sha256: { type: 'string', pattern: '^[0-9a-f]{64}$', description: 'The sha256 of the file as it is (lower-case hex).' },
            format: { ...imageFormat, description: "The file's format (never probed). Default raw." },
          },
        },
        timeoutSec: {
          type: 'integer',
          minimum: 1,
          maximum: 86400,
          description:
            "This instance's install deadline in seconds (the hard deadline of `POST /v1/instances/{name}/install` when the request gives no timeoutSec; capped at appliance.maxTimeoutMs). Unset: appliance.installTimeoutMs.",
        },
      },
    },
    hardware: {
      type: 'object',
      additionalProperties: false,
      properties: {
        memoryMiB: { type: 'integer', minimum: 16, maximum: 4194304 },
        vcpus: { type: 'integer', minimum: 1, maximum: 1024 },
        disks: {
          type: 'array',
          maxItems: 16,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['path'],
            properties: {
              path: hostPath(
                'Absolute, normalized host path (no control characters, no `.`/`..` segments, no `//`) of a regular file under storage.fileRoots or a block device under storage.blockRoots; checked at the install request and again before the run.',
              ),
              format: imageFormat,
              sizeGiB: { type: 'number', minimum: 0 },
            },
          },
        },
      },
    },
  },
} as const;

/** An instance document as an admin submits it (may carry private and secret values). */
export type InstanceInput = FromSchema<typeof instanceSchema>;
export type ParamValues = Record<string, string>;
export type IamCredentials = FromSchema<typeof iamSchema>;
export type Nic = FromSchema<typeof nicSchema>;

/**
 * What the store keeps for one instance. `doc` has no `params.secret` and no `params.private`
 * and no `ec2.iam`: those live in `sensitive` (persisted encrypted) and in the vault (memory).
 */
export interface StoredInstance {
  readonly doc: PublicDoc;
  readonly sensitive: Sensitive;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Increases on every change; guest-side caches key on it. */
  readonly generation: number;
}

export type PublicDoc = Omit<InstanceInput, 'params' | 'ec2'> & {
  params?: { public?: ParamValues };
  ec2?: Omit<NonNullable<InstanceInput['ec2']>, 'iam'>;
};

export interface Sensitive {
  private: ParamValues;
  iam?: IamCredentials;
  /** OpenStack `password`, POSTed once by the guest; only the admin clears it. */
  password?: string;
}

/**
 * The same registration, not merely the same name: a DELETE followed by a new PUT of that name
 * is another incarnation, and nothing in flight for the old one may land in it.
 */
export function sameIncarnation(a: StoredInstance, b: StoredInstance): boolean {
  return a.doc.uuid === b.doc.uuid && a.createdAt === b.createdAt;
}

/** One incarnation of an instance as a string (install job records are keyed by it). */
export function incarnationOf(i: Pick<StoredInstance, 'doc' | 'createdAt'>): string {
  return `${i.doc.uuid}@${i.createdAt}`;
}

/**
 * What an install job relies on not changing under it: the comm identity the appliance's tap
 * carries, the disks it writes to, the OS whose scripts it runs. JSON of those parts.
 */
function installIdentity(doc: PublicDoc): Record<'/comm' | '/hardware/disks' | '/os', string> {
  const { mac, ipv4, tap } = doc.comm;
  return {
    '/comm': JSON.stringify([mac.toLowerCase(), ipv4, tap ?? null]),
    '/hardware/disks': JSON.stringify(doc.hardware?.disks ?? []),
    '/os': JSON.stringify([doc.os?.name ?? null, doc.os?.variant ?? null]),
  };
}

/** The parts of the install identity that differ between two versions of a document (JSON pointers). */
export function installIdentityChanges(a: PublicDoc, b: PublicDoc): string[] {
  const x = installIdentity(a);
  const y = installIdentity(b);
  return (Object.keys(x) as (keyof typeof x)[]).filter((k) => x[k] !== y[k]);
}

/** Split an input document into its public part and the sensitive parts. */
export function splitInput(input: InstanceInput): {
  doc: PublicDoc;
  priv?: ParamValues;
  secret?: ParamValues;
  iam?: IamCredentials | null;
} {
  const { params, ec2, ...rest } = input;
  const doc: PublicDoc = { ...rest };
  if (params?.public) doc.params = { public: { ...params.public } };
  let iam: IamCredentials | null | undefined;
  if (ec2) {
    const { iam: i, ...ec2rest } = ec2;
    doc.ec2 = ec2rest;
    iam = i;
  }
  return { doc, priv: params?.private, secret: params?.secret, iam };
}

/**
 * A stored instance as the input document it was registered with, to patch or put again: the
 * public document plus the private values and IAM credentials from `sensitive`. Never the
 * secret values (the vault's, not the store's) nor the OpenStack password (the guest's).
 */
export function inputOf(i: StoredInstance): InstanceInput {
  const doc: InstanceInput = structuredClone(i.doc);
  if (Object.keys(i.sensitive.private).length > 0) doc.params = { ...(doc.params ?? {}), private: { ...i.sensitive.private } };
  if (i.sensitive.iam) doc.ec2 = { ...(doc.ec2 ?? {}), iam: { ...i.sensitive.iam } };
  return doc;
}
