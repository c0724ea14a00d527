/**
 * metadctl install | install status|watch|abort | jobs against the real admin door, the install
 * jobs running on the strict fake hypervisor of the test daemon.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { watchLines } from '../../cli/commands/install.js';
import type { JobRecord } from '../../cli/api-types.js';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';
import { ctlAt } from '../support/metadctl-run.js';

const ctl = ctlAt;

test('metadctl install, status, watch (plain lines), abort, jobs', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  let r = await ctl(sock, ['jobs']);
  assert.equal(r.out, 'NAME  STATE  WHEN  REASON  LAST PROGRESS\n', 'no jobs: the header says so');

  r = await ctl(sock, ['install', 'vm1', '--timeout', '600']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^vm1 {2}(queued|pending|booting) /);
  r = await ctl(sock, ['install', 'vm1']);
  assert.equal(r.code, 1, 'a second job conflicts');
  r = await ctl(sock, ['--json', 'install', 'status', 'vm1']);
  assert.equal(r.code, 0);
  const rec = JSON.parse(r.out) as JobRecord;
  assert.equal(rec.timeoutSec, 600);

  const watching = ctl(sock, ['install', 'watch', 'vm1']);
  // Whenever the stream opens, its first record holds every line so far: nothing to wait for.
  assert.equal(
    (await d.guest('127.0.0.2', 'POST', '/ganeti/latest/write', {}, 'metad-progress v1 step=create status=start\n')).status,
    204,
  );
  const jobs = d.daemon.services.jobs;
  while (jobs.status('vm1')?.lines.length === 0) await new Promise((res) => jobs.once('change', res));
  r = await ctl(sock, ['install', 'abort', 'vm1']);
  assert.equal(r.code, 0, r.err);
  const w = await watching;
  assert.equal(w.code, 1, 'an aborted job: exit 1');
  assert.ok(w.out.includes('metad-progress v1 step=create status=start\n'), w.out);
  assert.match(w.out, /state aborted \(aborted\)\n$/);

  r = await ctl(sock, ['jobs']);
  assert.match(r.out, /^NAME +STATE +WHEN +REASON +LAST PROGRESS\nvm1 +aborted +ended /);
  r = await ctl(sock, ['install', 'status', 'vm1']);
  assert.equal(r.code, 1, 'status of a job that did not succeed: exit 1');
  r = await ctl(sock, ['install', 'status', 'vm2']);
  assert.equal(r.code, 4, 'no such job: 404');
});

test('a reinstall without the secrets the last job had is refused until they are sent again (or --without-secrets)', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  const sock = d.config.admin.socket;
  await d.admin('PUT', '/v1/instances/vm3', sampleInstance(3));
  let r = await ctl(sock, ['params', 'set', 'vm3', '--visibility', 'secret', 'DB_PASSWORD=s3cret-1', 'API_KEY=k-1']);
  assert.equal(r.code, 0, r.err);
  r = await ctl(sock, ['install', 'vm3', '--timeout', '600']);
  assert.equal(r.code, 0, r.err);
  r = await ctl(sock, ['--json', 'install', 'status', 'vm3']);
  assert.deepEqual((JSON.parse(r.out) as JobRecord).secretNames, ['API_KEY', 'DB_PASSWORD'], 'names only');
  assert.equal(r.out.includes('s3cret-1'), false);
  await ctl(sock, ['install', 'abort', 'vm3']);
  await d.daemon.services.jobs.settled('vm3');

  // The job wiped both: a reinstall is refused, nothing started, and the message says what to do.
  r = await ctl(sock, ['install', 'vm3']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /the last install of vm3 had secret parameters that are not held now: API_KEY, DB_PASSWORD/);
  assert.match(r.err, /metadctl params set vm3 --visibility secret NAME=VALUE/);
  assert.equal(d.daemon.services.jobs.status('vm3')?.outcome, 'aborted', 'no new job');
  // One sent again: the other is still missing.
  await ctl(sock, ['params', 'set', 'vm3', '--visibility', 'secret', 'DB_PASSWORD=s3cret-2']);
  r = await ctl(sock, ['install', 'vm3']);
  assert.equal(r.code, 2);
  assert.match(r.err, /not held now: API_KEY$/m);
  // Both sent again: it starts.
  await ctl(sock, ['params', 'set', 'vm3', '--visibility', 'secret', 'API_KEY=k-2']);
  r = await ctl(sock, ['install', 'vm3', '--timeout', '600']);
  assert.equal(r.code, 0, r.err);
  await ctl(sock, ['install', 'abort', 'vm3']);
  await d.daemon.services.jobs.settled('vm3');
  // Or on purpose without them.
  r = await ctl(sock, ['install', 'vm3', '--without-secrets', '--timeout', '600']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(d.daemon.services.jobs.status('vm3')?.secretNames, []);
  await ctl(sock, ['install', 'abort', 'vm3']);
  await d.daemon.services.jobs.settled('vm3');
  // A job without secrets asks for none the next time.
  r = await ctl(sock, ['install', 'vm3', '--timeout', '600']);
  assert.equal(r.code, 0, r.err);
});

test('watchLines prints state changes and only the progress lines not seen yet', () => {
  const base = { v: 1, instance: 'a', domain: 'd', timeoutSec: 1, requestedAt: '' } as const;
  const a: JobRecord = { ...base, state: 'running', lines: ['x', 'y'] };
  const b: JobRecord = { ...base, state: 'running', lines: ['y', 'z'] };
  const c: JobRecord = { ...base, state: 'failed', outcome: 'failed', reason: 'r', lines: ['y', 'z'] };
  assert.deepEqual(watchLines(undefined, a), ['state running', 'x', 'y']);
  assert.deepEqual(watchLines(a, b), ['z']);
  assert.deepEqual(watchLines(b, c), ['state failed (r)']);
});
