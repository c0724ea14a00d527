/**
 * Smoke test of the metrics-cost benchmark (bench/suites/metrics-cost.ts) at a tiny size: the
 * copy of dist/ without the guest door's counting builds and starts, counts nothing while the
 * real build counts every request (the suite refuses to measure otherwise), wrk runs against
 * both without an error, and every ratio is recorded. Counts only, no timing. Needs wrk.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hasCommand, skipOrFail } from '../support/env.js';
import { cleanupAll } from '../../bench/support/cleanup.js';
import type { BenchResult, SuiteContext } from '../../bench/support/suite.js';
import { runMetricsCost } from '../../bench/suites/metrics-cost.js';

test('bench metrics-cost: the build without counting counts nothing, both answer under wrk, the ratios are recorded', async (t) => {
  if (skipOrFail(t, hasCommand('wrk') ? undefined : 'wrk is not installed (apt-get install wrk)')) return;
  const deferred: (() => unknown)[] = [];
  const recorded: Omit<BenchResult, 'suite' | 'ratio'>[] = [];
  const ctx: SuiteContext = { quick: true, record: (r) => recorded.push(r), log: () => undefined, defer: (fn) => deferred.push(fn) };
  const pinBefore = process.env.BENCH_PIN;
  process.env.BENCH_PIN = '0'; // a test never pins the machine's CPUs
  try {
    await runMetricsCost(ctx, { runs: 1, seconds: 1, warmupSeconds: 1 });
  } finally {
    if (pinBefore === undefined) delete process.env.BENCH_PIN;
    else process.env.BENCH_PIN = pinBefore;
    for (const fn of deferred.reverse()) await fn();
    await cleanupAll();
  }
  const ratios = recorded.filter((r) => r.name.endsWith('counting/not counting req/s, run by run'));
  assert.equal(ratios.length, 2, JSON.stringify(recorded.map((r) => r.name)));
  for (const r of ratios) assert.ok(r.value > 0 && r.stats?.pairs === 1, r.name);
  for (const r of recorded.filter((x) => x.unit === 'req/s')) assert.ok(r.value > 0, r.name);
});
