/**
 * metad's DHCP server: a real dnsmasq as a supervised child, DHCP only, bound to the anchor and
 * the comm taps, static MAC -> IPv4 from the registry. Its config and hosts file are rewritten on
 * change and dnsmasq restarted (its leases live in memory only, so a restart is also how a
 * removed NIC's lease goes); if it dies it is restarted with a backoff (clock-driven).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { writeFileDurable } from '../persist.js';
import { EV } from '../events.js';
import type { DhcpServer } from './linux.js';
import { buildDhcpHosts, buildDnsmasqConf, type CommNic, type CommSettings } from './plan.js';
import { packageHint } from './exec.js';

export interface DnsmasqOptions {
  readonly path: string;
  /** Runtime dir for dnsmasq.conf and dhcp-hosts (created 0755: dnsmasq may drop privileges). */
  readonly dir: string;
  readonly settings: CommSettings;
  readonly leaseTimeSec: number;
  readonly log: Logger;
  readonly clock: Clock;
  readonly spawnChild?: (file: string, args: readonly string[]) => ChildProcess;
}

const BACKOFF_MS = [250, 1000, 5000, 30000] as const;

export class DnsmasqSupervisor implements DhcpServer {
  private child: ChildProcess | undefined;
  private conf = '';
  private hosts = '';
  private macs = new Set<string>();
  private stopping = false;
  private reaped = false;
  private failures = 0;
  private readonly abort = new AbortController();
  private exited: Promise<void> = Promise.resolve();

  constructor(private readonly o: DnsmasqOptions) {}

  get confFile(): string {
    return join(this.o.dir, 'dnsmasq.conf');
  }
  get hostsFile(): string {
    return join(this.o.dir, 'dhcp-hosts');
  }
  get pid(): number | undefined {
    return this.child?.pid;
  }

  served(): ReadonlySet<string> {
    return this.child ? this.macs : new Set();
  }

  async update(nics: readonly CommNic[]): Promise<void> {
    if (this.stopping) return;
    const conf = buildDnsmasqConf(nics, this.o.settings, this.hostsFile, this.o.leaseTimeSec);
    const hosts = buildDhcpHosts(nics);
    if (conf === this.conf && hosts === this.hosts && this.child) return;
    await mkdir(this.o.dir, { recursive: true, mode: 0o755 });
    await writeFileDurable(this.o.dir, 'dhcp-hosts', hosts, 0o644);
    await writeFileDurable(this.o.dir, 'dnsmasq.conf', conf, 0o644);
    this.conf = conf;
    this.hosts = hosts;
    this.macs = new Set(nics.map((n) => n.mac));
    await this.restart();
  }

  private async restart(): Promise<void> {
    await this.kill();
    if (this.stopping) return;
    if (!this.reaped) {
      this.reaped = true;
      await this.reapOrphan();
    }
    this.launch();
  }

  get pidFile(): string {
    return join(this.o.dir, 'dnsmasq.pid');
  }

  /**
   * A metad that was killed (SIGKILL, OOM) leaves its dnsmasq running, holding the DHCP port: the
   * new one could never bind. Kill it, but only if it is really ours (its command line names our
   * config file).
   */
  private async reapOrphan(): Promise<void> {
    let pid: number;
    try {
      pid = Number((await readFile(this.pidFile, 'utf8')).trim());
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) return;
    let cmdline: string;
    try {
      cmdline = await readFile(`/proc/${String(pid)}/cmdline`, 'utf8');
    } catch {
      return; // gone
    }
    if (!cmdline.split('\0').includes(`--conf-file=${this.confFile}`)) return;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
    for (let i = 0; i < 50; i++) {
      try {
        await readFile(`/proc/${String(pid)}/cmdline`);
      } catch {
        break;
      }
      await this.o.clock.sleep(20);
    }
    this.o.log.warn({ pid }, EV.dhcpOrphanKilled);
  }

  private launch(): void {
    const args = [
      '--keep-in-foreground',
      `--conf-file=${this.confFile}`,
      '--pid-file=',
      '--log-facility=-',
      `--user=${userInfo().username}`,
    ];
    const child = (this.o.spawnChild ?? ((f, a) => spawn(f, [...a], { stdio: ['ignore', 'ignore', 'pipe'] })))(this.o.path, args);
    this.child = child;
    const startedAt = this.o.clock.now();
    let tail = '';
    child.stderr?.on('data', (b: Buffer) => {
      tail = (tail + b.toString('utf8')).slice(-2000);
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        this.o.log.error({ code: e.code, hint: e.code === 'ENOENT' ? `install ${packageHint(this.o.path)}` : undefined }, EV.dhcpFailed);
      });
      child.once('close', (code, signal) => {
        if (this.child === child) this.child = undefined;
        resolve();
        if (this.stopping || child.killed) return;
        if (this.o.clock.now() - startedAt > 60_000) this.failures = 0; // it was healthy: restart quickly
        // Its own words, last line only: dnsmasq says why (bad config, address in use...).
        this.o.log.error({ code, signal, reason: tail.trim().split('\n').pop()?.slice(0, 200) }, EV.dhcpExited);
        void this.respawn();
      });
    });
    if (child.pid !== undefined) void writeFileDurable(this.o.dir, 'dnsmasq.pid', `${String(child.pid)}\n`, 0o644).catch(() => undefined);
    this.o.log.info({ pid: child.pid }, EV.dhcpStarted);
  }

  private async respawn(): Promise<void> {
    const ms = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)] ?? 30000;
    this.failures++;
    try {
      await this.o.clock.sleep(ms, this.abort.signal);
    } catch {
      return; // stopped meanwhile
    }
    if (!this.stopping && !this.child) this.launch();
  }

  private async kill(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGTERM');
    await this.exited;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.kill();
  }

  /** The hosts file as written (for tests and status). */
  async readHosts(): Promise<string> {
    return readFile(this.hostsFile, 'utf8');
  }
}
