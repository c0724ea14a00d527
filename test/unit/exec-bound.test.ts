/**
 * Host tools run bounded (daemon/comm/exec.ts): a tool that never exits is killed at its bound
 * on the injected clock, with everything it started (its process group), and the call rejects
 * saying so; a tool that finishes in time is not touched. Real child processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { boundedExec } from '../../daemon/comm/exec.js';
import { CommError } from '../../daemon/comm/network.js';
import { systemClock } from '../../daemon/clock.js';
import { FakeClock } from '../fakes/fake-clock.js';

/** Alive = exists and is not a zombie (a killed grandchild may wait for a slow PID 1 to reap it). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${String(pid)}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function pidsFrom(file: string): Promise<number[]> {
  for (let i = 0; i < 500; i++) {
    const text = (() => {
      try {
        return readFileSync(file, 'utf8');
      } catch {
        return '';
      }
    })();
    if (text.endsWith('\n')) return text.trim().split(/\s+/).map(Number);
    await delay(10);
  }
  throw new Error('the child did not write its pids');
}

async function gone(pids: readonly number[]): Promise<boolean> {
  for (let i = 0; i < 500 && pids.some(alive); i++) await delay(20);
  return !pids.some(alive);
}

test('a tool that never exits is killed at its bound on the injected clock, with what it started; the call says so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-exec-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clock = new FakeClock();
  const exec = boundedExec(clock, 5_000);
  const file = join(dir, 'pids');
  let settled = false;
  const run = exec('sh', ['-c', `sleep 1000 & echo $$ $! > '${file}'; wait`]).finally(() => {
    settled = true;
  });
  run.catch(() => undefined);
  const pids = await pidsFrom(file);
  assert.equal(pids.length, 2);
  await clock.advance(4_999);
  await delay(50);
  assert.equal(settled, false, 'not before its bound');
  assert.ok(pids.every(alive), 'still running before the bound');
  await clock.advance(1);
  await assert.rejects(run, (e: unknown) => e instanceof CommError && /^sh -c .* did not finish within 5000 ms: killed$/.test(e.message));
  assert.ok(await gone(pids), 'the shell and the sleep it started are both killed');
});

test('a tool that finishes within its bound answers as before (exit code, output, stdin)', async () => {
  const exec = boundedExec(systemClock, 60_000);
  const r = await exec('sh', ['-c', 'read x; echo "got $x"; echo err >&2; exit 3'], 'hello\n');
  assert.deepEqual(r, { code: 3, stdout: 'got hello\n', stderr: 'err\n' });
  await assert.rejects(exec('/nonexistent/ip', []), (e: unknown) => e instanceof CommError && /not found: install/.test(e.message));
});

test('a real-time bound: `sleep 1000` is killed at 200 ms', async () => {
  const exec = boundedExec(systemClock, 200);
  await assert.rejects(exec('sleep', ['1000']), /did not finish within 200 ms: killed/);
});
