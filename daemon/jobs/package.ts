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
import { pipeline, type Readable } from 'node:stream';
import { FetchFailed, fetchHttp, type FetchSettings } from './fetch.js';
import type { StoredInstance } from '../registry/model.js';
import { PACKAGE_CREDENTIALS } from '../registry/vault.js';
import { ArchiveRefused, archiveCheck, type ArchiveLimits } from '../registry/archive-check.js';

export interface PackageSettings extends ArchiveLimits, FetchSettings {}

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

/**
 * Opens `url`'s package: resolves once the server's answer passed the header checks (status,
 * type, length), with the body checked as it streams; rejects with FetchFailed.
 */
export async function fetchPackage(
  url: string,
  auth: { username?: string | undefined; password?: string | undefined },
  settings: PackageSettings,
  signal: AbortSignal,
  userAgent: string,
): Promise<OpenedPackage> {
  const f = await fetchHttp(url, {
    settings,
    signal,
    userAgent,
    auth,
    accept: 'application/gzip, application/x-gzip, application/octet-stream;q=0.5',
    server: 'the package server',
  });
  if (f.type && !TYPES.has(f.type)) {
    f.body.destroy();
    throw new FetchFailed(`content type ${f.type.slice(0, 64)} (not a gzipped tar archive)`);
  }
  // Whatever fails (got, the cap, the archive check) fails this stream: `why` says why.
  const source = pipeline(f.body, archiveCheck(settings), () => undefined);
  const why = (e: unknown): string => (e instanceof ArchiveRefused ? e.message : f.why(e));
  return { type: f.type || 'application/gzip', ...(f.length !== undefined ? { length: f.length } : {}), source, why };
}

/**
 * The guest door's view of the packages: `open` serves the instance's package while its job runs,
 * and ties each failure to that job.
 */
export class PackageSource {
  /** The live jobs whose package failed (by their signal: a new job is a new signal). */
  private readonly failed = new WeakSet<AbortSignal>();

  constructor(private readonly d: PackageDeps) {}

  /** The package of `inst` as a stream, or why not (a fetch's failure the job now carries too). */
  async open(inst: StoredInstance): Promise<OpenedPackage | { problem: string }> {
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
      const reason = e instanceof FetchFailed ? e.reason : 'fetch failed';
      failed(reason);
      return { problem: reason };
    }
  }
}
