/**
 * `metad network teardown` (daemon/comm/teardown.ts), in a network namespace of the test's own: a
 * routed metad sets its network up and stops (which leaves the anchor, tables and routes, by
 * design: docs/deployment.md); teardown refuses while a daemon holds the state dir, then removes
 * all of it; a device of another kind under the anchor's name is the operator's and stays; a
 * second run has nothing to remove.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canUseNetns, createNetns, skipOrFail } from '../support/netns.js';
import { writeConfig } from '../support/process.js';
import { until } from '../support/wait.js';

const CLI = fileURLToPath(new URL('../../daemon/cli.js', import.meta.url));
const CTL = fileURLToPath(new URL('../../cli/metadctl.js', import.meta.url));

test('metad network teardown removes what a stopped routed metad left, and only that', async (t) => {
  const can = canUseNetns();
  if (skipOrFail(t, can.ok ? undefined : can.why)) return;
  const ns = await createNetns('metadtd');
  const dir = mkdtempSync(join(tmpdir(), 'metad-teardown-'));
  t.after(async () => {
    await ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const cfg = writeConfig(dir, {
    stateDir: join(dir, 'state'),
    admin: { socket: join(dir, 'admin.sock') },
    guest: { listen: [{ host: '169.254.169.254', port: 80 }], commRange: ['169.254.0.0/16'] },
    network: { mode: 'routed', runDir: join(dir, 'comm'), dhcp: { mode: 'external' } },
  });
  const teardown = (): ReturnType<typeof ns.run> => ns.run('node', [CLI, 'network', 'teardown', '--config', cfg]);
  const links = async (): Promise<string> => (await ns.run('ip', ['-o', 'link', 'show'])).stdout;
  const tables = async (): Promise<string> => (await ns.run('nft', ['list', 'tables'])).stdout;

  // A routed metad with one instance and a tap: anchor, tables, a route of proto 171.
  const daemon = ns.exec('node', [CLI, 'serve', '--config', cfg], { stdio: 'ignore' });
  t.after(() => daemon.kill('SIGKILL'));
  const ctl = (args: string[], input?: string): ReturnType<typeof ns.run> =>
    ns.run('node', [CTL, '--socket', join(dir, 'admin.sock'), ...args], input === undefined ? {} : { input });
  await until('metad is ready', async () => (await ctl(['health'])).code === 0, 20_000);
  assert.match(await tables(), /table inet metad/);
  assert.equal((await ns.run('ip', ['link', 'add', 'md-g1', 'type', 'veth', 'peer', 'name', 'g1p'])).code, 0);
  const doc = {
    name: 'g1',
    uuid: '3d1f6a52-8c4e-4b7a-9e21-5f0c7d8a9b11',
    comm: { mac: '52:54:00:00:01:0b', ipv4: '169.254.1.11', tap: 'md-g1' },
  };
  const reg = await ctl(['register', '-'], JSON.stringify(doc));
  assert.equal(reg.code, 0, reg.stderr);
  const up = await ctl(['nic', 'up', '--instance', 'g1', '--tap', 'md-g1']);
  assert.equal(up.code, 0, up.stderr);
  await until('the route', async () => (await ns.run('ip', ['-4', 'route', 'show', 'proto', '171'])).stdout.includes('169.254.1.11'));

  const busy = await teardown();
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, /metad is running \(state dir .* in use by pid \d+\): stop it first/);
  assert.match(await links(), /metad0/, 'nothing removed while it runs');

  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  assert.match(await links(), /metad0/, 'a stopped metad leaves its anchor (docs/deployment.md)');
  assert.match(await tables(), /table inet metad/);

  const done = await teardown();
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, /^removed nftables table inet metad$/m);
  assert.match(done.stdout, /^removed nftables table arp metad$/m);
  assert.match(done.stdout, /^removed 1 IPv4 route\(s\) of proto 171$/m);
  assert.match(done.stdout, /^removed metad0 \((dummy|veth)\)$/m);
  assert.doesNotMatch(await links(), /metad0/);
  assert.doesNotMatch(await tables(), /table \w+ metad$/m); // the test's own tripwire table stays
  assert.equal((await ns.run('ip', ['-4', 'route', 'show', 'proto', '171'])).stdout.trim(), '');
  assert.match(await links(), /md-g1/, "the guest's tap is the hypervisor's, not metad's");

  const again = await teardown();
  assert.equal(again.code, 0);
  assert.equal(again.stdout, 'nothing to remove\n');

  // An operator's device under the anchor's name stays.
  assert.equal((await ns.run('ip', ['link', 'add', 'metad0', 'type', 'bridge'])).code, 0);
  const theirs = await teardown();
  assert.equal(theirs.stdout, 'left metad0: a bridge device, which metad does not create\n');
  assert.match(await links(), /metad0/);
});
