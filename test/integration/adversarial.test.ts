/**
 * Adversarial tests: each one tries to break a security promise of the guest or admin door and
 * asserts that the attack fails, then that the daemon still serves a normal request. Guests are
 * loopback source addresses (127.0.0.x); raw sockets send exact bytes where an HTTP client would
 * normalise them. Only loopback traffic; every loop and wait is bounded.
 *
 * A test here that fails is a real bug (see the comment above it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startInstall, startTestDaemon, sampleInstance, type Reply, type TestDaemon } from '../support/daemon.js';
import type { InstanceView, ParamsView } from '../../cli/api-types.js';
import type { InstanceInput } from '../../daemon/registry/model.js';
import type { OsParameters } from '../../routes/render/ganeti.js';
import { FakeClock } from '../fakes/fake-clock.js';
import { until, settled } from '../support/wait.js';

const VM1 = '127.0.0.2'; // the victim: full of canaries
const VM2 = '127.0.0.3'; // the attacker
const WITNESS = '127.0.0.10'; // sampleInstance(9): used only to prove the daemon still serves
const UNKNOWN = '127.0.0.99';
const CANARY = /canary-a/i;
const UUID1 = sampleInstance(1).uuid as string;
const UUID2 = sampleInstance(2).uuid as string;
const NEW_UUID = '11111111-1111-4111-8111-111111111111';
const TOKEN = 'X-aws-ec2-metadata-token';
const TTL = 'X-aws-ec2-metadata-token-ttl-seconds';
const OCTET = { 'content-type': 'application/octet-stream' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** vm1 with a canary in every place a guest could read. */
function victim(extra: Record<string, unknown> = {}): ReturnType<typeof sampleInstance> {
  return sampleInstance(1, {
    hostname: 'canary-a-host',
    userData: Buffer.from('#!/bin/sh\necho CANARY-A-USERDATA\n').toString('base64'),
    publicKeys: [{ name: 'canary-a-key', key: 'ssh-ed25519 AAAA CANARY-A-KEY' }],
    ec2: {
      exposeTags: true,
      tags: { t: 'CANARY-A-TAG' },
      iam: {
        role: 'role-a',
        accessKeyId: 'AKIA-CANARY-A',
        secretAccessKey: 'CANARY-A-IAM',
        token: 'CANARY-A-IAMTOKEN',
        expiration: '2030-01-01T00:00:00Z',
      },
    },
    openstack: { meta: { m: 'CANARY-A-META' }, vendorData: { v: 'CANARY-A-VENDOR' } },
    params: { public: { pa: 'CANARY-A-PUB' }, private: { pk: 'CANARY-A-PRIV' } },
    ...extra,
  });
}

/** Register vm1 (victim, with secret, password and pipe data), vm2 and the witness vm9. */
async function setup(d: TestDaemon, vm2Extra: Record<string, unknown> = {}): Promise<void> {
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', victim())).status, 201);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { sa: 'CANARY-A-SECRET' } })).status, 200);
  assert.equal(
    (await d.admin('PUT', '/v1/instances/vm2', sampleInstance(2, { params: { private: { k2: 'vm2-private' } }, ...vm2Extra }))).status,
    201,
  );
  assert.equal((await d.admin('PUT', '/v1/instances/vm9', sampleInstance(9))).status, 201);
  await d.daemon.services.store.setPassword('vm1', 'CANARY-A-PASSWORD', true);
  assert.equal((await d.admin('POST', '/v1/instances/vm1/pipe', 'CANARY-A-PIPE', OCTET)).status, 202);
}

/** The daemon still answers a normal admin and a normal guest request. */
async function stillServes(d: TestDaemon, what: string): Promise<void> {
  const h = await d.admin('GET', '/v1/health');
  assert.equal(h.status, 200, `${what}: the admin door still answers`);
  const g = await d.guest(WITNESS, 'GET', '/latest/meta-data/hostname');
  assert.equal(g.status, 200, `${what}: the guest door still answers`);
  assert.equal(g.text, 'vm9', `${what}: the guest door still answers correctly`);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over TCP (guest door) and over the unix socket (admin door).

interface RawResult {
  data: Buffer;
  /** The server closed (or reset) the connection. */
  closed: boolean;
}

interface RawOptions {
  /** Finish this long after the last byte received (or the last write). */
  idleMs?: number;
  /** Hard bound on the whole exchange. */
  maxMs?: number;
}

/** Send exact bytes from a chosen source address; collect what comes back. Bounded. */
function raw(port: number, from: string, payload: string | Buffer | (string | Buffer)[], o: RawOptions = {}): Promise<RawResult> {
  const idleMs = o.idleMs ?? 400;
  const maxMs = o.maxMs ?? 5000;
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closed = false;
    let done = false;
    let idle: NodeJS.Timeout | undefined;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      clearTimeout(hard);
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const arm = (): void => {
      clearTimeout(idle);
      idle = setTimeout(finish, idleMs);
    };
    const hard = setTimeout(finish, maxMs);
    s.on('data', (c: Buffer) => {
      chunks.push(c);
      arm();
    });
    s.on('end', () => {
      closed = true;
      finish();
    });
    s.on('close', () => {
      closed = true;
      finish();
    });
    s.on('error', () => {
      closed = true;
      finish();
    });
    s.on('connect', () => {
      const parts = Array.isArray(payload) ? payload : [payload];
      for (const p of parts) if (!s.destroyed) s.write(p, () => undefined);
      arm();
    });
  });
}

interface Resp {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Split a byte stream into HTTP/1.x responses (Content-Length or chunked; no HEAD answers). */
function parseResponses(buf: Buffer): Resp[] {
  const out: Resp[] = [];
  let at = 0;
  for (let guard = 0; guard < 1000 && at < buf.length; guard++) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) break;
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    let pos = end + 4;
    let body: Buffer = Buffer.alloc(0);
    if (status >= 100 && status < 200) {
      // no body
    } else if ((headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked') {
      const parts: Buffer[] = [];
      for (let g2 = 0; g2 < 10_000; g2++) {
        const le = buf.indexOf('\r\n', pos);
        if (le === -1) break;
        const size = parseInt(buf.subarray(pos, le).toString('latin1'), 16);
        pos = le + 2;
        if (!Number.isFinite(size) || size === 0) {
          pos += 2;
          break;
        }
        parts.push(buf.subarray(pos, pos + size));
        pos += size + 2;
      }
      body = Buffer.concat(parts);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = buf.subarray(pos, pos + n);
      pos += n;
    } else {
      body = buf.subarray(pos);
      pos = buf.length;
    }
    out.push({ status, headers, body });
    at = pos;
  }
  return out;
}

function request(
  method: string,
  target: string,
  headers: Record<string, string> = { Host: '169.254.169.254' },
  body = '',
  version = 'HTTP/1.1',
): string {
  const h = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `${method} ${target} ${version}\r\n${h}\r\n${body}`;
}

/** Whatever came back must not contain anything of vm1. */
function assertNoVictimData(r: RawResult | { data: Buffer }, what: string): void {
  const text = r.data.toString('latin1');
  assert.ok(!CANARY.test(text), `${what}: leaked vm1 data: ${text.slice(0, 300)}`);
  assert.ok(!text.includes(UUID1), `${what}: leaked vm1's uuid`);
}

/** An admin request whose body arrives only when `finish()` is called (unix socket). */
async function slowAdmin(d: TestDaemon, method: string, path: string, type: string, body: string, firstBytes: number) {
  const s = net.connect(d.config.admin.socket);
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write(
    `${method} ${path} HTTP/1.1\r\nHost: metad\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, firstBytes)}`,
  );
  await sleep(100); // the daemon is now parked reading the body
  return {
    socket: s,
    /** The rest of the body; resolves with the answer once it has arrived (whatever checks follow come after it). */
    async finish(): Promise<Resp[]> {
      s.write(body.slice(firstBytes));
      const answers = await until('the slow request answered', () => {
        const r = parseResponses(Buffer.concat(chunks));
        return r.length > 0 && r;
      });
      s.destroy();
      return answers;
    },
  };
}

// =============================================================================================
// Isolation: request targets, Host and proxy headers

/** An admin answer read as an instance view (GET /v1/instances/{name}). */
function asView(r: Reply): InstanceView {
  return r.json as InstanceView;
}

/** An admin answer read as a params view (GET /v1/instances/{name}/params). */
function asParams(r: Reply): ParamsView {
  return r.json as ParamsView;
}

/** The uuid field of a JSON document (EC2 identity, OpenStack or Ganeti meta_data.json). */
function uuidIn(text: string): string {
  return (JSON.parse(text) as { uuid: string }).uuid;
}

test('adversarial: no request-target trick reaches another instance (.., %2e%2e, //, backslashes, absolute-form, *)', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const port = d.guestPort;
  const targets = [
    '/latest/meta-data/hostname',
    '/latest/meta-data/../../latest/meta-data/hostname',
    '/latest/meta-data/%2e%2e/%2e%2e/latest/meta-data/hostname',
    '/%2e%2e/%2e%2e/latest/meta-data/hostname',
    '/%2E%2E%2F%2E%2E%2Flatest/meta-data/hostname',
    '/latest/meta-data/hostname/..%2f..%2fvm1',
    '/latest/meta-data/./hostname',
    '/./latest/meta-data/hostname',
    '//latest/meta-data/hostname',
    '///latest//meta-data///hostname',
    '//127.0.0.2/latest/meta-data/hostname',
    '/127.0.0.2/latest/meta-data/hostname',
    '/vm1/latest/meta-data/hostname',
    '/latest/meta-data/hostname?instance=vm1&ip=127.0.0.2',
    '/latest/meta-data/hostname#vm1',
    '/latest/meta-data/hostname;vm1',
    '/latest/meta-data/%68ostname',
    '/openstack/../latest/meta-data/hostname',
    '/openstack/latest/../../ganeti/latest/os/parameters.json',
    '/ganeti/latest/os/../../../openstack/latest/meta_data.json',
    '/ganeti/latest/os/scripts/..%2f..%2f..%2fetc%2fpasswd',
    '/latest/meta-data/%5c..%5chostname',
    '\\latest\\meta-data\\hostname',
    '/latest\\meta-data\\hostname',
    '/\\127.0.0.2/latest/meta-data/hostname',
    'http://127.0.0.2/latest/meta-data/hostname',
    'http://127.0.0.2/openstack/latest/meta_data.json',
    'http://127.0.0.2/ganeti/latest/os/parameters.json',
    'http://vm1/latest/user-data',
    'HTTP://127.0.0.2:80//latest/meta-data/iam/security-credentials/role-a',
    'http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key',
    '*',
    '/latest/meta-data/iam/security-credentials/role-a',
    '/latest/meta-data/iam/info',
    '/latest/meta-data/tags/instance/t',
    '/latest/meta-data/public-keys/0/openssh-key',
    '/latest/user-data',
    '/latest/dynamic/instance-identity/document',
    '/openstack/latest/meta_data.json',
    '/openstack/latest/user_data',
    '/openstack/latest/vendor_data.json',
    '/openstack/latest/password',
    '/ganeti/latest/meta_data.json',
    '/ganeti/latest/os/parameters.json',
    '/ganeti/latest/read',
  ];
  // The victim reads every target first, so anything cacheable is in vm1's cache.
  for (const target of targets)
    await raw(port, VM1, request('GET', target, { Host: '169.254.169.254', Connection: 'close' }), { idleMs: 200 });
  // vm1 consumed its pipe above; queue the canary again for the "not consumed" check below.
  await d.admin('POST', '/v1/instances/vm1/pipe', 'CANARY-A-PIPE', OCTET);

  for (const from of [VM2, UNKNOWN]) {
    for (const method of ['GET', 'HEAD', 'OPTIONS']) {
      for (const target of targets) {
        const r = await raw(port, from, request(method, target, { Host: '127.0.0.2', Connection: 'close' }), { idleMs: 200 });
        assertNoVictimData(r, `${method} ${target} from ${from}`);
        if (from === UNKNOWN) {
          for (const resp of parseResponses(r.data))
            assert.ok([400, 404].includes(resp.status), `${method} ${target} from an unknown source: ${resp.status}`);
        }
      }
    }
    await stillServes(d, `path tricks from ${from}`);
  }
  const r = await raw(port, VM2, request('OPTIONS', '*', { Host: 'x', Connection: 'close' }));
  assertNoVictimData(r, 'OPTIONS *');
  const c = await raw(port, VM2, request('CONNECT', '127.0.0.2:80', { Host: '127.0.0.2:80' }));
  assertNoVictimData(c, 'CONNECT');
  // Sanity: the attacker's normal and doubled-slash reads are its own.
  assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/hostname')).text, 'vm2');
  assert.equal((await d.guest(VM2, 'GET', '//latest/meta-data/hostname')).text, 'vm2');
  // The victim's pipe was not consumed by the attacker's reads.
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, 'CANARY-A-PIPE');
  await stillServes(d, 'after path tricks');
});

test('adversarial: Host and proxy headers never change who is asking, on every dialect', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const spoofs: Record<string, string>[] = [
    { Host: '127.0.0.2' },
    { Host: 'vm1' },
    { Host: 'canary-a-host' },
    { Host: '127.0.0.2:80' },
    { 'X-Forwarded-For': VM1 },
    { 'X-Forwarded-For': `${VM1}, ${VM2}` },
    { 'X-Forwarded-For': `${VM2}, ${VM1}` },
    { Forwarded: `for=${VM1}` },
    { Forwarded: `for="${VM1}:80";proto=http;by=${VM1}` },
    { 'X-Real-IP': VM1 },
    { Via: `1.1 ${VM1}` },
    { 'X-Client-IP': VM1 },
    { 'True-Client-IP': VM1 },
    { 'X-Originating-IP': VM1 },
    { 'X-Forwarded-Host': '127.0.0.2' },
    { 'X-Remote-Addr': VM1 },
    { 'CF-Connecting-IP': VM1 },
    { 'X-Forwarded-For': VM1, Forwarded: `for=${VM1}`, 'X-Real-IP': VM1, Via: `1.1 ${VM1}`, Host: '127.0.0.2' },
  ];
  const reads: [string, (body: string) => void][] = [
    ['/latest/meta-data/hostname', (b) => assert.equal(b, 'vm2')],
    ['//latest/meta-data/local-ipv4', (b) => assert.equal(b, VM2)],
    ['/latest/dynamic/instance-identity/document', (b) => assert.equal((JSON.parse(b) as { privateIp: string }).privateIp, VM2)],
    ['/openstack/latest/meta_data.json', (b) => assert.equal(uuidIn(b), UUID2)],
    ['/openstack/latest/password', (b) => assert.equal(b, '')],
    ['/ganeti/latest/meta_data.json', (b) => assert.equal(uuidIn(b), UUID2)],
    ['/ganeti/latest/os/parameters.json', (b) => assert.deepEqual(JSON.parse(b), { k2: ['vm2-private', 'private'] })],
    ['/ganeti/latest/read', (b) => assert.equal(b, '')],
  ];
  for (const h of spoofs) {
    for (const [path, check] of reads) {
      const r = await d.guest(VM2, 'GET', path, h);
      assert.equal(r.status, 200, `${path} ${JSON.stringify(h)}`);
      assert.ok(!CANARY.test(r.text) && !r.text.includes(UUID1), `${path} with ${JSON.stringify(h)} leaked vm1 data`);
      check(r.text);
    }
  }
  await stillServes(d, 'after proxy headers');

  // Token PUTs: X-Forwarded-For in any spelling is refused; other proxy headers may get a token,
  // but it is bound to the asker (vm2) and useless to vm1.
  const xffs = [
    'X-Forwarded-For: 1.2.3.4',
    'x-forwarded-for: 127.0.0.2',
    'X-FORWARDED-FOR:127.0.0.2',
    'X-Forwarded-For: ',
    'X-Forwarded-For: a\r\nX-Forwarded-For: b',
  ];
  for (const x of xffs) {
    const r = await raw(d.guestPort, VM2, `PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n${TTL}: 60\r\n${x}\r\nConnection: close\r\n\r\n`);
    const [resp] = parseResponses(r.data);
    assert.equal(resp?.status, 403, `token PUT with ${JSON.stringify(x)}`);
  }
  for (const h of spoofs.filter((s) => !('X-Forwarded-For' in s))) {
    const r = await d.guest(VM2, 'PUT', '/latest/api/token', { [TTL]: '60', ...h });
    assert.ok([200, 403].includes(r.status), `token PUT with ${JSON.stringify(h)}: ${r.status}`);
    if (r.status !== 200) continue;
    assert.equal(
      (await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: r.text })).status,
      401,
      `a token asked with ${JSON.stringify(h)} is not vm1's`,
    );
    assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/hostname', { [TOKEN]: r.text })).text, 'vm2');
  }
  await stillServes(d, 'after token PUTs with proxy headers');
});

// =============================================================================================
// Connection-level tricks: pipelining, HTTP/1.0, bodies, smuggling, huge headers

test("adversarial: pipelining, HTTP/1.0 and GET bodies answer only as the connection's own instance", async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const port = d.guestPort;

  // Two (and three) requests on one keep-alive connection.
  let r = await raw(port, VM2, request('GET', '/latest/meta-data/hostname') + request('GET', '/openstack/latest/meta_data.json'));
  let rs = parseResponses(r.data);
  assert.equal(rs.length, 2);
  assert.equal(rs[0]!.body.toString(), 'vm2');
  assert.equal(uuidIn(rs[1]!.body.toString()), UUID2);
  assertNoVictimData(r, 'pipelined pair');

  r = await raw(port, VM2, [
    request('GET', '//latest/meta-data/hostname'),
    request('PUT', '/latest/api/token', { Host: 'x', [TTL]: '60', 'Content-Length': '0' }),
    request('GET', '/ganeti/latest/os/parameters.json'),
    request('GET', 'http://127.0.0.2/latest/meta-data/hostname'),
    request('GET', '/latest/meta-data/hostname', { Host: '127.0.0.2', Connection: 'close' }),
  ]);
  rs = parseResponses(r.data);
  assert.deepEqual(
    rs.map((x) => x.status),
    [200, 200, 200, 404, 200],
  );
  assert.equal(rs[0]!.body.toString(), 'vm2');
  const pipelinedToken = rs[1]!.body.toString();
  assert.deepEqual(JSON.parse(rs[2]!.body.toString()), { k2: ['vm2-private', 'private'] });
  assert.equal(rs[4]!.body.toString(), 'vm2');
  assertNoVictimData(r, 'pipelined five');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: pipelinedToken })).status, 401);

  // Many pipelined requests alternating dialects: order and identity hold.
  const many = Array.from({ length: 30 }, (_, i) =>
    request('GET', ['/latest/meta-data/hostname', '/ganeti/latest/meta_data.json', '/openstack/latest/meta_data.json'][i % 3]!),
  );
  r = await raw(port, VM2, many.join(''), { idleMs: 600 });
  rs = parseResponses(r.data);
  assert.equal(rs.length, 30);
  rs.forEach((x, i) => {
    assert.equal(x.status, 200);
    if (i % 3 === 0) assert.equal(x.body.toString(), 'vm2');
    else assert.equal(uuidIn(x.body.toString()), UUID2);
  });
  assertNoVictimData(r, 'thirty pipelined');
  await stillServes(d, 'after pipelining');

  // HTTP/1.0, with and without Host; the connection closes after the answer.
  const h10: Record<string, string>[] = [{}, { Host: '127.0.0.2' }, { Host: '127.0.0.2', Connection: 'keep-alive' }];
  for (const headers of h10) {
    r = await raw(port, VM2, request('GET', '/latest/meta-data/hostname', headers, '', 'HTTP/1.0'));
    rs = parseResponses(r.data);
    assert.equal(rs[0]?.status, 200, `HTTP/1.0 ${JSON.stringify(headers)}`);
    assert.equal(rs[0].body.toString(), 'vm2');
    assertNoVictimData(r, 'HTTP/1.0');
  }
  r = await raw(port, VM2, request('GET', '/ganeti/latest/os/parameters.json', {}, '', 'HTTP/1.0'));
  assert.deepEqual(JSON.parse(parseResponses(r.data)[0]!.body.toString()), { k2: ['vm2-private', 'private'] });
  // HTTP/0.9-style and lowercase methods are refused, never answered as someone else.
  for (const junk of [
    'GET /latest/meta-data/hostname\r\n\r\n',
    'get /latest/meta-data/hostname HTTP/1.1\r\nHost: x\r\n\r\n',
    'GET /latest/meta-data/hostname HTTP/2.0\r\nHost: x\r\n\r\n',
    'GET /latest/meta-data/hostname HTTP/1.1\nHost: x\n\n',
  ]) {
    r = await raw(port, VM2, junk);
    assertNoVictimData(r, JSON.stringify(junk));
    for (const resp of parseResponses(r.data)) assert.ok(resp.status >= 400 || resp.body.toString() === 'vm2', JSON.stringify(junk));
  }
  // Upgrade and Expect do not change anything either.
  r = await raw(
    port,
    VM2,
    request('GET', '/latest/meta-data/hostname', {
      Host: 'x',
      Connection: 'Upgrade',
      Upgrade: 'h2c',
      'HTTP2-Settings': 'AAMAAABkAARAAAAAAAIAAAAA',
    }),
  );
  assertNoVictimData(r, 'upgrade');
  r = await raw(port, VM2, request('POST', '/ganeti/latest/write', { Host: 'x', Expect: '100-continue', 'Content-Length': '4' }, 'ping'));
  assertNoVictimData(r, 'expect');
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, '', 'vm2 wrote into its own pipe only');
  assert.equal((await d.admin('GET', '/v1/instances/vm2/pipe')).text, 'ping');
  await stillServes(d, 'after HTTP/1.0 and friends');
});

test('adversarial: request smuggling (CL+TE, duplicate Content-Length, obfuscated TE) never runs a hidden request', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  // vm2 has a claim-once secret: if a hidden request for parameters.json ever ran, it would be claimed.
  await d.admin('PUT', '/v1/instances/vm2/params/secret', { values: { once2: 'vm2-once' }, claimOnce: true });
  const secretState = async () => asParams(await d.admin('GET', '/v1/instances/vm2/params')).secret.find((s) => s.name === 'once2')!.state;
  await startInstall(d, 'vm2'); // secrets are served only during an install job
  const hidden = request('GET', '/ganeti/latest/os/parameters.json', { Host: 'x' });
  const chunkedThenHidden = `0\r\n\r\n${hidden}`;
  const cl = String(Buffer.byteLength(chunkedThenHidden));
  const head = (lines: string[]) => `POST /ganeti/latest/write HTTP/1.1\r\nHost: x\r\n${lines.map((l) => `${l}\r\n`).join('')}\r\n`;
  const attacks: Record<string, string> = {
    'CL then TE': head([`Content-Length: ${cl}`, 'Transfer-Encoding: chunked']) + chunkedThenHidden,
    'TE then CL': head(['Transfer-Encoding: chunked', `Content-Length: ${cl}`]) + chunkedThenHidden,
    'TE chunked, CL 0': head(['Transfer-Encoding: chunked', 'Content-Length: 0']) + chunkedThenHidden,
    'TE xchunked': head([`Content-Length: ${cl}`, 'Transfer-Encoding: xchunked']) + chunkedThenHidden,
    'TE with space before colon': head([`Content-Length: ${cl}`, 'Transfer-Encoding : chunked']) + chunkedThenHidden,
    'TE with tab': head([`Content-Length: ${cl}`, 'Transfer-Encoding:\tchunked']) + chunkedThenHidden,
    'TE chunked, identity': head([`Content-Length: ${cl}`, 'Transfer-Encoding: chunked, identity']) + chunkedThenHidden,
    'TE twice': head([`Content-Length: ${cl}`, 'Transfer-Encoding: chunked', 'Transfer-Encoding: identity']) + chunkedThenHidden,
    'TE obs-fold': head([`Content-Length: ${cl}`, 'X-Pad: a', ' Transfer-Encoding: chunked']) + chunkedThenHidden,
    'duplicate CL, differing': head(['Content-Length: 0', `Content-Length: ${Buffer.byteLength(hidden)}`]) + hidden,
    'duplicate CL, differing (reversed)': head([`Content-Length: ${Buffer.byteLength(hidden)}`, 'Content-Length: 0']) + hidden,
    'duplicate CL, equal': head([`Content-Length: ${Buffer.byteLength(hidden)}`, `Content-Length: ${Buffer.byteLength(hidden)}`]) + hidden,
    'CL list': head([`Content-Length: ${Buffer.byteLength(hidden)}, 0`]) + hidden,
    'CL with plus sign': head([`Content-Length: +${Buffer.byteLength(hidden)}`]) + hidden,
    'CL negative': head(['Content-Length: -1']) + hidden,
    'chunk size overflow': head(['Transfer-Encoding: chunked']) + `ffffffffffffffffffff\r\n${hidden}`,
    'HTTP/1.0 with TE': `POST /ganeti/latest/write HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: ${cl}\r\n\r\n${chunkedThenHidden}`,
  };
  for (const [name, payload] of Object.entries(attacks)) {
    const r = await raw(d.guestPort, VM2, payload, { idleMs: 400 });
    assertNoVictimData(r, name);
    const rs = parseResponses(r.data);
    assert.ok(rs.length <= 1, `${name}: one request, at most one answer (got ${rs.map((x) => x.status).join(',')})`);
    if (rs[0]) assert.ok(rs[0].status >= 400 || rs[0].status === 204, `${name}: ${rs[0].status}`);
    assert.equal(await secretState(), 'live', `${name}: the hidden request must never run`);
    await stillServes(d, name);
  }
  // A GET with a body that looks like a request: the body is a body.
  const r = await raw(
    d.guestPort,
    VM2,
    request('GET', '/latest/meta-data/hostname', { Host: 'x', 'Content-Length': String(Buffer.byteLength(hidden)) }, hidden),
  );
  const rs = parseResponses(r.data);
  assert.equal(rs.length, 1);
  assert.equal(rs[0]!.body.toString(), 'vm2');
  assert.equal(await secretState(), 'live', 'a request inside a GET body never runs');
  // Requests with bodies on every dialect are answered as the sender.
  for (const p of ['/latest/meta-data/hostname', '/openstack/latest/meta_data.json', '/ganeti/latest/meta_data.json']) {
    const body = JSON.stringify({ instance: 'vm1', ip: VM1 });
    // node's client sends a GET body with neither Content-Length nor chunked unless told.
    const g = await d.guest(VM2, 'GET', p, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }, body);
    assert.equal(g.status, 200);
    assert.ok(!CANARY.test(g.text) && !g.text.includes(UUID1));
  }
  // The pipe got nothing from the refused requests' bodies; the secret is still there, once.
  assert.equal((await d.admin('GET', '/v1/instances/vm2/pipe')).text, '');
  assert.deepEqual(((await d.guest(VM2, 'GET', '/ganeti/latest/os/parameters.json')).json as OsParameters)['once2'], [
    'vm2-once',
    'secret',
  ]);
  await stillServes(d, 'after smuggling');
});

test('adversarial: huge headers, huge URLs and huge token headers are refused without a crash', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const port = d.guestPort;
  const refusedOrClosed = (r: RawResult, what: string) => {
    assertNoVictimData(r, what);
    const rs = parseResponses(r.data);
    if (rs.length > 0) assert.ok([400, 413, 414, 431].includes(rs[0]!.status), `${what}: answered ${rs[0]!.status}`);
    assert.ok(r.closed, `${what}: the connection is closed`);
  };
  refusedOrClosed(
    await raw(port, VM2, request('GET', '/latest/meta-data/hostname', { Host: 'x', 'X-Big': 'a'.repeat(20_000) })),
    '20 KB header',
  );
  await stillServes(d, '20 KB header');
  refusedOrClosed(await raw(port, VM2, request('GET', `/latest/meta-data/${'a'.repeat(20_000)}`, { Host: 'x' })), '20 KB URL');
  await stillServes(d, '20 KB URL');
  const manyHeaders: Record<string, string> = { Host: 'x' };
  for (let i = 0; i < 3000; i++) manyHeaders[`X-H${i}`] = String(i);
  refusedOrClosed(await raw(port, VM2, request('GET', '/latest/meta-data/hostname', manyHeaders)), '3000 headers');
  await stillServes(d, '3000 headers');
  // 1 MiB of header, written in 64 KiB pieces: the server may cut us off half-way.
  const big = `GET /latest/meta-data/hostname HTTP/1.1\r\nHost: x\r\nX-Huge: ${'b'.repeat(1024 * 1024)}\r\n\r\n`;
  const pieces: string[] = [];
  for (let i = 0; i < big.length; i += 65536) pieces.push(big.slice(i, i + 65536));
  refusedOrClosed(await raw(port, VM2, pieces, { maxMs: 8000 }), '1 MiB header');
  await stillServes(d, '1 MiB header');
  // Just under the cap is an ordinary request.
  const ok = await raw(
    port,
    VM2,
    request('GET', '/latest/meta-data/hostname', { Host: 'x', 'X-Pad': 'c'.repeat(12_000), Connection: 'close' }),
  );
  assert.equal(parseResponses(ok.data)[0]?.body.toString(), 'vm2');

  // Token headers: long ones are 401, very long ones are refused at the parser.
  const good = (await d.guest(VM2, 'PUT', '/latest/api/token', { [TTL]: '60' })).text;
  // (good + 'A' is accepted: base64url decoding ignores a trailing partial sextet — same token.)
  for (const tok of [good + good, 'A'.repeat(65), 'A'.repeat(4096), good + '.'.repeat(10_000), 'z'.repeat(15_000)]) {
    const r = await d.guest(VM2, 'GET', '/latest/meta-data/hostname', { [TOKEN]: tok });
    assert.equal(r.status, 401, `a ${tok.length}-character token`);
  }
  refusedOrClosed(
    await raw(port, VM2, request('GET', '/latest/meta-data/hostname', { Host: 'x', [TOKEN]: 'T'.repeat(40_000) })),
    '40 KB token header',
  );
  refusedOrClosed(await raw(port, VM2, request('PUT', '/latest/api/token', { Host: 'x', [TTL]: '6'.repeat(30_000) })), '30 KB TTL header');
  assert.equal((await d.guest(VM2, 'PUT', '/latest/api/token', { [TTL]: '6'.repeat(5000) })).status, 400);
  assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/hostname', { [TOKEN]: good })).text, 'vm2');
  await stillServes(d, 'after huge token headers');
});

// =============================================================================================
// IMDSv2 tokens

function forge(token: string, edit: (raw: Buffer) => Buffer): string {
  return edit(Buffer.from(token, 'base64url')).toString('base64url');
}
function withExpiry(token: string, expiresAt: bigint): string {
  return forge(token, (b) => {
    const c = Buffer.from(b);
    c.writeBigUInt64BE(expiresAt, 0);
    return c;
  });
}

test('adversarial: tokens — replay by another instance, forged expiry, truncated/extended, mixed', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  await setup(d, { ec2: { imdsV2: 'required' } });
  await d.admin('PUT', '/v1/instances/vm3', sampleInstance(3)); // optional mode
  const VM3 = '127.0.0.4';
  const put = (from: string, ttl = '60') => d.guest(from, 'PUT', '/latest/api/token', { [TTL]: ttl });
  const get = (from: string, token: string | undefined, path = '/latest/meta-data/hostname') =>
    d.guest(from, 'GET', path, token === undefined ? {} : { [TOKEN]: token });

  const tA = (await put(VM1)).text;
  const tB = (await put(VM2)).text;
  assert.equal((await get(VM1, tA)).text, 'canary-a-host', "vm1's token is hot in the last-token cache");
  // Replays: the hot token of vm1 presented by vm2 (required) and vm3 (optional), on every path form.
  for (const path of [
    '/latest/meta-data/hostname',
    '//latest/meta-data/hostname',
    '/latest//meta-data/iam/security-credentials/role-a',
    '/latest/user-data',
  ]) {
    for (const from of [VM2, VM3]) {
      const r = await get(from, tA, path);
      assert.equal(r.status, 401, `vm1's token replayed from ${from} on ${path}`);
      assert.ok(!CANARY.test(r.text));
    }
  }
  const abs = await raw(
    d.guestPort,
    VM2,
    request('GET', 'http://127.0.0.2/latest/meta-data/hostname', { Host: '127.0.0.2', [TOKEN]: tA, Connection: 'close' }),
  );
  assertNoVictimData(abs, 'absolute-form replay');
  assert.equal((await get(VM2, `${tA}, ${tB}`)).status, 401, 'both tokens in one header');
  assert.equal((await get(VM2, `${tB}, ${tA}`)).status, 401);
  const dup = await raw(
    d.guestPort,
    VM2,
    `GET /latest/meta-data/hostname HTTP/1.1\r\nHost: x\r\n${TOKEN}: ${tA}\r\n${TOKEN}: ${tB}\r\nConnection: close\r\n\r\n`,
  );
  assertNoVictimData(dup, 'two token headers');
  assert.equal(parseResponses(dup.data)[0]?.status, 401, "vm1's token next to vm2's is not accepted");
  // vm2 requires IMDSv2: vm1's token is refused on every dialect, and a path that merely ends in
  // /api/token (fragment, matrix, dot segments) gets no token exemption that reveals anything.
  for (const path of [
    '/openstack/latest/meta_data.json',
    '/ganeti/latest/os/parameters.json',
    '/ganeti/latest/meta_data.json',
    '/openstack/latest/user_data',
  ]) {
    assert.equal((await get(VM2, tA, path)).status, 401, `vm1's token on ${path}`);
  }
  for (const target of [
    '/latest/meta-data/hostname#/api/token',
    '/ganeti/latest/os/parameters.json#/api/token',
    '/openstack/latest/meta_data.json;/api/token',
    '/ganeti/latest/os/parameters.json/../api/token',
    '/openstack/latest/meta_data.json/%2e%2e/api/token',
    '/latest/meta-data/../api/token',
    '/ganeti/latest/read#/api/token',
  ]) {
    const rr = await raw(d.guestPort, VM2, request('GET', target, { Host: 'x', Connection: 'close' }));
    const resp = parseResponses(rr.data)[0];
    // The path ends in /api/token, so the token check lets it through: to a plain 404.
    assert.equal(resp?.status, 404, `${target} without a token on a required instance: ${resp?.body.toString().slice(0, 100)}`);
  }
  // A cached answer still needs the token on a required instance.
  assert.equal((await get(VM2, tB)).text, 'vm2');
  assert.equal((await get(VM2, undefined)).status, 401, 'the cached answer is not served without a token');
  assert.equal((await get(VM2, undefined, '//latest/meta-data/hostname')).status, 401);
  await stillServes(d, 'after replays');

  // Forged expiry: extend a live token, revive an expired one, overflow, truncate, extend the MAC.
  const now = BigInt(clock.now());
  const forged = [
    withExpiry(tB, now + 3_600_000n),
    withExpiry(tB, now + 60_000n + 1n),
    withExpiry(tB, 0xffffffffffffffffn),
    withExpiry(tB, 2n ** 53n),
    forge(tB, (b) => b.subarray(0, 23)),
    forge(tB, (b) => Buffer.concat([b, Buffer.from([0])])),
    forge(tB, (b) => Buffer.concat([b.subarray(0, 8), Buffer.alloc(16)])),
    forge(tB, (b) => Buffer.concat([b.subarray(0, 8), Buffer.from(tA, 'base64url').subarray(8)])),
    forge(tA, (b) => Buffer.concat([Buffer.from(tB, 'base64url').subarray(0, 8), b.subarray(8)])),
    forge(tB, (b) => {
      const c = Buffer.from(b);
      c[23] = (c[23] ?? 0) ^ 1;
      return c;
    }),
  ];
  for (const f of forged) assert.equal((await get(VM2, f)).status, 401, `forged token ${f}`);
  const short = (await put(VM2, '1')).text;
  assert.equal((await get(VM2, short)).status, 200);
  await clock.advance(1000);
  assert.equal((await get(VM2, short)).status, 401, 'expired');
  assert.equal(
    (await get(VM2, withExpiry(short, BigInt(clock.now()) + 600_000n))).status,
    401,
    'an expired token cannot be revived by editing its expiry',
  );
  assert.equal((await get(VM2, tB)).text, 'vm2', 'the real token still works');
  await stillServes(d, 'after forged tokens');
});

test('adversarial: a token issued before DELETE + re-registration (new uuid, same name and address) is dead', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const old = (await d.guest(VM1, 'PUT', '/latest/api/token', { [TTL]: '21600' })).text;
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: old })).status, 200, 'hot in the last-token cache');
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: old })).status, 404);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);
  for (const path of ['/latest/meta-data/hostname', '//latest/meta-data/instance-id', '/latest/meta-data/']) {
    assert.equal((await d.guest(VM1, 'GET', path, { [TOKEN]: old })).status, 401, `old token on ${path}`);
  }
  const fresh = (await d.guest(VM1, 'PUT', '/latest/api/token', { [TTL]: '60' })).text;
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: fresh })).text, 'vm1');
  // A PUT that replaces the document with another uuid (no DELETE) kills the tokens too.
  assert.equal(
    (await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: '22222222-2222-4222-8222-222222222222' }))).status,
    200,
  );
  assert.equal(
    (await d.guest(VM1, 'GET', '/latest/meta-data/hostname', { [TOKEN]: fresh })).status,
    401,
    'a hot token of the previous uuid',
  );
  await stillServes(d, 'after token re-registration');
});

// =============================================================================================
// Writes: password and pipe belong to the asker; starvation

test("adversarial: a guest cannot set another instance's password or touch its pipe; parallel password POSTs set it once", async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  await d.admin('DELETE', '/v1/instances/vm1/password');
  // vm2 tries every way it can think of to post "vm1's" password.
  await d.guest(VM2, 'POST', '/openstack/latest/password', { 'X-Forwarded-For': VM1, Host: '127.0.0.2' }, 'evil-1');
  await raw(
    d.guestPort,
    VM2,
    request(
      'POST',
      'http://127.0.0.2/openstack/latest/password',
      { Host: '127.0.0.2', 'Content-Length': '6', Connection: 'close' },
      'evil-2',
    ),
  );
  await raw(
    d.guestPort,
    VM2,
    request('POST', '//openstack//latest/password', { Host: '127.0.0.2', 'Content-Length': '6', Connection: 'close' }, 'evil-3'),
  );
  assert.deepEqual((await d.admin('GET', '/v1/instances/vm1/password')).json, { password: null }, "vm1's password is untouched");
  assert.equal(
    ((await d.admin('GET', '/v1/instances/vm2/password')).json as { password: string }).password,
    'evil-1',
    'vm2 only set its own',
  );
  // Pipe: vm2 writes and reads only its own queues.
  await d.guest(VM2, 'POST', '/ganeti/latest/write', { 'X-Forwarded-For': VM1, Host: '127.0.0.2' }, 'evil-pipe');
  await raw(
    d.guestPort,
    VM2,
    request('POST', 'http://127.0.0.2/ganeti/latest/write', { Host: '127.0.0.2', 'Content-Length': '4', Connection: 'close' }, 'evil'),
  );
  await raw(d.guestPort, VM2, request('GET', '/ganeti/latest/read', { Host: '127.0.0.2', 'X-Real-IP': VM1, Connection: 'close' }));
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, '', "nothing in vm1's guest->host queue");
  assert.equal((await d.admin('GET', '/v1/instances/vm2/pipe')).text, 'evil-pipe');
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, 'CANARY-A-PIPE', "vm1's host->guest queue was not consumed");
  await stillServes(d, 'after cross-instance writes');

  // 20 parallel POSTs from vm1: exactly one wins.
  const posts = await Promise.all(Array.from({ length: 20 }, (_, i) => d.guest(VM1, 'POST', '/openstack/latest/password', {}, `pw-${i}`)));
  const codes = posts.map((p) => p.status);
  assert.equal(codes.filter((c) => c === 200).length, 1, `exactly one POST sets the password: ${codes.join(',')}`);
  assert.equal(codes.filter((c) => c === 409).length, 19);
  const winner = posts.findIndex((p) => p.status === 200);
  assert.equal(((await d.admin('GET', '/v1/instances/vm1/password')).json as { password: string }).password, `pw-${winner}`);
  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/password')).text, `pw-${winner}`);
  await stillServes(d, 'after parallel password POSTs');
});

// Was a bug: password() set the password by NAME after awaiting the body, so after a DELETE and a
// re-registration the old guest's password landed in the new instance. Now bound to the incarnation.
test('adversarial: a password POST in flight across DELETE + re-registration does not land in the new instance', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  await d.admin('DELETE', '/v1/instances/vm1/password');
  const s = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
  t.after(() => s.destroy());
  const got: Buffer[] = [];
  s.on('data', (c: Buffer) => got.push(c));
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  s.write('POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nOLD-TENANT');
  await sleep(150);
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  const reborn = sampleInstance(1, { uuid: NEW_UUID }) as InstanceInput;
  reborn.comm.ipv4 = '127.0.0.5';
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', reborn)).status, 201);
  s.write('-PW!!!');
  const answer = await until('the old guest answered', () => parseResponses(Buffer.concat(got))[0]);
  assert.deepEqual(
    (await d.admin('GET', '/v1/instances/vm1/password')).json,
    { password: null },
    "the old guest's in-flight POST set the re-registered instance's password",
  );
  assert.equal(answer.status, 404, 'the old guest is not told its password was stored: its instance is gone');
  assert.equal(
    (await d.guest('127.0.0.5', 'POST', '/openstack/latest/password', {}, 'mine')).status,
    200,
    'the new guest can post its own',
  );
  await stillServes(d, 'after the password race');
});

// Was a bug: pipeWrite() re-checked the instance by NAME after the body arrived, so bytes of a
// deleted instance's guest reached a re-registration of that name. Now bound to the incarnation.
test('adversarial: a guest pipe write/read in flight across DELETE + re-registration does not reach the new instance', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock });
  t.after(() => d.close());
  await setup(d);
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/read')).text, 'CANARY-A-PIPE');
  const w = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
  t.after(() => w.destroy());
  w.on('error', () => undefined);
  const written: Buffer[] = [];
  w.on('data', (c: Buffer) => written.push(c));
  await new Promise((r) => w.once('connect', r));
  w.write('POST /ganeti/latest/write HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\nOLD-WRITE-');
  const longPoll = d.guest(VM1, 'GET', '/ganeti/latest/read?wait=10');
  await until('the long-poll waits on the clock', () => clock.pending === 1);
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  // The clock stands still: only the DELETE can have ended the wait.
  assert.equal((await settled(longPoll, 'the old long-poll is woken by the DELETE')).text, '', 'the old long-poll is woken empty');
  assert.equal(clock.pending, 0);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);
  w.write('0123456789');
  // The positive signal first: the old writer is answered, so its bytes went wherever they went.
  const answer = await until("the old guest's write answered", () => parseResponses(Buffer.concat(written))[0]);
  assert.equal(answer.status, 404, 'the old guest is told its instance is gone');
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, '', "the old guest's bytes are not in the new instance's pipe");
  assert.deepEqual(asView(await d.admin('GET', '/v1/instances/vm1')).status.pipe, { toGuestBytes: 0, toHostBytes: 0 });
  await stillServes(d, 'after the pipe race');
});

test('adversarial: one instance cannot starve another — rate limits are per instance', async (t) => {
  // The clock stands still: no bucket refills during the test, so the counts are exact.
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { guest: { rateLimit: { ratePerSec: 0.5, burst: 8 } } } });
  t.after(() => d.close());
  await setup(d);
  // vm1 burns through its bucket with 30 pipelined requests, some claiming to be vm2.
  const reqs = Array.from({ length: 30 }, (_, i) =>
    request('GET', '/latest/meta-data/instance-id', i % 2 ? { Host: 'x', 'X-Forwarded-For': VM2 } : { Host: 'x' }),
  );
  const r = await raw(d.guestPort, VM1, reqs.join(''), { idleMs: 600 });
  const codes = parseResponses(r.data).map((x) => x.status);
  assert.equal(codes.length, 30);
  assert.equal(codes.filter((c) => c === 200).length, 8, 'vm1 gets its burst and no more');
  assert.equal(codes.filter((c) => c === 429).length, 22);
  // An unknown source flooding does not count against anyone.
  const flood = await raw(d.guestPort, UNKNOWN, Array.from({ length: 30 }, () => request('GET', '/')).join(''), { idleMs: 600 });
  assert.ok(parseResponses(flood.data).every((x) => x.status === 404));
  // vm2 still has its whole bucket.
  for (let i = 0; i < 6; i++) assert.equal((await d.guest(VM2, 'GET', '/latest/meta-data/hostname')).text, 'vm2', `vm2 request ${i}`);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).status, 429, 'vm1 is still limited');
  await stillServes(d, 'after the rate-limit flood');
});

test('adversarial: one source cannot starve another — connection caps and pipe quotas are per source/instance', async (t) => {
  const d = await startTestDaemon({ config: { guest: { maxConnectionsPerSource: 4 }, pipe: { maxBytes: 64 } } });
  t.after(() => d.close());
  await setup(d);
  await d.guest(VM1, 'GET', '/ganeti/latest/read'); // drain the canary
  const held: net.Socket[] = [];
  t.after(() => held.forEach((s) => s.destroy()));
  const open = () =>
    new Promise<net.Socket>((res) => {
      const s = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: VM1 });
      s.on('error', () => undefined);
      s.resume();
      held.push(s);
      s.once('connect', () => res(s));
    });
  // vm1 holds its 4 connections with long-polls, then tries for more.
  // The door counts connections in accept order: these four before any later one.
  for (let i = 0; i < 4; i++) (await open()).write(request('GET', '/ganeti/latest/read?wait=30'));
  const extra = [await open(), await open()];
  await until("vm1's connections over its cap are closed", () => extra.every((s) => s.destroyed || s.readableEnded));
  // vm2 is served at once, several connections in parallel.
  // (Blocked behind vm1's 30 s long-polls, settled() would fail long before they end.)
  const replies = await settled(
    Promise.all(Array.from({ length: 4 }, () => d.guest(VM2, 'GET', '/latest/meta-data/hostname'))),
    'vm2 is served while vm1 holds its cap',
  );
  assert.ok(replies.every((x) => x.text === 'vm2'));
  await stillServes(d, 'while vm1 holds its connection cap');
  // vm1 fills its own guest->host pipe; vm2's is unaffected.
  for (const s of held) s.destroy();
  // Until the door has seen them close, a new connection is over the cap and closed unanswered.
  const write = await until('vm1 is served again once its connections close', () =>
    d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'x'.repeat(64)).catch(() => undefined),
  );
  assert.equal(write.status, 204, 'vm1 is served again once its connections close');
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'x')).status, 413);
  assert.equal(
    (await d.guest(VM2, 'POST', '/ganeti/latest/write', {}, 'y'.repeat(64))).status,
    204,
    "vm1's full pipe does not block vm2's",
  );
  assert.equal((await d.admin('GET', '/v1/instances/vm2/pipe')).text, 'y'.repeat(64));
  await stillServes(d, 'after connection caps');
});

// =============================================================================================
// Cache poisoning

const CACHE_PATHS = [
  '/latest/meta-data/hostname',
  '//latest/meta-data/hostname',
  '///latest/meta-data/hostname',
  '/latest//meta-data/hostname',
  '/latest/meta-data//hostname',
  '//latest//meta-data//hostname/',
  '/latest/meta-data/hostname/',
  '/2009-04-04/meta-data/hostname',
  '/latest/meta-data/',
  '/latest/meta-data',
  '/latest/meta-data/instance-id',
  '//latest/meta-data/instance-id',
  '/latest/user-data',
  '//latest/user-data',
  '/latest/dynamic/instance-identity/document',
  '/openstack/latest/meta_data.json',
  '//openstack/latest/meta_data.json',
  '/openstack//latest//meta_data.json',
  '/openstack/latest/user_data',
  '/openstack/latest/vendor_data.json',
  '/ganeti/latest/meta_data.json',
  '//ganeti//latest/meta_data.json',
];

test('adversarial: a cached answer for one instance is never served to another (also after an address moves)', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  // vm1 fills its cache (GET and HEAD) ...
  for (const p of CACHE_PATHS) {
    await d.guest(VM1, 'GET', p);
    await d.guest(VM1, 'HEAD', p);
  }
  // ... vm2 and the unknown source ask the same paths.
  for (const p of CACHE_PATHS) {
    for (const m of ['HEAD', 'GET']) {
      const r = await d.guest(VM2, m, p);
      assert.ok(!CANARY.test(r.text) && !r.text.includes(UUID1), `${m} ${p} from vm2: ${r.text.slice(0, 200)}`);
      assert.equal((await d.guest(UNKNOWN, m, p)).status, 404);
    }
  }
  assert.equal((await d.guest(VM2, 'GET', '//latest/meta-data/hostname')).text, 'vm2');
  // vm1 moves to another address; vm3 takes over vm1's old address.
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { comm: { ipv4: '127.0.0.20' } })).status, 200);
  assert.equal(
    (await d.admin('PUT', '/v1/instances/vm3', { ...sampleInstance(3), comm: { mac: '52:54:00:00:00:33', ipv4: VM1 } })).status,
    201,
  );
  for (const p of CACHE_PATHS) {
    const r = await d.guest(VM1, 'GET', p);
    assert.ok(!CANARY.test(r.text) && !r.text.includes(UUID1), `${p} from vm1's old address (now vm3): ${r.text.slice(0, 200)}`);
  }
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text, 'vm3');
  assert.equal((await d.guest('127.0.0.20', 'GET', '//latest/meta-data/hostname')).text, 'canary-a-host');
  await stillServes(d, 'after cross-instance cache probing');
});

test('adversarial: after a PATCH (or DELETE + re-registration) every cached path variant serves the new value at once', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const warm = async () => {
    for (const p of CACHE_PATHS) {
      await d.guest(VM1, 'GET', p);
      await d.guest(VM1, 'HEAD', p);
    }
  };
  await warm();
  const hostnamePaths = CACHE_PATHS.filter((p) => p.replace(/\/+/g, '/').replace(/\/$/, '').endsWith('meta-data/hostname'));
  assert.ok(hostnamePaths.length >= 7);
  for (const p of hostnamePaths) assert.equal((await d.guest(VM1, 'GET', p)).text, 'canary-a-host', p);

  const newUserData = Buffer.from('#!/bin/sh\necho patched\n');
  assert.equal(
    (
      await d.admin('PATCH', '/v1/instances/vm1', {
        hostname: 'patched-host',
        userData: newUserData.toString('base64'),
        openstack: { vendorData: { v: 'patched' } },
      })
    ).status,
    200,
  );
  for (const p of hostnamePaths) assert.equal((await d.guest(VM1, 'GET', p)).text, 'patched-host', `${p} right after the PATCH`);
  for (const p of ['/latest/user-data', '//latest/user-data', '/openstack/latest/user_data'])
    assert.deepEqual((await d.guest(VM1, 'GET', p)).body, newUserData, p);
  for (const p of [
    '/openstack/latest/meta_data.json',
    '//openstack/latest/meta_data.json',
    '/openstack//latest//meta_data.json',
    '/ganeti/latest/meta_data.json',
    '//ganeti//latest/meta_data.json',
  ]) {
    assert.equal(((await d.guest(VM1, 'GET', p)).json as { hostname: string }).hostname, 'patched-host', p);
  }
  assert.deepEqual((await d.guest(VM1, 'GET', '/openstack/latest/vendor_data.json')).json, { v: 'patched' });
  // Params routes bump the generation too.
  await d.admin('PATCH', '/v1/instances/vm1/params/public', { values: { pa: 'public-patched' } });
  assert.deepEqual(((await d.guest(VM1, 'GET', '//ganeti/latest/os/parameters.json')).json as OsParameters)['pa'], [
    'public-patched',
    'public',
  ]);
  // Switching to imdsV2 required applies to cached answers at once.
  await warm();
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { ec2: { imdsV2: 'required' } })).status, 200);
  for (const p of hostnamePaths) assert.equal((await d.guest(VM1, 'GET', p)).status, 401, `${p} without a token after imdsV2=required`);
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { ec2: { imdsV2: 'optional' } })).status, 200);

  // DELETE + re-registration under the same name with a new uuid: nothing cached survives.
  await warm();
  const oldId = (await d.guest(VM1, 'GET', '/latest/meta-data/instance-id')).text;
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);
  for (const p of CACHE_PATHS) {
    const r = await d.guest(VM1, 'GET', p);
    assert.ok(!CANARY.test(r.text) && !r.text.includes(UUID1), `${p} after re-registration: ${r.text.slice(0, 200)}`);
  }
  for (const p of hostnamePaths) assert.equal((await d.guest(VM1, 'GET', p)).text, 'vm1', p);
  assert.equal(oldId, `i-${UUID1.replaceAll('-', '').slice(0, 17)}`);
  assert.equal((await d.guest(VM1, 'GET', '//latest/meta-data/instance-id')).text, `i-${NEW_UUID.replaceAll('-', '').slice(0, 17)}`);
  assert.equal(((await d.guest(VM1, 'GET', '//openstack/latest/meta_data.json')).json as { uuid: string }).uuid, NEW_UUID);
  assert.equal((await d.guest(VM1, 'GET', '/latest/user-data')).status, 404);
  await stillServes(d, 'after cache invalidation');
});

// =============================================================================================
// Secrets

test('adversarial: a claim-once secret read by 20 parallel requests is handed out exactly once', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  await startInstall(d, 'vm1', 600); // longer than the test's clock runs: the secrets' TTLs decide // secrets are served only during an install job
  for (let round = 0; round < 3; round++) {
    const value = `claim-once-${round}`;
    assert.equal((await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { once: value }, claimOnce: true })).status, 200);
    const paths = [
      '/ganeti/latest/os/parameters.json',
      '//ganeti//latest/os/parameters.json',
      '/ganeti/2014-07-01/os/parameters.json',
      '/ganeti/latest/os/parameters.json?x=1',
    ];
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => d.guest(VM1, 'GET', paths[i % paths.length]!)));
    assert.ok(
      replies.every((r) => r.status === 200),
      replies.map((r) => r.status).join(','),
    );
    const holders = replies.filter((r) => r.text.includes(value));
    assert.equal(holders.length, 1, `round ${round}: handed out ${holders.length} times`);
    assert.deepEqual((holders[0]!.json as OsParameters)['once'], [value, 'secret']);
    const info = asParams(await d.admin('GET', '/v1/instances/vm1/params')).secret.find((s) => s.name === 'once')!;
    assert.equal(info.state, 'claimed');
    assert.ok(!(await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).text.includes(value));
    // vm2 asking at the same time never sees it.
    assert.ok(!CANARY.test((await d.guest(VM2, 'GET', '/ganeti/latest/os/parameters.json')).text));
  }
  // HEAD does not consume (and shows nothing).
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { once: 'head-test' }, claimOnce: true });
  const heads = await Promise.all(Array.from({ length: 10 }, () => d.guest(VM1, 'HEAD', '/ganeti/latest/os/parameters.json')));
  assert.ok(heads.every((h) => h.text === ''));
  assert.ok((await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).text.includes('head-test'));
  await stillServes(d, 'after the claim-once race');
});

test('adversarial: an expired secret never appears (exact boundary, claim-once, instance-document secrets)', async (t) => {
  const clock = new FakeClock();
  const d = await startTestDaemon({ clock, config: { secrets: { defaultTtlSec: 60 }, appliance: { installTimeoutMs: 60_000 } } });
  t.after(() => d.close());
  await setup(d);
  await startInstall(d, 'vm1', 600); // longer than the test's clock runs: the secrets' TTLs decide
  await d.admin('PUT', '/v1/instances/vm1/params/secret', { values: { s5: 'ttl-5' }, ttlSec: 5 });
  await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { c5: 'claim-5' }, ttlSec: 5, claimOnce: true });
  await d.admin('PATCH', '/v1/instances/vm1', { params: { secret: { doc: 'doc-default-ttl' } } });
  const params = async () => (await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).text;
  const head = async () => (await d.guest(VM1, 'HEAD', '/ganeti/latest/os/parameters.json')).text;
  await clock.advance(4999);
  assert.equal(await head(), '');
  let p = await params();
  assert.ok(p.includes('ttl-5') && p.includes('doc-default-ttl'), 'alive one millisecond before expiry');
  // claim-once was consumed just now; re-arm it to test expiry.
  await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { c5: 'claim-5b' }, ttlSec: 5, claimOnce: true });
  await clock.advance(5000);
  for (const path of ['/ganeti/latest/os/parameters.json', '//ganeti/latest/os/parameters.json', '/ganeti/2014-07-01/os/parameters.json']) {
    const text = (await d.guest(VM1, 'GET', path)).text;
    assert.ok(!text.includes('ttl-5') && !text.includes('claim-5'), `${path}: expired secret shown: ${text}`);
  }
  const info = asParams(await d.admin('GET', '/v1/instances/vm1/params')).secret as {
    name: string;
    state: string;
    claimedAt: string | null;
  }[];
  // A guest read zeroes expired values; the admin still sees 'expired' (a secret is live,
  // claimed or expired, nothing else).
  assert.equal(info.find((s) => s.name === 'c5')?.state, 'expired');
  assert.equal(info.find((s) => s.name === 'c5')!.claimedAt, null, 'an expired claim-once secret is not reported as claimed');
  assert.equal(info.find((s) => s.name === 's5')?.state, 'expired');
  // Exactly at the default TTL the document secret is gone too.
  await clock.advance(60_000 - 4999 - 5000);
  p = await params();
  assert.ok(!p.includes('doc-default-ttl'), 'the document secret expired at exactly defaultTtlSec');
  // Unrelated writes never revive expired values.
  await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { other: 'o' } });
  await d.admin('PATCH', '/v1/instances/vm1', { hostname: 'after-expiry' });
  p = await params();
  assert.ok(!p.includes('ttl-5') && !p.includes('claim-5') && !p.includes('doc-default-ttl') && p.includes('"other"'));
  await stillServes(d, 'after secret expiry');
});

test('adversarial: after DELETE + re-registration, old secrets, private values, IAM, password and pipe contents are gone', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  await d.admin('PATCH', '/v1/instances/vm1/params/secret', { values: { once: 'CANARY-A-ONCE' }, claimOnce: true });
  assert.equal((await d.guest(VM1, 'POST', '/ganeti/latest/write', {}, 'CANARY-A-TOHOST')).status, 204);
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  assert.equal((await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).status, 404);
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);

  for (const p of [
    '/ganeti/latest/os/parameters.json',
    '/openstack/latest/password',
    '/ganeti/latest/read',
    '/latest/meta-data/iam/info',
    '/latest/meta-data/iam/security-credentials/role-a',
    '/latest/user-data',
    '/openstack/latest/meta_data.json',
    '/openstack/latest/vendor_data.json',
    '/latest/meta-data/public-keys/',
    '/latest/meta-data/tags/instance/t',
  ]) {
    const r = await d.guest(VM1, 'GET', p);
    assert.ok(!CANARY.test(r.text), `${p} after re-registration: ${r.text.slice(0, 200)}`);
  }
  assert.deepEqual((await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json')).json, {});
  assert.equal((await d.guest(VM1, 'GET', '/openstack/latest/password')).text, '');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/iam/info')).status, 404);
  const view = asView(await d.admin('GET', '/v1/instances/vm1'));
  assert.deepEqual(view.status.params, { public: [], private: [], secret: [] });
  assert.equal(view.status.iamRole, null);
  assert.equal(view.status.password, false);
  assert.deepEqual(view.status.pipe, { toGuestBytes: 0, toHostBytes: 0 });
  assert.deepEqual((await d.admin('GET', '/v1/instances/vm1/password')).json, { password: null });
  assert.equal((await d.admin('GET', '/v1/instances/vm1/pipe')).text, '');
  assert.equal(
    (await d.guest(VM1, 'POST', '/openstack/latest/password', {}, 'new-pw')).status,
    200,
    'the new instance may post its password',
  );
  assert.ok(!CANARY.test(JSON.stringify(d.daemon.services.vault.liveValues('vm1', false))));
  await stillServes(d, 'after re-registration');
});

// Regression guard: before 1fd0108, routes/admin/params.ts write() checked the instance, awaited the
// body, then wrote the vault by NAME: a secret PUT finishing after DELETE was stored (answered 404!)
// and handed to the next instance registered under that name.
test('adversarial: a secret write in flight across DELETE does not survive into a re-registered instance', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const slow = await slowAdmin(
    d,
    'PUT',
    '/v1/instances/vm1/params/secret',
    'application/json',
    JSON.stringify({ values: { late: 'CANARY-A-LATE-SECRET' } }),
    12,
  );
  t.after(() => slow.socket.destroy());
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  const answer = (await slow.finish())[0];
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);
  assert.deepEqual(
    asParams(await d.admin('GET', '/v1/instances/vm1/params')).secret,
    [],
    `the re-registered instance inherited a secret (the late PUT was answered ${answer?.status})`,
  );
  const r = await d.guest(VM1, 'GET', '/ganeti/latest/os/parameters.json');
  assert.ok(!CANARY.test(r.text), `the new guest received the old instance's secret: ${r.text}`);
  await stillServes(d, 'after the secret race');
});

// Regression guard: before 1fd0108, routes/admin/pipe.ts POST pushed into s.pipes.get(name) after
// the body arrived, re-creating the pipe of a deleted instance (202); the next instance of that
// name read the old bytes.
test('adversarial: an admin pipe send in flight across DELETE does not survive into a re-registered instance', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const slow = await slowAdmin(d, 'POST', '/v1/instances/vm1/pipe', 'application/octet-stream', 'CANARY-A-LATE-PIPE', 4);
  t.after(() => slow.socket.destroy());
  assert.equal((await d.admin('DELETE', '/v1/instances/vm1')).status, 204);
  const answer = (await slow.finish())[0];
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { uuid: NEW_UUID }))).status, 201);
  assert.deepEqual(
    asView(await d.admin('GET', '/v1/instances/vm1')).status.pipe,
    { toGuestBytes: 0, toHostBytes: 0 },
    `the re-registered instance inherited pipe bytes (the late POST was answered ${answer?.status})`,
  );
  const r = await d.guest(VM1, 'GET', '/ganeti/latest/read');
  assert.equal(r.text, '', "the new guest read the old instance's pipe data");
  await stillServes(d, 'after the pipe-send race');
});

// =============================================================================================
// Admin door

function polluted(): boolean {
  const o = {} as Record<string, unknown>;
  return (
    o.polluted !== undefined ||
    Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted') ||
    ([] as unknown as Record<string, unknown>).polluted !== undefined ||
    Object.getPrototypeOf(o) !== Object.prototype
  );
}

test('adversarial: __proto__ / constructor keys in admin bodies pollute nothing', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const base = JSON.stringify(victim()).slice(0, -1);
  const docWith = (extra: string) => `${base},${extra}}`;
  const attacks: [string, string, string][] = [
    ['PUT', '/v1/instances/vm1', `{"__proto__":{"polluted":1},${base.slice(1)}}`],
    ['PUT', '/v1/instances/vm1', `{"constructor":{"prototype":{"polluted":1}},${base.slice(1)}}`],
    ['PUT', '/v1/instances/vm1', docWith('"install":{"__proto__":{"polluted":1}}')],
    [
      'PUT',
      '/v1/instances/vm1',
      JSON.stringify(
        victim({
          openstack: JSON.parse(
            '{"vendorData":{"__proto__":{"polluted":1}},"networkData":{"constructor":{"prototype":{"polluted":1}}},"devices":[{"__proto__":{"polluted":1}}],"meta":{"__proto__":"x","constructor":"y"}}',
          ),
        }),
      ),
    ],
    [
      'PUT',
      '/v1/instances/vm1',
      JSON.stringify(
        victim({
          params: JSON.parse('{"public":{"__proto__":"x","constructor":"y"},"private":{"__proto__":"x"},"secret":{"__proto__":"x"}}'),
        }),
      ),
    ],
    ['PATCH', '/v1/instances/vm1', '{"__proto__":{"polluted":1}}'],
    ['PATCH', '/v1/instances/vm1', '{"constructor":{"prototype":{"polluted":1}}}'],
    ['PATCH', '/v1/instances/vm1', '{"hostname":"p1","__proto__":{"polluted":1}}'],
    ['PATCH', '/v1/instances/vm1', '{"openstack":{"vendorData":{"__proto__":{"polluted":1}}}}'],
    ['PATCH', '/v1/instances/vm1', '{"openstack":{"vendorData":{"a":{"constructor":{"prototype":{"polluted":1}}}}}}'],
    ['PATCH', '/v1/instances/vm1', '{"params":{"private":{"__proto__":{"polluted":1}},"secret":{"__proto__":{"polluted":1}}}}'],
    ['PATCH', '/v1/instances/vm1', '{"params":{"secret":{"__proto__":"s","constructor":"c"}}}'],
    ['PATCH', '/v1/instances/vm1', '{"ec2":{"tags":{"__proto__":"t"}}}'],
    ...(['public', 'private', 'secret'] as const).flatMap((v): [string, string, string][] => [
      ['PUT', `/v1/instances/vm1/params/${v}`, '{"values":{"a":"1"},"__proto__":{"polluted":1}}'],
      ['PUT', `/v1/instances/vm1/params/${v}`, '{"values":{"__proto__":{"polluted":1}}}'],
      ['PUT', `/v1/instances/vm1/params/${v}`, '{"values":{"__proto__":"x","constructor":"y","prototype":"z"}}'],
      ['PATCH', `/v1/instances/vm1/params/${v}`, '{"values":{"__proto__":null,"constructor":null}}'],
      ['PATCH', `/v1/instances/vm1/params/${v}`, '{"values":{"constructor":{"prototype":{"polluted":1}}}}'],
      ['PATCH', `/v1/instances/vm1/params/${v}`, '{"values":{"a":"1"},"constructor":{"prototype":{"polluted":1}}}'],
      ['DELETE', `/v1/instances/vm1/params/${v}/__proto__`, ''],
      ['DELETE', `/v1/instances/vm1/params/${v}/constructor`, ''],
      ['DELETE', `/v1/instances/vm1/params/${v}/hasOwnProperty`, ''],
    ]),
    ['PUT', '/v1/instances/__proto__', JSON.stringify({ ...sampleInstance(5), name: '__proto__' })],
    ['GET', '/v1/instances/constructor', ''],
    ['GET', '/v1/instances/__proto__/params', ''],
    ['POST', '/v1/instances/vm1/pipe', '{"__proto__":{"polluted":1}}'],
  ];
  for (const [method, path, body] of attacks) {
    const r = await d.admin(
      method,
      path,
      body === '' ? undefined : body,
      body === '' ? {} : { 'content-type': method === 'POST' ? 'application/octet-stream' : 'application/json' },
    );
    assert.ok(r.status < 500, `${method} ${path} ${body}: answered ${r.status} ${r.text.slice(0, 200)}`);
    assert.equal(polluted(), false, `${method} ${path} ${body} polluted Object.prototype`);
    // The guest renderers touch these documents too.
    for (const p of [
      '/openstack/latest/meta_data.json',
      '/openstack/latest/vendor_data.json',
      '/openstack/latest/network_data.json',
      '/ganeti/latest/os/parameters.json',
      '/latest/meta-data/tags/instance/',
    ]) {
      const g = await d.guest(VM1, 'GET', p);
      assert.ok(g.status < 500, `guest ${p} after ${method} ${path}: ${g.status}`);
    }
    assert.equal(polluted(), false, `guest reads after ${method} ${path} polluted Object.prototype`);
    await stillServes(d, `${method} ${path} ${body.slice(0, 60)}`);
  }
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

// Was a bug: "__proto__" passed PARAM_NAME_PATTERN and was then silently dropped by plain-object
// maps (a claim-once secret so named was consumed undelivered). Such names are now refused.
test('adversarial: parameters named __proto__, constructor or prototype are refused whole (400), never half-stored', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const before = asParams(await d.admin('GET', '/v1/instances/vm2/params'));
  for (const [method, path, body] of [
    ['PUT', '/v1/instances/vm2/params/public', '{"values":{"constructor":"pub-c","ok":"1"}}'],
    ['PATCH', '/v1/instances/vm2/params/private', '{"values":{"ok":"1","__proto__":"p"}}'],
    ['PUT', '/v1/instances/vm2/params/secret', '{"values":{"prototype":"s","ok":"1"},"claimOnce":true}'],
  ] as const) {
    const r = await d.admin(method, path, body);
    assert.equal(r.status, 400, `${method} ${path}`);
    assert.equal((r.json as { code: string }).code, 'InvalidInput');
  }
  assert.deepEqual(asParams(await d.admin('GET', '/v1/instances/vm2/params')), before, 'nothing of a refused body was stored');
  assert.equal(polluted(), false);
  await stillServes(d, 'after __proto__ parameters');
});

// Was a bug: json-merge-patch 1.0.2's apply() stops at a "__proto__"/"constructor"/"prototype"
// member and drops every later member of that object, so a PATCH answered 200 half-applied (an
// IAM revocation was lost). The admin door now refuses those keys anywhere in a body (400).
test('adversarial: a merge patch with a __proto__/constructor member is refused or applied whole, never half-applied', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const revoke = await d.admin('PATCH', '/v1/instances/vm1', '{"ec2":{"constructor":null,"iam":null}}');
  const iamServed = (await d.guest(VM1, 'GET', '/latest/meta-data/iam/security-credentials/role-a')).status === 200;
  const role = asView(await d.admin('GET', '/v1/instances/vm1')).status.iamRole;
  if (revoke.status < 300) {
    assert.equal(role, null, `PATCH answered ${revoke.status} but the IAM credentials were not removed`);
    assert.equal(iamServed, false, 'the guest is still served the revoked credentials');
  } else {
    assert.equal(revoke.status, 400);
  }
  const rename = await d.admin('PATCH', '/v1/instances/vm1', '{"__proto__":{"x":1},"hostname":"renamed"}');
  const host = (await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text;
  if (rename.status < 300) assert.equal(host, 'renamed', `PATCH answered ${rename.status} but hostname is still ${host}`);
  else assert.equal(rename.status, 400);
  assert.equal(polluted(), false);
  await stillServes(d, 'after half-applied patches');
});

// Was a bug: deep JSON passed ajv in the free-form objects (openstack.vendorData/networkData/
// devices) and overflowed the stack later (500). Bodies nested deeper than 64 levels are now 400.
test('adversarial: deeply nested JSON (10,000+ levels) answers 400/413 and the daemon keeps serving', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const before = asView(await d.admin('GET', '/v1/instances/vm1')).status.generation;
  const arr = (n: number) => '['.repeat(n) + ']'.repeat(n);
  const obj = (n: number) => '{"a":'.repeat(n) + '1' + '}'.repeat(n);
  const doc = JSON.stringify(sampleInstance(1)).slice(0, -1);
  const attacks: [string, string, string][] = [
    ['PUT', '/v1/instances/vm1', `${doc},"openstack":{"vendorData":{"x":${arr(10_000)}}}}`],
    ['PUT', '/v1/instances/vm1', `${doc},"openstack":{"networkData":${obj(10_000)}}}`],
    ['PUT', '/v1/instances/vm1', `${doc},"openstack":{"devices":[${obj(10_000)}]}}`],
    ['PUT', '/v1/instances/vm1', `${doc},"openstack":{"vendorData":{"x":${arr(100_000)}}}}`],
    ['PUT', '/v1/instances/vm1', arr(10_000)],
    ['PATCH', '/v1/instances/vm1', `{"openstack":{"vendorData":{"x":${arr(10_000)}}}}`],
    ['PATCH', '/v1/instances/vm1', `{"openstack":{"vendorData":${obj(10_000)}}}`],
    ['PATCH', '/v1/instances/vm1', obj(10_000)],
    ['PATCH', '/v1/instances/vm1', `{"params":{"secret":${obj(10_000)}}}`],
    ['PUT', '/v1/instances/vm1/params/public', `{"values":${obj(10_000)}}`],
    ['PATCH', '/v1/instances/vm1/params/secret', `{"values":{"a":${arr(10_000)}}}`],
    ['PUT', '/v1/instances/vm1', obj(60_000)],
  ];
  const problems: string[] = [];
  for (const [method, path, body] of attacks) {
    const r = await d.admin(method, path, body);
    if (![400, 413].includes(r.status))
      problems.push(
        `${method} ${path} (${body.length} bytes, starts ${body.slice(0, 40)}): ${r.status} ${(r.json as { code?: string } | undefined)?.code ?? ''}`,
      );
    await stillServes(d, `${method} ${path} deep`);
  }
  assert.equal(asView(await d.admin('GET', '/v1/instances/vm1')).status.generation, before, 'the instance is unchanged');
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text, 'canary-a-host');
  // A normal write to the same instance still works (nothing stayed claimed).
  assert.equal((await d.admin('PATCH', '/v1/instances/vm1', { hostname: 'still-writable' })).status, 200);
  assert.deepEqual(problems, [], `deep JSON must be 400/413:\n${problems.join('\n')}`);
});

test('adversarial: a slow or never-finishing admin body does not block other admin requests', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await setup(d);
  const slows = [
    await slowAdmin(
      d,
      'PUT',
      '/v1/instances/vm1',
      'application/json',
      JSON.stringify(victim({ hostname: 'slow-put' })) + ' '.repeat(100_000),
      50,
    ),
    await slowAdmin(d, 'PATCH', '/v1/instances/vm1', 'application/json', '{"hostname":"slow-patch"}' + ' '.repeat(100_000), 10),
    await slowAdmin(d, 'PUT', '/v1/instances/vm1/params/private', 'application/json', '{"values":{"a":"b"}}' + ' '.repeat(100_000), 5),
    await slowAdmin(d, 'POST', '/v1/instances/vm1/pipe', 'application/octet-stream', 'x'.repeat(100_000), 5),
    await slowAdmin(d, 'PUT', '/v1/instances/vm2', 'application/json', JSON.stringify(sampleInstance(2)), 5),
  ];
  t.after(() => slows.forEach((s) => s.socket.destroy()));
  // Blocked requests would wait for the slow bodies (minutes); settled() fails them long before.
  const timed = <T>(p: Promise<T>, what: string): Promise<T> => settled(p, `${what} is not blocked by the slow bodies`);
  assert.equal((await timed(d.admin('GET', '/v1/health'), 'health')).status, 200);
  assert.equal((await timed(d.admin('PATCH', '/v1/instances/vm1', { hostname: 'fast-patch' }), 'PATCH of the same instance')).status, 200);
  assert.equal(
    (await timed(d.admin('PUT', '/v1/instances/vm1/params/private', { values: { fast: '1' } }), 'params PUT of the same instance')).status,
    200,
  );
  assert.equal((await timed(d.admin('POST', '/v1/instances/vm1/pipe', 'fast', OCTET), 'pipe send of the same instance')).status, 202);
  assert.equal((await timed(d.admin('PUT', '/v1/instances/vm3', sampleInstance(3)), 'PUT of another instance')).status, 201);
  assert.equal(
    (await timed(d.admin('PATCH', '/v1/instances/vm2', { hostname: 'vm2-fast' }), 'PATCH of the instance a slow PUT targets')).status,
    200,
  );
  assert.equal((await timed(d.admin('DELETE', '/v1/instances/vm3'), 'DELETE')).status, 204);
  assert.equal((await d.guest(VM1, 'GET', '/latest/meta-data/hostname')).text, 'fast-patch');
  await stillServes(d, 'with slow admin bodies pending');
  // Hanging up mid-body is answered (or dropped) without harm. The positive signal first: the
  // admin door has finished each of the five requests (its request line is written as one ends).
  const ended = (): number => d.sink.records().filter((l) => l.msg === 'admin request').length;
  const before = ended();
  for (const s of slows) s.socket.destroy();
  await until('the five hung-up requests ended', () => ended() === before + slows.length);
  await stillServes(d, 'after slow admin bodies hung up');
  assert.equal(asView(await d.admin('GET', '/v1/instances/vm1')).instance.hostname, 'fast-patch', 'no half body was applied');
});
