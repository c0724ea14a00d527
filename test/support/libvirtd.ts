/**
 * A private libvirtd for tests, inside a test network namespace (so its taps and qemu processes
 * live there), without systemd: `ip netns exec NS unshare --mount --propagation private` with
 * libvirt's config/run/lib/log directories bind-mounted from a temp dir, under `tini -s -g`
 * (a subreaper: destroy takes 0.2 s instead of 1.2–2 s here), with its own pid file (the default
 * /run/libvirtd.pid would collide with any other libvirtd on the machine). The capabilities cache
 * (/var/cache/libvirt) is shared between runs: probing QEMU costs seconds the first time.
 * Clients connect from any namespace with `qemu:///system?socket=DIR/run/libvirt-sock`.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { createConnection } from 'node:net';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand, isRoot } from './env.js';
import { until } from './wait.js';
import type { Netns } from './netns.js';

export interface TestLibvirtd {
  uri: string;
  dir: string;
  /** The libvirtd log (for failure messages). */
  log(): Promise<string>;
  /**
   * Stops libvirtd alone (SIGTERM: a clean shutdown, SIGKILL: killed) and waits until it is gone;
   * its qemu processes live on (own session), as with a real libvirtd restart.
   */
  down(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Starts libvirtd again on the same directories (it re-attaches to the running qemus). */
  up(): Promise<void>;
  /** down(signal) then up(). */
  restart(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** SIGSTOP libvirtd: it neither answers nor refuses (connections and calls just hang); its qemus run on. */
  pause(): Promise<void>;
  /** SIGCONT: it carries on with what it was sent meanwhile. */
  resume(): Promise<void>;
  /** SIGTERM libvirtd (SIGKILL after 5 s), then kill whatever else is left in the namespace. */
  stop(): Promise<void>;
}

const run = promisify(execFile);

const MOUNTS: [string, string][] = [
  ['etc', '/etc/libvirt'],
  ['run', '/run/libvirt'],
  ['lib', '/var/lib/libvirt'],
  ['log', '/var/log/libvirt'],
  ['cache', '/var/cache/libvirt'],
];

const QEMU_CONF = `# test libvirtd: qemu runs as root, no per-VM namespaces, cgroups, labels or virtlogd
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
namespaces = [ ]
cgroup_controllers = [ ]
`;
const LIBVIRTD_CONF = `auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
`;

/** Why a private libvirtd cannot run here (undefined when it can). */
export function libvirtdMissing(): string | undefined {
  if (!isRoot()) return 'libvirtd tests need root';
  for (const c of ['libvirtd', 'tini', 'qemu-system-x86_64', 'qemu-img', 'unshare']) {
    if (!hasCommand(c)) return `${c} not installed; run .ci/install-deps.sh`;
  }
  return undefined;
}

function canConnect(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

/** Processes in namespace `name` (asked from outside it, so the asking `ip` is not one). */
export async function netnsPids(name: string): Promise<number[]> {
  const out = await run('ip', ['netns', 'pids', name]).then(
    (r) => r.stdout,
    () => '',
  );
  return out.split('\n').filter(Boolean).map(Number);
}

/**
 * `subreaper: false` runs libvirtd without tini: QEMU (which libvirt daemonizes) is then
 * reaped by the machine's PID 1, as on a host whose init reaps slowly (docs/deployment.md).
 */
export async function startLibvirtd(ns: Netns, opts: { subreaper?: boolean } = {}): Promise<TestLibvirtd> {
  const dir = await mkdtemp(join(tmpdir(), 'metad-libvirtd-'));
  const cache = join(tmpdir(), 'metad-libvirt-cache');
  await mkdir(cache, { recursive: true });
  for (const [sub, target] of MOUNTS) {
    if (sub !== 'cache') await mkdir(join(dir, sub), { recursive: true });
    await mkdir(target, { recursive: true }); // bind-mount targets must exist (harmless, empty)
  }
  await writeFile(join(dir, 'etc', 'qemu.conf'), QEMU_CONF);
  await writeFile(join(dir, 'etc', 'libvirtd.conf'), LIBVIRTD_CONF);
  const binds = MOUNTS.map(([sub, target]) => `mount --bind '${sub === 'cache' ? cache : join(dir, sub)}' '${target}'`).join(' && ');
  const pidFile = join(dir, 'libvirtd.pid');
  let stderr = '';
  let child: ChildProcess | undefined;
  const spawnDaemon = (): ChildProcess => {
    const c = ns.exec(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `${binds} && exec ${opts.subreaper === false ? '' : 'tini -s -g -- '}libvirtd --pid-file '${pidFile}'`,
      ],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    c.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return c;
  };
  const socket = join(dir, 'run', 'libvirt-sock');
  const log = async (): Promise<string> => `${stderr}${await readFile(join(dir, 'log', 'libvirtd.log'), 'utf8').catch(() => '')}`;
  const running = (c: ChildProcess | undefined): c is ChildProcess => c !== undefined && c.exitCode === null && c.signalCode === null;

  const libvirtdPid = async (): Promise<number> => Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
  const signalLibvirtd = async (signal: NodeJS.Signals): Promise<void> => {
    const pid = await libvirtdPid();
    if (!(pid > 0)) throw new Error('libvirtd has no pid file');
    process.kill(pid, signal);
  };
  const down = async (signal: 'SIGTERM' | 'SIGKILL'): Promise<void> => {
    const c = child;
    if (!running(c)) return;
    // tini's child is libvirtd (from its pid file); tini exits with it.
    const pid = await libvirtdPid();
    if (pid > 0) process.kill(pid, 'SIGCONT'); // a paused one would keep a SIGTERM pending
    if (pid > 0) process.kill(pid, signal);
    else c.kill(signal);
    const killer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited(c);
    clearTimeout(killer);
  };
  const stop = async (): Promise<void> => {
    await down('SIGTERM');
    // qemu outlives libvirtd (own session): nothing the test started may survive it.
    for (const pid of await netnsPids(ns.name)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  const up = async (): Promise<void> => {
    if (running(child)) return;
    const c = spawnDaemon();
    child = c;
    try {
      await until('libvirtd started', async () => {
        if (c.exitCode !== null) throw new Error('libvirtd exited');
        return canConnect(socket);
      });
    } catch (e) {
      throw new Error(`libvirtd did not start (${(e as Error).message}): ${(await log()).slice(-2000)}`, { cause: e });
    }
  };

  try {
    await up();
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    uri: `qemu:///system?socket=${socket}`,
    dir,
    log,
    down,
    up,
    restart: async (signal) => {
      await down(signal);
      await up();
    },
    pause: () => signalLibvirtd('SIGSTOP'),
    resume: () => signalLibvirtd('SIGCONT'),
    stop,
  };
}
