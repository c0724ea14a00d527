/**
 * The admin API client: HTTP/1.1 over the daemon's unix socket (docs/admin-api.md), with got.
 * No retries, no redirects, no keep-alive: one short connection per request. Error statuses are
 * turned into ApiError (exit 1, or 4 for 404); failure to reach the socket into a CliError with
 * exit 3 naming the socket and the ways to choose another one.
 */
import http from 'node:http';
import got, { RequestError } from 'got';
import { ApiError, CliError, EXIT, UsageError, type ErrorDetail } from './errors.js';

export const DEFAULT_SOCKET = '/run/metad/admin.sock';
/** Ordinary requests: the daemon answers from memory or after one fsync'd write. */
const DEFAULT_TIMEOUT_MS = 60_000;
/** Errors that mean "nobody is listening there" (or we may not talk to it). */
const CONNECT_ERRORS: Record<string, string> = {
  ENOENT: 'no such socket',
  ECONNREFUSED: 'connection refused (is metad running?)',
  EACCES: 'permission denied (are you in the group that owns it?)',
  EPERM: 'operation not permitted',
  ENOTSOCK: 'not a socket',
  ENOTDIR: 'a path component is not a directory',
};

export interface RequestOptions {
  /** Sent as is. */
  body?: string | Buffer;
  /** Defaults to application/json when there is a body. */
  contentType?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ApiResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

export class AdminClient {
  readonly #base: string;
  readonly #agent = new http.Agent({ keepAlive: false });

  constructor(
    readonly socketPath: string,
    readonly userAgent = 'metadctl',
  ) {
    if (socketPath === '') throw new UsageError('the socket path is empty');
    // got finds the socket path in the URL's path, up to the first ':'; the URL parser
    // percent-encodes spaces and the like. Refuse what would not survive the round trip.
    let ok = false;
    try {
      ok = new URL(`http://unix:${socketPath}:/v1`).pathname === `${socketPath}:/v1` && !socketPath.includes(':');
    } catch {
      ok = false;
    }
    if (!ok) {
      throw new UsageError(`cannot use socket path ${JSON.stringify(socketPath)}`, [
        "it must not contain ':', '?', '#', '%', spaces or non-ASCII characters; use a symlink with a plain name",
      ]);
    }
    this.#base = `http://unix:${socketPath}:`;
  }

  /** One request; any status comes back (use `expect` to turn error statuses into ApiError). */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.userAgent };
    if (opts.body !== undefined) headers['content-type'] = opts.contentType ?? 'application/json';
    try {
      const res = await got(`${this.#base}${path}`, {
        method: method as 'GET',
        headers,
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        enableUnixSockets: true,
        retry: { limit: 0 },
        throwHttpErrors: false,
        followRedirect: false,
        decompress: false,
        responseType: 'buffer',
        agent: { http: this.#agent },
        timeout: { request: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS },
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      return {
        status: res.statusCode,
        contentType: String(res.headers['content-type'] ?? ''),
        body: res.body,
      };
    } catch (err) {
      throw this.#translate(err, opts);
    }
  }

  /** Like `request`, but an answer outside `ok` becomes an ApiError. */
  async expect(method: string, path: string, ok: readonly number[], opts: RequestOptions = {}): Promise<ApiResponse> {
    const res = await this.request(method, path, opts);
    if (!ok.includes(res.status)) throw apiError(res);
    return res;
  }

  #translate(err: unknown, opts: RequestOptions): unknown {
    if (opts.signal?.aborted) return err; // the caller asked for it
    if (err instanceof RequestError) {
      const reason = CONNECT_ERRORS[err.code];
      if (reason !== undefined) {
        return new CliError(`cannot connect to ${this.socketPath}: ${reason}`, EXIT.CONNECT, [
          'choose the admin socket with --socket PATH or the METAD_SOCKET environment variable',
        ]);
      }
      if (err.code === 'ETIMEDOUT') {
        return new CliError(`no answer from the daemon on ${this.socketPath} within ${Math.round((opts.timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000)} s`, EXIT.API);
      }
      return new CliError(`request to ${this.socketPath} failed: ${err.message}`, EXIT.API);
    }
    return err;
  }
}

/** Parse a JSON answer; a daemon that sends something else is an error (exit 1). */
export function parseJson<T>(res: ApiResponse): T {
  try {
    return JSON.parse(res.body.toString('utf8')) as T;
  } catch {
    throw new CliError(`the daemon sent an answer that is not JSON (status ${res.status}, ${res.contentType || 'no content type'})`, EXIT.API);
  }
}

/** Build the ApiError for an error answer (`{code, message, details, incidentId}`), tolerating other bodies. */
export function apiError(res: ApiResponse): ApiError {
  let body: unknown;
  try {
    body = JSON.parse(res.body.toString('utf8'));
  } catch {
    body = undefined;
  }
  const obj = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
  const code = typeof obj.code === 'string' ? obj.code : undefined;
  const message =
    typeof obj.message === 'string' && obj.message !== ''
      ? obj.message
      : `the daemon answered HTTP ${res.status}${code ? ` (${code})` : ''}`;
  const details: ErrorDetail[] = [];
  if (Array.isArray(obj.details)) {
    for (const d of obj.details as unknown[]) {
      if (typeof d === 'object' && d !== null) {
        const { path, message: m } = d as Record<string, unknown>;
        details.push({ path: typeof path === 'string' ? path : '', message: typeof m === 'string' ? m : String(m) });
      }
    }
  }
  const incidentId = typeof obj.incidentId === 'string' ? obj.incidentId : undefined;
  return new ApiError(message, res.status, code, details, incidentId, res.body);
}

/**
 * `/v1/instances/{name}` and below, with every segment encoded. An empty, `.` or `..` segment is
 * a usage error: URL handling would drop it and aim the request at the parent resource
 * (`params unset web1 --visibility secret ""` would clear every secret).
 */
export function instancePath(name: string, ...rest: string[]): string {
  for (const seg of [name, ...rest]) {
    if (seg === '' || seg === '.' || seg === '..') throw new UsageError(`invalid name ${JSON.stringify(seg)}: names cannot be empty, "." or ".."`);
  }
  return ['/v1/instances', name, ...rest].map((s, i) => (i === 0 ? s : encodeURIComponent(s))).join('/');
}
