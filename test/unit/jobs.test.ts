/**
 * The install job layer (daemon/jobs/*) with the strict fake hypervisor and the fake clock:
 * records persisted apart from the instance, deadlines, the queue, abort/stop, the secrets
 * gate and wipe, the claim deadline, and progress through a pipe tap that consumes nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { JobManager, type JobSettings, type Prepared } from '../../daemon/jobs/manager.js';
import { JobRecordFiles, REDACTED, redactLines, type JobRecord } from '../../daemon/jobs/record.js';
import { SecretVault } from '../../daemon/vault.js';
import { PipeRegistry } from '../../daemon/pipes.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { DaemonError } from '../../daemon/errors.js';

const SECRET = 's3cr3t-value-xyz';
const progress = (step: string, status: string): Buffer => Buffer.from(`metad-progress v1 step=${step} status=${status}\n`);

function harness(settings: Partial<JobSettings> = {}, opts: { hvMissing?: boolean } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'metad-jobs-'));
  const hv = new FakeHypervisor();
  const clock = new FakeClock(1_000_000);
  const vault = new SecretVault(clock, 7200);
  const pipes = new PipeRegistry(1 << 20);
  const cleaned: string[] = [];
  const files = new JobRecordFiles(join(dir, 'jobs'));
  const jm = new JobManager({
    clock,
    log: sinkLogger().log,
    vault,
    pipes,
    files,
    settings: { defaultTimeoutMs: 60_000, maxTimeoutMs: 120_000, maxConcurrent: 2, claimDeadlineMs: 10_000, pollMs: 250, ...settings },
    hypervisor: () => (opts.hvMissing ? Promise.reject(new HypervisorUnavailable('install libvirt-dev')) : Promise.resolve(hv)),
    prepare: (_instance, domain): Promise<Prepared> =>
      Promise.resolve({
        xml: `<domain><name>${domain}</name></domain>`,
        cleanup: () => {
          cleaned.push(domain);
          return Promise.resolve();
        },
      }),
  });
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
  };
  const onDisk = (name: string): JobRecord => JSON.parse(readFileSync(join(dir, 'jobs', `${name}.json`), 'utf8')) as JobRecord;
  return { dir, hv, clock, vault, pipes, jm, cleaned, settle, onDisk, files, done: () => rmSync(dir, { recursive: true, force: true }) };
}

test('success: progress reaches the record through a tap; the pipe keeps every byte; secrets gated and wiped', async () => {
  const h = harness();
  await h.jm.init();
  h.vault.replace('vm1', { root_password: SECRET });
  assert.equal(h.jm.secretsOpen('vm1'), false, 'no job: the gate is shut');
  const r = await h.jm.start('vm1');
  await h.settle();
  assert.equal(h.jm.secretsOpen('vm1'), true);
  assert.equal(h.hv.running().length, 1);
  const domain = h.hv.running()[0] ?? '';
  assert.equal(domain, r.domain);
  h.jm.noteClaim('vm1');
  h.pipes.get('vm1').toHost.push(progress('create', 'started'));
  h.pipes.get('vm1').toHost.push(progress('final', 'succeeded'));
  await h.clock.advance(250);
  await h.settle();
  assert.equal(h.jm.status('vm1')?.state, 'running');
  assert.equal(h.pipes.get('vm1').toHost.take().toString(), progress('create', 'started').toString() + progress('final', 'succeeded').toString(), 'the tap consumed nothing');
  h.hv.powerOff(domain);
  await h.clock.advance(250);
  await h.jm.settled('vm1');
  const rec = h.onDisk('vm1');
  assert.equal(rec.outcome, 'succeeded');
  assert.equal(rec.lines.length, 2);
  assert.ok(rec.claimedAt && rec.endedAt && rec.deadlineAt === new Date(1_000_000 + 60_000).toISOString());
  assert.equal(h.jm.secretsOpen('vm1'), false);
  assert.deepEqual(h.vault.info('vm1'), [], 'the job end wiped the secrets');
  assert.deepEqual(h.cleaned, [domain]);
  assert.ok(!readFileSync(join(h.dir, 'jobs', 'vm1.json'), 'utf8').includes(SECRET));
  h.done();
});

test('hard deadline: guest traffic does not extend it; destroyed at the deadline, timed-out, secrets wiped', async () => {
  const h = harness();
  await h.jm.init();
  h.vault.replace('vm1', { k: SECRET });
  await h.jm.start('vm1', { timeoutSec: 30 });
  await h.settle();
  h.jm.noteClaim('vm1');
  for (let t = 0; t < 29_000; t += 1000) {
    h.pipes.get('vm1').toHost.push(progress('create', 'running'));
    await h.clock.advance(1000);
  }
  assert.equal(h.jm.status('vm1')?.state, 'running', 'still running 1 s before the deadline');
  await h.clock.advance(1000);
  await h.jm.settled('vm1');
  assert.equal(h.onDisk('vm1').outcome, 'timed-out');
  assert.equal(h.onDisk('vm1').endedAt, new Date(1_000_000 + 30_000).toISOString(), 'ended exactly at the deadline');
  assert.deepEqual(h.hv.running(), []);
  assert.deepEqual(h.vault.info('vm1'), []);
  h.done();
});

test('timeoutSec beyond the maximum is refused; a second job for the same instance conflicts', async () => {
  const h = harness();
  await h.jm.init();
  await assert.rejects(h.jm.start('vm1', { timeoutSec: 121 }), (e: DaemonError) => e.code === 'InvalidInput');
  await h.jm.start('vm1', { timeoutSec: 120 });
  await assert.rejects(h.jm.start('vm1'), (e: DaemonError) => e.code === 'Conflict');
  await h.jm.stop();
  h.done();
});

test('claim deadline: an appliance that never reads its secrets is stuck and destroyed', async () => {
  const h = harness();
  await h.jm.init();
  h.vault.replace('vm1', { k: SECRET });
  await h.jm.start('vm1');
  await h.settle();
  await h.clock.advance(10_000);
  await h.jm.settled('vm1');
  assert.equal(h.onDisk('vm1').outcome, 'stuck');
  assert.deepEqual(h.hv.running(), []);
  assert.deepEqual(h.vault.info('vm1'), []);
  h.done();
});

test('concurrency limit: the third job waits queued (secrets gate shut) until one ends; abort of a queued job', async () => {
  const h = harness({ maxConcurrent: 2 });
  await h.jm.init();
  await h.jm.start('a');
  await h.jm.start('b');
  await h.jm.start('c');
  await h.jm.start('d');
  await h.settle();
  assert.deepEqual(h.jm.list().map((r) => r.state), ['booting', 'booting', 'queued', 'queued']);
  assert.equal(h.hv.running().length, 2);
  assert.equal(h.jm.secretsOpen('c'), false);
  assert.equal(h.jm.abort('d').state, 'aborted');
  h.jm.abort('a');
  await h.jm.settled('a');
  await h.settle();
  assert.equal(h.jm.status('a')?.outcome, 'aborted');
  assert.equal(h.jm.status('c')?.state, 'booting');
  assert.equal(h.jm.status('c')?.startedAt, new Date(h.clock.now()).toISOString(), 'the deadline counts from leaving the queue');
  await h.jm.stop();
  assert.deepEqual(h.jm.list().map((r) => [r.instance, r.outcome, r.reason]), [
    ['a', 'aborted', 'aborted'],
    ['b', 'aborted', 'daemon stopped'],
    ['c', 'aborted', 'daemon stopped'],
    ['d', 'aborted', 'aborted'],
  ]);
  assert.deepEqual(h.hv.running(), [], 'stop destroyed every domain');
  h.done();
});

test('records survive a new manager (restart) and are apart from instance files', async () => {
  const h = harness();
  await h.jm.init();
  await h.jm.start('vm1');
  await h.settle();
  h.jm.abort('vm1');
  await h.jm.settled();
  assert.deepEqual(readdirSync(h.dir), ['jobs']);
  const again = new JobManager({ ...(h.jm as unknown as { d: ConstructorParameters<typeof JobManager>[0] }).d });
  await again.init();
  assert.equal(again.status('vm1')?.outcome, 'aborted');
  h.done();
});

test('without the hypervisor binding an install request is refused with its error', async () => {
  const h = harness({}, { hvMissing: true });
  await h.jm.init();
  await assert.rejects(h.jm.start('vm1'), /libvirt-dev/);
  assert.equal(h.jm.status('vm1'), undefined);
  h.done();
});

test('a progress line that contains a live secret value is redacted', () => {
  assert.deepEqual(redactLines(['a', `x ${SECRET} y`, 'b'], [SECRET, '']), ['a', REDACTED, 'b']);
});
