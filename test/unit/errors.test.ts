/**
 * The closed error table: every code the daemon reports (daemon/errors.ts) has its HTTP status
 * at the doors (routes/errors.ts), and docs/admin-api.md lists exactly those codes with those
 * statuses.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http, { type IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import Koa from 'koa';
import { DaemonError, ERROR_CODES, type ErrorCode } from '../../daemon/errors.js';
import { adminErrors, HTTP_STATUS } from '../../routes/errors.js';
import { readBody } from '../../routes/body.js';
import { sinkLogger } from '../support/sink.js';

test('docs/admin-api.md lists every error code with its status, and nothing else', () => {
  const doc = readFileSync(new URL('../../../docs/admin-api.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| ([A-Z][A-Za-z]+) \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  assert.deepEqual(rows.sort(), codes.map((c) => [c, HTTP_STATUS[c]]).sort());
});

/** One request through a koa app whose only route throws `err`, behind the admin door's error mapping. */
async function answerTo(
  err: unknown,
): Promise<{ status: number; body: Record<string, unknown>; raw: string; headers: Headers; log: string }> {
  const { sink, log } = sinkLogger();
  const app = new Koa();
  app.use(adminErrors(log));
  app.use(() => {
    throw err;
  });
  const handler = app.callback();
  const server = http.createServer((req, res) => void handler(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as { port: number };
    const res = await fetch(`http://127.0.0.1:${String(port)}/v1/x`);
    const raw = await res.text();
    return { status: res.status, body: JSON.parse(raw) as Record<string, unknown>, raw, headers: res.headers, log: sink.text };
  } finally {
    server.close();
  }
}

test('admin door: a bug answers 500 Internal with an incident id, no message and no stack; the log has the stack under that id', async () => {
  const bug = new TypeError('CANARY-bug-detail-3f9 at /secret/path');
  const r = await answerTo(bug);
  assert.equal(r.status, 500);
  assert.equal(r.body.code, 'Internal');
  assert.match(String(r.body.incidentId), /^[0-9a-f-]{36}$/);
  assert.ok(!r.raw.includes('CANARY') && !r.raw.includes('/secret/path') && !r.raw.includes('    at '), r.raw);
  assert.ok(r.log.includes(String(r.body.incidentId)) && r.log.includes('CANARY-bug-detail-3f9'), 'the log keeps what the answer does not');
});

test('admin door: an http-errors style error (status, headers) maps onto the table; a 5xx one stays Internal', async () => {
  const r = await answerTo(Object.assign(new Error('CANARY-x'), { status: 405, headers: { Allow: 'GET' } }));
  assert.equal(r.status, 405);
  assert.equal(r.body.code, 'MethodNotAllowed');
  assert.equal(r.headers.get('allow'), 'GET');
  assert.ok(!r.raw.includes('CANARY'));
  const unknown = await answerTo(Object.assign(new Error('teapot'), { status: 418 }));
  assert.equal(unknown.status, 500, 'a status outside the table is not passed through');
  assert.equal((await answerTo(Object.assign(new Error('down'), { statusCode: 503 }))).status, 500);
});

test('readBody: an error raw-body does not classify is passed on, not mistaken for bad input', async () => {
  const req = new PassThrough() as unknown as IncomingMessage;
  Object.assign(req, { headers: {} });
  const p = readBody(req, 1024);
  (req as unknown as PassThrough).destroy(new Error('CANARY-socket-broke'));
  await assert.rejects(p, (e: Error) => !(e instanceof DaemonError) && /CANARY-socket-broke|aborted/.test(e.message));
});
