// Throwaway network namespaces with a "tripwire" for tests that run real
// metadata clients (cloud-init, SDKs) against our daemon on loopback.
//
// Inside the namespace:
//   * `lo` is up; the daemon and the client both use 127.0.0.1 / ::1.
//   * a default route (IPv4 and IPv6) points at a local sink device `trip0`
//     (a `dummy`, or where the kernel has no dummy driver a veth pair whose
//     both ends stay inside the namespace), so a packet to any other address
//     is routed instead of failing with ENETUNREACH before it exists;
//   * an nftables output-hook chain counts and drops every packet whose
//     destination is not loopback, and remembers the destinations.
// The namespace has no link to the host, so nothing can leave it anyway; the
// counter is how a test proves that a client never tried to.
//
// `ip netns exec` bind-mounts /etc/netns/NAME/* over /etc/*: we give the
// namespace a resolv.conf that points at 127.0.0.1 (nothing listens, lookups
// fail at once) so DNS lookups (cloud-init resolves three bogus names to
// detect DNS hijacking) neither leave nor trip the wire.
//
// Only node built-ins; needs root, iproute2 and nftables.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pidAlive } from './process.js';

/**
 * nftables table (family inet) that holds the tripwire in each namespace.
 * @public (knip) the appliance boot test reads its counters.
 */
export const TRIP_TABLE = 'metadt_tripwire';
/** Name of the sink device the default routes point at. */
const TRIP_DEVICE = 'trip0';

const NETNS_RUN_DIRS = ['/run/netns', '/var/run/netns'];
const NETNS_ETC_DIR = '/etc/netns';
const EXTRA_BIN_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
const NAME_RE = /^([A-Za-z0-9_.]+)-(\d+)-([0-9a-f]{6})$/;

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

interface RunOptions extends SpawnOptions {
  /** Written to the child's stdin, which is then closed. */
  input?: string | Uint8Array;
  /** SIGKILL the child after this many milliseconds (result.timedOut). */
  timeoutMs?: number;
}

export interface Netns {
  readonly name: string;
  /** 'dummy' or, where the kernel lacks the dummy driver, 'veth'. */
  readonly tripDevice: 'dummy' | 'veth';
  /** False when IPv6 is unavailable in the namespace (v6 then fails fast). */
  readonly ipv6: boolean;
  /** Spawn `cmd args` inside the namespace (`ip netns exec NAME cmd ...`). */
  exec(cmd: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Run to completion inside the namespace; never rejects on a non-zero exit. */
  run(cmd: string, args?: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Packets dropped by the tripwire since creation (or the last resetTrips). */
  tripCount(): Promise<number>;
  /** Distinct non-loopback destination addresses the tripwire dropped. */
  tripDestinations(): Promise<string[]>;
  resetTrips(): Promise<void>;
  /** Delete the namespace and its /etc/netns dir. Idempotent; kills nothing. */
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------- helpers

function findBin(name: string): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(':').filter(Boolean).concat(EXTRA_BIN_DIRS);
  for (const dir of dirs) {
    const p = path.join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function bin(name: string): string {
  const p = findBin(name);
  if (!p) throw new Error(`${name} not found (apt-get install ${name === 'ip' ? 'iproute2' : 'nftables'})`);
  return p;
}

function collect(child: ChildProcess, opts: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        timedOut,
      });
    });
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    }
    if (child.stdin) {
      child.stdin.on('error', () => {
        /* child may exit before reading */
      });
      if (opts.input !== undefined) child.stdin.end(opts.input);
      else child.stdin.end();
    }
  });
}

/** Runs a program to its end (no shell): exit code, signal, output; `timeoutMs` kills it. */
export function runFile(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const { input: _input, timeoutMs: _timeout, ...spawnOpts } = opts;
  const child = spawn(file, [...args], { ...spawnOpts, stdio: ['pipe', 'pipe', 'pipe'] });
  return collect(child, opts);
}

async function mustRun(file: string, args: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await runFile(file, args, { timeoutMs: 30_000, ...opts });
  if (r.code !== 0) {
    throw new Error(`${[file, ...args].join(' ')} failed (${r.code ?? r.signal}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

function tripRuleset(withSets: boolean): string {
  const v4 = withSets ? 'add @dst4 { ip daddr } ' : '';
  const v6 = withSets ? 'add @dst6 { ip6 daddr } ' : '';
  const sets = withSets
    ? `  set dst4 { type ipv4_addr; size 4096; flags dynamic; }
  set dst6 { type ipv6_addr; size 4096; flags dynamic; }
`
    : '';
  return `table inet ${TRIP_TABLE} {
  counter trips { }
${sets}  chain out {
    type filter hook output priority raw; policy accept;
    meta nfproto ipv4 ip daddr != 127.0.0.0/8 ${v4}counter name trips drop
    meta nfproto ipv6 ip6 daddr != ::1 ${v6}counter name trips drop
  }
}
`;
}

interface NftJson {
  nftables?: Array<Record<string, unknown>>;
}

function elemToString(e: unknown): string | undefined {
  if (typeof e === 'string') return e;
  if (e && typeof e === 'object') {
    const o = e as Record<string, unknown>;
    if ('elem' in o) return elemToString(o['elem']);
    if ('val' in o) return elemToString(o['val']);
  }
  return undefined;
}

// ---------------------------------------------------------------- public API

/** Root plus `ip` and `nft` on this machine? (Sync, cheap, no side effects.) */
export function canUseNetns(): { ok: boolean; why?: string } {
  if (process.platform !== 'linux') return { ok: false, why: `network namespaces need Linux (${process.platform})` };
  const uid = process.getuid?.();
  if (uid !== 0) return { ok: false, why: `network namespaces need root (uid ${uid ?? '?'})` };
  if (!findBin('ip')) return { ok: false, why: 'ip (iproute2) not installed; run .ci/install-deps.sh' };
  if (!findBin('nft')) return { ok: false, why: 'nft (nftables) not installed; run .ci/install-deps.sh' };
  return { ok: true };
}

/** Skip the test, or fail it when METAD_NO_SKIP=1 (CI sets it): one rule, in ./env.ts. */
export { skipOrFail } from './env.js';

/** Names of existing namespaces (from `ip netns add`). @public (knip) the comm topology helper uses it. */
export function listNetns(): string[] {
  for (const dir of NETNS_RUN_DIRS) {
    try {
      return readdirSync(dir);
    } catch {
      // try the next one
    }
  }
  return [];
}

/**
 * Delete namespaces `PREFIX-PID-xxxxxx` (and their /etc/netns dirs) left by
 * test processes that no longer exist. Never touches live owners' ones.
 * @public (knip) the comm topology helper uses it.
 */
export async function cleanupStaleNetns(prefix = 'metadt'): Promise<string[]> {
  const removed: string[] = [];
  const ip = findBin('ip');
  let etc: string[] = [];
  try {
    etc = readdirSync(NETNS_ETC_DIR);
  } catch {
    // none
  }
  const names = new Set([...listNetns(), ...etc]);
  for (const name of names) {
    const m = NAME_RE.exec(name);
    if (!m || m[1] !== prefix || pidAlive(Number(m[2]))) continue;
    if (ip && listNetns().includes(name)) {
      // Processes a killed test left running there (a libvirtd, its QEMUs, a metad) would outlive
      // the namespace's name: end them first.
      const pids = (await runFile(ip, ['netns', 'pids', name])).stdout.split('\n').filter((p) => /^[1-9][0-9]*$/.test(p));
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await runFile(ip, ['netns', 'del', name]);
    }
    await rm(path.join(NETNS_ETC_DIR, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export async function createNetns(prefix = 'metadt'): Promise<Netns> {
  if (!/^[A-Za-z0-9_.]{1,16}$/.test(prefix)) throw new Error(`bad netns prefix ${JSON.stringify(prefix)}`);
  const ip = bin('ip');
  const nft = bin('nft');
  await cleanupStaleNetns(prefix);

  const name = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const etcDir = path.join(NETNS_ETC_DIR, name);
  const inNs = (cmd: string, args: readonly string[]): [string, string[]] => [ip, ['netns', 'exec', name, cmd, ...args]];

  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      if (listNetns().includes(name)) {
        const r = await runFile(ip, ['netns', 'del', name]);
        if (r.code !== 0 && listNetns().includes(name)) {
          throw new Error(`ip netns del ${name} failed: ${r.stderr.trim()}`);
        }
      }
      await rm(etcDir, { recursive: true, force: true });
    })();
    return destroyed;
  };

  // The resolv.conf must exist before the first `ip netns exec`.
  await mkdir(etcDir, { recursive: true });
  await writeFile(path.join(etcDir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
  await mustRun(ip, ['netns', 'add', name]).catch(async (e: unknown) => {
    await rm(etcDir, { recursive: true, force: true });
    throw e;
  });

  let tripDevice: 'dummy' | 'veth' = 'dummy';
  let ipv6: boolean;
  let withSets = true;
  try {
    await mustRun(ip, ['-n', name, 'link', 'set', 'lo', 'up']);

    // Tripwire first, so it sees everything from the moment routes exist.
    try {
      await mustRun(...inNs(nft, ['-f', '-']), { input: tripRuleset(true) });
    } catch {
      withSets = false; // kernels without dynamic sets: count only
      await mustRun(...inNs(nft, ['-f', '-']), { input: tripRuleset(false) });
    }

    const devices = [TRIP_DEVICE];
    const dummy = await runFile(ip, ['-n', name, 'link', 'add', TRIP_DEVICE, 'type', 'dummy']);
    if (dummy.code !== 0) {
      // No dummy driver (e.g. Firecracker guest kernels): a veth pair with
      // both ends inside this namespace is an equally dead end.
      tripDevice = 'veth';
      await mustRun(ip, ['-n', name, 'link', 'add', TRIP_DEVICE, 'type', 'veth', 'peer', 'name', 'trip1']);
      devices.push('trip1');
    }
    for (const dev of devices) {
      // No IPv6 link-local address: no DAD/router solicitations to trip on.
      await runFile(ip, ['-n', name, 'link', 'set', dev, 'addrgenmode', 'none']);
    }
    for (const dev of devices.slice().reverse()) await mustRun(ip, ['-n', name, 'link', 'set', dev, 'up']);

    await mustRun(ip, ['-n', name, '-4', 'route', 'add', 'default', 'dev', TRIP_DEVICE]);
    const r6 = await runFile(ip, ['-n', name, '-6', 'route', 'add', 'default', 'dev', TRIP_DEVICE]);
    ipv6 = r6.code === 0;
  } catch (e) {
    await destroy().catch(() => undefined);
    throw e;
  }

  const nftJson = async (args: readonly string[]): Promise<NftJson> => {
    const out = await mustRun(...inNs(nft, ['-j', ...args]));
    return JSON.parse(out) as NftJson;
  };

  const ns: Netns = {
    name,
    tripDevice,
    ipv6,
    exec(cmd, args = [], opts = {}) {
      const [file, argv] = inNs(cmd, args);
      return spawn(file, argv, opts);
    },
    run(cmd, args = [], opts = {}) {
      const [file, argv] = inNs(cmd, args);
      return runFile(file, argv, opts);
    },
    async tripCount() {
      const doc = await nftJson(['list', 'counter', 'inet', TRIP_TABLE, 'trips']);
      for (const item of doc.nftables ?? []) {
        const c = item['counter'] as { name?: string; packets?: number } | undefined;
        if (c && c.name === 'trips' && typeof c.packets === 'number') return c.packets;
      }
      throw new Error(`no tripwire counter in netns ${name}`);
    },
    async tripDestinations() {
      if (!withSets) return [];
      const found: string[] = [];
      for (const set of ['dst4', 'dst6']) {
        const doc = await nftJson(['list', 'set', 'inet', TRIP_TABLE, set]);
        for (const item of doc.nftables ?? []) {
          const s = item['set'] as { elem?: unknown[] } | undefined;
          for (const e of s?.elem ?? []) {
            const v = elemToString(e);
            if (v !== undefined) found.push(v);
          }
        }
      }
      return found.sort();
    },
    async resetTrips() {
      await mustRun(...inNs(nft, ['reset', 'counter', 'inet', TRIP_TABLE, 'trips']));
      if (withSets) {
        for (const set of ['dst4', 'dst6']) await mustRun(...inNs(nft, ['flush', 'set', 'inet', TRIP_TABLE, set]));
      }
    },
    destroy,
  };
  return ns;
}

/** True if a namespace of that name exists (e.g. to check destroy()). */
export function netnsExists(name: string): boolean {
  return NETNS_RUN_DIRS.some((d) => existsSync(path.join(d, name)));
}
