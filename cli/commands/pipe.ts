/**
 * metadctl pipe send | read: the byte pipe between host and guest
 * (/v1/instances/{name}/pipe of docs/admin-api.md). Bytes go out and come back unchanged.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { examples, intOption, line, plural, writeBytes, writeRaw, type CommandGroup, type Ctx } from '../command.js';
import { EXIT } from '../errors.js';
import { readSource } from '../input.js';

const MAX_PIPE_WAIT = 60;
const FOLLOW_WAIT = 30;

/** Long polls until the run's signal (or SIGINT) ends it; exit 0. */
async function pipeFollow(ctx: Ctx, name: string, waitSec: number): Promise<number> {
  const ac = new AbortController();
  const stop = (): void => ac.abort();
  const stopped = (): boolean => ac.signal.aborted;
  const external = ctx.io.signal;
  if (external) {
    if (external.aborted) return EXIT.OK;
    external.addEventListener('abort', stop, { once: true });
  } else {
    process.once('SIGINT', stop);
  }
  try {
    while (!stopped()) {
      const started = Date.now();
      let data: Buffer;
      try {
        data = (await ctx.client.readPipe(name, { waitSec, signal: ac.signal })).body;
      } catch (err) {
        if (stopped()) break;
        throw err;
      }
      if (data.length > 0) {
        await writeBytes(ctx.io.stdout, data);
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

export const pipeCommands: CommandGroup = (program, act) => {
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
        const res = await ctx.client.sendPipe(name, body);
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.raw);
          return;
        }
        const q = (res.body as { queuedBytes?: unknown }).queuedBytes;
        line(
          ctx,
          `sent ${plural(body.length, 'byte')} to ${name}${typeof q === 'number' ? ` (${plural(q, 'byte')} queued for the guest)` : ''}`,
        );
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
        if (opts.follow) return pipeFollow(ctx, name, opts.wait ?? FOLLOW_WAIT);
        const res = await ctx.client.readPipe(name, opts.wait === undefined ? {} : { waitSec: opts.wait });
        if (res.body.length > 0) await writeBytes(ctx.io.stdout, res.body);
        return EXIT.OK;
      }),
    );
};
