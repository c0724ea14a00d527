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
import { boundedExec } from '../../daemon/comm/exec.js';
import { CommError } from '../../daemon/comm/network.js';
import { systemClock } from '../../daemon/clock.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { pidAlive } from '../support/process.js';
import { until } from '../support/wait.js';

/** The pids the child wrote to `file` (one line, ended by a newline). */
function pidsFrom(file: string): Promise<number[]> {
  return until('the child wrote its pids', () => {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // not yet
    }
    return text.endsWith('\n') && text.trim().split(/\s+/).map(Number);
  });
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
  // The bound still waits on the clock: nothing has been killed, and the call has not settled.
  assert.equal(clock.pending, 1, 'the bound is no longer pending before its time');
  assert.equal(settled, false, 'not before its bound');
  assert.ok(pids.every(pidAlive), 'still running before the bound');
  await clock.advance(1);
  await assert.rejects(run, (e: unknown) => e instanceof CommError && /^sh -c .* did not finish within 5000 ms: killed$/.test(e.message));
  // Alive = exists and is not a zombie (a killed grandchild may wait for a slow PID 1 to reap it).
  await until('the shell and the sleep it started are both killed', () => !pids.some(pidAlive));
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
