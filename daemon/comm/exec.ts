/**
 * The one module that starts host tools (the layering test holds it to that): `ip`, `nft` and
 * `qemu-img` run to completion through boundedExec; the long-running ones (dnsmasq, `ip monitor`)
 * start through spawnTool and are supervised by their owners.
 *
 * Run a host tool (ip, nft, qemu-img) to completion with optional stdin, bounded in time on the
 * injected clock. Never rejects on a non-zero exit; a missing binary or a refused permission
 * becomes a CommError that names the fix. A tool that has not exited within its bound is
 * killed (SIGKILL to its whole process group: it runs as a group leader, so anything it started
 * goes too) and the call rejects at once with a CommError saying so: a hung `ip` or `nft` (a
 * stuck netlink request, a full pipe) never holds a reconcile, a job or a shutdown.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { bounded, systemClock, TimedOut, type Clock } from '../clock.js';
import { CommError } from './network.js';

interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export type Exec = (file: string, args: readonly string[], input?: string) => Promise<ExecResult>;

/** How long one run of a host tool may take by default (ms); an `nft -f` of 10,000 instances takes well under a second. */
const EXEC_TIMEOUT_MS = 30_000;

/** Which Debian package ships each tool metad runs. */
const PACKAGE_OF: Readonly<Record<string, string>> = { ip: 'iproute2', nft: 'nftables', dnsmasq: 'dnsmasq-base', 'qemu-img': 'qemu-utils' };

export function packageHint(file: string): string {
  const base = file.split('/').pop() ?? file;
  return PACKAGE_OF[base] ?? base;
}

/** An Exec whose runs are bounded by `timeoutMs` on `clock` (killed when they pass it). */
export function boundedExec(clock: Clock = systemClock, timeoutMs = EXEC_TIMEOUT_MS): Exec {
  return async (file, args, input) => {
    const child = spawn(file, [...args], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const run = new Promise<ExecResult>((resolve, reject) => {
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.once('error', (e: NodeJS.ErrnoException) => {
        reject(
          e.code === 'ENOENT'
            ? new CommError(`${file} not found: install ${packageHint(file)} (or set its path in the network config)`)
            : e,
        );
      });
      child.once('close', (code) =>
        resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
      );
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    });
    try {
      return await bounded(clock, timeoutMs, file, run);
    } catch (e) {
      if (!(e instanceof TimedOut)) throw e;
      killGroup(child.pid);
      run.catch(() => undefined);
      const base = file.split('/').pop() ?? file;
      throw new CommError(`${base} ${args.slice(0, 2).join(' ')} did not finish within ${String(timeoutMs)} ms: killed`);
    }
  };
}

/** A started long-running tool. */
export type ToolProcess = ChildProcess;

/**
 * Start a long-running host tool (dnsmasq, `ip monitor`, an OS definition's trusted script:
 * daemon/jobs/trusted.ts); its owner supervises and stops it. `opts`: its working directory, its
 * whole environment, and `detached` to lead a process group of its own (killGroup ends it all).
 */
export function spawnTool(
  file: string,
  args: readonly string[],
  stdio: StdioOptions,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; detached?: boolean } = {},
): ToolProcess {
  return spawn(file, [...args], { stdio, ...opts });
}

/** SIGKILL to the process group led by `pid` (the tool and whatever it started). */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Run and require exit 0; a failure names the tool, its first error line and the likely fix. */
export async function mustExec(exec: Exec, file: string, args: readonly string[], input?: string): Promise<string> {
  const r = await exec(file, args, input);
  if (r.code === 0) return r.stdout;
  const first = r.stderr.trim().split('\n')[0] ?? '';
  const perm = /Operation not permitted|Permission denied/i.test(r.stderr);
  const base = file.split('/').pop() ?? file;
  throw new CommError(
    `${base} ${args.slice(0, 2).join(' ')} failed: ${first.slice(0, 200)}${perm ? ' (needs CAP_NET_ADMIN: run as root or with the systemd unit)' : ''}`,
  );
}
