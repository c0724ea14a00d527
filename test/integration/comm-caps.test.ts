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
import { chownSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { childPids } from '../support/comm-topology.js';
import { commBed, curl, dhcp } from '../support/comm-harness.js';
import { CLI, writeConfig } from '../support/process.js';
import { until } from '../support/wait.js';

const UNIT = fileURLToPath(new URL('../../../systemd/metad.service', import.meta.url));
const NOBODY = 65534;
const GUEST = { tap: 'ctap1', mac: '02:00:00:00:0c:01', ipv4: '169.254.3.10' };

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
  const bed = await commBed(t, { guests: [{ tap: GUEST.tap, mac: GUEST.mac }], also: [['setpriv', 'util-linux']] });
  if (!bed) return;
  const { hv, dir } = bed;
  const bounding = unitCaps('CapabilityBoundingSet');
  const ambient = unitCaps('AmbientCapabilities');
  for (const d of ['state', 'run']) mkdirSync(join(dir, d));
  for (const d of ['', 'state', 'run']) chownSync(join(dir, d), NOBODY, NOBODY);
  const network = { mode: 'routed' };
  const config = writeConfig(dir, { network: { ...network, runDir: join(dir, 'run') } });
  const list = (caps: string[]) => `-all,${caps.map((c) => `+${c}`).join(',')}`;
  const asUnit = [
    `--reuid=${NOBODY}`,
    `--regid=${NOBODY}`,
    '--clear-groups',
    `--bounding-set=${list(bounding)}`,
    `--inh-caps=${list(ambient)}`,
    `--ambient-caps=${list(ambient)}`,
    '--no-new-privs',
  ];

  const check = await hv.run('setpriv', [...asUnit, process.execPath, CLI, 'check-config', config]);
  assert.equal(check.code, 0, `check-config (the unit's ExecStartPre) refused: ${check.stderr}`);

  // The same config file, and metad started as the unit starts it.
  const metad = await bed.startMetad(network, (cmd, args, o) => hv.spawn('setpriv', [...asUnit, cmd, ...args], o));
  const { child } = metad;
  // setpriv execs: the pid is the daemon's. Its capabilities are exactly the unit's.
  const status = readFileSync(`/proc/${String(child.pid)}/status`, 'utf8');
  assert.match(status, new RegExp(`^Uid:\\s+${String(NOBODY)}\\s`, 'm'));
  assert.equal(
    BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]!}`),
    (1n << 10n) | (1n << 12n),
    'CAP_NET_BIND_SERVICE + CAP_NET_ADMIN',
  );

  const reg = await metad.admin('PUT', '/v1/instances/capped', {
    name: 'capped',
    uuid: '00000000-0000-4000-8000-0000000000c1',
    comm: { mac: GUEST.mac, ipv4: GUEST.ipv4, tap: GUEST.tap },
    ec2: { instanceId: 'i-capped' },
  });
  assert.equal(reg.status, 201, reg.text);
  await until('route to the guest', async () => (await hv.ip('-4', 'route', 'show', 'proto', '171')).includes(GUEST.ipv4), {
    detail: () => metad.out(),
  });

  const g = bed.guests[0]!;
  assert.equal(await dhcp(g, bed.script), GUEST.ipv4, metad.out());
  assert.equal((await curl(g)).body, 'i-capped');
  assert.equal(childPids(child.pid!, 'dnsmasq').length, 1, 'dnsmasq runs (once)');
  assert.doesNotMatch(metad.out(), /dnsmasq exited/, 'dnsmasq never died for lack of a capability');
});
