/**
 * What a configuration reload (SIGHUP) may change while running. Pure: compares the running
 * configuration with the re-read one, key by key (leaf paths like `guest.rateLimit.burst`), and
 * says which changes take effect now and which need a restart. The rest of the daemon applies
 * them (daemon/process/main.ts `Running.reload`).
 *
 * Live: the log level, the guest rate limit, the guest timeouts and connection caps. Everything
 * else is wired into objects built at start (state dir and keys, sockets and listeners, the comm
 * range index, cache and pipe sizes, the secret TTL) and needs a restart.
 */
import { deepFreeze, type Config } from './config.js';

export const LIVE_KEYS: readonly string[] = [
  'log.level',
  'guest.rateLimit.ratePerSec',
  'guest.rateLimit.burst',
  'guest.headersTimeoutMs',
  'guest.requestTimeoutMs',
  'guest.keepAliveTimeoutMs',
  'guest.maxConnections',
  'guest.maxConnectionsPerSource',
];

export interface ReloadPlan {
  /** Changed keys that take effect now. */
  applied: string[];
  /** Changed keys that keep their running value until a restart. */
  needsRestart: string[];
  /** The configuration now in effect: the running one with the live keys taken from the new one. */
  effective: Readonly<Config>;
}

/** Leaf paths and their JSON values; arrays are leaves (`guest.listen` is one setting). */
function leaves(v: unknown, path: string, out: Map<string, string>): Map<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) leaves(x, path === '' ? k : `${path}.${k}`, out);
  } else if (v !== undefined) out.set(path, JSON.stringify(v));
  return out;
}

export function planReload(running: Readonly<Config>, next: Readonly<Config>): ReloadPlan {
  const a = leaves(running, '', new Map());
  const b = leaves(next, '', new Map());
  const changed = [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort();
  const applied = changed.filter((k) => LIVE_KEYS.includes(k));
  const effective = structuredClone(running) as Config;
  effective.log.level = next.log.level;
  effective.guest.rateLimit = { ...next.guest.rateLimit };
  for (const k of ['headersTimeoutMs', 'requestTimeoutMs', 'keepAliveTimeoutMs', 'maxConnections', 'maxConnectionsPerSource'] as const) {
    effective.guest[k] = next.guest[k];
  }
  return { applied, needsRestart: changed.filter((k) => !LIVE_KEYS.includes(k)), effective: deepFreeze(effective) };
}
