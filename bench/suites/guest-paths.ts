/**
 * Per-path ratios of the guest suite's mix: each of the ~20 cloud-init/SDK paths
 * (bench/support/guest-paths.ts) measured alone, keep-alive wrk with 64 connections, metad and a
 * bare `node:http` server with the same bytes in the same run (bench/support/guest-setup.ts).
 * Bounded: one 1 s run per path and target after a 1 s warm-up of each target, so the ratio of
 * one path is noisier than the guest suite's medians; read the spread across paths, not one
 * digit, and prefer the CPU-per-request rows (server CPU time / requests) when the machine is
 * busy. EC2 paths carry one IMDSv2 token (cloud-init's pattern).
 */
import { type Scenario, measureScenario } from '../support/guest-measure.js';
import { guestInstance, mixPaths, TOKEN_HEADER } from '../support/guest-paths.js';
import { startGuestTargets } from '../support/guest-setup.js';
import type { Suite, SuiteContext } from '../support/suite.js';
import { LUA_STATIC } from '../support/wrk.js';

const suite: Suite = {
  description:
    'guest door: each path of the cloud-init/SDK mix alone, as a ratio to a bare node:http server (wrk, 64 keep-alive connections, 1 s each)',
  async run(ctx: SuiteContext) {
    const mix = mixPaths(guestInstance().comm.mac);
    const t = await startGuestTargets(
      ctx,
      'guest-paths',
      mix.map((m) => ({ method: 'GET' as const, path: m.path, token: m.token })),
    );
    ctx.log(`${t.pinNote}; wrk -t1 -c64, 1 run of 1 s per path and target`);
    let first = true;
    for (const [i, m] of mix.entries()) {
      const s: Scenario = {
        key: `path${i}`,
        label: `${m.path} (${m.why})`,
        path: m.path,
        headers: m.token ? [`${TOKEN_HEADER}: ${t.token}`] : [],
        lua: LUA_STATIC,
      };
      await measureScenario(ctx, t, s, { runs: 1, seconds: 1, warmupSeconds: first ? 1 : 0, connections: 64 }, { p99: false });
      first = false;
    }
  },
};
export default suite;
