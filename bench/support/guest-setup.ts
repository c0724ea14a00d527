/**
 * Both sides of a guest-door benchmark, started the same way for every guest suite: the real
 * daemon (`metad serve`, one registered instance, comm 127.0.0.1) and a bare `node:http` server
 * (bare-server.ts, its own process) answering the daemon's exact answers by path: same status,
 * content type, body, Location and token-TTL headers. All traffic is on 127.0.0.1.
 *
 * Bench config (logged): the guest rate limit is raised (1e9/s, burst 1e9) so the token bucket
 * never answers 429, and `maxConnectionsPerSource` from 64 to 256 because wrk's 64 connections
 * from 127.0.0.1 would sit exactly at the default cap.
 *
 * Pinning: with ≥ 2 CPUs and `taskset`, both servers (every thread) go to CPU 0 and wrk to CPU 1,
 * so the server's CPU share is readable. BENCH_PIN=0 runs unpinned.
 */
import http from 'node:http';
import os from 'node:os';
import { startBare, type BareRoute } from './bare.js';
import { makeTempDir } from './cleanup.js';
import { freePort, spawnDaemon } from './daemon.js';
import { guestInstance, SDK_TTL, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER } from './guest-paths.js';
import { profArgs } from './proc.js';
import { have, pin } from './wrk.js';
import type { SuiteContext } from './suite.js';

export interface Target {
  key: 'bare' | 'metad';
  port: number;
  pid: number;
}

export interface GuestTargets {
  /** Temp dir for scripts and the bare server's spec. */
  dir: string;
  bare: Target;
  metad: Target;
  /** A valid IMDSv2 token for the instance (TTL 21600 s). */
  token: string;
  /** Pin wrk here when the servers were pinned. */
  loadCpu: number | undefined;
  pinNote: string;
}

export interface Probe {
  method: 'GET' | 'PUT';
  path: string;
  token: boolean;
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on a fresh connection (Connection: close), so nothing lingers against the per-source cap. */
function oneShot(port: number, method: string, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path, agent: false, headers: { Connection: 'close', ...headers } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

/** The daemon's answer as a bare route: the headers a client could tell apart are copied. */
function asRoute(a: Answer): BareRoute {
  const headers: Record<string, string> = {};
  const location = a.headers.location;
  const ttl = a.headers[TTL_HEADER.toLowerCase()];
  if (location !== undefined) headers.Location = location;
  if (typeof ttl === 'string') headers[TTL_HEADER] = ttl;
  return { type: a.headers['content-type'] ?? '', body: a.body, status: a.status, headers };
}

/** Start the daemon and the bare server; every probe must answer 200 or 301 (the bare server then replays it). */
export async function startGuestTargets(ctx: SuiteContext, suiteName: string, probes: readonly Probe[]): Promise<GuestTargets> {
  if (!have('wrk'))
    throw new Error(
      `wrk not found: install it with \`apt-get install -y wrk\` (it is in .ci/install-deps.sh), then rerun \`npm run bench -- ${suiteName}\``,
    );
  const dir = makeTempDir(`metad-bench-${suiteName}-`);
  const rate = { ratePerSec: 1e9, burst: 1e9 };
  const port = await freePort();
  const d = await spawnDaemon({
    cli: process.env.BENCH_CLI,
    nodeArgs: profArgs(suiteName, ctx),
    guestPort: port,
    config: { guest: { rateLimit: rate, maxConnectionsPerSource: 256 } },
  });
  ctx.defer(() => d.stop());
  const doc = guestInstance();
  const reg = await d.admin.register(doc);
  if (reg.status !== 201) throw new Error(`register ${doc.name}: HTTP ${reg.status}, expected 201`);
  ctx.log(
    `bench config: guest.rateLimit raised to ${rate.ratePerSec}/s burst ${rate.burst} (default 100/s burst 200) so the benchmark is not throttled; guest.maxConnectionsPerSource 256 (default 64)`,
  );

  const tok = await oneShot(port, 'PUT', TOKEN_PATH, { [TTL_HEADER]: SDK_TTL });
  if (tok.status !== 200 || tok.body.length === 0) throw new Error(`token PUT: HTTP ${tok.status}`);
  const token = tok.body.toString('utf8');
  const routes: Record<string, BareRoute> = { [TOKEN_PATH]: asRoute(tok) };
  for (const p of probes) {
    if (p.path === TOKEN_PATH) continue;
    const a = await oneShot(port, p.method, p.path, p.token ? { [TOKEN_HEADER]: token } : {});
    if (a.status !== 200 && a.status !== 301)
      throw new Error(`${p.method} ${p.path}: HTTP ${a.status} ${a.body.toString('utf8').slice(0, 200)}`);
    routes[p.path] = asRoute(a);
  }
  // A wrong token must be refused: the token check really runs on every request wrk sends.
  const bad = await oneShot(port, 'GET', '/latest/meta-data/instance-id', { [TOKEN_HEADER]: 'A'.repeat(32) });
  if (bad.status !== 401) throw new Error(`a bad token was answered ${bad.status}, expected 401: the token check did not run`);

  const bare = await startBare(dir, routes);
  for (const [path, r] of Object.entries(routes)) {
    const a = await oneShot(bare.port, 'GET', path);
    if (a.status !== r.status || !a.body.equals(r.body)) throw new Error(`bare server GET ${path}: HTTP ${a.status}`);
  }

  const cpus = os.cpus().length;
  let pinned = false;
  if (process.env.BENCH_PIN !== '0' && cpus >= 2 && have('taskset')) {
    pinned = pin(d.pid, 0) && pin(bare.pid, 0);
    if (!pinned) ctx.log('taskset could not pin the servers; running unpinned');
  }
  const pinNote = pinned
    ? 'servers pinned to CPU 0 (all threads), wrk to CPU 1'
    : `unpinned (${cpus} CPUs${process.env.BENCH_PIN === '0' ? ', BENCH_PIN=0' : ''})`;
  return {
    dir,
    bare: { key: 'bare', ...bare },
    metad: { key: 'metad', port, pid: d.pid },
    token,
    loadCpu: pinned ? 1 : undefined,
    pinNote,
  };
}
