/**
 * Start the real daemon graph on real sockets for integration tests: temp state dir, admin
 * app on a unix socket, guest app on 127.0.0.1:0 (all of 127/8 stands in for guests), a sink
 * logger and an optional fake clock. The admin door is reached through the one admin client
 * (cli/client.ts): `client` for typed calls, `admin()` for any request and any status.
 */
import http from 'node:http';
import jsonMergePatch from 'json-merge-patch';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, type Config } from '../../daemon/config/config.js';
import { createDaemon, type Daemon, type DaemonDeps } from '../../daemon/daemon.js';
import { createGuestServer } from '../../daemon/process/main.js';
import type { Clock } from '../../daemon/clock.js';
import { AdminClient } from '../../cli/client.js';
import { sinkLogger, type LogSink } from './sink.js';
import { FakeHypervisor } from '../fakes/fake-hypervisor.js';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The body parsed as JSON (undefined when it is not JSON): read it as the type the route sends. */
  json: unknown;
}

function reply(status: number, headers: http.IncomingHttpHeaders, body: Buffer): Reply {
  const text = body.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status, headers, body, text, json };
}

/**
 * Any admin request through the one admin client (cli/client.ts), any status: a body that is
 * not a string or Buffer is JSON-encoded and sent as application/json unless `headers` say
 * otherwise. Without a client, one is made for `socket` (a short connection per request).
 */
export async function adminRequest(
  target: AdminClient | string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const client = typeof target === 'string' ? new AdminClient(target, { userAgent: 'metad-test' }) : target;
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const r = await client.request(method, path, { ...(payload !== undefined ? { body: payload } : {}), headers });
  return reply(r.status, r.headers, r.body);
}

/** A plain node:http request (the guest door; admin exchanges go through `adminRequest`). */
export function request(opts: http.RequestOptions, body?: string | Buffer): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(reply(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
      // A transfer the server cut (a streamed answer that failed after its first byte).
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error(`the answer was cut after ${String(Buffer.concat(chunks).length)} bytes`));
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

export interface TestDaemon {
  dir: string;
  config: Readonly<Config>;
  daemon: Daemon;
  sink: LogSink;
  guestPort: number;
  /** The admin client on this daemon's socket (typed methods, typed errors). */
  client: AdminClient;
  /** The fake hypervisor the daemon's install jobs run on. */
  hv: FakeHypervisor;
  /** Any admin request, any status: JSON-encodes a non-string body and sends it as application/json unless `headers` say otherwise. */
  admin(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  /** A guest request from source address `from` (127.0.0.x). */
  guest(from: string, method: string, path: string, headers?: Record<string, string>, body?: string | Buffer): Promise<Reply>;
  close(): Promise<void>;
}

/**
 * Install jobs in test daemons run on the strict fake hypervisor (test/fakes/fake-hypervisor.ts)
 * with a stand-in preparation (the domain XML names the domain; nothing to clean up).
 */
function fakeJobDeps(hv: FakeHypervisor): Pick<DaemonDeps, 'hypervisor' | 'prepare'> {
  return {
    hypervisor: () => Promise.resolve(hv),
    prepare: (_instance, domain) => Promise.resolve({ xml: `<domain><name>${domain}</name></domain>`, cleanup: () => Promise.resolve() }),
  };
}

/** Start an install job of `name` (the guest door serves its secrets only while one runs). */
export async function startInstall(d: Pick<TestDaemon, 'admin'>, name: string, timeoutSec?: number): Promise<void> {
  const r = await d.admin('POST', `/v1/instances/${name}/install`, timeoutSec === undefined ? undefined : { timeoutSec });
  if (r.status !== 202) throw new Error(`install of ${name}: ${String(r.status)} ${r.text}`);
}

export async function startTestDaemon(
  opts: {
    config?: Record<string, unknown>;
    clock?: Clock;
    dir?: string;
    hypervisor?: DaemonDeps['hypervisor'];
    /** A comm network (test/fakes/fake-comm-network.ts) makes the nic routes work. */
    commNetwork?: DaemonDeps['commNetwork'];
  } = {},
): Promise<TestDaemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'metad-test-'));
  const base = {
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'admin.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
    // OS definitions of the tests: <dir>/os/<name>.
    os: { searchPath: [join(dir, 'os')] },
  };
  const config = buildConfig(jsonMergePatch.apply(base, opts.config ?? {}));
  const { sink, log } = sinkLogger();
  const hv = new FakeHypervisor();
  const daemon = await createDaemon(config, {
    log,
    ...fakeJobDeps(hv),
    ...(opts.hypervisor ? { hypervisor: opts.hypervisor } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.commNetwork ? { commNetwork: opts.commNetwork } : {}),
  });
  const adminHandler = daemon.adminApp.callback();
  const adminServer = http.createServer((req, res) => void adminHandler(req, res));
  await new Promise<void>((r) => adminServer.listen(config.admin.socket, r));
  const guestServer = createGuestServer(daemon, config, log);
  await new Promise<void>((r) => guestServer.listen(0, '0.0.0.0', r));
  const guestPort = (guestServer.address() as { port: number }).port;
  const agent = new http.Agent({ keepAlive: false });
  const client = new AdminClient(config.admin.socket, { userAgent: 'metad-test' });
  return {
    dir,
    config,
    daemon,
    hv,
    sink,
    guestPort,
    client,
    admin(method, path, body, headers = {}) {
      return adminRequest(client, method, path, body, headers);
    },
    guest(from, method, path, headers = {}, body) {
      return request(
        { host: from === '::1' ? '::1' : '127.0.0.1', port: guestPort, localAddress: from, method, path, headers, agent },
        body,
      );
    },
    async close() {
      client.close();
      await new Promise<void>((r) => {
        adminServer.close(() => r());
        adminServer.closeAllConnections();
      });
      await new Promise<void>((r) => {
        guestServer.close(() => r());
        guestServer.closeAllConnections();
      });
      await daemon.stop();
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A valid instance document; `n` picks the comm address 127.0.0.(n+1). */
export function sampleInstance(n: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const hex = n.toString(16).padStart(12, '0');
  return {
    name: `vm${n}`,
    uuid: `00000000-0000-4000-8000-${hex}`,
    hostname: `vm${n}`,
    comm: {
      mac: `52:54:00:${hex.slice(6, 8)}:${hex.slice(8, 10)}:${hex.slice(10, 12)}`,
      ipv4: `127.0.${Math.floor((n + 1) / 256)}.${(n + 1) % 256}`,
    },
    ...extra,
  };
}
