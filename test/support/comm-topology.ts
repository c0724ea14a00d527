/**
 * A throwaway comm network for tests: a "hypervisor" network namespace (holds metad, its taps,
 * routes, nftables table and dnsmasq) and guest namespaces, each joined to it by a veth pair whose
 * hypervisor end is the guest's "tap". Nothing is configured in the machine's own namespace.
 * Names are `metadc-PID-xxxxxx` (stale ones from killed runs are removed first); `destroy` kills
 * every process left in the namespaces and deletes them, which removes veths, routes and tables.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cleanupStaleNetns, listNetns, runFile, type RunResult } from './netns.js';
import { pidAlive } from './process.js';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

const IP = '/usr/sbin/ip';
const PREFIX = 'metadc';

function run(file: string, args: readonly string[], input?: string, timeoutMs = 30_000): Promise<RunResult> {
  return runFile(file, args, { timeoutMs, ...(input === undefined ? {} : { input }) });
}

async function must(args: readonly string[]): Promise<string> {
  const r = await run(IP, args);
  if (r.code !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

export interface Ns {
  readonly name: string;
  /** Run to completion inside the namespace (never rejects on non-zero exit). */
  run(cmd: string, args?: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<RunResult>;
  spawn(cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  ip(...args: string[]): Promise<string>;
}

function ns(name: string): Ns {
  return {
    name,
    run: (cmd, args = [], opts = {}) => run(IP, ['netns', 'exec', name, cmd, ...args], opts.input, opts.timeoutMs),
    spawn: (cmd, args, opts = {}) => spawn(IP, ['netns', 'exec', name, cmd, ...args], opts),
    ip: (...args) => must(['-n', name, ...args]),
  };
}

export interface Guest extends Ns {
  /** The hypervisor end of its veth (named like a tap). */
  readonly tap: string;
  readonly mac: string;
}

export interface Topology {
  readonly hv: Ns;
  readonly guests: Guest[];
  /** Another guest joined later (e.g. after `nic up`). */
  addGuest(tap: string, mac: string): Promise<Guest>;
  destroy(): Promise<void>;
}

async function newNs(): Promise<Ns> {
  const name = `${PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}`;
  await must(['netns', 'add', name]);
  await must(['-n', name, 'link', 'set', 'lo', 'up']);
  return ns(name);
}

/** Kill whatever still runs in a namespace (ours: we created it), then delete it. */
async function removeNs(name: string): Promise<void> {
  if (!listNetns().includes(name)) return;
  const pids = await run(IP, ['netns', 'pids', name]);
  for (const p of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await run(IP, ['netns', 'del', name]);
}

/** Namespaces of earlier runs whose test process is gone: kill what still runs there (a metad, a dnsmasq), delete them. */
async function removeStale(): Promise<void> {
  for (const name of listNetns()) {
    const m = new RegExp(`^${PREFIX}-(\\d+)-[0-9a-f]{6}$`).exec(name);
    if (m && !pidAlive(Number(m[1]))) await removeNs(name);
  }
  await cleanupStaleNetns(PREFIX); // and their /etc/netns dirs
}

export async function createTopology(guests: readonly { tap: string; mac: string }[]): Promise<Topology> {
  await removeStale();
  const made: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const n of made.reverse()) await removeNs(n);
  };
  try {
    const hv = await newNs();
    made.push(hv.name);
    const list: Guest[] = [];
    const addGuest = async (tap: string, mac: string): Promise<Guest> => {
      const g = await newNs();
      made.push(g.name);
      await hv.ip('link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', g.name);
      await g.ip('link', 'set', 'eth0', 'address', mac);
      await g.ip('link', 'set', 'eth0', 'up');
      const guest = { ...g, tap, mac };
      list.push(guest);
      return guest;
    };
    for (const g of guests) await addGuest(g.tap, g.mac);
    return { hv, guests: list, addGuest, destroy };
  } catch (e) {
    await destroy();
    throw e;
  }
}

/** Pids of the direct children of `pid` named `comm` (e.g. the daemon's dnsmasq). */
export function childPids(pid: number, comm: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(stat);
      if (m && m[1] === comm && Number(m[2]) === pid) out.push(Number(d));
    } catch {
      // raced with an exit
    }
  }
  return out;
}
