/**
 * Writing an instance's OS image onto its first disk (daemon/jobs/os-image.ts) with the real
 * qemu-img: raw and qcow2 images land byte for byte; a wrong sha256, a qcow2 with a backing file
 * (which would copy a host file onto the guest's disk), an image larger than the disk, a path
 * outside storage.imageRoots (directly or through a symlink), a group-writable file, and a file
 * swapped in by rename after the check are each refused without a byte written, and no refusal
 * names a path. An image from a URL is fetched into metad's own directory, checked the same way,
 * and deleted; a wrong sha256, a 404 or a length over the disk leave nothing written and nothing behind.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { missingCommand, skipOrFail } from '../support/env.js';
import { boundedExec } from '../../daemon/comm/exec.js';
import { systemClock } from '../../daemon/clock.js';
import { DaemonError } from '../../daemon/errors.js';
import { checkOsImage, writeOsImage, type OsImageSpec } from '../../daemon/jobs/os-image.js';
import { validateInstance } from '../../daemon/registry/validate.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('the OS image', () => {
  let dir: string;
  let roots: string[];
  let disk: string;
  const content = randomBytes(2 * 1024 * 1024);
  const missing = missingCommand([['qemu-img', 'qemu-utils']]);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'metad-osimage-'));
    mkdirSync(join(dir, 'images'));
    roots = [join(dir, 'images')];
    disk = join(dir, 'disk.img');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const blankDisk = (mib = 4): void => {
    writeFileSync(disk, Buffer.alloc(mib * 1024 * 1024));
  };
  const image = (name: string, body: Buffer, mode = 0o644): string => {
    const p = join(dir, 'images', name);
    writeFileSync(p, body);
    chmodSync(p, mode);
    return p;
  };
  const write = (spec: OsImageSpec, diskFormat: 'raw' | 'qcow2' = 'raw') =>
    writeOsImage({
      spec,
      roots,
      disk: { real: disk, format: diskFormat },
      qemuImg: 'qemu-img',
      execFor: (ms) => boundedExec(systemClock, ms),
      remainingMs: () => 60_000,
    });
  const refused = async (spec: OsImageSpec, reason: RegExp): Promise<void> => {
    blankDisk();
    const before = readFileSync(disk);
    await assert.rejects(write(spec), (e: unknown) => {
      assert.ok(e instanceof DaemonError, String(e));
      assert.match(e.message, reason);
      assert.equal(e.message.includes(dir), false, 'no path in the reason');
      return true;
    });
    assert.ok(readFileSync(disk).equals(before), 'not a byte written');
  };

  it('a raw image lands byte for byte', async (t) => {
    if (skipOrFail(t, missing)) return;
    blankDisk();
    const p = image('debian.raw', content);
    const r = await write({ path: p, sha256: sha(content) });
    assert.equal(r.bytes, content.length);
    assert.ok(readFileSync(disk).subarray(0, content.length).equals(content));
  });

  it('a qcow2 image is converted onto the raw disk', async (t) => {
    if (skipOrFail(t, missing)) return;
    blankDisk();
    const raw = join(dir, 'src.raw');
    writeFileSync(raw, content);
    const q = join(dir, 'images', 'debian.qcow2');
    execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, q]);
    chmodSync(q, 0o644);
    await write({ path: q, sha256: sha(readFileSync(q)), format: 'qcow2' });
    assert.ok(readFileSync(disk).subarray(0, content.length).equals(content));
  });

  it('a wrong sha256: refused, nothing written', async (t) => {
    if (skipOrFail(t, missing)) return;
    const p = image('wrong.raw', content);
    await refused({ path: p, sha256: '0'.repeat(64) }, /^image: sha256 mismatch: the file's is [0-9a-f]{64}, the document says 0{64}$/);
  });

  it('a qcow2 with a backing file (a host file onto the guest disk): refused', async (t) => {
    if (skipOrFail(t, missing)) return;
    const secret = join(dir, 'host-secret');
    writeFileSync(secret, 'HOST SECRET');
    const q = join(dir, 'images', 'backed.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', secret, '-F', 'raw', q, '1M']);
    chmodSync(q, 0o644);
    await refused({ path: q, sha256: sha(readFileSync(q)), format: 'qcow2' }, /^image: a qcow2 image with a backing file$/);
  });

  it('a raw image named as qcow2 (never probed): refused', async (t) => {
    if (skipOrFail(t, missing)) return;
    const p = image('plain.raw', content);
    await refused({ path: p, sha256: sha(content), format: 'qcow2' }, /^image: not a qcow2 image$/);
  });

  it('larger than the disk: refused (the disk file is never grown)', async (t) => {
    if (skipOrFail(t, missing)) return;
    const big = randomBytes(5 * 1024 * 1024);
    const p = image('big.raw', big);
    await refused({ path: p, sha256: sha(big) }, /^image: 5242880 bytes do not fit the first disk \(4194304\)$/);
  });

  it('outside the roots, through a symlink out, group-writable: refused', async (t) => {
    if (skipOrFail(t, missing)) return;
    const outside = join(dir, 'outside.raw');
    writeFileSync(outside, content);
    await refused({ path: outside, sha256: sha(content) }, /^image: missing, or outside storage.imageRoots$/);
    symlinkSync(outside, join(dir, 'images', 'link.raw'));
    await refused({ path: join(dir, 'images', 'link.raw'), sha256: sha(content) }, /^image: missing, or outside storage.imageRoots$/);
    const gw = image('gw.raw', content, 0o664);
    await refused({ path: gw, sha256: sha(content) }, /^image: writable by group or others$/);
    await assert.rejects(checkOsImage({ path: gw, sha256: sha(content) }, roots), /writable by group or others/);
    await checkOsImage({ path: image('fine.raw', content), sha256: sha(content) }, roots);
  });

  describe('from a URL', () => {
    let server: http.Server;
    let base = '';
    const routes = new Map<string, (res: http.ServerResponse) => void>();
    const downloads = (): string => join(dir, 'downloads');
    before(async () => {
      server = http.createServer((req, res) => {
        const h = routes.get(req.url ?? '');
        if (h) h(res);
        else res.writeHead(404).end();
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      base = `http://127.0.0.1:${String((server.address() as { port: number }).port)}`;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));
    const fromUrl = (spec: OsImageSpec) =>
      writeOsImage({
        spec,
        roots,
        disk: { real: disk, format: 'raw' },
        qemuImg: 'qemu-img',
        execFor: (ms) => boundedExec(systemClock, ms),
        remainingMs: () => 60_000,
        download: {
          dir: downloads(),
          file: 'run1.image',
          settings: { connectTimeoutMs: 1000, responseTimeoutMs: 1000, idleTimeoutMs: 1000, maxRedirects: 1 },
          signal: new AbortController().signal,
          userAgent: 'metad-test',
        },
      });
    const leftInDownloads = (): string[] => (existsSync(downloads()) ? readdirSync(downloads()) : []);

    it('fetched, checked, written; the download is deleted', async (t) => {
      if (skipOrFail(t, missing)) return;
      blankDisk();
      routes.set('/debian.raw', (res) => res.writeHead(200, { 'content-length': String(content.length) }).end(content));
      await fromUrl({ url: `${base}/debian.raw`, sha256: sha(content) });
      assert.ok(readFileSync(disk).subarray(0, content.length).equals(content));
      assert.deepEqual(leftInDownloads(), []);
      assert.equal(statSync(downloads()).mode & 0o777, 0o700);
    });

    it('a wrong sha256, a 404, a length over the disk: refused, nothing written, nothing left', async (t) => {
      if (skipOrFail(t, missing)) return;
      routes.set('/other.raw', (res) => res.writeHead(200).end(randomBytes(1024)));
      routes.set('/huge.raw', (res) => {
        res.writeHead(200, { 'content-length': String(80 * 1024 * 1024) });
        res.end(Buffer.alloc(10));
      });
      for (const [path, reason] of [
        ['/other.raw', /^image: sha256 mismatch/],
        ['/missing.raw', /^image: HTTP 404 from the image server$/],
        ['/huge.raw', /^image: larger than 71303168 bytes$/],
      ] as const) {
        blankDisk();
        const before = readFileSync(disk);
        await assert.rejects(fromUrl({ url: `${base}${path}`, sha256: sha(content) }), (e: unknown) => {
          assert.ok(e instanceof DaemonError);
          assert.match(e.message, reason);
          return true;
        });
        assert.ok(readFileSync(disk).equals(before), `${path}: not a byte written`);
        assert.deepEqual(leftInDownloads(), [], `${path}: nothing left`);
      }
    });

    it('the document names a path or a URL, never both, and a URL carries no credentials', () => {
      const doc = (image: Record<string, unknown>): Record<string, unknown> => ({
        name: 'vm1',
        uuid: '6f1c2a9e-4b7d-4c2e-9a51-3d8e2f0b7c01',
        comm: { mac: '52:54:00:00:00:01', ipv4: '169.254.0.10' },
        install: { image: { sha256: '0'.repeat(64), ...image } },
      });
      validateInstance(doc({ path: '/srv/images/a.raw' }));
      validateInstance(doc({ url: 'https://images.example/a.qcow2' }));
      for (const bad of [{}, { path: '/srv/a.raw', url: 'https://h/a' }, { url: 'https://user:pw@h/a' }, { url: 'ftp://h/a' }])
        assert.throws(() => validateInstance(doc(bad)), JSON.stringify(bad));
    });
  });

  it('the file checked is the file written: one renamed into its place meanwhile never reaches the disk', async (t) => {
    if (skipOrFail(t, missing)) return;
    const big = randomBytes(24 * 1024 * 1024);
    const evil = randomBytes(big.length);
    let written = 0;
    for (let i = 0; i < 6; i++) {
      blankDisk(32);
      const p = image(`swap${String(i)}.raw`, big);
      writeFileSync(join(dir, 'images', 'evil.raw'), evil);
      // The rename lands a little after the write began: while the file is hashed or converted.
      const writing = write({ path: p, sha256: sha(big) }).then(
        () => true,
        (e: unknown) => {
          assert.match(String(e), /sha256 mismatch/, 'only ever refused for the hash (the swap came before the open)');
          return false;
        },
      );
      await new Promise((r) => setTimeout(r, i * 3));
      renameSync(join(dir, 'images', 'evil.raw'), p);
      const ok = await writing;
      const head = readFileSync(disk).subarray(0, big.length);
      assert.equal(head.equals(evil), false, 'the swapped-in file never reaches the disk');
      if (ok) {
        written++;
        assert.ok(head.equals(big), 'the checked file, byte for byte');
      }
    }
    assert.ok(written > 0, 'at least one swap landed after the open (and changed nothing)');
  });
});
