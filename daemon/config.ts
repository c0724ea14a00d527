/**
 * Daemon configuration: one JSON schema with defaults, loaded from a file (JSON or YAML) plus a
 * few environment overrides (the environment arrives as a value from daemon/cli.ts, the one
 * daemon module that reads process.env), validated with ajv (every error listed), then
 * deep-frozen.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import type { FromSchema } from 'json-schema-to-ts';
import { ipv4InCidr, parseCidr } from './net.js';

const METADATA_IPV4 = '169.254.169.254';

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    stateDir: {
      type: 'string',
      default: '/var/lib/metad',
      description:
        'Directory of the durable state: `instances/` (one sealed file per instance), `private.key`, `identity-key.pem`, `quarantine/`. Created 0700 if missing.',
    },
    keyFile: {
      type: 'string',
      description:
        'The 32-byte master key that seals private values and authenticates state files. Unset: `<stateDir>/private.key`, created 0600 on first start. When set, the file must exist (mode 0600 or stricter).',
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Logging: pino JSON lines on stdout (docs/logging.md lists every message).',
      properties: {
        level: {
          type: 'string',
          enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
          default: 'info',
          description: 'Least severe level written.',
        },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The admin door: HTTP over a unix socket (docs/admin-api.md).',
      properties: {
        socket: {
          type: 'string',
          default: '/run/metad/admin.sock',
          description: 'Path of the admin socket; its directory is created (0750) if missing, a stale socket is replaced.',
        },
        socketMode: {
          type: 'string',
          pattern: '^0?[0-7]{3}$',
          default: '0660',
          description: 'Octal permission bits of the admin socket: whoever can connect is an admin.',
        },
        maxBodyBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 16777216,
          default: 262144,
          description: 'Largest admin request body (instance documents, patches, params); larger ones get 413.',
        },
      },
    },
    guest: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The guest door: the metadata service guests reach on the comm network (docs/guest-api.md).',
      properties: {
        listen: {
          type: 'array',
          minItems: 1,
          default: [{ host: '169.254.169.254', port: 80 }],
          description:
            'Addresses the guest door listens on (the address must already be on an interface; two entries may not share host and port).',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['host'],
            description: 'One listening address.',
            properties: {
              host: { type: 'string', format: 'ip', description: 'IPv4 or IPv6 address (not a host name).' },
              port: {
                type: 'integer',
                minimum: 0,
                maximum: 65535,
                default: 80,
                description: 'TCP port; 0 picks a free one (tests). Ports below 1024 need CAP_NET_BIND_SERVICE.',
              },
            },
          },
        },
        commRange: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          items: { type: 'string', format: 'ipv4-cidr' },
          default: ['169.254.0.0/16'],
          description:
            "Comm IPv4 ranges: a registered instance's comm address must lie in one of them, and its comm NIC gets the prefix of the most specific one (OpenStack netmask, EC2 subnet). A single string is read as a one-element list.",
        },
        rateLimit: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Per-instance token bucket on guest requests; over it a guest gets 429 with Retry-After.',
          properties: {
            ratePerSec: { type: 'number', minimum: 0.1, default: 100, description: 'Requests per second refilled.' },
            burst: { type: 'integer', minimum: 1, default: 200, description: 'Bucket size: requests allowed at once.' },
          },
        },
        headersTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 5000,
          description: "A request's headers must arrive within this time (no more than requestTimeoutMs).",
        },
        requestTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 10000,
          description: 'A whole request (headers and body) must arrive within this time.',
        },
        keepAliveTimeoutMs: {
          type: 'integer',
          minimum: 100,
          default: 5000,
          description: 'An idle keep-alive connection is closed after this time.',
        },
        maxConnections: {
          type: 'integer',
          minimum: 1,
          default: 4096,
          description: 'Open guest connections in all; further ones are closed at once.',
        },
        maxConnectionsPerSource: {
          type: 'integer',
          minimum: 1,
          default: 64,
          description: 'Open guest connections per source address; further ones are closed at once.',
        },
        cacheInstances: {
          type: 'integer',
          minimum: 1,
          default: 2048,
          description: 'Instances whose rendered answers are kept (least recently rendered dropped first); ~25 KiB each.',
        },
      },
    },
    secrets: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Secret OS parameters (kept in memory only, never on disk).',
      properties: {
        defaultTtlSec: {
          type: 'integer',
          minimum: 1,
          maximum: 604800,
          default: 7200,
          description:
            'Lifetime of a secret value when the request gives no ttlSec; no shorter than /appliance/installTimeoutMs (the default install deadline), so a secret cannot expire in the middle of an install.',
        },
      },
    },
    pipe: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The host↔guest pipe (Ganeti `read`/`write`, admin `pipe`).',
      properties: {
        maxBytes: {
          type: 'integer',
          minimum: 1,
          maximum: 67108864,
          default: 1048576,
          description: 'Bytes each direction holds; a write that does not fit is refused whole (413).',
        },
      },
    },
    store: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The instance registry on disk.',
      properties: {
        maxDocumentBytes: {
          type: 'integer',
          minimum: 1024,
          default: 262144,
          description: 'Largest stored instance document (after a patch or param change); larger ones get 413.',
        },
      },
    },
    network: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The host-only comm network metad sets up itself (docs/deployment.md).',
      properties: {
        mode: {
          type: 'string',
          enum: ['off', 'routed'],
          default: 'off',
          description:
            'off: the operator wires the comm network (and the loopback quick start needs no root); routed: one tap per guest, /32 routes, nftables and static DHCP set up by metad (needs CAP_NET_ADMIN).',
        },
        anchor: {
          type: 'string',
          pattern: '^[A-Za-z0-9_.-]{1,14}$',
          default: 'metad0',
          description:
            'Device that holds 169.254.169.254 from start, before any tap exists (a dummy, or a veth pair NAMEp where the kernel has no dummy driver).',
        },
        table: {
          type: 'string',
          pattern: '^[A-Za-z0-9_]{1,32}$',
          default: 'metad',
          description: 'The nftables table (family inet) metad owns and replaces whole.',
        },
        hopLimit: {
          type: 'boolean',
          default: true,
          description:
            'Send metadata replies on the taps with IP TTL / hop limit 1, so containers behind a guest cannot reach the metadata service.',
        },
        openTcpPorts: {
          type: 'array',
          default: [],
          uniqueItems: true,
          maxItems: 16,
          items: { type: 'integer', minimum: 1, maximum: 65535 },
          description: 'TCP ports on 169.254.169.254 guests may reach besides the guest door port.',
        },
        ipPath: { type: 'string', default: '/usr/sbin/ip', description: 'iproute2 `ip` binary.' },
        nftPath: { type: 'string', default: '/usr/sbin/nft', description: 'nftables `nft` binary.' },
        runDir: { type: 'string', default: '/run/metad/comm', description: "Runtime dir for dnsmasq's generated config and hosts file." },
        dhcp: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Static DHCP (MAC -> comm IPv4 from the registry) on the comm taps.',
          properties: {
            mode: {
              type: 'string',
              enum: ['managed', 'external'],
              default: 'managed',
              description:
                'managed: metad runs and supervises dnsmasq; external: an operator-run DHCP server (metad still writes <runDir>/dhcp-hosts).',
            },
            dnsmasqPath: { type: 'string', default: '/usr/sbin/dnsmasq', description: 'dnsmasq binary (Debian package dnsmasq-base).' },
            leaseTimeSec: {
              type: 'integer',
              minimum: 120,
              maximum: 31536000,
              default: 3600,
              description: 'DHCP lease time offered to guests.',
            },
          },
        },
      },
    },
    appliance: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Install appliances and their jobs (`metadctl install`).',
      properties: {
        bootTimeoutMs: {
          type: 'integer',
          minimum: 1,
          default: 300000,
          description: 'How long an appliance may take to boot (reserved: validated, not used yet).',
        },
        installTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          default: 7200000,
          description:
            'The cluster-wide hard deadline of an install job, counted from the moment it leaves the queue; guest traffic never extends it.',
        },
        maxTimeoutMs: {
          type: 'integer',
          minimum: 1000,
          default: 14400000,
          description: 'Largest per-job deadline an install request may ask for (timeoutSec); at least installTimeoutMs.',
        },
        maxConcurrent: {
          type: 'integer',
          minimum: 1,
          maximum: 256,
          default: 2,
          description: 'Install jobs running at once; further ones wait in the queue (state queued).',
        },
        claimDeadlineMs: {
          type: 'integer',
          minimum: 1000,
          default: 300000,
          description:
            'The appliance must read its secret parameters within this time of its start; otherwise the job is stuck and its domain destroyed.',
        },
        pollMs: {
          type: 'integer',
          minimum: 10,
          maximum: 10000,
          default: 250,
          description: 'How often a running job checks its domain and progress (deadlines are exact, not rounded to this).',
        },
        libvirtUri: {
          type: 'string',
          minLength: 1,
          default: 'qemu:///system',
          description: 'libvirt connection URI of the install appliances.',
        },
        shutdownGraceMs: {
          type: 'integer',
          minimum: 0,
          default: 10000,
          description: 'Grace time for an appliance to shut down before it is stopped.',
        },
      },
    },
  },
} as const;

/** Environment variables that override a key of the file (read by cli.ts, applied by applyEnv). */
export const ENV_OVERRIDES = [
  { env: 'METAD_STATE_DIR', key: ['stateDir'] },
  { env: 'METAD_KEY_FILE', key: ['keyFile'] },
  { env: 'METAD_ADMIN_SOCKET', key: ['admin', 'socket'] },
  { env: 'METAD_LOG_LEVEL', key: ['log', 'level'] },
] as const;

export type Config = FromSchema<typeof configSchema, { keepDefaultedPropertiesOptional: false }>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

const ajv = new Ajv({ useDefaults: true, allErrors: true, strict: false, verbose: true });
ajv.addFormat('ip', (s: string) => isIP(s) !== 0);
ajv.addFormat('ipv4-cidr', (s: string) => {
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
});
const validateConfig = ajv.compile(configSchema);

/**
 * The one way `serve` and `check-config` get their configuration: the file (or, for the demo,
 * a ready object), then the environment overrides, then validation.
 */
export function loadConfig(
  source: { file?: string | undefined; raw?: Record<string, unknown> },
  env: Record<string, string | undefined>,
): Readonly<Config> {
  const raw = source.raw ?? (source.file === undefined ? {} : readConfigFile(source.file));
  return buildConfig(applyEnv(raw, env));
}

/** Older spellings still accepted: `guest.commRange` as one string (now a list). */
function acceptLegacy(raw: unknown): unknown {
  const guest = (raw as { guest?: unknown } | null)?.guest;
  if (guest && typeof guest === 'object') {
    const g = guest as Record<string, unknown>;
    if (typeof g.commRange === 'string') g.commRange = [g.commRange];
  }
  return raw;
}

/** Validate (filling defaults) a raw config object. Throws ConfigError listing every problem. */
export function buildConfig(raw: unknown): Readonly<Config> {
  const copy: unknown = acceptLegacy(structuredClone(raw ?? {}));
  const problems = validateConfig(copy) ? [] : (validateConfig.errors ?? []).map(describeError);
  problems.push(...crossFieldProblems(copy));
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(copy as Config);
}

const FORMAT_TEXT: Record<string, string> = {
  ip: 'must be an IP address (IPv4 or IPv6)',
  'ipv4-cidr': 'must be an IPv4 CIDR (a.b.c.d/0-32, octets 0-255)',
};

/** One line per schema error: the key path (JSON pointer), then what is wrong. */
function describeError(e: ErrorObject): string {
  const at = e.instancePath || '/';
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties': {
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      return `${e.instancePath}/${keyName(String(params.additionalProperty))}: unknown key (known here: ${known.join(', ')})`;
    }
    case 'required':
      return `${e.instancePath}/${keyName(String(params.missingProperty))}: is required`;
    case 'enum':
      return `${at}: must be one of ${(params.allowedValues as unknown[]).map(String).join(', ')}`;
    case 'format':
      return `${at}: ${FORMAT_TEXT[String(params.format)] ?? 'has the wrong format'}`;
    default:
      return `${at}: ${e.message ?? 'is invalid'}`;
  }
}

/** A key as it may appear in a message: plain names as they are, anything else JSON-quoted and cut. */
function keyName(key: string): string {
  const escaped = key.replaceAll('~', '~0').replaceAll('/', '~1');
  return /^[\w.-]{1,64}$/.test(escaped) ? escaped : JSON.stringify(key.slice(0, 64));
}

/**
 * What the schema cannot say; check-config must refuse whatever serve would refuse. Runs even
 * when the schema found errors (so one report has everything), hence the type guards.
 */
function crossFieldProblems(cfg: unknown): string[] {
  const out: string[] = applianceProblems(cfg);
  const guest = (cfg as { guest?: unknown } | null)?.guest;
  if (!guest || typeof guest !== 'object') return out;
  const g = guest as Record<string, unknown>;
  if (typeof g.headersTimeoutMs === 'number' && typeof g.requestTimeoutMs === 'number' && g.headersTimeoutMs > g.requestTimeoutMs) {
    out.push('/guest/headersTimeoutMs: must not exceed /guest/requestTimeoutMs');
  }
  const network = (cfg as { network?: { mode?: unknown } }).network;
  if (network && typeof network === 'object' && network.mode !== undefined && network.mode !== 'off') {
    try {
      const ranges: unknown[] = Array.isArray(g.commRange) ? g.commRange : [g.commRange];
      if (ranges.every((r) => typeof r === 'string') && !ranges.some((r) => ipv4InCidr(METADATA_IPV4, parseCidr(r)))) {
        out.push('/guest/commRange: one range must contain 169.254.169.254 when /network/mode is not off');
      }
    } catch {
      // a malformed range is reported on its own
    }
    if (Array.isArray(g.listen) && !g.listen.some((l: unknown) => (l as { host?: unknown } | null)?.host === METADATA_IPV4)) {
      out.push('/guest/listen: must include 169.254.169.254 when /network/mode is not off');
    }
  }
  if (Array.isArray(g.listen)) {
    const seen = new Map<string, number>();
    g.listen.forEach((l: unknown, i) => {
      const { host, port } = (l ?? {}) as { host?: unknown; port?: unknown };
      if (typeof host !== 'string' || typeof port !== 'number' || port === 0) return;
      const key = `${host}|${String(port)}`;
      const first = seen.get(key);
      if (first === undefined) seen.set(key, i);
      else out.push(`/guest/listen/${String(i)}: same host and port as /guest/listen/${String(first)}`);
    });
  }
  return out;
}

/** Deadlines: a secret outlives the default install deadline, the default fits the maximum. */
function applianceProblems(cfg: unknown): string[] {
  const c = (cfg ?? {}) as { secrets?: { defaultTtlSec?: unknown }; appliance?: { installTimeoutMs?: unknown; maxTimeoutMs?: unknown } };
  const out: string[] = [];
  const ttl = c.secrets?.defaultTtlSec;
  const install = c.appliance?.installTimeoutMs;
  const max = c.appliance?.maxTimeoutMs;
  if (typeof ttl === 'number' && typeof install === 'number' && ttl * 1000 < install) {
    out.push(
      '/secrets/defaultTtlSec: must not be shorter than /appliance/installTimeoutMs (a secret would expire in the middle of an install)',
    );
  }
  if (typeof install === 'number' && typeof max === 'number' && install > max)
    out.push('/appliance/installTimeoutMs: must not exceed /appliance/maxTimeoutMs');
  return out;
}

/** Read a JSON or YAML config file. */
function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`]);
  }
  try {
    return path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError([`cannot parse ${path}: ${(err as Error).message.split('\n')[0]}`]);
  }
}

/** Environment overrides, given as a plain record by main.ts. */
export function applyEnv(raw: unknown, env: Record<string, string | undefined>): unknown {
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) return raw; // the schema says "/: must be object"
  const out = structuredClone((raw ?? {}) as Record<string, unknown>);
  for (const { env: name, key } of ENV_OVERRIDES) {
    const value = env[name];
    if (!value) continue;
    let at: unknown = out;
    for (const k of key.slice(0, -1)) at = (at as Record<string, unknown>)[k] ??= {};
    // A section of the wrong type stays as it is: the schema reports it.
    if (at !== null && typeof at === 'object' && !Array.isArray(at)) (at as Record<string, unknown>)[key[key.length - 1] as string] = value;
  }
  return out;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
