/**
 * A reload applied to the running graph (runDaemon's `reload`, what SIGHUP calls): the guest
 * listeners take the new timeouts and connection caps at once, the per-source cap included.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig } from '../../daemon/config/config.js';
import { runDaemon } from '../../daemon/process/main.js';
import { sinkLogger } from '../support/sink.js';
import { until } from '../support/wait.js';

test('reload: guest listeners take new timeouts and caps; the per-source cap applies to new connections', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const base = {
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'admin.sock') },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  };
  const { log } = sinkLogger();
  const r = await runDaemon(buildConfig(base), log);
  t.after(() => r.close());
  const server = r.guestServers[0]!;
  assert.equal(server.headersTimeout, 5000);

  const plan = r.reload(
    buildConfig({
      ...base,
      guest: {
        ...base.guest,
        headersTimeoutMs: 700,
        requestTimeoutMs: 900,
        keepAliveTimeoutMs: 300,
        maxConnections: 100,
        maxConnectionsPerSource: 2,
      },
    }),
  );
  assert.deepEqual(plan.needsRestart, []);
  assert.equal(server.headersTimeout, 700);
  assert.equal(server.requestTimeout, 900);
  assert.equal(server.keepAliveTimeout, 300);
  assert.equal(server.maxConnections, 100);

  const port = r.guestAddresses[0]!.port;
  const socks = await Promise.all(
    Array.from(
      { length: 4 },
      () =>
        new Promise<net.Socket>((resolve) => {
          const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.9' }, () => resolve(s));
          s.on('error', () => undefined);
          s.resume();
        }),
    ),
  );
  t.after(() => socks.forEach((s) => s.destroy()));
  // The door decides in accept order: once two are closed, it has decided on all four.
  await until('two connections closed', () => socks.filter((s) => s.destroyed || s.readableEnded).length >= 2);
  assert.equal(socks.filter((s) => s.destroyed || s.readableEnded).length, 2, 'two over the new per-source cap of 2 are closed');
});
