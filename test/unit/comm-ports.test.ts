/**
 * Taps and ports metad does not (or no longer) own, without a kernel (issue 13 items 5-8, issue 12
 * items 7-9): which devices can be a guest's tap (daemon/comm/guest-device.ts, from `ip -d -j`
 * facts), the link monitor's line parser, and the controller's refusals with a FakeCommNetwork:
 * host devices, appliance taps, `mdi…` names (nic up and PUT/PATCH), the instance's own tap while
 * its install job runs (held closed meanwhile), and device changes reaching a reconcile.
 * The packet-level proofs are test/integration/comm-ports.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guestDeviceProblem, type LinkFacts } from '../../daemon/comm/guest-device.js';
import { parseMonitorLine } from '../../daemon/comm/link-watch.js';
import { createDaemon } from '../../daemon/daemon.js';
import { buildConfig } from '../../daemon/config/config.js';
import { DaemonError } from '../../daemon/errors.js';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { sinkLogger } from '../support/sink.js';
import { sampleInstance, startTestDaemon } from '../support/daemon.js';
import { BRIDGED_SETTINGS, ROUTED_SETTINGS } from '../support/comm-settings.js';
import { LinuxCommNetwork } from '../../daemon/comm/linux.js';
import type { Exec } from '../../daemon/comm/exec.js';

const TAP: LinkFacts = {
  ifname: 'mtap1',
  flags: ['BROADCAST', 'MULTICAST', 'UP'],
  link_type: 'ether',
  linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } },
  addr_info: [{ family: 'inet6', local: 'fe80::1c2f:aff:fe01:203', prefixlen: 64 }],
};

test('guest devices: a tun tap or a veth end, alone or a port of metad own bridge, with only metad addresses and link-local IPv6', () => {
  assert.equal(guestDeviceProblem(TAP, ROUTED_SETTINGS), undefined);
  assert.equal(guestDeviceProblem({ ...TAP, linkinfo: { info_kind: 'veth' } }, ROUTED_SETTINGS), undefined);
  const addressed: LinkFacts = {
    ...TAP,
    addr_info: [
      { family: 'inet', local: '169.254.169.254', prefixlen: 16 },
      { family: 'inet6', local: 'fe80::a9fe:a9fe', prefixlen: 64 },
      { family: 'inet6', local: 'fd00:ec2::254', prefixlen: 128 },
    ],
  };
  assert.equal(guestDeviceProblem(addressed, ROUTED_SETTINGS), undefined, "metad's own addresses on a live tap");
  assert.equal(guestDeviceProblem({ ...TAP, master: 'metadbr0' }, BRIDGED_SETTINGS), undefined, 'a port of metad bridge');
});

test('host devices are refused, each with its reason and never its name', () => {
  const cases: [string, LinkFacts, RegExp, typeof ROUTED_SETTINGS?][] = [
    ['loopback', { ifname: 'lo', flags: ['LOOPBACK', 'UP'], link_type: 'loopback' }, /loopback/],
    ['the anchor', { ...TAP, ifname: 'metad0', linkinfo: { info_kind: 'dummy' } }, /anchor/],
    ['the veth anchor peer', { ...TAP, ifname: 'metad0p', linkinfo: { info_kind: 'veth' } }, /anchor/],
    ["metad's bridge", { ...TAP, ifname: 'metadbr0', linkinfo: { info_kind: 'bridge' } }, /metad's bridge/, BRIDGED_SETTINGS],
    ['a bridge', { ...TAP, ifname: 'br-public', linkinfo: { info_kind: 'bridge' } }, /is a bridge/],
    ['a bond', { ...TAP, ifname: 'bond0', linkinfo: { info_kind: 'bond' } }, /is a bond/],
    ['a VLAN', { ...TAP, ifname: 'eno1.100', linkinfo: { info_kind: 'vlan' } }, /VLAN/],
    ['a physical NIC', { ifname: 'eno1', flags: ['UP'], link_type: 'ether' }, /physical NIC/],
    ['a tun (layer 3)', { ...TAP, linkinfo: { info_kind: 'tun', info_data: { type: 'tun' } } }, /layer 3/],
    ['a macvtap', { ...TAP, linkinfo: { info_kind: 'macvtap' } }, /macvtap/],
    ['a port of another bridge', { ...TAP, master: 'br-public' }, /enslaved to another device/],
    ['a port of a bridge in routed mode', { ...TAP, master: 'metadbr0' }, /enslaved to another device/],
    ['a host IPv4 address', { ...TAP, addr_info: [{ family: 'inet', local: '10.0.0.1', prefixlen: 24 }] }, /host address/],
    ['a global IPv6 address', { ...TAP, addr_info: [{ family: 'inet6', local: '2001:db8::1', prefixlen: 64 }] }, /host address/],
    ['metad address with another prefix', { ...TAP, addr_info: [{ local: '169.254.169.254', prefixlen: 24 }] }, /host address/],
  ];
  for (const [what, facts, reason, s] of cases) {
    const p = guestDeviceProblem(facts, s ?? ROUTED_SETTINGS);
    assert.ok(p, what);
    assert.match(p, reason, what);
    const name = new RegExp(`(^|\\s)${facts.ifname.replaceAll('.', '\\.')}(\\s|$)`);
    assert.doesNotMatch(p, name, `${what}: the reason does not echo the name`);
  }
});

test('ip -o monitor link lines: new, deleted, enslaved, veth peers', () => {
  assert.deepEqual(
    parseMonitorLine(
      '7: mtap1@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master metadbr0 state UP mode DEFAULT group default \\    link/ether 02:00:00:00:01:0a brd ff:ff:ff:ff:ff:ff link-netns g1',
    ),
    { deleted: false, ifindex: 7, ifname: 'mtap1', master: 'metadbr0' },
  );
  assert.deepEqual(parseMonitorLine('Deleted 9: gnt.com.7: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default'), {
    deleted: true,
    ifindex: 9,
    ifname: 'gnt.com.7',
  });
  assert.equal(parseMonitorLine('    link/ether 02:00:00:00:01:0a'), undefined);
});

async function withDaemon(fn: (d: Awaited<ReturnType<typeof createDaemon>>, net: FakeCommNetwork) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-ports-unit-'));
  const net = new FakeCommNetwork();
  const config = buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'a.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  });
  const d = await createDaemon(config, { log: sinkLogger().log, commNetwork: net });
  try {
    await fn(d, net);
  } finally {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function refused(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof DaemonError && e.code === code && message.test(e.message));
}

test('nic up refuses a device that is no guest tap (409 naming why) and records nothing', async () => {
  await withDaemon(async (d, net) => {
    const comm = d.services.comm!;
    await d.services.store.put(sampleInstance(1) as never, true);
    net.links.add('lo');
    net.hostDevices.set('lo', 'is the loopback device');
    const before = net.reconciles;
    await refused(comm.attach('vm1', 'lo'), 'Conflict', /cannot be a guest's tap: it is the loopback device/);
    assert.equal(d.services.store.mustGet('vm1').doc.comm.tap, undefined);
    assert.equal(net.reconciles, before, 'no reconcile for a refused device');
  });
});

test("an appliance's tap belongs to its job: nic up of it is 409; mdi… names are 400 at nic up and PUT/PATCH", async () => {
  await withDaemon(async (d, net) => {
    const comm = d.services.comm!;
    const { store } = d.services;
    await store.put(sampleInstance(1) as never, true);
    await store.put(sampleInstance(2) as never, true);
    net.links.add('mdi0123456789ab');
    await comm.useJobTap('vm1', 'mdi0123456789ab');
    await refused(comm.attach('vm2', 'mdi0123456789ab'), 'Conflict', /install appliance's: it belongs to its job only/);
    net.links.add('mdiguest');
    await refused(comm.attach('vm2', 'mdiguest'), 'InvalidInput', /invalid tap name/);
    assert.equal(store.mustGet('vm2').doc.comm.tap, undefined);
    assert.deepEqual(
      net.nics.map((n) => [n.instance, n.tap]),
      [['vm1', 'mdi0123456789ab']],
      'the appliance tap carries one identity',
    );
  });
  const t = await startTestDaemon();
  try {
    const put = await t.admin(
      'PUT',
      '/v1/instances/vm3',
      sampleInstance(3, { comm: { mac: '52:54:00:00:00:03', ipv4: '127.0.0.4', tap: 'mdiX' } }),
    );
    assert.equal(put.status, 400, put.text);
    assert.match(put.text, /\/comm\/tap/);
    assert.match(put.text, /reserved for install appliances' taps/);
    assert.equal((await t.admin('PUT', '/v1/instances/vm3', sampleInstance(3))).status, 201);
    const patch = await t.admin('PATCH', '/v1/instances/vm3', { comm: { tap: 'mdi1' } });
    assert.equal(patch.status, 400, patch.text);
    assert.match(patch.text, /reserved for install appliances' taps/);
  } finally {
    await t.close();
  }
});

test("while an install job runs: the instance's own tap is held closed and nic up of it is 409; afterwards it is the instance's again", async () => {
  await withDaemon(async (d, net) => {
    const comm = d.services.comm!;
    const { store } = d.services;
    await store.put(sampleInstance(1, { comm: { mac: '52:54:00:00:00:01', ipv4: '127.0.0.2', tap: 'vmtap1' } }) as never, true);
    net.links.add('vmtap1');
    net.links.add('mdiaaaaaaaaaaaa');
    await comm.useJobTap('vm1', 'mdiaaaaaaaaaaaa');
    assert.deepEqual(net.held, ['vmtap1'], 'the registered tap is held closed while the job runs');
    assert.deepEqual(
      net.nics.map((n) => n.tap),
      ['mdiaaaaaaaaaaaa'],
    );
    await refused(comm.attach('vm1', 'vmtap1'), 'Conflict', /install job runs/);
    await comm.releaseJobTap('vm1', 'mdiaaaaaaaaaaaa');
    assert.deepEqual(net.held, []);
    assert.deepEqual(
      net.nics.map((n) => n.tap),
      ['vmtap1'],
    );
    assert.equal((await comm.attach('vm1', 'vmtap1')).tap, 'vmtap1');
  });
});

test('a device change the network reports reaches a reconcile', async () => {
  await withDaemon(async (d, net) => {
    assert.ok(net.onLinkChange, 'the controller watches links from start');
    const before = net.reconciles;
    net.onLinkChange();
    await d.services.comm!.reconcile();
    assert.ok(net.reconciles >= before + 1);
    assert.ok(net.calls.indexOf('start') < net.calls.findIndex((c) => c.startsWith('reconcile')));
  });
});

/** A scripted host for LinuxCommNetwork: `ip -j -d addr show` answers `state.links`; the rules written are kept. */
function scriptedHost(state: { links: unknown[] }): { exec: Exec; rules: string[] } {
  const rules: string[] = [];
  const exec: Exec = (file, args, input) => {
    if (file.endsWith('nft') && args[0] === '-f') rules.push(input ?? '');
    const ipJson = file.endsWith('ip') && args[0] === '-j';
    const out = ipJson ? (args.includes('route') ? '[]' : JSON.stringify(state.links)) : '';
    return Promise.resolve({ code: 0, stdout: out, stderr: '' });
  };
  return { exec, rules };
}

const tapLink = (ifname: string, ifindex: number): unknown => ({
  ifname,
  ifindex,
  flags: ['UP'],
  linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } },
});

test('released taps are held while the same device exists; job-held taps by name; never a host device', async () => {
  const state = { links: [tapLink('mtap1', 3), { ifname: 'lo', ifindex: 1, flags: ['LOOPBACK', 'UP'], link_type: 'loopback' }] };
  const { exec, rules } = scriptedHost(state);
  const net = new LinuxCommNetwork({
    settings: ROUTED_SETTINGS,
    ipPath: '/usr/sbin/ip',
    nftPath: '/usr/sbin/nft',
    log: sinkLogger().log,
    exec,
  });
  const nic = { instance: 'a', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' };
  const lo = { instance: 'b', tap: 'lo', ipv4: '169.254.1.11', mac: '02:00:00:00:01:0b' };
  assert.deepEqual((await net.reconcile([nic, lo])).held, []);
  assert.match(rules.at(-1)!, /set taps \{ type ifname; elements = \{ "mtap1" \}; \}/, 'lo is left out of the sets');
  assert.deepEqual((await net.reconcile([])).held, ['mtap1'], 'released while it exists; lo never');
  assert.match(rules.at(-1)!, /set held \{ type ifname; elements = \{ "mtap1" \}; \}/);
  assert.deepEqual((await net.reconcile([])).held, ['mtap1'], 'still the same device');
  state.links = [tapLink('mtap1', 9)];
  assert.deepEqual((await net.reconcile([])).held, [], 'a new device under that name is not held');
  assert.deepEqual((await net.reconcile([], ['vmtap'])).held, ['vmtap'], 'a job-held tap is held before it exists');
  state.links = [tapLink('mtap1', 9)];
  assert.deepEqual((await net.reconcile([nic])).held, []);
  state.links = [];
  assert.deepEqual((await net.reconcile([])).held, [], 'a released tap that went is forgotten');
});
