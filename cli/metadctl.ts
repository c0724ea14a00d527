#!/usr/bin/env node
/**
 * metadctl: the admin CLI of metad. Every command is one (or a few) requests to the admin API
 * over the daemon's unix socket (docs/admin-api.md); docs/metadctl.md is the user's guide.
 * This module assembles the program from the command groups of cli/commands/ (one file per
 * group) and owns the process plumbing: global options, the exit code, error output.
 *
 * `main()` is the whole program minus process plumbing, so tests can drive it with their own
 * streams, environment and socket.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError } from 'commander';
import { VERSION } from '../daemon/version.js';
import { AdminClient, DEFAULT_SOCKET } from './client.js';
import { reportError, type Act, type CliIo, type Ctx } from './command.js';
import { COMMAND_GROUPS } from './commands/index.js';
import { CliError, EXIT } from './errors.js';

export { EXIT } from './errors.js';
export type { CliIo } from './command.js';

interface GlobalOpts {
  socket?: string;
  json?: boolean;
}

/** The admin socket: --socket, else $METAD_ADMIN_SOCKET (as for metad), else the deprecated $METAD_SOCKET, else the default. */
export function socketFrom(option: string | undefined, env: Record<string, string | undefined>): string {
  return option ?? (env.METAD_ADMIN_SOCKET || env.METAD_SOCKET || DEFAULT_SOCKET);
}

const ROOT_HELP = `
Examples:
  $ metadctl register web1.yaml
  $ metadctl list
  $ metadctl show web1
  $ metadctl --json show web1 | jq .status.generation
  $ metadctl --socket /tmp/metad/admin.sock health

Environment:
  METAD_ADMIN_SOCKET  the admin socket when --socket is not given (default ${DEFAULT_SOCKET});
                      the same variable metad reads. METAD_SOCKET is a deprecated alias.

Exit codes:
  0  success
  1  the daemon answered with an error (4xx/5xx other than 404)
  2  usage error: bad arguments, unreadable file, invalid JSON/YAML (nothing was sent)
  3  cannot connect to the admin socket (missing, refused, permission denied)
  4  not found (404): unknown instance or parameter

With --json, commands print the daemon's JSON answer unchanged (commands whose answer has
no body print nothing); on an error the daemon's error JSON goes to stdout as well.
`;

/**
 * A commander error message without the user's arguments in it (any of them may be a secret):
 * `option '--ttl <seconds>' argument 'x' is invalid` loses the value, `unknown option
 * '--pw=x'` keeps the option name only, `unknown command 'x'` loses the word.
 */
export function withoutArguments(message: string): string {
  return message
    .replace(/ argument '(?:[^']|'(?! is invalid))*' is invalid/g, ' argument is invalid')
    .replace(/ value '(?:[^']|'(?! is invalid))*' is invalid/g, ' value is invalid')
    .replace(/unknown option '([^']*)'/g, (_m, opt: string) => {
      const name = opt.split('=')[0] ?? '';
      return /^--?[A-Za-z][A-Za-z-]{0,40}$/.test(name) ? `unknown option '${name}'` : 'unknown option';
    })
    .replace(/unknown command '[^']*'/g, 'unknown command');
}

function buildProgram(io: CliIo, state: { code: number; json: boolean }): Command {
  /** Wrap an action: resolve the global options, build the client, record the exit code. */
  const act: Act =
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters -- commander hands the parsed arguments over untyped; A names them for the action body
    <A extends unknown[]>(fn: (ctx: Ctx, ...args: A) => Promise<unknown>) =>
      async (...args: unknown[]): Promise<void> => {
        const cmd = args[args.length - 1] as Command;
        const g = cmd.optsWithGlobals<GlobalOpts>();
        state.json = g.json === true;
        const ctx: Ctx = {
          io,
          json: state.json,
          client: new AdminClient(socketFrom(g.socket, io.env), { userAgent: `metadctl/${VERSION}` }),
        };
        const code = await fn(ctx, ...(args.slice(0, -1) as A));
        state.code = typeof code === 'number' ? code : EXIT.OK;
      };

  const program = new Command('metadctl')
    .description('Administer metad, the instance metadata daemon, through its admin socket.')
    .version(VERSION, '-V, --version', 'print the metadctl version')
    .option('--socket <path>', `the admin socket (default: $METAD_ADMIN_SOCKET, else ${DEFAULT_SOCKET})`)
    .option('--json', "machine output: print the daemon's JSON answer unchanged")
    .helpOption('-h, --help', 'show help (every command has its own, with examples)')
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: (s, write) => write(withoutArguments(s).replace(/^error: /, 'metadctl: ')),
    })
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', ROOT_HELP);

  for (const group of COMMAND_GROUPS) group(program, act);
  return program;
}

/** The command tree alone, for docs/man/metadctl.8 (cli/man.ts): no streams, nothing runs. */
export function metadctlProgram(): Command {
  const quiet = { write: () => true } as unknown as NodeJS.WritableStream;
  return buildProgram({ stdout: quiet, stderr: quiet, stdin: process.stdin, env: {} }, { code: EXIT.OK, json: false });
}

/** Run metadctl with `argv` (without node and the script); resolves to the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const state = { code: EXIT.OK as number, json: false };
  try {
    await buildProgram(io, state).parseAsync(argv, { from: 'user' });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE; // commander printed it
    if (err instanceof CliError) {
      reportError(io, err, state.json);
      return err.exitCode;
    }
    // The stack is for a bug report; the message is left out, it could quote input.
    const frames = err instanceof Error ? (err.stack ?? '').split('\n').filter((l) => l.startsWith('    at ')) : [];
    io.stderr.write(
      `metadctl: unexpected error (${err instanceof Error ? err.name : typeof err}); please report it\n${frames.map((f) => `${f}\n`).join('')}`,
    );
    return EXIT.API;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    // npm's bin links are symlinks: compare real paths.
    return pathToFileURL(realpathSync(script)).href === pathToFileURL(realpathSync(fileURLToPath(import.meta.url))).href;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.OK); // `metadctl list | head`
    throw err;
  });
  void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }).then(
    (code) => {
      process.stdout.write('', () => process.exit(code));
    },
  );
}
