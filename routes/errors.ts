/**
 * The one error type of the daemon and the two error middlewares (guest: short plain text,
 * admin: JSON). Owns the closed table of error codes. Never puts a submitted value or a stack
 * into an answer: the stack goes to the log with an incident id.
 */
import { randomUUID } from 'node:crypto';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { EV } from '../daemon/events.js';

export const ERROR_CODES = {
  InvalidInput: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  MethodNotAllowed: 405,
  Conflict: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  TooManyRequests: 429,
  Internal: 500,
  Unavailable: 503,
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorDetail {
  path: string;
  message: string;
}

/** An operational error: its message is safe to show to an admin (never contains input values). */
export class DaemonError extends Error {
  readonly status: number;
  readonly expose = true;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetail[] = [],
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'DaemonError';
    this.status = ERROR_CODES[code];
  }
  toJSON(): { code: ErrorCode; message: string; details: ErrorDetail[] } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export const notFound = (what = 'not found'): DaemonError => new DaemonError('NotFound', what);
export const invalid = (message: string, details: ErrorDetail[] = []): DaemonError =>
  new DaemonError('InvalidInput', message, details);

/** Map koa/@koa/router/http-errors style errors (status + expose) to our table. */
function fromHttpError(err: { status?: number; statusCode?: number; headers?: Record<string, string> }): DaemonError | undefined {
  const status = err.status ?? err.statusCode;
  const entry = Object.entries(ERROR_CODES).find(([, s]) => s === status);
  if (!entry || status === undefined || status >= 500) return undefined;
  const code = entry[0] as ErrorCode;
  return new DaemonError(code, defaultMessage(code), [], err.headers ?? {});
}

function defaultMessage(code: ErrorCode): string {
  return {
    InvalidInput: 'invalid input', Unauthorized: 'unauthorized', Forbidden: 'forbidden', NotFound: 'not found',
    MethodNotAllowed: 'method not allowed', Conflict: 'conflict', PayloadTooLarge: 'payload too large',
    UnsupportedMediaType: 'unsupported media type', TooManyRequests: 'too many requests', Internal: 'internal error',
    Unavailable: 'service unavailable',
  }[code];
}

/** Normalise anything thrown into a DaemonError; unknown errors become Internal with an incident id. */
export function toDaemonError(err: unknown, log: Logger, bindings: Record<string, unknown> = {}): { error: DaemonError; incidentId?: string } {
  if (err instanceof DaemonError) return { error: err };
  const mapped = typeof err === 'object' && err !== null ? fromHttpError(err as never) : undefined;
  if (mapped) return { error: mapped };
  const incidentId = randomUUID();
  // Log the stack, never the request body: err objects from our code carry no input values.
  log.error({ ...bindings, incidentId, err }, EV.internalError);
  return { error: new DaemonError('Internal', EV.internalError), incidentId };
}

/** Admin door: JSON `{code, message, details, incidentId?}`. First in the middleware chain. */
export function adminErrors(log: Logger) {
  return async (ctx: Context, next: Next): Promise<void> => {
    try {
      await next();
      if (ctx.body === undefined && ctx.status === 404) throw notFound('no such route');
      if (ctx.body === undefined && (ctx.status === 405 || ctx.status === 501)) {
        // 501: a method @koa/router does not know at all (PROPFIND); same answer as 405.
        throw new DaemonError('MethodNotAllowed', 'method not allowed', [], { Allow: String(ctx.response.get('Allow')) });
      }
    } catch (err) {
      const { error, incidentId } = toDaemonError(err, log, { method: ctx.method, route: ctx.path });
      ctx.status = error.status;
      ctx.set(error.headers);
      ctx.type = 'application/json';
      ctx.body = incidentId ? { ...error.toJSON(), incidentId } : error.toJSON();
    }
  };
}
