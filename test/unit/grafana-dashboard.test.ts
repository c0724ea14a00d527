/**
 * docs/grafana-dashboard.json reads only metrics metad exports (daemon/metrics/catalogue.ts; a
 * histogram as its _bucket, _sum and _count series), and every exported metric has a panel. That
 * each query returns data from a real metad is test/integration/prometheus-dashboard.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { METRICS, type MetricDef } from '../../daemon/metrics/catalogue.js';
import { DASHBOARD, dashboardQueries, metricNames } from '../support/dashboard.js';

/** Series names a scrape can carry, to the catalogue metric each belongs to. */
const SERIES = new Map<string, string>();
for (const [name, def] of Object.entries(METRICS) as [string, MetricDef][]) {
  SERIES.set(name, name);
  if (def.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) SERIES.set(name + s, name);
}

/** Problems of a dashboard: queries naming no metric, or a metric the catalogue does not have. */
function problems(dash: unknown): string[] {
  const out: string[] = [];
  for (const q of dashboardQueries(dash)) {
    const names = metricNames(q.expr);
    if (names.length === 0) out.push(`${q.where}: names no metric: ${q.expr}`);
    for (const n of names) if (!SERIES.has(n)) out.push(`${q.where}: ${n} is not in the catalogue`);
  }
  return out;
}

const dash = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { targets?: { expr: string }[] }[] };

test('the metric names of a PromQL expression: functions, aggregations, labels, strings, ranges, grouping left out', () => {
  assert.deepEqual(
    metricNames(
      'histogram_quantile(0.9, sum by (le, op) (rate(metad_store_write_seconds_bucket{instance=~"$instance",op="write"}[$__rate_interval])))',
    ),
    ['metad_store_write_seconds_bucket'],
  );
  assert.deepEqual(
    metricNames('sum(rate(a_total{result="hit"}[5m])) / on (instance) group_left (version) sum without (x) (b_total offset 1h) and bool c'),
    ['a_total', 'b_total', 'c'],
  );
  assert.deepEqual(metricNames('count by (version) (metad_build_info{version=~"1e3|sum(x)"}) * 1e3'), ['metad_build_info']);
});

test('every dashboard query names only metrics in the catalogue', () => {
  const queries = dashboardQueries(dash);
  assert.ok(queries.length >= 25, `only ${String(queries.length)} queries`);
  assert.deepEqual(problems(dash), []);
});

test('a query naming a metric metad does not export is caught (a typo, a removed metric)', () => {
  const broken = structuredClone(dash);
  const target = broken.panels.flatMap((p) => p.targets ?? [])[0]!;
  target.expr = target.expr.replace('metad_guest_answers_total', 'metad_guest_answer_total');
  assert.match(problems(broken).join('\n'), /metad_guest_answer_total is not in the catalogue/);
});

test('every metric in the catalogue has a panel', () => {
  const used = new Set(dashboardQueries(dash).flatMap((q) => metricNames(q.expr).map((n) => SERIES.get(n))));
  assert.deepEqual(
    Object.keys(METRICS).filter((m) => !used.has(m)),
    [],
  );
});
