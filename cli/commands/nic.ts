/**
 * metadctl nic up | down | list: tell metad that an instance's comm tap appeared or went (for
 * ifup scripts, Ganeti's kvm-ifup, libvirt's qemu hook), and show each NIC as the host holds it
 * (POST /v1/instances/{name}/nic, GET /v1/nics of docs/admin-api.md; network.mode routed or bridged).
 */
import { examples, line, writeRaw, type CommandGroup, type Ctx } from '../command.js';

interface NicStatus {
  instance: string;
  tap: string;
  ipv4: string;
  mac: string;
  tapExists: boolean;
  tapUp: boolean;
  addresses: boolean;
  route: boolean;
  rules: boolean;
  dhcp: boolean;
  /** Bridged mode only. */
  bridge?: string;
  isolated?: boolean;
  /** No tap now (nic down, or never up). */
  down?: boolean;
}

const yes = (b: boolean): string => (b ? 'yes' : 'NO');

/** Bridged mode: the bridge the tap is a port of, and whether that port is isolated. */
const port = (n: NicStatus): string => (n.bridge ? `${n.bridge}${n.isolated === true ? ' isolated' : ' NOT-ISOLATED'}` : 'NO');

function table(nics: readonly NicStatus[]): string {
  const bridged = nics.some((n) => n.bridge !== undefined);
  const rows = [['INSTANCE', 'TAP', 'IPV4', 'MAC', 'TAP-UP', ...(bridged ? ['BRIDGE'] : []), 'ADDRESSES', 'ROUTE', 'RULES', 'DHCP']];
  for (const n of nics)
    rows.push([
      n.instance,
      n.down ? '-' : n.tap,
      n.ipv4,
      n.mac,
      n.down ? 'down' : n.tapExists ? yes(n.tapUp) : 'missing',
      ...(bridged ? [port(n)] : []),
      yes(n.addresses),
      yes(n.route),
      yes(n.rules),
      yes(n.dhcp),
    ]);
  const widths = rows.reduce<number[]>((w, r) => r.map((c, i) => Math.max(w[i] ?? 0, c.length)), []);
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

async function setState(ctx: Ctx, name: string, tap: string, state: 'up' | 'down'): Promise<void> {
  const res = await ctx.client.nic(name, tap, state);
  if (ctx.json) writeRaw(ctx.io.stdout, res.body);
  else line(ctx, `nic ${state}: ${name} on ${tap}`);
}

export const nicCommands: CommandGroup = (program, act) => {
  const nic = program
    .command('nic')
    .description("the comm network: an instance's tap came up or went down; what the host holds (network.mode routed or bridged)")
    .addHelpText(
      'after',
      examples('metadctl nic up --instance web1 --tap gnt.com.7', 'metadctl nic down --instance web1 --tap gnt.com.7', 'metadctl nic list'),
    );

  for (const state of ['up', 'down'] as const) {
    nic
      .command(state)
      .description(
        state === 'up'
          ? 'the tap exists: route, rules, addresses and DHCP for the instance (idempotent; POST /v1/instances/{name}/nic)'
          : 'the tap is going: remove its route, rules and DHCP host (idempotent; POST /v1/instances/{name}/nic)',
      )
      .requiredOption('--instance <name>', 'instance name')
      .requiredOption('--tap <tap>', 'tap device (at most 15 characters, not vnet*/vif*/macvtap*)')
      .action(act(async (ctx, opts: { instance: string; tap: string }) => setState(ctx, opts.instance, opts.tap, state)));
  }

  nic
    .command('list')
    .description("each instance's tap, address, route, rules and DHCP host as the host holds them (GET /v1/nics)")
    .action(
      act(async (ctx) => {
        const res = await ctx.client.nics();
        if (ctx.json) {
          writeRaw(ctx.io.stdout, res.body);
          return;
        }
        const { nics } = JSON.parse(res.body.toString('utf8')) as { nics: NicStatus[] };
        line(ctx, nics.length === 0 ? 'no comm NICs (no instance is registered)' : table(nics));
      }),
    );
};
