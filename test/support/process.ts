/**
 * The real `metad serve` as a child process, for tests of the process edge (signals, start
 * failures, crash safety): the one config writer of the test suite (a config file in a temp
 * dir), start-and-wait-for-"metad started", the guest port it bound, the TCP ports a process
 * listens on (read from /proc), and whether a process is still alive.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jsonMergePatch from 'json-merge-patch';
import { adminRequest, type Reply } from './daemon.js';
import { until } from './wait.js';

export const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));

/** For writeConfig: the guest door on loopback, a free port on 127.0.0.1 (all of 127/8 stands in for guests). */
export const LOOPBACK = { guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' } };

/**
 * A test daemon's config file, `<dir>/config.json`: its state dir and admin socket under `dir`,
 * log level info, and `config` merged over that (a JSON merge patch: nested sections merge,
 * `null` removes a key). Returns the file's path.
 */
export function writeConfig(dir: string, config: Record<string, unknown> = {}): string {
  const file = join(dir, 'config.json');
  const base = { stateDir: join(dir, 'state'), admin: { socket: join(dir, 'admin.sock') }, log: { level: 'info' } };
  writeFileSync(file, JSON.stringify(jsonMergePatch.apply(base, config)));
  return file;
}

/** Is process `pid` there and not a zombie (a zombie has ended; it waits only to be reaped)? */
/**
 * Stop a child as an operator would (SIGTERM, so it runs its own cleanup: the demo removes its
 * temp dir) and wait for its exit; SIGKILL only if it has not exited within `ms`.
 */
export async function stopChild(child: ChildProcess, ms = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
}

export function pidAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX] /.test(readFileSync(`/proc/${String(pid)}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

export interface DaemonProcess {
  child: ChildProcess;
  out: () => string;
  /** The guest port from the "metad started" line. */
  guestPort: number;
}

/** Spawn `metad serve --config FILE` and wait (at most ~20 s on a busy machine) for "metad started". */
export async function startProcess(
  config: string,
  sock: string,
  opts: SpawnOptions = {},
  onSpawn?: (child: ChildProcess) => void | Promise<void>,
): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  await onSpawn?.(child);
  try {
    const port = await until(
      `daemon started (socket ${sock})`,
      () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`daemon exited (socket ${sock}): ${out}`);
        return /"guest":\[\{"host":"[^"]+","port":(\d+)\}.*"msg":"metad started"/.exec(out)?.[1];
      },
      { ms: 20_000, detail: () => out },
    );
    return { child, out: () => out, guestPort: Number(port) };
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
}

export const admin = (sock: string, method: string, path: string, body?: unknown): Promise<Reply> => adminRequest(sock, method, path, body);

/** TCP ports process `pid` listens on: its socket fds matched against its netns' tcp tables. */
export function listeningTcpPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* the fd closed meanwhile */
    }
  }
  const ports: number[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (index 9); st 0A = LISTEN
      if (f.length > 9 && f[3] === '0A' && inodes.has(f[9]!)) ports.push(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return ports.sort((a, b) => a - b);
}

/** True once process `pid` has a handler (not the default) for signal number `sig`. */
export function catchesSignal(pid: number, sig: number): boolean {
  const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m !== null && (BigInt(`0x${m[1]!}`) & (1n << BigInt(sig - 1))) !== 0n;
}
