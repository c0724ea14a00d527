/**
 * The install job layer (daemon/jobs/*) with the strict fake hypervisor and the fake clock:
 * records persisted apart from the instance, deadlines, the queue, abort/stop, the secrets
 * gate and wipe, the claim deadline, and progress through a pipe tap that consumes nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { JobManager, type JobSettings, type PreparedRun } from '../../daemon/jobs/manager.js';
import {
  CANNOT_START,
  CREATE_FAILED,
  JobRecordFiles,
  MAX_LINE_CHARS,
  REDACTED,
  redactLines,
  scrubRecord,
  type JobRecord,
} from '../../daemon/jobs/record.js';
import { CommError } from '../../daemon/comm/network.js';
import { SecretVault } from '../../daemon/registry/vault.js';
import { PipeRegistry } from '../../daemon/registry/pipes.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { DaemonError } from '../../daemon/errors.js';

const SECRET = 's3cr3t-value-xyz';
const progress = (step: string, status: string): Buffer => Buffer.from(`metad-progress v1 step=${step} status=${status}\n`);

function harness(
  settings: Partial<JobSettings> = {},
  opts: { hvMissing?: boolean; incarnation?: (instance: string) => string | undefined } = {},
) {
  const dir = mkdtempSync(join(tmpdir(), 'metad-jobs-'));
  const hv = new FakeHypervisor();
  const clock = new FakeClock(1_000_000);
  const vault = new SecretVault(clock, 7200);
  const pipes = new PipeRegistry(1 << 20);
  const cleaned: string[] = [];
  const files = new JobRecordFiles(join(dir, 'jobs'));
  const deps: ConstructorParameters<typeof JobManager>[0] = {
    clock,
    log: sinkLogger().log,
    vault,
    pipes,
    files,
    settings: { defaultTimeoutMs: 60_000, maxTimeoutMs: 120_000, maxConcurrent: 2, claimDeadlineMs: 10_000, pollMs: 250, ...settings },
    hypervisor: () => (opts.hvMissing ? Promise.reject(new HypervisorUnavailable('install libvirt-dev')) : Promise.resolve(hv)),
    prepare: (_instance, domain): Promise<PreparedRun> =>
      Promise.resolve({
        xml: `<domain><name>${domain}</name></domain>`,
        cleanup: () => {
          cleaned.push(domain);
          return Promise.resolve();
        },
      }),
    ...(opts.incarnation ? { incarnation: opts.incarnation } : {}),
  };
  const jm = new JobManager(deps);
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 30; i++) await new Promise((r) => setImmediate(r));
  };
  const onDisk = (name: string): JobRecord => JSON.parse(readFileSync(join(dir, 'jobs', `${name}.json`), 'utf8')) as JobRecord;
  return {
    dir,
    hv,
    clock,
    vault,
    pipes,
    jm,
    deps,
    cleaned,
    settle,
    onDisk,
    files,
    done: () => rmSync(dir, { recursive: true, force: true }),
  };
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
  assert.equal(
    h.pipes.get('vm1').toHost.take().toString(),
    progress('create', 'started').toString() + progress('final', 'succeeded').toString(),
    'the tap consumed nothing',
  );
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

test('a flood of progress lines is coalesced into a few record writes; the newest record is on disk', async () => {
  const h = harness();
  await h.jm.init();
  let saves = 0;
  let last = Promise.resolve();
  const save = h.files.save.bind(h.files);
  h.files.save = (r: JobRecord): Promise<void> => {
    saves++;
    last = save(r);
    return last;
  };
  const quiet = async (): Promise<void> => {
    for (let n = -1; n !== saves;) {
      n = saves;
      await h.settle();
      await last;
      await h.settle();
    }
  };
  const r = await h.jm.start('vm1');
  await quiet();
  const before = saves;
  const flood = Array.from({ length: 2000 }, (_, i) => `metad-progress v1 step=s${String(i)} status=started\n`).join('');
  h.pipes.get('vm1').toHost.push(Buffer.from(flood));
  await h.clock.advance(250);
  await quiet();
  const written = saves - before;
  assert.ok(written >= 1 && written <= 3, `2000 progress lines took ${String(written)} record writes`);
  assert.equal(h.onDisk('vm1').lines.at(-1), 'metad-progress v1 step=s1999 status=started', 'the newest record was written');
  assert.equal(h.jm.status('vm1')?.lines.length, 50);
  h.jm.abort('vm1');
  await h.jm.settled('vm1');
  assert.equal(h.onDisk('vm1').outcome, 'aborted');
  assert.equal(r.instance, 'vm1');
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

test("the instance's install.timeoutSec is the default deadline: capped at the maximum, the request's timeoutSec wins", async () => {
  const h = harness(); // default 60 s, maximum 120 s
  await h.jm.init();
  const started = async (name: string, opts: { timeoutSec?: number; instanceTimeoutSec?: number }): Promise<JobRecord> => {
    const r = await h.jm.start(name, opts);
    await h.settle();
    return h.jm.status(name) ?? r;
  };
  const a = await started('a', { instanceTimeoutSec: 90 });
  assert.equal(a.timeoutSec, 90, "the instance's own deadline");
  assert.equal(Date.parse(a.deadlineAt ?? '') - Date.parse(a.startedAt ?? ''), 90_000, 'and it is the hard deadline');
  const b = await started('b', { instanceTimeoutSec: 86_400 });
  assert.equal(b.timeoutSec, 120, 'capped at appliance.maxTimeoutMs, not refused');
  await h.jm.stop();

  const h2 = harness({ maxConcurrent: 4 });
  await h2.jm.init();
  const c = await h2.jm.start('c', { timeoutSec: 30, instanceTimeoutSec: 90 });
  assert.equal(c.timeoutSec, 30, "the request's timeoutSec wins");
  await assert.rejects(h2.jm.start('d', { timeoutSec: 121, instanceTimeoutSec: 90 }), (e: DaemonError) => e.code === 'InvalidInput');
  const e = await h2.jm.start('e', {});
  assert.equal(e.timeoutSec, 60, 'neither: appliance.installTimeoutMs');
  await h2.jm.stop();
  h.done();
  h2.done();
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
  assert.deepEqual(
    h.jm.list().map((r) => r.state),
    ['booting', 'booting', 'queued', 'queued'],
  );
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
  assert.deepEqual(
    h.jm.list().map((r) => [r.instance, r.outcome, r.reason]),
    [
      ['a', 'aborted', 'aborted'],
      ['b', 'aborted', 'daemon stopped'],
      ['c', 'aborted', 'daemon stopped'],
      ['d', 'aborted', 'aborted'],
    ],
  );
  assert.deepEqual(h.hv.running(), [], 'stop destroyed every domain');
  h.done();
});

test('a job queued longer than maxQueueMs ends failed (queued too long), nothing created, secrets wiped; one that left the queue in time is not affected', async () => {
  const h = harness({ maxConcurrent: 1, maxQueueMs: 5_000, claimDeadlineMs: 600_000 });
  await h.jm.init();
  h.vault.replace('b', { k: SECRET });
  const a = await h.jm.start('a');
  await h.jm.start('b');
  await h.clock.advance(3_000);
  await h.jm.start('c'); // its limit counts from its own request
  await h.clock.advance(1_999);
  await h.settle();
  assert.equal(h.jm.status('b')?.state, 'queued', '1 ms before its limit');
  await h.clock.advance(1);
  await h.jm.settled('b');
  const b = h.onDisk('b');
  assert.deepEqual([b.state, b.outcome, b.reason, b.endedAt], ['failed', 'failed', 'queued too long', new Date(1_005_000).toISOString()]);
  assert.equal(b.startedAt, undefined);
  assert.deepEqual(h.vault.info('b'), []);
  assert.equal(h.jm.status('c')?.state, 'queued');
  assert.deepEqual(h.hv.opsOf('createTransient'), [a.domain], 'nothing was created for b');
  h.hv.powerOff(a.domain);
  await h.clock.advance(250);
  await h.jm.settled('a');
  await h.settle();
  assert.equal(h.jm.status('c')?.state, 'booting', 'c left the queue when a ended');
  await h.clock.advance(10_000);
  await h.settle();
  assert.equal(h.jm.status('c')?.state, 'booting', 'past its queue limit: a running job is not touched');
  await h.jm.stop();
  assert.equal(h.jm.status('c')?.reason, 'daemon stopped');
  h.done();
});

test('an abort keeps the progress lines the agent wrote just before it', async () => {
  const h = harness();
  await h.jm.init();
  await h.jm.start('vm1');
  await h.settle();
  h.pipes.get('vm1').toHost.push(progress('create', 'started'));
  h.jm.abort('vm1'); // before the next poll took the line
  await h.jm.settled('vm1');
  const r = h.onDisk('vm1');
  assert.equal(r.outcome, 'aborted');
  assert.deepEqual(r.lines, [progress('create', 'started').toString().trim()]);
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
  const again = new JobManager(h.deps);
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

/** What a daemon killed after a final destroy failed leaves: the domain running and an ended record saying so. */
async function leaveUndestroyed(h: ReturnType<typeof harness>): Promise<void> {
  const at = new Date(h.clock.now()).toISOString();
  await h.hv.createTransient('metad-install-x', '<domain><name>metad-install-x</name></domain>');
  await h.files.save({
    v: 1,
    instance: 'x',
    domain: 'metad-install-x',
    state: 'timed-out',
    outcome: 'timed-out',
    timeoutSec: 60,
    requestedAt: at,
    endedAt: at,
    lines: [],
    destroyError: 'cannot connect to libvirt: Connection refused',
  });
}

test('restart recovery: a domain whose final destroy failed (libvirtd down too long) is destroyed at the next start', async () => {
  const h = harness();
  await h.files.init();
  await leaveUndestroyed(h);
  await h.jm.init();
  const { adopted, orphans } = await h.jm.recover();
  assert.deepEqual([adopted, orphans], [[], ['metad-install-x']]);
  assert.deepEqual(h.hv.running(), []);
  assert.equal(h.jm.status('x')?.outcome, 'timed-out', 'the ended record stays as it was');
  h.done();
});

test('restart recovery: adopted with the recorded deadline, past-deadline destroyed, gone failed, queued aborted, orphans destroyed', async () => {
  const h = harness();
  await h.files.init();
  const t0 = h.clock.now();
  const iso = (ms: number): string => new Date(ms).toISOString();
  const live = (instance: string, domain: string, deadlineAt: number): JobRecord => ({
    v: 1,
    instance,
    domain,
    state: 'running',
    timeoutSec: 60,
    requestedAt: iso(t0 - 1000),
    startedAt: iso(t0 - 1000),
    deadlineAt: iso(deadlineAt),
    claimDeadlineAt: iso(t0),
    claimedAt: iso(t0 - 500),
    createdAt: iso(t0 - 900),
    firstReportAt: iso(t0 - 800),
    lines: ['metad-progress v1 step=net status=ok'],
  });
  const xml = (d: string): string => `<domain><name>${d}</name></domain>`;
  for (const d of ['metad-install-a', 'metad-install-b', 'metad-install-orphan', 'metad-install-s']) await h.hv.createTransient(d, xml(d));
  await h.files.save(live('a', 'metad-install-a', t0 + 30_000));
  await h.files.save(live('b', 'metad-install-b', t0 - 1));
  await h.files.save(live('c', 'metad-install-c', t0 + 30_000)); // its domain is gone
  await h.files.save({ ...live('q', 'metad-install-q', t0), state: 'queued' });
  await h.files.save(live('s', 'metad-install-s', t0 + 30_000));
  await h.files.save({ ...live('done', 'metad-install-done', t0), state: 'succeeded', outcome: 'succeeded' });
  const released: string[] = [];
  const jm = new JobManager({
    ...h.deps,
    release: (_i, domain) => {
      released.push(domain);
      return Promise.resolve();
    },
  });
  await jm.init();
  const { adopted, orphans } = await jm.recover();
  assert.deepEqual(adopted.sort(), ['a', 'b', 's']);
  assert.deepEqual(orphans, ['metad-install-orphan']);
  await h.clock.advance(0); // the runner's zero-length wait before its first check
  await jm.settled('b');
  assert.equal(jm.status('b')?.outcome, 'timed-out', 'a deadline that passed while the daemon was down ends the job at once');
  assert.equal(jm.status('c')?.outcome, 'failed');
  assert.deepEqual([jm.status('q')?.outcome, jm.status('q')?.reason], ['aborted', 'daemon restarted']);
  assert.equal(jm.status('done')?.outcome, 'succeeded', 'ended jobs are left alone');
  assert.equal(jm.secretsOpen('a'), true, 'an adopted job is live again');
  const a = jm.status('a');
  assert.deepEqual(
    [a?.state, a?.createdAt, a?.firstReportAt],
    ['running', iso(t0 - 900), iso(t0 - 800)],
    'it resumes as it was (running, its times kept), not as a fresh boot',
  );
  // s: the agent finishes after the restart; its earlier lines are kept.
  h.pipes.get('s').toHost.push(progress('final', 'succeeded'));
  await h.clock.advance(250);
  h.hv.powerOff('metad-install-s');
  await h.clock.advance(250);
  await jm.settled('s');
  assert.equal(jm.status('s')?.outcome, 'succeeded');
  assert.deepEqual(jm.status('s')?.lines, ['metad-progress v1 step=net status=ok', 'metad-progress v1 step=final status=succeeded']);
  // a: destroyed exactly at its recorded deadline.
  await h.clock.advance(30_000 - 500);
  await jm.settled('a');
  assert.equal(jm.status('a')?.outcome, 'timed-out');
  assert.equal(jm.status('a')?.endedAt, iso(t0 + 30_000));
  assert.deepEqual(h.hv.running(), [], 'no domain left');
  assert.deepEqual(released.sort(), ['metad-install-a', 'metad-install-b', 'metad-install-c', 'metad-install-q', 'metad-install-s']);
  h.done();
});

/** A harness whose manager knows the instance's incarnation (as the daemon wires it). */
function withIncarnations(settings: Partial<JobSettings> = {}) {
  const incarnations = new Map<string, string>([['vm1', 'uuid-1@t1']]);
  return { ...harness(settings, { incarnation: (n) => incarnations.get(n) }), incarnations };
}

test('a secret printed into a progress line is redacted in every record, the final one included, claim-once and claimed ones too', async () => {
  const h = harness();
  await h.jm.init();
  const ONCE = 'claim-once-value-77';
  h.vault.replace('vm1', { root_password: SECRET });
  h.vault.merge('vm1', { once: ONCE }, { claimOnce: true });
  const r = await h.jm.start('vm1');
  await h.settle();
  // The appliance claims (the guest door: noteClaim, then the values are consumed).
  h.jm.noteClaim('vm1');
  assert.deepEqual(Object.keys(h.vault.liveValues('vm1', true)).sort(), ['once', 'root_password']);
  assert.deepEqual(Object.keys(h.vault.liveValues('vm1', false)), ['root_password'], 'the claim-once value is gone from the vault');
  const seen: JobRecord[] = [];
  h.jm.on('change', (x: JobRecord) => seen.push(x));
  h.pipes.get('vm1').toHost.push(Buffer.from(`metad-progress v1 step=create status=ok leak=${SECRET}\n`));
  h.pipes.get('vm1').toHost.push(Buffer.from(`metad-progress v1 step=create status=ok once=${ONCE}\n`));
  await h.clock.advance(250);
  await h.settle();
  // The final line arrives with the domain's end: the secrets are wiped before the final record is built.
  h.pipes.get('vm1').toHost.push(Buffer.from(`metad-progress v1 step=final status=succeeded x=${SECRET}\n`));
  h.hv.powerOff(r.domain);
  await h.clock.advance(250);
  await h.jm.settled('vm1');
  assert.deepEqual(h.vault.info('vm1'), [], 'wiped');
  const final = h.jm.status('vm1');
  assert.equal(final?.outcome, 'succeeded');
  assert.deepEqual(final.lines, [REDACTED, REDACTED, REDACTED]);
  const text = readFileSync(join(h.dir, 'jobs', 'vm1.json'), 'utf8');
  for (const v of [SECRET, ONCE]) {
    assert.ok(!text.includes(v), 'not in the file');
    assert.ok(!JSON.stringify(seen).includes(v), 'not in any record a watcher saw');
    assert.ok(!JSON.stringify(h.jm.list()).includes(v), 'not in the list');
  }
  h.done();
});

/** One job of a manager whose run fails as `how` says; its record (memory and file) and the log. */
async function failedRun(how: {
  createError?: Error;
  prepareError?: Error;
  destroyError?: Error;
  cleanupError?: Error;
}): Promise<{ rec: JobRecord; file: string; log: string }> {
  const h = harness();
  const { sink, log } = sinkLogger();
  const jm = new JobManager({
    ...h.deps,
    log,
    prepare: (_instance, domain) =>
      how.prepareError
        ? Promise.reject(how.prepareError)
        : Promise.resolve({
            xml: `<domain><name>${domain}</name></domain>`,
            cleanup: () => (how.cleanupError ? Promise.reject(how.cleanupError) : Promise.resolve()),
          }),
  });
  await jm.init();
  h.hv.failNextCreate = how.createError;
  h.hv.failDestroy = how.destroyError;
  await jm.start('vm1');
  await h.settle();
  if (how.destroyError || how.cleanupError) {
    jm.abort('vm1');
    for (let t = 0; t < 10_000; t += 250) {
      await h.clock.advance(250); // the destroy's retries wait on the clock
      await h.settle();
    }
  }
  await jm.settled('vm1');
  const rec = jm.status('vm1');
  assert.ok(rec);
  const file = readFileSync(join(h.dir, 'jobs', 'vm1.json'), 'utf8');
  h.done();
  return { rec, file, log: sink.text };
}

test("a hypervisor's or a tool's error text (host paths) goes to the log, never to a record: create, preparation, comm network, destroy, cleanup", async () => {
  const PATH = '/var/lib/metad/private/disk0.raw';
  const create = await failedRun({ createError: new Error(`Cannot access storage file '${PATH}': Permission denied`) });
  assert.deepEqual([create.rec.outcome, create.rec.reason], ['failed', CREATE_FAILED]);
  const prepare = await failedRun({ prepareError: new Error(`qemu-img: ${PATH}: Permission denied`) });
  assert.deepEqual([prepare.rec.outcome, prepare.rec.reason], ['failed', CANNOT_START]);
  const comm = await failedRun({ prepareError: new CommError('ip tuntap add failed: open /dev/net/tun: No such device') });
  assert.deepEqual([comm.rec.outcome, comm.rec.reason], ['failed', 'ip tuntap add failed: open <path>: No such device']);
  assert.ok(comm.log.includes('/dev/net/tun') && !comm.file.includes('/dev/net/tun'));
  const destroy = await failedRun({ destroyError: new Error(`cannot open monitor ${PATH}`) });
  assert.deepEqual([destroy.rec.outcome, destroy.rec.destroyError], ['aborted', 'failed (details in the daemon log)']);
  const cleanup = await failedRun({ cleanupError: new Error(`rm ${PATH}: EACCES`) });
  assert.deepEqual([cleanup.rec.outcome, cleanup.rec.cleanupError], ['aborted', 'failed (details in the daemon log)']);
  for (const [what, r] of Object.entries({ create, prepare, destroy, cleanup })) {
    assert.ok(!JSON.stringify(r.rec).includes(PATH) && !r.file.includes(PATH), `${what}: no host path in the record`);
    assert.ok(r.log.includes(PATH), `${what}: the text is in the log`);
  }
});

test('scrubRecord: a record it made passes it again unchanged (records read back at start need no second pass)', () => {
  const at = new Date(0).toISOString();
  const r: JobRecord = {
    v: 1,
    instance: 'vm1',
    domain: 'metad-install-x',
    state: 'failed',
    outcome: 'failed',
    timeoutSec: 60,
    requestedAt: at,
    lines: ['metad-progress v1 step=a status=ok\u001b[2J\r', 'x'.repeat(5 * MAX_LINE_CHARS), `leak ${SECRET}`, ''],
    destroyError: 'libvirt: /var/lib/libvirt/qemu/x.monitor: refused',
    cleanupError: 'rm /run/metad/jobs/x.console.log: EACCES',
  };
  const once = scrubRecord(r, [SECRET]);
  assert.deepEqual(once.lines.slice(2), [REDACTED, '']);
  assert.deepEqual(scrubRecord(once, [SECRET]), once);
  assert.deepEqual(scrubRecord(once, []), once);
});

test('control characters in guest-written progress lines never reach a record; long lines are cut', async () => {
  const h = harness();
  await h.jm.init();
  const r = await h.jm.start('vm1');
  await h.settle();
  h.pipes.get('vm1').toHost.push(Buffer.from('metad-progress v1 step=create status=ok\r\v\f\n'));
  const long = Array.from({ length: 20 }, (_, i) => ` k${String(i)}=${'v'.repeat(100)}`).join('');
  h.pipes.get('vm1').toHost.push(Buffer.from(`metad-progress v1 step=create status=ok${long}\t\f\r\n`));
  h.pipes.get('vm1').toHost.push(Buffer.from(`metad-progress v1 step=create status=ok\t\u001b[2J\n`));
  await h.clock.advance(250);
  await h.settle();
  h.hv.powerOff(r.domain);
  await h.clock.advance(250);
  await h.jm.settled('vm1');
  const lines = h.onDisk('vm1').lines;
  assert.equal(lines.length, 2);
  assert.equal(lines[0], 'metad-progress v1 step=create status=ok');
  // eslint-disable-next-line no-control-regex
  for (const l of lines) assert.doesNotMatch(l, /[\u0000-\u001f\u007f-\u009f]/);
  assert.ok(lines[1]!.length <= MAX_LINE_CHARS && lines[1]!.endsWith('…'), 'cut at MAX_LINE_CHARS');
  h.done();
});

test('a job belongs to one incarnation: a re-registered instance sees no old job, and the old job never wipes its secrets', async () => {
  const h = withIncarnations();
  await h.jm.init();
  h.vault.replace('vm1', { a: SECRET });
  const r = await h.jm.start('vm1');
  await h.settle();
  assert.equal(h.jm.status('vm1')?.incarnation, 'uuid-1@t1');
  // vm1 removed and registered again (a new incarnation) with fresh secrets while the old appliance still runs.
  h.incarnations.set('vm1', 'uuid-2@t2');
  h.vault.replace('vm1', { fresh: 'new-secret' });
  assert.equal(h.jm.status('vm1'), undefined, 'the new instance has no job');
  assert.equal(h.jm.secretsOpen('vm1'), false, "the old job does not open the new instance's secrets");
  assert.deepEqual(h.jm.list(), []);
  const forgotten = h.jm.forget('vm1', 'uuid-1@t1');
  let answered = false;
  void forgotten.then(() => (answered = true));
  await h.settle();
  assert.equal(answered, false, 'forget (DELETE) waits for the domain to be gone');
  await h.clock.advance(250);
  await forgotten;
  assert.equal(h.hv.running().length, 0, 'the old appliance is destroyed before forget resolves');
  assert.equal(h.hv.calls.filter((c) => c.op === 'destroy' && c.name === r.domain).length >= 1, true);
  assert.deepEqual(Object.keys(h.vault.liveValues('vm1', false)), ['fresh'], "the new incarnation's secret survived");
  assert.ok(!readdirSync(join(h.dir, 'jobs')).includes('vm1.json'), 'the old record is deleted');
  // A restart: an ended record of another incarnation is not shown, and its file goes.
  const old: JobRecord = {
    v: 1,
    instance: 'vm1',
    incarnation: 'uuid-0@t0',
    domain: 'metad-install-old',
    state: 'succeeded',
    outcome: 'succeeded',
    timeoutSec: 60,
    requestedAt: new Date(0).toISOString(),
    lines: [],
  };
  await h.files.save(old);
  const again = new JobManager(h.deps); // a restart: the same files and incarnations
  assert.deepEqual(await again.init(), []);
  assert.equal(again.status('vm1'), undefined);
  assert.ok(!readdirSync(join(h.dir, 'jobs')).includes('vm1.json'));
  h.done();
});

test('holds: the instance is held from the request (admit included) to the end of its job', async () => {
  const h = harness();
  await h.jm.init();
  assert.equal(h.jm.holds('vm1'), false);
  const started = h.jm.start('vm1');
  assert.equal(h.jm.holds('vm1'), true, 'held while admitted');
  const r = await started;
  await h.settle();
  assert.equal(h.jm.holds('vm1'), true);
  h.hv.powerOff(r.domain);
  await h.clock.advance(250);
  await h.jm.settled('vm1');
  assert.equal(h.jm.holds('vm1'), false);
  h.done();
});

// ------------------------------------------------ a hypervisor that never answers

test('a state() that never answers: the job still ends at its hard deadline, recorded timed-out, cleaned up', async () => {
  const h = harness({ defaultTimeoutMs: 10_000, claimDeadlineMs: 60_000 });
  await h.jm.init();
  await h.jm.start('vm1');
  await h.settle();
  assert.equal(h.jm.status('vm1')?.state, 'booting');
  h.hv.stop(['state']);
  for (let t = 0; t < 10_000; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  await h.jm.settled('vm1');
  const r = h.onDisk('vm1');
  assert.equal(r.outcome, 'timed-out');
  assert.equal(r.endedAt, new Date(1_000_000 + 10_000).toISOString());
  assert.equal(r.destroyError, undefined);
  assert.deepEqual(h.hv.running(), []);
  assert.equal(h.cleaned.length, 1);
  h.done();
});

test('libvirtd stopped (no call answers): abort ends the job at once; the domain it could not destroy is a leftover', async () => {
  const h = harness({ defaultTimeoutMs: 60_000, claimDeadlineMs: 60_000 });
  await h.jm.init();
  const left: string[] = [];
  h.deps.leftovers = { add: (items) => left.push(...items.map((i) => `${i.kind} ${i.name}`)) }; // the manager reads its deps live
  const rec = await h.jm.start('vm1');
  await h.settle();
  h.hv.stop();
  await h.clock.advance(250);
  await h.settle();
  h.jm.abort('vm1');
  await h.settle();
  await h.clock.advance(10_000); // the destroy's bound (CALL_BOUNDS.destroy)
  await h.jm.settled('vm1');
  const r = h.onDisk('vm1');
  assert.equal(r.outcome, 'aborted');
  assert.equal(r.endedAt, new Date(1_000_250).toISOString(), 'ended at the abort');
  assert.match(r.destroyError ?? '', /no answer within/);
  assert.deepEqual(left, [`domain ${rec.domain}`], 'reported, not swallowed');
  h.hv.resume();
  h.done();
});

test('restart recovery: an orphan whose destroy fails is reported as a leftover and not counted destroyed', async () => {
  const h = harness();
  await h.files.init();
  await leaveUndestroyed(h);
  const { sink, log } = sinkLogger();
  const left: string[] = [];
  const jm = new JobManager({
    ...h.deps,
    log,
    leftovers: { add: (items) => left.push(...items.map((i) => `${i.kind} ${i.name}`)) },
  });
  await jm.init();
  h.hv.failDestroy = new Error('Cannot write data: Broken pipe');
  await jm.recover();
  assert.deepEqual(h.hv.running(), ['metad-install-x'], 'still running');
  assert.deepEqual(left, ['domain metad-install-x']);
  assert.match(sink.text, /"orphans":0,"orphansLeft":1/);
  h.done();
});

test('records read back at start pass the same scrub: a hand-edited or older file shows no control character, no overlong line, no foreign error text', async () => {
  const h = harness();
  await h.files.init();
  const at = new Date(0).toISOString();
  const hostile = {
    v: 1,
    instance: 'x',
    domain: 'metad-install-x',
    state: 'failed',
    outcome: 'failed',
    timeoutSec: 60,
    requestedAt: at,
    endedAt: at,
    lines: ['\u001b]0;owned\u0007step \u001b[31mred\r', 'y'.repeat(5000)],
    destroyError: 'virDomainDestroy: /var/lib/libvirt/qemu/secret.img busy',
  };
  writeFileSync(join(h.files.dir, 'x.json'), JSON.stringify(hostile));
  // lines of the wrong type: not a record (skipped like any unreadable file), never a crash at start.
  writeFileSync(join(h.files.dir, 'y.json'), JSON.stringify({ ...hostile, instance: 'y', lines: 'not a list' }));
  await h.jm.init();
  const r = h.jm.status('x');
  assert.ok(r, 'the record is shown');
  const control = (l: string): boolean => {
    for (let k = 0; k < l.length; k++) {
      const c = l.charCodeAt(k);
      if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
    }
    return false;
  };
  assert.ok(!r.lines.some(control), JSON.stringify(r.lines));
  assert.ok(r.lines.every((l) => l.length <= MAX_LINE_CHARS));
  assert.ok(!JSON.stringify(r).includes('/var/lib/libvirt'), 'a foreign error text names no host path');
  assert.equal(h.jm.status('y'), undefined);
  h.done();
});
