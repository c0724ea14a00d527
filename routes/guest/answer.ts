/**
 * What a guest handler returns (an Answer) and how the pipeline writes it. Handlers build
 * answers; answers marked cacheable are prepared once (headers and body as bytes) and kept per
 * instance generation. Guest error bodies are short plain text that say nothing about why: the
 * reason goes to the log.
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { StoredInstance } from '../../daemon/registry/model.js';
import type { GuestServices } from '../../daemon/services.js';
import type { GuestEvent } from '../../daemon/log/guest-log.js';
import type { AnswerCache } from './cache.js';
import type { TokenIssuer } from './tokens.js';
import type { SeedPool } from './seed-pool.js';
import { RANDOM_SEED_BYTES } from '../render/openstack.js';

export interface Answer {
  status: number;
  type?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
  /**
   * 'static': the same bytes for every request of this instance generation (cache them);
   * 'seeded': JSON whose random_seed placeholder is replaced per request (cache the halves).
   */
  cache?: 'static' | 'seeded';
  /** For 'seeded': the exact JSON value (quoted base64) of random_seed in `body`. */
  seedPlaceholder?: string;
  /** A streamed body instead of `body` (never cached): see `streamed`. */
  stream?: StreamedBody;
}

/**
 * A body read from a stream as it is sent, `length` bytes (the Content-Length; unknown: sent
 * chunked, and a failure cuts it before the last chunk, so it never looks complete). Nothing goes out
 * before its first chunk: a stream that fails before any byte is answered with a short error
 * (`failStatus`) instead; one that fails after its first byte, or ends short of `length`, is cut
 * (the connection is destroyed, so the guest sees a truncated transfer, never a complete-looking
 * one). The stream is destroyed when the guest goes away.
 */
export interface StreamedBody {
  source: Readable;
  length: number | undefined;
  failStatus: number;
  /** Told once when the stream failed: `bytesSent` 0 and `headersSent` false when nothing went out. */
  onError: (err: unknown, bytesSent: number, headersSent: boolean) => void;
}

export interface GuestDeps extends GuestServices {
  cache: AnswerCache;
  tokens: TokenIssuer;
  seeds: SeedPool;
}

/** One guest request after identification, with the path split for the dialects. */
export interface GuestRequest {
  d: GuestDeps;
  req: IncomingMessage;
  inst: StoredInstance;
  log: Logger;
  /** A guest-triggered log line about this instance, sampled (daemon/log/guest-log.ts). */
  note(event: GuestEvent, fields?: Record<string, unknown>): void;
  method: string;
  /** The request path with leading slashes collapsed to one: '//latest/x' -> '/latest/x'. */
  path: string;
  /** The raw query string without '?'. */
  query: string;
  /** Path segments without empty ones: '/latest/meta-data/' -> ['latest', 'meta-data']. */
  segments: string[];
  trailingSlash: boolean;
}

/** First value of a request header, or undefined. */
export function header(r: GuestRequest, name: string): string | undefined {
  const v = r.req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** One query parameter, or undefined. */
export function queryParam(r: GuestRequest, name: string): string | undefined {
  return r.query === '' ? undefined : (new URLSearchParams(r.query).get(name) ?? undefined);
}

const TEXT = 'text/plain; charset=utf-8';
export const text = (body: string, status = 200): Answer => ({ status, type: TEXT, body });
export const bytes = (body: Buffer): Answer => ({ status: 200, type: 'application/octet-stream', body });
export const json = (value: unknown): Answer => ({ status: 200, type: 'application/json', body: JSON.stringify(value) });
export const redirect = (location: string): Answer => ({
  status: 301,
  type: TEXT,
  body: 'Moved Permanently',
  headers: { Location: location },
});
export const empty = (status: number): Answer => ({ status });
/** A streamed 200 (routes/guest/index.ts sends it; it is never cached). */
export const streamed = (type: string, body: StreamedBody): Answer => ({ status: 200, type, stream: body });
export const cached = (a: Answer, how: 'static' | 'seeded' = 'static'): Answer => ({ ...a, cache: how });

/** A short guest error body: the reason phrase only ('Not Found'), never why. */
export function fail(status: number, headers?: Record<string, string>): Answer {
  return { status, type: TEXT, body: STATUS_CODES[status] ?? 'Error', ...(headers ? { headers } : {}) };
}
export const notFound = (): Answer => fail(404);
export const methodNotAllowed = (allow: string): Answer => fail(405, { Allow: allow });

/** GET and HEAD read; anything else on a read-only resource is 405. */
export function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}

/**
 * An answer as bytes ready for the socket: a flat header list and the body. A seeded answer
 * keeps the JSON halves around the random_seed value (`a.seedPlaceholder` is the quoted value
 * the renderer wrote); its length is fixed, since the seed is always RANDOM_SEED_BYTES long.
 */
export interface PreparedAnswer {
  status: number;
  head: string[];
  body: Buffer;
  seeded?: { prefix: Buffer; suffix: Buffer };
}

/** The random_seed JSON value as sent: RANDOM_SEED_BYTES as quoted base64 (512 bytes: 684 + 2 characters). */
const SEED_VALUE_CHARS = Math.ceil(RANDOM_SEED_BYTES / 3) * 4 + 2;

/**
 * Bytes of its own for a cached body. Buffer.from(string) slices node's shared 8 KiB pool, and
 * one long-lived slice keeps its whole slab alive: cached answers interleaved with per-request
 * allocations pinned ~8 KiB each (RSS +130 MiB after a 1,000-guest storm).
 */
function ownBytes(text: string): Buffer {
  const b = Buffer.allocUnsafeSlow(Buffer.byteLength(text, 'utf8'));
  b.write(text, 'utf8');
  return b;
}

export function prepareAnswer(a: Answer): PreparedAnswer {
  const seedPlaceholder = a.seedPlaceholder;
  const raw = a.body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(a.body) ? a.body : ownBytes(a.body);
  const head: string[] = [];
  if (a.type) head.push('Content-Type', a.type);
  for (const [k, v] of Object.entries(a.headers ?? {})) head.push(k, v);
  if (a.cache === 'seeded' && seedPlaceholder) {
    const text = raw.toString('utf8');
    const at = text.indexOf(seedPlaceholder);
    if (at !== -1) {
      const prefix = ownBytes(text.slice(0, at));
      const suffix = ownBytes(text.slice(at + seedPlaceholder.length));
      head.push('Content-Length', String(prefix.length + SEED_VALUE_CHARS + suffix.length));
      return { status: a.status, head, body: raw, seeded: { prefix, suffix } };
    }
  }
  // RFC 9110: no Content-Length on 204 (or 304).
  if (a.status !== 204 && a.status !== 304) head.push('Content-Length', String(raw.length));
  return { status: a.status, head, body: raw };
}

/** Write a prepared answer. Seeded answers get RANDOM_SEED_BYTES fresh random bytes from the pool. */
export function send(res: ServerResponse, p: PreparedAnswer, seeds: SeedPool): void {
  res.writeHead(p.status, p.head);
  if (p.seeded)
    res.end(Buffer.concat([p.seeded.prefix, Buffer.from(`"${seeds.takeBase64(RANDOM_SEED_BYTES)}"`, 'latin1'), p.seeded.suffix]));
  else res.end(p.body);
}

/**
 * Send a streamed answer; `done(status)` is told once what went out (the failure status when the
 * stream failed before its first byte). Backpressure: the source pauses while the socket is full
 * (the socket guard destroys a guest that stops reading).
 */
export function sendStream(res: ServerResponse, a: Answer & { stream: StreamedBody }, done: (status: number) => void): void {
  const { source, length, failStatus, onError } = a.stream;
  const head: string[] = [];
  if (a.type) head.push('Content-Type', a.type);
  for (const [k, v] of Object.entries(a.headers ?? {})) head.push(k, v);
  if (length !== undefined) head.push('Content-Length', String(length));
  let sent = 0;
  let finished = false;
  const start = (): void => {
    if (res.headersSent) return;
    res.writeHead(a.status, head);
    done(a.status);
  };
  const cut = (): void => {
    finished = true;
    source.destroy();
    res.destroy();
  };
  res.on('close', () => {
    if (!finished) source.destroy();
  });
  res.on('drain', () => source.resume());
  source.on('data', (chunk: Buffer) => {
    if (res.destroyed || finished) return;
    start();
    if (length !== undefined && sent + chunk.length > length) {
      cut(); // never more than the Content-Length promised (the file grew)
      return;
    }
    sent += chunk.length;
    if (!res.write(chunk)) source.pause();
  });
  source.on('end', () => {
    if (finished) return;
    start();
    if (length !== undefined && sent !== length) {
      cut(); // the file shrank: a short answer must not look complete
      return;
    }
    finished = true;
    res.end();
  });
  source.on('error', (err: unknown) => {
    if (finished) return;
    const headersSent = res.headersSent;
    onError(err, sent, headersSent);
    if (headersSent || res.destroyed) {
      cut();
      return;
    }
    finished = true;
    source.destroy();
    const p = prepareAnswer(fail(failStatus));
    res.writeHead(p.status, p.head);
    res.end(p.body);
    done(p.status);
  });
}
