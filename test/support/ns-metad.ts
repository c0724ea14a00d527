/**
 * The real `metad serve` as a child process inside a test network namespace (any spawner: a
 * netns exec, a comm topology's hypervisor namespace): writes the config file
 * (test/support/process.ts), starts the daemon with a clean environment, waits for "metad
 * started", and talks to its admin socket. Shared by the comm, appliance boot and install tests; pipePoller
 * reads an instance's pipe for the tests that run an appliance themselves.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, type Reply } from './daemon.js';
import { writeConfig } from './process.js';
import { until } from './wait.js';
import { cleanEnv } from '../conformance/harness.js';
import type { Hypervisor } from '../../appliance/hypervisor.js';

export const METAD_CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));

export interface NsMetad {
  child: ChildProcess;
  socket: string;
  /** Everything it wrote to stdout and stderr so far. */
  out(): string;
  /** Any admin request: a non-undefined body is sent as JSON. */
  admin(method: string, path: string, body?: unknown): Promise<Reply>;
  /** SIGTERM (SIGKILL after 15 s) and wait for the exit. */
  stop(): Promise<void>;
  kill(): void;
}

type Spawner = (cmd: string, args: readonly string[], opts: SpawnOptions) => ChildProcess;

/** Starts metad with `config` over writeConfig's (stateDir and admin.socket under `dir`). */
export async function startNsMetad(spawn: Spawner, dir: string, config: Record<string, unknown>): Promise<NsMetad> {
  const socket = join(dir, 'admin.sock');
  const file = writeConfig(dir, config);
  const child = spawn(process.execPath, [METAD_CLI, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const m: NsMetad = {
    child,
    socket,
    out: () => out,
    admin(method, path, body) {
      const json = body === undefined ? undefined : JSON.stringify(body);
      return request({ socketPath: socket, method, path, headers: json === undefined ? {} : { 'content-type': 'application/json' } }, json);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(t);
      }
    },
    kill() {
      child.kill('SIGKILL');
    },
  };
  try {
    return await until(
      'metad started',
      () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`metad exited: ${out}`);
        return out.includes('"metad started"') && m;
      },
      { detail: () => out },
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
}

/**
 * An instance's pipe read through the admin door for runAppliance's progress channel. The
 * daemon's own runner reads its in-memory pipe, so a line the agent wrote before it powered off
 * is there when the domain is gone; here the reads are asynchronous, so `watching(hv)` reads the
 * pipe once more before it tells the runner that the domain is gone. Reads are serialised: when
 * one resolves, every byte written before it started is in the buffer.
 */
export interface PipePoller {
  /** New bytes since the last take (RunDeps.takeProgress). */
  take: () => string;
  /** Everything read so far. */
  all: () => string;
  /** The hypervisor `hv` whose state() reads the pipe before it answers 'gone'. */
  watching: (hv: Hypervisor) => Hypervisor;
  /** Stops polling after one last read. */
  stop: () => Promise<void>;
}

export function pipePoller(metad: NsMetad, instance: string, everyMs = 200): PipePoller {
  let buf = '';
  let all = '';
  let chain: Promise<void> = Promise.resolve();
  const read = (): Promise<void> =>
    (chain = chain.then(async () => {
      const r = await metad.admin('GET', `/v1/instances/${instance}/pipe`).catch(() => undefined);
      if (r?.status === 200) {
        buf += r.text;
        all += r.text;
      }
    }));
  const timer = setInterval(() => void read(), everyMs);
  return {
    take: () => {
      const b = buf;
      buf = '';
      return b;
    },
    all: () => all,
    watching: (hv) => ({
      createTransient: (n, x) => hv.createTransient(n, x),
      state: async (n) => {
        const s = await hv.state(n);
        if (s === 'gone') await read();
        return s;
      },
      destroy: (n) => hv.destroy(n),
      list: (p) => hv.list(p),
      close: () => hv.close(),
      ...(hv.busy ? { busy: (n: string) => hv.busy?.(n) ?? false } : {}),
    }),
    stop: async () => {
      clearInterval(timer);
      await read();
    },
  };
}
