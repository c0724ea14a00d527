/**
 * The personalization package (daemon/jobs/package.ts) through the real daemon graph (install
 * jobs on the fake hypervisor) and real HTTP servers on loopback: metad fetches the instance's
 * `install.packageUrl` only while its install job runs and streams it to the guest unchanged;
 * basic auth comes from the secret parameters, which the guest never sees and which never follow a
 * redirect to another origin; every way a package server or a package can be bad (404, a login
 * page, a server that never answers or stalls, too large, too many redirects, and each kind of
 * malicious archive) is refused with its reason in the job's record, later requests of that job
 * are refused at once, and nothing of the package is written to the node's disk.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { startInstall, startTestDaemon, sampleInstance, type TestDaemon } from '../support/daemon.js';
import { tar, tgz } from '../support/tgz.js';
import { until } from '../support/wait.js';
import type { JobRecord } from '../../daemon/jobs/record.js';

const MAX_BYTES = 256 * 1024;
const LIMITS = {
  maxBytes: MAX_BYTES,
  maxEntries: 20,
  maxEntryBytes: 64 * 1024,
  maxUnpackedBytes: 512 * 1024,
  connectTimeoutMs: 1000,
  responseTimeoutMs: 400,
  idleTimeoutMs: 600,
  maxRedirects: 2,
};

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A server on 127.0.0.1 whose answers the test sets by path; it records each request's headers. */
async function packageServer(): Promise<{
  port: number;
  routes: Map<string, Handler>;
  seen: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}> {
  const routes = new Map<string, Handler>();
  const seen: http.IncomingHttpHeaders[] = [];
  const server = http.createServer((req, res) => {
    seen.push(req.headers);
    const h = routes.get(req.url ?? '');
    if (h) h(req, res);
    else res.writeHead(404).end('nope');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    routes,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const send =
  (body: Buffer, type = 'application/gzip', length = true): Handler =>
  (_req, res) => {
    res.writeHead(200, { 'content-type': type, ...(length ? { 'content-length': String(body.length) } : {}) });
    res.end(body);
  };

/** Every file under `dir` with its size (what the node's disk holds). */
function tree(dir: string): Map<string, number> {
  const out = new Map<string, number>();
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.set(p, statSync(p).size);
    }
  };
  walk(dir);
  return out;
}

describe('the personalization package', () => {
  let d: TestDaemon;
  let srv: Awaited<ReturnType<typeof packageServer>>;
  let other: Awaited<ReturnType<typeof packageServer>>;
  let n = 0;
  let good: Buffer;

  before(async () => {
    srv = await packageServer();
    other = await packageServer();
    d = await startTestDaemon({ config: { appliance: { package: LIMITS, pollMs: 20 } } });
    good = await tgz([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', body: 'from-the-package\n' },
      { name: 'root/.ssh/authorized_keys', body: 'ssh-ed25519 AAAA test\n', mode: 0o600 },
    ]);
  });
  after(async () => {
    await d.close();
    await srv.close();
    await other.close();
  });

  /** A new instance whose package is `path` on the test server; its comm address and name. */
  const instance = async (path: string, secret: Record<string, string> = {}): Promise<{ name: string; ip: string }> => {
    n++;
    const doc = sampleInstance(n, { install: { packageUrl: `http://127.0.0.1:${String(srv.port)}${path}` } });
    const put = await d.admin('PUT', `/v1/instances/${String(doc.name)}`, doc);
    assert.equal(put.status, 201, put.text);
    if (Object.keys(secret).length > 0) {
      const s = await d.admin('PUT', `/v1/instances/${String(doc.name)}/params/secret`, { values: secret });
      assert.equal(s.status, 200, s.text);
    }
    return { name: String(doc.name), ip: (doc.comm as { ipv4: string }).ipv4 };
  };
  const job = async (name: string): Promise<JobRecord> => (await d.admin('GET', `/v1/instances/${name}/install`)).json as JobRecord;
  const running = async (name: string): Promise<JobRecord> => {
    await startInstall(d, name);
    await until(`${name}'s job is live`, async () => (await job(name)).state === 'booting');
    return job(name);
  };
  /** The appliance powers off without a final report: the job ends failed; its record. */
  const powerOff = async (name: string, domain: string): Promise<JobRecord> => {
    d.hv.powerOff(domain);
    await until(`${name}'s job ended`, async () => (await job(name)).outcome !== undefined);
    return job(name);
  };
  const getPackage = (ip: string) => d.guest(ip, 'GET', '/ganeti/latest/os/package');

  it('served only while the install job runs, byte for byte; the record stays clean', async () => {
    srv.routes.set('/good.tgz', send(good));
    const { name, ip } = await instance('/good.tgz');
    assert.equal((await getPackage(ip)).status, 404, 'no job: not served');
    assert.equal(srv.seen.length, 0, 'not even fetched');
    const rec = await running(name);
    const r = await getPackage(ip);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/gzip');
    assert.ok(r.body.equals(good));
    // Chunked from the server (no length): the same bytes.
    srv.routes.set('/good.tgz', send(good, 'application/x-gzip', false));
    const c = await getPackage(ip);
    assert.equal(c.status, 200);
    assert.ok(c.body.equals(good));
    assert.equal(c.headers['content-length'], undefined);
    const ended = await powerOff(name, rec.domain);
    assert.equal(ended.reason, 'powered off without a final report', 'no package failure recorded');
    assert.equal((await getPackage(ip)).status, 404, 'the job ended: not served');
  });

  it('basic auth from the secret parameters, which the guest never sees and which never follow a redirect to another origin', async () => {
    const creds = `Basic ${Buffer.from('installer:pa55-w0rd').toString('base64')}`;
    srv.routes.set('/auth.tgz', (req, res) => {
      if (req.headers.authorization !== creds) res.writeHead(401, { 'www-authenticate': 'Basic' }).end();
      else send(good)(req, res);
    });
    const { name, ip } = await instance('/auth.tgz', {
      'package-username': 'installer',
      'package-password': 'pa55-w0rd',
      api_token: 'tok-1',
    });
    const rec = await running(name);
    const params = await d.guest(ip, 'GET', '/ganeti/latest/os/parameters.json');
    assert.equal(params.status, 200);
    assert.match(params.text, /tok-1/, 'other secrets are served');
    assert.doesNotMatch(params.text, /installer|pa55-w0rd|package-username|package-password/);
    const r = await getPackage(ip);
    assert.equal(r.status, 200, 'fetched with the credentials, after the guest read its parameters');
    assert.ok(r.body.equals(good));
    // The same credentials behind a redirect to another port: not sent there.
    other.routes.set('/elsewhere.tgz', send(good));
    srv.routes.set('/auth.tgz', (_req, res) =>
      res.writeHead(302, { location: `http://127.0.0.1:${String(other.port)}/elsewhere.tgz` }).end(),
    );
    const moved = await getPackage(ip);
    assert.equal(moved.status, 200);
    assert.equal(other.seen.length, 1);
    assert.equal(other.seen[0]?.authorization, undefined, 'no credentials to another origin');
    await powerOff(name, rec.domain);
    assert.equal(d.sink.text.includes('pa55-w0rd'), false, 'never logged');
  });

  const hang: Handler = () => undefined; // never answers
  const stall: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/gzip' });
    res.write(good.subarray(0, 20)); // then nothing more
  };
  const is = (h: Handler) => () => Promise.resolve(h);
  const refusals: [string, () => Promise<Handler>, RegExp][] = [
    ['a 404', is((_req, res) => res.writeHead(404).end()), /^package: HTTP 404 from the package server$/],
    ['a 500', is((_req, res) => res.writeHead(500).end()), /^package: HTTP 500 from the package server$/],
    [
      'a login page',
      is(send(Buffer.from('<html>login</html>'), 'text/html')),
      /^package: content type text\/html \(not a gzipped tar archive\)$/,
    ],
    ['a server that never answers', is(hang), /^package: no response from the package server within 400 ms$/],
    ['a server that stalls in the body', is(stall), /^package: no data from the package server within 600 ms$/],
    ['a Content-Length over maxBytes', is(send(randomBytes(MAX_BYTES + 1))), /^package: larger than 262144 bytes$/],
    [
      'a chunked body over maxBytes',
      async () =>
        send(
          gzipSync(
            await tar([
              { name: 'big', body: randomBytes(60 * 1024) },
              { name: 'big2', body: randomBytes(60 * 1024) },
              { name: 'big3', body: randomBytes(60 * 1024) },
              { name: 'big4', body: randomBytes(60 * 1024) },
              { name: 'big5', body: randomBytes(60 * 1024) },
            ]),
            { level: 0 },
          ),
          'application/gzip',
          false,
        ),
      /^package: larger than 262144 bytes$/,
    ],
    ['a redirect loop', is((_req, res) => res.writeHead(302, { location: '/loop.tgz' }).end()), /^package: more than 2 redirects$/],
    [
      'an absolute path',
      async () => send(await tgz([{ name: '/etc/shadow', body: 'x' }])),
      /archive refused at entry "\/etc\/shadow": absolute name/,
    ],
    [
      '..',
      async () => send(await tgz([{ name: 'etc/../../x', body: 'x' }])),
      /archive refused at entry "etc\/..\/..\/x": ".." in the name/,
    ],
    [
      'a symlink escape',
      async () => send(await tgz([{ name: 'etc', type: 'symlink', linkname: '../../etc' }])),
      /archive refused at entry "etc": symbolic link with "\.\."/,
    ],
    [
      'a hard-link escape',
      async () => send(await tgz([{ name: 'shadow', type: 'link', linkname: '/etc/shadow' }])),
      /archive refused at entry "shadow": hard link out of the tree/,
    ],
    [
      'a device node',
      async () => send(await tgz([{ name: 'dev/sda', type: 'block-device', devmajor: 8, devminor: 0 }])),
      /entry "dev\/sda": type block-device/,
    ],
    ['a FIFO', async () => send(await tgz([{ name: 'fifo', type: 'fifo' }])), /entry "fifo": type fifo/],
    [
      'an oversize entry',
      async () => send(await tgz([{ name: 'big', body: Buffer.alloc(64 * 1024 + 1) }])),
      /entry "big": larger than 65536 bytes/,
    ],
    [
      'an entry bomb',
      async () => send(await tgz(Array.from({ length: 25 }, (_, i) => ({ name: `f${String(i)}`, body: 'x' })))),
      /entry "f20": more than 20 entries/,
    ],
    [
      'a gzip bomb',
      // Ten entries of 60 KiB of zeros: each within maxEntryBytes, together over maxUnpackedBytes; 6 KB compressed.
      () => tgz(Array.from({ length: 10 }, (_, i) => ({ name: `z${String(i)}`, body: Buffer.alloc(60 * 1024) }))).then((b) => send(b)),
      /^package: archive refused: more than 524288 bytes unpacked$/,
    ],
    [
      'a truncated gzip',
      () => Promise.resolve(send(good.subarray(0, good.length - 12))),
      /archive refused: not gzip: unexpected end of file/,
    ],
  ];
  for (const [what, make, reason] of refusals) {
    it(`${what}: the job fails with its reason, later requests refused at once, nothing on the node's disk`, async () => {
      const path = `/case-${String(n + 1)}.tgz`;
      const h = await make();
      srv.routes.set(path, h);
      if (what === 'a redirect loop') srv.routes.set('/loop.tgz', h);
      const { name, ip } = await instance(path);
      const rec = await running(name);
      let ended: JobRecord | undefined;
      try {
        const before = tree(d.dir);
        const hits = srv.seen.length;
        const r = await getPackage(ip).catch((e: unknown) => ({ status: -1, error: e }));
        // Refused before any byte (404), or cut once the bad part came (the guest sees a broken transfer).
        assert.ok(r.status === 404 || r.status === -1, `${what}: ${String(r.status)}`);
        const again = await getPackage(ip);
        assert.equal(again.status, 404, 'refused at once');
        assert.ok(srv.seen.length - hits <= (what === 'a redirect loop' ? 3 : 1), 'not fetched again');
        for (const [p, size] of tree(d.dir)) {
          if (before.get(p) === size || p.includes('/jobs/')) continue;
          assert.fail(`a file appeared or grew during the fetch: ${p}`);
        }
      } finally {
        ended = await powerOff(name, rec.domain); // the next case's job must not queue behind this one
      }
      assert.equal(ended.outcome, 'failed');
      assert.match(ended.reason ?? '', reason);
      assert.match(ended.reason ?? '', /^package: /);
    });
  }

  it('a package URL must be http(s), end in .tar.gz or .tgz and carry no credentials', async () => {
    for (const bad of ['ftp://h/p.tgz', 'http://h/p.zip', 'http://user:pw@h/p.tgz', 'http://h/p.tgz#x', 'http://h']) {
      const doc = sampleInstance(900, { install: { packageUrl: bad } });
      assert.equal((await d.admin('PUT', '/v1/instances/vm900', doc)).status, 400, bad);
    }
    for (const ok of ['https://h.example/p.tar.gz', 'http://h:8080/a/b.tgz?sig=abc']) {
      const doc = sampleInstance(900, { install: { packageUrl: ok } });
      assert.ok([200, 201].includes((await d.admin('PUT', '/v1/instances/vm900', doc)).status), ok);
    }
  });
});
