/** The benchmark harness's pure parts (bench/support/): statistics, formatting, closed-loop load. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { median, percentile, summarize } from '../../bench/support/stats.js';
import { fmt, printTable } from '../../bench/support/format.js';
import { closedLoop } from '../../bench/support/load.js';

test('bench stats: nearest-rank percentiles, NaN when empty', () => {
  const s = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(percentile(s, 50), 5);
  assert.equal(percentile(s, 90), 9);
  assert.equal(percentile(s, 99), 10);
  assert.equal(percentile(s, 0), 1);
  assert.equal(median([9, 1, 5]), 5, 'median sorts its input');
  assert.deepEqual(summarize([4, 2, 6]), { n: 3, min: 2, mean: 4, p50: 4, p90: 6, p99: 6, max: 6 });
  const empty = summarize([]);
  assert.equal(empty.n, 0);
  assert.ok(Number.isNaN(empty.p50) && Number.isNaN(empty.mean));
});

test('bench format: about three significant digits; numeric columns right-aligned', () => {
  assert.equal(fmt(88566), '88,566');
  assert.equal(fmt(0.8956), '0.896');
  assert.equal(fmt(12.345), '12.3');
  assert.equal(fmt(123.4), '123');
  const lines: string[] = [];
  printTable(
    ['bench', 'value'],
    [
      ['a', '1,234'],
      ['longer name', '5'],
    ],
    (l) => lines.push(l),
  );
  assert.deepEqual(lines, ['bench        value', '-----------  -----', 'a            1,234', 'longer name      5']);
});

test('bench closedLoop: exactly `count` ops at the given concurrency; errors counted or rethrown', async () => {
  let inFlight = 0;
  let peak = 0;
  const seen: number[] = [];
  const r = await closedLoop({ concurrency: 4, count: 20 }, async (i) => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    seen.push(i);
    await new Promise((res) => setImmediate(res));
    inFlight--;
    if (i % 5 === 0) throw new Error(`op ${i}`);
  });
  assert.deepEqual(
    [...seen].sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.equal(peak, 4);
  assert.equal(r.errors, 4);
  assert.equal(r.ops, 16);
  assert.equal(r.latency.n, 16);
  assert.equal(r.firstError, 'op 0');
  await assert.rejects(
    closedLoop({ concurrency: 2, count: 10, stopOnError: true }, (i) => (i === 3 ? Promise.reject(new Error('boom')) : Promise.resolve())),
    /boom/,
  );
  await assert.rejects(
    closedLoop({ concurrency: 1 }, () => Promise.resolve()),
    /give count or durationMs/,
  );
});
