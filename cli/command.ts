/**
 * What a metadctl command group gets and shares: the run's context (streams, environment, the
 * admin client, --json) and small output helpers. A command group is one function that adds
 * its commands to the program (cli/commands/*.ts, listed in cli/commands/index.ts); an action
 * is wrapped by `act`, which builds the context and records the exit code.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { AdminClient } from './client.js';
import { ApiError, type CliError } from './errors.js';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  /** Ends `pipe read --follow`. Without it, SIGINT does. */
  signal?: AbortSignal;
}

/** One run of one command. */
export interface Ctx {
  io: CliIo;
  client: AdminClient;
  json: boolean;
}

/** An action body: resolves to the exit code (or to nothing: 0). */
type ActionBody<A extends unknown[]> = (ctx: Ctx, ...args: A) => Promise<unknown>;

/** Wraps an action body for commander's `.action()`. */
export type Act = <A extends unknown[]>(fn: ActionBody<A>) => (...args: unknown[]) => Promise<void>;

/** Adds one group of commands (e.g. `params show|set|unset|clear`) to the program. */
export type CommandGroup = (program: Command, act: Act) => void;

/** The `Examples:` block of a command's help. */
export function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}\n`).join('')}`;
}

/** A commander parser for a whole number of seconds in min..max (the message never repeats the value). */
export function intOption(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number of seconds (${min}..${max}).`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}.`);
    return n;
  };
}

export function line(ctx: Ctx, text: string): void {
  ctx.io.stdout.write(`${text}\n`);
}

/** The daemon's body, unchanged but for a final newline. */
export function writeRaw(out: NodeJS.WritableStream, body: Buffer): void {
  if (body.length === 0) return;
  out.write(body);
  if (body[body.length - 1] !== 0x0a) out.write('\n');
}

/** Write bytes and wait until they are handed to the OS (backpressure for --follow). */
export function writeBytes(out: NodeJS.WritableStream, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(data, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** `metadctl: <message>` and the indented notes (error details) on stderr; with --json the daemon's error body on stdout. */
export function reportError(io: CliIo, err: CliError, json: boolean, prefix = ''): void {
  if (json && err instanceof ApiError) writeRaw(io.stdout, err.raw);
  io.stderr.write(`metadctl: ${prefix}${err.message}\n`);
  for (const note of err.notes) io.stderr.write(`  ${note}\n`);
}
