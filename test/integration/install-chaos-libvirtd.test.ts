/**
 * A lost libvirt connection, for real: a private libvirtd in a test namespace
 * (test/support/libvirtd.ts) restarted (SIGTERM), killed (SIGKILL) and kept down under a live
 * LibvirtHypervisor and under the appliance runner. The domain is a bare QEMU guest with nothing
 * to boot (the firmware idles): what is tested is the connection, not the appliance.
 *  - the hypervisor reconnects on the next call after each restart and finds the domain again
 *    (qemu outlives libvirtd, the new libvirtd re-attaches); while libvirtd is down a call fails
 *    at once with HypervisorUnavailable, and works again once it is back;
 *  - the runner keeps supervising across a restart (a domain that vanishes afterwards is seen);
 *  - a deadline that passes while libvirtd is down still ends the run (timed-out), and the
 *    domain is destroyed once libvirtd is back: no domain, no qemu left;
 *  - libvirtd stopped (SIGSTOP: no call is answered or refused) under an install job: the job
 *    still ends at its deadline and its record says so (timed-out, the destroy that got no
 *    answer); the domain is a leftover, and after SIGCONT the leftover retry destroys it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { skipOrFail } from '../support/env.js';
import { canUseNetns, createNetns } from '../support/netns.js';
import { libvirtdMissing, netnsPids, startLibvirtd } from '../support/libvirtd.js';
import { LibvirtHypervisor, loadBinding, MISSING_BINDING } from '../../appliance/libvirt.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import { QEMU_X86 } from '../../appliance/domain-xml.js';
import { runAppliance, type RunRecord } from '../../appliance/runner.js';
import { BoundedHypervisor } from '../../appliance/hypervisor.js';
import { systemClock } from '../../daemon/clock.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobManager } from '../../daemon/jobs/manager.js';
import { JobRecordFiles, type JobRecord } from '../../daemon/jobs/record.js';
import { Leftovers } from '../../daemon/jobs/leftovers.js';
import { SecretVault } from '../../daemon/registry/vault.js';
import { PipeRegistry } from '../../daemon/registry/pipes.js';
import { sinkLogger } from '../support/sink.js';
import { until } from '../support/wait.js';

const bareXml = (name: string): string =>
  `<domain type='qemu'><name>${name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>` +
  `<os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>${QEMU_X86}</emulator></devices>` +
  `<on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash></domain>`;

/** The live qemu processes in the namespace (a killed qemu may wait a while for its reaper: a zombie is not live). */
async function qemus(ns: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await netnsPids(ns)) {
    const stat = await readFile(`/proc/${String(pid)}/stat`, 'utf8').catch(() => '');
    const m = /^\d+ \((.*)\) (\S)/.exec(stat);
    if (m?.[1]?.startsWith('qemu') && m[2] !== 'Z') out.push(pid);
  }
  return out;
}

/**
 * A qemu re-attached by a restarted libvirtd is not its child: destroying it races libvirt's
 * own clean-up of the transient domain, and the destroy may report it gone. Either way it is.
 */
const DESTROYED = /^(destroyed|gone)$/;

async function setup(
  t: test.TestContext,
): Promise<{ ns: string; lv: Awaited<ReturnType<typeof startLibvirtd>>; hv: LibvirtHypervisor } | undefined> {
  const binding = await loadBinding().then(
    () => undefined,
    () => MISSING_BINDING,
  );
  if (skipOrFail(t, canUseNetns().why ?? libvirtdMissing() ?? binding)) return undefined;
  const ns = await createNetns('metadtc');
  const lv = await startLibvirtd(ns).catch(async (e: unknown) => {
    await ns.destroy();
    throw e;
  });
  const hv = new LibvirtHypervisor(lv.uri);
  t.after(async () => {
    await hv.close();
    await lv.stop();
    await ns.destroy();
  });
  return { ns: ns.name, lv, hv };
}

test('libvirtd restarted, killed, down: the hypervisor reconnects on the next call and finds its domain again', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { lv, hv } = s;
  const name = `metadt-chaos-${String(process.pid)}-a`;
  await hv.createTransient(name, bareXml(name));
  assert.equal(await hv.state(name), 'running');
  const [qemu] = await qemus(s.ns);
  assert.ok(qemu !== undefined);

  await t.test('libvirtd restarted cleanly (SIGTERM): the next call reconnects and finds the domain running', async () => {
    await lv.restart('SIGTERM');
    assert.equal(await hv.state(name), 'running', 'after a clean restart');
    assert.equal(hv.reconnects, 1);
  });

  await t.test('libvirtd killed and restarted (SIGKILL): the next call reconnects and lists the domain', async () => {
    await lv.restart('SIGKILL');
    assert.deepEqual(await hv.list('metadt-chaos-'), [name], 'after libvirtd was killed');
    assert.equal(hv.reconnects, 2);
  });

  await t.test('libvirtd down: calls fail with HypervisorUnavailable, the guest lives on; back up: found and destroyed', async () => {
    await lv.down('SIGKILL');
    await assert.rejects(hv.state(name), HypervisorUnavailable);
    await assert.rejects(hv.destroy(name), HypervisorUnavailable);
    assert.deepEqual(await qemus(s.ns), [qemu], 'the guest lives on without libvirtd');
    await lv.up();
    assert.equal(await hv.state(name), 'running');
    assert.match(await hv.destroy(name), DESTROYED);
    assert.equal(await hv.state(name), 'gone');
    assert.deepEqual(await qemus(s.ns), []);
  });
});

test('the runner across libvirtd restarts: it keeps watching; a deadline passed while libvirtd is down still ends the run and the domain is destroyed once it is back', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { lv, hv } = s;
  const prefix = `metadt-chaos-${String(process.pid)}-`;
  const states = (): { seen: string[]; wait: (st: string) => Promise<void>; onChange: (r: RunRecord) => void } => {
    const seen: string[] = [];
    const waiters: { st: string; resolve: () => void }[] = [];
    return {
      seen,
      wait: (st) => (seen.includes(st) ? Promise.resolve() : new Promise((resolve) => waiters.push({ st, resolve }))),
      onChange: (r) => {
        seen.push(r.state);
        for (const w of waiters.filter((x) => x.st === r.state)) w.resolve();
      },
    };
  };

  await t.test('restarted (and killed) mid-run: the runner keeps watching and sees the domain vanish (a power-off)', async () => {
    // The power-off is played here by a second client destroying the domain.
    const a = `${prefix}watch`;
    const sa = states();
    const runA = runAppliance(
      { name: a, xml: bareXml(a), deadlineAt: Date.now() + 600_000 },
      { hv, clock: systemClock, pollMs: 100, takeProgress: () => '', onChange: sa.onChange },
    );
    await sa.wait('booting');
    await lv.restart('SIGTERM');
    await lv.restart('SIGKILL');
    const other = new LibvirtHypervisor(lv.uri);
    assert.deepEqual(sa.seen, ['booting'], 'still watching after the restarts');
    assert.match(await other.destroy(a), DESTROYED);
    await other.close();
    const ra = await runA;
    assert.equal(ra.state, 'failed', JSON.stringify(ra));
    assert.equal(ra.reason, 'powered off without a final report');
    assert.ok(hv.reconnects >= 1, 'the runner reconnected');
  });

  await t.test('libvirtd down across the deadline: the run ends timed-out; its domain is destroyed once libvirtd is back', async () => {
    // The run's clock is real time plus a skew the test moves past the deadline once libvirtd is
    // down (no waiting for a real deadline).
    const b = `${prefix}deadline`;
    const sb = states();
    let skew = 0;
    const clock = {
      now: () => Date.now() + skew,
      mono: () => systemClock.mono() + skew,
      sleep: (ms: number, signal?: AbortSignal) => systemClock.sleep(ms, signal),
    };
    const deadlineAt = clock.now() + 600_000;
    const runB = runAppliance(
      { name: b, xml: bareXml(b), deadlineAt },
      {
        hv,
        clock,
        pollMs: 100,
        takeProgress: () => '',
        onChange: sb.onChange,
        destroyRetryMs: [250, 500, 1000, 2000, 4000, 8000, 16_000],
      },
    );
    await sb.wait('booting');
    const [qemu] = await qemus(s.ns);
    assert.ok(qemu !== undefined);
    await lv.down('SIGKILL');
    skew = 600_000;
    await sb.wait('timed-out');
    assert.deepEqual(await qemus(s.ns), [qemu], 'still running: nobody could destroy it');
    await lv.up();
    const rb = await runB;
    assert.equal(rb.state, 'timed-out');
    assert.equal(rb.destroyError, undefined, JSON.stringify(rb));
    assert.ok(rb.endedAt! >= deadlineAt);
    assert.deepEqual(await hv.list(prefix), []);
    assert.deepEqual(await qemus(s.ns), [], 'no qemu left');
  });
});

test('libvirtd SIGSTOPped under an install job: the job ends at its deadline anyway, the record says so; after SIGCONT the leftover domain is destroyed', async (t) => {
  const s = await setup(t);
  if (!s) return;
  const { lv } = s;
  const dir = await mkdtemp(join(tmpdir(), 'metad-sigstop-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { sink, log } = sinkLogger();
  const hv = new BoundedHypervisor(s.hv, systemClock, { createTransient: 60_000, state: 2_000, destroy: 2_000, list: 2_000 });
  const leftovers = new Leftovers({
    clock: systemClock,
    log,
    retryMs: 500,
    remove: async (item) => {
      await hv.destroy(item.name);
      if (hv.busy(item.name)) throw new Error('its create has not answered yet');
    },
  });
  const jm = new JobManager({
    clock: systemClock,
    log,
    vault: new SecretVault(systemClock, 7200),
    pipes: new PipeRegistry(1 << 16),
    files: new JobRecordFiles(join(dir, 'jobs')),
    settings: { defaultTimeoutMs: 10_000, maxTimeoutMs: 60_000, maxConcurrent: 1, claimDeadlineMs: 600_000, pollMs: 100 },
    hypervisor: () => Promise.resolve(hv),
    prepare: (_instance, domain) => Promise.resolve({ xml: bareXml(domain), cleanup: () => Promise.resolve() }),
    leftovers,
  });
  let domain = '';
  const stoppedUnderAJob = async (): Promise<void> => {
    await t.test('libvirtd SIGSTOPped while the job boots: the job ends at its deadline, timed-out, its domain a leftover', async () => {
      const ended = new Promise<JobRecord>((resolve) => jm.once('ended', resolve));
      const booting = new Promise<void>((resolve) => {
        const on = (r: JobRecord): void => {
          if (r.state === 'booting') {
            jm.off('change', on);
            resolve();
          }
        };
        jm.on('change', on);
      });
      ({ domain } = await jm.start('sigstop'));
      await booting;
      const [qemu] = await qemus(s.ns);
      assert.ok(qemu !== undefined, 'the domain runs');
      await lv.pause(); // SIGSTOP: every call from now on hangs

      const rec = await ended; // before the fix this never came: state() was awaited forever
      assert.equal(rec.outcome, 'timed-out', JSON.stringify(rec));
      assert.equal(rec.reason, 'hard deadline');
      assert.ok(Date.parse(rec.endedAt ?? '') >= Date.parse(rec.deadlineAt ?? ''), 'ended at (not before) its deadline');
      assert.match(rec.destroyError ?? '', /destroy: no answer within 2000 ms/);
      assert.deepEqual(
        leftovers.list().map((l) => [l.kind, l.name]),
        [['domain', domain]],
      );
      assert.match(sink.text, /"msg":"install leftover not removed"/);
      assert.deepEqual(await qemus(s.ns), [qemu], 'still running: libvirtd could not destroy it');
    });

    await t.test('after SIGCONT the leftover retry destroys the domain: no domain, no qemu left', async () => {
      await lv.resume(); // SIGCONT
      await until('the leftover retry destroyed it', () => leftovers.size === 0, {
        ms: 60_000,
        detail: () => JSON.stringify(leftovers.list()),
      });
      assert.match(sink.text, /"msg":"install leftover removed"/);
      assert.deepEqual(await s.hv.list(domain), []);
      await until('no qemu left', async () => (await qemus(s.ns)).length === 0, 10_000);
    });
  };
  await jm.init();
  try {
    await stoppedUnderAJob();
  } finally {
    await lv.resume().catch(() => undefined); // never leave it stopped: the clean-up talks to it
    await jm.stop();
    await leftovers.stop();
  }
});
