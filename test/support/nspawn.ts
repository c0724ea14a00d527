/**
 * A throwaway systemd, booted as PID 1 of a container, for tests of the real unit on machines
 * whose own PID 1 is not systemd: `systemd-nspawn -D / --volatile=yes` boots the host's /usr
 * read-only over an empty tmpfs root (so /etc holds only what the test binds in), inside a network
 * namespace the test created (never the machine's own). No machined or dbus on the host:
 * `--register=no --keep-unit`, and commands enter the container with `nsenter -t LEADER -a`.
 *
 * With --keep-unit nspawn puts itself into `<its cgroup>/supervisor` and the container into
 * `<its cgroup>/payload`, and leaves both behind; started from the root cgroup, two containers
 * (two test runs at once) would share one `payload` and stop each other's services. So each
 * container gets a cgroup of its own (`metadu-PID-xxxxxx`, in the unified and the name=systemd
 * hierarchies), killed (cgroup.kill) and removed by destroy(), also after a failed test; stale
 * ones of killed test runs go at the next boot. Needs root and systemd-container.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasCommand, isRoot } from './env.js';
import { pidAlive } from './process.js';
import { until } from './wait.js';
import { runFile, type RunResult } from './netns.js';

const PREFIX = 'metadu';
const NAME_RE = new RegExp(`^${PREFIX}-(\\d+)-[0-9a-f]{6}$`);
const PROPAGATE = '/run/systemd/nspawn/propagate';
const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
/** The first-boot wizard would wait for a key. */
const KERNEL_ARGS = ['systemd.unit=multi-user.target', 'systemd.mask=systemd-firstboot.service'];
/** An empty /etc is a first boot, on which systemd enables every unit by preset (Debian: "enable
 * *"): networkd, nftables.service, and the unit under test itself. Only what /usr wires statically. */
const PRESET = 'disable *\n';

export interface Container {
  readonly name: string;
  /** Host pid of the container's PID 1. */
  readonly leader: number;
  /** Run to completion inside the container (every namespace of PID 1), as root or as `user`. */
  run(cmd: string, args?: readonly string[], opts?: { user?: string; timeoutMs?: number }): Promise<RunResult>;
  /** Halt the container and remove its cgroups and nspawn's leftovers. Idempotent. */
  destroy(): Promise<void>;
  /** What is left on the host after destroy() (empty when clean). */
  leftovers(): string[];
}

/** Why a container cannot boot here (undefined: it can). */
export function containerMissing(): string | undefined {
  if (!isRoot()) return 'booting a container needs root';
  if (!hasCommand('systemd-nspawn')) return 'systemd-nspawn not installed (systemd-container; .ci/install-deps.sh)';
  if (!hasCommand('nsenter')) return 'nsenter not installed (util-linux)';
  if (cgroupRoots().length === 0) return 'no cgroup2 hierarchy mounted';
  return undefined;
}

/** The hierarchies nspawn uses: cgroup2 (unified) and, on hybrid hosts, v1 name=systemd. Each as
 * the directory of this process's own cgroup in it. */
function cgroupRoots(): string[] {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const own = readFileSync('/proc/self/cgroup', 'utf8').split('\n');
  const out: string[] = [];
  for (const line of mounts) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const mountPoint = pre.split(' ')[4] ?? '';
    const [fstype, , opts = ''] = post.split(' ');
    let path: string | undefined;
    if (fstype === 'cgroup2') path = own.find((l) => l.startsWith('0::'))?.slice(3);
    else if (fstype === 'cgroup' && opts.split(',').includes('name=systemd'))
      path = own.find((l) => l.includes(':name=systemd:'))?.split(':name=systemd:')[1];
    if (path === undefined) continue;
    if (fstype === 'cgroup2')
      out.unshift(join(mountPoint, path)); // first: its cgroup.kill empties the others
    else out.push(join(mountPoint, path));
  }
  return out;
}

function run(file: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  // A process group of its own (detached): a command in the container that signals its process
  // group (`kill -SIG 0`, e.g. with an empty or 0 PID) must not reach the test runner's group,
  // which nsenter's child would otherwise share across the PID namespace.
  return runFile(file, args, { timeoutMs, detached: true });
}

/** Remove a cgroup and its children, deepest first, after killing what runs there (v2). */
async function removeCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  if (existsSync(join(dir, 'cgroup.kill'))) writeFileSync(join(dir, 'cgroup.kill'), '1');
  const rm = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(join(d, e.name));
    rmdirSync(d);
  };
  let busy: unknown;
  // EBUSY while killed processes are still being reaped.
  await until(
    `cgroup ${dir} removed`,
    () => {
      try {
        rm(dir);
        return true;
      } catch (e) {
        busy = e;
        return false;
      }
    },
    { detail: () => String(busy) },
  );
}

/** nspawn leaves `/run/systemd/nspawn/propagate/NAME` when /run is no tmpfs ("we can't allow that"). */
function removePropagate(name: string): void {
  const dir = join(PROPAGATE, name);
  if (existsSync(dir) && statSync(dir).isDirectory() && readdirSync(dir).length === 0) rmdirSync(dir);
}

async function removeStale(): Promise<void> {
  for (const root of cgroupRoots()) {
    for (const e of existsSync(root) ? readdirSync(root) : []) {
      const m = NAME_RE.exec(e);
      if (m && !pidAlive(Number(m[1]))) await removeCgroup(join(root, e));
    }
  }
  for (const e of readdirSync(tmpdir())) {
    const m = NAME_RE.exec(e);
    if (m && !pidAlive(Number(m[1]))) rmSync(join(tmpdir(), e), { recursive: true, force: true });
  }
  for (const e of existsSync(PROPAGATE) ? readdirSync(PROPAGATE) : []) {
    const m = NAME_RE.exec(e);
    if (m && !pidAlive(Number(m[1]))) removePropagate(e);
  }
}

export interface BootOptions {
  /** `/run/netns/NAME` of a namespace the test created. */
  readonly netnsPath: string;
  /** Read-only bind mounts, host path -> container path. */
  readonly binds: readonly (readonly [string, string])[];
  /** Writable bind mounts, host path -> container path. */
  readonly rwBinds?: readonly (readonly [string, string])[];
  /** Beyond nspawn's default set (e.g. CAP_NET_ADMIN, which it grants only with its own networking). */
  readonly capabilities?: readonly string[];
  /**
   * Writable overlays, container path -> host upper dir: the container sees the host's tree at
   * that path with the upper dir over it, and what it writes there lands in the upper dir (e.g.
   * `/usr`, so that `npm install -g` can install into the container's /usr; the host's stays as it is).
   */
  readonly overlays?: readonly (readonly [string, string])[];
}

export async function bootContainer(o: BootOptions): Promise<Container> {
  await removeStale();
  const name = `${PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const cgroups = cgroupRoots().map((r) => join(r, name));
  const own = join(tmpdir(), name); // named like the cgroup: removed as stale with it
  mkdirSync(own, { mode: 0o755 });
  writeFileSync(join(own, 'preset'), PRESET);
  const args = [
    '-D',
    '/',
    '--volatile=yes',
    '--register=no',
    '--keep-unit',
    `--machine=${name}`,
    `--network-namespace-path=${o.netnsPath}`,
    '--console=pipe',
    ...(o.capabilities?.length ? [`--capability=${o.capabilities.join(',')}`] : []),
    `--bind-ro=${join(own, 'preset')}:/etc/systemd/system-preset/00-${PREFIX}.preset`,
    ...o.binds.map(([from, to]) => `--bind-ro=${from}:${to}`),
    ...(o.rwBinds ?? []).map(([from, to]) => `--bind=${from}:${to}`),
    ...(o.overlays ?? []).map(([path, upper]) => `--overlay=${path}:${upper}:${path}`),
    '--boot',
    ...KERNEL_ARGS,
  ];
  let nspawn: ChildProcess | undefined;
  let log = '';
  let destroyed: Promise<void> | undefined;
  const destroy = (): Promise<void> => {
    destroyed ??= (async () => {
      const exited = (): boolean => !nspawn || nspawn.exitCode !== null || nspawn.signalCode !== null;
      const done = nspawn && !exited() ? new Promise((r) => nspawn!.once('exit', r)) : Promise.resolve();
      if (!exited()) nspawn!.kill('SIGTERM'); // nspawn halts the container: units stop in order
      await until('nspawn halted the container', exited, 10_000).catch(() => undefined); // then its cgroups are killed
      for (const cg of cgroups) await removeCgroup(cg); // kills whatever did not stop (nspawn too)
      await done;
      removePropagate(name);
      rmSync(own, { recursive: true, force: true });
    })();
    return destroyed;
  };
  try {
    for (const cg of cgroups) mkdirSync(cg);
    // The shell joins the cgroups and then becomes nspawn, so that nspawn's supervisor and
    // payload cgroups are created inside ours.
    const join$ = cgroups.map((c) => `echo $$ > '${c}/cgroup.procs' || exit 97`).join('; ');
    nspawn = spawn('sh', ['-c', `${join$}; exec systemd-nspawn "$@"`, 'sh', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    nspawn.stdout!.on('data', (b: Buffer) => (log = (log + b.toString('utf8')).slice(-8000)));
    nspawn.stderr!.on('data', (b: Buffer) => (log = (log + b.toString('utf8')).slice(-8000)));
    const leader = await findLeader(nspawn, () => log);
    const container: Container = {
      name,
      leader,
      run(cmd, argv = [], opts = {}) {
        const as = opts.user ? ['setpriv', `--reuid=${opts.user}`, `--regid=${opts.user}`, '--init-groups'] : [];
        return run(
          'nsenter',
          ['-t', String(leader), '-a', '--', 'env', '-i', `PATH=${PATH}`, 'LANG=C.UTF-8', ...as, cmd, ...argv],
          opts.timeoutMs,
        );
      },
      destroy,
      leftovers() {
        const left = [...cgroups, own].filter((c) => existsSync(c));
        if (existsSync(join(PROPAGATE, name))) left.push(join(PROPAGATE, name));
        if (nspawn && nspawn.exitCode === null && nspawn.signalCode === null) left.push(`systemd-nspawn pid ${String(nspawn.pid)}`);
        if (pidAlive(leader)) left.push(`container PID 1 (${String(leader)})`);
        return left;
      },
    };
    // Until PID 1 has set up its private socket systemctl cannot connect ("offline", or nothing).
    let state = '';
    await until(
      'the container booted',
      async () => {
        state = (await container.run('systemctl', ['is-system-running', '--wait'], { timeoutMs: 60_000 })).stdout.trim();
        return /^(running|degraded|maintenance|stopping)$/.test(state);
      },
      60_000,
    ).catch(() => undefined); // said below, with the failed units
    if (state !== 'running') {
      const failed = await container.run('systemctl', ['--failed', '--no-legend', '--plain']);
      throw new Error(`container booted to "${state}": ${failed.stdout.trim()}\n${log}`);
    }
    return container;
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** The container's PID 1: nspawn's child once it has become systemd. */
async function findLeader(nspawn: ChildProcess, log: () => string): Promise<number> {
  const pid = nspawn.pid!;
  return until(
    'the container PID 1',
    () => {
      if (nspawn.exitCode !== null || nspawn.signalCode !== null)
        throw new Error(`systemd-nspawn exited (${String(nspawn.exitCode ?? nspawn.signalCode)}): ${log()}`);
      let children: string[] = [];
      try {
        children = readFileSync(`/proc/${String(pid)}/task/${String(pid)}/children`, 'utf8')
          .split(' ')
          .filter(Boolean);
      } catch {
        // not yet
      }
      for (const c of children) {
        try {
          if (readFileSync(`/proc/${c}/comm`, 'utf8').trim() === 'systemd') return Number(c);
        } catch {
          // gone
        }
      }
      return undefined;
    },
    { ms: 30_000, detail: log },
  );
}
