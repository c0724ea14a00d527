/**
 * Real Ganeti 3.0 code from Debian's packages (test/support/ganeti.ts) feeds metad and Debian's
 * own ganeti-metad alike: the master's UpdateMetadata, the node daemon's handling and
 * backend.ModifyInstanceMetadata (which checks Ganeti's pid file, then calls
 * ganeti.metad.Client) push instances built with ganeti.objects.Instance, once to each daemon.
 * Both serve the guest door inside a throwaway network namespace (127.0.0.x stands in for the
 * guests' comm addresses; a tripwire catches any packet off loopback), and their answers are
 * compared: os/parameters.json byte for byte, Debian's ganeti-os-noop scripts byte for byte,
 * meta_data.json (empty from ganeti-metad, what Ganeti fed from metad). Then both restart between
 * the feed and the read: metad still serves the instance, ganeti-metad has lost it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { canUseNetns, createNetns, type Netns } from '../support/netns.js';
import { isRoot, missingCommand, skipOrFail } from '../support/env.js';
import { NOOP_OS, ganetiFeed, ganetiMissing, nodeRoot, startGanetiMetad, type FeedOp } from '../support/ganeti.js';
import { startNsMetad, type NsMetad } from '../support/ns-metad.js';
import { stopChild } from '../support/process.js';
import { buildConfig } from '../../daemon/config/config.js';

const GANETI_PORT = 8081;
const METAD_PORT = 8082;

/** An objects.Instance as `gnt-instance add` makes it, with its comm NIC at 127.0.0.<host>. */
function instance(name: string, host: number, uuid: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const mac = (n: number) => `52:54:00:00:${host.toString(16).padStart(2, '0')}:0${String(n)}`;
  return {
    name,
    uuid,
    os: 'noop',
    hypervisor: 'kvm',
    beparams: { maxmem: 512, minmem: 256, vcpus: 2 },
    osparams: { 'a-image': 'debian-12', 'b-mirror': 'http://deb.debian.org/debian' },
    osparams_private: { 'c-root-password': 'p4ss' },
    nics: [
      { name: 'eth0', mac: mac(1), ip: null, nicparams: { mode: 'bridged', link: 'br0' }, uuid: `${uuid.slice(0, -2)}a1` },
      {
        name: `ganeti:communication:${name}`,
        mac: mac(2),
        ip: `127.0.0.${String(host)}`,
        nicparams: { mode: 'routed', link: 'communication_rt' },
        uuid: `${uuid.slice(0, -2)}a2`,
      },
    ],
    disks: [`${uuid.slice(0, -2)}d0`],
    ...over,
  };
}

const WEB1 = instance('web1.example.com', 5, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e01');
const WEB2 = instance('web2.example.com', 6, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e02');
const WEB3 = instance('web3.example.com', 8, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e03', { osparams: { motd: 'grüß dich' } });
/** What `gnt-instance add`'s two UpdateMetadata calls push (create and after the OS install). */
const FEED: FeedOp[] = [
  { op: 'update', instance: WEB1 },
  { op: 'update', instance: WEB2, osparams_secret: { 'd-ssh-key': 'ssh-ed25519 AAAA' } },
  { op: 'update', instance: WEB3 },
];

interface Reply {
  status: number;
  body: string;
}

/** GET from source address `src` inside the namespace (curl, as a guest would). */
async function get(ns: Netns, src: string, port: number, path: string): Promise<Reply> {
  const r = await ns.run('curl', ['-s', '-w', '\n%{http_code}', '--interface', src, `http://127.0.0.1:${String(port)}${path}`], {
    timeoutMs: 30_000,
  });
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

test("Ganeti 3.0's own code feeds metad as it feeds ganeti-metad; metad answers the same, and still after a restart", async (t) => {
  const can = canUseNetns();
  const why = !isRoot() ? 'needs root (network namespaces)' : !can.ok ? can.why : (missingCommand([['curl', 'curl']]) ?? ganetiMissing());
  if (skipOrFail(t, why)) return;
  const base = mkdtempSync(join(tmpdir(), 'metad-gnt-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  const ns = await createNetns('metadgnt');
  t.after(() => ns.destroy());
  const gNode = nodeRoot(join(base, 'ganeti-metad'));
  const mNode = nodeRoot(join(base, 'metad'));
  const spawn = ns.exec.bind(ns);
  const metadConfig = {
    guest: { listen: [{ host: '127.0.0.1', port: METAD_PORT }], commRange: ['127.0.0.0/8'] },
    ganeti: { socket: mNode.metadSocket, pidFile: mNode.metadPidFile },
  };

  const startGm = (): Promise<ChildProcess> =>
    startGanetiMetad(ns, gNode, GANETI_PORT, async () => (await get(ns, '127.0.0.1', GANETI_PORT, '/')).status > 0);
  let gm = await startGm();
  t.after(() => stopChild(gm));
  let m: NsMetad = await startNsMetad(spawn, join(base, 'metad'), metadConfig);
  t.after(() => m.stop());

  await t.test("Ganeti's node daemon sees metad as its metadata daemon (pid file) and reaches it (echo)", async () => {
    const [alive, echo, searchPath] = await ganetiFeed(mNode, [{ op: 'alive' }, { op: 'echo', arg: 'ping' }, { op: 'os-search-path' }]);
    assert.deepEqual(alive, { result: true });
    assert.deepEqual(echo, { result: 'ping' });
    // metad's default OS search path is Ganeti's, in Ganeti's order.
    assert.deepEqual(searchPath?.result, buildConfig({}).os.searchPath);
  });

  await t.test("metad does not start while ganeti-metad holds Ganeti's socket", async () => {
    const other = join(base, 'second-metad');
    const config = {
      guest: { listen: [{ host: '127.0.0.1', port: METAD_PORT + 1 }], commRange: ['127.0.0.0/8'] },
      ganeti: { socket: gNode.metadSocket, pidFile: join(other, 'ganeti-metad.pid') },
    };
    mkdirSync(other);
    await assert.rejects(startNsMetad(spawn, other, config), new RegExp(`another daemon is listening on ${gNode.metadSocket}`));
    assert.deepEqual(await ganetiFeed(gNode, [{ op: 'echo', arg: 'still ganeti-metad' }]), [{ result: 'still ganeti-metad' }]);
  });

  await t.test('the same feed goes to both daemons without a warning', async () => {
    for (const node of [gNode, mNode]) {
      const answers = await ganetiFeed(node, FEED);
      assert.deepEqual(answers, [{ warnings: [] }, { warnings: [] }, { warnings: [] }], node.root);
    }
  });

  const asGuest = (host: number, port: number, path: string) => get(ns, `127.0.0.${String(host)}`, port, path);

  await t.test('os/parameters.json: the same bytes from both for the same instance', async () => {
    const g = await asGuest(5, GANETI_PORT, '/ganeti/latest/os/parameters.json');
    const mine = await asGuest(5, METAD_PORT, '/ganeti/latest/os/parameters.json');
    assert.equal(g.status, 200);
    assert.equal(mine.status, 200);
    assert.equal(mine.body, g.body);
    assert.deepEqual(JSON.parse(mine.body), {
      'a-image': ['debian-12', 'public'],
      'b-mirror': ['http://deb.debian.org/debian', 'public'],
      'c-root-password': ['p4ss', 'private'],
    });
  });

  await t.test(
    'secret parameters: ganeti-metad serves them to whoever has the comm address for as long as it runs; metad to the instance, once',
    async () => {
      const path = '/ganeti/latest/os/parameters.json';
      const g = await asGuest(6, GANETI_PORT, path);
      const mine = await asGuest(6, METAD_PORT, path);
      // The first GET: the same bytes from both, the secret included (the claim).
      assert.equal(mine.body, g.body);
      assert.deepEqual((JSON.parse(g.body) as Record<string, unknown>)['d-ssh-key'], ['ssh-ed25519 AAAA', 'secret']);
      // After it: ganeti-metad still serves it, metad does not.
      const g2 = JSON.parse((await asGuest(6, GANETI_PORT, path)).body) as Record<string, [string, string]>;
      const mine2 = JSON.parse((await asGuest(6, METAD_PORT, path)).body) as Record<string, [string, string]>;
      assert.deepEqual(g2['d-ssh-key'], ['ssh-ed25519 AAAA', 'secret']);
      const { 'd-ssh-key': _secret, ...rest } = g2;
      assert.deepEqual(mine2, rest);
      // The window's record: claimed, names only.
      const jobs = (await m.admin('GET', '/v1/jobs')).json as {
        jobs: { kind?: string; instance: string; state: string; secrets: string[] }[];
      };
      const w = jobs.jobs.find((j) => j.kind === 'ganeti-secrets');
      assert.deepEqual([w?.instance, w?.state, w?.secrets], ['web2.example.com', 'claimed', ['d-ssh-key']]);
      assert.ok(!JSON.stringify(jobs).includes('ssh-ed25519 AAAA'));
    },
  );

  await t.test('a value beyond ASCII: metad serves it as UTF-8, ganeti-metad cuts each character to one byte', async () => {
    const g = await asGuest(8, GANETI_PORT, '/ganeti/latest/os/parameters.json');
    const mine = await asGuest(8, METAD_PORT, '/ganeti/latest/os/parameters.json');
    assert.deepEqual((JSON.parse(mine.body) as Record<string, unknown>).motd, ['grüß dich', 'public']);
    // 'ü' (U+00FC) and 'ß' (U+00DF) arrive from ganeti-metad as the bytes 0xFC and 0xDF: no UTF-8.
    assert.ok(g.body.includes('gr\uFFFD\uFFFD dich'), g.body);
  });

  await t.test("os/scripts/*: Debian's ganeti-os-noop, the same bytes from both", async () => {
    for (const script of ['create', 'export', 'import', 'rename']) {
      const g = await asGuest(5, GANETI_PORT, `/ganeti/latest/os/scripts/${script}`);
      const mine = await asGuest(5, METAD_PORT, `/ganeti/latest/os/scripts/${script}`);
      assert.equal(g.status, 200, script);
      assert.equal(mine.status, 200, script);
      assert.equal(mine.body, g.body, script);
      assert.equal(mine.body, readFileSync(join(NOOP_OS, script), 'utf8'), script);
    }
    // noop has no verify script: both 404.
    assert.equal((await asGuest(5, GANETI_PORT, '/ganeti/latest/os/scripts/verify')).status, 404);
    assert.equal((await asGuest(5, METAD_PORT, '/ganeti/latest/os/scripts/verify')).status, 404);
  });

  await t.test("meta_data.json: empty from ganeti-metad, what Ganeti fed from metad; metadctl's list marks it ganeti", async () => {
    const g = await asGuest(5, GANETI_PORT, '/ganeti/latest/meta_data.json');
    assert.deepEqual(g, { status: 200, body: '' });
    const mine = await asGuest(5, METAD_PORT, '/ganeti/latest/meta_data.json');
    assert.deepEqual(JSON.parse(mine.body), {
      uuid: WEB1.uuid,
      name: 'web1.example.com',
      hostname: 'web1.example.com',
      os: { name: 'noop' },
      hardware: { memoryMiB: 512, vcpus: 2 },
      comm: { mac: '52:54:00:00:05:02', ipv4: '127.0.0.5' },
      nics: [{ mac: '52:54:00:00:05:01' }],
    });
    const list = (await m.admin('GET', '/v1/instances')).json as { instances: { name: string; origin: string }[] };
    assert.deepEqual(
      list.instances.map((i) => [i.name, i.origin]),
      [
        ['web1.example.com', 'ganeti'],
        ['web2.example.com', 'ganeti'],
        ['web3.example.com', 'ganeti'],
      ],
    );
  });

  await t.test("a refused instance: Ganeti's client raises GenericError with metad's reason; the operator's warning says it", async () => {
    const bad = instance('bad1.example.com', 7, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e07', { beparams: { vcpus: 0 } });
    const [raised, warned] = await ganetiFeed(mNode, [
      { op: 'client-update', instance: bad },
      { op: 'update', instance: bad },
    ]);
    const reason = 'metad refused instance bad1.example.com: invalid instance document: beparams.vcpus: must be >= 1';
    assert.deepEqual(raised, { error: 'GenericError', message: reason });
    assert.deepEqual(warned, {
      warnings: [`Could not update metadata for instance 'bad1.example.com': Error while executing backend function: ${reason}`],
    });
    assert.equal((await m.admin('GET', '/v1/instances/bad1.example.com')).status, 404);
  });

  await t.test('restarted between feed and read: metad still serves the instance, ganeti-metad has lost it', async () => {
    const before = await asGuest(5, METAD_PORT, '/ganeti/latest/os/parameters.json');
    // A secret pushed (a new window) and not read before the restart: memory only, so lost.
    const secret = { 'd-ssh-key': 'ssh-ed25519 BBBB' };
    assert.deepEqual(await ganetiFeed(mNode, [{ op: 'update', instance: WEB2, osparams_secret: secret }]), [{ warnings: [] }]);
    await m.stop();
    assert.ok(!existsSync(mNode.metadPidFile), 'metad removed its pid file at stop');
    assert.deepEqual(await ganetiFeed(mNode, [{ op: 'alive' }]), [{ result: false }]);
    m = await startNsMetad(spawn, join(base, 'metad'), metadConfig);
    assert.deepEqual(await asGuest(5, METAD_PORT, '/ganeti/latest/os/parameters.json'), before);
    assert.deepEqual(await ganetiFeed(mNode, [{ op: 'alive' }]), [{ result: true }]);
    const web2 = JSON.parse((await asGuest(6, METAD_PORT, '/ganeti/latest/os/parameters.json')).body) as Record<string, unknown>;
    assert.equal(web2['d-ssh-key'], undefined, 'a secret served after a restart');
    const jobs = (await m.admin('GET', '/v1/jobs')).json as { jobs: { kind?: string; instance: string; state: string }[] };
    assert.deepEqual(
      jobs.jobs.filter((j) => j.kind === 'ganeti-secrets').map((j) => [j.instance, j.state]),
      [['web2.example.com', 'lost']],
    );

    await stopChild(gm);
    gm = await startGm();
    assert.equal((await asGuest(5, GANETI_PORT, '/ganeti/latest/os/parameters.json')).status, 404);
  });

  assert.equal(await ns.tripCount(), 0, `a packet left loopback: ${(await ns.tripDestinations()).join(', ')}`);
});
