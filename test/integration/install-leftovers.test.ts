/**
 * Install leftovers are never silent (daemon/jobs/leftovers.ts), through the real daemon graph
 * with the fake hypervisor and the fake clock: a domain whose destroy fails at the end of its
 * job is logged, listed in GET /v1/health, retried on the slow timer while it keeps failing, and
 * cleared (health, log) once a retry destroys it. A hypervisor that stops answering mid-job
 * does not hold the job past its deadline; the domain it could not destroy is destroyed by the
 * retry after it answers again. A recovery that finds no hypervisor at start is a leftover as
 * well, retried until the unfinished job is recovered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { sampleInstance, startInstall, startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { ctlAt } from '../support/metadctl-run.js';
import { DESTROY_RETRY_MS } from '../../appliance/runner.js';
import { LEFTOVER_RETRY_MS, type LeftoverView } from '../../daemon/jobs/leftovers.js';
import { JobRecordFiles, type JobRecord } from '../../daemon/jobs/record.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VERSION } from '../../daemon/version.js';

/** Moves the fake clock in poll-sized steps, letting the daemon run between them. */
async function advance(clock: FakeClock, ms: number, step = 250): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    await clock.advance(Math.min(step, ms - t));
    for (let i = 0; i < 10; i++) await tick();
  }
}

async function leftovers(d: TestDaemon): Promise<LeftoverView[]> {
  const r = await d.admin('GET', '/v1/health');
  assert.equal(r.status, 200);
  return (r.json as { leftovers: LeftoverView[] }).leftovers;
}

async function job(d: TestDaemon, name: string): Promise<JobRecord> {
  return (await d.admin('GET', `/v1/instances/${name}/install`)).json as JobRecord;
}

test('a domain whose destroy fails is a leftover: logged, in /v1/health, retried every 30 s until destroyed, then cleared', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { appliance: { pollMs: 250 } } });
  t.after(() => d.close());
  assert.deepEqual(await leftovers(d), []);
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await startInstall(d, 'vm1', 10);
  await advance(clock, 250);
  const domain = (await job(d, 'vm1')).domain;
  assert.deepEqual(d.hv.running(), [domain]);
  d.hv.failDestroy = new Error('Cannot write data: Broken pipe');
  await advance(clock, 10_000 + DESTROY_RETRY_MS.reduce((a, b) => a + b, 0));
  await d.daemon.services.jobs.settled('vm1');
  const rec = await job(d, 'vm1');
  assert.equal(rec.outcome, 'timed-out');
  // libvirt's own text goes to the log and /v1/health (admins), never into the job record.
  assert.equal(rec.destroyError, 'failed (details in the daemon log)');
  assert.deepEqual(d.hv.running(), [domain], 'the domain still runs');
  let left = await leftovers(d);
  assert.deepEqual(
    left.map((l) => [l.kind, l.name, l.instance, l.attempts, l.error]),
    [['domain', domain, 'vm1', 0, 'Cannot write data: Broken pipe']],
  );
  assert.match(d.sink.text, /"msg":"install leftover not removed"/);
  const ctl = await ctlAt(d.config.admin.socket, ['health']);
  assert.equal(
    ctl.out,
    `ok (1 instance), metad ${VERSION}\ninstalls unavailable: network.mode is off: installs need the comm network (routed or bridged)\nleftover domain ${domain}: Cannot write data: Broken pipe\n`,
    'metadctl health says so',
  );

  await advance(clock, LEFTOVER_RETRY_MS, 1_000); // a retry that fails again
  left = await leftovers(d);
  assert.equal(left.length, 1);
  assert.equal(left[0]?.attempts, 1);
  assert.match(d.sink.text, /"msg":"install leftover still not removed"/);

  d.hv.failDestroy = undefined; // libvirtd works again
  await advance(clock, LEFTOVER_RETRY_MS, 1_000);
  assert.deepEqual(await leftovers(d), [], 'cleared once the retry destroyed it');
  assert.deepEqual(d.hv.running(), []);
  assert.match(d.sink.text, /"msg":"install leftover removed"/);
});

test('the hypervisor stops answering mid-job: the job ends at its deadline, and the domain goes once it answers again', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { appliance: { pollMs: 250 } } });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  await startInstall(d, 'vm1', 10);
  await advance(clock, 250);
  const domain = (await job(d, 'vm1')).domain;
  d.hv.stop(); // SIGSTOP: nothing answers
  await advance(clock, 10_000);
  assert.equal((await job(d, 'vm1')).endedAt, undefined, 'the outcome waits for the destroy attempt (bounded)');
  await advance(clock, 10_000, 1_000); // CALL_BOUNDS.destroy
  await d.daemon.services.jobs.settled('vm1');
  const rec = await job(d, 'vm1');
  assert.equal(rec.outcome, 'timed-out');
  assert.equal(rec.endedAt, rec.deadlineAt, 'ended at its deadline');
  assert.match(rec.destroyError ?? '', /no answer within/);
  assert.deepEqual(
    (await leftovers(d)).map((l) => [l.kind, l.name]),
    [['domain', domain]],
  );
  assert.match(d.sink.text, /"msg":"hypervisor call did not answer in time"/);
  d.hv.resume(); // SIGCONT
  await advance(clock, LEFTOVER_RETRY_MS, 1_000);
  assert.deepEqual(await leftovers(d), []);
  assert.deepEqual(d.hv.running(), []);
});

test('recovery deferred (no hypervisor at start) is a leftover too: shown, retried, and the unfinished job is recovered once it works', async (t) => {
  const clock = new FakeClock();
  const dir = await mkdtemp(join(tmpdir(), 'metad-leftover-recovery-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // A job record left unfinished by a killed metad (its domain is gone meanwhile).
  const files = new JobRecordFiles(join(dir, 'state', 'jobs'));
  await files.init();
  const at = new Date(clock.now() - 5_000).toISOString();
  await files.save({
    v: 1,
    instance: 'vm1',
    domain: 'metad-install-old',
    state: 'running',
    timeoutSec: 60,
    requestedAt: at,
    startedAt: at,
    deadlineAt: new Date(clock.now() + 55_000).toISOString(),
    lines: [],
  });
  const hv = new FakeHypervisor();
  let up = false;
  const d = await startTestDaemon({
    clock,
    dir,
    hypervisor: () =>
      up ? Promise.resolve(hv) : Promise.reject(new HypervisorUnavailable('cannot connect to libvirt: Connection refused')),
  });
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1)); // the record's instance (a job record is shown for its instance only)
  await advance(clock, 250);
  assert.deepEqual(
    (await leftovers(d)).map((l) => [l.kind, l.name]),
    [['recovery', 'unfinished install jobs']],
  );
  assert.match(d.sink.text, /"msg":"install jobs not recovered: hypervisor unavailable"/);
  assert.equal(d.daemon.services.jobs.status('vm1')?.outcome, undefined, 'not recovered yet');
  up = true; // libvirtd is reachable now
  await advance(clock, LEFTOVER_RETRY_MS, 1_000);
  assert.deepEqual(await leftovers(d), []);
  const rec = d.daemon.services.jobs.status('vm1');
  assert.equal(rec?.outcome, 'failed');
  assert.match(rec.reason ?? '', /domain gone across a daemon restart/);
  assert.match(d.sink.text, /"msg":"install leftover removed"/);
});
