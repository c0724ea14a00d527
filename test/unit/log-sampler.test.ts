/**
 * The log sampler (daemon/log/log-sampler.ts) on a fake clock: at most one line per key per
 * interval for any number of keys, bounded memory, and one summary of what a full table held
 * back. Then the guest door under a flood of rotating unknown source addresses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LogSampler } from '../../daemon/log/log-sampler.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { startTestDaemon } from '../support/daemon.js';

test('log sampler: one line per key per interval, counting what it held back', async () => {
  const clock = new FakeClock();
  const s = new LogSampler(10_000, 100);
  assert.equal(s.take('a', clock.now()), 0);
  assert.equal(s.take('a', clock.now()), undefined);
  assert.equal(s.take('a', clock.now()), undefined);
  await clock.advance(9_999);
  assert.equal(s.take('a', clock.now()), undefined);
  await clock.advance(1);
  assert.equal(s.take('a', clock.now()), 3, 'the next line says how many were held back');
  s.forget('a');
  assert.equal(s.take('a', clock.now()), 0);
});

test('log sampler: more keys than it can track stay quiet, are counted, and never re-log early', async () => {
  const clock = new FakeClock();
  const s = new LogSampler(10_000, 100);
  let lines = 0;
  // 204 requests from 102 addresses, twice each: the old sampler cleared its table when full
  // and logged every request after that.
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 102; i++) if (s.take(`10.0.0.${i}`, clock.now()) !== undefined) lines++;
  }
  assert.equal(lines, 100, 'one line for each address it tracks, none for the rest');
  assert.equal(s.size, 100, 'memory stays bounded');
  assert.equal(s.overflow(clock.now()), 4, 'two addresses x two requests held back: one summary');
  assert.equal(s.overflow(clock.now()), undefined, 'reported once');
  assert.equal(s.take('10.0.0.200', clock.now()), undefined);
  assert.equal(s.overflow(clock.now()), undefined, 'at most one summary per interval');
  for (let i = 0; i < 100; i++)
    assert.equal(s.take(`10.0.0.${i}`, clock.now()), undefined, 'a tracked address never logs twice within the interval');

  await clock.advance(10_000);
  assert.equal(s.take('10.0.0.200', clock.now()), 0, 'once the interval passed, expired keys make room');
  assert.equal(s.size, 1);
  assert.equal(s.overflow(clock.now()), 1, 'the one request held back since the last summary');
});

test('guest door: 20,400 requests from 10,200 rotating unknown sources log at most 10,000 lines plus one summary per window', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  const res = { writeHead: () => res, end: () => undefined } as unknown as ServerResponse;
  const request = (ip: string): void => {
    const req = { socket: { remoteAddress: ip }, method: 'GET', url: '/latest/meta-data/', headers: {} } as unknown as IncomingMessage;
    d.daemon.guestHandler(req, res);
  };
  const unknownLines = (): number => d.sink.records().filter((r) => r.msg === 'guest request from an unknown source address').length;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 10_200; i++) request(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
  }
  assert.equal(unknownLines(), 10_000, 'one line per tracked address, nothing for the rest');
  const summaries = (): Record<string, unknown>[] =>
    d.sink
      .records()
      .filter((r) => r.msg === 'guest-triggered log lines suppressed' && r.event === 'guest request from an unknown source address');
  assert.equal(summaries().length, 0, 'the window is still open');
  await clock.advance(10_000);
  request('10.99.0.1');
  assert.equal(unknownLines(), 10_001, 'after the interval, a new address is logged again');
  assert.equal(summaries().length, 1, 'one summary for the window');
  assert.equal(
    summaries()[0]?.suppressed,
    10_400,
    'the 10,000 tracked addresses asking again and the 200 untracked ones, twice each, are all counted',
  );
});
