/**
 * A stub admin API for metadctl's unit tests: a node:http server on a unix socket in a temp dir
 * that records every request and answers as docs/admin-api.md says. `useAdminStub()` installs
 * the before/after hooks of the calling test file and returns the state and helpers.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, beforeEach } from 'node:test';
import { main } from '../../cli/metadctl.js';

export interface Recorded {
  method: string;
  url: string;
  contentType: string | undefined;
  body: Buffer;
}

export interface Reply {
  status: number;
  json?: unknown;
  body?: string | Buffer;
  type?: string;
}

export type Route = Reply | ((req: Recorded, nth: number) => Reply | Promise<Reply>);

export const UUID = '6f1c2a4e-8b3d-4c5e-9f10-1a2b3c4d5e6f';
export const VIEW = {
  instance: {
    name: 'web1',
    uuid: UUID,
    hostname: 'web1.example.org',
    comm: { mac: '52:54:00:12:34:56', ipv4: '10.0.0.5', tap: 'tap-web1' },
    params: { public: { MODE: 'prod', MOTD: 'line1\nline2' } },
  },
  status: {
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-02T03:04:05.000Z',
    generation: 7,
    params: {
      public: ['MODE', 'MOTD'],
      private: ['API_USER', 'DB_USER'],
      secret: [
        { name: 'DB_PASSWORD', expiresAt: '2099-01-01T00:00:00.000Z', claimOnce: true, claimedAt: null },
        { name: 'TOKEN', expiresAt: '2099-02-01T00:00:00.000Z', claimOnce: false, claimedAt: null },
      ],
    },
    iamRole: 'web-role',
    password: false,
    pipe: { toGuestBytes: 3, toHostBytes: 0 },
  },
};
const SUMMARIES = [
  {
    name: 'db1',
    uuid: '00000000-0000-4000-8000-000000000001',
    hostname: 'db1',
    commIpv4: '10.0.0.10',
    commMac: '52:54:00:00:00:10',
    generation: 12,
    updatedAt: '2025-01-01T00:00:00.000Z',
    origin: 'admin',
  },
  {
    name: 'web1',
    uuid: UUID,
    hostname: 'web1',
    commIpv4: '10.0.0.5',
    commMac: '52:54:00:12:34:56',
    tap: 'tap-web1',
    generation: 7,
    updatedAt: '2025-01-02T00:00:00.000Z',
    origin: 'ganeti',
  },
];
const PARAMS = {
  public: { MODE: 'prod' },
  private: ['API_USER'],
  secret: [{ name: 'DB_PASSWORD', expiresAt: '2099-01-01T00:00:00.000Z', claimOnce: true, claimedAt: '2025-01-03T00:00:00.000Z' }],
};
const NOT_FOUND: Reply = { status: 404, json: { code: 'NotFound', message: 'no instance named nope', details: [] } };
export const PEM = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n';

/** The stub's state; `requests` and `routes` are fresh for every test. */
export const stub = {
  dir: '',
  socket: '',
  requests: [] as Recorded[],
  routes: new Map<string, Route>(),
};
let server: http.Server;

function defaultRoutes(): Map<string, Route> {
  return new Map<string, Route>([
    ['GET /v1/health', { status: 200, json: { status: 'ok', instances: 2 } }],
    ['GET /v1/instances', { status: 200, json: { instances: SUMMARIES } }],
    ['PUT /v1/instances/web1', { status: 201, json: VIEW }],
    ['GET /v1/instances/web1', { status: 200, json: VIEW }],
    ['GET /v1/instances/nope', NOT_FOUND],
    ['PATCH /v1/instances/web1', { status: 200, json: VIEW }],
    ['DELETE /v1/instances/web1', { status: 204 }],
    ['GET /v1/instances/web1/params', { status: 200, json: PARAMS }],
    ['PUT /v1/instances/web1/params/public', { status: 200, json: PARAMS }],
    ['PATCH /v1/instances/web1/params/public', { status: 200, json: PARAMS }],
    ['PATCH /v1/instances/web1/params/secret', { status: 200, json: PARAMS }],
    ['PATCH /v1/instances/web1/params/private', { status: 200, json: PARAMS }],
    ['DELETE /v1/instances/web1/params/secret', { status: 204 }],
    ['DELETE /v1/instances/web1/params/public/MODE', { status: 204 }],
    [
      'DELETE /v1/instances/web1/params/public/GONE',
      { status: 404, json: { code: 'NotFound', message: 'no public parameter GONE', details: [] } },
    ],
    ['DELETE /v1/instances/web1/params/public/REGION', { status: 204 }],
    ['POST /v1/instances/web1/pipe', (req) => ({ status: 202, json: { queuedBytes: req.body.length } })],
    ['GET /v1/instances/web1/pipe', { status: 200, body: Buffer.from([0x68, 0x69, 0x00, 0xff]), type: 'application/octet-stream' }],
    ['GET /v1/instances/web1/password', { status: 200, json: { password: 'ZW5jcnlwdGVk' } }],
    ['DELETE /v1/instances/web1/password', { status: 204 }],
    ['GET /v1/identity/public-key', { status: 200, body: PEM, type: 'application/x-pem-file' }],
  ]);
}

/** Install the stub for the calling test file. */
export function useAdminStub(): void {
  before(async () => {
    stub.dir = await mkdtemp(join(tmpdir(), 'metadctl-test-'));
    stub.socket = join(stub.dir, 'admin.sock');
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const rec: Recorded = {
          method: req.method ?? '',
          url: req.url ?? '',
          contentType: req.headers['content-type'],
          body: Buffer.concat(chunks),
        };
        stub.requests.push(rec);
        const key = `${rec.method} ${rec.url.split('?')[0]}`;
        const route = stub.routes.get(key) ?? { status: 404, json: { code: 'NotFound', message: `no route ${key}`, details: [] } };
        const nth = stub.requests.filter((r) => `${r.method} ${r.url.split('?')[0]}` === key).length;
        void Promise.resolve(typeof route === 'function' ? route(rec, nth) : route).then((reply) => {
          if (reply.json !== undefined) {
            res.writeHead(reply.status, { 'content-type': 'application/json' }).end(JSON.stringify(reply.json));
          } else {
            res.writeHead(reply.status, reply.type ? { 'content-type': reply.type } : {}).end(reply.body ?? '');
          }
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(stub.socket, resolve));
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(stub.dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    stub.requests = [];
    stub.routes = defaultRoutes();
  });
}

class Sink extends Writable {
  chunks: Buffer[] = [];
  constructor(private readonly onData?: (all: Buffer) => void) {
    super();
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    this.onData?.(this.buffer);
    cb();
  }
  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
  get text(): string {
    return this.buffer.toString('utf8');
  }
}

export interface RunOpts {
  stdin?: string | Buffer;
  env?: Record<string, string>;
  noSocket?: boolean;
  signal?: AbortSignal;
  onStdout?: (all: Buffer) => void;
}

export async function run(args: string[], opts: RunOpts = {}): Promise<{ code: number; out: string; err: string; outBuf: Buffer }> {
  const stdout = new Sink(opts.onStdout);
  const stderr = new Sink();
  const stdin = Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]);
  const argv = opts.noSocket ? args : ['--socket', stub.socket, ...args];
  const code = await main(argv, { stdout, stderr, stdin, env: opts.env ?? {}, ...(opts.signal ? { signal: opts.signal } : {}) });
  return { code, out: stdout.text, err: stderr.text, outBuf: stdout.buffer };
}

export function only(): Recorded {
  assert.equal(stub.requests.length, 1, `expected one request, got ${stub.requests.map((r) => `${r.method} ${r.url}`).join(', ')}`);
  return stub.requests[0]!;
}

export function jsonBody(r: Recorded): unknown {
  return JSON.parse(r.body.toString('utf8'));
}

export async function file(name: string, content: string): Promise<string> {
  const p = join(stub.dir, name);
  await writeFile(p, content);
  return p;
}
