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

test('watchLines prints state changes and only the progress lines not seen yet', () => {
  const base = { v: 1, instance: 'a', domain: 'd', timeoutSec: 1, requestedAt: '' } as const;
  const a: JobRecord = { ...base, state: 'running', lines: ['x', 'y'] };
  const b: JobRecord = { ...base, state: 'running', lines: ['y', 'z'] };
  const c: JobRecord = { ...base, state: 'failed', outcome: 'failed', reason: 'r', lines: ['y', 'z'] };
  assert.deepEqual(watchLines(undefined, a), ['state running', 'x', 'y']);
  assert.deepEqual(watchLines(a, b), ['z']);
  assert.deepEqual(watchLines(b, c), ['state failed (r)']);
});
