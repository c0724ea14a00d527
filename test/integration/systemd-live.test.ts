/**
 * metad under the REAL systemd/metad.service, run by a real systemd: a container boots the host's
 * own /usr (test/support/nspawn.ts) inside a "hypervisor" network namespace this test creates
 * (test/support/comm-topology.ts), with the unit file bound in unchanged. Proves live what
 * `systemd-analyze verify` cannot: Type=notify readiness, the admin socket's group, reload,
 * Restart=always and RestartPreventExitStatus=2, the capabilities and limits the process really
 * gets, SIGUSR1, and network.mode routed then bridged (anchor or bridge, nftables, dnsmasq, a
 * guest's lease and read) under the unit's sandbox. Everything (container, cgroups, namespaces) is removed afterwards.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { skipOrFail } from '../support/env.js';
import { listNetns } from '../support/netns.js';
import { createTopology, type Guest, type Ns } from '../support/comm-topology.js';
import { commMissing, curl, dhcp, writeDhcpScript } from '../support/comm-harness.js';
import { bootContainer, containerMissing, type Container } from '../support/nspawn.js';
import { until } from '../support/wait.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const UNIT = join(ROOT, 'systemd/metad.service');
const GUEST = { tap: 'mtap1', mac: '02:00:00:00:01:0a', ipv4: '169.254.1.10' };
// CAP_NET_BIND_SERVICE (10) and CAP_NET_ADMIN (12): the unit's whole grant.
const CAPS = ((1n << 10n) | (1n << 12n)).toString(16).padStart(16, '0');

// The ONLY override of the shipped unit. The container's /usr is the host's, read-only, and holds
// no `npm install -g` of metad, so /usr/bin/metad does not exist there: run this checkout's build,
// bound at /opt/metad. The config stays where the unit looks (/etc/metad/config.yaml, a bound dir).
const DROP_IN = `[Service]
ExecStart=
ExecStart=/opt/metad/dist/daemon/cli.js serve --config /etc/metad/config.yaml
`;
// The container's /etc is empty: the unit's User=metad (docs/operations.md: useradd), an admin in
// group metad, and a user who is not.
const SYSUSERS = `u metad - "metad" /var/lib/metad
u metadadm - "metad admin"
m metadadm metad
u metadoth - "not a metad admin"
`;
const OFF = 'guest:\n  listen: [{ host: 127.0.0.1, port: 80 }]\n  commRange: [127.0.0.0/8]\n';
const ROUTED = 'guest:\n  listen: [{ host: 169.254.169.254, port: 80 }]\n  commRange: 169.254.0.0/16\nnetwork:\n  mode: routed\n';
/** A systemd start or restart in the container may take longer than a plain process start. */
const UNIT_MS = 30_000;

interface Entry {
  msg: string;
  time: string;
  [k: string]: unknown;
}

/** The container as the tests use it: commands that must succeed, unit properties, metad's log. */
function on(c: Container) {
  const must = async (cmd: string, args: string[], user?: string): Promise<string> => {
    const r = await c.run(cmd, args, user === undefined ? {} : { user });
    assert.equal(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const show = async (prop: string): Promise<string> =>
    (await must('systemctl', ['show', '-P', prop, '--timestamp=us+utc', 'metad'])).trim();
  const log = async (): Promise<Entry[]> =>
    (await must('journalctl', ['-u', 'metad', '-o', 'cat', '--no-pager']))
      .split('\n')
      .filter((l) => l.startsWith('{"')) // metad's JSON lines, one per entry
      .map((l) => JSON.parse(l) as Entry);
  /** Wait for the `n`th (1-based) log entry with this msg. */
  const logged = (msg: string, n = 1): Promise<Entry> =>
    until(`log "${msg}" #${String(n)}`, async () => (await log()).filter((e) => e.msg === msg)[n - 1], UNIT_MS);
  const status = async (pid: string): Promise<Record<string, string>> =>
    Object.fromEntries(
      (await must('cat', [`/proc/${pid}/status`])).split('\n').map((l) => [l.split(':')[0], l.split(':').slice(1).join(':').trim()]),
    ) as Record<string, string>;
  const metadctl = (user: string, ...args: string[]) => c.run('/opt/metad/dist/cli/metadctl.js', args, { user });
  /** `kill -SIG PID` in the container, for a real PID only: `kill -SIG 0` (MainPID of a stopped
   * unit is 0) would signal the caller's whole process group. */
  const signal = async (sig: string, pid: string): Promise<void> => {
    assert.match(pid, /^[1-9][0-9]*$/, `not a process id: "${pid}"`);
    await must('kill', [`-${sig}`, pid]);
  };
  return { must, show, log, logged, status, metadctl, signal };
}

/** A guest-door request from a loopback source address inside the namespace. */
async function guestGet(hv: Ns, from: string, path = '/latest/meta-data/instance-id'): Promise<{ code: string; body: string }> {
  const r = await hv.run('curl', [
    '-s',
    '--noproxy',
    '*',
    '--max-time',
    '5',
    '--interface',
    from,
    '-w',
    '\n%{http_code}',
    `http://127.0.0.1${path}`,
  ]);
  const i = r.stdout.lastIndexOf('\n');
  return { body: r.stdout.slice(0, i), code: r.stdout.slice(i + 1) };
}

/** systemd's "Sun 2026-11-29 15:01:27.123456 UTC" in microseconds since the epoch. */
function usOf(ts: string): number {
  const m = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\.(\d{6}) UTC/.exec(ts);
  assert.ok(m, `timestamp ${ts}`);
  return Date.parse(`${m[1]!}T${m[2]!}Z`) * 1000 + Number(m[3]);
}

test('metad under the real systemd unit, in a container booted inside a test namespace', async (t) => {
  if (skipOrFail(t, commMissing() ?? containerMissing())) return;
  // Undone in reverse order, also when a step fails: container, namespaces, files.
  const undo: (() => Promise<void> | void)[] = [];
  t.after(async () => {
    for (const step of undo.reverse()) await step();
  });
  const dir = mkdtempSync(join(tmpdir(), 'metad-live-'));
  undo.push(() => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755);
  const etc = join(dir, 'etc-metad');
  mkdirSync(etc, { mode: 0o755 });
  const config = (text: string) => writeFileSync(join(etc, 'config.yaml'), text, { mode: 0o644 });
  config(OFF);
  writeFileSync(
    join(etc, 'live.yaml'),
    'name: live\nuuid: 00000000-0000-4000-8000-000000000005\ncomm: { mac: "02:00:00:00:00:05", ipv4: 127.0.0.5 }\nec2: { instanceId: i-live }\n',
  );
  writeFileSync(
    join(etc, 'alpha.yaml'),
    `name: alpha\nuuid: 00000000-0000-4000-8000-00000000000a\ncomm: { mac: "${GUEST.mac}", ipv4: ${GUEST.ipv4}, tap: ${GUEST.tap} }\nec2: { instanceId: i-alpha }\n`,
  );
  writeFileSync(join(dir, 'checkout.conf'), DROP_IN);
  writeFileSync(join(dir, 'sysusers.conf'), SYSUSERS);
  const script = writeDhcpScript(dir);
  for (const f of ['dist/daemon/cli.js', 'dist/cli/metadctl.js']) chmodSync(join(ROOT, f), 0o755);

  const topo = await createTopology([{ tap: GUEST.tap, mac: GUEST.mac }]);
  undo.push(() => topo.destroy());
  const { hv } = topo;
  const guest = topo.guests[0] as Guest;
  const booted = Date.now();
  const c = await bootContainer({
    netnsPath: `/run/netns/${hv.name}`,
    // nspawn grants CAP_NET_ADMIN only with networking of its own; the unit asks for it.
    capabilities: ['CAP_NET_ADMIN'],
    binds: [
      [ROOT, '/opt/metad'],
      [UNIT, '/etc/systemd/system/metad.service'],
      [join(dir, 'checkout.conf'), '/etc/systemd/system/metad.service.d/50-checkout.conf'],
      [etc, '/etc/metad'],
      [join(dir, 'sysusers.conf'), '/etc/sysusers.d/metad-test.conf'],
      // A checkout whose node_modules is a symlink (a git worktree sharing another's): its target too.
      ...(lstatSync(join(ROOT, 'node_modules')).isSymbolicLink()
        ? [[realpathSync(join(ROOT, 'node_modules')), realpathSync(join(ROOT, 'node_modules'))] as [string, string]]
        : []),
    ],
  });
  undo.push(() => c.destroy());
  t.diagnostic(`container booted in ${String(Date.now() - booted)} ms`);
  const { must, show, logged, status, metadctl, signal } = on(c);

  /** The guest's DHCP lease from metad's dnsmasq, then its instance-id at 169.254.169.254. */
  const leaseAndRead = async (): Promise<string> => {
    assert.equal(await dhcp(guest, script), GUEST.ipv4);
    return (await curl(guest)).body;
  };

  await t.test('Type=notify: the unit is active only after both doors listen', async () => {
    await must('systemctl', ['start', 'metad']); // returns when READY=1 has arrived
    // No retries: both doors answer the moment `systemctl start` returns.
    const health = await metadctl('metadadm', 'health');
    assert.equal(health.code, 0, health.stderr);
    assert.equal((await guestGet(hv, '127.0.0.9')).code, '404', 'unknown source, but the guest door listens');
    const started = await logged('metad started'); // logged once both doors listen, before READY=1
    const mainStart = usOf(await show('ExecMainStartTimestamp'));
    const active = usOf(await show('ActiveEnterTimestamp'));
    const startedUs = Date.parse(started.time) * 1000;
    assert.ok(mainStart < startedUs, 'the daemon logged after its start');
    assert.ok(startedUs <= active, `active (${String(active)}) before both doors listened (${String(startedUs)}): not readiness`);
    assert.equal(await show('ActiveState'), 'active');
  });

  await t.test('the process: user metad, CapEff exactly NET_BIND_SERVICE + NET_ADMIN, NoNewPrivs, seccomp, LimitCORE=0', async () => {
    const pid = await show('MainPID');
    const s = await status(pid);
    const uid = (await must('id', ['-u', 'metad'])).trim();
    assert.equal(s['Uid']?.split(/\s+/)[0], uid);
    for (const set of ['CapEff', 'CapPrm', 'CapAmb', 'CapBnd']) assert.equal(s[set], CAPS, set);
    assert.equal(s['NoNewPrivs'], '1');
    assert.equal(s['Seccomp'], '2', 'SystemCallFilter in force');
    assert.match(await must('cat', [`/proc/${pid}/limits`]), /^Max core file size\s+0\s+0\s+bytes/m);
  });

  await t.test('the admin socket is 0660 metad:metad: metadctl works for a member of group metad, not for another user', async () => {
    assert.equal((await must('stat', ['-c', '%a %U %G', '/run/metad/admin.sock'])).trim(), '660 metad metad');
    const reg = await metadctl('metadadm', 'register', '/etc/metad/live.yaml');
    assert.equal(reg.code, 0, reg.stderr);
    assert.match((await metadctl('metadadm', 'list')).stdout, /^live\s/m);
    const other = await metadctl('metadoth', 'list');
    assert.equal(other.code, 3, other.stdout);
    assert.match(other.stderr, /permission denied/);
  });

  await t.test('the guest door answers the registered instance by its source address', async () => {
    assert.deepEqual(await guestGet(hv, '127.0.0.5'), { code: '200', body: 'i-live' });
    assert.equal((await guestGet(hv, '127.0.0.9')).code, '404');
  });

  await t.test('SIGUSR1 opens no inspector', async () => {
    const pid = await show('MainPID');
    await signal('USR1', pid);
    await logged('signal ignored');
    assert.doesNotMatch((await hv.run('ss', ['-Hltn'])).stdout, /:9229\b/);
    assert.equal(await show('MainPID'), pid);
    assert.equal(await show('ActiveState'), 'active');
  });

  await t.test('systemctl reload (SIGHUP) applies a live key to the running process', async () => {
    const pid = await show('MainPID');
    for (let i = 0; i < 3; i++) assert.equal((await guestGet(hv, '127.0.0.5')).code, '200');
    config(`${OFF}  rateLimit: { ratePerSec: 0.1, burst: 1 }\n`);
    await must('systemctl', ['reload', 'metad']);
    const reloaded = await logged('configuration reloaded');
    assert.ok(JSON.stringify(reloaded['applied']).includes('rateLimit'), JSON.stringify(reloaded));
    const codes = [(await guestGet(hv, '127.0.0.5')).code, (await guestGet(hv, '127.0.0.5')).code];
    assert.deepEqual(codes, ['200', '429'], 'burst 1 at 0.1/s: the second request is over the limit');
    assert.equal(await show('MainPID'), pid, 'reload did not restart the daemon');
  });

  await t.test('kill -9: Restart=always brings it back, with its state', async () => {
    config(OFF);
    const pid = await show('MainPID');
    const restarts = Number(await show('NRestarts'));
    await signal('KILL', pid);
    await until(
      'restarted and active',
      async () => Number(await show('NRestarts')) === restarts + 1 && (await show('ActiveState')) === 'active',
      UNIT_MS,
    );
    assert.notEqual(await show('MainPID'), pid);
    assert.deepEqual(await guestGet(hv, '127.0.0.5'), { code: '200', body: 'i-live' });
  });

  await t.test('a bad config: exit 2, and RestartPreventExitStatus keeps it down', async () => {
    config('guest:\n  listen: 3\n');
    const r = await c.run('systemctl', ['restart', 'metad']);
    assert.notEqual(r.code, 0);
    // A restart being scheduled shows as activating/auto-restart; "failed" means none will come.
    assert.equal(await show('ExecMainStatus'), '2');
    assert.equal(`${await show('ActiveState')}/${await show('SubState')}`, 'failed/failed');
    assert.equal(await show('Result'), 'exit-code');
    assert.equal(await show('NRestarts'), '0', 'a manual restart resets the count; an automatic one would add to it');
    config(OFF);
    await must('systemctl', ['reset-failed', 'metad']);
    await must('systemctl', ['start', 'metad']);
    assert.equal(await show('ActiveState'), 'active');
  });

  await t.test('network.mode routed under the unit: anchor, nftables, dnsmasq; a guest gets its lease and its metadata', async () => {
    assert.equal((await metadctl('metadadm', 'rm', 'live')).code, 0);
    config(ROUTED);
    await must('systemctl', ['restart', 'metad']);
    assert.match(await hv.ip('-4', 'addr', 'show', 'dev', 'metad0'), /inet 169\.254\.169\.254\/32/);
    assert.match((await hv.run('nft', ['list', 'tables'])).stdout, /^table inet metad$/m);
    const reg = await metadctl('metadadm', 'register', '/etc/metad/alpha.yaml');
    assert.equal(reg.code, 0, reg.stderr);
    assert.equal(await leaseAndRead(), 'i-alpha');
    // dnsmasq: metad's child in the unit's cgroup, as user metad, with the same two capabilities.
    const dnsmasq = (await must('pgrep', ['-u', 'metad', '-x', 'dnsmasq'])).trim();
    assert.match(await must('cat', [`/proc/${dnsmasq}/cgroup`]), /\/system\.slice\/metad\.service$/m);
    assert.equal((await status(dnsmasq))['CapEff'], CAPS);
    await signal('KILL', dnsmasq);
    const again = await until(
      'dnsmasq restarted',
      async () => {
        const r = await c.run('pgrep', ['-u', 'metad', '-x', 'dnsmasq']);
        return r.code === 0 && r.stdout.trim() !== dnsmasq && r.stdout.trim();
      },
      UNIT_MS,
    );
    assert.notEqual(again, dnsmasq);
    assert.equal(await show('ActiveState'), 'active');
  });

  await t.test('network.mode bridged under the unit: the bridge, both tables, the tap as a port; lease and read again', async () => {
    config(ROUTED.replace('mode: routed', 'mode: bridged'));
    await must('systemctl', ['restart', 'metad']);
    assert.match(await hv.ip('-4', 'addr', 'show', 'dev', 'metadbr0'), /inet 169\.254\.169\.254\//);
    assert.match((await hv.run('nft', ['list', 'tables'])).stdout, /^table bridge metad$/m);
    assert.match(await hv.ip('-o', 'link', 'show', 'dev', GUEST.tap), /master metadbr0/);
    await guest.ip('-4', 'addr', 'flush', 'dev', 'eth0');
    assert.equal(await leaseAndRead(), 'i-alpha');
  });

  await t.test('afterwards nothing is left: container, cgroups, nspawn dirs, namespaces', async () => {
    await must('systemctl', ['stop', 'metad']);
    assert.equal(await show('ExecMainStatus'), '0', 'SIGTERM: clean exit');
    await c.destroy();
    assert.deepEqual(c.leftovers(), []);
    await topo.destroy();
    assert.deepEqual(
      listNetns().filter((n) => n === hv.name || n === guest.name),
      [],
    );
  });
});
