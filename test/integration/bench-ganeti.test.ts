/**
 * Smoke test of the Ganeti benchmark (bench/suites/ganeti.ts), the whole suite at a tiny size:
 * Debian's ganeti-metad and metad in the namespace it creates, both fed by Ganeti's own code
 * (the suite refuses to measure unless both answer os/parameters.json with the same bytes), wrk
 * against each without an error, every push of the latency run served, everything recorded, and
 * afterwards no namespace, no ganeti-metad and no metad left, no packet off loopback. Counts
 * only, no timing. Needs root, wrk, curl and Ganeti 3.0 unpacked (.ci/install-deps.sh).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { skipOrFail } from '../support/env.js';
import { listNetns } from '../support/netns.js';
import { pidAlive } from '../support/process.js';
import { cleanupAll } from '../../bench/support/cleanup.js';
import { ganetiBenchMissing, type GanetiTargets } from '../../bench/support/ganeti-targets.js';
import type { BenchResult, SuiteContext } from '../../bench/support/suite.js';
import { runGanetiBench } from '../../bench/suites/ganeti.js';

test('bench ganeti: both daemons fed by Ganeti answer the same bytes, wrk and the pushes run clean, all removed after', async (t) => {
  if (skipOrFail(t, ganetiBenchMissing())) return;
  const deferred: (() => unknown)[] = [];
  const recorded: Omit<BenchResult, 'suite' | 'ratio'>[] = [];
  const ctx: SuiteContext = { quick: true, record: (r) => recorded.push(r), log: () => undefined, defer: (fn) => deferred.push(fn) };
  const pinBefore = process.env.BENCH_PIN;
  process.env.BENCH_PIN = '0'; // a test never pins the machine's CPUs
  let targets: GanetiTargets | undefined;
  try {
    targets = await runGanetiBench(ctx, { warmupSeconds: 1, runs: 1, seconds: 1, pushes: 5 });
    assert.ok(targets, 'the suite ran');
    assert.match(targets.paramsBody, /"b-serial":\["v-start","public"\]/);
    assert.equal(await targets.ns.tripCount(), 0, `a packet left loopback: ${(await targets.ns.tripDestinations()).join(', ')}`);
  } finally {
    if (pinBefore === undefined) delete process.env.BENCH_PIN;
    else process.env.BENCH_PIN = pinBefore;
    for (const fn of deferred.reverse()) await fn();
    await cleanupAll();
  }

  const byName = new Map(recorded.map((r) => [r.name, r]));
  for (const name of ['ganeti-metad 3.0.2, os/parameters.json', 'metad, os/parameters.json']) {
    const r = byName.get(name);
    assert.ok(r && r.value > 0, `${name}: ${JSON.stringify(r)}`);
    assert.equal(r.stats?.errors, 0, name);
  }
  assert.equal(byName.get('metad, os/parameters.json')?.baseline, 'ganeti-metad 3.0.2, os/parameters.json');
  assert.ok(byName.has('metad/ganeti-metad req/s, run by run'));
  for (const key of ['ganeti-metad', 'metad']) {
    const stats = byName.get(`${key}: push → served`)?.stats;
    assert.ok(stats, key);
    assert.equal(stats.pushes, 5, key);
    assert.ok((stats['reads max'] ?? 0) >= 1, key);
  }

  assert.ok(!listNetns().includes(targets.ns.name), `namespace ${targets.ns.name} removed`);
  assert.ok(!pidAlive(targets.ganeti.pid), 'ganeti-metad stopped');
  assert.ok(!pidAlive(targets.metad.pid), 'metad stopped');
});
