/**
 * Setup of the comm-network guest benchmark (bench/suites/comm-veth.ts): a "hypervisor" network
 * namespace runs the real daemon in routed mode (anchor, tap, nftables table, /32 route, TTL 1 on
 * replies; DHCP external, the guest's address is static), and a guest namespace is joined to it by
 * a veth pair. test/support/comm-topology.ts creates both namespaces and deletes them (with
 * whatever still runs there). The same daemon also listens on 127.0.0.1 inside the hypervisor
 * namespace for a second instance, so one process serves both paths: wrk from the guest over the
 * veth, and wrk over loopback. Nothing is configured in the machine's own namespace.
 */
import os from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTopology, type Ns } from '../../test/support/comm-topology.js';
import { canUseNetns } from '../../test/support/netns.js';
import { makeTempDir } from './cleanup.js';
import { spawnDaemon } from './daemon.js';
import { SDK_TTL, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER } from './guest-paths.js';
import { benchInstance } from './state.js';
import type { SuiteContext } from './suite.js';
import { have, pin } from './wrk.js';

const TAP = 'mbtap1';
const GUEST_MAC = '02:00:00:00:b0:01';
const GUEST_IPV4 = '169.254.1.10';
const LOOP_PORT = 8169;
export const LEAF = '/latest/meta-data/instance-id';

/** One way into the daemon: wrk runs in `ns` against `base`; `token` is that instance's IMDSv2 token. */
export interface DoorPath {
  key: 'loopback' | 'veth';
  ns: string;
  base: string;
  token: string;
  instanceId: string;
}

export interface VethTargets {
  dir: string;
  pid: number;
  loopback: DoorPath;
  veth: DoorPath;
  /** Pin wrk here when the daemon was pinned. */
  loadCpu: number | undefined;
  pinNote: string;
}

/** Why this machine cannot run the benchmark (undefined: it can). */
export function vethMissing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  for (const cmd of ['wrk', 'curl', 'nft'])
    if (!have(cmd) && !have(`/usr/sbin/${cmd}`)) return `${cmd} is not installed (.ci/install-deps.sh)`;
  return undefined;
}

/** curl inside a namespace: status and body (status 0: no answer). */
async function curl(ns: Ns, method: string, url: string, headers: string[]): Promise<{ status: number; body: string }> {
  const args = ['-s', '--noproxy', '*', '--max-time', '3', '-X', method, ...headers.flatMap((h) => ['-H', h]), '-w', '\n%{http_code}', url];
  const r = await ns.run('curl', args, { timeoutMs: 10_000 });
  const cut = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(cut + 1)) || 0, body: r.stdout.slice(0, Math.max(cut, 0)) };
}

/** A token for the instance behind `base`, and a check that it reads that instance's id (and a bad token does not). */
async function openPath(ns: Ns, key: DoorPath['key'], base: string, instanceId: string): Promise<DoorPath> {
  let tok = { status: 0, body: '' };
  // The veth path needs the reconcile after registration (route, tap address): retry for up to 10 s.
  for (let i = 0; i < 50 && tok.status !== 200; i++) {
    tok = await curl(ns, 'PUT', `${base}${TOKEN_PATH}`, [`${TTL_HEADER}: ${SDK_TTL}`]);
    if (tok.status !== 200) await sleep(200);
  }
  if (tok.status !== 200) throw new Error(`${key}: token PUT answered ${tok.status}`);
  const id = await curl(ns, 'GET', `${base}${LEAF}`, [`${TOKEN_HEADER}: ${tok.body}`]);
  if (id.status !== 200 || id.body !== instanceId) throw new Error(`${key}: instance-id answered ${id.status}, not this path's instance`);
  const bad = await curl(ns, 'GET', `${base}${LEAF}`, [`${TOKEN_HEADER}: ${'A'.repeat(32)}`]);
  if (bad.status !== 401) throw new Error(`${key}: a bad token was answered ${bad.status}, expected 401`);
  return { key, ns: ns.name, base, token: tok.body, instanceId };
}

export async function startVethTargets(ctx: SuiteContext): Promise<VethTargets> {
  const topo = await createTopology([{ tap: TAP, mac: GUEST_MAC }]);
  ctx.defer(() => topo.destroy());
  const guest = topo.guests[0]!;
  const dir = makeTempDir('metad-bench-veth-');
  const d = await spawnDaemon({
    netns: topo.hv.name,
    cli: process.env.BENCH_CLI,
    config: {
      guest: {
        listen: [
          { host: '169.254.169.254', port: 80 },
          { host: '127.0.0.1', port: LOOP_PORT },
        ],
        commRange: ['169.254.0.0/16', '127.0.0.0/8'],
        rateLimit: { ratePerSec: 1e9, burst: 1e9 },
        maxConnectionsPerSource: 256,
      },
      network: { mode: 'routed', runDir: join(dir, 'run'), dhcp: { mode: 'external' } },
    },
  });
  ctx.defer(() => d.stop());
  const loopDoc = benchInstance(0); // comm 127.0.0.1
  const vethDoc = { ...benchInstance(1), comm: { mac: GUEST_MAC, ipv4: GUEST_IPV4, tap: TAP } };
  vethDoc.ec2 = { ...vethDoc.ec2, instanceId: 'i-0000000000000veth' };
  for (const doc of [loopDoc, vethDoc]) {
    const r = await d.admin.register(doc);
    if (r.status !== 201) throw new Error(`register ${doc.name}: HTTP ${r.status}`);
  }
  await guest.ip('addr', 'add', `${GUEST_IPV4}/16`, 'dev', 'eth0');
  ctx.log(
    'bench config: routed comm network in namespaces (DHCP external, static guest address); guest.rateLimit 1e9/s; maxConnectionsPerSource 256',
  );
  const veth = await openPath(guest, 'veth', 'http://169.254.169.254', vethDoc.ec2.instanceId);
  const loopback = await openPath(topo.hv, 'loopback', `http://127.0.0.1:${LOOP_PORT}`, loopDoc.ec2.instanceId);

  const cpus = os.cpus().length;
  const pinned = process.env.BENCH_PIN !== '0' && cpus >= 2 && have('taskset') && pin(d.pid, 0);
  const pinNote = pinned ? 'daemon pinned to CPU 0 (all threads), wrk to CPU 1' : `unpinned (${cpus} CPUs)`;
  return { dir, pid: d.pid, loopback, veth, loadCpu: pinned ? 1 : undefined, pinNote };
}
