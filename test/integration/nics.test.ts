/**
 * The real guest door with several comm ranges and a multi-NIC instance (issue 6, item 16): the
 * comm NIC's netmask and subnet come from the most specific configured range holding its address,
 * every NIC reaches both dialects, and an address outside every range is refused with the ranges
 * named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestDaemon, sampleInstance } from '../support/daemon.js';

test('guest door: comm ranges as a list give the comm NIC its prefix; NICs reach EC2 and OpenStack', async (t) => {
  const d = await startTestDaemon({ config: { guest: { commRange: ['127.0.0.0/8', '127.0.0.0/24', '10.99.0.0/16'] } } });
  t.after(() => d.close());
  const commMac = (sampleInstance(1).comm as { mac: string }).mac;
  const nics = [{ mac: '52:54:00:fe:00:01', network: 'public', addresses: ['10.0.0.5/24'], gateway4: '10.0.0.1' }];
  let r = await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { nics, displayName: 'Web front (A)' }));
  assert.equal(r.status, 201, r.text);
  r = await d.admin('PUT', '/v1/instances/vm300', sampleInstance(300));
  assert.equal(r.status, 201, r.text);

  const nd = (await d.guest('127.0.0.2', 'GET', '/openstack/latest/network_data.json')).json as {
    networks: { link: string; netmask?: string; ip_address?: string }[];
  };
  assert.deepEqual(
    nd.networks.map((n) => [n.link, n.ip_address, n.netmask]),
    [
      ['comm0', '127.0.0.2', '255.255.255.0'],
      ['nic1', '10.0.0.5', '255.255.255.0'],
    ],
  );
  const other = (await d.guest('127.0.1.45', 'GET', '/openstack/latest/network_data.json')).json as { networks: { netmask: string }[] };
  assert.equal(other.networks[0]?.netmask, '255.0.0.0', '127.0.1.45 is only in 127.0.0.0/8');
  const md = (await d.guest('127.0.0.2', 'GET', '/openstack/latest/meta_data.json')).json as { name: string };
  assert.equal(md.name, 'Web front (A)');
  assert.equal((await d.guest('127.0.0.2', 'GET', '/latest/meta-data/network/interfaces/macs/')).text, `${commMac}/\n52:54:00:fe:00:01/`);
  assert.equal(
    (await d.guest('127.0.0.2', 'GET', `/latest/meta-data/network/interfaces/macs/${commMac}/subnet-ipv4-cidr-block`)).text,
    '127.0.0.0/24',
  );
  assert.equal(
    (await d.guest('127.0.0.2', 'GET', '/latest/meta-data/network/interfaces/macs/52:54:00:fe:00:01/local-ipv4s')).text,
    '10.0.0.5',
  );

  const outside = await d.admin('PUT', '/v1/instances/vm2', {
    ...sampleInstance(2),
    comm: { mac: '52:54:00:fe:00:09', ipv4: '192.0.2.9' },
  });
  assert.equal(outside.status, 409, outside.text);
  assert.match(outside.text, /must lie in a comm range \(127\.0\.0\.0\/8, 127\.0\.0\.0\/24, 10\.99\.0\.0\/16\)/);
});
