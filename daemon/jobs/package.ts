/**
 * The personalization package (docs/guest-api.md, "The personalization package"): an instance's
 * `install.packageUrl` names a `.tar.gz`/`.tgz` that the install appliance unpacks over the
 * installed filesystem after the OS scripts ran. metad fetches it with got at the moment the
 * appliance asks (`GET /ganeti/<v>/os/package`) and streams it through: never written to the
 * node's disk, never cached, checked on the way (daemon/registry/archive-check.ts), and only while
 * the instance's install job runs.
 *
 * - Credentials: the secret parameters `package-username` and `package-password` (memory only,
 *   wiped at the job's end like every secret) become HTTP basic auth; they are never served to the
 *   guest (routes/guest/view.ts withholds them), and got drops them on a redirect to another
 *   origin. A redirect from https to http is refused (it would send them in clear).
 * - Bounds: connect, response (first byte) and idle timeouts, at most `maxRedirects` redirects,
 *   at most `maxBytes` compressed (a larger Content-Length is refused before any byte, a longer
 *   body is cut), the archive limits, and the job itself: the fetch is cancelled when the job ends
 *   (its hard deadline included). No retry: a refusal (4xx) is an answer, and the appliance
 *   asking again is the retry for anything else.
 * - A failure ends the job's use of the package: the job's record says why (`package: HTTP 404`,
 *   `package: archive refused at entry "…": …`), later requests in the same job are refused at
 *   once, and the appliance, refused, reports failure and powers off.
 */
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';
import type { Request } from 'got';
import type { StoredInstance } from '../registry/model.js';
import { PACKAGE_CREDENTIALS } from '../registry/vault.js';
import { ArchiveRefused, archiveCheck, type ArchiveLimits } from '../registry/archive-check.js';

export interface PackageSettings extends ArchiveLimits {
  /** Most compressed bytes fetched. */
  maxBytes: number;
  connectTimeoutMs: number;
  /** Until the answer's headers. */
  responseTimeoutMs: number;
  /** Longest pause between two bytes of the body. */
  idleTimeoutMs: number;
  maxRedirects: number;
}

/** Content types a package may come with; anything else (an HTML login page) is refused. */
const TYPES = new Set([
  'application/gzip',
  'application/x-gzip',
  'application/x-tgz',
  'application/x-gtar',
  'application/x-tar',
  'application/x-compressed-tar',
  'application/octet-stream',
]);

/** Why a package could not be served (the job's record says `package: <reason>`). */
class PackageFailed extends Error {
  constructor(readonly reason: string) {
    super(`package: ${reason}`);
    this.name = 'PackageFailed';
  }
}

export interface OpenedPackage {
  type: string;
  /** The body's length when the server said it (the checks never change the bytes). */
  length?: number;
  /** The body, checked on the way. */
  source: Readable;
  /** Why the body failed, from its error. */
  why: (err: unknown) => string;
}

/** What the package source needs of the install jobs. */
export interface PackageJobs {
  /** A signal that fires when the instance's live job ends; undefined when no job of it is live. */
  liveSignal(instance: string): AbortSignal | undefined;
  /** The job's package failed: its record will say so. */
  noteFailure(instance: string, reason: string): void;
}

export interface PackageDeps {
  jobs: PackageJobs;
  /** The instance's live secret values (not consumed). */
  secrets: (instance: string) => Readonly<Record<string, string>>;
  settings: PackageSettings;
  userAgent: string;
}

type Got = typeof import('got');
let gotLoaded: Promise<Got> | undefined;
/** got is loaded on the first fetch: a daemon that never fetches a package never pays for it at start. */
const loadGot = (): Promise<Got> => (gotLoaded ??= import('got'));

/** got's error as a reason that names no credential (got's messages may hold the URL). */
function reasonOf(g: Got, e: unknown, s: PackageSettings): string {
  const { HTTPError, MaxRedirectsError, RequestError, TimeoutError } = g;
  if (e instanceof PackageFailed) return e.reason;
  if (e instanceof RequestError && e.cause instanceof PackageFailed) return e.cause.reason;
  if (e instanceof ArchiveRefused) return e.message;
  if (e instanceof HTTPError) return `HTTP ${String(e.response.statusCode)} from the package server`;
  if (e instanceof MaxRedirectsError) return `more than ${String(s.maxRedirects)} redirects`;
  if (e instanceof TimeoutError) {
    const ms = e.event === 'connect' ? s.connectTimeoutMs : e.event === 'response' ? s.responseTimeoutMs : s.idleTimeoutMs;
    return `no ${e.event === 'socket' ? 'data' : e.event} from the package server within ${String(ms)} ms`;
  }
  if (e instanceof RequestError) {
    return e.code && /^E[A-Z_]+$/.test(e.code) ? `fetch failed (${e.code})` : 'fetch failed';
  }
  return 'fetch failed';
}

/** Passes at most `max` bytes; one more fails the stream. */
function byteCap(max: number): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      n += chunk.length;
      if (n > max) cb(new PackageFailed(`larger than ${String(max)} bytes`));
      else cb(null, chunk);
    },
  });
}

/**
 * Opens `url`'s package: resolves once the server's answer passed the header checks (status,
 * type, length), with the body checked as it streams; rejects with PackageFailed.
 */
export async function fetchPackage(
  url: string,
  auth: { username?: string | undefined; password?: string | undefined },
  settings: PackageSettings,
  signal: AbortSignal,
  userAgent: string,
): Promise<OpenedPackage> {
  const g = await loadGot();
  const why = (e: unknown): string => reasonOf(g, e, settings);
  return new Promise((resolve, reject) => {
    let req: Request;
    try {
      req = g.got.stream(url, {
        ...(auth.username !== undefined ? { username: auth.username } : {}),
        ...(auth.password !== undefined ? { password: auth.password } : {}),
        headers: { 'user-agent': userAgent, accept: 'application/gzip, application/x-gzip, application/octet-stream;q=0.5' },
        decompress: false,
        retry: { limit: 0 },
        maxRedirects: settings.maxRedirects,
        throwHttpErrors: true,
        timeout: {
          lookup: settings.connectTimeoutMs,
          connect: settings.connectTimeoutMs,
          secureConnect: settings.connectTimeoutMs,
          response: settings.responseTimeoutMs,
          socket: settings.idleTimeoutMs,
        },
        signal,
        hooks: {
          beforeRedirect: [
            (next) => {
              const to = next.url instanceof URL ? next.url : new URL(String(next.url));
              if (to.protocol !== 'http:' && to.protocol !== 'https:') throw new PackageFailed(`redirect to ${to.protocol} refused`);
              if (new URL(url).protocol === 'https:' && to.protocol === 'http:')
                throw new PackageFailed('redirect from https to http refused');
            },
          ],
        },
      });
    } catch (e) {
      reject(new PackageFailed(why(e)));
      return;
    }
    const fail = (e: unknown): void => reject(new PackageFailed(why(e)));
    req.once('error', fail);
    req.once('response', (res: { statusCode: number; headers: Record<string, string | string[] | undefined> }) => {
      req.off('error', fail);
      const type = String(res.headers['content-type'] ?? '')
        .split(';')[0]
        ?.trim()
        .toLowerCase();
      const length = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
      const problem =
        type && !TYPES.has(type)
          ? `content type ${type.slice(0, 64)} (not a gzipped tar archive)`
          : length !== undefined && !(Number.isSafeInteger(length) && length >= 0)
            ? 'a bad Content-Length'
            : length !== undefined && length > settings.maxBytes
              ? `larger than ${String(settings.maxBytes)} bytes`
              : undefined;
      if (problem !== undefined) {
        req.destroy();
        reject(new PackageFailed(problem));
        return;
      }
      // Whatever fails (got, the cap, the archive check) fails this stream: reasonOf says why.
      const source = pipeline(req, byteCap(settings.maxBytes), archiveCheck(settings), () => undefined);
      resolve({ type: type || 'application/gzip', ...(length !== undefined ? { length } : {}), source, why });
    });
  });
}

/**
 * The guest door's view of the packages: `open` serves the instance's package while its job runs,
 * and ties each failure to that job.
 */
export class PackageSource {
  /** The live jobs whose package failed (by their signal: a new job is a new signal). */
  private readonly failed = new WeakSet<AbortSignal>();

  constructor(private readonly d: PackageDeps) {}

  /** The package of `inst` as a stream, or why not (`failed`: a failure the job now carries). */
  async open(inst: StoredInstance): Promise<OpenedPackage | { problem: string; failed?: true }> {
    const url = inst.doc.install?.packageUrl;
    const name = inst.doc.name;
    if (url === undefined) return { problem: 'no package URL' };
    const signal = this.d.jobs.liveSignal(name);
    if (signal === undefined) return { problem: 'no install job runs' };
    if (this.failed.has(signal)) return { problem: 'failed earlier in this job' };
    const failed = (reason: string): void => {
      if (signal.aborted || this.failed.has(signal)) return; // the job ended: not the package's fault
      this.failed.add(signal);
      this.d.jobs.noteFailure(name, `package: ${reason}`);
    };
    const s = this.d.secrets(name);
    try {
      const opened = await fetchPackage(
        url,
        { username: s[PACKAGE_CREDENTIALS.username], password: s[PACKAGE_CREDENTIALS.password] },
        this.d.settings,
        signal,
        this.d.userAgent,
      );
      opened.source.once('error', (e) => failed(opened.why(e)));
      return opened;
    } catch (e) {
      const reason = e instanceof PackageFailed ? e.reason : 'fetch failed';
      failed(reason);
      return { problem: reason, failed: true };
    }
  }
}
