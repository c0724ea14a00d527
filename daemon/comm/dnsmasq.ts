/**
 * metad's DHCP server: a real dnsmasq as a supervised child, DHCP only, serving every interface
 * that holds the metadata address (the anchor and the comm taps, or the bridge), static MAC ->
 * IPv4 from the registry. A changed hosts file is written atomically and dnsmasq told to reread it
 * (SIGHUP): registering NICs and taps coming and going never restart it. Only a NIC removed or
 * readdressed does (its lease lives in dnsmasq's memory, and a reread keeps it: nobody else could
 * get that address until it expired). If it dies it is restarted with a backoff (clock-driven).
 * Its log (stderr) becomes metad's: DHCP messages as events with fields, sampled per client.
 * When metad runs as root, dnsmasq drops to `network.dhcp.user` (dnsmasq's own --user/--group).
 */
import { packageHint, spawnTool, type ToolProcess } from './exec.js';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import { writeFileDurable } from '../registry/persist.js';
import { EV } from '../log/events.js';
import type { DhcpServer } from './linux.js';
import { buildDhcpHosts, buildDnsmasqConf, type CommNic, type CommSettings } from './plan.js';

/** At most one line per key per interval (routes/guest/log-sampler.ts's LogSampler, injected by the composition root). */
export interface LineSampler {
  take(key: string, now: number): number | undefined;
  overflow(now: number): number | undefined;
}

export interface DnsmasqOptions {
  readonly path: string;
  /** Runtime dir for dnsmasq.conf and dhcp-hosts (0755, the hosts file 0644: dnsmasq rereads it after dropping privileges). */
  readonly dir: string;
  readonly settings: CommSettings;
  readonly leaseTimeSec: number;
  readonly log: Logger;
  readonly clock: Clock;
  /** network.dhcp.user: whom dnsmasq runs as when metad is root (default: `dnsmasq` if that user exists, else `nobody`). */
  readonly user?: string;
  /** Samples dnsmasq's log lines per client and message type (none: every line is logged). */
  readonly sampler?: LineSampler;
  readonly spawnChild?: (file: string, args: readonly string[]) => ToolProcess;
}

/** dnsmasq's lines: at most one per client (MAC) and message type, or per kind of other line, per 10 s. */
export const DHCP_LOG_INTERVAL_MS = 10_000;

/** The waits before the 1st, 2nd, 3rd and every later restart after an exit (monotonic). */
export const BACKOFF_MS = [250, 1000, 5000, 30000] as const;
/** A dnsmasq that ran longer than this before it exited starts the backoff over. */
export const HEALTHY_MS = 60_000;
/** How long a start or a reread may take before metad says so (dnsmasq logs `read <hosts file>`). */
const READ_WAIT_MS = 3000;

/** What GET /v1/health and the metrics show of metad's dnsmasq. */
export interface DhcpStatus {
  readonly running: boolean;
  readonly pid?: number;
  /** Starts after the first: for a changed config, a NIC removed or readdressed, or after it died. */
  readonly restarts: number;
  readonly rereads: number;
  /** Leases dnsmasq granted (DHCPACK) that have neither ended nor been released, in this dnsmasq process. */
  readonly leases: number;
}

/** One line of dnsmasq's log, parsed. */
export interface DnsmasqLine {
  /** `message`: a DHCP message handled normally; `refused`: NAK, DECLINE, or a message dnsmasq did not serve; `other`: anything else. */
  readonly kind: 'message' | 'refused' | 'other';
  /** DISCOVER, OFFER, REQUEST, ACK, NAK, DECLINE, RELEASE, INFORM (without `DHCP`). */
  readonly type?: string;
  readonly iface?: string;
  readonly ipv4?: string;
  readonly mac?: string;
  /** dnsmasq's words after the MAC (a reason, or the client's host name), 200 characters at most. */
  readonly detail?: string;
  /** The line without dnsmasq's `dnsmasq[-dhcp][pid]: ` prefix, 200 characters at most. */
  readonly text: string;
}

const PREFIX_RE = /^dnsmasq(?:-[a-z]+)?\[\d+\]: /;
// dnsmasq's log_packet(): `DHCP<TYPE>(<iface>) [<ipv4> ]<mac>[ <detail>]` (with --log-dhcp a numeric xid first).
const PACKET_RE =
  /^(?:\d+ )?DHCP([A-Z]+)\(([^)]{0,64})\)\s+(?:(\d{1,3}(?:\.\d{1,3}){3})\s+)?([0-9a-fA-F]{2}(?:[:-][0-9a-fA-F]{2}){0,19}|<null>)?\s*(.*)$/;
const SERVED = new Set(['OFFER', 'ACK']);

export function parseDnsmasqLine(raw: string): DnsmasqLine {
  const text = raw.replace(PREFIX_RE, '').trim().slice(0, 200);
  const m = PACKET_RE.exec(text);
  if (!m) return { kind: 'other', text };
  const [, type = '', iface, ipv4, mac, rest] = m;
  const detail = rest === undefined || rest.trim() === '' ? undefined : rest.trim();
  // OFFER/ACK details are the client's host name; on anything else a detail is dnsmasq's reason for not serving it.
  const refused = type === 'NAK' || type === 'DECLINE' || (detail !== undefined && !SERVED.has(type));
  return {
    kind: refused ? 'refused' : 'message',
    type,
    ...(iface === undefined ? {} : { iface }),
    ...(ipv4 === undefined ? {} : { ipv4 }),
    ...(mac === undefined ? {} : { mac: mac.toLowerCase() }),
    ...(detail === undefined ? {} : { detail }),
    text,
  };
}

/** dnsmasq's own lines that report a failure (logged as warnings). */
const PROBLEM_RE = /\b(fail|failed|error|cannot|can't|denied|illegal|bad|unknown|missing|refused|disabling)\b/i;

/** `name:x:uid:gid:...` lines -> the user's primary gid; `name:x:gid:...` -> the group's name. */
async function passwdLookup(user: string): Promise<{ user: string; group?: string } | undefined> {
  const read = (f: string): Promise<string[]> =>
    readFile(f, 'utf8').then(
      (t) => t.split('\n'),
      () => [],
    );
  const pw = (await read('/etc/passwd')).map((l) => l.split(':')).find((f) => f[0] === user);
  if (!pw) return undefined;
  const group = (await read('/etc/group')).map((l) => l.split(':')).find((f) => f[2] === pw[3])?.[0];
  return group === undefined ? { user } : { user, group };
}

/**
 * Whom dnsmasq runs as: when metad is root, the configured user (default `dnsmasq` if it exists,
 * else `nobody`) with its primary group; otherwise metad's own user, so dnsmasq never calls setuid
 * (the systemd unit's `SystemCallFilter=~@privileged` and capability set would refuse it).
 */
export async function dnsmasqIdentity(configured: string | undefined, uid = process.getuid?.()): Promise<{ user: string; group?: string }> {
  if (uid !== 0) return { user: userInfo().username };
  if (configured !== undefined) return (await passwdLookup(configured)) ?? { user: configured };
  return (await passwdLookup('dnsmasq')) ?? (await passwdLookup('nobody')) ?? { user: 'nobody' };
}

interface Waiter {
  readonly pred: (line: string) => boolean;
  readonly done: (ok: boolean) => void;
}

export class DnsmasqSupervisor implements DhcpServer {
  private child: ToolProcess | undefined;
  private conf = '';
  private hosts = '';
  /** MAC -> IPv4 as dnsmasq was last given them. */
  private pairs = new Map<string, string>();
  private stopping = false;
  private reaped = false;
  private failures = 0;
  private lastLine = '';
  private waiters: Waiter[] = [];
  private identity: { user: string; group?: string } | undefined;
  private readonly abort = new AbortController();
  private exited: Promise<void> = Promise.resolve();
  private pidWrite: Promise<void> = Promise.resolve();
  /** The child metad is stopping on purpose (`child.killed` is set by any signal, SIGHUP included). */
  private terminating: ToolProcess | undefined;
  /** Starts (the first one included) and rereads since this supervisor was made (status, tests, benchmarks). */
  readonly counts = { starts: 0, rereads: 0 };
  /**
   * MAC -> when its lease ends (wall clock, ms), from dnsmasq's DHCPACK lines. dnsmasq keeps its
   * leases in memory only (`leasefile-ro`, no lease file to read): a RELEASE ends one, and a
   * new dnsmasq process starts with none.
   */
  private readonly leaseEnds = new Map<string, number>();

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
    return this.child ? new Set(this.pairs.keys()) : new Set();
  }

  /** For health and metrics: whether dnsmasq runs, its restarts (starts after the first) and the leases it holds now. */
  status(): DhcpStatus {
    const now = this.o.clock.now();
    for (const [mac, end] of this.leaseEnds) if (end <= now) this.leaseEnds.delete(mac);
    return {
      running: this.child !== undefined,
      ...(this.child?.pid === undefined ? {} : { pid: this.child.pid }),
      restarts: Math.max(0, this.counts.starts - 1),
      rereads: this.counts.rereads,
      leases: this.leaseEnds.size,
    };
  }

  async update(nics: readonly CommNic[]): Promise<void> {
    if (this.stopping) return;
    const conf = buildDnsmasqConf(this.o.settings, this.hostsFile, this.o.leaseTimeSec);
    const hosts = buildDhcpHosts(nics);
    if (conf === this.conf && hosts === this.hosts && this.child) return;
    await mkdir(this.o.dir, { recursive: true, mode: 0o755 });
    await chmod(this.o.dir, 0o755); // whatever the umask: dnsmasq rereads the hosts file as its own user
    await writeFileDurable(this.o.dir, 'dhcp-hosts', hosts, 0o644);
    await chmod(this.hostsFile, 0o644);
    const pairs = new Map(nics.map((n) => [n.mac, n.ipv4]));
    const forgotten = [...this.pairs].some(([mac, ip]) => pairs.get(mac) !== ip);
    const confChanged = conf !== this.conf;
    if (confChanged) await writeFileDurable(this.o.dir, 'dnsmasq.conf', conf, 0o644);
    this.conf = conf;
    this.hosts = hosts;
    this.pairs = pairs;
    if (this.child && !confChanged && !forgotten) await this.reread(this.child);
    else await this.restart();
  }

  /** SIGHUP: dnsmasq rereads dhcp-hostsfile; resolved when it says it has (or after READ_WAIT_MS, with a warning). */
  private async reread(child: ToolProcess): Promise<void> {
    const read = this.expect((l) => l.includes(`read ${this.hostsFile}`));
    child.kill('SIGHUP');
    this.counts.rereads++;
    if (await read) this.o.log.debug({ pid: child.pid, hosts: this.pairs.size }, EV.dhcpReread);
    else if (this.child === child) this.o.log.warn({ pid: child.pid, waitedMs: READ_WAIT_MS }, EV.dhcpRereadUnconfirmed);
  }

  private expect(pred: (line: string) => boolean): Promise<boolean> {
    return new Promise((resolve) => {
      const ac = new AbortController();
      const w: Waiter = {
        pred,
        done: (ok) => {
          ac.abort();
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(ok);
        },
      };
      this.waiters.push(w);
      this.o.clock.sleep(READ_WAIT_MS, ac.signal).then(
        () => w.done(false),
        () => undefined,
      );
    });
  }

  private async restart(): Promise<void> {
    await this.kill();
    if (this.stopping) return;
    if (!this.reaped) {
      this.reaped = true;
      await this.reapOrphan();
    }
    this.identity ??= await dnsmasqIdentity(this.o.user);
    const ready = this.expect((l) => l.includes(`read ${this.hostsFile}`));
    this.launch();
    await ready; // served() is true only once dnsmasq has the hosts (a failed start is logged by its exit)
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

  /** One line of dnsmasq's stderr: wake whoever waits for it, and log it (sampled per client and type). */
  private onLine(raw: string): void {
    if (raw.trim() === '') return;
    this.lastLine = raw;
    for (const w of [...this.waiters]) if (w.pred(raw)) w.done(true);
    const l = parseDnsmasqLine(raw);
    const now = this.o.clock.now();
    if (l.kind === 'message' && l.mac !== undefined) {
      if (l.type === 'ACK') this.leaseEnds.set(l.mac, now + this.o.leaseTimeSec * 1000);
      else if (l.type === 'RELEASE') this.leaseEnds.delete(l.mac);
    }
    const key = l.kind === 'other' ? `log ${l.text.replace(/[0-9]+/g, '#').slice(0, 80)}` : `${l.mac ?? l.iface ?? '-'} ${l.type ?? ''}`;
    const suppressed = this.o.sampler ? this.o.sampler.take(key, now) : 0;
    const over = this.o.sampler?.overflow(now);
    if (over !== undefined) this.o.log.warn({ lines: over }, EV.dhcpLogSuppressed);
    if (suppressed === undefined) return;
    const extra = suppressed > 0 ? { suppressed } : {};
    if (l.kind === 'other') {
      if (PROBLEM_RE.test(l.text)) this.o.log.warn({ line: l.text, ...extra }, EV.dhcpLogProblem);
      else this.o.log.info({ line: l.text, ...extra }, EV.dhcpLog);
      return;
    }
    const fields = { type: l.type, iface: l.iface, ipv4: l.ipv4, mac: l.mac, detail: l.detail, ...extra };
    if (l.kind === 'refused') this.o.log.warn(fields, EV.dhcpRefused);
    else this.o.log.info(fields, EV.dhcpMessage);
  }

  private launch(): void {
    const id = this.identity ?? { user: userInfo().username };
    const args = [
      '--keep-in-foreground',
      `--conf-file=${this.confFile}`,
      '--pid-file=',
      '--log-facility=-',
      `--user=${id.user}`,
      ...(id.group === undefined ? [] : [`--group=${id.group}`]),
    ];
    const child = (this.o.spawnChild ?? ((f, a) => spawnTool(f, a, ['ignore', 'ignore', 'pipe'])))(this.o.path, args);
    this.child = child;
    this.counts.starts++;
    this.leaseEnds.clear(); // a new process knows no lease (leasefile-ro)
    const startedAt = this.o.clock.mono();
    let buf = '';
    child.stderr?.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      if (buf.length > 4096) {
        this.onLine(buf);
        buf = '';
      }
    });
    this.exited = new Promise((resolve) => {
      child.once('error', (e: NodeJS.ErrnoException) => {
        this.o.log.error({ code: e.code, hint: e.code === 'ENOENT' ? `install ${packageHint(this.o.path)}` : undefined }, EV.dhcpFailed);
      });
      child.once('close', (code, signal) => {
        if (buf !== '') this.onLine(buf);
        buf = '';
        if (this.child === child) this.child = undefined;
        for (const w of [...this.waiters]) w.done(false);
        resolve();
        if (this.stopping || this.terminating === child) return;
        if (this.o.clock.mono() - startedAt > HEALTHY_MS) this.failures = 0; // it was healthy: restart quickly
        // Its own words, last line only: dnsmasq says why (bad config, address in use...).
        this.o.log.error({ code, signal, reason: this.lastLine.trim().slice(0, 200) }, EV.dhcpExited);
        void this.respawn();
      });
    });
    if (child.pid !== undefined)
      this.pidWrite = writeFileDurable(this.o.dir, 'dnsmasq.pid', `${String(child.pid)}\n`, 0o644).catch(() => undefined);
    this.o.log.info({ pid: child.pid, user: id.user }, EV.dhcpStarted);
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
    this.terminating = c;
    c.kill('SIGTERM');
    await this.exited;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.abort.abort();
    await this.kill();
    await this.pidWrite; // nothing of ours is still being written once stop() returns
  }

  /** The hosts file as written (for tests and status). */
  async readHosts(): Promise<string> {
    return readFile(this.hostsFile, 'utf8');
  }
}
