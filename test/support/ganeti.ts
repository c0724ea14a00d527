/**
 * Ganeti 3.0's own code for tests (Debian bookworm's ganeti-3.0 and ganeti-haskell-3.0, unpacked
 * by .ci/install-deps.sh into /var/cache/metad-test/ganeti, never installed): its Python package
 * run with Debian's /usr/bin/python3 (test/support/ganeti_feed.py feeds a daemon the way a
 * cluster does), and the real ganeti-metad binary. Both find their sockets and pid files under a
 * node root of Ganeti's virtual-cluster support (GANETI_ROOTDIR/GANETI_HOSTNAME), never under
 * the machine's /var/run/ganeti.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { runFile, type Netns, type RunResult } from './netns.js';
import { until } from './wait.js';

export const GANETI_DIR = process.env.METAD_GANETI_DIR ?? '/var/cache/metad-test/ganeti';
const PYTHON = '/usr/bin/python3';
/** PYTHONPATH for Ganeti's Python package. */
export const GANETI_PYTHONPATH = join(GANETI_DIR, 'usr/share/ganeti/3.0');
const GANETI_METAD = join(GANETI_DIR, 'usr/lib/ganeti/3.0/usr/sbin/ganeti-metad');
/** Ganeti's node scripts (kvm-ifup, kvm-ifup-os, net-common): /usr/lib/ganeti on a node. */
export const GANETI_SCRIPTS = join(GANETI_DIR, 'usr/lib/ganeti/3.0/usr/lib/ganeti');
const FEED_PY = fileURLToPath(new URL('../../../test/support/ganeti_feed.py', import.meta.url));
/** Debian's ganeti-os-noop, installed (.ci/install-deps.sh): where both daemons find it. */
export const NOOP_OS = '/usr/share/ganeti/os/noop';

/** Why Ganeti's code cannot run here (undefined: it can). */
export function ganetiMissing(): string | undefined {
  if (!existsSync(join(GANETI_PYTHONPATH, 'ganeti', 'metad.py')) || !existsSync(GANETI_METAD))
    return `Ganeti 3.0 is not unpacked in ${GANETI_DIR} (.ci/install-deps.sh)`;
  if (!existsSync(join(NOOP_OS, 'create'))) return 'ganeti-os-noop is not installed (.ci/install-deps.sh)';
  const py = spawnSync(PYTHON, ['-c', 'import ganeti.backend, ganeti.metad, ganeti.cmdlib.instance_utils'], {
    env: { PATH: '/usr/bin:/bin', PYTHONPATH: GANETI_PYTHONPATH },
    encoding: 'utf8',
  });
  if (py.status !== 0) return `Ganeti's Python package does not import: ${py.stderr.trim().split('\n').pop() ?? ''} (.ci/install-deps.sh)`;
  if (!/^gnt-metad:/m.test(readFileSync('/etc/passwd', 'utf8'))) return "Ganeti's users are missing (.ci/install-deps.sh)";
  return undefined;
}

/**
 * A Ganeti node root: `<base>/<host>` with the directories Ganeti's daemons expect under it
 * (var/run/ganeti/socket, var/log/ganeti, var/lib/ganeti). Its socket for the metadata daemon:
 * `metadSocket`, its pid file: `metadPidFile`.
 */
export interface NodeRoot {
  root: string;
  host: string;
  metadSocket: string;
  metadPidFile: string;
  env: Record<string, string>;
}

export function nodeRoot(base: string, host = 'node1'): NodeRoot {
  const root = join(base, host);
  for (const d of ['var/run/ganeti/socket', 'var/log/ganeti', 'var/lib/ganeti']) mkdirSync(join(root, d), { recursive: true });
  return {
    root,
    host,
    metadSocket: join(root, 'var/run/ganeti/socket/ganeti-metad'),
    metadPidFile: join(root, 'var/run/ganeti/ganeti-metad.pid'),
    env: { GANETI_ROOTDIR: root, GANETI_HOSTNAME: host },
  };
}

/** One operation of ganeti_feed.py (see there) and its answer. */
export type FeedOp =
  | { op: 'echo'; arg: string }
  | { op: 'alive' }
  | { op: 'os-search-path' }
  | {
      op: 'export-os';
      instance: Record<string, unknown>;
      env?: Record<string, string>;
      helper?: { script: string; disks: number };
      os_search_path?: string[];
    }
  | {
      op: 'update' | 'client-update';
      instance: Record<string, unknown>;
      osparams_public?: Record<string, string>;
      osparams_private?: Record<string, string>;
      osparams_secret?: Record<string, string>;
    };
export interface FeedAnswer {
  result?: unknown;
  warnings?: string[];
  error?: string;
  message?: string;
}

/** Run Ganeti's code (ganeti_feed.py) against the daemon of node root `node`. */
export async function ganetiFeed(node: NodeRoot, ops: FeedOp[]): Promise<FeedAnswer[]> {
  const r: RunResult = await runFile(PYTHON, [FEED_PY], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', PYTHONPATH: GANETI_PYTHONPATH, ...node.env },
    input: JSON.stringify(ops),
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`ganeti_feed.py exited ${String(r.code)}: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as FeedAnswer);
}

/**
 * Debian's ganeti-metad inside `ns`, on 127.0.0.1:`port`, with node root `node` (its socket and
 * pid file there). Resolves once both files exist and `answers()` (an HTTP request made from
 * inside `ns`) says it serves; if it exits or never does within 20 s, it is killed and this throws
 * with what it printed.
 */
export async function startGanetiMetad(ns: Netns, node: NodeRoot, port: number, answers: () => Promise<boolean>): Promise<ChildProcess> {
  const child = ns.exec(GANETI_METAD, ['-f', '--no-user-checks', '-b', '127.0.0.1', '-p', String(port)], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...node.env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  try {
    await until(
      'ganeti-metad listening',
      async () => {
        if (child.exitCode !== null) throw new Error(`ganeti-metad exited ${String(child.exitCode)}: ${err}`);
        return existsSync(node.metadSocket) && existsSync(node.metadPidFile) && (await answers());
      },
      { ms: 20_000, detail: () => err },
    );
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return child;
}
