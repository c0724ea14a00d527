/**
 * Boot storm: 1,000 registered instances (comm ipv4 127.0.x.y, distinct; state written by the real
 * InstanceStore), and all 1,000 guests at once doing cloud-init 22.4's EC2 IMDSv2 crawl, each
 * guest a client bound to its own source address, each request on a new TCP connection (40
 * requests per guest with benchInstance; the sequence and the client are in
 * bench/support/storm-worker.ts). The clients are spread over BENCH_STORM_WORKERS forked
 * processes (default 2; one process already needs most of a core here). Nothing is pinned.
 *
 * The daemon runs with its DEFAULT guest config: rate limit 100/s burst 200 per instance (a crawl
 * is 40 requests, so a 429 would be a bug; it is counted), maxConnectionsPerSource 64 (a guest
 * has one connection at a time). Its open-file limit is read from /proc and checked.
 *
 * Three storms, same guests, same client:
 *   cold  first contact: the daemon renders (and signs the identity document of) each instance on
 *         its first request — the real boot-storm case; the target (≤ 5 s) applies here
 *   warm  the same storm again (answer cache filled, JIT warm)
 *   bare  baseline: a bare node:http server (bench/support/bare-server.ts, own process) answering
 *         the first guest's exact answers by path (same bytes, statuses, the 301 and its Location,
 *         same default listen backlog 511): the floor for this client on this machine
 * Reported per storm: errors (target 0: any non-200 other than 404 on user-data and the 301 on
 * dynamic/instance-identity, any connection error or timeout, a wrong instance-id), wall time,
 * requests/s, per-request latency p50/p99 (connect to last byte), per-guest crawl p50/p99, server
 * CPU per request, and the system-wide accept-queue overflow counters (a SYN dropped because the
 * listen backlog is full is retried by the client kernel after 1 s, then 3 s, 7 s).
 * BENCH_CPU_PROF=DIR profiles the daemon; BENCH_CLI=PATH runs another build's daemon (A/B).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTempDir, trackChild } from '../support/cleanup.js';
import { freePort, spawnDaemon } from '../support/daemon.js';
import { fmt } from '../support/format.js';
import { benchInstance, populateStateDir } from '../support/state.js';
import { summarize } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';
import type { Captured, WorkerResult } from '../support/storm-worker.js';
import { startBare, type BareRoute } from '../support/bare.js';
import { cpuMs, profArgs } from '../support/proc.js';

const WORKER = fileURLToPath(new URL('../support/storm-worker.js', import.meta.url));
const EC2_VERSION = '2021-03-23';

function openFileLimit(pid: number): { soft: number; hard: number } {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
  const n = (s: string | undefined): number => (s === 'unlimited' ? Infinity : Number(s));
  return { soft: n(m?.[1]), hard: n(m?.[2]) };
}

function readSys(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** System-wide TCP counters (/proc/net/netstat TcpExt): accept-queue overflows and SYN retransmits. */
function tcpCounters(): Record<string, number> {
  const want = ['ListenOverflows', 'ListenDrops', 'TCPSynRetrans'];
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('TcpExt:'));
    const names = (lines[0] ?? '').split(/\s+/);
    const values = (lines[1] ?? '').split(/\s+/);
    return Object.fromEntries(want.map((k) => [k, Number(values[names.indexOf(k)] ?? NaN)]));
  } catch {
    return Object.fromEntries(want.map((k) => [k, NaN]));
  }
}

interface Guest {
  ip: string;
  instanceId: string;
}

interface StormResult {
  wallMs: number;
  parentMs: number;
  latencies: number[];
  crawls: number[];
  requests: number;
  guestsOk: number;
  errorCount: number;
  unexpected: number;
  tooMany: number;
  status: Record<string, number>;
  errors: string[];
  clientCpuMs: number;
  daemonCpuMs: number;
  requestsPerGuest: number[];
  /** Deltas of the system-wide TcpExt counters over the storm. */
  tcp: Record<string, number>;
  captured: Captured[];
}

interface StormOptions {
  /** The server under test: its guest port and pid (for its CPU time). */
  port: number;
  pid: number;
  workers: number;
  /** False against the bare baseline, which answers every guest alike. */
  checkInstanceId: boolean;
  /** Capture the first guest's requests and answers. */
  capture?: boolean;
}

async function storm(guests: Guest[], o: StormOptions): Promise<StormResult> {
  const workers = o.workers;
  const slices: Guest[][] = Array.from({ length: workers }, () => []);
  guests.forEach((g, i) => slices[i % workers]!.push(g));
  const procs: ChildProcess[] = [];
  const results: Promise<WorkerResult>[] = [];
  const ready: Promise<void>[] = [];
  for (const slice of slices) {
    const child = trackChild(fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    procs.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('message', (m: { type: string }) =>
          m.type === 'ready' ? resolve() : reject(new Error(`worker: ${JSON.stringify(m)}`)),
        );
        child.once('exit', (code) => reject(new Error(`storm worker exited (${code}) before ready`)));
      }),
    );
    results.push(
      new Promise((resolve, reject) => {
        child.on('message', (m: { type: string; error?: string }) => {
          if (m.type === 'result') resolve(m as WorkerResult);
          else if (m.type === 'failed') reject(new Error(`storm worker failed: ${m.error}`));
        });
        child.once('exit', (code) => reject(new Error(`storm worker exited (${code}) without a result`)));
      }),
    );
    child.send({
      type: 'init',
      port: o.port,
      version: EC2_VERSION,
      guests: slice,
      requestTimeoutMs: 10_000,
      deadlineMs: 120_000,
      checkInstanceId: o.checkInstanceId,
      capture: o.capture === true && procs.length === 1,
    });
  }
  // Every promise gets a handler now: a worker that dies early must not become an unhandled rejection.
  for (const p of [...ready, ...results]) p.catch(() => undefined);
  try {
    await Promise.all(ready);
    const cpu0 = cpuMs(o.pid);
    const tcp0 = tcpCounters();
    const t0 = performance.now();
    for (const p of procs) p.send({ type: 'go' });
    const rs = await Promise.all(results);
    const parentMs = performance.now() - t0;
    const daemonCpuMs = cpuMs(o.pid) - cpu0;
    const tcp1 = tcpCounters();
    const tcp = Object.fromEntries(Object.keys(tcp1).map((k) => [k, tcp1[k]! - tcp0[k]!]));
    const all = rs.flatMap((r) => r.guests);
    return {
      wallMs: Math.max(...all.map((g) => g.endMs)) - Math.min(...all.map((g) => g.startMs)),
      parentMs,
      latencies: rs.flatMap((r) => r.latenciesMs),
      crawls: all.filter((g) => g.ok).map((g) => g.endMs - g.startMs),
      requests: all.reduce((a, g) => a + g.requests, 0),
      guestsOk: all.filter((g) => g.ok).length,
      errorCount: rs.reduce((a, r) => a + r.errorCount, 0),
      unexpected: rs.reduce((a, r) => a + r.unexpected, 0),
      tooMany: rs.reduce((a, r) => a + r.tooMany, 0),
      status: rs.reduce<Record<string, number>>((acc, r) => {
        for (const [k, v] of Object.entries(r.status)) acc[k] = (acc[k] ?? 0) + v;
        return acc;
      }, {}),
      errors: rs.flatMap((r) => r.errors).slice(0, 10),
      clientCpuMs: rs.reduce((a, r) => a + r.cpuUserMs + r.cpuSystemMs, 0),
      daemonCpuMs,
      requestsPerGuest: all.filter((g) => g.ok).map((g) => g.requests),
      tcp,
      captured: rs.flatMap((r) => r.captured ?? []),
    };
  } finally {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }
}

/** Record one storm's numbers under `label`; `base` names the bare baseline's label (ratios). */
function record(ctx: SuiteContext, label: string, r: StormResult, guests: number, workers: number, server: string, base?: string): void {
  const lat = summarize(r.latencies);
  const crawl = summarize(r.crawls);
  const rpg = summarize(r.requestsPerGuest);
  const statusText = Object.entries(r.status)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  const vs = (what: string): { baseline?: string } => (base ? { baseline: `${base}: ${what}` } : {});
  ctx.log(
    `${label}: ${guests} guests, ${r.requests} requests (${rpg.min === rpg.max ? rpg.min : `${rpg.min}-${rpg.max}`} per guest) in ${fmt(r.wallMs)} ms; ` +
      `status ${statusText}; errors ${r.errorCount}; 429s ${r.tooMany}; listen overflows ${r.tcp.ListenOverflows}`,
  );
  for (const e of r.errors) ctx.log(`  error: ${e}`);
  ctx.record({
    name: `${label}: errors`,
    value: r.errorCount,
    unit: 'guests',
    stats: { 'guests ok': r.guestsOk, 'unexpected status': r.unexpected, '429s': r.tooMany },
    target: { op: '<=', value: 0 },
    note: `status counts ${statusText}`,
  });
  ctx.record({
    name: `${label}: wall time`,
    value: r.wallMs / 1000,
    unit: 's',
    ...vs('wall time'),
    stats: { guests, requests: r.requests, 'per guest': rpg.p50, 'parent-timed s': r.parentMs / 1000 },
    ...(base ? { target: { op: '<=' as const, value: 5 } } : {}),
    note: 'first connect to last byte over every guest',
  });
  ctx.record({
    name: `${label}: throughput`,
    value: (r.requests / r.wallMs) * 1000,
    unit: 'req/s',
    ...vs('throughput'),
    note: 'requests / wall time; a new TCP connection per request',
  });
  ctx.record({
    name: `${label}: request latency p50`,
    value: lat.p50,
    unit: 'ms',
    ...vs('request latency p50'),
    stats: { 'p90 ms': lat.p90, 'max ms': lat.max },
    note: 'connect to last byte',
  });
  ctx.record({
    name: `${label}: request latency p99`,
    value: lat.p99,
    unit: 'ms',
    ...vs('request latency p99'),
    stats: { 'requests > 900 ms': r.latencies.filter((x) => x > 900).length },
  });
  ctx.record({
    name: `${label}: guest crawl p50`,
    value: crawl.p50,
    unit: 'ms',
    ...vs('guest crawl p50'),
    stats: { 'min ms': crawl.min, 'p90 ms': crawl.p90 },
  });
  ctx.record({ name: `${label}: guest crawl p99`, value: crawl.p99, unit: 'ms', ...vs('guest crawl p99'), stats: { 'max ms': crawl.max } });
  ctx.record({
    name: `${label}: ${server} CPU per request`,
    value: (r.daemonCpuMs * 1000) / r.requests,
    unit: 'µs',
    ...vs(`bare CPU per request`),
    stats: { 'server cpu % of a core': (r.daemonCpuMs / r.wallMs) * 100, 'clients cpu %': (r.clientCpuMs / r.wallMs) * 100 },
    note: `info: server process CPU (all threads) / requests; 100 % = one core busy; clients = ${workers} worker processes (sum)`,
  });
  ctx.record({
    name: `${label}: listen queue overflows`,
    value: r.tcp.ListenOverflows ?? NaN,
    unit: 'SYNs',
    stats: { ListenDrops: r.tcp.ListenDrops ?? NaN, TCPSynRetrans: r.tcp.TCPSynRetrans ?? NaN },
    note: 'info: system-wide TcpExt deltas; a dropped SYN is retried after 1 s, 3 s, 7 s',
  });
}

const suite: Suite = {
  description:
    "boot storm: 1,000 guests at once doing cloud-init 22.4's EC2 IMDSv2 crawl, each from its own 127.0.x.y, a new connection per request (cold, warm, bare node:http baseline)",
  async run(ctx: SuiteContext) {
    const N = ctx.quick ? 200 : 1000;
    const WORKERS = Math.max(1, Number(process.env.BENCH_STORM_WORKERS ?? 2) || 2);
    const guests: Guest[] = Array.from({ length: N }, (_, n) => {
      const doc = benchInstance(n);
      return { ip: doc.comm.ipv4, instanceId: doc.ec2.instanceId };
    });
    if (new Set(guests.map((g) => g.ip)).size !== N) throw new Error('comm addresses are not distinct');
    if (!guests.every((g) => g.ip.startsWith('127.'))) throw new Error('a comm address is not loopback');

    const root = makeTempDir('metad-bench-storm-');
    const stateDir = join(root, 'state');
    const popMs = await populateStateDir(stateDir, N);
    ctx.log(`registered ${N} instances (${guests[0]!.ip} … ${guests[N - 1]!.ip}) in ${fmt(popMs / 1000)} s`);

    const port = await freePort();
    // Default guest config on purpose: rate limit 100/s burst 200, maxConnectionsPerSource 64.
    const d = await spawnDaemon({
      cli: process.env.BENCH_CLI,
      nodeArgs: profArgs('storm', ctx),
      dir: makeTempDir('metad-bench-storm-d-'),
      stateDir,
      guestPort: port,
      expectInstances: N,
    });
    ctx.defer(() => d.stop());
    const nofile = openFileLimit(d.pid);
    const somaxconn = readSys('/proc/sys/net/core/somaxconn');
    const synBacklog = readSys('/proc/sys/net/ipv4/tcp_max_syn_backlog');
    ctx.log(
      `daemon pid ${d.pid}: default guest config (rateLimit 100/s burst 200, maxConnectionsPerSource 64, maxConnections 4096); ` +
        `open files soft ${nofile.soft} hard ${nofile.hard} (need > ${N} + a few dozen: ${nofile.soft > N + 64 ? 'ok' : 'TOO LOW, raise ulimit -n'}); ` +
        `net.core.somaxconn ${somaxconn}, tcp_max_syn_backlog ${synBacklog}; node's listen backlog 511`,
    );
    if (nofile.soft <= N + 64)
      throw new Error(`daemon open-file limit ${nofile.soft} is too low for ${N} parallel connections: raise ulimit -n`);
    ctx.log(
      `clients: ${WORKERS} worker processes (BENCH_STORM_WORKERS), ${Math.ceil(N / WORKERS)} guests each; ${os.cpus().length} CPUs, nothing pinned`,
    );

    const target = { port, pid: d.pid, workers: WORKERS, checkInstanceId: true };
    const cold = await storm(guests, target);
    await sleep(1000);
    const warm = await storm(guests, { ...target, capture: true });
    const p = d.proc();

    // Baseline: the same storm against a bare node:http server answering the first guest's exact
    // answers by path (same bytes, statuses, the 301 and its Location), same listen backlog (511).
    const routes: Record<string, BareRoute> = {};
    for (const c of warm.captured) {
      routes[c.path] = {
        type: c.type,
        body: Buffer.from(c.body, 'base64'),
        status: c.status,
        ...(c.location ? { headers: { Location: c.location } } : {}),
      };
    }
    if (Object.keys(routes).length < 10) throw new Error(`captured only ${Object.keys(routes).length} answers for the baseline`);
    const bare = await startBare(root, routes);
    await sleep(1000);
    const base = await storm(guests, { port: bare.port, pid: bare.pid, workers: WORKERS, checkInstanceId: false });

    record(ctx, 'bare', base, N, WORKERS, 'bare');
    record(ctx, 'cold', cold, N, WORKERS, 'metad', 'bare');
    record(ctx, 'warm', warm, N, WORKERS, 'metad', 'bare');
    ctx.record({
      name: 'daemon RSS after the storms',
      value: p.rssKiB / 1024,
      unit: 'MiB',
      stats: { 'peak MiB': p.hwmKiB / 1024 },
      note: 'info',
    });
  },
};
export default suite;
