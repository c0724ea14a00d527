/**
 * Shared helpers for the benchmarks (bench/suites/*.ts, run by bench/run.ts).
 *
 * - statistics: `summarize` (min/mean/p50/p90/p99/max), `percentile`, `median`
 * - formatting: `printTable`, `fmt`, `fmtMs`, `fmtMiB`
 * - load: `closedLoop` (N ops or a duration, fixed concurrency, per-op latency)
 * - processes: `spawnDaemon` (the real `metad serve` in a temp dir, ready when the admin socket
 *   answers /v1/health), `readProcStatus` (VmRSS/VmHWM from /proc), `freePort`
 * - admin: `AdminClient` (HTTP/1.1 over the unix socket, keep-alive agent)
 * - state: `benchInstance` (a typical instance document), `populateStateDir` (real, durable,
 *   sealed state files written by InstanceStore in-process, as the daemon would write them)
 * - cleanup: `makeTempDir` and every spawned child are tracked; `cleanupAll` (run.ts calls it
 *   after each suite and on SIGINT/SIGTERM) stops children and removes temp dirs, and a sync
 *   `exit` hook SIGKILLs/removes whatever is left if the harness dies.
 *
 * Benchmarks print numbers; nothing here passes or fails on timing.
 */
import http from 'node:http';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import jsonMergePatch from 'json-merge-patch';
import { sampleInstance } from '../test/support/daemon.js';
import { InstanceStore } from '../daemon/store.js';
import { Keyring, loadMasterKey } from '../daemon/keys.js';
import { IdentitySigner } from '../daemon/identity.js';
import { validateInstance } from '../daemon/validate.js';
import { createLogger } from '../daemon/logger.js';
import { systemClock } from '../daemon/clock.js';

/** Compiled daemon entry point (dist/daemon/cli.js). */
export const DAEMON_CLI = fileURLToPath(new URL('../daemon/cli.js', import.meta.url));

/**
 * The node flags production runs the daemon with: those on the CLI's shebang line
 * (`#!/usr/bin/env -S node --max-semi-space-size=2` -> ['--max-semi-space-size=2']), so a bench
 * that spawns `node cli.js` measures what `metad serve` (and the systemd unit) runs.
 */
export function shebangNodeFlags(cli: string): string[] {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!.*?\bnode\b(.*)$/.exec(first);
  return m ? m[1]!.trim().split(/\s+/).filter((f) => f.startsWith('--')) : [];
}

// ---------------------------------------------------------------------------------------------
// Results

/** One measured number. `baseline` names another result of the same suite measured in the same run. */
export interface BenchResult {
  suite: string;
  name: string;
  value: number;
  unit: string;
  /** Extra numbers (p50, p99, …), printed in the table's detail column and kept in the JSON. */
  stats?: Record<string, number>;
  /** Name of the baseline result in the same suite; the runner fills `ratio` = value / baseline value. */
  baseline?: string;
  ratio?: number;
  /** A target from an issue, printed next to the number (never a pass/fail). */
  target?: { op: '<=' | '>='; value: number };
  note?: string;
}

export interface SuiteContext {
  /** Smaller counts for a smoke run (`npm run bench -- --quick`). */
  readonly quick: boolean;
  record(r: Omit<BenchResult, 'suite' | 'ratio'>): void;
  /** Progress line on stderr (the table and BENCH_JSON go to stdout). */
  log(msg: string): void;
  /** Run at the end of the suite (reverse order), even when it throws. */
  defer(fn: () => unknown): void;
}

export interface Suite {
  /** Defaults to the file name (bench/suites/<name>.ts). */
  name?: string;
  description: string;
  run(ctx: SuiteContext): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Statistics

export interface Summary {
  n: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentile of an ascending-sorted array (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export function summarize(values: readonly number[]): Summary {
  const s = [...values].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    min: s[0] ?? NaN,
    mean: s.length ? sum / s.length : NaN,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    max: s[s.length - 1] ?? NaN,
  };
}

// ---------------------------------------------------------------------------------------------
// Formatting

/** A number with about 3 significant digits (thousands separated). */
export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const a = Math.abs(n);
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  const digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}
export const fmtMs = (ms: number): string => `${fmt(ms)} ms`;
export const fmtMiB = (kib: number): string => `${fmt(kib / 1024)} MiB`;

/** Print an aligned table (numbers right-aligned) to stdout. */
export function printTable(headers: string[], rows: string[][], out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): void {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => /^[-+]?[\d,.]+( |x|$)/.test(r[i] ?? '') || (r[i] ?? '') === ''));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  out(line(headers));
  out(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) out(line(headers.map((_, i) => r[i] ?? '')));
}

// ---------------------------------------------------------------------------------------------
// Load generation

export interface LoopStats {
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  opsPerSec: number;
  /** Latency of successful ops, ms. */
  latency: Summary;
}

/**
 * Closed-loop load: `concurrency` workers each run `op(i)` back to back, `i` counting up from 0,
 * until `count` ops were started or `durationMs` passed. An op that throws counts as an error
 * (its latency is not kept); with `stopOnError`, the first error ends the loop and is rethrown.
 */
export async function closedLoop(
  opts: { concurrency: number; count?: number; durationMs?: number; stopOnError?: boolean },
  op: (i: number) => Promise<unknown>,
): Promise<LoopStats> {
  if (opts.count === undefined && opts.durationMs === undefined) throw new Error('closedLoop: give count or durationMs');
  const lat: number[] = [];
  let next = 0;
  let errors = 0;
  let firstError: unknown;
  const t0 = performance.now();
  const deadline = opts.durationMs === undefined ? Infinity : t0 + opts.durationMs;
  const more = (): boolean =>
    (opts.count === undefined || next < opts.count) && performance.now() < deadline && !(opts.stopOnError && firstError !== undefined);
  const worker = async (): Promise<void> => {
    while (more()) {
      const i = next++;
      const s = performance.now();
      try {
        await op(i);
        lat.push(performance.now() - s);
      } catch (err) {
        errors++;
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency) }, worker));
  const elapsedMs = performance.now() - t0;
  if (opts.stopOnError && firstError !== undefined) throw firstError;
  return {
    ops: lat.length,
    errors,
    ...(firstError !== undefined ? { firstError: String((firstError as Error).message ?? firstError) } : {}),
    elapsedMs,
    opsPerSec: (lat.length / elapsedMs) * 1000,
    latency: summarize(lat),
  };
}

// ---------------------------------------------------------------------------------------------
// Admin client over the unix socket

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: any;
}

export class AdminClient {
  readonly agent: http.Agent;
  constructor(
    readonly socketPath: string,
    opts: { maxSockets?: number; keepAlive?: boolean } = {},
  ) {
    this.agent = new http.Agent({ keepAlive: opts.keepAlive ?? true, maxSockets: opts.maxSockets ?? 16 });
  }

  request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const h: Record<string, string | number> = { ...headers };
    if (payload !== undefined) {
      h['content-type'] ??= 'application/json';
      h['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path, headers: h, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like request, but throws unless the status is one of `ok`. */
  async expect(ok: number | number[], method: string, path: string, body?: unknown): Promise<Reply> {
    const r = await this.request(method, path, body);
    const want = Array.isArray(ok) ? ok : [ok];
    if (!want.includes(r.status)) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return r;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// /proc

export interface ProcStatus {
  /** Resident set size now, KiB. */
  rssKiB: number;
  /** Peak resident set size, KiB. */
  hwmKiB: number;
  threads: number;
}

export function readProcStatus(pid: number): ProcStatus {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM'), threads: field('Threads') };
}

/** A TCP port that was free a moment ago on `host` (listen on 0, read, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Cleanup tracking

const liveDirs = new Set<string>();
const liveChildren = new Set<ChildProcess>();
const stoppers = new Set<() => Promise<unknown>>();

/** A fresh temp dir, removed by cleanupAll (or at exit) unless removed earlier with removeTempDir. */
export function makeTempDir(prefix = 'metad-bench-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** Stop every tracked daemon/child and remove every tracked temp dir. */
export async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...stoppers].map((s) => s()));
  for (const c of liveChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  liveChildren.clear();
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  liveDirs.clear();
}

process.on('exit', () => {
  for (const c of liveChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});

/** Track a child process started by a suite so cleanup kills it. */
export function trackChild(c: ChildProcess): ChildProcess {
  liveChildren.add(c);
  c.once('exit', () => liveChildren.delete(c));
  return c;
}

// ---------------------------------------------------------------------------------------------
// The daemon as a child process

export interface SpawnOptions {
  /** Directory for config, socket (and state unless `stateDir`); default: a fresh temp dir, removed on stop. */
  dir?: string;
  /** Use an existing (e.g. populated) state dir; it is not removed on stop. */
  stateDir?: string;
  /** Guest port on 127.0.0.1; 0 (default) = ephemeral and unknown to the caller (use freePort()). */
  guestPort?: number;
  logLevel?: string;
  /** Merged (RFC 7396) over the generated config. */
  config?: Record<string, unknown>;
  /** Wait until /v1/health reports this many instances. */
  expectInstances?: number;
  timeoutMs?: number;
  /** Extra node flags (e.g. --cpu-prof, --cpu-prof-dir=…, --max-semi-space-size=2). */
  nodeArgs?: string[];
  /** Another build's daemon entry (A/B against e.g. a worktree of an older commit); default DAEMON_CLI. */
  cli?: string;
  /** Extra environment for the daemon (METAD_* from the caller's environment is always dropped). */
  env?: Record<string, string>;
  /** Admin client max sockets (default 16). */
  adminSockets?: number;
}

export interface DaemonHandle {
  dir: string;
  stateDir: string;
  socket: string;
  configPath: string;
  pid: number;
  child: ChildProcess;
  guestPort: number;
  /** Spawn until the admin socket answered /v1/health (ms). */
  startMs: number;
  /** The first successful health answer. */
  health: { status: string; instances: number };
  admin: AdminClient;
  /** Captured stdout+stderr (last 64 KiB). */
  output(): string;
  proc(): ProcStatus;
  /** SIGTERM, wait (5 s, then SIGKILL), remove owned dirs. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Strip METAD_* so the caller's environment cannot override the bench config. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('METAD_')) env[k] = v;
  return env;
}

/** Start `node dist/daemon/cli.js serve --config <tmp>` and wait until the admin socket answers. */
export async function spawnDaemon(opts: SpawnOptions = {}): Promise<DaemonHandle> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? makeTempDir('metad-bench-d-');
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const socket = join(dir, 'admin.sock');
  const guestPort = opts.guestPort ?? 0;
  const config = jsonMergePatch.apply(
    {
      stateDir,
      log: { level: opts.logLevel ?? 'warn' },
      admin: { socket },
      guest: { listen: [{ host: '127.0.0.1', port: guestPort }], commRange: '127.0.0.0/8' },
    },
    opts.config ?? {},
  ) as Record<string, unknown>;
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));

  let out = '';
  const keep = (c: Buffer): void => {
    out += c.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  const t0 = performance.now();
  const child = trackChild(
    spawn(process.execPath, [...shebangNodeFlags(opts.cli ?? DAEMON_CLI), ...(opts.nodeArgs ?? []), opts.cli ?? DAEMON_CLI, 'serve', '--config', configPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...cleanEnv(), ...(opts.env ?? {}) },
    }),
  );
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );

  const admin = new AdminClient(socket, { maxSockets: opts.adminSockets ?? 16 });
  let stopped: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  const stop = (): Promise<{ code: number | null; signal: NodeJS.Signals | null }> => {
    stopped ??= (async () => {
      admin.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const r = await exited;
      clearTimeout(t);
      stoppers.delete(stop);
      if (ownDir) removeTempDir(dir);
      return r;
    })();
    return stopped;
  };
  stoppers.add(stop);

  // Poll the socket with one-shot connections (no agent) until health answers.
  const probe = new AdminClient(socket, { keepAlive: false, maxSockets: 1 });
  const deadline = t0 + (opts.timeoutMs ?? 30_000);
  let health: { status: string; instances: number } | undefined;
  let startMs = NaN;
  let dead = false;
  void exited.then(() => (dead = true));
  try {
    while (health === undefined) {
      if (dead) throw new Error(`metad exited during start (code ${child.exitCode}, signal ${child.signalCode}):\n${out}`);
      if (performance.now() > deadline) throw new Error(`metad did not answer /v1/health within ${opts.timeoutMs ?? 30_000} ms:\n${out}`);
      try {
        const r = await probe.request('GET', '/v1/health');
        if (r.status === 200 && (opts.expectInstances === undefined || r.json?.instances === opts.expectInstances)) {
          startMs = performance.now() - t0;
          health = r.json as { status: string; instances: number };
          break;
        }
        if (r.status === 200 && r.json?.instances > (opts.expectInstances ?? 0)) {
          throw new Error(`metad reports ${r.json.instances} instances, expected ${opts.expectInstances}`);
        }
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED' && code !== 'ECONNRESET') throw err;
      }
      await sleep(2);
    }
  } catch (err) {
    probe.close();
    await stop();
    throw err;
  }
  probe.close();
  return {
    dir,
    stateDir,
    socket,
    configPath,
    pid: child.pid!,
    child,
    guestPort,
    startMs,
    health,
    admin,
    output: () => out,
    proc: () => readProcStatus(child.pid!),
    stop,
  };
}

/** Time (ms) for a bare `node -e 0` to spawn and exit: the floor under any daemon start. */
export async function nodeStartupMs(): Promise<number> {
  const t0 = performance.now();
  const c = trackChild(spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }));
  await new Promise((r) => c.once('exit', r));
  return performance.now() - t0;
}

// ---------------------------------------------------------------------------------------------
// Instances and state

/**
 * A typical instance document (shaped like the demo instance: user data, an SSH key, EC2 and
 * OpenStack fields, public and private params, so the state file carries a sealed part).
 * Comm address and MAC come from sampleInstance(n): 127.0.x.y, n < 65535.
 */
export function benchInstance(n: number): Record<string, any> {
  const id = n.toString(16).padStart(17, '0');
  return sampleInstance(n, {
    userData: Buffer.from(`#cloud-config\nhostname: vm${n}\npackages: [nginx, htop]\nruncmd:\n  - echo booted vm${n}\n`).toString('base64'),
    publicKeys: [{ name: 'ops', key: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${id}${'A'.repeat(26)} ops@bench`, type: 'ssh' }],
    ec2: { instanceId: `i-${id}`, instanceType: 't3.small', availabilityZone: 'bench-1a', region: 'bench-1', tags: { team: 'bench', n: String(n) } },
    openstack: { availabilityZone: 'nova', projectId: 'bench', meta: { role: 'web' } },
    os: { name: 'debian', variant: 'bookworm' },
    params: { public: { locale: 'en_US.UTF-8', timezone: 'UTC' }, private: { rootPasswordHash: `$6$bench${n}$notarealhash` } },
    hardware: { memoryMiB: 1024, vcpus: 1 },
  });
}

/**
 * Fill `stateDir` with `count` instances (docs from `doc(n)`, n = 0..count-1) written by real
 * InstanceStore objects in this process (durable, MACed, sealed with the dir's own key, created
 * if missing), `parallel` stores writing disjoint slices at once. Also creates the identity
 * signing key so a daemon start does not pay RSA key generation. Returns elapsed ms.
 */
export async function populateStateDir(
  stateDir: string,
  count: number,
  doc: (n: number) => Record<string, unknown> = benchInstance,
  parallel = 8,
): Promise<number> {
  const t0 = performance.now();
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const keyring = new Keyring(loadMasterKey(join(stateDir, 'private.key'), true));
  await IdentitySigner.load(join(stateDir, 'identity-key.pem'));
  const log = createLogger({ level: 'silent' });
  const stores: InstanceStore[] = [];
  // Start every store before any write: start() removes temp files another store may be writing.
  for (let i = 0; i < Math.max(1, parallel); i++) {
    const s = new InstanceStore({ dir: stateDir, keyring, clock: systemClock, log, commRange: '127.0.0.0/8', maxDocumentBytes: 262144 });
    await s.start();
    stores.push(s);
  }
  let next = 0;
  await Promise.all(
    stores.map(async (s) => {
      while (next < count) {
        const n = next++;
        await s.put(validateInstance(doc(n)), true);
      }
    }),
  );
  return performance.now() - t0;
}
