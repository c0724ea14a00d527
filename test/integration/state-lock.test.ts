/**
 * One daemon per state dir (daemon/process/state-lock.ts), with the real `metad serve`: a second daemon
 * on the same state dir exits 1 naming the first's pid and changes nothing, whether it has its own
 * socket and port (loopback) or the very same configuration with the comm network on (routed, in
 * test namespaces: the first's nftables table and dnsmasq stay untouched); after kill -9 of the
 * holder the next daemon starts (the kernel dropped the lock with the process).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sampleInstance, type Reply } from '../support/daemon.js';
import { CLI, admin, startProcess, LOOPBACK, writeConfig } from '../support/process.js';
import { childPids } from '../support/comm-topology.js';
import { GUESTS, commBed, registerGuests } from '../support/comm-harness.js';
import { until } from '../support/wait.js';

const names = (r: Reply): string[] => (r.json as { instances: { name: string }[] }).instances.map((i) => i.name);

/** Every entry under `dir`: kind, mode, mtime, size and a hash of the content. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      const st = lstatSync(p);
      const hash = st.isFile() ? createHash('sha256').update(readFileSync(p)).digest('hex') : '-';
      out[p] = `${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${hash}`;
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** Wait for `child` to exit by itself; one that is still running after 30 s is killed and reported as 'still running'. */
async function exitOf(child: ChildProcess, output: () => string): Promise<{ code: number | 'still running'; out: string }> {
  if (child.exitCode !== null) return { code: child.exitCode, out: output() };
  const timer = { killed: false };
  const t = setTimeout(() => {
    timer.killed = true;
    child.kill('SIGKILL');
  }, 30_000);
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  clearTimeout(t);
  return { code: timer.killed ? 'still running' : (code ?? -1), out: output() };
}

function spawnCli(config: string, via?: (cmd: string, args: string[]) => ChildProcess): { child: ChildProcess; out: () => string } {
  const args = [CLI, 'serve', '--config', config];
  const child = via ? via(process.execPath, args) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  return { child, out: () => out };
}

test('a second metad on the same state dir (own socket and port) exits 1 naming the pid and changes nothing; after kill -9 the next one starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-lock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  const sock1 = join(dir, 'admin.sock');
  const first = await startProcess(writeConfig(dir, LOOPBACK), sock1);
  t.after(() => first.child.kill('SIGKILL'));
  assert.equal((await admin(sock1, 'PUT', '/v1/instances/vm0', sampleInstance(0))).status, 201);

  const dir2 = join(dir, 'second');
  mkdirSync(dir2);
  const sock2 = join(dir2, 'admin.sock');
  const cfg2 = writeConfig(dir2, { ...LOOPBACK, stateDir: state });
  const before = snapshot(dir);
  const second = spawnCli(cfg2);
  t.after(() => second.child.kill('SIGKILL'));
  const r = await exitOf(second.child, second.out);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, new RegExp(`state dir \\S+ in use by pid ${String(first.child.pid)}\\b`));
  assert.doesNotMatch(r.out, /metad started/);
  assert.ok(!existsSync(sock2), 'the second daemon must not create its socket');
  assert.deepEqual(snapshot(dir), before, 'the second daemon changed files');

  // The first one still serves and writes.
  assert.equal((await admin(sock1, 'PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
  assert.deepEqual(names(await admin(sock1, 'GET', '/v1/instances')).sort(), ['vm0', 'vm1']);

  // kill -9: the lock dies with the process; the file still names the dead pid, which is no obstacle.
  first.child.kill('SIGKILL');
  await new Promise((res) => first.child.once('exit', res));
  assert.equal(readFileSync(join(state, 'metad.lock'), 'utf8').trim(), String(first.child.pid));
  const third = await startProcess(cfg2, sock2);
  t.after(() => third.child.kill('SIGKILL'));
  assert.deepEqual(names(await admin(sock2, 'GET', '/v1/instances')).sort(), ['vm0', 'vm1']);
  assert.equal(readFileSync(join(state, 'metad.lock'), 'utf8').trim(), String(third.child.pid));

  // And the new holder is named to the next comer.
  const cfg1 = writeConfig(dir, { ...LOOPBACK, stateDir: state });
  const held = snapshot(dir);
  const fourth = spawnCli(cfg1);
  t.after(() => fourth.child.kill('SIGKILL'));
  const r4 = await exitOf(fourth.child, fourth.out);
  assert.equal(r4.code, 1, r4.out);
  assert.match(r4.out, new RegExp(`in use by pid ${String(third.child.pid)}\\b`));
  assert.deepEqual(snapshot(dir), held, 'a refused daemon changes nothing (not even the stale socket the killed one left)');
});

test('routed: the same configuration started twice leaves the first one’s nftables table, addresses and dnsmasq untouched', async (t) => {
  const bed = await commBed(t); // its end kills the second daemon too, if it still runs
  if (!bed) return;
  const { hv, dir } = bed;
  const metad = await bed.startMetad({ mode: 'routed' });
  const pid = metad.child.pid!;
  await registerGuests(metad);
  // Settled: dnsmasq serves the three hosts and has not been restarted for a second.
  let last: number | undefined;
  const dnsmasq = await until('dnsmasq with the three hosts, settled', async () => {
    const p = childPids(pid, 'dnsmasq');
    const hosts = existsSync(join(dir, 'run', 'dhcp-hosts')) ? readFileSync(join(dir, 'run', 'dhcp-hosts'), 'utf8') : '';
    const now = p.length === 1 && GUESTS.every((g) => hosts.includes(g.mac)) ? p[0] : undefined;
    if (now !== undefined && now === last) return now;
    last = now;
    await new Promise((r) => setTimeout(r, 1000));
    return undefined;
  });
  await until('routes for all three guests', async () => {
    const routes = await hv.ip('-4', 'route', 'show', 'proto', '171');
    return GUESTS.every((g) => routes.includes(`${g.ipv4} dev ${g.tap}`));
  });
  // Handles (-a) change when the table is replaced, even with the same content.
  // IPv6 duplicate address detection may finish meanwhile: "tentative" is the kernel's, not ours.
  const host = async (): Promise<string> =>
    [(await hv.run('nft', ['-a', 'list', 'ruleset'])).stdout, await hv.ip('addr'), await hv.ip('route')]
      .join('\n---\n')
      .replaceAll(' tentative', '');
  const before = { host: await host(), files: snapshot(dir) };

  const second = spawnCli(join(dir, 'config.json'), (cmd, args) => hv.spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  const r = await exitOf(second.child, second.out);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, new RegExp(`state dir \\S+ in use by pid ${String(pid)}\\b`));
  assert.doesNotMatch(r.out, /another daemon is listening/);

  assert.equal(await host(), before.host, 'the second daemon changed the namespace (nftables, addresses or routes)');
  assert.deepEqual(snapshot(dir), before.files, 'the second daemon changed files (state dir, run dir, socket)');
  assert.deepEqual(childPids(pid, 'dnsmasq'), [dnsmasq], 'the first daemon’s dnsmasq must be the same process');
  const pids = (await hv.run('ip', ['netns', 'pids', hv.name])).stdout.split(/\s+/).filter(Boolean);
  const inNs = pids.filter((p) => existsSync(`/proc/${p}/comm`) && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'dnsmasq');
  assert.deepEqual(inNs, [String(dnsmasq)], 'exactly one dnsmasq in the namespace');
  assert.deepEqual(names(await metad.admin('GET', '/v1/instances')).sort(), GUESTS.map((g) => g.name).sort());
});
