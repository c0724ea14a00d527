/**
 * Smoke test of the comm-network benchmark's machinery (bench/support/comm-veth.ts), in the
 * namespaces it creates: over the veth the guest namespace reads its own instance through the
 * routed comm network, over loopback the other instance (startVethTargets checks the ids, the
 * tokens and that a bad token gets 401), wrk runs on both paths without an error, and the
 * namespaces are gone afterwards. Counts only, no timing. Needs root, wrk, curl, nft.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { skipOrFail } from '../support/env.js';
import { listNetns } from '../support/netns.js';
import { cleanupAll } from '../../bench/support/cleanup.js';
import { LEAF, startVethTargets, vethMissing } from '../../bench/support/comm-veth.js';
import { TOKEN_HEADER } from '../../bench/support/guest-paths.js';
import type { SuiteContext } from '../../bench/support/suite.js';
import { LUA_STATIC, runWrk } from '../../bench/support/wrk.js';

test('bench comm-veth machinery: each path reads its own instance; wrk runs over the veth and loopback; namespaces removed', async (t) => {
  if (skipOrFail(t, vethMissing())) return;
  const deferred: (() => unknown)[] = [];
  const ctx: SuiteContext = { quick: true, record: () => undefined, log: () => undefined, defer: (fn) => deferred.push(fn) };
  const pinBefore = process.env.BENCH_PIN;
  process.env.BENCH_PIN = '0'; // a test never pins the machine's CPUs
  const namespaces: string[] = [];
  try {
    const targets = await startVethTargets(ctx);
    namespaces.push(targets.veth.ns, targets.loopback.ns);
    assert.notEqual(targets.veth.ns, targets.loopback.ns);
    assert.notEqual(targets.veth.instanceId, targets.loopback.instanceId);
    const luaPath = join(targets.dir, 'static.lua');
    writeFileSync(luaPath, LUA_STATIC);
    for (const p of [targets.loopback, targets.veth]) {
      const w = await runWrk({
        url: `${p.base}${LEAF}`,
        seconds: 1,
        connections: 4,
        headers: [`${TOKEN_HEADER}: ${p.token}`],
        luaPath,
        serverPid: targets.pid,
        netns: p.ns,
      });
      assert.ok(w.requests > 0, `${p.key}: wrk sent nothing`);
      assert.deepEqual(w.errors, { connect: 0, read: 0, write: 0, status: 0, timeout: 0 }, p.key);
    }
  } finally {
    if (pinBefore === undefined) delete process.env.BENCH_PIN;
    else process.env.BENCH_PIN = pinBefore;
    for (const fn of deferred.reverse()) await fn();
    await cleanupAll();
  }
  assert.equal(namespaces.length, 2);
  for (const ns of namespaces) assert.ok(!listNetns().includes(ns), `${ns} left behind`);
});
