/**
 * Domain errors (daemon/errors.ts) at the HTTP doors: the one table from error code to HTTP
 * status, and the admin door's JSON error middleware (the guest door answers the status as
 * short text, routes/guest/answer.ts). Never puts a submitted value or a stack into an answer:
 * the stack goes to the log with an incident id.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { DaemonError, notFound, type ErrorCode } from '../daemon/errors.js';
import { EV } from '../daemon/log/events.js';

/** The HTTP status of each error code, on both doors. */
export const HTTP_STATUS: { readonly [C in ErrorCode]: number } = {
  InvalidInput: 400,
  NotFound: 404,
  MethodNotAllowed: 405,
  Conflict: 409,
  PayloadTooLarge: 413,
  UnsupportedMediaType: 415,
  Internal: 500,
  Unavailable: 503,
};

interface HttpLikeError {
  status?: number;
  statusCode?: number;
  headers?: Record<string, string>;
}

/** Map koa/@koa/router/http-errors style errors (status + expose) to our table; 5xx stay unknown. */
function fromHttpError(err: HttpLikeError): { error: DaemonError; headers: Record<string, string> } | undefined {
  const status = err.status ?? err.statusCode;
  if (status === undefined || status >= 500) return undefined;
  const code = (Object.keys(HTTP_STATUS) as ErrorCode[]).find((c) => HTTP_STATUS[c] === status);
  if (code === undefined) return undefined;
  return { error: new DaemonError(code, (STATUS_CODES[status] ?? 'error').toLowerCase()), headers: err.headers ?? {} };
}

/** Normalise anything thrown into a DaemonError; unknown errors become Internal with an incident id. */
function toDaemonError(
  err: unknown,
  log: Logger,
  bindings: Record<string, unknown>,
): { error: DaemonError; headers?: Record<string, string>; incidentId?: string } {
  if (err instanceof DaemonError) return { error: err };
  const mapped = typeof err === 'object' && err !== null ? fromHttpError(err) : undefined;
  if (mapped) return mapped;
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
      // 501: a method @koa/router does not know at all (PROPFIND); same answer as 405. The
      // router has set the Allow header already; it stays on the answer.
      if (ctx.body === undefined && (ctx.status === 405 || ctx.status === 501))
        throw new DaemonError('MethodNotAllowed', 'method not allowed');
    } catch (err) {
      const { error, headers, incidentId } = toDaemonError(err, log, { method: ctx.method, route: ctx.path });
      ctx.status = HTTP_STATUS[error.code];
      if (headers) ctx.set(headers);
      ctx.type = 'application/json';
      ctx.body = incidentId ? { ...error.toJSON(), incidentId } : error.toJSON();
    }
  };
}
