/**
 * The AWS SDK for JavaScript v3, unmodified (`@aws-sdk/ec2-metadata-service` MetadataService,
 * `fromInstanceMetadata()` from `@smithy/credential-provider-imds` and from the older
 * `@aws-sdk/credential-provider-imds`), run by aws-sdk-client.ts as a guest program inside a
 * tripwired network namespace against the real `metad serve` process on 127.0.0.1. The SDK's
 * `//latest/...` requests (doubled slash), IMDSv2 tokens, IMDSv1, `imdsV2: required` and
 * AWS_EC2_METADATA_V1_DISABLED are exercised; nothing may try to reach 169.254.169.254.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { InstanceView } from '../../cli/api-types.js';
import { canUseNetns, createNetns, skipOrFail, type Netns } from '../support/netns.js';
import type { ClientOutput, StepResult } from './aws-sdk-client.js';
import { ALPHA, BRAVO, bravoTraces, USER_DATA_TEXT } from './instances.js';
import { assertRan, cleanEnv, startDaemonInNetns, teardown, type NsDaemon } from './harness.js';

const CLIENT = fileURLToPath(new URL('./aws-sdk-client.js', import.meta.url));
const A = ALPHA;

function value(o: ClientOutput, name: string): unknown {
  const s: StepResult | undefined = o.steps[name];
  assert.ok(s, `step ${name} did not run`);
  assert.ok(s.ok, `${name} failed: ${s.error ?? ''} (status ${s.status ?? '-'}) [v1Disabled=${o.env.v1Disabled}]`);
  return s.value;
}

const EXPECTED_CREDS = {
  accessKeyId: A.ec2.iam.accessKeyId,
  secretAccessKey: A.ec2.iam.secretAccessKey,
  sessionToken: A.ec2.iam.token,
  expiration: new Date(A.ec2.iam.expiration).toISOString(),
};

/** What must hold in every environment variant, optional or required. */
function assertV2Works(o: ClientOutput, port: number): void {
  assert.equal(value(o, 'ms.instanceId'), A.ec2.instanceId);
  assert.equal(value(o, 'ms.region'), 'eu-alpha-1');
  assert.equal(value(o, 'ms.availabilityZone'), A.ec2.availabilityZone);
  assert.equal(value(o, 'ms.userData'), USER_DATA_TEXT, 'user data round-trips (UTF-8 text)');
  assert.equal(value(o, 'ms.publicKey0'), A.publicKeys[0]!.key);
  assert.equal(value(o, 'ms.tagName'), A.ec2.tags.Name);
  const listing = String(value(o, 'ms.metaDataListing')).split('\n');
  for (const name of ['instance-id', 'local-ipv4', 'placement/', 'public-keys/', 'iam/', 'tags/'])
    assert.ok(listing.includes(name), `meta-data/ lists ${name}`);
  const id = JSON.parse(String(value(o, 'ms.identity'))) as Record<string, unknown>;
  assert.equal(id['instanceId'], A.ec2.instanceId);
  assert.equal(id['accountId'], A.ec2.accountId);
  assert.equal(id['privateIp'], A.comm.ipv4);
  // A 404 is not retried and not turned into a value.
  const missing = o.steps['ms.missing']!;
  assert.equal(missing.ok, false);
  assert.equal(missing.status, 404);
  assert.match(String(value(o, 'ms.token')), /^[A-Za-z0-9_-]{16,64}$/);
  assert.equal(value(o, 'msEnv.instanceId'), A.ec2.instanceId, 'endpoint from AWS_EC2_METADATA_SERVICE_ENDPOINT');
  assert.equal(value(o, 'msNoV1.instanceId'), A.ec2.instanceId);
  assert.equal(value(o, 'msNoV1.userData'), USER_DATA_TEXT);
  for (const name of ['creds', 'credsNoV1', 'credsLegacy']) assert.deepEqual(value(o, name), EXPECTED_CREDS, name);

  // On the wire: every request went to the daemon on loopback.
  const host = `127.0.0.1:${port}`;
  for (const r of o.requests) assert.equal(r.host, host, `request ${r.method} ${r.path} went to ${r.host}`);
  const paths = o.requests.map((r) => `${r.method} ${r.path}`);
  // MetadataService: the doubled leading slash, answered directly (it follows no redirects).
  assert.ok(paths.includes('GET //latest/meta-data/instance-id'), `no //latest request: ${paths.join(', ')}`);
  assert.ok(paths.includes('GET //latest/user-data'));
  // Token PUTs carry the TTL header; every token-carrying GET succeeded above.
  const puts = o.requests.filter((r) => r.method === 'PUT');
  assert.ok(puts.length >= 10, `token PUTs: ${puts.length}`);
  for (const p of puts) {
    assert.equal(p.path, '/latest/api/token');
    assert.equal(p.ttl, '21600');
  }
  // The credential provider: single slashes, role list then the role, with a token.
  for (const p of ['/latest/meta-data/iam/security-credentials/', `/latest/meta-data/iam/security-credentials/${A.ec2.iam.role}`]) {
    const seen = o.requests.filter((r) => r.method === 'GET' && r.path === p);
    assert.ok(seen.length >= 3, `${p}: ${seen.length} requests`);
    assert.ok(
      seen.every((r) => r.token),
      `${p} sent without a token`,
    );
  }
  assert.ok(o.tokens.length >= 10, 'tokens were used');
}

test('AWS SDK for JavaScript v3 (MetadataService, fromInstanceMetadata) against metad in a tripwired netns', async (t) => {
  const can = canUseNetns();
  if (!can.ok) {
    skipOrFail(t, can.why ?? 'netns unavailable');
    return;
  }

  let ns: Netns | undefined;
  let d: NsDaemon | undefined;
  t.after(() => teardown(ns, d));
  const net = (ns = await createNetns('metadsdk'));
  const daemon = (d = await startDaemonInNetns(net, { logLevel: 'trace' }));
  const home = join(daemon.dir, 'home');
  mkdirSync(home);
  const tokens = new Set<string>();

  const run = async (extra: Record<string, string>): Promise<ClientOutput> => {
    const env = cleanEnv({
      HOME: home,
      // No ~/.aws, no profile: nothing but this environment configures the SDK.
      AWS_CONFIG_FILE: join(home, 'no-such-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(home, 'no-such-credentials'),
      AWS_EC2_METADATA_SERVICE_ENDPOINT: daemon.url,
      AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: 'IPv4',
      ...extra,
    });
    const r = await net.run(process.execPath, [CLIENT, JSON.stringify({ endpoint: daemon.url })], { timeoutMs: 60_000, env });
    assertRan(r, `aws-sdk-client ${JSON.stringify(extra)}`);
    assert.deepEqual(bravoTraces(r.stdout), [], 'the other instance leaked into the SDK results');
    const out = JSON.parse(r.stdout) as ClientOutput;
    for (const tok of out.tokens) tokens.add(tok);
    return out;
  };

  await t.test('register two instances', async () => {
    assert.equal((await daemon.admin('PUT', `/v1/instances/${A.name}`, A)).status, 201);
    assert.equal((await daemon.admin('PUT', `/v1/instances/${BRAVO.name}`, BRAVO)).status, 201);
  });

  for (const v1Disabled of [undefined, 'false', 'true']) {
    await t.test(`imdsV2 optional, AWS_EC2_METADATA_V1_DISABLED=${v1Disabled ?? '(unset)'}`, async () => {
      const o = await run(v1Disabled === undefined ? {} : { AWS_EC2_METADATA_V1_DISABLED: v1Disabled });
      assert.equal(o.env.v1Disabled, v1Disabled ?? null);
      assertV2Works(o, daemon.port);
      const v1 = o.steps['msV1.instanceId']!;
      if (v1Disabled === 'true') {
        // The SDK refuses locally: no token and no v1.
        assert.equal(v1.ok, false);
        assert.match(String(v1.error), /IMDSv1 is disabled/);
      } else {
        assert.equal(value(o, 'msV1.instanceId'), A.ec2.instanceId, 'IMDSv1 (no token) works on an optional instance');
        assert.ok(
          o.requests.some((r) => r.method === 'GET' && r.path === '//latest/meta-data/instance-id' && !r.token),
          'a token-less GET was made',
        );
      }
    });
  }

  await t.test('imdsV2: required', async (st) => {
    const r = await daemon.admin('PATCH', `/v1/instances/${A.name}`, { ec2: { imdsV2: 'required' } });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as InstanceView).status.iamRole, A.ec2.iam.role, 'the PATCH kept the IAM role');
    for (const v1Disabled of [undefined, 'true']) {
      await st.test(`AWS_EC2_METADATA_V1_DISABLED=${v1Disabled ?? '(unset)'}`, async () => {
        const o = await run(v1Disabled === undefined ? {} : { AWS_EC2_METADATA_V1_DISABLED: v1Disabled });
        assertV2Works(o, daemon.port);
        const v1 = o.steps['msV1.instanceId']!;
        assert.equal(v1.ok, false, 'IMDSv1 must fail on a required instance');
        if (v1Disabled === 'true') assert.match(String(v1.error), /IMDSv1 is disabled/);
        else assert.equal(v1.status, 401);
      });
    }
  });

  await t.test('nothing tried to leave loopback; no token or credential in the daemon log', async () => {
    assert.equal(await net.tripCount(), 0, `tripwire: ${JSON.stringify(await net.tripDestinations())}`);
    assert.equal(await daemon.stop(), 0, 'clean SIGTERM exit');
    const log = daemon.log();
    assert.match(log, /metad started/);
    assert.ok(tokens.size >= 20, `tokens collected: ${tokens.size}`);
    for (const tok of tokens) assert.ok(!log.includes(tok), 'an IMDSv2 token the SDK used is in the daemon log');
    for (const secret of [A.ec2.iam.secretAccessKey, A.ec2.iam.token]) assert.ok(!log.includes(secret), 'IAM secret in the daemon log');
  });
});
