/**
 * One guest-door scenario, measured on both targets of bench/support/guest-setup.ts: a warm-up
 * run each, then `runs` runs of `seconds`, bare and metad interleaved (bare, metad, bare, …) so
 * drift hits both; the recorded value is the median of the runs, with the ratio metad / bare.
 * Also recorded: the server's CPU time per request (less sensitive to other load than req/s;
 * a note says when a server was not CPU-bound) and the p99 latency ratio.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt } from './format.js';
import type { GuestTargets, Target } from './guest-setup.js';
import { median } from './stats.js';
import type { SuiteContext } from './suite.js';
import { errorCount, runWrk, type WrkResult } from './wrk.js';

export interface Scenario {
  key: string;
  label: string;
  /** The URL path wrk is given (a script's request() may send others). */
  path: string;
  /** wrk `-H` headers. */
  headers: string[];
  /** The wrk Lua script (see wrk.ts). */
  lua: string;
  /** Requests per client operation: 2 for the SDK's PUT + GET; the value is then ops/s. */
  requestsPerOp?: number;
  unit?: string;
  /** Recorded next to the numbers. */
  note?: string;
}

export interface Timing {
  runs: number;
  seconds: number;
  warmupSeconds: number;
  connections: number;
}

interface Agg {
  value: number;
  stats: Record<string, number>;
}

function aggregate(rs: WrkResult[], perOp: number): Agg {
  return {
    value: median(rs.map((r) => r.rps)) / perOp,
    stats: {
      'p50 ms': median(rs.map((r) => r.p50Us)) / 1000,
      'p99 ms': median(rs.map((r) => r.p99Us)) / 1000,
      'min req/s': Math.min(...rs.map((r) => r.rps)),
      'max req/s': Math.max(...rs.map((r) => r.rps)),
      'server cpu %': median(rs.map((r) => r.serverCpuPct)),
      'cpu µs/req': median(rs.map((r) => r.cpuUsPerReq)),
      errors: rs.reduce((a, r) => a + errorCount(r), 0),
      runs: rs.length,
    },
  };
}

async function measure(ctx: SuiteContext, t: GuestTargets, s: Scenario, tm: Timing): Promise<{ bare: Agg; metad: Agg }> {
  const luaPath = join(t.dir, `${s.key}.lua`);
  writeFileSync(luaPath, s.lua);
  const run = (target: Target, seconds: number): Promise<WrkResult> =>
    runWrk({
      url: `http://127.0.0.1:${target.port}${s.path}`,
      seconds,
      connections: tm.connections,
      headers: s.headers,
      luaPath,
      cpu: t.loadCpu,
      serverPid: target.pid,
    });
  const targets = [t.bare, t.metad];
  if (tm.warmupSeconds > 0) {
    for (const target of targets) {
      const w = await run(target, tm.warmupSeconds);
      if (errorCount(w) > 0) throw new Error(`${target.key} ${s.key} warm-up: errors ${JSON.stringify(w.errors)}`);
    }
  }
  const runs: Record<Target['key'], WrkResult[]> = { bare: [], metad: [] };
  for (let i = 0; i < tm.runs; i++) {
    for (const target of targets) {
      await sleep(200); // let the previous run's connections close
      const w = await run(target, tm.seconds);
      ctx.log(
        `${s.key} ${target.key} run ${i + 1}: ${fmt(w.rps)} req/s, p50 ${fmt(w.p50Us / 1000)} ms, p99 ${fmt(w.p99Us / 1000)} ms, ` +
          `server CPU ${fmt(w.serverCpuPct)} % (${fmt(w.cpuUsPerReq)} µs/req), errors ${errorCount(w)}`,
      );
      if (errorCount(w) > 0)
        ctx.log(
          `  WARNING ${s.key} ${target.key}: errors ${JSON.stringify(w.errors)} (status = answers >= 400; a 429 would mean the rate limit throttled)`,
        );
      runs[target.key].push(w);
    }
  }
  const perOp = s.requestsPerOp ?? 1;
  return { bare: aggregate(runs.bare, perOp), metad: aggregate(runs.metad, perOp) };
}

const unsaturated = (x: Agg, who: string): string =>
  x.stats['server cpu %']! < 85
    ? `; ${who} not CPU-bound (${fmt(x.stats['server cpu %']!)} % of a core): wrk or another process limited it, compare CPU per request`
    : '';

/** Measure `s` on both targets and record: bare, metad (ratio to bare, target ≥ 0.8), CPU per request, p99 (unless `p99: false`). */
export async function measureScenario(
  ctx: SuiteContext,
  t: GuestTargets,
  s: Scenario,
  tm: Timing,
  opts: { p99: boolean } = { p99: true },
): Promise<void> {
  const { bare: b, metad: m } = await measure(ctx, t, s, tm);
  const unit = s.unit ?? 'req/s';
  const bareName = `bare node:http, ${s.label}`;
  const extra = s.note ? `; ${s.note}` : '';
  ctx.record({
    name: bareName,
    value: b.value,
    unit,
    stats: b.stats,
    note: `median of ${tm.runs}; same bytes; ${t.pinNote}${unsaturated(b, 'bare')}`,
  });
  ctx.record({
    name: `metad, ${s.label}`,
    value: m.value,
    unit,
    stats: m.stats,
    baseline: bareName,
    target: { op: '>=', value: Math.round(0.8 * b.value) },
    note: `median of ${tm.runs}; target = 0.8 x bare; rate limit raised for the bench (1e9/s)${extra}${unsaturated(m, 'metad')}`,
  });
  ctx.record({
    name: `CPU per request bare/metad, ${s.label}`,
    value: b.stats['cpu µs/req']! / m.stats['cpu µs/req']!,
    unit: 'x',
    stats: { 'bare µs/req': b.stats['cpu µs/req']!, 'metad µs/req': m.stats['cpu µs/req']! },
    note: 'info: server CPU (all threads) per request, generator-independent form of the req/s ratio (1 = as cheap as bare)',
  });
  if (!opts.p99) return;
  ctx.record({
    name: `metad/bare p99 latency, ${s.label}`,
    value: m.stats['p99 ms']! / b.stats['p99 ms']!,
    unit: 'x',
    stats: { 'metad p99 ms': m.stats['p99 ms']!, 'bare p99 ms': b.stats['p99 ms']! },
    note: 'info',
  });
}
