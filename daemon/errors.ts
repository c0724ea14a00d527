/**
 * The one error type of the daemon and its closed table of codes. Domain modules (store,
 * vault, pipes, validation) throw these; they know no HTTP. Each door maps a code to its own
 * answer (routes/errors.ts: admin JSON with a status, guest short text). A message never
 * contains a submitted value: paths and rules only.
 */

/** Every code the daemon reports, with what it means. Closed: add a row here and at the doors. */
export const ERROR_CODES = {
  InvalidInput: 'the input breaks a rule (schema, name, shape of the body)',
  NotFound: 'no such instance, parameter or route',
  MethodNotAllowed: 'the resource exists, the method does not apply to it',
  Conflict: 'the change collides with another instance or with what is already set',
  PayloadTooLarge: 'more bytes than a cap allows (body, document, pipe buffer)',
  UnsupportedMediaType: 'a body in a format the resource does not take',
  Internal: 'a bug: the stack is logged with an incident id',
  Unavailable: 'the state dir cannot take the change right now',
} as const;
export type ErrorCode = keyof typeof ERROR_CODES;

/** Where in the input a problem is (a JSON pointer) and which rule it breaks. */
export interface ErrorDetail {
  path: string;
  message: string;
}

/** An operational error: its message is safe to show to an admin (never contains input values). */
export class DaemonError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details: ErrorDetail[] = [],
  ) {
    super(message);
    this.name = 'DaemonError';
  }
  toJSON(): { code: ErrorCode; message: string; details: ErrorDetail[] } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export const notFound = (what = 'not found'): DaemonError => new DaemonError('NotFound', what);
export const invalid = (message: string, details: ErrorDetail[] = []): DaemonError => new DaemonError('InvalidInput', message, details);

/** A tool's message with anything shaped like a host path cut out (`/srv/x.img: …` -> `<path>: …`), for a job's record. Pure. */
export function withoutPaths(message: string): string {
  return message.replace(/\/[^\s:]+/g, '<path>');
}
