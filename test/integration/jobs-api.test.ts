/**
 * The install-job routes of the admin door against the real daemon graph (fake hypervisor):
 * the libvirt binding missing (503 naming the packages), instance removal ends the job, a
 * request for an unknown instance, the body rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { MISSING_BINDING } from '../../appliance/libvirt.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';

test('install without the libvirt binding: 503 whose message names the Debian packages; nothing recorded', async (t) => {
  const d = await startTestDaemon({ hypervisor: () => Promise.reject(new HypervisorUnavailable(MISSING_BINDING)) });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const r = await d.admin('POST', '/v1/instances/vm1/install');
  assert.equal(r.status, 503);
  assert.match((r.json as { message: string }).message, /libvirt-dev pkg-config g\+\+ make/);
  assert.equal((await d.admin('GET', '/v1/instances/vm1/install')).status, 404);
});

test('removing the instance ends its job: DELETE answers once the domain is gone; the record goes with the instance; a new instance of that name has no job', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { pw: 'x' } });
  assert.equal((await d.admin('POST', '/v1/instances/vm1/install', { timeoutSec: 60 })).status, 202);
  const jobs = d.daemon.services.jobs;
  while (d.hv.running().length === 0) await new Promise((res) => jobs.once('change', res));
  const ended: { outcome?: string; reason?: string }[] = [];
  jobs.on('ended', (r: { outcome?: string; reason?: string }) => ended.push(r));
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  assert.deepEqual(d.hv.running(), [], 'the domain is gone when DELETE answers');
  assert.deepEqual(
    ended.map((r) => [r.outcome, r.reason]),
    [['aborted', 'instance removed']],
  );
  assert.equal(d.daemon.services.vault.info('vm1').length, 0);
  assert.deepEqual((await d.admin('GET', '/v1/jobs')).json, { jobs: [] }, 'the record went with the instance');
  assert.ok(!existsSync(join(d.dir, 'state', 'jobs', 'vm1.json')));
  // A new instance of the same name starts with no job.
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  assert.equal((await d.admin('GET', '/v1/instances/vm1/install')).status, 404);
});

test('while an install job runs, PATCH of the comm address, disks or OS is 409 naming the field; other fields change', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  assert.equal((await d.admin('POST', '/v1/instances/vm1/install', { timeoutSec: 60 })).status, 202);
  const refused = await d.admin('PATCH', '/v1/instances/vm1', { comm: { ipv4: '127.0.0.9' } });
  assert.equal(refused.status, 409);
  assert.equal((refused.json as { details: { path: string }[] }).details[0]?.path, '/comm');
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { os: { name: 'other' } })).status, 409);
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { hostname: 'renamed' })).status, 200);
  assert.equal((await d.admin('POST', '/v1/instances/vm1/install/abort')).status, 200);
  await d.daemon.services.jobs.settled('vm1');
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { comm: { ipv4: '127.0.0.9' } })).status, 200);
});

test('install requests: unknown instance 404, bad bodies 400, no job 404 for status/abort/watch', async (t) => {
  const d = await startTestDaemon({ config: { appliance: { maxTimeoutMs: 60_000, installTimeoutMs: 60_000 } } });
  t.after(() => d.close());
  assert.equal((await d.admin('POST', '/v1/instances/nope/install')).status, 404);
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  for (const body of [{ timeoutSec: 61 }, { timeoutSec: 0 }, { timeoutSec: '5' }, { other: 1 }, []]) {
    assert.equal((await d.admin('POST', '/v1/instances/vm1/install', body)).status, 400, JSON.stringify(body));
  }
  for (const [m, p] of [
    ['GET', '/v1/instances/vm1/install'],
    ['POST', '/v1/instances/vm1/install/abort'],
    ['GET', '/v1/instances/vm1/install/watch'],
  ] as const) {
    assert.equal((await d.admin(m, p)).status, 404, `${m} ${p}`);
  }
  assert.deepEqual((await d.admin('GET', '/v1/jobs')).json, { jobs: [] });
});

test("an instance's install.timeoutSec is its job's deadline unless the request names one (capped at appliance.maxTimeoutMs)", async (t) => {
  const d = await startTestDaemon({ config: { appliance: { maxTimeoutMs: 600_000, installTimeoutMs: 60_000 } } });
  t.after(() => d.close());
  const withTimeout = (n: number, timeoutSec: number): Record<string, unknown> => sampleInstance(n, { install: { timeoutSec } });
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', withTimeout(1, 300))).status, 201);
  assert.equal((await d.admin('PUT', '/v1/instances/vm2', withTimeout(2, 3600))).status, 201);
  assert.equal((await d.admin('PUT', '/v1/instances/vm3', withTimeout(3, 300))).status, 201);
  const timeout = async (name: string, body?: unknown): Promise<number> => {
    const r = await d.admin('POST', `/v1/instances/${name}/install`, body);
    assert.equal(r.status, 202, r.text);
    return (r.json as { timeoutSec: number }).timeoutSec;
  };
  assert.equal(await timeout('vm1'), 300, "the instance's own");
  assert.equal(await timeout('vm2'), 600, 'capped at the maximum');
  assert.equal(await timeout('vm3', { timeoutSec: 45 }), 45, 'the request wins');
});
