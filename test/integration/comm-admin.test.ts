/**
 * The nic admin API over a real admin socket, with a FakeCommNetwork: nic up records the tap and
 * answers the NIC's status, repeats are harmless, nic down forgets it, GET /v1/nics lists; bad
 * bodies, reserved tap names and missing taps are refused without echoing them; with the comm
 * network off the routes answer 409.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDaemon } from '../../daemon/daemon.js';
import { buildConfig } from '../../daemon/config/config.js';
import { FakeCommNetwork } from '../fakes/fake-comm-network.js';
import { request, sampleInstance, startTestDaemon, type Reply } from '../support/daemon.js';
import { sinkLogger } from '../support/sink.js';
import type { NicStatus } from '../../daemon/comm/network.js';
import { ctlAt } from '../support/metadctl-run.js';
import { until } from '../support/wait.js';

function tapOf(r: Reply): string | undefined {
  return (r.json as { instance: { comm: { tap?: string } } }).instance.comm.tap;
}

async function withAdmin(
  fn: (admin: (m: string, p: string, b?: unknown) => Promise<Reply>, net: FakeCommNetwork, socket: string) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'metad-nic-'));
  const net = new FakeCommNetwork();
  const { log } = sinkLogger();
  const socket = join(dir, 'a.sock');
  const config = buildConfig({
    stateDir: join(dir, 'state'),
    admin: { socket },
    guest: { listen: [{ host: '127.0.0.1', port: 0 }], commRange: '127.0.0.0/8' },
  });
  const d = await createDaemon(config, { log, commNetwork: net });
  const handle = d.adminApp.callback();
  const server = http.createServer((req, res) => {
    void handle(req, res);
  });
  await new Promise<void>((r) => server.listen(socket, () => r()));
  const admin = (method: string, path: string, body?: unknown): Promise<Reply> => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return request(
      { socketPath: socket, method, path, headers: payload === undefined ? {} : { 'content-type': 'application/json' } },
      payload,
    );
  };
  try {
    await fn(admin, net, socket);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('nic up / down / list through the admin API', async () => {
  await withAdmin(async (admin, net) => {
    assert.equal((await admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201);
    net.links.add('mtap1');
    const up = await admin('POST', '/v1/instances/vm1/nic', { tap: 'mtap1', state: 'up' });
    assert.equal(up.status, 200, up.text);
    const st = up.json as NicStatus;
    assert.equal(st.tap, 'mtap1');
    assert.equal(st.rules, true);
    assert.equal((await admin('POST', '/v1/instances/vm1/nic', { tap: 'mtap1', state: 'up' })).status, 200);
    assert.equal(tapOf(await admin('GET', '/v1/instances/vm1')), 'mtap1');
    const list = (await admin('GET', '/v1/nics')).json as { nics: NicStatus[] };
    assert.deepEqual(
      list.nics.map((n) => [n.instance, n.tap]),
      [['vm1', 'mtap1']],
    );
    assert.equal((await admin('POST', '/v1/instances/vm1/nic', { tap: 'mtap1', state: 'down' })).status, 204);
    assert.equal((await admin('POST', '/v1/instances/vm1/nic', { tap: 'mtap1', state: 'down' })).status, 204);
    assert.equal(tapOf(await admin('GET', '/v1/instances/vm1')), undefined);
    // nic down: the instance stays in the list, shown down (no tap).
    assert.deepEqual(
      ((await admin('GET', '/v1/nics')).json as { nics: NicStatus[] }).nics.map((n) => [n.instance, n.tap, n.down, n.rules]),
      [['vm1', '', true, false]],
    );
  });
});

test('nic up refuses bad bodies, reserved names and missing taps, never echoing them', async () => {
  await withAdmin(async (admin) => {
    assert.equal((await admin('PUT', '/v1/instances/vm2', sampleInstance(2))).status, 201);
    for (const [body, status] of [
      [{ tap: 'vnetEVIL', state: 'up' }, 400],
      [{ tap: 'x'.repeat(16), state: 'up' }, 400],
      [{ tap: 'ok1', state: 'sideways' }, 400],
      [{ tap: 'ok1', state: 'up', extra: 1 }, 400],
      [{ state: 'up' }, 400],
      [{ tap: 'nosuchEVIL', state: 'up' }, 409],
    ] as const) {
      const r = await admin('POST', '/v1/instances/vm2/nic', body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.doesNotMatch(r.text, /EVIL|xxxxxxxxxxxxxxxx|sideways/);
    }
    assert.equal((await admin('POST', '/v1/instances/nobody/nic', { tap: 'mtap9', state: 'up' })).status, 404);
  });
});

test('with network.mode off the nic routes answer 409', async () => {
  const d = await startTestDaemon();
  try {
    assert.equal((await d.admin('GET', '/v1/nics')).status, 409);
    await d.admin('PUT', '/v1/instances/vm3', sampleInstance(3));
    assert.equal((await d.admin('POST', '/v1/instances/vm3/nic', { tap: 'mtap3', state: 'up' })).status, 409);
  } finally {
    await d.close();
  }
});

const ctl = ctlAt;

test('metadctl nic up | down | list drive the admin API; a missing tap is exit 1 with the reason', async () => {
  await withAdmin(async (admin, net, socket) => {
    assert.equal((await admin('PUT', '/v1/instances/vm5', sampleInstance(5))).status, 201);
    net.links.add('gnt.com.5');
    let r = await ctl(socket, ['nic', 'up', '--instance', 'vm5', '--tap', 'gnt.com.5']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /nic up: vm5 on gnt\.com\.5/);
    r = await ctl(socket, ['nic', 'list']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^INSTANCE\s+TAP\s+IPV4\s+MAC\s+TAP-UP\s+ADDRESSES\s+ROUTE\s+RULES\s+DHCP\n/);
    assert.match(r.out, /vm5\s+gnt\.com\.5\s+127\.0\.0\.6\s+\S+\s+yes\s+yes\s+yes\s+yes\s+yes/);
    r = await ctl(socket, ['--json', 'nic', 'list']);
    assert.equal((JSON.parse(r.out) as { nics: NicStatus[] }).nics[0]?.tap, 'gnt.com.5');
    r = await ctl(socket, ['nic', 'down', '--instance', 'vm5', '--tap', 'gnt.com.5']);
    assert.equal(r.code, 0, r.err);
    r = await ctl(socket, ['nic', 'list']);
    assert.match(r.out, /\nvm5\s+-\s+127\.0\.0\.6\s+\S+\s+down\s+NO\s+NO\s+NO\s+NO/, 'nic down: shown as down, not gone');
    r = await ctl(socket, ['nic', 'up', '--instance', 'vm5', '--tap', 'missing0']);
    assert.equal(r.code, 1);
    assert.match(r.err, /tap does not exist/);
    r = await ctl(socket, ['nic', 'up', '--instance', 'vm5']);
    assert.equal(r.code, 2, 'a missing --tap is a usage error');
  });
});

test('metadctl nic list shows the bridge membership in bridged mode (a BRIDGE column)', async () => {
  await withAdmin(async (admin, net, socket) => {
    net.bridge = 'metadbr0';
    for (const i of [5, 6]) assert.equal((await admin('PUT', `/v1/instances/vm${String(i)}`, sampleInstance(i))).status, 201);
    net.links.add('gnt.com.5');
    assert.equal((await ctl(socket, ['nic', 'up', '--instance', 'vm5', '--tap', 'gnt.com.5'])).code, 0);
    net.links.add('gnt.com.6');
    assert.equal((await ctl(socket, ['nic', 'up', '--instance', 'vm6', '--tap', 'gnt.com.6'])).code, 0);
    net.links.delete('gnt.com.6');
    const r = await ctl(socket, ['nic', 'list']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^INSTANCE\s+TAP\s+IPV4\s+MAC\s+TAP-UP\s+BRIDGE\s+ADDRESSES\s+ROUTE\s+RULES\s+DHCP\n/);
    assert.match(r.out, /vm5\s+gnt\.com\.5\s+\S+\s+\S+\s+yes\s+metadbr0 isolated\s+yes/);
    assert.match(r.out, /vm6\s+gnt\.com\.6\s+\S+\s+\S+\s+missing\s+NO\s+NO/);
  });
});

test('health and metrics: the last reconcile (ok with its duration, then a failure with its reason), shown by metadctl health', async () => {
  await withAdmin(async (admin, net, socket) => {
    const h0 = (await admin('GET', '/v1/health')).json as { network: { mode: string; lastReconcile?: { ok: boolean; ms?: number } } };
    assert.equal(h0.network.lastReconcile?.ok, true, 'the first reconcile at the start');
    assert.equal(typeof h0.network.lastReconcile.ms, 'number');
    const m0 = (await admin('GET', '/v1/metrics')).text;
    assert.match(m0, /^metad_comm_reconcile_seconds_count 1$/m);
    assert.match(m0, /^metad_comm_reconciles_total\{result="ok"\} 1$/m);

    net.failNext = new Error('nft: the table could not be replaced');
    assert.equal((await admin('PUT', '/v1/instances/vm1', sampleInstance(1))).status, 201); // a store change: a reconcile
    const down = await until('the failed reconcile in health', async () => {
      const h = (await admin('GET', '/v1/health')).json as { network: { lastReconcile?: { ok: boolean; error?: string } } };
      return h.network.lastReconcile?.ok === false ? h : undefined;
    });
    assert.equal(down.network.lastReconcile?.error, 'nft: the table could not be replaced');
    const m1 = (await admin('GET', '/v1/metrics')).text;
    assert.match(m1, /^metad_comm_reconcile_seconds_count 1$/m, 'a failed reconcile is not timed');
    assert.match(m1, /^metad_comm_reconciles_total\{result="failed"\} 1$/m);
    const ctl = await ctlAt(socket, ['health']);
    assert.equal(ctl.code, 0, ctl.err);
    assert.match(ctl.out, /^network off: last reconcile FAILED at \d{4}-\d\d-\d\dT[\d:.]+Z: nft: the table could not be replaced$/m);
  });
});
