/**
 * Smoke test of the package benchmark (bench/suites/package.ts) at a tiny size: the package is
 * built, both copies deliver every byte (the suite throws otherwise), and each number is recorded
 * with its baseline. Counts only, no timing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BenchResult, SuiteContext } from '../../bench/support/suite.js';
import { runPackage } from '../../bench/suites/package.js';

test('bench package: the plain copy and the checked fetch deliver the whole package; memory and ratios recorded', async () => {
  const deferred: (() => unknown)[] = [];
  const recorded: Omit<BenchResult, 'suite' | 'ratio'>[] = [];
  const ctx: SuiteContext = { quick: true, record: (r) => recorded.push(r), log: () => undefined, defer: (fn) => deferred.push(fn) };
  try {
    await runPackage(ctx, { mib: 2, memoryMib: 10, runs: 1 });
  } finally {
    for (const fn of deferred.reverse()) await fn();
  }
  const names = recorded.map((r) => r.name);
  assert.deepEqual(names, [
    'plain copy (node:http → sink)',
    'copy + gunzip (node:http, node:zlib → sinks)',
    'through metad vs copy + gunzip',
    'through metad (got, cap, archive check → sink)',
    'RSS growth streaming a 2 MiB package',
    'RSS growth streaming a 10 MiB package',
  ]);
  assert.equal(recorded[1]?.baseline, names[0]);
  assert.equal(recorded[2]?.baseline, names[1]);
  assert.equal(recorded[3]?.baseline, names[0]);
  assert.equal(recorded[5]?.baseline, names[4]);
  for (const r of recorded.slice(0, 4)) assert.ok(r.value > 0, `${r.name}: ${String(r.value)}`);
});
