/**
 * cloud-init 22.4's own EC2 and OpenStack datasources (Debian's package, unmodified, driven by
 * cloudinit_crawl.py) crawl the real `metad serve` process. Both run inside a throwaway network
 * namespace whose tripwire counts every packet to a non-loopback address: the daemon listens on
 * 127.0.0.1 there, the crawls come from 127.0.0.1 (instance ALPHA) and a second instance BRAVO
 * at 127.0.0.2 must never show up in anything they get. See README.md in this folder.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InstanceView } from '../../cli/api-types.js';
import { canUseNetns, createNetns, skipOrFail, type Netns } from '../support/netns.js';
import { ALPHA, BRAVO, MULTI_NICS, bravoTraces } from './instances.js';
import {
  assertRan,
  cleanEnv,
  cloudInitMissing,
  CRAWL_PY,
  probe,
  PY,
  startDaemonInNetns,
  teardown,
  walkListings,
  type NsDaemon,
} from './harness.js';

interface Ec2Crawl {
  mode: 'v1' | 'v2';
  cloud_name: string;
  api_version: string;
  metadata_address: string;
  metadata: Record<string, unknown>;
  userdata: string | null;
  identity: Record<string, unknown> | null;
  instance_id: string;
  instance_data_v1: Record<string, unknown>;
  cloud_init_version: string;
  warnings: string[];
}

interface OpenstackCrawl {
  openstack_version: string;
  dsmode: string;
  metadata: Record<string, unknown>;
  userdata: string | null;
  vendordata: unknown;
  vendordata2: unknown;
  networkdata: Record<string, unknown>;
  'ec2-metadata': Record<string, unknown>;
  instance_id: string;
  instance_data_v1: Record<string, unknown>;
  metadata_address: string;
  warnings: string[];
}

/** What the driver adds with --guest-macs. */
interface NetworkOutputs {
  network_config: Record<string, unknown>;
  network_eni: string;
}

const A = ALPHA;
const ALPHA_KEYS = Object.fromEntries(A.publicKeys.map((k) => [k.name, k.key]));
const ALPHA_REGION = 'eu-alpha-1'; // the daemon's default: the zone without its letter

/** The value at `keys` inside a JSON document; undefined where a step is missing or not an object. */
function at(v: unknown, ...keys: string[]): unknown {
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

/** The meta-data tree every EC2 crawl (v1, v2, OpenStack's ec2-metadata) must come back with. */
function assertEc2Tree(md: Record<string, unknown> | undefined, what: string): void {
  assert.ok(md && Object.keys(md).length > 10, `${what}: meta-data tree is empty or tiny: ${JSON.stringify(md)}`);
  assert.equal(md['instance-id'], A.ec2.instanceId, `${what}: instance-id`);
  assert.equal(md['local-ipv4'], A.comm.ipv4, `${what}: local-ipv4`);
  assert.equal(md['hostname'], A.hostname, `${what}: hostname`);
  assert.equal(md['local-hostname'], A.hostname, `${what}: local-hostname`);
  assert.equal(md['public-hostname'], A.ec2.publicHostname, `${what}: public-hostname`);
  assert.equal(md['public-ipv4'], A.ec2.publicIpv4, `${what}: public-ipv4`);
  assert.equal(md['ami-id'], A.ec2.amiId, `${what}: ami-id`);
  assert.equal(md['instance-type'], A.ec2.instanceType, `${what}: instance-type`);
  assert.equal(md['mac'], A.comm.mac, `${what}: mac`);
  // Two public keys: `0=alice`, `1=carol` listed, each read from N/openssh-key, keyed by name.
  assert.deepEqual(md['public-keys'], ALPHA_KEYS, `${what}: public-keys`);
  assert.deepEqual(md['placement'], { 'availability-zone': A.ec2.availabilityZone, region: ALPHA_REGION }, `${what}: placement`);
  // A multi-line leaf becomes a list.
  assert.deepEqual(md['security-groups'], A.ec2.securityGroups, `${what}: security-groups`);
  assert.deepEqual(md['services'], { domain: A.ec2.domain }, `${what}: services`);
  assert.deepEqual(md['tags'], { instance: A.ec2.tags }, `${what}: tags (exposeTags)`);
  const nic = at(md, 'network', 'interfaces', 'macs', A.comm.mac);
  assert.ok(nic, `${what}: network/interfaces/macs/${A.comm.mac}/ missing`);
  assert.equal(at(nic, 'local-ipv4s'), A.comm.ipv4);
  assert.equal(at(nic, 'mac'), A.comm.mac);
  assert.equal(at(nic, 'owner-id'), A.ec2.accountId);
  // iam/info is JSON-decoded by cloud-init; security-credentials/ is never walked.
  assert.deepEqual(
    at(md, 'iam', 'info'),
    {
      Code: 'Success',
      LastUpdated: A.ec2.iam.lastUpdated,
      InstanceProfileArn: A.ec2.iam.instanceProfileArn,
      InstanceProfileId: A.ec2.iam.instanceProfileId,
    },
    `${what}: iam/info`,
  );
  assert.equal(at(md, 'iam', 'security-credentials'), undefined, `${what}: cloud-init must not read security-credentials`);
}

function assertClean(stdout: string, what: string): void {
  assert.deepEqual(bravoTraces(stdout), [], `${what}: the other instance's data leaked into the crawl`);
  for (const secret of [A.ec2.iam.secretAccessKey, A.ec2.iam.token])
    assert.ok(!stdout.includes(secret), `${what}: IAM secret in the crawl`);
}

test('cloud-init 22.4 (EC2 v2, EC2 v1, OpenStack) crawls metad inside a tripwired netns', async (t) => {
  const can = canUseNetns();
  if (!can.ok) {
    skipOrFail(t, can.why ?? 'netns unavailable');
    return;
  }
  const missing = cloudInitMissing();
  if (missing) {
    skipOrFail(t, missing);
    return;
  }

  let ns: Netns | undefined;
  let d: NsDaemon | undefined;
  t.after(() => teardown(ns, d));
  const net = (ns = await createNetns('metadci'));
  const daemon = (d = await startDaemonInNetns(net, { logLevel: 'trace' }));

  const crawl = async (args: string[], what: string): Promise<{ stdout: string; json: unknown; ms: number }> => {
    const started = Date.now();
    const r = await net.run(PY, [CRAWL_PY, ...args], { timeoutMs: 90_000, env: cleanEnv() });
    assertRan(r, `cloudinit_crawl.py ${args.join(' ')}`);
    assertClean(r.stdout, what);
    return { stdout: r.stdout, json: JSON.parse(r.stdout), ms: Date.now() - started };
  };

  await t.test('register two instances over the admin socket', async () => {
    let r = await daemon.admin('PUT', `/v1/instances/${A.name}`, A);
    assert.equal(r.status, 201, r.text);
    r = await daemon.admin('PUT', `/v1/instances/${BRAVO.name}`, BRAVO);
    assert.equal(r.status, 201, r.text);
    assert.equal(((await daemon.admin('GET', `/v1/instances/${A.name}`)).json as InstanceView).status.iamRole, A.ec2.iam.role);
    // Both are live: each source address gets its own instance.
    const [a, b] = await probe(net, daemon.port, [
      { path: '/latest/meta-data/instance-id' },
      { path: '/latest/meta-data/instance-id', source: BRAVO.comm.ipv4 },
    ]);
    assert.equal(a!.text, A.ec2.instanceId);
    assert.equal(b!.text, BRAVO.ec2.instanceId);
    assert.equal(await net.tripCount(), 0);
  });

  await t.test('EC2 datasource, IMDSv2 (cloud aws): token, dated version, full tree, identity, user data', async () => {
    const { json: c } = await crawl(['ec2', daemon.url], 'ec2 v2');
    const out = c as Ec2Crawl;
    assert.equal(out.cloud_init_version.split('.')[0], '22');
    assert.equal(out.mode, 'v2', 'cloud-init got a token and used it');
    assert.equal(out.cloud_name, 'aws');
    assert.equal(out.metadata_address, daemon.url);
    assert.equal(out.api_version, '2021-03-23', 'the newest version cloud-init probes is served');
    assertEc2Tree(out.metadata, 'ec2 v2');
    assert.equal(out.instance_id, A.ec2.instanceId);
    // User data: the exact bytes registered (base64 both sides), multi-byte UTF-8 included.
    assert.equal(out.userdata, A.userData);
    // dynamic/instance-identity/document, JSON-decoded by cloud-init.
    const id = out.identity!;
    assert.ok(id, 'identity document missing');
    assert.equal(id['instanceId'], A.ec2.instanceId);
    assert.equal(id['accountId'], A.ec2.accountId);
    assert.equal(id['availabilityZone'], A.ec2.availabilityZone);
    assert.equal(id['region'], ALPHA_REGION);
    assert.equal(id['privateIp'], A.comm.ipv4);
    assert.equal(id['imageId'], A.ec2.amiId);
    assert.equal(id['instanceType'], A.ec2.instanceType);
    assert.equal(id['architecture'], A.ec2.architecture);
    assert.equal(id['version'], '2017-09-30');
    assert.match(String(id['pendingTime']), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    // What cloud-init persists as instance-data.json (what user scripts and Jinja templates see).
    const v1 = out.instance_data_v1;
    assert.equal(v1['instance_id'], A.ec2.instanceId);
    assert.equal(v1['local_hostname'], A.hostname);
    assert.equal(v1['region'], ALPHA_REGION);
    assert.equal(v1['availability_zone'], A.ec2.availabilityZone);
    assert.deepEqual([...(v1['public_ssh_keys'] as string[])].sort(), Object.values(ALPHA_KEYS).sort());
    assert.deepEqual(out.warnings, []);
  });

  await t.test('EC2 datasource, IMDSv1 (cloud unknown): no token, same tree', async () => {
    const { json: c } = await crawl(['ec2', daemon.url, '--v1'], 'ec2 v1');
    const out = c as Ec2Crawl;
    assert.equal(out.mode, 'v1');
    assert.equal(out.cloud_name, 'unknown');
    assert.equal(out.api_version, '2021-03-23');
    assertEc2Tree(out.metadata, 'ec2 v1');
    assert.equal(out.userdata, A.userData);
    assert.equal(out.identity, null, 'cloud-init reads the identity document on aws only');
    assert.equal(out.instance_data_v1['instance_id'], A.ec2.instanceId);
    assert.deepEqual(out.warnings, []);
  });

  await t.test('OpenStack datasource: meta_data, user/vendor/network data, ec2-metadata', async () => {
    const { json: c } = await crawl(['openstack', daemon.url], 'openstack');
    const out = c as OpenstackCrawl;
    assert.equal(out.openstack_version, '2018-08-27', 'the newest version cloud-init knows is listed and used');
    assert.equal(out.metadata_address, daemon.url);
    assert.equal(out.dsmode, 'net');
    const md = out.metadata;
    assert.equal(md['uuid'], A.uuid);
    assert.equal(md['name'], A.name);
    assert.equal(md['hostname'], A.hostname);
    assert.equal(md['availability_zone'], A.openstack.availabilityZone);
    assert.equal(md['project_id'], A.openstack.projectId);
    assert.equal(md['launch_index'], 0);
    assert.deepEqual(md['meta'], A.openstack.meta);
    assert.deepEqual(md['public_keys'], ALPHA_KEYS);
    assert.deepEqual(
      md['keys'],
      A.publicKeys.map((k) => ({ name: k.name, type: 'ssh', data: k.key })),
    );
    assert.equal(Buffer.from(String(md['random_seed']), 'base64').length, 512, 'random_seed: 512 bytes, base64');
    assert.equal(out.instance_id, A.uuid);
    assert.equal(out.userdata, A.userData);
    assert.deepEqual(out.vendordata, A.openstack.vendorData);
    assert.deepEqual(out.vendordata2, A.openstack.vendorData2);
    assert.deepEqual(out.networkdata, A.openstack.networkData);
    assert.deepEqual(
      (out.networkdata['links'] as { id: string }[]).map((l) => l.id),
      ['tapalpha0', 'tapalpha1'],
    );
    assertEc2Tree(out['ec2-metadata'], 'openstack ec2-metadata');
    assert.equal(out.instance_data_v1['instance_id'], A.uuid);
    assert.deepEqual([...(out.instance_data_v1['public_ssh_keys'] as string[])].sort(), Object.values(ALPHA_KEYS).sort());
    assert.deepEqual(out.warnings, []);
  });

  await t.test('every name a listing shows answers 200 (cloud-init drops the whole tree otherwise)', async () => {
    // cloud-init only proves this for what it walks; this walks everything it skips too
    // (the version root, security-credentials/, dynamic/, /openstack/<v>/ listings).
    const r = await walkListings(net, daemon.port, ['/latest/', '/2021-03-23/', '/2009-04-04/'], ['latest', '2018-08-27']);
    assert.deepEqual(r.bad, [], `listed but not served: ${JSON.stringify(r.bad)}`);
    assert.ok(r.fetched > 100, `walked only ${r.fetched} paths`);
  });

  let myToken = '';
  await t.test('a token from our own PUT works, is bound to its instance, and a bad one is 401', async () => {
    const [put] = await probe(net, daemon.port, [
      { method: 'PUT', path: '/latest/api/token', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '300' } },
    ]);
    assert.equal(put!.status, 200);
    assert.equal(put!.headers['x-aws-ec2-metadata-token-ttl-seconds'], '300');
    myToken = put!.text;
    assert.ok(myToken.length >= 16, 'token body');
    const [ok, other, bad] = await probe(net, daemon.port, [
      { path: '/latest/meta-data/iam/security-credentials/', headers: { 'X-aws-ec2-metadata-token': myToken } },
      { path: '/latest/meta-data/instance-id', headers: { 'X-aws-ec2-metadata-token': myToken }, source: BRAVO.comm.ipv4 },
      { path: '/latest/meta-data/instance-id', headers: { 'X-aws-ec2-metadata-token': `${myToken.slice(0, -2)}AA` } },
    ]);
    assert.equal(ok!.status, 200);
    assert.equal(ok!.text, A.ec2.iam.role);
    assert.equal(other!.status, 401, "ALPHA's token must not work for BRAVO");
    assert.equal(bad!.status, 401);
  });

  await t.test('imdsV2: required: the v2 crawl still works, token-less reads and the v1 crawl do not', async () => {
    const r = await daemon.admin('PATCH', `/v1/instances/${A.name}`, { ec2: { imdsV2: 'required' } });
    assert.equal(r.status, 200, r.text);
    const [noToken] = await probe(net, daemon.port, [{ path: '/latest/meta-data/instance-id' }]);
    assert.equal(noToken!.status, 401, 'required is in force');

    const { json: c } = await crawl(['ec2', daemon.url], 'ec2 v2 (required)');
    const out = c as Ec2Crawl;
    assert.equal(out.mode, 'v2');
    assert.equal(out.api_version, '2021-03-23');
    assertEc2Tree(out.metadata, 'ec2 v2 (required)');
    assert.equal(out.userdata, A.userData);
    assert.equal(out.identity?.['instanceId'], A.ec2.instanceId);
    assert.deepEqual(out.warnings, []);

    // cloud-init on a non-AWS cloud never asks for a token: its readiness probe gets 401s
    // until max_wait runs out and the datasource finds nothing (exit 1).
    const v1 = await net.run(PY, [CRAWL_PY, 'ec2', daemon.url, '--v1', '--max-wait', '2', '--timeout', '1'], {
      timeoutMs: 60_000,
      env: cleanEnv(),
    });
    assert.equal(v1.code, 1, `the v1 crawl should fail against imdsV2: required: ${v1.stdout}`);
    assert.equal(v1.stdout, '');
  });

  await t.test('several NICs: the network config cloud-init derives from what metad renders (OpenStack static, EC2 DHCP)', async () => {
    // network_data.json built by metad (no verbatim networkData), three NICs besides comm.
    const r = await daemon.admin('PATCH', `/v1/instances/${A.name}`, {
      displayName: 'Alpha — display name',
      nics: MULTI_NICS,
      nameservers: ['10.0.0.53', '2001:db8::53'],
      ec2: { imdsV2: 'optional' },
      openstack: { networkData: null },
    });
    assert.equal(r.status, 200, r.text);
    const macs = [A.comm.mac, ...MULTI_NICS.map((n) => n.mac)].join(',');

    const os = (await crawl(['openstack', daemon.url, '--guest-macs', macs], 'openstack nics')).json as OpenstackCrawl & NetworkOutputs;
    assert.equal(os.metadata['name'], 'Alpha — display name');
    // What Debian's cloud-init writes to /etc/network/interfaces.d/50-cloud-init: every NIC
    // statically with its own prefix (the comm NIC's from commRange 127.0.0.0/8), gateways as
    // default routes, the DHCP NIC by DHCP, the nameservers.
    assert.equal(
      os.network_eni,
      [
        'auto lo',
        'iface lo inet loopback',
        '    dns-nameservers 10.0.0.53 2001:db8::53',
        '',
        'auto eth0',
        'iface eth0 inet static',
        '    address 127.0.0.1/8',
        '    mtu 1500',
        '',
        'auto eth1',
        'iface eth1 inet static',
        '    address 10.0.0.17/24',
        '    mtu 9000',
        '    post-up route add default gw 10.0.0.1 || true',
        '    pre-down route del default gw 10.0.0.1 || true',
        '',
        '# control-alias eth1',
        'iface eth1 inet static',
        '    address 10.0.0.18/24',
        '',
        '# control-alias eth1',
        'iface eth1 inet6 static',
        '    address 2001:db8:0:1::17/64',
        '    post-up route add -A inet6 default gw 2001:db8:0:1::1 || true',
        '    pre-down route del -A inet6 default gw 2001:db8:0:1::1 || true',
        '',
        'auto eth2',
        'iface eth2 inet static',
        '    address 192.168.50.3/28',
        '    mtu 1500',
        '',
        'auto eth3',
        'iface eth3 inet dhcp',
        '    mtu 1500',
        '',
      ].join('\n'),
    );
    assert.deepEqual(os.warnings, []);

    const ec2 = (await crawl(['ec2', daemon.url, '--guest-macs', macs], 'ec2 nics')).json as Ec2Crawl & NetworkOutputs;
    // EC2 semantics: every listed NIC by DHCP, metric by device-number, IPv6 by DHCPv6 where the
    // NIC has IPv6 addresses, second and later addresses statically with the subnet's prefix.
    assert.equal(
      ec2.network_eni,
      [
        'auto lo',
        'iface lo inet loopback',
        '',
        'auto eth0',
        'iface eth0 inet dhcp',
        '    metric 100',
        '',
        'auto eth1',
        'iface eth1 inet dhcp',
        '    metric 200',
        '',
        '# control-alias eth1',
        'iface eth1 inet6 dhcp',
        '    metric 200',
        '',
        '# control-alias eth1',
        'iface eth1 inet static',
        '    address 10.0.0.18/24',
        '',
        'auto eth2',
        'iface eth2 inet dhcp',
        '    metric 300',
        '',
        'auto eth3',
        'iface eth3 inet dhcp',
        '    metric 400',
        '',
      ].join('\n'),
    );
    assert.deepEqual(ec2.warnings, []);
  });

  await t.test('nothing tried to leave loopback; the daemon log holds no token or credential', async () => {
    assert.equal(await net.tripCount(), 0, `tripwire: ${JSON.stringify(await net.tripDestinations())}`);
    assert.equal(await daemon.stop(), 0, 'clean SIGTERM exit');
    const log = daemon.log();
    assert.match(log, /metad started/);
    assert.match(log, /guest request refused/, 'the 401s above were logged (log level trace is on)');
    assert.ok(myToken && !log.includes(myToken), 'an IMDSv2 token appears in the daemon log');
    for (const secret of [A.ec2.iam.secretAccessKey, A.ec2.iam.token, BRAVO.ec2.iam.secretAccessKey, BRAVO.ec2.iam.token]) {
      assert.ok(!log.includes(secret), `IAM secret ${secret.slice(0, 8)}… in the daemon log`);
    }
  });
});
