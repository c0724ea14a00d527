/**
 * docs/grafana-dashboard.json as the tests see it: its PromQL expressions (every panel target and
 * the `instance` variable's query), the metric names each one reads, and each made concrete for
 * Prometheus's HTTP API (Grafana's variables replaced). Used by test/unit/grafana-dashboard.test.ts
 * (names only catalogue metrics) and test/integration/prometheus-dashboard.test.ts (each returns data).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const DASHBOARD = fileURLToPath(new URL('../../../docs/grafana-dashboard.json', import.meta.url));

export interface Query {
  /** Where it is: the panel's title and the target's refId, or the variable's name. */
  readonly where: string;
  readonly expr: string;
}

interface Panel {
  title?: string;
  targets?: { expr?: string; refId?: string }[];
  panels?: Panel[];
}

/** Every PromQL expression of a dashboard (a `label_values(metric, label)` variable query as `metric`). */
export function dashboardQueries(dash: unknown = JSON.parse(readFileSync(DASHBOARD, 'utf8'))): Query[] {
  const d = dash as { panels?: Panel[]; templating?: { list?: { name?: string; query?: string | { query?: string } }[] } };
  const out: Query[] = [];
  const walk = (ps: readonly Panel[]): void => {
    for (const p of ps) {
      for (const t of p.targets ?? []) out.push({ where: `${p.title ?? '?'} ${t.refId ?? '?'}`, expr: t.expr ?? '' });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels ?? []);
  for (const v of d.templating?.list ?? []) {
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    const lv = /^label_values\(\s*([^,\s)]+)\s*,\s*[A-Za-z_]+\s*\)$/.exec(q.trim());
    out.push({ where: `variable ${v.name ?? '?'}`, expr: lv ? (lv[1] ?? '') : q });
  }
  return out;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads: what is left once strings, label matchers, range
 * and subquery brackets, grouping clauses and offsets are taken out, that is no function or aggregation
 * (an identifier followed by `(`) and no keyword.
 */
export function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?[0-9a-z]+/gi, ' ');
  const names: string[] = [];
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = bare.slice(m.index + m[0].length);
    if (/^\s*\(/.test(after) || KEYWORDS.has(m[0].toLowerCase())) continue;
    if (/^[eE]\d/.test(m[0]) && /[\d.]$/.test(bare.slice(0, m.index))) continue; // 1e3
    names.push(m[0]);
  }
  return [...new Set(names)];
}

/** An expression as Prometheus evaluates it: Grafana's variables given values (all hosts, a 10 s rate window). */
export function concrete(expr: string): string {
  return expr
    .replaceAll('$__rate_interval', '10s')
    .replaceAll('$__interval', '10s')
    .replaceAll('$__range', '1h')
    .replaceAll('$instance', '.*');
}
