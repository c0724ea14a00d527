/**
 * metadctl health [--wait [--timeout S]] | identity-key: questions about the daemon itself
 * (/v1/health and /v1/identity/public-key of docs/admin-api.md). `health --wait` lets scripts
 * wait for a starting daemon without their own polling loop.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { examples, intOption, line, plural, writeRaw, type CommandGroup, type Ctx } from '../command.js';
import { ConnectError, UsageError } from '../errors.js';

const WAIT_DEFAULT_SEC = 30;
/** How often `health --wait` retries a socket that cannot be reached yet. */
const WAIT_RETRY_MS = 100;

/** GET /v1/health, retried while the socket cannot be reached (ConnectError), until `timeoutMs`. */
async function healthWhenUp(ctx: Ctx, timeoutMs: number): ReturnType<Ctx['client']['health']> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await ctx.client.health();
    } catch (err) {
      if (!(err instanceof ConnectError) || Date.now() >= deadline) throw err;
    }
    await delay(WAIT_RETRY_MS, undefined, ctx.io.signal ? { signal: ctx.io.signal } : {});
  }
}

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
    .option('--wait', 'wait until it answers: retry while the socket is missing or refuses (a daemon still starting)')
    .option('--timeout <seconds>', `with --wait: give up after SECONDS (1..3600, default ${WAIT_DEFAULT_SEC}), exit 3`, intOption(1, 3600))
    .addHelpText(
      'after',
      examples(
        'metadctl health',
        'metadctl health >/dev/null && echo up',
        'metadctl health --wait --timeout 60 && metadctl register web1.yaml',
      ),
    )
    .action(
      act(async (ctx, opts: { wait?: boolean; timeout?: number }) => {
        if (opts.timeout !== undefined && opts.wait !== true) throw new UsageError('--timeout needs --wait');
        const res = opts.wait === true ? await healthWhenUp(ctx, (opts.timeout ?? WAIT_DEFAULT_SEC) * 1000) : await ctx.client.health();
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.raw);
          return;
        }
        const h = res.body as {
          status?: unknown;
          version?: unknown;
          instances?: unknown;
          leftovers?: unknown;
          installs?: { available?: unknown; reason?: unknown };
          network?: {
            mode?: unknown;
            lastReconcile?: { at?: unknown; ok?: unknown; ms?: unknown; error?: unknown };
            dhcp?: { running?: unknown; pid?: unknown; restarts?: unknown; leases?: unknown };
          };
          jobs?: { running?: unknown; queued?: unknown };
        };
        line(
          ctx,
          `${typeof h.status === 'string' ? h.status : 'unknown'}${typeof h.instances === 'number' ? ` (${plural(h.instances, 'instance')})` : ''}${typeof h.version === 'string' ? `, metad ${h.version}` : ''}`,
        );
        // Installs: said plainly when they cannot run here (the binding, the image, the network mode).
        if (h.installs?.available === false && typeof h.installs.reason === 'string')
          line(ctx, `installs unavailable: ${h.installs.reason}`);
        // The comm network, once it has reconciled, and metad's dnsmasq. What varies on a healthy
        // host (times, durations, pids) only in --json: this output is what scripts and docs compare.
        const n = h.network;
        const last = n?.lastReconcile;
        if (last && typeof last.at === 'string') {
          const how = last.ok === true ? 'ok' : `FAILED at ${last.at}: ${String(last.error)}`;
          line(ctx, `network ${String(n.mode)}: last reconcile ${how}`);
        }
        const dhcp = n?.dhcp;
        if (dhcp) {
          const restarts = Number(dhcp.restarts);
          line(
            ctx,
            `dnsmasq ${dhcp.running === true ? 'running' : 'down (restarting)'}: ${plural(Number(dhcp.leases), 'lease')}${restarts > 0 ? `, ${plural(restarts, 'restart')}` : ''}`,
          );
        }
        // Install jobs, when there are any.
        const running = Number(h.jobs?.running ?? 0);
        const queued = Number(h.jobs?.queued ?? 0);
        if (running + queued > 0) line(ctx, `jobs: ${String(running)} running, ${String(queued)} queued`);
        // What install runs left behind and the daemon is still retrying (docs/admin-api.md).
        for (const l of Array.isArray(h.leftovers) ? (h.leftovers as { kind?: unknown; name?: unknown; error?: unknown }[]) : []) {
          line(ctx, `leftover ${String(l.kind)} ${String(l.name)}: ${String(l.error)}`);
        }
      }),
    );
};
