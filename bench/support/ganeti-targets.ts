/**
 * Setup of the Ganeti benchmark (bench/suites/ganeti.ts): one throwaway network namespace
 * (test/support/netns.ts: loopback only, a tripwire counts any packet off loopback) runs both
 * Debian's real ganeti-metad 3.0.2 and the real daemon (`metad serve` with its `ganeti` section),
 * each with a Ganeti node root of its own (test/support/ganeti.ts: the sockets and pid files of
 * Ganeti's virtual-cluster paths, never the machine's /var/run/ganeti). Ganeti's own Python code
 * (test/support/ganeti_feed.py: UpdateMetadata → ModifyInstanceMetadata → ganeti.metad.Client)
 * feeds both the same instance, whose comm address is 127.0.0.1: every connection wrk and curl
 * make inside the namespace comes from that guest. Before anything is measured, both answer
 * `os/parameters.json` with the same bytes.
 *
 * Bench config of metad (logged): `guest.rateLimit` raised to 1e9/s so the token bucket never
 * answers 429 (ganeti-metad has no rate limit), `maxConnectionsPerSource` 256 (wrk's 64
 * connections all come from the one guest address). Pinning as the guest suites: both servers
 * (every thread) on CPU 0, wrk on CPU 1, when there are ≥ 2 CPUs and BENCH_PIN is not 0.
 */
import type { ChildProcess } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  GANETI_PYTHONPATH,
  ganetiFeed,
  ganetiMissing,
  nodeRoot,
  startGanetiMetad as startNsGanetiMetad,
  type NodeRoot,
} from '../../test/support/ganeti.js';
import { canUseNetns, createNetns, type Netns } from '../../test/support/netns.js';
import { makeTempDir, trackChild } from './cleanup.js';
import { spawnDaemon } from './daemon.js';
import type { SuiteContext } from './suite.js';
import { have, pin } from './wrk.js';

const GANETI_PORT = 8081;
const METAD_PORT = 8082;
const PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
export const PARAMS_PATH = '/ganeti/latest/os/parameters.json';
const PUSH_PY = fileURLToPath(new URL('../../../bench/support/ganeti_push.py', import.meta.url));
/** The public parameter each push of the feed-latency run changes. */
const SERIAL_PARAM = 'b-serial'; // sorts among the public names: both servers then answer the same bytes

/** An objects.Instance as `gnt-instance add` makes it, its comm NIC at 127.0.0.1 (the guest inside the namespace). */
const BENCH_INSTANCE: Record<string, unknown> = {
  name: 'bench1.example.com',
  uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9eb1',
  os: 'noop',
  hypervisor: 'kvm',
  beparams: { maxmem: 512, minmem: 256, vcpus: 2 },
  osparams: { 'a-image': 'debian-12', 'b-mirror': 'http://deb.debian.org/debian', [SERIAL_PARAM]: 'v-start' },
  osparams_private: { 'c-root-password': 'p4ss' },
  nics: [
    {
      name: 'eth0',
      mac: '52:54:00:00:b1:01',
      ip: null,
      nicparams: { mode: 'bridged', link: 'br0' },
      uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9ea1',
    },
    {
      name: 'ganeti:communication:bench1.example.com',
      mac: '52:54:00:00:b1:02',
      ip: '127.0.0.1',
      nicparams: { mode: 'routed', link: 'communication_rt' },
      uuid: '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9ea2',
    },
  ],
  disks: ['6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9ed0'],
};

/** One of the two servers: its guest door inside the namespace, its pid (for CPU time), its Ganeti node root. */
export interface GanetiTarget {
  key: 'ganeti-metad' | 'metad';
  url: string;
  pid: number;
  node: NodeRoot;
}

export interface GanetiTargets {
  ns: Netns;
  dir: string;
  ganeti: GanetiTarget;
  metad: GanetiTarget;
  /** The bytes both answered for os/parameters.json before the measurement. */
  paramsBody: string;
  /** Pin wrk here when the servers were pinned. */
  loadCpu: number | undefined;
  pinNote: string;
}

/** Why this machine cannot run the benchmark (undefined: it can). */
export function ganetiBenchMissing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  for (const cmd of ['wrk', 'curl']) if (!have(cmd)) return `${cmd} is not installed (.ci/install-deps.sh)`;
  return ganetiMissing();
}

/** curl inside the namespace (from 127.0.0.1, the instance's comm address): status and body (status 0: no answer). */
async function nsGet(ns: Netns, url: string): Promise<{ status: number; body: string }> {
  const r = await ns.run('curl', ['-s', '--noproxy', '*', '--max-time', '3', '-w', '\n%{http_code}', url], { timeoutMs: 10_000 });
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)) || 0, body: r.stdout.slice(0, cut) };
}

async function startGanetiMetad(ctx: SuiteContext, ns: Netns, node: NodeRoot): Promise<ChildProcess> {
  const child = trackChild(
    await startNsGanetiMetad(ns, node, GANETI_PORT, async () => (await nsGet(ns, `http://127.0.0.1:${String(GANETI_PORT)}/`)).status > 0),
  );
  ctx.defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  });
  return child;
}

/** The namespace, both daemons fed the same instance by Ganeti's code, their answers compared. */
export async function startGanetiTargets(ctx: SuiteContext): Promise<GanetiTargets> {
  const dir = makeTempDir('metad-bench-ganeti-');
  const ns = await createNetns('metadbg');
  ctx.defer(() => ns.destroy());
  const gNode = nodeRoot(join(dir, 'ganeti-metad'));
  const mNode = nodeRoot(join(dir, 'metad'));

  const gm = await startGanetiMetad(ctx, ns, gNode);
  const rate = { ratePerSec: 1e9, burst: 1e9 };
  const d = await spawnDaemon({
    cli: process.env.BENCH_CLI,
    netns: ns.name,
    guestPort: METAD_PORT,
    config: {
      guest: { rateLimit: rate, maxConnectionsPerSource: 256 },
      ganeti: { socket: mNode.metadSocket, pidFile: mNode.metadPidFile },
    },
  });
  ctx.defer(() => d.stop());
  ctx.log(
    `bench config: metad's guest.rateLimit raised to ${rate.ratePerSec}/s burst ${rate.burst} (ganeti-metad has no rate limit), guest.maxConnectionsPerSource 256 (default 64)`,
  );

  for (const node of [gNode, mNode]) {
    const answers = await ganetiFeed(node, [{ op: 'update', instance: BENCH_INSTANCE }]);
    if (JSON.stringify(answers) !== '[{"warnings":[]}]') throw new Error(`feeding ${node.root}: ${JSON.stringify(answers)}`);
  }
  const ganeti: GanetiTarget = { key: 'ganeti-metad', url: `http://127.0.0.1:${GANETI_PORT}`, pid: gm.pid!, node: gNode };
  const metad: GanetiTarget = { key: 'metad', url: `http://127.0.0.1:${METAD_PORT}`, pid: d.pid, node: mNode };
  const g = await nsGet(ns, `${ganeti.url}${PARAMS_PATH}`);
  const m = await nsGet(ns, `${metad.url}${PARAMS_PATH}`);
  if (g.status !== 200 || m.status !== 200 || g.body !== m.body)
    throw new Error(`os/parameters.json differs: ganeti-metad ${g.status} ${g.body}, metad ${m.status} ${m.body}`);

  const cpus = os.cpus().length;
  let pinned = false;
  if (process.env.BENCH_PIN !== '0' && cpus >= 2 && have('taskset')) {
    pinned = pin(gm.pid!, 0) && pin(d.pid, 0);
    if (!pinned) ctx.log('taskset could not pin the servers; running unpinned');
  }
  const pinNote = pinned
    ? 'servers pinned to CPU 0 (all threads), wrk to CPU 1'
    : `unpinned (${cpus} CPUs${process.env.BENCH_PIN === '0' ? ', BENCH_PIN=0' : ''})`;
  return { ns, dir, ganeti, metad, paramsBody: m.body, loadCpu: pinned ? 1 : undefined, pinNote };
}

/** Per push: how long Ganeti's push call took, push start → the guest door answered the new value, and the reads that took. */
export interface PushLatency {
  pushMs: number[];
  servedMs: number[];
  reads: number[];
}

/**
 * `count` pushes through Ganeti's code (bench/support/ganeti_push.py, inside the namespace), each
 * changing the public parameter SERIAL_PARAM, each followed by reads of `os/parameters.json` as
 * the guest (a new connection per read) until the new value is served.
 */
export async function pushLatency(t: GanetiTargets, target: GanetiTarget, count: number): Promise<PushLatency> {
  const input = JSON.stringify({ instance: BENCH_INSTANCE, param: SERIAL_PARAM, count, url: `${target.url}${PARAMS_PATH}` });
  const r = await t.ns.run('/usr/bin/python3', [PUSH_PY], {
    env: { PATH, PYTHONPATH: GANETI_PYTHONPATH, ...target.node.env },
    input,
    timeoutMs: 60_000 + count * 1000,
  });
  if (r.code !== 0) throw new Error(`ganeti_push.py (${target.key}) exited ${String(r.code)}: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as PushLatency;
  if (out.servedMs.length !== count) throw new Error(`ganeti_push.py (${target.key}): ${out.servedMs.length} pushes of ${count}`);
  return out;
}
