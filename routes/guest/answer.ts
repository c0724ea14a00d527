/**
 * What a guest handler returns: status, content type, body and extra headers. Handlers build
 * answers; the pipeline (routes/guest/index.ts) writes them. Guest error bodies are short plain
 * text that say nothing about why: the reason goes to the log.
 */
import type { Readable } from 'node:stream';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import type { StoredInstance } from '../../daemon/model.js';
import type { Services } from '../../daemon/services.js';
import type { AnswerCache } from './cache.js';
import type { TokenIssuer } from './tokens.js';

export interface Answer {
  status: number;
  type?: string;
  body?: string | Buffer | Readable;
  headers?: Record<string, string>;
}

export interface GuestDeps extends Services {
  cache: AnswerCache;
  tokens: TokenIssuer;
}

/** One guest request after identification, with the path split after the dialect prefix. */
export interface GuestRequest {
  d: GuestDeps;
  ctx: Context;
  inst: StoredInstance;
  log: Logger;
  method: string;
  /** The request path with leading slashes collapsed to one: '//latest/x' -> '/latest/x'. */
  path: string;
  /** Path segments without empty ones: '/latest/meta-data/' -> ['latest', 'meta-data']. */
  segments: string[];
  trailingSlash: boolean;
}

const TEXT = 'text/plain; charset=utf-8';
export const text = (body: string, status = 200): Answer => ({ status, type: TEXT, body });
export const bytes = (body: Buffer): Answer => ({ status: 200, type: 'application/octet-stream', body });
export const json = (value: unknown): Answer => ({ status: 200, type: 'application/json', body: JSON.stringify(value) });
export const redirect = (location: string): Answer => ({ status: 301, type: TEXT, body: 'Moved Permanently', headers: { Location: location } });
export const empty = (status: number): Answer => ({ status });

/** The short guest error bodies. */
const REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  409: 'Conflict', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error', 503: 'Service Unavailable',
};
export function fail(status: number, headers?: Record<string, string>): Answer {
  return { status, type: TEXT, body: REASONS[status] ?? 'Error', ...(headers ? { headers } : {}) };
}
export const notFound = (): Answer => fail(404);
export const methodNotAllowed = (allow: string): Answer => fail(405, { Allow: allow });

/** GET and HEAD read; anything else on a read-only resource is 405. */
export function isRead(method: string): boolean {
  return method === 'GET' || method === 'HEAD';
}
