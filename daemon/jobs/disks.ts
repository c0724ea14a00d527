/**
 * Host paths an instance names as its disks (`hardware.disks[].path`) are an attack surface:
 * whoever may write to the admin socket would otherwise hand any host file (/etc/shadow) or
 * device to an untrusted create script as /dev/vdX. A disk is admitted only when
 *   - its path is absolute and normalized (no control characters, no `.`/`..` segments, no `//`);
 *   - it lies under a configured storage root (`storage.fileRoots`, `storage.blockRoots`), and so
 *     does what it resolves to (realpath: a symlink out of the roots is refused), with one
 *     exception: an LVM volume group root `/dev/<vg>`, whose `/dev/<vg>/<lv>` links point at
 *     `/dev/dm-N`; there the device-mapper name of that device must be the one LVM gives that
 *     very logical volume (`<vg>-<lv>`, hyphens doubled);
 *   - under a file root it is a regular file; under a block root a block device: never a FIFO,
 *     socket, character device or directory (stat never opens, so a FIFO cannot block us).
 * The check runs at the install request and again when the run is prepared, and the domain gets
 * the resolved path (what was checked is what libvirt opens). Messages never carry the path.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { basename, dirname, sep } from 'node:path';

export interface StorageRoots {
  fileRoots: readonly string[];
  blockRoots: readonly string[];
}

/** What a disk resolved to: the real path libvirt gets, and an identity for "the same disk". */
export interface ResolvedDisk {
  real: string;
  kind: 'file' | 'block';
  /** `file:<dev>:<ino>` or `block:<rdev>`: two paths with one key are one disk. */
  key: string;
}

/** The filesystem as the check sees it (tests inject sysfs). */
export interface DiskFs {
  realpath: (p: string) => Promise<string>;
  stat: (p: string) => Promise<{ isFile(): boolean; isBlockDevice(): boolean; dev: number; ino: number; rdev: number }>;
  /** The device-mapper name of block device `major:minor` (sysfs `dm/name`), or undefined. */
  dmName: (major: number, minor: number) => Promise<string | undefined>;
}

const realDiskFs: DiskFs = {
  realpath: (p) => realpath(p),
  stat: (p) => stat(p),
  dmName: async (major, minor) =>
    readFile(`/sys/dev/block/${String(major)}:${String(minor)}/dm/name`, 'utf8').then(
      (s) => s.trim(),
      () => undefined,
    ),
};

/** Control characters (C0, DEL, C1). */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * The one rule for the syntax of a host path an admin names (disks): absolute, normalized, no
 * control characters. JSON Schema says the same with HOST_PATH_PATTERN (daemon/registry/model.ts).
 */
export function hostPathProblem(p: string): string | undefined {
  if (CONTROL.test(p)) return 'must not contain control characters';
  if (!p.startsWith('/') || p.length < 2) return 'must be an absolute path';
  const segs = p.slice(1).split('/');
  if (segs.some((s) => s === '')) return 'must not contain an empty segment ("//") or end in "/"';
  if (segs.some((s) => s === '.' || s === '..')) return 'must not contain "." or ".." segments';
  return undefined;
}

const under = (root: string, p: string): boolean => p.startsWith(root.endsWith(sep) ? root : root + sep);

/** libvirt/LVM's device-mapper name of logical volume `lv` in volume group `vg`. */
export function lvmDmName(vg: string, lv: string): string {
  return `${vg.replaceAll('-', '--')}-${lv.replaceAll('-', '--')}`;
}

const major = (rdev: number): number => Math.floor(rdev / 256) & 0xfff; // Linux new_decode_dev
const minor = (rdev: number): number => (rdev & 0xff) | ((Math.floor(rdev / 4096) & 0xfff00) >>> 0);

export class DiskRefused extends Error {
  override name = 'DiskRefused';
}

async function realRoots(roots: readonly string[], fs: DiskFs): Promise<{ given: string; real: string }[]> {
  const out: { given: string; real: string }[] = [];
  for (const given of roots) {
    const real = await fs.realpath(given).catch(() => undefined);
    if (real !== undefined) out.push({ given, real });
  }
  return out;
}

/** Checks one disk path against the roots and resolves it (see diskResolver). */
export async function resolveDisk(path: string, roots: StorageRoots, fs: DiskFs = realDiskFs): Promise<ResolvedDisk> {
  return (await diskResolver(roots, fs))(path);
}

/**
 * The roots resolved once, and a function that checks one disk path against them and resolves
 * it: it throws DiskRefused with a message that names the rule (never the path) when the disk
 * may not be used. One resolver serves every disk of one check (an install's and the others').
 */
export async function diskResolver(roots: StorageRoots, fs: DiskFs = realDiskFs): Promise<(path: string) => Promise<ResolvedDisk>> {
  const files = await realRoots(roots.fileRoots, fs);
  const blocks = await realRoots(roots.blockRoots, fs);
  return (path) => resolveUnder(path, files, blocks, fs);
}

async function resolveUnder(
  path: string,
  files: readonly { given: string; real: string }[],
  blocks: readonly { given: string; real: string }[],
  fs: DiskFs,
): Promise<ResolvedDisk> {
  const syntax = hostPathProblem(path);
  if (syntax !== undefined) throw new DiskRefused(syntax);
  const fileRoot = files.find((r) => under(r.given, path) || under(r.real, path));
  const blockRoot = blocks.find((r) => under(r.given, path) || under(r.real, path));
  if (!fileRoot && !blockRoot) throw new DiskRefused('is not under a storage root (storage.fileRoots, storage.blockRoots)');
  const real = await fs.realpath(path).catch((e: unknown) => {
    throw new DiskRefused((e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'cannot be resolved');
  });
  const st = await fs.stat(real).catch(() => {
    throw new DiskRefused('cannot be read');
  });
  if (fileRoot) {
    if (!st.isFile()) throw new DiskRefused('must be a regular file (under a file root)');
    if (!files.some((r) => under(r.real, real))) throw new DiskRefused('resolves outside the storage roots (a symlink out)');
    return { real, kind: 'file', key: `file:${String(st.dev)}:${String(st.ino)}` };
  }
  if (!st.isBlockDevice()) throw new DiskRefused('must be a block device (under a block root)');
  const root = blockRoot as { given: string; real: string };
  const inRoots = blocks.some((r) => under(r.real, real));
  if (!inRoots) {
    // An LVM volume group root: /dev/<vg>/<lv> -> /dev/dm-N must be that very volume.
    const rel = path.slice((under(root.given, path) ? root.given : root.real).length + 1);
    const lvmShaped = dirname(root.given) === '/dev' && !rel.includes('/');
    const dm = await fs.dmName(major(st.rdev), minor(st.rdev));
    if (!lvmShaped || dm === undefined || dm !== lvmDmName(basename(root.given), rel)) {
      throw new DiskRefused('resolves outside the storage roots (not the logical volume it names)');
    }
  }
  return { real, kind: 'block', key: `block:${String(st.rdev)}` };
}
