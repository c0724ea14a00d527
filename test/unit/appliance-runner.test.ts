/**
 * The appliance runner (appliance/runner.ts) with the strict fake hypervisor and the fake clock:
 * every outcome, the hard deadline to the millisecond, destroy in finally. No sleeping.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { HypervisorUnavailable } from '../../appliance/hypervisor.js';
import {
  reduce,
  initialRecord,
  runAppliance,
  DESTROY_RETRY_MS,
  MAX_LINES,
  type RunRecord,
  type RunDeps,
  type RunSpec,
} from '../../appliance/runner.js';
import { parseProgress, splitLines } from '../../appliance/progress.js';

const NAME = 'metad-run-a1';
const XML = `<domain><name>${NAME}</name></domain>`;
const line = (step: string, status: string, extra = ''): string => `metad-progress v1 step=${step} status=${status}${extra}\n`;

interface Harness {
  hv: FakeHypervisor;
  clock: FakeClock;
  pipe: string[];
  states: string[];
  cleaned: number;
  claimed: boolean;
  done: Promise<RunRecord>;
  /** Lets the runner reach its next sleep. */
  settle(): Promise<void>;
  ac: AbortController;
}

function start(spec: Partial<RunSpec> = {}, deps: Partial<RunDeps> = {}): Harness {
  const hv = new FakeHypervisor();
  const clock = new FakeClock(1_000_000);
  const ac = new AbortController();
  const h = {
    hv,
    clock,
    pipe: [] as string[],
    states: [] as string[],
    cleaned: 0,
    claimed: false,
    ac,
    settle: async () => {
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    },
  } as Harness;
  h.done = runAppliance(
    { name: NAME, xml: XML, deadlineAt: clock.now() + 60_000, ...spec },
    {
      hv,
      clock,
      pollMs: 250,
      takeProgress: () => h.pipe.splice(0).join(''),
      claimed: () => h.claimed,
      onChange: (r) => h.states.push(r.state),
      cleanup: () => {
        h.cleaned++;
        return Promise.resolve();
      },
      signal: ac.signal,
      ...deps,
    },
  );
  return h;
}

test('success needs the final report AND the power-off; the domain is destroyed-if-left and cleaned up', async () => {
  const h = start();
  await h.settle();
  assert.deepEqual(h.hv.running(), [NAME]);
  h.pipe.push(line('net', 'ok'), line('metadata', 'ok', ' instance=web1'), 'garbage\n', line('create', 'start'));
  await h.clock.advance(250);
  await h.settle();
  h.pipe.push(line('create', 'ok'), 'metad-progress v1 step=final status=succe');
  await h.clock.advance(250);
  h.pipe.push('eded\n'); // a line split across two reads
  await h.settle();
  h.hv.powerOff(NAME);
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'succeeded', JSON.stringify(r));
  assert.equal(r.final, 'succeeded');
  assert.deepEqual(h.states, ['booting', 'running', 'running', 'running', 'running', 'running', 'succeeded']);
  assert.equal(r.lines.length, 5, 'only progress lines are kept');
  assert.equal(r.createdAt, 1_000_000);
  assert.equal(r.firstReportAt, 1_000_250);
  assert.equal(r.endedAt, 1_000_750);
  assert.deepEqual(h.hv.opsOf('destroy'), [NAME], 'destroy always runs (a no-op: already gone)');
  assert.equal(h.cleaned, 1);
});

test('power-off without a final report, or with a failure report, is failed', async () => {
  const a = start();
  await a.settle();
  a.pipe.push(line('net', 'ok'));
  a.hv.powerOff(NAME);
  await a.clock.advance(250);
  const ra = await a.done;
  assert.equal(ra.state, 'failed');
  assert.match(ra.reason ?? '', /without a final report/);

  const b = start();
  await b.settle();
  b.pipe.push(line('create', 'failed', ' exit=3'), line('final', 'failed', ' exit=3'));
  b.hv.powerOff(NAME);
  await b.clock.advance(250);
  const rb = await b.done;
  assert.equal(rb.state, 'failed');
  assert.equal(rb.final, 'failed');
});

test('a hung appliance is destroyed at the hard deadline, to the millisecond; progress does not extend it', async () => {
  const h = start({ deadlineAt: 1_000_000 + 1_100 });
  await h.settle();
  for (let i = 0; i < 4; i++) {
    h.pipe.push(line('create', 'start'));
    await h.clock.advance(250);
    await h.settle();
  }
  assert.deepEqual(h.hv.running(), [NAME], 'still running at 1000 ms');
  await h.clock.advance(100); // 1100: the deadline sleep was shortened to hit it exactly
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.endedAt, 1_001_100);
  assert.deepEqual(h.hv.running(), []);
  assert.deepEqual(h.hv.opsOf('destroy'), [NAME]);
  assert.equal(h.cleaned, 1);
});

test('a final success without a power-off before the deadline is timed-out', async () => {
  const h = start({ deadlineAt: 1_000_000 + 500 });
  await h.settle();
  h.pipe.push(line('final', 'succeeded'));
  await h.clock.advance(250);
  await h.settle();
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.final, 'succeeded');
});

test('abort ends the run at once: aborted, destroyed, cleaned up', async () => {
  const h = start();
  await h.settle();
  h.ac.abort();
  const r = await h.done;
  assert.equal(r.state, 'aborted');
  assert.deepEqual(h.hv.running(), []);
  assert.equal(h.cleaned, 1);

  const ac = new AbortController();
  ac.abort();
  const early = start({}, { signal: ac.signal });
  assert.equal((await early.done).state, 'aborted');
  assert.deepEqual(early.hv.opsOf('createTransient'), [], 'nothing was created');
  assert.deepEqual(early.hv.opsOf('destroy'), []);
});

test('an abort keeps the progress lines the agent wrote just before it, and those that arrive while the domain is destroyed', async () => {
  const h = start();
  await h.settle();
  h.pipe.push(line('net', 'ok'));
  await h.clock.advance(250);
  await h.settle();
  h.pipe.push(line('create', 'start'), 'metad-progress v1 step=create status=o'); // not yet polled
  const destroy = h.hv.destroy.bind(h.hv);
  h.hv.destroy = (n) => {
    h.pipe.push('k\n', line('final', 'succeeded')); // in flight while the plug is pulled
    return destroy(n);
  };
  h.ac.abort();
  const r = await h.done;
  assert.equal(r.state, 'aborted');
  assert.deepEqual(
    r.lines,
    [line('net', 'ok'), line('create', 'start'), line('create', 'ok'), line('final', 'succeeded')].map((l) => l.trim()),
  );
  assert.equal(r.final, undefined, 'a late line is informative: it changes neither the state nor the final report');
  assert.deepEqual(h.hv.running(), []);
});

test('an appliance that has not claimed its secrets by the claim deadline is stuck; one that has is not', async () => {
  const h = start({ claimDeadlineAt: 1_000_000 + 300 });
  await h.settle();
  await h.clock.advance(250);
  await h.settle();
  await h.clock.advance(50);
  const r = await h.done;
  assert.equal(r.state, 'stuck');
  assert.equal(r.endedAt, 1_000_300);
  assert.deepEqual(h.hv.running(), []);

  const ok = start({ claimDeadlineAt: 1_000_000 + 300 });
  await ok.settle();
  ok.claimed = true;
  await ok.clock.advance(250);
  await ok.settle();
  await ok.clock.advance(250);
  await ok.settle();
  ok.pipe.push(line('final', 'succeeded'));
  ok.hv.powerOff(NAME);
  await ok.clock.advance(250);
  assert.equal((await ok.done).state, 'succeeded');
});

test('a failed create is failed, with nothing to destroy; a hypervisor hiccup does not stop the deadline', async () => {
  const hvFail = new FakeHypervisor();
  hvFail.failNextCreate = new Error('cannot open tap');
  const h = start({}, { hv: hvFail });
  const r = await h.done;
  assert.equal(r.state, 'failed');
  assert.equal(r.reason, 'cannot open tap');
  assert.deepEqual(hvFail.opsOf('destroy'), []);
  assert.equal(h.cleaned, 1, 'cleanup runs anyway (the tap was made before)');

  const flaky = new FakeHypervisor();
  let calls = 0;
  const state = flaky.state.bind(flaky);
  flaky.state = (n) => (++calls <= 2 ? Promise.reject(new Error('internal error: client socket is closed')) : state(n));
  const f = start({ deadlineAt: 1_000_000 + 500 }, { hv: flaky });
  await f.settle();
  await f.clock.advance(250);
  await f.settle();
  await f.clock.advance(250);
  assert.equal((await f.done).state, 'timed-out');
});

test('a create that failed after the domain came up (lost connection) still destroys it', async () => {
  const hv = new FakeHypervisor();
  const create = hv.createTransient.bind(hv);
  hv.createTransient = async (n, x) => {
    await create(n, x);
    throw new Error('Cannot recv data: Connection reset by peer');
  };
  const h = start({}, { hv });
  const r = await h.done;
  assert.equal(r.state, 'failed');
  assert.deepEqual(hv.running(), [], 'the domain that came up anyway is gone');
  assert.deepEqual(hv.opsOf('destroy'), [NAME]);
});

test('a destroy that keeps failing is retried a bounded number of times, then recorded, not hidden', async () => {
  const hv = new FakeHypervisor();
  hv.destroy = (n) => {
    hv.calls.push({ op: 'destroy', name: n });
    return Promise.reject(new Error('Cannot write data: Broken pipe'));
  };
  const h = start({ deadlineAt: 1_000_000 + 250 }, { hv });
  await h.settle();
  await h.clock.advance(250);
  for (const wait of DESTROY_RETRY_MS) {
    await h.settle();
    assert.equal(h.cleaned, 0, 'cleanup waits for the destroy attempts');
    await h.clock.advance(wait);
  }
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.destroyError, 'Cannot write data: Broken pipe');
  assert.equal(hv.opsOf('destroy').length, DESTROY_RETRY_MS.length + 1);
  assert.equal(h.cleaned, 1);
});

test('libvirtd down across the deadline: the run still ends at the deadline, and the domain is destroyed once libvirtd is back', async () => {
  const hv = new FakeHypervisor();
  let down = false;
  const unreachable = (): Promise<never> => Promise.reject(new HypervisorUnavailable('cannot connect to libvirt: Connection refused'));
  const state = hv.state.bind(hv);
  const destroy = hv.destroy.bind(hv);
  hv.state = (n) => (down ? unreachable() : state(n));
  hv.destroy = (n) => {
    if (!down) return destroy(n);
    hv.calls.push({ op: 'destroy', name: `${n} (down)` });
    return unreachable();
  };
  const h = start({ deadlineAt: 1_000_000 + 1_000 }, { hv });
  await h.settle();
  await h.clock.advance(250);
  await h.settle();
  down = true; // libvirtd killed; qemu (the domain) lives on
  await h.clock.advance(250);
  await h.settle();
  await h.clock.advance(500); // the deadline, libvirtd still down
  await h.settle();
  assert.equal(h.states.at(-1), 'timed-out', 'the record says timed-out at the deadline');
  assert.deepEqual(hv.running(), [NAME], 'not destroyed yet: libvirtd is down');
  await h.clock.advance(DESTROY_RETRY_MS[0]!);
  await h.settle();
  down = false; // libvirtd is back
  await h.clock.advance(DESTROY_RETRY_MS[1]!);
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.endedAt, 1_001_000);
  assert.equal(r.destroyError, undefined);
  assert.deepEqual(hv.running(), [], 'destroyed once libvirtd came back');
  assert.deepEqual(hv.opsOf('destroy'), [`${NAME} (down)`, `${NAME} (down)`, NAME]);
  assert.equal(h.cleaned, 1);
});

test('a create that never reached the hypervisor (unreachable) leaves nothing to find or destroy', async () => {
  const hv = new FakeHypervisor();
  hv.createTransient = (n, x) => {
    hv.calls.push({ op: 'createTransient', name: n, xml: x });
    return Promise.reject(new HypervisorUnavailable('cannot connect to libvirt: Connection refused'));
  };
  const h = start({}, { hv });
  const r = await h.done;
  assert.equal(r.state, 'failed');
  assert.match(r.reason ?? '', /Connection refused/);
  assert.deepEqual(hv.opsOf('list'), []);
  assert.deepEqual(hv.opsOf('destroy'), []);
  assert.equal(h.cleaned, 1);
});

test('reduce: terminal states are final; only progress lines count; lines are capped', () => {
  let r = reduce(initialRecord(0), { type: 'created', at: 1 });
  assert.equal(r.state, 'booting');
  assert.equal(reduce(r, { type: 'line', at: 2, line: 'hello' }), r, 'not a progress line: unchanged');
  for (let i = 0; i < MAX_LINES + 5; i++) r = reduce(r, { type: 'line', at: 3, line: `metad-progress v1 step=create status=start n=${i}` });
  assert.equal(r.lines.length, MAX_LINES);
  assert.ok(r.lines[MAX_LINES - 1]!.endsWith(`n=${MAX_LINES + 4}`));
  const done = reduce(r, { type: 'abort', at: 4 });
  assert.equal(done.state, 'aborted');
  assert.equal(reduce(done, { type: 'gone', at: 5 }), done);
  assert.equal(reduce(done, { type: 'deadline', at: 5 }), done);
});

test('progress lines: parse and split', () => {
  assert.deepEqual(parseProgress('metad-progress v1 step=create status=failed exit=3'), {
    step: 'create',
    status: 'failed',
    fields: { exit: '3' },
  });
  assert.deepEqual(parseProgress('metad-progress v1 step=net status=ok ip=169.254.0.2'), {
    step: 'net',
    status: 'ok',
    fields: { ip: '169.254.0.2' },
  });
  for (const bad of [
    'metad-progress v2 step=a status=b',
    'step=a status=b',
    'metad-progress v1 status=b',
    'metad-progress v1 step=a status=b step=c',
    'metad-progress v1 step=a status=b x=<y>',
    'metad-progress v1 step=a status=b __proto__=1',
  ]) {
    assert.equal(parseProgress(bad), undefined, bad);
  }
  assert.deepEqual(splitLines('ab', 'c\r\nd\n\ne'), { lines: ['abc', 'd'], rest: 'e' });
});

// ------------------------------------------------ the hard deadline wins over a hypervisor that never answers

test('a state() that never answers: the run still ends at its deadline, destroyed, cleaned; calls do not pile up', async () => {
  const h = start({ deadlineAt: 1_000_000 + 10_000 });
  await h.settle();
  assert.deepEqual(h.states, ['booting']);
  h.hv.stop(['state']);
  for (let t = 0; t < 9_750; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  assert.equal(h.states.at(-1), 'booting', 'not before the deadline');
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.endedAt, 1_000_000 + 10_000);
  assert.deepEqual(h.hv.running(), [], 'destroyed (destroy still answers)');
  assert.equal(h.cleaned, 1);
  assert.equal(h.hv.heldCalls, 1, 'one state call waited on across the polls, not one per poll');
});

test('a state() that never answers: an abort ends the run at once', async () => {
  const h = start();
  await h.settle();
  h.hv.stop(['state']);
  await h.clock.advance(250);
  await h.settle();
  assert.equal(h.hv.heldCalls, 1, 'the runner waits on the hung call');
  h.ac.abort();
  const r = await h.done;
  assert.equal(r.state, 'aborted');
  assert.equal(r.endedAt, 1_000_250);
  assert.deepEqual(h.hv.running(), []);
  assert.equal(h.cleaned, 1);
});

test('libvirtd stopped (nothing answers): the deadline ends the run, the destroy is given up after its bound and reported, cleanup runs', async () => {
  const h = start({ deadlineAt: 1_000_000 + 1_000 }, { callBounds: { destroy: 5_000 } });
  await h.settle();
  h.hv.stop();
  for (let t = 0; t < 1_000; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  assert.equal(h.states.at(-1), 'timed-out', 'the run ended at its deadline');
  assert.equal(h.cleaned, 0, 'the destroy is being tried');
  await h.clock.advance(5_000);
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.endedAt, 1_001_000);
  assert.match(r.destroyError ?? '', /destroy: no answer within 5000 ms/);
  assert.equal(h.hv.opsOf('destroy').length, 1, 'a destroy that does not answer is not retried here');
  assert.equal(h.cleaned, 1);
  assert.deepEqual(h.hv.running(), [NAME], 'left behind for the caller to retry');
  h.hv.resume(); // SIGCONT: the held destroy goes through
  await h.settle();
  assert.deepEqual(h.hv.running(), []);
});

test('a create that never answers: the deadline (or an abort) ends the run; the record says the domain may still appear', async () => {
  for (const how of ['deadline', 'abort'] as const) {
    const hv = new FakeHypervisor();
    hv.stop();
    const h = start({ deadlineAt: 1_000_000 + 10_000 }, { hv, callBounds: { destroy: 1_000 } });
    await h.settle();
    assert.deepEqual(h.states, [], 'pending: the create has not answered');
    if (how === 'abort') h.ac.abort();
    else await h.clock.advance(10_000);
    await h.settle();
    await h.clock.advance(1_000); // the destroy's bound
    const r = await h.done;
    assert.equal(r.state, how === 'abort' ? 'aborted' : 'timed-out', how);
    assert.match(r.destroyError ?? '', /no answer within 1000 ms/, how);
    assert.equal(h.cleaned, 1);
    hv.resume(); // the create lands late, then the held destroy removes it
    await h.settle();
    assert.deepEqual(hv.opsOf('createTransient'), [NAME]);
    assert.deepEqual(hv.running(), [], `${how}: the late domain went with the held destroy`);
  }
});

test('the deadline is monotonic: a wall-clock step during the run moves it neither way', async () => {
  const h = start({ deadlineAt: 1_000_000 + 10_000, claimDeadlineAt: 1_000_000 + 8_000 });
  h.claimed = true;
  await h.settle();
  h.clock.jumpWall(3_600_000); // an NTP step forward by an hour
  await h.clock.advance(250);
  await h.settle();
  assert.equal(h.states.at(-1), 'booting', 'a wall-clock jump does not end the run');
  h.clock.jumpWall(-7_200_000); // and back by two
  for (let t = 250; t < 9_750; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  assert.equal(h.states.at(-1), 'booting');
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'timed-out');
  assert.equal(r.endedAt, 1_000_000 + 10_000 - 3_600_000, 'recorded in wall-clock time');
});

test('the claim deadline is monotonic too: a wall-clock step neither makes an appliance stuck early nor late', async () => {
  const h = start({ deadlineAt: 1_000_000 + 60_000, claimDeadlineAt: 1_000_000 + 1_000 });
  await h.settle();
  h.clock.jumpWall(3_600_000);
  await h.clock.advance(250);
  await h.settle();
  assert.equal(h.states.at(-1), 'booting', 'a step forward does not make it stuck');
  h.clock.jumpWall(-7_200_000);
  for (let t = 250; t < 750; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  assert.equal(h.states.at(-1), 'booting', 'not before the claim deadline');
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'stuck');
  assert.equal(r.endedAt, 1_000_000 + 1_000 - 3_600_000, 'at the claim deadline, recorded in wall-clock time');
});

test('a state() that never answers: an appliance that has not claimed its secrets is still stuck at its claim deadline', async () => {
  const h = start({ deadlineAt: 1_000_000 + 60_000, claimDeadlineAt: 1_000_000 + 1_000 });
  await h.settle();
  h.hv.stop(['state']);
  for (let t = 0; t < 750; t += 250) {
    await h.clock.advance(250);
    await h.settle();
  }
  assert.equal(h.states.at(-1), 'booting', 'not before the claim deadline');
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'stuck');
  assert.equal(r.endedAt, 1_000_000 + 1_000, 'the hung state call did not hold the run past the claim deadline');
  assert.deepEqual(h.hv.running(), [], 'destroyed (destroy still answers)');
  assert.equal(h.cleaned, 1);
});

test("a domain found gone at the deadline's poll powered off before it was seen: with its final report, succeeded, not timed-out", async () => {
  const h = start({ deadlineAt: 1_000_000 + 500 });
  await h.settle();
  h.pipe.push(line('final', 'succeeded'));
  await h.clock.advance(250);
  await h.settle();
  h.hv.powerOff(NAME);
  await h.clock.advance(250); // the poll at the deadline: lines, then the state (gone), then the deadline
  const r = await h.done;
  assert.equal(r.state, 'succeeded');
  assert.equal(r.endedAt, 1_000_500);
});

test('adopted after a restart with the final report already recorded: the power-off that follows is success', () => {
  let r = initialRecord(0);
  r = reduce(r, { type: 'adopted', at: 10, createdAt: 1, firstReportAt: 2, final: 'succeeded' });
  assert.equal(r.state, 'running');
  assert.equal(reduce(r, { type: 'gone', at: 20 }).state, 'succeeded');
  const without = reduce(initialRecord(0), { type: 'adopted', at: 10, createdAt: 1, firstReportAt: 2 });
  assert.equal(reduce(without, { type: 'gone', at: 20 }).state, 'failed');
});

test('a final report that arrives while the state is being asked, just before the power-off, still makes it succeeded', async () => {
  const h = start();
  await h.settle();
  h.pipe.push(line('net', 'ok'));
  await h.clock.advance(250);
  await h.settle();
  // The agent reports and powers off while the runner's state() is out: drained before, gone after.
  const state = h.hv.state.bind(h.hv);
  h.hv.state = async (name) => {
    h.pipe.push(line('final', 'succeeded'));
    h.hv.powerOff(NAME);
    return state(name);
  };
  await h.clock.advance(250);
  const r = await h.done;
  assert.equal(r.state, 'succeeded', JSON.stringify(r));
});
