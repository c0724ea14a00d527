/**
 * The archive checker (daemon/registry/archive-check.ts) attacked with crafted tarballs: each
 * kind of bad entry ends the stream with an error naming it, and what was passed on before the
 * cut never decompresses to any byte of the bad entry; a good archive passes byte for byte, fed
 * whole or a byte at a time. Archives are made with tar-stream's packer (which writes what GNU
 * tar would refuse to) and with GNU tar itself, as Ganeti's ExportOS runs it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { constants as zc, gunzipSync, gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { tgz, type TarEntry } from '../support/tgz.js';
import { ArchiveRefused, archiveCheck, type ArchiveLimits } from '../../daemon/registry/archive-check.js';

const LIMITS: ArchiveLimits = { maxEntries: 100, maxEntryBytes: 1024 * 1024, maxUnpackedBytes: 8 * 1024 * 1024 };

type Entry = TarEntry;

interface Outcome {
  out: Buffer;
  err: unknown;
}

/** Run `input` through the checker in chunks of `size` bytes. */
async function check(input: Buffer, size = 64 * 1024, limits: ArchiveLimits = LIMITS): Promise<Outcome> {
  const parts: Buffer[] = [];
  for (let i = 0; i < input.length; i += size) parts.push(input.subarray(i, i + size));
  const out: Buffer[] = [];
  let err: unknown;
  try {
    await pipeline(
      Readable.from(parts),
      archiveCheck(limits),
      new Writable({
        write(c: Buffer, _enc, cb) {
          out.push(c);
          cb();
        },
      }),
    );
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(out), err };
}

/** What a guest could unpack from a cut transfer: as much as the bytes decompress to. */
function salvage(partial: Buffer): Buffer {
  if (partial.length === 0) return Buffer.alloc(0);
  try {
    return gunzipSync(partial, { finishFlush: zc.Z_SYNC_FLUSH });
  } catch {
    return Buffer.alloc(0);
  }
}

const GOOD: Entry[] = [
  { name: './', type: 'directory', mode: 0o755 },
  { name: './os/', type: 'directory', mode: 0o755 },
  { name: './os/create', mode: 0o755, body: '#!/bin/sh\nexit 0\n' },
  { name: './os/untrusted/', type: 'directory', mode: 0o755 },
  { name: './os/untrusted/create', type: 'link', linkname: './os/create' },
  { name: './os/variants.list', type: 'symlink', linkname: 'untrusted/create' },
  { name: './environment', mode: 0o644, body: 'OS_API_VERSION=20\nINSTANCE_NAME=web1\n' },
];

test('a good archive passes byte for byte, whole or a byte at a time', async () => {
  const input = await tgz(GOOD);
  for (const size of [input.length, 1]) {
    const { out, err } = await check(input, size);
    assert.equal(err, undefined);
    assert.ok(out.equals(input), `chunks of ${String(size)}`);
  }
});

/** Each bad kind, after a good 300 KB file (so the cut comes mid-stream), with a marker to look for. */
const MARK = 'BAD-ENTRY-MARKER';
const BAD: [string, Entry, RegExp][] = [
  ['an absolute name', { name: `/etc/${MARK}`, body: MARK }, /absolute name/],
  ['a .. component', { name: `./os/../../${MARK}`, body: MARK }, /"\.\." in the name/],
  ['a symlink to an absolute path (os -> /etc)', { name: `./${MARK}`, type: 'symlink', linkname: '/etc' }, /absolute path/],
  ['a symlink up the tree', { name: `./os/${MARK}`, type: 'symlink', linkname: '../../etc/shadow' }, /"\.\."/],
  ['a hard link out of the tree', { name: `./${MARK}`, type: 'link', linkname: '../etc/shadow' }, /hard link out of the tree/],
  ['a hard link to an absolute path', { name: `./${MARK}`, type: 'link', linkname: '/etc/shadow' }, /hard link out of the tree/],
  ['a hard link to nothing in the archive', { name: `./${MARK}`, type: 'link', linkname: 'etc/shadow' }, /no regular file earlier/],
  ['a character device', { name: `./${MARK}`, type: 'character-device', devmajor: 1, devminor: 3 }, /character-device/],
  ['a block device', { name: `./${MARK}`, type: 'block-device', devmajor: 8, devminor: 0 }, /block-device/],
  ['a FIFO', { name: `./${MARK}`, type: 'fifo' }, /fifo/],
  ['a setuid file', { name: `./${MARK}`, mode: 0o4755, body: MARK }, /setuid/],
  ['an entry over the size cap', { name: `./${MARK}`, body: Buffer.alloc(LIMITS.maxEntryBytes + 1, 'x') }, /larger than/],
  ['a control character in the name', { name: `./${MARK}\u001b[2J`, body: MARK }, /control character/],
];

for (const [what, bad, reason] of BAD) {
  test(`cut at ${what}: an error naming the entry, and nothing of it passed on`, async () => {
    const big = randomBytes(300 * 1024);
    const input = await tgz([{ name: './os/', type: 'directory' }, { name: './os/big', body: big }, bad, { name: './after', body: MARK }]);
    const { out, err } = await check(input, 4096);
    assert.ok(err instanceof ArchiveRefused, String(err));
    assert.match(err.reason, reason);
    assert.equal(err.entry, bad.name);
    assert.ok(out.length < input.length);
    const seen = salvage(out);
    // Streamed, not buffered whole: most of the good file went out before the cut...
    assert.ok(seen.length > 200 * 1024, `${String(seen.length)} bytes unpackable before the cut`);
    assert.ok(seen.includes(big.subarray(0, 1024)));
    // ...and not one byte of the bad entry's header or body.
    assert.equal(seen.includes(Buffer.from(MARK)), false);
  });
}

test('a gzip bomb of many empty entries ends at the entry cap', async () => {
  const many: Entry[] = Array.from({ length: 5000 }, (_, i) => ({ name: `./f${String(i)}` }));
  const input = await tgz(many);
  const { err } = await check(input);
  assert.ok(err instanceof ArchiveRefused);
  assert.match(err.reason, /more than 100 entries/);
  assert.equal(err.entry, './f100');
});

test('a gzip bomb of zeros ends at the unpacked cap without unpacking it all', async () => {
  // 64 MiB of zeros in one file compresses to ~64 KiB; every entry is under its own cap here.
  const limits = { ...LIMITS, maxEntryBytes: 128 * 1024 * 1024 };
  const input = gzipSync(Buffer.concat([headerBlock('./zeros', 64 * 1024 * 1024), Buffer.alloc(64 * 1024 * 1024 + 1024)]));
  const { err } = await check(input, 64 * 1024, limits);
  assert.ok(err instanceof ArchiveRefused);
  assert.match(err.reason, /more than 8388608 bytes unpacked/);
});

test('zero blocks or garbage where a header should be end the archive, not a buffer', async () => {
  const zeros = gzipSync(Buffer.alloc(32 * 1024 * 1024));
  const z = await check(zeros, 64 * 1024, { ...LIMITS, maxUnpackedBytes: 1 << 30 });
  assert.ok(z.err instanceof ArchiveRefused, String(z.err));
  assert.match(z.err.reason, /without a valid entry/);
  assert.equal(z.out.length, 0);
  const junk = await check(gzipSync(randomBytes(4096)));
  assert.ok(junk.err instanceof ArchiveRefused);
  assert.match(junk.err.reason, /not tar/);
  assert.equal(junk.out.length, 0);
});

test('not gzip, or a truncated gzip, is refused', async () => {
  const plain = await check(Buffer.from('just text, not an archive\n'));
  assert.ok(plain.err instanceof ArchiveRefused);
  assert.match(plain.err.reason, /not gzip/);
  const good = await tgz(GOOD);
  const cut = await check(good.subarray(0, good.length - 10));
  assert.ok(cut.err instanceof ArchiveRefused, String(cut.err));
  assert.equal(cut.out.equals(good.subarray(0, good.length - 10)), false);
});

/** A ustar header block for a regular file of `size` bytes. */
function headerBlock(name: string, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(name, 0, 'utf8');
  b.write('0000644\0', 100);
  b.write('0000000\0', 108);
  b.write('0000000\0', 116);
  b.write(size.toString(8).padStart(11, '0') + '\0', 124);
  b.write('00000000000\0', 136);
  b.write('        ', 148);
  b.write('0', 156);
  b.write('ustar\0', 257);
  b.write('00', 263);
  let sum = 0;
  for (const c of b) sum += c;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return b;
}

test("GNU tar as Ganeti's ExportOS runs it: with --dereference it passes, a symlink os -> /etc is cut", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'metad-archive-'));
  try {
    const def = join(dir, 'def');
    mkdirSync(def);
    writeFileSync(join(def, 'create'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const tree = join(dir, 'tree');
    mkdirSync(tree);
    symlinkSync(def, join(tree, 'os'));
    writeFileSync(join(tree, 'environment'), 'INSTANCE_NAME=web1\n');
    // ExportOS: tar --dereference -czv -f PKG -C TEMP_DIR .
    execFileSync('tar', ['--dereference', '-czf', join(dir, 'deref.tgz'), '-C', tree, '.']);
    const good = readFileSync(join(dir, 'deref.tgz'));
    const ok = await check(good, 512);
    assert.equal(ok.err, undefined);
    assert.ok(ok.out.equals(good));

    rmSync(join(tree, 'os'));
    symlinkSync('/etc', join(tree, 'os'));
    execFileSync('tar', ['-czf', join(dir, 'link.tgz'), '-C', tree, '.']);
    const bad = await check(readFileSync(join(dir, 'link.tgz')));
    assert.ok(bad.err instanceof ArchiveRefused);
    assert.equal(bad.err.entry, './os');
    assert.match(bad.err.reason, /absolute path/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
