/**
 * The personalization package's path through metad (daemon/jobs/package.ts): got, the byte cap
 * and the archive check, from a package server on loopback to a sink, as the guest door streams
 * it. Baseline, same run, same server and file: a plain copy (node:http GET piped to the sink).
 * Records MB/s of each (median of 3, interleaved) and the ratio, and metad's memory while it
 * streams a 500 MB package (`--quick`: 50 MB): the peak RSS over the RSS before, which must not
 * grow with the package (issue 16).
 *
 * The package: one tar of 64 files of pseudo-random text (compresses about 4:1, like a tree of
 * configuration and binaries), gzipped at level 1, written once to a temp file and served from it.
 */
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { pack } from 'tar-stream';
import { fetchPackage, type PackageSettings } from '../../daemon/jobs/package.js';
import { makeTempDir, removeTempDir } from '../support/cleanup.js';
import { median } from '../support/stats.js';
import type { Suite, SuiteContext } from '../support/suite.js';

const FILES = 64;

/** Writes the package (`totalMiB` unpacked) to `path`. */
async function makePackage(path: string, totalMiB: number): Promise<void> {
  const p = pack();
  const writing = pipeline(p, createGzip({ level: 1 }), createWriteStream(path));
  const per = Math.floor((totalMiB * 1024 * 1024) / FILES);
  // Text of 16 letters, in a random order: about 4 bits per byte.
  const block = Buffer.alloc(1024 * 1024);
  let x = 0x9e3779b9;
  for (let i = 0; i < block.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block[i] = 97 + ((x >>> 0) & 15);
  }
  for (let f = 0; f < FILES; f++) {
    const entry = p.entry({ name: `tree/f${String(f)}`, size: per });
    for (let left = per; left > 0; left -= block.length) {
      const part = block.subarray(0, Math.min(block.length, left));
      if (!entry.write(part)) await new Promise<void>((r) => entry.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => entry.end((err?: Error | null) => (err ? reject(err) : resolve())));
  }
  p.finalize();
  await writing;
}

/** A sink that counts bytes. */
function sink(): { w: Writable; bytes: () => number } {
  let n = 0;
  return {
    w: new Writable({
      write(chunk: Buffer, _enc, cb) {
        n += chunk.length;
        cb();
      },
    }),
    bytes: () => n,
  };
}

const SETTINGS: PackageSettings = {
  maxBytes: 2 ** 36,
  maxEntries: 100_000,
  maxEntryBytes: 2 ** 36,
  maxUnpackedBytes: 2 ** 38,
  connectTimeoutMs: 10_000,
  responseTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  maxRedirects: 0,
};

export async function runPackage(ctx: SuiteContext, opts: { mib: number; memoryMib: number; runs: number }): Promise<void> {
  const dir = makeTempDir('metad-bench-package-');
  ctx.defer(() => removeTempDir(dir));
  const file = join(dir, 'package.tgz');
  const big = join(dir, 'big.tgz');
  await makePackage(file, opts.mib);
  const size = (await stat(file)).size;
  ctx.log(`package: ${String(opts.mib)} MiB in ${String(FILES)} files, ${(size / 1048576).toFixed(1)} MiB gzipped`);
  const server = http.createServer((req, res) => {
    const f = req.url === '/big.tgz' ? big : file;
    void stat(f).then((st) => {
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': String(st.size) });
      createReadStream(f).pipe(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ctx.defer(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${String((server.address() as { port: number }).port)}`;

  const plain = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const s = sink();
    await new Promise<void>((resolve, reject) => {
      http.get(`${base}/package.tgz`, (res) => void pipeline(res, s.w).then(resolve, reject)).on('error', reject);
    });
    if (s.bytes() !== size) throw new Error(`plain copy: ${String(s.bytes())} of ${String(size)} bytes`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  // The least any check must do: the same copy, also inflated (node:zlib) into a second sink.
  const gunzipOnly = async (): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const s = sink();
    const unpacked = sink();
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${base}/package.tgz`, (res) => {
          const z = createGunzip();
          res.on('data', (b: Buffer) => z.write(b));
          res.on('end', () => z.end());
          void Promise.all([pipeline(res, s.w), pipeline(z, unpacked.w)]).then(() => resolve(), reject);
        })
        .on('error', reject);
    });
    if (s.bytes() !== size) throw new Error(`gunzip copy: ${String(s.bytes())} of ${String(size)} bytes`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  const checked = async (path = '/package.tgz', expect = size): Promise<number> => {
    const t0 = process.hrtime.bigint();
    const opened = await fetchPackage(`${base}${path}`, {}, SETTINGS, new AbortController().signal, 'metad-bench');
    const s = sink();
    await pipeline(opened.source, s.w);
    if (s.bytes() !== expect) throw new Error(`through the checks: ${String(s.bytes())} of ${String(expect)} bytes`);
    return Number(process.hrtime.bigint() - t0) / 1e6;
  };
  await plain(); // warm-up: page cache, got loaded
  await checked();
  const p: number[] = [];
  const z: number[] = [];
  const c: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    p.push(await plain());
    z.push(await gunzipOnly());
    c.push(await checked());
  }
  const mbps = (ms: number): number => size / 1e6 / (ms / 1000);
  ctx.record({ name: 'plain copy (node:http → sink)', value: mbps(median(p)), unit: 'MB/s', stats: { 'compressed MB': size / 1e6 } });
  ctx.record({
    name: 'copy + gunzip (node:http, node:zlib → sinks)',
    value: mbps(median(z)),
    unit: 'MB/s',
    baseline: 'plain copy (node:http → sink)',
  });
  ctx.record({
    name: 'through metad vs copy + gunzip',
    value: mbps(median(c)),
    unit: 'MB/s',
    baseline: 'copy + gunzip (node:http, node:zlib → sinks)',
  });
  ctx.record({
    name: 'through metad (got, cap, archive check → sink)',
    value: mbps(median(c)),
    unit: 'MB/s',
    baseline: 'plain copy (node:http → sink)',
    stats: { 'unpacked MB/s': (opts.mib * 1.048576) / (median(c) / 1000) },
  });

  // Memory: packages of memoryMib/5 and memoryMib streamed through the checks, RSS sampled every
  // 10 ms: the growth over the RSS before each (a few MiB of heap and buffers: far below the
  // package, and not 5x for 5x the bytes when nothing is held).
  const growth = async (mib: number): Promise<number> => {
    await makePackage(big, mib);
    const bigSize = (await stat(big)).size;
    global.gc?.();
    const before = process.memoryUsage.rss();
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, 10);
    try {
      await checked('/big.tgz', bigSize);
    } finally {
      clearInterval(sampler);
    }
    return (peak - before) / 1048576;
  };
  const small = Math.max(1, Math.round(opts.memoryMib / 5));
  const g1 = await growth(small);
  const g2 = await growth(opts.memoryMib);
  const smallName = `RSS growth streaming a ${String(small)} MiB package`;
  ctx.record({ name: smallName, value: g1, unit: 'MiB' });
  ctx.record({
    name: `RSS growth streaming a ${String(opts.memoryMib)} MiB package`,
    value: g2,
    unit: 'MiB',
    baseline: smallName,
    stats: { 'growth per package MiB': g2 / opts.memoryMib },
    note: 'must not grow with the package (5x the bytes)',
  });
}

const suite: Suite = {
  description: 'personalization package: got + cap + archive check vs a plain copy (same run), and memory while streaming 500 MB',
  run: (ctx) => runPackage(ctx, ctx.quick ? { mib: 32, memoryMib: 50, runs: 3 } : { mib: 256, memoryMib: 500, runs: 3 }),
};
export default suite;
