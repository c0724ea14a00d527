/**
 * The real `metad serve` as a child process (usually inside a test network namespace): writes
 * the config file, starts the daemon, waits for "metad started", and talks to its admin socket.
 * Shared by the appliance boot and install tests.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request, type Reply } from './daemon.js';

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

/** Starts metad with `config` (stateDir and admin.socket under `dir` unless given). */
export async function startNsMetad(spawn: Spawner, dir: string, config: Record<string, unknown>): Promise<NsMetad> {
  const socket = join(dir, 'admin.sock');
  const file = join(dir, 'config.json');
  await writeFile(file, JSON.stringify({ stateDir: join(dir, 'state'), admin: { socket }, log: { level: 'info' }, ...config }));
  const child = spawn(process.execPath, [METAD_CLI, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  for (let i = 0; i < 600 && child.exitCode === null; i++) {
    if (out.includes('"metad started"')) return m;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  throw new Error(`metad did not start: ${out}`);
}
