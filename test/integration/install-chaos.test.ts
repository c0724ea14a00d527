/**
 * Install jobs through the real daemon when things break (test/support/install-env.ts: a test
 * namespace, a private libvirtd, the real metad with network.mode routed, the real appliance
 * under QEMU):
 *  1. metad killed (-9) mid-job and started again: a job whose domain still runs is adopted with
 *     its recorded deadline (unchanged) and ends timed-out at it; a job whose deadline passed
 *     while metad was down is destroyed at the restart (timed-out); a job whose appliance powered
 *     off while metad was down (longer than its agent waits: the claim deadline) ends failed (its
 *     final report is lost) and its tap, overlay and console log are removed;
 *  2. libvirtd killed and restarted mid-job (twice): metad reconnects; a job still succeeds, a
 *     hung one still ends at its deadline;
 *  3. four installs at once with maxConcurrent 2: two run, two wait queued (their secrets not
 *     served), then run; all succeed;
 *  4. metad killed (-9) while two IMDSv2-required appliances boot and started again only once
 *     their agents have found it gone, then killed again while one runs its create script (the
 *     other has ended: a kill -9 loses what metad acknowledged but had not yet written): the
 *     agents keep retrying (until the claim deadline), PUT new tokens for the new metad, and both
 *     installs succeed with every progress line.
 * After each: no domain, appliance tap, nft element, overlay, console log or qemu process is left,
 * and nothing left the namespace except through the appliance taps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { until } from '../support/wait.js';
import { skipOrFail } from '../support/env.js';
import { createAfter, HANG, installEnvMissing, startInstallEnv, type InstallEnv, type InstallInstance } from '../support/install-env.js';
import type { JobRecord } from '../../daemon/jobs/record.js';

const inst = (name: string, n: number, create: string, doc?: Record<string, unknown>): InstallInstance => ({
  name,
  ip: `169.254.81.${String(n)}`,
  mac: `52:54:00:50:81:${n.toString(16).padStart(2, '0')}`,
  create,
  ...(doc ? { doc } : {}),
});

async function env(t: test.TestContext, appliance: Record<string, unknown>): Promise<InstallEnv | undefined> {
  if (skipOrFail(t, await installEnvMissing())) return undefined;
  const e = await startInstallEnv(appliance);
  t.after(() => e.close());
  return e;
}

/** Appliances under TCG on a loaded 2-core machine: generous waits (they end the test, they are not timings). */
const BOOT_MS = 180_000;
const ms = (iso: string | undefined): number => Date.parse(iso ?? '');
const reached = (r: JobRecord, step: string): boolean => r.lines.some((l) => l.includes(`step=${step} `));

async function install(e: InstallEnv, name: string, timeoutSec: number): Promise<JobRecord> {
  const r = await e.ctl('install', name, '--timeout', String(timeoutSec));
  assert.equal(r.code, 0, `${name}: ${r.err}`);
  return e.status(name);
}

async function nothingLeft(e: InstallEnv): Promise<void> {
  // A destroyed qemu whose parent is PID 1 (re-attached by a restarted libvirtd) may take a moment to go.
  await until('nothing left', async () => (await e.leftovers()).length === 0, 15_000).catch(async () =>
    assert.deepEqual(await e.leftovers(), []),
  );
  assert.equal(await e.ns.tripCount(), 0, `nothing left but through the taps: ${(await e.ns.tripDestinations()).join(', ')}`);
}

test('metad killed -9 mid-job and restarted: a running domain is adopted with its recorded deadline, one past its deadline destroyed, a powered-off one failed and released', async (t) => {
  // The agent waits for metad up to the claim deadline per outage (metad.claim): done1 powers
  // off while metad is down only once that has passed, so it is kept short here.
  const e = await env(t, { maxConcurrent: 4, claimDeadlineMs: 60_000 });
  if (!e) return;
  const live = inst('live1', 2, HANG);
  const late = inst('late1', 3, HANG);
  const done = inst('done1', 4, createAfter(8));
  for (const i of [live, late, done]) await e.register(i);
  const before = new Map<string, JobRecord>();
  let liveOnDisk: JobRecord | undefined;

  await t.test('three jobs reach their create script; metad is killed -9', async () => {
    await install(e, live.name, 200);
    await install(e, late.name, 30);
    await install(e, done.name, 240);
    // Kill once every agent is inside its create script (it has read what it needs from metad).
    await until(
      'all three in create',
      async () => {
        for (const i of [live, late, done]) before.set(i.name, await e.status(i.name));
        return [...before.values()].every((r) => reached(r, 'create'));
      },
      BOOT_MS,
    );
    e.metad.kill();
    await until('metad gone', () => e.metad.child.exitCode !== null || e.metad.child.signalCode !== null);
  });

  await t.test('while metad is down, done1 powers off and late1 passes its deadline; live1 and late1 keep running', async () => {
    const domains = [...before.values()].map((r) => r.domain).sort();
    const lateDeadline = ms(before.get(late.name)?.deadlineAt);
    const doneDomain = before.get(done.name)?.domain ?? '';
    await until(
      'done1 powered off and late1 past its deadline',
      async () => !(await e.hv.list(doneDomain)).includes(doneDomain) && Date.now() > lateDeadline,
      BOOT_MS,
    );
    assert.deepEqual(await e.hv.list('metad-install-'), domains.filter((d) => d !== doneDomain).sort(), 'live1 and late1 still run');
    // What the killed metad had written of live1's record (a kill -9 may lose its newest lines).
    liveOnDisk = JSON.parse(await readFile(join(e.dir, 'state', 'jobs', `${live.name}.json`), 'utf8')) as JobRecord;
    assert.ok(liveOnDisk.lines.length > 0);
    await e.restart();
  });

  await t.test('after the restart: late1, past its recorded deadline, is timed out', async () => {
    const lateRec = await e.watchEnd(late.name);
    assert.equal(lateRec.outcome, 'timed-out', JSON.stringify(lateRec));
    assert.equal(lateRec.deadlineAt, before.get(late.name)?.deadlineAt);
  });

  await t.test('after the restart: done1, powered off meanwhile, failed (gone across a daemon restart) and released', async () => {
    const doneRec = await e.watchEnd(done.name);
    assert.equal(doneRec.outcome, 'failed', JSON.stringify(doneRec));
    assert.match(doneRec.reason ?? '', /gone across a daemon restart/);
  });

  await t.test('after the restart: live1 is adopted, ends at the deadline of its record, keeps its earlier progress lines', async () => {
    const liveBefore = before.get(live.name);
    assert.equal((await e.status(live.name)).state, 'running', 'adopted: still running after the restart');
    assert.ok(Date.now() < ms(liveBefore?.deadlineAt), 'its deadline is still ahead');
    const liveRec = await e.watchEnd(live.name);
    assert.equal(liveRec.outcome, 'timed-out', JSON.stringify(liveRec));
    assert.equal(liveRec.deadlineAt, liveBefore?.deadlineAt, 'the deadline re-armed from the record, not moved');
    assert.ok(ms(liveRec.endedAt) >= ms(liveRec.deadlineAt));
    assert.ok(
      ms(liveRec.destroyedAt) - ms(liveRec.deadlineAt) <= 1000,
      `destroyed ${String(ms(liveRec.destroyedAt) - ms(liveRec.deadlineAt))} ms after the deadline`,
    );
    assert.ok(liveOnDisk, "live1's record as the killed metad left it (see the second phase)");
    assert.deepEqual(
      liveRec.lines.slice(0, liveOnDisk.lines.length),
      liveOnDisk.lines,
      'the progress lines recorded before the restart are kept',
    );
  });

  await t.test('nothing is left (domains, taps, set elements, overlays), nothing past the tripwire', async () => {
    await nothingLeft(e);
  });
});

test('libvirtd killed and restarted mid-job: metad reconnects; a job still succeeds and a hung one still ends at its deadline', async (t) => {
  const e = await env(t, { maxConcurrent: 4, claimDeadlineMs: 120_000 });
  if (!e) return;
  const ok = inst('ok2', 5, createAfter(6));
  const hung = inst('hang2', 6, HANG);
  for (const i of [ok, hung]) await e.register(i);
  await install(e, ok.name, 240);
  await install(e, hung.name, 40);
  await until(
    'both in create',
    async () => reached(await e.status(ok.name), 'create') && reached(await e.status(hung.name), 'create'),
    BOOT_MS,
  );
  await e.libvirtd.restart('SIGKILL');
  await e.libvirtd.restart('SIGTERM');
  const [okRec, hungRec] = await Promise.all([e.watchEnd(ok.name), e.watchEnd(hung.name)]);
  assert.equal(okRec.outcome, 'succeeded', JSON.stringify(okRec));
  assert.equal(hungRec.outcome, 'timed-out', JSON.stringify(hungRec));
  assert.ok(ms(hungRec.endedAt) >= ms(hungRec.deadlineAt));
  assert.equal(hungRec.destroyError, undefined);
  // The qemu's parent is PID 1 after a libvirtd restart: destroying it takes longer here (≈1.6 s).
  assert.ok(
    ms(hungRec.destroyedAt) - ms(hungRec.deadlineAt) <= 5000,
    `destroyed ${String(ms(hungRec.destroyedAt) - ms(hungRec.deadlineAt))} ms after the deadline`,
  );
  await nothingLeft(e);
});

test('four installs at once with maxConcurrent 2: two run, two wait queued, then run; all succeed', async (t) => {
  const e = await env(t, { maxConcurrent: 2, claimDeadlineMs: 120_000 });
  if (!e) return;
  const all = [1, 2, 3, 4].map((n) => inst(`par${String(n)}`, 10 + n, createAfter(0)));
  for (const i of all) await e.register(i);
  const started = Date.now();
  const first = await Promise.all(all.map((i) => install(e, i.name, 240)));
  const states = first.map((r) => r.state);
  assert.equal(states.filter((s) => s === 'queued').length, 2, `two wait: ${states.join(', ')}`);
  const queued = all.filter((_, k) => states[k] === 'queued').map((i) => i.name);
  for (const q of queued) {
    const params = (await e.metad.admin('GET', `/v1/instances/${q}/params`)).json as { secret: unknown[] };
    assert.equal(params.secret.length, 1, 'a queued job keeps its secret (served only once it runs)');
  }
  const recs = await Promise.all(all.map((i) => e.watchEnd(i.name)));
  const took = Date.now() - started;
  for (const r of recs) assert.equal(r.outcome, 'succeeded', JSON.stringify(r));
  for (const q of queued) {
    const r = recs.find((x) => x.instance === q);
    assert.ok(r && ms(r.startedAt) > ms(r.requestedAt), `${q} left the queue later`);
    assert.ok(
      recs.some((x) => !queued.includes(x.instance) && ms(x.endedAt) <= ms(r.startedAt)),
      `${q} started when another ended`,
    );
  }
  await nothingLeft(e);
  t.diagnostic(`4 installs, maxConcurrent 2: requested -> all ended ${String(took)} ms`);
});

/** Waits for the agent's console line saying a request to `path` failed and is being retried. */
async function agentRetrying(e: InstallEnv, domain: string, path: string, from = 0): Promise<string> {
  return until(
    `${domain}: the agent retries ${path}`,
    async () => {
      const c = (await e.console(domain)).slice(from);
      return c.split('\n').find((l) => l.includes(path) && l.includes('(retrying until')) ?? undefined;
    },
    BOOT_MS,
  );
}

async function killMetad(e: InstallEnv): Promise<void> {
  e.metad.kill();
  await until('metad gone', () => e.metad.child.exitCode !== null || e.metad.child.signalCode !== null);
}

test('metad killed -9 during the boot of IMDSv2-required appliances and again mid-create, restarted seconds later: the agents retry, re-PUT tokens, both installs succeed', async (t) => {
  const e = await env(t, { maxConcurrent: 2, claimDeadlineMs: 120_000 });
  if (!e) return;
  const required = { ec2: { imdsV2: 'required' } };
  const boot = inst('boot4', 20, createAfter(0), required);
  const mid = inst('mid4', 21, createAfter(20), required);
  for (const i of [boot, mid]) await e.register(i);
  const recs = new Map<string, JobRecord>();
  let down1 = 0;
  let restart1 = 0;
  let down2 = 0;
  let restart2 = 0;
  let bootRec: JobRecord | undefined;
  let midRec: JobRecord | undefined;
  const domainOf = (i: InstallInstance): string => recs.get(i.name)?.domain ?? '';

  await t.test('both domains created; metad killed -9 before either agent reached it', async () => {
    await install(e, boot.name, 300);
    await install(e, mid.name, 300);
    // Kill once both domains exist and before either agent reached metad (no progress line yet).
    await until(
      'both domains created',
      async () => {
        for (const i of [boot, mid]) recs.set(i.name, await e.status(i.name));
        return [...recs.values()].every((r) => r.createdAt !== undefined);
      },
      BOOT_MS,
    );
    await killMetad(e);
    down1 = Date.now();
    for (const r of recs.values()) assert.deepEqual(r.lines, [], `${r.instance}: killed before its agent reached metad`);
  });

  await t.test('both agents retry reaching metad (not give up); after the restart boot4 ends', async () => {
    // Down until both agents have failed to reach it and are retrying (the old agent gave up after 5 tries).
    for (const dom of [domainOf(boot), domainOf(mid)]) await agentRetrying(e, dom, '/ganeti/latest/meta_data.json');
    await e.restart();
    restart1 = Date.now();
    bootRec = await e.watchEnd(boot.name);
  });

  await t.test(
    'mid4 in its create script: metad killed -9 again; its agent retries the write with a new token; after the restart it ends',
    async () => {
      // mid4 is in its 20 s create script (and its record on disk says so: a kill -9 loses what the
      // killed metad acknowledged but had not yet written): kill again; its next report goes to a
      // metad that never issued its token.
      const onDisk = async (): Promise<JobRecord | undefined> =>
        readFile(join(e.dir, 'state', 'jobs', `${mid.name}.json`), 'utf8').then(
          (text) => JSON.parse(text) as JobRecord,
          () => undefined,
        );
      await until('mid4 in create, on disk', async () => (await onDisk())?.lines.at(-1)?.includes('step=create status=start'), BOOT_MS);
      const consoleBefore = (await e.console(domainOf(mid))).length;
      await killMetad(e);
      down2 = Date.now();
      assert.ok(!(await onDisk())?.lines.some((l) => l.includes('step=create status=ok')), 'killed while mid4 was in create');
      await agentRetrying(e, domainOf(mid), '/ganeti/latest/write', consoleBefore);
      await e.restart();
      restart2 = Date.now();
      midRec = await e.watchEnd(mid.name);
    },
  );

  for (const [name, rec] of [
    ['boot4', () => bootRec],
    ['mid4', () => midRec],
  ] as const) {
    await t.test(`${name} succeeded with every progress line (none lost to the restarts) and a session token`, () => {
      const r = rec();
      assert.ok(r, `${name} ended (see the phase that runs it)`);
      assert.equal(r.outcome, 'succeeded', JSON.stringify(r));
      assert.deepEqual(
        r.lines.map((l) => l.split(' ').slice(2, 4).join(' ')),
        [
          'step=net status=ok',
          'step=metadata status=ok',
          'step=parameters status=ok',
          'step=script status=ok',
          'step=create status=start',
          'step=create status=ok',
          'step=final status=succeeded',
        ],
        `${r.instance}: every progress line, none lost to the restarts`,
      );
      assert.match(r.lines[0] ?? '', / token=yes( |$)/, `${r.instance}: the agent held a session token`);
    });
  }

  await t.test('nothing is left (domains, taps, set elements, overlays), nothing past the tripwire', async (st) => {
    await nothingLeft(e);
    const firstAt = ms(bootRec?.firstReportAt);
    st.diagnostic(
      `metad down during boot ${String(restart1 - down1)} ms (boot4 domain created -> first progress line ${String(firstAt - ms(bootRec?.createdAt))} ms, ` +
        `restart -> first progress line ${String(firstAt - restart1)} ms); down mid-create ${String(restart2 - down2)} ms; ` +
        `mid4 restart -> ended ${String(ms(midRec?.endedAt) - restart2)} ms`,
    );
  });
});
