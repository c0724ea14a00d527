/**
 * One daemon per state dir: an exclusive flock(2) on `<stateDir>/metad.lock`, taken before the
 * daemon changes anything (no file written, no nftables table, no dnsmasq, no socket) and held for
 * the life of the process by an open file description only this process has. The kernel drops it
 * when that description closes, at `release()` or at the process's death however it dies (kill -9
 * included), so a stale lock cannot exist and no liveness check is needed.
 *
 * Node has no flock, so util-linux's `flock(1)` takes it: the lock file is opened here and handed
 * to a one-shot `flock --nonblock 3` as its fd 3. flock locks belong to the open file description,
 * which that child shares with this process: the child exits, the lock stays with us. Our fd is
 * close-on-exec (libuv opens every file O_CLOEXEC), so no child (dnsmasq) inherits the lock.
 * The fd is read-only (a file open for writing would block a read-only remount). Once held, the
 * file holds our pid (for the message a second daemon prints). Why not a pid file
 * with O_EXCL, a unix socket or an addon: docs/design-notes.md.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'metad.lock';

/** util-linux flock(1): exit 1 means "held by someone else" under --nonblock. */
const FLOCK = 'flock';
const BUSY = 1;

/** Another process holds the lock: `pid` is the holder's (undefined if it has not written it yet). */
export class StateDirBusy extends Error {
  override name = 'StateDirBusy';
  constructor(
    readonly dir: string,
    readonly pid: number | undefined,
  ) {
    super(`state dir ${dir} in use by ${pid === undefined ? 'another process (pid not yet recorded)' : `pid ${pid}`}`);
  }
}

export interface StateLock {
  readonly path: string;
  /** Close the lock's file description: the lock is gone. Idempotent. */
  release(): void;
}

/** The pid a holder wrote, if any (it writes it right after taking the lock). */
function holderPid(path: string): number | undefined {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Write our pid into the lock file (best effort: on a read-only state dir the lock still holds). */
function recordPid(path: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW);
    writeSync(fd, `${process.pid}\n`);
  } catch {
    // a second daemon then says "pid not yet recorded"
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Wait ~`ms` synchronously (the start has nothing else to do). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Take the state dir's lock or throw: StateDirBusy when another process holds it, an Error when
 * the lock cannot be taken at all (no flock(1), a read-only dir). `dir` must exist.
 */
export function lockStateDir(dir: string): StateLock {
  const path = join(dir, LOCK_FILE);
  // Read-only: flock needs no write access, and a file open for writing would keep the operator
  // from remounting the state dir read-only (EBUSY) while metad runs.
  const fd = openSync(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    const r = spawnSync(FLOCK, ['--nonblock', '--exclusive', '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
      timeout: 10_000,
      env: { PATH: '/usr/bin:/bin:/usr/sbin:/sbin', LC_ALL: 'C' }, // util-linux's flock; the environment is cli.ts's to read
    });
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code ?? 'error';
      throw new Error(`cannot lock the state dir: flock(1) (util-linux) failed to run (${code})`);
    }
    if (r.status === BUSY) {
      // The holder writes its pid right after taking the lock: give it a moment.
      let pid = holderPid(path);
      for (let i = 0; i < 20 && pid === undefined; i++) {
        pause(10);
        pid = holderPid(path);
      }
      throw new StateDirBusy(dir, pid);
    }
    if (r.status !== 0) {
      const why = r.stderr.toString().trim() || (r.signal ?? `exit ${String(r.status)}`);
      throw new Error(`cannot lock the state dir: flock(1): ${why}`);
    }
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  recordPid(path);
  let open = true;
  return {
    path,
    release() {
      if (!open) return;
      open = false;
      closeSync(fd);
    },
  };
}
