/**
 * Smoke test of the guest benchmarks' machinery (bench/support/), against the real daemon process
 * and the bare baseline server, on loopback: every path of the cloud-init/SDK mix is answered
 * 200 or 301 and replayed byte for byte by the bare server (startGuestTargets checks both), the
 * mix script sends them without an error, and the AWS SDK script really swaps in each freshly
 * PUT token (started with an invalid one, only the first GET of each connection may fail).
 * Counts only, no timing. Needs wrk (.ci/install-deps.sh).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hasCommand, skipOrFail } from '../support/env.js';
import { cleanupAll } from '../../bench/support/cleanup.js';
import { guestInstance, mixPaths, SDK_TTL, TOKEN_HEADER, TOKEN_PATH, TTL_HEADER } from '../../bench/support/guest-paths.js';
import { startGuestTargets } from '../../bench/support/guest-setup.js';
import type { SuiteContext } from '../../bench/support/suite.js';
import { luaCycle, luaTokenPerGet, runWrk, type WrkRequest } from '../../bench/support/wrk.js';

test('bench guest machinery: the mix answers on both targets; the SDK script uses each fresh token', async (t) => {
  if (skipOrFail(t, hasCommand('wrk') ? undefined : 'wrk is not installed (apt-get install wrk)')) return;
  const deferred: (() => unknown)[] = [];
  const ctx: SuiteContext = { quick: true, record: () => undefined, log: () => undefined, defer: (fn) => deferred.push(fn) };
  const pinBefore = process.env.BENCH_PIN;
  process.env.BENCH_PIN = '0'; // a test never pins the machine's CPUs
  try {
    const mix = mixPaths(guestInstance().comm.mac);
    assert.ok(mix.length >= 20);
    const targets = await startGuestTargets(
      ctx,
      'bench-smoke',
      mix.map((m) => ({ method: 'GET' as const, path: m.path, token: m.token })),
    );
    const connections = 4;
    const wrk = async (name: string, lua: string) => {
      const luaPath = join(targets.dir, `${name}.lua`);
      writeFileSync(luaPath, lua);
      return runWrk({
        url: `http://127.0.0.1:${targets.metad.port}/`,
        seconds: 1,
        connections,
        headers: [],
        luaPath,
        serverPid: targets.metad.pid,
      });
    };

    const reqs = mix.map((m): WrkRequest => ({ method: 'GET', path: m.path, headers: m.token ? { [TOKEN_HEADER]: targets.token } : {} }));
    const m = await wrk('mix', luaCycle(reqs));
    assert.ok(m.requests >= mix.length, `the mix ran (${m.requests} requests)`);
    assert.deepEqual(m.errors, { connect: 0, read: 0, write: 0, status: 0, timeout: 0 });

    const put: WrkRequest = { method: 'PUT', path: TOKEN_PATH, headers: { [TTL_HEADER]: SDK_TTL } };
    const get: WrkRequest = { method: 'GET', path: '/latest/meta-data/instance-id', headers: {} };
    const s = await wrk('sdk', luaTokenPerGet(put, get, TTL_HEADER, TOKEN_HEADER, 'A'.repeat(32)));
    assert.ok(s.requests >= 40, `the SDK script ran (${s.requests} requests)`);
    // Had the script kept its first (invalid) token, every GET, half the requests, would be 401.
    assert.ok(s.errors.status <= connections, `${s.errors.status} refused GETs of ${s.requests / 2}`);
  } finally {
    if (pinBefore === undefined) delete process.env.BENCH_PIN;
    else process.env.BENCH_PIN = pinBefore;
    for (const fn of deferred.reverse()) await fn();
    await cleanupAll();
  }
});
