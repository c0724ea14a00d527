/**
 * BridgedCommNetwork against a scripted `ip`/`nft` (no host changes): what start and reconcile
 * send for a missing bridge, one that is already right, one with another MAC, a device of that
 * name that is not a bridge, and ports to enslave or release. The real kernel side is
 * test/integration/comm-bridged.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BridgedCommNetwork } from '../../daemon/comm/bridged.js';
import type { Exec } from '../../daemon/comm/exec.js';
import type { CommNic } from '../../daemon/comm/plan.js';
import { sinkLogger } from '../support/sink.js';
import { BRIDGED_SETTINGS } from '../support/comm-settings.js';

const SETTINGS = BRIDGED_SETTINGS;
const NIC: CommNic = { instance: 'a', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' };
const BRIDGE_OK = {
  ifname: 'metadbr0',
  address: '02:00:a9:fe:a9:fe',
  flags: ['UP'],
  linkinfo: { info_kind: 'bridge' },
  addr_info: [{ family: 'inet', local: '169.254.169.254', prefixlen: 16 }],
};

type Host = Exec & { calls: string[]; batches: string[] };

/** `ip -j -d addr show` answers `links`, `ip -j route show` `routes`; every other call succeeds with no output. */
function host(links: unknown[], routes: unknown[] = []): Host {
  const exec = ((file: string, args: readonly string[], input?: string) => {
    exec.calls.push(`${file.split('/').pop()!} ${args.join(' ')}`);
    if (args.includes('-batch')) exec.batches.push(input ?? '');
    const json = args[0] === '-j' && args.includes('show') && !args.includes('route');
    const out = json ? JSON.stringify(links) : args.includes('route') && args.includes('show') ? JSON.stringify(routes) : '';
    return Promise.resolve({ code: 0, stdout: out, stderr: '' });
  }) as Host;
  exec.calls = [];
  exec.batches = [];
  return exec;
}

function network(exec: Exec): BridgedCommNetwork {
  return new BridgedCommNetwork({ settings: SETTINGS, ipPath: '/usr/sbin/ip', nftPath: '/usr/sbin/nft', log: sinkLogger().log, exec });
}

const ipCalls = (h: Host): string[] => h.calls.filter((c) => c.startsWith('ip ') && !c.startsWith('ip -j'));

test('start without a bridge: created with its fixed MAC, no IPv6 address, up, holding 169.254.169.254/16 noprefixroute', async () => {
  const h = host([]);
  await network(h).start();
  assert.deepEqual(ipCalls(h), [
    'ip link add metadbr0 address 02:00:a9:fe:a9:fe type bridge',
    'ip link set dev metadbr0 addrgenmode none',
    'ip link set dev metadbr0 up',
    'ip addr replace 169.254.169.254/16 dev metadbr0 noprefixroute',
  ]);
});

test('start with the bridge as it should be changes nothing; another MAC is put right', async () => {
  const ok = host([BRIDGE_OK]);
  await network(ok).start();
  assert.deepEqual(ipCalls(ok), []);
  const moved = host([{ ...BRIDGE_OK, address: '02:11:22:33:44:55' }]);
  await network(moved).start();
  assert.deepEqual(ipCalls(moved), ['ip link set dev metadbr0 address 02:00:a9:fe:a9:fe']);
});

test('a device of that name that is not a bridge is refused with a message naming the fix', async () => {
  const h = host([{ ...BRIDGE_OK, linkinfo: { info_kind: 'veth' } }]);
  await assert.rejects(network(h).start(), /network\.bridge names an existing device that is not a bridge: choose another name/);
  assert.deepEqual(ipCalls(h), []);
});

test('reconcile: rules first, then the tap enslaved, isolated, not flooding; an unknown port released and dropped from the sets', async () => {
  const h = host([
    BRIDGE_OK,
    { ifname: 'mtap1', flags: ['UP'], linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } } },
    {
      ifname: 'stray',
      master: 'metadbr0',
      flags: ['UP'],
      linkinfo: { info_kind: 'veth', info_slave_data: { isolated: false, flood: true } },
    },
    { ifname: 'elsewhere', master: 'other0', flags: ['UP'] },
  ]);
  const r = await network(h).reconcile([NIC]);
  assert.equal(r.tapsReleased, 1);
  assert.deepEqual(r.liveTaps, [], 'no IPv6 doors on a bridge');
  const nft = h.calls.map((c, i) => [c, i] as const).filter(([c]) => c.startsWith('nft -f'));
  const batch = h.calls.findIndex((c) => c.includes('-batch'));
  assert.equal(nft.length, 2, 'the sets are written again once the stray port is released');
  assert.ok(nft[0]![1] < batch && batch < nft[1]![1], 'rules before the port changes, the second write after them');
  assert.deepEqual(h.batches[0]!.trim().split('\n'), [
    'link set dev mtap1 master metadbr0',
    'link set dev mtap1 type bridge_slave isolated on flood off',
    'link set dev stray nomaster',
    'route replace 169.254.1.10/32 dev metadbr0 proto 171 scope link src 169.254.169.254',
  ]);
  assert.doesNotMatch(h.batches[0]!, /elsewhere/, 'a port of another bridge is not touched');
});

test('reconcile with everything in place sends no ip changes and one rule write', async () => {
  const h = host(
    [
      BRIDGE_OK,
      {
        ifname: 'mtap1',
        master: 'metadbr0',
        flags: ['UP'],
        linkinfo: { info_kind: 'tun', info_slave_data: { isolated: true, flood: false } },
      },
    ],
    [{ dst: '169.254.1.10', dev: 'metadbr0', prefsrc: '169.254.169.254' }],
  );
  const r = await network(h).reconcile([NIC]);
  assert.deepEqual([r.routesAdded, r.routesDeleted, r.tapsReleased], [0, 0, 0]);
  assert.equal(h.batches.length, 0);
  assert.equal(h.calls.filter((c) => c.startsWith('nft -f')).length, 1);
});
