/**
 * The comm NIC hook (ganeti/kvm-ifup-os) under Ganeti 3.0's real kvm-ifup, in namespaces this
 * test creates: a "hypervisor" network namespace (test/support/comm-harness.ts) runs metad in
 * routed mode with the Ganeti feed on, and Ganeti's own code (test/support/ganeti_ifup.py, Debian's
 * python3 and ganeti-3.0) names the comm taps (hv_base.GenerateTapName) and runs kvm-ifup with
 * hv_base.ConfigureNIC's environment, in a mount namespace where /usr/lib/ganeti holds Debian's
 * scripts and /etc is an overlay whose writes land in the test's temp dir (the machine's
 * /etc/ganeti is never written). The hook is installed by docs/ganeti.md's step as printed.
 * Proves: the guest behind gnt.com.0 gets its address by DHCP and reads its own metadata; sourcing
 * the hook leaves kvm-ifup's shell as it was; metad down, an unknown instance and an IP that
 * metad does not hold fail the NIC (and so Ganeti's instance start) with the reason; when the VM
 * stops, its tap stops serving it without any call; Ganeti names the next instance's tap
 * gnt.com.0 again, and through it only the second instance is served, never the first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commBed, curl, dhcp, handshake } from '../support/comm-harness.js';
import { isRoot, missingCommand, skipOrFail } from '../support/env.js';
import { GANETI_SCRIPTS, ganetiFeed, ganetiMissing, nodeRoot } from '../support/ganeti.js';
import { ganetiNode } from '../support/ganeti-node.js';
import { hostExample } from '../support/doc-examples.js';
import { startNsMetad } from '../support/ns-metad.js';
import type { Guest } from '../support/comm-topology.js';
import { until } from '../support/wait.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const HOOK = join(ROOT, 'ganeti', 'kvm-ifup-os');

/** The comm network as `gnt-cluster modify --instance-communication-network ganeti-comm` creates it. */
const COMM_NETWORK = {
  name: 'ganeti-comm',
  uuid: '0c0a7e5e-1b2c-4d3e-8f40-5a6b7c8d9e00',
  network: '169.254.0.0/16',
  network6: 'fe80::/10',
  mac_prefix: '52:54:00',
};

/** An objects.Instance as `gnt-instance add --communication` makes it: a bridged NIC, then the comm NIC. */
function instance(name: string, host: number, uuid: string): Record<string, unknown> {
  return {
    name,
    uuid,
    os: 'noop',
    hypervisor: 'kvm',
    beparams: { maxmem: 512, vcpus: 1 },
    osparams: { role: name.split('.')[0] },
    tags: ['web'],
    nics: [
      {
        name: 'eth0',
        mac: `52:54:00:0b:00:0${String(host)}`,
        ip: null,
        nicparams: { mode: 'bridged', link: 'br0' },
        uuid: `${uuid.slice(0, -2)}a1`,
      },
      {
        name: `ganeti:communication:${name}`,
        mac: `52:54:00:0a:00:0${String(host)}`,
        ip: `169.254.10.${String(host)}`,
        nicparams: { mode: 'routed', link: 'communication_rt' },
        network: COMM_NETWORK.uuid,
        uuid: `${uuid.slice(0, -2)}a2`,
      },
    ],
  };
}
const WEB1 = instance('web1.example.com', 5, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e01');
const WEB2 = instance('web2.example.com', 6, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e02');
const WEB3 = instance('web3.example.com', 7, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e03'); // never fed
const commNic = (i: Record<string, unknown>): { mac: string; ip: string } => (i['nics'] as { mac: string; ip: string }[])[1]!;

/**
 * What kvm-ifup does before and around sourcing the hook, with snapshots of the shell's state
 * (variables but bash's own dynamic ones, functions, options, traps, umask, directory) before
 * and after: prints "same" or the difference, then "status N" of the source.
 */
const PROBE_SH = `source /usr/lib/ganeti/net-common
check
is_instance_communication_tap # sets COMMUNICATION, as kvm-ifup's test does before it sources the hook
snapshot() {
  local v
  for v in $(compgen -v); do
    case $v in BASH*|_|PIPESTATUS|RANDOM|SRANDOM|SECONDS|LINENO|EPOCHREALTIME|EPOCHSECONDS|FUNCNAME|COLUMNS|LINES|v|before|after|status) continue ;; esac
    declare -p "$v" 2>/dev/null
  done
  declare -F
  echo "flags $-"
  shopt -p
  set +o
  trap -p
  umask
  pwd
}
before=$(snapshot)
if is_instance_communication_tap && [ -x "$CONF_DIR/kvm-ifup-os" ]; then
  . $CONF_DIR/kvm-ifup-os
  status=$?
fi
after=$(snapshot)
if [ "$before" = "$after" ]; then echo same; else diff <(echo "$before") <(echo "$after"); fi
echo "status $status"
`;

test("Ganeti's kvm-ifup with metad's kvm-ifup-os: DHCP and metadata behind gnt.com.0, a reused tap name serves only its new instance", async (t) => {
  const why = !isRoot()
    ? 'needs root (network and mount namespaces)'
    : (ganetiMissing() ??
      (existsSync(join(GANETI_SCRIPTS, 'kvm-ifup')) ? undefined : `Ganeti's kvm-ifup is not unpacked in ${GANETI_SCRIPTS}`) ??
      missingCommand([
        ['unshare', 'util-linux'],
        ['sudo', 'sudo'],
      ]));
  if (skipOrFail(t, why)) return;
  const bed = await commBed(t, { guests: [] });
  if (!bed) return;
  const { hv, topo, dir, script } = bed;

  const feed = nodeRoot(join(dir, 'ganeti'));
  const metad = await startNsMetad((c, a, o) => hv.spawn(c, a, o), dir, {
    network: { mode: 'routed', runDir: join(dir, 'run') },
    ganeti: { socket: feed.metadSocket, pidFile: feed.metadPidFile },
  });
  t.after(() => metad.stop());

  // The node (test/support/ganeti-node.ts): Ganeti's scripts, its /etc overlay with Ganeti's own
  // kvm-ifup-os installed (as on a node that ran it), metadctl on the node daemon's PATH.
  const gn = ganetiNode(hv, dir, metad.socket, 'ganeti');
  const probe = join(gn.dir, 'probe.sh');
  writeFileSync(probe, PROBE_SH);
  const ifup = (inst: Record<string, unknown>, tap: string, adminSocket?: string) =>
    gn.ganeti({ op: 'ifup', instance: inst, seq: 1, tap, network: COMM_NETWORK }, adminSocket);
  const nicsOn = async (tap: string): Promise<unknown[]> =>
    ((await metad.admin('GET', '/v1/nics')).json as { nics: { tap: string }[] }).nics.filter((n) => n.tap === tap);
  const logged = (msg: string): Record<string, unknown>[] =>
    metad
      .out()
      .split('\n')
      .filter((l) => l.startsWith('{') && l.includes(`"msg":${JSON.stringify(msg)}`))
      .map((l) => JSON.parse(l) as Record<string, unknown>);

  await t.test("docs/ganeti.md's step installs the hook in /etc/ganeti, keeping Ganeti's own beside it", async () => {
    const r = await gn.run(['bash', '-c', `set -eo pipefail\ncd '${ROOT}'\n${docStep('ganeti-ifup')}`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(join(gn.dir, 'etc-up', 'ganeti', 'kvm-ifup-os'), 'utf8'), readFileSync(HOOK, 'utf8'));
    assert.equal(
      readFileSync(join(gn.dir, 'etc-up', 'ganeti', 'kvm-ifup-os~'), 'utf8'),
      readFileSync(join(GANETI_SCRIPTS, 'kvm-ifup-os'), 'utf8'),
      "Ganeti's own hook is kept as kvm-ifup-os~",
    );
    assert.ok(!existsSync('/etc/ganeti/kvm-ifup-os'), "the machine's /etc/ganeti was written");
  });

  await t.test('Ganeti feeds web1 and web2 to metad (the master after gnt-instance add)', async () => {
    const answers = await ganetiFeed(feed, [
      { op: 'update', instance: WEB1 },
      { op: 'update', instance: WEB2 },
    ]);
    assert.deepEqual(answers, [{ warnings: [] }, { warnings: [] }]);
  });

  let a: Guest | undefined;
  await t.test('web1 starts: Ganeti names its tap gnt.com.0, kvm-ifup sources the hook, metad serves it', async () => {
    const named = await gn.ganeti({ op: 'tapname' });
    assert.equal(named.tap, 'gnt.com.0');
    a = await topo.addGuest('gnt.com.0', commNic(WEB1).mac);
    const r = await ifup(WEB1, 'gnt.com.0');
    assert.deepEqual(r, { ok: true });
    assert.ok(
      logged('nic up').some((l) => l['instance'] === 'web1.example.com' && l['tap'] === 'gnt.com.0'),
      'metad logged no nic up',
    );
    assert.equal(await dhcp(a, script), commNic(WEB1).ip, 'web1 got its address by DHCP');
    assert.equal((await curl(a, '/latest/meta-data/hostname')).body, 'web1.example.com');
    assert.equal((await curl(a, '/ganeti/latest/os/parameters.json')).body, '{"role":["web1","public"]}');
  });

  await t.test("sourcing the hook leaves kvm-ifup's shell as it was (variables, functions, options, traps)", async () => {
    const r = await gn.ganeti({ op: 'run', cmd: ['/bin/bash', probe], instance: WEB1, seq: 1, tap: 'gnt.com.0', network: COMM_NETWORK });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.output, 'same\nstatus 0\n');
  });

  await t.test('metad down, an instance metad does not know, an IP metad does not hold: the NIC fails, with the reason', async () => {
    await hv.ip('tuntap', 'add', 'dev', 'gnt.com.1', 'mode', 'tap');
    const down = await ifup(WEB3, 'gnt.com.1', join(dir, 'nobody.sock'));
    assert.equal(down.ok, false);
    assert.match(down.error ?? '', /Failed to configure interface gnt\.com\.1/);
    assert.match(
      down.error ?? '',
      /metad kvm-ifup-os: web3\.example\.com: metad did not set up gnt\.com\.1 \(metadctl exit \d+\): .*nobody\.sock/,
    );
    const unknown = await ifup(WEB3, 'gnt.com.1');
    assert.equal(unknown.ok, false);
    assert.match(unknown.error ?? '', /metad did not set up gnt\.com\.1 .*no such instance/);
    const moved = structuredClone(WEB2);
    commNic(moved).ip = '169.254.10.99'; // Ganeti changed it; its push never reached metad
    const stale = await ifup(moved, 'gnt.com.1');
    assert.equal(stale.ok, false);
    assert.match(
      stale.error ?? '',
      /metad holds IP 169\.254\.10\.6 and MAC 52:54:00:0a:00:06 for it, Ganeti gives gnt\.com\.1 IP 169\.254\.10\.99/,
    );
    assert.deepEqual(await nicsOn('gnt.com.1'), [], 'a refused NIC was left set up');
  });

  await t.test(
    "docs/ganeti.md's steps turn the hook off (instances start with metad down, their comm NIC unserved) and on again",
    async () => {
      assert.equal((await gn.run(['bash', '-c', `set -eo pipefail\n${docStep('ganeti-ifup-off')}`])).code, 0);
      assert.deepEqual(await ifup(WEB3, 'gnt.com.1', join(dir, 'nobody.sock')), { ok: true });
      assert.deepEqual(await nicsOn('gnt.com.1'), []);
      assert.equal((await gn.run(['bash', '-c', `set -eo pipefail\n${docStep('ganeti-ifup-on')}`])).code, 0);
      assert.equal((await ifup(WEB3, 'gnt.com.1', join(dir, 'nobody.sock'))).ok, false, 'the hook is not on again');
      await hv.ip('link', 'del', 'gnt.com.1');
    },
  );

  let b: Guest | undefined;
  await t.test('web1 stops: its tap goes, and metad stops serving web1 there without any call', async () => {
    await hv.ip('link', 'del', 'gnt.com.0');
    await until('the tap gone in the log', () =>
      logged('comm network: the device of a recorded tap went; its instance is not served through that tap until nic up').some(
        (l) => l['instance'] === 'web1.example.com' && l['tap'] === 'gnt.com.0',
      ),
    );
    await until(
      'no rules for gnt.com.0',
      async () => !(await hv.run('nft', ['list', 'set', 'inet', 'metad', 'taps'])).stdout.includes('gnt.com.0'),
    );
    // web2 starts: Ganeti names its tap gnt.com.0 again (one past the highest in use: none).
    const named = await gn.ganeti({ op: 'tapname' });
    assert.equal(named.tap, 'gnt.com.0');
    b = await topo.addGuest('gnt.com.0', commNic(WEB2).mac);
    // Before kvm-ifup: the new device under web1's old name is nobody's.
    await setIdentity(b, commNic(WEB1).mac, commNic(WEB1).ip);
    assert.equal(await handshake(b), false, "the new device under web1's tap name reached the door as web1");
    await setIdentity(b, commNic(WEB2).mac, undefined);
  });

  await t.test('web2 on the reused gnt.com.0: the tap moves to web2; web2 is served, web1 never is through it', async () => {
    assert.ok(b);
    const r = await ifup(WEB2, 'gnt.com.0');
    assert.deepEqual(r, { ok: true });
    const [moved] = logged('comm network: tap moved to another instance');
    assert.deepEqual([moved?.['tap'], moved?.['from'], moved?.['to']], ['gnt.com.0', 'web1.example.com', 'web2.example.com']);
    assert.equal(await dhcp(b, script), commNic(WEB2).ip, 'web2 got its address by DHCP');
    assert.equal((await curl(b, '/latest/meta-data/hostname')).body, 'web2.example.com');
    assert.equal((await curl(b, '/ganeti/latest/os/parameters.json')).body, '{"role":["web2","public"]}');
    // web2's VM taking web1's identity gets nothing of web1's.
    await setIdentity(b, commNic(WEB1).mac, commNic(WEB1).ip);
    assert.equal(await handshake(b), false, "web1's identity completed a handshake through web2's tap");
    const r1 = await curl(b, '/latest/meta-data/hostname');
    assert.notEqual(r1.body, 'web1.example.com');
    await setIdentity(b, commNic(WEB2).mac, commNic(WEB2).ip);
    assert.equal(await until('web2 back', async () => (await curl(b!, '/latest/meta-data/hostname')).body === 'web2.example.com'), true);
    const list = (await metad.admin('GET', '/v1/instances')).json as { instances: { name: string; tap: string | null }[] };
    assert.deepEqual(Object.fromEntries(list.instances.map((i) => [i.name, i.tap])), {
      'web1.example.com': null,
      'web2.example.com': 'gnt.com.0',
    });
  });

  await t.test("docs/ganeti.md's step for switching back puts Ganeti's own hook back", async () => {
    assert.equal((await gn.run(['bash', '-c', `set -eo pipefail\n${docStep('ganeti-ifup-back')}`])).code, 0);
    const etc = join(gn.dir, 'etc-up', 'ganeti');
    assert.equal(readFileSync(join(etc, 'kvm-ifup-os'), 'utf8'), readFileSync(join(GANETI_SCRIPTS, 'kvm-ifup-os'), 'utf8'));
    assert.ok(!existsSync(join(etc, 'kvm-ifup-os~')));
  });
  assert.ok(a, 'web1 never started');
});

/** A host=ID step of docs/ganeti.md, as printed. */
function docStep(id: 'ganeti-ifup' | 'ganeti-ifup-off' | 'ganeti-ifup-on' | 'ganeti-ifup-back'): string {
  return hostExample(readFileSync(join(ROOT, 'docs/ganeti.md'), 'utf8'), id).body;
}

/** The guest's eth0 takes this MAC and (when given) IPv4. */
async function setIdentity(g: Guest, mac: string, ipv4: string | undefined): Promise<void> {
  await g.ip('link', 'set', 'eth0', 'down');
  await g.ip('link', 'set', 'eth0', 'address', mac);
  await g.ip('-4', 'addr', 'flush', 'dev', 'eth0');
  if (ipv4 !== undefined) await g.ip('addr', 'add', `${ipv4}/16`, 'dev', 'eth0');
  await g.ip('link', 'set', 'eth0', 'up');
}
