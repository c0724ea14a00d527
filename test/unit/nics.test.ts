/**
 * Guests with several NICs (issue 6, item 16): the model takes `nics` (MAC, addresses with their
 * prefix, network, gateways, MTU), `nameservers` and a free-form `displayName`; the renderers put
 * every NIC into EC2 `network/interfaces/macs/` and OpenStack `network_data.json`, the comm NIC
 * with the netmask of its comm range (it was always 255.255.0.0); `guest.commRange` is a list.
 * The goldens (test/fixtures/golden/*\/multinic) hold the whole output; this file pins the rules.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateInstance } from '../../daemon/registry/validate.js';
import { buildConfig } from '../../daemon/config/config.js';
import { Ipv4Ranges, ipv4Netmask, netmaskOf, parseAddressCidr, subnetOf } from '../../daemon/net.js';
import { renderEc2 } from '../../routes/render/ec2.js';
import { renderMetaData, renderNetworkData } from '../../routes/render/openstack.js';
import { renderGanetiMetaData } from '../../routes/render/ganeti.js';
import { isDir, listing, lookup, type Tree } from '../../routes/render/tree.js';
import { fixedCtx, loadView } from '../support/render-golden.js';
import { sampleInstance } from '../support/daemon.js';

function text(tree: Tree, path: string): string | undefined {
  const node = lookup(tree, path.split('/'));
  if (node === undefined) return undefined;
  return isDir(node) ? listing(node) : node.toString();
}

test("network_data.json: the comm NIC's netmask is its comm range's prefix, not always /16", () => {
  const minimal = loadView('minimal');
  for (const [prefix, mask] of [
    [16, '255.255.0.0'],
    [24, '255.255.255.0'],
    [8, '255.0.0.0'],
    [32, '255.255.255.255'],
  ] as const) {
    const nd = renderNetworkData({ ...minimal, commPrefix: prefix });
    assert.deepEqual(nd.networks[0], {
      id: 'network0',
      link: 'comm0',
      type: 'ipv4',
      ip_address: minimal.doc.comm.ipv4,
      netmask: mask,
      routes: [],
    });
  }
});

test('network_data.json: every NIC is a link; static addresses with their own netmask and gateway; no IPv4 address: DHCP', () => {
  const nd = renderNetworkData(loadView('multinic'));
  assert.deepEqual(
    nd.links.map((l) => [l.id, l.ethernet_mac_address, l.mtu]),
    [
      ['comm0', '52:54:00:00:0c:03', 1500],
      ['nic1', '52:54:00:00:01:03', 9000],
      ['nic2', '52:54:00:00:02:03', 1500],
      ['nic3', '52:54:00:00:03:03', 1500],
    ],
  );
  assert.deepEqual(
    nd.networks.map((n) => [n.link, n.type, n.ip_address, n.netmask, n.network_id]),
    [
      ['comm0', 'ipv4', '10.99.0.7', '255.255.255.0', undefined],
      ['nic1', 'ipv4', '10.0.0.17', '255.255.255.0', 'public'],
      ['nic1', 'ipv4', '10.0.0.18', '255.255.255.0', 'public'],
      ['nic1', 'ipv6', '2001:db8:0:1::17', 'ffff:ffff:ffff:ffff::', 'public'],
      ['nic2', 'ipv4', '192.168.50.3', '255.255.255.240', 'storage'],
      ['nic3', 'ipv4_dhcp', undefined, undefined, undefined],
    ],
  );
  // One default route per family, on the first address of that family.
  assert.deepEqual(
    nd.networks.map((n) => n.routes),
    [
      [],
      [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: '10.0.0.1' }],
      [],
      [{ network: '::', netmask: '::', gateway: '2001:db8:0:1::1' }],
      [],
      undefined,
    ],
  );
  assert.deepEqual(nd.services, [
    { type: 'dns', address: '10.0.0.53' },
    { type: 'dns', address: '2001:db8::53' },
  ]);
});

test('EC2 network/interfaces/macs/: the comm NIC (device 0) and each NIC with its own addresses and subnets', () => {
  const tree = renderEc2(loadView('multinic'), 'latest', fixedCtx());
  const macs = 'meta-data/network/interfaces/macs';
  assert.equal(text(tree, macs), '52:54:00:00:0c:03/\n52:54:00:00:01:03/\n52:54:00:00:02:03/\n52:54:00:00:03:03/');
  assert.equal(text(tree, `${macs}/52:54:00:00:0c:03/subnet-ipv4-cidr-block`), '10.99.0.0/24');
  const nic1 = `${macs}/52:54:00:00:01:03`;
  assert.equal(text(tree, `${nic1}/device-number`), '1');
  assert.equal(text(tree, `${nic1}/local-ipv4s`), '10.0.0.17\n10.0.0.18');
  assert.equal(text(tree, `${nic1}/subnet-ipv4-cidr-block`), '10.0.0.0/24');
  assert.equal(text(tree, `${nic1}/ipv6s`), '2001:db8:0:1::17');
  assert.equal(text(tree, `${nic1}/subnet-ipv6-cidr-blocks`), '2001:db8:0:1::/64');
  assert.equal(text(tree, `${macs}/52:54:00:00:03:03/local-ipv4s`), undefined, 'a DHCP NIC lists no address');
  // The comm NIC's own address, even when ec2.localIpv4 says otherwise (that is meta-data/local-ipv4).
  const full = renderEc2(loadView('full'), 'latest', fixedCtx());
  assert.equal(text(full, 'meta-data/local-ipv4'), '10.0.0.17');
  assert.equal(text(full, 'meta-data/network/interfaces/macs/52:54:00:12:34:56/local-ipv4s'), '169.254.10.7');
});

test("displayName is OpenStack's name (default: the instance name); Ganeti carries the NICs", () => {
  assert.equal(renderMetaData(loadView('multinic'), 'latest', fixedCtx()).name, 'Orders DB (primary) — rack 3');
  assert.equal(renderMetaData(loadView('minimal'), 'latest', fixedCtx()).name, 'minimal');
  const g = renderGanetiMetaData(loadView('multinic'), 'latest');
  assert.equal(g.nics?.length, 3);
  assert.deepEqual(g.nameservers, ['10.0.0.53', '2001:db8::53']);
  assert.equal('nics' in renderGanetiMetaData(loadView('minimal'), 'latest'), false);
});

test('validation: NIC MACs unique (comm included), addresses real with a prefix in range, names of fields in errors', () => {
  const ok = {
    nics: [{ mac: '52:54:00:ff:00:01', addresses: ['10.0.0.5/24', '2001:db8::5/64'], gateway4: '10.0.0.1', mtu: 9000 }],
    nameservers: ['10.0.0.53'],
    displayName: 'Web — front',
  };
  assert.doesNotThrow(() => validateInstance(sampleInstance(1, ok)));
  const bad = (extra: Record<string, unknown>): string[] => {
    try {
      validateInstance(sampleInstance(1, extra));
    } catch (err) {
      return ((err as { details?: { path: string }[] }).details ?? []).map((d) => d.path);
    }
    return [];
  };
  const comm = sampleInstance(1).comm as { mac: string };
  assert.deepEqual(bad({ nics: [{ mac: comm.mac }] }), ['/nics/0/mac']);
  assert.deepEqual(bad({ nics: [{ mac: '52:54:00:ff:00:01' }, { mac: '52:54:00:ff:00:01' }] }), ['/nics/1/mac']);
  assert.deepEqual(
    bad({
      nics: [{ mac: '52:54:00:ff:00:01', addresses: ['10.0.0.5/33', '10.0.0.256/24', '2001:db8::5/129', '10.0.0.6/24', '10.0.0.6/25'] }],
    }),
    ['/nics/0/addresses/0', '/nics/0/addresses/1', '/nics/0/addresses/2', '/nics/0/addresses/4'],
  );
  assert.deepEqual(bad({ nics: [{ mac: '52:54:00:ff:00:01', addresses: ['10.0.0.5'] }] }), ['/nics/0/addresses/0']);
  assert.deepEqual(bad({ nics: [{ mac: '52:54:00:ff:00:01', gateway4: '2001:db8::1' }] }), ['/nics/0/gateway4']);
  assert.deepEqual(bad({ displayName: 'tab\there' }), ['/displayName']);
  assert.deepEqual(bad({ nics: Array.from({ length: 16 }, (_, i) => ({ mac: `52:54:00:ff:00:${(i + 16).toString(16)}` })) }), ['/nics']);
});

test('guest.commRange is a list (one string still read as a one-element list); the most specific range gives the prefix', () => {
  assert.deepEqual(buildConfig({}).guest.commRange, ['169.254.0.0/16']);
  assert.deepEqual(buildConfig({ guest: { commRange: '10.99.0.0/24' } }).guest.commRange, ['10.99.0.0/24']);
  assert.deepEqual(buildConfig({ guest: { commRange: ['169.254.0.0/16', '10.99.0.0/24'] } }).guest.commRange, [
    '169.254.0.0/16',
    '10.99.0.0/24',
  ]);
  assert.throws(() => buildConfig({ guest: { commRange: [] } }), /\/guest\/commRange/);
  assert.throws(() => buildConfig({ guest: { commRange: ['10.0.0.0/8', '10.0.0.0/33'] } }), /\/guest\/commRange\/1/);
  const r = new Ipv4Ranges(['10.0.0.0/8', '169.254.0.0/16', '10.99.0.0/24']);
  assert.equal(r.prefixOf('10.99.0.7'), 24);
  assert.equal(r.prefixOf('10.1.2.3'), 8);
  assert.equal(r.prefixOf('192.0.2.1'), undefined);
  assert.equal(r.has('169.254.1.1'), true);
});

test('address helpers: netmask and subnet for IPv4 and IPv6', () => {
  const at = (s: string) => {
    const a = parseAddressCidr(s);
    assert.ok(a, s);
    return [a.address, netmaskOf(a), subnetOf(a)];
  };
  assert.deepEqual(at('10.0.0.17/24'), ['10.0.0.17', '255.255.255.0', '10.0.0.0/24']);
  assert.deepEqual(at('192.168.50.3/28'), ['192.168.50.3', '255.255.255.240', '192.168.50.0/28']);
  assert.deepEqual(at('2001:DB8:0:1:0:0:0:17/64'), ['2001:db8:0:1::17', 'ffff:ffff:ffff:ffff::', '2001:db8:0:1::/64']);
  assert.deepEqual(at('fe80::1/10'), ['fe80::1', 'ffc0::', 'fe80::/10']);
  assert.deepEqual(at('0.0.0.0/0'), ['0.0.0.0', '0.0.0.0', '0.0.0.0/0']);
  for (const s of ['10.0.0.1', '10.0.0.1/33', '::1/129', 'fe80::1%eth0/64', 'x/8', '10.0.0.1/'])
    assert.equal(parseAddressCidr(s), undefined, s);
  assert.equal(ipv4Netmask(20), '255.255.240.0');
});
