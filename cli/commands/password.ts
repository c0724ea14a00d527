/**
 * metadctl password show | clear: the OpenStack password a guest posted
 * (/v1/instances/{name}/password of docs/admin-api.md; encrypted by the guest with its SSH key).
 */
import { examples, line, writeRaw, type CommandGroup } from '../command.js';

export const passwordCommands: CommandGroup = (program, act) => {
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
        const res = await ctx.client.password(name);
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.raw);
          return;
        }
        const pw = (res.body as { password?: unknown }).password;
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
        await ctx.client.clearPassword(name);
        if (!ctx.json) line(ctx, `cleared the password of ${name}`);
      }),
    );
};
