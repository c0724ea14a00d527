/**
 * metadctl health | identity-key: questions about the daemon itself
 * (/v1/health and /v1/identity/public-key of docs/admin-api.md).
 */
import { examples, line, plural, writeRaw, type CommandGroup } from '../command.js';

export const daemonCommands: CommandGroup = (program, act) => {
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
        writeRaw(ctx.io.stdout, (await ctx.client.identityKey()).raw);
      }),
    );

  program
    .command('health')
    .description('check that the daemon answers (GET /v1/health)')
    .addHelpText('after', examples('metadctl health', 'metadctl health >/dev/null && echo up'))
    .action(
      act(async (ctx) => {
        const res = await ctx.client.health();
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.raw);
          return;
        }
        const h = res.body as { status?: unknown; instances?: unknown };
        line(ctx, `${typeof h.status === 'string' ? h.status : 'unknown'}${typeof h.instances === 'number' ? ` (${plural(h.instances, 'instance')})` : ''}`);
      }),
    );
};
