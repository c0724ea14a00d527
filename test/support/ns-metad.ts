/**
 * The real `metad serve` as a child process inside a test network namespace (any spawner: a
 * netns exec, a comm topology's hypervisor namespace): writes the config file
 * (test/support/process.ts), starts the daemon with a clean environment, waits for "metad
 * started", and talks to its admin socket. Shared by the comm, appliance boot and install tests.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, type Reply } from './daemon.js';
import { writeConfig } from './process.js';
import { until } from './wait.js';
import { cleanEnv } from '../conformance/harness.js';

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
