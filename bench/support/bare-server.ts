/**
 * Baseline server for bench/suites/guest.ts: a bare `node:http` server (no koa, no lookup, no
 * rate limit, no token check) answering fixed bodies, run in its own child process like the
 * daemon so both sides pay the same process and scheduling costs.
 *
 *   node dist/bench/support/bare-server.js SPEC.json
 *
 * SPEC.json: `{ "routes": { "/path": { "type": "text/plain", "body": "<base64>", "status"?: 200,
 * "headers"?: {…} } }, "maxLifeMs": N }`. Any method; the request target picks the answer.
 * Listens on 127.0.0.1, port 0, and prints `READY <port>` on stdout. Any other path: 404.
 * Stops by itself: on SIGTERM/SIGINT, when stdin closes (the bench process is gone), or after
 * `maxLifeMs` (default 15 min).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';

interface Spec {
  routes: Record<string, { type: string; body: string; status?: number; headers?: Record<string, string> }>;
  maxLifeMs?: number;
}

const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Spec;
const routes = new Map(
  Object.entries(spec.routes).map(([path, r]) => {
    const body = Buffer.from(r.body, 'base64');
    return [
      path,
      { status: r.status ?? 200, body, headers: { ...(r.headers ?? {}), 'Content-Type': r.type, 'Content-Length': String(body.length) } },
    ] as const;
  }),
);
const NOT_FOUND = Buffer.from('Not Found');

const server = http.createServer((req, res) => {
  const r = routes.get(req.url ?? '');
  if (r === undefined) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(NOT_FOUND.length) });
    res.end(NOT_FOUND);
    return;
  }
  res.writeHead(r.status, r.headers);
  res.end(r.body);
});

const stop = (): void => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
setTimeout(stop, spec.maxLifeMs ?? 15 * 60_000).unref();

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`READY ${(server.address() as AddressInfo).port}\n`);
});
