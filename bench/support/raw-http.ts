/**
 * A minimal HTTP/1.1 client over `net` for the boot storm (storm-worker.ts): one request per TCP
 * connection from a given source address, a fixed request text, the status line, and a
 * Content-Length or chunked body. As little client CPU per request as possible.
 */
import net from 'node:net';

export interface Resp {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

const CRLF2 = Buffer.from('\r\n\r\n');

export class HttpError extends Error {}

/** Parse a complete response out of `buf`; undefined while incomplete. */
function parse(buf: Buffer, ended: boolean): Resp | undefined {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd === -1) {
    if (ended) throw new HttpError('connection closed before the response headers');
    return undefined;
  }
  const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new HttpError(`bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  const rest = buf.subarray(headEnd + 4);
  const status = Number(m[1]);
  const len = headers.get('content-length');
  if (len !== undefined) {
    const n = Number(len);
    if (rest.length < n) {
      if (ended) throw new HttpError('connection closed inside the body');
      return undefined;
    }
    return { status, headers, body: rest.subarray(0, n) };
  }
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = rest.indexOf('\r\n', at);
      if (eol === -1) break;
      const size = parseInt(rest.subarray(at, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new HttpError('bad chunk size');
      if (size === 0) return { status, headers, body: Buffer.concat(parts) };
      if (rest.length < eol + 2 + size + 2) break;
      parts.push(rest.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    if (ended) throw new HttpError('connection closed inside a chunked body');
    return undefined;
  }
  if (status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
  return ended ? { status, headers, body: rest } : undefined;
}

export function request(opts: {
  port: number;
  localAddress: string;
  head: string;
  timeoutMs: number;
}): Promise<{ resp: Resp; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let buf: Buffer = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host: '127.0.0.1', port: opts.port, localAddress: opts.localAddress, noDelay: true });
    const finish = (err: Error | undefined, resp?: Resp): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy(); // like requests closing its Session: the client closes after one answer
      if (err) reject(err);
      else resolve({ resp: resp!, ms: performance.now() - t0 });
    };
    const step = (ended: boolean): void => {
      if (done) return;
      try {
        const r = parse(buf, ended);
        if (r) finish(undefined, r);
      } catch (err) {
        finish(err as Error);
      }
    };
    const timer = setTimeout(() => finish(new HttpError(`timeout after ${opts.timeoutMs} ms`)), opts.timeoutMs);
    sock.on('data', (c: Buffer) => {
      buf = buf.length === 0 ? c : Buffer.concat([buf, c]);
      step(false);
    });
    sock.on('end', () => step(true));
    sock.on('error', (err) => finish(err));
    sock.on('close', () => step(true));
    sock.write(opts.head);
  });
}
