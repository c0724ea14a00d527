/**
 * Guest sockets are gone within their timeout plus a short grace, whatever the client does:
 * many sockets from unregistered loopback sources that send half a request (or pipeline
 * requests) and never read must not keep their fds, per-source slots and maxConnections slots,
 * so a registered guest is served again and the server's connection count drops to zero.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type http from 'node:http';
import { startTestDaemon, sampleInstance, type TestDaemon } from '../support/daemon.js';
import { createGuestServer } from '../../daemon/process/main.js';
import { until } from '../support/wait.js';

const connections = (s: http.Server): Promise<number> =>
  new Promise((resolve, reject) => s.getConnections((err, n) => (err ? reject(err) : resolve(n))));

/** Until the server holds no connection (fails naming `what` if it still holds some after 10 s). */
async function drained(s: http.Server, what: string): Promise<void> {
  await until(what, async () => (await connections(s)) === 0, 10_000);
}

/** A guest door with `cfg` on 127.0.0.1:<any port>, closed (with its sockets) after the test. */
async function listenGuest(t: TestContext, d: TestDaemon, cfg: TestDaemon['config']): Promise<{ server: http.Server; port: number }> {
  const server = createGuestServer(d.daemon, cfg, d.daemon.services.log);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.close();
    server.closeAllConnections();
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

function idleClient(port: number, from: string, send: string | ((s: net.Socket) => void)): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: from });
    s.on('error', () => undefined);
    s.once('connect', () => {
      s.pause(); // never reads: the server's answer and FIN stay unread
      if (typeof send === 'string') s.write(send);
      else send(s);
      resolve(s);
    });
  });
}

test('guest door: clients that never read cannot hold sockets past the timeout (no lock-out)', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1));
  const cfg = {
    ...d.config,
    guest: {
      ...d.config.guest,
      headersTimeoutMs: 200,
      requestTimeoutMs: 400,
      keepAliveTimeoutMs: 200,
      maxConnections: 40,
      maxConnectionsPerSource: 8,
    },
  };
  const { server, port } = await listenGuest(t, d, cfg);
  const attackers: net.Socket[] = [];
  t.after(() => attackers.forEach((s) => s.destroy()));
  // 40 sockets (the whole maxConnections) from 5 unregistered sources, half a request each.
  for (let i = 0; i < 40; i++)
    attackers.push(await idleClient(port, `127.0.0.${100 + (i % 5)}`, 'GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n'));
  assert.equal(await connections(server), 40, 'the attack holds every slot at first');
  // Timeout (200-400 ms) + grace (1 s) + guard interval: 10 s is far beyond; the old code never let go.
  await drained(server, 'every timed-out socket is destroyed, though its client never reads or closes');
  const r = await new Promise<string>((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }, () =>
      c.write('GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    );
    let out = '';
    c.on('data', (b: Buffer) => (out += b.toString()));
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
  assert.match(r, /^HTTP\/1\.1 200 /, 'the registered guest is served');
});

test('guest door: a guest pipelining requests without reading the answers is cut off', async (t) => {
  const d = await startTestDaemon();
  t.after(() => d.close());
  // 64 KiB of user data (the most there is): a few unread answers fill the socket buffers, then node stops
  // parsing; no request is in progress, so no node timeout applies, and nothing is idle.
  const userData = Buffer.alloc(64 * 1024, 'x').toString('base64');
  assert.equal((await d.admin('PUT', '/v1/instances/vm1', sampleInstance(1, { userData }))).status, 201);
  const cfg = { ...d.config, guest: { ...d.config.guest, headersTimeoutMs: 200, requestTimeoutMs: 400, keepAliveTimeoutMs: 200 } };
  const { server, port } = await listenGuest(t, d, cfg);
  const s = await idleClient(port, '127.0.0.2', 'GET /latest/user-data HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(400));
  t.after(() => s.destroy());
  assert.equal(await connections(server), 1);
  await drained(server, 'a stalled answer: the socket is destroyed');
});
