/** Process helpers for the guest and storm benchmarks: CPU time from /proc (Linux), daemon profiling. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

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
