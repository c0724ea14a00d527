/**
 * LinuxCommNetwork against a scripted `ip`/`nft` (no host changes): which address commands a
 * reconcile and a start send when fd00:ec2::254 (network.ec2Ipv6) is turned on or off. The real
 * kernel side is test/integration/comm-routed.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LinuxCommNetwork } from '../../daemon/comm/linux.js';
import type { Exec } from '../../daemon/comm/exec.js';
import { EC2_METADATA_IPV6 } from '../../daemon/net.js';
import { type CommNic, type CommSettings } from '../../daemon/comm/plan.js';
import { sinkLogger } from '../support/sink.js';
import { ROUTED_SETTINGS } from '../support/comm-settings.js';

const SETTINGS = ROUTED_SETTINGS;
const NIC: CommNic = { instance: 'a', tap: 'mtap1', ipv4: '169.254.1.10', mac: '02:00:00:00:01:0a' };

/** `ip -j addr show` of a host where mtap1 holds the given addresses, and the anchor exists. */
function host(tapAddrs: string[]): Exec & { calls: string[]; batches: string[] } {
  const calls: string[] = [];
  const batches: string[] = [];
  const addr = (cidr: string) => {
    const [local, len] = cidr.split('/');
    return { family: local!.includes(':') ? 'inet6' : 'inet', local, prefixlen: Number(len) };
  };
  const links = [
    { ifname: 'metad0', ifindex: 2, flags: ['UP'], addr_info: [addr('169.254.169.254/32')] },
    {
      ifname: 'mtap1',
      ifindex: 3,
      flags: ['UP'],
      linkinfo: { info_kind: 'tun', info_data: { type: 'tap' } },
      addr_info: tapAddrs.map(addr),
    },
  ];
  const exec = ((file: string, args: readonly string[], input?: string) => {
    calls.push(`${file.split('/').pop()!} ${args.join(' ')}`);
    if (args.includes('-batch')) batches.push(input ?? '');
    const json = file.endsWith('ip') && args[0] === '-j' && (args.includes('addr') || args.includes('link'));
    return Promise.resolve({ code: 0, stdout: json ? JSON.stringify(links) : args.includes('route') ? '[]' : '', stderr: '' });
  }) as Exec & { calls: string[]; batches: string[] };
  exec.calls = calls;
  exec.batches = batches;
  return exec;
}

function network(exec: Exec, s: CommSettings): LinuxCommNetwork {
  return new LinuxCommNetwork({ settings: s, ipPath: '/usr/sbin/ip', nftPath: '/usr/sbin/nft', log: sinkLogger().log, exec });
}

test('ec2Ipv6 on: a live tap gets fd00:ec2::254/128 (no DAD, no prefix route), the anchor too', async () => {
  const exec = host(['169.254.169.254/16', 'fe80::a9fe:a9fe/64']);
  const net = network(exec, { ...SETTINGS, ec2Ipv6: EC2_METADATA_IPV6 });
  await net.start();
  assert.ok(exec.calls.includes('ip addr replace fd00:ec2::254/128 dev metad0 noprefixroute nodad'), exec.calls.join('\n'));
  await net.reconcile([NIC]);
  assert.match(exec.batches.join('\n'), /^addr replace fd00:ec2::254\/128 dev mtap1 noprefixroute nodad$/m);
});

test('ec2Ipv6 off: fd00:ec2::254 left by an earlier configuration leaves the live tap and the anchor', async () => {
  const exec = host(['169.254.169.254/16', 'fe80::a9fe:a9fe/64', 'fd00:ec2::254/128']);
  const net = network(exec, SETTINGS);
  await net.start();
  assert.ok(exec.calls.includes('ip addr del fd00:ec2::254/128 dev metad0'), exec.calls.join('\n'));
  await net.reconcile([NIC]);
  const batch = exec.batches.join('\n');
  assert.match(batch, /^addr del fd00:ec2::254\/128 dev mtap1$/m);
  assert.doesNotMatch(batch, /169\.254\.169\.254\/16|fe80::a9fe:a9fe/, 'the wanted addresses are left alone');
});

/** linkEventMatters is what the link watcher asks of each device event. */
class Exposed extends LinuxCommNetwork {
  matters(e: { deleted: boolean; ifindex: number; ifname: string }): boolean {
    return this.linkEventMatters(e);
  }
}

test('the device a registered tap was set up on going needs a reconcile; another device of that name going does not', async () => {
  const net = new Exposed({ settings: SETTINGS, ipPath: '/usr/sbin/ip', nftPath: '/usr/sbin/nft', log: sinkLogger().log, exec: host([]) });
  const r = await net.reconcile([NIC]);
  assert.deepEqual(r.seen, [{ tap: 'mtap1', ifindex: 3 }], 'the report names the device the tap is on');
  assert.equal(net.matters({ deleted: true, ifindex: 3, ifname: 'mtap1' }), true);
  assert.equal(net.matters({ deleted: true, ifindex: 8, ifname: 'mtap1' }), false, 'not the device metad set up');
  assert.equal(net.matters({ deleted: true, ifindex: 9, ifname: 'other' }), false, 'not a registered tap');
  assert.equal(net.matters({ deleted: false, ifindex: 3, ifname: 'mtap1' }), false, 'the same device, still there');
  assert.equal(net.matters({ deleted: false, ifindex: 8, ifname: 'mtap1' }), true, 'another device under the name');
});
