/**
 * Guest door throughput: keep-alive wrk (one thread, 64 connections) against the real daemon and,
 * in the same run, a bare `node:http` server answering the daemon's exact bytes (setup, pinning
 * and the bench config in bench/support/guest-setup.ts; the interleaved runs in guest-measure.ts).
 * One registered instance, comm 127.0.0.1; all load is loopback.
 *
 * Scenarios:
 *   ec2       EC2 leaf `GET /latest/meta-data/instance-id`, one IMDSv2 token on every request:
 *             cloud-init's pattern (one token per boot, reused for its whole crawl). The best case.
 *   os        `GET /openstack/latest/meta_data.json` (the daemon splices a fresh random_seed per request)
 *   sdk       the AWS SDK pattern: `PUT /latest/api/token`, then the GET with that fresh token, for
 *             every call. @aws-sdk/ec2-metadata-service 3.x (`MetadataService.request`) fetches a
 *             new token per request, and @smithy/credential-provider-imds one per credential
 *             refresh; neither reuses a token across calls. The value is SDK calls/s (2 requests each).
 *   sdk-conn  the same, each request on a new connection (`Connection: close`): the SDK builds a new
 *             NodeHttpHandler, hence a new http.Agent and TCP connection, for every PUT and every
 *             GET (its idle sockets then linger until the server's keep-alive timeout; wrk's do not).
 *   mix       ~20 paths that cloud-init and the SDKs read, round robin (bench/support/guest-paths.ts):
 *             EC2 leaves and listings with/without the trailing slash (301), user data, identity
 *             document, IAM credentials, OpenStack meta_data/network_data/user_data, Ganeti.
 * Per-path ratios of the mix: the `guest-paths` suite.
 *
 * Per scenario: a warm-up run, then RUNS × SECONDS, bare and metad interleaved, median; ratio
 * metad / bare (target ≥ 0.8), server CPU per request, p99 ratio. BENCH_CPU_PROF=DIR profiles the
 * daemon; BENCH_CLI=PATH runs another build's daemon (A/B).
 */
import { type Scenario, measureScenario } from '../support/guest-measure.js';
import { guestInstance, mixPaths, SDK_TTL, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER } from '../support/guest-paths.js';
import { startGuestTargets } from '../support/guest-setup.js';
import type { Suite, SuiteContext } from '../support/suite.js';
import { LUA_STATIC, luaCycle, luaTokenPerGet, type WrkRequest } from '../support/wrk.js';

const CONNECTIONS = 64;
const LEAF = '/latest/meta-data/instance-id';

function sdkScenario(key: string, label: string, token: string, close: boolean): Scenario {
  const conn: Record<string, string> = close ? { Connection: 'close' } : {};
  const put: WrkRequest = { method: 'PUT', path: TOKEN_PATH, headers: { [TTL_HEADER]: SDK_TTL, ...conn } };
  const get: WrkRequest = { method: 'GET', path: LEAF, headers: conn };
  return {
    key,
    label,
    path: LEAF,
    headers: [],
    lua: luaTokenPerGet(put, get, TTL_HEADER, TOKEN_HEADER, token),
    requestsPerOp: 2,
    unit: 'calls/s',
    note: 'a call = token PUT + GET with that token',
  };
}

const suite: Suite = {
  description:
    'guest door req/s and latency (wrk, 64 connections) vs a bare node:http server with the same bytes: one token reused, the AWS SDK token-per-GET, a 21-path mix',
  async run(ctx: SuiteContext) {
    const timing = { runs: ctx.quick ? 1 : 3, seconds: ctx.quick ? 2 : 5, warmupSeconds: ctx.quick ? 1 : 2, connections: CONNECTIONS };
    const mix = mixPaths(guestInstance().comm.mac);
    const t = await startGuestTargets(ctx, 'guest', [
      { method: 'GET', path: LEAF, token: true },
      { method: 'GET', path: '/openstack/latest/meta_data.json', token: false },
      ...mix.map((m) => ({ method: 'GET' as const, path: m.path, token: m.token })),
    ]);
    const tokenHeader = `${TOKEN_HEADER}: ${t.token}`;
    const scenarios: Scenario[] = [
      { key: 'ec2', label: 'EC2 instance-id, one IMDSv2 token reused', path: LEAF, headers: [tokenHeader], lua: LUA_STATIC },
      { key: 'os', label: 'OpenStack meta_data.json', path: '/openstack/latest/meta_data.json', headers: [], lua: LUA_STATIC },
      sdkScenario('sdk', 'AWS SDK: token PUT + GET instance-id, keep-alive', t.token, false),
      sdkScenario('sdk-conn', 'AWS SDK: token PUT + GET instance-id, new connection each', t.token, true),
      {
        key: 'mix',
        label: `mix of ${mix.length} cloud-init/SDK paths`,
        path: '/',
        headers: [],
        lua: luaCycle(mix.map((m): WrkRequest => ({ method: 'GET', path: m.path, headers: m.token ? { [TOKEN_HEADER]: t.token } : {} }))),
        note: 'paths round robin, one token reused (cloud-init)',
      },
    ];
    ctx.log(
      `${t.pinNote}; wrk -t1 -c${CONNECTIONS}, warm-up ${timing.warmupSeconds} s, ${timing.runs} x ${timing.seconds} s per target, interleaved`,
    );
    for (const s of scenarios) await measureScenario(ctx, t, s, timing);
  },
};
export default suite;
