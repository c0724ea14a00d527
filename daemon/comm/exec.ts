/**
 * Run a host tool (ip, nft) to completion with optional stdin. Never rejects on a non-zero exit;
 * a missing binary or a refused permission becomes a CommError that names the fix.
 */
import { spawn } from 'node:child_process';
import { CommError } from './network.js';

interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export type Exec = (file: string, args: readonly string[], input?: string) => Promise<ExecResult>;

/** Which Debian package ships each tool metad runs. */
const PACKAGE_OF: Readonly<Record<string, string>> = { ip: 'iproute2', nft: 'nftables', dnsmasq: 'dnsmasq-base' };

export function packageHint(file: string): string {
  const base = file.split('/').pop() ?? file;
  return PACKAGE_OF[base] ?? base;
}

export const execFile: Exec = (file, args, input) =>
  new Promise((resolve, reject) => {
    const child = spawn(file, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(
        e.code === 'ENOENT' ? new CommError(`${file} not found: install ${packageHint(file)} (or set its path in the network config)`) : e,
      );
    });
    child.once('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });

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
