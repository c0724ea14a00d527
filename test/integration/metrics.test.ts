/**
 * GET /v1/metrics on a live daemon: what guests did is counted exactly (answers by dialect and
 * status, cache hits and misses, unknown sources, tokens), every catalogued metric is there, and
 * nothing a guest or an admin sent (a secret, a private value, a path) appears in it. The guest
 * door never serves metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request, startInstall, startTestDaemon, sampleInstance, type Reply } from '../support/daemon.js';
import { until } from '../support/wait.js';
import { buildConfig } from '../../daemon/config/config.js';
import { runDaemon } from '../../daemon/process/main.js';
import { sinkLogger } from '../support/sink.js';
import { METRICS } from '../../daemon/metrics/catalogue.js';

const VM1 = '127.0.0.2';

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  assert.ok(line, `${series} in the exposition`);
  return Number(line.slice(series.length + 1));
}

test('metrics: guest traffic counted exactly, every metric present, no value leaks', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin(
    'PUT',
    '/v1/instances/vm1',
    sampleInstance(1, { params: { public: { P: 'public-value' }, private: { Q: 'private-sekrit-77' } } }),
  );
  const secret = await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { S: 'secret-sekrit-99' } });
  assert.equal(secret.status, 200, secret.text);

  const before = (await d.admin('GET', '/v1/metrics')).text;
  assert.equal(value(before, 'metad_instances'), 1);
  assert.equal(value(before, 'metad_secrets_held'), 1);

  // Two reads of one path: a miss then a hit. An unknown source. A token, then a bad token.
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).status, 200);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).status, 200);
  assert.equal((await d.guest('127.0.0.99', 'GET', '/latest/meta-data/private-sekrit-path')).status, 404);
  const tok = await d.guest(VM1, 'PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '60' });
  assert.equal(tok.status, 200);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/', { 'X-aws-ec2-metadata-token': 'not-a-token' })).status, 401);
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).status, 200);
  // The guest door has no metrics.
  assert.equal((await d.guest(VM1, 'GET', '/v1/metrics')).status, 404);

  const r = await d.admin('GET', '/v1/metrics');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = r.text;
  const d0 = (s: string): number => value(text, s) - (before.includes(`\n${s} `) ? value(before, s) : 0);
  assert.equal(d0('metad_guest_answers_total{dialect="ec2",status="200"}'), 3); // 2 hostname + token PUT
  assert.equal(d0('metad_guest_answers_total{dialect="none",status="404"}'), 1);
  assert.equal(d0('metad_guest_answers_total{dialect="ec2",status="401"}'), 1);
  assert.equal(d0('metad_guest_answers_total{dialect="ganeti",status="200"}'), 1);
  assert.equal(d0('metad_guest_answers_total{dialect="ec2",status="404"}'), 1); // /v1/metrics from a guest
  assert.equal(d0('metad_guest_cache_total{result="hit"}'), 1);
  assert.ok(d0('metad_guest_cache_total{result="miss"}') >= 3);
  assert.equal(d0('metad_guest_events_total{event="unknown_source"}'), 1);
  assert.equal(d0('metad_guest_tokens_issued_total'), 1);
  assert.equal(d0('metad_guest_answer_seconds_count'), 7);
  for (const name of Object.keys(METRICS)) assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  for (const leak of ['private-sekrit-77', 'secret-sekrit-99', 'public-value', 'private-sekrit-path', 'vm1'])
    assert.ok(!text.includes(leak), `${leak} must not appear in the metrics`);
});

test('metrics.listen: a TCP listener that serves GET /metrics and nothing else; guest-reachable hosts are refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-metrics-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const base = {
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'admin.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  };
  // Inside the comm range, the metadata address, a wildcard or a guest listener: a guest could scrape it.
  for (const host of ['127.0.0.1', '127.0.0.9', '169.254.169.254', '0.0.0.0', '::'])
    assert.throws(
      () => buildConfig({ ...base, metrics: { listen: { host, port: 9169 } } }),
      /\/metrics\/listen\/host: guests could reach it/,
      host,
    );
  const { log } = sinkLogger();
  const r = await runDaemon(buildConfig({ ...base, metrics: { listen: { host: '::1', port: 0 } } }), log);
  t.after(() => r.close());
  assert.ok(r.metricsAddress, 'the listener is bound');
  const get = (method: string, path: string): Promise<Reply> =>
    request({ host: '::1', port: r.metricsAddress?.port, method, path, agent: false });
  const m = await get('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /^metad_instances 0$/m);
  assert.match(m.text, /^metad_build_info\{version="[^"]+"\} 1$/m);
  for (const path of ['/v1/metrics', '/v1/instances', '/latest/meta-data/', '/metrics/x'])
    assert.equal((await get('GET', path)).status, 404, path);
  assert.equal((await get('POST', '/metrics')).status, 405);
  // Off by default: no listener.
  const plain = buildConfig(base);
  assert.equal(plain.metrics.listen, undefined);
});

test('metrics: state-dir writes and an install job that hits its deadline move their numbers on a live daemon', async (t) => {
  const d = await startTestDaemon({ config: { appliance: { pollMs: 20 } } });
  t.after(() => d.close());
  const scrape = async (): Promise<string> => (await d.admin('GET', '/v1/metrics')).text;
  const before = await scrape();
  assert.equal(value(before, 'metad_store_write_seconds_count{op="write"}'), 0);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
  assert.equal((await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2))).status, 201);
  assert.equal((await d.admin('DELETE', '/v1/instances/vm2')).status, 204);
  const writes = await scrape();
  assert.equal(value(writes, 'metad_store_write_seconds_count{op="write"}'), 2);
  assert.equal(value(writes, 'metad_store_write_seconds_count{op="remove"}'), 1);
  assert.equal(value(writes, 'metad_store_write_failures_total{op="write"}'), 0);
  assert.equal(value(writes, 'metad_job_seconds_count'), 0);

  // A job that runs (the fake hypervisor's domain never powers off): health counts it, then it is aborted.
  assert.equal((await d.admin('PUT', '/v1/instances/vm3', sampleInstance(3))).status, 201);
  assert.deepEqual(((await d.admin('GET', '/v1/health')).json as { jobs: unknown }).jobs, { running: 0, queued: 0 });
  await startInstall(d, 'vm3', 600);
  assert.deepEqual(((await d.admin('GET', '/v1/health')).json as { jobs: unknown }).jobs, { running: 1, queued: 0 });
  assert.equal((await d.admin('DELETE', '/v1/instances/vm3/install')).status, 200);
  await until(
    'the job aborted',
    async () => ((await d.admin('GET', '/v1/instances/vm3/install')).json as { state?: string }).state === 'aborted',
  );
  assert.deepEqual(((await d.admin('GET', '/v1/health')).json as { jobs: unknown }).jobs, { running: 0, queued: 0 });

  // The 1 s hard deadline ends this one.
  await startInstall(d, 'vm1', 1);
  await until('the job timed out', async () => {
    const r = await d.admin('GET', '/v1/instances/vm1/install');
    return (r.json as { state?: string }).state === 'timed-out';
  });
  const ended = await scrape();
  assert.equal(value(ended, 'metad_jobs_ended_total{outcome="timed-out"}'), 1);
  assert.ok(value(ended, 'metad_job_seconds_sum') >= 1, 'it ran until its 1 s deadline');
  assert.equal(value(ended, 'metad_job_deadline_destroy_seconds_count'), 1);
  assert.equal(value(ended, 'metad_jobs{state="timed-out"}'), 1);
  assert.equal(value(ended, 'metad_jobs_ended_total{outcome="aborted"}'), 1);
  assert.equal(value(ended, 'metad_job_seconds_count'), 2);
});
