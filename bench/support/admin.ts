/** Admin API client for the benchmarks: HTTP/1.1 over the daemon's unix socket, keep-alive agent. */
import http from 'node:http';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  /** The body parsed as JSON; undefined when it is not JSON. */
  json: unknown;
}

export class AdminClient {
  readonly agent: http.Agent;
  constructor(
    readonly socketPath: string,
    opts: { maxSockets?: number; keepAlive?: boolean } = {},
  ) {
    this.agent = new http.Agent({ keepAlive: opts.keepAlive ?? true, maxSockets: opts.maxSockets ?? 16 });
  }

  request(method: string, path: string, body?: unknown): Promise<Reply> {
    const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const headers: Record<string, string | number> = {};
    if (payload !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(payload);
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ socketPath: this.socketPath, method, path, headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like request, but throws unless the status is one of `ok`. */
  async expect(ok: number | number[], method: string, path: string, body?: unknown): Promise<Reply> {
    const r = await this.request(method, path, body);
    const want = Array.isArray(ok) ? ok : [ok];
    if (!want.includes(r.status)) throw new Error(`${method} ${path}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return r;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** The instance count of a `/v1/health` answer; undefined when the body is not a health document. */
export function healthInstances(json: unknown): number | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const n = (json as { instances?: unknown }).instances;
  return typeof n === 'number' ? n : undefined;
}
