/**
 * Debian's `prometheus` scrapes a real metad serving guests, and every query of
 * docs/grafana-dashboard.json, evaluated through Prometheus's HTTP API, returns data. All of it
 * inside the routed comm test bed's namespaces (test/support/comm-harness.ts): metad with
 * network.mode routed (reconciles, nftables counters, dnsmasq and leases), the Ganeti feed on
 * (a socket in a temp dir), the metrics listener and the scrape job exactly as docs/operations.md
 * ("Monitoring") prints them; Prometheus on the hypervisor namespace's loopback with its own
 * config and storage in a temp dir (1 s scrapes), never a system service. Prometheus is the one
 * .ci/install-deps.sh unpacks (METAD_PROMETHEUS_DIR).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { skipOrFail } from '../support/env.js';
import type { Guest } from '../support/comm-topology.js';
import { GUESTS, commBed, curl, dhcp, registerGuests } from '../support/comm-harness.js';
import { parseExamples } from '../support/doc-examples.js';
import { concrete, dashboardQueries } from '../support/dashboard.js';
import { until } from '../support/wait.js';

const PROMETHEUS_DIR = process.env.METAD_PROMETHEUS_DIR ?? '/var/cache/metad-test/prometheus';
const PROMETHEUS = join(PROMETHEUS_DIR, 'usr/bin/prometheus');
const OPERATIONS = fileURLToPath(new URL('../../../docs/operations.md', import.meta.url));
const PROM_ADDR = '127.0.0.1:9090';

/** docs/operations.md, "Monitoring": metad's metrics section and Prometheus's scrape job, as printed. */
function monitoringExamples(): { metad: Record<string, unknown>; scrape: Record<string, unknown> } {
  const md = readFileSync(OPERATIONS, 'utf8');
  const section = md.slice(md.indexOf('## Monitoring'), md.indexOf('\n## ', md.indexOf('## Monitoring') + 1));
  const ex = parseExamples(section);
  const metad = ex.find((e) => e.lang === 'yaml' && e.flags.has('config'));
  const scrape = ex.find((e) => e.file === 'prometheus-metad.yml');
  assert.ok(metad && scrape, 'docs/operations.md has no Monitoring examples');
  return { metad: parse(metad.body) as Record<string, unknown>, scrape: parse(scrape.body) as Record<string, unknown> };
}

interface QueryAnswer {
  status: string;
  error?: string;
  data?: { resultType: string; result: unknown[] };
}

test('Prometheus scrapes metad serving guests; every dashboard query returns data', async (t) => {
  if (skipOrFail(t, existsSync(PROMETHEUS) ? undefined : `${PROMETHEUS} missing (.ci/install-deps.sh unpacks Debian's prometheus)`)) return;
  const bed = await commBed(t);
  if (!bed) return;
  const { hv, dir, script } = bed;
  const [ga, gb] = bed.guests as [Guest, Guest, Guest];
  const docs = monitoringExamples();
  const ganeti = join(dir, 'ganeti');
  mkdirSync(ganeti, { mode: 0o755 });
  const metad = await bed.startMetad({ mode: 'routed' }, undefined, {
    ...docs.metad,
    ganeti: { socket: join(ganeti, 'ganeti-metad'), pidFile: join(ganeti, 'ganeti-metad.pid') },
  });
  await registerGuests(metad);
  await until('routes for the guests', async () => {
    const routes = await hv.ip('-4', 'route', 'show', 'proto', '171');
    return GUESTS.every((g) => routes.includes(`${g.ipv4} dev ${g.tap}`));
  });

  // Guests: leases, reads (a miss then a hit), a refused request.
  for (const [g, spec] of [
    [ga, GUESTS[0]],
    [gb, GUESTS[1]],
  ] as const) {
    assert.equal(await dhcp(g, script), spec.ipv4);
    for (let i = 0; i < 3; i++) assert.equal((await curl(g)).body, spec.id);
  }
  const refused = await ga.run(
    'curl',
    ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', '-X', 'PUT', 'http://169.254.169.254/latest/api/token'],
    {
      timeoutMs: 10_000,
    },
  );
  assert.match(refused.stdout, /^4(?!04)\d\d$/, `a token request without its TTL header: ${refused.stdout}`);

  // Prometheus, in the hypervisor namespace, scraping the listener the docs configure.
  const promDir = join(dir, 'prometheus');
  mkdirSync(join(promDir, 'data'), { recursive: true });
  const config = join(promDir, 'prometheus.yml');
  writeFileSync(config, stringify({ global: { scrape_interval: '1s', evaluation_interval: '1s' }, ...docs.scrape }));
  await hv.run('ip', ['link', 'set', 'lo', 'up']);
  const prom = hv.spawn(
    PROMETHEUS,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(promDir, 'data')}`,
      `--web.listen-address=${PROM_ADDR}`,
      '--web.console.templates=/nonexistent',
      '--web.console.libraries=/nonexistent',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let promOut = '';
  prom.stdout?.on('data', (c: Buffer) => (promOut += c.toString()));
  prom.stderr?.on('data', (c: Buffer) => (promOut += c.toString()));
  const exited = new Promise<void>((r) => prom.once('exit', () => r()));
  t.after(async () => {
    if (prom.exitCode === null && prom.signalCode === null) prom.kill('SIGTERM');
    await exited;
  });

  const query = async (q: string): Promise<QueryAnswer> => {
    const r = await hv.run('curl', ['-s', '--max-time', '5', '--data-urlencode', `query=${q}`, `http://${PROM_ADDR}/api/v1/query`], {
      timeoutMs: 10_000,
    });
    if (r.code !== 0) return { status: 'unreachable', error: `curl exit ${String(r.code)} ${r.stderr}` };
    // Until its storage is up Prometheus answers 503 `Service Unavailable` (not JSON): not yet.
    try {
      return JSON.parse(r.stdout) as QueryAnswer;
    } catch {
      return { status: 'unavailable', error: r.stdout.slice(0, 100) };
    }
  };
  // A few scrapes, all of them up: enough samples in every 10 s rate window.
  await until(
    'five successful scrapes of metad',
    async () => {
      if (prom.exitCode !== null) throw new Error(`prometheus exited: ${promOut}`);
      const a = await query('sum_over_time(up{job="metad"}[1m])');
      const v = (a.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1];
      return v !== undefined && Number(v) >= 5;
    },
    { detail: () => promOut },
  );

  const queries = dashboardQueries();
  const empty: string[] = [];
  for (const q of queries) {
    const a = await query(concrete(q.expr));
    assert.equal(a.status, 'success', `${q.where}: ${concrete(q.expr)}: ${a.error ?? ''}`);
    if ((a.data?.result.length ?? 0) === 0) empty.push(`${q.where}: ${concrete(q.expr)}`);
  }
  assert.deepEqual(empty, [], 'dashboard queries without data');
  t.diagnostic(`${String(queries.length)} dashboard queries answered with data`);

  // The answers are metad's numbers, not just series: the guests' reads and the leases are there.
  const answered = await query('sum(metad_guest_answers_total{dialect="ec2",status="200"})');
  assert.ok(Number((answered.data?.result[0] as { value: [number, string] }).value[1]) >= 6, JSON.stringify(answered));
  const leases = await query('metad_dhcp_leases');
  assert.equal((leases.data?.result[0] as { value: [number, string] }).value[1], '2');
});
