/**
 * An instance's OS image (`install.image`): a raw or qcow2 file under `storage.imageRoots`, or
 * one metad fetches from a URL into its own state directory (then the same, and deleted after),
 * written onto the instance's first disk when its run is prepared, before the appliance boots and
 * the OS scripts run, and only once its sha256 matches. Every refusal is a DaemonError whose
 * message becomes the job's reason (`image: …`) and never names a path; nothing is written then.
 *
 * The file is opened once (daemon/registry/host-file.ts: inside a root after realpath, O_NOFOLLOW,
 * a regular file writable by its owner only) and everything after works on that open file:
 * the hash reads the descriptor, and qemu-img reads `/proc/<metad>/fd/<n>`, the same inode, so
 * renaming another file into its place between the check and the write changes nothing. Its
 * format is the one the document names (never probed), a qcow2 with a backing or external data
 * file is refused (it would copy that host file onto the guest's disk), and the image's virtual
 * size must fit the disk (a raw disk file is never grown). qemu-img runs bounded by the job's
 * hard deadline on the injected clock.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FetchFailed, fetchHttp, type FetchSettings } from './fetch.js';
import { DaemonError, withoutPaths } from '../errors.js';
import { mustExec, type Exec } from '../comm/exec.js';
import { openUnderRoots } from '../registry/host-file.js';
import type { PublicDoc } from '../registry/model.js';

export type OsImageSpec = NonNullable<NonNullable<PublicDoc['install']>['image']>;

/** The largest image file considered (64 TiB: beyond any disk). */
const MAX_IMAGE_BYTES = 2 ** 46;

const refuse = (message: string): DaemonError => new DaemonError('Conflict', `image: ${message}`, [{ path: '/install/image', message }]);

interface ImageInfo {
  'virtual-size'?: number;
  'backing-filename'?: string;
  'format-specific'?: { data?: { 'data-file'?: string } };
}

async function info(exec: Exec, qemuImg: string, format: string, path: string): Promise<ImageInfo> {
  const out = await mustExec(exec, qemuImg, ['info', '--output=json', '-f', format, path]);
  return JSON.parse(out) as ImageInfo;
}

/** Checks a host-path image without writing anything (the install request); an image from a URL is checked when it is fetched. */
export async function checkOsImage(spec: OsImageSpec, roots: readonly string[]): Promise<void> {
  if (spec.path === undefined) return;
  const opened = await openUnderRoots(spec.path, roots, MAX_IMAGE_BYTES, 'storage.imageRoots');
  if ('problem' in opened) throw refuse(opened.problem);
  await opened.fh.close();
}

/** How an image from a URL is fetched: into `dir` (metad's own, 0700), as `file`, deleted afterwards. */
export interface ImageDownload {
  dir: string;
  file: string;
  settings: Omit<FetchSettings, 'maxBytes'>;
  signal: AbortSignal;
  userAgent: string;
}

/**
 * Fetches the image at `url` into download.dir/download.file (0600, created anew), at most
 * `maxBytes` (the first disk's size: a larger image could never be written). Refuses with
 * `image: <why>`; a partial file is removed.
 */
async function download(url: string, d: ImageDownload, maxBytes: number): Promise<string> {
  await mkdir(d.dir, { recursive: true, mode: 0o700 });
  const path = join(d.dir, d.file);
  await rm(path, { force: true });
  try {
    const f = await fetchHttp(url, {
      settings: { ...d.settings, maxBytes },
      signal: d.signal,
      userAgent: d.userAgent,
      accept: 'application/octet-stream',
      server: 'the image server',
    });
    await pipeline(f.body, createWriteStream(path, { flags: 'wx', mode: 0o600 })).catch((e: unknown) => {
      throw new FetchFailed(f.why(e));
    });
    return path;
  } catch (e) {
    await rm(path, { force: true });
    throw refuse(e instanceof FetchFailed ? e.reason : 'fetch failed');
  }
}

/**
 * Verifies the image and writes it onto `disk` (its resolved path and format). `execFor(ms)`: an
 * Exec bounded by `ms` on the job's clock; `remainingMs()`: the time left until the job's deadline.
 * An image from a URL is fetched first (`download`), then checked and written as a file of
 * metad's own, and deleted whatever happens.
 */
export async function writeOsImage(opts: {
  spec: OsImageSpec;
  roots: readonly string[];
  disk: { real: string; format: 'raw' | 'qcow2' };
  qemuImg: string;
  execFor: (ms: number) => Exec;
  remainingMs: () => number;
  download?: ImageDownload;
}): Promise<{ bytes: number; virtualSize: number }> {
  const { spec } = opts;
  // Every qemu-img run is bounded by the time left to the job's deadline.
  const exec = (): Exec => opts.execFor(Math.max(1, opts.remainingMs()));
  const diskSize = async (): Promise<number> => (await info(exec(), opts.qemuImg, opts.disk.format, opts.disk.real))['virtual-size'] ?? 0;
  // A path: the disk is sized after the file is opened and hashed (the sooner the open, the smaller the window before it).
  if (spec.path !== undefined) return writeFile(opts, exec, diskSize, spec.path, opts.roots);
  if (spec.url === undefined || opts.download === undefined) throw refuse('neither a path nor a URL');
  const diskBytes = await diskSize(); // a URL: its size caps the download
  // A qcow2 file holds its metadata besides the data: a little over the disk's size may still fit.
  const path = await download(spec.url, opts.download, diskBytes + 64 * 1024 * 1024);
  try {
    return await writeFile(opts, exec, () => Promise.resolve(diskBytes), path, [opts.download.dir]);
  } finally {
    await rm(path, { force: true });
  }
}

/** Checks the file at `imagePath` (under `roots`) and writes it onto the disk (of `diskSize()` bytes). */
async function writeFile(
  opts: Parameters<typeof writeOsImage>[0],
  exec: () => Exec,
  diskSize: () => Promise<number>,
  imagePath: string,
  roots: readonly string[],
): Promise<{ bytes: number; virtualSize: number }> {
  const { spec, disk } = opts;
  const format = spec.format ?? 'raw';
  const opened = await openUnderRoots(imagePath, roots, MAX_IMAGE_BYTES, 'storage.imageRoots');
  if ('problem' in opened) throw refuse(opened.problem);
  try {
    const hash = createHash('sha256');
    for await (const chunk of opened.fh.createReadStream({ start: 0, autoClose: false }) as AsyncIterable<Buffer>) hash.update(chunk);
    const got = hash.digest('hex');
    if (got !== spec.sha256) throw refuse(`sha256 mismatch: the file's is ${got}, the document says ${spec.sha256}`);
    const src = `/proc/${String(process.pid)}/fd/${String(opened.fh.fd)}`;
    const img = await info(exec(), opts.qemuImg, format, src).catch(() => {
      throw refuse(`not a ${format} image`);
    });
    if (img['backing-filename'] !== undefined) throw refuse('a qcow2 image with a backing file');
    if (img['format-specific']?.data?.['data-file'] !== undefined) throw refuse('a qcow2 image with an external data file');
    const size = img['virtual-size'] ?? opened.st.size;
    const diskBytes = await diskSize();
    if (size > diskBytes) throw refuse(`${String(size)} bytes do not fit the first disk (${String(diskBytes)})`);
    // -n: the disk exists (never created or grown); qemu-img flushes it before it exits.
    await mustExec(exec(), opts.qemuImg, ['convert', '-n', '-f', format, '-O', disk.format, src, disk.real]).catch((e: unknown) => {
      throw refuse(`writing it failed: ${e instanceof Error ? withoutPaths(e.message).slice(0, 200) : 'qemu-img'}`);
    });
    return { bytes: opened.st.size, virtualSize: size };
  } finally {
    await opened.fh.close().catch(() => undefined);
  }
}
