/**
 * The OpenStack renderer against golden files, plus: the per-version listing, random_seed from
 * the caller's seed, keys split by type, the default and the given network_data, vendor data,
 * renderOpenstackFile's 404s, determinism and purity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  OPENSTACK_VERSIONS,
  isOpenstackVersion,
  openstackListing,
  renderMetaData,
  renderNetworkData,
  renderOpenstackFile,
  renderVendorData,
  type OpenstackVersion,
} from '../../routes/render/openstack.js';
import { userDataOf } from '../../routes/render/view.js';
import { assertGoldenDir, fixedCtx, INSTANCES, jsonText, loadView, type InstanceName } from '../support/render-golden.js';

const GOLDEN: Record<InstanceName, OpenstackVersion[]> = {
  full: ['2012-08-10', '2015-10-15', '2018-08-27', 'latest'],
  minimal: ['2018-08-27'],
  edge: ['latest'],
  multinic: ['2015-10-15', 'latest'],
};

/** Every file `/openstack/<v>/` lists, as the bodies a route would serve (JSON pretty-printed). */
function files(name: InstanceName, v: OpenstackVersion): Map<string, string | Buffer> {
  const view = loadView(name);
  const out = new Map<string, string | Buffer>([['_listing.txt', openstackListing(view, v).join('\n')]]);
  for (const file of openstackListing(view, v)) {
    const f = renderOpenstackFile(view, v, file, fixedCtx());
    assert.ok(f, file);
    if (f.kind === 'json') out.set(file, jsonText(f.value));
    else if (f.kind === 'bytes') out.set(`${file}.txt`, f.value);
  }
  return out;
}

for (const name of INSTANCES) {
  for (const v of GOLDEN[name]) {
    test(`golden: openstack ${v} ${name}`, () => assertGoldenDir(`openstack/${v}/${name}`, files(name, v)));
  }
}

test('golden: the version list', () => {
  assertGoldenDir('openstack/_root', new Map([['_listing.txt', OPENSTACK_VERSIONS.join('\n')]]));
});

test("OPENSTACK_VERSIONS: Nova's list, latest last", () => {
  assert.equal(
    OPENSTACK_VERSIONS.join(' '),
    '2012-08-10 2013-04-04 2013-10-17 2015-10-15 2016-06-30 2016-10-06 2017-02-22 2018-08-27 2020-10-14 latest',
  );
  assert.ok(isOpenstackVersion('2018-08-27'));
  assert.equal(isOpenstackVersion('2019-01-01'), false);
});

test('listing: each file from its own version on; user_data only when there is some', () => {
  const full = loadView('full');
  const at = (v: OpenstackVersion) => openstackListing(full, v).join(' ');
  assert.equal(at('2012-08-10'), 'meta_data.json user_data');
  assert.equal(at('2013-04-04'), 'meta_data.json user_data password');
  assert.equal(at('2013-10-17'), 'meta_data.json user_data password vendor_data.json');
  assert.equal(at('2015-10-15'), 'meta_data.json user_data password vendor_data.json network_data.json');
  assert.equal(at('2016-10-06'), 'meta_data.json user_data password vendor_data.json network_data.json vendor_data2.json');
  assert.equal(
    openstackListing(loadView('minimal'), 'latest').join(' '),
    'meta_data.json password vendor_data.json network_data.json vendor_data2.json',
  );
});

test('renderOpenstackFile: undefined (404) for a file the version does not list', () => {
  const full = loadView('full');
  assert.equal(renderOpenstackFile(full, '2012-08-10', 'network_data.json', fixedCtx()), undefined);
  assert.equal(renderOpenstackFile(full, 'latest', 'nope.json', fixedCtx()), undefined);
  assert.equal(renderOpenstackFile(loadView('minimal'), 'latest', 'user_data', fixedCtx()), undefined);
  assert.deepEqual(renderOpenstackFile(full, 'latest', 'password', fixedCtx()), { kind: 'password' });
  assert.deepEqual(renderOpenstackFile(full, 'latest', 'user_data', fixedCtx()), { kind: 'bytes', value: userDataOf(full) });
});

test("meta_data.json: random_seed is the first 512 bytes of the caller's seed, from 2013-04-04", () => {
  const ctx = fixedCtx();
  const md = renderMetaData(loadView('minimal'), 'latest', ctx);
  assert.equal(Buffer.from(md.random_seed ?? '', 'base64').length, 512);
  assert.equal(md.random_seed, ctx.randomSeed.subarray(0, 512).toString('base64'));
  assert.equal('random_seed' in renderMetaData(loadView('minimal'), '2012-08-10', ctx), false);
  assert.throws(() => renderMetaData(loadView('minimal'), 'latest', fixedCtx({ randomSeed: Buffer.alloc(511) })), RangeError);
});

test('meta_data.json: project_id from 2015-10-15 when set, devices from 2016-06-30', () => {
  const full = loadView('full');
  const ctx = fixedCtx();
  assert.equal('project_id' in renderMetaData(full, '2013-10-17', ctx), false);
  assert.equal(renderMetaData(full, '2015-10-15', ctx).project_id, '4b1d5c9f0e2a4c6b8d7e9f0a1b2c3d4e');
  assert.equal('project_id' in renderMetaData(loadView('minimal'), 'latest', ctx), false);
  assert.equal('devices' in renderMetaData(full, '2015-10-15', ctx), false);
  assert.equal(renderMetaData(full, '2016-06-30', ctx).devices?.length, 1);
  assert.deepEqual(renderMetaData(loadView('minimal'), 'latest', ctx).devices, []);
});

test('meta_data.json: public_keys holds OpenSSH keys only, keys holds every key with its type', () => {
  const md = renderMetaData(loadView('edge'), 'latest', fixedCtx());
  assert.deepEqual(Object.keys(md.public_keys ?? {}), ['alice', 'bob']);
  assert.deepEqual(
    md.keys?.map((k) => `${k.name}:${k.type}`),
    ['alice:ssh', 'ca:x509', 'bob:ssh'],
  );
  const none = renderMetaData(loadView('minimal'), 'latest', fixedCtx());
  assert.equal('public_keys' in none || 'keys' in none, false);
});

test("meta_data.json: identity fields and the dialect's own availability zone and launch index", () => {
  const md = renderMetaData(loadView('full'), 'latest', fixedCtx());
  assert.equal(md.uuid, '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c14');
  assert.equal(md.name, 'web1');
  assert.equal(md.hostname, 'web1.example.org');
  assert.equal(md.availability_zone, 'nova-az1');
  assert.equal(md.launch_index, 1);
  assert.deepEqual(md.meta, { role: 'web', owner: 'ops' });
  const min = renderMetaData(loadView('minimal'), 'latest', fixedCtx());
  assert.deepEqual([min.hostname, min.availability_zone, min.launch_index, 'meta' in min], ['minimal', 'metad-1a', 0, false]);
});

test('meta_data.json: a meta key named toString is kept as data', () => {
  const md = renderMetaData(loadView('edge'), 'latest', fixedCtx());
  assert.equal(new Map(Object.entries(JSON.parse(JSON.stringify(md.meta)) as object)).get('toString'), 'meta-proto');
  assert.equal(Object.getPrototypeOf(md.meta), Object.prototype);
});

test("network_data.json: the admin's document verbatim, else the comm NIC without a gateway", () => {
  const full = loadView('full');
  assert.deepEqual(renderNetworkData(full), full.doc.openstack?.networkData);
  assert.notEqual(renderNetworkData(full), full.doc.openstack?.networkData, 'a copy, not the stored object');
  assert.deepEqual(renderNetworkData(loadView('minimal')), {
    links: [{ id: 'comm0', type: 'phy', ethernet_mac_address: '52:54:00:00:00:01', mtu: 1500 }],
    networks: [{ id: 'network0', link: 'comm0', type: 'ipv4', ip_address: '169.254.0.2', netmask: '255.255.0.0', routes: [] }],
    services: [],
  });
});

test("vendor data: the admin's objects, else {}", () => {
  assert.deepEqual(renderVendorData(loadView('full'), 1), { 'cloud-init': '#cloud-config\npackages: [nginx]\n' });
  assert.deepEqual(renderVendorData(loadView('full'), 2), { static: { motd: 'managed by metad' } });
  assert.deepEqual(renderVendorData(loadView('minimal')), {});
  assert.deepEqual(renderVendorData(loadView('minimal'), 2), {});
});

test('deterministic and pure: same inputs, same files; the view is not modified', () => {
  for (const name of INSTANCES) {
    const view = loadView(name);
    const before = structuredClone(view);
    assert.deepEqual(files(name, 'latest'), files(name, 'latest'));
    renderMetaData(view, 'latest', fixedCtx());
    renderNetworkData(view);
    assert.deepEqual(view, before);
  }
});
