/**
 * metadctl register | show | list | remove | patch: the instance documents
 * (/v1/instances and /v1/instances/{name} of docs/admin-api.md).
 */
import { examples, line, writeRaw, type CommandGroup } from '../command.js';
import { UsageError } from '../errors.js';
import { formatList, formatView } from '../format.js';
import { readObject } from '../input.js';

export const instanceCommands: CommandGroup = (program, act) => {
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
        const res = await ctx.client.register({ ...doc, name });
        if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
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
        const res = await ctx.client.show(name);
        if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
        else ctx.io.stdout.write(formatView(res.body));
      }),
    );

  program
    .command('list')
    .alias('ls')
    .description('list the registered instances (GET /v1/instances)')
    .addHelpText(
      'after',
      `\nColumns: NAME, UUID, COMM IPV4, MAC, TAP, GEN (generation), ORIGIN (admin: registered here;
ganeti: fed by Ganeti's node daemon, docs/ganeti.md). metadctl remove removes either.\n${examples('metadctl list', "metadctl --json list | jq -r '.instances[].name'")}`,
    )
    .action(
      act(async (ctx) => {
        const res = await ctx.client.list();
        if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
        else ctx.io.stdout.write(formatList(Array.isArray(res.body.instances) ? res.body.instances : []));
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
        await ctx.client.remove(name);
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
        const res = await ctx.client.patch(name, patch);
        if (ctx.json) writeRaw(ctx.io.stdout, res.raw);
        else {
          const gen = (res.body as Partial<typeof res.body>).status?.generation;
          line(ctx, `patched ${name}${gen !== undefined ? ` (generation ${gen})` : ''}`);
        }
      }),
    );
};
