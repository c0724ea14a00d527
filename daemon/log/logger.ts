/**
 * The root pino logger: JSON to a destination stream (stdout in production, a sink in tests),
 * with fixed redaction paths. Redaction is the second line of defence: code logs ids and
 * counts, never parameter objects. Child loggers are bound only to fields the daemon owns.
 */
import pino, { type Logger, type DestinationStream } from 'pino';

/** Fixed in code, never built from input. A leading `*` matches one level only. */
const REDACT_PATHS = [
  'params.private',
  '*.params.private',
  'params.secret',
  '*.params.secret',
  'privateParams',
  '*.privateParams',
  'secretParams',
  '*.secretParams',
  'iam',
  '*.iam',
  'ec2.iam',
  '*.ec2.iam',
  'password',
  '*.password',
  'token',
  '*.token',
  'req.headers["x-aws-ec2-metadata-token"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers["x-aws-ec2-metadata-token"]',
  'headers.authorization',
];

export interface LoggerOptions {
  level?: string;
  destination?: DestinationStream | NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'metad' },
      redact: { paths: REDACT_PATHS, censor: '[secret]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

export type { Logger };
