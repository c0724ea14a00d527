/** Process helpers (Linux /proc): CPU time, memory, node's own start cost, daemon profiling. */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { trackChild } from './cleanup.js';

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}
const TICKS = clockTicks();

/** utime + stime of a process (every thread), ms; tick resolution (10 ms at 100 Hz). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS; // fields 14 and 15 of proc(5), counted after "pid (comm) "
}

export interface ProcStatus {
  /** Resident set size now, KiB. */
  rssKiB: number;
  /** Peak resident set size, KiB. */
  hwmKiB: number;
  threads: number;
}

export function readProcStatus(pid: number): ProcStatus {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM'), threads: field('Threads') };
}

/** Time (ms) for a bare `node -e 0` to spawn and exit: the floor under any daemon start. */
export async function nodeStartupMs(): Promise<number> {
  const t0 = performance.now();
  const c = trackChild(spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }));
  await new Promise((r) => c.once('exit', r));
  return performance.now() - t0;
}

/**
 * BENCH_CPU_PROF=DIR: node flags that make the daemon write a V8 CPU profile into DIR when it
 * stops (summarize it with `node dist/bench/support/cpuprofile-top.js FILE`); [] when unset.
 */
export function profArgs(suite: string, ctx: { log(msg: string): void }): string[] {
  const dir = process.env.BENCH_CPU_PROF;
  if (!dir) return [];
  const name = `${suite}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`;
  ctx.log(`daemon CPU profile: ${dir}/${name} (written when the daemon stops)`);
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}`];
}
