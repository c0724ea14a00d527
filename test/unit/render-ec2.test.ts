/**
 * The EC2 renderer against golden files, plus the rules a golden alone does not state: version
 * gating, the public-keys quirk, IAM and tags only when enabled, identity document and signature,
 * defaults for a minimal instance, determinism and purity.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { identityDocument, regionOf, renderEc2 } from '../../routes/render/ec2.js';
import { EC2_VERSIONS, isEc2Version, type Ec2Version } from '../../routes/render/ec2-catalog.js';
import { isDir, listing, lookup, walk, type Tree } from '../../routes/render/tree.js';
import type { GuestView } from '../../routes/render/view.js';
import { assertGoldenDir, fakeSign, fixedCtx, INSTANCES, loadView, treeFiles, type InstanceName } from '../support/render-golden.js';

/** Which versions get goldens: 1.0, cloud-init's fallback, its newest probe but one, latest. */
const GOLDEN: Record<InstanceName, Ec2Version[]> = {
  full: ['1.0', '2009-04-04', '2018-09-24', 'latest'],
  minimal: ['2009-04-04', 'latest'],
  edge: ['latest'],
  multinic: ['2011-01-01', 'latest'],
};

function render(view: GuestView, v: Ec2Version, sign = false): Tree {
  return renderEc2(view, v, fixedCtx(sign ? { sign: fakeSign } : {}));
}
function text(tree: Tree, path: string): string | undefined {
  const node = lookup(tree, path === '' ? [] : path.split('/'));
  if (node === undefined) return undefined;
  return isDir(node) ? listing(node) : node.toString();
}
function paths(tree: Tree): Set<string> {
  return new Set([...walk(tree)].map(([p]) => p.join('/')));
}

for (const name of INSTANCES) {
  for (const v of GOLDEN[name]) {
    test(`golden: ec2 ${v} ${name}`, () => {
      assertGoldenDir(`ec2/${v}/${name}`, treeFiles(render(loadView(name), v, name === 'full')));
    });
  }
}

test('golden: the version list', () => {
  assertGoldenDir('ec2/_root', new Map([['_listing.txt', EC2_VERSIONS.join('\n')]]));
});

test('EC2_VERSIONS: ascending, the probed versions present, latest last', () => {
  const dated = EC2_VERSIONS.slice(0, -1);
  assert.deepEqual([...dated].sort(), dated);
  for (const v of ['1.0', '2007-01-19', '2009-04-04', '2011-01-01', '2016-09-02', '2018-09-24', '2021-03-23']) {
    assert.ok(isEc2Version(v), v);
  }
  assert.equal(EC2_VERSIONS.at(-1), 'latest');
  assert.equal(isEc2Version('2009-04-05'), false);
});

test('gating: 1.0 has the original categories only', () => {
  const t = render(loadView('full'), '1.0');
  assert.equal(text(t, ''), 'meta-data\nuser-data');
  assert.equal(
    text(t, 'meta-data'),
    [
      'ami-id',
      'ami-launch-index',
      'ami-manifest-path',
      'hostname',
      'instance-id',
      'local-ipv4',
      'public-keys/',
      'reservation-id',
      'security-groups',
    ].join('\n'),
  );
  assert.equal(text(t, 'meta-data/local-hostname'), undefined);
});

test('gating: 2009-04-04 has dynamic/ but no mac, network or iam', () => {
  const t = render(loadView('full'), '2009-04-04');
  assert.equal(text(t, ''), 'dynamic\nmeta-data\nuser-data');
  for (const p of ['mac', 'network', 'iam', 'services', 'tags']) assert.equal(text(t, `meta-data/${p}`), undefined, p);
  assert.equal(text(t, 'meta-data/placement'), 'availability-zone');
  assert.equal(text(t, 'meta-data/instance-type'), 't3.medium');
  assert.equal(text(render(loadView('full'), '2008-09-01'), ''), 'meta-data\nuser-data');
});

test('gating: each category appears from its own version on', () => {
  const view = loadView('full');
  const at = (v: Ec2Version, p: string) => text(render(view, v), `meta-data/${p}`) !== undefined;
  assert.deepEqual([at('2008-09-01', 'mac'), at('2011-01-01', 'mac')], [false, true]);
  assert.deepEqual([at('2011-05-01', 'iam'), at('2012-01-12', 'iam')], [false, true]);
  assert.deepEqual([at('2012-01-12', 'services'), at('2014-02-25', 'services')], [false, true]);
  assert.deepEqual([at('2019-10-01', 'placement/region'), at('2020-10-27', 'placement/region')], [false, true]);
  assert.deepEqual([at('2021-01-03', 'tags'), at('2021-03-23', 'tags')], [false, true]);
});

test('gating only ever adds: each version holds every path of the one before', () => {
  for (const name of INSTANCES) {
    const view = loadView(name);
    let before = new Set<string>();
    for (const v of EC2_VERSIONS) {
      const now = paths(render(view, v, true));
      for (const p of before) assert.ok(now.has(p), `${name}: ${p} missing in ${v}`);
      before = now;
    }
  }
});

test('2021-03-23 already has everything latest has', () => {
  for (const name of INSTANCES) {
    assert.deepEqual(treeFiles(render(loadView(name), '2021-03-23', true)), treeFiles(render(loadView(name), 'latest', true)));
  }
});

test('public-keys: 0=name listing, openssh-key below the bare index, x509 keys left out', () => {
  const t = render(loadView('edge'), 'latest');
  assert.equal(text(t, 'meta-data/public-keys'), '0=alice\n1=bob');
  assert.equal(text(t, 'meta-data/public-keys/1'), 'openssh-key');
  assert.equal(text(t, 'meta-data/public-keys/1/openssh-key'), 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABFixtureBob bob');
  assert.equal(text(render(loadView('minimal'), 'latest'), 'meta-data/public-keys'), undefined);
});

test('no listing and no generated text leaf ends with a newline', () => {
  for (const name of INSTANCES) {
    for (const [p, node] of walk(render(loadView(name), 'latest', true))) {
      if (p[0] === 'user-data') continue;
      const body = isDir(node) ? listing(node) : node.toString();
      assert.ok(!body.endsWith('\n'), `${name}: ${p.join('/')}`);
    }
  }
});

test('iam: info and credentials as JSON, only when the view has credentials', () => {
  const view = loadView('full');
  const t = render(view, 'latest');
  assert.equal(text(t, 'meta-data/iam'), 'info\nsecurity-credentials/');
  assert.equal(text(t, 'meta-data/iam/security-credentials'), 'web-role');
  const info = JSON.parse(text(t, 'meta-data/iam/info') ?? '') as Record<string, string>;
  assert.deepEqual(Object.keys(info), ['Code', 'LastUpdated', 'InstanceProfileArn', 'InstanceProfileId']);
  const cred = JSON.parse(text(t, 'meta-data/iam/security-credentials/web-role') ?? '') as Record<string, string>;
  assert.deepEqual(cred, {
    Code: 'Success',
    LastUpdated: '2024-05-01T10:00:00Z',
    Type: 'AWS-HMAC',
    AccessKeyId: 'ASIAFIXTUREKEY000001',
    SecretAccessKey: 'fixture-secret-access-key-FULL',
    Token: 'fixture-session-token-FULL',
    Expiration: '2024-05-01T16:00:00Z',
  });
  assert.equal(text(render({ ...view, iam: undefined }, 'latest'), 'meta-data/iam'), undefined);
});

test('tags: only with exposeTags, sorted, keys EC2 would refuse left out', () => {
  assert.equal(text(render(loadView('edge'), 'latest'), 'meta-data/tags/instance'), 'Name\nhasOwnProperty\nz:last');
  assert.equal(text(render(loadView('edge'), 'latest'), 'meta-data/tags/instance/hasOwnProperty'), 'proto-tag');
  // Registration refuses such keys; a document stored before that rule is filtered, not mangled.
  const edge = loadView('edge');
  const legacy: GuestView = {
    ...edge,
    doc: {
      ...edge.doc,
      ec2: { ...edge.doc.ec2, tags: { ...edge.doc.ec2!.tags, 'a b': 'x', '..': 'x', 'role/x': 'x', '0=k': 'x', _index: 'x' } },
    },
  };
  assert.equal(text(render(legacy, 'latest'), 'meta-data/tags/instance'), 'Name\nhasOwnProperty\nz:last');
  const full = loadView('full');
  assert.equal(text(render(full, 'latest'), 'meta-data/tags/instance/env'), 'prod');
  const hidden: GuestView = { ...full, doc: { ...full.doc, ec2: { ...full.doc.ec2, exposeTags: false } } };
  assert.equal(text(render(hidden, 'latest'), 'meta-data/tags'), undefined);
  assert.equal(text(render(loadView('minimal'), 'latest'), 'meta-data/tags'), undefined);
});

test('a minimal instance gets documented defaults derived from its uuid and comm NIC', () => {
  const t = render(loadView('minimal'), 'latest');
  assert.equal(text(t, 'meta-data/instance-id'), 'i-0b9e7c6d5a434f218');
  assert.equal(text(t, 'meta-data/reservation-id'), 'r-18e0dc1b2a3f4e5d6');
  assert.equal(text(t, 'meta-data/hostname'), 'minimal');
  assert.equal(text(t, 'meta-data/local-ipv4'), '169.254.0.2');
  assert.equal(text(t, 'meta-data/mac'), '52:54:00:00:00:01');
  assert.equal(text(t, 'meta-data/placement/availability-zone'), 'metad-1a');
  assert.equal(text(t, 'meta-data/placement/region'), 'metad-1');
  assert.equal(text(t, 'meta-data/public-ipv4'), undefined);
  assert.equal(text(t, 'meta-data/public-hostname'), undefined);
  assert.equal(text(t, 'user-data'), undefined);
  assert.equal(text(t, ''), 'dynamic\nmeta-data');
});

test('regionOf drops the zone letter only when there is one', () => {
  assert.equal(regionOf('us-east-1a'), 'us-east-1');
  assert.equal(regionOf('metad-1a'), 'metad-1');
  assert.equal(regionOf('nova'), 'nova');
});

test('identity document: the documented fields, the leaf the caller signs', () => {
  const view = loadView('full');
  const t = render(view, 'latest', true);
  const doc = text(t, 'dynamic/instance-identity/document');
  assert.equal(doc, identityDocument(view));
  assert.deepEqual(JSON.parse(doc), {
    accountId: '123456789012',
    architecture: 'x86_64',
    availabilityZone: 'eu-west-1b',
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: 'ami-0a1b2c3d4e5f67890',
    instanceId: 'i-0abc1234def567890',
    instanceType: 't3.medium',
    kernelId: 'aki-12345678',
    pendingTime: '2024-05-01T10:00:00Z',
    privateIp: '10.0.0.17',
    ramdiskId: null,
    region: 'eu-west-1',
    version: '2017-09-30',
  });
  assert.equal(text(t, 'dynamic/instance-identity'), 'document\nsignature');
  assert.equal(text(t, 'dynamic/instance-identity/signature'), fakeSign(identityDocument(view)));
  assert.equal(text(render(view, 'latest', false), 'dynamic/instance-identity'), 'document');
});

test('user-data is the raw bytes', () => {
  const ud = lookup(render(loadView('edge'), 'latest'), ['user-data']);
  assert.deepEqual(ud, Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0x00, 0x0a, 0x0d, 0x0a]));
});

test('deterministic and pure: same inputs, same tree; the view is not modified', () => {
  for (const name of INSTANCES) {
    const view = loadView(name);
    const before = structuredClone(view);
    const a = treeFiles(render(view, 'latest', true));
    const b = treeFiles(renderEc2(view, 'latest', fixedCtx({ now: 0, randomSeed: Buffer.alloc(512), sign: fakeSign })));
    assert.deepEqual(a, b, 'EC2 output depends on neither the clock nor the seed');
    assert.deepEqual(view, before);
  }
});
