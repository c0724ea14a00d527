/**
 * `wrk` as the load generator of the guest suites: one thread, N connections, a Lua script whose
 * `done()` hook prints exact latency percentiles as JSON (appended to every script here), plus the
 * server process's CPU time over the run (from /proc). Pinning with `taskset` when asked.
 * Lua scripts for dynamic request sequences (a path mix, the AWS SDK's token-then-GET) are built
 * by `luaCycle` and `luaTokenPerGet`; strings go in as JSON literals (ASCII only, valid Lua).
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpuMs } from './proc.js';
import { trackChild } from './cleanup.js';
import { median } from './stats.js';

export interface WrkResult {
  requests: number;
  durationUs: number;
  bytes: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  rps: number;
  /** Server process CPU (all threads) over the run: % of one core, and µs per request. */
  serverCpuPct: number;
  cpuUsPerReq: number;
}

/** Lua hook: wrk calls done() once, with latency percentiles over every thread, in µs. */
const DONE_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%.0f,"durationUs":%.0f,"bytes":%.0f,"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},"p50Us":%.1f,"p90Us":%.1f,"p99Us":%.1f,"maxUs":%.1f,"meanUs":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
`;

export interface WrkRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

const luaStr = (s: string): string => {
  if (!/^[\x20-\x7e]*$/.test(s)) throw new Error('wrk Lua: only printable ASCII in request strings');
  return JSON.stringify(s);
};
const luaHeaders = (h: Record<string, string>): string =>
  `{${Object.entries(h)
    .map(([k, v]) => `[${luaStr(k)}]=${luaStr(v)}`)
    .join(', ')}}`;
const luaFormat = (r: WrkRequest): string => `wrk.format(${luaStr(r.method)}, ${luaStr(r.path)}, ${luaHeaders(r.headers)})`;

/** A script sending `reqs` in order, round robin over every connection of the thread. */
export function luaCycle(reqs: readonly WrkRequest[]): string {
  return `
local reqs = {}
local i = 0
init = function(args)
${reqs.map((r) => `  table.insert(reqs, ${luaFormat(r)})`).join('\n')}
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
${DONE_LUA}`;
}

/**
 * The AWS SDK pattern: every other request is `put` (the token PUT); the rest GET `get.path` with
 * the token of the newest answer that carried `ttlHeader` (so every GET presents a token minted
 * moments before). wrk's request()/response() hooks are per thread, not per connection: over 64
 * connections the PUTs and GETs interleave, one PUT per GET on the whole.
 */
export function luaTokenPerGet(put: WrkRequest, get: WrkRequest, ttlHeader: string, tokenHeader: string, firstToken: string): string {
  return `
local put = nil
local token = ${luaStr(firstToken)}
local n = 0
init = function(args)
  put = ${luaFormat(put)}
end
request = function()
  n = n + 1
  if n % 2 == 1 then return put end
  local h = ${luaHeaders(get.headers)}
  h[${luaStr(tokenHeader)}] = token
  return wrk.format(${luaStr(get.method)}, ${luaStr(get.path)}, h)
end
response = function(status, headers, body)
  if status ~= 200 then return end
  for k, v in pairs(headers) do
    if string.lower(k) == ${luaStr(ttlHeader.toLowerCase())} then token = body end
  end
end
${DONE_LUA}`;
}

/** A script for a fixed request: wrk sends its URL with `-H` headers; only the done() hook. */
export const LUA_STATIC = DONE_LUA;

export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pin every thread of `pid` to `cpu`; false when taskset refuses (containers may). */
export function pin(pid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function errorCount(r: WrkResult): number {
  const e = r.errors;
  return e.connect + e.read + e.write + e.status + e.timeout;
}

/** Several wrk runs of one target as a bench value: median req/s, median latencies and CPU, all errors. */
export function wrkSummary(rs: WrkResult[]): { value: number; stats: Record<string, number> } {
  return {
    value: median(rs.map((r) => r.rps)),
    stats: {
      'p50 ms': median(rs.map((r) => r.p50Us)) / 1000,
      'p99 ms': median(rs.map((r) => r.p99Us)) / 1000,
      'server cpu %': median(rs.map((r) => r.serverCpuPct)),
      'cpu µs/req': median(rs.map((r) => r.cpuUsPerReq)),
      errors: rs.reduce((a, r) => a + errorCount(r), 0),
      runs: rs.length,
    },
  };
}

export interface WrkRun {
  url: string;
  seconds: number;
  connections: number;
  /** `-H` headers (a script's own requests carry their own headers). */
  headers: string[];
  luaPath: string;
  /** Pin wrk to this CPU (taskset). */
  cpu?: number | undefined;
  serverPid: number;
  /** Run wrk inside this network namespace (`ip netns exec`; bench/support/comm-veth.ts). */
  netns?: string | undefined;
}

export async function runWrk(o: WrkRun): Promise<WrkResult> {
  const wrkArgs = [
    '-t1',
    `-c${o.connections}`,
    `-d${o.seconds}s`,
    '--timeout',
    '5s',
    '-s',
    o.luaPath,
    ...o.headers.flatMap((h) => ['-H', h]),
    o.url,
  ];
  const pinned = o.cpu === undefined ? ['wrk', ...wrkArgs] : ['taskset', '-c', String(o.cpu), 'wrk', ...wrkArgs];
  const argv = o.netns === undefined ? pinned : ['ip', 'netns', 'exec', o.netns, ...pinned];
  const cpu0 = cpuMs(o.serverPid);
  const child = trackChild(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const killer = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 15) * 1000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(killer);
  const serverCpu = cpuMs(o.serverPid) - cpu0;
  const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (code !== 0 || !line) throw new Error(`wrk exited ${code}:\n${out}`);
  const r = JSON.parse(line.slice('WRK_JSON '.length)) as Omit<WrkResult, 'rps' | 'serverCpuPct' | 'cpuUsPerReq'>;
  return {
    ...r,
    rps: r.requests / (r.durationUs / 1e6),
    serverCpuPct: (serverCpu / (r.durationUs / 1000)) * 100,
    cpuUsPerReq: (serverCpu * 1000) / r.requests,
  };
}
