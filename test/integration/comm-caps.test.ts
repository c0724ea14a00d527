/**
 * The systemd unit's capability set, live (these machines have no systemd as PID 1, so no
 * `systemd-run`): the real `metad check-config` and `metad serve` in routed mode run inside a
 * network namespace as an unprivileged user with exactly the unit's CapabilityBoundingSet and
 * AmbientCapabilities (setpriv, no-new-privs), and a guest gets its lease from the dnsmasq child
 * and reads its metadata. Not emulated: the unit's seccomp filter, ProtectSystem and the other
 * sandboxing (docs/deployment.md, "systemd").
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns } from '../support/netns.js';
import { hasCommand, skipOrFail } from '../support/env.js';
import { request } from '../support/daemon.js';
import { childPids, createTopology } from '../support/comm-topology.js';

const UNIT = fileURLToPath(new URL('../../../systemd/metad.service', import.meta.url));
const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const NOBODY = 65534;
const GUEST = { tap: 'ctap1', mac: '02:00:00:00:0c:01', ipv4: '169.254.3.10' };

function missing(): string | undefined {
  const can = canUseNetns();
  if (!can.ok) return can.why;
  for (const cmd of ['setpriv', 'dnsmasq', 'busybox', 'curl']) {
    if (!hasCommand(cmd) && !hasCommand(`/usr/sbin/${cmd}`)) return `${cmd} not installed (.ci/install-deps.sh)`;
  }
  return undefined;
}

/** `CAP_NET_BIND_SERVICE CAP_NET_ADMIN` from a unit line -> `net_bind_service,net_admin`. */
function unitCaps(key: string): string[] {
  const line = readFileSync(UNIT, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${key}=`));
  assert.ok(line, `the unit has ${key}=`);
  return line
    .slice(key.length + 1)
    .trim()
    .split(/\s+/)
    .map((c) => c.replace(/^CAP_/, '').toLowerCase());
}

test("routed mode runs with exactly the systemd unit's capabilities, as an unprivileged user", async (t) => {
  if (skipOrFail(t, missing())) return;
  const bounding = unitCaps('CapabilityBoundingSet');
  const ambient = unitCaps('AmbientCapabilities');
  const topo = await createTopology([{ tap: GUEST.tap, mac: GUEST.mac }]);
  const dir = mkdtempSync(join(tmpdir(), 'metad-caps-'));
  t.after(async () => {
    await topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  chmodSync(dir, 0o755);
  for (const d of ['state', 'run']) mkdirSync(join(dir, d));
  for (const d of ['', 'state', 'run']) chownSync(join(dir, d), NOBODY, NOBODY);
  const socket = join(dir, 'admin.sock');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      stateDir: join(dir, 'state'),
      admin: { socket },
      log: { level: 'info' },
      network: { mode: 'routed', runDir: join(dir, 'run') },
    }),
  );
  const list = (caps: string[]) => `-all,${caps.map((c) => `+${c}`).join(',')}`;
  const asUnit = [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    `--bounding-set=${list(bounding)}`,
    `--inh-caps=${list(ambient)}`,
    `--ambient-caps=${list(ambient)}`,
    '--no-new-privs',
    process.execPath,
    CLI,
  ];

  const check = await topo.hv.run('setpriv', [...asUnit, 'check-config', config]);
  assert.equal(check.code, 0, `check-config (the unit's ExecStartPre) refused: ${check.stderr}`);

  const child = topo.hv.spawn('setpriv', [...asUnit, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  t.after(() => {
    child.kill('SIGKILL');
  });
  const until = async (what: string, ok: () => boolean | Promise<boolean>): Promise<void> => {
    for (let i = 0; i < 150; i++) {
      if (child.exitCode !== null) throw new Error(`metad exited: ${out}`);
      if (await ok()) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}: ${out}`);
  };
  await until('metad started', () => out.includes('"metad started"'));
  // setpriv execs: the pid is the daemon's. Its capabilities are exactly the unit's.
  const status = readFileSync(`/proc/${String(child.pid)}/status`, 'utf8');
  assert.match(status, new RegExp(`^Uid:\\s+${String(NOBODY)}\\s`, 'm'));
  assert.equal(
    BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]!}`),
    (1n << 10n) | (1n << 12n),
    'CAP_NET_BIND_SERVICE + CAP_NET_ADMIN',
  );

  const body = JSON.stringify({
    name: 'capped',
    uuid: '00000000-0000-4000-8000-0000000000c1',
    comm: { mac: GUEST.mac, ipv4: GUEST.ipv4, tap: GUEST.tap },
    ec2: { instanceId: 'i-capped' },
  });
  const reg = await request(
    { socketPath: socket, method: 'PUT', path: '/v1/instances/capped', headers: { 'content-type': 'application/json' } },
    body,
  );
  assert.equal(reg.status, 201, reg.text);
  await until('route to the guest', async () => (await topo.hv.ip('-4', 'route', 'show', 'proto', '171')).includes(GUEST.ipv4));

  const g = topo.guests[0]!;
  const script = join(dir, 'udhcpc.sh');
  writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] || exit 0\n/usr/sbin/ip addr add "$ip/${mask:-16}" dev "$interface"\n', {
    mode: 0o755,
  });
  const lease = await g.run('busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '4', '-T', '1', '-A', '1', '-s', script], {
    timeoutMs: 20_000,
  });
  assert.match(lease.stdout + lease.stderr, new RegExp(`lease of ${GUEST.ipv4.replaceAll('.', '\\.')} obtained`), out);
  const read = await g.run('curl', ['-s', '--noproxy', '*', '--max-time', '3', 'http://169.254.169.254/latest/meta-data/instance-id']);
  assert.equal(read.stdout, 'i-capped');
  assert.equal(childPids(child.pid!, 'dnsmasq').length, 1, 'dnsmasq runs (once)');
  assert.doesNotMatch(out, /dnsmasq exited/, 'dnsmasq never died for lack of a capability');
});
