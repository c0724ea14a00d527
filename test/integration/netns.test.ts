// The tripwire netns used by the client conformance tests really catches
// traffic that tries to leave loopback, and leaves loopback traffic alone.
// Every packet here stays inside a namespace this test creates and deletes.

import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { canUseNetns, createNetns, netnsExists, skipOrFail, type Netns } from '../support/netns.js';
import { until } from '../support/wait.js';

const PY = '/usr/bin/python3';

// Try a TCP connect; print one JSON line; exit 0 only if it connected.
const CONNECT_PY = `
import json, socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    socket.create_connection((host, port), timeout=timeout).close()
except OSError as e:
    print(json.dumps({"connected": False, "error": "%s: %s" % (type(e).__name__, e)}))
    sys.exit(1)
print(json.dumps({"connected": True}))
`;

// GET a URL without any proxy; print the status.
const GET_PY = `
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(sys.argv[1], timeout=5) as r:
    print(r.status)
`;

// What cloud-init's util.is_resolvable() does first.
const RESOLVE_PY = `
import socket, sys
for name in ("does-not-exist.example.com.", "example.invalid.", "__cloud_init_expected_not_found__"):
    try:
        socket.getaddrinfo(name, None, 0, 0, socket.SOCK_STREAM, socket.AI_CANONNAME)
        print("resolved", name)
        sys.exit(1)
    except OSError:
        pass
print("ok")
`;

/** The port python's http.server says it serves on. */
async function serverPort(child: ChildProcess): Promise<number> {
  let buf = '';
  child.stdout?.on('data', (b: Buffer) => (buf += b.toString()));
  const port = await until(
    'http.server started',
    () => {
      if (child.exitCode !== null) throw new Error(`http.server exited (${String(child.exitCode)}): ${buf}`);
      return /port (\d+)/.exec(buf)?.[1];
    },
    { detail: () => buf },
  );
  return Number(port);
}

test('tripwire netns: off-loopback traffic is dropped and counted, loopback works', async (t) => {
  const can = canUseNetns();
  if (!can.ok) {
    skipOrFail(t, can.why ?? 'netns unavailable');
    return;
  }

  let ns: Netns;
  try {
    ns = await createNetns('metadt');
  } catch (e) {
    skipOrFail(t, `cannot create a network namespace here: ${(e as Error).message}`);
    return;
  }
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await ns.destroy();
    await ns.destroy(); // idempotent
    assert.equal(netnsExists(ns.name), false, `netns ${ns.name} still exists`);
  });

  await t.test('starts clean', async () => {
    assert.equal(await ns.tripCount(), 0);
    assert.deepEqual(await ns.tripDestinations(), []);
  });

  await t.test('169.254.169.254:80 is unreachable and trips the wire', async () => {
    const r = await ns.run(PY, ['-c', CONNECT_PY, '169.254.169.254', '80', '1'], { timeoutMs: 10_000 });
    assert.notEqual(r.code, 0, `connect unexpectedly succeeded: ${r.stdout}`);
    assert.match(r.stdout, /"connected": false/);
    assert.ok((await ns.tripCount()) > 0, 'tripwire counted nothing');
    assert.ok((await ns.tripDestinations()).includes('169.254.169.254'));
  });

  await t.test('IPv6 off-loopback traffic trips the wire too', async (st) => {
    // Skips only on a developer box without IPv6; CI (METAD_NO_SKIP=1) fails instead.
    if (skipOrFail(st, ns.ipv6 ? undefined : 'no IPv6 in this netns')) return;
    const before = await ns.tripCount();
    const r = await ns.run(PY, ['-c', CONNECT_PY, 'fd00:ec2::254', '80', '1'], { timeoutMs: 10_000 });
    assert.notEqual(r.code, 0, `connect unexpectedly succeeded: ${r.stdout}`);
    assert.ok((await ns.tripCount()) > before);
    assert.ok((await ns.tripDestinations()).includes('fd00:ec2::254'));
  });

  await t.test('loopback HTTP works and does not trip', async () => {
    const before = await ns.tripCount();
    const dir = await mkdtemp(path.join(tmpdir(), 'metadt-www-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const server = ns.exec(PY, ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(server);
    try {
      const port = await serverPort(server);
      const r = await ns.run(PY, ['-c', GET_PY, `http://127.0.0.1:${port}/`], { timeoutMs: 10_000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '200');
    } finally {
      server.kill('SIGTERM');
    }
    assert.equal(await ns.tripCount(), before, 'loopback traffic was counted');
  });

  await t.test('DNS lookups stay on loopback (netns resolv.conf)', async () => {
    const before = await ns.tripCount();
    const r = await ns.run(PY, ['-c', RESOLVE_PY], { timeoutMs: 20_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(await ns.tripCount(), before, `DNS left loopback: ${(await ns.tripDestinations()).join(', ')}`);
  });

  await t.test('resetTrips() clears the counter and the destinations', async () => {
    await ns.resetTrips();
    assert.equal(await ns.tripCount(), 0);
    assert.deepEqual(await ns.tripDestinations(), []);
  });
});
