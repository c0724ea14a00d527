/**
 * Guest door throughput through the comm network: wrk in a guest network namespace, over a veth
 * into the routed comm network (tap, nftables rules, /32 route, TTL 1 on replies), against the
 * real daemon in a "hypervisor" namespace; and in the same run wrk over loopback inside that
 * namespace against the same daemon process (a second listener and instance). The value is the
 * ratio veth / loopback: what the comm network's path costs the guest door. Setup and namespaces:
 * bench/support/comm-veth.ts; nothing runs in the machine's own namespace.
 *
 * Scenarios (EC2 instance-id with that instance's IMDSv2 token, 64 connections, one wrk thread):
 *   keep-alive        cloud-init's pattern: one token, connections reused
 *   new connection    `Connection: close`, a TCP handshake per request (the AWS SDK's pattern)
 * Per scenario: a warm-up run each, then 5 × 4 s per path (--quick: 1 × 2 s), loopback and veth
 * interleaved; medians, and the median of the run-by-run ratios (steadier on a shared machine).
 * Needs root (namespaces), wrk, curl and nft; elsewhere the suite says why and records nothing.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { LEAF, startVethTargets, vethMissing, type DoorPath, type VethTargets } from '../support/comm-veth.js';
import { fmt } from '../support/format.js';
import { TOKEN_HEADER } from '../support/guest-paths.js';
import { median } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';
import { errorCount, LUA_STATIC, runWrk, wrkSummary, type WrkResult } from '../support/wrk.js';

const CONNECTIONS = 64;

interface Scenario {
  key: string;
  label: string;
  headers: string[];
}

async function measure(ctx: SuiteContext, t: VethTargets, s: Scenario, tm: { runs: number; seconds: number; warmup: number }) {
  const luaPath = join(t.dir, 'static.lua');
  writeFileSync(luaPath, LUA_STATIC);
  const run = (p: DoorPath, seconds: number): Promise<WrkResult> =>
    runWrk({
      url: `${p.base}${LEAF}`,
      seconds,
      connections: CONNECTIONS,
      headers: [`${TOKEN_HEADER}: ${p.token}`, ...s.headers],
      luaPath,
      cpu: t.loadCpu,
      serverPid: t.pid,
      netns: p.ns,
    });
  const paths = [t.loopback, t.veth];
  for (const p of paths) await run(p, tm.warmup);
  const runs: Record<DoorPath['key'], WrkResult[]> = { loopback: [], veth: [] };
  for (let i = 0; i < tm.runs; i++) {
    for (const p of paths) {
      await sleep(200); // let the previous run's connections close
      const w = await run(p, tm.seconds);
      ctx.log(
        `${s.key} ${p.key} run ${i + 1}: ${fmt(w.rps)} req/s, p99 ${fmt(w.p99Us / 1000)} ms, ` +
          `server CPU ${fmt(w.serverCpuPct)} % (${fmt(w.cpuUsPerReq)} µs/req), errors ${errorCount(w)}`,
      );
      runs[p.key].push(w);
    }
  }
  // Each veth run against the loopback run just before it: on a shared machine the load drifts
  // between runs far more than within a pair.
  const pairs = runs.veth.map((v, i) => ({ rps: v.rps / runs.loopback[i]!.rps, cpu: runs.loopback[i]!.cpuUsPerReq / v.cpuUsPerReq }));
  return { loopback: wrkSummary(runs.loopback), veth: wrkSummary(runs.veth), pairs };
}

const suite: Suite = {
  description:
    'guest door through the routed comm network: wrk from a guest namespace over a veth vs loopback, same daemon, same run (ratio veth/loopback)',
  async run(ctx: SuiteContext) {
    const why = vethMissing();
    if (why !== undefined) {
      ctx.log(`comm-veth skipped: ${why}`);
      return;
    }
    const tm = { runs: ctx.quick ? 1 : 5, seconds: ctx.quick ? 2 : 4, warmup: ctx.quick ? 1 : 2 };
    const t = await startVethTargets(ctx);
    ctx.log(`${t.pinNote}; wrk -t1 -c${CONNECTIONS}, warm-up ${tm.warmup} s, ${tm.runs} x ${tm.seconds} s per path, interleaved`);
    const scenarios: Scenario[] = [
      { key: 'keep-alive', label: 'EC2 instance-id, one token, keep-alive', headers: [] },
      { key: 'new-conn', label: 'EC2 instance-id, one token, new connection each', headers: ['Connection: close'] },
    ];
    for (const s of scenarios) {
      const { loopback: l, veth: v, pairs } = await measure(ctx, t, s, tm);
      const base = `loopback in the hypervisor namespace, ${s.label}`;
      ctx.record({ name: base, value: l.value, unit: 'req/s', stats: l.stats, note: `median of ${tm.runs}; ${t.pinNote}` });
      ctx.record({
        name: `veth from a guest namespace, ${s.label}`,
        value: v.value,
        unit: 'req/s',
        stats: v.stats,
        baseline: base,
        note: `median of ${tm.runs}; through the tap, metad's nftables table and /32 route (TTL 1 on replies)`,
      });
      ctx.record({
        name: `veth/loopback req/s, run by run, ${s.label}`,
        value: median(pairs.map((p) => p.rps)),
        unit: 'x',
        stats: { min: Math.min(...pairs.map((p) => p.rps)), max: Math.max(...pairs.map((p) => p.rps)), pairs: pairs.length },
        note: 'median over the interleaved pairs (each veth run / the loopback run just before it)',
      });
      ctx.record({
        name: `CPU per request loopback/veth, run by run, ${s.label}`,
        value: median(pairs.map((p) => p.cpu)),
        unit: 'x',
        stats: { min: Math.min(...pairs.map((p) => p.cpu)), max: Math.max(...pairs.map((p) => p.cpu)) },
        note: 'median over the pairs',
      });
      ctx.record({
        name: `CPU per request loopback/veth, ${s.label}`,
        value: l.stats['cpu µs/req']! / v.stats['cpu µs/req']!,
        unit: 'x',
        stats: { 'loopback µs/req': l.stats['cpu µs/req']!, 'veth µs/req': v.stats['cpu µs/req']! },
        note: "info: the daemon process's CPU per request (1 = the veth path costs the daemon nothing extra)",
      });
    }
  },
};
export default suite;
