/**
 * A guest does not control the host's log volume (daemon/log/guest-log.ts): 1,000 connections from
 * one source over its per-source cap log one line and, when the window ends, one summary that
 * counts the other 999; a flood of refused token requests logs one line per event. The summary
 * is written by the guest listener's sweep, not by the next guest event.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { FakeClock } from '../fakes/fake-clock.js';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';
import { SUMMARY_WINDOW_MS } from '../../daemon/log/guest-log.js';
import { until } from '../support/wait.js';

const CAP = 'guest connection refused: per-source cap';
const SUMMARY = 'guest-triggered log lines suppressed';

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Connect and wait until the door has closed the connection. */
function refused(port: number): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    s.once('close', () => resolve());
  });
}

test('1,000 connections from one source over its cap: one line, then one summary counting the other 999', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({
    clock,
    config: { guest: { maxConnectionsPerSource: 2, headersTimeoutMs: 120_000, requestTimeoutMs: 120_000 } },
  });
  t.after(() => d.close());
  const holders = [await connect(d.guestPort), await connect(d.guestPort)];
  t.after(() => holders.forEach((s) => s.destroy()));
  // No wait needed: the door takes connections in the order they were made, so it counts both
  // holders before any of the connections below.
  for (let i = 0; i < 1000; i += 100) await Promise.all(Array.from({ length: 100 }, () => refused(d.guestPort)));

  const lines = (): Record<string, unknown>[] => d.sink.records().filter((r) => r.msg === CAP);
  const summaries = (): Record<string, unknown>[] => d.sink.records().filter((r) => r.msg === SUMMARY && r.event === CAP);
  assert.equal(lines().length, 1, 'one line for the source in its window');
  assert.equal(lines()[0]?.source, '127.0.0.1');
  assert.equal(lines()[0]?.suppressedBefore, 0);
  assert.equal(summaries().length, 0, 'no summary before the window ends');

  await clock.advance(SUMMARY_WINDOW_MS);
  const summary = await until('the summary (written by the listener sweep)', () => summaries()[0]);
  assert.equal(summaries().length, 1);
  assert.equal(summary.suppressed, 999, 'every connection not logged is counted');
  assert.equal(summary.windowMs, SUMMARY_WINDOW_MS);

  // The next window: the source's next line says how many were held back since its last one.
  await refused(d.guestPort);
  assert.equal(lines().length, 2);
  assert.equal(lines()[1]?.suppressedBefore, 999);
});

test('guest-triggered warnings from the dialects are sampled too: 150 refused token requests log one line of each event', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  assert.equal((await d.admin('PUT', '/v1/instances/vm0', sampleInstance(0))).status, 201);
  for (let i = 0; i < 150; i++) {
    const r = await d.guest('127.0.0.1', 'PUT', '/latest/api/token', {
      'x-forwarded-for': '10.0.0.1',
      'x-aws-ec2-metadata-token-ttl-seconds': '60',
    });
    assert.equal(r.status, 403);
  }
  const count = (msg: string): number => d.sink.records().filter((r) => r.msg === msg).length;
  assert.equal(count('guest token refused'), 1);
  assert.equal(count('guest request refused'), 1);
  await clock.advance(SUMMARY_WINDOW_MS);
  d.daemon.services.guestLog.flush();
  const held: Record<string, unknown> = {};
  for (const r of d.sink.records()) if (r.msg === SUMMARY) held[String(r.event)] = r.suppressed;
  assert.deepEqual(held, { 'guest token refused': 149, 'guest request refused': 149 });
});
