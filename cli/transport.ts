/**
 * The admin door's transport: HTTP/1.1 over the daemon's unix socket with node:http. `request`
 * sends anything and returns any status; `expect` turns an answer outside the expected statuses
 * into an ApiError; a socket that cannot be reached is a ConnectError (exit 3). The typed
 * methods per route live in cli/client.ts (AdminClient extends this class).
 */
import http from 'node:http';
import { ApiError, CliError, ConnectError, EXIT, UsageError, type ErrorDetail } from './errors.js';

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
  ENAMETOOLONG: 'the path is too long for a unix socket',
};

export interface ClientOptions {
  /** Sent as User-Agent. */
  userAgent?: string;
  /** Keep connections open between requests (benchmarks); default false: one short connection each. */
  keepAlive?: boolean;
  /** Parallel connections at most (default: unlimited). */
  maxSockets?: number;
}

export interface RequestOptions {
  /** Sent as is. */
  body?: string | Buffer;
  /** Defaults to application/json when there is a body. */
  contentType?: string;
  /** Extra headers (lower-case names win over the defaults). */
  headers?: Record<string, string>;
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface AdminReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export class AdminTransport {
  readonly #agent: http.Agent;
  protected readonly userAgent: string;

  constructor(
    readonly socketPath: string,
    opts: ClientOptions = {},
  ) {
    if (socketPath === '') throw new UsageError('the socket path is empty');
    this.userAgent = opts.userAgent ?? 'metadctl';
    this.#agent = new http.Agent({ keepAlive: opts.keepAlive ?? false, ...(opts.maxSockets ? { maxSockets: opts.maxSockets } : {}) });
  }

  /** Close kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }

  /** One request; any status comes back. Throws only when there is no complete answer. */
  request(method: string, path: string, opts: RequestOptions = {}): Promise<AdminReply> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': this.userAgent };
    if (opts.body !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return new Promise((resolve, reject) => {
      let done = false;
      const settle = (fn: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        fn();
      };
      const fail = (err: unknown): void => settle(() => reject(this.#translate(err, opts, timeoutMs)));
      const req = http.request({
        socketPath: this.socketPath,
        method,
        path,
        headers,
        agent: this.#agent,
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
      const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
      let res: http.IncomingMessage | undefined;
      req.on('response', (r) => {
        res = r;
        const chunks: Buffer[] = [];
        r.on('data', (c: Buffer) => chunks.push(c));
        r.on('end', () => settle(() => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks) })));
        r.on('error', fail);
        r.on('close', () => {
          if (!r.complete) fail(Object.assign(new Error('answer cut short'), { code: 'ECONNRESET' }));
        });
      });
      // The daemon may answer (413) and close before it read our whole body: then the answer
      // counts, not the EPIPE/ECONNRESET of our write. The response's own events settle it.
      req.on('error', (err) => {
        if (res === undefined) fail(err);
      });
      req.end(opts.body);
    });
  }

  /** Like `request`, but an answer outside `ok` becomes an ApiError. */
  async expect(method: string, path: string, ok: readonly number[], opts: RequestOptions = {}): Promise<AdminReply> {
    const res = await this.request(method, path, opts);
    if (!ok.includes(res.status)) throw apiError(res);
    return res;
  }

  #translate(err: unknown, opts: RequestOptions, timeoutMs: number): Error {
    if (opts.signal?.aborted) return err instanceof Error ? err : new Error('aborted'); // the caller asked for it
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const reason = CONNECT_ERRORS[code];
    if (reason !== undefined) return new ConnectError(this.socketPath, reason);
    if (code === 'ETIMEDOUT')
      return new CliError(`no answer from the daemon on ${this.socketPath} within ${Math.round(timeoutMs / 1000)} s`, EXIT.API);
    // Node's messages for these name the syscall and code only ("write EPIPE"), never data.
    return new CliError(`request to ${this.socketPath} failed: ${code || 'connection error'}`, EXIT.API);
  }
}

/** Parse a JSON answer; a daemon that sends something else is an error (exit 1). */
export function parseJson(res: AdminReply): unknown {
  try {
    return JSON.parse(res.body.toString('utf8'));
  } catch {
    const type = res.headers['content-type'];
    throw new CliError(`the daemon sent an answer that is not JSON (status ${res.status}, ${type ?? 'no content type'})`, EXIT.API);
  }
}

/** Build the ApiError for an error answer (`{code, message, details, incidentId}`), tolerating other bodies. */
function apiError(res: AdminReply): ApiError {
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
        details.push({ path: typeof path === 'string' ? path : '', message: typeof m === 'string' ? m : '' });
      }
    }
  }
  const incidentId = typeof obj.incidentId === 'string' ? obj.incidentId : undefined;
  return new ApiError(message, res.status, code, details, incidentId, res.body);
}
