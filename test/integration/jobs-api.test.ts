/**
 * The install-job routes of the admin door against the real daemon graph (fake hypervisor):
 * the libvirt binding missing (503 naming the packages), instance removal ends the job, a
 * request for an unknown instance, the body rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { MISSING_BINDING } from '../../appliance/libvirt.js';
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

test('removing the instance ends its job: domain destroyed, outcome recorded, secrets gone', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { pw: 'x' } });
  assert.equal((await d.admin('POST', '/v1/instances/vm1/install', { timeoutSec: 60 })).status, 202);
  const jobs = d.daemon.services.jobs;
  while (d.hv.running().length === 0) await new Promise((res) => jobs.once('change', res));
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  await jobs.settled('vm1');
  const rec = ((await d.admin('GET', '/v1/jobs')).json as { jobs: { outcome: string; reason: string }[] }).jobs[0];
  assert.deepEqual([rec?.outcome, rec?.reason], ['aborted', 'instance removed']);
  assert.deepEqual(d.hv.running(), []);
  assert.equal(d.daemon.services.vault.info('vm1').length, 0);
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
