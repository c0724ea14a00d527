/**
 * daemon/process/state-lock.ts in-process: a second createDaemon on a locked state dir fails with
 * StateDirBusy naming this pid before touching anything; stop() releases the lock; a child
 * process (dnsmasq in production) never inherits it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../../daemon/config/config.js';
import { createDaemon } from '../../daemon/daemon.js';
import { StateDirBusy, lockStateDir } from '../../daemon/process/state-lock.js';
import { sinkLogger } from '../support/sink.js';

test('a second daemon on a locked state dir fails with the holder’s pid and creates nothing; stop() releases it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-lock-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  const config = buildConfig({
    stateDir: state,
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  });
  const first = await createDaemon(config, { log: sinkLogger().log });
  const listing = (): string[] => readdirSync(state).map((f) => `${f} ${String(statSync(join(state, f)).mtimeMs)}`);
  const files = listing();
  writeFileSync(join(state, '.tmp-0123456789abcdef'), 'a write cut short'); // what a start would remove
  await assert.rejects(createDaemon(config, { log: sinkLogger().log }), (err: unknown) => {
    assert.ok(err instanceof StateDirBusy);
    assert.equal(err.pid, process.pid);
    assert.match(err.message, new RegExp(`state dir ${state} in use by pid ${String(process.pid)}$`));
    return true;
  });
  assert.ok(existsSync(join(state, '.tmp-0123456789abcdef')), 'the refused daemon swept the holder’s temp files');
  rmSync(join(state, '.tmp-0123456789abcdef'));
  assert.deepEqual(listing(), files);
  await first.stop();
  const again = await createDaemon(config, { log: sinkLogger().log });
  await again.stop();
});

test('the lock is not inherited by child processes: released here, it is free while a child lives on', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-lock-unit-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lock = lockStateDir(dir);
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  t.after(() => child.kill('SIGKILL'));
  assert.throws(() => lockStateDir(dir), StateDirBusy);
  lock.release();
  const next = lockStateDir(dir);
  next.release();
});
