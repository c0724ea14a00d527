/**
 * The OS install package on the guest door, in the real daemon graph with the Ganeti feed on a
 * real unix socket (pushes shaped as Ganeti's; ganeti-package.test.ts uses Ganeti's own code):
 * the streamed answer is never cached and counted like any answer; every host-path attack a
 * pushed parameter can make is a plain 404 with a logged reason and never a hang (a symlink out
 * of the root, `..`, a relative path, control characters, a FIFO, a directory, a group-writable
 * file, a file over the cap); a bad entry at the start is a 404 with nothing sent, one later cuts
 * the connection; a guest that goes away mid-transfer leaves no descriptor open; the daemon
 * serves on afterwards and never logs a stack for any of it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestDaemon, type TestDaemon } from '../support/daemon.js';
import { luxiCall } from '../support/luxi.js';
import { COMM_NIC_PREFIX } from '../../daemon/feeds/ganeti-map.js';
import { until } from '../support/wait.js';

const UUID = '6f1c0e9a-1b2c-4d3e-8f40-5a6b7c8d9e21';

describe('the OS install package on the guest door', () => {
  let dir: string;
  let root: string;
  let d: TestDaemon;
  let socket: string;
  const MAX = 16 * 1024 * 1024;

  /** Ganeti pushes the instance with these public parameters. */
  const pushWith = async (osparams: Record<string, string>, host = 5): Promise<void> => {
    const name = host === 5 ? 'web1' : `web${String(host)}`;
    const r = await luxiCall(socket, 'updateConfig', [
      {
        name,
        uuid: `${UUID.slice(0, -2)}${host.toString(16).padStart(2, '0')}`,
        os: 'noop',
        osparams,
        osparams_private: {},
        osparams_secret: {},
        nics: [
          { name: `${COMM_NIC_PREFIX}${name}`, mac: `52:54:00:00:00:${host.toString(16).padStart(2, '0')}`, ip: `127.0.0.${String(host)}` },
        ],
        disks: [],
      },
    ]);
    assert.deepEqual(r, { success: true, result: [] });
  };

  /** A .tgz of `files` (name -> content) made with GNU tar, mode 0600 as ExportOS leaves it. */
  const tgz = (name: string, files: Record<string, string | Buffer>): string => {
    const tree = mkdtempSync(join(dir, 'tree-'));
    for (const [f, body] of Object.entries(files)) writeFileSync(join(tree, f), body);
    const out = join(root, name);
    execFileSync('tar', ['-czf', out, '-C', tree, ...Object.keys(files).map((f) => `./${f}`)]);
    chmodSync(out, 0o600);
    return out;
  };

  const get = (path = 'os-install-package', host = 5) => d.guest(`127.0.0.${String(host)}`, 'GET', `/ganeti/latest/os/${path}`);
  const reasons = (): string[] =>
    d.sink
      .records()
      .filter((r) => r.msg === 'guest OS package not served')
      .map((r) => String(r.reason));

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'metad-guestpkg-'));
    root = join(dir, 'pkgs');
    mkdirSync(root);
    socket = join(dir, 'run', 'ganeti-metad');
    d = await startTestDaemon({
      dir,
      config: { ganeti: { socket, pidFile: join(dir, 'run', 'ganeti-metad.pid'), packageRoots: [root], packageMaxBytes: MAX } },
    });
    await d.daemon.ganeti?.listen();
  });
  after(async () => {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams the file, never from the cache: a new file at the same path is what the next GET gets; counted as answers', async () => {
    const p = tgz('pkg.tgz', { environment: 'INSTANCE_NAME=web1\n' });
    await pushWith({ 'os-install-package': p });
    const first = await get();
    assert.equal(first.status, 200);
    assert.equal(first.headers['content-type'], 'application/x-tgz');
    assert.ok(first.body.equals(readFileSync(p)));
    renameSync(tgz('next.tgz', { environment: 'INSTANCE_NAME=web1\nOTHER=1\n' }), p);
    const second = await get();
    assert.equal(second.status, 200);
    assert.ok(second.body.equals(readFileSync(p)));
    assert.equal(second.body.equals(first.body), false, 'the new file, not a cached answer');
    const metrics = (await d.admin('GET', '/v1/metrics')).text;
    assert.match(metrics, /^metad_guest_answers_total\{dialect="ganeti",status="200"\} [2-9]\d*$/m);
    // HEAD and POST are not served (ganeti-metad: GET only).
    assert.equal((await d.guest('127.0.0.5', 'HEAD', '/ganeti/latest/os/os-install-package')).status, 405);
    assert.equal((await d.guest('127.0.0.5', 'POST', '/ganeti/latest/os/package')).status, 405);
  });

  const attacks: [string, () => string, string][] = [
    [
      'a symlink in the root to /etc/passwd',
      () => (symlinkSync('/etc/passwd', join(root, 'passwd.tgz')), join(root, 'passwd.tgz')),
      'missing, or outside ganeti.packageRoots',
    ],
    ['.. out of the root', () => join(root, '..', 'state', 'private.key'), 'missing, or outside ganeti.packageRoots'],
    ['the root itself', () => root, 'missing, or outside ganeti.packageRoots'],
    ['a relative path', () => 'pkgs/pkg.tgz', 'not an absolute path'],
    ['a control character', () => `${root}/pkg.tgz\n`, 'not a usable path'],
    ['a FIFO (never a hang)', () => (execFileSync('mkfifo', [join(root, 'fifo.tgz')]), join(root, 'fifo.tgz')), 'not a regular file'],
    ['a directory', () => (mkdirSync(join(root, 'sub.tgz')), join(root, 'sub.tgz')), 'not a regular file'],
    [
      'a group-writable file',
      () => {
        const p = tgz('gw.tgz', { a: 'a' });
        chmodSync(p, 0o620);
        return p;
      },
      'writable by group or others',
    ],
    [
      'a file over ganeti.packageMaxBytes',
      () => {
        const p = join(root, 'huge.tgz');
        writeFileSync(p, '');
        truncateSync(p, MAX + 1);
        chmodSync(p, 0o600);
        return p;
      },
      'too large',
    ],
  ];
  for (const [i, [what, make, reason]] of attacks.entries()) {
    it(`a pushed path to ${what}: 404, the reason logged, not the path`, async () => {
      const path = make();
      // An instance of its own each: the refusal log is sampled per instance.
      const host = 20 + i;
      await pushWith({ 'os-package': path }, host);
      const r = await get('package', host);
      assert.equal(r.status, 404);
      assert.equal(r.text, 'Not Found');
      assert.ok(reasons().includes(reason), `${reason}: ${reasons().join('; ')}`);
      assert.equal(d.sink.text.includes(JSON.stringify(path).slice(1, -1)), false, 'the path is not logged');
    });
  }

  it('a guest that goes away mid-transfer: the file is closed (no descriptor left open)', async () => {
    const tree = mkdtempSync(join(dir, 'tree-'));
    writeFileSync(join(tree, 'big'), randomBytes(8 * 1024 * 1024));
    const p = join(root, 'gone.tgz');
    execFileSync('tar', ['-czf', p, '-C', tree, './big']);
    chmodSync(p, 0o600);
    await pushWith({ 'os-install-package': p }, 7);
    const openOnPackage = (): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === p;
        } catch {
          return false;
        }
      }).length;
    // A guest that asks and does not read: the answer stalls with the file open (8 MiB is more
    // than the socket buffers hold while the reader's window stays small), then it goes away.
    const sock = net.connect({ host: '127.0.0.1', port: d.guestPort, localAddress: '127.0.0.7' });
    sock.pause();
    sock.write('GET /ganeti/latest/os/os-install-package HTTP/1.1\r\nHost: x\r\n\r\n');
    await until('the package open while it streams', () => openOnPackage() === 1);
    sock.destroy();
    await until('the package closed', () => openOnPackage() === 0);
  });

  it('a bad entry first: 404, nothing of the archive sent', async () => {
    const tree = mkdtempSync(join(dir, 'tree-'));
    symlinkSync('/etc', join(tree, 'os'));
    const p = join(root, 'first-bad.tgz');
    execFileSync('tar', ['-czf', p, '-C', tree, './os']);
    chmodSync(p, 0o600);
    await pushWith({ 'os-install-package': p });
    const r = await get();
    assert.equal(r.status, 404);
    assert.equal(r.text, 'Not Found');
  });

  it('a bad entry later: the connection is cut after the good bytes; the next request is served', async () => {
    const tree = mkdtempSync(join(dir, 'tree-'));
    writeFileSync(join(tree, 'big'), randomBytes(300 * 1024));
    symlinkSync('../../etc/shadow', join(tree, 'link'));
    const p = join(root, 'later-bad.tgz');
    execFileSync('tar', ['-czf', p, '-C', tree, './big', './link']);
    chmodSync(p, 0o600);
    await pushWith({ 'os-install-package': p }, 6); // an instance of its own: the cut log is sampled per instance
    const got = await new Promise<{ status: number; bytes: number; aborted: boolean }>((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port: d.guestPort, localAddress: '127.0.0.6', path: '/ganeti/latest/os/os-install-package' },
        (res) => {
          let bytes = 0;
          let aborted = false;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('aborted', () => (aborted = true));
          res.on('error', () => (aborted = true));
          res.on('close', () => resolve({ status: res.statusCode ?? 0, bytes, aborted: aborted || !res.complete }));
        },
      );
      req.on('error', reject);
    });
    assert.equal(got.status, 200);
    assert.equal(got.aborted, true, 'the guest sees a cut transfer');
    assert.ok(got.bytes > 0 && got.bytes < readFileSync(p).length);
    const cut = d.sink
      .records()
      .filter((r) => r.msg === 'guest OS package cut')
      .pop();
    assert.ok(cut, d.sink.text);
    assert.equal(cut.entry, './link');
    assert.equal(cut.param, 'os-install-package');
    assert.equal(cut.bytesSent, got.bytes);
    assert.equal((await get('parameters.json', 6)).status, 200);
    assert.equal(
      d.sink.records().some((r) => r.msg === 'guest request failed' || r.level === 50),
      false,
      'no stack, no error-level line',
    );
  });
});
