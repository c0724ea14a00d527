/**
 * metadctl install NAME | install status|watch|abort NAME | install jobs | jobs: install
 * appliance jobs (docs/admin-api.md, "Install jobs"). `watch` shows one updating status line on
 * a terminal and plain lines (every state change and progress line) otherwise.
 */
import type { GanetiSecretsRecord, JobRecord } from '../api-types.js';
import { examples, intOption, line, writeRaw, type CommandGroup, type Ctx } from '../command.js';
import { ApiError, EXIT, UsageError } from '../errors.js';
import { formatTable } from '../format.js';

const MAX_TIMEOUT_SEC = 7 * 24 * 3600;

/** One line about a job: `web1  running  deadline 2026-…  create ok`. Pure. */
/** One job as columns: name, state, when (ended / deadline / requested), reason, last progress line. */
function jobCells(r: JobRecord): string[] {
  const last = r.lines.at(-1)?.replace(/^metad-progress v1 /, '') ?? '';
  const when = r.outcome ? `ended ${r.endedAt ?? '?'}` : r.deadlineAt ? `deadline ${r.deadlineAt}` : `requested ${r.requestedAt}`;
  return [r.instance, r.state, when, r.reason ?? '', last];
}

/**
 * A Ganeti secret window as the same columns: name, state, when (ended / expires), reason, and
 * `ganeti secrets: NAMES` where an install job has its last progress line. Pure.
 */
function windowCells(r: GanetiSecretsRecord): string[] {
  const when = r.endedAt ? `ended ${r.endedAt}` : `expires ${r.expiresAt}`;
  return [r.instance, r.state, when, r.reason ?? '', `ganeti secrets: ${r.secrets.join(', ')}`];
}

function jobLine(r: JobRecord): string {
  return jobCells(r)
    .filter((x) => x !== '')
    .join('  ');
}

/** What `watch` prints for a new record, given the previous one (plain mode). Pure. */
export function watchLines(prev: JobRecord | undefined, r: JobRecord): string[] {
  const out: string[] = [];
  if (prev?.state !== r.state) out.push(`state ${r.state}${r.reason && r.outcome ? ` (${r.reason})` : ''}`);
  const seen = prev?.lines ?? [];
  // The record keeps the last lines: new ones are those after the previous last line.
  const lastSeen = seen.at(-1);
  const from = lastSeen === undefined ? 0 : r.lines.lastIndexOf(lastSeen) + 1;
  for (const l of r.lines.slice(from)) out.push(l);
  return out;
}

const exitOf = (r: JobRecord): number => (r.outcome === 'succeeded' ? EXIT.OK : EXIT.API);

/** The secret names the last job had that are not held now (a reinstall needs them sent again). Pure. */
function missingSecrets(last: JobRecord | undefined, held: readonly string[]): string[] {
  return (last?.secretNames ?? []).filter((n) => !held.includes(n));
}

function show(ctx: Ctx, raw: Buffer, r: JobRecord): void {
  if (ctx.json) writeRaw(ctx.io.stdout, raw);
  else line(ctx, jobLine(r));
}

async function watch(ctx: Ctx, name: string): Promise<number> {
  const tty = (ctx.io.stdout as { isTTY?: boolean }).isTTY === true && !ctx.json;
  let prev: JobRecord | undefined;
  const spin = ['|', '/', '-', '\\'];
  let n = 0;
  await ctx.client.watchInstall(
    name,
    (r) => {
      if (ctx.json) ctx.io.stdout.write(`${JSON.stringify(r)}\n`);
      else if (tty)
        ctx.io.stdout.write(`\r\x1b[K${r.outcome ? '' : `${spin[n++ % spin.length] ?? ''} `}${jobLine(r)}${r.outcome ? '\n' : ''}`);
      else for (const l of watchLines(prev, r)) line(ctx, l);
      prev = r;
    },
    ctx.io.signal,
  );
  return prev ? exitOf(prev) : EXIT.API;
}

export const installCommands: CommandGroup = (program, act) => {
  const install = program
    .command('install')
    .description('install appliance jobs: start, status, watch, abort, list')
    .addHelpText(
      'after',
      examples('metadctl install web1 --timeout 3600', 'metadctl install watch web1', 'metadctl install abort web1', 'metadctl jobs'),
    );

  install
    .command('start', { isDefault: true })
    .description(
      'boot an install appliance for the instance (POST /v1/instances/{name}/install); `metadctl install NAME` is short for this',
    )
    .argument('<name>', 'instance name')
    .option(
      '--timeout <seconds>',
      "hard deadline of this job (default: the daemon's appliance.installTimeoutMs; at most appliance.maxTimeoutMs)",
      intOption(1, MAX_TIMEOUT_SEC),
    )
    .option('--without-secrets', "start even though the instance's last install had secret parameters that are not held now")
    .addHelpText(
      'after',
      `
Secret parameters live for one install job and are wiped when it ends: a reinstall needs them
sent again. When the last job had secrets that are not held now, nothing is started (exit 2)
unless --without-secrets says that is meant.`,
    )
    .action(
      act(async (ctx, name: string, opts: { timeout?: number; withoutSecrets?: boolean }) => {
        if (opts.withoutSecrets !== true) {
          const last = await ctx.client.installStatus(name).then(
            (r) => r.body,
            (e: unknown) => {
              if (e instanceof ApiError && e.status === 404) return undefined;
              throw e;
            },
          );
          const held = (await ctx.client.params(name)).body.secret.filter((x) => x.state === 'live').map((x) => x.name);
          const missing = missingSecrets(last, held);
          if (missing.length > 0) {
            throw new UsageError(`the last install of ${name} had secret parameters that are not held now: ${missing.join(', ')}`, [
              'secrets live for one install job, so a reinstall needs them sent again:',
              `  metadctl params set ${name} --visibility secret NAME=VALUE ...`,
              'or start without them: metadctl install start --without-secrets ' + name,
            ]);
          }
        }
        const res = await ctx.client.install(name, opts.timeout);
        show(ctx, res.raw, res.body);
      }),
    );

  install
    .command('status')
    .description("the instance's latest install job (GET /v1/instances/{name}/install); exit 0 unless it ended other than succeeded")
    .argument('<name>', 'instance name')
    .action(
      act(async (ctx, name: string) => {
        const res = await ctx.client.installStatus(name);
        show(ctx, res.raw, res.body);
        return res.body.outcome && res.body.outcome !== 'succeeded' ? EXIT.API : EXIT.OK;
      }),
    );

  install
    .command('watch')
    .description('follow the job until it ends (progress indicator on a terminal, plain lines otherwise); exit 0 when it succeeded')
    .argument('<name>', 'instance name')
    .action(act((ctx, name: string) => watch(ctx, name)));

  install
    .command('abort')
    .description('end the job now: the domain is destroyed and the outcome recorded as aborted')
    .argument('<name>', 'instance name')
    .action(
      act(async (ctx, name: string) => {
        const res = await ctx.client.abortInstall(name);
        show(ctx, res.raw, res.body);
      }),
    );

  const list = async (ctx: Ctx): Promise<void> => {
    const res = await ctx.client.jobs();
    if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
    else
      ctx.io.stdout.write(
        formatTable(
          ['NAME', 'STATE', 'WHEN', 'REASON', 'LAST PROGRESS'],
          res.body.jobs.map((r) => ('kind' in r ? windowCells(r) : jobCells(r))),
        ),
      );
  };
  install
    .command('jobs')
    .description("every instance's latest install job, and its latest Ganeti secret window (GET /v1/jobs)")
    .action(act(list));
  program
    .command('jobs')
    .description("every instance's latest install job and Ganeti secret window (same as `install jobs`)")
    .action(act(list));
};
