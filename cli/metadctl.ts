#!/usr/bin/env node
/**
 * metadctl: the admin CLI of metad. Every command is one (or a few) requests to the admin API
 * over the daemon's unix socket (docs/admin-api.md); docs/metadctl.md is the user's guide.
 *
 * `main()` is the whole program minus process plumbing, so tests can drive it with their own
 * streams, environment and socket.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { VISIBILITIES, type Visibility } from '../daemon/model.js';
import { AdminClient, DEFAULT_SOCKET, instancePath, parseJson, type ApiResponse } from './client.js';
import { ApiError, CliError, EXIT, UsageError } from './errors.js';
import { formatList, formatParams, formatView, type ParamsAnswer, type Summary, type View } from './format.js';
import { readAssignments, readObject, readSource } from './input.js';

export { EXIT } from './errors.js';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  /** Ends `pipe read --follow`. Without it, SIGINT does. */
  signal?: AbortSignal;
}

interface Ctx {
  io: CliIo;
  client: AdminClient;
  json: boolean;
}

interface GlobalOpts {
  socket?: string;
  json?: boolean;
}

const MAX_PIPE_WAIT = 60;
const FOLLOW_WAIT = 30;

function readVersion(): string {
  // dist/cli/metadctl.js -> ../../package.json; cli/metadctl.ts (run from source) -> ../package.json
  for (const rel of ['../../package.json', '../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'metad' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // try the next one
    }
  }
  return '0.0.0-unknown';
}

export const VERSION = readVersion();

const ROOT_HELP = `
Examples:
  $ metadctl register web1.yaml
  $ metadctl list
  $ metadctl show web1
  $ metadctl --json show web1 | jq .status.generation
  $ metadctl --socket /tmp/metad/admin.sock health

Environment:
  METAD_SOCKET  the admin socket when --socket is not given (default ${DEFAULT_SOCKET})

Exit codes:
  0  success
  1  the daemon answered with an error (4xx/5xx other than 404)
  2  usage error: bad arguments, unreadable file, invalid JSON/YAML (nothing was sent)
  3  cannot connect to the admin socket (missing, refused, permission denied)
  4  not found (404): unknown instance or parameter

With --json, commands print the daemon's JSON answer unchanged (commands whose answer has
no body print nothing); on an error the daemon's error JSON goes to stdout as well.
`;

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}\n`).join('')}`;
}

function intOption(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number of seconds (${min}..${max}).`);
    const n = Number(value);
    if (n < min || n > max) throw new InvalidArgumentError(`expected ${min}..${max}.`);
    return n;
  };
}

function visibilityOption(): Option {
  return new Option('--visibility <visibility>', 'which parameters').choices(VISIBILITIES).makeOptionMandatory();
}

function line(ctx: Ctx, text: string): void {
  ctx.io.stdout.write(`${text}\n`);
}

/** The daemon's body, unchanged but for a final newline. */
function writeRaw(out: NodeJS.WritableStream, body: Buffer): void {
  if (body.length === 0) return;
  out.write(body);
  if (body[body.length - 1] !== 0x0a) out.write('\n');
}

/** Write bytes and wait until they are handed to the OS (backpressure for --follow). */
function writeBytes(out: NodeJS.WritableStream, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(data, (err?: Error | null) => (err ? reject(err) : resolve()));
  });
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

async function pipeFollow(ctx: Ctx, path: string, wait: number): Promise<number> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  const external = ctx.io.signal;
  if (external) {
    if (external.aborted) return EXIT.OK;
    external.addEventListener('abort', stop, { once: true });
  } else {
    process.once('SIGINT', stop);
  }
  try {
    while (!ac.signal.aborted) {
      const started = Date.now();
      let res: ApiResponse;
      try {
        res = await ctx.client.expect('GET', `${path}?wait=${wait}`, [200], { signal: ac.signal, timeoutMs: (wait + 30) * 1000 });
      } catch (err) {
        if (ac.signal.aborted) break;
        throw err;
      }
      if (res.body.length > 0) {
        await writeBytes(ctx.io.stdout, res.body);
      } else if (Date.now() - started < 500) {
        // A daemon that does not hold the request (wait=0 or an older one): do not spin.
        await sleep(500, undefined, { signal: ac.signal }).catch(() => undefined);
      }
    }
  } finally {
    external?.removeEventListener('abort', stop);
    process.off('SIGINT', stop);
  }
  return EXIT.OK;
}

function buildProgram(io: CliIo, state: { code: number; json: boolean }): Command {
  /** Wrap an action: resolve the global options, build the client, record the exit code. */
  const act =
    <A extends unknown[]>(fn: (ctx: Ctx, ...args: A) => Promise<number | void>) =>
    async (...args: unknown[]): Promise<void> => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals<GlobalOpts>();
      state.json = g.json === true;
      const socket = g.socket ?? (io.env.METAD_SOCKET || DEFAULT_SOCKET);
      const ctx: Ctx = { io, json: state.json, client: new AdminClient(socket, `metadctl/${VERSION}`) };
      state.code = (await fn(ctx, ...(args.slice(0, -1) as A))) ?? EXIT.OK;
    };

  const program = new Command('metadctl')
    .description('Administer metad, the instance metadata daemon, through its admin socket.')
    .version(VERSION, '-V, --version', 'print the metadctl version')
    .option('--socket <path>', `the admin socket (default: $METAD_SOCKET, else ${DEFAULT_SOCKET})`)
    .option('--json', "machine output: print the daemon's JSON answer unchanged")
    .helpOption('-h, --help', 'show help (every command has its own, with examples)')
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
      outputError: (s, write) => write(s.replace(/^error: /, 'metadctl: ')),
    })
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', ROOT_HELP);

  program
    .command('register')
    .description('register an instance, or replace the one registered under the same name (PUT /v1/instances/{name})')
    .argument('<file>', 'the instance document (docs/instance.schema.json), JSON or YAML; - reads stdin')
    .addHelpText(
      'after',
      `
Prints "registered NAME" when the instance is new, "replaced NAME" when it replaced one.
A replacing document keeps the stored private and secret parameters and IAM credentials when it
omits params.private, params.secret or ec2.iam; given (even empty), they replace.
${examples('metadctl register web1.yaml', 'metadctl register - < web1.json', 'render-instance web1 | metadctl register -')}`,
    )
    .action(
      act(async (ctx, file: string) => {
        const doc = await readObject(file, ctx.io);
        const name = doc.name;
        if (typeof name !== 'string' || name === '') {
          throw new UsageError(`${file === '-' ? 'stdin' : file} has no "name" (a string): it names the instance`);
        }
        const res = await ctx.client.expect('PUT', instancePath(name), [200, 201], { body: JSON.stringify(doc) });
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else line(ctx, `${res.status === 201 ? 'registered' : 'replaced'} ${name}`);
      }),
    );

  program
    .command('show')
    .description('show an instance: document summary and status (GET /v1/instances/{name})')
    .argument('<name>', 'instance name')
    .addHelpText(
      'after',
      `
Private and secret parameter values and IAM credentials are never shown (the daemon never sends
them): only their names, and for secrets the expiry and claim state.
${examples('metadctl show web1', 'metadctl --json show web1 | jq .instance')}`,
    )
    .action(
      act(async (ctx, name: string) => {
        const res = await ctx.client.expect('GET', instancePath(name), [200]);
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else ctx.io.stdout.write(formatView(parseJson<View>(res)));
      }),
    );

  program
    .command('list')
    .alias('ls')
    .description('list the registered instances (GET /v1/instances)')
    .addHelpText('after', `\nColumns: NAME, UUID, COMM IPV4, MAC, TAP, GEN (generation).\n${examples('metadctl list', "metadctl --json list | jq -r '.instances[].name'")}`)
    .action(
      act(async (ctx) => {
        const res = await ctx.client.expect('GET', '/v1/instances', [200]);
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else ctx.io.stdout.write(formatList(parseJson<{ instances?: Summary[] }>(res).instances ?? []));
      }),
    );

  program
    .command('remove')
    .alias('rm')
    .description('remove an instance; its secrets are wiped and its pipe dropped (DELETE /v1/instances/{name})')
    .argument('<name>', 'instance name')
    .addHelpText('after', examples('metadctl remove web1', 'metadctl rm web1'))
    .action(
      act(async (ctx, name: string) => {
        await ctx.client.expect('DELETE', instancePath(name), [200, 204]);
        if (!ctx.json) line(ctx, `removed ${name}`);
      }),
    );

  program
    .command('patch')
    .description('change an instance with an RFC 7396 merge patch (PATCH /v1/instances/{name})')
    .argument('<name>', 'instance name')
    .argument('<file>', 'the merge patch, JSON or YAML; - reads stdin')
    .addHelpText(
      'after',
      `
In a merge patch, objects merge, null removes a member, anything else replaces it.
{"ec2": {"iam": null}} removes the IAM credentials; {"params": {"private": null}} the private parameters.
${examples(
  'metadctl patch web1 changes.yaml',
  `echo '{"hostname": "web1.example.org"}' | metadctl patch web1 -`,
  `echo '{"ec2": {"tags": {"team": null}}}' | metadctl patch web1 -`,
)}`,
    )
    .action(
      act(async (ctx, name: string, file: string) => {
        const patch = await readObject(file, ctx.io);
        const res = await ctx.client.expect('PATCH', instancePath(name), [200], {
          body: JSON.stringify(patch),
          contentType: 'application/merge-patch+json',
        });
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else {
          const gen = parseJson<Partial<View>>(res).status?.generation;
          line(ctx, `patched ${name}${gen !== undefined ? ` (generation ${gen})` : ''}`);
        }
      }),
    );

  // ---- params ------------------------------------------------------------------------------
  const params = program
    .command('params')
    .description('OS parameters (public, private, secret) of an instance')
    .addHelpText(
      'after',
      `
Public values can be read back; private and secret values never are (only their names, and
for secrets the expiry and claim state). Secrets expire (default 5400 s) and may be claim-once:
consumed by the guest's first read of os/parameters.json.
${examples(
  'metadctl params show web1',
  'metadctl params set web1 --visibility public MODE=prod',
  'metadctl params set web1 --visibility secret DB_PASSWORD=@/run/secrets/db --claim-once',
  'metadctl params unset web1 --visibility public MODE',
  'metadctl params clear web1 --visibility secret',
)}`,
    );

  params
    .command('show')
    .description('show the parameters of an instance (GET /v1/instances/{name}/params)')
    .argument('<name>', 'instance name')
    .addHelpText('after', examples('metadctl params show web1', 'metadctl --json params show web1 | jq .public'))
    .action(
      act(async (ctx, name: string) => {
        const res = await ctx.client.expect('GET', instancePath(name, 'params'), [200]);
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else ctx.io.stdout.write(formatParams(parseJson<ParamsAnswer>(res)));
      }),
    );

  params
    .command('set')
    .description('set parameters of one visibility (PATCH .../params/{visibility}; PUT with --replace)')
    .argument('<name>', 'instance name')
    .argument('<assignments...>', 'KEY=VALUE, KEY=@FILE or KEY=- (see below)')
    .addOption(visibilityOption())
    .option('--ttl <seconds>', 'secret only: expire the values after SECONDS (1..604800; default 5400)', intOption(1, 604800))
    .option('--claim-once', "secret only: the guest's first read of os/parameters.json consumes the values")
    .option('--replace', 'replace all values of that visibility instead of merging into them')
    .option('--keep-newline', 'keep the trailing newline of values read from a file or stdin')
    .addHelpText(
      'after',
      `
Values:
  KEY=VALUE    VALUE as given: it shows in the process list and in your shell history
  KEY=@FILE    the content of FILE (UTF-8)
  KEY=-        read from stdin (one KEY at most); KEY=@- is the same
  KEY=@@TEXT   the literal value "@TEXT"
A value read from a file or stdin loses one trailing newline unless --keep-newline.
Give private and secret values with KEY=@FILE or KEY=- so that they appear neither in argv
(ps, /proc) nor in the shell history.
${examples(
  'metadctl params set web1 --visibility public MODE=prod REGION=eu-west-1',
  'metadctl params set web1 --visibility private API_TOKEN=@/etc/metad/web1.token',
  'metadctl params set web1 --visibility secret DB_PASSWORD=@/run/secrets/db --ttl 3600 --claim-once',
  'pass show db/web1 | metadctl params set web1 --visibility secret DB_PASSWORD=-',
  'metadctl params set web1 --visibility public --replace MODE=prod   # drops the other public values',
)}`,
    )
    .action(
      act(
        async (
          ctx,
          name: string,
          assignments: string[],
          opts: { visibility: Visibility; ttl?: number; claimOnce?: boolean; replace?: boolean; keepNewline?: boolean },
        ) => {
          if (opts.visibility !== 'secret' && (opts.ttl !== undefined || opts.claimOnce)) {
            throw new UsageError('--ttl and --claim-once apply to --visibility secret only');
          }
          const values = await readAssignments(assignments, ctx.io, opts.keepNewline === true);
          const body: { values: Record<string, string>; ttlSec?: number; claimOnce?: boolean } = { values };
          if (opts.ttl !== undefined) body.ttlSec = opts.ttl;
          if (opts.claimOnce) body.claimOnce = true;
          const res = await ctx.client.expect(opts.replace ? 'PUT' : 'PATCH', instancePath(name, 'params', opts.visibility), [200], {
            body: JSON.stringify(body),
          });
          if (ctx.json) writeRaw(ctx.io.stdout, res.body);
          else {
            const keys = Object.keys(values);
            line(
              ctx,
              opts.replace
                ? `replaced the ${opts.visibility} parameters of ${name} with ${keys.join(', ')}`
                : `set ${opts.visibility} ${keys.length === 1 ? 'parameter' : 'parameters'} ${keys.join(', ')} on ${name}`,
            );
          }
        },
      ),
    );

  params
    .command('unset')
    .description('remove parameters (DELETE .../params/{visibility}/{key}, one request per key)')
    .argument('<name>', 'instance name')
    .argument('<keys...>', 'parameter names')
    .addOption(visibilityOption())
    .addHelpText(
      'after',
      `
Every key is tried; the exit code is that of the first failure (4 if a key was not set).
${examples('metadctl params unset web1 --visibility public MODE REGION', 'metadctl params unset web1 --visibility secret DB_PASSWORD')}`,
    )
    .action(
      act(async (ctx, name: string, keys: string[], opts: { visibility: Visibility }) => {
        let code: number = EXIT.OK;
        for (const key of keys) {
          try {
            await ctx.client.expect('DELETE', instancePath(name, 'params', opts.visibility, key), [200, 204]);
            if (!ctx.json) line(ctx, `removed ${opts.visibility} parameter ${key} from ${name}`);
          } catch (err) {
            if (!(err instanceof ApiError)) throw err; // cannot connect: stop here
            reportError(ctx.io, err, ctx.json, `${opts.visibility} parameter ${key}: `);
            if (code === EXIT.OK) code = err.exitCode;
          }
        }
        return code;
      }),
    );

  params
    .command('clear')
    .description('remove all parameters of one visibility (DELETE .../params/{visibility})')
    .argument('<name>', 'instance name')
    .addOption(visibilityOption())
    .addHelpText('after', examples('metadctl params clear web1 --visibility secret'))
    .action(
      act(async (ctx, name: string, opts: { visibility: Visibility }) => {
        await ctx.client.expect('DELETE', instancePath(name, 'params', opts.visibility), [200, 204]);
        if (!ctx.json) line(ctx, `cleared the ${opts.visibility} parameters of ${name}`);
      }),
    );

  // ---- pipe --------------------------------------------------------------------------------
  const pipe = program
    .command('pipe')
    .description('the byte pipe between host and guest')
    .addHelpText('after', examples('metadctl pipe send web1 "hello guest"', 'metadctl pipe read web1 --follow'));

  pipe
    .command('send')
    .description('queue bytes for the guest (POST /v1/instances/{name}/pipe)')
    .argument('<name>', 'instance name')
    .argument('[data]', 'the bytes to send (as UTF-8); - or omitted reads stdin')
    .addHelpText(
      'after',
      `
Nothing is stored when the bytes do not fit in the pipe buffer (the daemon answers 413, exit 1).
${examples('metadctl pipe send web1 "reboot-now"', 'metadctl pipe send web1 < payload.bin', 'printf "a\\nb\\n" | metadctl pipe send web1 -')}`,
    )
    .action(
      act(async (ctx, name: string, data: string | undefined) => {
        const body = data === undefined || data === '-' ? await readSource('-', ctx.io) : Buffer.from(data, 'utf8');
        const res = await ctx.client.expect('POST', instancePath(name, 'pipe'), [200, 202], {
          body,
          contentType: 'application/octet-stream',
        });
        if (ctx.json) writeRaw(ctx.io.stdout, res.body);
        else {
          const q = parseJson<{ queuedBytes?: number }>(res).queuedBytes;
          line(ctx, `sent ${plural(body.length, 'byte')} to ${name}${typeof q === 'number' ? ` (${plural(q, 'byte')} queued for the guest)` : ''}`);
        }
      }),
    );

  pipe
    .command('read')
    .description('print (and consume) the bytes the guest wrote (GET /v1/instances/{name}/pipe)')
    .argument('<name>', 'instance name')
    .option('--wait <seconds>', `wait up to SECONDS (0..${MAX_PIPE_WAIT}) for bytes when there are none`, intOption(0, MAX_PIPE_WAIT))
    .option('--follow', `keep reading (long polls of --wait, default ${FOLLOW_WAIT} s) until interrupted (Ctrl-C, exit 0)`)
    .addHelpText(
      'after',
      `
The bytes go to stdout unchanged (also with --json). Without bytes to read, prints nothing.
${examples('metadctl pipe read web1', 'metadctl pipe read web1 --wait 10 > reply.bin', 'metadctl pipe read web1 --follow')}`,
    )
    .action(
      act(async (ctx, name: string, opts: { wait?: number; follow?: boolean }) => {
        const path = instancePath(name, 'pipe');
        if (opts.follow) return pipeFollow(ctx, path, opts.wait ?? FOLLOW_WAIT);
        const wait = opts.wait;
        const res = await ctx.client.expect('GET', wait === undefined ? path : `${path}?wait=${wait}`, [200], {
          timeoutMs: ((wait ?? 0) + 30) * 1000,
        });
        if (res.body.length > 0) await writeBytes(ctx.io.stdout, res.body);
        return EXIT.OK;
      }),
    );

  // ---- password ----------------------------------------------------------------------------
  const password = program
    .command('password')
    .description('the OpenStack password the guest posted (encrypted with its SSH key by the guest)')
    .addHelpText('after', examples('metadctl password show web1', 'metadctl password clear web1'));

  password
    .command('show')
    .description('print the password (GET /v1/instances/{name}/password)')
    .argument('<name>', 'instance name')
    .addHelpText(
      'after',
      `
Prints nothing on stdout (and a note on stderr, exit 0) when no password was posted.
${examples('metadctl password show web1 | base64 -d | openssl pkeyutl -decrypt -inkey ~/.ssh/id_rsa')}`,
    )
    .action(
      act(async (ctx, name: string) => {
        const res = await ctx.client.expect('GET', instancePath(name, 'password'), [200]);
        if (ctx.json) return void writeRaw(ctx.io.stdout, res.body);
        const pw = parseJson<{ password?: string | null }>(res).password;
        if (typeof pw === 'string') line(ctx, pw);
        else ctx.io.stderr.write(`metadctl: no password set for ${name}\n`);
      }),
    );

  password
    .command('clear')
    .description('forget the password so that the guest can post a new one (DELETE /v1/instances/{name}/password)')
    .argument('<name>', 'instance name')
    .addHelpText('after', examples('metadctl password clear web1'))
    .action(
      act(async (ctx, name: string) => {
        await ctx.client.expect('DELETE', instancePath(name, 'password'), [200, 204]);
        if (!ctx.json) line(ctx, `cleared the password of ${name}`);
      }),
    );

  // ---- daemon ------------------------------------------------------------------------------
  program
    .command('identity-key')
    .description('print the PEM public key that verifies EC2 instance identity signatures (GET /v1/identity/public-key)')
    .addHelpText(
      'after',
      `
The answer is PEM, not JSON: it is printed as is, also with --json.
${examples('metadctl identity-key > metad-identity.pem')}`,
    )
    .action(
      act(async (ctx) => {
        const res = await ctx.client.expect('GET', '/v1/identity/public-key', [200]);
        writeRaw(ctx.io.stdout, res.body);
      }),
    );

  program
    .command('health')
    .description('check that the daemon answers (GET /v1/health)')
    .addHelpText('after', examples('metadctl health', 'metadctl health >/dev/null && echo up'))
    .action(
      act(async (ctx) => {
        const res = await ctx.client.expect('GET', '/v1/health', [200]);
        if (ctx.json) return void writeRaw(ctx.io.stdout, res.body);
        const h = parseJson<{ status?: unknown; instances?: unknown }>(res);
        line(ctx, `${String(h.status ?? 'unknown')}${typeof h.instances === 'number' ? ` (${plural(h.instances, 'instance')})` : ''}`);
      }),
    );

  return program;
}

/** `metadctl: <message>` and the indented notes (error details) on stderr; with --json the daemon's error body on stdout. */
function reportError(io: CliIo, err: CliError, json: boolean, prefix = ''): void {
  if (json && err instanceof ApiError) writeRaw(io.stdout, err.raw);
  io.stderr.write(`metadctl: ${prefix}${err.message}\n`);
  for (const note of err.notes) io.stderr.write(`  ${note}\n`);
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
    io.stderr.write(`metadctl: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
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
  void main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }).then((code) => {
    process.stdout.write('', () => process.exit(code));
  });
}
