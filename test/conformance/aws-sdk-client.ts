/**
 * A guest program using the AWS SDK for JavaScript v3, unmodified, against metad. Spawned by
 * aws-sdk.test.ts inside the tripwired network namespace (`ip netns exec NS node
 * dist/test/conformance/aws-sdk-client.js '{"endpoint":"http://127.0.0.1:PORT"}'`); prints one
 * JSON document on stdout: what each call returned (or how it failed), every HTTP request the
 * SDK made (seen through node's `http.client.request.start` diagnostics channel, so nothing in
 * the SDK is patched), and the IMDSv2 tokens it used.
 *
 * - `@aws-sdk/ec2-metadata-service` `MetadataService`: endpoint given as an option, or taken from
 *   AWS_EC2_METADATA_SERVICE_ENDPOINT; IMDSv2 (a fresh token per request, the default), IMDSv1
 *   (`disableFetchToken`), and `ec2MetadataV1Disabled`.
 * - `fromInstanceMetadata()` from `@smithy/credential-provider-imds` (what SDK v3 uses today)
 *   and from `@aws-sdk/credential-provider-imds` (the older package name, frozen at 3.374.0,
 *   which re-exports @smithy/credential-provider-imds 1.x): endpoint from the environment.
 *
 * The caller sets the environment (endpoint, AWS_EC2_METADATA_V1_DISABLED, no config files, no
 * proxies). This program refuses to run against anything but loopback.
 */
import diagnostics from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { fromInstanceMetadata } from '@smithy/credential-provider-imds';
import { fromInstanceMetadata as legacyFromInstanceMetadata } from '@aws-sdk/credential-provider-imds';

export interface StepResult {
  ok: boolean;
  /** How long the call took. */
  ms: number;
  value?: unknown;
  error?: string;
  status?: number;
}

export interface SeenRequest {
  method: string;
  path: string;
  host: string;
  token: boolean;
  ttl: string | null;
}

export interface ClientOutput {
  node: string;
  env: { endpoint: string | null; v1Disabled: string | null };
  steps: Record<string, StepResult>;
  requests: SeenRequest[];
  tokens: string[];
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

function die(msg: string): never {
  process.stderr.write(`aws-sdk-client: ${msg}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const arg = JSON.parse(process.argv[2] ?? '{}') as { endpoint?: string };
  const endpoint = arg.endpoint ?? die('usage: aws-sdk-client.js \'{"endpoint":"http://127.0.0.1:PORT"}\'');
  const envEndpoint = process.env['AWS_EC2_METADATA_SERVICE_ENDPOINT'];
  for (const u of [endpoint, envEndpoint]) {
    if (u === undefined || !LOOPBACK.has(new URL(u).hostname)) die(`refusing non-loopback endpoint ${String(u)}`);
  }

  const requests: SeenRequest[] = [];
  const tokens = new Set<string>();
  diagnostics.subscribe('http.client.request.start', (msg) => {
    const req = (msg as { request: ClientRequest }).request;
    const token = req.getHeader('x-aws-ec2-metadata-token');
    if (typeof token === 'string') tokens.add(token);
    const ttl = req.getHeader('x-aws-ec2-metadata-token-ttl-seconds');
    requests.push({
      method: req.method,
      path: req.path,
      host: String(req.getHeader('host') ?? req.host),
      token: token !== undefined,
      ttl: ttl === undefined ? null : String(ttl),
    });
  });

  const steps: Record<string, StepResult> = {};
  const step = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
    const started = Date.now();
    try {
      const v = await fn();
      steps[name] = { ok: true, ms: Date.now() - started, value: v };
    } catch (err) {
      const e = err as { message?: string; statusCode?: number; $metadata?: { httpStatusCode?: number } };
      const status = e.$metadata?.httpStatusCode ?? e.statusCode;
      steps[name] = { ok: false, ms: Date.now() - started, error: String(e.message ?? err), ...(status !== undefined ? { status } : {}) };
    }
  };
  const opts = { endpoint, httpOptions: { timeout: 3000 }, retries: 0 };

  // IMDSv2, the default: PUT /latest/api/token before every GET.
  const ms = new MetadataService(opts);
  await step('ms.instanceId', () => ms.request('/latest/meta-data/instance-id', {}));
  await step('ms.region', () => ms.request('/latest/meta-data/placement/region', {}));
  await step('ms.availabilityZone', () => ms.request('/latest/meta-data/placement/availability-zone', {}));
  await step('ms.userData', () => ms.request('/latest/user-data', {}));
  await step('ms.publicKey0', () => ms.request('/latest/meta-data/public-keys/0/openssh-key', {}));
  await step('ms.tagName', () => ms.request('/latest/meta-data/tags/instance/Name', {}));
  await step('ms.metaDataListing', () => ms.request('/latest/meta-data/', {}));
  await step('ms.identity', () => ms.request('/latest/dynamic/instance-identity/document', {}));
  await step('ms.missing', () => ms.request('/latest/meta-data/no-such-thing', {}));
  await step('ms.token', () => ms.fetchMetadataToken());
  // Endpoint from AWS_EC2_METADATA_SERVICE_ENDPOINT (no option).
  const msEnv = new MetadataService({ httpOptions: { timeout: 3000 }, retries: 0 });
  await step('msEnv.instanceId', () => msEnv.request('/latest/meta-data/instance-id', {}));
  // IMDSv1: no token at all (fails locally when AWS_EC2_METADATA_V1_DISABLED is set).
  const msV1 = new MetadataService({ ...opts, disableFetchToken: true });
  await step('msV1.instanceId', () => msV1.request('/latest/meta-data/instance-id', {}));
  // v1 fallback forbidden by option: tokens must work.
  const msNoV1 = new MetadataService({ ...opts, ec2MetadataV1Disabled: true });
  await step('msNoV1.instanceId', () => msNoV1.request('/latest/meta-data/instance-id', {}));
  await step('msNoV1.userData', () => msNoV1.request('/latest/user-data', {}));

  const creds = async (p: () => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date }>) => {
    const c = await p();
    return {
      accessKeyId: c.accessKeyId,
      secretAccessKey: c.secretAccessKey,
      sessionToken: c.sessionToken ?? null,
      expiration: c.expiration?.toISOString() ?? null,
    };
  };
  await step('creds', () => creds(fromInstanceMetadata({ timeout: 3000, maxRetries: 0 })));
  await step('credsNoV1', () => creds(fromInstanceMetadata({ timeout: 3000, maxRetries: 0, ec2MetadataV1Disabled: true })));
  await step('credsLegacy', () => creds(legacyFromInstanceMetadata({ timeout: 3000, maxRetries: 0 })));

  const out: ClientOutput = {
    node: process.version,
    env: { endpoint: envEndpoint ?? null, v1Disabled: process.env['AWS_EC2_METADATA_V1_DISABLED'] ?? null },
    steps,
    requests,
    tokens: [...tokens],
  };
  // The SDK's keep-alive agents would hold the process until the server closes them (5 s).
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`, () => process.exit(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`aws-sdk-client: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
