/**
 * Everything a benchmark starts or creates is tracked here: temp dirs, child processes, daemon
 * stoppers. `cleanupAll` (bench/run.ts calls it after each suite and on SIGINT/SIGTERM) stops
 * daemons, kills children and removes temp dirs; a sync `exit` hook SIGKILLs/removes whatever is
 * left if the harness dies.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const liveDirs = new Set<string>();
const liveChildren = new Set<ChildProcess>();
const stoppers = new Set<() => Promise<unknown>>();

const running = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;

/** A fresh temp dir, removed by cleanupAll (or at exit) unless removed earlier with removeTempDir. */
export function makeTempDir(prefix = 'metad-bench-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  liveDirs.add(dir);
  return dir;
}

export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

/** Track a child process started by a suite so cleanup kills it. */
export function trackChild(c: ChildProcess): ChildProcess {
  liveChildren.add(c);
  c.once('exit', () => liveChildren.delete(c));
  return c;
}

/** Run `stop` from cleanupAll (a graceful stop before the SIGKILL sweep); returns the unregister function. */
export function trackStopper(stop: () => Promise<unknown>): () => void {
  stoppers.add(stop);
  return () => stoppers.delete(stop);
}

/** Stop every tracked daemon/child and remove every tracked temp dir. */
export async function cleanupAll(): Promise<void> {
  await Promise.allSettled([...stoppers].map((s) => s()));
  for (const c of liveChildren) if (running(c)) c.kill('SIGKILL');
  liveChildren.clear();
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  liveDirs.clear();
}

process.on('exit', () => {
  for (const c of liveChildren) if (running(c)) c.kill('SIGKILL');
  for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
});
