/**
 * metad against Debian's real ganeti-metad 3.0.2 (issue 15, "Measured"), same machine, same run,
 * same instance fed to both by Ganeti's own Python code; setup in bench/support/ganeti-targets.ts
 * (one throwaway network namespace, loopback only).
 *
 *   os/parameters.json   `wrk -t1 -c64` keep-alive from the instance's comm address, a warm-up
 *                        run each, then RUNS × SECONDS per server, ganeti-metad and metad
 *                        interleaved; medians, server CPU per request, and the median of the
 *                        run-by-run ratios metad / ganeti-metad (issue 15's target: ≥ 3).
 *   push → served        PUSHES pushes through Ganeti's code (UpdateMetadata → the node daemon's
 *                        ModifyInstanceMetadata → ganeti.metad.Client), each changing a public
 *                        parameter, each followed by guest reads (a new connection each) until the
 *                        new value is served: p50/p99 of push start → served, and of the push call
 *                        alone; for both servers. Includes Ganeti's Python side of each push (the
 *                        same for both).
 *
 * Sizes: 2 s warm-up + 5 × 4 s per server and 1,000 pushes each (--quick: 1 s + 1 × 2 s, 50
 * pushes). Needs root (a network namespace), wrk, curl and Ganeti 3.0 unpacked by
 * .ci/install-deps.sh; elsewhere the suite says why and records nothing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt } from '../support/format.js';
import {
  ganetiBenchMissing,
  PARAMS_PATH,
  pushLatency,
  startGanetiTargets,
  type GanetiTarget,
  type GanetiTargets,
} from '../support/ganeti-targets.js';
import { median, summarize } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';
import { errorCount, LUA_STATIC, runWrk, wrkSummary, type WrkResult } from '../support/wrk.js';

const CONNECTIONS = 64;

export interface GanetiSizes {
  warmupSeconds: number;
  runs: number;
  seconds: number;
  pushes: number;
}

async function throughput(ctx: SuiteContext, t: GanetiTargets, sz: GanetiSizes): Promise<void> {
  const luaPath = join(t.dir, 'static.lua');
  writeFileSync(luaPath, LUA_STATIC);
  const run = (s: GanetiTarget, seconds: number): Promise<WrkResult> =>
    runWrk({
      url: `${s.url}${PARAMS_PATH}`,
      seconds,
      connections: CONNECTIONS,
      headers: [],
      luaPath,
      cpu: t.loadCpu,
      serverPid: s.pid,
      netns: t.ns.name,
    });
  const servers = [t.ganeti, t.metad];
  for (const s of servers) await run(s, sz.warmupSeconds);
  const runs: Record<GanetiTarget['key'], WrkResult[]> = { 'ganeti-metad': [], metad: [] };
  for (let i = 0; i < sz.runs; i++) {
    for (const s of servers) {
      await sleep(200); // let the previous run's connections close
      const w = await run(s, sz.seconds);
      ctx.log(
        `${s.key} run ${i + 1}: ${fmt(w.rps)} req/s, p99 ${fmt(w.p99Us / 1000)} ms, ` +
          `server CPU ${fmt(w.serverCpuPct)} % (${fmt(w.cpuUsPerReq)} µs/req), errors ${errorCount(w)}`,
      );
      runs[s.key].push(w);
    }
  }
  const g = wrkSummary(runs['ganeti-metad']);
  const m = wrkSummary(runs.metad);
  const base = 'ganeti-metad 3.0.2, os/parameters.json';
  const note = `median of ${sz.runs}; wrk -t1 -c${CONNECTIONS} keep-alive; ${t.pinNote}`;
  ctx.record({ name: base, value: g.value, unit: 'req/s', stats: g.stats, note });
  ctx.record({ name: 'metad, os/parameters.json', value: m.value, unit: 'req/s', stats: m.stats, baseline: base, note });
  const pairs = runs.metad.map((w, i) => w.rps / runs['ganeti-metad'][i]!.rps);
  ctx.record({
    name: 'metad/ganeti-metad req/s, run by run',
    value: median(pairs),
    unit: 'x',
    stats: { min: Math.min(...pairs), max: Math.max(...pairs), pairs: pairs.length },
    target: { op: '>=', value: 3 },
    note: 'median over the interleaved pairs (each metad run / the ganeti-metad run just before it); issue 15: keep ≥ 3',
  });
  ctx.record({
    name: 'CPU per request ganeti-metad/metad',
    value: g.stats['cpu µs/req']! / m.stats['cpu µs/req']!,
    unit: 'x',
    stats: { 'ganeti-metad µs/req': g.stats['cpu µs/req']!, 'metad µs/req': m.stats['cpu µs/req']! },
    note: "info: each server process's CPU per request (> 1: metad spends less)",
  });
}

async function feedLatency(ctx: SuiteContext, t: GanetiTargets, sz: GanetiSizes): Promise<void> {
  for (const s of [t.ganeti, t.metad]) {
    const l = await pushLatency(t, s, sz.pushes);
    const served = summarize(l.servedMs);
    const push = summarize(l.pushMs);
    ctx.log(`${s.key}: ${sz.pushes} pushes, served p50 ${fmt(served.p50)} ms p99 ${fmt(served.p99)} ms`);
    ctx.record({
      name: `${s.key}: push → served`,
      value: served.p50,
      unit: 'ms p50',
      stats: {
        'p99 ms': served.p99,
        'max ms': served.max,
        'push call p50 ms': push.p50,
        'push call p99 ms': push.p99,
        'reads max': Math.max(...l.reads),
        pushes: served.n,
      },
      note: "Ganeti's UpdateMetadata → ModifyInstanceMetadata → metad.Client, then guest reads (new connection each) until the new value",
    });
  }
}

/** The whole suite with explicit sizes (the test runs it tiny). */
export async function runGanetiBench(ctx: SuiteContext, sz: GanetiSizes): Promise<GanetiTargets | undefined> {
  const why = ganetiBenchMissing();
  if (why !== undefined) {
    ctx.log(`ganeti skipped: ${why}`);
    return undefined;
  }
  const t = await startGanetiTargets(ctx);
  ctx.log(
    `${t.pinNote}; wrk -t1 -c${CONNECTIONS}, warm-up ${sz.warmupSeconds} s, ${sz.runs} x ${sz.seconds} s per server, interleaved; ${sz.pushes} pushes each`,
  );
  await throughput(ctx, t, sz);
  await feedLatency(ctx, t, sz);
  return t;
}

const suite: Suite = {
  description:
    "os/parameters.json req/s and feed latency (push → served), metad vs Debian's ganeti-metad 3.0.2, both fed by Ganeti's own code (same run)",
  async run(ctx: SuiteContext) {
    await runGanetiBench(
      ctx,
      ctx.quick ? { warmupSeconds: 1, runs: 1, seconds: 2, pushes: 50 } : { warmupSeconds: 2, runs: 5, seconds: 4, pushes: 1000 },
    );
  },
};
export default suite;
