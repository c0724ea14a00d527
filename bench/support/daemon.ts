/**
 * The real daemon as a child process: `node dist/daemon/cli.js serve --config <tmp>` with the node
 * flags of its shebang (what `metad serve` and the systemd unit run), ready when the admin socket
 * answers /v1/health. Every daemon is tracked (bench/support/cleanup.ts) and stopped after its suite.
 * `admin` is the one admin client (cli/client.ts, as metadctl and the tests use it) with keep-alive.
 */
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import jsonMergePatch from 'json-merge-patch';
import { AdminClient } from '../../cli/client.js';
import type { Health } from '../../cli/api-types.js';
import { ConnectError } from '../../cli/errors.js';
import { makeTempDir, removeTempDir, trackChild, trackStopper } from './cleanup.js';
import { readProcStatus, type ProcStatus } from './proc.js';

/** Compiled daemon entry point (dist/daemon/cli.js). */
const DAEMON_CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));

/**
 * The node flags on the CLI's shebang line (`#!/usr/bin/env -S node --max-semi-space-size=2` ->
 * ['--max-semi-space-size=2']), so a bench that spawns `node cli.js` measures what production runs.
 */
function shebangNodeFlags(cli: string): string[] {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!.*?\bnode\b(.*)$/.exec(first);
  return m
    ? m[1]!
        .trim()
        .split(/\s+/)
        .filter((f) => f.startsWith('--'))
    : [];
}

/** A TCP port that was free a moment ago on `host` (listen on 0, read, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => {
        resolve(port);
      });
    });
  });
}

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
  /** Extra node flags (e.g. --cpu-prof, --cpu-prof-dir=…). */
  nodeArgs?: string[];
  /** Another build's daemon entry (A/B against e.g. a worktree of an older commit); default dist/daemon/cli.js. */
  cli?: string | undefined;
  /** Extra environment for the daemon (METAD_* from the caller's environment is always dropped). */
  env?: Record<string, string>;
  /** Admin client max sockets (default 16). */
  adminSockets?: number;
  /** Run the daemon inside this network namespace (`ip netns exec` execs: the pid is the daemon's). */
  netns?: string;
  /** Every chunk of the daemon's stdout and stderr (output() keeps only the last 64 KiB). */
  onOutput?: (chunk: string) => void;
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

export interface DaemonHandle {
  dir: string;
  stateDir: string;
  socket: string;
  pid: number;
  /** Spawn until the admin socket answered /v1/health (ms). */
  startMs: number;
  admin: AdminClient;
  /** Captured stdout+stderr (last 64 KiB). */
  output(): string;
  proc(): ProcStatus;
  /** SIGTERM, wait (5 s, then SIGKILL), remove owned dirs. */
  stop(): Promise<Exit>;
}

/** Strip METAD_* so the caller's environment cannot override the bench config. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('METAD_')) env[k] = v;
  return env;
}

function writeConfig(dir: string, stateDir: string, socket: string, opts: SpawnOptions): string {
  const config: unknown = jsonMergePatch.apply(
    {
      stateDir,
      log: { level: opts.logLevel ?? 'warn' },
      admin: { socket },
      guest: { listen: [{ host: '127.0.0.1', port: opts.guestPort ?? 0 }], commRange: ['127.0.0.0/8'] },
    },
    opts.config ?? {},
  );
  const configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  return configPath;
}

/** Poll the socket with one-shot connections until /v1/health answers (with `expect` instances). */
async function waitHealthy(
  socket: string,
  child: ChildProcess,
  output: () => string,
  expect: number | undefined,
  deadline: number,
): Promise<void> {
  const probe = new AdminClient(socket, { userAgent: 'metad-bench' });
  try {
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`metad exited during start (code ${child.exitCode}, signal ${child.signalCode}):\n${output()}`);
      }
      if (performance.now() > deadline) throw new Error(`metad did not answer /v1/health in time:\n${output()}`);
      try {
        const r = await probe.request('GET', '/v1/health');
        if (r.status === 200) {
          const n = (JSON.parse(r.body.toString('utf8')) as Health).instances;
          if (expect === undefined || n === expect) return;
          if (n > expect) throw new Error(`metad reports ${n} instances, expected ${expect}`);
        }
      } catch (err) {
        if (!(err instanceof ConnectError)) throw err; // not listening yet: try again
      }
      await sleep(2);
    }
  } finally {
    probe.close();
  }
}

/** Start `node dist/daemon/cli.js serve --config <tmp>` and wait until the admin socket answers. */
export async function spawnDaemon(opts: SpawnOptions = {}): Promise<DaemonHandle> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? makeTempDir('metad-bench-d-');
  const stateDir = opts.stateDir ?? join(dir, 'state');
  const socket = join(dir, 'admin.sock');
  const configPath = writeConfig(dir, stateDir, socket, opts);
  const cli = opts.cli ?? DAEMON_CLI;

  let out = '';
  const keep = (c: Buffer): void => {
    opts.onOutput?.(c.toString('utf8'));
    out += c.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  const t0 = performance.now();
  const argv = [process.execPath, ...shebangNodeFlags(cli), ...(opts.nodeArgs ?? []), cli, 'serve', '--config', configPath];
  const [file, ...args] = opts.netns === undefined ? argv : ['/usr/sbin/ip', 'netns', 'exec', opts.netns, ...argv];
  const child = trackChild(
    spawn(file!, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...cleanEnv(), ...(opts.env ?? {}) },
    }),
  );
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const admin = new AdminClient(socket, { userAgent: 'metad-bench', keepAlive: true, maxSockets: opts.adminSockets ?? 16 });
  let stopped: Promise<Exit> | undefined;
  const stop = (): Promise<Exit> => {
    stopped ??= (async () => {
      admin.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const r = await exited;
      clearTimeout(t);
      untrack();
      if (ownDir) removeTempDir(dir);
      return r;
    })();
    return stopped;
  };
  const untrack = trackStopper(stop);

  try {
    await waitHealthy(socket, child, () => out, opts.expectInstances, t0 + (opts.timeoutMs ?? 30_000));
  } catch (err) {
    await stop();
    throw err;
  }
  const startMs = performance.now() - t0;
  return { dir, stateDir, socket, pid: child.pid!, startMs, admin, output: () => out, proc: () => readProcStatus(child.pid!), stop };
}
