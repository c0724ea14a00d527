/**
 * metadctl params show | set | unset | clear: the OS parameters of an instance
 * (/v1/instances/{name}/params/... of docs/admin-api.md). Values are read from argv, files or
 * stdin by cli/input.ts; private and secret values are never printed.
 */
import { Option } from 'commander';
import { VISIBILITIES, type Visibility } from '../../daemon/registry/model.js';
import type { ParamsWrite } from '../api-types.js';
import { examples, intOption, line, reportError, writeRaw, type CommandGroup } from '../command.js';
import { ApiError, EXIT, UsageError } from '../errors.js';
import { formatParams } from '../format.js';
import { readAssignments } from '../input.js';

function visibilityOption(): Option {
  return new Option('--visibility <visibility>', 'which parameters').choices(VISIBILITIES).makeOptionMandatory();
}

interface SetOptions {
  visibility: Visibility;
  ttl?: number;
  claimOnce?: boolean;
  replace?: boolean;
  keepNewline?: boolean;
}

export const paramsCommands: CommandGroup = (program, act) => {
  const params = program
    .command('params')
    .description('OS parameters (public, private, secret) of an instance')
    .addHelpText(
      'after',
      `
Public values can be read back; private and secret values never are (only their names, and
for secrets the expiry and claim state). Secrets expire (default 7200 s) and may be claim-once:
consumed by the guest's first read of os/parameters.json. The guest sees secrets only while the
instance's install job runs (metadctl install NAME); with no job, a secret is kept but not served.
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
        const res = await ctx.client.params(name);
        if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
        else ctx.io.stdout.write(formatParams(res.body));
      }),
    );

  params
    .command('set')
    .description('set parameters of one visibility (PATCH .../params/{visibility}; PUT with --replace)')
    .argument('<name>', 'instance name')
    .argument('<assignments...>', 'KEY=VALUE, KEY=@FILE or KEY=- (see below)')
    .addOption(visibilityOption())
    .option('--ttl <seconds>', 'secret only: expire the values after SECONDS (1..604800; default 7200)', intOption(1, 604800))
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
(ps, /proc) nor in the shell history. Secret values reach the guest only while the instance's
install job runs (metadctl install NAME).
${examples(
  'metadctl params set web1 --visibility public MODE=prod REGION=eu-west-1',
  'metadctl params set web1 --visibility private API_TOKEN=@/etc/metad/web1.token',
  'metadctl params set web1 --visibility secret DB_PASSWORD=@/run/secrets/db --ttl 3600 --claim-once',
  'pass show db/web1 | metadctl params set web1 --visibility secret DB_PASSWORD=-',
  'metadctl params set web1 --visibility public --replace MODE=prod   # drops the other public values',
)}`,
    )
    .action(
      act(async (ctx, name: string, assignments: string[], opts: SetOptions) => {
        if (opts.visibility !== 'secret' && (opts.ttl !== undefined || opts.claimOnce)) {
          throw new UsageError('--ttl and --claim-once apply to --visibility secret only');
        }
        const values = await readAssignments(assignments, ctx.io, opts.keepNewline === true);
        const body: ParamsWrite = { values };
        if (opts.ttl !== undefined) body.ttlSec = opts.ttl;
        if (opts.claimOnce) body.claimOnce = true;
        const res = await ctx.client.setParams(name, opts.visibility, body, opts.replace === true);
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.raw);
          return;
        }
        const keys = Object.keys(values);
        line(
          ctx,
          opts.replace
            ? `replaced the ${opts.visibility} parameters of ${name} with ${keys.join(', ')}`
            : `set ${opts.visibility} ${keys.length === 1 ? 'parameter' : 'parameters'} ${keys.join(', ')} on ${name}`,
        );
      }),
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
            await ctx.client.unsetParam(name, opts.visibility, key);
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
        await ctx.client.clearParams(name, opts.visibility);
        if (!ctx.json) line(ctx, `cleared the ${opts.visibility} parameters of ${name}`);
      }),
    );
};
