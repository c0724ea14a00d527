/**
 * metadctl exit codes and the errors that carry them. Every failure path of the CLI ends in
 * one of these, so `main()` can print one uniform `metadctl: <message>` line and return the
 * documented exit code.
 */

export const EXIT = {
  /** Success. */
  OK: 0,
  /** The daemon answered with an error status (4xx/5xx other than 404), or the exchange failed midway. */
  API: 1,
  /** Bad arguments, an unreadable file, invalid JSON/YAML. Nothing was sent. */
  USAGE: 2,
  /** The admin socket cannot be reached (missing, refused, permission denied). */
  CONNECT: 3,
  /** 404: unknown instance, parameter or route. */
  NOT_FOUND: 4,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure with a message for stderr and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
    /** Extra lines printed (indented) after the message. */
    readonly notes: readonly string[] = [],
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** Bad arguments or input: exit 2. */
export class UsageError extends CliError {
  constructor(message: string, notes: readonly string[] = []) {
    super(message, EXIT.USAGE, notes);
    this.name = 'UsageError';
  }
}

/** The admin socket cannot be reached: exit 3, with the ways to choose another socket. */
export class ConnectError extends CliError {
  constructor(
    readonly socketPath: string,
    readonly reason: string,
  ) {
    super(`cannot connect to ${socketPath}: ${reason}`, EXIT.CONNECT, [
      'choose the admin socket with --socket PATH or the METAD_ADMIN_SOCKET environment variable',
    ]);
    this.name = 'ConnectError';
  }
}

/**
 * A document larger than the daemon accepts: refused before sending, so the user always gets
 * this message and never a write error from a socket the daemon closed on a 413.
 */
export class TooLargeError extends UsageError {
  constructor(
    readonly bytes: number,
    readonly limit: number | undefined,
  ) {
    super(
      limit === undefined
        ? `document larger than the daemon accepts (${bytes} bytes)`
        : `document larger than ${limit} bytes (${bytes} bytes)`,
      ['the limit is the daemon setting admin.maxBodyBytes'],
    );
    this.name = 'TooLargeError';
  }
}

/** One entry of an error body's `details`. */
export interface ErrorDetail {
  path: string;
  message: string;
}

/** The daemon answered with an error status; `raw` is the body as received. */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string | undefined,
    readonly details: readonly ErrorDetail[],
    readonly incidentId: string | undefined,
    readonly raw: Buffer,
  ) {
    super(message, status === 404 ? EXIT.NOT_FOUND : EXIT.API, [
      ...details.map((d) => `${d.path === '' ? '(document)' : d.path}: ${d.message}`),
      ...(incidentId ? [`incident ${incidentId} (the daemon log has the details)`] : []),
    ]);
    this.name = 'ApiError';
  }
}
