/**
 * The one admin API client (docs/admin-api.md): HTTP/1.1 over the daemon's unix socket with
 * node:http (cli/transport.ts). metadctl, the tests (test/support/daemon.ts) and the benchmarks
 * all use it.
 * - `request` sends anything and returns any status (tests of the API itself);
 * - the typed methods return `{status, body}` for the statuses the API documents and throw
 *   ApiError for the others, ConnectError (exit 3) when the socket cannot be reached, and
 *   TooLargeError before sending a document the daemon would refuse as too large.
 * The answer types (cli/api-types.ts) are derived from the admin door's view functions.
 */
import { isInstanceName, MAX_NAME_CHARS, type Visibility } from '../daemon/registry/model.js';
import type { GanetiSecretsRecord, Health, InstanceList, InstanceView, JobRecord, ParamsView, ParamsWrite } from './api-types.js';
import { streamNdjson } from './ndjson.js';
import { ApiError, TooLargeError, UsageError } from './errors.js';
import { AdminTransport, parseJson, type AdminReply, type RequestOptions } from './transport.js';

export const DEFAULT_SOCKET = '/run/metad/admin.sock';
/** The smallest admin.maxBodyBytes the daemon's config schema allows (daemon/config/schema.ts; a unit test keeps them equal). */
export const MIN_MAX_BODY_BYTES = 1024;
/** A typed answer: the status, the parsed body and the bytes as received (for --json). */
export interface Answer<T> {
  status: number;
  body: T;
  raw: Buffer;
}

export class AdminClient extends AdminTransport {
  #limit: Promise<number | undefined> | undefined;

  // ---- typed methods, one per route of docs/admin-api.md -----------------------------------

  health(): Promise<Answer<Health>> {
    return this.#json('GET', '/v1/health', [200]);
  }

  list(): Promise<Answer<InstanceList>> {
    return this.#json('GET', '/v1/instances', [200]);
  }

  show(name: string): Promise<Answer<InstanceView>> {
    return this.#json('GET', instancePath(name), [200]);
  }

  /** PUT under the document's own name: 201 registered, 200 replaced. */
  register(doc: { name: string }): Promise<Answer<InstanceView>> {
    return this.#upload('PUT', instancePath(doc.name), [200, 201], JSON.stringify(doc), 'application/json');
  }

  /** RFC 7396 merge patch. */
  patch(name: string, patch: object): Promise<Answer<InstanceView>> {
    return this.#upload('PATCH', instancePath(name), [200], JSON.stringify(patch), 'application/merge-patch+json');
  }

  async remove(name: string): Promise<Answer<undefined>> {
    return empty(await this.expect('DELETE', instancePath(name), [200, 204]));
  }

  params(name: string): Promise<Answer<ParamsView>> {
    return this.#json('GET', instancePath(name, 'params'), [200]);
  }

  /** Merge into (PATCH) or, with `replace`, replace (PUT) the values of one visibility. */
  setParams(name: string, visibility: Visibility, body: ParamsWrite, replace = false): Promise<Answer<ParamsView>> {
    return this.#upload(
      replace ? 'PUT' : 'PATCH',
      instancePath(name, 'params', visibility),
      [200],
      JSON.stringify(body),
      'application/json',
    );
  }

  async unsetParam(name: string, visibility: Visibility, key: string): Promise<Answer<undefined>> {
    return empty(await this.expect('DELETE', instancePath(name, 'params', visibility, key), [200, 204]));
  }

  async clearParams(name: string, visibility: Visibility): Promise<Answer<undefined>> {
    return empty(await this.expect('DELETE', instancePath(name, 'params', visibility), [200, 204]));
  }

  /** Queue bytes for the guest; 413 (ApiError) when they do not fit in what is left of the buffer. */
  sendPipe(name: string, data: Buffer): Promise<Answer<{ queuedBytes: number }>> {
    return this.#json('POST', instancePath(name, 'pipe'), [200, 202], { body: data, contentType: 'application/octet-stream' });
  }

  /** Take what the guest wrote, waiting up to `waitSec` for bytes when there are none. */
  async readPipe(name: string, opts: { waitSec?: number; signal?: AbortSignal } = {}): Promise<Answer<Buffer>> {
    const path = instancePath(name, 'pipe');
    const res = await this.expect('GET', opts.waitSec === undefined ? path : `${path}?wait=${opts.waitSec}`, [200], {
      timeoutMs: ((opts.waitSec ?? 0) + 30) * 1000,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    return { status: res.status, body: res.body, raw: res.body };
  }

  /** Start (or queue) an install job; timeoutSec up to the daemon's appliance.maxTimeoutMs. */
  install(name: string, timeoutSec?: number): Promise<Answer<JobRecord>> {
    const body = timeoutSec === undefined ? {} : { timeoutSec };
    return this.#json('POST', instancePath(name, 'install'), [202], { body: JSON.stringify(body) });
  }

  installStatus(name: string): Promise<Answer<JobRecord>> {
    return this.#json('GET', instancePath(name, 'install'), [200]);
  }

  abortInstall(name: string): Promise<Answer<JobRecord>> {
    return this.#json('POST', instancePath(name, 'install', 'abort'), [200]);
  }

  /** Install jobs and Ganeti secret windows (kind `ganeti-secrets`), by instance. */
  jobs(): Promise<Answer<{ jobs: (JobRecord | GanetiSecretsRecord)[] }>> {
    return this.#json('GET', '/v1/jobs', [200]);
  }

  /** Streams the job record after every change until it has an outcome (or `signal` aborts). */
  async watchInstall(name: string, onRecord: (r: JobRecord) => void, signal?: AbortSignal): Promise<void> {
    const path = instancePath(name, 'install', 'watch');
    await this.expect('GET', instancePath(name, 'install'), [200]); // no job: 404 (ApiError) as for status
    await streamNdjson(this.socketPath, path, (v) => onRecord(v as JobRecord), {
      userAgent: this.userAgent,
      ...(signal ? { signal } : {}),
    });
  }

  password(name: string): Promise<Answer<{ password: string | null }>> {
    return this.#json('GET', instancePath(name, 'password'), [200]);
  }

  async clearPassword(name: string): Promise<Answer<undefined>> {
    return empty(await this.expect('DELETE', instancePath(name, 'password'), [200, 204]));
  }

  /** The comm network: the instance's tap came up or goes down (POST /v1/instances/{name}/nic). */
  async nic(name: string, tap: string, state: 'up' | 'down'): Promise<AdminReply> {
    return this.expect('POST', instancePath(name, 'nic'), [200, 204], { body: JSON.stringify({ tap, state }) });
  }

  /** Each comm NIC as the host holds it (GET /v1/nics). */
  async nics(): Promise<AdminReply> {
    return this.expect('GET', '/v1/nics', [200]);
  }

  /** The PEM public key of the identity signatures (text, not JSON). */
  async identityKey(): Promise<Answer<string>> {
    const res = await this.expect('GET', '/v1/identity/public-key', [200]);
    return { status: res.status, body: res.body.toString('utf8'), raw: res.body };
  }

  async #json<T>(method: string, path: string, ok: readonly number[], opts: RequestOptions = {}): Promise<Answer<T>> {
    const res = await this.expect(method, path, ok, opts);
    return { status: res.status, body: parseJson(res) as T, raw: res.body };
  }

  /** A JSON document upload: refused here when larger than the daemon's admin.maxBodyBytes. */
  async #upload<T>(method: string, path: string, ok: readonly number[], body: string, contentType: string): Promise<Answer<T>> {
    const bytes = Buffer.byteLength(body);
    // Below the smallest limit a daemon can be configured with, no need to ask for it.
    const limit = bytes > MIN_MAX_BODY_BYTES ? await this.#maxBodyBytes() : undefined;
    if (limit !== undefined && bytes > limit) throw new TooLargeError(bytes, limit);
    try {
      return await this.#json<T>(method, path, ok, { body, contentType });
    } catch (err) {
      // A daemon that does not announce its limit still answers 413: same message, same exit code.
      if (err instanceof ApiError && err.status === 413) throw new TooLargeError(bytes, limit);
      throw err;
    }
  }

  /** The daemon's admin.maxBodyBytes from GET /v1/health, asked once per client; undefined from a daemon that does not announce it. */
  #maxBodyBytes(): Promise<number | undefined> {
    this.#limit ??= this.health().then(
      (h) => {
        const limit = (h.body as Partial<Health>).limits?.maxBodyBytes;
        return typeof limit === 'number' ? limit : undefined;
      },
      (err: unknown) => {
        this.#limit = undefined;
        if (err instanceof ApiError) return undefined; // an older daemon: the 413 mapping still applies
        throw err;
      },
    );
    return this.#limit;
  }
}

function empty(res: AdminReply): Answer<undefined> {
  return { status: res.status, body: undefined, raw: res.body };
}

/**
 * `/v1/instances/{name}` and below, with every segment encoded. A name the daemon would refuse
 * is a usage error here (exit 2, for every command alike), and so is an empty, `.` or `..`
 * segment: URL handling would drop it and aim the request at the parent resource
 * (`params unset web1 --visibility secret ""` would clear every secret). Messages never echo
 * the argument.
 */
function instancePath(name: string, ...rest: string[]): string {
  if (!isInstanceName(name)) {
    throw new UsageError('invalid instance name', [
      `names are DNS names: lower-case letters, digits and '-', dot-separated labels, at most ${MAX_NAME_CHARS} characters`,
    ]);
  }
  for (const seg of rest) {
    if (seg === '' || seg === '.' || seg === '..') throw new UsageError('invalid name: names cannot be empty, "." or ".."');
  }
  return ['/v1/instances', name, ...rest].map((s, i) => (i === 0 ? s : encodeURIComponent(s))).join('/');
}
