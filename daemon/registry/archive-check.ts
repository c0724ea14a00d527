/**
 * A gzipped tar archive checked on its way through: `archiveCheck(limits)` is a Transform that
 * passes the archive's bytes on unchanged (byte for byte what came in) while it unpacks a copy
 * with node:zlib and reads every entry header with tar-stream. An entry that breaks a rule ends
 * the stream with an `ArchiveRefused` error naming the entry, and no byte that decompresses to any
 * part of that entry (or anything after it) is ever passed on: a compressed chunk is released only
 * once everything it decompresses to has been checked (after each chunk the inflater is flushed,
 * so a prefix of the output is exactly what a prefix of the input can decompress to). The bytes
 * held back are bounded (`maxHeldBytes`): a header that does not come is an error, not a buffer.
 *
 * Independent of where the bytes come from: Ganeti's OS install package (routes/guest/ganeti.ts)
 * and, later, a personalization package fetched from a URL.
 *
 * The rules (what a tree a guest unpacks with `tar x` may hold):
 *   - names relative, without `..` components or control characters;
 *   - regular files, directories, symbolic links and hard links only (no device nodes, FIFOs,
 *     contiguous files, unknown types), none setuid or setgid;
 *   - a symbolic link relative and pointing down its own directory only (no `..`, not absolute):
 *     `os -> /etc` and `x -> ../..` are refused; a chain of such links never leaves the tree;
 *   - a hard link to a regular file an earlier entry of the archive put there;
 *   - at most `maxEntries` entries, each at most `maxEntryBytes`, all together at most
 *     `maxUnpackedBytes` unpacked (a gzip bomb ends there).
 */
import { Transform, type TransformCallback } from 'node:stream';
import { constants as zc, createGunzip, type Gunzip } from 'node:zlib';
import { posix } from 'node:path';
import { extract, type Extract, type Header } from 'tar-stream';

export interface ArchiveLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxUnpackedBytes: number;
  /** Compressed bytes held back while a header is incomplete; beyond it the archive is refused. */
  maxHeldBytes?: number;
}

/** Why an archive was cut: the entry (its name as the archive spells it, cut to 256 characters) and the rule. */
export class ArchiveRefused extends Error {
  constructor(
    readonly reason: string,
    readonly entry: string | null,
  ) {
    super(entry === null ? `archive refused: ${reason}` : `archive refused at entry ${JSON.stringify(entry)}: ${reason}`);
    this.name = 'ArchiveRefused';
  }
}

const DEFAULT_HELD = 1024 * 1024;
// eslint-disable-next-line no-control-regex -- control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const ALLOWED_TYPES = new Set<string | null>(['file', 'directory', 'symlink', 'link']);

/** The entry's path without `./` prefixes and trailing slashes ('./os/' -> 'os', './' -> ''). */
function clean(name: string): string {
  return posix
    .normalize(name)
    .replace(/^(\.\/)+/, '')
    .replace(/\/+$/, '')
    .replace(/^\.$/, '');
}

function hasDotDot(p: string): boolean {
  return p.split('/').includes('..');
}

/** The reason `h` breaks a rule, or undefined. `files`: regular files seen so far (hard-link targets). */
function entryProblem(h: Header, files: ReadonlySet<string>, limits: ArchiveLimits): string | undefined {
  if (CONTROL.test(h.name)) return 'control character in the name';
  if (h.name.startsWith('/')) return 'absolute name';
  if (hasDotDot(h.name)) return '".." in the name';
  // tar-stream's type is null for a type flag it does not know (its typings omit that).
  const type = h.type as string | null;
  if (!ALLOWED_TYPES.has(type)) return `type ${type ?? 'unknown'} (only files, directories and links)`;
  if ((h.mode & 0o6000) !== 0) return 'setuid or setgid';
  if (h.size > limits.maxEntryBytes) return `larger than ${String(limits.maxEntryBytes)} bytes`;
  if (h.type === 'symlink') {
    const to = h.linkname;
    if (to === '' || CONTROL.test(to)) return 'symbolic link to an empty name or one with control characters';
    if (to.startsWith('/')) return 'symbolic link to an absolute path';
    if (hasDotDot(to)) return 'symbolic link with ".." (links may only point down their own directory)';
  }
  if (h.type === 'link') {
    const to = h.linkname;
    if (CONTROL.test(to) || to.startsWith('/') || hasDotDot(to)) return 'hard link out of the tree';
    if (!files.has(clean(to))) return 'hard link to no regular file earlier in the archive';
  }
  return undefined;
}

/** The parts of tar-stream's entry stream used here. */
interface EntryStream {
  on(event: 'data' | 'error', fn: (d: unknown) => void): unknown;
}

/** One compressed chunk waiting for what it decompresses to (up to `upTo` unpacked bytes) to be checked. */
interface Held {
  chunk: Buffer;
  upTo: number;
}

class ArchiveCheck extends Transform {
  private readonly gunzip: Gunzip = createGunzip();
  private readonly tar: Extract = extract();
  private readonly held: Held[] = [];
  private heldBytes = 0;
  /** Unpacked bytes produced so far, and how far they are checked. */
  private produced = 0;
  private checked = 0;
  private entries = 0;
  private readonly files = new Set<string>();
  private failed: Error | undefined;
  private readonly maxHeld: number;
  private tarDone: Promise<void>;

  constructor(private readonly limits: ArchiveLimits) {
    super();
    this.maxHeld = limits.maxHeldBytes ?? DEFAULT_HELD;
    this.gunzip.on('data', (b: Buffer) => this.unpacked(b));
    this.gunzip.on('error', (err: Error) => this.fail(new ArchiveRefused(`not gzip: ${err.message}`, null)));
    this.tar.on('entry', (h: Header, stream, next) => this.entry(h, stream, next));
    this.tarDone = new Promise<void>((resolve) => {
      this.tar.on('finish', resolve);
      this.tar.on('close', resolve);
    });
    this.tar.on('error', (err: Error) =>
      this.fail(err instanceof ArchiveRefused ? err : new ArchiveRefused(`not tar: ${err.message}`, null)),
    );
  }

  private unpacked(b: Buffer): void {
    if (this.failed) return;
    this.produced += b.length;
    if (this.produced > this.limits.maxUnpackedBytes) {
      this.fail(new ArchiveRefused(`more than ${String(this.limits.maxUnpackedBytes)} bytes unpacked`, null));
      return;
    }
    if (this.produced - this.checked > this.maxHeld + 1024) {
      this.fail(new ArchiveRefused(`more than ${String(this.maxHeld)} unpacked bytes without a valid entry`, null));
      return;
    }
    // Backpressure: the inflater waits while the parser is behind, so neither buffers much.
    if (!this.tar.write(b)) {
      this.gunzip.pause();
      this.tar.once('drain', () => this.gunzip.resume());
    }
  }

  private entry(h: Header, stream: EntryStream, next: (err?: Error | null) => void): void {
    if (this.failed) return;
    this.entries++;
    const problem =
      this.entries > this.limits.maxEntries
        ? `more than ${String(this.limits.maxEntries)} entries`
        : entryProblem(h, this.files, this.limits);
    if (problem) {
      this.fail(new ArchiveRefused(problem, h.name.slice(0, 256)));
      return;
    }
    if (h.type === 'file') this.files.add(clean(h.name));
    // Where this entry's data starts in the unpacked stream (tar-stream's byteOffset): everything
    // before it, headers included, is checked; its data is checked as it arrives.
    const start = (h as Header & { byteOffset?: number }).byteOffset ?? this.checked;
    this.advance(start);
    let seen = 0;
    stream.on('data', (d) => {
      seen += (d as Buffer).length;
      this.advance(start + seen);
    });
    stream.on('error', () => undefined); // the parser's own error says it
    next();
  }

  /** Unpacked bytes up to `to` are checked: release every chunk that decompresses to no more. */
  private advance(to: number): void {
    if (to > this.checked) this.checked = to;
    while (this.held.length > 0 && (this.held[0] as Held).upTo <= this.checked) {
      const h = this.held.shift() as Held;
      this.heldBytes -= h.chunk.length;
      this.push(h.chunk);
    }
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.held.length = 0;
    this.heldBytes = 0;
    this.gunzip.destroy();
    this.tar.destroy();
    this.destroy(err);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.failed) {
      cb(this.failed);
      return;
    }
    this.gunzip.write(chunk);
    // Flushed: everything this prefix of the input decompresses to has been emitted ('data').
    this.gunzip.flush(zc.Z_SYNC_FLUSH, () => {
      if (this.failed) {
        cb(this.failed);
        return;
      }
      this.held.push({ chunk, upTo: this.produced });
      this.heldBytes += chunk.length;
      this.advance(this.checked);
      if (this.heldBytes > this.maxHeld) {
        this.fail(new ArchiveRefused(`more than ${String(this.maxHeld)} bytes held back without a valid entry`, null));
        cb(this.failed);
        return;
      }
      cb();
    });
  }

  override _flush(cb: TransformCallback): void {
    if (this.failed) {
      cb(this.failed);
      return;
    }
    this.gunzip.end();
    this.gunzip.once('end', () => {
      if (this.failed) return;
      (this.tar as unknown as { end(): void }).end();
      void this.tarDone.then(() => {
        if (this.failed) {
          cb(this.failed);
          return;
        }
        // The end-of-archive blocks and the gzip trailer: everything checked, release the rest.
        for (const h of this.held) this.push(h.chunk);
        this.held.length = 0;
        cb();
      });
    });
  }

  override _destroy(err: Error | null, cb: (error: Error | null) => void): void {
    this.gunzip.destroy();
    this.tar.destroy();
    cb(err);
  }
}

/** A Transform over a .tgz's bytes that passes them on unchanged while the archive keeps the rules. */
export function archiveCheck(limits: ArchiveLimits): Transform {
  return new ArchiveCheck(limits);
}
