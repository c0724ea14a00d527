/**
 * The link watcher (`ip -o monitor link`, daemon/comm/link-watch.ts) with a fake child and the
 * fake clock: its lines become events; when it exits it is restarted after 500 ms, then 1 s,
 * 2 s ... up to 30 s, each restart followed by a reconcile (onRestart); a watcher that ran
 * longer than 30 s starts the backoff over; a wall-clock step does not count as running time;
 * stop() during the backoff means no restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import type { ChildProcess } from 'node:child_process';
import { FIRST_BACKOFF_MS, LinkWatch, MAX_BACKOFF_MS, type LinkEvent } from '../../daemon/comm/link-watch.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { sinkLogger } from '../support/sink.js';
import { until } from '../support/wait.js';

interface FakeChild {
  args: readonly string[];
  stdout: PassThrough;
  die(code: number): void;
}

function harness() {
  const clock = new FakeClock();
  const { sink, log } = sinkLogger();
  const children: FakeChild[] = [];
  const events: LinkEvent[] = [];
  let restarts = 0;
  const spawnChild = (_file: string, args: readonly string[]): ChildProcess => {
    const ee = new EventEmitter() as EventEmitter & { exitCode: number | null; signalCode: string | null; kill(sig: string): boolean };
    const stdout = new PassThrough();
    const die = (code: number): void => {
      ee.exitCode = code;
      stdout.end();
      setImmediate(() => ee.emit('close', code, null));
    };
    Object.assign(ee, { stdout, exitCode: null, signalCode: null });
    ee.kill = () => {
      die(0);
      return true;
    };
    children.push({ args, stdout, die });
    return ee as unknown as ChildProcess;
  };
  const watch = new LinkWatch({
    ipPath: '/usr/sbin/ip',
    log,
    clock,
    spawnChild,
    onEvent: (e) => events.push(e),
    onRestart: () => restarts++,
  });
  const exits = (): Record<string, unknown>[] =>
    sink.records().filter((r) => r['msg'] === 'comm network: the link watcher (ip monitor link) exited; restarting it');
  /** The running watcher exits; no new one before `ms` have passed on the clock, one (and a reconcile) at `ms`. */
  const dieAndRestartAfter = async (ms: number, what: string): Promise<void> => {
    const n = children.length;
    const seen = exits().length;
    children[n - 1]!.die(1);
    await until('the exit logged', () => exits().length === seen + 1);
    assert.equal(exits()[seen]!['retryMs'], ms, `${what}: the logged retry`);
    await clock.advance(ms - 1);
    assert.equal(children.length, n, `${what}: restarted before ${String(ms)} ms`);
    await clock.advance(1);
    assert.equal(children.length, n + 1, `${what}: not restarted at ${String(ms)} ms`);
    assert.equal(restarts, n, `${what}: no reconcile after the restart`);
  };
  return { clock, children, events, watch, dieAndRestartAfter, restarts: () => restarts };
}

test("link watcher: ip's lines become events; restarts after 0.5, 1, 2, 4, 8, 16, then 30 s; a watcher that ran over 30 s restarts after 0.5 s again", async () => {
  const h = harness();
  try {
    h.watch.start();
    assert.equal(h.children.length, 1);
    assert.deepEqual(h.children[0]!.args, ['-o', 'monitor', 'link']);
    h.children[0]!.stdout.write('7: mtap1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master metadbr0 state UP\n');
    await until('the event', () => h.events.length === 1);
    assert.deepEqual(h.events[0], { deleted: false, ifindex: 7, ifname: 'mtap1', master: 'metadbr0' });

    assert.equal(FIRST_BACKOFF_MS, 500);
    assert.equal(MAX_BACKOFF_MS, 30_000);
    for (const [i, ms] of [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000].entries())
      await h.dieAndRestartAfter(ms, `exit ${String(i + 1)}`);
    // A wall-clock step is not running time: the backoff does not start over.
    h.clock.jumpWall(MAX_BACKOFF_MS * 10);
    await h.dieAndRestartAfter(30_000, 'after a wall-clock step');
    await h.clock.advance(MAX_BACKOFF_MS);
    await h.dieAndRestartAfter(30_000, 'after running exactly 30 s');
    await h.clock.advance(MAX_BACKOFF_MS + 1);
    await h.dieAndRestartAfter(500, 'after running over 30 s');
    await h.dieAndRestartAfter(1000, 'and again it grows');
    // The restarted watcher's lines still arrive.
    h.children.at(-1)!.stdout.write('Deleted 7: mtap1@if2: <BROADCAST,MULTICAST> mtu 1500 state DOWN\n');
    await until('the event from the restarted watcher', () => h.events.length === 2);
    assert.deepEqual(h.events[1], { deleted: true, ifindex: 7, ifname: 'mtap1' });
  } finally {
    await h.watch.stop();
  }
});

test('link watcher stopped during its restart backoff: not started again, no reconcile', async () => {
  const h = harness();
  h.watch.start();
  h.children[0]!.die(1);
  await until('the restart waits on the clock', () => h.clock.pending === 1);
  await h.watch.stop();
  assert.equal(h.clock.pending, 0, 'the backoff sleep was not cancelled');
  await h.clock.advance(FIRST_BACKOFF_MS);
  assert.equal(h.children.length, 1, 'started after stop()');
  assert.equal(h.restarts(), 0);
});
