/**
 * Daemon configuration: one JSON schema with defaults, loaded from a file (JSON or YAML) plus a
 * few environment overrides (the environment arrives as a value from daemon/cli.ts, the one
 * daemon module that reads process.env), validated with ajv (every error listed), then
 * deep-frozen.
 */
import { readFileSync } from 'node:fs';
import { isIP, isIPv4 } from 'node:net';
import { Ajv, type ErrorObject } from 'ajv';
import { parse as parseYaml } from 'yaml';
import type { FromSchema } from 'json-schema-to-ts';
import { ipv4InCidr, METADATA_IPV4, parseCidr } from '../net.js';
import { configSchema } from './schema.js';

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
    case 'type':
      return `${at}: ${e.message ?? 'has the wrong type'}${yamlHint(String(params.type), e.data)}`;
    default:
      return `${at}: ${e.message ?? 'is invalid'}`;
  }
}

/**
 * YAML 1.2 (the `yaml` package) reads `yes`/`no`/`on`/`off` as strings and `660` as the number
 * 660: say how to write what was meant. ('boolean', 'yes') -> ' (YAML 1.2: write true or false; yes is a string)'
 */
function yamlHint(expected: string, data: unknown): string {
  if (expected === 'boolean' && typeof data === 'string' && /^(y|yes|n|no|on|off)$/i.test(data))
    return ` (YAML 1.2: write true or false; ${JSON.stringify(data)} is a string)`;
  if (expected === 'string' && typeof data === 'number') return ` (quote it: "${String(data)}"; unquoted, YAML reads a number)`;
  return '';
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
  const network = (cfg as { network?: { mode?: unknown; ec2Ipv6?: unknown } }).network;
  if (network?.ec2Ipv6 === true && network.mode !== 'routed') {
    out.push('/network/ec2Ipv6: needs /network/mode routed (off serves no comm network, bridged no IPv6)');
  }
  const ranges: unknown[] = Array.isArray(g.commRange) ? g.commRange : [g.commRange];
  /** Whether a comm range holds `ip`; undefined when a range is malformed (reported on its own). */
  const inCommRange = (ip: string): boolean | undefined => {
    try {
      return ranges.some((r) => typeof r === 'string' && ipv4InCidr(ip, parseCidr(r)));
    } catch {
      return undefined;
    }
  };
  if (network && typeof network === 'object' && network.mode !== undefined && network.mode !== 'off') {
    if (ranges.every((r) => typeof r === 'string') && inCommRange(METADATA_IPV4) === false) {
      out.push('/guest/commRange: one range must contain 169.254.169.254 when /network/mode is not off');
    }
    if (Array.isArray(g.listen) && !g.listen.some((l: unknown) => (l as { host?: unknown } | null)?.host === METADATA_IPV4)) {
      out.push('/guest/listen: must include 169.254.169.254 when /network/mode is not off');
    }
  }
  const metricsListen = (cfg as { metrics?: { listen?: { host?: unknown; port?: unknown } } }).metrics?.listen;
  if (metricsListen && typeof metricsListen.host === 'string') {
    const host = metricsListen.host;
    const guestReachable =
      host === METADATA_IPV4 ||
      host === '0.0.0.0' ||
      host === '::' ||
      (isIPv4(host) && inCommRange(host) === true) ||
      (Array.isArray(g.listen) && g.listen.some((l: unknown) => (l as { host?: unknown } | null)?.host === host));
    if (guestReachable)
      out.push(
        '/metrics/listen/host: guests could reach it (inside /guest/commRange, a wildcard, or a guest listener): use a management or loopback address outside the comm ranges',
      );
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
    // yaml's first line ends in ':' before a snippet of the file: keep the sentence, not the colon.
    const first = ((err as Error).message.split('\n')[0] ?? '').replace(/:\s*$/, '');
    throw new ConfigError([`cannot parse ${path}: ${first}`]);
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
