/**
 * Ganeti's OS install package, against the real thing: Ganeti's own backend.ExportOS builds the
 * package of an instance of Debian's ganeti-os-noop (test/support/ganeti_feed.py), Ganeti's
 * UpdateMetadata pushes the instance with `os-install-package` and `os-package` public
 * parameters to Debian's ganeti-metad 3.0.2 and to metad alike (test/support/ganeti.ts), and
 * guests (curl from 127.0.0.x in a throwaway network namespace) fetch `os/os-install-package`
 * and `os/package` from both: metad's bytes equal ganeti-metad's; a package with a bad entry
 * (a symlink `os -> /etc`, what ExportOS would make without --dereference) is served whole by
 * ganeti-metad and cut by metad before that entry; a path outside ganeti.packageRoots is served
 * by ganeti-metad and refused by metad; a path another instance's package has, set through
 * metad's admin door, is refused; and after a restart metad waits for Ganeti's next push.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, constants as zc } from 'node:zlib';
import { canUseNetns, createNetns, type Netns } from '../support/netns.js';
import { isRoot, missingCommand, skipOrFail } from '../support/env.js';
import { ganetiFeed, ganetiMissing, nodeRoot, startGanetiMetad } from '../support/ganeti.js';
import { startNsMetad, type NsMetad } from '../support/ns-metad.js';
import { until } from '../support/wait.js';
import { stopChild } from '../support/process.js';

const GANETI_PORT = 8091;
const METAD_PORT = 8092;

function instance(name: string, host: number, uuid: string, osparams: Record<string, string>): Record<string, unknown> {
  return {
    name,
    uuid,
    os: 'noop',
    hypervisor: 'kvm',
    beparams: { maxmem: 512, vcpus: 1 },
    osparams,
    osparams_private: { 'root-password': 'p4ss' },
    nics: [
      {
        name: `ganeti:communication:${name}`,
        mac: `52:54:00:00:${host.toString(16).padStart(2, '0')}:02`,
        ip: `127.0.0.${String(host)}`,
        nicparams: { mode: 'routed', link: 'communication_rt' },
        uuid: `${uuid.slice(0, -2)}a2`,
      },
    ],
    disks: [],
  };
}

interface Fetched {
  /** curl's exit code: 0, or 18 for a transfer cut short. */
  code: number;
  status: number;
  type: string;
  body: Buffer;
}

/** GET as the guest at 127.0.0.<host>, the body to a file (binary). */
async function fetchAs(ns: Netns, dir: string, host: number, port: number, path: string): Promise<Fetched> {
  const out = join(dir, `body-${String(host)}-${String(port)}-${randomBytes(4).toString('hex')}`);
  const r = await ns.run(
    'curl',
    [
      '-s',
      '-o',
      out,
      '-w',
      '%{http_code} %{content_type}',
      '--interface',
      `127.0.0.${String(host)}`,
      `http://127.0.0.1:${String(port)}${path}`,
    ],
    { timeoutMs: 60_000 },
  );
  const [status = '0', type = ''] = r.stdout.split(' ');
  const body = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
  rmSync(out, { force: true });
  return { code: r.code ?? -1, status: Number(status), type, body };
}

/** What a guest can unpack from a (possibly cut) transfer. */
function unpackable(b: Buffer): Buffer {
  return b.length === 0 ? b : gunzipSync(b, { finishFlush: zc.Z_SYNC_FLUSH });
}

test("Ganeti's OS install package: metad serves ExportOS's bytes as ganeti-metad does, and refuses what ganeti-metad would serve blindly", async (t) => {
  const can = canUseNetns();
  const why = !isRoot() ? 'needs root (network namespaces)' : !can.ok ? can.why : (missingCommand([['curl', 'curl']]) ?? ganetiMissing());
  if (skipOrFail(t, why)) return;
  const base = mkdtempSync(join(tmpdir(), 'metad-gntpkg-'));
  t.after(() => rmSync(base, { recursive: true, force: true }));
  // ExportOS's temp dir (the node daemon's TMPDIR) is metad's one package root here.
  const pkgs = join(base, 'tmp');
  const elsewhere = join(base, 'elsewhere');
  const work = join(base, 'work');
  for (const d of [pkgs, elsewhere, work]) mkdirSync(d, { mode: 0o755 });
  const ns = await createNetns('metadpkg');
  t.after(() => ns.destroy());
  const gNode = nodeRoot(join(base, 'ganeti-metad'));
  const mNode = nodeRoot(join(base, 'metad'));
  const spawn = ns.exec.bind(ns);
  const metadConfig = {
    guest: { listen: [{ host: '127.0.0.1', port: METAD_PORT }], commRange: ['127.0.0.0/8'] },
    ganeti: { socket: mNode.metadSocket, pidFile: mNode.metadPidFile, packageRoots: [pkgs] },
  };
  const gm = await startGanetiMetad(ns, gNode, GANETI_PORT, async () => (await fetchAs(ns, work, 1, GANETI_PORT, '/')).status > 0);
  t.after(() => stopChild(gm));
  let m: NsMetad = await startNsMetad(spawn, join(base, 'metad'), metadConfig);
  t.after(() => m.stop());

  // The install package of web1, as `gnt-instance add` with an install image has the node build it.
  const UUID1 = '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e11';
  const [exported] = await ganetiFeed({ ...mNode, env: { ...mNode.env, TMPDIR: pkgs } }, [
    { op: 'export-os', instance: instance('web1.example.com', 5, UUID1, {}) },
  ]);
  const installPkg = exported?.result as string;
  assert.ok(installPkg.startsWith(`${pkgs}/`) && installPkg.endsWith('.tgz'), installPkg);

  // A package with a bad entry: a good file first, then `os -> /etc` (ExportOS without --dereference).
  const tree = join(work, 'tree');
  mkdirSync(tree);
  writeFileSync(join(tree, 'big'), randomBytes(256 * 1024));
  symlinkSync('/etc', join(tree, 'os'));
  const badPkg = join(pkgs, 'bad.tgz');
  execFileSync('tar', ['-czf', badPkg, '-C', tree, './big', './os']);
  chmodSync(badPkg, 0o600);
  // The good package, copied outside the roots.
  const outside = join(elsewhere, 'copy.tgz');
  copyFileSync(installPkg, outside);

  const WEB1 = instance('web1.example.com', 5, UUID1, { 'os-install-package': installPkg, 'os-package': badPkg });
  const WEB2 = instance('web2.example.com', 6, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e12', { 'os-install-package': outside });
  const WEB3 = instance('web3.example.com', 7, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e13', { image: 'debian-12' });
  const WEB4 = instance('web4.example.com', 8, '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e14', { image: 'debian-12' });
  for (const node of [gNode, mNode]) {
    const answers = await ganetiFeed(node, [
      { op: 'update', instance: WEB1 },
      { op: 'update', instance: WEB2 },
      { op: 'update', instance: WEB3 },
      { op: 'update', instance: WEB4 },
    ]);
    assert.deepEqual(answers, [{ warnings: [] }, { warnings: [] }, { warnings: [] }, { warnings: [] }], node.root);
  }
  const get = (host: number, port: number, path: string) => fetchAs(ns, work, host, port, `/ganeti/latest/os/${path}`);

  await t.test("os/os-install-package: ExportOS's file, the same bytes and type from both", async () => {
    const g = await get(5, GANETI_PORT, 'os-install-package');
    const mine = await get(5, METAD_PORT, 'os-install-package');
    assert.equal(g.status, 200);
    assert.equal(mine.status, 200);
    assert.ok(g.body.equals(readFileSync(installPkg)));
    assert.ok(mine.body.equals(g.body));
    assert.equal(mine.type, g.type);
    assert.equal(mine.type, 'application/x-tgz');
    // What the helper VM unpacks: the noop definition and the environment, private values included.
    const listing = execFileSync('tar', ['-tzf', '-'], { input: mine.body, encoding: 'utf8' }).split('\n');
    assert.ok(listing.includes('./os/create') && listing.includes('./environment'), listing.join(' '));
  });

  await t.test('ganeti-metad serves packages on latest only and answers Range requests; metad every version, whole', async () => {
    const dated = '/ganeti/2014-07-01/os/os-install-package';
    assert.equal((await fetchAs(ns, work, 5, GANETI_PORT, dated)).status, 404);
    const mineDated = await fetchAs(ns, work, 5, METAD_PORT, dated);
    assert.equal(mineDated.status, 200);
    assert.ok(mineDated.body.equals(readFileSync(installPkg)));
    const range = async (port: number) =>
      ns.run(
        'curl',
        [
          '-s',
          '-r',
          '0-99',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code} %{size_download}',
          '--interface',
          '127.0.0.5',
          `http://127.0.0.1:${String(port)}/ganeti/latest/os/os-install-package`,
        ],
        { timeoutMs: 30_000 },
      );
    assert.equal((await range(GANETI_PORT)).stdout, '206 100');
    assert.equal((await range(METAD_PORT)).stdout, `200 ${String(readFileSync(installPkg).length)}`);
  });

  await t.test('a package with a symlink os -> /etc: ganeti-metad serves it whole, metad cuts the transfer before it', async () => {
    const file = readFileSync(badPkg);
    const g = await get(5, GANETI_PORT, 'package');
    assert.equal(g.status, 200);
    assert.ok(g.body.equals(file));
    const mine = await get(5, METAD_PORT, 'package');
    assert.equal(mine.status, 200);
    assert.equal(mine.code, 18, 'curl: transfer closed with outstanding read data remaining');
    assert.ok(mine.body.length > 0 && mine.body.length < file.length, `${String(mine.body.length)} of ${String(file.length)} bytes`);
    assert.ok(file.subarray(0, mine.body.length).equals(mine.body), 'a prefix of the file');
    // The guest got the good file's bytes but not the bad entry's header.
    const seen = unpackable(mine.body);
    assert.ok(seen.includes(readFileSync(join(tree, 'big')).subarray(0, 4096)));
    assert.equal(seen.includes(Buffer.from('./os\0')), false);
    await until('the cut logged', () => m.out().includes('"guest OS package cut"'));
    const line =
      m
        .out()
        .split('\n')
        .find((l) => l.includes('"guest OS package cut"')) ?? '';
    const ev = JSON.parse(line) as Record<string, unknown>;
    assert.equal(ev.instance, 'web1.example.com');
    assert.equal(ev.param, 'os-package');
    assert.equal(ev.entry, './os');
    assert.match(String(ev.reason), /symbolic link to an absolute path/);
  });

  await t.test('a path outside ganeti.packageRoots: ganeti-metad serves it, metad refuses (404)', async () => {
    const g = await get(6, GANETI_PORT, 'os-install-package');
    assert.equal(g.status, 200);
    assert.ok(g.body.equals(readFileSync(outside)));
    const mine = await get(6, METAD_PORT, 'os-install-package');
    assert.equal(mine.status, 404);
    assert.equal(mine.body.toString(), 'Not Found');
    await until('the refusal logged', () =>
      m
        .out()
        .split('\n')
        .some((l) => l.includes('"guest OS package not served"') && l.includes('"reason":"missing, or outside ganeti.packageRoots"')),
    );
    assert.equal(m.out().includes(outside), false, 'the path is never logged');
  });

  await t.test('no package parameter: 404 from both for os-install-package; os/package is a 500 from ganeti-metad', async () => {
    assert.equal((await get(7, GANETI_PORT, 'os-install-package')).status, 404);
    assert.equal((await get(7, METAD_PORT, 'os-install-package')).status, 404);
    assert.equal((await get(7, GANETI_PORT, 'package')).status, 500);
    assert.equal((await get(7, METAD_PORT, 'package')).status, 404);
  });

  await t.test("another instance's package named through metad's admin door is not served", async () => {
    const set = await m.admin('PATCH', '/v1/instances/web4.example.com/params/public', {
      values: { 'os-install-package': installPkg, 'os-package': '/etc/shadow' },
    });
    assert.equal(set.status, 200);
    for (const path of ['os-install-package', 'package']) {
      const mine = await get(8, METAD_PORT, path);
      assert.equal(mine.status, 404, path);
    }
    await until('the refusal logged', () => m.out().includes('"reason":"not as Ganeti pushed it"'));
    // web1 still gets its own.
    assert.equal((await get(5, METAD_PORT, 'os-install-package')).status, 200);
  });

  await t.test("restarted: metad serves a package again only after Ganeti's next push", async () => {
    await m.stop();
    m = await startNsMetad(spawn, join(base, 'metad'), metadConfig);
    assert.equal((await get(5, METAD_PORT, 'os-install-package')).status, 404);
    assert.deepEqual(await ganetiFeed(mNode, [{ op: 'update', instance: WEB1 }]), [{ warnings: [] }]);
    const again = await get(5, METAD_PORT, 'os-install-package');
    assert.equal(again.status, 200);
    assert.ok(again.body.equals(readFileSync(installPkg)));
  });

  assert.equal(await ns.tripCount(), 0, `a packet left loopback: ${(await ns.tripDestinations()).join(', ')}`);
});
