/**
 * The one HTTP client of the install jobs (got): what the personalization package
 * (daemon/jobs/package.ts) and an OS image from a URL (daemon/jobs/os-image.ts) are fetched with.
 * Bounded: connect, response (first byte) and idle timeouts, at most `maxRedirects` redirects,
 * at most `maxBytes` (a larger Content-Length is refused before any byte, a longer body fails the
 * stream), no retry, and the caller's signal (the job's end). Basic auth never follows a redirect
 * to another origin (got drops it) and a redirect from https to http is refused. Every failure
 * becomes a reason in metad's words that never holds the URL or a credential.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Request } from 'got';

export interface FetchSettings {
  /** Most bytes fetched (as sent). */
  maxBytes: number;
  connectTimeoutMs: number;
  /** Until the answer's headers. */
  responseTimeoutMs: number;
  /** Longest pause between two parts of the body. */
  idleTimeoutMs: number;
  maxRedirects: number;
}

/** A fetch refused or failed: `reason` is what a job's record says after its prefix. */
export class FetchFailed extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'FetchFailed';
  }
}

export interface Fetched {
  /** The content type's media type, lower case ('' when none). */
  type: string;
  /** The Content-Length when the server sent one. */
  length?: number;
  /** The body (at most maxBytes: one byte more fails it). */
  body: Transform;
  /** Why the body failed, from its error (FetchFailed, got's, or the caller's own). */
  why: (err: unknown) => string;
}

type Got = typeof import('got');
let gotLoaded: Promise<Got> | undefined;
/** got is loaded on the first fetch: a daemon that never fetches never pays for it at start. */
const loadGot = (): Promise<Got> => (gotLoaded ??= import('got'));

/** Passes at most `max` bytes; one more fails the stream. */
function byteCap(max: number): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      n += chunk.length;
      if (n > max) cb(new FetchFailed(`larger than ${String(max)} bytes`));
      else cb(null, chunk);
    },
  });
}

/**
 * GET `url`: resolves once the answer's headers passed (2xx, a usable length within maxBytes),
 * with the body; rejects with FetchFailed. `server` names the far end in reasons ("the package
 * server").
 */
export async function fetchHttp(
  url: string,
  o: {
    settings: FetchSettings;
    signal: AbortSignal;
    userAgent: string;
    accept: string;
    server: string;
    auth?: { username?: string | undefined; password?: string | undefined };
  },
): Promise<Fetched> {
  const g = await loadGot();
  const s = o.settings;
  const why = (e: unknown): string => {
    if (e instanceof FetchFailed) return e.reason;
    if (e instanceof g.RequestError && e.cause instanceof FetchFailed) return e.cause.reason;
    if (e instanceof g.HTTPError) return `HTTP ${String(e.response.statusCode)} from ${o.server}`;
    if (e instanceof g.MaxRedirectsError) return `more than ${String(s.maxRedirects)} redirects`;
    if (e instanceof g.TimeoutError) {
      const ms = e.event === 'connect' ? s.connectTimeoutMs : e.event === 'response' ? s.responseTimeoutMs : s.idleTimeoutMs;
      return `no ${e.event === 'socket' ? 'data' : e.event} from ${o.server} within ${String(ms)} ms`;
    }
    if (e instanceof g.RequestError) return e.code && /^E[A-Z_]+$/.test(e.code) ? `fetch failed (${e.code})` : 'fetch failed';
    return 'fetch failed';
  };
  return new Promise((resolve, reject) => {
    let req: Request;
    try {
      req = g.got.stream(url, {
        ...(o.auth?.username !== undefined ? { username: o.auth.username } : {}),
        ...(o.auth?.password !== undefined ? { password: o.auth.password } : {}),
        headers: { 'user-agent': o.userAgent, accept: o.accept },
        decompress: false,
        retry: { limit: 0 },
        maxRedirects: s.maxRedirects,
        throwHttpErrors: true,
        timeout: {
          lookup: s.connectTimeoutMs,
          connect: s.connectTimeoutMs,
          secureConnect: s.connectTimeoutMs,
          response: s.responseTimeoutMs,
          socket: s.idleTimeoutMs,
        },
        signal: o.signal,
        hooks: {
          beforeRedirect: [
            (next) => {
              const to = next.url instanceof URL ? next.url : new URL(String(next.url));
              if (to.protocol !== 'http:' && to.protocol !== 'https:') throw new FetchFailed(`redirect to ${to.protocol} refused`);
              if (new URL(url).protocol === 'https:' && to.protocol === 'http:')
                throw new FetchFailed('redirect from https to http refused');
            },
          ],
        },
      });
    } catch (e) {
      reject(new FetchFailed(why(e)));
      return;
    }
    const fail = (e: unknown): void => reject(new FetchFailed(why(e)));
    req.once('error', fail);
    req.once('response', (res: { headers: Record<string, string | string[] | undefined> }) => {
      req.off('error', fail);
      const type =
        String(res.headers['content-type'] ?? '')
          .split(';')[0]
          ?.trim()
          .toLowerCase() ?? '';
      const length = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
      const problem =
        length !== undefined && !(Number.isSafeInteger(length) && length >= 0)
          ? 'a bad Content-Length'
          : length !== undefined && length > s.maxBytes
            ? `larger than ${String(s.maxBytes)} bytes`
            : undefined;
      if (problem !== undefined) {
        req.destroy();
        reject(new FetchFailed(problem));
        return;
      }
      const body = byteCap(s.maxBytes);
      req.on('error', (e) => body.destroy(e));
      req.pipe(body);
      body.once('close', () => {
        if (!req.destroyed) req.destroy();
      });
      resolve({ type, ...(length !== undefined ? { length } : {}), body, why });
    });
  });
}
